//! Kafka RecordBatch v2: the one on-disk and in-flight unit of every protocol.
//!
//! Layout (big-endian), byte offsets from the start of the batch:
//!
//! | at | field | notes |
//! |---:|---|---|
//! |  0 | base offset `i64` | assigned by the broker on append |
//! |  8 | batch length `i32` | bytes that follow this field; whole batch = 12 + length |
//! | 12 | partition leader epoch `i32` | |
//! | 16 | magic `i8` | always 2 |
//! | 17 | CRC `u32` | CRC-32C of bytes `21..` |
//! | 21 | attributes `i16` | bits 0-2 codec, 3 timestamp type, 4 transactional, 5 control |
//! | 23 | last offset delta `i32` | last record's offset minus base offset |
//! | 27 | base timestamp `i64` | ms |
//! | 35 | max timestamp `i64` | ms |
//! | 43 | producer id `i64` | -1 when not idempotent |
//! | 51 | producer epoch `i16` | |
//! | 53 | base sequence `i32` | |
//! | 57 | record count `i32` | |
//! | 61 | records | compressed as a whole when the codec is not 0 |
//!
//! Invariants: the CRC does not cover the base offset, so the broker rewrites the base offset without
//! recomputing it; `BatchHeader::parse` checks that the declared length fits the buffer before anything
//! reads past the header; [`decode_records`] reads compressed batches through
//! [`crate::compression`], bounded by [`MAX_INFLATED_BATCH_BYTES`], and returns only records whose
//! offsets lie inside their batch (a reader moving its position to a record's offset + 1 never
//! passes a record it did not see). This module does no I/O.

use bytes::{BufMut, Bytes, BytesMut};

pub use crate::compression::MAX_INFLATED_BATCH_BYTES;
use crate::compression::{self, Codec, DecompressError};

/// Size of the fixed batch header, up to and including the record count.
pub const BATCH_HEADER_LEN: usize = 61;
/// Bytes before the batch-length field ends: base offset + batch length.
pub const BATCH_LENGTH_PREFIX: usize = 12;
/// The only batch format Tributary stores.
pub const MAGIC_V2: i8 = 2;
const CRC_START: usize = 21;

/// Why a byte range is not an acceptable RecordBatch v2.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BatchError {
    #[error("batch truncated: need {needed} bytes, have {available}")]
    Truncated { needed: usize, available: usize },
    #[error("batch length {0} is out of range")]
    BadLength(i32),
    #[error("unsupported record batch magic {0} (only v2 is stored)")]
    BadMagic(i8),
    #[error("batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    CrcMismatch { stored: u32, computed: u32 },
    #[error("record count {count} does not match last offset delta {last_offset_delta}")]
    BadCount { count: i32, last_offset_delta: i32 },
    #[error("malformed record: {0}")]
    BadRecord(&'static str),
    /// Refused where only uncompressed batches are taken (queue enqueues).
    #[error("records are compressed with codec {0}; only uncompressed batches are accepted here")]
    Compressed(u8),
    #[error("unknown compression codec {0} (Kafka defines 0-4)")]
    UnknownCodec(u8),
    #[error("{0}")]
    Decompress(#[from] DecompressError),
}

impl BatchError {
    /// A short label for metrics (`reason` of
    /// [`crate::interop::count_undeliverable`]).
    pub fn reason(&self) -> &'static str {
        match self {
            Self::UnknownCodec(_) | Self::Compressed(_) => "unknown_codec",
            Self::Decompress(DecompressError::TooLarge { .. }) => "inflated_too_large",
            Self::Decompress(_) => "decompress",
            _ => "corrupt_batch",
        }
    }
}

/// Compression codec named in a batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    None,
    Gzip,
    Snappy,
    Lz4,
    Zstd,
    /// Codec ids 5-7 are not defined by Kafka; such a batch is refused on append.
    Unknown(u8),
}

impl Compression {
    fn from_attributes(attributes: i16) -> Self {
        match (attributes & 0x07) as u8 {
            0 => Self::None,
            1 => Self::Gzip,
            2 => Self::Snappy,
            3 => Self::Lz4,
            4 => Self::Zstd,
            other => Self::Unknown(other),
        }
    }

