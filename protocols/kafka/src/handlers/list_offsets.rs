//! ListOffsets: earliest (-2, and -4 "earliest local", the same here), latest (-1), max
//! timestamp (-3), and the first offset at or after a timestamp. No match gives offset -1.

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
                                self.lookup(&target, wanted.timestamp)
                                    .await
                                    .map_err(|failure| error::code(&failure))
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

    async fn lookup(
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
