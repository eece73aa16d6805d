//! One queue run by this broker: the local engine's delivery state (`broker::queues::state`)
//! over the queue's cloud-log partition, with its settles committed to PostgreSQL
//! ([`super::acks`]).
//!
//! Lock order: `state` before `cache`; neither is held across an await (reads from the log
//! happen between two attempts of a take, with no lock held).
//!
//! Invariants:
//! - a message is ready only once its batch committed (the partition's public high watermark);
//! - an ack, requeue or purge returns only after its entries committed; if the commit fails the
//!   queue is marked broken and the next call takes it over again from PostgreSQL, so the
//!   in-memory state never runs ahead of what a new owner would rebuild (the failed settle's
//!   messages are delivered again);
//! - the delivered-up-to mark written by a take is not waited for: losing it only loses the
//!   `redelivered` flag of messages handed out just before a crash, as on the local engine;
//! - a take never settles an offset because a record was not in the read cache: a miss ends
//!   the attempt, the record is read from the log, and the take goes on.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use event_listener::Event;
use parking_lot::Mutex;
use tributary_api::batch::{BatchError, BatchHeader, decode_records};
use tributary_api::{
    AppendOutcome, EngineError, EngineResult, HeadFilter, HeadTake, LogService, QueueDepth,
    StoredRecord, TopicPartition,
};

use super::acks::{AckWrite, AckWriter, Definition};
use crate::broker::queues::decode_all;
use crate::broker::queues::journal::{JournalOp, Replayed, encode_ops};
use crate::broker::queues::ready::ReadyIndex;
use crate::broker::queues::state::QueueState;
use crate::cloud::error::CloudError;
use crate::cloud::log::CloudLog;

/// Bytes read from the log per cache miss.
const READ_BYTES: usize = 256 * 1024;

/// Settle rows written between two compactions of a queue.
const COMPACT_EVERY_ROWS: u64 = 512;

/// Records handed to the state per read closure call.
const RUN_LIMIT: usize = 1024;

#[derive(Debug)]
pub(super) struct OwnedQueue {
    pub(super) name: String,
    pub(super) tp: TopicPartition,
    epoch: i64,
    /// The partition's take-over generation when this broker took the queue over.
    pub(super) generation: u64,
    log: Arc<CloudLog>,
    writer: AckWriter,
    state: Mutex<QueueState>,
    /// Records read from the log and not yet handed out, by offset.
    cache: Mutex<BTreeMap<i64, StoredRecord>>,
    /// Notified by enqueue, requeue and delete.
    ready: Event,
    /// Deleted, or a settle failed to commit: calls fail and the queue is taken over again.
    pub(super) broken: AtomicBool,
    rows_since_compaction: AtomicU64,
}

impl OwnedQueue {
    /// Builds the queue from its settle rows: every unsettled message is ready again, those
    /// handed out before (below the delivered-up-to mark) flagged redelivered.
    pub(super) async fn open(
        name: String,
        tp: TopicPartition,
        definition: Definition,
        replayed: Replayed,
        log: Arc<CloudLog>,
        writer: AckWriter,
    ) -> EngineResult<Self> {
        let generation = log.partition_generation(&tp);
        let offsets = log.offsets(&tp)?;
        let mut state = QueueState::recovered(
            replayed.settled,
            replayed.delivered_up_to,
            offsets.log_start,
        );
        state.returns = replayed.returns;
        let options = &definition.options;
        if options.max_priority.is_some() || options.count_bytes {
            state.index = Some(ReadyIndex::new(options.max_priority.unwrap_or(0)));
            let mut offset = state.floor(offsets.log_start);
            while offset < offsets.high_watermark {
                let data = log.read(&tp, offset, READ_BYTES).await?.data;
                let records = decode_all(&data)?;
                let Some(last) = records.last().map(|r| r.offset) else {
                    break;
                };
                for stored in records.iter().filter(|r| r.offset >= offset) {
                    state.index_record(stored.offset, &stored.record);
                }
                offset = last + 1;
            }
            state.cursor = offsets.high_watermark;
        }
        Ok(Self {
            name,
            tp,
            epoch: definition.epoch,
            generation,
            log,
            writer,
            state: Mutex::new(state),
            cache: Mutex::default(),
            ready: Event::new(),
            broken: AtomicBool::new(false),
            rows_since_compaction: AtomicU64::new(0),
        })
    }

