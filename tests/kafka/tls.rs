//! Kafka over TLS (`kafka.tls_port`) against the real binary, certificates made here with rcgen:
//! librdkafka `SSL` produce and consume on the TLS port (Metadata sends it back to that port),
//! `SASL_SSL` with SCRAM, and mutual TLS where the certificate's CN is the principal the
//! authorizer holds to ACLs (an ACL for `User:alice` allows, none denies).

use crate::acl;
use crate::broker;
use crate::tls_support;

use std::time::{Duration, Instant};

use broker::TestBroker;
use kafka_protocol::messages::{ApiKey, CreateAclsRequest, CreateAclsResponse};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tls_support::Pki;

const WAIT: Duration = Duration::from_secs(30);
const TOPIC_DENIED: i16 = 29;

fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn ssl_config(bootstrap: &str, pki: &Pki, protocol: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "20000")
        .set("security.protocol", protocol)
        .set(
            "ssl.ca.location",
            pki.dir.join("ca.pem").display().to_string(),
        );
    config
}

/// Produces `count` records to partition 0 of `topic` and reads them back with `config`.
async fn round_trip(config: &ClientConfig, topic: &str, count: usize) {
    let producer: FutureProducer = config
        .clone()
        .set("acks", "all")
        .create()
        .expect("producer");
    for i in 0..count {
        let value = format!("{topic}-{i}");
        producer
            .send(
                FutureRecord::<(), _>::to(topic)
                    .partition(0)
                    .payload(&value),
                WAIT,
            )
            .await
            .unwrap_or_else(|(error, _)| panic!("delivery {i}: {error}"));
    }
    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", format!("{topic}-group"))
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("assign");
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < count {
        assert!(Instant::now() < deadline, "only {got:?} arrived");
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("consume");
            got.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
        }
    }
    let expected: Vec<String> = (0..count).map(|i| format!("{topic}-{i}")).collect();
    assert_eq!(got, expected);
}

