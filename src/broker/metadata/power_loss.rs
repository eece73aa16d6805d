//! Power-loss model of the metadata store on the simulated disk: what the module doc claims —
//! a method that returned `Ok` is on disk, and a multi-row change is all or nothing — including
//! for the store's very first open (the file and its directory must survive too).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use tributary_api::{CommittedOffset, TopicPartition};

use super::MetaStore;
use crate::storage::SimDisk;

const PATH: &str = "/data/metadata.redb";

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// Offsets of group `g` by partition, and records by key.
#[derive(Clone, Default, PartialEq, Debug)]
struct State {
    offsets: BTreeMap<u32, i64>,
    records: BTreeMap<String, Vec<u8>>,
}

fn read_state(store: &MetaStore) -> State {
    let offsets = store
        .group_offsets("g")
        .expect("group offsets")
        .into_iter()
        .map(|(partition, offset)| (partition.partition, offset.offset))
        .collect();
    let records = store
        .scan_records("ns", "")
        .expect("scan")
        .into_iter()
        .map(|(key, value)| (key, value.to_vec()))
        .collect();
    State { offsets, records }
}

fn open(disk: &SimDisk, seed: u64) -> Arc<MetaStore> {
    let fs = disk.fs();
    MetaStore::open_with(&fs, Path::new(PATH))
        .unwrap_or_else(|e| panic!("seed {seed}: reopen after a power loss failed: {e}"))
}

fn run(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let disk = SimDisk::new(seed);
    let mut store = open(&disk, seed);
    // Acknowledged state, and the state the operation in flight would make.
    let mut acked = State::default();
    let mut pending: Option<State> = None;
    for step in 0..60u32 {
        let mut next = acked.clone();
        let result = match rng.below(10) {
            0..=3 => {
                // A group commit of several partitions: one transaction.
                let rows: Vec<(TopicPartition, CommittedOffset)> = (0..1 + rng.below(3) as u32)
                    .map(|p| {
                        let offset = i64::from(step) * 10 + i64::from(p);
                        next.offsets.insert(p, offset);
                        (
                            TopicPartition::new("t", p),
                            CommittedOffset {
                                offset,
                                metadata: String::new(),
                                commit_time: 0,
                            },
                        )
                    })
                    .collect();
                store.commit_offsets("g", &rows)
            }
            4..=6 => {
                let key = format!("k{}", rng.below(8));
                let value = vec![step as u8; 1 + rng.below(3000) as usize];
                next.records.insert(key.clone(), value.clone());
                store.put_record("ns", &key, &value)
            }
            7 => {
                let key = format!("k{}", rng.below(8));
                next.records.remove(&key);
                store.delete_record("ns", &key).map(|_| ())
            }
            8 => {
                disk.crash_after(rng.below(8));
                Ok(())
            }
            _ => {
                disk.crash();
                Err(tributary_api::EngineError::ShuttingDown)
            }
        };
        match result {
            Ok(()) => acked = next,
            Err(_) => {
                pending = Some(next);
            }
        }
        if pending.is_some() {
            disk.disarm();
            drop(store);
            disk.crash();
            store = open(&disk, seed);
            let found = read_state(&store);
            let in_flight = pending.take().unwrap_or_default();
            assert!(
                found == acked || found == in_flight,
                "seed {seed} step {step}: after a power loss\nfound    {found:?}\nacked    {acked:?}\nin flight {in_flight:?}"
            );
            acked = found;
        }
    }
    drop(store);
    disk.crash();
    let store = open(&disk, seed);
    assert_eq!(read_state(&store), acked, "seed {seed}: final state");
}

#[test]
fn metadata_store_keeps_every_acknowledged_change_across_power_losses() {
    for seed in 0..60 {
        run(seed);
    }
}
