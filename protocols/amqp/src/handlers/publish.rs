//! basic.publish: assembling content, routing, storing, `basic.return` for unroutable mandatory
//! messages and publisher confirms.
//!
//! Routed messages are staged per connection and stored in one go when the read buffer holds no
//! further complete frame, before any other method is handled, or when the stage is full: each
//! target queue then gets one RecordBatch with all its staged records, so a burst of publishes
//! shares one append (and one fsync under the `always` policy) instead of paying one each.
//! Message order per queue is the publish order.
//!
//! A confirm (`basic.ack` with the channel's publish sequence number, from 1) is sent only after
//! every target queue's `enqueue` returned, i.e. after the queue's durability policy was met; a
//! failed or refused enqueue is confirmed with `basic.nack`. Confirms go out in publish order,
//! a run of acks on a channel as one `multiple=true` ack (see [`super::confirms`]).
//! For an unroutable mandatory message `basic.return` comes first, then the ack, as RabbitMQ
//! orders them.

use std::sync::Arc;

use bytes::BytesMut;
use tributary_api::TopicPartition;
use tributary_api::batch::{Record, build_batch};

use crate::Shared;
use crate::channel::{PendingBody, PendingPublish};
use crate::codec::{self, methods::Method};
use crate::deadletter::{
    REASON_MAXLEN, dead_letter, dead_letter_refused, parse_expiration, record_for_queue,
};
use crate::error::{AmqpError, NO_ROUTE, NOT_IMPLEMENTED, PRECONDITION_FAILED, Reply};
use crate::expiry;
use crate::handlers::confirms::{advance, confirm_frames};
use crate::handlers::reply_to::{REPLY_TO_PREFIX, deliver_reply};
use crate::handlers::store_batch;
use crate::message::{now_ms, to_record};
use crate::policy::{Overflow, QueueKind, QueuePolicy};
use crate::session::Session;

/// Most messages staged before they are stored.
pub(crate) const STAGE_MAX_MESSAGES: usize = 256;
/// Most body bytes staged before they are stored; also the payload cap of one stored batch.
pub(crate) const STAGE_MAX_BYTES: usize = 512 * 1024;

/// A routed message waiting to be stored.
#[derive(Debug)]
pub(crate) struct Staged {
    pub(crate) channel: u16,
    /// The publish sequence number on a confirm channel.
    pub(crate) confirm: Option<u64>,
    /// One record per target queue (records differ when queues' TTLs do).
    pub(crate) targets: Vec<(String, Record)>,
    /// A publish to a topic's exchange: the partition it is appended to, and the record.
    pub(crate) topic: Option<(TopicPartition, Record)>,
}

/// The body bytes `x-max-length-bytes` counts.
fn body_len(record: &Record) -> u64 {
    record.value.as_ref().map_or(0, |v| v.len() as u64)
}

fn record_len(record: &Record) -> usize {
    record.value.as_ref().map_or(0, |v| v.len())
        + record
            .headers
            .iter()
            .map(|(k, v)| k.len() + v.as_ref().map_or(0, |v| v.len()))
            .sum::<usize>()
}

impl Session {
    pub(crate) fn basic_publish(
        &mut self,
        channel: u16,
        exchange: String,
        routing_key: String,
        mandatory: bool,
        immediate: bool,
    ) -> Result<(), AmqpError> {
        if immediate {
            return Err(AmqpError::connection(NOT_IMPLEMENTED, "immediate=true"));
        }
        if let Some(state) = self.channels.get_mut(&channel) {
            state.pending = Some(PendingPublish {
                exchange,
                routing_key,
                mandatory,
                method: (60, 40),
                header: None,
                body: PendingBody::default(),
                held: None,
            });
        }
        Ok(())
    }

