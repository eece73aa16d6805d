//! The binary value layouts of the metadata tables.
//!
//! Every value starts with a format version byte ([`FORMAT_V1`]); a reader refuses versions it
//! does not know rather than guessing. Integers are big-endian, strings are a `u32` byte length
//! followed by UTF-8, an optional field is a presence byte (0 absent, 1 present) then the field.
//!
//! ```text
//! topic (key: name)            v1 | id [16] | partitions u32 | internal u8 | created_ms i64
//!                                 | retention_ms opt<i64> | retention_bytes opt<i64>
//!                                 | segment_bytes opt<u64> | segment_ms opt<u64>
//!                                 | max_message_bytes opt<u32> | durability opt<durability>
//!                                 [ | fixed_by opt<string> ]
//!                                 [ | cleanup_policy opt<u8: bit 0 delete, bit 1 compact>
//!                                   | delete_retention_ms opt<i64>
//!                                   | min_cleanable_dirty_ratio opt<u32 millionths>
//!                                   | min_compaction_lag_ms opt<i64>
//!                                   | timestamp_type opt<u8: 0 CreateTime, 1 LogAppendTime>
//!                                   | min_insync_replicas opt<u32> ]
//!                                 [ | compression_type opt<u8: 0 producer, 1 uncompressed,
//!                                     2 gzip, 3 snappy, 4 lz4, 5 zstd> ]
//!                                 (each bracketed tail is absent in records written before it)
//! queue (key: name)            v1 | durable u8 | durability opt<durability> | created_ms i64
//!                                 [ | max_priority opt<u8> | count_bytes u8 ]
//!                                 (the bracketed tail is absent in records written before it)
//! offset (key: group, topic, partition)
//!                              v1 | offset i64 | commit_time i64 | metadata string
//! schedule (key: due_ms, id)   v1 | target | batch bytes to the end
//! durability                   0 = always | 1 = interval, then ms u64 | 2 = never
//! target                       0 = partition, then topic string, partition u32
//!                              | 1 = queue, then name string
//! ```

use std::time::Duration;

use bytes::Bytes;
use tributary_api::{
    CleanupPolicy, CommittedOffset, CompressionType, Durability, EngineError, EngineResult, Ratio,
    ScheduleTarget, TimestampType, TopicPartition, TopicSettings,
};

use super::{QueueRecord, TopicRecord};

/// The only value layout so far.
pub(crate) const FORMAT_V1: u8 = 1;

const DURABILITY_ALWAYS: u8 = 0;
const DURABILITY_INTERVAL: u8 = 1;
const DURABILITY_NEVER: u8 = 2;

const TARGET_PARTITION: u8 = 0;
const TARGET_QUEUE: u8 = 1;

pub(crate) fn encode_topic(topic: &TopicRecord) -> Vec<u8> {
    let mut out = Writer::new();
    out.bytes(&topic.id);
    out.u32(topic.partitions);
    out.bool(topic.internal);
    out.i64(topic.created_ms);
    let settings = &topic.settings;
    out.option(settings.retention_ms, Writer::i64);
    out.option(settings.retention_bytes, Writer::i64);
    out.option(settings.segment_bytes, Writer::u64);
    out.option(settings.segment_ms, Writer::u64);
    out.option(settings.max_message_bytes, Writer::u32);
    out.option(settings.durability, Writer::durability);
    out.option(topic.fixed_by.as_deref(), |out, holder| out.string(holder));
    out.option(settings.cleanup_policy, |out, policy| {
        out.u8(u8::from(policy.delete) | u8::from(policy.compact) << 1);
    });
    out.option(settings.delete_retention_ms, Writer::i64);
    out.option(settings.min_cleanable_dirty_ratio, |out, ratio| {
        out.u32(ratio.millionths());
    });
    out.option(settings.min_compaction_lag_ms, Writer::i64);
    out.option(settings.timestamp_type, |out, kind| {
        out.u8(match kind {
            TimestampType::CreateTime => 0,
            TimestampType::LogAppendTime => 1,
        });
    });
    out.option(settings.min_insync_replicas, Writer::u32);
    out.option(settings.compression_type, |out, kind| {
        out.u8(match kind {
            CompressionType::Producer => 0,
            CompressionType::Uncompressed => 1,
            CompressionType::Gzip => 2,
            CompressionType::Snappy => 3,
            CompressionType::Lz4 => 4,
            CompressionType::Zstd => 5,
        });
    });
    out.finish()
}

