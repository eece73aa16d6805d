//! Changes through the admin API reach open connections at once, and the CLI uses the API
//! while the broker runs.

use std::process::{Command, Stdio};
use std::time::Duration;

use lapin::options::QueueDeclareOptions;
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use serde_json::json;

use crate::broker::TestBroker;
use crate::{call, guest};

async fn connect_as(broker: &mut TestBroker, user: &str, password: &str) -> Connection {
    let uri = format!("amqp://{user}:{password}@{}/%2f", broker.addr("amqp"));
    Connection::connect(&uri, ConnectionProperties::default())
        .await
        .unwrap_or_else(|error| panic!("connect as {user}: {error}"))
}

async fn add_user_with_full_access(broker: &mut TestBroker, user: &str) {
    let admin = guest(broker);
    let body = json!({ "password": "pw", "tags": "" });
    assert_eq!(
        call(&admin, "PUT", &["users", user], Some(body))
            .await
            .status,
        201
    );
    let grant = json!({ "configure": ".*", "write": ".*", "read": ".*" });
    assert_eq!(
        call(&admin, "PUT", &["permissions", "/", user], Some(grant))
            .await
            .status,
        201
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_user_closes_its_amqp_connections() {
    let mut broker = TestBroker::start();
    add_user_with_full_access(&mut broker, "dave").await;
    let connection = connect_as(&mut broker, "dave", "pw").await;
    let guest_connection = connect_as(&mut broker, "guest", "guest").await;
    assert!(connection.status().connected());

    let admin = guest(&mut broker);
    assert_eq!(
        call(&admin, "DELETE", &["users", "dave"], None)
            .await
            .status,
        204
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while connection.status().connected() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "dave's connection stayed open"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        guest_connection.status().connected(),
        "other users keep theirs"
    );
    broker.wait_for_line(&["user 'dave' is deleted"], Duration::from_secs(5));
    let permissions = call(&admin, "GET", &["users", "dave", "permissions"], None).await;
    assert_eq!(
        permissions.body,
        json!([]),
        "the user's permissions go with it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn revoked_permissions_refuse_the_next_method() {
    let mut broker = TestBroker::start();
    add_user_with_full_access(&mut broker, "erin").await;
    let connection = connect_as(&mut broker, "erin", "pw").await;
    let channel = connection.create_channel().await.expect("channel");
    channel
        .queue_declare(
            "erin.q1".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("allowed before");

    let admin = guest(&mut broker);
    let narrow = json!({ "configure": "^other$", "write": ".*", "read": ".*" });
    assert_eq!(
        call(&admin, "PUT", &["permissions", "/", "erin"], Some(narrow))
            .await
            .status,
        204
    );
    let refused = channel
        .queue_declare(
            "erin.q2".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("refused after the change");
    assert!(refused.to_string().contains("ACCESS_REFUSED"), "{refused}");

    let channel = connection.create_channel().await.expect("channel");
    assert_eq!(
        call(&admin, "DELETE", &["permissions", "/", "erin"], None)
            .await
            .status,
        204
    );
    let refused = channel
        .queue_declare(
            "other".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect_err("cleared permissions refuse everything");
    assert!(refused.to_string().contains("ACCESS_REFUSED"), "{refused}");
}

/// Runs `tributary <args>` against the running broker's data directory.
fn cli(broker: &mut TestBroker, args: &[&str]) -> (bool, String) {
    let http = broker.addr("http");
    let output = Command::new(env!("CARGO_BIN_EXE_tributary"))
        .args(args)
        .arg("--http-port")
        .arg(http.port().to_string())
        .env_remove("TRIBUTARY_CONFIG")
        .env("TRIBUTARY_DATA_DIR", broker.data_dir())
        .stdin(Stdio::null())
        .output()
        .expect("run tributary");
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_goes_through_the_api_while_the_broker_runs() {
    let mut broker = TestBroker::start();
    let (ok, out) = cli(
        &mut broker,
        &[
            "user",
            "add",
            "frank",
            "--password",
            "pw",
            "--tags",
            "administrator",
        ],
    );
    assert!(ok && out.contains("admin API"), "{out}");
    let (ok, out) = cli(&mut broker, &["vhost", "add", "lab"]);
    assert!(ok, "{out}");
    let (ok, out) = cli(
        &mut broker,
        &["permissions", "set", "lab", "frank", ".*", ".*", ".*"],
    );
    assert!(ok, "{out}");
    let (ok, out) = cli(&mut broker, &["permissions", "list"]);
    assert!(ok && out.contains("lab\tfrank\t.*\t.*\t.*"), "{out}");
    // The new user works at once, with no restart: it logs in to the new vhost.
    let uri = format!("amqp://frank:pw@{}/lab", broker.addr("amqp"));
    let connection = Connection::connect(&uri, ConnectionProperties::default()).await;
    assert!(connection.is_ok(), "{:?}", connection.err());
    let (ok, out) = cli(
        &mut broker,
        &[
            "--admin-user",
            "nobody",
            "--admin-password",
            "x",
            "vhost",
            "list",
        ],
    );
    assert!(!ok && out.contains("401"), "{out}");
}
