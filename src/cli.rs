//! The command line: `tributary [serve] [flags]` runs the broker, `tributary config [flags]`
//! prints the effective configuration as TOML, `tributary user add|list|delete` manages the
//! users SASL clients authenticate as (see [`crate::users`]). Flags are the top layer of the configuration
//! (see [`crate::config`]); each maps to one key of [`crate::config::KEYS`].

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// One broker for Kafka, AMQP 0-9-1 and RocketMQ clients over one log engine.
#[derive(Debug, Parser)]
#[command(name = "tributary", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub flags: Flags,
    #[command(flatten)]
    pub admin: AdminFlags,
}

/// Where `tributary user|vhost|permissions` find the admin API of a running broker (see
/// [`crate::admin_cli`]); client options, not broker settings.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct AdminFlags {
    /// Admin API base URL, e.g. `http://127.0.0.1:9464` (default: from the configuration,
    /// used when a broker holds the data directory).
    #[arg(long, global = true, value_name = "URL", env = "TRIBUTARY_ADMIN_URL")]
    pub admin_url: Option<String>,
    /// User for the admin API (needs the `administrator` tag; default `guest`).
    #[arg(long, global = true, value_name = "USER", env = "TRIBUTARY_ADMIN_USER")]
    pub admin_user: Option<String>,
    /// Password for the admin API (default `guest`).
    #[arg(
        long,
        global = true,
        value_name = "PASSWORD",
        env = "TRIBUTARY_ADMIN_PASSWORD",
        hide_env_values = true
    )]
    pub admin_password: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum Command {
    /// Run the broker (the default when no command is given).
    Serve,
    /// Print the effective configuration (defaults < file < environment < flags) as TOML.
    Config,
    /// Manage the users SASL clients authenticate as: through the admin API when a broker runs
    /// on the data directory, else in its metadata store.
    #[command(subcommand)]
    User(UserCommand),
    /// Manage AMQP virtual hosts (through the admin API when a broker runs).
    #[command(subcommand)]
    Vhost(VhostCommand),
    /// Manage users' AMQP permissions per vhost (configure, write and read regexes, as
    /// `rabbitmqctl set_permissions`); through the admin API when a broker runs.
    #[command(subcommand)]
    Permissions(PermissionsCommand),
    /// Run OMB workloads over Kafka, AMQP and RocketMQ clients and compare brokers: runs the
    /// `tributary-bench` binary found next to this one (or on PATH) with the arguments given
    /// (`tributary bench --help` for its own help).
    #[command(disable_help_flag = true)]
    Bench {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// `tributary vhost ...`
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum VhostCommand {
    /// Add a vhost.
    Add { name: String },
    /// List the vhosts, one per line.
    List,
    /// Delete a vhost with its exchanges, queues, bindings, messages and permissions.
    Delete { name: String },
}

/// `tributary permissions ...`
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum PermissionsCommand {
    /// Set a user's permissions on a vhost; each is a regex over resource names (`.*` for all,
    /// `""` for none).
    Set {
        vhost: String,
        user: String,
        configure: String,
        write: String,
        read: String,
    },
    /// Remove a user's permissions on a vhost.
    Clear { vhost: String, user: String },
    /// List permissions as `vhost<TAB>user<TAB>configure<TAB>write<TAB>read`.
    List,
}

/// `tributary user ...`
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum UserCommand {
    /// Add a user: one password gives its PLAIN, SCRAM-SHA-256 and SCRAM-SHA-512 credentials
    /// (salted; the password itself is not stored).
    Add {
        /// The user name clients log in with.
        name: String,
        /// The password (visible to other local users in the process list; prefer
        /// `--password-stdin`).
        #[arg(
            long,
            value_name = "PASSWORD",
            conflicts_with = "password_stdin",
            required_unless_present = "password_stdin"
        )]
        password: Option<String>,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
        /// Replace the credentials of an existing user instead of failing.
        #[arg(long)]
        replace: bool,
        /// PBKDF2 iterations of the SCRAM credentials (at least 4096).
        #[arg(long, value_name = "N", default_value_t = tributary_api::users::MIN_ITERATIONS)]
        iterations: u32,
        /// Comma-separated tags, e.g. `administrator` (RabbitMQ's management tags; the admin
        /// API requires `administrator`).
        #[arg(long, value_name = "TAGS", default_value = "")]
        tags: String,
        /// Also keep the password as the user's RocketMQ secret key (the access key is the user
        /// name): RocketMQ's ACL signs requests with it, so it is stored in the clear in the
        /// metadata store, unlike the salted SCRAM credentials.
        #[arg(long)]
        rocketmq_secret: bool,
        /// Addresses from which this user's RocketMQ requests need no signature (RocketMQ's
        /// per-account `whiteRemoteAddress`: `192.168.1.*`, `10.0.0.1-50`, `10.0.0.{1,2}`, ...);
        /// the user's permissions still apply.
        #[arg(long, value_name = "PATTERN")]
        rocketmq_white_address: Option<String>,
    },
    /// List the user names, one per line.
    List,
    /// Delete a user.
    Delete { name: String },
}

