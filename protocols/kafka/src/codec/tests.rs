//! Golden-byte tests of framing, the request firewall and response headers. The request bytes
//! are written out field by field from the Kafka protocol specification, as librdkafka sends them.

use super::*;

const LIMITS: FrameLimits = FrameLimits {
    max_frame_bytes: 1024,
};

/// Prefixes `body` with its 4-byte size.
fn framed(body: &[u8]) -> BytesMut {
    let mut buf = BytesMut::new();
    buf.put_i32(body.len() as i32);
    buf.put_slice(body);
    buf
}

/// ApiVersions v3 as librdkafka 2.x sends it: request header v2, compact strings, tagged fields.
const API_VERSIONS_V3: &[u8] = &[
    0x00, 0x12, // api_key 18
    0x00, 0x03, // api_version 3
    0x00, 0x00, 0x00, 0x01, // correlation_id 1
    0x00, 0x07, b'r', b'd', b'k', b'a', b'f', b'k',
    b'a', // client_id (int16 string even in v2)
    0x00, // header tagged fields
    0x0b, b'l', b'i', b'b', b'r', b'd', b'k', b'a', b'f', b'k', b'a', // compact "librdkafka"
    0x07, b'2', b'.', b'1', b'2', b'.', b'1', // compact "2.12.1"
    0x00, // body tagged fields
];

/// Metadata v1 for one topic `t`: request header v1, non-flexible body.
const METADATA_V1: &[u8] = &[
    0x00, 0x03, 0x00, 0x01, 0x00, 0x00, 0x00, 0x07, // key 3, v1, correlation 7
    0x00, 0x01, b'c', // client_id "c"
    0x00, 0x00, 0x00, 0x01, 0x00, 0x01, b't', // topics: [ "t" ]
];

#[test]
fn incomplete_frames_leave_the_buffer_untouched() {
    let whole = framed(API_VERSIONS_V3);
    for cut in 0..whole.len() {
        let mut partial = BytesMut::from(&whole[..cut]);
        assert!(
            matches!(split_frame(&mut partial, LIMITS), Ok(None)),
            "cut {cut}"
        );
        assert_eq!(&partial[..], &whole[..cut]);
    }
}

#[test]
fn api_versions_v3_from_librdkafka_decodes() {
    let mut buf = framed(API_VERSIONS_V3);
    let raw = split_frame(&mut buf, LIMITS).unwrap().expect("whole frame");
    assert!(buf.is_empty());
    assert_eq!(
        (raw.api_key, raw.api_version, raw.correlation_id),
        (18, 3, 1)
    );
    let Routed::Request {
        header,
        api,
        version,
        body,
    } = route(raw).expect("supported")
    else {
        panic!("not a plain request");
    };
    assert_eq!((api, version), (ApiKey::ApiVersions, 3));
    assert_eq!(header.client_id.as_deref(), Some("rdkafka"));
    let KafkaRequest::ApiVersions(body) = *body else {
        panic!("wrong body type");
    };
    assert_eq!(body.client_software_name.as_str(), "librdkafka");
    assert_eq!(body.client_software_version.as_str(), "2.12.1");
}

#[test]
fn metadata_v1_decodes_the_topic_list() {
    let mut buf = framed(METADATA_V1);
    let raw = split_frame(&mut buf, LIMITS).unwrap().expect("whole frame");
    let Routed::Request { body, header, .. } = route(raw).unwrap() else {
        panic!("not a plain request");
    };
    let KafkaRequest::Metadata(body) = *body else {
        panic!("not metadata");
    };
    assert_eq!(header.correlation_id, 7);
    let names: Vec<_> = body
        .topics
        .unwrap_or_default()
        .into_iter()
        .filter_map(|topic| topic.name)
        .map(|name| name.0.as_str().to_owned())
        .collect();
    assert_eq!(names, ["t"]);
}

#[test]
fn api_versions_above_our_range_takes_the_kip_511_fallback() {
    let mut request = API_VERSIONS_V3.to_vec();
    request[3] = 9; // ApiVersions v9: newer than anything we know
    request[7] = 42;
    let raw = split_frame(&mut framed(&request), LIMITS).unwrap().unwrap();
    assert_eq!(
        route(raw).unwrap(),
        Routed::ApiVersionsFallback { correlation_id: 42 }
    );
}

#[test]
fn fallback_answer_is_a_v0_body_behind_a_v0_header() {
    use kafka_protocol::messages::ApiVersionsResponse;
    use kafka_protocol::messages::api_versions_response::ApiVersion;
    let body = ApiVersionsResponse::default()
        .with_error_code(35)
        .with_api_keys(vec![
            ApiVersion::default()
                .with_api_key(18)
                .with_min_version(0)
                .with_max_version(4),
        ]);
    let frame = encode_response(42, 0, 0, &KafkaResponse::ApiVersions(body)).unwrap();
    let expected: &[u8] = &[
        0x00, 0x00, 0x00, 0x10, // size 16
        0x00, 0x00, 0x00, 0x2a, // correlation 42, no tagged fields (header v0)
        0x00, 0x23, // error 35 UNSUPPORTED_VERSION
        0x00, 0x00, 0x00, 0x01, // one entry (int32 array in v0)
        0x00, 0x12, 0x00, 0x00, 0x00, 0x04, // ApiVersions 0..=4
    ];
    assert_eq!(&frame[..], expected);
}

#[test]
fn api_versions_v3_response_still_uses_header_v0() {
    assert_eq!(response_header_version(ApiKey::ApiVersions, 3), 0);
    assert_eq!(response_header_version(ApiKey::Metadata, 9), 1);
    assert_eq!(response_header_version(ApiKey::Metadata, 8), 0);
}

