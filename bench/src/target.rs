//! Where a run sends its messages: a fresh Tributary started for the run (its own temporary
//! data directory, every listener on a port the OS picks, read back from its "listening" log
//! lines; killed when dropped), or a broker at a given address (`--broker kafka=HOST:PORT`,
//! `amqp=amqp://...`, `rocketmq=NAMESRV:PORT`).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::Error;
use crate::driver::Protocol;

/// How long a started Tributary may take to report its listeners.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(30);

/// The target name of the runs against a Tributary started for them.
pub const TRIBUTARY: &str = "Tributary";

/// A broker address given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct External {
    pub protocol: Protocol,
    pub address: String,
    /// Names the broker in results (e.g. `RabbitMQ 3.10.8`); else [`External::label`] uses
    /// the address.
    pub name: Option<String>,
}

impl External {
    /// Parses `[NAME:]PROTOCOL=ADDRESS`: `kafka=HOST:PORT`, `amqp=amqp://...` or
    /// `rocketmq=HOST:PORT`, e.g. `RabbitMQ 3.10.8:amqp=amqp://guest:guest@h:5672/%2f`.
    pub fn parse(text: &str) -> Result<Self, Error> {
        let (left, address) = text.split_once('=').ok_or_else(|| {
            Error::Usage(format!(
                "--broker {text:?}: expected [NAME:]PROTOCOL=ADDRESS, e.g. kafka=127.0.0.1:9092"
            ))
        })?;
        let (name, protocol) = match left.rsplit_once(':') {
            Some((name, protocol)) => (Some(name.trim()), protocol),
            None => (None, left),
        };
        if name.is_some_and(|n| n.is_empty() || n.eq_ignore_ascii_case(TRIBUTARY)) {
            return Err(Error::Usage(format!(
                "--broker {text:?}: the name must be non-empty and not {TRIBUTARY:?} (the fresh broker's)"
            )));
        }
        let protocol = Protocol::parse(protocol)?;
        if address.is_empty() {
            return Err(Error::Usage(format!("--broker {text:?}: empty address")));
        }
        if protocol == Protocol::Amqp
            && !address.starts_with("amqp://")
            && !address.starts_with("amqps://")
        {
            return Err(Error::Usage(format!(
                "--broker {text:?}: AMQP addresses are URIs (amqp://user:pass@host:port/vhost)"
            )));
        }
        Ok(Self {
            protocol,
            address: address.to_owned(),
            name: name.map(str::to_owned),
        })
    }
}

impl External {
    /// The given name, else the address without credentials (it names the run in results and
    /// file names).
    pub fn label(&self) -> String {
        if let Some(name) = &self.name {
            return name.clone();
        }
        match self.address.split_once("://") {
            Some((scheme, rest)) => {
                let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                format!("{scheme}://{host}")
            }
            None => self.address.clone(),
        }
    }
}

/// The `tributary` binary: `explicit`, else next to this executable (or one level up, where
/// cargo puts binaries beside test executables in `deps/`), else on `PATH`.
pub fn find_tributary(explicit: Option<&Path>) -> Result<PathBuf, Error> {
    if let Some(path) = explicit {
        return if path.is_file() {
            Ok(path.to_owned())
        } else {
            Err(Error::Target(format!(
                "--tributary-bin {} does not exist",
                path.display()
            )))
        };
    }
    let exe = std::env::current_exe().map_err(|e| Error::Target(e.to_string()))?;
    let mut dirs: Vec<PathBuf> = exe
        .ancestors()
        .skip(1)
        .take(2)
        .map(Path::to_owned)
        .collect();
    if let Some(path) = std::env::var_os("PATH") {
        dirs.extend(std::env::split_paths(&path));
    }
    dirs.iter()
        .map(|dir| dir.join("tributary"))
        .find(|candidate| candidate.is_file())
        .ok_or_else(|| {
            Error::Target(
                "no `tributary` binary next to tributary-bench or on PATH; build it \
                 (`cargo build --bin tributary`) or pass --tributary-bin"
                    .into(),
            )
        })
}

/// A Tributary started for one run.
#[derive(Debug)]
pub struct Tributary {
    child: Child,
    _dir: tempfile::TempDir,
    pub kafka: String,
    pub amqp: String,
    pub rocketmq_namesrv: String,
}

