//! What every reader of a partition needs to know of Kafka transactions (KIP-98), whatever
//! protocol it serves: records of a transaction become readable only once its COMMIT marker
//! follows them, records of an aborted one never, and the markers themselves carry no message.
//!
//! The Kafka frontend's coordinator writes transactions; this module reads them back from the
//! log, so the Kafka `read_committed` fetch, AMQP streams and topic feeds and RocketMQ pulls
//! agree on what is committed. One [`TransactionReads`] per broker, in [`Engine::transactions`].
//!
//! - [`TransactionReads::join`] records, durably (metadata namespace [`JOINED_NAMESPACE`]) and
//!   before its first transactional batch can be admitted, that a partition takes part in
//!   transactions. Partitions never joined hold no transactional batch, so readers of them (the
//!   usual case) pay one lock and replay nothing.
//! - [`index`] derives, from the log only, each joined partition's open transactions (the
//!   earliest bounds the last stable offset, LSO) and aborted ones; a crash leaves it agreeing
//!   with the log.
//! - [`Engine::committed`] is what a non-Kafka reader asks before reading: it delivers nothing
//!   at or past [`Committed::end`] (the LSO), passes over [`Committed::skips`] batches (markers
//!   and aborted records: moving past them loses nothing, they are not messages), and when it is
//!   caught up at `end` below the high watermark it waits for the log to pass
//!   [`Committed::high_watermark`]: the marker that moves the LSO is an append.
//!
//! An open transaction holds every reader of its partitions back until it ends; the
//! coordinator aborts it after its timeout, and after a restart completes or aborts what the
//! stop left open, so readers are never held forever.

pub mod index;
pub mod marker;

use std::collections::HashSet;
use std::sync::{Mutex, PoisonError};

use bytes::Bytes;

use crate::batch::BatchHeader;
use crate::{Engine, EngineResult, LogService, MetadataStore, TopicPartition};
pub use index::{Aborted, Stable, below_stable};

/// Metadata-store namespace of the partitions that ever joined a transaction (key
/// `<topic id as 32 hex digits>/<partition>`, empty value).
pub const JOINED_NAMESPACE: &str = "kafka.transactions.partitions";

/// A partition of one topic's life: (topic id, partition).
type Joined = ([u8; 16], u32);

/// The broker's view of transactional partitions, shared by every frontend.
#[derive(Debug, Default)]
pub struct TransactionReads {
    /// Every partition that ever joined a transaction; complete once `loaded` is set.
    joined: Mutex<HashSet<Joined>>,
    loaded: tokio::sync::OnceCell<()>,
    index: index::TxnIndex,
}

fn joined_key((topic_id, partition): Joined) -> String {
    let hex: String = topic_id.iter().map(|byte| format!("{byte:02x}")).collect();
    format!("{hex}/{partition}")
}

fn parse_joined_key(key: &str) -> Option<Joined> {
    let (hex, partition) = key.split_once('/')?;
    if hex.len() != 32 {
        return None;
    }
    let mut topic_id = [0u8; 16];
    for (at, byte) in topic_id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(at * 2..at * 2 + 2)?, 16).ok()?;
    }
    Some((topic_id, partition.parse().ok()?))
}

impl TransactionReads {
    fn joined(&self) -> std::sync::MutexGuard<'_, HashSet<Joined>> {
        self.joined.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Loads the joined partitions once; every other method needs it done first.
    pub async fn ensure_loaded(&self, metadata: &dyn MetadataStore) -> EngineResult<()> {
        self.loaded
            .get_or_try_init(|| async {
                let stored = metadata.scan(JOINED_NAMESPACE, "").await?;
                let mut joined = self.joined();
                for (key, _) in stored {
                    match parse_joined_key(&key) {
                        Some(partition) => {
                            joined.insert(partition);
                        }
                        None => tracing::error!(key,
                            "unreadable transactional-partition key; its partition is read without the transaction index"),
                    }
                }
                Ok(())
            })
            .await
            .map(|_| ())
    }

    /// Records, durably first, that partition `partition` of topic `topic_id` takes part in
    /// transactions. The caller admits no transactional batch for it before this returns.
    pub async fn join(
        &self,
        metadata: &dyn MetadataStore,
        topic_id: [u8; 16],
        partition: u32,
    ) -> EngineResult<()> {
        self.ensure_loaded(metadata).await?;
        let key = (topic_id, partition);
        if self.joined().contains(&key) {
            return Ok(());
        }
        metadata
            .put(JOINED_NAMESPACE, &joined_key(key), Bytes::new())
            .await?;
        self.joined().insert(key);
        Ok(())
    }

    /// Whether partition `partition` of topic `topic_id` may hold transactional batches.
    /// `false` is only meaningful once [`Self::ensure_loaded`] returned.
    pub fn ever_joined(&self, topic_id: [u8; 16], partition: u32) -> bool {
        self.joined().contains(&(topic_id, partition))
    }

