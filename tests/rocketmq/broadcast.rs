//! Broadcasting consumers with a real RocketMQ remoting client (`rocketmq-client-rust` 1.0.0)
//! against the real `tributary` binary: every member of a BROADCASTING group receives every
//! message of all four queues, each once, and a member that restarts resumes from its own
//! offsets (kept by the client in its LocalFileOffsetStore, not by the broker): it gets what was
//! sent while it was down and nothing it had already consumed.
//!
//! Each member is its own process, as users run them: this test binary re-executed with
//! [`MEMBER_ENV`] set, reporting every delivery as a `MEMBER msg` line on stdout and shutting
//! its consumer down (which persists its offsets) when its stdin closes. Each process gets the
//! client's offset directory (`rocketmq.client.localOffsetStoreDir`) in a temp dir, so no run
//! reads offsets an earlier run left in `$HOME/.rocketmq_offsets`.
//!
//! A new broadcasting member starts each queue at its current end (CONSUME_FROM_LAST_OFFSET
//! with no local offset reads GET_MAX_OFFSET, in this client as in RocketMQ's Java client),
//! and it does so when its first rebalance runs, some time after `start()` returns. So the test
//! sends probes to every queue until each member has received one from each, and only then the
//! messages it checks.

use crate::broker;

use crate::rocketmq;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use broker::TestBroker;
use rocketmq::{Client, body, producer, runtime};
use rocketmq_client_rust::{
    ClientConfig, ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus,
    DefaultMQProducer, DefaultMQPushConsumer, MQPushConsumer, MessageListenerConcurrently,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_queue::MessageQueue;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_protocol::protocol::heartbeat::message_model::MessageModel;

/// Set (to the member's instance name) when this binary runs as a member process.
const MEMBER_ENV: &str = "TRIBUTARY_TEST_BROADCAST_MEMBER";
const NAMESRV_ENV: &str = "TRIBUTARY_TEST_BROADCAST_NAMESRV";
const GROUP_ENV: &str = "TRIBUTARY_TEST_BROADCAST_GROUP";
const TOPIC_ENV: &str = "TRIBUTARY_TEST_BROADCAST_TOPIC";
/// Where the client keeps broadcasting offsets (read once per process).
const OFFSET_DIR_ENV: &str = "rocketmq.client.localOffsetStoreDir";
const TEST_NAME: &str = "every_member_gets_every_message_and_resumes_from_its_own_offsets";
const QUEUES: i32 = 4;
/// Marks member output lines among the test harness's own.
const LINE_PREFIX: &str = "MEMBER ";

#[test]
fn every_member_gets_every_message_and_resumes_from_its_own_offsets() {
    if let Ok(instance) = std::env::var(MEMBER_ENV) {
        run_member(&instance);
    }
    let mut broker = TestBroker::start();
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    let offsets = tempfile::tempdir().expect("offset store dir");
    let (topic, group) = ("BroadcastRmq", "CID-broadcast");
    let spawn = |instance: &str| Member::spawn(instance, &namesrv, group, topic, offsets.path());
    runtime().block_on(async {
        let client = Client::new("broadcast-producer").expect("client");
        let mut producer = producer(&client, &namesrv, "PID-broadcast").await;
        let mut a = spawn("member-a");
        let mut b = spawn("member-b");
        warm_up(&mut producer, topic, &mut [&mut a, &mut b]).await;

        let first = send_to_every_queue(&mut producer, topic, "first", 40).await;
        for member in [&mut a, &mut b] {
            member
                .wait_for("every first-round message", Duration::from_secs(60), |m| {
                    first.is_subset(&m.bodies())
                })
                .await;
        }
        // A moment more, so a duplicate or a stray delivery would show.
        tokio::time::sleep(Duration::from_secs(1)).await;
        for member in [&mut a, &mut b] {
            member.collect();
            assert_eq!(
                member.checked_bodies(),
                first,
                "{} got exactly the first round",
                member.instance
            );
            assert_eq!(
                member.queues(),
                (0..QUEUES).collect(),
                "{} consumed every queue",
                member.instance
            );
        }

        // A stops (its consumer persists its offsets); what is sent meanwhile waits for it.
        a.stop();
        let second = send_to_every_queue(&mut producer, topic, "second", 20).await;
        b.wait_for("every second-round message", Duration::from_secs(60), |m| {
            second.is_subset(&m.bodies())
        })
        .await;
        let mut a = spawn("member-a");
        a.wait_for(
            "the restarted member to get the second round",
            Duration::from_secs(90),
            |m| second.is_subset(&m.bodies()),
        )
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        a.collect();
        assert_eq!(
            a.checked_bodies(),
            second,
            "the restarted member resumed from its own offsets: the second round, none of the first"
        );
        a.stop();
        b.stop();
        producer.shutdown().await;
        client.shutdown().await;
    });
    broker.terminate();
}

/// Sends one probe to every queue per round until every member has received a probe from each.
async fn warm_up(producer: &mut DefaultMQProducer, topic: &str, members: &mut [&mut Member]) {
    let deadline = Instant::now() + Duration::from_secs(90);
    for round in 0.. {
        for member in members.iter_mut() {
            member.collect();
        }
        if members
            .iter()
            .all(|m| m.probed_queues().len() == QUEUES as usize)
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "members never consumed every queue: {:?}",
            members
                .iter()
                .map(|m| (&m.instance, m.probed_queues()))
                .collect::<Vec<_>>()
        );
        for queue in 0..QUEUES {
            send_to(producer, topic, queue, probe(round, queue)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

fn probe(round: usize, queue: i32) -> Vec<u8> {
    format!("probe-{round}-{queue}").into_bytes()
}

/// Sends `count` messages round-robin over the queues; returns their bodies.
async fn send_to_every_queue(
    producer: &mut DefaultMQProducer,
    topic: &str,
    label: &str,
    count: usize,
) -> BTreeSet<Vec<u8>> {
    let mut sent = BTreeSet::new();
    for n in 0..count {
        let b = body(label, n);
        send_to(producer, topic, n as i32 % QUEUES, b.clone()).await;
        sent.insert(b);
    }
    sent
}

async fn send_to(producer: &mut DefaultMQProducer, topic: &str, queue: i32, body: Vec<u8>) {
    let message = Message::builder()
        .topic(topic)
        .tags("B")
        .body(body)
        .build()
        .expect("message");
    producer
        .send_with_selector(
            message,
            |queues: &[MessageQueue], _msg: &Message, queue: &i32| {
                queues.iter().find(|q| q.queue_id() == *queue).cloned()
            },
            queue,
        )
        .await
        .expect("send to a queue")
        .expect("a send result");
}

/// A member process and what it reported.
struct Member {
    instance: String,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    /// (queue, body) of every delivery, in arrival order.
    deliveries: Vec<(i32, Vec<u8>)>,
}

impl Drop for Member {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl Member {
    fn spawn(instance: &str, namesrv: &str, group: &str, topic: &str, offsets: &Path) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args([
                "--exact",
                &broker::harness_test_name(module_path!(), TEST_NAME),
                "--nocapture",
                "--test-threads=1",
            ])
            .env(MEMBER_ENV, instance)
            .env(NAMESRV_ENV, namesrv)
            .env(GROUP_ENV, group)
            .env(TOPIC_ENV, topic)
            .env(OFFSET_DIR_ENV, offsets)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn a member process");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sink, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // Not only at the start: with --nocapture the harness's `test <name> ... `
                // has no newline, so the first report shares its line.
                if let Some(at) = line.find(LINE_PREFIX)
                    && sink
                        .send(line[at + LINE_PREFIX.len()..].to_owned())
                        .is_err()
                {
                    break;
                }
            }
        });
        Self {
            instance: instance.to_owned(),
            stdin: child.stdin.take(),
            child,
            lines,
            deliveries: Vec::new(),
        }
    }

    /// Takes in every line reported so far.
    fn collect(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            let mut fields = line.split(' ');
            if fields.next() != Some("msg") {
                continue;
            }
            let queue = fields.next().and_then(|q| q.parse().ok());
            let body = fields.next().map(unhex);
            let (Some(queue), Some(body)) = (queue, body) else {
                panic!("{}: bad line {line:?}", self.instance);
            };
            self.deliveries.push((queue, body));
        }
    }

    fn bodies(&self) -> BTreeSet<Vec<u8>> {
        self.deliveries.iter().map(|(_, b)| b.clone()).collect()
    }

    /// The bodies received other than probes; panics on a body received twice.
    fn checked_bodies(&self) -> BTreeSet<Vec<u8>> {
        let mut counts: BTreeMap<&[u8], usize> = BTreeMap::new();
        for (_, body) in &self.deliveries {
            if !body.starts_with(b"probe-") {
                *counts.entry(body).or_default() += 1;
            }
        }
        let twice: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
        assert!(
            twice.is_empty(),
            "{} received bodies twice: {twice:?}",
            self.instance
        );
        counts.keys().map(|b| b.to_vec()).collect()
    }

    /// (queue, readable start of the body) of every delivery, for failure messages.
    fn received_labels(&self) -> Vec<(i32, String)> {
        let label = |b: &[u8]| String::from_utf8_lossy(&b[..b.len().min(10)]).into_owned();
        self.deliveries
            .iter()
            .map(|(q, b)| (*q, label(b)))
            .collect()
    }

    fn queues(&self) -> BTreeSet<i32> {
        self.deliveries.iter().map(|(q, _)| *q).collect()
    }

    fn probed_queues(&self) -> BTreeSet<i32> {
        self.deliveries
            .iter()
            .filter(|(_, b)| b.starts_with(b"probe-"))
            .map(|(q, _)| *q)
            .collect()
    }

    async fn wait_for(&mut self, what: &str, timeout: Duration, done: impl Fn(&Self) -> bool) {
        let deadline = Instant::now() + timeout;
        loop {
            self.collect();
            if done(self) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{}: timed out waiting for {what}; it received {:?}",
                self.instance,
                self.received_labels()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Closes the member's stdin, so its consumer shuts down, and waits for it to exit.
    fn stop(&mut self) {
        drop(self.stdin.take());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for a member") {
                assert!(status.success(), "{} exited with {status}", self.instance);
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{} did not stop within 30 s",
                self.instance
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).expect("hex body"))
        .collect()
}

/// Reports each delivery as `MEMBER msg <queue> <hex body>`.
struct Reporter;

impl MessageListenerConcurrently for Reporter {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut out = std::io::stdout().lock();
        for msg in msgs {
            let body = msg.body().map(|b| b.to_vec()).unwrap_or_default();
            writeln!(out, "{LINE_PREFIX}msg {} {}", msg.queue_id(), hex(&body))
                .expect("report a delivery");
        }
        out.flush().expect("flush stdout");
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

/// The member process: one broadcasting push consumer until stdin closes, then exit.
fn run_member(instance: &str) -> ! {
    let setting = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} unset"));
    let (namesrv, group, topic) = (setting(NAMESRV_ENV), setting(GROUP_ENV), setting(TOPIC_ENV));
    runtime().block_on(async {
        let client = Client::new(instance).expect("client");
        let mut config = ClientConfig::default();
        config.set_instance_name(instance.into());
        // rocketmq-client-rust 1.0.0 writes `<dir>/<client id>/<group>/offsets.json` without
        // creating the directories, so without this every persist fails and a restarted member
        // starts from the end again (compat/rocketmq/FINDINGS.md).
        let offsets_dir = Path::new(&setting(OFFSET_DIR_ENV))
            .join(config.build_mq_client_id())
            .join(&group);
        std::fs::create_dir_all(&offsets_dir).expect("offset store directory");
        let mut consumer = DefaultMQPushConsumer::builder(client.runtime.clone())
            .client_config(config)
            .name_server_addr(namesrv)
            .consumer_group(group)
            .message_model(MessageModel::Broadcasting)
            .build();
        consumer.subscribe(&topic, "*").await.expect("subscribe");
        consumer.register_message_listener_concurrently(Reporter);
        consumer.start().await.expect("consumer start");
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut rest = Vec::new();
            let _ = std::io::stdin().read_to_end(&mut rest);
        });
        stdin_closed.await.expect("stdin reader");
        consumer.shutdown().await;
        client.shutdown().await;
    });
    std::process::exit(0);
}
