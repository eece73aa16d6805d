//! Idempotent producers: producer ids, epochs and per-(producer, partition) sequence checks,
//! with the state derived from the log, so that it agrees with the log after any crash.
//!
//! Rules (Kafka's, for an idempotent producer; a transactional one follows them too, after the
//! coordinator admitted its batch, see [`crate::txn`]):
//! - an epoch below the partition's known epoch is fenced (INVALID_PRODUCER_EPOCH);
//! - a newer epoch must start at sequence 0 (else OUT_OF_ORDER_SEQUENCE_NUMBER);
//! - with the same epoch, a batch equal to one of the last [`CACHED_BATCHES`] is a duplicate
//!   (a retry): it is acknowledged with its original base offset and not written again;
//! - otherwise its base sequence must follow the last one (wrapping after `i32::MAX`), else
//!   OUT_OF_ORDER_SEQUENCE_NUMBER;
//! - a producer the partition has no batch of may start at any sequence.
//!
//! Where the state comes from: the log. Every stored v2 batch of an idempotent producer carries
//! its producer id, epoch and base sequence (the last sequence is base + last offset delta), so
//! a partition's producer state is a function of its log, as in Kafka. On the first idempotent
//! batch for a partition after start, the `rebuild` module replays the batch headers of the log
//! (no record is decoded) from a snapshot's offset up to the high watermark, or from the log
//! start when there is no snapshot or it does not match the log (its last batch is gone: a tail
//! lost to power loss under `never`/`interval`, or a topic made again). A crash between an
//! append and anything written about it cannot make a retried batch look new: the batch is in
//! the log, so it is in the state. Under `never` the log itself may lose acknowledged batches
//! on power loss; the state then follows the log, which is what a retry must be checked against.
//!
//! Cost: that first batch waits for the replay — at most [`SNAPSHOT_EVERY_BATCHES`] idempotent
//! batches or [`SNAPSHOT_EVERY_OFFSETS`] offsets behind the log end, but the whole log of a
//! partition that has no usable snapshot (the first start after upgrading from the per-append
//! format below). Appends themselves write nothing to the metadata store.
//!
//! Invariants:
//! - a batch is entered into the in-memory state only once durable (a retry of a batch whose
//!   fsync failed must not be answered as a duplicate);
//! - the batches of one producer on one partition are decided one at a time (check, append,
//!   wait for durability, record), across connections too: a retry that arrives while its
//!   original is in flight waits, then is answered as a duplicate;
//! - that sequence runs in its own task, so a client hanging up mid-way cannot leave an
//!   appended batch unrecorded;
//! - a snapshot's offset X lies below every idempotent batch still in flight (numbered by the
//!   log, not yet recorded), and the snapshot holds nothing at or above X: a snapshot lags the
//!   log, never leads it, and the tail after X is always replayed;
//! - a producer whose newest batch lies below the log start (retention, DeleteRecords) is
//!   forgotten at the next rebuild, as Kafka does.
//!
//! Durable format, in the engine's metadata store, namespace [`NAMESPACE`]:
//! - key `next-id`: the next producer id, `u64` big-endian, written before an id is handed out
//!   and kept above every producer id a rebuild finds in a log;
//! - key `snapshot/<topic id as 32 hex digits>/<partition index>`: a snapshot (format in the
//!   `snapshot` module: the state complete below an offset X, and the base offset and CRC of
//!   the batch ending at X - 1),
//!   written every [`SNAPSHOT_EVERY_BATCHES`] recorded batches of a partition (or when its log
//!   grew [`SNAPSHOT_EVERY_OFFSETS`] past the last one) and after a rebuild that replayed any
//!   batch;
//! - keys `<producer id>/<partition index>/<topic>`: the state written after each append before
//!   issue 14 (it could lag the log by the batch a crash interrupted). No longer read or
//!   written; left in place and ignored.

mod rebuild;
pub(crate) mod snapshot;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use bytes::{Buf, Bytes};
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tributary_api::batch::{BatchHeader, VerifiedBatch};
use tributary_api::{
    AppendOutcome, Engine, EngineError, EngineResult, LogService, MetadataStore, TopicPartition,
};

use snapshot::{EndBatch, Snapshot};

