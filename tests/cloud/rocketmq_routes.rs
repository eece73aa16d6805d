//! RocketMQ clients over three brokers sharing one log (src: `tributary_rocketmq::routes`): a
//! producer that knows only broker A's name server sends to every broker, each send landing
//! on a partition the broker it went to leads (the Kafka Metadata of the same cluster says
//! who), and a consumer group of two members, one through broker B's name server and one
//! through C's, splits the queues and receives every message.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rocketmq_model::common::message::message_single::Message;

use crate::broker::TestBroker;
use crate::cluster::{leaders, start_broker};
use crate::rocketmq_support::{
    Client, Collector, Received, consumer_with, producer, runtime, wait_for,
};
use crate::services::{bucket, fresh_database, unique};

const MESSAGES: usize = 120;
const QUEUES: u32 = 12;
const BROKER_NAME: &str = "tributary-broker";

/// What one consumer received.
type Sink = Arc<Mutex<Vec<Received>>>;

fn bodies(received: &Mutex<Vec<Received>>) -> BTreeSet<Vec<u8>> {
    received.lock().iter().map(|(b, _, _)| b.clone()).collect()
}

#[test]
fn sends_spread_over_the_leaders_and_a_group_through_other_brokers_gets_them_all() {
    let rt = runtime();
    let database = rt.block_on(fresh_database("rmq_routes"));
    let objects = format!("s3://{}/{}", bucket(), unique("rmq-routes"));
    let config = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(
        config.path(),
        format!("[rocketmq]\ndefault_queues = {QUEUES}\n[cluster]\nflush_interval_ms = 50\n"),
    )
    .expect("write config");
    let config = config.path().to_str().expect("utf-8").to_owned();
    let mut brokers: Vec<TestBroker> = (1..=3)
        .map(|id| start_broker(id, &database, &objects, &config))
        .collect();
    let namesrvs: Vec<String> = brokers
        .iter_mut()
        .map(|b| b.addr("rocketmq-namesrv").to_string())
        .collect();
    let bootstrap: Vec<String> = brokers
        .iter_mut()
        .map(|b| b.addr("kafka").to_string())
        .collect();
    let bootstrap = bootstrap.join(",");
    let topic = "RoutesRmq";
    rt.block_on(async {
        // Every broker has renewed its lease with its RocketMQ port since all three started.
        tokio::time::sleep(Duration::from_secs(1)).await;
        // Two members of one group, through B's and C's name servers, split the queues; they
        // join before anything is sent, so both get queues with messages.
        let seen_b: Sink = Arc::default();
        let seen_c: Sink = Arc::default();
        let client_b = Client::new("routes-b").expect("client");
        let client_c = Client::new("routes-c").expect("client");
        let group = "CID-routes";
        let mut member_b = consumer_with(
            &client_b,
            &namesrvs[1],
            group,
            topic,
            "*",
            Collector(seen_b.clone()),
        )
        .await;
        let mut member_c = consumer_with(
            &client_c,
            &namesrvs[2],
            group,
            topic,
            "*",
            Collector(seen_c.clone()),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        let client = Client::new("routes").expect("client");
        let mut producer = producer(&client, &namesrvs[0], "PID-routes").await;
        let mut landed: Vec<(String, i32)> = Vec::new();
        let mut sent = BTreeSet::new();
        for n in 0..MESSAGES {
            let body = format!("routes-{n}").into_bytes();
            let message = Message::builder()
                .topic(topic)
                .tags("R")
                .raw_property("origin", "routes")
                .expect("property")
                .body(body.clone())
                .build()
                .expect("message");
            let result = producer
                .send(message)
                .await
                .expect("send acknowledged")
                .expect("a send result");
            let queue = result.message_queue.expect("the queue it landed in");
            landed.push((queue.broker_name().to_string(), queue.queue_id()));
            sent.insert(body);
        }

        // Each send went to a broker that leads the partition it landed in, and all three
        // brokers took some.
        let leaders = leaders(&bootstrap, topic);
        assert_eq!(leaders.len(), QUEUES as usize);
        let mut by_broker: BTreeMap<String, HashSet<i32>> = BTreeMap::new();
        for (name, partition) in &landed {
            let id: i32 = name
                .strip_prefix(&format!("{BROKER_NAME}-"))
                .and_then(|id| id.parse().ok())
                .unwrap_or_else(|| panic!("a send went to `{name}`, not a broker's write name"));
            assert_eq!(
                leaders.get(partition),
                Some(&id),
                "partition {partition} landed through broker {id}; leaders {leaders:?}"
            );
            by_broker
                .entry(name.clone())
                .or_default()
                .insert(*partition);
        }
        assert_eq!(
            by_broker.len(),
            3,
            "sends spread over every broker: {by_broker:?}"
        );
        let partitions: HashSet<i32> = landed.iter().map(|(_, p)| *p).collect();
        assert_eq!(partitions.len(), QUEUES as usize, "every queue written");

        wait_for(
            "every message through B and C",
            Duration::from_secs(90),
            || bodies(&seen_b).union(&bodies(&seen_c)).count() >= sent.len(),
        )
        .await;
        let all: BTreeSet<Vec<u8>> = bodies(&seen_b).union(&bodies(&seen_c)).cloned().collect();
        assert_eq!(
            all, sent,
            "the group received exactly what was acknowledged"
        );
        assert!(
            !seen_b.lock().is_empty() && !seen_c.lock().is_empty(),
            "both members got queues: {} / {}",
            seen_b.lock().len(),
            seen_c.lock().len()
        );
        member_b.shutdown().await;
        member_c.shutdown().await;
        producer.shutdown().await;
        client_b.shutdown().await;
        client_c.shutdown().await;
        client.shutdown().await;
    });
    for broker in &mut brokers {
        broker.terminate();
    }
}
