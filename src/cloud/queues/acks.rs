//! Queue state in PostgreSQL: definitions (`cloud_queues`) and settle batches (`queue_acks`).
//!
//! A settle batch row holds ack-journal entries (`broker::queues::journal`'s 13-byte format:
//! acks as offset ranges, requeue counts, the delivered-up-to mark), never one row per
//! message: the [`AckWriter`] gathers what every owned queue settled since its last commit into
//! ONE statement, one row per queue. Compaction replaces a queue's rows by one snapshot row.
//!
//! Fencing: each row is written only while the queue's `epoch` is the one its owner read when
//! it took the queue over ([`take_over`] bumps it, under the row lock), so a stale owner's
//! settles are refused rather than mixed into the new owner's state.

use std::collections::BTreeMap;

use tokio::sync::{mpsc, oneshot};
use tributary_api::{Durability, QueueOptions};

use crate::broker::queues::journal::{Replayed, replay_bytes};
use crate::cloud::error::{CloudError, CloudResult};
use crate::cloud::pool::PgPool;

/// A queue's definition and its owner epoch.
#[derive(Debug, Clone)]
pub(super) struct Definition {
    pub(super) options: QueueOptions,
    pub(super) epoch: i64,
}

fn durability_text(durability: Option<Durability>) -> Option<String> {
    durability.map(|d| d.to_string())
}

fn parse_durability(text: Option<String>) -> Option<Durability> {
    text.and_then(|text| text.parse().ok())
}

/// Creates the definition unless it exists; returns whether it was created.
pub(super) async fn define(pool: &PgPool, name: &str, options: &QueueOptions) -> CloudResult<bool> {
    let client = pool.get().await?;
    let created = client
        .execute(
            "INSERT INTO cloud_queues (name, durable, durability, max_priority, count_bytes,
                 created_ms)
             VALUES ($1, $2, $3, $4, $5, (extract(epoch from now()) * 1000)::bigint)
             ON CONFLICT (name) DO NOTHING",
            &[
                &name,
                &options.durable,
                &durability_text(options.durability),
                &options.max_priority.map(i16::from),
                &options.count_bytes,
            ],
        )
        .await
        .map_err(CloudError::pg("defining a queue"))?;
    Ok(created == 1)
}

/// Removes the definition and its settle rows; returns whether it existed.
pub(super) async fn undefine(pool: &PgPool, name: &str) -> CloudResult<bool> {
    let client = pool.get().await?;
    let removed = client
        .execute("DELETE FROM cloud_queues WHERE name = $1", &[&name])
        .await
        .map_err(CloudError::pg("deleting a queue"))?;
    Ok(removed == 1)
}

/// Every queue's name, in order.
pub(super) async fn names(pool: &PgPool) -> CloudResult<Vec<String>> {
    let client = pool.get().await?;
    let rows = client
        .query("SELECT name FROM cloud_queues ORDER BY name", &[])
        .await
        .map_err(CloudError::pg("listing queues"))?;
    Ok(rows.iter().map(|row| row.get(0)).collect())
}

/// Takes the queue over: bumps its epoch (fencing the previous owner's settles) and replays
/// its settle rows. `None` if the queue is not defined.
pub(super) async fn take_over(
    pool: &PgPool,
    name: &str,
) -> CloudResult<Option<(Definition, Replayed)>> {
    let mut client = pool.get().await?;
    let transaction = client
        .transaction()
        .await
        .map_err(CloudError::pg("starting a queue take-over"))?;
    let Some(row) = transaction
        .query_opt(
            "UPDATE cloud_queues SET epoch = epoch + 1 WHERE name = $1
             RETURNING epoch, durable, durability, max_priority, count_bytes",
            &[&name],
        )
        .await
        .map_err(CloudError::pg("taking a queue over"))?
    else {
        return Ok(None);
    };
    let definition = Definition {
        epoch: row.get(0),
        options: QueueOptions {
            durable: row.get(1),
            durability: parse_durability(row.get(2)),
            max_priority: row.get::<_, Option<i16>>(3).map(|p| p as u8),
            count_bytes: row.get(4),
        },
    };
    let rows = transaction
        .query(
            "SELECT entries FROM queue_acks WHERE queue = $1 ORDER BY seq",
            &[&name],
        )
        .await
        .map_err(CloudError::pg("reading a queue's settles"))?;
    transaction
        .commit()
        .await
        .map_err(CloudError::pg("committing a queue take-over"))?;
    let mut entries = Vec::new();
    for row in &rows {
        entries.extend_from_slice(row.get::<_, &[u8]>(0));
    }
    let (replayed, good) = replay_bytes(&entries);
    if good < entries.len() {
        // Rows hold whole entries written by this code: damage only costs redeliveries.
        tracing::warn!(
            queue = name,
            dropped = entries.len() - good,
            "bad entries in a queue's settle rows"
        );
    }
    Ok(Some((definition, replayed)))
}

/// One write for the [`AckWriter`].
#[derive(Debug)]
pub(super) enum AckWrite {
    /// Appends entries; `done` (if any) hears whether they committed.
    Append {
        queue: String,
        epoch: i64,
        entries: Vec<u8>,
        done: Option<oneshot::Sender<CloudResult<()>>>,
    },
    /// Replaces the queue's rows by `snapshot` (written under the queue's state lock, so it
    /// covers every append sent before it).
    Compact {
        queue: String,
        epoch: i64,
        snapshot: Vec<u8>,
    },
}

/// The group-commit task: whatever queued up while the last statement ran goes in the next.
#[derive(Debug, Clone)]
pub(super) struct AckWriter {
    sender: mpsc::UnboundedSender<AckWrite>,
}

