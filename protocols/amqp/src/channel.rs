//! Per-channel state: the delivery-tag counter and unacked map (shared with the channel's
//! consumer tasks), consumers, qos, confirm/tx mode and the message being assembled.
//!
//! Invariants: delivery tags are per channel, from 1, shared by `basic.deliver` and `get-ok`;
//! once `closed` is set under the deliveries lock no consumer task registers or sends another
//! delivery, so nothing reaches the client after `channel.close-ok`; every unacked delivery is
//! either acked, requeued, or requeued when the channel goes away.

use std::collections::{BTreeMap, HashMap};
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
    /// Kept only when the queue dead-letters, to re-publish a rejected message.
    pub record: Option<tributary_api::batch::Record>,
    /// Read from a stream: settling it only returns credit (`id` is the stream offset).
    pub stream: bool,
}

#[derive(Debug, Default)]
pub struct Deliveries {
    pub next_tag: u64,
    pub unacked: BTreeMap<u64, Unacked>,
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
        if multiple {
            let keys: Vec<u64> = if tag == 0 {
                self.unacked.keys().copied().collect()
            } else {
                if !self.unacked.contains_key(&tag) {
                    return None;
                }
                self.unacked.range(..=tag).map(|(k, _)| *k).collect()
            };
            Some(
                keys.iter()
                    .filter_map(|k| self.unacked.remove(k).map(|one| (*k, one)))
                    .collect(),
            )
        } else {
            self.unacked.remove(&tag).map(|one| vec![(tag, one)])
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

    /// Appends one body frame's payload.
    pub fn push(&mut self, payload: Bytes) {
        *self = match std::mem::take(self) {
            Self::Empty => Self::Whole(payload),
            Self::Whole(first) => {
                let mut parts = BytesMut::with_capacity(first.len() + payload.len());
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
            tx: false,
            reply_to: None,
            tx_work: TxWork::default(),
            pending: None,
        }
    }
}

/// Groups engine ids by queue, for one engine call per queue; stream deliveries have nothing
/// to settle in the engine and are left out.
pub fn by_queue<'a>(settled: impl IntoIterator<Item = &'a Unacked>) -> BTreeMap<&'a str, Vec<u64>> {
    let mut out: BTreeMap<&str, Vec<u64>> = BTreeMap::new();
    for one in settled.into_iter().filter(|one| !one.stream) {
        out.entry(&*one.queue).or_default().push(one.id);
    }
    out
}

/// Returns prefetch credit for settled deliveries.
pub fn return_credit<'a>(settled: impl IntoIterator<Item = &'a Unacked>) {
    for one in settled {
        if let Some(credit) = &one.credit {
            credit.release(1);
        }
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
}
