//! Kafka clients (librdkafka) through the real binary on the cloud engine: records produced
//! concurrently to several partitions come back byte-identical with dense offsets, are stored
//! as one row per batch, and survive a SIGKILL with the local data directory wiped (the log,
//! the topic and the group's committed offsets live in PostgreSQL and the object store).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, Headers, Message, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::broker::{TestBroker, data_dir_in};
use crate::services::{bucket, connect, fresh_database, unique};

const WAIT: Duration = Duration::from_secs(30);
const PARTITIONS: i32 = 4;
const RECORDS: u32 = 200;

/// Partition, key, value, headers.
type Seen = (i32, Vec<u8>, Vec<u8>, Vec<(String, Vec<u8>)>);

fn seen(message: &impl Message) -> Seen {
    let headers = message
        .headers()
        .map(|headers| {
            headers
                .iter()
                .map(|h| (h.key.to_owned(), h.value.unwrap_or_default().to_vec()))
                .collect()
        })
        .unwrap_or_default();
    (
        message.partition(),
        message.key().unwrap_or_default().to_vec(),
        message.payload().unwrap_or_default().to_vec(),
        headers,
    )
}

/// A consumer assigned every one of `partitions` partitions of `topic` from the beginning.
pub(crate) fn consumer(bootstrap: &str, group: &str, topic: &str, partitions: i32) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..partitions {
        assignment
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    consumer
}

/// Every record of the topic, by partition, with its offset.
fn consume_all(consumer: &BaseConsumer) -> BTreeMap<i32, Vec<(i64, Seen)>> {
    let deadline = Instant::now() + WAIT;
    let mut got: BTreeMap<i32, Vec<(i64, Seen)>> = BTreeMap::new();
    let mut count = 0;
    while count < RECORDS as usize {
        assert!(
            Instant::now() < deadline,
            "only {count} of {RECORDS} records arrived"
        );
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.expect("consume error");
            got.entry(message.partition())
                .or_default()
                .push((message.offset(), seen(&message)));
            count += 1;
        }
    }
    got
}

/// Waits for the last `deliveries.len()` records of `sent`.
async fn await_deliveries(deliveries: Vec<rdkafka::producer::DeliveryFuture>, sent: &[Seen]) {
    let first = sent.len() - deliveries.len();
    for (i, delivery) in deliveries.into_iter().enumerate() {
        let delivered = delivery
            .await
            .expect("delivery future")
            .unwrap_or_else(|(error, _)| panic!("delivery {} failed: {error}", first + i));
        assert_eq!(delivered.partition, sent[first + i].0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_produce_and_fetch_through_the_cloud_engine_survive_a_wiped_broker() {
    let database = fresh_database("kafka").await;
    let objects = format!("s3://{}/{}", bucket(), unique("kafka"));
    let args = [
        "--metadata-url",
        database.as_str(),
        "--objects-url",
        objects.as_str(),
        "--broker-id",
        "7",
    ];
    let config = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(
        config.path(),
        format!("[kafka]\ndefault_partitions = {PARTITIONS}\n"),
    )
    .expect("write config");
    let config_path = config.path().to_str().expect("utf-8").to_owned();
    let mut all_args = args.to_vec();
    all_args.extend(["--config", config_path.as_str()]);
    let mut broker = TestBroker::start_with(&all_args);
    broker.wait_for_line(&["cloud engine opened"], Duration::from_secs(10));
    let bootstrap = broker.addr("kafka").to_string();
    let topic = "cloud-orders";

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("acks", "all")
        .set("linger.ms", "20")
        .set("message.timeout.ms", "20000")
        .create()
        .expect("producer");
    let mut sent: Vec<Seen> = Vec::new();
    let mut deliveries = Vec::new();
    for i in 0..RECORDS {
        // Two waves, so every partition holds several batches at growing base offsets.
        if i == RECORDS / 2 {
            await_deliveries(std::mem::take(&mut deliveries), &sent).await;
        }
        let partition = (i % PARTITIONS as u32) as i32;
        let key = format!("key-{i}").into_bytes();
        let value: Vec<u8> = (0..(i * 5)).map(|b| (b % 251) as u8).collect();
        let headers = OwnedHeaders::new().insert(Header {
            key: "n",
            value: Some(&i.to_be_bytes()[..]),
        });
        let record = FutureRecord::to(topic)
            .partition(partition)
            .key(&key)
            .payload(&value)
            .headers(headers);
        // Queued without waiting, so librdkafka batches them and one flush covers many.
        deliveries.push(
            producer
                .send_result(record)
                .unwrap_or_else(|(error, _)| panic!("enqueue {i}: {error}")),
        );
        sent.push((
            partition,
            key,
            value,
            vec![("n".to_owned(), i.to_be_bytes().to_vec())],
        ));
    }
    await_deliveries(deliveries, &sent).await;

    let check = |got: BTreeMap<i32, Vec<(i64, Seen)>>| {
        for partition in 0..PARTITIONS {
            let expected: Vec<&Seen> = sent.iter().filter(|r| r.0 == partition).collect();
            let actual = got.get(&partition).cloned().unwrap_or_default();
            assert_eq!(actual.len(), expected.len(), "partition {partition}");
            for (at, ((offset, record), wanted)) in actual.iter().zip(expected).enumerate() {
                assert_eq!(*offset, at as i64, "dense offsets in partition {partition}");
                assert_eq!(record, wanted, "partition {partition} record {at}");
            }
        }
    };
    let reader = consumer(&bootstrap, "cloud-readers", topic, PARTITIONS);
    check(consume_all(&reader));
    let mut commit = TopicPartitionList::new();
    commit
        .add_partition_offset(topic, 0, Offset::Offset(17))
        .expect("offset");
    reader.commit(&commit, CommitMode::Sync).expect("commit");
    drop(reader);

    // Rows per batch, never per record; every record accounted for.
    let client = connect(&database).await;
    let row = client
        .query_one(
            "SELECT count(*), COALESCE(sum(record_count), 0)::bigint FROM batches WHERE topic = $1",
            &[&topic],
        )
        .await
        .expect("count batches");
    let (rows, records): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(records, i64::from(RECORDS));
    assert!(
        rows < i64::from(RECORDS),
        "{rows} rows for {RECORDS} records"
    );
    let objects_written: i64 = client
        .query_one("SELECT count(*) FROM objects", &[])
        .await
        .expect("count objects")
        .get(0);
    assert!(objects_written >= 1);

    // SIGKILL and a wiped local data directory: everything comes back from the services.
    broker.kill_prepare_restart(|root| {
        std::fs::remove_dir_all(data_dir_in(root)).expect("wipe the data directory");
    });
    broker.wait_for_line(&["cloud engine opened"], Duration::from_secs(10));
    let bootstrap = broker.addr("kafka").to_string();
    let reader = consumer(&bootstrap, "cloud-readers", topic, PARTITIONS);
    check(consume_all(&reader));
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(topic, 0);
    let committed = reader
        .committed_offsets(wanted, Duration::from_secs(10))
        .expect("committed offsets");
    let position = committed
        .find_partition(topic, 0)
        .expect("partition 0")
        .offset();
    assert_eq!(position, Offset::Offset(17));
}
