//! The Kafka frontend against the real binary: hand-encoded requests, bad input, rdkafka as a
//! client, SASL and compressed reads. One binary with a module per concern.

#[path = "../support/broker.rs"]
mod broker;
#[path = "../support/kafka_wire.rs"]
mod kafka_wire;
#[path = "../support/lapin.rs"]
mod lapin_support;

mod acl;
mod bad_input;
mod compressed_reads;
mod rdkafka_client;
mod sasl;
mod wire;
