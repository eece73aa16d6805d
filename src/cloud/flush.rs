//! The write path: accepted batches gather in one buffer across all partitions; the flusher
//! writes the buffer as one object (batches grouped by partition, each partition's batches in
//! offset order and contiguous), then records every batch in ONE PostgreSQL transaction, then
//! resolves the durability futures of the batches in it.
//!
//! Invariants:
//! - one flush at a time (`CloudLog::flushing`), so flushes commit in numbering order;
//! - a failed PUT or commit fails every batch of the flush and every batch accepted since,
//!   then resets each partition's numbering to its committed high watermark: no offset is ever
//!   acknowledged twice or skipped, and nothing unacknowledged is left half-visible;
//! - after the last flush (engine close) appends are refused with `ShuttingDown`, never left
//!   waiting for a flush that will not come;
//! - a fenced flush (another broker wrote one of its partitions) also marks its partitions as
//!   not led, so they are taken over again from PostgreSQL's high watermark, never written
//!   from a stale one;
//! - idempotent batches' producer state is written in the same transaction as their
//!   coordinates ([`super::producers`]), so it never disagrees with the log;
//! - the transaction advances each partition's high watermark only from the value this broker
//!   expects (`WHERE high_watermark = expected`), so a second writer fails the flush instead of
//!   interleaving offsets;
//! - an object is committed only while its name is younger than half of
//!   `cluster.object_gc_grace_ms`: older, the GC may take it for the leftover of a failed
//!   commit ([`super::maintenance`]), so the flush fails instead.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use bytes::{Bytes, BytesMut};
use object_store::PutPayload;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tributary_api::batch::{VerifiedBatch, set_base_offset};
use tributary_api::{
    AppendOutcome, EngineError, EngineResult, PendingDurability, ProducerBatch, TopicPartition,
};

use super::error::{CloudError, CloudResult};
use super::log::CloudLog;
use super::producers;
use super::state::{Coord, PartitionState};
use super::wake;
use crate::broker::topics::now_ms;

/// How a flush ended, as the durability futures see it.
#[derive(Debug, Clone)]
enum FlushOutcome {
    Committed,
    Failed(Arc<str>),
    /// Topics deleted while their batches waited; those batches were not written.
    CommittedExcept(Arc<HashSet<String>>),
}

/// One accepted batch waiting for its flush.
#[derive(Debug)]
pub(super) struct PendingBatch {
    tp: TopicPartition,
    state: Arc<PartitionState>,
    /// With the assigned base offset written in.
    bytes: Bytes,
    base_offset: i64,
    last_offset: i64,
    max_timestamp: i64,
    record_count: i32,
    /// Idempotent data batches: recorded as producer state in the flush's transaction.
    producer: Option<ProducerBatch>,
}

/// The buffer of the next flush.
#[derive(Debug)]
pub(super) struct Pending {
    batches: Vec<PendingBatch>,
    bytes: usize,
    first_at: Option<Instant>,
    outcome: watch::Sender<Option<FlushOutcome>>,
    dropped_topics: HashSet<String>,
    /// Set when the flusher stopped: later appends are refused, never left waiting.
    closed: bool,
}

impl Default for Pending {
    fn default() -> Self {
        Self {
            batches: Vec::new(),
            bytes: 0,
            first_at: None,
            outcome: watch::Sender::new(None),
            dropped_topics: HashSet::new(),
            closed: false,
        }
    }
}

