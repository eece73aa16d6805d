//! Outages of the services under a producing idempotent client: the object store unreachable for
//! a few seconds (a TCP relay in front of the real S3 server stops relaying), then PostgreSQL
//! refusing the broker's database for longer than the lease (connections killed with
//! `pg_terminate_backend`, new ones refused). Producers see only retriable errors, every
//! acknowledged record is consumed back once, offsets stay dense, `/health` answers 503 while
//! the lease is lost and 200 after, Metadata lists the broker all along (a librdkafka producer
//! told of no broker forgets them all and stalls), and the broker recovers by itself.

use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    ApiKey, MetadataRequest, MetadataResponse, ProduceResponse, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use parking_lot::Mutex;
use rdkafka::config::ClientConfig;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use tokio::net::TcpListener;
use tributary_api::Record;
use tributary_api::batch::build_batch;

use crate::broker::{TestBroker, http_get};
use crate::cluster::{Acks, Counting, record_id};
use crate::kafka::consumer;
use crate::kafka_wire::{produce_request, receive, send};
use crate::services::{bucket, connect, fresh_database, unique};

const TOPIC: &str = "outage";
const PARTITIONS: i32 = 2;
const LEASE_MS: u64 = 2_000;
/// Kafka error codes a producer retries: UNKNOWN_TOPIC_OR_PARTITION, LEADER_NOT_AVAILABLE,
/// NOT_LEADER_OR_FOLLOWER, REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS(_AFTER_APPEND),
/// KAFKA_STORAGE_ERROR.
const RETRIABLE: &[i16] = &[3, 5, 6, 7, 19, 20, 56];

/// A TCP relay to a real server that can be switched off: while down it closes every relayed
/// connection and every new one at once, as an unreachable server would.
struct Relay {
    addr: SocketAddr,
    down: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>>,
    accept: tokio::task::JoinHandle<()>,
}

impl Relay {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind relay");
        let addr = listener.local_addr().expect("relay addr");
        let down = Arc::new(AtomicBool::new(false));
        let connections: Arc<Mutex<Vec<tokio::task::AbortHandle>>> = Arc::default();
        let accept = {
            let down = down.clone();
            let connections = connections.clone();
            tokio::spawn(async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    if down.load(Ordering::Acquire) {
                        continue;
                    }
                    let relayed = tokio::spawn(async move {
                        if let Ok(mut outbound) = tokio::net::TcpStream::connect(upstream).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().push(relayed.abort_handle());
                }
            })
        };
        Self {
            addr,
            down,
            connections,
            accept,
        }
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::Release);
        if down {
            for connection in self.connections.lock().drain(..) {
                connection.abort();
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.accept.abort();
        self.set_down(true);
    }
}

/// What one probe produce got: an error code, or no answer at all within the timeout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Probe {
    Answered { code: i16, offset: i64 },
    NoAnswer,
}

/// One produce of a one-record batch `probe-<n>` to partition 0 on a fresh connection (acks=1).
fn probe(addr: SocketAddr, n: u32) -> Probe {
    let attempt = || -> std::io::Result<Probe> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(40)))?;
        // Stamped now: a record of 1970 would be retention's to delete during the test.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as i64);
        let batch = build_batch(&[Record {
            value: Some(Bytes::from(format!("probe-{n}"))),
            timestamp: now,
            ..Record::default()
        }]);
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Produce as i16)
            .with_request_api_version(9)
            .with_correlation_id(1)
            .with_client_id(Some(StrBytes::from_static_str("outage-probe")));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, ApiKey::Produce.request_header_version(9))
            .expect("header");
        produce_request(TOPIC, 1, batch)
            .encode(&mut body, 9)
            .expect("body");
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.put_slice(&body);
        stream.write_all(&frame)?;
        let mut size = [0u8; 4];
        stream.read_exact(&mut size)?;
        let mut answer = vec![0u8; i32::from_be_bytes(size) as usize];
        stream.read_exact(&mut answer)?;
        let mut answer = Bytes::from(answer);
        answer.advance(4); // correlation id
        answer.advance(1); // tagged fields of the flexible response header
        let response = ProduceResponse::decode(&mut answer, 9).expect("produce response");
        let partition = &response.responses[0].partition_responses[0];
        Ok(Probe::Answered {
            code: partition.error_code,
            offset: partition.base_offset,
        })
    };
    attempt().unwrap_or(Probe::NoAnswer)
}

