//! One run of a workload through one driver: topics and subscriptions, consumers (a readiness
//! probe: one message per producer must reach every subscription before anything is timed),
//! producers at the workload's rate, a warm-up that is then forgotten, measured periods, and
//! OMB's backlog phase (consumers start once `consumerBacklogSizeGB` is stored, and the run
//! lasts until the backlog is drained to `backlogDrainRatio`). `producerRate: 0` is OMB's
//! maximum sustainable rate: [`crate::rate`] moves the target every few seconds, warm-up
//! included, so that consumers keep up; `--unthrottled` sends as fast as acknowledgements
//! allow instead.
//!
//! Invariants: a producer never has more than [`RunOptions::max_in_flight`] unacknowledged
//! sends; every send is either recorded as published (acknowledged) or as an error; the
//! result's periods cover only the measured phase. Producers stop at the end of the last
//! period and its figures include the sends that were in flight then (awaited, bounded by
//! [`SETTLE_TIMEOUT`]), so the reported publish rates add up to every acknowledged measured send.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::Error;
use crate::driver::{Consumer, Driver, OnMessage, Producer};
use crate::payload::{self, Pool};
use crate::rate::{self, RateController, RateMode};
use crate::result::{PUBLISH_RATE_COUNTS, TestResult};
use crate::stats::Stats;
use crate::workload::{KeyDistributor, Workload};

/// How long consumers may take to receive the readiness probes.
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// How long in-flight sends may take to settle after the measured phase.
const SETTLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Distinct keys of `KEY_ROUND_ROBIN`.
const ROUND_ROBIN_KEYS: u64 = 10_000;

/// Knobs outside the workload file.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// OMB uses 10 s.
    pub period: Duration,
    /// Overrides `testDurationMinutes` / `warmupDurationMinutes`.
    pub test_duration: Option<Duration>,
    pub warmup: Option<Duration>,
    pub max_in_flight: usize,
    /// Prints a rates line on stderr every second.
    pub progress: bool,
    /// Names topics `<prefix>-t<n>` and subscriptions `<prefix>-t<n>-s<m>` (default: unique
    /// per run), so a caller can look at them beside the run.
    pub name_prefix: Option<String>,
    /// `producerRate: 0` sends as fast as acknowledgements allow instead of OMB's maximum
    /// sustainable rate.
    pub unthrottled: bool,
}

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            period: Duration::from_secs(10),
            test_duration: None,
            warmup: None,
            max_in_flight: 1000,
            progress: true,
            name_prefix: None,
            unthrottled: false,
        }
    }
}

/// Names that every protocol accepts (letters, digits, `-`), unique per run.
struct Names {
    prefix: String,
}

impl Names {
    fn new(prefix: Option<&str>) -> Self {
        let prefix = prefix.map_or_else(
            || format!("omb-{:x}", payload::now_micros() & 0xff_ffff_ffff),
            str::to_owned,
        );
        Self { prefix }
    }
    fn topic(&self, t: u32) -> String {
        format!("{}-t{t}", self.prefix)
    }
    fn subscription(&self, t: u32, s: u32) -> String {
        format!("{}-t{t}-s{s}", self.prefix)
    }
}

/// What a run produced, besides its `TestResult`: the topic and subscription names (for
/// independent checks after the run) and the readiness probes published.
#[derive(Debug)]
pub struct RunOutput {
    pub result: TestResult,
    pub topics: Vec<String>,
    pub subscriptions: Vec<Vec<String>>,
    /// Every message the broker acknowledged: probes, warm-up, measured and settled sends.
    pub acknowledged_total: u64,
    pub probes: u64,
}

struct Producing {
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
    producers: Vec<Arc<dyn Producer>>,
    /// Moves `target` in max-sustainable mode.
    controller: Option<tokio::task::JoinHandle<()>>,
}

/// The target publish rate over all producers, msg/s, shared with the producers (which
/// re-anchor their schedule when it changes) and the rate controller.
#[derive(Debug)]
struct Target(AtomicU64);

impl Target {
    fn new(rate: f64) -> Self {
        Self(AtomicU64::new(rate.to_bits()))
    }
    fn get(&self) -> f64 {
        f64::from_bits(self.0.load(Ordering::Relaxed))
    }
    fn set(&self, rate: f64) {
        self.0.store(rate.to_bits(), Ordering::Relaxed);
    }
}

