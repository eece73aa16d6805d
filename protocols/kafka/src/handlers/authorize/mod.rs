//! Enforcement of `kafka.authorizer` on every API, before a request reaches its handler.
//!
//! Each request is checked the way Kafka checks it: the resources the caller may not use are
//! taken out of the request and answered with Kafka's error for them (TOPIC_AUTHORIZATION_FAILED
//! 29, GROUP_AUTHORIZATION_FAILED 30, CLUSTER_AUTHORIZATION_FAILED 31), the rest is served, and
//! the refused entries are added to the handler's response ([`Patch`]).
//!
//! | API | needs |
//! |---|---|
//! | Produce | WRITE topic (auto-creation also CREATE cluster or topic) |
//! | Fetch, OffsetCommit (topics) | READ topic |
//! | ListOffsets, OffsetForLeaderEpoch, Metadata, OffsetFetch (topics) | DESCRIBE topic; Metadata hides the others when listing all |
//! | Metadata auto-creation, CreateTopics | CREATE cluster or topic |
//! | DeleteTopics, DeleteRecords | DELETE topic |
//! | CreatePartitions | ALTER topic |
//! | DescribeConfigs / (Incremental)AlterConfigs | DESCRIBE_CONFIGS / ALTER_CONFIGS on the topic, or on the cluster for a broker |
//! | JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit | READ group |
//! | OffsetFetch, DescribeGroups, FindCoordinator | DESCRIBE group |
//! | DeleteGroups, OffsetDelete | DELETE group |
//! | ListGroups | DESCRIBE cluster, else only the groups it may describe |
//! | InitProducerId (idempotent) | IDEMPOTENT_WRITE cluster or WRITE on some topic |
//! | InitProducerId (transactional) | WRITE transactional id ([`transactional`]) |
//! | FindCoordinator (key type 1) | DESCRIBE transactional id ([`transactional`]) |
//! | Produce with a transactional id, AddPartitionsToTxn v0-3, EndTxn | WRITE transactional id (AddPartitionsToTxn: WRITE topic too, in its handler) |
//! | AddPartitionsToTxn v4+ (the brokers' batched form) | CLUSTER_ACTION cluster, else a top-level CLUSTER_AUTHORIZATION_FAILED ([`transactional`]) |
//! | AddOffsetsToTxn, TxnOffsetCommit | WRITE transactional id, READ group |
//! | DescribeTransactions / ListTransactions | DESCRIBE transactional id (List: only those it may describe) |
//! | CreateAcls, DeleteAcls / DescribeAcls | ALTER / DESCRIBE cluster (in `acls`) |
//! | ConsumerGroupHeartbeat / ConsumerGroupDescribe | READ / DESCRIBE group, the describe also DESCRIBE on the group's topics (in `consumer_groups`) |
//!
//! Invariant: with the authorizer off, [`Broker::guard`] returns every request untouched.

mod coordinator;
mod patch;
mod transactional;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::describe_configs_response::DescribeConfigsResult;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::MetadataResponseTopic;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    AlterConfigsResponse, DeleteGroupsResponse, DescribeGroupsResponse, FindCoordinatorResponse,
    HeartbeatResponse, IncrementalAlterConfigsResponse, InitProducerIdResponse, JoinGroupResponse,
    LeaveGroupResponse, OffsetDeleteResponse, OffsetFetchResponse, ProducerId, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;

use super::{Broker, RequestContext};
use crate::acl::model::{CLUSTER_NAME, operation, resource};
use crate::codec::{KafkaRequest, KafkaResponse};

pub(crate) const TOPIC_DENIED: i16 = ResponseError::TopicAuthorizationFailed.code();
pub(crate) const GROUP_DENIED: i16 = ResponseError::GroupAuthorizationFailed.code();
pub(crate) const CLUSTER_DENIED: i16 = ResponseError::ClusterAuthorizationFailed.code();
/// `ConfigResource.Type.BROKER` (a topic is 2).
const BROKER_RESOURCE: i8 = 4;

/// What [`Broker::guard`] decided.
pub(super) enum Guard {
    /// Serve this request (possibly narrowed), then apply the patch to the response.
    Serve(KafkaRequest, Patch),
    /// Answer without serving.
    Answer(KafkaResponse),
}

