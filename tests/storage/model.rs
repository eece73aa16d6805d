//! Model-based test of the log engine: random appends, reads, restarts, retention, partition
//! additions and `delete_before`, each checked against an in-memory model of the log (offsets,
//! byte-identical batches apart from the base offset, segment layout, log start, high
//! watermark). Segments are tiny so rolling and index paths run constantly.

use std::path::Path;

use proptest::prelude::*;
use tributary::storage::{LogConfig, Storage};
use tributary_api::Durability;
use tributary_api::batch::verify_batch;

mod fd_budget;
mod power_loss;
// The in-memory model of a partition, shared with the cloud engine's suite (tests/cloud).
mod reference;

use reference::{ModelPartition, SEGMENT_BYTES, make_batch};

const TOPIC: &str = "model topic ü";
const MAX_PARTITIONS: u32 = 3;

fn base_config() -> LogConfig {
    LogConfig {
        segment_bytes: SEGMENT_BYTES,
        segment_ms: u64::MAX,
        retention_ms: -1,
        retention_bytes: -1,
        max_batch_bytes: 1 << 20,
        durability: Durability::Never,
        index_interval_bytes: 128,
        ..LogConfig::default()
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append {
        partition: u32,
        timestamps: Vec<i64>,
        value_len: usize,
    },
    Read {
        partition: u32,
        offset_pick: u32,
        max_bytes: usize,
    },
    Restart,
    RetainAge {
        now_ms: i64,
        retention_ms: i64,
    },
    RetainSize {
        retention_bytes: i64,
    },
    AddPartition,
    DeleteBefore {
        partition: u32,
        offset_pick: u32,
    },
    TimeLookup {
        partition: u32,
        timestamp: i64,
    },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0..MAX_PARTITIONS, prop::collection::vec(0i64..10_000, 1..5), 0usize..260)
            .prop_map(|(partition, timestamps, value_len)| Op::Append { partition, timestamps, value_len }),
        6 => (0..MAX_PARTITIONS, any::<u32>(), 1usize..3000)
            .prop_map(|(partition, offset_pick, max_bytes)| Op::Read { partition, offset_pick, max_bytes }),
        1 => Just(Op::Restart),
        1 => (0i64..12_000, 0i64..6_000).prop_map(|(now_ms, retention_ms)| Op::RetainAge { now_ms, retention_ms }),
        1 => (0i64..4_000).prop_map(|retention_bytes| Op::RetainSize { retention_bytes }),
        1 => Just(Op::AddPartition),
        1 => (0..MAX_PARTITIONS, any::<u32>()).prop_map(|(partition, offset_pick)| Op::DeleteBefore { partition, offset_pick }),
        2 => (0..MAX_PARTITIONS, -10i64..10_500).prop_map(|(partition, timestamp)| Op::TimeLookup { partition, timestamp }),
    ]
}

fn open(root: &Path, partitions: u32) -> Result<Storage, TestCaseError> {
    let storage = Storage::open(root).map_err(|e| TestCaseError::fail(e.to_string()))?;
    storage
        .open_topic(TOPIC, partitions, base_config())
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    Ok(storage)
}

fn check_partition(
    storage: &Storage,
    id: u32,
    model: &ModelPartition,
) -> Result<(), TestCaseError> {
    let partition = storage
        .partition(TOPIC, id)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(
        partition.high_watermark(),
        model.next_offset,
        "hwm of {}",
        id
    );
    prop_assert_eq!(
        partition.log_start_offset(),
        model.log_start,
        "log start of {}",
        id
    );
    prop_assert_eq!(
        partition.segment_count(),
        model.segments.len(),
        "segments of {}",
        id
    );
    prop_assert_eq!(partition.size_bytes(), model.size(), "size of {}", id);
    let expected_max = model
        .batches()
        .fold(None, |best: Option<(i64, i64)>, b| match best {
            Some((_, ts)) if ts >= b.max_timestamp() => best,
            _ => Some((b.last(), b.max_timestamp())),
        });
    prop_assert_eq!(
        partition
            .max_timestamp()
            .map_err(|e| TestCaseError::fail(e.to_string()))?,
        expected_max
    );
    Ok(())
}

