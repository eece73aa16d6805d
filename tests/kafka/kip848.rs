//! KIP-848 consumer groups with librdkafka (`group.protocol=consumer`, the `rdkafka` crate):
//! three members over twelve partitions join and leave while records are produced, each
//! committing synchronously after every record it processes and again in its revoke callback.
//! The group's server-side assignment moves a partition only once its previous owner revoked
//! it, and every commit carries the member epoch the partition was held at, so every record is
//! processed exactly once.
//!
//! A member stores a record's offset only once it has processed the record
//! (`enable.auto.offset.store=false`), so a commit never covers a record the application has
//! not seen: dropping an `rdkafka` consumer polls (and discards) what it had fetched before the
//! revoke callback of its close runs, and with librdkafka's automatic store that callback's
//! commit would skip those records for the next owner. ConsumerGroupDescribe and ListGroups v5 are checked on the wire while
//! the group is live, and a classic member is refused by the consumer group.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka_protocol::messages::consumer_group_heartbeat_request::TopicPartitions as HeartbeatTopic;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::{
    ApiKey, ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse,
    ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, GroupId, ListGroupsRequest,
    ListGroupsResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::broker::TestBroker;
use crate::kafka_txn::{WAIT, create_topic};
use crate::kafka_wire::call;

const PARTITIONS: usize = 12;

/// Commits synchronously on every revocation; keeps every commit failure.
#[derive(Clone, Default)]
struct Member {
    failures: Arc<Mutex<Vec<String>>>,
}

impl ClientContext for Member {}

impl ConsumerContext for Member {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance
            && revoked.count() > 0
        {
            record_commit(
                &self.failures,
                consumer.commit_consumer_state(CommitMode::Sync),
            );
        }
    }
}

fn record_commit(failures: &Mutex<Vec<String>>, outcome: Result<(), KafkaError>) {
    match outcome {
        Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
        Err(error) => failures.lock().expect("failures").push(error.to_string()),
    }
}

fn member(bootstrap: &str, group: &str, name: &str) -> (BaseConsumer<Member>, Member) {
    let context = Member::default();
    let consumer: BaseConsumer<Member> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("group.protocol", "consumer")
        .set("client.id", name)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "50")
        .set("enable.auto.offset.store", "false")
        .create_with_context(context.clone())
        .expect("consumer");
    (consumer, context)
}

/// Polls every consumer once, processing (recording) what it returns and committing after it.
struct Driver {
    seen: BTreeMap<String, usize>,
    tolerate_transport: bool,
}

impl Driver {
    fn poll(&mut self, consumers: &[&(BaseConsumer<Member>, Member)]) {
        for (consumer, context) in consumers {
            if let Some(result) = consumer.poll(Duration::from_millis(20)) {
                let message = match result {
                    Ok(message) => message,
                    // A restarting broker is seen as transport errors while it is down.
                    Err(error)
                        if self.tolerate_transport
                            && matches!(
                                error.rdkafka_error_code(),
                                Some(
                                    RDKafkaErrorCode::AllBrokersDown
                                        | RDKafkaErrorCode::BrokerTransportFailure
                                )
                            ) =>
                    {
                        continue;
                    }
                    Err(error) => panic!("consume: {error}"),
                };
                let value = String::from_utf8_lossy(message.payload().unwrap_or_default());
                *self.seen.entry(value.into_owned()).or_default() += 1;
                // Processed: only now may a commit cover it.
                if let Err(error) = consumer.store_offset_from_message(&message) {
                    context
                        .failures
                        .lock()
                        .expect("failures")
                        .push(error.to_string());
                }
                drop(message);
                record_commit(
                    &context.failures,
                    consumer.commit_consumer_state(CommitMode::Sync),
                );
            }
        }
    }
}

/// Keeps every failed delivery, so a record the test misses is told from one never written.
#[derive(Clone, Default)]
struct Deliveries {
    failed: Arc<Mutex<Vec<String>>>,
}

impl ClientContext for Deliveries {}

impl ProducerContext for Deliveries {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: Self::DeliveryOpaque) {
        if let Err((error, message)) = result {
            self.failed
                .lock()
                .expect("failed")
                .push(format!("partition {}: {error}", message.partition()));
        }
    }
}

