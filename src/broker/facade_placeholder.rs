//! TEMPORARY PLACEHOLDER — replaced by the real broker at merge; do not build on it.
//!
//! The minimal form of the facade documented in [`crate::broker`], so the shell compiles and
//! its end-to-end tests run before the engine lands: `open` creates the data directory,
//! `spawn_background` runs one task that ends on shutdown, `close` has nothing to flush.
//! `engine()` is left out on purpose: no frontend is mounted yet.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tributary_api::EngineError;

use super::BrokerSettings;

/// Placeholder for the engine facade.
#[derive(Debug)]
pub struct Broker {
    settings: BrokerSettings,
}

impl Broker {
    /// Blocking: creates the data directory.
    pub fn open(settings: BrokerSettings) -> Result<Arc<Self>, EngineError> {
        std::fs::create_dir_all(&settings.data_dir).map_err(|source| EngineError::Io {
            context: "creating the data directory",
            source,
        })?;
        Ok(Arc::new(Self { settings }))
    }

    /// Spawns the background work; here one task that waits for `shutdown`.
    pub fn spawn_background(self: &Arc<Self>, tracker: &TaskTracker, shutdown: CancellationToken) {
        let broker = Arc::clone(self);
        tracker.spawn(async move {
            shutdown.cancelled().await;
            tracing::debug!(data_dir = %broker.settings.data_dir.display(), "background tasks stopped");
        });
    }

    /// Blocking: flushes and fsyncs everything; the placeholder holds nothing.
    pub fn close(&self) -> Result<(), EngineError> {
        Ok(())
    }
}
