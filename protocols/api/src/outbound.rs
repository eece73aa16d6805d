//! What a connection may hold for its peer: responses (or deliveries) queued for a socket that
//! the peer does not drain, and the per-connection cap frontends also apply to requests in
//! flight and to messages received in several frames.
//!
//! Invariants:
//! - every item queued on an [`Outbound`] holds its size from the connection's pool and from
//!   the broker-wide [`SendBudget`] until it is written or dropped (the [`SendPermit`] travels
//!   with the item, so items dropped unsent give their bytes back too);
//! - an item larger than a whole pool takes the whole pool when the pool is empty, so a legal
//!   item can always be queued, alone;
//! - when either pool is spent, [`Outbound::send`] waits (backpressure on whoever produces the
//!   output: a handler, a consumer task) instead of growing memory; the writer needs nothing
//!   from the pools to make progress, so a wait ends as soon as the socket drains;
//! - [`write_progressing`] fails with [`std::io::ErrorKind::TimedOut`] when the peer accepts no
//!   byte for the send timeout, so a peer that stops reading cannot hold its pools forever.

use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};

/// Bytes handed out up to a limit; waiters are woken when bytes come back.
#[derive(Debug)]
struct BytePool {
    used: AtomicU64,
    limit: u64,
    waiting: AtomicUsize,
    freed: Notify,
}

impl BytePool {
    fn new(limit: u64) -> Arc<Self> {
        Arc::new(Self {
            used: AtomicU64::new(0),
            limit: limit.max(1),
            waiting: AtomicUsize::new(0),
            freed: Notify::new(),
        })
    }

    /// Takes `bytes` if they fit, or if the pool is empty (an item larger than the pool).
    fn try_take(&self, bytes: u64) -> bool {
        let mut used = self.used.load(Ordering::Acquire);
        loop {
            if used != 0 && used.saturating_add(bytes) > self.limit {
                return false;
            }
            match self.used.compare_exchange_weak(
                used,
                used + bytes,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return true,
                Err(now) => used = now,
            }
        }
    }

    async fn take(&self, bytes: u64) {
        loop {
            let mut freed = pin!(self.freed.notified());
            // Registered before the check, so a give between the check and the await wakes it.
            freed.as_mut().enable();
            if self.try_take(bytes) {
                return;
            }
            self.waiting.fetch_add(1, Ordering::AcqRel);
            if self.try_take(bytes) {
                self.waiting.fetch_sub(1, Ordering::AcqRel);
                return;
            }
            freed.await;
            self.waiting.fetch_sub(1, Ordering::AcqRel);
        }
    }

    fn give(&self, bytes: u64) {
        self.used.fetch_sub(bytes, Ordering::AcqRel);
        if self.waiting.load(Ordering::Acquire) > 0 {
            self.freed.notify_waiters();
        }
    }

    fn used(&self) -> u64 {
        self.used.load(Ordering::Acquire)
    }
}

/// The broker-wide budget for output queued for sockets, shared by every listener.
#[derive(Debug, Clone)]
pub struct SendBudget {
    broker: Arc<BytePool>,
    per_connection: u64,
}

impl SendBudget {
    /// `broker_bytes` for all connections together, `per_connection_bytes` for each one.
    pub fn new(broker_bytes: u64, per_connection_bytes: u64) -> Self {
        Self {
            broker: BytePool::new(broker_bytes),
            per_connection: per_connection_bytes.max(1),
        }
    }

    /// The cap of one connection, in bytes (also what frontends allow a connection for
    /// requests in flight and partly received messages).
    pub fn per_connection_bytes(&self) -> u64 {
        self.per_connection
    }

    /// Bytes queued for sockets now, over all connections.
    pub fn queued_bytes(&self) -> u64 {
        self.broker.used()
    }
}

impl Default for SendBudget {
    /// The shell's defaults: `limits.send_buffer_bytes` 512 MiB, `limits.connection_buffer_bytes`
    /// 16 MiB.
    fn default() -> Self {
        Self::new(512 << 20, 16 << 20)
    }
}

