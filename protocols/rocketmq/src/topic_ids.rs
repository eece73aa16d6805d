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
//! topic keeps its id. Queue ids, offsets and topic counts beyond those bounds are refused with
//! an error rather than wrapped.

use std::collections::HashMap;

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
    by_name: HashMap<String, u32>,
    by_id: HashMap<u32, String>,
}

/// The topic id table, loaded from the metadata store on first use.
#[derive(Debug, Default)]
pub(crate) struct TopicIds {
    table: RwLock<Table>,
    /// Serialises loading and assignment, so two sends cannot give one name two ids.
    assign: Mutex<()>,
}

impl TopicIds {
    /// The id of `topic`, assigned and stored when it has none.
    pub(crate) async fn id(&self, store: &dyn MetadataStore, topic: &str) -> RequestResult<u32> {
        if let Some(id) = self.cached(topic) {
            return Ok(id);
        }
        let _assigning = self.assign.lock().await;
        self.load(store).await?;
        if let Some(id) = self.cached(topic) {
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
        let mut table = self.table.write();
        table.by_name.insert(topic.to_owned(), next);
        table.by_id.insert(next, topic.to_owned());
        Ok(next)
    }

    /// The topic named by `id`, if any.
    pub(crate) async fn name(
        &self,
        store: &dyn MetadataStore,
        id: u32,
    ) -> RequestResult<Option<String>> {
        if !self.table.read().loaded {
            let _assigning = self.assign.lock().await;
            self.load(store).await?;
        }
        Ok(self.table.read().by_id.get(&id).cloned())
    }

    fn cached(&self, topic: &str) -> Option<u32> {
        self.table.read().by_name.get(topic).copied()
    }

    /// Reads every stored id once; call with `assign` held.
    async fn load(&self, store: &dyn MetadataStore) -> RequestResult<()> {
        if self.table.read().loaded {
            return Ok(());
        }
        let records = store.scan(NAMESPACE, "").await?;
        let mut table = self.table.write();
        for (topic, value) in records {
            let id = std::str::from_utf8(&value)
                .ok()
                .and_then(|text| text.parse::<u32>().ok());
            if let Some(id) = id {
                table.by_name.insert(topic.clone(), id);
                table.by_id.insert(id, topic);
            }
        }
        table.loaded = true;
        Ok(())
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
}
