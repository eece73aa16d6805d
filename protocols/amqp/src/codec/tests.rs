//! Golden-byte and hostile-input tests of the codec. The byte strings are written out from the
//! AMQP 0-9-1 wire format; the method sequences follow the lapin, pika and amqplib captures in
//! the project's reference notes (`captures/amqp-*.log`, decoded text, not raw bytes).

use bytes::{BufMut, Bytes, BytesMut};

use super::content::{BasicProperties, ContentHeader};
use super::methods::{Method, peek_id};
use super::table::{FieldTable, FieldValue, MAX_DEPTH};
use super::wire::Reader;
use super::*;

fn frame(frame_type: u8, channel: u16, payload: &[u8]) -> BytesMut {
    let mut out = BytesMut::new();
    encode_frame(&mut out, frame_type, channel, payload);
    out
}

#[test]
fn protocol_header_is_checked_incrementally() {
    assert_eq!(check_protocol_header(b"AMQ"), HeaderCheck::Incomplete);
    assert_eq!(
        check_protocol_header(b"AMQP\x00\x00\x09\x01"),
        HeaderCheck::Accepted
    );
    assert_eq!(
        check_protocol_header(b"AMQP\x00\x01\x00\x00"),
        HeaderCheck::Rejected
    );
    assert_eq!(check_protocol_header(b"GET / HT"), HeaderCheck::Rejected);
    assert_eq!(check_protocol_header(b"G"), HeaderCheck::Rejected);
}

#[test]
fn heartbeat_golden_bytes() {
    let mut out = BytesMut::new();
    encode_heartbeat(&mut out);
    assert_eq!(out.as_ref(), &[8, 0, 0, 0, 0, 0, 0, 0xCE]);
    let decoded = decode_frame(&mut out, 4096).unwrap().unwrap();
    assert_eq!(
        decoded,
        Frame {
            channel: 0,
            kind: FrameKind::Heartbeat
        }
    );
    assert!(out.is_empty());
}

#[test]
fn tune_golden_bytes() {
    let mut out = BytesMut::new();
    encode_method(
        &mut out,
        0,
        &Method::ConnectionTune {
            channel_max: 2047,
            frame_max: 131_072,
            heartbeat: 60,
        },
    );
    let expected: &[u8] = &[
        1, 0, 0, 0, 0, 0, 12, // method frame, channel 0, size 12
        0, 10, 0, 30, // connection.tune
        0x07, 0xFF, 0, 2, 0, 0, 0, 60, // 2047, 131072, 60
        0xCE,
    ];
    assert_eq!(out.as_ref(), expected);
}

#[test]
fn oversized_frame_is_refused_from_its_header_alone() {
    // Only the 7-byte header of a 10 MB frame has arrived: refuse now, do not wait or buffer.
    let mut buf = BytesMut::from(&[1u8, 0, 1, 0x00, 0x98, 0x96, 0x80][..]);
    let error = decode_frame(&mut buf, 131_072).unwrap_err();
    assert_eq!(
        error,
        CodecError::FrameTooLarge {
            frame_type: 1,
            size: 10_000_000,
            frame_max: 131_072
        }
    );
    assert_eq!(
        error.to_string(),
        "type 1, all octets = <<>>: {frame_too_large,10000000,131064}"
    );
    // Exactly frame_max on the wire is fine.
    let mut fits = frame(FRAME_BODY, 1, &vec![0u8; 4096 - FRAME_OVERHEAD]);
    assert!(decode_frame(&mut fits, 4096).unwrap().is_some());
    let mut over = frame(FRAME_BODY, 1, &vec![0u8; 4096 - FRAME_OVERHEAD + 1]);
    assert!(matches!(
        decode_frame(&mut over, 4096),
        Err(CodecError::FrameTooLarge { .. })
    ));
}

#[test]
fn incomplete_frames_are_not_consumed() {
    let full = frame(FRAME_BODY, 3, b"hello");
    for cut in 0..full.len() {
        let mut partial = BytesMut::from(&full[..cut]);
        assert_eq!(decode_frame(&mut partial, 4096), Ok(None), "cut at {cut}");
        assert_eq!(partial.len(), cut);
    }
    let mut two = full.clone();
    two.extend_from_slice(&full);
    assert!(decode_frame(&mut two, 4096).unwrap().is_some());
    assert_eq!(two.len(), full.len(), "exactly one frame consumed");
}

