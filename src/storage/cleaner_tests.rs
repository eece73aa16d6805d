//! The cleaner against a model (the latest record per key; with transactions, the latest
//! record per key of what a `read_committed` reader sees), on a real directory and on the
//! simulated disk with a power loss at every step of a pass.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use proptest::prelude::*;
use tributary_api::batch::{
    BatchHeader, Record, build_batch, build_compressed_batch, decode_records, reseal, verify_batch,
};
use tributary_api::compression::Codec;
use tributary_api::transactions::marker;
use tributary_api::{CleanupPolicy, Durability};

use super::*;

const DAY_MS: i64 = 24 * 60 * 60 * 1000;
const NOW: i64 = 1_000_000;

fn compact_config() -> LogConfig {
    LogConfig {
        segment_bytes: 1024,
        index_interval_bytes: 128,
        durability: Durability::Never,
        retention_ms: -1,
        cleanup: CleanupPolicy::COMPACT,
        delete_retention_ms: DAY_MS,
        ..LogConfig::default()
    }
}

/// One appended record: key index and value (`None` = tombstone).
type Op = (u8, Option<u16>);

fn record(key: u8, value: Option<u16>) -> Record {
    Record {
        key: Some(Bytes::from(format!("key-{key}"))),
        value: value.map(|v| Bytes::from(format!("value-{v}-{}", "x".repeat(v as usize % 40)))),
        timestamp: 1_000,
        headers: Vec::new(),
    }
}

/// Appends `ops` in batches of `batch_len`, every third batch gzip-compressed, then rolls so
/// everything is cleanable. Returns each record's offset in order.
fn fill(partition: &Partition, ops: &[Op], batch_len: usize) -> Vec<i64> {
    let mut offsets = Vec::new();
    for (n, chunk) in ops.chunks(batch_len.max(1)).enumerate() {
        let records: Vec<Record> = chunk.iter().map(|(k, v)| record(*k, *v)).collect();
        let bytes = if n % 3 == 2 {
            build_compressed_batch(&records, Codec::Gzip).expect("gzip")
        } else {
            build_batch(&records)
        };
        let info = partition.append(&bytes, 0).expect("append");
        offsets.extend(info.base_offset..=info.last_offset);
    }
    let mut state = partition.state.lock();
    partition.roll(&mut state).expect("roll");
    offsets
}

/// Every record from the log start, as (offset, key, value).
fn read_all(partition: &Partition) -> Vec<(i64, Bytes, Option<Bytes>)> {
    let mut out = Vec::new();
    let mut offset = partition.log_start_offset();
    while offset < partition.high_watermark() {
        let data = partition
            .read(offset, 1 << 20)
            .expect("read")
            .to_bytes()
            .expect("bytes");
        let mut at = 0;
        while at < data.len() {
            let len = BatchHeader::parse(&data[at..]).expect("header").total_len;
            let batch = data.slice(at..at + len);
            let header = verify_batch(&batch).expect("valid batch");
            for stored in decode_records(&batch).expect("records") {
                let key = stored.record.key.expect("key");
                out.push((stored.offset, key, stored.record.value));
            }
            offset = header.last_offset() + 1;
            at += header.total_len;
        }
    }
    out
}

/// The model: the latest record of each key, with tombstones unless `drop_tombstones`.
fn latest(ops: &[Op], offsets: &[i64], drop_tombstones: bool) -> Vec<(i64, Bytes, Option<Bytes>)> {
    let mut by_key: BTreeMap<u8, (i64, Option<u16>)> = BTreeMap::new();
    for ((key, value), offset) in ops.iter().zip(offsets) {
        by_key.insert(*key, (*offset, *value));
    }
    let mut out: Vec<_> = by_key
        .into_iter()
        .filter(|(_, (_, value))| !drop_tombstones || value.is_some())
        .map(|(key, (offset, value))| {
            let record = record(key, value);
            (offset, record.key.expect("key"), record.value)
        })
        .collect();
    out.sort_by_key(|(offset, ..)| *offset);
    out
}

