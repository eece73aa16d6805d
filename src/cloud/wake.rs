//! Cross-broker wake-ups through PostgreSQL LISTEN/NOTIFY. Every transaction that moves a
//! partition's high watermark or log start (a flush, DeleteRecords, retention) also NOTIFYs
//! [`CHANNEL`] with the new offsets, and every broker keeps ONE connection LISTENing on it. A
//! broker that does not lead a partition learns the new offsets from the notification, so its
//! readers (a Kafka Fetch long poll, a RocketMQ suspended pull, an AMQP stream feed) wake within
//! milliseconds of the commit instead of polling PostgreSQL. Topic changes are announced on
//! [`TOPICS_CHANNEL`] the same way, so a topic created or deleted through one broker is known
//! to the others at once. Metadata-store writes are announced on
//! [`super::records::METADATA_CHANNEL`] (payload: the namespace) and move that namespace's
//! generation, so frontends' caches of it read it again. A scheduled append is announced on
//! [`super::schedule::SCHEDULE_CHANNEL`] with its target and wakes the scheduler of the broker
//! that fires it, which re-plans. A RocketMQ consumer group's members changing through another
//! broker is announced on [`super::roster::CONSUMERS_CHANNEL`] and passed to the frontend.
//!
//! Invariants:
//! - PostgreSQL delivers a NOTIFY only when its transaction commits, so a follower never learns
//!   an offset that was not committed;
//! - offsets learnt this way only grow, and are applied only to partitions this broker does not
//!   lead (the leader's own state is authoritative; a stale notification cannot lower it);
//! - a notification can be missed only while the LISTEN connection is down; every (re)connect
//!   LISTENs first and then reloads every partition's offsets from PostgreSQL, so nothing
//!   committed before the LISTEN stays unseen;
//! - payloads stay under PostgreSQL's 8,000-byte limit: a flush's entries are split over as many
//!   notifications as needed, all sent by one statement in the flush's transaction.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_postgres::AsyncMessage;
use tokio_util::sync::CancellationToken;
use tributary_api::TopicPartition;

use super::error::{CloudError, CloudResult};
use super::log::CloudLog;
use super::records::METADATA_CHANNEL;
use super::roster::CONSUMERS_CHANNEL;
use super::schedule::SCHEDULE_CHANNEL;
use super::state::PartitionState;

/// The channel offsets are announced on; every broker of one database LISTENs on it.
pub const CHANNEL: &str = "tributary_offsets";

/// The channel topic changes (create, delete, partitions, settings) are announced on, with an
/// empty payload: listeners reload the topics at once instead of at their next renewal.
pub const TOPICS_CHANNEL: &str = "tributary_topics";

/// PostgreSQL refuses payloads of 8,000 bytes or more; stay below with room for the brackets.
const MAX_PAYLOAD: usize = 7_900;

/// Longest wait between two attempts to reconnect the LISTEN connection.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// One partition's offsets after a commit: `[topic, partition, log_start, high_watermark]`.
pub(super) type Entry<'a> = (&'a str, u32, i64, i64);

