//! Retention, DeleteRecords and object GC on the cloud engine: a maintenance pass moves log
//! starts past what `retention.ms` / `retention.bytes` remove, and deletes from the object store
//! (after the grace period) every object no batch refers to any more, counting both.

use std::time::Duration;

use bytes::Bytes;
use object_store::ObjectStoreExt;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use tributary_api::batch::{Record, build_batch, decode_records};
use tributary_api::{EngineError, LogService, TopicAdmin, TopicPartition, TopicSettings};

use crate::engine::open;
use crate::services::{bucket, connect, fresh_database};

/// A one-record batch stamped `timestamp`.
fn stamped(value: &str, timestamp: i64) -> Bytes {
    build_batch(&[Record {
        key: None,
        value: Some(Bytes::from(value.to_owned())),
        timestamp,
        headers: Vec::new(),
    }])
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

/// The object keys PostgreSQL records for `topic`'s batches, oldest first.
async fn object_keys(client: &tokio_postgres::Client, topic: &str) -> Vec<String> {
    client
        .query(
            "SELECT object_key FROM batches WHERE topic = $1 ORDER BY base_offset",
            &[&topic],
        )
        .await
        .expect("object keys")
        .iter()
        .map(|row| row.get(0))
        .collect()
}

async fn exists(key: &str) -> bool {
    let store = AmazonS3Builder::from_env()
        .with_bucket_name(bucket())
        .build()
        .expect("S3 client");
    match store.head(&Path::from(key)).await {
        Ok(_) => true,
        Err(object_store::Error::NotFound { .. }) => false,
        Err(error) => panic!("HEAD {key}: {error}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_and_delete_records_free_their_objects() {
    let database = fresh_database("retention").await;
    let engine = open(&database, 20).await;
    let log = engine.log();
    let pg = connect(&database).await;
    let now = now_ms();

    // retention.ms: three expired batches (one object each), then a fresh one.
    let aged = TopicPartition::new("aged", 0);
    log.create_topic(
        "aged",
        1,
        TopicSettings {
            retention_ms: Some(60_000),
            ..TopicSettings::default()
        },
    )
    .await
    .expect("create aged");
    for (i, timestamp) in [now - 600_000, now - 300_000, now - 120_000, now]
        .into_iter()
        .enumerate()
    {
        log.append(&aged, stamped(&format!("aged-{i}"), timestamp))
            .await
            .expect("append aged");
    }
    // retention.bytes: five equal batches, room for two.
    let sized = TopicPartition::new("sized", 0);
    let one = stamped("sized-0", now).len() as i64;
    log.create_topic(
        "sized",
        1,
        TopicSettings {
            retention_bytes: Some(2 * one),
            ..TopicSettings::default()
        },
    )
    .await
    .expect("create sized");
    for i in 0..5 {
        log.append(&sized, stamped(&format!("sized-{i}"), now))
            .await
            .expect("append sized");
    }
    // DeleteRecords on a topic retention keeps whole.
    let trimmed = TopicPartition::new("trimmed", 0);
    log.create_topic("trimmed", 1, TopicSettings::default())
        .await
        .expect("create trimmed");
    for i in 0..4 {
        log.append(&trimmed, stamped(&format!("trimmed-{i}"), now))
            .await
            .expect("append trimmed");
    }
    assert_eq!(
        log.delete_records(&trimmed, 2)
            .await
            .expect("delete records"),
        2
    );

    let aged_keys = object_keys(&pg, "aged").await;
    let sized_keys = object_keys(&pg, "sized").await;
    let trimmed_keys = object_keys(&pg, "trimmed").await;
    assert_eq!(
        trimmed_keys.len(),
        2,
        "DeleteRecords removed two coordinate rows"
    );
    for key in aged_keys.iter().chain(&sized_keys) {
        assert!(exists(key).await, "{key} written");
    }

    // A pass with a long grace moves the log starts and only marks the objects.
    let before = engine.stats();
    let pass = log
        .maintain(Duration::from_secs(3_600))
        .await
        .expect("maintain");
    assert_eq!(pass.trimmed_partitions, 2, "{pass:?}");
    assert_eq!(pass.deleted_objects, 0, "within the grace: {pass:?}");
    assert_eq!(log.offsets(&aged).expect("aged").log_start, 3);
    assert_eq!(log.offsets(&sized).expect("sized").log_start, 3);
    assert_eq!(log.offsets(&trimmed).expect("trimmed").log_start, 2);
    assert!(exists(&aged_keys[0]).await, "kept during the grace period");
    let read = log.read(&aged, 0, 1 << 20).await;
    assert!(
        matches!(read, Err(EngineError::OffsetOutOfRange { .. })),
        "{read:?}"
    );
    let kept = log.read(&aged, 3, 1 << 20).await.expect("read kept");
    let values: Vec<_> = decode_records(&kept.data)
        .expect("records")
        .into_iter()
        .map(|stored| stored.record.value.expect("value"))
        .collect();
    assert_eq!(values, vec![Bytes::from_static(b"aged-3")]);

    // After the grace: the 3 + 3 + 2 objects no batch refers to are deleted from the store.
    let pass = log.maintain(Duration::ZERO).await.expect("maintain");
    assert_eq!(pass.deleted_objects, 8, "{pass:?}");
    for key in aged_keys[..3].iter().chain(&sized_keys[..3]) {
        assert!(!exists(key).await, "{key} deleted");
    }
    for key in aged_keys[3..]
        .iter()
        .chain(&sized_keys[3..])
        .chain(&trimmed_keys)
    {
        assert!(exists(key).await, "{key} still referenced, kept");
    }
    let after = engine.stats();
    assert_eq!(after.deleted_objects - before.deleted_objects, 8);
    assert!(after.deleted_object_bytes > before.deleted_object_bytes);
    assert_eq!(after.retention_trims - before.retention_trims, 2);
    let left: i64 = pg
        .query_one("SELECT count(*) FROM objects", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(left, 1 + 2 + 2, "only referenced objects are left");
    // Nothing more to do.
    let idle = log.maintain(Duration::ZERO).await.expect("maintain");
    assert_eq!((idle.trimmed_partitions, idle.deleted_objects), (0, 0));
    engine.close().await;
}
