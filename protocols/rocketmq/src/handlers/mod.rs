//! Request dispatch: one module per request family, chosen by the listener's role and the
//! request code. Handlers return a response or a [`RequestError`]; this module turns errors into
//! error responses, drops responses to one-way requests and records the request metrics.

mod client;
mod lock;
mod namesrv;
mod offsets;
mod pull;
mod query;
mod send;
mod send_back;
mod transaction;

pub(crate) use client::{connection_closed, follow_roster};
pub(crate) use offsets::commit_offsets;
pub use send_back::{DLQ_PREFIX, RETRY_PREFIX};
pub(crate) use transaction::check_transactions;

use std::str::FromStr;
use std::time::Instant;

use tracing::debug;
use tributary_api::batch::{BatchHeader, decode_records};
use tributary_api::interop::count_escaped_properties;
use tributary_api::{EngineError, StoredRecord, TopicDescription, TopicPartition};

use crate::codec::RemotingCommand;
use crate::codec::message::{StoredMessage, encode_stored, format_properties};
use crate::connection::Connection;
use crate::error::{RequestError, RequestResult, undeliverable};
use crate::records::{MessageMeta, OutgoingMessage, check_properties_len};
use crate::{Role, Shared, metrics};

/// `RequestCode` values served here (corrected against the Java source).
pub(crate) mod request {
    pub(crate) const SEND_MESSAGE: i32 = 10;
    pub(crate) const PULL_MESSAGE: i32 = 11;
    pub(crate) const QUERY_MESSAGE: i32 = 12;
    pub(crate) const QUERY_CONSUMER_OFFSET: i32 = 14;
    pub(crate) const UPDATE_CONSUMER_OFFSET: i32 = 15;
    pub(crate) const UPDATE_AND_CREATE_TOPIC: i32 = 17;
    pub(crate) const SEARCH_OFFSET_BY_TIMESTAMP: i32 = 29;
    pub(crate) const GET_MAX_OFFSET: i32 = 30;
    pub(crate) const GET_MIN_OFFSET: i32 = 31;
    pub(crate) const GET_EARLIEST_MSG_STORETIME: i32 = 32;
    pub(crate) const VIEW_MESSAGE_BY_ID: i32 = 33;
    pub(crate) const HEART_BEAT: i32 = 34;
    pub(crate) const UNREGISTER_CLIENT: i32 = 35;
    pub(crate) const CONSUMER_SEND_MSG_BACK: i32 = 36;
    pub(crate) const END_TRANSACTION: i32 = 37;
    pub(crate) const GET_CONSUMER_LIST_BY_GROUP: i32 = 38;
    pub(crate) const LOCK_BATCH_MQ: i32 = 41;
    pub(crate) const UNLOCK_BATCH_MQ: i32 = 42;
    pub(crate) const CHECK_CLIENT_CONFIG: i32 = 46;
    pub(crate) const GET_ROUTEINFO_BY_TOPIC: i32 = 105;
    pub(crate) const GET_BROKER_CLUSTER_INFO: i32 = 106;
    pub(crate) const SEND_MESSAGE_V2: i32 = 310;
    pub(crate) const SEND_BATCH_MESSAGE: i32 = 320;

    /// Every code above with its metric label; any other code is labelled `unknown`, so a
    /// client cannot create label values.
    pub(super) const LABELS: &[(i32, &str)] = &[
        (SEND_MESSAGE, "10"),
        (PULL_MESSAGE, "11"),
        (QUERY_MESSAGE, "12"),
        (QUERY_CONSUMER_OFFSET, "14"),
        (UPDATE_CONSUMER_OFFSET, "15"),
        (UPDATE_AND_CREATE_TOPIC, "17"),
        (SEARCH_OFFSET_BY_TIMESTAMP, "29"),
        (GET_MAX_OFFSET, "30"),
        (GET_MIN_OFFSET, "31"),
        (GET_EARLIEST_MSG_STORETIME, "32"),
        (VIEW_MESSAGE_BY_ID, "33"),
        (HEART_BEAT, "34"),
        (UNREGISTER_CLIENT, "35"),
        (CONSUMER_SEND_MSG_BACK, "36"),
        (END_TRANSACTION, "37"),
        (GET_CONSUMER_LIST_BY_GROUP, "38"),
        (LOCK_BATCH_MQ, "41"),
        (UNLOCK_BATCH_MQ, "42"),
        (CHECK_CLIENT_CONFIG, "46"),
        (GET_ROUTEINFO_BY_TOPIC, "105"),
        (GET_BROKER_CLUSTER_INFO, "106"),
        (SEND_MESSAGE_V2, "310"),
        (SEND_BATCH_MESSAGE, "320"),
    ];
}