fn producer(bootstrap: &str) -> (ThreadedProducer<Deliveries>, Deliveries) {
    let context = Deliveries::default();
    let producer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("linger.ms", "5")
        .create_with_context(context.clone())
        .expect("producer");
    (producer, context)
}

fn produce(producer: &ThreadedProducer<Deliveries>, topic: &str, range: std::ops::Range<usize>) {
    for i in range {
        let value = format!("r-{i}");
        producer
            .send(
                BaseRecord::<(), _>::to(topic)
                    .partition((i % PARTITIONS) as i32)
                    .payload(&value),
            )
            .unwrap_or_else(|(err, _)| panic!("send {value}: {err}"));
    }
}

fn assigned(consumer: &BaseConsumer<Member>) -> usize {
    consumer.assignment().map(|a| a.count()).unwrap_or(0)
}

fn describe(bootstrap: &str, group: &str) -> ConsumerGroupDescribeResponse {
    let mut stream = TcpStream::connect(bootstrap).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let request = ConsumerGroupDescribeRequest::default()
        .with_group_ids(vec![GroupId(StrBytes::from_string(group.to_owned()))])
        .with_include_authorized_operations(true);
    call(&mut stream, ApiKey::ConsumerGroupDescribe, 1, &request)
}

#[test]
fn three_consumer_protocol_members_rebalance_with_nothing_lost_or_doubled() {
    let started = Instant::now();
    let (topic, group) = ("kip848-orders", "kip848-group");
    let mut broker = TestBroker::start_with_env(
        &[],
        &[
            ("TRIBUTARY_KAFKA_DEFAULT_PARTITIONS", "12"),
            (
                "TRIBUTARY_KAFKA_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS",
                "200",
            ),
        ],
    );
    let bootstrap = broker.addr("kafka").to_string();
    create_topic(&bootstrap, topic);
    let (producer, deliveries) = producer(&bootstrap);
    let mut driver = Driver {
        seen: BTreeMap::new(),
        tolerate_transport: false,
    };

    // One member takes all twelve partitions.
    let first = member(&bootstrap, group, "first");
    first.0.subscribe(&[topic]).expect("subscribe");
    produce(&producer, topic, 0..600);
    let deadline = Instant::now() + WAIT;
    while assigned(&first.0) < PARTITIONS || driver.seen.len() < 300 {
        assert!(
            Instant::now() < deadline,
            "first member: {} assigned",
            assigned(&first.0)
        );
        driver.poll(&[&first]);
    }

    // Two more join while records keep coming: 4 + 4 + 4.
    let second = member(&bootstrap, group, "second");
    second.0.subscribe(&[topic]).expect("subscribe");
    let third = member(&bootstrap, group, "third");
    third.0.subscribe(&[topic]).expect("subscribe");
    produce(&producer, topic, 600..1_200);
    let deadline = Instant::now() + WAIT;
    loop {
        driver.poll(&[&first, &second, &third]);
        let counts = [assigned(&first.0), assigned(&second.0), assigned(&third.0)];
        if counts == [4, 4, 4] {
            break;
        }
        assert!(Instant::now() < deadline, "no 4/4/4 split: {counts:?}");
    }

    // The group as ConsumerGroupDescribe shows it: three members, every partition once.
    let described = describe(&bootstrap, group);
    let entry = &described.groups[0];
    assert_eq!(entry.error_code, 0, "{:?}", entry.error_message);
    assert_eq!(entry.members.len(), 3);
    assert_eq!(entry.assignor_name.as_str(), "uniform");
    let mut owned = BTreeSet::new();
    for described_member in &entry.members {
        assert_eq!(described_member.member_type, 1);
        assert!(described_member.member_epoch > 0);
        for topic_partitions in &described_member.target_assignment.topic_partitions {
            assert_eq!(topic_partitions.topic_name.as_str(), topic);
            for partition in &topic_partitions.partitions {
                assert!(
                    owned.insert(*partition),
                    "partition {partition} targeted twice"
                );
            }
        }
    }
    assert_eq!(owned.len(), PARTITIONS);
    assert!(entry.group_epoch >= 3 && entry.assignment_epoch == entry.group_epoch);
    assert!(entry.authorized_operations > 0);

    // ListGroups v5 tells the consumer group by its type.
    let mut stream = TcpStream::connect(&bootstrap).expect("connect");
    let listed: ListGroupsResponse = call(
        &mut stream,
        ApiKey::ListGroups,
        5,
        &ListGroupsRequest::default()
            .with_types_filter(vec![StrBytes::from_static_str("consumer")]),
    );
    let ours = listed
        .groups
        .iter()
        .find(|listed| listed.group_id.as_str() == group)
        .expect("the group is listed as a consumer group");
    assert_eq!(ours.group_type.as_str(), "consumer");
    assert_eq!(ours.protocol_type.as_str(), "consumer");

    // A classic member cannot join the consumer group.
    let classic: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", group)
        .set("session.timeout.ms", "6000")
        .create()
        .expect("classic consumer");
    classic.subscribe(&[topic]).expect("subscribe");
    let deadline = Instant::now() + Duration::from_secs(10);
    let refusal = loop {
        assert!(
            Instant::now() < deadline,
            "the classic member was never refused"
        );
        driver.poll(&[&first, &second, &third]);
        if let Some(Err(error)) = classic.poll(Duration::from_millis(20)) {
            break error;
        }
    };
    assert_eq!(
        refusal.rdkafka_error_code(),
        Some(RDKafkaErrorCode::InconsistentGroupProtocol),
        "{refusal}"
    );
    drop(classic);

    // The first member leaves (after a last commit); the other two take over 6 + 6.
    produce(&producer, topic, 1_200..1_800);
    record_commit(
        &first.1.failures,
        first.0.commit_consumer_state(CommitMode::Sync),
    );
    let (first_consumer, first_context) = first;
    drop(first_consumer);
    produce(&producer, topic, 1_800..2_400);
    producer.flush(WAIT).expect("flush");
    let deadline = Instant::now() + WAIT;
    loop {
        driver.poll(&[&second, &third]);
        let counts = [assigned(&second.0), assigned(&third.0)];
        if counts == [6, 6] && driver.seen.len() == 2_400 {
            break;
        }
        if Instant::now() >= deadline {
            let failed = deliveries.failed.lock().expect("failed").clone();
            assert!(failed.is_empty(), "deliveries failed: {failed:?}");
            let mut missing: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for i in (0..2_400).filter(|i| !driver.seen.contains_key(&format!("r-{i}"))) {
                missing
                    .entry(i % PARTITIONS)
                    .or_default()
                    .push(i / PARTITIONS);
            }
            let missing: Vec<_> = missing
                .iter()
                .map(|(partition, offsets)| (partition, offsets.len(), offsets.first()))
                .collect();
            panic!(
                "{counts:?} assigned, {} of 2400 records read; missing (partition, count, first offset): {missing:?}",
                driver.seen.len()
            );
        }
    }

    let failed = deliveries.failed.lock().expect("failed").clone();
    assert!(failed.is_empty(), "deliveries failed: {failed:?}");
    // Exactly once: every record processed, none twice; no commit refused.
    let doubled: Vec<_> = driver
        .seen
        .iter()
        .filter(|(_, count)| **count > 1)
        .collect();
    assert!(doubled.is_empty(), "processed twice: {doubled:?}");
    let expected: BTreeSet<String> = (0..2_400).map(|i| format!("r-{i}")).collect();
    assert_eq!(
        driver.seen.keys().cloned().collect::<BTreeSet<_>>(),
        expected
    );
    for context in [&first_context, &second.1, &third.1] {
        let failures = context.failures.lock().expect("failures");
        assert!(failures.is_empty(), "commits refused: {failures:?}");
    }
    // The committed positions are the end of every partition.
    let mut wanted = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        wanted.add_partition(topic, partition as i32);
    }
    let committed = second.0.committed_offsets(wanted, WAIT).expect("committed");
    for element in committed.elements() {
        assert_eq!(
            element.offset(),
            Offset::Offset(200),
            "partition {}",
            element.partition()
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "took {:?}",
        started.elapsed()
    );
}

