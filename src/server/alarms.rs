//! Resource alarms, RabbitMQ's way: the broker's resident memory against
//! `amqp.memory_high_watermark` and the free space of the data directory's filesystem against
//! `amqp.disk_free_limit`, measured every `amqp.alarm_check_interval_ms`. The AMQP frontend
//! blocks publishers while either alarm is on ([`tributary_amqp::alarm`]).
//!
//! On SIGHUP the limits are read again from the broker's configuration sources (when the
//! binary passed a reload function), so an operator can raise or lower them without a restart
//! (as `rabbitmqctl set_disk_free_limit` does).
//!
//! Invariants: a limit of 0 never raises its alarm; a figure that cannot be read (no
//! `/proc/self/status`, a failed `statvfs`) never raises one either, and is logged once per
//! change; every alarm change is logged.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};
use tributary_amqp::alarm::Alarms;

use crate::config::{Config, ConfigError};

/// Reads the configuration again from the sources the broker started with.
pub type Reload = Arc<dyn Fn() -> Result<Config, ConfigError> + Send + Sync>;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Limits {
    memory_high_watermark: u64,
    disk_free_limit: u64,
    interval: Duration,
    data_dir: PathBuf,
}

impl Limits {
    fn of(config: &Config) -> Self {
        Self {
            memory_high_watermark: config.amqp.memory_high_watermark,
            disk_free_limit: config.amqp.disk_free_limit,
            interval: Duration::from_millis(config.amqp.alarm_check_interval_ms),
            data_dir: config.data_dir.clone(),
        }
    }

    fn measure(&self) -> Alarms {
        let memory = self.memory_high_watermark > 0
            && resident_bytes().is_some_and(|used| used > self.memory_high_watermark);
        let disk = self.disk_free_limit > 0
            && free_bytes(&self.data_dir).is_some_and(|free| free < self.disk_free_limit);
        Alarms { memory, disk }
    }
}

/// The process's resident set size, from `/proc/self/status` (Linux).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes available to the broker on the filesystem holding `dir`.
fn free_bytes(dir: &Path) -> Option<u64> {
    let stats = rustix::fs::statvfs(dir).ok()?;
    Some(stats.f_bavail.saturating_mul(stats.f_frsize))
}

fn log_change(before: Alarms, after: Alarms, limits: &Limits) {
    if before.memory != after.memory {
        match after.memory {
            true => warn!(
                watermark = limits.memory_high_watermark,
                resident = resident_bytes(),
                "memory alarm set: blocking AMQP publishers"
            ),
            false => info!("memory alarm cleared"),
        }
    }
    if before.disk != after.disk {
        match after.disk {
            true => warn!(
                limit = limits.disk_free_limit,
                free = free_bytes(&limits.data_dir),
                data_dir = %limits.data_dir.display(),
                "disk alarm set: blocking AMQP publishers"
            ),
            false => info!("disk alarm cleared"),
        }
    }
}

/// Measures once now, then every interval on a task; the receiver sees every change.
pub fn spawn_monitor(config: &Config, reload: Option<Reload>) -> watch::Receiver<Alarms> {
    let mut limits = Limits::of(config);
    let first = limits.measure();
    log_change(Alarms::default(), first, &limits);
    let (sender, receiver) = watch::channel(first);
    let mut hangups = reload.as_ref().and_then(|_| {
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
            .map_err(|error| warn!(%error, "cannot listen for SIGHUP; alarm limits stay fixed"))
            .ok()
    });
    tokio::spawn(async move {
        loop {
            let hangup = async {
                match hangups.as_mut() {
                    Some(signal) => signal.recv().await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                () = tokio::time::sleep(limits.interval) => {}
                Some(()) = hangup => match reload.as_ref().map(|reload| reload()) {
                    Some(Ok(config)) => {
                        limits = Limits::of(&config);
                        info!(
                            memory_high_watermark = limits.memory_high_watermark,
                            disk_free_limit = limits.disk_free_limit,
                            "SIGHUP: alarm limits reloaded"
                        );
                    }
                    Some(Err(error)) => {
                        warn!(error = %error, "SIGHUP: configuration invalid; limits unchanged")
                    }
                    None => {}
                },
            }
            let now = limits.measure();
            let before = *sender.borrow();
            if now != before {
                sender.send_replace(now);
                log_change(before, now, &limits);
            }
        }
    });
    receiver
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_compare_with_real_figures() {
        let dir = tempfile::tempdir().unwrap();
        assert!(resident_bytes().is_some_and(|bytes| bytes > 0));
        let free = free_bytes(dir.path()).unwrap();
        let limits = |memory, disk| Limits {
            memory_high_watermark: memory,
            disk_free_limit: disk,
            interval: Duration::from_secs(1),
            data_dir: dir.path().to_owned(),
        };
        assert_eq!(limits(0, 0).measure(), Alarms::default());
        let both = limits(1, free.saturating_mul(4).max(u64::MAX / 2)).measure();
        assert!(both.memory && both.disk);
        assert_eq!(limits(u64::MAX, 1).measure(), Alarms::default());
    }
}