impl CloudLog {
    /// Numbers `batch` and queues it for the next flush.
    pub(super) fn accept(
        &self,
        tp: &TopicPartition,
        state: Arc<PartitionState>,
        batch: VerifiedBatch,
    ) -> EngineResult<(AppendOutcome, PendingDurability)> {
        let (bytes, header) = batch.into_parts();
        // The base offset is written in place when nobody else holds the buffer (a frontend
        // that built the batch for this append); copied only when shared.
        let mut owned = bytes
            .try_into_mut()
            .unwrap_or_else(|shared| BytesMut::from(shared.as_ref()));
        let (outcome, receiver, wake) = {
            let mut pending = self.pending.lock();
            if pending.closed {
                return Err(EngineError::ShuttingDown);
            }
            let (base_offset, log_start) = {
                let mut offsets = state.offsets.lock();
                let base = offsets.next_offset;
                offsets.next_offset = base + i64::from(header.last_offset_delta) + 1;
                (base, offsets.log_start)
            };
            set_base_offset(&mut owned, base_offset);
            let last_offset = base_offset + i64::from(header.last_offset_delta);
            let first = pending.batches.is_empty();
            pending.first_at.get_or_insert_with(Instant::now);
            pending.bytes += owned.len();
            pending.batches.push(PendingBatch {
                tp: tp.clone(),
                state,
                bytes: owned.freeze(),
                base_offset,
                last_offset,
                max_timestamp: header.max_timestamp,
                record_count: header.record_count,
                producer: producers::sequenced(&header, base_offset),
            });
            let outcome = AppendOutcome {
                base_offset,
                last_offset,
                log_append_time: now_ms(),
                log_start,
            };
            let full = pending.bytes >= self.settings.flush_bytes;
            (outcome, pending.outcome.subscribe(), first || full)
        };
        if wake {
            self.wake.notify_one();
        }
        let topic = tp.topic.clone();
        let durable: PendingDurability = Box::pin(async move {
            let mut receiver = receiver;
            let resolved = receiver
                .wait_for(Option::is_some)
                .await
                .map_err(|_| EngineError::ShuttingDown)?
                .clone();
            match resolved {
                Some(FlushOutcome::Committed) => Ok(()),
                Some(FlushOutcome::CommittedExcept(dropped)) if !dropped.contains(&topic) => Ok(()),
                Some(FlushOutcome::CommittedExcept(_)) => Err(EngineError::UnknownTopic(topic)),
                Some(FlushOutcome::Failed(reason)) => Err(EngineError::from(
                    CloudError::FlushFailed(reason.to_string()),
                )),
                None => Err(EngineError::ShuttingDown),
            }
        });
        Ok((outcome, durable))
    }

    /// When the current buffer is due (`None`: nothing buffered), and whether it is full.
    fn due(&self) -> (Option<Instant>, bool) {
        let pending = self.pending.lock();
        let due = pending
            .first_at
            .map(|first| first + self.settings.flush_interval);
        (due, pending.bytes >= self.settings.flush_bytes)
    }

