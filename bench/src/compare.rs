//! `compare` and `run`: one run per (target, protocol), each against a fresh Tributary unless
//! the target is a given broker; one OMB `TestResult` JSON per run in the output directory
//! and, for `compare`, `report.html` beside them.

use std::path::{Path, PathBuf};

use crate::Error;
use crate::driver::Protocol;
use crate::payload::Pool;
use crate::report::{self, Baseline};
use crate::result::TestResult;
use crate::runner::{self, RunOptions};
use crate::target::{External, TRIBUTARY, Tributary, find_tributary};
use crate::workload::Workload;

/// What to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub workload_file: PathBuf,
    /// Protocols run against a fresh Tributary.
    pub tributary_protocols: Vec<Protocol>,
    /// Runs against given brokers, after Tributary's.
    pub external: Vec<External>,
    pub tributary_bin: Option<PathBuf>,
    pub options: RunOptions,
}

/// A file name piece made of letters, digits and dashes.
fn slug(text: &str) -> String {
    let s: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect();
    s.split('-')
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("-")
}

/// The JSON file of one run.
pub fn result_file(dir: &Path, result: &TestResult) -> PathBuf {
    dir.join(format!(
        "{}-{}-{}.json",
        slug(&result.workload),
        slug(&result.target),
        result.protocol
    ))
}

/// Runs the plan; returns the results in run order. Each result is written to `out` as soon
/// as its run ends, so a later failure keeps the earlier files.
pub fn execute(plan: &Plan, out: &Path) -> Result<Vec<TestResult>, Error> {
    let workload = Workload::load(&plan.workload_file)?;
    let base = plan.workload_file.parent().unwrap_or(Path::new("."));
    let pool = Pool::new(&workload, base)?;
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::io("tokio runtime", e))?;
    let binary = if plan.tributary_protocols.is_empty() {
        None
    } else {
        Some(find_tributary(plan.tributary_bin.as_deref())?)
    };
    let mut results = Vec::new();
    let mut runs: Vec<(Option<Protocol>, External)> = Vec::new();
    for protocol in &plan.tributary_protocols {
        runs.push((
            Some(*protocol),
            External {
                protocol: *protocol,
                address: String::new(),
                name: None,
            },
        ));
    }
    runs.extend(plan.external.iter().cloned().map(|e| (None, e)));
    for (fresh, external) in runs {
        let protocol = external.protocol;
        // A fresh broker per run: no run sees another's data or load.
        let (broker, address, target) = match fresh {
            Some(protocol) => {
                let broker = Tributary::start(
                    binary.as_deref().expect("found above"),
                    workload.partitions_per_topic,
                )?;
                let address = broker.address(protocol).to_owned();
                (Some(broker), address, TRIBUTARY.to_owned())
            }
            None => (None, external.address.clone(), external.label()),
        };
        let output = runtime.block_on(async {
            let driver = protocol.connect(&address).await?;
            runner::run(
                &workload,
                pool.clone(),
                driver.as_ref(),
                &target,
                &plan.options,
            )
            .await
        })?;
        drop(broker);
        let file = result_file(out, &output.result);
        let json = serde_json::to_string_pretty(&output.result).expect("results serialize");
        std::fs::write(&file, json).map_err(|e| Error::io(&file, e))?;
        eprintln!("wrote {}", file.display());
        results.push(output.result);
    }
    Ok(results)
}

/// Writes `report.html` for `results` into `out` and returns its path.
pub fn write_report(
    out: &Path,
    title: &str,
    results: &[TestResult],
    baseline: &Baseline,
) -> Result<PathBuf, Error> {
    let file = out.join("report.html");
    std::fs::write(&file, report::html(title, results, baseline))
        .map_err(|e| Error::io(&file, e))?;
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn result_files_are_named_by_workload_target_and_protocol() {
        let result = TestResult {
            workload: "1 topic / 16 partitions, 1kb".into(),
            target: "amqp://127.0.0.1:5690/%2f".into(),
            protocol: "amqp".into(),
            ..Default::default()
        };
        assert_eq!(
            result_file(Path::new("/o"), &result),
            Path::new("/o/1-topic-16-partitions-1kb-amqp-127-0-0-1-5690-2f-amqp.json")
        );
    }
}