fn ops_strategy() -> impl Strategy<Value = (Vec<Op>, usize)> {
    (
        prop::collection::vec((0u8..12, prop::option::weighted(0.85, 0u16..500)), 1..160),
        1usize..9,
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_pass_keeps_exactly_the_latest_record_per_key((ops, batch_len) in ops_strategy()) {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Storage::open(dir.path()).expect("open");
        storage.open_topic("t", 1, compact_config()).expect("topic");
        let partition = storage.partition("t", 0).expect("partition");
        let offsets = fill(&partition, &ops, batch_len);
        let (start, end) = (partition.log_start_offset(), partition.high_watermark());
        let limits = CleanerLimits { bytes_per_second: 0, ..CleanerLimits::default() };
        let report = partition.clean(NOW, limits).expect("clean");
        prop_assert_eq!(report.passes, 1);
        prop_assert_eq!(read_all(&partition), latest(&ops, &offsets, false));
        prop_assert_eq!((partition.log_start_offset(), partition.high_watermark()), (start, end));
        // Nothing new is dirty: the next pass is skipped until the tombstones are due.
        prop_assert_eq!(partition.clean(NOW + 1, limits).expect("clean").passes, 0);
        let later = partition.clean(NOW + DAY_MS, limits).expect("clean");
        let tombstones = latest(&ops, &offsets, false).len() != latest(&ops, &offsets, true).len();
        prop_assert_eq!(later.passes, u64::from(tombstones));
        prop_assert_eq!(read_all(&partition), latest(&ops, &offsets, true));
        // The cleaned segments reopen as they are, verified or not.
        drop(partition);
        drop(storage);
        for name in ["recovery-point", "clean-shutdown"] {
            let _ = std::fs::remove_file(dir.path().join("t").join("0").join(name));
        }
        let storage = Storage::open(dir.path()).expect("reopen");
        storage.open_topic("t", 1, compact_config()).expect("topic");
        let partition = storage.partition("t", 0).expect("partition");
        prop_assert_eq!(read_all(&partition), latest(&ops, &offsets, true));
        prop_assert_eq!(partition.high_watermark(), end);
    }
}

#[test]
fn a_reader_holding_a_segment_keeps_reading_it_across_a_swap() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(dir.path()).expect("open");
    storage.open_topic("t", 1, compact_config()).expect("topic");
    let partition = storage.partition("t", 0).expect("partition");
    let ops: Vec<Op> = (0..60).map(|i| ((i % 3) as u8, Some(i))).collect();
    fill(&partition, &ops, 4);
    let before = partition.read(0, 1 << 20).expect("read");
    let old_bytes = before.to_bytes().expect("bytes");
    let limits = CleanerLimits {
        bytes_per_second: 0,
        ..CleanerLimits::default()
    };
    let report = partition.clean(NOW, limits).expect("clean");
    assert!(report.segments_rewritten > 0, "{report:?}");
    assert_eq!(before.to_bytes().expect("bytes after the swap"), old_bytes);
    assert_eq!(read_all(&partition).len(), 3);
}

#[test]
fn delete_policy_and_young_segments_are_left_alone() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(dir.path()).expect("open");
    let young = LogConfig {
        min_compaction_lag_ms: NOW,
        ..compact_config()
    };
    let delete = LogConfig {
        cleanup: CleanupPolicy::DELETE,
        ..compact_config()
    };
    let limits = CleanerLimits::default();
    let ops: Vec<Op> = (0..40).map(|i| ((i % 2) as u8, Some(i))).collect();
    for (name, config) in [("young", young), ("delete", delete)] {
        storage.open_topic(name, 1, config).expect("topic");
        let partition = storage.partition(name, 0).expect("partition");
        fill(&partition, &ops, 2);
        assert_eq!(partition.clean(NOW, limits).expect("clean").passes, 0);
        assert_eq!(read_all(&partition).len(), ops.len(), "{name}");
    }
}

#[test]
fn a_keyless_record_is_refused_on_a_compacted_topic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(dir.path()).expect("open");
    storage.open_topic("t", 1, compact_config()).expect("topic");
    let partition = storage.partition("t", 0).expect("partition");
    let keyless = build_batch(&[Record {
        value: Some(Bytes::from_static(b"v")),
        ..Record::default()
    }]);
    let err = partition.append(&keyless, 0).expect_err("keyless");
    assert!(err.to_string().contains("without a key"), "{err}");
    assert_eq!(partition.high_watermark(), 0);
}

