//! Recently inflated batches, shared by the readers of one frontend.
//!
//! A reader that takes a few records per request (a RocketMQ pull of 32 messages, an AMQP
//! consumer's prefetch credit) would otherwise inflate a compressed batch of a thousand records
//! once per request. Invariants: an entry is the inflated records section of one stored batch,
//! keyed by partition, base offset and CRC (a log never rewrites a batch in place, and the CRC
//! tells a recreated topic's batch at the same offset apart); the inflated bytes held stay
//! within the budget, least recently used entries leaving first; a batch that does not inflate
//! is never cached (each read reports it again); the lock is never held while inflating.

use std::collections::VecDeque;
use std::sync::Mutex;

use bytes::Bytes;

use crate::TopicPartition;
use crate::batch::{
    BatchError, BatchHeader, Compression, StoredRecord, decode_inflated, decode_records_from,
    inflate_records,
};

/// Inflated bytes a frontend's cache holds by default: a few large batches per busy partition.
pub const DEFAULT_INFLATED_CACHE_BYTES: usize = 64 << 20;

#[derive(Debug)]
pub struct InflatedBatches {
    budget: usize,
    /// Most recently used first.
    entries: Mutex<VecDeque<Entry>>,
}

#[derive(Debug)]
struct Entry {
    partition: TopicPartition,
    base_offset: i64,
    crc: u32,
    inflated: Bytes,
}

impl Default for InflatedBatches {
    fn default() -> Self {
        Self::new(DEFAULT_INFLATED_CACHE_BYTES)
    }
}

impl InflatedBatches {
    /// A cache holding at most `budget` inflated bytes.
    pub fn new(budget: usize) -> Self {
        Self {
            budget,
            entries: Mutex::new(VecDeque::new()),
        }
    }

    /// [`decode_records_from`] (at most `max` records at or after `from`) for a batch of
    /// `partition`, inflating a compressed batch only when this cache does not hold it already.
    pub fn decode_from(
        &self,
        partition: &TopicPartition,
        batch: &Bytes,
        from: i64,
        max: usize,
    ) -> Result<Vec<StoredRecord>, BatchError> {
        let header = BatchHeader::parse(batch)?;
        if header.compression() == Compression::None {
            return decode_records_from(batch, from, max);
        }
        let inflated = match self.lookup(partition, &header) {
            Some(inflated) => inflated,
            None => {
                let inflated = inflate_records(&header, batch)?;
                self.insert(partition, &header, inflated.clone());
                inflated
            }
        };
        decode_inflated(&header, &inflated, from, max)
    }

    /// Inflated bytes held now.
    pub fn held_bytes(&self) -> usize {
        self.locked().iter().map(|e| e.inflated.len()).sum()
    }

    fn locked(&self) -> std::sync::MutexGuard<'_, VecDeque<Entry>> {
        // A panic elsewhere cannot leave the deque inconsistent: every change is one call.
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn lookup(&self, partition: &TopicPartition, header: &BatchHeader) -> Option<Bytes> {
        let mut entries = self.locked();
        let at = entries.iter().position(|e| {
            e.base_offset == header.base_offset && e.crc == header.crc && e.partition == *partition
        })?;
        let entry = entries.remove(at)?;
        let inflated = entry.inflated.clone();
        entries.push_front(entry);
        Some(inflated)
    }

    fn insert(&self, partition: &TopicPartition, header: &BatchHeader, inflated: Bytes) {
        if inflated.len() > self.budget {
            return;
        }
        let mut entries = self.locked();
        let mut held: usize = entries.iter().map(|e| e.inflated.len()).sum();
        while held + inflated.len() > self.budget {
            match entries.pop_back() {
                Some(evicted) => held -= evicted.inflated.len(),
                None => break,
            }
        }
        entries.push_front(Entry {
            partition: partition.clone(),
            base_offset: header.base_offset,
            crc: header.crc,
            inflated,
        });
    }
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;

    use super::*;
    use crate::batch::{Record, build_batch, build_compressed_batch, set_base_offset};
    use crate::compression::Codec;

    fn batch(base: i64, count: usize, codec: Option<Codec>) -> Bytes {
        let records: Vec<Record> = (0..count)
            .map(|i| Record {
                value: Some(Bytes::from(vec![b'a' + (i % 26) as u8; 1000])),
                timestamp: i as i64,
                ..Record::default()
            })
            .collect();
        let built = match codec {
            Some(codec) => build_compressed_batch(&records, codec).unwrap(),
            None => build_batch(&records),
        };
        let mut built = BytesMut::from(&built[..]);
        set_base_offset(&mut built, base);
        built.freeze()
    }

    #[test]
    fn cached_decodes_equal_fresh_ones_and_the_budget_holds() {
        let cache = InflatedBatches::new(25_000);
        let p = TopicPartition::new("t", 0);
        let zstd = batch(100, 10, Some(Codec::Zstd));
        for from in [0, 103, 109, 200] {
            assert_eq!(
                cache.decode_from(&p, &zstd, from, usize::MAX).unwrap(),
                decode_records_from(&zstd, from, usize::MAX).unwrap()
            );
        }
        let held = cache.held_bytes();
        assert!(held > 10_000 && held < 25_000, "{held}");
        // Uncompressed batches are not cached; other batches push the oldest out.
        cache
            .decode_from(&p, &batch(0, 10, None), 0, usize::MAX)
            .unwrap();
        assert_eq!(cache.held_bytes(), held);
        cache
            .decode_from(&p, &batch(110, 10, Some(Codec::Lz4)), 0, usize::MAX)
            .unwrap();
        cache
            .decode_from(&p, &batch(120, 10, Some(Codec::Gzip)), 0, usize::MAX)
            .unwrap();
        assert!(cache.held_bytes() <= 25_000);
        assert_eq!(cache.locked().len(), 2);
        // Same offset, other content (another partition, or a recreated topic): not confused.
        let other = batch(100, 3, Some(Codec::Zstd));
        assert_eq!(
            cache.decode_from(&p, &other, 0, usize::MAX).unwrap().len(),
            3
        );
        let q = TopicPartition::new("t", 1);
        assert_eq!(
            cache.decode_from(&q, &zstd, 0, usize::MAX).unwrap().len(),
            10
        );
    }

    #[test]
    fn a_batch_that_does_not_inflate_is_reported_every_time_and_not_cached() {
        let cache = InflatedBatches::default();
        let p = TopicPartition::new("t", 0);
        let mut broken = BytesMut::from(&batch(0, 5, Some(Codec::Gzip))[..]);
        let len = broken.len();
        broken[70..len - 8].fill(0x33);
        let broken = broken.freeze();
        for _ in 0..2 {
            assert!(matches!(
                cache.decode_from(&p, &broken, 0, usize::MAX),
                Err(BatchError::Decompress(_))
            ));
        }
        assert_eq!(cache.held_bytes(), 0);
    }
}
