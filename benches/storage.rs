//! Storage benchmarks (`cargo bench --bench storage`), each against a ceiling measured in the
//! same run on the same disk:
//!
//! (a) append throughput under `Durability::Never` with 1 MiB and 16 KiB batches, as a ratio to
//!     a plain sequential `write_all` of the same bytes to a file in the same directory;
//! (b) `Durability::Always` with 64 concurrent appender threads vs 1: records per fsync and
//!     throughput (group commit);
//! (c) warm reads of a 1 GiB partition (`read` + copy into a buffer) vs plain `read` of the same
//!     segment files;
//! (d) one cleaner pass over a 256 MiB compacted partition (MiB of log cleaned per second:
//!     read, key map, rewrite, fsync and swap) vs a plain `read` of the same warm segment files.
//!
//! Every figure is measured `REPEATS` times; the median and the max (or min for throughput
//! worst case) are printed, and ratios are of medians.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tributary::storage::{LogConfig, Storage};
use tributary_api::Durability;
use tributary_api::batch::{BatchHeader, Record, build_batch, verify_batch};

const REPEATS: usize = 7;
const MIB: usize = 1 << 20;
const APPEND_BYTES: usize = 256 * MIB;
const READ_PARTITION_BYTES: usize = 1024 * MIB;
const ALWAYS_RUN: Duration = Duration::from_millis(1500);

fn batch_of(total_bytes: usize, records: usize) -> Bytes {
    let value_len = total_bytes / records - 40;
    let records: Vec<Record> = (0..records)
        .map(|i| Record {
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(vec![(i % 251) as u8; value_len])),
            timestamp: 1_700_000_000_000 + i as i64,
            headers: Vec::new(),
        })
        .collect();
    build_batch(&records)
}

fn config(durability: Durability) -> LogConfig {
    LogConfig {
        max_batch_bytes: 2 * MIB as u32,
        durability,
        ..LogConfig::default()
    }
}

fn median(samples: &mut [f64]) -> f64 {
    samples.sort_by(f64::total_cmp);
    samples[samples.len() / 2]
}

fn mib_per_s(bytes: usize, elapsed: Duration) -> f64 {
    bytes as f64 / MIB as f64 / elapsed.as_secs_f64()
}

/// Engine append throughput (MiB/s) for `APPEND_BYTES` of `batch` under `Never`.
fn engine_append(root: &Path, batch: &Bytes) -> f64 {
    let storage = Storage::open(&root.join("engine")).expect("open");
    storage
        .open_topic("bench", 1, config(Durability::Never))
        .expect("topic");
    let partition = storage.partition("bench", 0).expect("partition");
    let count = APPEND_BYTES / batch.len();
    let started = Instant::now();
    for _ in 0..count {
        partition.append(batch, 0).expect("append");
    }
    let elapsed = started.elapsed();
    drop(storage);
    std::fs::remove_dir_all(root.join("engine")).expect("clean up");
    mib_per_s(count * batch.len(), elapsed)
}

/// The ceiling: the same bytes written with `write_all` to one file.
fn plain_append(root: &Path, batch: &Bytes) -> f64 {
    let path = root.join("plain.log");
    let mut file = File::create(&path).expect("create");
    let count = APPEND_BYTES / batch.len();
    let started = Instant::now();
    for _ in 0..count {
        file.write_all(batch).expect("write");
    }
    let elapsed = started.elapsed();
    drop(file);
    std::fs::remove_file(&path).expect("clean up");
    mib_per_s(count * batch.len(), elapsed)
}

fn bench_append(root: &Path) {
    println!(
        "\n(a) append under Durability::Never, {} MiB per run, {REPEATS} runs",
        APPEND_BYTES / MIB
    );
    let mut crc_costs = Vec::new();
    println!(
        "| batch | engine MiB/s median (min) | write_all MiB/s median (min) | ratio of medians |"
    );
    println!("|---|---|---|---|");
    for (label, batch) in [
        ("1 MiB", batch_of(MIB, 16)),
        ("16 KiB", batch_of(16 * 1024, 8)),
    ] {
        let (mut engine, mut plain) = (Vec::new(), Vec::new());
        for _ in 0..REPEATS {
            // Interleaved, each after a system-wide `sync`, so writeback of the previous run's
            // dirty pages does not land inside the next measurement.
            settle();
            engine.push(engine_append(root, &batch));
            settle();
            plain.push(plain_append(root, &batch));
        }
        let (engine_min, plain_min) = (
            engine.iter().copied().fold(f64::MAX, f64::min),
            plain.iter().copied().fold(f64::MAX, f64::min),
        );
        let (engine_median, plain_median) = (median(&mut engine), median(&mut plain));
        println!(
            "| {label} | {engine_median:.0} ({engine_min:.0}) | {plain_median:.0} ({plain_min:.0}) | {:.2} |",
            engine_median / plain_median
        );
        crc_costs.push((label, crc_micros_per_mib(&batch)));
    }
    for (label, micros) in crc_costs {
        println!(
            "CRC-32C verification of a {label} batch (required on every append): {micros:.0} us per MiB"
        );
    }
}

