//! Opening the cloud engine in-process for the engine-level tests.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tributary::broker::{LogDefaults, PartitionLimits};
use tributary::cloud::{CloudEngine, CloudSettings, ObjectsUrl};
use tributary_api::batch::{Record, build_batch};

use crate::services::{bucket, unique};

pub(crate) fn settings(database: &str, bucket: &str, flush_ms: u64) -> CloudSettings {
    CloudSettings {
        metadata_url: database.to_owned(),
        objects: ObjectsUrl::parse(&format!("s3://{bucket}/{}", unique("engine")))
            .expect("objects url"),
        broker_id: 1,
        advertised_host: "127.0.0.1".to_owned(),
        internal_addr: "127.0.0.1:0".parse().expect("address"),
        lease: Duration::from_secs(10),
        lease_renew: Duration::from_secs(2),
        flush_interval: Duration::from_millis(flush_ms),
        flush_bytes: 8 << 20,
        read_cache_bytes: 16 << 20,
        maintenance_interval: Duration::from_secs(3_600),
        object_gc_grace: Duration::from_secs(600),
        merge_object_bytes: 1 << 20,
        merge_min_age: Duration::from_secs(60),
        log_defaults: LogDefaults::default(),
        partition_limits: PartitionLimits::default(),
    }
}

/// An engine on `database` writing under a fresh prefix of the test bucket.
pub(crate) async fn open(database: &str, flush_ms: u64) -> Arc<CloudEngine> {
    CloudEngine::open(settings(database, &bucket(), flush_ms))
        .await
        .expect("open the cloud engine")
}

/// A batch of `count` records `<tag>-<i>`.
pub(crate) fn batch(tag: &str, count: usize) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            key: Some(Bytes::from(format!("{tag}-key-{i}"))),
            value: Some(Bytes::from(format!("{tag}-{i}"))),
            timestamp: 1_000 + i as i64,
            headers: Vec::new(),
        })
        .collect();
    build_batch(&records)
}