/// The `code` label of a request: its number when the broker serves it, else `unknown`.
pub(crate) fn code_label(code: i32) -> &'static str {
    request::LABELS
        .iter()
        .find(|(known, _)| *known == code)
        .map_or("unknown", |(_, label)| label)
}

/// Handles one request; `None` for one-way requests.
pub(crate) async fn handle(
    shared: &Shared,
    connection: &Connection,
    request: RemotingCommand,
) -> Option<RemotingCommand> {
    let started = Instant::now();
    let code = request.code;
    debug!(peer = %connection.peer, code, opaque = request.opaque, serialize = ?request.serialize_type, oneway = request.is_oneway(), fields = ?request.ext_fields, "request");
    let admitted = crate::acl::admit(shared, connection, &request).await;
    let outcome = match admitted {
        Ok(caller) => dispatch(shared, connection, &request, &caller).await,
        Err(refusal) => Err(refusal),
    };
    let response = match outcome {
        Ok(response) => response,
        Err(err) => {
            debug!(peer = %connection.peer, code, error = %err, "request failed");
            RemotingCommand::response_to(&request, err.response_code()).with_remark(err.remark())
        }
    };
    debug!(peer = %connection.peer, code, opaque = request.opaque, response = response.code, fields = ?response.ext_fields, "response");
    let code_label = code_label(code);
    // `outcome` is a response code this broker chose, so it is bounded too.
    ::metrics::counter!(metrics::REQUESTS, "code" => code_label, "outcome" => response.code.to_string())
        .increment(1);
    ::metrics::histogram!(metrics::REQUEST_SECONDS, "code" => code_label)
        .record(started.elapsed().as_secs_f64());
    (!request.is_oneway()).then_some(response)
}

async fn dispatch(
    shared: &Shared,
    connection: &Connection,
    request: &RemotingCommand,
    caller: &crate::acl::Caller,
) -> RequestResult<RemotingCommand> {
    use request::*;
    match (connection.role, request.code) {
        (Role::NameServer, GET_ROUTEINFO_BY_TOPIC) => {
            namesrv::route(shared, connection, request, caller.may_create_topic).await
        }
        (Role::NameServer, GET_BROKER_CLUSTER_INFO) => {
            namesrv::cluster_info(shared, connection, request)
        }
        (_, UPDATE_AND_CREATE_TOPIC) => namesrv::create_topic(shared, request).await,
        (Role::Broker, SEND_MESSAGE | SEND_MESSAGE_V2 | SEND_BATCH_MESSAGE) => {
            send::send(shared, connection, request).await
        }
        (Role::Broker, CONSUMER_SEND_MSG_BACK) => {
            send_back::send_back(shared, connection, request).await
        }
        (Role::Broker, END_TRANSACTION) => {
            transaction::end_transaction(shared, connection, request).await
        }
        (Role::Broker, PULL_MESSAGE) => pull::pull(shared, connection, request).await,
        (Role::Broker, QUERY_CONSUMER_OFFSET) => {
            offsets::query_consumer_offset(shared, request).await
        }
        (Role::Broker, UPDATE_CONSUMER_OFFSET) => {
            offsets::update_consumer_offset(shared, request).await
        }
        (Role::Broker, GET_MAX_OFFSET) => offsets::max_offset(shared, request),
        (Role::Broker, GET_MIN_OFFSET) => offsets::min_offset(shared, request),
        (Role::Broker, SEARCH_OFFSET_BY_TIMESTAMP) => {
            offsets::search_by_timestamp(shared, request).await
        }
        (Role::Broker, VIEW_MESSAGE_BY_ID) => query::view_by_id(shared, connection, request).await,
        (Role::Broker, QUERY_MESSAGE) => query::query_by_key(shared, connection, request).await,
        (Role::Broker, GET_EARLIEST_MSG_STORETIME) => {
            query::earliest_store_time(shared, request).await
        }
        (Role::Broker, HEART_BEAT) => client::heartbeat(shared, connection, request),
        (Role::Broker, UNREGISTER_CLIENT) => client::unregister(shared, connection, request),
        (Role::Broker, GET_CONSUMER_LIST_BY_GROUP) => client::consumer_list(shared, request).await,
        (Role::Broker, CHECK_CLIENT_CONFIG) => client::check_client_config(shared, request),
        (Role::Broker, LOCK_BATCH_MQ) => lock::lock(shared, request),
        (Role::Broker, UNLOCK_BATCH_MQ) => lock::unlock(shared, request),
        (_, other) => Err(RequestError::NotSupported(other)),
    }
}