    /// Flushes every `flush_interval` after the first batch, or at once when `flush_bytes` is
    /// reached, until `stop` fires; then flushes what is left.
    pub(super) async fn run_flusher(self: Arc<Self>, stop: CancellationToken) {
        loop {
            let (due, full) = self.due();
            if full {
                self.flush().await;
                continue;
            }
            match due {
                None => tokio::select! {
                    () = stop.cancelled() => break,
                    () = self.wake.notified() => {}
                },
                Some(due) => tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep_until(due.into()) => self.flush().await,
                    () = self.wake.notified() => {}
                },
            }
        }
        self.flush_closing().await;
    }

    /// The last flush: writes what is buffered and refuses appends from then on.
    async fn flush_closing(&self) {
        self.flush_then(true).await;
    }

    /// Writes the current buffer (if any): one PUT, one transaction.
    pub async fn flush(&self) {
        self.flush_then(false).await;
    }

    /// [`CloudLog::flush`]; with `close`, the buffer left behind refuses appends.
    async fn flush_then(&self, close: bool) {
        let _one_flush = self.flushing.lock().await;
        let taken = {
            let mut pending = self.pending.lock();
            let taken = std::mem::take(&mut *pending);
            pending.closed = taken.closed || close;
            taken
        };
        if taken.batches.is_empty() {
            return;
        }
        let count = taken.batches.len();
        let started = Instant::now();
        if let Some(first) = taken.first_at {
            self.stats
                .queued_micros
                .add(started.saturating_duration_since(first).as_micros() as u64);
        }
        match self.write(&taken.batches).await {
            Ok(layout) => {
                for (batch, coord) in taken.batches.iter().zip(layout) {
                    batch.state.remember([coord]);
                    batch.state.offsets.lock().high_watermark = batch.last_offset + 1;
                }
                for batch in &taken.batches {
                    batch.state.appended.notify(usize::MAX);
                }
                self.stats.batches.add(count as u64);
                let outcome = if taken.dropped_topics.is_empty() {
                    FlushOutcome::Committed
                } else {
                    FlushOutcome::CommittedExcept(Arc::new(taken.dropped_topics))
                };
                taken.outcome.send_replace(Some(outcome));
                tracing::debug!(
                    batches = count,
                    bytes = taken.bytes,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "flushed"
                );
            }
            Err(error) => {
                self.stats.failed_flushes.inc();
                if matches!(error, CloudError::Fenced { .. }) {
                    // Another broker wrote one of these partitions: this broker's offsets are
                    // stale. It stops leading them until the membership round takes them over
                    // again from PostgreSQL's high watermark (or leaves them to the other).
                    for batch in &taken.batches {
                        batch
                            .state
                            .led
                            .store(false, std::sync::atomic::Ordering::Release);
                    }
                }
                let reason: Arc<str> = Arc::from(error.to_string());
                tracing::error!(batches = count, %error, "flush failed; refusing its batches and every batch accepted since");
                let later = {
                    let mut pending = self.pending.lock();
                    for state in self.partitions.read().values() {
                        let mut offsets = state.offsets.lock();
                        offsets.next_offset = offsets.high_watermark;
                    }
                    let later = std::mem::take(&mut *pending);
                    pending.closed = later.closed;
                    later
                };
                later
                    .outcome
                    .send_replace(Some(FlushOutcome::Failed(reason.clone())));
                taken
                    .outcome
                    .send_replace(Some(FlushOutcome::Failed(reason)));
            }
        }
    }

    /// The partitions with a batch in the buffer.
    pub(super) fn pending_partitions(&self) -> HashSet<TopicPartition> {
        let pending = self.pending.lock();
        pending
            .batches
            .iter()
            .map(|batch| batch.tp.clone())
            .collect()
    }

    /// Removes the buffered batches of `topic` (being deleted); their appends fail with
    /// `UnknownTopic` when the flush they were waiting for ends. Call holding `flushing`.
    pub(super) fn drop_pending_topic(&self, topic: &str) {
        let mut pending = self.pending.lock();
        let before = pending.batches.len();
        pending.batches.retain(|batch| batch.tp.topic != topic);
        if pending.batches.len() != before {
            pending.dropped_topics.insert(topic.to_owned());
            pending.bytes = pending.batches.iter().map(|b| b.bytes.len()).sum();
        }
    }

    /// PUTs the object and commits the coordinates; returns each batch's coordinates, in the
    /// order of `batches`.
    async fn write(&self, batches: &[PendingBatch]) -> CloudResult<Vec<Coord>> {
        self.stats.flushes.inc();
        // Group by partition (stable, so each partition keeps its numbering order).
        let mut order: Vec<usize> = (0..batches.len()).collect();
        order.sort_by(|&a, &b| batches[a].tp.cmp(&batches[b].tp));
        // The object is the batches themselves as chunks, not a joined copy: a flush holding a
        // large message would otherwise hold it twice.
        let mut chunks = Vec::with_capacity(batches.len());
        let mut positions = vec![0u64; batches.len()];
        let mut total = 0usize;
        for &index in &order {
            positions[index] = total as u64;
            total += batches[index].bytes.len();
            chunks.push(batches[index].bytes.clone());
        }
        let named_ms = now_ms();
        let key = self.objects.new_key(named_ms)?;
        let put_started = Instant::now();
        self.objects
            .put(&key, chunks.into_iter().collect::<PutPayload>())
            .await?;
        self.stats
            .put_micros
            .add(put_started.elapsed().as_micros() as u64);
        let key: Arc<str> = Arc::from(key);
        let coords: Vec<Coord> = batches
            .iter()
            .zip(&positions)
            .map(|(batch, &at)| Coord {
                base_offset: batch.base_offset,
                last_offset: batch.last_offset,
                max_timestamp: batch.max_timestamp,
                object_key: key.clone(),
                byte_offset: at,
                byte_length: batch.bytes.len() as u32,
            })
            .collect();
        let commit_started = Instant::now();
        self.commit(&key, named_ms, total, batches, &coords).await?;
        self.stats
            .commit_micros
            .add(commit_started.elapsed().as_micros() as u64);
        for (batch, coord) in batches.iter().zip(&coords) {
            let range = coord.byte_offset..coord.byte_offset + u64::from(coord.byte_length);
            self.objects.cache_written(&key, range, batch.bytes.clone());
        }
        Ok(coords)
    }

    /// The one transaction of a flush: the object row, each partition's high watermark moved
    /// from the expected value, one coordinate row per batch, the producer state, and the
    /// notification other brokers wake on ([`wake`]).
    async fn commit(
        &self,
        key: &str,
        named_ms: i64,
        size: usize,
        batches: &[PendingBatch],
        coords: &[Coord],
    ) -> CloudResult<()> {
        // Per partition: (expected high watermark, new high watermark).
        let mut moves: Vec<(&TopicPartition, i64, i64)> = Vec::new();
        let mut index_of: HashMap<&TopicPartition, usize> = HashMap::new();
        for batch in batches {
            match index_of.get(&batch.tp) {
                Some(&index) => moves[index].2 = batch.last_offset + 1,
                None => {
                    index_of.insert(&batch.tp, moves.len());
                    moves.push((&batch.tp, batch.base_offset, batch.last_offset + 1));
                }
            }
        }
        let move_topics: Vec<&str> = moves.iter().map(|(tp, _, _)| tp.topic.as_str()).collect();
        let move_partitions: Vec<i32> =
            moves.iter().map(|(tp, _, _)| tp.partition as i32).collect();
        let expected: Vec<i64> = moves.iter().map(|m| m.1).collect();
        let advanced: Vec<i64> = moves.iter().map(|m| m.2).collect();

        let topics: Vec<&str> = batches.iter().map(|b| b.tp.topic.as_str()).collect();
        let partitions: Vec<i32> = batches.iter().map(|b| b.tp.partition as i32).collect();
        let bases: Vec<i64> = coords.iter().map(|c| c.base_offset).collect();
        let lasts: Vec<i64> = coords.iter().map(|c| c.last_offset).collect();
        let timestamps: Vec<i64> = coords.iter().map(|c| c.max_timestamp).collect();
        let counts: Vec<i32> = batches.iter().map(|b| b.record_count).collect();
        let positions: Vec<i64> = coords.iter().map(|c| c.byte_offset as i64).collect();
        let lengths: Vec<i32> = coords.iter().map(|c| c.byte_length as i32).collect();

        let mut client = self.pool.get().await?;
        let transaction = client
            .transaction()
            .await
            .map_err(CloudError::pg("starting a flush transaction"))?;
        transaction
            .execute(
                "INSERT INTO objects (key, broker_id, size_bytes, created_ms) VALUES ($1, $2, $3, $4)",
                &[&key, &i64::from(self.settings.broker_id), &(size as i64), &now_ms()],
            )
            .await
            .map_err(CloudError::pg("recording a log object"))?;
        let moved = transaction
            .execute(
                "UPDATE partitions AS p SET high_watermark = m.advanced
                 FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[])
                      AS m(topic, partition, expected, advanced)
                 WHERE p.topic = m.topic AND p.partition = m.partition
                   AND p.high_watermark = m.expected",
                &[&move_topics, &move_partitions, &expected, &advanced],
            )
            .await
            .map_err(CloudError::pg("advancing high watermarks"))?;
        if moved as usize != moves.len() {
            let (tp, expected, _) = moves[0];
            return Err(CloudError::Fenced {
                partition: format!("{tp} (one of {} in the flush)", moves.len()),
                expected,
            });
        }
        transaction
            .execute(
                "INSERT INTO batches (topic, partition, base_offset, last_offset, max_timestamp,
                                      record_count, object_key, byte_offset, byte_length)
                 SELECT t, p, b, l, ts, c, $9, o, n
                 FROM unnest($1::text[], $2::int[], $3::bigint[], $4::bigint[], $5::bigint[],
                             $6::int[], $7::bigint[], $8::int[]) AS u(t, p, b, l, ts, c, o, n)",
                &[
                    &topics,
                    &partitions,
                    &bases,
                    &lasts,
                    &timestamps,
                    &counts,
                    &positions,
                    &lengths,
                    &key,
                ],
            )
            .await
            .map_err(CloudError::pg("recording batch coordinates"))?;
        let sequenced: Vec<(&TopicPartition, ProducerBatch)> = batches
            .iter()
            .filter_map(|batch| Some((&batch.tp, batch.producer?)))
            .collect();
        producers::record(&transaction, &sequenced).await?;
        // Other brokers' readers of these partitions wake when this commits.
        let notified: Vec<wake::Entry<'_>> = moves
            .iter()
            .zip(log_starts(batches, &index_of, moves.len()))
            .map(|((tp, _, advanced), log_start)| {
                (tp.topic.as_str(), tp.partition, log_start, *advanced)
            })
            .collect();
        wake::notify(&transaction, &notified).await?;
        // The GC deletes objects without a row once their name is `object_gc_grace` old: past
        // half of it, give up (the flush fails retriably) rather than race it.
        let grace_ms = i64::try_from(self.settings.object_gc_grace.as_millis()).unwrap_or(i64::MAX);
        if now_ms().saturating_sub(named_ms) > grace_ms / 2 {
            return Err(CloudError::FlushFailed(format!(
                "object {key} was written more than half of cluster.object_gc_grace_ms ago; \
                 not committing it"
            )));
        }
        transaction
            .commit()
            .await
            .map_err(CloudError::pg("committing a flush"))?;
        self.stats.flush_transactions.inc();
        Ok(())
    }
}

/// Each moved partition's log start (this broker's view), in the order of the moves.
fn log_starts(
    batches: &[PendingBatch],
    index_of: &HashMap<&TopicPartition, usize>,
    moves: usize,
) -> Vec<i64> {
    let mut starts = vec![0; moves];
    for batch in batches {
        if let Some(&index) = index_of.get(&batch.tp) {
            starts[index] = batch.state.offsets.lock().log_start;
        }
    }
    starts
}
