//! The TRANSACTIONAL_ID resource of `kafka.authorizer`, as Kafka's `KafkaApis` checks it:
//! InitProducerId with a transactional id needs WRITE on that id, FindCoordinator for a
//! transaction (key type 1) DESCRIBE on each id it names (checked in [`super::coordinator`]),
//! both answered TRANSACTIONAL_ID_AUTHORIZATION_FAILED (53) otherwise. The transaction APIs
//! (AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit) and Produce with a
//! transactional id check WRITE through [`Broker::may_use_transactional_id`], the one place
//! this decision is made; AddOffsetsToTxn and TxnOffsetCommit also READ on their group
//! (GROUP_AUTHORIZATION_FAILED, 30). AddPartitionsToTxn v4+ is the form Kafka's brokers send
//! their transaction coordinator: CLUSTER_ACTION on the cluster, as Kafka 4.x checks it, and
//! no check of the ids or topics it names.
//!
//! Invariants: a check happens before the handler sees the request, so what an authorized
//! request is answered does not depend on the ACLs; every refusal is logged with the principal
//! and the id; an id is never created or remembered by a refused request.

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::describe_transactions_response::TransactionState as DescribedTransaction;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnResponse, AddPartitionsToTxnRequest, AddPartitionsToTxnResponse,
    DescribeTransactionsRequest, EndTxnResponse, TxnOffsetCommitResponse,
};
use tracing::info;

use super::*;

/// TRANSACTIONAL_ID_AUTHORIZATION_FAILED.
pub(crate) const TRANSACTIONAL_ID_DENIED: i16 =
    ResponseError::TransactionalIdAuthorizationFailed.code();
/// FindCoordinator's key type of a transactional id (0 is a group).
pub(crate) const TRANSACTION_KEY_TYPE: i8 = 1;

impl Broker {
    /// Whether the caller may `op` the transactional id `id` (WRITE to use it, DESCRIBE to
    /// find its coordinator); a refusal is logged.
    pub(crate) async fn may_use_transactional_id(
        &self,
        context: &RequestContext,
        op: i8,
        id: &str,
    ) -> bool {
        let allowed = self.may(context, op, resource::TRANSACTIONAL_ID, id).await;
        if !allowed {
            info!(
                principal = %context.principal,
                host = %context.host,
                transactional_id = id,
                operation = op,
                "Kafka transactional id refused by the ACL"
            );
        }
        allowed
    }

    /// InitProducerId with a transactional id: WRITE on it, or the refusal to answer.
    pub(super) async fn guard_transactional_init(
        &self,
        context: &RequestContext,
        id: &str,
    ) -> Option<InitProducerIdResponse> {
        if self
            .may_use_transactional_id(context, operation::WRITE, id)
            .await
        {
            return None;
        }
        Some(
            InitProducerIdResponse::default()
                .with_error_code(TRANSACTIONAL_ID_DENIED)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        )
    }

