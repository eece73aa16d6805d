//! The admin API over the Kafka and RocketMQ sides: their connections listed and closed
//! (raw sockets, so a close is seen as EOF), RocketMQ consumer groups with members, lag and
//! an offset reset the running consumer follows (rocketmq-client-rust).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};

use crate::broker::TestBroker;
use crate::{call, guest};

/// A Kafka ApiVersions v0 request naming itself `client_id`.
fn kafka_api_versions(client_id: &str) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&18i16.to_be_bytes()); // ApiVersions
    body.extend_from_slice(&0i16.to_be_bytes());
    body.extend_from_slice(&7i32.to_be_bytes()); // correlation id
    body.extend_from_slice(&(client_id.len() as i16).to_be_bytes());
    body.extend_from_slice(client_id.as_bytes());
    let mut frame = (body.len() as i32).to_be_bytes().to_vec();
    frame.extend(body);
    frame
}

/// A RocketMQ HEART_BEAT request (JSON header) from client `client_id`.
fn rocketmq_heartbeat(client_id: &str) -> Vec<u8> {
    let header = json!({ "code": 34, "language": "JAVA", "version": 0, "opaque": 1, "flag": 0,
                         "extFields": {} })
    .to_string();
    let body =
        json!({ "clientID": client_id, "producerDataSet": [], "consumerDataSet": [] }).to_string();
    let mut frame = ((4 + header.len() + body.len()) as i32)
        .to_be_bytes()
        .to_vec();
    frame.extend_from_slice(&(header.len() as i32).to_be_bytes());
    frame.extend_from_slice(header.as_bytes());
    frame.extend_from_slice(body.as_bytes());
    frame
}

/// Sends `request` and reads the length-prefixed answer.
fn exchange(stream: &mut TcpStream, request: &[u8]) {
    stream.write_all(request).expect("send");
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).expect("answer size");
    let mut answer = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut answer).expect("answer");
}

/// Whether the broker closed `stream` (EOF) within a few seconds.
fn closed_by_broker(stream: &mut TcpStream) -> bool {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut byte = [0u8; 1];
    matches!(stream.read(&mut byte), Ok(0))
}