    /// The codec to inflate the records with; `None` for uncompressed and unknown codecs.
    pub fn codec(self) -> Option<Codec> {
        match self {
            Self::Gzip => Some(Codec::Gzip),
            Self::Snappy => Some(Codec::Snappy),
            Self::Lz4 => Some(Codec::Lz4),
            Self::Zstd => Some(Codec::Zstd),
            Self::None | Self::Unknown(_) => None,
        }
    }

    /// The attribute bits 0-2 naming `codec` in a batch; `None` for codecs batches never use.
    pub fn attribute_bits(codec: Codec) -> Option<i16> {
        match codec {
            Codec::Gzip => Some(1),
            Codec::Snappy => Some(2),
            Codec::Lz4 => Some(3),
            Codec::Zstd => Some(4),
            Codec::Zlib => None,
        }
    }
}

/// The fixed header of one batch, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    pub base_offset: i64,
    /// Whole batch size in bytes, including the offset and length fields.
    pub total_len: usize,
    pub partition_leader_epoch: i32,
    pub crc: u32,
    pub attributes: i16,
    pub last_offset_delta: i32,
    pub base_timestamp: i64,
    pub max_timestamp: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub base_sequence: i32,
    pub record_count: i32,
}

impl BatchHeader {
    /// Decodes the header at the start of `buf`. Only the header bytes need to be present; the
    /// declared length is range-checked but the body may lie beyond `buf` (callers reading a file
    /// header-first rely on this).
    pub fn parse(buf: &[u8]) -> Result<Self, BatchError> {
        if buf.len() < BATCH_HEADER_LEN {
            return Err(BatchError::Truncated {
                needed: BATCH_HEADER_LEN,
                available: buf.len(),
            });
        }
        let batch_len = be_i32(buf, 8);
        if batch_len < (BATCH_HEADER_LEN - BATCH_LENGTH_PREFIX) as i32 {
            return Err(BatchError::BadLength(batch_len));
        }
        let magic = buf[16] as i8;
        if magic != MAGIC_V2 {
            return Err(BatchError::BadMagic(magic));
        }
        let header = Self {
            base_offset: be_i64(buf, 0),
            total_len: BATCH_LENGTH_PREFIX + batch_len as usize,
            partition_leader_epoch: be_i32(buf, 12),
            crc: u32::from_be_bytes([buf[17], buf[18], buf[19], buf[20]]),
            attributes: i16::from_be_bytes([buf[21], buf[22]]),
            last_offset_delta: be_i32(buf, 23),
            base_timestamp: be_i64(buf, 27),
            max_timestamp: be_i64(buf, 35),
            producer_id: be_i64(buf, 43),
            producer_epoch: i16::from_be_bytes([buf[51], buf[52]]),
            base_sequence: be_i32(buf, 53),
            record_count: be_i32(buf, 57),
        };
        if header.last_offset_delta < 0 {
            return Err(BatchError::BadCount {
                count: header.record_count,
                last_offset_delta: header.last_offset_delta,
            });
        }
        Ok(header)
    }

    /// Offset of the last record in the batch.
    pub fn last_offset(&self) -> i64 {
        self.base_offset
            .saturating_add(i64::from(self.last_offset_delta))
    }

    /// The sequence number of the batch's last record (idempotent producers; sequences wrap
    /// after `i32::MAX`).
    pub fn last_sequence(&self) -> i32 {
        let last = i64::from(self.base_sequence) + i64::from(self.last_offset_delta);
        i32::try_from(last).unwrap_or_else(|_| (last - i64::from(i32::MAX) - 1) as i32)
    }

    /// Number of offsets the batch occupies (`last_offset_delta + 1`).
    pub fn offset_count(&self) -> u64 {
        self.last_offset_delta as u64 + 1
    }

    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.attributes)
    }

    /// Bit 3: the timestamps are the broker's log-append time.
    pub fn is_log_append_time(&self) -> bool {
        self.attributes & 0x08 != 0
    }

    pub fn is_transactional(&self) -> bool {
        self.attributes & 0x10 != 0
    }

    pub fn is_control(&self) -> bool {
        self.attributes & 0x20 != 0
    }
}