    /// DescribeTransactions: DESCRIBE on each id; the others are answered refused.
    pub(super) async fn guard_describe_transactions(
        &self,
        context: &RequestContext,
        mut request: DescribeTransactionsRequest,
    ) -> Guard {
        let mut denied = Vec::new();
        let mut kept = Vec::new();
        for id in std::mem::take(&mut request.transactional_ids) {
            if self
                .may_use_transactional_id(context, operation::DESCRIBE, &id)
                .await
            {
                kept.push(id);
            } else {
                denied.push(
                    DescribedTransaction::default()
                        .with_error_code(TRANSACTIONAL_ID_DENIED)
                        .with_transactional_id(id)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1)
                        .with_transaction_start_time_ms(-1),
                );
            }
        }
        request.transactional_ids = kept;
        Guard::Serve(
            KafkaRequest::DescribeTransactions(request),
            Patch::DescribeTransactions(denied),
        )
    }

    /// AddPartitionsToTxn v4+: CLUSTER_ACTION on the cluster, else the whole request is answered
    /// CLUSTER_AUTHORIZATION_FAILED at the top level with no transaction results (Kafka's
    /// `getErrorResponse` for v4+).
    pub(super) async fn guard_batched_add_partitions(
        &self,
        context: &RequestContext,
        request: AddPartitionsToTxnRequest,
    ) -> Guard {
        if self
            .may(
                context,
                operation::CLUSTER_ACTION,
                resource::CLUSTER,
                CLUSTER_NAME,
            )
            .await
        {
            return Guard::Serve(KafkaRequest::AddPartitionsToTxn(request), Patch::None);
        }
        info!(
            principal = %context.principal,
            host = %context.host,
            transactions = request.transactions.len(),
            "Kafka AddPartitionsToTxn v4+ refused: CLUSTER_ACTION is a broker's permission"
        );
        Guard::Answer(KafkaResponse::AddPartitionsToTxn(
            AddPartitionsToTxnResponse::default().with_error_code(CLUSTER_DENIED),
        ))
    }

    /// AddPartitionsToTxn, AddOffsetsToTxn, EndTxn, TxnOffsetCommit: WRITE on the id, and
    /// READ on the group for the two that name one; a refusal answers the whole request.
    pub(super) async fn guard_transaction_api(
        &self,
        context: &RequestContext,
        request: KafkaRequest,
    ) -> Guard {
        let (id, group) = match &request {
            KafkaRequest::AddPartitionsToTxn(r) => (&r.v3_and_below_transactional_id, None),
            KafkaRequest::AddOffsetsToTxn(r) => (&r.transactional_id, Some(&r.group_id)),
            KafkaRequest::EndTxn(r) => (&r.transactional_id, None),
            KafkaRequest::TxnOffsetCommit(r) => (&r.transactional_id, Some(&r.group_id)),
            _ => return Guard::Serve(request, Patch::None),
        };
        let code = if !self
            .may_use_transactional_id(context, operation::WRITE, id.0.as_str())
            .await
        {
            TRANSACTIONAL_ID_DENIED
        } else if let Some(group) = group
            && !self
                .on_group(context, operation::READ, group.0.as_str())
                .await
        {
            GROUP_DENIED
        } else {
            return Guard::Serve(request, Patch::None);
        };
        let answer = match request {
            KafkaRequest::AddPartitionsToTxn(r) => {
                let topics = r
                    .v3_and_below_topics
                    .into_iter()
                    .map(|topic| {
                        let partitions = topic
                            .partitions
                            .iter()
                            .map(|index| {
                                AddPartitionsToTxnPartitionResult::default()
                                    .with_partition_index(*index)
                                    .with_partition_error_code(code)
                            })
                            .collect();
                        AddPartitionsToTxnTopicResult::default()
                            .with_name(topic.name)
                            .with_results_by_partition(partitions)
                    })
                    .collect();
                KafkaResponse::AddPartitionsToTxn(
                    AddPartitionsToTxnResponse::default()
                        .with_results_by_topic_v3_and_below(topics),
                )
            }
            KafkaRequest::AddOffsetsToTxn(_) => KafkaResponse::AddOffsetsToTxn(
                AddOffsetsToTxnResponse::default().with_error_code(code),
            ),
            KafkaRequest::TxnOffsetCommit(r) => {
                let topics = r
                    .topics
                    .into_iter()
                    .map(|topic| {
                        let partitions = topic
                            .partitions
                            .iter()
                            .map(|p| {
                                TxnOffsetCommitResponsePartition::default()
                                    .with_partition_index(p.partition_index)
                                    .with_error_code(code)
                            })
                            .collect();
                        TxnOffsetCommitResponseTopic::default()
                            .with_name(topic.name)
                            .with_partitions(partitions)
                    })
                    .collect();
                KafkaResponse::TxnOffsetCommit(
                    TxnOffsetCommitResponse::default().with_topics(topics),
                )
            }
            _ => KafkaResponse::EndTxn(
                EndTxnResponse::default()
                    .with_error_code(code)
                    .with_producer_id(ProducerId(-1))
                    .with_producer_epoch(-1),
            ),
        };
        Guard::Answer(answer)
    }
}
