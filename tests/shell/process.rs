//! The real `tributary` binary as an operator runs it: start-up time, `/health`, `/metrics`
//! through the in-process exposition check, SIGTERM, `tributary config`, and configuration errors.

use crate::broker;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::thread;
use std::time::Duration;

use broker::{DRAIN_TIMEOUT_MS, TestBroker as Broker};
use tributary::telemetry::exposition;

const BINARY: &str = env!("CARGO_BIN_EXE_tributary");

/// One HTTP/1.1 request; returns status, headers (lowercased names) and body.
fn http_get(addr: SocketAddr, method: &str, path: &str) -> std::io::Result<(u16, String, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = String::new();
    stream.read_to_string(&mut response)?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    Ok((status, head.to_ascii_lowercase(), body.to_owned()))
}

#[test]
fn serves_health_and_clean_metrics_then_exits_zero_on_sigterm() {
    let mut broker = Broker::start();
    let addr = broker.http_addr();

    let healthy_after = loop {
        match http_get(addr, "GET", "/health") {
            Ok((200, _, body)) => {
                assert_eq!(body, "ok\n");
                break broker.spawned.elapsed();
            }
            Ok((status, _, body)) => panic!("/health answered {status}: {body}"),
            Err(_) if broker.spawned.elapsed() < Duration::from_secs(5) => {
                thread::sleep(Duration::from_millis(5))
            }
            Err(err) => panic!("/health never answered: {err}"),
        }
    };
    assert!(
        healthy_after < Duration::from_secs(1),
        "first /health 200 took {healthy_after:?} after spawn"
    );
    broker.wait_for_line(&["tributary is serving"], Duration::from_secs(1));

    let (status, head, exposition) = http_get(addr, "GET", "/metrics").expect("scrape");
    assert_eq!(status, 200);
    assert!(
        head.contains("content-type: text/plain; version=0.0.4"),
        "{head}"
    );
    for expected in [
        "# HELP tributary_build_info",
        "tributary_connections_accepted_total{protocol=\"http\"}",
        "# TYPE tributary_connections_active gauge",
        "tributary_http_requests_total{endpoint=\"health\",status=\"200\"} 1",
        // Computed at scrape time: the process, the node identity, kafka_exporter's broker count.
        "# TYPE process_resident_memory_bytes gauge",
        "# TYPE process_cpu_seconds_total counter",
        "process_open_fds ",
        "rabbitmq_identity_info{rabbitmq_node=\"tributary@",
        "rabbitmq_queues 0",
        "kafka_brokers 1",
    ] {
        assert!(
            exposition.contains(expected),
            "missing {expected:?} in:\n{exposition}"
        );
    }
    let findings = exposition::check(&exposition);
    assert!(
        findings.is_empty(),
        "exposition findings:\n{findings:#?}\non:\n{exposition}"
    );

    assert_eq!(
        http_get(addr, "GET", "/nowhere").expect("404 answer").0,
        404
    );
    assert_eq!(
        http_get(addr, "POST", "/health").expect("405 answer").0,
        405
    );

    let (status, took) = broker.terminate();
    assert_eq!(status.code(), Some(0), "exit status {status:?}");
    assert!(
        took < Duration::from_millis(DRAIN_TIMEOUT_MS),
        "shutdown took {took:?}"
    );
    for step in [
        "shutdown requested",
        "closing the broker",
        "broker closed",
        "shutdown complete",
    ] {
        broker.wait_for_line(&[step], Duration::from_secs(1));
    }
    assert!(
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err(),
        "still listening"
    );
}

#[test]
fn config_command_prints_the_effective_layers() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("tributary.toml");
    std::fs::write(
        &file,
        "[kafka]\nport = 1000\n[amqp]\nport = 1001\n[rocketmq]\nbroker_port = 1002\n",
    )
    .expect("write config");
    let output = Command::new(BINARY)
        .args(["config", "--kafka-port", "2000"])
        .env("TRIBUTARY_CONFIG", &file)
        .env("TRIBUTARY_KAFKA_PORT", "3000")
        .env("TRIBUTARY_AMQP_PORT", "3001")
        .env("TRIBUTARY_DURABILITY", "interval:20")
        .output()
        .expect("run tributary config");
    assert!(output.status.success(), "{output:?}");
    let printed: toml::Table =
        toml::from_str(&String::from_utf8_lossy(&output.stdout)).expect("TOML output");
    let port = |section: &str, key: &str| printed[section][key].as_integer();
    assert_eq!(port("kafka", "port"), Some(2000), "flag beats env and file");
    assert_eq!(port("amqp", "port"), Some(3001), "env beats file");
    assert_eq!(
        port("rocketmq", "broker_port"),
        Some(1002),
        "file beats default"
    );
    assert_eq!(port("rocketmq", "namesrv_port"), Some(9876), "default");
    assert_eq!(
        printed["storage"]["durability"].as_str(),
        Some("interval:20")
    );
}

#[test]
fn invalid_configuration_exits_non_zero_naming_the_key() {
    let output = Command::new(BINARY)
        .args(["serve", "--durability", "sometimes"])
        .env_remove("TRIBUTARY_CONFIG")
        .output()
        .expect("run tributary");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("storage.durability") && stderr.contains("--durability"),
        "{stderr}"
    );
}

#[test]
fn a_taken_port_fails_start_up_with_the_address() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let data = tempfile::tempdir().expect("temp dir");
    let output = Command::new(BINARY)
        .args(["--http-port", &port.to_string()])
        .env_remove("TRIBUTARY_CONFIG")
        .env("TRIBUTARY_DATA_DIR", data.path())
        .output()
        .expect("run tributary");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("127.0.0.1:{port}")), "{stderr}");
}
