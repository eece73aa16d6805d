//! Broker-wide physical offsets. RocketMQ names a message by an 8-byte "commit log offset" that
//! is unique across the broker (inside offset message ids, VIEW_MESSAGE_BY_ID,
//! CONSUMER_SEND_MSG_BACK). Tributary has no shared commit log, so it builds that number from a
//! durable per-topic id, the queue id and the queue offset:
//!
//! ```text
//! bit 52..42: topic id (11 bits) | 41..34: queue id (8 bits) | 33..0: queue offset (34 bits)
//! ```
//!
//! The whole number stays below 2^53 because JavaScript clients (ali-ons) turn it into a double:
//! a larger value would round and name another message. That bounds the scheme at 2,048 topics
//! used through RocketMQ, 256 queues per topic and 2^34 (17 billion) messages per queue.
//!
//! Invariants: an id, once given to a topic name, is stored in the metadata store (namespace
//! [`NAMESPACE`], key = topic, value = the id as decimal text) before it is used, and is never
//! reused for another name, so ids in message ids stay resolvable after restarts; a recreated
//! topic keeps its id. On the cloud engine the store is shared by every broker: an id is used
//! only after reading back that no other topic claimed it ([`TopicIds::id`]), and the table is
//! read again when the store's generation of the namespace moves, so a message id made by one
//! broker resolves on every other. Queue ids, offsets and topic counts beyond those bounds are
//! refused with an error rather than wrapped.

use std::collections::{HashMap, HashSet};

use bytes::Bytes;
use parking_lot::RwLock;
use tokio::sync::Mutex;
use tributary_api::MetadataStore;

use crate::error::{RequestError, RequestResult};

/// Metadata-store namespace of the topic ids.
pub const NAMESPACE: &str = "rocketmq.topic_ids";
const QUEUE_BITS: u32 = 8;
const OFFSET_BITS: u32 = 34;
const MAX_TOPICS: u32 = 1 << 11;

#[derive(Debug, Default)]
struct Table {
    loaded: bool,
    /// The store's generation of [`NAMESPACE`] when the table was read.
    generation: u64,
    by_name: HashMap<String, u32>,
    by_id: HashMap<u32, String>,
    /// Ids two names hold at once (brokers claiming one at the same moment; one will move).
    contested: HashSet<u32>,
}

/// Attempts at claiming a fresh id before giving up (each loses only to another broker
/// claiming the same id at the same moment).
const CLAIM_ATTEMPTS: usize = 8;

/// The topic id table, loaded from the metadata store on first use and again when the store
/// says another broker changed it.
#[derive(Debug, Default)]
pub(crate) struct TopicIds {
    table: RwLock<Table>,
    /// Serialises loading and assignment, so two sends cannot give one name two ids.
    assign: Mutex<()>,
}

impl TopicIds {
    /// The id of `topic`, assigned and stored when it has none.
    ///
    /// Several brokers may share the store: an id is used only once the store, read back
    /// after writing the claim, shows `topic` as its only holder. Of two brokers claiming one
    /// id at once, the later read sees both claims and picks another id, so two topics never
    /// share an id (the store is linearizable: PostgreSQL).
    pub(crate) async fn id(&self, store: &dyn MetadataStore, topic: &str) -> RequestResult<u32> {
        if let Some(id) = self.cached(topic)
            && !self.shared_id(id)
        {
            return Ok(id);
        }
        let _assigning = self.assign.lock().await;
        for _ in 0..CLAIM_ATTEMPTS {
            self.load(store, true).await?;
            // Held alone, it is the topic's; held with another name, claim a new one.
            if let Some(id) = self.cached(topic)
                && !self.shared_id(id)
            {
                return Ok(id);
            }
            let next = self
                .table
                .read()
                .by_id
                .keys()
                .max()
                .map_or(0, |max| max + 1);
            if next >= MAX_TOPICS {
                return Err(RequestError::Illegal(format!(
                    "no RocketMQ topic id left for `{topic}` ({MAX_TOPICS} topics have one)"
                )));
            }
            store
                .put(NAMESPACE, topic, Bytes::from(next.to_string()))
                .await?;
            // The generation before the read: a write landing during it moves it again.
            let generation = store.generation(NAMESPACE);
            let holders = self.read_all(store).await?;
            let mine = holders.get(topic).copied();
            self.install(holders, generation);
            // Usually `next`; another broker's id for this same topic when its write came
            // last. Either is the topic's unless another name holds it too: then claim again.
            if let Some(id) = mine
                && !self.shared_id(id)
            {
                return Ok(id);
            }
        }
        Err(RequestError::Illegal(format!(
            "could not claim a RocketMQ topic id for `{topic}` ({CLAIM_ATTEMPTS} attempts \
             collided with other brokers)"
        )))
    }

