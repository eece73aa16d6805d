//! AMQP benchmark (`cargo bench --bench amqp`): the same lapin code drives the release
//! `tributary` binary and a RabbitMQ node given by `RABBITMQ_URL`, runs interleaved, one
//! queue (or one fanout exchange), one publisher connection and one consumer connection:
//!
//! (a) transient messages, no confirms, non-durable queue;
//! (b) persistent messages (delivery mode 2) into a durable queue with publisher confirms,
//!     at most `CONFIRM_WINDOW` unconfirmed;
//! (c) transient messages into a fanout exchange bound to `FANOUT_QUEUES` queues, all
//!     consumed by the one consumer connection.
//!
//! Each with 16 B and 1 KiB bodies. Throughput is published messages over the time from the
//! first publish to the last delivery (every copy consumed and acked); latency is publish to
//! delivery, from a timestamp in the first 8 body bytes. Every figure is measured `REPEATS`
//! times; medians and the worst run are printed, and the ratio is of medians.
//!
//! Invariant: both brokers see byte-identical traffic; only the URL differs.

#[path = "support/amqp_raw.rs"]
mod amqp_raw;
#[path = "../tests/support/broker.rs"]
mod broker;
#[path = "support/proc_cpu.rs"]
mod proc_cpu;

use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{
    BasicProperties, Confirmation, Connection, ConnectionProperties, ExchangeKind, PublisherConfirm,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Runs per scenario and broker (`AMQP_BENCH_REPEATS` overrides it for quick looks).
const REPEATS: usize = 5;

fn repeats() -> usize {
    std::env::var("AMQP_BENCH_REPEATS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(REPEATS)
        .max(1)
}
const CONFIRM_WINDOW: usize = 256;
/// Publishes handed to lapin before the oldest one's write is awaited (`AMQP_BENCH_PIPELINE`
/// overrides it; 1 is one awaited publish at a time). Kept below `CONFIRM_WINDOW`, so confirm
/// permits are never all held by unwritten publishes.
const PUBLISH_PIPELINE: usize = 64;

fn publish_pipeline() -> usize {
    std::env::var("AMQP_BENCH_PIPELINE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(PUBLISH_PIPELINE)
        .clamp(1, CONFIRM_WINDOW - 1)
}
const FANOUT_QUEUES: usize = 10;
const PREFETCH: u16 = 1000;
/// The consumer acks with `multiple` once per this many deliveries (and at the end).
const ACK_EVERY: u64 = 100;
/// Upper bound for one run (publish and drain); a run that exceeds it fails the bench.
const RUN_DEADLINE: Duration = Duration::from_secs(180);

/// Which client drives a run: lapin (a real application client, whose own CPU cost bounds the
/// rate on two cores) or the raw load generator (`support/amqp_raw.rs`, broker-bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Client {
    Lapin,
    Raw,
}

impl Client {
    fn name(self) -> &'static str {
        match self {
            Client::Lapin => "lapin",
            Client::Raw => "raw",
        }
    }
}

/// How many more messages a raw run sends than a lapin run, so that it lasts long enough to
/// time (it is several times faster).
const RAW_MESSAGES_FACTOR: usize = 5;

#[derive(Clone, Copy, Debug)]
enum Kind {
    Transient,
    PersistentConfirms,
    Fanout,
}

#[derive(Clone, Copy, Debug)]
struct Scenario {
    label: &'static str,
    kind: Kind,
    body_len: usize,
    messages: usize,
}

const SCENARIOS: [Scenario; 6] = [
    Scenario {
        label: "a-16B",
        kind: Kind::Transient,
        body_len: 16,
        messages: 100_000,
    },
    Scenario {
        label: "a-1KiB",
        kind: Kind::Transient,
        body_len: 1024,
        messages: 50_000,
    },
    Scenario {
        label: "b-16B",
        kind: Kind::PersistentConfirms,
        body_len: 16,
        messages: 20_000,
    },
    Scenario {
        label: "b-1KiB",
        kind: Kind::PersistentConfirms,
        body_len: 1024,
        messages: 20_000,
    },
    Scenario {
        label: "c-16B",
        kind: Kind::Fanout,
        body_len: 16,
        messages: 10_000,
    },
    Scenario {
        label: "c-1KiB",
        kind: Kind::Fanout,
        body_len: 1024,
        messages: 10_000,
    },
];

type PublishFuture = Pin<Box<dyn Future<Output = PublisherConfirm> + Send>>;

/// A publish whose frames are queued in lapin, with its send time and confirm-window permit.
struct InFlight {
    publish: PublishFuture,
    sent: u64,
    permit: Option<OwnedSemaphorePermit>,
}

/// One run's figures.
#[derive(Clone, Copy, Debug)]
struct Sample {
    msgs_per_s: f64,
    p99_delivery_ms: f64,
    /// Publish to confirm, (b) only.
    p99_confirm_ms: Option<f64>,
    /// CPU time per published message of the broker's process and of this (client) one.
    broker_us: f64,
    client_us: f64,
}

fn percentile(samples: &mut [u64], fraction: f64) -> f64 {
    samples.sort_unstable();
    let index = ((samples.len() as f64 * fraction).ceil() as usize).clamp(1, samples.len()) - 1;
    samples[index] as f64 / 1e6
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn nanos_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

async fn connect(url: &str) -> Connection {
    Connection::connect(url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|err| panic!("connect to {url}: {err}"))
}

/// Consumes `expected` deliveries from `queue`, acking in steps, and returns the
/// publish-to-delivery latencies in nanoseconds.
async fn drain(
    channel: lapin::Channel,
    queue: String,
    expected: usize,
    epoch: Instant,
) -> Vec<u64> {
    let mut consumer = channel
        .basic_consume(
            queue.as_str().into(),
            format!("bench-{queue}").as_str().into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("basic.consume");
    let mut latencies = Vec::with_capacity(expected);
    let mut last = None;
    while latencies.len() < expected {
        let delivery = consumer
            .next()
            .await
            .expect("consumer stream open")
            .expect("delivery");
        let sent = u64::from_le_bytes(delivery.data[..8].try_into().expect("8 bytes"));
        latencies.push(nanos_since(epoch).saturating_sub(sent));
        if delivery.delivery_tag % ACK_EVERY == 0 {
            delivery
                .ack(BasicAckOptions { multiple: true })
                .await
                .expect("ack");
            last = None;
        } else {
            last = Some(delivery);
        }
    }
    if let Some(delivery) = last {
        delivery
            .ack(BasicAckOptions { multiple: true })
            .await
            .expect("final ack");
    }
    latencies
}

async fn run(url: &str, broker_pid: u32, scenario: Scenario, run_id: &str) -> Sample {
    let queues: Vec<String> = match scenario.kind {
        Kind::Fanout => (0..FANOUT_QUEUES)
            .map(|i| format!("bench-{run_id}-{i}"))
            .collect(),
        _ => vec![format!("bench-{run_id}")],
    };
    let exchange = match scenario.kind {
        Kind::Fanout => format!("bench-fan-{run_id}"),
        _ => String::new(),
    };
    let persistent = matches!(scenario.kind, Kind::PersistentConfirms);

    let publisher = connect(url).await;
    let consumer = connect(url).await;
    let setup = publisher.create_channel().await.expect("channel");
    if !exchange.is_empty() {
        setup
            .exchange_declare(
                exchange.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await
            .expect("exchange.declare");
    }
    for queue in &queues {
        let options = QueueDeclareOptions {
            durable: persistent,
            ..Default::default()
        };
        setup
            .queue_declare(queue.as_str().into(), options, FieldTable::default())
            .await
            .expect("queue.declare");
        if !exchange.is_empty() {
            setup
                .queue_bind(
                    queue.as_str().into(),
                    exchange.as_str().into(),
                    "".into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("queue.bind");
        }
    }

    let epoch = Instant::now();
    // One channel per queue: delivery tags (and so `multiple` acks) are per channel.
    let mut drains = Vec::with_capacity(queues.len());
    for queue in &queues {
        let consume_channel = consumer.create_channel().await.expect("channel");
        consume_channel
            .basic_qos(PREFETCH, BasicQosOptions::default())
            .await
            .expect("basic.qos");
        drains.push(tokio::spawn(drain(
            consume_channel,
            queue.clone(),
            scenario.messages,
            epoch,
        )));
    }

    let channel = publisher.create_channel().await.expect("channel");
    if persistent {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm.select");
    }
    let properties = if persistent {
        BasicProperties::default().with_delivery_mode(2)
    } else {
        BasicProperties::default().with_delivery_mode(1)
    };
    let routing_key = if exchange.is_empty() {
        queues[0].clone()
    } else {
        String::new()
    };
    let window = Arc::new(Semaphore::new(CONFIRM_WINDOW));
    let mut confirms = Vec::with_capacity(if persistent { scenario.messages } else { 0 });
    // Publishes whose frames lapin has queued but not yet written, oldest first.
    let pipeline = publish_pipeline();
    let mut in_flight: VecDeque<InFlight> = VecDeque::with_capacity(pipeline);
    let mut written =
        |confirm: PublisherConfirm, sent: u64, permit: Option<OwnedSemaphorePermit>| {
            if let Some(permit) = permit {
                confirms.push(tokio::spawn(async move {
                    let outcome = confirm.await.expect("confirm");
                    drop(permit);
                    assert_eq!(outcome, Confirmation::Ack(None), "broker nacked");
                    nanos_since(epoch).saturating_sub(sent)
                }));
            }
        };
    let started = Instant::now();
    let cpu = proc_cpu::CpuMark::now(broker_pid);
    for _ in 0..scenario.messages {
        let permit = if persistent {
            Some(window.clone().acquire_owned().await.expect("semaphore"))
        } else {
            None
        };
        let sent = nanos_since(epoch);
        let mut body = vec![0x5a_u8; scenario.body_len];
        body[..8].copy_from_slice(&sent.to_le_bytes());
        let (channel, exchange, routing_key, properties) = (
            channel.clone(),
            exchange.clone(),
            routing_key.clone(),
            properties.clone(),
        );
        // Yields the confirm future on purpose: it is awaited later, in its own task.
        #[allow(clippy::async_yields_async)]
        let mut publish: PublishFuture = Box::pin(async move {
            channel
                .basic_publish(
                    exchange.as_str().into(),
                    routing_key.as_str().into(),
                    BasicPublishOptions::default(),
                    &body,
                    properties,
                )
                .await
                .expect("basic.publish")
        });
        // The first poll queues the frames, so publishes go out in loop order although
        // several wait for their write at once.
        match futures_lite::future::poll_once(&mut publish).await {
            Some(confirm) => written(confirm, sent, permit),
            None => in_flight.push_back(InFlight {
                publish,
                sent,
                permit,
            }),
        }
        while in_flight.len() >= pipeline {
            let oldest = in_flight.pop_front().expect("non-empty");
            written(oldest.publish.await, oldest.sent, oldest.permit);
        }
    }
    for rest in in_flight {
        written(rest.publish.await, rest.sent, rest.permit);
    }
    let mut confirm_latencies = Vec::with_capacity(confirms.len());
    for confirm in confirms {
        confirm_latencies.push(confirm.await.expect("confirm task"));
    }
    let mut delivery_latencies = Vec::new();
    for drain in drains {
        delivery_latencies.extend(drain.await.expect("drain task"));
    }
    let elapsed = started.elapsed();
    let (broker_us, client_us) = cpu.per_message_us(scenario.messages);

    for queue in &queues {
        setup
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await
            .expect("queue.delete");
    }
    if !exchange.is_empty() {
        setup
            .exchange_delete(exchange.as_str().into(), ExchangeDeleteOptions::default())
            .await
            .expect("exchange.delete");
    }
    let _ = consumer.close(200, "bye".into()).await;
    let _ = publisher.close(200, "bye".into()).await;

    Sample {
        msgs_per_s: scenario.messages as f64 / elapsed.as_secs_f64(),
        p99_delivery_ms: percentile(&mut delivery_latencies, 0.99),
        p99_confirm_ms: (!confirm_latencies.is_empty())
            .then(|| percentile(&mut confirm_latencies, 0.99)),
        broker_us,
        client_us,
    }
}

/// One run with the raw load generator ((a) and (b) only).
async fn run_raw(addr: &str, broker_pid: u32, scenario: Scenario, run_id: &str) -> Sample {
    let queue = format!("bench-raw-{run_id}");
    let messages = scenario.messages * RAW_MESSAGES_FACTOR;
    let raw = amqp_raw::RawScenario {
        addr,
        queue: &queue,
        body_len: scenario.body_len,
        messages,
        persistent: matches!(scenario.kind, Kind::PersistentConfirms),
        confirm_window: CONFIRM_WINDOW,
        prefetch: PREFETCH,
        ack_every: ACK_EVERY,
    };
    let cpu = proc_cpu::CpuMark::now(broker_pid);
    let mut outcome = amqp_raw::run(&raw).await;
    let (broker_us, client_us) = cpu.per_message_us(messages);
    Sample {
        msgs_per_s: messages as f64 / outcome.elapsed.as_secs_f64(),
        p99_delivery_ms: percentile(&mut outcome.delivery_latencies, 0.99),
        p99_confirm_ms: (!outcome.confirm_latencies.is_empty())
            .then(|| percentile(&mut outcome.confirm_latencies, 0.99)),
        broker_us,
        client_us,
    }
}

/// Where a run goes: the AMQP URL (lapin) and host:port (raw) of one broker, and its pid.
struct Target<'a> {
    url: &'a str,
    addr: &'a str,
    pid: u32,
}

async fn timed_run(
    target: &Target<'_>,
    client: Client,
    scenario: Scenario,
    run_id: &str,
) -> Sample {
    let run = async {
        match client {
            Client::Lapin => run(target.url, target.pid, scenario, run_id).await,
            Client::Raw => run_raw(target.addr, target.pid, scenario, run_id).await,
        }
    };
    tokio::time::timeout(RUN_DEADLINE, run)
        .await
        .unwrap_or_else(|_| {
            panic!(
                "{} ({}) on {} exceeded {RUN_DEADLINE:?}",
                scenario.label,
                client.name(),
                target.url
            )
        })
}

/// Median and worst of one broker's samples: (msgs/s median, min; p99 median, max;
/// confirm p99 median).
struct Summary {
    rate: f64,
    rate_min: f64,
    p99: f64,
    p99_max: f64,
    confirm_p99: Option<f64>,
    broker_us: f64,
    client_us: f64,
}

fn summarize(samples: &[Sample]) -> Summary {
    let mut rates: Vec<f64> = samples.iter().map(|s| s.msgs_per_s).collect();
    let mut p99s: Vec<f64> = samples.iter().map(|s| s.p99_delivery_ms).collect();
    let mut confirms: Vec<f64> = samples.iter().filter_map(|s| s.p99_confirm_ms).collect();
    let mut broker_us: Vec<f64> = samples.iter().map(|s| s.broker_us).collect();
    let mut client_us: Vec<f64> = samples.iter().map(|s| s.client_us).collect();
    Summary {
        rate: median(&mut rates),
        rate_min: rates[0],
        p99: median(&mut p99s),
        p99_max: *p99s.last().expect("samples"),
        confirm_p99: (!confirms.is_empty()).then(|| median(&mut confirms)),
        broker_us: median(&mut broker_us),
        client_us: median(&mut client_us),
    }
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split(' ').take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn main() {
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let rabbitmq = std::env::var("RABBITMQ_URL").unwrap_or_else(|_| {
        eprintln!(
            "set RABBITMQ_URL (e.g. amqp://guest:guest@127.0.0.1:5697/%2f) to a RabbitMQ node; \
             BENCHMARKS.md § AMQP says how to start Debian's on loopback"
        );
        std::process::exit(2);
    });
    let rabbitmq_addr = rabbitmq
        .rsplit('@')
        .next()
        .and_then(|authority| authority.split('/').next())
        .unwrap_or("127.0.0.1:5672")
        .to_owned();
    let rabbitmq_port = rabbitmq_addr
        .rsplit(':')
        .next()
        .and_then(|port| port.parse::<u16>().ok())
        .unwrap_or(5672);
    let rabbitmq_pid = proc_cpu::listener_pid(rabbitmq_port).unwrap_or_else(|| {
        eprintln!("no local process listens on port {rabbitmq_port} (RABBITMQ_URL)");
        std::process::exit(2);
    });
    // `AMQP_BENCH_CLIENT=lapin` or `raw` measures with one client only.
    let clients: Vec<Client> = match std::env::var("AMQP_BENCH_CLIENT").as_deref() {
        Ok("lapin") => vec![Client::Lapin],
        Ok("raw") => vec![Client::Raw],
        _ => vec![Client::Lapin, Client::Raw],
    };
    let mut tributary = broker::TestBroker::start();
    let tributary_addr = tributary.addr("amqp").to_string();
    let tributary_url = format!("amqp://guest:guest@{tributary_addr}/%2f");
    let ours = Target {
        url: &tributary_url,
        addr: &tributary_addr,
        pid: tributary.pid(),
    };
    let theirs = Target {
        url: &rabbitmq,
        addr: &rabbitmq_addr,
        pid: rabbitmq_pid,
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    println!(
        "| scenario | client | Tributary msgs/s median (min) | RabbitMQ msgs/s median (min) | \
         ratio | p99 delivery ms T / R median (worst) | p99 confirm ms T / R | \
         broker CPU us/msg T / R | client CPU us/msg T / R |"
    );
    println!("|---|---|---|---|---|---|---|---|---|");
    println!("load average at start: {}", load_average());
    for scenario in SCENARIOS {
        if only
            .as_deref()
            .is_some_and(|o| !scenario.label.starts_with(o))
        {
            continue;
        }
        for &client in &clients {
            // The raw generator speaks one queue only: (c) is lapin's.
            if client == Client::Raw && matches!(scenario.kind, Kind::Fanout) {
                continue;
            }
            let (t, r) = measure(&runtime, &ours, &theirs, client, scenario);
            print_row(scenario, client, &t, &r);
        }
    }
    println!("load average at end: {}", load_average());
    drop(tributary);
}

/// Runs one scenario with one client against both brokers, interleaved.
fn measure(
    runtime: &tokio::runtime::Runtime,
    ours: &Target<'_>,
    theirs: &Target<'_>,
    client: Client,
    scenario: Scenario,
) -> (Summary, Summary) {
    let (mut our_samples, mut their_samples) = (Vec::new(), Vec::new());
    for repeat in 0..repeats() {
        let run_id = format!("{}-{}-{repeat}", scenario.label, client.name());
        // Alternate which broker goes first so neither always runs on a warmer machine.
        let order = if repeat % 2 == 0 {
            [true, false]
        } else {
            [false, true]
        };
        for is_ours in order {
            let target = if is_ours { ours } else { theirs };
            let sample = runtime.block_on(timed_run(target, client, scenario, &run_id));
            eprintln!(
                "{} {} run {repeat} {}: {:.0} msgs/s, p99 {:.2} ms, CPU us/msg broker {:.2} \
                 client {:.2}",
                scenario.label,
                client.name(),
                if is_ours { "tributary" } else { "rabbitmq" },
                sample.msgs_per_s,
                sample.p99_delivery_ms,
                sample.broker_us,
                sample.client_us
            );
            if is_ours {
                our_samples.push(sample);
            } else {
                their_samples.push(sample);
            }
        }
    }
    (summarize(&our_samples), summarize(&their_samples))
}

fn print_row(scenario: Scenario, client: Client, t: &Summary, r: &Summary) {
    let confirm = match (t.confirm_p99, r.confirm_p99) {
        (Some(t), Some(r)) => format!("{t:.2} / {r:.2}"),
        _ => "–".to_owned(),
    };
    println!(
        "| {} | {} | {:.0} ({:.0}) | {:.0} ({:.0}) | **{:.2}** | {:.2} ({:.2}) / {:.2} ({:.2}) \
         | {} | {:.2} / {:.2} | {:.2} / {:.2} |",
        scenario.label,
        client.name(),
        t.rate,
        t.rate_min,
        r.rate,
        r.rate_min,
        t.rate / r.rate,
        t.p99,
        t.p99_max,
        r.p99,
        r.p99_max,
        confirm,
        t.broker_us,
        r.broker_us,
        t.client_us,
        r.client_us
    );
}
