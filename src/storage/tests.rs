//! Unit tests of the engine's internals: group commit, poisoning, persistence of the log start,
//! recovery of torn tails, and the read/timestamp paths.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use event_listener::Listener;
use tributary_api::Durability;
use tributary_api::batch::{Record, VerifiedBatch, build_batch, verify_batch};

use super::*;

fn batch(seed: u64, records: usize, value_len: usize, timestamp: i64) -> Bytes {
    let records: Vec<Record> = (0..records)
        .map(|i| Record {
            key: Some(Bytes::from(format!("k{seed}-{i}"))),
            value: Some(Bytes::from(vec![(seed % 251) as u8; value_len])),
            timestamp: timestamp + i as i64,
            headers: Vec::new(),
        })
        .collect();
    build_batch(&records)
}

fn small_config(durability: Durability) -> LogConfig {
    LogConfig {
        segment_bytes: 4096,
        index_interval_bytes: 256,
        durability,
        ..LogConfig::default()
    }
}

/// The stored bytes equal the appended ones apart from the base offset.
fn same_batch(stored: &[u8], appended: &[u8], base_offset: i64) -> bool {
    stored.len() == appended.len()
        && stored[..8] == base_offset.to_be_bytes()
        && stored[8..] == appended[8..]
}

#[test]
fn reads_return_whole_batches_from_any_offset_across_segments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(dir.path()).expect("open");
    storage
        .open_topic("t", 1, small_config(Durability::Never))
        .expect("topic");
    let partition = storage.partition("t", 0).expect("partition");
    let mut appended = Vec::new();
    for seed in 0..60u64 {
        let bytes = batch(
            seed,
            1 + (seed % 4) as usize,
            40 + (seed as usize * 7) % 300,
            1000 + seed as i64,
        );
        let info = partition.append(&bytes, 0).expect("append");
        appended.push((info, bytes));
    }
    assert!(
        partition.segment_count() > 3,
        "segments: {}",
        partition.segment_count()
    );
    let hwm = partition.high_watermark();
    assert_eq!(hwm, appended.last().map_or(0, |(i, _)| i.last_offset + 1));
    for (info, bytes) in &appended {
        for offset in info.base_offset..=info.last_offset {
            let read = partition
                .read(offset, 1)
                .expect("read")
                .to_bytes()
                .expect("bytes");
            assert!(
                same_batch(&read, bytes, info.base_offset),
                "offset {offset}"
            );
        }
    }
    // A large read returns everything, contiguous and verifiable.
    let all = partition
        .read(0, usize::MAX)
        .expect("read all")
        .to_bytes()
        .expect("bytes");
    let expected: usize = appended.iter().map(|(_, b)| b.len()).sum();
    assert_eq!(all.len(), expected);
    // A limited read stops at a batch boundary.
    let limit = appended[0].1.len() + appended[1].1.len() + 10;
    let some = partition
        .read(0, limit)
        .expect("read")
        .to_bytes()
        .expect("bytes");
    assert_eq!(some.len(), appended[0].1.len() + appended[1].1.len());
    assert!(verify_batch(&some[..appended[0].1.len()]).is_ok());
    assert!(partition.read(hwm, 100).expect("at hwm").is_empty());
    assert!(matches!(
        partition.read(hwm + 1, 100),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
}

#[test]
fn verified_batches_append_like_unverified_ones() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(dir.path()).expect("open");
    storage
        .open_topic("t", 1, small_config(Durability::Always))
        .expect("topic");
    let partition = storage.partition("t", 0).expect("partition");
    let first = batch(1, 3, 50, 1000);
    partition.append(&first, 0).expect("append");
    let second = batch(2, 2, 70, 2000);
    let verified = VerifiedBatch::verify(second.clone()).expect("valid batch");
    let (info, durable) = partition.append_verified(&verified, 0).expect("append");
    partition.wait_durable(durable).expect("durable");
    assert_eq!((info.base_offset, info.last_offset), (3, 4));
    let read = partition
        .read(3, 1)
        .expect("read")
        .to_bytes()
        .expect("bytes");
    assert!(same_batch(&read, &second, 3));
    // What cannot become a VerifiedBatch cannot reach the log unchecked.
    let mut flipped = second.to_vec();
    let last = flipped.len() - 1;
    flipped[last] ^= 1;
    assert!(VerifiedBatch::verify(Bytes::from(flipped)).is_err());
}