fn tls_broker(pki: &Pki, client_auth: &str, extra: &[(&str, &str)]) -> TestBroker {
    let mut env = pki.env(client_auth);
    env.push(("TRIBUTARY_KAFKA_TLS_PORT".into(), "0".into()));
    let mut env = env_refs(&env);
    env.extend_from_slice(extra);
    TestBroker::start_with_env(&[], &env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_produces_and_consumes_over_ssl_and_metadata_keeps_it_on_the_tls_port() {
    let dir = tempfile::Builder::new()
        .prefix("h17t-kafka")
        .tempdir()
        .unwrap();
    let pki = Pki::create(dir.path(), "kafka-ca");
    let mut broker = tls_broker(&pki, "none", &[]);
    let tls = broker.addr("kafka_tls");
    let plain = broker.addr("kafka");
    assert_ne!(tls.port(), plain.port());
    // Every connection librdkafka makes after bootstrap goes where Metadata points it: were
    // that the plaintext port, the SSL client's handshakes would fail there.
    round_trip(&ssl_config(&tls.to_string(), &pki, "ssl"), "over-ssl", 5).await;
    // The plaintext listener still serves plaintext clients, and a plaintext client on the
    // TLS port is closed without being served.
    assert!(tls_support::plaintext_is_refused(
        tls,
        &[0, 0, 0, 10, 0, 18, 0, 3]
    ));
    let mut plain_config = ClientConfig::new();
    plain_config
        .set("bootstrap.servers", plain.to_string())
        .set("message.timeout.ms", "20000");
    round_trip(&plain_config, "over-plaintext", 2).await;
}

#[test]
fn plaintext_clients_retrying_on_the_tls_port_are_counted_each_but_logged_sparingly() {
    let dir = tempfile::Builder::new()
        .prefix("tls-log")
        .tempdir()
        .unwrap();
    let pki = Pki::create(dir.path(), "kafka-ca");
    let mut broker = tls_broker(&pki, "none", &[]);
    let tls = broker.addr("kafka_tls");
    const ATTEMPTS: usize = 40;
    let started = Instant::now();
    for _ in 0..ATTEMPTS {
        assert!(tls_support::plaintext_is_refused(
            tls,
            &[0, 0, 0, 10, 0, 18, 0, 3]
        ));
    }
    let took = started.elapsed();
    let deadline = Instant::now() + Duration::from_secs(10);
    let expected = format!(
        "tributary_tls_handshake_failures_total{{protocol=\"kafka\",reason=\"not_tls\"}} {ATTEMPTS}"
    );
    while !scrape_https_free(&mut broker).contains(&expected) {
        assert!(
            Instant::now() < deadline,
            "every refusal is counted: {expected}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    broker.read_log_for(Duration::from_millis(500));
    let logged = broker
        .lines_seen()
        .iter()
        .filter(|line| line.contains("TLS handshake failed"))
        .count();
    // One line a second at most, whatever the number of attempts.
    let bound = took.as_secs() as usize + 2;
    assert!(
        (1..=bound).contains(&logged),
        "{logged} log lines for {ATTEMPTS} refusals in {took:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sasl_ssl_authenticates_scram_users_on_the_tls_port() {
    let dir = tempfile::Builder::new()
        .prefix("h17t-kafka")
        .tempdir()
        .unwrap();
    let pki = Pki::create(dir.path(), "kafka-ca");
    let mut env = pki.env("none");
    env.push(("TRIBUTARY_KAFKA_TLS_PORT".into(), "0".into()));
    env.push(("TRIBUTARY_KAFKA_SASL_ENABLED".into(), "true".into()));
    let env = env_refs(&env);
    let mut broker = TestBroker::start_full(&[], &env, |root| {
        acl::add_user(root, "alice", "alice-secret");
    });
    let tls = broker.addr("kafka_tls").to_string();
    let mut config = ssl_config(&tls, &pki, "sasl_ssl");
    config
        .set("sasl.mechanism", "SCRAM-SHA-512")
        .set("sasl.username", "alice")
        .set("sasl.password", "alice-secret");
    round_trip(&config, "over-sasl-ssl", 3).await;

    // Without credentials the TLS port serves nothing but the SASL exchange.
    let consumer: BaseConsumer = ssl_config(&tls, &pki, "ssl")
        .set("group.id", "refused")
        .create()
        .expect("consumer");
    let topic = consumer.fetch_metadata(Some("over-sasl-ssl"), Duration::from_secs(3));
    assert!(topic.is_err(), "served without SASL: {topic:?}");
}

/// A mutual-TLS connection presenting `CN=<name>` to the TLS port.
fn mtls(addr: std::net::SocketAddr, pki: &Pki, name: &str) -> tls_support::TlsStream {
    let client = pki.client(name);
    tls_support::connect(addr, pki.client_config(Some(&client))).expect("TLS handshake")
}

#[test]
fn a_client_certificate_is_the_principal_user_cn_for_the_authorizer() {
    let dir = tempfile::Builder::new()
        .prefix("h17t-kafka")
        .tempdir()
        .unwrap();
    let pki = Pki::create(dir.path(), "kafka-ca");
    let mut broker = tls_broker(
        &pki,
        "required",
        &[
            ("TRIBUTARY_KAFKA_AUTHORIZER", "true"),
            ("TRIBUTARY_KAFKA_SUPER_USERS", "admin"),
        ],
    );
    let tls = broker.addr("kafka_tls");
    // `CN=admin` is the super user, so it may create topics and ACLs.
    let mut admin = mtls(tls, &pki, "admin");
    let created = acl::create_topics(&mut admin, &["granted", "other"]);
    assert!(
        created.topics.iter().all(|t| t.error_code == 0),
        "{created:?}"
    );
    // TOPIC, LITERAL, WRITE, ALLOW for `User:alice`.
    let grant = acl::acl(2, 3, "granted", 4, 3);
    let granted: CreateAclsResponse = acl::call(
        &mut admin,
        ApiKey::CreateAcls,
        3,
        &CreateAclsRequest::default().with_creations(vec![grant]),
    );
    assert!(
        granted.results.iter().all(|r| r.error_code == 0),
        "{granted:?}"
    );

    let mut alice = mtls(tls, &pki, "alice");
    assert_eq!(
        acl::produce(&mut alice, "granted"),
        0,
        "the ACL for User:alice allows"
    );
    assert_eq!(
        acl::produce(&mut alice, "other"),
        TOPIC_DENIED,
        "no ACL denies"
    );
    let mut bob = mtls(tls, &pki, "bob");
    assert_eq!(
        acl::produce(&mut bob, "granted"),
        TOPIC_DENIED,
        "the ACL is alice's"
    );

    // `required`: no certificate, no connection.
    let anonymous = tls_support::connect(tls, pki.client_config(None)).and_then(|mut stream| {
        // TLS 1.3 reports the refusal on the first read after the handshake.
        use std::io::Read;
        let mut byte = [0u8; 1];
        stream.read(&mut byte).map(|_| stream)
    });
    assert!(anonymous.is_err(), "served without a client certificate");
    let metrics = scrape_https_free(&mut broker);
    assert!(
        metrics.contains("tributary_tls_handshake_failures_total{protocol=\"kafka\",reason=\"no_client_certificate\"} 1"),
        "{metrics}"
    );
}

/// `/metrics` from the plain HTTP listener.
fn scrape_https_free(broker: &mut TestBroker) -> String {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let mut stream = broker::connect(broker.http_addr());
        stream
            .write_all(b"GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut text = String::new();
        stream.read_to_string(&mut text).unwrap();
        if text.contains("tributary_tls_handshake_failures_total") || Instant::now() > deadline {
            return text;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}