/// A required header field.
fn required<'a>(request: &'a RemotingCommand, name: &'static str) -> RequestResult<&'a str> {
    request.field(name).ok_or(RequestError::MissingField(name))
}

/// A required header field parsed as `T`.
fn parsed<T: FromStr>(request: &RemotingCommand, name: &'static str) -> RequestResult<T> {
    let text = required(request, name)?;
    text.trim().parse().map_err(|_| RequestError::BadField {
        field: name,
        value: text.to_owned(),
    })
}

/// An optional header field parsed as `T`; absent or empty gives `None`.
fn optional<T: FromStr>(request: &RemotingCommand, name: &'static str) -> RequestResult<Option<T>> {
    match request.field(name).map(str::trim) {
        None | Some("") => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| RequestError::BadField {
            field: name,
            value: text.to_owned(),
        }),
    }
}

/// A queue id header as a partition number.
fn queue_id(request: &RemotingCommand, name: &'static str) -> RequestResult<u32> {
    let id: i64 = parsed(request, name)?;
    u32::try_from(id).map_err(|_| RequestError::BadField {
        field: name,
        value: id.to_string(),
    })
}

/// Queues a topic gets when RocketMQ creates it: retry topics have one, as in RocketMQ.
fn queues_for(shared: &Shared, topic: &str, requested: Option<u32>) -> u32 {
    if topic.starts_with("%RETRY%") || topic.starts_with("%DLQ%") {
        1
    } else {
        requested
            .filter(|n| *n > 0)
            .unwrap_or(shared.settings.default_queue_nums)
            .max(1)
    }
}

/// The topic, created with `queues` queues when it is missing and auto-creation is on.
async fn ensure_topic(
    shared: &Shared,
    topic: &str,
    requested_queues: Option<u32>,
) -> RequestResult<TopicDescription> {
    match shared.engine.topics.describe_topic(topic) {
        Ok(description) => Ok(description),
        Err(EngineError::UnknownTopic(_)) if shared.settings.auto_create_topics => {
            let queues = queues_for(shared, topic, requested_queues);
            match shared
                .engine
                .topics
                .create_topic(topic, queues, Default::default())
                .await
            {
                Ok(description) => Ok(description),
                // Another connection created it first.
                Err(EngineError::TopicExists(_)) => {
                    Ok(shared.engine.topics.describe_topic(topic)?)
                }
                Err(err) => Err(err.into()),
            }
        }
        Err(EngineError::UnknownTopic(_)) => Err(RequestError::TopicNotExist(topic.to_owned())),
        Err(err) => Err(err.into()),
    }
}

/// Bytes read to find one message (RocketMQ's largest message is 4 MiB).
const LOOKUP_READ_BYTES: usize = 4 << 20;

/// The record at `offset` of `partition`, or `None` when there is none (out of range, a
/// control record, or a record of an open or aborted Kafka transaction). A batch that cannot be
/// decoded is [`RequestError::Undeliverable`].
async fn read_record(
    shared: &Shared,
    partition: &TopicPartition,
    offset: i64,
) -> RequestResult<Option<StoredRecord>> {
    let bounds = shared.engine.log.offsets(partition)?;
    let committed = shared.engine.committed(partition, offset).await?;
    if offset < bounds.log_start || offset >= committed.end {
        return Ok(None);
    }
    let mut rest = shared
        .engine
        .log
        .read(partition, offset, LOOKUP_READ_BYTES)
        .await?
        .data;
    while !rest.is_empty() {
        let header = BatchHeader::parse(&rest).map_err(EngineError::from)?;
        let batch = rest.split_to(header.total_len.min(rest.len()));
        if header.last_offset() < offset {
            continue;
        }
        if committed.skips(&header) {
            return Ok(None);
        }
        let records = decode_records(&batch)
            .map_err(|err| undeliverable(partition, header.base_offset, err))?;
        return Ok(records.into_iter().find(|r| r.offset == offset));
    }
    Ok(None)
}

