//! Hostile peers against the real binary: connection rules, input limits and fuzzed input.
//! One binary with a module per concern (each binary links the whole broker).

#[path = "../support/broker.rs"]
mod broker;

mod conns;
