//! The fuzz seed corpus, built from the client sequences of the reference captures, and its
//! replay: every seed file decodes (or is refused) without a panic, deterministic mutations of
//! every seed do too, and the files on disk are exactly what [`seed_corpus`] builds (set
//! `TRIBUTARY_WRITE_AMQP_CORPUS=1` to rewrite them after a codec change).

use std::path::PathBuf;

use bytes::{BufMut, Bytes, BytesMut};

use super::super::content::BasicProperties;
use super::super::methods::{Binding, Consume, ExchangeDeclare, Method, QueueDeclare};
use super::super::table::{FieldTable, FieldValue};
use super::super::{
    FRAME_BODY, FRAME_HEADER, PROTOCOL_HEADER, encode_frame, encode_heartbeat, encode_message,
    encode_method,
};
use super::super::{FrameKind, decode_frame};
use super::{CHECK_FRAME_MAX, check_decoders, check_method_payload};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/frame_decoder")
}

fn methods(channel: u16, list: &[Method]) -> BytesMut {
    let mut out = BytesMut::new();
    for method in list {
        encode_method(&mut out, channel, method);
    }
    out
}

fn text(value: &str) -> FieldValue {
    FieldValue::LongString(Bytes::copy_from_slice(value.as_bytes()))
}

/// The start-ok lapin sent (capabilities as in `amqp-lapin.log`).
fn lapin_start_ok(mechanism: &str, response: &[u8]) -> Method {
    let mut capabilities = FieldTable::default();
    for name in [
        "authentication_failure_close",
        "basic.nack",
        "connection.blocked",
        "consumer_cancel_notify",
        "publisher_confirms",
    ] {
        capabilities.insert(name, FieldValue::Bool(true));
    }
    let mut client = FieldTable::default();
    client.insert("capabilities", FieldValue::Table(capabilities));
    client.insert("product", text("lapin"));
    Method::ConnectionStartOk {
        client_properties: client,
        mechanism: mechanism.into(),
        response: Bytes::copy_from_slice(response),
    }
}

