//! Row-level operations on the offsets, records and schedule tables. The async services in
//! `broker::{offsets, records, scheduler}` call these from the blocking pool.

use std::ops::Bound;

use bytes::Bytes;
use redb::{ReadableDatabase, ReadableTable};
use tributary_api::{CommittedOffset, EngineResult, ScheduleTarget, TopicPartition};

use super::codec;
use super::{
    META, MetaStore, NEXT_SCHEDULE_ID_KEY, OFFSETS, RECORDS, SCHEDULE, SCHEDULE_BY_ID, db_error,
};

/// A durable scheduled append as stored in the `schedule` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduledEntry {
    pub id: u64,
    pub due_ms: i64,
    pub target: ScheduleTarget,
    pub batch: Bytes,
}

impl MetaStore {
    /// Writes every position of one commit in one transaction.
    pub fn commit_offsets(
        &self,
        group: &str,
        offsets: &[(TopicPartition, CommittedOffset)],
    ) -> EngineResult<()> {
        let context = "commit offsets";
        let txn = self.db().begin_write().map_err(db_error(context))?;
        {
            let mut table = txn.open_table(OFFSETS).map_err(db_error(context))?;
            for (partition, offset) in offsets {
                let key = (group, partition.topic.as_str(), partition.partition);
                table
                    .insert(key, codec::encode_offset(offset).as_slice())
                    .map_err(db_error(context))?;
            }
        }
        txn.commit().map_err(db_error(context))
    }

