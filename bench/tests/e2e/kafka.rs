//! Kafka: the topic's high watermarks (records stored) against the reported publish rates.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use tributary_bench::driver::Protocol;

#[test]
fn tiny_workload_over_kafka_matches_the_stored_offsets() {
    let workload = crate::tiny_workload();
    let broker = crate::start_tributary(&workload);
    let address = broker.address(Protocol::Kafka).to_owned();
    let output = crate::runtime().block_on(crate::run(
        &workload,
        Protocol::Kafka,
        &address,
        "h19-kafka",
    ));
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &address)
        .set("group.id", "h19-count")
        .create()
        .expect("consumer");
    let topic = &output.topics[0];
    let stored: i64 = (0..workload.partitions_per_topic as i32)
        .map(|p| {
            let (low, high) = consumer
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            high - low
        })
        .sum();
    crate::check(&output, stored as u64);
}
