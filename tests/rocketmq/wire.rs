//! The RocketMQ listeners over real sockets with request frames in the dialects the captures
//! recorded (C++ 1.2 via Python `rocketmq` 0.4.4 and ali-ons: JSON headers with numbers,
//! booleans and ACL fields mixed in; the C++ batch quirk), against the real binary. Frames are
//! built here byte by byte, and responses and stored-message bodies are parsed here too, so the
//! test does not lean on the frontend's own codec.

use crate::broker;

use crate::lapin_support;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use broker::TestBroker;
use serde_json::{Value, json};

struct Response {
    header: Value,
    body: Vec<u8>,
}

impl Response {
    fn code(&self) -> i64 {
        self.header["code"].as_i64().expect("code")
    }

    fn opaque(&self) -> i64 {
        self.header["opaque"].as_i64().expect("opaque")
    }

    fn field(&self, name: &str) -> &str {
        self.header["extFields"][name]
            .as_str()
            .unwrap_or_else(|| panic!("no string field {name} in {}", self.header))
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream
}

/// Writes a JSON-header request the way the C++ and JS clients frame it.
fn send(stream: &mut TcpStream, code: i32, opaque: i32, language: &str, ext: Value, body: &[u8]) {
    send_flagged(stream, code, opaque, language, 0, ext, body);
}

/// [`send`] with a `flag` word (2 = one-way).
fn send_flagged(
    stream: &mut TcpStream,
    code: i32,
    opaque: i32,
    language: &str,
    flag: i32,
    ext: Value,
    body: &[u8],
) {
    let header = json!({
        "code": code, "language": language, "version": 63, "opaque": opaque, "flag": flag,
        "extFields": ext,
    });
    let header = serde_json::to_vec(&header).expect("header");
    let mut frame = Vec::new();
    frame.extend_from_slice(&((4 + header.len() + body.len()) as u32).to_be_bytes());
    frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
    frame.extend_from_slice(&header);
    frame.extend_from_slice(body);
    stream.write_all(&frame).expect("write");
}

fn receive(stream: &mut TcpStream) -> Response {
    let response = read_command(stream);
    assert_eq!(
        response.header["flag"].as_i64().unwrap() & 1,
        1,
        "response bit"
    );
    response
}

/// Reads one JSON-header frame: a response, or a request the broker sends.
fn read_command(stream: &mut TcpStream) -> Response {
    let mut word = [0u8; 4];
    stream.read_exact(&mut word).expect("length");
    let length = u32::from_be_bytes(word) as usize;
    let mut frame = vec![0u8; length];
    stream.read_exact(&mut frame).expect("frame");
    assert_eq!(frame[0], 0, "a JSON client gets JSON headers");
    let header_len = u32::from_be_bytes([0, frame[1], frame[2], frame[3]]) as usize;
    let header: Value = serde_json::from_slice(&frame[4..4 + header_len]).expect("JSON header");
    assert_eq!(header["language"], "JAVA");
    Response {
        header,
        body: frame[4 + header_len..].to_vec(),
    }
}

fn call(stream: &mut TcpStream, code: i32, opaque: i32, ext: Value, body: &[u8]) -> Response {
    send(stream, code, opaque, "CPP", ext, body);
    let response = receive(stream);
    assert_eq!(response.opaque(), i64::from(opaque));
    response
}

/// One message of a stored-format body.
#[derive(Debug)]
struct Stored {
    queue_id: i32,
    queue_offset: i64,
    body: Vec<u8>,
    topic: String,
    properties: String,
}

fn be32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes(buf[at..at + 4].try_into().unwrap())
}

fn be64(buf: &[u8], at: usize) -> i64 {
    i64::from_be_bytes(buf[at..at + 8].try_into().unwrap())
}

fn parse_stored(mut buf: &[u8]) -> Vec<Stored> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let total = be32(buf, 0) as usize;
        assert_eq!(be32(buf, 4), -626_843_481, "magic");
        let sys_flag = be32(buf, 36);
        let born_host = if sys_flag & 0x10 != 0 { 20 } else { 8 };
        let store_host = if sys_flag & 0x20 != 0 { 20 } else { 8 };
        let mut at = 48 + born_host + 8 + store_host + 4 + 8;
        let body_len = be32(buf, at) as usize;
        at += 4;
        let body = buf[at..at + body_len].to_vec();
        assert_eq!(
            be32(buf, 8),
            (crc32fast::hash(&body) & 0x7FFF_FFFF) as i32,
            "body CRC"
        );
        at += body_len;
        let topic_len = buf[at] as usize;
        let topic = String::from_utf8(buf[at + 1..at + 1 + topic_len].to_vec()).unwrap();
        at += 1 + topic_len;
        let props_len = i16::from_be_bytes([buf[at], buf[at + 1]]) as usize;
        let properties = String::from_utf8(buf[at + 2..at + 2 + props_len].to_vec()).unwrap();
        assert_eq!(at + 2 + props_len, total, "record length");
        out.push(Stored {
            queue_id: be32(buf, 12),
            queue_offset: be64(buf, 20),
            body,
            topic,
            properties,
        });
        buf = &buf[total..];
    }
    out
}

