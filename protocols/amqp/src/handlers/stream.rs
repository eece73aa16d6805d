//! Stream queues over AMQP 0-9-1, as RabbitMQ 3.10 serves them: publishing appends to the
//! stream's topic ([`crate::topology`] `streams`); a consumer reads the topic from the
//! position its `x-stream-offset` argument names and gets each message with an
//! `x-stream-offset` header (its offset). Consumers need a prefetch and manual acks; an ack
//! only returns credit (nothing is deleted), and the broker keeps no consumer offsets
//! (clients track them, as with RabbitMQ over 0-9-1).
//!
//! `x-stream-offset`: `first`, `last` (the start of the last stored batch), `next` (the
//! default), an integer offset (clamped to the log), an AMQP timestamp (seconds) or an
//! interval string (`"1h"`, `"30m"`, `"7D"`: now minus that).
//!
//! Compressed batches (Kafka producers') are inflated once and kept a while in the frontend's
//! [`InflatedBatches`] (a read takes a consumer's credit of a batch that may hold a thousand
//! records). Kafka transactions (`tributary_api::transactions`): a read stops at the
//! partition's last stable offset (a consumer caught up there waits for the log to pass its
//! high watermark, which the transaction's marker does), and transaction markers and the
//! batches of aborted transactions carry no message and are passed over. Nothing else is ever
//! passed over (docs/interop.md): a batch that cannot be decoded (corrupt, over the inflate limit,
//! unknown codec) stops the read before it. Records taken before it are delivered; the next
//! read then starts at it and returns it as [`Undeliverable`], and the consumer closes its
//! channel with 541 INTERNAL_ERROR and a text naming the stream, the offset and the reason
//! (logged and counted in `tributary_interop_undeliverable_batches_total{protocol="amqp"}`).
//! The consumer's position never passes the batch: a client consuming again from the same
//! offset gets the same error.

use std::sync::Arc;

use bytes::Bytes;
use tributary_api::batch::{BatchError, BatchHeader};
use tributary_api::compression::InflatedBatches;
use tributary_api::queue::Delivery;
use tributary_api::transactions::Committed;
use tributary_api::{EngineError, EngineResult, OffsetQuery, TopicPartition};

use crate::Shared;
use crate::codec::table::FieldValue;
use crate::error::{AmqpError, INTERNAL_ERROR, NOT_IMPLEMENTED, PRECONDITION_FAILED, Reply};
use crate::message::{now_ms, with_header};
use crate::policy::{QueueKind, QueuePolicy, parse_interval};

/// Bytes of the first log read of a consumer round; each further read of the same round takes
/// four times more, up to [`MAX_READ_BYTES`]. A round takes a consumer's credit (tens of
/// messages), and compressed batches hold a thousand records in a few KiB: reading a fixed
/// 256 KiB copied up to two hundred times what the round delivered.
const FIRST_READ_BYTES: usize = 16 * 1024;
/// The most one log read of a consumer round takes.
const MAX_READ_BYTES: usize = 256 * 1024;

/// Stores a batch in a queue: the engine queue, or a stream's topic.
pub(crate) async fn store_batch(
    shared: &Arc<Shared>,
    queue: &str,
    policy: &QueuePolicy,
    batch: Bytes,
) -> EngineResult<()> {
    if policy.kind == QueueKind::Stream {
        shared
            .engine
            .log
            .append(&shared.topology.stream_partition(queue)?, batch)
            .await?;
    } else {
        shared.engine.queues.enqueue(queue, batch).await?;
    }
    Ok(())
}

/// RabbitMQ's name for a queue in error texts.
fn described(queue: &str) -> String {
    format!("queue '{queue}' in vhost '/'")
}

/// The refusals RabbitMQ gives a stream consumer without manual acks or prefetch.
pub(crate) fn check_consumer(queue: &str, no_ack: bool, prefetch: u16) -> Result<(), AmqpError> {
    if no_ack {
        return Err(AmqpError::connection(
            NOT_IMPLEMENTED,
            format_args!(
                "automatic acknowledgement not supported by stream queues {}",
                described(queue)
            ),
        ));
    }
    if prefetch == 0 {
        return Err(AmqpError::channel(
            PRECONDITION_FAILED,
            format_args!(
                "consumer prefetch count is not set for '{}'",
                described(queue)
            ),
        ));
    }
    Ok(())
}

