//! The transaction coordinator (KIP-98) of the Kafka frontend, for one broker over the local
//! engine: transactional ids, their producer id and epoch, the partitions and consumer offsets
//! of the open transaction, and its completion with markers.
//!
//! States of an id ([`state::Status`]): `Empty` (no transaction; Kafka's Empty and Complete*),
//! `Ongoing` (partitions or offsets added), `PrepareCommit`/`PrepareAbort` (EndTxn accepted,
//! markers being written). Every change is stored in the metadata store (namespace
//! [`NAMESPACE`], key = the transactional id, value = [`state::TxnMeta::encode`]) BEFORE it is
//! answered, so:
//! - a restart completes a `Prepare*` transaction (writes the markers again: a repeated marker
//!   is harmless, readers close a transaction on its first marker) and applies its offsets;
//! - a restart aborts an `Ongoing` one, with its epoch bumped as Kafka does for a timed-out
//!   transaction (the producer that ran it is treated as a zombie and fenced);
//! - nothing is half-visible: records become readable by `read_committed` only once a COMMIT
//!   marker follows them in their partition ([`tributary_api::transactions::index`], shared
//!   with the other protocols' readers), and pending offsets reach the group
//!   only after every marker of a commit is durable.
//!
//! AddPartitionsToTxn also records each partition's first joining of any transaction
//! ([`tributary_api::transactions::TransactionReads::join`]) before it is answered: `read_committed` reads of partitions never
//! joined skip the transaction index, which stays correct because a transactional batch is
//! only admitted for a partition of an open transaction.
//!
//! Completing (EndTxn, a timeout, recovery): store `Prepare*`, append one marker
//! ([`tributary_api::transactions::marker`]) to every partition of the transaction, then wait
//! until all are durable (the syncs overlap), on commit store the
//! pending offsets, then store `Empty` (with the outcome, so a retried EndTxn gets the same
//! answer) and answer. EndTxn is answered once the transaction is complete (Kafka answers after
//! the prepare and writes markers asynchronously; answering later costs latency, not safety).
//!
//! Concurrency: one `RwLock` per transactional id. State changes take it exclusively; a
//! transactional Produce holds it shared from its checks until its batch is durable, so a
//! marker can never be written between a batch's check and its append (a batch after its
//! transaction's marker would open a transaction nobody ends).
//!
//! Verification (KIP-890 part 1): every transactional batch is checked here before it is
//! written ([`Transactions::admit`]), with the checks of Kafka's
//! `handleVerifyPartitionsInTransaction` ([`verify_producer`], then the partition must be in the
//! `Ongoing` transaction); AddPartitionsToTxn v4+ with VerifyOnly asks the same question
//! ([`Transactions::verify`]). The check is a map lookup and a shared lock, on the produce path
//! of transactional batches only; an id never initialized is not remembered by it.
//!
//! Fencing: InitProducerId bumps the epoch (aborting an ongoing transaction first); requests
//! with an older epoch get PRODUCER_FENCED (INVALID_PRODUCER_EPOCH at versions before it
//! existed), Produce gets INVALID_PRODUCER_EPOCH, as Kafka's partition leaders answer.
//!
//! Timeouts: a task started with the coordinator aborts (with an epoch bump) every `Ongoing`
//! transaction older than its `transaction.timeout.ms`, and retries completions that failed.
//!
//! Not served: transaction version 2 (KIP-890 part 2) beyond Produce v12's implicit add. It
//! needs EndTxn v5 (bump the epoch when a commit or abort is prepared, write the markers with
//! the new epoch, answer the new producer id and epoch, a fresh producer id when the epoch is
//! exhausted, and answer a retried EndTxn of the previous epoch as the first: the state must
//! then keep the previous id and epoch and the transaction's version, a new [`state`] format),
//! TxnOffsetCommit v5 (offsets of a group never named by AddOffsetsToTxn join the transaction),
//! the TRANSACTION_ABORTABLE versions of the other APIs (EndTxn and AddOffsetsToTxn v4,
//! TxnOffsetCommit v4, InitProducerId v5) and ApiVersions reporting `transaction.version` 2 as
//! supported and finalized, which is what makes Kafka 4.x clients switch to it.

pub mod state;

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tokio::sync::{OwnedRwLockReadGuard, RwLock};
use tributary_api::batch::VerifiedBatch;
use tributary_api::{CommittedOffset, Engine, EngineError, EngineResult, TopicPartition};

