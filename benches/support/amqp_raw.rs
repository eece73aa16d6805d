//! A minimal AMQP 0-9-1 load generator for `benches/amqp.rs`: one publisher connection and one
//! consumer connection on one queue, written straight onto the socket.
//!
//! Why it exists: lapin costs the bench 7-10 us of CPU per message (publish, deliver, ack) on
//! the same two cores the brokers run on, so with lapin the rate ratio is bounded by the
//! client, whatever the brokers cost. This client does what PerfTest-style generators do —
//! encode publishes in batches, parse deliveries in place, ack with `multiple` — at well
//! under a microsecond per message, so the rate is the broker's. It speaks only the methods it
//! needs (PLAIN login, no heartbeats) and is checked against RabbitMQ by the same run.
//!
//! Invariant: both brokers get byte-identical traffic for the same scenario.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::{Buf, BufMut, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::sync::Notify;

const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_END: u8 = 0xCE;
const FRAME_MAX: u32 = 131_072;
/// Publishes encoded into one socket write.
const PUBLISH_BATCH: usize = 64;

/// What one run of the generator measured.
pub(crate) struct RawRun {
    pub(crate) elapsed: std::time::Duration,
    /// Publish to delivery, nanoseconds.
    pub(crate) delivery_latencies: Vec<u64>,
    /// Publish to confirm, nanoseconds (confirm runs only).
    pub(crate) confirm_latencies: Vec<u64>,
}

/// The parameters of one run.
pub(crate) struct RawScenario<'a> {
    pub(crate) addr: &'a str,
    pub(crate) queue: &'a str,
    pub(crate) body_len: usize,
    pub(crate) messages: usize,
    /// Durable queue, delivery mode 2, publisher confirms with at most `confirm_window` open.
    pub(crate) persistent: bool,
    pub(crate) confirm_window: usize,
    pub(crate) prefetch: u16,
    pub(crate) ack_every: u64,
}

struct Reader {
    read: OwnedReadHalf,
    buf: BytesMut,
}

/// One decoded frame: type, channel, payload.
struct Frame {
    kind: u8,
    payload: BytesMut,
}

impl Reader {
    async fn frame(&mut self) -> Frame {
        loop {
            if self.buf.len() >= 7 {
                let size = u32::from_be_bytes(self.buf[3..7].try_into().expect("4 bytes")) as usize;
                assert!(size <= FRAME_MAX as usize, "frame of {size} bytes");
                if self.buf.len() >= size + 8 {
                    let kind = self.buf[0];
                    self.buf.advance(7);
                    let payload = self.buf.split_to(size);
                    assert_eq!(self.buf.get_u8(), FRAME_END, "frame end");
                    return Frame { kind, payload };
                }
            }
            self.buf.reserve(64 * 1024);
            let n = self
                .read
                .read_buf(&mut self.buf)
                .await
                .expect("socket read");
            assert!(n > 0, "broker closed the connection");
        }
    }

    /// The next method frame's payload, which must be `(class, method)`.
    async fn expect(&mut self, class: u16, method: u16) -> BytesMut {
        let frame = self.frame().await;
        assert_eq!(frame.kind, FRAME_METHOD, "expected a method frame");
        let mut payload = frame.payload;
        let ids = (payload.get_u16(), payload.get_u16());
        assert_eq!(ids, (class, method), "expected method {class}.{method}");
        payload
    }
}

fn put_shortstr(out: &mut BytesMut, value: &str) {
    out.put_u8(value.len() as u8);
    out.extend_from_slice(value.as_bytes());
}

fn put_longstr(out: &mut BytesMut, value: &[u8]) {
    out.put_u32(value.len() as u32);
    out.extend_from_slice(value);
}

/// Appends a frame whose payload `write` appends.
fn frame(out: &mut BytesMut, kind: u8, channel: u16, write: impl FnOnce(&mut BytesMut)) {
    let start = out.len();
    out.put_u8(kind);
    out.put_u16(channel);
    out.put_u32(0);
    write(out);
    let size = (out.len() - start - 7) as u32;
    out[start + 3..start + 7].copy_from_slice(&size.to_be_bytes());
    out.put_u8(FRAME_END);
}

fn method(out: &mut BytesMut, class: u16, id: u16, args: impl FnOnce(&mut BytesMut)) {
    frame(out, FRAME_METHOD, 1, |p| {
        p.put_u16(class);
        p.put_u16(id);
        args(p);
    });
}