#[test]
fn concurrent_always_appends_share_fsyncs() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(dir.path()).expect("open");
    storage
        .open_topic("t", 1, LogConfig::default())
        .expect("topic");
    let partition = storage.partition("t", 0).expect("partition");
    let threads = 16;
    let per_thread = 25;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let partition = Arc::clone(&partition);
            std::thread::spawn(move || {
                (0..per_thread)
                    .map(|i| {
                        partition
                            .append(&batch(t * 1000 + i, 1, 100, 5), 0)
                            .expect("append")
                            .base_offset
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut offsets: Vec<i64> = handles
        .into_iter()
        .flat_map(|h| h.join().expect("thread"))
        .collect();
    offsets.sort_unstable();
    let total = (threads * per_thread) as i64;
    assert_eq!(offsets, (0..total).collect::<Vec<_>>());
    assert_eq!(partition.high_watermark(), total);
    let fsyncs = partition.fsync_count();
    assert!(fsyncs >= 1);
    assert!(fsyncs < total as u64, "{fsyncs} fsyncs for {total} appends");
}

#[test]
fn a_failed_fsync_poisons_the_partition() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(dir.path()).expect("open");
    storage
        .open_topic("t", 1, LogConfig::default())
        .expect("topic");
    let partition = storage.partition("t", 0).expect("partition");
    partition
        .append(&batch(1, 1, 10, 1), 0)
        .expect("healthy append");
    partition.fail_next_sync.store(true, Ordering::SeqCst);
    let failed = partition.append(&batch(2, 1, 10, 1), 0);
    assert!(
        matches!(failed, Err(StorageError::Poisoned { .. })),
        "{failed:?}"
    );
    // The unsynced batch never became visible, and nothing later is accepted.
    assert_eq!(partition.high_watermark(), 1);
    assert!(partition.is_poisoned());
    assert!(matches!(
        partition.append(&batch(3, 1, 10, 1), 0),
        Err(StorageError::Poisoned { .. })
    ));
    let engine: tributary_api::EngineError = partition
        .append(&batch(4, 1, 10, 1), 0)
        .expect_err("poisoned")
        .into();
    assert!(matches!(engine, tributary_api::EngineError::Poisoned(_)));
}

#[test]
fn delete_before_persists_across_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config(Durability::Never);
    {
        let storage = Storage::open(dir.path()).expect("open");
        storage.open_topic("t", 1, config.clone()).expect("topic");
        let partition = storage.partition("t", 0).expect("partition");
        for seed in 0..40 {
            partition
                .append(&batch(seed, 2, 200, 7), 0)
                .expect("append");
        }
        let segments = partition.segment_count();
        assert_eq!(partition.delete_before(50).expect("delete"), 50);
        assert!(partition.segment_count() < segments);
        // Never backwards, never past the high watermark.
        assert_eq!(partition.delete_before(10).expect("delete"), 50);
        assert_eq!(partition.delete_before(1000).expect("delete"), 80);
        assert_eq!(partition.delete_before(60).expect("delete"), 80);
        storage.close().expect("close");
    }
    let storage = Storage::open(dir.path()).expect("reopen");
    storage.open_topic("t", 1, config).expect("topic");
    let partition = storage.partition("t", 0).expect("partition");
    assert_eq!(partition.log_start_offset(), 80);
    assert_eq!(partition.high_watermark(), 80);
    assert!(matches!(
        partition.read(79, 10),
        Err(StorageError::OffsetOutOfRange { log_start: 80, .. })
    ));
    assert_eq!(
        partition
            .append(&batch(99, 1, 1, 1), 0)
            .expect("append")
            .base_offset,
        80
    );
}

#[test]
fn torn_tail_is_truncated_and_appends_continue() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config(Durability::Never);
    let log_path;
    {
        let storage = Storage::open(dir.path()).expect("open");
        storage.open_topic("t", 1, config.clone()).expect("topic");
        let partition = storage.partition("t", 0).expect("partition");
        for seed in 0..5 {
            partition.append(&batch(seed, 1, 50, 7), 0).expect("append");
        }
        log_path = partition.state.lock().active().segment.log_path.clone();
        // Simulate a crash: no clean close.
        std::mem::forget(storage);
    }
    let whole = batch(77, 3, 100, 9);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&log_path)
        .expect("log");
    std::io::Write::write_all(&mut file, &whole[..whole.len() / 2]).expect("write");
    drop(file);
    let lock = dir.path().join(".lock");
    std::fs::remove_file(&lock).expect("forgotten storage still holds the lock file");
    let storage = Storage::open(dir.path()).expect("reopen");
    let report = storage.open_topic("t", 1, config).expect("recover");
    assert_eq!(report.truncated_bytes, (whole.len() / 2) as u64);
    let partition = storage.partition("t", 0).expect("partition");
    assert_eq!(partition.high_watermark(), 5);
    assert_eq!(partition.append(&whole, 0).expect("append").base_offset, 5);
}

