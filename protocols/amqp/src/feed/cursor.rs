//! The durable position of a topic feed, one record per (topic, partition) in the metadata store
//! (namespace [`CURSOR_NAMESPACE`], key `topic U+001F partition`, value an AMQP field table
//! `topic_id` (S, 16 bytes), `cursor` (l), `pending` (l); see [`crate::definitions`]).
//!
//! `cursor` is the first offset not yet fed: every record below it was enqueued into each
//! queue it matched. `pending` is where the chunk being fed ends: it is written (durably) before
//! the chunk's records are enqueued and `cursor` catches up after the enqueues returned, so a
//! `pending` beyond `cursor` at start means the records between may have been enqueued already
//! and will be fed again. A record with another topic id belongs to a deleted topic of the same
//! name and counts as absent.

use bytes::Bytes;
use tributary_api::{EngineResult, MetadataStore};

use crate::codec::table::{FieldTable, FieldValue};
use crate::definitions as defs;

pub const CURSOR_NAMESPACE: &str = "amqp.topic_feed";

/// A partition's feed position.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FeedCursor {
    pub cursor: i64,
    pub pending: i64,
}

fn key(topic: &str, partition: u32) -> String {
    defs::key(&[topic, &partition.to_string()])
}

fn encode(topic_id: &[u8; 16], at: FeedCursor) -> Bytes {
    let mut table = FieldTable::default();
    table.insert(
        "topic_id",
        FieldValue::LongString(Bytes::copy_from_slice(topic_id)),
    );
    table.insert("cursor", FieldValue::I64(at.cursor));
    table.insert("pending", FieldValue::I64(at.pending));
    defs::encode(&table)
}

fn decode(value: &[u8], topic_id: &[u8; 16]) -> Option<FeedCursor> {
    let table = defs::decode(value)?;
    match table.get("topic_id") {
        Some(FieldValue::LongString(id)) if id.as_ref() == topic_id => {}
        _ => return None,
    }
    Some(FeedCursor {
        cursor: table.get("cursor")?.as_i64()?,
        pending: table.get("pending")?.as_i64()?,
    })
}

/// The stored position of a partition of topic `topic_id`, if it has one.
pub async fn load(
    store: &dyn MetadataStore,
    topic: &str,
    topic_id: &[u8; 16],
    partition: u32,
) -> EngineResult<Option<FeedCursor>> {
    let value = store.get(CURSOR_NAMESPACE, &key(topic, partition)).await?;
    Ok(value.and_then(|v| decode(&v, topic_id)))
}

/// Stores a partition's position; returns once it is durable.
pub async fn save(
    store: &dyn MetadataStore,
    topic: &str,
    topic_id: &[u8; 16],
    partition: u32,
    at: FeedCursor,
) -> EngineResult<()> {
    store
        .put(
            CURSOR_NAMESPACE,
            &key(topic, partition),
            encode(topic_id, at),
        )
        .await
}

/// Drops every position of `topic` (the topic was deleted).
pub async fn forget(store: &dyn MetadataStore, topic: &str) -> EngineResult<()> {
    let prefix = defs::key(&[topic, ""]);
    for (key, _) in store.scan(CURSOR_NAMESPACE, &prefix).await? {
        store.delete(CURSOR_NAMESPACE, &key).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_records_round_trip_and_belong_to_one_topic_id() {
        let at = FeedCursor {
            cursor: 17,
            pending: 42,
        };
        let stored = encode(&[7; 16], at);
        assert_eq!(decode(&stored, &[7; 16]), Some(at));
        assert_eq!(decode(&stored, &[8; 16]), None);
        assert_eq!(decode(b"junk", &[7; 16]), None);
    }
}
