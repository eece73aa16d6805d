//! The Kafka frontend against the real binary: hand-encoded requests, bad input, rdkafka as a
//! client, SASL, compressed reads and TLS. One binary with a module per concern.

#[path = "../support/broker.rs"]
mod broker;
#[path = "../support/kafka_txn.rs"]
mod kafka_txn;
#[path = "../support/kafka_wire.rs"]
mod kafka_wire;
#[path = "../support/lapin.rs"]
mod lapin_support;
#[path = "../support/tls.rs"]
mod tls_support;

mod acl;
mod acl_txn;
mod bad_input;
mod compaction;
mod compressed_reads;
mod kip848;
mod rdkafka_client;
mod revoke_commit;
mod sasl;
mod tls;
mod transactions;
mod txn_admin;
mod txn_compaction;
mod txn_loop;
mod txn_verify;
mod txn_wire;
mod wire;
