//! Merging small objects: a flush every 250 ms from each broker writes many small objects, and
//! a partition read back from the start would GET each. The broker that holds the maintenance
//! role ([`super::maintenance`]) rewrites the live batches of several small, old objects into
//! one new object and repoints their coordinate rows to it; the old objects, then referred to
//! by no row, go through the object GC's grace like any other.
//!
//! Which objects: not orphaned, created more than `cluster.merge_min_age_ms` ago and smaller
//! than `cluster.merge_object_bytes` (0 turns merging off), oldest first, as many as fit in
//! `cluster.flush_bytes`; at least two, or there is nothing to gain.
//!
//! Invariants:
//! - batch bytes are copied verbatim (only their place changes), so reads stay byte-identical;
//! - the new object is PUT before the ONE transaction that records it and repoints the rows,
//!   and each row moves only if it still points at the old object and byte offset, so a
//!   concurrent retention, DeleteRecords or topic deletion wins (its rows are gone, not
//!   resurrected); when no row moved, the transaction is rolled back and the new object
//!   deleted (should that delete fail, the uncommitted-object sweep takes it later);
//! - as a flush does, a merge commits only while its object's name is younger than half of
//!   `cluster.object_gc_grace_ms`, so the sweep never takes an object being committed;
//! - a reader holding coordinates from before a merge reads the old object, identical bytes,
//!   until the GC deletes it; after that its GET fails as not found, and the read path drops
//!   those coordinates and looks them up again ([`super::read`]).

use std::collections::{BTreeMap, HashSet};

use bytes::BytesMut;

use super::error::{CloudError, CloudResult};
use super::log::CloudLog;
use crate::broker::topics::now_ms;

/// Candidate objects looked at per merge.
const CANDIDATES: i64 = 1_000;
/// Merges per maintenance pass (each one PUT and one transaction).
const MERGES_PER_PASS: usize = 8;

/// What merging did in one pass.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MergePass {
    /// Old objects whose batches moved into a merged object.
    pub merged_objects: u64,
    /// New (merged) objects written.
    pub written_objects: u64,
    /// Bytes copied into merged objects.
    pub rewritten_bytes: u64,
}

/// One live batch of an object being merged.
#[derive(Debug)]
struct Row {
    topic: String,
    partition: i32,
    base_offset: i64,
    object_key: String,
    byte_offset: i64,
    byte_length: i32,
}

impl CloudLog {
    /// Merges small old objects, up to [`MERGES_PER_PASS`] times.
    pub async fn merge_small_objects(&self) -> CloudResult<MergePass> {
        let mut pass = MergePass::default();
        if self.settings.merge_object_bytes == 0 {
            return Ok(pass);
        }
        for _ in 0..MERGES_PER_PASS {
            let Some((merged, bytes)) = self.merge_once().await? else {
                break;
            };
            pass.merged_objects += merged;
            pass.written_objects += 1;
            pass.rewritten_bytes += bytes;
        }
        self.stats.merged_objects.add(pass.merged_objects);
        self.stats.merge_rewritten_bytes.add(pass.rewritten_bytes);
        if pass.written_objects > 0 {
            tracing::info!(
                merged = pass.merged_objects,
                written = pass.written_objects,
                bytes = pass.rewritten_bytes,
                "merged small log objects"
            );
        }
        Ok(pass)
    }

    /// One merge: returns the objects merged and the bytes rewritten, `None` when fewer than
    /// two objects qualify.
    async fn merge_once(&self) -> CloudResult<Option<(u64, u64)>> {
        let min_age_ms = i64::try_from(self.settings.merge_min_age.as_millis()).unwrap_or(i64::MAX);
        let small = i64::try_from(self.settings.merge_object_bytes).unwrap_or(i64::MAX);
        let budget = self.settings.flush_bytes as i64;
        let client = self.pool.get().await?;
        let candidates = client
            .query(
                "SELECT key, size_bytes FROM objects
                 WHERE orphaned_ms IS NULL AND created_ms <= $1 AND size_bytes < $2
                 ORDER BY created_ms, key LIMIT $3",
                &[&now_ms().saturating_sub(min_age_ms), &small, &CANDIDATES],
            )
            .await
            .map_err(CloudError::pg("finding small objects to merge"))?;
        let mut keys: Vec<String> = Vec::new();
        let mut total = 0i64;
        for row in &candidates {
            let size: i64 = row.get(1);
            if !keys.is_empty() && total + size > budget {
                break;
            }
            total += size;
            keys.push(row.get(0));
        }
        if keys.len() < 2 {
            return Ok(None);
        }
        let rows: Vec<Row> = client
            .query(
                "SELECT topic, partition, base_offset, object_key, byte_offset, byte_length
                 FROM batches WHERE object_key = ANY($1)
                 ORDER BY object_key, byte_offset",
                &[&keys],
            )
            .await
            .map_err(CloudError::pg("reading the batches of objects to merge"))?
            .iter()
            .map(|row| Row {
                topic: row.get(0),
                partition: row.get(1),
                base_offset: row.get(2),
                object_key: row.get(3),
                byte_offset: row.get(4),
                byte_length: row.get(5),
            })
            .collect();
        drop(client);
        let sources: HashSet<&str> = rows.iter().map(|row| row.object_key.as_str()).collect();
        if sources.len() < 2 {
            // The others hold no live batch: the GC removes them, nothing to merge.
            return Ok(None);
        }
        let (body, placed) = self.gather(&rows).await?;
        let named_ms = now_ms();
        let key = self.objects.new_key(named_ms)?;
        let size = body.len() as u64;
        self.objects.put(&key, body.freeze()).await?;
        let moved = self.repoint(&key, named_ms, size, &rows, &placed).await;
        match moved {
            Ok(0) | Err(_) => {
                if let Err(error) = self.objects.delete(&key).await {
                    tracing::warn!(%error, object = %key, "could not delete an unused merged object; the sweep will");
                }
                moved.map(|_| None)
            }
            Ok(moved) => {
                tracing::debug!(object = %key, batches = moved, sources = sources.len(), "merged objects");
                Ok(Some((sources.len() as u64, size)))
            }
        }
    }

