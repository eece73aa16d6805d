//! Expiry and dead-lettering.
//!
//! A message published with a TTL (the queue's `x-message-ttl` or the `expiration` property,
//! the smaller wins) carries its expiry time in the record header `amqp.expires` (i64 ms,
//! big-endian). [`take_live`] drops expired messages as they reach the head, and
//! [`crate::expiry`] drops them when they fall due there with nobody consuming.
//!
//! A message rejected without requeue, expired, dropped by `x-max-length` or refused by it
//! under `x-overflow=reject-publish-dlx` goes to the queue's
//! `x-dead-letter-exchange` (when set) with the routing key `x-dead-letter-routing-key` or its
//! own. Its properties are rewritten as RabbitMQ does: the `x-death` header (array of tables
//! `count`, `reason`, `queue`, `time`, `exchange`, `routing-keys`, `original-expiration`), the
//! newest cause first, a repeated (queue, reason) counted rather than repeated;
//! `x-first-death-{exchange,queue,reason}` set once; `expiration` removed. Key order follows
//! RabbitMQ 3.10 exactly (clients print and compare it): a first death in the order above, a
//! later entry sorted by key, the headers table sorted by key. A dead-lettered message gets the
//! target queue's `x-message-ttl` and priority like any other. A quorum queue's message
//! requeued more often than its `x-delivery-limit` is dead-lettered (reason `delivery_limit`)
//! when it next reaches the head.

use std::sync::Arc;

use bytes::Bytes;
use tributary_api::EngineResult;
use tributary_api::batch::{Record, build_batch};
use tributary_api::queue::{Delivery, PRIORITY_HEADER};

use crate::Shared;
use crate::codec::content::BasicProperties;
use crate::codec::table::{FieldTable, FieldValue};
use crate::message::{
    HEADER_EXCHANGE, HEADER_PROPERTIES, from_record_lenient, key_of, now_ms, set_priority,
    to_record,
};
use crate::policy::{QueueKind, QueuePolicy};

pub const HEADER_EXPIRES: &[u8] = b"amqp.expires";
pub const REASON_REJECTED: &str = "rejected";
pub const REASON_EXPIRED: &str = "expired";
pub const REASON_MAXLEN: &str = "maxlen";
pub const REASON_DELIVERY_LIMIT: &str = "delivery_limit";

/// The record's expiry time, if it has one.
pub fn expires_at(record: &Record) -> Option<i64> {
    let (_, value) = record
        .headers
        .iter()
        .find(|(key, _)| key.as_ref() == HEADER_EXPIRES)?;
    let bytes: [u8; 8] = value.as_ref()?.as_ref().try_into().ok()?;
    Some(i64::from_be_bytes(bytes))
}

/// The record as stored in one target queue: with the queue's TTL (or the message's, the
/// smaller) as an expiry header, and in a priority queue the clamped priority. A stream stores
/// the record as published (streams have neither). Takes the record, so a message routed to
/// one queue is stored without a copy.
pub fn record_for_queue(
    mut record: Record,
    policy: &QueuePolicy,
    expiration_ms: Option<u64>,
    priority: Option<u8>,
    now_ms: i64,
) -> Record {
    if policy.kind == QueueKind::Stream {
        return record;
    }
    if let Some(ms) = policy.message_ttl_ms.into_iter().chain(expiration_ms).min() {
        let expires_ms = now_ms.saturating_add(i64::try_from(ms).unwrap_or(i64::MAX));
        record.headers.push((
            Bytes::from_static(HEADER_EXPIRES),
            Some(Bytes::copy_from_slice(&expires_ms.to_be_bytes())),
        ));
    }
    if let Some(max) = policy.max_priority {
        set_priority(&mut record, priority.unwrap_or(0).min(max));
    }
    record
}

fn text(value: &str) -> FieldValue {
    FieldValue::LongString(Bytes::copy_from_slice(value.as_bytes()))
}

/// Orders a table by key bytes, as Erlang sorts RabbitMQ's field tables.
fn sort_by_key(table: &mut FieldTable) {
    table.0.sort_by(|a, b| a.0.cmp(&b.0));
}

