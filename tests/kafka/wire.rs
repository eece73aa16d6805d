//! The Kafka frontend at the byte level, against the real binary: the KIP-511 fallback, acks=0,
//! CORRUPT_MESSAGE, and bad frames closing only their own connection.

use crate::broker;
use crate::kafka_wire::{
    batch, idempotent_batch, init_producer_id, produce_once_to, produce_request, receive, send,
};

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use broker::{TestBroker, connect};
use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, StrBytes};

/// True once the peer has closed the connection.
fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
}

#[test]
fn api_versions_above_our_range_gets_the_v0_fallback() {
    let mut broker = TestBroker::start();
    let mut stream = connect(broker.addr("kafka"));
    // ApiVersions v9 does not exist; the body is whatever the client thinks v9 is.
    let mut frame = BytesMut::new();
    frame.put_i32(10);
    frame.put_slice(&[0x00, 0x12, 0x00, 0x09, 0x00, 0x00, 0x00, 0x2a, 0xff, 0xff]);
    stream.write_all(&frame).unwrap();
    let (correlation, mut body) = receive(&mut stream, 0);
    assert_eq!(correlation, 42);
    let answer = ApiVersionsResponse::decode(&mut body, 0).expect("v0 body");
    assert_eq!(answer.error_code, 35);
    let api_versions = answer
        .api_keys
        .iter()
        .find(|api| api.api_key == 18)
        .unwrap();
    assert_eq!((api_versions.min_version, api_versions.max_version), (0, 4));
    assert!(
        answer
            .api_keys
            .iter()
            .any(|api| api.api_key == 0 && api.max_version == 13)
    );

    // The client retries with v3 on the same connection: header v0, flexible v3 body.
    send(
        &mut stream,
        ApiKey::ApiVersions,
        3,
        43,
        &ApiVersionsRequest::default(),
    );
    let (correlation, mut body) = receive(&mut stream, 0);
    assert_eq!(correlation, 43);
    let answer = ApiVersionsResponse::decode(&mut body, 3).expect("v3 body");
    assert_eq!(answer.error_code, 0);
    assert_eq!(
        answer.api_keys.len(),
        tributary_kafka::codec::SUPPORTED_APIS.len()
    );
}

#[test]
fn produce_answers_offsets_corrupt_message_and_nothing_for_acks_zero() {
    let mut broker = TestBroker::start();
    let mut stream = connect(broker.addr("kafka"));
    let header_version = ApiKey::Produce.response_header_version(9);

    send(
        &mut stream,
        ApiKey::Produce,
        9,
        1,
        &produce_request("wire", 1, batch(b"one")),
    );
    let (correlation, mut body) = receive(&mut stream, header_version);
    assert_eq!(correlation, 1);
    let answer = ProduceResponse::decode(&mut body, 9).unwrap();
    let partition = &answer.responses[0].partition_responses[0];
    assert_eq!((partition.error_code, partition.base_offset), (0, 0));

    let mut corrupt = batch(b"two").to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x01;
    send(
        &mut stream,
        ApiKey::Produce,
        9,
        2,
        &produce_request("wire", -1, corrupt.into()),
    );
    let (correlation, mut body) = receive(&mut stream, header_version);
    assert_eq!(correlation, 2);
    let answer = ProduceResponse::decode(&mut body, 9).unwrap();
    assert_eq!(
        answer.responses[0].partition_responses[0].error_code, 2,
        "CORRUPT_MESSAGE"
    );

    // acks=0: no response; the next response on the wire answers the next request.
    send(
        &mut stream,
        ApiKey::Produce,
        9,
        3,
        &produce_request("wire", 0, batch(b"three")),
    );
    send(
        &mut stream,
        ApiKey::Produce,
        9,
        4,
        &produce_request("wire", 1, batch(b"four")),
    );
    let (correlation, mut body) = receive(&mut stream, header_version);
    assert_eq!(correlation, 4);
    let answer = ProduceResponse::decode(&mut body, 9).unwrap();
    // "one" at 0, the acks=0 "three" at 1, "four" at 2; the corrupt batch took no offset.
    assert_eq!(answer.responses[0].partition_responses[0].base_offset, 2);
}

/// Produce requests are pipelined (written in order, answered after their fsync) up to a cap;
/// the responses still come in request order, offsets stay dense, and a request of another
/// kind is answered after every produce before it.
#[test]
fn pipelined_produces_are_answered_in_order() {
    let mut broker = TestBroker::start();
    let mut stream = connect(broker.addr("kafka"));
    let header_version = ApiKey::Produce.response_header_version(9);
    // More than the connection's pipelining cap (32), all sent before any response is read.
    let produces = 40;
    for correlation in 1..=produces {
        send(
            &mut stream,
            ApiKey::Produce,
            9,
            correlation,
            &produce_request("pipelined", 1, batch(b"value")),
        );
    }
    send(
        &mut stream,
        ApiKey::ApiVersions,
        3,
        produces + 1,
        &ApiVersionsRequest::default(),
    );
    for correlation in 1..=produces {
        let (got, mut body) = receive(&mut stream, header_version);
        assert_eq!(got, correlation, "responses in request order");
        let answer = ProduceResponse::decode(&mut body, 9).unwrap();
        let partition = &answer.responses[0].partition_responses[0];
        assert_eq!(partition.error_code, 0);
        assert_eq!(
            partition.base_offset,
            i64::from(correlation - 1),
            "dense offsets"
        );
    }
    let (got, _) = receive(&mut stream, ApiKey::ApiVersions.response_header_version(3));
    assert_eq!(got, produces + 1, "ApiVersions answered after the produces");
}

