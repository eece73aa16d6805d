//! The `tributary-bench` binary (also `tributary bench`): `run` one workload over one
//! protocol, or `compare` it over several protocols and brokers with an HTML report. Exits 0
//! on success, 1 on a failed run (the error is printed), 2 on a bad command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use tributary_bench::Error;
use tributary_bench::compare::{self, Plan};
use tributary_bench::driver::Protocol;
use tributary_bench::report::Baseline;
use tributary_bench::runner::RunOptions;
use tributary_bench::target::{External, TRIBUTARY};

#[derive(Debug, Parser)]
#[command(
    name = "tributary-bench",
    about = "OMB workloads over Kafka, AMQP 0-9-1 and RocketMQ clients"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Runs a workload over one protocol and writes its OMB TestResult JSON.
    Run {
        #[arg(long)]
        protocol: String,
        #[command(flatten)]
        common: Common,
    },
    /// Runs a workload over several protocols and brokers; writes one TestResult JSON per run
    /// and report.html into --out.
    Compare {
        /// Comma-separated: kafka,amqp,rocketmq (each run against a fresh Tributary).
        #[arg(long, value_delimiter = ',', default_value = "kafka,amqp,rocketmq")]
        protocols: Vec<String>,
        /// Only the given --broker targets, no Tributary runs.
        #[arg(long)]
        no_tributary: bool,
        /// The report's ratios divide by this target's run over the same protocol
        /// (`Tributary`, or a --broker's NAME or address); default: the first run.
        #[arg(long)]
        baseline: Option<String>,
        #[command(flatten)]
        common: Common,
    },
}

#[derive(Debug, Args)]
struct Common {
    /// An OMB workload YAML file.
    #[arg(long)]
    workload: PathBuf,
    /// Also run against a broker: [NAME:]PROTOCOL=ADDRESS with kafka=HOST:PORT,
    /// amqp=amqp://USER:PASS@HOST:PORT/VHOST or rocketmq=NAMESRV_HOST:PORT (repeatable); NAME
    /// labels its runs (default: the address without credentials).
    #[arg(long)]
    broker: Vec<String>,
    /// Where the JSON files (and the report) go.
    #[arg(long, default_value = "bench-results")]
    out: PathBuf,
    /// The `tributary` binary to start (default: next to this one, else on PATH).
    #[arg(long)]
    tributary_bin: Option<PathBuf>,
    /// Seconds per reported period (OMB: 10).
    #[arg(long, default_value_t = 10.0)]
    period_secs: f64,
    /// Overrides the workload's testDurationMinutes.
    #[arg(long)]
    test_duration_secs: Option<f64>,
    /// Overrides the workload's warmupDurationMinutes.
    #[arg(long)]
    warmup_secs: Option<f64>,
    /// Unacknowledged sends allowed per producer.
    #[arg(long, default_value_t = 1000)]
    max_in_flight: usize,
    /// No rates line every second.
    #[arg(long)]
    quiet: bool,
    /// With `producerRate: 0`, send as fast as acknowledgements allow (up to --max-in-flight
    /// per producer) instead of OMB's maximum sustainable rate (a target that follows what
    /// the consumers keep up with).
    #[arg(long)]
    unthrottled: bool,
}

fn seconds(flag: &str, value: f64) -> Result<Duration, Error> {
    Duration::try_from_secs_f64(value).map_err(|_| {
        Error::Usage(format!(
            "--{flag} must be a number of seconds >= 0, got {value}"
        ))
    })
}

fn plan(common: &Common, protocols: &[String], tributary: bool) -> Result<Plan, Error> {
    let period = seconds("period-secs", common.period_secs)?;
    if period.is_zero() {
        return Err(Error::Usage("--period-secs must be above 0".into()));
    }
    let optional = |flag, value: Option<f64>| value.map(|v| seconds(flag, v)).transpose();
    let mut tributary_protocols = Vec::new();
    if tributary {
        for protocol in protocols {
            let protocol = Protocol::parse(protocol)?;
            if !tributary_protocols.contains(&protocol) {
                tributary_protocols.push(protocol);
            }
        }
    }
    Ok(Plan {
        workload_file: common.workload.clone(),
        tributary_protocols,
        external: common
            .broker
            .iter()
            .map(|b| External::parse(b))
            .collect::<Result<_, _>>()?,
        tributary_bin: common.tributary_bin.clone(),
        options: RunOptions {
            period,
            test_duration: optional("test-duration-secs", common.test_duration_secs)?,
            warmup: optional("warmup-secs", common.warmup_secs)?,
            max_in_flight: common.max_in_flight.max(1),
            progress: !common.quiet,
            name_prefix: None,
            unthrottled: common.unthrottled,
        },
    })
}

/// `--baseline`, checked against the planned targets before anything runs.
fn baseline_of(plan: &Plan, baseline: Option<&str>) -> Result<Baseline, Error> {
    let Some(wanted) = baseline else {
        return Ok(Baseline::FirstRun);
    };
    let mut targets: Vec<String> = plan.external.iter().map(External::label).collect();
    if !plan.tributary_protocols.is_empty() {
        targets.insert(0, TRIBUTARY.to_owned());
    }
    match targets.iter().find(|t| t.eq_ignore_ascii_case(wanted)) {
        Some(target) => Ok(Baseline::Target(target.clone())),
        None => Err(Error::Usage(format!(
            "--baseline {wanted:?} is not a target of this run; targets: {}",
            targets.join(", ")
        ))),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let outcome = match &cli.command {
        Command::Run { protocol, common } => {
            // With a --broker for the protocol, run only against that broker.
            let external = !common.broker.is_empty();
            plan(common, std::slice::from_ref(protocol), !external)
                .and_then(|plan| compare::execute(&plan, &common.out))
                .map(|_| ())
        }
        Command::Compare {
            protocols,
            no_tributary,
            baseline,
            common,
        } => plan(common, protocols, !no_tributary).and_then(|plan| {
            let baseline = baseline_of(&plan, baseline.as_deref())?;
            let results = compare::execute(&plan, &common.out)?;
            let title = format!("tributary-bench compare: {}", common.workload.display());
            let report = compare::write_report(&common.out, &title, &results, &baseline)?;
            eprintln!("wrote {}", report.display());
            Ok(())
        }),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err}");
            if matches!(err, Error::Usage(_)) {
                ExitCode::from(2)
            } else {
                ExitCode::FAILURE
            }
        }
    }
}
