//! One transactional id's coordinator state and its durable encoding (the value stored under
//! the id in the metadata store namespace [`super::NAMESPACE`]).
//!
//! Format (version 1, big-endian): `u8` version, `i64` producer id, `i16` epoch, `i32` timeout
//! (ms), `u8` status, `i64` start time (ms), `u8` last outcome (0 none, 1 aborted,
//! 2 committed), `u32` partition count then per partition a `u16`-length topic and a `u32`
//! index, `u32` pending offset count then per offset a `u16`-length group, a `u16`-length
//! topic, a `u32` partition, an `i64` offset and a `u32`-length metadata string. Every length
//! is checked against the bytes left before anything is allocated; a value that does not
//! decode is reported, never guessed at.
//!
//! Public so tests can stage a state a crash would leave (a `PrepareCommit` whose markers were
//! never written) in a stopped broker's metadata store.

use std::collections::BTreeSet;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tributary_api::TopicPartition;

const FORMAT_VERSION: u8 = 1;

/// Where a transaction stands. `Empty` covers Kafka's `Empty`, `CompleteCommit` and
/// `CompleteAbort`: markers are written before a completion is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Empty,
    Ongoing,
    PrepareCommit,
    PrepareAbort,
}

impl Status {
    fn code(self) -> u8 {
        match self {
            Self::Empty => 0,
            Self::Ongoing => 1,
            Self::PrepareCommit => 2,
            Self::PrepareAbort => 3,
        }
    }

    fn from_code(code: u8) -> Option<Self> {
        Some(match code {
            0 => Self::Empty,
            1 => Self::Ongoing,
            2 => Self::PrepareCommit,
            3 => Self::PrepareAbort,
            _ => return None,
        })
    }
}

/// A consumer offset committed inside a transaction: applied to the group on commit only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingOffset {
    pub group: String,
    pub partition: TopicPartition,
    pub offset: i64,
    pub metadata: String,
}

/// The coordinator's view of one transactional id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMeta {
    pub producer_id: i64,
    pub epoch: i16,
    pub timeout_ms: i32,
    pub status: Status,
    /// When the current transaction began (its first AddPartitions/AddOffsets), ms.
    pub started_ms: i64,
    /// The outcome of the last completed transaction (`Some(true)`: committed), so a retried
    /// EndTxn is answered as the first one was.
    pub last_committed: Option<bool>,
    pub partitions: BTreeSet<TopicPartition>,
    pub offsets: Vec<PendingOffset>,
}

impl TxnMeta {
    pub fn new(producer_id: i64, epoch: i16, timeout_ms: i32) -> Self {
        Self {
            producer_id,
            epoch,
            timeout_ms,
            status: Status::Empty,
            started_ms: 0,
            last_committed: None,
            partitions: BTreeSet::new(),
            offsets: Vec::new(),
        }
    }

    pub fn encode(&self) -> Bytes {
        let mut out = BytesMut::with_capacity(64);
        out.put_u8(FORMAT_VERSION);
        out.put_i64(self.producer_id);
        out.put_i16(self.epoch);
        out.put_i32(self.timeout_ms);
        out.put_u8(self.status.code());
        out.put_i64(self.started_ms);
        out.put_u8(match self.last_committed {
            None => 0,
            Some(false) => 1,
            Some(true) => 2,
        });
        out.put_u32(u32::try_from(self.partitions.len()).unwrap_or(u32::MAX));
        for partition in &self.partitions {
            put_short(&mut out, &partition.topic);
            out.put_u32(partition.partition);
        }
        out.put_u32(u32::try_from(self.offsets.len()).unwrap_or(u32::MAX));
        for pending in &self.offsets {
            put_short(&mut out, &pending.group);
            put_short(&mut out, &pending.partition.topic);
            out.put_u32(pending.partition.partition);
            out.put_i64(pending.offset);
            let metadata = pending.metadata.as_bytes();
            out.put_u32(u32::try_from(metadata.len()).unwrap_or(u32::MAX));
            out.put_slice(metadata);
        }
        out.freeze()
    }

