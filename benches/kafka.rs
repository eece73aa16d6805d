//! Kafka frontend benchmark (`cargo bench --bench kafka`): librdkafka (the `rdkafka` crate)
//! against the Kafka frontend served in-process on loopback, twice per measurement:
//!
//! - **tributary**: `Broker::open` on a fresh temp dir with the broker's default settings (the
//!   durability is the one named per row), the engine exactly as the binary mounts it;
//! - **ceiling**: the same broker and the same `KafkaFrontend`, listener and accept loop, with
//!   only `Engine::log` swapped for `MemoryLog` (Discard for producing, Retain for consuming):
//!   what the client, loopback and the frontend code can do with no storage.
//!
//! Producer: 100 B and 1 KiB values, no key, acks=1, linger.ms=5, otherwise librdkafka
//! defaults, sending as fast as the client queue takes for [`PRODUCE_FOR`], then flushing;
//! records/s = acknowledged records / (first send .. flush done). Delivery latency (`send` to
//! the delivery callback) is measured after that, in a paced phase of [`LATENCY_RATE`]
//! records/s for [`LATENCY_FOR`] on the same producer, far below every backend's capacity.
//! Consumer: a topic pre-filled through `LogService::append` with the same ~100 KiB batches on
//! both backends, read end to end by an assigned `BaseConsumer` with fetch defaults.
//!
//! Runs are interleaved (tributary, ceiling, tributary, ...), each on a fresh broker after a
//! system-wide `sync`; medians and the worst run are printed and ratios are of medians.
//! Arguments: `produce` or `consume` runs one part. Environment: `TRIBUTARY_BENCH_REPEATS`
//! (default 7), `TRIBUTARY_BENCH_DIR` (default the system temp dir).
//!
//! `partitions` (never run by default) measures aggregate produce over 1, 100 and 1,000
//! partitions of one topic, and the idle CPU of a broker holding 1,000 ([`partitions`]).
//!
//! `transactions` (never run by default) compares transactional produce (100 and 1,000 records
//! per transaction) with idempotent produce, and `read_committed` with `read_uncommitted`
//! fetches of a transactional topic ([`transactions`]).
//!
//! `variants` (never run by default) compares producer settings on the same backends: an
//! idempotent producer against a plain one, and each compression codec, with what the broker's
//! check of a produced batch costs per MiB measured beside it ([`variants`]).
//!
//! `cloud` (never run by default: it needs PostgreSQL and S3, e.g. `eval "$(bash .ci/services
//! start)"`) compares the cloud engine (a fresh database per run, default flush settings)
//! with the local engine (`always`), same producer, and counts object PUTs and PostgreSQL flush
//! transactions per 1,000 acknowledged batches; then the same consumer reads a pre-filled topic
//! back from each, counting the cloud engine's object GETs and read-cache hits.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use tokio::runtime::Runtime;
use tributary::broker::memory_log::{MemoryLog, MemoryLogMode};
use tributary::broker::{Broker, BrokerSettings};
use tributary::config::Config;
use tributary::server::listener::serve_listener;
use tributary::server::shutdown::Lifecycle;
use tributary_api::batch::build_batch;
use tributary_api::{Durability, Engine, Record, TopicPartition, TopicSettings};
use tributary_kafka::{KafkaFrontend, KafkaSettings};

#[path = "kafka/partitions.rs"]
mod partitions;
#[path = "support/proc_cpu.rs"]
#[allow(dead_code)] // Only `cpu_time` is used here; the other benches use the rest.
mod proc_cpu;
#[path = "kafka/transactions.rs"]
mod transactions;
#[path = "kafka/variants.rs"]
mod variants;

