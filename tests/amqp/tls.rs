//! AMQPS (`amqp.tls_port`) against the real binary with a rustls client speaking raw AMQP
//! frames: publish and get over TLS, SASL EXTERNAL with a client certificate whose CN is a
//! broker user (and refused for a CN that is none), and a plaintext client on the TLS port
//! closed while the broker keeps serving. Certificates are made here with rcgen.

use crate::broker;
use crate::tls_support;

use std::io::{Read, Write};
use std::path::Path;

use broker::TestBroker;
use bytes::{BufMut, BytesMut};
use tls_support::{Pki, TlsStream};
use tributary_amqp::codec::{self, Frame, FrameKind};

/// A broker user `name` with every permission on `/` (its password is not used: it logs in
/// with a certificate).
fn add_user(root: &Path, name: &str) {
    let user_add = ["user", "add", name, "--password-stdin"];
    broker::run_cli(root, &user_add, "unused-password\n");
    broker::run_cli(
        root,
        &["permissions", "set", "/", name, ".*", ".*", ".*"],
        "",
    );
}

/// Raw AMQP 0-9-1 over a TLS stream.
struct Amqps {
    stream: TlsStream,
    buf: BytesMut,
}

fn shortstr(out: &mut Vec<u8>, text: &str) {
    out.push(text.len() as u8);
    out.extend_from_slice(text.as_bytes());
}

fn method(class: u16, id: u16, args: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&class.to_be_bytes());
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(args);
    out
}

impl Amqps {
    fn new(stream: TlsStream) -> Self {
        Self {
            stream,
            buf: BytesMut::new(),
        }
    }

    fn send(&mut self, frame_type: u8, channel: u16, payload: &[u8]) {
        let mut out = BytesMut::new();
        codec::encode_frame(&mut out, frame_type, channel, payload);
        self.stream.write_all(&out).expect("write");
    }

    /// The next frame, or None when the connection ends.
    fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(frame) = codec::decode_frame(&mut self.buf, 1 << 20).expect("valid frame") {
                if matches!(frame.kind, FrameKind::Heartbeat) {
                    continue;
                }
                return Some(frame);
            }
            let mut chunk = [0u8; 4096];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    /// The next method frame's (class, method) ids and payload.
    fn method(&mut self) -> Option<((u16, u16), Vec<u8>)> {
        let frame = self.frame()?;
        let FrameKind::Method(payload) = frame.kind else {
            panic!("expected a method frame, got {:?}", frame.kind);
        };
        let id = (
            u16::from_be_bytes([payload[0], payload[1]]),
            u16::from_be_bytes([payload[2], payload[3]]),
        );
        Some((id, payload.to_vec()))
    }

    /// Runs the handshake with `mechanism`; the mechanisms offered, and whether open-ok came.
    fn open(&mut self, mechanism: &str, response: &[u8]) -> (String, bool) {
        self.stream
            .write_all(codec::PROTOCOL_HEADER)
            .expect("header");
        let (id, start) = self.method().expect("connection.start");
        assert_eq!(id, (10, 10));
        // version-major, version-minor, server-properties (table), mechanisms (longstr).
        let table_len = u32::from_be_bytes(start[6..10].try_into().unwrap()) as usize;
        let at = 10 + table_len;
        let len = u32::from_be_bytes(start[at..at + 4].try_into().unwrap()) as usize;
        let mechanisms = String::from_utf8(start[at + 4..at + 4 + len].to_vec()).unwrap();
        let mut args = vec![0, 0, 0, 0];
        shortstr(&mut args, mechanism);
        args.extend_from_slice(&(response.len() as u32).to_be_bytes());
        args.extend_from_slice(response);
        shortstr(&mut args, "en_US");
        self.send(codec::FRAME_METHOD, 0, &method(10, 11, &args));
        match self.method() {
            Some(((10, 30), _)) => {}
            _ => return (mechanisms, false),
        }
        let mut tune_ok = Vec::new();
        tune_ok.put_u16(16);
        tune_ok.put_u32(131_072);
        tune_ok.put_u16(0);
        self.send(codec::FRAME_METHOD, 0, &method(10, 31, &tune_ok));
        let mut open = Vec::new();
        shortstr(&mut open, "/");
        shortstr(&mut open, "");
        open.push(0);
        self.send(codec::FRAME_METHOD, 0, &method(10, 40, &open));
        let opened = matches!(self.method(), Some(((10, 41), _)));
        (mechanisms, opened)
    }

    fn channel(&mut self) {
        self.send(codec::FRAME_METHOD, 1, &method(20, 10, &[0]));
        assert_eq!(self.method().expect("channel.open-ok").0, (20, 11));
    }