impl Tributary {
    /// Starts `binary` on a fresh directory; auto-created RocketMQ topics get `queues` queues.
    pub fn start(binary: &Path, queues: u32) -> Result<Self, Error> {
        let dir = tempfile::Builder::new()
            .prefix("tributary-bench-")
            .tempdir()
            .map_err(|e| Error::io(std::env::temp_dir(), e))?;
        let mut child = Command::new(binary)
            .current_dir(dir.path())
            .arg("serve")
            .args(["--http-port", "0", "--kafka-port", "0", "--amqp-port", "0"])
            .args([
                "--rocketmq-namesrv-port",
                "0",
                "--rocketmq-broker-port",
                "0",
            ])
            .env_remove("RUST_LOG")
            .env_remove("TRIBUTARY_CONFIG")
            .env("TRIBUTARY_LOG", "info")
            .env("TRIBUTARY_DATA_DIR", dir.path().join("data"))
            .env(
                "TRIBUTARY_ROCKETMQ_DEFAULT_QUEUES",
                queues.max(1).to_string(),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| Error::Target(format!("cannot start {}: {e}", binary.display())))?;
        let stderr = child.stderr.take().expect("stderr is piped");
        let (lines, log) = mpsc::channel();
        // Reads the log to its end so the broker never blocks on a full pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = lines.send(line);
            }
        });
        let deadline = Instant::now() + STARTUP_TIMEOUT;
        let (mut kafka, mut amqp, mut namesrv) = (None, None, None);
        let mut seen = Vec::new();
        while kafka.is_none() || amqp.is_none() || namesrv.is_none() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = log.recv_timeout(left) else {
                let _ = child.kill();
                return Err(Error::Target(format!(
                    "Tributary did not report its listeners within {STARTUP_TIMEOUT:?}; its log:\n{}",
                    seen.join("\n")
                )));
            };
            if line.contains("listening") {
                let addr = line
                    .split_whitespace()
                    .find_map(|f| f.strip_prefix("addr="))
                    .map(str::to_owned);
                if line.contains("protocol=\"kafka\"") {
                    kafka = addr;
                } else if line.contains("protocol=\"amqp\"") {
                    amqp = addr;
                } else if line.contains("protocol=\"rocketmq-namesrv\"") {
                    namesrv = addr;
                }
            }
            seen.push(line);
        }
        Ok(Self {
            child,
            _dir: dir,
            kafka: kafka.unwrap_or_default(),
            amqp: format!("amqp://guest:guest@{}/%2f", amqp.unwrap_or_default()),
            rocketmq_namesrv: namesrv.unwrap_or_default(),
        })
    }

    /// The address a client of `protocol` connects to.
    pub fn address(&self, protocol: Protocol) -> &str {
        match protocol {
            Protocol::Kafka => &self.kafka,
            Protocol::Amqp => &self.amqp,
            Protocol::RocketMq => &self.rocketmq_namesrv,
        }
    }
}

impl Drop for Tributary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broker_flags_parse_and_bad_ones_are_refused() {
        assert_eq!(
            External::parse("kafka=127.0.0.1:9092").unwrap(),
            External {
                protocol: Protocol::Kafka,
                address: "127.0.0.1:9092".into(),
                name: None,
            }
        );
        let named = External::parse("RabbitMQ 3.10.8:amqp=amqp://u:secret@h:5672/%2f").unwrap();
        assert_eq!(
            (named.protocol, named.label().as_str()),
            (Protocol::Amqp, "RabbitMQ 3.10.8")
        );
        assert_eq!(
            External::parse("AMQP=amqp://g:g@h:5672/%2f")
                .unwrap()
                .protocol,
            Protocol::Amqp
        );
        assert_eq!(
            External::parse("rocketmq=h:9876").unwrap().protocol,
            Protocol::RocketMq
        );
        assert_eq!(
            External::parse("amqp=amqp://u:secret@h:5672/%2f")
                .unwrap()
                .label(),
            "amqp://h:5672/%2f"
        );
        for bad in [
            "kafka",
            "mqtt=h:1",
            "kafka=",
            "amqp=h:5672",
            ":kafka=h:1",
            "tributary:kafka=h:1",
            "x:mqtt=h:1",
        ] {
            assert!(
                matches!(External::parse(bad), Err(Error::Usage(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn a_missing_binary_is_a_clear_error() {
        let err = find_tributary(Some(Path::new("/tmp/h19-no-such-binary"))).unwrap_err();
        assert!(err.to_string().contains("does not exist"));
    }
}