/// The durable RocketMQ topic id of `topic` (see [`crate::topic_ids`]).
async fn topic_id(shared: &Shared, topic: &str) -> RequestResult<u32> {
    shared
        .topic_ids
        .id(shared.engine.metadata.as_ref(), topic)
        .await
}

/// The broker-wide physical offset of message `offset` of `partition` (see [`crate::topic_ids`]).
async fn physical(shared: &Shared, partition: &TopicPartition, offset: i64) -> RequestResult<i64> {
    let topic_id = topic_id(shared, &partition.topic).await?;
    crate::topic_ids::physical_offset(topic_id, partition.partition, offset)
}

/// Appends message `offset` of `partition` to `out` in the stored-message format (PULL, VIEW and
/// QUERY bodies); `store_host` is the broker address the client reached.
fn encode_message(
    partition: &TopicPartition,
    topic_id: u32,
    offset: i64,
    message: &OutgoingMessage,
    store_host: std::net::SocketAddr,
    out: &mut bytes::BytesMut,
) -> RequestResult<()> {
    let place = Placement::of(partition, topic_id, offset)?;
    encode_placed(&place, message, store_host, out)
}

/// [`encode_message`] from borrowed parts (the pull path's record views).
fn encode_parts(
    partition: &TopicPartition,
    topic_id: u32,
    offset: i64,
    message: &MessageParts<'_>,
    store_host: std::net::SocketAddr,
    out: &mut bytes::BytesMut,
) -> RequestResult<()> {
    let place = Placement::of(partition, topic_id, offset)?;
    encode_at(&place, message, store_host, out);
    Ok(())
}

/// Where a stored-format message says it is: a transaction check shows a half message under its
/// real topic and queue but with the half's own offsets.
struct Placement<'a> {
    topic: &'a str,
    queue_id: i32,
    queue_offset: i64,
    physical_offset: i64,
}

impl<'a> Placement<'a> {
    /// Message `offset` of `partition`, where it is stored.
    fn of(partition: &'a TopicPartition, topic_id: u32, offset: i64) -> RequestResult<Self> {
        Ok(Self {
            topic: &partition.topic,
            queue_id: partition.partition as i32,
            queue_offset: offset,
            physical_offset: crate::topic_ids::physical_offset(
                topic_id,
                partition.partition,
                offset,
            )?,
        })
    }
}

/// A message's stored-format content, borrowed from an owned message or a record view.
struct MessageParts<'a> {
    meta: MessageMeta,
    body: &'a [u8],
    /// In the wire form.
    properties: &'a str,
}

/// Encodes an owned message; an error (counted) when its properties are too long for RocketMQ.
fn encode_placed(
    place: &Placement<'_>,
    message: &OutgoingMessage,
    store_host: std::net::SocketAddr,
    out: &mut bytes::BytesMut,
) -> RequestResult<()> {
    let properties = format_properties(
        message
            .properties
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str())),
    );
    check_properties_len(properties.len())?;
    count_escaped_properties(message.escaped);
    let parts = MessageParts {
        meta: message.meta,
        body: &message.body,
        properties: &properties,
    };
    encode_at(place, &parts, store_host, out);
    Ok(())
}

fn encode_at(
    place: &Placement<'_>,
    message: &MessageParts<'_>,
    store_host: std::net::SocketAddr,
    out: &mut bytes::BytesMut,
) {
    let meta = &message.meta;
    encode_stored(
        &StoredMessage {
            topic: place.topic,
            queue_id: place.queue_id,
            flag: meta.flag,
            queue_offset: place.queue_offset,
            physical_offset: place.physical_offset,
            sys_flag: meta.sys_flag,
            born_timestamp: meta.born_timestamp,
            born_host: meta.born_host.unwrap_or(store_host),
            store_timestamp: meta.store_timestamp,
            store_host,
            reconsume_times: meta.reconsume_times,
            body: message.body,
            properties: message.properties,
        },
        out,
    );
}

#[cfg(test)]
mod label_tests {
    use super::*;

    #[test]
    fn request_codes_the_broker_does_not_serve_are_labelled_unknown() {
        assert_eq!(code_label(request::UPDATE_AND_CREATE_TOPIC), "17");
        assert_eq!(code_label(request::SEND_MESSAGE_V2), "310");
        for code in [i32::MIN, -1, 0, 9999, 123_456_789, i32::MAX] {
            assert_eq!(code_label(code), "unknown");
        }
        for (code, label) in request::LABELS {
            assert_eq!(label.parse::<i32>().unwrap(), *code);
        }
    }
}
