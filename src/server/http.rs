//! The operator endpoint, HTTP/1.1 via hyper, served by the shared accept loop like any frontend.
//!
//! - `GET /metrics`: Prometheus text exposition (`text/plain; version=0.0.4`).
//! - `GET /health`: `200 ok` while serving, `503 shutting down` once shutdown has begun (the
//!   endpoint outlives the protocol listeners, so load balancers see the 503 during the drain).
//! - any other path: 404; another method on a known path: 405.

use std::convert::Infallible;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tributary_api::{ConnectionContext, ConnectionError, Frontend};

use crate::telemetry::names;
use crate::telemetry::scrape::ScrapeHook;

/// The Prometheus text format version `/metrics` speaks.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";
/// A client that has not sent its headers by then is dropped (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// hyper's floor for its read buffer.
const MIN_READ_BUFFER: usize = 8192;

/// Serves `/metrics` and `/health`.
#[derive(Debug)]
pub struct HttpEndpoint {
    metrics: PrometheusHandle,
    /// Cancelled when the broker starts shutting down; `/health` then answers 503.
    stopping: CancellationToken,
    /// Appends the families computed from broker state at scrape time.
    scrape: Option<ScrapeHook>,
}

impl HttpEndpoint {
    pub fn new(metrics: PrometheusHandle, stopping: CancellationToken) -> Self {
        Self {
            metrics,
            stopping,
            scrape: None,
        }
    }

    /// `/metrics` also carries what `scrape` appends (see [`crate::telemetry::scrape`]).
    pub fn with_scrape(mut self, scrape: ScrapeHook) -> Self {
        self.scrape = Some(scrape);
        self
    }

    fn respond(&self, request: &Request<Incoming>) -> Response<Full<Bytes>> {
        let (endpoint, response) = match request.uri().path() {
            "/metrics" => ("metrics", self.get_only(request, || self.metrics_page())),
            "/health" => ("health", self.get_only(request, || self.health())),
            _ => ("other", text(StatusCode::NOT_FOUND, "not found\n")),
        };
        metrics::counter!(
            names::HTTP_REQUESTS,
            "endpoint" => endpoint,
            "status" => response.status().as_u16().to_string()
        )
        .increment(1);
        response
    }

    fn get_only(
        &self,
        request: &Request<Incoming>,
        page: impl FnOnce() -> Response<Full<Bytes>>,
    ) -> Response<Full<Bytes>> {
        if request.method() == Method::GET {
            return page();
        }
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        response
    }

    fn metrics_page(&self) -> Response<Full<Bytes>> {
        let mut page = self.metrics.render();
        if let Some(scrape) = &self.scrape {
            scrape.append(&mut page);
        }
        let mut response = Response::new(Full::new(Bytes::from(page)));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
        response
    }

    fn health(&self) -> Response<Full<Bytes>> {
        if self.stopping.is_cancelled() {
            text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
        } else {
            text(StatusCode::OK, "ok\n")
        }
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[async_trait]
impl Frontend for HttpEndpoint {
    fn name(&self) -> &'static str {
        "http"
    }

    fn default_port(&self) -> u16 {
        9464
    }

    async fn serve_connection(
        &self,
        stream: TcpStream,
        context: ConnectionContext,
    ) -> Result<(), ConnectionError> {
        let service = service_fn(|request| {
            let response = self.respond(&request);
            async move { Ok::<_, Infallible>(response) }
        });
        let connection = http1::Builder::new()
            .timer(TokioTimer::new())
            .header_read_timeout(HEADER_READ_TIMEOUT)
            .max_buf_size(context.limits.max_frame_bytes.max(MIN_READ_BUFFER))
            .serve_connection(TokioIo::new(stream), service);
        tokio::pin!(connection);
        tokio::select! {
            result = connection.as_mut() => result?,
            () = context.shutdown.cancelled() => {
                // Finishes the response in flight, then closes (idle keep-alive closes at once).
                connection.as_mut().graceful_shutdown();
                connection.await?;
            }
        }
        Ok(())
    }
}
