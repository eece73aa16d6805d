//! The AMQP 0-9-1 frontend against the real binary: raw-socket wire cases, lapin as a client
//! (queues, features, prefetch, access control) and queues fed from topics. One binary with a
//! module per concern: each binary links the whole broker.

#[path = "../support/broker.rs"]
mod broker;
#[path = "../support/lapin.rs"]
mod lapin_support;
#[path = "../support/rocketmq.rs"]
mod rocketmq;
#[path = "../support/tls.rs"]
mod tls_support;

mod access;
mod connection_gaps;
mod lapin_client;
mod lapin_features;
mod lapin_prefetch;
mod lapin_queues;
mod large_messages;
mod tls;
mod topic_feed;
mod wire;