    /// The merged object's body and each row's offset in it, reading each old object's live
    /// stretch with one GET.
    async fn gather(&self, rows: &[Row]) -> CloudResult<(BytesMut, Vec<i64>)> {
        let mut stretches: BTreeMap<&str, (u64, u64)> = BTreeMap::new();
        for row in rows {
            let (start, end) = (
                row.byte_offset as u64,
                row.byte_offset as u64 + row.byte_length as u64,
            );
            let stretch = stretches
                .entry(row.object_key.as_str())
                .or_insert((start, end));
            stretch.0 = stretch.0.min(start);
            stretch.1 = stretch.1.max(end);
        }
        let mut fetched = BTreeMap::new();
        for (key, (start, end)) in &stretches {
            let bytes = self.objects.get_range(key, *start..*end).await?;
            fetched.insert(*key, (*start, bytes));
        }
        let mut body = BytesMut::new();
        let mut placed = Vec::with_capacity(rows.len());
        for row in rows {
            let (start, bytes) = &fetched[row.object_key.as_str()];
            let from = (row.byte_offset as u64 - start) as usize;
            placed.push(body.len() as i64);
            body.extend_from_slice(&bytes[from..from + row.byte_length as usize]);
        }
        Ok((body, placed))
    }

    /// The merge's one transaction: the new object's row, then every row still where it was
    /// read moved into it; returns the rows moved (none: rolled back).
    async fn repoint(
        &self,
        key: &str,
        named_ms: i64,
        size: u64,
        rows: &[Row],
        placed: &[i64],
    ) -> CloudResult<u64> {
        let topics: Vec<&str> = rows.iter().map(|row| row.topic.as_str()).collect();
        let partitions: Vec<i32> = rows.iter().map(|row| row.partition).collect();
        let bases: Vec<i64> = rows.iter().map(|row| row.base_offset).collect();
        let old_keys: Vec<&str> = rows.iter().map(|row| row.object_key.as_str()).collect();
        let old_offsets: Vec<i64> = rows.iter().map(|row| row.byte_offset).collect();
        let mut client = self.pool.get().await?;
        let transaction = client
            .transaction()
            .await
            .map_err(CloudError::pg("starting a merge transaction"))?;
        transaction
            .execute(
                "INSERT INTO objects (key, broker_id, size_bytes, created_ms) VALUES ($1, $2, $3, $4)",
                &[&key, &i64::from(self.settings.broker_id), &(size as i64), &now_ms()],
            )
            .await
            .map_err(CloudError::pg("recording a merged object"))?;
        let moved = transaction
            .execute(
                "UPDATE batches AS b SET object_key = $1, byte_offset = u.new_offset
                 FROM unnest($2::text[], $3::int[], $4::bigint[], $5::text[], $6::bigint[],
                             $7::bigint[])
                      AS u(topic, partition, base_offset, old_key, old_offset, new_offset)
                 WHERE b.topic = u.topic AND b.partition = u.partition
                   AND b.base_offset = u.base_offset
                   AND b.object_key = u.old_key AND b.byte_offset = u.old_offset",
                &[
                    &key,
                    &topics,
                    &partitions,
                    &bases,
                    &old_keys,
                    &old_offsets,
                    &placed,
                ],
            )
            .await
            .map_err(CloudError::pg("repointing merged batches"))?;
        if moved == 0 {
            return Ok(0);
        }
        let grace_ms = i64::try_from(self.settings.object_gc_grace.as_millis()).unwrap_or(i64::MAX);
        if now_ms().saturating_sub(named_ms) > grace_ms / 2 {
            return Err(CloudError::FlushFailed(format!(
                "merged object {key} was written more than half of cluster.object_gc_grace_ms ago; \
                 not committing it"
            )));
        }
        transaction
            .commit()
            .await
            .map_err(CloudError::pg("committing a merge"))?;
        Ok(moved)
    }
}