    /// Routes the message now complete on `channel` and stages (or, in a transaction, holds) it.
    pub(crate) async fn complete_publish(&mut self, channel: u16) -> Result<(), AmqpError> {
        let Some(state) = self.channels.get_mut(&channel) else {
            return Ok(());
        };
        let Some(pending) = state.pending.take() else {
            return Ok(());
        };
        let confirm = state.confirm.then(|| {
            state.publish_seq += 1;
            state.publish_seq
        });
        let Some((mut header, mut properties)) = pending.header else {
            return Ok(());
        };
        self.shared.counters.received.increment(1);
        if confirm.is_some() {
            self.shared.counters.received_confirm.increment(1);
        }
        let body = pending.body.freeze();
        if let Some((raw, rewritten)) = self
            .rewrite_reply_to(channel, &properties)
            .map_err(|e| e.caused_by(pending.method))?
        {
            header.raw_properties = raw;
            properties = rewritten;
        }
        let direct_reply =
            pending.exchange.is_empty() && pending.routing_key.starts_with(REPLY_TO_PREFIX);
        if !direct_reply {
            // An exchange, queue or binding declared through another broker of a shared store
            // (cheap: counters compared unless the store says they changed); the default
            // exchange routes to queues, so it needs them too.
            self.shared
                .topology
                .refresh()
                .await
                .map_err(|e| e.caused_by(pending.method))?;
        }
        // A topic's exchange appends to the topic; the feed delivers to its bound queues.
        let topic = match direct_reply {
            true => None,
            false => self.shared.topology.publish_topic(&pending.exchange),
        };
        let topic_partition = topic.map(|topic| {
            let partition = self
                .shared
                .round_robin
                .partition(&pending.routing_key, topic.partitions);
            TopicPartition::new(topic.name, partition)
        });
        let mut queues = if direct_reply || topic_partition.is_some() {
            Vec::new()
        } else {
            self.shared
                .topology
                .route(
                    &pending.exchange,
                    &pending.routing_key,
                    properties.headers.as_ref(),
                )
                .map_err(|e| e.caused_by(pending.method))?
        };
        let delivered = direct_reply
            && Box::pin(deliver_reply(
                &self.shared.reply_targets,
                &pending.routing_key,
                &header.raw_properties,
                &body,
            ))
            .await;
        if let Some(user_id) = properties.user_id.as_deref()
            && user_id != self.user
        {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                format_args!(
                    "user_id property set to '{user_id}' but authenticated user was '{}'",
                    self.user
                ),
            )
            .caused_by(pending.method));
        }
        let expiration = properties
            .expiration
            .as_deref()
            .map(parse_expiration)
            .transpose()
            .map_err(|text| {
                AmqpError::Channel(Reply {
                    code: PRECONDITION_FAILED,
                    text: format!("PRECONDITION_FAILED - {text}"),
                    method: pending.method,
                })
            })?;
        if queues.is_empty() && !delivered && topic_partition.is_none() {
            if pending.mandatory {
                self.shared.counters.unroutable_returned.increment(1);
                let mut out = BytesMut::new();
                let method = Method::BasicReturn {
                    reply_code: NO_ROUTE,
                    reply_text: "NO_ROUTE".into(),
                    exchange: pending.exchange.clone(),
                    routing_key: pending.routing_key.clone(),
                };
                codec::encode_message(
                    &mut out,
                    channel,
                    &method,
                    &header.raw_properties,
                    &body,
                    self.frame_max,
                );
                self.send(out).await?;
            } else {
                self.shared.counters.unroutable_dropped.increment(1);
            }
        } else {
            self.shared.counters.routed.increment(1);
        }
        let now = now_ms();
        let mut record = to_record(
            &pending.exchange,
            &pending.routing_key,
            header.raw_properties.clone(),
            &properties,
            body,
            now,
        );
        if let Some(partition) = topic_partition {
            // docs/interop.md: an empty routing key is no key.
            if pending.routing_key.is_empty() {
                record.key = None;
            }
            return self.stage_topic(channel, confirm, partition, record).await;
        }
        let for_queue = |queue: String, record: Record| {
            let policy = self.shared.topology.policy(&queue).unwrap_or_default();
            let stored = record_for_queue(record, &policy, expiration, properties.priority, now);
            (queue, stored)
        };
        // Every target but the last gets a copy; the last takes the record.
        let last = queues.pop();
        let mut targets: Vec<(String, Record)> = queues
            .into_iter()
            .map(|queue| for_queue(queue, record.clone()))
            .collect();
        targets.extend(last.map(|queue| for_queue(queue, record)));
        if let Some(state) = self.channels.get_mut(&channel)
            && state.tx
        {
            state.tx_work.publishes.push(targets);
            return Ok(());
        }
        self.staged_bytes += targets.iter().map(|(_, r)| record_len(r)).sum::<usize>();
        self.staged.push(Staged {
            channel,
            confirm,
            targets,
            topic: None,
        });
        if self.staged.len() >= STAGE_MAX_MESSAGES || self.staged_bytes >= STAGE_MAX_BYTES {
            // Boxed: once per batch, and it keeps this per-message future small.
            Box::pin(self.flush_publishes()).await?;
        }
        Ok(())
    }

    /// Stages a publish to a topic's exchange (appended to `partition` of the topic).
    async fn stage_topic(
        &mut self,
        channel: u16,
        confirm: Option<u64>,
        partition: TopicPartition,
        record: Record,
    ) -> Result<(), AmqpError> {
        if self.channels.get(&channel).is_some_and(|state| state.tx) {
            return Err(AmqpError::channel(
                PRECONDITION_FAILED,
                format_args!(
                    "publishing to exchange '{}' (a topic) in a transaction is not supported",
                    partition.topic
                ),
            )
            .caused_by((60, 40)));
        }
        self.staged_bytes += record_len(&record);
        self.staged.push(Staged {
            channel,
            confirm,
            targets: Vec::new(),
            topic: Some((partition, record)),
        });
        if self.staged.len() >= STAGE_MAX_MESSAGES || self.staged_bytes >= STAGE_MAX_BYTES {
            Box::pin(self.flush_publishes()).await?;
        }
        Ok(())
    }

    /// Applies staged acks, then stores every staged message and sends their confirms.
    pub(crate) async fn flush_publishes(&mut self) -> Result<(), AmqpError> {
        self.flush_acks().await;
        if self.staged.is_empty() {
            return Ok(());
        }
        let staged = std::mem::take(&mut self.staged);
        self.staged_bytes = 0;
        // Records move into per-queue batches; the confirms are kept by message index.
        let mut confirms = Vec::with_capacity(staged.len());
        let mut per_queue: Vec<(String, Vec<(usize, Record)>)> = Vec::new();
        let mut per_partition: Vec<(TopicPartition, Vec<(usize, Record)>)> = Vec::new();
        for (index, message) in staged.into_iter().enumerate() {
            confirms.push((message.channel, message.confirm));
            if let Some((partition, record)) = message.topic {
                match per_partition.iter_mut().find(|(at, _)| *at == partition) {
                    Some((_, records)) => records.push((index, record)),
                    None => per_partition.push((partition, vec![(index, record)])),
                }
            }
            for (queue, record) in message.targets {
                match per_queue.iter_mut().find(|(name, _)| *name == queue) {
                    Some((_, records)) => records.push((index, record)),
                    None => per_queue.push((queue, vec![(index, record)])),
                }
            }
        }
        let mut stored = vec![true; confirms.len()];
        for (partition, records) in per_partition {
            for failed in append_topic(&self.shared, &partition, records).await {
                if let Some(flag) = stored.get_mut(failed) {
                    *flag = false;
                }
            }
        }
        for (queue, records) in per_queue {
            for refused in self.store_queue(&queue, records).await {
                if let Some(flag) = stored.get_mut(refused) {
                    *flag = false;
                }
            }
        }
        // The stores woke this queue's consumers onto our worker: let them run beside us.
        tributary_api::yield_to_peers().await;
        let confirms = confirms
            .into_iter()
            .zip(stored)
            .filter_map(|((channel, confirm), ok)| confirm.map(|seq| (channel, seq, ok)));
        let confirmed = &self.shared.counters.confirmed;
        let channels = &mut self.channels;
        let frames = confirm_frames(
            confirms.inspect(|(_, _, ok)| {
                if *ok {
                    confirmed.increment(1);
                }
            }),
            |channel, seq| {
                advance(
                    channels.get_mut(&channel).map(|c| &mut c.confirmed_seq),
                    seq,
                )
            },
        );
        let mut out = BytesMut::new();
        for (channel, method) in frames {
            codec::encode_method(&mut out, channel, &method);
        }
        if out.is_empty() {
            return Ok(());
        }
        self.send(out).await
    }

    /// Stores the transactional publishes of a commit; false when any was refused.
    pub(crate) async fn store(&self, targets: Vec<(String, Record)>) -> bool {
        let mut stored = true;
        for (queue, record) in targets {
            stored &= self.store_queue(&queue, vec![(0, record)]).await.is_empty();
        }
        stored
    }

    /// Stores published records into a queue and counts those stored in its `publish` stat
    /// (the path of plain and transactional publishes; topic feeds do not count).
    async fn store_queue(&self, queue: &str, records: Vec<(usize, Record)>) -> Vec<usize> {
        let offered = records.len();
        let mut outcome = store_queue(&self.shared, queue, records).await;
        outcome.refused.append(&mut outcome.failed);
        let stored = offered.saturating_sub(outcome.refused.len());
        if stored > 0
            && let Some(stats) = self.shared.topology.queue_stats(queue)
        {
            stats.published(stored as u64);
        }
        outcome.refused
    }
}