/// Flushes all dirty pages (outside any timed region).
fn settle() {
    let _ = std::process::Command::new("sync").status();
}

/// Median cost of `verify_batch` on `batch`, in microseconds per MiB.
fn crc_micros_per_mib(batch: &Bytes) -> f64 {
    let mut samples: Vec<f64> = (0..REPEATS)
        .map(|_| {
            let rounds = (64 * MIB / batch.len()).max(1);
            let started = Instant::now();
            for _ in 0..rounds {
                std::hint::black_box(verify_batch(std::hint::black_box(batch)).expect("valid"));
            }
            started.elapsed().as_secs_f64() * 1e6 / (rounds * batch.len()) as f64 * MIB as f64
        })
        .collect();
    median(&mut samples)
}

/// One `Always` run with `threads` appenders: (records per fsync, records per second, p99
/// append latency in ms).
fn always_run(root: &Path, threads: usize) -> (f64, f64, f64) {
    let dir = root.join(format!("always-{threads}"));
    let storage = Storage::open(&dir).expect("open");
    storage
        .open_topic("bench", 1, config(Durability::Always))
        .expect("topic");
    let partition = storage.partition("bench", 0).expect("partition");
    let batch = batch_of(1024, 1);
    let stop = Arc::new(AtomicBool::new(false));
    let records = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let workers: Vec<_> = (0..threads)
        .map(|_| {
            let (partition, stop, records, batch) = (
                Arc::clone(&partition),
                Arc::clone(&stop),
                Arc::clone(&records),
                batch.clone(),
            );
            std::thread::spawn(move || {
                let mut latencies = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let at = Instant::now();
                    partition.append(&batch, 0).expect("append");
                    latencies.push(at.elapsed().as_secs_f64() * 1000.0);
                    records.fetch_add(1, Ordering::Relaxed);
                }
                latencies
            })
        })
        .collect();
    std::thread::sleep(ALWAYS_RUN);
    stop.store(true, Ordering::Relaxed);
    let mut latencies: Vec<f64> = workers
        .into_iter()
        .flat_map(|w| w.join().expect("worker"))
        .collect();
    let elapsed = started.elapsed();
    let records = records.load(Ordering::Relaxed) as f64;
    let fsyncs = partition.fsync_count().max(1) as f64;
    drop(storage);
    std::fs::remove_dir_all(&dir).expect("clean up");
    latencies.sort_by(f64::total_cmp);
    let p99 = latencies[(latencies.len() * 99 / 100).min(latencies.len() - 1)];
    (records / fsyncs, records / elapsed.as_secs_f64(), p99)
}

fn bench_always(root: &Path) {
    println!(
        "\n(b) Durability::Always, 1 KiB single-record batches, {:?} per run, {REPEATS} runs",
        ALWAYS_RUN
    );
    println!(
        "| appenders | records/fsync median (max) | records/s median (max) | p99 append latency ms (median of runs) |"
    );
    println!("|---|---|---|---|");
    let mut per_fsync_medians = Vec::new();
    for threads in [1, 64] {
        let (mut per_fsync, mut rate, mut p99) = (Vec::new(), Vec::new(), Vec::new());
        for _ in 0..REPEATS {
            let (f, r, p) = always_run(root, threads);
            per_fsync.push(f);
            rate.push(r);
            p99.push(p);
        }
        let (per_fsync_max, rate_max) = (
            per_fsync.iter().copied().fold(0.0, f64::max),
            rate.iter().copied().fold(0.0, f64::max),
        );
        let per_fsync_median = median(&mut per_fsync);
        per_fsync_medians.push(per_fsync_median);
        println!(
            "| {threads} | {per_fsync_median:.1} ({per_fsync_max:.1}) | {:.0} ({rate_max:.0}) | {:.2} |",
            median(&mut rate),
            median(&mut p99)
        );
    }
    println!(
        "records per fsync, 64 vs 1: {:.1}x",
        per_fsync_medians[1] / per_fsync_medians[0]
    );
}

