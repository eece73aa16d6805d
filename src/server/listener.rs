//! The accept loop shared by every listener: one tokio task per connection, a semaphore cap,
//! back-off on accept errors, and cooperative shutdown through a [`Lifecycle`].
//!
//! Invariants worth naming:
//! - at most `max_connections` connections of a listener are served at once; a connection
//!   beyond the cap is accepted and closed at once (the client sees EOF rather than a hang in
//!   the backlog), with a `warn!` and `tributary_connections_refused_total` + 1;
//! - an accept error never ends the loop; it backs off (10 ms doubling to 1 s) instead, so
//!   running out of file descriptors does not spin the CPU or stop the listener for good;
//! - the permit and the active-connections gauge are released by drop, so an aborted
//!   connection task releases them too.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};
use tributary_api::{ConnectionContext, ConnectionTimeouts, FrameLimits, Frontend, MemoryBudget};

use super::shutdown::Lifecycle;
use crate::telemetry::names;

const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Accepts connections on `listener` and serves each with `frontend` until
/// `lifecycle.shutdown` is cancelled. Spawn it on `lifecycle.tracker`. No timeouts apply and
/// the buffer budget is the default one; see [`serve_listener_with`].
pub async fn serve_listener(
    frontend: Arc<dyn Frontend>,
    listener: TcpListener,
    limits: FrameLimits,
    max_connections: usize,
    lifecycle: Lifecycle,
) {
    let rules = ConnectionRules {
        timeouts: ConnectionTimeouts::default(),
        budget: MemoryBudget::default(),
    };
    serve_listener_with(
        frontend,
        listener,
        limits,
        max_connections,
        rules,
        lifecycle,
    )
    .await;
}

/// What every connection of a listener is held to besides its frame limit.
#[derive(Debug, Clone)]
pub struct ConnectionRules {
    pub timeouts: ConnectionTimeouts,
    /// Shared by every listener of the broker.
    pub budget: MemoryBudget,
}

/// [`serve_listener`] with the listener's time limits and the broker's buffer budget.
pub async fn serve_listener_with(
    frontend: Arc<dyn Frontend>,
    listener: TcpListener,
    limits: FrameLimits,
    max_connections: usize,
    rules: ConnectionRules,
    lifecycle: Lifecycle,
) {
    let protocol = frontend.name();
    let local = match listener.local_addr() {
        Ok(local) => local,
        Err(err) => {
            warn!(protocol, error = %err, "listener has no local address; not serving");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(max_connections.min(Semaphore::MAX_PERMITS)));
    metrics::gauge!(names::CONNECTIONS_ACTIVE, "protocol" => protocol).set(0.0);
    metrics::counter!(names::CONNECTIONS_ACCEPTED, "protocol" => protocol).absolute(0);
    metrics::counter!(names::CONNECTIONS_REFUSED, "protocol" => protocol).absolute(0);

    let mut backoff = MIN_BACKOFF;
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = lifecycle.shutdown.cancelled() => break,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => {
                backoff = MIN_BACKOFF;
                accepted
            }
            Err(err) if is_per_connection(&err) => {
                debug!(protocol, error = %err, "a connection failed before it was accepted");
                continue;
            }
            Err(err) => {
                warn!(protocol, error = %err, backoff_ms = backoff.as_millis() as u64, "accept failed; backing off");
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = lifecycle.shutdown.cancelled() => break,
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            metrics::counter!(names::CONNECTIONS_REFUSED, "protocol" => protocol).increment(1);
            warn!(protocol, %peer, max_connections, "connection cap reached; closing the new connection");
            drop(stream);
            continue;
        };
        metrics::counter!(names::CONNECTIONS_ACCEPTED, "protocol" => protocol).increment(1);
        if let Err(err) = stream.set_nodelay(true) {
            debug!(protocol, %peer, error = %err, "cannot set TCP_NODELAY");
        }
        let context = ConnectionContext {
            peer,
            local,
            shutdown: lifecycle.shutdown.clone(),
            limits,
            timeouts: rules.timeouts,
            budget: rules.budget.clone(),
        };
        let task = serve_connection(
            Arc::clone(&frontend),
            stream,
            context,
            lifecycle.clone(),
            permit,
        );
        lifecycle.tracker.spawn(task);
    }
    info!(protocol, addr = %local, "stopped accepting connections");
}

/// Errors that concern one half-open connection, not the listener.
fn is_per_connection(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
    )
}

/// Keeps `tributary_connections_active` right however the task ends.
struct ActiveConnection {
    protocol: &'static str,
}

impl ActiveConnection {
    fn open(protocol: &'static str) -> Self {
        metrics::gauge!(names::CONNECTIONS_ACTIVE, "protocol" => protocol).increment(1.0);
        Self { protocol }
    }
}

impl Drop for ActiveConnection {
    fn drop(&mut self) {
        metrics::gauge!(names::CONNECTIONS_ACTIVE, "protocol" => self.protocol).decrement(1.0);
    }
}

async fn serve_connection(
    frontend: Arc<dyn Frontend>,
    stream: TcpStream,
    context: ConnectionContext,
    lifecycle: Lifecycle,
    _permit: OwnedSemaphorePermit,
) {
    let protocol = frontend.name();
    let peer: SocketAddr = context.peer;
    let _active = ActiveConnection::open(protocol);
    debug!(protocol, %peer, "connection accepted");
    tokio::select! {
        result = frontend.serve_connection(stream, context) => match result {
            Ok(()) => debug!(protocol, %peer, "connection closed"),
            Err(err) => info!(protocol, %peer, error = %err, "connection closed with an error"),
        },
        () = lifecycle.abort.cancelled() => {
            warn!(protocol, %peer, "connection aborted: it outlived the shutdown drain deadline");
        }
    }
}