/// The record as it is re-published to the dead-letter exchange, and its routing key.
pub fn dead_letter_record(
    record: &Record,
    queue: &str,
    reason: &str,
    exchange: &str,
    routing_key: Option<&str>,
    now_ms: i64,
) -> (String, Record) {
    let message = from_record_lenient(record);
    let mut props = BasicProperties::parse(&message.raw_properties).unwrap_or_default();
    let mut headers = props.headers.take().unwrap_or_default();
    let mut deaths = match headers.get("x-death") {
        Some(FieldValue::Array(entries)) => entries.clone(),
        _ => Vec::new(),
    };
    let same = |entry: &FieldValue| match entry {
        FieldValue::Table(t) => {
            t.get("queue").and_then(FieldValue::as_str) == Some(queue)
                && t.get("reason").and_then(FieldValue::as_str) == Some(reason)
        }
        _ => false,
    };
    // RabbitMQ writes a first death in this key order, but sorts an entry by key once the
    // message already has an `x-death` header (a new cause or a counted repeat, which keeps
    // its first time), and sorts the whole headers table by key whenever it dead-letters.
    let first_death = deaths.is_empty();
    let mut entry = match deaths.iter().position(same) {
        Some(index) => {
            let mut entry = match deaths.remove(index) {
                FieldValue::Table(t) => t,
                _ => FieldTable::default(),
            };
            let count = entry.get("count").and_then(FieldValue::as_i64).unwrap_or(0) + 1;
            entry.0.retain(|(k, _)| k != "count");
            entry.insert("count", FieldValue::I64(count));
            entry
        }
        None => {
            let mut entry = FieldTable::default();
            entry.insert("count", FieldValue::I64(1));
            entry.insert("reason", text(reason));
            entry.insert("queue", text(queue));
            entry.insert("time", FieldValue::Timestamp((now_ms / 1000).max(0) as u64));
            entry.insert("exchange", text(&message.exchange));
            entry.insert(
                "routing-keys",
                FieldValue::Array(vec![text(&message.routing_key)]),
            );
            if let Some(expiration) = &props.expiration {
                entry.insert("original-expiration", text(expiration));
            }
            entry
        }
    };
    if !first_death {
        sort_by_key(&mut entry);
    }
    deaths.insert(0, FieldValue::Table(entry));
    headers.0.retain(|(k, _)| k != "x-death");
    headers.insert("x-death", FieldValue::Array(deaths));
    for (name, value) in [
        ("x-first-death-exchange", &message.exchange),
        ("x-first-death-queue", &queue.to_owned()),
        ("x-first-death-reason", &reason.to_owned()),
    ] {
        if headers.get(name).is_none() {
            headers.insert(name, text(value));
        }
    }
    sort_by_key(&mut headers);
    props.headers = Some(headers);
    props.expiration = None;
    let routing_key = routing_key.map_or(message.routing_key.clone(), str::to_owned);
    if record
        .headers
        .iter()
        .any(|(k, _)| k.as_ref() == HEADER_PROPERTIES)
    {
        // Written by AMQP: every other header is derived from the properties, so the copy's
        // are derived from its new ones (Kafka and RocketMQ readers see `x-death` too).
        let body = record.value.clone().unwrap_or_default();
        let mut out = to_record(exchange, &routing_key, props.encode(), &props, body, 0);
        out.timestamp = record.timestamp;
        return (routing_key, out);
    }
    let mut out = record.clone();
    out.key = key_of(&routing_key);
    out.headers.retain(|(k, _)| {
        k.as_ref() != HEADER_EXCHANGE
            && k.as_ref() != HEADER_PROPERTIES
            && k.as_ref() != HEADER_EXPIRES
            && k.as_ref() != PRIORITY_HEADER
    });
    out.headers.push((
        Bytes::from_static(HEADER_EXCHANGE),
        Some(Bytes::copy_from_slice(exchange.as_bytes())),
    ));
    out.headers
        .push((Bytes::from_static(HEADER_PROPERTIES), Some(props.encode())));
    (routing_key, out)
}

