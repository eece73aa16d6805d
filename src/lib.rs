//! Tributary: one broker for Kafka, AMQP 0-9-1 and RocketMQ clients over one log engine.
//!
//! Module map (dependencies point downwards only):
//! - [`server`]: listeners, connection caps, the HTTP endpoint, graceful shutdown.
//! - [`broker`]: implements the `tributary-api` traits over storage and the metadata store
//!   (topics, consumer offsets, queues with acks, delayed delivery).
//! - [`storage`]: segments, indexes, recovery, retention, durability. Synchronous; no tokio and
//!   no protocol types (`.ci/run` checks this).
//! - [`config`], [`telemetry`], [`cli`], [`users`], [`vhosts`], [`admin_cli`] and [`admin_client`]
//!   (the user/vhost/permissions commands through a running broker's admin API): the process edge.

pub mod admin_cli;
pub mod admin_client;
pub mod bench;
pub mod broker;
pub mod cli;
pub mod cloud;
pub mod config;
pub mod server;
pub mod storage;
pub mod telemetry;
pub mod users;
pub mod vhosts;
