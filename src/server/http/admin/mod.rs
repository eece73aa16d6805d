//! The live admin API under `/api`: RabbitMQ management API paths and JSON shapes for vhosts,
//! users, permissions, exchanges, queues, bindings, connections (of every protocol) and
//! definitions, plus Tributary's topics and consumer groups; described by `/api/openapi.json`.
//!
//! Invariants: every path but `/api/openapi.json` needs HTTP basic credentials of a broker
//! user (checked like an AMQP login, `loopback_users` included) with the `administrator` tag:
//! none or wrong ones get 401 with `WWW-Authenticate: Basic`, a user without the tag 403.
//! Bodies are bounded by `http.max_body_bytes`. A change applies at once: a deleted user's
//! AMQP connections close, changed permissions apply to the next method of open connections.

mod access;
mod amqp;
mod connections;
mod definitions;
pub(crate) mod json;
mod rates;
mod topics;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use hyper::body::Incoming;
use hyper::{Method, Request, StatusCode};
use serde_json::Value;
use tributary_amqp::access::login::{self, Credentials};
use tributary_amqp::admin::AmqpAdmin;
use tributary_api::Engine;
use tributary_api::users::{ADMINISTRATOR_TAG, get_tags};
use tributary_kafka::admin::KafkaAdmin;
use tributary_rocketmq::admin::RocketMqAdmin;

use super::reply::{self, ApiError, HttpResponse};
use super::request;
use crate::broker::Broker;
use crate::server::connections::OpenConnections;

/// The OpenAPI 3 document of this API, served at `/api/openapi.json`.
pub const OPENAPI_JSON: &str = include_str!("openapi.json");

/// (frontend name, bound address) of every listener, filled by the shell once all are bound.
pub type BoundListeners = Arc<parking_lot::Mutex<Vec<(&'static str, SocketAddr)>>>;

/// What the admin API needs besides the engine.
#[derive(Debug, Clone)]
pub struct AdminSettings {
    /// Users that may authenticate only from a loopback address (`amqp.loopback_users`).
    pub loopback_users: Vec<String>,
    /// Largest request body accepted (`http.max_body_bytes`).
    pub max_body_bytes: usize,
    /// The bound listeners, for `/api/overview`.
    pub listeners: BoundListeners,
}

/// The admin API over the engine and (when AMQP is served) the AMQP frontend.
#[derive(Debug, Clone)]
pub struct AdminApi {
    engine: Engine,
    /// For the bytes on disk of partitions.
    broker: Arc<Broker>,
    amqp: Option<AmqpAdmin>,
    /// The Kafka coordinator's groups (state and members), when Kafka is served.
    kafka: Option<KafkaAdmin>,
    /// RocketMQ consumer groups' live members and offset resets, when RocketMQ is served.
    rocketmq: Option<RocketMqAdmin>,
    /// Every listener's open connections (Kafka and RocketMQ ones are listed from here).
    connections: OpenConnections,
    /// The last reading of each queue's counts, for `message_stats` rates.
    rates: Arc<rates::QueueRates>,
    settings: AdminSettings,
}

/// One authenticated request, routed.
struct Call<'a> {
    method: &'a Method,
    /// Path segments after `api`.
    path: Vec<String>,
    query: Option<&'a str>,
    body: Value,
    user: String,
}

impl AdminApi {
    pub fn new(broker: &Arc<Broker>, amqp: Option<AmqpAdmin>, settings: AdminSettings) -> Self {
        Self {
            engine: broker.engine(),
            broker: broker.clone(),
            amqp,
            kafka: None,
            rocketmq: None,
            connections: OpenConnections::default(),
            rates: Arc::default(),
            settings,
        }
    }

    /// Adds RocketMQ consumer groups' members and offset resets.
    pub fn with_rocketmq(mut self, rocketmq: Option<RocketMqAdmin>) -> Self {
        self.rocketmq = rocketmq;
        self
    }

    /// Lists (and closes) the connections the listeners register in `connections`.
    pub fn with_connections(mut self, connections: OpenConnections) -> Self {
        self.connections = connections;
        self
    }

    /// Adds the Kafka coordinator's view of groups (members and state).
    pub fn with_kafka(mut self, kafka: Option<KafkaAdmin>) -> Self {
        self.kafka = kafka;
        self
    }

