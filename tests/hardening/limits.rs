//! Resource limits and bounded input, end to end: partition caps hold whichever protocol asks
//! (and create nothing when they refuse), produced batches whose records would not read back
//! one by one are refused, and no metric label value comes from a client.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes};
use futures_lite::StreamExt;
use kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, CreatePartitionsRequest, CreatePartitionsResponse, CreateTopicsRequest,
    CreateTopicsResponse, MetadataRequest, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use serde_json::{Value, json};
use tributary_api::Record;
use tributary_api::batch::{build_batch, reseal};

use crate::broker::{TestBroker, connect};
use crate::kafka_wire;
use crate::lapin_support::{self, args, stream_args, text};

// ---------------------------------------------------------------------------------------------
// Kafka at the byte level.

/// One request and its decoded response.
fn kafka_call<Req: Encodable, Resp: Decodable>(
    stream: &mut TcpStream,
    key: ApiKey,
    version: i16,
    body: &Req,
) -> Resp {
    kafka_wire::send(stream, key, version, 7, body);
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).expect("response size");
    let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut frame).expect("response body");
    let mut frame = Bytes::from(frame);
    assert_eq!(frame.get_i32(), 7, "correlation id");
    if key.response_header_version(version) >= 1 {
        assert_eq!(frame.get_u8(), 0, "no tagged fields in the response header");
    }
    Resp::decode(&mut frame, version).expect("response decodes")
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

/// CreateTopics v5 of one topic; returns (error code, error message).
fn create_topic(
    stream: &mut TcpStream,
    name: &str,
    partitions: i32,
    validate_only: bool,
) -> (i16, String) {
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(5_000)
        .with_validate_only(validate_only)
        .with_topics(vec![
            CreatableTopic::default()
                .with_name(topic_name(name))
                .with_num_partitions(partitions)
                .with_replication_factor(-1),
        ]);
    let response: CreateTopicsResponse = kafka_call(stream, ApiKey::CreateTopics, 5, &request);
    let result = &response.topics[0];
    let message = result
        .error_message
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    (result.error_code, message)
}

/// CreatePartitions v3 growing `name` to `count`; returns (error code, error message).
fn grow_topic(
    stream: &mut TcpStream,
    name: &str,
    count: i32,
    validate_only: bool,
) -> (i16, String) {
    let request = CreatePartitionsRequest::default()
        .with_timeout_ms(5_000)
        .with_validate_only(validate_only)
        .with_topics(vec![
            CreatePartitionsTopic::default()
                .with_name(topic_name(name))
                .with_count(count)
                .with_assignments(None),
        ]);
    let response: CreatePartitionsResponse =
        kafka_call(stream, ApiKey::CreatePartitions, 3, &request);
    let result = &response.results[0];
    let message = result
        .error_message
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    (result.error_code, message)
}

/// Produce v7, acks=-1, of `records` to partition 0 of `topic`; returns the error code.
fn produce(stream: &mut TcpStream, topic: &str, records: Bytes) -> i16 {
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic_name(topic))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ]);
    let response: ProduceResponse = kafka_call(stream, ApiKey::Produce, 7, &request);
    response.responses[0].partition_responses[0].error_code
}

/// Partition counts Metadata v4 reports for `names` (without creating them): `None` when
/// the topic is unknown.
fn partitions_of(stream: &mut TcpStream, name: &str) -> Option<usize> {
    let request = MetadataRequest::default()
        .with_allow_auto_topic_creation(false)
        .with_topics(Some(vec![
            MetadataRequestTopic::default().with_name(Some(topic_name(name))),
        ]));
    let response: kafka_protocol::messages::MetadataResponse =
        kafka_call(stream, ApiKey::Metadata, 4, &request);
    let topic = &response.topics[0];
    (topic.error_code == 0).then_some(topic.partitions.len())
}

fn values_batch(values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .map(|value| Record {
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            timestamp: 1_700_000_000_000,
            ..Record::default()
        })
        .collect();
    build_batch(&records)
}

