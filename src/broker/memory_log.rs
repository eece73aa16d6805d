//! A `LogService` with no storage behind it: the ceiling that `benches/kafka.rs` measures the
//! real engine against. A frontend over it runs the same code as over [`super::topics::Topics`];
//! only the disk work (pwrite, fsync, index upkeep, pread, the storage CRC check) is gone.
//!
//! Two modes:
//! - [`MemoryLogMode::Discard`]: an append assigns offsets and drops the bytes, as if retention
//!   deleted every batch at once. The log start follows the high watermark, so a read below it
//!   is `OffsetOutOfRange`, the way a trimmed log answers.
//! - [`MemoryLogMode::Retain`]: batches are kept in memory (a `Vec` per partition, offsets
//!   rewritten as the real log does) and served by offset with the real log's rules: whole
//!   batches from the one containing the offset, at least one, then as many as fit `max_bytes`.
//!
//! Invariants: offsets are dense and increasing per partition; an append is "durable" at once
//! (there is nothing to sync); a partition springs into being on first use, because topic
//! existence is checked by the `TopicAdmin` the frontend asks first. CRCs are not re-checked:
//! the Kafka frontend verifies every batch before it appends.
//!
//! Not for production: nothing survives the process, and memory grows without bound in `Retain`.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use event_listener::Event;
use parking_lot::{Mutex, RwLock};
use tributary_api::batch::{BatchHeader, set_base_offset};
use tributary_api::{
    AppendOutcome, EngineError, EngineResult, LogService, OffsetQuery, PartitionOffsets,
    ReadBatches, TimestampOffset, TopicPartition,
};

use super::topics::now_ms;

/// What [`MemoryLog`] does with appended bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryLogMode {
    /// Assign offsets, drop the bytes.
    Discard,
    /// Keep the batches in memory and serve reads from them.
    Retain,
}

/// A stored batch and the offsets it covers.
#[derive(Debug)]
struct HeldBatch {
    last_offset: i64,
    max_timestamp: i64,
    bytes: Bytes,
}

#[derive(Debug, Default)]
struct PartitionState {
    log_start: i64,
    high_watermark: i64,
    /// Ordered by offset; empty in `Discard` mode.
    batches: Vec<HeldBatch>,
}

#[derive(Debug, Default)]
struct MemoryPartition {
    state: Mutex<PartitionState>,
    appended: Event,
}

impl MemoryPartition {
    fn offsets(&self) -> PartitionOffsets {
        let state = self.state.lock();
        PartitionOffsets {
            log_start: state.log_start,
            high_watermark: state.high_watermark,
        }
    }
}

/// The in-memory log; see the module documentation.
#[derive(Debug)]
pub struct MemoryLog {
    mode: MemoryLogMode,
    partitions: RwLock<HashMap<TopicPartition, Arc<MemoryPartition>>>,
}

impl MemoryLog {
    pub fn new(mode: MemoryLogMode) -> Self {
        Self {
            mode,
            partitions: RwLock::new(HashMap::new()),
        }
    }

    fn partition(&self, tp: &TopicPartition) -> Arc<MemoryPartition> {
        if let Some(found) = self.partitions.read().get(tp) {
            return Arc::clone(found);
        }
        Arc::clone(self.partitions.write().entry(tp.clone()).or_default())
    }
}

#[async_trait]
impl LogService for MemoryLog {
    async fn append(&self, tp: &TopicPartition, batch: Bytes) -> EngineResult<AppendOutcome> {
        let header = BatchHeader::parse(&batch)?;
        let partition = self.partition(tp);
        let outcome = {
            let mut state = partition.state.lock();
            let base_offset = state.high_watermark;
            let last_offset = base_offset + i64::from(header.last_offset_delta);
            state.high_watermark = last_offset + 1;
            match self.mode {
                MemoryLogMode::Discard => state.log_start = state.high_watermark,
                MemoryLogMode::Retain => {
                    let mut owned = BytesMut::from(batch.as_ref());
                    set_base_offset(&mut owned, base_offset);
                    state.batches.push(HeldBatch {
                        last_offset,
                        max_timestamp: header.max_timestamp,
                        bytes: owned.freeze(),
                    });
                }
            }
            AppendOutcome {
                base_offset,
                last_offset,
                log_append_time: now_ms(),
                log_start: state.log_start,
            }
        };
        partition.appended.notify(usize::MAX);
        Ok(outcome)
    }

    async fn read(
        &self,
        tp: &TopicPartition,
        offset: i64,
        max_bytes: usize,
    ) -> EngineResult<ReadBatches> {
        let partition = self.partition(tp);
        let state = partition.state.lock();
        let offsets = PartitionOffsets {
            log_start: state.log_start,
            high_watermark: state.high_watermark,
        };
        if offset == state.high_watermark {
            return Ok(ReadBatches {
                data: Bytes::new(),
                offsets,
            });
        }
        if offset < state.log_start || offset > state.high_watermark {
            return Err(EngineError::OffsetOutOfRange {
                offset,
                log_start: state.log_start,
                high_watermark: state.high_watermark,
            });
        }
        let first = state
            .batches
            .partition_point(|held| held.last_offset < offset);
        let mut taken = 0;
        let mut end = first;
        for held in &state.batches[first..] {
            if taken > 0 && taken + held.bytes.len() > max_bytes {
                break;
            }
            taken += held.bytes.len();
            end += 1;
        }
        let data = match &state.batches[first..end] {
            [only] => only.bytes.clone(),
            several => {
                let mut joined = BytesMut::with_capacity(taken);
                for held in several {
                    joined.extend_from_slice(&held.bytes);
                }
                joined.freeze()
            }
        };
        Ok(ReadBatches { data, offsets })
    }

