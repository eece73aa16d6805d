//! Kafka SASL end to end against the real binary: users added with `tributary user add`, then
//! librdkafka (the `rdkafka` crate, vendored, built with OpenSSL for SCRAM) authenticating with
//! PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512; wrong passwords and unknown users refused with Kafka's
//! error messages; and the state machine at the byte level (what is served before
//! authentication, UNSUPPORTED_SASL_MECHANISM, ILLEGAL_SASL_STATE, a hand-driven SCRAM exchange).

use crate::broker;
use crate::kafka_wire;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use broker::{TestBroker, connect, data_dir_in};
use bytes::{Buf, Bytes};
use kafka_protocol::messages::{
    ApiKey, ApiVersionsRequest, ApiVersionsResponse, MetadataRequest, MetadataResponse,
    SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest, SaslHandshakeResponse,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

const BINARY: &str = env!("CARGO_BIN_EXE_tributary");
const WAIT: Duration = Duration::from_secs(30);
const CONFIG_FILE: &str = "tributary.toml";

/// Runs `tributary user add NAME --password-stdin` on `data_dir`.
fn add_user(data_dir: &Path, name: &str, password: &str) -> Output {
    let mut child = Command::new(BINARY)
        .args(["user", "add", name, "--password-stdin"])
        .env_remove("TRIBUTARY_CONFIG")
        .env("TRIBUTARY_DATA_DIR", data_dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tributary user add");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(format!("{password}\n").as_bytes())
        .expect("write password");
    child.wait_with_output().expect("user add finishes")
}

/// A broker with `kafka.sasl_enabled` whose users were added through the CLI before it started.
fn sasl_broker(users: &[(&str, &str)]) -> TestBroker {
    TestBroker::start_prepared(&["--config", CONFIG_FILE], |root| {
        std::fs::write(root.join(CONFIG_FILE), "[kafka]\nsasl_enabled = true\n").expect("config");
        for (name, password) in users {
            let output = add_user(&data_dir_in(root), name, password);
            assert!(
                output.status.success(),
                "user add {name}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            let said = String::from_utf8_lossy(&output.stdout);
            assert!(
                said.contains(name) && said.contains("SCRAM-SHA-512"),
                "{said}"
            );
        }
    })
}

fn client_config(bootstrap: &str, sasl: Option<(&str, &str, &str)>) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "20000");
    if let Some((mechanism, user, password)) = sasl {
        config
            .set("security.protocol", "sasl_plaintext")
            .set("sasl.mechanism", mechanism)
            .set("sasl.username", user)
            .set("sasl.password", password);
    }
    config
}

/// Keeps every error librdkafka reports, so a test can assert the broker's message arrived.
#[derive(Clone, Default)]
struct Errors(Arc<Mutex<Vec<String>>>);

impl ClientContext for Errors {
    fn error(&self, error: KafkaError, reason: &str) {
        self.0
            .lock()
            .expect("errors lock")
            .push(format!("{error}: {reason}"));
    }
}

impl ConsumerContext for Errors {}

/// Produces `count` records to partition 0 of `topic` and reads them back, both authenticated.
async fn round_trip(bootstrap: &str, sasl: (&str, &str, &str), topic: &str, count: usize) {
    let producer: FutureProducer = client_config(bootstrap, Some(sasl))
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
            .unwrap_or_else(|(error, _)| panic!("{} delivery {i}: {error}", sasl.0));
    }
    let consumer: BaseConsumer = client_config(bootstrap, Some(sasl))
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
        assert!(
            Instant::now() < deadline,
            "{}: only {got:?} arrived",
            sasl.0
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("consume");
            got.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
        }
    }
    let expected: Vec<String> = (0..count).map(|i| format!("{topic}-{i}")).collect();
    assert_eq!(got, expected, "{}", sasl.0);
}

/// Connects with `sasl` and expects the metadata request to fail; returns librdkafka's errors.
fn refused(bootstrap: &str, sasl: Option<(&str, &str, &str)>) -> String {
    let errors = Errors::default();
    let consumer: BaseConsumer<Errors> = client_config(bootstrap, sasl)
        .set("group.id", "refused")
        .create_with_context(errors.clone())
        .expect("consumer");
    let result = consumer.fetch_metadata(None, Duration::from_secs(3));
    assert!(result.is_err(), "{sasl:?} was served: {result:?}");
    // librdkafka reports the broker's message through the error callback, soon after the
    // failed exchange; give it a moment in case the callback lags the metadata timeout.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seen = errors.0.lock().expect("errors lock").join("\n");
        if !seen.is_empty() || Instant::now() > deadline {
            return seen;
        }
        consumer.poll(Duration::from_millis(100));
    }
}