#[test]
fn unknown_keys_and_versions_are_refused_without_decoding() {
    let unknown_key: &[u8] = &[0x03, 0xe7, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01]; // key 999
    let raw = split_frame(&mut framed(unknown_key), LIMITS)
        .unwrap()
        .unwrap();
    assert!(matches!(route(raw), Err(CodecError::UnknownApiKey(999))));

    let old_fetch: &[u8] = &[0x00, 0x01, 0x00, 0x03, 0x00, 0x00, 0x00, 0x01, 0xff, 0xff];
    let raw = split_frame(&mut framed(old_fetch), LIMITS)
        .unwrap()
        .unwrap();
    assert!(matches!(
        route(raw),
        Err(CodecError::UnsupportedVersion {
            api: ApiKey::Fetch,
            version: 3,
            ..
        })
    ));

    // A real key this broker does not serve (WriteTxnMarkers, inter-broker only).
    let unserved: &[u8] = &[0x00, 0x1b, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, 0xff, 0xff];
    let raw = split_frame(&mut framed(unserved), LIMITS).unwrap().unwrap();
    assert!(matches!(route(raw), Err(CodecError::UnsupportedApi { .. })));
}

#[test]
fn oversized_and_negative_sizes_are_refused_before_allocating() {
    let mut buf = BytesMut::with_capacity(8);
    buf.put_i32(2_000_000_000);
    let capacity = buf.capacity();
    assert!(matches!(
        split_frame(&mut buf, LIMITS),
        Err(CodecError::FrameTooLarge { limit: 1024, .. })
    ));
    assert_eq!(buf.capacity(), capacity);

    let mut negative = BytesMut::from(&(-5i32).to_be_bytes()[..]);
    assert!(matches!(
        split_frame(&mut negative, LIMITS),
        Err(CodecError::FrameTooShort(-5))
    ));
    let mut tiny = BytesMut::from(&3i32.to_be_bytes()[..]);
    assert!(matches!(
        split_frame(&mut tiny, LIMITS),
        Err(CodecError::FrameTooShort(3))
    ));
}

#[test]
fn a_declared_frame_size_reserves_nothing_before_the_bytes_arrive() {
    let mut buf = BytesMut::with_capacity(16);
    buf.put_i32(1000);
    buf.put_slice(&[0, 18, 0, 0]);
    let capacity = buf.capacity();
    assert_eq!(split_frame(&mut buf, LIMITS).unwrap(), None);
    assert_eq!(buf.capacity(), capacity);
    assert_eq!(declared_frame_bytes(&buf), Some(1004));
    let mut token = BytesMut::with_capacity(16);
    token.put_i32(1000);
    assert_eq!(split_raw_token(&mut token, LIMITS).unwrap(), None);
    assert_eq!(token.capacity(), 16);
}

#[test]
fn truncated_bodies_are_refused_not_panics() {
    // The length check finds the topic name cut short before the crate's decoder runs.
    let cut = &METADATA_V1[..METADATA_V1.len() - 1];
    let raw = split_frame(&mut framed(cut), LIMITS).unwrap().unwrap();
    assert!(matches!(
        route(raw),
        Err(CodecError::LengthRefused {
            api: ApiKey::Metadata,
            field: "name",
            fault: LengthFault::Overrun {
                declared: 1,
                remaining: 0
            },
            ..
        })
    ));
    // A header cut short is the crate's to refuse.
    let header_cut = &METADATA_V1[..MIN_REQUEST_LEN + 2];
    let raw = split_frame(&mut framed(header_cut), LIMITS)
        .unwrap()
        .unwrap();
    assert!(matches!(
        route(raw),
        Err(CodecError::Malformed {
            api: ApiKey::Metadata,
            ..
        })
    ));
}

/// Runs one input through framing and routing the way the fuzz target does, checking its
/// properties: no panic, incomplete input untouched, no frame above the limit.
fn decode_all(data: &[u8], limits: FrameLimits) -> usize {
    let mut buf = BytesMut::from(data);
    let mut frames = 0;
    loop {
        let before = buf.clone();
        match split_frame(&mut buf, limits) {
            Ok(Some(raw)) => {
                assert!(raw.frame.len() + SIZE_PREFIX_LEN <= limits.max_frame_bytes);
                let _ = route(raw);
                frames += 1;
            }
            Ok(None) => {
                assert_eq!(buf, before, "incomplete input must stay in the buffer");
                return frames;
            }
            Err(_) => return frames,
        }
    }
}

#[test]
fn fuzz_corpus_replays_without_panics() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/request_decoder");
    let mut replayed = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("corpus file");
        decode_all(&data, LIMITS);
        // Every prefix of a seed is an input a slow client produces too.
        for cut in 0..data.len().min(64) {
            decode_all(&data[..cut], LIMITS);
        }
        replayed += 1;
    }
    assert!(replayed >= 8, "corpus has {replayed} seeds");
}

#[test]
fn pipelined_requests_split_in_order() {
    let mut both = framed(API_VERSIONS_V3);
    both.extend_from_slice(&framed(METADATA_V1));
    assert_eq!(decode_all(&both, LIMITS), 2);
}

// kafka-protocol 0.18 reserves `Vec::with_capacity(count)` from a count read off the wire, so
// before `bounds::check` these found an abort within a few hundred cases.
proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
        decode_all(&data, LIMITS);
    }

    #[test]
    fn mutated_seeds_never_panic(at in 0usize..API_VERSIONS_V3.len(), byte in proptest::prelude::any::<u8>()) {
        let mut request = API_VERSIONS_V3.to_vec();
        request[at] = byte;
        decode_all(&framed(&request), LIMITS);
    }
}
