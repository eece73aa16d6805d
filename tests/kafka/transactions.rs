//! Kafka transactions (KIP-98) end to end with librdkafka (the `rdkafka` crate): commit and
//! abort seen through `read_committed` and `read_uncommitted` consumers, fencing by a second
//! producer with the same transactional id, offsets sent with a transaction, and a broker
//! SIGKILLed in the middle of one.

use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::broker::TestBroker;
use crate::kafka_txn::{WAIT, create_topic, send, transactional_producer, values};

fn consumer(bootstrap: &str, topic: &str, isolation: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", format!("{topic}-{isolation}"))
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .set("fetch.wait.max.ms", "100")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    assignment
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("assign");
    consumer.assign(&assignment).expect("assign");
    consumer
}

/// Every value `consumer` reads until it has `count` (failing after [`WAIT`]), then whatever
/// else arrives within `settle`.
fn read(consumer: &BaseConsumer, count: usize, settle: Duration) -> Vec<String> {
    let deadline = Instant::now() + WAIT;
    let mut got = Vec::new();
    let mut settle_until = None;
    loop {
        if got.len() >= count {
            let until = *settle_until.get_or_insert_with(|| Instant::now() + settle);
            if Instant::now() >= until {
                return got;
            }
        }
        assert!(
            Instant::now() < deadline,
            "only {} of {count} records arrived: {got:?}",
            got.len()
        );
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("consume error");
            let value = message
                .payload()
                .map(|v| String::from_utf8_lossy(v).into_owned());
            got.push(value.unwrap_or_default());
        }
    }
}

#[test]
fn read_committed_sees_exactly_the_committed_records_and_read_uncommitted_sees_all() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let topic = "txn-visibility";
    create_topic(&bootstrap, topic);
    let producer = transactional_producer(&bootstrap, "txn-visibility-producer");

    producer.begin_transaction().expect("begin");
    send(&producer, topic, &values("first", 5));
    producer.commit_transaction(WAIT).expect("commit");

    producer.begin_transaction().expect("begin");
    send(&producer, topic, &values("aborted", 3));
    producer.abort_transaction(WAIT).expect("abort");

    producer.begin_transaction().expect("begin");
    send(&producer, topic, &values("second", 2));
    producer.commit_transaction(WAIT).expect("commit");

    let committed: Vec<String> = [values("first", 5), values("second", 2)].concat();
    let got = read(
        &consumer(&bootstrap, topic, "read_committed"),
        committed.len(),
        Duration::from_millis(500),
    );
    assert_eq!(got, committed, "read_committed");

    let everything: Vec<String> = [
        values("first", 5),
        values("aborted", 3),
        values("second", 2),
    ]
    .concat();
    let got = read(
        &consumer(&bootstrap, topic, "read_uncommitted"),
        everything.len(),
        Duration::from_millis(500),
    );
    assert_eq!(
        got, everything,
        "read_uncommitted: markers skipped, nothing else"
    );
}

#[test]
fn an_open_transaction_holds_read_committed_back_until_it_commits() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let topic = "txn-open";
    create_topic(&bootstrap, topic);
    let producer = transactional_producer(&bootstrap, "txn-open-producer");
    producer.begin_transaction().expect("begin");
    send(&producer, topic, &values("pending", 3));

    let reader = consumer(&bootstrap, topic, "read_committed");
    let early = read(&reader, 0, Duration::from_secs(2));
    assert!(early.is_empty(), "uncommitted records delivered: {early:?}");
    producer.commit_transaction(WAIT).expect("commit");
    let got = read(&reader, 3, Duration::from_millis(300));
    assert_eq!(got, values("pending", 3));
}

#[test]
fn a_second_producer_with_the_same_transactional_id_fences_the_first() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let topic = "txn-fencing";
    create_topic(&bootstrap, topic);
    let zombie = transactional_producer(&bootstrap, "txn-fencing-id");
    zombie.begin_transaction().expect("begin");
    send(&zombie, topic, &values("zombie", 2));

    // The new instance's init aborts the zombie's transaction and bumps the epoch.
    let current = transactional_producer(&bootstrap, "txn-fencing-id");
    match zombie.commit_transaction(WAIT) {
        Err(KafkaError::Transaction(error)) => {
            assert!(error.is_fatal(), "fencing is fatal: {error}");
        }
        other => panic!("the fenced producer committed: {other:?}"),
    }

    current.begin_transaction().expect("begin");
    send(&current, topic, &values("current", 2));
    current.commit_transaction(WAIT).expect("commit");
    let got = read(
        &consumer(&bootstrap, topic, "read_committed"),
        2,
        Duration::from_millis(500),
    );
    assert_eq!(got, values("current", 2));
}

/// The group's committed offset of partition 0 of `topic` (`Ok(None)`: none) as a consumer of
/// `isolation` asks for it: `read_committed` sets OffsetFetch's `require_stable`, so librdkafka
/// retries while a transaction holds the offset, until `within` (then `Err`).
fn committed_offset(
    bootstrap: &str,
    group: &str,
    topic: &str,
    isolation: &str,
    within: Duration,
) -> Result<Option<i64>, KafkaError> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(topic, 0);
    let committed = consumer.committed_offsets(wanted, within)?;
    Ok(
        match committed.find_partition(topic, 0).map(|p| p.offset()) {
            Some(Offset::Offset(offset)) => Some(offset),
            _ => None,
        },
    )
}