fn scrape(http: SocketAddr) -> String {
    let mut stream = TcpStream::connect(http).expect("connect /metrics");
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

/// The value of the sample `name{labels}` in a scrape (0 when absent).
fn sample(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_and_scram_users_added_with_the_cli_produce_and_consume() {
    let mut broker = sasl_broker(&[("alice", "alice-secret"), ("bob=,x", "b0b pass")]);
    let bootstrap = broker.addr("kafka").to_string();
    round_trip(&bootstrap, ("PLAIN", "alice", "alice-secret"), "plain", 5).await;
    // A name with SCRAM's escaped characters (`=` and `,`) and a password with a space.
    round_trip(
        &bootstrap,
        ("SCRAM-SHA-256", "bob=,x", "b0b pass"),
        "s256",
        5,
    )
    .await;
    round_trip(
        &bootstrap,
        ("SCRAM-SHA-512", "alice", "alice-secret"),
        "s512",
        5,
    )
    .await;

    let metrics = scrape(broker.http_addr());
    for mechanism in ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] {
        let series = format!(
            "tributary_kafka_sasl_authentication_successes_total{{mechanism=\"{mechanism}\"}}"
        );
        // At least the producer's and the consumer's connections.
        assert!(sample(&metrics, &series) >= 2.0, "{series} in:\n{metrics}");
    }
}

#[test]
fn wrong_passwords_unknown_users_and_missing_credentials_are_refused() {
    let mut broker = sasl_broker(&[("alice", "alice-secret")]);
    let bootstrap = broker.addr("kafka").to_string();
    // Read before other log lines are waited for: `addr` consumes the log up to its line.
    let http = broker.http_addr();
    let plain_message = "Authentication failed: Invalid username or password";
    let cases = [
        ("PLAIN", "alice", "wrong", plain_message.to_owned()),
        ("PLAIN", "nobody", "alice-secret", plain_message.to_owned()),
        (
            "SCRAM-SHA-256",
            "alice",
            "wrong",
            scram_message("SCRAM-SHA-256"),
        ),
        (
            "SCRAM-SHA-512",
            "nobody",
            "x",
            scram_message("SCRAM-SHA-512"),
        ),
    ];
    for (mechanism, user, password, message) in &cases {
        let seen = refused(&bootstrap, Some((mechanism, user, password)));
        assert!(
            seen.contains(message.as_str()),
            "{mechanism} {user}: expected {message:?} in:\n{seen}"
        );
    }
    // No credentials at all: the Metadata request closes the connection unanswered.
    refused(&bootstrap, None);
    broker.wait_for_line(
        &[
            "request before SASL authentication",
            "closing the connection",
        ],
        Duration::from_secs(10),
    );

    let metrics = scrape(http);
    let failures = |mechanism: &str| {
        sample(
            &metrics,
            &format!(
                "tributary_kafka_sasl_authentication_failures_total{{mechanism=\"{mechanism}\"}}"
            ),
        )
    };
    assert!(failures("PLAIN") >= 2.0, "{metrics}");
    assert!(failures("SCRAM-SHA-256") >= 1.0, "{metrics}");
    assert!(failures("SCRAM-SHA-512") >= 1.0, "{metrics}");
    assert_eq!(
        sample(
            &metrics,
            "tributary_kafka_sasl_authentication_successes_total{mechanism=\"PLAIN\"}"
        ),
        0.0
    );
}

fn scram_message(mechanism: &str) -> String {
    format!(
        "Authentication failed during authentication due to invalid credentials with SASL mechanism {mechanism}"
    )
}

#[test]
fn sasl_off_serves_clients_without_credentials_and_refuses_sasl_exchanges() {
    let mut broker = TestBroker::start();
    let kafka = broker.addr("kafka");
    let bootstrap = kafka.to_string();
    let consumer: BaseConsumer = client_config(&bootstrap, None)
        .set("group.id", "plain")
        .create()
        .expect("consumer");
    let metadata = consumer
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata without credentials");
    assert_eq!(metadata.brokers().len(), 1);

    // As Kafka's PLAINTEXT listener: SASL requests get ILLEGAL_SASL_STATE, the connection stays.
    let mut stream = connect(kafka);
    let handshake = handshake(&mut stream, "PLAIN");
    assert_eq!(handshake.error_code, 34);
    let auth = authenticate(&mut stream, b"\0alice\0x");
    assert_eq!(auth.error_code, 34);
    metadata_v1(&mut stream);
}

/// A running broker holds the data directory, so the CLI goes through its admin API
/// (`tests/admin` covers that path); pointed at an address where no API answers, it fails and
/// says so instead of writing under the broker.
#[test]
fn user_add_while_the_broker_runs_goes_to_the_admin_api_and_fails_clearly_without_one() {
    let mut broker = sasl_broker(&[]);
    broker.addr("kafka");
    let output = add_user(&broker.data_dir(), "late", "pw");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("admin API"), "{stderr}");
}