/// A complete batch that [`verify_batch`] accepted, with its header. Only
/// [`VerifiedBatch::verify`] makes one, so a log handed one need not compute the CRC again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedBatch {
    bytes: Bytes,
    header: BatchHeader,
}

impl VerifiedBatch {
    /// Verifies `bytes` as one complete batch ([`verify_batch`]).
    pub fn verify(bytes: Bytes) -> Result<Self, BatchError> {
        let header = verify_batch(&bytes)?;
        Ok(Self { bytes, header })
    }

    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn into_parts(self) -> (Bytes, BatchHeader) {
        (self.bytes, self.header)
    }
}

/// Decodes the header of a complete batch and verifies its length and CRC-32C.
pub fn verify_batch(batch: &[u8]) -> Result<BatchHeader, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.total_len != batch.len() {
        return Err(BatchError::Truncated {
            needed: header.total_len,
            available: batch.len(),
        });
    }
    let computed = crc32c::crc32c(&batch[CRC_START..]);
    if computed != header.crc {
        return Err(BatchError::CrcMismatch {
            stored: header.crc,
            computed,
        });
    }
    // Widened: a last offset delta of i32::MAX must not overflow. Fewer records than offsets
    // is a batch log compaction thinned out (see `rebuild_batch`); produced batches are held
    // to exactly one record per offset by `check_produced`.
    if header.compression() == Compression::None
        && !(0..=i64::from(header.last_offset_delta) + 1).contains(&i64::from(header.record_count))
    {
        return Err(BatchError::BadCount {
            count: header.record_count,
            last_offset_delta: header.last_offset_delta,
        });
    }
    Ok(header)
}

/// Overwrites the base offset of a batch in place (the CRC does not cover it).
///
/// # Panics
/// Never for a buffer that passed [`verify_batch`]; shorter buffers are left unchanged.
pub fn set_base_offset(batch: &mut [u8], base_offset: i64) {
    if let Some(field) = batch.get_mut(0..8) {
        field.copy_from_slice(&base_offset.to_be_bytes());
    }
}

