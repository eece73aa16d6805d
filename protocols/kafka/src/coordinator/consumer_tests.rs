//! The KIP-848 state machine: epochs, revocation ordering, fencing, static members, regex
//! subscriptions, metadata changes and coexistence with classic groups.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::ResponseError;
use tokio::time::Instant;

use super::*;
use crate::coordinator::{Coordinator, JoinParams};

fn view(topics: &[(&str, u32)]) -> TopicsView {
    topics
        .iter()
        .enumerate()
        .map(|(index, (name, partitions))| {
            let mut id = [0u8; 16];
            id[0] = index as u8 + 1;
            (
                (*name).to_owned(),
                TopicMeta {
                    id,
                    partitions: *partitions,
                },
            )
        })
        .collect()
}

fn join(member: &str, topics: &[&str]) -> HeartbeatParams {
    HeartbeatParams {
        group: "g".to_owned(),
        member_id: member.to_owned(),
        member_epoch: 0,
        rebalance_timeout_ms: 1_000,
        subscribed_names: Some(topics.iter().map(|topic| (*topic).to_owned()).collect()),
        owned: Some(Assignment::new()),
        client_id: "client".to_owned(),
        ..HeartbeatParams::default()
    }
}

fn beat(member: &str, epoch: i32, owned: Option<&Assignment>) -> HeartbeatParams {
    HeartbeatParams {
        group: "g".to_owned(),
        member_id: member.to_owned(),
        member_epoch: epoch,
        rebalance_timeout_ms: -1,
        owned: owned.cloned(),
        ..HeartbeatParams::default()
    }
}

fn count(assignment: &Assignment) -> usize {
    assignment.values().map(BTreeSet::len).sum()
}

/// No partition is held (assigned or pending revocation) by two members.
fn assert_exclusive(coordinator: &Coordinator) {
    let groups = coordinator.consumer.lock();
    for group in groups.values() {
        let mut seen: BTreeMap<(String, u32), String> = BTreeMap::new();
        for (id, member) in &group.members {
            for set in [&member.assigned, &member.pending_revocation] {
                for (topic, partitions) in set {
                    for partition in partitions {
                        if let Some(other) = seen.insert((topic.clone(), *partition), id.clone()) {
                            panic!("{topic}-{partition} held by {other} and {id}");
                        }
                    }
                }
            }
        }
    }
}

fn coordinator() -> Coordinator {
    Coordinator::new(ConsumerGroupSettings {
        heartbeat_interval: Duration::from_millis(100),
        session_timeout: Duration::from_secs(10),
        max_size: 3,
    })
}

#[test]
fn validation_follows_kafka() {
    let mut params = join("", &["t"]);
    assert!(
        validate(&params, 0).is_ok(),
        "v0 lets the coordinator name the member"
    );
    assert_eq!(
        validate(&params, 1).unwrap_err().error,
        ResponseError::InvalidRequest
    );
    params.member_id = "m".to_owned();
    params.rebalance_timeout_ms = -1;
    assert_eq!(
        validate(&params, 1).unwrap_err().error,
        ResponseError::InvalidRequest
    );
    let mut params = join("m", &["t"]);
    params.server_assignor = Some("sticky".to_owned());
    assert_eq!(
        validate(&params, 1).unwrap_err().error,
        ResponseError::UnsupportedAssignor
    );
    let mut params = join("m", &[]);
    params.subscribed_regex = Some("(unclosed".to_owned());
    assert_eq!(
        validate(&params, 1).unwrap_err().error,
        ResponseError::InvalidRegularExpression
    );
    let mut params = beat("m", -2, None);
    assert_eq!(
        validate(&params, 1).unwrap_err().error,
        ResponseError::InvalidRequest
    );
    params.instance_id = Some("i".to_owned());
    assert!(validate(&params, 1).is_ok());
}

#[test]
fn a_lone_member_gets_everything_and_the_server_names_it_in_v0() {
    let coordinator = coordinator();
    let topics = view(&[("t", 4)]);
    let now = Instant::now();
    let answer = coordinator
        .consumer_heartbeat(join("", &["t"]), &topics, now)
        .unwrap();
    assert!(!answer.member_id.is_empty());
    assert_eq!(answer.member_epoch, 1);
    assert_eq!(answer.assignment.as_ref().map(count), Some(4));
    // A plain heartbeat with nothing new carries no assignment.
    let owned = answer.assignment.clone().unwrap();
    let again = coordinator
        .consumer_heartbeat(beat(&answer.member_id, 1, Some(&owned)), &topics, now)
        .unwrap();
    assert_eq!(again.member_epoch, 1);
    assert_eq!(again.assignment, None);
    assert_eq!(coordinator.describe_consumer("g").unwrap().state, "Stable");
}

