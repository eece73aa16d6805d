//! The engine behind the contract: implements the `tributary-api` traits over [`crate::storage`]
//! and the redb metadata store, and owns their lifecycle.
//!
//! Layout of the data directory:
//! - `logs/`: partition segments (see [`crate::storage`]); queue logs are storage topics named
//!   `queue:<name>`.
//! - `queues/`: one ack journal per queue.
//! - `metadata.redb`: topics, queues, frontend records, users, consumer offsets, scheduled
//!   appends.
//!
//! [`memory_log`] is a storage-free `LogService` for benchmark ceilings only; `Broker` never
//! builds it.
//!
//! Invariants: `open` finishes recovery before anything is served; `close` runs after every
//! frontend connection has ended and makes all acknowledged state durable.

pub mod memory_log;
pub mod metadata;
pub mod offsets;
pub mod queues;
pub mod records;
pub mod scheduler;
pub mod settings;
pub mod topics;

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tributary_api::{
    CommittedOffset, Engine, EngineError, EngineResult, MetadataStore, QueueService, TopicPartition,
};

use crate::cloud::{CloudEngine, SplitRecords};
use crate::storage::fs::{RealFs, create_dir_durable};
use crate::storage::{CleanerLimits, Storage, StorageError, StorageOptions};
use metadata::MetaStore;
use offsets::OffsetsService;
use queues::Queues;
use records::RecordsService;
use scheduler::SchedulerService;
use topics::{Topics, log_config};

pub use settings::{BrokerSettings, LogDefaults, PartitionLimits};

/// A consumer group and its committed positions.
pub type GroupPositions = (String, Vec<(TopicPartition, CommittedOffset)>);

/// The running engine: storage, metadata and the services built on them.
#[derive(Debug)]
pub struct Broker {
    settings: BrokerSettings,
    meta: Arc<MetaStore>,
    storage: Arc<Storage>,
    topics: Arc<Topics>,
    queues: Arc<Queues>,
    offsets: Arc<OffsetsService>,
    /// The frontends' metadata store: the local records, or on the cloud engine the shared
    /// PostgreSQL records with the per-broker namespaces kept local (`cloud::records`).
    records: Arc<dyn MetadataStore>,
    scheduler: Arc<SchedulerService>,
    /// Set on the cloud engine: it serves the log, topics and consumer offsets.
    cloud: Option<Arc<CloudEngine>>,
    /// One for every frontend, so all readers agree on what transactions left readable.
    transactions: Arc<tributary_api::transactions::TransactionReads>,
}

impl Broker {
    /// Opens the metadata store, recovers every log and loads queue state. Blocking.
    pub fn open(settings: BrokerSettings) -> EngineResult<Arc<Self>> {
        Self::open_with_cloud(settings, None)
    }

    /// [`Broker::open`], with the log, topics, consumer offsets, queues, the cluster-wide
    /// metadata namespaces and the scheduler's delayed appends served by `cloud` when given (the
    /// per-broker metadata namespaces stay local; the local queue service is opened but not
    /// handed out). Blocking.
    pub fn open_with_cloud(
        settings: BrokerSettings,
        cloud: Option<Arc<CloudEngine>>,
    ) -> EngineResult<Arc<Self>> {
        let data_dir = &settings.data_dir;
        create_dir_durable(&RealFs, data_dir).map_err(|source| EngineError::Io {
            context: "creating the data directory",
            source,
        })?;
        let meta = MetaStore::open(&data_dir.join("metadata.redb"))?;
        let mut storage_options = StorageOptions::default();
        if settings.max_open_files > 0 {
            storage_options.max_open_files = settings.max_open_files;
        }
        let storage = Arc::new(Storage::open_with(&data_dir.join("logs"), storage_options)?);
        let mut queue_defaults = log_config(&settings.log_defaults, &Default::default());
        // Queue logs take whole AMQP messages, which may be larger than a topic's batch cap.
        queue_defaults.max_batch_bytes = queue_defaults
            .max_batch_bytes
            .max(settings.log_defaults.queue_max_message_bytes);
        let queues = Queues::open(
            storage.clone(),
            meta.clone(),
            data_dir.join("queues"),
            queue_defaults,
        )?;
        let topics = Arc::new(Topics::open(
            storage.clone(),
            meta.clone(),
            settings.log_defaults.clone(),
            settings.partition_limits,
        )?);
        Ok(Arc::new(Self {
            offsets: Arc::new(OffsetsService::new(meta.clone())),
            records: match &cloud {
                Some(cloud) => Arc::new(SplitRecords {
                    shared: cloud.records(),
                    local: Arc::new(RecordsService::new(meta.clone())),
                }),
                None => Arc::new(RecordsService::new(meta.clone())),
            },
            scheduler: match &cloud {
                Some(cloud) => {
                    let schedule = cloud.schedule();
                    SchedulerService::with_store(schedule.clone(), schedule.wake())
                }
                None => SchedulerService::new(meta.clone()),
            },
            meta,
            settings,
            storage,
            topics,
            queues,
            cloud,
            transactions: Arc::default(),
        }))
    }

