//! Produce: the batches of each partition are checked (length, magic, CRC-32C) before any is
//! appended, then appended in order as sent, as [`VerifiedBatch`]es so the log does not compute
//! the CRC a second time; the log assigns base offsets. acks=0 gets no response; acks=1 and
//! acks=-1 are answered once the append is as durable as the topic's durability policy promises
//! (one broker: "all in-sync replicas" is this one).
//!
//! Two stages, so a connection can pipeline produce requests ([`Broker::produce_staged`]): the
//! batches are written in request order first, and the response waits for their durability
//! afterwards. One fsync then covers the batches of several requests in flight.
//!
//! Batches with a producer id go through the idempotence rules of [`crate::producers`] first;
//! InitProducerId hands out the ids. A transactional batch needs the request's transactional id
//! (WRITE on it, else TRANSACTIONAL_ID_AUTHORIZATION_FAILED, as Kafka), and the coordinator
//! ([`crate::txn`]) admits it only for a partition of the open transaction of that producer id
//! and epoch (KIP-890 part 1's verification, on every transactional batch; refusals are
//! translated for the Produce version as Kafka's leaders do, see [`unverified`]); from v12 a
//! partition outside the transaction is added to it first (KIP-890 part 2's implicit add). It
//! is appended while the coordinator's lock of the id is held shared, so no marker can slip
//! in between: a late batch of a completed transaction is refused, never written after its
//! marker (Kafka's "hanging transaction"). Control batches come from the coordinator only: a
//! client's is refused INVALID_RECORD.

use std::future::Future;
use std::pin::Pin;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    InitProducerIdRequest, InitProducerIdResponse, ProduceRequest, ProduceResponse, ProducerId,
};
use tokio::sync::OwnedRwLockReadGuard;
use tributary_api::batch::{BatchHeader, VerifiedBatch};
use tributary_api::{EngineError, PendingDurability, TopicDescription, TopicPartition};

use super::authorize::TOPIC_DENIED;
use super::{Broker, RequestContext, partition_of};
use crate::acl::model::operation::WRITE;
use crate::acl::model::resource::TOPIC;
use crate::producers::{Backing, Sequenced};
use crate::txn::state::TxnMeta;
use crate::{error, metrics};

/// A produce whose batches are written and whose acknowledgement waits on their durability:
/// resolves to the response (`None` for acks=0). It borrows nothing, so a connection can keep
/// it while it writes the next request's batches.
pub(crate) type StagedProduce =
    Pin<Box<dyn Future<Output = Option<ProduceResponse>> + Send + 'static>>;

/// One partition of a staged produce: an answer already, or written batches awaiting fsync.
enum PartitionStage {
    Answered(PartitionProduceResponse),
    Written {
        index: i32,
        topic: String,
        first_offset: Option<i64>,
        log_start: i64,
        /// The append time stamped on the batches of a LogAppendTime topic.
        log_append_time: Option<i64>,
        bytes_in: u64,
        records_in: u64,
        durability: Vec<PendingDurability>,
    },
}

impl PartitionStage {
    async fn finish(self) -> PartitionProduceResponse {
        match self {
            Self::Answered(response) => response,
            Self::Written {
                index,
                topic,
                first_offset,
                log_start,
                log_append_time,
                bytes_in,
                records_in,
                durability,
            } => {
                for pending in durability {
                    if let Err(failure) = pending.await {
                        tracing::debug!(%topic, index, error = %failure, "append not made durable");
                        return failed(index, error::code(&failure));
                    }
                }
                ::metrics::counter!(metrics::BYTES_IN, "topic" => topic.clone())
                    .increment(bytes_in);
                ::metrics::counter!(metrics::RECORDS_IN, "topic" => topic).increment(records_in);
                PartitionProduceResponse::default()
                    .with_index(index)
                    .with_base_offset(first_offset.unwrap_or(-1))
                    // -1 on CreateTime topics: the broker does not stamp records.
                    .with_log_append_time_ms(log_append_time.unwrap_or(-1))
                    .with_log_start_offset(log_start)
            }
        }
    }
}

impl Broker {
    /// `None` for acks=0: the client expects no response.
    pub(super) async fn produce(
        &self,
        context: &RequestContext,
        version: i16,
        request: ProduceRequest,
    ) -> Option<ProduceResponse> {
        self.produce_staged(context, version, request).await.await
    }

