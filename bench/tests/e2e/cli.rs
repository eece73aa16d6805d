//! The binary: `compare` over the three protocols writes one TestResult JSON each and a
//! report with a row per run; bad command lines exit 2 with a message.

use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_tributary-bench");

#[test]
fn compare_writes_a_result_per_protocol_and_the_report() {
    let out = tempfile::Builder::new()
        .prefix("h19-compare-")
        .tempdir()
        .expect("temp dir");
    let status = Command::new(BIN)
        .args([
            "compare",
            "--protocols",
            "kafka,amqp,rocketmq",
            "--period-secs",
            "1",
        ])
        .args(["--test-duration-secs", "2", "--quiet", "--workload"])
        .arg(crate::workloads_dir().join("tiny-1-topic-4-partitions-1kb.yaml"))
        .arg("--out")
        .arg(out.path())
        .status()
        .expect("run tributary-bench");
    assert!(status.success(), "{status}");
    for protocol in ["kafka", "amqp", "rocketmq"] {
        let file = out.path().join(format!(
            "tiny-1-topic-4-partitions-1kb-tributary-{protocol}.json"
        ));
        let json: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&file).expect("result file")).expect("JSON");
        assert_eq!(json["driver"], format!("Tributary ({protocol})"));
        assert_eq!(json["publishRateCounts"], "acknowledged");
        assert_eq!(json["publishRate"].as_array().expect("rates").len(), 2);
        assert!(
            json["aggregatedEndToEndLatency99pct"]
                .as_f64()
                .expect("e2e p99")
                > 0.0
        );
    }
    let report = std::fs::read_to_string(out.path().join("report.html")).expect("report");
    for protocol in ["kafka", "amqp", "rocketmq"] {
        assert!(
            report.contains(&format!("<td>Tributary ({protocol})</td>")),
            "{protocol} row"
        );
    }
    assert_eq!(
        report.matches("<polyline").count(),
        6 * 3,
        "a line per run in every chart"
    );
}

#[test]
fn bad_command_lines_exit_2_with_a_message() {
    let workload = crate::workloads_dir().join("tiny-1-topic-4-partitions-1kb.yaml");
    for args in [
        vec!["compare", "--protocols", "mqtt"],
        vec!["compare", "--broker", "amqp=localhost:5672"],
        vec!["compare", "--baseline", "RabbitMQ"],
        vec!["run", "--protocol", "kafka", "--period-secs", "0"],
    ] {
        let output = Command::new(BIN)
            .args(&args)
            .arg("--workload")
            .arg(&workload)
            .output()
            .expect("run tributary-bench");
        assert_eq!(output.status.code(), Some(2), "{args:?}");
        assert!(
            String::from_utf8_lossy(&output.stderr).contains("error"),
            "{args:?}"
        );
    }
    let output = Command::new(BIN)
        .args([
            "run",
            "--protocol",
            "kafka",
            "--workload",
            "/tmp/h19-no-such.yaml",
        ])
        .output()
        .expect("run tributary-bench");
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("h19-no-such.yaml"));
}

/// `tributary bench ...` (the broker binary of this target directory) execs this crate's
/// binary beside it, and a run completes with its JSON.
#[test]
fn tributary_bench_runs_the_benchmark_beside_the_broker() {
    let broker = tributary_bench::target::find_tributary(None)
        .expect("the tributary binary (cargo build --bin tributary)");
    let out = tempfile::Builder::new()
        .prefix("h19b-via-broker-")
        .tempdir()
        .expect("temp dir");
    let output = Command::new(&broker)
        .args(["bench", "run", "--protocol", "kafka", "--period-secs", "1"])
        .args(["--test-duration-secs", "1", "--warmup-secs", "0", "--quiet"])
        .arg("--workload")
        .arg(crate::workloads_dir().join("tiny-1-topic-4-partitions-1kb.yaml"))
        .arg("--out")
        .arg(out.path())
        .output()
        .expect("run tributary bench");
    assert!(
        output.status.success(),
        "{}: {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let file = out
        .path()
        .join("tiny-1-topic-4-partitions-1kb-tributary-kafka.json");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("result file")).expect("JSON");
    assert_eq!(json["driver"], "Tributary (kafka)");
    assert!(json["messagesPublished"].as_u64().expect("count") > 0);
}
