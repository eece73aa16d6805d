//! Idempotent producers: producer ids, epochs and per-(producer, partition) sequence checks.
//!
//! Rules (Kafka's, for a non-transactional idempotent producer):
//! - an epoch below the partition's known epoch is fenced (INVALID_PRODUCER_EPOCH);
//! - a newer epoch must start at sequence 0 (else OUT_OF_ORDER_SEQUENCE_NUMBER);
//! - with the same epoch, a batch equal to one of the last [`CACHED_BATCHES`] is a duplicate
//!   (a retry): it is acknowledged with its original base offset and not written again;
//! - otherwise its base sequence must follow the last one (wrapping after `i32::MAX`), else
//!   OUT_OF_ORDER_SEQUENCE_NUMBER.
//!
//! Durable format, in the engine's metadata store, namespace [`NAMESPACE`]:
//! - key `next-id`: the next producer id, `u64` big-endian;
//! - key `<producer id>/<partition index>/<topic>`: `epoch i16`, then up to five entries of
//!   `base_sequence i32, last_sequence i32, base_offset i64`, oldest first (all big-endian).
//!
//! The state of a partition is written after each append, before the produce is acknowledged,
//! so it survives a restart; it is loaded lazily on the first batch of that producer.

use std::collections::{HashMap, VecDeque};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::ResponseError;
use parking_lot::Mutex;
use tributary_api::{EngineResult, MetadataStore, TopicPartition};

/// Metadata-store namespace of producer state.
pub const NAMESPACE: &str = "kafka.producers";
const NEXT_ID_KEY: &str = "next-id";
/// Batches remembered per (producer, partition) for duplicate detection (Kafka's five in flight).
pub const CACHED_BATCHES: usize = 5;

/// One appended batch of a producer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SequencedBatch {
    pub(crate) base_sequence: i32,
    pub(crate) last_sequence: i32,
    pub(crate) base_offset: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PartitionProducer {
    epoch: i16,
    recent: VecDeque<SequencedBatch>,
}

impl PartitionProducer {
    fn encode(&self) -> Bytes {
        let mut buf = BytesMut::with_capacity(2 + self.recent.len() * 16);
        buf.put_i16(self.epoch);
        for batch in &self.recent {
            buf.put_i32(batch.base_sequence);
            buf.put_i32(batch.last_sequence);
            buf.put_i64(batch.base_offset);
        }
        buf.freeze()
    }

    /// `None` for bytes not in the documented format (then the state is treated as unknown).
    fn decode(mut bytes: Bytes) -> Option<Self> {
        if bytes.len() < 2 || !(bytes.len() - 2).is_multiple_of(16) {
            return None;
        }
        let epoch = bytes.get_i16();
        let mut recent = VecDeque::new();
        while bytes.has_remaining() {
            recent.push_back(SequencedBatch {
                base_sequence: bytes.get_i32(),
                last_sequence: bytes.get_i32(),
                base_offset: bytes.get_i64(),
            });
        }
        Some(Self { epoch, recent })
    }
}

/// What to do with an idempotent batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Verdict {
    Append,
    /// A retry of an appended batch: answer with this base offset, write nothing.
    Duplicate {
        base_offset: i64,
    },
    Refuse(ResponseError),
}

/// The sequence rule, on a known (or empty) partition state.
pub(crate) fn check(
    state: Option<&PartitionProducer>,
    epoch: i16,
    base_sequence: i32,
    last_sequence: i32,
) -> Verdict {
    let Some(state) = state else {
        return Verdict::Append;
    };
    if epoch < state.epoch {
        return Verdict::Refuse(ResponseError::InvalidProducerEpoch);
    }
    if epoch > state.epoch {
        return if base_sequence == 0 {
            Verdict::Append
        } else {
            Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber)
        };
    }
    if let Some(seen) = state
        .recent
        .iter()
        .find(|seen| seen.base_sequence == base_sequence && seen.last_sequence == last_sequence)
    {
        return Verdict::Duplicate {
            base_offset: seen.base_offset,
        };
    }
    let expected = match state.recent.back() {
        Some(last) if last.last_sequence == i32::MAX => 0,
        Some(last) => last.last_sequence + 1,
        None => base_sequence,
    };
    if base_sequence == expected {
        Verdict::Append
    } else {
        Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber)
    }
}

fn state_key(producer_id: i64, partition: &TopicPartition) -> String {
    format!("{producer_id}/{}/{}", partition.partition, partition.topic)
}

