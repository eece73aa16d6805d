//! Cross-protocol read benchmark (`cargo bench --bench interop_reads`): an AMQP stream consumer and a
//! RocketMQ pull consumer reading 1 KiB records that Kafka wrote uncompressed, lz4 and zstd
//! (librdkafka through `rdkafka`, `linger.ms=5`), against the same reader on records its own
//! protocol wrote, in the same run against the same release `tributary` binary.
//!
//! Per repeat a fresh broker (`--durability interval:100`) is pre-filled with `RECORDS` records
//! per topic: `k-none`, `k-lz4`, `k-zstd` by Kafka, `a-own` by AMQP publishes, `r-own` by
//! RocketMQ batch sends (32 per request, as a producer's batch). Each topic is one partition
//! (declared as an AMQP stream before it is written). Then, interleaved:
//! - AMQP: lapin, one stream consumer from `first`, prefetch `PREFETCH`, one multiple ack per
//!   `ACK_EVERY` deliveries; messages/s from `basic.consume` to the last delivery;
//! - RocketMQ: PULL_MESSAGE requests over one connection (`maxMsgNums` 32, RocketMQ's default
//!   pull batch), from offset 0 to the end; messages/s over the whole read.
//!
//! Every read checks its count and the first and last bodies. Medians and worst runs are
//! printed; the ratio is of medians (Kafka-written over same-protocol). `TRIBUTARY_BENCH_REPEATS`
//! sets the repeats (default 5), `INTEROP_BENCH_RECORDS` the records per topic (default 50,000),
//! `INTEROP_BENCH_READS` which reads run (`amqp:k-lz4,rocketmq:r-own`; default all).

#[path = "../tests/support/broker.rs"]
mod broker;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use broker::TestBroker;
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::{Value, json};

const BODY_BYTES: usize = 1024;
const PREFETCH: u16 = 500;
const ACK_EVERY: usize = 100;
const PULL_BATCH: i64 = 32;
const SEND_BATCH: usize = 32;
const KAFKA_TOPICS: [(&str, &str); 3] = [("k-none", "none"), ("k-lz4", "lz4"), ("k-zstd", "zstd")];

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
        .max(1)
}

/// Body `i` of a topic: a header naming it, then filler, 1 KiB in all. The filler repeats, as
/// text payloads do, so the compressed batches are smaller than the plain ones.
fn body(topic: &str, i: usize) -> Vec<u8> {
    let mut out = format!("{topic}-{i:08}-").into_bytes();
    let filler = b"the quick brown fox jumps over the lazy dog 0123456789 ";
    while out.len() < BODY_BYTES {
        out.push(filler[out.len() % filler.len()]);
    }
    out
}

