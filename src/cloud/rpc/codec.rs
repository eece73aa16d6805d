//! The frames of the brokers' internal RPC ([`super`]): parse and encode only, no I/O.
//!
//! A frame is `u32 length` (of what follows, big-endian) then `u8 kind`, `u64 request id` and a
//! body. Kinds: `HELLO` (the first frame a client sends: its broker id and the cluster secret),
//! `WELCOME` (the server's answer), `REQUEST` and `RESPONSE` (matched by request id, so many
//! calls share one connection). Strings are `u16 length` + UTF-8, byte strings `u32 length` +
//! bytes, optional byte strings `i32 length` with -1 for none.
//!
//! Invariants: a length is checked against [`MAX_FRAME_BYTES`] before anything is buffered for
//! the frame, and every count inside a body against the bytes left before a vector is
//! allocated (each element takes at least one byte), so a peer cannot make the decoder allocate
//! more than the frame it sent; an unknown kind, operation or tag is an error, never a panic.

use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use tributary_api::batch::Record;

use super::outgoing::Outgoing;
use tributary_api::{
    AppendOutcome, Delivery, Durability, HeadFilter, HeadTake, QueueDepth, QueueOptions,
};

/// Largest frame accepted (length prefix excluded): a batch of the largest message size plus
/// room, or a take of many messages.
pub const MAX_FRAME_BYTES: usize = 64 << 20;

const KIND_HELLO: u8 = 1;
const KIND_WELCOME: u8 = 2;
const KIND_REQUEST: u8 = 3;
const KIND_RESPONSE: u8 = 4;

/// Bytes of the frame header after the length: kind and request id.
const HEADER_BYTES: usize = 1 + 8;

/// Why bytes are not a valid frame.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CodecError {
    #[error("frame of {0} bytes is over the {MAX_FRAME_BYTES}-byte limit")]
    TooLarge(usize),
    #[error("frame of {0} bytes is shorter than its header")]
    TooShort(usize),
    #[error("unknown frame kind {0}")]
    UnknownKind(u8),
    #[error("unknown {what} {tag}")]
    UnknownTag { what: &'static str, tag: u8 },
    #[error("frame body ends inside {0}")]
    Truncated(&'static str),
    #[error("{0} bytes left over after the frame body")]
    Trailing(usize),
    #[error("a string is not UTF-8")]
    NotUtf8,
    #[error("a value does not fit its field")]
    OutOfRange,
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    Hello {
        broker_id: u32,
        secret: Bytes,
    },
    Welcome,
    Request {
        id: u64,
        request: Request,
    },
    Response {
        id: u64,
        reply: Result<Reply, WireError>,
    },
}

/// What one broker asks the broker that runs a queue or leads a partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Declare {
        queue: String,
        options: QueueOptions,
    },
    Delete {
        queue: String,
    },
    Purge {
        queue: String,
    },
    Enqueue {
        queue: String,
        batch: Bytes,
    },
    Take {
        queue: String,
        max: u32,
    },
    TakeHead {
        queue: String,
        max: u32,
        filter: HeadFilter,
    },
    WaitReady {
        queue: String,
        timeout: Duration,
    },
    Ack {
        queue: String,
        ids: Vec<u64>,
    },
    Requeue {
        queue: String,
        ids: Vec<u64>,
    },
    Depth {
        queue: String,
    },
    /// An append to a partition the receiver leads (AMQP and RocketMQ frontends).
    Append {
        topic: String,
        partition: u32,
        batch: Bytes,
    },
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Depth(QueueDepth),
    Count(u64),
    Appended(AppendOutcome),
    Deliveries(Vec<Delivery>),
    HeadTake(HeadTake),
    Ready(bool),
    Done,
}

/// A failed call, as much of the engine error as the caller acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    UnknownQueue(String),
    UnknownDelivery(u64),
    InvalidName(String),
    UnknownTopic(String),
    BatchTooLarge {
        size: u64,
        limit: u64,
    },
    ShuttingDown,
    /// Anything else: retriable on the caller's side (another owner, a database hiccup).
    Unavailable(String),
}

