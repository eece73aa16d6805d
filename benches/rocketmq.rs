//! RocketMQ benchmark (`cargo bench --bench rocketmq`): the same `rocketmq-client-rust` 1.0.0
//! code against the real `tributary` binary and against the RocketMQ name server + broker 1.0.0
//! from the crate registry (`rocketmq-namesrv-rust`, `rocketmq-broker-rust`), interleaved in one
//! run, each broker fresh (new temp data dir, free loopback ports) for every repeat:
//!
//! (1) sync send of 1 KiB messages for `SEND_RUN`, from one sender and from `SENDERS` concurrent
//!     senders sharing one producer: messages/s and p50/p99 send latency;
//! (2) consume: a topic of `CONSUME_QUEUES` queues pre-filled (batch sends) with
//!     `CONSUME_MESSAGES` 1 KiB messages, read end to end from the first offset by one push
//!     consumer, then by a new group of `CONSUMERS` push consumers (each its own client
//!     instance): messages/s from the first delivery to the last, the CPU time the broker's
//!     processes and this (client) process spent per consumed message (`/proc/<pid>/stat`), and
//!     the longest pause between two deliveries.
//!
//! Targets: Tributary with the default `storage.durability=always` (fsync before the ack), with
//! `interval:100`, and the peer (its default ASYNC_FLUSH). Medians and worst runs are printed;
//! ratios are of medians. The peer binaries are looked up in `$ROCKETMQ_PEER_BIN` (a
//! directory), else `~/.cargo/bin`; the bench fails if they are missing. Pass `tributary-only`
//! to measure Tributary alone, `consume-only` to skip the send phases. Every wait is bounded.
//! Tributary runs with `rocketmq.default_queues = CONSUME_QUEUES` (the peer's default count), so
//! the consume topic has the same queues on every target.

#[path = "../tests/support/broker.rs"]
mod broker;

#[path = "../tests/support/rocketmq.rs"]
mod rocketmq;

#[path = "rocketmq/peer.rs"]
mod peer;
// `listener_pid` is the AMQP bench's: this one starts its peer and knows its pids.
#[allow(dead_code)]
#[path = "support/proc_cpu.rs"]
mod proc_cpu;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use broker::TestBroker;
use parking_lot::Mutex;
use peer::PeerBroker;
use rocketmq::{Client, runtime};
use rocketmq_client_rust::{
    ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQProducer,
    DefaultMQPushConsumer, MQPushConsumer, MessageListenerConcurrently,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;

const DEFAULT_REPEATS: usize = 5;
const BODY_BYTES: usize = 1024;
const SEND_RUN: Duration = Duration::from_secs(3);
const SENDERS: usize = 16;
const WARMUP_MESSAGES: usize = 100;
/// Enough for over a second of consuming at 150k msg/s (20,000 lasted ~0.1 s).
const CONSUME_MESSAGES: usize = 200_000;
/// Messages per pre-fill send: the peer refuses single sends from 16 senders within seconds.
const PREFILL_BATCH: usize = 32;
const CONSUME_TOPIC: &str = "BenchConsume";
/// Queues of the consume topic (the producer's `defaultTopicQueueNums` when it creates it).
const CONSUME_QUEUES: u32 = 8;
/// Push consumers of the second consume scenario, each its own client instance.
const CONSUMERS: usize = 4;
/// Messages per listener call. With the client's default of 1 its dispatch, not the broker,
/// caps delivery near 1,850 msg/s against either broker.
const CONSUME_BATCH: u32 = 32;
/// A pause between deliveries past this is described queue by queue.
const STALL_REPORTED: Duration = Duration::from_secs(1);
const CONSUME_TIMEOUT: Duration = Duration::from_secs(60);
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    TributaryAlways,
    TributaryInterval,
    Peer,
}

impl Target {
    fn label(self) -> &'static str {
        match self {
            Target::TributaryAlways => "Tributary (always)",
            Target::TributaryInterval => "Tributary (interval:100)",
            Target::Peer => "RocketMQ-rust 1.0.0 (ASYNC_FLUSH)",
        }
    }
}

/// A running broker of either kind; stopped (its own child processes only) on drop.
enum Running {
    Tributary(TestBroker),
    Peer(PeerBroker),
}

