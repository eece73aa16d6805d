//! Per-channel state: the delivery-tag counter and unacked map (shared with the channel's
//! consumer tasks), consumers, qos, confirm/tx mode and the message being assembled.
//!
//! Invariants: delivery tags are per channel, from 1, shared by `basic.deliver` and `get-ok`;
//! once `closed` is set under the deliveries lock no consumer task registers or sends another
//! delivery, so nothing reaches the client after `channel.close-ok`; every unacked delivery is
//! either acked, requeued, or requeued when the channel goes away.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::codec::content::{BasicProperties, ContentHeader};
use crate::codec::methods::MethodId;
use crate::credit::Credit;

/// One delivered, unacknowledged message.
#[derive(Debug, Clone)]
pub struct Unacked {
    /// Shared with the consumer (one allocation per consumer, not per delivery).
    pub queue: Arc<str>,
    /// The engine's delivery id (the record offset in the queue log).
    pub id: u64,
    /// The consumer's prefetch credit, returned on settle.
    pub credit: Option<Arc<Credit>>,
    /// Kept only when the queue dead-letters, to re-publish a rejected message (boxed: the
    /// unacked set moves entries, and most have none).
    pub record: Option<Box<tributary_api::batch::Record>>,
    /// Read from a stream: settling it only returns credit (`id` is the stream offset).
    pub stream: bool,
}

/// A channel's unacknowledged deliveries in tag order.
///
/// Tags are handed out increasing and are mostly settled oldest first, so a deque sorted by
/// tag makes the usual insert (at the back) and settle (at the front, or a prefix with
/// `multiple`) cheap; a tag put back by `tx.rollback` is inserted at its place.
#[derive(Debug, Default)]
pub struct UnackedSet {
    entries: VecDeque<(u64, Unacked)>,
}