#[test]
fn a_partition_moves_only_after_its_owner_revoked_it() {
    let coordinator = coordinator();
    let topics = view(&[("t", 12)]);
    let now = Instant::now();
    let a = coordinator
        .consumer_heartbeat(join("a", &["t"]), &topics, now)
        .unwrap();
    let a_owned = a.assignment.unwrap();
    assert_eq!((a.member_epoch, count(&a_owned)), (1, 12));
    // b joins: epoch 2, target 6/6, but every partition is still a's.
    let b = coordinator
        .consumer_heartbeat(join("b", &["t"]), &topics, now)
        .unwrap();
    assert_eq!(b.member_epoch, 2);
    assert_eq!(b.assignment.as_ref().map(count), Some(0));
    assert_exclusive(&coordinator);
    assert_eq!(
        coordinator.describe_consumer("g").unwrap().state,
        "Reconciling"
    );
    // a is told to give up 6: its epoch stays 1 until it acknowledges.
    let a2 = coordinator
        .consumer_heartbeat(beat("a", 1, Some(&a_owned)), &topics, now)
        .unwrap();
    assert_eq!(a2.member_epoch, 1);
    let a_kept = a2.assignment.unwrap();
    assert_eq!(count(&a_kept), 6);
    assert_exclusive(&coordinator);
    // b asks again before a acknowledged: still nothing.
    let b2 = coordinator
        .consumer_heartbeat(beat("b", 2, Some(&Assignment::new())), &topics, now)
        .unwrap();
    assert_eq!(b2.assignment, None);
    assert_eq!(
        count(&coordinator.describe_consumer("g").unwrap().members[1].assignment),
        0
    );
    // a heartbeats still owning the revoked ones (its callback is running): nothing moves.
    let a3 = coordinator
        .consumer_heartbeat(beat("a", 1, Some(&a_owned)), &topics, now)
        .unwrap();
    assert_eq!(a3.member_epoch, 1);
    // a acknowledges: it moves to epoch 2; then b gets the six a gave up.
    let a4 = coordinator
        .consumer_heartbeat(beat("a", 1, Some(&a_kept)), &topics, now)
        .unwrap();
    assert_eq!(a4.member_epoch, 2);
    assert_exclusive(&coordinator);
    let b3 = coordinator
        .consumer_heartbeat(beat("b", 2, Some(&Assignment::new())), &topics, now)
        .unwrap();
    let b_owned = b3.assignment.unwrap();
    assert_eq!(count(&b_owned), 6);
    assert!(crate::coordinator::consumer_group::is_empty(
        &crate::coordinator::consumer_group::intersect(&b_owned, &a_kept)
    ));
    assert_exclusive(&coordinator);
    assert_eq!(coordinator.describe_consumer("g").unwrap().state, "Stable");
}

#[test]
fn wrong_epochs_and_unknown_members_are_fenced() {
    let coordinator = coordinator();
    let topics = view(&[("t", 2)]);
    let now = Instant::now();
    let a = coordinator
        .consumer_heartbeat(join("a", &["t"]), &topics, now)
        .unwrap();
    let owned = a.assignment.unwrap();
    let ahead = coordinator.consumer_heartbeat(beat("a", 7, Some(&owned)), &topics, now);
    assert_eq!(ahead.unwrap_err().error, ResponseError::FencedMemberEpoch);
    let unknown = coordinator.consumer_heartbeat(beat("zz", 1, None), &topics, now);
    assert_eq!(unknown.unwrap_err().error, ResponseError::UnknownMemberId);
    // b joins (epoch 2); a at epoch 1 owning what it has is fine, then moves to 2.
    coordinator
        .consumer_heartbeat(join("b", &["t"]), &topics, now)
        .unwrap();
    let a2 = coordinator
        .consumer_heartbeat(beat("a", 1, Some(&owned)), &topics, now)
        .unwrap();
    let kept = a2.assignment.unwrap();
    let a3 = coordinator
        .consumer_heartbeat(beat("a", 1, Some(&kept)), &topics, now)
        .unwrap();
    assert_eq!(a3.member_epoch, 2);
    // Epoch 1 is a's previous epoch: a retry owning a subset is accepted, owning more is not.
    assert!(
        coordinator
            .consumer_heartbeat(beat("a", 1, Some(&kept)), &topics, now)
            .is_ok()
    );
    let stale = coordinator.consumer_heartbeat(beat("a", 1, Some(&owned)), &topics, now);
    assert_eq!(stale.unwrap_err().error, ResponseError::FencedMemberEpoch);
    // Session expiry removes b, whose next heartbeat is UNKNOWN_MEMBER_ID.
    coordinator
        .consumer_heartbeat(
            beat("a", 2, Some(&kept)),
            &topics,
            now + Duration::from_secs(8),
        )
        .unwrap();
    coordinator.sweep_consumers(now + Duration::from_secs(11));
    let gone =
        coordinator.consumer_heartbeat(beat("b", 2, None), &topics, now + Duration::from_secs(11));
    assert_eq!(gone.unwrap_err().error, ResponseError::UnknownMemberId);
    let described = coordinator.describe_consumer("g").unwrap();
    assert_eq!(described.members.len(), 1);
}

