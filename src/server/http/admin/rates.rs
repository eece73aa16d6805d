//! Per-second rates of a queue's message counts, for RabbitMQ's `message_stats.*_details.rate`.
//!
//! Invariants: a rate is the change of a count between two readings at least
//! [`MIN_INTERVAL`] apart, divided by the seconds between them; readings closer than that
//! return the rate computed last (so two tools polling at once do not see noise). A queue's
//! first reading has rate 0. Readings not refreshed for [`FORGET_AFTER`] are dropped, so the
//! table holds only queues listed lately (queue names come from clients).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};
use tributary_amqp::metrics::QueueCounts;

/// Shortest time between two readings a rate is computed from.
pub(crate) const MIN_INTERVAL: Duration = Duration::from_secs(1);
/// A queue not listed for this long is forgotten.
const FORGET_AFTER: Duration = Duration::from_secs(600);

#[derive(Debug, Clone, Copy)]
struct Reading {
    at: Instant,
    counts: [u64; 4],
    rates: [f64; 4],
}

/// The last reading of each (vhost, queue).
#[derive(Debug, Default)]
pub(crate) struct QueueRates {
    readings: Mutex<HashMap<(String, String), Reading>>,
}

fn as_array(counts: QueueCounts) -> [u64; 4] {
    [
        counts.publish,
        counts.deliver_get,
        counts.ack,
        counts.redeliver,
    ]
}

impl QueueRates {
    /// The rates of `counts` (read `now`) for the queue, in `QueueCounts` field order.
    fn rates(&self, vhost: &str, queue: &str, counts: [u64; 4], now: Instant) -> [f64; 4] {
        let mut readings = self.readings.lock();
        let key = (vhost.to_owned(), queue.to_owned());
        let Some(last) = readings.get_mut(&key) else {
            readings.retain(|_, r| now.duration_since(r.at) < FORGET_AFTER);
            let rates = [0.0; 4];
            readings.insert(
                key,
                Reading {
                    at: now,
                    counts,
                    rates,
                },
            );
            return rates;
        };
        let elapsed = now.duration_since(last.at);
        if elapsed < MIN_INTERVAL {
            return last.rates;
        }
        let seconds = elapsed.as_secs_f64();
        let mut rates = [0.0; 4];
        for (i, rate) in rates.iter_mut().enumerate() {
            // A count only falls when the queue was deleted and declared again: rate 0.
            *rate = counts[i].saturating_sub(last.counts[i]) as f64 / seconds;
        }
        *last = Reading {
            at: now,
            counts,
            rates,
        };
        rates
    }

    /// RabbitMQ's `message_stats` object for a queue.
    pub(crate) fn message_stats(&self, vhost: &str, queue: &str, counts: QueueCounts) -> Value {
        let counts = as_array(counts);
        let rates = self.rates(vhost, queue, counts, Instant::now());
        let mut out = serde_json::Map::new();
        for (i, name) in ["publish", "deliver_get", "ack", "redeliver"]
            .iter()
            .enumerate()
        {
            out.insert((*name).to_owned(), json!(counts[i]));
            out.insert(format!("{name}_details"), json!({ "rate": rates[i] }));
        }
        Value::Object(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_come_from_readings_a_second_or_more_apart() {
        let rates = QueueRates::default();
        let start = Instant::now();
        assert_eq!(rates.rates("/", "q", [10, 0, 0, 0], start), [0.0; 4]);
        // Too soon: the last rate (none yet) stands.
        let soon = start + Duration::from_millis(200);
        assert_eq!(rates.rates("/", "q", [20, 0, 0, 0], soon), [0.0; 4]);
        let later = start + Duration::from_secs(2);
        assert_eq!(
            rates.rates("/", "q", [30, 4, 2, 0], later),
            [10.0, 2.0, 1.0, 0.0]
        );
        // A count that fell (queue re-declared) gives 0, not a negative rate.
        let after = later + Duration::from_secs(1);
        assert_eq!(rates.rates("/", "q", [0, 4, 2, 0], after), [0.0; 4]);
    }
}
