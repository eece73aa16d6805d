//! Issue 17: one authentication no protocol walks around. With `kafka.sasl_enabled` alone a
//! RocketMQ client without credentials can neither send, pull, create or grow a topic, nor
//! commit offsets, and AMQP's `guest` logs in only from a loopback address even when
//! `amqp.loopback_users` was emptied; with `rocketmq.acl_enabled` alone Kafka serves nothing
//! but ApiVersions before SASL.

use crate::broker::{self, TestBroker};
use crate::kafka_wire;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, UdpSocket};
use std::time::Duration;

use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, MetadataRequest};
use lapin::{Connection, ConnectionProperties};
use serde_json::{Value, json};

const CONFIG_FILE: &str = "tributary.toml";
const NO_PERMISSION: i64 = 16;

fn broker_with(config: &str, extra_args: &[&str]) -> TestBroker {
    let mut args = vec!["--config", CONFIG_FILE];
    args.extend_from_slice(extra_args);
    TestBroker::start_prepared(&args, |root| {
        std::fs::write(root.join(CONFIG_FILE), config).expect("config");
    })
}

/// One JSON-header RocketMQ request; returns the response header.
fn rocketmq_call(addr: SocketAddr, code: i32, ext: Value) -> Value {
    let mut stream = broker::connect(addr);
    let header = json!({
        "code": code, "language": "JAVA", "version": 479, "opaque": 1, "flag": 0,
        "extFields": ext,
    });
    let header = serde_json::to_vec(&header).expect("header");
    let mut frame = Vec::new();
    frame.extend_from_slice(&((4 + header.len() + 3) as u32).to_be_bytes());
    frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(b"abc");
    stream.write_all(&frame).expect("write");
    let mut word = [0u8; 4];
    stream.read_exact(&mut word).expect("length");
    let mut frame = vec![0u8; u32::from_be_bytes(word) as usize];
    stream.read_exact(&mut frame).expect("frame");
    let header_len = u32::from_be_bytes([0, frame[1], frame[2], frame[3]]) as usize;
    serde_json::from_slice(&frame[4..4 + header_len]).expect("JSON header")
}

/// An address of this machine that is not loopback (the one its default route uses), if any.
fn non_loopback_ip() -> Option<IpAddr> {
    let socket = UdpSocket::bind("0.0.0.0:0").ok()?;
    // Connecting a UDP socket sends nothing; it only picks the route and so the source.
    socket.connect("192.0.2.200:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}

#[test]
fn kafka_sasl_closes_rocketmq_to_unsigned_clients() {
    let mut broker = broker_with("[kafka]\nsasl_enabled = true\n", &[]);
    let addr = broker.addr("rocketmq-broker");
    let namesrv = broker.addr("rocketmq-namesrv");
    let send = json!({
        "producerGroup": "pg", "topic": "TopicTest", "defaultTopic": "TBW102",
        "defaultTopicQueueNums": "4", "queueId": "0", "sysFlag": "0",
        "bornTimestamp": "1", "flag": "0", "properties": "", "reconsumeTimes": "0",
        "unitMode": "false", "batch": "false",
    });
    let pull = json!({
        "consumerGroup": "g", "topic": "TopicTest", "queueId": "0", "queueOffset": "0",
        "maxMsgNums": "32", "sysFlag": "0", "commitOffset": "0",
        "suspendTimeoutMillis": "0", "subscription": "*", "subVersion": "0",
    });
    let commit =
        json!({"consumerGroup": "g", "topic": "TopicTest", "queueId": "0", "commitOffset": "5"});
    let create = json!({"topic": "TopicTest", "readQueueNums": "16", "writeQueueNums": "16"});
    for (what, target, code, ext) in [
        ("send", addr, 10, send),
        ("pull", addr, 11, pull),
        ("offset commit", addr, 15, commit),
        ("topic creation on the broker", addr, 17, create.clone()),
        ("topic creation on the name server", namesrv, 17, create),
    ] {
        let header = rocketmq_call(target, code, ext);
        assert_eq!(header["code"], NO_PERMISSION, "{what}: {header}");
    }
    // Route queries stay open, and an unsigned one creates nothing.
    let route = rocketmq_call(namesrv, 105, json!({"topic": "TopicTest"}));
    assert_eq!(route["code"], 17, "TOPIC_NOT_EXIST: {route}");
}

#[test]
fn rocketmq_acl_makes_kafka_require_sasl() {
    let mut broker = broker_with("[rocketmq]\nacl_enabled = true\n", &[]);
    let mut stream = broker::connect(broker.addr("kafka"));
    kafka_wire::send(
        &mut stream,
        ApiKey::ApiVersions,
        0,
        1,
        &ApiVersionsRequest::default(),
    );
    let (correlation, _) = kafka_wire::receive(&mut stream, 0);
    assert_eq!(correlation, 1, "ApiVersions is served before SASL");
    kafka_wire::send(
        &mut stream,
        ApiKey::Metadata,
        1,
        2,
        &MetadataRequest::default(),
    );
    let mut byte = [0u8; 1];
    assert!(
        matches!(stream.read(&mut byte), Ok(0) | Err(_)),
        "Metadata before SASL was served"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn guest_stays_on_loopback_when_authentication_is_on() {
    let Some(ip) = non_loopback_ip() else {
        eprintln!("skipped: this machine has no non-loopback address");
        return;
    };
    // An operator emptied loopback_users; authentication being on keeps guest local anyway.
    let config = "[kafka]\nsasl_enabled = true\n[amqp]\nloopback_users = []\n";
    let mut broker = broker_with(config, &["--bind", "0.0.0.0"]);
    let port = broker.addr("amqp").port();
    let uri = |host: IpAddr| format!("amqp://guest:guest@{}/%2f", SocketAddr::new(host, port));
    let local = Connection::connect(&uri([127, 0, 0, 1].into()), ConnectionProperties::default())
        .await
        .expect("guest on loopback");
    local.close(200, "bye".into()).await.expect("close");
    let remote = tokio::time::timeout(
        Duration::from_secs(20),
        Connection::connect(&uri(ip), ConnectionProperties::default()),
    )
    .await
    .expect("an answer");
    assert!(remote.is_err(), "guest logged in from {ip}");
    broker.wait_for_line(&["only connect via localhost"], Duration::from_secs(10));
}
