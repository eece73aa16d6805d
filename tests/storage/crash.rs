//! Crash tests of the log engine with real processes and real fsyncs.
//!
//! `sigkill_rounds_lose_no_acknowledged_record` re-executes this test binary as a child (selected
//! by an environment variable and an `--exact` filter). The child appends under
//! `Durability::Always` from several threads and prints `ACK <offset> <seed>` for every
//! acknowledged batch, flushing each line; the parent SIGKILLs it at a random moment, twenty
//! times over the same data directory, and after each crash checks that every acknowledged batch
//! reads back byte-identical, every batch's CRC verifies and offsets are dense. The other tests
//! damage segment files by hand: a torn tail must be truncated, interior damage must refuse to
//! open with an error naming the file and byte position. `idempotent_producer` SIGKILLs the real
//! broker under an idempotent librdkafka producer and checks every record is stored exactly once.

mod idempotent_producer;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tributary::storage::{LogConfig, Storage, StorageError};
use tributary_api::Durability;
use tributary_api::batch::{BatchHeader, Record, build_batch, verify_batch};

const CHILD_DIR_ENV: &str = "TRIBUTARY_CRASH_CHILD_DIR";
const CHILD_ROUND_ENV: &str = "TRIBUTARY_CRASH_CHILD_ROUND";
const TOPIC: &str = "crash";
const ROUNDS: u64 = 20;
const CHILD_THREADS: u64 = 4;
/// Seeds of the batches the parent appends between rounds (children use smaller ones).
const PARENT_SEED_BASE: u64 = 9_000_000_000;

fn config(durability: Durability) -> LogConfig {
    LogConfig {
        segment_bytes: 64 * 1024,
        index_interval_bytes: 512,
        durability,
        ..LogConfig::default()
    }
}

/// The batch a seed stands for: 1-5 records with seed-derived keys, values and timestamps.
fn seeded_batch(seed: u64) -> Bytes {
    let records: Vec<Record> = (0..1 + seed % 5)
        .map(|i| Record {
            key: Some(Bytes::from(format!("seed-{seed}-{i}"))),
            value: Some(Bytes::from(
                (0..(seed * 37 + i * 11) % 1500)
                    .map(|b| (b ^ seed) as u8)
                    .collect::<Vec<u8>>(),
            )),
            timestamp: 1_700_000_000_000 + seed as i64,
            headers: Vec::new(),
        })
        .collect();
    build_batch(&records)
}

/// Child mode: append forever, acknowledging each durable batch on stdout.
fn run_child(dir: &Path, round: u64) -> ! {
    let storage = Storage::open(dir).expect("child opens storage");
    storage
        .open_topic(TOPIC, 1, config(Durability::Always))
        .expect("child recovers topic");
    let partition = storage.partition(TOPIC, 0).expect("partition");
    let stdout = Arc::new(Mutex::new(std::io::stdout()));
    {
        let mut out = stdout.lock().expect("stdout");
        // The leading newline ends the harness's own "test ... " line.
        writeln!(out, "\nSTART {}", partition.high_watermark()).expect("write");
        out.flush().expect("flush");
    }
    let workers: Vec<_> = (0..CHILD_THREADS)
        .map(|thread| {
            let partition = Arc::clone(&partition);
            let stdout = Arc::clone(&stdout);
            std::thread::spawn(move || {
                for i in 0.. {
                    let seed = round * 10_000_000 + thread * 1_000_000 + i;
                    let info = partition.append(&seeded_batch(seed), 0).expect("append");
                    let mut out = stdout.lock().expect("stdout");
                    writeln!(out, "ACK {} {}", info.base_offset, seed).expect("write");
                    out.flush().expect("flush");
                }
            })
        })
        .collect();
    for worker in workers {
        let _ = worker.join();
    }
    std::process::exit(0)
}

/// A small xorshift generator seeded from the clock: random kill moments, no extra crates.
struct Random(u64);

impl Random {
    fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64);
        Self(nanos | 1)
    }

    fn below(&mut self, limit: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % limit
    }
}

/// Reads the whole partition and checks CRCs and dense offsets; returns (base offset, bytes)
/// of every batch.
fn read_all_batches(storage: &Storage) -> Vec<(i64, Vec<u8>)> {
    let partition = storage.partition(TOPIC, 0).expect("partition");
    let start = partition.log_start_offset();
    let bytes = partition
        .read(start, usize::MAX)
        .expect("read all")
        .to_bytes()
        .expect("bytes");
    let mut batches = Vec::new();
    let mut position = 0;
    let mut expected_offset = start;
    while position < bytes.len() {
        let header = BatchHeader::parse(&bytes[position..]).expect("header");
        let batch = &bytes[position..position + header.total_len];
        verify_batch(batch).expect("every stored batch verifies");
        assert_eq!(header.base_offset, expected_offset, "offsets are dense");
        expected_offset = header.last_offset() + 1;
        batches.push((header.base_offset, batch.to_vec()));
        position += header.total_len;
    }
    assert_eq!(expected_offset, partition.high_watermark());
    batches
}