#[test]
fn log_append_time_stamps_the_batch() {
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(dir.path()).expect("open");
    let config = LogConfig {
        log_append_time: true,
        ..compact_config()
    };
    storage.open_topic("t", 1, config).expect("topic");
    let partition = storage.partition("t", 0).expect("partition");
    let info = partition
        .append(&build_batch(&[record(1, Some(1))]), 4242)
        .expect("append");
    assert_eq!(info.max_timestamp, 4242);
    let data = partition
        .read(0, 1 << 20)
        .expect("read")
        .to_bytes()
        .expect("bytes");
    let header = verify_batch(&data).expect("valid CRC");
    assert!(header.is_log_append_time());
    assert_eq!(header.max_timestamp, 4242);
}

/// Builds the same compacted partition on a fresh simulated disk every time.
fn sim_partition(disk: &SimDisk, ops: &[Op]) -> (Storage, Arc<Partition>) {
    let storage = Storage::open_with(
        Path::new("/data"),
        StorageOptions {
            fs: disk.fs(),
            max_open_files: 64,
        },
    )
    .expect("open");
    storage.open_topic("t", 1, compact_config()).expect("topic");
    let partition = storage.partition("t", 0).expect("partition");
    fill(&partition, ops, 3);
    partition.sync_all_written().expect("sync");
    (storage, partition)
}

#[test]
fn a_power_loss_at_any_step_of_a_pass_leaves_the_partition_whole() {
    let ops: Vec<Op> = (0..90u16)
        .map(|i| ((i % 7) as u8, if i % 11 == 10 { None } else { Some(i) }))
        .collect();
    let limits = CleanerLimits {
        bytes_per_second: 0,
        ..CleanerLimits::default()
    };
    let mut step = 0;
    loop {
        let disk = SimDisk::new(step + 1);
        let (storage, partition) = sim_partition(&disk, &ops);
        let original = read_all(&partition);
        let end = partition.high_watermark();
        let offsets: Vec<i64> = original.iter().map(|(o, ..)| *o).collect();
        let cleaned = latest(&ops, &offsets, false);
        disk.crash_after(step);
        let outcome = partition.clean(NOW, limits);
        let crashed = !disk.crash_pending();
        disk.disarm();
        disk.crash();
        std::mem::forget(partition);
        std::mem::forget(storage);
        let storage = Storage::open_with(
            Path::new("/data"),
            StorageOptions {
                fs: disk.fs(),
                max_open_files: 64,
            },
        )
        .expect("reopen");
        storage
            .open_topic("t", 1, compact_config())
            .unwrap_or_else(|err| panic!("step {step}: {err}; {:?}", disk.listing()));
        let partition = storage.partition("t", 0).expect("partition");
        let seen = read_all(&partition);
        assert_eq!(partition.high_watermark(), end, "step {step}");
        // Whole: every latest record is there, nothing is there that was not appended, and
        // offsets ascend.
        for kept in &cleaned {
            assert!(seen.contains(kept), "step {step}: lost {kept:?}");
        }
        for record in &seen {
            assert!(
                original.contains(record),
                "step {step}: invented {record:?}"
            );
        }
        assert!(seen.windows(2).all(|w| w[0].0 < w[1].0), "step {step}");
        // A second pass after the crash finishes the job.
        partition.clean(NOW, limits).expect("clean after recovery");
        assert_eq!(read_all(&partition), cleaned, "step {step}");
        if !crashed {
            outcome.expect("a pass with no crash succeeds");
            assert!(step > 3, "the pass made only {step} changes");
            break;
        }
        step += 1;
    }
}

