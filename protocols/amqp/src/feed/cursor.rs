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
use tributary_api::{EngineError, EngineResult, MetadataStore};

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

/// The cursor in `value` if it belongs to `topic_id`; `Ok(None)` for another topic id (a deleted
/// topic of the same name). An undecodable record is an error, not an absent cursor: read as
/// absent, the feed would start again at its bindings' start and enqueue everything twice.
fn decode(value: &[u8], topic_id: &[u8; 16]) -> Result<Option<FeedCursor>, &'static str> {
    let table = defs::decode(value).ok_or("not an AMQP field table")?;
    let field = |name| table.get(name).and_then(FieldValue::as_i64);
    let at = match (table.get("topic_id"), field("cursor"), field("pending")) {
        (Some(FieldValue::LongString(id)), Some(cursor), Some(pending)) => (id, cursor, pending),
        _ => return Err("missing topic_id, cursor or pending"),
    };
    if at.0.as_ref() != topic_id {
        return Ok(None);
    }
    Ok(Some(FeedCursor {
        cursor: at.1,
        pending: at.2,
    }))
}

/// The stored position of a partition of topic `topic_id`, if it has one.
pub async fn load(
    store: &dyn MetadataStore,
    topic: &str,
    topic_id: &[u8; 16],
    partition: u32,
) -> EngineResult<Option<FeedCursor>> {
    let key = key(topic, partition);
    let Some(value) = store.get(CURSOR_NAMESPACE, &key).await? else {
        return Ok(None);
    };
    decode(&value, topic_id).map_err(|reason| EngineError::Metadata {
        context: "reading a topic feed's cursor",
        message: format!("record `{key}` of `{CURSOR_NAMESPACE}` is unreadable: {reason}"),
    })
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
        assert_eq!(decode(&stored, &[7; 16]), Ok(Some(at)));
        assert_eq!(decode(&stored, &[8; 16]), Ok(None));
        assert!(decode(b"junk", &[7; 16]).is_err());
        assert!(decode(&defs::encode(&FieldTable::default()), &[7; 16]).is_err());
    }
}
