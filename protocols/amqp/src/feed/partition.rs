//! One partition of a topic feed: reads whole batches from the partition's durable cursor,
//! matches each record against the bindings of the topic's exchange and enqueues it into the
//! queues it matches (once per queue, however many of the queue's bindings match), then moves
//! the cursor. See the invariants of [`super`].

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use tributary_api::batch::{BatchHeader, Record, StoredRecord, decode_records_from};
use tributary_api::transactions::Committed;
use tributary_api::{EngineError, TopicPartition};

use super::cursor::{self, FeedCursor};
use crate::Shared;
use crate::codec::content::BasicProperties;
use crate::deadletter::{parse_expiration, record_for_queue};
use crate::handlers::publish::store_queue;
use crate::message::{HEADER_PROPERTIES, now_ms};
use crate::metrics as m;
use crate::routing::topic_matches;
use crate::topology::Binding;

/// Bytes read from the partition per chunk (whole batches; at least one).
const READ_BYTES: usize = 256 * 1024;
/// Longest wait for new records before looking at the bindings again.
const WAIT: Duration = Duration::from_secs(5);
/// Waits before retrying after a failure, doubling up to the last.
const RETRY_FIRST: Duration = Duration::from_millis(200);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// What one round of the feed did.
enum Step {
    /// Fed a chunk; go on at once.
    Fed,
    /// Caught up at this offset: wait for the log to pass it.
    CaughtUp(i64),
    /// No binding of this topic: wait for the topic task to stop this one.
    Unbound,
    /// The topic or partition is gone.
    Gone,
}

/// A round that failed; the cursor stayed. Logged where it happened.
struct Failed;

/// A record a queue gets: its offset, for the re-fed count.
struct ForQueue {
    queue: String,
    offsets: Vec<i64>,
    records: Vec<(usize, Record)>,
}

pub(super) struct PartitionFeed {
    shared: Arc<Shared>,
    topic_id: [u8; 16],
    at: TopicPartition,
    stop: CancellationToken,
    /// The first offset not fed yet; `None` until known (stored, or the bindings' start).
    cursor: Option<i64>,
    /// Records below this offset may have been enqueued before: count them as re-fed.
    refeed_until: i64,
}

impl PartitionFeed {
    pub(super) fn new(
        shared: Arc<Shared>,
        topic: String,
        topic_id: [u8; 16],
        partition: u32,
        stop: CancellationToken,
    ) -> Self {
        Self {
            shared,
            topic_id,
            at: TopicPartition::new(topic, partition),
            stop,
            cursor: None,
            refeed_until: 0,
        }
    }

    pub(super) async fn run(mut self) {
        let mut backoff = RETRY_FIRST;
        // Whether the cursor was read since this broker (last) started to lead the partition.
        let mut loaded = false;
        loop {
            if self.stop.is_cancelled() {
                return;
            }
            if !self.shared.feeds.leads(&self.at) {
                // Another broker feeds it (on a cluster); the cursor it moves is read again
                // when this one leads again.
                loaded = false;
                tokio::select! {
                    () = self.stop.cancelled() => return,
                    () = tokio::time::sleep(super::CHECK_EVERY) => {}
                }
                continue;
            }
            if !loaded {
                match self.load().await {
                    Ok(()) => {
                        loaded = true;
                        backoff = RETRY_FIRST;
                    }
                    Err(Failed) if self.pause(&mut backoff).await => {}
                    Err(Failed) => return,
                }
                continue;
            }
            match self.step().await {
                Ok(Step::Fed) => backoff = RETRY_FIRST,
                Ok(Step::CaughtUp(next)) => {
                    let log = &self.shared.engine.log;
                    let waited = tokio::select! {
                        () = self.stop.cancelled() => return,
                        waited = log.wait_for(&self.at, next, WAIT) => waited,
                    };
                    // A gone topic shows in the next round; other errors wait before it.
                    if let Err(error) = waited
                        && !matches!(
                            error,
                            EngineError::UnknownTopic(_) | EngineError::UnknownPartition { .. }
                        )
                    {
                        tracing::warn!(partition = %self.at, %error, "topic feed cannot wait");
                        if !self.pause(&mut backoff).await {
                            return;
                        }
                    }
                }
                Ok(Step::Unbound) => {
                    tokio::select! {
                        () = self.stop.cancelled() => return,
                        () = tokio::time::sleep(super::CHECK_EVERY) => {}
                    }
                }
                Ok(Step::Gone) => return,
                Err(Failed) => {
                    if !self.pause(&mut backoff).await {
                        return;
                    }
                }
            }
        }
    }

