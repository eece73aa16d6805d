//! One open queue: its log partition, ack journal, delivery state and ready event.
//!
//! Lock order: `state` before `read_ahead` before the journal's locks; `trim` is taken with no
//! other lock held.
//!
//! Read-ahead: a log read decodes whole batches (up to `READ_BYTES`), usually more records than
//! one `take` hands out; the rest are kept in `read_ahead` for the next take instead of being
//! read and decoded again. Stored records never change, so a kept record is always valid; one
//! settled meanwhile is skipped by the state as any settled offset is.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use event_listener::Event;
use parking_lot::Mutex;
use tributary_api::batch::{BatchError, BatchHeader, decode_records};
use tributary_api::{
    AppendOutcome, Delivery, Durability, EngineError, EngineResult, HeadTake, QueueDepth, Record,
    StoredRecord,
};

use super::journal::AckJournal;
use super::state::QueueState;
use crate::storage::{Durable, Partition};

/// Bytes read from the log per step of a `take`.
const READ_BYTES: usize = 64 * 1024;

fn journal_io(context: &'static str) -> impl FnOnce(std::io::Error) -> EngineError {
    move |source| EngineError::Io { context, source }
}

/// A batch written by [`QueueHandle::enqueue_unsynced`].
pub(crate) enum Enqueued {
    /// Stored and ready.
    Done(AppendOutcome),
    /// Written; [`QueueHandle::finish_enqueue`] waits for its fsync and makes it ready.
    Pending(PendingEnqueue),
}

pub(crate) struct PendingEnqueue {
    records: Vec<StoredRecord>,
    durable: Durable,
    outcome: AppendOutcome,
}

/// What a settle's first half leaves to [`QueueHandle::finish_settle`].
#[must_use = "a settle is as durable as the policy asks only after `finish_settle`"]
pub(crate) struct Settled {
    /// The journal position its entries reached (None: a requeue count could not be written).
    seq: Option<u64>,
    /// A requeue's counts: an fsync failure is logged, not returned.
    counts_only: bool,
    /// Journal compaction or segment deletion is due (see `maintain`).
    pub(crate) maintenance_due: bool,
}

struct Trim {
    /// Highest floor passed to `delete_before`.
    trimmed_to: i64,
}

pub(crate) struct QueueHandle {
    pub(crate) name: String,
    /// Name of the queue's one-partition storage topic.
    pub(crate) log_topic: String,
    log: Arc<Partition>,
    durability: Durability,
    pub(crate) journal: AckJournal,
    state: Mutex<QueueState>,
    /// Decoded records after the last ones a take handed out, in offset order.
    read_ahead: Mutex<VecDeque<StoredRecord>>,
    /// Set under the state lock when the queue is deleted; later calls fail with UnknownQueue.
    deleted: AtomicBool,
    /// Held while a [`QueueHandle::maintain`] claimed by `claim_maintenance` is queued or runs.
    maintaining: AtomicBool,
    /// Notified by enqueue, requeue and delete.
    ready: Event,
    trim: Mutex<Trim>,
    /// Last journal fsync, for interval durability.
    last_sync: Mutex<Instant>,
}

impl std::fmt::Debug for QueueHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueHandle")
            .field("name", &self.name)
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

impl QueueHandle {
    pub(crate) fn new(
        name: String,
        log_topic: String,
        log: Arc<Partition>,
        durability: Durability,
        journal: AckJournal,
        state: QueueState,
    ) -> Self {
        let trimmed_to = log.log_start_offset();
        Self {
            name,
            log_topic,
            log,
            durability,
            journal,
            state: Mutex::new(state),
            read_ahead: Mutex::new(VecDeque::new()),
            deleted: AtomicBool::new(false),
            maintaining: AtomicBool::new(false),
            ready: Event::new(),
            trim: Mutex::new(Trim { trimmed_to }),
            last_sync: Mutex::new(Instant::now()),
        }
    }

    fn unknown(&self) -> EngineError {
        EngineError::UnknownQueue(self.name.clone())
    }

    fn check_live(&self) -> EngineResult<()> {
        if self.deleted.load(Ordering::Acquire) {
            Err(self.unknown())
        } else {
            Ok(())
        }
    }

    /// Marks the queue deleted and wakes its waiters; returns how many messages it held.
    pub(crate) fn mark_deleted(&self) -> u64 {
        let state = self.state.lock();
        self.deleted.store(true, Ordering::Release);
        let depth = state.depth(self.log.high_watermark());
        drop(state);
        self.ready.notify(usize::MAX);
        depth.ready + depth.unacked
    }

