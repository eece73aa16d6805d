//! The property the cargo-fuzz target `segment_recovery` (`fuzz/` at the repository root) and
//! the corpus replay in `cargo test` check on arbitrary bytes laid out as a partition directory:
//! opening it either fails with an error or yields a log of dense, CRC-valid batches from the
//! log start to the high watermark; a record appended then survives a close and a reopen, and
//! the reopen never fails.
//!
//! Input layout: byte 0 holds flags (bit 0: an offset index follows, its length in 8-byte
//! entries in byte 1; bit 1: reseal every batch header found so mutations reach past the CRC;
//! bit 2: a `clean-shutdown` marker with the offset in byte 2; bit 3: the index bytes are also
//! the time index); the rest is segment `00000000000000000000.log`.
//!
//! Invariants: every check runs in its own directory under the system temp dir, removed after.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use tributary_api::batch::{
    BATCH_HEADER_LEN, BatchHeader, Record, VerifiedBatch, build_batch, reseal,
};

use super::{LogConfig, Storage};

const TOPIC: &str = "t";

/// Lays `data` out as partition 0 of topic `t`, recovers it and checks the result.
pub fn check_segment_recovery(data: &[u8]) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let root = std::env::temp_dir().join(format!(
        "tributary-recovery-check-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&root);
    write_partition(&root, data);
    check_directory(&root);
    let _ = std::fs::remove_dir_all(&root);
}

fn write_partition(root: &Path, data: &[u8]) {
    let flags = data.first().copied().unwrap_or(0);
    let mut rest = data.get(3..).unwrap_or_default();
    let mut index: &[u8] = &[];
    if flags & 1 != 0 {
        let len = (usize::from(data.get(1).copied().unwrap_or(0)) * 8).min(rest.len());
        (index, rest) = rest.split_at(len);
    }
    let mut log = rest.to_vec();
    if flags & 2 != 0 {
        reseal_all(&mut log);
    }
    let dir = root.join(TOPIC).join("0");
    std::fs::create_dir_all(&dir).expect("partition dir");
    let file = |extension: &str| dir.join(format!("{:020}.{extension}", 0));
    std::fs::write(file("log"), &log).expect("write segment");
    if flags & 1 != 0 {
        std::fs::write(file("index"), index).expect("write index");
    }
    if flags & 8 != 0 {
        std::fs::write(file("timeindex"), index).expect("write time index");
    }
    if flags & 4 != 0 {
        let offset = data.get(2).copied().unwrap_or(0);
        std::fs::write(dir.join("clean-shutdown"), offset.to_string()).expect("write marker");
    }
}

/// Fixes the length-prefixed batches of `log` in place: each header whose length fits gets its
/// CRC recomputed (a damaged header ends the walk).
fn reseal_all(log: &mut [u8]) {
    let mut at = 0;
    while let Ok(header) = BatchHeader::parse(&log[at..]) {
        let Some(end) = at
            .checked_add(header.total_len)
            .filter(|end| *end <= log.len())
        else {
            break;
        };
        reseal(&mut log[at..end]);
        at = end;
    }
}

fn check_directory(root: &Path) {
    let Some(before) = open_and_read(root) else {
        return; // refused with an error: a valid outcome for a damaged directory
    };
    let (high_watermark, bytes) = before;
    // Append one record, close, reopen: the reopen never fails and loses nothing.
    {
        let storage = Storage::open(root).expect("reopen the storage");
        storage
            .open_topic(TOPIC, 1, LogConfig::default())
            .expect("a recovered partition opens again");
        let partition = storage.partition(TOPIC, 0).expect("partition");
        let batch = build_batch(&[Record {
            value: Some(Bytes::from_static(b"after recovery")),
            ..Record::default()
        }]);
        let info = partition.append(&batch, 0).expect("append after recovery");
        assert_eq!(
            info.base_offset, high_watermark,
            "append did not land at the watermark"
        );
        storage.close().expect("close");
    }
    let (after_watermark, after_bytes) =
        open_and_read(root).expect("a directory the broker wrote and closed always opens");
    assert_eq!(after_watermark, high_watermark + 1);
    assert!(
        after_bytes.starts_with(&bytes),
        "recovered records changed on reopen"
    );
}

/// Opens the directory; returns the high watermark and the log's bytes from its start, after
/// checking every batch is whole, CRC-valid and dense. `None` when opening is refused.
fn open_and_read(root: &Path) -> Option<(i64, Vec<u8>)> {
    let storage = Storage::open(root).expect("the storage directory opens");
    if storage.open_topic(TOPIC, 1, LogConfig::default()).is_err() {
        return None;
    }
    let partition = storage.partition(TOPIC, 0).expect("partition");
    let log_start = partition.log_start_offset();
    let high_watermark = partition.high_watermark();
    assert!(
        log_start <= high_watermark,
        "log start {log_start} above {high_watermark}"
    );
    let mut next = log_start;
    let mut all = Vec::new();
    while next < high_watermark {
        let read = partition
            .read(next, 1 << 20)
            .expect("read below the watermark");
        let bytes = read.to_bytes().expect("read the slices");
        assert!(
            !bytes.is_empty(),
            "no batch at {next} below the watermark {high_watermark}"
        );
        let mut at = 0;
        while at < bytes.len() {
            let header = BatchHeader::parse(&bytes[at..]).expect("a whole batch header");
            assert!(header.total_len >= BATCH_HEADER_LEN);
            let end = at + header.total_len;
            let batch = VerifiedBatch::verify(Bytes::copy_from_slice(&bytes[at..end]))
                .expect("recovery left only CRC-valid batches");
            let header = batch.header();
            // The first batch may hold `next` inside it; the ones after start where it ended.
            assert!(
                header.base_offset <= next && header.last_offset() >= next,
                "offset {next} is not in the batch read for it"
            );
            next = header.last_offset() + 1;
            at = end;
        }
        all.extend_from_slice(&bytes);
    }
    assert_eq!(next, high_watermark, "the log ends off the watermark");
    storage.close().expect("close");
    Some((high_watermark, all))
}

#[cfg(test)]
#[path = "check_seeds.rs"]
mod seeds;
