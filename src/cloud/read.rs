//! The read path: coordinates from the cache or PostgreSQL, bytes from the range cache or
//! ranged GETs; plus timestamp lookups and moving the log start (DeleteRecords).
//!
//! Invariants: a read returns whole committed batches, byte-identical to what the local
//! engine's reader returns for the same appends (base offsets rewritten, CRC untouched),
//! starting with the batch holding the offset, at least one, then as many as fit `max_bytes`;
//! consecutive batches of one object are fetched with one GET; a row below the log start is
//! never served; coordinates whose object is gone (merged, then collected) are looked up
//! again once; a read outside the known offsets of a partition led by another broker reloads
//! them from PostgreSQL before answering out of range (see [`super::wake`]).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tributary_api::batch::decode_records;
use tributary_api::{EngineError, EngineResult, ReadBatches, TopicPartition};

use super::error::{CloudError, CloudResult};
use super::log::CloudLog;
use super::state::{Coord, PartitionState};
use super::wake;

/// Coordinates fetched per PostgreSQL round trip on a cache miss.
const COORDS_PER_QUERY: i64 = 500;

impl CloudLog {
    pub(super) async fn read_batches(
        &self,
        tp: &TopicPartition,
        state: &PartitionState,
        offset: i64,
        max_bytes: usize,
    ) -> EngineResult<ReadBatches> {
        let mut offsets = state.public_offsets();
        if (offset < offsets.log_start || offset > offsets.high_watermark)
            && self.refresh_followed(tp, state).await?
        {
            // A partition led elsewhere: the reader knows offsets this broker has not heard of
            // yet (a notification still on its way, or missed while LISTEN reconnected).
            offsets = state.public_offsets();
        }
        if offset == offsets.high_watermark {
            return Ok(ReadBatches {
                data: Bytes::new(),
                offsets,
            });
        }
        if offset < offsets.log_start || offset > offsets.high_watermark {
            return Err(EngineError::OffsetOutOfRange {
                offset,
                log_start: offsets.log_start,
                high_watermark: offsets.high_watermark,
            });
        }
        let run = self
            .coordinates(tp, state, offset, offsets.high_watermark, max_bytes)
            .await?;
        let data = match self.fetch(&run).await {
            Ok(data) => data,
            // Coordinates from before a merge whose old object the GC has deleted since:
            // look them up again (the batches moved, byte for byte, see `merge`).
            Err(error) if error.is_missing_object() => {
                state.forget(&run);
                let run = self
                    .coordinates(tp, state, offset, offsets.high_watermark, max_bytes)
                    .await?;
                self.fetch(&run).await?
            }
            Err(error) => return Err(error.into()),
        };
        Ok(ReadBatches { data, offsets })
    }

    /// The batches a read from `offset` returns, by their coordinates.
    async fn coordinates(
        &self,
        tp: &TopicPartition,
        state: &PartitionState,
        offset: i64,
        high_watermark: i64,
        max_bytes: usize,
    ) -> CloudResult<Vec<Coord>> {
        let mut run: Vec<Coord> = Vec::new();
        let mut taken = 0usize;
        let mut next = offset;
        while next < high_watermark {
            let coord = match state.cached_at(next) {
                Some(coord) => coord,
                None => {
                    self.load_coords(tp, state, next, high_watermark).await?;
                    state
                        .cached_at(next)
                        .ok_or_else(|| CloudError::Inconsistent {
                            partition: tp.to_string(),
                            detail: format!("no batch holds committed offset {next}"),
                        })?
                }
            };
            let length = coord.byte_length as usize;
            if !run.is_empty() && taken + length > max_bytes {
                break;
            }
            taken += length;
            next = coord.last_offset + 1;
            run.push(coord);
        }
        Ok(run)
    }

