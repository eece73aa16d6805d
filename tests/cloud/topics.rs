//! Topics shared through PostgreSQL: a topic created, deleted, or deleted and made again
//! through one broker is listed (or no longer listed) by the other broker's Metadata at once
//! (a NOTIFY in the admin transaction; at the next renewal at the latest).

use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::broker::TestBroker;
use crate::cluster::start_broker;
use crate::services::{bucket, fresh_database, unique};

/// Starts `count` brokers over one fresh database and bucket prefix.
pub(crate) async fn cluster(count: u32, hint: &str) -> (Vec<TestBroker>, tempfile::NamedTempFile) {
    let database = fresh_database(hint).await;
    let objects = format!("s3://{}/{}", bucket(), unique(hint));
    let config = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(
        config.path(),
        "[kafka]\ndefault_partitions = 1\n[cluster]\nflush_interval_ms = 50\n",
    )
    .expect("write config");
    let path = config.path().to_str().expect("utf-8").to_owned();
    let brokers = (1..=count)
        .map(|id| start_broker(id, &database, &objects, &path))
        .collect();
    (brokers, config)
}

/// Partition counts by topic, as the Metadata of the broker at `bootstrap` lists them.
fn listed(bootstrap: &str) -> Vec<(String, usize)> {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create()
        .expect("metadata client");
    let metadata = client
        .fetch_metadata(None, Duration::from_secs(10))
        .expect("metadata");
    metadata
        .topics()
        .iter()
        .map(|topic| (topic.name().to_owned(), topic.partitions().len()))
        .collect()
}

/// Waits until `check` holds for what `bootstrap` lists; returns how long it took.
fn until_listed(
    bootstrap: &str,
    what: &str,
    check: impl Fn(&[(String, usize)]) -> bool,
) -> Duration {
    let started = Instant::now();
    loop {
        let topics = listed(bootstrap);
        if check(&topics) {
            return started.elapsed();
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "{what} never seen on {bootstrap}: {topics:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_deleted_and_made_again_through_one_broker_reach_the_other() {
    let (mut brokers, _config) = cluster(2, "topics").await;
    let a = brokers[0].addr("kafka").to_string();
    let b = brokers[1].addr("kafka").to_string();
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &a)
        .create()
        .expect("admin client");
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let topic = "doomed";
    let created = admin
        .create_topics(
            &[NewTopic::new(topic, 3, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .expect("create");
    assert!(created.iter().all(Result::is_ok), "{created:?}");
    let seen = until_listed(&b, "the new topic", |topics| {
        topics.contains(&(topic.to_owned(), 3))
    });

    let deleted = admin
        .delete_topics(&[topic], &options)
        .await
        .expect("delete");
    assert!(deleted.iter().all(Result::is_ok), "{deleted:?}");
    let gone = until_listed(&b, "the deletion", |topics| {
        topics.iter().all(|(name, _)| name != topic)
    });

    // Made again with another partition count: the other broker lists the new topic.
    let again = admin
        .create_topics(
            &[NewTopic::new(topic, 5, TopicReplication::Fixed(1))],
            &options,
        )
        .await
        .expect("create again");
    assert!(again.iter().all(Result::is_ok), "{again:?}");
    let renewed = until_listed(&b, "the topic made again", |topics| {
        topics.contains(&(topic.to_owned(), 5))
    });
    eprintln!(
        "topic changes seen through the other broker after: created {} ms, deleted {} ms, made again {} ms",
        seen.as_millis(),
        gone.as_millis(),
        renewed.as_millis()
    );
}
