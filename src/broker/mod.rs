//! The engine behind the contract: implements the `tributary-api` traits over [`crate::storage`]
//! and the redb metadata store.
//!
//! Facade (the shell depends on exactly this):
//! - `Broker::open(BrokerSettings) -> Result<Arc<Broker>, EngineError>`: blocking; opens the
//!   metadata store, recovers every partition it lists, and loads queue state.
//! - `Broker::engine(self: &Arc<Self>) -> tributary_api::Engine`: the services for frontends.
//! - `Broker::spawn_background(self: &Arc<Self>, tracker: &TaskTracker, shutdown: CancellationToken)`:
//!   retention, the delayed-delivery scheduler and interval fsyncs, as tokio tasks that stop on
//!   `shutdown`.
//! - `Broker::close(&self) -> Result<(), EngineError>`: blocking; flushes and fsyncs everything.

pub mod metadata;
pub mod offsets;
pub mod queues;
pub mod records;
pub mod scheduler;
pub mod settings;

pub use settings::{BrokerSettings, LogDefaults};