/// Recomputes the CRC of a batch whose bytes after the CRC field were changed in place. The
/// broker never changes stored records; tests and fuzz seeds build hostile batches with it.
/// Buffers shorter than a header are left unchanged.
pub fn reseal(batch: &mut [u8]) {
    if batch.len() < BATCH_HEADER_LEN {
        return;
    }
    let crc = crc32c::crc32c(&batch[CRC_START..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

/// Rewrites the max timestamp and sets the log-append-time attribute, re-computing the CRC.
/// Used when a topic's `message.timestamp.type` is `LogAppendTime`.
pub fn set_log_append_time(batch: &mut [u8], timestamp_ms: i64) {
    if batch.len() < BATCH_HEADER_LEN {
        return;
    }
    let attributes = i16::from_be_bytes([batch[21], batch[22]]) | 0x08;
    batch[21..23].copy_from_slice(&attributes.to_be_bytes());
    batch[35..43].copy_from_slice(&timestamp_ms.to_be_bytes());
    reseal(batch);
}

/// One record in protocol-neutral form.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Record {
    pub key: Option<Bytes>,
    pub value: Option<Bytes>,
    /// Milliseconds since the epoch.
    pub timestamp: i64,
    pub headers: Vec<(Bytes, Option<Bytes>)>,
}

/// A record read back out of a stored batch, with its absolute offset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRecord {
    pub offset: i64,
    pub record: Record,
}

/// Builds one uncompressed RecordBatch v2 (no producer id) from records. The base offset is 0;
/// the log assigns the real one on append.
pub fn build_batch(records: &[Record]) -> Bytes {
    let base_timestamp = records.first().map_or(0, |r| r.timestamp);
    let max_timestamp = records.iter().map(|r| r.timestamp).max().unwrap_or(0);
    // Sized first, so the batch is written in one allocation with no copy of any record.
    let layouts: Vec<RecordLayout> = records
        .iter()
        .enumerate()
        .map(|(index, record)| RecordLayout::of(record, index, base_timestamp))
        .collect();
    let body_len: usize = layouts
        .iter()
        .map(|layout| varlong_len(layout.len as i64) + layout.len)
        .sum();
    let mut out = BytesMut::with_capacity(BATCH_HEADER_LEN + body_len);
    out.put_i64(0);
    out.put_i32((BATCH_HEADER_LEN - BATCH_LENGTH_PREFIX + body_len) as i32);
    out.put_i32(-1); // partition leader epoch
    out.put_i8(MAGIC_V2);
    out.put_u32(0); // CRC, filled below
    out.put_i16(0); // attributes: no compression, create time
    out.put_i32(records.len().saturating_sub(1) as i32);
    out.put_i64(base_timestamp);
    out.put_i64(max_timestamp);
    out.put_i64(-1); // producer id
    out.put_i16(-1); // producer epoch
    out.put_i32(-1); // base sequence
    out.put_i32(records.len() as i32);
    for (record, layout) in records.iter().zip(&layouts) {
        encode_record(&mut out, record, layout);
    }
    debug_assert_eq!(out.len(), BATCH_HEADER_LEN + body_len);
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    out.freeze()
}

/// What encoding one record of a batch needs: its deltas and its encoded length (without
/// the length prefix).
struct RecordLayout {
    offset_delta: i64,
    timestamp_delta: i64,
    len: usize,
}

impl RecordLayout {
    fn of(record: &Record, index: usize, base_timestamp: i64) -> Self {
        let offset_delta = index as i64;
        // Wrapping: a client may send timestamps further apart than an i64 spans (a RocketMQ
        // batch of born timestamps); decoding adds the delta back wrapping, so the value
        // round-trips instead of panicking here.
        let timestamp_delta = record.timestamp.wrapping_sub(base_timestamp);
        let headers: usize = record
            .headers
            .iter()
            .map(|(key, value)| {
                varlong_len(key.len() as i64) + key.len() + nullable_len(value.as_deref())
            })
            .sum();
        let len = 1
            + varlong_len(timestamp_delta)
            + varlong_len(offset_delta)
            + nullable_len(record.key.as_deref())
            + nullable_len(record.value.as_deref())
            + varlong_len(record.headers.len() as i64)
            + headers;
        Self {
            offset_delta,
            timestamp_delta,
            len,
        }
    }
}

fn encode_record(out: &mut BytesMut, record: &Record, layout: &RecordLayout) {
    put_varlong(out, layout.len as i64);
    out.put_i8(0); // record attributes (unused)
    put_varlong(out, layout.timestamp_delta);
    put_varlong(out, layout.offset_delta);
    put_nullable(out, record.key.as_deref());
    put_nullable(out, record.value.as_deref());
    put_varlong(out, record.headers.len() as i64);
    for (key, value) in &record.headers {
        put_varlong(out, key.len() as i64);
        out.extend_from_slice(key);
        put_nullable(out, value.as_deref());
    }
}

/// Builds one RecordBatch v2 as [`build_batch`] does, with the records section compressed by
/// `codec` the way a Kafka producer compresses it (tests, benchmarks, fuzz seeds).
pub fn build_compressed_batch(records: &[Record], codec: Codec) -> std::io::Result<Bytes> {
    let bits = Compression::attribute_bits(codec)
        .ok_or_else(|| std::io::Error::other(format!("{codec} is not a record batch codec")))?;
    let plain = build_batch(records);
    let compressed = compression::compress(codec, &plain[BATCH_HEADER_LEN..])?;
    let batch_len = i32::try_from(BATCH_HEADER_LEN - BATCH_LENGTH_PREFIX + compressed.len())
        .map_err(std::io::Error::other)?;
    let mut out = BytesMut::with_capacity(BATCH_HEADER_LEN + compressed.len());
    out.extend_from_slice(&plain[..BATCH_HEADER_LEN]);
    out.extend_from_slice(&compressed);
    out[8..12].copy_from_slice(&batch_len.to_be_bytes());
    out[21..23].copy_from_slice(&bits.to_be_bytes());
    let crc = crc32c::crc32c(&out[CRC_START..]);
    out[17..21].copy_from_slice(&crc.to_be_bytes());
    Ok(out.freeze())
}

/// Decodes the records of one verified batch. An uncompressed batch's slices share the input
/// buffer; a compressed batch is inflated (at most [`MAX_INFLATED_BATCH_BYTES`]) into one new
/// buffer its records share.
pub fn decode_records(batch: &Bytes) -> Result<Vec<StoredRecord>, BatchError> {
    decode_records_from(batch, i64::MIN, usize::MAX)
}

/// [`decode_records`] for at most `max` records at or after offset `from`: the records before
/// it are stepped over by their length and decoding stops after `max` (readers that resume
/// inside a batch, or take a few records of a large one, do not build records they already
/// delivered or will not deliver now). A compressed batch is still inflated whole. A record
/// past the `max`th is not looked at, so a fault there shows only when it is read.
pub fn decode_records_from(
    batch: &Bytes,
    from: i64,
    max: usize,
) -> Result<Vec<StoredRecord>, BatchError> {
    let header = BatchHeader::parse(batch)?;
    if header.compression() == Compression::None {
        let end = header.total_len.min(batch.len());
        return decode_section(&header, batch, BATCH_HEADER_LEN..end, from, max);
    }
    let inflated = inflate_records(&header, batch)?;
    decode_inflated(&header, &inflated, from, max)
}

/// The inflated records section of compressed `batch` (whose header is `header`).
pub(crate) fn inflate_records(header: &BatchHeader, batch: &Bytes) -> Result<Bytes, BatchError> {
    let codec = match header.compression() {
        Compression::Unknown(id) => return Err(BatchError::UnknownCodec(id)),
        known => known.codec().ok_or(BatchError::UnknownCodec(0))?,
    };
    let end = header.total_len.min(batch.len());
    let section = batch.get(BATCH_HEADER_LEN..end).unwrap_or_default();
    Ok(Bytes::from(compression::decompress(
        codec,
        section,
        MAX_INFLATED_BATCH_BYTES,
    )?))
}

/// At most `max` records at or after `from` of a batch whose records section, inflated, is
/// `inflated`.
pub(crate) fn decode_inflated(
    header: &BatchHeader,
    inflated: &Bytes,
    from: i64,
    max: usize,
) -> Result<Vec<StoredRecord>, BatchError> {
    decode_section(header, inflated, 0..inflated.len(), from, max)
}

/// Decodes `header.record_count` records from `buf[section]`, keeping those at or after `from`.
fn decode_section(
    header: &BatchHeader,
    buf: &Bytes,
    section: std::ops::Range<usize>,
    from: i64,
    max: usize,
) -> Result<Vec<StoredRecord>, BatchError> {
    let (start, end) = (section.start, section.end);
    let mut cursor = Cursor {
        buf,
        pos: start,
        end,
    };
    let count = usize::try_from(header.record_count).map_err(|_| BatchError::BadRecord("count"))?;
    // Each record takes at least 7 bytes; refuse counts the buffer cannot hold before allocating.
    if count > (end - start) / 7 + 1 {
        return Err(BatchError::BadRecord("record count exceeds batch size"));
    }
    let wanted = header
        .last_offset()
        .saturating_sub(from.max(header.base_offset))
        .saturating_add(1)
        .clamp(0, count as i64) as usize;
    let mut records = Vec::with_capacity(wanted.min(max));
    for _ in 0..count {
        if records.len() >= max {
            break;
        }
        let len = cursor.varint_len()?;
        let record_end = cursor
            .pos
            .checked_add(len)
            .filter(|e| *e <= end)
            .ok_or(BatchError::BadRecord("record length"))?;
        let _attributes = cursor.take(1)?;
        let timestamp_delta = cursor.varlong()?;
        let offset_delta = cursor.varlong()?;
        if !(0..=i64::from(header.last_offset_delta)).contains(&offset_delta) {
            return Err(BatchError::BadRecord("offset delta outside the batch"));
        }
        if header.base_offset.wrapping_add(offset_delta) < from {
            cursor.pos = record_end;
            continue;
        }
        let key = cursor.nullable()?;
        let value = cursor.nullable()?;
        let header_count = cursor.varint_len()?;
        let mut headers = Vec::with_capacity(header_count.min(len));
        for _ in 0..header_count {
            let key_len = cursor.varint_len()?;
            let key = cursor.take(key_len)?;
            let value = cursor.nullable()?;
            headers.push((key, value));
        }
        if cursor.pos != record_end {
            return Err(BatchError::BadRecord(
                "record length disagrees with its fields",
            ));
        }
        records.push(StoredRecord {
            offset: header.base_offset.wrapping_add(offset_delta),
            record: Record {
                key,
                value,
                // LogAppendTime batches: every record takes the broker's append time, as in Kafka.
                timestamp: if header.is_log_append_time() {
                    header.max_timestamp
                } else {
                    header.base_timestamp.wrapping_add(timestamp_delta)
                },
                headers,
            },
        });
    }
    Ok(records)
}

struct Cursor<'a> {
    buf: &'a Bytes,
    pos: usize,
    end: usize,
}

