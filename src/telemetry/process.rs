//! The process's own figures, read from `/proc` at scrape time (Linux): CPU time, memory, open
//! and allowed file descriptors, threads and start time, as Prometheus client libraries export
//! them under `process_*`.
//!
//! Invariant: a figure that cannot be read (another OS, a restricted `/proc`) is `None` and its
//! series is left out of the scrape; it is never reported as 0.

use std::path::Path;

/// One reading of the process's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ProcessStats {
    /// User plus system CPU time.
    pub cpu_seconds: Option<f64>,
    pub resident_bytes: Option<u64>,
    pub virtual_bytes: Option<u64>,
    pub open_fds: Option<u64>,
    /// The soft `RLIMIT_NOFILE`.
    pub max_fds: Option<u64>,
    pub threads: Option<u64>,
    /// Start time since the Unix epoch.
    pub start_time_seconds: Option<f64>,
}

/// Clock ticks per second of `/proc/<pid>/stat` times; 100 on every Linux architecture
/// Tributary builds for (`USER_HZ` is fixed in the kernel ABI).
const USER_HZ: f64 = 100.0;

impl ProcessStats {
    /// Reads the current process.
    pub fn read() -> Self {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let fields = stat.as_deref().and_then(stat_fields);
        let field = |index: usize| -> Option<u64> { fields.as_ref()?.get(index)?.parse().ok() };
        // Field numbers of proc(5), counted from 1 at the pid; `fields` starts at field 3.
        let utime = field(14 - 3);
        let stime = field(15 - 3);
        let start_ticks = field(22 - 3);
        let page_size = rustix::param::page_size() as u64;
        Self {
            cpu_seconds: utime
                .zip(stime)
                .map(|(user, system)| (user + system) as f64 / USER_HZ),
            resident_bytes: field(24 - 3).map(|pages| pages * page_size),
            virtual_bytes: field(23 - 3),
            open_fds: count_entries(Path::new("/proc/self/fd")),
            max_fds: rustix::process::getrlimit(rustix::process::Resource::Nofile).current,
            threads: field(20 - 3),
            start_time_seconds: start_ticks
                .zip(boot_time_seconds())
                .map(|(ticks, boot)| boot + ticks as f64 / USER_HZ),
        }
    }
}

/// The fields after the command name (field 3 onwards): the name is in parentheses and may
/// itself contain spaces and parentheses, so the split starts after the last `)`.
fn stat_fields(stat: &str) -> Option<Vec<&str>> {
    let (_, rest) = stat.rsplit_once(')')?;
    Some(rest.split_whitespace().collect())
}

fn count_entries(dir: &Path) -> Option<u64> {
    Some(std::fs::read_dir(dir).ok()?.count() as u64)
}

/// Machine boot time from `/proc/stat`'s `btime` line.
fn boot_time_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|line| line.starts_with("btime "))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Physical memory of the machine (`MemTotal` of `/proc/meminfo`).
pub fn total_memory_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|line| line.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Bytes available to unprivileged users on the filesystem holding `dir`.
pub fn free_disk_bytes(dir: &Path) -> Option<u64> {
    let stats = rustix::fs::statvfs(dir).ok()?;
    Some(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// The machine's host name (`/proc/sys/kernel/hostname`), as RabbitMQ builds node names.
pub fn host_name() -> Option<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    (!name.is_empty()).then(|| name.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_survive_a_command_name_with_spaces_and_parentheses() {
        let stat = "42 (tri (x) y) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 7 0 1234 \
                    9000000 512 18446744073709551615";
        let fields = stat_fields(stat).expect("parsed");
        assert_eq!(fields[0], "S");
        assert_eq!(fields[14 - 3], "250", "utime");
        assert_eq!(fields[15 - 3], "50", "stime");
        assert_eq!(fields[20 - 3], "7", "threads");
        assert_eq!(fields[22 - 3], "1234", "starttime");
        assert_eq!(fields[24 - 3], "512", "rss pages");
    }

    #[test]
    fn this_process_reads_as_running() {
        let stats = ProcessStats::read();
        assert!(
            stats.resident_bytes.is_some_and(|rss| rss > 1 << 20),
            "{stats:?}"
        );
        assert!(stats.open_fds.is_some_and(|fds| fds >= 3), "{stats:?}");
        assert!(
            stats
                .max_fds
                .is_some_and(|max| max >= stats.open_fds.unwrap_or(0))
        );
        assert!(stats.threads.is_some_and(|threads| threads >= 1));
        let start = stats.start_time_seconds.expect("start time");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs_f64();
        assert!(
            start <= now + 1.0 && start > now - 86_400.0 * 365.0,
            "{start} vs {now}"
        );
        assert!(stats.cpu_seconds.is_some_and(|cpu| cpu >= 0.0));
    }
}