/// Metadata-store namespace of producer state.
pub const NAMESPACE: &str = "kafka.producers";
const NEXT_ID_KEY: &str = "next-id";
/// Batches remembered per (producer, partition) for duplicate detection (Kafka's five in flight).
pub const CACHED_BATCHES: usize = tributary_api::PRODUCER_BATCHES_KEPT;
/// Idempotent batches recorded on a partition between two snapshots: bounds what a rebuild
/// replays (plus whatever other writers appended in between) at one metadata write per this many
/// batches.
pub const SNAPSHOT_EVERY_BATCHES: u64 = 1000;
/// Offsets the log of a partition may grow past its last snapshot (through any writer) before an
/// idempotent batch recorded there takes a new one: bounds the replay where idempotent batches
/// are rare among others.
pub const SNAPSHOT_EVERY_OFFSETS: i64 = 100_000;

/// One appended batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SequencedBatch {
    pub(crate) base_sequence: i32,
    pub(crate) last_sequence: i32,
    pub(crate) base_offset: i64,
}

impl SequencedBatch {
    /// The offset of the batch's last record (its sequences span its offsets one to one).
    fn last_offset(&self) -> i64 {
        let span = self.last_sequence.wrapping_sub(self.base_sequence);
        self.base_offset.saturating_add(i64::from(span.max(0)))
    }
}

/// What a partition knows of one producer: its epoch and its last batches, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PartitionProducer {
    epoch: i16,
    recent: VecDeque<SequencedBatch>,
}

impl PartitionProducer {
    fn new(epoch: i16) -> Self {
        Self {
            epoch,
            recent: VecDeque::new(),
        }
    }

    /// Adds a batch of this producer in log order: a newer epoch starts over, an older one is
    /// ignored, a batch already held (same base offset) is not added twice.
    fn replay(&mut self, epoch: i16, batch: SequencedBatch) {
        if epoch < self.epoch {
            return;
        }
        if epoch > self.epoch {
            self.epoch = epoch;
            self.recent.clear();
        }
        if self
            .recent
            .iter()
            .any(|held| held.base_offset == batch.base_offset)
        {
            return;
        }
        self.recent.push_back(batch);
        while self.recent.len() > CACHED_BATCHES {
            self.recent.pop_front();
        }
    }

    fn last_offset(&self) -> Option<i64> {
        self.recent.back().map(SequencedBatch::last_offset)
    }

    /// The batches below `offset` only; `None` if none is.
    fn below(&self, offset: i64) -> Option<Self> {
        let recent: VecDeque<SequencedBatch> = self
            .recent
            .iter()
            .filter(|batch| batch.base_offset < offset)
            .copied()
            .collect();
        (!recent.is_empty()).then_some(Self {
            epoch: self.epoch,
            recent,
        })
    }
}

/// What to do with an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Append,
    /// A retry of an appended batch: answer with this base offset, write nothing.
    Duplicate {
        base_offset: i64,
    },
    Refuse(ResponseError),
}

/// The sequence rule, on a known (or empty) partition state.
pub(crate) fn check(
    state: Option<&PartitionProducer>,
    epoch: i16,
    base_sequence: i32,
    last_sequence: i32,
) -> Verdict {
    let Some(state) = state else {
        return Verdict::Append;
    };
    if epoch < state.epoch {
        return Verdict::Refuse(ResponseError::InvalidProducerEpoch);
    }
    if epoch > state.epoch {
        return if base_sequence == 0 {
            Verdict::Append
        } else {
            Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber)
        };
    }
    if let Some(seen) = state
        .recent
        .iter()
        .find(|seen| seen.base_sequence == base_sequence && seen.last_sequence == last_sequence)
    {
        return Verdict::Duplicate {
            base_offset: seen.base_offset,
        };
    }
    let expected = match state.recent.back() {
        Some(last) if last.last_sequence == i32::MAX => 0,
        Some(last) => last.last_sequence + 1,
        None => base_sequence,
    };
    if base_sequence == expected {
        Verdict::Append
    } else {
        Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber)
    }
}

/// The sequence number of a batch's last record (sequences wrap after `i32::MAX`).
pub(crate) fn last_sequence(header: &BatchHeader) -> i32 {
    header.last_sequence()
}