#[test]
fn bad_frames_close_only_their_own_connection() {
    let mut broker = TestBroker::start();
    let addr = broker.addr("kafka");
    let mut healthy = connect(addr);

    let mut oversized = connect(addr);
    oversized.write_all(&i32::MAX.to_be_bytes()).unwrap();
    assert!(
        closed(&mut oversized),
        "oversized frame must close the connection"
    );

    let mut unknown_key = connect(addr);
    unknown_key
        .write_all(&[0, 0, 0, 10, 0x03, 0xe7, 0, 0, 0, 0, 0, 1, 0xff, 0xff])
        .unwrap();
    assert!(
        closed(&mut unknown_key),
        "unknown API key must close the connection"
    );

    let mut unsupported_version = connect(addr);
    // Produce v2: key 0, version 2, correlation 9, null client id, then a body never decoded.
    unsupported_version
        .write_all(&[0, 0, 0, 12, 0, 0, 0, 2, 0, 0, 0, 9, 0xff, 0xff, 0, 1])
        .unwrap();
    assert!(
        closed(&mut unsupported_version),
        "Produce v2 is below the KIP-896 baseline"
    );

    send(
        &mut healthy,
        ApiKey::ApiVersions,
        0,
        7,
        &ApiVersionsRequest::default(),
    );
    let (correlation, mut body) = receive(&mut healthy, 0);
    assert_eq!(correlation, 7);
    assert_eq!(
        ApiVersionsResponse::decode(&mut body, 0)
            .unwrap()
            .error_code,
        0
    );
    broker.wait_for_line(&["kafka protocol error"], Duration::from_secs(5));
}

/// Produces one batch to `idem` with acks=1: (error code, base offset).
fn produce_once(stream: &mut TcpStream, correlation: i32, records: Bytes) -> (i16, i64) {
    produce_once_to(stream, "idem", correlation, records)
}

#[test]
fn idempotent_retries_are_written_once_and_sequence_state_survives_a_restart() {
    let mut broker = TestBroker::start();
    let mut stream = connect(broker.addr("kafka"));
    let producer = init_producer_id(&mut stream, 1);
    assert!(producer >= 0);

    assert_eq!(
        produce_once(&mut stream, 2, idempotent_batch(producer, 0, 0)),
        (0, 0)
    );
    // The same batch again (a retry after a lost response): same offset, no second copy.
    assert_eq!(
        produce_once(&mut stream, 3, idempotent_batch(producer, 0, 0)),
        (0, 0)
    );
    // A gap in the sequence is refused with OUT_OF_ORDER_SEQUENCE_NUMBER (45).
    assert_eq!(
        produce_once(&mut stream, 4, idempotent_batch(producer, 0, 5)).0,
        45
    );
    assert_eq!(
        produce_once(&mut stream, 5, idempotent_batch(producer, 0, 1)),
        (0, 1)
    );

    broker.kill_and_restart();
    let mut stream = connect(broker.addr("kafka"));
    assert_eq!(
        produce_once(&mut stream, 6, idempotent_batch(producer, 0, 1)),
        (0, 1)
    );
    assert_eq!(
        produce_once(&mut stream, 7, idempotent_batch(producer, 0, 3)).0,
        45
    );
    assert_eq!(
        produce_once(&mut stream, 8, idempotent_batch(producer, 0, 2)),
        (0, 2)
    );
    // An older epoch is fenced after a newer one wrote (INVALID_PRODUCER_EPOCH, 47).
    assert_eq!(
        produce_once(&mut stream, 9, idempotent_batch(producer, 1, 0)),
        (0, 3)
    );
    assert_eq!(
        produce_once(&mut stream, 10, idempotent_batch(producer, 0, 3)).0,
        47
    );
}

