//! The RocketMQ peer for the bench: `rocketmq-namesrv-rust` + `rocketmq-broker-rust` 1.0.0 from
//! the crate registry, on free loopback ports in a temp dir (config, logs and store inside it).

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::STARTUP_TIMEOUT;

/// `rocketmq-namesrv-rust` + `rocketmq-broker-rust` on loopback ports in a temp dir.
pub(crate) struct PeerBroker {
    pub(crate) namesrv_process: Child,
    pub(crate) broker_process: Child,
    pub(crate) namesrv: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for PeerBroker {
    fn drop(&mut self) {
        for child in [&mut self.broker_process, &mut self.namesrv_process] {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn peer_bin_dir() -> PathBuf {
    std::env::var_os("ROCKETMQ_PEER_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").expect("HOME")).join(".cargo/bin")
        })
}

/// A loopback port that was free a moment ago, with `port - 2` (the broker's fast remoting
/// port) and `port + 1` free too.
fn free_port_triple() -> u16 {
    let free = |port: u16| TcpListener::bind(("127.0.0.1", port)).is_ok();
    for _ in 0..200 {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind port 0")
            .port();
        if port > 1024 && port < 65000 && free(port - 2) && free(port + 1) {
            return port;
        }
    }
    panic!("no free loopback port triple found");
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind port 0")
        .port()
}

fn wait_for_listener(addr: SocketAddr, child: &mut Child, what: &str) {
    let deadline = Instant::now() + STARTUP_TIMEOUT;
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited during start-up: {status}");
        }
        assert!(Instant::now() < deadline, "{what} not listening on {addr}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl PeerBroker {
    pub(crate) fn start() -> Self {
        let bin = peer_bin_dir();
        let (namesrv_bin, broker_bin) = (
            bin.join("rocketmq-namesrv-rust"),
            bin.join("rocketmq-broker-rust"),
        );
        assert!(
            namesrv_bin.exists() && broker_bin.exists(),
            "peer binaries missing in {} (cargo install rocketmq-namesrv rocketmq-broker, or \
             set ROCKETMQ_PEER_BIN, or pass tributary-only)",
            bin.display()
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let namesrv_port = free_port();
        let broker_port = free_port_triple();
        let ha_port = broker_port + 1;
        let store = dir.path().join("store");
        let config = format!(
            "[broker]\nnamesrvAddr = \"127.0.0.1:{namesrv_port}\"\nbrokerIp1 = \"127.0.0.1\"\n\
             listenPort = {broker_port}\nstorePathRootDir = \"{store}\"\n\
             [broker.brokerServerConfig]\nbindAddress = \"127.0.0.1\"\n\
             [broker.brokerIdentity]\nbrokerName = \"broker-a\"\n\
             brokerClusterName = \"DefaultCluster\"\nbrokerId = 0\n\
             [store]\nstoreType = \"LocalFile\"\nbrokerRole = \"ASYNC_MASTER\"\n\
             storePathRootDir = \"{store}\"\nhaListenAddress = \"127.0.0.1\"\n\
             haListenPort = {ha_port}\n",
            store = store.display()
        );
        let config_path = dir.path().join("broker.toml");
        std::fs::write(&config_path, config).expect("write broker.toml");
        let log = |name: &str| {
            std::fs::File::create(dir.path().join(name)).expect("create peer log file")
        };
        // HOME and ROCKETMQ_HOME (without which the name server exits 70) point into the temp dir,
        // so the peer's default log and store paths stay there.
        let mut namesrv_process = Command::new(namesrv_bin)
            .args(["--listenPort", &namesrv_port.to_string()])
            .args(["--bindAddress", "127.0.0.1"])
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .env("ROCKETMQ_HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(log("namesrv.out"))
            .stderr(log("namesrv.err"))
            .spawn()
            .expect("spawn rocketmq-namesrv-rust");
        let namesrv = SocketAddr::from(([127, 0, 0, 1], namesrv_port));
        wait_for_listener(namesrv, &mut namesrv_process, "rocketmq-namesrv-rust");
        let mut broker_process = Command::new(broker_bin)
            .arg("-c")
            .arg(&config_path)
            .current_dir(dir.path())
            .env("HOME", dir.path())
            .env("ROCKETMQ_HOME", dir.path())
            .stdin(Stdio::null())
            .stdout(log("broker.out"))
            .stderr(log("broker.err"))
            .spawn()
            .expect("spawn rocketmq-broker-rust");
        let broker_addr = SocketAddr::from(([127, 0, 0, 1], broker_port));
        wait_for_listener(broker_addr, &mut broker_process, "rocketmq-broker-rust");
        Self {
            namesrv_process,
            broker_process,
            namesrv,
            _dir: dir,
        }
    }
}