fn same_batch(stored: &[u8], appended: &[u8], base_offset: i64) -> bool {
    stored.len() == appended.len()
        && stored[..8] == base_offset.to_be_bytes()
        && stored[8..] == appended[8..]
}

#[test]
fn sigkill_rounds_lose_no_acknowledged_record() {
    if let Ok(dir) = std::env::var(CHILD_DIR_ENV) {
        let round = std::env::var(CHILD_ROUND_ENV)
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(0);
        run_child(Path::new(&dir), round);
    }
    let started = Instant::now();
    let temp = tempfile::tempdir().expect("tempdir");
    let dir: PathBuf = temp.path().join("data");
    let exe = std::env::current_exe().expect("test binary");
    let mut random = Random::new();
    // (offset, seed) of every acknowledged batch over all rounds.
    let mut acknowledged: Vec<(i64, u64)> = Vec::new();
    let mut recovered_hwm = 0;
    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args([
                "--exact",
                &crate::broker::harness_test_name(
                    module_path!(),
                    "sigkill_rounds_lose_no_acknowledged_record",
                ),
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD_DIR_ENV, &dir)
            .env(CHILD_ROUND_ENV, round.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::<String>::new()));
        let sink = Arc::clone(&lines);
        let reader = std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 0 {
                // A line cut by the kill has no newline and was never acknowledged.
                if line.ends_with('\n') {
                    sink.lock().expect("lines").push(line.trim_end().to_owned());
                }
                line.clear();
            }
        });
        // Let the child recover and append for a random while, then kill it mid-flight.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !lines
            .lock()
            .expect("lines")
            .iter()
            .any(|l| l.starts_with("START"))
        {
            assert!(Instant::now() < deadline, "child did not start");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(Duration::from_millis(20 + random.below(200)));
        child.kill().expect("SIGKILL");
        child.wait().expect("reap child");
        reader.join().expect("reader");
        let lines = lines.lock().expect("lines").clone();
        let mut acked_this_round = 0;
        for line in &lines {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["START", hwm] => {
                    let hwm: i64 = hwm.parse().expect("hwm");
                    // Recovery never loses acknowledged data and never invents offsets.
                    let acked_end = acknowledged
                        .iter()
                        .map(|(o, s)| o + 1 + (s % 5) as i64)
                        .max()
                        .unwrap_or(0);
                    assert!(
                        hwm >= acked_end,
                        "round {round}: hwm {hwm} < acknowledged end {acked_end}"
                    );
                    assert!(hwm >= recovered_hwm);
                }
                ["ACK", offset, seed] => {
                    acknowledged
                        .push((offset.parse().expect("offset"), seed.parse().expect("seed")));
                    acked_this_round += 1;
                }
                _ => {}
            }
        }
        assert!(
            acked_this_round > 0,
            "round {round}: child acknowledged nothing"
        );
        // Reopen in the parent on even rounds (odd rounds leave the crash for the next child).
        if round % 2 == 0 || round + 1 == ROUNDS {
            let storage = Storage::open(&dir).expect("parent opens storage");
            storage
                .open_topic(TOPIC, 1, config(Durability::Always))
                .expect("recovery after SIGKILL");
            let batches = read_all_batches(&storage);
            let by_offset: std::collections::HashMap<i64, &Vec<u8>> =
                batches.iter().map(|(o, b)| (*o, b)).collect();
            for (offset, seed) in &acknowledged {
                let stored = by_offset.get(offset).unwrap_or_else(|| {
                    panic!("acknowledged batch at {offset} (seed {seed}) is missing")
                });
                assert!(
                    same_batch(stored, &seeded_batch(*seed), *offset),
                    "batch at {offset} differs"
                );
            }
            let partition = storage.partition(TOPIC, 0).expect("partition");
            recovered_hwm = partition.high_watermark();
            let info = partition
                .append(&seeded_batch(PARENT_SEED_BASE + round), 0)
                .expect("append after recovery");
            assert_eq!(
                info.base_offset, recovered_hwm,
                "offsets continue from the recovered high watermark"
            );
            acknowledged.push((info.base_offset, PARENT_SEED_BASE + round));
            storage.close().expect("close");
        }
    }
    let distinct: std::collections::HashSet<i64> = acknowledged.iter().map(|(o, _)| *o).collect();
    assert_eq!(
        distinct.len(),
        acknowledged.len(),
        "no offset acknowledged twice"
    );
    eprintln!(
        "{ROUNDS} SIGKILL rounds, {} acknowledged batches verified in {:?}",
        acknowledged.len(),
        started.elapsed()
    );
}