#[test]
fn produce_13_and_fetch_13_address_topics_by_their_stable_id() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
    use kafka_protocol::messages::{
        FetchRequest, FetchResponse, MetadataRequest, MetadataResponse,
    };

    let mut broker = TestBroker::start();
    let mut stream = connect(broker.addr("kafka"));
    let topic = TopicName(StrBytes::from_static_str("by-id"));
    let metadata = MetadataRequest::default()
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic.clone())),
        ]))
        .with_allow_auto_topic_creation(true);
    send(&mut stream, ApiKey::Metadata, 12, 1, &metadata);
    let (_, mut body) = receive(&mut stream, 1);
    let described = MetadataResponse::decode(&mut body, 12).unwrap();
    let id = described.topics[0].topic_id;
    assert!(!id.is_nil());

    let by_id = |records: Bytes, id| {
        ProduceRequest::default()
            .with_acks(1)
            .with_timeout_ms(5_000)
            .with_topic_data(vec![
                TopicProduceData::default()
                    .with_topic_id(id)
                    .with_partition_data(vec![
                        PartitionProduceData::default()
                            .with_index(0)
                            .with_records(Some(records)),
                    ]),
            ])
    };
    let sent_batch = batch(b"by id");
    send(
        &mut stream,
        ApiKey::Produce,
        13,
        2,
        &by_id(sent_batch.clone(), id),
    );
    let (_, mut body) = receive(&mut stream, 1);
    let produced = ProduceResponse::decode(&mut body, 13).unwrap();
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);
    let stranger = uuid::Uuid::from_u128(7);
    send(
        &mut stream,
        ApiKey::Produce,
        13,
        3,
        &by_id(batch(b"lost"), stranger),
    );
    let (_, mut body) = receive(&mut stream, 1);
    let refused = ProduceResponse::decode(&mut body, 13).unwrap();
    assert_eq!(
        refused.responses[0].partition_responses[0].error_code, 100,
        "UNKNOWN_TOPIC_ID"
    );

    let fetch = |id| {
        FetchRequest::default()
            .with_max_wait_ms(0)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic_id(id)
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(0)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ])
    };
    send(&mut stream, ApiKey::Fetch, 16, 4, &fetch(id));
    let (_, mut body) = receive(&mut stream, 1);
    let fetched = FetchResponse::decode(&mut body, 16).unwrap();
    let partition = &fetched.responses[0].partitions[0];
    assert_eq!((partition.error_code, partition.high_watermark), (0, 1));
    let records = partition.records.clone().expect("records");
    // The stored batch is the produced one with its base offset assigned (0 here).
    assert_eq!(records, sent_batch);
    send(&mut stream, ApiKey::Fetch, 16, 5, &fetch(stranger));
    let (_, mut body) = receive(&mut stream, 1);
    let fetched = FetchResponse::decode(&mut body, 16).unwrap();
    assert_eq!(fetched.responses[0].partitions[0].error_code, 100);
}

#[test]
fn fetch_long_polls_until_data_arrives_or_max_wait() {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, FetchResponse};
    use std::time::Instant;

    let mut broker = TestBroker::start();
    let addr = broker.addr("kafka");
    let mut producer = connect(addr);
    // Creates the topic (auto-create) with one record at offset 0.
    assert_eq!(
        produce_once_to(&mut producer, "poll", 1, batch(b"first")),
        (0, 0)
    );

    let fetch = |offset: i64, max_wait_ms: i32, min_bytes: i32| {
        FetchRequest::default()
            .with_max_wait_ms(max_wait_ms)
            .with_min_bytes(min_bytes)
            .with_max_bytes(1 << 20)
            .with_session_epoch(-1)
            .with_topics(vec![
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_static_str("poll")))
                    .with_partitions(vec![
                        FetchPartition::default()
                            .with_partition(0)
                            .with_fetch_offset(offset)
                            .with_partition_max_bytes(1 << 20),
                    ]),
            ])
    };
    let mut consumer = connect(addr);
    let writer = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(400));
        produce_once_to(&mut producer, "poll", 2, batch(b"second"))
    });
    let started = Instant::now();
    send(&mut consumer, ApiKey::Fetch, 12, 3, &fetch(1, 5_000, 1));
    let (_, mut body) = receive(&mut consumer, 1);
    let waited = started.elapsed();
    let answer = FetchResponse::decode(&mut body, 12).unwrap();
    let partition = &answer.responses[0].partitions[0];
    assert_eq!(partition.high_watermark, 2);
    assert!(!partition.records.as_ref().expect("records").is_empty());
    assert!(
        waited >= Duration::from_millis(300),
        "answered before the data: {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(4),
        "did not wake on new data: {waited:?}"
    );
    assert_eq!(writer.join().expect("writer"), (0, 1));

    // min_bytes far above what exists: the poll returns what there is after max_wait.
    let started = Instant::now();
    send(&mut consumer, ApiKey::Fetch, 12, 4, &fetch(0, 300, 1 << 20));
    let (_, mut body) = receive(&mut consumer, 1);
    let waited = started.elapsed();
    let answer = FetchResponse::decode(&mut body, 12).unwrap();
    assert!(
        !answer.responses[0].partitions[0]
            .records
            .as_ref()
            .unwrap()
            .is_empty()
    );
    assert!(
        waited >= Duration::from_millis(250),
        "min_bytes ignored: {waited:?}"
    );

    // Past the high watermark: OFFSET_OUT_OF_RANGE (1), answered at once.
    send(&mut consumer, ApiKey::Fetch, 12, 5, &fetch(9, 5_000, 1));
    let (_, mut body) = receive(&mut consumer, 1);
    let answer = FetchResponse::decode(&mut body, 12).unwrap();
    assert_eq!(answer.responses[0].partitions[0].error_code, 1);
}