impl Running {
    fn start(target: Target) -> (Self, String) {
        match target {
            Target::TributaryAlways | Target::TributaryInterval => {
                let mut args = vec!["--config", "bench.toml"];
                if target == Target::TributaryInterval {
                    args.extend(["--durability", "interval:100"]);
                }
                // Auto-created topics get as many queues as the peer's (its default 8), so the
                // producer's `defaultTopicQueueNums` of `CONSUME_QUEUES` is granted on both.
                let mut broker = TestBroker::start_prepared(&args, |dir| {
                    let config = format!("[rocketmq]\ndefault_queues = {CONSUME_QUEUES}\n");
                    std::fs::write(dir.join("bench.toml"), config).expect("write bench.toml");
                });
                let namesrv = broker.addr("rocketmq-namesrv").to_string();
                (Running::Tributary(broker), namesrv)
            }
            Target::Peer => {
                let peer = PeerBroker::start();
                let namesrv = peer.namesrv.to_string();
                (Running::Peer(peer), namesrv)
            }
        }
    }

    /// The broker's processes (the peer's name server and broker; Tributary's one).
    fn pids(&self) -> Vec<u32> {
        match self {
            Running::Tributary(broker) => vec![broker.pid()],
            Running::Peer(peer) => vec![peer.namesrv_process.id(), peer.broker_process.id()],
        }
    }

    fn stop(self) {
        match self {
            Running::Tributary(mut broker) => {
                broker.terminate();
            }
            Running::Peer(peer) => drop(peer),
        }
    }
}

fn message(topic: &str, body: &[u8]) -> Message {
    Message::builder()
        .topic(topic)
        .tags("bench")
        .body(body.to_vec())
        .build()
        .expect("message")
}

