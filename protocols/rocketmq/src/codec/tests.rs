//! Golden decode tests: every distinct request the Rust (JSON and binary), C++ (Python) and
//! ali-ons clients sent in the captures is framed the way that client frames it and decoded.

use serde_json::Value;

use super::*;

const CAPTURED: &str = include_str!("../../tests/data/captured_requests.jsonl");
const LIMIT: usize = 16 << 20;

struct Captured {
    stype: u8,
    code: i32,
    language: Value,
    version: i32,
    flag: i32,
    ext: serde_json::Map<String, Value>,
}

fn captured() -> Vec<Captured> {
    CAPTURED
        .lines()
        .map(|line| {
            let value: Value = serde_json::from_str(line).unwrap();
            Captured {
                stype: value["stype"].as_u64().unwrap() as u8,
                code: value["code"].as_i64().unwrap() as i32,
                language: value["language"].clone(),
                version: value["version"].as_i64().unwrap() as i32,
                flag: value["flag"].as_i64().unwrap() as i32,
                ext: value["ext"].as_object().unwrap().clone(),
            }
        })
        .collect()
}

/// Frames a header the way the clients do: JSON as the client's serializer writes it (values
/// with their captured JSON types), binary field by field per the spec.
fn frame(request: &Captured, opaque: i32, body: &[u8]) -> BytesMut {
    let header = if request.stype == 0 {
        let object = serde_json::json!({
            "code": request.code,
            "language": request.language,
            "version": request.version,
            "opaque": opaque,
            "flag": request.flag,
            "extFields": request.ext,
            "serializeTypeCurrentRPC": "JSON",
        });
        serde_json::to_vec(&object).unwrap()
    } else {
        let mut out = Vec::new();
        out.put_i16(request.code as i16);
        out.put_u8(request.language.as_u64().unwrap() as u8);
        out.put_i16(request.version as i16);
        out.put_i32(opaque);
        out.put_i32(request.flag);
        out.put_i32(0);
        let mut fields = Vec::new();
        for (key, value) in &request.ext {
            let value = value.as_str().unwrap();
            fields.put_i16(key.len() as i16);
            fields.extend_from_slice(key.as_bytes());
            fields.put_i32(value.len() as i32);
            fields.extend_from_slice(value.as_bytes());
        }
        out.put_i32(fields.len() as i32);
        out.extend_from_slice(&fields);
        out
    };
    let mut out = BytesMut::new();
    out.put_u32((4 + header.len() + body.len()) as u32);
    out.put_u32((u32::from(request.stype) << 24) | header.len() as u32);
    out.extend_from_slice(&header);
    out.extend_from_slice(body);
    out
}

