//! Live counters and latency histograms shared by producers, consumers and the runner.
//!
//! Producers and consumers record into [`Stats`]; the runner takes a [`Period`] snapshot
//! every period (counters and the period's histograms are reset, the cumulative ones keep
//! going) and resets everything once when the warm-up ends. Latencies are kept in
//! microseconds; values past [`MAX_MICROS`] are recorded as [`MAX_MICROS`], never dropped.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use hdrhistogram::Histogram;

use crate::payload;

/// The largest latency a histogram tells apart (10 minutes).
pub const MAX_MICROS: u64 = 600_000_000;

/// Publish, publish-delay and end-to-end latency histograms, in microseconds.
#[derive(Debug, Clone)]
pub struct Latencies {
    pub publish: Histogram<u64>,
    /// How late each send started against its schedule (OMB's `publishDelayLatency`).
    pub publish_delay: Histogram<u64>,
    pub end_to_end: Histogram<u64>,
}

impl Default for Latencies {
    fn default() -> Self {
        let new = || Histogram::new_with_bounds(1, MAX_MICROS, 3).expect("valid histogram bounds");
        Self {
            publish: new(),
            publish_delay: new(),
            end_to_end: new(),
        }
    }
}

impl Latencies {
    fn reset(&mut self) {
        self.publish.reset();
        self.publish_delay.reset();
        self.end_to_end.reset();
    }
}

/// What happened in one period.
#[derive(Debug, Clone)]
pub struct Period {
    pub published: u64,
    pub publish_errors: u64,
    pub consumed: u64,
    /// Messages acknowledged but not yet consumed by every subscription, at the period's end.
    pub backlog: i64,
    pub latencies: Latencies,
}

/// Counters and histograms, updated from any task.
#[derive(Debug)]
pub struct Stats {
    subscriptions: u64,
    published: AtomicU64,
    publish_errors: AtomicU64,
    total_errors: AtomicU64,
    consumed: AtomicU64,
    bytes_published: AtomicU64,
    /// Since the start, warm-up included (backlog and the backlog phase need these).
    total_published: AtomicU64,
    total_consumed: AtomicU64,
    period: Mutex<Latencies>,
    cumulative: Mutex<Latencies>,
}

impl Stats {
    /// `subscriptions`: how many subscriptions receive each published message in total
    /// (backlog = published x subscriptions - consumed).
    pub fn new(subscriptions: u64) -> Self {
        Self {
            subscriptions,
            published: AtomicU64::new(0),
            publish_errors: AtomicU64::new(0),
            total_errors: AtomicU64::new(0),
            consumed: AtomicU64::new(0),
            bytes_published: AtomicU64::new(0),
            total_published: AtomicU64::new(0),
            total_consumed: AtomicU64::new(0),
            period: Mutex::default(),
            cumulative: Mutex::default(),
        }
    }

    /// An acknowledged send of `bytes`, `latency_us` after it started, `delay_us` after its
    /// scheduled time.
    pub fn record_publish(&self, bytes: usize, latency_us: u64, delay_us: u64) {
        self.published.fetch_add(1, Ordering::Relaxed);
        self.total_published.fetch_add(1, Ordering::Relaxed);
        self.bytes_published
            .fetch_add(bytes as u64, Ordering::Relaxed);
        for hists in [&self.period, &self.cumulative] {
            let mut h = hists.lock().unwrap_or_else(|p| p.into_inner());
            h.publish.saturating_record(latency_us.max(1));
            h.publish_delay.saturating_record(delay_us.max(1));
        }
    }

    /// A refused or failed send; returns how many were recorded before it (in this run).
    pub fn record_publish_error(&self) -> u64 {
        self.publish_errors.fetch_add(1, Ordering::Relaxed);
        self.total_errors.fetch_add(1, Ordering::Relaxed)
    }

    /// A delivered message: its end-to-end latency comes from the send time in its body.
    pub fn record_consume(&self, body: &[u8]) {
        self.consumed.fetch_add(1, Ordering::Relaxed);
        self.total_consumed.fetch_add(1, Ordering::Relaxed);
        if let Some(sent) = payload::sent_micros(body) {
            let e2e = payload::now_micros().saturating_sub(sent).max(1);
            for hists in [&self.period, &self.cumulative] {
                let mut h = hists.lock().unwrap_or_else(|p| p.into_inner());
                h.end_to_end.saturating_record(e2e);
            }
        }
    }

    pub fn total_published(&self) -> u64 {
        self.total_published.load(Ordering::Relaxed)
    }

    pub fn total_consumed(&self) -> u64 {
        self.total_consumed.load(Ordering::Relaxed)
    }

    /// Receipts so far counted once per message, not per subscription (what the rate
    /// controller compares with [`Stats::total_published`]).
    pub fn total_received_once(&self) -> u64 {
        self.total_consumed() / self.subscriptions.max(1)
    }

    pub fn bytes_published(&self) -> u64 {
        self.bytes_published.load(Ordering::Relaxed)
    }

    /// Acknowledged deliveries still to be consumed. A delivery may arrive before its
    /// publish acknowledgement is recorded; such a race counts as no backlog, not a negative one.
    pub fn backlog(&self) -> i64 {
        ((self.total_published() * self.subscriptions) as i64 - self.total_consumed() as i64).max(0)
    }

    /// Ends a period: its counts and histograms, reset for the next one.
    pub fn take_period(&self) -> Period {
        let latencies = {
            let mut h = self.period.lock().unwrap_or_else(|p| p.into_inner());
            let taken = h.clone();
            h.reset();
            taken
        };
        Period {
            published: self.published.swap(0, Ordering::Relaxed),
            publish_errors: self.publish_errors.swap(0, Ordering::Relaxed),
            consumed: self.consumed.swap(0, Ordering::Relaxed),
            backlog: self.backlog(),
            latencies,
        }
    }

    /// Forgets the warm-up: period and cumulative figures start again (totals stay, for the
    /// backlog).
    pub fn reset_measurements(&self) {
        let _ = self.take_period();
        self.cumulative
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .reset();
    }

    pub fn cumulative(&self) -> Latencies {
        self.cumulative
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