    /// Writes every batch of the request (in request order) and returns the acknowledgement
    /// still to be awaited; see [`StagedProduce`].
    pub(crate) async fn produce_staged(
        &self,
        context: &RequestContext,
        version: i16,
        request: ProduceRequest,
    ) -> StagedProduce {
        let mut topics = Vec::with_capacity(request.topic_data.len());
        // WRITE on the transactional id, checked once for the request.
        let transactional_id = match request.transactional_id.as_ref() {
            Some(id) => {
                let id = id.0.as_str().to_owned();
                let allowed = self.may_use_transactional_id(context, WRITE, &id).await;
                Some((id, allowed))
            }
            None => None,
        };
        for topic_data in request.topic_data {
            // v13 names topics by id only (no auto-creation by id).
            let topic = if version >= 13 {
                self.topic_by_id(topic_data.topic_id)
                    .map_err(|_| ResponseError::UnknownTopicId.code())
            } else {
                let name = topic_data.name.0.as_str().to_owned();
                // With the authorizer, auto-creation needs CREATE (else the topic is unknown).
                let create = !self.authorizer.enabled() || self.may_create(context, &name).await;
                if self.may(context, WRITE, TOPIC, &name).await {
                    self.topic(&name, create)
                        .await
                        .map_err(|failure| error::code(&failure))
                } else {
                    Err(TOPIC_DENIED)
                }
            };
            // A topic named by id is checked once its name is known.
            let topic = match topic {
                Ok(found)
                    if version >= 13 && !self.may(context, WRITE, TOPIC, &found.name).await =>
                {
                    Err(TOPIC_DENIED)
                }
                other => other,
            };
            let mut partitions = Vec::with_capacity(topic_data.partition_data.len());
            for partition_data in topic_data.partition_data {
                let index = partition_data.index;
                let stage = match &topic {
                    _ if matches!(transactional_id, Some((_, false))) => {
                        PartitionStage::Answered(failed(
                            index,
                            ResponseError::TransactionalIdAuthorizationFailed.code(),
                        ))
                    }
                    Err(code) => PartitionStage::Answered(failed(index, *code)),
                    Ok(topic) => {
                        let id = transactional_id.as_ref().map(|(id, _)| id.as_str());
                        self.write_partition(version, topic, index, partition_data.records, id)
                            .await
                    }
                };
                partitions.push(stage);
            }
            topics.push((topic_data.name, topic_data.topic_id, partitions));
        }
        let acks = request.acks;
        Box::pin(async move {
            let mut responses = Vec::with_capacity(topics.len());
            for (name, topic_id, stages) in topics {
                let mut partitions = Vec::with_capacity(stages.len());
                for stage in stages {
                    partitions.push(stage.finish().await);
                }
                responses.push(
                    TopicProduceResponse::default()
                        .with_name(name)
                        .with_topic_id(topic_id)
                        .with_partition_responses(partitions),
                );
            }
            (acks != 0).then(|| ProduceResponse::default().with_responses(responses))
        })
    }

    /// Checks and writes one partition's batches. Unsequenced batches leave their fsync to be
    /// awaited later; a sequenced (idempotent) batch is waited for at once, because its
    /// producer state is recorded only for durable batches (a retry of a batch lost in a
    /// failed fsync must not be answered as a duplicate).
    async fn write_partition(
        &self,
        version: i16,
        topic: &TopicDescription,
        index: i32,
        records: Option<Bytes>,
        transactional_id: Option<&str>,
    ) -> PartitionStage {
        let answer = |code| PartitionStage::Answered(failed(index, code));
        let Some(partition) = partition_of(topic, index) else {
            return answer(ResponseError::UnknownTopicOrPartition.code());
        };
        let Some(records) = records else {
            return answer(ResponseError::InvalidRecord.code());
        };
        let batches = match split_batches(&records) {
            Ok(batches) => batches,
            Err(failure) => {
                tracing::warn!(topic = %topic.name, partition, error = %failure, "produce refused: the record set is not a valid RecordBatch v2");
                // The message reaches clients from Produce v8 on, as Kafka's does.
                let refused = failed(index, error::code(&failure))
                    .with_error_message(Some(super::str_bytes(&failure.to_string())));
                return PartitionStage::Answered(refused);
            }
        };
        let target = TopicPartition::new(topic.name.clone(), partition);
        if !self.leads(&target) {
            return answer(ResponseError::NotLeaderOrFollower.code());
        }
        let mut first_offset = None;
        let mut log_start = -1;
        let mut log_append_time = None;
        let stamps = topic.settings.timestamp_type == tributary_api::TimestampType::LogAppendTime;
        let mut records_in: u64 = 0;
        let mut durability = Vec::with_capacity(batches.len());
        for batch in batches {
            let header = *batch.header();
            if header.is_control() {
                return answer(ResponseError::InvalidRecord.code());
            }
            // Held (shared) until the transactional batch is durable; see the module docs.
            let _admitted = if header.is_transactional() {
                let (Some(id), true) = (transactional_id, header.producer_id >= 0) else {
                    return answer(ResponseError::TransactionalIdAuthorizationFailed.code());
                };
                let producer = (header.producer_id, header.producer_epoch);
                match self
                    .admit_transactional(version, topic, id, producer, &target)
                    .await
                {
                    Ok(held) => Some(held),
                    Err(code) => {
                        tracing::debug!(partition = %target, transactional_id = id,
                            producer_id = producer.0, epoch = producer.1, code,
                            "transactional batch refused by the coordinator");
                        return PartitionStage::Answered(unverified(index, version, code));
                    }
                }
            } else {
                None
            };
            if header.producer_id >= 0 {
                match self.append_sequenced(topic, &target, batch).await {
                    Ok(Sequenced::Appended(outcome)) => {
                        first_offset.get_or_insert(outcome.base_offset);
                        log_start = outcome.log_start;
                        if stamps {
                            log_append_time.get_or_insert(outcome.log_append_time);
                        }
                        records_in += u64::try_from(header.record_count).unwrap_or(0);
                    }
                    Ok(Sequenced::Duplicate { base_offset }) => {
                        first_offset.get_or_insert(base_offset);
                    }
                    Ok(Sequenced::Refused(refusal)) => return answer(refusal.code()),
                    Err(failure) => {
                        tracing::debug!(partition = %target, error = %failure, "idempotent append failed");
                        return refused(index, &failure);
                    }
                }
                continue;
            }
            let (outcome, pending) = match self.engine.log.append_verified(&target, batch).await {
                Ok(written) => written,
                Err(failure) => {
                    tracing::debug!(partition = %target, error = %failure, "append failed");
                    return refused(index, &failure);
                }
            };
            first_offset.get_or_insert(outcome.base_offset);
            log_start = outcome.log_start;
            if stamps {
                log_append_time.get_or_insert(outcome.log_append_time);
            }
            records_in += u64::try_from(header.record_count).unwrap_or(0);
            durability.push(pending);
        }
        PartitionStage::Written {
            index,
            topic: topic.name.clone(),
            first_offset,
            log_start,
            log_append_time,
            bytes_in: records.len() as u64,
            records_in,
            durability,
        }
    }
}

