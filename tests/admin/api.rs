//! Status codes, shapes and definitions of the admin API.

use lapin::BasicProperties;
use lapin::options::BasicPublishOptions;
use serde_json::json;

use crate::broker::TestBroker;
use crate::lapin_support::{confirm_channel, connect};
use crate::{as_user, call, guest, raw_head};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_checked_and_only_administrators_pass() {
    let mut broker = TestBroker::start();
    let http = broker.addr("http");
    let head = raw_head(
        http,
        "GET /api/overview HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("http/1.1 401"), "{head}");
    assert!(head.contains("www-authenticate: basic"), "{head}");
    let wrong = as_user(&mut broker, "guest", "nope");
    assert_eq!(call(&wrong, "GET", &["overview"], None).await.status, 401);

    let admin = guest(&mut broker);
    let body = json!({ "password": "pw", "tags": "monitoring" });
    assert_eq!(
        call(&admin, "PUT", &["users", "mona"], Some(body))
            .await
            .status,
        201
    );
    let mona = as_user(&mut broker, "mona", "pw");
    let refused = call(&mona, "GET", &["queues"], None).await;
    assert_eq!(refused.status, 403, "{:?}", refused.body);
    assert_eq!(refused.body["error"], "not_authorised");

    let body = json!({ "password": "pw", "tags": ["administrator"] });
    assert_eq!(
        call(&admin, "PUT", &["users", "mona"], Some(body))
            .await
            .status,
        204
    );
    assert_eq!(call(&mona, "GET", &["queues"], None).await.status, 200);
    let me = call(&mona, "GET", &["whoami"], None).await;
    assert_eq!(
        me.body,
        json!({ "name": "mona", "tags": ["administrator"] })
    );

    // The document needs no credentials (schemathesis and console read it first).
    let head = raw_head(
        http,
        "GET /api/openapi.json HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert_eq!(
        call(&admin, "GET", &["no-such-thing"], None).await.status,
        404
    );
    let bad = call(&admin, "PUT", &["queues", "/", "q"], Some(json!([1]))).await;
    assert_eq!(bad.status, 400, "{:?}", bad.body);
    assert_eq!(bad.body["error"], "bad_request");
    let bad = call(&admin, "PUT", &["exchanges", "/", "x"], Some(json!({}))).await;
    assert_eq!(bad.status, 400, "an exchange needs a type: {:?}", bad.body);
    assert_eq!(call(&admin, "PATCH", &["queues"], None).await.status, 405);
    assert_eq!(
        call(&admin, "GET", &["queues", "nowhere"], None)
            .await
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_answer_flower_and_keda_with_rabbitmq_fields() {
    let mut broker = TestBroker::start();
    let admin = guest(&mut broker);
    let declare =
        json!({ "durable": true, "auto_delete": false, "arguments": {"x-max-length": 100} });
    let answer = call(&admin, "PUT", &["queues", "/", "celery"], Some(declare)).await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);

    let connection = connect(&mut broker).await;
    let channel = confirm_channel(&connection).await;
    for n in 0..3 {
        channel
            .basic_publish(
                "".into(),
                "celery".into(),
                BasicPublishOptions::default(),
                format!("task {n}").as_bytes(),
                BasicProperties::default(),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }

    // KEDA: GET /api/queues/{vhost}/{queue}.
    let queue = call(&admin, "GET", &["queues", "/", "celery"], None).await;
    assert_eq!(queue.status, 200);
    let q = &queue.body;
    assert_eq!(q["name"], "celery");
    assert_eq!(q["vhost"], "/");
    assert_eq!(q["messages"], 3);
    assert_eq!(q["messages_ready"], 3);
    assert_eq!(q["messages_unacknowledged"], 0);
    assert_eq!(q["consumers"], 0);
    assert_eq!(q["durable"], true);
    assert_eq!(q["auto_delete"], false);
    assert_eq!(q["arguments"], json!({"x-max-length": 100}));
    assert_eq!(q["state"], "running");
    // Flower: GET /api/queues/{vhost}.
    let list = call(&admin, "GET", &["queues", "/"], None).await;
    let names: Vec<&str> = list
        .body
        .as_array()
        .unwrap()
        .iter()
        .map(|q| q["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["celery"]);

    let connections = call(&admin, "GET", &["connections"], None).await;
    assert_eq!(
        connections.body.as_array().unwrap().len(),
        1,
        "{:?}",
        connections.body
    );
    assert_eq!(connections.body[0]["user"], "guest");

    assert_eq!(
        call(
            &admin,
            "DELETE",
            &["queues", "/", "celery", "contents"],
            None
        )
        .await
        .status,
        204
    );
    let queue = call(&admin, "GET", &["queues", "/", "celery"], None).await;
    assert_eq!(queue.body["messages_ready"], 0);
    assert_eq!(
        call(&admin, "DELETE", &["queues", "/", "celery"], None)
            .await
            .status,
        204
    );
    assert_eq!(
        call(&admin, "GET", &["queues", "/", "celery"], None)
            .await
            .status,
        404
    );
    connection.close(200, "bye".into()).await.expect("close");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn definitions_export_and_reimport_into_a_fresh_broker() {
    let mut first = TestBroker::start();
    let admin = guest(&mut first);
    assert_eq!(
        call(&admin, "PUT", &["vhosts", "shop"], None).await.status,
        201
    );
    let user = json!({ "password": "s3cret", "tags": "administrator" });
    assert_eq!(
        call(&admin, "PUT", &["users", "ops"], Some(user))
            .await
            .status,
        201
    );
    let grant = json!({ "configure": "^ops\\.", "write": ".*", "read": ".*" });
    assert_eq!(
        call(&admin, "PUT", &["permissions", "shop", "ops"], Some(grant))
            .await
            .status,
        201
    );
    let exchange = json!({ "type": "topic", "durable": true });
    assert_eq!(
        call(
            &admin,
            "PUT",
            &["exchanges", "shop", "orders"],
            Some(exchange)
        )
        .await
        .status,
        201
    );
    let queue = json!({ "durable": true, "arguments": {"x-queue-type": "quorum"} });
    assert_eq!(
        call(&admin, "PUT", &["queues", "shop", "paid"], Some(queue))
            .await
            .status,
        201
    );
    let bind = json!({ "routing_key": "order.paid" });
    let answer = call(
        &admin,
        "POST",
        &["bindings", "shop", "e", "orders", "q", "paid"],
        Some(bind),
    )
    .await;
    assert_eq!(answer.status, 201, "{:?}", answer.body);
    let topic = json!({ "name": "clicks", "partitions": 3, "settings": {"retention_ms": 60000} });
    assert_eq!(
        call(&admin, "POST", &["topics"], Some(topic)).await.status,
        201
    );

    let exported = call(&admin, "GET", &["definitions"], None).await.body;
    let mut second = TestBroker::start();
    let fresh = guest(&mut second);
    let answer = call(&fresh, "POST", &["definitions"], Some(exported.clone())).await;
    assert_eq!(answer.status, 204, "{:?}", answer.body);
    let again = call(&fresh, "GET", &["definitions"], None).await.body;
    for section in [
        "users",
        "vhosts",
        "permissions",
        "exchanges",
        "queues",
        "bindings",
        "topics",
    ] {
        assert_eq!(again[section], exported[section], "{section}");
    }
    assert_eq!(exported["bindings"].as_array().unwrap().len(), 1);
    // The imported user logs in with its password (its SCRAM record came along).
    let ops = as_user(&mut second, "ops", "s3cret");
    assert_eq!(call(&ops, "GET", &["overview"], None).await.status, 200);
    let topic = call(&fresh, "GET", &["topics", "clicks"], None).await.body;
    assert_eq!(topic["partitions"], 3);
    assert_eq!(topic["settings"]["retention_ms"], 60000);
    assert_eq!(topic["partition_offsets"].as_array().unwrap().len(), 3);

    // What cannot be honoured is refused by name, not dropped, and nothing else is imported.
    let policies = json!({
        "policies": [{"name": "limit-all", "vhost": "/", "pattern": ".*", "apply-to": "queues",
                      "definition": {"max-length": 10, "ha-mode": "all"}, "priority": 0}],
        "parameters": [{"component": "federation-upstream", "name": "up-1", "vhost": "/",
                        "value": {"uri": "amqp://elsewhere"}}],
        "topic_permissions": [],
        "queues": [{"name": "not-imported", "vhost": "/", "durable": true,
                    "auto_delete": false, "arguments": {}}],
    });
    let refused = call(&fresh, "POST", &["definitions"], Some(policies)).await;
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    let reason = refused.reason();
    assert!(reason.contains("policy \"limit-all\""), "{reason}");
    assert!(reason.contains("x-max-length"), "{reason}");
    assert!(
        reason.contains("parameter \"up-1\" of component \"federation-upstream\""),
        "{reason}"
    );
    let queue = call(&fresh, "GET", &["queues", "/", "not-imported"], None).await;
    assert_eq!(queue.status, 404, "{:?}", queue.body);
    let foreign = json!({ "users": [{"name": "x", "password_hash": "abc", "hashing_algorithm": "rabbit_password_hashing_sha256", "tags": ""}] });
    let answer = call(&fresh, "POST", &["definitions"], Some(foreign)).await;
    assert_eq!(answer.status, 400);
    assert!(answer.reason().contains("\"x\""), "{}", answer.reason());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_change_and_group_offsets_reset() {
    let mut broker = TestBroker::start();
    let admin = guest(&mut broker);
    let topic = json!({ "name": "events", "partitions": 2 });
    assert_eq!(
        call(&admin, "POST", &["topics"], Some(topic.clone()))
            .await
            .status,
        201
    );
    assert_eq!(
        call(&admin, "POST", &["topics"], Some(topic)).await.status,
        409
    );
    let grow = json!({ "partitions": 4, "settings": {"durability": "never"} });
    let changed = call(&admin, "PUT", &["topics", "events"], Some(grow)).await;
    assert_eq!(changed.status, 200, "{:?}", changed.body);
    assert_eq!(changed.body["partitions"], 4);
    assert_eq!(changed.body["settings"]["durability"], "never");
    let shrink = json!({ "partitions": 1 });
    assert_eq!(
        call(&admin, "PUT", &["topics", "events"], Some(shrink))
            .await
            .status,
        400
    );

    let reset = json!({ "topic": "events", "to": "earliest", "partitions": [0, 1] });
    let group = call(&admin, "POST", &["groups", "billing", "reset"], Some(reset)).await;
    assert_eq!(group.status, 200, "{:?}", group.body);
    assert_eq!(group.body["offsets"].as_array().unwrap().len(), 2);
    assert_eq!(group.body["lag"], 0);
    let bad = json!({ "topic": "events", "to": 99 });
    assert_eq!(
        call(&admin, "POST", &["groups", "billing", "reset"], Some(bad))
            .await
            .status,
        400
    );
    let list = call(&admin, "GET", &["groups"], None).await;
    assert_eq!(list.body[0]["name"], "billing");
    assert_eq!(
        call(&admin, "DELETE", &["groups", "billing"], None)
            .await
            .status,
        204
    );
    assert_eq!(
        call(&admin, "GET", &["groups", "billing"], None)
            .await
            .status,
        404
    );
    assert_eq!(
        call(&admin, "DELETE", &["topics", "events"], None)
            .await
            .status,
        204
    );
    assert_eq!(
        call(&admin, "GET", &["topics", "events"], None)
            .await
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_with_kafka_members_shows_them_and_refuses_a_reset() {
    use rdkafka::ClientConfig;
    use rdkafka::consumer::{BaseConsumer, Consumer};

    let mut broker = TestBroker::start();
    let admin = guest(&mut broker);
    let topic = json!({ "name": "jobs", "partitions": 1 });
    assert_eq!(
        call(&admin, "POST", &["topics"], Some(topic)).await.status,
        201
    );
    let bootstrap = broker.addr("kafka").to_string();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stopping = stop.clone();
    // The member polls on its own thread (rdkafka's BaseConsumer blocks) until told to stop,
    // then closes and leaves the group.
    let member = std::thread::spawn(move || {
        let consumer: BaseConsumer = ClientConfig::new()
            .set("bootstrap.servers", &bootstrap)
            .set("group.id", "workers")
            .set("client.id", "worker-1")
            .set("session.timeout.ms", "6000")
            .set("heartbeat.interval.ms", "200")
            .create()
            .expect("consumer");
        consumer.subscribe(&["jobs"]).expect("subscribe");
        while !stopping.load(std::sync::atomic::Ordering::Relaxed) {
            let _ = consumer.poll(std::time::Duration::from_millis(100));
        }
        consumer.unsubscribe();
        drop(consumer);
    });

    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let group = loop {
        let answer = call(&admin, "GET", &["groups", "workers"], None).await;
        if answer.status == 200 && answer.body["state"] == "Stable" {
            break answer.body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no stable group: {:?}",
            answer.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    assert_eq!(group["members"][0]["client_id"], "worker-1", "{group}");
    assert_eq!(group["protocol_type"], "consumer");
    let reset = json!({ "topic": "jobs", "to": "earliest" });
    let refused = call(
        &admin,
        "POST",
        &["groups", "workers", "reset"],
        Some(reset.clone()),
    )
    .await;
    assert_eq!(refused.status, 409, "{:?}", refused.body);

    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    tokio::task::spawn_blocking(move || member.join().expect("member"))
        .await
        .expect("join");
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let answer = call(
            &admin,
            "POST",
            &["groups", "workers", "reset"],
            Some(reset.clone()),
        )
        .await;
        if answer.status == 200 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "reset still refused: {:?}",
            answer.body
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_are_bounded_and_the_api_can_be_switched_off() {
    let mut broker = TestBroker::start_prepared(&["--config", "admin.toml"], |root| {
        std::fs::write(root.join("admin.toml"), "[http]\nmax_body_bytes = 64\n").expect("config");
    });
    let admin = guest(&mut broker);
    let small = json!({ "durable": true });
    assert_eq!(
        call(&admin, "PUT", &["queues", "/", "q"], Some(small))
            .await
            .status,
        201
    );
    let large = json!({ "durable": true, "arguments": { "x-padding": "p".repeat(100) } });
    let answer = call(&admin, "PUT", &["queues", "/", "q2"], Some(large)).await;
    assert_eq!(answer.status, 413, "{:?}", answer.body);
    assert_eq!(
        call(&admin, "GET", &["queues", "/", "q2"], None)
            .await
            .status,
        404
    );

    let mut off = TestBroker::start_prepared(&["--config", "admin.toml"], |root| {
        std::fs::write(root.join("admin.toml"), "[http]\nadmin_enabled = false\n").expect("config");
    });
    let http = off.addr("http");
    for path in ["/api/overview", "/api/openapi.json", "/"] {
        let request = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
        let head = raw_head(http, &request);
        assert!(head.starts_with("http/1.1 404"), "{path}: {head}");
    }
    let head = raw_head(
        http,
        "GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    assert!(head.starts_with("http/1.1 200"), "{head}");
}
