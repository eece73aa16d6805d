//! Responses of the HTTP endpoint: plain text for `/metrics` and `/health`, JSON for the admin
//! API, with its errors in the RabbitMQ management API's shape (`{"error", "reason"}`).

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE};
use hyper::{Response, StatusCode};
use tributary_amqp::error::AmqpError;
use tributary_api::EngineError;

pub(crate) type HttpResponse = Response<Full<Bytes>>;

pub(crate) fn text(status: StatusCode, body: &'static str) -> HttpResponse {
    with_type(
        status,
        Bytes::from_static(body.as_bytes()),
        "text/plain; charset=utf-8",
    )
}

pub(crate) fn with_type(
    status: StatusCode,
    body: Bytes,
    content_type: &'static str,
) -> HttpResponse {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

pub(crate) fn json(status: StatusCode, value: &serde_json::Value) -> HttpResponse {
    let body = serde_json::to_vec(value).unwrap_or_default();
    with_type(status, Bytes::from(body), "application/json")
}

pub(crate) fn ok(value: &serde_json::Value) -> HttpResponse {
    json(StatusCode::OK, value)
}

/// `201 Created` for a new resource, `204 No Content` for a change (as RabbitMQ answers PUTs).
pub(crate) fn no_content() -> HttpResponse {
    with_type(StatusCode::NO_CONTENT, Bytes::new(), "application/json")
}

pub(crate) fn created() -> HttpResponse {
    with_type(StatusCode::CREATED, Bytes::new(), "application/json")
}

/// An admin API failure: the status and the reason shown to the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ApiError {
    pub(crate) status: StatusCode,
    pub(crate) reason: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, reason: impl Into<String>) -> Self {
        Self {
            status,
            reason: reason.into(),
        }
    }

    pub(crate) fn bad_request(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, reason)
    }

    pub(crate) fn not_found(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, reason)
    }

    pub(crate) fn method_not_allowed() -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "method not allowed")
    }

    pub(crate) fn unauthorized(reason: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, reason)
    }

    pub(crate) fn into_response(self) -> HttpResponse {
        let error = match self.status {
            StatusCode::UNAUTHORIZED => "not_authorised",
            StatusCode::FORBIDDEN => "not_authorised",
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            status if status.is_server_error() => "internal_error",
            _ => "bad_request",
        };
        let body = serde_json::json!({ "error": error, "reason": self.reason });
        let mut response = json(self.status, &body);
        if self.status == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"Tributary\""),
            );
        }
        response
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        let status = match &error {
            EngineError::UnknownTopic(_)
            | EngineError::UnknownPartition { .. }
            | EngineError::UnknownQueue(_) => StatusCode::NOT_FOUND,
            EngineError::TopicExists(_) => StatusCode::CONFLICT,
            EngineError::InvalidName(_)
            | EngineError::InvalidPartitions { .. }
            | EngineError::PartitionCountFixed { .. }
            | EngineError::PartitionLimit { .. }
            | EngineError::InvalidSetting { .. }
            | EngineError::OffsetOutOfRange { .. }
            | EngineError::InvalidUser(_)
            | EngineError::Metadata { .. } => StatusCode::BAD_REQUEST,
            EngineError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        };
        if status.is_server_error() {
            tracing::error!(error = %error, "admin API request failed");
        }
        Self::new(status, error.to_string())
    }
}

impl From<AmqpError> for ApiError {
    fn from(error: AmqpError) -> Self {
        match error {
            AmqpError::Channel(reply) | AmqpError::Connection(reply) => {
                let status = match reply.code {
                    tributary_amqp::error::NOT_FOUND => StatusCode::NOT_FOUND,
                    _ => StatusCode::BAD_REQUEST,
                };
                Self::new(status, reply.text)
            }
            other => {
                tracing::error!(error = %other, "admin API request failed");
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, other.to_string())
            }
        }
    }
}
