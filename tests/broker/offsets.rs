//! Consumer offsets on a real redb file: commits, lookups, deletes, reopen, topic delete.

use std::path::Path;
use std::sync::Arc;

use tributary::broker::metadata::{MetaStore, TopicRecord, random_id};
use tributary::broker::offsets::OffsetsService;
use tributary_api::{CommittedOffset, OffsetStore, TopicPartition, TopicSettings};

fn committed(offset: i64) -> CommittedOffset {
    CommittedOffset {
        offset,
        metadata: format!("meta-{offset}"),
        commit_time: 1_000 + offset,
    }
}

fn open(dir: &Path) -> (Arc<MetaStore>, OffsetsService) {
    let meta = MetaStore::open(&dir.join("metadata.redb")).unwrap();
    (meta.clone(), OffsetsService::new(meta))
}

#[tokio::test]
async fn commits_many_fetches_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (_meta, offsets) = open(dir.path());
    let batch: Vec<_> = (0..50u32)
        .map(|p| {
            (
                TopicPartition::new(format!("t{}", p % 5), p),
                committed(i64::from(p) * 10),
            )
        })
        .collect();
    offsets.commit("group-a", batch.clone()).await.unwrap();
    offsets
        .commit(
            "group-b",
            vec![(TopicPartition::new("t0", 0), committed(7))],
        )
        .await
        .unwrap();
    // A later commit of one position replaces only that position.
    offsets
        .commit(
            "group-a",
            vec![(TopicPartition::new("t3", 3), committed(999))],
        )
        .await
        .unwrap();
    drop(offsets);
    drop(_meta);

    let (_meta, offsets) = open(dir.path());
    assert_eq!(
        offsets
            .fetch("group-a", &TopicPartition::new("t3", 3))
            .await
            .unwrap(),
        Some(committed(999))
    );
    assert_eq!(
        offsets
            .fetch("group-a", &TopicPartition::new("t4", 4))
            .await
            .unwrap(),
        Some(committed(40))
    );
    assert_eq!(
        offsets
            .fetch("group-a", &TopicPartition::new("t4", 5))
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        offsets
            .fetch("nobody", &TopicPartition::new("t0", 0))
            .await
            .unwrap(),
        None
    );

    let group = offsets.fetch_group("group-a").await.unwrap();
    assert_eq!(group.len(), 50);
    let mut expected: Vec<_> = batch
        .into_iter()
        .map(|(tp, o)| {
            if tp.partition == 3 {
                (tp, committed(999))
            } else {
                (tp, o)
            }
        })
        .collect();
    expected.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        group, expected,
        "fetch_group returns every position in (topic, partition) order"
    );
    assert_eq!(offsets.groups().await.unwrap(), vec!["group-a", "group-b"]);

    assert!(
        offsets
            .delete_offset("group-b", &TopicPartition::new("t0", 0))
            .await
            .unwrap()
    );
    assert!(
        !offsets
            .delete_offset("group-b", &TopicPartition::new("t0", 0))
            .await
            .unwrap()
    );
    assert_eq!(offsets.groups().await.unwrap(), vec!["group-a"]);
    assert_eq!(offsets.delete_group("group-a").await.unwrap(), 50);
    assert_eq!(offsets.delete_group("group-a").await.unwrap(), 0);
    assert!(offsets.groups().await.unwrap().is_empty());
}

#[tokio::test]
async fn group_names_that_prefix_each_other_stay_apart() {
    let dir = tempfile::tempdir().unwrap();
    let (_meta, offsets) = open(dir.path());
    for group in ["g", "g1", "g\u{0}x", "h"] {
        offsets
            .commit(group, vec![(TopicPartition::new("t", 0), committed(1))])
            .await
            .unwrap();
    }
    assert_eq!(offsets.fetch_group("g").await.unwrap().len(), 1);
    assert_eq!(offsets.delete_group("g").await.unwrap(), 1);
    assert_eq!(offsets.groups().await.unwrap(), vec!["g\u{0}x", "g1", "h"]);
}

#[tokio::test]
async fn deleting_a_topic_removes_its_offsets_in_every_group() {
    let dir = tempfile::tempdir().unwrap();
    let (meta, offsets) = open(dir.path());
    let topic = |name: &str| TopicRecord {
        name: name.to_owned(),
        id: random_id().unwrap(),
        partitions: 2,
        settings: TopicSettings::default(),
        internal: false,
        created_ms: 0,
        fixed_by: None,
    };
    meta.put_topic(&topic("doomed")).unwrap();
    meta.put_topic(&topic("kept")).unwrap();
    for group in ["a", "b"] {
        offsets
            .commit(
                group,
                vec![
                    (TopicPartition::new("doomed", 0), committed(1)),
                    (TopicPartition::new("doomed", 1), committed(2)),
                    (TopicPartition::new("kept", 0), committed(3)),
                ],
            )
            .await
            .unwrap();
    }
    assert!(meta.delete_topic("doomed").unwrap());
    for group in ["a", "b"] {
        let left = offsets.fetch_group(group).await.unwrap();
        assert_eq!(left, vec![(TopicPartition::new("kept", 0), committed(3))]);
    }
    let names: Vec<String> = meta.topics().unwrap().into_iter().map(|t| t.name).collect();
    assert_eq!(names, vec!["kept"]);
}
