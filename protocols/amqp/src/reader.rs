//! Reads AMQP frames off the socket under the connection rules ([`tributary_api::guard`]).
//!
//! Invariants:
//! - the buffer holds at most one frame plus [`READ_CHUNK`]; it grows as bytes arrive, never to
//!   a declared size up front;
//! - a started frame must be whole within the listener's frame timeout, counted from its first
//!   byte; a wait for input also ends at the caller's idle limit (missed heartbeats, or silence
//!   with no channel open), counted from the last bytes received;
//! - a frame above the unbudgeted size takes its size from the broker's buffer budget before
//!   its body is read and gives it back once it is decoded.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tributary_api::ConnectionReader;
use tributary_api::guard::{
    self, BudgetPermit, CloseReason, ConnectionTimeouts, FrameClock, MemoryBudget,
};

use crate::codec::{self, Frame};
use crate::error::{self, AmqpError};
use crate::metrics as m;

/// Spare room a read asks for: enough for a window of small publishes in one read, so that
/// they are staged and stored together (one fsync) rather than a few at a time.
const READ_CHUNK: usize = 64 * 1024;

/// How long a wait for input may last before the connection is closed, and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IdleLimit {
    pub limit: Duration,
    /// [`CloseReason::Heartbeat`] also applies while a frame is in progress;
    /// [`CloseReason::Idle`] only between frames.
    pub reason: CloseReason,
}

/// Reads frames from the socket with a buffer of at most one frame plus [`READ_CHUNK`].
#[derive(Debug)]
pub struct FrameReader {
    read: ConnectionReader,
    buf: BytesMut,
    pub frame_max: u32,
    pub peer: SocketAddr,
    timeouts: ConnectionTimeouts,
    budget: MemoryBudget,
    clock: FrameClock,
    frame_budget: Option<BudgetPermit>,
}

impl FrameReader {
    pub fn new(
        read: ConnectionReader,
        frame_max: u32,
        peer: SocketAddr,
        timeouts: ConnectionTimeouts,
        budget: MemoryBudget,
    ) -> Self {
        Self {
            read,
            buf: BytesMut::with_capacity(8192),
            frame_max,
            peer,
            timeouts,
            budget,
            clock: FrameClock::new(),
            frame_budget: None,
        }
    }

    /// The listener's time limits.
    pub fn timeouts(&self) -> &ConnectionTimeouts {
        &self.timeouts
    }

    /// The frame size, framing included, that the buffered frame header declares.
    fn declared(&self) -> Option<usize> {
        let size = self.buf.get(3..7)?;
        let size = u32::from_be_bytes([size[0], size[1], size[2], size[3]]) as usize;
        Some(size.saturating_add(codec::FRAME_OVERHEAD))
    }

    /// Whether a whole frame is already buffered (so handling it needs no read).
    pub fn has_buffered_frame(&self) -> bool {
        self.declared()
            .is_some_and(|declared| self.buf.len() >= declared)
    }

    /// Whether the partial frame must take budget it does not hold before more is read.
    fn needs_budget(&self) -> Option<usize> {
        let declared = self.declared()?;
        (self.frame_budget.is_none()
            && MemoryBudget::applies_to(declared)
            && declared <= (self.frame_max as usize).saturating_add(codec::FRAME_OVERHEAD))
        .then_some(declared)
    }

    /// Whether a whole frame is buffered after taking, without waiting, what the socket already
    /// holds. Lets a connection stage every publish the client has already sent before storing
    /// them; a read error is left for the next blocking read to report.
    pub fn fill_ready(&mut self) -> bool {
        // Past one frame_max of buffered input the partial frame declares more than frame_max:
        // stop reading and let `next` refuse it, so a bogus length never grows the buffer.
        let limit = (self.frame_max as usize).saturating_add(codec::FRAME_OVERHEAD);
        while !self.has_buffered_frame() {
            if self.buf.len() >= limit {
                return true;
            }
            if self.needs_budget().is_some() {
                // `next` waits for the budget.
                return false;
            }
            let declared = self.declared();
            guard::reserve_read(&mut self.buf, declared, READ_CHUNK);
            match self.read.try_read_buf(&mut self.buf) {
                Ok(n) if n > 0 => {
                    self.clock.on_read();
                    metrics::counter!(m::BYTES_RECEIVED).increment(n as u64);
                }
                _ => return false,
            }
        }
        true
    }

    /// When the wait for input must end: the earliest of the frame deadline and `idle`.
    fn deadline(&self, idle: Option<IdleLimit>) -> Option<(Instant, CloseReason, Duration)> {
        let frame = self.clock.deadline(&self.timeouts, false);
        let idle = idle
            .filter(|idle| idle.reason == CloseReason::Heartbeat || frame.is_none())
            .map(|idle| {
                (
                    self.clock.idle_since() + idle.limit,
                    idle.reason,
                    idle.limit,
                )
            });
        match (frame, idle) {
            (Some(frame), Some(idle)) => Some(if idle.0 < frame.0 { idle } else { frame }),
            (frame, idle) => frame.or(idle),
        }
    }

    /// The next frame, `Ok(None)` at end of stream. A connection rule's deadline ends the wait
    /// with [`AmqpError::Expired`].
    pub async fn next(&mut self, idle: Option<IdleLimit>) -> Result<Option<Frame>, AmqpError> {
        loop {
            let declared = self.declared();
            match codec::decode_frame(&mut self.buf, self.frame_max) {
                Ok(Some(frame)) => {
                    self.clock.on_frame(self.buf.len());
                    guard::release_after_large_frame(&mut self.buf, declared.unwrap_or(0));
                    self.frame_budget = None;
                    return Ok(Some(frame));
                }
                Ok(None) => {}
                Err(e) => return Err(error::codec_error(&e)),
            }
            let deadline = self.deadline(idle);
            let expired = |deadline: Option<(Instant, CloseReason, Duration)>| match deadline {
                Some((_, reason, limit)) => AmqpError::Expired { reason, limit },
                None => AmqpError::Io(std::io::ErrorKind::TimedOut.into()),
            };
            if let Some(declared) = self.needs_budget() {
                tokio::select! {
                    permit = self.budget.acquire(declared) => self.frame_budget = Some(permit),
                    () = guard::sleep_until(deadline.map(|(at, _, _)| at)) => {
                        return Err(expired(deadline));
                    }
                }
            }
            let declared = self.declared();
            guard::reserve_read(&mut self.buf, declared, READ_CHUNK);
            let n = tokio::select! {
                read = self.read.read_buf(&mut self.buf) => read?,
                () = guard::sleep_until(deadline.map(|(at, _, _)| at)) => {
                    return Err(expired(deadline));
                }
            };
            if n == 0 {
                return Ok(None);
            }
            self.clock.on_read();
            metrics::counter!(m::BYTES_RECEIVED).increment(n as u64);
        }
    }
}
