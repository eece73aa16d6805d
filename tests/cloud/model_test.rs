//! The storage model (tests/storage/model/reference.rs, shared with the local engine's suite)
//! against the cloud engine: random appends across partitions, reads with random limits,
//! restarts (a new engine on the same database), added partitions, DeleteRecords and timestamp
//! lookups, each checked against the model; at the end every offset reads back exactly.
//! Segments and retention are local-engine notions and are not exercised here.

use std::sync::Arc;

use proptest::prelude::*;
use tributary::cloud::CloudEngine;
use tributary_api::batch::verify_batch;
use tributary_api::{LogService, OffsetQuery, TopicAdmin, TopicPartition, TopicSettings};

use crate::engine::open;
use crate::model::{ModelPartition, make_batch};
use crate::services::{fresh_database, unique};

const MAX_PARTITIONS: u32 = 3;
/// Short, so each append's flush comes quickly.
const FLUSH_MS: u64 = 2;

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
        1 => Just(Op::AddPartition),
        1 => (0..MAX_PARTITIONS, any::<u32>()).prop_map(|(partition, offset_pick)| Op::DeleteBefore { partition, offset_pick }),
        2 => (0..MAX_PARTITIONS, -10i64..10_500).prop_map(|(partition, timestamp)| Op::TimeLookup { partition, timestamp }),
    ]
}

fn fail(error: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(error.to_string())
}

async fn check_offsets(
    engine: &CloudEngine,
    topic: &str,
    models: &[ModelPartition],
) -> Result<(), TestCaseError> {
    let log = engine.log();
    for (id, model) in models.iter().enumerate() {
        let tp = TopicPartition::new(topic, id as u32);
        let offsets = log.offsets(&tp).map_err(fail)?;
        prop_assert_eq!(offsets.high_watermark, model.next_offset, "hwm of {}", id);
        prop_assert_eq!(offsets.log_start, model.log_start, "log start of {}", id);
        // Only batches at or after the log start are still stored.
        let expected_max = model
            .batches()
            .filter(|b| b.last() >= model.log_start)
            .fold(None, |best: Option<(i64, i64)>, b| match best {
                Some((_, ts)) if ts >= b.max_timestamp() => best,
                _ => Some((b.last(), b.max_timestamp())),
            });
        let actual = log
            .find_offset(&tp, OffsetQuery::MaxTimestamp)
            .await
            .map_err(fail)?
            .map(|found| (found.offset, found.timestamp));
        prop_assert_eq!(actual, expected_max, "max timestamp of {}", id);
    }
    Ok(())
}

async fn check_read(
    engine: &CloudEngine,
    tp: &TopicPartition,
    model: &ModelPartition,
    offset: i64,
    max_bytes: usize,
) -> Result<(), TestCaseError> {
    let result = engine.log().read(tp, offset, max_bytes).await;
    if offset < model.log_start || offset > model.next_offset {
        prop_assert!(
            result.is_err(),
            "offset {} outside the log must fail",
            offset
        );
        return Ok(());
    }
    let bytes = result.map_err(fail)?.data;
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

async fn run(database: &str, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let topic = unique("model");
    let mut engine: Arc<CloudEngine> = open(database, FLUSH_MS).await;
    engine
        .log()
        .create_topic(&topic, 1, TopicSettings::default())
        .await
        .map_err(fail)?;
    let mut models = vec![ModelPartition::new()];
    for (step, op) in ops.into_iter().enumerate() {
        match op {
            Op::Append {
                partition,
                timestamps,
                value_len,
            } => {
                let id = partition % models.len() as u32;
                let tp = TopicPartition::new(topic.clone(), id);
                let bytes = make_batch(&timestamps, value_len, step);
                let outcome = engine
                    .log()
                    .append(&tp, bytes.clone())
                    .await
                    .map_err(fail)?;
                let count = timestamps.len() as i64;
                let base = models[id as usize].append(bytes, timestamps);
                prop_assert_eq!(outcome.base_offset, base);
                prop_assert_eq!(outcome.last_offset, base + count - 1);
            }
            Op::Read {
                partition,
                offset_pick,
                max_bytes,
            } => {
                let id = partition % models.len() as u32;
                let model = &models[id as usize];
                let tp = TopicPartition::new(topic.clone(), id);
                check_read(
                    &engine,
                    &tp,
                    model,
                    model.pick_offset(offset_pick),
                    max_bytes,
                )
                .await?;
            }
            Op::Restart => {
                engine.close().await;
                engine = open(database, FLUSH_MS).await;
            }
            Op::AddPartition => {
                if (models.len() as u32) < MAX_PARTITIONS {
                    engine
                        .log()
                        .create_partitions(&topic, models.len() as u32 + 1)
                        .await
                        .map_err(fail)?;
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
                let tp = TopicPartition::new(topic.clone(), id);
                let start = engine
                    .log()
                    .delete_records(&tp, target)
                    .await
                    .map_err(fail)?;
                model.delete_before(target);
                prop_assert_eq!(start, model.log_start);
            }
            Op::TimeLookup {
                partition,
                timestamp,
            } => {
                let id = partition % models.len() as u32;
                let tp = TopicPartition::new(topic.clone(), id);
                let actual = engine
                    .log()
                    .find_offset(&tp, OffsetQuery::AtOrAfter(timestamp))
                    .await
                    .map_err(fail)?
                    .map(|found| (found.offset, found.timestamp));
                let expected = models[id as usize].expected_time_lookup(timestamp);
                prop_assert_eq!(actual, expected, "offset for time {}", timestamp);
            }
        }
        check_offsets(&engine, &topic, &models).await?;
    }
    // Finally every offset of every partition reads back exactly, after one more restart.
    engine.close().await;
    let engine = open(database, FLUSH_MS).await;
    check_offsets(&engine, &topic, &models).await?;
    for (id, model) in models.iter().enumerate() {
        let tp = TopicPartition::new(topic.clone(), id as u32);
        for offset in model.log_start..model.next_offset {
            check_read(&engine, &tp, model, offset, 1).await?;
        }
        check_read(&engine, &tp, model, model.log_start, usize::MAX).await?;
    }
    engine.close().await;
    Ok(())
}

#[test]
fn cloud_engine_matches_the_storage_model() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let database = runtime.block_on(fresh_database("model"));
    let config = ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(ops in prop::collection::vec(op_strategy(), 1..40))| {
        runtime.block_on(run(&database, ops))?;
    });
}
