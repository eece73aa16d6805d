//! Transactional messages: storing half messages (for [`super::send`]), END_TRANSACTION, and the
//! background checker that sends CHECK_TRANSACTION_STATE (state and schedule in
//! [`crate::transactions`]).
//!
//! - A send whose `TRAN_MSG` property is true (or whose sysFlag says PREPARED) is a half message:
//!   it is appended to queue 0 of [`HALF_TOPIC`] with `REAL_TOPIC` / `REAL_QID` naming its real
//!   queue and the transaction bits of its sysFlag cleared, as RocketMQ stores halves. Consumers
//!   of the real topic do not see it.
//! - END_TRANSACTION names the half by `commitLogOffset` (the physical offset inside the offset
//!   message id the send returned). Commit (8) appends the message to its real queue with
//!   sysFlag COMMIT, without `TRAN_MSG`, `REAL_TOPIC` and `REAL_QID`, with
//!   `TRANSACTION_CHECK_TIMES` when it was checked, and with `PGROUP` and `UNIQ_KEY` kept (what
//!   RocketMQ's broker leaves); rollback (12) discards the half; unknown (0) leaves it pending.
//!   An unknown or already resolved half is answered SYSTEM_ERROR, as RocketMQ does; the request
//!   is usually one-way, so mostly nobody reads that answer.
//! - Due checks go to one connection of the half's producer group, one-way, with the half as a
//!   stored-format body under its real topic and queue. The producer answers with
//!   END_TRANSACTION `fromTransactionCheck=true`.
//!
//! Delivery is at least once: a commit is appended before its pending record is deleted, so a
//! crash between the two leaves the half pending and a later check may commit it again.

use std::sync::Arc;
use std::time::Duration;

use bytes::BytesMut;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use tributary_api::TopicPartition;
use tributary_api::batch::build_batch;

use super::send::{queue_partition, set_real_destination};
use super::send_back::PROPERTY_UNIQ_KEY;
use super::{
    Placement, StoredRecord, encode_placed, ensure_topic, parsed, physical, read_record, required,
};
use crate::codec::RemotingCommand;
use crate::codec::message::offset_message_id;
use crate::connection::Connection;
use crate::delay::{PROPERTY_REAL_QUEUE_ID, PROPERTY_REAL_TOPIC};
use crate::error::{RequestError, RequestResult, code};
use crate::records::{IncomingMessage, OutgoingMessage};
use crate::topic_ids::split_physical_offset;
use crate::transactions::{DueHalf, HALF_TOPIC, PROPERTY_CHECK_IMMUNITY_SECONDS, Pending};
use crate::{Shared, metrics, peers};

const PROPERTY_TRANSACTION_PREPARED: &str = "TRAN_MSG";
const PROPERTY_PRODUCER_GROUP: &str = "PGROUP";
const PROPERTY_CHECK_TIMES: &str = "TRANSACTION_CHECK_TIMES";
/// `MessageSysFlag` transaction type bits and values.
const TRANSACTION_TYPE_MASK: i32 = 0xC;
const TRANSACTION_NOT_TYPE: i32 = 0;
const TRANSACTION_PREPARED: i32 = 0x4;
const TRANSACTION_COMMIT: i32 = 0x8;
const TRANSACTION_ROLLBACK: i32 = 0xC;
/// The checker's longest sleep, so halves added meanwhile are checked at most this late.
const MAX_CHECK_SLEEP_MS: i64 = 1_000;

/// Whether a sent message is a transactional half message.
pub(super) fn is_half(message: &IncomingMessage) -> bool {
    message.sys_flag & TRANSACTION_TYPE_MASK == TRANSACTION_PREPARED
        || message
            .property(PROPERTY_TRANSACTION_PREPARED)
            .is_some_and(|value| value.trim().eq_ignore_ascii_case("true"))
}

fn half_queue() -> TopicPartition {
    TopicPartition::new(HALF_TOPIC, 0)
}

/// Stores a half message bound for `target`; returns the half queue and the half's offset.
pub(super) async fn store_half(
    shared: &Shared,
    mut message: IncomingMessage,
    header_group: Option<&str>,
    target: &TopicPartition,
    now: i64,
) -> RequestResult<(TopicPartition, i64)> {
    let group = message
        .property(PROPERTY_PRODUCER_GROUP)
        .or(header_group)
        .filter(|group| !group.is_empty())
        .ok_or_else(|| {
            RequestError::Illegal("a transactional message names no producer group".to_owned())
        })?
        .to_owned();
    ensure_topic(shared, HALF_TOPIC, Some(1)).await?;
    set_real_destination(&mut message, target);
    message.sys_flag &= !TRANSACTION_TYPE_MASK;
    let half = half_queue();
    let outcome = shared
        .engine
        .log
        .append(&half, build_batch(&[message.to_record(now)]))
        .await?;
    let next_check_ms = shared
        .settings
        .transactions
        .first_check_ms(now, message.property(PROPERTY_CHECK_IMMUNITY_SECONDS));
    let pending = Pending {
        group,
        checks: 0,
        next_check_ms,
    };
    shared
        .transactions
        .add(
            shared.engine.metadata.as_ref(),
            outcome.base_offset,
            pending,
        )
        .await?;
    Ok((half, outcome.base_offset))
}