impl Cursor<'_> {
    fn take(&mut self, len: usize) -> Result<Bytes, BatchError> {
        let stop = self
            .pos
            .checked_add(len)
            .filter(|s| *s <= self.end)
            .ok_or(BatchError::BadRecord("field runs past the batch"))?;
        let slice = self.buf.slice(self.pos..stop);
        self.pos = stop;
        Ok(slice)
    }

    fn varlong(&mut self) -> Result<i64, BatchError> {
        let mut raw: u64 = 0;
        for shift in (0..70).step_by(7) {
            let byte = *self
                .buf
                .get(self.pos)
                .filter(|_| self.pos < self.end)
                .ok_or(BatchError::BadRecord("varint runs past the batch"))?;
            self.pos += 1;
            raw |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok((raw >> 1) as i64 ^ -((raw & 1) as i64));
            }
        }
        Err(BatchError::BadRecord("varint longer than 10 bytes"))
    }

    /// A zigzag varint that must be a non-negative length.
    fn varint_len(&mut self) -> Result<usize, BatchError> {
        let value = self.varlong()?;
        usize::try_from(value).map_err(|_| BatchError::BadRecord("negative length"))
    }

    /// A length-prefixed byte string where -1 means null.
    fn nullable(&mut self) -> Result<Option<Bytes>, BatchError> {
        match self.varlong()? {
            -1 => Ok(None),
            len if len >= 0 => self.take(len as usize).map(Some),
            _ => Err(BatchError::BadRecord("negative length")),
        }
    }
}

