//! End-to-end tests of tributary-bench against a fresh Tributary (the `tributary` binary of
//! the same target directory: `cargo build --bin tributary` first, which `cargo test
//! --workspace` does). Each protocol module runs a tiny workload, then counts what the broker
//! holds with its own client (Kafka offsets, an AMQP observer queue's depth, RocketMQ queue
//! offsets) and checks the reported rates against that count.

mod amqp;
mod backlog;
mod cli;
mod kafka;
mod rate;
mod rocketmq;

use std::path::PathBuf;
use std::time::Duration;

use tributary_bench::driver::Protocol;
use tributary_bench::payload::Pool;
use tributary_bench::result::TestResult;
use tributary_bench::runner::{self, RunOptions, RunOutput};
use tributary_bench::target::{Tributary, find_tributary};
use tributary_bench::workload::Workload;

pub(crate) const PERIOD: Duration = Duration::from_secs(1);

pub(crate) fn workloads_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../workloads")
}

pub(crate) fn tiny_workload() -> Workload {
    Workload::load(&workloads_dir().join("tiny-1-topic-4-partitions-1kb.yaml"))
        .expect("tiny workload")
}

pub(crate) fn start_tributary(workload: &Workload) -> Tributary {
    let binary = find_tributary(None).expect("the tributary binary (cargo build --bin tributary)");
    Tributary::start(&binary, workload.partitions_per_topic).expect("start tributary")
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs `workload` over `protocol` at `address` with topics named `<prefix>-t<n>`.
pub(crate) async fn run(
    workload: &Workload,
    protocol: Protocol,
    address: &str,
    prefix: &str,
) -> RunOutput {
    let options = RunOptions {
        period: PERIOD,
        test_duration: Some(Duration::from_secs(4)),
        warmup: Some(Duration::ZERO),
        max_in_flight: 200,
        progress: false,
        name_prefix: Some(prefix.to_owned()),
        unthrottled: false,
    };
    let pool = Pool::new(workload, &workloads_dir()).expect("payload");
    let driver = protocol.connect(address).await.expect("connect");
    runner::run(workload, pool, driver.as_ref(), "Tributary", &options)
        .await
        .expect("run")
}

fn ordered(what: &str, p50: f64, p99: f64, max: f64) {
    assert!(p50 > 0.0, "{what}: p50 is {p50}");
    assert!(
        p50 <= p99 && p99 <= max,
        "{what}: p50 {p50} p99 {p99} max {max} out of order"
    );
}

/// The checks every protocol shares: `stored` is what the broker holds by its own count.
pub(crate) fn check(output: &RunOutput, stored: u64) {
    let r: &TestResult = &output.result;
    assert_eq!(
        r.publish_rate.len(),
        4,
        "one entry per 1 s period: {:?}",
        r.publish_rate
    );
    let reported: f64 = r
        .publish_rate
        .iter()
        .map(|rate| rate * r.period_seconds)
        .sum();
    assert_eq!(reported as u64, r.messages_published);
    assert!(
        r.messages_published > 1000,
        "published only {}",
        r.messages_published
    );
    // Nothing acknowledged may be missing from the broker.
    assert!(
        stored >= output.acknowledged_total,
        "the broker holds {stored} messages but acknowledged {}",
        output.acknowledged_total
    );
    // The reported rates (plus the readiness probes) agree with the broker's count within
    // 10 % (exactly, unless a send timed out on the client after the broker stored it).
    let expected = reported + output.probes as f64;
    let off = (stored as f64 - expected).abs() / stored as f64;
    assert!(
        off <= 0.10,
        "reported {expected} vs stored {stored}: {:.1} % apart",
        off * 100.0
    );
    let consumed: f64 = r
        .consume_rate
        .iter()
        .map(|rate| rate * r.period_seconds)
        .sum();
    let off = (consumed - reported).abs() / reported;
    assert!(off <= 0.10, "consumed {consumed} vs published {reported}");
    ordered(
        "publish",
        r.aggregated_publish_latency_50pct,
        r.aggregated_publish_latency_99pct,
        r.aggregated_publish_latency_max,
    );
    ordered(
        "end to end",
        r.aggregated_end_to_end_latency_50pct,
        r.aggregated_end_to_end_latency_99pct,
        r.aggregated_end_to_end_latency_max,
    );
    for i in 0..r.publish_rate.len() {
        ordered(
            "publish per period",
            r.publish_latency_50pct[i],
            r.publish_latency_99pct[i],
            r.publish_latency_max[i],
        );
    }
}
