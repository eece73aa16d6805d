//! LZ4 frames as Kafka producers write them: independent blocks of at most 64 KiB, no block or
//! content checksums (librdkafka sets only `blockIndependent`; Kafka's Java producer the same).
//! Such a frame is inflated block by block straight into the output; any other frame (linked
//! blocks, checksums, a dictionary) goes through `lz4_flex`'s general frame decoder.
//!
//! Why: the general decoder allocates and zero-fills two block buffers per frame and copies
//! every block out of them through `Read`; with one frame per Kafka batch that was most of the
//! cost of reading lz4 batches (BENCHMARKS.md, "Cross-protocol reads").
//!
//! Invariants: the output never grows past `limit` bytes (a block is given at most the room
//! left under the limit, and a block that needs more is [`DecompressError::TooLarge`]); every
//! length is checked against the input before it is used; nothing panics on any input. The
//! header checksum byte is not verified here: the batch's CRC-32C, checked when the batch was
//! produced, already covers every byte of the frame.

use super::{Codec, DecompressError};

const MAGIC: u32 = 0x184D_2204;
/// FLG bits (LZ4 frame format 1.6.x).
const FLG_VERSION_MASK: u8 = 0b1100_0000;
const FLG_VERSION_01: u8 = 0b0100_0000;
const FLG_BLOCK_INDEPENDENT: u8 = 0b0010_0000;
const FLG_BLOCK_CHECKSUM: u8 = 0b0001_0000;
const FLG_CONTENT_SIZE: u8 = 0b0000_1000;
const FLG_CONTENT_CHECKSUM: u8 = 0b0000_0100;
const FLG_DICT_ID: u8 = 0b0000_0001;
/// The high bit of a block size marks a block stored uncompressed.
const BLOCK_UNCOMPRESSED: u32 = 0x8000_0000;

/// Inflates the frames of `input` if every one of them has the simple form; `None` when one
/// does not (the caller then uses the general decoder on the whole input).
pub(super) fn inflate_simple(
    input: &[u8],
    limit: usize,
) -> Option<Result<Vec<u8>, DecompressError>> {
    let mut out = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        let (max_block, blocks) = match simple_frame_header(rest) {
            Header::Simple { max_block, blocks } => (max_block, blocks),
            Header::Other => return None,
            Header::Truncated => return Some(Err(corrupt("truncated frame header"))),
        };
        match inflate_blocks(blocks, max_block, limit, &mut out) {
            Ok(after) => rest = after,
            Err(err) => return Some(Err(err)),
        }
    }
    Some(Ok(out))
}

enum Header<'a> {
    /// A frame this module inflates: its block size and the bytes after its header.
    Simple { max_block: usize, blocks: &'a [u8] },
    /// A frame for the general decoder (or not a frame at all: it reports that).
    Other,
    /// The frame magic, then too few bytes for a header.
    Truncated,
}

fn simple_frame_header(frame: &[u8]) -> Header<'_> {
    let Some((magic, rest)) = frame.split_first_chunk::<4>() else {
        return Header::Other;
    };
    if u32::from_le_bytes(*magic) != MAGIC {
        return Header::Other;
    }
    let Some((&[flg, bd], rest)) = rest.split_first_chunk::<2>() else {
        return Header::Truncated;
    };
    let wanted = FLG_VERSION_01 | FLG_BLOCK_INDEPENDENT;
    let unsupported = FLG_BLOCK_CHECKSUM | FLG_CONTENT_CHECKSUM | FLG_DICT_ID;
    if flg & (FLG_VERSION_MASK | FLG_BLOCK_INDEPENDENT) != wanted || flg & unsupported != 0 {
        return Header::Other;
    }
    let max_block = match (bd >> 4) & 0b111 {
        4 => 64 << 10,
        5 => 256 << 10,
        6 => 1 << 20,
        7 => 4 << 20,
        _ => return Header::Other,
    };
    // The optional content size (8 bytes), then the header checksum byte.
    let skip = if flg & FLG_CONTENT_SIZE != 0 { 9 } else { 1 };
    match rest.get(skip..) {
        Some(blocks) => Header::Simple { max_block, blocks },
        None => Header::Truncated,
    }
}

/// Appends the blocks of one frame to `out` up to its end mark; returns the input after it.
fn inflate_blocks<'a>(
    mut blocks: &'a [u8],
    max_block: usize,
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<&'a [u8], DecompressError> {
    loop {
        let (size, rest) = blocks
            .split_first_chunk::<4>()
            .ok_or_else(|| corrupt("truncated block size"))?;
        let size = u32::from_le_bytes(*size);
        if size == 0 {
            return Ok(rest);
        }
        let stored = size & BLOCK_UNCOMPRESSED != 0;
        let len = (size & !BLOCK_UNCOMPRESSED) as usize;
        if len > max_block {
            return Err(corrupt("block larger than the frame's block size"));
        }
        let block = rest.get(..len).ok_or_else(|| corrupt("truncated block"))?;
        let room = limit.saturating_sub(out.len());
        let start = out.len();
        if stored {
            if len > room {
                return Err(too_large(limit));
            }
            out.extend_from_slice(block);
        } else {
            let window = max_block.min(room);
            out.resize(start + window, 0);
            match lz4_flex::block::decompress_into(block, &mut out[start..]) {
                Ok(written) => out.truncate(start + written),
                Err(lz4_flex::block::DecompressError::OutputTooSmall { .. })
                    if window < max_block =>
                {
                    return Err(too_large(limit));
                }
                Err(err) => return Err(corrupt(err)),
            }
        }
        blocks = &rest[len..];
    }
}

