//! The `tributary` binary: parse the command line, load the configuration, then either run the
//! server until SIGINT/SIGTERM, print the configuration, or manage users. Exits 0 after a clean shutdown, 1 on any error (the
//! error chain is printed to stderr), 2 on a bad command line (clap).

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use tributary::cli::{Cli, Command};
use tributary::config::{self, Config, Sources};
use tributary::{admin_cli, bench, server, telemetry, users, vhosts};

/// mimalloc instead of the system allocator: the broker allocates per message on every path
/// (frames, records, deliveries), and glibc's malloc and free were about 40 % of the broker's
/// CPU time in the AMQP benchmark's profile.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// How long the runtime waits for stray blocking work after the server has returned.
const RUNTIME_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(1);

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // The benchmark needs no broker configuration (an invalid one must not stop it).
    if let Command::Bench { args } = cli.command() {
        return bench::exec(&args);
    }
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
        Command::Serve => {
            // SIGHUP reads the same sources again (see `server::alarms`).
            let config_file = cli.flags.config.clone();
            let reload = move || {
                Config::load(Sources {
                    config_file: config_file.as_deref(),
                    env: |name: &str| std::env::var(name).ok(),
                    flags: &flags,
                })
            };
            serve(config, &unknown_vars, Arc::new(reload))
        }
        Command::Vhost(command) => match admin_cli::target(&cli.admin, &config)? {
            Some(api) => admin_cli::run_vhost(&api, &command, &mut std::io::stdout()),
            None => vhosts::run_vhost(&config, &command, &mut std::io::stdout()),
        },
        Command::Permissions(command) => match admin_cli::target(&cli.admin, &config)? {
            Some(api) => admin_cli::run_permissions(&api, &command, &mut std::io::stdout()),
            None => vhosts::run_permissions(&config, &command, &mut std::io::stdout()),
        },
        Command::Bench { args } => bench::exec(&args),
        Command::User(command) => {
            let stdin = std::io::stdin().lock();
            let out = &mut std::io::stdout().lock();
            match admin_cli::target(&cli.admin, &config)? {
                Some(api) => admin_cli::run_user(&api, &command, stdin, out),
                None => users::run(&config, &command, stdin, out),
            }
        }
    }
}

fn serve(
    config: Config,
    unknown_vars: &[String],
    reload: server::alarms::Reload,
) -> anyhow::Result<()> {
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
    let serving = server::run_reloadable(config, metrics, reload, std::future::pending());
    let result = runtime.block_on(serving);
    runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
    result.context("the broker stopped with an error")
}
