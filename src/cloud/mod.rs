//! The cloud engine: the log, topics and consumer offsets over PostgreSQL (metadata, offset
//! sequencing, coordinates, producer state, membership) and S3-compatible object storage (log
//! bytes), behind the same `tributary-api` traits as the local engine (ARCHITECTURE §8, issue 15).
//!
//! Data model: each flush writes ONE object holding the batches accepted since the last flush,
//! from every partition, and ONE PostgreSQL transaction that records the object, advances each
//! partition's high watermark, adds one coordinate row per batch (never per record): object
//! key, byte range, base/last offset, max timestamp, record count, and records the producer
//! state of its idempotent batches ([`producers`]).
//!
//! Several brokers share one database and bucket ([`members`], [`leadership`]): each holds a
//! lease in `brokers`, partitions and group coordinators are spread over the live brokers by
//! rendezvous hashing, and a broker writes only the partitions it leads, starting each from
//! PostgreSQL's high watermark when it takes it over. Any broker serves reads: the others learn
//! each commit's offsets through LISTEN/NOTIFY ([`wake`]), so their long polls wake at once.
//!
//! Invariants:
//! - nothing is acknowledged before the PUT and the commit that cover it succeeded; a failure
//!   refuses every batch of the flush with a retriable error (see [`flush`]);
//! - stored batches are the producers' bytes with the base offset rewritten (CRC untouched),
//!   exactly what the local engine stores, so reads are byte-identical;
//! - the schema is migrated by the broker at start and a newer schema is refused ([`schema`]);
//! - appends are accepted only for partitions this broker leads and has taken over; the
//!   conditional high watermark update still fences a second writer (views may disagree for a
//!   moment) rather than corrupting offsets, and the fenced broker takes the partition over
//!   again from PostgreSQL before writing it.
//!
//! Retention, DeleteRecords and a deleted topic leave objects no batch refers to; the
//! [`maintenance`] job deletes them after a grace period. It also merges small old objects
//! into larger ones ([`merge`]), which leaves the old ones to the same GC.
//!
//! The frontends' metadata store is split ([`records`]): users, permissions, vhosts, Kafka
//! ACLs, AMQP exchanges, queues and bindings, and RocketMQ topic ids and transactions in
//! PostgreSQL, shared by every broker, with changes announced through LISTEN/NOTIFY; only Kafka
//! producer snapshots (unused here) stay in the local store.
//!
//! Queues run across brokers ([`queues`]): each is run by the leader of its log partition,
//! its settles in PostgreSQL, and the other brokers forward their calls over the internal RPC
//! ([`rpc`]), which also carries the AMQP and RocketMQ appends to partitions another broker
//! leads ([`forward`]). The scheduler's delayed appends are in PostgreSQL ([`schedule`]), fired
//! by the broker leading each target.
//!
//! The membership also advertises each broker's RocketMQ port; the RocketMQ frontend's routes
//! spread write queues by partition leadership (`tributary_rocketmq::routes`), and RocketMQ
//! consumer-group members are shared through PostgreSQL ([`roster`]).

pub mod admin;
pub mod error;
pub mod flush;
pub mod forward;
pub mod leadership;
pub mod log;
pub mod maintenance;
pub mod members;
pub mod merge;
pub mod objects;
pub mod offsets;
pub mod pool;
pub mod producers;
pub mod queues;
pub mod read;
pub mod records;
pub mod roster;
pub mod rpc;
pub mod schedule;
pub mod schema;
pub mod state;
pub mod stats;
pub mod wake;

use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

pub use error::{CloudError, CloudResult};
pub use forward::ForwardingLog;
pub use leadership::Cluster;
pub use log::{CloudLog, LogSettings};
pub use members::{MemberSettings, Membership};
pub use objects::{Objects, ObjectsUrl};
pub use offsets::CloudOffsets;
pub use queues::CloudQueues;
pub use records::{Generations, PgRecords, SplitRecords};
pub use roster::CloudRoster;
pub use schedule::CloudSchedule;
pub use stats::{Stats, StatsSnapshot};

use crate::broker::{LogDefaults, PartitionLimits};
use pool::PgPool;

/// PostgreSQL connections per broker.
const POOL_SIZE: usize = 16;

