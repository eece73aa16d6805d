//! Delayed delivery: RocketMQ's delay levels and the 5.x timer properties.
//!
//! A message that asks for a delay is not appended at once: the frontend hands its batch to the
//! engine [`Scheduler`](tributary_api::Scheduler), which makes it durable before the send is
//! answered and appends it to the real topic and queue when due, also after a restart.
//!
//! Which delay applies, first match wins (as RocketMQ's `SendMessageProcessor` checks them):
//! - `TIMER_DELIVER_MS` — an absolute delivery time in ms since the epoch;
//! - `TIMER_DELAY_SEC` / `TIMER_DELAY_MS` — a delay from now;
//! - `DELAY` — a 1-based delay level; levels above the last are clamped to it, 0 means none.
//!
//! Invariants: a level table is never empty and every level is a positive duration; timer
//! delays are bounded by [`MAX_TIMER_DELAY_MS`] (RocketMQ's `timerMaxDelaySec`, 3 days).

use std::fmt;
use std::str::FromStr;

/// RocketMQ's `messageDelayLevel` default: 18 levels.
pub const DEFAULT_DELAY_LEVELS: &str = "1s 5s 10s 30s 1m 2m 3m 4m 5m 6m 7m 8m 9m 10m 20m 30m 1h 2h";
/// The longest timer delay accepted.
pub const MAX_TIMER_DELAY_MS: i64 = 3 * 24 * 3600 * 1000;

pub const PROPERTY_DELAY: &str = "DELAY";
pub const PROPERTY_TIMER_DELIVER_MS: &str = "TIMER_DELIVER_MS";
pub const PROPERTY_TIMER_DELAY_SEC: &str = "TIMER_DELAY_SEC";
pub const PROPERTY_TIMER_DELAY_MS: &str = "TIMER_DELAY_MS";
pub const PROPERTY_REAL_TOPIC: &str = "REAL_TOPIC";
pub const PROPERTY_REAL_QUEUE_ID: &str = "REAL_QID";

/// The delay level table, level 1 first, in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DelayLevels(Vec<i64>);

/// Why a delay level table does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid delay level `{0}`: expected a positive number with unit ms, s, m, h or d")]
pub struct DelayLevelsError(String);

impl FromStr for DelayLevels {
    type Err = DelayLevelsError;

    /// Parses RocketMQ's syntax, `"1s 5s 10s 30s 1m ..."`, plus `ms` for tests.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let levels = text
            .split_whitespace()
            .map(|level| parse_duration_ms(level).ok_or_else(|| DelayLevelsError(level.to_owned())))
            .collect::<Result<Vec<_>, _>>()?;
        if levels.is_empty() {
            return Err(DelayLevelsError(text.to_owned()));
        }
        Ok(Self(levels))
    }
}

impl Default for DelayLevels {
    fn default() -> Self {
        DEFAULT_DELAY_LEVELS
            .parse()
            .expect("the default delay levels parse")
    }
}

impl fmt::Display for DelayLevels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for ms in &self.0 {
            if !first {
                f.write_str(" ")?;
            }
            first = false;
            write!(f, "{ms}ms")?;
        }
        Ok(())
    }
}

fn parse_duration_ms(text: &str) -> Option<i64> {
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number.parse().ok()?;
    let scale = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return None,
    };
    let ms = number.checked_mul(scale)?;
    (ms > 0).then_some(ms)
}

impl DelayLevels {
    /// How many levels there are (18 by default).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Always false: a table has at least one level.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The delay of a 1-based `level`, clamped to the last level; `None` for levels below 1.
    pub fn delay_ms(&self, level: i32) -> Option<i64> {
        let index = usize::try_from(level).ok()?.checked_sub(1)?;
        Some(self.0[index.min(self.0.len() - 1)])
    }
}

/// Why a message's delay properties are refused (answered MESSAGE_ILLEGAL).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DelayError {
    #[error("property {name} has an invalid value `{value}`")]
    Invalid { name: &'static str, value: String },
    #[error("the timer delay of {0} ms exceeds the maximum of {MAX_TIMER_DELAY_MS} ms")]
    TooLong(i64),
}