impl Broker {
    /// The coordinator's verification of a transactional batch ([`crate::txn`]). From v12
    /// (KIP-890 part 2) a partition outside the transaction is added to it first, as Kafka's
    /// leaders do for those versions whatever transaction version the cluster runs: only the
    /// first batch of a partition in a transaction pays for the add.
    async fn admit_transactional(
        &self,
        version: i16,
        topic: &TopicDescription,
        id: &str,
        producer: (i64, i16),
        target: &TopicPartition,
    ) -> Result<OwnedRwLockReadGuard<Option<TxnMeta>>, i16> {
        let services = self.txn_services();
        match self
            .transactions
            .admit(&services, id, producer, target)
            .await
        {
            Err(code) if version >= 12 && code == ResponseError::TransactionAbortable.code() => {
                let joining = vec![(target.clone(), topic.id)];
                self.transactions
                    .add_partitions(
                        &services,
                        id,
                        producer,
                        ResponseError::ProducerFenced,
                        joining,
                    )
                    .await?;
                // A completion between the add and this check refuses the batch, as it should.
                self.transactions
                    .admit(&services, id, producer, target)
                    .await
            }
            other => other,
        }
    }

    /// An idempotent batch: checked against the producer state rebuilt from the log,
    /// appended if new, and waited for at once (see [`crate::producers`]).
    async fn append_sequenced(
        &self,
        topic: &TopicDescription,
        target: &TopicPartition,
        batch: VerifiedBatch,
    ) -> Result<Sequenced, EngineError> {
        self.producers
            .append_sequenced(&Backing::from(&self.engine), topic.id, target, batch)
            .await
    }

    pub(super) async fn init_producer_id(
        &self,
        version: i16,
        request: InitProducerIdRequest,
    ) -> InitProducerIdResponse {
        if let Some(id) = &request.transactional_id {
            return self
                .init_transactional_producer(version, id.0.as_str(), &request)
                .await;
        }
        // v3+ (KIP-360): a producer that knows its id asks for the next epoch.
        let known = version >= 3 && request.producer_id.0 >= 0 && request.producer_epoch >= 0;
        if let Some(next_epoch) = request.producer_epoch.checked_add(1).filter(|_| known) {
            return InitProducerIdResponse::default()
                .with_producer_id(request.producer_id)
                .with_producer_epoch(next_epoch);
        }
        match self.producers.allocate(&Backing::from(&self.engine)).await {
            Ok(id) => InitProducerIdResponse::default()
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(0),
            Err(failure) => InitProducerIdResponse::default()
                .with_error_code(error::code(&failure))
                .with_producer_id(ProducerId(-1))
                .with_producer_epoch(-1),
        }
    }
}