pub(crate) fn decode_topic(name: &str, value: &[u8]) -> EngineResult<TopicRecord> {
    let mut input = Reader::new(value, "decode topic record")?;
    let mut id = [0u8; 16];
    id.copy_from_slice(input.take(16)?);
    let partitions = input.u32()?;
    let internal = input.bool()?;
    let created_ms = input.i64()?;
    let mut settings = TopicSettings {
        retention_ms: input.option(Reader::i64)?,
        retention_bytes: input.option(Reader::i64)?,
        segment_bytes: input.option(Reader::u64)?,
        segment_ms: input.option(Reader::u64)?,
        max_message_bytes: input.option(Reader::u32)?,
        durability: input.option(Reader::durability)?,
        ..TopicSettings::default()
    };
    let fixed_by = if input.input.is_empty() {
        None
    } else {
        input.option(Reader::string)?
    };
    if !input.input.is_empty() {
        settings.cleanup_policy = input.option(|input| {
            let bits = input.u8()?;
            if bits == 0 || bits > 3 {
                return Err(input.error(format!("bad cleanup policy bits {bits}")));
            }
            Ok(CleanupPolicy {
                delete: bits & 1 != 0,
                compact: bits & 2 != 0,
            })
        })?;
        settings.delete_retention_ms = input.option(Reader::i64)?;
        settings.min_cleanable_dirty_ratio = input.option(|input| {
            let millionths = input.u32()?;
            Ratio::from_millionths(millionths)
                .ok_or_else(|| input.error(format!("bad dirty ratio {millionths}")))
        })?;
        settings.min_compaction_lag_ms = input.option(Reader::i64)?;
        settings.timestamp_type = input.option(|input| match input.u8()? {
            0 => Ok(TimestampType::CreateTime),
            1 => Ok(TimestampType::LogAppendTime),
            other => Err(input.error(format!("bad timestamp type {other}"))),
        })?;
        settings.min_insync_replicas = input.option(Reader::u32)?;
        if !input.input.is_empty() {
            settings.compression_type = input.option(|input| match input.u8()? {
                0 => Ok(CompressionType::Producer),
                1 => Ok(CompressionType::Uncompressed),
                2 => Ok(CompressionType::Gzip),
                3 => Ok(CompressionType::Snappy),
                4 => Ok(CompressionType::Lz4),
                5 => Ok(CompressionType::Zstd),
                other => Err(input.error(format!("bad compression type {other}"))),
            })?;
        }
    }
    input.end()?;
    Ok(TopicRecord {
        name: name.to_owned(),
        id,
        partitions,
        settings,
        internal,
        created_ms,
        fixed_by,
    })
}

pub(crate) fn encode_queue(queue: &QueueRecord) -> Vec<u8> {
    let mut out = Writer::new();
    out.bool(queue.durable);
    out.option(queue.durability, Writer::durability);
    out.i64(queue.created_ms);
    out.option(queue.max_priority, Writer::u8);
    out.bool(queue.count_bytes);
    out.finish()
}

pub(crate) fn decode_queue(name: &str, value: &[u8]) -> EngineResult<QueueRecord> {
    let mut input = Reader::new(value, "decode queue record")?;
    let durable = input.bool()?;
    let durability = input.option(Reader::durability)?;
    let created_ms = input.i64()?;
    let (max_priority, count_bytes) = if input.input.is_empty() {
        (None, false)
    } else {
        (input.option(Reader::u8)?, input.bool()?)
    };
    input.end()?;
    Ok(QueueRecord {
        name: name.to_owned(),
        durable,
        durability,
        created_ms,
        max_priority,
        count_bytes,
    })
}

pub(crate) fn encode_offset(offset: &CommittedOffset) -> Vec<u8> {
    let mut out = Writer::new();
    out.i64(offset.offset);
    out.i64(offset.commit_time);
    out.string(&offset.metadata);
    out.finish()
}

pub(crate) fn decode_offset(value: &[u8]) -> EngineResult<CommittedOffset> {
    let mut input = Reader::new(value, "decode committed offset")?;
    let offset = input.i64()?;
    let commit_time = input.i64()?;
    let metadata = input.string()?;
    input.end()?;
    Ok(CommittedOffset {
        offset,
        metadata,
        commit_time,
    })
}

