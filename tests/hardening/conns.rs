//! Connection rules against the real binary: silent, truncated and slowloris connections on
//! every listener are closed after their configured time (and not before), a silent AMQP
//! consumer is not, Kafka frames before SASL are capped, a declared frame size reserves no
//! memory, and the buffer budget bounds what large frames cost.

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tributary_amqp::codec::{self as amqp, FrameKind};

use crate::broker::TestBroker;

/// Short limits, so each rule shows within seconds.
const SHORT: &str = "
[kafka]
connections_max_idle_ms = 2000
frame_timeout_ms = 1000

[amqp]
handshake_timeout_ms = 1500
idle_timeout_ms = 2000
frame_timeout_ms = 1000

[rocketmq]
channel_idle_ms = 2000
frame_timeout_ms = 1000
";
const IDLE: Duration = Duration::from_millis(2000);
const FRAME: Duration = Duration::from_millis(1000);
const HANDSHAKE: Duration = Duration::from_millis(1500);
/// How much earlier than its limit a close may come (timer granularity).
const EARLY: Duration = Duration::from_millis(100);
/// How much later than its limit a close may come (scheduling, a loaded debug build).
const LATE: Duration = Duration::from_millis(2500);
/// Time between the bytes of a slowloris sender.
const DRIP: Duration = Duration::from_millis(200);

pub(crate) fn start(config: &str) -> TestBroker {
    let config = config.to_owned();
    TestBroker::start_prepared(&["--config", "tributary.toml"], move |root| {
        std::fs::write(root.join("tributary.toml"), config).expect("write the config file");
    })
}

pub(crate) fn connect(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .expect("read timeout");
    stream
}

/// Reads (and drops) whatever the server sends until it closes; how long after `since` that
/// was. Panics if it is still open well past `limit`.
fn closed_after(stream: &mut TcpStream, since: Instant, limit: Duration, what: &str) -> Duration {
    let give_up = limit + LATE + Duration::from_secs(2);
    let mut scratch = [0u8; 4096];
    loop {
        match stream.read(&mut scratch) {
            Ok(0) => return since.elapsed(),
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
                ) =>
            {
                return since.elapsed();
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(e) => panic!("{what}: read failed: {e}"),
        }
        assert!(
            since.elapsed() < give_up,
            "{what}: still open {:?} after it started (limit {limit:?})",
            since.elapsed()
        );
    }
}

/// Asserts the server closes `stream` within `limit` of `since`, give or take the slack.
fn assert_closed(mut stream: TcpStream, since: Instant, limit: Duration, what: &str) {
    let after = closed_after(&mut stream, since, limit, what);
    assert!(
        after + EARLY >= limit,
        "{what}: closed after {after:?}, before its limit {limit:?}"
    );
    assert!(
        after <= limit + LATE,
        "{what}: closed after {after:?}, limit {limit:?}"
    );
}

/// Sends `bytes` one at a time, [`DRIP`] apart, on a clone of `stream`, until the server
/// closes or `bytes` runs out.
fn drip(stream: &TcpStream, bytes: Vec<u8>) -> thread::JoinHandle<()> {
    let mut writer = stream.try_clone().expect("clone the socket");
    thread::spawn(move || {
        for byte in bytes {
            if writer.write_all(&[byte]).is_err() {
                return;
            }
            thread::sleep(DRIP);
        }
    })
}

/// A frame of `declared` bytes after its 4-byte length prefix (Kafka, RocketMQ), truncated to
/// `sent` body bytes.
fn prefixed(declared: u32, sent: usize) -> Vec<u8> {
    let mut out = declared.to_be_bytes().to_vec();
    out.extend(std::iter::repeat_n(0x11, sent));
    out
}