/// Everything the cloud engine is configured with.
#[derive(Debug, Clone)]
pub struct CloudSettings {
    pub metadata_url: String,
    pub objects: ObjectsUrl,
    pub broker_id: u32,
    /// Host clients of other brokers are sent to (Kafka Metadata, FindCoordinator), and
    /// other brokers call this one's internal RPC at.
    pub advertised_host: String,
    /// Where the internal RPC listens (`cluster.internal_port` on the listeners' bind
    /// address; port 0: one the OS picks).
    pub internal_addr: std::net::SocketAddr,
    /// How long a membership lease lasts without renewal, and how often it is renewed.
    pub lease: Duration,
    pub lease_renew: Duration,
    pub flush_interval: Duration,
    pub flush_bytes: usize,
    pub read_cache_bytes: usize,
    /// How often retention runs on the partitions this broker leads, and object GC on the
    /// broker that holds the maintenance role.
    pub maintenance_interval: Duration,
    /// How long an object no batch refers to is kept before it is deleted.
    pub object_gc_grace: Duration,
    /// Objects smaller than this, and older than `merge_min_age`, are merged by the broker
    /// holding the maintenance role; 0 turns merging off.
    pub merge_object_bytes: u64,
    pub merge_min_age: Duration,
    pub log_defaults: LogDefaults,
    pub partition_limits: PartitionLimits,
}

