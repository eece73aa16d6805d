//! The durable table of pending transactional (half) messages and when each is checked next.
//!
//! RocketMQ keeps half messages in `RMQ_SYS_TRANS_HALF_TOPIC` and marks them resolved with op
//! records in `RMQ_SYS_TRANS_OP_HALF_TOPIC`. Tributary keeps the first idea and replaces the
//! second: a half message is a record of the engine topic [`HALF_TOPIC`] (one queue, real topic
//! and queue in `REAL_TOPIC` / `REAL_QID`), and while it is unresolved the metadata store holds
//! its [`Pending`] state in namespace [`NAMESPACE`], keyed by the half's queue offset as 20
//! decimal digits (so a scan returns them in offset order). Resolving a half (commit, rollback or
//! discard after the last check) deletes that record.
//!
//! Check schedule (RocketMQ's `transactionTimeOut`, `transactionCheckInterval`,
//! `transactionCheckMax`): the first check is due [`TransactionTiming::timeout_ms`] after the half
//! was stored, or `CHECK_IMMUNITY_TIME_IN_SECONDS` after it when the message sets that property;
//! each check counts, and the next is due one interval later; a half that was checked
//! `check_max` times is discarded when its next check falls due. A check counts whether or not a
//! producer of the group was connected, as in RocketMQ, so an abandoned group's halves end.
//!
//! Invariants: the in-memory table mirrors the metadata records (loaded before the first use,
//! and again when the store's generation of [`NAMESPACE`] moves: on the cloud engine every
//! broker shares the records, and a check written by one moves the next check for all; every
//! change is written to the store before the table changes, under one lock); an entry being
//! resolved is marked so that a check or a second resolution leaves it alone; the
//! pending-halves gauge follows the table.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::{Mutex, MutexGuard};
use tributary_api::MetadataStore;

use crate::error::{RequestError, RequestResult};
use crate::metrics;

/// The engine topic half messages are stored in (RocketMQ's name).
pub const HALF_TOPIC: &str = "RMQ_SYS_TRANS_HALF_TOPIC";
/// Metadata-store namespace of the pending halves.
pub const NAMESPACE: &str = "rocketmq.transactions";
/// Seconds before the first check, overriding the timeout (a message property).
pub const PROPERTY_CHECK_IMMUNITY_SECONDS: &str = "CHECK_IMMUNITY_TIME_IN_SECONDS";

/// When halves are checked and for how long (RocketMQ's broker defaults: 6 s, 30 s, 15).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TransactionTiming {
    /// Age of a half at its first check.
    pub timeout_ms: u64,
    /// Time between checks.
    pub check_interval_ms: u64,
    /// Checks before an unresolved half is discarded.
    pub check_max: u32,
}

impl Default for TransactionTiming {
    fn default() -> Self {
        Self {
            timeout_ms: 6_000,
            check_interval_ms: 30_000,
            check_max: 15,
        }
    }
}

impl TransactionTiming {
    /// When a half stored at `stored_ms` is first checked; `immunity` is its
    /// `CHECK_IMMUNITY_TIME_IN_SECONDS` property (ignored unless a positive number).
    pub fn first_check_ms(&self, stored_ms: i64, immunity: Option<&str>) -> i64 {
        let delay = immunity
            .and_then(|text| text.trim().parse::<i64>().ok())
            .filter(|seconds| *seconds > 0)
            .map_or(millis(self.timeout_ms), |seconds| {
                seconds.saturating_mul(1_000)
            });
        stored_ms.saturating_add(delay)
    }
}

/// What the broker remembers of an unresolved half message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Pending {
    /// The producer group (`PGROUP`), whose connections are asked.
    pub(crate) group: String,
    /// Checks sent (or due while no producer was connected) so far.
    pub(crate) checks: u32,
    pub(crate) next_check_ms: i64,
}

/// What the checker should do with a half whose check fell due.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DueHalf {
    /// Ask the group; `pending.checks` already counts this check.
    Check { offset: i64, pending: Pending },
    /// Checked `check_max` times without an answer: removed from the table.
    Discarded { offset: i64, pending: Pending },
}

#[derive(Debug, Default)]
struct Table {
    loaded: bool,
    /// The store's generation of [`NAMESPACE`] when the table was read.
    generation: u64,
    /// Half queue offset -> state, and whether a resolution is under way.
    pending: BTreeMap<i64, (Pending, bool)>,
}

/// The pending halves of this broker.
#[derive(Debug, Default)]
pub(crate) struct Transactions {
    table: Mutex<Table>,
}

/// A configured duration as a timestamp delta, saturating instead of wrapping.
fn millis(ms: u64) -> i64 {
    i64::try_from(ms).unwrap_or(i64::MAX)
}

fn key(offset: i64) -> String {
    format!("{offset:020}")
}

