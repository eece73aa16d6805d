//! Which protocol frontends this build serves, and on which listener each is mounted.
//!
//! A frontend crate plugs in with one line in [`frontends`]:
//! `mounts.add(config.kafka_listener(), || Arc::new(tributary_kafka::KafkaFrontend::new(broker.engine(), ...)));`
//! The shell does the rest (binding, cap, metrics, shutdown). RocketMQ adds two lines, one for
//! the name server port and one for the broker port; its broker mount uses [`Mounts::add_announced`]
//! so the name server learns the broker's bound address before any connection is served.
//!
//! TLS: a mount says how its listener uses TLS ([`TlsRole`]); the shell supplies the one
//! certificate configuration. Kafka and AMQP serve TLS on a second listener (`kafka.tls_port`,
//! `amqp.tls_port`) mounted with the same frontend instance as the plain one
//! ([`Mounts::add_shared`]), so both listeners share one broker state; RocketMQ and HTTP speak
//! TLS on their own ports (`rocketmq.tls`, `http.tls`).

use std::net::SocketAddr;
use std::sync::Arc;

use tributary_api::Frontend;

use super::tls::TlsRole;
use crate::broker::Broker;
use crate::config::{Config, ListenerSpec};

/// Told the bound address of a listener after binding and before its accept loop starts.
pub type BoundHook = Arc<dyn Fn(SocketAddr) + Send + Sync>;

/// A frontend and the listener that serves it.
#[derive(Clone)]
pub struct Mount {
    pub frontend: Arc<dyn Frontend>,
    pub listener: ListenerSpec,
    /// Called with the bound address once every listener is bound, before any is served.
    pub on_bound: Option<BoundHook>,
    /// The listener's name in logs and the admin API: the frontend's name, or `kafka_tls` /
    /// `amqps` for a frontend's second (TLS) listener.
    pub label: &'static str,
    /// Whether the listener speaks TLS.
    pub tls: TlsRole,
}

impl Mount {
    /// `frontend` on `listener`, plain TCP, named after the frontend.
    pub fn plain(frontend: Arc<dyn Frontend>, listener: ListenerSpec) -> Self {
        Self {
            label: frontend.name(),
            frontend,
            listener,
            on_bound: None,
            tls: TlsRole::Off,
        }
    }
}

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mount")
            .field("frontend", &self.frontend)
            .field("listener", &self.listener)
            .field("on_bound", &self.on_bound.is_some())
            .field("label", &self.label)
            .field("tls", &self.tls)
            .finish()
    }
}

/// The mounts being collected; disabled listeners are skipped without building the frontend.
#[derive(Debug, Default)]
pub struct Mounts(Vec<Mount>);

impl Mounts {
    pub fn add(&mut self, listener: ListenerSpec, build: impl FnOnce() -> Arc<dyn Frontend>) {
        if listener.enabled {
            self.0.push(Mount::plain(build(), listener));
        }
    }

    /// Mounts an already built frontend on a further listener named `label`.
    pub fn add_shared(
        &mut self,
        label: &'static str,
        listener: ListenerSpec,
        frontend: Arc<dyn Frontend>,
        tls: TlsRole,
    ) {
        if listener.enabled {
            self.0.push(Mount {
                label,
                tls,
                ..Mount::plain(frontend, listener)
            });
        }
    }

    /// Like [`Mounts::add_shared`], and `on_bound` learns the address the listener bound
    /// before any listener accepts a connection.
    pub fn add_shared_announced(
        &mut self,
        label: &'static str,
        listener: ListenerSpec,
        frontend: Arc<dyn Frontend>,
        tls: TlsRole,
        on_bound: impl Fn(SocketAddr) + Send + Sync + 'static,
    ) {
        if listener.enabled {
            self.0.push(Mount {
                label,
                tls,
                on_bound: Some(Arc::new(on_bound)),
                ..Mount::plain(frontend, listener)
            });
        }
    }

