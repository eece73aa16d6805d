//! Request handlers, one module per request family, and the shared broker state they work on.
//!
//! Every handler answers errors per topic or partition with a Kafka error code (mapped from the
//! engine in [`crate::error::error_code`]); only codec-level problems close a connection.

mod acls;
mod admin;
mod authorize;
mod cluster;
mod configs;
mod consumer_groups;
mod fetch;
mod group_admin;
mod groups;
mod list_offsets;
mod metadata;
mod offsets;
mod produce;
pub(crate) mod sasl;
mod txn;
mod txn_admin;
mod txn_batched;

/// The produce handler's batch split, for the decoder checks (`crate::check`).
pub(crate) use produce::split_batches;

pub(crate) use produce::StagedProduce;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{
    ApiVersionsResponse, BrokerId, HeartbeatResponse, JoinGroupResponse, LeaveGroupResponse,
    SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use tokio_util::sync::CancellationToken;
use tributary_api::{
    ClusterView, Engine, EngineError, EngineResult, TopicDescription, TopicPartition, TopicSettings,
};

use std::sync::Arc;

use crate::KafkaSettings;
use crate::codec::{KafkaRequest, KafkaResponse, SUPPORTED_APIS};
use crate::coordinator::Coordinator;
use crate::producers::Producers;
use crate::txn::Transactions;

/// The one node id this broker has; it leads every partition.
pub(crate) const NODE_ID: BrokerId = BrokerId(0);
/// Kafka's NOT_COORDINATOR, for group requests that reach a broker not coordinating the group.
const NOT_COORDINATOR: i16 = ResponseError::NotCoordinator.code();
/// Reported in Metadata and DescribeCluster.
pub(crate) const CLUSTER_ID: &str = "tributary";
/// Kafka's own limit on topic name length.
const MAX_KAFKA_TOPIC_NAME: usize = 249;

/// State shared by every connection of the Kafka listener.
#[derive(Debug)]
pub(crate) struct Broker {
    pub(crate) engine: Engine,
    pub(crate) settings: KafkaSettings,
    pub(crate) coordinator: Arc<Coordinator>,
    pub(crate) producers: Producers,
    /// The transaction coordinator ([`crate::txn`]).
    pub(crate) transactions: Arc<Transactions>,
    /// Several brokers over one log: who is live, who leads what. `None`: this broker is the
    /// only one ([`NODE_ID`], leading every partition).
    pub(crate) cluster: Option<Arc<dyn ClusterView>>,
    /// `kafka.authorizer`: ACLs checked on every request ([`authorize`]).
    pub(crate) authorizer: crate::acl::Authorizer,
}

/// Facts about the connection a request arrived on.
#[derive(Debug, Clone)]
pub(crate) struct RequestContext {
    /// The port the client reached; advertised back as this broker's port.
    pub(crate) local_port: u16,
    /// Cancelled at shutdown; long polls return early.
    pub(crate) shutdown: CancellationToken,
    /// `User:<name>` once SASL authenticated the connection; on a TLS connection without SASL,
    /// `User:<CN>` of a verified client certificate; else `User:ANONYMOUS`.
    pub(crate) principal: String,
    /// The client's address, for ACLs naming a host.
    pub(crate) host: String,
}

impl Broker {
    pub(crate) fn new(engine: Engine, settings: KafkaSettings) -> Self {
        let authorizer = crate::acl::Authorizer::new(
            settings.authorizer,
            &settings.super_users,
            Arc::clone(&engine.metadata),
        );
        let coordinator = Arc::new(Coordinator::new(settings.consumer_groups));
        Self {
            authorizer,
            engine,
            settings,
            coordinator,
            producers: Producers::default(),
            transactions: Arc::new(Transactions::default()),
            cluster: None,
        }
    }

    /// Loads the stored transactions in the background (completing or aborting what the last
    /// stop left open) when a runtime is there; requests wait for the load in any case.
    pub(crate) fn start_transactions(&self) {
        if tokio::runtime::Handle::try_current().is_err() || !self.serves_transactions() {
            return;
        }
        let transactions = Arc::clone(&self.transactions);
        let services = self.txn_services();
        tokio::spawn(async move {
            let _ = transactions.ensure_loaded(&services).await;
        });
    }

    /// Whether this broker coordinates `group`: always without a cluster.
    pub(crate) fn coordinates(&self, group: &str) -> bool {
        self.cluster
            .as_ref()
            .is_none_or(|cluster| cluster.coordinator(group) == Some(cluster.local_id()))
    }

    /// Whether this broker leads `partition`: always without a cluster. A request for a
    /// partition it does not lead is answered NOT_LEADER_OR_FOLLOWER, so the client refreshes
    /// its metadata and goes to the leader.
    pub(crate) fn leads(&self, partition: &TopicPartition) -> bool {
        self.cluster
            .as_ref()
            .is_none_or(|cluster| cluster.leader(partition) == Some(cluster.local_id()))
    }

    /// Whether this broker answers Fetch: always without a cluster; in a cluster whenever it
    /// holds its lease, whoever leads the partition. The log is in shared storage and every
    /// broker learns each commit's offsets at once, so only writes need the leader; a follower
    /// answering a consumer is what Kafka's follower fetching (KIP-392) allows too.
    pub(crate) fn serves_reads(&self) -> bool {
        self.cluster
            .as_ref()
            .is_none_or(|cluster| cluster.holds_lease())
    }

    /// Answers one request; `None` means the request gets no response (Produce with acks=0).
    pub(crate) async fn handle(
        &self,
        context: &RequestContext,
        version: i16,
        client_id: &str,
        request: KafkaRequest,
    ) -> Option<KafkaResponse> {
        let (request, patch) = match self.guard(context, version, request).await {
            authorize::Guard::Serve(request, patch) => (request, patch),
            authorize::Guard::Answer(response) => return Some(response),
        };
        let mut response = match request {
            KafkaRequest::ApiVersions(_) => KafkaResponse::ApiVersions(
                ApiVersionsResponse::default().with_api_keys(advertised_versions()),
            ),
            KafkaRequest::Metadata(request) => {
                KafkaResponse::Metadata(self.metadata(context, version, request).await)
            }
            KafkaRequest::Produce(request) => {
                KafkaResponse::Produce(self.produce(context, version, request).await?)
            }
            KafkaRequest::Fetch(request) => {
                KafkaResponse::Fetch(self.fetch(context, version, request).await)
            }
            KafkaRequest::ListOffsets(request) => {
                KafkaResponse::ListOffsets(self.list_offsets(request).await)
            }
            KafkaRequest::FindCoordinator(request) => {
                KafkaResponse::FindCoordinator(self.find_coordinator(context, version, request))
            }
            // Group membership lives on the group's coordinator only: a request that reaches
            // another broker sends the client back to FindCoordinator.
            KafkaRequest::JoinGroup(request) if !self.coordinates(&request.group_id) => {
                KafkaResponse::JoinGroup(
                    JoinGroupResponse::default()
                        .with_error_code(NOT_COORDINATOR)
                        .with_generation_id(-1)
                        .with_member_id(request.member_id),
                )
            }
            KafkaRequest::SyncGroup(request) if !self.coordinates(&request.group_id) => {
                KafkaResponse::SyncGroup(
                    SyncGroupResponse::default().with_error_code(NOT_COORDINATOR),
                )
            }
            KafkaRequest::Heartbeat(request) if !self.coordinates(&request.group_id) => {
                KafkaResponse::Heartbeat(
                    HeartbeatResponse::default().with_error_code(NOT_COORDINATOR),
                )
            }
            KafkaRequest::LeaveGroup(request) if !self.coordinates(&request.group_id) => {
                KafkaResponse::LeaveGroup(
                    LeaveGroupResponse::default().with_error_code(NOT_COORDINATOR),
                )
            }
            KafkaRequest::JoinGroup(request) => KafkaResponse::JoinGroup(
                self.join_group(context, version, client_id, request).await,
            ),
            KafkaRequest::SyncGroup(request) => {
                KafkaResponse::SyncGroup(self.sync_group(context, version, request).await)
            }
            KafkaRequest::Heartbeat(request) => {
                KafkaResponse::Heartbeat(self.heartbeat(version, request))
            }
            KafkaRequest::LeaveGroup(request) => {
                KafkaResponse::LeaveGroup(self.leave_group(version, request))
            }
            KafkaRequest::OffsetCommit(request) => {
                KafkaResponse::OffsetCommit(self.offset_commit(version, request).await)
            }
            KafkaRequest::ConsumerGroupHeartbeat(request) => KafkaResponse::ConsumerGroupHeartbeat(
                self.consumer_group_heartbeat(context, version, client_id, request)
                    .await,
            ),
            KafkaRequest::ConsumerGroupDescribe(request) => KafkaResponse::ConsumerGroupDescribe(
                self.consumer_group_describe(context, request).await,
            ),
            KafkaRequest::ListGroups(request) => {
                KafkaResponse::ListGroups(self.list_groups(version, request).await)
            }
            KafkaRequest::DescribeGroups(request) => {
                KafkaResponse::DescribeGroups(self.describe_groups(request).await)
            }
            KafkaRequest::DeleteGroups(request) => {
                KafkaResponse::DeleteGroups(self.delete_groups(request).await)
            }
            KafkaRequest::OffsetDelete(request) => {
                KafkaResponse::OffsetDelete(self.offset_delete(request).await)
            }
            KafkaRequest::DeleteRecords(request) => {
                KafkaResponse::DeleteRecords(self.delete_records(request).await)
            }
            KafkaRequest::OffsetForLeaderEpoch(request) => {
                KafkaResponse::OffsetForLeaderEpoch(self.offset_for_leader_epoch(request).await)
            }
            KafkaRequest::DescribeCluster(request) => {
                KafkaResponse::DescribeCluster(self.describe_cluster(context, request))
            }
            KafkaRequest::InitProducerId(request) => {
                KafkaResponse::InitProducerId(self.init_producer_id(version, request).await)
            }
            KafkaRequest::AddPartitionsToTxn(request) if version >= 4 => {
                KafkaResponse::AddPartitionsToTxn(
                    self.add_partitions_batched(version, request).await,
                )
            }
            KafkaRequest::AddPartitionsToTxn(request) => KafkaResponse::AddPartitionsToTxn(
                self.add_partitions_to_txn(context, version, request).await,
            ),
            KafkaRequest::AddOffsetsToTxn(request) => {
                KafkaResponse::AddOffsetsToTxn(self.add_offsets_to_txn(version, request).await)
            }
            KafkaRequest::TxnOffsetCommit(request) => {
                KafkaResponse::TxnOffsetCommit(self.txn_offset_commit(version, request).await)
            }
            KafkaRequest::EndTxn(request) => {
                KafkaResponse::EndTxn(self.end_txn(version, request).await)
            }
            KafkaRequest::DescribeTransactions(request) => {
                KafkaResponse::DescribeTransactions(self.describe_transactions(request).await)
            }
            KafkaRequest::ListTransactions(request) => {
                KafkaResponse::ListTransactions(self.list_transactions(version, request).await)
            }
            KafkaRequest::CreateTopics(request) => {
                KafkaResponse::CreateTopics(self.create_topics(request).await)
            }
            KafkaRequest::DeleteTopics(request) => {
                KafkaResponse::DeleteTopics(self.delete_topics(version, request).await)
            }
            KafkaRequest::CreatePartitions(request) => {
                KafkaResponse::CreatePartitions(self.create_partitions(request).await)
            }
            KafkaRequest::DescribeConfigs(request) => {
                KafkaResponse::DescribeConfigs(self.describe_configs(request))
            }
            KafkaRequest::AlterConfigs(request) => {
                KafkaResponse::AlterConfigs(self.alter_configs(request).await)
            }
            KafkaRequest::IncrementalAlterConfigs(request) => {
                KafkaResponse::IncrementalAlterConfigs(
                    self.incremental_alter_configs(request).await,
                )
            }
            KafkaRequest::OffsetFetch(request) => {
                KafkaResponse::OffsetFetch(self.offset_fetch(request).await)
            }
            KafkaRequest::CreateAcls(request) => {
                KafkaResponse::CreateAcls(self.create_acls(context, request).await)
            }
            KafkaRequest::DescribeAcls(request) => {
                KafkaResponse::DescribeAcls(self.describe_acls(context, request).await)
            }
            KafkaRequest::DeleteAcls(request) => {
                KafkaResponse::DeleteAcls(self.delete_acls(context, request).await)
            }
            // The connection's SASL session answers these until it is authenticated.
            KafkaRequest::SaslHandshake(_) => {
                KafkaResponse::SaslHandshake(sasl::handshake_refused())
            }
            KafkaRequest::SaslAuthenticate(_) => {
                KafkaResponse::SaslAuthenticate(sasl::authenticate_refused())
            }
        };
        self.patch(context, patch, &mut response).await;
        Some(response)
    }

    /// The topic `name`, created with the default partition count if it is unknown, `create`
    /// is asked for and auto-creation is enabled.
    pub(crate) async fn topic(&self, name: &str, create: bool) -> EngineResult<TopicDescription> {
        let topics = &self.engine.topics;
        match topics.describe_topic(name) {
            Ok(topic) if topic.internal => Err(EngineError::UnknownTopic(name.to_owned())),
            Err(EngineError::UnknownTopic(_)) if create && self.settings.auto_create_topics => {
                validate_topic_name(name)?;
                match topics
                    .create_topic(
                        name,
                        self.settings.default_partitions,
                        TopicSettings::default(),
                    )
                    .await
                {
                    Err(EngineError::TopicExists(_)) => topics.describe_topic(name),
                    other => other,
                }
            }
            other => other,
        }
    }
}

/// The ApiVersions list: exactly [`SUPPORTED_APIS`].
pub(crate) fn advertised_versions() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|api| {
            ApiVersion::default()
                .with_api_key(api.key as i16)
                .with_min_version(api.min)
                .with_max_version(api.max)
        })
        .collect()
}

