//! Power-loss model of the log engine on a simulated disk (`tributary::storage::SimDisk`): random
//! appends across topics and partitions, segment rolls, retention, `delete_before`, flushes,
//! clean restarts, and power losses between operations or in the middle of one (including in
//! the middle of recovery). After every power loss the engine must reopen and show, per
//! partition, a dense run of batches `[log start, high watermark)` that is byte-identical to what
//! was appended at those offsets (no hole, no corruption) and that keeps every batch the policy
//! promised:
//!
//! - `always`: every acknowledged append;
//! - `interval` and `never`: every batch written before the last completed flush (the interval
//!   flusher's tick, here `flush_all`) or clean close; only a tail after it may go.
//!
//! In every policy, what survived one power loss is durable (recovery syncs it) and the log start
//! never goes back behind a completed `delete_before`/retention, nor past an offset that had to
//! survive. Seeds are deterministic; a failure names its seed.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use tributary::storage::{LogConfig, SimDisk, Storage, StorageOptions, fs::Fs};
use tributary_api::Durability;
use tributary_api::batch::{Record, build_batch};

/// A long name (shortened on disk, so only its `topic-name` file names it) and a short one.
fn topic_names() -> [String; 2] {
    [format!("power-{}", "l".repeat(240)), "power b ü".to_owned()]
}
const PARTITIONS: u32 = 2;
const ROOT: &str = "/data";

/// xorshift64*: deterministic and dependency-free.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn config(durability: Durability, retention_bytes: i64) -> LogConfig {
    LogConfig {
        segment_bytes: 700,
        segment_ms: u64::MAX,
        retention_ms: -1,
        retention_bytes,
        max_batch_bytes: 1 << 20,
        durability,
        index_interval_bytes: 150,
        ..LogConfig::default()
    }
}

#[derive(Debug, Clone)]
struct Batch {
    base: i64,
    /// As stored: base offset already written into the first 8 bytes.
    bytes: Vec<u8>,
    count: i64,
}

/// What one partition must look like after a power loss.
#[derive(Debug, Default, Clone)]
struct Model {
    /// Every batch ever attempted at its offsets (cut back to what survived at each recovery).
    history: Vec<Batch>,
    /// Every offset below this had to survive.
    durable_end: i64,
    /// Highest log start ever set (nothing may go beyond it except with the whole log).
    max_log_start: i64,
    /// Log start that a completed operation made durable.
    durable_log_start: i64,
}

impl Model {
    fn end(&self) -> i64 {
        self.history.last().map_or(0, |b| b.base + b.count)
    }
}

struct Run {
    seed: u64,
    disk: SimDisk,
    durability: Durability,
    topics: [String; 2],
    /// Topics created so far (the second appears mid-run).
    open_topics: usize,
    models: Vec<Vec<Model>>,
    storage: Option<Storage>,
    /// Steps of this run, for the failure message.
    trail: Vec<String>,
}

fn make_batch(rng: &mut Rng, step: usize) -> Bytes {
    let count = 1 + rng.below(4) as usize;
    let value_len = rng.below(120) as usize;
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            key: Some(Bytes::from(format!("k{step}-{i}"))),
            value: Some(Bytes::from(vec![(step + i) as u8; value_len])),
            timestamp: 1_000 + step as i64,
            headers: Vec::new(),
        })
        .collect();
    build_batch(&records)
}

impl Run {
    fn new(seed: u64) -> Run {
        let durability = match seed % 3 {
            0 => Durability::Always,
            1 => Durability::Never,
            // Long enough that the flusher never fires: `flush_all` plays its ticks.
            _ => Durability::Interval(std::time::Duration::from_secs(3600)),
        };
        let disk = SimDisk::new(seed);
        disk.keep_torn_tails(seed.is_multiple_of(2));
        Run {
            seed,
            disk,
            durability,
            topics: topic_names(),
            open_topics: 1,
            models: vec![vec![Model::default(); PARTITIONS as usize]; 2],
            storage: None,
            trail: Vec::new(),
        }
    }

