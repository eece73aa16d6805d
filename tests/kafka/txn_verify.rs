//! KIP-890 part 1 at the byte level: every transactional batch is verified against the
//! transaction coordinator before it is written, and AddPartitionsToTxn v4-v5 (the brokers'
//! batched form) verifies or adds for several transactions at once.
//!
//! A batch for a partition outside its producer's ongoing transaction is refused with the code
//! Kafka's partition leaders give for the Produce version (INVALID_TXN_STATE and Kafka's message
//! through v10, TRANSACTION_ABORTABLE from v11), one of a fenced epoch INVALID_PRODUCER_EPOCH,
//! and nothing of it is written. Kafka's motivating bug, the "hanging transaction": a late
//! batch of a transaction that already has its marker would open a transaction nobody ends and
//! hold the last stable offset below it forever; here it is refused and the LSO stays at the
//! high watermark. A TxnOffsetCommit is verified too: outside an open transaction (a late
//! retry after EndTxn) it is INVALID_TXN_STATE and opens nothing.

use std::net::TcpStream;

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, ApiKey, ApiVersionsRequest, ApiVersionsResponse, CreateAclsRequest,
    CreateAclsResponse, EndTxnRequest, EndTxnResponse, GroupId, InitProducerIdRequest,
    InitProducerIdResponse, ListOffsetsRequest, ListOffsetsResponse, ProduceResponse, ProducerId,
    TopicName, TransactionalId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::acl::{acl, add_user, login};
use crate::broker::{TestBroker, connect};
use crate::kafka_wire::{call, idempotent_batch, produce_once_to, produce_request};

const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const CLUSTER_DENIED: i16 = 31;
const INVALID_REQUEST: i16 = 42;
const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const INVALID_PRODUCER_ID_MAPPING: i16 = 49;
const OPERATION_NOT_ATTEMPTED: i16 = 55;
const PRODUCER_FENCED: i16 = 90;
const TRANSACTION_ABORTABLE: i16 = 120;
const NOT_ADDED: &str = "Partition was not added to the transaction";

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// A one-record transactional batch of `producer` at `sequence` (CRC recomputed).
fn transactional(producer: (i64, i16), sequence: i32) -> Bytes {
    let mut bytes = idempotent_batch(producer.0, producer.1, sequence).to_vec();
    bytes[21..23].copy_from_slice(&0x10i16.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(bytes)
}

fn init(stream: &mut TcpStream, id: &str) -> (i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(text(id))))
        .with_transaction_timeout_ms(60_000)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let answer: InitProducerIdResponse = call(stream, ApiKey::InitProducerId, 4, &request);
    assert_eq!(answer.error_code, 0, "{answer:?}");
    (answer.producer_id.0, answer.producer_epoch)
}

/// AddPartitionsToTxn v3 (the client form) of partition 0 of `topic`: its code.
fn add(stream: &mut TcpStream, id: &str, producer: (i64, i16), topic: &str) -> i16 {
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(text(id)))
        .with_v3_and_below_producer_id(ProducerId(producer.0))
        .with_v3_and_below_producer_epoch(producer.1)
        .with_v3_and_below_topics(vec![
            AddPartitionsToTxnTopic::default()
                .with_name(TopicName(text(topic)))
                .with_partitions(vec![0]),
        ]);
    let answer: AddPartitionsToTxnResponse = call(stream, ApiKey::AddPartitionsToTxn, 3, &request);
    answer.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
}

fn end(stream: &mut TcpStream, id: &str, producer: (i64, i16), commit: bool) -> i16 {
    let request = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(text(id)))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_committed(commit);
    let answer: EndTxnResponse = call(stream, ApiKey::EndTxn, 3, &request);
    answer.error_code
}

/// Produce of `records` to partition 0 of `topic` as `id` at `version`: (code, message).
fn produce_at(
    stream: &mut TcpStream,
    version: i16,
    id: &str,
    topic: &str,
    records: Bytes,
) -> (i16, Option<String>) {
    let request =
        produce_request(topic, 1, records).with_transactional_id(Some(TransactionalId(text(id))));
    let answer: ProduceResponse = call(stream, ApiKey::Produce, version, &request);
    let partition = &answer.responses[0].partition_responses[0];
    (
        partition.error_code,
        partition.error_message.as_ref().map(|m| m.to_string()),
    )
}

