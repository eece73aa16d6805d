//! Idempotent-producer state of the cloud engine, kept in PostgreSQL with the log itself: every
//! idempotent data batch of a flush gets a `producer_batches` row in the flush's one transaction,
//! and producer ids come from one PostgreSQL sequence shared by every broker.
//!
//! Invariants:
//! - a batch's producer row commits with the batch's coordinates or not at all, so the state read
//!   back after a crash or on another broker covers exactly the acknowledged batches (a retry of a
//!   batch whose flush failed is new, a retry of a committed one is a duplicate);
//! - at most [`PRODUCER_BATCHES_KEPT`] rows per (partition, producer) survive a flush, the newest
//!   by offset (Kafka's five batches in flight); older ones are deleted in the same transaction;
//! - rows go with their partition (foreign key, `ON DELETE CASCADE`);
//! - producer ids are `nextval('producer_ids')`: never handed out twice, whichever broker asks.

use tokio_postgres::Transaction;
use tributary_api::batch::BatchHeader;
use tributary_api::{PRODUCER_BATCHES_KEPT, ProducerBatch, TopicPartition};

use super::error::{CloudError, CloudResult};
use super::pool::PgPool;

/// The producer fields of an accepted batch numbered at `base_offset`, when it is an idempotent
/// data batch (producer id set, not a control batch).
pub(super) fn sequenced(header: &BatchHeader, base_offset: i64) -> Option<ProducerBatch> {
    (header.producer_id >= 0 && !header.is_control()).then(|| ProducerBatch {
        producer_id: header.producer_id,
        producer_epoch: header.producer_epoch,
        base_sequence: header.base_sequence,
        last_sequence: header.last_sequence(),
        base_offset,
    })
}

/// Records the idempotent batches of a flush and trims each of their producers to the newest
/// [`PRODUCER_BATCHES_KEPT`] rows; runs inside the flush transaction.
pub(super) async fn record(
    transaction: &Transaction<'_>,
    batches: &[(&TopicPartition, ProducerBatch)],
) -> CloudResult<()> {
    if batches.is_empty() {
        return Ok(());
    }
    let topics: Vec<&str> = batches.iter().map(|(tp, _)| tp.topic.as_str()).collect();
    let partitions: Vec<i32> = batches.iter().map(|(tp, _)| tp.partition as i32).collect();
    let ids: Vec<i64> = batches.iter().map(|(_, b)| b.producer_id).collect();
    let epochs: Vec<i16> = batches.iter().map(|(_, b)| b.producer_epoch).collect();
    let bases: Vec<i32> = batches.iter().map(|(_, b)| b.base_sequence).collect();
    let lasts: Vec<i32> = batches.iter().map(|(_, b)| b.last_sequence).collect();
    let offsets: Vec<i64> = batches.iter().map(|(_, b)| b.base_offset).collect();
    transaction
        .execute(
            "INSERT INTO producer_batches (topic, partition, producer_id, producer_epoch,
                                           base_sequence, last_sequence, base_offset)
             SELECT * FROM unnest($1::text[], $2::int[], $3::bigint[], $4::smallint[],
                                  $5::int[], $6::int[], $7::bigint[])",
            &[
                &topics,
                &partitions,
                &ids,
                &epochs,
                &bases,
                &lasts,
                &offsets,
            ],
        )
        .await
        .map_err(CloudError::pg("recording producer state"))?;
    // The newest row to delete below: the KEPT-th newest (0-based offset KEPT - 1).
    let keep_below = PRODUCER_BATCHES_KEPT as i64 - 1;
    transaction
        .execute(
            "DELETE FROM producer_batches AS p
             USING (SELECT DISTINCT t, n, id
                    FROM unnest($1::text[], $2::int[], $3::bigint[]) AS u(t, n, id)) AS u
             WHERE p.topic = u.t AND p.partition = u.n AND p.producer_id = u.id
               AND p.base_offset < (SELECT q.base_offset FROM producer_batches AS q
                                    WHERE q.topic = u.t AND q.partition = u.n
                                      AND q.producer_id = u.id
                                    ORDER BY q.base_offset DESC OFFSET $4::bigint LIMIT 1)",
            &[&topics, &partitions, &ids, &keep_below],
        )
        .await
        .map_err(CloudError::pg("trimming producer state"))?;
    Ok(())
}

/// Every producer row of `tp`, in offset order.
pub(super) async fn load(pool: &PgPool, tp: &TopicPartition) -> CloudResult<Vec<ProducerBatch>> {
    let client = pool.get().await?;
    let rows = client
        .query(
            "SELECT producer_id, producer_epoch, base_sequence, last_sequence, base_offset
             FROM producer_batches WHERE topic = $1 AND partition = $2
             ORDER BY base_offset",
            &[&tp.topic, &(tp.partition as i32)],
        )
        .await
        .map_err(CloudError::pg("loading producer state"))?;
    Ok(rows
        .iter()
        .map(|row| ProducerBatch {
            producer_id: row.get(0),
            producer_epoch: row.get(1),
            base_sequence: row.get(2),
            last_sequence: row.get(3),
            base_offset: row.get(4),
        })
        .collect())
}

/// A producer id no broker sharing the database handed out before.
pub(super) async fn allocate_id(pool: &PgPool) -> CloudResult<i64> {
    let client = pool.get().await?;
    let row = client
        .query_one("SELECT nextval('producer_ids')", &[])
        .await
        .map_err(CloudError::pg("allocating a producer id"))?;
    Ok(row.get(0))
}
