//! The interop acceptance suite of issue 13: records written by each protocol's real client
//! (rdkafka/librdkafka, lapin, rocketmq-client-rust) read by the other two, checked against
//! the tables of docs/interop.md (values, keys, headers, timestamps, ordering, exact counts),
//! plus the four Kafka codecs, a mixed-codec run and a zlib-compressed RocketMQ body.
//!
//! Each test starts its own broker. Expected read forms are computed from the spec by
//! [`mapping`], never from what the broker currently does; a failing test lists every aspect
//! it found broken ([`checks`]).

#[path = "../support/broker.rs"]
mod broker;
#[path = "../support/kafka_txn.rs"]
mod kafka_txn;
#[path = "../support/lapin.rs"]
mod lapin_support;
#[path = "../support/rocketmq.rs"]
mod rocketmq;

mod amqp;
mod checks;
mod codecs;
mod from_amqp;
mod from_kafka;
mod from_rocketmq;
mod kafka;
mod mapping;
mod rmq;
mod superstream;
mod transactions;