fn put_varlong(out: &mut BytesMut, value: i64) {
    let mut zigzag = ((value << 1) ^ (value >> 63)) as u64;
    while zigzag >= 0x80 {
        out.put_u8((zigzag as u8) | 0x80);
        zigzag >>= 7;
    }
    out.put_u8(zigzag as u8);
}

/// How many bytes `put_varlong` writes for `value`.
fn varlong_len(value: i64) -> usize {
    let zigzag = ((value << 1) ^ (value >> 63)) as u64;
    (64 - (zigzag | 1).leading_zeros() as usize).div_ceil(7)
}

fn nullable_len(value: Option<&[u8]>) -> usize {
    match value {
        None => varlong_len(-1),
        Some(bytes) => varlong_len(bytes.len() as i64) + bytes.len(),
    }
}

fn put_nullable(out: &mut BytesMut, value: Option<&[u8]>) {
    match value {
        None => put_varlong(out, -1),
        Some(bytes) => {
            put_varlong(out, bytes.len() as i64);
            out.extend_from_slice(bytes);
        }
    }
}

fn be_i32(buf: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]])
}

fn be_i64(buf: &[u8], at: usize) -> i64 {
    let mut bytes = [0u8; 8];
    bytes.copy_from_slice(&buf[at..at + 8]);
    i64::from_be_bytes(bytes)
}

#[path = "batch_checks.rs"]
mod checks;
pub use checks::check_produced;

