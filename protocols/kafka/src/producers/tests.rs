//! The sequence rule, the snapshot format, and producer state rebuilt from a log after a crash
//! (a fresh [`Producers`] over the same log and metadata store stands for a restarted broker).

use std::collections::HashMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::{Bytes, BytesMut};
use tributary_api::batch::{BatchHeader, Record, build_batch, reseal, set_base_offset};
use tributary_api::{OffsetQuery, PartitionOffsets, ReadBatches, TimestampOffset};

use super::rebuild::rebuild;
use super::*;

/// A log in memory with the real log's read rules, and a way to lose its tail.
#[derive(Debug, Default)]
struct VecLog {
    partitions: Mutex<HashMap<TopicPartition, Held>>,
    /// The next append is written but its fsync fails.
    fail_next_fsync: std::sync::atomic::AtomicBool,
}

#[derive(Debug, Default)]
struct Held {
    log_start: i64,
    next: i64,
    /// (base offset, last offset, bytes), in offset order.
    batches: Vec<(i64, i64, Bytes)>,
}

impl VecLog {
    /// Power loss under `never`: everything from `offset` on is gone.
    fn lose_tail_from(&self, partition: &TopicPartition, offset: i64) {
        let mut partitions = self.partitions.lock();
        let held = partitions.entry(partition.clone()).or_default();
        held.batches.retain(|(base, _, _)| *base < offset);
        held.next = offset;
    }
}

#[async_trait]
impl LogService for VecLog {
    async fn append(
        &self,
        partition: &TopicPartition,
        batch: Bytes,
    ) -> EngineResult<AppendOutcome> {
        // As the real log does (its write runs on a blocking thread), let other tasks run.
        tokio::task::yield_now().await;
        let header = BatchHeader::parse(&batch)?;
        let mut partitions = self.partitions.lock();
        let held = partitions.entry(partition.clone()).or_default();
        let base_offset = held.next;
        let mut bytes = BytesMut::from(batch.as_ref());
        set_base_offset(&mut bytes, base_offset);
        let last_offset = base_offset + i64::from(header.last_offset_delta);
        held.batches
            .push((base_offset, last_offset, bytes.freeze()));
        held.next = last_offset + 1;
        Ok(AppendOutcome {
            base_offset,
            last_offset,
            log_append_time: 0,
            log_start: held.log_start,
        })
    }

    async fn append_pipelined(
        &self,
        partition: &TopicPartition,
        batch: Bytes,
    ) -> EngineResult<(AppendOutcome, tributary_api::PendingDurability)> {
        let outcome = self.append(partition, batch).await?;
        let durable = if self.fail_next_fsync.swap(false, Ordering::AcqRel) {
            Err(EngineError::Poisoned(partition.to_string()))
        } else {
            Ok(())
        };
        Ok((outcome, Box::pin(std::future::ready(durable))))
    }

    async fn read(
        &self,
        partition: &TopicPartition,
        offset: i64,
        max_bytes: usize,
    ) -> EngineResult<ReadBatches> {
        let partitions = self.partitions.lock();
        let held = partitions
            .get(partition)
            .ok_or(EngineError::UnknownPartition {
                topic: partition.topic.clone(),
                partition: partition.partition,
            })?;
        if offset < held.log_start || offset > held.next {
            return Err(EngineError::OffsetOutOfRange {
                offset,
                log_start: held.log_start,
                high_watermark: held.next,
            });
        }
        let mut data = BytesMut::new();
        for (_, last, bytes) in held.batches.iter().filter(|(_, last, _)| *last >= offset) {
            if !data.is_empty() && data.len() + bytes.len() > max_bytes {
                break;
            }
            data.extend_from_slice(bytes);
            let _ = last;
        }
        Ok(ReadBatches {
            data: data.freeze(),
            offsets: PartitionOffsets {
                log_start: held.log_start,
                high_watermark: held.next,
            },
        })
    }

    async fn wait_for(&self, _: &TopicPartition, _: i64, _: Duration) -> EngineResult<bool> {
        Ok(false)
    }

    fn offsets(&self, partition: &TopicPartition) -> EngineResult<PartitionOffsets> {
        let partitions = self.partitions.lock();
        let held = partitions.get(partition);
        Ok(PartitionOffsets {
            log_start: held.map_or(0, |h| h.log_start),
            high_watermark: held.map_or(0, |h| h.next),
        })
    }

    async fn find_offset(
        &self,
        _: &TopicPartition,
        _: OffsetQuery,
    ) -> EngineResult<Option<TimestampOffset>> {
        Ok(None)
    }