    fn declare(&mut self, queue: &str) {
        let mut args = vec![0, 0];
        shortstr(&mut args, queue);
        args.push(0);
        args.extend_from_slice(&0u32.to_be_bytes());
        self.send(codec::FRAME_METHOD, 1, &method(50, 10, &args));
        assert_eq!(self.method().expect("queue.declare-ok").0, (50, 11));
    }

    fn publish(&mut self, queue: &str, body: &[u8]) {
        let mut args = vec![0, 0];
        shortstr(&mut args, "");
        shortstr(&mut args, queue);
        args.push(0);
        self.send(codec::FRAME_METHOD, 1, &method(60, 40, &args));
        let mut header = Vec::new();
        header.put_u16(60);
        header.put_u16(0);
        header.put_u64(body.len() as u64);
        header.put_u16(0);
        self.send(codec::FRAME_HEADER, 1, &header);
        self.send(codec::FRAME_BODY, 1, body);
    }

    /// basic.get with no-ack until a message comes; its body.
    fn get(&mut self, queue: &str) -> Vec<u8> {
        for _ in 0..50 {
            let mut args = vec![0, 0];
            shortstr(&mut args, queue);
            args.push(1);
            self.send(codec::FRAME_METHOD, 1, &method(60, 70, &args));
            match self.method().expect("get reply").0 {
                (60, 71) => {
                    let _header = self.frame().expect("content header");
                    let body = self.frame().expect("body");
                    let FrameKind::Body(body) = body.kind else {
                        panic!("expected a body frame");
                    };
                    return body.to_vec();
                }
                (60, 72) => std::thread::sleep(std::time::Duration::from_millis(100)),
                other => panic!("unexpected reply {other:?}"),
            }
        }
        panic!("no message in {queue}");
    }
}

fn amqps_broker(pki: &Pki, client_auth: &str) -> TestBroker {
    let mut env = pki.env(client_auth);
    env.push(("TRIBUTARY_AMQP_TLS_PORT".into(), "0".into()));
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    TestBroker::start_full(&[], &env, |root| add_user(root, "alice"))
}

#[test]
fn publish_and_get_over_amqps_and_a_plaintext_client_on_it_is_closed() {
    let dir = tempfile::Builder::new()
        .prefix("h17t-amqp")
        .tempdir()
        .unwrap();
    let pki = Pki::create(dir.path(), "amqp-ca");
    let mut broker = amqps_broker(&pki, "none");
    let amqps = broker.addr("amqps");
    assert_ne!(amqps.port(), broker.addr("amqp").port());

    // A plaintext client on the TLS port is closed; the broker serves the next one.
    assert!(tls_support::plaintext_is_refused(
        amqps,
        codec::PROTOCOL_HEADER
    ));
    let stream = tls_support::connect(amqps, pki.client_config(None)).expect("handshake");
    let mut client = Amqps::new(stream);
    let (mechanisms, opened) = client.open("PLAIN", b"\0guest\0guest");
    assert!(opened, "guest over AMQPS from loopback");
    assert!(
        !mechanisms.contains("EXTERNAL"),
        "no certificate, no EXTERNAL: {mechanisms}"
    );
    client.channel();
    client.declare("tls-q");
    client.publish("tls-q", b"over tls");
    assert_eq!(client.get("tls-q"), b"over tls");
}

#[test]
fn external_logs_in_the_broker_user_named_by_the_certificate_cn() {
    let dir = tempfile::Builder::new()
        .prefix("h17t-amqp")
        .tempdir()
        .unwrap();
    let pki = Pki::create(dir.path(), "amqp-ca");
    let mut broker = amqps_broker(&pki, "optional");
    let amqps = broker.addr("amqps");

    let alice = pki.client("alice");
    let stream = tls_support::connect(amqps, pki.client_config(Some(&alice))).expect("handshake");
    let mut client = Amqps::new(stream);
    let (mechanisms, opened) = client.open("EXTERNAL", b"");
    assert!(
        mechanisms.split(' ').any(|m| m == "EXTERNAL"),
        "{mechanisms}"
    );
    assert!(opened, "CN=alice is a broker user");
    client.channel();
    client.declare("external-q");
    client.publish("external-q", b"as alice");
    assert_eq!(client.get("external-q"), b"as alice");

    // A certificate whose CN is no broker user is refused (403), as is EXTERNAL without one.
    let mallory = pki.client("mallory");
    let stream = tls_support::connect(amqps, pki.client_config(Some(&mallory))).expect("handshake");
    let (_, opened) = Amqps::new(stream).open("EXTERNAL", b"");
    assert!(!opened, "CN=mallory is not a user");
    let stream = tls_support::connect(amqps, pki.client_config(None)).expect("handshake");
    let (_, opened) = Amqps::new(stream).open("EXTERNAL", b"");
    assert!(!opened, "EXTERNAL without a certificate");
    broker.wait_for_line(
        &["AMQP login refused", "mallory"],
        std::time::Duration::from_secs(5),
    );
}