    fn amqp(&self) -> Result<&AmqpAdmin, ApiError> {
        self.amqp
            .as_ref()
            .ok_or_else(|| ApiError::not_found("the AMQP listener is disabled (amqp.enabled)"))
    }

    /// Answers a request whose path starts with `/api`.
    pub async fn handle(&self, request: Request<Incoming>, peer: SocketAddr) -> HttpResponse {
        match self.respond(request, peer).await {
            Ok(response) => response,
            Err(error) => error.into_response(),
        }
    }

    async fn respond(
        &self,
        request: Request<Incoming>,
        peer: SocketAddr,
    ) -> Result<HttpResponse, ApiError> {
        let segments = request::segments(request.uri().path())?;
        if segments == ["api", "openapi.json"] {
            if request.method() != Method::GET {
                return Err(ApiError::method_not_allowed());
            }
            let body = Bytes::from_static(OPENAPI_JSON.as_bytes());
            return Ok(reply::with_type(StatusCode::OK, body, "application/json"));
        }
        let user = self.authenticate(request.headers(), peer).await?;
        let (parts, body) = request.into_parts();
        let body = match parts.method {
            Method::PUT | Method::POST => {
                let bytes =
                    request::read_body(&parts.headers, body, self.settings.max_body_bytes).await?;
                request::json_body(&bytes)?
            }
            _ => Value::Null,
        };
        let call = Call {
            method: &parts.method,
            path: segments.into_iter().skip(1).collect(),
            query: parts.uri.query(),
            body,
            user,
        };
        self.route(&call).await
    }

    /// The user of valid basic credentials that has the `administrator` tag.
    async fn authenticate(
        &self,
        headers: &hyper::HeaderMap,
        peer: SocketAddr,
    ) -> Result<String, ApiError> {
        let Some((user, password)) = request::basic_credentials(headers) else {
            return Err(ApiError::unauthorized(
                "HTTP basic credentials are required",
            ));
        };
        let store = self.engine.metadata.as_ref();
        let credentials = Credentials { user, password };
        if let Err(why) =
            login::verify(store, &credentials, peer, &self.settings.loopback_users).await
        {
            tracing::warn!(%peer, why, "admin API login refused");
            return Err(ApiError::unauthorized("invalid credentials"));
        }
        let tags = get_tags(store, &credentials.user).await?;
        if !tags.iter().any(|tag| tag == ADMINISTRATOR_TAG) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                format!(
                    "user '{}' has no '{ADMINISTRATOR_TAG}' tag",
                    credentials.user
                ),
            ));
        }
        Ok(credentials.user)
    }

    async fn route(&self, call: &Call<'_>) -> Result<HttpResponse, ApiError> {
        let path: Vec<&str> = call.path.iter().map(String::as_str).collect();
        match path.first().copied() {
            Some("overview") if path.len() == 1 => self.overview(call).await,
            Some("whoami") if path.len() == 1 => {
                get_only(call)?;
                let tags = get_tags(self.engine.metadata.as_ref(), &call.user).await?;
                Ok(reply::ok(
                    &serde_json::json!({ "name": call.user, "tags": tags }),
                ))
            }
            Some("vhosts") => self.vhosts(call, &path[1..]).await,
            Some("users") => self.users(call, &path[1..]).await,
            Some("permissions") => self.permissions(call, &path[1..]).await,
            Some("exchanges") => self.exchanges(call, &path[1..]).await,
            Some("queues") => self.queues(call, &path[1..]).await,
            Some("bindings") => self.bindings(call, &path[1..]).await,
            Some("connections") => self.connections(call, &path[1..]).await,
            Some("definitions") => self.definitions(call, &path[1..]).await,
            Some("topics") => self.topics(call, &path[1..]).await,
            Some("groups") => self.groups(call, &path[1..]).await,
            _ => Err(ApiError::not_found("no such API path")),
        }
    }
}

fn get_only(call: &Call<'_>) -> Result<(), ApiError> {
    match *call.method {
        Method::GET => Ok(()),
        _ => Err(ApiError::method_not_allowed()),
    }
}

fn not_found() -> ApiError {
    ApiError::not_found("no such API path")
}