/// Splits one whole frame off `buf`: `Ok(None)` until all of it arrived. The length is
/// checked before the frame is buffered.
pub fn decode_frame(buf: &mut BytesMut) -> Result<Option<Frame>, CodecError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(CodecError::TooLarge(len));
    }
    if len < HEADER_BYTES {
        return Err(CodecError::TooShort(len));
    }
    if buf.len() < 4 + len {
        buf.reserve(4 + len - buf.len());
        return Ok(None);
    }
    buf.advance(4);
    let mut body = buf.split_to(len).freeze();
    let kind = body.get_u8();
    let id = body.get_u64();
    let frame = match kind {
        KIND_HELLO => Frame::Hello {
            broker_id: get_u32(&mut body, "broker id")?,
            secret: get_bytes(&mut body, "secret")?,
        },
        KIND_WELCOME => Frame::Welcome,
        KIND_REQUEST => Frame::Request {
            id,
            request: decode_request(&mut body)?,
        },
        KIND_RESPONSE => Frame::Response {
            id,
            reply: decode_reply(&mut body)?,
        },
        other => return Err(CodecError::UnknownKind(other)),
    };
    if body.has_remaining() {
        return Err(CodecError::Trailing(body.remaining()));
    }
    Ok(Some(frame))
}

/// Appends `frame` to `out`, length prefix included; large byte strings are not copied
/// ([`Outgoing`]).
pub fn encode_frame(frame: &Frame, out: &mut Outgoing) -> Result<(), CodecError> {
    let start = out.len();
    let prefix = out.mark();
    match frame {
        Frame::Hello { broker_id, secret } => {
            out.put_u8(KIND_HELLO);
            out.put_u64(0);
            out.put_u32(*broker_id);
            put_bytes(out, secret)?;
        }
        Frame::Welcome => {
            out.put_u8(KIND_WELCOME);
            out.put_u64(0);
        }
        Frame::Request { id, request } => {
            out.put_u8(KIND_REQUEST);
            out.put_u64(*id);
            encode_request(request, out)?;
        }
        Frame::Response { id, reply } => {
            out.put_u8(KIND_RESPONSE);
            out.put_u64(*id);
            encode_reply(reply, out)?;
        }
    }
    let len = out.len() - start - 4;
    if len > MAX_FRAME_BYTES {
        out.truncate_to(prefix);
        return Err(CodecError::TooLarge(len));
    }
    out.patch_u32(prefix, len as u32);
    Ok(())
}

fn encode_request(request: &Request, out: &mut Outgoing) -> Result<(), CodecError> {
    match request {
        Request::Declare { queue, options } => {
            out.put_u8(1);
            put_str(out, queue)?;
            out.put_u8(u8::from(options.durable));
            match options.durability {
                None => out.put_u8(0),
                Some(Durability::Always) => out.put_u8(1),
                Some(Durability::Interval(every)) => {
                    out.put_u8(2);
                    out.put_u64(u64::try_from(every.as_millis()).unwrap_or(u64::MAX));
                }
                Some(Durability::Never) => out.put_u8(3),
            }
            match options.max_priority {
                None => out.put_u8(0),
                Some(max) => {
                    out.put_u8(1);
                    out.put_u8(max);
                }
            }
            out.put_u8(u8::from(options.count_bytes));
        }
        Request::Delete { queue } => queue_op(out, 2, queue)?,
        Request::Purge { queue } => queue_op(out, 3, queue)?,
        Request::Enqueue { queue, batch } => {
            queue_op(out, 4, queue)?;
            put_bytes(out, batch)?;
        }
        Request::Take { queue, max } => {
            queue_op(out, 5, queue)?;
            out.put_u32(*max);
        }
        Request::TakeHead { queue, max, filter } => {
            queue_op(out, 6, queue)?;
            out.put_u32(*max);
            match filter {
                HeadFilter::All => out.put_u8(0),
                HeadFilter::HeaderAtMost { header, at_most } => {
                    out.put_u8(1);
                    put_bytes(out, header)?;
                    out.put_i64(*at_most);
                }
            }
        }
        Request::WaitReady { queue, timeout } => {
            queue_op(out, 7, queue)?;
            out.put_u64(u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX));
        }
        Request::Ack { queue, ids } => {
            queue_op(out, 8, queue)?;
            put_ids(out, ids)?;
        }
        Request::Requeue { queue, ids } => {
            queue_op(out, 9, queue)?;
            put_ids(out, ids)?;
        }
        Request::Depth { queue } => queue_op(out, 10, queue)?,
        Request::Append {
            topic,
            partition,
            batch,
        } => {
            queue_op(out, 11, topic)?;
            out.put_u32(*partition);
            put_bytes(out, batch)?;
        }
    }
    Ok(())
}

