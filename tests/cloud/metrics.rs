//! The cloud engine's own metrics on `/metrics` of a real broker: after Kafka records went
//! through it and were read back, the PostgreSQL operations (count, hold and pool-wait latency)
//! and the object PUT latency have counted the traffic.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::cluster::{sample, start_broker};
use crate::rocketmq_support::runtime;
use crate::services::{bucket, fresh_database, unique};

const RECORDS: usize = 20;

#[test]
fn postgresql_and_object_store_metrics_count_the_traffic() {
    let rt = runtime();
    let database = rt.block_on(fresh_database("metrics"));
    let objects = format!("s3://{}/{}", bucket(), unique("metrics"));
    let config = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(config.path(), "[cluster]\nflush_interval_ms = 20\n").expect("write config");
    let path = config.path().to_str().expect("utf-8").to_owned();
    let mut broker = start_broker(1, &database, &objects, &path);
    let kafka = broker.addr("kafka").to_string();
    let topic = "MetricsCloud";
    rt.block_on(async {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &kafka)
            .create()
            .expect("producer");
        for n in 0..RECORDS {
            let value = format!("record-{n}");
            producer
                .send(
                    FutureRecord::<(), _>::to(topic)
                        .partition(0)
                        .payload(&value),
                    Duration::from_secs(20),
                )
                .await
                .unwrap_or_else(|(error, _)| panic!("delivery {n}: {error}"));
        }
    });
    let reader = crate::kafka::consumer(&kafka, "metrics-check", topic, 1);
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut got = 0;
    while got < RECORDS && Instant::now() < deadline {
        if let Some(message) = reader.poll(Duration::from_millis(200)) {
            message.expect("consume");
            got += 1;
        }
    }
    assert_eq!(got, RECORDS, "every record read back");
    for series in [
        "tributary_cloud_pg_operations_total",
        "tributary_cloud_pg_operation_duration_seconds_count",
        "tributary_cloud_pg_pool_wait_duration_seconds_count",
        "tributary_cloud_object_put_duration_seconds_count",
    ] {
        let seen = sample(&mut broker, series);
        eprintln!("{series}: {seen}");
        assert!(seen > 0, "{series} counts the traffic");
    }
}
