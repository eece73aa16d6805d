//! ListTransactions (66) and DescribeTransactions (65) at the byte level, as Kafka's
//! coordinator answers them: advertised in ApiVersions, each transaction's state name (Empty,
//! Ongoing, CompleteCommit, CompleteAbort), timeout, start time, producer id and epoch and its
//! partitions; List's state, producer id and (v1) duration filters with unknown state names
//! echoed; an id never initialized is TRANSACTIONAL_ID_NOT_FOUND. The ACL side (DESCRIBE on
//! the id) is in `acl_txn`.

use std::net::TcpStream;

use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::describe_transactions_response::TransactionState;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, ApiVersionsRequest,
    ApiVersionsResponse, DescribeTransactionsRequest, DescribeTransactionsResponse, EndTxnRequest,
    EndTxnResponse, InitProducerIdRequest, InitProducerIdResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use crate::broker::{TestBroker, connect};
use crate::kafka_wire::{batch, call, produce_once_to};

const TRANSACTIONAL_ID_NOT_FOUND: i16 = 105;

/// Kafka's INVALID_TXN_STATE.
const INVALID_TXN_STATE: i16 = 48;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

pub(super) fn init(stream: &mut TcpStream, id: &str, timeout_ms: i32) -> (i64, i16) {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(text(id))))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let answer: InitProducerIdResponse = call(stream, ApiKey::InitProducerId, 4, &request);
    assert_eq!(answer.error_code, 0, "{answer:?}");
    (answer.producer_id.0, answer.producer_epoch)
}

pub(super) fn add_partitions(
    stream: &mut TcpStream,
    id: &str,
    producer: (i64, i16),
    topic: &str,
    partitions: Vec<i32>,
) {
    let request = AddPartitionsToTxnRequest::default()
        .with_v3_and_below_transactional_id(TransactionalId(text(id)))
        .with_v3_and_below_producer_id(ProducerId(producer.0))
        .with_v3_and_below_producer_epoch(producer.1)
        .with_v3_and_below_topics(vec![
            AddPartitionsToTxnTopic::default()
                .with_name(TopicName(text(topic)))
                .with_partitions(partitions),
        ]);
    let answer: AddPartitionsToTxnResponse = call(stream, ApiKey::AddPartitionsToTxn, 3, &request);
    for topic in &answer.results_by_topic_v3_and_below {
        for partition in &topic.results_by_partition {
            assert_eq!(partition.partition_error_code, 0, "{answer:?}");
        }
    }
}

fn end(stream: &mut TcpStream, id: &str, producer: (i64, i16), commit: bool) {
    let request = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(text(id)))
        .with_producer_id(ProducerId(producer.0))
        .with_producer_epoch(producer.1)
        .with_committed(commit);
    let answer: EndTxnResponse = call(stream, ApiKey::EndTxn, 3, &request);
    assert_eq!(answer.error_code, 0, "{answer:?}");
}

pub(super) fn describe(stream: &mut TcpStream, ids: &[&str]) -> Vec<TransactionState> {
    let request = DescribeTransactionsRequest::default()
        .with_transactional_ids(ids.iter().map(|id| TransactionalId(text(id))).collect());
    let answer: DescribeTransactionsResponse =
        call(stream, ApiKey::DescribeTransactions, 0, &request);
    assert_eq!(answer.transaction_states.len(), ids.len(), "{answer:?}");
    ids.iter()
        .map(|id| {
            answer
                .transaction_states
                .iter()
                .find(|state| state.transactional_id.0.as_str() == *id)
                .unwrap_or_else(|| panic!("{id} not answered: {answer:?}"))
                .clone()
        })
        .collect()
}

pub(super) fn list(
    stream: &mut TcpStream,
    version: i16,
    states: &[&str],
    producers: &[i64],
    duration_ms: i64,
) -> ListTransactionsResponse {
    let mut request = ListTransactionsRequest::default()
        .with_state_filters(states.iter().map(|s| text(s)).collect())
        .with_producer_id_filters(producers.iter().map(|p| ProducerId(*p)).collect());
    // v0 cannot carry the field (the encoder refuses it).
    if version >= 1 {
        request.duration_filter = duration_ms;
    }
    call(stream, ApiKey::ListTransactions, version, &request)
}

/// The (id, state) pairs of a ListTransactions answer.
pub(super) fn listed(answer: &ListTransactionsResponse) -> Vec<(String, String)> {
    answer
        .transaction_states
        .iter()
        .map(|state| {
            (
                state.transactional_id.0.to_string(),
                state.transaction_state.to_string(),
            )
        })
        .collect()
}

fn pairs(expected: &[(&str, &str)]) -> Vec<(String, String)> {
    expected
        .iter()
        .map(|(id, state)| ((*id).to_owned(), (*state).to_owned()))
        .collect()
}

#[test]
fn api_versions_advertises_list_and_describe_transactions() {
    let mut broker = TestBroker::start();
    let mut stream = connect(broker.addr("kafka"));
    let answer: ApiVersionsResponse = call(
        &mut stream,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default(),
    );
    let range = |key: ApiKey| {
        answer
            .api_keys
            .iter()
            .find(|api| api.api_key == key as i16)
            .map(|api| (api.min_version, api.max_version))
    };
    assert_eq!(range(ApiKey::DescribeTransactions), Some((0, 0)));
    assert_eq!(range(ApiKey::ListTransactions), Some((0, 1)));
}

