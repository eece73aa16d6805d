//! Fetch: whole stored batches from the one containing the fetch offset (the client skips the
//! records before its offset), within the per-partition and response byte limits, with the
//! `max_wait_ms` / `min_bytes` long poll on the log's high-watermark notifications.
//!
//! Fetch sessions (KIP-227) are refused the documented way: every response carries session id 0
//! ("no session was created"), so clients keep sending full fetch requests; a request naming a
//! session id other than 0 gets FETCH_SESSION_ID_NOT_FOUND.
//!
//! `read_committed` (isolation level 1): the records end at the last stable offset, the first
//! offset of the earliest transaction still open on the partition (else the high watermark),
//! and the response lists the aborted transactions (producer id, first offset) overlapping the
//! range, from the index [`tributary_api::transactions::index`] derives from the log. Whole batches are returned;
//! the client drops the records of aborted transactions and the control batches, as with Kafka.
//! `read_uncommitted` gets everything up to the high watermark, markers included.
//!
//! Invariant: at least one batch is returned for the first partition with data even if it is
//! larger than the limits (KIP-74), so a consumer can always make progress (`read_committed`:
//! when it lies below the last stable offset).

use std::time::Duration;

use kafka_protocol::ResponseError;
use kafka_protocol::messages::fetch_response::{
    AbortedTransaction, FetchableTopicResponse, PartitionData,
};
use kafka_protocol::messages::{FetchRequest, FetchResponse, ProducerId};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tributary_api::TopicPartition;

use super::{Broker, RequestContext, partition_of};
use crate::{error, metrics};
use tributary_api::transactions::below_stable;

/// FetchRequest's isolation level asking for committed records only.
const READ_COMMITTED: i8 = 1;

/// One pass over the requested partitions.
struct FetchPass {
    response: FetchResponse,
    bytes: usize,
    /// Partitions without errors and the offset each must grow past: what a long poll waits on.
    waitable: Vec<(TopicPartition, i64)>,
    failed: bool,
}

impl Broker {
    pub(super) async fn fetch(
        &self,
        context: &RequestContext,
        version: i16,
        request: FetchRequest,
    ) -> FetchResponse {
        if version >= 7 && request.session_id != 0 {
            return FetchResponse::default()
                .with_error_code(ResponseError::FetchSessionIdNotFound.code());
        }
        let max_wait = Duration::from_millis(u64::try_from(request.max_wait_ms).unwrap_or(0));
        let deadline = Instant::now() + max_wait;
        let min_bytes = usize::try_from(request.min_bytes).unwrap_or(0);
        loop {
            let pass = self.fetch_once(version, &request).await;
            let now = Instant::now();
            if pass.failed
                || pass.bytes >= min_bytes.max(1)
                || pass.waitable.is_empty()
                || now >= deadline
            {
                self.count_bytes_out(&pass.response);
                return pass.response;
            }
            let waited = self.wait_for_any(pass.waitable, deadline - now);
            tokio::select! {
                () = waited => {}
                () = context.shutdown.cancelled() => {
                    self.count_bytes_out(&pass.response);
                    return pass.response;
                }
            }
        }
    }

