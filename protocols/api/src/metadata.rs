//! Durable definitions that frontends own (AMQP vhosts, exchanges and bindings, RocketMQ groups,
//! users), as namespaced key-value records in the engine's metadata store. Values are opaque
//! bytes in a format the owning frontend documents. A write returns only after it is durable.

use async_trait::async_trait;
use bytes::Bytes;

use crate::error::EngineResult;

/// Namespace for user credentials, shared by every protocol's authentication.
pub const USERS_NAMESPACE: &str = "users";

#[async_trait]
pub trait MetadataStore: Send + Sync + std::fmt::Debug {
    async fn put(&self, namespace: &str, key: &str, value: Bytes) -> EngineResult<()>;

    async fn get(&self, namespace: &str, key: &str) -> EngineResult<Option<Bytes>>;

    /// Returns whether the record existed.
    async fn delete(&self, namespace: &str, key: &str) -> EngineResult<bool>;

    /// All records of a namespace whose key starts with `prefix`, in key order.
    async fn scan(&self, namespace: &str, prefix: &str) -> EngineResult<Vec<(String, Bytes)>>;

    /// A number that changes whenever `namespace` may have been changed by another writer of
    /// a store shared by several brokers (the cloud engine), so a frontend that caches records
    /// of it reads them again when the number differs from the one it loaded them under.
    /// Constant (the default) for a store only this process writes: its caches see their own
    /// writes. Cheap: no I/O.
    fn generation(&self, _namespace: &str) -> u64 {
        0
    }

    /// For a store shared by several brokers: a receiver whose value changes whenever some
    /// namespace may have been changed by another writer (compare [`MetadataStore::generation`]
    /// to learn which), so a frontend can apply changes to open connections without waiting
    /// for their next request. `None` (the default): nobody else writes this store.
    fn changes(&self) -> Option<tokio::sync::watch::Receiver<u64>> {
        None
    }
}

/// A [`MetadataStore`] in memory, nothing durable: for tests of what frontends keep in the
/// store, and anything else that needs the contract without an engine.
#[derive(Debug, Default)]
pub struct MemoryMetadataStore(
    std::sync::Mutex<std::collections::BTreeMap<(String, String), Bytes>>,
);

impl MemoryMetadataStore {
    /// The value under `namespace` / `key`, read without awaiting (for synchronous checks).
    pub fn value(&self, namespace: &str, key: &str) -> Option<Bytes> {
        self.records().get(&(namespace.into(), key.into())).cloned()
    }

    fn records(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<(String, String), Bytes>> {
        // A panic elsewhere while holding the lock leaves the map whole (each call is one
        // map operation), so a poisoned lock is still usable.
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

#[async_trait]
impl MetadataStore for MemoryMetadataStore {
    async fn put(&self, namespace: &str, key: &str, value: Bytes) -> EngineResult<()> {
        self.records().insert((namespace.into(), key.into()), value);
        Ok(())
    }

    async fn get(&self, namespace: &str, key: &str) -> EngineResult<Option<Bytes>> {
        Ok(self.records().get(&(namespace.into(), key.into())).cloned())
    }

    async fn delete(&self, namespace: &str, key: &str) -> EngineResult<bool> {
        Ok(self
            .records()
            .remove(&(namespace.into(), key.into()))
            .is_some())
    }

    async fn scan(&self, namespace: &str, prefix: &str) -> EngineResult<Vec<(String, Bytes)>> {
        Ok(self
            .records()
            .iter()
            .filter(|((ns, key), _)| ns == namespace && key.starts_with(prefix))
            .map(|((_, key), value)| (key.clone(), value.clone()))
            .collect())
    }
}