/// The first send also creates the topic and its route; it is retried until the broker has
/// registered with its name server (bounded by `STARTUP_TIMEOUT`).
async fn warm_up(producer: &DefaultMQProducer, topic: &str, body: &[u8]) {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    loop {
        match producer.send(message(topic, body)).await {
            Ok(Some(_)) => break,
            result => {
                assert!(
                    Instant::now() < deadline,
                    "first send to {topic} never succeeded: {result:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    for _ in 0..WARMUP_MESSAGES {
        producer
            .send(message(topic, body))
            .await
            .expect("warm-up send")
            .expect("warm-up send result");
    }
}

struct SendFigures {
    per_second: f64,
    p50_ms: f64,
    p99_ms: f64,
    failed: usize,
}

/// `senders` tasks sending synchronously to `topic` until `SEND_RUN` has passed, or, with a
/// `count`, until `count` messages were acknowledged in total.
async fn send_load(
    producer: &Arc<DefaultMQProducer>,
    topic: &str,
    senders: usize,
    count: Option<usize>,
) -> SendFigures {
    let body: Arc<[u8]> = (0..BODY_BYTES).map(|i| (i % 251) as u8).collect();
    let remaining = Arc::new(AtomicUsize::new(count.unwrap_or(usize::MAX)));
    let failed = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let deadline = started
        + if count.is_some() {
            CONSUME_TIMEOUT
        } else {
            SEND_RUN
        };
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..senders {
        let (producer, topic, body, remaining, failed) = (
            Arc::clone(producer),
            topic.to_owned(),
            Arc::clone(&body),
            Arc::clone(&remaining),
            Arc::clone(&failed),
        );
        tasks.spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline
                && remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
            {
                let sent = Instant::now();
                match producer.send(message(&topic, &body)).await {
                    Ok(Some(_)) => latencies.push(sent.elapsed()),
                    // A refused send (the peer answers busy under load) is counted, not timed,
                    // and a pre-fill sends a replacement.
                    _ => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        if count.is_some() {
                            remaining.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
            latencies
        });
    }
    let mut latencies = Vec::new();
    while let Some(joined) = tasks.join_next().await {
        latencies.extend(joined.expect("sender task"));
    }
    let elapsed = started.elapsed();
    assert!(!latencies.is_empty(), "no send to {topic} succeeded");
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() - 1) as f64 * q) as usize].as_secs_f64() * 1e3;
    SendFigures {
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: at(0.50),
        p99_ms: at(0.99),
        failed: failed.load(Ordering::Relaxed),
    }
}

/// What a consume scenario's listeners saw: deliveries, first and latest delivery time, the
/// longest pause between two deliveries (a stalled queue shows here) and the queues served.
#[derive(Default)]
struct Deliveries {
    first: Option<Instant>,
    last: Option<Instant>,
    longest_gap: Duration,
    /// When the longest pause began.
    gap_start: Option<Instant>,
    /// Per queue: messages, first and last delivery (which queue a pause held back).
    queues: BTreeMap<i32, (usize, Instant, Instant)>,
}

/// Counts deliveries for every consumer of one scenario.
struct Counter {
    delivered: Arc<AtomicUsize>,
    seen: Arc<Mutex<Deliveries>>,
}

impl MessageListenerConcurrently for Counter {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let now = Instant::now();
        assert!(
            msgs.iter()
                .all(|m| m.body().is_some_and(|b| b.len() == BODY_BYTES)),
            "a delivered body is not {BODY_BYTES} bytes"
        );
        self.delivered.fetch_add(msgs.len(), Ordering::Relaxed);
        let mut seen = self.seen.lock();
        seen.first.get_or_insert(now);
        if let Some(last) = seen.last {
            let gap = now.saturating_duration_since(last);
            if gap > seen.longest_gap {
                seen.longest_gap = gap;
                seen.gap_start = Some(last);
            }
        }
        seen.last = Some(seen.last.map_or(now, |last| last.max(now)));
        for m in msgs {
            let queue = seen.queues.entry(m.queue_id()).or_insert((0, now, now));
            queue.0 += 1;
            queue.2 = now;
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

/// A consume scenario: `consumers` push consumers (each its own client instance, so its own
/// client id and dispatch) of one new group, reading the pre-filled topic from the first offset.
#[derive(Clone, Copy)]
struct Scenario {
    consumers: usize,
    group: &'static str,
}

const SCENARIOS: [Scenario; 2] = [
    Scenario {
        consumers: 1,
        group: "CID-bench-one",
    },
    Scenario {
        consumers: CONSUMERS,
        group: "CID-bench-many",
    },
];

struct ConsumeFigures {
    per_second: f64,
    first_delivery_s: f64,
    consumed: usize,
    expected: usize,
    broker_cpu_us_per_message: f64,
    client_cpu_us_per_message: f64,
    broker_cores: f64,
    client_cores: f64,
    longest_gap_ms: f64,
    queues: usize,
}

/// Pre-fills `CONSUME_TOPIC` (`CONSUME_QUEUES` queues) with `CONSUME_MESSAGES` messages in
/// batches of `PREFILL_BATCH`; returns how many were acknowledged (warm-up included) and how
/// many batch sends were refused.
async fn prefill(producer: &Arc<DefaultMQProducer>) -> (usize, usize) {
    let body: Arc<[u8]> = (0..BODY_BYTES).map(|i| (i % 251) as u8).collect();
    warm_up(producer, CONSUME_TOPIC, &body).await;
    let remaining = Arc::new(AtomicUsize::new(CONSUME_MESSAGES / PREFILL_BATCH));
    let deadline = Instant::now() + CONSUME_TIMEOUT;
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..SENDERS {
        let (producer, body, remaining) = (
            Arc::clone(producer),
            Arc::clone(&body),
            Arc::clone(&remaining),
        );
        tasks.spawn(async move {
            let (mut acked, mut refused) = (0, 0);
            while Instant::now() < deadline
                && remaining
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
            {
                let batch: Vec<Message> = (0..PREFILL_BATCH)
                    .map(|_| message(CONSUME_TOPIC, &body))
                    .collect();
                match producer.send_batch(batch).await {
                    Ok(_) => acked += PREFILL_BATCH,
                    Err(_) => {
                        // A refused batch (the peer answers busy under load) is sent again.
                        refused += 1;
                        remaining.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            (acked, refused)
        });
    }
    let (mut acked, mut refused) = (WARMUP_MESSAGES + 1, 0);
    while let Some(joined) = tasks.join_next().await {
        let (a, r) = joined.expect("pre-fill task");
        acked += a;
        refused += r;
    }
    (acked, refused)
}

/// Reads all `expected` pre-filled messages with a new group of `scenario.consumers` push
/// consumers, measuring throughput and the CPU time of the broker and of this (client) process.
async fn consume_run(
    namesrv: &str,
    broker_pids: &[u32],
    expected: usize,
    scenario: Scenario,
) -> ConsumeFigures {
    let delivered = Arc::new(AtomicUsize::new(0));
    let seen = Arc::new(Mutex::new(Deliveries::default()));
    let mut members = Vec::new();
    for index in 0..scenario.consumers {
        let client = Client::new(&format!("{}-{index}", scenario.group)).expect("client");
        let mut consumer = DefaultMQPushConsumer::builder(client.runtime.clone())
            .consumer_group(scenario.group.to_string())
            .name_server_addr(namesrv.to_string())
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .consume_message_batch_max_size(CONSUME_BATCH)
            .build();
        consumer
            .subscribe(CONSUME_TOPIC, "*")
            .await
            .expect("subscribe");
        consumer.register_message_listener_concurrently(Counter {
            delivered: Arc::clone(&delivered),
            seen: Arc::clone(&seen),
        });
        members.push((client, consumer));
    }
    let broker_cpu = || {
        broker_pids
            .iter()
            .map(|pid| proc_cpu::cpu_time(*pid))
            .sum::<Duration>()
    };
    let (broker_before, client_before) = (broker_cpu(), proc_cpu::cpu_time(std::process::id()));
    let started = Instant::now();
    for (_, consumer) in &mut members {
        consumer.start().await.expect("consumer start");
    }
    let deadline = started + CONSUME_TIMEOUT;
    while delivered.load(Ordering::Relaxed) < expected {
        if Instant::now() >= deadline {
            // Seen once with the peer (2 of 5,334 acknowledged messages never came): report
            // it and rate what did arrive rather than lose the whole run.
            println!(
                "  MISSING: consumed {} of {expected} within {CONSUME_TIMEOUT:?}",
                delivered.load(Ordering::Relaxed)
            );
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let (broker_used, client_used) = (
        broker_cpu() - broker_before,
        proc_cpu::cpu_time(std::process::id()) - client_before,
    );
    let consumed = delivered.load(Ordering::Relaxed);
    assert!(consumed > 1, "nothing consumed within {CONSUME_TIMEOUT:?}");
    let seen = std::mem::take(&mut *seen.lock());
    let (first, last) = (
        seen.first.expect("first delivery"),
        seen.last.expect("last delivery"),
    );
    for (client, mut consumer) in members {
        consumer.shutdown().await;
        client.shutdown().await;
    }
    if seen.longest_gap > STALL_REPORTED {
        // Where the pause fell and which queues delivered around it, relative to the first
        // delivery: the facts behind the single-consumer stall (BENCHMARKS.md).
        let at = |t: Instant| (t - first).as_secs_f64();
        let gap_start = seen.gap_start.map_or(0.0, at);
        let queues: Vec<String> = seen
            .queues
            .iter()
            .map(|(id, (n, from, to))| format!("q{id}: {n} in {:.2}-{:.2} s", at(*from), at(*to)))
            .collect();
        println!(
            "  pause of {:.2} s from {gap_start:.2} s; {}",
            seen.longest_gap.as_secs_f64(),
            queues.join(", ")
        );
    }
    let window = (last - first).as_secs_f64();
    let per_message = |used: Duration| used.as_secs_f64() * 1e6 / consumed as f64;
    ConsumeFigures {
        per_second: (consumed - 1) as f64 / window,
        first_delivery_s: (first - started).as_secs_f64(),
        consumed,
        expected,
        broker_cpu_us_per_message: per_message(broker_used),
        client_cpu_us_per_message: per_message(client_used),
        // CPU over the delivery window (the rebalance before it is nearly idle).
        broker_cores: broker_used.as_secs_f64() / window,
        client_cores: client_used.as_secs_f64() / window,
        longest_gap_ms: seen.longest_gap.as_secs_f64() * 1e3,
        queues: seen.queues.len(),
    }
}

#[derive(Default)]
struct ConsumeSamples {
    rate: Vec<f64>,
    first_delivery: Vec<f64>,
    broker_us: Vec<f64>,
    client_us: Vec<f64>,
    broker_cores: Vec<f64>,
    client_cores: Vec<f64>,
    longest_gap_ms: Vec<f64>,
}

#[derive(Default)]
struct Samples {
    single_rate: Vec<f64>,
    single_p50: Vec<f64>,
    single_p99: Vec<f64>,
    multi_rate: Vec<f64>,
    multi_p50: Vec<f64>,
    multi_p99: Vec<f64>,
    consume: [ConsumeSamples; SCENARIOS.len()],
}

fn run_once(target: Target, samples: &mut Samples, consume_only: bool) {
    let (running, namesrv) = Running::start(target);
    let broker_pids = running.pids();
    runtime().block_on(async {
        let client = Client::new("bench").expect("client");
        let mut producer = DefaultMQProducer::builder(client.runtime.clone())
            .producer_group("PID-bench".to_string())
            .name_server_addr(namesrv.clone())
            .default_topic_queue_nums(CONSUME_QUEUES)
            .build();
        producer.start().await.expect("producer start");
        let producer = Arc::new(producer);
        let body: Vec<u8> = (0..BODY_BYTES).map(|i| (i % 251) as u8).collect();

        if !consume_only {
            warm_up(&producer, "BenchSendOne", &body).await;
            let one = send_load(&producer, "BenchSendOne", 1, None).await;
            samples.single_rate.push(one.per_second);
            samples.single_p50.push(one.p50_ms);
            samples.single_p99.push(one.p99_ms);

            warm_up(&producer, "BenchSendMany", &body).await;
            let many = send_load(&producer, "BenchSendMany", SENDERS, None).await;
            samples.multi_rate.push(many.per_second);
            samples.multi_p50.push(many.p50_ms);
            samples.multi_p99.push(many.p99_ms);
            println!(
                "  {:<34} send 1: {:>7.0}/s p50 {:.2} ms p99 {:.2} ms | send {SENDERS}: {:>7.0}/s \
                 p50 {:.2} ms p99 {:.2} ms | refused sends {}",
                target.label(),
                one.per_second,
                one.p50_ms,
                one.p99_ms,
                many.per_second,
                many.p50_ms,
                many.p99_ms,
                one.failed + many.failed,
            );
        }

        let prefill_started = Instant::now();
        let (stored, refused) = prefill(&producer).await;
        println!(
            "  {:<34} pre-filled {stored} messages in {:.1} s ({refused} batches refused), load {}",
            target.label(),
            prefill_started.elapsed().as_secs_f64(),
            load_average()
        );
        for (scenario, figures) in SCENARIOS.iter().zip(samples.consume.iter_mut()) {
            let consume = consume_run(&namesrv, &broker_pids, stored, *scenario).await;
            figures.rate.push(consume.per_second);
            figures.first_delivery.push(consume.first_delivery_s);
            figures.broker_us.push(consume.broker_cpu_us_per_message);
            figures.client_us.push(consume.client_cpu_us_per_message);
            figures.broker_cores.push(consume.broker_cores);
            figures.client_cores.push(consume.client_cores);
            figures.longest_gap_ms.push(consume.longest_gap_ms);
            println!(
                "  {:<34} consume x{}: {:>7.0}/s ({} of {}, {} queues, first after {:.1} s, \
                 longest gap {:.0} ms) | CPU/msg broker {:.2} us, client {:.2} us | cores \
                 broker {:.2}, client {:.2}",
                target.label(),
                scenario.consumers,
                consume.per_second,
                consume.consumed,
                consume.expected,
                consume.queues,
                consume.first_delivery_s,
                consume.longest_gap_ms,
                consume.broker_cpu_us_per_message,
                consume.client_cpu_us_per_message,
                consume.broker_cores,
                consume.client_cores,
            );
        }
        match Arc::try_unwrap(producer) {
            Ok(mut producer) => producer.shutdown().await,
            Err(_) => panic!("producer still shared"),
        }
        client.shutdown().await;
    });
    running.stop();
}

fn median(samples: &[f64]) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn min(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(f64::MAX, f64::min)
}

fn max(samples: &[f64]) -> f64 {
    samples.iter().copied().fold(f64::MIN, f64::max)
}

fn main() {
    // `BENCH_CLIENT_LOG=warn` (an env-filter) shows the client's own log on stderr, such as its
    // pull exceptions and flow-control notices.
    if let Ok(filter) = std::env::var("BENCH_CLIENT_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .init();
    }
    let tributary_only = std::env::args().any(|arg| arg == "tributary-only");
    let consume_only = std::env::args().any(|arg| arg == "consume-only");
    // `TRIBUTARY_BENCH_REPEATS` shortens a trial run; the documented figures use the default.
    let repeats = std::env::var("TRIBUTARY_BENCH_REPEATS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_REPEATS);
    let mut targets = vec![Target::TributaryAlways, Target::TributaryInterval];
    if !tributary_only {
        targets.push(Target::Peer);
    }
    println!(
        "RocketMQ bench: {BODY_BYTES}-byte bodies, sync sends for {SEND_RUN:?} (1 and {SENDERS} \
         senders), consume of {CONSUME_MESSAGES} pre-filled messages ({CONSUME_QUEUES} queues) \
         by 1 and by {CONSUMERS} consumers; {repeats} interleaved runs; load {}",
        load_average()
    );
    let mut results: Vec<Samples> = targets.iter().map(|_| Samples::default()).collect();
    for repeat in 0..repeats {
        println!("run {}:", repeat + 1);
        for (target, samples) in targets.iter().zip(results.iter_mut()) {
            run_once(*target, samples, consume_only);
        }
    }
    println!("load average at the end: {}", load_average());

    if !consume_only {
        println!(
            "\n| target | send 1: msg/s median (min) | p50 / p99 ms | send {SENDERS}: msg/s median (min) | p50 / p99 ms |"
        );
        println!("|---|---|---|---|---|");
        for (target, s) in targets.iter().zip(&results) {
            println!(
                "| {} | {:.0} ({:.0}) | {:.2} / {:.2} (worst p99 {:.2}) | {:.0} ({:.0}) | {:.2} / {:.2} (worst p99 {:.2}) |",
                target.label(),
                median(&s.single_rate),
                min(&s.single_rate),
                median(&s.single_p50),
                median(&s.single_p99),
                max(&s.single_p99),
                median(&s.multi_rate),
                min(&s.multi_rate),
                median(&s.multi_p50),
                median(&s.multi_p99),
                max(&s.multi_p99),
            );
        }
    }
    println!(
        "\n| target | consumers | consume msg/s median (min) | broker CPU us/msg median | client CPU us/msg median | cores broker / client | longest gap ms (max) | first delivery s |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    for (target, s) in targets.iter().zip(&results) {
        for (scenario, c) in SCENARIOS.iter().zip(&s.consume) {
            println!(
                "| {} | {} | {:.0} ({:.0}) | {:.2} | {:.2} | {:.2} / {:.2} | {:.0} ({:.0}) | {:.1} |",
                target.label(),
                scenario.consumers,
                median(&c.rate),
                min(&c.rate),
                median(&c.broker_us),
                median(&c.client_us),
                median(&c.broker_cores),
                median(&c.client_cores),
                median(&c.longest_gap_ms),
                max(&c.longest_gap_ms),
                median(&c.first_delivery),
            );
        }
    }
    if let Some(peer) = targets.iter().position(|t| *t == Target::Peer) {
        println!("\nRatios of medians, Tributary / peer (broker CPU: peer / Tributary):");
        println!(
            "| target | send 1 | send {SENDERS} | consume x1 | consume x{CONSUMERS} | broker CPU/msg x1 | broker CPU/msg x{CONSUMERS} |"
        );
        println!("|---|---|---|---|---|---|---|");
        let p = &results[peer];
        let ratio = |a: &[f64], b: &[f64]| {
            if a.is_empty() || b.is_empty() {
                f64::NAN
            } else {
                median(a) / median(b)
            }
        };
        for (target, s) in targets.iter().zip(&results).take(peer) {
            println!(
                "| {} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} | {:.2} |",
                target.label(),
                ratio(&s.single_rate, &p.single_rate),
                ratio(&s.multi_rate, &p.multi_rate),
                ratio(&s.consume[0].rate, &p.consume[0].rate),
                ratio(&s.consume[1].rate, &p.consume[1].rate),
                ratio(&p.consume[0].broker_us, &s.consume[0].broker_us),
                ratio(&p.consume[1].broker_us, &s.consume[1].broker_us),
            );
        }
    }
}