/// Dead-letters `records` taken from `queue` (when it has a dead-letter exchange), then acks
/// them there. Messages the dead-letter exchange routes nowhere are dropped, as in RabbitMQ.
/// When re-publishing fails they go back to `queue` (requeued, so a target that did get a copy
/// may get it again) and the error is returned: taken and neither dead-lettered nor acked, they
/// would otherwise sit unacked with no consumer to return them.
pub async fn dead_letter(
    shared: &Arc<Shared>,
    queue: &str,
    deliveries: &[(u64, Option<Record>)],
    reason: &str,
) -> EngineResult<()> {
    if deliveries.is_empty() {
        return Ok(());
    }
    let records = deliveries.iter().filter_map(|(_, r)| r.as_ref());
    let ids: Vec<u64> = deliveries.iter().map(|(id, _)| *id).collect();
    if let Err(error) = republish(shared, queue, records, reason).await {
        tracing::warn!(queue, %error, reason, count = ids.len(), "dead-lettering failed; the messages stay in the queue");
        return_to_queue(shared, queue, &ids).await;
        return Err(error);
    }
    shared.engine.queues.ack(queue, &ids).await
}

/// Requeues taken messages after a failure; a failure here too is logged, and the messages then
/// return to the queue when it is next opened (unacked state is not durable).
async fn return_to_queue(shared: &Arc<Shared>, queue: &str, ids: &[u64]) {
    if let Err(error) = shared.engine.queues.requeue(queue, ids).await {
        tracing::error!(queue, %error, count = ids.len(), "requeueing taken messages failed; they return when the queue is next opened");
    }
}

/// Dead-letters messages `queue` refused to store (`x-overflow=reject-publish-dlx`), reason
/// `maxlen`: they were never in the queue, so there is nothing to ack.
pub async fn dead_letter_refused(
    shared: &Arc<Shared>,
    queue: &str,
    records: &[Record],
) -> EngineResult<()> {
    republish(shared, queue, records.iter(), REASON_MAXLEN).await
}

/// Re-publishes dead messages of `queue` to its dead-letter exchange, if it has one.
async fn republish(
    shared: &Arc<Shared>,
    queue: &str,
    records: impl Iterator<Item = &Record>,
    reason: &str,
) -> EngineResult<()> {
    let policy = shared.topology.policy(queue).unwrap_or_default();
    let Some(exchange) = policy.dead_letter_exchange.as_deref() else {
        return Ok(());
    };
    let now = now_ms();
    for record in records {
        let (routing_key, record) = dead_letter_record(
            record,
            queue,
            reason,
            exchange,
            policy.dead_letter_routing_key.as_deref(),
            now,
        );
        let props = BasicProperties::parse(&from_record_lenient(&record).raw_properties)
            .unwrap_or_default();
        let targets = shared
            .topology
            .route(exchange, &routing_key, props.headers.as_ref())
            .unwrap_or_default();
        let deaths = match props.headers.as_ref().and_then(|h| h.get("x-death")) {
            Some(FieldValue::Array(deaths)) => deaths.as_slice(),
            _ => &[],
        };
        let cycling = |target: &str| reason != REASON_REJECTED && is_cycle(target, deaths);
        for target in targets.iter().filter(|t| !cycling(t)) {
            // The target queue's own x-message-ttl and priority apply, as to any message it
            // receives (the usual delayed-retry loop relies on the TTL).
            let target_policy = shared.topology.policy(target).unwrap_or_default();
            let stored =
                record_for_queue(record.clone(), &target_policy, None, props.priority, now);
            let batch = build_batch(std::slice::from_ref(&stored));
            crate::handlers::store_batch(shared, target, &target_policy, batch).await?;
            crate::expiry::arm_for(shared, target, [&stored]);
        }
    }
    Ok(())
}

