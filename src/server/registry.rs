//! Which protocol frontends this build serves, and on which listener each is mounted.
//!
//! A frontend crate plugs in with one line in [`frontends`]:
//! `mounts.add(config.kafka_listener(), || Arc::new(tributary_kafka::KafkaFrontend::new(broker.engine(), ...)));`
//! The shell does the rest (binding, cap, metrics, shutdown). RocketMQ adds two lines, one for
//! the name server port and one for the broker port; its broker mount uses [`Mounts::add_announced`]
//! so the name server learns the broker's bound address before any connection is served.

use std::net::SocketAddr;
use std::sync::Arc;

use tributary_api::Frontend;

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
}

impl std::fmt::Debug for Mount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mount")
            .field("frontend", &self.frontend)
            .field("listener", &self.listener)
            .field("on_bound", &self.on_bound.is_some())
            .finish()
    }
}

/// The mounts being collected; disabled listeners are skipped without building the frontend.
#[derive(Debug, Default)]
pub struct Mounts(Vec<Mount>);

impl Mounts {
    pub fn add(&mut self, listener: ListenerSpec, build: impl FnOnce() -> Arc<dyn Frontend>) {
        if listener.enabled {
            self.0.push(Mount {
                frontend: build(),
                listener,
                on_bound: None,
            });
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
                frontend: build(),
                listener,
                on_bound: Some(Arc::new(on_bound)),
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
    // Frontends plug in here, one `mounts.add(config.<protocol>_listener(), || ...)` each; they
    // take their services from `broker.engine()`.
    mounts.add(config.amqp_listener(), || {
        let access = tributary_amqp::AccessSettings {
            loopback_users: config.loopback_users(),
            alarms: super::alarms::spawn_monitor(config, reload),
        };
        let frontend = tributary_amqp::AmqpFrontend::with_access(
            broker.engine(),
            tributary_amqp::AmqpSettings::default(),
            access,
        );
        amqp_admin = Some(frontend.admin());
        Arc::new(frontend)
    });
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
    };
    match broker.cloud().map(|cloud| cloud.cluster()) {
        None => mounts.add(config.kafka_listener(), || {
            let frontend = tributary_kafka::KafkaFrontend::new(broker.engine(), kafka_settings);
            kafka_admin = Some(frontend.admin());
            Arc::new(frontend)
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
                    Arc::new(frontend)
                },
                move |addr| members.set_kafka_port(addr.port()),
            );
        }
    }
    let engine = broker.engine();
    let access = Arc::new(tributary_amqp::access::StoreAccess::new(Arc::clone(
        &engine.metadata,
    )));
    let rocketmq =
        tributary_rocketmq::RocketMq::with_access(engine, config.rocketmq_settings(), access);
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
        move |addr| announce.broker_listening(addr),
    );
    Frontends {
        mounts: mounts.into_vec(),
        amqp: amqp_admin,
        kafka: kafka_admin,
        rocketmq: rocketmq_admin,
    }
}
