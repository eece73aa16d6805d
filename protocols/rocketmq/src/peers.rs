//! Requests the broker sends to clients on their own connections: NOTIFY_CONSUMER_IDS_CHANGED
//! (so members rebalance at once instead of at their next 20 s rebalance) and
//! CHECK_TRANSACTION_STATE (to a producer of the group that owns an unresolved half message).
//!
//! Invariants: every open broker connection has one entry, removed when it closes; sending
//! never waits (a full or closed outbound queue drops the request, which is advisory: clients
//! rebalance periodically anyway, and an unanswered transaction check is repeated);
//! broker-originated requests are one-way and numbered from their own opaque counter.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI32, Ordering};

use parking_lot::Mutex;
use tracing::debug;
use tributary_api::Outbound;

use crate::codec::{FLAG_ONEWAY, RemotingCommand, SerializeType};

/// `RequestCode.NOTIFY_CONSUMER_IDS_CHANGED`.
pub(crate) const NOTIFY_CONSUMER_IDS_CHANGED: i32 = 40;
/// `RequestCode.CHECK_TRANSACTION_STATE`.
pub(crate) const CHECK_TRANSACTION_STATE: i32 = 39;

/// The outbound queues of the open broker connections.
#[derive(Debug, Default)]
pub(crate) struct Peers {
    outbound: Mutex<HashMap<u64, Outbound<RemotingCommand>>>,
    next_opaque: AtomicI32,
}

impl Peers {
    pub(crate) fn register(&self, connection: u64, outbound: Outbound<RemotingCommand>) {
        self.outbound.lock().insert(connection, outbound);
    }

    pub(crate) fn remove(&self, connection: u64) {
        self.outbound.lock().remove(&connection);
    }

    /// Sends a one-way request with `code` to `connection`; returns whether it was queued.
    pub(crate) fn send_oneway(
        &self,
        connection: u64,
        serialize_type: SerializeType,
        build: impl FnOnce(RemotingCommand) -> RemotingCommand,
        code: i32,
    ) -> bool {
        let Some(outbound) = self.outbound.lock().get(&connection).cloned() else {
            return false;
        };
        let opaque = self.next_opaque.fetch_add(1, Ordering::Relaxed);
        let mut command = build(RemotingCommand::request(code, opaque, serialize_type));
        command.flag |= FLAG_ONEWAY;
        let bytes = command.approx_encoded_len();
        let queued = outbound.try_send(command, bytes);
        if !queued {
            debug!(
                connection,
                code,
                "dropped a broker-initiated request: outbound queue or buffer full, or closed"
            );
        }
        queued
    }
}
