//! Rebuilding a partition's producer state from its log: the snapshot's state (when it matches
//! the log), then the header of every batch from the snapshot's offset (else the log start) to
//! the high watermark. Only headers are parsed; no record is decoded or inflated.
//!
//! Invariants: the result reflects every batch below the returned `complete_below` offset that
//! the log holds at or after its start; batches are applied in offset order, and a batch the
//! snapshot already holds (same base offset) is not added twice.

use std::collections::HashMap;

use bytes::Bytes;
use tributary_api::batch::BatchHeader;
use tributary_api::{EngineError, EngineResult, ProducerBatch, TopicPartition};

use super::snapshot::Snapshot;
use super::{Backing, NAMESPACE, PartitionProducer, SequencedBatch, last_sequence};

/// Bytes asked of the log per read while replaying.
const REPLAY_READ_BYTES: usize = 1 << 20;

/// A partition's producer state as its log implies it.
#[derive(Debug, Default)]
pub(crate) struct Rebuilt {
    pub(crate) producers: HashMap<i64, PartitionProducer>,
    /// The state covers every batch below this offset.
    pub(crate) complete_below: i64,
    /// The largest producer id seen (-1 for none).
    pub(crate) max_producer_id: i64,
    /// Where the replay started, and whether that was a snapshot's offset.
    pub(crate) replayed_from: i64,
    pub(crate) from_snapshot: bool,
    pub(crate) batches_replayed: u64,
    /// The log records producer state itself: nothing was replayed and no snapshot is needed.
    pub(crate) kept_by_log: bool,
}

impl Rebuilt {
    /// Adds one stored batch (any protocol's; only idempotent data batches count).
    pub(crate) fn apply(&mut self, header: &BatchHeader) {
        if header.producer_id < 0 || header.is_control() {
            return;
        }
        self.max_producer_id = self.max_producer_id.max(header.producer_id);
        let batch = SequencedBatch {
            base_sequence: header.base_sequence,
            last_sequence: last_sequence(header),
            base_offset: header.base_offset,
        };
        self.producers
            .entry(header.producer_id)
            .or_insert_with(|| PartitionProducer::new(header.producer_epoch))
            .replay(header.producer_epoch, batch);
    }
}

/// An error about a batch the log holds (not the client's): reported as a storage failure.
fn stored_batch_error(
    partition: &TopicPartition,
    offset: i64,
    what: impl std::fmt::Display,
) -> EngineError {
    EngineError::Storage(
        format!("producer state rebuild of {partition} at offset {offset}: {what}").into(),
    )
}

/// Whether the log holds the batch `snapshot` ends with.
async fn snapshot_matches(
    engine: &Backing,
    partition: &TopicPartition,
    snapshot: &Snapshot,
    log_start: i64,
    high_watermark: i64,
) -> EngineResult<bool> {
    let end = snapshot.offset - 1;
    if end < log_start || snapshot.offset > high_watermark {
        return Ok(false);
    }
    let read = engine.log.read(partition, end, 1).await?;
    let Ok(header) = BatchHeader::parse(&read.data) else {
        return Ok(false);
    };
    Ok(header.base_offset == snapshot.end_batch.base_offset
        && header.crc == snapshot.end_batch.crc
        && header.last_offset() == end)
}

