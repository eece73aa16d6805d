//! Compressed data across protocols, against the real binary (docs/interop.md): Kafka batches
//! of every codec are read whole by an AMQP stream consumer and a RocketMQ pull; a batch that
//! cannot be decoded is never passed over (AMQP: channel closed with 541 after the records
//! before it; RocketMQ: the messages before it, then SYSTEM_ERROR with the offset kept), and is
//! counted; a RocketMQ body sent zlib-compressed reaches AMQP inflated.

use crate::broker;
use crate::lapin_support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use broker::{TestBroker, connect};
use bytes::{BufMut, Bytes, BytesMut};
use futures_lite::StreamExt;
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, ProduceResponse, RequestHeader, TopicName};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use lapin::options::{BasicAckOptions, QueueDeclareOptions};
use lapin::types::AMQPValue;
use serde_json::{Value, json};
use tributary_api::Record;
use tributary_api::batch::{build_batch, build_compressed_batch, reseal, set_base_offset};
use tributary_api::compression::{Codec, compress};

fn records(from: usize, count: usize) -> Vec<Record> {
    (from..from + count)
        .map(|i| Record {
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("record {i} ").repeat(40))),
            timestamp: 1_700_000_000_000 + i as i64,
            headers: Vec::new(),
        })
        .collect()
}

/// A gzip batch whose records do not inflate; its CRC is right, so the log stores it.
fn corrupt_gzip(records: &[Record]) -> Bytes {
    let mut batch = BytesMut::from(&build_compressed_batch(records, Codec::Gzip).unwrap()[..]);
    let len = batch.len();
    batch[61 + 10..len - 8].fill(0x5A);
    reseal(&mut batch);
    batch.freeze()
}

/// Produces `batch` to partition 0 of `topic` (acks=1); the Kafka error code.
fn produce(stream: &mut TcpStream, topic: &str, correlation: i32, batch: Bytes) -> i16 {
    let request = ProduceRequest::default()
        .with_acks(1)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch)),
                ]),
        ]);
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(9)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("compressed-test")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, ApiKey::Produce.request_header_version(9))
        .unwrap();
    request.encode(&mut buf, 9).unwrap();
    let mut frame = BytesMut::new();
    frame.put_i32(buf.len() as i32);
    frame.put_slice(&buf);
    stream.write_all(&frame).unwrap();
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).unwrap();
    let mut response = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut response).unwrap();
    // Correlation id, then the v1 header's empty tagged fields.
    let mut body = Bytes::from(response).slice(5..);
    let answer = ProduceResponse::decode(&mut body, 9).unwrap();
    answer.responses[0].partition_responses[0].error_code
}

/// One RocketMQ remoting call with a JSON header: (header, body).
fn rocketmq_call(
    stream: &mut TcpStream,
    code: i32,
    opaque: i32,
    ext: Value,
    body: &[u8],
) -> (Value, Vec<u8>) {
    let header = json!({
        "code": code, "language": "CPP", "version": 63, "opaque": opaque, "flag": 0,
        "extFields": ext,
    });
    let header = serde_json::to_vec(&header).unwrap();
    let mut frame = Vec::new();
    frame.extend_from_slice(&((4 + header.len() + body.len()) as u32).to_be_bytes());
    frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(body);
    stream.write_all(&frame).unwrap();
    let mut word = [0u8; 4];
    stream.read_exact(&mut word).unwrap();
    let mut frame = vec![0u8; u32::from_be_bytes(word) as usize];
    stream.read_exact(&mut frame).unwrap();
    let header_len = u32::from_be_bytes([0, frame[1], frame[2], frame[3]]) as usize;
    let header: Value = serde_json::from_slice(&frame[4..4 + header_len]).unwrap();
    (header, frame[4 + header_len..].to_vec())
}

fn pull(stream: &mut TcpStream, topic: &str, offset: i64, opaque: i32) -> (Value, Vec<u8>) {
    let ext = json!({
        "commitOffset": "-1", "consumerGroup": "CID-compressed", "maxMsgNums": 64,
        "queueId": 0, "queueOffset": offset.to_string(), "subVersion": "1",
        "subscription": "*", "suspendTimeoutMillis": "0", "sysFlag": 2, "topic": topic,
    });
    rocketmq_call(stream, 11, opaque, ext, b"")
}

fn be32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(buf[at..at + 4].try_into().unwrap())
}

/// (queue offset, sysFlag, body) of each message of a stored-format pull body.
fn stored(mut buf: &[u8]) -> Vec<(i64, i32, Vec<u8>)> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let total = be32(buf, 0) as usize;
        let sys_flag = be32(buf, 36);
        let born_host = if sys_flag & 0x10 != 0 { 20 } else { 8 };
        let store_host = if sys_flag & 0x20 != 0 { 20 } else { 8 };
        let at = 48 + born_host + 8 + store_host + 4 + 8;
        let body_len = be32(buf, at) as usize;
        let offset = i64::from_be_bytes(buf[20..28].try_into().unwrap());
        out.push((offset, sys_flag, buf[at + 4..at + 4 + body_len].to_vec()));
        buf = &buf[total..];
    }
    out
}

