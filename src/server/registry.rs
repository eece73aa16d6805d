//! Which protocol frontends this build serves, and on which listener each is mounted.
//!
//! A frontend crate plugs in with one line in [`frontends`]:
//! `mounts.add(config.kafka_listener(), || Arc::new(tributary_kafka::KafkaFrontend::new(broker.engine(), ...)));`
//! The shell does the rest (binding, cap, metrics, shutdown). RocketMQ adds two lines, one for
//! the name server port and one for the broker port.

use std::sync::Arc;

use tributary_api::Frontend;

use crate::broker::Broker;
use crate::config::{Config, ListenerSpec};

/// A frontend and the listener that serves it.
#[derive(Debug, Clone)]
pub struct Mount {
    pub frontend: Arc<dyn Frontend>,
    pub listener: ListenerSpec,
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
            });
        }
    }

    pub fn into_vec(self) -> Vec<Mount> {
        self.0
    }
}

/// The frontends of this build.
pub fn frontends(broker: &Arc<Broker>, config: &Config) -> Vec<Mount> {
    let mut mounts = Mounts::default();
    // Frontends plug in here, one `mounts.add(config.<protocol>_listener(), || ...)` each; they
    // take their services from `broker.engine()`.
    mounts.add(config.amqp_listener(), || {
        Arc::new(tributary_amqp::AmqpFrontend::new(
            broker.engine(),
            tributary_amqp::AmqpSettings::default(),
        ))
    });
    mounts.add(config.kafka_listener(), || {
        Arc::new(tributary_kafka::KafkaFrontend::new(
            broker.engine(),
            tributary_kafka::KafkaSettings {
                advertised_host: config.kafka_advertised_host(),
                default_partitions: config.kafka.default_partitions,
                auto_create_topics: config.kafka.auto_create_topics,
            },
        ))
    });
    mounts.into_vec()
}
