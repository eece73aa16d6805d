//! Shared set-up for the broker tests: real redb files, real storage, restarts by reopening.

#![allow(dead_code, unreachable_pub)]

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tributary::broker::metadata::MetaStore;
use tributary::broker::queues::Queues;
use tributary::storage::{LogConfig, Storage};
use tributary_api::batch::build_batch;
use tributary_api::{Delivery, Durability, QueueOptions, Record};

/// One broker's worth of state on disk, opened.
pub struct Node {
    pub dir: PathBuf,
    pub storage: Arc<Storage>,
    pub meta: Arc<MetaStore>,
    pub queues: Arc<Queues>,
}

pub fn log_config(segment_bytes: u64) -> LogConfig {
    LogConfig {
        segment_bytes,
        durability: Durability::Always,
        ..LogConfig::default()
    }
}

impl Node {
    pub fn open(dir: &Path, config: LogConfig) -> Node {
        let storage = Arc::new(Storage::open(&dir.join("logs")).unwrap());
        let meta = MetaStore::open(&dir.join("metadata.redb")).unwrap();
        let queues =
            Queues::open(storage.clone(), meta.clone(), dir.join("queues"), config).unwrap();
        Node {
            dir: dir.to_owned(),
            storage,
            meta,
            queues,
        }
    }

    pub fn journal_dir(&self) -> PathBuf {
        self.dir.join("queues")
    }
}

pub fn durable() -> QueueOptions {
    QueueOptions {
        durable: true,
        durability: None,
        ..Default::default()
    }
}

pub fn batch(values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .map(|v| Record {
            key: None,
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            timestamp: 1_700_000_000_000,
            headers: vec![(Bytes::from_static(b"h"), Some(Bytes::from_static(b"v")))],
        })
        .collect();
    build_batch(&records)
}

/// (value, id, redelivered) of each delivery.
pub fn summary(deliveries: &[Delivery]) -> Vec<(String, u64, bool)> {
    deliveries
        .iter()
        .map(|d| {
            let value = d.record.value.clone().unwrap_or_default();
            (
                String::from_utf8_lossy(&value).into_owned(),
                d.id,
                d.redelivered,
            )
        })
        .collect()
}

pub fn s(value: &str, id: u64, redelivered: bool) -> (String, u64, bool) {
    (value.to_owned(), id, redelivered)
}