/// How producers are paced for `workload` (see [`RateMode`]).
pub fn rate_mode(workload: &Workload, options: &RunOptions) -> RateMode {
    match (workload.producer_rate, options.unthrottled) {
        (0, true) => RateMode::Unthrottled,
        (0, false) => RateMode::MaxSustainable,
        _ => RateMode::Fixed,
    }
}

/// Runs `workload` through `driver`; `target` names the broker in the result's `driver`.
pub async fn run(
    workload: &Workload,
    pool: Pool,
    driver: &dyn Driver,
    target: &str,
    options: &RunOptions,
) -> Result<RunOutput, Error> {
    let label = format!("{target} ({})", driver.protocol().name());
    let mode = rate_mode(workload, options);
    let backlog_bytes = workload.backlog_bytes();
    if mode == RateMode::MaxSustainable && backlog_bytes > 0 {
        // OMB refuses this too: a rate that follows the consumers cannot build a backlog.
        return Err(Error::Workload(
            "producerRate 0 (the maximum sustainable rate) cannot build consumerBacklogSizeGB: \
             give a producerRate, or --unthrottled"
                .into(),
        ));
    }
    let pace = match mode {
        RateMode::Fixed => Some(Arc::new(Target::new(workload.producer_rate as f64))),
        RateMode::MaxSustainable => Some(Arc::new(Target::new(rate::START_RATE))),
        RateMode::Unthrottled => None,
    };
    let names = Names::new(options.name_prefix.as_deref());
    let partitions = workload.partitions_per_topic;
    let subscriptions = u64::from(workload.topics * workload.subscriptions_per_topic);
    let stats = Arc::new(Stats::new(subscriptions / u64::from(workload.topics)));
    let topics: Vec<String> = (0..workload.topics).map(|t| names.topic(t)).collect();
    let subs: Vec<Vec<String>> = (0..workload.topics)
        .map(|t| {
            (0..workload.subscriptions_per_topic)
                .map(|s| names.subscription(t, s))
                .collect()
        })
        .collect();
    for (topic, subs) in topics.iter().zip(&subs) {
        driver.create_topic(topic, partitions).await?;
        for sub in subs {
            driver.create_subscription(topic, partitions, sub).await?;
        }
    }

    let mut consumers = Vec::new();
    if backlog_bytes == 0 {
        consumers = start_consumers(driver, workload, &topics, &subs, &stats).await?;
    }
    let mut producers = Vec::new();
    for topic in &topics {
        for _ in 0..workload.producers_per_topic {
            producers.push((topic.clone(), driver.producer(topic, partitions).await?));
        }
    }
    // Readiness: one probe per producer must reach every subscription, so no timed period
    // includes the consumers' start-up (group joins, rebalancing).
    let probes = producers.len() as u64;
    for (_, producer) in &producers {
        producer.send(None, pool.stamped(0)).await?;
        stats.record_publish(pool.message_size(), 1, 1);
    }
    if backlog_bytes == 0 {
        let want = probes * stats_subscriptions(workload);
        let deadline = Instant::now() + READY_TIMEOUT;
        while stats.total_consumed() < want {
            if Instant::now() > deadline {
                return Err(Error::driver(
                    driver.protocol().name(),
                    format!(
                        "consumers received {} of {want} readiness probes within {READY_TIMEOUT:?}",
                        stats.total_consumed()
                    ),
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    let mut producing = Some(start_producers(
        workload,
        &pool,
        producers,
        &stats,
        options,
        pace.clone(),
        mode == RateMode::MaxSustainable,
    ));
    let show = |label: &str, phase: &str, stats: &Stats, last: &mut (Instant, u64, u64)| {
        print_rates(label, phase, stats, last, pace.as_ref().map(|t| t.get()));
    };
    let warmup = options.warmup.unwrap_or_else(|| workload.warmup_duration());
    if !warmup.is_zero() {
        watch(&label, "warm-up", &stats, warmup, options, &show).await;
    }
    stats.reset_measurements();

    let mut result = TestResult {
        workload: workload.name.clone(),
        driver: label.clone(),
        message_size: pool.message_size() as u64,
        topics: workload.topics,
        partitions: workload.partitions_per_topic,
        producers_per_topic: workload.producers_per_topic,
        consumers_per_topic: workload.subscriptions_per_topic * workload.consumer_per_subscription,
        period_seconds: options.period.as_secs_f64(),
        protocol: driver.protocol().name().into(),
        target: target.into(),
        publish_rate_counts: PUBLISH_RATE_COUNTS.into(),
        producer_rate_mode: mode.name().into(),
        ..Default::default()
    };
    let duration = options
        .test_duration
        .unwrap_or_else(|| workload.test_duration());
    let started = Instant::now();
    let mut next_period = started + options.period;
    let mut last_print = (
        Instant::now(),
        stats.total_published(),
        stats.total_consumed(),
    );
    let drained_to = |stats: &Stats| {
        // OMB: the backlog counts as drained at `(1 - backlogDrainRatio)` of its peak.
        let target = backlog_bytes as f64 / pool.message_size() as f64
            * f64::from(workload.subscriptions_per_topic);
        stats.backlog() as f64 <= target * (1.0 - workload.backlog_drain_ratio)
    };
    loop {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = Instant::now();
        if backlog_bytes > 0 && consumers.is_empty() && stats.bytes_published() >= backlog_bytes {
            consumers = start_consumers(driver, workload, &topics, &subs, &stats).await?;
        }
        if now >= next_period {
            next_period += options.period;
            let done = now.duration_since(started) >= duration
                && (backlog_bytes == 0 || (!consumers.is_empty() && drained_to(&stats)));
            if done {
                // Producers stop and their in-flight sends settle inside the last period, so
                // the reported rates account for every acknowledged send.
                if let Some(producing) = producing.take() {
                    stop_producers(producing).await;
                }
                result.push_period(&stats.take_period());
                result
                    .target_publish_rate
                    .extend(pace.as_ref().map(|t| t.get()));
                break;
            }
            result.push_period(&stats.take_period());
            result
                .target_publish_rate
                .extend(pace.as_ref().map(|t| t.get()));
        }
        if options.progress && now.duration_since(last_print.0) >= Duration::from_secs(1) {
            show(&label, "measure", &stats, &mut last_print);
        }
    }
    result.set_aggregated(&stats.cumulative());

    for consumer in consumers {
        consumer.close().await;
    }
    driver.close().await;
    Ok(RunOutput {
        result,
        topics,
        subscriptions: subs,
        acknowledged_total: stats.total_published(),
        probes,
    })
}

fn stats_subscriptions(workload: &Workload) -> u64 {
    u64::from(workload.subscriptions_per_topic)
}

async fn start_consumers(
    driver: &dyn Driver,
    workload: &Workload,
    topics: &[String],
    subs: &[Vec<String>],
    stats: &Arc<Stats>,
) -> Result<Vec<Box<dyn Consumer>>, Error> {
    let mut consumers = Vec::new();
    for (topic, subs) in topics.iter().zip(subs) {
        for sub in subs {
            for index in 0..workload.consumer_per_subscription {
                let stats = Arc::clone(stats);
                let on_message: OnMessage = Arc::new(move |body: &[u8]| stats.record_consume(body));
                consumers.push(
                    driver
                        .consumer(
                            topic,
                            workload.partitions_per_topic,
                            sub,
                            index,
                            workload.consumer_per_subscription,
                            on_message,
                        )
                        .await?,
                );
            }
        }
    }
    Ok(consumers)
}

/// Starts the producers, paced by `pace` (None: unthrottled), and with `discover` the rate
/// controller that moves `pace`.
fn start_producers(
    workload: &Workload,
    pool: &Pool,
    producers: Vec<(String, Arc<dyn Producer>)>,
    stats: &Arc<Stats>,
    options: &RunOptions,
    pace: Option<Arc<Target>>,
    discover: bool,
) -> Producing {
    let stop = Arc::new(AtomicBool::new(false));
    let producer_count = producers.len().max(1) as f64;
    let key_counter = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let mut handles = Vec::new();
    for (n, (_, producer)) in producers.into_iter().enumerate() {
        handles.push(Arc::clone(&producer));
        let (stop, stats, pool) = (Arc::clone(&stop), Arc::clone(stats), pool.clone());
        let (keys, distributor) = (Arc::clone(&key_counter), workload.key_distributor);
        let pace = pace.clone();
        let in_flight = Arc::new(Semaphore::new(options.max_in_flight.max(1)));
        let max_in_flight = options.max_in_flight.max(1) as u32;
        tasks.push(tokio::spawn(async move {
            let mut sent: u64 = 0;
            // Uniform pacing: send `sent` is due at `anchor + (sent - anchor_sent) / rate`;
            // a new target rate starts a new schedule from the next send. The delay against
            // the schedule is OMB's publish delay.
            let (mut anchor, mut anchor_sent, mut rate) = (tokio::time::Instant::now(), 0, 0.0);
            while !stop.load(Ordering::Relaxed) {
                let due = match &pace {
                    Some(target) => {
                        let wanted = target.get() / producer_count;
                        if wanted != rate {
                            (anchor, anchor_sent, rate) =
                                (tokio::time::Instant::now(), sent, wanted);
                        }
                        let due = anchor
                            + Duration::from_secs_f64((sent - anchor_sent) as f64 / rate.max(1e-3));
                        tokio::time::sleep_until(due).await;
                        due
                    }
                    None => tokio::time::Instant::now(),
                };
                let Ok(permit) = Arc::clone(&in_flight).acquire_owned().await else {
                    break;
                };
                let key = match distributor {
                    KeyDistributor::NoKey => None,
                    KeyDistributor::KeyRoundRobin => Some(format!(
                        "key-{}",
                        keys.fetch_add(1, Ordering::Relaxed) % ROUND_ROBIN_KEYS
                    )),
                    KeyDistributor::RandomNano => {
                        Some(format!("{}", payload::now_micros() * 1000 + sent % 1000))
                    }
                };
                let body = pool.stamped(n + sent as usize);
                let (producer, stats) = (Arc::clone(&producer), Arc::clone(&stats));
                let bytes = body.len();
                let delay_us = due.elapsed().as_micros() as u64;
                tokio::spawn(async move {
                    let start = Instant::now();
                    match producer.send(key, body).await {
                        Ok(()) => stats.record_publish(
                            bytes,
                            start.elapsed().as_micros() as u64,
                            delay_us,
                        ),
                        Err(err) => {
                            // The first refusal is shown; the rest only counted.
                            if stats.record_publish_error() == 0 {
                                eprintln!("first refused send: {err}");
                            }
                        }
                    }
                    drop(permit);
                });
                sent += 1;
            }
            // Waits (bounded) for the sends still in flight.
            let _ =
                tokio::time::timeout(SETTLE_TIMEOUT, in_flight.acquire_many(max_in_flight)).await;
        }));
    }
    let controller = pace.filter(|_| discover).map(|target| {
        let (stop, stats) = (Arc::clone(&stop), Arc::clone(stats));
        tokio::spawn(async move {
            let mut controller =
                RateController::starting_at(stats.total_published(), stats.total_received_once());
            let mut last = Instant::now();
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(rate::CONTROL_PERIOD).await;
                let now = Instant::now();
                let (next, _) = controller.next_rate(
                    target.get(),
                    now.duration_since(last),
                    stats.total_published(),
                    stats.total_received_once(),
                );
                last = now;
                target.set(next);
            }
        })
    });
    Producing {
        stop,
        tasks,
        producers: handles,
        controller,
    }
}

async fn stop_producers(producing: Producing) {
    producing.stop.store(true, Ordering::Relaxed);
    if let Some(controller) = producing.controller {
        controller.abort();
    }
    for task in producing.tasks {
        let _ = task.await;
    }
    for producer in producing.producers {
        producer.close().await;
    }
}

/// Waits `length`, printing rates every second with `show`.
async fn watch(
    label: &str,
    phase: &str,
    stats: &Stats,
    length: Duration,
    options: &RunOptions,
    show: &impl Fn(&str, &str, &Stats, &mut (Instant, u64, u64)),
) {
    let end = Instant::now() + length;
    let mut last = (
        Instant::now(),
        stats.total_published(),
        stats.total_consumed(),
    );
    while Instant::now() < end {
        tokio::time::sleep(
            Duration::from_secs(1).min(end.saturating_duration_since(Instant::now())),
        )
        .await;
        if options.progress {
            show(label, phase, stats, &mut last);
        }
    }
}

fn print_rates(
    label: &str,
    phase: &str,
    stats: &Stats,
    last: &mut (Instant, u64, u64),
    target: Option<f64>,
) {
    let (now, published, consumed) = (
        Instant::now(),
        stats.total_published(),
        stats.total_consumed(),
    );
    let secs = now.duration_since(last.0).as_secs_f64().max(1e-9);
    let target = target.map_or_else(String::new, |t| format!("  target {t:>9.0} msg/s"));
    eprintln!(
        "{label} {phase}: publish {:>9.0} msg/s  consume {:>9.0} msg/s  backlog {:>8}{target}",
        (published - last.1) as f64 / secs,
        (consumed - last.2) as f64 / secs,
        stats.backlog(),
    );
    *last = (now, published, consumed);
}
