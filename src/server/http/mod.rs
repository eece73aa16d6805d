//! The operator endpoint, HTTP/1.1 via hyper, served by the shared accept loop like any frontend.
//!
//! - `GET /metrics`: Prometheus text exposition (`text/plain; version=0.0.4`).
//! - `GET /health`: `200 ok` while serving, `503 shutting down` once shutdown has begun (the
//!   endpoint outlives the protocol listeners, so load balancers see the 503 during the drain).
//! - `/api/...`: the admin API ([`admin`]), when mounted with one.
//! - `/` and `/console/...`: the web console ([`console`]), with the admin API.
//! - any other path: 404; another method on a known path: 405.
//!
//! Invariants: a request is answered from the request alone (no state between requests but
//! the broker's); the `endpoint` label of the request counter takes only the fixed names
//! above, never a path a client sent.

pub mod admin;
pub mod console;
pub(crate) mod reply;
pub(crate) mod request;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio_util::sync::CancellationToken;
use tributary_api::{ConnectionContext, ConnectionError, Frontend};

use crate::telemetry::names;
use crate::telemetry::scrape::ScrapeHook;
use admin::AdminApi;
use reply::{HttpResponse, text};

/// The Prometheus text format version `/metrics` speaks.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4";
/// A client that has not sent its headers by then is dropped (slowloris).
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// hyper's floor for its read buffer.
const MIN_READ_BUFFER: usize = 8192;

/// Serves `/metrics`, `/health` and, when given one, the admin API and console.
#[derive(Debug)]
pub struct HttpEndpoint {
    metrics: PrometheusHandle,
    /// Cancelled when the broker starts shutting down; `/health` then answers 503.
    stopping: CancellationToken,
    /// Appends the families computed from broker state at scrape time.
    scrape: Option<ScrapeHook>,
    admin: Option<Arc<AdminApi>>,
    /// With several brokers: `/health` answers 503 while this broker holds no membership lease.
    cluster: Option<Arc<dyn tributary_api::ClusterView>>,
}

impl HttpEndpoint {
    pub fn new(metrics: PrometheusHandle, stopping: CancellationToken) -> Self {
        Self {
            metrics,
            stopping,
            scrape: None,
            admin: None,
            cluster: None,
        }
    }

    /// `/health` also requires the membership lease of `cluster`.
    pub fn with_cluster(mut self, cluster: Arc<dyn tributary_api::ClusterView>) -> Self {
        self.cluster = Some(cluster);
        self
    }

    /// `/metrics` also carries what `scrape` appends (see [`crate::telemetry::scrape`]).
    pub fn with_scrape(mut self, scrape: ScrapeHook) -> Self {
        self.scrape = Some(scrape);
        self
    }

    /// [`HttpEndpoint::new`] with the admin API under `/api` and the console.
    pub fn with_admin(
        metrics: PrometheusHandle,
        stopping: CancellationToken,
        admin: AdminApi,
    ) -> Self {
        Self {
            metrics,
            stopping,
            scrape: None,
            admin: Some(Arc::new(admin)),
            cluster: None,
        }
    }

    async fn respond(&self, request: Request<Incoming>, peer: SocketAddr) -> HttpResponse {
        let path = request.uri().path();
        let (endpoint, response) = match (path, &self.admin) {
            ("/metrics", _) => ("metrics", self.get_only(&request, || self.metrics_page())),
            ("/health", _) => ("health", self.get_only(&request, || self.health())),
            (path, Some(admin)) if path == "/api" || path.starts_with("/api/") => {
                ("api", admin.handle(request, peer).await)
            }
            (path, Some(_)) if path == "/" || path.starts_with("/console") => {
                let page = console::page(path);
                ("console", self.get_only(&request, || page))
            }
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
        page: impl FnOnce() -> HttpResponse,
    ) -> HttpResponse {
        if request.method() == Method::GET {
            return page();
        }
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET"));
        response
    }

    fn metrics_page(&self) -> HttpResponse {
        let mut page = self.metrics.render();
        if let Some(scrape) = &self.scrape {
            scrape.append(&mut page);
        }
        let mut response = Response::new(http_body_util::Full::new(Bytes::from(page)));
        response
            .headers_mut()
            .insert(CONTENT_TYPE, HeaderValue::from_static(METRICS_CONTENT_TYPE));
        response
    }

    fn health(&self) -> HttpResponse {
        if self.stopping.is_cancelled() {
            text(StatusCode::SERVICE_UNAVAILABLE, "shutting down\n")
        } else if let Some(cluster) = &self.cluster
            && !cluster.holds_lease()
        {
            text(
                StatusCode::SERVICE_UNAVAILABLE,
                "no membership lease: this broker serves no partition\n",
            )
        } else {
            text(StatusCode::OK, "ok\n")
        }
    }
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
        stream: tributary_api::ConnectionStream,
        context: ConnectionContext,
    ) -> Result<(), ConnectionError> {
        let peer = context.peer;
        let service =
            service_fn(
                |request| async move { Ok::<_, Infallible>(self.respond(request, peer).await) },
            );
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
                connection.as_mut().await?;
            }
        }
        Ok(())
    }
}
