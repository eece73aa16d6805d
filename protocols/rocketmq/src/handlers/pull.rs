//! PULL_MESSAGE with long polling, tag and SQL92 filtering.
//!
//! Reads whole batches from `queueOffset`, keeps the messages the subscription selects (the
//! request's when sysFlag has FLAG_SUBSCRIPTION, parsed by its `expressionType`; else the one
//! the group registered by heartbeat; else `*`), up to `maxMsgNums`, and answers with the
//! stored-message format, encoded straight from the records into one body buffer (no
//! per-message copies of properties). When nothing matches up to the high watermark and
//! FLAG_SUSPEND is set, the pull waits on `LogService::wait_for` for at most
//! `suspendTimeoutMillis` (cut short when the connection closes) and then answers
//! PULL_NOT_FOUND. A read of up to `maxMsgBytes` in which the filter selects nothing, short of
//! the high watermark, answers PULL_RETRY_IMMEDIATELY with the offset after it, as RocketMQ
//! answers NO_MATCHED_MESSAGE: a pull's time stays bounded however long a run of unselected
//! messages is (an unbounded scan could outlive the client's pull timeout, and the client then
//! asks again from the same offset). `nextBeginOffset`, `minOffset` and `maxOffset` are always
//! set.
//! FLAG_COMMIT_OFFSET records `commitOffset` for the group, stored within a second
//! ([`crate::pull_commits`]).
//!
//! SQL92 subscriptions answer as RocketMQ does: SUBSCRIPTION_PARSE_FAILED for a request
//! expression that does not compile, FILTER_DATA_NOT_EXIST when the heartbeat's did not, and
//! SYSTEM_ERROR when `enable_property_filter` is off.
//!
//! Compressed batches (Kafka producers') are inflated once and kept a while in
//! `Shared::inflated` ([`InflatedBatches`]), since a pull takes 32 messages of a batch that may
//! hold a thousand. Nothing is skipped
//! (docs/interop.md): a batch that cannot be decoded (corrupt, over the inflate limit, unknown
//! codec) ends the pull before it. Messages found before it are answered with
//! `nextBeginOffset` at most the bad batch's start; a pull that found none is answered
//! SYSTEM_ERROR with a remark naming the partition, offset and reason, logged and counted in
//! `tributary_interop_undeliverable_batches_total{protocol="rocketmq"}`, and the offset does
//! not move (the client retries from the same offset). Control batches carry no message and
//! are passed over.
//!
//! Kafka transactions (`tributary_api::transactions`): a pull reads no further than the
//! partition's last stable offset, so records of an open transaction wait for its end, and
//! passes over the batches of aborted transactions as over markers; a pull caught up at the
//! last stable offset waits for the log to pass its high watermark (the next marker).

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tracing::warn;
use tributary_api::batch::{BatchError, BatchHeader};
use tributary_api::compression::InflatedBatches;
use tributary_api::transactions::Committed;
use tributary_api::{PartitionOffsets, TopicPartition};

use super::{MessageParts, encode_parts, optional, parsed, queue_id, required, topic_id};
use crate::codec::RemotingCommand;
use crate::connection::Connection;
use crate::error::{RequestError, RequestResult, code, undeliverable};
use crate::records::MessageView;
use crate::registry::Subscription;
use crate::{Shared, metrics};

const FLAG_COMMIT_OFFSET: i32 = 0x1;
const FLAG_SUSPEND: i32 = 0x2;
const FLAG_SUBSCRIPTION: i32 = 0x4;
/// Bytes a pull may read from the log when the request names no `maxMsgBytes`.
const DEFAULT_READ_BYTES: usize = 1 << 20;
/// Bytes read per step: about 32 messages of 1 KiB, RocketMQ's default pull, so a pull does not
/// copy far more of the log than it answers with.
const READ_CHUNK_BYTES: usize = 64 << 10;
/// Longest suspension honoured, whatever the client asks.
const MAX_SUSPEND: Duration = Duration::from_secs(30);

struct Found {
    body: BytesMut,
    count: usize,
    /// The offset after the last message examined.
    next: i64,
    /// The batch the read stopped at because it cannot be decoded: its base offset and why.
    undeliverable: Option<(i64, BatchError)>,
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