/// A three-record batch of `values` (each two bytes) whose records carry the offset deltas
/// `deltas` instead of 0, 1, 2, with a valid CRC.
fn batch_with_offset_deltas(values: [&str; 3], deltas: [u8; 3]) -> Bytes {
    let mut bytes = values_batch(&values).to_vec();
    // Each record: length (1 byte), attributes, timestamp delta 0 (1 byte), offset delta
    // (zigzag, 1 byte), key, value, headers: the same length for two-byte values.
    let record_len = (bytes.len() - 61) / 3;
    for (index, delta) in deltas.iter().enumerate() {
        let at = 61 + index * record_len + 3;
        assert_eq!(
            bytes[at],
            (index as u8) << 1,
            "offset delta of record {index}"
        );
        bytes[at] = delta << 1;
    }
    reseal(&mut bytes);
    Bytes::from(bytes)
}

/// A one-record batch whose record's timestamp delta is `delta` over `base`.
fn batch_with_timestamp_delta(base: i64, delta: i64) -> Bytes {
    let record = Record {
        value: Some(Bytes::from_static(b"ts")),
        timestamp: base.wrapping_add(delta),
        ..Record::default()
    };
    let mut anchor = record.clone();
    anchor.timestamp = base;
    // Two records, so that the second one's delta is relative to the first one's timestamp.
    build_batch(&[anchor, record])
}

// ---------------------------------------------------------------------------------------------
// RocketMQ at the byte level (JSON headers, as the C++ client frames them).

struct RocketResponse {
    header: Value,
    body: Vec<u8>,
}

fn rocketmq_call(stream: &mut TcpStream, code: i32, opaque: i32, ext: Value) -> RocketResponse {
    let header = json!({
        "code": code, "language": "CPP", "version": 63, "opaque": opaque, "flag": 0,
        "extFields": ext,
    });
    let header = serde_json::to_vec(&header).expect("header");
    let mut frame = Vec::new();
    frame.extend_from_slice(&((4 + header.len()) as u32).to_be_bytes());
    frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
    frame.extend_from_slice(&header);
    stream.write_all(&frame).expect("write");
    let mut word = [0u8; 4];
    stream.read_exact(&mut word).expect("length");
    let mut frame = vec![0u8; u32::from_be_bytes(word) as usize];
    stream.read_exact(&mut frame).expect("frame");
    let header_len = u32::from_be_bytes([0, frame[1], frame[2], frame[3]]) as usize;
    let header: Value = serde_json::from_slice(&frame[4..4 + header_len]).expect("JSON header");
    assert_eq!(header["opaque"].as_i64(), Some(i64::from(opaque)));
    RocketResponse {
        header,
        body: frame[4 + header_len..].to_vec(),
    }
}

const UPDATE_AND_CREATE_TOPIC: i32 = 17;
const GET_ROUTEINFO_BY_TOPIC: i32 = 105;
const PULL_MESSAGE: i32 = 11;
const SYSTEM_ERROR: i64 = 1;
const INVALID_PARTITIONS: i16 = 37;
const INVALID_RECORD: i16 = 87;

fn create_queues(stream: &mut TcpStream, opaque: i32, topic: &str, queues: u32) -> RocketResponse {
    let count = queues.to_string();
    rocketmq_call(
        stream,
        UPDATE_AND_CREATE_TOPIC,
        opaque,
        json!({"topic": topic, "readQueueNums": count, "writeQueueNums": count, "perm": "6"}),
    )
}

// ---------------------------------------------------------------------------------------------
// Process, files and HTTP.

fn open_descriptors(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .expect("the broker's /proc fd directory")
        .count()
}

fn has_log_dir(data_dir: &Path, topic: &str) -> bool {
    let logs = data_dir.join("logs");
    std::fs::read_dir(&logs)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .any(|entry| entry.file_name().to_string_lossy().contains(topic))
        })
        .unwrap_or(false)
}

fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to HTTP");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

/// Reads every listener's address now, so later lookups do not consume log lines a test waits
/// for.
fn started(mut broker: TestBroker) -> TestBroker {
    for protocol in [
        "kafka",
        "amqp",
        "rocketmq-namesrv",
        "rocketmq-broker",
        "http",
    ] {
        broker.addr(protocol);
    }
    broker
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// Every protocol still serves: a Kafka produce, an AMQP publish and get, a RocketMQ topic
/// creation and route lookup, and `/health`.
fn every_protocol_serves(broker: &mut TestBroker, tag: &str) {
    let mut kafka = connect(broker.addr("kafka"));
    let topic = format!("after-{tag}");
    assert_eq!(
        produce(&mut kafka, &topic, values_batch(&["k1"])),
        0,
        "Kafka produce"
    );

    let amqp = broker.addr("amqp");
    runtime().block_on(async {
        let connection = lapin_support::connect_to(amqp).await;
        let channel = lapin_support::confirm_channel(&connection).await;
        let queue = format!("q-{tag}");
        lapin_support::declare(&channel, &queue, false).await;
        lapin_support::publish(&channel, "", &queue, b"a1", Default::default()).await;
        let got = lapin_support::get(&channel, &queue)
            .await
            .expect("a message");
        assert_eq!(got.delivery.data, b"a1");
    });

    let mut namesrv = connect(broker.addr("rocketmq-namesrv"));
    let rocket_topic = format!("rocket-{tag}");
    let created = create_queues(&mut namesrv, 900, &rocket_topic, 8);
    assert_eq!(
        created.header["code"].as_i64(),
        Some(0),
        "{}",
        created.header
    );
    let route = rocketmq_call(
        &mut namesrv,
        GET_ROUTEINFO_BY_TOPIC,
        901,
        json!({"topic": rocket_topic}),
    );
    assert_eq!(route.header["code"].as_i64(), Some(0), "{}", route.header);
    let route: Value = serde_json::from_slice(&route.body).expect("route JSON");
    assert_eq!(route["queueDatas"][0]["writeQueueNums"].as_i64(), Some(8));

    let health = http_get(broker.http_addr(), "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
}

// ---------------------------------------------------------------------------------------------
// Partition caps.

#[test]
fn a_ten_thousand_queue_rocketmq_topic_is_refused_and_creates_nothing() {
    let mut broker = started(TestBroker::start());
    let mut namesrv = connect(broker.addr("rocketmq-namesrv"));
    let mut kafka = connect(broker.addr("kafka"));
    // An existing topic of 4 partitions must not grow either.
    assert_eq!(create_topic(&mut kafka, "existing", 4, false).0, 0);
    let pid = broker.pid();
    let before = open_descriptors(pid);

    // No credentials: the name server takes UPDATE_AND_CREATE_TOPIC from anyone.
    let refused = create_queues(&mut namesrv, 1, "huge", 10_000);
    assert_eq!(
        refused.header["code"].as_i64(),
        Some(SYSTEM_ERROR),
        "{}",
        refused.header
    );
    let remark = refused.header["remark"].as_str().unwrap_or_default();
    assert!(
        remark.contains("10000") && remark.contains("limits.max_partitions_per_topic"),
        "the remark names the count and the setting: {remark}"
    );
    let grown = create_queues(&mut namesrv, 2, "existing", 10_000);
    assert_eq!(
        grown.header["code"].as_i64(),
        Some(SYSTEM_ERROR),
        "{}",
        grown.header
    );

    // Sent to the broker listener too (auto-creation on send goes through the same engine).
    let mut rocket_broker = connect(broker.addr("rocketmq-broker"));
    let again = create_queues(&mut rocket_broker, 3, "huge", 10_000);
    assert_eq!(
        again.header["code"].as_i64(),
        Some(SYSTEM_ERROR),
        "{}",
        again.header
    );

    assert!(
        !has_log_dir(&broker.data_dir(), "huge"),
        "no partition files for the refused topic"
    );
    assert_eq!(partitions_of(&mut kafka, "huge"), None);
    assert_eq!(partitions_of(&mut kafka, "existing"), Some(4));
    let after = open_descriptors(pid);
    assert!(
        after <= before + 16,
        "descriptors went from {before} to {after}"
    );
    broker.wait_for_line(
        &["refusing to create partitions", "huge"],
        Duration::from_secs(5),
    );

    every_protocol_serves(&mut broker, "rocketmq");
}

#[test]
fn kafka_create_topics_and_create_partitions_past_the_cap_get_invalid_partitions() {
    let mut broker = started(TestBroker::start());
    let mut kafka = connect(broker.addr("kafka"));
    let pid = broker.pid();
    let before = open_descriptors(pid);

    for validate_only in [true, false] {
        let (code, message) = create_topic(&mut kafka, "wide", 10_000, validate_only);
        assert_eq!(
            code, INVALID_PARTITIONS,
            "validate_only={validate_only}: {message}"
        );
        assert!(
            message.contains("1000") && message.contains("limits.max_partitions_per_topic"),
            "{message}"
        );
    }
    assert!(!has_log_dir(&broker.data_dir(), "wide"));
    assert_eq!(partitions_of(&mut kafka, "wide"), None);

    assert_eq!(create_topic(&mut kafka, "narrow", 4, false).0, 0);
    for validate_only in [true, false] {
        let (code, message) = grow_topic(&mut kafka, "narrow", 10_000, validate_only);
        assert_eq!(
            code, INVALID_PARTITIONS,
            "validate_only={validate_only}: {message}"
        );
        assert!(
            message.contains("limits.max_partitions_per_topic"),
            "{message}"
        );
    }
    assert_eq!(partitions_of(&mut kafka, "narrow"), Some(4));
    // At the cap itself is allowed.
    assert_eq!(grow_topic(&mut kafka, "narrow", 1_000, true).0, 0);

    let after = open_descriptors(pid);
    assert!(
        after <= before + 24,
        "descriptors went from {before} to {after}"
    );
    every_protocol_serves(&mut broker, "kafka");
}

#[test]
fn the_broker_wide_cap_holds_for_kafka_rocketmq_and_amqp() {
    let mut broker = started(TestBroker::start_prepared(
        &["--config", "limits.toml"],
        |dir| {
            std::fs::write(
                dir.join("limits.toml"),
                "[limits]\nmax_partitions = 10\nmax_partitions_per_topic = 8\n",
            )
            .expect("config file");
        },
    ));
    let mut kafka = connect(broker.addr("kafka"));
    assert_eq!(create_topic(&mut kafka, "first", 8, false).0, 0);
    let (code, message) = create_topic(&mut kafka, "second", 4, false);
    assert_eq!(code, INVALID_PARTITIONS, "{message}");
    assert!(
        message.contains("12") && message.contains("limits.max_partitions"),
        "{message}"
    );
    assert_eq!(create_topic(&mut kafka, "second", 2, false).0, 0);
    // 10 of 10 used: nothing more, by any protocol.
    let (code, message) = grow_topic(&mut kafka, "second", 3, false);
    assert_eq!(code, INVALID_PARTITIONS, "{message}");

    let mut namesrv = connect(broker.addr("rocketmq-namesrv"));
    let refused = create_queues(&mut namesrv, 1, "third", 1);
    assert_eq!(
        refused.header["code"].as_i64(),
        Some(SYSTEM_ERROR),
        "{}",
        refused.header
    );
    assert!(
        refused.header["remark"]
            .as_str()
            .unwrap_or_default()
            .contains("limits.max_partitions"),
        "{}",
        refused.header
    );

    let amqp = broker.addr("amqp");
    runtime().block_on(async {
        let connection = lapin_support::connect_to(amqp).await;
        let channel = connection.create_channel().await.expect("channel");
        let declared = channel
            .queue_declare(
                "stream-past-the-cap".into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                stream_args(),
            )
            .await;
        let error = declared.expect_err("a stream needs a partition past the cap");
        let text = error.to_string();
        assert!(
            text.contains("406") || text.to_uppercase().contains("PRECONDITION"),
            "{text}"
        );
        assert!(text.contains("limits.max_partitions"), "{text}");
        // Only the channel closed: the connection still serves.
        let channel = connection.create_channel().await.expect("a new channel");
        channel
            .queue_declare(
                "classic".into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("a classic queue is no topic partition");
    });
    for topic in ["third", "stream-past-the-cap"] {
        assert!(!has_log_dir(&broker.data_dir(), topic), "{topic}");
    }
}

// ---------------------------------------------------------------------------------------------
// Bounded input: record deltas of produced batches.

#[test]
fn batches_with_shuffled_offset_deltas_are_refused_so_a_stream_reader_skips_nothing() {
    let mut broker = started(TestBroker::start());
    let mut kafka = connect(broker.addr("kafka"));
    // One partition: AMQP reads the topic as the stream of the same name.
    assert_eq!(create_topic(&mut kafka, "deltas", 1, false).0, 0);

    let mut acknowledged = Vec::new();
    let shuffled = batch_with_offset_deltas(["a0", "a1", "a2"], [2, 0, 1]);
    let code = produce(&mut kafka, "deltas", shuffled);
    if code == 0 {
        acknowledged.extend(["a0", "a1", "a2"]);
    }
    let ordered = values_batch(&["b0", "b1", "b2"]);
    assert_eq!(produce(&mut kafka, "deltas", ordered), 0);
    acknowledged.extend(["b0", "b1", "b2"]);

    // Every record Kafka acknowledged reaches a stream consumer (prefetch 1, acking each).
    let amqp = broker.addr("amqp");
    let delivered: Vec<String> = runtime().block_on(async {
        let connection = lapin_support::connect_to(amqp).await;
        let channel = connection.create_channel().await.expect("channel");
        channel
            .basic_qos(1, BasicQosOptions::default())
            .await
            .expect("qos");
        channel
            .queue_declare(
                "deltas".into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                stream_args(),
            )
            .await
            .expect("the topic as a stream");
        let mut consumer = channel
            .basic_consume(
                "deltas".into(),
                "".into(),
                BasicConsumeOptions::default(),
                args(&[("x-stream-offset", text("first"))]),
            )
            .await
            .expect("consume");
        let mut delivered = Vec::new();
        while let Ok(Some(Ok(delivery))) =
            tokio::time::timeout(Duration::from_secs(2), consumer.next()).await
        {
            delivered.push(String::from_utf8_lossy(&delivery.data).into_owned());
            delivery.ack(BasicAckOptions::default()).await.expect("ack");
        }
        delivered
    });
    assert_eq!(
        delivered, acknowledged,
        "records acknowledged to Kafka but never delivered to the stream reader"
    );
    assert_eq!(code, INVALID_RECORD, "the shuffled batch is INVALID_RECORD");
}

#[test]
fn repeated_offset_deltas_and_overflowing_timestamps_are_invalid_record() {
    let mut broker = started(TestBroker::start());
    let mut kafka = connect(broker.addr("kafka"));
    assert_eq!(create_topic(&mut kafka, "bounded", 1, false).0, 0);
    let repeated = batch_with_offset_deltas(["r0", "r1", "r2"], [0, 0, 2]);
    assert_eq!(produce(&mut kafka, "bounded", repeated), INVALID_RECORD);
    let overflowing = batch_with_timestamp_delta(1_700_000_000_000, i64::MAX);
    assert_eq!(
        produce(&mut kafka, "bounded", overflowing.clone()),
        INVALID_RECORD
    );
    // From Produce v8 the refusal carries its reason.
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(topic_name("bounded"))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(overflowing)),
                ]),
        ]);
    let response: ProduceResponse = kafka_call(&mut kafka, ApiKey::Produce, 9, &request);
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, INVALID_RECORD);
    let message = partition.error_message.as_ref().map(|m| m.to_string());
    assert!(
        message.as_deref().is_some_and(|m| m.contains("timestamp")),
        "{message:?}"
    );
    // Nothing was stored, and a valid batch still starts at offset 0.
    assert_eq!(produce(&mut kafka, "bounded", values_batch(&["ok"])), 0);
    broker.wait_for_line(&["produce refused", "bounded"], Duration::from_secs(5));
}

