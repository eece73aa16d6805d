//! CONSUMER_SEND_MSG_BACK: a consumer gives a message back for a later retry.
//!
//! The original is found by its broker-wide physical offset (`offset`, see [`crate::topic_ids`]):
//! a retried message is handed to listeners under its original topic but is found in the retry
//! topic it lives in. Then, as RocketMQ's broker does:
//! - when the message was already consumed `maxReconsumeTimes` times (header, else the broker
//!   default of 16), or `delayLevel` is negative, it is appended to `%DLQ%<group>` at once;
//! - otherwise it is scheduled into `%RETRY%<group>` at delay level `delayLevel`, or
//!   `3 + reconsumeTimes` when the consumer passes 0 (10 s, 30 s, 1 min, ... by default).
//!
//! The copy keeps body, flag and properties, gains `RETRY_TOPIC` (the original topic, unless
//! already set) and `ORIGIN_MESSAGE_ID`, and counts one more reconsume time. Retry and DLQ
//! topics have one queue.

use tributary_api::batch::build_batch;
use tributary_api::{StoredRecord, TopicPartition};

use super::send::schedule;
use super::{ensure_topic, optional, parsed, read_record, required};
use crate::codec::RemotingCommand;
use crate::connection::Connection;
use crate::error::{RequestError, RequestResult, code};
use crate::records::{IncomingMessage, OutgoingMessage};
use crate::topic_ids::split_physical_offset;
use crate::{Shared, metrics};

pub const RETRY_PREFIX: &str = "%RETRY%";
pub const DLQ_PREFIX: &str = "%DLQ%";
const PROPERTY_RETRY_TOPIC: &str = "RETRY_TOPIC";
const PROPERTY_ORIGIN_MESSAGE_ID: &str = "ORIGIN_MESSAGE_ID";
pub(super) const PROPERTY_UNIQ_KEY: &str = "UNIQ_KEY";
/// The first retry waits this many levels in (level 3 is 10 s by default).
const FIRST_RETRY_LEVEL: i32 = 3;

pub(super) async fn send_back(
    shared: &Shared,
    connection: &Connection,
    request: &RemotingCommand,
) -> RequestResult<RemotingCommand> {
    let group = required(request, "group")?;
    let physical: i64 = parsed(request, "offset")?;
    let delay_level: i32 = optional(request, "delayLevel")?.unwrap_or(0);
    let origin_id = request.field("originMsgId").filter(|id| !id.is_empty());
    let max_reconsume: i32 =
        optional(request, "maxReconsumeTimes")?.unwrap_or(shared.settings.max_reconsume_times);
    let retry_topic = format!("{RETRY_PREFIX}{group}");

    let (found_topic, stored) = find(shared, physical)
        .await?
        .ok_or(RequestError::MessageNotFound(physical))?;

    let original = OutgoingMessage::from_record(&stored.record);
    let mut properties = original.properties;
    if !properties.iter().any(|(n, _)| n == PROPERTY_RETRY_TOPIC) {
        properties.push((PROPERTY_RETRY_TOPIC.to_owned(), found_topic));
    }
    if !properties
        .iter()
        .any(|(n, _)| n == PROPERTY_ORIGIN_MESSAGE_ID)
    {
        let origin = origin_id.map(str::to_owned).or_else(|| {
            properties
                .iter()
                .find(|(n, _)| n == PROPERTY_UNIQ_KEY)
                .map(|(_, v)| v.clone())
        });
        if let Some(origin) = origin {
            properties.push((PROPERTY_ORIGIN_MESSAGE_ID.to_owned(), origin));
        }
    }
    let mut copy = IncomingMessage {
        body: original.body,
        flag: original.meta.flag,
        sys_flag: original.meta.sys_flag,
        born_timestamp: original.meta.born_timestamp,
        born_host: original.meta.born_host.unwrap_or(connection.local),
        reconsume_times: original.meta.reconsume_times + 1,
        properties,
    };

    let now = shared.engine.scheduler.now_ms();
    if original.meta.reconsume_times >= max_reconsume || delay_level < 0 {
        let dlq = format!("{DLQ_PREFIX}{group}");
        ensure_topic(shared, &dlq, Some(1)).await?;
        let target = TopicPartition::new(dlq.as_str(), 0);
        shared
            .engine
            .log
            .append(&target, build_batch(&[copy.to_record_at_store_time(now)]))
            .await?;
        ::metrics::counter!(metrics::MESSAGES_IN, "topic" => dlq).increment(1);
    } else {
        let level = if delay_level == 0 {
            FIRST_RETRY_LEVEL + original.meta.reconsume_times
        } else {
            delay_level
        };
        ensure_topic(shared, &retry_topic, Some(1)).await?;
        let delay = shared.settings.delay_levels.delay_ms(level).unwrap_or(0);
        let target = TopicPartition::new(retry_topic.as_str(), 0);
        schedule(shared, &mut copy, &target, now + delay).await?;
        ::metrics::counter!(metrics::MESSAGES_IN, "topic" => retry_topic).increment(1);
    }
    Ok(RemotingCommand::response_to(request, code::SUCCESS))
}

/// The topic and record a physical offset names, if it still exists.
pub(super) async fn find(
    shared: &Shared,
    physical: i64,
) -> RequestResult<Option<(String, StoredRecord)>> {
    let (topic_id, queue, offset) = split_physical_offset(physical);
    let Some(topic) = shared
        .topic_ids
        .name(shared.engine.metadata.as_ref(), topic_id)
        .await?
    else {
        return Ok(None);
    };
    let Ok(description) = shared.engine.topics.describe_topic(&topic) else {
        return Ok(None);
    };
    if queue >= description.partitions {
        return Ok(None);
    }
    let partition = TopicPartition::new(topic.as_str(), queue);
    Ok(read_record(shared, &partition, offset)
        .await?
        .map(|stored| (topic, stored)))
}