#[test]
fn compression_type_recompresses_batches_with_another_codec() {
    use tributary_api::CompressionType;
    use tributary_api::batch::Compression;
    let dir = tempfile::tempdir().expect("tempdir");
    let storage = Storage::open(dir.path()).expect("open");
    let records: Vec<Record> = (0..4).map(|i| record(i, Some(u16::from(i)))).collect();
    let plain = build_batch(&records);
    let gzip = build_compressed_batch(&records, Codec::Gzip).expect("gzip");
    for (name, kind, sent, stored) in [
        ("zstd", CompressionType::Zstd, &plain, Compression::Zstd),
        (
            "none",
            CompressionType::Uncompressed,
            &gzip,
            Compression::None,
        ),
        (
            "producer",
            CompressionType::Producer,
            &gzip,
            Compression::Gzip,
        ),
    ] {
        let config = LogConfig {
            compression: kind,
            ..compact_config()
        };
        storage.open_topic(name, 1, config).expect("topic");
        let partition = storage.partition(name, 0).expect("partition");
        partition.append(sent, 0).expect("append");
        let data = partition
            .read(0, 1 << 20)
            .expect("read")
            .to_bytes()
            .expect("bytes");
        let header = verify_batch(&data).expect("valid batch");
        assert_eq!(header.compression(), stored, "{name}");
        let read: Vec<Record> = decode_records(&data)
            .expect("records")
            .into_iter()
            .map(|stored| stored.record)
            .collect();
        assert_eq!(read, records, "{name}");
    }
}

// Transactions (see `cleaner_txn`): producers 1 to 3 write transactions over the same keys as
// producer-less records; the views are modelled here independently of the cleaner's code.

/// One step of a transactional workload.
#[derive(Debug, Clone)]
enum TxnOp {
    /// A record outside any transaction.
    Plain(u8, Option<u16>),
    /// A record in the open transaction of a producer (opening one if none is).
    Data(i64, u8, Option<u16>),
    /// A COMMIT (`true`) or ABORT marker of a producer, open transaction or not.
    End(i64, bool),
}

fn txn_config() -> LogConfig {
    LogConfig {
        min_cleanable_dirty_ratio: 0.0,
        ..compact_config()
    }
}

fn transactional(producer: i64, records: &[Record]) -> Bytes {
    let mut batch = build_batch(records).to_vec();
    batch[21..23].copy_from_slice(&0x10i16.to_be_bytes());
    batch[43..51].copy_from_slice(&producer.to_be_bytes());
    batch[51..53].copy_from_slice(&0i16.to_be_bytes());
    reseal(&mut batch);
    Bytes::from(batch)
}

fn append_ops(partition: &Partition, ops: &[TxnOp]) {
    for op in ops {
        let batch = match op {
            TxnOp::Plain(key, value) => build_batch(&[record(*key, *value)]),
            TxnOp::Data(producer, key, value) => transactional(*producer, &[record(*key, *value)]),
            TxnOp::End(producer, commit) => marker::build(*producer, 0, *commit, 1_000),
        };
        partition.append(&batch, 0).expect("append");
    }
    let mut state = partition.state.lock();
    partition.roll(&mut state).expect("roll");
}

/// Every batch from the log start, in offset order.
fn batches(partition: &Partition) -> Vec<(BatchHeader, Bytes)> {
    let mut out = Vec::new();
    let mut offset = partition.log_start_offset();
    while offset < partition.high_watermark() {
        let data = partition
            .read(offset, 1 << 20)
            .expect("read")
            .to_bytes()
            .expect("bytes");
        let mut at = 0;
        while at < data.len() {
            let len = BatchHeader::parse(&data[at..]).expect("header").total_len;
            let batch = data.slice(at..at + len);
            let header = verify_batch(&batch).expect("valid batch");
            offset = header.last_offset() + 1;
            at += len;
            out.push((header, batch));
        }
    }
    out
}

type Seen = Vec<(i64, Bytes, Option<Bytes>)>;

fn records_of(batch: &Bytes) -> Seen {
    decode_records(batch)
        .expect("records")
        .into_iter()
        .map(|stored| {
            let key = stored.record.key.expect("key");
            (stored.offset, key, stored.record.value)
        })
        .collect()
}

/// What a `read_committed` reader sees (KIP-98): records outside transactions and of committed
/// ones, none at or past the first offset of a transaction still open (the LSO, returned).
fn committed_view(partition: &Partition) -> (Seen, i64) {
    let mut open: BTreeMap<i64, (i64, Seen)> = BTreeMap::new();
    let mut visible = Vec::new();
    for (header, batch) in batches(partition) {
        if header.producer_id < 0 || !header.is_transactional() {
            assert!(!header.is_control(), "a control batch outside transactions");
            visible.extend(records_of(&batch));
        } else if header.is_control() {
            let committed = marker::committed(&header, &batch).expect("a marker");
            if let Some((_, records)) = open.remove(&header.producer_id)
                && committed
            {
                visible.extend(records);
            }
        } else {
            let entry = open
                .entry(header.producer_id)
                .or_insert((header.base_offset, Vec::new()));
            entry.1.extend(records_of(&batch));
        }
    }
    let stable = open
        .values()
        .map(|(first, _)| *first)
        .min()
        .unwrap_or(partition.high_watermark());
    visible.retain(|(offset, ..)| *offset < stable);
    visible.sort_by_key(|(offset, ..)| *offset);
    (visible, stable)
}

