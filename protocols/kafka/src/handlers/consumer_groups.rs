//! KIP-848 consumer groups on the wire: ConsumerGroupHeartbeat (API 68) and
//! ConsumerGroupDescribe (API 69), on [`crate::coordinator::consumer`].
//!
//! Topics travel by topic id on the wire and by name in the coordinator; ids the broker does
//! not know in a member's owned partitions are dropped (the topic is gone, so is the
//! partition). ACLs as Kafka: READ on the group for the heartbeat, DESCRIBE on the group for
//! the describe, and DESCRIBE on every topic a described group names (its subscriptions and
//! assignments; TOPIC_AUTHORIZATION_FAILED for the group otherwise, as Kafka 4). Kafka also
//! leaves topics the member may not DESCRIBE out of a regex subscription; that is not done.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment as DescribedAssignment, DescribedGroup, Member, TopicPartitions as DescribedTopic,
};
use kafka_protocol::messages::consumer_group_heartbeat_response::{
    Assignment as HeartbeatAssignment, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
    ConsumerGroupHeartbeatResponse,
};
use kafka_protocol::protocol::StrBytes;
use tokio::time::Instant;

use super::{Broker, RequestContext, str_bytes, topic_name};
use crate::acl::model::{operation, resource};
use crate::coordinator::consumer::{self, Assignment, HeartbeatParams, TopicMeta, TopicsView};

/// Kafka's value for "authorized operations not asked for".
const OPERATIONS_NOT_ASKED: i32 = i32::MIN;
/// ConsumerGroupDescribe v1 `MemberType`: a member of the consumer protocol.
const CONSUMER_MEMBER: i8 = 1;
/// Operations a group can be asked about (Kafka's `AclOperation` codes): READ, DELETE,
/// DESCRIBE, DESCRIBE_CONFIGS, ALTER_CONFIGS.
const GROUP_OPERATIONS: [i8; 5] = [3, 6, 8, 10, 11];

impl Broker {
    /// Every Kafka-visible topic with its id and partition count.
    fn topics_view(&self) -> TopicsView {
        self.engine
            .topics
            .list_topics()
            .into_iter()
            .filter(|topic| !topic.internal)
            .map(|topic| {
                let meta = TopicMeta {
                    id: topic.id,
                    partitions: topic.partitions,
                };
                (topic.name, meta)
            })
            .collect()
    }

    pub(super) async fn consumer_group_heartbeat(
        &self,
        context: &RequestContext,
        version: i16,
        client_id: &str,
        request: ConsumerGroupHeartbeatRequest,
    ) -> ConsumerGroupHeartbeatResponse {
        let failed = |error: ResponseError, message: Option<String>| {
            ConsumerGroupHeartbeatResponse::default()
                .with_error_code(error.code())
                .with_error_message(message.map(StrBytes::from_string))
        };
        if !self.coordinates(&request.group_id) {
            return failed(ResponseError::NotCoordinator, None);
        }
        if self.authorizer.enabled()
            && !self
                .may(context, operation::READ, resource::GROUP, &request.group_id)
                .await
        {
            return failed(ResponseError::GroupAuthorizationFailed, None);
        }
        let topics = self.topics_view();
        let by_id: BTreeMap<[u8; 16], &str> = topics
            .iter()
            .map(|(name, meta)| (meta.id, name.as_str()))
            .collect();
        let owned = request.topic_partitions.map(|owned| {
            let mut assignment = Assignment::new();
            for topic in owned {
                if let Some(name) = by_id.get(topic.topic_id.as_bytes()) {
                    let partitions = assignment.entry((*name).to_owned()).or_default();
                    partitions.extend(
                        topic
                            .partitions
                            .iter()
                            .filter_map(|index| u32::try_from(*index).ok()),
                    );
                }
            }
            assignment
        });
        let params = HeartbeatParams {
            group: request.group_id.0.to_string(),
            member_id: request.member_id.to_string(),
            member_epoch: request.member_epoch,
            instance_id: request.instance_id.map(|id| id.to_string()),
            rack_id: request.rack_id.map(|id| id.to_string()),
            rebalance_timeout_ms: request.rebalance_timeout_ms,
            subscribed_names: request
                .subscribed_topic_names
                .map(|names| names.into_iter().map(|name| name.0.to_string()).collect()),
            subscribed_regex: request
                .subscribed_topic_regex
                .map(|regex| regex.to_string()),
            server_assignor: request.server_assignor.map(|name| name.to_string()),
            owned,
            client_id: client_id.to_owned(),
            client_host: context.host.clone(),
        };
        if let Err(refusal) = consumer::validate(&params, version) {
            return failed(refusal.error, Some(refusal.message));
        }
        self.coordinator.ensure_sweeper(&context.shutdown);
        let interval = self.coordinator.consumer_settings().heartbeat_interval;
        match self
            .coordinator
            .consumer_heartbeat(params, &topics, Instant::now())
        {
            Ok(answer) => ConsumerGroupHeartbeatResponse::default()
                .with_member_id(Some(str_bytes(&answer.member_id)))
                .with_member_epoch(answer.member_epoch)
                .with_heartbeat_interval_ms(i32::try_from(interval.as_millis()).unwrap_or(i32::MAX))
                .with_assignment(answer.assignment.map(|assignment| {
                    let topics = assignment
                        .into_iter()
                        .filter_map(|(name, partitions)| {
                            let id = topics.get(&name)?.id;
                            Some(
                                TopicPartitions::default()
                                    .with_topic_id(uuid::Uuid::from_bytes(id))
                                    .with_partitions(to_indexes(&partitions)),
                            )
                        })
                        .collect();
                    HeartbeatAssignment::default().with_topic_partitions(topics)
                })),
            Err(refusal) => failed(refusal.error, Some(refusal.message)),
        }
    }

