//! ListOffsets: earliest (-2, and -4 "earliest local", the same here), latest (-1), max
//! timestamp (-3), and the first offset at or after a timestamp. No match gives offset -1.
//! With isolation level `read_committed` (v2+), latest is the last stable offset (the first
//! offset of the earliest open transaction), as Kafka answers it.

use kafka_protocol::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use tributary_api::{EngineResult, OffsetQuery, TimestampOffset, TopicPartition};

use super::{Broker, partition_of};
use crate::error;

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

impl Broker {
    pub(super) async fn list_offsets(&self, request: ListOffsetsRequest) -> ListOffsetsResponse {
        let read_committed = request.isolation_level == 1;
        let mut topics = Vec::with_capacity(request.topics.len());
        for wanted_topic in request.topics {
            let topic = self.topic(wanted_topic.name.0.as_str(), false).await;
            let mut partitions = Vec::with_capacity(wanted_topic.partitions.len());
            for wanted in wanted_topic.partitions {
                let index = wanted.partition_index;
                let answer = match &topic {
                    Err(failure) => Err(error::code(failure)),
                    Ok(topic) => match partition_of(topic, index) {
                        None => Err(ResponseError::UnknownTopicOrPartition.code()),
                        Some(partition) => {
                            let target = TopicPartition::new(topic.name.clone(), partition);
                            if !self.leads(&target) {
                                Err(ResponseError::NotLeaderOrFollower.code())
                            } else {
                                let stable = read_committed.then_some(topic.id);
                                self.lookup(&target, wanted.timestamp, stable).await
                            }
                        }
                    },
                };
                let response = ListOffsetsPartitionResponse::default().with_partition_index(index);
                partitions.push(match answer {
                    Ok(found) => {
                        let found = found.unwrap_or(TimestampOffset {
                            offset: -1,
                            timestamp: -1,
                        });
                        response
                            .with_offset(found.offset)
                            .with_timestamp(found.timestamp)
                    }
                    Err(code) => response
                        .with_error_code(code)
                        .with_offset(-1)
                        .with_timestamp(-1),
                });
            }
            topics.push(
                ListOffsetsTopicResponse::default()
                    .with_name(wanted_topic.name)
                    .with_partitions(partitions),
            );
        }
        ListOffsetsResponse::default().with_topics(topics)
    }

    /// `stable`: the topic id when latest means the last stable offset (`read_committed`).
    async fn lookup(
        &self,
        target: &TopicPartition,
        timestamp: i64,
        stable: Option<[u8; 16]>,
    ) -> Result<Option<TimestampOffset>, i16> {
        if let (LATEST, Some(topic_id)) = (timestamp, stable) {
            if self.serves_transactions() {
                self.transactions
                    .ensure_loaded(&self.txn_services())
                    .await?;
            }
            let joined = self
                .engine
                .transactions
                .ever_joined(topic_id, target.partition);
            if self.serves_transactions() && !joined {
                return self
                    .lookup_log(target, timestamp)
                    .await
                    .map_err(|failure| error::code(&failure));
            }
            let log = self.engine.log.as_ref();
            let high_watermark = log
                .offsets(target)
                .map_err(|f| error::code(&f))?
                .high_watermark;
            let stable = self
                .engine
                .transactions
                .stable(log, topic_id, target, high_watermark, high_watermark)
                .await
                .map_err(|failure| error::code(&failure))?;
            return Ok(Some(TimestampOffset {
                offset: stable.last_stable_offset.min(high_watermark),
                timestamp: -1,
            }));
        }
        self.lookup_log(target, timestamp)
            .await
            .map_err(|failure| error::code(&failure))
    }

    async fn lookup_log(
        &self,
        target: &TopicPartition,
        timestamp: i64,
    ) -> EngineResult<Option<TimestampOffset>> {
        let log = &self.engine.log;
        let bound = |offset| {
            Some(TimestampOffset {
                offset,
                timestamp: -1,
            })
        };
        match timestamp {
            LATEST => log
                .offsets(target)
                .map(|offsets| bound(offsets.high_watermark)),
            EARLIEST | EARLIEST_LOCAL => {
                log.offsets(target).map(|offsets| bound(offsets.log_start))
            }
            MAX_TIMESTAMP => log.find_offset(target, OffsetQuery::MaxTimestamp).await,
            at if at >= 0 => log.find_offset(target, OffsetQuery::AtOrAfter(at)).await,
            _ => Ok(None),
        }
    }
}
