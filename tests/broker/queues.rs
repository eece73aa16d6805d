//! Queues on the log against real storage and a real metadata file; restarts reopen everything.

use crate::common;

use std::fs::OpenOptions;
use std::io::Write;
use std::time::{Duration, Instant};

use common::{Node, batch, durable, log_config, s, summary};
use tributary::broker::queues::journal_path;
use tributary_api::{BatchError, EngineError, QueueDepth, QueueOptions, QueueService};

const MB: u64 = 1 << 20;

#[tokio::test]
async fn fifo_ack_and_requeue_goes_first_flagged_redelivered() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(dir.path(), log_config(MB));
    let q = &node.queues;
    assert_eq!(
        q.declare_queue("jobs", durable()).await.unwrap(),
        QueueDepth::default()
    );
    q.enqueue("jobs", batch(&["m0", "m1", "m2"])).await.unwrap();
    let outcome = q.enqueue("jobs", batch(&["m3", "m4"])).await.unwrap();
    assert_eq!((outcome.base_offset, outcome.last_offset), (3, 4));
    assert_eq!(
        q.depth("jobs").await.unwrap(),
        QueueDepth {
            ready: 5,
            unacked: 0,
            ready_bytes: 0
        }
    );

    let first = q.take("jobs", 3).await.unwrap();
    assert_eq!(
        summary(&first),
        vec![s("m0", 0, false), s("m1", 1, false), s("m2", 2, false)]
    );
    assert_eq!(first[0].record.headers.len(), 1, "records come back whole");
    assert_eq!(
        q.depth("jobs").await.unwrap(),
        QueueDepth {
            ready: 2,
            unacked: 3,
            ready_bytes: 0
        }
    );

    q.ack("jobs", &[0, 2]).await.unwrap();
    assert!(matches!(
        q.ack("jobs", &[0]).await,
        Err(EngineError::UnknownDelivery(0))
    ));
    assert!(matches!(
        q.requeue("jobs", &[4]).await,
        Err(EngineError::UnknownDelivery(4))
    ));
    q.requeue("jobs", &[1]).await.unwrap();
    assert_eq!(
        q.depth("jobs").await.unwrap(),
        QueueDepth {
            ready: 3,
            unacked: 0,
            ready_bytes: 0
        }
    );

    let next = q.take("jobs", 10).await.unwrap();
    assert_eq!(
        summary(&next),
        vec![s("m1", 1, true), s("m3", 3, false), s("m4", 4, false)]
    );
    assert!(q.take("jobs", 10).await.unwrap().is_empty());
    q.ack("jobs", &[1, 3, 4]).await.unwrap();
    assert_eq!(q.depth("jobs").await.unwrap(), QueueDepth::default());
    assert_eq!(q.queues().await, vec!["jobs"]);
    assert!(matches!(
        q.take("nope", 1).await,
        Err(EngineError::UnknownQueue(_))
    ));
}

#[tokio::test]
async fn restart_brings_back_unacked_as_redelivered_and_keeps_acks() {
    let dir = tempfile::tempdir().unwrap();
    {
        let node = Node::open(dir.path(), log_config(MB));
        let q = &node.queues;
        q.declare_queue("jobs", durable()).await.unwrap();
        q.enqueue("jobs", batch(&["a", "b", "c", "d", "e", "f"]))
            .await
            .unwrap();
        let taken = q.take("jobs", 4).await.unwrap();
        assert_eq!(taken.len(), 4);
        q.ack("jobs", &[0, 2]).await.unwrap();
        // No flush, no close: the process state is simply dropped.
    }
    let node = Node::open(dir.path(), log_config(MB));
    let q = &node.queues;
    assert_eq!(q.queues().await, vec!["jobs"]);
    assert_eq!(
        q.depth("jobs").await.unwrap(),
        QueueDepth {
            ready: 4,
            unacked: 0,
            ready_bytes: 0
        }
    );
    q.enqueue("jobs", batch(&["g"])).await.unwrap();
    let all = q.take("jobs", 10).await.unwrap();
    assert_eq!(
        summary(&all),
        vec![
            s("b", 1, true),
            s("d", 3, true),
            s("e", 4, false),
            s("f", 5, false),
            s("g", 6, false),
        ]
    );
    // Declaring again is idempotent and reports the live depth.
    let depth = q.declare_queue("jobs", durable()).await.unwrap();
    assert_eq!(
        depth,
        QueueDepth {
            ready: 0,
            unacked: 5,
            ready_bytes: 0
        }
    );
}

