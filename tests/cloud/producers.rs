//! Idempotent producers on the cloud engine, byte-level against the real binary: the producer
//! state lives in PostgreSQL (written with the flush), so a retried batch after a SIGKILL with
//! the local data directory wiped is still answered as a duplicate, and producer ids come from
//! PostgreSQL, so the wiped broker does not hand out an id again.

use std::time::Duration;

use crate::broker::{TestBroker, connect, data_dir_in};
use crate::kafka_wire::{idempotent_batch, init_producer_id, produce_once_to};
use crate::services::{bucket, connect as connect_pg, fresh_database, unique};

const TOPIC: &str = "idem-cloud";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_batch_after_a_wiped_restart_is_a_duplicate() {
    let database = fresh_database("producers").await;
    let objects = format!("s3://{}/{}", bucket(), unique("producers"));
    let mut broker = TestBroker::start_with(&[
        "--metadata-url",
        database.as_str(),
        "--objects-url",
        objects.as_str(),
        "--broker-id",
        "3",
    ]);
    broker.wait_for_line(&["cloud engine opened"], Duration::from_secs(10));
    let mut stream = connect(broker.addr("kafka"));
    let producer = init_producer_id(&mut stream, 1);
    // Seven batches: more than the five kept per producer, so trimming runs.
    for sequence in 0..7 {
        let answer = produce_once_to(
            &mut stream,
            TOPIC,
            2 + sequence,
            idempotent_batch(producer, 0, sequence),
        );
        assert_eq!(answer, (0, i64::from(sequence)), "batch {sequence}");
    }
    let pg = connect_pg(&database).await;
    let kept: Vec<i64> = pg
        .query(
            "SELECT base_offset FROM producer_batches WHERE producer_id = $1 ORDER BY base_offset",
            &[&producer],
        )
        .await
        .expect("producer rows")
        .iter()
        .map(|row| row.get(0))
        .collect();
    assert_eq!(
        kept,
        vec![2, 3, 4, 5, 6],
        "the newest five batches, in PostgreSQL"
    );

    // SIGKILL, local data gone: the state must come from PostgreSQL.
    broker.kill_prepare_restart(|root| {
        std::fs::remove_dir_all(data_dir_in(root)).expect("wipe the data directory");
    });
    broker.wait_for_line(&["cloud engine opened"], Duration::from_secs(10));
    let mut stream = connect(broker.addr("kafka"));
    // Before anything rebuilds producer state here: the wiped broker's next id is still new
    // cluster-wide (PostgreSQL's sequence, not the wiped local store).
    let next = init_producer_id(&mut stream, 19);
    assert_ne!(next, producer, "a producer id handed out twice");
    // Retries of the last batch and of an older one still kept: duplicates, same offsets.
    assert_eq!(
        produce_once_to(&mut stream, TOPIC, 20, idempotent_batch(producer, 0, 6)),
        (0, 6)
    );
    assert_eq!(
        produce_once_to(&mut stream, TOPIC, 21, idempotent_batch(producer, 0, 3)),
        (0, 3)
    );
    // A gap is refused (OUT_OF_ORDER_SEQUENCE_NUMBER), the next batch is new.
    assert_eq!(
        produce_once_to(&mut stream, TOPIC, 22, idempotent_batch(producer, 0, 9)).0,
        45
    );
    assert_eq!(
        produce_once_to(&mut stream, TOPIC, 23, idempotent_batch(producer, 0, 7)),
        (0, 7)
    );
    let stored: i64 = pg
        .query_one(
            "SELECT COALESCE(sum(record_count), 0)::bigint FROM batches WHERE topic = $1",
            &[&TOPIC],
        )
        .await
        .expect("count records")
        .get(0);
    assert_eq!(stored, 8, "every batch stored once: 0 duplicates");
}