/// Appends records (tagged with their message index) to a topic's partition, in batches cut
/// at [`STAGE_MAX_BYTES`] of payload; returns the indexes of those not appended. Each append
/// returns once it is as durable as the topic's policy asks, so confirms may follow.
async fn append_topic(
    shared: &Arc<Shared>,
    partition: &TopicPartition,
    records: Vec<(usize, Record)>,
) -> Vec<usize> {
    let mut failed = Vec::new();
    let (mut chunk, mut indexes, mut bytes) = (Vec::new(), Vec::new(), 0);
    let mut records = records.into_iter().peekable();
    while let Some((index, record)) = records.next() {
        bytes += record_len(&record);
        chunk.push(record);
        indexes.push(index);
        let full = records
            .peek()
            .is_none_or(|(_, next)| bytes + record_len(next) > STAGE_MAX_BYTES);
        if !full {
            continue;
        }
        let batch = build_batch(&chunk);
        if let Err(error) = shared.engine.log.append(partition, batch).await {
            tracing::warn!(%partition, %error, "append to a topic's partition failed");
            failed.append(&mut indexes);
        }
        chunk.clear();
        indexes.clear();
        bytes = 0;
    }
    failed
}

/// The indexes of the records [`store_queue`] did not store.
#[derive(Debug, Default)]
pub(crate) struct StoreOutcome {
    /// Refused by the queue's `x-overflow=reject-publish(-dlx)` limit.
    pub(crate) refused: Vec<usize>,
    /// Not stored because the engine failed (logged).
    pub(crate) failed: Vec<usize>,
}