#[test]
fn bad_end_marker_unknown_type_and_channel_heartbeat() {
    let mut bad_end = frame(FRAME_BODY, 1, b"x");
    let last = bad_end.len() - 1;
    bad_end[last] = 0;
    assert_eq!(
        decode_frame(&mut bad_end, 4096).unwrap_err().to_string(),
        "type 3, all octets = <<\"x\">>: {invalid_frame_end_marker,0}"
    );
    let mut unknown = frame(9, 1, &[0, 60, 0, 10]);
    assert_eq!(
        decode_frame(&mut unknown, 4096).unwrap_err().to_string(),
        "type 9, all octets = <<0,60,0,10>>: unknown_frame"
    );
    let mut long = frame(9, 1, &[b'a'; 20]);
    assert_eq!(
        decode_frame(&mut long, 4096).unwrap_err().to_string(),
        "type 9, first 16 octets = <<\"aaaaaaaaaaaaaaaa\">>: unknown_frame"
    );
    let mut beat = frame(FRAME_HEARTBEAT, 5, b"");
    assert!(matches!(
        decode_frame(&mut beat, 4096),
        Err(CodecError::HeartbeatOnChannel { channel: 5, .. })
    ));
}

/// basic.publish as lapin sends it: ticket 0, exchange "", routing key "probe_lq", no flags.
#[test]
fn decodes_basic_publish_and_queue_declare() {
    let mut publish = vec![0, 60, 0, 40, 0, 0, 0, 8];
    publish.extend_from_slice(b"probe_lq");
    publish.push(0b01); // mandatory
    assert_eq!(
        Method::decode(&publish).unwrap(),
        Method::BasicPublish {
            exchange: String::new(),
            routing_key: "probe_lq".into(),
            mandatory: true,
            immediate: false
        }
    );
    // queue.declare name='probe_lq' flags=00010 (durable) args={} as in the lapin capture.
    let mut declare = vec![0, 50, 0, 10, 0, 0, 8];
    declare.extend_from_slice(b"probe_lq");
    declare.extend_from_slice(&[0b0000_0010, 0, 0, 0, 0]);
    let Method::QueueDeclare(decl) = Method::decode(&declare).unwrap() else {
        panic!("not a queue.declare");
    };
    assert_eq!(decl.queue, "probe_lq");
    assert!(decl.durable && !decl.passive && !decl.exclusive && !decl.auto_delete && !decl.nowait);
    assert!(decl.arguments.is_empty());
    assert_eq!(peek_id(&declare), Some((50, 10)));
}

#[test]
fn decodes_start_ok_qos_and_nack() {
    let mut start_ok = vec![0, 10, 0, 11];
    let mut props = FieldTable::default();
    props.insert(
        "product",
        FieldValue::LongString(Bytes::from_static(b"lapin")),
    );
    let mut table = BytesMut::new();
    props.encode(&mut table);
    start_ok.extend_from_slice(&table);
    start_ok.extend_from_slice(&[5, b'P', b'L', b'A', b'I', b'N']);
    start_ok.extend_from_slice(&[
        0, 0, 0, 12, 0, b'g', b'u', b'e', b's', b't', 0, b'g', b'u', b'e', b's', b't',
    ]);
    start_ok.extend_from_slice(&[5, b'e', b'n', b'_', b'U', b'S']);
    let Method::ConnectionStartOk {
        client_properties,
        mechanism,
        response,
    } = Method::decode(&start_ok).unwrap()
    else {
        panic!("not start-ok");
    };
    assert_eq!(client_properties, props);
    assert_eq!(mechanism, "PLAIN");
    assert_eq!(response.as_ref(), b"\0guest\0guest");

    let qos = [0, 60, 0, 10, 0, 0, 0, 0, 0, 10, 0];
    assert_eq!(
        Method::decode(&qos).unwrap(),
        Method::BasicQos {
            prefetch_size: 0,
            prefetch_count: 10,
            global: false
        }
    );
    let nack = [0, 60, 0, 120, 0, 0, 0, 0, 0, 0, 0, 7, 0b11];
    assert_eq!(
        Method::decode(&nack).unwrap(),
        Method::BasicNack {
            delivery_tag: 7,
            multiple: true,
            requeue: true
        }
    );
}

#[test]
fn truncated_or_unknown_methods_are_errors_not_panics() {
    let mut declare = vec![0, 50, 0, 10, 0, 0, 8];
    declare.extend_from_slice(b"probe_lq");
    declare.extend_from_slice(&[0, 0, 0, 0, 0]);
    for cut in 0..declare.len() {
        assert!(Method::decode(&declare[..cut]).is_err(), "cut at {cut}");
    }
    assert_eq!(
        Method::decode(&[0, 99, 0, 1]),
        Err(CodecError::UnknownMethod {
            class_id: 99,
            method_id: 1
        })
    );
    // A short string longer than the payload.
    assert_eq!(
        Method::decode(&[0, 60, 0, 30, 200, b'a']),
        Err(CodecError::Truncated)
    );
}

