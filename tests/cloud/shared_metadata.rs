//! Two real brokers over one PostgreSQL and one object store share their metadata: a user
//! added through broker A's admin API or through the CLI pointed at the database logs in on
//! broker B over Kafka SASL/SCRAM and AMQP PLAIN; a permission revoked on A refuses on B; a
//! Kafka ACL created (and deleted) on A is enforced on B within a bound (measured, printed);
//! a durable AMQP exchange declared on A is found by a passive declare on B, over a
//! connection B had open before.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use kafka_protocol::messages::create_acls_request::AclCreation;
use kafka_protocol::messages::create_topics_request::CreatableTopic;
use kafka_protocol::messages::delete_acls_request::DeleteAclsFilter;
use kafka_protocol::messages::{
    ApiKey, CreateAclsRequest, CreateAclsResponse, CreateTopicsRequest, CreateTopicsResponse,
    DeleteAclsRequest, DeleteAclsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use lapin::options::{ExchangeDeclareOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::json;
use tributary::admin_client::{AdminClient, api_path};

use crate::broker::{TestBroker, cli_output, connect, data_dir_in};
use crate::cluster::start_broker;
use crate::kafka_wire::{self, call};
use crate::services::{bucket, fresh_database, unique};

const TOPIC_DENIED: i16 = 29;
/// How soon a change made on one broker must apply on the other (NOTIFY takes milliseconds;
/// without it the Kafka authorizer's periodic reload takes up to 2 s).
const BOUND: Duration = Duration::from_millis(1_000);

/// Two brokers on a fresh database and object prefix, with `config` (TOML) for both.
struct Pair {
    a: TestBroker,
    b: TestBroker,
    database: String,
    objects: String,
    _config: tempfile::NamedTempFile,
}

async fn pair(config: &str) -> Pair {
    let database = fresh_database("shared-meta").await;
    let objects = format!("s3://{}/{}", bucket(), unique("shared-meta"));
    let file = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(
        file.path(),
        format!("{config}\n[cluster]\nflush_interval_ms = 50\n"),
    )
    .expect("write config");
    let path = file.path().to_str().expect("utf-8").to_owned();
    let a = start_broker(1, &database, &objects, &path);
    let b = start_broker(2, &database, &objects, &path);
    Pair {
        a,
        b,
        database,
        objects,
        _config: file,
    }
}

/// Runs `tributary <args>` with `cluster.metadata_url` set to the pair's database (and an
/// empty data directory no broker uses); panics with its stderr when it fails.
fn cli(pair: &Pair, args: &[&str], stdin: &str) -> String {
    let root = tempfile::tempdir().expect("root dir");
    let envs = [
        ("TRIBUTARY_CLUSTER_METADATA_URL", pair.database.as_str()),
        ("TRIBUTARY_CLUSTER_OBJECTS_URL", pair.objects.as_str()),
    ];
    let output = cli_output(root.path(), args, &envs, stdin);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let data = data_dir_in(root.path());
    assert!(
        !data.exists() || std::fs::read_dir(&data).expect("dir").next().is_none(),
        "with metadata_url the CLI writes nothing locally"
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// `method` on broker `broker`'s admin API as guest; the status.
async fn admin(
    broker: &mut TestBroker,
    method: &str,
    path: &[&str],
    body: Option<serde_json::Value>,
) -> u16 {
    let url = format!("http://{}", broker.addr("http"));
    let client = AdminClient::new(&url, "guest", "guest").expect("client");
    let path = api_path(path);
    let method = method.to_owned();
    tokio::task::spawn_blocking(move || client.call(&method, &path, body.as_ref()))
        .await
        .expect("join")
        .unwrap_or_else(|error| panic!("{error:#}"))
        .status
}

/// Whether SCRAM-SHA-256 as `user` gets Kafka Metadata from `kafka`.
fn scram_logs_in(kafka: SocketAddr, user: &str, password: &str) -> bool {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.to_string())
        .set("security.protocol", "sasl_plaintext")
        .set("sasl.mechanism", "SCRAM-SHA-256")
        .set("sasl.username", user)
        .set("sasl.password", password)
        .create()
        .expect("client");
    consumer
        .fetch_metadata(None, Duration::from_secs(5))
        .is_ok()
}

async fn amqp(broker: &mut TestBroker, user: &str, password: &str) -> lapin::Result<Connection> {
    let uri = format!("amqp://{user}:{password}@{}/%2f", broker.addr("amqp"));
    Connection::connect(&uri, ConnectionProperties::default()).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_and_permissions_made_on_one_broker_apply_on_the_other() {
    let mut pair = pair("[kafka]\nsasl_enabled = true").await;
    let kafka_b = pair.b.addr("kafka");
    // Through broker A's admin API.
    let user = json!({ "password": "carol-pw", "tags": "" });
    assert_eq!(
        admin(&mut pair.a, "PUT", &["users", "carol"], Some(user)).await,
        201
    );
    let grant = json!({ "configure": ".*", "write": ".*", "read": ".*" });
    assert_eq!(
        admin(
            &mut pair.a,
            "PUT",
            &["permissions", "/", "carol"],
            Some(grant)
        )
        .await,
        201
    );
    // Through the CLI pointed at the database.
    let said = cli(
        &pair,
        &["user", "add", "dora", "--password-stdin"],
        "dora-pw\n",
    );
    assert!(said.contains("PostgreSQL"), "{said}");
    cli(
        &pair,
        &["permissions", "set", "/", "dora", ".*", ".*", ".*"],
        "",
    );
    assert_eq!(cli(&pair, &["user", "list"], ""), "carol\ndora\n");

    for (user, password) in [("carol", "carol-pw"), ("dora", "dora-pw")] {
        assert!(scram_logs_in(kafka_b, user, password), "{user}: SCRAM on B");
        assert!(
            !scram_logs_in(kafka_b, user, "wrong"),
            "{user}: wrong password"
        );
        let connection = amqp(&mut pair.b, user, password)
            .await
            .unwrap_or_else(|error| panic!("{user}: AMQP PLAIN on B: {error}"));
        connection.close(200, "bye".into()).await.expect("close");
    }

    // A grant revoked on A refuses on B: an open channel's next method, and a new connection.
    let connection = amqp(&mut pair.b, "carol", "carol-pw")
        .await
        .expect("carol on B");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .queue_declare(
            "carol.q1".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("allowed before");
    // The open connection's grant is swapped when B hears of the change (milliseconds).
    let started = Instant::now();
    assert_eq!(
        admin(&mut pair.a, "DELETE", &["permissions", "/", "carol"], None).await,
        204
    );
    let mut channel = channel;
    loop {
        let declared = channel
            .queue_declare(
                "carol.q2".into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await;
        match declared {
            Err(refused) => {
                assert!(refused.to_string().contains("ACCESS_REFUSED"), "{refused}");
                break;
            }
            Ok(_) => assert!(started.elapsed() < BOUND, "still allowed on B"),
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
        channel = connection.create_channel().await.expect("channel");
    }
    println!(
        "permission revoked on A refused on B {} ms after the call was made",
        started.elapsed().as_millis()
    );
    assert!(
        amqp(&mut pair.b, "carol", "carol-pw").await.is_err(),
        "no grant on / any more: the vhost is refused"
    );
    // A user deleted on A no longer logs in on B, and its open AMQP connection there closes.
    let dora = amqp(&mut pair.b, "dora", "dora-pw")
        .await
        .expect("dora on B");
    assert!(dora.status().connected());
    let started = Instant::now();
    assert_eq!(
        admin(&mut pair.a, "DELETE", &["users", "dora"], None).await,
        204
    );
    while dora.status().connected() {
        assert!(
            started.elapsed() < BOUND,
            "dora's connection on B stayed open"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    println!(
        "user deleted on A: its connection on B closed {} ms after the call was made",
        started.elapsed().as_millis()
    );
    assert!(
        !scram_logs_in(kafka_b, "dora", "dora-pw"),
        "dora deleted on A"
    );
}

fn name(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// A connection authenticated with SASL PLAIN as `user`.
fn login(kafka: SocketAddr, user: &str, password: &str) -> TcpStream {
    let mut stream = connect(kafka);
    kafka_wire::sasl_plain_login(&mut stream, user, password);
    stream
}

fn fetch(stream: &mut TcpStream, topic: &str) -> i16 {
    kafka_wire::fetch_error(stream, topic)
}

/// Fetches `topic` on `stream` until `done(code)`; how long it took, and the last code.
fn until(stream: &mut TcpStream, topic: &str, done: impl Fn(i16) -> bool) -> (Duration, i16) {
    let started = Instant::now();
    loop {
        let code = fetch(stream, topic);
        if done(code) || started.elapsed() > Duration::from_secs(10) {
            return (started.elapsed(), code);
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kafka_acl_made_on_one_broker_is_enforced_on_the_other() {
    let mut pair =
        pair("[kafka]\nsasl_enabled = true\nauthorizer = true\nsuper_users = [\"admin\"]").await;
    cli(
        &pair,
        &["user", "add", "admin", "--password-stdin"],
        "admin-secret\n",
    );
    cli(
        &pair,
        &["user", "add", "alice", "--password-stdin"],
        "alice-secret\n",
    );
    let (kafka_a, kafka_b) = (pair.a.addr("kafka"), pair.b.addr("kafka"));
    let topic = "guarded";
    tokio::task::spawn_blocking(move || {
        let mut admin = login(kafka_a, "admin", "admin-secret");
        let created: CreateTopicsResponse = call(
            &mut admin,
            ApiKey::CreateTopics,
            5,
            &CreateTopicsRequest::default()
                .with_topics(vec![
                    CreatableTopic::default()
                        .with_name(TopicName(name(topic)))
                        .with_num_partitions(1)
                        .with_replication_factor(1),
                ])
                .with_timeout_ms(5_000),
        );
        assert_eq!(created.topics[0].error_code, 0, "{created:?}");
        let mut alice = login(kafka_b, "alice", "alice-secret");
        assert_eq!(fetch(&mut alice, topic), TOPIC_DENIED, "no ACL yet");

        let grant = AclCreation::default()
            .with_resource_type(2)
            .with_resource_name(name(topic))
            .with_resource_pattern_type(3)
            .with_principal(name("User:alice"))
            .with_host(name("*"))
            .with_operation(3)
            .with_permission_type(3);
        let granted: CreateAclsResponse = call(
            &mut admin,
            ApiKey::CreateAcls,
            3,
            &CreateAclsRequest::default().with_creations(vec![grant]),
        );
        assert!(granted.results.iter().all(|r| r.error_code == 0));
        let (took, code) = until(&mut alice, topic, |code| code != TOPIC_DENIED);
        println!(
            "ACL created on A allowed on B {} ms after A acknowledged it",
            took.as_millis()
        );
        assert_eq!(code, 0, "READ allowed on B");
        assert!(took < BOUND, "took {took:?}");

        let filter = DeleteAclsFilter::default()
            .with_resource_type_filter(2)
            .with_resource_name_filter(Some(name(topic)))
            .with_pattern_type_filter(3)
            .with_principal_filter(Some(name("User:alice")))
            .with_host_filter(None)
            .with_operation(3)
            .with_permission_type(3);
        let deleted: DeleteAclsResponse = call(
            &mut admin,
            ApiKey::DeleteAcls,
            3,
            &DeleteAclsRequest::default().with_filters(vec![filter]),
        );
        assert_eq!(deleted.filter_results[0].matching_acls.len(), 1);
        let (took, code) = until(&mut alice, topic, |code| code == TOPIC_DENIED);
        println!(
            "ACL deleted on A denied on B {} ms after A acknowledged it",
            took.as_millis()
        );
        assert_eq!(code, TOPIC_DENIED, "denied again on B");
        assert!(took < BOUND, "took {took:?}");
    })
    .await
    .expect("kafka side");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_durable_exchange_declared_on_one_broker_is_found_on_the_other() {
    let mut pair = pair("").await;
    // B has the vhost open (its definitions loaded) before A declares anything.
    let on_b = amqp(&mut pair.b, "guest", "guest").await.expect("B");
    let probe = on_b.create_channel().await.expect("channel");
    let passive = ExchangeDeclareOptions {
        passive: true,
        ..Default::default()
    };
    probe
        .exchange_declare(
            "orders.x".into(),
            ExchangeKind::Topic,
            passive,
            FieldTable::default(),
        )
        .await
        .expect_err("not declared yet");

    let on_a = amqp(&mut pair.a, "guest", "guest").await.expect("A");
    let channel = on_a.create_channel().await.expect("channel");
    channel
        .exchange_declare(
            "orders.x".into(),
            ExchangeKind::Topic,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("declared on A");
    let started = Instant::now();
    loop {
        let probe = on_b.create_channel().await.expect("channel");
        let found = probe
            .exchange_declare(
                "orders.x".into(),
                ExchangeKind::Topic,
                passive,
                FieldTable::default(),
            )
            .await;
        if found.is_ok() {
            break;
        }
        assert!(started.elapsed() < BOUND, "not found on B: {found:?}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "exchange declared on A found on B {} ms after A acknowledged it",
        started.elapsed().as_millis()
    );
}