    async fn fetch_once(&self, version: i16, request: &FetchRequest) -> FetchPass {
        // Responses below v3 have no overall limit; i32::MAX stands for none.
        let mut budget = usize::try_from(request.max_bytes).unwrap_or(0);
        if budget == 0 {
            budget = i32::MAX as usize;
        }
        let mut pass = FetchPass {
            response: FetchResponse::default(),
            bytes: 0,
            waitable: Vec::new(),
            failed: false,
        };
        let read_committed = request.isolation_level == READ_COMMITTED;
        // Transactions left open by the last stop are settled before any stable offset is
        // reported; a coordinator that cannot load answers every partition with its error.
        let loaded = if read_committed && self.serves_transactions() {
            self.transactions.ensure_loaded(&self.txn_services()).await
        } else {
            Ok(())
        };
        let mut topics = Vec::with_capacity(request.topics.len());
        for fetch_topic in &request.topics {
            // v13+ name topics by id only.
            let topic = if version >= 13 {
                self.topic_by_id(fetch_topic.topic_id)
            } else {
                self.topic(fetch_topic.topic.0.as_str(), false).await
            };
            let mut partitions = Vec::with_capacity(fetch_topic.partitions.len());
            for wanted in &fetch_topic.partitions {
                let index = wanted.partition;
                let target = match &topic {
                    Err(_) if version >= 13 => Err(ResponseError::UnknownTopicId.code()),
                    Err(failure) => Err(error::code(failure)),
                    Ok(topic) => partition_of(topic, index)
                        .map(|partition| TopicPartition::new(topic.name.clone(), partition))
                        .ok_or(ResponseError::UnknownTopicOrPartition.code())
                        .and_then(|target| {
                            if self.serves_reads() {
                                Ok(target)
                            } else {
                                Err(ResponseError::NotLeaderOrFollower.code())
                            }
                        }),
                };
                let target = match target.and_then(|target| loaded.map(|()| target)) {
                    Ok(target) => target,
                    Err(code) => {
                        pass.failed = true;
                        partitions.push(partition_error(index, code));
                        continue;
                    }
                };
                let limit = usize::try_from(wanted.partition_max_bytes)
                    .unwrap_or(0)
                    .min(budget.saturating_sub(pass.bytes));
                // After the response limit is used up, only the offsets are reported.
                let read_limit = if limit == 0 && pass.bytes > 0 {
                    0
                } else {
                    limit.max(1)
                };
                let read = if read_limit == 0 {
                    self.engine
                        .log
                        .offsets(&target)
                        .map(|offsets| tributary_api::ReadBatches {
                            data: bytes::Bytes::new(),
                            offsets,
                        })
                } else {
                    self.engine
                        .log
                        .read(&target, wanted.fetch_offset, read_limit)
                        .await
                };
                let stable = match (&read, &topic) {
                    // A partition that never joined a transaction holds no transactional batch:
                    // its stable offset is its high watermark, with nothing to replay.
                    (Ok(_), Ok(topic))
                        if read_committed
                            && self.serves_transactions()
                            && !self
                                .engine
                                .transactions
                                .ever_joined(topic.id, target.partition) =>
                    {
                        Ok(None)
                    }
                    (Ok(read), Ok(topic)) if read_committed => self
                        .engine
                        .transactions
                        .stable(
                            self.engine.log.as_ref(),
                            topic.id,
                            &target,
                            wanted.fetch_offset,
                            read.offsets.high_watermark,
                        )
                        .await
                        .map(Some),
                    _ => Ok(None),
                };
                let read = read.and_then(|read| stable.map(|stable| (read, stable)));
                match read {
                    Ok((read, stable)) => {
                        let high_watermark = read.offsets.high_watermark;
                        let (data, last_stable, aborted) = match stable {
                            None => (read.data.clone(), high_watermark, Some(Vec::new())),
                            Some(stable) => {
                                let last_stable = stable.last_stable_offset.min(high_watermark);
                                let aborted = stable
                                    .aborted
                                    .iter()
                                    .map(|aborted| {
                                        AbortedTransaction::default()
                                            .with_producer_id(ProducerId(aborted.producer_id))
                                            .with_first_offset(aborted.first_offset)
                                    })
                                    .collect();
                                (
                                    below_stable(&read.data, last_stable),
                                    last_stable,
                                    Some(aborted),
                                )
                            }
                        };
                        // Below min_bytes the poll waits for any partition to grow: past the
                        // fetch offset if nothing was there, past the high watermark if some
                        // was (or if an open transaction held it back: its marker is new data).
                        let wait_past = if read.data.is_empty() {
                            wanted.fetch_offset
                        } else {
                            high_watermark
                        };
                        pass.waitable.push((target, wait_past));
                        pass.bytes = pass.bytes.saturating_add(data.len());
                        partitions.push(
                            PartitionData::default()
                                .with_partition_index(index)
                                .with_high_watermark(high_watermark)
                                .with_last_stable_offset(last_stable)
                                .with_log_start_offset(read.offsets.log_start)
                                .with_aborted_transactions(aborted)
                                .with_records(Some(data)),
                        );
                    }
                    Err(failure) => {
                        pass.failed = true;
                        let offsets = self.engine.log.offsets(&target).unwrap_or_default();
                        partitions.push(
                            partition_error(index, error::code(&failure))
                                .with_high_watermark(offsets.high_watermark)
                                .with_last_stable_offset(offsets.high_watermark)
                                .with_log_start_offset(offsets.log_start),
                        );
                    }
                }
            }
            topics.push(
                FetchableTopicResponse::default()
                    // By id (v13+) the request carries no name; the resolved one labels metrics
                    // and is not encoded at those versions.
                    .with_topic(
                        topic
                            .as_ref()
                            .map(|topic| super::topic_name(&topic.name))
                            .unwrap_or_else(|_| fetch_topic.topic.clone()),
                    )
                    .with_topic_id(fetch_topic.topic_id)
                    .with_partitions(partitions),
            );
        }
        pass.response = FetchResponse::default().with_responses(topics);
        pass
    }

    /// Returns when any of `partitions` has data past its offset, or after `timeout`.
    async fn wait_for_any(&self, partitions: Vec<(TopicPartition, i64)>, timeout: Duration) {
        let mut waits = JoinSet::new();
        for (partition, offset) in partitions {
            let log = std::sync::Arc::clone(&self.engine.log);
            waits.spawn(async move { log.wait_for(&partition, offset, timeout).await });
        }
        // The first wait to finish (data or timeout) ends the poll; dropping the set cancels
        // the others.
        let _ = waits.join_next().await;
    }

    fn count_bytes_out(&self, response: &FetchResponse) {
        for topic in &response.responses {
            let (mut bytes, mut records) = (0usize, 0u64);
            for data in topic.partitions.iter().filter_map(|p| p.records.as_ref()) {
                bytes += data.len();
                records += record_count(data);
            }
            if bytes > 0 {
                let name = topic.topic.0.as_str().to_owned();
                ::metrics::counter!(metrics::BYTES_OUT, "topic" => name.clone())
                    .increment(bytes as u64);
                ::metrics::counter!(metrics::RECORDS_OUT, "topic" => name).increment(records);
            }
        }
    }
}

/// Records in back-to-back stored batches, from their headers.
fn record_count(data: &[u8]) -> u64 {
    let mut at = 0usize;
    let mut records = 0u64;
    while let Some(rest) = data.get(at..).filter(|rest| !rest.is_empty()) {
        let Ok(header) = tributary_api::BatchHeader::parse(rest) else {
            break;
        };
        records += u64::try_from(header.record_count).unwrap_or(0);
        at = at.saturating_add(header.total_len);
    }
    records
}

fn partition_error(index: i32, code: i16) -> PartitionData {
    PartitionData::default()
        .with_partition_index(index)
        .with_error_code(code)
        .with_high_watermark(-1)
        .with_last_stable_offset(-1)
        .with_log_start_offset(-1)
        .with_records(Some(bytes::Bytes::new()))
}
