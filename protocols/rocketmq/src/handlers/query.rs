//! Message lookups: VIEW_MESSAGE_BY_ID (by the physical offset inside an offset message id),
//! QUERY_MESSAGE (by key or unique key within a store-time range) and
//! GET_EARLIEST_MSG_STORETIME.
//!
//! There is no key index: QUERY_MESSAGE scans each queue of the topic from the first record whose
//! timestamp (for RocketMQ producers the born time, docs/interop.md) is at or after
//! `beginTimestamp`, keeps messages whose store time is within `beginTimestamp..=endTimestamp`
//! and stops at the first stored later, at most [`QUERY_SCAN_LIMIT`] messages per queue, and
//! returns up to `maxNum` matches (a message matches when one of its space-separated `KEYS` is
//! the key, or with `_UNIQUE_KEY_QUERY=true` when its `UNIQ_KEY` is; a record of another
//! protocol has its key as `KEYS`). Misses answer QUERY_NOT_FOUND, as RocketMQ does.

use bytes::{Bytes, BytesMut};
use tributary_api::batch::{BatchHeader, decode_records};
use tributary_api::{EngineError, OffsetQuery, TopicPartition};

use super::send_back::{PROPERTY_UNIQ_KEY, find};
use super::{encode_message, optional, parsed, queue_id, read_record, required, topic_id};
use crate::Shared;
use crate::codec::RemotingCommand;
use crate::connection::Connection;
use crate::error::{RequestResult, code, undeliverable};
use crate::records::{MessageMeta, OutgoingMessage};

/// Messages examined per queue by one QUERY_MESSAGE.
pub(crate) const QUERY_SCAN_LIMIT: usize = 100_000;
/// Bytes read per step of a scan.
const SCAN_READ_BYTES: usize = 1 << 20;
/// Matches returned when the request names no `maxNum`.
const DEFAULT_MAX_NUM: usize = 32;

pub(super) async fn view_by_id(
    shared: &Shared,
    connection: &Connection,
    request: &RemotingCommand,
) -> RequestResult<RemotingCommand> {
    let physical: i64 = parsed(request, "offset")?;
    let Some((topic, stored)) = find(shared, physical).await? else {
        return Ok(RemotingCommand::response_to(request, code::SYSTEM_ERROR)
            .with_remark(format!("can not find message by the offset, {physical}")));
    };
    let (topic_id, queue, _) = crate::topic_ids::split_physical_offset(physical);
    let mut body = BytesMut::new();
    encode_message(
        &TopicPartition::new(topic.as_str(), queue),
        topic_id,
        stored.offset,
        &OutgoingMessage::from_record(&stored.record),
        connection.local,
        &mut body,
    )?;
    Ok(RemotingCommand::response_to(request, code::SUCCESS).with_body(body.freeze()))
}

pub(super) async fn earliest_store_time(
    shared: &Shared,
    request: &RemotingCommand,
) -> RequestResult<RemotingCommand> {
    let partition = TopicPartition::new(required(request, "topic")?, queue_id(request, "queueId")?);
    let start = shared.engine.log.offsets(&partition)?.log_start;
    let timestamp = read_record(shared, &partition, start)
        .await?
        .map_or(-1, |stored| MessageMeta::of(&stored.record).store_timestamp);
    Ok(RemotingCommand::response_to(request, code::SUCCESS).with_field("timestamp", timestamp))
}

pub(super) async fn query_by_key(
    shared: &Shared,
    connection: &Connection,
    request: &RemotingCommand,
) -> RequestResult<RemotingCommand> {
    let topic = required(request, "topic")?;
    let key = required(request, "key")?;
    let max_num = optional::<i64>(request, "maxNum")?
        .filter(|n| *n > 0)
        .map_or(DEFAULT_MAX_NUM, |n| n.min(i64::from(u16::MAX)) as usize);
    let begin: i64 = optional(request, "beginTimestamp")?.unwrap_or(0);
    let end: i64 = optional(request, "endTimestamp")?.unwrap_or(i64::MAX);
    let unique = request.field("_UNIQUE_KEY_QUERY") == Some("true");
    let description = match shared.engine.topics.describe_topic(topic) {
        Ok(description) => description,
        Err(EngineError::UnknownTopic(_)) => return Ok(not_found(request)),
        Err(err) => return Err(err.into()),
    };
    let topic_id = topic_id(shared, topic).await?;
    let matches = |message: &OutgoingMessage| {
        message.properties.iter().any(|(name, value)| {
            if unique {
                name == PROPERTY_UNIQ_KEY && value == key
            } else {
                name == "KEYS" && value.split(' ').any(|k| k == key)
            }
        })
    };

    let mut body = BytesMut::new();
    let mut found = 0usize;
    for queue in 0..description.partitions {
        let partition = TopicPartition::new(topic, queue);
        let Some(start) = shared
            .engine
            .log
            .find_offset(&partition, OffsetQuery::AtOrAfter(begin))
            .await?
        else {
            continue;
        };
        let mut offset = start.offset;
        let mut scanned = 0usize;
        'queue: while found < max_num && scanned < QUERY_SCAN_LIMIT {
            // Records of open or aborted Kafka transactions are no messages (yet).
            let committed = shared.engine.committed(&partition, offset).await?;
            if offset >= committed.end {
                break;
            }
            let read = shared
                .engine
                .log
                .read(&partition, offset, SCAN_READ_BYTES)
                .await?
                .data;
            let mut rest: Bytes = committed.cut(&read);
            let before = offset;
            while !rest.is_empty() {
                let header = BatchHeader::parse(&rest).map_err(EngineError::from)?;
                let batch = rest.split_to(header.total_len.min(rest.len()));
                if committed.skips(&header) {
                    offset = offset.max(header.last_offset() + 1);
                    continue;
                }
                // A batch the scan cannot read fails the query rather than hiding a match.
                let records = decode_records(&batch)
                    .map_err(|err| undeliverable(&partition, header.base_offset, err))?;
                offset = offset.max(header.last_offset() + 1);
                for stored in records.into_iter().filter(|r| r.offset >= before) {
                    scanned += 1;
                    // The range is of store times, which grow along a queue.
                    let stored_at = MessageMeta::of(&stored.record).store_timestamp;
                    if stored_at > end {
                        break 'queue;
                    }
                    if stored_at < begin {
                        continue;
                    }
                    let message = OutgoingMessage::from_record(&stored.record);
                    if matches(&message) {
                        encode_message(
                            &partition,
                            topic_id,
                            stored.offset,
                            &message,
                            connection.local,
                            &mut body,
                        )?;
                        found += 1;
                        if found >= max_num {
                            break 'queue;
                        }
                    }
                }
            }
            if offset == before {
                break;
            }
        }
    }
    if found == 0 {
        return Ok(not_found(request));
    }
    Ok(RemotingCommand::response_to(request, code::SUCCESS)
        .with_field("indexLastUpdateTimestamp", shared.engine.scheduler.now_ms())
        .with_field("indexLastUpdatePhyoffset", 0)
        .with_body(body.freeze()))
}

fn not_found(request: &RemotingCommand) -> RemotingCommand {
    RemotingCommand::response_to(request, code::QUERY_NOT_FOUND)
        .with_remark("can not find message, maybe time range not correct")
}
