//! A consume-transform-produce loop with librdkafka (the `rdkafka` crate) over 100,000 records
//! and a broker SIGKILLed in the middle: the acceptance of issue 18 for exactly-once processing.
//!
//! The loop does what a real application does: it reads the input `read_committed` from the
//! group's committed offsets, writes one transformed record per input record and sends the
//! consumed offsets with each transaction (`send_offsets_to_transaction`). On an abortable error
//! it aborts and starts again from the committed offsets; on a fatal one (fenced, epoch lost with
//! the restart) it builds a new producer, whose `init_transactions` fences the old one. The
//! broker keeps its port across the restart, so the clients keep their bootstrap address. The
//! kill lands in an open transaction: the loop holds one halfway, its first half flushed to the
//! broker, until the broker is back.
//! Afterwards every input record must be in the output exactly once as `read_committed` sees it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerGroupMetadata};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};

use crate::broker::TestBroker;

const INPUT: &str = "ctp-input";
const OUTPUT: &str = "ctp-output";
const GROUP: &str = "ctp-group";
const TRANSACTIONAL_ID: &str = "ctp-loop";
const PARTITIONS: i32 = 4;
const RECORDS: usize = 100_000;
/// Input records per transaction.
const PER_TRANSACTION: usize = 700;
/// The whole loop, restart included, must be done by then.
const DEADLINE: Duration = Duration::from_secs(240);
const STEP: Duration = Duration::from_secs(30);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("free port")
        .port()
}

/// Settings every client shares: reconnect fast while the broker is down.
fn client_config(bootstrap: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", bootstrap)
        .set("reconnect.backoff.ms", "20")
        .set("reconnect.backoff.max.ms", "200")
        .set("retry.backoff.ms", "20")
        .set("retry.backoff.max.ms", "200");
    config
}

fn create_topics(bootstrap: &str) {
    let admin: AdminClient<DefaultClientContext> =
        client_config(bootstrap).create().expect("admin client");
    let topics =
        [INPUT, OUTPUT].map(|name| NewTopic::new(name, PARTITIONS, TopicReplication::Fixed(1)));
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let created = runtime
        .block_on(admin.create_topics(&topics, &AdminOptions::new()))
        .expect("create topics");
    assert_eq!(created, vec![Ok(INPUT.to_owned()), Ok(OUTPUT.to_owned())]);
}

/// Writes input record `id` (its value is the id) to partition `id % PARTITIONS`.
fn write_input(bootstrap: &str) {
    let producer: BaseProducer = client_config(bootstrap)
        .set("linger.ms", "20")
        .set("batch.num.messages", "2000")
        .set("queue.buffering.max.messages", "200000")
        .create()
        .expect("producer");
    for id in 0..RECORDS {
        let value = id.to_string();
        let partition = (id % PARTITIONS as usize) as i32;
        producer
            .send(
                BaseRecord::<(), _>::to(INPUT)
                    .partition(partition)
                    .payload(&value),
            )
            .unwrap_or_else(|(err, _)| panic!("send input {id}: {err}"));
        producer.poll(Duration::ZERO);
    }
    producer.flush(STEP).expect("flush the input");
}

fn transactional_producer(bootstrap: &str) -> Result<BaseProducer, KafkaError> {
    let producer: BaseProducer = client_config(bootstrap)
        .set("transactional.id", TRANSACTIONAL_ID)
        .set("transaction.timeout.ms", "10000")
        .set("message.timeout.ms", "10000")
        .set("linger.ms", "5")
        .create()?;
    producer.init_transactions(STEP)?;
    Ok(producer)
}

/// A consumer of every input partition from the group's committed offsets (from the start when
/// there are none), `read_committed` so its offset fetch waits for pending transactions.
fn input_consumer(bootstrap: &str) -> BaseConsumer {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", GROUP)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "50")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(INPUT, partition, Offset::Stored)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    consumer
}

/// What the loop thread shares with the test.
#[derive(Default)]
struct Progress {
    /// Input records whose transaction committed.
    committed: AtomicUsize,
    aborted: AtomicUsize,
    producers: AtomicUsize,
    stop: AtomicBool,
    /// Set by the test: the next transaction stops halfway, its first half flushed to the
    /// broker, and sets `held` until the test clears `hold` (after the kill and restart).
    hold: AtomicBool,
    held: AtomicBool,
}

