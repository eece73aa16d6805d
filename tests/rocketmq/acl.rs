//! RocketMQ ACL (`rocketmq.acl_enabled`) against the real binary: users and permissions made
//! with the `tributary user` and `tributary permissions` commands, requests framed here byte by
//! byte and signed with rocketmq-client-rust's own signer (so the broker's signature check is
//! held to a client's, not to itself), and a real producer and push consumer signing with the
//! client's `AclClientRPCHook`. Unsigned, badly signed and unpermitted sends, pulls, topic
//! creations and offset updates get NO_PERMISSION (16); permitted ones are served.

use crate::broker;
use crate::rocketmq::{Client, Collector, body, message, wait_for_from};

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use broker::{TestBroker, run_cli};
use parking_lot::Mutex;
use rocketmq_client_rust::{
    AclClientRPCHook, AclSigner, DefaultMQProducer, DefaultMQPushConsumer, MQPushConsumer,
    SessionCredentials,
};
use serde_json::{Value, json};

const CONFIG_FILE: &str = "tributary.toml";
const NO_PERMISSION: i64 = 16;

/// A broker with the ACL on and three users: `admin` (administrator, everything), `alice`
/// (topics `alice.*` and `alice-*`, groups `g-alice*`; the Rust client refuses dots) and `bob` (everything, but no RocketMQ secret kept).
fn acl_broker() -> TestBroker {
    TestBroker::start_prepared(&["--config", CONFIG_FILE], |root| {
        std::fs::write(root.join(CONFIG_FILE), "[rocketmq]\nacl_enabled = true\n").expect("config");
        let add = |name: &str, password: &str, extra: &[&str]| {
            let mut args = vec!["user", "add", name, "--password-stdin"];
            args.extend_from_slice(extra);
            run_cli(root, &args, &format!("{password}\n"));
        };
        add(
            "admin",
            "admin-secret",
            &["--rocketmq-secret", "--tags", "administrator"],
        );
        add("alice", "alice-secret", &["--rocketmq-secret"]);
        add("bob", "bob-secret", &[]);
        let grant = |user: &str, configure: &str, write: &str, read: &str| {
            run_cli(
                root,
                &["permissions", "set", "/", user, configure, write, read],
                "",
            );
        };
        grant("admin", ".*", ".*", ".*");
        grant("alice", "^alice[.-]", "^alice[.-]", "^alice[.-]|^g-alice");
        grant("bob", ".*", ".*", ".*");
    })
}

pub(super) struct Response {
    pub(super) header: Value,
    pub(super) body: Vec<u8>,
}

impl Response {
    pub(super) fn code(&self) -> i64 {
        self.header["code"].as_i64().expect("code")
    }

    fn remark(&self) -> &str {
        self.header["remark"].as_str().unwrap_or("")
    }
}

pub(super) fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .expect("timeout");
    stream
}

/// `fields` with `AccessKey` and a `Signature` computed as RocketMQ clients do: the client
/// library's HMAC over the sorted field values and the body.
pub(super) fn signed(user: &str, secret: &str, fields: &Value, body: &[u8]) -> Value {
    let mut sorted: BTreeMap<String, String> = fields
        .as_object()
        .expect("object")
        .iter()
        .map(|(name, value)| (name.clone(), value.as_str().expect("string").to_owned()))
        .collect();
    sorted.insert("AccessKey".to_owned(), user.to_owned());
    let mut content: Vec<u8> = sorted.values().flat_map(|v| v.bytes()).collect();
    content.extend_from_slice(body);
    let signature = AclSigner::cal_signature(&content, secret).expect("signature");
    sorted.insert("Signature".to_owned(), signature);
    json!(sorted)
}

/// One JSON-header request and its response (over TCP or TLS).
pub(super) fn call(
    stream: &mut (impl Read + Write),
    code: i32,
    ext: Value,
    body: &[u8],
) -> Response {
    let header = json!({
        "code": code, "language": "JAVA", "version": 479, "opaque": code, "flag": 0,
        "extFields": ext,
    });
    let header = serde_json::to_vec(&header).expect("header");
    let mut frame = Vec::new();
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
    assert_eq!(header["opaque"], code, "the response answers this request");
    Response {
        header,
        body: frame[4 + header_len..].to_vec(),
    }
}

