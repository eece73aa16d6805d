//! Metadata: one broker (node 0 at the advertised host and the port the client reached), every
//! partition led by it — or, with a cluster, the live brokers at their advertised addresses and
//! each partition's leader (LEADER_NOT_AVAILABLE while this broker holds no lease), stable topic ids, internal topics hidden, auto-creation of unknown topics
//! when the client allows it (always before v4, `allow_auto_topic_creation` from v4).

use kafka_protocol::ResponseError;
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use tributary_api::{EngineResult, TopicDescription, TopicPartition};
use uuid::Uuid;

use super::{Broker, CLUSTER_ID, NODE_ID, RequestContext, str_bytes, topic_name};
use crate::error;

impl Broker {
    pub(super) async fn metadata(
        &self,
        context: &RequestContext,
        version: i16,
        request: MetadataRequest,
    ) -> MetadataResponse {
        let allow_create = version < 4 || request.allow_auto_topic_creation;
        let topics = match request.topics {
            // Null (and, before v1, empty) means every topic.
            None => self.all_topics(),
            Some(list) if list.is_empty() && version == 0 => self.all_topics(),
            Some(list) => {
                let mut topics = Vec::with_capacity(list.len());
                for requested in list {
                    topics.push(self.requested_topic(requested, allow_create).await);
                }
                topics
            }
        };
        let (brokers, controller) = match &self.cluster {
            None => {
                let broker = MetadataResponseBroker::default()
                    .with_node_id(NODE_ID)
                    .with_host(str_bytes(&self.settings.advertised_host))
                    .with_port(i32::from(context.local_port));
                (vec![broker], NODE_ID)
            }
            Some(cluster) => {
                let live = self.reachable(cluster.as_ref(), context);
                let brokers = live
                    .iter()
                    .map(|broker| {
                        MetadataResponseBroker::default()
                            .with_node_id(BrokerId(broker.id))
                            .with_host(str_bytes(&broker.host))
                            .with_port(i32::from(broker.port))
                    })
                    .collect();
                let controller = live.first().map_or(BrokerId(-1), |b| BrokerId(b.id));
                (brokers, controller)
            }
        };
        MetadataResponse::default()
            .with_brokers(brokers)
            .with_cluster_id(Some(str_bytes(CLUSTER_ID)))
            .with_controller_id(controller)
            .with_topics(topics)
    }

    fn all_topics(&self) -> Vec<MetadataResponseTopic> {
        let mut topics: Vec<TopicDescription> = self
            .engine
            .topics
            .list_topics()
            .into_iter()
            .filter(|topic| !topic.internal)
            .collect();
        topics.sort_by(|a, b| a.name.cmp(&b.name));
        topics.iter().map(|topic| self.describe(topic)).collect()
    }

    async fn requested_topic(
        &self,
        requested: MetadataRequestTopic,
        allow_create: bool,
    ) -> MetadataResponseTopic {
        let found: EngineResult<TopicDescription> = match &requested.name {
            Some(name) => self.topic(name.0.as_str(), allow_create).await,
            // v10+ may name a topic by id only.
            None => self.topic_by_id(requested.topic_id),
        };
        match found {
            Ok(topic) => self.describe(&topic),
            Err(failure) => MetadataResponseTopic::default()
                .with_error_code(error::code(&failure))
                .with_name(requested.name)
                .with_topic_id(requested.topic_id),
        }
    }

    pub(crate) fn topic_by_id(&self, id: Uuid) -> EngineResult<TopicDescription> {
        self.engine
            .topics
            .list_topics()
            .into_iter()
            .find(|topic| !topic.internal && Uuid::from_bytes(topic.id) == id)
            .ok_or_else(|| tributary_api::EngineError::UnknownTopic(id.to_string()))
    }
}

impl Broker {
    /// The partitions of `topic` with their leaders.
    fn describe(&self, topic: &TopicDescription) -> MetadataResponseTopic {
        let partitions = (0..topic.partitions)
            .filter_map(|index| Some((index, i32::try_from(index).ok()?)))
            .map(|(partition, index)| {
                let leader = match &self.cluster {
                    None => Some(NODE_ID),
                    Some(cluster) => cluster
                        .leader(&TopicPartition::new(topic.name.clone(), partition))
                        .map(BrokerId),
                };
                let answer = MetadataResponsePartition::default()
                    .with_partition_index(index)
                    // -1: no leader epochs, so clients skip KIP-320 epoch validation.
                    .with_leader_epoch(-1);
                match leader {
                    Some(leader) => answer
                        .with_error_code(0)
                        .with_leader_id(leader)
                        .with_replica_nodes(vec![leader])
                        .with_isr_nodes(vec![leader]),
                    None => answer
                        .with_error_code(ResponseError::LeaderNotAvailable.code())
                        .with_leader_id(BrokerId(-1)),
                }
            })
            .collect();
        MetadataResponseTopic::default()
            .with_name(Some(topic_name(&topic.name)))
            .with_topic_id(Uuid::from_bytes(topic.id))
            .with_partitions(partitions)
    }
}
