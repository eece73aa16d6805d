//! RocketMQ over TLS (`rocketmq.tls`) against the real binary, with raw JSON-header frames over
//! a rustls client: `enforcing` serves TLS and closes plaintext clients on both ports;
//! `permissive` serves both on the same port (told apart by the first byte).

use super::acl;
use crate::broker;
use crate::tls_support;

use std::io::{Read, Write};
use std::net::SocketAddr;

use broker::TestBroker;
use serde_json::json;
use tls_support::Pki;

/// GET_BROKER_CLUSTER_INFO: answered by the name server with no fields.
const CLUSTER_INFO: i32 = 106;
/// HEART_BEAT: answered by the broker port.
const HEART_BEAT: i32 = 34;

/// Sends one request and returns the response's code.
fn call(stream: &mut (impl Read + Write), code: i32, body: &[u8]) -> i64 {
    let response = acl::call(stream, code, json!({}), body);
    response.header["code"].as_i64().expect("code")
}

fn heartbeat() -> Vec<u8> {
    serde_json::to_vec(
        &json!({"clientID": "tls-test", "producerDataSet": [], "consumerDataSet": []}),
    )
    .unwrap()
}

fn tls_broker(pki: &Pki, mode: &str) -> TestBroker {
    let mut env = pki.env("none");
    env.push(("TRIBUTARY_ROCKETMQ_TLS".into(), mode.into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    TestBroker::start_with_env(&[], &env)
}

fn over_tls(addr: SocketAddr, pki: &Pki, code: i32, body: &[u8]) -> i64 {
    let mut stream = tls_support::connect(addr, pki.client_config(None)).expect("TLS handshake");
    call(&mut stream, code, body)
}

fn over_plaintext(addr: SocketAddr, code: i32, body: &[u8]) -> i64 {
    let mut stream = broker::connect(addr);
    call(&mut stream, code, body)
}

#[test]
fn enforcing_serves_tls_and_refuses_plaintext_on_both_ports() {
    let dir = tempfile::Builder::new()
        .prefix("h17t-rmq")
        .tempdir()
        .unwrap();
    let pki = Pki::create(dir.path(), "rocketmq-ca");
    let mut broker = tls_broker(&pki, "enforcing");
    let namesrv = broker.addr("rocketmq-namesrv");
    let port = broker.addr("rocketmq-broker");
    assert_eq!(over_tls(namesrv, &pki, CLUSTER_INFO, b""), 0);
    assert_eq!(over_tls(port, &pki, HEART_BEAT, &heartbeat()), 0);
    let request = [0, 0, 0, 10, 0, 0, 0, 2, b'{', b'}'];
    assert!(tls_support::plaintext_is_refused(namesrv, &request));
    assert!(tls_support::plaintext_is_refused(port, &request));
    // And TLS still works after the refusals.
    assert_eq!(over_tls(namesrv, &pki, CLUSTER_INFO, b""), 0);
}

#[test]
fn permissive_serves_tls_and_plaintext_on_the_same_ports() {
    let dir = tempfile::Builder::new()
        .prefix("h17t-rmq")
        .tempdir()
        .unwrap();
    let pki = Pki::create(dir.path(), "rocketmq-ca");
    let mut broker = tls_broker(&pki, "permissive");
    let namesrv = broker.addr("rocketmq-namesrv");
    let port = broker.addr("rocketmq-broker");
    assert_eq!(over_tls(namesrv, &pki, CLUSTER_INFO, b""), 0);
    assert_eq!(over_plaintext(namesrv, CLUSTER_INFO, b""), 0);
    assert_eq!(over_tls(port, &pki, HEART_BEAT, &heartbeat()), 0);
    assert_eq!(over_plaintext(port, HEART_BEAT, &heartbeat()), 0);
}
