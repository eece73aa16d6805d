//! The fuzz seed corpus and its replay: every seed passes [`check_decoders`], deterministic
//! mutations of every seed do too, and the files on disk are what [`seed_corpus`] builds
//! (byte for byte but for deflate seeds, whose bytes depend on the linked deflate backend; set
//! `TRIBUTARY_WRITE_API_CORPUS=1` to rewrite them after a format change).

use std::path::PathBuf;

use bytes::Bytes;

use super::super::{Codec, compress};
use super::{check_decoders, check_record_batch};
use crate::batch::{Compression, Record, build_batch, build_compressed_batch};

fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/decompress")
}

fn records(count: usize) -> Vec<Record> {
    (0..count)
        .map(|i| Record {
            key: (i % 2 == 0).then(|| Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!("value {i} ").repeat(8))),
            timestamp: 1_700_000_000_000 + i as i64,
            headers: vec![(Bytes::from_static(b"h"), Some(Bytes::from_static(b"v")))],
        })
        .collect()
}

/// Selector byte of `codec` in the check's input layout.
fn selector(codec: Codec) -> u8 {
    match codec {
        Codec::Gzip => 0,
        Codec::Snappy => 1,
        Codec::Lz4 => 2,
        Codec::Zstd => 3,
        Codec::Zlib => 4,
    }
}

/// (file name, bytes) of every seed, in name order.
fn seed_corpus() -> Vec<(String, Vec<u8>)> {
    let mut seeds = Vec::new();
    for codec in [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd] {
        let batch = build_compressed_batch(&records(6), codec).expect("compress");
        seeds.push((format!("batch_{codec}"), batch.to_vec()));
        // The same batch cut short, and with another codec's bits.
        seeds.push((
            format!("hostile_batch_{codec}_truncated"),
            batch[..batch.len() - 7].to_vec(),
        ));
        let mut wrong = batch.to_vec();
        wrong[22] = (Compression::attribute_bits(codec).expect("batch codec") as u8 % 4) + 1;
        seeds.push((format!("hostile_batch_{codec}_wrong_codec_bits"), wrong));
    }
    let mut unknown = build_batch(&records(2)).to_vec();
    unknown[22] = 6;
    seeds.push(("hostile_batch_unknown_codec".into(), unknown));
    for codec in [
        Codec::Gzip,
        Codec::Snappy,
        Codec::Lz4,
        Codec::Zstd,
        Codec::Zlib,
    ] {
        let mut stream = vec![selector(codec)];
        stream.extend(compress(codec, &b"stream of bytes ".repeat(64)).expect("compress"));
        seeds.push((format!("stream_{codec}"), stream));
        // 2 MiB of zeros: past the check's 1 MiB limit.
        let mut bomb = vec![selector(codec)];
        bomb.extend(compress(codec, &vec![0u8; 2 << 20]).expect("compress"));
        seeds.push((format!("hostile_stream_{codec}_bomb"), bomb));
    }
    let mut raw_snappy = vec![selector(Codec::Snappy)];
    raw_snappy.extend(
        snap::raw::Encoder::new()
            .compress_vec(&b"raw snappy ".repeat(40))
            .expect("compress"),
    );
    seeds.push(("stream_snappy_raw".into(), raw_snappy));
    seeds.sort();
    seeds
}

#[test]
fn corpus_files_are_what_the_builder_makes() {
    let seeds = seed_corpus();
    let dir = corpus_dir();
    if std::env::var_os("TRIBUTARY_WRITE_API_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).expect("corpus dir");
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(format!("{name}.bin")), bytes).expect("write seed");
        }
    }
    let mut on_disk: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .map(|entry| {
            let path = entry.expect("entry").path();
            let name = path
                .file_stem()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            (name, std::fs::read(&path).expect("read seed"))
        })
        .collect();
    on_disk.sort();
    let names =
        |list: &[(String, Vec<u8>)]| list.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>();
    assert_eq!(names(&on_disk), names(&seeds));
    for ((name, disk), (_, built)) in on_disk.iter().zip(&seeds) {
        check_decoders(disk);
        // Deflate output depends on the backend the build links (miniz_oxide, or zlib when
        // another crate of the build asks for it); the other encoders are deterministic.
        if !(name.contains("gzip") || name.contains("zlib")) {
            assert_eq!(disk, built, "seed {name} differs from the builder's");
        }
    }
}

#[test]
fn every_seed_and_its_mutations_pass_the_checks() {
    for (_, seed) in seed_corpus() {
        check_decoders(&seed);
        // Deterministic mutations: each byte flipped (sampled), and every tenth cut.
        let step = (seed.len() / 200).max(1);
        for at in (0..seed.len()).step_by(step) {
            let mut flipped = seed.clone();
            flipped[at] ^= 0x5A;
            check_decoders(&flipped);
        }
        for cut in (0..seed.len()).step_by((seed.len() / 10).max(1)) {
            check_decoders(&seed[..cut]);
        }
    }
}

/// Seeds of `record_batch`: the batch seeds above and an uncompressed batch.
fn record_batch_seeds() -> Vec<(String, Vec<u8>)> {
    let mut seeds: Vec<_> = seed_corpus()
        .into_iter()
        .filter(|(name, _)| name.contains("batch"))
        .collect();
    seeds.push(("batch_none".into(), build_batch(&records(9)).to_vec()));
    let mut max_delta = build_batch(&records(1)).to_vec();
    max_delta[23..27].copy_from_slice(&i32::MAX.to_be_bytes());
    crate::batch::reseal(&mut max_delta);
    seeds.push(("hostile_batch_last_offset_delta_max".into(), max_delta));
    seeds
}

#[test]
fn record_batch_corpus_replays_with_mutations() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/record_batch");
    let seeds = record_batch_seeds();
    if std::env::var_os("TRIBUTARY_WRITE_API_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).expect("corpus dir");
        for (name, bytes) in &seeds {
            std::fs::write(dir.join(format!("{name}.bin")), bytes).expect("write seed");
        }
    }
    let files: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .expect("corpus dir")
        .map(|entry| std::fs::read(entry.expect("entry").path()).expect("read seed"))
        .collect();
    assert!(files.len() >= seeds.len());
    for seed in files {
        check_record_batch(&seed);
        let step = (seed.len() / 300).max(1);
        for at in (0..seed.len()).step_by(step) {
            let mut flipped = seed.clone();
            flipped[at] ^= 0x5A;
            check_record_batch(&flipped);
        }
        for cut in (0..seed.len()).step_by((seed.len() / 10).max(1)) {
            check_record_batch(&seed[..cut]);
        }
    }
}

/// `verify_batch` compared the record count with `last_offset_delta + 1` in i32: a delta of
/// i32::MAX overflowed (a panic in debug builds, the broker's tests run those). Fewer records
/// than offsets is a compacted batch to `verify_batch`; a producer's is refused by
/// `check_produced`.
#[test]
fn a_last_offset_delta_of_i32_max_is_refused_without_overflow() {
    let mut batch = build_batch(&records(1)).to_vec();
    batch[23..27].copy_from_slice(&i32::MAX.to_be_bytes());
    crate::batch::reseal(&mut batch);
    let verified = crate::batch::VerifiedBatch::verify(bytes::Bytes::from(batch.clone()))
        .expect("one record over i32::MAX + 1 offsets is a valid (compacted) batch");
    assert!(crate::batch::check_produced(&verified).is_err());
    check_record_batch(&batch);
}