// ---------------------------------------------------------------------------------------------
// Metric labels.

#[test]
fn no_metric_label_value_comes_from_a_client() {
    let mut broker = started(TestBroker::start());
    // RocketMQ request codes the broker does not serve.
    let mut rocket = connect(broker.addr("rocketmq-broker"));
    for (opaque, code) in [(1, 777_777), (2, -5), (3, 31_337)] {
        let answer = rocketmq_call(&mut rocket, code, opaque, json!({"topic": "ghostly-topic"}));
        assert_eq!(
            answer.header["code"].as_i64(),
            Some(3),
            "REQUEST_CODE_NOT_SUPPORTED"
        );
    }
    // Kafka: metadata and a fetch-free lookup of topics that do not exist.
    let mut kafka = connect(broker.addr("kafka"));
    assert_eq!(partitions_of(&mut kafka, "ghostly-kafka"), None);
    // RocketMQ: a pull that finds messages, for a group nobody registered or committed.
    assert_eq!(create_topic(&mut kafka, "pulled", 1, false).0, 0);
    assert_eq!(produce(&mut kafka, "pulled", values_batch(&["p0"])), 0);
    let pulled = rocketmq_call(
        &mut rocket,
        PULL_MESSAGE,
        4,
        json!({
            "consumerGroup": "ghostly-group", "topic": "pulled", "queueId": "0",
            "queueOffset": "0", "maxMsgNums": "32", "sysFlag": "0", "commitOffset": "0",
            "suspendTimeoutMillis": "0", "subscription": "*", "subVersion": "0",
        }),
    );
    assert_eq!(
        pulled.header["code"].as_i64(),
        Some(0),
        "FOUND: {}",
        pulled.header
    );
    assert!(!pulled.body.is_empty());
    // AMQP: a passive declare of a queue that does not exist.
    let amqp = broker.addr("amqp");
    runtime().block_on(async {
        let connection = lapin_support::connect_to(amqp).await;
        let channel = connection.create_channel().await.expect("channel");
        let missing = channel
            .queue_declare(
                "ghostly-queue".into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await;
        assert!(missing.is_err());
    });

    // The RocketMQ exporter gauges are recomputed every 5 s.
    std::thread::sleep(Duration::from_secs(6));
    let exposition = lapin_support::scrape(broker.http_addr());
    let invented: BTreeSet<&str> = exposition
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter(|line| {
            ["777777", "-5\"", "31337", "ghostly"]
                .iter()
                .any(|needle| line.contains(needle))
        })
        .collect();
    assert!(
        invented.is_empty(),
        "label values from clients: {invented:?}"
    );
    assert!(
        exposition.lines().any(
            |line| line.starts_with("tributary_rocketmq_requests_total{")
                && line.contains("code=\"unknown\"")
        ),
        "unserved codes are counted as unknown"
    );
}

// ---------------------------------------------------------------------------------------------
// Accepting with no descriptors left.

/// The binary under a hard descriptor limit of `limit` (which the broker cannot raise), with
/// its stderr lines.
struct Starved {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
    _data: tempfile::TempDir,
}

impl Drop for Starved {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Starved {
    fn start(limit: u32) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        let mut child = Command::new("prlimit")
            .arg(format!("--nofile={limit}:{limit}"))
            .arg(env!("CARGO_BIN_EXE_tributary"))
            .args([
                "serve",
                "--http-port",
                "0",
                "--kafka-port",
                "0",
                "--amqp-port",
                "0",
            ])
            .args([
                "--rocketmq-namesrv-port",
                "0",
                "--rocketmq-broker-port",
                "0",
            ])
            .env_remove("RUST_LOG")
            .env_remove("TRIBUTARY_CONFIG")
            .env("TRIBUTARY_LOG", "info")
            .env("TRIBUTARY_DATA_DIR", data.path().join("data"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn tributary under prlimit");
        let stderr = child.stderr.take().expect("stderr");
        let (sender, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
            _data: data,
        }
    }

    /// Collects log lines for `wait`, or until one contains every needle.
    fn read_lines(&mut self, needles: &[&str], wait: Duration) -> Option<String> {
        let deadline = Instant::now() + wait;
        while let Ok(line) = self
            .lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line.clone());
            if !needles.is_empty() && needles.iter().all(|needle| line.contains(needle)) {
                return Some(line);
            }
        }
        None
    }

    fn addr(&mut self, protocol: &str) -> SocketAddr {
        let needle = format!("protocol=\"{protocol}\"");
        let line = match self
            .seen
            .iter()
            .find(|line| line.contains("listening") && line.contains(&needle))
        {
            Some(line) => line.clone(),
            None => self
                .read_lines(&["listening", &needle], Duration::from_secs(10))
                .unwrap_or_else(|| panic!("no listening line for {protocol}: {:?}", self.seen)),
        };
        line.split_whitespace()
            .find_map(|field| field.strip_prefix("addr="))
            .expect("addr field")
            .parse()
            .expect("socket address")
    }
}

/// A Kafka ApiVersions v0 round trip on a fresh connection.
fn kafka_answers(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect(addr) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(3)));
    let request = kafka_protocol::messages::ApiVersionsRequest::default();
    kafka_wire::send(&mut stream, ApiKey::ApiVersions, 0, 7, &request);
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).is_ok()
}