    /// The services handed to frontends.
    pub fn engine(self: &Arc<Self>) -> Engine {
        if let Some(cloud) = &self.cloud {
            return Engine {
                log: cloud.log(),
                topics: cloud.log(),
                offsets: cloud.offsets(),
                queues: cloud.queues(),
                metadata: self.records.clone(),
                scheduler: self.scheduler.clone(),
                transactions: self.transactions.clone(),
            };
        }
        Engine {
            log: self.topics.clone(),
            topics: self.topics.clone(),
            offsets: self.offsets.clone(),
            queues: self.queues.clone(),
            metadata: self.records.clone(),
            scheduler: self.scheduler.clone(),
            transactions: self.transactions.clone(),
        }
    }

    /// [`Broker::engine`] for the AMQP and RocketMQ frontends: on the cloud engine their
    /// appends to partitions other brokers lead are forwarded there (`cloud::forward`); the
    /// Kafka frontend keeps [`Broker::engine`], whose log refuses them (clients route).
    pub fn engine_forwarding(self: &Arc<Self>) -> Engine {
        let mut engine = self.engine();
        if let Some(cloud) = &self.cloud {
            engine.log = cloud.forwarding_log();
        }
        engine
    }

    /// Every group's committed positions, in (group, topic, partition) order: what a
    /// `/metrics` scrape reports as lag. Blocking (one read transaction per group).
    pub fn committed_offsets(&self) -> EngineResult<Vec<GroupPositions>> {
        let mut out = Vec::new();
        for group in self.meta.offset_groups()? {
            let positions = self.meta.group_offsets(&group)?;
            out.push((group, positions));
        }
        Ok(out)
    }

    /// The id this data directory got when it was created (stable across restarts).
    pub fn cluster_id(&self) -> [u8; 16] {
        self.meta.cluster_id()
    }

    /// Bytes on disk of one partition's log, if the topic and partition exist.
    pub fn partition_size_bytes(&self, topic: &str, partition: u32) -> Option<u64> {
        let partition = self.storage.partition(topic, partition).ok()?;
        Some(partition.size_bytes())
    }

    /// Starts retention and the delayed-delivery scheduler; both stop when `shutdown` fires.
    pub fn spawn_background(self: &Arc<Self>, tracker: &TaskTracker, shutdown: CancellationToken) {
        // On the cloud engine due messages go to partitions and queues wherever they are run.
        let (log, queues): (Arc<dyn tributary_api::LogService>, Arc<dyn QueueService>) =
            match &self.cloud {
                Some(cloud) => (cloud.forwarding_log(), cloud.queues()),
                None => (self.topics.clone(), self.queues.clone()),
            };
        self.scheduler.spawn(tracker, shutdown.clone(), log, queues);
        let storage = self.storage.clone();
        let every = self.settings.retention_check_interval;
        tracker.spawn(retention_loop(storage.clone(), every, shutdown.clone()));
        if self.cloud.is_none() {
            let limits = CleanerLimits {
                bytes_per_second: self.settings.cleaner_bytes_per_second,
                ..CleanerLimits::default()
            };
            tracker.spawn(cleaner_loop(
                storage,
                self.settings.cleaner_interval,
                limits,
                shutdown,
            ));
        }
    }

    /// The cloud engine, when the broker runs on one.
    pub fn cloud(&self) -> Option<&Arc<CloudEngine>> {
        self.cloud.as_ref()
    }

    /// Makes everything durable and stops storage. Blocking; call after frontends stopped
    /// (and after [`CloudEngine::close`] on the cloud engine).
    pub fn close(&self) -> EngineResult<()> {
        self.queues.flush()?;
        self.storage.close()?;
        Ok(())
    }
}

/// Runs the blocking storage pass `pass` on the blocking pool once per `every` until
/// `shutdown`, handing each result to `report` and logging a failure as `what`.
async fn periodic_pass<R: Send + 'static>(
    what: &'static str,
    every: Duration,
    shutdown: CancellationToken,
    pass: impl Fn() -> Result<R, StorageError> + Clone + Send + 'static,
    report: impl Fn(R),
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        match tokio::task::spawn_blocking(pass.clone()).await {
            Ok(Ok(result)) => report(result),
            Ok(Err(err)) => tracing::error!(error = %err, "{what} pass failed"),
            Err(err) => tracing::error!(error = %err, "{what} task panicked"),
        }
    }
}

/// The log cleaner: one pass over the compacted partitions per tick, one partition at a time
/// on the blocking pool (see `storage::cleaner`).
async fn cleaner_loop(
    storage: Arc<Storage>,
    every: Duration,
    limits: CleanerLimits,
    shutdown: CancellationToken,
) {
    let pass = move || storage.clean_all(topics::now_ms(), limits);
    periodic_pass("cleaner", every, shutdown, pass, |report| {
        if report.passes > 0 {
            tracing::info!(
                partitions = report.passes,
                segments = report.segments_rewritten,
                read_bytes = report.bytes_read,
                freed_bytes = report.bytes_removed,
                records_removed = report.records_removed,
                "cleaner pass"
            );
        }
    })
    .await;
}

async fn retention_loop(storage: Arc<Storage>, every: Duration, shutdown: CancellationToken) {
    let pass = move || storage.enforce_retention(topics::now_ms());
    periodic_pass("retention", every, shutdown, pass, |report| {
        if report.segments_deleted + report.segments_rolled > 0 {
            tracing::info!(
                deleted = report.segments_deleted,
                bytes = report.bytes_deleted,
                rolled = report.segments_rolled,
                "retention pass"
            );
        }
    })
    .await;
}