/// The producer state of `partition`, from the snapshot under `snapshot_key` (if it matches
/// the log) and the log after it.
pub(crate) async fn rebuild(
    engine: &Backing,
    partition: &TopicPartition,
    snapshot_key: &str,
) -> EngineResult<Rebuilt> {
    let offsets = engine.log.offsets(partition)?;
    if let Some(kept) = engine.log.producer_batches(partition).await? {
        return Ok(from_log_state(
            &kept,
            offsets.high_watermark,
            offsets.log_start,
        ));
    }
    let stored = engine.metadata.get(NAMESPACE, snapshot_key).await?;
    let snapshot = match stored.map(|bytes| (Snapshot::decode(bytes.clone()), bytes.len())) {
        None => None,
        Some((None, len)) => {
            tracing::warn!(%partition, len, "producer state snapshot unreadable; replaying the whole log");
            None
        }
        Some((Some(snapshot), _)) => {
            if snapshot_matches(
                engine,
                partition,
                &snapshot,
                offsets.log_start,
                offsets.high_watermark,
            )
            .await?
            {
                Some(snapshot)
            } else {
                tracing::warn!(%partition, snapshot_offset = snapshot.offset,
                    log_start = offsets.log_start, high_watermark = offsets.high_watermark,
                    "producer state snapshot does not match the log; replaying the whole log");
                None
            }
        }
    };
    let mut rebuilt = Rebuilt {
        max_producer_id: -1,
        ..Rebuilt::default()
    };
    let mut offset = offsets.log_start;
    if let Some(snapshot) = snapshot {
        offset = snapshot.offset;
        rebuilt.from_snapshot = true;
        rebuilt.max_producer_id = snapshot.producers.keys().copied().max().unwrap_or(-1);
        rebuilt.producers = snapshot.producers;
    }
    rebuilt.replayed_from = offset;
    while offset < offsets.high_watermark {
        let read = match engine.log.read(partition, offset, REPLAY_READ_BYTES).await {
            Ok(read) => read,
            // Retention or DeleteRecords moved the log start past us: those batches are gone.
            Err(EngineError::OffsetOutOfRange { log_start, .. }) if log_start > offset => {
                offset = log_start;
                continue;
            }
            Err(failure) => return Err(failure),
        };
        let next = replay_batches(&mut rebuilt, partition, offset, &read.data)?;
        if next <= offset {
            return Err(stored_batch_error(
                partition,
                offset,
                "the log returned no batch",
            ));
        }
        offset = next;
    }
    rebuilt.complete_below = offset.max(offsets.high_watermark);
    // Kafka's rule: a producer whose newest batch the log no longer holds is forgotten.
    let log_start = engine.log.offsets(partition)?.log_start;
    rebuilt
        .producers
        .retain(|_, producer| producer.last_offset().is_some_and(|last| last >= log_start));
    Ok(rebuilt)
}

/// The state from the producer batches a log records itself (in offset order).
fn from_log_state(kept: &[ProducerBatch], high_watermark: i64, log_start: i64) -> Rebuilt {
    let mut rebuilt = Rebuilt {
        max_producer_id: -1,
        replayed_from: high_watermark,
        complete_below: high_watermark,
        kept_by_log: true,
        ..Rebuilt::default()
    };
    for batch in kept {
        rebuilt.max_producer_id = rebuilt.max_producer_id.max(batch.producer_id);
        rebuilt
            .producers
            .entry(batch.producer_id)
            .or_insert_with(|| PartitionProducer::new(batch.producer_epoch))
            .replay(
                batch.producer_epoch,
                SequencedBatch {
                    base_sequence: batch.base_sequence,
                    last_sequence: batch.last_sequence,
                    base_offset: batch.base_offset,
                },
            );
    }
    rebuilt
        .producers
        .retain(|_, producer| producer.last_offset().is_some_and(|last| last >= log_start));
    rebuilt
}

/// Applies the whole batches of `data` (read at `offset`) and returns the offset after the last.
fn replay_batches(
    rebuilt: &mut Rebuilt,
    partition: &TopicPartition,
    mut offset: i64,
    data: &Bytes,
) -> EngineResult<i64> {
    let mut at = 0;
    while at < data.len() {
        let header = BatchHeader::parse(&data[at..])
            .map_err(|failure| stored_batch_error(partition, offset, failure))?;
        let end = at.saturating_add(header.total_len);
        if end > data.len() {
            break;
        }
        at = end;
        if header.last_offset() < offset {
            continue;
        }
        rebuilt.apply(&header);
        rebuilt.batches_replayed += 1;
        offset = header.last_offset() + 1;
    }
    Ok(offset)
}
