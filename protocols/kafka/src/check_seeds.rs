//! Produce seeds of the `request_decoder` corpus and the replay of the whole corpus through
//! [`check_decoders`]: every file on disk (captured seeds, hand-made hostile frames, regression
//! inputs found by fuzzing) and deterministic mutations of it pass the checks; the built
//! Produce seeds are on disk as built, except gzip whose bytes depend on the linked deflate
//! backend (set `TRIBUTARY_WRITE_KAFKA_CORPUS=1` to rewrite them after a format change).

use std::path::PathBuf;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, TopicName};
use kafka_protocol::protocol::{Encodable, StrBytes};
use tributary_api::batch::{Record, build_batch, build_compressed_batch, reseal};
use tributary_api::compression::Codec;

use super::check_decoders;

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/request_decoder")
}

fn records(count: usize) -> Vec<Record> {
    (0..count)
        .map(|i| Record {
            key: (i % 2 == 0).then(|| Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(format!("value {i}"))),
            timestamp: 1_700_000_000_000 + i as i64,
            headers: vec![(Bytes::from_static(b"h"), Some(Bytes::from_static(b"v")))],
        })
        .collect()
}

/// A framed Produce request at `version` carrying `sets` as partitions 0.. of topic `t`.
fn produce(version: i16, sets: &[Bytes]) -> Vec<u8> {
    let header = RequestHeader::default()
        .with_request_api_key(ApiKey::Produce as i16)
        .with_request_api_version(version)
        .with_correlation_id(3)
        .with_client_id(Some(StrBytes::from_static_str("rdkafka")));
    let partitions = sets
        .iter()
        .enumerate()
        .map(|(index, set)| {
            PartitionProduceData::default()
                .with_index(index as i32)
                .with_records(Some(set.clone()))
        })
        .collect();
    let request = ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(30_000)
        .with_topic_data(vec![
            TopicProduceData::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partition_data(partitions),
        ]);
    let mut body = BytesMut::new();
    header
        .encode(&mut body, ApiKey::Produce.request_header_version(version))
        .expect("header");
    request.encode(&mut body, version).expect("body");
    let mut framed = (body.len() as u32).to_be_bytes().to_vec();
    framed.extend_from_slice(&body);
    framed
}

/// (file name, bytes) of the built Produce seeds.
fn seed_corpus() -> Vec<(String, Vec<u8>)> {
    let plain = build_batch(&records(5));
    let mut seeds = vec![
        (
            "produce_v3_batch_none".to_owned(),
            produce(3, std::slice::from_ref(&plain)),
        ),
        (
            "produce_v9_two_batches_two_partitions".to_owned(),
            produce(
                9,
                &[
                    [plain.clone(), plain.clone()].concat().into(),
                    plain.clone(),
                ],
            ),
        ),
    ];
    for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
        let batch = build_compressed_batch(&records(5), codec).expect("compress");
        seeds.push((format!("produce_v9_batch_{codec}"), produce(9, &[batch])));
    }
    let mut corrupt = plain.to_vec();
    corrupt[70] ^= 0xFF;
    seeds.push(("produce_v3_bad_crc".into(), produce(3, &[corrupt.into()])));
    let mut cut = plain.to_vec();
    cut.truncate(plain.len() - 5);
    seeds.push((
        "produce_v3_truncated_batch".into(),
        produce(3, &[cut.into()]),
    ));
    // A valid CRC over a batch whose record count and lengths lie.
    let mut lying = plain.to_vec();
    lying[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
    lying[61] = 0x7F;
    reseal(&mut lying);
    seeds.push((
        "produce_v9_resealed_lying_counts".into(),
        produce(9, &[lying.into()]),
    ));
    seeds.sort();
    seeds
}

#[test]
fn corpus_replays_through_the_checks_with_mutations() {
    let seeds = seed_corpus();
    let dir = corpus_dir();
    if std::env::var_os("TRIBUTARY_WRITE_KAFKA_CORPUS").is_some() {
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(format!("{name}.bin")), bytes).expect("write seed");
        }
    }
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("corpus directory")
        .map(|entry| {
            let path = entry.expect("corpus entry").path();
            let name = path.file_stem().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).expect("corpus file"))
        })
        .collect();
    files.sort();
    for (name, built) in &seeds {
        let on_disk = files.iter().find(|(file, _)| file == name).map(|(_, b)| b);
        assert!(on_disk.is_some(), "{name} is missing from the corpus");
        if !name.contains("gzip") {
            assert_eq!(on_disk, Some(built), "{name} is not what the builder makes");
        }
        assert_eq!(check_decoders(built), 1, "{name} is not one frame");
    }
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for (_, data) in &files {
        check_decoders(data);
        if data.is_empty() {
            continue;
        }
        for _ in 0..300 {
            let mut mutated = data.clone();
            let at = (next() as usize) % mutated.len();
            mutated[at] ^= (next() as u8) | 1;
            check_decoders(&mutated);
        }
    }
    assert!(files.len() >= 19 + seeds.len());
}
