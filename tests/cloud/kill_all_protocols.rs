//! Issue 15's acceptance run: three real brokers over one PostgreSQL and one object store carry
//! load on all three protocols at once while one of them is SIGKILLed and later restarted with
//! an empty data directory (same broker id). The victim is the broker that owns the most: the
//! RocketMQ reader, the Kafka group's coordinator, the AMQP queue, and its share of partitions.
//!
//! Per protocol the test counts what the clients were told was stored (acknowledged, confirmed,
//! sent OK) and what the consumers received: nothing acknowledged may be missing; the Kafka log
//! holds no record twice (idempotent producer); AMQP and RocketMQ, at least once, may deliver
//! some messages twice (a retried publish, a redelivery of what was in flight or not yet
//! committed at a move), counted and bounded. Both Kafka members are assigned partitions again
//! after the kill and split them all; both groups keep consuming after the rejoin (how the
//! members share then is printed, not asserted: see the end of the test). A summary line
//! per protocol is printed.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use lapin::{Connection, ConnectionProperties};
use rdkafka::config::ClientConfig;
use rdkafka::message::Message;
use rdkafka::producer::ThreadedProducer;
use tributary_rocketmq::routes::READER_KEY;

use crate::broker::TestBroker;
use crate::cluster::{
    Acks, Counting, create_by_first_send, health, leaders, record_id, start_broker,
};
use crate::queues::{Seen, channel, consume_forever, declare, owner_of, queue_owned_by};
use crate::rocketmq_support::{Client, consumer_configured, runtime};
use crate::services::{bucket, fresh_database, unique};

mod clients;

use clients::{
    Consumed, Recording, amqp_publisher, current, kafka_producer, member, rocket_config,
    rocket_ids, rocket_producer,
};

const PARTITIONS: u32 = 6;
const KAFKA_TOPIC: &str = "kill-all";
const ROCKET_TOPIC: &str = "KillAllRmq";
/// Load before the kill, and after the rejoin.
const BEFORE_KILL: Duration = Duration::from_secs(3);
const AFTER_REJOIN: Duration = Duration::from_secs(4);
/// How long everything acknowledged may take to arrive once producing stopped: RocketMQ
/// consumers learn a new reader only at their route refresh (10 s at the least), and
/// rocketmq-client-rust's consumers were seen idle for 16 to 30 s after their reader died
/// and came back (the client's own recovery: every broker answered the same high watermarks).
const DRAIN: Duration = Duration::from_secs(45);

/// What one protocol's producer and consumers counted.
#[derive(Debug, Default)]
struct Tally {
    acked: usize,
    received: usize,
    lost: Vec<u32>,
    duplicates: usize,
    retries: u64,
    /// The longest wait for an acknowledgement (Kafka: send to delivery report; the others,
    /// sending one at a time: between consecutive acknowledgements).
    stall: Duration,
}

impl Tally {
    fn print(&self, protocol: &str, extra: &str) {
        eprintln!(
            "kill_all {protocol}: {} acked, {} received, {} lost, {} duplicates, {} retries, longest stall {:?}{extra}",
            self.acked,
            self.received,
            self.lost.len(),
            self.duplicates,
            self.retries,
            self.stall
        );
    }
}

/// Counts `ids` received against `acked`: (lost, duplicates).
fn compare(acked: &HashSet<u32>, received: &[u32]) -> (Vec<u32>, usize) {
    let mut counts: HashMap<u32, usize> = HashMap::new();
    for id in received {
        *counts.entry(*id).or_default() += 1;
    }
    let mut lost: Vec<u32> = acked
        .iter()
        .copied()
        .filter(|id| !counts.contains_key(id))
        .collect();
    lost.sort_unstable();
    (lost, counts.values().map(|c| c - 1).sum())
}