#[test]
fn a_member_not_revoking_in_time_is_fenced() {
    let coordinator = coordinator();
    let topics = view(&[("t", 4)]);
    let now = Instant::now();
    let a = coordinator
        .consumer_heartbeat(join("a", &["t"]), &topics, now)
        .unwrap();
    let owned = a.assignment.unwrap();
    coordinator
        .consumer_heartbeat(join("b", &["t"]), &topics, now)
        .unwrap();
    coordinator
        .consumer_heartbeat(beat("a", 1, Some(&owned)), &topics, now)
        .unwrap();
    // a's rebalance timeout is 1 s: it never acknowledges.
    coordinator.sweep_consumers(now + Duration::from_millis(500));
    assert_eq!(coordinator.describe_consumer("g").unwrap().members.len(), 2);
    coordinator.sweep_consumers(now + Duration::from_millis(1_500));
    let later = now + Duration::from_millis(1_500);
    let b = coordinator
        .consumer_heartbeat(beat("b", 2, Some(&Assignment::new())), &topics, later)
        .unwrap();
    assert_eq!(b.assignment.as_ref().map(count), Some(4));
    let a_again = coordinator.consumer_heartbeat(beat("a", 1, Some(&owned)), &topics, later);
    assert_eq!(a_again.unwrap_err().error, ResponseError::UnknownMemberId);
}

#[test]
fn static_members_keep_their_assignment_across_a_restart() {
    let coordinator = coordinator();
    let topics = view(&[("t", 4)]);
    let now = Instant::now();
    let mut first = join("a1", &["t"]);
    first.instance_id = Some("inst".to_owned());
    let a = coordinator.consumer_heartbeat(first, &topics, now).unwrap();
    coordinator
        .consumer_heartbeat(join("b", &["t"]), &topics, now)
        .unwrap();
    let owned = a.assignment.unwrap();
    let a2 = coordinator
        .consumer_heartbeat(beat("a1", 1, Some(&owned)), &topics, now)
        .unwrap();
    let kept = a2.assignment.unwrap();
    let mut beat_a = beat("a1", 1, Some(&kept));
    beat_a.instance_id = Some("inst".to_owned());
    let settled = coordinator
        .consumer_heartbeat(beat_a, &topics, now)
        .unwrap();
    assert_eq!(settled.member_epoch, 2);
    // Another process with the same instance id while a1 is active.
    let mut intruder = join("a2", &["t"]);
    intruder.instance_id = Some("inst".to_owned());
    let refused = coordinator.consumer_heartbeat(intruder.clone(), &topics, now);
    assert_eq!(
        refused.unwrap_err().error,
        ResponseError::UnreleasedInstanceId
    );
    // a1 leaves for a while (-2) and comes back as a2: same partitions, same group epoch.
    let mut pause = beat("a1", -2, None);
    pause.instance_id = Some("inst".to_owned());
    assert_eq!(
        coordinator
            .consumer_heartbeat(pause, &topics, now)
            .unwrap()
            .member_epoch,
        -2
    );
    let back = coordinator
        .consumer_heartbeat(intruder, &topics, now)
        .unwrap();
    assert_eq!(back.member_epoch, 2);
    assert_eq!(back.assignment.unwrap(), kept);
    let described = coordinator.describe_consumer("g").unwrap();
    assert_eq!(described.group_epoch, 2);
    assert!(
        described
            .members
            .iter()
            .all(|member| member.member_id != "a1")
    );
    // The old id is fenced.
    let mut old = beat("a1", 2, None);
    old.instance_id = Some("inst".to_owned());
    assert!(coordinator.consumer_heartbeat(old, &topics, now).is_err());
}

