//! A broker with topics, committed offsets, retry and DLQ topics and queues in two vhosts,
//! rendered the way `/metrics` renders it (recorder page plus scrape-time families), parsed
//! and checked in-process.

use std::sync::Arc;

use bytes::Bytes;
use tributary_api::batch::{Record, build_batch};
use tributary_api::{CommittedOffset, QueueOptions, TopicPartition, TopicSettings};

use super::*;
use crate::broker::{Broker, BrokerSettings};
use crate::telemetry::{self, compat, exposition};

fn records(count: usize) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|at| Record {
            key: None,
            value: Some(Bytes::from(format!("m{at}"))),
            timestamp: 1_700_000_000_000,
            headers: Vec::new(),
        })
        .collect();
    build_batch(&records)
}

struct Fixture {
    _dir: tempfile::TempDir,
    broker: Arc<Broker>,
    config: Config,
}

/// Topic `orders` (2 partitions: 5 and 3 records), group `billing` committed at 2 on
/// partition 0, `%RETRY%billing` (1 record), `%DLQ%billing` (2 records), queue `jobs` in `/`
/// with 3 messages, one delivered, and queue `mail` in vhost `shop` with 1.
async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker = Broker::open(BrokerSettings::new(dir.path())).expect("open");
    let engine = broker.engine();
    for (topic, partitions) in [("orders", 2), ("%RETRY%billing", 1), ("%DLQ%billing", 1)] {
        engine
            .topics
            .create_topic(topic, partitions, TopicSettings::default())
            .await
            .expect("create");
    }
    for (topic, partition, count) in [
        ("orders", 0, 5),
        ("orders", 1, 3),
        ("%RETRY%billing", 0, 1),
        ("%DLQ%billing", 0, 2),
    ] {
        engine
            .log
            .append(&TopicPartition::new(topic, partition), records(count))
            .await
            .expect("append");
    }
    let committed = CommittedOffset {
        offset: 2,
        metadata: String::new(),
        commit_time: 0,
    };
    engine
        .offsets
        .commit(
            "billing",
            vec![(TopicPartition::new("orders", 0), committed)],
        )
        .await
        .expect("commit");
    let shop_mail = tributary_amqp::vhost::engine_queue_name("shop", "mail");
    for (queue, count) in [("jobs", 3), (shop_mail.as_str(), 1)] {
        engine
            .queues
            .declare_queue(queue, QueueOptions::default())
            .await
            .expect("declare");
        engine
            .queues
            .enqueue(queue, records(count))
            .await
            .expect("enqueue");
    }
    engine.queues.take("jobs", 1).await.expect("take");
    let config = Config {
        data_dir: dir.path().to_owned(),
        ..Config::default()
    };
    Fixture {
        _dir: dir,
        broker,
        config,
    }
}

/// The page `/metrics` serves: the recorder's families (every catalog entry with a sample)
/// followed by the scrape-time families.
fn page(fixture: &Fixture) -> String {
    let recorder = telemetry::prometheus_builder()
        .expect("buckets")
        .build_recorder();
    let handle = recorder.handle();
    metrics::with_local_recorder(&recorder, || {
        telemetry::describe_all();
        metrics::counter!(names::CONNECTIONS_ACCEPTED, "protocol" => "kafka").increment(1);
        metrics::histogram!(names::STORAGE_FSYNC_SECONDS).record(0.002);
    });
    let mut text = handle.render();
    ScrapeState::new(&fixture.broker, &fixture.config).render(&mut text);
    text
}

