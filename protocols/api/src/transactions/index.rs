//! The per-partition transaction index a `read_committed` Fetch needs: which transactions are
//! open (their first offset bounds the last stable offset) and which were aborted (producer
//! id, first offset, marker offset).
//!
//! Where it comes from: the log only, like the producer state of [`crate::producers`]. A
//! transactional data batch of a producer with no open transaction opens one at its base
//! offset; a marker of that producer closes it, and an ABORT marker records it as aborted.
//! The index of a partition is built on its first `read_committed` fetch by replaying batch
//! headers from the log start (markers are decoded, data records never are) and then kept up
//! to date by replaying whatever the log gained since, before each answer. So after a crash it
//! agrees with the log by construction: a marker the coordinator wrote is seen, one it did
//! not write leaves the transaction open until the coordinator's recovery writes it.
//!
//! Log compaction (the local engine's cleaner) removes aborted records, committed records
//! replaced by later ones, and a marker once its transaction has no batch left; it never
//! removes a marker while a batch of its transaction remains. So a replay of a cleaned log sees
//! either the transaction (some batch, then its marker) or a marker with no open transaction,
//! which closes nothing and lists nothing: the committed records are the same. An index built
//! before a marker went would still list that aborted transaction, and a `read_committed`
//! client told of it drops the producer's later transactional batches until it meets an ABORT
//! marker that is no longer there; so the index is replayed from the log start whenever
//! [`LogService::markers_removed`] changed.
//!
//! Only partitions that ever joined a transaction are indexed (the coordinator records them
//! durably before their first transactional batch can be admitted, [`super::TransactionReads`]);
//! the others have no transactional batch, so readers answer them without replaying anything.
//!
//! Cost: the first `read_committed` fetch of an indexed partition after a start replays its
//! whole log (headers; markers decoded); later ones replay only what was appended since.
//!
//! Invariants: `scanned_to` only grows while the partition is the same (same topic id, log not
//! cut below it, no marker removed), otherwise the index is rebuilt from the log start; the last stable offset is
//! never above `scanned_to`; aborted transactions wholly below the log start are forgotten.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use bytes::Bytes;

use super::marker;
use crate::batch::BatchHeader;
use crate::{EngineError, EngineResult, LogService, TopicPartition};

/// Bytes asked of the log per read while replaying.
const REPLAY_READ_BYTES: usize = 1 << 20;

/// An aborted transaction on one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aborted {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The offset of its ABORT marker.
    pub last_offset: i64,
}

/// What one partition's log says about transactions, up to `scanned_to`.
#[derive(Debug, Default)]
struct PartitionTxns {
    topic_id: [u8; 16],
    /// [`LogService::markers_removed`] when the replay started.
    markers_removed: u64,
    scanned_to: Option<i64>,
    /// Producer id -> first offset of its open transaction.
    open: HashMap<i64, i64>,
    /// In marker order.
    aborted: Vec<Aborted>,
}

impl PartitionTxns {
    fn apply(&mut self, header: &BatchHeader, batch: &Bytes) {
        if header.producer_id < 0 || !header.is_transactional() {
            return;
        }
        if header.is_control() {
            let Some(first_offset) = self.open.remove(&header.producer_id) else {
                // A marker with no open transaction (a repeated one after a restart): nothing.
                return;
            };
            if marker::committed(header, batch) == Some(false) {
                self.aborted.push(Aborted {
                    producer_id: header.producer_id,
                    first_offset,
                    last_offset: header.base_offset,
                });
            }
            return;
        }
        self.open
            .entry(header.producer_id)
            .or_insert(header.base_offset);
    }
}

/// The view a `read_committed` fetch gets of one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stable {
    /// The first offset of the earliest open transaction, else the end of the log replayed.
    pub last_stable_offset: i64,
    /// Aborted transactions overlapping the asked range.
    pub aborted: Vec<Aborted>,
    /// The end of the log replayed (the high watermark when the index was brought up to it).
    pub high_watermark: i64,
}

/// The transaction index of every partition read with `read_committed` (shared, cheap to
/// clone).
#[derive(Debug, Default, Clone)]
pub(super) struct TxnIndex {
    partitions: Arc<Mutex<HashMap<TopicPartition, Arc<tokio::sync::Mutex<PartitionTxns>>>>>,
}

impl TxnIndex {
    /// Brings the index of `partition` up to the log's high watermark and returns its last
    /// stable offset and the aborted transactions that overlap offsets `from..to`.
    pub(super) async fn stable(
        &self,
        log: &dyn LogService,
        topic_id: [u8; 16],
        partition: &TopicPartition,
        from: i64,
        to: i64,
    ) -> EngineResult<Stable> {
        let slot = Arc::clone(
            self.partitions
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .entry(partition.clone())
                .or_default(),
        );
        let mut txns = slot.lock().await;
        // Read before the log: a removal during the replay makes the next call replay again.
        let markers_removed = log.markers_removed(partition);
        let offsets = log.offsets(partition)?;
        let stale = txns.topic_id != topic_id
            || txns.markers_removed != markers_removed
            || txns
                .scanned_to
                .is_some_and(|scanned| scanned > offsets.high_watermark);
        if stale {
            *txns = PartitionTxns {
                topic_id,
                markers_removed,
                ..PartitionTxns::default()
            };
        }
        let mut offset = txns
            .scanned_to
            .unwrap_or(offsets.log_start)
            .max(offsets.log_start);
        while offset < offsets.high_watermark {
            let read = match log.read(partition, offset, REPLAY_READ_BYTES).await {
                Ok(read) => read,
                // Retention moved the log start past us: those batches are gone.
                Err(EngineError::OffsetOutOfRange { log_start, .. }) if log_start > offset => {
                    offset = log_start;
                    continue;
                }
                Err(failure) => return Err(failure),
            };
            let next = replay(&mut txns, offset, &read.data)?;
            if next <= offset {
                return Err(EngineError::Storage(
                    format!("transaction index of {partition} at {offset}: no batch read").into(),
                ));
            }
            offset = next;
        }
        txns.scanned_to = Some(offset);
        txns.aborted
            .retain(|aborted| aborted.last_offset >= offsets.log_start);
        let last_stable_offset = txns
            .open
            .values()
            .copied()
            .min()
            .unwrap_or(offset)
            .min(offset);
        let aborted = txns
            .aborted
            .iter()
            .filter(|aborted| aborted.last_offset >= from && aborted.first_offset < to)
            .copied()
            .collect();
        Ok(Stable {
            last_stable_offset,
            aborted,
            high_watermark: offset,
        })
    }
}

