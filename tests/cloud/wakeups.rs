//! Wake-ups across brokers through LISTEN/NOTIFY: a Fetch long poll on the broker that does not
//! lead a partition returns within milliseconds of the leader's flush committing, far before
//! its `max_wait_ms`, with the new records (the follower learns the offsets from the
//! notification the flush transaction sends, not by polling PostgreSQL).

use std::net::TcpStream;
use std::time::{Duration, Instant};

use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::{ApiKey, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::{Decodable, StrBytes};
use tributary_api::batch::decode_records;

use crate::broker::{TestBroker, connect};
use crate::cluster::start_broker;
use crate::kafka_wire::{batch, produce_once_to, receive, send};
use crate::services::{bucket, fresh_database, unique};

const TOPIC: &str = "wake";
const MAX_WAIT: Duration = Duration::from_secs(5);
const FETCH_VERSION: i16 = 12;
/// Kafka's NOT_LEADER_OR_FOLLOWER.
const NOT_LEADER: i16 = 6;

/// Produces one batch to partition 0 through whichever broker leads it (the topic is
/// auto-created by the first); returns the leader's index and the batch's offset.
fn produce_to_leader(streams: &mut [TcpStream], value: &'static [u8]) -> (usize, i64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut correlation = 100;
    loop {
        for (index, stream) in streams.iter_mut().enumerate() {
            correlation += 1;
            let (code, offset) = produce_once_to(stream, TOPIC, correlation, batch(value));
            if code == 0 {
                return (index, offset);
            }
            assert!(
                Instant::now() < deadline,
                "no broker accepted the produce (last error {code})"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn fetch_request(offset: i64) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(kafka_protocol::messages::BrokerId(-1))
        .with_max_wait_ms(MAX_WAIT.as_millis() as i32)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_session_epoch(-1)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_fetch_offset(offset)
                        .with_current_leader_epoch(-1)
                        .with_log_start_offset(-1)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ])
}

/// (error code, high watermark, record values) of partition 0 in a Fetch response.
fn fetched(mut body: Bytes) -> (i16, i64, Vec<Bytes>) {
    let response = FetchResponse::decode(&mut body, FETCH_VERSION).expect("fetch response");
    let partition = &response.responses[0].partitions[0];
    let values = match &partition.records {
        Some(records) if !records.is_empty() => decode_records(records)
            .expect("stored batches")
            .into_iter()
            .filter_map(|stored| stored.record.value)
            .collect(),
        _ => Vec::new(),
    };
    (partition.error_code, partition.high_watermark, values)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetch_long_poll_on_a_follower_wakes_at_the_leaders_commit() {
    let database = fresh_database("wakeups").await;
    let objects = format!("s3://{}/{}", bucket(), unique("wakeups"));
    let config = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(
        config.path(),
        "[kafka]\ndefault_partitions = 1\n[cluster]\nflush_interval_ms = 50\n",
    )
    .expect("write config");
    let config = config.path().to_str().expect("utf-8").to_owned();
    let mut brokers: Vec<TestBroker> = (1..=2)
        .map(|id| start_broker(id, &database, &objects, &config))
        .collect();
    let mut streams: Vec<TcpStream> = brokers
        .iter_mut()
        .map(|broker| connect(broker.addr("kafka")))
        .collect();
    let (leader, first) = produce_to_leader(&mut streams, b"first");
    assert_eq!(first, 0);
    let follower = 1 - leader;

    // The follower knows the topic and the first record (it learns topics at once or at its
    // next renewal; asked past its high watermark, it reloads it from PostgreSQL).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        send(
            &mut streams[follower],
            ApiKey::Fetch,
            FETCH_VERSION,
            1,
            &fetch_request(1).with_max_wait_ms(0),
        );
        let (_, body) = receive(
            &mut streams[follower],
            ApiKey::Fetch.response_header_version(FETCH_VERSION),
        );
        let (code, high_watermark, _) = fetched(body);
        assert_ne!(
            code, NOT_LEADER,
            "a follower holding its lease answers Fetch"
        );
        if code == 0 && high_watermark == 1 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the follower never saw the first record (error {code}, high watermark {high_watermark})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    send(
        &mut streams[follower],
        ApiKey::Fetch,
        FETCH_VERSION,
        1,
        &fetch_request(0).with_max_wait_ms(0),
    );
    let (_, body) = receive(
        &mut streams[follower],
        ApiKey::Fetch.response_header_version(FETCH_VERSION),
    );
    assert_eq!(fetched(body), (0, 1, vec![Bytes::from_static(b"first")]));

    // A long poll at the end of the log on the follower, then a produce on the leader.
    let polled = Instant::now();
    send(
        &mut streams[follower],
        ApiKey::Fetch,
        FETCH_VERSION,
        2,
        &fetch_request(1),
    );
    std::thread::sleep(Duration::from_millis(300));
    let (code, offset) = {
        let mut correlation = 200;
        loop {
            correlation += 1;
            let answer =
                produce_once_to(&mut streams[leader], TOPIC, correlation, batch(b"second"));
            if answer.0 == 0 {
                break answer;
            }
            assert!(
                polled.elapsed() < Duration::from_secs(2),
                "produce failed: {answer:?}"
            );
        }
    };
    let acknowledged = Instant::now();
    assert_eq!((code, offset), (0, 1));
    let (_, body) = receive(
        &mut streams[follower],
        ApiKey::Fetch.response_header_version(FETCH_VERSION),
    );
    let answered = Instant::now();
    let (code, high_watermark, values) = fetched(body);
    let waited = answered - polled;
    let wake = answered.saturating_duration_since(acknowledged);
    eprintln!(
        "follower long poll: answered {} ms after it was sent, {} ms after the leader acknowledged",
        waited.as_millis(),
        wake.as_millis()
    );
    assert!(
        waited < MAX_WAIT / 4,
        "the long poll waited {waited:?} of its {MAX_WAIT:?}: no wake-up from the leader's commit"
    );
    assert_eq!(code, 0);
    assert_eq!(high_watermark, 2);
    assert_eq!(values, vec![Bytes::from_static(b"second")]);
}