#[test]
fn transactions_are_listed_and_described_as_kafka_reports_them() {
    let mut broker = TestBroker::start();
    let mut stream = connect(broker.addr("kafka"));
    let topic = "txn-admin";
    for (name, correlation) in [(topic, 1), ("txn-admin-2", 2)] {
        // Creates the topic (several partitions by default) with a plain record.
        let (code, _) = produce_once_to(&mut stream, name, correlation, batch(b"plain"));
        assert_eq!(code, 0);
    }
    let idle = init(&mut stream, "admin-idle", 30_000);
    let open = init(&mut stream, "admin-open", 45_000);
    let committed = init(&mut stream, "admin-committed", 60_000);
    let aborted = init(&mut stream, "admin-aborted", 60_000);
    add_partitions(&mut stream, "admin-committed", committed, topic, vec![0]);
    end(&mut stream, "admin-committed", committed, true);
    add_partitions(&mut stream, "admin-aborted", aborted, topic, vec![0]);
    end(&mut stream, "admin-aborted", aborted, false);
    let before_open = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    add_partitions(&mut stream, "admin-open", open, topic, vec![2, 0]);
    add_partitions(&mut stream, "admin-open", open, "txn-admin-2", vec![1]);

    let [
        idle_state,
        open_state,
        committed_state,
        aborted_state,
        unknown,
    ] = describe(
        &mut stream,
        &[
            "admin-idle",
            "admin-open",
            "admin-committed",
            "admin-aborted",
            "admin-unknown",
        ],
    )
    .try_into()
    .expect("five answers");
    assert_eq!(idle_state.error_code, 0);
    assert_eq!(idle_state.transaction_state.as_str(), "Empty");
    assert_eq!(idle_state.transaction_timeout_ms, 30_000);
    assert_eq!(idle_state.transaction_start_time_ms, -1);
    assert_eq!((idle_state.producer_id.0, idle_state.producer_epoch), idle);
    assert!(idle_state.topics.is_empty());

    assert_eq!(open_state.transaction_state.as_str(), "Ongoing");
    assert_eq!(open_state.transaction_timeout_ms, 45_000);
    assert!(
        open_state.transaction_start_time_ms >= before_open - 1_000,
        "{open_state:?}"
    );
    let topics: Vec<(String, Vec<i32>)> = open_state
        .topics
        .iter()
        .map(|t| (t.topic.0.to_string(), t.partitions.clone()))
        .collect();
    assert_eq!(
        topics,
        vec![
            (topic.to_owned(), vec![0, 2]),
            ("txn-admin-2".to_owned(), vec![1])
        ]
    );
    assert_eq!(committed_state.transaction_state.as_str(), "CompleteCommit");
    assert!(committed_state.topics.is_empty(), "{committed_state:?}");
    assert_eq!(aborted_state.transaction_state.as_str(), "CompleteAbort");
    assert_eq!(unknown.error_code, TRANSACTIONAL_ID_NOT_FOUND);

    let everything = pairs(&[
        ("admin-aborted", "CompleteAbort"),
        ("admin-committed", "CompleteCommit"),
        ("admin-idle", "Empty"),
        ("admin-open", "Ongoing"),
    ]);
    for version in [0, 1] {
        assert_eq!(
            listed(&list(&mut stream, version, &[], &[], -1)),
            everything
        );
    }
    let by_state = list(
        &mut stream,
        1,
        &["Ongoing", "Bogus", "CompleteAbort"],
        &[],
        -1,
    );
    assert_eq!(
        listed(&by_state),
        pairs(&[
            ("admin-aborted", "CompleteAbort"),
            ("admin-open", "Ongoing")
        ])
    );
    let unknown: Vec<&str> = by_state
        .unknown_state_filters
        .iter()
        .map(|s| s.as_str())
        .collect();
    assert_eq!(unknown, ["Bogus"]);
    let by_producer = list(&mut stream, 1, &[], &[committed.0, idle.0], -1);
    assert_eq!(
        listed(&by_producer),
        pairs(&[
            ("admin-committed", "CompleteCommit"),
            ("admin-idle", "Empty")
        ])
    );
    assert_eq!(by_producer.transaction_states[0].producer_id.0, committed.0);
    // Running for longer than an hour: none; for longer than 0 ms: the open one.
    assert!(listed(&list(&mut stream, 1, &["Ongoing"], &[], 3_600_000)).is_empty());
    assert_eq!(
        listed(&list(&mut stream, 1, &["Ongoing"], &[], 0)),
        pairs(&[("admin-open", "Ongoing")])
    );

    // A new producer session (InitProducerId bumps the epoch) starts from Kafka's `Empty`:
    // the last outcome belongs to the old epoch, so an EndTxn with nothing begun is refused.
    let reinitialized = init(&mut stream, "admin-committed", 60_000);
    assert_eq!(reinitialized, (committed.0, committed.1 + 1));
    let [after] = describe(&mut stream, &["admin-committed"])
        .try_into()
        .expect("one answer");
    assert_eq!(after.transaction_state.as_str(), "Empty", "{after:?}");
    assert_eq!(after.transaction_start_time_ms, -1, "{after:?}");
    let request = EndTxnRequest::default()
        .with_transactional_id(TransactionalId(text("admin-committed")))
        .with_producer_id(ProducerId(reinitialized.0))
        .with_producer_epoch(reinitialized.1)
        .with_committed(true);
    let answer: EndTxnResponse = call(&mut stream, ApiKey::EndTxn, 3, &request);
    assert_eq!(answer.error_code, INVALID_TXN_STATE, "{answer:?}");
}
