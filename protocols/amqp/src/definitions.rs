//! Durable AMQP definitions in the engine's metadata store.
//!
//! Records (namespace, key, value); keys join their parts with U+001F (unit separator), values
//! are one AMQP field table in wire encoding (u32 length + entries), so they are self-describing
//! and can grow fields without a format version:
//!
//! | namespace | key | value table entries |
//! |---|---|---|
//! | `amqp.exchange` | vhost, name | `type` (S), `auto_delete` (t), `internal` (t), `arguments` (F) |
//! | `amqp.queue` | vhost, name | `auto_delete` (t), `arguments` (F) |
//! | `amqp.binding` | vhost, exchange, queue, routing key, arguments hex | `arguments` (F); on a topic's exchange also `topic_id` (S, 16 bytes) and `topic_start` (A of l, the high watermarks at bind time) |
//! | `amqp.exchange_binding` | vhost, source, destination exchange, routing key, arguments hex | `arguments` (F) |
//! | `amqp.topic_feed` | topic, partition | `topic_id` (S), `cursor` (l), `pending` (l): see [`crate::feed::cursor`] |
//!
//! Only durable exchanges and queues (and bindings between durable ends) are written. Vhosts
//! themselves are records of [`crate::access`]. A queue's messages live in the engine queue
//! named by [`crate::vhost::engine_queue_name`].

use bytes::{Bytes, BytesMut};
use tributary_api::{EngineError, EngineResult, MetadataStore};

use crate::codec::table::{FieldTable, FieldValue};
use crate::codec::wire::Reader;

pub const EXCHANGE_NAMESPACE: &str = "amqp.exchange";
pub const QUEUE_NAMESPACE: &str = "amqp.queue";
pub const BINDING_NAMESPACE: &str = "amqp.binding";
pub const EXCHANGE_BINDING_NAMESPACE: &str = "amqp.exchange_binding";
const SEPARATOR: char = '\u{1f}';

/// Joins key parts.
pub fn key(parts: &[&str]) -> String {
    let mut out = String::new();
    for (index, part) in parts.iter().enumerate() {
        if index > 0 {
            out.push(SEPARATOR);
        }
        out.push_str(part);
    }
    out
}

/// Splits a key into its parts.
pub fn split_key(key: &str) -> Vec<&str> {
    key.split(SEPARATOR).collect()
}

/// A binding's identity in its key: the arguments' wire bytes in hex keep distinct bindings apart.
pub fn arguments_fingerprint(arguments: &FieldTable) -> String {
    let mut wire = BytesMut::new();
    arguments.encode(&mut wire);
    wire.iter().map(|byte| format!("{byte:02x}")).collect()
}

pub fn encode(table: &FieldTable) -> Bytes {
    let mut out = BytesMut::new();
    table.encode(&mut out);
    out.freeze()
}

/// Decodes a stored value; `None` when it is damaged.
pub fn decode(value: &[u8]) -> Option<FieldTable> {
    FieldTable::decode(&mut Reader::new(value)).ok()
}

pub fn flag(table: &FieldTable, name: &str) -> bool {
    matches!(table.get(name), Some(FieldValue::Bool(true)))
}

pub fn nested(table: &FieldTable, name: &str) -> FieldTable {
    match table.get(name) {
        Some(FieldValue::Table(inner)) => inner.clone(),
        _ => FieldTable::default(),
    }
}

/// Every record of a namespace whose key starts with `prefix` (a vhost and the separator).
/// One record that cannot be decoded fails the whole load: a topology missing a queue or a
/// binding would route messages nowhere without a word, so the vhost refuses to serve instead
/// (every operation on it gets the error until the record is repaired).
pub async fn load(
    store: &dyn MetadataStore,
    namespace: &str,
    prefix: &str,
) -> EngineResult<Vec<(String, FieldTable)>> {
    let records = store.scan(namespace, prefix).await?;
    let mut out = Vec::with_capacity(records.len());
    for (key, value) in records {
        let Some(table) = decode(&value) else {
            tracing::error!(
                namespace,
                key,
                "an AMQP definition cannot be decoded; its vhost's topology is not loaded"
            );
            return Err(EngineError::Metadata {
                context: "loading AMQP definitions",
                message: format!("the record {namespace}/{key} cannot be decoded"),
            });
        };
        out.push((key, table));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use tributary_api::metadata::MemoryMetadataStore;

    use super::*;

    #[tokio::test]
    async fn an_undecodable_definition_fails_the_load_instead_of_vanishing() {
        let store = MemoryMetadataStore::default();
        let mut good = BytesMut::new();
        let mut table = FieldTable::default();
        table.insert("durable", FieldValue::Bool(true));
        table.encode(&mut good);
        store.put("q", "v/a", good.freeze()).await.expect("put");
        let loaded = load(&store, "q", "v/").await.expect("a good record loads");
        assert_eq!(loaded.len(), 1);
        // A table that declares more bytes than it has.
        store
            .put("q", "v/b", Bytes::from_static(&[0, 0, 1, 0, 1]))
            .await
            .expect("put");
        let err = load(&store, "q", "v/")
            .await
            .expect_err("no record is skipped");
        assert!(err.to_string().contains("v/b"), "{err}");
    }
}
