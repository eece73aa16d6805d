//! The in-memory delivery state of one queue, independent of where the records come from.
//!
//! Every offset of the queue log below the high watermark is in exactly one of these states:
//! settled (acked or purged; in `settled`), unacked (handed out, in `unacked`), requeued (put
//! back, in `requeued`), or ready and never taken since the last start (at or after `cursor`
//! and not settled). Offsets below `cursor` are settled, unacked or requeued. After a restart
//! `cursor` starts at the lowest unsettled offset, and offsets below `redeliver_below` (handed
//! out before the restart) are flagged redelivered when taken again.
//!
//! An indexed queue (priorities or byte counting, see `queues/ready.rs`) keeps its ready
//! messages in `index` instead: there `requeued` stays empty and `cursor` is not used after the
//! index was built; a message is ready once indexed, which `enqueue` does right after the append.

use std::collections::{BTreeSet, HashMap};

use tributary_api::{Delivery, EngineError, EngineResult, QueueDepth, Record, StoredRecord};

use super::journal::JournalOp;
use super::ready::ReadyIndex;
use super::settled::SettledSet;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct QueueState {
    pub(crate) settled: SettledSet,
    /// Next offset never handed out since the last start.
    pub(crate) cursor: i64,
    pub(crate) requeued: BTreeSet<i64>,
    pub(crate) unacked: BTreeSet<i64>,
    /// Offsets below this were handed out before the last restart.
    pub(crate) redeliver_below: i64,
    /// Highest offset ever handed out (journaled); -1 if none.
    pub(crate) delivered_up_to: i64,
    /// The ready messages of an indexed queue.
    pub(crate) index: Option<ReadyIndex>,
    /// How often each unsettled message was requeued (journaled by `requeue`, replayed at
    /// start, so a quorum queue's delivery count survives a restart).
    pub(crate) returns: HashMap<i64, u32>,
}

/// What a `take` did.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    pub(crate) deliveries: Vec<Delivery>,
    /// The ready record the `accept` filter refused, left in place.
    pub(crate) stopped_at: Option<Record>,
    /// A DeliveredUpTo entry to journal, if the highest handed-out offset grew.
    pub(crate) journal: Option<JournalOp>,
}

impl QueueState {
    /// State after replaying a journal over a log that starts at `log_start`.
    pub(crate) fn recovered(settled: SettledSet, delivered_up_to: i64, log_start: i64) -> Self {
        let cursor = settled.first_unsettled_from(log_start);
        Self {
            settled,
            cursor,
            requeued: BTreeSet::new(),
            unacked: BTreeSet::new(),
            redeliver_below: delivered_up_to.saturating_add(1),
            delivered_up_to,
            index: None,
            returns: HashMap::new(),
        }
    }

    /// Indexes a record read from (or just appended to) the log, unless it is settled.
    pub(crate) fn index_record(&mut self, offset: i64, record: &Record) {
        let redelivered = offset < self.redeliver_below;
        if self.settled.contains(offset) || self.unacked.contains(&offset) {
            return;
        }
        if let Some(index) = &mut self.index {
            let entry = index.entry_for(record, redelivered);
            index.insert(offset, entry);
        }
    }

    /// Lowest offset at or after `log_start` that is not settled: the log may start here.
    pub(crate) fn floor(&self, log_start: i64) -> i64 {
        self.settled.first_unsettled_from(log_start)
    }

    pub(crate) fn depth(&self, high_watermark: i64) -> QueueDepth {
        if let Some(index) = &self.index {
            return QueueDepth {
                ready: index.len() as u64,
                unacked: self.unacked.len() as u64,
                ready_bytes: index.bytes(),
            };
        }
        let fresh = u64::try_from(high_watermark - self.cursor).unwrap_or(0);
        let fresh = fresh.saturating_sub(self.settled.count_in(self.cursor, high_watermark));
        QueueDepth {
            ready: self.requeued.len() as u64 + fresh,
            unacked: self.unacked.len() as u64,
            ready_bytes: 0,
        }
    }