/// Bytes held for one queued item; given back on drop.
#[derive(Debug)]
pub struct SendPermit {
    connection: Arc<BytePool>,
    broker: Arc<BytePool>,
    connection_bytes: u64,
    broker_bytes: u64,
}

impl Drop for SendPermit {
    fn drop(&mut self) {
        self.connection.give(self.connection_bytes);
        self.broker.give(self.broker_bytes);
    }
}

/// An item on its way to the socket, with the budget it holds.
#[derive(Debug)]
pub struct Queued<T> {
    pub item: T,
    pub permit: SendPermit,
}

/// The sending side of a connection's output queue: bounded by item count (the channel) and by
/// bytes (the connection's pool and the broker's [`SendBudget`]).
#[derive(Debug)]
pub struct Outbound<T> {
    queue: mpsc::Sender<Queued<T>>,
    connection: Arc<BytePool>,
    broker: Arc<BytePool>,
}

impl<T> Clone for Outbound<T> {
    fn clone(&self) -> Self {
        Self {
            queue: self.queue.clone(),
            connection: Arc::clone(&self.connection),
            broker: Arc::clone(&self.broker),
        }
    }
}

/// The queue was closed: the connection's writer is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the connection's writer is gone")]
pub struct WriterGone;

impl<T> Outbound<T> {
    /// A queue of at most `capacity` items and the budget's bytes for one connection.
    pub fn channel(capacity: usize, budget: &SendBudget) -> (Self, mpsc::Receiver<Queued<T>>) {
        let (queue, receiver) = mpsc::channel(capacity);
        let outbound = Self {
            queue,
            connection: BytePool::new(budget.per_connection),
            broker: Arc::clone(&budget.broker),
        };
        (outbound, receiver)
    }

    /// Queues `item` of `bytes` encoded bytes, waiting while the connection's or the broker's
    /// budget is spent or the queue is full.
    pub async fn send(&self, item: T, bytes: usize) -> Result<(), WriterGone> {
        if self.queue.is_closed() {
            return Err(WriterGone);
        }
        let bytes = bytes as u64;
        // The connection's pool first: a connection whose peer does not read waits on its own
        // pool and takes nothing more from the broker's.
        let connection_bytes = bytes.min(self.connection.limit);
        self.connection.take(connection_bytes).await;
        let broker_bytes = bytes.min(self.broker.limit);
        // Held from here, so a send cancelled while it waits gives back what it took.
        let mut permit = SendPermit {
            connection: Arc::clone(&self.connection),
            broker: Arc::clone(&self.broker),
            connection_bytes,
            broker_bytes: 0,
        };
        self.broker.take(broker_bytes).await;
        permit.broker_bytes = broker_bytes;
        self.queue
            .send(Queued { item, permit })
            .await
            .map_err(|_| WriterGone)
    }

    /// Queues `item` only if the queue and both budgets have room now (for output nobody
    /// waits for, such as a broker-initiated notification); returns whether it was queued.
    pub fn try_send(&self, item: T, bytes: usize) -> bool {
        let bytes = bytes as u64;
        let connection_bytes = bytes.min(self.connection.limit);
        if !self.connection.try_take(connection_bytes) {
            return false;
        }
        let mut permit = SendPermit {
            connection: Arc::clone(&self.connection),
            broker: Arc::clone(&self.broker),
            connection_bytes,
            broker_bytes: 0,
        };
        let broker_bytes = bytes.min(self.broker.limit);
        if !self.broker.try_take(broker_bytes) {
            return false;
        }
        permit.broker_bytes = broker_bytes;
        self.queue.try_send(Queued { item, permit }).is_ok()
    }

    /// Whether the writer is gone.
    pub fn is_closed(&self) -> bool {
        self.queue.is_closed()
    }

    /// Completes when the writer is gone (it failed, or timed out on a peer that stopped
    /// reading); for `select!` beside a connection's read.
    pub async fn closed(&self) {
        self.queue.closed().await;
    }

