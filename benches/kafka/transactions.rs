//! `cargo bench --bench kafka transactions`: what Kafka transactions cost, same client, same
//! run, interleaved on fresh brokers (the default engine, `always`).
//!
//! - **Produce** (100 B values, 4 partitions, linger.ms=5): an idempotent producer (acks=all,
//!   what a transactional one uses) sending [`PRODUCE_RECORDS`] and flushing, against a
//!   transactional one sending the same records in transactions of 100 and of 1,000 records
//!   (begin, send, `commit_transaction`, which flushes and waits for the markers). records/s =
//!   records / (first send .. last flush or commit).
//! - **Fetch**: a topic filled by the transactional producer ([`FETCH_RECORDS`] in
//!   transactions of 1,000, one in ten aborted, so the aborted list and the markers are in the
//!   reads) read end to end by an assigned consumer with `read_committed` and with
//!   `read_uncommitted`: records/s = records delivered / time to the last one (the committed
//!   nine tenths for `read_committed`, all for `read_uncommitted`). Both read the same filled
//!   log, the first of the two alternating between repeats.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::Runtime;
use tributary_api::Durability;

use super::{Backend, CLIENT_DEADLINE, PARTITIONS, TOPIC, median, min, settle, start, stop};

const VALUE_LEN: usize = 100;
const PRODUCE_RECORDS: usize = 100_000;
const FETCH_RECORDS: usize = 200_000;
const FILL_TRANSACTION: usize = 1_000;
/// Every tenth transaction of the fill is aborted.
const ABORT_EVERY: usize = 10;
const STEP: Duration = Duration::from_secs(30);

fn producer(addr: SocketAddr, transactional: bool) -> BaseProducer {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", addr.to_string())
        .set("linger.ms", "5")
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("queue.buffering.max.messages", "200000");
    if transactional {
        config.set("transactional.id", "bench-txn");
    }
    let producer: BaseProducer = config.create().expect("producer");
    if transactional {
        producer.init_transactions(STEP).expect("init_transactions");
    }
    producer
}

/// Serves delivery reports until none is outstanding. The rdkafka crate's `flush` (which
/// `commit_transaction` calls first) polls in 100 ms slices that run to their end, so one left
/// to it adds up to 100 ms of client-side wait to every transaction (measured: ~130 ms per
/// transaction through `flush`, against 8-11 ms for confluent-kafka on the same broker).
fn drain(producer: &BaseProducer) {
    let deadline = Instant::now() + STEP;
    while producer.in_flight_count() > 0 {
        assert!(
            Instant::now() < deadline,
            "deliveries outstanding after {STEP:?}"
        );
        producer.poll(Duration::from_millis(1));
    }
}

/// Sends `count` records (waiting while the client queue is full).
fn send(producer: &BaseProducer, count: usize, value: &[u8]) {
    for _ in 0..count {
        loop {
            match producer.send(BaseRecord::<(), _>::to(TOPIC).payload(value)) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    producer.poll(Duration::from_millis(5));
                }
                Err((failure, _)) => panic!("send: {failure}"),
            }
        }
        producer.poll(Duration::ZERO);
    }
}

/// records/s of one producer run: `per_transaction` None is the idempotent producer.
fn produce_run(addr: SocketAddr, per_transaction: Option<usize>) -> f64 {
    let value = vec![0x5a_u8; VALUE_LEN];
    let producer = producer(addr, per_transaction.is_some());
    let started = Instant::now();
    match per_transaction {
        None => {
            send(&producer, PRODUCE_RECORDS, &value);
            drain(&producer);
            producer.flush(STEP).expect("flush");
        }
        Some(size) => {
            for _ in 0..PRODUCE_RECORDS / size {
                producer.begin_transaction().expect("begin");
                send(&producer, size, &value);
                drain(&producer);
                producer.commit_transaction(STEP).expect("commit");
            }
        }
    }
    PRODUCE_RECORDS as f64 / started.elapsed().as_secs_f64()
}

/// Fills the topic with [`FETCH_RECORDS`] in transactions; returns the committed count.
fn fill(addr: SocketAddr) -> u64 {
    let value = vec![0x5a_u8; VALUE_LEN];
    let producer = producer(addr, true);
    let mut committed = 0;
    for transaction in 0..FETCH_RECORDS / FILL_TRANSACTION {
        producer.begin_transaction().expect("begin");
        send(&producer, FILL_TRANSACTION, &value);
        drain(&producer);
        if transaction % ABORT_EVERY == ABORT_EVERY - 1 {
            producer.flush(STEP).expect("flush");
            producer.abort_transaction(STEP).expect("abort");
        } else {
            producer.commit_transaction(STEP).expect("commit");
            committed += FILL_TRANSACTION as u64;
        }
    }
    committed
}