    async fn load_coords(
        &self,
        tp: &TopicPartition,
        state: &PartitionState,
        from: i64,
        high_watermark: i64,
    ) -> CloudResult<()> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT base_offset, last_offset, max_timestamp, object_key, byte_offset, byte_length
                 FROM batches
                 WHERE topic = $1 AND partition = $2 AND last_offset >= $3 AND base_offset < $4
                 ORDER BY base_offset LIMIT $5",
                &[&tp.topic, &(tp.partition as i32), &from, &high_watermark, &COORDS_PER_QUERY],
            )
            .await
            .map_err(CloudError::pg("reading batch coordinates"))?;
        let coords = rows.iter().map(|row| Coord {
            base_offset: row.get(0),
            last_offset: row.get(1),
            max_timestamp: row.get(2),
            object_key: Arc::from(row.get::<_, &str>(3)),
            byte_offset: row.get::<_, i64>(4) as u64,
            byte_length: row.get::<_, i32>(5) as u32,
        });
        state.remember(coords.collect::<Vec<_>>());
        Ok(())
    }

    /// The bytes of `run`, one GET per stretch of adjacent ranges of one object.
    async fn fetch(&self, run: &[Coord]) -> CloudResult<Bytes> {
        let mut parts: Vec<Bytes> = Vec::new();
        let mut index = 0;
        while index < run.len() {
            let first = &run[index];
            let start = first.byte_offset;
            let mut end = start + u64::from(first.byte_length);
            let mut last = index;
            while let Some(next) = run.get(last + 1) {
                if next.object_key != first.object_key || next.byte_offset != end {
                    break;
                }
                end += u64::from(next.byte_length);
                last += 1;
            }
            let bytes = if last == index {
                self.objects
                    .get_range(&first.object_key, start..end)
                    .await?
            } else {
                self.stretch(&run[index..=last], start..end).await?
            };
            parts.push(bytes);
            index = last + 1;
        }
        Ok(match parts.as_slice() {
            [only] => only.clone(),
            _ => {
                let mut joined = BytesMut::with_capacity(parts.iter().map(Bytes::len).sum());
                for part in &parts {
                    joined.extend_from_slice(part);
                }
                joined.freeze()
            }
        })
    }

    /// Adjacent batches of one object: from the cache when each is there, else one GET.
    async fn stretch(&self, coords: &[Coord], range: std::ops::Range<u64>) -> CloudResult<Bytes> {
        let mut joined = BytesMut::with_capacity((range.end - range.start) as usize);
        for coord in coords {
            let own = coord.byte_offset..coord.byte_offset + u64::from(coord.byte_length);
            match self.objects.cached(&coord.object_key, &own) {
                Some(bytes) => joined.extend_from_slice(&bytes),
                None => return self.objects.get_range(&coords[0].object_key, range).await,
            }
        }
        Ok(joined.freeze())
    }

    /// The last offset and timestamp of the batch with the largest timestamp (the first such
    /// batch on ties), as the local engine answers.
    pub(super) async fn max_timestamp(
        &self,
        tp: &TopicPartition,
        state: &PartitionState,
    ) -> CloudResult<Option<(i64, i64)>> {
        let offsets = state.public_offsets();
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT last_offset, max_timestamp FROM batches
                 WHERE topic = $1 AND partition = $2 AND base_offset < $3
                 ORDER BY max_timestamp DESC, base_offset ASC LIMIT 1",
                &[&tp.topic, &(tp.partition as i32), &offsets.high_watermark],
            )
            .await
            .map_err(CloudError::pg("finding the largest timestamp"))?;
        Ok(row.map(|row| (row.get(0), row.get(1))))
    }

    /// The first record at or after `wanted` (ms) and at or after the log start.
    pub(super) async fn offset_for_time(
        &self,
        tp: &TopicPartition,
        state: &PartitionState,
        wanted: i64,
    ) -> EngineResult<Option<(i64, i64)>> {
        let offsets = state.public_offsets();
        let mut from = offsets.log_start;
        loop {
            let found = {
                let client = self.pool.get().await?;
                client
                    .query_opt(
                        "SELECT base_offset FROM batches
                         WHERE topic = $1 AND partition = $2 AND last_offset >= $3
                           AND base_offset < $4 AND max_timestamp >= $5
                         ORDER BY base_offset LIMIT 1",
                        &[
                            &tp.topic,
                            &(tp.partition as i32),
                            &from,
                            &offsets.high_watermark,
                            &wanted,
                        ],
                    )
                    .await
                    .map_err(CloudError::pg("finding an offset by time"))?
            };
            let Some(row) = found else {
                return Ok(None);
            };
            let base: i64 = row.get(0);
            let start = base.max(from);
            let batch = self.read_batches(tp, state, start, 1).await?.data;
            let records = decode_records(&batch)?;
            if let Some(hit) = records
                .iter()
                .find(|stored| stored.offset >= from && stored.record.timestamp >= wanted)
            {
                return Ok(Some((hit.offset, hit.record.timestamp)));
            }
            // The batch's max timestamp qualified but no record at or after `from` did.
            let last = records.last().map_or(base, |stored| stored.offset);
            from = last + 1;
        }
    }

    /// Moves the log start to `before` (clamped to the committed log) and forgets the batches
    /// wholly below it; returns the log start.
    pub(super) async fn move_log_start(
        &self,
        tp: &TopicPartition,
        state: &PartitionState,
        before: i64,
    ) -> CloudResult<i64> {
        let offsets = state.public_offsets();
        let target = before.min(offsets.high_watermark);
        if target <= offsets.log_start {
            return Ok(offsets.log_start);
        }
        let mut client = self.pool.get().await?;
        let transaction = client
            .transaction()
            .await
            .map_err(CloudError::pg("starting DeleteRecords"))?;
        transaction
            .execute(
                "UPDATE partitions SET log_start = $3
                 WHERE topic = $1 AND partition = $2 AND log_start < $3",
                &[&tp.topic, &(tp.partition as i32), &target],
            )
            .await
            .map_err(CloudError::pg("moving the log start"))?;
        transaction
            .execute(
                "DELETE FROM batches WHERE topic = $1 AND partition = $2 AND last_offset < $3",
                &[&tp.topic, &(tp.partition as i32), &target],
            )
            .await
            .map_err(CloudError::pg("deleting batch coordinates"))?;
        wake::notify(
            &transaction,
            &[(
                tp.topic.as_str(),
                tp.partition,
                target,
                offsets.high_watermark,
            )],
        )
        .await?;
        transaction
            .commit()
            .await
            .map_err(CloudError::pg("committing DeleteRecords"))?;
        let log_start = {
            let mut offsets = state.offsets.lock();
            offsets.log_start = offsets.log_start.max(target);
            offsets.log_start
        };
        state.forget_below(log_start);
        Ok(log_start)
    }
}