pub(in crate::handlers) use patch::Patch;

fn message(code: i16) -> Option<StrBytes> {
    let text = match code {
        TOPIC_DENIED => "Topic authorization failed.",
        GROUP_DENIED => "Group authorization failed.",
        transactional::TRANSACTIONAL_ID_DENIED => "Transactional Id authorization failed.",
        _ => "Cluster authorization failed.",
    };
    Some(StrBytes::from_static_str(text))
}

impl Broker {
    /// Whether the caller may do `op` on (`kind`, `name`).
    pub(crate) async fn may(&self, context: &RequestContext, op: i8, kind: i8, name: &str) -> bool {
        self.authorizer
            .allows(&context.principal, &context.host, op, kind, name)
            .await
    }

    /// Whether the caller may create topic `name` (CREATE on the cluster or the topic).
    pub(crate) async fn may_create(&self, context: &RequestContext, name: &str) -> bool {
        self.may(context, operation::CREATE, resource::CLUSTER, CLUSTER_NAME)
            .await
            || self
                .may(context, operation::CREATE, resource::TOPIC, name)
                .await
    }

    async fn on_topic(&self, context: &RequestContext, op: i8, name: &str) -> bool {
        self.may(context, op, resource::TOPIC, name).await
    }

    async fn on_group(&self, context: &RequestContext, op: i8, name: &str) -> bool {
        self.may(context, op, resource::GROUP, name).await
    }