/// Flags shared by every command; each overrides the environment and the file.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct Flags {
    /// TOML configuration file (else `TRIBUTARY_CONFIG`).
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Data directory (`data_dir`).
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Address every listener binds to (`bind`).
    #[arg(long, global = true, value_name = "IP")]
    pub bind: Option<IpAddr>,
    /// Kafka listener port (`kafka.port`); 0 picks a free port.
    #[arg(long, global = true, value_name = "PORT")]
    pub kafka_port: Option<u16>,
    /// AMQP 0-9-1 listener port (`amqp.port`).
    #[arg(long, global = true, value_name = "PORT")]
    pub amqp_port: Option<u16>,
    /// RocketMQ name server port (`rocketmq.namesrv_port`).
    #[arg(long, global = true, value_name = "PORT")]
    pub rocketmq_namesrv_port: Option<u16>,
    /// RocketMQ broker port (`rocketmq.broker_port`).
    #[arg(long, global = true, value_name = "PORT")]
    pub rocketmq_broker_port: Option<u16>,
    /// HTTP port for /metrics and /health (`http.port`).
    #[arg(long, global = true, value_name = "PORT")]
    pub http_port: Option<u16>,
    /// Default durability: always, interval:<ms> or never (`storage.durability`).
    #[arg(long, global = true, value_name = "POLICY")]
    pub durability: Option<String>,
    /// Log filter, e.g. `info` or `info,tributary=debug` (`log.filter`); RUST_LOG wins.
    #[arg(long, global = true, value_name = "FILTER")]
    pub log: Option<String>,
    /// PostgreSQL URL: run on the cloud engine (`cluster.metadata_url`).
    #[arg(long, global = true, value_name = "URL")]
    pub metadata_url: Option<String>,
    /// Log objects location, s3://bucket/prefix (`cluster.objects_url`).
    #[arg(long, global = true, value_name = "URL")]
    pub objects_url: Option<String>,
    /// This broker's id among those sharing the metadata store (`cluster.broker_id`).
    #[arg(long, global = true, value_name = "ID")]
    pub broker_id: Option<u32>,
    /// Membership lease in milliseconds (`cluster.lease_ms`).
    #[arg(long, global = true, value_name = "MS")]
    pub lease_ms: Option<u64>,
    /// Lease renewal interval in milliseconds (`cluster.lease_renew_ms`).
    #[arg(long, global = true, value_name = "MS")]
    pub lease_renew_ms: Option<u64>,
}

impl Cli {
    /// The command to run; no command means `serve`.
    pub fn command(&self) -> Command {
        self.command.clone().unwrap_or(Command::Serve)
    }
}

impl Flags {
    /// The flags given, as `(config key, value)` pairs for [`crate::config::Sources::flags`].
    pub fn overrides(&self) -> Vec<(&'static str, String)> {
        let path = |value: &Option<PathBuf>| value.as_ref().map(|path| path.display().to_string());
        [
            ("data_dir", path(&self.data_dir)),
            ("bind", text(&self.bind)),
            ("kafka.port", text(&self.kafka_port)),
            ("amqp.port", text(&self.amqp_port)),
            ("rocketmq.namesrv_port", text(&self.rocketmq_namesrv_port)),
            ("rocketmq.broker_port", text(&self.rocketmq_broker_port)),
            ("http.port", text(&self.http_port)),
            ("storage.durability", self.durability.clone()),
            ("log.filter", self.log.clone()),
            ("cluster.metadata_url", self.metadata_url.clone()),
            ("cluster.objects_url", self.objects_url.clone()),
            ("cluster.broker_id", text(&self.broker_id)),
            ("cluster.lease_ms", text(&self.lease_ms)),
            ("cluster.lease_renew_ms", text(&self.lease_renew_ms)),
        ]
        .into_iter()
        .filter_map(|(key, value)| value.map(|value| (key, value)))
        .collect()
    }
}