/// Opens a connection (guest/guest, vhost "/") with channel 1 open.
async fn connect(addr: &str) -> (Reader, OwnedWriteHalf) {
    let stream = TcpStream::connect(addr).await.expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (read, mut write) = stream.into_split();
    let mut reader = Reader {
        read,
        buf: BytesMut::new(),
    };
    write
        .write_all(b"AMQP\x00\x00\x09\x01")
        .await
        .expect("write");
    reader.expect(10, 10).await;
    let mut out = BytesMut::new();
    frame(&mut out, FRAME_METHOD, 0, |p| {
        p.put_u16(10);
        p.put_u16(11);
        p.put_u32(0); // client properties: empty table
        put_shortstr(p, "PLAIN");
        put_longstr(p, b"\0guest\0guest");
        put_shortstr(p, "en_US");
    });
    write.write_all(&out).await.expect("write");
    reader.expect(10, 30).await;
    out.clear();
    frame(&mut out, FRAME_METHOD, 0, |p| {
        p.put_u16(10);
        p.put_u16(31);
        p.put_u16(16);
        p.put_u32(FRAME_MAX);
        p.put_u16(0); // no heartbeats
    });
    frame(&mut out, FRAME_METHOD, 0, |p| {
        p.put_u16(10);
        p.put_u16(40);
        put_shortstr(p, "/");
        put_shortstr(p, "");
        p.put_u8(0);
    });
    write.write_all(&out).await.expect("write");
    reader.expect(10, 41).await;
    out.clear();
    method(&mut out, 20, 10, |p| put_shortstr(p, ""));
    write.write_all(&out).await.expect("write");
    reader.expect(20, 11).await;
    (reader, write)
}

async fn call(
    reader: &mut Reader,
    write: &mut OwnedWriteHalf,
    request: (u16, u16),
    reply: (u16, u16),
    args: impl FnOnce(&mut BytesMut),
) {
    let mut out = BytesMut::new();
    method(&mut out, request.0, request.1, args);
    write.write_all(&out).await.expect("write");
    reader.expect(reply.0, reply.1).await;
}

async fn close(mut reader: Reader, mut write: OwnedWriteHalf) {
    let mut out = BytesMut::new();
    frame(&mut out, FRAME_METHOD, 0, |p| {
        p.put_u16(10);
        p.put_u16(50);
        p.put_u16(200);
        put_shortstr(p, "bye");
        p.put_u32(0);
    });
    write.write_all(&out).await.expect("write");
    // Deliveries or confirms may still be in flight before close-ok.
    loop {
        let frame = reader.frame().await;
        if frame.kind == FRAME_METHOD && frame.payload[..4] == [0, 10, 0, 51] {
            return;
        }
    }
}

fn nanos_since(epoch: Instant) -> u64 {
    epoch.elapsed().as_nanos() as u64
}

/// Reads deliveries until `expected` arrived, acking with `multiple` every `ack_every`.
async fn consume(
    mut reader: Reader,
    mut write: OwnedWriteHalf,
    expected: usize,
    ack_every: u64,
    epoch: Instant,
) -> (Vec<u64>, Reader, OwnedWriteHalf) {
    let mut latencies = Vec::with_capacity(expected);
    let mut last_tag = 0;
    let mut acked = 0;
    let mut out = BytesMut::new();
    while latencies.len() < expected {
        let deliver = reader.frame().await;
        assert_eq!(deliver.kind, FRAME_METHOD, "expected basic.deliver");
        let mut payload = deliver.payload;
        assert_eq!(
            (payload.get_u16(), payload.get_u16()),
            (60, 60),
            "basic.deliver"
        );
        let tag_len = payload.get_u8() as usize;
        payload.advance(tag_len);
        last_tag = payload.get_u64();
        let header = reader.frame().await;
        assert_eq!(header.kind, FRAME_HEADER, "content header");
        let size = u64::from_be_bytes(header.payload[4..12].try_into().expect("8 bytes"));
        let mut first = None;
        let mut received = 0;
        while received < size {
            let body = reader.frame().await;
            assert_eq!(body.kind, FRAME_BODY, "body frame");
            received += body.payload.len() as u64;
            first.get_or_insert(body.payload);
        }
        let first = first.expect("a body");
        let sent = u64::from_le_bytes(first[..8].try_into().expect("8 bytes"));
        latencies.push(nanos_since(epoch).saturating_sub(sent));
        if last_tag - acked >= ack_every {
            out.clear();
            method(&mut out, 60, 80, |p| {
                p.put_u64(last_tag);
                p.put_u8(1); // multiple
            });
            write.write_all(&out).await.expect("ack");
            acked = last_tag;
        }
    }
    if last_tag > acked {
        out.clear();
        method(&mut out, 60, 80, |p| {
            p.put_u64(last_tag);
            p.put_u8(1);
        });
        write.write_all(&out).await.expect("final ack");
    }
    (latencies, reader, write)
}

/// Confirm bookkeeping shared by the publisher and its confirm reader.
struct Confirms {
    /// Highest publish sequence number confirmed.
    confirmed: AtomicU64,
    progressed: Notify,
}

/// Reads publisher confirms (basic.ack only; a nack fails the run) and records their
/// latency from the send times the publisher queued in `sent`.
async fn read_confirms(
    mut reader: Reader,
    confirms: Arc<Confirms>,
    sent: Arc<parking_lot::Mutex<VecDeque<(u64, u64)>>>,
    expected: u64,
    epoch: Instant,
) -> (Vec<u64>, Reader) {
    let mut latencies = Vec::with_capacity(expected as usize);
    while confirms.confirmed.load(Ordering::Acquire) < expected {
        let mut payload = reader.expect(60, 80).await;
        let tag = payload.get_u64();
        let multiple = payload.get_u8() & 1 == 1;
        let now = nanos_since(epoch);
        let mut sent = sent.lock();
        while let Some(&(seq, at)) = sent.front() {
            if seq > tag || (!multiple && seq != tag) {
                break;
            }
            latencies.push(now.saturating_sub(at));
            sent.pop_front();
        }
        drop(sent);
        confirms.confirmed.fetch_max(tag, Ordering::AcqRel);
        confirms.progressed.notify_one();
    }
    (latencies, reader)
}

