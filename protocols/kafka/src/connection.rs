//! One Kafka connection: read frames, route them through the codec's firewall, answer in order.
//!
//! Requests are handled one at a time in arrival order, and responses are written in that order,
//! as Kafka requires. One exception to "one at a time": a produce request whose batches are
//! written waits for their durability (an fsync, or a cloud flush) in a queue of at most
//! [`crate::KafkaSettings::max_pipelined_produces`] while the next produce requests are written,
//! so one fsync or flush covers the batches of several requests; any other request first waits until every produce before it
//! is answered. Otherwise each response is written before the next request is read from the
//! buffer, so a client that does not read its responses stops being read from (backpressure
//! instead of an output queue). A protocol error is logged and closes this connection only.
//!
//! With SASL on, the connection's [`SaslSession`] answers SaslHandshake and SaslAuthenticate
//! until it is authenticated, and a request it does not admit closes the connection before the
//! body is decoded (so an unauthenticated peer reaches only the three smallest request schemas).
//! Until then a size prefix above `sasl_max_receive_bytes` closes the connection before any of
//! its body is read.
//!
//! Connection rules ([`tributary_api::guard`]): a connection with no request in progress and
//! none pending closes after the listener's idle timeout; a started frame must be whole within
//! the frame timeout; the read buffer grows as bytes arrive (never to a declared size up
//! front), and a frame above the unbudgeted size takes its size from the broker's buffer budget
//! before its body is read, until its request is handled (a produce: until it is written).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse, ProduceResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tracing::{debug, warn};
use tributary_api::guard::{self, BudgetPermit, CloseReason, FrameClock, MemoryBudget};
use tributary_api::outbound::write_progressing;
use tributary_api::{ConnectionContext, ConnectionStream};

use crate::codec::{self, CodecError, KafkaRequest, KafkaResponse, Routed};
use crate::error::KafkaError;
use crate::handlers::sasl::{After, SaslSession};
use crate::handlers::{Broker, RequestContext, StagedProduce};
use crate::metrics;

/// Initial read buffer; it grows to the size of the largest frame seen (bounded by the limit).
const READ_BUFFER_BYTES: usize = 16 * 1024;
/// Most a read asks room for; a large frame's buffer grows by reads of this, not all at once.
const READ_CHUNK: usize = 64 * 1024;

/// A produce request whose batches are written, awaiting its acknowledgement.
struct PendingProduce {
    correlation_id: i32,
    header_version: i16,
    version: i16,
    started: Instant,
    response: StagedProduce,
}

/// What the idle connection woke up for.
enum Wake {
    Read(std::io::Result<usize>),
    Answered(Option<ProduceResponse>),
    Shutdown,
    /// A connection rule's deadline passed.
    Expired(CloseReason, std::time::Duration),
}

