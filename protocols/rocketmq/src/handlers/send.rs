//! SEND_MESSAGE (V1 header, long names), SEND_MESSAGE_V2 (one-letter names) and
//! SEND_BATCH_MESSAGE (V2 header, batch body).
//!
//! A send appends one record batch to partition `queueId % queues` of the topic (in a cluster,
//! to the `queueId`-th partition this broker leads, see [`crate::routes`]), created when
//! missing and auto-creation is on (with the producer's `defaultTopicQueueNums` queues capped
//! at `default_queue_nums`, as RocketMQ caps it at TBW102's count), so sends to one queue keep
//! their order. A batch is either
//! code 320 or a `batch` field of `true`, or `1` as the C++ 1.2 client sends it on code 10 (it
//! sends `0` for single messages, so `1` is unambiguous). The response carries `msgId` (offset
//! message ids, comma-joined for a batch), `queueId`, `queueOffset` (the first message's),
//! `MSG_REGION` and `TRACE_ON`, all as strings.
//!
//! A single message with a delay (see [`crate::delay`]) is handed to the engine scheduler instead:
//! it lands in its queue when due, without `DELAY` and with `REAL_TOPIC`/`REAL_QID`, stamped with
//! the delivery time. Its response names the queue's high watermark at send time, since the
//! offset is only assigned on delivery. Batches with a delay are refused, as RocketMQ 4.x does.
//!
//! A transactional (half) message is stored by [`super::transaction`] instead: the response
//! names its place in the half topic (queue 0, its offset there) and its `transactionId`.
//!
//! A message sent compressed (sysFlag bit 0, COMPRESSED_FLAG; the producer compresses bodies
//! over 4 KiB) is inflated here, before anything stores it, and its compression bits are
//! cleared, so every reader of every protocol gets the body as sent (docs/interop.md). The
//! codec is named by sysFlag bits 8-10 as RocketMQ 5 writes them (1 lz4 frame, 2 zstd, 3 zlib)
//! and is zlib when they are 0 (RocketMQ 4 clients). A body that does not inflate, or inflates
//! past `max_message_bytes`, fails the send with MESSAGE_ILLEGAL and a remark; nothing of the
//! send is stored.

use bytes::Bytes;
use tributary_api::batch::build_batch;
use tributary_api::compression::{Codec, decompress};
use tributary_api::{ScheduleTarget, TopicDescription, TopicPartition};

use super::send_back::PROPERTY_UNIQ_KEY;
use super::{ensure_topic, physical, request, transaction};
use crate::codec::RemotingCommand;
use crate::codec::message::{decode_batch, offset_message_id, parse_properties};
use crate::connection::Connection;
use crate::delay::{self, PROPERTY_DELAY, PROPERTY_REAL_QUEUE_ID, PROPERTY_REAL_TOPIC};
use crate::error::{RequestError, RequestResult, code};
use crate::records::IncomingMessage;
use crate::{Shared, metrics};

/// A send header field under its V1 name or its V2 letter, whichever the code uses.
fn field<'a>(request: &'a RemotingCommand, v1: &'static str, v2: &'static str) -> Option<&'a str> {
    let v2_header = matches!(
        request.code,
        request::SEND_MESSAGE_V2 | request::SEND_BATCH_MESSAGE
    );
    request.field(if v2_header { v2 } else { v1 })
}

fn number<T: std::str::FromStr>(
    request: &RemotingCommand,
    v1: &'static str,
    v2: &'static str,
    default: T,
) -> RequestResult<T> {
    match field(request, v1, v2).map(str::trim) {
        None | Some("") => Ok(default),
        Some(text) => text.parse().map_err(|_| RequestError::BadField {
            field: v1,
            value: text.to_owned(),
        }),
    }
}