    /// The topic named by `id`, if any.
    pub(crate) async fn name(
        &self,
        store: &dyn MetadataStore,
        id: u32,
    ) -> RequestResult<Option<String>> {
        let stale = {
            let table = self.table.read();
            !table.loaded || table.generation != store.generation(NAMESPACE)
        };
        if stale {
            let _assigning = self.assign.lock().await;
            self.load(store, false).await?;
        }
        Ok(self.table.read().by_id.get(&id).cloned())
    }

    fn cached(&self, topic: &str) -> Option<u32> {
        self.table.read().by_name.get(topic).copied()
    }

    /// Whether two topics hold `id` in the table.
    fn shared_id(&self, id: u32) -> bool {
        self.table.read().contested.contains(&id)
    }

    /// Reads every stored id when the table was never read, the store's generation moved, or
    /// `always`; call with `assign` held.
    async fn load(&self, store: &dyn MetadataStore, always: bool) -> RequestResult<()> {
        let generation = store.generation(NAMESPACE);
        {
            let table = self.table.read();
            if table.loaded && table.generation == generation && !always {
                return Ok(());
            }
        }
        let records = self.read_all(store).await?;
        self.install(records, generation);
        Ok(())
    }

    async fn read_all(&self, store: &dyn MetadataStore) -> RequestResult<HashMap<String, u32>> {
        let records = store.scan(NAMESPACE, "").await?;
        let mut out = HashMap::with_capacity(records.len());
        for (topic, value) in records {
            let id = std::str::from_utf8(&value)
                .ok()
                .and_then(|text| text.parse::<u32>().ok());
            if let Some(id) = id {
                out.insert(topic, id);
            }
        }
        Ok(out)
    }

    /// Replaces the table with `records`. An id held by two names (two brokers claimed it at
    /// once and one is still claiming another) resolves to the first name in name order, so
    /// every broker answers alike until the loser's claim lands.
    fn install(&self, records: HashMap<String, u32>, generation: u64) {
        let mut by_id: HashMap<u32, String> = HashMap::with_capacity(records.len());
        let mut contested = HashSet::new();
        for (topic, id) in &records {
            match by_id.get(id) {
                Some(held) => {
                    contested.insert(*id);
                    if held > topic {
                        by_id.insert(*id, topic.clone());
                    }
                }
                None => {
                    by_id.insert(*id, topic.clone());
                }
            }
        }
        let mut table = self.table.write();
        table.by_name = records;
        table.by_id = by_id;
        table.contested = contested;
        table.generation = generation;
        table.loaded = true;
    }
}

/// The physical offset of message `queue_offset` of queue `queue_id` of topic `topic_id`.
pub(crate) fn physical_offset(
    topic_id: u32,
    queue_id: u32,
    queue_offset: i64,
) -> RequestResult<i64> {
    if queue_id >= 1 << QUEUE_BITS || !(0..1i64 << OFFSET_BITS).contains(&queue_offset) {
        return Err(RequestError::Illegal(format!(
            "queue {queue_id} offset {queue_offset} does not fit a physical offset"
        )));
    }
    Ok((i64::from(topic_id) << (QUEUE_BITS + OFFSET_BITS))
        | (i64::from(queue_id) << OFFSET_BITS)
        | queue_offset)
}

