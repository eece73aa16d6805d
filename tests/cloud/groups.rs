//! A consumer group's state in PostgreSQL: its committed offsets and generation survive its
//! coordinator being SIGKILLed; the next coordinator carries on from the stored generation and
//! refuses the dead coordinator's member.

use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, JoinGroupRequest,
    JoinGroupResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::broker::connect;
use crate::kafka_wire::{batch, call, produce_once_to};
use crate::topics::cluster;

/// Kafka's MEMBER_ID_REQUIRED (KIP-394: the first JoinGroup gets the id to join with).
const MEMBER_ID_REQUIRED: i16 = 79;

/// The broker id coordinating `group`, as the broker on `stream` answers.
fn coordinator_of(stream: &mut TcpStream, group: &str) -> (i16, i32) {
    let answer: FindCoordinatorResponse = call(
        stream,
        ApiKey::FindCoordinator,
        3,
        &FindCoordinatorRequest::default().with_key(StrBytes::from_string(group.to_owned())),
    );
    (answer.error_code, answer.node_id.0)
}

/// Joins `group` as a new member and completes the round alone: (generation, member id).
fn join_alone(stream: &mut TcpStream, group: &str) -> (i32, String) {
    let mut member = String::new();
    for _ in 0..2 {
        let joined: JoinGroupResponse = call(
            stream,
            ApiKey::JoinGroup,
            5,
            &JoinGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
                .with_session_timeout_ms(30_000)
                .with_rebalance_timeout_ms(10_000)
                .with_member_id(StrBytes::from_string(member.clone()))
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(vec![
                    JoinGroupRequestProtocol::default()
                        .with_name(StrBytes::from_static_str("range"))
                        .with_metadata(Bytes::from_static(b"\0\0\0\0\0\0")),
                ]),
        );
        member = joined.member_id.as_str().to_owned();
        if joined.error_code == MEMBER_ID_REQUIRED {
            continue;
        }
        assert_eq!(joined.error_code, 0, "JoinGroup");
        assert_eq!(joined.leader, joined.member_id, "alone, it leads");
        let synced: SyncGroupResponse = call(
            stream,
            ApiKey::SyncGroup,
            3,
            &SyncGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
                .with_generation_id(joined.generation_id)
                .with_member_id(joined.member_id.clone())
                .with_assignments(vec![
                    SyncGroupRequestAssignment::default()
                        .with_member_id(joined.member_id.clone())
                        .with_assignment(Bytes::from_static(b"assignment")),
                ]),
        );
        assert_eq!(synced.error_code, 0, "SyncGroup");
        return (joined.generation_id, member);
    }
    panic!("JoinGroup asked for a member id twice");
}

/// Commits `offset` for partition 0 of `topic` as (`generation`, `member`): the error code.
fn commit(
    stream: &mut TcpStream,
    group: &str,
    generation: i32,
    member: &str,
    topic: &str,
    offset: i64,
) -> i16 {
    let answer: OffsetCommitResponse = call(
        stream,
        ApiKey::OffsetCommit,
        7,
        &OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(StrBytes::from_string(member.to_owned()))
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partitions(vec![
                        OffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(offset)
                            .with_committed_leader_epoch(-1),
                    ]),
            ]),
    );
    answer.topics[0].partitions[0].error_code
}

/// The committed offset of partition 0 of `topic` (-1: none).
fn committed(stream: &mut TcpStream, group: &str, topic: &str) -> i64 {
    let answer: OffsetFetchResponse = call(
        stream,
        ApiKey::OffsetFetch,
        5,
        &OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                    .with_partition_indexes(vec![0]),
            ])),
    );
    assert_eq!(answer.error_code, 0, "OffsetFetch");
    answer.topics[0].partitions[0].committed_offset
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_groups_offsets_and_generation_survive_its_coordinator_dying() {
    let (mut brokers, _config) = cluster(2, "groups").await;
    let mut streams: Vec<TcpStream> = brokers
        .iter_mut()
        .map(|broker| connect(broker.addr("kafka")))
        .collect();
    let topic = "grouped";
    let group = "survivors";
    // The topic exists with records to commit positions in.
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut produced = 0;
    while produced < 3 {
        let mut accepted = false;
        for stream in &mut streams {
            if produce_once_to(stream, topic, 50 + produced, batch(b"r")).0 == 0 {
                produced += 1;
                accepted = true;
                break;
            }
        }
        if !accepted {
            assert!(Instant::now() < deadline, "no broker accepted the records");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    let (code, coordinator) = coordinator_of(&mut streams[0], group);
    assert_eq!(code, 0);
    let at = (coordinator - 1) as usize;
    let survivor = 1 - at;
    // A fresh coordinator would hand out this generation again; the next one must carry on.
    let (generation, member) = join_alone(&mut streams[at], group);
    assert_eq!(
        commit(&mut streams[at], group, generation, &member, topic, 2),
        0,
        "commit"
    );

    brokers[at].signal("KILL");
    let moved = Instant::now();
    loop {
        let (code, now) = coordinator_of(&mut streams[survivor], group);
        if code == 0 && now == survivor as i32 + 1 {
            break;
        }
        assert!(
            moved.elapsed() < Duration::from_secs(20),
            "the group's coordinator never moved to the survivor ({code}, {now})"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let offset = committed(&mut streams[survivor], group, topic);
    let stale = commit(&mut streams[survivor], group, generation, &member, topic, 3);
    let (next, _) = join_alone(&mut streams[survivor], group);
    eprintln!(
        "coordinator moved after {} ms; committed offset {offset}; generation {generation} -> {next}; \
         the old member's commit got error {stale}",
        moved.elapsed().as_millis()
    );
    assert_eq!(offset, 2, "the committed offset survived");
    assert_ne!(stale, 0, "the dead coordinator's member is refused");
    assert_eq!(next, generation + 1, "the generation carries on");
    assert_eq!(committed(&mut streams[survivor], group, topic), 2);
}