#[test]
fn timestamps_find_the_first_batch_reaching_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(dir.path()).expect("open");
    storage
        .open_topic("t", 1, small_config(Durability::Never))
        .expect("topic");
    let partition = storage.partition("t", 0).expect("partition");
    assert_eq!(partition.offset_for_timestamp(0).expect("lookup"), None);
    assert_eq!(partition.max_timestamp().expect("max"), None);
    // Batches of 3 records with timestamps 100s apart; batch i holds ts 1000+100i .. +2.
    for i in 0..30i64 {
        partition
            .append(&batch(i as u64, 3, 60, 1000 + 100 * i), 0)
            .expect("append");
    }
    assert_eq!(
        partition.offset_for_timestamp(0).expect("lookup"),
        Some((0, 1000))
    );
    assert_eq!(
        partition.offset_for_timestamp(1001).expect("lookup"),
        Some((1, 1001))
    );
    assert_eq!(
        partition.offset_for_timestamp(1003).expect("lookup"),
        Some((3, 1100))
    );
    assert_eq!(
        partition.offset_for_timestamp(3902).expect("lookup"),
        Some((89, 3902))
    );
    assert_eq!(partition.offset_for_timestamp(3903).expect("lookup"), None);
    assert_eq!(partition.max_timestamp().expect("max"), Some((89, 3902)));
    partition.delete_before(40).expect("delete");
    // Offset 40 is the second record (ts 2301) of the batch at 39.
    assert_eq!(
        partition.offset_for_timestamp(0).expect("lookup"),
        Some((40, 2301))
    );
    assert_eq!(
        partition.offset_for_timestamp(2302).expect("lookup"),
        Some((41, 2302))
    );
    assert_eq!(
        partition.offset_for_timestamp(2303).expect("lookup"),
        Some((42, 2400))
    );
}

#[test]
fn retention_deletes_old_and_excess_segments_but_never_the_active_one() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(dir.path()).expect("open");
    let mut config = small_config(Durability::Never);
    config.retention_ms = 1000;
    storage.open_topic("t", 1, config.clone()).expect("topic");
    let partition = storage.partition("t", 0).expect("partition");
    for i in 0..40i64 {
        partition
            .append(&batch(i as u64, 1, 300, i * 100), 0)
            .expect("append");
    }
    let segments = partition.segment_count();
    // now - 1000 = 2000: segments whose newest record is older than ts 2000 go.
    let report = storage.enforce_retention(3000).expect("retention");
    assert!(report.segments_deleted > 0);
    assert_eq!(
        partition.segment_count() as u64,
        segments as u64 - report.segments_deleted
    );
    let start = partition.log_start_offset();
    assert!(start > 0 && start <= 20, "log start {start}");
    // Far in the future everything but the active segment goes.
    storage.enforce_retention(1_000_000).expect("retention");
    assert_eq!(partition.segment_count(), 1);
    assert!(partition.read(partition.log_start_offset(), 10).is_ok());
    config.retention_ms = -1;
    config.retention_bytes = 0;
    storage.set_config("t", config).expect("config");
    for i in 0..40i64 {
        partition
            .append(&batch(i as u64, 1, 300, i), 0)
            .expect("append");
    }
    storage.enforce_retention(0).expect("retention");
    assert_eq!(partition.segment_count(), 1);
}