    async fn wait_for(
        &self,
        tp: &TopicPartition,
        offset: i64,
        timeout: Duration,
    ) -> EngineResult<bool> {
        let partition = self.partition(tp);
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Listen before checking so an append between the check and the await still wakes us.
            let listener = partition.appended.listen();
            if partition.offsets().high_watermark > offset {
                return Ok(true);
            }
            if tokio::time::timeout_at(deadline, listener).await.is_err() {
                return Ok(partition.offsets().high_watermark > offset);
            }
        }
    }

    fn offsets(&self, tp: &TopicPartition) -> EngineResult<PartitionOffsets> {
        Ok(self.partition(tp).offsets())
    }

    /// Timestamp lookups work at batch granularity (the first batch whose max timestamp
    /// qualifies), which is all a ceiling needs.
    async fn find_offset(
        &self,
        tp: &TopicPartition,
        query: OffsetQuery,
    ) -> EngineResult<Option<TimestampOffset>> {
        let partition = self.partition(tp);
        let state = partition.state.lock();
        let base_of = |index: usize| {
            index.checked_sub(1).map_or(state.log_start, |before| {
                state.batches[before].last_offset + 1
            })
        };
        let found = match query {
            OffsetQuery::Earliest => Some((state.log_start, -1)),
            OffsetQuery::Latest => Some((state.high_watermark, -1)),
            OffsetQuery::MaxTimestamp => state
                .batches
                .iter()
                .max_by_key(|held| held.max_timestamp)
                .map(|held| (held.last_offset, held.max_timestamp)),
            OffsetQuery::AtOrAfter(wanted) => state
                .batches
                .iter()
                .position(|held| held.max_timestamp >= wanted)
                .map(|index| (base_of(index), state.batches[index].max_timestamp)),
        };
        Ok(found.map(|(offset, timestamp)| TimestampOffset { offset, timestamp }))
    }

    async fn delete_records(&self, tp: &TopicPartition, before: i64) -> EngineResult<i64> {
        let partition = self.partition(tp);
        let mut state = partition.state.lock();
        let before = before.clamp(state.log_start, state.high_watermark);
        state.batches.retain(|held| held.last_offset >= before);
        state.log_start = before;
        Ok(before)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_api::Record;
    use tributary_api::batch::{build_batch, decode_records};

    fn batch(values: &[&str]) -> Bytes {
        let records: Vec<Record> = values
            .iter()
            .map(|value| Record {
                value: Some(Bytes::copy_from_slice(value.as_bytes())),
                timestamp: 1_000,
                ..Record::default()
            })
            .collect();
        build_batch(&records)
    }

    fn values(data: &Bytes) -> Vec<(i64, Vec<u8>)> {
        let mut out = Vec::new();
        let mut at = 0;
        while at < data.len() {
            let header = BatchHeader::parse(&data[at..]).expect("header");
            let one = data.slice(at..at + header.total_len);
            for stored in decode_records(&one).expect("records") {
                out.push((stored.offset, stored.record.value.expect("value").to_vec()));
            }
            at += header.total_len;
        }
        out
    }

    #[tokio::test]
    async fn retain_serves_appended_batches_by_offset() {
        let log = MemoryLog::new(MemoryLogMode::Retain);
        let tp = TopicPartition::new("t", 0);
        let first = log.append(&tp, batch(&["a", "b"])).await.expect("append");
        let second = log.append(&tp, batch(&["c"])).await.expect("append");
        assert_eq!((first.base_offset, first.last_offset), (0, 1));
        assert_eq!((second.base_offset, second.last_offset), (2, 2));

        let all = log.read(&tp, 1, 1 << 20).await.expect("read");
        let expected = [(0, b"a".to_vec()), (1, b"b".to_vec()), (2, b"c".to_vec())];
        assert_eq!(values(&all.data), expected);
        assert_eq!(all.offsets.high_watermark, 3);

        // A limit smaller than one batch still returns that batch, and no more.
        let one = log.read(&tp, 2, 1).await.expect("read");
        assert_eq!(values(&one.data), [(2, b"c".to_vec())]);
        assert!(log.read(&tp, 3, 100).await.expect("read").data.is_empty());
        assert!(log.read(&tp, 4, 100).await.is_err());
        assert!(log.wait_for(&tp, 2, Duration::ZERO).await.expect("wait"));
    }

    #[tokio::test]
    async fn discard_assigns_offsets_and_keeps_nothing() {
        let log = MemoryLog::new(MemoryLogMode::Discard);
        let tp = TopicPartition::new("t", 3);
        log.append(&tp, batch(&["a", "b", "c"]))
            .await
            .expect("append");
        let next = log.append(&tp, batch(&["d"])).await.expect("append");
        assert_eq!(next.base_offset, 3);
        let offsets = log.offsets(&tp).expect("offsets");
        assert_eq!((offsets.log_start, offsets.high_watermark), (4, 4));
        assert!(log.read(&tp, 0, 100).await.is_err());
        assert!(log.read(&tp, 4, 100).await.expect("read").data.is_empty());
    }
}