    pub(crate) fn has_ready(&self, high_watermark: i64) -> bool {
        if let Some(index) = &self.index {
            return index.len() > 0;
        }
        !self.requeued.is_empty() || self.settled.first_unsettled_from(self.cursor) < high_watermark
    }

    /// Takes up to `max` ready messages: requeued ones first, then fresh ones from the cursor.
    /// `read(offset)` returns the decoded records of the batches starting with the one that
    /// holds `offset` (empty at the high watermark). A read error after some messages were
    /// taken returns those; the failed message stays ready.
    #[cfg(test)]
    pub(crate) fn take<R>(
        &mut self,
        max: usize,
        high_watermark: i64,
        read: R,
    ) -> EngineResult<Taken>
    where
        R: FnMut(i64) -> EngineResult<Vec<StoredRecord>>,
    {
        self.take_while(max, high_watermark, read, |_| true)
    }

    /// Takes ready records in delivery order (requeued first) while `accept` holds; the first
    /// refused one stays ready and is returned in `stopped_at`.
    pub(crate) fn take_while<R, A>(
        &mut self,
        max: usize,
        high_watermark: i64,
        mut read: R,
        accept: A,
    ) -> EngineResult<Taken>
    where
        R: FnMut(i64) -> EngineResult<Vec<StoredRecord>>,
        A: Fn(&Record) -> bool,
    {
        let mut taken = Taken::default();
        let mut window: Vec<StoredRecord> = Vec::new();
        let mut failure = None;
        if self.index.is_some() {
            failure = self.take_indexed(max, &mut window, &mut read, &accept, &mut taken);
        }
        while self.index.is_none() && taken.deliveries.len() < max {
            let Some(offset) = self.requeued.first().copied() else {
                break;
            };
            match find_record(&mut window, offset, &mut read) {
                Ok(Some(record)) if !accept(&record.record) => {
                    taken.stopped_at = Some(record.record);
                    break;
                }
                Ok(Some(record)) => {
                    self.requeued.remove(&offset);
                    self.unacked.insert(offset);
                    let returns = self.returns_of(offset);
                    taken.deliveries.push(delivery(record, true, returns));
                }
                Ok(None) => {
                    // Not in the log any more: nothing to deliver, so settle it.
                    tracing::warn!(offset, "requeued offset is missing from the queue log");
                    self.requeued.remove(&offset);
                    self.settled.insert(offset);
                }
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            }
        }
        while self.index.is_none()
            && failure.is_none()
            && taken.stopped_at.is_none()
            && taken.deliveries.len() < max
        {
            self.cursor = self.settled.first_unsettled_from(self.cursor);
            if self.cursor >= high_watermark {
                break;
            }
            let records = match read(self.cursor) {
                Ok(records) => records,
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            };
            let before = self.cursor;
            for stored in records {
                if stored.offset < self.cursor {
                    continue;
                }
                if stored.offset >= high_watermark || taken.deliveries.len() >= max {
                    break;
                }
                if self.settled.contains(stored.offset) {
                    self.cursor = stored.offset + 1;
                    continue;
                }
                if !accept(&stored.record) {
                    taken.stopped_at = Some(stored.record);
                    break;
                }
                self.cursor = stored.offset + 1;
                self.unacked.insert(stored.offset);
                let redelivered = stored.offset < self.redeliver_below;
                let returns = self.returns_of(stored.offset);
                taken
                    .deliveries
                    .push(delivery(stored, redelivered, returns));
            }
            if self.cursor == before && taken.stopped_at.is_none() {
                // The log returned nothing at the cursor; stop rather than spin.
                break;
            }
        }
        if let Some(err) = failure
            && taken.deliveries.is_empty()
        {
            return Err(err);
        }
        let highest = taken.deliveries.iter().map(|d| d.id).max();
        if let Some(highest) = highest.and_then(|h| i64::try_from(h).ok())
            && highest > self.delivered_up_to
        {
            self.delivered_up_to = highest;
            taken.journal = Some(JournalOp::DeliveredUpTo(highest));
        }
        Ok(taken)
    }

