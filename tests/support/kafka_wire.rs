//! Hand-encoded Kafka requests for tests against the real binary: framing, Produce to
//! partition 0, idempotent batches, InitProducerId. Include it with
//! `#[path = "../support/kafka_wire.rs"] mod kafka_wire;`.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::TcpStream;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse,
    ProducerId, RequestHeader, TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use tributary_api::Record;
use tributary_api::batch::build_batch;
/// Sends one request (header + body at `version`) with correlation id `correlation`.
pub(crate) fn send<T: Encodable>(
    stream: &mut impl Write,
    key: ApiKey,
    version: i16,
    correlation: i32,
    body: &T,
) {
    let header = RequestHeader::default()
        .with_request_api_key(key as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation)
        .with_client_id(Some(StrBytes::from_static_str("wire-test")));
    let mut buf = BytesMut::new();
    header
        .encode(&mut buf, key.request_header_version(version))
        .expect("header");
    body.encode(&mut buf, version).expect("body");
    let mut frame = BytesMut::new();
    frame.put_i32(buf.len() as i32);
    frame.put_slice(&buf);
    stream.write_all(&frame).expect("write");
}

/// Reads one response frame and returns (correlation id, body after a header of `header_version`).
pub(crate) fn receive(stream: &mut impl Read, header_version: i16) -> (i32, Bytes) {
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).expect("response size");
    let mut frame = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut frame).expect("response body");
    let mut frame = Bytes::from(frame);
    let correlation = frame.get_i32();
    if header_version >= 1 {
        assert_eq!(frame.get_u8(), 0, "no tagged fields in the response header");
    }
    (correlation, frame)
}

/// Sends one request at `version` and decodes its response, checking the correlation id.
pub(crate) fn call<Q: Encodable, R: Decodable>(
    stream: &mut (impl Read + Write),
    key: ApiKey,
    version: i16,
    body: &Q,
) -> R {
    const CORRELATION: i32 = 9;
    send(stream, key, version, CORRELATION, body);
    let (correlation, mut frame) = receive(stream, key.response_header_version(version));
    assert_eq!(correlation, CORRELATION, "correlation id");
    R::decode(&mut frame, version).expect("decodes")
}

/// The error code of a Fetch (v11) of partition 0 of `topic` from offset 0 that waits for nothing.
pub(crate) fn fetch_error(stream: &mut (impl Read + Write), topic: &str) -> i16 {
    use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
    use kafka_protocol::messages::{FetchRequest, FetchResponse};
    let request = FetchRequest::default()
        .with_max_wait_ms(0)
        .with_max_bytes(1 << 20)
        .with_topics(vec![
            FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partitions(vec![
                    FetchPartition::default()
                        .with_partition(0)
                        .with_partition_max_bytes(1 << 20),
                ]),
        ]);
    let response: FetchResponse = call(stream, ApiKey::Fetch, 11, &request);
    response.responses[0].partitions[0].error_code
}

/// Authenticates `stream` with SASL PLAIN (SaslHandshake v1, SaslAuthenticate v2) as `user`.
pub(crate) fn sasl_plain_login(stream: &mut (impl Read + Write), user: &str, password: &str) {
    use kafka_protocol::messages::{
        SaslAuthenticateRequest, SaslAuthenticateResponse, SaslHandshakeRequest,
        SaslHandshakeResponse,
    };
    let handshake =
        SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str("PLAIN"));
    let answer: SaslHandshakeResponse = call(stream, ApiKey::SaslHandshake, 1, &handshake);
    assert_eq!(answer.error_code, 0);
    let token = format!("\0{user}\0{password}");
    let auth = SaslAuthenticateRequest::default().with_auth_bytes(Bytes::from(token));
    let answer: SaslAuthenticateResponse = call(stream, ApiKey::SaslAuthenticate, 2, &auth);
    assert_eq!(answer.error_code, 0, "{user} logs in");
}

pub(crate) fn produce_request(topic: &str, acks: i16, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
                .with_partition_data(vec![
                    PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(records)),
                ]),
        ])
}

/// A one-record batch stamped now: a record of 1970 is retention's to delete at its first pass
/// (30 s into a test), which would lose a longer test's records.
pub(crate) fn batch(value: &'static [u8]) -> Bytes {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64);
    build_batch(&[Record {
        value: Some(Bytes::from_static(value)),
        timestamp: now,
        ..Record::default()
    }])
}

/// A one-record batch of an idempotent producer, CRC recomputed after setting the fields.
pub(crate) fn idempotent_batch(producer_id: i64, epoch: i16, sequence: i32) -> Bytes {
    let mut bytes = batch(b"idempotent").to_vec();
    bytes[43..51].copy_from_slice(&producer_id.to_be_bytes());
    bytes[51..53].copy_from_slice(&epoch.to_be_bytes());
    bytes[53..57].copy_from_slice(&sequence.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
    bytes.into()
}

/// Produces one batch to partition 0 of `topic` with acks=1: (error code, base offset).
pub(crate) fn produce_once_to(
    stream: &mut TcpStream,
    topic: &str,
    correlation: i32,
    records: Bytes,
) -> (i16, i64) {
    send(
        stream,
        ApiKey::Produce,
        9,
        correlation,
        &produce_request(topic, 1, records),
    );
    let (got, mut body) = receive(stream, ApiKey::Produce.response_header_version(9));
    assert_eq!(got, correlation);
    let answer = ProduceResponse::decode(&mut body, 9).unwrap();
    let partition = &answer.responses[0].partition_responses[0];
    (partition.error_code, partition.base_offset)
}

/// A new idempotent producer id (InitProducerId v4, no transactional id).
pub(crate) fn init_producer_id(stream: &mut TcpStream, correlation: i32) -> i64 {
    send(
        stream,
        ApiKey::InitProducerId,
        4,
        correlation,
        &InitProducerIdRequest::default()
            .with_transactional_id(None)
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1),
    );
    let (got, mut body) = receive(stream, ApiKey::InitProducerId.response_header_version(4));
    assert_eq!(got, correlation);
    let init = InitProducerIdResponse::decode(&mut body, 4).expect("InitProducerId response");
    assert_eq!(init.error_code, 0, "InitProducerId failed");
    init.producer_id.0
}
