//! The frontends' metadata store (`tributary_api::MetadataStore`) on the cloud engine: the
//! cluster-wide namespaces in PostgreSQL (`metadata_records`), shared by every broker and by
//! `tributary user|vhost|permissions` with `cluster.metadata_url`; the per-broker namespaces in
//! the broker's local store ([`SplitRecords`]).
//!
//! Which namespace lives where (decided per namespace; a namespace not listed in
//! [`PER_BROKER_NAMESPACES`] is cluster-wide):
//! - cluster-wide: users and their tags (`users`, `users.tags`), AMQP vhosts and permissions
//!   (`amqp.vhost`, `amqp.permission`), Kafka ACLs (`kafka.acl`), AMQP exchanges and
//!   exchange-to-exchange bindings (`amqp.exchange`, `amqp.exchange_binding`), RocketMQ topic
//!   ids (`rocketmq.topic_ids`: message ids must resolve on any broker) and pending
//!   transactional halves (`rocketmq.transactions`: keyed by the offset of the shared half
//!   topic, so they survive the broker that accepted them);
//!   AMQP queue definitions (`amqp.queue`), exchange-to-queue bindings (`amqp.binding`) and
//!   topic-feed cursors (`amqp.topic_feed`), since queues run across brokers
//!   ([`super::queues`]): a broker that restarts empty-handed finds them again;
//! - per broker: Kafka producer-state snapshots (`kafka.producers`), which the cloud log does
//!   not use (it records producer state with each flush and allocates ids from a PostgreSQL
//!   sequence).
//!
//! Ordering: keys are stored as `bytea`, so a scan returns them in byte order and a prefix is
//! a byte prefix, exactly as the local store (redb, `&str` keys) orders them, whatever the
//! database collation; any string is a valid key (U+001F included; PostgreSQL `text` could not
//! hold U+0000, `bytea` can).
//!
//! Change notification: every write NOTIFYs [`METADATA_CHANNEL`] with its namespace in the
//! statement that writes it (delivered at commit). Each broker LISTENs on it through the
//! connection of [`super::wake`] and bumps the namespace's [`Generations`] counter, which
//! caches compare through `MetadataStore::generation`. After the LISTEN connection is
//! (re)established every namespace counts as changed, since notifications sent while it was
//! down are lost.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use bytes::Bytes;
use parking_lot::Mutex;
use tributary_api::{EngineError, EngineResult, MetadataStore};

use super::error::CloudError;
use super::pool::PgPool;

/// The channel metadata writes are announced on (payload: the namespace).
pub const METADATA_CHANNEL: &str = "tributary_metadata";

/// Namespaces that stay in each broker's local store (see the module doc for why).
pub const PER_BROKER_NAMESPACES: &[&str] = &["kafka.producers"];

/// Whether `namespace` is kept per broker rather than cluster-wide.
pub fn is_per_broker(namespace: &str) -> bool {
    PER_BROKER_NAMESPACES.contains(&namespace)
}

/// Per-namespace change counters. A namespace's generation is the sum of its own counter and
/// the all-namespaces counter; both only grow, so any change moves it. Every change also moves
/// the value of a watch channel ([`Generations::subscribe`]).
#[derive(Debug)]
pub struct Generations {
    all: AtomicU64,
    by_namespace: Mutex<HashMap<String, u64>>,
    any: tokio::sync::watch::Sender<u64>,
}