impl Transactions {
    /// The table, loaded from `store` on first use and again after the store's generation of
    /// [`NAMESPACE`] moved (another broker of a shared store added or resolved a half). Halves
    /// being resolved here keep their entry and mark across a reload.
    async fn table(&self, store: &dyn MetadataStore) -> RequestResult<MutexGuard<'_, Table>> {
        let mut table = self.table.lock().await;
        let generation = store.generation(NAMESPACE);
        if !table.loaded || table.generation != generation {
            let mut loaded = BTreeMap::new();
            for (key, value) in store.scan(NAMESPACE, "").await? {
                // Skipping a record would leave its half message unresolved forever (never
                // committed, never checked): refuse, and load again on the next use.
                let decoded = key
                    .parse::<i64>()
                    .map_err(|error| error.to_string())
                    .and_then(|offset| {
                        serde_json::from_slice::<Pending>(&value)
                            .map(|pending| (offset, pending))
                            .map_err(|error| error.to_string())
                    });
                match decoded {
                    Ok((offset, pending)) => {
                        loaded.insert(offset, (pending, false));
                    }
                    Err(reason) => {
                        tracing::error!(key, %reason, "unreadable pending-transaction record; transactional requests are refused until it is repaired");
                        return Err(RequestError::UnreadableState {
                            namespace: NAMESPACE,
                            key,
                            reason,
                        });
                    }
                }
            }
            for (offset, entry) in &table.pending {
                if entry.1 {
                    loaded.insert(*offset, entry.clone());
                }
            }
            table.pending = loaded;
            table.loaded = true;
            table.generation = generation;
            publish(&table);
        }
        Ok(table)
    }

    /// Records a new half at `offset` of the half topic.
    pub(crate) async fn add(
        &self,
        store: &dyn MetadataStore,
        offset: i64,
        pending: Pending,
    ) -> RequestResult<()> {
        let mut table = self.table(store).await?;
        store
            .put(NAMESPACE, &key(offset), encode(&pending)?)
            .await?;
        table.pending.insert(offset, (pending, false));
        publish(&table);
        Ok(())
    }

    /// Claims the half at `offset` for resolution; `None` when it is unknown or already being
    /// resolved. Follow with [`Transactions::finish`] or [`Transactions::release`].
    pub(crate) async fn claim(
        &self,
        store: &dyn MetadataStore,
        offset: i64,
    ) -> RequestResult<Option<Pending>> {
        let mut table = self.table(store).await?;
        Ok(match table.pending.get_mut(&offset) {
            Some((pending, resolving)) if !*resolving => {
                *resolving = true;
                Some(pending.clone())
            }
            _ => None,
        })
    }

    /// Gives a claimed half back unresolved (its commit failed, or the claim was refused).
    pub(crate) async fn release(&self, offset: i64) {
        if let Some((_, resolving)) = self.table.lock().await.pending.get_mut(&offset) {
            *resolving = false;
        }
    }

    /// Forgets a claimed half for good: it was committed or rolled back.
    pub(crate) async fn finish(&self, store: &dyn MetadataStore, offset: i64) -> RequestResult<()> {
        let mut table = self.table(store).await?;
        store.delete(NAMESPACE, &key(offset)).await?;
        table.pending.remove(&offset);
        publish(&table);
        Ok(())
    }

    /// Takes every half whose check is due at `now`: counts the check and schedules the next
    /// one, or discards the half when it was checked `timing.check_max` times already.
    pub(crate) async fn take_due(
        &self,
        store: &dyn MetadataStore,
        now: i64,
        timing: TransactionTiming,
    ) -> RequestResult<Vec<DueHalf>> {
        let mut table = self.table(store).await?;
        let due: Vec<(i64, Pending)> = table
            .pending
            .iter()
            .filter(|(_, (pending, resolving))| !resolving && pending.next_check_ms <= now)
            .map(|(offset, (pending, _))| (*offset, pending.clone()))
            .collect();
        let mut out = Vec::with_capacity(due.len());
        for (offset, mut pending) in due {
            if pending.checks >= timing.check_max {
                store.delete(NAMESPACE, &key(offset)).await?;
                table.pending.remove(&offset);
                out.push(DueHalf::Discarded { offset, pending });
                continue;
            }
            pending.checks += 1;
            pending.next_check_ms = now.saturating_add(millis(timing.check_interval_ms));
            store
                .put(NAMESPACE, &key(offset), encode(&pending)?)
                .await?;
            table.pending.insert(offset, (pending.clone(), false));
            out.push(DueHalf::Check { offset, pending });
        }
        publish(&table);
        Ok(out)
    }

    /// The earliest next check of a half not being resolved.
    pub(crate) async fn next_due(&self, store: &dyn MetadataStore) -> RequestResult<Option<i64>> {
        let table = self.table(store).await?;
        Ok(table
            .pending
            .values()
            .filter(|(_, resolving)| !resolving)
            .map(|(pending, _)| pending.next_check_ms)
            .min())
    }
}