    /// Brings the index of a joined partition up to its high watermark; its LSO and the
    /// aborted transactions overlapping `from..to` (see [`index`]).
    pub async fn stable(
        &self,
        log: &dyn LogService,
        topic_id: [u8; 16],
        partition: &TopicPartition,
        from: i64,
        to: i64,
    ) -> EngineResult<Stable> {
        self.index.stable(log, topic_id, partition, from, to).await
    }
}

/// What a reader that is not a Kafka `read_committed` fetch (which gets the aborted list and
/// lets the client filter) may deliver of one partition from some offset on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Committed {
    /// Nothing at or past this offset is delivered yet: the LSO (the high watermark when no
    /// transaction is open).
    pub end: i64,
    /// The high watermark this view was taken at.
    pub high_watermark: i64,
    aborted: Vec<Aborted>,
}

impl Committed {
    /// A view of a partition without transactions.
    pub fn everything(high_watermark: i64) -> Self {
        Self {
            end: high_watermark,
            high_watermark,
            aborted: Vec::new(),
        }
    }

    /// Whether the batch `header` heads carries nothing to deliver: a control batch (a
    /// transaction marker) or a batch of an aborted transaction.
    pub fn skips(&self, header: &BatchHeader) -> bool {
        if header.is_control() {
            return true;
        }
        header.is_transactional()
            && self.aborted.iter().any(|aborted| {
                aborted.producer_id == header.producer_id
                    && aborted.first_offset <= header.base_offset
                    && header.base_offset < aborted.last_offset
            })
    }

    /// The whole batches of `data` (read from the partition) that end before [`Self::end`].
    pub fn cut(&self, data: &Bytes) -> Bytes {
        if self.end >= self.high_watermark && self.aborted.is_empty() {
            return data.clone();
        }
        below_stable(data, self.end)
    }

    /// Where a reader caught up at `at` waits for the log to pass: the high watermark when
    /// an open transaction holds `at` below it (the LSO moves with a marker's append).
    pub fn wait_from(&self, at: i64) -> i64 {
        at.max(self.high_watermark)
    }
}

impl Engine {
    /// What a reader of `partition` may deliver from offset `from` on (see the module doc).
    pub async fn committed(
        &self,
        partition: &TopicPartition,
        from: i64,
    ) -> EngineResult<Committed> {
        let high_watermark = self.log.offsets(partition)?.high_watermark;
        self.transactions
            .ensure_loaded(self.metadata.as_ref())
            .await?;
        if self.transactions.joined().is_empty() {
            return Ok(Committed::everything(high_watermark));
        }
        let topic_id = self.topics.describe_topic(&partition.topic)?.id;
        if !self.transactions.ever_joined(topic_id, partition.partition) {
            return Ok(Committed::everything(high_watermark));
        }
        let stable = self
            .transactions
            .stable(self.log.as_ref(), topic_id, partition, from, i64::MAX)
            .await?;
        Ok(Committed {
            end: stable.last_stable_offset,
            high_watermark: stable.high_watermark,
            aborted: stable.aborted,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Record;
    use crate::batch::{build_batch, reseal, set_base_offset};

    fn transactional(producer_id: i64, base_offset: i64, control: bool) -> BatchHeader {
        let mut batch = build_batch(&[Record::default(), Record::default()]).to_vec();
        let attributes: i16 = if control { 0x30 } else { 0x10 };
        batch[21..23].copy_from_slice(&attributes.to_be_bytes());
        batch[43..51].copy_from_slice(&producer_id.to_be_bytes());
        set_base_offset(&mut batch, base_offset);
        reseal(&mut batch);
        BatchHeader::parse(&batch).expect("header")
    }

    #[test]
    fn skips_markers_and_the_batches_of_aborted_transactions_only() {
        let view = Committed {
            end: 100,
            high_watermark: 120,
            aborted: vec![Aborted {
                producer_id: 7,
                first_offset: 10,
                last_offset: 20,
            }],
        };
        assert!(view.skips(&transactional(7, 10, false)));
        assert!(view.skips(&transactional(7, 18, false)));
        assert!(view.skips(&transactional(9, 30, true)), "a marker");
        assert!(
            !view.skips(&transactional(7, 21, false)),
            "a later transaction"
        );
        assert!(!view.skips(&transactional(7, 4, false)), "an earlier one");
        assert!(
            !view.skips(&transactional(8, 12, false)),
            "another producer"
        );
        let plain = BatchHeader::parse(&build_batch(&[Record::default()])).expect("header");
        assert!(!view.skips(&plain));
        assert_eq!(view.wait_from(100), 120);
    }

    #[test]
    fn joined_keys_round_trip_and_garbage_is_refused() {
        let key = ([0xab; 16], 7);
        assert_eq!(parse_joined_key(&joined_key(key)), Some(key));
        assert_eq!(parse_joined_key("zz/1"), None);
        assert_eq!(parse_joined_key(&format!("{}/x", "0".repeat(32))), None);
        assert_eq!(parse_joined_key("no-slash"), None);
    }
}