/// Group state is in memory: after a SIGKILL and restart the member's heartbeat gets
/// UNKNOWN_MEMBER_ID, librdkafka rejoins, and the member carries on from its committed
/// positions (kept by the offset store): nothing is lost, and only records whose commit the
/// restarted broker refused can be read again.
#[test]
fn a_consumer_protocol_member_rejoins_after_a_broker_restart() {
    let (topic, group) = ("kip848-restart", "kip848-restart-group");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
        .to_string();
    let mut broker = TestBroker::start_with_env(
        &["--kafka-port", &port],
        &[
            ("TRIBUTARY_KAFKA_DEFAULT_PARTITIONS", "12"),
            (
                "TRIBUTARY_KAFKA_GROUP_CONSUMER_HEARTBEAT_INTERVAL_MS",
                "200",
            ),
        ],
    );
    let bootstrap = broker.addr("kafka").to_string();
    create_topic(&bootstrap, topic);
    let (producer, deliveries) = producer(&bootstrap);
    let mut driver = Driver {
        seen: BTreeMap::new(),
        tolerate_transport: true,
    };
    let only = member(&bootstrap, group, "only");
    only.0.subscribe(&[topic]).expect("subscribe");
    produce(&producer, topic, 0..90);
    producer.flush(WAIT).expect("flush");
    let deadline = Instant::now() + WAIT;
    while driver.seen.len() < 90 {
        assert!(
            Instant::now() < deadline,
            "{} of 90 read",
            driver.seen.len()
        );
        driver.poll(&[&only]);
    }
    broker.kill_and_restart();
    assert_eq!(broker.addr("kafka").to_string(), bootstrap);
    produce(&producer, topic, 90..180);
    producer.flush(WAIT).expect("flush after the restart");
    let deadline = Instant::now() + WAIT;
    while driver.seen.len() < 180 {
        assert!(
            Instant::now() < deadline,
            "{} of 180 read",
            driver.seen.len()
        );
        driver.poll(&[&only]);
    }
    let quiet = Instant::now() + Duration::from_secs(1);
    while Instant::now() < quiet {
        driver.poll(&[&only]);
    }
    // Nothing lost. A record read between the restart and the rejoin cannot be committed
    // (the restarted broker does not know the member: UNKNOWN_MEMBER_ID, then librdkafka
    // drops the lost assignment), so it may be read again from the last commit: each
    // duplicate needs a refused commit, and no other commit is refused.
    assert_eq!(driver.seen.len(), 180);
    let described = describe(&bootstrap, group);
    assert_eq!(described.groups[0].members.len(), 1, "the member rejoined");
    let failures = only.1.failures.lock().expect("failures").clone();
    assert!(
        failures.iter().all(|failure| {
            failure.contains("AssignmentLost") || failure.contains("UnknownMemberId")
        }),
        "{failures:?}"
    );
    assert!(deliveries.failed.lock().expect("failed").is_empty());
    let doubled: usize = driver.seen.values().map(|count| count - 1).sum();
    assert!(
        doubled <= failures.len(),
        "{doubled} read again with {} refused commits: {failures:?}",
        failures.len()
    );
}

