//! Frontend-owned definitions (`tributary_api::MetadataStore`) in the metadata store's
//! `records` table, keyed `(namespace, key)`; values are opaque bytes. Writes are durable when
//! they return; `scan` returns a namespace's keys with a prefix in byte order.

use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use tributary_api::{EngineResult, MetadataStore};

use crate::broker::metadata::{MetaStore, run_blocking};

/// Namespaced key-value records for frontends.
#[derive(Debug, Clone)]
pub struct RecordsService {
    meta: Arc<MetaStore>,
}

impl RecordsService {
    pub fn new(meta: Arc<MetaStore>) -> Self {
        Self { meta }
    }
}

#[async_trait]
impl MetadataStore for RecordsService {
    async fn put(&self, namespace: &str, key: &str, value: Bytes) -> EngineResult<()> {
        let (meta, namespace, key) = (self.meta.clone(), namespace.to_owned(), key.to_owned());
        run_blocking("put record", move || {
            meta.put_record(&namespace, &key, &value)
        })
        .await
    }

    async fn get(&self, namespace: &str, key: &str) -> EngineResult<Option<Bytes>> {
        let (meta, namespace, key) = (self.meta.clone(), namespace.to_owned(), key.to_owned());
        run_blocking("get record", move || meta.get_record(&namespace, &key)).await
    }

    async fn delete(&self, namespace: &str, key: &str) -> EngineResult<bool> {
        let (meta, namespace, key) = (self.meta.clone(), namespace.to_owned(), key.to_owned());
        run_blocking("delete record", move || {
            meta.delete_record(&namespace, &key)
        })
        .await
    }

    async fn scan(&self, namespace: &str, prefix: &str) -> EngineResult<Vec<(String, Bytes)>> {
        let (meta, namespace, prefix) =
            (self.meta.clone(), namespace.to_owned(), prefix.to_owned());
        run_blocking("scan records", move || {
            meta.scan_records(&namespace, &prefix)
        })
        .await
    }
}