/// Partition 0 of `topic`: (high watermark, last stable offset), from ListOffsets v5 latest
/// under read_uncommitted and read_committed.
fn watermarks(stream: &mut TcpStream, topic: &str) -> (i64, i64) {
    let latest = |isolation: i8, stream: &mut TcpStream| {
        let request = ListOffsetsRequest::default()
            .with_replica_id(kafka_protocol::messages::BrokerId(-1))
            .with_isolation_level(isolation)
            .with_topics(vec![
                ListOffsetsTopic::default()
                    .with_name(TopicName(text(topic)))
                    .with_partitions(vec![
                        ListOffsetsPartition::default()
                            .with_partition_index(0)
                            .with_timestamp(-1),
                    ]),
            ]);
        let answer: ListOffsetsResponse = call(stream, ApiKey::ListOffsets, 5, &request);
        let partition = &answer.topics[0].partitions[0];
        assert_eq!(partition.error_code, 0, "{answer:?}");
        partition.offset
    };
    (latest(0, stream), latest(1, stream))
}

/// A topic of one partition holding one plain record.
fn topic_with_a_record(stream: &mut TcpStream, topic: &str) {
    let (code, _) = produce_once_to(stream, topic, 1, crate::kafka_wire::batch(b"plain"));
    assert_eq!(code, 0);
}

#[test]
fn a_batch_outside_its_transaction_is_refused_as_kafka_does_for_the_produce_version() {
    let mut broker = TestBroker::start();
    let mut stream = connect(broker.addr("kafka"));
    let (topic, id) = ("verify-produce", "verify-produce-id");
    topic_with_a_record(&mut stream, topic);
    let producer = init(&mut stream, id);
    let before = watermarks(&mut stream, topic);

    // No AddPartitionsToTxn yet: Kafka 3.8+'s leader answers by the Produce version.
    for version in [3, 9, 10] {
        let refused = produce_at(&mut stream, version, id, topic, transactional(producer, 0));
        let message = (version >= 8).then(|| NOT_ADDED.to_owned());
        assert_eq!(refused, (INVALID_TXN_STATE, message), "v{version}");
    }
    let refused = produce_at(&mut stream, 11, id, topic, transactional(producer, 0));
    assert_eq!(refused, (TRANSACTION_ABORTABLE, None), "v11");
    assert_eq!(watermarks(&mut stream, topic), before, "nothing written");

    // Added: the same batch goes in.
    assert_eq!(add(&mut stream, id, producer, topic), 0);
    let (code, _) = produce_at(&mut stream, 11, id, topic, transactional(producer, 0));
    assert_eq!(code, 0);
    let written = watermarks(&mut stream, topic);
    assert_eq!(written.0, before.0 + 1);
    assert_eq!(written.1, before.0, "the open transaction holds the LSO");

    // Another instance fences this epoch: its batches are refused even for an added partition.
    let newer = init(&mut stream, id);
    assert!(newer.1 > producer.1);
    for version in [9, 11] {
        let (code, _) = produce_at(&mut stream, version, id, topic, transactional(producer, 1));
        assert_eq!(code, INVALID_PRODUCER_EPOCH, "v{version}");
    }
    // A producer id the transactional id does not hold.
    let stranger = (newer.0 + 1000, 0);
    let (code, _) = produce_at(&mut stream, 11, id, topic, transactional(stranger, 0));
    assert_eq!(code, INVALID_PRODUCER_ID_MAPPING);
    // An id never initialized (the coordinator does not start remembering it).
    let (code, _) = produce_at(
        &mut stream,
        11,
        "verify-nobody",
        topic,
        transactional(newer, 0),
    );
    assert_eq!(code, INVALID_PRODUCER_ID_MAPPING);
    let (hw, lso) = watermarks(&mut stream, topic);
    // The re-init aborted the open transaction: its marker is the only record since.
    assert_eq!((hw, lso), (written.0 + 1, written.0 + 1));
}

