//! The transaction APIs (KIP-98) on this broker's coordinator ([`crate::txn`]):
//! InitProducerId with a transactional id, AddPartitionsToTxn (v0-v3, the client form),
//! AddOffsetsToTxn, TxnOffsetCommit and EndTxn. Authorization (WRITE on the transactional id,
//! READ on the group) happens in the guard before these run; AddPartitionsToTxn checks WRITE on
//! each topic here, as Kafka does, and answers the partitions it did not try
//! OPERATION_NOT_ATTEMPTED when any is refused.
//!
//! On a cluster (several brokers over one log) transactions are not served yet: the state lives
//! in one broker's memory and Produce to another leader could not check it. FindCoordinator for
//! a transactional id answers COORDINATOR_NOT_AVAILABLE there and InitProducerId
//! TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as before transactions existed.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{
    AddOffsetsToTxnRequest, AddOffsetsToTxnResponse, AddPartitionsToTxnRequest,
    AddPartitionsToTxnResponse, EndTxnRequest, EndTxnResponse, InitProducerIdRequest,
    InitProducerIdResponse, ProducerId, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use tributary_api::TopicPartition;

use super::authorize::TOPIC_DENIED;
use super::{Broker, RequestContext, commit_metadata, commit_target, partition_of};
use crate::acl::model::operation::WRITE;
use crate::acl::model::resource::TOPIC;
use crate::coordinator::consumer::CommitFence;
use crate::error;
use crate::txn::Services;

/// A partition joining a transaction, with its topic's id.
type Joining = (TopicPartition, [u8; 16]);

/// PRODUCER_FENCED from `since` on, INVALID_PRODUCER_EPOCH before (KIP-588 added the code).
fn fenced(version: i16, since: i16) -> ResponseError {
    if version >= since {
        ResponseError::ProducerFenced
    } else {
        ResponseError::InvalidProducerEpoch
    }
}

impl Broker {
    pub(crate) fn txn_services(&self) -> Services {
        Services {
            engine: self.engine.clone(),
            producers: self.producers.clone(),
        }
    }

    /// Transactions are served by a broker alone on its log (see the module docs).
    pub(crate) fn serves_transactions(&self) -> bool {
        self.cluster.is_none()
    }