use crate::error;
use crate::producers::{Backing, Producers};
use state::{PendingOffset, Status, TxnMeta};

/// Metadata-store namespace of transaction state.
pub const NAMESPACE: &str = "kafka.transactions";
/// Kafka's `transaction.max.timeout.ms` default: longer timeouts are refused.
pub const MAX_TIMEOUT_MS: i32 = 900_000;
/// How often the timeout task looks at open transactions.
const SWEEP_EVERY: Duration = Duration::from_millis(500);

type Slot = Arc<RwLock<Option<TxnMeta>>>;
/// A Kafka error code.
pub(crate) type Code = i16;

/// What the coordinator works on: the engine and the producer id allocator.
#[derive(Debug, Clone)]
pub(crate) struct Services {
    pub(crate) engine: Engine,
    pub(crate) producers: Producers,
}

/// The coordinator's state: one slot per transactional id. The read side (which partitions
/// joined a transaction, their index) is the engine's, shared with every frontend
/// ([`tributary_api::transactions`]).
#[derive(Debug, Default)]
pub(crate) struct Transactions {
    slots: Mutex<HashMap<String, Slot>>,
    loaded: tokio::sync::OnceCell<()>,
}

pub(crate) fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// The producer id and epoch a request names, checked against the stored ones.
fn validate(
    meta: &TxnMeta,
    producer_id: i64,
    epoch: i16,
    fenced: ResponseError,
) -> Result<(), Code> {
    if producer_id != meta.producer_id {
        return Err(ResponseError::InvalidProducerIdMapping.code());
    }
    if epoch < meta.epoch {
        return Err(fenced.code());
    }
    if epoch > meta.epoch {
        return Err(ResponseError::InvalidProducerEpoch.code());
    }
    Ok(())
}

impl Transactions {
    fn slot(&self, id: &str) -> Slot {
        Arc::clone(self.slots.lock().entry(id.to_owned()).or_default())
    }

    /// Loads every stored transaction once, completing or aborting what a stop left open, and
    /// starts the timeout task. Every coordinator request and `read_committed` fetch waits for
    /// it, so none sees the state from before recovery.
    pub(crate) async fn ensure_loaded(self: &Arc<Self>, services: &Services) -> Result<(), Code> {
        self.loaded
            .get_or_try_init(|| self.load(services))
            .await
            .map(|_| ())
            .map_err(|failure| {
                tracing::warn!(error = %failure, "transaction state not loaded");
                ResponseError::CoordinatorLoadInProgress.code()
            })
    }

    async fn load(self: &Arc<Self>, services: &Services) -> EngineResult<()> {
        services
            .engine
            .transactions
            .ensure_loaded(services.engine.metadata.as_ref())
            .await?;
        let stored = services.engine.metadata.scan(NAMESPACE, "").await?;
        let mut recovered = 0usize;
        for (id, bytes) in stored {
            let Some(meta) = TxnMeta::decode(bytes.clone()) else {
                tracing::error!(transactional_id = %id, len = bytes.len(),
                    "stored transaction state unreadable; the next InitProducerId starts the id over");
                continue;
            };
            let slot = self.slot(&id);
            let mut held = slot.write().await;
            *held = Some(meta);
            if let Some(meta) = held.as_mut() {
                if meta.status != Status::Empty {
                    recovered += 1;
                }
                if let Err(failure) = settle(services, &id, meta, false).await {
                    tracing::warn!(transactional_id = %id, error = %failure,
                        "transaction not completed at start; retried by the timeout task");
                }
            }
        }
        tracing::info!(recovered, "kafka transaction state loaded");
        let weak = Arc::downgrade(self);
        let services = services.clone();
        tokio::spawn(sweep(weak, services));
        Ok(())
    }

