use super::*;

fn params(member_id: &str, protocols: &[&str]) -> JoinParams {
    JoinParams {
        group: "g".to_owned(),
        member_id: member_id.to_owned(),
        client_id: "client".to_owned(),
        instance_id: None,
        requires_known_member_id: true,
        protocol_type: "consumer".to_owned(),
        protocols: protocols
            .iter()
            .map(|name| ((*name).to_owned(), Bytes::from_static(b"meta")))
            .collect(),
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_millis(300),
    }
}

#[tokio::test]
async fn first_join_needs_a_member_id_then_completes_a_generation() {
    let coordinator = Arc::new(Coordinator::default());
    let shutdown = CancellationToken::new();
    let first = coordinator.join(params("", &["range"]), &shutdown).await;
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    assert!(!first.member_id.is_empty());
    let joined = coordinator
        .join(params(&first.member_id, &["range"]), &shutdown)
        .await;
    assert_eq!(joined.error, None);
    assert_eq!(joined.generation, 1);
    assert_eq!(joined.leader, first.member_id);
    assert_eq!(joined.members.len(), 1);
    assert_eq!(joined.protocol, "range");
    let assignment = Bytes::from_static(b"parts");
    let synced = coordinator
        .sync(
            "g",
            1,
            &first.member_id,
            None,
            vec![(first.member_id.clone(), assignment.clone())],
            &shutdown,
        )
        .await;
    assert_eq!(synced.map(|(_, _, bytes)| bytes), Ok(assignment));
    assert_eq!(
        coordinator.heartbeat("g", 1, &first.member_id, None),
        Ok(())
    );
    assert_eq!(
        coordinator.heartbeat("g", 0, &first.member_id, None),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        coordinator.heartbeat("g", 1, "stranger", None),
        Err(ResponseError::UnknownMemberId)
    );
    shutdown.cancel();
}