impl Default for Generations {
    fn default() -> Self {
        Self {
            all: AtomicU64::new(0),
            by_namespace: Mutex::new(HashMap::new()),
            any: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Generations {
    /// A receiver that sees a new value after every change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.any.subscribe()
    }

    fn announce(&self) {
        self.any.send_modify(|n| *n = n.wrapping_add(1));
    }

    pub fn get(&self, namespace: &str) -> u64 {
        let own = self
            .by_namespace
            .lock()
            .get(namespace)
            .copied()
            .unwrap_or(0);
        own.wrapping_add(self.all.load(Ordering::Acquire))
    }

    /// `namespace` changed (a notification, or a write through this broker).
    pub fn changed(&self, namespace: &str) {
        let mut map = self.by_namespace.lock();
        // Namespace names come from notifications: bound the map.
        if map.len() >= 1024 && !map.contains_key(namespace) {
            // Starting over must not bring a namespace's sum back to a value a cache saw:
            // move `all` past every own counter first.
            let highest = map.values().copied().max().unwrap_or(0);
            self.all.fetch_add(highest + 1, Ordering::AcqRel);
            map.clear();
        } else {
            *map.entry(namespace.to_owned()).or_insert(0) += 1;
        }
        drop(map);
        self.announce();
    }

    /// Every namespace may have changed (the LISTEN connection was re-established).
    pub fn changed_all(&self) {
        self.all.fetch_add(1, Ordering::AcqRel);
        self.announce();
    }
}

/// The cluster-wide records in PostgreSQL.
#[derive(Debug, Clone)]
pub struct PgRecords {
    pool: PgPool,
    generations: Arc<Generations>,
}

fn pg_error(context: &'static str) -> impl FnOnce(tokio_postgres::Error) -> EngineError {
    move |error| CloudError::pg(context)(error).into()
}

impl PgRecords {
    pub fn new(pool: PgPool, generations: Arc<Generations>) -> Self {
        Self { pool, generations }
    }

    /// The records of the database at `url` for a command (no broker): a small pool, the
    /// schema migrated first (a fresh database gets its tables from whoever comes first).
    pub async fn connect(url: &str) -> super::CloudResult<Self> {
        let pool = PgPool::new(url, 2, Arc::new(super::Stats::default()))?;
        {
            let mut client = pool.get().await?;
            super::schema::migrate(&mut client).await?;
        }
        Ok(Self::new(pool, Arc::new(Generations::default())))
    }

    pub fn generations(&self) -> &Arc<Generations> {
        &self.generations
    }
}

#[async_trait]
impl MetadataStore for PgRecords {
    async fn put(&self, namespace: &str, key: &str, value: Bytes) -> EngineResult<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "WITH written AS (
                     INSERT INTO metadata_records (namespace, key, value) VALUES ($1, $2, $3)
                     ON CONFLICT (namespace, key) DO UPDATE SET value = EXCLUDED.value
                     RETURNING 1)
                 SELECT pg_notify($4, $1) FROM written",
                &[
                    &namespace,
                    &key.as_bytes(),
                    &value.as_ref(),
                    &METADATA_CHANNEL,
                ],
            )
            .await
            .map_err(pg_error("writing a metadata record"))?;
        self.generations.changed(namespace);
        Ok(())
    }

    async fn get(&self, namespace: &str, key: &str) -> EngineResult<Option<Bytes>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT value FROM metadata_records WHERE namespace = $1 AND key = $2",
                &[&namespace, &key.as_bytes()],
            )
            .await
            .map_err(pg_error("reading a metadata record"))?;
        Ok(row.map(|row| Bytes::from(row.get::<_, Vec<u8>>(0))))
    }

    async fn delete(&self, namespace: &str, key: &str) -> EngineResult<bool> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "WITH gone AS (
                     DELETE FROM metadata_records WHERE namespace = $1 AND key = $2 RETURNING 1)
                 SELECT pg_notify($3, $1) FROM gone",
                &[&namespace, &key.as_bytes(), &METADATA_CHANNEL],
            )
            .await
            .map_err(pg_error("deleting a metadata record"))?;
        self.generations.changed(namespace);
        Ok(!rows.is_empty())
    }

    async fn scan(&self, namespace: &str, prefix: &str) -> EngineResult<Vec<(String, Bytes)>> {
        let client = self.pool.get().await?;
        // Keys with a byte prefix are contiguous in byte order, from the prefix itself to
        // (excluding) its successor when it has one: both bounds use the primary key; the
        // substring test states the condition itself.
        let start = prefix.as_bytes();
        let end = prefix_end(start);
        let rows = match &end {
            Some(end) => {
                client
                    .query(
                        "SELECT key, value FROM metadata_records
                         WHERE namespace = $1 AND key >= $2 AND key < $3
                           AND substring(key FROM 1 FOR octet_length($2)) = $2
                         ORDER BY key",
                        &[&namespace, &start, end],
                    )
                    .await
            }
            None => {
                client
                    .query(
                        "SELECT key, value FROM metadata_records
                         WHERE namespace = $1 AND key >= $2
                           AND substring(key FROM 1 FOR octet_length($2)) = $2
                         ORDER BY key",
                        &[&namespace, &start],
                    )
                    .await
            }
        }
        .map_err(pg_error("scanning metadata records"))?;
        rows.into_iter()
            .map(|row| {
                let key = String::from_utf8(row.get::<_, Vec<u8>>(0)).map_err(|_| {
                    EngineError::Metadata {
                        context: "scanning metadata records",
                        message: format!("a key of `{namespace}` is not UTF-8"),
                    }
                })?;
                Ok((key, Bytes::from(row.get::<_, Vec<u8>>(1))))
            })
            .collect()
    }

    fn generation(&self, namespace: &str) -> u64 {
        self.generations.get(namespace)
    }

    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        Some(self.generations.subscribe())
    }
}