    /// Narrows or answers `request` by the caller's ACLs; see the module table.
    pub(super) async fn guard(
        &self,
        context: &RequestContext,
        version: i16,
        request: KafkaRequest,
    ) -> Guard {
        use operation::*;
        if !self.authorizer.enabled() {
            return Guard::Serve(request, Patch::None);
        }
        let serve = |request, patch| Guard::Serve(request, patch);
        match request {
            KafkaRequest::Fetch(mut request) => {
                let mut denied = Vec::new();
                let mut kept = Vec::with_capacity(request.topics.len());
                for topic in std::mem::take(&mut request.topics) {
                    // v13+ name topics by id; an unknown id is the handler's to answer.
                    let name = if topic.topic.is_empty() {
                        match self.topic_by_id(topic.topic_id) {
                            Ok(found) => found.name,
                            Err(_) => {
                                kept.push(topic);
                                continue;
                            }
                        }
                    } else {
                        topic.topic.to_string()
                    };
                    if self.on_topic(context, READ, &name).await {
                        kept.push(topic);
                        continue;
                    }
                    let partitions = topic
                        .partitions
                        .iter()
                        .map(|p| {
                            PartitionData::default()
                                .with_partition_index(p.partition)
                                .with_error_code(TOPIC_DENIED)
                                .with_high_watermark(-1)
                                .with_last_stable_offset(-1)
                                .with_log_start_offset(-1)
                        })
                        .collect();
                    denied.push(
                        FetchableTopicResponse::default()
                            .with_topic(topic.topic)
                            .with_topic_id(topic.topic_id)
                            .with_partitions(partitions),
                    );
                }
                request.topics = kept;
                serve(KafkaRequest::Fetch(request), Patch::Fetch(denied))
            }
            KafkaRequest::ListOffsets(mut request) => {
                let mut denied = Vec::new();
                let mut kept = Vec::new();
                for topic in std::mem::take(&mut request.topics) {
                    if self.on_topic(context, DESCRIBE, &topic.name).await {
                        kept.push(topic);
                        continue;
                    }
                    let partitions = topic
                        .partitions
                        .iter()
                        .map(|p| {
                            ListOffsetsPartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(TOPIC_DENIED)
                                .with_timestamp(-1)
                                .with_offset(-1)
                        })
                        .collect();
                    denied.push(
                        ListOffsetsTopicResponse::default()
                            .with_name(topic.name)
                            .with_partitions(partitions),
                    );
                }
                request.topics = kept;
                serve(
                    KafkaRequest::ListOffsets(request),
                    Patch::ListOffsets(denied),
                )
            }
            KafkaRequest::Metadata(mut request) => {
                let Some(topics) = request.topics.take() else {
                    return serve(
                        KafkaRequest::Metadata(request),
                        Patch::Metadata(Vec::new(), true),
                    );
                };
                let mut denied = Vec::new();
                let mut kept = Vec::with_capacity(topics.len());
                let mut all_creatable = true;
                for topic in topics {
                    let name = match (&topic.name, self.topic_by_id(topic.topic_id)) {
                        (Some(name), _) => name.to_string(),
                        (None, Ok(found)) => found.name,
                        (None, Err(_)) => {
                            kept.push(topic);
                            continue;
                        }
                    };
                    if self.on_topic(context, DESCRIBE, &name).await {
                        all_creatable &= self.may_create(context, &name).await;
                        kept.push(topic);
                    } else {
                        denied.push(
                            MetadataResponseTopic::default()
                                .with_error_code(TOPIC_DENIED)
                                .with_name(topic.name)
                                .with_topic_id(topic.topic_id),
                        );
                    }
                }
                // Auto-creation needs CREATE; one request creates all its topics or none.
                request.allow_auto_topic_creation &= all_creatable;
                request.topics = Some(kept);
                serve(
                    KafkaRequest::Metadata(request),
                    Patch::Metadata(denied, false),
                )
            }
            KafkaRequest::OffsetCommit(mut request) => {
                let group_ok = self.on_group(context, READ, &request.group_id).await;
                let mut denied = Vec::new();
                let mut kept = Vec::new();
                for topic in std::mem::take(&mut request.topics) {
                    let code = if !group_ok {
                        GROUP_DENIED
                    } else if self.on_topic(context, READ, &topic.name).await {
                        kept.push(topic);
                        continue;
                    } else {
                        TOPIC_DENIED
                    };
                    let partitions = topic
                        .partitions
                        .iter()
                        .map(|p| {
                            OffsetCommitResponsePartition::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(code)
                        })
                        .collect();
                    denied.push(
                        OffsetCommitResponseTopic::default()
                            .with_name(topic.name)
                            .with_topic_id(topic.topic_id)
                            .with_partitions(partitions),
                    );
                }
                request.topics = kept;
                serve(
                    KafkaRequest::OffsetCommit(request),
                    Patch::OffsetCommit(denied),
                )
            }
            KafkaRequest::OffsetFetch(mut request) => {
                if !self.on_group(context, DESCRIBE, &request.group_id).await {
                    return Guard::Answer(KafkaResponse::OffsetFetch(
                        OffsetFetchResponse::default().with_error_code(GROUP_DENIED),
                    ));
                }
                match request.topics.take() {
                    None => serve(KafkaRequest::OffsetFetch(request), Patch::OffsetFetchAll),
                    Some(topics) => {
                        let mut kept = Vec::with_capacity(topics.len());
                        for topic in topics {
                            if self.on_topic(context, DESCRIBE, &topic.name).await {
                                kept.push(topic);
                            }
                        }
                        request.topics = Some(kept);
                        serve(KafkaRequest::OffsetFetch(request), Patch::None)
                    }
                }
            }
            KafkaRequest::JoinGroup(request) => {
                if self.on_group(context, READ, &request.group_id).await {
                    return serve(KafkaRequest::JoinGroup(request), Patch::None);
                }
                Guard::Answer(KafkaResponse::JoinGroup(
                    JoinGroupResponse::default()
                        .with_error_code(GROUP_DENIED)
                        .with_generation_id(-1)
                        .with_member_id(request.member_id),
                ))
            }
            KafkaRequest::SyncGroup(request) => {
                if self.on_group(context, READ, &request.group_id).await {
                    return serve(KafkaRequest::SyncGroup(request), Patch::None);
                }
                Guard::Answer(KafkaResponse::SyncGroup(
                    SyncGroupResponse::default().with_error_code(GROUP_DENIED),
                ))
            }
            KafkaRequest::Heartbeat(request) => {
                if self.on_group(context, READ, &request.group_id).await {
                    return serve(KafkaRequest::Heartbeat(request), Patch::None);
                }
                Guard::Answer(KafkaResponse::Heartbeat(
                    HeartbeatResponse::default().with_error_code(GROUP_DENIED),
                ))
            }
            KafkaRequest::LeaveGroup(request) => {
                if self.on_group(context, READ, &request.group_id).await {
                    return serve(KafkaRequest::LeaveGroup(request), Patch::None);
                }
                Guard::Answer(KafkaResponse::LeaveGroup(
                    LeaveGroupResponse::default().with_error_code(GROUP_DENIED),
                ))
            }
            KafkaRequest::FindCoordinator(request) => {
                self.guard_find_coordinator(context, request).await
            }
            KafkaRequest::CreateTopics(mut request) => {
                let mut denied = Vec::new();
                let mut kept = Vec::new();
                for topic in std::mem::take(&mut request.topics) {
                    if self.may_create(context, &topic.name).await {
                        kept.push(topic);
                    } else {
                        denied.push(
                            CreatableTopicResult::default()
                                .with_name(topic.name)
                                .with_error_code(TOPIC_DENIED)
                                .with_error_message(message(TOPIC_DENIED))
                                .with_num_partitions(-1)
                                .with_replication_factor(-1),
                        );
                    }
                }
                request.topics = kept;
                serve(
                    KafkaRequest::CreateTopics(request),
                    Patch::CreateTopics(denied),
                )
            }
            KafkaRequest::DeleteTopics(mut request) => {
                let mut denied = Vec::new();
                let mut names = Vec::new();
                for name in std::mem::take(&mut request.topic_names) {
                    if self.on_topic(context, DELETE, &name).await {
                        names.push(name);
                    } else {
                        denied.push(
                            DeletableTopicResult::default()
                                .with_name(Some(name))
                                .with_error_code(TOPIC_DENIED)
                                .with_error_message(message(TOPIC_DENIED)),
                        );
                    }
                }
                let mut states = Vec::new();
                for state in std::mem::take(&mut request.topics) {
                    let name = match (&state.name, self.topic_by_id(state.topic_id)) {
                        (Some(name), _) => Some(name.to_string()),
                        (None, Ok(found)) => Some(found.name),
                        (None, Err(_)) => None,
                    };
                    match name {
                        Some(name) if !self.on_topic(context, DELETE, &name).await => denied.push(
                            DeletableTopicResult::default()
                                .with_name(state.name)
                                .with_topic_id(state.topic_id)
                                .with_error_code(TOPIC_DENIED)
                                .with_error_message(message(TOPIC_DENIED)),
                        ),
                        _ => states.push(state),
                    }
                }
                request.topic_names = names;
                request.topics = states;
                serve(
                    KafkaRequest::DeleteTopics(request),
                    Patch::DeleteTopics(denied),
                )
            }
            KafkaRequest::CreatePartitions(mut request) => {
                let mut denied = Vec::new();
                let mut kept = Vec::new();
                for topic in std::mem::take(&mut request.topics) {
                    if self.on_topic(context, ALTER, &topic.name).await {
                        kept.push(topic);
                    } else {
                        denied.push(
                            CreatePartitionsTopicResult::default()
                                .with_name(topic.name)
                                .with_error_code(TOPIC_DENIED)
                                .with_error_message(message(TOPIC_DENIED)),
                        );
                    }
                }
                request.topics = kept;
                serve(
                    KafkaRequest::CreatePartitions(request),
                    Patch::CreatePartitions(denied),
                )
            }
            KafkaRequest::DescribeConfigs(mut request) => {
                let (kept, denied) = self
                    .sift_configs(context, DESCRIBE_CONFIGS, request.resources, |wanted| {
                        (wanted.resource_type, &wanted.resource_name)
                    })
                    .await;
                request.resources = kept;
                let denied = denied
                    .into_iter()
                    .map(|(code, wanted)| {
                        DescribeConfigsResult::default()
                            .with_error_code(code)
                            .with_error_message(message(code))
                            .with_resource_type(wanted.resource_type)
                            .with_resource_name(wanted.resource_name)
                    })
                    .collect();
                serve(
                    KafkaRequest::DescribeConfigs(request),
                    Patch::DescribeConfigs(denied),
                )
            }
            KafkaRequest::AlterConfigs(mut request) => {
                let (kept, denied) = self
                    .sift_configs(context, ALTER_CONFIGS, request.resources, |wanted| {
                        (wanted.resource_type, &wanted.resource_name)
                    })
                    .await;
                request.resources = kept;
                let denied = denied
                    .into_iter()
                    .map(|(code, wanted)| (code, wanted.resource_type, wanted.resource_name))
                    .collect();
                serve(
                    KafkaRequest::AlterConfigs(request),
                    Patch::AlterConfigs(denied),
                )
            }
            KafkaRequest::IncrementalAlterConfigs(mut request) => {
                let (kept, denied) = self
                    .sift_configs(context, ALTER_CONFIGS, request.resources, |wanted| {
                        (wanted.resource_type, &wanted.resource_name)
                    })
                    .await;
                request.resources = kept;
                let denied = denied
                    .into_iter()
                    .map(|(code, wanted)| (code, wanted.resource_type, wanted.resource_name))
                    .collect();
                serve(
                    KafkaRequest::IncrementalAlterConfigs(request),
                    Patch::IncrementalAlterConfigs(denied),
                )
            }
            KafkaRequest::DescribeGroups(mut request) => {
                let mut denied = Vec::new();
                let mut kept = Vec::new();
                for group in std::mem::take(&mut request.groups) {
                    if self.on_group(context, DESCRIBE, &group).await {
                        kept.push(group);
                    } else {
                        denied.push(
                            DescribedGroup::default()
                                .with_group_id(group)
                                .with_error_code(GROUP_DENIED)
                                .with_error_message(message(GROUP_DENIED)),
                        );
                    }
                }
                request.groups = kept;
                serve(
                    KafkaRequest::DescribeGroups(request),
                    Patch::DescribeGroups(denied),
                )
            }
            KafkaRequest::DeleteGroups(mut request) => {
                let mut denied = Vec::new();
                let mut kept = Vec::new();
                for group in std::mem::take(&mut request.groups_names) {
                    if self.on_group(context, DELETE, &group).await {
                        kept.push(group);
                    } else {
                        denied.push(
                            DeletableGroupResult::default()
                                .with_group_id(group)
                                .with_error_code(GROUP_DENIED),
                        );
                    }
                }
                request.groups_names = kept;
                serve(
                    KafkaRequest::DeleteGroups(request),
                    Patch::DeleteGroups(denied),
                )
            }
            KafkaRequest::OffsetDelete(request) => {
                let mut allowed = self.on_group(context, DELETE, &request.group_id).await;
                for topic in &request.topics {
                    allowed = allowed && self.on_topic(context, READ, &topic.name).await;
                }
                if allowed {
                    return serve(KafkaRequest::OffsetDelete(request), Patch::None);
                }
                Guard::Answer(KafkaResponse::OffsetDelete(
                    OffsetDeleteResponse::default().with_error_code(GROUP_DENIED),
                ))
            }
            KafkaRequest::ListGroups(request) => {
                if self
                    .may(context, DESCRIBE, resource::CLUSTER, CLUSTER_NAME)
                    .await
                {
                    return serve(KafkaRequest::ListGroups(request), Patch::None);
                }
                serve(KafkaRequest::ListGroups(request), Patch::ListGroups)
            }
            KafkaRequest::DeleteRecords(mut request) => {
                let mut denied = Vec::new();
                let mut kept = Vec::new();
                for topic in std::mem::take(&mut request.topics) {
                    if self.on_topic(context, DELETE, &topic.name).await {
                        kept.push(topic);
                        continue;
                    }
                    let partitions = topic
                        .partitions
                        .iter()
                        .map(|p| {
                            DeleteRecordsPartitionResult::default()
                                .with_partition_index(p.partition_index)
                                .with_low_watermark(-1)
                                .with_error_code(TOPIC_DENIED)
                        })
                        .collect();
                    denied.push(
                        DeleteRecordsTopicResult::default()
                            .with_name(topic.name)
                            .with_partitions(partitions),
                    );
                }
                request.topics = kept;
                serve(
                    KafkaRequest::DeleteRecords(request),
                    Patch::DeleteRecords(denied),
                )
            }
            KafkaRequest::OffsetForLeaderEpoch(mut request) => {
                let mut denied = Vec::new();
                let mut kept = Vec::new();
                for topic in std::mem::take(&mut request.topics) {
                    if self.on_topic(context, DESCRIBE, &topic.topic).await {
                        kept.push(topic);
                        continue;
                    }
                    let partitions = topic
                        .partitions
                        .iter()
                        .map(|p| {
                            EpochEndOffset::default()
                                .with_partition(p.partition)
                                .with_error_code(TOPIC_DENIED)
                                .with_leader_epoch(-1)
                                .with_end_offset(-1)
                        })
                        .collect();
                    denied.push(
                        OffsetForLeaderTopicResult::default()
                            .with_topic(topic.topic)
                            .with_partitions(partitions),
                    );
                }
                request.topics = kept;
                serve(
                    KafkaRequest::OffsetForLeaderEpoch(request),
                    Patch::OffsetForLeaderEpoch(denied),
                )
            }
            KafkaRequest::InitProducerId(request) => {
                if let Some(id) = &request.transactional_id {
                    return match self.guard_transactional_init(context, id).await {
                        Some(refused) => Guard::Answer(KafkaResponse::InitProducerId(refused)),
                        None => serve(KafkaRequest::InitProducerId(request), Patch::None),
                    };
                }
                let idempotent = self
                    .may(context, IDEMPOTENT_WRITE, resource::CLUSTER, CLUSTER_NAME)
                    .await
                    || self
                        .authorizer
                        .allows_any(&context.principal, &context.host, WRITE, resource::TOPIC)
                        .await;
                if idempotent {
                    return serve(KafkaRequest::InitProducerId(request), Patch::None);
                }
                Guard::Answer(KafkaResponse::InitProducerId(
                    InitProducerIdResponse::default()
                        .with_error_code(CLUSTER_DENIED)
                        .with_producer_id(ProducerId(-1))
                        .with_producer_epoch(-1),
                ))
            }
            KafkaRequest::DescribeTransactions(request) => {
                self.guard_describe_transactions(context, request).await
            }
            KafkaRequest::ListTransactions(request) => serve(
                KafkaRequest::ListTransactions(request),
                Patch::ListTransactions,
            ),
            KafkaRequest::AddPartitionsToTxn(request) if version >= 4 => {
                self.guard_batched_add_partitions(context, request).await
            }
            request @ (KafkaRequest::AddPartitionsToTxn(_)
            | KafkaRequest::AddOffsetsToTxn(_)
            | KafkaRequest::EndTxn(_)
            | KafkaRequest::TxnOffsetCommit(_)) => {
                self.guard_transaction_api(context, request).await
            }
            // Produce is checked per topic where it is written (`produce`); the ACL APIs check
            // the cluster themselves; ApiVersions, SASL and DescribeCluster need nothing.
            other => serve(other, Patch::None),
        }
    }

    /// Splits config `resources` into those the caller may `op` and those it may not, each of
    /// the latter with its error code; `key` names a resource's (type, name).
    async fn sift_configs<R>(
        &self,
        context: &RequestContext,
        op: i8,
        resources: Vec<R>,
        key: impl Fn(&R) -> (i8, &StrBytes),
    ) -> (Vec<R>, Vec<(i16, R)>) {
        let mut kept = Vec::new();
        let mut denied = Vec::new();
        for wanted in resources {
            let (resource_type, name) = key(&wanted);
            match self.config_refusal(context, op, resource_type, name).await {
                None => kept.push(wanted),
                Some(code) => denied.push((code, wanted)),
            }
        }
        (kept, denied)
    }

    /// The error for a config resource the caller may not `op`, if any.
    async fn config_refusal(
        &self,
        context: &RequestContext,
        op: i8,
        resource_type: i8,
        name: &str,
    ) -> Option<i16> {
        if resource_type == BROKER_RESOURCE {
            let ok = self.may(context, op, resource::CLUSTER, CLUSTER_NAME).await;
            return (!ok).then_some(CLUSTER_DENIED);
        }
        let ok = self.on_topic(context, op, name).await;
        (!ok).then_some(TOPIC_DENIED)
    }
}
