//! The write path's promises: one PUT and one PostgreSQL transaction per flush whatever the
//! number of partitions, rows per batch, nothing acknowledged when a PUT or commit fails, a
//! second writer fenced, the schema refused when newer than the binary, offsets in PostgreSQL.

use std::sync::Arc;

use tributary::cloud::{CloudEngine, CloudError};
use tributary_api::batch::{VerifiedBatch, decode_records};
use tributary_api::{
    CommittedOffset, EngineError, LogService, OffsetStore, TopicAdmin, TopicPartition,
    TopicSettings,
};

use crate::engine::{batch, open, settings};
use crate::services::{bucket, connect, fresh_database};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_put_and_one_transaction_per_flush_whatever_the_partition_count() {
    let database = fresh_database("flushes").await;
    let engine = open(&database, 200).await;
    let log = engine.log();
    for partitions in [1u32, 16, 128] {
        let topic = format!("spread-{partitions}");
        log.create_topic(&topic, partitions, TopicSettings::default())
            .await
            .expect("create");
        let before = engine.stats();
        let mut pending = Vec::new();
        for partition in 0..partitions {
            let tp = TopicPartition::new(topic.clone(), partition);
            let verified =
                VerifiedBatch::verify(batch(&format!("p{partition}"), 3)).expect("valid");
            let (outcome, durable) = log.append_verified(&tp, verified).await.expect("append");
            assert_eq!(outcome.base_offset, 0);
            pending.push(durable);
        }
        for durable in pending {
            durable.await.expect("durable");
        }
        let after = engine.stats();
        assert_eq!(after.puts - before.puts, 1, "{partitions} partitions: PUTs");
        assert_eq!(
            after.flush_transactions - before.flush_transactions,
            1,
            "{partitions} partitions: transactions"
        );
        assert_eq!(after.batches - before.batches, u64::from(partitions));
        for partition in 0..partitions {
            let tp = TopicPartition::new(topic.clone(), partition);
            let read = log.read(&tp, 0, 1 << 20).await.expect("read");
            let records = decode_records(&read.data).expect("records");
            let values: Vec<_> = records
                .iter()
                .map(|r| (r.offset, r.record.value.clone().expect("value")))
                .collect();
            let expected: Vec<_> = (0..3)
                .map(|i| (i as i64, bytes::Bytes::from(format!("p{partition}-{i}"))))
                .collect();
            assert_eq!(values, expected, "partition {partition}");
        }
    }
    // One coordinate row per batch, never per record.
    let client = connect(&database).await;
    let rows: i64 = client
        .query_one("SELECT count(*) FROM batches", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, 1 + 16 + 128);
    engine.close().await;
    // After the last flush an append is refused at once, not left waiting.
    let tp = TopicPartition::new("spread-1", 0);
    let late = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        log.append(&tp, batch("late", 1)),
    )
    .await
    .expect("refused without waiting");
    assert!(matches!(late, Err(EngineError::ShuttingDown)), "{late:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_put_refuses_every_batch_of_the_flush_and_acknowledges_nothing() {
    let database = fresh_database("failed_put").await;
    // Same database, a bucket that does not exist: every PUT fails.
    let mut broken = settings(&database, &bucket(), 50);
    broken.objects.bucket = "no-such-bucket-for-tributary".to_owned();
    let engine = CloudEngine::open(broken).await.expect("open");
    let log = engine.log();
    log.create_topic("t", 4, TopicSettings::default())
        .await
        .expect("create");
    let mut pending = Vec::new();
    for partition in 0..4 {
        let tp = TopicPartition::new("t", partition);
        pending.push(
            log.append_pipelined(&tp, batch("x", 2))
                .await
                .expect("accepted"),
        );
    }
    for (_, durable) in pending {
        let failure = durable
            .await
            .expect_err("a failed PUT must not be acknowledged");
        assert!(
            matches!(failure, EngineError::Storage(_)),
            "retriable storage error expected, got {failure:?}"
        );
    }
    for partition in 0..4 {
        let tp = TopicPartition::new("t", partition);
        assert_eq!(log.offsets(&tp).expect("offsets").high_watermark, 0);
        assert!(
            log.read(&tp, 0, 1 << 20)
                .await
                .expect("read")
                .data
                .is_empty()
        );
    }
    let stats = engine.stats();
    assert!(stats.failed_flushes >= 1);
    assert_eq!(stats.flush_transactions, 0, "nothing committed");
    // The numbering fell back to the committed high watermark: no offset was skipped.
    let tp = TopicPartition::new("t", 3);
    let (again, durable) = log
        .append_pipelined(&tp, batch("z", 1))
        .await
        .expect("accepted");
    assert_eq!(again.base_offset, 0);
    assert!(durable.await.is_err());
    engine.close().await;
    let healthy = open(&database, 50).await;
    let tp = TopicPartition::new("t", 0);
    let outcome = healthy
        .log()
        .append(&tp, batch("y", 1))
        .await
        .expect("append");
    assert_eq!(outcome.base_offset, 0);
    healthy.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_of_a_partition_is_fenced() {
    let database = fresh_database("fenced").await;
    let first = open(&database, 20).await;
    first
        .log()
        .create_topic("shared", 1, TopicSettings::default())
        .await
        .expect("create");
    // The second engine loads the partition at high watermark 0, as the first has it.
    let second = open(&database, 20).await;
    let tp = TopicPartition::new("shared", 0);
    first
        .log()
        .append(&tp, batch("a", 2))
        .await
        .expect("first writer");
    let refused = second
        .log()
        .append(&tp, batch("b", 2))
        .await
        .expect_err("the second writer must be fenced");
    assert!(
        refused.to_string().contains("storage failure"),
        "unexpected error {refused}"
    );
    // Only the first writer's batch is in the log.
    let reopened = open(&database, 20).await;
    let read = reopened.log().read(&tp, 0, 1 << 20).await.expect("read");
    let values: Vec<_> = decode_records(&read.data)
        .expect("records")
        .into_iter()
        .map(|r| r.record.value.expect("value"))
        .collect();
    assert_eq!(
        values,
        [bytes::Bytes::from("a-0"), bytes::Bytes::from("a-1")]
    );
    for engine in [first, second, reopened] {
        engine.close().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schema_newer_than_the_binary_is_refused() {
    let database = fresh_database("schema").await;
    open(&database, 20).await.close().await;
    let client = connect(&database).await;
    client
        .execute("INSERT INTO schema_migrations (version) VALUES (999)", &[])
        .await
        .expect("insert");
    let refused = CloudEngine::open(settings(&database, &bucket(), 20))
        .await
        .expect_err("must refuse a newer schema");
    assert!(
        matches!(refused, CloudError::SchemaTooNew { found: 999, .. }),
        "{refused}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumer_offsets_live_in_postgresql() {
    let database = fresh_database("offsets").await;
    let engine = open(&database, 20).await;
    let offsets = engine.offsets();
    let position = |offset| CommittedOffset {
        offset,
        metadata: format!("m{offset}"),
        commit_time: 0,
    };
    let a0 = TopicPartition::new("a", 0);
    let a1 = TopicPartition::new("a", 1);
    offsets
        .commit(
            "g",
            vec![(a0.clone(), position(5)), (a1.clone(), position(7))],
        )
        .await
        .expect("commit");
    offsets
        .commit("g", vec![(a0.clone(), position(6))])
        .await
        .expect("commit");
    engine.close().await;
    // A new engine (a restarted broker) sees the same positions.
    let engine: Arc<CloudEngine> = open(&database, 20).await;
    let offsets = engine.offsets();
    let got = offsets
        .fetch("g", &a0)
        .await
        .expect("fetch")
        .expect("present");
    assert_eq!((got.offset, got.metadata.as_str()), (6, "m6"));
    let group = offsets.fetch_group("g").await.expect("group");
    assert_eq!(
        group
            .iter()
            .map(|(tp, c)| (tp.partition, c.offset))
            .collect::<Vec<_>>(),
        [(0, 6), (1, 7)]
    );
    assert_eq!(offsets.groups().await.expect("groups"), ["g"]);
    assert!(offsets.delete_offset("g", &a1).await.expect("delete"));
    assert_eq!(offsets.delete_group("g").await.expect("delete"), 1);
    assert!(offsets.fetch("g", &a0).await.expect("fetch").is_none());
    engine.close().await;
}