/// Reads the whole partition with 1 MiB reads; returns MiB/s.
fn engine_read(storage: &Storage) -> f64 {
    let partition = storage.partition("bench", 0).expect("partition");
    let hwm = partition.high_watermark();
    // A reused buffer, as a network sender would keep one per connection.
    let mut buffer = vec![0u8; 2 * MIB];
    let (mut offset, mut bytes) = (partition.log_start_offset(), 0usize);
    let started = Instant::now();
    while offset < hwm {
        let result = partition.read(offset, MIB).expect("read");
        let mut filled = 0;
        for slice in &result.slices {
            slice
                .read_exact_into(&mut buffer[filled..filled + slice.len()])
                .expect("pread");
            filled += slice.len();
        }
        bytes += filled;
        // Continue after the last batch returned.
        let mut position = 0;
        while position < filled {
            let header = BatchHeader::parse(&buffer[position..filled]).expect("header");
            offset = header.last_offset() + 1;
            position += header.total_len;
        }
    }
    mib_per_s(bytes, started.elapsed())
}

/// The ceiling: plain 1 MiB `read`s of the same segment files.
fn plain_read(segments: &[std::path::PathBuf]) -> f64 {
    let mut buffer = vec![0u8; MIB];
    let mut bytes = 0;
    let started = Instant::now();
    for path in segments {
        let mut file = File::open(path).expect("segment");
        loop {
            let n = file.read(&mut buffer).expect("read");
            if n == 0 {
                break;
            }
            bytes += n;
        }
    }
    mib_per_s(bytes, started.elapsed())
}

