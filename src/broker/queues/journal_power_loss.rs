//! Power-loss model of the ack journal on the simulated disk: what `journal.rs` claims.
//!
//! - A journal that `create_in`/`open_in` returned survives a power loss (its entry is durable).
//! - After `sync_to(seq)` returns, every entry up to `seq` survives; compaction is atomic and
//!   covers everything written before it.
//! - Replay after a power loss never fails, and yields at least every synced ack and nothing
//!   that was never written (a torn tail is dropped); `DeliveredUpTo` never goes back behind the
//!   synced one.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use super::journal::{AckJournal, JournalOp};
use super::settled::SettledSet;
use crate::storage::SimDisk;
use crate::storage::fs::Fs;

const DIR: &str = "/queues";
const PATH: &str = "/queues/q%20%C3%BC.acks";

struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

#[derive(Default, Clone)]
struct Acks {
    settled: BTreeSet<i64>,
    delivered_up_to: i64,
}

fn settled_set(acks: &BTreeSet<i64>) -> SettledSet {
    let mut set = SettledSet::default();
    for offset in acks {
        set.insert(*offset);
    }
    set
}

fn open(disk: &SimDisk, seed: u64, synced: &Acks, written: &Acks) -> AckJournal {
    let fs: Arc<dyn Fs> = disk.fs();
    let (journal, replayed) = AckJournal::open_in(fs, Path::new(PATH))
        .unwrap_or_else(|e| panic!("seed {seed}: replay failed: {e}"));
    for offset in &synced.settled {
        assert!(
            replayed.settled.contains(*offset),
            "seed {seed}: synced ack {offset} lost"
        );
    }
    for (from, to) in replayed.settled.ranges() {
        for offset in from..to {
            assert!(
                written.settled.contains(&offset),
                "seed {seed}: ack {offset} was never written"
            );
        }
    }
    assert!(
        replayed.delivered_up_to >= synced.delivered_up_to,
        "seed {seed}: delivered marker went back from {} to {}",
        synced.delivered_up_to,
        replayed.delivered_up_to
    );
    assert!(replayed.delivered_up_to <= written.delivered_up_to);
    journal
}

fn run(seed: u64) {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let disk = SimDisk::new(seed);
    disk.keep_torn_tails(seed.is_multiple_of(2));
    let fs = disk.fs();
    fs.create_dir_all(Path::new(DIR)).expect("mkdir");
    fs.sync_dir(Path::new("/")).expect("sync /");
    let mut journal = if seed.is_multiple_of(3) {
        AckJournal::create_in(fs, Path::new(PATH)).expect("create")
    } else {
        // A queue whose journal is first made by `open` (no file yet).
        AckJournal::open_in(fs, Path::new(PATH)).expect("open").0
    };
    let mut written = Acks {
        delivered_up_to: -1,
        ..Acks::default()
    };
    let mut synced = written.clone();
    for _ in 0..200 {
        let result = match rng.below(20) {
            0..=9 => {
                let offset = rng.below(400) as i64;
                written.settled.insert(offset);
                journal.append(&[JournalOp::Ack(offset)]).map(|_| ())
            }
            10..=11 => {
                let from = rng.below(400) as i64;
                let to = from + 1 + rng.below(20) as i64;
                written.settled.extend(from..to);
                journal
                    .append(&[JournalOp::AckRange { from, to }])
                    .map(|_| ())
            }
            12 => {
                written.delivered_up_to += 1 + rng.below(10) as i64;
                journal
                    .append(&[JournalOp::DeliveredUpTo(written.delivered_up_to)])
                    .map(|_| ())
            }
            13..=15 => {
                let snapshot = written.clone();
                journal.sync().map(|()| synced = snapshot)
            }
            16 => {
                let snapshot = written.clone();
                journal
                    .compact(
                        &settled_set(&written.settled),
                        written.delivered_up_to,
                        &HashMap::new(),
                    )
                    .map(|()| synced = snapshot)
            }
            17 => {
                disk.crash_after(rng.below(6));
                Ok(())
            }
            _ => {
                disk.crash();
                Err(std::io::Error::other("power loss"))
            }
        };
        if result.is_err() {
            disk.disarm();
            drop(journal);
            journal = open(&disk, seed, &synced, &written);
            // What replayed is durable now (open cut a torn tail and synced).
            let (_, replayed) =
                AckJournal::open_in(disk.fs(), Path::new(PATH)).expect("replay again");
            written.settled = replayed
                .settled
                .ranges()
                .flat_map(|(from, to)| from..to)
                .collect();
            written.delivered_up_to = replayed.delivered_up_to;
            synced = written.clone();
        }
    }
    disk.crash();
    drop(journal);
    open(&disk, seed, &synced, &written);
}

#[test]
fn ack_journal_keeps_what_it_synced_across_power_losses() {
    for seed in 0..300 {
        run(seed);
    }
}