fn corrupt(reason: impl std::fmt::Display) -> DecompressError {
    DecompressError::corrupt(Codec::Lz4, reason)
}

fn too_large(limit: usize) -> DecompressError {
    DecompressError::TooLarge {
        codec: Codec::Lz4,
        limit,
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use lz4_flex::frame::{BlockMode, BlockSize, FrameDecoder, FrameEncoder, FrameInfo};
    use proptest::prelude::*;

    use super::*;

    fn frame(data: &[u8], info: FrameInfo) -> Vec<u8> {
        let mut encoder = FrameEncoder::with_frame_info(info, Vec::new());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn general(input: &[u8]) -> std::io::Result<Vec<u8>> {
        let mut out = Vec::new();
        FrameDecoder::new(input).read_to_end(&mut out).map(|_| out)
    }

    /// Text-like data: repeats (compressed blocks) with runs of noise (stored blocks).
    fn sample(len: usize, seed: u64) -> Vec<u8> {
        let mut state = seed | 1;
        (0..len)
            .map(|i| {
                if (i / 70_000) % 3 == 2 {
                    state ^= state << 13;
                    state ^= state >> 7;
                    state ^= state << 17;
                    state as u8
                } else {
                    b"kafka wrote this batch; "[i % 24]
                }
            })
            .collect()
    }

    #[test]
    fn frames_shaped_as_kafka_producers_write_them_take_the_block_path() {
        let data = sample(300_000, 7);
        let input = frame(&data, FrameInfo::new());
        let inflated = inflate_simple(&input, 1 << 20)
            .expect("the block path")
            .unwrap();
        assert_eq!(inflated, data);
        let with_size = frame(
            &data,
            FrameInfo::new().content_size(Some(data.len() as u64)),
        );
        assert_eq!(inflate_simple(&with_size, 1 << 20).unwrap().unwrap(), data);
    }

    #[test]
    fn frames_with_checksums_or_linked_blocks_go_to_the_general_decoder() {
        let data = sample(150_000, 3);
        for info in [
            FrameInfo::new().block_mode(BlockMode::Linked),
            FrameInfo::new().block_checksums(true),
            FrameInfo::new().content_checksum(true),
        ] {
            let input = frame(&data, info);
            assert!(inflate_simple(&input, 1 << 20).is_none());
            assert_eq!(
                super::super::decompress(Codec::Lz4, &input, 1 << 20).unwrap(),
                data
            );
        }
    }

    #[test]
    fn output_stops_at_the_limit() {
        let data = vec![0u8; 1 << 20];
        let input = frame(&data, FrameInfo::new());
        assert_eq!(
            inflate_simple(&input, data.len()).unwrap().unwrap().len(),
            data.len()
        );
        for limit in [0, 1000, (64 << 10) + 1, data.len() - 1] {
            assert_eq!(
                inflate_simple(&input, limit).unwrap(),
                Err(too_large(limit)),
                "limit {limit}"
            );
        }
    }

    #[test]
    fn concatenated_frames_are_read_in_order() {
        let (first, second) = (sample(100_000, 1), sample(20_000, 2));
        let mut input = frame(&first, FrameInfo::new());
        input.extend(frame(&second, FrameInfo::new()));
        let mut expected = first;
        expected.extend(second);
        assert_eq!(inflate_simple(&input, 1 << 20).unwrap().unwrap(), expected);
    }

    #[test]
    fn every_truncation_is_refused_without_panic() {
        let input = frame(&sample(150_000, 9), FrameInfo::new());
        for cut in 1..input.len() {
            let truncated = &input[..cut];
            let ours = super::super::decompress(Codec::Lz4, truncated, 1 << 20);
            assert!(
                ours.is_err(),
                "a frame cut at {cut} of {} was accepted",
                input.len()
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn the_block_path_agrees_with_the_general_decoder(
            len in 0usize..400_000,
            seed in any::<u64>(),
            big_blocks in any::<bool>(),
            content_size in any::<bool>(),
        ) {
            let data = sample(len, seed);
            let block_size = if big_blocks { BlockSize::Max256KB } else { BlockSize::Max64KB };
            let info = FrameInfo::new()
                .block_size(block_size)
                .content_size(content_size.then_some(len as u64));
            let input = frame(&data, info);
            let ours = inflate_simple(&input, 1 << 20).expect("the block path").unwrap();
            prop_assert_eq!(&ours, &general(&input).unwrap());
            prop_assert_eq!(ours, data);
        }

        #[test]
        fn flipped_bytes_never_panic_or_pass_the_limit(
            seed in any::<u64>(),
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
            limit in 0usize..300_000,
        ) {
            let mut input = frame(&sample(200_000, seed), FrameInfo::new());
            for (at, byte) in flips {
                let at = at.index(input.len());
                input[at] ^= byte | 1;
            }
            if let Some(Ok(out)) = inflate_simple(&input, limit) {
                prop_assert!(out.len() <= limit);
            }
        }
    }
}