    /// Waits `backoff` (doubling it for next time); false when the feed is stopping.
    async fn pause(&self, backoff: &mut Duration) -> bool {
        let wait = *backoff;
        *backoff = (*backoff * 2).min(RETRY_MAX);
        tokio::select! {
            () = self.stop.cancelled() => false,
            () = tokio::time::sleep(wait) => true,
        }
    }

    /// Reads the stored cursor; a pending marker beyond it means a chunk may be fed again.
    async fn load(&mut self) -> Result<(), Failed> {
        self.cursor = None;
        self.refeed_until = 0;
        let store = self.shared.engine.metadata.as_ref();
        let stored = cursor::load(store, &self.at.topic, &self.topic_id, self.at.partition)
            .await
            .map_err(|error| {
                tracing::warn!(partition = %self.at, %error, "cannot read a topic feed's cursor");
                Failed
            })?;
        if let Some(stored) = stored {
            self.cursor = Some(stored.cursor);
            if stored.pending > stored.cursor {
                tracing::warn!(
                    partition = %self.at,
                    from = stored.cursor,
                    to = stored.pending,
                    "the topic feed stopped while enqueueing: these records are fed again and may be duplicates"
                );
                self.refeed_until = stored.pending;
            }
        }
        Ok(())
    }

    async fn save(&self, at: FeedCursor) -> Result<(), Failed> {
        let store = self.shared.engine.metadata.as_ref();
        let topic = &self.at.topic;
        cursor::save(store, topic, &self.topic_id, self.at.partition, at)
            .await
            .map_err(|error| {
                tracing::warn!(partition = %self.at, %error, "cannot store a topic feed's cursor");
                Failed
            })
    }

    /// The bindings of this topic (not of a deleted one of the same name).
    fn bindings(&self) -> Vec<Binding> {
        let mut bindings = self.shared.topology.topic_bindings(&self.at.topic);
        bindings.retain(|b| {
            b.topic_start
                .as_ref()
                .is_some_and(|s| s.topic_id == self.topic_id)
        });
        bindings
    }

    async fn step(&mut self) -> Result<Step, Failed> {
        let bindings = self.bindings();
        let Some(earliest) = bindings
            .iter()
            .filter_map(|b| b.topic_start.as_ref())
            .map(|s| s.offset(self.at.partition))
            .min()
        else {
            return Ok(Step::Unbound);
        };
        let bounds = match self.shared.engine.log.offsets(&self.at) {
            Ok(bounds) => bounds,
            Err(EngineError::UnknownTopic(_) | EngineError::UnknownPartition { .. }) => {
                return Ok(Step::Gone);
            }
            Err(error) => {
                tracing::warn!(partition = %self.at, %error, "topic feed cannot read offsets");
                return Err(Failed);
            }
        };
        // No binding wants what lies before its start.
        let mut from = self.cursor.unwrap_or(earliest).max(earliest);
        if from < bounds.log_start {
            tracing::error!(
                partition = %self.at,
                from,
                log_start = bounds.log_start,
                "records were removed by retention before the topic feed enqueued them"
            );
            tributary_api::interop::count_undeliverable("amqp_feed", "retention");
            from = bounds.log_start;
        }
        if from > bounds.high_watermark {
            // The log lost its unsynced tail in a crash after those records were fed: the
            // offsets from here on are new records.
            tracing::warn!(
                partition = %self.at,
                from,
                high_watermark = bounds.high_watermark,
                "the topic's log ends before the feed's cursor; feeding from its end"
            );
            from = bounds.high_watermark;
        }
        self.cursor = Some(from);
        // Open Kafka transactions hold the readable end below the high watermark.
        let committed = match self.shared.engine.committed(&self.at, from).await {
            Ok(committed) => committed,
            Err(EngineError::UnknownTopic(_) | EngineError::UnknownPartition { .. }) => {
                return Ok(Step::Gone);
            }
            Err(error) => {
                tracing::warn!(partition = %self.at, %error, "topic feed cannot read transactions");
                return Err(Failed);
            }
        };
        if from >= committed.end {
            return Ok(Step::CaughtUp(committed.wait_from(from)));
        }
        let data = match self
            .shared
            .engine
            .log
            .read(&self.at, from, READ_BYTES)
            .await
        {
            Ok(read) => read.data,
            Err(EngineError::UnknownTopic(_) | EngineError::UnknownPartition { .. }) => {
                return Ok(Step::Gone);
            }
            Err(error) => {
                tracing::warn!(partition = %self.at, from, %error, "topic feed cannot read");
                return Err(Failed);
            }
        };
        let (records, end) = self.decode(&committed.cut(&data), from, &committed)?;
        let targets = self.match_records(&bindings, records);
        if !self.shared.feeds.leads(&self.at) {
            // Leadership moved during the read: the new leader feeds this chunk.
            return Ok(Step::Fed);
        }
        self.feed(from, end, targets).await?;
        Ok(Step::Fed)
    }

