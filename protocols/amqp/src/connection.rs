//! One AMQP connection: protocol header, handshake (start / start-ok, tune / tune-ok, open),
//! then the frame loop, heartbeats and close.
//!
//! Tasks: the connection task reads and handles frames in order; a writer task owns the socket's
//! write half, drains a bounded queue of encoded frames (so a slow reader back-pressures
//! publishers and consumer tasks instead of growing memory) and sends a heartbeat after
//! `heartbeat / 2` of output silence. The peer is declared dead after `2 × heartbeat` of input
//! silence and the socket is dropped without a close method, as RabbitMQ does. Pieces queued
//! together are written together, in queue order.
//!
//! Connection rules: the protocol header through `open-ok` must finish within the listener's
//! handshake timeout; with heartbeats off, a connection with no channel open that sends
//! nothing for the idle timeout is closed (one with channels may be a silent consumer and
//! stays); frames are timed and budgeted by [`FrameReader`]. Each such close is logged and
//! counted once ([`tributary_api::record_close`]).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tributary_api::outbound::{SendTimedOut, write_pieces_progressing, write_progressing};
use tributary_api::{CloseReason, ConnectionContext, Outbound, Queued};
use tributary_api::{ConnectionReader, ConnectionStream, ConnectionWriter};

use crate::access::{self, Grant, login};
use crate::codec::methods::Method;
use crate::codec::table::{FieldTable, FieldValue};
use crate::codec::{self, Frame, FrameKind, HeaderCheck};
use crate::error::{self, ACCESS_REFUSED, AmqpError, NOT_ALLOWED, Reply};
use crate::metrics as m;
pub use crate::reader::FrameReader;
use crate::session::{Login, Session};
use crate::vhost::Vhosts;

/// Encoded frames queued for the writer; bounded for backpressure.
const OUTBOUND_QUEUE: usize = 256;
/// Queued output gathered into one socket write, at most (a piece is never split).
const WRITE_COALESCE_BYTES: usize = 64 * 1024;
/// Queued items smaller than this are copied together for one write; larger ones go as they are.
const COPY_BELOW_BYTES: usize = 16 * 1024;
/// At most this many buffers in one vectored write.
const MAX_WRITE_PIECES: usize = 64;
/// The handshake limit when the listener sets none (RabbitMQ's `handshake_timeout`).
const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long to wait for `close-ok` after the server closed the connection.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(1);
/// How long the writer may take to flush what is queued when the connection ends.
const STALL_TIMEOUT: Duration = Duration::from_secs(5);

async fn write_method(write: &mut ConnectionWriter, method: &Method) -> std::io::Result<()> {
    let mut out = BytesMut::new();
    codec::encode_method(&mut out, 0, method);
    write.write_all(&out).await
}

fn server_properties() -> FieldTable {
    let text = |s: &str| FieldValue::LongString(Bytes::copy_from_slice(s.as_bytes()));
    let mut capabilities = FieldTable::default();
    for name in [
        "publisher_confirms",
        "exchange_exchange_bindings",
        "basic.nack",
        "consumer_cancel_notify",
        "connection.blocked",
        "authentication_failure_close",
        "per_consumer_qos",
        "direct_reply_to",
    ] {
        capabilities.insert(name, FieldValue::Bool(true));
    }
    let mut props = FieldTable::default();
    props.insert("capabilities", FieldValue::Table(capabilities));
    // Not "RabbitMQ": kombu/Celery then use per-consumer qos, which is what we implement.
    props.insert("product", text("Tributary"));
    props.insert("version", text(env!("CARGO_PKG_VERSION")));
    props.insert("platform", text("Rust"));
    props.insert("information", text("https://github.com/tributary"));
    props
}

/// Whether the client's `client_properties.capabilities` has `name` set to true.
fn client_capability(client_properties: &FieldTable, name: &str) -> bool {
    match client_properties.get("capabilities") {
        Some(FieldValue::Table(capabilities)) => {
            matches!(capabilities.get(name), Some(FieldValue::Bool(true)))
        }
        _ => false,
    }
}

/// Serves one connection to the end.
pub async fn serve(
    vhosts: Arc<Vhosts>,
    stream: ConnectionStream,
    context: ConnectionContext,
) -> Result<(), AmqpError> {
    match serve_checked(vhosts, stream, &context).await {
        Err(AmqpError::Expired { reason, limit }) => {
            tributary_api::record_close("amqp", context.peer, reason, limit);
            Ok(())
        }
        other => other,
    }
}