pub(crate) fn encode_scheduled(target: &ScheduleTarget, batch: &[u8]) -> Vec<u8> {
    let mut out = Writer::new();
    match target {
        ScheduleTarget::Partition(partition) => {
            out.u8(TARGET_PARTITION);
            out.string(&partition.topic);
            out.u32(partition.partition);
        }
        ScheduleTarget::Queue(name) => {
            out.u8(TARGET_QUEUE);
            out.string(name);
        }
    }
    out.bytes(batch);
    out.finish()
}

pub(crate) fn decode_scheduled(value: &[u8]) -> EngineResult<(ScheduleTarget, Bytes)> {
    let mut input = Reader::new(value, "decode scheduled append")?;
    let target = match input.u8()? {
        TARGET_PARTITION => {
            let topic = input.string()?;
            let partition = input.u32()?;
            ScheduleTarget::Partition(TopicPartition::new(topic, partition))
        }
        TARGET_QUEUE => ScheduleTarget::Queue(input.string()?),
        other => return Err(input.error(format!("unknown schedule target tag {other}"))),
    };
    let batch = Bytes::copy_from_slice(input.rest());
    Ok((target, batch))
}

/// Appends fields to a value that starts with the version byte.
struct Writer(Vec<u8>);

impl Writer {
    fn new() -> Self {
        Self(vec![FORMAT_V1])
    }

    fn finish(self) -> Vec<u8> {
        self.0
    }

    fn u8(&mut self, value: u8) {
        self.0.push(value);
    }

    fn bool(&mut self, value: bool) {
        self.0.push(u8::from(value));
    }

    fn u32(&mut self, value: u32) {
        self.0.extend_from_slice(&value.to_be_bytes());
    }

    fn u64(&mut self, value: u64) {
        self.0.extend_from_slice(&value.to_be_bytes());
    }

    fn i64(&mut self, value: i64) {
        self.0.extend_from_slice(&value.to_be_bytes());
    }

    fn bytes(&mut self, value: &[u8]) {
        self.0.extend_from_slice(value);
    }

    fn string(&mut self, value: &str) {
        // Names and metadata strings are far below 4 GiB; saturate rather than wrap if not.
        let len = u32::try_from(value.len()).unwrap_or(u32::MAX);
        self.u32(len);
        self.0.extend_from_slice(&value.as_bytes()[..len as usize]);
    }

    fn durability(&mut self, value: Durability) {
        match value {
            Durability::Always => self.u8(DURABILITY_ALWAYS),
            Durability::Interval(every) => {
                self.u8(DURABILITY_INTERVAL);
                self.u64(u64::try_from(every.as_millis()).unwrap_or(u64::MAX));
            }
            Durability::Never => self.u8(DURABILITY_NEVER),
        }
    }

    fn option<T>(&mut self, value: Option<T>, put: fn(&mut Self, T)) {
        match value {
            Some(value) => {
                self.u8(1);
                put(self, value);
            }
            None => self.u8(0),
        }
    }
}

/// Reads fields back with bounds checks; every failure names what was being decoded.
struct Reader<'a> {
    input: &'a [u8],
    context: &'static str,
}

impl<'a> Reader<'a> {
    fn new(value: &'a [u8], context: &'static str) -> EngineResult<Self> {
        let mut reader = Self {
            input: value,
            context,
        };
        match reader.u8()? {
            FORMAT_V1 => Ok(reader),
            other => Err(reader.error(format!("unknown format version {other}"))),
        }
    }

    fn error(&self, message: String) -> EngineError {
        EngineError::Metadata {
            context: self.context,
            message,
        }
    }