#[test]
fn appends_wake_listeners() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(dir.path()).expect("open");
    storage
        .open_topic("t", 1, small_config(Durability::Never))
        .expect("topic");
    let partition = storage.partition("t", 0).expect("partition");
    let listener = partition.listen();
    let writer = Arc::clone(&partition);
    let handle = std::thread::spawn(move || writer.append(&batch(1, 1, 1, 1), 0).expect("append"));
    assert!(listener.wait_timeout(Duration::from_secs(5)).is_some());
    handle.join().expect("thread");
    assert_eq!(partition.high_watermark(), 1);
}

#[test]
fn interval_durability_fsyncs_in_the_background() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(dir.path()).expect("open");
    let config = small_config(Durability::Interval(Duration::from_millis(5)));
    storage.open_topic("t", 1, config).expect("topic");
    let partition = storage.partition("t", 0).expect("partition");
    partition.append(&batch(1, 1, 1, 1), 0).expect("append");
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    // The count and the dirty flag are updated one after the other by the flusher thread.
    while (partition.fsync_count() == 0 || partition.is_dirty())
        && std::time::Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(2));
    }
    assert!(partition.fsync_count() >= 1);
    assert!(!partition.is_dirty());
}

#[test]
fn topics_on_disk_decode_names_and_delete_removes_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(dir.path()).expect("open");
    let long = "ü".repeat(120);
    for name in ["plain", "with space/slash?", ".", &long] {
        if name.contains('/') {
            assert!(matches!(
                storage.open_topic(name, 1, LogConfig::default()),
                Err(StorageError::InvalidTopicName(_))
            ));
            continue;
        }
        storage
            .open_topic(name, 2, LogConfig::default())
            .expect("topic");
    }
    let mut expected = vec!["plain".to_owned(), ".".to_owned(), long.clone()];
    expected.sort();
    assert_eq!(storage.topics_on_disk().expect("list"), expected);
    let partition = storage.partition(".", 1).expect("partition");
    storage.delete_topic(".").expect("delete");
    assert!(matches!(
        partition.append(&batch(1, 1, 1, 1), 0),
        Err(StorageError::Closed)
    ));
    assert!(matches!(
        storage.partition(".", 0),
        Err(StorageError::UnknownTopic(_))
    ));
    assert_eq!(storage.topics_on_disk().expect("list").len(), 2);
    assert!(matches!(
        storage.delete_topic("."),
        Err(StorageError::UnknownTopic(_))
    ));
    storage.add_partitions("plain", 4).expect("grow");
    assert!(storage.partition("plain", 3).is_ok());
    assert!(matches!(
        storage.add_partitions("plain", 1),
        Err(StorageError::InvalidPartitionCount { .. })
    ));
}

#[test]
fn a_second_storage_on_the_same_directory_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let _storage = Storage::open(dir.path()).expect("open");
    assert!(matches!(
        Storage::open(dir.path()),
        Err(StorageError::Locked { .. })
    ));
}

#[test]
fn missing_or_damaged_indexes_are_rebuilt_from_the_log() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config(Durability::Never);
    let mut appended = Vec::new();
    let partition_dir;
    {
        let storage = Storage::open(dir.path()).expect("open");
        storage.open_topic("t", 1, config.clone()).expect("topic");
        let partition = storage.partition("t", 0).expect("partition");
        for seed in 0..40u64 {
            let bytes = batch(seed, 2, 150, 100 * seed as i64);
            appended.push((partition.append(&bytes, 0).expect("append"), bytes));
        }
        partition_dir = partition.dir.clone();
        assert!(partition.segment_count() >= 4);
        storage.close().expect("close");
    }
    let mut sealed: Vec<_> = std::fs::read_dir(&partition_dir)
        .expect("dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "index"))
        .collect();
    sealed.sort();
    // Lose one sealed segment's offset index, damage another's time index, and scramble one.
    std::fs::remove_file(&sealed[0]).expect("remove index");
    let time_index = sealed[1].with_extension("timeindex");
    let len = std::fs::metadata(&time_index).expect("meta").len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&time_index)
        .expect("open")
        .set_len(len - 5)
        .expect("truncate");
    std::fs::write(&sealed[2], [0xffu8; 16]).expect("scramble");
    let storage = Storage::open(dir.path()).expect("reopen");
    let report = storage.open_topic("t", 1, config).expect("recover");
    assert!(report.rebuilt_indexes >= 3, "{report:?}");
    let partition = storage.partition("t", 0).expect("partition");
    for (info, bytes) in &appended {
        let read = partition
            .read(info.last_offset, 1)
            .expect("read")
            .to_bytes()
            .expect("bytes");
        assert!(same_batch(&read, bytes, info.base_offset));
        assert_eq!(
            partition
                .offset_for_timestamp(info.max_timestamp)
                .expect("lookup"),
            Some((info.last_offset, info.max_timestamp))
        );
    }
}

