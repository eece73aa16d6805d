//! Counters of the cloud engine's round trips, read by tests and benchmarks (one PUT and one
//! transaction per flush is the design target) and logged per flush at debug level.
//!
//! Invariant: counters only grow (gauges are set); a snapshot is a consistent-enough read for
//! before/after deltas.

use std::sync::atomic::{AtomicU64, Ordering};

/// One monotonically growing count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.add(1);
    }

    pub fn add(&self, by: u64) {
        self.0.fetch_add(by, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A value that goes up and down, set from the latest observation.
#[derive(Debug, Default)]
pub struct Gauge(AtomicU64);

impl Gauge {
    pub fn set(&self, value: u64) {
        self.0.store(value, Ordering::Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Every counter of one engine.
#[derive(Debug, Default)]
pub struct Stats {
    /// Object PUTs attempted.
    pub puts: Counter,
    /// Bytes in PUT objects.
    pub put_bytes: Counter,
    /// Ranged GETs issued (cache misses).
    pub gets: Counter,
    /// Bytes read by ranged GETs.
    pub get_bytes: Counter,
    /// PostgreSQL operations (loans of a pooled connection).
    pub pg_operations: Counter,
    /// Reads answered from the byte-range cache.
    pub cache_hits: Counter,
    /// PostgreSQL transactions committed by the write path (one per successful flush).
    pub flush_transactions: Counter,
    /// Flushes that wrote an object, successful or not.
    pub flushes: Counter,
    /// Flushes that failed (PUT or commit); their batches were refused.
    pub failed_flushes: Counter,
    /// Batches committed.
    pub batches: Counter,
    /// PostgreSQL connections opened.
    pub connections: Counter,
    /// Membership lease renewals that succeeded.
    pub lease_renewals: Counter,
    /// Membership rounds (renewal, topic refresh, take-overs) that failed.
    pub failed_lease_renewals: Counter,
    /// Microseconds spent in object PUTs (flushes).
    pub put_micros: Counter,
    /// Microseconds spent in flush transactions (connection, statements, commit).
    pub commit_micros: Counter,
    /// Microseconds from each flush's first batch to the flush starting (the interval wait).
    pub queued_micros: Counter,
    /// Offsets notifications received from other brokers' commits (LISTEN/NOTIFY).
    pub notifications: Counter,
    /// Appends to partitions another broker leads, forwarded to it over the internal RPC.
    pub forwarded_appends: Counter,
    /// LISTEN connections that failed (each is reconnected).
    pub failed_listens: Counter,
    /// Partitions whose log start retention moved (one per partition and pass).
    pub retention_trims: Counter,
    /// Log objects deleted by the object GC, and their bytes.
    pub deleted_objects: Counter,
    pub deleted_object_bytes: Counter,
    /// Maintenance passes (retention, object GC) that failed.
    pub failed_maintenance: Counter,
    /// Old objects whose batches a merge moved into a new object, and the bytes it copied.
    pub merged_objects: Counter,
    pub merge_rewritten_bytes: Counter,
    /// Scheduled appends this broker carried out (appended, then deleted).
    pub scheduled_fired: Counter,
    /// Scheduled appends pending in the cluster, as this broker's scheduler last counted them.
    pub scheduled_pending: Gauge,
}

/// A copy of [`Stats`] at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StatsSnapshot {
    pub puts: u64,
    pub put_bytes: u64,
    pub gets: u64,
    pub get_bytes: u64,
    pub pg_operations: u64,
    pub cache_hits: u64,
    pub flush_transactions: u64,
    pub flushes: u64,
    pub failed_flushes: u64,
    pub batches: u64,
    pub connections: u64,
    pub lease_renewals: u64,
    pub failed_lease_renewals: u64,
    pub put_micros: u64,
    pub commit_micros: u64,
    pub queued_micros: u64,
    pub notifications: u64,
    pub forwarded_appends: u64,
    pub failed_listens: u64,
    pub retention_trims: u64,
    pub deleted_objects: u64,
    pub deleted_object_bytes: u64,
    pub failed_maintenance: u64,
    pub merged_objects: u64,
    pub merge_rewritten_bytes: u64,
    pub scheduled_fired: u64,
    pub scheduled_pending: u64,
}

impl Stats {
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            puts: self.puts.get(),
            put_bytes: self.put_bytes.get(),
            gets: self.gets.get(),
            cache_hits: self.cache_hits.get(),
            flush_transactions: self.flush_transactions.get(),
            flushes: self.flushes.get(),
            failed_flushes: self.failed_flushes.get(),
            batches: self.batches.get(),
            connections: self.connections.get(),
            lease_renewals: self.lease_renewals.get(),
            failed_lease_renewals: self.failed_lease_renewals.get(),
            put_micros: self.put_micros.get(),
            commit_micros: self.commit_micros.get(),
            queued_micros: self.queued_micros.get(),
            notifications: self.notifications.get(),
            get_bytes: self.get_bytes.get(),
            pg_operations: self.pg_operations.get(),
            forwarded_appends: self.forwarded_appends.get(),
            failed_listens: self.failed_listens.get(),
            retention_trims: self.retention_trims.get(),
            deleted_objects: self.deleted_objects.get(),
            deleted_object_bytes: self.deleted_object_bytes.get(),
            failed_maintenance: self.failed_maintenance.get(),
            merged_objects: self.merged_objects.get(),
            merge_rewritten_bytes: self.merge_rewritten_bytes.get(),
            scheduled_fired: self.scheduled_fired.get(),
            scheduled_pending: self.scheduled_pending.get(),
        }
    }
}
