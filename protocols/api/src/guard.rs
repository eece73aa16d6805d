//! What every frontend's connection loop enforces against silent, slow and greedy peers: the
//! time limits of a listener ([`ConnectionTimeouts`], tracked per connection by a
//! [`FrameClock`]) and the broker-wide [`MemoryBudget`] for buffered request frames.
//!
//! Invariants:
//! - a frame is timed from the read that brought its first byte; once a frame is taken off the
//!   buffer, the rest of the buffer (if any) is the next frame, started by the same read;
//! - a connection is idle when no frame is in progress; the idle time counts from the last
//!   bytes received or the last [`FrameClock::touch`] (a response written);
//! - a [`BudgetPermit`] holds budget until it is dropped; a request larger than the whole
//!   budget takes the whole budget (so a legal frame is always receivable, alone);
//! - every close for a policy reason is logged once and counted in [`CONNECTIONS_CLOSED`]
//!   with a static `listener` and `reason` label.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::telemetry::{MetricDescription, MetricKind, Unit, metric};

/// Connections closed by the broker's connection rules (timeouts, pre-authentication frame cap),
/// by `listener` and `reason`.
pub const CONNECTIONS_CLOSED: &str = "tributary_connections_closed_total";

/// The metrics of this module, for the shell's catalog.
pub static CATALOG: &[MetricDescription] = &[metric(
    CONNECTIONS_CLOSED,
    MetricKind::Counter,
    Unit::Count,
    "Connections closed by a connection rule (idle, frame, handshake or send timeout, missed heartbeats, pre-authentication frame cap, connection buffer cap), by listener and reason.",
)];

/// Frames up to this size are read into the connection's own read buffer without taking from
/// the [`MemoryBudget`]: a connection's buffer is at most one such chunk beyond its frame.
pub const UNBUDGETED_FRAME_BYTES: usize = 64 << 10;

/// The time limits of one listener's connections; `None` turns a limit off.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ConnectionTimeouts {
    /// Close a connection that has sent nothing, with nothing in progress, for this long.
    pub idle: Option<Duration>,
    /// A started frame must be complete this long after its first byte arrived.
    pub frame: Option<Duration>,
    /// From accept to an established session (AMQP: protocol header through `open-ok`).
    pub handshake: Option<Duration>,
    /// A write to the socket must accept some bytes within this long (the peer reads).
    pub send: Option<Duration>,
}

/// Why a connection rule closed a connection; its label is the metric's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseReason {
    /// Nothing received for the idle timeout.
    Idle,
    /// A started frame was not finished in time.
    FrameTimeout,
    /// The handshake was not finished in time.
    HandshakeTimeout,
    /// Two negotiated heartbeat intervals passed without input.
    Heartbeat,
    /// A frame before authentication declared more than the pre-authentication cap.
    PreAuthFrameTooLarge,
    /// The peer accepted no output for the send timeout.
    SendTimeout,
    /// The connection's partly received messages went over its buffer cap.
    BufferLimit,
}

impl CloseReason {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Idle => "idle",
            Self::FrameTimeout => "frame_timeout",
            Self::HandshakeTimeout => "handshake_timeout",
            Self::Heartbeat => "heartbeat",
            Self::PreAuthFrameTooLarge => "pre_auth_frame_too_large",
            Self::SendTimeout => "send_timeout",
            Self::BufferLimit => "buffer_limit",
        }
    }
}

impl std::fmt::Display for CloseReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// Logs one line and counts the close of a connection of `listener` (a frontend name).
pub fn record_close(
    listener: &'static str,
    peer: SocketAddr,
    reason: CloseReason,
    limit: Duration,
) {
    tracing::info!(
        listener,
        %peer,
        reason = reason.label(),
        limit_ms = limit.as_millis() as u64,
        "closing the connection: {}",
        match reason {
            CloseReason::Idle => "idle for too long",
            CloseReason::FrameTimeout => "a started frame was not finished in time",
            CloseReason::HandshakeTimeout => "the handshake was not finished in time",
            CloseReason::Heartbeat => "missed heartbeats",
            CloseReason::PreAuthFrameTooLarge => "frame too large before authentication",
            CloseReason::SendTimeout => "the peer stopped reading its output",
            CloseReason::BufferLimit => "too many bytes of partly received messages",
        }
    );
    count_close(listener, reason);
}