    /// The indexed part of `take_while`: returns the read error that stopped it, if any.
    fn take_indexed<R, A>(
        &mut self,
        max: usize,
        window: &mut Vec<StoredRecord>,
        read: &mut R,
        accept: &A,
        taken: &mut Taken,
    ) -> Option<EngineError>
    where
        R: FnMut(i64) -> EngineResult<Vec<StoredRecord>>,
        A: Fn(&Record) -> bool,
    {
        while taken.deliveries.len() < max {
            let (offset, entry) = self.index.as_ref()?.first()?;
            let index = self.index.as_mut()?;
            match find_record(window, offset, read) {
                Ok(Some(record)) if !accept(&record.record) => {
                    taken.stopped_at = Some(record.record);
                    return None;
                }
                Ok(Some(record)) => {
                    index.hand_out(offset, entry.priority);
                    self.unacked.insert(offset);
                    let returns = self.returns_of(offset);
                    taken
                        .deliveries
                        .push(delivery(record, entry.redelivered, returns));
                }
                Ok(None) => {
                    tracing::warn!(offset, "indexed offset is missing from the queue log");
                    index.discard(offset, entry.priority);
                    self.settled.insert(offset);
                }
                Err(err) => return Some(err),
            }
        }
        None
    }

    fn returns_of(&self, offset: i64) -> u32 {
        self.returns.get(&offset).copied().unwrap_or(0)
    }

    /// Checks that every id is outstanding (and listed once); returns them as offsets.
    fn outstanding(&self, ids: &[u64]) -> EngineResult<Vec<i64>> {
        let mut offsets = ids
            .iter()
            .map(|&id| match i64::try_from(id) {
                Ok(offset) if self.unacked.contains(&offset) => Ok(offset),
                _ => Err(EngineError::UnknownDelivery(id)),
            })
            .collect::<EngineResult<Vec<i64>>>()?;
        // Sorted (settles usually name them in order already), a repeated id sits next to itself.
        offsets.sort_unstable();
        if let Some(pair) = offsets.windows(2).find(|pair| pair[0] == pair[1]) {
            return Err(EngineError::UnknownDelivery(pair[0] as u64));
        }
        Ok(offsets)
    }

    /// Settles deliveries; all or none. Returns the journal entries to write: one per run of
    /// consecutive offsets.
    pub(crate) fn ack(&mut self, ids: &[u64]) -> EngineResult<Vec<JournalOp>> {
        let offsets = self.outstanding(ids)?;
        for &offset in &offsets {
            self.unacked.remove(&offset);
            if let Some(index) = &mut self.index {
                index.settle(offset);
            }
        }
        self.forget_returns(&offsets);
        Ok(self.settle_runs(&offsets))
    }

    /// [`QueueState::ack`] for a queue whose deliveries may outlive their owner's view of them
    /// (the cloud engine: consumers keep the ids an earlier owner handed out, and deliveries
    /// lent to a broker that went away are put back; ids are log offsets): an outstanding id
    /// is acked as usual; one handed out before (at most `delivered_up_to`) and ready again
    /// here is settled in place, sparing its redelivery; one already settled is ignored. An
    /// id never handed out is unknown, and then nothing is settled.
    pub(crate) fn ack_carried_over(&mut self, ids: &[u64]) -> EngineResult<Vec<JournalOp>> {
        let mut offsets = Vec::with_capacity(ids.len());
        for &id in ids {
            let offset = i64::try_from(id).map_err(|_| EngineError::UnknownDelivery(id))?;
            if self.settled.contains(offset) {
                continue;
            }
            if !self.unacked.contains(&offset) && offset > self.delivered_up_to {
                return Err(EngineError::UnknownDelivery(id));
            }
            offsets.push(offset);
        }
        offsets.sort_unstable();
        offsets.dedup();
        for &offset in &offsets {
            if !self.unacked.remove(&offset) {
                // Ready again since the take-over: out of the ready set, then settled below.
                self.requeued.remove(&offset);
                if let Some(index) = &mut self.index {
                    index.remove_ready_offset(offset);
                }
            } else if let Some(index) = &mut self.index {
                index.settle(offset);
            }
        }
        self.forget_returns(&offsets);
        Ok(self.settle_runs(&offsets))
    }