/// Every record of every data batch (a `read_uncommitted` reader's view).
fn raw_view(partition: &Partition) -> Seen {
    batches(partition)
        .iter()
        .filter(|(header, _)| !header.is_control())
        .flat_map(|(_, batch)| records_of(batch))
        .collect()
}

/// The latest record of each key in `seen`, tombstones dropped or not.
fn latest_of(seen: &Seen, drop_tombstones: bool) -> Seen {
    let mut by_key: BTreeMap<Bytes, (i64, Option<Bytes>)> = BTreeMap::new();
    for (offset, key, value) in seen {
        by_key.insert(key.clone(), (*offset, value.clone()));
    }
    let mut out: Seen = by_key
        .into_iter()
        .filter(|(_, (_, value))| !drop_tombstones || value.is_some())
        .map(|(key, (offset, value))| (offset, key, value))
        .collect();
    out.sort_by_key(|(offset, ..)| *offset);
    out
}

/// Every marker left closes a transaction that still has a batch, or is its producer's last.
fn assert_markers_needed(partition: &Partition) {
    let all = batches(partition);
    let mut has_batch: BTreeMap<i64, bool> = BTreeMap::new();
    for (at, (header, _)) in all.iter().enumerate() {
        if header.producer_id < 0 || !header.is_transactional() {
            continue;
        }
        if !header.is_control() {
            has_batch.insert(header.producer_id, true);
            continue;
        }
        let needed = has_batch.remove(&header.producer_id).unwrap_or(false);
        let last = !all[at + 1..]
            .iter()
            .any(|(later, _)| later.producer_id == header.producer_id);
        assert!(
            needed || last,
            "marker at {} outlived its delete horizon",
            header.base_offset
        );
    }
}

fn open_txn_partition(dir: &Path) -> (Storage, Arc<Partition>) {
    let storage = Storage::open(dir).expect("open");
    storage.open_topic("t", 1, txn_config()).expect("topic");
    let partition = storage.partition("t", 0).expect("partition");
    (storage, partition)
}

const LIMITS: CleanerLimits = CleanerLimits {
    bytes_per_second: 0,
    max_key_bytes: MAX_KEY_BYTES,
};

#[test]
fn aborted_records_go_committed_ones_compact_and_markers_wait_for_their_horizon() {
    use TxnOp::*;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_storage, partition) = open_txn_partition(dir.path());
    let ops = [
        Plain(1, Some(1)),
        Plain(2, Some(2)),
        // Producer 1 commits new values of keys 1 and 3.
        Data(1, 1, Some(10)),
        Data(1, 3, Some(11)),
        End(1, true),
        // Producer 2 aborts values of keys 1 and 2: neither may hide what came before.
        Data(2, 1, Some(20)),
        Data(2, 2, Some(21)),
        End(2, false),
        // Interleaved: producer 1 commits key 2, producer 2 aborts key 3, producer 3 aborts.
        Data(1, 2, Some(30)),
        Data(2, 3, Some(31)),
        Data(3, 1, Some(32)),
        End(1, true),
        End(2, false),
        End(3, false),
        // Producer 1 replaces both values of its first transaction, which is left with none.
        Data(1, 1, Some(50)),
        Data(1, 3, Some(51)),
        End(1, true),
        // The latest value of key 2 is aborted: the committed one before it stays.
        Data(2, 2, Some(60)),
        End(2, false),
        Plain(4, Some(40)),
    ];
    append_ops(&partition, &ops);
    let (before, stable) = committed_view(&partition);
    assert_eq!(stable, partition.high_watermark());
    let report = partition.clean(NOW, LIMITS).expect("clean");
    assert_eq!(report.passes, 1);
    assert_eq!(report.markers_removed, 0, "markers keep their horizon");
    let expected = latest_of(&before, false);
    let values: Vec<_> = expected.iter().map(|(_, _, v)| v.clone()).collect();
    assert_eq!(
        values,
        [
            record(2, Some(30)),
            record(1, Some(50)),
            record(3, Some(51)),
            record(4, Some(40))
        ]
        .map(|r| r.value)
        .to_vec(),
    );
    assert_eq!(committed_view(&partition).0, expected);
    assert_eq!(raw_view(&partition), expected, "aborted records are gone");
    // Past the delete horizon the markers of transactions with no batch left go (producer 2's
    // first two aborts; producer 1's first commit, whose records were all replaced), the
    // others stay: a transaction with a record left, a producer's last batch.
    let later = partition.clean(NOW + DAY_MS, LIMITS).expect("clean");
    assert_eq!(later.markers_removed, 3, "{later:?}");
    assert_eq!(partition.markers_removed(), 3);
    let kinds: Vec<(i64, bool)> = batches(&partition)
        .iter()
        .filter(|(header, _)| header.is_control())
        .map(|(header, batch)| {
            (
                header.producer_id,
                marker::committed(header, batch).expect("marker"),
            )
        })
        .collect();
    assert_eq!(kinds, [(1, true), (3, false), (1, true), (2, false)]);
    assert_markers_needed(&partition);
    assert_eq!(committed_view(&partition).0, expected);
}