/// RabbitMQ's cycle rule: a message dead-lettered into a queue it already died in is dropped
/// when every death since then (newest first, up to that queue's) was automatic, i.e. none was
/// a rejection; a consumer's reject breaks the cycle.
fn is_cycle(target: &str, deaths: &[FieldValue]) -> bool {
    let field = |death: &FieldValue, key: &str| match death {
        FieldValue::Table(t) => t.get(key).and_then(FieldValue::as_str).map(str::to_owned),
        _ => None,
    };
    let Some(at) = deaths
        .iter()
        .position(|d| field(d, "queue").as_deref() == Some(target))
    else {
        return false;
    };
    deaths[..=at]
        .iter()
        .all(|d| field(d, "reason").as_deref() != Some(REASON_REJECTED))
}

/// Takes up to `max` ready messages, dropping (or dead-lettering) on the way expired ones and,
/// in a quorum queue with `x-delivery-limit`, those requeued more often than the limit.
pub async fn take_live(
    shared: &Arc<Shared>,
    queue: &str,
    max: usize,
) -> EngineResult<Vec<Delivery>> {
    loop {
        let taken = shared.engine.queues.take(queue, max).await?;
        let now = now_ms();
        let (expired, live): (Vec<Delivery>, Vec<Delivery>) = taken
            .into_iter()
            .partition(|d| expires_at(&d.record).is_some_and(|at| at <= now));
        let limit = match live.iter().any(|d| d.returns > 0) {
            true => shared.topology.policy(queue).and_then(|p| p.delivery_limit),
            false => None,
        };
        let (over_limit, live): (Vec<Delivery>, Vec<Delivery>) = live
            .into_iter()
            .partition(|d| limit.is_some_and(|limit| u64::from(d.returns) > limit));
        if expired.is_empty() && over_limit.is_empty() {
            return Ok(live);
        }
        let mut groups = [
            (expired, REASON_EXPIRED),
            (over_limit, REASON_DELIVERY_LIMIT),
        ]
        .into_iter();
        while let Some((dead, reason)) = groups.next() {
            let dead: Vec<(u64, Option<Record>)> =
                dead.into_iter().map(|d| (d.id, Some(d.record))).collect();
            if let Err(error) = dead_letter(shared, queue, &dead, reason).await {
                // `dead_letter` returned its own; the rest of this round was taken too.
                let rest: Vec<u64> = groups
                    .flat_map(|(group, _)| group)
                    .chain(live)
                    .map(|d| d.id)
                    .collect();
                return_to_queue(shared, queue, &rest).await;
                return Err(error);
            }
        }
        if !live.is_empty() {
            return Ok(live);
        }
    }
}

