use bytes::BufMut;

use super::*;

fn record() -> Record {
    Record {
        key: Some(Bytes::from_static(b"k")),
        value: None,
        timestamp: 1_700_000_000_000,
        headers: vec![
            (Bytes::from_static(b"a"), Some(Bytes::from_static(b"1"))),
            (Bytes::from_static(b"b"), None),
        ],
    }
}

fn every_frame() -> Vec<Frame> {
    let delivery = Delivery {
        id: 7,
        record: record(),
        redelivered: true,
        returns: 2,
    };
    let requests = vec![
        Request::Declare {
            queue: "q".into(),
            options: QueueOptions {
                durable: true,
                durability: Some(Durability::Interval(Duration::from_millis(5))),
                max_priority: Some(9),
                count_bytes: true,
            },
        },
        Request::Declare {
            queue: "q".into(),
            options: QueueOptions::default(),
        },
        Request::Delete { queue: "q".into() },
        Request::Purge { queue: "q".into() },
        Request::Enqueue {
            queue: "q".into(),
            batch: Bytes::from_static(b"batch"),
        },
        Request::Take {
            queue: "q".into(),
            max: 3,
        },
        Request::TakeHead {
            queue: "q".into(),
            max: 3,
            filter: HeadFilter::HeaderAtMost {
                header: Bytes::from_static(b"amqp.expires"),
                at_most: -5,
            },
        },
        Request::TakeHead {
            queue: "q".into(),
            max: 1,
            filter: HeadFilter::All,
        },
        Request::WaitReady {
            queue: "q".into(),
            timeout: Duration::from_millis(1500),
        },
        Request::Ack {
            queue: "q".into(),
            ids: vec![1, 2, u64::MAX],
        },
        Request::Requeue {
            queue: "q".into(),
            ids: vec![],
        },
        Request::Depth { queue: "q".into() },
        Request::Append {
            topic: "t".into(),
            partition: 4,
            batch: Bytes::from_static(b"x"),
        },
    ];
    let replies = vec![
        Ok(Reply::Depth(QueueDepth {
            ready: 1,
            unacked: 2,
            ready_bytes: 3,
        })),
        Ok(Reply::Count(9)),
        Ok(Reply::Appended(AppendOutcome {
            base_offset: 1,
            last_offset: 2,
            log_append_time: 3,
            log_start: 0,
        })),
        Ok(Reply::Deliveries(vec![delivery.clone(), delivery.clone()])),
        Ok(Reply::HeadTake(HeadTake {
            taken: vec![delivery],
            head: Some(record()),
        })),
        Ok(Reply::HeadTake(HeadTake::default())),
        Ok(Reply::Ready(true)),
        Ok(Reply::Done),
        Err(WireError::UnknownQueue("q".into())),
        Err(WireError::UnknownDelivery(5)),
        Err(WireError::InvalidName("a b".into())),
        Err(WireError::UnknownTopic("t".into())),
        Err(WireError::BatchTooLarge { size: 9, limit: 1 }),
        Err(WireError::ShuttingDown),
        Err(WireError::Unavailable("no lease".into())),
    ];
    let mut frames = vec![
        Frame::Hello {
            broker_id: 3,
            secret: Bytes::from_static(b"secret"),
        },
        Frame::Welcome,
    ];
    frames.extend(
        requests
            .into_iter()
            .enumerate()
            .map(|(id, request)| Frame::Request {
                id: id as u64,
                request,
            }),
    );
    frames.extend(
        replies
            .into_iter()
            .enumerate()
            .map(|(id, reply)| Frame::Response {
                id: id as u64 + 100,
                reply,
            }),
    );
    frames
}

fn encoded(frame: &Frame) -> BytesMut {
    let mut out = Outgoing::default();
    encode_frame(frame, &mut out).unwrap();
    out.to_bytes()
}

#[test]
fn every_frame_round_trips_even_when_several_arrive_at_once() {
    let frames = every_frame();
    let mut stream = BytesMut::new();
    for frame in &frames {
        stream.extend_from_slice(&encoded(frame));
    }
    let mut decoded = Vec::new();
    while let Some(frame) = decode_frame(&mut stream).unwrap() {
        decoded.push(frame);
    }
    assert_eq!(decoded, frames);
    assert!(stream.is_empty());
}

#[test]
fn a_truncated_frame_waits_for_more_bytes_at_every_cut() {
    for frame in every_frame() {
        let whole = encoded(&frame);
        for cut in 0..whole.len() {
            let mut partial = BytesMut::from(&whole[..cut]);
            assert_eq!(
                decode_frame(&mut partial),
                Ok(None),
                "{frame:?} cut at {cut}"
            );
            assert_eq!(
                partial.len(),
                cut,
                "nothing is consumed before the frame is whole"
            );
        }
    }
}

