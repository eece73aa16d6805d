//! OMB's backlog phase (`consumerBacklogSizeGB`), scaled down to 4 MiB over Kafka: producers
//! run alone until the backlog is stored, then consumers drain it while producers go on. The
//! reported backlog must rise to the target and fall back, and what the run reports as
//! consumed must agree within 10 % with what the broker holds (its high watermarks): a drain
//! that was miscounted, or a run that ended before draining, fails.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tributary_bench::driver::Protocol;
use tributary_bench::runner::{self, RunOptions};

#[test]
fn a_backlog_is_built_then_drained_and_the_drain_matches_the_stored_count() {
    let mut workload = crate::tiny_workload();
    // 4 MiB of 1 KiB messages: 4,096, about 2 s at the producers' 2,000 msg/s.
    workload.consumer_backlog_size_gb = 4.0 / 1024.0;
    workload.backlog_drain_ratio = 0.9;
    let backlog_messages = (workload.backlog_bytes() / 1024) as f64;
    let broker = crate::start_tributary(&workload);
    let address = broker.address(Protocol::Kafka).to_owned();
    let output = crate::runtime().block_on(async {
        let options = RunOptions {
            // Short periods: the run's end is checked at period ends, so a run that did not
            // wait for the drain would end within 250 ms of the consumers' start, too soon
            // for them to join and read 4 MiB.
            period: Duration::from_millis(250),
            test_duration: Some(Duration::from_secs(2)),
            warmup: Some(Duration::ZERO),
            max_in_flight: 200,
            progress: false,
            name_prefix: Some("h19b-backlog".into()),
            unthrottled: false,
        };
        let pool = tributary_bench::payload::Pool::new(&workload, &crate::workloads_dir())
            .expect("payload");
        let driver = Protocol::Kafka.connect(&address).await.expect("connect");
        runner::run(&workload, pool, driver.as_ref(), "Tributary", &options)
            .await
            .expect("run")
    });
    let r = &output.result;

    // Built: the backlog reached the target before consumers started ...
    let peak = r.backlog.iter().copied().max().unwrap_or(0) as f64;
    assert!(
        peak >= backlog_messages * 0.9,
        "peak backlog {peak} of {backlog_messages}: {:?}",
        r.backlog
    );
    // ... and drained: the run ended at most (1 - backlogDrainRatio) of it behind.
    let last = *r.backlog.last().expect("periods") as f64;
    assert!(
        last <= backlog_messages * 0.1 + 1.0,
        "backlog {last} at the end: {:?}",
        r.backlog
    );
    // Periods after the peak consumed faster than they published (the drain).
    let peak_at = r
        .backlog
        .iter()
        .position(|b| *b as f64 == peak)
        .unwrap_or(0);
    let (published_after, consumed_after): (f64, f64) = (peak_at + 1..r.consume_rate.len())
        .map(|i| (r.publish_rate[i], r.consume_rate[i]))
        .fold((0.0, 0.0), |(p, c), (pi, ci)| (p + pi, c + ci));
    assert!(
        consumed_after > published_after,
        "no drain after the peak: publish {:?} consume {:?}",
        r.publish_rate,
        r.consume_rate
    );

    // The independent count: the records the broker holds.
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &address)
        .set("group.id", "h19b-backlog-count")
        .create()
        .expect("consumer");
    let stored: i64 = (0..workload.partitions_per_topic as i32)
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(&output.topics[0], p, Duration::from_secs(10))
                .expect("watermarks");
            high - low
        })
        .sum();
    let stored = stored as f64;
    let sum = |rates: &[f64]| {
        rates
            .iter()
            .map(|rate| rate * r.period_seconds)
            .sum::<f64>()
    };
    // Everything acknowledged is stored; the reported publish rates (plus the readiness
    // probes, sent before the measured phase) add up to it.
    assert!(stored >= output.acknowledged_total as f64);
    let published = sum(&r.publish_rate) + output.probes as f64;
    assert!(
        (stored - published).abs() / stored <= 0.10,
        "published {published} vs stored {stored}"
    );
    // Consumers read from the first offset, so the probes are among the consumed.
    let consumed = sum(&r.consume_rate);
    assert!(
        consumed >= backlog_messages,
        "consumed {consumed}, less than the backlog {backlog_messages}"
    );
    assert!(
        (stored - consumed).abs() / stored <= 0.10,
        "consumed {consumed} vs stored {stored}: {:.1} % apart",
        (stored - consumed).abs() / stored * 100.0
    );
}