/// Parses a per-message `expiration` (a string of milliseconds) the way RabbitMQ checks it.
pub fn parse_expiration(value: &str) -> Result<u64, String> {
    match value.parse::<i64>() {
        Ok(ms) if ms >= 0 => Ok(ms as u64),
        Ok(ms) => Err(format!(
            "invalid expiration '{value}': {{value_negative,{ms}}}"
        )),
        Err(_) => Err(format!("invalid expiration '{value}': no_integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::from_record;

    #[test]
    fn x_death_is_laid_out_and_counted() {
        let props = BasicProperties {
            expiration: Some("50".into()),
            ..Default::default()
        };
        let record = to_record(
            "orders",
            "new",
            props.encode(),
            &props,
            Bytes::from_static(b"b"),
            1_000,
        );
        let (key, first) =
            dead_letter_record(&record, "q1", REASON_EXPIRED, "dlx", None, 2_000_000);
        assert_eq!(key, "new");
        assert_eq!(first.timestamp, 1_000, "the copy keeps the record's time");
        // Readers of other protocols see the copy's properties, not the original's.
        let record_header = |name: &[u8]| {
            first
                .headers
                .iter()
                .find(|(n, _)| n.as_ref() == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(
            record_header(b"x-first-death-reason"),
            Some(Some(Bytes::from_static(b"expired")))
        );
        assert_eq!(record_header(b"amqp.expiration"), None);
        let message = from_record_lenient(&first);
        assert_eq!(message.exchange, "dlx");
        let props = BasicProperties::parse(&message.raw_properties).unwrap();
        assert_eq!(props.expiration, None, "expiration is removed");
        let headers = props.headers.unwrap();
        let Some(FieldValue::Array(deaths)) = headers.get("x-death") else {
            panic!("no x-death")
        };
        let FieldValue::Table(entry) = &deaths[0] else {
            panic!("entry is not a table")
        };
        let keys: Vec<&str> = entry.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "count",
                "reason",
                "queue",
                "time",
                "exchange",
                "routing-keys",
                "original-expiration"
            ]
        );
        assert_eq!(entry.get("count"), Some(&FieldValue::I64(1)));
        assert_eq!(entry.get("time"), Some(&FieldValue::Timestamp(2_000)));
        assert_eq!(
            headers
                .get("x-first-death-reason")
                .and_then(FieldValue::as_str),
            Some("expired")
        );
        // The same queue and reason again: counted, still one entry.
        let (key, second) = dead_letter_record(
            &first,
            "q1",
            REASON_EXPIRED,
            "dlx",
            Some("retry"),
            3_000_000,
        );
        assert_eq!(key, "retry");
        let headers = BasicProperties::parse(&from_record_lenient(&second).raw_properties)
            .unwrap()
            .headers
            .unwrap();
        let Some(FieldValue::Array(deaths)) = headers.get("x-death") else {
            panic!("no x-death")
        };
        assert_eq!(deaths.len(), 1);
        let FieldValue::Table(entry) = &deaths[0] else {
            panic!("entry is not a table")
        };
        assert_eq!(entry.get("count"), Some(&FieldValue::I64(2)));
        assert_eq!(entry.get("time"), Some(&FieldValue::Timestamp(2_000)));
        let keys: Vec<&str> = entry.0.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            keys,
            [
                "count",
                "exchange",
                "original-expiration",
                "queue",
                "reason",
                "routing-keys",
                "time"
            ],
            "a repeat is sorted by key, as RabbitMQ re-sorts it"
        );
    }

    #[test]
    fn only_automatic_cycles_are_dropped() {
        let death = |queue: &str, reason: &str| {
            let mut t = FieldTable::default();
            t.insert("reason", text(reason));
            t.insert("queue", text(queue));
            FieldValue::Table(t)
        };
        let automatic = [death("wait", REASON_EXPIRED), death("work", REASON_EXPIRED)];
        assert!(is_cycle("work", &automatic));
        assert!(!is_cycle("elsewhere", &automatic));
        let rejected = [
            death("wait", REASON_EXPIRED),
            death("work", REASON_REJECTED),
        ];
        assert!(!is_cycle("work", &rejected), "a reject breaks the cycle");
    }

    #[test]
    fn expiration_strings() {
        assert_eq!(parse_expiration("1500"), Ok(1500));
        assert_eq!(
            parse_expiration("abc").unwrap_err(),
            "invalid expiration 'abc': no_integer"
        );
        assert_eq!(
            parse_expiration("-5").unwrap_err(),
            "invalid expiration '-5': {value_negative,-5}"
        );
    }

    #[test]
    fn a_foreign_record_keeps_its_headers_when_dead_lettered() {
        let long_name = Bytes::from(vec![b'n'; 300]);
        let record = Record {
            key: None,
            value: Some(Bytes::from_static(b"v")),
            timestamp: 5_000,
            headers: vec![
                (Bytes::from_static(b"h"), Some(Bytes::from_static(b"1"))),
                (long_name.clone(), None),
            ],
        };
        let (key, copy) = dead_letter_record(&record, "q", REASON_EXPIRED, "dlx", None, 9_000);
        assert_eq!(key, "");
        assert_eq!(copy.key, None);
        assert!(copy.headers.iter().any(|(n, _)| *n == long_name));
        let message = from_record(&copy).unwrap();
        let props = BasicProperties::parse(&message.raw_properties).unwrap();
        assert_eq!(props.timestamp, Some(5));
        let headers = props.headers.unwrap();
        assert_eq!(
            headers.get("h"),
            Some(&FieldValue::LongString(Bytes::from_static(b"1")))
        );
        assert!(headers.get("x-death").is_some());
        assert_eq!(
            headers.0.len(),
            5,
            "h, x-death, x-first-death-*: {headers:?}"
        );
    }
}