#[tokio::test]
async fn requeue_counts_survive_a_restart_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    {
        let node = Node::open(dir.path(), log_config(MB));
        let q = &node.queues;
        q.declare_queue("retry", durable()).await.unwrap();
        q.enqueue("retry", batch(&["a", "b", "c"])).await.unwrap();
        assert_eq!(q.take("retry", 2).await.unwrap().len(), 2);
        for expected in 1..=3 {
            q.requeue("retry", &[0]).await.unwrap();
            let again = q.take("retry", 1).await.unwrap();
            assert_eq!((again[0].id, again[0].returns), (0, expected));
        }
        q.requeue("retry", &[1]).await.unwrap();
        q.requeue("retry", &[0]).await.unwrap();
        // a: requeued 4 times and ready; b: requeued once and ready; no flush, no close.
    }
    let reopened = |dir: &std::path::Path| Node::open(dir, log_config(MB));
    {
        let node = reopened(dir.path());
        let q = &node.queues;
        let all = q.take("retry", 10).await.unwrap();
        let counts: Vec<(u64, u32, bool)> = all
            .iter()
            .map(|d| (d.id, d.returns, d.redelivered))
            .collect();
        assert_eq!(counts, [(0, 4, true), (1, 1, true), (2, 0, false)]);
        q.ack("retry", &[1]).await.unwrap();
        // Enough requeues of `a` to compact the journal; c stays unacked at the next stop.
        for _ in 0..3000 {
            q.requeue("retry", &[0]).await.unwrap();
            assert_eq!(q.take("retry", 1).await.unwrap()[0].id, 0);
        }
        q.requeue("retry", &[0]).await.unwrap();
    }
    let node = reopened(dir.path());
    let journal = journal_path(&node.journal_dir(), "retry");
    let journal_len = std::fs::metadata(journal).unwrap().len();
    assert!(
        journal_len < 13 * 4096,
        "the journal was compacted: {journal_len} bytes"
    );
    let all = node.queues.take("retry", 10).await.unwrap();
    let counts: Vec<(u64, u32)> = all.iter().map(|d| (d.id, d.returns)).collect();
    assert_eq!(counts, [(0, 3005), (2, 0)], "b was acked; a kept its count");
}

#[tokio::test]
async fn transient_queues_are_gone_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let node = Node::open(dir.path(), log_config(MB));
        let transient = QueueOptions {
            durable: false,
            durability: None,
            ..Default::default()
        };
        node.queues.declare_queue("tmp", transient).await.unwrap();
        node.queues.declare_queue("keep", durable()).await.unwrap();
        node.queues.enqueue("tmp", batch(&["x"])).await.unwrap();
    }
    let node = Node::open(dir.path(), log_config(MB));
    assert_eq!(node.queues.queues().await, vec!["keep"]);
    let names: Vec<String> = node
        .meta
        .queues()
        .unwrap()
        .into_iter()
        .map(|q| q.name)
        .collect();
    assert_eq!(names, vec!["keep"]);
    assert!(
        !node
            .storage
            .topics_on_disk()
            .unwrap()
            .contains(&"queue:tmp".to_owned())
    );
    assert!(!journal_path(&node.journal_dir(), "tmp").exists());
}

