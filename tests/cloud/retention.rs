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

/// Every log object under the engine's prefix, by name.
async fn stored_objects(log: &tributary::cloud::CloudLog) -> Vec<String> {
    let mut out = Vec::new();
    for dir in log.objects().log_dirs().await.expect("list dirs") {
        out.extend(
            log.objects()
                .logs_named_before(&dir, None, i64::MAX, usize::MAX)
                .await
                .expect("list objects"),
        );
    }
    out.sort();
    out
}

/// Makes every flush's transaction fail after its PUT (`sleep_s` = 0), or take `sleep_s`.
async fn sabotage_commits(pg: &tokio_postgres::Client, sleep_s: f64) {
    let body = if sleep_s > 0.0 {
        format!("PERFORM pg_sleep({sleep_s}); RETURN NULL;")
    } else {
        "RAISE EXCEPTION 'forced commit failure';".to_owned()
    };
    pg.batch_execute(&format!(
        "CREATE FUNCTION h15m_sabotage() RETURNS trigger AS $$ BEGIN {body} END $$ LANGUAGE plpgsql;
         CREATE TRIGGER h15m_sabotage BEFORE INSERT ON batches
             FOR EACH STATEMENT EXECUTE FUNCTION h15m_sabotage();"
    ))
    .await
    .expect("install the trigger");
}

async fn repair_commits(pg: &tokio_postgres::Client) {
    pg.batch_execute("DROP TRIGGER h15m_sabotage ON batches; DROP FUNCTION h15m_sabotage();")
        .await
        .expect("drop the trigger");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_whose_commit_failed_is_deleted_after_the_grace() {
    let database = fresh_database("orphans").await;
    let engine = open(&database, 20).await;
    let log = engine.log();
    let pg = connect(&database).await;
    let tp = TopicPartition::new("kept", 0);
    log.create_topic("kept", 1, TopicSettings::default())
        .await
        .expect("create");
    log.append(&tp, stamped("first", now_ms()))
        .await
        .expect("append");

    sabotage_commits(&pg, 0.0).await;
    let failed = log.append(&tp, stamped("refused", now_ms())).await;
    assert!(failed.is_err(), "the commit failed: {failed:?}");
    repair_commits(&pg).await;
    log.append(&tp, stamped("second", now_ms()))
        .await
        .expect("append after the repair");

    let stored = stored_objects(&log).await;
    let recorded: Vec<String> = pg
        .query("SELECT key FROM objects ORDER BY key", &[])
        .await
        .expect("objects")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        stored.len(),
        3,
        "the failed flush's PUT left an object: {stored:?}"
    );
    assert_eq!(recorded.len(), 2, "no row refers to it");
    let orphan: Vec<&String> = stored.iter().filter(|k| !recorded.contains(k)).collect();
    assert_eq!(orphan.len(), 1);

    // Within the grace it stays (it could be a flush still committing).
    let pass = log
        .maintain(Duration::from_secs(3_600))
        .await
        .expect("maintain");
    assert_eq!(pass.deleted_uncommitted, 0, "{pass:?}");
    assert_eq!(stored_objects(&log).await, stored);

    tokio::time::sleep(Duration::from_millis(1_100)).await;
    let pass = log
        .maintain(Duration::from_secs(1))
        .await
        .expect("maintain");
    assert_eq!(pass.deleted_uncommitted, 1, "{pass:?}");
    assert!(!exists(orphan[0]).await, "the orphan is gone");
    assert_eq!(
        stored_objects(&log).await,
        recorded,
        "committed objects kept"
    );
    for (offset, value) in [(0, "first"), (1, "second")] {
        let read = log.read(&tp, offset, 1 << 20).await.expect("read");
        let first = decode_records(&read.data).expect("records").remove(0);
        assert_eq!(
            (first.offset, first.record.value),
            (offset, Some(Bytes::from(value)))
        );
    }
    // The sweep resumes after what it checked: nothing listed twice, nothing more deleted.
    let idle = log.maintain(Duration::ZERO).await.expect("maintain");
    assert_eq!(idle.deleted_uncommitted, 0, "{idle:?}");
    assert_eq!(stored_objects(&log).await, recorded);
    engine.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flush_gives_up_an_object_older_than_half_the_grace() {
    let database = fresh_database("orphans-late").await;
    let mut settings = crate::engine::settings(&database, &bucket(), 20);
    settings.object_gc_grace = Duration::from_millis(400);
    let engine = tributary::cloud::CloudEngine::open(settings)
        .await
        .expect("open");
    let log = engine.log();
    let pg = connect(&database).await;
    let tp = TopicPartition::new("slow", 0);
    log.create_topic("slow", 1, TopicSettings::default())
        .await
        .expect("create");
    // The transaction takes longer than half the grace: the GC could already take its object
    // for an orphan, so the flush must not commit it.
    sabotage_commits(&pg, 0.5).await;
    let late = log.append(&tp, stamped("late", now_ms())).await;
    assert!(late.is_err(), "not committed: {late:?}");
    repair_commits(&pg).await;
    let committed: i64 = pg
        .query_one("SELECT count(*) FROM batches", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(committed, 0);
    log.append(&tp, stamped("on time", now_ms()))
        .await
        .expect("append");
    assert_eq!(log.offsets(&tp).expect("offsets").high_watermark, 1);
    engine.close().await;
}
