//! Merging small objects (`src/cloud/merge.rs`): many small flushes, then the merge and the
//! object GC; every partition reads back byte-identical with the same offsets, the object
//! count drops, and a reader on another broker that looked coordinates up before the merge
//! (and keeps no byte-range cache) reads on, during the merge and after the old objects are
//! gone.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use tributary::cloud::{CloudEngine, CloudLog};
use tributary_api::batch::VerifiedBatch;
use tributary_api::{LogService, TopicAdmin, TopicPartition, TopicSettings};

use crate::engine::{batch, settings};
use crate::services::{bucket, connect, fresh_database};

const PARTITIONS: u32 = 3;
const FLUSHES: usize = 24;

/// Every partition's whole log as (high watermark, the bytes of reads from 0, in order).
async fn snapshot(log: &CloudLog) -> BTreeMap<u32, (i64, Vec<Bytes>)> {
    let mut out = BTreeMap::new();
    for partition in 0..PARTITIONS {
        let tp = TopicPartition::new("merged", partition);
        let high = log.offsets(&tp).expect("offsets").high_watermark;
        let mut reads = Vec::new();
        let mut offset = 0;
        while offset < high {
            // Small reads, so a read spans batches of several objects.
            let read = log.read(&tp, offset, 200).await.expect("read");
            let records = tributary_api::batch::decode_records(&read.data).expect("whole batches");
            offset = records.last().expect("a record").offset + 1;
            reads.push(read.data);
        }
        out.insert(partition, (high, reads));
    }
    out
}

async fn live_objects(database: &str) -> i64 {
    connect(database)
        .await
        .query_one(
            "SELECT count(*) FROM objects WHERE orphaned_ms IS NULL",
            &[],
        )
        .await
        .expect("count")
        .get(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn merged_objects_read_back_byte_identical_and_readers_carry_on() {
    let database = fresh_database("merge").await;
    let mut writer_settings = settings(&database, &bucket(), 10);
    writer_settings.merge_min_age = Duration::ZERO;
    let objects = writer_settings.objects.clone();
    let writer = CloudEngine::open(writer_settings).await.expect("writer");
    let log = writer.log();
    // Kept forever: the test batches carry 1970 timestamps, which retention would remove.
    let keep = TopicSettings {
        retention_ms: Some(-1),
        ..TopicSettings::default()
    };
    log.create_topic("merged", PARTITIONS, keep)
        .await
        .expect("topic");
    // One flush per append: many small objects.
    for n in 0..FLUSHES {
        let tp = TopicPartition::new("merged", (n as u32) % PARTITIONS);
        let verified = VerifiedBatch::verify(batch(&format!("b{n}"), 1 + n % 4)).expect("valid");
        let (_, durable) = log.append_verified(&tp, verified).await.expect("append");
        durable.await.expect("durable");
    }
    let objects_before = live_objects(&database).await;
    assert!(objects_before >= FLUSHES as i64, "{objects_before} objects");
    let before = snapshot(&log).await;

    // A second broker that caches coordinates but no bytes; joins after the writes, so the
    // writer's partitions stay with whoever leads them (reads need no leadership).
    let mut reader_settings = settings(&database, &bucket(), 10);
    reader_settings.objects = objects;
    reader_settings.broker_id = 2;
    reader_settings.read_cache_bytes = 0;
    let reader = CloudEngine::open(reader_settings).await.expect("reader");
    let reader_log = reader.log();
    assert_eq!(
        snapshot(&reader_log).await,
        before,
        "the reader before the merge"
    );

    // The reader keeps reading while the merge and the GC run.
    let stop = Arc::new(AtomicBool::new(false));
    let rounds = Arc::new(AtomicU64::new(0));
    let reading = {
        let (log, stop, rounds, before) = (
            reader_log.clone(),
            stop.clone(),
            rounds.clone(),
            before.clone(),
        );
        tokio::spawn(async move {
            while !stop.load(Ordering::Acquire) {
                assert_eq!(snapshot(&log).await, before, "a read during the merge");
                rounds.fetch_add(1, Ordering::AcqRel);
            }
        })
    };
    let pass = log.merge_small_objects().await.expect("merge");
    assert_eq!(pass.merged_objects, FLUSHES as u64, "{pass:?}");
    assert_eq!(pass.written_objects, 1, "{pass:?}");
    assert_eq!(writer.stats().merged_objects, FLUSHES as u64);
    // The old objects are orphans now; the GC (grace 0, on whichever broker holds the role)
    // deletes them from the store.
    let mut deleted = 0;
    for engine in [&writer, &reader] {
        let pass = engine
            .log()
            .maintain(Duration::ZERO)
            .await
            .expect("maintain");
        assert_eq!(pass.trimmed_partitions, 0);
        deleted += pass.deleted_objects;
    }
    assert_eq!(deleted, FLUSHES as u64, "the merged objects deleted");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, Ordering::Release);
    reading.await.expect("the concurrent reader");
    assert!(rounds.load(Ordering::Acquire) > 0);
    assert_eq!(live_objects(&database).await, 1, "one object left");

    // Old coordinates everywhere, old objects gone: both brokers read the same bytes.
    assert_eq!(
        snapshot(&reader_log).await,
        before,
        "the reader after the GC"
    );
    assert_eq!(snapshot(&log).await, before, "the writer after the GC");
    // Nothing more to merge: one object.
    assert_eq!(
        log.merge_small_objects()
            .await
            .expect("merge")
            .written_objects,
        0
    );
    reader.close().await;
    writer.close().await;
}
