//! The second half of `kafka.authorizer`: what [`Broker::guard`] refused or must hide, applied to
//! the handler's response. Invariant: a patch only adds refused entries or removes entries the
//! caller may not describe; it never changes an entry the handler served.

use super::*;

/// Refused entries to add to a response, and listings to thin out.
#[derive(Debug, Default)]
pub(in crate::handlers) enum Patch {
    #[default]
    None,
    Fetch(Vec<FetchableTopicResponse>),
    ListOffsets(Vec<ListOffsetsTopicResponse>),
    /// Refused requested topics; `hide_all` when every topic was asked for.
    Metadata(Vec<MetadataResponseTopic>, bool),
    OffsetCommit(Vec<OffsetCommitResponseTopic>),
    /// Every topic was asked for: drop the ones not describable.
    OffsetFetchAll,
    CreateTopics(Vec<CreatableTopicResult>),
    DeleteTopics(Vec<DeletableTopicResult>),
    CreatePartitions(Vec<CreatePartitionsTopicResult>),
    DescribeConfigs(Vec<DescribeConfigsResult>),
    AlterConfigs(Vec<(i16, i8, StrBytes)>),
    IncrementalAlterConfigs(Vec<(i16, i8, StrBytes)>),
    DescribeGroups(Vec<DescribedGroup>),
    DeleteGroups(Vec<DeletableGroupResult>),
    ListGroups,
    DeleteRecords(Vec<DeleteRecordsTopicResult>),
    OffsetForLeaderEpoch(Vec<OffsetForLeaderTopicResult>),
    /// Refused keys of a batched (v4+) FindCoordinator.
    FindCoordinator(Vec<kafka_protocol::messages::find_coordinator_response::Coordinator>),
    /// Refused ids of a DescribeTransactions.
    DescribeTransactions(
        Vec<kafka_protocol::messages::describe_transactions_response::TransactionState>,
    ),
    /// Listed transactions: drop the ids not describable.
    ListTransactions,
}

impl Broker {
    /// Adds the refused entries of `patch` to `response` and hides what the caller may not
    /// describe.
    pub(in crate::handlers) async fn patch(
        &self,
        context: &RequestContext,
        patch: Patch,
        response: &mut KafkaResponse,
    ) {
        use operation::DESCRIBE;
        match (patch, response) {
            (Patch::None, _) => {}
            (Patch::Fetch(denied), KafkaResponse::Fetch(r)) => r.responses.extend(denied),
            (Patch::ListOffsets(denied), KafkaResponse::ListOffsets(r)) => r.topics.extend(denied),
            (Patch::Metadata(denied, hide_all), KafkaResponse::Metadata(r)) => {
                if hide_all {
                    let mut visible = Vec::with_capacity(r.topics.len());
                    for topic in std::mem::take(&mut r.topics) {
                        let name = topic
                            .name
                            .as_ref()
                            .map(|n| n.to_string())
                            .unwrap_or_default();
                        if self.on_topic(context, DESCRIBE, &name).await {
                            visible.push(topic);
                        }
                    }
                    r.topics = visible;
                }
                r.topics.extend(denied);
            }
            (Patch::OffsetCommit(denied), KafkaResponse::OffsetCommit(r)) => {
                r.topics.extend(denied)
            }
            (Patch::OffsetFetchAll, KafkaResponse::OffsetFetch(r)) => {
                let mut visible = Vec::with_capacity(r.topics.len());
                for topic in std::mem::take(&mut r.topics) {
                    if self.on_topic(context, DESCRIBE, &topic.name).await {
                        visible.push(topic);
                    }
                }
                r.topics = visible;
            }
            (Patch::CreateTopics(denied), KafkaResponse::CreateTopics(r)) => {
                r.topics.extend(denied)
            }
            (Patch::DeleteTopics(denied), KafkaResponse::DeleteTopics(r)) => {
                r.responses.extend(denied);
            }
            (Patch::CreatePartitions(denied), KafkaResponse::CreatePartitions(r)) => {
                r.results.extend(denied);
            }
            (Patch::DescribeConfigs(denied), KafkaResponse::DescribeConfigs(r)) => {
                r.results.extend(denied);
            }
            (Patch::AlterConfigs(denied), KafkaResponse::AlterConfigs(r)) => {
                alter_configs_denied(r, denied);
            }
            (Patch::IncrementalAlterConfigs(denied), KafkaResponse::IncrementalAlterConfigs(r)) => {
                incremental_denied(r, denied);
            }
            (Patch::DescribeGroups(denied), KafkaResponse::DescribeGroups(r)) => {
                describe_groups_denied(r, denied);
            }
            (Patch::DeleteGroups(denied), KafkaResponse::DeleteGroups(r)) => {
                delete_groups_denied(r, denied);
            }
            (Patch::ListGroups, KafkaResponse::ListGroups(r)) => {
                let mut visible = Vec::with_capacity(r.groups.len());
                for group in std::mem::take(&mut r.groups) {
                    if self.on_group(context, DESCRIBE, &group.group_id).await {
                        visible.push(group);
                    }
                }
                r.groups = visible;
            }
            (Patch::DeleteRecords(denied), KafkaResponse::DeleteRecords(r)) => {
                r.topics.extend(denied)
            }
            (Patch::OffsetForLeaderEpoch(denied), KafkaResponse::OffsetForLeaderEpoch(r)) => {
                r.topics.extend(denied);
            }
            (Patch::FindCoordinator(denied), KafkaResponse::FindCoordinator(r)) => {
                r.coordinators.extend(denied);
            }
            (Patch::DescribeTransactions(denied), KafkaResponse::DescribeTransactions(r)) => {
                r.transaction_states.extend(denied);
            }
            (Patch::ListTransactions, KafkaResponse::ListTransactions(r)) => {
                let mut visible = Vec::with_capacity(r.transaction_states.len());
                for listed in std::mem::take(&mut r.transaction_states) {
                    // A filter, not a refusal: nothing is logged for the ids left out.
                    let id = listed.transactional_id.as_str();
                    if self
                        .may(context, DESCRIBE, resource::TRANSACTIONAL_ID, id)
                        .await
                    {
                        visible.push(listed);
                    }
                }
                r.transaction_states = visible;
            }
            // A patch always comes back with the response of its own request.
            (_, _) => {}
        }
    }
}

fn alter_configs_denied(response: &mut AlterConfigsResponse, denied: Vec<(i16, i8, StrBytes)>) {
    use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
    response
        .responses
        .extend(denied.into_iter().map(|(code, kind, name)| {
            AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message(code))
                .with_resource_type(kind)
                .with_resource_name(name)
        }));
}

fn incremental_denied(
    response: &mut IncrementalAlterConfigsResponse,
    denied: Vec<(i16, i8, StrBytes)>,
) {
    use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
    response
        .responses
        .extend(denied.into_iter().map(|(code, kind, name)| {
            AlterConfigsResourceResponse::default()
                .with_error_code(code)
                .with_error_message(message(code))
                .with_resource_type(kind)
                .with_resource_name(name)
        }));
}

fn describe_groups_denied(response: &mut DescribeGroupsResponse, denied: Vec<DescribedGroup>) {
    response.groups.extend(denied);
}

fn delete_groups_denied(response: &mut DeleteGroupsResponse, denied: Vec<DeletableGroupResult>) {
    response.results.extend(denied);
}
