//! Hardening tests against the real binary, one module per concern (issue 14).

#[path = "../support/broker.rs"]
mod broker;
#[path = "../support/lapin.rs"]
mod lapin_support;
#[path = "../support/rocketmq.rs"]
mod rocketmq;

mod hostile;