impl AckWriter {
    /// Starts the writer task; it ends when every sender is dropped.
    pub(super) fn start(pool: PgPool) -> Self {
        let (sender, receiver) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, receiver));
        Self { sender }
    }

    pub(super) fn send(&self, write: AckWrite) {
        if let Err(mpsc::error::SendError(write)) = self.sender.send(write)
            && let AckWrite::Append {
                done: Some(done), ..
            } = write
        {
            let _ = done.send(Err(CloudError::Rpc("the ack writer stopped".to_owned())));
        }
    }
}

type Waiter = oneshot::Sender<CloudResult<()>>;

async fn run(pool: PgPool, mut receiver: mpsc::UnboundedReceiver<AckWrite>) {
    while let Some(first) = receiver.recv().await {
        let mut writes = vec![first];
        while let Ok(more) = receiver.try_recv() {
            writes.push(more);
        }
        // (queue, epoch) -> (entries, waiters), in arrival order per queue.
        let mut batch = Batch::new();
        for write in writes {
            match write {
                AckWrite::Append {
                    queue,
                    epoch,
                    entries,
                    done,
                } => {
                    let slot = batch.entry((queue, epoch)).or_default();
                    slot.0.extend_from_slice(&entries);
                    slot.1.extend(done);
                }
                AckWrite::Compact {
                    queue,
                    epoch,
                    snapshot,
                } => {
                    // What came before the snapshot commits first, then the snapshot.
                    commit(&pool, std::mem::take(&mut batch)).await;
                    if let Err(error) = compact(&pool, &queue, epoch, &snapshot).await {
                        tracing::warn!(queue, %error, "queue settle compaction failed");
                    }
                }
            }
        }
        commit(&pool, batch).await;
    }
}

type Batch = BTreeMap<(String, i64), (Vec<u8>, Vec<Waiter>)>;

/// Commits `batch` in as few statements as it takes for each to name a queue once (a queue
/// appears under two epochs only just after this broker took it over again, and the statement
/// reports which queues it wrote, not under which epoch).
async fn commit(pool: &PgPool, mut batch: Batch) {
    while !batch.is_empty() {
        let mut round = Batch::new();
        let mut rest = Batch::new();
        let mut named = std::collections::HashSet::new();
        for (key, value) in batch {
            match named.insert(key.0.clone()) {
                true => round.insert(key, value),
                false => rest.insert(key, value),
            };
        }
        commit_round(pool, round).await;
        batch = rest;
    }
}

async fn commit_round(pool: &PgPool, batch: Batch) {
    if batch.is_empty() {
        return;
    }
    let queues: Vec<&str> = batch.keys().map(|(queue, _)| queue.as_str()).collect();
    let epochs: Vec<i64> = batch.keys().map(|(_, epoch)| *epoch).collect();
    let entries: Vec<&[u8]> = batch
        .values()
        .map(|(entries, _)| entries.as_slice())
        .collect();
    let outcome = async {
        let client = pool.get().await?;
        client
            .query(
                "WITH live AS (
                     SELECT name, epoch FROM cloud_queues WHERE name = ANY($1) FOR SHARE
                 )
                 INSERT INTO queue_acks (queue, entries)
                 SELECT u.queue, u.entries
                 FROM unnest($1::text[], $2::bigint[], $3::bytea[]) AS u(queue, epoch, entries)
                 JOIN live ON live.name = u.queue AND live.epoch = u.epoch
                 RETURNING queue",
                &[&queues, &epochs, &entries],
            )
            .await
            .map_err(CloudError::pg("committing queue settles"))
    }
    .await;
    match outcome {
        Ok(rows) => {
            let written: Vec<String> = rows.iter().map(|row| row.get(0)).collect();
            for ((queue, _), (_, waiters)) in batch {
                let result = match written.contains(&queue) {
                    true => Ok(()),
                    false => Err(CloudError::NotLeader(format!(
                        "queue {queue} (another broker took it over)"
                    ))),
                };
                for waiter in waiters {
                    let _ = waiter.send(match &result {
                        Ok(()) => Ok(()),
                        Err(error) => Err(CloudError::Rpc(error.to_string())),
                    });
                }
            }
        }
        Err(error) => {
            let reason = error.to_string();
            for (_, (_, waiters)) in batch {
                for waiter in waiters {
                    let _ = waiter.send(Err(CloudError::Rpc(reason.clone())));
                }
            }
        }
    }
}

async fn compact(pool: &PgPool, queue: &str, epoch: i64, snapshot: &[u8]) -> CloudResult<()> {
    let mut client = pool.get().await?;
    let transaction = client
        .transaction()
        .await
        .map_err(CloudError::pg("starting a settle compaction"))?;
    let held = transaction
        .query_opt(
            "SELECT 1 FROM cloud_queues WHERE name = $1 AND epoch = $2 FOR UPDATE",
            &[&queue, &epoch],
        )
        .await
        .map_err(CloudError::pg("checking a queue's epoch"))?;
    if held.is_none() {
        return Ok(());
    }
    transaction
        .execute("DELETE FROM queue_acks WHERE queue = $1", &[&queue])
        .await
        .map_err(CloudError::pg("dropping compacted settles"))?;
    transaction
        .execute(
            "INSERT INTO queue_acks (queue, entries) VALUES ($1, $2)",
            &[&queue, &snapshot],
        )
        .await
        .map_err(CloudError::pg("writing a settle snapshot"))?;
    transaction
        .commit()
        .await
        .map_err(CloudError::pg("committing a settle compaction"))
}