// --- the byte level --------------------------------------------------------------------------

/// Sends one request at `version` and decodes its response.
fn call<Q: Encodable, R: Decodable>(
    stream: &mut TcpStream,
    key: ApiKey,
    version: i16,
    body: &Q,
) -> R {
    kafka_wire::send(stream, key, version, 7, body);
    let mut body = receive(stream, key.response_header_version(version)).expect("a response");
    R::decode(&mut body, version).expect("decodes")
}

/// The response body after its header, or `None` once the broker closed the connection.
fn receive(stream: &mut TcpStream, header_version: i16) -> Option<Bytes> {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).ok()?;
    let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut frame).expect("response body");
    let mut frame = Bytes::from(frame);
    assert_eq!(frame.get_i32(), 7, "correlation id");
    if header_version >= 1 {
        assert_eq!(frame.get_u8(), 0, "no tagged fields");
    }
    Some(frame)
}

fn closed(stream: &mut TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0) | Err(_))
}

fn handshake(stream: &mut TcpStream, mechanism: &str) -> SaslHandshakeResponse {
    let request =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_string(mechanism.into()));
    call(stream, ApiKey::SaslHandshake, 1, &request)
}

fn authenticate(stream: &mut TcpStream, token: &[u8]) -> SaslAuthenticateResponse {
    let request = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::copy_from_slice(token));
    call(stream, ApiKey::SaslAuthenticate, 2, &request)
}

fn metadata_v1(stream: &mut TcpStream) -> MetadataResponse {
    call(stream, ApiKey::Metadata, 1, &MetadataRequest::default())
}

