//! SQL92 property filtering with a real RocketMQ remoting client (`rocketmq-client-rust` 1.0.0)
//! against the real `tributary` binary: a push consumer subscribed with
//! `MessageSelector::by_sql` (heartbeat subscription, CHECK_CLIENT_CONFIG, pulls without
//! FLAG_SUBSCRIPTION) receives exactly the messages whose properties match, while a tag
//! consumer of another group still receives everything.

use crate::broker;

use crate::rocketmq;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use broker::TestBroker;
use parking_lot::Mutex;
use rocketmq::{Client, Collector, Received, consumer, producer, runtime, wait_for};
use rocketmq_client_rust::{DefaultMQPushConsumer, MQPushConsumer, MessageSelector};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_single::Message;

fn priced(topic: &str, n: u32) -> Message {
    let region = ["eu-west", "us-east", "eu-north"][n as usize % 3];
    Message::builder()
        .topic(topic)
        .tags(if n.is_multiple_of(2) { "even" } else { "odd" })
        .raw_property("price", n.to_string())
        .expect("price property")
        .raw_property("region", region)
        .expect("region property")
        .body(format!("item-{n}").into_bytes())
        .build()
        .expect("message")
}

fn bodies(sink: &Mutex<Vec<Received>>) -> BTreeSet<Vec<u8>> {
    sink.lock()
        .iter()
        .map(|(body, _, _)| body.clone())
        .collect()
}

#[test]
fn a_sql92_consumer_receives_only_matching_messages() {
    let mut broker = TestBroker::start();
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    let topic = "SqlRmq";
    let expression = "price BETWEEN 10 AND 30 AND region STARTSWITH 'eu' AND TAGS <> 'odd'";
    runtime().block_on(async {
        let client = Client::new("sql").expect("client");
        let mut producer = producer(&client, &namesrv, "PID-sql").await;
        for n in 0..40 {
            producer
                .send(priced(topic, n))
                .await
                .expect("send")
                .expect("send result");
        }
        let expected: BTreeSet<Vec<u8>> = (0..40u32)
            .filter(|n| (10..=30).contains(n) && n % 3 != 1 && n.is_multiple_of(2))
            .map(|n| format!("item-{n}").into_bytes())
            .collect();
        assert!(expected.len() > 3, "the filter selects some messages");

        let selected: Arc<Mutex<Vec<Received>>> = Arc::default();
        let mut sql = DefaultMQPushConsumer::builder(client.runtime.clone())
            .consumer_group("CID-sql".to_string())
            .name_server_addr(namesrv.clone())
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .build();
        sql.subscribe_with_selector(topic, Some(MessageSelector::by_sql(expression)))
            .await
            .expect("subscribe by SQL");
        sql.register_message_listener_concurrently(Collector(Arc::clone(&selected)));
        sql.start().await.expect("consumer start");
        let everything: Arc<Mutex<Vec<Received>>> = Arc::default();
        let mut tags = consumer(
            &client,
            &namesrv,
            "CID-sql-all",
            topic,
            "even || odd",
            Arc::clone(&everything),
        )
        .await;

        wait_for("the matching messages", Duration::from_secs(60), || {
            bodies(&selected).len() >= expected.len()
        })
        .await;
        wait_for("every message by tag", Duration::from_secs(60), || {
            bodies(&everything).len() >= 40
        })
        .await;
        // Give a stray non-matching delivery time to show up before judging.
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(bodies(&selected), expected);
        assert_eq!(selected.lock().len(), expected.len(), "each match once");
        sql.shutdown().await;
        tags.shutdown().await;
        producer.shutdown().await;
        client.shutdown().await;
    });
    broker.terminate();
}