/// Reads the protocol header; `false` when the peer left or spoke another protocol (answered).
async fn read_protocol_header(
    read: &mut ConnectionReader,
    write: &mut ConnectionWriter,
    peer: SocketAddr,
) -> Result<bool, AmqpError> {
    let mut header = [0u8; 8];
    let mut have = 0;
    loop {
        let n = read.read(&mut header[have..]).await?;
        if n == 0 {
            return Ok(false);
        }
        have += n;
        match codec::check_protocol_header(&header[..have]) {
            HeaderCheck::Incomplete => continue,
            HeaderCheck::Accepted => return Ok(true),
            HeaderCheck::Rejected => {
                tracing::info!(%peer, "wrong protocol header; answering with ours");
                write.write_all(codec::PROTOCOL_HEADER).await?;
                write.shutdown().await?;
                return Ok(false);
            }
        }
    }
}

/// Runs `step` unless the handshake deadline passes first.
async fn before<T>(
    deadline: Instant,
    limit: Duration,
    step: impl std::future::Future<Output = Result<T, AmqpError>>,
) -> Result<T, AmqpError> {
    tokio::time::timeout_at(deadline, step)
        .await
        .unwrap_or(Err(AmqpError::Expired {
            reason: CloseReason::HandshakeTimeout,
            limit,
        }))
}

/// [`serve`], with the closes by a connection rule still to be counted.
async fn serve_checked(
    vhosts: Arc<Vhosts>,
    stream: ConnectionStream,
    context: &ConnectionContext,
) -> Result<(), AmqpError> {
    let _ = stream.tcp().set_nodelay(true);
    let handshake_limit = context
        .timeouts
        .handshake
        .unwrap_or(DEFAULT_HANDSHAKE_TIMEOUT);
    let handshake_deadline = Instant::now() + handshake_limit;
    let (mut read, mut write) = stream.into_split();
    let accepted = before(
        handshake_deadline,
        handshake_limit,
        read_protocol_header(&mut read, &mut write, context.peer),
    )
    .await?;
    if !accepted {
        return Ok(());
    }
    let server_frame_max = u32::try_from(context.limits.max_frame_bytes).unwrap_or(u32::MAX);
    let mut reader = FrameReader::new(
        read,
        server_frame_max,
        context.peer,
        context.timeouts,
        context.budget.clone(),
    );
    write_method(
        &mut write,
        &Method::ConnectionStart {
            server_properties: server_properties(),
            // EXTERNAL only where a verified client certificate can name the user.
            mechanisms: match context.client_certificate {
                Some(_) => "PLAIN AMQPLAIN EXTERNAL".into(),
                None => "PLAIN AMQPLAIN".into(),
            },
            locales: "en_US".into(),
        },
    )
    .await?;
    let opened = before(
        handshake_deadline,
        handshake_limit,
        handshake(&mut reader, &mut write, &vhosts, server_frame_max, context),
    )
    .await;
    let (tuned, login) = match opened {
        Ok(opened) => opened,
        Err(AmqpError::Connection(reply)) => {
            tracing::info!(peer = %context.peer, %reply, "AMQP handshake refused");
            close_connection(&mut reader, &mut write, &reply).await;
            return Ok(());
        }
        Err(other) => return Err(other),
    };
    reader.frame_max = tuned.frame_max;
    let heartbeat = (tuned.heartbeat > 0).then(|| Duration::from_secs(u64::from(tuned.heartbeat)));
    let (out, outbound) = Outbound::<Bytes>::channel(OUTBOUND_QUEUE, &context.send_budget);
    let writer = tokio::spawn(run_writer(
        write,
        outbound,
        heartbeat.map(|h| h / 2),
        context.timeouts.send,
    ));
    metrics::gauge!(m::CONNECTIONS).increment(1.0);
    metrics::counter!(m::CONNECTIONS_OPENED).increment(1);
    let grant = login.grant.clone();
    let mut session = Session::new(
        login,
        out,
        tuned.frame_max,
        tuned.channel_max,
        context.send_budget.per_connection_bytes(),
    );
    let registration = vhosts.connections.register(
        session.id,
        &session.user,
        &session.vhost,
        context.peer,
        grant,
    );
    session.attach(registration);
    let missed_heartbeats = heartbeat.map(|h| h * 2);
    let outcome = session
        .run(&mut reader, missed_heartbeats, &context.shutdown)
        .await;
    let close = match &outcome {
        Err(AmqpError::Connection(reply)) => Some(reply.clone()),
        Ok(Some(reply)) => Some(reply.clone()),
        _ => None,
    };
    // A dead or stalled peer must not hold cleanup hostage: once the writer is gone every
    // queued send fails at once, so consumer tasks let go and unacked messages are requeued.
    let writer_abort = writer.abort_handle();
    let watchdog = if close.is_some() || outcome.is_ok() {
        let abort = writer_abort.clone();
        Some(tokio::spawn(async move {
            tokio::time::sleep(STALL_TIMEOUT).await;
            abort.abort();
        }))
    } else {
        writer_abort.abort();
        None
    };
    session.cleanup().await;
    metrics::gauge!(m::CONNECTIONS).decrement(1.0);
    metrics::counter!(m::CONNECTIONS_CLOSED).increment(1);
    drop(session);
    let written = writer.await;
    if let Some(watchdog) = watchdog {
        watchdog.abort();
    }
    if let Ok(Err(err)) = &written
        && let Some(limit) = SendTimedOut::of(err)
    {
        tributary_api::record_close("amqp", context.peer, CloseReason::SendTimeout, limit);
        return Ok(());
    }
    let mut write = match written {
        Ok(Ok(write)) => write,
        _ => return outcome.map(|_| ()),
    };
    if let Some(reply) = close {
        metrics::counter!(m::CONNECTION_ERRORS, "code" => reply.code.to_string()).increment(1);
        tracing::info!(peer = %context.peer, %reply, "closing AMQP connection");
        close_connection(&mut reader, &mut write, &reply).await;
    } else if outcome.is_ok() {
        linger(&mut reader, &mut write).await;
    }
    match outcome {
        Err(AmqpError::Connection(_)) | Ok(_) => Ok(()),
        Err(other) => Err(other),
    }
}