    /// Bytes this connection has queued and not yet written.
    pub fn queued_bytes(&self) -> u64 {
        self.connection.used()
    }
}

/// Writes all of `bytes`, failing with [`std::io::ErrorKind::TimedOut`] when one write accepts
/// nothing for `timeout` (the peer stopped reading); a slow peer that keeps reading is never cut.
pub async fn write_progressing<W: AsyncWrite + Unpin>(
    writer: &mut W,
    mut bytes: &[u8],
    timeout: Option<Duration>,
) -> std::io::Result<()> {
    let Some(timeout) = timeout else {
        return writer.write_all(bytes).await;
    };
    while !bytes.is_empty() {
        match progressed(writer.write(bytes), Some(timeout)).await? {
            0 => return Err(std::io::ErrorKind::WriteZero.into()),
            written => bytes = &bytes[written..],
        }
    }
    Ok(())
}

/// One write's outcome, or [`SendTimedOut`] when it accepted nothing for `timeout`.
async fn progressed(
    write: impl Future<Output = std::io::Result<usize>>,
    timeout: Option<Duration>,
) -> std::io::Result<usize> {
    let Some(timeout) = timeout else {
        return write.await;
    };
    tokio::time::timeout(timeout, write)
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, SendTimedOut(timeout)))?
}

/// [`write_progressing`] for several buffers written in order with vectored writes, so pieces
/// that were never joined (a large message body sliced out of the log) go out without a copy.
pub async fn write_pieces_progressing<W: AsyncWrite + Unpin>(
    writer: &mut W,
    pieces: &[bytes::Bytes],
    timeout: Option<Duration>,
) -> std::io::Result<()> {
    let mut index = 0;
    let mut within = 0;
    while index < pieces.len() {
        let slices: Vec<std::io::IoSlice<'_>> = pieces[index..]
            .iter()
            .enumerate()
            .map(|(at, piece)| match at {
                0 => std::io::IoSlice::new(&piece[within..]),
                _ => std::io::IoSlice::new(piece),
            })
            .collect();
        let written = progressed(writer.write_vectored(&slices), timeout).await?;
        let total: usize = slices.iter().map(|slice| slice.len()).sum();
        if written == 0 && total > 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        // Steps over what was written: whole pieces, then into the one cut short.
        let mut left = written;
        while index < pieces.len() && left >= pieces[index].len() - within {
            left -= pieces[index].len() - within;
            index += 1;
            within = 0;
        }
        within += left;
    }
    Ok(())
}

/// The error inside a [`write_progressing`] timeout, naming the limit.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the peer accepted no bytes for {0:?}")]
pub struct SendTimedOut(pub Duration);