/// When a message with `property` lookups should be delivered, or `None` to deliver now.
pub fn due_time<'a>(
    levels: &DelayLevels,
    now_ms: i64,
    property: impl Fn(&str) -> Option<&'a str>,
) -> Result<Option<i64>, DelayError> {
    let number = |name: &'static str| -> Result<Option<i64>, DelayError> {
        property(name)
            .map(str::trim)
            .filter(|text| !text.is_empty())
            .map(|text| {
                text.parse::<i64>().map_err(|_| DelayError::Invalid {
                    name,
                    value: text.to_owned(),
                })
            })
            .transpose()
    };
    let timer = if let Some(at) = number(PROPERTY_TIMER_DELIVER_MS)? {
        Some(at.saturating_sub(now_ms))
    } else if let Some(seconds) = number(PROPERTY_TIMER_DELAY_SEC)? {
        Some(seconds.saturating_mul(1_000))
    } else {
        number(PROPERTY_TIMER_DELAY_MS)?
    };
    if let Some(delay) = timer {
        if delay > MAX_TIMER_DELAY_MS {
            return Err(DelayError::TooLong(delay));
        }
        return Ok((delay > 0).then(|| now_ms + delay));
    }
    let Some(level) = number(PROPERTY_DELAY)? else {
        return Ok(None);
    };
    let level = i32::try_from(level).map_err(|_| DelayError::Invalid {
        name: PROPERTY_DELAY,
        value: level.to_string(),
    })?;
    Ok(levels.delay_ms(level).map(|delay| now_ms + delay))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn props<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<&'a str> {
        move |name| pairs.iter().find(|(n, _)| *n == name).map(|(_, v)| *v)
    }

    #[test]
    fn the_default_table_has_rocketmqs_eighteen_levels() {
        let levels = DelayLevels::default();
        assert_eq!(levels.len(), 18);
        assert_eq!(levels.delay_ms(1), Some(1_000));
        assert_eq!(levels.delay_ms(3), Some(10_000));
        assert_eq!(levels.delay_ms(5), Some(60_000));
        assert_eq!(levels.delay_ms(18), Some(7_200_000));
        assert_eq!(
            levels.delay_ms(40),
            Some(7_200_000),
            "clamped to the last level"
        );
        assert_eq!(levels.delay_ms(0), None);
        assert_eq!(levels.delay_ms(-1), None);
    }

    #[test]
    fn tables_parse_units_and_refuse_garbage() {
        let levels: DelayLevels = "250ms 2s 1h 1d".parse().unwrap();
        assert_eq!(levels.0, [250, 2_000, 3_600_000, 86_400_000]);
        assert_eq!(levels.to_string(), "250ms 2000ms 3600000ms 86400000ms");
        for bad in ["", "  ", "1", "s", "1x", "0s", "-1s", "1.5s"] {
            assert!(bad.parse::<DelayLevels>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn timers_win_over_levels_and_are_bounded() {
        let levels = DelayLevels::default();
        let now = 1_000_000;
        assert_eq!(due_time(&levels, now, props(&[])), Ok(None));
        assert_eq!(
            due_time(&levels, now, props(&[("DELAY", "3")])),
            Ok(Some(now + 10_000))
        );
        assert_eq!(due_time(&levels, now, props(&[("DELAY", "0")])), Ok(None));
        assert_eq!(
            due_time(
                &levels,
                now,
                props(&[("DELAY", "3"), ("TIMER_DELAY_MS", "1500")])
            ),
            Ok(Some(now + 1_500))
        );
        assert_eq!(
            due_time(&levels, now, props(&[("TIMER_DELAY_SEC", "2")])),
            Ok(Some(now + 2_000))
        );
        assert_eq!(
            due_time(&levels, now, props(&[("TIMER_DELIVER_MS", "1005000")])),
            Ok(Some(now + 5_000))
        );
        assert_eq!(
            due_time(&levels, now, props(&[("TIMER_DELIVER_MS", "10")])),
            Ok(None),
            "a time in the past delivers now"
        );
        assert!(matches!(
            due_time(&levels, now, props(&[("TIMER_DELAY_SEC", "999999")])),
            Err(DelayError::TooLong(_))
        ));
        assert!(matches!(
            due_time(&levels, now, props(&[("DELAY", "abc")])),
            Err(DelayError::Invalid { .. })
        ));
    }
}