    /// InitProducerId with a transactional id: a new producer id, or the stored one with its
    /// epoch bumped (an ongoing transaction of the old epoch is aborted first).
    pub(crate) async fn init(
        self: &Arc<Self>,
        services: &Services,
        id: &str,
        timeout_ms: i32,
        known: Option<(i64, i16)>,
        fenced: ResponseError,
    ) -> Result<(i64, i16), Code> {
        if timeout_ms <= 0 || timeout_ms > MAX_TIMEOUT_MS {
            return Err(ResponseError::InvalidTransactionTimeout.code());
        }
        self.ensure_loaded(services).await?;
        let slot = self.slot(id);
        let mut held = slot.write().await;
        let backing = Backing::from(&services.engine);
        let Some(meta) = held.as_mut() else {
            let producer_id = services.producers.allocate(&backing).await.map_err(code)?;
            let meta = TxnMeta::new(producer_id, 0, timeout_ms);
            store(services, id, &meta).await.map_err(code)?;
            *held = Some(meta);
            return Ok((producer_id, 0));
        };
        if let Some((producer_id, epoch)) = known
            && (producer_id != meta.producer_id || epoch != meta.epoch)
        {
            return Err(fenced.code());
        }
        if meta.status == Status::Ongoing {
            abort_fencing(services, id, meta).await.map_err(code)?;
        }
        settle(services, id, meta, true).await.map_err(code)?;
        if meta.epoch >= i16::MAX - 1 {
            meta.producer_id = services.producers.allocate(&backing).await.map_err(code)?;
            meta.epoch = 0;
        } else {
            meta.epoch += 1;
        }
        meta.timeout_ms = timeout_ms;
        // Kafka's `Empty`: the last outcome was the old epoch's (its EndTxn retries are fenced).
        meta.last_committed = None;
        store(services, id, meta).await.map_err(code)?;
        Ok((meta.producer_id, meta.epoch))
    }

    /// Runs `change` on the state of `id` after the producer id and epoch checks, starting a
    /// transaction if none is open and `opens` (else INVALID_TXN_STATE), and stores the result
    /// if it changed.
    async fn change(
        self: &Arc<Self>,
        services: &Services,
        id: &str,
        (producer_id, epoch): (i64, i16),
        fenced: ResponseError,
        opens: bool,
        change: impl FnOnce(&mut TxnMeta) -> Result<(), Code>,
    ) -> Result<(), Code> {
        self.ensure_loaded(services).await?;
        // Only InitProducerId (and loading) create a slot: a request naming an unknown id
        // leaves nothing behind.
        let Some(slot) = self.existing(id) else {
            return Err(ResponseError::InvalidProducerIdMapping.code());
        };
        let mut held = slot.write().await;
        let Some(meta) = held.as_mut() else {
            return Err(ResponseError::InvalidProducerIdMapping.code());
        };
        validate(meta, producer_id, epoch, fenced)?;
        let before = meta.clone();
        match meta.status {
            Status::Empty if !opens => return Err(ResponseError::InvalidTxnState.code()),
            Status::Empty => {
                meta.status = Status::Ongoing;
                meta.started_ms = now_ms();
            }
            Status::Ongoing => {}
            Status::PrepareCommit | Status::PrepareAbort => {
                return Err(ResponseError::ConcurrentTransactions.code());
            }
        }
        let changed = change(meta);
        if changed.is_err() {
            *meta = before;
            return changed;
        }
        if *meta != before
            && let Err(failure) = store(services, id, meta).await
        {
            *meta = before;
            return Err(code(failure));
        }
        Ok(())
    }

    /// AddPartitionsToTxn: the partitions join the transaction (which starts if none is open).
    pub(crate) async fn add_partitions(
        self: &Arc<Self>,
        services: &Services,
        id: &str,
        producer: (i64, i16),
        fenced: ResponseError,
        partitions: Vec<(TopicPartition, [u8; 16])>,
    ) -> Result<(), Code> {
        self.ensure_loaded(services).await?;
        for (partition, topic_id) in &partitions {
            services
                .engine
                .transactions
                .join(
                    services.engine.metadata.as_ref(),
                    *topic_id,
                    partition.partition,
                )
                .await
                .map_err(code)?;
        }
        self.change(services, id, producer, fenced, true, |meta| {
            meta.partitions
                .extend(partitions.into_iter().map(|(partition, _)| partition));
            Ok(())
        })
        .await
    }

    /// AddOffsetsToTxn: the transaction starts if none is open; its offsets come with
    /// TxnOffsetCommit.
    pub(crate) async fn add_offsets(
        self: &Arc<Self>,
        services: &Services,
        id: &str,
        producer: (i64, i16),
        fenced: ResponseError,
    ) -> Result<(), Code> {
        self.change(services, id, producer, fenced, true, |_| Ok(()))
            .await
    }