    fn check(&self) -> EngineResult<()> {
        if self.broken.load(Ordering::Acquire) {
            return Err(
                CloudError::NotLeader(format!("queue {} (being taken over)", self.name)).into(),
            );
        }
        Ok(())
    }

    fn high_watermark(&self) -> EngineResult<i64> {
        Ok(self.log.offsets(&self.tp)?.high_watermark)
    }

    pub(super) fn depth(&self) -> EngineResult<QueueDepth> {
        self.check()?;
        let high_watermark = self.high_watermark()?;
        Ok(self.state.lock().depth(high_watermark))
    }

    pub(super) fn mark_broken(&self) {
        self.broken.store(true, Ordering::Release);
        self.ready.notify(usize::MAX);
    }

    pub(super) async fn enqueue(&self, batch: Bytes) -> EngineResult<AppendOutcome> {
        self.check()?;
        let header = BatchHeader::parse(&batch)?;
        let codec = (header.attributes & 0x07) as u8;
        if codec != 0 {
            return Err(BatchError::Compressed(codec).into());
        }
        let indexed = self.state.lock().index.is_some();
        let records = match indexed {
            true => decode_records(&batch)?,
            false => Vec::new(),
        };
        let outcome = self.log.append(&self.tp, batch).await?;
        if indexed {
            let mut state = self.state.lock();
            for (i, stored) in records.iter().enumerate() {
                state.index_record(outcome.base_offset + i as i64, &stored.record);
            }
        }
        self.ready.notify(usize::MAX);
        Ok(outcome)
    }

    /// Takes what `filter` accepts at the head, reading from the log on cache misses.
    pub(super) async fn take(&self, max: usize, filter: &HeadFilter) -> EngineResult<HeadTake> {
        let mut out = HeadTake::default();
        loop {
            self.check()?;
            let high_watermark = self.high_watermark()?;
            let mut miss = None;
            let attempt = {
                let mut state = self.state.lock();
                let mut cache = self.cache.lock();
                let taken = state.take_while(
                    max - out.taken.len(),
                    high_watermark,
                    |offset| match contiguous_from(&cache, offset) {
                        records if !records.is_empty() => Ok(records),
                        _ => {
                            miss = Some(offset);
                            Err(EngineError::ShuttingDown)
                        }
                    },
                    |record| filter.accepts(record),
                );
                if let Ok(taken) = &taken {
                    if let Some(op) = taken.journal {
                        self.writer.send(AckWrite::Append {
                            queue: self.name.clone(),
                            epoch: self.epoch,
                            entries: encode_ops(&[op]),
                            done: None,
                        });
                    }
                    for delivery in &taken.deliveries {
                        cache.remove(&(delivery.id as i64));
                    }
                    prune(&mut cache, &state);
                }
                taken
            };
            match attempt {
                Ok(taken) => {
                    out.taken.extend(taken.deliveries);
                    if taken.stopped_at.is_some() || miss.is_none() || out.taken.len() >= max {
                        out.head = taken.stopped_at;
                        return Ok(out);
                    }
                }
                Err(error) if miss.is_none() => return Err(error),
                Err(_) => {}
            }
            let Some(offset) = miss else {
                return Ok(out);
            };
            let data = self.log.read(&self.tp, offset, READ_BYTES).await?.data;
            let records = decode_all(&data)?;
            if !records.iter().any(|r| r.offset == offset) {
                // Below the log start (trimmed) or past the end: nothing to hand out there.
                tracing::warn!(queue = %self.name, offset, "queue record not found in the log");
                return Ok(out);
            }
            let mut cache = self.cache.lock();
            for stored in records {
                cache.insert(stored.offset, stored);
            }
        }
    }

    pub(super) async fn wait_ready(&self, timeout: Duration) -> EngineResult<bool> {
        let deadline = tokio::time::Instant::now() + timeout;
        let appended = self.log.state(&self.tp)?;
        loop {
            let listener = self.ready.listen();
            let commit = appended.appended.listen();
            self.check()?;
            let high_watermark = self.high_watermark()?;
            if self.state.lock().has_ready(high_watermark) {
                return Ok(true);
            }
            tokio::select! {
                () = listener => {}
                () = commit => {}
                () = tokio::time::sleep_until(deadline) => {
                    let high_watermark = self.high_watermark()?;
                    return Ok(self.state.lock().has_ready(high_watermark));
                }
            }
        }
    }

