//! Issue 14's hardening suite against the real binary: hostile peers, connection rules and
//! input limits. One binary with a module per concern (each binary links the whole broker).

#[path = "../support/broker.rs"]
mod broker;
#[path = "../support/kafka_wire.rs"]
mod kafka_wire;
#[path = "../support/lapin.rs"]
mod lapin_support;
#[path = "../support/rocketmq.rs"]
mod rocketmq;

mod conns;
mod hostile;
mod limits;
mod output;
mod security;