#[test]
fn regex_subscriptions_and_new_topics_reach_the_assignment() {
    let coordinator = coordinator();
    let now = Instant::now();
    let mut params = join("a", &[]);
    params.subscribed_names = None;
    params.subscribed_regex = Some("orders-.*".to_owned());
    let topics = view(&[("orders-eu", 2), ("payments", 3)]);
    let a = coordinator
        .consumer_heartbeat(params, &topics, now)
        .unwrap();
    let owned = a.assignment.unwrap();
    assert_eq!(owned.keys().collect::<Vec<_>>(), vec!["orders-eu"]);
    // A matching topic appears and an existing one grows.
    let grown = view(&[("orders-eu", 3), ("payments", 3), ("orders-us", 1)]);
    let a2 = coordinator
        .consumer_heartbeat(beat("a", 1, Some(&owned)), &grown, now)
        .unwrap();
    assert_eq!(a2.member_epoch, 2);
    let owned = a2.assignment.unwrap();
    assert_eq!(count(&owned), 4);
    assert!(!owned.contains_key("payments"));
}

#[test]
fn the_group_size_limit_holds() {
    let coordinator = coordinator();
    let topics = view(&[("t", 1)]);
    let now = Instant::now();
    for member in ["a", "b", "c"] {
        coordinator
            .consumer_heartbeat(join(member, &["t"]), &topics, now)
            .unwrap();
    }
    let fourth = coordinator.consumer_heartbeat(join("d", &["t"]), &topics, now);
    assert_eq!(
        fourth.unwrap_err().error,
        ResponseError::GroupMaxSizeReached
    );
}

#[test]
fn leaving_frees_partitions_and_empties_the_group() {
    let coordinator = coordinator();
    let topics = view(&[("t", 2)]);
    let now = Instant::now();
    coordinator
        .consumer_heartbeat(join("a", &["t"]), &topics, now)
        .unwrap();
    let b = coordinator
        .consumer_heartbeat(join("b", &["t"]), &topics, now)
        .unwrap();
    assert_eq!(b.assignment.as_ref().map(count), Some(0));
    let left = coordinator
        .consumer_heartbeat(beat("a", -1, None), &topics, now)
        .unwrap();
    assert_eq!(left.member_epoch, -1);
    let b2 = coordinator
        .consumer_heartbeat(beat("b", 2, Some(&Assignment::new())), &topics, now)
        .unwrap();
    assert_eq!(b2.assignment.as_ref().map(count), Some(2));
    coordinator
        .consumer_heartbeat(beat("b", -1, None), &topics, now)
        .unwrap();
    assert_eq!(coordinator.describe_consumer("g").unwrap().state, "Empty");
    assert!(coordinator.forget_consumer("g"));
}

#[test]
fn commits_check_the_member_epoch() {
    let coordinator = coordinator();
    let topics = view(&[("t", 2)]);
    let now = Instant::now();
    coordinator
        .consumer_heartbeat(join("a", &["t"]), &topics, now)
        .unwrap();
    assert_eq!(
        coordinator.validate_consumer_commit("g", 1, "a", false, 9),
        Some(Ok(CommitFence::Open))
    );
    // Epoch 0: the member held nothing then, so it may commit nothing.
    assert_eq!(
        coordinator.validate_consumer_commit("g", 0, "a", false, 9),
        Some(Ok(CommitFence::Only(Assignment::new())))
    );
    assert_eq!(
        coordinator.validate_consumer_commit("g", 2, "a", false, 9),
        Some(Err(ResponseError::StaleMemberEpoch))
    );
    assert_eq!(
        coordinator.validate_consumer_commit("g", 1, "a", false, 8),
        Some(Err(ResponseError::UnsupportedVersion))
    );
    assert_eq!(
        coordinator.validate_consumer_commit("g", -1, "", false, 9),
        Some(Err(ResponseError::UnknownMemberId))
    );
    assert_eq!(
        coordinator.validate_consumer_commit("other", 1, "a", false, 9),
        None
    );
}

