//! Families computed from broker state when `/metrics` is scraped: topic and group offsets and
//! lag (kafka_exporter's names), queue depths and the node's identity and resources (RabbitMQ's
//! names), RocketMQ topic offsets (rocketmq-exporter's names), and the process figures.
//!
//! Invariants: nothing here is kept per event; every value is read from the engine, the
//! metadata store or `/proc` at scrape time, so a deleted topic, queue or group leaves the next
//! scrape. Label values are broker-side names only (topics, queues, vhosts, groups that
//! committed offsets) and the configured cluster names. The recorder never holds a series of
//! these families (a unit test renders both and checks the page has no duplicate family).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use tributary_api::{Engine, TopicPartition};
use tributary_rocketmq::{DLQ_PREFIX, RETRY_PREFIX};

use super::compat::{self as c, CATALOG};
use super::exposition::{Sample, write_family};
use super::process::{self, ProcessStats};
use super::{MetricDescription, names};
use crate::broker::Broker;
use crate::config::Config;

/// Appends scrape-time families to a `/metrics` page.
#[derive(Clone)]
pub struct ScrapeHook(Arc<dyn Fn(&mut String) + Send + Sync>);

impl ScrapeHook {
    pub fn new(append: impl Fn(&mut String) + Send + Sync + 'static) -> Self {
        Self(Arc::new(append))
    }

    /// Appends the families to `page`.
    pub fn append(&self, page: &mut String) {
        (self.0)(page);
    }
}

impl std::fmt::Debug for ScrapeHook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScrapeHook")
    }
}

/// Who this node is, as RabbitMQ's `rabbitmq_identity_info` and rocketmq-exporter label it.
#[derive(Debug, Clone)]
pub struct Identity {
    pub node: String,
    pub cluster: String,
    pub cluster_permanent_id: String,
    pub rocketmq_cluster: String,
    pub rocketmq_broker: String,
}

/// What a scrape reads besides the engine.
#[derive(Debug)]
pub struct ScrapeState {
    broker: Arc<Broker>,
    engine: Engine,
    identity: Identity,
    data_dir: PathBuf,
    /// `amqp.memory_high_watermark`; 0 = off.
    memory_limit: u64,
    /// `amqp.disk_free_limit`; 0 = off.
    disk_limit: u64,
}

impl ScrapeState {
    pub fn new(broker: &Arc<Broker>, config: &Config) -> Self {
        let host = process::host_name().unwrap_or_else(|| "localhost".to_owned());
        let node = format!("tributary@{host}");
        let id: String = broker
            .cluster_id()
            .iter()
            .map(|byte| format!("{byte:02x}"))
            .collect();
        let rocketmq = config.rocketmq_settings();
        Self {
            broker: broker.clone(),
            engine: broker.engine(),
            identity: Identity {
                // RabbitMQ names a cluster after its first node unless renamed.
                cluster: node.clone(),
                node,
                cluster_permanent_id: format!("rabbitmq-cluster-id-{id}"),
                rocketmq_cluster: rocketmq.cluster_name,
                rocketmq_broker: rocketmq.broker_name,
            },
            data_dir: config.data_dir.clone(),
            memory_limit: config.amqp.memory_high_watermark,
            disk_limit: config.amqp.disk_free_limit,
        }
    }

    /// The hook the HTTP endpoint runs after rendering the recorder.
    pub fn into_hook(self) -> ScrapeHook {
        ScrapeHook::new(move |out: &mut String| self.render(out))
    }

    /// Appends every scrape-time family to `out`.
    pub fn render(&self, out: &mut String) {
        let mut page = Page::default();
        self.topics(&mut page);
        self.groups(&mut page);
        self.queues(&mut page);
        self.node(&mut page);
        self.cloud(&mut page);
        page.write(out);
    }

