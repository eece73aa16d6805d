//! An offset commit made from a rebalance's revoke callback (librdkafka, the `rdkafka` crate)
//! by a member the group has moved on without: member A stops polling past its
//! `max.poll.interval.ms` (its rebalance timeout), B joins, the group completes a generation
//! with B alone, and only then does A poll again and commit synchronously in its revoke
//! callback. Kafka's group coordinator refuses that commit (A is no longer a member of the
//! current generation), so the stale positions never overwrite what B commits; a member that
//! revokes promptly, while the group waits for it, commits with NO_ERROR. A commit from outside
//! the group protocol (generation -1, no member id: a standalone consumer) is accepted only
//! while the group has no members, UNKNOWN_MEMBER_ID otherwise, as Kafka.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::KafkaResult;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use crate::broker::TestBroker;
use crate::kafka_txn::{WAIT, create_topic};

/// Commits synchronously in every revoke callback and keeps the outcomes.
#[derive(Clone, Default)]
struct CommitOnRevoke {
    outcomes: Arc<Mutex<Vec<KafkaResult<()>>>>,
}

impl ClientContext for CommitOnRevoke {}

impl ConsumerContext for CommitOnRevoke {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(revoked) = rebalance
            && revoked.count() > 0
        {
            let outcome = consumer.commit_consumer_state(CommitMode::Sync);
            self.outcomes.lock().expect("outcomes").push(outcome);
        }
    }
}

fn member(bootstrap: &str, group: &str) -> (BaseConsumer<CommitOnRevoke>, CommitOnRevoke) {
    let context = CommitOnRevoke::default();
    let consumer: BaseConsumer<CommitOnRevoke> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("max.poll.interval.ms", "6000")
        .set("heartbeat.interval.ms", "500")
        .set("fetch.wait.max.ms", "100")
        .create_with_context(context.clone())
        .expect("consumer");
    (consumer, context)
}

/// Polls `consumer` until it is assigned `partitions` partitions and read `records` records.
fn poll_until(consumer: &BaseConsumer<CommitOnRevoke>, partitions: usize, records: usize) {
    let deadline = Instant::now() + WAIT;
    let mut read = 0;
    loop {
        let assigned = consumer.assignment().map(|a| a.count()).unwrap_or(0);
        if assigned == partitions && read >= records {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{assigned} partitions assigned and {read} records read"
        );
        if let Some(Ok(_)) = consumer.poll(Duration::from_millis(100)) {
            read += 1;
        }
    }
}

fn committed(bootstrap: &str, group: &str, topic: &str) -> Vec<Offset> {
    let reader: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut wanted = TopicPartitionList::new();
    wanted.add_partition(topic, 0);
    wanted.add_partition(topic, 1);
    let answer = reader.committed_offsets(wanted, WAIT).expect("committed");
    answer.elements().iter().map(|e| e.offset()).collect()
}

fn setup(topic: &str) -> (TestBroker, String) {
    let mut broker =
        TestBroker::start_with_env(&[], &[("TRIBUTARY_KAFKA_DEFAULT_PARTITIONS", "2")]);
    let bootstrap = broker.addr("kafka").to_string();
    create_topic(&bootstrap, topic);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    for i in 0..20 {
        let value = format!("record-{i}");
        producer
            .send(
                BaseRecord::<(), _>::to(topic)
                    .partition(i % 2)
                    .payload(&value),
            )
            .expect("send");
    }
    producer.flush(WAIT).expect("flush");
    (broker, bootstrap)
}