/// Counts a close the caller logged itself (with details [`record_close`] does not know).
pub fn count_close(listener: &'static str, reason: CloseReason) {
    metrics::counter!(CONNECTIONS_CLOSED, "listener" => listener, "reason" => reason.label())
        .increment(1);
}

/// When a connection's partial frame started and when it last showed signs of life.
#[derive(Debug, Clone, Copy)]
pub struct FrameClock {
    frame_started: Option<Instant>,
    last_read: Instant,
    last_activity: Instant,
}

impl Default for FrameClock {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameClock {
    /// A clock for a connection accepted now, with nothing buffered.
    pub fn new() -> Self {
        let now = Instant::now();
        Self {
            frame_started: None,
            last_read: now,
            last_activity: now,
        }
    }

    /// Bytes arrived: a frame starts now unless one is already in progress.
    pub fn on_read(&mut self) {
        let now = Instant::now();
        self.last_read = now;
        self.last_activity = now;
        self.frame_started.get_or_insert(now);
    }

    /// A whole frame was taken off the buffer; `buffered` bytes of the next remain.
    pub fn on_frame(&mut self, buffered: usize) {
        self.frame_started = (buffered > 0).then_some(self.last_read);
    }

    /// The connection did something for its peer (wrote a response): the idle time restarts.
    pub fn touch(&mut self) {
        self.last_activity = Instant::now();
    }

    /// The last bytes received or [`FrameClock::touch`], whichever is later.
    pub fn idle_since(&self) -> Instant {
        self.last_activity
    }

    /// Whether part of a frame is buffered.
    pub fn frame_in_progress(&self) -> bool {
        self.frame_started.is_some()
    }

    /// When the wait for more input must end and why: the frame deadline while a frame is in
    /// progress, else the idle deadline if `idle_applies`.
    pub fn deadline(
        &self,
        timeouts: &ConnectionTimeouts,
        idle_applies: bool,
    ) -> Option<(Instant, CloseReason, Duration)> {
        match self.frame_started {
            Some(started) => timeouts
                .frame
                .map(|limit| (started + limit, CloseReason::FrameTimeout, limit)),
            None if idle_applies => timeouts
                .idle
                .map(|limit| (self.last_activity + limit, CloseReason::Idle, limit)),
            None => None,
        }
    }
}

/// Sleeps until `deadline`, or forever without one; for `select!` next to a read.
pub async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// Bytes of a large frame that must have arrived before the rest of it is reserved at once.
pub const RESERVE_WHOLE_FRAME_AFTER: usize = 1 << 20;

/// Makes room in `buf` for the next read of a frame of `declared` bytes (prefix included) of
/// which `buf` holds the start. Until [`RESERVE_WHOLE_FRAME_AFTER`] bytes of it have arrived,
/// at most one read chunk, so a peer that announces a large frame and sends little costs
/// little; after that, the rest of the frame at once (the caller holds its budget by then), so
/// a large frame is not copied through a series of doublings.
pub fn reserve_read(buf: &mut BytesMut, declared: Option<usize>, read_chunk: usize) {
    let spare = buf.capacity() - buf.len();
    let wanted = match declared {
        Some(declared) if declared > buf.len() && buf.len() >= RESERVE_WHOLE_FRAME_AFTER => {
            declared - buf.len()
        }
        Some(declared) if declared > buf.len() => (declared - buf.len()).min(read_chunk),
        _ => read_chunk,
    };
    if spare < wanted {
        buf.reserve(wanted);
    }
}

/// After a frame of `frame_len` bytes was split off `buf`: if it was a large (budgeted) frame,
/// `buf` lets go of the allocation it grew for it (shared with the frame until the request is
/// handled, then freed) and keeps only the bytes already read past the frame. So a connection
/// does not keep a large frame's memory after its request is handled, outside the budget.
pub fn release_after_large_frame(buf: &mut BytesMut, frame_len: usize) {
    if MemoryBudget::applies_to(frame_len) {
        let mut fresh = BytesMut::with_capacity(buf.len().max(UNBUDGETED_FRAME_BYTES));
        fresh.extend_from_slice(buf);
        *buf = fresh;
    }
}

/// The broker-wide budget for buffered request frames larger than [`UNBUDGETED_FRAME_BYTES`]:
/// a connection takes a frame's declared size from it before reading the frame's body and
/// gives it back when the request is handled. When it is spent, connections wait (they stop
/// reading) instead of growing memory.
#[derive(Debug, Clone)]
pub struct MemoryBudget {
    kib: Arc<Semaphore>,
    total_kib: u32,
}

/// Budget held for one frame; released on drop.
#[derive(Debug)]
pub struct BudgetPermit {
    _permit: Option<OwnedSemaphorePermit>,
}

impl MemoryBudget {
    /// A budget of `bytes` (rounded down to KiB, at least 1 KiB).
    pub fn new(bytes: u64) -> Self {
        let total_kib = u32::try_from(bytes / 1024).unwrap_or(u32::MAX).max(1);
        let total_kib = total_kib.min(u32::try_from(Semaphore::MAX_PERMITS).unwrap_or(u32::MAX));
        Self {
            kib: Arc::new(Semaphore::new(total_kib as usize)),
            total_kib,
        }
    }