fn decode_request(body: &mut Bytes) -> Result<Request, CodecError> {
    let op = get_u8(body, "operation")?;
    let queue = get_str(body, "queue name")?;
    Ok(match op {
        1 => {
            let durable = get_u8(body, "durable flag")? != 0;
            let durability = match get_u8(body, "durability")? {
                0 => None,
                1 => Some(Durability::Always),
                2 => Some(Durability::Interval(Duration::from_millis(get_u64(
                    body, "interval",
                )?))),
                3 => Some(Durability::Never),
                tag => {
                    return Err(CodecError::UnknownTag {
                        what: "durability",
                        tag,
                    });
                }
            };
            let max_priority = match get_u8(body, "priority flag")? {
                0 => None,
                _ => Some(get_u8(body, "max priority")?),
            };
            let count_bytes = get_u8(body, "count-bytes flag")? != 0;
            Request::Declare {
                queue,
                options: QueueOptions {
                    durable,
                    durability,
                    max_priority,
                    count_bytes,
                },
            }
        }
        2 => Request::Delete { queue },
        3 => Request::Purge { queue },
        4 => Request::Enqueue {
            queue,
            batch: get_bytes(body, "batch")?,
        },
        5 => Request::Take {
            queue,
            max: get_u32(body, "max")?,
        },
        6 => {
            let max = get_u32(body, "max")?;
            let filter = match get_u8(body, "filter")? {
                0 => HeadFilter::All,
                1 => HeadFilter::HeaderAtMost {
                    header: get_bytes(body, "filter header")?,
                    at_most: get_u64(body, "filter bound")? as i64,
                },
                tag => {
                    return Err(CodecError::UnknownTag {
                        what: "head filter",
                        tag,
                    });
                }
            };
            Request::TakeHead { queue, max, filter }
        }
        7 => Request::WaitReady {
            queue,
            timeout: Duration::from_millis(get_u64(body, "timeout")?),
        },
        8 => Request::Ack {
            queue,
            ids: get_ids(body)?,
        },
        9 => Request::Requeue {
            queue,
            ids: get_ids(body)?,
        },
        10 => Request::Depth { queue },
        11 => Request::Append {
            topic: queue,
            partition: get_u32(body, "partition")?,
            batch: get_bytes(body, "batch")?,
        },
        tag => {
            return Err(CodecError::UnknownTag {
                what: "operation",
                tag,
            });
        }
    })
}

fn encode_reply(reply: &Result<Reply, WireError>, out: &mut Outgoing) -> Result<(), CodecError> {
    match reply {
        Ok(Reply::Depth(depth)) => {
            out.put_u8(1);
            out.put_u64(depth.ready);
            out.put_u64(depth.unacked);
            out.put_u64(depth.ready_bytes);
        }
        Ok(Reply::Count(count)) => {
            out.put_u8(2);
            out.put_u64(*count);
        }
        Ok(Reply::Appended(outcome)) => {
            out.put_u8(3);
            out.put_i64(outcome.base_offset);
            out.put_i64(outcome.last_offset);
            out.put_i64(outcome.log_append_time);
            out.put_i64(outcome.log_start);
        }
        Ok(Reply::Deliveries(deliveries)) => {
            out.put_u8(4);
            put_deliveries(out, deliveries)?;
        }
        Ok(Reply::HeadTake(take)) => {
            out.put_u8(5);
            put_deliveries(out, &take.taken)?;
            match &take.head {
                None => out.put_u8(0),
                Some(record) => {
                    out.put_u8(1);
                    put_record(out, record)?;
                }
            }
        }
        Ok(Reply::Ready(ready)) => {
            out.put_u8(6);
            out.put_u8(u8::from(*ready));
        }
        Ok(Reply::Done) => out.put_u8(7),
        Err(error) => {
            out.put_u8(0x80);
            match error {
                WireError::UnknownQueue(name) => {
                    out.put_u8(1);
                    put_str(out, name)?;
                }
                WireError::UnknownDelivery(id) => {
                    out.put_u8(2);
                    out.put_u64(*id);
                }
                WireError::InvalidName(name) => {
                    out.put_u8(3);
                    put_str(out, name)?;
                }
                WireError::UnknownTopic(name) => {
                    out.put_u8(4);
                    put_str(out, name)?;
                }
                WireError::BatchTooLarge { size, limit } => {
                    out.put_u8(5);
                    out.put_u64(*size);
                    out.put_u64(*limit);
                }
                WireError::ShuttingDown => out.put_u8(6),
                WireError::Unavailable(reason) => {
                    out.put_u8(7);
                    // A reason is for logs: cut rather than fail the answer.
                    let cut = floor_char_boundary(reason, usize::from(u16::MAX));
                    put_str(out, &reason[..cut])?;
                }
            }
        }
    }
    Ok(())
}

