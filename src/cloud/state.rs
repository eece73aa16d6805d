//! In-memory state of the partitions this broker serves: offsets, the numbering of accepted
//! batches, the coordinate cache and the wake-up of waiting readers.
//!
//! Invariants: `log_start <= high_watermark <= next_offset`; `high_watermark` only moves after
//! the PostgreSQL commit that recorded the batches below it; `next_offset` is the offset the
//! next accepted batch gets and falls back to `high_watermark` when a flush fails (nothing
//! between them was acknowledged); the coordinate cache holds only committed batches, keyed by
//! base offset; a miss is answered from PostgreSQL, never taken as a gap in the log.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64};

use event_listener::Event;
use parking_lot::Mutex;
use tributary_api::PartitionOffsets;

/// Most coordinates cached per partition; past it the oldest half is dropped.
const MAX_CACHED_COORDS: usize = 20_000;

/// Where one committed batch lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coord {
    pub base_offset: i64,
    pub last_offset: i64,
    pub max_timestamp: i64,
    pub object_key: Arc<str>,
    pub byte_offset: u64,
    pub byte_length: u32,
}

/// Offsets of one partition.
#[derive(Debug, Clone, Copy, Default)]
pub struct Offsets {
    pub log_start: i64,
    pub high_watermark: i64,
    pub next_offset: i64,
}

/// One partition's state.
#[derive(Debug, Default)]
pub struct PartitionState {
    pub offsets: Mutex<Offsets>,
    pub coords: Mutex<BTreeMap<i64, Coord>>,
    /// Notified after every commit that raised the high watermark.
    pub appended: Event,
    /// This broker leads the partition and has taken it over (offsets read from PostgreSQL
    /// since it last did not lead it); appends are refused otherwise.
    pub led: AtomicBool,
    /// Bumped at every take-over, so state cached about the tail is read again.
    pub generation: AtomicU64,
}

impl PartitionState {
    pub fn new(log_start: i64, high_watermark: i64) -> Self {
        Self {
            offsets: Mutex::new(Offsets {
                log_start,
                high_watermark,
                next_offset: high_watermark,
            }),
            ..Self::default()
        }
    }

    pub fn public_offsets(&self) -> PartitionOffsets {
        let offsets = self.offsets.lock();
        PartitionOffsets {
            log_start: offsets.log_start,
            high_watermark: offsets.high_watermark,
        }
    }

    pub fn remember(&self, coords: impl IntoIterator<Item = Coord>) {
        let mut cache = self.coords.lock();
        for coord in coords {
            cache.insert(coord.base_offset, coord);
        }
        if cache.len() > MAX_CACHED_COORDS {
            while cache.len() > MAX_CACHED_COORDS / 2 {
                cache.pop_first();
            }
        }
    }

    /// The cached batch that holds `offset`, if cached.
    pub fn cached_at(&self, offset: i64) -> Option<Coord> {
        let cache = self.coords.lock();
        let (_, found) = cache.range(..=offset).next_back()?;
        (found.last_offset >= offset).then(|| found.clone())
    }

    /// Forgets the cached coordinates of `stale` (their batches moved to another object).
    pub fn forget(&self, stale: &[Coord]) {
        let mut cache = self.coords.lock();
        for coord in stale {
            cache.remove(&coord.base_offset);
        }
    }

    /// Forgets coordinates of batches wholly below `log_start`.
    pub fn forget_below(&self, log_start: i64) {
        self.coords
            .lock()
            .retain(|_, coord| coord.last_offset >= log_start);
    }
}