/// Splits a physical offset into (topic id, queue id, queue offset).
pub(crate) fn split_physical_offset(physical: i64) -> (u32, u32, i64) {
    let physical = physical as u64;
    (
        (physical >> (QUEUE_BITS + OFFSET_BITS)) as u32 & (MAX_TOPICS - 1),
        ((physical >> OFFSET_BITS) & ((1 << QUEUE_BITS) - 1)) as u32,
        (physical & ((1 << OFFSET_BITS) - 1)) as i64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn physical_offsets_split_back_and_refuse_what_does_not_fit() {
        for (topic, queue, offset) in [(0, 0, 0), (1, 3, 123_456), (2_047, 255, (1 << 34) - 1)] {
            let physical = physical_offset(topic, queue, offset).unwrap();
            assert_eq!(split_physical_offset(physical), (topic, queue, offset));
            assert!(physical < 1 << 53, "exact as a JavaScript number");
        }
        assert!(physical_offset(0, 256, 0).is_err());
        assert!(physical_offset(0, 0, 1 << 34).is_err());
        assert!(physical_offset(0, 0, -1).is_err());
        assert_ne!(
            physical_offset(1, 0, 5).unwrap(),
            physical_offset(2, 0, 5).unwrap(),
            "topics never share a physical offset"
        );
    }

    /// A store shared by "brokers" (several `TopicIds`): its generation counts writes, and
    /// the first claim of `racer` is matched, in the same instant, by another broker's claim
    /// of the same id for `rival`.
    #[derive(Debug, Default)]
    struct Shared {
        inner: tributary_api::metadata::MemoryMetadataStore,
        writes: std::sync::atomic::AtomicU64,
        race: parking_lot::Mutex<Option<(String, String)>>,
    }

    #[async_trait::async_trait]
    impl MetadataStore for Shared {
        async fn put(&self, ns: &str, key: &str, value: Bytes) -> tributary_api::EngineResult<()> {
            let rival = self.race.lock().take_if(|(racer, _)| racer == key);
            if let Some((_, rival)) = rival {
                self.inner.put(ns, &rival, value.clone()).await?;
            }
            self.writes
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.put(ns, key, value).await
        }
        async fn get(&self, ns: &str, key: &str) -> tributary_api::EngineResult<Option<Bytes>> {
            self.inner.get(ns, key).await
        }
        async fn delete(&self, ns: &str, key: &str) -> tributary_api::EngineResult<bool> {
            self.inner.delete(ns, key).await
        }
        async fn scan(
            &self,
            ns: &str,
            prefix: &str,
        ) -> tributary_api::EngineResult<Vec<(String, Bytes)>> {
            self.inner.scan(ns, prefix).await
        }
        fn generation(&self, _ns: &str) -> u64 {
            self.writes.load(std::sync::atomic::Ordering::SeqCst)
        }
    }

    #[tokio::test]
    async fn brokers_sharing_a_store_never_give_two_topics_one_id() {
        let store = Shared::default();
        let (a, b) = (TopicIds::default(), TopicIds::default());
        assert_eq!(a.id(&store, "x").await.unwrap(), 0);
        assert_eq!(b.id(&store, "y").await.unwrap(), 1, "b sees a's id");
        assert_eq!(b.name(&store, 0).await.unwrap().as_deref(), Some("x"));
        assert_eq!(
            a.name(&store, 1).await.unwrap().as_deref(),
            Some("y"),
            "a reads again after b's write"
        );
        // Another broker claims id 2 for `v` at the instant `a` claims it for `w`.
        *store.race.lock() = Some(("w".to_owned(), "v".to_owned()));
        let w = a.id(&store, "w").await.unwrap();
        assert_eq!(w, 3, "the contested id is given up");
        assert_eq!(a.name(&store, 2).await.unwrap().as_deref(), Some("v"));
        assert_eq!(b.name(&store, 3).await.unwrap().as_deref(), Some("w"));
        assert_eq!(b.id(&store, "w").await.unwrap(), 3);
    }
}