fn decode_reply(body: &mut Bytes) -> Result<Result<Reply, WireError>, CodecError> {
    Ok(Ok(match get_u8(body, "reply")? {
        1 => Reply::Depth(QueueDepth {
            ready: get_u64(body, "depth")?,
            unacked: get_u64(body, "depth")?,
            ready_bytes: get_u64(body, "depth")?,
        }),
        2 => Reply::Count(get_u64(body, "count")?),
        3 => Reply::Appended(AppendOutcome {
            base_offset: get_u64(body, "offset")? as i64,
            last_offset: get_u64(body, "offset")? as i64,
            log_append_time: get_u64(body, "append time")? as i64,
            log_start: get_u64(body, "log start")? as i64,
        }),
        4 => Reply::Deliveries(get_deliveries(body)?),
        5 => {
            let taken = get_deliveries(body)?;
            let head = match get_u8(body, "head flag")? {
                0 => None,
                _ => Some(get_record(body)?),
            };
            Reply::HeadTake(HeadTake { taken, head })
        }
        6 => Reply::Ready(get_u8(body, "ready flag")? != 0),
        7 => Reply::Done,
        0x80 => {
            return Ok(Err(match get_u8(body, "error")? {
                1 => WireError::UnknownQueue(get_str(body, "queue name")?),
                2 => WireError::UnknownDelivery(get_u64(body, "delivery id")?),
                3 => WireError::InvalidName(get_str(body, "name")?),
                4 => WireError::UnknownTopic(get_str(body, "topic")?),
                5 => WireError::BatchTooLarge {
                    size: get_u64(body, "size")?,
                    limit: get_u64(body, "limit")?,
                },
                6 => WireError::ShuttingDown,
                7 => WireError::Unavailable(get_str(body, "reason")?),
                tag => return Err(CodecError::UnknownTag { what: "error", tag }),
            }));
        }
        tag => return Err(CodecError::UnknownTag { what: "reply", tag }),
    }))
}

fn floor_char_boundary(text: &str, max: usize) -> usize {
    let mut cut = text.len().min(max);
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    cut
}

fn queue_op(out: &mut Outgoing, op: u8, queue: &str) -> Result<(), CodecError> {
    out.put_u8(op);
    put_str(out, queue)
}

fn put_str(out: &mut Outgoing, text: &str) -> Result<(), CodecError> {
    let len = u16::try_from(text.len()).map_err(|_| CodecError::OutOfRange)?;
    out.put_u16(len);
    out.put_slice(text.as_bytes());
    Ok(())
}

fn put_bytes(out: &mut Outgoing, bytes: &Bytes) -> Result<(), CodecError> {
    let len = u32::try_from(bytes.len()).map_err(|_| CodecError::OutOfRange)?;
    out.put_u32(len);
    out.put_shared(bytes);
    Ok(())
}

fn put_optional(out: &mut Outgoing, bytes: Option<&Bytes>) -> Result<(), CodecError> {
    match bytes {
        None => out.put_i32(-1),
        Some(bytes) => {
            let len = i32::try_from(bytes.len()).map_err(|_| CodecError::OutOfRange)?;
            out.put_i32(len);
            out.put_shared(bytes);
        }
    }
    Ok(())
}

fn put_ids(out: &mut Outgoing, ids: &[u64]) -> Result<(), CodecError> {
    out.put_u32(u32::try_from(ids.len()).map_err(|_| CodecError::OutOfRange)?);
    for id in ids {
        out.put_u64(*id);
    }
    Ok(())
}

