//! Transactions in a cleaner pass, as Kafka's cleaner handles them (KIP-98, KIP-534).
//!
//! A transaction is a run of transactional data batches of one producer closed by that
//! producer's marker (a control batch). The pass follows them with the same rule the read side
//! replays the log with (`tributary_api::transactions::index`): a transactional data batch of a
//! producer with no open transaction opens one at its base offset, the producer's next control
//! batch closes it; a batch with no producer id is not transactional. A transaction is named by
//! (producer id, first offset).
//!
//! Before the pass: a [`Scan`] reads batch headers (and markers' one record) over
//! the cleanable segments, and past them as far as it takes to decide every transaction still
//! open at their end. A transaction decided nowhere below the high watermark is open: the last
//! stable offset (LSO) is its first offset, and the pass cleans no segment that reaches it
//! (Kafka cleans nothing at or above the LSO).
//!
//! During the pass, per batch ([`Transactions::classify`]):
//! - records of COMMITTED transactions are compacted like any record (they count as their key's
//!   latest value, across transactional and plain batches);
//! - records of ABORTED transactions are all removed and never count, so they can neither hide
//!   nor replace a committed older value;
//! - a batch of a transaction not decided (open) is kept whole and not counted (only possible
//!   if the LSO rule above failed; kept, never guessed).
//!
//! A marker stays while any batch of its transaction stays in the log (even the empty header
//! kept for a producer's last batch): without its marker a remaining batch would reopen the
//! transaction for every reader replaying the log, and the LSO would never move again. Once its
//! transaction has no batch left, the marker is removed after `delete.retention.ms`, counted
//! like a tombstone's from the pass that first cleaned it (the `cleaner-passes` file; Kafka
//! writes that horizon into the batch instead). Aborted data is removed by the first pass that
//! reaches its marker, so the horizon starts when the data goes: a reader that read the
//! aborted records before has `delete.retention.ms` to reach the marker. A marker that is its
//! producer's last batch stays whole (the producer state rule), and a control batch that is no
//! COMMIT or ABORT marker is never removed.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;

use bytes::Bytes;
use tributary_api::batch::BatchHeader;
use tributary_api::transactions::marker;

use super::error::StorageError;
use super::partition::Partition;
use super::segment::Segment;

/// A transaction: (producer id, offset of its first batch).
pub(super) type TxnId = (i64, i64);

/// What a batch is to the pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    /// No transaction: compacted as usual.
    Plain,
    /// Data of a committed transaction: compacted as usual.
    Committed(TxnId),
    /// Data of an aborted transaction: every record goes.
    Aborted(TxnId),
    /// Data of a transaction not decided: kept whole.
    Open,
    /// A COMMIT or ABORT marker, and the transaction it closes (`None`: no batch of it is left
    /// before the marker).
    Marker(Option<TxnId>),
    /// Another control batch: kept whole.
    Control,
}

/// The rule both the scan and the pass replay (see the module docs).
#[derive(Debug, Default)]
struct Replay {
    /// Producer id -> first offset of its open transaction.
    open: HashMap<i64, i64>,
}

/// What one batch did to the replay.
enum Step {
    Plain,
    Data(TxnId),
    /// A control batch, the transaction it closed and its type (`Some(true)` COMMIT).
    Close(Option<TxnId>, Option<bool>),
}

impl Replay {
    /// `batch` is needed only for a control batch (its one record says COMMIT or ABORT).
    fn step(&mut self, header: &BatchHeader, batch: Option<&Bytes>) -> Step {
        if header.producer_id < 0 || !header.is_transactional() {
            return Step::Plain;
        }
        if header.is_control() {
            let closed = self
                .open
                .remove(&header.producer_id)
                .map(|first| (header.producer_id, first));
            let kind = batch.and_then(|batch| marker::committed(header, batch));
            return Step::Close(closed, kind);
        }
        let first = *self
            .open
            .entry(header.producer_id)
            .or_insert(header.base_offset);
        Step::Data((header.producer_id, first))
    }
}

/// The outcome of every transaction the scan saw decided, and the replay of the pass.
#[derive(Debug, Default)]
pub(super) struct Transactions {
    /// Transaction -> committed (a control batch of another type closes it as readers do: not
    /// aborted).
    outcomes: HashMap<TxnId, bool>,
    replay: Replay,
    /// Transactions with a batch the pass keeps (records or an empty header).
    kept: HashSet<TxnId>,
}

/// Feeds [`Transactions::scan`] with the batches of the log in offset order.
#[derive(Debug, Default)]
pub(super) struct Scan {
    outcomes: HashMap<TxnId, bool>,
    replay: Replay,
    /// Transactions open at the end of the cleanable segments: the scan goes on until each is
    /// decided or the high watermark.
    pending: Option<HashSet<TxnId>>,
}

impl Scan {
    /// Applies one batch header; `batch` is the whole batch, needed for control batches.
    pub(super) fn observe(&mut self, header: &BatchHeader, batch: Option<&Bytes>) {
        if let Step::Close(Some(txn), kind) = self.replay.step(header, batch) {
            self.outcomes.insert(txn, kind != Some(false));
            if let Some(pending) = &mut self.pending {
                pending.remove(&txn);
            }
        }
    }