/// Runs one scenario: declares the queue, consumes and publishes, deletes the queue.
pub(crate) async fn run(scenario: &RawScenario<'_>) -> RawRun {
    let (mut setup_reader, mut setup_write) = connect(scenario.addr).await;
    let queue = scenario.queue;
    let durable = scenario.persistent;
    call(
        &mut setup_reader,
        &mut setup_write,
        (50, 10),
        (50, 11),
        |p| {
            p.put_u16(0);
            put_shortstr(p, queue);
            p.put_u8(if durable { 0b10 } else { 0 });
            p.put_u32(0);
        },
    )
    .await;

    let (mut consumer_reader, mut consumer_write) = connect(scenario.addr).await;
    let prefetch = scenario.prefetch;
    call(
        &mut consumer_reader,
        &mut consumer_write,
        (60, 10),
        (60, 11),
        |p| {
            p.put_u32(0);
            p.put_u16(prefetch);
            p.put_u8(0);
        },
    )
    .await;
    call(
        &mut consumer_reader,
        &mut consumer_write,
        (60, 20),
        (60, 21),
        |p| {
            p.put_u16(0);
            put_shortstr(p, queue);
            put_shortstr(p, "raw-bench");
            p.put_u8(0);
            p.put_u32(0);
        },
    )
    .await;

    let (mut publisher_reader, mut publisher_write) = connect(scenario.addr).await;
    if scenario.persistent {
        call(
            &mut publisher_reader,
            &mut publisher_write,
            (85, 10),
            (85, 11),
            |p| p.put_u8(0),
        )
        .await;
    }

    let epoch = Instant::now();
    let consumer = tokio::spawn(consume(
        consumer_reader,
        consumer_write,
        scenario.messages,
        scenario.ack_every,
        epoch,
    ));
    let confirms = Arc::new(Confirms {
        confirmed: AtomicU64::new(0),
        progressed: Notify::new(),
    });
    let sent = Arc::new(parking_lot::Mutex::new(VecDeque::new()));
    // Without confirms the broker sends the publisher nothing: its reader waits for close.
    let (confirm_reader, idle_reader) = if scenario.persistent {
        let task = tokio::spawn(read_confirms(
            publisher_reader,
            confirms.clone(),
            sent.clone(),
            scenario.messages as u64,
            epoch,
        ));
        (Some(task), None)
    } else {
        (None, Some(publisher_reader))
    };

    let started = Instant::now();
    let mut out = BytesMut::new();
    let mut body = vec![0x5a_u8; scenario.body_len];
    let mut seq = 0u64;
    let mut published = 0;
    while published < scenario.messages {
        let batch = PUBLISH_BATCH.min(scenario.messages - published);
        if scenario.persistent {
            // Wait until this batch fits in the confirm window.
            loop {
                let notified = confirms.progressed.notified();
                let open = seq - confirms.confirmed.load(Ordering::Acquire);
                if open as usize + batch <= scenario.confirm_window {
                    break;
                }
                notified.await;
            }
        }
        out.clear();
        let now = nanos_since(epoch);
        for _ in 0..batch {
            body[..8].copy_from_slice(&now.to_le_bytes());
            method(&mut out, 60, 40, |p| {
                p.put_u16(0);
                put_shortstr(p, "");
                put_shortstr(p, queue);
                p.put_u8(0);
            });
            frame(&mut out, FRAME_HEADER, 1, |p| {
                p.put_u16(60);
                p.put_u16(0);
                p.put_u64(body.len() as u64);
                p.put_u16(0x1000); // delivery-mode
                p.put_u8(if durable { 2 } else { 1 });
            });
            frame(&mut out, FRAME_BODY, 1, |p| p.extend_from_slice(&body));
            seq += 1;
            if scenario.persistent {
                sent.lock().push_back((seq, now));
            }
        }
        publisher_write.write_all(&out).await.expect("publish");
        published += batch;
    }
    let (confirm_latencies, publisher_reader) = match confirm_reader {
        Some(task) => task.await.expect("confirm reader"),
        None => (Vec::new(), idle_reader.expect("the idle reader")),
    };
    let (delivery_latencies, consumer_reader, consumer_write) =
        consumer.await.expect("consumer task");
    let elapsed = started.elapsed();

    close(consumer_reader, consumer_write).await;
    close(publisher_reader, publisher_write).await;
    call(
        &mut setup_reader,
        &mut setup_write,
        (50, 40),
        (50, 41),
        |p| {
            p.put_u16(0);
            put_shortstr(p, queue);
            p.put_u8(0);
        },
    )
    .await;
    close(setup_reader, setup_write).await;
    RawRun {
        elapsed,
        delivery_latencies,
        confirm_latencies,
    }
}
