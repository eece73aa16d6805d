//! AddPartitionsToTxn v4 and v5: the batched form of KIP-890 part 1, which Kafka's partition
//! leaders send their transaction coordinator to verify a transactional Produce (`VerifyOnly`)
//! or, for a transaction-version-2 Produce, to add its partition. Kafka serves it to brokers
//! only: the guard requires CLUSTER_ACTION under `kafka.authorizer`
//! ([`super::authorize`]), and no WRITE on the ids or topics is checked, as Kafka 4.x does.
//!
//! Each transaction of the request is answered on its own, every partition with a code (the
//! v4+ result has no per-transaction code): a partition whose topic or index does not exist is
//! UNKNOWN_TOPIC_OR_PARTITION and then the others of its transaction OPERATION_NOT_ATTEMPTED;
//! an empty id is INVALID_REQUEST; a refusal of the whole transaction (INVALID_PRODUCER_ID_MAPPING,
//! PRODUCER_FENCED, CONCURRENT_TRANSACTIONS) is every partition's code. `VerifyOnly` adds
//! nothing and answers a partition outside the ongoing transaction TRANSACTION_ABORTABLE from
//! v5 (the version that introduced the code) and INVALID_TXN_STATE at v4, as Kafka 3.6-3.7
//! coordinators did. Without `VerifyOnly` the partitions join the transaction as with v0-3.
//!
//! Transaction version 2 (KIP-890 part 2: an epoch bump at every EndTxn, EndTxn v5) is not
//! served, so a v5 add is recorded like any other; the epoch the coordinator checks stays the
//! one InitProducerId handed out.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTransaction;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TopicName};
use tributary_api::TopicPartition;

use super::{Broker, partition_of};
use crate::error;

/// A partition of the request: its index and where it is, or the code it is answered.
type Wanted = (i32, Result<(TopicPartition, [u8; 16]), i16>);

impl Broker {
    pub(super) async fn add_partitions_batched(
        &self,
        version: i16,
        request: AddPartitionsToTxnRequest,
    ) -> AddPartitionsToTxnResponse {
        let mut results = Vec::with_capacity(request.transactions.len());
        for transaction in request.transactions {
            results.push(self.batched_transaction(version, transaction).await);
        }
        AddPartitionsToTxnResponse::default().with_results_by_transaction(results)
    }

    async fn batched_transaction(
        &self,
        version: i16,
        transaction: AddPartitionsToTxnTransaction,
    ) -> AddPartitionsToTxnResult {
        let mut wanted: Vec<(TopicName, Vec<Wanted>)> =
            Vec::with_capacity(transaction.topics.len());
        for topic in &transaction.topics {
            let found = self
                .topic(topic.name.0.as_str(), false)
                .await
                .map_err(|failure| error::code(&failure));
            let partitions = topic
                .partitions
                .iter()
                .map(|index| {
                    let target = found.as_ref().map_err(|code| *code).and_then(|found| {
                        partition_of(found, *index)
                            .map(|p| (TopicPartition::new(found.name.clone(), p), found.id))
                            .ok_or(ResponseError::UnknownTopicOrPartition.code())
                    });
                    (*index, target)
                })
                .collect();
            wanted.push((topic.name.clone(), partitions));
        }
        let id = transaction.transactional_id.0.as_str();
        let producer = (transaction.producer_id.0, transaction.producer_epoch);
        let targets: Vec<(TopicPartition, [u8; 16])> = wanted
            .iter()
            .flat_map(|(_, partitions)| partitions.iter())
            .filter_map(|(_, target)| target.as_ref().ok().cloned())
            .collect();
        let all_valid = targets.len()
            == wanted
                .iter()
                .map(|(_, partitions)| partitions.len())
                .sum::<usize>();
        // One code for every valid partition, or one per valid partition in request order.
        let outcome: Result<Vec<i16>, i16> = if !all_valid {
            Err(ResponseError::OperationNotAttempted.code())
        } else if id.is_empty() {
            Err(ResponseError::InvalidRequest.code())
        } else if !self.serves_transactions() {
            Err(ResponseError::CoordinatorNotAvailable.code())
        } else if transaction.verify_only {
            let outside = if version >= 5 {
                ResponseError::TransactionAbortable.code()
            } else {
                ResponseError::InvalidTxnState.code()
            };
            let partitions: Vec<TopicPartition> = targets
                .iter()
                .map(|(partition, _)| partition.clone())
                .collect();
            self.transactions
                .verify(&self.txn_services(), id, producer, &partitions)
                .await
                .map(|held| {
                    held.into_iter()
                        .map(|held| if held { 0 } else { outside })
                        .collect()
                })
        } else {
            let count = targets.len();
            self.transactions
                .add_partitions(
                    &self.txn_services(),
                    id,
                    producer,
                    ResponseError::ProducerFenced,
                    targets,
                )
                .await
                .map(|()| vec![0; count])
        };
        let mut codes = outcome.as_ref().ok().map(|codes| codes.iter());
        let topic_results = wanted
            .into_iter()
            .map(|(name, partitions)| {
                let results = partitions
                    .into_iter()
                    .map(|(index, target)| {
                        let code = match (target, &outcome) {
                            (Err(code), _) => code,
                            (Ok(_), Err(code)) => *code,
                            (Ok(_), Ok(_)) => codes
                                .as_mut()
                                .and_then(Iterator::next)
                                .copied()
                                .unwrap_or(0),
                        };
                        AddPartitionsToTxnPartitionResult::default()
                            .with_partition_index(index)
                            .with_partition_error_code(code)
                    })
                    .collect();
                AddPartitionsToTxnTopicResult::default()
                    .with_name(name)
                    .with_results_by_partition(results)
            })
            .collect();
        AddPartitionsToTxnResult::default()
            .with_transactional_id(transaction.transactional_id)
            .with_topic_results(topic_results)
    }
}
