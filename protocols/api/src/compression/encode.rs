//! Compression in the forms Kafka producers write, for tests, benchmarks and fuzz seeds (the
//! broker itself never compresses: it stores what producers send).
//!
//! Snappy is written in snappy-java's xerial framing, as Kafka's Java producer does, with
//! blocks of 32 KiB of input; raw snappy is [`snap::raw`] directly.

use std::io::{self, Write};

use super::{Codec, XERIAL_MAGIC};

/// Input bytes per xerial block (snappy-java's default block size).
const XERIAL_BLOCK: usize = 32 << 10;

/// Compresses `data` with `codec` as a Kafka producer (or, for zlib, a RocketMQ producer)
/// would.
pub fn compress(codec: Codec, data: &[u8]) -> io::Result<Vec<u8>> {
    match codec {
        Codec::Gzip => {
            let mut encoder =
                flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data)?;
            encoder.finish()
        }
        Codec::Zlib => {
            let mut encoder =
                flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            encoder.write_all(data)?;
            encoder.finish()
        }
        Codec::Snappy => {
            let mut out = Vec::with_capacity(data.len() / 2 + 16);
            out.extend_from_slice(XERIAL_MAGIC);
            out.extend_from_slice(&1i32.to_be_bytes());
            out.extend_from_slice(&1i32.to_be_bytes());
            let mut encoder = snap::raw::Encoder::new();
            for block in data.chunks(XERIAL_BLOCK) {
                let compressed = encoder.compress_vec(block).map_err(io::Error::other)?;
                let len = i32::try_from(compressed.len()).map_err(io::Error::other)?;
                out.extend_from_slice(&len.to_be_bytes());
                out.extend_from_slice(&compressed);
            }
            Ok(out)
        }
        Codec::Lz4 => {
            let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
            encoder.write_all(data)?;
            encoder.finish().map_err(io::Error::other)
        }
        Codec::Zstd => zstd::stream::encode_all(data, 3),
    }
}
