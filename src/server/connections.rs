//! Every open client connection of every listener, for the admin API's `/api/connections`:
//! who it is (protocol, peer, the client's own id) and a handle that closes it.
//!
//! Invariants: the accept loop registers a connection before its frontend serves it and the
//! registration leaves on drop, so a listed connection is live or on its way out. Closing one
//! cancels the token the frontend serves it under (its `ConnectionContext::shutdown`), so the
//! frontend closes it the way it closes connections at broker shutdown: requests in flight
//! finish, its cleanup runs (RocketMQ members leave their groups), the socket closes. Nothing
//! here holds client input but the [`ClientId`], which is bounded.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;
use tributary_api::ClientId;

/// What the admin API shows of one connection.
#[derive(Debug, Clone)]
pub struct OpenConnection {
    pub id: u64,
    /// The frontend's name (`kafka`, `rocketmq-broker`, ...).
    pub frontend: &'static str,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// Milliseconds since the Unix epoch when it was accepted.
    pub connected_at_ms: i64,
    pub client_id: Option<String>,
}

impl OpenConnection {
    /// RabbitMQ's connection name, `peer -> local`: unique among open TCP connections.
    pub fn name(&self) -> String {
        format!("{} -> {}", self.peer, self.local)
    }
}

#[derive(Debug)]
struct Entry {
    frontend: &'static str,
    peer: SocketAddr,
    local: SocketAddr,
    connected_at_ms: i64,
    client_id: ClientId,
    closing: CancellationToken,
}

/// The registry; cheap to clone, shared by every listener and the admin API.
#[derive(Debug, Clone, Default)]
pub struct OpenConnections {
    open: Arc<Mutex<BTreeMap<u64, Entry>>>,
    next_id: Arc<AtomicU64>,
}

/// Keeps a connection listed; dropping it (the connection task ended) removes it.
#[derive(Debug)]
pub struct Registration {
    registry: OpenConnections,
    id: u64,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.registry.open.lock().remove(&self.id);
    }
}

impl OpenConnections {
    /// Lists a connection served under `closing`; `client_id` is the frontend's to fill.
    pub fn register(
        &self,
        frontend: &'static str,
        peer: SocketAddr,
        local: SocketAddr,
        client_id: ClientId,
        closing: CancellationToken,
    ) -> Registration {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let entry = Entry {
            frontend,
            peer,
            local,
            connected_at_ms: crate::broker::topics::now_ms(),
            client_id,
            closing,
        };
        self.open.lock().insert(id, entry);
        Registration {
            registry: self.clone(),
            id,
        }
    }

    /// The open connections of `frontends`, oldest first.
    pub fn list(&self, frontends: &[&str]) -> Vec<OpenConnection> {
        self.open
            .lock()
            .iter()
            .filter(|(_, entry)| frontends.contains(&entry.frontend))
            .map(|(id, entry)| OpenConnection {
                id: *id,
                frontend: entry.frontend,
                peer: entry.peer,
                local: entry.local,
                connected_at_ms: entry.connected_at_ms,
                client_id: entry.client_id.get(),
            })
            .collect()
    }

    /// Asks connection `id` to close; false when it is not open.
    pub fn close(&self, id: u64) -> bool {
        let open = self.open.lock();
        let Some(entry) = open.get(&id) else {
            return false;
        };
        entry.closing.cancel();
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_lists_until_dropped_and_close_cancels_its_token() {
        let registry = OpenConnections::default();
        let addr = |port| SocketAddr::from(([127, 0, 0, 1], port));
        let token = CancellationToken::new();
        let client_id = ClientId::default();
        let registration = registry.register(
            "kafka",
            addr(5000),
            addr(9092),
            client_id.clone(),
            token.clone(),
        );
        client_id.set("app-1");
        let listed = registry.list(&["kafka"]);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].client_id.as_deref(), Some("app-1"));
        assert_eq!(listed[0].name(), "127.0.0.1:5000 -> 127.0.0.1:9092");
        assert!(registry.list(&["amqp"]).is_empty());
        assert!(registry.close(listed[0].id));
        assert!(token.is_cancelled());
        drop(registration);
        assert!(registry.list(&["kafka"]).is_empty());
        assert!(!registry.close(listed[0].id));
    }
}