    pub fn fetch_offset(
        &self,
        group: &str,
        partition: &TopicPartition,
    ) -> EngineResult<Option<CommittedOffset>> {
        let context = "fetch offset";
        let txn = self.db().begin_read().map_err(db_error(context))?;
        let table = txn.open_table(OFFSETS).map_err(db_error(context))?;
        let key = (group, partition.topic.as_str(), partition.partition);
        match table.get(key).map_err(db_error(context))? {
            Some(value) => codec::decode_offset(value.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Every position of a group, in (topic, partition) order.
    pub fn group_offsets(
        &self,
        group: &str,
    ) -> EngineResult<Vec<(TopicPartition, CommittedOffset)>> {
        let context = "fetch group offsets";
        let txn = self.db().begin_read().map_err(db_error(context))?;
        let table = txn.open_table(OFFSETS).map_err(db_error(context))?;
        let mut out = Vec::new();
        for row in table
            .range((group, "", 0u32)..)
            .map_err(db_error(context))?
        {
            let (key, value) = row.map_err(db_error(context))?;
            let (row_group, topic, partition) = key.value();
            if row_group != group {
                break;
            }
            let offset = codec::decode_offset(value.value())?;
            out.push((TopicPartition::new(topic, partition), offset));
        }
        Ok(out)
    }

    /// Groups with at least one position, in name order.
    pub fn offset_groups(&self) -> EngineResult<Vec<String>> {
        let context = "list offset groups";
        let txn = self.db().begin_read().map_err(db_error(context))?;
        let table = txn.open_table(OFFSETS).map_err(db_error(context))?;
        let mut groups: Vec<String> = Vec::new();
        for row in table.iter().map_err(db_error(context))? {
            let (key, _) = row.map_err(db_error(context))?;
            let (group, _, _) = key.value();
            if groups.last().map(String::as_str) != Some(group) {
                groups.push(group.to_owned());
            }
        }
        Ok(groups)
    }

    /// Removes a group's positions; returns how many there were.
    pub fn delete_group_offsets(&self, group: &str) -> EngineResult<usize> {
        let context = "delete group offsets";
        let txn = self.db().begin_write().map_err(db_error(context))?;
        let removed = {
            let mut table = txn.open_table(OFFSETS).map_err(db_error(context))?;
            let mut keys: Vec<(String, u32)> = Vec::new();
            for row in table
                .range((group, "", 0u32)..)
                .map_err(db_error(context))?
            {
                let (key, _) = row.map_err(db_error(context))?;
                let (row_group, topic, partition) = key.value();
                if row_group != group {
                    break;
                }
                keys.push((topic.to_owned(), partition));
            }
            for (topic, partition) in &keys {
                table
                    .remove((group, topic.as_str(), *partition))
                    .map_err(db_error(context))?;
            }
            keys.len()
        };
        txn.commit().map_err(db_error(context))?;
        Ok(removed)
    }

    pub fn delete_offset(&self, group: &str, partition: &TopicPartition) -> EngineResult<bool> {
        let context = "delete offset";
        let txn = self.db().begin_write().map_err(db_error(context))?;
        let existed = {
            let mut table = txn.open_table(OFFSETS).map_err(db_error(context))?;
            let key = (group, partition.topic.as_str(), partition.partition);
            table.remove(key).map_err(db_error(context))?.is_some()
        };
        txn.commit().map_err(db_error(context))?;
        Ok(existed)
    }

    pub fn put_record(&self, namespace: &str, key: &str, value: &[u8]) -> EngineResult<()> {
        let context = "put record";
        let txn = self.db().begin_write().map_err(db_error(context))?;
        {
            let mut table = txn.open_table(RECORDS).map_err(db_error(context))?;
            table
                .insert((namespace, key), value)
                .map_err(db_error(context))?;
        }
        txn.commit().map_err(db_error(context))
    }

    pub fn get_record(&self, namespace: &str, key: &str) -> EngineResult<Option<Bytes>> {
        let context = "get record";
        let txn = self.db().begin_read().map_err(db_error(context))?;
        let table = txn.open_table(RECORDS).map_err(db_error(context))?;
        let value = table.get((namespace, key)).map_err(db_error(context))?;
        Ok(value.map(|v| Bytes::copy_from_slice(v.value())))
    }

    pub fn delete_record(&self, namespace: &str, key: &str) -> EngineResult<bool> {
        let context = "delete record";
        let txn = self.db().begin_write().map_err(db_error(context))?;
        let existed = {
            let mut table = txn.open_table(RECORDS).map_err(db_error(context))?;
            table
                .remove((namespace, key))
                .map_err(db_error(context))?
                .is_some()
        };
        txn.commit().map_err(db_error(context))?;
        Ok(existed)
    }

    /// Records of `namespace` whose key starts with `prefix`, in byte order of the key.
    pub fn scan_records(
        &self,
        namespace: &str,
        prefix: &str,
    ) -> EngineResult<Vec<(String, Bytes)>> {
        let context = "scan records";
        let txn = self.db().begin_read().map_err(db_error(context))?;
        let table = txn.open_table(RECORDS).map_err(db_error(context))?;
        let mut out = Vec::new();
        // Keys sharing a prefix are contiguous in byte order, starting at the prefix itself.
        for row in table
            .range((namespace, prefix)..)
            .map_err(db_error(context))?
        {
            let (key, value) = row.map_err(db_error(context))?;
            let (row_namespace, row_key) = key.value();
            if row_namespace != namespace || !row_key.starts_with(prefix) {
                break;
            }
            out.push((row_key.to_owned(), Bytes::copy_from_slice(value.value())));
        }
        Ok(out)
    }

    /// Stores a scheduled append and returns its id (from the persisted counter).
    pub fn insert_scheduled(
        &self,
        due_ms: i64,
        target: &ScheduleTarget,
        batch: &[u8],
    ) -> EngineResult<u64> {
        let context = "schedule append";
        let txn = self.db().begin_write().map_err(db_error(context))?;
        let id = {
            let mut meta = txn.open_table(META).map_err(db_error(context))?;
            let id = match meta.get(NEXT_SCHEDULE_ID_KEY).map_err(db_error(context))? {
                Some(value) => <[u8; 8]>::try_from(value.value())
                    .map(u64::from_be_bytes)
                    .map_err(|_| tributary_api::EngineError::Metadata {
                        context,
                        message: format!("the `{NEXT_SCHEDULE_ID_KEY}` row has the wrong length"),
                    })?,
                None => 1,
            };
            meta.insert(NEXT_SCHEDULE_ID_KEY, &(id + 1).to_be_bytes()[..])
                .map_err(db_error(context))?;
            let mut schedule = txn.open_table(SCHEDULE).map_err(db_error(context))?;
            schedule
                .insert(
                    (due_ms, id),
                    codec::encode_scheduled(target, batch).as_slice(),
                )
                .map_err(db_error(context))?;
            let mut by_id = txn.open_table(SCHEDULE_BY_ID).map_err(db_error(context))?;
            by_id.insert(id, due_ms).map_err(db_error(context))?;
            id
        };
        txn.commit().map_err(db_error(context))?;
        Ok(id)
    }

    /// Removes a scheduled append; returns whether it was still stored.
    pub fn remove_scheduled(&self, id: u64) -> EngineResult<bool> {
        let context = "remove scheduled append";
        let txn = self.db().begin_write().map_err(db_error(context))?;
        let existed = {
            let mut by_id = txn.open_table(SCHEDULE_BY_ID).map_err(db_error(context))?;
            let due = by_id
                .remove(id)
                .map_err(db_error(context))?
                .map(|v| v.value());
            if let Some(due_ms) = due {
                let mut schedule = txn.open_table(SCHEDULE).map_err(db_error(context))?;
                schedule.remove((due_ms, id)).map_err(db_error(context))?;
            }
            due.is_some()
        };
        txn.commit().map_err(db_error(context))?;
        Ok(existed)
    }

    /// Moves a stored entry to a new due time (a retry after a failed append).
    pub fn reschedule(&self, id: u64, new_due_ms: i64) -> EngineResult<bool> {
        let context = "reschedule append";
        let txn = self.db().begin_write().map_err(db_error(context))?;
        let moved = {
            let mut by_id = txn.open_table(SCHEDULE_BY_ID).map_err(db_error(context))?;
            let due = by_id.get(id).map_err(db_error(context))?.map(|v| v.value());
            match due {
                Some(due_ms) => {
                    let mut schedule = txn.open_table(SCHEDULE).map_err(db_error(context))?;
                    let value = schedule
                        .remove((due_ms, id))
                        .map_err(db_error(context))?
                        .map(|v| v.value().to_vec());
                    if let Some(value) = value {
                        schedule
                            .insert((new_due_ms, id), value.as_slice())
                            .map_err(db_error(context))?;
                    }
                    by_id.insert(id, new_due_ms).map_err(db_error(context))?;
                    true
                }
                None => false,
            }
        };
        txn.commit().map_err(db_error(context))?;
        Ok(moved)
    }

    /// The earliest due time of any stored entry.
    pub fn next_due_ms(&self) -> EngineResult<Option<i64>> {
        let context = "find next scheduled append";
        let txn = self.db().begin_read().map_err(db_error(context))?;
        let table = txn.open_table(SCHEDULE).map_err(db_error(context))?;
        let first = table.first().map_err(db_error(context))?;
        Ok(first.map(|(key, _)| key.value().0))
    }

    /// Up to `limit` entries due at or before `now_ms`, earliest first.
    pub fn due_entries(&self, now_ms: i64, limit: usize) -> EngineResult<Vec<ScheduledEntry>> {
        let context = "read due scheduled appends";
        let txn = self.db().begin_read().map_err(db_error(context))?;
        let table = txn.open_table(SCHEDULE).map_err(db_error(context))?;
        let upper = (now_ms, u64::MAX);
        let mut out = Vec::new();
        let range = (Bound::Unbounded, Bound::Included(upper));
        for row in table
            .range::<(i64, u64)>(range)
            .map_err(db_error(context))?
        {
            if out.len() >= limit {
                break;
            }
            let (key, value) = row.map_err(db_error(context))?;
            let (due_ms, id) = key.value();
            let (target, batch) = codec::decode_scheduled(value.value())?;
            out.push(ScheduledEntry {
                id,
                due_ms,
                target,
                batch,
            });
        }
        Ok(out)
    }

    /// Number of stored scheduled appends.
    pub fn scheduled_count(&self) -> EngineResult<u64> {
        use redb::ReadableTableMetadata;
        let context = "count scheduled appends";
        let txn = self.db().begin_read().map_err(db_error(context))?;
        let table = txn.open_table(SCHEDULE).map_err(db_error(context))?;
        table.len().map_err(db_error(context))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn store() -> (tempfile::TempDir, Arc<MetaStore>) {
        let dir = tempfile::tempdir().unwrap();
        let store = MetaStore::open(&dir.path().join("metadata.redb")).unwrap();
        (dir, store)
    }

    #[test]
    fn schedule_ids_persist_and_entries_come_out_in_due_order() {
        let (dir, store) = store();
        let queue = ScheduleTarget::Queue("q".to_owned());
        let late = store.insert_scheduled(300, &queue, b"late").unwrap();
        let early = store.insert_scheduled(100, &queue, b"early").unwrap();
        assert_eq!((late, early), (1, 2));
        drop(store);
        let store = MetaStore::open(&dir.path().join("metadata.redb")).unwrap();
        let third = store.insert_scheduled(200, &queue, b"mid").unwrap();
        assert_eq!(third, 3, "ids continue after a reopen");
        assert_eq!(store.next_due_ms().unwrap(), Some(100));
        let due: Vec<u64> = store
            .due_entries(250, 10)
            .unwrap()
            .iter()
            .map(|e| e.id)
            .collect();
        assert_eq!(due, vec![early, third]);
        assert_eq!(store.due_entries(1_000, 1).unwrap().len(), 1);
        assert!(store.reschedule(early, 400).unwrap());
        assert_eq!(store.next_due_ms().unwrap(), Some(200));
        assert!(store.remove_scheduled(third).unwrap());
        assert!(!store.remove_scheduled(third).unwrap());
        let rest: Vec<(u64, i64)> = store
            .due_entries(i64::MAX, 10)
            .unwrap()
            .iter()
            .map(|e| (e.id, e.due_ms))
            .collect();
        assert_eq!(rest, vec![(late, 300), (early, 400)]);
        assert_eq!(store.scheduled_count().unwrap(), 2);
    }

    #[test]
    fn scan_stops_at_namespace_and_prefix_boundaries() {
        let (_dir, store) = store();
        for (ns, key) in [
            ("a", "x1"),
            ("a", "x2"),
            ("a", "y"),
            ("ab", "x3"),
            ("b", "x"),
        ] {
            store.put_record(ns, key, key.as_bytes()).unwrap();
        }
        let keys: Vec<String> = store
            .scan_records("a", "x")
            .unwrap()
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        assert_eq!(keys, vec!["x1", "x2"]);
        assert_eq!(store.scan_records("a", "").unwrap().len(), 3);
    }
}