    pub(super) async fn consumer_group_describe(
        &self,
        context: &RequestContext,
        request: ConsumerGroupDescribeRequest,
    ) -> ConsumerGroupDescribeResponse {
        let mut groups = Vec::with_capacity(request.group_ids.len());
        for group_id in request.group_ids {
            let entry = DescribedGroup::default()
                .with_group_id(group_id.clone())
                .with_authorized_operations(OPERATIONS_NOT_ASKED);
            let refused = |error: ResponseError, message: String| {
                entry
                    .clone()
                    .with_error_code(error.code())
                    .with_error_message(Some(StrBytes::from_string(message)))
            };
            let group = group_id.0.as_str();
            let secured = self.authorizer.enabled();
            if secured
                && !self
                    .may(context, operation::DESCRIBE, resource::GROUP, group)
                    .await
            {
                groups.push(refused(
                    ResponseError::GroupAuthorizationFailed,
                    "Group authorization failed.".to_owned(),
                ));
                continue;
            }
            if !self.coordinates(group) {
                groups.push(refused(ResponseError::NotCoordinator, String::new()));
                continue;
            }
            let Some(described) = self.coordinator.describe_consumer(group) else {
                let message = if self.coordinator.describe(group).is_some() {
                    format!("Group {group} is not a consumer group.")
                } else {
                    format!("Group {group} not found.")
                };
                groups.push(refused(ResponseError::GroupIdNotFound, message));
                continue;
            };
            let mut topic_denied = false;
            if secured {
                let mut named: Vec<&String> = Vec::new();
                for member in &described.members {
                    named.extend(member.subscribed_names.iter());
                    named.extend(member.assignment.keys());
                    named.extend(member.target.keys());
                }
                named.sort();
                named.dedup();
                for topic in named {
                    if !self
                        .may(context, operation::DESCRIBE, resource::TOPIC, topic)
                        .await
                    {
                        topic_denied = true;
                        break;
                    }
                }
            }
            if topic_denied {
                groups.push(refused(
                    ResponseError::TopicAuthorizationFailed,
                    "The described group uses topics that the client is not authorized to describe."
                        .to_owned(),
                ));
                continue;
            }
            let assignment = |assignment: &Assignment| {
                let topics = assignment
                    .iter()
                    .map(|(name, partitions)| {
                        let id = described.topic_ids.get(name).copied().unwrap_or([0; 16]);
                        DescribedTopic::default()
                            .with_topic_id(uuid::Uuid::from_bytes(id))
                            .with_topic_name(topic_name(name))
                            .with_partitions(to_indexes(partitions))
                    })
                    .collect();
                DescribedAssignment::default().with_topic_partitions(topics)
            };
            let members = described
                .members
                .iter()
                .map(|member| {
                    Member::default()
                        .with_member_id(str_bytes(&member.member_id))
                        .with_instance_id(member.instance_id.as_deref().map(str_bytes))
                        .with_rack_id(member.rack_id.as_deref().map(str_bytes))
                        .with_member_epoch(member.member_epoch)
                        .with_client_id(str_bytes(&member.client_id))
                        .with_client_host(str_bytes(&member.client_host))
                        .with_subscribed_topic_names(
                            member
                                .subscribed_names
                                .iter()
                                .map(|name| topic_name(name))
                                .collect(),
                        )
                        .with_subscribed_topic_regex(
                            member.subscribed_regex.as_deref().map(str_bytes),
                        )
                        .with_assignment(assignment(&member.assignment))
                        .with_target_assignment(assignment(&member.target))
                        .with_member_type(CONSUMER_MEMBER)
                })
                .collect();
            let mut operations = OPERATIONS_NOT_ASKED;
            if request.include_authorized_operations {
                operations = 0;
                for op in GROUP_OPERATIONS {
                    if !secured || self.may(context, op, resource::GROUP, group).await {
                        operations |= 1 << op;
                    }
                }
            }
            groups.push(
                entry
                    .with_group_state(str_bytes(described.state))
                    .with_group_epoch(described.group_epoch)
                    .with_assignment_epoch(described.assignment_epoch)
                    .with_assignor_name(str_bytes(&described.assignor))
                    .with_members(members)
                    .with_authorized_operations(operations),
            );
        }
        ConsumerGroupDescribeResponse::default().with_groups(groups)
    }
}

fn to_indexes(partitions: &std::collections::BTreeSet<u32>) -> Vec<i32> {
    partitions
        .iter()
        .filter_map(|partition| i32::try_from(*partition).ok())
        .collect()
}
