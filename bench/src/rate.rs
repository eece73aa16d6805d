//! The publish rate of a workload with `producerRate: 0`: OMB's "maximum sustainable rate"
//! discovery, or (with `--unthrottled`) no limit at all.
//!
//! OMB's `WorkloadGenerator` starts such a run at [`START_RATE`] msg/s and lets a background
//! controller move the target every [`CONTROL_PERIOD`] for the whole run, warm-up included,
//! so that the consumers keep up: the published "max rate" figures of OMB are rates the
//! consumers sustained. [`RateController`] has OMB's rules (additive increase by a ramping
//! factor that doubles while things keep up, multiplicative decrease that halves it):
//!
//! - receive backlog (acknowledged sends not yet consumed, per subscription) above
//!   [`BACKLOG_LIMIT`]: back off to the lower of the period's consume rate and the rate that
//!   would have worked the backlog off within the period;
//! - else publish backlog (sends the target asked for that were not acknowledged in the
//!   period) above [`BACKLOG_LIMIT`]: back off the same way, from the publish rate;
//! - else raise the rate by the ramping factor.
//!
//! Departures from OMB, each because OMB's rule would break the run: the receive backlog
//! counts per subscription (OMB subtracts every subscription's receipts from one copy of the
//! sends, so with two subscriptions it never backs off), and the rate never drops below
//! [`MIN_RATE`] (OMB's can reach 0, and from 0 its multiplicative increase stays at 0).
//!
//! Invariant: [`RateController::next_rate`] returns a finite rate >= [`MIN_RATE`].

use std::time::Duration;

/// Where a discovery starts, msg/s over all producers (OMB's fixed value).
pub const START_RATE: f64 = 10_000.0;
/// How often the controller moves the rate (OMB's `controlPeriodMillis`).
pub const CONTROL_PERIOD: Duration = Duration::from_secs(3);
/// Messages of backlog (receive or publish) the controller tolerates (OMB's
/// `PUBLISH_BACKLOG_LIMIT` and `RECEIVE_BACKLOG_LIMIT` defaults).
pub const BACKLOG_LIMIT: u64 = 1_000;
/// OMB's `MIN_RAMPING_FACTOR` and `MAX_RAMPING_FACTOR` defaults.
const MIN_RAMPING: f64 = 0.01;
const MAX_RAMPING: f64 = 1.0;
/// The lowest target, msg/s (see the module doc).
pub const MIN_RATE: f64 = 100.0;

/// How a run's producers are paced; the JSON's `producerRateMode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateMode {
    /// `producerRate` > 0: that rate throughout.
    Fixed,
    /// `producerRate` 0: OMB's discovery ([`RateController`]).
    MaxSustainable,
    /// `producerRate` 0 with `--unthrottled`: as fast as acknowledgements allow
    /// (`--max-in-flight` unacknowledged sends per producer), consumers or not.
    Unthrottled,
}

impl RateMode {
    pub fn name(self) -> &'static str {
        match self {
            RateMode::Fixed => "fixed",
            RateMode::MaxSustainable => "max-sustainable",
            RateMode::Unthrottled => "unthrottled",
        }
    }
}

/// What the controller decided, for the progress line and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Raised,
    /// Consumers fell behind.
    ReceiveBacklog,
    /// The broker did not acknowledge the target rate.
    PublishBacklog,
}

/// OMB's AIMD rate controller (see the module doc). Feed it the running totals every
/// control period.
#[derive(Debug, Clone)]
pub struct RateController {
    ramping: f64,
    previous_published: u64,
    previous_received: u64,
}

impl Default for RateController {
    fn default() -> Self {
        Self {
            ramping: MAX_RAMPING,
            previous_published: 0,
            previous_received: 0,
        }
    }
}

impl RateController {
    /// Starts from totals already counted (sends and receipts before the controller runs
    /// belong to no period of it).
    pub fn starting_at(published: u64, received: u64) -> Self {
        Self {
            previous_published: published,
            previous_received: received,
            ..Self::default()
        }
    }

    /// The next target rate, msg/s, after a period of `period` at `rate`. `total_published`:
    /// acknowledged sends so far; `total_received`: receipts so far divided by the
    /// subscriptions each message goes to (so both count messages once).
    pub fn next_rate(
        &mut self,
        rate: f64,
        period: Duration,
        total_published: u64,
        total_received: u64,
    ) -> (f64, Decision) {
        let secs = period.as_secs_f64().max(1e-3);
        let expected = (rate * secs) as u64;
        let published = total_published.saturating_sub(self.previous_published);
        let received = total_received.saturating_sub(self.previous_received);
        self.previous_published = total_published;
        self.previous_received = total_received;

        let receive_backlog = total_published.saturating_sub(total_received);
        let publish_backlog = expected.saturating_sub(published);
        let (next, decision) = if receive_backlog > BACKLOG_LIMIT {
            (
                self.back_off(secs, received, expected, receive_backlog),
                Decision::ReceiveBacklog,
            )
        } else if publish_backlog > BACKLOG_LIMIT {
            (
                self.back_off(secs, published, expected, publish_backlog),
                Decision::PublishBacklog,
            )
        } else {
            let next = rate + rate * self.ramping;
            self.ramping = (self.ramping * 2.0).min(MAX_RAMPING);
            (next, Decision::Raised)
        };
        let next = if next.is_finite() { next } else { MIN_RATE };
        (next.max(MIN_RATE), decision)
    }