#[test]
fn a_late_batch_after_its_transactions_marker_is_refused_and_the_lso_moves_on() {
    let mut broker = TestBroker::start();
    let mut stream = connect(broker.addr("kafka"));
    for (round, commit) in [(0, false), (1, true)] {
        let topic = format!("hanging-{round}");
        let id = format!("hanging-id-{round}");
        topic_with_a_record(&mut stream, &topic);
        let producer = init(&mut stream, &id);
        assert_eq!(add(&mut stream, &id, producer, &topic), 0);
        let (code, _) = produce_at(&mut stream, 9, &id, &topic, transactional(producer, 0));
        assert_eq!(code, 0);
        assert_eq!(
            watermarks(&mut stream, &topic),
            (2, 1),
            "open: LSO at its batch"
        );
        assert_eq!(end(&mut stream, &id, producer, commit), 0);
        assert_eq!(watermarks(&mut stream, &topic), (3, 3), "marker written");

        // The late batch (a retry that arrives after the marker, same producer and epoch).
        let late: Vec<i16> = [9, 11]
            .into_iter()
            .map(|version| {
                produce_at(
                    &mut stream,
                    version,
                    &id,
                    &topic,
                    transactional(producer, 1),
                )
                .0
            })
            .collect();
        assert_eq!(
            watermarks(&mut stream, &topic),
            (3, 3),
            "nothing written; the LSO is not held by a transaction nobody ends"
        );
        assert_eq!(
            late,
            vec![INVALID_TXN_STATE, TRANSACTION_ABORTABLE],
            "v9 and v11, commit {commit}"
        );
        // The producer goes on with a new transaction.
        assert_eq!(add(&mut stream, &id, producer, &topic), 0);
        let (code, _) = produce_at(&mut stream, 11, &id, &topic, transactional(producer, 1));
        assert_eq!(code, 0);
        assert_eq!(end(&mut stream, &id, producer, true), 0);
        assert_eq!(watermarks(&mut stream, &topic), (5, 5));
    }
}

#[test]
fn from_produce_v12_a_batch_adds_its_partition_to_the_transaction() {
    let mut broker = TestBroker::start();
    let mut stream = connect(broker.addr("kafka"));
    let (topic, id) = ("implicit-add", "implicit-add-id");
    topic_with_a_record(&mut stream, topic);
    let producer = init(&mut stream, id);

    // No AddPartitionsToTxn: v12 adds the partition (Kafka's leaders do, KIP-890 part 2).
    let (code, _) = produce_at(&mut stream, 12, id, topic, transactional(producer, 0));
    assert_eq!(code, 0);
    assert_eq!(
        watermarks(&mut stream, topic),
        (2, 1),
        "open: LSO at its batch"
    );
    // The coordinator knows the partition: its marker goes there and the LSO moves on.
    assert_eq!(end(&mut stream, id, producer, true), 0);
    assert_eq!(watermarks(&mut stream, topic), (3, 3));

    // A fenced epoch is refused before anything is added or written.
    let newer = init(&mut stream, id);
    let (code, _) = produce_at(&mut stream, 12, id, topic, transactional(producer, 1));
    assert_eq!(code, INVALID_PRODUCER_EPOCH);
    let (code, _) = produce_at(&mut stream, 12, id, topic, transactional(newer, 0));
    assert_eq!(code, 0);
    assert_eq!(end(&mut stream, id, newer, false), 0);
    assert_eq!(watermarks(&mut stream, topic), (5, 5));
}

/// AddOffsetsToTxn v3 for `group`: its code.
fn add_offsets(stream: &mut TcpStream, id: &str, producer: (i64, i16), group: &str) -> i16 {
    let request = AddOffsetsToTxnRequest::default()
        .with_transactional_id(TransactionalId(text(id)))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_group_id(GroupId(text(group)));
    let answer: AddOffsetsToTxnResponse = call(stream, ApiKey::AddOffsetsToTxn, 3, &request);
    answer.error_code
}

/// TxnOffsetCommit v3 of `offset` for partition 0 of `topic` in `group`, from outside the
/// group protocol (generation -1): its code.
fn commit_offset(
    stream: &mut TcpStream,
    (id, producer): (&str, (i64, i16)),
    group: &str,
    topic: &str,
    offset: i64,
) -> i16 {
    let request = TxnOffsetCommitRequest::default()
        .with_transactional_id(TransactionalId(text(id)))
        .with_group_id(GroupId(text(group)))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_generation_id(-1)
        .with_topics(vec![
            TxnOffsetCommitRequestTopic::default()
                .with_name(TopicName(text(topic)))
                .with_partitions(vec![
                    TxnOffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(offset),
                ]),
        ]);
    let answer: TxnOffsetCommitResponse = call(stream, ApiKey::TxnOffsetCommit, 3, &request);
    answer.topics[0].partitions[0].error_code
}

