//! The real `tributary` binary for end-to-end tests: a fresh data directory, every listener on
//! an ephemeral port (read back from the "listening" log lines), SIGTERM, and SIGKILL plus
//! restart on the same data. Include it with `#[path = "support/broker.rs"] mod broker;`.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

const BINARY: &str = env!("CARGO_BIN_EXE_tributary");
/// The drain deadline the harness configures, so SIGTERM tests know how long exit may take.
pub(crate) const DRAIN_TIMEOUT_MS: u64 = 2_000;

/// A running broker; killed if a test fails before it exits on its own.
pub(crate) struct TestBroker {
    child: Child,
    pub(crate) spawned: Instant,
    log: mpsc::Receiver<String>,
    seen: Vec<String>,
    data: tempfile::TempDir,
    extra_args: Vec<String>,
    /// Extra environment variables (kept for restarts).
    envs: Vec<(String, String)>,
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

impl TestBroker {
    /// Starts the real binary on a fresh data directory with every listener on port 0.
    pub(crate) fn start() -> Self {
        Self::start_with(&[])
    }

    /// Like [`TestBroker::start`], with extra command-line arguments (kept for restarts).
    pub(crate) fn start_with(extra_args: &[&str]) -> Self {
        Self::start_prepared(extra_args, |_| {})
    }

    /// Like [`TestBroker::start_with`], after `prepare` ran on the fresh directory: it is the
    /// process's working directory (so relative `--config` paths resolve in it) and the data
    /// directory is its `data/` subdirectory ([`data_dir_in`]).
    pub(crate) fn start_prepared(extra_args: &[&str], prepare: impl FnOnce(&Path)) -> Self {
        Self::start_full(extra_args, &[], prepare)
    }

    /// Like [`TestBroker::start_with`], with extra environment variables (kept for restarts).
    pub(crate) fn start_with_env(extra_args: &[&str], envs: &[(&str, &str)]) -> Self {
        Self::start_full(extra_args, envs, |_| {})
    }

    pub(crate) fn start_full(
        extra_args: &[&str],
        envs: &[(&str, &str)],
        prepare: impl FnOnce(&Path),
    ) -> Self {
        let data = tempfile::tempdir().expect("temp dir");
        prepare(data.path());
        let extra_args: Vec<String> = extra_args.iter().map(|a| (*a).to_owned()).collect();
        let envs: Vec<(String, String)> = envs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect();
        let (child, log) = spawn(data.path(), &extra_args, &envs);
        Self {
            child,
            spawned: Instant::now(),
            log,
            seen: Vec::new(),
            data,
            extra_args,
            envs,
        }
    }

    /// SIGKILLs the process (no shutdown at all) and starts it again on the same data.
    pub(crate) fn kill_and_restart(&mut self) {
        self.kill_prepare_restart(|_| {});
    }

    /// Like [`TestBroker::kill_and_restart`], with `prepare` run on the directory (as in
    /// [`TestBroker::start_prepared`]) while the broker is down.
    pub(crate) fn kill_prepare_restart(&mut self, prepare: impl FnOnce(&Path)) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        prepare(self.data.path());
        let (child, log) = spawn(self.data.path(), &self.extra_args, &self.envs);
        self.child = child;
        self.log = log;
        self.seen.clear();
        self.spawned = Instant::now();
    }

    /// The address the listener of `protocol` (a frontend's `name()`, or `http`) bound.
    /// Lines already seen are searched first, so each address may be asked for in any order.
    pub(crate) fn addr(&mut self, protocol: &str) -> SocketAddr {
        let needle = format!("protocol=\"{protocol}\"");
        let earlier = self
            .seen
            .iter()
            .find(|line| line.contains("listening") && line.contains(&needle))
            .cloned();
        let line = earlier.unwrap_or_else(|| {
            self.wait_for_line(&["listening", &needle], Duration::from_secs(10))
        });
        let addr = line
            .split_whitespace()
            .find_map(|field| field.strip_prefix("addr="))
            .unwrap_or_else(|| panic!("no addr in {line}"));
        addr.parse()
            .unwrap_or_else(|err| panic!("bad addr in {line}: {err}"))
    }