    if let Some(reset) = shared.pull_commits.pending_reset(group, &partition) {
        // The group has not followed a reset yet (crate::pull_commits): a pull from elsewhere
        // is moved to the reset offset, as RocketMQ's server-side reset answers; its
        // piggybacked commit is the old position and is not recorded.
        if offset != reset {
            let bounds = shared.engine.log.offsets(&partition)?;
            return Ok(answer(request, code::PULL_OFFSET_MOVED, reset, bounds));
        }
        shared.pull_commits.reset_followed(group, &partition);
    }
    let commit = optional::<i64>(request, "commitOffset")?.filter(|o| *o >= 0);
    if let Some(commit) = commit.filter(|_| sys_flag & FLAG_COMMIT_OFFSET != 0) {
        // Stored in the background (crate::pull_commits), as RocketMQ does.
        if shared.pull_commits.record(group, &partition, commit) {
            shared.stats.committed(group, &partition, commit);
        }
    }
    let filter = subscription(shared, request, group, topic, sys_flag)?;

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
        // Open Kafka transactions hold the readable end below the high watermark.
        let committed = shared.engine.committed(&partition, offset).await?;
        if offset < committed.end {
            let found = collect(
                shared,
                connection,
                &partition,
                offset,
                max_messages,
                max_bytes,
                &filter,
                &committed,
            )
            .await?;
            if found.count == 0
                && let Some((base_offset, error)) = found.undeliverable
            {
                return Err(undeliverable(&partition, base_offset, error));
            }
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
            if offset < committed.end {
                return Ok(answer(
                    request,
                    code::PULL_RETRY_IMMEDIATELY,
                    offset,
                    bounds,
                ));
            }
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        if sys_flag & FLAG_SUSPEND == 0 || remaining.is_zero() || connection.closing.is_cancelled()
        {
            let bounds = shared.engine.log.offsets(&partition)?;
            return Ok(answer(request, code::PULL_NOT_FOUND, offset, bounds));
        }
        tokio::select! {
            waited = shared.engine.log.wait_for(&partition, committed.wait_from(offset), remaining) => { waited?; }
            () = connection.closing.cancelled() => {}
        }
    }
}

/// The subscription a pull filters with; errors as RocketMQ answers them.
fn subscription(
    shared: &Shared,
    request: &RemotingCommand,
    group: &str,
    topic: &str,
    sys_flag: i32,
) -> RequestResult<Subscription> {
    let subscription = if sys_flag & FLAG_SUBSCRIPTION != 0 {
        let expression = request.field("subscription").unwrap_or("*");
        match Subscription::parse(request.field("expressionType"), expression) {
            Subscription::Sql(Err(err)) => {
                warn!(group, topic, expression, error = %err, "a pull's SQL92 subscription does not compile");
                return Err(RequestError::SubscriptionParseFailed(err));
            }
            parsed => parsed,
        }
    } else {
        match shared.clients.subscription(group, topic) {
            Some(Subscription::Sql(Err(err))) => {
                warn!(group, topic, error = %err, "pull for a SQL92 subscription that did not compile at heartbeat");
                return Err(RequestError::FilterDataNotExist);
            }
            registered => registered.unwrap_or_else(Subscription::all),
        }
    };
    if matches!(subscription, Subscription::Sql(_)) && !shared.settings.enable_property_filter {
        warn!(
            group,
            topic, "SQL92 subscription refused: rocketmq.enable_property_filter is off"
        );
        return Err(RequestError::FilterDisabled("SQL92".to_owned()));
    }
    Ok(subscription)
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

/// Reads batches from `offset` in chunks of at most [`READ_CHUNK_BYTES`] and encodes the
/// matching messages, until `max_messages` are found, `max_bytes` were read or the readable
/// part of the log (`committed`) ends.
#[allow(clippy::too_many_arguments)]
async fn collect(
    shared: &Shared,
    connection: &Connection,
    partition: &TopicPartition,
    offset: i64,
    max_messages: usize,
    max_bytes: usize,
    filter: &Subscription,
    committed: &Committed,
) -> RequestResult<Found> {
    let topic_id = topic_id(shared, &partition.topic).await?;
    let mut found = Found {
        body: BytesMut::new(),
        count: 0,
        next: offset,
        undeliverable: None,
    };
    let mut encoder = Encoder {
        partition,
        topic_id,
        // The id a message's send answered (`routes::store_host`), whichever broker pulls it.
        store_host: match shared.cluster.get() {
            Some(cluster) => crate::routes::store_host(cluster.as_ref(), connection.local),
            None => connection.local,
        },
        filter,
        max_messages,
        properties: String::new(),
        inflated: &shared.inflated,
        committed,
    };
    // The topic's life, for batches kept from earlier pulls ([`crate::read_ahead`]).
    let topic_life = shared
        .engine
        .topics
        .describe_topic(&partition.topic)
        .ok()
        .map(|description| description.id);
    let mut budget = max_bytes;
    while found.count < max_messages && budget > 0 {
        let kept = topic_life.and_then(|life| shared.read_ahead.get(partition, life, found.next));
        let data = match kept {
            Some(data) => data,
            None => {
                let read = shared
                    .engine
                    .log
                    .read(partition, found.next, budget.min(READ_CHUNK_BYTES))
                    .await?;
                if let Some(life) = topic_life {
                    shared.read_ahead.keep(partition, life, &read.data);
                }
                read.data
            }
        };
        let data = committed.cut(&data);
        if data.is_empty() {
            break;
        }
        budget = budget.saturating_sub(data.len());
        if found.body.capacity() == 0 {
            // Stored records are a little larger than the log's; one allocation for most answers.
            // At most a chunk's worth: a read returns a whole batch, and a Kafka producer's can
            // hold a megabyte of which the pull answers 32 messages.
            found
                .body
                .reserve(data.len().min(READ_CHUNK_BYTES) + max_messages * 64);
        }
        let before = found.next;
        encoder.encode_batches(data, &mut found)?;
        if found.undeliverable.is_some() || found.next == before || found.next >= committed.end {
            break;
        }
    }
    Ok(found)
}

/// Encodes the messages of read batches that a pull selects.
struct Encoder<'a> {
    partition: &'a TopicPartition,
    topic_id: u32,
    store_host: std::net::SocketAddr,
    filter: &'a Subscription,
    max_messages: usize,
    /// The properties of the message being encoded, reused across messages.
    properties: String,
    inflated: &'a InflatedBatches,
    /// Which batches carry no message (transaction markers, aborted transactions).
    committed: &'a Committed,
}