    /// Sends entries under the state lock (so they reach PostgreSQL in state order) and waits
    /// for their commit; a failed commit breaks the queue (see the module doc).
    async fn commit(&self, ops: Vec<JournalOp>) -> EngineResult<()> {
        let (done, committed) = tokio::sync::oneshot::channel();
        self.writer.send(AckWrite::Append {
            queue: self.name.clone(),
            epoch: self.epoch,
            entries: encode_ops(&ops),
            done: Some(done),
        });
        let outcome = match committed.await {
            Ok(outcome) => outcome,
            Err(_) => Err(CloudError::Rpc("the ack writer stopped".to_owned())),
        };
        if let Err(error) = outcome {
            self.mark_broken();
            return Err(error.into());
        }
        if self.rows_since_compaction.fetch_add(1, Ordering::AcqRel) + 1 >= COMPACT_EVERY_ROWS {
            self.compact().await;
        }
        Ok(())
    }

    pub(super) async fn ack(&self, ids: &[u64]) -> EngineResult<()> {
        self.check()?;
        let ops = self.state.lock().ack_carried_over(ids)?;
        self.commit(ops).await
    }

    pub(super) async fn requeue(&self, ids: &[u64]) -> EngineResult<()> {
        self.check()?;
        let ops = self.state.lock().requeue_carried_over(ids)?;
        self.ready.notify(usize::MAX);
        self.commit(ops).await
    }

    pub(super) async fn purge(&self) -> EngineResult<u64> {
        self.check()?;
        let high_watermark = self.high_watermark()?;
        let (count, ops) = self.state.lock().purge(high_watermark);
        self.cache.lock().clear();
        self.commit(ops).await?;
        Ok(count)
    }

    /// Replaces the queue's settle rows by one snapshot and lets the log start move up to the
    /// ack floor (the maintenance job deletes objects no batch refers to any more).
    async fn compact(&self) {
        self.rows_since_compaction.store(0, Ordering::Release);
        let log_start = match self.log.offsets(&self.tp) {
            Ok(offsets) => offsets.log_start,
            Err(_) => return,
        };
        let floor = {
            let state = self.state.lock();
            let mut ops: Vec<JournalOp> = state
                .settled
                .ranges()
                .map(|(from, to)| JournalOp::AckRange { from, to })
                .collect();
            if state.delivered_up_to >= 0 {
                ops.push(JournalOp::DeliveredUpTo(state.delivered_up_to));
            }
            ops.extend(
                state
                    .returns
                    .iter()
                    .map(|(&offset, &count)| JournalOp::Returns { offset, count }),
            );
            self.writer.send(AckWrite::Compact {
                queue: self.name.clone(),
                epoch: self.epoch,
                snapshot: encode_ops(&ops),
            });
            state.floor(log_start)
        };
        if floor > log_start
            && let Err(error) = self.log.delete_records(&self.tp, floor).await
        {
            tracing::warn!(queue = %self.name, %error, "cannot trim a queue's log to its ack floor");
        }
    }

    pub(super) fn held(&self) -> u64 {
        let high_watermark = self.high_watermark().unwrap_or(0);
        let depth = self.state.lock().depth(high_watermark);
        depth.ready + depth.unacked
    }
}

/// The cached records from `offset` on while their offsets run without a gap (a gap would let
/// the state skip the records in it).
fn contiguous_from(cache: &BTreeMap<i64, StoredRecord>, offset: i64) -> Vec<StoredRecord> {
    cache
        .range(offset..)
        .zip(offset..)
        .take_while(|((at, _), next)| **at == *next)
        .take(RUN_LIMIT)
        .map(|((_, stored), _)| stored.clone())
        .collect()
}

/// Drops cached records that are no longer ready (settled or handed out: a requeued one is
/// read again when it is taken again).
fn prune(cache: &mut BTreeMap<i64, StoredRecord>, state: &QueueState) {
    cache.retain(|offset, _| !state.settled.contains(*offset) && !state.unacked.contains(offset));
}