/// Appends records (tagged with their message index) to one queue, applying
/// `x-max-length` and `x-max-length-bytes`: `reject-publish` refuses each message that
/// would not fit (`reject-publish-dlx` also dead-letters it), `drop-head` drops (or
/// dead-letters) the oldest afterwards until both hold. The path every message into a queue
/// takes (publishes and topic feeds). A queue deleted meanwhile stores nothing and refuses
/// nothing, as a publish to a just-deleted queue.
pub(crate) async fn store_queue(
    shared: &Arc<Shared>,
    queue: &str,
    mut records: Vec<(usize, Record)>,
) -> StoreOutcome {
    let Some(policy) = shared.topology.policy(queue) else {
        return StoreOutcome::default();
    };
    let queues = &shared.engine.queues;
    let limited = policy.max_length.is_some() || policy.max_length_bytes.is_some();
    let within = |count: u64, bytes: u64| {
        policy.max_length.is_none_or(|max| count <= max)
            && policy.max_length_bytes.is_none_or(|max| bytes <= max)
    };
    let (mut refused, mut failed) = (Vec::new(), Vec::new());
    let mut overflowed = Vec::new();
    if limited && policy.overflow.rejects_publish() {
        let dead_letters = policy.overflow == Overflow::RejectPublishDlx;
        let depth = queues.depth(queue).await.unwrap_or_default();
        let (mut count, mut bytes) = (depth.ready, depth.ready_bytes);
        records.retain(|(index, record)| {
            let fits = within(count + 1, bytes + body_len(record));
            if fits {
                count += 1;
                bytes += body_len(record);
            } else {
                refused.push(*index);
                if dead_letters {
                    overflowed.push(record.clone());
                }
            }
            fits
        });
    }
    // Batches stay under the engine's batch limit: cut at STAGE_MAX_BYTES of payload.
    let (mut chunk, mut chunk_indexes) = (Vec::new(), Vec::new());
    let mut chunk_bytes = 0;
    let mut records = records.into_iter().peekable();
    while let Some((index, record)) = records.next() {
        chunk_bytes += record_len(&record);
        chunk.push(record);
        chunk_indexes.push(index);
        let full = records
            .peek()
            .is_none_or(|(_, next)| chunk_bytes + record_len(next) > STAGE_MAX_BYTES);
        if !full {
            continue;
        }
        let batch = build_batch(&chunk);
        if let Err(error) = store_batch(shared, queue, &policy, batch).await {
            tracing::warn!(queue, %error, "enqueue failed");
            failed.append(&mut chunk_indexes);
        } else {
            expiry::arm_for(shared, queue, &chunk);
        }
        chunk.clear();
        chunk_indexes.clear();
        chunk_bytes = 0;
    }
    if !overflowed.is_empty()
        && let Err(error) = Box::pin(dead_letter_refused(shared, queue, &overflowed)).await
    {
        tracing::warn!(queue, %error, "dead-lettering refused messages failed");
    }
    if limited && policy.kind != QueueKind::Stream && policy.overflow == Overflow::DropHead {
        Box::pin(drop_over_limits(shared, queue, &policy)).await;
    }
    StoreOutcome { refused, failed }
}