/// Applies the whole batches of `data` (read at `offset`); returns the offset after the last.
fn replay(txns: &mut PartitionTxns, mut offset: i64, data: &Bytes) -> EngineResult<i64> {
    let mut at = 0;
    while at < data.len() {
        let header = BatchHeader::parse(&data[at..]).map_err(EngineError::CorruptBatch)?;
        let end = at.saturating_add(header.total_len);
        if end > data.len() {
            break;
        }
        let batch = data.slice(at..end);
        at = end;
        if header.last_offset() < offset {
            continue;
        }
        txns.apply(&header, &batch);
        offset = header.last_offset() + 1;
    }
    Ok(offset)
}

/// Cuts `data` (whole batches, back to back) before the first batch that reaches
/// `last_stable_offset`: a `read_committed` reader gets nothing at or past it.
pub fn below_stable(data: &Bytes, last_stable_offset: i64) -> Bytes {
    let mut at = 0;
    while at < data.len() {
        let Ok(header) = BatchHeader::parse(&data[at..]) else {
            break;
        };
        if header.last_offset() >= last_stable_offset {
            break;
        }
        at = at.saturating_add(header.total_len).min(data.len());
    }
    data.slice(..at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Record;
    use crate::batch::{build_batch, reseal, set_base_offset};

    fn transactional(producer_id: i64, base_offset: i64) -> Bytes {
        let mut batch = build_batch(&[Record::default(), Record::default()]).to_vec();
        batch[21..23].copy_from_slice(&0x10i16.to_be_bytes());
        batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
        batch[51..53].copy_from_slice(&0i16.to_be_bytes());
        set_base_offset(&mut batch, base_offset);
        reseal(&mut batch);
        Bytes::from(batch)
    }

    fn marker_at(producer_id: i64, committed: bool, offset: i64) -> Bytes {
        let mut batch = marker::build(producer_id, 0, committed, 0).to_vec();
        set_base_offset(&mut batch, offset);
        Bytes::from(batch)
    }

    fn run(batches: &[Bytes]) -> PartitionTxns {
        let data: Vec<u8> = batches.iter().flat_map(|b| b.to_vec()).collect();
        let mut txns = PartitionTxns::default();
        replay(&mut txns, 0, &Bytes::from(data)).expect("replay");
        txns
    }

    #[test]
    fn an_open_transaction_holds_the_stable_offset_and_an_abort_is_listed() {
        // p1 writes 0-1, p2 writes 2-3, p1 aborts at 4, p2 still open.
        let txns = run(&[
            transactional(1, 0),
            transactional(2, 2),
            marker_at(1, false, 4),
        ]);
        assert_eq!(txns.open.get(&2), Some(&2));
        assert!(!txns.open.contains_key(&1));
        assert_eq!(
            txns.aborted,
            vec![Aborted {
                producer_id: 1,
                first_offset: 0,
                last_offset: 4
            }]
        );
    }

    #[test]
    fn a_commit_closes_without_listing_and_a_repeated_marker_is_ignored() {
        let txns = run(&[
            transactional(1, 0),
            marker_at(1, true, 2),
            marker_at(1, false, 3),
        ]);
        assert!(txns.open.is_empty());
        assert!(txns.aborted.is_empty());
    }

    #[test]
    fn a_cleaned_log_replays_to_the_same_committed_view() {
        // The aborted records went, their marker stayed: it closes nothing, lists nothing.
        let txns = run(&[
            marker_at(1, false, 4),
            transactional(1, 5),
            marker_at(1, true, 7),
        ]);
        assert!(txns.open.is_empty());
        assert!(txns.aborted.is_empty());
        // Records and marker went (an empty batch holds their offsets): the producer's next
        // transaction is indexed from its own first batch.
        let txns = run(&[
            crate::batch::empty_batch(0, 4, 0),
            transactional(1, 5),
            marker_at(1, false, 7),
        ]);
        assert_eq!(
            txns.aborted,
            vec![Aborted {
                producer_id: 1,
                first_offset: 5,
                last_offset: 7
            }]
        );
    }

    #[test]
    fn below_stable_keeps_whole_batches_under_the_offset() {
        let first = transactional(1, 0);
        let second = transactional(1, 2);
        let both = Bytes::from([first.to_vec(), second.to_vec()].concat());
        assert_eq!(below_stable(&both, 2), first);
        assert_eq!(below_stable(&both, 4), both);
        assert!(below_stable(&both, 1).is_empty());
    }
}
