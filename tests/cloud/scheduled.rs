//! The scheduler's delayed appends in PostgreSQL (`src/cloud/schedule.rs`): an entry is fired
//! once, by the broker leading its target, never before it is due; any broker cancels any
//! entry; and a RocketMQ delay-level message accepted by a broker that is SIGKILLed before it
//! is due still arrives, through another broker, on time (plus the lease).

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rocketmq_model::common::message::message_single::Message;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tributary::broker::{Broker, BrokerSettings};
use tributary::cloud::{CloudEngine, ObjectsUrl};
use tributary_api::batch::decode_records;
use tributary_api::{
    ClusterView, LogService, ScheduleTarget, TopicAdmin, TopicPartition, TopicSettings,
};

use crate::broker::TestBroker;
use crate::cluster::start_broker;
use crate::engine::{batch, settings};
use crate::rocketmq_support::{Client, Collector, Received, consumer_with, producer, runtime};
use crate::services::{bucket, fresh_database, unique};

/// Broker `id` of an in-process pair on `database`, both writing under `objects`.
async fn engine(database: &str, objects: &str, id: u32) -> Arc<CloudEngine> {
    let mut settings = settings(database, &bucket(), 50);
    settings.objects = ObjectsUrl::parse(objects).expect("objects url");
    settings.broker_id = id;
    settings.lease_renew = Duration::from_millis(200);
    CloudEngine::open(settings)
        .await
        .expect("open the cloud engine")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_entry_fires_once_on_the_leader_and_any_broker_cancels() {
    let database = fresh_database("scheduled").await;
    let objects = format!("s3://{}/{}", bucket(), unique("scheduled"));
    let engines = [
        engine(&database, &objects, 1).await,
        engine(&database, &objects, 2).await,
    ];
    let dirs = [
        tempfile::tempdir().expect("dir"),
        tempfile::tempdir().expect("dir"),
    ];
    let (tracker, stop) = (TaskTracker::new(), CancellationToken::new());
    let brokers: Vec<Arc<Broker>> = engines
        .iter()
        .zip(&dirs)
        .map(|(engine, dir)| {
            let broker =
                Broker::open_with_cloud(BrokerSettings::new(dir.path()), Some(engine.clone()))
                    .expect("broker");
            broker.spawn_background(&tracker, stop.clone());
            broker
        })
        .collect();
    let tp = TopicPartition::new("sched", 0);
    engines[0]
        .log()
        .create_topic("sched", 1, TopicSettings::default())
        .await
        .expect("topic");
    // Both renew (every 200 ms) and see each other and the topic.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let leader = engines[0].cluster().leader(&tp).expect("a leader");
    assert_eq!(engines[1].cluster().leader(&tp), Some(leader), "one view");

    // Scheduled through the broker that does not lead the target, so only the NOTIFY wakes
    // the leader's scheduler (it has nothing else to wait for); cancelled through the leader.
    let leader_index = (leader - 1) as usize;
    let (first, second) = (
        brokers[1 - leader_index].engine(),
        brokers[leader_index].engine(),
    );
    let due = first.scheduler.now_ms() + 1_500;
    let target = ScheduleTarget::Partition(tp.clone());
    let cancelled = first
        .scheduler
        .schedule_append(due, target.clone(), batch("cancelled", 1))
        .await
        .expect("schedule");
    assert!(
        second.scheduler.cancel(cancelled).await.expect("cancel"),
        "cancelled through the other broker (the leader)"
    );
    assert!(
        !first.scheduler.cancel(cancelled).await.expect("cancel"),
        "already gone"
    );
    // After the cancel (which woke the leader's scheduler): only the NOTIFY tells it of this.
    first
        .scheduler
        .schedule_append(due, target, batch("kept", 1))
        .await
        .expect("schedule");

    let log = engines[(leader - 1) as usize].log();
    let deadline = Instant::now() + Duration::from_secs(15);
    while log.offsets(&tp).expect("offsets").high_watermark < 1 {
        assert!(Instant::now() < deadline, "the kept entry never fired");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let fired_at = first.scheduler.now_ms();
    assert!(fired_at >= due, "fired {} ms early", due - fired_at);
    // Time for a second firing, were there one.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let read = log.read(&tp, 0, 1 << 20).await.expect("read");
    assert_eq!(read.offsets.high_watermark, 1, "fired exactly once");
    let values: Vec<Vec<u8>> = decode_records(&read.data)
        .expect("records")
        .into_iter()
        .map(|r| r.record.value.expect("value").to_vec())
        .collect();
    assert_eq!(values, vec![b"kept-0".to_vec()]);
    let fired: Vec<u64> = engines.iter().map(|e| e.stats().scheduled_fired).collect();
    let mut expected = vec![0, 0];
    expected[(leader - 1) as usize] = 1;
    assert_eq!(
        fired, expected,
        "fired by the leader (broker {leader}) only"
    );

    stop.cancel();
    tracker.close();
    tracker.wait().await;
    for engine in &engines {
        engine.close().await;
    }
}

#[test]
fn a_delayed_message_survives_the_broker_that_took_it() {
    const LEVEL_MS: u64 = 10_000;
    let rt = runtime();
    let database = rt.block_on(fresh_database("scheduled_kill"));
    let objects = format!("s3://{}/{}", bucket(), unique("scheduled-kill"));
    let config = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(
        config.path(),
        "[rocketmq]\ndelay_levels = \"1s 10s\"\ndefault_queues = 4\n[cluster]\nflush_interval_ms = 50\n",
    )
    .expect("write config");
    let config = config.path().to_str().expect("utf-8").to_owned();
    let mut brokers: Vec<TestBroker> = (1..=2)
        .map(|id| start_broker(id, &database, &objects, &config))
        .collect();
    let namesrvs: Vec<String> = brokers
        .iter_mut()
        .map(|b| b.addr("rocketmq-namesrv").to_string())
        .collect();
    let topic = "DelayedKillRmq";
    let body = b"delayed-across-a-kill".to_vec();
    let (sent_at, taker) = rt.block_on(async {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let client = Client::new("delay-kill").expect("client");
        let mut producer = producer(&client, &namesrvs[0], "PID-delay-kill").await;
        let message = Message::builder()
            .topic(topic)
            .tags("D")
            .delay_level(2)
            .raw_property("origin", "delayed")
            .expect("property")
            .body(body.clone())
            .build()
            .expect("message");
        let sent_at = Instant::now();
        let result = producer
            .send(message)
            .await
            .expect("delayed send acknowledged")
            .expect("a send result");
        let name = result
            .message_queue
            .expect("queue")
            .broker_name()
            .to_string();
        let taker: usize = name
            .rsplit('-')
            .next()
            .and_then(|id| id.parse().ok())
            .expect("a broker's write name");
        producer.shutdown().await;
        client.shutdown().await;
        (sent_at, taker)
    });
    // The broker that accepted (and leads the partition) dies with its data directory's state.
    brokers[taker - 1].signal("KILL");
    let survivor = if taker == 1 { 1 } else { 0 };
    let received: Arc<Mutex<Vec<Received>>> = Arc::default();
    let arrived = rt.block_on(async {
        // After the lease ran out, so the survivor's routes no longer name the dead broker.
        tokio::time::sleep(Duration::from_millis(3_000 + 1_500)).await;
        let client = Client::new("delay-kill-consumer").expect("client");
        let mut consumer = consumer_with(
            &client,
            &namesrvs[survivor],
            "CID-delay-kill",
            topic,
            "*",
            Collector(received.clone()),
        )
        .await;
        let deadline = sent_at + Duration::from_millis(LEVEL_MS + 30_000);
        while received.lock().is_empty() {
            assert!(
                Instant::now() < deadline,
                "the delayed message never arrived"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let arrived = sent_at.elapsed();
        consumer.shutdown().await;
        client.shutdown().await;
        arrived
    });
    let got = received.lock().clone();
    assert_eq!(got.len(), 1, "delivered once");
    assert_eq!(got[0].0, body);
    assert!(
        arrived >= Duration::from_millis(LEVEL_MS - 200),
        "arrived early: {arrived:?}"
    );
    // Due at 10 s; the lease (3 s) has long run out by then, so only delivery latency remains.
    assert!(
        arrived <= Duration::from_millis(LEVEL_MS + 3_000 + 2_000),
        "arrived late: {arrived:?}"
    );
    eprintln!("delayed message arrived {arrived:?} after the send (due after {LEVEL_MS} ms)");
    brokers[survivor].terminate();
}
