//! The services under test, from the environment; a fresh database per test, a fresh object
//! prefix per engine, so tests never see each other's rows or objects.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Environment variables every cloud test needs (printed by `bash .ci/services start`).
const REQUIRED: &[&str] = &[
    "TRIBUTARY_TEST_PG_URL",
    "TRIBUTARY_TEST_S3_BUCKET",
    "AWS_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_REGION",
];

fn required(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!(
            "{name} is not set: the cloud suite needs PostgreSQL and an S3 endpoint; run \
             `eval \"$(bash .ci/services start)\"` first (needs: {})",
            REQUIRED.join(", ")
        )
    })
}

/// A name no other test or run uses.
pub(crate) fn unique(hint: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() % 1_000_000_000_000);
    format!(
        "{hint}_{}_{nanos}_{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

pub(crate) fn bucket() -> String {
    for name in REQUIRED {
        required(name);
    }
    required("TRIBUTARY_TEST_S3_BUCKET")
}

/// Creates an empty database and returns its URL.
pub(crate) async fn fresh_database(hint: &str) -> String {
    let base = required("TRIBUTARY_TEST_PG_URL");
    let (client, connection) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|error| panic!("cannot connect to {base}: {error}"));
    tokio::spawn(connection);
    let name = unique(hint).to_lowercase();
    client
        .batch_execute(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create database");
    let (before_query, query) = base.split_once('?').unwrap_or((&base, ""));
    let root = before_query
        .rsplit_once('/')
        .map_or(before_query, |(root, _)| root);
    if query.is_empty() {
        format!("{root}/{name}")
    } else {
        format!("{root}/{name}?{query}")
    }
}

/// A plain connection for checking rows.
pub(crate) async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(connection);
    client
}
