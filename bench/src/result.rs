//! OMB's `TestResult` JSON: the same field names and units, so OMB's chart scripts and
//! published results read ours. Publish and end-to-end latencies are milliseconds (floats),
//! publish-delay latencies whole microseconds, rates messages per second per period.
//!
//! Extensions OMB readers ignore: `periodSeconds` (OMB's period is fixed at 10 s; ours may be
//! shorter), `protocol`, `target`, `messagesPublished` and `messagesConsumed` (totals of the
//! measured periods), `producerRateMode` (how producers were paced: [`crate::rate::RateMode`])
//! and `targetPublishRate` (the target rate at each period's end; empty when unthrottled).

use std::collections::BTreeMap;

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

use crate::stats::{Latencies, Period};

/// Percentiles written into the aggregated quantile maps (the report's CDF uses them).
pub const QUANTILES: &[f64] = &[
    1.0, 5.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 75.0, 80.0, 85.0, 90.0, 95.0, 97.0, 98.0,
    99.0, 99.5, 99.9, 99.95, 99.99, 99.999, 100.0,
];

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TestResult {
    pub workload: String,
    pub driver: String,
    pub message_size: u64,
    pub topics: u32,
    pub partitions: u32,
    pub producers_per_topic: u32,
    pub consumers_per_topic: u32,

    pub publish_rate: Vec<f64>,
    pub publish_error_rate: Vec<f64>,
    pub consume_rate: Vec<f64>,
    pub backlog: Vec<i64>,

    pub publish_latency_avg: Vec<f64>,
    pub publish_latency_50pct: Vec<f64>,
    pub publish_latency_75pct: Vec<f64>,
    pub publish_latency_95pct: Vec<f64>,
    pub publish_latency_99pct: Vec<f64>,
    pub publish_latency_999pct: Vec<f64>,
    pub publish_latency_9999pct: Vec<f64>,
    pub publish_latency_99999pct: Vec<f64>,
    pub publish_latency_max: Vec<f64>,

    pub publish_delay_latency_avg: Vec<f64>,
    pub publish_delay_latency_50pct: Vec<u64>,
    pub publish_delay_latency_75pct: Vec<u64>,
    pub publish_delay_latency_95pct: Vec<u64>,
    pub publish_delay_latency_99pct: Vec<u64>,
    pub publish_delay_latency_999pct: Vec<u64>,
    pub publish_delay_latency_9999pct: Vec<u64>,
    pub publish_delay_latency_99999pct: Vec<u64>,
    pub publish_delay_latency_max: Vec<u64>,

    pub aggregated_publish_latency_avg: f64,
    pub aggregated_publish_latency_50pct: f64,
    pub aggregated_publish_latency_75pct: f64,
    pub aggregated_publish_latency_95pct: f64,
    pub aggregated_publish_latency_99pct: f64,
    pub aggregated_publish_latency_999pct: f64,
    pub aggregated_publish_latency_9999pct: f64,
    pub aggregated_publish_latency_99999pct: f64,
    pub aggregated_publish_latency_max: f64,

    pub aggregated_publish_delay_latency_avg: f64,
    pub aggregated_publish_delay_latency_50pct: u64,
    pub aggregated_publish_delay_latency_75pct: u64,
    pub aggregated_publish_delay_latency_95pct: u64,
    pub aggregated_publish_delay_latency_99pct: u64,
    pub aggregated_publish_delay_latency_999pct: u64,
    pub aggregated_publish_delay_latency_9999pct: u64,
    pub aggregated_publish_delay_latency_99999pct: u64,
    pub aggregated_publish_delay_latency_max: u64,

    /// Percentile (as OMB writes it, e.g. "99.9") to milliseconds.
    pub aggregated_publish_latency_quantiles: BTreeMap<String, f64>,
    pub aggregated_publish_delay_latency_quantiles: BTreeMap<String, u64>,

    pub end_to_end_latency_avg: Vec<f64>,
    pub end_to_end_latency_50pct: Vec<f64>,
    pub end_to_end_latency_75pct: Vec<f64>,
    pub end_to_end_latency_95pct: Vec<f64>,
    pub end_to_end_latency_99pct: Vec<f64>,
    pub end_to_end_latency_999pct: Vec<f64>,
    pub end_to_end_latency_9999pct: Vec<f64>,
    pub end_to_end_latency_99999pct: Vec<f64>,
    pub end_to_end_latency_max: Vec<f64>,

    pub aggregated_end_to_end_latency_quantiles: BTreeMap<String, f64>,

    pub aggregated_end_to_end_latency_avg: f64,
    pub aggregated_end_to_end_latency_50pct: f64,
    pub aggregated_end_to_end_latency_75pct: f64,
    pub aggregated_end_to_end_latency_95pct: f64,
    pub aggregated_end_to_end_latency_99pct: f64,
    pub aggregated_end_to_end_latency_999pct: f64,
    pub aggregated_end_to_end_latency_9999pct: f64,
    pub aggregated_end_to_end_latency_99999pct: f64,
    pub aggregated_end_to_end_latency_max: f64,

    // Extensions.
    pub period_seconds: f64,
    pub protocol: String,
    pub target: String,
    pub messages_published: u64,
    pub messages_consumed: u64,
    /// What `publishRate` counts: [`PUBLISH_RATE_COUNTS`] (sends the broker acknowledged; a
    /// refused or failed send is in `publishErrorRate`, a send a client retried counts once).
    pub publish_rate_counts: String,
    /// `fixed` (`producerRate` > 0), `max-sustainable` (`producerRate` 0: OMB's rate
    /// discovery) or `unthrottled` (`producerRate` 0 with `--unthrottled`).
    #[serde(default)]
    pub producer_rate_mode: String,
    /// The target rate at each period's end, msg/s over all producers (the controller moves
    /// it in `max-sustainable` mode); empty when unthrottled.
    #[serde(default)]
    pub target_publish_rate: Vec<f64>,
}