    pub(crate) fn depth(&self) -> EngineResult<QueueDepth> {
        let state = self.state.lock();
        self.check_live()?;
        Ok(state.depth(self.log.high_watermark()))
    }

    /// Appends an uncompressed batch (compressed ones are refused with the batch error) without
    /// waiting for an fsync: it writes the batch and, unless the log must fsync it first, makes
    /// it ready.
    pub(crate) fn enqueue_unsynced(&self, batch: &Bytes, now_ms: i64) -> EngineResult<Enqueued> {
        let header = BatchHeader::parse(batch)?;
        let codec = (header.attributes & 0x07) as u8;
        if codec != 0 {
            return Err(BatchError::Compressed(codec).into());
        }
        self.check_live()?;
        // An indexed queue learns each record's priority and size before the append, so the
        // index is updated right after it without reading the log back.
        let records = match self.indexed() {
            true => decode_records(batch)?,
            false => Vec::new(),
        };
        let (info, durable) = self.log.append_unsynced(batch, now_ms)?;
        let pending = PendingEnqueue {
            records,
            durable,
            outcome: AppendOutcome {
                base_offset: info.base_offset,
                last_offset: info.last_offset,
                log_append_time: now_ms,
                log_start: self.log.log_start_offset(),
            },
        };
        if durable.is_pending() {
            return Ok(Enqueued::Pending(pending));
        }
        self.finish_enqueue(pending).map(Enqueued::Done)
    }

    /// Waits until the batch is as durable as the log's policy asks, then makes it ready
    /// (indexed queues index it only now, so a take never hands out an unsynced record).
    pub(crate) fn finish_enqueue(&self, pending: PendingEnqueue) -> EngineResult<AppendOutcome> {
        self.log.wait_durable(pending.durable)?;
        if !pending.records.is_empty() {
            let mut state = self.state.lock();
            for (delta, stored) in pending.records.iter().enumerate() {
                state.index_record(pending.outcome.base_offset + delta as i64, &stored.record);
            }
        }
        self.ready.notify(usize::MAX);
        Ok(pending.outcome)
    }

    fn indexed(&self) -> bool {
        self.state.lock().index.is_some()
    }

    /// Fills an indexed queue's index from the unsettled part of its log (at open).
    pub(crate) fn rebuild_index(&self) -> EngineResult<()> {
        let mut state = self.state.lock();
        let high_watermark = self.log.high_watermark();
        let mut offset = state.floor(self.log.log_start_offset());
        while offset < high_watermark {
            let records = self.read_records(offset)?;
            let Some(last) = records.last().map(|r| r.offset) else {
                break;
            };
            for stored in records.iter().filter(|r| r.offset >= offset) {
                state.index_record(stored.offset, &stored.record);
            }
            offset = last + 1;
        }
        state.cursor = high_watermark;
        drop(state);
        Ok(())
    }

    /// The decoded records of the batches starting with the one that holds `offset`.
    fn read_records(&self, offset: i64) -> EngineResult<Vec<StoredRecord>> {
        let data = self.log.read(offset, READ_BYTES)?.to_bytes()?;
        decode_all(&data)
    }

    /// Up to `max` records from `offset` on (those of the batch holding it and after), from
    /// the read-ahead when it starts there, else from a fresh log read that refills it.
    fn read_ahead_from(
        &self,
        ahead: &mut VecDeque<StoredRecord>,
        offset: i64,
        max: usize,
    ) -> EngineResult<Vec<StoredRecord>> {
        while ahead.front().is_some_and(|r| r.offset < offset) {
            ahead.pop_front();
        }
        if ahead.front().is_none_or(|r| r.offset != offset) {
            ahead.clear();
            ahead.extend(
                self.read_records(offset)?
                    .into_iter()
                    .filter(|r| r.offset >= offset),
            );
        }
        let count = ahead.len().min(max.max(1));
        Ok(ahead.drain(..count).collect())
    }

    pub(crate) fn take(&self, max: usize) -> EngineResult<Vec<Delivery>> {
        Ok(self.take_head_while(max, &|_| true)?.taken)
    }