#[test]
fn a_txn_offset_commit_outside_an_open_transaction_is_refused() {
    let mut broker = TestBroker::start();
    let mut stream = connect(broker.addr("kafka"));
    let (topic, id, group) = ("late-offsets", "late-offsets-id", "late-offsets-group");
    topic_with_a_record(&mut stream, topic);
    let producer = init(&mut stream, id);
    // Before AddOffsetsToTxn nothing is open.
    assert_eq!(
        commit_offset(&mut stream, (id, producer), group, topic, 1),
        INVALID_TXN_STATE
    );
    assert_eq!(add_offsets(&mut stream, id, producer, group), 0);
    assert_eq!(
        commit_offset(&mut stream, (id, producer), group, topic, 1),
        0
    );
    assert_eq!(end(&mut stream, id, producer, true), 0);
    // A late retry of the commit's offsets: refused, and no transaction of its own is opened
    // (an abort finds nothing to abort).
    assert_eq!(
        commit_offset(&mut stream, (id, producer), group, topic, 1),
        INVALID_TXN_STATE
    );
    assert_eq!(end(&mut stream, id, producer, false), INVALID_TXN_STATE);
}

fn partitions_of(topic: &str) -> AddPartitionsToTxnTopic {
    AddPartitionsToTxnTopic::default()
        .with_name(TopicName(text(topic)))
        .with_partitions(vec![0])
}

fn transaction(
    id: &str,
    producer: (i64, i16),
    verify_only: bool,
    topics: &[&str],
) -> AddPartitionsToTxnTransaction {
    AddPartitionsToTxnTransaction::default()
        .with_transactional_id(TransactionalId(text(id)))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_verify_only(verify_only)
        .with_topics(topics.iter().map(|topic| partitions_of(topic)).collect())
}

/// AddPartitionsToTxn at `version` (4+) of `transactions`: per transaction, its partitions'
/// codes by topic in the order asked.
fn batched(
    stream: &mut TcpStream,
    version: i16,
    transactions: Vec<AddPartitionsToTxnTransaction>,
) -> (i16, Vec<(String, Vec<i16>)>) {
    let asked: Vec<Vec<String>> = transactions
        .iter()
        .map(|t| {
            t.topics
                .iter()
                .map(|topic| topic.name.0.to_string())
                .collect()
        })
        .collect();
    let request = AddPartitionsToTxnRequest::default().with_transactions(transactions);
    let answer: AddPartitionsToTxnResponse =
        call(stream, ApiKey::AddPartitionsToTxn, version, &request);
    let results = answer
        .results_by_transaction
        .iter()
        .zip(asked)
        .map(|(result, topics)| {
            let codes = topics
                .iter()
                .map(|topic| {
                    let found = result
                        .topic_results
                        .iter()
                        .find(|t| t.name.0.as_str() == topic)
                        .unwrap_or_else(|| panic!("no result for {topic}: {answer:?}"));
                    found.results_by_partition[0].partition_error_code
                })
                .collect();
            (result.transactional_id.0.to_string(), codes)
        })
        .collect();
    (answer.error_code, results)
}