#[test]
fn before_authentication_only_api_versions_and_sasl_requests_are_served() {
    let mut broker = sasl_broker(&[("alice", "alice-secret")]);
    let kafka = broker.addr("kafka");

    // ApiVersions is served and advertises exactly the implemented SASL versions; Metadata
    // then closes the connection without an answer.
    let mut stream = connect(kafka);
    let versions: ApiVersionsResponse = call(
        &mut stream,
        ApiKey::ApiVersions,
        3,
        &ApiVersionsRequest::default(),
    );
    let range = |key: ApiKey| {
        versions
            .api_keys
            .iter()
            .find(|api| api.api_key == key as i16)
            .map(|api| (api.min_version, api.max_version))
    };
    assert_eq!(range(ApiKey::SaslHandshake), Some((0, 1)));
    assert_eq!(range(ApiKey::SaslAuthenticate), Some((0, 2)));
    kafka_wire::send(
        &mut stream,
        ApiKey::Metadata,
        1,
        7,
        &MetadataRequest::default(),
    );
    assert!(
        closed(&mut stream),
        "Metadata before authentication was served"
    );

    // An unknown mechanism: UNSUPPORTED_SASL_MECHANISM with the enabled list, then closed.
    let mut stream = connect(kafka);
    let refused = handshake(&mut stream, "GSSAPI");
    assert_eq!(refused.error_code, 33);
    let listed: Vec<&str> = refused.mechanisms.iter().map(|m| m.as_str()).collect();
    assert_eq!(listed, ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]);
    assert!(closed(&mut stream));

    // SaslAuthenticate before SaslHandshake: ILLEGAL_SASL_STATE, then closed.
    let mut stream = connect(kafka);
    let out_of_order = authenticate(&mut stream, b"\0alice\0alice-secret");
    assert_eq!(out_of_order.error_code, 34);
    assert!(closed(&mut stream));

    // Handshake v0: raw size-prefixed tokens follow. PLAIN's success is an empty token, then
    // requests are served; a wrong password closes the connection without a reply.
    for (password, accepted) in [("alice-secret", true), ("wrong", false)] {
        let mut stream = connect(kafka);
        let plain =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
        let v0: SaslHandshakeResponse = call(&mut stream, ApiKey::SaslHandshake, 0, &plain);
        assert_eq!(v0.error_code, 0);
        let token = format!("\0alice\0{password}");
        let mut frame = (token.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(token.as_bytes());
        stream.write_all(&frame).expect("raw token");
        if accepted {
            let mut reply = [0u8; 4];
            stream.read_exact(&mut reply).expect("raw reply");
            assert_eq!(u32::from_be_bytes(reply), 0, "PLAIN's reply token is empty");
            assert_eq!(metadata_v1(&mut stream).brokers.len(), 1);
        } else {
            assert!(closed(&mut stream));
        }
    }

    // PLAIN at v2 (flexible): authenticated, no session lifetime, then Metadata is served and
    // a second handshake gets ILLEGAL_SASL_STATE without closing the connection.
    let mut stream = connect(kafka);
    assert_eq!(handshake(&mut stream, "PLAIN").error_code, 0);
    let ok = authenticate(&mut stream, b"alice\0alice\0alice-secret");
    assert_eq!((ok.error_code, ok.session_lifetime_ms), (0, 0));
    assert_eq!(metadata_v1(&mut stream).brokers.len(), 1);
    assert_eq!(handshake(&mut stream, "PLAIN").error_code, 34);
    assert_eq!(metadata_v1(&mut stream).brokers.len(), 1);

    // A PLAIN authorization id other than the user is refused like a wrong password.
    let mut stream = connect(kafka);
    handshake(&mut stream, "PLAIN");
    let other = authenticate(&mut stream, b"admin\0alice\0alice-secret");
    assert_eq!(other.error_code, 58);
    assert!(closed(&mut stream));
}

#[test]
fn a_scram_exchange_for_an_unknown_user_fails_only_at_the_proof() {
    let mut broker = sasl_broker(&[("alice", "alice-secret")]);
    let kafka = broker.addr("kafka");
    let mut stream = connect(kafka);
    assert_eq!(handshake(&mut stream, "SCRAM-SHA-256").error_code, 0);
    // The first step looks like a known user's: the client nonce extended, a salt, 4096.
    let first = authenticate(&mut stream, b"n,,n=nobody,r=clientnonce123");
    assert_eq!(first.error_code, 0);
    let server_first = String::from_utf8(first.auth_bytes.to_vec()).expect("UTF-8");
    let attributes: Vec<&str> = server_first.split(',').collect();
    assert_eq!(attributes.len(), 3, "{server_first}");
    let nonce = attributes[0].strip_prefix("r=").expect("r=");
    assert!(nonce.starts_with("clientnonce123") && nonce.len() > 14);
    assert!(attributes[1].starts_with("s=") && attributes[1].len() > 2);
    assert_eq!(attributes[2], "i=4096");
    // Asking again gives the same salt, as for a real user.
    let mut again = connect(kafka);
    assert_eq!(handshake(&mut again, "SCRAM-SHA-256").error_code, 0);
    let repeat = authenticate(&mut again, b"n,,n=nobody,r=othernonce");
    let repeat = String::from_utf8(repeat.auth_bytes.to_vec()).expect("UTF-8");
    assert_eq!(repeat.split(',').nth(1), Some(attributes[1]));
    // Any proof of the right length fails with Kafka's message, and the connection closes.
    let proof = "A".repeat(43) + "=";
    let final_message = format!("c=biws,r={nonce},p={proof}");
    let last = authenticate(&mut stream, final_message.as_bytes());
    assert_eq!(last.error_code, 58);
    assert_eq!(
        last.error_message.as_ref().map(|m| m.as_str().to_owned()),
        Some(scram_message("SCRAM-SHA-256"))
    );
    assert!(closed(&mut stream));
}
