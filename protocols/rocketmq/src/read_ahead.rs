//! Whole batches a pull read lately and answered only part of.
//!
//! A log read returns whole batches, and a Kafka producer's batch holds hundreds of records
//! (about a megabyte), while a RocketMQ pull answers 32 messages: without this, every pull of
//! such a batch would read all of it again. Each pull's read is kept here, and the next pulls of
//! the same partition inside it use it instead of the log.
//!
//! Invariants: an entry holds complete batches covering offsets `first..end` of one partition
//! of one topic life, the partition's last read (one entry per partition, so a lookup scans
//! the partitions being pulled, not their history) (the topic's stable id, so a deleted and recreated topic of the same name
//! is never served from an entry of the old one); stored batches below the high watermark never
//! change, so an entry stays true while the topic lives; the bytes held stay within the budget,
//! least recently used entries leaving first.

use std::collections::VecDeque;

use bytes::Bytes;
use parking_lot::Mutex;
use tributary_api::TopicPartition;
use tributary_api::batch::BatchHeader;

/// Bytes of batches kept by default.
pub(crate) const DEFAULT_READ_AHEAD_BYTES: usize = 64 << 20;

#[derive(Debug)]
pub(crate) struct ReadAhead {
    budget: usize,
    /// Most recently used first.
    entries: Mutex<VecDeque<Entry>>,
}

#[derive(Debug)]
struct Entry {
    partition: TopicPartition,
    topic: [u8; 16],
    first: i64,
    end: i64,
    data: Bytes,
}

impl Default for ReadAhead {
    fn default() -> Self {
        Self::new(DEFAULT_READ_AHEAD_BYTES)
    }
}

impl ReadAhead {
    pub(crate) fn new(budget: usize) -> Self {
        Self {
            budget,
            entries: Mutex::new(VecDeque::new()),
        }
    }

    /// Kept batches of `partition` of topic life `topic` that contain `offset`.
    pub(crate) fn get(
        &self,
        partition: &TopicPartition,
        topic: [u8; 16],
        offset: i64,
    ) -> Option<Bytes> {
        let mut entries = self.entries.lock();
        let at = entries.iter().position(|e| {
            e.topic == topic && (e.first..e.end).contains(&offset) && e.partition == *partition
        })?;
        let entry = entries.remove(at)?;
        let data = entry.data.clone();
        entries.push_front(entry);
        Some(data)
    }

    /// Keeps the complete batches at the start of `data` (read from `partition` of topic life
    /// `topic`).
    pub(crate) fn keep(&self, partition: &TopicPartition, topic: [u8; 16], data: &Bytes) {
        let Some((first, end, len)) = complete_batches(data) else {
            return;
        };
        if len > self.budget {
            return;
        }
        let mut entries = self.entries.lock();
        entries.retain(|e| !(e.topic == topic && e.partition == *partition));
        let mut held: usize = entries.iter().map(|e| e.data.len()).sum();
        while held + len > self.budget {
            match entries.pop_back() {
                Some(evicted) => held -= evicted.data.len(),
                None => break,
            }
        }
        entries.push_front(Entry {
            partition: partition.clone(),
            topic,
            first,
            end,
            data: data.slice(..len),
        });
    }
}

/// First offset, offset after the last, and byte length of the complete batches at the start
/// of `data`; `None` when there is none.
fn complete_batches(data: &[u8]) -> Option<(i64, i64, usize)> {
    let mut pos = 0usize;
    let mut range: Option<(i64, i64)> = None;
    while let Ok(header) = BatchHeader::parse(&data[pos..]) {
        let end = pos
            .checked_add(header.total_len)
            .filter(|e| *e <= data.len());
        let Some(end) = end else { break };
        let first = range.map_or(header.base_offset, |(first, _)| first);
        range = Some((first, header.last_offset().saturating_add(1)));
        pos = end;
    }
    range.map(|(first, end)| (first, end, pos))
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use tributary_api::batch::{Record, build_batch, set_base_offset};

    use super::*;

    fn batches(layout: &[(i64, usize)]) -> Bytes {
        let mut out = BytesMut::new();
        for (base, count) in layout {
            let records = vec![
                Record {
                    value: Some(Bytes::from(vec![7u8; 100])),
                    ..Record::default()
                };
                *count
            ];
            let mut batch = BytesMut::from(&build_batch(&records)[..]);
            set_base_offset(&mut batch, *base);
            out.extend_from_slice(&batch);
        }
        out.freeze()
    }

    #[test]
    fn kept_batches_serve_their_offsets_of_their_topic_life_only() {
        let cache = ReadAhead::new(1 << 20);
        let p = TopicPartition::new("t", 0);
        let data = batches(&[(10, 5), (15, 5)]);
        // A torn last batch is not kept.
        let torn = data.slice(..data.len() - 3);
        cache.keep(&p, [1; 16], &torn);
        assert_eq!(
            cache.get(&p, [1; 16], 14).map(|d| d.len()),
            Some(data.len() / 2)
        );
        assert_eq!(cache.get(&p, [1; 16], 15), None);
        cache.keep(&p, [1; 16], &data);
        assert_eq!(cache.get(&p, [1; 16], 19), Some(data.clone()));
        assert_eq!(cache.get(&p, [1; 16], 20), None);
        assert_eq!(cache.get(&p, [1; 16], 9), None);
        assert_eq!(cache.get(&p, [2; 16], 12), None, "a recreated topic");
        assert_eq!(cache.get(&TopicPartition::new("t", 1), [1; 16], 12), None);
        assert_eq!(
            cache.entries.lock().len(),
            1,
            "the partition's earlier read was replaced"
        );
    }

    #[test]
    fn the_budget_holds() {
        let one = batches(&[(0, 5)]).len();
        let cache = ReadAhead::new(2 * one + 10);
        let p = TopicPartition::new("t", 0);
        for (queue, base) in [(0, 0), (1, 100), (2, 200)] {
            cache.keep(
                &TopicPartition::new("t", queue),
                [1; 16],
                &batches(&[(base, 5)]),
            );
        }
        let held: usize = cache.entries.lock().iter().map(|e| e.data.len()).sum();
        assert_eq!(held, 2 * one);
        assert!(
            cache
                .get(&TopicPartition::new("t", 2), [1; 16], 200)
                .is_some()
        );
        assert!(
            cache.get(&p, [1; 16], 0).is_none(),
            "the least recently used left"
        );
    }
}