/// The value of `publishRateCounts` in every result this tool writes.
pub const PUBLISH_RATE_COUNTS: &str = "acknowledged";

/// The quantiles OMB reports, in microseconds: avg, 50, 75, 95, 99, 99.9, 99.99, 99.999, max.
fn figures(h: &Histogram<u64>) -> [f64; 9] {
    if h.is_empty() {
        return [0.0; 9];
    }
    let q = |p: f64| h.value_at_quantile(p) as f64;
    [
        h.mean(),
        q(0.5),
        q(0.75),
        q(0.95),
        q(0.99),
        q(0.999),
        q(0.9999),
        q(0.99999),
        h.max() as f64,
    ]
}

fn quantile_map<T>(h: &Histogram<u64>, convert: impl Fn(u64) -> T) -> BTreeMap<String, T> {
    if h.is_empty() {
        return BTreeMap::new();
    }
    QUANTILES
        .iter()
        .map(|&p| (format!("{p:?}"), convert(h.value_at_quantile(p / 100.0))))
        .collect()
}

fn ms(us: f64) -> f64 {
    us / 1000.0
}

impl TestResult {
    /// Appends one period's figures.
    pub fn push_period(&mut self, period: &Period) {
        let secs = self.period_seconds.max(f64::MIN_POSITIVE);
        self.publish_rate.push(period.published as f64 / secs);
        self.publish_error_rate
            .push(period.publish_errors as f64 / secs);
        self.consume_rate.push(period.consumed as f64 / secs);
        self.backlog.push(period.backlog);
        self.messages_published += period.published;
        self.messages_consumed += period.consumed;

        let p = figures(&period.latencies.publish).map(ms);
        for (list, value) in [
            &mut self.publish_latency_avg,
            &mut self.publish_latency_50pct,
            &mut self.publish_latency_75pct,
            &mut self.publish_latency_95pct,
            &mut self.publish_latency_99pct,
            &mut self.publish_latency_999pct,
            &mut self.publish_latency_9999pct,
            &mut self.publish_latency_99999pct,
            &mut self.publish_latency_max,
        ]
        .into_iter()
        .zip(p)
        {
            list.push(value);
        }
        let d = figures(&period.latencies.publish_delay);
        self.publish_delay_latency_avg.push(d[0]);
        for (list, value) in [
            &mut self.publish_delay_latency_50pct,
            &mut self.publish_delay_latency_75pct,
            &mut self.publish_delay_latency_95pct,
            &mut self.publish_delay_latency_99pct,
            &mut self.publish_delay_latency_999pct,
            &mut self.publish_delay_latency_9999pct,
            &mut self.publish_delay_latency_99999pct,
            &mut self.publish_delay_latency_max,
        ]
        .into_iter()
        .zip(&d[1..])
        {
            list.push(*value as u64);
        }
        let e = figures(&period.latencies.end_to_end).map(ms);
        for (list, value) in [
            &mut self.end_to_end_latency_avg,
            &mut self.end_to_end_latency_50pct,
            &mut self.end_to_end_latency_75pct,
            &mut self.end_to_end_latency_95pct,
            &mut self.end_to_end_latency_99pct,
            &mut self.end_to_end_latency_999pct,
            &mut self.end_to_end_latency_9999pct,
            &mut self.end_to_end_latency_99999pct,
            &mut self.end_to_end_latency_max,
        ]
        .into_iter()
        .zip(e)
        {
            list.push(value);
        }
    }

