//! Consumer offsets (QUERY_CONSUMER_OFFSET, UPDATE_CONSUMER_OFFSET) in the shared offset store,
//! and queue bounds (GET_MAX_OFFSET, GET_MIN_OFFSET, SEARCH_OFFSET_BY_TIMESTAMP).
//!
//! A group with no stored offset on a queue that still starts at 0 gets offset 0 (unless the
//! client sent `setZeroIfNotFound=false`), so "send, then start a consumer" delivers the message
//! as RocketMQ users expect; otherwise QUERY_NOT_FOUND lets the client apply its
//! ConsumeFromWhere. Each commit also sets `rocketmq_group_diff` for the queue.

use tributary_api::{CommittedOffset, EngineError, OffsetQuery, TopicPartition};

use super::{optional, parsed, queue_id, required};
use crate::Shared;
use crate::codec::RemotingCommand;
use crate::error::{RequestResult, code};

fn partition(request: &RemotingCommand) -> RequestResult<TopicPartition> {
    Ok(TopicPartition::new(
        required(request, "topic")?,
        queue_id(request, "queueId")?,
    ))
}

fn offset_response(request: &RemotingCommand, offset: i64) -> RemotingCommand {
    RemotingCommand::response_to(request, code::SUCCESS).with_field("offset", offset)
}

pub(super) async fn query_consumer_offset(
    shared: &Shared,
    request: &RemotingCommand,
) -> RequestResult<RemotingCommand> {
    let group = required(request, "consumerGroup")?;
    let partition = partition(request)?;
    if let Some(offset) = shared.pull_commits.pending(group, &partition) {
        return Ok(offset_response(request, offset));
    }
    if let Some(committed) = shared.engine.offsets.fetch(group, &partition).await? {
        return Ok(offset_response(request, committed.offset));
    }
    let zero_allowed = optional::<bool>(request, "setZeroIfNotFound")?.unwrap_or(true);
    let starts_at_zero = match shared.engine.log.offsets(&partition) {
        Ok(bounds) => bounds.log_start == 0,
        Err(EngineError::UnknownTopic(_) | EngineError::UnknownPartition { .. }) => false,
        Err(err) => return Err(err.into()),
    };
    if zero_allowed && starts_at_zero {
        Ok(offset_response(request, 0))
    } else {
        Ok(RemotingCommand::response_to(request, code::QUERY_NOT_FOUND)
            .with_remark("Not found, V3_0_6_SNAPSHOT maybe this group consumer boot first"))
    }
}

pub(super) async fn update_consumer_offset(
    shared: &Shared,
    request: &RemotingCommand,
) -> RequestResult<RemotingCommand> {
    let group = required(request, "consumerGroup")?;
    let partition = partition(request)?;
    let offset: i64 = parsed(request, "commitOffset")?;
    if offset >= 0 && !commit(shared, group, &partition, offset).await? {
        tracing::info!(
            group,
            topic = partition.topic,
            queue = partition.partition,
            offset,
            "consumer offset not stored: the queue's offset was reset and the group has not \
             pulled from the reset offset yet"
        );
        return Ok(RemotingCommand::response_to(request, code::SUCCESS)
            .with_remark("Offset has been previously reset"));
    }
    Ok(RemotingCommand::response_to(request, code::SUCCESS))
}

/// Stores a group's offset now (superseding a pending pull commit of the queue); the lag
/// gauges follow at the next stats upkeep. False, storing nothing, while a reset of the queue
/// is pending ([`crate::pull_commits`]).
pub(super) async fn commit(
    shared: &Shared,
    group: &str,
    partition: &TopicPartition,
    offset: i64,
) -> RequestResult<bool> {
    let _storing = shared.pull_commits.storing.lock().await;
    if shared
        .pull_commits
        .pending_reset(group, partition)
        .is_some()
    {
        return Ok(false);
    }
    shared.pull_commits.forget(group, partition);
    commit_offsets(shared, group, &[(partition.clone(), offset)]).await?;
    shared.stats.committed(group, partition, offset);
    Ok(true)
}

/// Stores several offsets of one group in one offset-store transaction (the caller keeps the
/// lag stats: a pull records them when it commits, before the background store).
pub(crate) async fn commit_offsets(
    shared: &Shared,
    group: &str,
    offsets: &[(TopicPartition, i64)],
) -> RequestResult<()> {
    let commit_time = shared.engine.scheduler.now_ms();
    let committed = offsets
        .iter()
        .map(|(partition, offset)| {
            let committed = CommittedOffset {
                offset: *offset,
                metadata: String::new(),
                commit_time,
            };
            (partition.clone(), committed)
        })
        .collect();
    shared.engine.offsets.commit(group, committed).await?;
    Ok(())
}

pub(super) fn max_offset(
    shared: &Shared,
    request: &RemotingCommand,
) -> RequestResult<RemotingCommand> {
    let bounds = shared.engine.log.offsets(&partition(request)?)?;
    Ok(offset_response(request, bounds.high_watermark))
}

pub(super) fn min_offset(
    shared: &Shared,
    request: &RemotingCommand,
) -> RequestResult<RemotingCommand> {
    let bounds = shared.engine.log.offsets(&partition(request)?)?;
    Ok(offset_response(request, bounds.log_start))
}

/// The first offset whose record timestamp is at or after `timestamp`: for RocketMQ producers
/// the born time (delayed and transactional messages: the time they were stored), for other
/// protocols their record timestamp (docs/interop.md); RocketMQ itself searches store times.
pub(super) async fn search_by_timestamp(
    shared: &Shared,
    request: &RemotingCommand,
) -> RequestResult<RemotingCommand> {
    let partition = partition(request)?;
    let timestamp: i64 = parsed(request, "timestamp")?;
    let found = shared
        .engine
        .log
        .find_offset(&partition, OffsetQuery::AtOrAfter(timestamp))
        .await?;
    let offset = match found {
        Some(found) => found.offset,
        None => shared.engine.log.offsets(&partition)?.high_watermark,
    };
    Ok(offset_response(request, offset))
}