fn main() {
    let repeats = env_number("TRIBUTARY_BENCH_REPEATS", 5);
    let records = env_number("INTEROP_BENCH_RECORDS", 50_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let mut amqp_rates: Vec<(String, Vec<f64>)> = Vec::new();
    let mut rocketmq_rates: Vec<(String, Vec<f64>)> = Vec::new();
    for repeat in 0..repeats {
        let mut broker = TestBroker::start_with(&["--durability", "interval:100"]);
        let amqp_addr = broker.addr("amqp");
        let kafka_addr = broker.addr("kafka").to_string();
        let rocketmq_addr = broker.addr("rocketmq-broker");
        let uri = format!("amqp://guest:guest@{amqp_addr}/%2f");
        runtime.block_on(prefill(&uri, &kafka_addr, rocketmq_addr, records));
        let mut round: Vec<(&str, String, f64)> = Vec::new();
        for topic in ["a-own", "k-none", "k-lz4", "k-zstd"] {
            if !selected("amqp", topic) {
                continue;
            }
            let rate = runtime.block_on(amqp_read(&uri, topic, records));
            round.push(("amqp", topic.to_owned(), rate));
        }
        for topic in ["r-own", "k-none", "k-lz4", "k-zstd"] {
            if !selected("rocketmq", topic) {
                continue;
            }
            round.push((
                "rocketmq",
                topic.to_owned(),
                rocketmq_read(rocketmq_addr, topic, records),
            ));
        }
        for (reader, topic, rate) in round {
            println!("repeat {repeat}: {reader} reading {topic}: {rate:.0} msg/s");
            let rates = if reader == "amqp" {
                &mut amqp_rates
            } else {
                &mut rocketmq_rates
            };
            match rates.iter_mut().find(|(t, _)| *t == topic) {
                Some((_, list)) => list.push(rate),
                None => rates.push((topic, vec![rate])),
            }
        }
        drop(broker);
    }
    for (reader, own, rates) in [
        ("AMQP stream consumer", "a-own", &amqp_rates),
        ("RocketMQ pull", "r-own", &rocketmq_rates),
    ] {
        println!("\n{reader}, {records} records of 1 KiB, {repeats} repeats (msg/s):");
        let Some((_, own_rates)) = rates.iter().find(|(t, _)| t == own) else {
            continue; // A selection without the baseline prints the raw rates only.
        };
        let baseline = median(own_rates);
        for (topic, list) in rates {
            let med = median(list);
            let worst = list.iter().copied().fold(f64::INFINITY, f64::min);
            println!(
                "  {topic:<7} median {med:>9.0}  worst {worst:>9.0}  ratio to {own} {:.2}",
                med / baseline
            );
        }
    }
}

/// Whether `INTEROP_BENCH_READS` (a comma-separated list of `reader:topic`, e.g.
/// `amqp:k-lz4`, for profiling one read) selects this read; unset selects every read.
fn selected(reader: &str, topic: &str) -> bool {
    std::env::var("INTEROP_BENCH_READS").map_or(true, |list| {
        list.split(',')
            .any(|item| item.trim() == format!("{reader}:{topic}"))
    })
}

fn median(list: &[f64]) -> f64 {
    let mut sorted = list.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    sorted[sorted.len() / 2]
}

async fn prefill(uri: &str, kafka: &str, rocketmq: std::net::SocketAddr, records: usize) {
    let connection = Connection::connect(uri, ConnectionProperties::default())
        .await
        .expect("amqp connect");
    let channel = connection.create_channel().await.expect("channel");
    let mut stream = FieldTable::default();
    stream.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("stream".into()),
    );
    for topic in ["a-own", "r-own", "k-none", "k-lz4", "k-zstd"] {
        let options = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare(topic.into(), options, stream.clone())
            .await
            .expect("declare stream");
    }
    // Kafka: one producer per codec.
    for (topic, codec) in KAFKA_TOPICS {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", kafka)
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("compression.type", codec)
            .set("message.timeout.ms", "60000")
            .create()
            .expect("producer");
        let mut pending = Vec::with_capacity(records);
        for i in 0..records {
            let payload = body(topic, i);
            let record = FutureRecord::<(), _>::to(topic)
                .partition(0)
                .payload(&payload);
            pending.push(producer.send_result(record).expect("enqueue"));
        }
        for send in pending {
            send.await.expect("delivery").expect("delivered");
        }
    }
    // AMQP: publishes with confirms, a window of 256.
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let mut window = std::collections::VecDeque::new();
    for i in 0..records {
        let confirm = channel
            .basic_publish(
                "".into(),
                "a-own".into(),
                BasicPublishOptions::default(),
                &body("a-own", i),
                BasicProperties::default(),
            )
            .await
            .expect("publish");
        window.push_back(confirm);
        if window.len() >= 256 {
            window
                .pop_front()
                .expect("confirm")
                .await
                .expect("confirmed");
        }
    }
    for confirm in window {
        confirm.await.expect("confirmed");
    }
    connection
        .close(200, "prefilled".into())
        .await
        .expect("close");
    // RocketMQ: batch sends to queue 0.
    let mut stream = TcpStream::connect(rocketmq).expect("rocketmq connect");
    for (n, start) in (0..records).step_by(SEND_BATCH).enumerate() {
        let mut batch = Vec::new();
        for i in start..(start + SEND_BATCH).min(records) {
            let body = body("r-own", i);
            let properties = format!("TAGS\u{1}bench\u{2}UNIQ_KEY\u{1}7F000001{i:024X}\u{2}");
            let total = 20 + body.len() + 2 + properties.len();
            for word in [total as i32, 0, 0, 0, body.len() as i32] {
                batch.extend_from_slice(&word.to_be_bytes());
            }
            batch.extend_from_slice(&body);
            batch.extend_from_slice(&(properties.len() as i16).to_be_bytes());
            batch.extend_from_slice(properties.as_bytes());
        }
        let ext = json!({
            "a": "PID-bench", "b": "r-own", "c": "TBW102", "d": "1", "e": "0", "f": "0",
            "g": "1700000000000", "h": "0", "i": "", "j": "0", "m": "true",
        });
        let (header, _) = rocketmq_call_with(&mut stream, 320, n as i32, ext, &batch);
        assert_eq!(header["code"], 0, "batch send: {header}");
    }
}

