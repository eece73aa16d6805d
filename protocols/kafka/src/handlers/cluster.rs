//! Cluster-level APIs: DescribeCluster (this broker, or with a cluster the live brokers),
//! DeleteRecords and OffsetForLeaderEpoch (on the partition's leader only, else
//! NOT_LEADER_OR_FOLLOWER). DeleteRecords moves the log start offset (-1 means "up to the high
//! watermark"); OffsetForLeaderEpoch reports no leader epochs, so every epoch ends at the high
//! watermark and clients never truncate.
//!
//! With a cluster, a client is told the brokers' addresses on the listener kind it came in on
//! ([`Broker::reachable`]): a client of this broker's TLS port gets every broker's TLS port
//! (a broker without a TLS listener is left out), any other client the plaintext ports.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{
    BrokerId, DeleteRecordsRequest, DeleteRecordsResponse, DescribeClusterRequest,
    DescribeClusterResponse, OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse,
};
use tributary_api::cluster::ClusterView;
use tributary_api::{EngineResult, TopicPartition};

use super::{Broker, CLUSTER_ID, NODE_ID, RequestContext, partition_of, str_bytes};
use crate::error;

/// A live broker as a client of one connection reaches it.
pub(super) struct Reachable {
    pub(super) id: i32,
    pub(super) host: String,
    pub(super) port: u16,
}

impl Broker {
    /// The live brokers of `cluster` at the ports a client of this connection can use: their
    /// TLS ports when it came in on this broker's TLS port, else their plaintext ports.
    pub(super) fn reachable(
        &self,
        cluster: &dyn ClusterView,
        context: &RequestContext,
    ) -> Vec<Reachable> {
        let live = cluster.live();
        let own = cluster.local_id();
        let tls = live
            .iter()
            .any(|broker| broker.id == own && broker.tls_port == Some(context.local_port));
        live.into_iter()
            .filter_map(|broker| {
                // A broker without a Kafka listener (RocketMQ only) advertises port 0.
                let port = if tls {
                    broker.tls_port?
                } else {
                    Some(broker.port).filter(|port| *port != 0)?
                };
                Some(Reachable {
                    id: broker.id,
                    host: broker.host,
                    port,
                })
            })
            .collect()
    }

    pub(super) fn describe_cluster(
        &self,
        context: &RequestContext,
        _request: DescribeClusterRequest,
    ) -> DescribeClusterResponse {
        let (brokers, controller) = match &self.cluster {
            None => {
                let broker = DescribeClusterBroker::default()
                    .with_broker_id(NODE_ID)
                    .with_host(str_bytes(&self.settings.advertised_host))
                    .with_port(i32::from(context.local_port));
                (vec![broker], NODE_ID)
            }
            Some(cluster) => {
                let live = self.reachable(cluster.as_ref(), context);
                let controller = live.first().map_or(BrokerId(-1), |b| BrokerId(b.id));
                let brokers = live
                    .into_iter()
                    .map(|broker| {
                        DescribeClusterBroker::default()
                            .with_broker_id(BrokerId(broker.id))
                            .with_host(str_bytes(&broker.host))
                            .with_port(i32::from(broker.port))
                    })
                    .collect();
                (brokers, controller)
            }
        };
        DescribeClusterResponse::default()
            .with_cluster_id(str_bytes(CLUSTER_ID))
            .with_controller_id(controller)
            .with_brokers(brokers)
    }

    /// The partition `index` of `topic`, as the engine names it, or the Kafka error code.
    async fn target(&self, topic: &str, index: i32) -> Result<TopicPartition, i16> {
        let found = self
            .topic(topic, false)
            .await
            .map_err(|failure| error::code(&failure))?;
        let target = partition_of(&found, index)
            .map(|partition| TopicPartition::new(found.name.clone(), partition))
            .ok_or(ResponseError::UnknownTopicOrPartition.code())?;
        if self.leads(&target) {
            Ok(target)
        } else {
            Err(ResponseError::NotLeaderOrFollower.code())
        }
    }

    pub(super) async fn delete_records(
        &self,
        request: DeleteRecordsRequest,
    ) -> DeleteRecordsResponse {
        let mut topics = Vec::with_capacity(request.topics.len());
        for wanted in request.topics {
            let mut partitions = Vec::with_capacity(wanted.partitions.len());
            for partition in wanted.partitions {
                let index = partition.partition_index;
                let result = DeleteRecordsPartitionResult::default().with_partition_index(index);
                let outcome: Result<i64, i16> =
                    match self.target(wanted.name.0.as_str(), index).await {
                        Err(code) => Err(code),
                        Ok(target) => self
                            .delete_before(&target, partition.offset)
                            .await
                            .map_err(|failure| error::code(&failure)),
                    };
                partitions.push(match outcome {
                    Ok(low_watermark) => result.with_low_watermark(low_watermark),
                    Err(code) => result.with_low_watermark(-1).with_error_code(code),
                });
            }
            topics.push(
                DeleteRecordsTopicResult::default()
                    .with_name(wanted.name)
                    .with_partitions(partitions),
            );
        }
        DeleteRecordsResponse::default().with_topics(topics)
    }

    async fn delete_before(&self, target: &TopicPartition, offset: i64) -> EngineResult<i64> {
        let before = if offset == -1 {
            self.engine.log.offsets(target)?.high_watermark
        } else {
            offset
        };
        self.engine.log.delete_records(target, before).await
    }

    pub(super) async fn offset_for_leader_epoch(
        &self,
        request: OffsetForLeaderEpochRequest,
    ) -> OffsetForLeaderEpochResponse {
        let mut topics = Vec::with_capacity(request.topics.len());
        for wanted in request.topics {
            let mut partitions = Vec::with_capacity(wanted.partitions.len());
            for partition in wanted.partitions {
                let index = partition.partition;
                let result = EpochEndOffset::default().with_partition(index);
                let end = match self.target(wanted.topic.0.as_str(), index).await {
                    Ok(target) => self
                        .engine
                        .log
                        .offsets(&target)
                        .map(|offsets| offsets.high_watermark)
                        .map_err(|failure| error::code(&failure)),
                    Err(code) => Err(code),
                };
                partitions.push(match end {
                    Ok(end_offset) => result
                        .with_leader_epoch(partition.leader_epoch)
                        .with_end_offset(end_offset),
                    Err(code) => result
                        .with_error_code(code)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1),
                });
            }
            topics.push(
                OffsetForLeaderTopicResult::default()
                    .with_topic(wanted.topic)
                    .with_partitions(partitions),
            );
        }
        OffsetForLeaderEpochResponse::default().with_topics(topics)
    }
}
