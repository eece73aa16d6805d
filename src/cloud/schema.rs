//! Versioned schema migrations, applied by the broker at start.
//!
//! Invariants: `schema_migrations` holds one row per applied version; each migration runs in
//! one transaction together with its row, so a crash leaves it applied or not at all; a
//! database at a version newer than [`MIGRATIONS`] knows is refused (an older binary must not
//! write rows a newer schema means differently). Concurrent brokers serialise on an advisory
//! lock, taken before anything is created, so two first starts do not race. Migrations are
//! append-only: never edit a released one.

use tokio_postgres::Client;

use super::error::{CloudError, CloudResult};

/// Every migration, version `index + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: topics, partitions, log objects, batch coordinates, consumer offsets.
    r#"
    CREATE TABLE topics (
        name text PRIMARY KEY,
        id bytea NOT NULL,
        partitions integer NOT NULL CHECK (partitions > 0),
        retention_ms bigint,
        retention_bytes bigint,
        segment_bytes bigint,
        segment_ms bigint,
        max_message_bytes bigint,
        durability text,
        internal boolean NOT NULL DEFAULT false,
        created_ms bigint NOT NULL,
        fixed_by text
    );
    CREATE TABLE partitions (
        topic text NOT NULL REFERENCES topics (name) ON DELETE CASCADE,
        partition integer NOT NULL,
        log_start bigint NOT NULL DEFAULT 0,
        high_watermark bigint NOT NULL DEFAULT 0,
        PRIMARY KEY (topic, partition)
    );
    CREATE TABLE objects (
        key text PRIMARY KEY,
        broker_id bigint NOT NULL,
        size_bytes bigint NOT NULL,
        created_ms bigint NOT NULL
    );
    CREATE TABLE batches (
        topic text NOT NULL,
        partition integer NOT NULL,
        base_offset bigint NOT NULL,
        last_offset bigint NOT NULL,
        max_timestamp bigint NOT NULL,
        record_count integer NOT NULL,
        object_key text NOT NULL REFERENCES objects (key),
        byte_offset bigint NOT NULL,
        byte_length integer NOT NULL,
        PRIMARY KEY (topic, partition, base_offset),
        FOREIGN KEY (topic, partition) REFERENCES partitions (topic, partition) ON DELETE CASCADE
    );
    CREATE TABLE consumer_offsets (
        group_name text NOT NULL,
        topic text NOT NULL,
        partition integer NOT NULL,
        committed_offset bigint NOT NULL,
        metadata text NOT NULL,
        commit_time bigint NOT NULL,
        PRIMARY KEY (group_name, topic, partition)
    );
    "#,
    // 2: idempotent-producer state (written with the flush) and cluster-wide producer ids.
    r#"
    CREATE TABLE producer_batches (
        topic text NOT NULL,
        partition integer NOT NULL,
        producer_id bigint NOT NULL,
        producer_epoch smallint NOT NULL,
        base_sequence integer NOT NULL,
        last_sequence integer NOT NULL,
        base_offset bigint NOT NULL,
        PRIMARY KEY (topic, partition, producer_id, base_offset),
        FOREIGN KEY (topic, partition) REFERENCES partitions (topic, partition) ON DELETE CASCADE
    );
    CREATE SEQUENCE producer_ids;
    "#,
    // 3: broker membership leases (expiry by PostgreSQL's clock).
    r#"
    CREATE TABLE brokers (
        broker_id bigint PRIMARY KEY,
        host text NOT NULL,
        kafka_port integer NOT NULL,
        lease_expires timestamptz NOT NULL
    );
    "#,
    // 4: consumer groups' generations, so a group's next coordinator carries on from them.
    r#"
    CREATE TABLE group_generations (
        group_name text PRIMARY KEY,
        generation integer NOT NULL
    );
    "#,
    // 5: object GC: when an object was first seen without batches, and the lookup by object.
    r#"
    ALTER TABLE objects ADD COLUMN orphaned_ms bigint;
    CREATE INDEX batches_by_object ON batches (object_key);
    "#,
    // 6 ('metadata'): the frontends' metadata store shared by every broker
    // (`cloud::records`). Keys are bytea so that ORDER BY and prefix ranges compare bytes,
    // as the local store does, whatever the database's collation.
    r#"
    CREATE TABLE metadata_records (
        namespace text NOT NULL,
        key bytea NOT NULL,
        value bytea NOT NULL,
        PRIMARY KEY (namespace, key)
    );
    "#,
    // 7: each broker's Kafka TLS listener (`kafka.tls_port`), NULL without one, so Metadata
    // sends an SSL client to every broker's TLS port.
    r#"
    ALTER TABLE brokers ADD COLUMN kafka_tls_port integer;
    "#,
    // 8 ('queues'): queues across brokers (`cloud::queues`, `cloud::rpc`). Each broker's
    // internal RPC port; the cluster secret a caller must present; queue definitions with the
    // owner epoch that fences a stale owner; settle batches (encoded journal entries, one row
    // per queue per group commit, compacted into one row).
    r#"
    ALTER TABLE brokers ADD COLUMN internal_port integer;
    CREATE TABLE cluster_secret (
        id integer PRIMARY KEY CHECK (id = 1),
        secret bytea NOT NULL
    );
    CREATE TABLE cloud_queues (
        name text PRIMARY KEY,
        durable boolean NOT NULL,
        durability text,
        max_priority smallint,
        count_bytes boolean NOT NULL,
        created_ms bigint NOT NULL,
        epoch bigint NOT NULL DEFAULT 0
    );
    CREATE TABLE queue_acks (
        queue text NOT NULL REFERENCES cloud_queues (name) ON DELETE CASCADE,
        seq bigserial,
        entries bytea NOT NULL,
        PRIMARY KEY (queue, seq)
    );
    "#,
    // 9: each broker's RocketMQ broker listener, NULL without one, so every name server's
    // routes send RocketMQ clients to the broker that leads each queue (RocketMQ TLS shares
    // the port, `rocketmq.tls`).
    r#"
    ALTER TABLE brokers ADD COLUMN rocketmq_port integer;
    "#,
    // 10: the scheduler's delayed appends (`cloud::schedule`), shared by every broker; kind 0
    // targets partition (topic, partition), kind 1 the queue named `topic`.
    r#"
    CREATE TABLE scheduled (
        id bigserial PRIMARY KEY,
        due_ms bigint NOT NULL,
        kind smallint NOT NULL,
        topic text NOT NULL,
        partition integer NOT NULL,
        batch bytea NOT NULL
    );
    CREATE INDEX scheduled_by_target ON scheduled (kind, topic, partition, due_ms);
    "#,
    // 11: RocketMQ consumer-group members as each broker learnt them from heartbeats
    // (`cloud::roster`), so every broker lists every member of a group.
    r#"
    CREATE TABLE rocketmq_consumers (
        group_name text NOT NULL,
        client_id text NOT NULL,
        broker_id bigint NOT NULL,
        seen_at timestamptz NOT NULL,
        PRIMARY KEY (group_name, client_id, broker_id)
    );
    CREATE INDEX rocketmq_consumers_by_broker ON rocketmq_consumers (broker_id);
    "#,
];