    fn fail(&self, what: impl std::fmt::Display) -> ! {
        let tail: Vec<&String> = self.trail.iter().rev().take(usize::MAX).rev().collect();
        let files: Vec<String> = self
            .disk
            .listing()
            .into_iter()
            .map(|line| line.replace(&"l".repeat(200), "l…"))
            .collect();
        let what = what.to_string().replace(&"l".repeat(100), "…");
        panic!(
            "seed {} ({:?}): {what:.400}\nlast steps: {tail:#?}\nfiles: {files:#?}",
            self.seed, self.durability
        );
    }

    fn storage(&self) -> &Storage {
        self.storage.as_ref().expect("storage is open")
    }

    fn open_engine(&self, fs: Arc<dyn Fs>) -> Result<Storage, String> {
        let storage = Storage::open_with(
            Path::new(ROOT),
            StorageOptions {
                fs,
                max_open_files: 3,
            },
        )
        .map_err(|e| e.to_string())?;
        for topic in &self.topics[..self.open_topics] {
            storage
                .open_topic(topic, PARTITIONS, config(self.durability, -1))
                .map_err(|e| e.to_string())?;
        }
        Ok(storage)
    }

    /// Opens the engine; a power loss during the open makes it try again. Returns whether one
    /// happened (the caller then checks what survived).
    fn open(&mut self, rng: &mut Rng, crash_during_recovery: bool) -> bool {
        if crash_during_recovery && !self.disk.crash_pending() {
            let at = rng.below(30);
            self.trail.push(format!("reopen with a crash after {at}"));
            self.disk.crash_after(at);
        }
        let mut crashed = false;
        for _ in 0..3 {
            let before = self.disk.crashes();
            match self.open_engine(self.disk.fs()) {
                Ok(storage) => {
                    if crash_during_recovery {
                        // The crash did not come during the open; do not leave it armed.
                        self.disk.disarm();
                    }
                    self.storage = Some(storage);
                    return crashed;
                }
                Err(err) if self.disk.crashes() != before => {
                    self.trail
                        .push(format!("open failed by the power loss: {err}"));
                    crashed = true;
                }
                Err(err) => self.fail(format!("recovery failed: {err}")),
            }
        }
        self.fail("recovery did not succeed");
    }

    fn partitions(&self) -> Vec<(usize, u32)> {
        (0..self.open_topics)
            .flat_map(|t| (0..PARTITIONS).map(move |p| (t, p)))
            .collect()
    }

    /// After a power loss (the engine is dead): reopen and check every partition.
    fn recover_and_check(&mut self, rng: &mut Rng) {
        drop(self.storage.take());
        let during = rng.below(4) == 0;
        self.open(rng, during);
        self.check_after_power_loss();
    }

    fn check_after_power_loss(&mut self) {
        let on_disk = self
            .storage()
            .topics_on_disk()
            .unwrap_or_else(|e| self.fail(format!("topics_on_disk: {e}")));
        for topic in &self.topics[..self.open_topics] {
            if !on_disk.contains(topic) {
                self.fail(format!(
                    "topic {:.20}... is not found on disk: {on_disk:?}",
                    topic
                ));
            }
        }
        for (t, p) in self.partitions() {
            let partition = self
                .storage()
                .partition(&self.topics[t], p)
                .unwrap_or_else(|e| self.fail(e));
            let start = partition.log_start_offset();
            let end = partition.high_watermark();
            let model = &self.models[t][p as usize];
            let whole = format!(
                "topic {t} partition {p}: recovered [{start}, {end}), must keep [.., {}), log start durable {} max {}, attempted up to {}",
                model.durable_end,
                model.durable_log_start,
                model.max_log_start,
                model.end()
            );
            if end < model.durable_end {
                self.fail(format!("lost durable records: {whole}"));
            }
            if end > model.end() {
                self.fail(format!("records that were never written: {whole}"));
            }
            if model.durable_end > model.max_log_start && start > model.max_log_start {
                self.fail(format!("lost records at the front: {whole}"));
            }
            if start < model.durable_log_start.min(end) {
                self.fail(format!("log start went back: {whole}"));
            }
            if end != 0 && !model.history.iter().any(|b| b.base + b.count == end) {
                self.fail(format!("high watermark inside a batch: {whole}"));
            }
            let expected: Vec<u8> = model
                .history
                .iter()
                .filter(|b| b.base + b.count > start && b.base < end)
                .flat_map(|b| b.bytes.iter().copied())
                .collect();
            let actual = partition
                .read(start, usize::MAX)
                .and_then(|r| r.to_bytes())
                .unwrap_or_else(|e| self.fail(format!("read after recovery: {e}: {whole}")));
            if actual[..] != expected[..] {
                self.fail(format!(
                    "recovered bytes differ ({} vs {} expected): {whole}",
                    actual.len(),
                    expected.len()
                ));
            }
            // What survived is durable now; appends go on from the recovered end.
            let model = &mut self.models[t][p as usize];
            model.history.retain(|b| b.base + b.count <= end);
            model.durable_end = end;
            model.max_log_start = start.max(model.max_log_start.min(end));
            model.durable_log_start = start;
        }
    }

