use super::*;

fn params(member_id: &str, protocols: &[&str]) -> JoinParams {
    JoinParams {
        group: "g".to_owned(),
        member_id: member_id.to_owned(),
        client_id: "client".to_owned(),
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
            vec![(first.member_id.clone(), assignment.clone())],
            &shutdown,
        )
        .await;
    assert_eq!(synced.map(|(_, _, bytes)| bytes), Ok(assignment));
    assert_eq!(coordinator.heartbeat("g", 1, &first.member_id), Ok(()));
    assert_eq!(
        coordinator.heartbeat("g", 0, &first.member_id),
        Err(ResponseError::IllegalGeneration)
    );
    assert_eq!(
        coordinator.heartbeat("g", 1, "stranger"),
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
        coordinator.heartbeat("g", 1, &a),
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
        coordinator.validate_commit("g", 2, &a),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(coordinator.leave("g", &b), Ok(()));
    assert_eq!(coordinator.state("g"), Some((GroupState::Empty, 3, 0)));
    shutdown.cancel();
}