    async fn delete_records(&self, partition: &TopicPartition, before: i64) -> EngineResult<i64> {
        let mut partitions = self.partitions.lock();
        let held = partitions.entry(partition.clone()).or_default();
        held.log_start = held.log_start.max(before.min(held.next));
        let log_start = held.log_start;
        held.batches.retain(|(_, last, _)| *last >= log_start);
        Ok(held.log_start)
    }
}

use tributary_api::metadata::MemoryMetadataStore as MapStore;

const TOPIC_ID: [u8; 16] = [7; 16];

struct World {
    log: Arc<VecLog>,
    store: Arc<MapStore>,
    backing: Backing,
    partition: TopicPartition,
}

impl World {
    fn new() -> Self {
        let log = Arc::new(VecLog::default());
        let store = Arc::new(MapStore::default());
        let backing = Backing {
            log: Arc::clone(&log) as Arc<dyn LogService>,
            metadata: Arc::clone(&store) as Arc<dyn MetadataStore>,
        };
        Self {
            log,
            store,
            backing,
            partition: TopicPartition::new("orders".to_owned(), 0),
        }
    }

    async fn send(&self, producers: &Producers, batch: &Bytes) -> Sequenced {
        let verified = VerifiedBatch::verify(batch.clone()).expect("valid batch");
        producers
            .append_sequenced(&self.backing, TOPIC_ID, &self.partition, verified)
            .await
            .expect("engine")
    }

    /// A batch of another writer (no producer id).
    async fn append_plain(&self, records: usize) {
        self.log
            .append(&self.partition, plain_batch(records))
            .await
            .expect("append");
    }

    fn snapshot(&self) -> Option<Snapshot> {
        let key = PartitionSlot::new(TOPIC_ID, 0, &self.partition).snapshot_key;
        let stored = self.store.value(NAMESPACE, &key);
        stored.map(|bytes| Snapshot::decode(bytes).expect("snapshot decodes"))
    }
}

fn plain_batch(records: usize) -> Bytes {
    let records: Vec<Record> = (0..records)
        .map(|i| Record {
            value: Some(Bytes::from(format!("value-{i}"))),
            ..Record::default()
        })
        .collect();
    build_batch(&records)
}

/// An idempotent batch of `records` records starting at `base_sequence`.
fn sequenced(producer_id: i64, epoch: i16, base_sequence: i32, records: usize) -> Bytes {
    let mut bytes = BytesMut::from(plain_batch(records).as_ref());
    bytes[43..51].copy_from_slice(&producer_id.to_be_bytes());
    bytes[51..53].copy_from_slice(&epoch.to_be_bytes());
    bytes[53..57].copy_from_slice(&base_sequence.to_be_bytes());
    reseal(&mut bytes);
    bytes.freeze()
}

fn appended_at(answer: Sequenced) -> i64 {
    match answer {
        Sequenced::Appended(outcome) => outcome.base_offset,
        other => panic!("expected an append, got {other:?}"),
    }
}

const OUT_OF_ORDER: Sequenced = Sequenced::Refused(ResponseError::OutOfOrderSequenceNumber);

#[tokio::test]
async fn a_crash_after_the_append_still_finds_the_retry_in_the_log() {
    let world = World::new();
    // No snapshot after any append: the metadata store knows nothing of the batches, as when
    // the broker died between an append and any state write.
    let before_crash = Producers::with_snapshot_every(u64::MAX);
    let mut offsets = Vec::new();
    for (i, base_sequence) in [0, 5, 10].into_iter().enumerate() {
        world.append_plain(i + 1).await;
        offsets.push(appended_at(
            world
                .send(&before_crash, &sequenced(7, 0, base_sequence, 5))
                .await,
        ));
    }
    // The only snapshot is the empty one of the first rebuild, older than every batch.
    let older = world.snapshot().expect("snapshot of the first rebuild");
    assert!(older.offset <= offsets[0] && older.producers.is_empty());
    // The state the old code kept per append, stale by the last batch: ignored now.
    world
        .store
        .put(NAMESPACE, "7/0/orders", Bytes::from_static(&[0, 0]))
        .await
        .expect("put");
    let restarted = Producers::default();
    assert_eq!(
        world.send(&restarted, &sequenced(7, 0, 10, 5)).await,
        Sequenced::Duplicate {
            base_offset: offsets[2]
        }
    );
    assert_eq!(
        world.send(&restarted, &sequenced(7, 0, 5, 5)).await,
        Sequenced::Duplicate {
            base_offset: offsets[1]
        }
    );

    // And with no snapshot at all.
    let key = PartitionSlot::new(TOPIC_ID, 0, &world.partition).snapshot_key;
    world.store.delete(NAMESPACE, &key).await.expect("delete");
    let restarted = Producers::default();
    assert_eq!(
        world.send(&restarted, &sequenced(7, 0, 10, 5)).await,
        Sequenced::Duplicate {
            base_offset: offsets[2]
        }
    );
    assert_eq!(
        world.send(&restarted, &sequenced(7, 0, 20, 5)).await,
        OUT_OF_ORDER
    );
    let high_watermark = world.log.offsets(&world.partition).expect("offsets");
    assert_eq!(
        appended_at(world.send(&restarted, &sequenced(7, 0, 15, 5)).await),
        high_watermark.high_watermark
    );
    // The rebuild wrote a snapshot; another restart starts from it.
    let snapshot = world.snapshot().expect("snapshot after the rebuild");
    assert!(snapshot.offset > 0);
    let again = Producers::default();
    assert_eq!(
        world.send(&again, &sequenced(7, 0, 15, 5)).await,
        Sequenced::Duplicate {
            base_offset: high_watermark.high_watermark
        }
    );
}