    /// TxnOffsetCommit: offsets held with the transaction, given to `group` on commit only.
    /// The transaction must be open (AddOffsetsToTxn opens it): a late TxnOffsetCommit of a
    /// completed transaction is refused INVALID_TXN_STATE, as Kafka's verification refuses it,
    /// instead of opening a transaction of its own that would hold the offsets until it timed
    /// out and fenced the producer.
    pub(crate) async fn commit_offsets(
        self: &Arc<Self>,
        services: &Services,
        id: &str,
        producer: (i64, i16),
        fenced: ResponseError,
        group: &str,
        offsets: Vec<(TopicPartition, i64, String)>,
    ) -> Result<(), Code> {
        self.change(services, id, producer, fenced, false, |meta| {
            for (partition, offset, metadata) in offsets {
                meta.offsets
                    .retain(|held| held.group != group || held.partition != partition);
                meta.offsets.push(PendingOffset {
                    group: group.to_owned(),
                    partition,
                    offset,
                    metadata,
                });
            }
            Ok(())
        })
        .await
    }

    /// EndTxn: commits or aborts the open transaction and answers once it is complete.
    pub(crate) async fn end(
        self: &Arc<Self>,
        services: &Services,
        id: &str,
        (producer_id, epoch): (i64, i16),
        fenced: ResponseError,
        commit: bool,
    ) -> Result<(), Code> {
        self.ensure_loaded(services).await?;
        let Some(slot) = self.existing(id) else {
            return Err(ResponseError::InvalidProducerIdMapping.code());
        };
        let mut held = slot.write().await;
        let Some(meta) = held.as_mut() else {
            return Err(ResponseError::InvalidProducerIdMapping.code());
        };
        validate(meta, producer_id, epoch, fenced)?;
        match (meta.status, commit) {
            (Status::Empty, _) if meta.last_committed == Some(commit) => return Ok(()),
            (Status::Empty, _) | (Status::PrepareCommit, false) | (Status::PrepareAbort, true) => {
                return Err(ResponseError::InvalidTxnState.code());
            }
            (Status::Ongoing, _) => {
                let before = meta.clone();
                meta.status = if commit {
                    Status::PrepareCommit
                } else {
                    Status::PrepareAbort
                };
                if let Err(failure) = store(services, id, meta).await {
                    *meta = before;
                    return Err(code(failure));
                }
            }
            (Status::PrepareCommit | Status::PrepareAbort, _) => {}
        }
        settle(services, id, meta, true).await.map_err(code)
    }

    /// The partitions `group` has offsets for in a transaction not yet complete (OffsetFetch
    /// with `require_stable` answers them UNSTABLE_OFFSET_COMMIT). Waits for transactions
    /// being completed, whose offsets are then in the group already.
    pub(crate) async fn pending_offsets(
        self: &Arc<Self>,
        services: &Services,
        group: &str,
    ) -> Result<BTreeSet<TopicPartition>, Code> {
        self.ensure_loaded(services).await?;
        let slots: Vec<Slot> = self.slots.lock().values().cloned().collect();
        let mut pending = BTreeSet::new();
        for slot in slots {
            if let Some(meta) = slot.read().await.as_ref() {
                pending.extend(
                    meta.offsets
                        .iter()
                        .filter(|held| held.group == group)
                        .map(|held| held.partition.clone()),
                );
            }
        }
        Ok(pending)
    }

    /// The state of every transactional id this coordinator knows (ListTransactions), or of
    /// `only` these ids (DescribeTransactions: `None` for an id never initialized). A state
    /// being changed is read once the change is done.
    pub(crate) async fn states(
        self: &Arc<Self>,
        services: &Services,
        only: Option<&[String]>,
    ) -> Result<Vec<(String, Option<TxnMeta>)>, Code> {
        self.ensure_loaded(services).await?;
        // Looked up without `slot`, which would remember every id a caller names.
        let slots: Vec<(String, Option<Slot>)> = {
            let slots = self.slots.lock();
            match only {
                Some(ids) => ids
                    .iter()
                    .map(|id| (id.clone(), slots.get(id).cloned()))
                    .collect(),
                None => slots
                    .iter()
                    .map(|(id, slot)| (id.clone(), Some(Arc::clone(slot))))
                    .collect(),
            }
        };
        let mut states = Vec::with_capacity(slots.len());
        for (id, slot) in slots {
            let meta = match slot {
                Some(slot) => slot.read().await.clone(),
                None => None,
            };
            states.push((id, meta));
        }
        Ok(states)
    }