const TOPIC: &str = "bench";
/// The broker's default for auto-created topics.
const PARTITIONS: u32 = 4;
const PRODUCE_FOR: Duration = Duration::from_secs(3);
/// The paced phase after each producer run that measures delivery latency.
const LATENCY_FOR: Duration = Duration::from_secs(1);
const LATENCY_RATE: f64 = 5_000.0;
/// Bytes of pre-filled log per consumer run, per record size.
const CONSUME_BYTES: [(usize, usize); 2] = [(100, 256 << 20), (1024, 1 << 30)];
/// Batches appended for the consumer are about this large.
const FILL_BATCH_BYTES: usize = 100 << 10;
/// Appends in flight while filling a topic for the consumer.
const FILL_IN_FLIGHT: usize = 64;
/// Bytes of pre-filled log per run of the cloud consume comparison (1 KiB values): four times
/// the read cache, so most of it is read back from the object store.
const CLOUD_CONSUME_BYTES: usize = 256 << 20;
/// Bound on any one client loop, so a broken broker ends the run instead of hanging it.
const CLIENT_DEADLINE: Duration = Duration::from_secs(120);
const MIB: f64 = (1 << 20) as f64;

/// What stands behind `Engine::log`.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Tributary(Durability),
    Ceiling(MemoryLogMode),
    /// The cloud engine over `TRIBUTARY_TEST_PG_URL` (a fresh database) and the S3 bucket.
    Cloud,
}

/// One broker serving Kafka on a loopback port.
struct Running {
    addr: SocketAddr,
    engine: Engine,
    broker: Arc<Broker>,
    lifecycle: Lifecycle,
    _dir: tempfile::TempDir,
}

fn bench_dir() -> String {
    std::env::var("TRIBUTARY_BENCH_DIR")
        .unwrap_or_else(|_| std::env::temp_dir().display().to_string())
}

async fn start(backend: Backend) -> Running {
    start_with(backend, PARTITIONS).await
}

