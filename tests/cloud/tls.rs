//! Kafka `SSL` (`kafka.tls_port`) on the cloud engine: two real brokers over one PostgreSQL
//! and one object store, each with a TLS listener. An SSL librdkafka client bootstrapped on
//! broker 1's TLS port only gets Metadata naming both brokers at their TLS ports (never the
//! plaintext ones, which its handshakes would fail on), produces to a partition broker 2 leads
//! (so it must reach broker 2's TLS port as advertised) and consumes the records back; a
//! plaintext client of the same cluster is still told the plaintext ports.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::broker::TestBroker;
use crate::services::{bucket, fresh_database, unique};
use crate::tls_support::Pki;

const WAIT: Duration = Duration::from_secs(30);
const PARTITIONS: i32 = 6;

fn start_tls_broker(id: u32, database: &str, objects: &str, pki: &Pki) -> TestBroker {
    let id = id.to_string();
    let mut env = pki.env("none");
    env.push(("TRIBUTARY_KAFKA_TLS_PORT".into(), "0".into()));
    env.push(("TRIBUTARY_CLUSTER_FLUSH_INTERVAL_MS".into(), "50".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut broker = TestBroker::start_full(
        &[
            "--metadata-url",
            database,
            "--objects-url",
            objects,
            "--broker-id",
            &id,
            "--lease-ms",
            "3000",
            "--lease-renew-ms",
            "300",
        ],
        &env,
        |_| {},
    );
    broker.wait_for_line(&["cloud engine opened"], Duration::from_secs(20));
    broker
}

fn ssl_config(bootstrap: &str, pki: &Pki) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("message.timeout.ms", "20000")
        .set("security.protocol", "ssl")
        .set(
            "ssl.ca.location",
            pki.dir.join("ca.pem").display().to_string(),
        );
    config
}

/// Brokers (id -> port) and partition leaders of `topic` as Metadata tells `config`'s client.
fn metadata(config: &ClientConfig, topic: &str) -> (BTreeMap<i32, i32>, BTreeMap<i32, i32>) {
    let consumer: BaseConsumer = config.create().expect("metadata client");
    let metadata = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let brokers = metadata
        .brokers()
        .iter()
        .map(|b| (b.id(), b.port()))
        .collect();
    let leaders = metadata
        .topics()
        .first()
        .map(|t| {
            t.partitions()
                .iter()
                .map(|p| (p.id(), p.leader()))
                .collect()
        })
        .unwrap_or_default();
    (brokers, leaders)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ssl_client_is_sent_to_every_brokers_tls_port() {
    let database = fresh_database("tls").await;
    let objects = format!("s3://{}/{}", bucket(), unique("tls"));
    let dir = tempfile::Builder::new()
        .prefix("h17d-cloud-tls")
        .tempdir()
        .unwrap();
    let pki = Pki::create(dir.path(), "cloud-ca");
    let mut one = start_tls_broker(1, &database, &objects, &pki);
    let mut two = start_tls_broker(2, &database, &objects, &pki);
    let (tls_one, tls_two) = (one.addr("kafka_tls"), two.addr("kafka_tls"));
    let (plain_one, plain_two) = (one.addr("kafka"), two.addr("kafka"));
    let config = ssl_config(&tls_one.to_string(), &pki);

    let admin: AdminClient<DefaultClientContext> = config.create().expect("admin");
    let topic = "over-ssl";
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, PARTITIONS, TopicReplication::Fixed(1))],
            &AdminOptions::new().operation_timeout(Some(WAIT)),
        )
        .await
        .expect("create topics");
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    // Both brokers at their TLS ports once both leases are seen, and a partition led by 2.
    let want = BTreeMap::from([
        (1, i32::from(tls_one.port())),
        (2, i32::from(tls_two.port())),
    ]);
    let deadline = Instant::now() + WAIT;
    let on_two = loop {
        let (brokers, leaders) = metadata(&config, topic);
        let led_by_two = leaders.iter().find(|(_, leader)| **leader == 2);
        if brokers == want
            && let Some((partition, _)) = led_by_two
        {
            break *partition;
        }
        assert!(
            Instant::now() < deadline,
            "brokers {brokers:?} (want {want:?}), leaders {leaders:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    // A plaintext client of the same cluster still gets the plaintext ports.
    let mut plain = ClientConfig::new();
    plain.set("bootstrap.servers", plain_one.to_string());
    let (brokers, _) = metadata(&plain, topic);
    assert_eq!(
        brokers,
        BTreeMap::from([
            (1, i32::from(plain_one.port())),
            (2, i32::from(plain_two.port()))
        ])
    );

    // Produce to broker 2's partition through the client bootstrapped on broker 1 only.
    let producer: FutureProducer = config
        .clone()
        .set("acks", "all")
        .create()
        .expect("producer");
    let values: Vec<String> = (0..5).map(|i| format!("ssl-{i}")).collect();
    for value in &values {
        let delivery = producer
            .send(
                FutureRecord::<(), _>::to(topic)
                    .partition(on_two)
                    .payload(value),
                WAIT,
            )
            .await
            .unwrap_or_else(|(error, _)| panic!("delivery of {value}: {error}"));
        assert_eq!(delivery.partition, on_two);
    }
    let consumer: BaseConsumer = config
        .clone()
        .set("group.id", "over-ssl-group")
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, on_two, Offset::Beginning)
        .expect("assign");
    consumer.assign(&assignment).expect("assign");
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    while got.len() < values.len() {
        assert!(Instant::now() < deadline, "only {got:?} arrived");
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("consume");
            got.push(String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned());
        }
    }
    assert_eq!(got, values);
}