pub(crate) fn basic_get_refused(queue: &str) -> AmqpError {
    AmqpError::connection(
        NOT_IMPLEMENTED,
        format_args!(
            "basic.get not supported by stream queues {}",
            described(queue)
        ),
    )
}

pub(crate) fn nack_refused(queue: &str) -> AmqpError {
    AmqpError::connection(
        NOT_IMPLEMENTED,
        format_args!(
            "basic.nack and basic.reject not supported by stream queues {}",
            described(queue)
        ),
    )
}

/// The offset a consumer starts at.
pub(crate) async fn start_offset(
    shared: &Arc<Shared>,
    queue: &str,
    spec: Option<&FieldValue>,
) -> Result<i64, AmqpError> {
    let log = &shared.engine.log;
    let partition = shared.topology.stream_partition(queue)?;
    let bounds = log.offsets(&partition)?;
    let at_time = |ms: i64| async move {
        let found = log
            .find_offset(&partition, OffsetQuery::AtOrAfter(ms))
            .await?;
        Ok::<i64, AmqpError>(found.map_or(bounds.high_watermark, |f| f.offset))
    };
    let bad = |why: &str| {
        AmqpError::channel(
            PRECONDITION_FAILED,
            format_args!("invalid x-stream-offset for {}: {why}", described(queue)),
        )
    };
    let Some(spec) = spec else {
        return Ok(bounds.high_watermark);
    };
    if let Some(offset) = spec.as_i64() {
        return Ok(offset.clamp(bounds.log_start, bounds.high_watermark));
    }
    match spec {
        FieldValue::Timestamp(seconds) => {
            let ms = i64::try_from(*seconds)
                .unwrap_or(i64::MAX)
                .saturating_mul(1000);
            at_time(ms).await
        }
        FieldValue::LongString(_) => match spec.as_str().unwrap_or_default() {
            "first" => Ok(bounds.log_start),
            "next" => Ok(bounds.high_watermark),
            "last" => {
                last_batch_start(shared, queue, bounds.log_start, bounds.high_watermark).await
            }
            interval => {
                let ms = parse_interval(interval).ok_or_else(|| bad("invalid interval"))?;
                at_time(now_ms().saturating_sub(i64::try_from(ms).unwrap_or(i64::MAX))).await
            }
        },
        other => Err(bad(other.type_name())),
    }
}

/// The first offset of the last stored batch (RabbitMQ's "last chunk").
async fn last_batch_start(
    shared: &Arc<Shared>,
    queue: &str,
    log_start: i64,
    high_watermark: i64,
) -> Result<i64, AmqpError> {
    if high_watermark <= log_start {
        return Ok(high_watermark);
    }
    let read = shared
        .engine
        .log
        .read(
            &shared.topology.stream_partition(queue)?,
            high_watermark - 1,
            1,
        )
        .await?;
    Ok(BatchHeader::parse(&read.data).map_or(high_watermark - 1, |h| h.base_offset))
}

/// A stored batch a stream consumer cannot be given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Undeliverable {
    /// Where the batch starts (or the consumer's position, when that is inside it).
    pub offset: i64,
    pub error: BatchError,
}

impl Undeliverable {
    /// The channel close a consumer of `queue` sends for it; logs and counts the refusal.
    pub(crate) fn refuse(&self, queue: &str) -> Reply {
        tracing::warn!(queue, offset = self.offset, error = %self.error, "closing a stream consumer's channel: a stored batch cannot be decoded; the position stays before it");
        tributary_api::interop::count_undeliverable("amqp", self.error.reason());
        Reply::new(
            INTERNAL_ERROR,
            format_args!(
                "cannot deliver stream {} at offset {}: {}",
                described(queue),
                self.offset,
                self.error
            ),
        )
    }
}

/// What one read of a stream took.
#[derive(Debug, Default)]
pub(crate) struct Taken {
    pub deliveries: Vec<Delivery>,
    /// The batch the read stopped at because it cannot be decoded.
    pub undeliverable: Option<Undeliverable>,
    /// Where a consumer that got nothing waits for the log to pass
    /// ([`tributary_api::transactions::Committed::wait_from`]).
    pub wait_from: i64,
}

