//! OffsetCommit and OffsetFetch on the engine's shared offset store, and the consumer-lag gauge.
//!
//! A commit carrying a member id and generation is fenced by the coordinator (ILLEGAL_GENERATION,
//! UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS); generation -1 without a member is a plain commit
//! from a standalone consumer or an admin tool, accepted while the group has no members
//! (UNKNOWN_MEMBER_ID otherwise, as Kafka). A KIP-848 member's commit from an older member
//! epoch writes the partitions it still holds since that epoch and gets STALE_MEMBER_EPOCH for
//! the others (Kafka 4.3, KIP-1251). Metadata strings round-trip unchanged.
//! OffsetFetch with `require_stable` (v7) answers UNSTABLE_OFFSET_COMMIT for a partition whose
//! offset a transaction not yet complete holds ([`crate::txn`]), as Kafka (KIP-447); the client
//! retries.

use std::time::{SystemTime, UNIX_EPOCH};

use kafka_protocol::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponsePartition, OffsetFetchResponseTopic,
};
use kafka_protocol::messages::{
    OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, TopicName,
};
use tributary_api::{CommittedOffset, TopicPartition};

use super::{Broker, commit_metadata, commit_target, partition_of, str_bytes, topic_name};
use crate::coordinator::consumer::CommitFence;
use crate::error;

/// A partition of an OffsetCommit: its index and the position to store or the error to answer.
type PartitionCommit = (i32, Result<TopicPartition, i16>);

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

impl Broker {
    pub(super) async fn offset_commit(
        &self,
        version: i16,
        request: OffsetCommitRequest,
    ) -> OffsetCommitResponse {
        let group = request.group_id.0.as_str();
        // v7+ carry the committer's static instance id.
        let instance_id = request
            .group_instance_id
            .as_ref()
            .filter(|_| version >= 7)
            .map(|id| id.as_str());
        // A KIP-848 group checks the member epoch (per partition when it is an older one); a
        // classic one the generation.
        let fenced = self
            .coordinator
            .validate_consumer_commit(
                group,
                request.generation_id_or_member_epoch,
                request.member_id.as_str(),
                false,
                version,
            )
            .unwrap_or_else(|| {
                self.coordinator
                    .validate_commit(
                        group,
                        request.generation_id_or_member_epoch,
                        request.member_id.as_str(),
                        instance_id,
                        false,
                    )
                    .map(|()| CommitFence::Open)
            });
        let commit_time = now_ms();
        // Per partition: Ok(position to commit) or the error code to answer.
        let mut answers: Vec<(TopicName, Vec<PartitionCommit>)> = Vec::new();
        let mut batch = Vec::new();
        for wanted_topic in request.topics {
            let topic = self.topic(wanted_topic.name.0.as_str(), false).await;
            let mut partitions = Vec::with_capacity(wanted_topic.partitions.len());
            for wanted in wanted_topic.partitions {
                let index = wanted.partition_index;
                let target = match &fenced {
                    Err(error) => Err(error.code()),
                    Ok(fence) if !fence.admits(wanted_topic.name.0.as_str(), index) => {
                        Err(ResponseError::StaleMemberEpoch.code())
                    }
                    Ok(_) => commit_target(&topic, index),
                };
                if let Ok(target) = &target {
                    let metadata = commit_metadata(wanted.committed_metadata.as_ref());
                    batch.push((
                        target.clone(),
                        CommittedOffset {
                            offset: wanted.committed_offset,
                            metadata,
                            commit_time,
                        },
                    ));
                }
                partitions.push((index, target));
            }
            answers.push((wanted_topic.name, partitions));
        }
        let stored = if batch.is_empty() {
            Ok(())
        } else {
            self.engine.offsets.commit(group, batch.clone()).await
        };
        let store_error = stored.as_ref().err().map(error::code);
        let topics = answers
            .into_iter()
            .map(|(name, partitions)| {
                let partitions = partitions
                    .into_iter()
                    .map(|(index, target)| {
                        let code = match target {
                            Ok(_) => store_error.unwrap_or(0),
                            Err(code) => code,
                        };
                        OffsetCommitResponsePartition::default()
                            .with_partition_index(index)
                            .with_error_code(code)
                    })
                    .collect();
                OffsetCommitResponseTopic::default()
                    .with_name(name)
                    .with_partitions(partitions)
            })
            .collect();
        OffsetCommitResponse::default().with_topics(topics)
    }

    pub(super) async fn offset_fetch(&self, request: OffsetFetchRequest) -> OffsetFetchResponse {
        let group = request.group_id.0.as_str();
        let wanted: Vec<(String, Vec<i32>)> = match request.topics {
            Some(topics) => topics
                .into_iter()
                .map(|topic| (topic.name.0.as_str().to_owned(), topic.partition_indexes))
                .collect(),
            // Null (v2+): every position the group committed.
            None => match self.engine.offsets.fetch_group(group).await {
                Ok(all) => {
                    let mut by_topic: std::collections::BTreeMap<String, Vec<i32>> =
                        std::collections::BTreeMap::new();
                    for (partition, _) in all {
                        if let Ok(index) = i32::try_from(partition.partition) {
                            by_topic.entry(partition.topic).or_default().push(index);
                        }
                    }
                    by_topic.into_iter().collect()
                }
                Err(failure) => {
                    return OffsetFetchResponse::default().with_error_code(error::code(&failure));
                }
            },
        };
        // v7+ `require_stable`: offsets a transaction still holds are not answered yet.
        let unstable = if request.require_stable && self.serves_transactions() {
            match self
                .transactions
                .pending_offsets(&self.txn_services(), group)
                .await
            {
                Ok(pending) => pending,
                Err(code) => return OffsetFetchResponse::default().with_error_code(code),
            }
        } else {
            std::collections::BTreeSet::new()
        };
        let mut topics = Vec::with_capacity(wanted.len());
        for (name, indexes) in wanted {
            let topic = self.topic(&name, false).await;
            let mut partitions = Vec::with_capacity(indexes.len());
            for index in indexes {
                let entry = OffsetFetchResponsePartition::default()
                    .with_partition_index(index)
                    .with_committed_offset(-1)
                    .with_metadata(Some(str_bytes("")));
                let target = match &topic {
                    Ok(topic) => partition_of(topic, index)
                        .map(|partition| TopicPartition::new(topic.name.clone(), partition)),
                    Err(_) => None,
                };
                // Unknown partitions answer "no offset", as Kafka does.
                let Some(target) = target else {
                    partitions.push(entry);
                    continue;
                };
                if unstable.contains(&target) {
                    partitions
                        .push(entry.with_error_code(ResponseError::UnstableOffsetCommit.code()));
                    continue;
                }
                partitions.push(match self.engine.offsets.fetch(group, &target).await {
                    Ok(Some(position)) => entry
                        .with_committed_offset(position.offset)
                        .with_metadata(Some(str_bytes(&position.metadata))),
                    Ok(None) => entry,
                    Err(failure) => entry.with_error_code(error::code(&failure)),
                });
            }
            topics.push(
                OffsetFetchResponseTopic::default()
                    .with_name(topic_name(&name))
                    .with_partitions(partitions),
            );
        }
        OffsetFetchResponse::default().with_topics(topics)
    }
}
