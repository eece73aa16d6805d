//! `tributary bench ARGS` hands over to the `tributary-bench` binary (src/bench.rs): without
//! one beside the broker or on PATH it fails with a message saying how to build it; with one,
//! the process is replaced, so the arguments, the output and the exit status are the
//! benchmark's own. The real benchmark (workspace crate `bench`, outside the default members)
//! is exercised through this path by `bench/tests/e2e/cli.rs`; here a stand-in script plays it,
//! so the test needs nothing beyond the broker binary.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_tributary");

/// A directory holding only a link to the broker binary, so a `tributary-bench` beside the
/// real one in the target directory cannot be found.
fn lone_broker() -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("h19b-bench-")
        .tempdir()
        .expect("temp dir");
    let exe = dir.path().join("tributary");
    // A hard link keeps current_exe() in the temp dir (a symlink would resolve to the
    // target directory); a copy where linking is impossible (another filesystem).
    if std::fs::hard_link(BINARY, &exe).is_err() {
        std::fs::copy(BINARY, &exe).expect("copy the broker binary");
    }
    (dir, exe)
}

fn empty_path(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("empty-path");
    std::fs::create_dir_all(&path).expect("empty PATH dir");
    path
}

#[test]
fn bench_without_the_benchmark_binary_fails_saying_how_to_build_it() {
    let (dir, exe) = lone_broker();
    let output = Command::new(&exe)
        .args(["bench", "compare", "--workload", "w.yaml"])
        .env("PATH", empty_path(dir.path()))
        .output()
        .expect("run tributary bench");
    assert!(!output.status.success(), "{:?}", output.status);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("tributary-bench")
            && stderr.contains("cargo build --release -p tributary-bench"),
        "stderr: {stderr}"
    );
}

#[test]
fn bench_execs_the_benchmark_with_its_arguments_output_and_exit_status() {
    let (dir, exe) = lone_broker();
    let bench = dir.path().join("tributary-bench");
    let seen = dir.path().join("args");
    // Records its arguments, writes to both streams and exits 7: all must reach the caller.
    std::fs::write(
        &bench,
        format!(
            "#!/bin/sh\nprintf '%s\\n' \"$@\" > '{}'\necho bench-out\necho bench-err >&2\nexit 7\n",
            seen.display()
        ),
    )
    .expect("write stand-in");
    std::fs::set_permissions(&bench, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let output = Command::new(&exe)
        .args([
            "bench",
            "run",
            "--protocol",
            "kafka",
            "--workload",
            "a b.yaml",
        ])
        .env("PATH", empty_path(dir.path()))
        .output()
        .expect("run tributary bench");
    assert_eq!(output.status.code(), Some(7));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "bench-out\n");
    assert_eq!(String::from_utf8_lossy(&output.stderr), "bench-err\n");
    assert_eq!(
        std::fs::read_to_string(&seen).expect("arguments recorded"),
        "run\n--protocol\nkafka\n--workload\na b.yaml\n"
    );

    // Found on PATH too, when none sits beside the broker.
    let on_path = dir.path().join("on-path");
    std::fs::create_dir(&on_path).expect("PATH dir");
    std::fs::rename(&bench, on_path.join("tributary-bench")).expect("move stand-in");
    let output = Command::new(&exe)
        .args(["bench", "x"])
        .env("PATH", &on_path)
        .output()
        .expect("run tributary bench");
    assert_eq!(output.status.code(), Some(7));
}