#[test]
fn add_partitions_v4_and_v5_verify_or_add_for_several_transactions() {
    let mut broker = TestBroker::start();
    let mut stream = connect(broker.addr("kafka"));
    let versions: ApiVersionsResponse = call(
        &mut stream,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default(),
    );
    let advertised = versions
        .api_keys
        .iter()
        .find(|api| api.api_key == ApiKey::AddPartitionsToTxn as i16)
        .expect("AddPartitionsToTxn advertised");
    assert_eq!((advertised.min_version, advertised.max_version), (0, 5));

    let (a, b) = ("batched-a", "batched-b");
    topic_with_a_record(&mut stream, a);
    topic_with_a_record(&mut stream, b);
    let first = init(&mut stream, "batched-1");
    let second = init(&mut stream, "batched-2");
    assert_eq!(add(&mut stream, "batched-1", first, a), 0);

    // VerifyOnly: in the transaction or not (the code by version), per transaction.
    for (version, outside) in [(4, INVALID_TXN_STATE), (5, TRANSACTION_ABORTABLE)] {
        let (top, results) = batched(
            &mut stream,
            version,
            vec![
                transaction("batched-1", first, true, &[a, b]),
                transaction("batched-2", second, true, &[a]),
                transaction("batched-1-stale", first, true, &[a]),
            ],
        );
        assert_eq!(top, 0);
        assert_eq!(
            results,
            vec![
                ("batched-1".to_owned(), vec![0, outside]),
                ("batched-2".to_owned(), vec![outside]),
                (
                    "batched-1-stale".to_owned(),
                    vec![INVALID_PRODUCER_ID_MAPPING]
                ),
            ],
            "v{version}"
        );
    }
    // Verifying added nothing: the client's batch for b is still refused.
    let (code, _) = produce_at(&mut stream, 11, "batched-1", b, transactional(first, 0));
    assert_eq!(code, TRANSACTION_ABORTABLE);

    // A fenced epoch, an unknown topic, an empty id.
    let (_, results) = batched(
        &mut stream,
        5,
        vec![
            transaction("batched-1", (first.0, first.1 - 1), true, &[a]),
            transaction("batched-2", second, false, &[a, "batched-none"]),
            transaction("", second, true, &[a]),
        ],
    );
    let codes: Vec<Vec<i16>> = results.into_iter().map(|(_, codes)| codes).collect();
    assert_eq!(
        codes,
        vec![
            vec![PRODUCER_FENCED],
            vec![OPERATION_NOT_ATTEMPTED, UNKNOWN_TOPIC_OR_PARTITION],
            vec![INVALID_REQUEST],
        ]
    );

    // Without VerifyOnly the partitions join: the verification then passes and batches go in.
    let (_, results) = batched(
        &mut stream,
        5,
        vec![
            transaction("batched-1", first, false, &[b]),
            transaction("batched-2", second, false, &[a, b]),
        ],
    );
    assert_eq!(
        results,
        vec![
            ("batched-1".to_owned(), vec![0]),
            ("batched-2".to_owned(), vec![0, 0]),
        ]
    );
    let (_, results) = batched(
        &mut stream,
        5,
        vec![transaction("batched-1", first, true, &[a, b])],
    );
    assert_eq!(results, vec![("batched-1".to_owned(), vec![0, 0])]);
    let (code, _) = produce_at(&mut stream, 11, "batched-1", b, transactional(first, 0));
    assert_eq!(code, 0);
    let (code, _) = produce_at(&mut stream, 9, "batched-2", b, transactional(second, 0));
    assert_eq!(code, 0);
    assert_eq!(end(&mut stream, "batched-1", first, true), 0);
    assert_eq!(end(&mut stream, "batched-2", second, false), 0);
}

#[test]
fn add_partitions_v4_needs_cluster_action_under_the_authorizer() {
    const CLUSTER: i8 = 4;
    const LITERAL: i8 = 3;
    const CLUSTER_ACTION: i8 = 9;
    const ALLOW: i8 = 3;
    let mut broker = TestBroker::start_prepared(&["--config", "tributary.toml"], |root| {
        std::fs::write(
            root.join("tributary.toml"),
            "[kafka]\nsasl_enabled = true\nauthorizer = true\nsuper_users = [\"admin\"]\n",
        )
        .expect("config");
        for user in ["admin", "alice", "bob"] {
            add_user(root, user, &format!("{user}-secret"));
        }
    });
    let kafka = broker.addr("kafka");
    let mut admin = login(kafka, "admin", "admin-secret");
    let granted: CreateAclsResponse = call(
        &mut admin,
        ApiKey::CreateAcls,
        3,
        &CreateAclsRequest::default().with_creations(vec![acl(
            CLUSTER,
            LITERAL,
            "kafka-cluster",
            CLUSTER_ACTION,
            ALLOW,
        )]),
    );
    assert!(
        granted.results.iter().all(|r| r.error_code == 0),
        "{granted:?}"
    );
    topic_with_a_record(&mut admin, "acl-batched");

    let asked = || {
        vec![transaction(
            "acl-batched-id",
            (0, 0),
            true,
            &["acl-batched"],
        )]
    };
    // bob is a client, not a broker: the whole request is refused at the top level.
    let mut bob = login(kafka, "bob", "bob-secret");
    let (top, results) = batched(&mut bob, 4, asked());
    assert_eq!((top, results.len()), (CLUSTER_DENIED, 0));
    // alice holds CLUSTER_ACTION: answered as without the authorizer (no such transaction).
    let mut alice = login(kafka, "alice", "alice-secret");
    let (top, results) = batched(&mut alice, 5, asked());
    assert_eq!(top, 0);
    assert_eq!(
        results,
        vec![(
            "acl-batched-id".to_owned(),
            vec![INVALID_PRODUCER_ID_MAPPING]
        )]
    );
}
