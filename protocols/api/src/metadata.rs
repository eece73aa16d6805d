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
}