    /// [`take_records`], logging and counting what stops the partition.
    fn decode(
        &self,
        data: &Bytes,
        from: i64,
        committed: &Committed,
    ) -> Result<(Vec<StoredRecord>, i64), Failed> {
        take_records(data, from, committed).map_err(|refused| {
            match refused {
                Undecodable::Batch { offset, error } => {
                    tracing::error!(
                        partition = %self.at,
                        offset,
                        %error,
                        "the topic feed cannot decode this batch; it stays before it and retries"
                    );
                    tributary_api::interop::count_undeliverable("amqp_feed", "decode");
                }
                Undecodable::Nothing => {
                    tracing::warn!(partition = %self.at, from, "topic feed read no whole batch");
                }
            }
            Failed
        })
    }

    /// Each queue's records (in offset order, once per queue) as stored in that queue.
    fn match_records(&self, bindings: &[Binding], records: Vec<StoredRecord>) -> Vec<ForQueue> {
        let now = now_ms();
        let topology = &self.shared.topology;
        let mut targets: Vec<ForQueue> = Vec::new();
        for stored in records {
            let key = stored.record.key.as_deref().map(String::from_utf8_lossy);
            let mut queues: Vec<&str> = Vec::new();
            for binding in bindings {
                let start = binding
                    .topic_start
                    .as_ref()
                    .map_or(0, |s| s.offset(self.at.partition));
                let matched = stored.offset >= start
                    && match &key {
                        Some(key) => topic_matches(&binding.routing_key, key),
                        // A record without a key matches only `#`.
                        None => binding.routing_key.split('.').all(|word| word == "#"),
                    };
                if matched && !queues.contains(&binding.destination.as_str()) {
                    queues.push(&binding.destination);
                }
            }
            if queues.is_empty() {
                continue;
            }
            let (expiration, priority) = delivery_attributes(&stored.record);
            for queue in queues {
                let Some(policy) = topology.policy(queue) else {
                    continue; // Deleted meanwhile: its bindings are gone too.
                };
                let record =
                    record_for_queue(stored.record.clone(), &policy, expiration, priority, now);
                let at = match targets.iter().position(|t| t.queue == queue) {
                    Some(at) => at,
                    None => {
                        targets.push(ForQueue {
                            queue: queue.to_owned(),
                            offsets: Vec::new(),
                            records: Vec::new(),
                        });
                        targets.len() - 1
                    }
                };
                let target = &mut targets[at];
                target.records.push((target.offsets.len(), record));
                target.offsets.push(stored.offset);
            }
        }
        targets
    }

    /// Enqueues a chunk between its pending marker and its cursor write.
    async fn feed(&mut self, from: i64, end: i64, targets: Vec<ForQueue>) -> Result<(), Failed> {
        if !targets.is_empty() {
            self.save(FeedCursor {
                cursor: from,
                pending: end,
            })
            .await?;
        }
        let (mut fed, mut refed, mut failed) = (0u64, 0u64, false);
        for ForQueue {
            queue,
            offsets,
            records,
        } in targets
        {
            let outcome = store_queue(&self.shared, &queue, records).await;
            if !outcome.failed.is_empty() {
                failed = true;
            }
            if !outcome.refused.is_empty() {
                tracing::warn!(
                    partition = %self.at,
                    queue,
                    refused = outcome.refused.len(),
                    "the queue's x-overflow limit refused topic records"
                );
                metrics::counter!(m::TOPIC_FEED_REFUSED, "queue" => queue.clone())
                    .increment(outcome.refused.len() as u64);
            }
            for (index, offset) in offsets.iter().enumerate() {
                let not_stored =
                    outcome.failed.contains(&index) || outcome.refused.contains(&index);
                if not_stored {
                    continue;
                }
                fed += 1;
                if *offset < self.refeed_until {
                    refed += 1;
                }
            }
        }
        metrics::counter!(m::TOPIC_FEED_RECORDS).increment(fed);
        metrics::counter!(m::TOPIC_FEED_REFED).increment(refed);
        if failed {
            // Fed again from `from`; what some queues got already is counted as re-fed then.
            self.refeed_until = self.refeed_until.max(end);
            return Err(Failed);
        }
        if let Err(failed) = self
            .save(FeedCursor {
                cursor: end,
                pending: end,
            })
            .await
        {
            self.refeed_until = self.refeed_until.max(end);
            return Err(failed);
        }
        self.cursor = Some(end);
        Ok(())
    }
}

