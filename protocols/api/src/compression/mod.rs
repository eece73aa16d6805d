//! Decompression of Kafka's batch codecs (gzip, snappy, lz4, zstd) and of RocketMQ's zlib
//! bodies: the one decoder every reader uses (docs/interop.md, "Compressed data is inflated
//! once, for every reader").
//!
//! Invariants:
//! - Every function takes an output `limit` and never produces, or allocates for, more than
//!   `limit` bytes of output: streams are read through a `take(limit + 1)` bound, and sizes a
//!   stream declares (snappy's preamble) are checked against the limit and against the most
//!   the input could expand to before anything is allocated. Inflating past the limit is
//!   [`DecompressError::TooLarge`], never an allocation. zstd additionally keeps its window
//!   within the library's default `windowLogMax` (2^27 bytes), whatever a frame declares.
//! - Corrupt, truncated or trailing-garbage input is [`DecompressError::Corrupt`]; nothing
//!   here panics on any input.
//! - No I/O: input and output are in memory.
//!
//! Snappy comes in two forms in Kafka batches: raw snappy (one block, as librdkafka writes
//! it) and the xerial framing of snappy-java (Kafka's Java producer): the magic
//! `\x82SNAPPY\0`, two big-endian `i32` versions, then blocks of `[i32 BE length][raw snappy
//! block]`. A stream starting with the magic is read as xerial, anything else as raw.

mod cache;
pub mod check;
mod encode;
mod lz4;

pub use cache::{DEFAULT_INFLATED_CACHE_BYTES, InflatedBatches};
pub use encode::compress;

use std::fmt;
use std::io::Read;

/// The most bytes a Kafka batch's records may inflate to (the records section after the
/// 61-byte header). A batch over it is undeliverable to readers that decode records.
pub const MAX_INFLATED_BATCH_BYTES: usize = 64 << 20;

/// snappy-java's stream magic (`\x82SNAPPY\0`), followed by two `i32` versions.
const XERIAL_MAGIC: &[u8; 8] = b"\x82SNAPPY\0";
const XERIAL_HEADER_LEN: usize = XERIAL_MAGIC.len() + 8;
/// The most raw snappy output one input byte can stand for: the best element is a 3-byte copy
/// of 64 bytes (about 21x); 32 leaves room and still bounds what a declared length allocates.
const SNAPPY_MAX_EXPANSION: usize = 32;

/// A compression format this module decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    Gzip,
    Snappy,
    Lz4,
    Zstd,
    /// RocketMQ's body compression (sysFlag bit 0): a zlib stream (RFC 1950).
    Zlib,
}

impl Codec {
    pub fn name(self) -> &'static str {
        match self {
            Self::Gzip => "gzip",
            Self::Snappy => "snappy",
            Self::Lz4 => "lz4",
            Self::Zstd => "zstd",
            Self::Zlib => "zlib",
        }
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why compressed bytes could not be inflated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecompressError {
    #[error("{codec} data inflates to more than the limit of {limit} bytes")]
    TooLarge { codec: Codec, limit: usize },
    #[error("corrupt {codec} data: {reason}")]
    Corrupt { codec: Codec, reason: String },
}

impl DecompressError {
    fn corrupt(codec: Codec, reason: impl fmt::Display) -> Self {
        Self::Corrupt {
            codec,
            reason: reason.to_string(),
        }
    }

    pub fn codec(&self) -> Codec {
        match self {
            Self::TooLarge { codec, .. } | Self::Corrupt { codec, .. } => *codec,
        }
    }
}

/// Inflates `input`, compressed with `codec`, to at most `limit` bytes.
pub fn decompress(codec: Codec, input: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    match codec {
        Codec::Gzip => read_bounded(codec, flate2::read::MultiGzDecoder::new(input), limit),
        Codec::Snappy => unsnappy(input, limit),
        Codec::Lz4 => lz4::inflate_simple(input, limit).unwrap_or_else(|| {
            read_bounded(codec, lz4_flex::frame::FrameDecoder::new(input), limit)
        }),
        Codec::Zstd => {
            let decoder = zstd::stream::read::Decoder::with_buffer(input)
                .map_err(|err| DecompressError::corrupt(codec, err))?;
            read_bounded(codec, decoder, limit)
        }
        Codec::Zlib => inflate_zlib(input, limit),
    }
}

/// Inflates a RocketMQ body compressed with zlib (sysFlag bit 0) to at most `limit` bytes.
pub fn inflate_zlib(input: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let mut decoder = flate2::read::ZlibDecoder::new(input);
    let inflated = read_bounded(Codec::Zlib, &mut decoder, limit)?;
    // A zlib stream ends with its Adler-32; bytes after it are not part of the body.
    if decoder.total_in() != input.len() as u64 {
        return Err(DecompressError::corrupt(
            Codec::Zlib,
            "bytes after the end of the stream",
        ));
    }
    Ok(inflated)
}

/// Reads `decoder` to its end through a `limit + 1` bound: one byte over the limit is proof
/// enough of a bomb, and the output buffer never grows past `limit + 1` bytes.
fn read_bounded(
    codec: Codec,
    decoder: impl Read,
    limit: usize,
) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    let bound = (limit as u64).saturating_add(1);
    decoder
        .take(bound)
        .read_to_end(&mut out)
        .map_err(|err| DecompressError::corrupt(codec, err))?;
    if out.len() > limit {
        return Err(DecompressError::TooLarge { codec, limit });
    }
    Ok(out)
}

fn unsnappy(input: &[u8], limit: usize) -> Result<Vec<u8>, DecompressError> {
    let mut out = Vec::new();
    if input.starts_with(XERIAL_MAGIC) {
        let mut rest = input;
        while !rest.is_empty() {
            // snappy-java reads concatenated streams, each with its own header.
            if rest.starts_with(XERIAL_MAGIC) {
                rest = rest
                    .get(XERIAL_HEADER_LEN..)
                    .ok_or_else(|| DecompressError::corrupt(Codec::Snappy, "truncated header"))?;
                continue;
            }
            let (len, after) = rest
                .split_first_chunk::<4>()
                .ok_or_else(|| DecompressError::corrupt(Codec::Snappy, "truncated block length"))?;
            let len = usize::try_from(i32::from_be_bytes(*len))
                .map_err(|_| DecompressError::corrupt(Codec::Snappy, "negative block length"))?;
            let block = after
                .get(..len)
                .ok_or_else(|| DecompressError::corrupt(Codec::Snappy, "truncated block"))?;
            unsnappy_block(block, &mut out, limit)?;
            rest = &after[len..];
        }
    } else {
        unsnappy_block(input, &mut out, limit)?;
    }
    Ok(out)
}

/// Appends one raw snappy block to `out`, keeping `out` within `limit`.
fn unsnappy_block(block: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), DecompressError> {
    let declared = snap::raw::decompress_len(block)
        .map_err(|err| DecompressError::corrupt(Codec::Snappy, err))?;
    if declared > limit.saturating_sub(out.len()) {
        return Err(DecompressError::TooLarge {
            codec: Codec::Snappy,
            limit,
        });
    }
    if declared > block.len().saturating_mul(SNAPPY_MAX_EXPANSION) {
        return Err(DecompressError::corrupt(
            Codec::Snappy,
            format_args!(
                "declared length {declared} is more than {} bytes can hold",
                block.len()
            ),
        ));
    }
    let start = out.len();
    out.resize(start + declared, 0);
    let written = snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|err| DecompressError::corrupt(Codec::Snappy, err))?;
    if written != declared {
        return Err(DecompressError::corrupt(
            Codec::Snappy,
            "block shorter than its declared length",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
