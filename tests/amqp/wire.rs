//! The AMQP frontend against hand-written bytes on a raw socket: protocol header negotiation,
//! login refusal, frame_max enforcement, wrong-state frames, heartbeats and dead-peer detection.
//! Replies are decoded with the frontend's own codec; each case checks RabbitMQ's reply code.

use crate::broker;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use broker::TestBroker;
use bytes::BytesMut;
use tributary_amqp::codec::methods::Method;
use tributary_amqp::codec::{self, Frame, FrameKind};

struct Raw {
    stream: TcpStream,
    buf: BytesMut,
}

impl Raw {
    fn connect(addr: SocketAddr) -> Self {
        let stream = TcpStream::connect(addr).expect("connect");
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        Self {
            stream,
            buf: BytesMut::new(),
        }
    }

    fn send_method(&mut self, channel: u16, payload: &[u8]) {
        let mut out = BytesMut::new();
        codec::encode_frame(&mut out, codec::FRAME_METHOD, channel, payload);
        self.stream.write_all(&out).unwrap();
    }

    /// The next frame, or None at end of stream.
    fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) =
                codec::decode_frame(&mut self.buf, 1 << 20).expect("server frames are valid")
            {
                return Some(frame);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == ErrorKind::ConnectionReset => return None,
                Err(e) => panic!("read failed: {e}"),
            }
        }
    }

    /// The next method, skipping heartbeats.
    fn method(&mut self) -> Option<(u16, Method)> {
        loop {
            let frame = self.frame()?;
            match frame.kind {
                FrameKind::Method(payload) => {
                    return Some((frame.channel, decode_server_method(&payload)));
                }
                FrameKind::Heartbeat => continue,
                other => panic!("expected a method, got {other:?}"),
            }
        }
    }

    fn expect_close(&mut self, code: u16, text: &str) {
        match self.method() {
            Some((
                0,
                Method::ConnectionClose {
                    reply_code,
                    reply_text,
                    ..
                },
            )) => {
                assert_eq!(reply_code, code, "{reply_text}");
                assert!(reply_text.contains(text), "{reply_text}");
            }
            other => panic!("expected connection.close {code}, got {other:?}"),
        }
    }

    /// Header, start/start-ok, tune/tune-ok and open with the given frame_max and heartbeat.
    fn handshake(addr: SocketAddr, frame_max: u32, heartbeat: u16) -> Self {
        let mut raw = Self::connect(addr);
        raw.stream.write_all(codec::PROTOCOL_HEADER).unwrap();
        let (_, start) = raw.method().expect("start");
        assert!(matches!(start, Method::ConnectionStart { .. }), "{start:?}");
        raw.send_method(0, &start_ok(b"\0guest\0guest"));
        let (_, tune) = raw.method().expect("tune");
        assert!(
            matches!(
                tune,
                Method::ConnectionTune {
                    channel_max: 2047,
                    ..
                }
            ),
            "{tune:?}"
        );
        let mut tune_ok = vec![0, 10, 0, 31, 0x07, 0xFF];
        tune_ok.extend_from_slice(&frame_max.to_be_bytes());
        tune_ok.extend_from_slice(&heartbeat.to_be_bytes());
        raw.send_method(0, &tune_ok);
        raw.send_method(0, &[0, 10, 0, 40, 1, b'/', 0, 0]);
        let (_, open_ok) = raw.method().expect("open-ok");
        assert_eq!(open_ok, Method::ConnectionOpenOk);
        raw
    }
}

/// Decodes what the server sends; the codec decodes client methods, so the few server methods
/// these tests read are parsed here by hand.
fn decode_server_method(payload: &[u8]) -> Method {
    let id = (
        u16::from_be_bytes([payload[0], payload[1]]),
        u16::from_be_bytes([payload[2], payload[3]]),
    );
    match id {
        (10, 10) => Method::ConnectionStart {
            server_properties: Default::default(),
            mechanisms: String::new(),
            locales: String::new(),
        },
        (10, 30) => Method::ConnectionTune {
            channel_max: u16::from_be_bytes([payload[4], payload[5]]),
            frame_max: u32::from_be_bytes([payload[6], payload[7], payload[8], payload[9]]),
            heartbeat: u16::from_be_bytes([payload[10], payload[11]]),
        },
        (10, 41) => Method::ConnectionOpenOk,
        (20, 11) => Method::ChannelOpenOk,
        // connection.close and channel.close share their layout with the client's.
        _ => Method::decode(payload)
            .unwrap_or_else(|e| panic!("undecodable server method {id:?}: {e}")),
    }
}

fn start_ok(response: &[u8]) -> Vec<u8> {
    let mut out = vec![0, 10, 0, 11, 0, 0, 0, 0, 5];
    out.extend_from_slice(b"PLAIN");
    out.extend_from_slice(&(response.len() as u32).to_be_bytes());
    out.extend_from_slice(response);
    out.extend_from_slice(&[5, b'e', b'n', b'_', b'U', b'S']);
    out
}

#[test]
fn wrong_protocol_header_is_answered_with_ours() {
    let mut broker = TestBroker::start();
    // The harness reports each listener once per start, so read the address once.
    let addr = broker.addr("amqp");
    for greeting in [&b"AMQP\x00\x01\x00\x00"[..], b"GET / HTTP/1.1\r\n\r\n"] {
        let mut raw = Raw::connect(addr);
        raw.stream.write_all(greeting).unwrap();
        let mut reply = Vec::new();
        raw.stream.read_to_end(&mut reply).unwrap();
        assert_eq!(reply, codec::PROTOCOL_HEADER, "then the server closes");
    }
}