pub(super) async fn end_transaction(
    shared: &Shared,
    connection: &Connection,
    request: &RemotingCommand,
) -> RequestResult<RemotingCommand> {
    let group = required(request, "producerGroup")?;
    let physical_offset: i64 = parsed(request, "commitLogOffset")?;
    let state: i32 = parsed(request, "commitOrRollback")?;
    let from_check = request.field("fromTransactionCheck") == Some("true");
    let commit = match state {
        TRANSACTION_COMMIT => true,
        TRANSACTION_ROLLBACK => false,
        TRANSACTION_NOT_TYPE => {
            debug!(
                group,
                physical_offset, from_check, "transaction state unknown; the half stays pending"
            );
            return Ok(RemotingCommand::response_to(request, code::SUCCESS));
        }
        _ => {
            return Err(RequestError::BadField {
                field: "commitOrRollback",
                value: state.to_string(),
            });
        }
    };
    let store = shared.engine.metadata.as_ref();
    let claimed = match half_offset(shared, physical_offset).await? {
        Some(offset) => shared
            .transactions
            .claim(store, offset)
            .await?
            .map(|pending| (offset, pending)),
        None => None,
    };
    let Some((offset, pending)) = claimed else {
        debug!(
            group,
            physical_offset, from_check, "END_TRANSACTION for no pending half message"
        );
        return Ok(RemotingCommand::response_to(request, code::SYSTEM_ERROR)
            .with_remark("Find prepared transaction message failed"));
    };
    if pending.group != group {
        shared.transactions.release(offset).await;
        warn!(
            group,
            owner = pending.group,
            offset,
            "END_TRANSACTION from another producer group; ignored"
        );
        return Ok(RemotingCommand::response_to(request, code::SYSTEM_ERROR)
            .with_remark("The producer group wrong"));
    }
    let resolved = async {
        if commit {
            commit_half(shared, connection, offset, &pending).await?;
        }
        shared.transactions.finish(store, offset).await
    }
    .await;
    if let Err(err) = resolved {
        shared.transactions.release(offset).await;
        return Err(err);
    }
    let outcome = if commit { "commit" } else { "rollback" };
    ::metrics::counter!(metrics::TRANSACTIONS_RESOLVED, "outcome" => outcome).increment(1);
    debug!(group, offset, from_check, outcome, "transaction resolved");
    Ok(RemotingCommand::response_to(request, code::SUCCESS))
}

/// The half-queue offset a physical offset names, if it names one.
async fn half_offset(shared: &Shared, physical_offset: i64) -> RequestResult<Option<i64>> {
    let (topic_id, queue, offset) = split_physical_offset(physical_offset);
    let topic = shared
        .topic_ids
        .name(shared.engine.metadata.as_ref(), topic_id)
        .await?;
    Ok((topic.as_deref() == Some(HALF_TOPIC) && queue == 0).then_some(offset))
}

/// The real topic and queue id a half message is bound for.
fn real_destination(message: &OutgoingMessage) -> RequestResult<(String, i64)> {
    let topic = message
        .property(PROPERTY_REAL_TOPIC)
        .ok_or_else(|| RequestError::Illegal("a half message without REAL_TOPIC".to_owned()))?;
    let queue = message
        .property(PROPERTY_REAL_QUEUE_ID)
        .and_then(|id| id.parse().ok())
        .unwrap_or(0);
    Ok((topic.to_owned(), queue))
}

/// The half at `offset`; `None` only when retention removed it (below the log start). A half
/// that is not readable here yet (another broker stored it and this broker has not learnt of
/// that commit) fails the commit, leaving the transaction pending for a check-back, rather than
/// resolving it without its message.
async fn read_half(shared: &Shared, offset: i64) -> RequestResult<Option<StoredRecord>> {
    let half = half_queue();
    if let Some(stored) = read_record(shared, &half, offset).await? {
        return Ok(Some(stored));
    }
    if offset < shared.engine.log.offsets(&half)?.log_start {
        return Ok(None);
    }
    Err(RequestError::MessageNotFound(offset))
}