    /// Takes ready records while `accept` holds; see `QueueService::take_head_while`.
    pub(crate) fn take_head_while(
        &self,
        max: usize,
        accept: &(dyn Fn(&Record) -> bool + Send + Sync),
    ) -> EngineResult<HeadTake> {
        let mut state = self.state.lock();
        self.check_live()?;
        let high_watermark = self.log.high_watermark();
        let mut ahead = self.read_ahead.lock();
        let taken = state.take_while(
            max,
            high_watermark,
            |offset| self.read_ahead_from(&mut ahead, offset, max),
            accept,
        )?;
        drop(ahead);
        if let Some(op) = taken.journal {
            // Written, not fsynced: losing it only drops the redelivered flag after a crash.
            if let Err(err) = self.journal.append(&[op]) {
                tracing::warn!(queue = %self.name, error = %err, "cannot journal the delivered offset");
            }
        }
        drop(state);
        Ok(HeadTake {
            taken: taken.deliveries,
            head: taken.stopped_at,
        })
    }

    /// Whether settling never fsyncs (the `never` policy), so that a settle's first half may run
    /// on the caller's task and only its due maintenance on the blocking pool.
    pub(crate) fn settles_unsynced(&self) -> bool {
        self.durability == Durability::Never
    }

    /// The first half of an ack: settles in memory and writes the journal, without fsync,
    /// compaction or trim ([`QueueHandle::finish_settle`] does those).
    pub(crate) fn ack_unsynced(&self, ids: &[u64]) -> EngineResult<Settled> {
        let mut state = self.state.lock();
        self.check_live()?;
        let ops = state.ack(ids)?;
        let seq = self
            .journal
            .append(&ops)
            .map_err(journal_io("write the ack journal"))?;
        Ok(self.settled(state, Some(seq), false))
    }

    pub(crate) fn purge(&self) -> EngineResult<u64> {
        let mut state = self.state.lock();
        self.check_live()?;
        let (count, ops) = state.purge(self.log.high_watermark());
        let seq = self
            .journal
            .append(&ops)
            .map_err(journal_io("write the ack journal"))?;
        let settled = self.settled(state, Some(seq), false);
        self.finish_settle(settled)?;
        Ok(count)
    }

    /// The first half of a requeue: puts deliveries back and journals their new requeue counts
    /// (made as durable as acks are by `finish_settle`). A count that cannot be journaled or
    /// fsynced is logged, not failed: the requeue itself has happened, and losing the count only
    /// lowers a delivery count after a crash.
    pub(crate) fn requeue_unsynced(&self, ids: &[u64]) -> EngineResult<Settled> {
        let mut state = self.state.lock();
        self.check_live()?;
        let ops = state.requeue(ids)?;
        let seq = match self.journal.append(&ops) {
            Ok(seq) => Some(seq),
            Err(error) => {
                tracing::warn!(queue = %self.name, %error, "cannot journal requeue counts");
                None
            }
        };
        let settled = self.settled(state, seq, true);
        self.ready.notify(usize::MAX);
        Ok(settled)
    }

    /// Ends a settle's first half: releases `state`, publishes the depth and notes what is due.
    fn settled(
        &self,
        state: parking_lot::MutexGuard<'_, QueueState>,
        seq: Option<u64>,
        counts_only: bool,
    ) -> Settled {
        let maintenance_due = self.maintenance_due(state);
        Settled {
            seq,
            counts_only,
            maintenance_due,
        }
    }

    /// Whether the journal wants compacting or a sealed segment lies below the ack floor
    /// (releases `state` before asking the log).
    fn maintenance_due(&self, state: parking_lot::MutexGuard<'_, QueueState>) -> bool {
        let compact = self
            .journal
            .wants_compaction(&state.settled, state.returns.len());
        let floor = state.floor(self.log.log_start_offset());
        drop(state);
        compact || self.segment_below(floor)
    }

    /// Whether a sealed segment lies wholly below `floor` (so `trim_to` would delete it).
    fn segment_below(&self, floor: i64) -> bool {
        self.log.first_sealed_end().is_some_and(|end| end <= floor)
    }

    /// A settle's second half, which may block: fsyncs the journal as the queue's policy asks,
    /// then compacts and trims if due.
    pub(crate) fn finish_settle(&self, settled: Settled) -> EngineResult<()> {
        if let Some(seq) = settled.seq {
            match self.sync_as_policy_asks(seq) {
                Err(error) if settled.counts_only => {
                    tracing::warn!(queue = %self.name, %error, "cannot fsync requeue counts");
                }
                other => other?,
            }
        }
        if settled.maintenance_due {
            self.run_maintenance()?;
        }
        Ok(())
    }

    /// Whether [`QueueHandle::maintain`] would have work now.
    pub(crate) fn maintenance_due_now(&self) -> bool {
        self.maintenance_due(self.state.lock())
    }