fn longest_gap(times: &mut [Instant]) -> Duration {
    times.sort_unstable();
    times
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

/// Where the log holds the records (of `topic`, read through Kafka) whose ids are in `ids`:
/// tells a message never stored from one stored but not delivered.
fn in_log(bootstrap: &str, topic: &str, ids: &[u32]) -> Vec<(i32, i64, u32)> {
    let reader = crate::kafka::consumer(bootstrap, "kill-all-check", topic, PARTITIONS as i32);
    let mut found = Vec::new();
    let quiet = Instant::now() + Duration::from_secs(5);
    while Instant::now() < quiet {
        if let Some(Ok(message)) = reader.poll(Duration::from_millis(100))
            && message.payload().is_some_and(|p| p.len() >= 4)
            && ids.contains(&record_id(&message))
        {
            found.push((message.partition(), message.offset(), record_id(&message)));
        }
    }
    found
}

/// Polls `done` every 200 ms for up to `within`; whether it became true.
fn wait_until(within: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if done() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn one_of_three_brokers_killed_under_load_on_every_protocol_then_rejoins_empty() {
    let rt = runtime();
    let database = rt.block_on(fresh_database("kill_all"));
    let objects = format!("s3://{}/{}", bucket(), unique("kill-all"));
    let config = tempfile::NamedTempFile::new().expect("config file");
    std::fs::write(
        config.path(),
        format!(
            "[kafka]\ndefault_partitions = {PARTITIONS}\n[rocketmq]\ndefault_queues = {PARTITIONS}\n\
             [cluster]\nflush_interval_ms = 50\n"
        ),
    )
    .expect("write config");
    let config = config.path().to_str().expect("utf-8").to_owned();
    let ids = [1u32, 2, 3];
    // The victim is the RocketMQ reader; its group and queue are picked to be its too.
    let victim = owner_of(format!("g{READER_KEY}").as_bytes(), &ids);
    let group = (0..)
        .map(|n| format!("kill-all-{n}"))
        .find(|g| owner_of(format!("g{g}").as_bytes(), &ids) == victim)
        .expect("a group name");
    let queue = queue_owned_by("kill-all", victim, &ids);
    let v = (victim - 1) as usize;
    let (s1, s2) = match v {
        0 => (1, 2),
        1 => (0, 2),
        _ => (0, 1),
    };
    let mut brokers: Vec<TestBroker> = ids
        .iter()
        .map(|id| start_broker(*id, &database, &objects, &config))
        .collect();
    let kafka: Vec<String> = brokers
        .iter_mut()
        .map(|b| b.addr("kafka").to_string())
        .collect();
    let amqp: Vec<SocketAddr> = brokers.iter_mut().map(|b| b.addr("amqp")).collect();
    let namesrv: Vec<String> = brokers
        .iter_mut()
        .map(|b| b.addr("rocketmq-namesrv").to_string())
        .collect();
    let bootstrap = kafka.join(",");

    // Kafka: the topic, an idempotent producer over every broker, a group of two members.
    let acks = Arc::new(Acks::default());
    let producer: Arc<ThreadedProducer<Counting>> = Arc::new(
        ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "10")
            .set("message.timeout.ms", "60000")
            .set("topic.metadata.refresh.interval.ms", "1000")
            .set("statistics.interval.ms", "500")
            .create_with_context(Counting(acks.clone()))
            .expect("producer"),
    );
    create_by_first_send(&producer, KAFKA_TOPIC);
    let stop_consuming = Arc::new(AtomicBool::new(false));
    let members = [
        member(
            &format!("{},{}", kafka[v], kafka[s1]),
            &group,
            stop_consuming.clone(),
        ),
        member(&kafka[s2], &group, stop_consuming.clone()),
    ];
    // AMQP: the queue (the victim's), a consumer on each survivor.
    let amqp_seen: [Seen; 2] = [Seen::default(), Seen::default()];
    let amqp_stop = Arc::new(tokio::sync::Notify::new());
    rt.block_on(async {
        let connection = Connection::connect(
            &format!("amqp://guest:guest@{}/%2f", amqp[v]),
            ConnectionProperties::default(),
        )
        .await
        .expect("connect");
        declare(&channel(&connection).await.expect("channel"), &queue)
            .await
            .expect("declare");
        let _ = connection.close(200, "bye".into()).await;
    });
    let amqp_consumers: Vec<_> = [s1, s2]
        .iter()
        .zip(&amqp_seen)
        .map(|(s, seen)| {
            rt.spawn(consume_forever(
                amqp[*s],
                queue.clone(),
                seen.clone(),
                amqp_stop.clone(),
            ))
        })
        .collect();
    // RocketMQ: a push group of two members, each through one survivor's name server first.
    let rocket_seen: [Consumed; 2] = Default::default();
    let rocket_clients: Vec<Client> = (0..2)
        .map(|i| Client::new(&format!("kill-all-{i}")).expect("client"))
        .collect();
    let mut rocket_members = Vec::new();
    for (i, first) in [s1, s2].into_iter().enumerate() {
        let list = [first, 3 - first - v, v]
            .map(|b| namesrv[b].clone())
            .join(";");
        rocket_members.push(rt.block_on(consumer_configured(
            &rocket_clients[i],
            rocket_config(&list),
            // A pull's messages in one call: after a stall the backlog arrives at once, and the
            // client refuses (and sends back for a later redelivery) what overflows its queue
            // of consume tasks.
            32,
            "CID-kill-all",
            ROCKET_TOPIC,
            "*",
            Recording(rocket_seen[i].clone()),
        )));
    }
    assert!(
        wait_until(Duration::from_secs(20), || members
            .iter()
            .all(|m| !current(&m.assignments).is_empty())),
        "both Kafka members got partitions"
    );
    // The RocketMQ members register (and the topic is made by the first send) meanwhile.
    std::thread::sleep(Duration::from_secs(2));

    // Load on all three.
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let kafka_sender = kafka_producer(producer.clone(), stop.clone());
    let amqp_sender = rt.spawn(amqp_publisher(
        vec![amqp[v], amqp[s1], amqp[s2]],
        queue.clone(),
        stop.clone(),
    ));
    let rocket_sender = rt.spawn(rocket_producer(namesrv.join(";"), stop.clone()));
    std::thread::sleep(BEFORE_KILL);

    brokers[v].signal("KILL");
    let killed = Instant::now();
    let survivors = format!("{},{}", kafka[s1], kafka[s2]);
    assert!(
        wait_until(Duration::from_secs(15), || leaders(&survivors, KAFKA_TOPIC)
            .values()
            .all(|l| *l > 0 && *l != victim as i32)),
        "the survivors took over the victim's partitions"
    );
    let taken_over = killed.elapsed();
    std::thread::sleep(Duration::from_secs(1));

    // The same broker id back on a fresh, empty data directory.
    brokers[v] = start_broker(victim, &database, &objects, &config);
    let restarted = Instant::now();
    assert!(
        wait_until(Duration::from_secs(15), || health(&mut brokers[v]) == 200),
        "the restarted broker holds its lease"
    );
    let fresh_kafka = brokers[v].addr("kafka").to_string();
    assert!(
        wait_until(Duration::from_secs(15), || leaders(
            &format!("{survivors},{fresh_kafka}"),
            KAFKA_TOPIC
        )
        .values()
        .any(|l| *l == victim as i32)),
        "the restarted broker leads partitions again"
    );
    let rejoined = restarted.elapsed();
    let rejoined_at = Instant::now();
    std::thread::sleep(AFTER_REJOIN);
    stop.store(true, Ordering::Relaxed);
    let load = started.elapsed();

    // Kafka: every acknowledged record read by the group, none stored twice.
    let sent_at = kafka_sender.join().expect("Kafka producer");
    let kafka_acked = acks.acked.lock().clone();
    let kafka_failed = acks.failed.lock().clone();
    let kafka_wanted: HashSet<u32> = kafka_acked.iter().map(|a| a.2).collect();
    let kafka_ids = || -> Vec<u32> {
        members
            .iter()
            .flat_map(|m| m.read.lock().iter().map(|r| r.2).collect::<Vec<_>>())
            .collect()
    };
    // AMQP and RocketMQ producers finish their message in flight.
    let (amqp_confirmed, amqp_retries) = rt.block_on(amqp_sender).expect("AMQP publisher");
    let (rocket_sent, rocket_retries) = rt.block_on(rocket_sender).expect("RocketMQ producer");
    let amqp_wanted: HashSet<u32> = amqp_confirmed.iter().map(|c| c.0).collect();
    let rocket_wanted: HashSet<u32> = rocket_sent.iter().map(|c| c.0).collect();
    let amqp_ids = || -> Vec<u32> {
        amqp_seen
            .iter()
            .flat_map(|s| s.lock().iter().map(|d| d.0).collect::<Vec<_>>())
            .collect()
    };
    let rocket_all = || -> Vec<u32> { rocket_seen.iter().flat_map(|s| rocket_ids(s)).collect() };
    let drained = wait_until(DRAIN, || {
        let has = |wanted: &HashSet<u32>, got: Vec<u32>| {
            let got: HashSet<u32> = got.into_iter().collect();
            wanted.is_subset(&got)
        };
        has(&kafka_wanted, kafka_ids())
            && has(&amqp_wanted, amqp_ids())
            && has(&rocket_wanted, rocket_all())
    });
    // Late duplicates (redeliveries) get a moment to show.
    std::thread::sleep(Duration::from_secs(1));
    let final_assignments: Vec<Vec<i32>> =
        members.iter().map(|m| current(&m.assignments)).collect();
    stop_consuming.store(true, Ordering::Relaxed);
    amqp_stop.notify_waiters();
    for consumer in amqp_consumers {
        let _ = rt.block_on(consumer);
    }
    rt.block_on(async {
        for mut m in rocket_members {
            m.shutdown().await;
        }
        for client in rocket_clients {
            client.shutdown().await;
        }
    });

    // Kafka figures.
    let mut kafka_read: Vec<(i32, i64, u32)> = Vec::new();
    let mut assignments_after_kill = Vec::new();
    let mut read_late = Vec::new();
    for m in members {
        m.thread.join().expect("member");
        let history = m.assignments.0.lock().clone();
        assignments_after_kill.push(history.iter().filter(|(at, _)| *at > killed).count());
        let read = m.read.lock().clone();
        read_late.push(
            read.iter()
                .filter(|r| sent_at.get(&r.2).is_some_and(|at| *at > rejoined_at))
                .count(),
        );
        kafka_read.extend(read);
    }
    let distinct: HashSet<(i32, i64, u32)> = kafka_read.iter().copied().collect();
    let stored_ids: Vec<u32> = distinct
        .iter()
        .map(|r| r.2)
        .filter(|id| *id != u32::MAX)
        .collect();
    let (kafka_lost, kafka_stored_twice) = compare(&kafka_wanted, &stored_ids);
    let kafka = Tally {
        acked: kafka_acked.len(),
        received: kafka_read.len(),
        lost: kafka_lost,
        duplicates: kafka_stored_twice,
        retries: acks.retries.load(Ordering::Relaxed),
        stall: kafka_acked
            .iter()
            .filter_map(|(_, _, id, at)| {
                sent_at
                    .get(id)
                    .map(|sent| at.saturating_duration_since(*sent))
            })
            .max()
            .unwrap_or_default(),
    };
    let redelivered = kafka_read.len() - distinct.len();
    kafka.print(
        "kafka",
        &format!(
            " ({redelivered} redelivered at rebalances, {} failed); group {group}: rebalances after the kill {assignments_after_kill:?}, final assignments {final_assignments:?}, records sent after the rejoin read {read_late:?}",
            kafka_failed.len()
        ),
    );

    // AMQP figures.
    let amqp_got = amqp_ids();
    let (amqp_lost, amqp_dups) = compare(&amqp_wanted, &amqp_got);
    let per_amqp: Vec<usize> = amqp_seen.iter().map(|s| s.lock().len()).collect();
    let amqp = Tally {
        acked: amqp_confirmed.len(),
        received: amqp_got.len(),
        lost: amqp_lost,
        duplicates: amqp_dups,
        retries: amqp_retries,
        stall: longest_gap(&mut amqp_confirmed.iter().map(|c| c.1).collect::<Vec<_>>()),
    };
    amqp.print(
        "amqp",
        &format!(" (queue {queue}; per consumer {per_amqp:?})"),
    );

    // RocketMQ figures.
    let rocket_got = rocket_all();
    let (rocket_lost, rocket_dups) = compare(&rocket_wanted, &rocket_got);
    let rocket_at: HashMap<u32, Instant> = rocket_sent.iter().copied().collect();
    let rocket_late: Vec<usize> = rocket_seen
        .iter()
        .map(|s| {
            rocket_ids(s)
                .iter()
                .filter(|id| rocket_at.get(id).is_some_and(|at| *at > rejoined_at))
                .count()
        })
        .collect();
    let rocket = Tally {
        acked: rocket_sent.len(),
        received: rocket_got.len(),
        lost: rocket_lost,
        duplicates: rocket_dups,
        retries: rocket_retries,
        stall: longest_gap(&mut rocket_sent.iter().map(|c| c.1).collect::<Vec<_>>()),
    };
    let mut consumed_at: Vec<Instant> = rocket_seen
        .iter()
        .flat_map(|s| s.lock().iter().map(|c| c.3).collect::<Vec<_>>())
        .collect();
    let rocket_consumer_stall = longest_gap(&mut consumed_at);
    rocket.print(
        "rocketmq",
        &format!(
            " (consumers idle at most {rocket_consumer_stall:?}; messages sent after the rejoin received per member {rocket_late:?})"
        ),
    );
    eprintln!(
        "kill_all: broker {victim} killed after {BEFORE_KILL:?}, survivors led everything {taken_over:?} later, restarted empty and leading again in {rejoined:?}; load {load:?}; drained: {drained}"
    );

    assert!(
        kafka.lost.is_empty(),
        "Kafka records acknowledged, never consumed: {:?}",
        kafka.lost
    );
    assert_eq!(
        kafka.duplicates, 0,
        "an idempotent producer's record stored twice"
    );
    assert!(
        kafka_failed.is_empty(),
        "Kafka deliveries failed: {kafka_failed:?}"
    );
    assert!(
        amqp.lost.is_empty(),
        "AMQP messages confirmed, never delivered: {:?}",
        amqp.lost
    );
    if !rocket.lost.is_empty() {
        // Around each lost message: what each member consumed of its queue nearby.
        let log = in_log(
            &format!("{survivors},{fresh_kafka}"),
            ROCKET_TOPIC,
            &rocket.lost,
        );
        for (partition, offset, number) in &log {
            for (m, seen) in rocket_seen.iter().enumerate() {
                let near: Vec<(i64, u32, u128)> = seen
                    .lock()
                    .iter()
                    .filter(|c| c.0 == *partition && (c.1 - offset).abs() <= 3)
                    .map(|c| (c.1, c.2, c.3.duration_since(started).as_millis()))
                    .collect();
                eprintln!(
                    "lost {number} at {partition}/{offset}: member {m} consumed nearby {near:?}"
                );
            }
        }
        eprintln!(
            "killed at {} ms, restarted at {} ms (since the load started)",
            killed.duration_since(started).as_millis(),
            restarted.duration_since(started).as_millis()
        );
        for (i, broker) in brokers.iter_mut().enumerate() {
            broker.read_log_for(Duration::from_millis(100));
            for line in broker.lines_seen() {
                if line.contains("WARN") || line.contains("ERROR") {
                    eprintln!("broker {}: {line}", i + 1);
                }
            }
        }
    }
    assert!(
        rocket.lost.is_empty(),
        "RocketMQ messages sent OK, never consumed: {:?}; in the log (partition, offset, id): {:?}",
        rocket.lost,
        in_log(
            &format!("{survivors},{fresh_kafka}"),
            ROCKET_TOPIC,
            &rocket.lost
        )
    );
    for tally in [&kafka, &amqp, &rocket] {
        assert!(tally.acked > 50, "load on every protocol: {tally:?}");
    }
    // At least once: an AMQP duplicate is a publish tried again (its first copy stored, the
    // confirm lost) or a delivery unacked when its consumer's path broke (at most a prefetch
    // window per consumer). A RocketMQ one is a send the client retried, a message consumed
    // after its queue's last offset commit when the queue moved (offsets persist every second),
    // or one both members pulled while they disagreed on the group. Before the group's members
    // were shared through PostgreSQL (`cloud::roster`) the restarted reader first answered
    // GET_CONSUMER_LIST_BY_GROUP with the one member that had heartbeated it, which took every
    // queue for a round: runs saw 0 to 13 %. Since, three runs in a row saw none; a tenth
    // leaves room for a commit lag at a move and fails a group that re-read its queues.
    assert!(
        amqp.duplicates as u64 <= amqp.retries + 2 * 20,
        "AMQP duplicates beyond what was in flight: {amqp:?}"
    );
    assert!(
        rocket.duplicates as u64 <= rocket.acked as u64 / 10 + rocket.retries,
        "RocketMQ duplicates beyond a tenth: {rocket:?}"
    );
    // The groups: both Kafka members rebalanced after the kill and share every partition.
    assert!(
        assignments_after_kill.iter().all(|n| *n > 0),
        "both Kafka members were assigned again after the kill: {assignments_after_kill:?}"
    );
    let mut shared: Vec<i32> = final_assignments.concat();
    shared.sort_unstable();
    assert_eq!(
        shared,
        (0..PARTITIONS as i32).collect::<Vec<_>>(),
        "the members split every partition: {final_assignments:?}"
    );
    // After the rejoin the group rebalances once more (the victim leads partitions again); on
    // a loaded machine that rebalance can outlast the 4 s of load after it, so only the group
    // carrying on is asserted, and the split is printed.
    eprintln!("Kafka records sent after the rejoin, read per member: {read_late:?}");
    assert!(
        read_late.iter().any(|n| *n > 0),
        "the Kafka group read records sent after the rejoin: {read_late:?}"
    );
    // The RocketMQ group carries on after the rejoin. Both members sharing the queues is not
    // asserted: rocketmq-client-rust's members may sit idle for up to 30 s after their reader
    // died and came back, longer than the load after the rejoin; under a loaded machine one
    // member sometimes got every later message (three runs with shared membership: both did).
    eprintln!("RocketMQ messages sent after the rejoin, per member: {rocket_late:?}");
    assert!(
        rocket_late.iter().any(|n| *n > 0),
        "the RocketMQ group got messages sent after the rejoin: {rocket_late:?}"
    );
}