#[tokio::test]
async fn purge_depth_and_delete() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(dir.path(), log_config(MB));
    let q = &node.queues;
    q.declare_queue("work", durable()).await.unwrap();
    for i in 0..5 {
        q.enqueue("work", batch(&[&format!("p{i}a"), &format!("p{i}b")]))
            .await
            .unwrap();
    }
    let taken = q.take("work", 3).await.unwrap();
    q.requeue("work", &[taken[2].id]).await.unwrap();
    assert_eq!(
        q.depth("work").await.unwrap(),
        QueueDepth {
            ready: 8,
            unacked: 2,
            ready_bytes: 0
        }
    );
    assert_eq!(q.purge_queue("work").await.unwrap(), 8);
    assert_eq!(
        q.depth("work").await.unwrap(),
        QueueDepth {
            ready: 0,
            unacked: 2,
            ready_bytes: 0
        }
    );
    assert!(q.take("work", 10).await.unwrap().is_empty());
    q.enqueue("work", batch(&["after"])).await.unwrap();
    assert_eq!(
        summary(&q.take("work", 10).await.unwrap()),
        vec![s("after", 10, false)]
    );

    assert_eq!(
        q.delete_queue("work").await.unwrap(),
        3,
        "two unacked and one new unacked"
    );
    assert!(matches!(
        q.depth("work").await,
        Err(EngineError::UnknownQueue(_))
    ));
    assert!(matches!(
        q.delete_queue("work").await,
        Err(EngineError::UnknownQueue(_))
    ));
    assert!(q.queues().await.is_empty());
    assert!(node.meta.queues().unwrap().is_empty());
    assert!(!journal_path(&node.journal_dir(), "work").exists());
    // A queue declared again under the same name starts empty.
    assert_eq!(
        q.declare_queue("work", durable()).await.unwrap(),
        QueueDepth::default()
    );
    assert!(q.take("work", 10).await.unwrap().is_empty());
}

#[tokio::test]
async fn purged_messages_stay_purged_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    {
        let node = Node::open(dir.path(), log_config(MB));
        node.queues.declare_queue("p", durable()).await.unwrap();
        node.queues
            .enqueue("p", batch(&["1", "2", "3"]))
            .await
            .unwrap();
        assert_eq!(node.queues.purge_queue("p").await.unwrap(), 3);
        node.queues.enqueue("p", batch(&["4"])).await.unwrap();
    }
    let node = Node::open(dir.path(), log_config(MB));
    assert_eq!(
        summary(&node.queues.take("p", 10).await.unwrap()),
        vec![s("4", 3, false)]
    );
}

#[tokio::test]
async fn wait_ready_wakes_on_enqueue_and_requeue_and_times_out() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(dir.path(), log_config(MB));
    let q = node.queues.clone();
    q.declare_queue("w", durable()).await.unwrap();

    let started = Instant::now();
    assert!(!q.wait_ready("w", Duration::from_millis(200)).await.unwrap());
    assert!(started.elapsed() >= Duration::from_millis(200));

    let producer = {
        let q = q.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            q.enqueue("w", batch(&["hello"])).await.unwrap();
        })
    };
    let started = Instant::now();
    assert!(q.wait_ready("w", Duration::from_secs(10)).await.unwrap());
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(100) && waited < Duration::from_secs(5),
        "{waited:?}"
    );
    producer.await.unwrap();

    let taken = q.take("w", 1).await.unwrap();
    assert!(!q.wait_ready("w", Duration::from_millis(50)).await.unwrap());
    let requeuer = {
        let q = q.clone();
        let id = taken[0].id;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(150)).await;
            q.requeue("w", &[id]).await.unwrap();
        })
    };
    let started = Instant::now();
    assert!(q.wait_ready("w", Duration::from_secs(10)).await.unwrap());
    assert!(started.elapsed() < Duration::from_secs(5));
    requeuer.await.unwrap();
    assert!(
        q.wait_ready("w", Duration::from_millis(10)).await.unwrap(),
        "still ready"
    );
}