fn value(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn the_page_is_valid_exposition_with_every_scrape_family() {
    let fixture = fixture().await;
    let text = page(&fixture);
    assert_eq!(exposition::check(&text), Vec::<String>::new(), "{text}");
    assert_eq!(exposition::camel_case_labels(&text), Vec::new(), "{text}");
    for metric in compat::CATALOG {
        assert!(
            text.contains(&format!("\n# TYPE {} ", metric.name)),
            "{} missing from:\n{text}",
            metric.name
        );
    }
    for name in [names::QUEUE_MESSAGES_READY, names::QUEUE_MESSAGES_UNACKED] {
        assert!(text.contains(&format!("# TYPE {name} gauge")), "{name}");
    }
}

#[tokio::test]
async fn kafka_exporter_families_come_from_the_engine() {
    let fixture = fixture().await;
    let text = page(&fixture);
    let expect = [
        (r#"kafka_brokers"#, 1.0),
        (r#"kafka_topic_partitions{topic="orders"}"#, 2.0),
        (
            r#"kafka_topic_partition_current_offset{topic="orders",partition="0"}"#,
            5.0,
        ),
        (
            r#"kafka_topic_partition_current_offset{topic="orders",partition="1"}"#,
            3.0,
        ),
        (
            r#"kafka_topic_partition_oldest_offset{topic="orders",partition="1"}"#,
            0.0,
        ),
        (
            r#"kafka_consumergroup_current_offset{consumergroup="billing",topic="orders",partition="0"}"#,
            2.0,
        ),
        (
            r#"kafka_consumergroup_lag{consumergroup="billing",topic="orders",partition="0"}"#,
            3.0,
        ),
    ];
    for (series, expected) in expect {
        assert_eq!(value(&text, series), Some(expected), "{series} in:\n{text}");
    }
    // Lag follows new records without a commit: it is read at scrape time.
    let engine = fixture.broker.engine();
    engine
        .log
        .append(&TopicPartition::new("orders", 0), records(4))
        .await
        .expect("append");
    let text = page(&fixture);
    let lag = r#"kafka_consumergroup_lag{consumergroup="billing",topic="orders",partition="0"}"#;
    assert_eq!(value(&text, lag), Some(7.0), "{text}");
    // A deleted topic leaves the next scrape, its group positions too.
    engine.topics.delete_topic("orders").await.expect("delete");
    let text = page(&fixture);
    assert!(!text.contains(r#"topic="orders""#), "{text}");
}

#[tokio::test]
async fn rabbitmq_and_rocketmq_families_come_from_the_engine() {
    let fixture = fixture().await;
    let text = page(&fixture);
    let expect = [
        (
            r#"rabbitmq_queue_messages_ready{vhost="/",queue="jobs"}"#,
            2.0,
        ),
        (
            r#"rabbitmq_queue_messages_unacked{vhost="/",queue="jobs"}"#,
            1.0,
        ),
        (r#"rabbitmq_queue_messages{vhost="/",queue="jobs"}"#, 3.0),
        (
            r#"rabbitmq_queue_messages_ready{vhost="shop",queue="mail"}"#,
            1.0,
        ),
        (r#"rabbitmq_queues"#, 2.0),
        (
            r#"rocketmq_producer_offset{cluster="DefaultCluster",broker="tributary-broker",topic="orders"}"#,
            8.0,
        ),
        (
            r#"rocketmq_topic_retry_offset{cluster="DefaultCluster",broker="tributary-broker",topic="%RETRY%billing"}"#,
            1.0,
        ),
        (
            r#"rocketmq_topic_dlq_offset{cluster="DefaultCluster",broker="tributary-broker",group="billing"}"#,
            2.0,
        ),
        (r#"rabbitmq_disk_space_available_limit_bytes"#, 50_000_000.0),
    ];
    for (series, expected) in expect {
        assert_eq!(value(&text, series), Some(expected), "{series} in:\n{text}");
    }
    let identity = text
        .lines()
        .find(|line| line.starts_with("rabbitmq_identity_info{"))
        .expect("identity");
    for label in [
        "rabbitmq_node=\"tributary@",
        "rabbitmq_cluster=\"tributary@",
        "rabbitmq_cluster_permanent_id=\"rabbitmq-cluster-id-",
        "rabbitmq_endpoint=\"metrics\"",
    ] {
        assert!(identity.contains(label), "{label} in {identity}");
    }
    assert!(value(&text, "process_resident_memory_bytes").is_some_and(|rss| rss > 1e6));
    assert!(value(&text, "rabbitmq_disk_space_available_bytes").is_some_and(|free| free > 0.0));
    // A deleted queue leaves the next scrape.
    fixture
        .broker
        .engine()
        .queues
        .delete_queue("jobs")
        .await
        .expect("delete");
    let text = page(&fixture);
    assert!(!text.contains(r#"queue="jobs""#), "{text}");
    assert_eq!(value(&text, "rabbitmq_queues"), Some(1.0));
}

#[test]
fn every_compat_family_has_one_catalog_entry_and_follows_conventions() {
    for metric in compat::CATALOG {
        let entries = telemetry::all_metrics()
            .filter(|other| other.name == metric.name)
            .count();
        assert_eq!(entries, 1, "{} described {entries} times", metric.name);
        assert_eq!(
            metric.kind == telemetry::MetricKind::Counter,
            metric.name.ends_with("_total"),
            "{}",
            metric.name
        );
        assert!(metric.help.ends_with('.'), "{}", metric.name);
    }
}