    fn take(&mut self, len: usize) -> EngineResult<&'a [u8]> {
        if self.input.len() < len {
            return Err(self.error(format!(
                "value ends early: need {len} more bytes, have {}",
                self.input.len()
            )));
        }
        let (head, tail) = self.input.split_at(len);
        self.input = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> EngineResult<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> EngineResult<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn bool(&mut self) -> EngineResult<bool> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            other => Err(self.error(format!("bad boolean byte {other}"))),
        }
    }

    fn u32(&mut self) -> EngineResult<u32> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> EngineResult<u64> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> EngineResult<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    fn string(&mut self) -> EngineResult<String> {
        let len = self.u32()? as usize;
        let raw = self.take(len)?;
        String::from_utf8(raw.to_vec()).map_err(|_| self.error("string is not UTF-8".to_owned()))
    }

    fn durability(&mut self) -> EngineResult<Durability> {
        match self.u8()? {
            DURABILITY_ALWAYS => Ok(Durability::Always),
            DURABILITY_INTERVAL => Ok(Durability::Interval(Duration::from_millis(self.u64()?))),
            DURABILITY_NEVER => Ok(Durability::Never),
            other => Err(self.error(format!("unknown durability tag {other}"))),
        }
    }

    fn option<T>(&mut self, get: fn(&mut Self) -> EngineResult<T>) -> EngineResult<Option<T>> {
        match self.u8()? {
            0 => Ok(None),
            1 => get(self).map(Some),
            other => Err(self.error(format!("bad presence byte {other}"))),
        }
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.input)
    }

    fn end(&self) -> EngineResult<()> {
        if self.input.is_empty() {
            Ok(())
        } else {
            Err(self.error(format!("{} trailing bytes", self.input.len())))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_round_trips_with_every_setting() {
        let topic = TopicRecord {
            name: "orders".to_owned(),
            id: [7; 16],
            partitions: 12,
            settings: TopicSettings {
                retention_ms: Some(-1),
                retention_bytes: Some(1 << 40),
                segment_bytes: Some(1 << 20),
                segment_ms: None,
                max_message_bytes: Some(4096),
                durability: Some(Durability::Interval(Duration::from_millis(250))),
                cleanup_policy: Some(CleanupPolicy {
                    delete: true,
                    compact: true,
                }),
                delete_retention_ms: Some(1000),
                min_cleanable_dirty_ratio: Ratio::from_millionths(250_000),
                min_compaction_lag_ms: Some(5),
                timestamp_type: Some(TimestampType::LogAppendTime),
                min_insync_replicas: Some(1),
                compression_type: Some(CompressionType::Zstd),
            },
            internal: true,
            created_ms: 1_700_000_000_000,
            fixed_by: Some("the AMQP stream 'orders' in vhost '/'".to_owned()),
        };
        let encoded = encode_topic(&topic);
        assert_eq!(decode_topic("orders", &encoded).unwrap(), topic);
        // A record written before `fixed_by` existed ends after the durability field, and one
        // written before the compaction settings after `fixed_by`.
        let unfixed = TopicRecord {
            fixed_by: None,
            settings: TopicSettings {
                durability: topic.settings.durability,
                ..TopicSettings::default()
            },
            ..topic.clone()
        };
        let mut old = encode_topic(&unfixed);
        for _ in 0..7 {
            assert_eq!(old.pop(), Some(0));
        }
        assert_eq!(decode_topic("orders", &old).unwrap(), unfixed);
        assert_eq!(old.pop(), Some(0));
        assert_eq!(decode_topic("orders", &old).unwrap(), unfixed);
    }

    #[test]
    fn truncated_and_unknown_versions_are_errors_not_panics() {
        let queue = QueueRecord {
            name: "q".to_owned(),
            durable: true,
            durability: Some(Durability::Never),
            created_ms: 5,
            max_priority: Some(10),
            count_bytes: true,
        };
        let encoded = encode_queue(&queue);
        assert_eq!(decode_queue("q", &encoded).unwrap(), queue);
        // A record from before the feature tail: version, durable, durability, created_ms.
        let old_len = 1 + 1 + 2 + 8;
        let old = decode_queue("q", &encoded[..old_len]).unwrap();
        assert_eq!((old.max_priority, old.count_bytes), (None, false));
        for len in (0..encoded.len()).filter(|len| *len != old_len) {
            assert!(decode_queue("q", &encoded[..len]).is_err(), "prefix {len}");
        }
        let mut future = encoded.clone();
        future[0] = 9;
        let err = decode_queue("q", &future).unwrap_err();
        assert!(
            err.to_string().contains("unknown format version 9"),
            "{err}"
        );
    }

    #[test]
    fn scheduled_targets_round_trip() {
        let batch = [1u8, 2, 3];
        for target in [
            ScheduleTarget::Queue("retry".to_owned()),
            ScheduleTarget::Partition(TopicPartition::new("t", 3)),
        ] {
            let encoded = encode_scheduled(&target, &batch);
            let (back, bytes) = decode_scheduled(&encoded).unwrap();
            assert_eq!(back, target);
            assert_eq!(&bytes[..], &batch);
        }
    }
}