    /// Makes every listener mounted so far whose frontend is named `name` use TLS as `tls` says.
    pub fn set_tls(&mut self, name: &str, tls: TlsRole) {
        for mount in self
            .0
            .iter_mut()
            .filter(|mount| mount.frontend.name() == name)
        {
            mount.tls = tls;
        }
    }

    /// Like [`Mounts::add`], and `on_bound` learns the address the listener bound (port 0 in
    /// tests) before any listener accepts a connection.
    pub fn add_announced(
        &mut self,
        listener: ListenerSpec,
        build: impl FnOnce() -> Arc<dyn Frontend>,
        on_bound: impl Fn(SocketAddr) + Send + Sync + 'static,
    ) {
        if listener.enabled {
            self.0.push(Mount {
                on_bound: Some(Arc::new(on_bound)),
                ..Mount::plain(build(), listener)
            });
        }
    }

    pub fn into_vec(self) -> Vec<Mount> {
        self.0
    }
}

/// The mounted frontends, and the admin handles of the AMQP, Kafka and RocketMQ frontends.
#[derive(Debug, Default)]
pub struct Frontends {
    pub mounts: Vec<Mount>,
    pub amqp: Option<tributary_amqp::admin::AmqpAdmin>,
    pub kafka: Option<tributary_kafka::admin::KafkaAdmin>,
    pub rocketmq: Option<tributary_rocketmq::admin::RocketMqAdmin>,
}

impl From<Vec<Mount>> for Frontends {
    fn from(mounts: Vec<Mount>) -> Self {
        Self {
            mounts,
            amqp: None,
            kafka: None,
            rocketmq: None,
        }
    }
}

/// The frontends of this build.
pub fn frontends(broker: &Arc<Broker>, config: &Config) -> Frontends {
    frontends_with(broker, config, None)
}

