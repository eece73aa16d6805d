//! `tributary bench ...`: hands over to the `tributary-bench` binary (the workspace's `bench`
//! crate), which carries the Kafka, AMQP and RocketMQ client libraries the broker itself does
//! not need. It is looked up next to the running executable, then on `PATH`; the process is
//! replaced (exec), so its exit status and output are the benchmark's own.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

const BINARY: &str = "tributary-bench";

/// Where `tributary-bench` is: beside `exe`, else in one of `path`'s directories.
pub fn locate(exe: Option<&Path>, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let beside = exe.and_then(Path::parent).map(|dir| dir.join(BINARY));
    beside
        .into_iter()
        .chain(
            path.into_iter()
                .flat_map(|p| std::env::split_paths(p).map(|dir| dir.join(BINARY))),
        )
        .find(|candidate| candidate.is_file())
}

/// Replaces this process with `tributary-bench args...`; returns only on failure.
pub fn exec(args: &[String]) -> anyhow::Result<()> {
    let exe = std::env::current_exe().ok();
    let path = std::env::var_os("PATH");
    let Some(binary) = locate(exe.as_deref(), path.as_deref()) else {
        bail!(
            "`tributary bench` needs the {BINARY} binary next to tributary or on PATH; build it \
             with `cargo build --release -p tributary-bench` (it lands beside tributary)"
        );
    };
    let err = Command::new(&binary).args(args).exec();
    Err(err).with_context(|| format!("cannot run {}", binary.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn found_beside_the_executable_or_on_path_else_none() {
        let dir = tempfile::Builder::new()
            .prefix("h19-bench-")
            .tempdir()
            .unwrap();
        let exe = dir.path().join("tributary");
        assert_eq!(
            locate(Some(&exe), Some(std::ffi::OsStr::new("/tmp/h19-nowhere"))),
            None
        );
        let on_path = tempfile::Builder::new()
            .prefix("h19-path-")
            .tempdir()
            .unwrap();
        std::fs::write(on_path.path().join(BINARY), "").unwrap();
        assert_eq!(
            locate(Some(&exe), Some(on_path.path().as_os_str())),
            Some(on_path.path().join(BINARY))
        );
        std::fs::write(dir.path().join(BINARY), "").unwrap();
        assert_eq!(
            locate(Some(&exe), Some(on_path.path().as_os_str())),
            Some(dir.path().join(BINARY))
        );
    }
}