/// records/s of reading `expected` records with `isolation`.
fn fetch_run(addr: SocketAddr, isolation: &str, expected: u64) -> f64 {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", addr.to_string())
        .set("group.id", "bench-txn-reader")
        .set("enable.auto.commit", "false")
        .set("isolation.level", isolation)
        .create()
        .expect("consumer");
    let mut assignment = TopicPartitionList::new();
    for partition in 0..PARTITIONS as i32 {
        assignment
            .add_partition_offset(TOPIC, partition, Offset::Beginning)
            .expect("assign");
    }
    consumer.assign(&assignment).expect("assign");
    let started = Instant::now();
    let mut received = 0u64;
    while received < expected && started.elapsed() < CLIENT_DEADLINE {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => received += 1,
            Some(Err(failure)) => panic!("consume failed: {failure}"),
            None => {}
        }
    }
    let elapsed = started.elapsed();
    assert_eq!(received, expected, "{isolation}: every record consumed");
    // Nothing more (aborted records would follow under read_committed).
    assert!(
        consumer
            .poll(Duration::from_millis(500))
            .is_none_or(|m| m.is_err()),
        "{isolation}: more than expected"
    );
    received as f64 / elapsed.as_secs_f64()
}

fn row(label: &str, runs: &[f64], base: f64) {
    println!(
        "{label:<34} {:>12.0} {:>12.0} {:>9.2}x",
        median(runs),
        min(runs),
        median(runs) / base
    );
}

pub(super) fn bench_transactions(runtime: &Runtime, repeats: usize) {
    let backend = Backend::Tributary(Durability::Always);
    let modes: [(&str, Option<usize>); 3] = [
        ("idempotent (acks=all), no txn", None),
        ("transactional, 100 per txn", Some(100)),
        ("transactional, 1,000 per txn", Some(1_000)),
    ];
    let mut produced: Vec<Vec<f64>> = vec![Vec::new(); modes.len()];
    for _ in 0..repeats {
        for (index, &(_, per_transaction)) in modes.iter().enumerate() {
            settle();
            let running = runtime.block_on(start(backend));
            let addr = running.addr;
            let rate = std::thread::spawn(move || produce_run(addr, per_transaction))
                .join()
                .expect("produce run");
            runtime.block_on(stop(running));
            produced[index].push(rate);
        }
    }
    println!(
        "\nproduce, {PRODUCE_RECORDS} records of {VALUE_LEN} B, {repeats} interleaved runs\n\
         {:<34} {:>12} {:>12} {:>10}",
        "producer", "median rec/s", "worst rec/s", "vs idem."
    );
    let base = median(&produced[0]);
    for ((label, _), runs) in modes.iter().zip(&produced) {
        row(label, runs, base);
    }

    let mut committed_runs = Vec::new();
    let mut uncommitted_runs = Vec::new();
    for repeat in 0..repeats {
        let running = runtime.block_on(start(backend));
        let addr = running.addr;
        let committed = std::thread::spawn(move || fill(addr)).join().expect("fill");
        settle();
        // Both read the same log; which goes first alternates (the second finds it cached).
        let mut order = [
            ("read_committed", committed),
            ("read_uncommitted", FETCH_RECORDS as u64),
        ];
        if repeat % 2 == 1 {
            order.reverse();
        }
        for (isolation, expected) in order {
            let rate = std::thread::spawn(move || fetch_run(addr, isolation, expected))
                .join()
                .expect("fetch run");
            if isolation == "read_committed" {
                committed_runs.push(rate);
            } else {
                uncommitted_runs.push(rate);
            }
        }
        runtime.block_on(stop(running));
    }
    println!(
        "\nfetch, {FETCH_RECORDS} records of {VALUE_LEN} B in transactions of \
         {FILL_TRANSACTION}, one in {ABORT_EVERY} aborted, {repeats} runs\n\
         {:<34} {:>12} {:>12} {:>10}",
        "consumer", "median rec/s", "worst rec/s", "vs uncom."
    );
    let base = median(&uncommitted_runs);
    row("read_uncommitted (all)", &uncommitted_runs, base);
    row("read_committed (nine tenths)", &committed_runs, base);
}
