//! One client connection: a read loop that decodes frames and runs each request as its own task,
//! and one writer task that serialises responses onto the socket.
//!
//! Invariants:
//! - requests run concurrently and out of order (a long-polling pull never holds up a later
//!   request); each response carries its request's opaque;
//! - at most [`MAX_IN_FLIGHT`] requests, and requests of at most the connection's buffer cap
//!   (`limits.connection_buffer_bytes`) in bytes, run at once; at most [`OUTBOUND_CAPACITY`]
//!   responses, and the connection's and broker's send budgets in bytes, wait for the socket;
//!   when any is full the read loop stops reading (backpressure); a write that the peer accepts
//!   nothing of for the send timeout ends the connection;
//! - a malformed or oversized frame closes this connection only, after a log line;
//! - on shutdown or peer close, long polls are cut short, requests in flight finish and their
//!   responses are flushed before the connection returns; members registered on this connection
//!   leave their groups, and the rest of those groups are told (NOTIFY_CONSUMER_IDS_CHANGED);
//! - a broker connection's outbound queue is registered in [`crate::peers`] while it is open,
//!   so other connections' handlers can send this client requests;
//! - connection rules ([`tributary_api::guard`]): with no request in flight, a connection that
//!   sent nothing for the listener's idle time (`rocketmq.channel_idle_ms`) is closed; a started
//!   frame must be whole within the frame timeout; the read buffer grows as bytes arrive, and a
//!   frame above the unbudgeted size takes its size from the broker's buffer budget before its
//!   body is read, until its request is handled.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};
use tributary_api::guard::{self, BudgetPermit, CloseReason, FrameClock, MemoryBudget};
use tributary_api::outbound::{SendTimedOut, write_progressing};
use tributary_api::{ClientId, ConnectionContext, ConnectionError, Outbound, Queued};
use tributary_api::{ConnectionStream, ConnectionWriter};

use crate::codec::{self, RemotingCommand};
use crate::{Role, Shared, handlers, metrics};

/// Requests of one connection running at once.
const MAX_IN_FLIGHT: usize = 1024;
/// Responses of one connection waiting for the socket.
const OUTBOUND_CAPACITY: usize = 256;
/// Bytes read per socket read.
const READ_CHUNK: usize = 64 << 10;

static NEXT_CONNECTION_ID: AtomicU64 = AtomicU64::new(1);

/// What a request handler knows about its connection.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) id: u64,
    pub(crate) role: Role,
    pub(crate) peer: SocketAddr,
    pub(crate) local: SocketAddr,
    /// Cancelled when the connection ends or the broker shuts down; long polls watch it.
    pub(crate) closing: CancellationToken,
    /// The client's `clientID` from its heartbeats, for the admin API.
    pub(crate) client_id: ClientId,
}

