//! `cargo bench --bench kafka partitions`: aggregate produce over 1, 100 and 1,000 partitions of
//! one topic, and the CPU an idle broker holding 1,000 partitions uses.
//!
//! - **Produce:** the producer of the Kafka produce rows (librdkafka through `rdkafka`, in the
//!   bench process, 1 KiB values, no key, acks=1, linger.ms=5, [`super::PRODUCE_FOR`] flat out
//!   then the paced latency phase), except that record i goes to partition i % N, so every
//!   partition is written all the time (the client's sticky partitioner would write one
//!   partition at a time). Backends: the engine with `always` and `interval:100`, and the
//!   discard-sink ceiling, so a drop with N that the ceiling shows too is the client's or the
//!   frontend's, not storage's. Rounds are interleaved over partition counts and backends, each
//!   run on a fresh broker after a `sync`; ratios are of medians, each row to the same backend
//!   with one partition.
//! - **Idle:** a fresh broker per backend with 1,000 partitions, written for one produce run so
//!   every partition has its files open, then left alone for [`IDLE_FOR`]: the process's CPU
//!   time from `/proc/self/stat` over that time (the producer is gone, so it is the broker's:
//!   runtime, storage flusher, timers), and its open descriptors.
//!
//! `TRIBUTARY_BENCH_PARTITIONS=1000` (a comma-separated list) runs only those partition counts
//! (the ratio column then divides by the first one) and skips the idle part, and
//! `TRIBUTARY_BENCH_BACKENDS=always` (or `interval`, `ceiling`) only the backends whose label
//! contains it: for profiling one case.

use std::time::{Duration, Instant};

use tokio::runtime::Runtime;
use tributary::broker::memory_log::MemoryLogMode;
use tributary_api::Durability;

use super::{
    Backend, MIB, Throughput, median, min, proc_cpu, produce_run_spread, settle, start_with, stop,
};

const VALUE_LEN: usize = 1024;
const COUNTS: [u32; 3] = [1, 100, 1000];
/// Partitions of the idle broker.
const IDLE_PARTITIONS: u32 = 1000;
/// How long the idle broker is watched.
const IDLE_FOR: Duration = Duration::from_secs(30);
/// Quiet time before the idle measurement starts (the last fsyncs, connection teardown).
const IDLE_SETTLE: Duration = Duration::from_secs(3);

fn backends() -> [(&'static str, Backend); 3] {
    [
        ("tributary, always", Backend::Tributary(Durability::Always)),
        (
            "tributary, interval:100",
            Backend::Tributary(Durability::Interval(Duration::from_millis(100))),
        ),
        (
            "ceiling (discard sink)",
            Backend::Ceiling(MemoryLogMode::Discard),
        ),
    ]
}

pub(super) fn bench_partitions(runtime: &Runtime, repeats: usize) {
    let chosen: Option<Vec<u32>> = std::env::var("TRIBUTARY_BENCH_PARTITIONS")
        .ok()
        .map(|list| {
            list.split(',')
                .map(|n| {
                    n.trim()
                        .parse()
                        .expect("TRIBUTARY_BENCH_PARTITIONS: numbers")
                })
                .collect()
        });
    let counts = chosen.clone().unwrap_or_else(|| COUNTS.to_vec());
    let wanted = std::env::var("TRIBUTARY_BENCH_BACKENDS").ok();
    let backends: Vec<(&str, Backend)> = backends()
        .into_iter()
        .filter(|(label, _)| wanted.as_deref().is_none_or(|w| label.contains(w)))
        .collect();
    let value = vec![0x5a_u8; VALUE_LEN];
    // runs[backend][count]
    let mut runs: Vec<Vec<Vec<Throughput>>> = vec![vec![Vec::new(); counts.len()]; backends.len()];
    for round in 0..repeats {
        for (count_index, &count) in counts.iter().enumerate() {
            for (backend_index, (label, backend)) in backends.iter().enumerate() {
                settle();
                let running = runtime.block_on(start_with(*backend, count));
                let run = produce_run_spread(
                    running.addr,
                    &[("acks", "1")],
                    std::slice::from_ref(&value),
                    Some(count),
                );
                runtime.block_on(stop(running));
                eprintln!(
                    "partitions {count} round {round} {label}: {:.0} rec/s p50 {:.1} ms p99 {:.1} ms",
                    run.records_per_s, run.p50_ms, run.p99_ms
                );
                runs[backend_index][count_index].push(run);
            }
        }
    }
    println!(
        "\nproduce {VALUE_LEN} B values over N partitions (record i to partition i % N), acks=1, linger.ms=5, {repeats} runs of {:?}; ratio to the same backend with 1 partition",
        super::PRODUCE_FOR
    );
    println!(
        "| backend | partitions | records/s median (min) | MiB/s median | p50 / p99 delivery ms at 5k rec/s | ratio to 1 partition | ratio to ceiling |"
    );
    println!("|---|---|---|---|---|---|---|");
    let records = |backend: usize, count: usize| -> Vec<f64> {
        runs[backend][count]
            .iter()
            .map(|run| run.records_per_s)
            .collect()
    };
    let ceiling = backends
        .iter()
        .position(|(label, _)| label.starts_with("ceiling"));
    for (backend_index, (label, _)) in backends.iter().enumerate() {
        let single = median(&records(backend_index, 0));
        for (count_index, count) in counts.iter().enumerate() {
            let these = &runs[backend_index][count_index];
            let rate = records(backend_index, count_index);
            let p50: Vec<f64> = these.iter().map(|run| run.p50_ms).collect();
            let p99: Vec<f64> = these.iter().map(|run| run.p99_ms).collect();
            let to_ceiling = ceiling.map_or("n/a".to_owned(), |ceiling| {
                format!(
                    "{:.2}",
                    median(&rate) / median(&records(ceiling, count_index))
                )
            });
            println!(
                "| {label} | {count} | {:.0} ({:.0}) | {:.1} | {:.1} / {:.1} | **{:.2}** | {to_ceiling} |",
                median(&rate),
                min(&rate),
                median(&rate) * VALUE_LEN as f64 / MIB,
                median(&p50),
                median(&p99),
                median(&rate) / single,
            );
        }
    }
    if chosen.is_none() {
        bench_idle(runtime);
    }
}

/// The idle broker with [`IDLE_PARTITIONS`] partitions, once per backend.
fn bench_idle(runtime: &Runtime) {
    let value = vec![0x5a_u8; VALUE_LEN];
    println!(
        "\nidle broker with {IDLE_PARTITIONS} partitions (after one produce run over all of them), {IDLE_FOR:?} watched"
    );
    println!("| backend | CPU % of one core | open descriptors |");
    println!("|---|---|---|");
    for (label, backend) in backends() {
        settle();
        let running = runtime.block_on(start_with(backend, IDLE_PARTITIONS));
        produce_run_spread(
            running.addr,
            &[("acks", "1")],
            std::slice::from_ref(&value),
            Some(IDLE_PARTITIONS),
        );
        std::thread::sleep(IDLE_SETTLE);
        let me = std::process::id();
        let (cpu_before, since) = (proc_cpu::cpu_time(me), Instant::now());
        std::thread::sleep(IDLE_FOR);
        let used = proc_cpu::cpu_time(me) - cpu_before;
        let share = used.as_secs_f64() / since.elapsed().as_secs_f64() * 100.0;
        let descriptors = std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count);
        runtime.block_on(stop(running));
        eprintln!("idle {label}: {share:.2} % of a core, {descriptors} descriptors");
        println!("| {label} | {share:.2} | {descriptors} |");
    }
}