fn heartbeat(
    stream: &mut TcpStream,
    member: &str,
    epoch: i32,
    owned: Option<Vec<HeartbeatTopic>>,
    topic: &str,
) -> ConsumerGroupHeartbeatResponse {
    let mut request = ConsumerGroupHeartbeatRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("kip848-epochs-group")))
        .with_member_id(StrBytes::from_string(member.to_owned()))
        .with_member_epoch(epoch)
        .with_topic_partitions(owned);
    if epoch == 0 {
        request = request
            .with_rebalance_timeout_ms(30_000)
            .with_subscribed_topic_names(Some(vec![TopicName(StrBytes::from_string(
                topic.to_owned(),
            ))]));
    }
    let answer: ConsumerGroupHeartbeatResponse =
        call(stream, ApiKey::ConsumerGroupHeartbeat, 1, &request);
    assert_eq!(answer.error_code, 0, "{:?}", answer.error_message);
    answer
}

/// The partitions of a heartbeat's assignment, as the next heartbeat reports them owned.
fn owned(answer: &ConsumerGroupHeartbeatResponse) -> Vec<HeartbeatTopic> {
    let assignment = answer.assignment.as_ref().expect("an assignment");
    assignment
        .topic_partitions
        .iter()
        .map(|topic| {
            HeartbeatTopic::default()
                .with_topic_id(topic.topic_id)
                .with_partitions(topic.partitions.clone())
        })
        .collect()
}