/// Kafka's topic name rule: 1..=249 bytes of `[A-Za-z0-9._-]`, not `.` or `..`.
pub(crate) fn validate_topic_name(name: &str) -> EngineResult<()> {
    let legal = !name.is_empty()
        && name.len() <= MAX_KAFKA_TOPIC_NAME
        && name != "."
        && name != ".."
        && name
            .bytes()
            .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'.' | b'_' | b'-'));
    if legal {
        Ok(())
    } else {
        Err(EngineError::InvalidName(name.to_owned()))
    }
}

pub(crate) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_owned()))
}

pub(crate) fn str_bytes(text: &str) -> StrBytes {
    StrBytes::from_string(text.to_owned())
}

/// A partition index from the wire, if it names a partition of `topic`.
pub(crate) fn partition_of(topic: &TopicDescription, index: i32) -> Option<u32> {
    u32::try_from(index).ok().filter(|p| *p < topic.partitions)
}

/// Where an offset commit (OffsetCommit, TxnOffsetCommit) of partition `index` of the looked-up
/// `topic` goes, or the error code its partition is answered.
pub(crate) fn commit_target(
    topic: &EngineResult<TopicDescription>,
    index: i32,
) -> Result<TopicPartition, i16> {
    match topic {
        Err(failure) => Err(crate::error::code(failure)),
        Ok(topic) => partition_of(topic, index)
            .map(|partition| TopicPartition::new(topic.name.clone(), partition))
            .ok_or(ResponseError::UnknownTopicOrPartition.code()),
    }
}

/// A committed offset's metadata as stored (absent is empty, as Kafka keeps it).
pub(crate) fn commit_metadata(metadata: Option<&StrBytes>) -> String {
    metadata
        .map(|text| text.as_str().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_topic_names_follow_kafka_rules() {
        assert!(validate_topic_name("orders.v1_x-2").is_ok());
        assert!(validate_topic_name("").is_err());
        assert!(validate_topic_name("..").is_err());
        assert!(validate_topic_name("with space").is_err());
        assert!(validate_topic_name(&"a".repeat(250)).is_err());
        assert!(validate_topic_name(&"a".repeat(249)).is_ok());
    }

    #[test]
    fn advertised_versions_match_the_table() {
        let advertised = advertised_versions();
        assert_eq!(advertised.len(), SUPPORTED_APIS.len());
        let produce = advertised
            .iter()
            .find(|api| api.api_key == 0)
            .map(|api| (api.min_version, api.max_version));
        assert_eq!(produce, Some((3, 13)));
    }
}
