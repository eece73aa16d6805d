//! The RocketMQ remoting frontend against the real binary: raw frames and rocketmq-client-rust
//! (groups, broadcast, delays, filters, transactions). One binary with a module per concern.

#[path = "../support/broker.rs"]
mod broker;
#[path = "../support/lapin.rs"]
mod lapin_support;
#[path = "../support/rocketmq.rs"]
mod rocketmq;
#[path = "../support/rocketmq_tx.rs"]
mod rocketmq_tx;
#[path = "../support/tls.rs"]
mod tls_support;

mod acl;
mod acl_white;
mod broadcast;
mod client;
mod client_binary;
mod delays;
mod filter;
mod groups;
mod tls;
mod transactions;
mod wire;