#[test]
fn nothing_at_or_past_an_open_transaction_is_cleaned() {
    use TxnOp::*;
    let dir = tempfile::tempdir().expect("tempdir");
    let (_storage, partition) = open_txn_partition(dir.path());
    let mut ops: Vec<TxnOp> = (0..30u16).map(|i| Plain((i % 3) as u8, Some(i))).collect();
    ops.push(Data(1, 0, Some(100)));
    ops.extend((30..60u16).map(|i| Plain((i % 3) as u8, Some(i))));
    append_ops(&partition, &ops);
    let raw = raw_view(&partition);
    let (before, stable) = committed_view(&partition);
    assert_eq!(stable, 30);
    let report = partition.clean(NOW, LIMITS).expect("clean");
    assert_eq!(report.passes, 1, "the segments below the LSO are cleaned");
    let after = raw_view(&partition);
    let kept_above: Seen = raw.iter().filter(|(o, ..)| *o >= stable).cloned().collect();
    assert_eq!(
        after
            .iter()
            .filter(|(o, ..)| *o >= stable)
            .cloned()
            .collect::<Seen>(),
        kept_above,
        "records at or past the LSO are untouched"
    );
    assert!(after.len() < raw.len());
    assert_eq!(
        committed_view(&partition),
        (latest_of(&before, false), stable)
    );
    // The commit ends it: the next pass compacts across it, the committed value of key 0
    // counts like any.
    append_ops(&partition, &[End(1, true)]);
    let (committed, stable) = committed_view(&partition);
    assert_eq!(stable, partition.high_watermark());
    partition.clean(NOW + 1, LIMITS).expect("clean");
    assert_eq!(committed_view(&partition).0, latest_of(&committed, false));
    assert_eq!(raw_view(&partition), latest_of(&committed, false));
}

