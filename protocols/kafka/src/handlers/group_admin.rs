//! Group administration: ListGroups, DescribeGroups, DeleteGroups and OffsetDelete.
//!
//! A group is known to the coordinator while it has members or a join round, and to the offset
//! store while it has committed positions; listings merge both (a group with only positions is
//! `Empty`). A group with members cannot be deleted (NON_EMPTY_GROUP), and its positions cannot
//! be deleted while it has members (GROUP_SUBSCRIBED_TO_TOPIC; subscriptions are not parsed).
//! KIP-848 consumer groups are listed with their type (ListGroups v5) and Kafka's consumer
//! group states; DescribeGroups (up to v5) answers them `Dead` without an error, as Kafka 4.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{
    DeleteGroupsRequest, DeleteGroupsResponse, DescribeGroupsRequest, DescribeGroupsResponse,
    GroupId, ListGroupsRequest, ListGroupsResponse, OffsetDeleteRequest, OffsetDeleteResponse,
};
use tributary_api::TopicPartition;

use super::{Broker, str_bytes};
use crate::coordinator::GroupState;
use crate::error;

/// The protocol type of groups known only from committed offsets, and of KIP-848 groups.
const CONSUMER: &str = "consumer";
/// ListGroups v5 group types (KIP-848).
const CLASSIC_TYPE: &str = "classic";
const CONSUMER_TYPE: &str = "consumer";

impl Broker {
    pub(super) async fn list_groups(
        &self,
        version: i16,
        request: ListGroupsRequest,
    ) -> ListGroupsResponse {
        // group -> (protocol type, state, group type)
        let mut groups: BTreeMap<String, (String, &'static str, &'static str)> = BTreeMap::new();
        match self.engine.offsets.groups().await {
            Ok(stored) => {
                for group in stored {
                    groups.insert(
                        group,
                        (CONSUMER.to_owned(), GroupState::Empty.name(), CLASSIC_TYPE),
                    );
                }
            }
            Err(failure) => {
                return ListGroupsResponse::default().with_error_code(error::code(&failure));
            }
        }
        for (group, protocol_type, state) in self.coordinator.list() {
            groups.insert(group, (protocol_type, state.name(), CLASSIC_TYPE));
        }
        for (group, state) in self.coordinator.list_consumers() {
            groups.insert(group, (CONSUMER.to_owned(), state, CONSUMER_TYPE));
        }
        let matches = |filter: &[kafka_protocol::protocol::StrBytes], value: &str| {
            filter.is_empty()
                || filter
                    .iter()
                    .any(|wanted| wanted.as_str().eq_ignore_ascii_case(value))
        };
        let listed = groups
            .into_iter()
            .filter(|(_, (_, state, kind))| {
                matches(&request.states_filter, state) && matches(&request.types_filter, kind)
            })
            .map(|(group, (protocol_type, state, kind))| {
                let listed = ListedGroup::default()
                    .with_group_id(GroupId(str_bytes(&group)))
                    .with_protocol_type(str_bytes(&protocol_type))
                    .with_group_state(str_bytes(state));
                if version >= 5 {
                    listed.with_group_type(str_bytes(kind))
                } else {
                    listed
                }
            })
            .collect();
        ListGroupsResponse::default().with_groups(listed)
    }

    pub(super) async fn describe_groups(
        &self,
        request: DescribeGroupsRequest,
    ) -> DescribeGroupsResponse {
        let mut described = Vec::with_capacity(request.groups.len());
        for group_id in request.groups {
            let group = group_id.0.as_str();
            let entry = DescribedGroup::default().with_group_id(group_id.clone());
            if self.coordinator.is_consumer_group(group) {
                // Kafka 4 below DescribeGroups v6: a group that is not classic is `Dead`,
                // with no error and no protocol type.
                described.push(entry.with_group_state(str_bytes("Dead")));
                continue;
            }
            described.push(match self.coordinator.describe(group) {
                Some(description) => {
                    let members = description
                        .members
                        .into_iter()
                        .map(|member| {
                            DescribedGroupMember::default()
                                .with_member_id(str_bytes(&member.member_id))
                                .with_group_instance_id(
                                    member.instance_id.as_deref().map(str_bytes),
                                )
                                .with_client_id(str_bytes(&member.client_id))
                                .with_member_metadata(member.metadata)
                                .with_member_assignment(member.assignment)
                        })
                        .collect();
                    entry
                        .with_group_state(str_bytes(description.state.name()))
                        .with_protocol_type(str_bytes(&description.protocol_type))
                        .with_protocol_data(str_bytes(&description.protocol))
                        .with_members(members)
                }
                None => {
                    let committed = self
                        .engine
                        .offsets
                        .fetch_group(group)
                        .await
                        .map(|positions| !positions.is_empty())
                        .unwrap_or(false);
                    // Kafka reports an unknown group as "Dead" without an error (before v6).
                    let (state, protocol_type) = if committed {
                        (GroupState::Empty.name(), CONSUMER)
                    } else {
                        ("Dead", "")
                    };
                    entry
                        .with_group_state(str_bytes(state))
                        .with_protocol_type(str_bytes(protocol_type))
                }
            });
        }
        DescribeGroupsResponse::default().with_groups(described)
    }

    pub(super) async fn delete_groups(&self, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
        let mut results = Vec::with_capacity(request.groups_names.len());
        for group_id in request.groups_names {
            let group = group_id.0.as_str();
            let code = if self.coordinator.has_members(group)
                || self.coordinator.consumer_has_members(group)
            {
                ResponseError::NonEmptyGroup.code()
            } else {
                let known =
                    self.coordinator.forget(group) | self.coordinator.forget_consumer(group);
                match self.engine.offsets.delete_group(group).await {
                    Ok(removed) if removed > 0 || known => 0,
                    Ok(_) => ResponseError::GroupIdNotFound.code(),
                    Err(failure) => error::code(&failure),
                }
            };
            results.push(
                DeletableGroupResult::default()
                    .with_group_id(group_id)
                    .with_error_code(code),
            );
        }
        DeleteGroupsResponse::default().with_results(results)
    }

    pub(super) async fn offset_delete(&self, request: OffsetDeleteRequest) -> OffsetDeleteResponse {
        let group = request.group_id.0.as_str();
        if self.coordinator.has_members(group) || self.coordinator.consumer_has_members(group) {
            return OffsetDeleteResponse::default()
                .with_error_code(ResponseError::GroupSubscribedToTopic.code());
        }
        let mut topics = Vec::with_capacity(request.topics.len());
        for wanted in request.topics {
            let mut partitions = Vec::with_capacity(wanted.partitions.len());
            for partition in wanted.partitions {
                let index = partition.partition_index;
                let code = match u32::try_from(index) {
                    Ok(number) => {
                        let target = TopicPartition::new(wanted.name.0.as_str(), number);
                        match self.engine.offsets.delete_offset(group, &target).await {
                            Ok(_) => 0,
                            Err(failure) => error::code(&failure),
                        }
                    }
                    Err(_) => ResponseError::UnknownTopicOrPartition.code(),
                };
                partitions.push(
                    OffsetDeleteResponsePartition::default()
                        .with_partition_index(index)
                        .with_error_code(code),
                );
            }
            topics.push(
                OffsetDeleteResponseTopic::default()
                    .with_name(wanted.name)
                    .with_partitions(partitions),
            );
        }
        OffsetDeleteResponse::default().with_topics(topics)
    }
}