/// One input record turned into its output record.
fn transform(value: &[u8]) -> String {
    format!("out-{}", String::from_utf8_lossy(value))
}

/// Why a transaction did not commit, as the application must react to it.
enum Failure {
    /// Abort, then read again from the committed offsets.
    Abort,
    /// Drop the producer and build a new one.
    Fatal,
}

fn classify(error: &KafkaError) -> Failure {
    match error {
        KafkaError::Transaction(error) if error.txn_requires_abort() => Failure::Abort,
        _ => Failure::Fatal,
    }
}

/// Reads up to [`PER_TRANSACTION`] records (less when the input pauses for 200 ms).
fn next_batch(consumer: &BaseConsumer) -> Vec<(i32, i64, String)> {
    let mut batch = Vec::with_capacity(PER_TRANSACTION);
    let mut idle_since = Instant::now();
    while batch.len() < PER_TRANSACTION && idle_since.elapsed() < Duration::from_millis(200) {
        // Errors while the broker is down are connection errors: librdkafka reconnects.
        if let Some(Ok(message)) = consumer.poll(Duration::from_millis(50)) {
            let value = transform(message.payload().unwrap_or_default());
            batch.push((message.partition(), message.offset(), value));
            idle_since = Instant::now();
        }
    }
    batch
}

/// One transaction: the output records of `batch` and the offsets after it.
fn process(
    producer: &BaseProducer,
    metadata: &ConsumerGroupMetadata,
    batch: &[(i32, i64, String)],
    progress: &Progress,
) -> Result<(), KafkaError> {
    producer.begin_transaction()?;
    let mut next: HashMap<i32, i64> = HashMap::new();
    for (index, (partition, offset, value)) in batch.iter().enumerate() {
        if index == batch.len() / 2 && progress.hold.load(Ordering::SeqCst) {
            // The kill lands in an open transaction whose records are in the log.
            producer.flush(STEP)?;
            progress.held.store(true, Ordering::SeqCst);
            while progress.hold.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(5));
            }
        }
        let record = BaseRecord::<(), _>::to(OUTPUT)
            .partition(*partition)
            .payload(value);
        if let Err((error, _)) = producer.send(record) {
            return Err(error);
        }
        producer.poll(Duration::ZERO);
        next.insert(*partition, offset + 1);
    }
    let mut offsets = TopicPartitionList::new();
    for (partition, offset) in next {
        offsets.add_partition_offset(INPUT, partition, Offset::Offset(offset))?;
    }
    producer.send_offsets_to_transaction(&offsets, metadata, STEP)?;
    producer.commit_transaction(STEP)
}

/// The application: runs until `progress.stop`, rebuilding what each failure requires.
fn run_loop(bootstrap: &str, progress: &Progress) {
    let mut producer = None;
    while !progress.stop.load(Ordering::SeqCst) {
        let current = match producer.take() {
            Some(current) => current,
            None => match transactional_producer(bootstrap) {
                Ok(new) => {
                    progress.producers.fetch_add(1, Ordering::SeqCst);
                    new
                }
                Err(_) => {
                    thread::sleep(Duration::from_millis(100));
                    continue;
                }
            },
        };
        // From the committed offsets again after any failure.
        let consumer = input_consumer(bootstrap);
        let metadata = consumer.group_metadata().expect("group metadata");
        let failure = loop {
            if progress.stop.load(Ordering::SeqCst) {
                break None;
            }
            let batch = next_batch(&consumer);
            if batch.is_empty() {
                continue;
            }
            match process(&current, &metadata, &batch, progress) {
                Ok(()) => {
                    progress.committed.fetch_add(batch.len(), Ordering::SeqCst);
                }
                Err(error) => break Some(classify(&error)),
            }
        };
        match failure {
            Some(Failure::Abort) => {
                progress.aborted.fetch_add(1, Ordering::SeqCst);
                if current.abort_transaction(STEP).is_ok() {
                    producer = Some(current);
                }
            }
            Some(Failure::Fatal) | None => {}
        }
    }
}

fn committed_watcher(bootstrap: &str) -> BaseConsumer {
    client_config(bootstrap)
        .set("group.id", GROUP)
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer")
}