    /// Marks the end of the cleanable segments: what is open now must be decided further on.
    pub(super) fn end_of_cleanable(&mut self) {
        let open = self
            .replay
            .open
            .iter()
            .map(|(producer, first)| (*producer, *first))
            .collect();
        self.pending = Some(open);
    }

    /// Whether a transaction open at the end of the cleanable segments is still undecided.
    pub(super) fn undecided(&self) -> bool {
        self.pending.as_ref().is_some_and(|p| !p.is_empty())
    }

    /// The first offset of the earliest transaction still open where the scan stopped: no
    /// segment reaching it is cleaned. `None`: every transaction that starts in the cleanable
    /// segments is decided.
    pub(super) fn last_stable_offset(&self) -> Option<i64> {
        self.pending
            .as_ref()
            .and_then(|pending| pending.iter().map(|(_, first)| *first).min())
    }

    pub(super) fn finish(self) -> Transactions {
        Transactions {
            outcomes: self.outcomes,
            ..Transactions::default()
        }
    }
}

impl Transactions {
    /// Starts a new walk over the log (the key scan, then the rewrite), from the log start.
    pub(super) fn restart(&mut self) {
        self.replay = Replay::default();
        self.kept.clear();
    }

    /// What `header`'s batch is (advances the walk; call once per batch, in offset order).
    pub(super) fn classify(&mut self, header: &BatchHeader, batch: &Bytes) -> Kind {
        match self.replay.step(header, Some(batch)) {
            Step::Plain if header.is_control() => Kind::Control,
            Step::Plain => Kind::Plain,
            Step::Data(txn) => match self.outcomes.get(&txn) {
                Some(true) => Kind::Committed(txn),
                Some(false) => Kind::Aborted(txn),
                None => Kind::Open,
            },
            Step::Close(closed, Some(_)) => Kind::Marker(closed),
            Step::Close(_, None) => Kind::Control,
        }
    }

    /// Records that the pass keeps a batch (records or header) of `txn`.
    pub(super) fn keep(&mut self, txn: TxnId) {
        self.kept.insert(txn);
    }

    /// Whether the marker closing `closed` must stay because its transaction keeps a batch.
    pub(super) fn marker_needed(&self, closed: Option<TxnId>) -> bool {
        closed.is_some_and(|txn| self.kept.contains(&txn))
    }
}

impl Partition {
    /// Feeds `scan` with the batch headers of the first `size` bytes of `segment` (and the
    /// whole of each control batch).
    pub(super) fn scan_transactions(
        &self,
        segment: &Segment,
        size: u64,
        scan: &mut Scan,
    ) -> Result<(), StorageError> {
        let mut reader = self.batch_reader(segment, size)?;
        while let Some((header, at)) = reader.next_header()? {
            let batch = if header.is_control() {
                Some(reader.read_batch(&header, at)?)
            } else {
                None
            };
            scan.observe(&header, batch.as_ref());
        }
        Ok(())
    }

    /// Transaction markers cleaner passes removed from this partition since it was opened
    /// (see [`tributary_api::LogService::markers_removed`]).
    pub fn markers_removed(&self) -> u64 {
        self.markers_removed.load(Ordering::Acquire)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_api::Record;
    use tributary_api::batch::{build_batch, reseal, set_base_offset};

    fn data(producer_id: i64, base_offset: i64) -> Bytes {
        let mut batch = build_batch(&[Record::default()]).to_vec();
        batch[21..23].copy_from_slice(&0x10i16.to_be_bytes());
        batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
        set_base_offset(&mut batch, base_offset);
        reseal(&mut batch);
        Bytes::from(batch)
    }

    fn marker_at(producer_id: i64, committed: bool, offset: i64) -> Bytes {
        let mut batch = marker::build(producer_id, 0, committed, 0).to_vec();
        set_base_offset(&mut batch, offset);
        reseal(&mut batch);
        Bytes::from(batch)
    }

    fn header(batch: &Bytes) -> BatchHeader {
        BatchHeader::parse(batch).expect("header")
    }

    #[test]
    fn the_scan_decides_transactions_and_finds_the_stable_offset() {
        // p1 commits 0 at 2, p2 aborts 1 at 3, p3 opens at 4 and stays open.
        let log = [
            data(1, 0),
            data(2, 1),
            marker_at(1, true, 2),
            marker_at(2, false, 3),
            data(3, 4),
        ];
        let mut scan = Scan::default();
        for batch in &log[..2] {
            scan.observe(&header(batch), Some(batch));
        }
        scan.end_of_cleanable();
        assert!(scan.undecided());
        for batch in &log[2..] {
            scan.observe(&header(batch), Some(batch));
        }
        assert!(!scan.undecided(), "p3 opened after the cleanable end");
        assert_eq!(scan.last_stable_offset(), None);
        let mut txns = scan.finish();
        let kinds: Vec<Kind> = log
            .iter()
            .map(|batch| txns.classify(&header(batch), batch))
            .collect();
        assert_eq!(
            kinds,
            vec![
                Kind::Committed((1, 0)),
                Kind::Aborted((2, 1)),
                Kind::Marker(Some((1, 0))),
                Kind::Marker(Some((2, 1))),
                Kind::Open,
            ]
        );
        let mut scan = Scan::default();
        scan.observe(&header(&log[4]), None);
        scan.end_of_cleanable();
        assert_eq!(scan.last_stable_offset(), Some(4));
    }
}