/// Reads `records` messages of stream `topic` from `first`; messages/s.
async fn amqp_read(uri: &str, topic: &str, records: usize) -> f64 {
    let connection = Connection::connect(uri, ConnectionProperties::default())
        .await
        .expect("amqp connect");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .basic_qos(PREFETCH, BasicQosOptions::default())
        .await
        .expect("qos");
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-stream-offset".into(),
        AMQPValue::LongString("first".into()),
    );
    let started = Instant::now();
    let mut consumer = channel
        .basic_consume(
            topic.into(),
            "".into(),
            BasicConsumeOptions::default(),
            arguments,
        )
        .await
        .expect("consume");
    for i in 0..records {
        let delivery = tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .unwrap_or_else(|_| panic!("{topic}: delivery {i} within 30 s"))
            .expect("consumer open")
            .expect("delivery");
        if i == 0 || i + 1 == records {
            assert_eq!(delivery.data, body(topic, i), "{topic} delivery {i}");
        }
        if (i + 1) % ACK_EVERY == 0 || i + 1 == records {
            delivery
                .ack(BasicAckOptions { multiple: true })
                .await
                .expect("ack");
        }
    }
    let rate = records as f64 / started.elapsed().as_secs_f64();
    connection.close(200, "read".into()).await.expect("close");
    rate
}

/// Pulls `records` messages of `topic` queue 0 from offset 0; messages/s.
fn rocketmq_read(addr: std::net::SocketAddr, topic: &str, records: usize) -> f64 {
    let mut stream = TcpStream::connect(addr).expect("rocketmq connect");
    let started = Instant::now();
    let (mut offset, mut count, mut opaque) = (0i64, 0usize, 1000);
    let (mut first, mut last) = (Vec::new(), Vec::new());
    while count < records {
        opaque += 1;
        let ext = json!({
            "consumerGroup": "CID-bench", "topic": topic, "queueId": "0",
            "queueOffset": offset.to_string(), "maxMsgNums": PULL_BATCH.to_string(),
            "sysFlag": "0", "commitOffset": "0", "suspendTimeoutMillis": "0",
            "subscription": "*", "subVersion": "0",
        });
        let (header, body) = rocketmq_call(&mut stream, 11, opaque, ext);
        assert_eq!(header["code"], 0, "{topic} pull at {offset}: {header}");
        for message in bodies(&body) {
            if count == 0 {
                first = message.clone();
            }
            last = message;
            count += 1;
        }
        offset = header["extFields"]["nextBeginOffset"]
            .as_str()
            .and_then(|s| s.parse().ok())
            .expect("nextBeginOffset");
    }
    let rate = records as f64 / started.elapsed().as_secs_f64();
    assert_eq!(count, records, "{topic}");
    assert_eq!(first, body(topic, 0), "{topic} first");
    assert_eq!(last, body(topic, records - 1), "{topic} last");
    rate
}

/// One RocketMQ request with a JSON header (no body); the response's header and body.
fn rocketmq_call(stream: &mut TcpStream, code: i32, opaque: i32, ext: Value) -> (Value, Vec<u8>) {
    rocketmq_call_with(stream, code, opaque, ext, &[])
}

fn rocketmq_call_with(
    stream: &mut TcpStream,
    code: i32,
    opaque: i32,
    ext: Value,
    body: &[u8],
) -> (Value, Vec<u8>) {
    let header = json!({
        "code": code, "language": "JAVA", "version": 401, "opaque": opaque, "flag": 0,
        "extFields": ext,
    });
    let header = serde_json::to_vec(&header).expect("header");
    let mut frame = Vec::with_capacity(8 + header.len() + body.len());
    frame.extend_from_slice(&((4 + header.len() + body.len()) as u32).to_be_bytes());
    frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(body);
    stream.write_all(&frame).expect("write");
    let mut word = [0u8; 4];
    stream.read_exact(&mut word).expect("length");
    let mut frame = vec![0u8; u32::from_be_bytes(word) as usize];
    stream.read_exact(&mut frame).expect("frame");
    let header_len = u32::from_be_bytes([0, frame[1], frame[2], frame[3]]) as usize;
    let header: Value = serde_json::from_slice(&frame[4..4 + header_len]).expect("JSON header");
    (header, frame[4 + header_len..].to_vec())
}

/// The bodies of a stored-format pull body.
fn bodies(mut buf: &[u8]) -> Vec<Vec<u8>> {
    let be32 = |buf: &[u8], at: usize| i32::from_be_bytes(buf[at..at + 4].try_into().unwrap());
    let mut out = Vec::new();
    while !buf.is_empty() {
        let total = be32(buf, 0) as usize;
        let sys_flag = be32(buf, 36);
        let born_host = if sys_flag & 0x10 != 0 { 20 } else { 8 };
        let store_host = if sys_flag & 0x20 != 0 { 20 } else { 8 };
        let at = 48 + born_host + 8 + store_host + 4 + 8;
        let len = be32(buf, at) as usize;
        out.push(buf[at + 4..at + 4 + len].to_vec());
        buf = &buf[total..];
    }
    out
}