#[test]
fn a_body_cut_short_inside_its_length_is_an_error_not_a_panic() {
    for frame in every_frame() {
        let whole = encoded(&frame);
        // Shrink the body while keeping the length prefix consistent with it.
        for body_len in HEADER_BYTES..whole.len() - 4 {
            let mut cut = BytesMut::new();
            cut.put_u32(body_len as u32);
            cut.extend_from_slice(&whole[4..4 + body_len]);
            match decode_frame(&mut cut) {
                Err(_) => {}
                // A shorter prefix can be a valid frame of its own (an empty id list).
                Ok(Some(_)) => {}
                Ok(None) => panic!("{frame:?}: a whole frame must decode or fail"),
            }
        }
    }
}

#[test]
fn an_oversized_length_is_refused_before_buffering() {
    let mut buf = BytesMut::new();
    buf.put_u32(MAX_FRAME_BYTES as u32 + 1);
    buf.put_u8(KIND_REQUEST);
    let capacity = buf.capacity();
    assert_eq!(
        decode_frame(&mut buf),
        Err(CodecError::TooLarge(MAX_FRAME_BYTES + 1))
    );
    assert_eq!(buf.capacity(), capacity, "no room reserved for it");
    let mut short = BytesMut::new();
    short.put_u32(3);
    short.put_slice(&[KIND_WELCOME, 0, 0]);
    assert_eq!(decode_frame(&mut short), Err(CodecError::TooShort(3)));
}

#[test]
fn a_count_larger_than_the_frame_is_refused_without_allocating() {
    let mut body = BytesMut::new();
    body.put_u8(KIND_REQUEST);
    body.put_u64(1);
    body.put_u8(8); // ack
    body.put_u16(1);
    body.put_u8(b'q');
    body.put_u32(u32::MAX); // ids claimed
    let mut frame = BytesMut::new();
    frame.put_u32(body.len() as u32);
    frame.extend_from_slice(&body);
    assert_eq!(
        decode_frame(&mut frame),
        Err(CodecError::Truncated("delivery ids"))
    );
}

#[test]
fn unknown_kinds_operations_and_tags_are_errors() {
    let mut frame = BytesMut::new();
    frame.put_u32(HEADER_BYTES as u32);
    frame.put_u8(42);
    frame.put_u64(0);
    assert_eq!(decode_frame(&mut frame), Err(CodecError::UnknownKind(42)));

    let mut request = encoded(&Frame::Request {
        id: 1,
        request: Request::Depth { queue: "q".into() },
    });
    request[4 + HEADER_BYTES] = 200;
    assert_eq!(
        decode_frame(&mut request),
        Err(CodecError::UnknownTag {
            what: "operation",
            tag: 200
        })
    );

    let mut reply = encoded(&Frame::Response {
        id: 1,
        reply: Ok(Reply::Done),
    });
    reply[4 + HEADER_BYTES] = 99;
    assert_eq!(
        decode_frame(&mut reply),
        Err(CodecError::UnknownTag {
            what: "reply",
            tag: 99
        })
    );
}

#[test]
fn trailing_bytes_after_a_body_are_refused() {
    let mut frame = encoded(&Frame::Welcome);
    frame.put_u8(0);
    let len = (frame.len() - 4) as u32;
    frame[..4].copy_from_slice(&len.to_be_bytes());
    assert_eq!(decode_frame(&mut frame), Err(CodecError::Trailing(1)));
}

#[test]
fn large_bodies_round_trip_and_are_sent_from_their_own_buffers() {
    use super::super::outgoing::SLICE_BYTES;
    let value = Bytes::from(vec![5u8; SLICE_BYTES * 3]);
    let batch = Bytes::from(vec![6u8; SLICE_BYTES]);
    let delivery = Delivery {
        id: 1,
        record: Record {
            value: Some(value.clone()),
            ..record()
        },
        redelivered: false,
        returns: 0,
    };
    let frames = vec![
        Frame::Response {
            id: 1,
            reply: Ok(Reply::Deliveries(vec![delivery.clone(), delivery])),
        },
        Frame::Request {
            id: 2,
            request: Request::Append {
                topic: "t".into(),
                partition: 0,
                batch: batch.clone(),
            },
        },
    ];
    let mut out = Outgoing::default();
    for frame in &frames {
        encode_frame(frame, &mut out).unwrap();
    }
    let shared: Vec<*const u8> = out
        .pieces()
        .filter(|piece| piece.len() >= SLICE_BYTES)
        .map(<[u8]>::as_ptr)
        .collect();
    assert_eq!(shared, [value.as_ptr(), value.as_ptr(), batch.as_ptr()]);
    let mut stream = out.to_bytes();
    let mut decoded = Vec::new();
    while let Some(frame) = decode_frame(&mut stream).unwrap() {
        decoded.push(frame);
    }
    assert_eq!(decoded, frames);
}

#[test]
fn a_frame_over_the_limit_is_refused_and_leaves_the_frames_before_it() {
    let mut out = Outgoing::default();
    encode_frame(&Frame::Welcome, &mut out).unwrap();
    let before = out.to_bytes();
    let huge = Frame::Request {
        id: 3,
        request: Request::Enqueue {
            queue: "q".into(),
            batch: Bytes::from(vec![0u8; MAX_FRAME_BYTES]),
        },
    };
    assert!(matches!(
        encode_frame(&huge, &mut out),
        Err(CodecError::TooLarge(_))
    ));
    assert_eq!(out.to_bytes(), before);
}
