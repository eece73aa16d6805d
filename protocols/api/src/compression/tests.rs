use bytes::{Bytes, BytesMut};
use proptest::prelude::*;

use super::*;
use crate::batch::{
    BatchError, Compression, Record, build_batch, build_compressed_batch, decode_records,
    decode_records_from, set_base_offset, verify_batch,
};

const BATCH_CODECS: [Codec; 4] = [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd];
const ALL_CODECS: [Codec; 5] = [
    Codec::Gzip,
    Codec::Snappy,
    Codec::Lz4,
    Codec::Zstd,
    Codec::Zlib,
];

fn records(values: &[Vec<u8>]) -> Vec<Record> {
    values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            key: (i % 2 == 0).then(|| Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::copy_from_slice(v)),
            timestamp: 1_700_000_000_000 + (i as i64) * 7,
            headers: vec![(Bytes::from_static(b"h"), Some(Bytes::from(vec![1u8, 2, 0])))],
        })
        .collect()
}

/// A batch with base offset `base`, as the log stores it.
fn at_base(batch: Bytes, base: i64) -> Bytes {
    let mut batch = BytesMut::from(&batch[..]);
    set_base_offset(&mut batch, base);
    batch.freeze()
}

#[test]
fn raw_snappy_is_read_as_librdkafka_writes_it() {
    let data = b"raw snappy, no framing ".repeat(500);
    let raw = snap::raw::Encoder::new().compress_vec(&data).unwrap();
    assert!(!raw.starts_with(XERIAL_MAGIC));
    assert_eq!(decompress(Codec::Snappy, &raw, 1 << 20).unwrap(), data);
}

#[test]
fn xerial_snappy_is_read_block_by_block_and_across_concatenated_streams() {
    let first = vec![b'a'; 100_000];
    let second = b"second stream".to_vec();
    let mut stream = compress(Codec::Snappy, &first).unwrap();
    assert!(stream.starts_with(XERIAL_MAGIC));
    stream.extend(compress(Codec::Snappy, &second).unwrap());
    let mut expected = first.clone();
    expected.extend(&second);
    assert_eq!(
        decompress(Codec::Snappy, &stream, 1 << 20).unwrap(),
        expected
    );
}

#[test]
fn output_exactly_at_the_limit_is_accepted_and_one_more_byte_is_not() {
    let data = vec![9u8; 4096];
    for codec in ALL_CODECS {
        let compressed = compress(codec, &data).unwrap();
        assert_eq!(
            decompress(codec, &compressed, 4096).unwrap(),
            data,
            "{codec}"
        );
        assert_eq!(
            decompress(codec, &compressed, 4095),
            Err(DecompressError::TooLarge { codec, limit: 4095 }),
            "{codec}"
        );
    }
}

#[test]
fn a_snappy_length_the_block_cannot_hold_allocates_nothing() {
    // Declares 1 MiB in a 3-byte block: refused before the output is sized.
    let mut block = Vec::new();
    let mut declared: u32 = 1 << 20;
    while declared >= 0x80 {
        block.push((declared as u8) | 0x80);
        declared >>= 7;
    }
    block.push(declared as u8);
    block.extend_from_slice(&[0, 0]);
    assert!(matches!(
        decompress(Codec::Snappy, &block, 64 << 20),
        Err(DecompressError::Corrupt {
            codec: Codec::Snappy,
            ..
        })
    ));
}

#[test]
fn zlib_with_bytes_after_the_stream_is_refused() {
    let mut body = compress(Codec::Zlib, b"rocketmq body").unwrap();
    assert_eq!(inflate_zlib(&body, 100).unwrap(), b"rocketmq body");
    body.push(0);
    assert!(matches!(
        inflate_zlib(&body, 100),
        Err(DecompressError::Corrupt { .. })
    ));
}

#[test]
fn compressed_batches_decode_with_the_offsets_and_timestamps_of_uncompressed_ones() {
    let values: Vec<Vec<u8>> = (0..50).map(|i| vec![i as u8; 300]).collect();
    let records = records(&values);
    let plain = decode_records(&at_base(build_batch(&records), 1000)).unwrap();
    for codec in BATCH_CODECS {
        let batch = at_base(build_compressed_batch(&records, codec).unwrap(), 1000);
        let header = verify_batch(&batch).expect("CRC and length are right");
        assert_eq!(header.compression().codec(), Some(codec));
        assert!(batch.len() < 50 * 300, "{codec} compressed nothing");
        assert_eq!(decode_records(&batch).unwrap(), plain, "{codec}");
    }
}

#[test]
fn unknown_codec_bits_are_an_error() {
    let batch = build_batch(&records(&[b"v".to_vec()]));
    for bits in 5..=7u8 {
        let mut wrong = BytesMut::from(&batch[..]);
        wrong[22] = bits;
        let wrong = wrong.freeze();
        assert_eq!(decode_records(&wrong), Err(BatchError::UnknownCodec(bits)));
        assert_eq!(BatchError::UnknownCodec(bits).reason(), "unknown_codec");
    }
}

#[test]
fn uncompressed_records_under_a_codec_bit_are_an_error_for_every_codec() {
    let batch = build_batch(&records(&[b"plain records".to_vec(), b"two".to_vec()]));
    for codec in BATCH_CODECS {
        let mut wrong = BytesMut::from(&batch[..]);
        wrong[22] = Compression::attribute_bits(codec).unwrap() as u8;
        let err = decode_records(&wrong.freeze()).unwrap_err();
        assert!(
            matches!(err, BatchError::Decompress(DecompressError::Corrupt { codec: c, .. }) if c == codec)
                || matches!(err, BatchError::BadRecord(_)),
            "{codec}: {err}"
        );
    }
}