/// The brokers (id, port) a Metadata request for the topic lists, on a fresh connection.
fn metadata_brokers(addr: SocketAddr) -> Vec<(i32, u16)> {
    let mut stream = TcpStream::connect(addr).expect("connect for metadata");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    let request = MetadataRequest::default().with_topics(Some(vec![
        MetadataRequestTopic::default()
            .with_name(Some(TopicName(StrBytes::from_static_str(TOPIC)))),
    ]));
    send(&mut stream, ApiKey::Metadata, 9, 1, &request);
    let (_, mut body) = receive(&mut stream, ApiKey::Metadata.response_header_version(9));
    let response = MetadataResponse::decode(&mut body, 9).expect("metadata response");
    response
        .brokers
        .iter()
        .map(|broker| (broker.node_id.0, broker.port as u16))
        .collect()
}

fn health(broker: &mut TestBroker) -> u16 {
    http_get(broker.http_addr(), "/health")
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Probes every 300 ms for `hold`, collecting the answers.
async fn probe_for(addr: SocketAddr, hold: Duration, next: &mut u32, seen: &mut Vec<(u32, Probe)>) {
    let until = Instant::now() + hold;
    while Instant::now() < until {
        let n = *next;
        *next += 1;
        let got = tokio::task::spawn_blocking(move || probe(addr, n))
            .await
            .expect("probe");
        seen.push((n, got));
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// Probes until one is acknowledged: the broker recovered on its own.
async fn until_acknowledged(
    addr: SocketAddr,
    within: Duration,
    next: &mut u32,
    seen: &mut Vec<(u32, Probe)>,
) -> Duration {
    let started = Instant::now();
    loop {
        let n = *next;
        *next += 1;
        let got = tokio::task::spawn_blocking(move || probe(addr, n))
            .await
            .expect("probe");
        seen.push((n, got));
        if matches!(got, Probe::Answered { code: 0, .. }) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < within,
            "not recovered within {within:?}; probes: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn producers_ride_out_object_store_and_postgres_outages() {
    let database = fresh_database("outage").await;
    let database_name = database
        .rsplit('/')
        .next()
        .and_then(|tail| tail.split('?').next())
        .expect("database name")
        .to_owned();
    let objects = format!("s3://{}/{}", bucket(), unique("outage"));
    let endpoint = std::env::var("AWS_ENDPOINT_URL").expect("AWS_ENDPOINT_URL");
    let upstream: SocketAddr = endpoint
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .expect("AWS_ENDPOINT_URL is http://host:port");
    let relay = Relay::start(upstream).await;
    let relay_url = format!("http://{}", relay.addr);
    let config = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(
        config.path(),
        format!("[kafka]\ndefault_partitions = {PARTITIONS}\n[cluster]\nflush_interval_ms = 50\n"),
    )
    .expect("write config");
    let lease = LEASE_MS.to_string();
    let mut broker = TestBroker::start_with_env(
        &[
            "--metadata-url",
            &database,
            "--objects-url",
            &objects,
            "--broker-id",
            "1",
            "--lease-ms",
            &lease,
            "--lease-renew-ms",
            "200",
            "--config",
            config.path().to_str().expect("utf-8"),
        ],
        &[("AWS_ENDPOINT_URL", &relay_url)],
    );
    broker.wait_for_line(&["cloud engine opened"], Duration::from_secs(20));
    let kafka = broker.addr("kafka");
    assert_eq!(health(&mut broker), 200);
    let mut next_probe = 0u32;
    let mut probes: Vec<(u32, Probe)> = Vec::new();
    until_acknowledged(kafka, Duration::from_secs(20), &mut next_probe, &mut probes).await;

    // An idempotent producer sending steadily through both outages.
    let acks = Arc::new(Acks::default());
    let producer: Arc<ThreadedProducer<Counting>> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", kafka.to_string())
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "120000")
            .set("topic.metadata.refresh.interval.ms", "1000")
            .create_with_context(Counting(acks.clone()))
            .expect("producer"),
    );
    let producing = Arc::new(AtomicBool::new(true));
    let sender = {
        let producer = producer.clone();
        let producing = producing.clone();
        std::thread::spawn(move || {
            let mut n = 0u32;
            while producing.load(Ordering::Acquire) {
                let mut payload = n.to_be_bytes().to_vec();
                payload.extend_from_slice(&[0x33; 40]);
                let key = format!("k{n}");
                if producer
                    .send(BaseRecord::to(TOPIC).key(&key).payload(&payload))
                    .is_ok()
                {
                    n += 1;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            n
        })
    };
    tokio::time::sleep(Duration::from_millis(1_500)).await;

    // 1. The object store unreachable for 3 s.
    let mut during_s3 = Vec::new();
    relay.set_down(true);
    probe_for(
        kafka,
        Duration::from_secs(3),
        &mut next_probe,
        &mut during_s3,
    )
    .await;
    relay.set_down(false);
    let s3_recovery = until_acknowledged(
        kafka,
        Duration::from_secs(60),
        &mut next_probe,
        &mut during_s3,
    )
    .await;

    // 2. PostgreSQL: the broker's connections killed and new ones refused for 5 s (> the lease).
    let admin = connect(&std::env::var("TRIBUTARY_TEST_PG_URL").expect("pg url")).await;
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{database_name}\" ALLOW_CONNECTIONS false"
        ))
        .await
        .expect("refuse connections");
    let killed: i64 = admin
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = $1",
            &[&database_name],
        )
        .await
        .expect("terminate backends")
        .get(0);
    let pg_down = Instant::now();
    let mut during_pg = Vec::new();
    let mut unhealthy = false;
    // What Metadata listed as brokers while the lease was lost.
    let mut listed_without_lease: Vec<Vec<(i32, u16)>> = Vec::new();
    while pg_down.elapsed() < Duration::from_secs(5) {
        let n = next_probe;
        next_probe += 1;
        let got = tokio::task::spawn_blocking(move || probe(kafka, n))
            .await
            .expect("probe");
        during_pg.push((n, got));
        if health(&mut broker) == 503 {
            unhealthy = true;
            let listed = tokio::task::spawn_blocking(move || metadata_brokers(kafka))
                .await
                .expect("metadata");
            listed_without_lease.push(listed);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    admin
        .batch_execute(&format!(
            "ALTER DATABASE \"{database_name}\" ALLOW_CONNECTIONS true"
        ))
        .await
        .expect("allow connections");
    let pg_up = Instant::now();
    let mut healthy_after = None;
    while pg_up.elapsed() < Duration::from_secs(30) {
        if health(&mut broker) == 200 {
            healthy_after = Some(pg_up.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let pg_recovery = until_acknowledged(
        kafka,
        Duration::from_secs(60),
        &mut next_probe,
        &mut during_pg,
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    producing.store(false, Ordering::Release);
    let sent = sender.join().expect("sender thread");
    producer
        .flush(Duration::from_secs(200))
        .expect("every record delivered or failed");

    // Every error a producer saw was retriable; something failed during each outage.
    let all_probes: Vec<(u32, Probe)> = probes
        .iter()
        .chain(&during_s3)
        .chain(&during_pg)
        .copied()
        .collect();
    for (n, got) in &all_probes {
        if let Probe::Answered { code, .. } = got {
            assert!(
                *code == 0 || RETRIABLE.contains(code),
                "probe {n} got the non-retriable error {code}"
            );
        }
    }
    let refused = |seen: &[(u32, Probe)]| {
        seen.iter()
            .filter(|(_, got)| !matches!(got, Probe::Answered { code: 0, .. }))
            .count()
    };
    assert!(killed > 0, "the broker had PostgreSQL connections to kill");
    assert!(
        refused(&during_pg) > 0,
        "nothing refused while PostgreSQL was away: {during_pg:?}"
    );
    assert!(
        unhealthy,
        "/health never answered 503 while the lease was lost"
    );
    // A client told of no broker forgets all of them, its bootstrap servers too, and stalls
    // (librdkafka 2.10+): the broker keeps listing itself without its lease.
    assert!(
        listed_without_lease
            .iter()
            .all(|listed| listed.contains(&(1, kafka.port()))),
        "Metadata without the lease left this broker out: {listed_without_lease:?}"
    );
    let healthy_after = healthy_after.expect("/health back to 200 after PostgreSQL returned");

    // Consume everything back: acknowledged records once each, probes too, dense offsets.
    let failed = acks.failed.lock().clone();
    let acked = acks.acked.lock().clone();
    let consumer = consumer(&kafka.to_string(), "outage-check", TOPIC, PARTITIONS);
    let acked_probes: Vec<(u32, i64)> = all_probes
        .iter()
        .filter_map(|(n, got)| match got {
            Probe::Answered { code: 0, offset } => Some((*n, *offset)),
            _ => None,
        })
        .collect();
    let mut seen_records: HashMap<u32, u32> = HashMap::new();
    let mut seen_probes: HashMap<String, u32> = HashMap::new();
    let mut offsets: BTreeMap<i32, Vec<i64>> = BTreeMap::new();
    let total_acked = acked.len() + acked_probes.len();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut quiet_since = Instant::now();
    while Instant::now() < deadline && quiet_since.elapsed() < Duration::from_secs(3) {
        let Some(message) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let message = message.expect("consume");
        quiet_since = Instant::now();
        offsets
            .entry(message.partition())
            .or_default()
            .push(message.offset());
        let payload = message.payload().expect("payload");
        if payload.starts_with(b"probe-") {
            *seen_probes
                .entry(String::from_utf8_lossy(payload).into_owned())
                .or_default() += 1;
        } else {
            *seen_records.entry(record_id(&message)).or_default() += 1;
        }
    }
    let lost: Vec<u32> = acked
        .iter()
        .map(|a| a.2)
        .filter(|id| !seen_records.contains_key(id))
        .collect();
    let lost_probes: Vec<u32> = acked_probes
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| !seen_probes.contains_key(&format!("probe-{n}")))
        .collect();
    let duplicates: u32 = seen_records.values().map(|count| count - 1).sum();
    eprintln!(
        "outage: {sent} sent, {} acknowledged, {} failed, {} lost, {duplicates} duplicates; \
         probes: {} acknowledged of {}, {} refused during S3 down, {} during PostgreSQL down; \
         S3 recovery {} ms, PostgreSQL: /health 200 {} ms after it returned, produce {} ms; \
         {killed} connections killed",
        acked.len(),
        failed.len(),
        lost.len(),
        acked_probes.len(),
        all_probes.len(),
        refused(&during_s3),
        refused(&during_pg),
        s3_recovery.as_millis(),
        healthy_after.as_millis(),
        pg_recovery.as_millis(),
    );
    assert!(lost.is_empty(), "acknowledged but not consumed: {lost:?}");
    assert!(
        lost_probes.is_empty(),
        "acknowledged probes not consumed: {lost_probes:?}"
    );
    assert_eq!(duplicates, 0, "duplicates from an idempotent producer");
    assert!(
        failed.is_empty(),
        "{} deliveries failed, the first: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(
        acked.len() as u32,
        sent,
        "every record sent was acknowledged"
    );
    for (partition, mut got) in offsets {
        got.sort_unstable();
        got.dedup();
        let expected: Vec<i64> = (0..got.len() as i64).collect();
        assert_eq!(got, expected, "partition {partition}: offsets not dense");
    }
    assert!(total_acked > 0);
}