#[test]
fn field_tables_round_trip_every_rabbitmq_type() {
    let mut nested = FieldTable::default();
    nested.insert("inner", FieldValue::Bool(false));
    let values = vec![
        FieldValue::Bool(true),
        FieldValue::I8(-3),
        FieldValue::U8(250),
        FieldValue::I16(-300),
        FieldValue::U16(60_000),
        FieldValue::I32(-70_000),
        FieldValue::U32(4_000_000_000),
        FieldValue::I64(-1 << 40),
        FieldValue::U64(1 << 63),
        FieldValue::F32(1.5),
        FieldValue::F64(-2.25),
        FieldValue::Decimal {
            scale: 2,
            value: 12345,
        },
        FieldValue::LongString(Bytes::from_static(b"text")),
        FieldValue::ByteArray(Bytes::from_static(&[0, 1, 2])),
        FieldValue::Array(vec![
            FieldValue::I32(1),
            FieldValue::LongString(Bytes::from_static(b"two")),
        ]),
        FieldValue::Timestamp(1_700_000_000),
        FieldValue::Table(nested),
        FieldValue::Void,
    ];
    let table = FieldTable(
        values
            .into_iter()
            .enumerate()
            .map(|(i, v)| (format!("k{i}"), v))
            .collect(),
    );
    let mut wire = BytesMut::new();
    table.encode(&mut wire);
    let back = FieldTable::decode(&mut Reader::new(&wire)).unwrap();
    assert_eq!(back, table);
    // Key order and duplicates survive (a Vec, not a map).
    let dup = FieldTable(vec![
        ("b".into(), FieldValue::U8(1)),
        ("a".into(), FieldValue::U8(2)),
        ("b".into(), FieldValue::U8(3)),
    ]);
    let mut wire = BytesMut::new();
    dup.encode(&mut wire);
    assert_eq!(FieldTable::decode(&mut Reader::new(&wire)).unwrap(), dup);
}

#[test]
fn field_table_limits() {
    // Unknown tag.
    let bad = [0, 0, 0, 3, 1, b'k', b'?'];
    assert_eq!(
        FieldTable::decode(&mut Reader::new(&bad)),
        Err(CodecError::BadFieldType(b'?'))
    );
    // Declared length beyond the input.
    let short = [0, 0, 0, 50, 1, b'k'];
    assert_eq!(
        FieldTable::decode(&mut Reader::new(&short)),
        Err(CodecError::Truncated)
    );
    // Nesting deeper than MAX_DEPTH.
    let mut value = FieldValue::Void;
    for _ in 0..=MAX_DEPTH + 1 {
        value = FieldValue::Table(FieldTable(vec![("n".into(), value)]));
    }
    let mut wire = BytesMut::new();
    FieldTable(vec![("root".into(), value)]).encode(&mut wire);
    assert_eq!(
        FieldTable::decode(&mut Reader::new(&wire)),
        Err(CodecError::TooDeep)
    );
}

#[test]
fn content_header_keeps_raw_properties_and_parses_them() {
    // flags 0x1800: delivery-mode (bit 12) and priority (bit 11).
    let mut payload = BytesMut::new();
    payload.put_u16(60);
    payload.put_u16(0);
    payload.put_u64(6);
    payload.extend_from_slice(&[0x18, 0x00, 2, 7]);
    let header = ContentHeader::decode(&payload.clone().freeze()).unwrap();
    assert_eq!(header.body_size, 6);
    assert_eq!(header.raw_properties.as_ref(), &[0x18, 0x00, 2, 7]);
    let props = BasicProperties::parse(&header.raw_properties).unwrap();
    assert_eq!((props.delivery_mode, props.priority), (Some(2), Some(7)));
    let mut again = BytesMut::new();
    ContentHeader::encode_raw(&mut again, 6, &header.raw_properties);
    assert_eq!(again, payload);
    // A continuation flag or another class is refused.
    assert_eq!(
        BasicProperties::parse(&[0, 1]),
        Err(CodecError::PropertyContinuation)
    );
    let mut other = BytesMut::new();
    other.put_u16(50);
    other.put_u16(0);
    other.put_u64(0);
    other.put_u16(0);
    assert_eq!(
        ContentHeader::decode(&other.freeze()),
        Err(CodecError::BadContentClass(50))
    );
}