/// A transient queue settles without the blocking pool and leaves segment deletion to a
/// background task: it still happens, without a flush.
#[tokio::test]
async fn acking_a_transient_queue_deletes_old_segments_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(dir.path(), log_config(4096));
    let q = &node.queues;
    let transient = QueueOptions {
        durable: false,
        durability: None,
        ..Default::default()
    };
    q.declare_queue("short", transient).await.unwrap();
    let payload = "x".repeat(200);
    for _ in 0..300 {
        q.enqueue("short", batch(&[&payload])).await.unwrap();
    }
    let before = q.segment_count("short").unwrap();
    assert!(before > 10, "small segments roll: {before}");
    let mut acked = 0;
    loop {
        let taken = q.take("short", 50).await.unwrap();
        if taken.is_empty() {
            break;
        }
        let ids: Vec<u64> = taken.iter().map(|d| d.id).collect();
        acked += ids.len();
        q.ack("short", &ids).await.unwrap();
    }
    assert_eq!(acked, 300);
    assert_eq!(q.depth("short").await.unwrap(), QueueDepth::default());
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = q.segment_count("short").unwrap();
    while after > 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
        after = q.segment_count("short").unwrap();
    }
    assert!(
        after <= 2,
        "fully acked segments are deleted: {before} -> {after}"
    );
}

#[tokio::test]
async fn acking_everything_deletes_old_segments() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(dir.path(), log_config(4096));
    let q = &node.queues;
    q.declare_queue("big", durable()).await.unwrap();
    let payload = "x".repeat(200);
    for _ in 0..300 {
        q.enqueue("big", batch(&[&payload])).await.unwrap();
    }
    let before = q.segment_count("big").unwrap();
    assert!(before > 10, "small segments roll: {before}");
    loop {
        let taken = q.take("big", 50).await.unwrap();
        if taken.is_empty() {
            break;
        }
        let ids: Vec<u64> = taken.iter().map(|d| d.id).collect();
        q.ack("big", &ids).await.unwrap();
    }
    node.queues.flush().unwrap();
    let after = q.segment_count("big").unwrap();
    assert!(
        after <= 2,
        "fully acked segments are deleted: {before} -> {after}"
    );
    assert_eq!(q.depth("big").await.unwrap(), QueueDepth::default());

    // The trimmed log and the journal agree after a restart.
    drop(node);
    let node = Node::open(dir.path(), log_config(4096));
    assert_eq!(
        node.queues.depth("big").await.unwrap(),
        QueueDepth::default()
    );
    node.queues.enqueue("big", batch(&["tail"])).await.unwrap();
    assert_eq!(
        summary(&node.queues.take("big", 5).await.unwrap()),
        vec![s("tail", 300, false)]
    );
}

#[tokio::test]
async fn a_torn_last_journal_entry_is_tolerated() {
    let dir = tempfile::tempdir().unwrap();
    {
        let node = Node::open(dir.path(), log_config(MB));
        let q = &node.queues;
        q.declare_queue("t", durable()).await.unwrap();
        q.enqueue("t", batch(&["0", "1", "2", "3", "4"]))
            .await
            .unwrap();
        q.take("t", 5).await.unwrap();
        q.ack("t", &[0, 1, 2]).await.unwrap();
        // Half an entry, as a crash in the middle of a journal write leaves it.
        let path = journal_path(&node.journal_dir(), "t");
        let mut file = OpenOptions::new().append(true).open(path).unwrap();
        file.write_all(&[1, 0, 0, 0, 0, 0, 0]).unwrap();
    }
    let node = Node::open(dir.path(), log_config(MB));
    let q = &node.queues;
    assert_eq!(
        summary(&q.take("t", 10).await.unwrap()),
        vec![s("3", 3, true), s("4", 4, true)]
    );
    q.ack("t", &[3]).await.unwrap();
    drop(node);
    let node = Node::open(dir.path(), log_config(MB));
    assert_eq!(
        summary(&node.queues.take("t", 10).await.unwrap()),
        vec![s("4", 4, true)]
    );
}