    /// The whole budget in bytes.
    pub fn total_bytes(&self) -> u64 {
        u64::from(self.total_kib) * 1024
    }

    /// Bytes not taken.
    pub fn available_bytes(&self) -> u64 {
        self.kib.available_permits() as u64 * 1024
    }

    /// Whether a frame of `declared` bytes must take from the budget.
    pub fn applies_to(declared: usize) -> bool {
        declared > UNBUDGETED_FRAME_BYTES
    }

    /// Takes `bytes` (rounded up to KiB; the whole budget at most), waiting while it is spent.
    pub async fn acquire(&self, bytes: usize) -> BudgetPermit {
        let kib = u32::try_from(bytes.div_ceil(1024))
            .unwrap_or(u32::MAX)
            .min(self.total_kib);
        // The semaphore is never closed, so acquiring fails only if it were; then nothing is held.
        let permit = Arc::clone(&self.kib).acquire_many_owned(kib).await.ok();
        BudgetPermit { _permit: permit }
    }
}

impl Default for MemoryBudget {
    /// 512 MiB, the shell's default `limits.buffer_bytes`.
    fn default() -> Self {
        Self::new(512 << 20)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_frame_is_timed_from_its_first_byte_and_the_rest_of_a_read_starts_the_next() {
        let timeouts = ConnectionTimeouts {
            idle: Some(Duration::from_secs(100)),
            frame: Some(Duration::from_secs(5)),
            handshake: None,
            send: None,
        };
        let mut clock = FrameClock::new();
        let (_, reason, _) = clock.deadline(&timeouts, true).expect("idle applies");
        assert_eq!(reason, CloseReason::Idle);
        assert!(clock.deadline(&timeouts, false).is_none());
        clock.on_read();
        let (first, reason, _) = clock.deadline(&timeouts, true).expect("a frame started");
        assert_eq!(reason, CloseReason::FrameTimeout);
        clock.on_read();
        let (second, _, _) = clock.deadline(&timeouts, true).expect("same frame");
        assert_eq!(
            first, second,
            "more bytes of one frame do not extend its deadline"
        );
        clock.on_frame(3);
        assert!(clock.frame_in_progress());
        clock.on_frame(0);
        assert!(!clock.frame_in_progress());
    }

    #[tokio::test]
    async fn the_budget_is_taken_and_given_back() {
        let budget = MemoryBudget::new(1 << 20);
        let permit = budget.acquire(600 << 10).await;
        assert_eq!(budget.available_bytes(), 424 << 10);
        let whole = tokio::time::timeout(Duration::from_millis(50), budget.acquire(600 << 10));
        assert!(
            whole.await.is_err(),
            "a spent budget makes the next frame wait"
        );
        drop(permit);
        let _larger_than_all = budget.acquire(10 << 20).await;
        assert_eq!(budget.available_bytes(), 0);
    }

    #[test]
    fn reading_a_large_frame_reserves_a_chunk_not_the_declared_size() {
        let mut buf = BytesMut::new();
        reserve_read(&mut buf, Some(100 << 20), 64 << 10);
        assert!(buf.capacity() < 1 << 20);
        buf.resize(RESERVE_WHOLE_FRAME_AFTER, 0);
        reserve_read(&mut buf, Some(100 << 20), 64 << 10);
        assert!(
            buf.capacity() >= 100 << 20,
            "past 1 MiB the rest is reserved at once"
        );
    }
}