pub(super) async fn send(
    shared: &Shared,
    connection: &Connection,
    request: &RemotingCommand,
) -> RequestResult<RemotingCommand> {
    let topic = field(request, "topic", "b").ok_or(RequestError::MissingField("topic"))?;
    let queue_id: i64 = number(request, "queueId", "e", 0)?;
    let sys_flag: i32 = number(request, "sysFlag", "f", 0)?;
    let now = shared.engine.scheduler.now_ms();
    let born_timestamp: i64 = number(request, "bornTimestamp", "g", now)?;
    let flag: i32 = number(request, "flag", "h", 0)?;
    let reconsume_times: i32 = number(request, "reconsumeTimes", "j", 0)?;
    let properties = field(request, "properties", "i").unwrap_or("");
    let batch = request.code == request::SEND_BATCH_MESSAGE
        || matches!(field(request, "batch", "m"), Some("true" | "1"));

    let requested = field(request, "defaultTopicQueueNums", "d");
    let description = ensure_topic(shared, topic, auto_create_queues(shared, requested)).await?;
    let partition = match shared.cluster.get() {
        Some(cluster) => crate::routes::send_partition(
            cluster.as_ref(),
            topic,
            description.partitions,
            queue_id,
        )?,
        None => queue_partition(&description, queue_id),
    };
    let template = IncomingMessage {
        body: request.body.clone(),
        flag,
        sys_flag,
        born_timestamp,
        born_host: connection.peer,
        reconsume_times,
        properties: parse_properties(properties),
    };
    let mut messages = if batch {
        decode_batch(&request.body)?
            .into_iter()
            .map(|entry| IncomingMessage {
                body: entry.body,
                flag: entry.flag,
                properties: parse_properties(&entry.properties),
                ..template.clone()
            })
            .collect()
    } else {
        vec![template]
    };
    if messages.is_empty() {
        return Ok(RemotingCommand::response_to(request, code::MESSAGE_ILLEGAL)
            .with_remark("the batch holds no message"));
    }
    if let Some(name) = messages.iter().find_map(IncomingMessage::reserved_property) {
        return Err(RequestError::Illegal(format!(
            "property name `{name}` is reserved by the broker (docs/interop.md)"
        )));
    }
    inflate_bodies(&mut messages, shared.settings.max_message_bytes)?;
    let target = TopicPartition::new(topic, partition);
    if messages.iter().any(transaction::is_half) {
        let [message] = <[IncomingMessage; 1]>::try_from(messages).map_err(|_| {
            RequestError::Illegal("transactional messages cannot be sent in a batch".to_owned())
        })?;
        let header_group = field(request, "producerGroup", "a");
        let transaction_id = message.property(PROPERTY_UNIQ_KEY).map(str::to_owned);
        let (half, offset) =
            transaction::store_half(shared, message, header_group, &target, now).await?;
        let response = success(shared, request, connection, &half, offset, offset).await?;
        return Ok(match transaction_id {
            Some(id) => response.with_field("transactionId", id),
            None => response,
        });
    }
    if let Some(due) = delivery_time(shared, now, &messages, batch)? {
        let mut message = messages.into_iter().next().expect("one message");
        let base_offset = schedule(shared, &mut message, &target, due).await?;
        ::metrics::counter!(metrics::MESSAGES_IN, "topic" => topic.to_owned()).increment(1);
        shared.stats.sent(topic, 1);
        return success(
            shared,
            request,
            connection,
            &target,
            base_offset,
            base_offset,
        )
        .await;
    }
    let records: Vec<_> = messages.iter().map(|m| m.to_record(now)).collect();
    let outcome = shared
        .engine
        .log
        .append(&target, build_batch(&records))
        .await?;
    ::metrics::counter!(metrics::MESSAGES_IN, "topic" => topic.to_owned())
        .increment(messages.len() as u64);
    shared.stats.sent(topic, messages.len() as u64);

    success(
        shared,
        request,
        connection,
        &target,
        outcome.base_offset,
        outcome.last_offset,
    )
    .await
}

/// sysFlag bit 0: the body is compressed.
const COMPRESSED_FLAG: i32 = 0x1;
/// sysFlag bits 8-10: the codec of a compressed body (RocketMQ 5); 0 is zlib.
const COMPRESSION_TYPE_MASK: i32 = 0x7 << 8;

/// Inflates every compressed body in `messages` to at most `limit` bytes and clears its
/// compression bits (see the module doc).
fn inflate_bodies(messages: &mut [IncomingMessage], limit: usize) -> RequestResult<()> {
    for message in messages
        .iter_mut()
        .filter(|m| m.sys_flag & COMPRESSED_FLAG != 0)
    {
        let codec = match (message.sys_flag & COMPRESSION_TYPE_MASK) >> 8 {
            0 | 3 => Codec::Zlib,
            1 => Codec::Lz4,
            2 => Codec::Zstd,
            other => {
                return Err(RequestError::Illegal(format!(
                    "the message body is compressed with unknown compression type {other}"
                )));
            }
        };
        let body = decompress(codec, &message.body, limit).map_err(|err| {
            RequestError::Illegal(format!("the compressed message body is refused: {err}"))
        })?;
        message.body = Bytes::from(body);
        message.sys_flag &= !(COMPRESSED_FLAG | COMPRESSION_TYPE_MASK);
    }
    Ok(())
}

/// Queues for a topic this send creates: the producer's `defaultTopicQueueNums`, at most the
/// configured auto-create count, as RocketMQ's broker takes the smaller of the header and
/// TBW102's queue count (`createTopicInSendMessageMethod`). `None` (no usable header) leaves
/// the configured count: the field only sizes a topic, so a bad one does not fail the send.
fn auto_create_queues(shared: &Shared, requested: Option<&str>) -> Option<u32> {
    requested
        .and_then(|text| text.trim().parse::<u32>().ok())
        .filter(|n| *n > 0)
        .map(|n| n.min(shared.settings.default_queue_nums))
}

/// The partition a send to `queue_id` lands in (ids past the topic's queues wrap around).
pub(super) fn queue_partition(description: &TopicDescription, queue_id: i64) -> u32 {
    u32::try_from(queue_id.rem_euclid(i64::from(description.partitions.max(1)))).unwrap_or(0)
}