    /// The cloud engine's counters and lease (nothing on the local engine).
    fn cloud(&self, page: &mut Page) {
        let Some(cloud) = self.broker.cloud() else {
            return;
        };
        let stats = cloud.stats();
        for (name, value) in [
            (names::CLOUD_OBJECT_PUTS, stats.puts),
            (names::CLOUD_OBJECT_PUT_BYTES, stats.put_bytes),
            (names::CLOUD_OBJECT_GETS, stats.gets),
            (names::CLOUD_OBJECT_GET_BYTES, stats.get_bytes),
            (names::CLOUD_PG_OPERATIONS, stats.pg_operations),
            (names::CLOUD_READ_CACHE_HITS, stats.cache_hits),
            (names::CLOUD_FLUSHES, stats.flushes),
            (names::CLOUD_FAILED_FLUSHES, stats.failed_flushes),
            (names::CLOUD_FLUSH_TRANSACTIONS, stats.flush_transactions),
            (names::CLOUD_BATCHES, stats.batches),
            (names::CLOUD_NOTIFICATIONS, stats.notifications),
            (names::CLOUD_FORWARDED_APPENDS, stats.forwarded_appends),
            (names::CLOUD_RETENTION_TRIMS, stats.retention_trims),
            (names::CLOUD_OBJECTS_DELETED, stats.deleted_objects),
            (
                names::CLOUD_OBJECT_BYTES_DELETED,
                stats.deleted_object_bytes,
            ),
            (names::CLOUD_MAINTENANCE_FAILURES, stats.failed_maintenance),
            (names::CLOUD_OBJECTS_MERGED, stats.merged_objects),
            (names::CLOUD_MERGE_BYTES, stats.merge_rewritten_bytes),
            (names::CLOUD_SCHEDULED_FIRED, stats.scheduled_fired),
            (names::CLOUD_SCHEDULED_PENDING, stats.scheduled_pending),
        ] {
            page.add(name, Sample::plain(value as f64));
        }
        let held = cloud.cluster().members().holds_lease();
        page.add(
            names::CLOUD_LEASE_HELD,
            Sample::plain(if held { 1.0 } else { 0.0 }),
        );
    }

    fn topics(&self, page: &mut Page) {
        let identity = &self.identity;
        page.add(c::KAFKA_BROKERS, Sample::plain(1.0));
        for topic in self.engine.topics.list_topics() {
            if topic.internal {
                continue;
            }
            let name = &topic.name;
            page.add(
                c::KAFKA_TOPIC_PARTITIONS,
                Sample::new(vec![("topic", name.clone())], f64::from(topic.partitions)),
            );
            let mut high_sum = 0i64;
            for partition in 0..topic.partitions {
                let Ok(bounds) = self
                    .engine
                    .log
                    .offsets(&TopicPartition::new(name.as_str(), partition))
                else {
                    continue;
                };
                high_sum += bounds.high_watermark;
                let labels = vec![
                    ("topic", name.clone()),
                    ("partition", partition.to_string()),
                ];
                page.add(
                    c::KAFKA_PARTITION_CURRENT_OFFSET,
                    Sample::new(labels.clone(), bounds.high_watermark as f64),
                );
                page.add(
                    c::KAFKA_PARTITION_OLDEST_OFFSET,
                    Sample::new(labels, bounds.log_start as f64),
                );
            }
            let place = vec![
                ("cluster", identity.rocketmq_cluster.clone()),
                ("broker", identity.rocketmq_broker.clone()),
            ];
            let (family, label) = if let Some(group) = name.strip_prefix(DLQ_PREFIX) {
                (c::ROCKETMQ_TOPIC_DLQ_OFFSET, ("group", group.to_owned()))
            } else if name.starts_with(RETRY_PREFIX) {
                (c::ROCKETMQ_TOPIC_RETRY_OFFSET, ("topic", name.clone()))
            } else {
                (c::ROCKETMQ_PRODUCER_OFFSET, ("topic", name.clone()))
            };
            let mut labels = place;
            labels.push(label);
            page.add(family, Sample::new(labels, high_sum as f64));
        }
    }

    fn groups(&self, page: &mut Page) {
        let Ok(groups) = self.broker.committed_offsets() else {
            // The metadata store failed; its own error paths log it. The families are left
            // out rather than reported as zero.
            return;
        };
        for (group, positions) in groups {
            for (partition, committed) in &positions {
                let Ok(bounds) = self.engine.log.offsets(partition) else {
                    continue; // the topic was deleted; its stale positions are not reported
                };
                let lag = (bounds.high_watermark - committed.offset).max(0);
                let labels = vec![
                    ("consumergroup", group.clone()),
                    ("topic", partition.topic.clone()),
                    ("partition", partition.partition.to_string()),
                ];
                page.add(
                    c::KAFKA_GROUP_CURRENT_OFFSET,
                    Sample::new(labels.clone(), committed.offset as f64),
                );
                page.add(c::KAFKA_GROUP_LAG, Sample::new(labels, lag as f64));
            }
        }
    }

