//! Metadata: one broker (node 0 at the advertised host and the port the client reached), every
//! partition led by it, stable topic ids, internal topics hidden, auto-creation of unknown topics
//! when the client allows it (always before v4, `allow_auto_topic_creation` from v4).

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{MetadataRequest, MetadataResponse};
use tributary_api::{EngineResult, TopicDescription};
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
        let broker = MetadataResponseBroker::default()
            .with_node_id(NODE_ID)
            .with_host(str_bytes(&self.settings.advertised_host))
            .with_port(i32::from(context.local_port));
        MetadataResponse::default()
            .with_brokers(vec![broker])
            .with_cluster_id(Some(str_bytes(CLUSTER_ID)))
            .with_controller_id(NODE_ID)
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
        topics.iter().map(describe).collect()
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
            Ok(topic) => describe(&topic),
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

fn describe(topic: &TopicDescription) -> MetadataResponseTopic {
    let partitions = (0..topic.partitions)
        .filter_map(|index| i32::try_from(index).ok())
        .map(|index| {
            MetadataResponsePartition::default()
                .with_error_code(0)
                .with_partition_index(index)
                .with_leader_id(NODE_ID)
                // -1: no leader epochs, so clients skip KIP-320 epoch validation.
                .with_leader_epoch(-1)
                .with_replica_nodes(vec![NODE_ID])
                .with_isr_nodes(vec![NODE_ID])
        })
        .collect();
    MetadataResponseTopic::default()
        .with_name(Some(topic_name(&topic.name)))
        .with_topic_id(Uuid::from_bytes(topic.id))
        .with_partitions(partitions)
}