/// Splits a partition's record set into whole, CRC-valid batches whose records read back one
/// by one ([`tributary_api::batch::check_produced`]), or refuses all of them.
pub(crate) fn split_batches(records: &Bytes) -> Result<Vec<VerifiedBatch>, EngineError> {
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
        let batch = VerifiedBatch::verify(records.slice(at..end))?;
        tributary_api::batch::check_produced(&batch)?;
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

/// The answer to a transactional batch the coordinator refused (`code`, its own error), as
/// Kafka's partition leaders translate a failed verification for the Produce version:
/// PRODUCER_FENCED is INVALID_PRODUCER_EPOCH (what producers handle there); a partition outside
/// the transaction is TRANSACTION_ABORTABLE from v11 (KIP-890) and INVALID_TXN_STATE before,
/// with Kafka's message; a transaction being completed (or a coordinator still loading) is the
/// retriable NOT_ENOUGH_REPLICAS below v12, whose clients would not retry the coordinator
/// errors. Nothing of the partition is written.
fn unverified(index: i32, version: i16, code: i16) -> PartitionProduceResponse {
    const NOT_IN_TRANSACTION: i16 = ResponseError::TransactionAbortable.code();
    const FENCED: i16 = ResponseError::ProducerFenced.code();
    const CONCURRENT: i16 = ResponseError::ConcurrentTransactions.code();
    const LOADING: i16 = ResponseError::CoordinatorLoadInProgress.code();
    let (code, message) = match code {
        FENCED => (ResponseError::InvalidProducerEpoch.code(), None),
        NOT_IN_TRANSACTION if version <= 10 => (
            ResponseError::InvalidTxnState.code(),
            Some("Partition was not added to the transaction"),
        ),
        CONCURRENT if version >= 12 => (code, None),
        CONCURRENT | LOADING => {
            let underlying = if code == CONCURRENT {
                "CONCURRENT_TRANSACTIONS"
            } else {
                "COORDINATOR_LOAD_IN_PROGRESS"
            };
            let message = format!(
                "Unable to verify the partition has been added to the transaction. \
                 Underlying error: {underlying}"
            );
            return failed(index, ResponseError::NotEnoughReplicas.code())
                .with_error_message(Some(super::str_bytes(&message)));
        }
        other => (other, None),
    };
    failed(index, code).with_error_message(message.map(super::str_bytes))
}

/// A failed append; a refused record (a compacted topic's keyless one, say) carries the reason,
/// which clients show from Produce v8 on.
fn refused(index: i32, failure: &EngineError) -> PartitionStage {
    let mut response = failed(index, error::code(failure));
    if matches!(failure, EngineError::CorruptBatch(_)) {
        response = response.with_error_message(Some(super::str_bytes(&failure.to_string())));
    }
    PartitionStage::Answered(response)
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
        let split: Vec<Bytes> = split
            .into_iter()
            .map(|batch| batch.bytes().clone())
            .collect();
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
    fn coordinator_refusals_are_translated_for_the_produce_version() {
        let answer = |version, refusal: ResponseError| {
            let response = unverified(0, version, refusal.code());
            let message = response.error_message.map(|m| m.to_string());
            (ResponseError::try_from_code(response.error_code), message)
        };
        let not_added = Some("Partition was not added to the transaction".to_owned());
        assert_eq!(
            answer(10, ResponseError::TransactionAbortable),
            (Some(ResponseError::InvalidTxnState), not_added)
        );
        assert_eq!(
            answer(11, ResponseError::TransactionAbortable),
            (Some(ResponseError::TransactionAbortable), None)
        );
        for version in [3, 11, 12] {
            assert_eq!(
                answer(version, ResponseError::ProducerFenced).0,
                Some(ResponseError::InvalidProducerEpoch)
            );
            assert_eq!(
                answer(version, ResponseError::InvalidProducerIdMapping),
                (Some(ResponseError::InvalidProducerIdMapping), None)
            );
            assert_eq!(
                answer(version, ResponseError::CoordinatorLoadInProgress).0,
                Some(ResponseError::NotEnoughReplicas)
            );
        }
        // Below v12 the retriable NOT_ENOUGH_REPLICAS; v12+ clients know the coordinator's code.
        let concurrent = answer(11, ResponseError::ConcurrentTransactions);
        assert_eq!(concurrent.0, Some(ResponseError::NotEnoughReplicas));
        assert!(
            concurrent
                .1
                .is_some_and(|m| m.ends_with("CONCURRENT_TRANSACTIONS"))
        );
        assert_eq!(
            answer(12, ResponseError::ConcurrentTransactions),
            (Some(ResponseError::ConcurrentTransactions), None)
        );
    }

    #[test]
    fn a_truncated_set_is_refused() {
        let whole = one_batch(b"payload");
        let cut = whole.slice(..whole.len() - 3);
        assert!(split_batches(&cut).is_err());
        assert!(split_batches(&Bytes::new()).is_err());
    }
}