pub(super) fn send_fields(topic: &str) -> Value {
    json!({
        "producerGroup": "pg", "topic": topic, "defaultTopic": "TBW102",
        "defaultTopicQueueNums": "4", "queueId": "0", "sysFlag": "0",
        "bornTimestamp": "1795575829525", "flag": "0", "properties": "TAGS\u{1}t\u{2}",
        "reconsumeTimes": "0", "unitMode": "false", "batch": "false",
    })
}

pub(super) fn pull_fields(topic: &str, group: &str) -> Value {
    json!({
        "consumerGroup": group, "topic": topic, "queueId": "0", "queueOffset": "0",
        "maxMsgNums": "32", "sysFlag": "0", "commitOffset": "0", "suspendTimeoutMillis": "0",
        "subscription": "*", "subVersion": "0",
    })
}

fn offset_fields(topic: &str, group: &str) -> Value {
    json!({"consumerGroup": group, "topic": topic, "queueId": "0", "commitOffset": "1"})
}

pub(super) fn create_fields(topic: &str) -> Value {
    json!({
        "topic": topic, "defaultTopic": "TBW102", "readQueueNums": "8", "writeQueueNums": "8",
        "perm": "6", "topicFilterType": "SINGLE_TAG", "topicSysFlag": "0", "order": "false",
    })
}

pub(super) fn assert_refused(response: &Response, what: &str, remark: &str) {
    assert_eq!(
        response.code(),
        NO_PERMISSION,
        "{what}: {}",
        response.header
    );
    assert!(
        response.remark().contains(remark),
        "{what}: remark `{}` lacks `{remark}`",
        response.remark()
    );
}

#[test]
fn unsigned_and_badly_signed_requests_get_no_permission() {
    let mut broker = acl_broker();
    let mut ns = connect(broker.addr("rocketmq-namesrv"));
    let mut conn = connect(broker.addr("rocketmq-broker"));
    let body = b"payload";

    // The admin makes a topic everyone below tries to reach.
    let created = call(
        &mut conn,
        17,
        signed("admin", "admin-secret", &create_fields("alice.orders"), b""),
        b"",
    );
    assert_eq!(created.code(), 0, "{}", created.header);

    for (what, code, fields, body) in [
        ("send", 10, send_fields("alice.orders"), &body[..]),
        ("pull", 11, pull_fields("alice.orders", "g-alice"), b""),
        (
            "offset update",
            15,
            offset_fields("alice.orders", "g-alice"),
            b"",
        ),
        ("topic creation", 17, create_fields("alice.grown"), b""),
    ] {
        let unsigned = call(&mut conn, code, fields.clone(), body);
        assert_refused(&unsigned, what, "No accessKey");
        let wrong = call(
            &mut conn,
            code,
            signed("alice", "guess", &fields, body),
            body,
        );
        assert_refused(&wrong, what, "Check signature failed");
        // A user without a kept secret cannot sign, whatever its permissions.
        let bob = call(
            &mut conn,
            code,
            signed("bob", "bob-secret", &fields, body),
            body,
        );
        assert_refused(&bob, what, "Check signature failed");
        // A correct signature over other bytes than were sent.
        let mut tampered = signed("alice", "alice-secret", &fields, body);
        tampered["queueId"] = json!("1");
        let tampered = call(&mut conn, code, tampered, body);
        assert_refused(&tampered, what, "Check signature failed");
    }
    // The name server refuses an unsigned topic creation too, and growing a topic.
    let grow = call(&mut ns, 17, create_fields("alice.orders"), b"");
    assert_refused(&grow, "grow on the name server", "No accessKey");

    // Route queries stay open, but an unsigned one creates no topic.
    let route = call(&mut ns, 105, json!({"topic": "alice.orders"}), b"");
    assert_eq!(route.code(), 0, "{}", route.header);
    let routes: Value = serde_json::from_slice(&route.body).expect("route JSON");
    assert_eq!(routes["queueDatas"][0]["writeQueueNums"], 8, "not grown");
    let missing = call(&mut ns, 105, json!({"topic": "alice.new"}), b"");
    assert_eq!(missing.code(), 17, "TOPIC_NOT_EXIST: {}", missing.header);
    let max = call(
        &mut conn,
        30,
        signed(
            "admin",
            "admin-secret",
            &json!({"topic": "alice.new", "queueId": "0"}),
            b"",
        ),
        b"",
    );
    assert_eq!(max.code(), 17, "still no topic: {}", max.header);
    // Nothing was written by the refused sends.
    let max = call(
        &mut conn,
        30,
        signed(
            "admin",
            "admin-secret",
            &json!({"topic": "alice.orders", "queueId": "0"}),
            b"",
        ),
        b"",
    );
    assert_eq!(max.code(), 0, "{}", max.header);
    assert_eq!(max.header["extFields"]["offset"], "0");
}