/// What producer state lives in: the log (the truth) and the metadata store (ids, snapshots).
#[derive(Debug, Clone)]
pub(crate) struct Backing {
    pub(crate) log: Arc<dyn LogService>,
    pub(crate) metadata: Arc<dyn MetadataStore>,
}

impl From<&Engine> for Backing {
    fn from(engine: &Engine) -> Self {
        Self {
            log: Arc::clone(&engine.log),
            metadata: Arc::clone(&engine.metadata),
        }
    }
}

/// The answer to an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sequenced {
    /// Written and as durable as the topic's policy asks.
    Appended(AppendOutcome),
    /// A retry of a stored batch: nothing written.
    Duplicate {
        base_offset: i64,
    },
    Refused(ResponseError),
}

/// The in-memory state of one partition.
#[derive(Debug, Default)]
struct PartitionState {
    producers: HashMap<i64, PartitionProducer>,
    /// One lock per producer: its batches are decided one at a time.
    producer_locks: HashMap<i64, Arc<tokio::sync::Mutex<()>>>,
    /// Base offsets of idempotent batches numbered by the log and not yet recorded. A batch
    /// whose durability failed stays here: no snapshot of this run may cover it, because a
    /// restart may find it in the log after all.
    in_flight: BTreeSet<i64>,
    recorded_since_snapshot: u64,
    /// The offset of the last snapshot written (or the rebuild started from).
    snapshot_offset: i64,
    snapshotting: bool,
    /// The log records this state itself (with its batches): no snapshots are written.
    kept_by_log: bool,
}

#[derive(Debug)]
struct PartitionSlot {
    partition: TopicPartition,
    topic_id: [u8; 16],
    /// The log's partition generation this state was built at; another one means leadership
    /// moved away and back, so the state is rebuilt.
    generation: u64,
    snapshot_key: String,
    /// Set once the state was rebuilt from the log.
    rebuilt: tokio::sync::OnceCell<()>,
    /// Held while an idempotent batch is numbered by the log and entered as in flight, and
    /// while a snapshot picks its offset: no batch is numbered unseen in between.
    numbering: tokio::sync::Mutex<()>,
    state: Mutex<PartitionState>,
}

impl PartitionSlot {
    fn new(topic_id: [u8; 16], generation: u64, partition: &TopicPartition) -> Self {
        let hex: String = topic_id.iter().map(|byte| format!("{byte:02x}")).collect();
        Self {
            snapshot_key: format!("snapshot/{hex}/{}", partition.partition),
            partition: partition.clone(),
            topic_id,
            generation,
            rebuilt: tokio::sync::OnceCell::new(),
            numbering: tokio::sync::Mutex::new(()),
            state: Mutex::new(PartitionState::default()),
        }
    }

    fn producer_lock(&self, producer_id: i64) -> Arc<tokio::sync::Mutex<()>> {
        Arc::clone(
            self.state
                .lock()
                .producer_locks
                .entry(producer_id)
                .or_default(),
        )
    }
}

#[derive(Debug)]
struct Shared {
    partitions: Mutex<HashMap<TopicPartition, Arc<PartitionSlot>>>,
    /// Serialises id allocation (read-modify-write of `next-id`).
    allocate: tokio::sync::Mutex<()>,
    /// The largest producer id found in a rebuilt log or appended since: ids handed out stay
    /// above it.
    largest_seen_id: AtomicI64,
    snapshot_every: u64,
}

/// Producer ids and partition states of this broker (cheap to clone: one shared state).
#[derive(Debug, Clone)]
pub(crate) struct Producers {
    shared: Arc<Shared>,
}

impl Default for Producers {
    fn default() -> Self {
        Self::with_snapshot_every(SNAPSHOT_EVERY_BATCHES)
    }
}

impl Producers {
    /// Snapshots every `batches` recorded batches per partition (tests take small numbers).
    pub(crate) fn with_snapshot_every(batches: u64) -> Self {
        Self {
            shared: Arc::new(Shared {
                partitions: Mutex::new(HashMap::new()),
                allocate: tokio::sync::Mutex::new(()),
                largest_seen_id: AtomicI64::new(-1),
                snapshot_every: batches.max(1),
            }),
        }
    }

