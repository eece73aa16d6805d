//! RocketMQ consumer-group membership shared by every broker through PostgreSQL
//! ([`tributary_api::GroupRoster`]).
//!
//! A RocketMQ broker knows a consumer only from its heartbeats, and members allocate queues from
//! the list GET_CONSUMER_LIST_BY_GROUP gives them: a broker that restarted empty, or that some
//! members have not heartbeated yet, would answer a partial list and its askers would take
//! queues others hold. So each broker records its members in `rocketmq_consumers` (group, client
//! id, broker id, seen at) and answers the union of the live rows with its own registry.
//!
//! Invariants:
//! - writes never block a request: `present`/`absent` record the wanted state per (group,
//!   client) and one background task writes it, the latest wish per member winning, so a leave
//!   is never overtaken by the join before it;
//! - a member already written less than [`REFRESH`] ago is not written again: a client
//!   heartbeating every 30 s costs about one statement per 30 s, a new member is written at once;
//! - a row counts only while its broker holds its lease (a dead broker's rows drop out when its
//!   lease expires) and for [`EXPIRY`] after its last refresh (a row whose delete was lost); a
//!   broker deletes its own rows when it starts, since its connections are all new;
//! - a change of a group's rows (a member added or removed here) is announced on
//!   [`CONSUMERS_CHANNEL`] with `<broker id> <group>`, so the members connected to the other
//!   brokers are told to rebalance at once (NOTIFY_CONSUMER_IDS_CHANGED), as RocketMQ does; a
//!   failed write is retried with its wishes kept, unless newer ones replaced them.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use parking_lot::Mutex;
use tokio::sync::{Notify, broadcast};
use tokio_util::sync::CancellationToken;
use tributary_api::{EngineResult, GroupRoster};

use super::error::{CloudError, CloudResult};
use super::pool::PgPool;

/// The channel membership changes are announced on.
pub const CONSUMERS_CHANNEL: &str = "tributary_consumers";

/// A member written less than this ago is not written again by a heartbeat.
pub const REFRESH: Duration = Duration::from_secs(20);
/// A row not refreshed for this long no longer counts (RocketMQ's channel expiry, 120 s); far
/// above [`REFRESH`] plus the clients' 30 s heartbeat.
pub const EXPIRY: Duration = Duration::from_secs(120);
/// How often the writer deletes rows long expired (any broker's).
const REAP_EVERY: Duration = Duration::from_secs(60);
/// Wait before retrying a failed write.
const RETRY_AFTER: Duration = Duration::from_secs(1);

/// (group, client id).
type Member = (String, String);

/// The roster of one broker; cheap to share.
#[derive(Debug)]
pub struct CloudRoster {
    pool: PgPool,
    broker_id: u32,
    /// Wishes not written yet: `true` present, `false` absent.
    pending: Mutex<HashMap<Member, bool>>,
    /// Members written present, and when.
    written: Mutex<HashMap<Member, Instant>>,
    wake: Notify,
    changes: broadcast::Sender<String>,
}

impl CloudRoster {
    pub fn new(pool: PgPool, broker_id: u32) -> Self {
        Self {
            pool,
            broker_id,
            pending: Mutex::default(),
            written: Mutex::default(),
            wake: Notify::new(),
            changes: broadcast::channel(256).0,
        }
    }