/// A named client behaviour, run on its own thread.
type Scenario = (&'static str, Box<dyn FnOnce() + Send>);

/// Runs each scenario on its own thread (their clocks run at once) and joins them all.
fn run_all(scenarios: Vec<Scenario>) {
    let handles: Vec<_> = scenarios
        .into_iter()
        .map(|(name, scenario)| (name, thread::spawn(scenario)))
        .collect();
    let mut failed = Vec::new();
    for (name, handle) in handles {
        if handle.join().is_err() {
            failed.push(name);
        }
    }
    assert!(failed.is_empty(), "failed scenarios: {failed:?}");
}

/// The silent, truncated and slowloris scenarios of a length-prefixed protocol at `addr`.
fn prefixed_scenarios(addr: SocketAddr, label: &'static str) -> Vec<Scenario> {
    let silent = move || {
        let since = Instant::now();
        assert_closed(connect(addr), since, IDLE, &format!("{label} silent"));
    };
    let truncated = move || {
        let mut stream = connect(addr);
        stream
            .write_all(&prefixed(100, 10))
            .expect("send half a frame");
        let since = Instant::now();
        assert_closed(stream, since, FRAME, &format!("{label} truncated"));
    };
    let slowloris = move || {
        let stream = connect(addr);
        let since = Instant::now();
        let sender = drip(&stream, prefixed(100, 100));
        assert_closed(stream, since, FRAME, &format!("{label} slowloris"));
        sender.join().expect("sender");
    };
    vec![
        ("silent", Box::new(silent)),
        ("truncated", Box::new(truncated)),
        ("slowloris", Box::new(slowloris)),
    ]
}

#[test]
fn kafka_silent_truncated_and_slowloris_connections_are_closed() {
    let mut broker = start(SHORT);
    let addr = broker.addr("kafka");
    run_all(prefixed_scenarios(addr, "kafka"));
    let line = broker.wait_for_line(
        &[
            "closing the connection",
            "listener=\"kafka\"",
            "frame_timeout",
        ],
        Duration::from_secs(5),
    );
    assert!(line.contains("peer="), "{line}");
    let metrics = scrape(broker.http_addr());
    for reason in ["idle", "frame_timeout"] {
        let series =
            format!("tributary_connections_closed_total{{listener=\"kafka\",reason=\"{reason}\"}}");
        assert!(metrics.contains(&series), "no {series} in:\n{metrics}");
    }
}

/// The broker's `/metrics` text.
pub(crate) fn scrape(addr: SocketAddr) -> String {
    let mut stream = TcpStream::connect(addr).expect("connect to the HTTP endpoint");
    stream
        .write_all(b"GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n")
        .expect("send the request");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read /metrics");
    text
}

#[test]
fn rocketmq_silent_truncated_and_slowloris_connections_are_closed_on_both_listeners() {
    let mut broker = start(SHORT);
    let mut scenarios = prefixed_scenarios(broker.addr("rocketmq-broker"), "rocketmq-broker");
    scenarios.extend(prefixed_scenarios(
        broker.addr("rocketmq-namesrv"),
        "rocketmq-namesrv",
    ));
    run_all(scenarios);
}

/// A raw AMQP client: frames are decoded with the frontend's codec.
pub(crate) struct Amqp {
    pub(crate) stream: TcpStream,
    buf: BytesMut,
}

impl Amqp {
    pub(crate) fn method(&mut self, channel: u16, class: u16, method: u16, args: &[u8]) {
        let mut payload = Vec::new();
        payload.extend_from_slice(&class.to_be_bytes());
        payload.extend_from_slice(&method.to_be_bytes());
        payload.extend_from_slice(args);
        let mut out = BytesMut::new();
        amqp::encode_frame(&mut out, amqp::FRAME_METHOD, channel, &payload);
        self.stream.write_all(&out).expect("send a method");
    }

    /// The class and method id of the next method frame, skipping heartbeats.
    pub(crate) fn expect(&mut self, class: u16, method: u16) {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(frame) = amqp::decode_frame(&mut self.buf, 1 << 20).expect("valid frame") {
                if let FrameKind::Method(payload) = frame.kind {
                    let id = (
                        u16::from_be_bytes([payload[0], payload[1]]),
                        u16::from_be_bytes([payload[2], payload[3]]),
                    );
                    assert_eq!(id, (class, method), "unexpected method");
                    return;
                }
                continue;
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => panic!("closed while waiting for {class}.{method}"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    assert!(Instant::now() < deadline, "no {class}.{method}");
                }
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// Header through open-ok, heartbeats off.
    pub(crate) fn open(addr: SocketAddr) -> Self {
        let mut client = Self {
            stream: connect(addr),
            buf: BytesMut::new(),
        };
        client
            .stream
            .write_all(amqp::PROTOCOL_HEADER)
            .expect("send the protocol header");
        client.expect(10, 10);
        let mut start_ok = vec![0, 0, 0, 0, 5];
        start_ok.extend_from_slice(b"PLAIN");
        let response = b"\0guest\0guest";
        start_ok.extend_from_slice(&(response.len() as u32).to_be_bytes());
        start_ok.extend_from_slice(response);
        start_ok.extend_from_slice(&[5, b'e', b'n', b'_', b'U', b'S']);
        client.method(0, 10, 11, &start_ok);
        client.expect(10, 30);
        // channel_max 2047, frame_max 128 KiB, heartbeat 0.
        client.method(0, 10, 31, &[0x07, 0xFF, 0, 2, 0, 0, 0, 0]);
        client.method(0, 10, 40, &[1, b'/', 0, 0]);
        client.expect(10, 41);
        client
    }
}

#[test]
fn amqp_slow_handshakes_and_idle_or_slow_connections_are_closed() {
    let mut broker = start(SHORT);
    let addr = broker.addr("amqp");
    let silent_before_header = move || {
        let since = Instant::now();
        assert_closed(
            connect(addr),
            since,
            HANDSHAKE,
            "amqp silent before the header",
        );
    };
    let slow_header = move || {
        // 8 bytes 200 ms apart: every read brings a byte, the handshake never ends in time.
        let stream = connect(addr);
        let since = Instant::now();
        let sender = drip(&stream, amqp::PROTOCOL_HEADER.to_vec());
        assert_closed(stream, since, HANDSHAKE, "amqp slow protocol header");
        sender.join().expect("sender");
    };
    let silent_without_channels = move || {
        let client = Amqp::open(addr);
        let since = Instant::now();
        assert_closed(client.stream, since, IDLE, "amqp silent with no channel");
    };
    let truncated = move || {
        let mut client = Amqp::open(addr);
        // A method frame header declaring 100 bytes, and 10 of them.
        let mut half = vec![amqp::FRAME_METHOD, 0, 0, 0, 0, 0, 100];
        half.extend_from_slice(&[0; 10]);
        client.stream.write_all(&half).expect("send half a frame");
        let since = Instant::now();
        assert_closed(client.stream, since, FRAME, "amqp truncated frame");
    };
    let slowloris = move || {
        let client = Amqp::open(addr);
        let since = Instant::now();
        let mut frame = vec![amqp::FRAME_METHOD, 0, 0, 0, 0, 0, 100];
        frame.extend_from_slice(&[0; 101]);
        let sender = drip(&client.stream, frame);
        assert_closed(client.stream, since, FRAME, "amqp slowloris frame");
        sender.join().expect("sender");
    };
    let silent_consumer = move || {
        let mut client = Amqp::open(addr);
        client.method(1, 20, 10, &[0]);
        client.expect(20, 11);
        // queue.declare "quiet" (auto-delete), then basic.consume on it.
        let mut declare = vec![0, 0, 5];
        declare.extend_from_slice(b"quiet");
        declare.extend_from_slice(&[0b1000, 0, 0, 0, 0]);
        client.method(1, 50, 10, &declare);
        client.expect(50, 11);
        let mut consume = vec![0, 0, 5];
        consume.extend_from_slice(b"quiet");
        consume.extend_from_slice(&[0, 0, 0, 0, 0, 0]);
        client.method(1, 60, 20, &consume);
        client.expect(60, 21);
        thread::sleep(IDLE + LATE);
        // Still served: a second channel opens.
        client.method(2, 20, 10, &[0]);
        client.expect(20, 11);
    };
    run_all(vec![
        ("silent before header", Box::new(silent_before_header)),
        ("slow header", Box::new(slow_header)),
        ("silent without channels", Box::new(silent_without_channels)),
        ("truncated", Box::new(truncated)),
        ("slowloris", Box::new(slowloris)),
        ("silent consumer", Box::new(silent_consumer)),
    ]);
}

/// A `/proc/<pid>/status` figure in bytes (`VmRSS:`, `VmHWM:`, `VmData:`).
pub(crate) fn status_bytes(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    let line = status
        .lines()
        .find(|line| line.starts_with(field))
        .unwrap_or_else(|| panic!("no {field} in status"));
    let kib: u64 = line[field.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .expect("a number of kB");
    kib * 1024
}

const MIB: u64 = 1 << 20;
/// The default Kafka frame limit, prefix included.
const KAFKA_MAX_FRAME: u32 = 100 << 20;

/// A Kafka request frame header (ApiVersions v0) declaring `total` bytes with the prefix.
fn kafka_frame_start(total: u32) -> Vec<u8> {
    let mut out = (total - 4).to_be_bytes().to_vec();
    out.extend_from_slice(&[0, 18, 0, 0, 0, 0, 0, 1, 0xFF, 0xFF]);
    out
}

/// Sends the start of a frame, then up to `body` more bytes in 1 MiB writes; stops at the
/// first failed write (the server closed).
fn send_frame(addr: SocketAddr, start: &[u8], body: u64) -> TcpStream {
    let mut stream = connect(addr);
    stream.write_all(start).expect("send the frame start");
    let chunk = vec![0u8; MIB as usize];
    let mut sent = 0;
    while sent < body {
        if stream.write_all(&chunk).is_err() {
            break;
        }
        sent += MIB;
    }
    stream
}

#[test]
fn kafka_frames_before_sasl_are_capped_at_once_and_cost_no_memory() {
    let mut broker = start("[kafka]\nsasl_enabled = true\n");
    let addr = broker.addr("kafka");
    let pid = broker.pid();
    let peak_before = status_bytes(pid, "VmHWM:");
    let senders: Vec<_> = (0..10)
        .map(|_| {
            thread::spawn(move || {
                let since = Instant::now();
                let mut stream = send_frame(addr, &kafka_frame_start(KAFKA_MAX_FRAME), 32 * MIB);
                // Closed at the size prefix: well before the 30 s frame timeout.
                let after = closed_after(&mut stream, since, Duration::ZERO, "pre-SASL frame");
                assert!(after < Duration::from_secs(3), "closed after {after:?}");
            })
        })
        .collect();
    for sender in senders {
        sender.join().expect("a connection was not closed at once");
    }
    let growth = status_bytes(pid, "VmHWM:").saturating_sub(peak_before);
    eprintln!("peak RSS growth: {} MiB", growth / MIB);
    assert!(
        growth < 64 * MIB,
        "10 unauthenticated 100 MiB frames raised peak RSS by {} MiB",
        growth / MIB
    );
    broker.wait_for_line(
        &["closing the connection", "pre_auth_frame_too_large"],
        Duration::from_secs(5),
    );
}

#[test]
fn announced_frame_sizes_reserve_no_memory() {
    let mut broker = start("");
    let kafka = broker.addr("kafka");
    let rocketmq = broker.addr("rocketmq-broker");
    let pid = broker.pid();
    let data_before = status_bytes(pid, "VmData:");
    let rss_before = status_bytes(pid, "VmRSS:");
    let mut held = Vec::new();
    for _ in 0..20 {
        let mut stream = connect(kafka);
        let mut start = kafka_frame_start(KAFKA_MAX_FRAME);
        start.extend_from_slice(&[0; 100]);
        stream.write_all(&start).expect("kafka frame start");
        held.push(stream);
        let mut stream = connect(rocketmq);
        // The default RocketMQ frame limit is 16 MiB, prefix included.
        stream
            .write_all(&prefixed((16 << 20) - 4, 100))
            .expect("rocketmq frame start");
        held.push(stream);
    }
    thread::sleep(Duration::from_millis(500));
    let data = status_bytes(pid, "VmData:").saturating_sub(data_before);
    let rss = status_bytes(pid, "VmRSS:").saturating_sub(rss_before);
    eprintln!(
        "heap growth {} MiB, RSS growth {} MiB",
        data / MIB,
        rss / MIB
    );
    assert!(
        data < 128 * MIB,
        "40 announced frames (20 x 100 MiB, 20 x 16 MiB) grew the heap by {} MiB",
        data / MIB
    );
    assert!(rss < 64 * MIB, "and RSS by {} MiB", rss / MIB);
    drop(held);
}

#[test]
fn the_buffer_budget_bounds_what_large_frames_cost() {
    // Room for two 100 MiB frames at a time; the other eight wait, unread.
    let mut broker = start(
        "[limits]\nbuffer_bytes = 209715200\n\n[kafka]\nframe_timeout_ms = 120000\nconnections_max_idle_ms = 0\n",
    );
    let addr = broker.addr("kafka");
    let pid = broker.pid();
    let rss_before = status_bytes(pid, "VmRSS:");
    let senders: Vec<_> = (0..10)
        .map(|_| {
            thread::spawn(move || {
                let start = kafka_frame_start(KAFKA_MAX_FRAME);
                let body = u64::from(KAFKA_MAX_FRAME) - start.len() as u64;
                let mut stream = connect(addr);
                stream.write_all(&start).expect("frame start");
                let chunk = vec![0u8; MIB as usize];
                let mut left = body;
                while left > 0 {
                    let n = left.min(MIB) as usize;
                    stream
                        .write_all(&chunk[..n])
                        .expect("the broker reads the frame");
                    left -= n as u64;
                }
                // The frame is whole: the broker answers it or closes the connection.
                stream
                    .set_read_timeout(Some(Duration::from_secs(60)))
                    .expect("read timeout");
                let mut reply = [0u8; 4];
                let _ = stream.read(&mut reply);
            })
        })
        .collect();
    for sender in senders {
        sender.join().expect("every frame was read in the end");
    }
    let growth = status_bytes(pid, "VmHWM:").saturating_sub(rss_before);
    eprintln!("peak RSS growth: {} MiB", growth / MIB);
    // Two frames' worth is live at once; the allocator returns a freed frame's pages a little
    // later, so the next frame may overlap them (240-345 MiB measured). Without the budget all
    // ten are read at once (about 900 MiB measured).
    assert!(
        growth < 500 * MIB,
        "ten 100 MiB frames under a 200 MiB budget raised peak RSS by {} MiB",
        growth / MIB
    );
}
