//! The delayed-append scheduler against a real metadata file, real storage and the real queues.

use crate::common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{Node, batch, durable, log_config, summary};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tributary::broker::LogDefaults;
use tributary::broker::scheduler::SchedulerService;
use tributary::broker::topics::Topics;
use tributary_api::{
    EngineError, LogService, QueueService, ScheduleTarget, Scheduler, TopicAdmin, TopicPartition,
    TopicSettings,
};

/// A node with the scheduler task running.
struct Running {
    node: Node,
    topics: Arc<Topics>,
    scheduler: Arc<SchedulerService>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
}

impl Running {
    fn start(dir: &std::path::Path) -> Running {
        let node = Node::open(dir, log_config(1 << 20));
        let scheduler = SchedulerService::new(node.meta.clone());
        let (tracker, shutdown) = (TaskTracker::new(), CancellationToken::new());
        let topics = Arc::new(
            Topics::open(
                node.storage.clone(),
                node.meta.clone(),
                LogDefaults::default(),
                Default::default(),
            )
            .unwrap(),
        );
        let queues: Arc<dyn QueueService> = node.queues.clone();
        scheduler.spawn(&tracker, shutdown.clone(), topics.clone(), queues);
        Running {
            node,
            topics,
            scheduler,
            tracker,
            shutdown,
        }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        self.tracker.close();
        self.tracker.wait().await;
    }
}

/// The number of stored entries once it reaches `expected` (or after 5 s): the entry is
/// deleted just after its append, so a test that saw the append may look a moment too early.
async fn settled_count(run: &Running, expected: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let count = run.node.meta.scheduled_count().unwrap();
        if count == expected || Instant::now() >= deadline {
            return count;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn an_entry_due_in_200ms_reaches_its_queue_on_time() {
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(dir.path());
    let q = run.node.queues.clone();
    q.declare_queue("delayed", durable()).await.unwrap();
    let started = Instant::now();
    let due = run.scheduler.now_ms() + 200;
    let id = run
        .scheduler
        .schedule_append(
            due,
            ScheduleTarget::Queue("delayed".into()),
            batch(&["later"]),
        )
        .await
        .unwrap();
    assert!(id > 0);
    assert!(
        !q.wait_ready("delayed", Duration::from_millis(100))
            .await
            .unwrap(),
        "not early"
    );
    assert!(
        q.wait_ready("delayed", Duration::from_secs(5))
            .await
            .unwrap()
    );
    let elapsed = started.elapsed();
    assert!(elapsed >= Duration::from_millis(190), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(1500), "late: {elapsed:?}");
    assert_eq!(summary(&q.take("delayed", 5).await.unwrap())[0].0, "later");
    // Delivered entries are deleted from the schedule (just after the append).
    assert_eq!(settled_count(&run, 0).await, 0);
    run.stop().await;
}

#[tokio::test]
async fn an_earlier_entry_wakes_the_sleeping_task() {
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(dir.path());
    let q = run.node.queues.clone();
    q.declare_queue("d", durable()).await.unwrap();
    let now = run.scheduler.now_ms();
    let target = ScheduleTarget::Queue("d".into());
    run.scheduler
        .schedule_append(now + 60_000, target.clone(), batch(&["far"]))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await; // the task is now asleep for a minute
    run.scheduler
        .schedule_append(now + 100, target, batch(&["near"]))
        .await
        .unwrap();
    assert!(q.wait_ready("d", Duration::from_secs(3)).await.unwrap());
    assert_eq!(summary(&q.take("d", 5).await.unwrap())[0].0, "near");
    assert_eq!(settled_count(&run, 1).await, 1, "the far entry stays");
    run.stop().await;
}

#[tokio::test]
async fn a_pending_entry_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let due;
    {
        let run = Running::start(dir.path());
        run.node.queues.declare_queue("r", durable()).await.unwrap();
        due = run.scheduler.now_ms() + 600;
        run.scheduler
            .schedule_append(due, ScheduleTarget::Queue("r".into()), batch(&["survivor"]))
            .await
            .unwrap();
        run.stop().await;
    }
    let run = Running::start(dir.path());
    let q = run.node.queues.clone();
    assert!(q.wait_ready("r", Duration::from_secs(5)).await.unwrap());
    assert!(
        run.scheduler.now_ms() >= due,
        "delivered at or after its due time"
    );
    assert_eq!(summary(&q.take("r", 5).await.unwrap())[0].0, "survivor");
    run.stop().await;
}

#[tokio::test]
async fn cancel_stops_delivery_and_reports_whether_pending() {
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(dir.path());
    let q = run.node.queues.clone();
    q.declare_queue("c", durable()).await.unwrap();
    let due = run.scheduler.now_ms() + 300;
    let target = ScheduleTarget::Queue("c".into());
    let doomed = run
        .scheduler
        .schedule_append(due, target.clone(), batch(&["no"]))
        .await
        .unwrap();
    let kept = run
        .scheduler
        .schedule_append(due, target, batch(&["yes"]))
        .await
        .unwrap();
    assert_ne!(doomed, kept);
    assert!(run.scheduler.cancel(doomed).await.unwrap());
    assert!(!run.scheduler.cancel(doomed).await.unwrap());
    assert!(q.wait_ready("c", Duration::from_secs(5)).await.unwrap());
    tokio::time::sleep(Duration::from_millis(300)).await;
    let values: Vec<String> = summary(&q.take("c", 10).await.unwrap())
        .into_iter()
        .map(|d| d.0)
        .collect();
    assert_eq!(values, vec!["yes"]);
    assert!(
        !run.scheduler.cancel(kept).await.unwrap(),
        "already delivered"
    );
    run.stop().await;
}

#[tokio::test]
async fn partition_targets_get_appended_and_missing_targets_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let run = Running::start(dir.path());
    run.topics
        .create_topic("events", 2, TopicSettings::default())
        .await
        .unwrap();
    let now = run.scheduler.now_ms();
    let tp = TopicPartition::new("events", 1);
    run.scheduler
        .schedule_append(
            now + 50,
            ScheduleTarget::Partition(tp.clone()),
            batch(&["e"]),
        )
        .await
        .unwrap();
    run.scheduler
        .schedule_append(
            now + 50,
            ScheduleTarget::Queue("missing".into()),
            batch(&["lost"]),
        )
        .await
        .unwrap();
    assert!(
        run.topics
            .wait_for(&tp, 0, Duration::from_secs(5))
            .await
            .unwrap()
    );
    assert_eq!(
        settled_count(&run, 0).await,
        0,
        "the entry for a missing queue is dropped"
    );
    let corrupt = run
        .scheduler
        .schedule_append(
            now,
            ScheduleTarget::Partition(tp),
            Bytes::from_static(b"junk"),
        )
        .await;
    assert!(matches!(corrupt, Err(EngineError::CorruptBatch(_))));
    run.stop().await;
}