/// The batch body the C++ client sends (`MessageDecoder.encodeMessages` layout).
fn batch_body(messages: &[(&[u8], &str)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (body, properties) in messages {
        let total = 20 + body.len() + 2 + properties.len();
        for word in [total as i32, 0, 0, 0, body.len() as i32] {
            out.extend_from_slice(&word.to_be_bytes());
        }
        out.extend_from_slice(body);
        out.extend_from_slice(&(properties.len() as i16).to_be_bytes());
        out.extend_from_slice(properties.as_bytes());
    }
    out
}

/// Captured C++ extFields (ACL fields, numbers and strings mixed) with the topic swapped in.
fn cpp_send(topic: &str, queue_id: i64, properties: &str, batch: &str) -> Value {
    json!({
        "AccessKey": "", "OnsChannel": "ALIYUN", "Signature": "PEsCt5+xXZQSmVGX8qYF5yL1sDo=",
        "batch": batch, "bornTimestamp": "1795575829525", "defaultTopic": "TBW102",
        "defaultTopicQueueNums": 4, "flag": 0, "producerGroup": "PID-smoke",
        "properties": properties, "queueId": queue_id, "reconsumeTimes": "0", "sysFlag": 0,
        "topic": topic, "unitMode": "0",
    })
}

fn cpp_pull(topic: &str, queue_id: i64, offset: i64, subscription: &str, suspend: i64) -> Value {
    json!({
        "AccessKey": "", "OnsChannel": "ALIYUN", "Signature": "yXTtrmicKng7OAM1wSQ3zz4kFrQ=",
        "commitOffset": "-1", "consumerGroup": "CID-smoke", "maxMsgNums": 32, "queueId": queue_id,
        "queueOffset": offset.to_string(), "subVersion": "1795575829530",
        "subscription": subscription, "suspendTimeoutMillis": suspend.to_string(), "sysFlag": 6,
        "topic": topic,
    })
}

#[test]
fn cpp_dialect_routes_sends_batches_and_tag_filtered_pulls() {
    let mut broker = TestBroker::start();
    let namesrv = broker.addr("rocketmq-namesrv");
    let broker_addr = broker.addr("rocketmq-broker");

    let mut ns = connect(namesrv);
    let route = call(
        &mut ns,
        105,
        1,
        json!({"AccessKey": "", "OnsChannel": "ALIYUN", "Signature": "x", "topic": "TopicTest"}),
        b"",
    );
    assert_eq!(route.code(), 0);
    let text = String::from_utf8(route.body.clone()).unwrap();
    assert!(
        !text.contains(", ") && !text.contains(": "),
        "compact JSON: {text}"
    );
    let route: Value = serde_json::from_slice(&route.body).unwrap();
    assert_eq!(
        route["brokerDatas"][0]["brokerAddrs"]["0"],
        broker_addr.to_string()
    );
    assert_eq!(route["queueDatas"][0]["writeQueueNums"], 4);
    assert_eq!(route["queueDatas"][0]["perm"], 6);
    let retry = call(&mut ns, 105, 2, json!({"topic": "%RETRY%CID-smoke"}), b"");
    let retry: Value = serde_json::from_slice(&retry.body).unwrap();
    assert_eq!(retry["queueDatas"][0]["readQueueNums"], 1);
    let cluster = call(&mut ns, 106, 3, json!({}), b"");
    let cluster: Value = serde_json::from_slice(&cluster.body).unwrap();
    assert!(cluster["clusterAddrTable"]["DefaultCluster"].is_array());

    let mut conn = connect(broker_addr);
    let single = call(
        &mut conn,
        10,
        10,
        cpp_send(
            "TopicTest",
            1,
            "KEYS\u{1}key-1\u{2}TAGS\u{1}TagA\u{2}myprop\u{1}v1\u{2}",
            "0",
        ),
        b"hello \xFF world",
    );
    assert_eq!(single.code(), 0, "{}", single.header);
    assert_eq!(single.field("queueId"), "1");
    assert_eq!(single.field("queueOffset"), "0");
    assert_eq!(single.field("msgId").len(), 32);
    // The C++ 1.2 batch quirk: code 10 with batch "1" and an encodeMessages body.
    let batch = batch_body(&[
        (b"b0", "TAGS\u{1}TagB\u{2}"),
        (b"b1", "TAGS\u{1}TagA\u{2}"),
        (b"b2", "TAGS\u{1}TagA\u{2}KEYS\u{1}k2\u{2}"),
    ]);
    let batched = call(&mut conn, 10, 11, cpp_send("TopicTest", 1, "", "1"), &batch);
    assert_eq!(batched.code(), 0, "{}", batched.header);
    assert_eq!(batched.field("queueOffset"), "1");
    assert_eq!(batched.field("msgId").split(',').count(), 3);

    let pulled = call(
        &mut conn,
        11,
        12,
        cpp_pull("TopicTest", 1, 0, "TagA", 0),
        b"",
    );
    assert_eq!(pulled.code(), 0, "{}", pulled.header);
    assert_eq!(pulled.field("nextBeginOffset"), "4");
    assert_eq!(pulled.field("maxOffset"), "4");
    let messages = parse_stored(&pulled.body);
    let bodies: Vec<&[u8]> = messages.iter().map(|m| m.body.as_slice()).collect();
    assert_eq!(bodies, [&b"hello \xFF world"[..], b"b1", b"b2"]);
    assert_eq!(
        messages.iter().map(|m| m.queue_offset).collect::<Vec<_>>(),
        [0, 2, 3]
    );
    assert!(
        messages
            .iter()
            .all(|m| m.topic == "TopicTest" && m.queue_id == 1)
    );
    assert!(messages[0].properties.contains("myprop\u{1}v1\u{2}"));
    assert!(messages[2].properties.contains("KEYS\u{1}k2\u{2}"));

    // Offsets: a fresh group on a young queue starts at 0; commits read back.
    let group = json!({"consumerGroup": "CID-smoke", "topic": "TopicTest", "queueId": 1});
    let query = call(&mut conn, 14, 13, group.clone(), b"");
    assert_eq!((query.code(), query.field("offset")), (0, "0"));
    let mut update = group.clone();
    update["commitOffset"] = json!("3");
    assert_eq!(call(&mut conn, 15, 14, update, b"").code(), 0);
    let query = call(&mut conn, 14, 15, group, b"");
    assert_eq!(query.field("offset"), "3");
    let max = call(
        &mut conn,
        30,
        16,
        json!({"topic": "TopicTest", "queueId": 1}),
        b"",
    );
    assert_eq!(max.field("offset"), "4");
    let min = call(
        &mut conn,
        31,
        17,
        json!({"topic": "TopicTest", "queueId": 1}),
        b"",
    );
    assert_eq!(min.field("offset"), "0");
    let search = json!({"topic": "TopicTest", "queueId": 1, "timestamp": 0});
    assert_eq!(call(&mut conn, 29, 18, search, b"").field("offset"), "0");
    broker.terminate();
}

#[test]
fn ali_ons_send_v2_with_numbers_and_booleans() {
    let mut broker = TestBroker::start();
    let mut conn = connect(broker.addr("rocketmq-broker"));
    let ext = json!({
        "Signature": "i/wlTsl3ReO26UV8qnoThfACMSM=", "AccessKey": "x", "OnsChannel": "ALIYUN",
        "a": "PID-node", "b": "TopicNode", "c": "TBW102", "d": 4, "e": 2, "f": 0,
        "g": 1_795_575_853_928_i64, "h": 0, "i": "TAGS\u{1}TagN\u{2}KEYS\u{1}nk1\u{2}", "j": 0,
        "k": false,
    });
    send(&mut conn, 310, 5, "JAVA", ext, b"node body");
    let response = receive(&mut conn);
    assert_eq!(response.code(), 0, "{}", response.header);
    assert_eq!(response.field("queueId"), "2");
    let pulled = call(&mut conn, 11, 6, cpp_pull("TopicNode", 2, 0, "*", 0), b"");
    let messages = parse_stored(&pulled.body);
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0].body, b"node body");
    broker.terminate();
}

#[test]
fn a_long_poll_never_blocks_later_requests_and_wakes_on_a_send() {
    let mut broker = TestBroker::start();
    let addr = broker.addr("rocketmq-broker");
    let mut conn = connect(addr);
    // Create the topic with a send to another queue.
    let created = call(&mut conn, 10, 1, cpp_send("PollTopic", 0, "", "0"), b"x");
    assert_eq!(created.code(), 0);

    let started = Instant::now();
    send(
        &mut conn,
        11,
        2,
        "CPP",
        cpp_pull("PollTopic", 3, 0, "*", 15_000),
        b"",
    );
    send(
        &mut conn,
        30,
        3,
        "CPP",
        json!({"topic": "PollTopic", "queueId": 3}),
        b"",
    );
    let first = receive(&mut conn);
    assert_eq!(
        first.opaque(),
        3,
        "GET_MAX_OFFSET overtakes the parked pull"
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    let mut producer = connect(addr);
    let sent = call(
        &mut producer,
        10,
        1,
        cpp_send("PollTopic", 3, "", "0"),
        b"wake",
    );
    assert_eq!(sent.code(), 0);
    let woken = receive(&mut conn);
    assert_eq!(woken.opaque(), 2);
    assert_eq!(woken.code(), 0, "{}", woken.header);
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woken by the send"
    );
    assert_eq!(parse_stored(&woken.body)[0].body, b"wake");

    // Without new data the pull answers PULL_NOT_FOUND (19) after its suspend timeout.
    let parked = Instant::now();
    let empty = call(&mut conn, 11, 4, cpp_pull("PollTopic", 3, 1, "*", 500), b"");
    assert_eq!(empty.code(), 19);
    assert_eq!(empty.field("nextBeginOffset"), "1");
    assert!(parked.elapsed() >= Duration::from_millis(400));
    broker.terminate();
}

