//! Namespaced records on a real redb file: put, get, delete, prefix scans, reopen.

use bytes::Bytes;
use tributary::broker::metadata::MetaStore;
use tributary::broker::records::RecordsService;
use tributary_api::MetadataStore;

#[tokio::test]
async fn put_get_delete_scan_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("metadata.redb");
    let records = RecordsService::new(MetaStore::open(&path).unwrap());
    let keys = [
        "vhost/b/exchange",
        "vhost/a/queue",
        "vhost/a/exchange",
        "vhost",
        "vhostz",
        "other",
    ];
    for key in keys {
        records
            .put("amqp", key, Bytes::from(format!("value of {key}")))
            .await
            .unwrap();
    }
    records
        .put("rocketmq", "vhost/a/x", Bytes::from_static(b"r"))
        .await
        .unwrap();
    records
        .put("amqp", "vhost/a/queue", Bytes::from_static(b"replaced"))
        .await
        .unwrap();
    drop(records);

    let records = RecordsService::new(MetaStore::open(&path).unwrap());
    assert_eq!(
        records.get("amqp", "vhost/a/queue").await.unwrap(),
        Some(Bytes::from_static(b"replaced"))
    );
    assert_eq!(records.get("amqp", "missing").await.unwrap(), None);
    assert_eq!(
        records.get("rocketmq", "vhost").await.unwrap(),
        None,
        "namespaces are separate"
    );

    let scanned: Vec<String> = records
        .scan("amqp", "vhost/")
        .await
        .unwrap()
        .into_iter()
        .map(|(k, _)| k)
        .collect();
    assert_eq!(
        scanned,
        vec!["vhost/a/exchange", "vhost/a/queue", "vhost/b/exchange"]
    );
    let all = records.scan("amqp", "").await.unwrap();
    let all_keys: Vec<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
    let mut sorted = keys.to_vec();
    sorted.sort_unstable();
    assert_eq!(
        all_keys, sorted,
        "an empty prefix lists the namespace in key order"
    );
    assert_eq!(all[0].1, Bytes::from_static(b"value of other"));

    assert!(records.delete("amqp", "vhost/a/queue").await.unwrap());
    assert!(!records.delete("amqp", "vhost/a/queue").await.unwrap());
    assert_eq!(records.scan("amqp", "vhost/a").await.unwrap().len(), 1);
    assert_eq!(records.scan("rocketmq", "").await.unwrap().len(), 1);
}