#[path = "batch_rewrite.rs"]
mod rewrite;
pub use rewrite::{empty_batch, rebuild_batch, recompress_batch};

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(key: &str, value: &str, timestamp: i64) -> Record {
        Record {
            key: Some(Bytes::copy_from_slice(key.as_bytes())),
            value: Some(Bytes::copy_from_slice(value.as_bytes())),
            timestamp,
            headers: vec![(Bytes::from_static(b"h"), Some(Bytes::from_static(b"v")))],
        }
    }

    #[test]
    fn built_batch_verifies_and_decodes_back() {
        let records = vec![record("a", "1", 1000), record("b", "22", 1005)];
        let mut batch = BytesMut::from(&build_batch(&records)[..]);
        set_base_offset(&mut batch, 42);
        let batch = batch.freeze();
        let header = verify_batch(&batch).expect("valid batch");
        assert_eq!(header.base_offset, 42);
        assert_eq!(header.last_offset(), 43);
        assert_eq!(header.max_timestamp, 1005);
        let decoded = decode_records(&batch).expect("decodes");
        assert_eq!(decoded.len(), 2);
        assert_eq!(decoded[1].offset, 43);
        assert_eq!(decoded[1].record, records[1]);
    }

    #[test]
    fn flipped_byte_fails_the_crc() {
        let mut batch = BytesMut::from(&build_batch(&[record("k", "v", 5)])[..]);
        let last = batch.len() - 1;
        batch[last] ^= 0xff;
        assert!(matches!(
            verify_batch(&batch),
            Err(BatchError::CrcMismatch { .. })
        ));
    }

    #[test]
    fn short_and_wrong_magic_are_refused() {
        let batch = build_batch(&[record("k", "v", 5)]);
        assert!(matches!(
            verify_batch(&batch[..30]),
            Err(BatchError::Truncated { .. })
        ));
        let mut wrong = BytesMut::from(&batch[..]);
        wrong[16] = 1;
        assert_eq!(verify_batch(&wrong), Err(BatchError::BadMagic(1)));
    }

    proptest! {
        #[test]
        fn decode_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let buf = Bytes::from(bytes);
            let _ = verify_batch(&buf);
            let _ = decode_records(&buf);
        }

        #[test]
        fn roundtrip(values in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..50), 1..20)) {
            let records: Vec<Record> = values.iter().enumerate().map(|(i, v)| Record {
                key: None,
                value: Some(Bytes::copy_from_slice(v)),
                timestamp: 1_700_000_000_000 + i as i64,
                headers: Vec::new(),
            }).collect();
            let batch = build_batch(&records);
            prop_assert!(verify_batch(&batch).is_ok());
            let decoded: Vec<Record> = decode_records(&batch).unwrap().into_iter().map(|r| r.record).collect();
            prop_assert_eq!(decoded, records);
        }

        #[test]
        fn varlong_len_is_what_put_varlong_writes(value in any::<i64>()) {
            let mut out = BytesMut::new();
            put_varlong(&mut out, value);
            prop_assert_eq!(varlong_len(value), out.len());
        }

        #[test]
        fn roundtrip_with_keys_headers_and_scattered_timestamps(
            entries in proptest::collection::vec(
                (
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..300)),
                    any::<i32>(),
                    proptest::collection::vec(
                        (proptest::collection::vec(any::<u8>(), 0..70), proptest::option::of(proptest::collection::vec(any::<u8>(), 0..70))),
                        0..4,
                    ),
                ),
                1..12,
            )
        ) {
            let records: Vec<Record> = entries.iter().map(|(key, value, timestamp, headers)| Record {
                key: key.as_deref().map(Bytes::copy_from_slice),
                value: value.as_deref().map(Bytes::copy_from_slice),
                timestamp: i64::from(*timestamp),
                headers: headers
                    .iter()
                    .map(|(k, v)| (Bytes::copy_from_slice(k), v.as_deref().map(Bytes::copy_from_slice)))
                    .collect(),
            }).collect();
            let batch = build_batch(&records);
            prop_assert!(verify_batch(&batch).is_ok());
            let decoded: Vec<Record> = decode_records(&batch).unwrap().into_iter().map(|r| r.record).collect();
            prop_assert_eq!(decoded, records);
        }
    }
}