#[test]
fn out_of_descriptors_the_listener_backs_off_counts_and_recovers() {
    let mut broker = Starved::start(96);
    let kafka = broker.addr("kafka");
    let http = broker.addr("http");
    broker.read_lines(&["tributary is serving"], Duration::from_secs(10));
    assert!(
        kafka_answers(kafka),
        "serves before the descriptors run out"
    );

    // More connections than descriptors: the kernel completes them all (backlog), the broker
    // accepts until EMFILE.
    let hogs: Vec<TcpStream> = (0..150)
        .filter_map(|_| TcpStream::connect(kafka).ok())
        .collect();
    assert!(hogs.len() > 96, "only {} connections", hogs.len());
    broker
        .read_lines(&["accept failed", "emfile"], Duration::from_secs(10))
        .unwrap_or_else(|| panic!("no accept failure logged: {:?}", broker.seen));
    // Three seconds of EMFILE: at most one line a second (the back-off alone tries ~10 times).
    broker.read_lines(&[], Duration::from_secs(3));
    let logged = broker
        .seen
        .iter()
        .filter(|line| line.contains("accept failed"))
        .count();
    assert!(logged <= 5, "{logged} accept-failure lines in about 3 s");
    assert!(
        broker.child.try_wait().expect("status").is_none(),
        "the broker is still running"
    );

    // Descriptors free up: the listener accepts again, by itself.
    drop(hogs);
    let deadline = Instant::now() + Duration::from_secs(15);
    while !kafka_answers(kafka) {
        assert!(Instant::now() < deadline, "Kafka does not accept again");
        std::thread::sleep(Duration::from_millis(200));
    }
    let health = http_get(http, "/health");
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let metrics = http_get(http, "/metrics");
    let counted = metrics
        .lines()
        .find(|line| {
            line.starts_with("tributary_accept_errors_total{")
                && line.contains("protocol=\"kafka\"")
                && line.contains("reason=\"emfile\"")
        })
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse::<f64>().ok());
    assert!(
        counted.is_some_and(|count| count >= 1.0),
        "accept errors counted: {counted:?}"
    );
}