#[test]
fn bodies_are_split_at_frame_max() {
    let body = vec![7u8; 10_000];
    let mut out = BytesMut::new();
    let deliver = Method::BasicDeliver {
        consumer_tag: "c".into(),
        delivery_tag: 1,
        redelivered: false,
        exchange: String::new(),
        routing_key: "q".into(),
    };
    encode_message(&mut out, 1, &deliver, &[0, 0], &body, 4096);
    let mut kinds = Vec::new();
    while let Some(frame) = decode_frame(&mut out, 4096).unwrap() {
        kinds.push(match frame.kind {
            FrameKind::Method(_) => ("method", 0),
            FrameKind::Header(_) => ("header", 0),
            FrameKind::Body(b) => ("body", b.len()),
            FrameKind::Heartbeat => ("heartbeat", 0),
        });
    }
    assert_eq!(
        kinds,
        [
            ("method", 0),
            ("header", 0),
            ("body", 4088),
            ("body", 4088),
            ("body", 1824)
        ]
    );
    let mut empty = BytesMut::new();
    encode_message(&mut empty, 1, &deliver, &[0, 0], &[], 4096);
    let mut frames = 0;
    while decode_frame(&mut empty, 4096).unwrap().is_some() {
        frames += 1;
    }
    assert_eq!(frames, 2, "an empty body has no body frame");
}

#[test]
fn message_pieces_join_to_the_copied_frames_and_borrow_the_body() {
    let deliver = Method::BasicDeliver {
        consumer_tag: "c".into(),
        delivery_tag: 1,
        redelivered: false,
        exchange: String::new(),
        routing_key: "q".into(),
    };
    for len in [0usize, 1, 4087, 4088, 4089, 10_000] {
        let body = Bytes::from((0..len).map(|i| i as u8).collect::<Vec<u8>>());
        let mut copied = BytesMut::new();
        encode_message(&mut copied, 3, &deliver, &[0, 0], &body, 4096);
        let pieces = message_pieces(3, &deliver, &[0, 0], &body, 4096);
        let joined: Vec<u8> = pieces.iter().flat_map(|p| p.iter().copied()).collect();
        assert_eq!(joined, copied.to_vec(), "a {len} byte body");
        let borrowed: usize = pieces
            .iter()
            .filter(|p| body.as_ptr_range().contains(&p.as_ptr()))
            .map(|p| p.len())
            .sum();
        assert_eq!(
            borrowed, len,
            "every body byte of a {len} byte body is a slice of it"
        );
    }
}

#[test]
fn properties_encode_round_trips_every_field() {
    let mut headers = FieldTable::default();
    headers.insert("z", FieldValue::I32(1));
    headers.insert("a", FieldValue::LongString(Bytes::from_static(b"x")));
    let props = BasicProperties {
        content_type: Some("text/plain".into()),
        content_encoding: Some("gzip".into()),
        headers: Some(headers),
        delivery_mode: Some(2),
        priority: Some(5),
        correlation_id: Some("c".into()),
        reply_to: Some("r".into()),
        expiration: Some("1000".into()),
        message_id: Some("m".into()),
        timestamp: Some(1_700_000_000),
        kind: Some("t".into()),
        user_id: Some("guest".into()),
        app_id: Some("app".into()),
        cluster_id: Some("cl".into()),
    };
    let raw = props.encode();
    assert_eq!(BasicProperties::parse(&raw).unwrap(), props);
    assert_eq!(BasicProperties::default().encode().as_ref(), &[0, 0]);
    // flags 0x9000 (content-type + delivery-mode), as pika sends them.
    let pika = BasicProperties {
        content_type: Some("text/plain".into()),
        delivery_mode: Some(2),
        ..Default::default()
    };
    assert_eq!(&pika.encode()[..2], &[0x90, 0x00]);
}

mod hostile_input {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Arbitrary bytes never panic the decoders; they decode or return an error.
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut buf = BytesMut::from(&bytes[..]);
            while let Ok(Some(frame)) = decode_frame(&mut buf, 4096) {
                match frame.kind {
                    FrameKind::Method(payload) => { let _ = Method::decode(&payload); }
                    FrameKind::Header(payload) => { let _ = ContentHeader::decode(&payload); }
                    FrameKind::Body(_) | FrameKind::Heartbeat => {}
                }
            }
            let _ = Method::decode(&bytes);
            let _ = FieldTable::decode(&mut Reader::new(&bytes));
            let _ = BasicProperties::parse(&bytes);
            let _ = ContentHeader::decode(&Bytes::copy_from_slice(&bytes));
        }

        /// Valid method payloads with any class/method prefix and mutated argument bytes.
        #[test]
        fn mutated_methods_never_panic(class in prop::sample::select(vec![10u16, 20, 40, 50, 60, 85, 90]), method in 0u16..130, args in proptest::collection::vec(any::<u8>(), 0..64)) {
            let mut payload = Vec::with_capacity(4 + args.len());
            payload.extend_from_slice(&class.to_be_bytes());
            payload.extend_from_slice(&method.to_be_bytes());
            payload.extend_from_slice(&args);
            let _ = Method::decode(&payload);
        }
    }
}
