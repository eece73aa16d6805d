//! The contract between Tributary's protocol frontends and its engine.
//!
//! It holds the record-batch format (RecordBatch v2, the on-disk unit) and its
//! [`compression`] codecs, names and offsets, the
//! one engine error type, and narrow async traits: [`LogService`] and [`TopicAdmin`] for
//! partitioned logs, [`OffsetStore`] for consumer positions, [`QueueService`] for acked queues on
//! the log, [`MetadataStore`] for frontend-owned definitions, [`Scheduler`] for time and delayed
//! delivery, [`Frontend`] for a protocol served on a listener, and [`users`] for the credentials
//! every protocol authenticates against.
//!
//! It is not: storage, networking or a protocol codec. It does no I/O of its own; it names a connection's
//! stream ([`stream`]: TCP, or TLS over TCP) only so the shell can hand a frontend its connection, and its connection rules ([`guard`],
//! [`outbound`]) wrap the frontends' reads and writes. Dependencies point one way:
//! `tributary-api` <- frontends <- the `tributary` engine and binary.

pub mod access;
pub mod batch;
pub mod cluster;
pub mod compression;
pub mod error;
pub mod frontend;
pub mod guard;
pub mod interop;
pub mod log;
pub mod metadata;
pub mod offsets;
pub mod outbound;
pub mod queue;
pub mod scheduler;
pub mod stream;
pub mod telemetry;
pub mod transactions;
pub mod types;
pub mod users;

pub use access::{Access, AccessControl};
pub use batch::{BatchError, BatchHeader, Record, StoredRecord};
pub use cluster::{BrokerAddress, ClusterView, GroupRoster};
pub use error::{EngineError, EngineResult};
pub use frontend::{
    BackgroundContext, ClientId, ConnectionContext, ConnectionError, Engine, FrameLimits, Frontend,
    yield_to_peers,
};
pub use guard::{
    BudgetPermit, CloseReason, ConnectionTimeouts, FrameClock, MemoryBudget, record_close,
};
pub use log::{LogService, PRODUCER_BATCHES_KEPT, PendingDurability, ProducerBatch, TopicAdmin};
pub use metadata::{MetadataStore, USERS_NAMESPACE};
pub use offsets::OffsetStore;
pub use outbound::{Outbound, Queued, SendBudget, SendPermit, WriterGone};
pub use queue::{Delivery, HeadFilter, HeadTake, QueueDepth, QueueOptions, QueueService};
pub use scheduler::{ScheduleTarget, Scheduler};
pub use stream::{CertificateIdentity, ConnectionReader, ConnectionStream, ConnectionWriter};
pub use types::*;
