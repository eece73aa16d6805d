//! OMB workload files: the YAML fields the OpenMessaging Benchmark's `Workload` class defines,
//! with its defaults, checked before a run starts.
//!
//! Invariants after [`Workload::parse`]: at least one topic, partition, producer or
//! subscription with a consumer; a payload of at least [`TIMESTAMP_BYTES`] (the send time
//! travels in the first 8 bytes, see [`crate::payload`]); durations finite and not negative.
//! Unknown fields are refused (a typo would otherwise run a different workload quietly).
//!
//! One extension: `testDurationMinutes`, `warmupDurationMinutes` and `consumerBacklogSizeGB`
//! accept fractions (OMB's are whole numbers), so the test workloads last a few seconds and
//! build a backlog of a few MiB.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::Error;

/// Bytes at the start of every payload that carry the send time (microseconds since the Unix
/// epoch, big-endian), for end-to-end latency.
pub const TIMESTAMP_BYTES: usize = 8;

/// Refuses payloads past this: every producer keeps its pool in memory.
const MAX_MESSAGE_SIZE: usize = 64 << 20;

/// How a producer picks message keys (OMB's `KeyDistributorType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum KeyDistributor {
    /// No key: the client spreads messages over partitions itself.
    #[default]
    NoKey,
    /// Keys cycle through a fixed set, one after another.
    KeyRoundRobin,
    /// A key from the current nanosecond clock (effectively random).
    RandomNano,
}

/// One OMB workload, field for field (OMB's camelCase names in YAML).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    pub name: String,
    pub topics: u32,
    pub partitions_per_topic: u32,
    #[serde(default)]
    pub key_distributor: KeyDistributor,
    #[serde(default)]
    pub message_size: usize,
    #[serde(default)]
    pub use_randomized_payloads: bool,
    #[serde(default)]
    pub random_bytes_ratio: f64,
    #[serde(default)]
    pub randomized_payload_pool_size: usize,
    #[serde(default)]
    pub payload_file: Option<String>,
    pub subscriptions_per_topic: u32,
    pub producers_per_topic: u32,
    pub consumer_per_subscription: u32,
    /// Messages per second over all producers; 0 means as fast as the broker takes them.
    #[serde(default)]
    pub producer_rate: u64,
    /// When above 0: producers run alone until this much is stored, then consumers drain it.
    /// GiB, as OMB counts (`consumerBacklogSizeGB * 1024^3` bytes).
    #[serde(default, rename = "consumerBacklogSizeGB")]
    pub consumer_backlog_size_gb: f64,
    /// The share of the backlog that must be drained for the test to end (0.0 to 1.0).
    #[serde(default = "one")]
    pub backlog_drain_ratio: f64,
    pub test_duration_minutes: f64,
    #[serde(default = "one")]
    pub warmup_duration_minutes: f64,
}

fn one() -> f64 {
    1.0
}