/// Appends the half at `offset` to its real queue.
async fn commit_half(
    shared: &Shared,
    connection: &Connection,
    offset: i64,
    pending: &Pending,
) -> RequestResult<()> {
    let Some(stored) = read_half(shared, offset).await? else {
        warn!(
            offset,
            "a pending half message is no longer in the log (retention); nothing to commit"
        );
        return Ok(());
    };
    let half = OutgoingMessage::from_record(&stored.record);
    let (topic, queue_id) = real_destination(&half)?;
    let mut properties = half.properties;
    properties.retain(|(name, _)| {
        ![
            PROPERTY_REAL_TOPIC,
            PROPERTY_REAL_QUEUE_ID,
            PROPERTY_TRANSACTION_PREPARED,
            PROPERTY_CHECK_TIMES,
        ]
        .contains(&name.as_str())
    });
    if pending.checks > 0 {
        properties.push((PROPERTY_CHECK_TIMES.to_owned(), pending.checks.to_string()));
    }
    let committed = IncomingMessage {
        body: half.body,
        flag: half.meta.flag,
        sys_flag: (half.meta.sys_flag & !TRANSACTION_TYPE_MASK) | TRANSACTION_COMMIT,
        born_timestamp: half.meta.born_timestamp,
        born_host: half.meta.born_host.unwrap_or(connection.peer),
        reconsume_times: half.meta.reconsume_times,
        properties,
    };
    let description = ensure_topic(shared, &topic, None).await?;
    let target = TopicPartition::new(topic.as_str(), queue_partition(&description, queue_id));
    let now = shared.engine.scheduler.now_ms();
    shared
        .engine
        .log
        .append(
            &target,
            build_batch(&[committed.to_record_at_store_time(now)]),
        )
        .await?;
    ::metrics::counter!(metrics::MESSAGES_IN, "topic" => topic.clone()).increment(1);
    shared.stats.sent(&topic, 1);
    Ok(())
}

/// Sends due transaction checks until `shutdown`.
pub(crate) async fn check_transactions(shared: Arc<Shared>, shutdown: CancellationToken) {
    loop {
        let now = shared.engine.scheduler.now_ms();
        let sleep_ms = match check_due(&shared, now).await {
            Ok(next) => next.map_or(MAX_CHECK_SLEEP_MS, |due| {
                (due - now).clamp(10, MAX_CHECK_SLEEP_MS)
            }),
            Err(err) => {
                warn!(error = %err, "transaction check round failed; retrying");
                MAX_CHECK_SLEEP_MS
            }
        };
        tokio::select! {
            () = tokio::time::sleep(Duration::from_millis(sleep_ms as u64)) => {}
            () = shutdown.cancelled() => return,
        }
    }
}

/// Handles the halves due at `now`; returns when the next check is due.
async fn check_due(shared: &Shared, now: i64) -> RequestResult<Option<i64>> {
    let store = shared.engine.metadata.as_ref();
    let timing = shared.settings.transactions;
    for due in shared.transactions.take_due(store, now, timing).await? {
        match due {
            DueHalf::Discarded { offset, pending } => {
                // Counted before the log line, so whoever sees the line sees the count.
                ::metrics::counter!(metrics::TRANSACTIONS_RESOLVED, "outcome" => "discard")
                    .increment(1);
                warn!(
                    offset,
                    group = pending.group,
                    checks = pending.checks,
                    "discarding a half message: its transaction was not resolved within the maximum number of checks"
                );
            }
            DueHalf::Check { offset, pending } => {
                if let Err(err) = send_check(shared, offset, &pending).await {
                    warn!(offset, group = pending.group, error = %err, "transaction check not sent");
                }
            }
        }
    }
    shared.transactions.next_due(store).await
}

/// Asks a producer of the half's group for the state of the transaction at `offset`.
async fn send_check(shared: &Shared, offset: i64, pending: &Pending) -> RequestResult<()> {
    let Some(channel) = shared.clients.producer(&pending.group) else {
        debug!(
            offset,
            group = pending.group,
            "no producer of the group is connected; check skipped"
        );
        return Ok(());
    };
    let half = half_queue();
    let Some(stored) = read_record(shared, &half, offset).await? else {
        warn!(
            offset,
            "a pending half message is no longer in the log (retention)"
        );
        return Ok(());
    };
    let mut message = OutgoingMessage::from_record(&stored.record);
    message
        .properties
        .retain(|(name, _)| name != PROPERTY_CHECK_TIMES);
    message
        .properties
        .push((PROPERTY_CHECK_TIMES.to_owned(), pending.checks.to_string()));
    let (topic, queue_id) = real_destination(&message)?;
    let physical_offset = physical(shared, &half, offset).await?;
    let mut body = BytesMut::new();
    let place = Placement {
        topic: &topic,
        queue_id: i32::try_from(queue_id).unwrap_or(0),
        queue_offset: offset,
        physical_offset,
    };
    encode_placed(&place, &message, channel.local, &mut body)?;
    let unique_id = message.property(PROPERTY_UNIQ_KEY).unwrap_or_default();
    let sent = shared.peers.send_oneway(
        channel.connection,
        channel.serialize_type,
        |command| {
            command
                .with_field("topic", &topic)
                .with_field("tranStateTableOffset", offset)
                .with_field("commitLogOffset", physical_offset)
                .with_field("msgId", unique_id)
                .with_field("transactionId", unique_id)
                .with_field(
                    "offsetMsgId",
                    offset_message_id(&channel.local, physical_offset),
                )
                .with_field("bname", &shared.settings.broker_name)
                .with_body(body.freeze())
        },
        peers::CHECK_TRANSACTION_STATE,
    );
    if sent {
        ::metrics::counter!(metrics::TRANSACTION_CHECKS).increment(1);
        debug!(
            offset,
            group = pending.group,
            checks = pending.checks,
            "transaction check sent"
        );
    }
    Ok(())
}
