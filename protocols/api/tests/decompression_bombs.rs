//! Decompression bombs: 200 MB of zeros compressed with every codec (and a zlib bomb) inflate
//! to an error, not to memory. One test in its own binary, so the process's peak resident size
//! (`VmHWM`) measures these decodes alone: an unbounded decoder would reach 200 MB.

use std::io::{self, Read, Write};

use bytes::{Bytes, BytesMut};
use tributary_api::batch::{
    BATCH_HEADER_LEN, BATCH_LENGTH_PREFIX, BatchError, Compression, Record, build_batch,
    decode_records,
};
use tributary_api::compression::{
    Codec, DecompressError, MAX_INFLATED_BATCH_BYTES, decompress, inflate_zlib,
};

const BOMB_BYTES: u64 = 200_000_000;

fn zeros() -> io::Take<io::Repeat> {
    io::repeat(0).take(BOMB_BYTES)
}

/// 200 MB of zeros compressed by `codec`, streamed (the zeros are never in memory at once).
fn bomb(codec: Codec) -> Vec<u8> {
    match codec {
        Codec::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            io::copy(&mut zeros(), &mut encoder).unwrap();
            encoder.finish().unwrap()
        }
        Codec::Zlib => {
            let mut encoder =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
            io::copy(&mut zeros(), &mut encoder).unwrap();
            encoder.finish().unwrap()
        }
        Codec::Lz4 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            io::copy(&mut zeros(), &mut encoder).unwrap();
            encoder.finish().unwrap()
        }
        Codec::Zstd => {
            let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 1).unwrap();
            io::copy(&mut zeros(), &mut encoder).unwrap();
            encoder.finish().unwrap()
        }
        Codec::Snappy => {
            // xerial framing: one compressed block of 1 MB of zeros, repeated.
            let block = snap::raw::Encoder::new()
                .compress_vec(&vec![0u8; 1_000_000])
                .unwrap();
            let mut out = b"\x82SNAPPY\0".to_vec();
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            for _ in 0..BOMB_BYTES / 1_000_000 {
                out.extend_from_slice(&(block.len() as i32).to_be_bytes());
                out.extend_from_slice(&block);
            }
            out
        }
    }
}

/// A raw snappy block that honestly declares 200 MB: one zero literal, then 64-byte copies.
fn raw_snappy_bomb() -> Vec<u8> {
    let mut out = Vec::new();
    let mut declared = BOMB_BYTES;
    while declared >= 0x80 {
        out.push((declared as u8) | 0x80);
        declared >>= 7;
    }
    out.push(declared as u8);
    out.extend_from_slice(&[0, 0]); // literal of 1 byte: 0
    let mut written = 1u64;
    while written < BOMB_BYTES {
        let len = (BOMB_BYTES - written).min(64);
        out.push((((len - 1) as u8) << 2) | 0b10); // copy with a 2-byte offset
        out.extend_from_slice(&1u16.to_le_bytes());
        written += len;
    }
    out
}

/// A batch whose records section is `compressed` under `codec`'s attribute bits.
fn batch_of(codec: Codec, compressed: &[u8]) -> Bytes {
    let header = build_batch(&[Record::default()]);
    let mut batch = BytesMut::from(&header[..BATCH_HEADER_LEN]);
    batch[22] = Compression::attribute_bits(codec).unwrap() as u8;
    batch.extend_from_slice(compressed);
    let len = (batch.len() - BATCH_LENGTH_PREFIX) as i32;
    batch[8..12].copy_from_slice(&len.to_be_bytes());
    batch.freeze()
}

/// The process's peak resident set size in bytes.
fn peak_rss() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

#[test]
fn bombs_of_every_codec_are_errors_within_bounded_memory() {
    let bombs: Vec<(Codec, Vec<u8>)> = [Codec::Gzip, Codec::Snappy, Codec::Lz4, Codec::Zstd]
        .into_iter()
        .map(|codec| (codec, bomb(codec)))
        .chain([(Codec::Snappy, raw_snappy_bomb())])
        .collect();
    let zlib = bomb(Codec::Zlib);
    let batches: Vec<(Codec, Bytes)> = bombs.iter().map(|(c, b)| (*c, batch_of(*c, b))).collect();
    std::io::stdout().flush().unwrap();
    let before = peak_rss();

    for (codec, batch) in &batches {
        let err = decode_records(batch).unwrap_err();
        assert_eq!(
            err,
            BatchError::Decompress(DecompressError::TooLarge {
                codec: *codec,
                limit: MAX_INFLATED_BATCH_BYTES
            }),
            "{codec}"
        );
        assert_eq!(err.reason(), "inflated_too_large");
    }
    // RocketMQ bodies are bounded by the broker's max message size (4 MiB by default).
    assert_eq!(
        inflate_zlib(&zlib, 4 << 20),
        Err(DecompressError::TooLarge {
            codec: Codec::Zlib,
            limit: 4 << 20
        })
    );
    for (codec, bomb) in &bombs {
        assert!(decompress(*codec, bomb, 1 << 20).is_err(), "{codec}");
    }

    let grown = peak_rss().saturating_sub(before);
    println!("peak RSS grew by {} MiB decoding 200 MB bombs", grown >> 20);
    // At most the 64 MiB limit plus a decoder's window and buffers; never the 200 MB.
    assert!(
        grown < 150 << 20,
        "peak RSS grew by {grown} bytes decoding the bombs"
    );
}