#[test]
fn offsets_sent_with_a_transaction_are_committed_only_when_it_commits() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let (input, output, group) = ("txn-offsets-in", "txn-offsets-out", "txn-offsets-group");
    create_topic(&bootstrap, input);
    create_topic(&bootstrap, output);
    let group_member: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let metadata = group_member.group_metadata().expect("group metadata");
    let producer = transactional_producer(&bootstrap, "txn-offsets-producer");
    let offsets_at = |offset: i64| {
        let mut offsets = TopicPartitionList::new();
        offsets
            .add_partition_offset(input, 0, Offset::Offset(offset))
            .expect("offset");
        offsets
    };

    producer.begin_transaction().expect("begin");
    send(&producer, output, &values("dropped", 1));
    producer
        .send_offsets_to_transaction(&offsets_at(5), &metadata, WAIT)
        .expect("send offsets");
    producer.abort_transaction(WAIT).expect("abort");
    let stable = |isolation, within| committed_offset(&bootstrap, group, input, isolation, within);
    assert_eq!(
        stable("read_committed", WAIT).expect("fetch"),
        None,
        "aborted"
    );

    producer.begin_transaction().expect("begin");
    send(&producer, output, &values("kept", 1));
    producer
        .send_offsets_to_transaction(&offsets_at(7), &metadata, WAIT)
        .expect("send offsets");
    assert_eq!(
        stable("read_uncommitted", WAIT).expect("fetch"),
        None,
        "visible before the commit"
    );
    // A stable fetch is held off while the transaction holds the offset.
    let held = stable("read_committed", Duration::from_secs(2));
    assert!(held.is_err(), "answered while pending: {held:?}");
    producer.commit_transaction(WAIT).expect("commit");
    assert_eq!(stable("read_committed", WAIT).expect("fetch"), Some(7));
}

#[test]
fn a_transaction_open_when_the_broker_is_killed_is_aborted_after_restart() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let topic = "txn-crash";
    create_topic(&bootstrap, topic);
    let producer = transactional_producer(&bootstrap, "txn-crash-producer");
    producer.begin_transaction().expect("begin");
    send(&producer, topic, &values("committed", 2));
    producer.commit_transaction(WAIT).expect("commit");
    producer.begin_transaction().expect("begin");
    send(&producer, topic, &values("in-flight", 3));
    drop(producer);

    broker.kill_and_restart();
    let bootstrap = broker.addr("kafka").to_string();
    // The restart aborts the interrupted transaction by itself: a plain record written after
    // it is readable with read_committed (an open transaction would hold it back), and
    // nothing of the interrupted one is.
    let plain: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    send(&plain, topic, &values("plain", 1));
    let committed: Vec<String> = [values("committed", 2), values("plain", 1)].concat();
    let got = read(
        &consumer(&bootstrap, topic, "read_committed"),
        committed.len(),
        Duration::from_millis(500),
    );
    assert_eq!(got, committed);
    let everything: Vec<String> = [
        values("committed", 2),
        values("in-flight", 3),
        values("plain", 1),
    ]
    .concat();
    let got = read(
        &consumer(&bootstrap, topic, "read_uncommitted"),
        everything.len(),
        Duration::from_millis(300),
    );
    assert_eq!(got, everything);
    // The id keeps working after the restart.
    let producer = transactional_producer(&bootstrap, "txn-crash-producer");
    producer.begin_transaction().expect("begin");
    send(&producer, topic, &values("after", 1));
    producer.commit_transaction(WAIT).expect("commit");
}

#[test]
fn a_transaction_past_its_timeout_is_aborted_and_its_producer_fenced() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let topic = "txn-timeout";
    create_topic(&bootstrap, topic);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("transactional.id", "txn-timeout-producer")
        .set("transaction.timeout.ms", "1500")
        .set("message.timeout.ms", "1500")
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    producer.init_transactions(WAIT).expect("init_transactions");
    producer.begin_transaction().expect("begin");
    send(&producer, topic, &values("expired", 2));
    // Twice the timeout: the coordinator looks every 500 ms.
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        producer.commit_transaction(WAIT).is_err(),
        "a timed-out transaction committed"
    );
    // The abort marker lets read_committed past it: a plain record after it is read.
    let plain: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    send(&plain, topic, &values("plain", 1));
    let got = read(
        &consumer(&bootstrap, topic, "read_committed"),
        1,
        Duration::from_millis(500),
    );
    assert_eq!(got, values("plain", 1));
}

#[test]
fn a_commit_accepted_before_the_broker_is_killed_is_completed_after_restart() {
    use tributary_kafka::txn::NAMESPACE;
    use tributary_kafka::txn::state::{Status, TxnMeta};

    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let topic = "txn-accepted";
    let id = "txn-accepted-producer";
    create_topic(&bootstrap, topic);
    let producer = transactional_producer(&bootstrap, id);
    producer.begin_transaction().expect("begin");
    send(&producer, topic, &values("accepted", 3));
    drop(producer);

    // What a kill right after EndTxn(commit) was stored leaves: PrepareCommit, no marker.
    broker.kill_prepare_restart(|root| {
        let path = crate::broker::data_dir_in(root).join("metadata.redb");
        let meta = tributary::broker::metadata::MetaStore::open(&path).expect("open metadata");
        let stored = meta
            .get_record(NAMESPACE, id)
            .expect("read")
            .expect("stored");
        let mut state = TxnMeta::decode(stored).expect("decodes");
        assert_eq!(state.status, Status::Ongoing);
        state.status = Status::PrepareCommit;
        meta.put_record(NAMESPACE, id, &state.encode())
            .expect("write");
    });
    let bootstrap = broker.addr("kafka").to_string();
    let got = read(
        &consumer(&bootstrap, topic, "read_committed"),
        3,
        Duration::from_millis(300),
    );
    assert_eq!(got, values("accepted", 3), "the accepted commit completed");
}