/// A consumer asks the name server for its own `%RETRY%<group>` route (ali-ons does before
/// its first pull): signed by a user who may read the group, that lookup creates the retry
/// topic, as RocketMQ's broker creates it for the group; for another group it does not.
#[test]
fn a_signed_route_query_creates_the_retry_topic_of_a_readable_group_only() {
    let mut broker = acl_broker();
    let mut ns = connect(broker.addr("rocketmq-namesrv"));
    let route = |ns: &mut TcpStream, topic: &str| {
        let fields = json!({"topic": topic});
        call(ns, 105, signed("alice", "alice-secret", &fields, b""), b"")
    };
    let own = route(&mut ns, "%RETRY%g-alice");
    assert_eq!(own.code(), 0, "{}", own.header);
    let other = route(&mut ns, "%RETRY%g-bob");
    assert_eq!(other.code(), 17, "TOPIC_NOT_EXIST: {}", other.header);
    let plain = route(&mut ns, "g-alice-not-a-topic");
    assert_eq!(plain.code(), 17, "no configure on it: {}", plain.header);
}

/// The C++ client (and the Python client over it) signs every request, also without
/// credentials: `AccessKey` and `SecurityToken` empty and a `Signature` keyed by the empty
/// secret. An empty access key is no credentials, so its route queries stay open as RocketMQ's
/// name server answers them, and its broker requests are refused for lack of an access key.
#[test]
fn empty_credential_fields_are_no_credentials() {
    let mut broker = acl_broker();
    let mut ns = connect(broker.addr("rocketmq-namesrv"));
    let mut conn = connect(broker.addr("rocketmq-broker"));
    let created = call(
        &mut conn,
        17,
        signed("admin", "admin-secret", &create_fields("alice.orders"), b""),
        b"",
    );
    assert_eq!(created.code(), 0, "{}", created.header);
    let empty = |fields: Value, body: &[u8]| {
        let mut fields = fields;
        fields["SecurityToken"] = json!("");
        signed("", "", &fields, body)
    };

    let route = call(
        &mut ns,
        105,
        empty(json!({"topic": "alice.orders"}), b""),
        b"",
    );
    assert_eq!(route.code(), 0, "route query: {}", route.header);
    let missing = call(&mut ns, 105, empty(json!({"topic": "alice.new"}), b""), b"");
    assert_eq!(missing.code(), 17, "not created: {}", missing.header);
    let send = call(
        &mut conn,
        10,
        empty(send_fields("alice.orders"), b"payload"),
        b"payload",
    );
    assert_refused(&send, "send", "No accessKey");
    let grow = call(&mut ns, 17, empty(create_fields("alice.orders"), b""), b"");
    assert_refused(&grow, "grow on the name server", "No accessKey");
}

