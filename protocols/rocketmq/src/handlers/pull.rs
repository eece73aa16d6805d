//! PULL_MESSAGE with long polling and tag filtering.
//!
//! Reads whole batches from `queueOffset`, keeps the messages whose `TAGS` match the
//! subscription (the request's when sysFlag has FLAG_SUBSCRIPTION, else the one the group
//! registered by heartbeat, else `*`), up to `maxMsgNums`, and answers with the stored-message
//! format. When nothing matches up to the high watermark and FLAG_SUSPEND is set, the pull waits
//! on `LogService::wait_for` for at most `suspendTimeoutMillis` (cut short when the connection
//! closes) and then answers PULL_NOT_FOUND. `nextBeginOffset`, `minOffset` and `maxOffset` are
//! always set. FLAG_COMMIT_OFFSET commits `commitOffset` for the group first.
//!
//! Batches another protocol stored compressed are skipped with a warning (not decoded here).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tracing::warn;
use tributary_api::batch::{BatchHeader, decode_records};
use tributary_api::{PartitionOffsets, TopicPartition};

use super::{encode_message, offsets, optional, parsed, queue_id, required, topic_id};
use crate::codec::RemotingCommand;
use crate::connection::Connection;
use crate::error::{RequestResult, code};
use crate::records::OutgoingMessage;
use crate::registry::TagFilter;
use crate::{Shared, metrics};

const FLAG_COMMIT_OFFSET: i32 = 0x1;
const FLAG_SUSPEND: i32 = 0x2;
const FLAG_SUBSCRIPTION: i32 = 0x4;
/// Bytes read from the log per step when the request names no `maxMsgBytes`.
const DEFAULT_READ_BYTES: usize = 1 << 20;
/// Longest suspension honoured, whatever the client asks.
const MAX_SUSPEND: Duration = Duration::from_secs(30);

struct Found {
    body: BytesMut,
    count: usize,
    /// The offset after the last message examined.
    next: i64,
}

pub(super) async fn pull(
    shared: &Shared,
    connection: &Connection,
    request: &RemotingCommand,
) -> RequestResult<RemotingCommand> {
    let group = required(request, "consumerGroup")?;
    let topic = required(request, "topic")?;
    let partition = TopicPartition::new(topic, queue_id(request, "queueId")?);
    let mut offset: i64 = parsed(request, "queueOffset")?;
    let max_messages = optional::<i64>(request, "maxMsgNums")?
        .unwrap_or(32)
        .clamp(1, 1024) as usize;
    let max_bytes = optional::<i64>(request, "maxMsgBytes")?
        .filter(|n| *n > 0)
        .map_or(DEFAULT_READ_BYTES, |n| n as usize);
    let sys_flag: i32 = optional(request, "sysFlag")?.unwrap_or(0);
    let suspend = Duration::from_millis(optional(request, "suspendTimeoutMillis")?.unwrap_or(0))
        .min(MAX_SUSPEND);

    let commit = optional::<i64>(request, "commitOffset")?.filter(|o| *o >= 0);
    if let Some(commit) = commit.filter(|_| sys_flag & FLAG_COMMIT_OFFSET != 0) {
        offsets::commit(shared, group, &partition, commit).await?;
    }
    let filter = if sys_flag & FLAG_SUBSCRIPTION != 0 {
        TagFilter::parse(request.field("subscription").unwrap_or("*"))
    } else {
        shared
            .clients
            .subscription(group, topic)
            .unwrap_or_else(|| TagFilter::parse("*"))
    };

    let deadline = Instant::now() + suspend;
    loop {
        let bounds = shared.engine.log.offsets(&partition)?;
        if offset < bounds.log_start || offset > bounds.high_watermark {
            let next = if offset < bounds.log_start {
                bounds.log_start
            } else {
                bounds.high_watermark
            };
            return Ok(answer(request, code::PULL_OFFSET_MOVED, next, bounds));
        }
        if offset < bounds.high_watermark {
            let found = collect(
                shared,
                connection,
                &partition,
                offset,
                max_messages,
                max_bytes,
                &filter,
            )
            .await?;
            if found.next == offset {
                // The log returned nothing below its own high watermark; answer rather than spin.
                return Ok(answer(request, code::PULL_NOT_FOUND, offset, bounds));
            }
            offset = found.next;
            if found.count > 0 {
                ::metrics::counter!(metrics::MESSAGES_OUT, "topic" => topic.to_owned())
                    .increment(found.count as u64);
                shared.stats.pulled(topic, group, found.count as u64);
                let bounds = shared.engine.log.offsets(&partition)?;
                return Ok(
                    answer(request, code::SUCCESS, offset, bounds).with_body(found.body.freeze())
                );
            }
            if offset < bounds.high_watermark {
                continue;
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if sys_flag & FLAG_SUSPEND == 0 || remaining.is_zero() || connection.closing.is_cancelled()
        {
            let bounds = shared.engine.log.offsets(&partition)?;
            return Ok(answer(request, code::PULL_NOT_FOUND, offset, bounds));
        }
        tokio::select! {
            waited = shared.engine.log.wait_for(&partition, offset, remaining) => { waited?; }
            () = connection.closing.cancelled() => {}
        }
    }
}

fn answer(
    request: &RemotingCommand,
    code: i32,
    next: i64,
    bounds: PartitionOffsets,
) -> RemotingCommand {
    RemotingCommand::response_to(request, code)
        .with_field("suggestWhichBrokerId", 0)
        .with_field("nextBeginOffset", next)
        .with_field("minOffset", bounds.log_start)
        .with_field("maxOffset", bounds.high_watermark)
}

/// Reads one chunk of batches from `offset` and encodes the matching messages.
async fn collect(
    shared: &Shared,
    connection: &Connection,
    partition: &TopicPartition,
    offset: i64,
    max_messages: usize,
    max_bytes: usize,
    filter: &TagFilter,
) -> RequestResult<Found> {
    let read = shared.engine.log.read(partition, offset, max_bytes).await?;
    let topic_id = topic_id(shared, &partition.topic).await?;
    let mut found = Found {
        body: BytesMut::new(),
        count: 0,
        next: offset,
    };
    let mut rest: Bytes = read.data;
    while !rest.is_empty() && found.count < max_messages {
        let header = BatchHeader::parse(&rest).map_err(tributary_api::EngineError::from)?;
        let batch = rest.split_to(header.total_len.min(rest.len()));
        let records = match decode_records(&batch) {
            Ok(records) => records,
            Err(err) => {
                warn!(%partition, base_offset = header.base_offset, error = %err, "skipping a batch RocketMQ cannot decode");
                found.next = found.next.max(header.last_offset() + 1);
                continue;
            }
        };
        for stored in records {
            if stored.offset < found.next {
                continue;
            }
            if found.count >= max_messages {
                break;
            }
            found.next = stored.offset + 1;
            let message = OutgoingMessage::from_record(&stored.record);
            if !filter.matches(message.tag()) {
                continue;
            }
            encode_message(
                partition,
                topic_id,
                stored.offset,
                &message,
                connection.local,
                &mut found.body,
            )?;
            found.count += 1;
        }
    }
    Ok(found)
}