pub(crate) async fn serve(
    broker: Arc<Broker>,
    mut stream: ConnectionStream,
    context: ConnectionContext,
) -> Result<(), KafkaError> {
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let mut sasl = SaslSession::new(broker.settings.sasl_enabled);
    let peer = context.peer.to_string();
    let send_timeout = context.timeouts.send;
    let mut request_context = RequestContext {
        local_port: context.local.port(),
        shutdown: context.shutdown.clone(),
        principal: certificate_principal(&context, broker.settings.sasl_enabled),
        host: context.peer.ip().to_string(),
    };
    let mut pending = VecDeque::new();
    let mut clock = FrameClock::new();
    // Budget held for the frame being read (taken before its body is read).
    let mut frame_budget: Option<BudgetPermit> = None;
    loop {
        let mut handled_any = false;
        loop {
            if sasl.in_progress()
                && let Some(declared) = codec::declared_frame_bytes(&buf)
                && declared > broker.settings.sasl_max_receive_bytes
            {
                warn!(
                    listener = "kafka",
                    peer = %context.peer,
                    declared,
                    limit = broker.settings.sasl_max_receive_bytes,
                    reason = CloseReason::PreAuthFrameTooLarge.label(),
                    "closing the connection: frame larger than sasl_max_receive_bytes before SASL authentication"
                );
                guard::count_close("kafka", CloseReason::PreAuthFrameTooLarge);
                return Ok(());
            }
            if sasl.awaits_raw_token() {
                let token = match codec::split_raw_token(&mut buf, context.limits) {
                    Ok(Some(token)) => token,
                    Ok(None) => break,
                    Err(error) => return Err(protocol_error(&context, error)),
                };
                clock.on_frame(buf.len());
                guard::release_after_large_frame(&mut buf, token.len());
                handled_any = true;
                let _budget = frame_budget.take();
                let (reply, after) = sasl.raw_token(&broker.engine, &peer, token).await;
                if let Some(user) = sasl.user() {
                    request_context.principal = format!("User:{user}");
                }
                if let Some(reply) = reply {
                    let size = u32::try_from(reply.len()).unwrap_or(u32::MAX);
                    let mut framed = Vec::with_capacity(4 + reply.len());
                    framed.extend_from_slice(&size.to_be_bytes());
                    framed.extend_from_slice(&reply);
                    write_progressing(&mut stream, &framed, send_timeout).await?;
                }
                if after == After::Close {
                    return Ok(());
                }
                continue;
            }
            let raw = match codec::split_frame(&mut buf, context.limits) {
                Ok(Some(raw)) => raw,
                Ok(None) => break,
                Err(error) => return Err(protocol_error(&context, error)),
            };
            clock.on_frame(buf.len());
            guard::release_after_large_frame(&mut buf, raw.frame.len());
            handled_any = true;
            // Held until this request is handled (a produce: until its batches are written).
            let _budget = frame_budget.take();
            if !sasl.admits(raw.api_key) {
                warn!(
                    peer = %context.peer,
                    api_key = raw.api_key,
                    "request before SASL authentication; closing the connection"
                );
                return Ok(());
            }
            let started = Instant::now();
            let routed = codec::route(raw).map_err(|error| protocol_error(&context, error))?;
            let (api, response, after) = match routed {
                Routed::ApiVersionsFallback { correlation_id } => {
                    answer_all(&mut stream, &mut pending, send_timeout).await?;
                    debug!(peer = %context.peer, "ApiVersions above our range: KIP-511 fallback");
                    let body = ApiVersionsResponse::default()
                        .with_error_code(ResponseError::UnsupportedVersion.code())
                        .with_api_keys(crate::handlers::advertised_versions());
                    let frame = codec::encode_response(
                        correlation_id,
                        0,
                        0,
                        &KafkaResponse::ApiVersions(body),
                    )?;
                    (ApiKey::ApiVersions, Some(frame), After::Continue)
                }
                Routed::Request {
                    header,
                    api,
                    version,
                    body,
                } => {
                    context
                        .client_id
                        .set(header.client_id.as_deref().unwrap_or(""));
                    let body = match *body {
                        KafkaRequest::Produce(request) => {
                            let response = broker
                                .produce_staged(&request_context, version, request)
                                .await;
                            pending.push_back(PendingProduce {
                                correlation_id: header.correlation_id,
                                header_version: codec::response_header_version(api, version),
                                version,
                                started,
                                response,
                            });
                            if pending.len() >= broker.settings.max_pipelined_produces.max(1) {
                                answer_oldest(&mut stream, &mut pending, send_timeout).await?;
                            }
                            continue;
                        }
                        other => other,
                    };
                    // Any other request is served after the produces before it are answered,
                    // so it sees their effects and its response follows theirs.
                    answer_all(&mut stream, &mut pending, send_timeout).await?;
                    let (response, after) = match body {
                        KafkaRequest::SaslHandshake(request) if sasl.in_progress() => {
                            let (response, after) = sasl.handshake(&peer, version, &request);
                            (Some(KafkaResponse::SaslHandshake(response)), after)
                        }
                        KafkaRequest::SaslAuthenticate(request) if sasl.in_progress() => {
                            let (response, after) =
                                sasl.authenticate(&broker.engine, &peer, &request).await;
                            if let Some(user) = sasl.user() {
                                request_context.principal = format!("User:{user}");
                            }
                            (Some(KafkaResponse::SaslAuthenticate(response)), after)
                        }
                        body => {
                            let client_id = header.client_id.as_deref().unwrap_or("");
                            let response = broker
                                .handle(&request_context, version, client_id, body)
                                .await;
                            (response, After::Continue)
                        }
                    };
                    let frame = match response {
                        Some(response) => Some(codec::encode_response(
                            header.correlation_id,
                            codec::response_header_version(api, version),
                            version,
                            &response,
                        )?),
                        None => None,
                    };
                    (api, frame, after)
                }
            };
            if let Some(frame) = response {
                write_progressing(&mut stream, &frame, send_timeout).await?;
            }
            count_request(api_label(api), started);
            if after == After::Close {
                answer_all(&mut stream, &mut pending, send_timeout).await?;
                stream.flush().await?;
                return Ok(());
            }
        }
        if handled_any {
            clock.touch();
        }
        let declared = codec::declared_frame_bytes(&buf);
        if frame_budget.is_none()
            && let Some(declared) = declared.filter(|bytes| MemoryBudget::applies_to(*bytes))
        {
            let deadline = clock.deadline(&context.timeouts, false);
            tokio::select! {
                permit = context.budget.acquire(declared) => frame_budget = Some(permit),
                () = guard::sleep_until(deadline.map(|(at, _, _)| at)) => {
                    let (_, reason, limit) = deadline.unwrap_or((Instant::now(), CloseReason::FrameTimeout, std::time::Duration::ZERO));
                    guard::record_close("kafka", context.peer, reason, limit);
                    return Ok(());
                }
                () = context.shutdown.cancelled() => {
                    answer_all(&mut stream, &mut pending, send_timeout).await?;
                    return Ok(());
                }
            }
        }
        guard::reserve_read(&mut buf, declared, READ_CHUNK);
        // A pending produce is a request in progress: the connection is not idle.
        let deadline = clock.deadline(&context.timeouts, pending.is_empty());
        let wake = {
            let oldest = async {
                match pending.front_mut() {
                    Some(produce) => (&mut produce.response).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                read = stream.read_buf(&mut buf) => Wake::Read(read),
                answered = oldest => Wake::Answered(answered),
                () = context.shutdown.cancelled() => Wake::Shutdown,
                () = guard::sleep_until(deadline.map(|(at, _, _)| at)) => match deadline {
                    Some((_, reason, limit)) => Wake::Expired(reason, limit),
                    None => Wake::Shutdown,
                },
            }
        };
        match wake {
            Wake::Read(read) => {
                if read? == 0 {
                    return Ok(());
                }
                clock.on_read();
            }
            Wake::Expired(reason, limit) => {
                guard::record_close("kafka", context.peer, reason, limit);
                return Ok(());
            }
            Wake::Answered(response) => {
                if let Some(produce) = pending.pop_front() {
                    write_produce_response(&mut stream, produce, response, send_timeout).await?;
                }
                clock.touch();
            }
            Wake::Shutdown => {
                answer_all(&mut stream, &mut pending, send_timeout).await?;
                return Ok(());
            }
        }
    }
}

/// The principal of a connection before any SASL exchange: with SASL off, a verified client
/// certificate's common name (`User:<CN>`, not Kafka's full-DN default, so that the ACLs and
/// super users name broker users); with SASL on, SASL alone decides (`SASL_SSL`), so a
/// certificate is never a way around a password.
fn certificate_principal(context: &ConnectionContext, sasl_enabled: bool) -> String {
    let common_name = context
        .client_certificate
        .as_ref()
        .and_then(|certificate| certificate.common_name.as_deref())
        .filter(|_| !sasl_enabled);
    match common_name {
        Some(name) => format!("User:{name}"),
        None => crate::acl::ANONYMOUS.to_owned(),
    }
}

/// Waits for the oldest pending produce and writes its response.
async fn answer_oldest(
    stream: &mut ConnectionStream,
    pending: &mut VecDeque<PendingProduce>,
    send_timeout: Option<Duration>,
) -> Result<(), KafkaError> {
    if let Some(mut produce) = pending.pop_front() {
        let response = (&mut produce.response).await;
        write_produce_response(stream, produce, response, send_timeout).await?;
    }
    Ok(())
}

/// Answers every pending produce, in order.
async fn answer_all(
    stream: &mut ConnectionStream,
    pending: &mut VecDeque<PendingProduce>,
    send_timeout: Option<Duration>,
) -> Result<(), KafkaError> {
    while !pending.is_empty() {
        answer_oldest(stream, pending, send_timeout).await?;
    }
    Ok(())
}

async fn write_produce_response(
    stream: &mut ConnectionStream,
    produce: PendingProduce,
    response: Option<ProduceResponse>,
    send_timeout: Option<Duration>,
) -> Result<(), KafkaError> {
    // acks=0: the client expects no response.
    if let Some(response) = response {
        let frame = codec::encode_response(
            produce.correlation_id,
            produce.header_version,
            produce.version,
            &KafkaResponse::Produce(response),
        )?;
        write_progressing(stream, &frame, send_timeout).await?;
    }
    count_request("produce", produce.started);
    Ok(())
}

fn count_request(api_name: &'static str, started: Instant) {
    ::metrics::counter!(metrics::REQUESTS, "api" => api_name).increment(1);
    ::metrics::histogram!(metrics::REQUEST_SECONDS, "api" => api_name)
        .record(started.elapsed().as_secs_f64());
}

/// Logs a protocol error with its cause chain and turns it into the connection's end.
fn protocol_error(context: &ConnectionContext, error: CodecError) -> KafkaError {
    let mut detail = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        detail.push_str(": ");
        detail.push_str(&cause.to_string());
        source = cause.source();
    }
    warn!(peer = %context.peer, error = %detail, "kafka protocol error; closing the connection");
    ::metrics::counter!(metrics::PROTOCOL_ERRORS).increment(1);
    KafkaError::Codec(error)
}