#[tokio::test]
async fn a_second_member_triggers_a_round_both_join_and_the_common_protocol_wins() {
    let coordinator = Arc::new(Coordinator::default());
    let shutdown = CancellationToken::new();
    let a = coordinator
        .join(params("", &["range"]), &shutdown)
        .await
        .member_id;
    let first = coordinator
        .join(params(&a, &["roundrobin", "range"]), &shutdown)
        .await;
    assert_eq!(first.generation, 1);
    let b = coordinator
        .join(params("", &["range"]), &shutdown)
        .await
        .member_id;
    // b's join starts generation 2, which waits for a to rejoin.
    let join_b = {
        let coordinator = Arc::clone(&coordinator);
        let shutdown = shutdown.clone();
        let b = b.clone();
        tokio::spawn(async move { coordinator.join(params(&b, &["range"]), &shutdown).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    assert_eq!(
        coordinator.heartbeat("g", 1, &a, None),
        Err(ResponseError::RebalanceInProgress)
    );
    let rejoin_a = coordinator
        .join(params(&a, &["roundrobin", "range"]), &shutdown)
        .await;
    let joined_b = join_b.await.expect("join task");
    assert_eq!((rejoin_a.generation, joined_b.generation), (2, 2));
    assert_eq!(rejoin_a.protocol, "range");
    assert_eq!(rejoin_a.leader, joined_b.leader);
    assert_eq!(
        coordinator.state("g"),
        Some((GroupState::CompletingRebalance, 2, 2))
    );
    shutdown.cancel();
}

#[tokio::test]
async fn members_that_do_not_rejoin_are_dropped_at_the_rebalance_deadline() {
    let coordinator = Arc::new(Coordinator::default());
    let shutdown = CancellationToken::new();
    let a = coordinator
        .join(params("", &["range"]), &shutdown)
        .await
        .member_id;
    coordinator.join(params(&a, &["range"]), &shutdown).await;
    let b = coordinator
        .join(params("", &["range"]), &shutdown)
        .await
        .member_id;
    // a never rejoins: after the 300 ms rebalance timeout, b alone forms generation 2.
    let joined = coordinator.join(params(&b, &["range"]), &shutdown).await;
    assert_eq!(joined.error, None);
    assert_eq!(joined.generation, 2);
    assert_eq!(joined.leader, b);
    assert_eq!(
        coordinator.state("g"),
        Some((GroupState::CompletingRebalance, 2, 1))
    );
    assert_eq!(
        coordinator.validate_commit("g", 2, &a, None, false),
        Err(ResponseError::UnknownMemberId)
    );
    // A commit from outside the group protocol while it has a member: refused, as Kafka
    // (transactional ones excepted); accepted once the group is empty.
    assert_eq!(
        coordinator.validate_commit("g", -1, "", None, false),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(coordinator.validate_commit("g", -1, "", None, true), Ok(()));
    assert_eq!(coordinator.leave("g", &b, None), Ok(()));
    assert_eq!(coordinator.state("g"), Some((GroupState::Empty, 3, 0)));
    assert_eq!(
        coordinator.validate_commit("g", -1, "", None, false),
        Ok(())
    );
    assert_eq!(
        coordinator.validate_commit("other", -1, "", None, false),
        Ok(())
    );
    shutdown.cancel();
}

fn static_params(instance: &str, member_id: &str) -> JoinParams {
    JoinParams {
        instance_id: Some(instance.to_owned()),
        ..params(member_id, &["range"])
    }
}

#[tokio::test]
async fn a_restarted_static_member_takes_its_place_without_a_rebalance() {
    let coordinator = Arc::new(Coordinator::default());
    let shutdown = CancellationToken::new();
    // Static members get their id on the first join (no MEMBER_ID_REQUIRED round trip).
    let leader = coordinator.join(static_params("a", ""), &shutdown).await;
    assert_eq!((leader.error, leader.generation), (None, 1));
    let follower = {
        let coordinator = Arc::clone(&coordinator);
        let shutdown = shutdown.clone();
        tokio::spawn(async move { coordinator.join(static_params("b", ""), &shutdown).await })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    let rejoined = coordinator
        .join(static_params("a", &leader.member_id), &shutdown)
        .await;
    let follower = follower.await.expect("join task");
    assert_eq!((rejoined.generation, follower.generation), (2, 2));
    let leader_id = rejoined.member_id.clone();
    let assignments = vec![
        (leader_id.clone(), Bytes::from_static(b"p0")),
        (follower.member_id.clone(), Bytes::from_static(b"p1")),
    ];
    let follower_sync = {
        let coordinator = Arc::clone(&coordinator);
        let shutdown = shutdown.clone();
        let id = follower.member_id.clone();
        tokio::spawn(async move {
            coordinator
                .sync("g", 2, &id, Some("b"), Vec::new(), &shutdown)
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(20)).await;
    coordinator
        .sync("g", 2, &leader_id, Some("a"), assignments, &shutdown)
        .await
        .expect("leader sync");
    let synced = follower_sync
        .await
        .expect("sync task")
        .expect("follower sync");
    assert_eq!(synced.2, Bytes::from_static(b"p1"));

    // "b" restarts (no LeaveGroup) and rejoins with no member id: same generation, same
    // assignment, and the old id is fenced.
    let back = coordinator.join(static_params("b", ""), &shutdown).await;
    assert_eq!((back.error, back.generation), (None, 2));
    assert_ne!(back.member_id, follower.member_id);
    assert_eq!(coordinator.state("g"), Some((GroupState::Stable, 2, 2)));
    let again = coordinator
        .sync("g", 2, &back.member_id, Some("b"), Vec::new(), &shutdown)
        .await
        .expect("sync after restart");
    assert_eq!(again.2, Bytes::from_static(b"p1"));
    assert_eq!(
        coordinator.heartbeat("g", 2, &follower.member_id, Some("b")),
        Err(ResponseError::FencedInstanceId)
    );
    assert_eq!(
        coordinator.heartbeat("g", 2, &back.member_id, Some("b")),
        Ok(())
    );
    // Leaving by instance id alone removes the current holder and starts a new round.
    assert_eq!(coordinator.leave("g", "", Some("b")), Ok(()));
    assert_eq!(
        coordinator.heartbeat("g", 2, &leader_id, Some("a")),
        Err(ResponseError::RebalanceInProgress)
    );
    shutdown.cancel();
}