fn text<T: ToString>(value: &Option<T>) -> Option<String> {
    value.as_ref().map(ToString::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KEYS;

    #[test]
    fn no_command_means_serve() {
        let cli = Cli::try_parse_from(["tributary"]).expect("parses");
        assert_eq!(cli.command(), Command::Serve);
        let cli = Cli::try_parse_from(["tributary", "--kafka-port", "1"]).expect("parses");
        assert_eq!(cli.command(), Command::Serve);
        assert_eq!(cli.flags.overrides(), vec![("kafka.port", "1".to_owned())]);
    }

    #[test]
    fn flags_work_before_and_after_the_command() {
        let cli = Cli::try_parse_from([
            "tributary",
            "config",
            "--http-port",
            "7",
            "--durability",
            "never",
        ])
        .expect("parses");
        assert_eq!(cli.command(), Command::Config);
        assert_eq!(
            cli.flags.overrides(),
            vec![
                ("http.port", "7".to_owned()),
                ("storage.durability", "never".to_owned())
            ]
        );
        let cli = Cli::try_parse_from(["tributary", "--bind", "0.0.0.0", "serve"]).expect("parses");
        assert_eq!(cli.flags.overrides(), vec![("bind", "0.0.0.0".to_owned())]);
    }

    #[test]
    fn every_flag_maps_to_a_key_that_names_it() {
        let cli = Cli::try_parse_from([
            "tributary",
            "--data-dir=/d",
            "--bind=127.0.0.1",
            "--kafka-port=1",
            "--amqp-port=2",
            "--rocketmq-namesrv-port=3",
            "--rocketmq-broker-port=4",
            "--http-port=5",
            "--durability=never",
            "--log=debug",
            "--metadata-url=postgres://u@h/db",
            "--objects-url=s3://b/p",
            "--broker-id=3",
            "--lease-ms=5000",
            "--lease-renew-ms=500",
        ])
        .expect("parses");
        let overrides = cli.flags.overrides();
        assert_eq!(overrides.len(), 14);
        for (key, _) in overrides {
            let spec = KEYS
                .iter()
                .find(|spec| spec.name == key)
                .expect("key exists");
            assert!(
                spec.flag.is_some(),
                "{key} has a flag, so the key table must name it"
            );
        }
    }

    #[test]
    fn user_add_takes_exactly_one_password_source() {
        let cli = Cli::try_parse_from([
            "tributary",
            "user",
            "add",
            "alice",
            "--password-stdin",
            "--data-dir",
            "/d",
        ])
        .expect("parses");
        assert_eq!(
            cli.command(),
            Command::User(UserCommand::Add {
                name: "alice".to_owned(),
                password: None,
                password_stdin: true,
                replace: false,
                iterations: 4096,
                tags: String::new(),
                rocketmq_secret: false,
                rocketmq_white_address: None,
            })
        );
        assert_eq!(cli.flags.overrides(), vec![("data_dir", "/d".to_owned())]);
        assert!(Cli::try_parse_from(["tributary", "user", "add", "alice"]).is_err());
        assert!(
            Cli::try_parse_from([
                "tributary",
                "user",
                "add",
                "alice",
                "--password",
                "x",
                "--password-stdin"
            ])
            .is_err()
        );
    }

    #[test]
    fn bad_flag_values_are_rejected() {
        assert!(Cli::try_parse_from(["tributary", "--kafka-port", "99999"]).is_err());
        assert!(Cli::try_parse_from(["tributary", "--bind", "nowhere"]).is_err());
        assert!(Cli::try_parse_from(["tributary", "--no-such-flag"]).is_err());
    }
}