#[test]
fn damage_in_a_sealed_segment_written_before_a_crash_refuses_to_open() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = small_config(Durability::Never);
    let first_segment;
    {
        let storage = Storage::open(dir.path()).expect("open");
        storage.open_topic("t", 1, config.clone()).expect("topic");
        let partition = storage.partition("t", 0).expect("partition");
        for seed in 0..30u64 {
            partition
                .append(&batch(seed, 2, 150, 1), 0)
                .expect("append");
        }
        first_segment = partition.state.lock().segments[0].segment.log_path.clone();
        // Crash: no clean shutdown marker, so every segment since the last open is verified.
        storage.flush_all().expect("flush");
        std::mem::forget(storage);
    }
    std::fs::remove_file(dir.path().join(".lock")).expect("forgotten storage's lock file");
    let mut contents = std::fs::read(&first_segment).expect("segment");
    contents[100] ^= 0x01;
    std::fs::write(&first_segment, &contents).expect("damage");
    let storage = Storage::open(dir.path()).expect("reopen");
    let err = storage
        .open_topic("t", 1, config)
        .expect_err("sealed damage must refuse");
    assert!(
        matches!(&err, StorageError::Corrupt { file, position: 0, .. } if file == &first_segment),
        "{err:?}"
    );
}

#[test]
fn engine_handles_are_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Storage>();
    assert_send_sync::<Partition>();
    assert_send_sync::<ReadResult>();
    assert_send_sync::<StorageError>();
}

#[test]
fn timestamps_inside_compressed_batches_are_found_exactly() {
    use tributary_api::batch::{build_compressed_batch, reseal};
    use tributary_api::compression::Codec;
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(dir.path()).expect("open");
    storage
        .open_topic("t", 1, small_config(Durability::Never))
        .expect("topic");
    let partition = storage.partition("t", 0).expect("partition");
    let records: Vec<Record> = (0..3)
        .map(|i| Record {
            value: Some(Bytes::from(vec![b'v'; 50])),
            timestamp: 1000 + i,
            ..Record::default()
        })
        .collect();
    let zstd = build_compressed_batch(&records, Codec::Zstd).expect("compress");
    partition.append(&zstd, 0).expect("append");
    // A gzip batch whose records do not inflate (CRC right, so the log takes it).
    let later: Vec<Record> = records
        .iter()
        .map(|r| Record {
            timestamp: r.timestamp + 1000,
            ..r.clone()
        })
        .collect();
    let mut broken = build_compressed_batch(&later, Codec::Gzip)
        .expect("compress")
        .to_vec();
    let last = broken.len() - 10;
    broken[70..last].fill(0xAB);
    reseal(&mut broken);
    partition.append(&broken, 0).expect("append");
    assert_eq!(
        partition.offset_for_timestamp(1001).expect("lookup"),
        Some((1, 1001))
    );
    assert_eq!(
        partition.offset_for_timestamp(1002).expect("lookup"),
        Some((2, 1002))
    );
    // The broken batch (offsets 3-5, ts 2000-2002): its start and max timestamp, never past it.
    assert_eq!(
        partition.offset_for_timestamp(2001).expect("lookup"),
        Some((3, 2002))
    );
    assert_eq!(partition.offset_for_timestamp(2003).expect("lookup"), None);
    assert_eq!(
        partition.offset_for_timestamp(999).expect("lookup"),
        Some((0, 1000))
    );
}