impl Workload {
    /// Parses and checks a workload file's text.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let workload: Self =
            serde_yaml::from_str(text).map_err(|err| Error::Workload(err.to_string()))?;
        workload.check()?;
        Ok(workload)
    }

    /// Reads and parses a workload file.
    pub fn load(path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path)
            .map_err(|err| Error::Workload(format!("cannot read {}: {err}", path.display())))?;
        Self::parse(&text).map_err(|err| match err {
            Error::Workload(msg) => Error::Workload(format!("{}: {msg}", path.display())),
            other => other,
        })
    }

    fn check(&self) -> Result<(), Error> {
        let bad = |msg: String| Err(Error::Workload(msg));
        for (field, value) in [
            ("topics", self.topics),
            ("partitionsPerTopic", self.partitions_per_topic),
            ("producersPerTopic", self.producers_per_topic),
            ("subscriptionsPerTopic", self.subscriptions_per_topic),
            ("consumerPerSubscription", self.consumer_per_subscription),
        ] {
            if value == 0 {
                return bad(format!("{field} must be at least 1"));
            }
        }
        if self.payload_file.is_none() {
            if self.message_size < TIMESTAMP_BYTES {
                return bad(format!(
                    "messageSize must be at least {TIMESTAMP_BYTES} (the send time travels in the payload), got {}",
                    self.message_size
                ));
            }
            if self.message_size > MAX_MESSAGE_SIZE {
                return bad(format!(
                    "messageSize {} is over the limit of {MAX_MESSAGE_SIZE}",
                    self.message_size
                ));
            }
        }
        if !(0.0..=1.0).contains(&self.random_bytes_ratio) {
            return bad(format!(
                "randomBytesRatio must be between 0 and 1, got {}",
                self.random_bytes_ratio
            ));
        }
        // Finite and under 2^33 GiB, so the byte count fits a u64.
        if !(0.0..8.0e9).contains(&self.consumer_backlog_size_gb) {
            return bad(format!(
                "consumerBacklogSizeGB must be a number of GiB >= 0, got {}",
                self.consumer_backlog_size_gb
            ));
        }
        if !(0.0..=1.0).contains(&self.backlog_drain_ratio) {
            return bad(format!(
                "backlogDrainRatio must be between 0 and 1, got {}",
                self.backlog_drain_ratio
            ));
        }
        for (field, minutes) in [
            ("testDurationMinutes", self.test_duration_minutes),
            ("warmupDurationMinutes", self.warmup_duration_minutes),
        ] {
            if !minutes.is_finite() || minutes < 0.0 {
                return bad(format!(
                    "{field} must be a number of minutes >= 0, got {minutes}"
                ));
            }
        }
        if self.test_duration_minutes == 0.0 {
            return bad("testDurationMinutes must be above 0".into());
        }
        Ok(())
    }

    pub fn test_duration(&self) -> Duration {
        Duration::from_secs_f64(self.test_duration_minutes * 60.0)
    }

    pub fn warmup_duration(&self) -> Duration {
        Duration::from_secs_f64(self.warmup_duration_minutes * 60.0)
    }

    /// The backlog to build before consumers start, in bytes (0: none).
    pub fn backlog_bytes(&self) -> u64 {
        // In range after `check` (below 2^63 bytes); `as` saturates anyway.
        (self.consumer_backlog_size_gb * f64::from(1u32 << 30)).round() as u64
    }

    /// Producers over all topics.
    pub fn producers(&self) -> u32 {
        self.topics.saturating_mul(self.producers_per_topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EVERY_FIELD: &str = r#"
name: every field
topics: 3
partitionsPerTopic: 16
keyDistributor: KEY_ROUND_ROBIN
messageSize: 1024
useRandomizedPayloads: true
randomBytesRatio: 0.5
randomizedPayloadPoolSize: 1000
payloadFile: payload/payload-1Kb.data
subscriptionsPerTopic: 2
producersPerTopic: 4
consumerPerSubscription: 8
producerRate: 50000
consumerBacklogSizeGB: 2
backlogDrainRatio: 0.9
testDurationMinutes: 15
warmupDurationMinutes: 2
"#;

    #[test]
    fn every_field_is_read() {
        let w = Workload::parse(EVERY_FIELD).unwrap();
        assert_eq!(
            w,
            Workload {
                name: "every field".into(),
                topics: 3,
                partitions_per_topic: 16,
                key_distributor: KeyDistributor::KeyRoundRobin,
                message_size: 1024,
                use_randomized_payloads: true,
                random_bytes_ratio: 0.5,
                randomized_payload_pool_size: 1000,
                payload_file: Some("payload/payload-1Kb.data".into()),
                subscriptions_per_topic: 2,
                producers_per_topic: 4,
                consumer_per_subscription: 8,
                producer_rate: 50_000,
                consumer_backlog_size_gb: 2.0,
                backlog_drain_ratio: 0.9,
                test_duration_minutes: 15.0,
                warmup_duration_minutes: 2.0,
            }
        );
        assert_eq!(w.producers(), 12);
        assert_eq!(w.backlog_bytes(), 2 << 30);
        assert_eq!(w.test_duration(), Duration::from_secs(900));
    }

    #[test]
    fn missing_optional_fields_take_omb_defaults() {
        let w = Workload::parse(
            "name: min\ntopics: 1\npartitionsPerTopic: 1\nmessageSize: 100\n\
             subscriptionsPerTopic: 1\nproducersPerTopic: 1\nconsumerPerSubscription: 1\n\
             testDurationMinutes: 5\n",
        )
        .unwrap();
        assert_eq!(w.key_distributor, KeyDistributor::NoKey);
        assert_eq!(w.producer_rate, 0);
        assert_eq!(w.warmup_duration_minutes, 1.0);
        assert_eq!(w.backlog_drain_ratio, 1.0);
        assert_eq!(w.consumer_backlog_size_gb, 0.0);
        assert!(!w.use_randomized_payloads);
        assert_eq!(w.payload_file, None);
    }

    #[test]
    fn a_backlog_may_be_a_fraction_of_a_gib() {
        let w = Workload::parse(&EVERY_FIELD.replace(
            "consumerBacklogSizeGB: 2",
            "consumerBacklogSizeGB: 0.0078125",
        ))
        .unwrap();
        assert_eq!(w.backlog_bytes(), 8 << 20);
    }

    #[test]
    fn every_key_distributor_parses() {
        for (text, want) in [
            ("NO_KEY", KeyDistributor::NoKey),
            ("KEY_ROUND_ROBIN", KeyDistributor::KeyRoundRobin),
            ("RANDOM_NANO", KeyDistributor::RandomNano),
        ] {
            let yaml = EVERY_FIELD.replace("KEY_ROUND_ROBIN", text);
            assert_eq!(Workload::parse(&yaml).unwrap().key_distributor, want);
        }
    }

    fn error(yaml: &str) -> String {
        match Workload::parse(yaml) {
            Err(Error::Workload(msg)) => msg,
            other => panic!("expected a workload error, got {other:?}"),
        }
    }

    #[test]
    fn bad_fields_get_clear_errors() {
        let with = |from: &str, to: &str| EVERY_FIELD.replace(from, to);
        assert!(
            error(&with(
                "keyDistributor: KEY_ROUND_ROBIN",
                "keyDistributor: ROUND"
            ))
            .contains("ROUND")
        );
        assert!(error(&with("topics: 3", "topics: 0")).contains("topics must be at least 1"));
        assert!(error(&with("topics: 3", "topics: -1")).contains("topics"));
        assert!(error(&with("topics: 3", "topics: 3\ntopcs: 1")).contains("topcs"));
        assert!(
            error(&with("randomBytesRatio: 0.5", "randomBytesRatio: 2"))
                .contains("randomBytesRatio")
        );
        assert!(
            error(&with("backlogDrainRatio: 0.9", "backlogDrainRatio: -1"))
                .contains("backlogDrainRatio")
        );
        assert!(
            error(&with("testDurationMinutes: 15", "testDurationMinutes: 0"))
                .contains("testDurationMinutes")
        );
        assert!(error(&with("producerRate: 50000", "producerRate: fast")).contains("producerRate"));
        for bad in ["-1", ".nan", ".inf"] {
            assert!(
                error(&with(
                    "consumerBacklogSizeGB: 2",
                    &format!("consumerBacklogSizeGB: {bad}")
                ))
                .contains("consumerBacklogSizeGB"),
                "{bad}"
            );
        }
        let no_file = with("payloadFile: payload/payload-1Kb.data\n", "");
        assert!(
            error(&no_file.replace("messageSize: 1024", "messageSize: 4")).contains("at least 8")
        );
        assert!(error("name: x\ntopics: 1\n").contains("missing field"));
        assert!(error("[not, a, map]").contains("invalid type"));
    }
}