fn encode(pending: &Pending) -> RequestResult<Bytes> {
    Ok(Bytes::from(serde_json::to_vec(pending)?))
}

fn publish(table: &Table) {
    ::metrics::gauge!(metrics::TRANSACTIONS_PENDING).set(table.pending.len() as f64);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A metadata store in memory, standing in for the engine's so the table is tested alone.
    use tributary_api::metadata::MemoryMetadataStore as MapStore;

    const TIMING: TransactionTiming = TransactionTiming {
        timeout_ms: 100,
        check_interval_ms: 1_000,
        check_max: 2,
    };

    fn pending(next_check_ms: i64) -> Pending {
        Pending {
            group: "PID".to_owned(),
            checks: 0,
            next_check_ms,
        }
    }

    #[test]
    fn the_first_check_waits_the_timeout_or_the_immunity_time() {
        assert_eq!(TIMING.first_check_ms(1_000, None), 1_100);
        assert_eq!(TIMING.first_check_ms(1_000, Some("3")), 4_000);
        for ignored in ["0", "-2", "soon", ""] {
            assert_eq!(TIMING.first_check_ms(1_000, Some(ignored)), 1_100);
        }
    }

    #[tokio::test]
    async fn checks_count_survive_a_reload_and_end_in_a_discard() {
        let store = MapStore::default();
        let table = Transactions::default();
        table.add(&store, 7, pending(100)).await.unwrap();
        table.add(&store, 9, pending(5_000)).await.unwrap();
        assert!(table.take_due(&store, 99, TIMING).await.unwrap().is_empty());
        let first = table.take_due(&store, 100, TIMING).await.unwrap();
        assert_eq!(
            first,
            [DueHalf::Check {
                offset: 7,
                pending: Pending {
                    checks: 1,
                    next_check_ms: 1_100,
                    ..pending(0)
                }
            }]
        );
        assert_eq!(table.next_due(&store).await.unwrap(), Some(1_100));

        // A restart: a fresh table over the same store picks up the counts and due times.
        let reloaded = Transactions::default();
        let second = reloaded.take_due(&store, 1_100, TIMING).await.unwrap();
        assert!(matches!(
            second.as_slice(),
            [DueHalf::Check { offset: 7, pending }] if pending.checks == 2
        ));
        let third = reloaded.take_due(&store, 2_100, TIMING).await.unwrap();
        assert!(matches!(
            third.as_slice(),
            [DueHalf::Discarded { offset: 7, .. }]
        ));
        assert_eq!(store.scan(NAMESPACE, "").await.unwrap().len(), 1);
        assert!(reloaded.claim(&store, 7).await.unwrap().is_none());
    }

    #[tokio::test]
    async fn a_claimed_half_is_resolved_once_and_skipped_by_checks() {
        let store = MapStore::default();
        let table = Transactions::default();
        table.add(&store, 3, pending(0)).await.unwrap();
        assert!(table.claim(&store, 3).await.unwrap().is_some());
        assert!(
            table.claim(&store, 3).await.unwrap().is_none(),
            "claimed twice"
        );
        assert!(table.take_due(&store, 10, TIMING).await.unwrap().is_empty());
        table.release(3).await;
        assert!(table.claim(&store, 3).await.unwrap().is_some());
        table.finish(&store, 3).await.unwrap();
        assert!(store.scan(NAMESPACE, "").await.unwrap().is_empty());
        assert!(
            Transactions::default()
                .claim(&store, 3)
                .await
                .unwrap()
                .is_none()
        );
    }

    #[tokio::test]
    async fn an_unreadable_record_refuses_the_table_until_it_is_repaired() {
        let store = MapStore::default();
        let writer = Transactions::default();
        writer.add(&store, 4, pending(0)).await.unwrap();
        let key = key(4);
        store
            .put(NAMESPACE, &key, Bytes::from_static(b"{not json"))
            .await
            .unwrap();

        let reader = Transactions::default();
        let refused = reader.claim(&store, 4).await.unwrap_err();
        assert!(
            matches!(&refused, RequestError::UnreadableState { key: k, .. } if *k == key),
            "{refused}"
        );
        assert_eq!(refused.response_code(), crate::error::code::SYSTEM_ERROR);
        assert!(reader.take_due(&store, 10, TIMING).await.is_err());

        // Repaired: the next use loads every record, the repaired one included.
        let repaired = serde_json::to_vec(&pending(0)).unwrap();
        store.put(NAMESPACE, &key, repaired.into()).await.unwrap();
        assert!(reader.claim(&store, 4).await.unwrap().is_some());
    }
}
