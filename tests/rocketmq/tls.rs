//! RocketMQ over TLS (`rocketmq.tls`) against the real binary, with raw JSON-header frames over
//! a rustls client: `enforcing` serves TLS and closes plaintext clients on both ports;
//! `permissive` serves both on the same port (told apart by the first byte). And
//! rocketmq-client-rust 1.0 with `use_tls` (rocketmq-transport's rustls client), verifying the
//! broker's certificate against the test CA, produces and consumes under `enforcing`, where the
//! same client without TLS is refused.

use super::acl;
use crate::broker;
use crate::tls_support;

use std::io::{Read, Write};
use std::net::SocketAddr;

use std::sync::Arc;

use broker::TestBroker;
use parking_lot::Mutex;
use rocketmq_client_rust::{DefaultMQProducer, DefaultMQPushConsumer, MQPushConsumer};
use serde_json::json;
use tls_support::Pki;

use crate::rocketmq::{Client, Collector, body, message, wait_for_from};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rocketmq_client_rust_produces_and_consumes_over_tls() {
    let dir = tempfile::Builder::new()
        .prefix("h17d-rmq-client")
        .tempdir()
        .unwrap();
    let pki = Pki::create(dir.path(), "rocketmq-ca");
    let mut broker = tls_broker(&pki, "enforcing");
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    let client = Client::new("tls").expect("client");

    // With TLS, the broker's certificate checked against the test CA (not the client's
    // accept-anything test mode).
    // The TLS settings go in through the builder: a config set on the built producer reaches
    // only its `use_tls`, not its connections.
    let mut config = rocketmq_client_rust::ClientConfig::default();
    let mut tls = config.tls_config().clone();
    tls.client.auth_server = true;
    tls.client.trust_cert_path = Some(pki.dir.join("ca.pem").display().to_string());
    config.set_tls_config(tls);
    config.set_use_tls(true);
    let mut producer = DefaultMQProducer::builder(client.runtime.clone())
        .client_config(config.clone())
        .producer_group("tls-producer".to_string())
        .name_server_addr(namesrv.clone())
        .use_tls(true)
        .build();
    producer.start().await.expect("producer start");
    for n in 0..3 {
        producer
            .send(message("over-tls", "t", body("tls", n), "tls"))
            .await
            .expect("a send over TLS is stored");
    }

    let received = Arc::new(Mutex::new(Vec::new()));
    let mut consumer = DefaultMQPushConsumer::builder(client.runtime.clone())
        .client_config(config)
        .consumer_group("g-tls".to_string())
        .name_server_addr(namesrv.clone())
        .build();
    consumer.set_use_tls(true);
    consumer
        .subscribe("over-tls", "*")
        .await
        .expect("subscribe");
    consumer.register_message_listener_concurrently(Collector(Arc::clone(&received)));
    consumer.start().await.expect("a TLS consumer starts");
    wait_for_from(&received, 3, "tls").await;
    consumer.shutdown().await;
    producer.shutdown().await;
    client.shutdown().await;

    let plain_client = Client::new("tls-plain").expect("client");
    // Without TLS the client's requests are closed unanswered.
    let mut plain = DefaultMQProducer::builder(plain_client.runtime.clone())
        .producer_group("tls-plain".to_string())
        .name_server_addr(namesrv.clone())
        .retry_times_when_send_failed(0)
        .send_msg_timeout(3_000)
        .build();
    plain.start().await.expect("producer start");
    let refused = plain
        .send(message("over-tls", "t", body("plain", 0), "plain"))
        .await;
    assert!(
        refused.is_err(),
        "a plaintext client is served: {refused:?}"
    );
    plain.shutdown().await;

    plain_client.shutdown().await;
}