fn field(header: &Value, name: &str) -> String {
    header["extFields"][name]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

fn value_of(i: usize) -> Vec<u8> {
    records(i, 1)[0].value.clone().unwrap().to_vec()
}

#[test]
fn every_reader_reads_compressed_batches_and_stops_at_one_it_cannot_decode() {
    let mut broker = TestBroker::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let connection = lapin_support::connect_to(broker.addr("amqp")).await;
        let channel = connection.create_channel().await.unwrap();
        for stream in ["mixed", "zbody"] {
            channel
                .queue_declare(
                    stream.into(),
                    QueueDeclareOptions {
                        durable: true,
                        ..Default::default()
                    },
                    lapin_support::stream_args(),
                )
                .await
                .unwrap();
        }
    });

    // Offsets 0-24: plain, gzip, snappy, lz4, zstd (5 each); 25-27 corrupt; 28-29 plain.
    let mut kafka = connect(broker.addr("kafka"));
    assert_eq!(
        produce(&mut kafka, "mixed", 1, build_batch(&records(0, 5))),
        0
    );
    for (n, codec) in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd]
        .into_iter()
        .enumerate()
    {
        let batch = build_compressed_batch(&records(5 + 5 * n, 5), codec).unwrap();
        assert_eq!(
            produce(&mut kafka, "mixed", 2 + n as i32, batch),
            0,
            "{codec}"
        );
    }
    // A producer cannot store a batch that does not inflate (INVALID_RECORD, as from Kafka), so
    // it is put on disk behind the broker's back, as a bad disk or an older version would.
    let corrupt = corrupt_gzip(&records(25, 3));
    assert_eq!(produce(&mut kafka, "mixed", 10, corrupt.clone()), 87);
    broker.kill_prepare_restart(|root| {
        let segment = broker::data_dir_in(root).join("logs/mixed/0/00000000000000000000.log");
        let mut stored = corrupt.to_vec();
        set_base_offset(&mut stored, 25);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&segment)
            .unwrap_or_else(|error| panic!("{}: {error}", segment.display()));
        file.write_all(&stored).unwrap();
    });
    let amqp = broker.addr("amqp");
    let http = broker.http_addr();
    let mut rocketmq = connect(broker.addr("rocketmq-broker"));
    let mut kafka = connect(broker.addr("kafka"));
    let connection = runtime.block_on(lapin_support::connect_to(amqp));
    assert_eq!(
        produce(&mut kafka, "mixed", 11, build_batch(&records(28, 2))),
        0
    );

    // RocketMQ: 25 messages, then SYSTEM_ERROR at 25 however often it is asked.
    let (header, body) = pull(&mut rocketmq, "mixed", 0, 1);
    assert_eq!(header["code"], 0, "{header}");
    assert_eq!(field(&header, "nextBeginOffset"), "25");
    let messages = stored(&body);
    assert_eq!(messages.len(), 25);
    for (i, (offset, _, body)) in messages.iter().enumerate() {
        assert_eq!(*offset, i as i64);
        assert_eq!(body, &value_of(i));
    }
    for opaque in [2, 3] {
        let (header, body) = pull(&mut rocketmq, "mixed", 25, opaque);
        assert_eq!(header["code"], 1, "SYSTEM_ERROR: {header}");
        let remark = header["remark"].as_str().unwrap_or_default();
        assert!(
            remark.contains("offset 25") && remark.contains("gzip"),
            "{remark}"
        );
        assert!(body.is_empty());
    }
    // Past it (the client's own choice), reading goes on.
    let (header, body) = pull(&mut rocketmq, "mixed", 28, 4);
    assert_eq!(header["code"], 0, "{header}");
    assert_eq!(stored(&body).len(), 2);

    // AMQP: 25 deliveries, then the channel is closed with 541; again from 25: closed at once.
    runtime.block_on(async {
        let (channel, mut consumer) = lapin_support::consume_stream(
            &connection,
            "mixed",
            AMQPValue::LongString("first".into()),
        )
        .await;
        for i in 0..25 {
            let delivery = lapin_support::next(&mut consumer).await;
            assert_eq!(delivery.data, value_of(i), "delivery {i}");
            // The close at the bad batch follows the deliveries at once and may overtake the
            // last acks, which then fail; what counts is what was delivered.
            let _ = delivery.ack(BasicAckOptions::default()).await;
        }
        let end = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("the consumer ends within 10 s");
        match end {
            Some(Ok(delivery)) => panic!("delivered past the bad batch: {:?}", delivery.data),
            Some(Err(error)) => assert!(error.to_string().contains("INTERNAL_ERROR"), "{error}"),
            None => {}
        }
        assert!(!channel.status().connected(), "the channel is closed");

        let (channel, mut consumer) =
            lapin_support::consume_stream(&connection, "mixed", AMQPValue::LongLongInt(25)).await;
        let end = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .expect("the consumer ends within 10 s");
        assert!(
            !matches!(end, Some(Ok(_))),
            "nothing is delivered at the bad batch"
        );
        assert!(!channel.status().connected());
    });

    // Both refusals are counted.
    let metrics = lapin_support::scrape(http);
    for protocol in ["amqp", "rocketmq"] {
        let series = format!(
            "tributary_interop_undeliverable_batches_total{{protocol=\"{protocol}\",reason=\"decompress\"}}"
        );
        let count = lapin_support::sample(&metrics, &series).unwrap_or(0.0);
        assert!(count >= 2.0, "{series} = {count}");
    }

    // A RocketMQ body sent zlib-compressed (sysFlag bit 0) is stored inflated.
    let plain = b"a body over 4 KiB, as RocketMQ compresses it ".repeat(120);
    let send = json!({
        "batch": "false", "bornTimestamp": "1795575829525", "defaultTopic": "TBW102",
        "defaultTopicQueueNums": 1, "flag": 0, "producerGroup": "PID-compressed",
        "properties": "", "queueId": 0, "reconsumeTimes": "0", "sysFlag": 1,
        "topic": "zbody",
    });
    let (header, _) = rocketmq_call(
        &mut rocketmq,
        10,
        20,
        send.clone(),
        &compress(Codec::Zlib, &plain).unwrap(),
    );
    assert_eq!(header["code"], 0, "{header}");
    let (header, _) = rocketmq_call(&mut rocketmq, 10, 21, send, b"not zlib");
    assert_eq!(header["code"], 13, "MESSAGE_ILLEGAL: {header}");
    let (_, body) = pull(&mut rocketmq, "zbody", 0, 22);
    let messages = stored(&body);
    assert_eq!(messages.len(), 1, "the refused send stored nothing");
    assert_eq!(messages[0].1 & 0x1, 0, "the compressed bit is cleared");
    assert_eq!(messages[0].2, plain);
    runtime.block_on(async {
        let (_channel, mut consumer) = lapin_support::consume_stream(
            &connection,
            "zbody",
            AMQPValue::LongString("first".into()),
        )
        .await;
        let delivery = lapin_support::next(&mut consumer).await;
        assert_eq!(delivery.data, plain);
    });
}