    pub(super) async fn init_transactional_producer(
        &self,
        version: i16,
        id: &str,
        request: &InitProducerIdRequest,
    ) -> InitProducerIdResponse {
        let refused = |code| {
            InitProducerIdResponse::default()
                .with_error_code(code)
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1)
        };
        if !self.serves_transactions() {
            return refused(ResponseError::TransactionalIdAuthorizationFailed.code());
        }
        // v3+ (KIP-360): a producer that knows its id names it, and must still hold it.
        let known = (version >= 3 && request.producer_id.0 >= 0)
            .then_some((request.producer_id.0, request.producer_epoch));
        match self
            .transactions
            .init(
                &self.txn_services(),
                id,
                request.transaction_timeout_ms,
                known,
                fenced(version, 4),
            )
            .await
        {
            Ok((producer_id, epoch)) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(epoch),
            Err(code) => refused(code),
        }
    }

    pub(super) async fn add_partitions_to_txn(
        &self,
        context: &RequestContext,
        version: i16,
        request: AddPartitionsToTxnRequest,
    ) -> AddPartitionsToTxnResponse {
        // Per partition: Ok(target) or the error it is answered with.
        let mut wanted = Vec::with_capacity(request.v3_and_below_topics.len());
        for topic in &request.v3_and_below_topics {
            let name = topic.name.0.as_str();
            let found = if self.may(context, WRITE, TOPIC, name).await {
                self.topic(name, false)
                    .await
                    .map_err(|failure| error::code(&failure))
            } else {
                Err(TOPIC_DENIED)
            };
            let partitions: Vec<(i32, Result<Joining, i16>)> = topic
                .partitions
                .iter()
                .map(|index| {
                    let target = found.as_ref().map_err(|code| *code).and_then(|found| {
                        partition_of(found, *index)
                            .map(|partition| {
                                (TopicPartition::new(found.name.clone(), partition), found.id)
                            })
                            .ok_or(ResponseError::UnknownTopicOrPartition.code())
                    });
                    (*index, target)
                })
                .collect();
            wanted.push((topic.name.clone(), partitions));
        }
        let all_valid = wanted
            .iter()
            .all(|(_, partitions)| partitions.iter().all(|(_, target)| target.is_ok()));
        let outcome = if !self.serves_transactions() {
            Err(ResponseError::CoordinatorNotAvailable.code())
        } else if all_valid {
            let targets = wanted
                .iter()
                .flat_map(|(_, partitions)| partitions.iter())
                .filter_map(|(_, target)| target.as_ref().ok().cloned())
                .collect();
            self.transactions
                .add_partitions(
                    &self.txn_services(),
                    request.v3_and_below_transactional_id.0.as_str(),
                    (
                        request.v3_and_below_producer_id.0,
                        request.v3_and_below_producer_epoch,
                    ),
                    fenced(version, 2),
                    targets,
                )
                .await
        } else {
            // Nothing is added when one partition is refused.
            Err(ResponseError::OperationNotAttempted.code())
        };
        let results = wanted
            .into_iter()
            .map(|(name, partitions)| {
                let results = partitions
                    .into_iter()
                    .map(|(index, target)| {
                        let code = match (&outcome, target) {
                            (_, Err(code)) => code,
                            (Err(code), Ok(_)) => *code,
                            (Ok(()), Ok(_)) => 0,
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
        AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
    }

    pub(super) async fn add_offsets_to_txn(
        &self,
        version: i16,
        request: AddOffsetsToTxnRequest,
    ) -> AddOffsetsToTxnResponse {
        let outcome = if self.serves_transactions() {
            self.transactions
                .add_offsets(
                    &self.txn_services(),
                    request.transactional_id.0.as_str(),
                    (request.producer_id.0, request.producer_epoch),
                    fenced(version, 2),
                )
                .await
        } else {
            Err(ResponseError::CoordinatorNotAvailable.code())
        };
        AddOffsetsToTxnResponse::default().with_error_code(outcome.err().unwrap_or(0))
    }

    pub(super) async fn txn_offset_commit(
        &self,
        version: i16,
        request: TxnOffsetCommitRequest,
    ) -> TxnOffsetCommitResponse {
        let group = request.group_id.0.as_str();
        // v3+ carry the member and generation: a consumer fenced from its group may not commit.
        // TxnOffsetCommit has no STALE_MEMBER_EPOCH: Kafka answers ILLEGAL_GENERATION instead.
        let member = if version >= 3 {
            let instance_id = request.group_instance_id.as_ref().map(|id| id.as_str());
            self.coordinator
                .validate_consumer_commit(
                    group,
                    request.generation_id,
                    request.member_id.as_str(),
                    true,
                    version,
                )
                .unwrap_or_else(|| {
                    self.coordinator
                        .validate_commit(
                            group,
                            request.generation_id,
                            request.member_id.as_str(),
                            instance_id,
                            true,
                        )
                        .map(|()| CommitFence::Open)
                })
                .map_err(|error| match error {
                    ResponseError::StaleMemberEpoch => ResponseError::IllegalGeneration.code(),
                    other => other.code(),
                })
        } else {
            Ok(CommitFence::Open)
        };
        let mut answers = Vec::with_capacity(request.topics.len());
        let mut offsets = Vec::new();
        for topic in &request.topics {
            let found = self.topic(topic.name.0.as_str(), false).await;
            let mut partitions = Vec::with_capacity(topic.partitions.len());
            for wanted in &topic.partitions {
                let target = match &member {
                    Ok(fence) if !fence.admits(topic.name.0.as_str(), wanted.partition_index) => {
                        Err(ResponseError::IllegalGeneration.code())
                    }
                    _ => commit_target(&found, wanted.partition_index),
                };
                if let Ok(target) = &target {
                    let metadata = commit_metadata(wanted.committed_metadata.as_ref());
                    offsets.push((target.clone(), wanted.committed_offset, metadata));
                }
                partitions.push((wanted.partition_index, target.err()));
            }
            answers.push((topic.name.clone(), partitions));
        }
        let outcome = match member {
            Err(code) => Err(code),
            Ok(_) if !self.serves_transactions() => {
                Err(ResponseError::CoordinatorNotAvailable.code())
            }
            Ok(_) if offsets.is_empty() => Ok(()),
            Ok(_) => {
                self.transactions
                    .commit_offsets(
                        &self.txn_services(),
                        request.transactional_id.0.as_str(),
                        (request.producer_id.0, request.producer_epoch),
                        fenced(version, 3),
                        group,
                        offsets,
                    )
                    .await
            }
        };
        let topics = answers
            .into_iter()
            .map(|(name, partitions)| {
                let partitions = partitions
                    .into_iter()
                    .map(|(index, refused)| {
                        let code = refused.or(outcome.err()).unwrap_or(0);
                        TxnOffsetCommitResponsePartition::default()
                            .with_partition_index(index)
                            .with_error_code(code)
                    })
                    .collect();
                TxnOffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(partitions)
            })
            .collect();
        TxnOffsetCommitResponse::default().with_topics(topics)
    }

    pub(super) async fn end_txn(&self, version: i16, request: EndTxnRequest) -> EndTxnResponse {
        let outcome = if self.serves_transactions() {
            self.transactions
                .end(
                    &self.txn_services(),
                    request.transactional_id.0.as_str(),
                    (request.producer_id.0, request.producer_epoch),
                    fenced(version, 2),
                    request.committed,
                )
                .await
        } else {
            Err(ResponseError::CoordinatorNotAvailable.code())
        };
        EndTxnResponse::default()
            .with_error_code(outcome.err().unwrap_or(0))
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1)
    }
}
