//! CPU time of processes, read from `/proc`, for benchmarks that report CPU per message.
//!
//! Linux only (as the benches are). Clock ticks are USER_HZ = 100 on every architecture this
//! runs on, so figures have a 10 ms grain: measure over seconds, not milliseconds.

use std::time::Duration;

/// CPU time (user + system, all threads) a process has used so far, from `/proc/<pid>/stat`.
pub(crate) fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc stat");
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat[stat.rfind(')').expect("stat format") + 2..]
        .split(' ')
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

/// The CPU time of a broker process and of this (client) process at the start of a run.
pub(crate) struct CpuMark {
    broker_pid: u32,
    broker: Duration,
    client: Duration,
}

impl CpuMark {
    pub(crate) fn now(broker_pid: u32) -> Self {
        Self {
            broker_pid,
            broker: cpu_time(broker_pid),
            client: cpu_time(std::process::id()),
        }
    }

    /// Microseconds of CPU per message since the mark: (broker, client).
    pub(crate) fn per_message_us(&self, messages: usize) -> (f64, f64) {
        let per_message = |spent: Duration| spent.as_secs_f64() * 1e6 / messages as f64;
        (
            per_message(cpu_time(self.broker_pid) - self.broker),
            per_message(cpu_time(std::process::id()) - self.client),
        )
    }
}

/// The process that listens on TCP `port` (IPv4 or IPv6), found through the socket's inode in
/// `/proc/net/tcp{,6}` and the `/proc/<pid>/fd` links; None when no process of ours is seen.
pub(crate) fn listener_pid(port: u16) -> Option<u32> {
    let inode = ["/proc/net/tcp", "/proc/net/tcp6"]
        .iter()
        .filter_map(|table| std::fs::read_to_string(table).ok())
        .flat_map(|table| {
            table
                .lines()
                .skip(1)
                .filter_map(|line| listening_inode(line, port))
                .collect::<Vec<_>>()
        })
        .next()?;
    let wanted = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            if std::fs::read_link(fd.path())
                .is_ok_and(|target| target.as_os_str() == wanted.as_str())
            {
                return Some(pid);
            }
        }
    }
    None
}

/// The inode of a `/proc/net/tcp` row that listens (state 0A) on `port`.
fn listening_inode(line: &str, port: u16) -> Option<u64> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let local_port = fields.get(1)?.rsplit(':').next()?;
    let listening = *fields.get(3)? == "0A";
    (listening && u16::from_str_radix(local_port, 16).ok()? == port)
        .then(|| fields.get(9)?.parse().ok())
        .flatten()
}