/// The payloads announcing `entries`, each under the size limit; an entry that alone does not
/// fit (a topic name of thousands of bytes) is left out, and followers see it at their next
/// reconnect or take-over.
pub(super) fn payloads(entries: &[Entry<'_>]) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::from("[");
    for entry in entries {
        let Ok(encoded) = serde_json::to_string(entry) else {
            continue;
        };
        if encoded.len() + 2 > MAX_PAYLOAD {
            tracing::warn!(
                topic = entry.0,
                "offsets too long to NOTIFY; followers reload them later"
            );
            continue;
        }
        if current.len() + encoded.len() + 2 > MAX_PAYLOAD {
            current.push(']');
            out.push(std::mem::replace(&mut current, String::from("[")));
        }
        if current.len() > 1 {
            current.push(',');
        }
        current.push_str(&encoded);
    }
    if current.len() > 1 {
        current.push(']');
        out.push(current);
    }
    out
}

/// Sends `entries` on [`CHANNEL`] from inside `transaction` (delivered at its commit).
pub(super) async fn notify(
    transaction: &tokio_postgres::Transaction<'_>,
    entries: &[Entry<'_>],
) -> CloudResult<()> {
    let payloads = payloads(entries);
    if payloads.is_empty() {
        return Ok(());
    }
    transaction
        .execute(
            "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload",
            &[&CHANNEL, &payloads],
        )
        .await
        .map_err(CloudError::pg("notifying other brokers"))?;
    Ok(())
}

/// Announces a topic change from inside `client`'s transaction (or at once outside one).
pub(super) async fn notify_topics(client: &impl tokio_postgres::GenericClient) -> CloudResult<()> {
    client
        .execute("SELECT pg_notify($1, '')", &[&TOPICS_CHANNEL])
        .await
        .map_err(CloudError::pg("notifying a topic change"))?;
    Ok(())
}

impl PartitionState {
    /// Raises the offsets of a partition this broker does not lead to what another broker
    /// committed; returns whether they moved. Never lowers them.
    pub(super) fn follow(&self, log_start: i64, high_watermark: i64) -> bool {
        if self.led.load(Ordering::Acquire) {
            return false;
        }
        let (moved, start) = {
            let mut offsets = self.offsets.lock();
            let mut moved = false;
            if high_watermark > offsets.high_watermark {
                offsets.high_watermark = high_watermark;
                offsets.next_offset = offsets.next_offset.max(high_watermark);
                moved = true;
            }
            if log_start > offsets.log_start {
                offsets.log_start = log_start.min(offsets.high_watermark);
                moved = true;
            }
            (moved, offsets.log_start)
        };
        if moved {
            self.forget_below(start);
            self.appended.notify(usize::MAX);
        }
        moved
    }
}

impl CloudLog {
    /// Applies one notification's payload; a payload that does not parse is logged and
    /// dropped (it came from a newer or foreign writer; the next reload corrects the view).
    pub(super) fn apply_notification(&self, payload: &str) {
        let entries: Vec<(String, u32, i64, i64)> = match serde_json::from_str(payload) {
            Ok(entries) => entries,
            Err(error) => {
                tracing::warn!(%error, "ignoring a malformed offsets notification");
                return;
            }
        };
        self.stats.notifications.inc();
        let partitions = self.partitions.read();
        for (topic, partition, log_start, high_watermark) in entries {
            if let Some(state) = partitions.get(&TopicPartition::new(topic, partition)) {
                state.follow(log_start, high_watermark);
            }
        }
    }

    /// Another broker changed a topic: reload the topics and take over what this broker now
    /// leads of new partitions (failures are left to the next renewal, which does the same).
    async fn topics_changed(&self) {
        self.stats.notifications.inc();
        let reloaded = async {
            self.learn_topics().await?;
            self.follow_leadership(&self.members).await
        };
        if let Err(error) = reloaded.await {
            tracing::warn!(%error, "reloading topics after a notification failed");
        }
    }

    /// Reloads the offsets of one partition from PostgreSQL when this broker does not lead it
    /// (a reader asked past what it knows); returns whether they moved.
    pub(super) async fn refresh_followed(
        &self,
        tp: &TopicPartition,
        state: &PartitionState,
    ) -> CloudResult<bool> {
        if state.led.load(Ordering::Acquire) {
            return Ok(false);
        }
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT log_start, high_watermark FROM partitions WHERE topic = $1 AND partition = $2",
                &[&tp.topic, &(tp.partition as i32)],
            )
            .await
            .map_err(CloudError::pg("reloading a followed partition's offsets"))?;
        Ok(row.is_some_and(|row| state.follow(row.get(0), row.get(1))))
    }

    /// Reloads the offsets of every partition this broker knows and does not lead.
    async fn refresh_all_followed(&self) -> CloudResult<()> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT topic, partition, log_start, high_watermark FROM partitions",
                &[],
            )
            .await
            .map_err(CloudError::pg("reloading partition offsets"))?;
        let partitions = self.partitions.read();
        for row in rows {
            let tp = TopicPartition::new(row.get::<_, String>(0), row.get::<_, i32>(1) as u32);
            if let Some(state) = partitions.get(&tp) {
                state.follow(row.get(2), row.get(3));
            }
        }
        Ok(())
    }

    /// Keeps one connection LISTENing on [`CHANNEL`] until `stop`, reconnecting with backoff.
    pub(super) async fn run_listener(self: Arc<Self>, stop: CancellationToken) {
        let mut backoff = Duration::from_millis(100);
        loop {
            let outcome = tokio::select! {
                () = stop.cancelled() => return,
                outcome = self.listen_once(&stop) => outcome,
            };
            if let Err(error) = outcome {
                self.stats.failed_listens.inc();
                tracing::warn!(%error, "the LISTEN connection failed; reconnecting");
            } else if stop.is_cancelled() {
                return;
            } else {
                // The server closed it (restart, pg_terminate_backend): reconnect at once.
                backoff = Duration::from_millis(100);
                continue;
            }
            tokio::select! {
                () = stop.cancelled() => return,
                () = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// One LISTEN connection's life: connect, LISTEN, reload, then apply notifications until
    /// the connection ends.
    async fn listen_once(&self, stop: &CancellationToken) -> CloudResult<()> {
        let (client, mut connection) = self
            .pool
            .config()
            .connect(tokio_postgres::NoTls)
            .await
            .map_err(CloudError::pg("connecting the LISTEN connection"))?;
        self.stats.connections.inc();
        let (sender, mut received) = mpsc::unbounded_channel::<(Channel, String)>();
        // The connection must be polled for the LISTEN below to complete, and its messages are
        // the notifications: one task drives it and forwards them.
        let driver = tokio::spawn(async move {
            loop {
                match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                    Some(Ok(AsyncMessage::Notification(notification))) => {
                        let channel = match notification.channel() {
                            TOPICS_CHANNEL => Channel::Topics,
                            METADATA_CHANNEL => Channel::Metadata,
                            SCHEDULE_CHANNEL => Channel::Schedule,
                            CONSUMERS_CHANNEL => Channel::Consumers,
                            _ => Channel::Offsets,
                        };
                        let payload = notification.payload().to_owned();
                        if sender.send((channel, payload)).is_err() {
                            return Ok(());
                        }
                    }
                    Some(Ok(_)) => {}
                    Some(Err(error)) => return Err(error),
                    None => return Ok(()),
                }
            }
        });
        let _stop_driver = AbortOnDrop(driver.abort_handle());
        client
            .batch_execute(&format!(
                "LISTEN {CHANNEL}; LISTEN {TOPICS_CHANNEL}; LISTEN {METADATA_CHANNEL}; \
                 LISTEN {SCHEDULE_CHANNEL}; LISTEN {CONSUMERS_CHANNEL}"
            ))
            .await
            .map_err(CloudError::pg("LISTENing for offsets"))?;
        // Whatever was committed before the LISTEN took effect is read back now; metadata
        // caches read again at their next use.
        self.metadata_generations.changed_all();
        self.learn_topics().await?;
        self.refresh_all_followed().await?;
        self.schedule_wake.notify_one();
        tracing::debug!(channel = CHANNEL, "listening for other brokers' commits");
        loop {
            tokio::select! {
                () = stop.cancelled() => return Ok(()),
                payload = received.recv() => match payload {
                    Some((Channel::Offsets, payload)) => self.apply_notification(&payload),
                    Some((Channel::Topics, _)) => self.topics_changed().await,
                    Some((Channel::Schedule, target)) => {
                        if self.fires_notified(&target) {
                            self.schedule_wake.notify_one();
                        }
                    }
                    Some((Channel::Consumers, payload)) => self.roster.notified(&payload),
                    Some((Channel::Metadata, namespace)) => {
                        self.stats.notifications.inc();
                        self.metadata_generations.changed(&namespace);
                    }
                    None => break,
                },
            }
        }
        drop(client);
        match driver.await {
            Ok(Err(error)) => Err(CloudError::pg("LISTEN connection")(error)),
            _ => Ok(()),
        }
    }
}

/// Which channel a notification came on.
#[derive(Debug, Clone, Copy)]
enum Channel {
    Offsets,
    Topics,
    Metadata,
    Schedule,
    Consumers,
}

/// Aborts a task when dropped (the listener stopped or failed before its driver ended).
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_split_under_the_limit_and_parse_back() {
        let names: Vec<String> = (0..400)
            .map(|i| format!("topic-{i:04}-{}", "x".repeat(40)))
            .collect();
        let entries: Vec<Entry<'_>> = names
            .iter()
            .enumerate()
            .map(|(i, name)| (name.as_str(), i as u32, i as i64, 10 * i as i64))
            .collect();
        let payloads = payloads(&entries);
        assert!(payloads.len() > 1, "400 entries need several payloads");
        let mut back = Vec::new();
        for payload in &payloads {
            assert!(payload.len() < 8_000, "{} bytes", payload.len());
            let parsed: Vec<(String, u32, i64, i64)> = serde_json::from_str(payload).expect("json");
            back.extend(parsed);
        }
        assert_eq!(back.len(), entries.len());
        for (got, want) in back.iter().zip(&entries) {
            assert_eq!((got.0.as_str(), got.1, got.2, got.3), *want);
        }
        let huge = "t".repeat(9_000);
        assert!(super::payloads(&[(&huge, 0, 0, 1)]).is_empty());
    }

    #[test]
    fn following_only_raises_offsets_of_partitions_not_led() {
        let state = PartitionState::new(0, 10);
        assert!(state.follow(2, 15));
        assert!(!state.follow(1, 12), "a stale notification lowers nothing");
        let offsets = state.public_offsets();
        assert_eq!((offsets.log_start, offsets.high_watermark), (2, 15));
        state.led.store(true, Ordering::Release);
        assert!(
            !state.follow(3, 20),
            "the leader's own offsets are authoritative"
        );
        assert_eq!(state.public_offsets().high_watermark, 15);
    }
}