    fn queues(&self, page: &mut Page) {
        let mut depths = self.engine.queues.local_depths();
        depths.sort_by(|a, b| a.0.cmp(&b.0));
        let mut count = 0u64;
        for (engine_name, depth) in depths {
            count += 1;
            let (vhost, queue) = tributary_amqp::vhost::split_engine_queue_name(&engine_name);
            let labels = vec![("vhost", vhost), ("queue", queue.to_owned())];
            let (ready, unacked) = (depth.ready as f64, depth.unacked as f64);
            page.add(
                c::RABBITMQ_QUEUE_MESSAGES_READY,
                Sample::new(labels.clone(), ready),
            );
            page.add(
                c::RABBITMQ_QUEUE_MESSAGES_UNACKED,
                Sample::new(labels.clone(), unacked),
            );
            page.add(
                c::RABBITMQ_QUEUE_MESSAGES,
                Sample::new(labels, ready + unacked),
            );
            let engine_label = vec![("queue", engine_name)];
            page.add(
                names::QUEUE_MESSAGES_READY,
                Sample::new(engine_label.clone(), ready),
            );
            page.add(
                names::QUEUE_MESSAGES_UNACKED,
                Sample::new(engine_label, unacked),
            );
        }
        page.add(c::RABBITMQ_QUEUES, Sample::plain(count as f64));
    }

    fn node(&self, page: &mut Page) {
        let identity = &self.identity;
        page.add(
            c::RABBITMQ_IDENTITY_INFO,
            Sample::new(
                vec![
                    ("rabbitmq_node", identity.node.clone()),
                    ("rabbitmq_cluster", identity.cluster.clone()),
                    (
                        "rabbitmq_cluster_permanent_id",
                        identity.cluster_permanent_id.clone(),
                    ),
                    ("rabbitmq_endpoint", "metrics".to_owned()),
                ],
                1.0,
            ),
        );
        let version = env!("CARGO_PKG_VERSION").to_owned();
        page.add(
            c::RABBITMQ_BUILD_INFO,
            Sample::new(
                vec![
                    ("rabbitmq_version", version.clone()),
                    ("prometheus_plugin_version", version),
                    (
                        "prometheus_client_version",
                        "metrics-exporter-prometheus".to_owned(),
                    ),
                ],
                1.0,
            ),
        );
        let stats = ProcessStats::read();
        let mut add = |name: &'static str, value: Option<f64>| {
            if let Some(value) = value {
                page.add(name, Sample::plain(value));
            }
        };
        let as_f64 = |value: Option<u64>| value.map(|value| value as f64);
        add(c::PROCESS_CPU_SECONDS, stats.cpu_seconds);
        add(c::PROCESS_OPEN_FDS, as_f64(stats.open_fds));
        add(c::PROCESS_MAX_FDS, as_f64(stats.max_fds));
        add(c::PROCESS_RESIDENT_MEMORY, as_f64(stats.resident_bytes));
        add(c::PROCESS_VIRTUAL_MEMORY, as_f64(stats.virtual_bytes));
        add(c::PROCESS_START_TIME, stats.start_time_seconds);
        add(c::PROCESS_THREADS, as_f64(stats.threads));
        add(c::RABBITMQ_PROCESS_OPEN_FDS, as_f64(stats.open_fds));
        add(c::RABBITMQ_PROCESS_MAX_FDS, as_f64(stats.max_fds));
        add(
            c::RABBITMQ_PROCESS_RESIDENT_MEMORY,
            as_f64(stats.resident_bytes),
        );
        let memory_limit = match self.memory_limit {
            0 => process::total_memory_bytes(),
            limit => Some(limit),
        };
        add(c::RABBITMQ_MEMORY_LIMIT, as_f64(memory_limit));
        add(
            c::RABBITMQ_DISK_AVAILABLE,
            as_f64(process::free_disk_bytes(&self.data_dir)),
        );
        add(c::RABBITMQ_DISK_LIMIT, Some(self.disk_limit as f64));
    }
}

/// Samples gathered per family, written in catalog order.
#[derive(Debug, Default)]
struct Page {
    families: BTreeMap<&'static str, Vec<Sample>>,
}

impl Page {
    fn add(&mut self, name: &'static str, sample: Sample) {
        self.families.entry(name).or_default().push(sample);
    }

    fn write(self, out: &mut String) {
        for (name, samples) in &self.families {
            // Every name added comes from a catalog (a unit test renders each family).
            if let Some(description) = description(name) {
                write_family(out, &description, samples);
            }
        }
    }
}

fn description(name: &str) -> Option<MetricDescription> {
    CATALOG
        .iter()
        .chain(super::CATALOG)
        .find(|metric| metric.name == name)
        .copied()
}

#[cfg(test)]
#[path = "scrape_tests.rs"]
mod tests;
