//! The broker shell: opens the engine, serves every mounted frontend on its own listener plus
//! the HTTP endpoint, and shuts all of it down in order.
//!
//! Start-up: raise the soft open-files limit to the hard one, register SIGINT/SIGTERM, load the
//! TLS certificate when a listener speaks TLS ([`tls`]; SIGHUP reloads it when the binary passed
//! a reload function), open the broker (blocking, on the blocking pool), bind
//! every listener (a bind failure closes the broker and returns the error), start the broker's
//! background tasks, the frontends' background work and the accept loops, log each listening
//! address.
//!
//! Shutdown (SIGINT, SIGTERM, or the caller's future completes), each step logged:
//! 1. protocol listeners stop accepting and `/health` turns 503;
//! 2. open connections get `shutdown.drain_timeout_ms` to finish, then the rest are aborted;
//! 3. the broker's background tasks stop, then `Broker::close` flushes and fsyncs;
//! 4. the HTTP endpoint stops, and [`run`] returns.
//!
//! Invariants worth naming: no connection task is running when `Broker::close` is called
//! (the drain waits for or aborts all of them), and the HTTP endpoint never holds up the drain
//! (it has its own [`Lifecycle`]).

pub mod alarms;
pub mod connections;
pub mod fd_limit;
pub mod http;
pub mod listener;
pub mod registry;
pub mod shutdown;
pub mod tls;

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use metrics_exporter_prometheus::PrometheusHandle;
use tokio::net::TcpListener;
use tracing::{error, info, warn};
use tributary_api::EngineError;

use crate::broker::Broker;
use crate::config::{Config, ListenerSpec};
use crate::telemetry;
use http::HttpEndpoint;
use http::admin::{AdminApi, AdminSettings, BoundListeners};
use listener::{ConnectionRules, serve_listener_with};
use registry::Mount;
use shutdown::{DrainOutcome, Lifecycle, TerminationSignals};

/// How long the broker's background tasks get to stop before `close` runs anyway.
const BACKGROUND_STOP_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the HTTP endpoint gets to finish a scrape in flight at the very end.
const HTTP_STOP_TIMEOUT: Duration = Duration::from_millis(500);