fn json_text(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

#[test]
fn every_captured_request_decodes() {
    let requests = captured();
    assert!(requests.len() >= 30, "captures hold {}", requests.len());
    for (opaque, request) in requests.iter().enumerate() {
        let mut buf = frame(request, opaque as i32, b"payload");
        let command = decode_frame(&mut buf, LIMIT).unwrap().unwrap();
        assert!(buf.is_empty());
        assert_eq!(command.code, request.code);
        assert_eq!(command.opaque, opaque as i32);
        assert_eq!(command.version, request.version);
        assert_eq!(command.flag, request.flag);
        assert_eq!(&command.body[..], b"payload");
        let language = match &request.language {
            Value::String(name) => language_ordinal(name),
            other => other.as_u64().unwrap() as u8,
        };
        assert_eq!(command.language, language);
        assert_eq!(command.ext_fields.len(), request.ext.len());
        for (key, value) in &request.ext {
            assert_eq!(command.field(key), Some(json_text(value).as_str()), "{key}");
        }
    }
}

#[test]
fn mixed_scalar_ext_fields_become_strings() {
    let send_v2 = captured()
        .into_iter()
        .find(|r| r.code == 310)
        .expect("ali-ons SEND_MESSAGE_V2 captured");
    let command = decode_frame(&mut frame(&send_v2, 1, b""), LIMIT)
        .unwrap()
        .unwrap();
    assert_eq!(command.field("e"), Some("2"));
    assert_eq!(command.field("k"), Some("false"));
    assert_eq!(command.field("b"), Some("TopicNode"));
    assert_eq!(command.field("g"), Some("1795575853928"));
}

#[test]
fn incomplete_input_waits_and_consumes_nothing() {
    let request = &captured()[0];
    let whole = frame(request, 9, b"abc");
    for cut in 0..whole.len() {
        let mut partial = BytesMut::from(&whole[..cut]);
        assert_eq!(decode_frame(&mut partial, LIMIT).unwrap(), None);
        assert_eq!(partial.len(), cut);
    }
    let mut two = whole.clone();
    two.extend_from_slice(&whole);
    assert!(decode_frame(&mut two, LIMIT).unwrap().is_some());
    assert!(decode_frame(&mut two, LIMIT).unwrap().is_some());
    assert!(two.is_empty());
}

#[test]
fn a_declared_frame_size_reserves_nothing_before_the_bytes_arrive() {
    // Within the limit, yet only the prefix and a few bytes are here.
    let mut buf = BytesMut::with_capacity(16);
    buf.extend_from_slice(&((LIMIT as u32) - 4).to_be_bytes());
    buf.extend_from_slice(&[0, 0, 0, 10]);
    let capacity = buf.capacity();
    assert_eq!(decode_frame(&mut buf, LIMIT).unwrap(), None);
    assert_eq!(buf.capacity(), capacity);
    assert_eq!(declared_frame_bytes(&buf), Some(LIMIT));
}

#[test]
fn oversized_frames_are_refused_before_allocation() {
    let mut buf = BytesMut::from(&[0x7F, 0xFF, 0xFF, 0xFF][..]);
    let err = decode_frame(&mut buf, LIMIT).unwrap_err();
    assert!(matches!(err, CodecError::FrameTooLarge { .. }));
    assert!(buf.capacity() < 1024);
}

#[test]
fn malformed_headers_are_errors_not_panics() {
    let cases: Vec<Vec<u8>> = vec![
        vec![0, 0, 0, 2, 0, 0],                   // shorter than the header word
        vec![0, 0, 0, 4, 0, 0, 0, 9],             // header longer than the frame
        vec![0, 0, 0, 6, 5, 0, 0, 2, b'{', b'}'], // unknown serialize type
        vec![0, 0, 0, 6, 0, 0, 0, 2, b'[', b']'], // JSON header not an object
        vec![0, 0, 0, 7, 1, 0, 0, 3, 0, 1, 0],    // binary header cut short
        [
            vec![0, 0, 0, 25, 1, 0, 0, 21],
            vec![0; 13],
            vec![0x7F, 0, 0, 0],
            vec![0; 4],
        ]
        .concat(),
    ];
    for case in cases {
        let mut buf = BytesMut::from(&case[..]);
        assert!(decode_frame(&mut buf, LIMIT).is_err(), "{case:?}");
    }
}

#[test]
fn responses_round_trip_in_both_serializations() {
    for serialize_type in [SerializeType::Json, SerializeType::RocketMq] {
        let mut request = RemotingCommand::request(11, 77, serialize_type);
        request.language = 12;
        let response = RemotingCommand::response_to(&request, 19)
            .with_remark("no new message")
            .with_field("nextBeginOffset", 5)
            .with_body(&b"xyz"[..]);
        let mut out = BytesMut::new();
        encode_frame(&response, &mut out);
        let decoded = decode_frame(&mut out, LIMIT).unwrap().unwrap();
        assert_eq!(decoded, response);
        assert!(decoded.is_response());
        assert_eq!(decoded.serialize_type, serialize_type);
        assert_eq!(decoded.version, SERVER_VERSION);
    }
}

#[test]
fn json_responses_always_carry_string_ext_fields() {
    let request = RemotingCommand::request(10, 1, SerializeType::Json);
    let response = RemotingCommand::response_to(&request, 0).with_field("queueId", 3);
    let mut out = BytesMut::new();
    encode_frame(&response, &mut out);
    let header: Value = serde_json::from_slice(&out[8..]).unwrap();
    assert_eq!(header["extFields"]["queueId"], Value::from("3"));
    assert_eq!(header["language"], Value::from("JAVA"));
    let empty = RemotingCommand::response_to(&request, 0);
    let mut out = BytesMut::new();
    encode_frame(&empty, &mut out);
    let header: Value = serde_json::from_slice(&out[8..]).unwrap();
    assert!(header["extFields"].is_object());
}

fn fuzz_corpus() -> Vec<(String, Vec<u8>)> {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/remoting_decoder");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
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
fn fuzz_corpus_replays_and_captured_frames_decode() {
    let corpus = fuzz_corpus();
    assert!(corpus.len() >= 40, "corpus has {} files", corpus.len());
    for (name, data) in &corpus {
        check_decoders(data);
        if name.starts_with("captured_") {
            let mut buf = BytesMut::from(&data[..]);
            let command = decode_frame(&mut buf, LIMIT)
                .unwrap_or_else(|err| panic!("{name}: {err}"))
                .unwrap_or_else(|| panic!("{name}: incomplete"));
            assert!(buf.is_empty(), "{name}: bytes left over");
            assert!(
                name.contains(&format!("_code{}_", command.code)),
                "{name}: code {}",
                command.code
            );
        }
    }
}

#[test]
fn mutated_corpus_frames_never_panic() {
    // Deterministic mutations of every seed: truncations, single-byte flips and length-word
    // rewrites, about 40,000 inputs in all.
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for (_, data) in fuzz_corpus() {
        for cut in 0..data.len().min(64) {
            check_decoders(&data[..cut]);
        }
        for _ in 0..1_000 {
            let mut mutated = data.clone();
            if mutated.is_empty() {
                break;
            }
            let at = (next() as usize) % mutated.len();
            mutated[at] ^= (next() as u8) | 1;
            if next() % 4 == 0 && mutated.len() >= 8 {
                let word = (next() as u32).to_be_bytes();
                let slot = if next() % 2 == 0 { 0 } else { 4 };
                mutated[slot..slot + 4].copy_from_slice(&word);
            }
            check_decoders(&mutated);
        }
    }
}