async fn listed(admin: &tributary::admin_client::AdminClient, name: &str) -> Option<Value> {
    let list = call(admin, "GET", &["connections"], None).await;
    assert_eq!(list.status, 200, "{:?}", list.body);
    let list = list.body.as_array().expect("a list").clone();
    list.into_iter().find(|c| c["name"] == name)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_and_rocketmq_connections_are_listed_and_closed() {
    let mut broker = TestBroker::start();
    let admin = guest(&mut broker);
    let kafka_addr = broker.addr("kafka");
    let rocketmq_addr = broker.addr("rocketmq-broker");
    let (mut kafka, mut rocketmq, mut long_id) = tokio::task::spawn_blocking(move || {
        let mut kafka = TcpStream::connect(kafka_addr).expect("kafka");
        exchange(&mut kafka, &kafka_api_versions("billing-app"));
        let mut rocketmq = TcpStream::connect(rocketmq_addr).expect("rocketmq");
        exchange(&mut rocketmq, &rocketmq_heartbeat("10.0.0.1@4242"));
        // An id far above the cap is kept cut, not whole.
        let mut long_id = TcpStream::connect(kafka_addr).expect("kafka");
        exchange(&mut long_id, &kafka_api_versions(&"x".repeat(5000)));
        (kafka, rocketmq, long_id)
    })
    .await
    .expect("join");

    let name_of = |stream: &TcpStream| {
        format!(
            "{} -> {}",
            stream.local_addr().unwrap(),
            stream.peer_addr().unwrap()
        )
    };
    let kafka_name = name_of(&kafka);
    let entry = listed(&admin, &kafka_name).await.expect("kafka listed");
    assert_eq!(entry["protocol"], "Kafka", "{entry}");
    assert_eq!(entry["client_id"], "billing-app", "{entry}");
    assert_eq!(entry["peer_port"], kafka.local_addr().unwrap().port());
    assert_eq!(entry["port"], kafka_addr.port());
    let entry = listed(&admin, &name_of(&rocketmq))
        .await
        .expect("rocketmq listed");
    assert_eq!(entry["protocol"], "RocketMQ remoting", "{entry}");
    assert_eq!(entry["client_id"], "10.0.0.1@4242", "{entry}");
    let entry = listed(&admin, &name_of(&long_id)).await.expect("listed");
    assert_eq!(
        entry["client_id"].as_str().map(str::len),
        Some(tributary_api::ClientId::MAX_CHARS)
    );
    let one = call(&admin, "GET", &["connections", &kafka_name], None).await;
    assert_eq!(one.body["client_id"], "billing-app", "{:?}", one.body);
    let overview = call(&admin, "GET", &["overview"], None).await.body;
    assert_eq!(overview["object_totals"]["connections"], 3, "{overview}");

    // Closing one really closes its socket; the other stays open.
    let rocketmq_name = name_of(&rocketmq);
    for name in [&kafka_name, &rocketmq_name] {
        let answer = call(&admin, "DELETE", &["connections", name], None).await;
        assert_eq!(answer.status, 204, "{:?}", answer.body);
    }
    let (kafka_closed, rocketmq_closed, other_open) = tokio::task::spawn_blocking(move || {
        let kafka_closed = closed_by_broker(&mut kafka);
        let rocketmq_closed = closed_by_broker(&mut rocketmq);
        long_id
            .set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let other_open = long_id.read(&mut [0u8; 1]).is_err();
        (kafka_closed, rocketmq_closed, other_open)
    })
    .await
    .expect("join");
    assert!(kafka_closed, "the Kafka socket was not closed");
    assert!(rocketmq_closed, "the RocketMQ socket was not closed");
    assert!(other_open, "a connection that was not named was closed");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while listed(&admin, &kafka_name).await.is_some() {
        assert!(tokio::time::Instant::now() < deadline, "still listed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let gone = call(&admin, "DELETE", &["connections", &kafka_name], None).await;
    assert_eq!(gone.status, 404);
}

#[test]
fn a_rocketmq_group_shows_its_members_and_its_consumer_follows_a_reset() {
    use crate::rocketmq::{Client, body, consumer, message, producer, runtime, wait_for};

    let mut broker = TestBroker::start();
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    let admin = guest(&mut broker);
    let (topic, group) = ("AdminReset", "CID-admin-reset");
    runtime().block_on(async {
        let client = Client::new("admin-reset").expect("client");
        let mut producer = producer(&client, &namesrv, "PID-admin-reset").await;
        let mut sent = Vec::new();
        for n in 0..8 {
            let b = body("first", n);
            producer
                .send(message(topic, "t", b.clone(), "admin"))
                .await
                .expect("send");
            sent.push(b);
        }
        let sink = std::sync::Arc::new(parking_lot::Mutex::new(Vec::new()));
        let mut consumer = consumer(&client, &namesrv, group, topic, "*", sink.clone()).await;
        wait_for("the first delivery", Duration::from_secs(60), || {
            sink.lock().len() >= sent.len()
        })
        .await;

        // The group is listed with its live member and, once the consumer's offsets are
        // stored, its queues' offsets with no lag.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        let described = loop {
            let answer = call(&admin, "GET", &["groups", group], None).await;
            let offsets = answer.body["offsets"].as_array().map_or(0, Vec::len);
            if answer.status == 200 && offsets > 0 && answer.body["lag"] == 0 {
                break answer.body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "no stored offsets: {:?}",
                answer.body
            );
            tokio::time::sleep(Duration::from_millis(250)).await;
        };
        let members = described["members"].as_array().expect("members");
        assert_eq!(members.len(), 1, "{described}");
        assert_eq!(members[0]["protocol"], "RocketMQ", "{described}");
        let client_id = members[0]["client_id"].as_str().expect("a client id");
        assert!(!client_id.is_empty());
        let listed = call(&admin, "GET", &["groups"], None).await.body;
        let names: Vec<&str> = listed
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|g| g["name"].as_str())
            .collect();
        assert!(names.contains(&group), "{listed}");

        // A reset to the earliest offsets: the running consumer is told and reads it all again.
        let reset = json!({ "topic": topic, "to": "earliest" });
        let answer = call(&admin, "POST", &["groups", group, "reset"], Some(reset)).await;
        assert_eq!(answer.status, 200, "{:?}", answer.body);
        assert_eq!(
            answer.body["reset"]["notified_members"], 1,
            "{:?}",
            answer.body
        );
        // rocketmq-client-rust 1.0 takes a reset's offsets only after waiting 10 s for
        // in-flight consumption, then pulls the queue again at its next rebalance (every 20 s);
        // meanwhile it commits its old offsets, which the broker must not store. A timeout
        // prints the group's stored offsets and the broker's log.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while sink.lock().len() < 2 * sent.len() {
            if tokio::time::Instant::now() >= deadline {
                let stored = call(&admin, "GET", &["groups", group], None).await.body;
                broker.read_log_for(Duration::from_millis(200));
                panic!(
                    "no redelivery after the reset ({} of {} received); the group now: \
                     {stored}\nbroker log:\n{}",
                    sink.lock().len(),
                    2 * sent.len(),
                    broker.lines_seen().join("\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let mut again: Vec<Vec<u8>> = sink.lock()[sent.len()..]
            .iter()
            .map(|(b, _, _)| b.clone())
            .collect();
        again.sort();
        sent.sort();
        assert_eq!(again, sent, "the reset replays what was sent");
        // The client kept committing its old position while it waited to take the reset in;
        // stored, those commits would have undone the reset.
        broker.read_log_for(Duration::from_millis(200));
        assert!(
            broker
                .lines_seen()
                .iter()
                .any(|line| line.contains("consumer offset not stored")),
            "no stale commit was held back"
        );

        consumer.shutdown().await;
        producer.shutdown().await;
        client.shutdown().await;
    });
}