/// What librdkafka itself writes (raw snappy, its lz4 frames, its gzip and zstd), read whole
/// by RocketMQ pulls and an AMQP stream consumer, in order.
#[test]
fn batches_librdkafka_compressed_are_read_whole_by_amqp_and_rocketmq() {
    use rdkafka::config::ClientConfig;
    use rdkafka::producer::{FutureProducer, FutureRecord};

    let mut broker = TestBroker::start();
    let amqp = broker.addr("amqp");
    let bootstrap = broker.addr("kafka").to_string();
    let mut rocketmq = connect(broker.addr("rocketmq-broker"));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let codecs = ["none", "gzip", "snappy", "lz4", "zstd"];
    let value = |codec: &str, i: usize| format!("{codec}-{i:04}-{}", "payload ".repeat(16));
    let connection = runtime.block_on(async {
        let connection = lapin_support::connect_to(amqp).await;
        let channel = connection.create_channel().await.unwrap();
        channel
            .queue_declare(
                "rdkafka".into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                lapin_support::stream_args(),
            )
            .await
            .unwrap();
        for codec in codecs {
            let producer: FutureProducer = ClientConfig::new()
                .set("bootstrap.servers", &bootstrap)
                .set("acks", "all")
                .set("linger.ms", "20")
                .set("compression.type", codec)
                .set("message.timeout.ms", "20000")
                .create()
                .expect("producer");
            let sends: Vec<_> = (0..100)
                .map(|i| {
                    let payload = value(codec, i);
                    producer
                        .send_result(FutureRecord::to("rdkafka").key("k").payload(&payload))
                        .expect("enqueue")
                })
                .collect();
            for send in sends {
                send.await.expect("delivery").expect("delivered");
            }
        }
        connection
    });
    let expected: Vec<Vec<u8>> = codecs
        .iter()
        .flat_map(|codec| (0..100).map(move |i| value(codec, i).into_bytes()))
        .collect();

    let mut pulled = Vec::new();
    let mut offset = 0i64;
    for opaque in 1.. {
        if pulled.len() >= expected.len() || opaque > 100 {
            break;
        }
        let (header, body) = pull(&mut rocketmq, "rdkafka", offset, opaque);
        assert_eq!(header["code"], 0, "{header}");
        pulled.extend(stored(&body).into_iter().map(|(_, _, body)| body));
        offset = field(&header, "nextBeginOffset").parse().unwrap();
    }
    assert_eq!(pulled.len(), expected.len());
    assert!(pulled == expected, "RocketMQ got the records in order");

    runtime.block_on(async {
        let (_channel, mut consumer) = lapin_support::consume_stream(
            &connection,
            "rdkafka",
            AMQPValue::LongString("first".into()),
        )
        .await;
        for (i, want) in expected.iter().enumerate() {
            let delivery = lapin_support::next(&mut consumer).await;
            assert_eq!(&delivery.data, want, "delivery {i}");
            delivery.ack(BasicAckOptions::default()).await.unwrap();
        }
    });
}