/// KIP-1251: a commit from an epoch older than the member's writes only the partitions the
/// member holds since that epoch (kept across the new epoch), never ones it gave up or was
/// handed later.
#[test]
fn commits_from_an_older_epoch_write_the_partitions_held_since() {
    let coordinator = coordinator();
    let topics = view(&[("t", 4)]);
    let now = Instant::now();
    let a1 = coordinator
        .consumer_heartbeat(join("a", &["t"]), &topics, now)
        .unwrap();
    let all = a1.assignment.unwrap();
    assert_eq!((a1.member_epoch, count(&all)), (1, 4));
    let b = coordinator
        .consumer_heartbeat(join("b", &["t"]), &topics, now)
        .unwrap();
    assert_eq!(b.member_epoch, 2);
    // `a` must give up half: it stays at epoch 1 until it has.
    let a = coordinator
        .consumer_heartbeat(beat("a", 1, Some(&all)), &topics, now)
        .unwrap();
    let kept = a.assignment.unwrap();
    assert_eq!((a.member_epoch, count(&kept)), (1, 2));
    let given_up = crate::coordinator::consumer_group::subtract(&all, &kept);
    let fence = |epoch| {
        coordinator
            .validate_consumer_commit("g", epoch, "a", false, 9)
            .unwrap()
    };
    // Its revoke callback commits at epoch 1, every partition still its own.
    assert_eq!(fence(1), Ok(CommitFence::Open));
    let a2 = coordinator
        .consumer_heartbeat(beat("a", 1, Some(&kept)), &topics, now)
        .unwrap();
    assert_eq!(a2.member_epoch, 2);
    // A commit still at epoch 1 (sent before the answer arrived) writes what `a` kept only.
    assert_eq!(fence(1), Ok(CommitFence::Only(kept.clone())));
    let stale = fence(1).unwrap();
    for (topic, partitions) in &kept {
        for partition in partitions {
            assert!(stale.admits(topic, *partition as i32));
        }
    }
    for (topic, partitions) in &given_up {
        for partition in partitions {
            assert!(!stale.admits(topic, *partition as i32));
        }
    }
    assert_eq!(fence(2), Ok(CommitFence::Open));
    assert_eq!(fence(3), Err(ResponseError::StaleMemberEpoch));
    // `b` is handed the released partitions at epoch 2: an epoch-1 commit may not write them.
    let b2 = coordinator
        .consumer_heartbeat(beat("b", 2, Some(&Assignment::new())), &topics, now)
        .unwrap();
    assert_eq!(b2.assignment.as_ref(), Some(&given_up));
    assert_eq!(
        coordinator.validate_consumer_commit("g", 1, "b", false, 9),
        Some(Ok(CommitFence::Only(Assignment::new())))
    );
    // Once `b` moves on to epoch 3 keeping them, an epoch-2 commit still writes them.
    coordinator
        .consumer_heartbeat(join("c", &["other"]), &topics, now)
        .unwrap();
    let b3 = coordinator
        .consumer_heartbeat(beat("b", 2, Some(&given_up)), &topics, now)
        .unwrap();
    assert_eq!(b3.member_epoch, 3);
    assert_eq!(
        coordinator.validate_consumer_commit("g", 2, "b", false, 9),
        Some(Ok(CommitFence::Only(given_up)))
    );
}

#[tokio::test]
async fn classic_and_consumer_groups_exclude_each_other() {
    let coordinator = Arc::new(coordinator());
    let shutdown = tokio_util::sync::CancellationToken::new();
    let topics = view(&[("t", 2)]);
    let now = Instant::now();
    coordinator
        .consumer_heartbeat(join("a", &["t"]), &topics, now)
        .unwrap();
    let classic = JoinParams {
        group: "g".to_owned(),
        member_id: String::new(),
        client_id: "c".to_owned(),
        instance_id: None,
        requires_known_member_id: false,
        protocol_type: "consumer".to_owned(),
        protocols: vec![("range".to_owned(), bytes::Bytes::new())],
        session_timeout: Duration::from_secs(10),
        rebalance_timeout: Duration::from_millis(100),
    };
    let refused = coordinator.join(classic.clone(), &shutdown).await;
    assert_eq!(
        refused.error,
        Some(ResponseError::InconsistentGroupProtocol)
    );
    // Empty, the consumer group gives way to a classic one...
    coordinator
        .consumer_heartbeat(beat("a", -1, None), &topics, now)
        .unwrap();
    let joined = coordinator.join(classic, &shutdown).await;
    assert_eq!(joined.error, None);
    assert!(!coordinator.is_consumer_group("g"));
    // ...which, with a member, refuses a consumer-protocol join.
    let refused = coordinator.consumer_heartbeat(join("b", &["t"]), &topics, now);
    assert_eq!(refused.unwrap_err().error, ResponseError::GroupIdNotFound);
}