    /// The lower of what was achieved and what would have drained `backlog` in one period.
    fn back_off(&mut self, secs: f64, actual: u64, expected: u64, backlog: u64) -> f64 {
        self.ramping = (self.ramping / 2.0).max(MIN_RAMPING);
        let drained = expected.saturating_sub(backlog) as f64 / secs;
        (actual as f64 / secs).min(drained)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PERIOD: Duration = CONTROL_PERIOD;

    /// Runs the controller over a fake system whose consumers take at most `consume_max`
    /// msg/s and whose broker acknowledges at most `publish_max`; returns the targets.
    fn simulate(consume_max: f64, publish_max: f64, periods: usize) -> Vec<(f64, Decision)> {
        let mut controller = RateController::default();
        let (mut rate, mut published, mut received) = (START_RATE, 0u64, 0u64);
        let secs = PERIOD.as_secs_f64();
        let mut out = Vec::new();
        for _ in 0..periods {
            published += (rate.min(publish_max) * secs) as u64;
            let can_receive = (consume_max * secs) as u64;
            received = published.min(received + can_receive);
            let (next, decision) = controller.next_rate(rate, PERIOD, published, received);
            out.push((next, decision));
            rate = next;
        }
        out
    }

    #[test]
    fn raises_while_consumers_keep_up_with_a_doubling_ramp() {
        let mut controller = RateController::default();
        // 3 s at 10k msg/s, all sent and all received: +100 % (the ramp starts at its max).
        let (rate, decision) = controller.next_rate(10_000.0, PERIOD, 30_000, 30_000);
        assert_eq!(decision, Decision::Raised);
        assert!((rate - 20_000.0).abs() < 1e-6, "{rate}");
        // A small backlog (under the limit) still raises.
        let (rate, decision) = controller.next_rate(rate, PERIOD, 90_000, 89_500);
        assert_eq!(decision, Decision::Raised);
        assert!((rate - 40_000.0).abs() < 1e-6, "{rate}");
    }

    #[test]
    fn backs_off_when_the_receive_backlog_grows() {
        let mut controller = RateController::default();
        let _ = controller.next_rate(10_000.0, PERIOD, 30_000, 30_000);
        // At 20k msg/s the consumers took only 12k msg/s: 24k backlog after the period.
        let (rate, decision) = controller.next_rate(20_000.0, PERIOD, 90_000, 66_000);
        assert_eq!(decision, Decision::ReceiveBacklog);
        // min(consumed 36k / 3 s = 12k, (60k expected - 24k backlog) / 3 s = 12k)
        assert!((rate - 12_000.0).abs() < 1e-6, "{rate}");
        // The ramp halved: the next raise is +50 %, not +100 %.
        let (next, decision) = controller.next_rate(rate, PERIOD, 126_000, 126_000);
        assert_eq!(decision, Decision::Raised);
        assert!((next - 18_000.0).abs() < 1e-6, "{next}");
    }

    #[test]
    fn backs_off_to_the_acknowledged_rate_when_the_broker_lags() {
        let mut controller = RateController::default();
        // Asked for 10k msg/s, 21k acknowledged in 3 s (7k msg/s), consumers keep up.
        let (rate, decision) = controller.next_rate(10_000.0, PERIOD, 21_000, 21_000);
        assert_eq!(decision, Decision::PublishBacklog);
        assert!((rate - 7_000.0).abs() < 1e-6, "{rate}");
    }

    #[test]
    fn a_huge_backlog_floors_at_the_minimum_rate_and_recovers() {
        let mut controller = RateController::default();
        let (rate, decision) = controller.next_rate(10_000.0, PERIOD, 30_000, 0);
        assert_eq!(decision, Decision::ReceiveBacklog);
        assert_eq!(rate, MIN_RATE, "OMB would reach 0 and stay there");
        let (rate, decision) = controller.next_rate(rate, PERIOD, 30_300, 30_300);
        assert_eq!(decision, Decision::Raised);
        assert!(rate > MIN_RATE);
    }

    #[test]
    fn settles_near_the_consumers_capacity() {
        // Consumers take 25k msg/s, the broker acknowledges up to 80k msg/s.
        let targets = simulate(25_000.0, 80_000.0, 60);
        assert!(
            targets[..5].iter().any(|(r, _)| *r > 25_000.0),
            "it probes above the capacity: {targets:?}"
        );
        assert!(
            targets.iter().any(|(_, d)| *d == Decision::ReceiveBacklog),
            "it backs off on the receive backlog"
        );
        let tail = &targets[30..];
        let mean = tail.iter().map(|(r, _)| r).sum::<f64>() / tail.len() as f64;
        assert!(
            (12_500.0..=27_500.0).contains(&mean),
            "mean target over the last periods {mean}: {targets:?}"
        );
        // Never sustained far above what the consumers take.
        assert!(tail.iter().all(|(r, _)| *r < 25_000.0 * 2.0), "{tail:?}");
    }

    #[test]
    fn the_broker_limit_binds_when_consumers_are_faster() {
        let targets = simulate(1e9, 30_000.0, 60);
        assert!(targets.iter().any(|(_, d)| *d == Decision::PublishBacklog));
        // The target hovers around the broker's limit (OMB's controller oscillates; what is
        // sent is the lower of the target and the limit).
        let tail = &targets[30..];
        assert!(
            tail.iter().all(|(r, _)| (15_000.0..=60_000.0).contains(r)),
            "{tail:?}"
        );
        let sent = tail.iter().map(|(r, _)| r.min(30_000.0)).sum::<f64>() / tail.len() as f64;
        assert!(sent >= 27_000.0, "{sent}: {tail:?}");
    }
}