fn partitions(owned: &[HeartbeatTopic]) -> BTreeSet<i32> {
    owned
        .iter()
        .flat_map(|t| t.partitions.iter().copied())
        .collect()
}

/// KIP-1251 (Kafka 4.3) on the wire: a member that moved to a new epoch while its commit at
/// the previous one was on its way has that commit written for the partitions it kept, and
/// refused STALE_MEMBER_EPOCH per partition for those it gave up; a commit from an epoch the
/// member never had is refused whole. librdkafka does not retry a refused manual commit, so
/// refusing the kept partitions (Kafka before 4.3) surfaces as a failed commit in the app.
#[test]
fn a_commit_from_the_previous_epoch_writes_the_partitions_still_held() {
    let (topic, group) = ("kip848-epochs", "kip848-epochs-group");
    let mut broker =
        TestBroker::start_with_env(&[], &[("TRIBUTARY_KAFKA_DEFAULT_PARTITIONS", "4")]);
    let bootstrap = broker.addr("kafka").to_string();
    create_topic(&bootstrap, topic);
    let mut stream = TcpStream::connect(&bootstrap).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    let a1 = heartbeat(&mut stream, "member-a", 0, Some(Vec::new()), topic);
    assert_eq!(a1.member_epoch, 1);
    let all = owned(&a1);
    assert_eq!(partitions(&all).len(), 4);
    let b = heartbeat(&mut stream, "member-b", 0, Some(Vec::new()), topic);
    assert_eq!(b.member_epoch, 2);
    // `a` is asked to give up half, then moves to epoch 2 once it has.
    let a = heartbeat(&mut stream, "member-a", 1, Some(all.clone()), topic);
    let kept = owned(&a);
    let a2 = heartbeat(&mut stream, "member-a", 1, Some(kept.clone()), topic);
    assert_eq!(a2.member_epoch, 2);
    let kept = partitions(&kept);
    assert_eq!(kept.len(), 2);

    let commit = |stream: &mut TcpStream, epoch: i32| -> BTreeMap<i32, i16> {
        let request = OffsetCommitRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str(group)))
            .with_generation_id_or_member_epoch(epoch)
            .with_member_id(StrBytes::from_static_str("member-a"))
            .with_topics(vec![
                OffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str(topic)))
                    .with_partitions(
                        (0..4)
                            .map(|index| {
                                OffsetCommitRequestPartition::default()
                                    .with_partition_index(index)
                                    .with_committed_offset(7)
                            })
                            .collect(),
                    ),
            ]);
        let answer: OffsetCommitResponse = call(stream, ApiKey::OffsetCommit, 9, &request);
        answer.topics[0]
            .partitions
            .iter()
            .map(|partition| (partition.partition_index, partition.error_code))
            .collect()
    };
    const STALE_MEMBER_EPOCH: i16 = 113;
    let expected: BTreeMap<i32, i16> = (0..4)
        .map(|index| {
            let code = if kept.contains(&index) {
                0
            } else {
                STALE_MEMBER_EPOCH
            };
            (index, code)
        })
        .collect();
    assert_eq!(commit(&mut stream, 1), expected);
    assert_eq!(
        commit(&mut stream, 3),
        (0..4).map(|index| (index, STALE_MEMBER_EPOCH)).collect()
    );
    // Only the kept partitions were written.
    let fetched: OffsetFetchResponse = call(
        &mut stream,
        ApiKey::OffsetFetch,
        7,
        &OffsetFetchRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str(group)))
            .with_topics(Some(vec![
                OffsetFetchRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str(topic)))
                    .with_partition_indexes((0..4).collect()),
            ])),
    );
    let written: BTreeSet<i32> = fetched.topics[0]
        .partitions
        .iter()
        .filter(|partition| partition.committed_offset == 7)
        .map(|partition| partition.partition_index)
        .collect();
    assert_eq!(written, kept);
}