fn txn_ops_strategy() -> impl Strategy<Value = (Vec<TxnOp>, bool)> {
    let op = prop_oneof![
        3 => (0u8..8, prop::option::weighted(0.85, 0u16..500)).prop_map(|(k, v)| TxnOp::Plain(k, v)),
        4 => (1i64..4, 0u8..8, prop::option::weighted(0.85, 0u16..500))
            .prop_map(|(p, k, v)| TxnOp::Data(p, k, v)),
        2 => (1i64..4, any::<bool>()).prop_map(|(p, c)| TxnOp::End(p, c)),
    ];
    (prop::collection::vec(op, 1..120), any::<bool>())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_pass_keeps_the_committed_view_of_interleaved_transactions(
        (ops, end_all) in txn_ops_strategy()
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (storage, partition) = open_txn_partition(dir.path());
        append_ops(&partition, &ops);
        if end_all {
            let ends: Vec<TxnOp> = (1..4).map(|p| TxnOp::End(p, p % 2 == 0)).collect();
            append_ops(&partition, &ends);
        }
        let raw = raw_view(&partition);
        let (before, stable) = committed_view(&partition);
        partition.clean(NOW, LIMITS).expect("clean");
        let (after, after_stable) = committed_view(&partition);
        prop_assert_eq!(after_stable, stable);
        if end_all {
            prop_assert_eq!(&after, &latest_of(&before, false));
            prop_assert_eq!(raw_view(&partition), latest_of(&before, false));
        } else {
            // Nothing invented, every key's latest committed record kept, nothing at or past
            // the LSO touched.
            for seen in &after {
                prop_assert!(before.contains(seen), "invented {:?}", seen);
            }
            for seen in latest_of(&before, false) {
                prop_assert!(after.contains(&seen), "lost {:?}", seen);
            }
            let above = |seen: &Seen| -> Seen {
                seen.iter().filter(|(o, ..)| *o >= stable).cloned().collect()
            };
            prop_assert_eq!(above(&raw_view(&partition)), above(&raw));
        }
        partition.clean(NOW + 2 * DAY_MS, LIMITS).expect("clean");
        let settled = committed_view(&partition);
        if end_all {
            // Everything was cleanable: tombstones and unneeded markers are gone.
            assert_markers_needed(&partition);
            prop_assert_eq!(&settled.0, &latest_of(&before, true));
        }
        // A restart reads the same log back.
        drop(partition);
        drop(storage);
        let (_storage, partition) = open_txn_partition(dir.path());
        prop_assert_eq!(committed_view(&partition), settled);
    }
}

#[test]
fn a_power_loss_during_a_pass_over_transactions_keeps_the_committed_view() {
    use TxnOp::*;
    // A committed value no later record replaces: its marker must stay.
    let mut ops = vec![Data(2, 9, Some(999)), End(2, true)];
    for round in 0..6u16 {
        for key in 0..4u8 {
            ops.push(Data(1, key, Some(round * 10 + u16::from(key))));
            ops.push(Data(2, key, Some(500 + round * 10 + u16::from(key))));
            ops.push(Plain(key + 4, Some(round)));
        }
        ops.push(End(1, round % 3 != 1));
        ops.push(End(2, round % 2 == 0));
    }
    let open = |disk: &SimDisk| {
        let options = StorageOptions {
            fs: disk.fs(),
            max_open_files: 64,
        };
        let storage = Storage::open_with(Path::new("/data"), options).expect("open");
        storage.open_topic("t", 1, txn_config()).expect("topic");
        let partition = storage.partition("t", 0).expect("partition");
        (storage, partition)
    };
    // The pass that crashes: the first (aborted records go) or the second (markers go).
    for crashing in [0, 1] {
        let mut step = 0;
        loop {
            let disk = SimDisk::new(step + 1);
            let (storage, partition) = open(&disk);
            append_ops(&partition, &ops);
            partition.sync_all_written().expect("sync");
            let (before, _) = committed_view(&partition);
            let expected = latest_of(&before, false);
            if crashing == 1 {
                partition.clean(NOW, LIMITS).expect("first pass");
            }
            disk.crash_after(step);
            let outcome = partition.clean(NOW + DAY_MS * crashing, LIMITS);
            let crashed = !disk.crash_pending();
            disk.disarm();
            disk.crash();
            std::mem::forget(partition);
            std::mem::forget(storage);
            let (_storage, partition) = open(&disk);
            let (seen, _) = committed_view(&partition);
            for kept in &expected {
                assert!(
                    seen.contains(kept),
                    "pass {crashing} step {step}: lost {kept:?}"
                );
            }
            for record in &seen {
                assert!(
                    before.contains(record),
                    "pass {crashing} step {step}: {record:?}"
                );
            }
            partition
                .clean(NOW + DAY_MS * 2, LIMITS)
                .expect("clean after recovery");
            assert_eq!(
                committed_view(&partition).0,
                expected,
                "pass {crashing} step {step}"
            );
            // Past every horizon: only the markers still needed are left.
            partition.clean(NOW + DAY_MS * 4, LIMITS).expect("clean");
            assert_markers_needed(&partition);
            assert_eq!(committed_view(&partition).0, expected);
            if !crashed {
                outcome.expect("a pass with no crash succeeds");
                assert!(step > 3, "the pass made only {step} changes");
                break;
            }
            step += 1;
        }
    }
}
