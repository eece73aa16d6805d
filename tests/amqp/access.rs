//! AMQP access control and resource alarms end to end: the real `tributary` binary, users,
//! vhosts and permissions made with its own commands, and lapin as the client. Covers logins
//! (PLAIN, AMQPLAIN, wrong password), vhost refusal, RabbitMQ's 403 texts for refused
//! operations, per-vhost queues across SIGKILL, per-vhost streams, direct reply-to kept within
//! its vhost, and connection.blocked / unblocked.

use crate::broker;
use crate::lapin_support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use broker::{TestBroker, data_dir_in};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Confirmation, Connection, ConnectionProperties};
use lapin_support::{
    confirm_channel, consume_stream, declare, get, next, publish, sample, scrape, stream_args,
};

const BINARY: &str = env!("CARGO_BIN_EXE_tributary");

/// Runs `tributary <args>` on the data directory under `root`; panics unless it succeeds.
fn cli(root: &Path, args: &[&str]) {
    let output = Command::new(BINARY)
        .args(args)
        .env_remove("TRIBUTARY_CONFIG")
        .env("TRIBUTARY_DATA_DIR", data_dir_in(root))
        .stdin(Stdio::null())
        .output()
        .expect("run tributary");
    assert!(
        output.status.success(),
        "tributary {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Asserts that `result` failed with an error whose text contains `expected`.
/// Adds `vhosts`, each with every permission for `guest`.
fn guest_vhosts(root: &Path, vhosts: &[&str]) {
    for vhost in vhosts {
        cli(root, &["vhost", "add", vhost]);
        cli(
            root,
            &["permissions", "set", vhost, "guest", ".*", ".*", ".*"],
        );
    }
}

fn assert_refused<T: std::fmt::Debug>(result: lapin::Result<T>, expected: &str) {
    let error = result.expect_err(expected);
    assert!(error.to_string().contains(expected), "{error}");
}

async fn try_connect(addr: SocketAddr, userinfo: &str, vhost: &str) -> lapin::Result<Connection> {
    let uri = format!("amqp://{userinfo}@{addr}/{vhost}");
    Connection::connect(&uri, ConnectionProperties::default()).await
}

async fn connect(addr: SocketAddr, userinfo: &str, vhost: &str) -> Connection {
    try_connect(addr, userinfo, vhost)
        .await
        .unwrap_or_else(|error| panic!("connect {userinfo} to {vhost}: {error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_log_in_and_act_only_where_permitted() {
    let mut broker = TestBroker::start_prepared(&[], |root| {
        cli(root, &["user", "add", "alice", "--password", "wonder"]);
        cli(root, &["vhost", "add", "shop"]);
        cli(
            root,
            &[
                "permissions",
                "set",
                "shop",
                "alice",
                "^alice\\.",
                "^(alice\\..*|amq\\.default)$",
                "^alice\\.",
            ],
        );
    });
    let addr = broker.addr("amqp");

    // Wrong password, unknown vhost, and a vhost alice has no permissions on.
    assert_refused(
        try_connect(addr, "alice:nope", "shop").await,
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN. For details see the broker logfile.",
    );
    assert_refused(
        try_connect(addr, "alice:wonder", "nowhere").await,
        "NOT_ALLOWED - vhost nowhere not found",
    );
    assert_refused(
        try_connect(addr, "alice:wonder", "%2f").await,
        "NOT_ALLOWED - access to vhost '/' refused for user 'alice'",
    );
    // guest has RabbitMQ's default grant on `/` only.
    assert_refused(
        try_connect(addr, "guest:guest", "shop").await,
        "NOT_ALLOWED - access to vhost 'shop' refused for user 'guest'",
    );

    // AMQPLAIN works as PLAIN does.
    let amqplain = connect(addr, "alice:wonder", "shop?auth_mechanism=amqplain").await;
    amqplain.close(200, "bye".into()).await.expect("close");

    let alice = connect(addr, "alice:wonder", "shop").await;
    let channel = confirm_channel(&alice).await;
    declare(&channel, "alice.jobs", true).await;
    let confirm = publish(&channel, "", "alice.jobs", b"job-1", Default::default()).await;
    assert_eq!(confirm, Confirmation::Ack(None));
    let got = get(&channel, "alice.jobs").await.expect("a message");
    assert_eq!(got.delivery.data, b"job-1");
    // Argument errors name the vhost the queue is in.
    let mut bad_priority = FieldTable::default();
    bad_priority.insert(
        "x-max-priority".into(),
        lapin::types::AMQPValue::LongInt(256),
    );
    assert_refused(
        alice
            .create_channel()
            .await
            .expect("channel")
            .queue_declare(
                "alice.prio".into(),
                QueueDeclareOptions::default(),
                bad_priority,
            )
            .await,
        "PRECONDITION_FAILED - invalid arg 'x-max-priority' for queue 'alice.prio' in vhost 'shop': {max_value_exceeded,256}",
    );

    assert_refused(
        alice
            .create_channel()
            .await
            .expect("channel")
            .queue_declare(
                "bob.jobs".into(),
                QueueDeclareOptions::default(),
                FieldTable::default(),
            )
            .await,
        "ACCESS_REFUSED - access to queue 'bob.jobs' in vhost 'shop' refused for user 'alice'",
    );
    assert_refused(
        alice
            .create_channel()
            .await
            .expect("channel")
            .exchange_declare(
                "shared".into(),
                lapin::ExchangeKind::Fanout,
                ExchangeDeclareOptions::default(),
                FieldTable::default(),
            )
            .await,
        "ACCESS_REFUSED - access to exchange 'shared' in vhost 'shop' refused for user 'alice'",
    );
    assert_refused(
        alice
            .create_channel()
            .await
            .expect("channel")
            .basic_consume(
                "bob.jobs".into(),
                "c".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await,
        "ACCESS_REFUSED - access to queue 'bob.jobs' in vhost 'shop' refused for user 'alice'",
    );
    // Publishing to amq.topic needs write on it; the refusal closes the channel.
    let publisher = confirm_channel(&alice).await;
    let confirm = publisher
        .basic_publish(
            "amq.topic".into(),
            "x".into(),
            BasicPublishOptions::default(),
            b"nope",
            BasicProperties::default(),
        )
        .await
        .expect("publish is sent");
    assert_refused(
        tokio::time::timeout(Duration::from_secs(5), confirm)
            .await
            .expect("the channel closes within 5 s"),
        "ACCESS_REFUSED - access to exchange 'amq.topic' in vhost 'shop' refused for user 'alice'",
    );
    // The connection itself stays usable after the channel errors.
    let again = confirm_channel(&alice).await;
    let confirm = publish(&again, "", "alice.jobs", b"job-2", Default::default()).await;
    assert_eq!(confirm, Confirmation::Ack(None));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_of_the_same_name_are_distinct_per_vhost_and_durable() {
    let mut broker = TestBroker::start_prepared(&[], |root| guest_vhosts(root, &["a", "b"]));
    let addr = broker.addr("amqp");
    let persistent = BasicProperties::default().with_delivery_mode(2);
    for (vhost, bodies) in [("a", &["a-1", "a-2"][..]), ("b", &["b-1"][..])] {
        let connection = connect(addr, "guest:guest", vhost).await;
        let channel = confirm_channel(&connection).await;
        declare(&channel, "orders", true).await;
        for body in bodies {
            let confirm =
                publish(&channel, "", "orders", body.as_bytes(), persistent.clone()).await;
            assert_eq!(confirm, Confirmation::Ack(None));
        }
    }
    // The depth gauges name each queue's own vhost.
    let http = broker.http_addr();
    let exposition = tokio::task::spawn_blocking(move || scrape(http))
        .await
        .expect("scrape");
    for (vhost, ready) in [("a", 2.0), ("b", 1.0)] {
        let series = format!("rabbitmq_queue_messages_ready{{vhost=\"{vhost}\",queue=\"orders\"}}");
        assert_eq!(sample(&exposition, &series), Some(ready), "{exposition}");
    }

    broker.kill_and_restart();
    let addr = broker.addr("amqp");
    for (vhost, expected) in [
        ("a", &["a-1", "a-2"][..]),
        ("b", &["b-1"][..]),
        ("%2f", &[][..]),
    ] {
        let connection = connect(addr, "guest:guest", vhost).await;
        let channel = connection.create_channel().await.expect("channel");
        if vhost == "%2f" {
            let missing = channel
                .queue_declare(
                    "orders".into(),
                    QueueDeclareOptions {
                        passive: true,
                        ..Default::default()
                    },
                    FieldTable::default(),
                )
                .await
                .unwrap_err();
            assert!(
                missing
                    .to_string()
                    .contains("NOT_FOUND - no queue 'orders' in vhost '/'"),
                "{missing}"
            );
            continue;
        }
        let mut bodies = Vec::new();
        while let Some(message) = get(&channel, "orders").await {
            assert!(!message.delivery.redelivered);
            bodies.push(String::from_utf8(message.delivery.data.clone()).unwrap());
            message
                .delivery
                .ack(BasicAckOptions::default())
                .await
                .expect("ack");
        }
        assert_eq!(bodies, expected, "vhost {vhost}");
    }
}

/// A stream is per vhost like any queue: streams of one name in two vhosts hold their own
/// messages, the one of `/` keeps the topic of that name, and a vhost deleted while the
/// broker is down takes its stream's topic with it at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_of_the_same_name_are_distinct_per_vhost() {
    let mut broker = TestBroker::start_prepared(&[], |root| guest_vhosts(root, &["a", "b"]));
    let addr = broker.addr("amqp");
    let durable = QueueDeclareOptions {
        durable: true,
        ..Default::default()
    };
    let published = [("%2f", "root"), ("a", "in-a"), ("b", "in-b")];
    for (vhost, body) in published {
        let connection = connect(addr, "guest:guest", vhost).await;
        let channel = confirm_channel(&connection).await;
        channel
            .queue_declare("events".into(), durable, stream_args())
            .await
            .expect("declare the stream");
        let confirm = publish(&channel, "", "events", body.as_bytes(), Default::default()).await;
        assert_eq!(confirm, Confirmation::Ack(None));
    }
    for (vhost, body) in published {
        let connection = connect(addr, "guest:guest", vhost).await;
        let (_channel, mut consumer) =
            consume_stream(&connection, "events", lapin_support::text("first")).await;
        let first = next(&mut consumer).await;
        assert_eq!(first.data, body.as_bytes(), "vhost {vhost}");
        first.ack(BasicAckOptions::default()).await.expect("ack");
        // Nothing of the other vhosts follows.
        let more = tokio::time::timeout(Duration::from_millis(300), consumer.next()).await;
        assert!(more.is_err(), "vhost {vhost} saw another vhost's message");
    }
    // Topic directories are the names with bytes outside [A-Za-z0-9._-] as %XX.
    let dirs = ["events", "%1Fa%1Fevents", "%1Fb%1Fevents"];
    let before = names_under(&broker.data_dir());
    for dir in dirs {
        assert!(before.iter().any(|name| name == dir), "{dir} in {before:?}");
    }

    broker.kill_prepare_restart(|root| cli(root, &["vhost", "delete", "b"]));
    let addr = broker.addr("amqp");
    // The frontend drops a deleted vhost's storage when it serves its first connection.
    let connection = connect(addr, "guest:guest", "a").await;
    let channel = connection.create_channel().await.expect("channel");
    let passive = QueueDeclareOptions {
        passive: true,
        ..Default::default()
    };
    channel
        .queue_declare("events".into(), passive, FieldTable::default())
        .await
        .expect("vhost a keeps its stream");
    let after = names_under(&broker.data_dir());
    assert!(after.iter().any(|name| name == "events"), "{after:?}");
    assert!(
        after.iter().any(|name| name == "%1Fa%1Fevents"),
        "{after:?}"
    );
    assert!(
        !after.iter().any(|name| name == "%1Fb%1Fevents"),
        "{after:?}"
    );
}

/// The names of every file and directory under `dir`.
fn names_under(dir: &Path) -> Vec<String> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        names.push(entry.file_name().to_string_lossy().into_owned());
        if entry.path().is_dir() {
            names.extend(names_under(&entry.path()));
        }
    }
    names
}

/// Direct reply-to works in any vhost, and a reply token is only known in its own vhost: a
/// reply published to it from another vhost is unroutable there (returned, as mandatory).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn direct_reply_to_works_per_vhost_and_replies_stay_in_theirs() {
    let mut broker = TestBroker::start_prepared(&[], |root| guest_vhosts(root, &["a", "b"]));
    let addr = broker.addr("amqp");
    let client = connect(addr, "guest:guest", "a").await;
    let server = connect(addr, "guest:guest", "a").await;
    let server_channel = server.create_channel().await.expect("channel");
    declare(&server_channel, "rpc", false).await;
    let mut requests = server_channel
        .basic_consume(
            "rpc".into(),
            "server".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume requests");
    let channel = client.create_channel().await.expect("channel");
    let mut replies = channel
        .basic_consume(
            "amq.rabbitmq.reply-to".into(),
            "replies".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("consume amq.rabbitmq.reply-to in vhost a");
    channel
        .basic_publish(
            "".into(),
            "rpc".into(),
            BasicPublishOptions::default(),
            b"ping",
            BasicProperties::default().with_reply_to("amq.rabbitmq.reply-to".into()),
        )
        .await
        .expect("request");
    let request = next(&mut requests).await;
    let reply_to = request
        .properties
        .reply_to()
        .clone()
        .expect("reply_to rewritten")
        .to_string();
    assert!(reply_to.starts_with("amq.rabbitmq.reply-to."), "{reply_to}");

    // The same reply name published from vhost b reaches nobody: returned to its publisher.
    let intruder = connect(addr, "guest:guest", "b").await;
    let intruder_channel = confirm_channel(&intruder).await;
    let stray = intruder_channel
        .basic_publish(
            "".into(),
            reply_to.as_str().into(),
            BasicPublishOptions {
                mandatory: true,
                ..Default::default()
            },
            b"from b",
            BasicProperties::default(),
        )
        .await
        .expect("publish in b")
        .await
        .expect("confirm in b");
    let Confirmation::Ack(Some(returned)) = stray else {
        panic!("the stray reply was not returned: {stray:?}");
    };
    assert_eq!(returned.data, b"from b");
    let quiet = tokio::time::timeout(Duration::from_millis(300), replies.next()).await;
    assert!(
        quiet.is_err(),
        "a reply from vhost b reached a requester in a"
    );

    // The reply from its own vhost arrives.
    server_channel
        .basic_publish(
            "".into(),
            reply_to.as_str().into(),
            BasicPublishOptions::default(),
            b"pong",
            BasicProperties::default(),
        )
        .await
        .expect("reply");
    request.ack(BasicAckOptions::default()).await.expect("ack");
    assert_eq!(next(&mut replies).await.data, b"pong");
}

fn alarm_config(root: &Path, disk_free_limit: u64) {
    std::fs::write(
        root.join("tributary.toml"),
        format!("[amqp]\ndisk_free_limit = {disk_free_limit}\nalarm_check_interval_ms = 50\n"),
    )
    .expect("write config");
}

async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..200 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("{what} did not happen within 5 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_disk_alarm_blocks_publishers_while_consumers_go_on() {
    let mut root = None;
    let mut broker = TestBroker::start_prepared(&["--config", "tributary.toml"], |dir| {
        alarm_config(dir, 0);
        root = Some(dir.to_owned());
    });
    let root = root.expect("prepared");
    let addr = broker.addr("amqp");
    let publisher = connect(addr, "guest:guest", "%2f").await;
    let channel = confirm_channel(&publisher).await;
    declare(&channel, "work", false).await;
    for body in ["w-1", "w-2", "w-3"] {
        let confirm = publish(&channel, "", "work", body.as_bytes(), Default::default()).await;
        assert_eq!(confirm, Confirmation::Ack(None));
    }

    // A limit no filesystem can meet: the disk alarm goes on after SIGHUP.
    alarm_config(&root, u64::MAX / 2);
    broker.signal("HUP");
    broker.wait_for_line(&["disk alarm set"], Duration::from_secs(5));
    let pending = channel
        .basic_publish(
            "".into(),
            "work".into(),
            BasicPublishOptions::default(),
            b"w-4",
            BasicProperties::default(),
        )
        .await
        .expect("publish sent");
    wait_until("connection.blocked", || publisher.status().blocked()).await;

    // A consumer on another connection keeps receiving (and acking) what is queued.
    let consumer_connection = connect(addr, "guest:guest", "%2f").await;
    let consumer_channel = consumer_connection.create_channel().await.expect("channel");
    let mut consumer = consumer_channel
        .basic_consume(
            "work".into(),
            "worker".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    for body in ["w-1", "w-2", "w-3"] {
        let delivery = next(&mut consumer).await;
        assert_eq!(delivery.data, body.as_bytes());
        delivery.ack(BasicAckOptions::default()).await.expect("ack");
    }
    let waiting = tokio::time::timeout(Duration::from_millis(500), consumer.next()).await;
    assert!(
        waiting.is_err(),
        "the blocked publish must not be stored yet"
    );
    assert!(publisher.status().blocked());
    assert!(
        !consumer_connection.status().blocked(),
        "only publishing connections are blocked"
    );

    alarm_config(&root, 0);
    broker.signal("HUP");
    wait_until("connection.unblocked", || !publisher.status().blocked()).await;
    let confirm = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .expect("confirm after unblocking")
        .expect("confirm");
    assert_eq!(confirm, Confirmation::Ack(None));
    let delivery = next(&mut consumer).await;
    assert_eq!(delivery.data, b"w-4");
}
