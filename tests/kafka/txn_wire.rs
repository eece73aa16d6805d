//! Transactional Produce and the coordinator APIs at the byte level: what librdkafka never
//! sends but a broken or hostile client may. A control batch from a client is refused
//! INVALID_RECORD; a transactional batch needs the request's transactional id (53), an open
//! transaction holding the partition (INVALID_TXN_STATE) and the current epoch (an older one is
//! INVALID_PRODUCER_EPOCH); EndTxn of a fenced epoch gets PRODUCER_FENCED; a timeout above the
//! maximum gets INVALID_TRANSACTION_TIMEOUT.

use std::net::TcpStream;

use bytes::Bytes;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, EndTxnRequest, EndTxnResponse,
    InitProducerIdRequest, InitProducerIdResponse, ProduceResponse, ProducerId, TopicName,
    TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use crate::broker::{TestBroker, connect};
use crate::kafka_wire::{call, idempotent_batch, produce_once_to, produce_request};

const INVALID_PRODUCER_EPOCH: i16 = 47;
const INVALID_TXN_STATE: i16 = 48;
const INVALID_TRANSACTION_TIMEOUT: i16 = 50;
const TRANSACTIONAL_ID_DENIED: i16 = 53;
const INVALID_RECORD: i16 = 87;
const PRODUCER_FENCED: i16 = 90;

fn text(value: &str) -> StrBytes {
    StrBytes::from_string(value.to_owned())
}

/// `batch` with the attribute bits `attributes` set (CRC recomputed).
fn with_attributes(batch: Bytes, attributes: i16) -> Bytes {
    let mut bytes = batch.to_vec();
    bytes[21..23].copy_from_slice(&attributes.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    Bytes::from(bytes)
}

fn init(stream: &mut TcpStream, id: &str, timeout_ms: i32) -> InitProducerIdResponse {
    let request = InitProducerIdRequest::default()
        .with_transactional_id(Some(TransactionalId(text(id))))
        .with_transaction_timeout_ms(timeout_ms)
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    call(stream, ApiKey::InitProducerId, 4, &request)
}

fn add_partition(stream: &mut TcpStream, id: &str, producer: (i64, i16), topic: &str) -> i16 {
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

/// Produce v9 of `records` to partition 0 of `topic` as transactional id `id`: the error code.
fn produce_as(stream: &mut TcpStream, id: &str, topic: &str, records: Bytes) -> i16 {
    let request =
        produce_request(topic, 1, records).with_transactional_id(Some(TransactionalId(text(id))));
    let answer: ProduceResponse = call(stream, ApiKey::Produce, 9, &request);
    answer.responses[0].partition_responses[0].error_code
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

#[test]
fn transactional_produce_is_checked_against_the_coordinator() {
    let mut broker = TestBroker::start();
    let mut stream = connect(broker.addr("kafka"));
    let topic = "txn-wire";
    // Creates the topic with a plain record.
    let (code, _) = produce_once_to(&mut stream, topic, 1, crate::kafka_wire::batch(b"plain"));
    assert_eq!(code, 0);

    let refused = init(&mut stream, "wire-id", 900_001);
    assert_eq!(refused.error_code, INVALID_TRANSACTION_TIMEOUT);
    let first = init(&mut stream, "wire-id", 60_000);
    assert_eq!(first.error_code, 0);
    let producer = (first.producer_id.0, first.producer_epoch);
    let data = || with_attributes(idempotent_batch(producer.0, producer.1, 0), 0x10);

    // A client's control batch, with or without a transactional id.
    let control = with_attributes(idempotent_batch(producer.0, producer.1, 0), 0x30);
    assert_eq!(
        produce_as(&mut stream, "wire-id", topic, control.clone()),
        INVALID_RECORD
    );
    let (code, _) = produce_once_to(&mut stream, topic, 2, control);
    assert_eq!(code, INVALID_RECORD);
    // A transactional batch without the request's transactional id.
    let (code, _) = produce_once_to(&mut stream, topic, 3, data());
    assert_eq!(code, TRANSACTIONAL_ID_DENIED);
    // Before AddPartitionsToTxn, the partition is not in a transaction.
    assert_eq!(
        produce_as(&mut stream, "wire-id", topic, data()),
        INVALID_TXN_STATE
    );
    assert_eq!(add_partition(&mut stream, "wire-id", producer, topic), 0);
    assert_eq!(produce_as(&mut stream, "wire-id", topic, data()), 0);

    // A second init fences the first epoch: its produce and EndTxn are refused.
    let second = init(&mut stream, "wire-id", 60_000);
    assert_eq!(second.producer_id.0, producer.0);
    // One bump for the abort of the open transaction, one for the new instance (as Kafka).
    assert_eq!(second.producer_epoch, producer.1 + 2);
    let stale = with_attributes(idempotent_batch(producer.0, producer.1, 1), 0x10);
    assert_eq!(
        produce_as(&mut stream, "wire-id", topic, stale),
        INVALID_PRODUCER_EPOCH
    );
    assert_eq!(end(&mut stream, "wire-id", producer, true), PRODUCER_FENCED);
    // The current epoch with nothing open: EndTxn is an invalid state.
    let current = (second.producer_id.0, second.producer_epoch);
    assert_eq!(
        end(&mut stream, "wire-id", current, true),
        INVALID_TXN_STATE
    );
}