    /// [`QueueState::requeue`] in the same setting as [`QueueState::ack_carried_over`]: ids
    /// handed out before and now ready or settled here need nothing and are skipped.
    pub(crate) fn requeue_carried_over(&mut self, ids: &[u64]) -> EngineResult<Vec<JournalOp>> {
        let mut outstanding = Vec::with_capacity(ids.len());
        for &id in ids {
            let offset = i64::try_from(id).map_err(|_| EngineError::UnknownDelivery(id))?;
            if self.unacked.contains(&offset) {
                outstanding.push(id);
            } else if !self.settled.contains(offset) && offset > self.delivered_up_to {
                return Err(EngineError::UnknownDelivery(id));
            }
        }
        outstanding.sort_unstable();
        outstanding.dedup();
        self.requeue(&outstanding)
    }

    /// Puts deliveries back at the front; all or none. Returns the journal entries (their new
    /// requeue counts) to write.
    pub(crate) fn requeue(&mut self, ids: &[u64]) -> EngineResult<Vec<JournalOp>> {
        let offsets = self.outstanding(ids)?;
        let mut ops = Vec::with_capacity(offsets.len());
        for offset in offsets {
            self.unacked.remove(&offset);
            let count = self.returns.entry(offset).or_default();
            *count = count.saturating_add(1);
            ops.push(JournalOp::Returns {
                offset,
                count: *count,
            });
            match &mut self.index {
                Some(index) => index.put_back(offset),
                None => {
                    self.requeued.insert(offset);
                }
            }
        }
        Ok(ops)
    }

    /// Adds sorted `offsets` to the settled set, one range per run of consecutive offsets,
    /// and returns the matching journal entries.
    fn settle_runs(&mut self, offsets: &[i64]) -> Vec<JournalOp> {
        offsets
            .chunk_by(|a, b| b - a == 1)
            .map(|run| {
                let (from, to) = (run[0], run[run.len() - 1] + 1);
                self.settled.insert_range(from, to);
                match run.len() {
                    1 => JournalOp::Ack(from),
                    _ => JournalOp::AckRange { from, to },
                }
            })
            .collect()
    }

    /// Drops the requeue counts of settled offsets (hashing each is skipped when none exist,
    /// the usual case).
    fn forget_returns(&mut self, offsets: &[i64]) {
        if !self.returns.is_empty() {
            for offset in offsets {
                self.returns.remove(offset);
            }
        }
    }

    /// Settles every ready message; returns how many and the journal entries to write.
    pub(crate) fn purge(&mut self, high_watermark: i64) -> (u64, Vec<JournalOp>) {
        if let Some(index) = &mut self.index {
            let offsets = index.drain_ready();
            let ops = self.settle_runs(&offsets);
            self.forget_returns(&offsets);
            return (offsets.len() as u64, ops);
        }
        let count = self.depth(high_watermark).ready;
        let mut ops: Vec<JournalOp> = self.requeued.iter().map(|&o| JournalOp::Ack(o)).collect();
        for &offset in &self.requeued {
            self.settled.insert(offset);
            self.returns.remove(&offset);
        }
        self.requeued.clear();
        if self.cursor < high_watermark {
            ops.push(JournalOp::AckRange {
                from: self.cursor,
                to: high_watermark,
            });
            self.settled.insert_range(self.cursor, high_watermark);
            self.cursor = high_watermark;
        }
        (count, ops)
    }
}

fn delivery(stored: StoredRecord, redelivered: bool, returns: u32) -> Delivery {
    Delivery {
        // Offsets in a queue log are never negative.
        id: u64::try_from(stored.offset).unwrap_or(0),
        record: stored.record,
        redelivered,
        returns,
    }
}

