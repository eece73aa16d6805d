//! The RocketMQ exporter's families, so its Grafana dashboard (10477) and alerts work unchanged:
//! `rocketmq_broker_tps{cluster,broker}`, `rocketmq_broker_qps{cluster,broker}`,
//! `rocketmq_producer_tps{cluster,broker,topic}`, `rocketmq_consumer_tps{cluster,broker,topic,group}`, `rocketmq_consumer_offset{...,group}` and
//! `rocketmq_group_diff` / `_retrydiff` / `_dlqdiff{group,topic,countOfOnlineConsumers,msgModel}`
//! (lag summed over the topic's queues; retry and DLQ topics in their own families, as the
//! exporter routes them), plus the per-queue lag `tributary_rocketmq_group_lag`. Topic offsets
//! (`rocketmq_producer_offset`, `_topic_retry_offset`, `_topic_dlq_offset`) are read from the
//! engine by the shell when `/metrics` is scraped.
//!
//! Handlers count sends and pulls and record commits here; [`upkeep`] turns them into gauges
//! every [`UPKEEP_INTERVAL`], so lag follows new sends even when nobody commits. TPS is the
//! message count over the last interval. Only groups that committed since start-up are known;
//! a pull's group is a label value only once the group exists (committed, or has members), so
//! a client cannot create series by naming groups.
//! `msgModel` is the MessageModel ordinal the members registered: 0 broadcasting, 1 clustering.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tributary_api::TopicPartition;

use crate::handlers::{DLQ_PREFIX, RETRY_PREFIX};
use crate::{Shared, metrics};

/// How often the exporter gauges are recomputed.
pub(crate) const UPKEEP_INTERVAL: Duration = Duration::from_secs(5);

/// Counts since the last upkeep, and the committed offsets of every known group.
#[derive(Debug, Default)]
pub(crate) struct Stats {
    sent: Mutex<HashMap<String, u64>>,
    pulled: Mutex<HashMap<(String, String), u64>>,
    /// (group, topic) -> queue -> committed offset.
    committed: Mutex<BTreeMap<(String, String), BTreeMap<u32, i64>>>,
}

impl Stats {
    pub(crate) fn sent(&self, topic: &str, messages: u64) {
        *self.sent.lock().entry(topic.to_owned()).or_default() += messages;
    }

    pub(crate) fn pulled(&self, topic: &str, group: &str, messages: u64) {
        *self
            .pulled
            .lock()
            .entry((topic.to_owned(), group.to_owned()))
            .or_default() += messages;
    }

    pub(crate) fn committed(&self, group: &str, partition: &TopicPartition, offset: i64) {
        self.committed
            .lock()
            .entry((group.to_owned(), partition.topic.clone()))
            .or_default()
            .insert(partition.partition, offset);
    }
}

/// Recomputes the exporter gauges every interval until `shutdown`.
pub(crate) async fn upkeep(shared: Arc<Shared>, shutdown: CancellationToken) {
    let mut last = Instant::now();
    loop {
        tokio::select! {
            () = tokio::time::sleep(UPKEEP_INTERVAL) => {}
            () = shutdown.cancelled() => return,
        }
        let elapsed = last.elapsed().as_secs_f64().max(0.001);
        last = Instant::now();
        publish(&shared, elapsed);
    }
}

fn publish(shared: &Shared, elapsed_secs: f64) {
    let cluster = shared.settings.cluster_name.clone();
    let broker = shared.settings.broker_name.clone();
    let sent = std::mem::take(&mut *shared.stats.sent.lock());
    let pulled = std::mem::take(&mut *shared.stats.pulled.lock());
    // Broker-wide rates: every message stored and pulled, whatever its topic or group.
    let (sent_total, pulled_total) = (sent.values().sum::<u64>(), pulled.values().sum::<u64>());
    ::metrics::gauge!(metrics::BROKER_TPS, "cluster" => cluster.clone(), "broker" => broker.clone())
        .set(sent_total as f64 / elapsed_secs);
    ::metrics::gauge!(metrics::BROKER_QPS, "cluster" => cluster.clone(), "broker" => broker.clone())
        .set(pulled_total as f64 / elapsed_secs);
    for (topic, count) in sent {
        ::metrics::gauge!(metrics::PRODUCER_TPS, "cluster" => cluster.clone(), "broker" => broker.clone(), "topic" => topic.clone())
            .set(count as f64 / elapsed_secs);
    }
    let committed_groups: HashSet<String> = (shared.stats.committed.lock().keys())
        .map(|(group, _)| group.clone())
        .collect();
    for ((topic, group), count) in pulled {
        // A pull names any group it likes; only a group that exists (it committed offsets or
        // has registered members) becomes a label value.
        if !committed_groups.contains(&group) && shared.clients.members(&group).is_empty() {
            continue;
        }
        ::metrics::gauge!(metrics::CONSUMER_TPS, "cluster" => cluster.clone(), "broker" => broker.clone(), "topic" => topic, "group" => group)
            .set(count as f64 / elapsed_secs);
    }
    let committed = shared.stats.committed.lock().clone();
    for ((group, topic), queues) in committed {
        let Ok(description) = shared.engine.topics.describe_topic(&topic) else {
            continue;
        };
        let (mut consumed, mut diff) = (0i64, 0i64);
        for queue in 0..description.partitions {
            let Ok(bounds) = shared
                .engine
                .log
                .offsets(&TopicPartition::new(topic.as_str(), queue))
            else {
                continue;
            };
            let Some(&offset) = queues.get(&queue) else {
                continue;
            };
            consumed += offset;
            let lag = (bounds.high_watermark - offset).max(0);
            diff += lag;
            ::metrics::gauge!(metrics::GROUP_LAG, "group" => group.clone(), "topic" => topic.clone(), "queue" => queue.to_string())
                .set(lag as f64);
        }
        ::metrics::gauge!(metrics::CONSUMER_OFFSET, "cluster" => cluster.clone(), "broker" => broker.clone(), "topic" => topic.clone(), "group" => group.clone())
            .set(consumed as f64);
        let family = if topic.starts_with(RETRY_PREFIX) {
            metrics::GROUP_RETRY_DIFF
        } else if topic.starts_with(DLQ_PREFIX) {
            metrics::GROUP_DLQ_DIFF
        } else {
            metrics::GROUP_DIFF
        };
        let online = shared.clients.members(&group).len();
        let model = shared.clients.message_model(&group);
        ::metrics::gauge!(family, "group" => group, "topic" => topic, "countOfOnlineConsumers" => online.to_string(), "msgModel" => model.to_string())
            .set(diff as f64);
    }
}