/// (file name, bytes) of every seed, in name order.
pub(super) fn seed_corpus() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<(String, BytesMut)> = Vec::new();
    let mut handshake = BytesMut::from(&PROTOCOL_HEADER[..]);
    handshake.extend_from_slice(&methods(
        0,
        &[
            lapin_start_ok("PLAIN", b"\0guest\0guest"),
            Method::ConnectionTuneOk {
                channel_max: 2047,
                frame_max: 131_072,
                heartbeat: 60,
            },
            Method::ConnectionOpen {
                virtual_host: "/".into(),
            },
        ],
    ));
    seeds.push(("lapin_handshake_plain".into(), handshake));
    let mut amqplain = FieldTable::default();
    amqplain.insert("LOGIN", text("guest"));
    amqplain.insert("PASSWORD", text("guest"));
    let mut response = BytesMut::new();
    amqplain.encode(&mut response);
    seeds.push((
        "amqplib_start_ok_amqplain".into(),
        methods(0, &[lapin_start_ok("AMQPLAIN", &response[4..])]),
    ));
    let mut arguments = FieldTable::default();
    arguments.insert("x-message-ttl", FieldValue::I32(60_000));
    arguments.insert("x-dead-letter-exchange", text("dlx"));
    seeds.push((
        "lapin_declare_and_confirm".into(),
        methods(
            1,
            &[
                Method::ChannelOpen,
                Method::ConfirmSelect { nowait: false },
                Method::QueueDeclare(QueueDeclare {
                    queue: "probe_lq".into(),
                    durable: true,
                    arguments,
                    ..Default::default()
                }),
                Method::ExchangeDeclare(ExchangeDeclare {
                    exchange: "orders".into(),
                    kind: "topic".into(),
                    durable: true,
                    ..Default::default()
                }),
                Method::QueueBind(Binding {
                    destination: "probe_lq".into(),
                    source: "orders".into(),
                    routing_key: "eu.#".into(),
                    ..Default::default()
                }),
            ],
        ),
    ));
    let properties = BasicProperties {
        content_type: Some("application/json".into()),
        delivery_mode: Some(2),
        headers: Some({
            let mut headers = FieldTable::default();
            headers.insert("tenant", text("acme"));
            headers.insert("attempt", FieldValue::I64(3));
            headers
        }),
        ..Default::default()
    };
    let publish = Method::BasicPublish {
        exchange: String::new(),
        routing_key: "probe_lq".into(),
        mandatory: true,
        immediate: false,
    };
    let mut message = BytesMut::new();
    let raw = properties.encode();
    encode_message(&mut message, 1, &publish, &raw, &[7u8; 300], 4096);
    seeds.push(("lapin_publish_split_body".into(), message));
    seeds.push((
        "lapin_consume_ack_cancel".into(),
        methods(
            1,
            &[
                Method::BasicQos {
                    prefetch_size: 0,
                    prefetch_count: 10,
                    global: false,
                },
                Method::BasicConsume(Consume {
                    queue: "probe_lq".into(),
                    consumer_tag: "lapin_ctag".into(),
                    ..Default::default()
                }),
                Method::BasicAck {
                    delivery_tag: 1,
                    multiple: false,
                },
                Method::BasicNack {
                    delivery_tag: 2,
                    multiple: true,
                    requeue: true,
                },
                Method::BasicGet {
                    queue: "probe_lq".into(),
                    no_ack: true,
                },
                Method::BasicCancel {
                    consumer_tag: "lapin_ctag".into(),
                    nowait: false,
                },
                Method::QueueDelete {
                    queue: "probe_lq".into(),
                    if_unused: false,
                    if_empty: false,
                    nowait: false,
                },
                Method::TxSelect,
                Method::ChannelClose {
                    reply_code: 200,
                    reply_text: "OK".into(),
                    class_id: 0,
                    method_id: 0,
                },
            ],
        ),
    ));
    let mut close = methods(
        0,
        &[Method::ConnectionClose {
            reply_code: 200,
            reply_text: "Normal shutdown".into(),
            class_id: 0,
            method_id: 0,
        }],
    );
    encode_heartbeat(&mut close);
    seeds.push(("pika_close_and_heartbeat".into(), close));
    let mut oversized = BytesMut::new();
    oversized.put_u8(1);
    oversized.put_u16(1);
    oversized.put_u32(10_000_000);
    seeds.push(("hostile_oversized_frame".into(), oversized));
    let mut bad_end = BytesMut::new();
    encode_frame(&mut bad_end, FRAME_BODY, 1, b"abc");
    let last = bad_end.len() - 1;
    bad_end[last] = 0;
    seeds.push(("hostile_bad_frame_end".into(), bad_end));
    let mut header_only = BytesMut::new();
    encode_frame(
        &mut header_only,
        FRAME_HEADER,
        1,
        &[0, 60, 0, 0, 0xff, 0xff],
    );
    seeds.push(("hostile_truncated_header".into(), header_only));
    let mut unknown = BytesMut::new();
    encode_frame(&mut unknown, 1, 1, &[0, 99, 0, 7, 1, 2, 3]);
    encode_frame(&mut unknown, 9, 0, &[]);
    seeds.push(("hostile_unknown_method_and_type".into(), unknown));
    let mut out: Vec<(String, Vec<u8>)> = seeds
        .into_iter()
        .map(|(name, bytes)| (format!("{name}.bin"), bytes.to_vec()))
        .collect();
    out.sort();
    out
}

fn corpus_files() -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<_> = std::fs::read_dir(corpus_dir())
        .expect("corpus directory")
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("corpus file"))
        })
        .collect();
    files.sort();
    files
}