    /// Hands out a new producer id (epoch 0), durably: `next-id` is written before the id is
    /// returned, and ids stay above every id a rebuilt log holds.
    pub(crate) async fn allocate(&self, engine: &Backing) -> EngineResult<i64> {
        if let Some(id) = engine.log.allocate_producer_id().await? {
            return Ok(id);
        }
        let store = engine.metadata.as_ref();
        let _serial = self.shared.allocate.lock().await;
        let stored = store
            .get(NAMESPACE, NEXT_ID_KEY)
            .await?
            .filter(|bytes| bytes.len() == 8)
            .map(|mut bytes| bytes.get_u64())
            .unwrap_or(0);
        let above_seen = self.shared.largest_seen_id.load(Ordering::Acquire) + 1;
        let next = stored.max(u64::try_from(above_seen).unwrap_or(0));
        let following = next.saturating_add(1);
        store
            .put(
                NAMESPACE,
                NEXT_ID_KEY,
                Bytes::copy_from_slice(&following.to_be_bytes()),
            )
            .await?;
        Ok(i64::try_from(next).unwrap_or(i64::MAX))
    }

    fn slot(
        &self,
        topic_id: [u8; 16],
        generation: u64,
        partition: &TopicPartition,
    ) -> Arc<PartitionSlot> {
        let mut partitions = self.shared.partitions.lock();
        if let Some(slot) = partitions.get(partition)
            && slot.topic_id == topic_id
            && slot.generation == generation
        {
            return Arc::clone(slot);
        }
        // New, the topic was deleted and made again under the same name, or this broker
        // regained the partition (another broker may have written it meanwhile).
        let slot = Arc::new(PartitionSlot::new(topic_id, generation, partition));
        partitions.insert(partition.clone(), Arc::clone(&slot));
        slot
    }

    /// Decides on one idempotent or transactional data batch (producer id >= 0) and appends it
    /// if it is new. Returns once an appended batch is durable and recorded.
    pub(crate) async fn append_sequenced(
        &self,
        engine: &Backing,
        topic_id: [u8; 16],
        partition: &TopicPartition,
        batch: VerifiedBatch,
    ) -> EngineResult<Sequenced> {
        let generation = engine.log.partition_generation(partition);
        let slot = self.slot(topic_id, generation, partition);
        let (producers, engine) = (self.clone(), engine.clone());
        // A task of its own: dropping the caller (a client hanging up) must not stop it
        // between the append and the record.
        let decided =
            tokio::spawn(async move { producers.decide(&engine, &slot, batch).await }).await;
        decided.unwrap_or_else(|failure| {
            Err(if failure.is_cancelled() {
                EngineError::ShuttingDown
            } else {
                EngineError::Storage(format!("idempotent append of {partition}: {failure}").into())
            })
        })
    }

    async fn decide(
        &self,
        engine: &Backing,
        slot: &PartitionSlot,
        batch: VerifiedBatch,
    ) -> EngineResult<Sequenced> {
        slot.rebuilt
            .get_or_try_init(|| self.rebuild(engine, slot))
            .await?;
        let header = *batch.header();
        let producer_id = header.producer_id;
        let producer_lock = slot.producer_lock(producer_id);
        let _one_at_a_time = producer_lock.lock().await;
        let verdict = check(
            slot.state.lock().producers.get(&producer_id),
            header.producer_epoch,
            header.base_sequence,
            last_sequence(&header),
        );
        match verdict {
            Verdict::Append => {}
            Verdict::Duplicate { base_offset } => return Ok(Sequenced::Duplicate { base_offset }),
            Verdict::Refuse(refusal) => return Ok(Sequenced::Refused(refusal)),
        }
        let (outcome, pending) = {
            let _numbering = slot.numbering.lock().await;
            let written = engine.log.append_verified(&slot.partition, batch).await?;
            slot.state.lock().in_flight.insert(written.0.base_offset);
            written
        };
        let durable = pending.await;
        let snapshot_due = {
            let mut state = slot.state.lock();
            if durable.is_ok() {
                state.in_flight.remove(&outcome.base_offset);
                let batch = SequencedBatch {
                    base_sequence: header.base_sequence,
                    last_sequence: last_sequence(&header),
                    base_offset: outcome.base_offset,
                };
                state
                    .producers
                    .entry(producer_id)
                    .or_insert_with(|| PartitionProducer::new(header.producer_epoch))
                    .replay(header.producer_epoch, batch);
                state.recorded_since_snapshot += 1;
                // Even an id the client made up: it is in the log now.
                self.shared
                    .largest_seen_id
                    .fetch_max(producer_id, Ordering::AcqRel);
            }
            let log_grown = outcome.last_offset - state.snapshot_offset;
            let due = (state.recorded_since_snapshot >= self.shared.snapshot_every
                || log_grown >= SNAPSHOT_EVERY_OFFSETS)
                && durable.is_ok()
                && !state.snapshotting
                && !state.kept_by_log;
            state.snapshotting |= due;
            due
        };
        durable?;
        if snapshot_due {
            self.snapshot_and_report(engine, slot).await;
        }
        Ok(Sequenced::Appended(outcome))
    }

