//! Issue 14's hardening suite against the real binary: one test binary, one module per area.

#[path = "../support/broker.rs"]
mod broker;
#[path = "../support/lapin.rs"]
mod lapin_support;

mod limits;