/// The expiration and priority an AMQP publisher gave the record (none for other writers).
fn delivery_attributes(record: &Record) -> (Option<u64>, Option<u8>) {
    let properties = record
        .headers
        .iter()
        .find(|(name, _)| name.as_ref() == HEADER_PROPERTIES)
        .and_then(|(_, value)| value.as_ref())
        .and_then(|raw| BasicProperties::parse(raw).ok());
    let Some(properties) = properties else {
        return (None, None);
    };
    let expiration = properties
        .expiration
        .as_deref()
        .and_then(|text| parse_expiration(text).ok());
    (expiration, properties.priority)
}

/// Why [`take_records`] took nothing.
#[derive(Debug, PartialEq)]
enum Undecodable {
    /// The first batch at or after `from` cannot be decoded.
    Batch { offset: i64, error: String },
    /// No whole batch at or after `from` was read.
    Nothing,
}

/// The records at or after `from` in the whole batches of `data`, and the offset after the
/// last batch taken. Stops before a batch that cannot be decoded, and refuses when that is the
/// first one: the feed never moves past a batch it did not deliver. Batches `committed` skips
/// (transaction markers, aborted transactions) hold no record to feed.
fn take_records(
    data: &Bytes,
    from: i64,
    committed: &Committed,
) -> Result<(Vec<StoredRecord>, i64), Undecodable> {
    let mut records = Vec::new();
    let mut end = from;
    let mut pos = 0usize;
    while pos < data.len() {
        let refused = match BatchHeader::parse(&data[pos..]) {
            Ok(header) if pos.saturating_add(header.total_len) <= data.len() => {
                let batch = data.slice(pos..pos + header.total_len);
                pos += header.total_len;
                if header.last_offset() < from {
                    continue;
                }
                let decoded = match committed.skips(&header) {
                    true => Ok(Vec::new()),
                    false => decode_records_from(&batch, from, usize::MAX),
                };
                match decoded {
                    Ok(decoded) => {
                        records.extend(decoded);
                        end = header.last_offset() + 1;
                        continue;
                    }
                    Err(error) => (header.base_offset, error.to_string()),
                }
            }
            Ok(header) => (header.base_offset, "batch cut short".to_owned()),
            Err(error) => (end, error.to_string()),
        };
        if end > from {
            break; // Feed what came before; the next round stops at this batch.
        }
        let (offset, error) = refused;
        return Err(Undecodable::Batch { offset, error });
    }
    if end == from {
        return Err(Undecodable::Nothing);
    }
    Ok((records, end))
}

#[cfg(test)]
mod tests {
    use bytes::BytesMut;
    use tributary_api::batch::{build_batch, set_base_offset};

    use super::*;

    fn batch(base_offset: i64, values: &[&str]) -> BytesMut {
        let records: Vec<Record> = values
            .iter()
            .map(|v| Record {
                value: Some(Bytes::copy_from_slice(v.as_bytes())),
                ..Record::default()
            })
            .collect();
        let mut bytes = BytesMut::from(&build_batch(&records)[..]);
        set_base_offset(&mut bytes, base_offset);
        bytes
    }

    /// Batches at 0..3, 3..5 (its codec bits say gzip but the body is not gzip, so no
    /// reader can decode it) and 5..7.
    fn log_with_a_bad_batch() -> Bytes {
        let mut bad = batch(3, &["d", "e"]);
        bad[22] |= 0x01;
        let mut log = batch(0, &["a", "b", "c"]);
        log.extend_from_slice(&bad);
        log.extend_from_slice(&batch(5, &["f", "g"]));
        log.freeze()
    }

    fn values(records: &[StoredRecord]) -> Vec<(i64, Bytes)> {
        records
            .iter()
            .map(|r| (r.offset, r.record.value.clone().unwrap_or_default()))
            .collect()
    }

    #[test]
    fn takes_the_records_before_a_batch_it_cannot_decode_and_never_passes_it() {
        let log = log_with_a_bad_batch();
        let everything = Committed::everything(i64::MAX);
        let (records, end) = take_records(&log, 1, &everything).expect("the first batch decodes");
        assert_eq!(end, 3, "stops before the bad batch");
        assert_eq!(
            values(&records),
            [(1, Bytes::from("b")), (2, Bytes::from("c"))]
        );
        let refused = take_records(&log, 3, &everything).expect_err("the bad batch comes first");
        assert!(
            matches!(refused, Undecodable::Batch { offset: 3, .. }),
            "{refused:?}"
        );
    }
}
