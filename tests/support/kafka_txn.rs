//! A librdkafka transactional producer for tests (shared by the Kafka and interop suites).
#![allow(dead_code)] // Each suite uses part of it.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// How long a transaction step or a read may take.
pub(crate) const WAIT: Duration = Duration::from_secs(30);

pub(crate) fn transactional_producer(bootstrap: &str, id: &str) -> BaseProducer {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("transactional.id", id)
        .set("transaction.timeout.ms", "60000")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "20000")
        .create()
        .expect("producer");
    producer.init_transactions(WAIT).expect("init_transactions");
    producer
}

/// Makes `topic` exist (a Metadata request auto-creates it) before a transaction names it.
pub(crate) fn create_topic(bootstrap: &str, topic: &str) {
    let client: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("allow.auto.create.topics", "true")
        .create()
        .expect("client");
    let deadline = Instant::now() + WAIT;
    loop {
        let metadata = client
            .fetch_metadata(Some(topic), Duration::from_secs(5))
            .expect("metadata");
        if metadata
            .topics()
            .iter()
            .any(|t| t.name() == topic && t.error().is_none() && !t.partitions().is_empty())
        {
            return;
        }
        assert!(Instant::now() < deadline, "topic {topic} was not created");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Sends `values` to partition 0 of `topic` and waits until every one is acknowledged.
pub(crate) fn send(producer: &BaseProducer, topic: &str, values: &[String]) {
    for value in values {
        producer
            .send(BaseRecord::<(), _>::to(topic).partition(0).payload(value))
            .unwrap_or_else(|(err, _)| panic!("send {value}: {err}"));
    }
    producer.flush(WAIT).expect("flush");
}

pub(crate) fn values(prefix: &str, count: usize) -> Vec<String> {
    (0..count).map(|i| format!("{prefix}-{i}")).collect()
}
