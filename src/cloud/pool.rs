//! A small PostgreSQL connection pool: at most `size` connections, opened on demand, reused
//! while healthy.
//!
//! Invariants: a connection is handed to one caller at a time; a connection that reports itself
//! closed (a broken socket, a restarted server) is dropped instead of returned, so the next
//! caller reconnects; every connection task runs on the runtime that opened it.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Config, NoTls};

use super::error::{CloudError, CloudResult};
use super::stats::Stats;
use crate::telemetry::names;

/// The pool; cheap to clone.
#[derive(Debug, Clone)]
pub struct PgPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: Config,
    idle: Mutex<Vec<Client>>,
    permits: Arc<Semaphore>,
    stats: Arc<Stats>,
}

/// A connection on loan; goes back to the pool when dropped. One loan is one operation in the
/// metrics: how long it waited for the connection and how long it held it.
#[derive(Debug)]
pub struct PooledClient {
    client: Option<Client>,
    pool: Arc<Inner>,
    lent_at: Instant,
    _permit: OwnedSemaphorePermit,
}

impl PgPool {
    pub fn new(url: &str, size: usize, stats: Arc<Stats>) -> CloudResult<Self> {
        let config: Config = url.parse().map_err(CloudError::BadMetadataUrl)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                idle: Mutex::new(Vec::new()),
                permits: Arc::new(Semaphore::new(size.max(1))),
                stats,
            }),
        })
    }

    /// A healthy connection, waiting for a free slot when all `size` are lent out.
    pub async fn get(&self) -> CloudResult<PooledClient> {
        let asked = Instant::now();
        let permit = Arc::clone(&self.inner.permits)
            .acquire_owned()
            .await
            .map_err(|_| CloudError::FlushFailed("the connection pool is closed".to_owned()))?;
        metrics::histogram!(names::CLOUD_PG_POOL_WAIT_SECONDS).record(asked.elapsed());
        let reused = {
            let mut idle = self.inner.idle.lock();
            loop {
                match idle.pop() {
                    Some(client) if client.is_closed() => continue,
                    other => break other,
                }
            }
        };
        let client = match reused {
            Some(client) => client,
            None => self.connect().await?,
        };
        self.inner.stats.pg_operations.inc();
        Ok(PooledClient {
            client: Some(client),
            pool: Arc::clone(&self.inner),
            lent_at: Instant::now(),
            _permit: permit,
        })
    }

    async fn connect(&self) -> CloudResult<Client> {
        let (client, connection) = self
            .inner
            .config
            .connect(NoTls)
            .await
            .map_err(CloudError::pg("connecting to PostgreSQL"))?;
        self.inner.stats.connections.inc();
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "PostgreSQL connection closed with an error");
            }
        });
        Ok(client)
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// The connection settings, for a connection kept outside the pool (LISTEN).
    pub fn config(&self) -> &Config {
        &self.inner.config
    }
}

impl std::ops::Deref for PooledClient {
    type Target = Client;

    fn deref(&self) -> &Client {
        self.client.as_ref().expect("present until dropped")
    }
}

impl std::ops::DerefMut for PooledClient {
    fn deref_mut(&mut self) -> &mut Client {
        self.client.as_mut().expect("present until dropped")
    }
}

impl Drop for PooledClient {
    fn drop(&mut self) {
        metrics::histogram!(names::CLOUD_PG_OPERATION_SECONDS).record(self.lent_at.elapsed());
        if let Some(client) = self.client.take()
            && !client.is_closed()
        {
            self.pool.idle.lock().push(client);
        }
    }
}