fn put_record(out: &mut Outgoing, record: &Record) -> Result<(), CodecError> {
    put_optional(out, record.key.as_ref())?;
    put_optional(out, record.value.as_ref())?;
    out.put_i64(record.timestamp);
    out.put_u32(u32::try_from(record.headers.len()).map_err(|_| CodecError::OutOfRange)?);
    for (key, value) in &record.headers {
        put_bytes(out, key)?;
        put_optional(out, value.as_ref())?;
    }
    Ok(())
}

fn put_deliveries(out: &mut Outgoing, deliveries: &[Delivery]) -> Result<(), CodecError> {
    out.put_u32(u32::try_from(deliveries.len()).map_err(|_| CodecError::OutOfRange)?);
    for delivery in deliveries {
        out.put_u64(delivery.id);
        out.put_u8(u8::from(delivery.redelivered));
        out.put_u32(delivery.returns);
        put_record(out, &delivery.record)?;
    }
    Ok(())
}

fn need(body: &Bytes, bytes: usize, what: &'static str) -> Result<(), CodecError> {
    if body.remaining() < bytes {
        return Err(CodecError::Truncated(what));
    }
    Ok(())
}

fn get_u8(body: &mut Bytes, what: &'static str) -> Result<u8, CodecError> {
    need(body, 1, what)?;
    Ok(body.get_u8())
}

fn get_u32(body: &mut Bytes, what: &'static str) -> Result<u32, CodecError> {
    need(body, 4, what)?;
    Ok(body.get_u32())
}

fn get_u64(body: &mut Bytes, what: &'static str) -> Result<u64, CodecError> {
    need(body, 8, what)?;
    Ok(body.get_u64())
}

fn get_str(body: &mut Bytes, what: &'static str) -> Result<String, CodecError> {
    need(body, 2, what)?;
    let len = usize::from(body.get_u16());
    need(body, len, what)?;
    String::from_utf8(body.split_to(len).to_vec()).map_err(|_| CodecError::NotUtf8)
}

fn get_bytes(body: &mut Bytes, what: &'static str) -> Result<Bytes, CodecError> {
    let len = get_u32(body, what)? as usize;
    need(body, len, what)?;
    Ok(body.split_to(len))
}

fn get_optional(body: &mut Bytes, what: &'static str) -> Result<Option<Bytes>, CodecError> {
    let len = get_u32(body, what)? as i32;
    if len == -1 {
        return Ok(None);
    }
    let len = usize::try_from(len).map_err(|_| CodecError::OutOfRange)?;
    need(body, len, what)?;
    Ok(Some(body.split_to(len)))
}

/// A count of elements of at least `min_bytes` each, checked against the bytes left.
fn get_count(body: &mut Bytes, min_bytes: usize, what: &'static str) -> Result<usize, CodecError> {
    let count = get_u32(body, what)? as usize;
    need(body, count.saturating_mul(min_bytes), what)?;
    Ok(count)
}

fn get_ids(body: &mut Bytes) -> Result<Vec<u64>, CodecError> {
    let count = get_count(body, 8, "delivery ids")?;
    (0..count).map(|_| get_u64(body, "delivery id")).collect()
}

fn get_record(body: &mut Bytes) -> Result<Record, CodecError> {
    let key = get_optional(body, "record key")?;
    let value = get_optional(body, "record value")?;
    let timestamp = get_u64(body, "record timestamp")? as i64;
    // A header takes at least a 4-byte key length and a 4-byte value length.
    let count = get_count(body, 8, "record headers")?;
    let mut headers = Vec::with_capacity(count);
    for _ in 0..count {
        headers.push((
            get_bytes(body, "header key")?,
            get_optional(body, "header value")?,
        ));
    }
    Ok(Record {
        key,
        value,
        timestamp,
        headers,
    })
}

fn get_deliveries(body: &mut Bytes) -> Result<Vec<Delivery>, CodecError> {
    // id, flag, returns and a record's fixed part.
    let count = get_count(body, 8 + 1 + 4 + 4 + 4 + 8 + 4, "deliveries")?;
    let mut deliveries = Vec::with_capacity(count);
    for _ in 0..count {
        let id = get_u64(body, "delivery id")?;
        let redelivered = get_u8(body, "redelivered flag")? != 0;
        let returns = get_u32(body, "returns")?;
        deliveries.push(Delivery {
            id,
            redelivered,
            returns,
            record: get_record(body)?,
        });
    }
    Ok(deliveries)
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
