//! One Kafka connection: read frames, route them through the codec's firewall, answer in order.
//!
//! Requests are handled one at a time in arrival order, which is the order Kafka requires for
//! responses; each response is written before the next request is read from the buffer, so a
//! client that does not read its responses stops being read from (backpressure instead of an
//! output queue). A protocol error is logged and closes this connection only.
//!
//! With SASL on, the connection's [`SaslSession`] answers SaslHandshake and SaslAuthenticate
//! until it is authenticated, and a request it does not admit closes the connection before the
//! body is decoded (so an unauthenticated peer reaches only the three smallest request schemas).

use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, warn};
use tributary_api::ConnectionContext;

use crate::codec::KafkaRequest;
use crate::codec::{self, CodecError, KafkaResponse, Routed};
use crate::error::KafkaError;
use crate::handlers::sasl::{After, SaslSession};
use crate::handlers::{Broker, RequestContext};
use crate::metrics;

/// Initial read buffer; it grows to the size of the largest frame seen (bounded by the limit).
const READ_BUFFER_BYTES: usize = 16 * 1024;

pub(crate) async fn serve(
    broker: Arc<Broker>,
    mut stream: TcpStream,
    context: ConnectionContext,
) -> Result<(), KafkaError> {
    let mut buf = BytesMut::with_capacity(READ_BUFFER_BYTES);
    let mut sasl = SaslSession::new(broker.settings.sasl_enabled);
    let peer = context.peer.to_string();
    let request_context = RequestContext {
        local_port: context.local.port(),
        shutdown: context.shutdown.clone(),
    };
    loop {
        loop {
            if sasl.awaits_raw_token() {
                let token = match codec::split_raw_token(&mut buf, context.limits) {
                    Ok(Some(token)) => token,
                    Ok(None) => break,
                    Err(error) => return Err(protocol_error(&context, error)),
                };
                let (reply, after) = sasl.raw_token(&broker.engine, &peer, token).await;
                if let Some(reply) = reply {
                    let size = u32::try_from(reply.len()).unwrap_or(u32::MAX);
                    stream.write_all(&size.to_be_bytes()).await?;
                    stream.write_all(&reply).await?;
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
                    let (response, after) = match *body {
                        KafkaRequest::SaslHandshake(request) if sasl.in_progress() => {
                            let (response, after) = sasl.handshake(&peer, version, &request);
                            (Some(KafkaResponse::SaslHandshake(response)), after)
                        }
                        KafkaRequest::SaslAuthenticate(request) if sasl.in_progress() => {
                            let (response, after) =
                                sasl.authenticate(&broker.engine, &peer, &request).await;
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
                stream.write_all(&frame).await?;
            }
            let api_name = api_label(api);
            ::metrics::counter!(metrics::REQUESTS, "api" => api_name).increment(1);
            ::metrics::histogram!(metrics::REQUEST_SECONDS, "api" => api_name)
                .record(started.elapsed().as_secs_f64());
            if after == After::Close {
                stream.flush().await?;
                return Ok(());
            }
        }
        tokio::select! {
            read = stream.read_buf(&mut buf) => {
                if read? == 0 {
                    return Ok(());
                }
            }
            () = context.shutdown.cancelled() => return Ok(()),
        }
    }
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
        ApiKey::SaslHandshake => "sasl_handshake",
        ApiKey::SaslAuthenticate => "sasl_authenticate",
        _ => "other",
    }
}