/// Arbitrary, fixed: the advisory lock key that serialises migrations across brokers.
const MIGRATION_LOCK: i64 = 0x7472_6962_7574_6172;

/// Brings the schema up to the newest version this binary knows; returns that version.
pub async fn migrate(client: &mut Client) -> CloudResult<i64> {
    let known = MIGRATIONS.len() as i64;
    // The lock first: two brokers creating `schema_migrations` at once collide in PostgreSQL's
    // catalog even with IF NOT EXISTS.
    client
        .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(CloudError::pg("taking the migration lock"))?;
    let outcome = match client
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (
                version bigint PRIMARY KEY,
                applied_at timestamptz NOT NULL DEFAULT now()
            )",
        )
        .await
    {
        Ok(()) => apply(client, known).await,
        Err(error) => Err(CloudError::pg("creating schema_migrations")(error)),
    };
    let unlocked = client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(CloudError::pg("releasing the migration lock"));
    let version = outcome?;
    unlocked?;
    Ok(version)
}

async fn apply(client: &mut Client, known: i64) -> CloudResult<i64> {
    let current: i64 = client
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(CloudError::pg("reading the schema version"))?
        .get(0);
    if current > known {
        return Err(CloudError::SchemaTooNew {
            found: current,
            known,
        });
    }
    for (index, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let version = index as i64 + 1;
        let transaction = client
            .transaction()
            .await
            .map_err(CloudError::pg("starting a migration"))?;
        transaction
            .batch_execute(sql)
            .await
            .map_err(CloudError::pg("applying a migration"))?;
        transaction
            .execute(
                "INSERT INTO schema_migrations (version) VALUES ($1)",
                &[&version],
            )
            .await
            .map_err(CloudError::pg("recording a migration"))?;
        transaction
            .commit()
            .await
            .map_err(CloudError::pg("committing a migration"))?;
        tracing::info!(version, "applied metadata schema migration");
    }
    Ok(known)
}