impl SendTimedOut {
    /// The limit that ran out, when `err` is a [`write_progressing`] timeout.
    pub fn of(err: &std::io::Error) -> Option<Duration> {
        err.get_ref()
            .and_then(|inner| inner.downcast_ref::<Self>())
            .map(|timed_out| timed_out.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_connection_waits_on_its_own_pool_and_bytes_come_back_on_write_or_drop() {
        let budget = SendBudget::new(1 << 20, 100);
        let (out, mut queue) = Outbound::<u32>::channel(16, &budget);
        out.send(1, 60).await.expect("fits");
        assert_eq!(out.queued_bytes(), 60);
        assert_eq!(budget.queued_bytes(), 60);
        let blocked = tokio::time::timeout(Duration::from_millis(50), out.send(2, 60));
        assert!(blocked.await.is_err(), "120 bytes do not fit in 100");
        let first = queue.recv().await.expect("queued");
        assert_eq!(first.item, 1);
        drop(first);
        assert_eq!(budget.queued_bytes(), 0);
        out.send(3, 60).await.expect("fits again");
        drop(queue);
        assert_eq!(
            budget.queued_bytes(),
            0,
            "items dropped unsent give their bytes back"
        );
        assert_eq!(out.send(4, 1).await, Err(WriterGone));
    }

    #[tokio::test]
    async fn an_item_larger_than_the_pool_goes_alone() {
        let budget = SendBudget::new(1 << 20, 100);
        let (out, mut queue) = Outbound::<u32>::channel(16, &budget);
        out.send(1, 1000)
            .await
            .expect("an empty pool takes anything");
        let waiting = {
            let out = out.clone();
            tokio::spawn(async move { out.send(2, 1).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiting.is_finished(), "nothing fits beside a whole pool");
        drop(queue.recv().await);
        waiting.await.expect("joined").expect("sent once freed");
    }

    #[tokio::test]
    async fn the_broker_pool_is_shared_by_connections() {
        let budget = SendBudget::new(100, 100);
        let (first, _first_queue) = Outbound::<u32>::channel(16, &budget);
        let (second, _second_queue) = Outbound::<u32>::channel(16, &budget);
        first.send(1, 80).await.expect("fits");
        let blocked = tokio::time::timeout(Duration::from_millis(50), second.send(2, 80));
        assert!(blocked.await.is_err(), "the broker's 100 bytes are spent");
    }

    #[tokio::test]
    async fn a_peer_that_reads_nothing_times_out() {
        let (mut ours, _theirs) = tokio::io::duplex(64);
        let err = write_progressing(&mut ours, &[0; 4096], Some(Duration::from_millis(50)))
            .await
            .expect_err("the duplex buffer fills");
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut);
        assert_eq!(SendTimedOut::of(&err), Some(Duration::from_millis(50)));
    }

    /// Accepts at most `step` bytes per write, gathered across the buffers it is given.
    struct Trickle {
        written: Vec<u8>,
        step: usize,
    }

    impl AsyncWrite for Trickle {
        fn poll_write(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let this = self.get_mut();
            let n = buf.len().min(this.step);
            this.written.extend_from_slice(&buf[..n]);
            std::task::Poll::Ready(Ok(n))
        }

        fn poll_write_vectored(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
            bufs: &[std::io::IoSlice<'_>],
        ) -> std::task::Poll<std::io::Result<usize>> {
            let this = self.get_mut();
            let mut left = this.step;
            for buf in bufs {
                let n = buf.len().min(left);
                this.written.extend_from_slice(&buf[..n]);
                left -= n;
            }
            std::task::Poll::Ready(Ok(this.step - left))
        }

        fn is_write_vectored(&self) -> bool {
            true
        }

        fn poll_flush(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }

        fn poll_shutdown(
            self: std::pin::Pin<&mut Self>,
            _: &mut std::task::Context<'_>,
        ) -> std::task::Poll<std::io::Result<()>> {
            std::task::Poll::Ready(Ok(()))
        }
    }

    #[tokio::test]
    async fn pieces_are_written_whole_and_in_order_through_short_writes() {
        let pieces: Vec<bytes::Bytes> = ["abc", "", "defghij", "k", "", "lmnopqrstu"]
            .into_iter()
            .map(|piece: &'static str| bytes::Bytes::from_static(piece.as_bytes()))
            .collect();
        for step in [1, 2, 3, 5, 7, 100] {
            let mut out = Trickle {
                written: Vec::new(),
                step,
            };
            write_pieces_progressing(&mut out, &pieces, Some(Duration::from_secs(1)))
                .await
                .expect("written");
            assert_eq!(
                out.written, b"abcdefghijklmnopqrstu",
                "{step} bytes per write"
            );
        }
    }

    #[tokio::test]
    async fn pieces_for_a_peer_that_reads_nothing_time_out() {
        let (mut ours, _theirs) = tokio::io::duplex(64);
        let pieces = [bytes::Bytes::from_static(&[0; 4096])];
        let err = write_pieces_progressing(&mut ours, &pieces, Some(Duration::from_millis(50)))
            .await
            .expect_err("the duplex buffer fills");
        assert_eq!(SendTimedOut::of(&err), Some(Duration::from_millis(50)));
    }
}
