//! The `tributary` binary: parse the command line, load the configuration, then either run the
//! server until SIGINT/SIGTERM, print the configuration, or manage users. Exits 0 after a clean shutdown, 1 on any error (the
//! error chain is printed to stderr), 2 on a bad command line (clap).

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tributary::cli::{Cli, Command};
use tributary::config::{self, Config, Sources};
use tributary::{server, telemetry, users};

/// How long the runtime waits for stray blocking work after the server has returned.
const RUNTIME_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let flags = cli.flags.overrides();
    let config = Config::load(Sources {
        config_file: cli.flags.config.as_deref(),
        env: |name: &str| std::env::var(name).ok(),
        flags: &flags,
    })
    .context("invalid configuration")?;
    let unknown_vars = config::unknown_env_vars(
        std::env::vars_os().filter_map(|(name, _)| name.into_string().ok()),
    );

    match cli.command() {
        Command::Config => {
            for name in &unknown_vars {
                eprintln!(
                    "warning: environment variable {name} is not a Tributary setting; ignored"
                );
            }
            print!(
                "{}",
                config.to_toml().context("cannot print the configuration")?
            );
            Ok(())
        }
        Command::Serve => serve(config, &unknown_vars),
        Command::User(command) => {
            let stdin = std::io::stdin().lock();
            users::run(&config, &command, stdin, &mut std::io::stdout().lock())
        }
    }
}

fn serve(config: Config, unknown_vars: &[String]) -> anyhow::Result<()> {
    let rust_log = std::env::var("RUST_LOG").ok();
    telemetry::init_logging(&config.log.filter, rust_log.as_deref())?;
    for name in unknown_vars {
        tracing::warn!(variable = %name, "not a Tributary setting; ignored");
    }
    let metrics = telemetry::install_metrics()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("tributary")
        .build()
        .context("cannot start the tokio runtime")?;
    let result = runtime.block_on(server::run(config, metrics, std::future::pending()));
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
    result.context("the broker stopped with an error")
}
