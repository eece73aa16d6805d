//! A RocketMQ transactional producer and a consuming sink for tests (rocketmq-client-rust's
//! `TransactionMQProducer`): a message's `decision` property says what its local transaction
//! does, and a check-back answers as the listener was told.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use rocketmq_client_rust::{
    ClientResult, ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, LocalTransactionState,
    MessageListenerConcurrently, TransactionListener, TransactionMQProducer,
};
use rocketmq_model::common::message::MessageTrait;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;

use crate::rocketmq::Client;

/// The user property that tells the listener what its local transaction does.
pub(crate) const DECISION: &str = "decision";

pub(crate) fn property(msg: &dyn MessageTrait, name: &str) -> Option<String> {
    msg.property(&name.into()).map(|value| value.to_string())
}

pub(crate) fn decision_of(msg: &dyn MessageTrait) -> Option<String> {
    property(msg, DECISION)
}

pub(crate) fn state(decision: Option<&str>) -> LocalTransactionState {
    match decision {
        Some("commit") => LocalTransactionState::CommitMessage,
        Some("rollback") => LocalTransactionState::RollbackMessage,
        _ => LocalTransactionState::Unknown,
    }
}

/// The checks a listener answered: the message's decision and when it was asked.
pub(crate) type Checks = Arc<Mutex<Vec<(Option<String>, Instant)>>>;

/// What a check-back answers: the message's own `decision` (as a producer whose local
/// transactions all finished would), unless `on_check` names one.
pub(crate) const OWN_DECISION: &str = "own";

/// Executes the local transaction as the message's `decision` says; a check answers
/// `on_check` (or, with [`OWN_DECISION`], the message's decision) and records when it was asked.
pub(crate) struct Listener {
    pub(crate) on_check: &'static str,
    pub(crate) checks: Checks,
}

impl TransactionListener for Listener {
    fn execute_local_transaction(
        &self,
        msg: &dyn MessageTrait,
        _arg: Option<&(dyn std::any::Any + Send + Sync)>,
    ) -> LocalTransactionState {
        state(decision_of(msg).as_deref())
    }

    fn check_local_transaction(&self, msg: &MessageExt) -> LocalTransactionState {
        let decision = decision_of(msg);
        self.checks.lock().push((decision.clone(), Instant::now()));
        match self.on_check {
            OWN_DECISION => state(decision.as_deref()),
            fixed => state(Some(fixed)),
        }
    }
}

/// A consumed message: body, when it arrived, and its `TRAN_MSG` and `PGROUP` properties.
pub(crate) type Consumed = (Vec<u8>, Instant, Option<String>, Option<String>);

pub(crate) struct Sink(pub(crate) Arc<Mutex<Vec<Consumed>>>);

impl MessageListenerConcurrently for Sink {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut consumed = self.0.lock();
        for msg in msgs {
            consumed.push((
                msg.body().map(|b| b.to_vec()).unwrap_or_default(),
                Instant::now(),
                property(*msg, "TRAN_MSG"),
                property(*msg, "PGROUP"),
            ));
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

pub(crate) async fn transaction_producer(
    client: &Client,
    namesrv: &str,
    group: &str,
    topic: &str,
    listener: Listener,
) -> TransactionMQProducer {
    let mut producer = TransactionMQProducer::builder(client.runtime.clone())
        .producer_group(group.to_string())
        .name_server_addr(namesrv.to_string())
        .topics(vec![topic.to_string()])
        .transaction_listener(listener)
        .build();
    producer.start().await.expect("transaction producer start");
    producer
}

pub(crate) fn message(topic: &str, decision: &str, body: &[u8]) -> Message {
    Message::builder()
        .topic(topic)
        .tags("Tx")
        .raw_property(DECISION, decision)
        .expect("user property")
        .body(body.to_vec())
        .build()
        .expect("message")
}

pub(crate) fn bodies(consumed: &Mutex<Vec<Consumed>>) -> Vec<Vec<u8>> {
    consumed.lock().iter().map(|(b, ..)| b.clone()).collect()
}
