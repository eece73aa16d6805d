//! Requests whose array counts claim far more elements than their frame holds, against the real
//! binary: each is refused before decoding with a log line naming the API, version and field,
//! closes only its own connection, and the broker keeps serving.
//!
//! Without the codec's length check, `kafka-protocol` would reserve memory for 2^31 or 2^32
//! elements from these few bytes and the allocation failure would abort the broker.

use crate::broker;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use broker::{TestBroker, connect};
use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::ApiKey;

/// A request frame written field by field, compact or not as the version's header says.
struct Frame {
    body: BytesMut,
    flexible: bool,
}

impl Frame {
    fn new(key: ApiKey, version: i16) -> Self {
        let header_version = key.request_header_version(version);
        let mut body = BytesMut::new();
        body.put_i16(key as i16);
        body.put_i16(version);
        body.put_i32(1);
        // client_id is an int16 string in every header version.
        body.put_i16(9);
        body.put_slice(b"bad-input");
        if header_version >= 2 {
            body.put_u8(0);
        }
        Self {
            body,
            flexible: header_version >= 2,
        }
    }

    fn int(mut self, width: usize, value: i64) -> Self {
        self.body.put_slice(&value.to_be_bytes()[8 - width..]);
        self
    }

    fn varint(mut self, mut value: u32) -> Self {
        while value >= 0x80 {
            self.body.put_u8((value as u8) | 0x80);
            value >>= 7;
        }
        self.body.put_u8(value as u8);
        self
    }

    fn string(self, value: &str) -> Self {
        let mut frame = if self.flexible {
            self.varint(value.len() as u32 + 1)
        } else {
            self.int(2, value.len() as i64)
        };
        frame.body.put_slice(value.as_bytes());
        frame
    }

    fn null_string(self) -> Self {
        if self.flexible {
            self.varint(0)
        } else {
            self.int(2, -1)
        }
    }

    fn count(self, count: u32) -> Self {
        if self.flexible {
            self.varint(count + 1)
        } else {
            self.int(4, i64::from(count))
        }
    }

    /// The largest count the encoding can claim: 2^31 - 1, or 2^32 - 2 when compact.
    fn huge_count(self) -> Self {
        if self.flexible {
            self.varint(u32::MAX)
        } else {
            self.int(4, i64::from(i32::MAX))
        }
    }

    fn framed(self) -> Vec<u8> {
        let mut frame = (self.body.len() as i32).to_be_bytes().to_vec();
        frame.extend_from_slice(&self.body);
        frame
    }
}

/// One request per API family, each with a huge count in the field named second.
fn huge_count_requests() -> Vec<(ApiKey, i16, &'static str, Vec<u8>)> {
    let produce = |version| {
        Frame::new(ApiKey::Produce, version)
            .null_string()
            .int(2, 1)
            .int(4, 1_000)
    };
    let fetch = |version| {
        Frame::new(ApiKey::Fetch, version)
            .int(4, -1)
            .int(4, 500)
            .int(4, 1)
            .int(4, 1 << 20)
            .int(1, 0)
    };
    let join = |version| {
        Frame::new(ApiKey::JoinGroup, version)
            .string("g")
            .int(4, 10_000)
            .int(4, 10_000)
            .string("")
            .null_string()
            .string("consumer")
    };
    vec![
        (
            ApiKey::Produce,
            3,
            "topic_data",
            produce(3).huge_count().framed(),
        ),
        (
            ApiKey::Produce,
            9,
            "topic_data",
            produce(9).huge_count().framed(),
        ),
        (
            ApiKey::Produce,
            7,
            "partition_data",
            produce(7).count(1).string("t").huge_count().framed(),
        ),
        (ApiKey::Fetch, 4, "topics", fetch(4).huge_count().framed()),
        (
            ApiKey::Fetch,
            12,
            "topics",
            fetch(12).int(4, 0).int(4, -1).huge_count().framed(),
        ),
        (
            ApiKey::Metadata,
            1,
            "topics",
            Frame::new(ApiKey::Metadata, 1).huge_count().framed(),
        ),
        (
            ApiKey::Metadata,
            12,
            "topics",
            Frame::new(ApiKey::Metadata, 12).huge_count().framed(),
        ),
        (
            ApiKey::JoinGroup,
            5,
            "protocols",
            join(5).huge_count().framed(),
        ),
        (
            ApiKey::JoinGroup,
            9,
            "protocols",
            join(9).huge_count().framed(),
        ),
        (
            ApiKey::OffsetCommit,
            2,
            "topics",
            Frame::new(ApiKey::OffsetCommit, 2)
                .string("g")
                .int(4, 1)
                .string("m")
                .int(8, -1)
                .huge_count()
                .framed(),
        ),
        (
            ApiKey::OffsetCommit,
            8,
            "partitions",
            Frame::new(ApiKey::OffsetCommit, 8)
                .string("g")
                .int(4, 1)
                .string("m")
                .null_string()
                .count(1)
                .string("t")
                .huge_count()
                .framed(),
        ),
        (
            ApiKey::CreateTopics,
            2,
            "topics",
            Frame::new(ApiKey::CreateTopics, 2).huge_count().framed(),
        ),
        (
            ApiKey::CreateTopics,
            7,
            "configs",
            Frame::new(ApiKey::CreateTopics, 7)
                .count(1)
                .string("t")
                .int(4, 1)
                .int(2, 1)
                .count(0)
                .huge_count()
                .framed(),
        ),
        (
            ApiKey::DescribeGroups,
            5,
            "groups",
            Frame::new(ApiKey::DescribeGroups, 5).huge_count().framed(),
        ),
        (
            ApiKey::ApiVersions,
            3,
            "tagged fields",
            Frame::new(ApiKey::ApiVersions, 3)
                .string("x")
                .string("1")
                .varint(u32::MAX)
                .framed(),
        ),
    ]
}

/// Sends ApiVersions v0 and checks a well-formed answer with error code 0 comes back.
fn api_versions_answered(stream: &mut TcpStream) {
    stream
        .write_all(&Frame::new(ApiKey::ApiVersions, 0).framed())
        .expect("write");
    let mut size = [0u8; 4];
    stream.read_exact(&mut size).expect("response size");
    let mut response = vec![0u8; i32::from_be_bytes(size) as usize];
    stream.read_exact(&mut response).expect("response");
    assert_eq!(response[..4], 1i32.to_be_bytes(), "correlation id");
    assert_eq!(response[4..6], [0, 0], "ApiVersions error code");
}

#[test]
fn huge_array_counts_close_only_their_connection_and_are_logged() {
    let mut broker = TestBroker::start();
    let addr = broker.addr("kafka");
    let mut healthy = connect(addr);
    api_versions_answered(&mut healthy);

    for (api, version, field, frame) in huge_count_requests() {
        let mut bad = connect(addr);
        bad.write_all(&frame).expect("write");
        let mut byte = [0u8; 1];
        assert!(
            matches!(bad.read(&mut byte), Ok(0) | Err(_)),
            "{api:?} v{version}: the connection must be closed without an answer"
        );
        let needle = format!("{api:?} v{version} refused before decoding: `{field}` declares");
        broker.wait_for_line(&["kafka protocol error", &needle], Duration::from_secs(5));
        // The connection opened before keeps being served, and so does a new one.
        api_versions_answered(&mut healthy);
    }
    api_versions_answered(&mut connect(addr));
}