    /// `None` if `bytes` is not a whole state of a known format version.
    pub fn decode(mut bytes: Bytes) -> Option<Self> {
        let buf = &mut bytes;
        if take_u8(buf)? != FORMAT_VERSION {
            return None;
        }
        let producer_id = (buf.remaining() >= 8).then(|| buf.get_i64())?;
        let epoch = (buf.remaining() >= 2).then(|| buf.get_i16())?;
        let timeout_ms = (buf.remaining() >= 4).then(|| buf.get_i32())?;
        let status = Status::from_code(take_u8(buf)?)?;
        let started_ms = (buf.remaining() >= 8).then(|| buf.get_i64())?;
        let last_committed = match take_u8(buf)? {
            0 => None,
            1 => Some(false),
            2 => Some(true),
            _ => return None,
        };
        let count = take_u32(buf)?;
        let mut partitions = BTreeSet::new();
        for _ in 0..count {
            let topic = take_short(buf)?;
            partitions.insert(TopicPartition::new(topic, take_u32(buf)?));
        }
        let count = take_u32(buf)?;
        // Each entry is at least 20 bytes: bound the allocation by what is there.
        let mut offsets = Vec::with_capacity((count as usize).min(buf.remaining() / 20));
        for _ in 0..count {
            let group = take_short(buf)?;
            let topic = take_short(buf)?;
            let partition = take_u32(buf)?;
            let offset = (buf.remaining() >= 8).then(|| buf.get_i64())?;
            let len = take_u32(buf)? as usize;
            if buf.remaining() < len {
                return None;
            }
            let metadata = String::from_utf8(buf.split_to(len).to_vec()).ok()?;
            offsets.push(PendingOffset {
                group,
                partition: TopicPartition::new(topic, partition),
                offset,
                metadata,
            });
        }
        if buf.has_remaining() {
            return None;
        }
        Some(Self {
            producer_id,
            epoch,
            timeout_ms,
            status,
            started_ms,
            last_committed,
            partitions,
            offsets,
        })
    }
}

fn put_short(out: &mut BytesMut, text: &str) {
    // Topic and group names are far below 64 KiB (Kafka: 249 bytes for topics); a longer one
    // is cut at a character boundary rather than written with a wrong length.
    let mut end = text.len().min(usize::from(u16::MAX));
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    out.put_u16(end as u16);
    out.put_slice(&text.as_bytes()[..end]);
}

fn take_u8(buf: &mut Bytes) -> Option<u8> {
    buf.has_remaining().then(|| buf.get_u8())
}

fn take_u32(buf: &mut Bytes) -> Option<u32> {
    (buf.remaining() >= 4).then(|| buf.get_u32())
}

fn take_short(buf: &mut Bytes) -> Option<String> {
    let len = usize::from((buf.remaining() >= 2).then(|| buf.get_u16())?);
    if buf.remaining() < len {
        return None;
    }
    String::from_utf8(buf.split_to(len).to_vec()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> TxnMeta {
        let mut meta = TxnMeta::new(7, 3, 60_000);
        meta.status = Status::PrepareCommit;
        meta.started_ms = 1_700_000_000_000;
        meta.last_committed = Some(false);
        meta.partitions.insert(TopicPartition::new("orders", 2));
        meta.partitions.insert(TopicPartition::new("audit", 0));
        meta.offsets.push(PendingOffset {
            group: "g".into(),
            partition: TopicPartition::new("in", 1),
            offset: 42,
            metadata: "m".into(),
        });
        meta
    }

    #[test]
    fn a_state_round_trips() {
        let meta = sample();
        assert_eq!(TxnMeta::decode(meta.encode()), Some(meta));
    }

    #[test]
    fn every_truncation_and_a_trailing_byte_are_refused() {
        let whole = sample().encode();
        for cut in 0..whole.len() {
            assert_eq!(TxnMeta::decode(whole.slice(..cut)), None, "cut at {cut}");
        }
        let mut longer = whole.to_vec();
        longer.push(0);
        assert_eq!(TxnMeta::decode(Bytes::from(longer)), None);
    }

    #[test]
    fn a_huge_declared_count_allocates_nothing_and_fails() {
        let mut meta = TxnMeta::new(1, 0, 1000);
        meta.status = Status::Empty;
        let mut bytes = meta.encode().to_vec();
        // The pending-offset count is the last field of an empty state.
        let at = bytes.len() - 4;
        bytes[at..].copy_from_slice(&u32::MAX.to_be_bytes());
        assert_eq!(TxnMeta::decode(Bytes::from(bytes)), None);
    }
}
