//! The durable start point of a partition's producer-state rebuild.
//!
//! A snapshot at offset X holds, for each producer, those of its last
//! [`CACHED_BATCHES`](super::CACHED_BATCHES) batches that lie below X, and nothing at or above X:
//! the rebuild replays the log from X on top of it, so a snapshot may lag the log but never lead
//! it. It names the batch that ends at X - 1 by base offset and CRC-32C; a rebuild uses the
//! snapshot only if the log still holds that very batch (a log that lost its tail, or a topic
//! deleted and made again under the same name, does not match).
//!
//! Format (all big-endian), the value of key `snapshot/<topic id>/<partition>`:
//!
//! | field | type |
//! |---|---|
//! | format version | `u8`, [`VERSION`] |
//! | X, the offset the state is complete below | `i64` |
//! | base offset of the batch ending at X - 1 | `i64` |
//! | CRC-32C of that batch | `u32` |
//! | producer count | `u32` |
//! | per producer: producer id, epoch, batch count | `i64`, `i16`, `u8` |
//! | per batch, oldest first: base sequence, last sequence, base offset | `i32`, `i32`, `i64` |
//!
//! Decoding checks every count against the bytes left before allocating.

use std::collections::{HashMap, VecDeque};

use bytes::{Buf, BufMut, Bytes, BytesMut};

use super::{CACHED_BATCHES, PartitionProducer, SequencedBatch};

/// The current (and only) snapshot format.
pub(crate) const VERSION: u8 = 1;
const HEADER_LEN: usize = 1 + 8 + 8 + 4 + 4;
const PRODUCER_LEN: usize = 8 + 2 + 1;
const BATCH_LEN: usize = 4 + 4 + 8;

/// The batch a snapshot ends with, as the log must still hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EndBatch {
    pub(crate) base_offset: i64,
    pub(crate) crc: u32,
}

/// Producer state complete below `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Snapshot {
    pub(crate) offset: i64,
    pub(crate) end_batch: EndBatch,
    pub(crate) producers: HashMap<i64, PartitionProducer>,
}

impl Snapshot {
    pub(crate) fn encode(&self) -> Bytes {
        let batches: usize = self.producers.values().map(|p| p.recent.len()).sum();
        let mut buf = BytesMut::with_capacity(
            HEADER_LEN + self.producers.len() * PRODUCER_LEN + batches * BATCH_LEN,
        );
        buf.put_u8(VERSION);
        buf.put_i64(self.offset);
        buf.put_i64(self.end_batch.base_offset);
        buf.put_u32(self.end_batch.crc);
        buf.put_u32(self.producers.len() as u32);
        let mut ids: Vec<&i64> = self.producers.keys().collect();
        ids.sort_unstable();
        for id in ids {
            let producer = &self.producers[id];
            buf.put_i64(*id);
            buf.put_i16(producer.epoch);
            // At most CACHED_BATCHES (5) are ever held.
            buf.put_u8(producer.recent.len() as u8);
            for batch in &producer.recent {
                buf.put_i32(batch.base_sequence);
                buf.put_i32(batch.last_sequence);
                buf.put_i64(batch.base_offset);
            }
        }
        buf.freeze()
    }

    /// `None` for bytes not in the documented format (the rebuild then reads the whole log).
    pub(crate) fn decode(mut bytes: Bytes) -> Option<Self> {
        if bytes.len() < HEADER_LEN || bytes.get_u8() != VERSION {
            return None;
        }
        let offset = bytes.get_i64();
        let end_batch = EndBatch {
            base_offset: bytes.get_i64(),
            crc: bytes.get_u32(),
        };
        let count = bytes.get_u32() as usize;
        if count > bytes.remaining() / PRODUCER_LEN {
            return None;
        }
        let mut producers = HashMap::with_capacity(count);
        for _ in 0..count {
            if bytes.remaining() < PRODUCER_LEN {
                return None;
            }
            let id = bytes.get_i64();
            let epoch = bytes.get_i16();
            let held = usize::from(bytes.get_u8());
            if held > CACHED_BATCHES || bytes.remaining() < held * BATCH_LEN {
                return None;
            }
            let recent: VecDeque<SequencedBatch> = (0..held)
                .map(|_| SequencedBatch {
                    base_sequence: bytes.get_i32(),
                    last_sequence: bytes.get_i32(),
                    base_offset: bytes.get_i64(),
                })
                .collect();
            producers.insert(id, PartitionProducer { epoch, recent });
        }
        if bytes.has_remaining() {
            return None;
        }
        Some(Self {
            offset,
            end_batch,
            producers,
        })
    }
}