/// The running cloud engine: its services and the flusher task.
#[derive(Debug)]
pub struct CloudEngine {
    log: Arc<CloudLog>,
    offsets: Arc<CloudOffsets>,
    records: Arc<PgRecords>,
    cluster: Arc<Cluster>,
    queues: Arc<CloudQueues>,
    forwarding: Arc<ForwardingLog>,
    schedule: Arc<CloudSchedule>,
    stop: CancellationToken,
    flusher: Mutex<Option<tokio::task::JoinHandle<()>>>,
    membership: Mutex<Option<tokio::task::JoinHandle<()>>>,
    listener: Mutex<Option<tokio::task::JoinHandle<()>>>,
    maintenance: Mutex<Option<tokio::task::JoinHandle<()>>>,
    rpc: Mutex<Option<tokio::task::JoinHandle<()>>>,
    roster: Arc<CloudRoster>,
    roster_writer: Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl CloudEngine {
    /// Connects, migrates the schema, loads topics and starts the flusher. The object store is
    /// S3 configured from `AWS_*` variables.
    pub async fn open(settings: CloudSettings) -> CloudResult<Arc<Self>> {
        let stats = Arc::new(Stats::default());
        let objects = Objects::s3(
            &settings.objects,
            settings.broker_id,
            settings.read_cache_bytes,
            stats.clone(),
        )?;
        Self::open_with(settings, objects, stats).await
    }

    /// [`CloudEngine::open`] over a given object store (tests).
    pub async fn open_with(
        settings: CloudSettings,
        objects: Objects,
        stats: Arc<Stats>,
    ) -> CloudResult<Arc<Self>> {
        let pool = PgPool::new(&settings.metadata_url, POOL_SIZE, stats.clone())?;
        let version = {
            let mut client = pool.get().await?;
            schema::migrate(&mut client).await?
        };
        let (table, partitions) = admin::load(&pool).await?;
        tracing::info!(
            schema_version = version,
            topics = table.len(),
            partitions = partitions.len(),
            broker_id = settings.broker_id,
            "cloud engine opened"
        );
        let roster = Arc::new(CloudRoster::new(pool.clone(), settings.broker_id));
        roster.reset().await?;
        let generations = Arc::new(Generations::default());
        let records = Arc::new(PgRecords::new(pool.clone(), generations.clone()));
        let members = Arc::new(Membership::new(
            MemberSettings {
                broker_id: settings.broker_id,
                host: settings.advertised_host.clone(),
                lease: settings.lease,
                renew: settings.lease_renew,
            },
            pool.clone(),
            stats.clone(),
        ));
        let log = Arc::new(CloudLog {
            pool: pool.clone(),
            objects,
            settings: LogSettings {
                broker_id: settings.broker_id,
                object_gc_grace: settings.object_gc_grace,
                flush_interval: settings.flush_interval,
                flush_bytes: settings.flush_bytes,
                merge_object_bytes: settings.merge_object_bytes,
                merge_min_age: settings.merge_min_age,
                defaults: settings.log_defaults,
                limits: settings.partition_limits,
            },
            stats,
            table: RwLock::new(table),
            partitions: RwLock::new(partitions),
            pending: Mutex::default(),
            flushing: tokio::sync::Mutex::new(()),
            admin: tokio::sync::Mutex::new(()),
            wake: Notify::new(),
            members: members.clone(),
            metadata_generations: generations.clone(),
            swept: Mutex::default(),
            schedule_wake: Arc::new(Notify::new()),
            roster: roster.clone(),
        });
        // The internal RPC port is bound first, so the first renewal advertises it.
        let internal = tokio::net::TcpListener::bind(settings.internal_addr)
            .await
            .map_err(|error| {
                CloudError::Rpc(format!(
                    "cannot listen on {} (cluster.internal_port): {error}",
                    settings.internal_addr
                ))
            })?;
        let internal_port = internal
            .local_addr()
            .map_err(|error| CloudError::Rpc(error.to_string()))?
            .port();
        members.set_internal_port(internal_port);
        let secret = bytes::Bytes::from(rpc::cluster_secret(&pool).await?);
        let peers = Arc::new(rpc::Peers::new(members.clone(), secret.clone()));
        // The first round before serving: the lease is held and led partitions taken over.
        members.renew().await?;
        log.learn_topics().await?;
        log.follow_leadership(&members).await?;
        let stop = CancellationToken::new();
        let flusher = tokio::spawn(log.clone().run_flusher(stop.clone()));
        let membership = tokio::spawn(
            log.clone()
                .run_membership(members.clone(), stop.child_token()),
        );
        let listener = tokio::spawn(log.clone().run_listener(stop.child_token()));
        let roster_writer = tokio::spawn(roster.clone().run(stop.child_token()));
        let maintenance = tokio::spawn(log.clone().run_maintenance(
            settings.maintenance_interval,
            settings.object_gc_grace,
            stop.child_token(),
        ));
        let cluster = Arc::new(Cluster {
            members,
            log: log.clone(),
        });
        let queues = CloudQueues::new(pool.clone(), log.clone(), cluster.clone(), peers.clone());
        let rpc = tokio::spawn(rpc::server::serve(
            internal,
            secret,
            queues.clone(),
            stop.child_token(),
        ));
        tracing::info!(internal_port, "internal RPC listening");
        Ok(Arc::new(Self {
            schedule: Arc::new(CloudSchedule {
                pool: pool.clone(),
                cluster: cluster.clone(),
                stats: log.stats.clone(),
                wake: log.schedule_wake.clone(),
            }),
            queues,
            forwarding: Arc::new(ForwardingLog {
                log: log.clone(),
                peers,
            }),
            cluster,
            log,
            offsets: Arc::new(CloudOffsets::new(pool)),
            records,
            stop,
            flusher: Mutex::new(Some(flusher)),
            membership: Mutex::new(Some(membership)),
            listener: Mutex::new(Some(listener)),
            maintenance: Mutex::new(Some(maintenance)),
            rpc: Mutex::new(Some(rpc)),
            roster,
            roster_writer: Mutex::new(Some(roster_writer)),
        }))
    }

    /// Membership and leadership as frontends see them.
    pub fn cluster(&self) -> Arc<Cluster> {
        self.cluster.clone()
    }

    /// The scheduler's delayed appends, in PostgreSQL.
    pub fn schedule(&self) -> Arc<CloudSchedule> {
        self.schedule.clone()
    }

    pub fn log(&self) -> Arc<CloudLog> {
        self.log.clone()
    }

    /// The log for the AMQP and RocketMQ frontends: appends to partitions other brokers lead
    /// are forwarded to them ([`forward`]).
    pub fn forwarding_log(&self) -> Arc<ForwardingLog> {
        self.forwarding.clone()
    }

    /// Queues across brokers ([`queues`]).
    pub fn queues(&self) -> Arc<CloudQueues> {
        self.queues.clone()
    }

    pub fn offsets(&self) -> Arc<CloudOffsets> {
        self.offsets.clone()
    }

    /// The cluster-wide metadata records (see [`records`] for which namespaces they hold).
    pub fn records(&self) -> Arc<PgRecords> {
        self.records.clone()
    }

    /// RocketMQ consumer-group members across brokers ([`roster`]).
    pub fn roster(&self) -> Arc<CloudRoster> {
        self.roster.clone()
    }

    pub fn stats(&self) -> StatsSnapshot {
        self.log.stats().snapshot()
    }

    /// Flushes what is buffered, stops the flusher and gives the lease up; appends after this
    /// are not flushed.
    pub async fn close(&self) {
        self.stop.cancel();
        let membership = self.membership.lock().take();
        if let Some(membership) = membership
            && let Err(error) = membership.await
        {
            tracing::error!(%error, "the membership task panicked");
        }
        for (task, name) in [
            (&self.listener, "LISTEN"),
            (&self.maintenance, "maintenance"),
            (&self.rpc, "internal RPC"),
            (&self.roster_writer, "RocketMQ consumer roster"),
        ] {
            let handle = task.lock().take();
            if let Some(handle) = handle
                && let Err(error) = handle.await
            {
                tracing::error!(%error, task = name, "a cloud engine task panicked");
            }
        }
        let flusher = self.flusher.lock().take();
        if let Some(flusher) = flusher
            && let Err(error) = flusher.await
        {
            tracing::error!(%error, "the cloud flusher panicked");
        }
    }
}