/// Producer ids and partition states of this broker.
#[derive(Debug, Default)]
pub(crate) struct Producers {
    states: Mutex<HashMap<(i64, TopicPartition), PartitionProducer>>,
    /// Serialises id allocation (read-modify-write of `next-id`).
    allocate: tokio::sync::Mutex<()>,
}

impl Producers {
    /// Hands out a new producer id (epoch 0), durably.
    pub(crate) async fn allocate(&self, store: &dyn MetadataStore) -> EngineResult<i64> {
        let _serial = self.allocate.lock().await;
        let next = store
            .get(NAMESPACE, NEXT_ID_KEY)
            .await?
            .filter(|bytes| bytes.len() == 8)
            .map(|mut bytes| bytes.get_u64())
            .unwrap_or(0);
        let following = next.saturating_add(1);
        store
            .put(
                NAMESPACE,
                NEXT_ID_KEY,
                Bytes::copy_from_slice(&following.to_be_bytes()),
            )
            .await?;
        Ok(i64::try_from(next).unwrap_or(i64::MAX))
    }

    /// Decides on one batch of `producer_id`, loading the partition's state if needed.
    pub(crate) async fn check(
        &self,
        store: &dyn MetadataStore,
        producer_id: i64,
        partition: &TopicPartition,
        epoch: i16,
        base_sequence: i32,
        last_sequence: i32,
    ) -> EngineResult<Verdict> {
        let key = (producer_id, partition.clone());
        if !self.states.lock().contains_key(&key) {
            let loaded = store
                .get(NAMESPACE, &state_key(producer_id, partition))
                .await?
                .and_then(PartitionProducer::decode);
            if let Some(loaded) = loaded {
                self.states.lock().entry(key.clone()).or_insert(loaded);
            }
        }
        let states = self.states.lock();
        Ok(check(states.get(&key), epoch, base_sequence, last_sequence))
    }

    /// Records an appended batch and persists the partition's state.
    pub(crate) async fn appended(
        &self,
        store: &dyn MetadataStore,
        producer_id: i64,
        partition: &TopicPartition,
        epoch: i16,
        batch: SequencedBatch,
    ) -> EngineResult<()> {
        let encoded = {
            let mut states = self.states.lock();
            let state = states.entry((producer_id, partition.clone())).or_default();
            if epoch != state.epoch {
                state.epoch = epoch;
                state.recent.clear();
            }
            state.recent.push_back(batch);
            while state.recent.len() > CACHED_BATCHES {
                state.recent.pop_front();
            }
            state.encode()
        };
        store
            .put(NAMESPACE, &state_key(producer_id, partition), encoded)
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(epoch: i16, batches: &[(i32, i32, i64)]) -> PartitionProducer {
        PartitionProducer {
            epoch,
            recent: batches
                .iter()
                .map(
                    |&(base_sequence, last_sequence, base_offset)| SequencedBatch {
                        base_sequence,
                        last_sequence,
                        base_offset,
                    },
                )
                .collect(),
        }
    }

    #[test]
    fn sequences_must_follow_and_retries_are_duplicates() {
        let known = state(0, &[(0, 4, 100), (5, 9, 105)]);
        assert_eq!(check(Some(&known), 0, 10, 12), Verdict::Append);
        assert_eq!(
            check(Some(&known), 0, 5, 9),
            Verdict::Duplicate { base_offset: 105 }
        );
        assert_eq!(
            check(Some(&known), 0, 12, 14),
            Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(
            check(Some(&known), 1, 3, 4),
            Verdict::Refuse(ResponseError::OutOfOrderSequenceNumber)
        );
        assert_eq!(check(Some(&known), 1, 0, 4), Verdict::Append);
        let newer = state(2, &[(0, 0, 7)]);
        assert_eq!(
            check(Some(&newer), 1, 1, 1),
            Verdict::Refuse(ResponseError::InvalidProducerEpoch)
        );
        assert_eq!(check(None, 0, 42, 43), Verdict::Append);
        let wrapped = state(0, &[(i32::MAX - 1, i32::MAX, 1)]);
        assert_eq!(check(Some(&wrapped), 0, 0, 3), Verdict::Append);
    }

    #[test]
    fn state_round_trips_and_rejects_garbage() {
        let known = state(3, &[(0, 4, 100), (5, 9, 105)]);
        assert_eq!(PartitionProducer::decode(known.encode()), Some(known));
        assert_eq!(
            PartitionProducer::decode(Bytes::from_static(b"\x00\x01\x02")),
            None
        );
    }
}