pub(crate) async fn serve(
    shared: Arc<Shared>,
    role: Role,
    stream: ConnectionStream,
    context: ConnectionContext,
) -> Result<(), ConnectionError> {
    let connection = Arc::new(Connection {
        id: NEXT_CONNECTION_ID.fetch_add(1, Ordering::Relaxed),
        role,
        peer: context.peer,
        local: context.local,
        closing: context.shutdown.child_token(),
        client_id: context.client_id.clone(),
    });
    let (mut reader, writer) = stream.into_split();
    let (outbound, queued) =
        Outbound::<RemotingCommand>::channel(OUTBOUND_CAPACITY, &context.send_budget);
    let writer = tokio::spawn(write_loop(writer, queued, context.timeouts.send));
    if role == Role::Broker {
        shared.peers.register(connection.id, outbound.clone());
    }
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // Bytes of the requests in flight, so 1,024 requests cannot each hold a full small frame.
    let request_bytes = MemoryBudget::new(context.send_budget.per_connection_bytes());
    let tasks = TaskTracker::new();
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    let listener = match role {
        Role::Broker => "rocketmq-broker",
        Role::NameServer => "rocketmq-namesrv",
    };
    let mut clock = FrameClock::new();
    // Budget held for the frame being read; it moves to the request's task.
    let mut frame_budget: Option<BudgetPermit> = None;

    let outcome: Result<(), ConnectionError> = loop {
        let declared = codec::declared_frame_bytes(&buf);
        let decoded = codec::decode_frame(&mut buf, context.limits.max_frame_bytes);
        let (request, budget) = match decoded {
            Ok(Some(request)) => {
                clock.on_frame(buf.len());
                guard::release_after_large_frame(&mut buf, declared.unwrap_or(0));
                (request, frame_budget.take())
            }
            Ok(None) => {
                if frame_budget.is_none()
                    && let Some(declared) =
                        declared.filter(|bytes| MemoryBudget::applies_to(*bytes))
                {
                    let deadline = clock.deadline(&context.timeouts, false);
                    tokio::select! {
                        permit = context.budget.acquire(declared) => frame_budget = Some(permit),
                        () = guard::sleep_until(deadline.map(|(at, _, _)| at)) => {
                            if let Some((_, reason, limit)) = deadline {
                                guard::record_close(listener, connection.peer, reason, limit);
                            }
                            break Ok(());
                        }
                        () = connection.closing.cancelled() => break Ok(()),
                    }
                }
                guard::reserve_read(&mut buf, declared, READ_CHUNK);
                let deadline = clock.deadline(&context.timeouts, true);
                let read = tokio::select! {
                    read = reader.read_buf(&mut buf) => read,
                    () = connection.closing.cancelled() => break Ok(()),
                    // The writer failed or timed out on a peer that stopped reading.
                    () = outbound.closed() => break Ok(()),
                    () = guard::sleep_until(deadline.map(|(at, _, _)| at)) => {
                        let Some((_, reason, limit)) = deadline else { continue };
                        // A request in flight (a long poll) is activity, not idleness.
                        if reason == CloseReason::Idle && in_flight.available_permits() < MAX_IN_FLIGHT {
                            clock.touch();
                            continue;
                        }
                        guard::record_close(listener, connection.peer, reason, limit);
                        break Ok(());
                    }
                };
                match read {
                    Ok(0) => break Ok(()),
                    Ok(_) => {
                        clock.on_read();
                        continue;
                    }
                    Err(err) => break Err(err.into()),
                }
            }
            Err(err) => {
                ::metrics::counter!(metrics::MALFORMED_FRAMES).increment(1);
                warn!(peer = %connection.peer, error = %err, "malformed RocketMQ frame; closing the connection");
                break Err(err.into());
            }
        };
        if request.is_response() {
            // Answers to broker-initiated notifications; nothing waits for them.
            debug!(peer = %connection.peer, opaque = request.opaque, "ignoring a client response");
            continue;
        }
        let permit = tokio::select! {
            permit = Arc::clone(&in_flight).acquire_owned() => permit,
            () = connection.closing.cancelled() => break Ok(()),
        };
        let Ok(permit) = permit else {
            break Ok(());
        };
        let bytes = tokio::select! {
            bytes = request_bytes.acquire(request.approx_encoded_len()) => bytes,
            () = connection.closing.cancelled() => break Ok(()),
            () = outbound.closed() => break Ok(()),
        };
        let shared = Arc::clone(&shared);
        let connection = Arc::clone(&connection);
        let outbound = outbound.clone();
        tasks.spawn(async move {
            if let Some(response) = handlers::handle(&shared, &connection, request).await {
                // A send fails only when the writer is gone (socket error, send timeout);
                // nothing to do then.
                let size = response.approx_encoded_len();
                let _ = outbound.send(response, size).await;
            }
            drop(permit);
            drop(bytes);
            drop(budget);
        });
    };

    connection.closing.cancel();
    tasks.close();
    tasks.wait().await;
    shared.peers.remove(connection.id);
    drop(outbound);
    let written = writer.await;
    // What this connection's pulls committed is stored before it is gone (also how a graceful
    // shutdown, which drains connections, keeps the last offsets).
    crate::pull_commits::flush(&shared).await;
    let left = crate::handlers::connection_closed(&shared, connection.id);
    for group in &left {
        debug!(group, "a consumer left with its connection");
    }
    shared.notify_ids_changed(&left);
    match written {
        Ok(Err(err)) if let Some(limit) = SendTimedOut::of(&err) => {
            guard::record_close(listener, connection.peer, CloseReason::SendTimeout, limit);
            Ok(())
        }
        Ok(Err(err)) if outcome.is_ok() => Err(err.into()),
        _ => outcome,
    }
}

/// Writes queued responses, coalescing whatever is already queued into one write.
async fn write_loop(
    mut writer: ConnectionWriter,
    mut queued: mpsc::Receiver<Queued<RemotingCommand>>,
    send_timeout: Option<Duration>,
) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    let mut held = Vec::new();
    while let Some(first) = queued.recv().await {
        codec::encode_frame(&first.item, &mut out);
        held.push(first.permit);
        while out.len() < READ_CHUNK {
            match queued.try_recv() {
                Ok(next) => {
                    codec::encode_frame(&next.item, &mut out);
                    held.push(next.permit);
                }
                Err(_) => break,
            }
        }
        write_progressing(&mut writer, &out, send_timeout).await?;
        out.clear();
        // Written: the budget of these responses comes back.
        held.clear();
    }
    writer.shutdown().await
}