#[tokio::test]
async fn compressed_batches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(dir.path(), log_config(MB));
    node.queues.declare_queue("c", durable()).await.unwrap();
    let mut raw = batch(&["z"]).to_vec();
    raw[22] |= 0x04; // attributes: zstd
    let err = node.queues.enqueue("c", raw.into()).await.unwrap_err();
    assert!(
        matches!(err, EngineError::CorruptBatch(BatchError::Compressed(4))),
        "{err}"
    );
    assert_eq!(node.queues.depth("c").await.unwrap(), QueueDepth::default());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_consumers_each_message_once() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(dir.path(), log_config(16 * 1024));
    let q = node.queues.clone();
    q.declare_queue("shared", durable()).await.unwrap();
    for chunk in 0..50 {
        let values: Vec<String> = (0..10).map(|i| format!("v{}", chunk * 10 + i)).collect();
        let refs: Vec<&str> = values.iter().map(String::as_str).collect();
        q.enqueue("shared", batch(&refs)).await.unwrap();
    }
    let consumers: Vec<_> = (0..4)
        .map(|_| {
            let q = q.clone();
            tokio::spawn(async move {
                let mut seen = Vec::new();
                loop {
                    let taken = q.take("shared", 7).await.unwrap();
                    if taken.is_empty() {
                        return seen;
                    }
                    let ids: Vec<u64> = taken.iter().map(|d| d.id).collect();
                    q.ack("shared", &ids).await.unwrap();
                    seen.extend(ids);
                }
            })
        })
        .collect();
    let mut all = Vec::new();
    for consumer in consumers {
        all.extend(consumer.await.unwrap());
    }
    all.sort_unstable();
    assert_eq!(
        all,
        (0..500).collect::<Vec<u64>>(),
        "every message exactly once"
    );
    assert_eq!(q.depth("shared").await.unwrap(), QueueDepth::default());
}

#[tokio::test]
async fn the_ack_journal_is_compacted_and_still_replays() {
    let dir = tempfile::tempdir().unwrap();
    let fast = QueueOptions {
        durable: true,
        durability: Some(tributary_api::Durability::Never),
        ..Default::default()
    };
    let total = 5_000u64;
    {
        let node = Node::open(dir.path(), log_config(MB));
        let q = &node.queues;
        q.declare_queue("many", fast).await.unwrap();
        for chunk in 0..total / 100 {
            let values: Vec<String> = (0..100).map(|i| format!("{}", chunk * 100 + i)).collect();
            let refs: Vec<&str> = values.iter().map(String::as_str).collect();
            q.enqueue("many", batch(&refs)).await.unwrap();
        }
        // One ack per call, leaving offset 10 unacked so the floor stays low.
        let taken = q.take("many", total as usize).await.unwrap();
        for delivery in taken.iter().filter(|d| d.id != 10) {
            q.ack("many", &[delivery.id]).await.unwrap();
        }
        q.flush().unwrap();
        // Compaction runs on the blocking pool after the settle that made it due: wait for it
        // (on a loaded machine it may not have run yet when the last ack returns).
        let path = journal_path(&node.journal_dir(), "many");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        let mut journal = std::fs::metadata(&path).unwrap().len();
        while journal >= 4096 * 13 && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            journal = std::fs::metadata(&path).unwrap().len();
        }
        assert!(
            journal < 4096 * 13,
            "compacted: {journal} bytes for {total} acks"
        );
    }
    let node = Node::open(dir.path(), log_config(MB));
    let q = &node.queues;
    assert_eq!(
        q.depth("many").await.unwrap(),
        QueueDepth {
            ready: 1,
            unacked: 0,
            ready_bytes: 0
        }
    );
    assert_eq!(
        summary(&q.take("many", 10).await.unwrap()),
        vec![s("10", 10, true)]
    );
}