/// Reads up to `max` messages from `*next` on and moves `*next` past them (see the module doc
/// for a batch that cannot be decoded). A deleted topic is reported as `UnknownQueue`, so the
/// consumer is cancelled like one of a deleted queue.
pub(crate) async fn read(
    shared: &Arc<Shared>,
    queue: &str,
    next: &mut i64,
    max: usize,
) -> EngineResult<Taken> {
    let partition = shared.topology.stream_partition(queue)?;
    let gone = |error: EngineError| match error {
        EngineError::UnknownTopic(_) | EngineError::UnknownPartition { .. } => {
            EngineError::UnknownQueue(queue.to_owned())
        }
        other => other,
    };
    let bounds = shared.engine.log.offsets(&partition).map_err(gone)?;
    // Retention may have removed what the consumer has not read yet.
    *next = (*next).max(bounds.log_start);
    // Open Kafka transactions hold the readable end below the high watermark.
    let committed = shared
        .engine
        .committed(&partition, *next)
        .await
        .map_err(gone)?;
    let mut taken = Taken::default();
    let mut read_bytes = FIRST_READ_BYTES;
    while *next < committed.end && taken.deliveries.len() < max && taken.undeliverable.is_none() {
        let data = shared
            .engine
            .log
            .read(&partition, *next, read_bytes)
            .await
            .map_err(gone)?
            .data;
        let at = *next;
        let more = take_records(
            &shared.inflated,
            &partition,
            &committed,
            &committed.cut(&data),
            next,
            max - taken.deliveries.len(),
        );
        taken.deliveries.extend(more.deliveries);
        taken.undeliverable = more.undeliverable;
        if *next == at {
            break; // Nothing to move past (an empty read or an undeliverable batch first).
        }
        read_bytes = (read_bytes * 4).min(MAX_READ_BYTES);
    }
    taken.wait_from = committed.wait_from(*next);
    Ok(taken)
}

/// Takes up to `max` records at or after `*next` from the batches in `data`, moving `*next`
/// past each record taken and past the batches `committed` skips (transaction markers,
/// aborted transactions); stops at a batch that cannot be decoded.
pub(crate) fn take_records(
    inflated: &InflatedBatches,
    partition: &TopicPartition,
    committed: &Committed,
    data: &Bytes,
    next: &mut i64,
    max: usize,
) -> Taken {
    let mut taken = Taken::default();
    let mut pos = 0usize;
    while pos < data.len() && taken.deliveries.len() < max {
        let header = match BatchHeader::parse(&data[pos..]) {
            Ok(header) => header,
            Err(error) => {
                taken.undeliverable = Some(Undeliverable {
                    offset: *next,
                    error,
                });
                break;
            }
        };
        let end = pos.saturating_add(header.total_len).min(data.len());
        let batch = data.slice(pos..end);
        pos = end;
        if committed.skips(&header) {
            *next = (*next).max(header.last_offset() + 1);
            continue;
        }
        // Only what the consumer's credit takes now: a batch of a thousand records read a
        // hundred at a time is not decoded whole ten times.
        let wanted = max - taken.deliveries.len();
        let records = match inflated.decode_from(partition, &batch, *next, wanted) {
            Ok(records) => records,
            Err(error) => {
                taken.undeliverable = Some(Undeliverable {
                    offset: header.base_offset.max(*next),
                    error,
                });
                break;
            }
        };
        // `decode_from` gives at most `wanted` records, all at or after `*next`.
        for stored in records {
            *next = stored.offset + 1;
            taken.deliveries.push(Delivery {
                id: u64::try_from(stored.offset).unwrap_or(0),
                record: stored.record,
                redelivered: false,
                returns: 0,
            });
        }
        if taken.deliveries.len() < max {
            *next = (*next).max(header.last_offset() + 1);
        }
    }
    taken
}

/// The properties a delivery carries: a stream adds `x-stream-offset`, a quorum queue
/// `x-delivery-count` on redeliveries; otherwise the stored bytes as they are.
pub(crate) fn delivered_properties(kind: QueueKind, delivery: &Delivery, raw: &Bytes) -> Bytes {
    match kind {
        QueueKind::Stream => {
            let offset = i64::try_from(delivery.id).unwrap_or(i64::MAX);
            with_header(raw, "x-stream-offset", FieldValue::I64(offset))
        }
        QueueKind::Quorum if delivery.returns > 0 => with_header(
            raw,
            "x-delivery-count",
            FieldValue::I64(i64::from(delivery.returns)),
        ),
        _ => raw.clone(),
    }
}

#[cfg(test)]
#[path = "stream_tests.rs"]
mod tests;