/// Reopens `dir` after this process closed it. Other tests of this binary spawn child processes
/// at the same time, and a child holds every descriptor of the parent between its fork and its
/// exec (close-on-exec closes them only at the exec), the storage lock's included: a reopen in
/// that window finds the directory locked, so it is retried for a moment.
fn reopen(dir: &Path) -> Storage {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match Storage::open(dir) {
            Err(StorageError::Locked { .. }) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            opened => return opened.expect("open"),
        }
    }
}

/// Appends `count` seeded batches under `Never` and closes cleanly; returns the batches.
fn write_clean_log(dir: &Path, count: u64) -> Vec<Bytes> {
    let storage = Storage::open(dir).expect("open");
    storage
        .open_topic(TOPIC, 1, config(Durability::Never))
        .expect("topic");
    let partition = storage.partition(TOPIC, 0).expect("partition");
    let batches: Vec<Bytes> = (0..count).map(seeded_batch).collect();
    for batch in &batches {
        partition.append(batch, 0).expect("append");
    }
    storage.close().expect("close");
    batches
}

fn active_segment(dir: &Path) -> PathBuf {
    let partition_dir = dir.join(TOPIC).join("0");
    let mut logs: Vec<PathBuf> = std::fs::read_dir(&partition_dir)
        .expect("partition dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    logs.sort();
    logs.pop().expect("a segment")
}

fn append_raw(path: &Path, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(path)
        .expect("segment");
    file.write_all(bytes).expect("write");
}

#[test]
fn torn_tails_are_truncated_and_appending_continues() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("data");
    let batches = write_clean_log(&dir, 10);
    let total: i64 = (0..10).map(|s| 1 + (s % 5) as i64).sum();
    let segment = active_segment(&dir);
    let garbage: Vec<(&str, Vec<u8>)> = vec![
        ("half a batch", seeded_batch(99)[..200].to_vec()),
        ("zeros", vec![0u8; 5000]),
        (
            "a header whose length runs past the end",
            seeded_batch(98)[..61].to_vec(),
        ),
        (
            "random bytes",
            (0..777u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
    ];
    let mut expected_hwm = total;
    for (what, bytes) in garbage {
        let before = std::fs::metadata(&segment).expect("meta").len();
        append_raw(&segment, &bytes);
        let storage = reopen(&dir);
        let report = storage
            .open_topic(TOPIC, 1, config(Durability::Never))
            .unwrap_or_else(|e| panic!("{what}: open failed: {e}"));
        assert_eq!(report.truncated_bytes, bytes.len() as u64, "{what}");
        assert_eq!(
            std::fs::metadata(&segment).expect("meta").len(),
            before,
            "{what}"
        );
        let partition = storage.partition(TOPIC, 0).expect("partition");
        assert_eq!(partition.high_watermark(), expected_hwm, "{what}");
        let info = partition
            .append(&batches[0], 0)
            .expect("append after truncation");
        assert_eq!(info.base_offset, expected_hwm, "{what}");
        expected_hwm = info.last_offset + 1;
        read_all_batches(&storage);
        storage.close().expect("close");
    }
}

#[test]
fn interior_corruption_refuses_to_open_naming_file_and_position() {
    let temp = tempfile::tempdir().expect("tempdir");
    let dir = temp.path().join("data");
    let batches = write_clean_log(&dir, 12);
    let segment = active_segment(&dir);
    // Find the positions of the batches in the active segment by walking its headers.
    let contents = std::fs::read(&segment).expect("segment");
    let mut positions = Vec::new();
    let mut position = 0;
    while position < contents.len() {
        positions.push(position);
        position += BatchHeader::parse(&contents[position..])
            .expect("header")
            .total_len;
    }
    assert!(positions.len() >= 3, "need batches after the damaged one");
    let damaged = positions[positions.len() - 3];
    let mut corrupt = contents.clone();
    corrupt[damaged + 70] ^= 0x5a;
    std::fs::write(&segment, &corrupt).expect("write damage");
    let storage = reopen(&dir);
    let err = storage
        .open_topic(TOPIC, 1, config(Durability::Never))
        .expect_err("interior corruption must refuse to open");
    assert!(
        matches!(&err, StorageError::Corrupt { file, position, .. } if file == &segment && *position == damaged as u64),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains(&segment.display().to_string()),
        "{message}"
    );
    assert!(
        message.contains(&format!("byte position {damaged}")),
        "{message}"
    );
    drop(storage);
    // Repairing the byte makes the log open again with nothing lost.
    std::fs::write(&segment, &contents).expect("repair");
    let storage = reopen(&dir);
    storage
        .open_topic(TOPIC, 1, config(Durability::Never))
        .expect("repaired log opens");
    assert_eq!(read_all_batches(&storage).len(), batches.len());
}