/// A batch of records with the given (value, priority) pairs; `None` has no priority header.
fn prioritised(values: &[(&str, Option<u8>)]) -> bytes::Bytes {
    let records: Vec<tributary_api::Record> = values
        .iter()
        .map(|(value, priority)| tributary_api::Record {
            value: Some(bytes::Bytes::copy_from_slice(value.as_bytes())),
            headers: priority
                .map(|p| {
                    (
                        bytes::Bytes::from_static(tributary_api::queue::PRIORITY_HEADER),
                        Some(bytes::Bytes::from(vec![p])),
                    )
                })
                .into_iter()
                .collect(),
            ..Default::default()
        })
        .collect();
    tributary_api::batch::build_batch(&records)
}

#[tokio::test]
async fn a_priority_queue_orders_by_priority_counts_bytes_and_recovers_its_index() {
    let dir = tempfile::tempdir().unwrap();
    let options = QueueOptions {
        max_priority: Some(5),
        ..durable()
    };
    {
        let node = Node::open(dir.path(), log_config(MB));
        let q = &node.queues;
        q.declare_queue("prio", options.clone()).await.unwrap();
        q.enqueue(
            "prio",
            prioritised(&[("low", None), ("mid", Some(3)), ("top", Some(9))]),
        )
        .await
        .unwrap();
        q.enqueue("prio", prioritised(&[("mid2", Some(3)), ("one", Some(1))]))
            .await
            .unwrap();
        let depth = q.depth("prio").await.unwrap();
        assert_eq!((depth.ready, depth.ready_bytes), (5, 16));
        let first = q.take("prio", 2).await.unwrap();
        assert_eq!(
            summary(&first),
            vec![s("top", 2, false), s("mid", 1, false)],
            "9 is clamped to 5 and still first"
        );
        q.requeue("prio", &[1]).await.unwrap();
        q.ack("prio", &[2]).await.unwrap();
        let again = q.take("prio", 1).await.unwrap();
        assert_eq!(summary(&again), vec![s("mid", 1, true)]);
        assert_eq!(again[0].returns, 1, "requeued once");
    }
    let node = Node::open(dir.path(), log_config(MB));
    let q = &node.queues;
    let depth = q.depth("prio").await.unwrap();
    assert_eq!(
        (depth.ready, depth.ready_bytes),
        (4, 13),
        "all but the acked one"
    );
    let rest = q.take("prio", 10).await.unwrap();
    let order: Vec<String> = summary(&rest).into_iter().map(|(v, _, _)| v).collect();
    assert_eq!(order, ["mid", "mid2", "one", "low"]);
    assert_eq!(
        rest.iter().map(|d| d.returns).collect::<Vec<_>>(),
        [1, 0, 0, 0],
        "the requeue count of mid survived the restart"
    );
    q.requeue("prio", &[4, 0]).await.unwrap();
    assert_eq!(q.purge_queue("prio").await.unwrap(), 2);
    assert_eq!(q.depth("prio").await.unwrap().ready_bytes, 0);
}

/// Small takes are served from the records a previous read decoded (the read-ahead); every
/// record still comes out once, in order, and a requeue in between goes first.
#[tokio::test]
async fn small_takes_from_the_read_ahead_hand_out_each_record_once_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let node = Node::open(dir.path(), log_config(MB));
    let q = &node.queues;
    q.declare_queue("steps", durable()).await.unwrap();
    let names: Vec<String> = (0..300).map(|i| format!("m{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    q.enqueue("steps", batch(&refs[..200])).await.unwrap();
    q.enqueue("steps", batch(&refs[200..])).await.unwrap();
    let mut seen = Vec::new();
    let first = q.take("steps", 7).await.unwrap();
    q.requeue("steps", &[3]).await.unwrap();
    seen.extend(summary(&first).into_iter().filter(|(_, id, _)| *id != 3));
    loop {
        let taken = q.take("steps", 7).await.unwrap();
        if taken.is_empty() {
            break;
        }
        seen.extend(summary(&taken));
    }
    let expected: Vec<_> = (0..7)
        .filter(|i| *i != 3)
        .map(|i| s(&names[i as usize], i, false))
        .chain(std::iter::once(s("m3", 3, true)))
        .chain((7..300).map(|i| s(&names[i as usize], i, false)))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(q.depth("steps").await.unwrap().unacked, 300);
}