#[test]
fn unknown_codes_and_malformed_frames_only_affect_their_connection() {
    let mut broker = TestBroker::start();
    let addr = broker.addr("rocketmq-broker");
    let mut conn = connect(addr);
    let unknown = call(&mut conn, 9999, 1, json!({}), b"");
    assert_eq!(unknown.code(), 3);
    assert_eq!(unknown.header["remark"], " request type 9999 not supported");
    // A name-server code on the broker port is unknown there, too.
    assert_eq!(
        call(&mut conn, 105, 2, json!({"topic": "T"}), b"").code(),
        3
    );

    let mut bad = connect(addr);
    bad.write_all(&[0x7F, 0xFF, 0xFF, 0xFF, 0, 0, 0, 0])
        .unwrap();
    let mut rest = Vec::new();
    let closed = bad.read_to_end(&mut rest);
    assert!(
        matches!(closed, Ok(0)) || closed.is_err(),
        "oversized frame closes the connection"
    );
    let mut garbage = connect(addr);
    garbage
        .write_all(&[0, 0, 0, 6, 0, 0, 0, 2, b'{', b'x'])
        .unwrap();
    let closed = garbage.read_to_end(&mut rest);
    assert!(matches!(closed, Ok(0)) || closed.is_err());

    let max = call(&mut conn, 9999, 3, json!({}), b"");
    assert_eq!(max.code(), 3, "the first connection still works");
    broker.terminate();
}

/// The physical offset field of the first stored message in a pull body.
fn first_physical_offset(body: &[u8]) -> i64 {
    be64(body, 28)
}

#[test]
fn send_back_retries_with_a_delay_and_dead_letters_past_the_maximum() {
    let mut broker = TestBroker::start();
    let mut conn = connect(broker.addr("rocketmq-broker"));
    let sent = call(
        &mut conn,
        10,
        1,
        cpp_send(
            "BackTopic",
            0,
            "TAGS\u{1}TagA\u{2}UNIQ_KEY\u{1}U-1\u{2}",
            "0",
        ),
        b"give me back",
    );
    assert_eq!(sent.code(), 0, "{}", sent.header);
    let pulled = call(&mut conn, 11, 2, cpp_pull("BackTopic", 0, 0, "*", 0), b"");
    assert_eq!(pulled.code(), 0);
    let physical = first_physical_offset(&pulled.body);
    let back = |max: i64, level: i64| {
        json!({"offset": physical.to_string(), "group": "CID-back", "delayLevel": level.to_string(),
               "originMsgId": "U-1", "originTopic": "BackTopic", "unitMode": "false",
               "maxReconsumeTimes": max.to_string()})
    };
    let max_offset = |conn: &mut TcpStream, topic: &str, opaque: i32| -> i64 {
        let max = call(
            conn,
            30,
            opaque,
            json!({"topic": topic, "queueId": "0"}),
            b"",
        );
        assert_eq!(max.code(), 0, "{}", max.header);
        max.field("offset").parse().unwrap()
    };

    // Level 1 (1 s by default) into the retry topic: not there at once, there after the delay.
    let started = Instant::now();
    assert_eq!(call(&mut conn, 36, 3, back(16, 1), b"").code(), 0);
    assert_eq!(max_offset(&mut conn, "%RETRY%CID-back", 4), 0, "held back");
    let mut opaque = 5;
    while max_offset(&mut conn, "%RETRY%CID-back", opaque) == 0 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "retry never delivered"
        );
        std::thread::sleep(Duration::from_millis(50));
        opaque += 1;
    }
    assert!(
        started.elapsed() >= Duration::from_millis(900),
        "{:?}",
        started.elapsed()
    );
    let mut retry_pull = cpp_pull("%RETRY%CID-back", 0, 0, "*", 0);
    retry_pull["consumerGroup"] = json!("CID-back");
    let retried = call(&mut conn, 11, 100, retry_pull, b"");
    let retried = parse_stored(&retried.body);
    assert_eq!(retried[0].body, b"give me back");
    assert!(
        retried[0]
            .properties
            .contains("RETRY_TOPIC\u{1}BackTopic\u{2}")
    );
    assert!(
        retried[0]
            .properties
            .contains("ORIGIN_MESSAGE_ID\u{1}U-1\u{2}")
    );
    assert!(
        retried[0]
            .properties
            .contains("REAL_TOPIC\u{1}%RETRY%CID-back\u{2}")
    );
    assert!(!retried[0].properties.contains("DELAY\u{1}"));

    // Past the maximum (0 here): straight to the DLQ.
    assert_eq!(call(&mut conn, 36, 101, back(0, 0), b"").code(), 0);
    assert_eq!(max_offset(&mut conn, "%DLQ%CID-back", 102), 1);
    let dead = call(
        &mut conn,
        11,
        103,
        cpp_pull("%DLQ%CID-back", 0, 0, "*", 0),
        b"",
    );
    let dead = parse_stored(&dead.body);
    assert_eq!(dead[0].body, b"give me back");
    assert_eq!(dead[0].topic, "%DLQ%CID-back");

    // An offset that names no message is answered SYSTEM_ERROR, and the connection lives on.
    let mut missing = back(16, 0);
    missing["offset"] = json!("123456789");
    let missing = call(&mut conn, 36, 104, missing, b"");
    assert_eq!(missing.code(), 1);
    assert!(
        missing.header["remark"]
            .as_str()
            .unwrap()
            .contains("look message by offset failed")
    );
    assert_eq!(max_offset(&mut conn, "BackTopic", 105), 1);
    broker.terminate();
}