/// [`start`] with topic [`TOPIC`] of `partitions` partitions.
async fn start_with(backend: Backend, partitions: u32) -> Running {
    let dir = tempfile::tempdir_in(bench_dir()).expect("tempdir");
    let mut config = Config {
        data_dir: dir.path().to_path_buf(),
        ..Config::default()
    };
    if let Backend::Tributary(durability) = backend {
        config.storage.durability = durability;
    }
    let settings: BrokerSettings = config.broker_settings();
    let cloud = match backend {
        Backend::Cloud => Some(open_cloud(&config).await),
        _ => None,
    };
    let broker = tokio::task::spawn_blocking(move || Broker::open_with_cloud(settings, cloud))
        .await
        .expect("open task")
        .expect("open broker");
    let mut engine = broker.engine();
    if let Backend::Ceiling(mode) = backend {
        engine.log = Arc::new(MemoryLog::new(mode));
    }
    engine
        .topics
        .create_topic(TOPIC, partitions, TopicSettings::default())
        .await
        .expect("create topic");
    let frontend = KafkaFrontend::new(
        engine.clone(),
        KafkaSettings {
            advertised_host: "127.0.0.1".to_owned(),
            // As the binary configures it; TRIBUTARY_BENCH_PIPELINED overrides (to compare).
            max_pipelined_produces: std::env::var("TRIBUTARY_BENCH_PIPELINED")
                .ok()
                .and_then(|value| value.parse().ok())
                .unwrap_or(match backend {
                    Backend::Cloud => tributary::config::CLOUD_PIPELINED_PRODUCES,
                    _ => config.kafka_max_pipelined_produces(),
                }),
            ..KafkaSettings::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("local addr");
    let spec = config.kafka_listener();
    let lifecycle = Lifecycle::new();
    lifecycle.tracker.spawn(serve_listener(
        Arc::new(frontend),
        listener,
        spec.limits,
        spec.max_connections,
        lifecycle.clone(),
    ));
    Running {
        addr,
        engine,
        broker,
        lifecycle,
        _dir: dir,
    }
}

/// A cloud engine on a fresh database of the PostgreSQL server in `TRIBUTARY_TEST_PG_URL`.
async fn open_cloud(config: &Config) -> Arc<tributary::cloud::CloudEngine> {
    let base = std::env::var("TRIBUTARY_TEST_PG_URL")
        .expect("the cloud bench needs TRIBUTARY_TEST_PG_URL (bash .ci/services start)");
    let bucket = std::env::var("TRIBUTARY_TEST_S3_BUCKET").expect("TRIBUTARY_TEST_S3_BUCKET");
    let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    let name = format!(
        "bench_{}_{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    );
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .await
        .expect("create database");
    let root = base
        .rsplit_once('/')
        .map_or(base.as_str(), |(root, _)| root);
    let mut cloud_config = config.clone();
    cloud_config.cluster.metadata_url = Some(format!("{root}/{name}"));
    cloud_config.cluster.objects_url = Some(format!("s3://{bucket}/{name}"));
    let settings = cloud_config.cloud_settings().expect("cloud settings");
    tributary::cloud::CloudEngine::open(settings)
        .await
        .expect("open the cloud engine")
}

async fn stop(running: Running) {
    running.lifecycle.drain(Duration::from_secs(5)).await;
    if let Some(cloud) = running.broker.cloud() {
        cloud.close().await;
    }
    let broker = running.broker;
    tokio::task::spawn_blocking(move || broker.close())
        .await
        .expect("close task")
        .expect("close broker");
}

fn settle() {
    let _ = std::process::Command::new("sync").status();
}

/// Counts deliveries and their latencies (µs since `started`, carried as the opaque).
struct Deliveries {
    started: Instant,
    acknowledged: AtomicU64,
    failed: AtomicU64,
    latencies_us: Mutex<Vec<u32>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at_us: usize) {
        match result {
            Ok(_) => {
                self.acknowledged.fetch_add(1, Ordering::Relaxed);
                let now_us = self.started.elapsed().as_micros() as usize;
                let latency = u32::try_from(now_us.saturating_sub(sent_at_us)).unwrap_or(u32::MAX);
                self.latencies_us.lock().push(latency);
            }
            Err(_) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One producer run's figures.
#[derive(Debug, Clone, Copy)]
struct Throughput {
    records_per_s: f64,
    mib_per_s: f64,
    /// Delivery latency p99, ms (producer only).
    p99_ms: f64,
    /// Delivery latency median, ms (producer only).
    p50_ms: f64,
}

fn produce_run(addr: SocketAddr, value_len: usize) -> Throughput {
    let value = vec![0x5a_u8; value_len];
    produce_run_with(addr, &[("acks", "1")], std::slice::from_ref(&value))
}

/// A producer run with `settings` on top of `linger.ms=5`, sending `values` in turn.
fn produce_run_with(addr: SocketAddr, settings: &[(&str, &str)], values: &[Vec<u8>]) -> Throughput {
    produce_run_spread(addr, settings, values, None)
}

/// [`produce_run_with`], and with `spread` = Some(n) record i goes to partition i % n instead
/// of where the client's (sticky) partitioner puts it.
fn produce_run_spread(
    addr: SocketAddr,
    settings: &[(&str, &str)],
    values: &[Vec<u8>],
    spread: Option<u32>,
) -> Throughput {
    let value_len = values[0].len();
    let context = Deliveries {
        started: Instant::now(),
        acknowledged: AtomicU64::new(0),
        failed: AtomicU64::new(0),
        latencies_us: Mutex::new(Vec::with_capacity(4 << 20)),
    };
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", addr.to_string())
        .set("linger.ms", "5");
    for (key, value) in settings {
        config.set(*key, *value);
    }
    let producer: ThreadedProducer<Deliveries> =
        config.create_with_context(context).expect("producer");
    let mut next_value = values.iter().cycle();
    let started = producer.context().started;
    let deadline = started + PRODUCE_FOR;
    let mut sent = 0u64;
    while Instant::now() < deadline {
        let sent_at_us = started.elapsed().as_micros() as usize;
        let value = next_value.next().expect("values");
        let mut record =
            BaseRecord::<(), _, usize>::with_opaque_to(TOPIC, sent_at_us).payload(value);
        if let Some(partitions) = spread {
            record = record.partition((sent % u64::from(partitions)) as i32);
        }
        match producer.send(record) {
            Ok(()) => sent += 1,
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                std::thread::sleep(Duration::from_micros(200));
            }
            Err((failure, _)) => panic!("send failed: {failure}"),
        }
    }
    producer.flush(CLIENT_DEADLINE).expect("flush");
    let elapsed = started.elapsed();
    let context = producer.context();
    let acknowledged = context.acknowledged.load(Ordering::Relaxed);
    assert_eq!(
        context.failed.load(Ordering::Relaxed),
        0,
        "failed deliveries"
    );
    assert_eq!(acknowledged, sent, "every sent record acknowledged");
    let records_per_s = acknowledged as f64 / elapsed.as_secs_f64();

    // Saturated, latency is only client queueing (queue depth / throughput); the paced phase
    // measures what one record waits: linger, the request round trip and the durability wait.
    context.latencies_us.lock().clear();
    let paced_from = Instant::now();
    let mut paced = 0u64;
    while paced_from.elapsed() < LATENCY_FOR {
        let due = (paced_from.elapsed().as_secs_f64() * LATENCY_RATE) as u64;
        while paced < due {
            let sent_at_us = started.elapsed().as_micros() as usize;
            let value = next_value.next().expect("values");
            let mut record =
                BaseRecord::<(), _, usize>::with_opaque_to(TOPIC, sent_at_us).payload(value);
            if let Some(partitions) = spread {
                record = record.partition((paced % u64::from(partitions)) as i32);
            }
            producer
                .send(record)
                .map_err(|(failure, _)| failure)
                .expect("paced send");
            paced += 1;
        }
        std::thread::sleep(Duration::from_micros(500));
    }
    producer.flush(CLIENT_DEADLINE).expect("flush");
    assert_eq!(
        context.failed.load(Ordering::Relaxed),
        0,
        "failed deliveries"
    );
    let mut latencies = std::mem::take(&mut *context.latencies_us.lock());
    assert_eq!(
        latencies.len() as u64,
        paced,
        "every paced record acknowledged"
    );
    latencies.sort_unstable();
    let p99_us = latencies[latencies.len() * 99 / 100];
    let p50_us = latencies[latencies.len() / 2];
    Throughput {
        records_per_s,
        mib_per_s: records_per_s * value_len as f64 / MIB,
        p99_ms: f64::from(p99_us) / 1000.0,
        p50_ms: f64::from(p50_us) / 1000.0,
    }
}

/// Appends `total_bytes` of `value_len` records to every partition in turn; returns the count.
async fn fill(engine: &Engine, value_len: usize, total_bytes: usize) -> u64 {
    let per_batch = (FILL_BATCH_BYTES / value_len).max(1);
    let records: Vec<Record> = (0..per_batch)
        .map(|i| Record {
            value: Some(Bytes::from(vec![(i % 251) as u8; value_len])),
            timestamp: 1_700_000_000_000 + i as i64,
            ..Record::default()
        })
        .collect();
    let batch = build_batch(&records);
    let batches = total_bytes / batch.len();
    // Several appends in flight: the cloud engine acknowledges an append only once its flush
    // committed, so one at a time would fill at a few batches per flush interval.
    let mut in_flight = tokio::task::JoinSet::new();
    for index in 0..batches {
        if in_flight.len() >= FILL_IN_FLIGHT {
            in_flight
                .join_next()
                .await
                .expect("a fill append")
                .expect("fill task");
        }
        let partition = TopicPartition::new(TOPIC, index as u32 % PARTITIONS);
        let (log, batch) = (engine.log.clone(), batch.clone());
        in_flight.spawn(async move { log.append(&partition, batch).await.expect("fill append") });
    }
    while let Some(done) = in_flight.join_next().await {
        done.expect("fill task");
    }
    (batches * per_batch) as u64
}

fn consume_run(addr: SocketAddr, value_len: usize, expected: u64) -> Throughput {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr.to_string())
        .set("group.id", "bench-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS as i32 {
        assignment
            .add_partition_offset(TOPIC, partition, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let started = Instant::now();
    let (mut received, mut bytes) = (0u64, 0u64);
    while received < expected && started.elapsed() < CLIENT_DEADLINE {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => {
                received += 1;
                bytes += message.payload_len() as u64;
            }
            Some(Err(failure)) => panic!("consume failed: {failure}"),
            None => {}
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(received, expected, "every record consumed");
    assert_eq!(bytes, expected * value_len as u64);
    Throughput {
        records_per_s: received as f64 / elapsed.as_secs_f64(),
        mib_per_s: bytes as f64 / MIB / elapsed.as_secs_f64(),
        p99_ms: 0.0,
        p50_ms: 0.0,
    }
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn min(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(f64::MAX, f64::min)
}

/// Every run of one backend in one scenario.
#[derive(Debug, Default)]
struct Series {
    label: String,
    runs: Vec<Throughput>,
}

impl Series {
    /// One empty series per labelled backend, in order.
    fn empty(backends: &[(&str, Backend)]) -> Vec<Self> {
        backends
            .iter()
            .map(|(label, _)| Series {
                label: (*label).to_owned(),
                runs: Vec::new(),
            })
            .collect()
    }

    fn records(&self) -> Vec<f64> {
        self.runs.iter().map(|run| run.records_per_s).collect()
    }

    fn row(&self, ceiling: &Series, with_latency: bool) -> String {
        let (records, mib) = (self.records(), self.runs.iter().map(|r| r.mib_per_s));
        let mib: Vec<f64> = mib.collect();
        let latency = if with_latency {
            let p99: Vec<f64> = self.runs.iter().map(|run| run.p99_ms).collect();
            format!(" {:.1} |", median(&p99))
        } else {
            String::new()
        };
        format!(
            "| {} | {:.0} ({:.0}) | {:.1} ({:.1}) |{latency} **{:.2}** |",
            self.label,
            median(&records),
            min(&records),
            median(&mib),
            min(&mib),
            median(&records) / median(&ceiling.records()),
        )
    }
}

fn print_table(title: &str, series: &[Series], with_latency: bool) {
    let latency_head = if with_latency {
        " p99 delivery ms at 5k rec/s (median of runs) |"
    } else {
        ""
    };
    let latency_rule = if with_latency { "---|" } else { "" };
    println!("\n{title}");
    println!(
        "| backend | records/s median (min) | MiB/s median (min) |{latency_head} ratio to ceiling |"
    );
    println!("|---|---|---|{latency_rule}---|");
    let ceiling = series.last().expect("ceiling series");
    for one in series {
        println!("{}", one.row(ceiling, with_latency));
    }
}

fn bench_produce(runtime: &Runtime, repeats: usize) {
    let backends = [
        (
            "tributary, durability always (default)",
            Backend::Tributary(Durability::Always),
        ),
        (
            "tributary, durability interval:100",
            Backend::Tributary(Durability::Interval(Duration::from_millis(100))),
        ),
        (
            "ceiling (discard sink)",
            Backend::Ceiling(MemoryLogMode::Discard),
        ),
    ];
    for value_len in [100, 1024] {
        let mut series = Series::empty(&backends);
        for round in 0..repeats {
            for ((_, backend), series) in backends.iter().zip(&mut series) {
                settle();
                let running = runtime.block_on(start(*backend));
                let run = produce_run(running.addr, value_len);
                runtime.block_on(stop(running));
                eprintln!(
                    "produce {value_len} B round {round} {}: {:.0} rec/s p99 {:.1} ms",
                    series.label, run.records_per_s, run.p99_ms
                );
                series.runs.push(run);
            }
        }
        print_table(
            &format!(
                "produce {value_len} B values, acks=1, linger.ms=5, {repeats} runs of {PRODUCE_FOR:?}"
            ),
            &series,
            true,
        );
    }
}

fn bench_consume(runtime: &Runtime, repeats: usize) {
    let backends = [
        (
            "tributary (page cache warm)",
            Backend::Tributary(Durability::Always),
        ),
        (
            "ceiling (batches in memory)",
            Backend::Ceiling(MemoryLogMode::Retain),
        ),
    ];
    for (value_len, total_bytes) in CONSUME_BYTES {
        let mut series = Series::empty(&backends);
        let mut records = 0;
        for round in 0..repeats {
            for ((_, backend), series) in backends.iter().zip(&mut series) {
                settle();
                let running = runtime.block_on(start(*backend));
                records = runtime.block_on(fill(&running.engine, value_len, total_bytes));
                let run = consume_run(running.addr, value_len, records);
                runtime.block_on(stop(running));
                eprintln!(
                    "consume {value_len} B round {round} {}: {:.0} rec/s",
                    series.label, run.records_per_s
                );
                series.runs.push(run);
            }
        }
        print_table(
            &format!(
                "consume {value_len} B values, {records} records ({} MiB), assigned, fetch defaults, {repeats} runs",
                total_bytes >> 20
            ),
            &series,
            false,
        );
    }
}

/// One engine's runs in the cloud comparison, with PUTs and flush transactions per 1,000
/// batches per run (none for the local engine).
type CloudRow = (&'static str, Vec<Throughput>, Vec<(f64, f64)>);

/// Cloud engine against the local engine, same producer, interleaved runs; see the module docs.
fn bench_cloud(runtime: &Runtime, repeats: usize) {
    let value_len = 1024;
    let mut rows: Vec<CloudRow> = vec![
        ("local engine, durability always", Vec::new(), Vec::new()),
        ("cloud engine, flush 250 ms / 8 MiB", Vec::new(), Vec::new()),
    ];
    for round in 0..repeats {
        for (index, backend) in [Backend::Tributary(Durability::Always), Backend::Cloud]
            .into_iter()
            .enumerate()
        {
            settle();
            let running = runtime.block_on(start(backend));
            let before = running.broker.cloud().map(|cloud| cloud.stats());
            let run = produce_run(running.addr, value_len);
            let after = running.broker.cloud().map(|cloud| cloud.stats());
            runtime.block_on(stop(running));
            if let (Some(before), Some(after)) = (before, after) {
                let batches = (after.batches - before.batches).max(1) as f64;
                let puts = (after.puts - before.puts) as f64 * 1000.0 / batches;
                let transactions = (after.flush_transactions - before.flush_transactions) as f64
                    * 1000.0
                    / batches;
                rows[index].2.push((puts, transactions));
                let flushes = (after.flushes - before.flushes).max(1) as f64;
                eprintln!(
                    "  per flush: {:.1} batches, PUT {:.1} ms, commit {:.1} ms, interval wait {:.1} ms",
                    batches / flushes,
                    (after.put_micros - before.put_micros) as f64 / flushes / 1000.0,
                    (after.commit_micros - before.commit_micros) as f64 / flushes / 1000.0,
                    (after.queued_micros - before.queued_micros) as f64 / flushes / 1000.0,
                );
            }
            eprintln!(
                "cloud bench round {round} {}: {:.0} rec/s p50 {:.1} ms p99 {:.1} ms",
                rows[index].0, run.records_per_s, run.p50_ms, run.p99_ms
            );
            rows[index].1.push(run);
        }
    }
    println!(
        "\nproduce {value_len} B values, acks=1, linger.ms=5, {repeats} runs of {PRODUCE_FOR:?} (latency: paced {LATENCY_RATE} rec/s)"
    );
    println!(
        "| engine | records/s median (min) | p50 / p99 delivery ms (median of runs) | PUTs / transactions per 1,000 batches | ratio |"
    );
    println!("|---|---|---|---|---|");
    let local_median = median(
        &rows[0]
            .1
            .iter()
            .map(|r| r.records_per_s)
            .collect::<Vec<_>>(),
    );
    for (label, runs, counts) in &rows {
        let records: Vec<f64> = runs.iter().map(|r| r.records_per_s).collect();
        let p50: Vec<f64> = runs.iter().map(|r| r.p50_ms).collect();
        let p99: Vec<f64> = runs.iter().map(|r| r.p99_ms).collect();
        let per_thousand = if counts.is_empty() {
            "n/a".to_owned()
        } else {
            let puts: Vec<f64> = counts.iter().map(|c| c.0).collect();
            let transactions: Vec<f64> = counts.iter().map(|c| c.1).collect();
            format!("{:.1} / {:.1}", median(&puts), median(&transactions))
        };
        println!(
            "| {label} | {:.0} ({:.0}) | {:.1} / {:.1} | {per_thousand} | **{:.2}** |",
            median(&records),
            min(&records),
            median(&p50),
            median(&p99),
            median(&records) / local_median
        );
    }
}

/// Cloud engine against the local engine reading the same pre-filled topic from the start with
/// the same consumer, interleaved runs; object GETs and read-cache hits per run counted.
fn bench_cloud_consume(runtime: &Runtime, repeats: usize) {
    let value_len = 1024;
    let backends = [
        (
            "local engine (page cache warm)",
            Backend::Tributary(Durability::Always),
        ),
        ("cloud engine (read cache 64 MiB)", Backend::Cloud),
    ];
    let mut series = Series::empty(&backends);
    let mut reads: Vec<(f64, f64)> = Vec::new();
    for round in 0..repeats {
        for ((_, backend), series) in backends.iter().zip(&mut series) {
            settle();
            let running = runtime.block_on(start(*backend));
            let records = runtime.block_on(fill(&running.engine, value_len, CLOUD_CONSUME_BYTES));
            let before = running.broker.cloud().map(|cloud| cloud.stats());
            let run = consume_run(running.addr, value_len, records);
            let after = running.broker.cloud().map(|cloud| cloud.stats());
            runtime.block_on(stop(running));
            if let (Some(before), Some(after)) = (before, after) {
                let gets = (after.gets - before.gets) as f64;
                let hits = (after.cache_hits - before.cache_hits) as f64;
                reads.push((gets, hits / (hits + gets).max(1.0)));
            }
            eprintln!(
                "cloud consume round {round} {}: {:.0} rec/s",
                series.label, run.records_per_s
            );
            series.runs.push(run);
        }
    }
    let gets: Vec<f64> = reads.iter().map(|r| r.0).collect();
    let hit_rates: Vec<f64> = reads.iter().map(|r| r.1).collect();
    println!(
        "\nconsume {value_len} B values, {} MiB from offset 0, assigned, fetch defaults, {repeats} runs; cloud: {:.0} GETs and {:.0} % read-cache hits per run (medians); ratio to the local engine",
        CLOUD_CONSUME_BYTES >> 20,
        median(&gets),
        median(&hit_rates) * 100.0
    );
    println!("| engine | records/s median (min) | MiB/s median (min) | ratio to local |");
    println!("|---|---|---|---|");
    for one in &series {
        println!("{}", one.row(&series[0], false));
    }
}

fn main() {
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let repeats = std::env::var("TRIBUTARY_BENCH_REPEATS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(7);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    println!(
        "kafka benchmarks in {} ({} cores)",
        bench_dir(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let started = Instant::now();
    if only.as_deref().is_none_or(|part| part == "produce") {
        bench_produce(&runtime, repeats);
    }
    if only.as_deref().is_none_or(|part| part == "consume") {
        bench_consume(&runtime, repeats);
    }
    if only.as_deref() == Some("cloud") {
        bench_cloud(&runtime, repeats);
        bench_cloud_consume(&runtime, repeats);
    }
    if only.as_deref() == Some("variants") {
        variants::bench_variants(&runtime, repeats);
    }
    if only.as_deref() == Some("partitions") {
        partitions::bench_partitions(&runtime, repeats);
    }
    if only.as_deref() == Some("transactions") {
        transactions::bench_transactions(&runtime, repeats);
    }
    println!("\ntotal {:?}", started.elapsed());
}
