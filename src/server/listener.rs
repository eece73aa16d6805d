//! The accept loop shared by every listener: one tokio task per connection, a semaphore cap,
//! back-off on accept errors, and cooperative shutdown through a [`Lifecycle`].
//!
//! Invariants worth naming:
//! - at most `max_connections` connections of a listener are served at once; a connection
//!   beyond the cap is accepted and closed at once (the client sees EOF rather than a hang in
//!   the backlog), with a `warn!` and `tributary_connections_refused_total` + 1;
//! - an accept error never ends the loop; it backs off (10 ms doubling to 1 s) instead, so
//!   running out of file descriptors does not spin the CPU or stop the listener for good; each
//!   one is counted in `tributary_accept_errors_total{protocol,reason}` and logged at most once
//!   per second per listener (with the number left unlogged), so a long EMFILE spell cannot
//!   flood the log;
//! - the permit and the active-connections gauge are released by drop, so an aborted
//!   connection task releases them too; so is the connection's entry in the broker's
//!   [`OpenConnections`], where it is listed while served, under its own child of the shutdown
//!   token (the admin API closes one connection by cancelling that child);
//! - on a TLS listener the handshake runs in the connection's task, never in this loop, so a
//!   slow or silent TLS client holds only its own task (and permit) until the handshake limit.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};
use tributary_api::{
    ClientId, ConnectionContext, ConnectionTimeouts, FrameLimits, Frontend, MemoryBudget,
    SendBudget,
};

use super::connections::{OpenConnections, Registration};
use super::shutdown::Lifecycle;
use super::tls::handshake::establish;
use super::tls::{TlsRole, TlsServer};
use crate::telemetry::names;

const MIN_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// Shortest time between two log lines about failing accepts of one listener.
const ACCEPT_LOG_INTERVAL: Duration = Duration::from_secs(1);
/// The TLS handshake limit of a listener with neither a handshake nor a frame time limit.
const DEFAULT_TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

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
        send_budget: SendBudget::default(),
        connections: OpenConnections::default(),
        tls_role: TlsRole::Off,
        tls: None,
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
    /// Output queued for sockets; shared by every listener of the broker.
    pub send_budget: SendBudget,
    /// Where each connection is listed for the admin API (and can be closed from).
    pub connections: OpenConnections,
    /// Whether the listener speaks TLS, and the configuration it serves when it does.
    pub tls_role: TlsRole,
    pub tls: Option<Arc<TlsServer>>,
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
    let mut accept_log = RateLimitedLog::default();
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
                let reason = accept_error_reason(&err);
                metrics::counter!(names::ACCEPT_ERRORS, "protocol" => protocol, "reason" => reason)
                    .increment(1);
                if let Some(unlogged) = accept_log.admit(Instant::now()) {
                    warn!(protocol, reason, error = %err, backoff_ms = backoff.as_millis() as u64, unlogged_since_last = unlogged, "accept failed; backing off (new connections wait in the backlog)");
                }
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
        // The admin API closes this one connection through its own child of the shutdown
        // token, so the frontend's shutdown path (which cleans up) closes it.
        let closing = lifecycle.shutdown.child_token();
        let client_id = ClientId::default();
        let registration =
            rules
                .connections
                .register(protocol, peer, local, client_id.clone(), closing.clone());
        let context = ConnectionContext {
            peer,
            local,
            shutdown: closing,
            limits,
            timeouts: rules.timeouts,
            budget: rules.budget.clone(),
            send_budget: rules.send_budget.clone(),
            client_id,
            client_certificate: None,
        };
        let tls = (rules.tls_role, rules.tls.clone());
        let task = serve_connection(
            Arc::clone(&frontend),
            stream,
            context,
            tls,
            lifecycle.clone(),
            (permit, registration),
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

/// The `reason` label of an accept error: the resource that ran out, or `other`. A fixed set,
/// so the label cannot grow.
fn accept_error_reason(err: &io::Error) -> &'static str {
    match err.raw_os_error() {
        Some(code) if code == rustix::io::Errno::MFILE.raw_os_error() => "emfile",
        Some(code) if code == rustix::io::Errno::NFILE.raw_os_error() => "enfile",
        Some(code) if code == rustix::io::Errno::NOBUFS.raw_os_error() => "enobufs",
        Some(code) if code == rustix::io::Errno::NOMEM.raw_os_error() => "enomem",
        _ => "other",
    }
}

/// Lets one log line through per [`ACCEPT_LOG_INTERVAL`] and counts the ones it held back.
#[derive(Debug, Default)]
pub(crate) struct RateLimitedLog {
    last: Option<Instant>,
    held_back: u64,
}

impl RateLimitedLog {
    pub(crate) const fn new() -> Self {
        Self {
            last: None,
            held_back: 0,
        }
    }

    /// `Some(lines held back since the last one)` when a line may be logged at `now`.
    pub(crate) fn admit(&mut self, now: Instant) -> Option<u64> {
        if self
            .last
            .is_some_and(|last| now.duration_since(last) < ACCEPT_LOG_INTERVAL)
        {
            self.held_back += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.held_back))
    }
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
    mut context: ConnectionContext,
    (tls_role, tls): (TlsRole, Option<Arc<TlsServer>>),
    lifecycle: Lifecycle,
    _held: (OwnedSemaphorePermit, Registration),
) {
    let protocol = frontend.name();
    let peer: SocketAddr = context.peer;
    let _active = ActiveConnection::open(protocol);
    debug!(protocol, %peer, "connection accepted");
    let limit = context
        .timeouts
        .handshake
        .or(context.timeouts.frame)
        .unwrap_or(DEFAULT_TLS_HANDSHAKE_TIMEOUT);
    let established = tokio::select! {
        established = establish(stream, tls_role, tls.as_ref(), limit, protocol, peer) => established,
        () = context.shutdown.cancelled() => None,
        () = lifecycle.abort.cancelled() => None,
    };
    let Some(established) = established else {
        return;
    };
    context.client_certificate = established.client_certificate;
    let stream = established.stream;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_and_memory_exhaustion_have_their_own_reasons() {
        let of = |errno: rustix::io::Errno| io::Error::from_raw_os_error(errno.raw_os_error());
        assert_eq!(accept_error_reason(&of(rustix::io::Errno::MFILE)), "emfile");
        assert_eq!(accept_error_reason(&of(rustix::io::Errno::NFILE)), "enfile");
        assert_eq!(
            accept_error_reason(&of(rustix::io::Errno::NOBUFS)),
            "enobufs"
        );
        assert_eq!(accept_error_reason(&of(rustix::io::Errno::NOMEM)), "enomem");
        assert_eq!(accept_error_reason(&of(rustix::io::Errno::PERM)), "other");
    }

    #[test]
    fn accept_errors_are_logged_at_most_once_per_second() {
        let mut log = RateLimitedLog::default();
        let start = Instant::now();
        assert_eq!(log.admit(start), Some(0));
        for ms in 1..100 {
            assert_eq!(log.admit(start + Duration::from_millis(ms * 10 - 9)), None);
        }
        assert_eq!(log.admit(start + ACCEPT_LOG_INTERVAL), Some(99));
        assert_eq!(log.admit(start + ACCEPT_LOG_INTERVAL), None);
    }
}