fn scrape(http: SocketAddr) -> String {
    let mut stream = TcpStream::connect(http).expect("connect http");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: tributary\r\nConnection: close\r\n\r\n")
        .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// The value of the one sample of `family` whose labels include every one of `labels`.
fn sample(exposition: &str, family: &str, labels: &[&str]) -> Option<f64> {
    exposition
        .lines()
        .filter(|line| line.starts_with(&format!("{family}{{")))
        .find(|line| labels.iter().all(|label| line.contains(label)))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

#[test]
fn exporter_families_report_lag_offsets_and_rates() {
    let mut broker = TestBroker::start();
    let mut conn = connect(broker.addr("rocketmq-broker"));
    let http = broker.http_addr();
    for n in 0..5 {
        let sent = call(
            &mut conn,
            10,
            n,
            cpp_send("LagTopic", 0, "TAGS\u{1}A\u{2}", "0"),
            b"m",
        );
        assert_eq!(sent.code(), 0);
    }
    let pulled = call(&mut conn, 11, 10, cpp_pull("LagTopic", 0, 0, "*", 0), b"");
    assert_eq!(parse_stored(&pulled.body).len(), 5);
    let commit =
        json!({"consumerGroup": "CID-lag", "topic": "LagTopic", "queueId": 0, "commitOffset": "2"});
    assert_eq!(call(&mut conn, 15, 11, commit, b"").code(), 0);
    // The pull's group becomes a label value once it exists (here: it commits).
    let commit = json!({"consumerGroup": "CID-smoke", "topic": "LagTopic", "queueId": 0, "commitOffset": "5"});
    assert_eq!(call(&mut conn, 15, 12, commit, b"").code(), 0);

    // The gauges are recomputed every 5 s.
    let started = Instant::now();
    let exposition = loop {
        let exposition = scrape(http);
        if exposition.contains("rocketmq_group_diff{") {
            break exposition;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no rocketmq_group_diff:\n{exposition}"
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let group = [r#"group="CID-lag""#, r#"topic="LagTopic""#];
    assert_eq!(
        sample(
            &exposition,
            "rocketmq_group_diff",
            &[
                group[0],
                group[1],
                r#"countOfOnlineConsumers="0""#,
                r#"msgModel="1""#
            ]
        ),
        Some(3.0),
        "{exposition}"
    );
    assert_eq!(
        sample(
            &exposition,
            "tributary_rocketmq_group_lag",
            &[group[0], group[1], r#"queue="0""#]
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(&exposition, "rocketmq_consumer_offset", &group),
        Some(2.0)
    );
    assert_eq!(
        sample(&exposition, "rocketmq_producer_offset", &[group[1]]),
        Some(5.0)
    );
    assert!(
        sample(
            &exposition,
            "rocketmq_producer_tps",
            &[group[1], r#"cluster="DefaultCluster""#]
        )
        .unwrap()
            > 0.0
    );
    assert!(
        sample(
            &exposition,
            "rocketmq_consumer_tps",
            &[r#"group="CID-smoke""#, group[1]]
        )
        .unwrap()
            > 0.0
    );
    // Broker-wide rates (rocketmq-exporter's BrokerPutNums / BrokerGetNums).
    let broker_labels = [
        r#"cluster="DefaultCluster""#,
        r#"broker="tributary-broker""#,
    ];
    for family in ["rocketmq_broker_tps", "rocketmq_broker_qps"] {
        assert!(
            sample(&exposition, family, &broker_labels).is_some_and(|rate| rate > 0.0),
            "{family} in:\n{exposition}"
        );
    }
    // The page is valid exposition. The exporter's label names `countOfOnlineConsumers` and
    // `msgModel` are camelCase, and dashboards select on them, so promtool's naming lint on
    // those families is the one finding allowed; any other camelCase label fails.
    let findings = tributary::telemetry::exposition::check(&exposition);
    assert!(findings.is_empty(), "{findings:#?}");
    for (family, label) in tributary::telemetry::exposition::camel_case_labels(&exposition) {
        assert!(
            [
                "rocketmq_group_diff",
                "rocketmq_group_retrydiff",
                "rocketmq_group_dlqdiff"
            ]
            .contains(&family.as_str())
                && ["countOfOnlineConsumers", "msgModel"].contains(&label.as_str()),
            "{family} {label}"
        );
    }
    broker.terminate();
}

#[test]
fn messages_are_found_by_offset_id_by_key_and_by_unique_key() {
    let mut broker = TestBroker::start();
    let mut conn = connect(broker.addr("rocketmq-broker"));
    let mut ids = Vec::new();
    for (n, (queue, keys, uniq)) in [(0, "k1 order-7", "U-A"), (2, "k2", "U-B"), (3, "k1", "U-C")]
        .into_iter()
        .enumerate()
    {
        let properties = format!("KEYS\u{1}{keys}\u{2}UNIQ_KEY\u{1}{uniq}\u{2}TAGS\u{1}T\u{2}");
        let body = format!("body-{n}");
        let sent = call(
            &mut conn,
            10,
            n as i32,
            cpp_send("QueryTopic", queue, &properties, "0"),
            body.as_bytes(),
        );
        assert_eq!(sent.code(), 0, "{}", sent.header);
        ids.push(sent.field("msgId").to_owned());
    }
    // A message in another topic at the same queue and offset has another id.
    let other = call(
        &mut conn,
        10,
        9,
        cpp_send("OtherTopic", 0, "", "0"),
        b"other",
    );
    assert_ne!(other.field("msgId"), ids[0]);

    // VIEW_MESSAGE_BY_ID: the offset is the last 16 hex digits of an IPv4 offset message id.
    for (n, id) in ids.iter().enumerate() {
        let physical = i64::from_str_radix(&id[16..], 16).unwrap();
        let viewed = call(
            &mut conn,
            33,
            20 + n as i32,
            json!({"offset": physical.to_string()}),
            b"",
        );
        assert_eq!(viewed.code(), 0, "{}", viewed.header);
        let viewed = parse_stored(&viewed.body);
        assert_eq!(viewed.len(), 1);
        assert_eq!(viewed[0].body, format!("body-{n}").into_bytes());
        assert_eq!(viewed[0].topic, "QueryTopic");
    }
    let physical = i64::from_str_radix(&other.field("msgId")[16..], 16).unwrap();
    let viewed = call(
        &mut conn,
        33,
        29,
        json!({"offset": physical.to_string()}),
        b"",
    );
    assert_eq!(parse_stored(&viewed.body)[0].body, b"other");
    let missing = call(&mut conn, 33, 30, json!({"offset": "99999999"}), b"");
    assert_eq!(missing.code(), 1);

    // QUERY_MESSAGE by key across queues, by unique key, and a miss.
    let query = |key: &str, unique: bool| {
        let mut fields = json!({"topic": "QueryTopic", "key": key, "maxNum": "32",
                                "beginTimestamp": "0", "endTimestamp": i64::MAX.to_string()});
        if unique {
            fields["_UNIQUE_KEY_QUERY"] = json!("true");
        }
        fields
    };
    let by_key = call(&mut conn, 12, 40, query("k1", false), b"");
    assert_eq!(by_key.code(), 0, "{}", by_key.header);
    let mut bodies: Vec<Vec<u8>> = parse_stored(&by_key.body)
        .into_iter()
        .map(|m| m.body)
        .collect();
    bodies.sort();
    assert_eq!(bodies, [b"body-0".to_vec(), b"body-2".to_vec()]);
    let by_unique = call(&mut conn, 12, 41, query("U-B", true), b"");
    assert_eq!(parse_stored(&by_unique.body)[0].body, b"body-1");
    assert_eq!(
        call(&mut conn, 12, 42, query("U-B", false), b"").code(),
        22,
        "not a KEYS key"
    );
    assert_eq!(
        call(&mut conn, 12, 43, query("nope", false), b"").code(),
        22
    );

    // GET_EARLIEST_MSG_STORETIME: a store time for a queue with messages, -1 for an empty one.
    let earliest = call(
        &mut conn,
        32,
        50,
        json!({"topic": "QueryTopic", "queueId": "2"}),
        b"",
    );
    assert!(earliest.field("timestamp").parse::<i64>().unwrap() > 1_600_000_000_000);
    let empty = call(
        &mut conn,
        32,
        51,
        json!({"topic": "QueryTopic", "queueId": "1"}),
        b"",
    );
    assert_eq!(empty.field("timestamp"), "-1");
    broker.terminate();
}

/// The highest offset of queue 0 of `topic`, by GET_MAX_OFFSET.
fn queue_max(conn: &mut TcpStream, topic: &str, opaque: i32) -> i64 {
    let max = call(
        conn,
        30,
        opaque,
        json!({"topic": topic, "queueId": "0"}),
        b"",
    );
    assert_eq!(max.code(), 0, "{}", max.header);
    max.field("offset").parse().unwrap()
}

/// The C++ client 1.2 (Python `rocketmq` 0.4.4) sends a message back with only `offset`, `group`
/// and `delayLevel` (no `originTopic`, no `originMsgId`; with per-topic offsets the broker
/// answered "look message by offset failed" and the message was never retried). Two topics and
/// the retry topic all hold a message at queue 0, offset 0, so the physical offset alone must
/// name the right one, also for a retried message that fails again; and it must stay below 2^53
/// while topic ids are small, since ali-ons holds it in a double.
#[test]
fn cpp_send_back_names_the_message_by_its_physical_offset_alone() {
    let mut broker = TestBroker::start();
    let mut conn = connect(broker.addr("rocketmq-broker"));
    let group = "CID-cpp-back";
    let retry_topic = format!("%RETRY%{group}");
    for (opaque, topic, body) in [
        (1, "CppOtherTopic", &b"the other topic"[..]),
        (2, "CppBackTopic", &b"retry me"[..]),
    ] {
        let sent = call(
            &mut conn,
            10,
            opaque,
            cpp_send(topic, 0, "TAGS\u{1}TagA\u{2}", "0"),
            body,
        );
        assert_eq!(sent.code(), 0, "{}", sent.header);
    }
    let mut pull = cpp_pull("CppBackTopic", 0, 0, "*", 0);
    pull["consumerGroup"] = json!(group);
    let pulled = call(&mut conn, 11, 4, pull, b"");
    assert_eq!(pulled.code(), 0, "{}", pulled.header);
    let physical = first_physical_offset(&pulled.body);
    let back = |physical: i64| {
        json!({"AccessKey": "", "OnsChannel": "ALIYUN", "Signature": "QemDdO5Y0+90h61PkdYfgfDte3Q=",
               "delayLevel": "1", "group": group, "offset": physical.to_string()})
    };

    let mut opaque = 10;
    let mut wait_for_retry = |conn: &mut TcpStream, count: i64| {
        let started = Instant::now();
        while queue_max(conn, &retry_topic, opaque) < count {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "retry {count} never delivered"
            );
            std::thread::sleep(Duration::from_millis(50));
            opaque += 1;
        }
    };
    let sent_back = call(&mut conn, 36, 5, back(physical), b"");
    assert_eq!(sent_back.code(), 0, "{}", sent_back.header);
    wait_for_retry(&mut conn, 1);
    let mut retry_pull = cpp_pull(&retry_topic, 0, 0, "*", 0);
    retry_pull["consumerGroup"] = json!(group);
    let retried = call(&mut conn, 11, 6, retry_pull.clone(), b"");
    let retried_physical = first_physical_offset(&retried.body);
    let retried = parse_stored(&retried.body);
    assert_eq!(retried[0].body, b"retry me");
    assert!(
        retried[0]
            .properties
            .contains("RETRY_TOPIC\u{1}CppBackTopic\u{2}")
    );
    assert_ne!(
        retried_physical, physical,
        "same queue position, another topic"
    );

    // The retried message fails again: found in the retry topic, not in either subscribed topic.
    let again = call(&mut conn, 36, 7, back(retried_physical), b"");
    assert_eq!(again.code(), 0, "{}", again.header);
    wait_for_retry(&mut conn, 2);
    retry_pull["queueOffset"] = json!("1");
    let twice = parse_stored(&call(&mut conn, 11, 8, retry_pull, b"").body);
    assert_eq!(twice[0].body, b"retry me");
    assert!(
        twice[0]
            .properties
            .contains("RETRY_TOPIC\u{1}CppBackTopic\u{2}")
    );
    broker.terminate();
}

/// An END_TRANSACTION header as the Java and Rust producers send it.
fn end_transaction(group: &str, physical: i64, queue_offset: &str, state: i32) -> Value {
    json!({"producerGroup": group, "tranStateTableOffset": queue_offset,
           "commitLogOffset": physical.to_string(), "commitOrRollback": state.to_string(),
           "fromTransactionCheck": "false", "msgId": "U-tx", "bname": "tributary-broker"})
}

#[test]
fn end_transaction_commits_rolls_back_and_refuses_unknown_offsets() {
    let mut broker = TestBroker::start();
    let mut conn = connect(broker.addr("rocketmq-broker"));
    let half = |conn: &mut TcpStream, opaque: i32, uniq: &str, body: &[u8]| {
        let properties = format!(
            "TAGS\u{1}Tx\u{2}UNIQ_KEY\u{1}{uniq}\u{2}TRAN_MSG\u{1}true\u{2}PGROUP\u{1}PID-smoke\u{2}"
        );
        let mut ext = cpp_send("TxWire", 2, &properties, "0");
        ext["sysFlag"] = json!(4);
        let sent = call(conn, 10, opaque, ext, body);
        assert_eq!(sent.code(), 0, "{}", sent.header);
        assert_eq!(sent.field("transactionId"), uniq);
        let id = sent.field("msgId");
        let physical = i64::from_str_radix(&id[id.len() - 16..], 16).unwrap();
        (physical, sent.field("queueOffset").to_owned())
    };
    let (committed, committed_queue_offset) = half(&mut conn, 1, "U-commit", b"half \xFF one");
    let (rolled_back, rolled_back_queue_offset) = half(&mut conn, 2, "U-rollback", b"half two");
    let pulled = call(&mut conn, 11, 3, cpp_pull("TxWire", 2, 0, "*", 0), b"");
    assert_eq!(pulled.code(), 19, "halves are invisible: {}", pulled.header);

    // Offsets that name no pending half: past the half queue, or a plain message.
    let plain = call(&mut conn, 10, 4, cpp_send("TxWire", 0, "", "0"), b"plain");
    let plain_id = plain.field("msgId");
    let plain_physical = i64::from_str_radix(&plain_id[plain_id.len() - 16..], 16).unwrap();
    for (opaque, physical) in [(5, committed + 1_000), (6, plain_physical)] {
        let unknown = call(
            &mut conn,
            37,
            opaque,
            end_transaction("PID-smoke", physical, "0", 8),
            b"",
        );
        assert_eq!(unknown.code(), 1, "{}", unknown.header);
        assert_eq!(
            unknown.header["remark"],
            "Find prepared transaction message failed"
        );
    }
    // Another group cannot resolve it, 5 is no state, UNKNOW (0) leaves the half pending.
    for (opaque, group, state, code) in [
        (7, "PID-other", 8, 1),
        (8, "PID-smoke", 5, 29),
        (9, "PID-smoke", 0, 0),
    ] {
        let answer = call(
            &mut conn,
            37,
            opaque,
            end_transaction(group, committed, "0", state),
            b"",
        );
        assert_eq!(answer.code(), code, "{group} {state}: {}", answer.header);
    }

    let commit = end_transaction("PID-smoke", committed, &committed_queue_offset, 8);
    assert_eq!(call(&mut conn, 37, 10, commit.clone(), b"").code(), 0);
    let again = call(&mut conn, 37, 11, commit, b"");
    assert_eq!(again.code(), 1, "a half is committed once");
    // Rollback one-way, as producers send it: no answer, the next request is answered next.
    let rollback = end_transaction("PID-smoke", rolled_back, &rolled_back_queue_offset, 12);
    send_flagged(&mut conn, 37, 12, "JAVA", 2, rollback, b"");
    let rolled = call(
        &mut conn,
        37,
        13,
        end_transaction("PID-smoke", rolled_back, "1", 8),
        b"",
    );
    assert_eq!(rolled.code(), 1, "a rolled-back half cannot be committed");

    let pulled = call(&mut conn, 11, 14, cpp_pull("TxWire", 2, 0, "*", 0), b"");
    assert_eq!(pulled.code(), 0, "{}", pulled.header);
    let messages = parse_stored(&pulled.body);
    assert_eq!(messages.len(), 1, "only the commit: {messages:?}");
    let message = &messages[0];
    assert_eq!(
        (message.body.as_slice(), message.queue_id),
        (&b"half \xFF one"[..], 2)
    );
    assert_eq!(message.topic, "TxWire");
    assert_eq!(be32(&pulled.body, 36) & 0xC, 0x8, "sysFlag says COMMIT");
    assert!(message.properties.contains("UNIQ_KEY\u{1}U-commit\u{2}"));
    assert!(message.properties.contains("PGROUP\u{1}PID-smoke\u{2}"));
    for removed in ["TRAN_MSG", "REAL_TOPIC", "REAL_QID"] {
        assert!(
            !message.properties.contains(removed),
            "{removed} in {:?}",
            message.properties
        );
    }
    broker.terminate();
}

#[test]
fn unresolved_halves_are_checked_on_a_producer_connection_then_discarded() {
    let mut config = tempfile::NamedTempFile::new().expect("config file");
    writeln!(
        config,
        "[rocketmq]\ntransaction_timeout_ms = 300\ntransaction_check_interval_ms = 300\ntransaction_check_max = 2"
    )
    .expect("write config");
    let mut broker = TestBroker::start_with(&["--config", config.path().to_str().unwrap()]);
    let broker_addr = broker.addr("rocketmq-broker");
    let http = broker.http_addr();
    let mut producer = connect(broker_addr);
    let heartbeat = json!({"clientID": "127.0.0.1@wire", "producerDataSet": [{"groupName": "PID-check"}],
                           "consumerDataSet": []});
    let registered = call(
        &mut producer,
        34,
        1,
        json!({}),
        heartbeat.to_string().as_bytes(),
    );
    assert_eq!(registered.code(), 0);
    let properties =
        "TAGS\u{1}Tx\u{2}UNIQ_KEY\u{1}U-check\u{2}TRAN_MSG\u{1}true\u{2}PGROUP\u{1}PID-check\u{2}";
    let mut ext = cpp_send("TxCheck", 3, properties, "0");
    ext["producerGroup"] = json!("PID-check");
    let sent_at = Instant::now();
    let sent = call(&mut producer, 10, 2, ext, b"ask me");
    assert_eq!(sent.code(), 0, "{}", sent.header);
    let offset_id = sent.field("msgId").to_owned();
    let physical = i64::from_str_radix(&offset_id[offset_id.len() - 16..], 16).unwrap();

    for check in 1..=2 {
        let request = read_command(&mut producer);
        assert_eq!(request.code(), 39, "{}", request.header);
        assert_eq!(request.header["flag"], 2, "a one-way request");
        assert!(sent_at.elapsed() >= Duration::from_millis(300 * check));
        assert_eq!(request.field("topic"), "TxCheck");
        assert_eq!(
            request.field("tranStateTableOffset"),
            sent.field("queueOffset")
        );
        assert_eq!(request.field("offsetMsgId"), offset_id);
        assert_eq!(request.field("msgId"), "U-check");
        assert_eq!(request.field("transactionId"), "U-check");
        assert_eq!(request.field("commitLogOffset"), physical.to_string());
        let half = parse_stored(&request.body);
        assert_eq!(half.len(), 1);
        assert_eq!((half[0].topic.as_str(), half[0].queue_id), ("TxCheck", 3));
        assert_eq!(half[0].body, b"ask me");
        assert!(half[0].properties.contains("PGROUP\u{1}PID-check\u{2}"));
        assert!(
            half[0]
                .properties
                .contains(&format!("TRANSACTION_CHECK_TIMES\u{1}{check}\u{2}")),
            "{:?}",
            half[0].properties
        );
    }
    // No answer after the maximum of two checks: the half is discarded.
    broker.wait_for_line(
        &["discarding a half message", "PID-check"],
        Duration::from_secs(10),
    );
    let commit = end_transaction("PID-check", physical, "0", 8);
    let late = call(&mut producer, 37, 3, commit, b"");
    assert_eq!(late.code(), 1, "a discarded half cannot be committed");
    let metrics = scrape(http);
    assert_eq!(
        sample(
            &metrics,
            "tributary_rocketmq_transactions_resolved_total",
            &["outcome=\"discard\""]
        ),
        Some(1.0)
    );
    assert!(
        metrics
            .lines()
            .any(|line| line == "tributary_rocketmq_transactions_pending 0"),
        "no half pending"
    );
    broker.terminate();
}

/// A pull carrying a SQL92 subscription (FLAG_SUBSCRIPTION set), as the C++ dialect sends it.
fn sql_pull(topic: &str, offset: i64, expression: &str) -> Value {
    let mut pull = cpp_pull(topic, 0, offset, expression, 0);
    pull["expressionType"] = json!("SQL92");
    pull
}

fn check_client_config(conn: &mut TcpStream, opaque: i32, expression: &str) -> Response {
    let body = json!({"clientId": "c@1", "group": "CID-sql", "subscriptionData": {
        "topic": "SqlWire", "subString": expression, "expressionType": "SQL92"}});
    call(
        conn,
        46,
        opaque,
        json!({}),
        &serde_json::to_vec(&body).unwrap(),
    )
}

#[test]
fn sql92_pulls_select_by_property_and_bad_or_disabled_filters_get_rocketmq_codes() {
    let mut broker = TestBroker::start();
    let mut conn = connect(broker.addr("rocketmq-broker"));
    for n in 0..6 {
        let colour = if n % 2 == 0 { "red" } else { "blue" };
        let properties = format!("TAGS\u{1}T{n}\u{2}n\u{1}{n}\u{2}colour\u{1}{colour}\u{2}");
        let sent = call(
            &mut conn,
            10,
            100 + n,
            cpp_send("SqlWire", 0, &properties, "0"),
            format!("m{n}").as_bytes(),
        );
        assert_eq!(sent.code(), 0, "{}", sent.header);
    }
    let expression = "n >= 2 AND (colour = 'red' OR TAGS IN ('T5')) AND missing IS NULL";
    let pulled = call(&mut conn, 11, 200, sql_pull("SqlWire", 0, expression), b"");
    assert_eq!(pulled.code(), 0, "{}", pulled.header);
    let bodies: Vec<Vec<u8>> = parse_stored(&pulled.body)
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(bodies, [b"m2".to_vec(), b"m4".to_vec(), b"m5".to_vec()]);
    assert_eq!(pulled.field("nextBeginOffset"), "6");
    // Nothing after offset 5 matches: the pull reads to the end and answers not found.
    let none = call(&mut conn, 11, 201, sql_pull("SqlWire", 0, "n > 100"), b"");
    assert_eq!(none.code(), 19, "{}", none.header);
    assert_eq!(none.field("nextBeginOffset"), "6");

    let bad = call(&mut conn, 11, 202, sql_pull("SqlWire", 0, "n >"), b"");
    assert_eq!(bad.code(), 23, "SUBSCRIPTION_PARSE_FAILED: {}", bad.header);
    assert_eq!(check_client_config(&mut conn, 203, "n > 1").code(), 0);
    assert_eq!(check_client_config(&mut conn, 204, "n = NULL").code(), 23);
    // A heartbeat whose expression does not compile leaves no filter data for later pulls.
    let heartbeat = json!({"clientID": "c@1", "consumerDataSet": [{"groupName": "CID-sql",
        "messageModel": "CLUSTERING", "subscriptionDataSet": [{"topic": "SqlWire",
        "subString": "n >", "expressionType": "SQL92", "subVersion": 1}]}]});
    send(
        &mut conn,
        34,
        205,
        "CPP",
        json!({}),
        &serde_json::to_vec(&heartbeat).unwrap(),
    );
    // The new member is told the member list changed; the heartbeat's answer follows.
    let beat = loop {
        let frame = read_command(&mut conn);
        if frame.opaque() == 205 {
            break frame;
        }
        assert_eq!(
            frame.code(),
            40,
            "only NOTIFY_CONSUMER_IDS_CHANGED comes unasked"
        );
    };
    assert_eq!(beat.code(), 0);
    let mut registered = cpp_pull("SqlWire", 0, 0, "", 0);
    registered["consumerGroup"] = json!("CID-sql");
    registered["sysFlag"] = json!(2);
    let missing = call(&mut conn, 11, 206, registered, b"");
    assert_eq!(
        missing.code(),
        27,
        "FILTER_DATA_NOT_EXIST: {}",
        missing.header
    );
    broker.terminate();

    let mut config = tempfile::NamedTempFile::new().expect("config file");
    writeln!(config, "[rocketmq]\nenable_property_filter = false").expect("write config");
    let mut broker = TestBroker::start_with(&["--config", config.path().to_str().unwrap()]);
    let mut conn = connect(broker.addr("rocketmq-broker"));
    let refused = call(&mut conn, 11, 300, sql_pull("SqlWire", 0, "n > 1"), b"");
    assert_eq!(refused.code(), 1, "SYSTEM_ERROR: {}", refused.header);
    assert!(refused.header["remark"].as_str().unwrap().contains("SQL92"));
    assert_eq!(check_client_config(&mut conn, 301, "n > 1").code(), 1);
    let tags = call(&mut conn, 11, 302, cpp_pull("SqlWire", 0, 0, "*", 0), b"");
    assert_ne!(tags.code(), 1, "tag pulls still work: {}", tags.header);
    broker.terminate();
}

/// An offset piggybacked on a pull (FLAG_COMMIT_OFFSET) reads back at once, is not overwritten by
/// a later pull after an explicit UPDATE_CONSUMER_OFFSET, and is stored within a second (so a
/// SIGKILL after that keeps it), while the pull itself never waits for the offset store.
#[test]
fn offsets_committed_by_pulls_read_back_at_once_and_are_stored_within_a_second() {
    let mut broker = TestBroker::start();
    let mut conn = connect(broker.addr("rocketmq-broker"));
    for (opaque, body) in [(1, &b"one"[..]), (2, b"two"), (3, b"three")] {
        let sent = call(
            &mut conn,
            10,
            opaque,
            cpp_send("PullCommit", 0, "", "0"),
            body,
        );
        assert_eq!(sent.code(), 0, "{}", sent.header);
    }
    let group = json!({"consumerGroup": "CID-smoke", "topic": "PullCommit", "queueId": 0});
    let mut pull = cpp_pull("PullCommit", 0, 2, "*", 0);
    pull["commitOffset"] = json!("2");
    pull["sysFlag"] = json!(7); // commit offset | suspend | subscription
    let pulled = call(&mut conn, 11, 4, pull.clone(), b"");
    assert_eq!(pulled.code(), 0, "{}", pulled.header);
    let query = call(&mut conn, 14, 5, group.clone(), b"");
    assert_eq!(query.field("offset"), "2", "pending pull commit read back");

    // An explicit commit wins over the pending one.
    let mut update = group.clone();
    update["commitOffset"] = json!("3");
    assert_eq!(call(&mut conn, 15, 6, update, b"").code(), 0);
    assert_eq!(
        call(&mut conn, 14, 7, group.clone(), b"").field("offset"),
        "3"
    );
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    assert_eq!(
        call(&mut conn, 14, 8, group.clone(), b"").field("offset"),
        "3"
    );

    // A pull commit, then a kill after the flush interval: the offset survives.
    pull["commitOffset"] = json!("1");
    assert_eq!(call(&mut conn, 11, 9, pull, b"").code(), 0);
    std::thread::sleep(std::time::Duration::from_millis(1_500));
    broker.kill_and_restart();
    let mut conn = connect(broker.addr("rocketmq-broker"));
    assert_eq!(call(&mut conn, 14, 10, group, b"").field("offset"), "1");
    broker.terminate();
}

#[test]
fn a_read_the_filter_selects_nothing_of_answers_retry_immediately_from_after_it() {
    let mut broker = TestBroker::start();
    let mut conn = connect(broker.addr("rocketmq-broker"));
    let filler = vec![b'x'; 1024];
    for n in 0..8 {
        let sent = call(
            &mut conn,
            10,
            1 + n,
            cpp_send("SkipWire", 1, "TAGS\u{1}A\u{2}", "0"),
            &filler,
        );
        assert_eq!(sent.code(), 0, "{}", sent.header);
    }
    let wanted = call(
        &mut conn,
        10,
        9,
        cpp_send("SkipWire", 1, "TAGS\u{1}B\u{2}", "0"),
        b"wanted",
    );
    assert_eq!(wanted.code(), 0, "{}", wanted.header);
    // Reads of 2 KiB cover two or three messages: each unselected read answers at once (no
    // suspension, despite FLAG_SUSPEND) with the offset after it, until B is reached.
    let started = Instant::now();
    let (mut offset, mut answers) = (0i64, Vec::new());
    let found = loop {
        let mut pull = cpp_pull("SkipWire", 1, offset, "B", 5_000);
        pull["maxMsgBytes"] = json!("2048");
        let pulled = call(&mut conn, 11, 100 + answers.len() as i32, pull, b"");
        answers.push(pulled.code());
        let next: i64 = pulled.field("nextBeginOffset").parse().unwrap();
        if pulled.code() != 20 {
            break pulled;
        }
        assert!(
            next > offset && next <= 8,
            "advances within the unselected run: {}",
            pulled.header
        );
        assert!(answers.len() < 9, "at most one answer per message");
        offset = next;
    };
    assert_eq!(
        answers[0], 20,
        "the first read selects nothing: {answers:?}"
    );
    assert_eq!(found.code(), 0, "{}", found.header);
    assert_eq!(found.field("nextBeginOffset"), "9");
    let bodies: Vec<Vec<u8>> = parse_stored(&found.body)
        .into_iter()
        .map(|m| m.body)
        .collect();
    assert_eq!(bodies, [b"wanted".to_vec()]);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "no answer waited for the suspend timeout"
    );
    broker.terminate();
}

/// A send that creates its topic gives it the producer's `defaultTopicQueueNums` queues, capped
/// at the configured auto-create count (4 by default), as RocketMQ's broker takes the smaller of
/// the header and TBW102's count; the name server then routes that many.
#[test]
fn a_send_creates_its_topic_with_the_producers_queue_count_capped_at_the_default() {
    let mut broker = TestBroker::start();
    let mut conn = connect(broker.addr("rocketmq-broker"));
    let mut ns = connect(broker.addr("rocketmq-namesrv"));
    for (n, (topic, requested, queues)) in [("QueuesTwo", 2, 2), ("QueuesCapped", 16, 4)]
        .into_iter()
        .enumerate()
    {
        let opaque = 10 * n as i32;
        let mut ext = cpp_send(topic, 3, "", "0");
        ext["defaultTopicQueueNums"] = json!(requested);
        let sent = call(&mut conn, 10, opaque + 1, ext, b"sized");
        assert_eq!(sent.code(), 0, "{}", sent.header);
        assert_eq!(sent.field("queueId"), (3 % queues).to_string());
        let route = call(&mut ns, 105, opaque + 2, json!({"topic": topic}), b"");
        assert_eq!(route.code(), 0, "{}", route.header);
        let route: Value = serde_json::from_slice(&route.body).unwrap();
        assert_eq!(route["queueDatas"][0]["writeQueueNums"], queues, "{topic}");
        assert_eq!(route["queueDatas"][0]["readQueueNums"], queues, "{topic}");
    }
    // The V2 header's one-letter field, from a producer asking for a single queue.
    let ext = json!({
        "a": "PID-node", "b": "QueuesOne", "c": "TBW102", "d": 1, "e": 2, "f": 0,
        "g": 1_795_575_853_928_i64, "h": 0, "i": "", "j": 0, "k": false,
    });
    let sent = call(&mut conn, 310, 30, ext, b"one");
    assert_eq!(sent.code(), 0, "{}", sent.header);
    assert_eq!(sent.field("queueId"), "0");
    broker.terminate();
}

/// docs/interop.md, Kafka -> RocketMQ: a pull gets a Kafka record's headers as properties (binary,
/// null and 0x01 values escaped, a repeated name suffixed, `KEYS` from the key), its timestamp as
/// born and store time, and tag filters match the stored value; a record whose properties exceed
/// RocketMQ's 32,767 bytes fails the pull with SYSTEM_ERROR, every time (the position stays).
#[test]
fn kafka_records_pull_with_escaped_properties_and_oversized_ones_fail() {
    use rdkafka::config::ClientConfig;
    use rdkafka::message::{Header, OwnedHeaders};
    use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

    let mut broker = TestBroker::start();
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", broker.addr("kafka").to_string())
        .set("acks", "all")
        .create()
        .expect("kafka producer");
    let headers = OwnedHeaders::new()
        .insert(Header {
            key: "h",
            value: Some(&b"one"[..]),
        })
        .insert(Header {
            key: "bin",
            value: Some(&[0u8, 1, 2, 0xff][..]),
        })
        .insert(Header {
            key: "nil",
            value: None::<&[u8]>,
        })
        .insert(Header {
            key: "h",
            value: Some(&b"two"[..]),
        })
        .insert(Header {
            key: "ctl",
            value: Some(&b"a\x01b"[..]),
        })
        .insert(Header {
            key: "TAGS",
            value: Some(&b"T1"[..]),
        });
    producer
        .send(
            BaseRecord::to("FromKafka")
                .partition(0)
                .key("order-1")
                .payload("v1")
                .timestamp(1_700_000_000_123)
                .headers(headers),
        )
        .expect("queue record");
    let big = vec![b'x'; 40_000];
    producer
        .send(
            BaseRecord::<str, str>::to("FromKafka")
                .partition(0)
                .payload("v2")
                .headers(OwnedHeaders::new().insert(Header {
                    key: "big",
                    value: Some(&big[..]),
                })),
        )
        .expect("queue record");
    producer.flush(Duration::from_secs(20)).expect("flush");

    let mut conn = connect(broker.addr("rocketmq-broker"));
    let mut pull = cpp_pull("FromKafka", 0, 0, "T1", 0);
    pull["maxMsgNums"] = json!(1);
    let first = call(&mut conn, 11, 1, pull, b"");
    assert_eq!(first.code(), 0, "{}", first.header);
    assert_eq!(first.field("nextBeginOffset"), "1");
    let stored = parse_stored(&first.body);
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].body, b"v1");
    assert_eq!(
        stored[0].properties,
        "h\u{1}one\u{2}bin\u{1}=?b64?AAEC/w==\u{2}nil\u{1}=?null?\u{2}h#2\u{1}two\u{2}\
         ctl\u{1}=?b64?YQFi\u{2}TAGS\u{1}T1\u{2}KEYS\u{1}order-1\u{2}"
    );
    let born = be64(&first.body, 40);
    let born_host_len = if be32(&first.body, 36) & 0x10 != 0 {
        20
    } else {
        8
    };
    let store = be64(&first.body, 48 + born_host_len);
    assert_eq!((born, store), (1_700_000_000_123, 1_700_000_000_123));
    for opaque in [2, 3] {
        let refused = call(
            &mut conn,
            11,
            opaque,
            cpp_pull("FromKafka", 0, 1, "*", 0),
            b"",
        );
        assert_eq!(refused.code(), 1, "SYSTEM_ERROR: {}", refused.header);
        assert!(
            refused.header["remark"]
                .as_str()
                .is_some_and(|r| r.contains("32767")),
            "{}",
            refused.header
        );
    }
    broker.terminate();
}

/// docs/interop.md "Topics seen from AMQP": UPDATE_AND_CREATE_TOPIC cannot grow a topic AMQP
/// reads as the single stream `T` (SYSTEM_ERROR with the engine's text), while other topics grow.
#[test]
fn update_and_create_topic_cannot_grow_a_topic_amqp_reads_as_one_stream() {
    let mut broker = TestBroker::start();
    let amqp = broker.addr("amqp");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async {
        let connection = lapin_support::connect_to(amqp).await;
        let channel = connection.create_channel().await.expect("channel");
        let durable = lapin::options::QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare("AmqpStream".into(), durable, lapin_support::stream_args())
            .await
            .expect("declare the stream");
    });
    let mut ns = connect(broker.addr("rocketmq-namesrv"));
    let update = |topic: &str, queues: &str| json!({"topic": topic, "readQueueNums": queues, "writeQueueNums": queues, "perm": "6"});
    let write_queues = |ns: &mut TcpStream, opaque: i32, topic: &str| {
        let route = call(ns, 105, opaque, json!({"topic": topic}), b"");
        assert_eq!(route.code(), 0, "{}", route.header);
        let route: Value = serde_json::from_slice(&route.body).unwrap();
        route["queueDatas"][0]["writeQueueNums"]
            .as_i64()
            .expect("writeQueueNums")
    };

    let grow = call(&mut ns, 17, 1, update("AmqpStream", "8"), b"");
    assert_eq!(grow.code(), 1, "SYSTEM_ERROR: {}", grow.header);
    let remark = grow.header["remark"].as_str().expect("remark");
    assert!(remark.contains("the AMQP stream 'AmqpStream'"), "{remark}");
    assert_eq!(write_queues(&mut ns, 2, "AmqpStream"), 1);
    // Asking for what it has already changes nothing and succeeds.
    let same = call(&mut ns, 17, 3, update("AmqpStream", "1"), b"");
    assert_eq!(same.code(), 0, "{}", same.header);

    // Topics no stream reads are created and grown as before.
    for (opaque, queues) in [(4, "2"), (5, "8")] {
        let grown = call(&mut ns, 17, opaque, update("Growing", queues), b"");
        assert_eq!(grown.code(), 0, "{}", grown.header);
    }
    assert_eq!(write_queues(&mut ns, 6, "Growing"), 8);
    broker.terminate();
}
