//! The descriptor budget: the engine serves 10,000 partitions over several topics under a soft
//! RLIMIT_NOFILE of 1,024, appending to and reading from every one, before and after a restart,
//! while the process's open descriptors (`/proc/self/fd`) stay within the budget.
//!
//! The check runs in a child process (this test binary re-run with one test selected), so the
//! lowered limit and the descriptor count concern nothing else.

use std::path::Path;
use std::process::Command;

use tributary::storage::{LogConfig, Storage, StorageOptions, default_max_open_files};
use tributary_api::Durability;
use tributary_api::batch::{Record, build_batch};

const SOFT_LIMIT: u64 = 1024;
const TOPICS: u32 = 8;
const PARTITIONS_PER_TOPIC: u32 = 1250;
/// Descriptors the process may hold besides segment logs: stdio, the lock file, the test
/// harness, transient directory handles.
const SLACK: usize = 32;
const CHILD: &str = "ten_thousand_partitions_child";

fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |dir| dir.count())
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 10,
        segment_ms: u64::MAX,
        retention_ms: -1,
        retention_bytes: -1,
        max_batch_bytes: 1 << 20,
        durability: Durability::Never,
        index_interval_bytes: 4096,
        ..LogConfig::default()
    }
}

fn batch(topic: u32, partition: u32) -> bytes::Bytes {
    build_batch(&[Record {
        key: Some(bytes::Bytes::from(format!("{topic}-{partition}"))),
        value: Some(bytes::Bytes::from(vec![partition as u8; 100])),
        timestamp: 1_000,
        headers: Vec::new(),
    }])
}

/// Appends to (round `round`) and reads back from every partition; returns the most
/// descriptors seen open.
fn append_and_read_all(storage: &Storage, round: i64, budget: usize) -> usize {
    let mut most = 0;
    for topic in 0..TOPICS {
        let name = format!("fd-topic-{topic}");
        for id in 0..PARTITIONS_PER_TOPIC {
            let partition = storage.partition(&name, id).expect("partition");
            let bytes = batch(topic, id);
            let info = partition.append(&bytes, 0).expect("append");
            assert_eq!(info.base_offset, round, "{name}/{id}");
            let read = partition.read(0, usize::MAX).expect("read");
            let data = read.to_bytes().expect("read bytes");
            assert_eq!(
                data.len(),
                bytes.len() * (round as usize + 1),
                "{name}/{id}"
            );
            drop(read);
            if id % 250 == 0 {
                most = most.max(open_descriptors());
                assert!(
                    storage.open_log_files() <= budget,
                    "{} log files open, budget {budget}",
                    storage.open_log_files()
                );
            }
        }
    }
    most
}

fn open_all(root: &Path, budget: usize) -> Storage {
    let storage = Storage::open_with(
        root,
        StorageOptions {
            max_open_files: budget,
            ..StorageOptions::default()
        },
    )
    .expect("open storage");
    for topic in 0..TOPICS {
        storage
            .open_topic(&format!("fd-topic-{topic}"), PARTITIONS_PER_TOPIC, config())
            .expect("open topic");
    }
    storage
}

#[test]
fn ten_thousand_partitions_fit_the_descriptor_budget() {
    let exe = std::env::current_exe().expect("test binary");
    let output = Command::new(exe)
        .args([
            &crate::broker::harness_test_name(module_path!(), CHILD),
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .output()
        .expect("run the child");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "child failed:\n{stdout}\n{stderr}"
    );
    println!(
        "{}",
        stdout
            .lines()
            .filter(|l| l.contains("descriptors"))
            .collect::<Vec<_>>()
            .join("\n")
    );
}

/// Run by [`ten_thousand_partitions_fit_the_descriptor_budget`] in its own process.
#[test]
#[ignore = "runs in a child process of ten_thousand_partitions_fit_the_descriptor_budget"]
fn ten_thousand_partitions_child() {
    let limit = rustix::process::Rlimit {
        current: Some(SOFT_LIMIT),
        maximum: rustix::process::getrlimit(rustix::process::Resource::Nofile).maximum,
    };
    rustix::process::setrlimit(rustix::process::Resource::Nofile, limit).expect("setrlimit");
    // The default budget is derived from the limit in force at start.
    let budget = std::env::var("FD_BUDGET_OVERRIDE")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(default_max_open_files);
    if std::env::var("FD_BUDGET_OVERRIDE").is_err() {
        assert_eq!(budget, (SOFT_LIMIT / 2) as usize);
    }
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("tempdir");
    let root = dir.path().join("logs");
    let storage = open_all(&root, budget);
    let first = append_and_read_all(&storage, 0, budget);
    storage.close().expect("close");
    drop(storage);
    // Recovery of every partition and a second round, within the same budget.
    let storage = open_all(&root, budget);
    let second = append_and_read_all(&storage, 1, budget);
    let most = first.max(second).max(open_descriptors());
    println!(
        "descriptors: at most {most} open for {} partitions (budget {budget}, soft limit {SOFT_LIMIT})",
        TOPICS * PARTITIONS_PER_TOPIC
    );
    assert!(
        most <= budget + SLACK,
        "{most} descriptors open, budget {budget}"
    );
    storage.close().expect("close");
}
