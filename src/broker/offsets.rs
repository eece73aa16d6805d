//! Consumer positions (`tributary_api::OffsetStore`) in the metadata store's `offsets` table,
//! keyed `(group, topic, partition)`. Every call runs on the blocking pool; a commit's positions
//! are written in one redb transaction and are durable when `commit` returns.

use std::sync::Arc;

use async_trait::async_trait;
use tributary_api::{CommittedOffset, EngineResult, OffsetStore, TopicPartition};

use crate::broker::metadata::{MetaStore, run_blocking};

/// The shared offset store of all protocols.
#[derive(Debug, Clone)]
pub struct OffsetsService {
    meta: Arc<MetaStore>,
}

impl OffsetsService {
    pub fn new(meta: Arc<MetaStore>) -> Self {
        Self { meta }
    }
}

#[async_trait]
impl OffsetStore for OffsetsService {
    async fn commit(
        &self,
        group: &str,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
    ) -> EngineResult<()> {
        let (meta, group) = (self.meta.clone(), group.to_owned());
        run_blocking("commit offsets", move || {
            meta.commit_offsets(&group, &offsets)
        })
        .await
    }

    async fn fetch(
        &self,
        group: &str,
        partition: &TopicPartition,
    ) -> EngineResult<Option<CommittedOffset>> {
        let (meta, group, partition) = (self.meta.clone(), group.to_owned(), partition.clone());
        run_blocking("fetch offset", move || {
            meta.fetch_offset(&group, &partition)
        })
        .await
    }

    async fn fetch_group(
        &self,
        group: &str,
    ) -> EngineResult<Vec<(TopicPartition, CommittedOffset)>> {
        let (meta, group) = (self.meta.clone(), group.to_owned());
        run_blocking("fetch group offsets", move || meta.group_offsets(&group)).await
    }

    async fn groups(&self) -> EngineResult<Vec<String>> {
        let meta = self.meta.clone();
        run_blocking("list offset groups", move || meta.offset_groups()).await
    }

    async fn delete_group(&self, group: &str) -> EngineResult<usize> {
        let (meta, group) = (self.meta.clone(), group.to_owned());
        run_blocking("delete group offsets", move || {
            meta.delete_group_offsets(&group)
        })
        .await
    }

    async fn delete_offset(&self, group: &str, partition: &TopicPartition) -> EngineResult<bool> {
        let (meta, group, partition) = (self.meta.clone(), group.to_owned(), partition.clone());
        run_blocking("delete offset", move || {
            meta.delete_offset(&group, &partition)
        })
        .await
    }
}