fn bench_read(root: &Path) {
    let dir = root.join("read");
    let storage = Storage::open(&dir).expect("open");
    let mut read_config = config(Durability::Never);
    read_config.segment_bytes = 256 * MIB as u64;
    storage.open_topic("bench", 1, read_config).expect("topic");
    let partition = storage.partition("bench", 0).expect("partition");
    let batch = batch_of(16 * 1024, 8);
    for _ in 0..READ_PARTITION_BYTES / batch.len() {
        partition.append(&batch, 0).expect("append");
    }
    let mut segments: Vec<_> = std::fs::read_dir(dir.join("bench").join("0"))
        .expect("partition dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    println!(
        "\n(c) warm reads of a {} MiB partition ({} segments, 16 KiB batches), 1 MiB per read, {REPEATS} runs",
        partition.size_bytes() / MIB as u64,
        segments.len()
    );
    // Warm the page cache.
    plain_read(&segments);
    let (mut engine, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..REPEATS {
        engine.push(engine_read(&storage));
        plain.push(plain_read(&segments));
    }
    let (engine_min, plain_min) = (
        engine.iter().copied().fold(f64::MAX, f64::min),
        plain.iter().copied().fold(f64::MAX, f64::min),
    );
    let (engine_median, plain_median) = (median(&mut engine), median(&mut plain));
    println!("| reader | MiB/s median (min) |\n|---|---|");
    println!("| engine read + pread copy | {engine_median:.0} ({engine_min:.0}) |");
    println!("| plain read of the segment files | {plain_median:.0} ({plain_min:.0}) |");
    println!("ratio of medians: {:.2}", engine_median / plain_median);
    drop(storage);
    std::fs::remove_dir_all(&dir).expect("clean up");
}

/// Bytes of the compacted partition the cleaner bench builds before each pass.
const CLEAN_PARTITION_BYTES: usize = 256 * MIB;
/// Distinct keys of that partition (every key written about 16 times: most records go).
const CLEAN_KEYS: usize = 16_384;
const CLEAN_REPEATS: usize = 5;

/// One 16 KiB batch of 16 keyed 1 KiB records; every 50th record is a tombstone.
fn keyed_batch(first: usize) -> Bytes {
    let records: Vec<Record> = (first..first + 16)
        .map(|i| Record {
            key: Some(Bytes::from(format!("key-{:08}", i % CLEAN_KEYS))),
            value: (i % 50 != 49).then(|| Bytes::from(vec![(i % 251) as u8; 1000])),
            timestamp: 1_700_000_000_000 + i as i64,
            headers: Vec::new(),
        })
        .collect();
    build_batch(&records)
}

/// A fresh compacted partition of [`CLEAN_PARTITION_BYTES`] in 16 MiB segments, synced and
/// read once (warm, as the segments a cleaner takes are recent); returns its sealed segments.
fn dirty_partition(dir: &Path) -> (Storage, Vec<std::path::PathBuf>) {
    let storage = Storage::open(dir).expect("open");
    let mut clean_config = config(Durability::Never);
    clean_config.segment_bytes = 16 * MIB as u64;
    clean_config.retention_ms = -1;
    clean_config.cleanup = tributary_api::CleanupPolicy::COMPACT;
    storage.open_topic("bench", 1, clean_config).expect("topic");
    let partition = storage.partition("bench", 0).expect("partition");
    let mut first = 0;
    while (partition.size_bytes() as usize) < CLEAN_PARTITION_BYTES {
        partition.append(&keyed_batch(first), 0).expect("append");
        first += 16;
    }
    // Outside the timing: writeback of the log just written would land in the pass.
    let _ = std::process::Command::new("sync").status();
    let mut segments: Vec<_> = std::fs::read_dir(dir.join("bench").join("0"))
        .expect("partition dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    // The active (last) segment is never cleaned.
    segments.pop();
    plain_read(&segments);
    (storage, segments)
}

fn bench_clean(root: &Path) {
    println!(
        "\n(d) one cleaner pass over a {} MiB compacted partition (16 MiB segments, 1 KiB \
         records, {CLEAN_KEYS} keys, 2 % tombstones), unthrottled, {CLEAN_REPEATS} runs",
        CLEAN_PARTITION_BYTES / MIB
    );
    let limits = tributary::storage::CleanerLimits {
        bytes_per_second: 0,
        ..Default::default()
    };
    let (mut cleaner, mut plain) = (Vec::new(), Vec::new());
    for _ in 0..CLEAN_REPEATS {
        let dir = root.join("clean");
        let (storage, segments) = dirty_partition(&dir);
        plain.push(plain_read(&segments));
        let partition = storage.partition("bench", 0).expect("partition");
        let started = Instant::now();
        let report = partition.clean(i64::MAX / 2, limits).expect("clean");
        let elapsed = started.elapsed();
        assert_eq!(report.passes, 1, "the pass ran");
        assert!(
            report.records_removed > 0,
            "the pass removed superseded records"
        );
        cleaner.push(mib_per_s(report.bytes_read as usize, elapsed));
        println!(
            "  pass: {} MiB read in {elapsed:.2?}, {} segments rewritten, {} MiB removed",
            report.bytes_read >> 20,
            report.segments_rewritten,
            report.bytes_removed >> 20
        );
        drop(partition);
        drop(storage);
        std::fs::remove_dir_all(&dir).expect("clean up");
    }
    let (cleaner_min, plain_min) = (
        cleaner.iter().copied().fold(f64::MAX, f64::min),
        plain.iter().copied().fold(f64::MAX, f64::min),
    );
    let (cleaner_median, plain_median) = (median(&mut cleaner), median(&mut plain));
    println!("| work | MiB/s of log median (min) |\n|---|---|");
    println!(
        "| cleaner pass (read, key map, rewrite, fsync, swap) | {cleaner_median:.0} ({cleaner_min:.0}) |"
    );
    println!("| plain read of the same segment files | {plain_median:.0} ({plain_min:.0}) |");
    println!("ratio of medians: {:.2}", cleaner_median / plain_median);
}

fn main() {
    let only = std::env::args().skip(1).find(|a| !a.starts_with('-'));
    let temp = tempfile::tempdir_in(
        std::env::var("TRIBUTARY_BENCH_DIR")
            .unwrap_or_else(|_| std::env::temp_dir().display().to_string()),
    )
    .expect("tempdir");
    println!(
        "storage benchmarks in {} ({} cores)",
        temp.path().display(),
        std::thread::available_parallelism().map_or(0, |n| n.get())
    );
    let started = Instant::now();
    if only.as_deref().is_none_or(|f| f == "append") {
        bench_append(temp.path());
    }
    if only.as_deref().is_none_or(|f| f == "always") {
        bench_always(temp.path());
    }
    if only.as_deref().is_none_or(|f| f == "read") {
        bench_read(temp.path());
    }
    if only.as_deref().is_none_or(|f| f == "clean") {
        bench_clean(temp.path());
    }
    println!("\ntotal {:?}", started.elapsed());
}
