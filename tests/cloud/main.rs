//! The cloud engine (PostgreSQL + S3) against real services: the storage model, Kafka clients
//! end to end through the real binary, the one-PUT-one-transaction flush, failures and fencing,
//! wake-ups across brokers, the metadata store shared by brokers (users, permissions, ACLs,
//! exchanges), AMQP queues used through any broker (and their owner's death), AMQP and
//! RocketMQ appends forwarded to the partition leader, the internal RPC's secret, the GC of
//! objects no commit recorded, RocketMQ routes over several brokers, the scheduler's delayed
//! appends in PostgreSQL and the merging of small objects.
//!
//! Needs `TRIBUTARY_TEST_PG_URL`, `TRIBUTARY_TEST_S3_BUCKET` and the `AWS_*` variables that
//! `bash .ci/services start` prints; a test FAILS (never skips) when they are missing. Built only
//! with `--features cloud-tests`, so plain `cargo test` needs no service:
//! `eval "$(bash .ci/services start)" && cargo test --features cloud-tests --test cloud`.

// The RocketMQ client futures of kill_all_protocols are deeply nested async state machines.
#![recursion_limit = "256"]

mod amqp_deletions;
#[path = "../support/broker.rs"]
mod broker;
mod cluster;
mod engine;
mod flushes;
mod groups;
mod internal_rpc;
mod kafka;
#[path = "../support/kafka_wire.rs"]
mod kafka_wire;
mod kill_all_protocols;
mod merge;
mod metrics;
mod model_test;
mod outage;
mod producers;
mod queues;
mod records_model;
mod retention;
mod rocketmq_groups;
mod rocketmq_routes;
#[path = "../support/rocketmq.rs"]
mod rocketmq_support;
mod rocketmq_transactions;
#[path = "../support/rocketmq_tx.rs"]
mod rocketmq_tx;
// `rocketmq_tx` names the RocketMQ support module as the other test binaries mount it.
use rocketmq_support as rocketmq;
mod scheduled;
mod services;
mod shared_metadata;
mod tls;
#[path = "../support/tls.rs"]
mod tls_support;
mod topic_feeds;
mod topics;
mod wakeups;
// The in-memory model the local engine's suite checks storage against (tests/storage/model).
#[path = "../storage/model/reference.rs"]
mod model;