fn check_read(
    storage: &Storage,
    id: u32,
    model: &ModelPartition,
    offset: i64,
    max_bytes: usize,
) -> Result<(), TestCaseError> {
    let partition = storage
        .partition(TOPIC, id)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let result = partition.read(offset, max_bytes);
    if offset < model.log_start || offset > model.next_offset {
        prop_assert!(
            result.is_err(),
            "offset {} outside [{}, {}] must fail",
            offset,
            model.log_start,
            model.next_offset
        );
        return Ok(());
    }
    let bytes = result
        .map_err(|e| TestCaseError::fail(e.to_string()))?
        .to_bytes()
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let expected = model.expected_read(offset, max_bytes);
    prop_assert_eq!(
        bytes.len(),
        expected.len(),
        "read({}, {}) length",
        offset,
        max_bytes
    );
    prop_assert!(
        bytes[..] == expected[..],
        "read({}, {}) contents differ",
        offset,
        max_bytes
    );
    if let Some(first) = model.batches().find(|b| b.last() >= offset) {
        prop_assert!(verify_batch(&bytes[..first.bytes.len()]).is_ok());
    }
    Ok(())
}

fn check_time_lookup(
    storage: &Storage,
    id: u32,
    model: &ModelPartition,
    timestamp: i64,
) -> Result<(), TestCaseError> {
    let partition = storage
        .partition(TOPIC, id)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let actual = partition
        .offset_for_timestamp(timestamp)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let expected = model.expected_time_lookup(timestamp);
    prop_assert_eq!(actual, expected, "offset_for_timestamp({})", timestamp);
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let shm = Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let root = dir.path().join("data");
    let mut models = vec![ModelPartition::new()];
    let mut storage = open(&root, 1)?;
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Append {
                partition,
                timestamps,
                value_len,
            } => {
                let id = partition % models.len() as u32;
                let bytes = make_batch(&timestamps, value_len, step);
                let info = storage
                    .partition(TOPIC, id)
                    .and_then(|p| p.append(&bytes, 0))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let max_ts = timestamps.iter().copied().max().unwrap_or(0);
                let count = timestamps.len() as i64;
                let base = models[id as usize].append(bytes, timestamps);
                prop_assert_eq!(info.base_offset, base);
                prop_assert_eq!(info.last_offset, base + count - 1);
                prop_assert_eq!(info.max_timestamp, max_ts);
            }
            Op::Read {
                partition,
                offset_pick,
                max_bytes,
            } => {
                let id = partition % models.len() as u32;
                let model = &models[id as usize];
                check_read(
                    &storage,
                    id,
                    model,
                    model.pick_offset(offset_pick),
                    max_bytes,
                )?;
            }
            Op::Restart => {
                drop(storage);
                storage = open(&root, models.len() as u32)?;
            }
            Op::RetainAge {
                now_ms,
                retention_ms,
            } => {
                let config = LogConfig {
                    retention_ms,
                    ..base_config()
                };
                storage
                    .set_config(TOPIC, config)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                storage
                    .enforce_retention(now_ms)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                storage
                    .set_config(TOPIC, base_config())
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let cutoff = now_ms - retention_ms;
                for model in &mut models {
                    model.delete_prefix(|segment, _| segment.max_timestamp() < cutoff);
                }
            }
            Op::RetainSize { retention_bytes } => {
                let config = LogConfig {
                    retention_bytes,
                    ..base_config()
                };
                storage
                    .set_config(TOPIC, config)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                storage
                    .enforce_retention(0)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                storage
                    .set_config(TOPIC, base_config())
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                for model in &mut models {
                    model.delete_prefix(|segment, total| {
                        total - segment.size() >= retention_bytes as u64
                    });
                }
            }
            Op::AddPartition => {
                if (models.len() as u32) < MAX_PARTITIONS {
                    storage
                        .add_partitions(TOPIC, models.len() as u32 + 1)
                        .map_err(|e| TestCaseError::fail(e.to_string()))?;
                    models.push(ModelPartition::new());
                }
            }
            Op::DeleteBefore {
                partition,
                offset_pick,
            } => {
                let id = partition % models.len() as u32;
                let model = &mut models[id as usize];
                let target = model.pick_offset(offset_pick) + 1;
                let start = storage
                    .partition(TOPIC, id)
                    .and_then(|p| p.delete_before(target))
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                model.delete_before(target);
                prop_assert_eq!(start, model.log_start);
            }
            Op::TimeLookup {
                partition,
                timestamp,
            } => {
                let id = partition % models.len() as u32;
                check_time_lookup(&storage, id, &models[id as usize], timestamp)?;
            }
        }
        for (id, model) in models.iter().enumerate() {
            check_partition(&storage, id as u32, model)?;
        }
    }
    // Finally every offset of every partition reads back exactly, after one more restart.
    drop(storage);
    let storage = open(&root, models.len() as u32)?;
    for (id, model) in models.iter().enumerate() {
        check_partition(&storage, id as u32, model)?;
        for offset in model.log_start..model.next_offset {
            check_read(&storage, id as u32, model, offset, 1)?;
        }
        check_read(&storage, id as u32, model, model.log_start, usize::MAX)?;
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1000, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn storage_matches_the_model(ops in prop::collection::vec(op_strategy(), 1..60)) {
        run(ops)?;
    }
}