/// Drops (or dead-letters) head messages until the queue is within its length limits.
async fn drop_over_limits(shared: &Arc<Shared>, queue: &str, policy: &QueuePolicy) {
    loop {
        let depth = shared.engine.queues.depth(queue).await.unwrap_or_default();
        // Over the count: drop the excess at once; over the bytes only: one at a time.
        let excess = policy
            .max_length
            .map_or(0, |max| depth.ready.saturating_sub(max));
        let over_bytes = policy
            .max_length_bytes
            .is_some_and(|max| depth.ready_bytes > max);
        let count = match (excess, over_bytes) {
            (0, false) => return,
            (0, true) => 1,
            (excess, _) => excess,
        };
        match drop_head(shared, queue, count as usize).await {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(queue, %error, "dropping over-length messages failed; they stay in the queue, over its limit, until the next publish drops them");
                return;
            }
        }
    }
}

/// Drops (or dead-letters) up to `count` messages at the head; returns how many.
async fn drop_head(
    shared: &Arc<Shared>,
    queue: &str,
    count: usize,
) -> tributary_api::EngineResult<usize> {
    let taken = shared.engine.queues.take(queue, count).await?;
    let dropped: Vec<_> = taken.into_iter().map(|d| (d.id, Some(d.record))).collect();
    dead_letter(shared, queue, &dropped, REASON_MAXLEN).await?;
    Ok(dropped.len())
}