    /// Rebuilds `slot`'s state from the log (runs once per partition, before any of its
    /// idempotent batches is decided), then snapshots it if anything was replayed.
    async fn rebuild(&self, engine: &Backing, slot: &PartitionSlot) -> EngineResult<()> {
        let rebuilt = rebuild::rebuild(engine, &slot.partition, &slot.snapshot_key).await?;
        self.shared
            .largest_seen_id
            .fetch_max(rebuilt.max_producer_id, Ordering::AcqRel);
        tracing::info!(partition = %slot.partition, from = rebuilt.replayed_from,
            from_snapshot = rebuilt.from_snapshot, to = rebuilt.complete_below,
            batches = rebuilt.batches_replayed, producers = rebuilt.producers.len(),
            "idempotent producer state rebuilt from the log");
        let replayed = rebuilt.batches_replayed > 0;
        {
            let mut state = slot.state.lock();
            state.kept_by_log = rebuilt.kept_by_log;
            state.producers = rebuilt.producers;
            state.snapshot_offset = rebuilt.replayed_from;
            state.snapshotting = replayed;
        }
        if replayed {
            self.snapshot_and_report(engine, slot).await;
        }
        Ok(())
    }

    /// Writes a snapshot; a failure costs only a longer replay at the next start, so it is
    /// logged and the batch is still acknowledged.
    async fn snapshot_and_report(&self, engine: &Backing, slot: &PartitionSlot) {
        let written = write_snapshot(engine, slot).await;
        let mut state = slot.state.lock();
        state.snapshotting = false;
        match written {
            Ok(Some(offset)) => {
                state.recorded_since_snapshot = 0;
                state.snapshot_offset = offset;
            }
            Ok(None) => {}
            Err(failure) => {
                tracing::warn!(partition = %slot.partition, error = %failure,
                    "producer state snapshot not written; the next start replays more of the log");
            }
        }
    }
}

/// Writes the state of `slot` complete below an offset no in-flight batch reaches, and returns
/// that offset; `None` when there is nothing to snapshot (the offset is at the log start).
async fn write_snapshot(engine: &Backing, slot: &PartitionSlot) -> EngineResult<Option<i64>> {
    let (offset, producers) = {
        let _numbering = slot.numbering.lock().await;
        let high_watermark = engine.log.offsets(&slot.partition)?.high_watermark;
        let state = slot.state.lock();
        let offset = state
            .in_flight
            .first()
            .map_or(high_watermark, |first| high_watermark.min(*first));
        let producers: HashMap<i64, PartitionProducer> = state
            .producers
            .iter()
            .filter_map(|(id, producer)| Some((*id, producer.below(offset)?)))
            .collect();
        (offset, producers)
    };
    if offset <= engine.log.offsets(&slot.partition)?.log_start {
        return Ok(None);
    }
    let read = engine.log.read(&slot.partition, offset - 1, 1).await?;
    let header = BatchHeader::parse(&read.data)?;
    if header.last_offset() != offset - 1 {
        // Not a batch boundary: cannot happen for a high watermark or a base offset.
        return Ok(None);
    }
    let snapshot = Snapshot {
        offset,
        end_batch: EndBatch {
            base_offset: header.base_offset,
            crc: header.crc,
        },
        producers,
    };
    engine
        .metadata
        .put(NAMESPACE, &slot.snapshot_key, snapshot.encode())
        .await?;
    Ok(Some(offset))
}
