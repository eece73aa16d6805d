//! The admin API's handle on the RocketMQ side: consumer groups with their live members (client
//! ids from heartbeats) and an offset reset that running consumers follow.
//!
//! A reset works as RocketMQ's `resetOffset` does: the broker stores the new offsets, then sends
//! RESET_CONSUMER_CLIENT_OFFSET (one-way, with the `{queue: offset}` table) to every member of
//! the group; each client drops the queues it holds of that topic, takes the new offsets into its
//! own offset store and pulls from them. Invariants: the store is written first (under the
//! pull-commit lock, dropping pending pull commits of those queues), so a member that rebalances
//! before the notice arrives also reads the new offsets; a notice that cannot be queued (the
//! member's outbound queue is full or closing) is counted in the answer, not hidden. Until a
//! member pulls a queue from its reset offset, the group's commits of it are not stored
//! ([`crate::pull_commits`]: a client commits its old position until it took the reset in).

use std::sync::Arc;

use serde_json::json;
use tributary_api::{CommittedOffset, EngineResult, TopicPartition};

use crate::Shared;
use crate::codec::RemotingCommand;

/// `RequestCode.RESET_CONSUMER_CLIENT_OFFSET`.
pub const RESET_CONSUMER_CLIENT_OFFSET: i32 = 220;

/// What a reset did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetOutcome {
    /// Members told to move to the new offsets.
    pub notified: usize,
    /// Members whose notice could not be queued (they pick the offsets up at their next
    /// rebalance only if they have no offset of their own in memory).
    pub not_notified: usize,
}

/// A cheap handle over the RocketMQ frontends' shared state.
#[derive(Debug, Clone)]
pub struct RocketMqAdmin {
    pub(crate) shared: Arc<Shared>,
}

impl RocketMqAdmin {
    /// Consumer groups with at least one live member, sorted.
    pub fn groups(&self) -> Vec<String> {
        self.shared.clients.consumer_groups()
    }

    /// The client ids of `group`'s live members, sorted.
    pub fn members(&self, group: &str) -> Vec<String> {
        self.shared.clients.members(group)
    }

    /// Stores `offsets` (queue id, offset) as `group`'s positions on `topic` and tells every
    /// live member of the group to continue from them.
    pub async fn reset_offsets(
        &self,
        group: &str,
        topic: &str,
        offsets: &[(u32, i64)],
    ) -> EngineResult<ResetOutcome> {
        let shared = &self.shared;
        {
            let _storing = shared.pull_commits.storing.lock().await;
            let now = shared.engine.scheduler.now_ms();
            let mut commits = Vec::with_capacity(offsets.len());
            for (queue, offset) in offsets {
                let partition = TopicPartition::new(topic, *queue);
                shared.pull_commits.begin_reset(group, &partition, *offset);
                let committed = CommittedOffset {
                    offset: *offset,
                    metadata: String::new(),
                    commit_time: now,
                };
                commits.push((partition, committed));
            }
            shared.engine.offsets.commit(group, commits).await?;
            for (queue, offset) in offsets {
                let partition = TopicPartition::new(topic, *queue);
                shared.stats.committed(group, &partition, *offset);
            }
        }
        let body = reset_body(topic, &shared.settings.broker_name, offsets);
        let now = shared.engine.scheduler.now_ms();
        let mut outcome = ResetOutcome {
            notified: 0,
            not_notified: 0,
        };
        for (connection, serialize_type) in shared.clients.connections(group) {
            let queued = shared.peers.send_oneway(
                connection,
                serialize_type,
                |command| notice(command, topic, group, now, &body),
                RESET_CONSUMER_CLIENT_OFFSET,
            );
            match queued {
                true => outcome.notified += 1,
                false => outcome.not_notified += 1,
            }
        }
        Ok(outcome)
    }
}

/// The notice's header fields (`ResetOffsetRequestHeader`) and body.
fn notice(
    command: RemotingCommand,
    topic: &str,
    group: &str,
    timestamp: i64,
    body: &str,
) -> RemotingCommand {
    command
        .with_field("topic", topic)
        .with_field("group", group)
        .with_field("timestamp", timestamp)
        .with_field("isForce", true)
        .with_body(body.to_owned().into_bytes())
}

/// `ResetOffsetBody` as RocketMQ's clients decode it: fastjson's map with object keys,
/// `{"offsetTable":{{"topic":…,"brokerName":…,"queueId":…}:offset,…}}` (not valid JSON,
/// which is why it is built by hand; the key's strings are JSON-escaped).
fn reset_body(topic: &str, broker_name: &str, offsets: &[(u32, i64)]) -> String {
    let entries: Vec<String> = offsets
        .iter()
        .map(|(queue, offset)| {
            let key = json!({ "topic": topic, "brokerName": broker_name, "queueId": queue });
            format!("{key}:{offset}")
        })
        .collect();
    format!("{{\"offsetTable\":{{{}}}}}", entries.join(","))
}

#[cfg(test)]
mod tests {
    use super::reset_body;

    #[test]
    fn the_reset_body_uses_object_keys_as_rocketmq_clients_expect() {
        let body = reset_body("orders", "broker-a", &[(0, 5), (1, 7)]);
        assert_eq!(
            body,
            r#"{"offsetTable":{{"brokerName":"broker-a","queueId":0,"topic":"orders"}:5,{"brokerName":"broker-a","queueId":1,"topic":"orders"}:7}}"#
        );
    }
}