    /// Waits for a log line containing every one of `needles` and returns it.
    pub(crate) fn wait_for_line(&mut self, needles: &[&str], within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if needles.iter().all(|needle| line.contains(needle)) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needles:?} within {within:?}; saw:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Reads the log for `period` (every line it prints meanwhile joins [`Self::lines_seen`]).
    pub(crate) fn read_log_for(&mut self, period: Duration) {
        let deadline = Instant::now() + period;
        while let Ok(line) = self
            .log
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            self.seen.push(line);
        }
    }

    /// The log lines read so far (by [`TestBroker::wait_for_line`] and [`TestBroker::addr`]).
    pub(crate) fn lines_seen(&self) -> &[String] {
        &self.seen
    }

    /// This broker's data directory (for `tributary user` runs while it is up).
    pub(crate) fn data_dir(&self) -> std::path::PathBuf {
        data_dir_in(self.data.path())
    }

    pub(crate) fn http_addr(&mut self) -> SocketAddr {
        self.addr("http")
    }

    /// The running broker's process id (benchmarks read its CPU time from `/proc`).
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`HUP`) to the running broker.
    pub(crate) fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{name} failed");
    }

    pub(crate) fn terminate(&mut self) -> (ExitStatus, Duration) {
        let sent = Instant::now();
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        let deadline = sent + Duration::from_millis(DRAIN_TIMEOUT_MS) + Duration::from_secs(3);
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for tributary") {
                return (status, sent.elapsed());
            }
            assert!(
                Instant::now() < deadline,
                "tributary did not exit after SIGTERM"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }
}

/// `GET path` on an HTTP listener (`Connection: close`): the whole response, head and body.
pub(crate) fn http_get(addr: SocketAddr, path: &str) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect to the HTTP listener");
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .expect("request");
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("response");
    response
}

/// A raw TCP connection to `addr` whose reads give up after 10 s (wire-level tests).
pub(crate) fn connect(addr: SocketAddr) -> std::net::TcpStream {
    let stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("read timeout");
    stream
}

/// The data directory a broker started in `root` uses.
pub(crate) fn data_dir_in(root: &Path) -> std::path::PathBuf {
    root.join("data")
}

/// Spawns the binary on `data`, every listener on port 0, logging to a channel of lines.
fn spawn(
    data: &Path,
    extra_args: &[String],
    envs: &[(String, String)],
) -> (Child, mpsc::Receiver<String>) {
    // Port 0 for every listener whose port the test does not fix itself (a fixed port lets a
    // client keep its bootstrap address across a restart).
    let ports = [
        "--http-port",
        "--kafka-port",
        "--amqp-port",
        "--rocketmq-namesrv-port",
        "--rocketmq-broker-port",
    ]
    .into_iter()
    .filter(|flag| !extra_args.iter().any(|arg| arg == flag))
    .flat_map(|flag| [flag, "0"]);
    let mut child = Command::new(BINARY)
        .current_dir(data)
        .arg("serve")
        .args(ports)
        .args(extra_args)
        .env_remove("RUST_LOG")
        .env_remove("TRIBUTARY_CONFIG")
        .env("TRIBUTARY_LOG", "info")
        .env("TRIBUTARY_DATA_DIR", data_dir_in(data))
        .env(
            "TRIBUTARY_SHUTDOWN_DRAIN_TIMEOUT_MS",
            DRAIN_TIMEOUT_MS.to_string(),
        )
        .envs(envs.iter().map(|(name, value)| (name, value)))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tributary");
    let stderr = child.stderr.take().expect("piped stderr");
    let (lines, log) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
    (child, log)
}

/// The name libtest knows a test by, for re-running the current test binary on one test
/// (`--exact`): `module` is the caller's `module_path!()`, whose first segment (the binary's
/// crate) libtest leaves out.
pub(crate) fn harness_test_name(module: &str, test: &str) -> String {
    match module.split_once("::") {
        Some((_, path)) => format!("{path}::{test}"),
        None => test.to_owned(),
    }
}

/// Runs the binary's subcommand `args` (`user add`, `permissions set`, ...) on the data
/// directory under `root` with `stdin` as its input; panics with its stderr when it fails.
pub(crate) fn run_cli(root: &Path, args: &[&str], stdin: &str) {
    let output = cli_output(root, args, &[], stdin);
    assert!(
        output.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs the binary's subcommand `args` as [`run_cli`] does, with `envs` set, and returns what
/// it did (for commands expected to fail).
pub(crate) fn cli_output(
    root: &Path,
    args: &[&str],
    envs: &[(&str, &str)],
    stdin: &str,
) -> std::process::Output {
    let mut child = Command::new(BINARY)
        .args(args)
        .env_remove("TRIBUTARY_CONFIG")
        .env("TRIBUTARY_DATA_DIR", data_dir_in(root))
        .envs(envs.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tributary");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    child.wait_with_output().expect("command finishes")
}
