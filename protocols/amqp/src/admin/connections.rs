//! The open AMQP connections, for the admin API: who they are, and a handle to close one or
//! to swap its permissions while it runs.
//!
//! Invariants: a connection is registered once its session exists (after `connection.open`)
//! and leaves the registry when its task ends ([`Registered`] removes it on drop), so a listed
//! id is either live or on its way out. A swapped grant applies to the next method the
//! connection handles; a close request ends the session with `320 CONNECTION_FORCED` and the
//! given reason after the frame in hand.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::access::Grant;

/// What the admin API shows of one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionInfo {
    pub id: u64,
    pub user: String,
    pub vhost: String,
    pub peer: SocketAddr,
    /// Milliseconds since the Unix epoch when the connection opened its vhost.
    pub connected_at_ms: i64,
    pub channels: usize,
}

/// One registered connection's controls.
#[derive(Debug)]
pub(crate) struct Control {
    id: u64,
    user: String,
    vhost: String,
    peer: SocketAddr,
    connected_at_ms: i64,
    /// Kept current by the session between frames.
    pub(crate) channels: AtomicUsize,
    pub(crate) closing: CancellationToken,
    close_reason: Mutex<String>,
    grant: watch::Sender<Grant>,
}

impl Control {
    /// Why the connection is being closed (set before `closing` is cancelled).
    pub(crate) fn close_reason(&self) -> String {
        self.close_reason.lock().clone()
    }

    fn close(&self, reason: &str) {
        *self.close_reason.lock() = reason.to_owned();
        self.closing.cancel();
    }

    fn info(&self) -> ConnectionInfo {
        ConnectionInfo {
            id: self.id,
            user: self.user.clone(),
            vhost: self.vhost.clone(),
            peer: self.peer,
            connected_at_ms: self.connected_at_ms,
            channels: self.channels.load(Ordering::Relaxed),
        }
    }
}

/// Removes its connection from the registry when dropped (the connection task ended).
#[derive(Debug)]
pub(crate) struct Registered {
    registry: Arc<Connections>,
    pub(crate) control: Arc<Control>,
    /// The permissions the admin API swaps in; the session reads it before each method.
    pub(crate) grant: watch::Receiver<Grant>,
}

impl Drop for Registered {
    fn drop(&mut self) {
        self.registry.open.lock().remove(&self.control.id);
    }
}

/// Every open AMQP connection of the broker, by id.
#[derive(Debug, Default)]
pub struct Connections {
    open: Mutex<HashMap<u64, Arc<Control>>>,
}

impl Connections {
    pub(crate) fn register(
        self: &Arc<Self>,
        id: u64,
        user: &str,
        vhost: &str,
        peer: SocketAddr,
        grant: Grant,
    ) -> Registered {
        let (sender, receiver) = watch::channel(grant);
        let control = Arc::new(Control {
            id,
            user: user.to_owned(),
            vhost: vhost.to_owned(),
            peer,
            connected_at_ms: crate::message::now_ms(),
            channels: AtomicUsize::new(0),
            closing: CancellationToken::new(),
            close_reason: Mutex::new(String::new()),
            grant: sender,
        });
        self.open.lock().insert(id, control.clone());
        Registered {
            registry: self.clone(),
            control,
            grant: receiver,
        }
    }

    /// Every open connection, by id.
    pub fn list(&self) -> Vec<ConnectionInfo> {
        let mut out: Vec<ConnectionInfo> = self.open.lock().values().map(|c| c.info()).collect();
        out.sort_by_key(|info| info.id);
        out
    }

    /// Asks connection `id` to close with `reason`; false when there is no such connection.
    pub fn close(&self, id: u64, reason: &str) -> bool {
        let control = self.open.lock().get(&id).cloned();
        control.map(|control| control.close(reason)).is_some()
    }

    /// Closes every connection `matches` selects; returns how many.
    pub fn close_where(&self, reason: &str, matches: impl Fn(&ConnectionInfo) -> bool) -> usize {
        let chosen: Vec<Arc<Control>> = self
            .open
            .lock()
            .values()
            .filter(|control| matches(&control.info()))
            .cloned()
            .collect();
        chosen.iter().for_each(|control| control.close(reason));
        chosen.len()
    }

    /// The (user, vhost) pairs of the open connections that `matches` selects.
    pub(crate) fn grants_to_refresh(
        &self,
        matches: impl Fn(&str, &str) -> bool,
    ) -> Vec<(String, String)> {
        let mut pairs: Vec<(String, String)> = self
            .open
            .lock()
            .values()
            .filter(|c| matches(&c.user, &c.vhost))
            .map(|c| (c.user.clone(), c.vhost.clone()))
            .collect();
        pairs.sort();
        pairs.dedup();
        pairs
    }

    /// Gives every connection of `user` on `vhost` the permissions `grant`.
    pub(crate) fn swap_grant(&self, user: &str, vhost: &str, grant: &Grant) {
        for control in self.open.lock().values() {
            if control.user == user && control.vhost == vhost {
                control.grant.send_replace(grant.clone());
            }
        }
    }
}