#[test]
fn permissions_decide_what_a_signed_user_may_do() {
    let mut broker = acl_broker();
    let mut conn = connect(broker.addr("rocketmq-broker"));
    let alice = |fields: Value, body: &[u8]| signed("alice", "alice-secret", &fields, body);

    // Write + configure on `alice.*`: a send creates the topic and is stored.
    let sent = call(&mut conn, 10, alice(send_fields("alice.t"), b"one"), b"one");
    assert_eq!(sent.code(), 0, "{}", sent.header);
    let pulled = call(
        &mut conn,
        11,
        alice(pull_fields("alice.t", "g-alice"), b""),
        b"",
    );
    assert_eq!(pulled.code(), 0, "FOUND: {}", pulled.header);
    assert!(
        pulled.body.windows(3).any(|w| w == b"one"),
        "the stored message comes back"
    );
    let committed = call(
        &mut conn,
        15,
        alice(offset_fields("alice.t", "g-alice"), b""),
        b"",
    );
    assert_eq!(committed.code(), 0, "{}", committed.header);

    // Another topic, another group, an admin request: refused, and nothing changes.
    let admin_topic = signed("admin", "admin-secret", &send_fields("payments"), b"x");
    assert_eq!(call(&mut conn, 10, admin_topic, b"x").code(), 0);
    for (what, code, fields, body, remark) in [
        (
            "send elsewhere",
            10,
            send_fields("payments"),
            &b"forged"[..],
            "`write` on topic `payments`",
        ),
        (
            "pull elsewhere",
            11,
            pull_fields("payments", "g-alice"),
            b"",
            "`read` on topic `payments`",
        ),
        (
            "pull as another group",
            11,
            pull_fields("alice.t", "g-bob"),
            b"",
            "`read` on group `g-bob`",
        ),
        (
            "commit another group",
            15,
            offset_fields("alice.t", "g-bob"),
            b"",
            "`read` on group `g-bob`",
        ),
        (
            "create a topic",
            17,
            create_fields("alice.x"),
            b"",
            "administrator",
        ),
        (
            "grow a topic",
            17,
            create_fields("payments"),
            b"",
            "administrator",
        ),
    ] {
        let refused = call(&mut conn, code, alice(fields, body), body);
        assert_refused(&refused, what, remark);
    }
    let max = call(
        &mut conn,
        30,
        signed(
            "admin",
            "admin-secret",
            &json!({"topic": "payments", "queueId": "0"}),
            b"",
        ),
        b"",
    );
    assert_eq!(
        max.header["extFields"]["offset"], "1",
        "the forged send was not stored"
    );
}

/// A producer with no hook is refused; with the client's own ACL hook (alice's keys) its
/// messages reach alice's push consumer, which signs its heartbeats, pulls and commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_client_signing_with_its_acl_hook_produces_and_consumes() {
    let mut broker = acl_broker();
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    let client = Client::new("acl").expect("client");
    let hook = || {
        Arc::new(AclClientRPCHook::new(SessionCredentials::with_keys(
            "alice",
            "alice-secret",
        )))
    };

    let mut unsigned = DefaultMQProducer::builder(client.runtime.clone())
        .producer_group("acl-unsigned".to_string())
        .name_server_addr(namesrv.clone())
        .retry_times_when_send_failed(0)
        .build();
    unsigned.start().await.expect("producer start");
    let refused = unsigned
        .send(message("alice-real", "t", body("no", 0), "unsigned"))
        .await;
    assert!(refused.is_err(), "an unsigned send fails: {refused:?}");
    broker.wait_for_line(&["refused by the ACL"], Duration::from_secs(10));
    unsigned.shutdown().await;

    let mut producer = DefaultMQProducer::builder(client.runtime.clone())
        .producer_group("acl-signed".to_string())
        .name_server_addr(namesrv.clone())
        .rpc_hook(hook())
        .build();
    producer.start().await.expect("producer start");
    for n in 0..3 {
        producer
            .send(message("alice-real", "t", body("yes", n), "signed"))
            .await
            .expect("a signed send is stored");
    }

    let received = Arc::new(Mutex::new(Vec::new()));
    let mut consumer = DefaultMQPushConsumer::builder(client.runtime.clone())
        .consumer_group("g-alice-real".to_string())
        .name_server_addr(namesrv.clone())
        .rpc_hook(Some(hook() as _))
        .build();
    consumer
        .subscribe("alice-real", "*")
        .await
        .expect("subscribe");
    consumer.register_message_listener_concurrently(Collector(Arc::clone(&received)));
    consumer.start().await.expect("a signed consumer starts");
    wait_for_from(&received, 3, "signed").await;
    consumer.shutdown().await;
    producer.shutdown().await;
    client.shutdown().await;
}