    /// Deletes the rows of an earlier run of this broker (its connections died with it).
    pub async fn reset(&self) -> CloudResult<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "DELETE FROM rocketmq_consumers WHERE broker_id = $1",
                &[&i64::from(self.broker_id)],
            )
            .await
            .map_err(CloudError::pg("deleting an earlier run's consumer rows"))?;
        Ok(())
    }

    /// A notification from [`CONSUMERS_CHANNEL`]: passes its group on unless this broker sent it.
    pub(super) fn notified(&self, payload: &str) {
        let Some((broker, group)) = payload.split_once(' ') else {
            return;
        };
        if broker.parse::<u32>().ok() == Some(self.broker_id) {
            return;
        }
        // No receiver (no RocketMQ listener) is fine.
        let _ = self.changes.send(group.to_owned());
    }

    fn wish(&self, group: &str, client_id: &str, present: bool) {
        let member = (group.to_owned(), client_id.to_owned());
        if present {
            let fresh = self
                .written
                .lock()
                .get(&member)
                .is_some_and(|at| at.elapsed() < REFRESH);
            let mut pending = self.pending.lock();
            // A pending leave must be overtaken by this join, fresh row or not.
            if fresh && !pending.contains_key(&member) {
                return;
            }
            pending.insert(member, true);
        } else {
            self.pending.lock().insert(member, false);
        }
        self.wake.notify_one();
    }

    /// Writes the wishes as they come, and reaps long-expired rows, until `stop`.
    pub async fn run(self: Arc<Self>, stop: CancellationToken) {
        let mut reaped = Instant::now();
        loop {
            tokio::select! {
                () = stop.cancelled() => return,
                () = self.wake.notified() => {}
                () = tokio::time::sleep(REAP_EVERY) => {}
            }
            let wishes = std::mem::take(&mut *self.pending.lock());
            if !wishes.is_empty()
                && let Err(error) = self.write(&wishes).await
            {
                tracing::warn!(%error, members = wishes.len(), "recording RocketMQ consumers failed; retrying");
                {
                    let mut pending = self.pending.lock();
                    for (member, present) in wishes {
                        pending.entry(member).or_insert(present);
                    }
                }
                self.wake.notify_one();
                tokio::select! {
                    () = stop.cancelled() => return,
                    () = tokio::time::sleep(RETRY_AFTER) => {}
                }
                continue;
            }
            if reaped.elapsed() >= REAP_EVERY {
                reaped = Instant::now();
                if let Err(error) = self.reap().await {
                    tracing::debug!(%error, "reaping expired RocketMQ consumer rows failed");
                }
            }
        }
    }

    /// One transaction: upserts, deletes, and the announcement of the groups they changed.
    async fn write(&self, wishes: &HashMap<Member, bool>) -> CloudResult<()> {
        let split = |present: bool| -> (Vec<&str>, Vec<&str>) {
            wishes
                .iter()
                .filter(|(_, wanted)| **wanted == present)
                .map(|((group, client), _)| (group.as_str(), client.as_str()))
                .unzip()
        };
        let (joined_groups, joined_clients) = split(true);
        let (left_groups, left_clients) = split(false);
        let broker = i64::from(self.broker_id);
        let mut client = self.pool.get().await?;
        let transaction = client
            .transaction()
            .await
            .map_err(CloudError::pg("starting a consumer roster write"))?;
        let mut changed: Vec<String> = Vec::new();
        if !joined_groups.is_empty() {
            // `xmax = 0` only on a row this statement inserted: a new member, not a refresh.
            let rows = transaction
                .query(
                    "INSERT INTO rocketmq_consumers (group_name, client_id, broker_id, seen_at)
                     SELECT g, c, $3, now() FROM unnest($1::text[], $2::text[]) AS u(g, c)
                     ON CONFLICT (group_name, client_id, broker_id) DO UPDATE SET seen_at = now()
                     RETURNING group_name, (xmax = 0) AS inserted",
                    &[&joined_groups, &joined_clients, &broker],
                )
                .await
                .map_err(CloudError::pg("recording RocketMQ consumers"))?;
            changed.extend(
                rows.iter()
                    .filter(|row| row.get::<_, bool>(1))
                    .map(|row| row.get::<_, String>(0)),
            );
        }
        if !left_groups.is_empty() {
            let rows = transaction
                .query(
                    "DELETE FROM rocketmq_consumers AS r
                     USING unnest($1::text[], $2::text[]) AS u(g, c)
                     WHERE r.broker_id = $3 AND r.group_name = u.g AND r.client_id = u.c
                     RETURNING r.group_name",
                    &[&left_groups, &left_clients, &broker],
                )
                .await
                .map_err(CloudError::pg("removing RocketMQ consumers"))?;
            changed.extend(rows.iter().map(|row| row.get::<_, String>(0)));
        }
        changed.sort();
        changed.dedup();
        if !changed.is_empty() {
            let payloads: Vec<String> = changed
                .iter()
                .map(|group| format!("{} {group}", self.broker_id))
                .collect();
            transaction
                .execute(
                    "SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload",
                    &[&CONSUMERS_CHANNEL, &payloads],
                )
                .await
                .map_err(CloudError::pg("announcing RocketMQ consumer changes"))?;
        }
        transaction
            .commit()
            .await
            .map_err(CloudError::pg("committing a consumer roster write"))?;
        let now = Instant::now();
        let mut written = self.written.lock();
        for (member, present) in wishes {
            if *present {
                written.insert(member.clone(), now);
            } else {
                written.remove(member);
            }
        }
        Ok(())
    }

    /// Deletes rows expired long ago (whichever broker wrote them).
    async fn reap(&self) -> CloudResult<()> {
        let client = self.pool.get().await?;
        client
            .execute(
                "DELETE FROM rocketmq_consumers
                 WHERE seen_at < now() - $1::float8 * interval '1 second'",
                &[&(2.0 * EXPIRY.as_secs_f64())],
            )
            .await
            .map_err(CloudError::pg("reaping RocketMQ consumer rows"))?;
        Ok(())
    }
}

#[async_trait]
impl GroupRoster for CloudRoster {
    fn present(&self, group: &str, client_id: &str) {
        self.wish(group, client_id, true);
    }

    fn absent(&self, group: &str, client_id: &str) {
        self.wish(group, client_id, false);
    }

    async fn members(&self, group: &str) -> EngineResult<Vec<String>> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT DISTINCT r.client_id FROM rocketmq_consumers AS r
                 JOIN brokers AS b ON b.broker_id = r.broker_id
                 WHERE r.group_name = $1 AND b.lease_expires > now()
                   AND r.seen_at > now() - $2::float8 * interval '1 second'
                 ORDER BY r.client_id",
                &[&group, &EXPIRY.as_secs_f64()],
            )
            .await
            .map_err(CloudError::pg("reading RocketMQ consumers"))?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    fn changes(&self) -> broadcast::Receiver<String> {
        self.changes.subscribe()
    }
}