impl Encoder<'_> {
    /// Encodes the selected messages of `rest`, moving `found.next` past what it examined;
    /// stops at a batch that cannot be decoded, recording it in `found.undeliverable` with
    /// `found.next` still before it.
    fn encode_batches(&mut self, mut rest: Bytes, found: &mut Found) -> RequestResult<()> {
        while !rest.is_empty() && found.count < self.max_messages {
            let header = match BatchHeader::parse(&rest) {
                Ok(header) => header,
                Err(err) => {
                    found.undeliverable = Some((found.next, err));
                    return Ok(());
                }
            };
            let batch = rest.split_to(header.total_len.min(rest.len()));
            // Kept reads ([`crate::read_ahead`]) may start at batches before the position.
            if header.last_offset() < found.next {
                continue;
            }
            if self.committed.skips(&header) {
                found.next = found.next.max(header.last_offset() + 1);
                continue;
            }
            // With `*` every record decoded is delivered, so decode no more than the pull takes
            // (a filter may reject any number of them: then the batch is decoded to its end).
            let wanted = match self.filter.selects_all() {
                true => self.max_messages - found.count,
                false => usize::MAX,
            };
            let records =
                match self
                    .inflated
                    .decode_from(self.partition, &batch, found.next, wanted)
                {
                    Ok(records) => records,
                    Err(err) => {
                        found.undeliverable = Some((header.base_offset.max(found.next), err));
                        return Ok(());
                    }
                };
            // Records from `found.next` on only (`decode_from`).
            for stored in records {
                if found.count >= self.max_messages {
                    break;
                }
                found.next = stored.offset + 1;
                let message = MessageView::of(&stored.record);
                if !self.filter.matches(|name| message.property(name)) {
                    continue;
                }
                message.write_properties(&mut self.properties)?;
                let parts = MessageParts {
                    meta: message.meta,
                    body: message.body(),
                    properties: &self.properties,
                };
                encode_parts(
                    self.partition,
                    self.topic_id,
                    stored.offset,
                    &parts,
                    self.store_host,
                    &mut found.body,
                )?;
                found.count += 1;
            }
            if found.count < self.max_messages {
                // The batch was examined to its end (`decode_from` gave fewer than wanted): a
                // compacted batch's removed records, or an emptied batch, are passed too.
                found.next = found.next.max(header.last_offset() + 1);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "pull_tests.rs"]
mod tests;