/// Sends `connection.close` and waits briefly for `close-ok`.
async fn close_connection(reader: &mut FrameReader, write: &mut ConnectionWriter, reply: &Reply) {
    let close = Method::ConnectionClose {
        reply_code: reply.code,
        reply_text: reply.text.clone(),
        class_id: reply.method.0,
        method_id: reply.method.1,
    };
    if write_method(write, &close).await.is_err() {
        return;
    }
    let wait = async {
        // Drop everything until close-ok; a frame error now just ends the wait.
        while let Ok(Some(frame)) = reader.next(None).await {
            if let FrameKind::Method(payload) = frame.kind
                && matches!(Method::decode(&payload), Ok(Method::ConnectionCloseOk))
            {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, wait).await;
    let _ = write.shutdown().await;
}

/// After close-ok to a client's close: ends this side and lets the client close its own first
/// (for at most [`CLOSE_TIMEOUT`]). Dropping the socket at once would answer what the client
/// still sends (its TLS close_notify, its end of the stream) with a reset, which clients report
/// as a write error on a connection they closed cleanly (amqplib throws it).
async fn linger(reader: &mut FrameReader, write: &mut ConnectionWriter) {
    let _ = write.shutdown().await;
    let drain = async { while let Ok(Some(_)) = reader.next(None).await {} };
    let _ = tokio::time::timeout(CLOSE_TIMEOUT, drain).await;
}

#[derive(Debug, Clone, Copy)]
struct Tuned {
    channel_max: u16,
    frame_max: u32,
    heartbeat: u16,
}

async fn expect_method(reader: &mut FrameReader) -> Result<Method, AmqpError> {
    // The caller bounds the whole handshake; frames are timed by the reader.
    let frame = reader.next(None).await?;
    match frame {
        None => Err(AmqpError::Io(std::io::ErrorKind::UnexpectedEof.into())),
        Some(Frame {
            channel: 0,
            kind: FrameKind::Method(payload),
        }) => Method::decode(&payload).map_err(|e| error::codec_error(&e)),
        Some(_) => Err(AmqpError::connection(
            error::UNEXPECTED_FRAME,
            "expected a method frame on channel 0 during the handshake",
        )),
    }
}

async fn handshake(
    reader: &mut FrameReader,
    write: &mut ConnectionWriter,
    vhosts: &Vhosts,
    server_frame_max: u32,
    context: &ConnectionContext,
) -> Result<(Tuned, Login), AmqpError> {
    let peer = context.peer;
    let settings = vhosts.settings();
    let Method::ConnectionStartOk {
        client_properties,
        mechanism,
        response,
    } = expect_method(reader).await?
    else {
        return Err(AmqpError::connection(
            error::COMMAND_INVALID,
            "expected 'connection.start_ok'",
        ));
    };
    let store = vhosts.engine().metadata.as_ref();
    let verdict = if mechanism == login::EXTERNAL {
        let certificate = context.client_certificate.as_ref();
        login::verify_external(store, certificate, peer, &vhosts.loopback_users).await
    } else {
        match login::parse_credentials(&mechanism, &response) {
            Some(credentials) => login::verify(store, &credentials, peer, &vhosts.loopback_users)
                .await
                .map(|()| credentials.user),
            None => Err(format!("unreadable {mechanism} response")),
        }
    };
    let user = match verdict {
        Ok(user) => user,
        Err(why) => {
            tracing::warn!(%peer, mechanism, why, "AMQP login refused");
            return Err(AmqpError::connection(
                ACCESS_REFUSED,
                format_args!(
                    "Login was refused using authentication mechanism {mechanism}. For details see the broker logfile."
                ),
            ));
        }
    };
    write_method(
        write,
        &Method::ConnectionTune {
            channel_max: settings.channel_max,
            frame_max: server_frame_max,
            heartbeat: settings.heartbeat_secs,
        },
    )
    .await?;
    let Method::ConnectionTuneOk {
        channel_max,
        frame_max,
        heartbeat,
    } = expect_method(reader).await?
    else {
        return Err(AmqpError::connection(
            error::COMMAND_INVALID,
            "expected 'connection.tune_ok'",
        ));
    };
    let frame_max = if frame_max == 0 {
        server_frame_max
    } else {
        frame_max
    };
    if frame_max > server_frame_max || frame_max < codec::FRAME_MIN_SIZE {
        return Err(AmqpError::connection(
            NOT_ALLOWED,
            format_args!(
                "failed to negotiate connection parameters: frame_max {frame_max} is outside {}..={server_frame_max}",
                codec::FRAME_MIN_SIZE
            ),
        ));
    }
    let channel_max = if channel_max == 0 {
        settings.channel_max
    } else {
        channel_max.min(settings.channel_max)
    };
    let Method::ConnectionOpen { virtual_host } = expect_method(reader).await? else {
        return Err(AmqpError::connection(
            error::COMMAND_INVALID,
            "expected 'connection.open'",
        ));
    };
    let grant = open_vhost(store, &virtual_host, &user).await?;
    let shared = vhosts.open(&virtual_host).await?;
    write_method(write, &Method::ConnectionOpenOk).await?;
    let tuned = Tuned {
        channel_max,
        frame_max,
        heartbeat,
    };
    let login = Login {
        shared,
        vhost: virtual_host,
        user,
        grant,
        blocked_capable: client_capability(&client_properties, "connection.blocked"),
        alarms: vhosts.alarms.clone(),
    };
    Ok((tuned, login))
}

/// `connection.open`: the vhost must exist and the user must have permissions on it.
async fn open_vhost(
    store: &dyn tributary_api::MetadataStore,
    vhost: &str,
    user: &str,
) -> Result<Grant, AmqpError> {
    if !access::vhost_exists(store, vhost).await? {
        return Err(AmqpError::connection(
            NOT_ALLOWED,
            format_args!("vhost {vhost} not found"),
        ));
    }
    let refused = || {
        AmqpError::connection(
            NOT_ALLOWED,
            format_args!("access to vhost '{vhost}' refused for user '{user}'"),
        )
    };
    let Some(permissions) = access::permissions(store, vhost, user).await? else {
        return Err(refused());
    };
    Grant::compile(&permissions).map_err(|why| {
        tracing::warn!(
            vhost,
            user,
            why,
            "stored permissions do not compile; access refused"
        );
        refused()
    })
}

/// Owns the write half: writes queued frames, sends heartbeats when output is idle, and hands
/// the socket back when the queue closes (so the connection task can send a final close).
async fn run_writer(
    mut write: ConnectionWriter,
    mut outbound: mpsc::Receiver<Queued<Bytes>>,
    heartbeat_every: Option<Duration>,
    send_timeout: Option<Duration>,
) -> std::io::Result<ConnectionWriter> {
    let mut beat = BytesMut::new();
    codec::encode_heartbeat(&mut beat);
    loop {
        let next = match heartbeat_every {
            Some(every) => match tokio::time::timeout(every, outbound.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    write_progressing(&mut write, &beat, send_timeout).await?;
                    continue;
                }
            },
            None => outbound.recv().await,
        };
        let Some(Queued {
            item: bytes,
            permit,
        }) = next
        else {
            return Ok(write);
        };
        // The permits of everything in this write are given back once it is written.
        let mut held = vec![permit];
        // Whatever else is queued already goes out in the same write: consumer tasks and the
        // session queue small pieces (confirms, deliveries) and a syscall each costs more than
        // copying them together. Large pieces (slices of a large body) are never copied.
        let mut pieces = Pieces::default();
        pieces.push(bytes);
        while pieces.len < WRITE_COALESCE_BYTES
            && pieces.count() < MAX_WRITE_PIECES
            && let Ok(more) = outbound.try_recv()
        {
            pieces.push(more.item);
            held.push(more.permit);
        }
        let pieces = pieces.finish();
        metrics::counter!(m::BYTES_SENT).increment(pieces.iter().map(|p| p.len() as u64).sum());
        match pieces.as_slice() {
            [one] => write_progressing(&mut write, one, send_timeout).await?,
            many => write_pieces_progressing(&mut write, many, send_timeout).await?,
        }
        drop(held);
    }
}

/// The buffers of one write: small items joined into one buffer, large ones kept apart.
#[derive(Default)]
struct Pieces {
    done: Vec<Bytes>,
    joining: BytesMut,
    /// Bytes in `done` and `joining`.
    len: usize,
}

impl Pieces {
    fn push(&mut self, item: Bytes) {
        self.len += item.len();
        if item.len() >= COPY_BELOW_BYTES {
            if !self.joining.is_empty() {
                self.done.push(self.joining.split().freeze());
            }
            self.done.push(item);
        } else if self.joining.is_empty() && self.done.is_empty() {
            // A lone small item is written as it is; it is copied only if another joins it.
            self.done.push(item);
        } else {
            if self.joining.is_empty()
                && let Some(last) = self.done.pop_if(|last| last.len() < COPY_BELOW_BYTES)
            {
                self.joining.extend_from_slice(&last);
            }
            self.joining.extend_from_slice(&item);
        }
    }

    fn count(&self) -> usize {
        self.done.len() + usize::from(!self.joining.is_empty())
    }

    fn finish(mut self) -> Vec<Bytes> {
        if !self.joining.is_empty() {
            self.done.push(self.joining.freeze());
        }
        self.done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_items_are_joined_and_large_ones_kept_apart_in_order() {
        let large = Bytes::from(vec![7u8; COPY_BELOW_BYTES]);
        let mut pieces = Pieces::default();
        for item in [&b"ab"[..], b"cd", &large, b"ef", &large, &large, b"g"] {
            let item = match item.len() {
                n if n == large.len() => large.clone(),
                _ => Bytes::copy_from_slice(item),
            };
            pieces.push(item);
        }
        assert_eq!(pieces.count(), 6);
        let pieces = pieces.finish();
        let lens: Vec<usize> = pieces.iter().map(Bytes::len).collect();
        let big = large.len();
        assert_eq!(lens, [4, big, 2, big, big, 1]);
        assert_eq!(&pieces[0][..], b"abcd");
        assert!(
            pieces
                .iter()
                .filter(|p| p.len() == big)
                .all(|p| p.as_ptr() == large.as_ptr()),
            "a large item goes out as it came, not copied"
        );
        let mut lone = Pieces::default();
        let small = Bytes::from_static(b"only");
        lone.push(small.clone());
        assert_eq!(
            lone.finish()[0].as_ptr(),
            small.as_ptr(),
            "a lone item is not copied"
        );
    }
}