#[tokio::test]
async fn a_snapshot_older_than_the_log_is_a_start_point_and_the_tail_is_replayed() {
    let world = World::new();
    let producers = Producers::with_snapshot_every(2);
    let mut offsets = Vec::new();
    for batch in 0..5 {
        offsets.push(appended_at(
            world.send(&producers, &sequenced(3, 1, batch * 2, 2)).await,
        ));
        world.append_plain(1).await;
    }
    // Snapshots after the 2nd and 4th batch: the 5th is only in the log.
    let snapshot = world.snapshot().expect("snapshot");
    assert_eq!(snapshot.offset, offsets[3] + 2);
    assert!(snapshot.offset <= offsets[4]);

    let key = PartitionSlot::new(TOPIC_ID, 0, &world.partition).snapshot_key;
    let rebuilt = rebuild(&world.backing, &world.partition, &key)
        .await
        .expect("rebuild");
    assert!(rebuilt.from_snapshot);
    assert_eq!(rebuilt.replayed_from, snapshot.offset);
    assert_eq!(
        rebuilt.batches_replayed, 3,
        "the 5th batch and the plain batches around it"
    );

    let restarted = Producers::default();
    for (batch, offset) in offsets.iter().enumerate() {
        assert_eq!(
            world
                .send(&restarted, &sequenced(3, 1, batch as i32 * 2, 2))
                .await,
            Sequenced::Duplicate {
                base_offset: *offset
            },
            "batch {batch}"
        );
    }
    assert_eq!(
        world.send(&restarted, &sequenced(3, 0, 10, 2)).await,
        Sequenced::Refused(ResponseError::InvalidProducerEpoch)
    );
    appended_at(world.send(&restarted, &sequenced(3, 1, 10, 2)).await);
}

#[tokio::test]
async fn a_snapshot_leading_a_log_that_lost_its_tail_is_discarded() {
    let world = World::new();
    let producers = Producers::with_snapshot_every(4);
    let mut offsets = Vec::new();
    for batch in 0..4 {
        offsets.push(appended_at(
            world.send(&producers, &sequenced(9, 0, batch, 1)).await,
        ));
    }
    assert_eq!(world.snapshot().expect("snapshot").offset, offsets[3] + 1);
    // Power loss under `never`: the last two batches never reached the disk, and a writer of
    // another protocol filled their offsets after the restart.
    world.log.lose_tail_from(&world.partition, offsets[2]);
    world.append_plain(2).await;

    let key = PartitionSlot::new(TOPIC_ID, 0, &world.partition).snapshot_key;
    let rebuilt = rebuild(&world.backing, &world.partition, &key)
        .await
        .expect("rebuild");
    assert!(!rebuilt.from_snapshot);
    let restarted = Producers::default();
    // The retry of a lost batch is stored again, not answered from the stale snapshot.
    let stored_again = appended_at(world.send(&restarted, &sequenced(9, 0, 2, 1)).await);
    assert_eq!(stored_again, offsets[2] + 2);
    assert_eq!(
        world.send(&restarted, &sequenced(9, 0, 1, 1)).await,
        Sequenced::Duplicate {
            base_offset: offsets[1]
        }
    );
}