/// The send response for messages at `first..=last` of `target`.
async fn success(
    shared: &Shared,
    request: &RemotingCommand,
    connection: &Connection,
    target: &TopicPartition,
    first: i64,
    last: i64,
) -> RequestResult<RemotingCommand> {
    let base = physical(shared, target, first).await?;
    let store_host = match shared.cluster.get() {
        Some(cluster) => crate::routes::store_host(cluster.as_ref(), connection.local),
        None => connection.local,
    };
    let ids: Vec<String> = (0..=last - first)
        .map(|n| offset_message_id(&store_host, base + n))
        .collect();
    Ok(RemotingCommand::response_to(request, code::SUCCESS)
        .with_field("msgId", ids.join(","))
        .with_field("queueId", target.partition)
        .with_field("queueOffset", first)
        .with_field("MSG_REGION", "DefaultRegion")
        .with_field("TRACE_ON", "true"))
}

/// When a delayed send is due, or `None` for an ordinary send.
fn delivery_time(
    shared: &Shared,
    now: i64,
    messages: &[IncomingMessage],
    batch: bool,
) -> RequestResult<Option<i64>> {
    let mut due = None;
    for message in messages {
        let this = delay::due_time(&shared.settings.delay_levels, now, |name| {
            message.property(name)
        })
        .map_err(|err| RequestError::Illegal(err.to_string()))?;
        if this.is_some() && batch {
            return Err(RequestError::Illegal(
                "TimeDelayLevel is not supported for batched messages".to_owned(),
            ));
        }
        due = due.or(this);
    }
    Ok(due)
}

/// Hands `message` to the scheduler for delivery to `target` at `due`; returns the queue's high
/// watermark, the offset the message will have if nothing else arrives first.
pub(super) async fn schedule(
    shared: &Shared,
    message: &mut IncomingMessage,
    target: &TopicPartition,
    due: i64,
) -> RequestResult<i64> {
    message
        .properties
        .retain(|(name, _)| name != PROPERTY_DELAY);
    set_real_destination(message, target);
    let batch = build_batch(&[message.to_record_at_store_time(due)]);
    shared
        .engine
        .scheduler
        .schedule_append(due, ScheduleTarget::Partition(target.clone()), batch)
        .await?;
    Ok(shared.engine.log.offsets(target)?.high_watermark)
}

/// Records `target` in `REAL_TOPIC` / `REAL_QID`, for a message parked elsewhere until it is due
/// there (a delay) or committed there (a transaction).
pub(super) fn set_real_destination(message: &mut IncomingMessage, target: &TopicPartition) {
    message
        .properties
        .retain(|(name, _)| !name.starts_with("REAL_"));
    message
        .properties
        .push((PROPERTY_REAL_TOPIC.to_owned(), target.topic.clone()));
    message.properties.push((
        PROPERTY_REAL_QUEUE_ID.to_owned(),
        target.partition.to_string(),
    ));
}

#[cfg(test)]
mod tests {
    use tributary_api::compression::compress;

    use super::*;

    fn message(body: Vec<u8>, sys_flag: i32) -> IncomingMessage {
        IncomingMessage {
            body: Bytes::from(body),
            flag: 0,
            sys_flag,
            born_timestamp: 1,
            born_host: "127.0.0.1:1".parse().unwrap(),
            reconsume_times: 0,
            properties: Vec::new(),
        }
    }

    #[test]
    fn compressed_bodies_are_stored_inflated_with_the_bits_cleared() {
        let body = b"a RocketMQ body over 4 KiB ".repeat(200);
        let mut messages = vec![
            // RocketMQ 4: COMPRESSED_FLAG alone is zlib; the transaction bits stay.
            message(compress(Codec::Zlib, &body).unwrap(), 0x1 | 0x4),
            message(compress(Codec::Lz4, &body).unwrap(), 0x1 | 0x100),
            message(compress(Codec::Zstd, &body).unwrap(), 0x1 | 0x200),
            message(compress(Codec::Zlib, &body).unwrap(), 0x1 | 0x300),
            message(body.clone(), 0),
        ];
        inflate_bodies(&mut messages, body.len()).unwrap();
        for (i, m) in messages.iter().enumerate() {
            assert_eq!(m.body, body, "message {i}");
            assert_eq!(m.sys_flag & !0x4, 0, "message {i}");
        }
        assert_eq!(messages[0].sys_flag, 0x4);
    }

    #[test]
    fn corrupt_oversize_or_unknown_compression_is_message_illegal() {
        let body = vec![0u8; 10_000];
        let cases = [
            message(b"not zlib at all".to_vec(), 0x1),
            message(compress(Codec::Zlib, &body).unwrap(), 0x1),
            message(compress(Codec::Zlib, &body).unwrap(), 0x1 | 0x500),
        ];
        for (i, case) in cases.into_iter().enumerate() {
            let mut messages = vec![message(b"fine".to_vec(), 0), case];
            let err = inflate_bodies(&mut messages, 9_999).unwrap_err();
            assert_eq!(
                err.response_code(),
                code::MESSAGE_ILLEGAL,
                "case {i}: {err}"
            );
            assert!(!err.remark().is_empty());
        }
    }
}
