//! Consumer offsets in PostgreSQL: `(group, topic, partition) -> (offset, metadata)`, shared
//! by Kafka and RocketMQ groups as in the local engine.
//!
//! Consumer groups' generations live here too (`group_generations`), so the next coordinator of
//! a group carries on from the last generation instead of starting again at 1.
//!
//! Invariants: a commit of several positions is one transaction (all or none); a commit returns
//! only after PostgreSQL committed it; a stored generation only grows.

use async_trait::async_trait;
use tributary_api::{CommittedOffset, EngineResult, OffsetStore, TopicPartition};

use super::error::CloudError;
use super::pool::PgPool;
use crate::broker::topics::now_ms;

/// The `OffsetStore` of the cloud engine.
#[derive(Debug, Clone)]
pub struct CloudOffsets {
    pool: PgPool,
}

impl CloudOffsets {
    pub fn new(pool: PgPool) -> Self {
        Self { pool }
    }
}

fn position(row: &tokio_postgres::Row, first: usize) -> CommittedOffset {
    CommittedOffset {
        offset: row.get(first),
        metadata: row.get(first + 1),
        commit_time: row.get(first + 2),
    }
}

#[async_trait]
impl OffsetStore for CloudOffsets {
    async fn commit(
        &self,
        group: &str,
        offsets: Vec<(TopicPartition, CommittedOffset)>,
    ) -> EngineResult<()> {
        let now = now_ms();
        let topics: Vec<&str> = offsets.iter().map(|(tp, _)| tp.topic.as_str()).collect();
        let partitions: Vec<i32> = offsets.iter().map(|(tp, _)| tp.partition as i32).collect();
        let positions: Vec<i64> = offsets.iter().map(|(_, c)| c.offset).collect();
        let metadata: Vec<&str> = offsets.iter().map(|(_, c)| c.metadata.as_str()).collect();
        let client = self.pool.get().await?;
        // One statement is one transaction: every position or none.
        client
            .execute(
                "INSERT INTO consumer_offsets
                     (group_name, topic, partition, committed_offset, metadata, commit_time)
                 SELECT $1, t, p, o, m, $6
                 FROM unnest($2::text[], $3::int[], $4::bigint[], $5::text[]) AS u(t, p, o, m)
                 ON CONFLICT (group_name, topic, partition) DO UPDATE
                 SET committed_offset = EXCLUDED.committed_offset,
                     metadata = EXCLUDED.metadata, commit_time = EXCLUDED.commit_time",
                &[&group, &topics, &partitions, &positions, &metadata, &now],
            )
            .await
            .map_err(CloudError::pg("committing offsets"))?;
        Ok(())
    }

    async fn fetch(
        &self,
        group: &str,
        partition: &TopicPartition,
    ) -> EngineResult<Option<CommittedOffset>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT committed_offset, metadata, commit_time FROM consumer_offsets
                 WHERE group_name = $1 AND topic = $2 AND partition = $3",
                &[&group, &partition.topic, &(partition.partition as i32)],
            )
            .await
            .map_err(CloudError::pg("fetching an offset"))?;
        Ok(row.map(|row| position(&row, 0)))
    }

    async fn fetch_group(
        &self,
        group: &str,
    ) -> EngineResult<Vec<(TopicPartition, CommittedOffset)>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT topic, partition, committed_offset, metadata, commit_time
                 FROM consumer_offsets WHERE group_name = $1 ORDER BY topic, partition",
                &[&group],
            )
            .await
            .map_err(CloudError::pg("fetching a group's offsets"))?;
        Ok(rows
            .iter()
            .map(|row| {
                let tp = TopicPartition::new(row.get::<_, String>(0), row.get::<_, i32>(1) as u32);
                (tp, position(row, 2))
            })
            .collect())
    }

    async fn groups(&self) -> EngineResult<Vec<String>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT DISTINCT group_name FROM consumer_offsets ORDER BY group_name",
                &[],
            )
            .await
            .map_err(CloudError::pg("listing groups"))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn delete_group(&self, group: &str) -> EngineResult<usize> {
        let mut client = self.pool.get().await?;
        let transaction = client
            .transaction()
            .await
            .map_err(CloudError::pg("starting a group deletion"))?;
        let deleted = transaction
            .execute(
                "DELETE FROM consumer_offsets WHERE group_name = $1",
                &[&group],
            )
            .await
            .map_err(CloudError::pg("deleting a group"))?;
        transaction
            .execute(
                "DELETE FROM group_generations WHERE group_name = $1",
                &[&group],
            )
            .await
            .map_err(CloudError::pg("deleting a group's generation"))?;
        transaction
            .commit()
            .await
            .map_err(CloudError::pg("committing a group deletion"))?;
        Ok(deleted as usize)
    }

    async fn group_generation(&self, group: &str) -> EngineResult<Option<i32>> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT generation FROM group_generations WHERE group_name = $1",
                &[&group],
            )
            .await
            .map_err(CloudError::pg("reading a group's generation"))?;
        Ok(row.map(|row| row.get(0)))
    }

    async fn record_group_generation(&self, group: &str, generation: i32) -> EngineResult<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO group_generations (group_name, generation) VALUES ($1, $2)
                 ON CONFLICT (group_name) DO UPDATE
                 SET generation = GREATEST(group_generations.generation, EXCLUDED.generation)",
                &[&group, &generation],
            )
            .await
            .map_err(CloudError::pg("recording a group's generation"))?;
        Ok(())
    }

    async fn delete_offset(&self, group: &str, partition: &TopicPartition) -> EngineResult<bool> {
        let client = self.pool.get().await?;
        let deleted = client
            .execute(
                "DELETE FROM consumer_offsets
                 WHERE group_name = $1 AND topic = $2 AND partition = $3",
                &[&group, &partition.topic, &(partition.partition as i32)],
            )
            .await
            .map_err(CloudError::pg("deleting an offset"))?;
        Ok(deleted > 0)
    }
}