impl UnackedSet {
    pub fn insert(&mut self, tag: u64, one: Unacked) {
        match self.entries.back() {
            Some((last, _)) if *last >= tag => match self.position(tag) {
                Ok(at) => self.entries[at].1 = one,
                Err(at) => self.entries.insert(at, (tag, one)),
            },
            _ => self.entries.push_back((tag, one)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry, oldest first, leaving the set empty.
    pub fn take_all(&mut self) -> Vec<(u64, Unacked)> {
        std::mem::take(&mut self.entries).into()
    }

    fn position(&self, tag: u64) -> Result<usize, usize> {
        self.entries.binary_search_by_key(&tag, |(t, _)| *t)
    }
}

#[derive(Debug, Default)]
pub struct Deliveries {
    pub next_tag: u64,
    pub unacked: UnackedSet,
    pub closed: bool,
}

impl Deliveries {
    /// The next delivery tag.
    pub fn tag(&mut self) -> u64 {
        self.next_tag += 1;
        self.next_tag
    }

    /// Removes the deliveries a settle method names: one tag, or every tag up to it with
    /// `multiple` (tag 0 with `multiple` = all). `None` if a named tag is unknown.
    pub fn settle(&mut self, tag: u64, multiple: bool) -> Option<Vec<(u64, Unacked)>> {
        if multiple && tag == 0 {
            return Some(self.unacked.take_all());
        }
        let at = self.unacked.position(tag).ok()?;
        let entries = &mut self.unacked.entries;
        if multiple {
            Some(entries.drain(..=at).collect())
        } else {
            entries.remove(at).map(|one| vec![one])
        }
    }
}

pub type SharedDeliveries = Arc<Mutex<Deliveries>>;

/// A running consumer.
#[derive(Debug)]
pub struct ConsumerHandle {
    /// Broker-wide consumer id (single-active-consumer bookkeeping).
    pub id: u64,
    pub queue: String,
    pub cancel: CancellationToken,
    pub task: JoinHandle<()>,
    /// Its prefetch credit (`None` for no-ack consumers); `basic.qos` resizes it.
    pub credit: Option<Arc<Credit>>,
}

/// A `basic.publish` whose content is still arriving.
#[derive(Debug)]
pub struct PendingPublish {
    pub exchange: String,
    pub routing_key: String,
    pub mandatory: bool,
    pub method: MethodId,
    pub header: Option<(ContentHeader, BasicProperties)>,
    pub body: PendingBody,
    /// The declared body size, counted in the connection's [`PartialBytes`] until the
    /// message is complete or dropped.
    pub held: Option<PartialHold>,
}

/// Bytes of message bodies a connection has announced (content header) and not finished,
/// over all its channels: a connection may not hold more than its buffer cap in partly
/// received messages, however many channels it opens.
#[derive(Debug, Clone)]
pub struct PartialBytes {
    declared: Arc<std::sync::atomic::AtomicU64>,
    cap: u64,
}

/// One message's share of [`PartialBytes`]; given back on drop.
#[derive(Debug)]
pub struct PartialHold {
    declared: Arc<std::sync::atomic::AtomicU64>,
    bytes: u64,
}

impl PartialBytes {
    pub fn new(cap: u64) -> Self {
        Self {
            declared: Arc::default(),
            cap,
        }
    }

    /// Counts a body of `bytes`, or `None` when it would take the connection over its cap
    /// (a body alone is always allowed: the message size limit bounds it).
    pub fn hold(&self, bytes: u64) -> Option<PartialHold> {
        use std::sync::atomic::Ordering;
        let before = self.declared.fetch_add(bytes, Ordering::AcqRel);
        if before != 0 && before.saturating_add(bytes) > self.cap {
            self.declared.fetch_sub(bytes, Ordering::AcqRel);
            return None;
        }
        Some(PartialHold {
            declared: Arc::clone(&self.declared),
            bytes,
        })
    }

    pub fn cap(&self) -> u64 {
        self.cap
    }
}

impl Drop for PartialHold {
    fn drop(&mut self) {
        self.declared
            .fetch_sub(self.bytes, std::sync::atomic::Ordering::AcqRel);
    }
}

/// A message body as its frames arrive: a body sent in one frame keeps the read buffer's
/// slice (no copy); only a body of several frames is assembled in a buffer of its own.
#[derive(Debug, Default)]
pub enum PendingBody {
    #[default]
    Empty,
    Whole(Bytes),
    Parts(BytesMut),
}

impl PendingBody {
    pub fn len(&self) -> usize {
        match self {
            Self::Empty => 0,
            Self::Whole(bytes) => bytes.len(),
            Self::Parts(parts) => parts.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends one body frame's payload to a body of `declared` bytes in all (the content
    /// header's size, already checked against the limit): the buffer is allocated once at
    /// that size, so a large body is never copied while it grows.
    pub fn push(&mut self, payload: Bytes, declared: usize) {
        *self = match std::mem::take(self) {
            Self::Empty => Self::Whole(payload),
            Self::Whole(first) => {
                let mut parts = BytesMut::with_capacity(declared.max(first.len() + payload.len()));
                parts.extend_from_slice(&first);
                parts.extend_from_slice(&payload);
                Self::Parts(parts)
            }
            Self::Parts(mut parts) => {
                parts.extend_from_slice(&payload);
                Self::Parts(parts)
            }
        };
    }

    pub fn freeze(self) -> Bytes {
        match self {
            Self::Empty => Bytes::new(),
            Self::Whole(bytes) => bytes,
            Self::Parts(parts) => parts.freeze(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelState {
    Open,
    /// The server sent `channel.close`; everything but close/close-ok is dropped.
    Closing,
}

#[derive(Debug)]
pub struct Channel {
    pub state: ChannelState,
    pub deliveries: SharedDeliveries,
    pub consumers: HashMap<String, ConsumerHandle>,
    /// Prefetch of the channel's consumers: new ones start with it, and `basic.qos` applies it
    /// to the running ones too (see `crate::credit`).
    pub prefetch_count: u16,
    /// The channel-wide prefetch (`basic.qos global=true`; 0 = none) and the credit every
    /// acking consumer of the channel also draws on.
    pub global_prefetch_count: u16,
    pub channel_credit: Arc<Credit>,
    pub confirm: bool,
    /// Publish sequence number in confirm mode (from 1 over all publishes).
    pub publish_seq: u64,
    /// Every publish up to this sequence number is confirmed (acked or nacked): confirms
    /// above it may be coalesced (see `crate::handlers::confirms`).
    pub confirmed_seq: u64,
    pub tx: bool,
    /// The direct reply-to consumer: its tag and the channel's token.
    pub reply_to: Option<(String, String)>,
    /// Work held back until `tx.commit` (transactional channels only).
    pub tx_work: TxWork,
    pub pending: Option<PendingPublish>,
}

/// Publishes and settles of an open transaction.
#[derive(Debug, Default)]
pub struct TxWork {
    /// Routed messages: the target queues and the batch to enqueue in each.
    pub publishes: Vec<Vec<(String, tributary_api::batch::Record)>>,
    /// Settled deliveries with their tags and the settle kind (`None` = ack, `Some(requeue)`).
    pub settles: Vec<(u64, Unacked, Option<bool>)>,
}

impl Default for Channel {
    fn default() -> Self {
        Self {
            state: ChannelState::Open,
            deliveries: Arc::new(Mutex::new(Deliveries::default())),
            consumers: HashMap::new(),
            prefetch_count: 0,
            global_prefetch_count: 0,
            channel_credit: Arc::new(Credit::new(0)),
            confirm: false,
            publish_seq: 0,
            confirmed_seq: 0,
            tx: false,
            reply_to: None,
            tx_work: TxWork::default(),
            pending: None,
        }
    }
}

/// Groups engine ids by queue, in first-seen order, for one engine call per queue; stream
/// deliveries have nothing to settle in the engine and are left out. A channel settles on few
/// queues at once, so a list beats a map here.
pub fn by_queue<'a>(settled: impl IntoIterator<Item = &'a Unacked>) -> Vec<(&'a str, Vec<u64>)> {
    let mut out: Vec<(&str, Vec<u64>)> = Vec::new();
    for one in settled.into_iter().filter(|one| !one.stream) {
        match out.iter_mut().find(|(queue, _)| *queue == &*one.queue) {
            Some((_, ids)) => ids.push(one.id),
            None => out.push((&one.queue, vec![one.id])),
        }
    }
    out
}

/// Returns prefetch credit for settled deliveries, one release per run of deliveries of the
/// same consumer (each release takes the semaphore's lock and may wake the consumer).
pub fn return_credit<'a>(settled: impl IntoIterator<Item = &'a Unacked>) {
    let mut run: Option<(&Arc<Credit>, usize)> = None;
    for credit in settled.into_iter().filter_map(|one| one.credit.as_ref()) {
        match &mut run {
            Some((current, count)) if Arc::ptr_eq(current, credit) => *count += 1,
            _ => {
                if let Some((current, count)) = run.replace((credit, 1)) {
                    current.release(count);
                }
            }
        }
    }
    if let Some((current, count)) = run {
        current.release(count);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unacked(id: u64) -> Unacked {
        Unacked {
            queue: "q".into(),
            id,
            credit: None,
            record: None,
            stream: false,
        }
    }

    #[test]
    fn settle_single_multiple_and_all() {
        let mut d = Deliveries::default();
        for id in 0..5 {
            let tag = d.tag();
            d.unacked.insert(tag, unacked(id));
        }
        assert!(d.settle(9, false).is_none());
        assert_eq!(d.settle(2, false).map(|v| v.len()), Some(1));
        assert!(d.settle(2, true).is_none(), "tag 2 is already settled");
        let upto3 = d.settle(3, true).unwrap();
        assert_eq!(
            upto3
                .iter()
                .map(|(tag, u)| (*tag, u.id))
                .collect::<Vec<_>>(),
            vec![(1, 0), (3, 2)]
        );
        assert_eq!(d.settle(0, true).map(|v| v.len()), Some(2));
        assert!(d.unacked.is_empty());
    }

    #[test]
    fn a_tag_put_back_goes_to_its_place() {
        let mut d = Deliveries::default();
        for id in 0..4 {
            let tag = d.tag();
            d.unacked.insert(tag, unacked(id));
        }
        let taken = d.settle(2, false).unwrap();
        let first = d.settle(1, false).unwrap();
        // As tx.rollback does: back in, out of order.
        for (tag, one) in taken.into_iter().chain(first) {
            d.unacked.insert(tag, one);
        }
        let all = d.settle(4, true).unwrap();
        assert_eq!(
            all.iter().map(|(tag, _)| *tag).collect::<Vec<_>>(),
            [1, 2, 3, 4]
        );
        assert!(d.settle(1, false).is_none());
    }

    #[test]
    fn credit_comes_back_per_delivery_across_consumers() {
        let first = Arc::new(Credit::new(3));
        let second = Arc::new(Credit::new(3));
        let with = |credit: &Arc<Credit>| Unacked {
            credit: Some(credit.clone()),
            ..unacked(0)
        };
        assert_eq!(first.try_take(3), 3);
        assert_eq!(second.try_take(3), 3);
        let settled = [with(&first), with(&first), with(&second), with(&first)];
        return_credit(&settled);
        assert_eq!(first.try_take(5), 3);
        assert_eq!(second.try_take(5), 1);
    }
}
