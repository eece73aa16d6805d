//! Produce: the batches of each partition are checked (length, magic, CRC-32C) before any is
//! appended, then appended in order as sent; the log assigns base offsets. acks=0 gets no
//! response; acks=1 and acks=-1 are answered once the append is as durable as the topic's
//! durability policy promises (one broker: "all in-sync replicas" is this one).

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use tributary_api::batch::{BatchHeader, verify_batch};
use tributary_api::{EngineError, TopicDescription, TopicPartition};

use super::{Broker, partition_of};
use crate::{error, metrics};

impl Broker {
    /// `None` for acks=0: the client expects no response.
    pub(super) async fn produce(
        &self,
        _version: i16,
        request: ProduceRequest,
    ) -> Option<ProduceResponse> {
        let mut responses = Vec::with_capacity(request.topic_data.len());
        for topic_data in request.topic_data {
            let name = topic_data.name.0.as_str().to_owned();
            let topic = self.topic(&name, true).await;
            let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
            for partition_data in topic_data.partition_data {
                let index = partition_data.index;
                let outcome = match &topic {
                    Err(failure) => failed(index, error::code(failure)),
                    Ok(topic) => {
                        self.produce_partition(topic, index, partition_data.records)
                            .await
                    }
                };
                partitions.push(outcome);
            }
            responses.push(
                TopicProduceResponse::default()
                    .with_name(topic_data.name)
                    .with_partition_responses(partitions),
            );
        }
        (request.acks != 0).then(|| ProduceResponse::default().with_responses(responses))
    }

    async fn produce_partition(
        &self,
        topic: &TopicDescription,
        index: i32,
        records: Option<Bytes>,
    ) -> PartitionProduceResponse {
        let Some(partition) = partition_of(topic, index) else {
            return failed(index, ResponseError::UnknownTopicOrPartition.code());
        };
        let Some(records) = records else {
            return failed(index, ResponseError::InvalidRecord.code());
        };
        let batches = match split_batches(&records) {
            Ok(batches) => batches,
            Err(failure) => {
                tracing::debug!(topic = %topic.name, partition, error = %failure, "produce refused");
                return failed(index, error::code(&failure));
            }
        };
        let target = TopicPartition::new(topic.name.clone(), partition);
        let mut first_offset = None;
        let mut log_start = -1;
        for batch in batches {
            match self.engine.log.append(&target, batch).await {
                Ok(outcome) => {
                    first_offset.get_or_insert(outcome.base_offset);
                    log_start = outcome.log_start;
                }
                Err(failure) => {
                    tracing::debug!(partition = %target, error = %failure, "append failed");
                    return failed(index, error::code(&failure));
                }
            }
        }
        ::metrics::counter!(metrics::BYTES_IN, "topic" => topic.name.clone())
            .increment(records.len() as u64);
        PartitionProduceResponse::default()
            .with_index(index)
            .with_base_offset(first_offset.unwrap_or(-1))
            // CreateTime topics: the broker does not stamp records.
            .with_log_append_time_ms(-1)
            .with_log_start_offset(log_start)
    }
}

/// Splits a partition's record set into whole, CRC-valid batches, or refuses all of them.
fn split_batches(records: &Bytes) -> Result<Vec<Bytes>, EngineError> {
    let mut batches = Vec::new();
    let mut at = 0;
    while at < records.len() {
        let rest = records.get(at..).unwrap_or_default();
        let header = BatchHeader::parse(rest)?;
        let end = at
            .checked_add(header.total_len)
            .filter(|end| *end <= records.len())
            .ok_or(EngineError::CorruptBatch(
                tributary_api::BatchError::Truncated {
                    needed: header.total_len,
                    available: rest.len(),
                },
            ))?;
        let batch = records.slice(at..end);
        verify_batch(&batch)?;
        batches.push(batch);
        at = end;
    }
    if batches.is_empty() {
        return Err(EngineError::CorruptBatch(
            tributary_api::BatchError::Truncated {
                needed: tributary_api::batch::BATCH_HEADER_LEN,
                available: 0,
            },
        ));
    }
    Ok(batches)
}

fn failed(index: i32, code: i16) -> PartitionProduceResponse {
    PartitionProduceResponse::default()
        .with_index(index)
        .with_error_code(code)
        .with_base_offset(-1)
        .with_log_append_time_ms(-1)
        .with_log_start_offset(-1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tributary_api::Record;
    use tributary_api::batch::build_batch;

    fn one_batch(value: &[u8]) -> Bytes {
        build_batch(&[Record {
            value: Some(Bytes::copy_from_slice(value)),
            ..Record::default()
        }])
    }

    #[test]
    fn back_to_back_batches_split_whole() {
        let first = one_batch(b"a");
        let second = one_batch(b"bc");
        let both = Bytes::from([first.as_ref(), second.as_ref()].concat());
        let split = split_batches(&both).expect("valid batches");
        assert_eq!(split, vec![first, second]);
    }

    #[test]
    fn a_flipped_bit_is_corrupt_message() {
        let mut bytes = one_batch(b"payload").to_vec();
        let last = bytes.len() - 1;
        bytes[last] ^= 0x40;
        let failure = split_batches(&Bytes::from(bytes)).expect_err("bad crc");
        assert_eq!(error::error_code(&failure), ResponseError::CorruptMessage);
    }

    #[test]
    fn a_truncated_set_is_refused() {
        let whole = one_batch(b"payload");
        let cut = whole.slice(..whole.len() - 3);
        assert!(split_batches(&cut).is_err());
        assert!(split_batches(&Bytes::new()).is_err());
    }
}