    /// One random step; returns false when it failed (the disk must have lost power).
    fn step(&mut self, rng: &mut Rng, step: usize) -> bool {
        let roll = rng.below(100);
        let partitions = self.partitions();
        let (t, p) = partitions[rng.below(partitions.len() as u64) as usize];
        let topic = self.topics[t].clone();
        match roll {
            0..=64 => {
                let bytes = make_batch(rng, step);
                let model = &mut self.models[t][p as usize];
                let base = model.end();
                let mut stored = bytes.to_vec();
                stored[..8].copy_from_slice(&base.to_be_bytes());
                let count = i64::from(
                    tributary_api::batch::verify_batch(&bytes)
                        .map_or(1, |h| h.last_offset_delta + 1),
                );
                model.history.push(Batch {
                    base,
                    bytes: stored,
                    count,
                });
                self.trail
                    .push(format!("append {t}/{p} at {base} x{count}"));
                let result = self
                    .storage()
                    .partition(&topic, p)
                    .and_then(|partition| partition.append(&bytes, 0));
                match result {
                    Ok(info) => {
                        if info.base_offset != base {
                            self.fail(format!("append landed at {} not {base}", info.base_offset));
                        }
                        if self.durability == Durability::Always {
                            self.models[t][p as usize].durable_end = base + count;
                        }
                        true
                    }
                    Err(err) => {
                        self.trail.push(format!("  failed: {err}"));
                        false
                    }
                }
            }
            65..=72 => {
                self.trail.push("flush_all".into());
                match self.storage().flush_all() {
                    Ok(()) => {
                        for topic_models in &mut self.models {
                            for model in topic_models.iter_mut() {
                                model.durable_end = model.end();
                            }
                        }
                        true
                    }
                    Err(err) => {
                        self.trail.push(format!("  failed: {err}"));
                        false
                    }
                }
            }
            73..=78 => {
                let partition = match self.storage().partition(&topic, p) {
                    Ok(partition) => partition,
                    Err(err) => self.fail(err),
                };
                let (start, end) = (partition.log_start_offset(), partition.high_watermark());
                let target = start + rng.below((end - start + 1) as u64) as i64;
                self.trail.push(format!("delete_before {t}/{p} {target}"));
                let model = &mut self.models[t][p as usize];
                model.max_log_start = model.max_log_start.max(target);
                match partition.delete_before(target) {
                    Ok(new_start) => {
                        model.durable_log_start = model.durable_log_start.max(new_start);
                        true
                    }
                    Err(err) => {
                        self.trail.push(format!("  failed: {err}"));
                        false
                    }
                }
            }
            79..=83 => {
                let limit = rng.below(2_000) as i64;
                self.trail.push(format!("retention {t} to {limit} bytes"));
                let storage = self.storage();
                let result = storage
                    .set_config(&topic, config(self.durability, limit))
                    .and_then(|()| storage.enforce_retention(0))
                    .and_then(|_| storage.set_config(&topic, config(self.durability, -1)));
                let starts: Vec<i64> = (0..PARTITIONS)
                    .map(|p| {
                        storage
                            .partition(&topic, p)
                            .map_or(0, |partition| partition.log_start_offset())
                    })
                    .collect();
                for (p, start) in starts.into_iter().enumerate() {
                    let model = &mut self.models[t][p];
                    model.max_log_start = model.max_log_start.max(start);
                    if result.is_ok() {
                        model.durable_log_start = model.durable_log_start.max(start);
                    }
                }
                if let Err(err) = result {
                    self.trail.push(format!("  failed: {err}"));
                    return false;
                }
                true
            }
            84..=86 => {
                self.trail.push("clean restart".into());
                let storage = self.storage.take().expect("open");
                match storage.close() {
                    Ok(()) => {
                        for topic_models in &mut self.models {
                            for model in topic_models.iter_mut() {
                                model.durable_end = model.end();
                            }
                        }
                        drop(storage);
                        if self.open(rng, false) {
                            self.check_after_power_loss();
                        }
                        true
                    }
                    Err(err) => {
                        self.trail.push(format!("  failed: {err}"));
                        self.storage = Some(storage);
                        false
                    }
                }
            }
            87..=91 => {
                self.trail.push("power loss".into());
                self.disk.crash();
                false
            }
            92..=97 => {
                if !self.disk.crash_pending() {
                    let at = rng.below(40);
                    self.trail.push(format!("arm a crash after {at} mutations"));
                    self.disk.crash_after(at);
                }
                true
            }
            _ => {
                if self.open_topics < self.topics.len() {
                    let name = self.topics[self.open_topics].clone();
                    self.trail.push("create the second topic".into());
                    self.open_topics += 1;
                    if let Err(err) =
                        self.storage()
                            .open_topic(&name, PARTITIONS, config(self.durability, -1))
                    {
                        self.trail.push(format!("  failed: {err}"));
                        return false;
                    }
                }
                true
            }
        }
    }
}

