//! The cloud engine's metadata store (PostgreSQL, `cloud::records`) against the local one (redb,
//! `broker::records`) on the same random operations: every put, get, delete and prefix scan
//! answers alike, scans in the same key order, over keys that stress byte ordering (U+001F, the
//! empty key, multi-byte characters, a NUL, keys that are prefixes of each other). Also: every
//! write moves the PostgreSQL store's generation of its namespace, and only of it.

use bytes::Bytes;
use proptest::prelude::*;
use tributary::broker::metadata::MetaStore;
use tributary::broker::records::RecordsService;
use tributary::cloud::PgRecords;
use tributary_api::MetadataStore;

use crate::services::fresh_database;

const NAMESPACES: &[&str] = &["users", "kafka.acl", "kafka.acl2"];
/// Pieces keys are made of: byte order differs from "natural" order on several of them.
const PIECES: &[&str] = &[
    "",
    "a",
    "b",
    "\u{1f}",
    "ab",
    "é",
    "z",
    "~",
    "\u{0}",
    "Z",
    "1",
    "10",
    "2",
    "\u{10FFFF}",
];

#[derive(Debug, Clone)]
enum Op {
    Put(usize, String, Vec<u8>),
    Get(usize, String),
    Delete(usize, String),
    Scan(usize, String),
}

fn key() -> impl Strategy<Value = String> {
    prop::collection::vec(0..PIECES.len(), 0..4)
        .prop_map(|pieces| pieces.into_iter().map(|i| PIECES[i]).collect())
}

fn op() -> impl Strategy<Value = Op> {
    let namespace = 0..NAMESPACES.len();
    prop_oneof![
        4 => (namespace.clone(), key(), prop::collection::vec(any::<u8>(), 0..8))
            .prop_map(|(n, k, v)| Op::Put(n, k, v)),
        2 => (namespace.clone(), key()).prop_map(|(n, k)| Op::Get(n, k)),
        2 => (namespace.clone(), key()).prop_map(|(n, k)| Op::Delete(n, k)),
        3 => (namespace, key()).prop_map(|(n, k)| Op::Scan(n, k)),
    ]
}

async fn check(pg: &PgRecords, local: &RecordsService, ops: &[Op]) {
    for (step, op) in ops.iter().enumerate() {
        match op {
            Op::Put(n, key, value) => {
                let namespace = NAMESPACES[*n];
                let before = pg.generation(namespace);
                let other = NAMESPACES[(*n + 1) % NAMESPACES.len()];
                let other_before = pg.generation(other);
                let value = Bytes::from(value.clone());
                pg.put(namespace, key, value.clone()).await.expect("pg put");
                local.put(namespace, key, value).await.expect("local put");
                assert_ne!(pg.generation(namespace), before, "a write moves it");
                assert_eq!(pg.generation(other), other_before, "only its namespace");
            }
            Op::Get(n, key) => {
                let namespace = NAMESPACES[*n];
                assert_eq!(
                    pg.get(namespace, key).await.expect("pg get"),
                    local.get(namespace, key).await.expect("local get"),
                    "step {step}: get {namespace} {key:?}"
                );
            }
            Op::Delete(n, key) => {
                let namespace = NAMESPACES[*n];
                assert_eq!(
                    pg.delete(namespace, key).await.expect("pg delete"),
                    local.delete(namespace, key).await.expect("local delete"),
                    "step {step}: delete {namespace} {key:?}"
                );
            }
            Op::Scan(n, prefix) => {
                let namespace = NAMESPACES[*n];
                assert_eq!(
                    pg.scan(namespace, prefix).await.expect("pg scan"),
                    local.scan(namespace, prefix).await.expect("local scan"),
                    "step {step}: scan {namespace} {prefix:?}"
                );
            }
        }
    }
    // Everything, namespace by namespace, in the same order.
    for namespace in NAMESPACES {
        assert_eq!(
            pg.scan(namespace, "").await.expect("pg scan"),
            local.scan(namespace, "").await.expect("local scan")
        );
    }
}

#[test]
fn the_postgresql_store_answers_as_the_local_one() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let config = ProptestConfig {
        cases: 24,
        failure_persistence: None,
        ..ProptestConfig::default()
    };
    proptest!(config, |(ops in prop::collection::vec(op(), 1..60))| {
        runtime.block_on(async {
            let database = fresh_database("records").await;
            let pg = PgRecords::connect(&database).await.expect("connect");
            let dir = tempfile::tempdir().expect("tempdir");
            let local = RecordsService::new(
                MetaStore::open(&dir.path().join("metadata.redb")).expect("local store"),
            );
            check(&pg, &local, &ops).await;
        });
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn byte_order_and_prefixes_on_fixed_keys() {
    let database = fresh_database("records-fixed").await;
    let pg = PgRecords::connect(&database).await.expect("connect");
    let dir = tempfile::tempdir().expect("tempdir");
    let local = RecordsService::new(
        MetaStore::open(&dir.path().join("metadata.redb")).expect("local store"),
    );
    let keys = [
        "2\u{1f}3\u{1f}x",
        "2\u{1f}3",
        "2\u{1f}",
        "2",
        "20",
        "2\u{1f}3\u{1f}é",
        "2\u{1f}3\u{1f}Z",
        "",
    ];
    let ops: Vec<Op> = keys
        .iter()
        .map(|k| Op::Put(1, (*k).to_owned(), k.as_bytes().to_vec()))
        .chain(
            ["", "2", "2\u{1f}", "2\u{1f}3\u{1f}", "3", "é"]
                .iter()
                .map(|p| Op::Scan(1, (*p).to_owned())),
        )
        .collect();
    check(&pg, &local, &ops).await;
    let scanned: Vec<String> = pg
        .scan("kafka.acl", "2\u{1f}3\u{1f}")
        .await
        .expect("scan")
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        scanned,
        ["2\u{1f}3\u{1f}Z", "2\u{1f}3\u{1f}x", "2\u{1f}3\u{1f}é"],
        "byte order"
    );
}
