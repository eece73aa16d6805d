use std::collections::{BTreeSet, HashMap};
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use tributary_api::Durability;

use super::*;

fn load(
    file: Option<&Path>,
    env: &[(&str, &str)],
    flags: &[(&'static str, &str)],
) -> Result<Config, ConfigError> {
    let env: HashMap<String, String> = env
        .iter()
        .map(|(name, value)| (name.to_string(), value.to_string()))
        .collect();
    let flags: Vec<(&'static str, String)> = flags
        .iter()
        .map(|(key, value)| (*key, value.to_string()))
        .collect();
    Config::load(Sources {
        config_file: file,
        env: |name: &str| env.get(name).cloned(),
        flags: &flags,
    })
}

fn toml_file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write temp file");
    file
}

#[test]
fn defaults_are_the_zero_config_start() {
    let config = load(None, &[], &[]).expect("defaults load");
    assert_eq!(config.data_dir, PathBuf::from("./tributary-data"));
    assert_eq!(config.bind, IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_eq!(
        (config.kafka.port, config.amqp.port, config.http.port),
        (9092, 5672, 9464)
    );
    assert_eq!(
        (config.rocketmq.namesrv_port, config.rocketmq.broker_port),
        (9876, 10911)
    );
    assert_eq!(config.kafka.advertised_host.as_deref(), Some("127.0.0.1"));
    assert_eq!(config.kafka.default_partitions, 4);
    assert!(config.kafka.auto_create_topics);
    assert!(
        config.kafka.enabled
            && config.amqp.enabled
            && config.rocketmq.enabled
            && config.http.enabled
    );
    assert_eq!(config.kafka.max_frame_bytes, 100 * 1024 * 1024);
    assert_eq!(config.amqp.max_frame_bytes, 128 * 1024);
    assert_eq!(config.rocketmq.max_frame_bytes, 16 * 1024 * 1024);
    assert_eq!(config.kafka.max_connections, 10_000);
    assert_eq!(config.storage.durability, Durability::Always);
    assert_eq!(config.drain_timeout(), Duration::from_secs(10));
    assert_eq!(config.log.filter, "info");
}

#[test]
fn each_layer_overrides_the_one_below() {
    let file = toml_file("data_dir = \"/from/file\"\n[kafka]\nport = 1111\n[amqp]\nport = 2221\n");
    let path = Some(file.path());

    let from_file = load(path, &[], &[]).expect("file loads");
    assert_eq!(from_file.kafka.port, 1111);
    assert_eq!(from_file.data_dir, PathBuf::from("/from/file"));
    assert_eq!(
        from_file.rocketmq.broker_port, 10911,
        "keys the file omits keep defaults"
    );

    let env = [
        ("TRIBUTARY_KAFKA_PORT", "2222"),
        ("TRIBUTARY_DATA_DIR", "/from/env"),
    ];
    let from_env = load(path, &env, &[]).expect("env loads");
    assert_eq!(from_env.kafka.port, 2222);
    assert_eq!(from_env.data_dir, PathBuf::from("/from/env"));
    assert_eq!(
        from_env.amqp.port, 2221,
        "the file still applies where env is silent"
    );

    let flags = [("kafka.port", "3333")];
    let from_flags = load(path, &env, &flags).expect("flags load");
    assert_eq!(from_flags.kafka.port, 3333);
    assert_eq!(from_flags.data_dir, PathBuf::from("/from/env"));
}

#[test]
fn config_flag_wins_over_config_variable() {
    let flagged = toml_file("[http]\nport = 1001\n");
    let from_env = toml_file("[http]\nport = 1002\n");
    let env_path = from_env.path().to_str().expect("utf-8 temp path");
    let env = [(CONFIG_FILE_ENV, env_path)];

    assert_eq!(load(None, &env, &[]).expect("loads").http.port, 1002);
    assert_eq!(
        load(Some(flagged.path()), &env, &[])
            .expect("loads")
            .http
            .port,
        1001
    );
}

#[test]
fn durability_is_a_string_in_every_layer() {
    let file = toml_file("[storage]\ndurability = \"interval:250\"\n");
    let config = load(Some(file.path()), &[], &[]).expect("loads");
    assert_eq!(
        config.storage.durability,
        Durability::Interval(Duration::from_millis(250))
    );

    let config = load(Some(file.path()), &[("TRIBUTARY_DURABILITY", "never")], &[]).expect("loads");
    assert_eq!(config.storage.durability, Durability::Never);

    let config = load(None, &[], &[("storage.durability", "always")]).expect("loads");
    assert_eq!(
        config.broker_settings().log_defaults.durability,
        Durability::Always
    );

    let bad = toml_file("[storage]\ndurability = \"sometimes\"\n");
    let err = load(Some(bad.path()), &[], &[]).expect_err("bad durability");
    assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    assert!(err.to_string().contains("durability"), "{err}");
}

#[test]
fn unknown_keys_are_rejected() {
    let file = toml_file("[kafka]\nprot = 9092\n");
    let err = load(Some(file.path()), &[], &[]).expect_err("typo must fail");
    assert!(matches!(err, ConfigError::Parse { .. }));
    assert!(err.to_string().contains("prot"), "{err}");

    let file = toml_file("[kafak]\nport = 9092\n");
    assert!(matches!(
        load(Some(file.path()), &[], &[]),
        Err(ConfigError::Parse { .. })
    ));

    let err = load(None, &[], &[("kafka.nope", "1")]).expect_err("unknown flag key");
    assert!(matches!(
        err,
        ConfigError::Invalid {
            key: "kafka.nope",
            problem: Problem::UnknownKey
        }
    ));
}

#[test]
fn missing_file_names_the_path() {
    let err = load(Some(Path::new("/nonexistent/tributary.toml")), &[], &[]).expect_err("missing");
    assert!(matches!(err, ConfigError::Read { .. }));
    assert!(
        err.to_string().contains("/nonexistent/tributary.toml"),
        "{err}"
    );
}

#[test]
fn bad_override_values_name_the_key_and_origin() {
    let err = load(None, &[("TRIBUTARY_KAFKA_PORT", "70000")], &[]).expect_err("port too big");
    assert!(matches!(
        err,
        ConfigError::BadValue {
            key: "kafka.port",
            origin: Origin::Env("TRIBUTARY_KAFKA_PORT"),
            ..
        }
    ));
    assert!(err.to_string().contains("TRIBUTARY_KAFKA_PORT"), "{err}");

    let err = load(None, &[], &[("bind", "localhost:1")]).expect_err("not an IP");
    assert!(matches!(
        err,
        ConfigError::BadValue {
            key: "bind",
            origin: Origin::Flag("--bind"),
            ..
        }
    ));
    assert!(err.to_string().contains("--bind"), "{err}");
}

#[test]
fn validation_names_the_bad_key() {
    let cases: &[(&str, &str)] = &[
        (
            "[kafka]\ndefault_partitions = 0",
            "kafka.default_partitions",
        ),
        ("[amqp]\nmax_connections = 0", "amqp.max_connections"),
        ("[amqp]\nmax_frame_bytes = 100", "amqp.max_frame_bytes"),
        ("[amqp]\nmax_message_bytes = 0", "amqp.max_message_bytes"),
        (
            "[amqp]\nmax_message_bytes = 536870913",
            "amqp.max_message_bytes",
        ),
        (
            "[kafka]\nmax_frame_bytes = 4294967296",
            "kafka.max_frame_bytes",
        ),
        ("[kafka]\nadvertised_host = \" \"", "kafka.advertised_host"),
        ("[storage]\nsegment_bytes = 10", "storage.segment_bytes"),
        ("[storage]\nretention_ms = -2", "storage.retention_ms"),
        ("[storage]\nretention_bytes = -5", "storage.retention_bytes"),
        (
            "[storage]\nsegment_bytes = 2048\nmax_message_bytes = 4096",
            "storage.max_message_bytes",
        ),
        (
            "[storage]\nindex_interval_bytes = 0",
            "storage.index_interval_bytes",
        ),
        (
            "[storage]\nretention_check_interval_ms = 0",
            "storage.retention_check_interval_ms",
        ),
        (
            "[kafka]\nsasl_max_receive_bytes = 1000",
            "kafka.sasl_max_receive_bytes",
        ),
        ("[kafka]\nframe_timeout_ms = 0", "kafka.frame_timeout_ms"),
        (
            "[amqp]\nhandshake_timeout_ms = 0",
            "amqp.handshake_timeout_ms",
        ),
        (
            "[rocketmq]\nframe_timeout_ms = 0",
            "rocketmq.frame_timeout_ms",
        ),
        // Smaller than the default 100 MiB Kafka frame: such a frame could never be read.
        ("[limits]\nbuffer_bytes = 52428800", "limits.buffer_bytes"),
        ("[log]\nfilter = \"info,[=\"", "log.filter"),
        ("[log]\nfilter = \"\"", "log.filter"),
    ];
    for (text, bad_key) in cases {
        let file = toml_file(text);
        match load(Some(file.path()), &[], &[]) {
            Err(ConfigError::Invalid { key, .. }) => assert_eq!(key, *bad_key, "for {text:?}"),
            other => panic!("{text:?} should be invalid at {bad_key}, got {other:?}"),
        }
    }
}

#[test]
fn connection_rules_reach_their_listeners() {
    let file = toml_file(
        "[kafka]\nconnections_max_idle_ms = 0\n[amqp]\nidle_timeout_ms = 5000\n[rocketmq]\nchannel_idle_ms = 7000\n",
    );
    let config = load(
        Some(file.path()),
        &[("TRIBUTARY_LIMITS_BUFFER_BYTES", "1073741824")],
        &[],
    )
    .expect("valid");
    let kafka = config.kafka_listener().timeouts;
    assert_eq!(kafka.idle, None, "0 turns the idle timeout off");
    assert_eq!(kafka.frame, Some(Duration::from_secs(30)));
    let amqp = config.amqp_listener().timeouts;
    assert_eq!(amqp.idle, Some(Duration::from_secs(5)));
    assert_eq!(amqp.handshake, Some(Duration::from_secs(10)));
    for listener in [
        config.rocketmq_namesrv_listener(),
        config.rocketmq_broker_listener(),
    ] {
        assert_eq!(listener.timeouts.idle, Some(Duration::from_secs(7)));
    }
    assert_eq!(config.memory_budget().total_bytes(), 1 << 30);
}

#[test]
fn fixed_ports_must_not_clash_but_ephemeral_and_disabled_may() {
    let err = load(None, &[], &[("http.port", "9092")]).expect_err("clash");
    assert!(matches!(
        err,
        ConfigError::Invalid {
            key: "http.port",
            problem: Problem::PortClash {
                port: 9092,
                other: "kafka.port"
            }
        }
    ));
    assert!(load(None, &[], &[("http.port", "0"), ("kafka.port", "0")]).is_ok());
    assert!(
        load(
            None,
            &[("TRIBUTARY_KAFKA_ENABLED", "false")],
            &[("http.port", "9092")]
        )
        .is_ok()
    );
}

#[test]
fn advertised_host_follows_bind_unless_set() {
    let config = load(None, &[], &[("bind", "10.1.2.3")]).expect("loads");
    assert_eq!(config.kafka.advertised_host.as_deref(), Some("10.1.2.3"));
    let config = load(None, &[], &[("bind", "0.0.0.0")]).expect("loads");
    assert_eq!(config.kafka_advertised_host(), "127.0.0.1");
    let config = load(
        None,
        &[("TRIBUTARY_KAFKA_ADVERTISED_HOST", "broker.example")],
        &[("bind", "0.0.0.0")],
    )
    .expect("loads");
    assert_eq!(config.kafka_advertised_host(), "broker.example");
}

#[test]
fn broker_settings_carry_storage_keys() {
    let file = toml_file(
        "data_dir = \"/d\"\n[storage]\nsegment_bytes = 65536\nsegment_ms = 5\nretention_ms = -1\n\
         retention_bytes = 1000000\nmax_message_bytes = 1024\nindex_interval_bytes = 128\n\
         retention_check_interval_ms = 700\n",
    );
    let settings = load(Some(file.path()), &[], &[])
        .expect("loads")
        .broker_settings();
    assert_eq!(settings.data_dir, PathBuf::from("/d"));
    assert_eq!(
        settings.retention_check_interval,
        Duration::from_millis(700)
    );
    let log = settings.log_defaults;
    assert_eq!(
        (
            log.segment_bytes,
            log.segment_ms,
            log.retention_ms,
            log.retention_bytes
        ),
        (65536, 5, -1, 1_000_000)
    );
    assert_eq!(
        (log.max_message_bytes, log.index_interval_bytes),
        (1024, 128)
    );
}

#[test]
fn printed_config_reads_back_identically() {
    let config = load(
        None,
        &[("TRIBUTARY_DURABILITY", "interval:50")],
        &[("kafka.port", "1")],
    )
    .expect("loads");
    let text = config.to_toml().expect("serialises");
    assert!(text.contains("durability = \"interval:50\""), "{text}");
    assert_eq!(Config::from_toml(&text).expect("parses back"), config);
}

fn dotted_keys(table: &toml::Table, prefix: &str, out: &mut BTreeSet<String>) {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        match value {
            toml::Value::Table(inner) => dotted_keys(inner, &key, out),
            _ => {
                out.insert(key);
            }
        }
    }
}

#[test]
fn key_table_covers_every_config_key_once() {
    // The optional keys that have no default are set, so they are printed too.
    let mut config = load(
        None,
        &[],
        &[
            ("cluster.metadata_url", "postgres://u@127.0.0.1/db"),
            ("cluster.objects_url", "s3://bucket"),
            ("cluster.advertised_host", "broker-1"),
        ],
    )
    .expect("defaults");
    // Set after loading: validation would read the files (and refuses TLS Kafka on a cluster).
    config.kafka.tls_port = Some(9093);
    config.amqp.tls_port = Some(5671);
    config.tls.cert_file = Some("cert.pem".into());
    config.tls.key_file = Some("key.pem".into());
    config.tls.ca_file = Some("ca.pem".into());
    let table: toml::Table =
        toml::from_str(&config.to_toml().expect("serialises")).expect("parses");
    let mut in_config = BTreeSet::new();
    dotted_keys(&table, "", &mut in_config);
    let in_table: BTreeSet<String> = KEYS.iter().map(|key| key.name.to_owned()).collect();
    assert_eq!(in_config, in_table);
    assert_eq!(in_table.len(), KEYS.len(), "duplicate key names");
    let envs: BTreeSet<&str> = KEYS.iter().map(|key| key.env).collect();
    assert_eq!(envs.len(), KEYS.len(), "duplicate environment variables");
    assert!(KEYS.iter().all(|key| key.env.starts_with("TRIBUTARY_")));
}

#[test]
fn unknown_tributary_variables_are_reported() {
    let names = [
        "TRIBUTARY_KAFKA_PROT",
        "TRIBUTARY_KAFKA_PORT",
        "TRIBUTARY_CONFIG",
        "HOME",
        "RUST_LOG",
    ];
    let unknown = unknown_env_vars(names.iter().map(|name| name.to_string()));
    assert_eq!(unknown, vec!["TRIBUTARY_KAFKA_PROT".to_owned()]);
}

#[test]
fn cluster_keys_turn_the_cloud_engine_on_and_are_checked() {
    let local = load(None, &[], &[]).expect("defaults load");
    assert!(
        local.cloud_settings().is_none(),
        "the local engine by default"
    );
    assert_eq!(
        (local.cluster.flush_interval_ms, local.cluster.flush_bytes),
        (250, 8 << 20)
    );

    let cloud = load(
        None,
        &[
            ("TRIBUTARY_CLUSTER_FLUSH_INTERVAL_MS", "100"),
            ("TRIBUTARY_CLUSTER_ADVERTISED_HOST", "broker-1.internal"),
        ],
        &[
            (
                "cluster.metadata_url",
                "postgres://tributary@127.0.0.1:5432/tributary",
            ),
            ("cluster.objects_url", "s3://logs/prod/"),
            ("cluster.broker_id", "3"),
        ],
    )
    .expect("cluster config loads");
    let settings = cloud.cloud_settings().expect("cloud engine on");
    assert_eq!(settings.objects.bucket, "logs");
    assert_eq!(settings.objects.prefix, "prod");
    assert_eq!(settings.broker_id, 3);
    assert_eq!(settings.flush_interval, Duration::from_millis(100));
    assert_eq!(cloud.kafka_advertised_host(), "broker-1.internal");

    let missing = load(
        None,
        &[],
        &[("cluster.metadata_url", "postgres://u@127.0.0.1/db")],
    )
    .expect_err("objects_url is required");
    assert!(
        missing.to_string().contains("cluster.objects_url"),
        "{missing}"
    );
    let bad = load(
        None,
        &[("TRIBUTARY_CLUSTER_OBJECTS_URL", "http://not-s3")],
        &[("cluster.metadata_url", "postgres://u@127.0.0.1/db")],
    )
    .expect_err("objects_url must be s3://");
    assert!(bad.to_string().contains("cluster.objects_url"), "{bad}");
    let zero = load(
        None,
        &[("TRIBUTARY_CLUSTER_FLUSH_INTERVAL_MS", "0")],
        &[
            ("cluster.metadata_url", "postgres://u@127.0.0.1/db"),
            ("cluster.objects_url", "s3://b"),
        ],
    )
    .expect_err("a zero flush interval is refused");
    assert!(
        zero.to_string().contains("cluster.flush_interval_ms"),
        "{zero}"
    );
}

#[test]
fn printed_configuration_hides_the_database_password() {
    assert_eq!(
        redact_password("postgres://tributary:s3cret@db.example:5432/meta"),
        "postgres://tributary:****@db.example:5432/meta"
    );
    assert_eq!(
        redact_password("postgresql://u:p@ss@h/db?password=other&sslmode=require"),
        "postgresql://u:****@h/db?password=****&sslmode=require"
    );
    assert_eq!(
        redact_password("host=h user=u password='a b' dbname=d"),
        "host=h user=u password=**** dbname=d"
    );
    // Nothing to hide: unchanged, including a user with no password and `old_password=`-like keys.
    assert_eq!(redact_password("postgres://u@h/db"), "postgres://u@h/db");
    assert_eq!(redact_password("host=h xpassword=v"), "host=h xpassword=v");

    let mut config = Config::default();
    config.cluster.metadata_url = Some("postgres://u:hunter2@127.0.0.1/db".to_owned());
    let text = config.to_toml().expect("serialises");
    assert!(!text.contains("hunter2"), "{text}");
    assert!(text.contains("postgres://u:****@127.0.0.1/db"), "{text}");
    assert_eq!(
        config.cluster.metadata_url.as_deref(),
        Some("postgres://u:hunter2@127.0.0.1/db"),
        "printing must not change the configuration the broker runs with"
    );
}