/// Runs one seed of `steps` steps; panics with the seed and the last steps on a violation.
pub(crate) fn run_seed(seed: u64, steps: usize) {
    let mut rng = Rng::new(seed);
    let mut run = Run::new(seed);
    run.open(&mut rng, false);
    for step in 0..steps {
        let before = run.disk.crashes();
        if !run.step(&mut rng, step) {
            if run.disk.crashes() == before {
                let last = run.trail.last().cloned().unwrap_or_default();
                run.fail(format!("an operation failed without a power loss: {last}"));
            }
            run.recover_and_check(&mut rng);
        }
    }
    // A final power loss checks what the last steps left.
    run.disk.crash();
    run.recover_and_check(&mut rng);
    drop(run.storage.take());
}

/// Runs every seed of `range` (or of `POWER_LOSS_SEEDS=a..b` when set) and fails naming each
/// failing seed and its first line.
pub(crate) fn seeds(range: std::ops::Range<u64>, steps: usize) {
    let range = std::env::var("POWER_LOSS_SEEDS")
        .ok()
        .and_then(|v| {
            let (a, b) = v.split_once("..")?;
            Some(a.parse().ok()?..b.parse().ok()?)
        })
        .unwrap_or(range);
    let mut failures = Vec::new();
    for seed in range {
        let result = std::panic::catch_unwind(|| run_seed(seed, steps));
        if let Err(panic) = result {
            let message = panic.downcast_ref::<String>().cloned().unwrap_or_default();
            failures.push(message.lines().next().unwrap_or_default().to_owned());
        }
    }
    assert!(
        failures.is_empty(),
        "{} failing seeds:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn power_loss_model_fast() {
    seeds(0..300, 150);
}

/// The long run: `cargo test --test storage -- --ignored power_loss_model_long`.
#[test]
#[ignore = "long run; .ci/run runs it explicitly"]
fn power_loss_model_long() {
    seeds(0..3_000, 300);
}