/// [`frontends`], with the configuration reload that SIGHUP triggers.
pub fn frontends_with(
    broker: &Arc<Broker>,
    config: &Config,
    reload: Option<super::alarms::Reload>,
) -> Frontends {
    let mut mounts = Mounts::default();
    let mut amqp_admin = None;
    let mut kafka_admin = None;
    // The frontends that also get a TLS listener, once built.
    let mut amqp_frontend: Option<Arc<dyn Frontend>> = None;
    let mut kafka_frontend: Option<Arc<dyn Frontend>> = None;
    // Frontends plug in here, one `mounts.add(config.<protocol>_listener(), || ...)` each; they
    // take their services from `broker.engine()` (AMQP and RocketMQ from
    // `engine_forwarding()`: their appends reach partitions other brokers lead).
    mounts.add(config.amqp_listener(), || {
        let access = tributary_amqp::AccessSettings {
            loopback_users: config.loopback_users(),
            alarms: super::alarms::spawn_monitor(config, reload),
        };
        let frontend = tributary_amqp::AmqpFrontend::with_access(
            broker.engine_forwarding(),
            config.amqp_settings(),
            access,
        );
        // Several brokers over one log: each topic feed runs on its partition's leader.
        if let Some(cloud) = broker.cloud() {
            frontend.join_cluster(cloud.cluster());
        }
        amqp_admin = Some(frontend.admin());
        let frontend: Arc<dyn Frontend> = Arc::new(frontend);
        amqp_frontend = Some(Arc::clone(&frontend));
        frontend
    });
    if let (Some(frontend), Some(listener)) = (amqp_frontend, config.amqp_tls_listener()) {
        mounts.add_shared("amqps", listener, frontend, TlsRole::On);
    }
    let kafka_settings = tributary_kafka::KafkaSettings {
        advertised_host: config.kafka_advertised_host(),
        default_partitions: config.kafka.default_partitions,
        auto_create_topics: config.kafka.auto_create_topics,
        // One authentication rule for every listener (`Config::authentication_on`).
        sasl_enabled: config.authentication_on(),
        authorizer: config.kafka.authorizer,
        super_users: config.kafka.super_users.clone(),
        sasl_max_receive_bytes: config.kafka.sasl_max_receive_bytes,
        max_pipelined_produces: config.kafka_max_pipelined_produces(),
        consumer_groups: tributary_kafka::ConsumerGroupSettings {
            heartbeat_interval: std::time::Duration::from_millis(
                config.kafka.group_consumer_heartbeat_interval_ms.max(1),
            ),
            session_timeout: std::time::Duration::from_millis(
                config.kafka.group_consumer_session_timeout_ms.max(1),
            ),
            max_size: config.kafka.group_consumer_max_size.max(1),
        },
    };
    match broker.cloud().map(|cloud| cloud.cluster()) {
        None => mounts.add(config.kafka_listener(), || {
            let frontend = tributary_kafka::KafkaFrontend::new(broker.engine(), kafka_settings);
            kafka_admin = Some(frontend.admin());
            let frontend: Arc<dyn Frontend> = Arc::new(frontend);
            kafka_frontend = Some(Arc::clone(&frontend));
            frontend
        }),
        // Several brokers over one log: leaders and coordinators from the membership, which
        // advertises the port the listener bound.
        Some(cluster) => {
            let members = cluster.members().clone();
            mounts.add_announced(
                config.kafka_listener(),
                || {
                    let frontend = tributary_kafka::KafkaFrontend::with_cluster(
                        broker.engine(),
                        kafka_settings,
                        cluster,
                    );
                    kafka_admin = Some(frontend.admin());
                    let frontend: Arc<dyn Frontend> = Arc::new(frontend);
                    kafka_frontend = Some(Arc::clone(&frontend));
                    frontend
                },
                {
                    let members = members.clone();
                    move |addr| members.set_kafka_port(addr.port())
                },
            );
            // Kafka `SSL` (or `SASL_SSL`) on the cloud engine: the membership advertises the
            // TLS port too, and Metadata names each broker's TLS port to a client of this one.
            if let (Some(frontend), Some(listener)) =
                (kafka_frontend.take(), config.kafka_tls_listener())
            {
                mounts.add_shared_announced(
                    "kafka_tls",
                    listener,
                    frontend,
                    TlsRole::On,
                    move |addr| members.set_kafka_tls_port(addr.port()),
                );
            }
        }
    }
    // Kafka `SSL` (or `SASL_SSL`): Metadata names the port a client came in on, so a client
    // of this listener is sent back to it.
    if let (Some(frontend), Some(listener)) = (kafka_frontend, config.kafka_tls_listener()) {
        mounts.add_shared("kafka_tls", listener, frontend, TlsRole::On);
    }
    let engine = broker.engine_forwarding();
    let access = Arc::new(tributary_amqp::access::StoreAccess::new(Arc::clone(
        &engine.metadata,
    )));
    let rocketmq =
        tributary_rocketmq::RocketMq::with_access(engine, config.rocketmq_settings(), access);
    // Several brokers over one log: routes from the membership, which advertises the RocketMQ
    // broker port the listener bound.
    let members = broker.cloud().map(|cloud| {
        let cluster = cloud.cluster();
        rocketmq.join_cluster(cluster.clone());
        rocketmq.share_consumer_groups(cloud.roster());
        cluster.members().clone()
    });
    let announce = rocketmq.clone();
    let rocketmq_admin = config
        .rocketmq_broker_listener()
        .enabled
        .then(|| rocketmq.admin());
    mounts.add(config.rocketmq_namesrv_listener(), || {
        Arc::new(rocketmq.namesrv())
    });
    mounts.add_announced(
        config.rocketmq_broker_listener(),
        || Arc::new(rocketmq.broker()),
        move |addr| {
            announce.broker_listening(addr);
            if let Some(members) = &members {
                members.set_rocketmq_port(addr.port());
            }
        },
    );
    let rocketmq_tls = TlsRole::from(config.rocketmq.tls);
    mounts.set_tls("rocketmq-namesrv", rocketmq_tls);
    mounts.set_tls("rocketmq-broker", rocketmq_tls);
    Frontends {
        mounts: mounts.into_vec(),
        amqp: amqp_admin,
        kafka: kafka_admin,
        rocketmq: rocketmq_admin,
    }
}
