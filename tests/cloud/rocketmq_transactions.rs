//! RocketMQ transactional messages over two brokers: the transactional producer goes through one
//! broker's name server, the consumer through the other's. Half messages live in one shared
//! half topic and commits append to partitions wherever they are led, so brokers forward those
//! appends to the leader over the internal RPC (counted in
//! `tributary_cloud_forwarded_appends_total`). Every commit is consumed exactly once, no
//! rollback ever: the broker that forwarded a half reads it back at once when the commit comes
//! (a forwarded append moves its view of the partition), and a commit that still cannot read
//! its half leaves the transaction pending for a check-back instead of resolving it without it.
//!
//! (Plain RocketMQ sends are not forwarded any more: routes send each write queue to the broker
//! that leads it, `tests/cloud/rocketmq_routes.rs`.)

use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rocketmq_client_rust::LocalTransactionState;

use crate::cluster::{sample, start_broker};
use crate::rocketmq_support::{Client, consumer_with, runtime};
use crate::rocketmq_tx::{Listener, OWN_DECISION, Sink, bodies, message, transaction_producer};
use crate::services::{bucket, fresh_database, unique};

const QUEUES: i32 = 4;
const COMMITS: usize = 12;
const ROLLBACKS: usize = 4;

#[test]
fn rocketmq_transactions_across_brokers_commit_once_and_roll_back_never() {
    let rt = runtime();
    let database = rt.block_on(fresh_database("rmq-tx"));
    let objects = format!("s3://{}/{}", bucket(), unique("rmq-tx"));
    let config = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(
        config.path(),
        "[cluster]\nflush_interval_ms = 20\n[rocketmq]\ntransaction_timeout_ms = 1000\n\
         transaction_check_interval_ms = 1000\n",
    )
    .expect("write config");
    let path = config.path().to_str().expect("utf-8").to_owned();
    let mut a = start_broker(1, &database, &objects, &path);
    let mut b = start_broker(2, &database, &objects, &path);
    let kafka = a.addr("kafka").to_string();
    let namesrv_a = a.addr("rocketmq-namesrv").to_string();
    let namesrv_b = b.addr("rocketmq-namesrv").to_string();
    let topic = "TxAcrossRmq";
    rt.block_on(async {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &kafka)
            .create()
            .expect("admin client");
        let created = admin
            .create_topics(
                &[NewTopic::new(topic, QUEUES, TopicReplication::Fixed(1))],
                &AdminOptions::new(),
            )
            .await
            .expect("create topics");
        assert!(created[0].is_ok(), "{created:?}");
        // Both brokers know the topic and lead some of its partitions.
        tokio::time::sleep(Duration::from_secs(1)).await;

        let client = Client::new("tx-across").expect("client");
        let consumed = Arc::new(Mutex::new(Vec::new()));
        let sink = Sink(Arc::clone(&consumed));
        let mut consumer =
            consumer_with(&client, &namesrv_b, "CID-tx-across", topic, "*", sink).await;
        // A check-back may overtake the producer's END_TRANSACTION on a loaded machine: it
        // answers what the local transaction decided.
        let listener = Listener {
            on_check: OWN_DECISION,
            checks: Arc::new(Mutex::new(Vec::new())),
        };
        let mut producer =
            transaction_producer(&client, &namesrv_a, "PID-tx-across", topic, listener).await;
        let mut committed = Vec::new();
        for n in 0..COMMITS + ROLLBACKS {
            let (decision, expected) = if n < COMMITS {
                ("commit", LocalTransactionState::CommitMessage)
            } else {
                ("rollback", LocalTransactionState::RollbackMessage)
            };
            let body = format!("tx-{decision}-{n}").into_bytes();
            let result = producer
                .send_message_in_transaction::<(), _>(message(topic, decision, &body), None)
                .await
                .unwrap_or_else(|error| panic!("transactional send {n}: {error}"));
            assert_eq!(result.local_transaction_state, Some(expected));
            if n < COMMITS {
                committed.push(body);
            }
        }
        // Committed means consumed: the assertion below names any commit that never came.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while bodies(&consumed).len() < COMMITS && std::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // Long enough for a duplicate or a wrongly committed rollback to show up.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let mut seen = bodies(&consumed);
        seen.sort();
        committed.sort();
        assert_eq!(seen, committed, "each commit exactly once, no rollback");
        consumer.shutdown().await;
        producer.shutdown().await;
        client.shutdown().await;
    });
    let forwarded = sample(&mut a, "tributary_cloud_forwarded_appends_total")
        + sample(&mut b, "tributary_cloud_forwarded_appends_total");
    eprintln!("appends forwarded between the brokers: {forwarded}");
    assert!(
        forwarded > 0,
        "some half or commit went to the other broker's partition"
    );
}
