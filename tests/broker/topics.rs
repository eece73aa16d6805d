//! The engine through the contract traits, as a frontend sees it: topic admin, append, read,
//! waiting, offset lookups, and state that survives reopening the broker.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tributary::broker::{Broker, BrokerSettings};
use tributary_api::batch::{BatchHeader, build_batch, decode_records};
use tributary_api::{
    CommittedOffset, Durability, Engine, EngineError, OffsetQuery, Record, TopicPartition,
    TopicSettings,
};

fn open(dir: &std::path::Path) -> (Arc<Broker>, Engine) {
    let broker = Broker::open(BrokerSettings::new(dir)).expect("broker opens");
    let engine = broker.engine();
    (broker, engine)
}

fn batch_of(values: &[&str], timestamp: i64) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .map(|v| Record {
            key: None,
            value: Some(Bytes::copy_from_slice(v.as_bytes())),
            timestamp,
            headers: Vec::new(),
        })
        .collect();
    build_batch(&records)
}

fn values_in(data: &Bytes) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let mut rest = data.clone();
    while !rest.is_empty() {
        let header = BatchHeader::parse(&rest).expect("batch header");
        let batch = rest.split_to(header.total_len);
        for stored in decode_records(&batch).expect("records decode") {
            let value = stored.record.value.expect("value");
            out.push((stored.offset, String::from_utf8(value.to_vec()).unwrap()));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_are_created_appended_read_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, engine) = open(dir.path());
    let created = engine
        .topics
        .create_topic("orders", 3, TopicSettings::default())
        .await
        .unwrap();
    assert_eq!(created.partitions, 3);
    assert_ne!(created.id, [0u8; 16]);
    assert!(matches!(
        engine
            .topics
            .create_topic("orders", 1, TopicSettings::default())
            .await,
        Err(EngineError::TopicExists(_))
    ));

    let tp = TopicPartition::new("orders", 1);
    let first = engine
        .log
        .append(&tp, batch_of(&["a", "b"], 1_000))
        .await
        .unwrap();
    let second = engine
        .log
        .append(&tp, batch_of(&["c"], 2_000))
        .await
        .unwrap();
    assert_eq!((first.base_offset, first.last_offset), (0, 1));
    assert_eq!((second.base_offset, second.last_offset), (2, 2));

    // Reading from the middle of a batch returns the whole batch that contains the offset.
    let read = engine.log.read(&tp, 1, 1 << 20).await.unwrap();
    assert_eq!(read.offsets.high_watermark, 3);
    assert_eq!(
        values_in(&read.data),
        vec![(0, "a".into()), (1, "b".into()), (2, "c".into())]
    );
    assert!(
        engine
            .log
            .read(&tp, 3, 1 << 20)
            .await
            .unwrap()
            .data
            .is_empty()
    );
    assert!(matches!(
        engine.log.read(&tp, 4, 1 << 20).await,
        Err(EngineError::OffsetOutOfRange { .. })
    ));
    assert!(matches!(
        engine
            .log
            .append(&TopicPartition::new("orders", 3), batch_of(&["x"], 1))
            .await,
        Err(EngineError::UnknownPartition { .. })
    ));

    let at = engine
        .log
        .find_offset(&tp, OffsetQuery::AtOrAfter(1_500))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(at.offset, 2);
    let latest = engine
        .log
        .find_offset(&tp, OffsetQuery::Latest)
        .await
        .unwrap();
    assert_eq!(latest.unwrap().offset, 3);

    let group_tp = TopicPartition::new("orders", 1);
    engine
        .offsets
        .commit(
            "billing",
            vec![(
                group_tp.clone(),
                CommittedOffset {
                    offset: 2,
                    metadata: "m".into(),
                    commit_time: 5,
                },
            )],
        )
        .await
        .unwrap();

    let altered = engine
        .topics
        .alter_settings(
            "orders",
            TopicSettings {
                retention_ms: Some(60_000),
                durability: Some(Durability::Never),
                ..TopicSettings::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(altered.settings.retention_ms, 60_000);
    assert_eq!(altered.settings.durability, Durability::Never);
    engine.topics.create_partitions("orders", 5).await.unwrap();

    broker.close().unwrap();
    drop(engine);
    drop(broker);

    let (broker, engine) = open(dir.path());
    let described = engine.topics.describe_topic("orders").unwrap();
    assert_eq!(described.partitions, 5);
    assert_eq!(described.id, created.id);
    assert_eq!(described.settings.retention_ms, 60_000);
    let read = engine.log.read(&tp, 0, 1 << 20).await.unwrap();
    assert_eq!(values_in(&read.data).len(), 3);
    let committed = engine.offsets.fetch("billing", &group_tp).await.unwrap();
    assert_eq!(committed.map(|c| c.offset), Some(2));
    let next = engine
        .log
        .append(&TopicPartition::new("orders", 4), batch_of(&["new"], 9))
        .await
        .unwrap();
    assert_eq!(next.base_offset, 0);

    engine.topics.delete_topic("orders").await.unwrap();
    assert!(engine.topics.describe_topic("orders").is_err());
    assert_eq!(
        engine.offsets.fetch("billing", &group_tp).await.unwrap(),
        None
    );
    // A topic of the same name starts empty again.
    engine
        .topics
        .create_topic("orders", 1, TopicSettings::default())
        .await
        .unwrap();
    let fresh = engine
        .log
        .offsets(&TopicPartition::new("orders", 0))
        .unwrap();
    assert_eq!(fresh.high_watermark, 0);
    broker.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_wakes_on_append_and_times_out_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, engine) = open(dir.path());
    engine
        .topics
        .create_topic("events", 1, TopicSettings::default())
        .await
        .unwrap();
    let tp = TopicPartition::new("events", 0);

    let started = Instant::now();
    let waited = engine
        .log
        .wait_for(&tp, 0, Duration::from_millis(200))
        .await
        .unwrap();
    assert!(!waited);
    assert!(started.elapsed() >= Duration::from_millis(190));

    let waiter = {
        let log = engine.log.clone();
        let tp = tp.clone();
        tokio::spawn(async move { log.wait_for(&tp, 0, Duration::from_secs(10)).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    let started = Instant::now();
    engine
        .log
        .append(&tp, batch_of(&["wake"], 1))
        .await
        .unwrap();
    assert!(waiter.await.unwrap().unwrap());
    assert!(started.elapsed() < Duration::from_secs(5));
    broker.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_engine_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (broker, engine) = open(dir.path());
    for name in ["", "a/b", "queue:x"] {
        assert!(matches!(
            engine
                .topics
                .create_topic(name, 1, TopicSettings::default())
                .await,
            Err(EngineError::InvalidName(_))
        ));
    }
    assert!(matches!(
        engine
            .topics
            .create_topic("t", 0, TopicSettings::default())
            .await,
        Err(EngineError::InvalidPartitions { .. })
    ));
    let bad = TopicSettings {
        segment_bytes: Some(10),
        ..TopicSettings::default()
    };
    assert!(matches!(
        engine.topics.create_topic("t", 1, bad).await,
        Err(EngineError::InvalidSetting { .. })
    ));
    engine
        .topics
        .create_topic("t", 1, TopicSettings::default())
        .await
        .unwrap();
    assert!(matches!(
        engine.topics.create_partitions("t", 1).await,
        Err(EngineError::InvalidPartitions { .. })
    ));
    let tp = TopicPartition::new("t", 0);
    let mut corrupt = batch_of(&["x"], 1).to_vec();
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x55;
    assert!(matches!(
        engine.log.append(&tp, Bytes::from(corrupt)).await,
        Err(EngineError::CorruptBatch(_))
    ));
    assert!(matches!(
        engine.log.append(&tp, Bytes::from_static(b"short")).await,
        Err(EngineError::CorruptBatch(_))
    ));
    // Nothing of the refused appends is visible.
    assert_eq!(engine.log.offsets(&tp).unwrap().high_watermark, 0);
    broker.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fixed_partition_count_refuses_growth_survives_reopen_and_goes_with_the_topic() {
    let dir = tempfile::tempdir().unwrap();
    let holder = "the AMQP stream 'fixed' in vhost '/'";
    {
        let (_broker, engine) = open(dir.path());
        let topics = &engine.topics;
        topics
            .create_topic("fixed", 1, TopicSettings::default())
            .await
            .unwrap();
        // The count must be the one the holder reads.
        assert!(matches!(
            topics.fix_partition_count("fixed", 2, holder).await,
            Err(EngineError::InvalidPartitions {
                requested: 2,
                current: 1
            })
        ));
        let fixed = topics
            .fix_partition_count("fixed", 1, holder)
            .await
            .unwrap();
        assert_eq!(fixed.fixed_by.as_deref(), Some(holder));
        let refused = topics.create_partitions("fixed", 4).await.unwrap_err();
        assert!(
            matches!(&refused, EngineError::PartitionCountFixed { topic, partitions: 1, .. } if topic == "fixed"),
            "{refused:?}"
        );
        assert!(refused.to_string().contains(holder), "{refused}");
        assert_eq!(topics.describe_topic("fixed").unwrap().partitions, 1);
    }
    let (_broker, engine) = open(dir.path());
    let topics = &engine.topics;
    let reopened = topics.describe_topic("fixed").unwrap();
    assert_eq!(reopened.fixed_by.as_deref(), Some(holder));
    assert!(matches!(
        topics.create_partitions("fixed", 2).await,
        Err(EngineError::PartitionCountFixed { .. })
    ));
    topics.delete_topic("fixed").await.unwrap();
    let again = topics
        .create_topic("fixed", 1, TopicSettings::default())
        .await
        .unwrap();
    assert_eq!(again.fixed_by, None);
    assert_eq!(
        topics
            .create_partitions("fixed", 2)
            .await
            .unwrap()
            .partitions,
        2
    );
}

#[tokio::test]
async fn partition_caps_refuse_creates_and_grows_before_any_file_exists() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = BrokerSettings::new(dir.path());
    settings.partition_limits = tributary::broker::PartitionLimits {
        per_topic: 4,
        per_broker: 6,
    };
    let broker = Broker::open(settings).expect("broker opens");
    let topics = broker.engine().topics;
    let refused = topics
        .create_topic("wide", 5, TopicSettings::default())
        .await
        .expect_err("5 > 4 per topic");
    assert!(
        matches!(&refused, EngineError::PartitionLimit { wanted: 5, limit: 4, setting, .. } if *setting == "limits.max_partitions_per_topic"),
        "{refused}"
    );
    assert!(!dir.path().join("logs").join("wide").exists());
    topics
        .create_topic("a", 4, TopicSettings::default())
        .await
        .unwrap();
    let refused = topics
        .create_topic("b", 3, TopicSettings::default())
        .await
        .expect_err("4 + 3 > 6 per broker");
    assert!(
        matches!(&refused, EngineError::PartitionLimit { wanted: 7, limit: 6, setting, .. } if *setting == "limits.max_partitions"),
        "{refused}"
    );
    assert!(topics.describe_topic("b").is_err());
    topics
        .create_topic("b", 2, TopicSettings::default())
        .await
        .unwrap();
    // Growing counts only the new partitions against the broker cap.
    assert!(matches!(
        topics.create_partitions("b", 3).await,
        Err(EngineError::PartitionLimit { wanted: 7, .. })
    ));
    assert_eq!(topics.describe_topic("b").unwrap().partitions, 2);
    assert!(matches!(
        topics.check_partition_limits("a", 5),
        Err(EngineError::PartitionLimit { .. })
    ));
    topics.check_partition_limits("a", 4).unwrap();
    topics.delete_topic("a").await.unwrap();
    topics.create_partitions("b", 4).await.unwrap();
    broker.close().unwrap();
}