#[test]
fn corpus_files_are_the_built_seeds() {
    let seeds = seed_corpus();
    if std::env::var_os("TRIBUTARY_WRITE_AMQP_CORPUS").is_some() {
        std::fs::create_dir_all(corpus_dir()).unwrap();
        for (name, bytes) in &seeds {
            std::fs::write(corpus_dir().join(name), bytes).unwrap();
        }
    }
    let files = corpus_files();
    for (name, bytes) in &seeds {
        let on_disk = files.iter().find(|(file, _)| file == name);
        assert_eq!(
            on_disk.map(|(_, b)| b),
            Some(bytes),
            "{name} is out of date"
        );
    }
    // The builder decodes its own client frames as a server must.
    assert!(seeds.len() >= 10);
}

#[test]
fn fuzz_corpus_replays_and_mutations_never_panic() {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for (_, data) in corpus_files() {
        check_decoders(&data);
        for cut in 0..data.len().min(96) {
            check_decoders(&data[..cut]);
        }
        for _ in 0..1_000 {
            let mut mutated = data.clone();
            let at = (next() as usize) % mutated.len();
            mutated[at] ^= (next() as u8) | 1;
            if next() % 4 == 0 && mutated.len() >= 7 {
                // Rewrite a frame size word to a random value.
                let word = ((next() as u32) % (2 * CHECK_FRAME_MAX)).to_be_bytes();
                let slot = 3 + (next() as usize) % (mutated.len() - 6);
                mutated[slot..slot + 4].copy_from_slice(&word);
            }
            check_decoders(&mutated);
        }
    }
}

fn payload_corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/method_payload")
}

/// Seeds of `method_payload`: the method and content-header payloads of every frame seed, and
/// a field table of every value type.
fn payload_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for (name, bytes) in seed_corpus() {
        let stem = name.trim_end_matches(".bin");
        let start = if bytes.starts_with(b"AMQP") { 8 } else { 0 };
        let mut buf = BytesMut::from(&bytes[start..]);
        let mut index = 0;
        while let Ok(Some(frame)) = decode_frame(&mut buf, CHECK_FRAME_MAX) {
            if let FrameKind::Method(payload) | FrameKind::Header(payload) = frame.kind {
                seeds.push((format!("{stem}_{index}.bin"), payload.to_vec()));
                index += 1;
            }
        }
    }
    let mut table = FieldTable::default();
    table.insert("bool", FieldValue::Bool(true));
    table.insert("i32", FieldValue::I32(-7));
    table.insert("i64", FieldValue::I64(1 << 40));
    table.insert("text", text("value"));
    let mut nested = FieldTable::default();
    nested.insert("inner", text("x"));
    table.insert("table", FieldValue::Table(nested));
    let mut encoded = BytesMut::new();
    table.encode(&mut encoded);
    seeds.push(("field_table_mixed.bin".into(), encoded.to_vec()));
    seeds.sort();
    seeds
}

#[test]
fn method_payload_corpus_replays_with_mutations() {
    let seeds = payload_seeds();
    let dir = payload_corpus_dir();
    if std::env::var_os("TRIBUTARY_WRITE_AMQP_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(name), bytes).unwrap();
        }
    }
    let files: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("corpus directory")
        .map(|entry| std::fs::read(entry.expect("corpus entry").path()).expect("corpus file"))
        .collect();
    for (name, bytes) in &seeds {
        assert!(
            files.contains(bytes),
            "method_payload/{name} is out of date"
        );
    }
    let mut state = 0x51_7CC1_B727_220Au64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for data in &files {
        check_method_payload(data);
        for cut in 0..data.len().min(32) {
            check_method_payload(&data[..cut]);
        }
        for _ in 0..200 {
            let mut mutated = data.clone();
            let at = (next() as usize) % mutated.len().max(1);
            if let Some(byte) = mutated.get_mut(at) {
                *byte ^= (next() as u8) | 1;
            }
            check_method_payload(&mutated);
        }
    }
    assert!(files.len() >= 20, "{} payload seeds", files.len());
}