/// A static label per API (bounded cardinality).
fn api_label(api: ApiKey) -> &'static str {
    match api {
        ApiKey::Produce => "produce",
        ApiKey::Fetch => "fetch",
        ApiKey::ListOffsets => "list_offsets",
        ApiKey::Metadata => "metadata",
        ApiKey::ApiVersions => "api_versions",
        ApiKey::OffsetCommit => "offset_commit",
        ApiKey::OffsetFetch => "offset_fetch",
        ApiKey::FindCoordinator => "find_coordinator",
        ApiKey::JoinGroup => "join_group",
        ApiKey::Heartbeat => "heartbeat",
        ApiKey::LeaveGroup => "leave_group",
        ApiKey::SyncGroup => "sync_group",
        ApiKey::DescribeGroups => "describe_groups",
        ApiKey::ListGroups => "list_groups",
        ApiKey::CreateTopics => "create_topics",
        ApiKey::DeleteTopics => "delete_topics",
        ApiKey::CreatePartitions => "create_partitions",
        ApiKey::DescribeConfigs => "describe_configs",
        ApiKey::AlterConfigs => "alter_configs",
        ApiKey::IncrementalAlterConfigs => "incremental_alter_configs",
        ApiKey::InitProducerId => "init_producer_id",
        ApiKey::DeleteGroups => "delete_groups",
        ApiKey::OffsetDelete => "offset_delete",
        ApiKey::DeleteRecords => "delete_records",
        ApiKey::OffsetForLeaderEpoch => "offset_for_leader_epoch",
        ApiKey::DescribeCluster => "describe_cluster",
        ApiKey::DescribeAcls => "describe_acls",
        ApiKey::CreateAcls => "create_acls",
        ApiKey::DeleteAcls => "delete_acls",
        ApiKey::SaslHandshake => "sasl_handshake",
        ApiKey::SaslAuthenticate => "sasl_authenticate",
        ApiKey::AddPartitionsToTxn => "add_partitions_to_txn",
        ApiKey::AddOffsetsToTxn => "add_offsets_to_txn",
        ApiKey::EndTxn => "end_txn",
        ApiKey::TxnOffsetCommit => "txn_offset_commit",
        ApiKey::DescribeTransactions => "describe_transactions",
        ApiKey::ListTransactions => "list_transactions",
        _ => "other",
    }
}