    /// Checks a transactional batch of `id` for `partition` (Kafka's transaction verification,
    /// KIP-890 part 1) and returns the shared lock to hold until the batch is durable (see the
    /// module docs). Refusals are the coordinator's codes ([`verify_producer`]; a partition
    /// outside the ongoing transaction is TRANSACTION_ABORTABLE), which Produce translates for
    /// its version. A lookup: an id never initialized is not remembered.
    pub(crate) async fn admit(
        self: &Arc<Self>,
        services: &Services,
        id: &str,
        producer: (i64, i16),
        partition: &TopicPartition,
    ) -> Result<OwnedRwLockReadGuard<Option<TxnMeta>>, Code> {
        self.ensure_loaded(services).await?;
        let Some(slot) = self.existing(id) else {
            return Err(ResponseError::InvalidProducerIdMapping.code());
        };
        let held = slot.read_owned().await;
        if !holds(verify_producer(held.as_ref(), producer)?, partition) {
            return Err(ResponseError::TransactionAbortable.code());
        }
        Ok(held)
    }

    /// AddPartitionsToTxn v4+ with VerifyOnly: whether each of `partitions` is in the ongoing
    /// transaction of `id`, adding none, or the refusal of the whole transaction.
    pub(crate) async fn verify(
        self: &Arc<Self>,
        services: &Services,
        id: &str,
        producer: (i64, i16),
        partitions: &[TopicPartition],
    ) -> Result<Vec<bool>, Code> {
        self.ensure_loaded(services).await?;
        let Some(slot) = self.existing(id) else {
            return Err(ResponseError::InvalidProducerIdMapping.code());
        };
        let held = slot.read().await;
        let meta = verify_producer(held.as_ref(), producer)?;
        Ok(partitions
            .iter()
            .map(|partition| holds(meta, partition))
            .collect())
    }

    /// The slot of `id` if it was ever initialized (or loaded), without creating one.
    fn existing(&self, id: &str) -> Option<Slot> {
        self.slots.lock().get(id).cloned()
    }
}

/// The transaction-wide checks of Kafka's verification (`handleVerifyPartitionsInTransaction`):
/// the id holds this producer id (else INVALID_PRODUCER_ID_MAPPING) at exactly this epoch (else
/// PRODUCER_FENCED: an older epoch is a zombie, a newer one was never handed out) and is not
/// being completed (CONCURRENT_TRANSACTIONS; a client retries). `Empty` passes: its partition
/// set is empty, so every partition is then outside the transaction.
fn verify_producer(
    meta: Option<&TxnMeta>,
    (producer_id, epoch): (i64, i16),
) -> Result<&TxnMeta, Code> {
    let Some(meta) = meta.filter(|meta| meta.producer_id == producer_id) else {
        return Err(ResponseError::InvalidProducerIdMapping.code());
    };
    if epoch != meta.epoch {
        return Err(ResponseError::ProducerFenced.code());
    }
    if matches!(meta.status, Status::PrepareCommit | Status::PrepareAbort) {
        return Err(ResponseError::ConcurrentTransactions.code());
    }
    Ok(meta)
}

/// Whether `partition` is in the ongoing transaction of `meta`. A completed transaction's
/// partitions are cleared when its markers are durable, so a late batch of it lands here as
/// outside: that is what keeps a "hanging transaction" (a batch after its marker, which no
/// marker would ever close) out of the log.
fn holds(meta: &TxnMeta, partition: &TopicPartition) -> bool {
    meta.status == Status::Ongoing && meta.partitions.contains(partition)
}

fn code(failure: EngineError) -> Code {
    error::code(&failure)
}

async fn store(services: &Services, id: &str, meta: &TxnMeta) -> EngineResult<()> {
    services
        .engine
        .metadata
        .put(NAMESPACE, id, meta.encode())
        .await
}

/// Aborts the ongoing transaction of `meta` with its epoch bumped (a timeout, a restart, or a
/// new InitProducerId): the producer that ran it is fenced.
async fn abort_fencing(services: &Services, id: &str, meta: &mut TxnMeta) -> EngineResult<()> {
    let before = meta.clone();
    meta.status = Status::PrepareAbort;
    // The last epochs are left to InitProducerId, which moves to a new producer id there.
    if meta.epoch < i16::MAX - 1 {
        meta.epoch += 1;
    }
    if let Err(failure) = store(services, id, meta).await {
        *meta = before;
        return Err(failure);
    }
    settle(services, id, meta, true).await
}