    /// True for the one caller that may now run [`QueueHandle::maintain`] (so that due
    /// maintenance is queued once, not once per settle).
    pub(crate) fn claim_maintenance(&self) -> bool {
        !self.maintaining.swap(true, Ordering::AcqRel)
    }

    /// [`QueueHandle::run_maintenance`] for the holder of `claim_maintenance`'s claim, which
    /// it releases.
    pub(crate) fn maintain(&self) -> EngineResult<()> {
        let result = self.run_maintenance();
        self.maintaining.store(false, Ordering::Release);
        result
    }

    /// Compacts the journal and trims the log if due (may fsync and delete files).
    fn run_maintenance(&self) -> EngineResult<()> {
        let state = self.state.lock();
        self.check_live()?;
        self.compact_if_grown(&state);
        let floor = state.floor(self.log.log_start_offset());
        drop(state);
        self.trim_to(floor, false)
    }

    /// Compacts the journal once it has grown well past a snapshot (the caller holds `state`).
    fn compact_if_grown(&self, state: &QueueState) {
        if self
            .journal
            .wants_compaction(&state.settled, state.returns.len())
            && let Err(err) =
                self.journal
                    .compact(&state.settled, state.delivered_up_to, &state.returns)
        {
            tracing::warn!(queue = %self.name, error = %err, "ack journal compaction failed");
        }
    }

    /// fsyncs the journal up to `seq` when the queue's durability policy asks for it now.
    fn sync_as_policy_asks(&self, seq: u64) -> EngineResult<()> {
        let sync_now = match self.durability {
            Durability::Always => true,
            Durability::Interval(every) => self.last_sync.lock().elapsed() >= every,
            Durability::Never => false,
        };
        if sync_now {
            self.journal
                .sync_to(seq)
                .map_err(journal_io("fsync the ack journal"))?;
            *self.last_sync.lock() = Instant::now();
        }
        Ok(())
    }

    /// Lets storage delete segments wholly below the ack floor. Unless forced, the log start
    /// moves only when a sealed segment lies wholly below the floor: moving it within a segment
    /// frees nothing, and each move is an fsync'd checkpoint under the log's lock. Recovery does
    /// not depend on it: the journal's settled set covers every acked offset.
    fn trim_to(&self, floor: i64, force: bool) -> EngineResult<()> {
        let mut trim = self.trim.lock();
        if floor <= trim.trimmed_to {
            return Ok(());
        }
        if !force && !self.segment_below(floor) {
            return Ok(());
        }
        self.log.delete_before(floor)?;
        trim.trimmed_to = floor;
        Ok(())
    }

    /// fsyncs the journal and moves the log start to the ack floor.
    pub(crate) fn flush(&self) -> EngineResult<()> {
        if self.deleted.load(Ordering::Acquire) {
            return Ok(());
        }
        self.journal
            .sync()
            .map_err(journal_io("fsync the ack journal"))?;
        let floor = self.state.lock().floor(self.log.log_start_offset());
        self.trim_to(floor, true)
    }

    /// Whether a message is ready; an error once the queue is deleted.
    pub(crate) fn has_ready(&self) -> EngineResult<bool> {
        let state = self.state.lock();
        self.check_live()?;
        Ok(state.has_ready(self.log.high_watermark()))
    }

    /// Waits for a ready message without polling (listen, then check, then wait).
    pub(crate) async fn wait_ready(&self, timeout: Duration) -> EngineResult<bool> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let listener = self.ready.listen();
            if self.has_ready()? {
                return Ok(true);
            }
            if tokio::time::timeout_at(deadline, listener).await.is_err() {
                return self.has_ready();
            }
        }
    }

    /// The queue log's segment count (tests watch ack-driven deletion with it).
    pub(crate) fn segment_count(&self) -> usize {
        self.log.segment_count()
    }
}

/// The records of consecutive whole batches in `data` (a queue log read), in order; a batch
/// cut short is an error, never skipped.
pub(crate) fn decode_all(data: &Bytes) -> EngineResult<Vec<StoredRecord>> {
    let mut records = Vec::new();
    let mut pos = 0usize;
    while pos < data.len() {
        let header = BatchHeader::parse(&data[pos..])?;
        let end = pos
            .checked_add(header.total_len)
            .filter(|end| *end <= data.len())
            .ok_or(BatchError::Truncated {
                needed: header.total_len,
                available: data.len() - pos,
            })?;
        records.extend(decode_records(&data.slice(pos..end))?);
        pos = end;
    }
    Ok(records)
}