#[test]
fn bad_login_is_refused_with_403() {
    let mut broker = TestBroker::start();
    // The harness reports each listener once per start, so read the address once.
    let addr = broker.addr("amqp");
    let mut raw = Raw::connect(addr);
    raw.stream.write_all(codec::PROTOCOL_HEADER).unwrap();
    raw.method().expect("start");
    raw.send_method(0, &start_ok(b"\0guest\0wrong"));
    raw.expect_close(
        403,
        "ACCESS_REFUSED - Login was refused using authentication mechanism PLAIN",
    );
}

#[test]
fn unknown_vhost_is_530() {
    let mut broker = TestBroker::start();
    // The harness reports each listener once per start, so read the address once.
    let addr = broker.addr("amqp");
    let mut raw = Raw::connect(addr);
    raw.stream.write_all(codec::PROTOCOL_HEADER).unwrap();
    raw.method().expect("start");
    raw.send_method(0, &start_ok(b"\0guest\0guest"));
    raw.method().expect("tune");
    raw.send_method(0, &[0, 10, 0, 31, 0, 0, 0, 0, 0x10, 0, 0, 0]);
    raw.send_method(0, &[0, 10, 0, 40, 4, b'n', b'o', b'p', b'e', 0, 0]);
    raw.expect_close(530, "NOT_ALLOWED - vhost nope not found");
}

#[test]
fn oversized_frame_is_501_and_other_connections_carry_on() {
    let mut broker = TestBroker::start();
    // The harness reports each listener once per start, so read the address once.
    let addr = broker.addr("amqp");
    let mut bystander = Raw::handshake(addr, 4096, 0);
    let mut raw = Raw::handshake(addr, 4096, 0);
    // Only the header of a 10 MB body frame: the server must not wait for the payload.
    raw.stream
        .write_all(&[3, 0, 1, 0x00, 0x98, 0x96, 0x80])
        .unwrap();
    raw.expect_close(501, "FRAME_ERROR");
    // The same header right behind a frame that was handled, with junk after it, so it is met
    // while the reader drains the socket before storing staged publishes: still refused.
    let mut raw = Raw::handshake(addr, 4096, 0);
    let mut burst = vec![8, 0, 0, 0, 0, 0, 0, 0xCE]; // a heartbeat
    burst.extend_from_slice(&[3, 0, 1, 0x00, 0x98, 0x96, 0x80]);
    burst.extend(std::iter::repeat_n(0x55, 256 * 1024));
    // The server may close before it has read everything; a reset here is fine.
    let _ = raw.stream.write_all(&burst);
    raw.expect_close(501, "FRAME_ERROR");
    bystander.send_method(1, &[0, 20, 0, 10, 0]);
    assert_eq!(bystander.method(), Some((1, Method::ChannelOpenOk)));
}

#[test]
fn wrong_state_frames_get_rabbitmq_codes() {
    let mut broker = TestBroker::start();
    // The harness reports each listener once per start, so read the address once.
    let addr = broker.addr("amqp");
    // A method on a channel that was never opened.
    let mut raw = Raw::handshake(addr, 131_072, 0);
    raw.send_method(1, &[0, 85, 0, 10, 0]);
    raw.expect_close(504, "CHANNEL_ERROR - expected 'channel.open'");
    // A body frame with no publish before it.
    let mut raw = Raw::handshake(addr, 131_072, 0);
    raw.send_method(1, &[0, 20, 0, 10, 0]);
    assert_eq!(raw.method(), Some((1, Method::ChannelOpenOk)));
    let mut body = BytesMut::new();
    codec::encode_frame(&mut body, codec::FRAME_BODY, 1, b"stray");
    raw.stream.write_all(&body).unwrap();
    raw.expect_close(505, "UNEXPECTED_FRAME");
    // A second channel.open on an open channel.
    let mut raw = Raw::handshake(addr, 131_072, 0);
    raw.send_method(1, &[0, 20, 0, 10, 0]);
    assert_eq!(raw.method(), Some((1, Method::ChannelOpenOk)));
    raw.send_method(1, &[0, 20, 0, 10, 0]);
    raw.expect_close(504, "CHANNEL_ERROR - second 'channel.open' seen");
    // A frame with a bad end marker.
    let mut raw = Raw::handshake(addr, 131_072, 0);
    raw.stream.write_all(&[8, 0, 0, 0, 0, 0, 0, 0x00]).unwrap();
    raw.expect_close(501, "FRAME_ERROR");
}

#[test]
fn heartbeats_flow_and_a_silent_peer_is_dropped() {
    let mut broker = TestBroker::start();
    // The harness reports each listener once per start, so read the address once.
    let addr = broker.addr("amqp");
    let mut raw = Raw::handshake(addr, 131_072, 1);
    let started = Instant::now();
    let mut beats = 0;
    let ended = loop {
        match raw.frame() {
            Some(Frame {
                kind: FrameKind::Heartbeat,
                channel: 0,
            }) => beats += 1,
            Some(other) => panic!("unexpected frame {other:?}"),
            None => break started.elapsed(),
        }
    };
    assert!(
        beats >= 2,
        "server sent {beats} heartbeats before dropping us"
    );
    assert!(
        ended >= Duration::from_millis(1500) && ended < Duration::from_secs(5),
        "dropped after {ended:?}"
    );
}
