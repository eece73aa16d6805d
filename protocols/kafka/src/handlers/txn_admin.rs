//! ListTransactions (API 66, v0-1) and DescribeTransactions (API 65, v0): the admin view of
//! this broker's transaction coordinator (KIP-664), answered as Kafka's coordinator does.
//!
//! State names are Kafka's: the coordinator's `Empty` is reported `CompleteCommit` or
//! `CompleteAbort` once a transaction of the id completed (Kafka keeps those states until the
//! next one starts), `Empty` before. ListTransactions keeps a transaction when it matches one of
//! the state filters (none: any state), one of the producer id filters (none: any) and, from
//! v1, runs for longer than the duration filter (negative: any); filter names Kafka does not
//! know come back in `unknown_state_filters`. Authorization (DESCRIBE on each transactional id,
//! as Kafka: refused ids are answered TRANSACTIONAL_ID_AUTHORIZATION_FAILED by Describe and
//! left out of List) happens in the guard.
//!
//! On a cluster no transaction is served (see [`super::txn`]): the list is empty and every id
//! is TRANSACTIONAL_ID_NOT_FOUND.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ListTransactionsRequest,
    ListTransactionsResponse, ProducerId, TopicName, TransactionalId,
};
use kafka_protocol::protocol::StrBytes;

use super::Broker;
use crate::txn::now_ms;
use crate::txn::state::{Status, TxnMeta};

/// Every state name Kafka's `TransactionState` knows (filters naming others are unknown).
const KAFKA_STATES: [&str; 8] = [
    "Empty",
    "Ongoing",
    "PrepareCommit",
    "PrepareAbort",
    "CompleteCommit",
    "CompleteAbort",
    "Dead",
    "PrepareEpochFence",
];

/// Kafka's name for the state of `meta`.
fn state_name(meta: &TxnMeta) -> &'static str {
    match (meta.status, meta.last_committed) {
        (Status::Empty, None) => "Empty",
        (Status::Empty, Some(true)) => "CompleteCommit",
        (Status::Empty, Some(false)) => "CompleteAbort",
        (Status::Ongoing, _) => "Ongoing",
        (Status::PrepareCommit, _) => "PrepareCommit",
        (Status::PrepareAbort, _) => "PrepareAbort",
    }
}

/// When the current (or last) transaction started, -1 before the first one (as Kafka).
fn start_time(meta: &TxnMeta) -> i64 {
    if meta.status == Status::Empty && meta.last_committed.is_none() {
        -1
    } else {
        meta.started_ms
    }
}

fn described(id: String, meta: &TxnMeta) -> TransactionState {
    let mut topics: Vec<TopicData> = Vec::new();
    for partition in &meta.partitions {
        let index = i32::try_from(partition.partition).unwrap_or(i32::MAX);
        match topics.last_mut() {
            // The partitions are sorted by topic, so each topic's are adjacent.
            Some(last) if last.topic.0.as_str() == partition.topic.as_str() => {
                last.partitions.push(index)
            }
            _ => topics.push(
                TopicData::default()
                    .with_topic(TopicName(StrBytes::from_string(partition.topic.clone())))
                    .with_partitions(vec![index]),
            ),
        }
    }
    TransactionState::default()
        .with_transactional_id(TransactionalId(StrBytes::from_string(id)))
        .with_transaction_state(StrBytes::from_static_str(state_name(meta)))
        .with_transaction_timeout_ms(meta.timeout_ms)
        .with_transaction_start_time_ms(start_time(meta))
        .with_producer_id(ProducerId(meta.producer_id))
        .with_producer_epoch(meta.epoch)
        .with_topics(topics)
}

fn not_found(id: String, code: i16) -> TransactionState {
    TransactionState::default()
        .with_error_code(code)
        .with_transactional_id(TransactionalId(StrBytes::from_string(id)))
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1)
        .with_transaction_start_time_ms(-1)
}

impl Broker {
    pub(super) async fn describe_transactions(
        &self,
        request: DescribeTransactionsRequest,
    ) -> DescribeTransactionsResponse {
        let ids: Vec<String> = request
            .transactional_ids
            .into_iter()
            .map(|id| id.0.to_string())
            .collect();
        let not_found_code = ResponseError::TransactionalIdNotFound.code();
        let states = if self.serves_transactions() {
            self.transactions
                .states(&self.txn_services(), Some(&ids))
                .await
        } else {
            Ok(ids.iter().map(|id| (id.clone(), None)).collect())
        };
        let answered = match states {
            Ok(states) => states
                .into_iter()
                .map(|(id, meta)| match meta {
                    Some(meta) => described(id, &meta),
                    None => not_found(id, not_found_code),
                })
                .collect(),
            Err(code) => ids.into_iter().map(|id| not_found(id, code)).collect(),
        };
        DescribeTransactionsResponse::default().with_transaction_states(answered)
    }

    pub(super) async fn list_transactions(
        &self,
        version: i16,
        request: ListTransactionsRequest,
    ) -> ListTransactionsResponse {
        let response = ListTransactionsResponse::default();
        let unknown: Vec<StrBytes> = request
            .state_filters
            .iter()
            .filter(|name| !KAFKA_STATES.contains(&name.as_str()))
            .cloned()
            .collect();
        let response = response.with_unknown_state_filters(unknown);
        if !self.serves_transactions() {
            return response;
        }
        let states = match self.transactions.states(&self.txn_services(), None).await {
            Ok(states) => states,
            Err(code) => return response.with_error_code(code),
        };
        // v0 has no duration filter (the field decodes as its default, -1, anyway).
        let duration = if version >= 1 {
            request.duration_filter
        } else {
            -1
        };
        let now = now_ms();
        let mut listed: Vec<ListedState> = states
            .into_iter()
            .filter_map(|(id, meta)| meta.map(|meta| (id, meta)))
            .filter(|(_, meta)| {
                let name = state_name(meta);
                (request.state_filters.is_empty()
                    || request.state_filters.iter().any(|s| s.as_str() == name))
                    && (request.producer_id_filters.is_empty()
                        || request
                            .producer_id_filters
                            .contains(&ProducerId(meta.producer_id)))
                    && (duration < 0 || now.saturating_sub(start_time(meta)) > duration)
            })
            .map(|(id, meta)| {
                ListedState::default()
                    .with_transactional_id(TransactionalId(StrBytes::from_string(id)))
                    .with_producer_id(ProducerId(meta.producer_id))
                    .with_transaction_state(StrBytes::from_static_str(state_name(&meta)))
            })
            .collect();
        listed.sort_by(|a, b| a.transactional_id.0.cmp(&b.transactional_id.0));
        response.with_transaction_states(listed)
    }
}