/// The smallest byte string above every string starting with `prefix`: the prefix with its
/// last byte below 0xFF incremented and what follows dropped; `None` when there is none (an
/// empty prefix, or only 0xFF bytes).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let last = prefix.iter().rposition(|b| *b < 0xFF)?;
    let mut end = prefix[..=last].to_vec();
    end[last] += 1;
    Some(end)
}

/// The broker's metadata store on the cloud engine: cluster-wide namespaces in PostgreSQL,
/// [`PER_BROKER_NAMESPACES`] in the local store.
#[derive(Debug, Clone)]
pub struct SplitRecords {
    pub shared: Arc<PgRecords>,
    pub local: Arc<dyn MetadataStore>,
}

impl SplitRecords {
    fn route(&self, namespace: &str) -> &dyn MetadataStore {
        if is_per_broker(namespace) {
            self.local.as_ref()
        } else {
            self.shared.as_ref()
        }
    }
}

#[async_trait]
impl MetadataStore for SplitRecords {
    async fn put(&self, namespace: &str, key: &str, value: Bytes) -> EngineResult<()> {
        self.route(namespace).put(namespace, key, value).await
    }

    async fn get(&self, namespace: &str, key: &str) -> EngineResult<Option<Bytes>> {
        self.route(namespace).get(namespace, key).await
    }

    async fn delete(&self, namespace: &str, key: &str) -> EngineResult<bool> {
        self.route(namespace).delete(namespace, key).await
    }

    async fn scan(&self, namespace: &str, prefix: &str) -> EngineResult<Vec<(String, Bytes)>> {
        self.route(namespace).scan(namespace, prefix).await
    }

    fn generation(&self, namespace: &str) -> u64 {
        self.route(namespace).generation(namespace)
    }

    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        self.shared.changes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_move_per_namespace_and_all_at_once() {
        let generations = Generations::default();
        let (acl, users) = (generations.get("kafka.acl"), generations.get("users"));
        generations.changed("kafka.acl");
        assert_ne!(generations.get("kafka.acl"), acl);
        assert_eq!(generations.get("users"), users);
        let users = generations.get("users");
        let acl = generations.get("kafka.acl");
        generations.changed_all();
        assert_ne!(generations.get("users"), users);
        assert_ne!(generations.get("kafka.acl"), acl);
    }

    #[test]
    fn a_prefix_ends_below_its_successor() {
        assert_eq!(prefix_end(b""), None);
        assert_eq!(prefix_end(&[0xFF, 0xFF]), None);
        assert_eq!(prefix_end(b"ab"), Some(b"ac".to_vec()));
        assert_eq!(prefix_end(&[b'a', 0xFF]), Some(b"b".to_vec()));
        assert_eq!(prefix_end("2\u{1f}".as_bytes()), Some(b"2\x20".to_vec()));
    }

    #[test]
    fn only_producer_snapshots_stay_per_broker() {
        assert!(is_per_broker("kafka.producers"));
        for namespace in [
            "amqp.queue",
            "amqp.binding",
            "amqp.topic_feed",
            "users",
            "users.tags",
            "amqp.vhost",
            "amqp.permission",
            "kafka.acl",
            "amqp.exchange",
            "amqp.exchange_binding",
            "rocketmq.topic_ids",
            "rocketmq.transactions",
        ] {
            assert!(!is_per_broker(namespace), "{namespace}");
        }
    }
}