/// The record at `offset`, from `window` (the last records read) or a fresh read.
fn find_record<R>(
    window: &mut Vec<StoredRecord>,
    offset: i64,
    read: &mut R,
) -> EngineResult<Option<StoredRecord>>
where
    R: FnMut(i64) -> EngineResult<Vec<StoredRecord>>,
{
    let in_window = |window: &[StoredRecord]| {
        window
            .binary_search_by_key(&offset, |r| r.offset)
            .ok()
            .map(|i| window[i].clone())
    };
    if let Some(record) = in_window(window) {
        return Ok(Some(record));
    }
    *window = read(offset)?;
    Ok(in_window(window))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tributary_api::Record;

    use super::*;

    /// A log of `n` records in batches of three.
    fn reader(n: i64) -> impl FnMut(i64) -> EngineResult<Vec<StoredRecord>> {
        move |offset| {
            let start = offset - offset % 3;
            Ok((start..(start + 3).min(n))
                .map(|o| StoredRecord {
                    offset: o,
                    record: Record {
                        value: Some(Bytes::from(o.to_string())),
                        ..Record::default()
                    },
                })
                .collect())
        }
    }

    fn ids(taken: &Taken) -> Vec<(u64, bool)> {
        taken
            .deliveries
            .iter()
            .map(|d| (d.id, d.redelivered))
            .collect()
    }

    fn value(record: &Record) -> i64 {
        let bytes = record.value.as_deref().unwrap_or_default();
        std::str::from_utf8(bytes).unwrap().parse().unwrap()
    }

    #[test]
    fn take_while_stops_at_the_first_refused_record_and_leaves_it_ready() {
        let mut state = QueueState::recovered(SettledSet::default(), -1, 0);
        let first = state.take(2, 10, reader(10)).unwrap();
        state.ack(&[1]).unwrap();
        state.requeue(&[0]).unwrap();
        // Requeued 0 first, then 2.. from the log (1 is settled); 4 is refused.
        let taken = state
            .take_while(10, 10, reader(10), |r| value(r) < 4)
            .unwrap();
        assert_eq!(ids(&first), vec![(0, false), (1, false)]);
        assert_eq!(ids(&taken), vec![(0, true), (2, false), (3, false)]);
        assert_eq!(taken.stopped_at.as_ref().map(value), Some(4));
        assert_eq!(state.depth(10).ready, 6, "4..10 stay ready");
        // A refused requeued head stops the sweep before the log.
        state.requeue(&[2]).unwrap();
        let taken = state.take_while(10, 10, reader(10), |_| false).unwrap();
        assert!(taken.deliveries.is_empty());
        assert_eq!(taken.stopped_at.as_ref().map(value), Some(2));
        // The refused records are handed out, in order and not redelivered, by a later take.
        let rest = state.take(10, 10, reader(10)).unwrap();
        let expected: Vec<(u64, bool)> = std::iter::once((2, true))
            .chain((4..10).map(|o| (o, false)))
            .collect();
        assert_eq!(ids(&rest), expected);
        let none = state.take_while(10, 10, reader(10), |_| true).unwrap();
        assert!(none.deliveries.is_empty() && none.stopped_at.is_none());
    }

    #[test]
    fn take_ack_requeue_and_depth() {
        let mut state = QueueState::recovered(SettledSet::default(), -1, 0);
        assert_eq!(
            state.depth(10),
            QueueDepth {
                ready: 10,
                unacked: 0,
                ready_bytes: 0
            }
        );
        let taken = state.take(4, 10, reader(10)).unwrap();
        assert_eq!(
            ids(&taken),
            vec![(0, false), (1, false), (2, false), (3, false)]
        );
        assert_eq!(taken.journal, Some(JournalOp::DeliveredUpTo(3)));
        assert_eq!(
            state.ack(&[1, 0]).unwrap(),
            vec![JournalOp::AckRange { from: 0, to: 2 }],
            "a run of consecutive offsets is one range entry"
        );
        assert!(matches!(
            state.ack(&[1]),
            Err(EngineError::UnknownDelivery(1))
        ));
        assert!(matches!(
            state.ack(&[2, 2]),
            Err(EngineError::UnknownDelivery(2))
        ));
        assert_eq!(
            state.requeue(&[3]).unwrap(),
            vec![JournalOp::Returns {
                offset: 3,
                count: 1
            }]
        );
        assert_eq!(
            state.depth(10),
            QueueDepth {
                ready: 7,
                unacked: 1,
                ready_bytes: 0
            }
        );
        let taken = state.take(2, 10, reader(10)).unwrap();
        assert_eq!(ids(&taken), vec![(3, true), (4, false)]);
        assert_eq!(state.floor(0), 2);
    }

    #[test]
    fn recovery_redelivers_unsettled_and_skips_settled() {
        let mut settled = SettledSet::default();
        settled.insert_range(0, 2);
        settled.insert(3);
        let mut state = QueueState::recovered(settled, 4, 0);
        assert_eq!(state.cursor, 2);
        assert_eq!(
            state.depth(8),
            QueueDepth {
                ready: 5,
                unacked: 0,
                ready_bytes: 0
            }
        );
        let taken = state.take(10, 8, reader(8)).unwrap();
        assert_eq!(
            ids(&taken),
            vec![(2, true), (4, true), (5, false), (6, false), (7, false)]
        );
        assert!(!state.has_ready(8));
    }

    #[test]
    fn acks_carried_over_a_take_over_settle_ready_messages_and_ignore_settled_ones() {
        // Offsets 0..4 were handed out by an earlier owner, 1 was acked there.
        let mut settled = SettledSet::default();
        settled.insert(1);
        let mut state = QueueState::recovered(settled, 3, 0);
        let taken = state.take(1, 8, reader(8)).unwrap();
        assert_eq!(ids(&taken), vec![(0, true)]);
        // 0 is outstanding here, 2 is ready again, 1 was settled: all fine, nothing twice.
        assert_eq!(state.ack_carried_over(&[2, 0, 1, 2]).unwrap().len(), 2);
        assert!(matches!(
            state.ack_carried_over(&[6]),
            Err(EngineError::UnknownDelivery(6))
        ));
        assert!(state.requeue_carried_over(&[3, 1]).unwrap().is_empty());
        let taken = state.take(10, 8, reader(8)).unwrap();
        assert_eq!(
            ids(&taken),
            vec![(3, true), (4, false), (5, false), (6, false), (7, false)],
            "0, 1 and 2 are settled; 3 is redelivered once"
        );
        assert!(
            state.ack(&[0]).is_err(),
            "a strict ack still refuses settled ids"
        );
    }

    #[test]
    fn purge_settles_everything_ready() {
        let mut state = QueueState::recovered(SettledSet::default(), -1, 0);
        state.take(3, 10, reader(10)).unwrap();
        state.requeue(&[1]).unwrap();
        let (count, ops) = state.purge(10);
        assert_eq!(count, 8);
        assert_eq!(
            ops,
            vec![JournalOp::Ack(1), JournalOp::AckRange { from: 3, to: 10 }]
        );
        assert_eq!(
            state.depth(10),
            QueueDepth {
                ready: 0,
                unacked: 2,
                ready_bytes: 0
            }
        );
        state.ack(&[0, 2]).unwrap();
        assert_eq!(state.floor(0), 10);
    }

    #[test]
    fn a_read_error_keeps_what_was_taken() {
        let mut state = QueueState::recovered(SettledSet::default(), -1, 0);
        let mut calls = 0;
        let mut inner = reader(10);
        let taken = state
            .take(10, 10, |offset| {
                calls += 1;
                if calls > 1 {
                    Err(EngineError::ShuttingDown)
                } else {
                    inner(offset)
                }
            })
            .unwrap();
        assert_eq!(taken.deliveries.len(), 3);
        assert_eq!(state.depth(10).ready, 7);
        assert!(
            state
                .take(1, 10, |_| Err(EngineError::ShuttingDown))
                .is_err()
        );
    }
}