    /// Sets the aggregated figures from the measured period's cumulative histograms.
    pub fn set_aggregated(&mut self, all: &Latencies) {
        let p = figures(&all.publish).map(ms);
        [
            self.aggregated_publish_latency_avg,
            self.aggregated_publish_latency_50pct,
            self.aggregated_publish_latency_75pct,
            self.aggregated_publish_latency_95pct,
            self.aggregated_publish_latency_99pct,
            self.aggregated_publish_latency_999pct,
            self.aggregated_publish_latency_9999pct,
            self.aggregated_publish_latency_99999pct,
            self.aggregated_publish_latency_max,
        ] = p;
        let d = figures(&all.publish_delay);
        self.aggregated_publish_delay_latency_avg = d[0];
        [
            self.aggregated_publish_delay_latency_50pct,
            self.aggregated_publish_delay_latency_75pct,
            self.aggregated_publish_delay_latency_95pct,
            self.aggregated_publish_delay_latency_99pct,
            self.aggregated_publish_delay_latency_999pct,
            self.aggregated_publish_delay_latency_9999pct,
            self.aggregated_publish_delay_latency_99999pct,
            self.aggregated_publish_delay_latency_max,
        ] = [d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8]].map(|v| v as u64);
        let e = figures(&all.end_to_end).map(ms);
        [
            self.aggregated_end_to_end_latency_avg,
            self.aggregated_end_to_end_latency_50pct,
            self.aggregated_end_to_end_latency_75pct,
            self.aggregated_end_to_end_latency_95pct,
            self.aggregated_end_to_end_latency_99pct,
            self.aggregated_end_to_end_latency_999pct,
            self.aggregated_end_to_end_latency_9999pct,
            self.aggregated_end_to_end_latency_99999pct,
            self.aggregated_end_to_end_latency_max,
        ] = e;
        self.aggregated_publish_latency_quantiles =
            quantile_map(&all.publish, |us| us as f64 / 1000.0);
        self.aggregated_publish_delay_latency_quantiles = quantile_map(&all.publish_delay, |us| us);
        self.aggregated_end_to_end_latency_quantiles =
            quantile_map(&all.end_to_end, |us| us as f64 / 1000.0);
    }

    /// Sorted (percentile, milliseconds) pairs of a quantile map.
    pub fn sorted_quantiles(map: &BTreeMap<String, f64>) -> Vec<(f64, f64)> {
        let mut pairs: Vec<(f64, f64)> = map
            .iter()
            .filter_map(|(k, v)| Some((k.parse().ok()?, *v)))
            .collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0));
        pairs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats::Stats;

    #[test]
    fn json_uses_omb_field_names_and_units() {
        let stats = Stats::new(1);
        for us in [1_000u64, 2_000, 3_000, 50_000] {
            stats.record_publish(100, us, 5);
        }
        let mut body = vec![0u8; 16];
        crate::payload::stamp(&mut body, crate::payload::now_micros() - 4_000);
        stats.record_consume(&body);
        let mut result = TestResult {
            workload: "w".into(),
            driver: "d".into(),
            period_seconds: 2.0,
            ..Default::default()
        };
        result.push_period(&stats.take_period());
        result.set_aggregated(&stats.cumulative());
        let json: serde_json::Value = serde_json::to_value(&result).unwrap();
        assert_eq!(json["publishRate"][0], 2.0);
        assert_eq!(json["consumeRate"][0], 0.5);
        assert_eq!(json["backlog"][0], 3);
        let p50 = json["publishLatency50pct"][0].as_f64().unwrap();
        assert!((1.9..2.1).contains(&p50), "p50 {p50} ms");
        let max = json["aggregatedPublishLatencyMax"].as_f64().unwrap();
        assert!((49.0..51.0).contains(&max), "max {max} ms");
        assert!(json["aggregatedPublishLatency9999pct"].is_f64());
        assert_eq!(json["aggregatedPublishDelayLatency50pct"], 5);
        let e2e = json["aggregatedEndToEndLatency50pct"].as_f64().unwrap();
        assert!((4.0..100.0).contains(&e2e), "e2e {e2e} ms");
        assert!(json["aggregatedEndToEndLatencyQuantiles"]["99.9"].is_f64());
        assert!(json["endToEndLatency99999pct"][0].is_f64());
        for name in [
            "workload",
            "driver",
            "messageSize",
            "topics",
            "partitions",
            "producersPerTopic",
            "consumersPerTopic",
            "publishErrorRate",
            "publishDelayLatencyMax",
        ] {
            assert!(json.get(name).is_some(), "{name} missing");
        }
        let back: TestResult = serde_json::from_value(json).unwrap();
        assert_eq!(back, result);
    }
}