/// Why the server could not start or stop cleanly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    #[error("cannot listen for termination signals")]
    Signals(#[source] io::Error),
    #[error("cannot open the broker")]
    OpenBroker(#[source] EngineError),
    #[error("cannot load the TLS configuration: `{}` {}", .0.key(), .0)]
    Tls(#[source] tls::TlsError),
    #[error("cannot bind the {protocol} listener to {addr}")]
    Bind {
        protocol: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("closing the broker failed; writes since the last fsync may be lost")]
    CloseBroker(#[source] EngineError),
    #[error("a blocking broker call panicked")]
    BrokerPanicked(#[source] tokio::task::JoinError),
}

/// Runs the broker with this build's frontends until a signal or `shutdown` completes.
pub async fn run(
    config: Config,
    metrics: PrometheusHandle,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    run_with(config, metrics, registry::frontends, shutdown).await
}

/// [`run`], and SIGHUP re-reads the configuration with `reload` to apply the limits that can
/// change at run time (the AMQP resource alarms, see [`alarms`]).
pub async fn run_reloadable(
    config: Config,
    metrics: PrometheusHandle,
    reload: alarms::Reload,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError> {
    let alarms_reload = Arc::clone(&reload);
    let mount = move |broker: &Arc<Broker>, config: &Config| {
        registry::frontends_with(broker, config, Some(alarms_reload))
    };
    run_inner(config, metrics, mount, Some(reload), shutdown).await
}

/// [`run`] with the frontends chosen by `mount`, which receives the opened broker.
pub async fn run_with<M, F>(
    config: Config,
    metrics: PrometheusHandle,
    mount: M,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError>
where
    M: FnOnce(&Arc<Broker>, &Config) -> F,
    F: Into<registry::Frontends>,
{
    run_inner(config, metrics, mount, None, shutdown).await
}

async fn run_inner<M, F>(
    config: Config,
    metrics: PrometheusHandle,
    mount: M,
    reload: Option<alarms::Reload>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), ServerError>
where
    M: FnOnce(&Arc<Broker>, &Config) -> F,
    F: Into<registry::Frontends>,
{
    let started = Instant::now();
    fd_limit::raise_open_files_limit();
    let mut signals = TerminationSignals::register().map_err(ServerError::Signals)?;
    let tls_server = tls::TlsServer::for_config(&config).map_err(ServerError::Tls)?;
    if let (Some(server), Some(reload)) = (&tls_server, reload) {
        tls::spawn_reload_on_hangup(Arc::clone(server), reload);
    }

    info!(data_dir = %config.data_dir.display(), "opening the broker");
    let settings = config.broker_settings();
    let cloud = match config.cloud_settings() {
        Some(cloud_settings) => {
            info!(objects = ?cloud_settings.objects, broker_id = cloud_settings.broker_id, "opening the cloud engine (PostgreSQL + object storage)");
            Some(
                crate::cloud::CloudEngine::open(cloud_settings)
                    .await
                    .map_err(|error| ServerError::OpenBroker(error.into()))?,
            )
        }
        None => None,
    };
    let broker = tokio::task::spawn_blocking(move || Broker::open_with_cloud(settings, cloud))
        .await
        .map_err(ServerError::BrokerPanicked)?
        .map_err(ServerError::OpenBroker)?;

    let connections = Lifecycle::new();
    // The HTTP endpoint keeps answering (503 on /health) until the broker is closed, so it has
    // its own lifecycle and never holds up the connection drain.
    let http = Lifecycle::new();
    let frontends: registry::Frontends = mount(&broker, &config).into();
    let listeners = BoundListeners::default();
    let open_connections = connections::OpenConnections::default();
    let admin = config.http.admin_enabled.then(|| {
        admin_api(&broker, &config, &frontends, listeners.clone())
            .with_connections(open_connections.clone())
    });
    let mut groups = vec![(frontends.mounts, &connections)];
    if config.http.enabled {
        let scrape = telemetry::scrape::ScrapeState::new(&broker, &config);
        let stopping = connections.shutdown.clone();
        let endpoint = match admin {
            Some(admin) => HttpEndpoint::with_admin(metrics.clone(), stopping, admin),
            None => HttpEndpoint::new(metrics.clone(), stopping),
        }
        .with_scrape(scrape.into_hook());
        let endpoint = match broker.cloud() {
            Some(cloud) => endpoint.with_cluster(cloud.cluster()),
            None => endpoint,
        };
        let mut http_mount = Mount::plain(Arc::new(endpoint), config.http_listener());
        if config.http.tls {
            http_mount.tls = tls::TlsRole::On;
        }
        groups.push((vec![http_mount], &http));
    }
    let mut bound = Vec::new();
    for (mounts, group) in groups {
        for mount in mounts {
            match bind(&config, &mount).await {
                Ok(listener) => bound.push((mount, listener, group)),
                Err(err) => {
                    close_broker(broker).await?;
                    return Err(err);
                }
            }
        }
    }

    // Every listener is bound before any is served, so frontends that advertise another
    // listener's address (the RocketMQ name server) know the real port even when it was 0.
    for (mount, listener, _) in &bound {
        if let (Some(on_bound), Ok(addr)) = (&mount.on_bound, listener.local_addr()) {
            on_bound(addr);
        }
        if let Ok(addr) = listener.local_addr() {
            listeners.lock().push((mount.label, addr));
        }
    }

    let background = Lifecycle::new();
    broker.spawn_background(&background.tracker, background.shutdown.clone());
    telemetry::spawn_upkeep(metrics, &background.tracker, background.shutdown.clone());

    for (mount, _, _) in &bound {
        mount
            .frontend
            .start_background(tributary_api::BackgroundContext {
                shutdown: background.shutdown.clone(),
                tracker: background.tracker.clone(),
            });
    }

    let budget = config.memory_budget();
    let send_budget = config.send_budget();
    for (mount, listener, group) in bound {
        // The listener's label: `kafka_tls` and `amqps` are told apart from `kafka` and `amqp`.
        let protocol = mount.label;
        match listener.local_addr() {
            Ok(addr) => {
                info!(protocol, %addr, max_connections = mount.listener.max_connections, tls = mount.tls.label(), "listening")
            }
            Err(err) => warn!(protocol, error = %err, "listening on an unknown address"),
        }
        let rules = ConnectionRules {
            timeouts: mount.listener.timeouts,
            budget: budget.clone(),
            send_budget: send_budget.clone(),
            connections: open_connections.clone(),
            tls_role: mount.tls,
            tls: tls_server.clone(),
        };
        let accept = serve_listener_with(
            mount.frontend,
            listener,
            mount.listener.limits,
            mount.listener.max_connections,
            rules,
            group.clone(),
        );
        group.tracker.spawn(accept);
    }
    info!(
        startup_ms = started.elapsed().as_millis() as u64,
        "tributary is serving"
    );

    tokio::select! {
        signal = signals.recv() => info!(signal, "shutdown requested"),
        () = shutdown => info!("shutdown requested by the embedding caller"),
    }

    info!(
        drain_timeout_ms = config.shutdown.drain_timeout_ms,
        "stopping: listeners stop accepting, /health answers 503, open connections drain"
    );
    match connections.drain(config.drain_timeout()).await {
        DrainOutcome::Drained => info!("all connections finished"),
        DrainOutcome::Aborted { tasks } => warn!(tasks, "drain deadline passed; aborted the rest"),
        DrainOutcome::Stuck { tasks } => {
            error!(
                tasks,
                "connections did not stop after abort; closing the broker anyway"
            )
        }
    }
    if background.drain(BACKGROUND_STOP_TIMEOUT).await != DrainOutcome::Drained {
        warn!("broker background tasks did not stop in time");
    }
    info!("background tasks stopped; closing the broker");
    close_broker(broker).await?;
    info!("broker closed: data flushed and fsynced");
    http.drain(HTTP_STOP_TIMEOUT).await;
    info!("shutdown complete");
    Ok(())
}

/// The admin API over the opened broker; `listeners` is filled once every listener is bound.
fn admin_api(
    broker: &Arc<Broker>,
    config: &Config,
    frontends: &registry::Frontends,
    listeners: BoundListeners,
) -> AdminApi {
    let settings = AdminSettings {
        loopback_users: config.loopback_users(),
        max_body_bytes: usize::try_from(config.http.max_body_bytes).unwrap_or(usize::MAX),
        listeners,
    };
    AdminApi::new(broker, frontends.amqp.clone(), settings)
        .with_kafka(frontends.kafka.clone())
        .with_rocketmq(frontends.rocketmq.clone())
}

async fn bind(config: &Config, mount: &Mount) -> Result<TcpListener, ServerError> {
    let ListenerSpec { port, .. } = mount.listener;
    let addr = SocketAddr::new(config.bind, port);
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServerError::Bind {
            protocol: mount.label,
            addr,
            source,
        })
}

async fn close_broker(broker: Arc<Broker>) -> Result<(), ServerError> {
    if let Some(cloud) = broker.cloud() {
        cloud.close().await;
    }
    tokio::task::spawn_blocking(move || broker.close())
        .await
        .map_err(ServerError::BrokerPanicked)?
        .map_err(ServerError::CloseBroker)
}
