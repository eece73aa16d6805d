//! Which partition of topic `T` a message published to exchange `T` goes to: Kafka's default
//! partitioner for a keyed record (murmur2 of the key bytes, made positive, modulo the partition
//! count), so Kafka consumers see key-partitioned data where a Kafka producer would have put it.
//! An empty routing key has no key and spreads round-robin.
//!
//! Invariant: for a non-empty key the choice depends only on the key bytes and the partition
//! count (the same as Kafka's Java client and librdkafka's `murmur2_random` partitioner).

use std::sync::atomic::{AtomicU32, Ordering};

/// Kafka's variant of MurmurHash2 (`org.apache.kafka.common.utils.Utils.murmur2`): 32-bit,
/// seed `0x9747b28c`, little-endian 4-byte blocks.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    // Kafka hashes `seed ^ length` with the length as a Java int; keys are far below 2^31.
    let mut h = SEED ^ (data.len() as u32);
    let mut blocks = data.chunks_exact(4);
    for block in &mut blocks {
        let mut k = u32::from_le_bytes([block[0], block[1], block[2], block[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let tail = blocks.remainder();
    if tail.len() >= 3 {
        h ^= u32::from(tail[2]) << 16;
    }
    if tail.len() >= 2 {
        h ^= u32::from(tail[1]) << 8;
    }
    if let Some(first) = tail.first() {
        h ^= u32::from(*first);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// Kafka's partition for a keyed record: `toPositive(murmur2(key)) % partitions`.
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    let positive = (murmur2(key) & 0x7fff_ffff) as u32;
    positive % partitions.max(1)
}

/// Spreads unkeyed publishes over the partitions in turn.
#[derive(Debug, Default)]
pub struct RoundRobin(AtomicU32);

impl RoundRobin {
    /// The partition for the next message: by key when `routing_key` is not empty.
    pub fn partition(&self, routing_key: &str, partitions: u32) -> u32 {
        if routing_key.is_empty() {
            self.0.fetch_add(1, Ordering::Relaxed) % partitions.max(1)
        } else {
            partition_for_key(routing_key.as_bytes(), partitions)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values Kafka's own `UtilsTest.testMurmur2` asserts, recomputed independently with a
    /// transcription of the Java code in Python before being written here.
    #[test]
    fn murmur2_matches_kafka() {
        let cases: [(&[u8], i32); 6] = [
            (b"21", -973_932_308),
            (b"foobar", -790_332_482),
            (b"a-little-bit-long-string", -985_981_536),
            (b"a-little-bit-longer-string", -1_486_304_829),
            (
                b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8",
                -58_897_971,
            ),
            (b"abc", 479_470_107),
        ];
        for (key, expected) in cases {
            assert_eq!(murmur2(key), expected, "{}", String::from_utf8_lossy(key));
        }
    }

    #[test]
    fn keyed_partitions_are_positive_hash_modulo_count() {
        // -973932308 & 0x7fffffff = 1173551340; % 4 = 0, % 3 = 0, % 7 = 3.
        assert_eq!(partition_for_key(b"21", 4), 1_173_551_340 % 4);
        assert_eq!(partition_for_key(b"21", 7), 1_173_551_340 % 7);
        assert_eq!(partition_for_key(b"abc", 1), 0);
    }

    #[test]
    fn empty_keys_go_round_robin() {
        let spread = RoundRobin::default();
        let chosen: Vec<u32> = (0..6).map(|_| spread.partition("", 3)).collect();
        assert_eq!(chosen, [0, 1, 2, 0, 1, 2]);
        assert_eq!(spread.partition("21", 4), partition_for_key(b"21", 4));
    }
}