#[test]
fn a_commit_in_the_revoke_callback_after_the_group_moved_on_is_refused() {
    let (topic, group) = ("revoke-late", "revoke-late-group");
    let (_broker, bootstrap) = setup(topic);
    let (a, a_context) = member(&bootstrap, group);
    a.subscribe(&[topic]).expect("subscribe");
    poll_until(&a, 2, 20);

    // A stops polling; B joins, and the group goes on without A once A's rebalance timeout
    // (its max.poll.interval.ms) is over.
    let (b, _) = member(&bootstrap, group);
    b.subscribe(&[topic]).expect("subscribe");
    poll_until(&b, 2, 0);
    let stale_commits = a_context.outcomes.lock().expect("outcomes").len();
    assert_eq!(stale_commits, 0, "A's revoke ran before it polled");

    // Now A polls: its revoke callback commits what it read, too late.
    let deadline = Instant::now() + WAIT;
    while a_context.outcomes.lock().expect("outcomes").is_empty() {
        assert!(Instant::now() < deadline, "A's revoke callback never ran");
        let _ = a.poll(Duration::from_millis(100));
        let _ = b.poll(Duration::from_millis(10));
    }
    let outcome = a_context.outcomes.lock().expect("outcomes")[0].clone();
    let code = match &outcome {
        Err(rdkafka::error::KafkaError::ConsumerCommit(code)) => *code,
        other => panic!("the late commit was answered {other:?}"),
    };
    // Kafka's coordinator checks membership first: A was removed with the new generation.
    assert_eq!(code, RDKafkaErrorCode::UnknownMemberId, "late commit");
    // Nothing of A's reached the group.
    assert_eq!(
        committed(&bootstrap, group, topic),
        vec![Offset::Invalid, Offset::Invalid]
    );
}

#[test]
fn a_commit_in_a_prompt_revoke_callback_succeeds() {
    let (topic, group) = ("revoke-prompt", "revoke-prompt-group");
    let (_broker, bootstrap) = setup(topic);
    let (a, a_context) = member(&bootstrap, group);
    a.subscribe(&[topic]).expect("subscribe");
    poll_until(&a, 2, 20);
    let (b, _) = member(&bootstrap, group);
    b.subscribe(&[topic]).expect("subscribe");
    // Both keep polling: A revokes (and commits) while the group waits for it.
    let deadline = Instant::now() + WAIT;
    loop {
        let _ = a.poll(Duration::from_millis(50));
        let _ = b.poll(Duration::from_millis(50));
        let a_has = a.assignment().map(|x| x.count()).unwrap_or(0);
        let b_has = b.assignment().map(|x| x.count()).unwrap_or(0);
        if a_has == 1 && b_has == 1 {
            break;
        }
        assert!(Instant::now() < deadline, "no rebalance to 1 + 1");
    }
    let outcomes = a_context.outcomes.lock().expect("outcomes").clone();
    assert!(!outcomes.is_empty(), "A's revoke callback never ran");
    assert!(outcomes[0].is_ok(), "prompt revoke commit: {outcomes:?}");
    assert_eq!(
        committed(&bootstrap, group, topic),
        vec![Offset::Offset(10), Offset::Offset(10)]
    );
}

#[test]
fn a_commit_from_outside_the_group_protocol_is_refused_while_the_group_has_members() {
    let (topic, group) = ("revoke-standalone", "revoke-standalone-group");
    let (_broker, bootstrap) = setup(topic);
    let (a, _) = member(&bootstrap, group);
    a.subscribe(&[topic]).expect("subscribe");
    poll_until(&a, 2, 0);
    // A consumer without a group membership (assign, generation -1) commits into the group.
    let standalone: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut offsets = TopicPartitionList::new();
    offsets
        .add_partition_offset(topic, 0, Offset::Offset(5))
        .expect("offset");
    match standalone.commit(&offsets, CommitMode::Sync) {
        Err(rdkafka::error::KafkaError::ConsumerCommit(code)) => {
            assert_eq!(code, RDKafkaErrorCode::UnknownMemberId);
        }
        other => panic!("a commit into an active group was answered {other:?}"),
    }
    // Once the group is empty the same commit is accepted.
    a.unsubscribe();
    drop(a);
    let deadline = Instant::now() + WAIT;
    while standalone.commit(&offsets, CommitMode::Sync).is_err() {
        assert!(Instant::now() < deadline, "refused after the member left");
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(committed(&bootstrap, group, topic)[0], Offset::Offset(5));
}