#[test]
fn truncated_compressed_batches_are_errors_at_every_length() {
    let values: Vec<Vec<u8>> = (0..20).map(|i| format!("value {i}").into_bytes()).collect();
    let records = records(&values);
    for codec in BATCH_CODECS {
        let batch = build_compressed_batch(&records, codec).unwrap();
        let mut cuts_decoded = 0;
        for cut in crate::batch::BATCH_HEADER_LEN..batch.len() {
            // The header still declares the full length: decode what is there.
            let short = batch.slice(..cut);
            // Never a part of the records: all of them (lz4_flex takes a frame whose end mark
            // is cut off as ended) or an error.
            if let Ok(decoded) = decode_records(&short) {
                let decoded: Vec<Record> = decoded.into_iter().map(|r| r.record).collect();
                assert_eq!(decoded, records, "{codec} cut at {cut}");
                cuts_decoded += 1;
            }
        }
        assert!(cuts_decoded <= 4, "{codec}: {cuts_decoded} cuts decoded");
    }
}

#[test]
fn a_record_offset_outside_its_batch_is_an_error() {
    // One record batch claiming last offset delta 0 holding a record with offset delta 5.
    let mut batch = BytesMut::from(&build_batch(&records(&[b"v".to_vec()]))[..]);
    // Record: length varint, attributes, timestamp delta varint (0), offset delta varint (0).
    let at = crate::batch::BATCH_HEADER_LEN + 3;
    assert_eq!(batch[at], 0);
    batch[at] = 10; // zigzag 5
    assert_eq!(
        decode_records(&batch.freeze()),
        Err(BatchError::BadRecord("offset delta outside the batch"))
    );
}

proptest! {
    #[test]
    fn every_codec_round_trips(data in proptest::collection::vec(any::<u8>(), 0..5000), repeat in 1usize..40) {
        let data = data.repeat(repeat);
        for codec in ALL_CODECS {
            let compressed = compress(codec, &data).unwrap();
            prop_assert_eq!(&decompress(codec, &compressed, data.len()).unwrap(), &data);
        }
    }

    #[test]
    fn compressed_batches_round_trip(
        values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 1..30),
        base in 0i64..1 << 40,
    ) {
        let records = records(&values);
        for codec in BATCH_CODECS {
            let batch = at_base(build_compressed_batch(&records, codec).unwrap(), base);
            prop_assert!(verify_batch(&batch).is_ok());
            let decoded = decode_records(&batch).unwrap();
            let offsets: Vec<i64> = decoded.iter().map(|r| r.offset).collect();
            let expected: Vec<i64> = (base..base + values.len() as i64).collect();
            prop_assert_eq!(offsets, expected);
            let decoded: Vec<Record> = decoded.into_iter().map(|r| r.record).collect();
            prop_assert_eq!(&decoded, &records);
        }
    }

    #[test]
    fn decoding_from_an_offset_keeps_exactly_the_records_from_there(
        count in 1usize..40,
        base in 0i64..1000,
        from in -5i64..1100,
        max in 0usize..50,
        codec in proptest::sample::select(vec![None, Some(Codec::Gzip), Some(Codec::Lz4)]),
    ) {
        let values: Vec<Vec<u8>> = (0..count).map(|i| vec![i as u8; i * 3]).collect();
        let records = records(&values);
        let batch = match codec {
            None => build_batch(&records),
            Some(codec) => build_compressed_batch(&records, codec).unwrap(),
        };
        let batch = at_base(batch, base);
        let all: Vec<_> = decode_records(&batch).unwrap().into_iter().filter(|r| r.offset >= from).collect();
        prop_assert_eq!(decode_records_from(&batch, from, usize::MAX).unwrap(), all.clone());
        let first: Vec<_> = all.into_iter().take(max).collect();
        prop_assert_eq!(decode_records_from(&batch, from, max).unwrap(), first.clone());
        let cache = InflatedBatches::default();
        let p = crate::TopicPartition::new("t", 0);
        prop_assert_eq!(cache.decode_from(&p, &batch, from, max).unwrap(), first);
    }

    #[test]
    fn garbage_never_panics_any_codec(data in proptest::collection::vec(any::<u8>(), 0..2000)) {
        for codec in ALL_CODECS {
            let _ = decompress(codec, &data, 1 << 20);
        }
        // Garbage with a valid xerial header, and as the records of a batch of every codec.
        let mut xerial = compress(Codec::Snappy, b"").unwrap();
        xerial.extend(&data);
        let _ = decompress(Codec::Snappy, &xerial, 1 << 20);
        let header = build_batch(&records(&[Vec::new()]));
        for bits in 0..8u8 {
            let mut batch = BytesMut::from(&header[..crate::batch::BATCH_HEADER_LEN]);
            batch[22] = bits;
            batch.extend_from_slice(&data);
            let len = (batch.len() - crate::batch::BATCH_LENGTH_PREFIX) as i32;
            batch[8..12].copy_from_slice(&len.to_be_bytes());
            let _ = decode_records(&batch.freeze());
        }
    }

    #[test]
    fn flipped_bytes_in_compressed_streams_never_panic(
        at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let data = b"some records, some repeated records, some repeated records".repeat(20);
        for codec in ALL_CODECS {
            let mut compressed = compress(codec, &data).unwrap();
            let i = at.index(compressed.len());
            compressed[i] ^= flip;
            if let Ok(out) = decompress(codec, &compressed, 1 << 20) {
                prop_assert!(out.len() <= 1 << 20);
            }
        }
    }
}