/// The sum of the group's committed input offsets (0 while the broker does not answer).
fn committed_offsets(watcher: &BaseConsumer) -> usize {
    let mut wanted = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        wanted.add_partition(INPUT, partition);
    }
    let Ok(committed) = watcher.committed_offsets(wanted, Duration::from_secs(5)) else {
        return 0;
    };
    committed
        .elements()
        .iter()
        .map(|element| match element.offset() {
            Offset::Offset(offset) => usize::try_from(offset).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// How many records `topic`'s partitions hold as `read_committed` sees them, by value.
fn read_committed_output(bootstrap: &str, expected: usize) -> HashMap<String, usize> {
    let consumer: BaseConsumer = client_config(bootstrap)
        .set("group.id", "ctp-verify")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", "50")
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        assignment
            .add_partition_offset(OUTPUT, partition, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let mut seen: HashMap<String, usize> = HashMap::new();
    let mut total = 0;
    let deadline = Instant::now() + STEP;
    let mut quiet_since = Instant::now();
    // Until everything expected arrived and then a second with nothing more (duplicates).
    while Instant::now() < deadline
        && (total < expected || quiet_since.elapsed() < Duration::from_secs(1))
    {
        if let Some(message) = consumer.poll(Duration::from_millis(100)) {
            let message = message.expect("consume the output");
            let value = String::from_utf8_lossy(message.payload().unwrap_or_default());
            *seen.entry(value.into_owned()).or_default() += 1;
            total += 1;
            quiet_since = Instant::now();
        }
    }
    seen
}

#[test]
fn consume_transform_produce_over_100k_records_survives_a_sigkill_exactly_once() {
    let port = free_port().to_string();
    let mut broker = TestBroker::start_with(&["--kafka-port", &port]);
    let bootstrap = broker.addr("kafka").to_string();
    create_topics(&bootstrap);
    write_input(&bootstrap);
    let started = Instant::now();

    let progress = Arc::new(Progress::default());
    let app = {
        let (bootstrap, progress) = (bootstrap.clone(), Arc::clone(&progress));
        thread::spawn(move || run_loop(&bootstrap, &progress))
    };
    // Kill in the middle, inside a transaction whose first half is written.
    while progress.committed.load(Ordering::SeqCst) < RECORDS * 2 / 5 {
        assert!(started.elapsed() < DEADLINE, "the loop made no progress");
        assert!(!app.is_finished(), "the loop stopped");
        thread::sleep(Duration::from_millis(10));
    }
    progress.hold.store(true, Ordering::SeqCst);
    while !progress.held.load(Ordering::SeqCst) {
        assert!(started.elapsed() < DEADLINE, "no transaction was held");
        assert!(!app.is_finished(), "the loop stopped");
        thread::sleep(Duration::from_millis(5));
    }
    let at_kill = progress.committed.load(Ordering::SeqCst);
    broker.kill_and_restart();
    assert_eq!(broker.addr("kafka").to_string(), bootstrap);
    progress.hold.store(false, Ordering::SeqCst);

    // Done when the group's committed offsets reach the end of every input partition (the
    // loop's own count may miss a commit whose answer the kill lost).
    let watcher = committed_watcher(&bootstrap);
    loop {
        let committed = committed_offsets(&watcher);
        if committed == RECORDS {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "only {committed} of {RECORDS} input records committed"
        );
        assert!(!app.is_finished(), "the loop stopped");
        thread::sleep(Duration::from_millis(200));
    }
    progress.stop.store(true, Ordering::SeqCst);
    app.join().expect("the loop panicked");
    let processing = started.elapsed();
    assert!(progress.committed.load(Ordering::SeqCst) <= RECORDS);

    let seen = read_committed_output(&bootstrap, RECORDS);
    let missing: Vec<usize> = (0..RECORDS)
        .filter(|id| !seen.contains_key(&format!("out-{id}")))
        .collect();
    let duplicated: Vec<(&String, &usize)> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty(),
        "{} input records missing from the output, first {:?}",
        missing.len(),
        &missing[..missing.len().min(10)]
    );
    assert!(
        duplicated.is_empty(),
        "{} output records more than once, e.g. {:?}",
        duplicated.len(),
        &duplicated[..duplicated.len().min(10)]
    );
    assert_eq!(seen.len(), RECORDS, "unexpected output records");
    eprintln!(
        "{RECORDS} records in {processing:?}; killed after {at_kill}; {} aborts, {} producers",
        progress.aborted.load(Ordering::SeqCst),
        progress.producers.load(Ordering::SeqCst)
    );
}