#[tokio::test]
async fn a_batch_whose_fsync_failed_is_no_duplicate_and_no_snapshot_covers_it() {
    let world = World::new();
    let producers = Producers::with_snapshot_every(1);
    appended_at(world.send(&producers, &sequenced(6, 0, 0, 2)).await);
    world.log.fail_next_fsync.store(true, Ordering::Release);
    let verified = VerifiedBatch::verify(sequenced(6, 0, 2, 2)).expect("valid");
    let failed = producers
        .append_sequenced(&world.backing, TOPIC_ID, &world.partition, verified)
        .await;
    assert!(
        matches!(failed, Err(EngineError::Poisoned(_))),
        "{failed:?}"
    );
    let unsynced_at = 2;
    // Not acknowledged, so not a duplicate: the retry is written (this log is not poisoned).
    let retried = appended_at(world.send(&producers, &sequenced(6, 0, 2, 2)).await);
    assert_eq!(retried, 4);
    appended_at(world.send(&producers, &sequenced(6, 0, 4, 2)).await);
    // A restart may find the unsynced batch in the log after all: no snapshot may cover it.
    let snapshot = world.snapshot().expect("snapshot");
    assert!(snapshot.offset <= unsynced_at, "{}", snapshot.offset);
}

#[tokio::test]
async fn producers_whose_batches_were_deleted_are_forgotten() {
    let world = World::new();
    let producers = Producers::default();
    appended_at(world.send(&producers, &sequenced(1, 0, 0, 3)).await);
    let kept = appended_at(world.send(&producers, &sequenced(2, 0, 0, 3)).await);
    world
        .log
        .delete_records(&world.partition, kept)
        .await
        .expect("delete records");
    let restarted = Producers::default();
    // Producer 1 is unknown now (any sequence is taken); producer 2 is still checked.
    appended_at(world.send(&restarted, &sequenced(1, 0, 40, 1)).await);
    assert_eq!(
        world.send(&restarted, &sequenced(2, 0, 40, 1)).await,
        OUT_OF_ORDER
    );
}

#[tokio::test]
async fn new_ids_stay_above_every_id_in_a_rebuilt_log() {
    let world = World::new();
    let producers = Producers::default();
    assert_eq!(producers.allocate(&world.backing).await.expect("id"), 0);
    // A log holding producer 41 while the counter says 1 (a metadata store restored from an
    // older backup, say).
    appended_at(world.send(&producers, &sequenced(41, 0, 0, 1)).await);
    let restarted = Producers::default();
    appended_at(world.send(&restarted, &sequenced(41, 0, 1, 1)).await);
    assert_eq!(restarted.allocate(&world.backing).await.expect("id"), 42);
    assert_eq!(restarted.allocate(&world.backing).await.expect("id"), 43);
}

#[tokio::test]
async fn a_retry_racing_its_original_is_stored_once() {
    let world = World::new();
    let producers = Producers::default();
    let batch = sequenced(5, 0, 0, 4);
    let (first, second) = tokio::join!(
        world.send(&producers, &batch),
        world.send(&producers, &batch)
    );
    let answers = [first, second];
    let appended = answers
        .iter()
        .filter(|a| matches!(a, Sequenced::Appended(_)))
        .count();
    assert_eq!(appended, 1, "{answers:?}");
    assert_eq!(
        world
            .log
            .offsets(&world.partition)
            .expect("offsets")
            .high_watermark,
        4
    );
}

#[test]
fn snapshots_round_trip_and_refuse_garbage() {
    let snapshot = Snapshot {
        offset: 120,
        end_batch: EndBatch {
            base_offset: 118,
            crc: 0xdead_beef,
        },
        producers: [
            (4, state(2, &[(0, 4, 100), (5, 9, 105)])),
            (9, state(0, &[(7, 7, 117)])),
        ]
        .into_iter()
        .collect(),
    };
    let encoded = snapshot.encode();
    assert_eq!(Snapshot::decode(encoded.clone()), Some(snapshot));
    assert_eq!(Snapshot::decode(encoded.slice(..encoded.len() - 1)), None);
    let mut longer = encoded.to_vec();
    longer.push(0);
    assert_eq!(Snapshot::decode(Bytes::from(longer)), None);
    // A producer count far beyond the bytes is refused before anything is allocated.
    let mut huge = encoded.to_vec();
    huge[21..25].copy_from_slice(&u32::MAX.to_be_bytes());
    assert_eq!(Snapshot::decode(Bytes::from(huge)), None);
    let mut other_version = encoded.to_vec();
    other_version[0] = 9;
    assert_eq!(Snapshot::decode(Bytes::from(other_version)), None);
}

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