/// Brings `meta` to `Empty`: completes a `Prepare*` transaction, and aborts an `Ongoing` one
/// when `keep_ongoing` is false (recovery). Stores the result.
async fn settle(
    services: &Services,
    id: &str,
    meta: &mut TxnMeta,
    keep_ongoing: bool,
) -> EngineResult<()> {
    let commit = match meta.status {
        Status::Empty => return Ok(()),
        Status::Ongoing if keep_ongoing => return Ok(()),
        Status::Ongoing => return Box::pin(abort_fencing(services, id, meta)).await,
        Status::PrepareCommit => true,
        Status::PrepareAbort => false,
    };
    // Every marker is appended before any durability wait, so the partitions' syncs overlap
    // instead of adding up; all are durable before the transaction completes.
    let mut pending = Vec::with_capacity(meta.partitions.len());
    for partition in &meta.partitions {
        let batch = tributary_api::transactions::marker::build(
            meta.producer_id,
            meta.epoch,
            commit,
            now_ms(),
        );
        let batch = VerifiedBatch::verify(batch).map_err(EngineError::CorruptBatch)?;
        match services.engine.log.append_verified(partition, batch).await {
            Ok((_, durable)) => pending.push(durable),
            // A deleted topic (or partition) has no readers left to tell.
            Err(EngineError::UnknownTopic(_) | EngineError::UnknownPartition { .. }) => {
                tracing::info!(transactional_id = %id, %partition,
                    "transaction marker not written: the partition no longer exists");
            }
            Err(failure) => return Err(failure),
        }
    }
    for durable in pending {
        durable.await?;
    }
    if commit {
        let mut by_group: HashMap<&str, Vec<(TopicPartition, CommittedOffset)>> = HashMap::new();
        let commit_time = now_ms();
        for pending in &meta.offsets {
            by_group.entry(pending.group.as_str()).or_default().push((
                pending.partition.clone(),
                CommittedOffset {
                    offset: pending.offset,
                    metadata: pending.metadata.clone(),
                    commit_time,
                },
            ));
        }
        for (group, offsets) in by_group {
            services.engine.offsets.commit(group, offsets).await?;
        }
    }
    let mut done = meta.clone();
    done.status = Status::Empty;
    done.partitions.clear();
    done.offsets.clear();
    done.last_committed = Some(commit);
    store(services, id, &done).await?;
    tracing::debug!(transactional_id = %id, producer_id = meta.producer_id, epoch = meta.epoch,
        commit, partitions = meta.partitions.len(), "transaction completed");
    *meta = done;
    Ok(())
}

/// The timeout task: aborts expired transactions and retries failed completions, until the
/// coordinator is dropped.
async fn sweep(transactions: Weak<Transactions>, services: Services) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let Some(transactions) = transactions.upgrade() else {
            return;
        };
        let slots: Vec<(String, Slot)> = transactions
            .slots
            .lock()
            .iter()
            .map(|(id, slot)| (id.clone(), Arc::clone(slot)))
            .collect();
        drop(transactions);
        for (id, slot) in slots {
            let now = now_ms();
            let due = |meta: &TxnMeta| match meta.status {
                Status::Empty => false,
                Status::Ongoing => now.saturating_sub(meta.started_ms) > i64::from(meta.timeout_ms),
                Status::PrepareCommit | Status::PrepareAbort => true,
            };
            // A slot busy with a request is looked at next time.
            let Ok(mut held) = slot.try_write() else {
                continue;
            };
            let Some(meta) = held.as_mut().filter(|meta| due(meta)) else {
                continue;
            };
            let timed_out = meta.status == Status::Ongoing;
            let settled = if timed_out {
                abort_fencing(&services, &id, meta).await
            } else {
                settle(&services, &id, meta, true).await
            };
            match settled {
                Ok(()) if timed_out => {
                    tracing::info!(transactional_id = %id, timeout_ms = meta.timeout_ms,
                        "transaction aborted: timed out");
                }
                Ok(()) => {}
                Err(failure) => {
                    tracing::warn!(transactional_id = %id, error = %failure,
                        "transaction completion failed; retried");
                }
            }
        }
    }
}
