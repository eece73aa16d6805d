//! `tributary user add|list|delete`: the users SASL clients authenticate as, edited directly in
//! the data directory's metadata store (`metadata.redb`, namespace
//! [`tributary_api::USERS_NAMESPACE`], records as [`tributary_api::users`] documents them), or
//! with `cluster.metadata_url` in the cluster's PostgreSQL, which every broker reads (and is
//! told of the change through LISTEN/NOTIFY, see [`crate::cloud::records`]).
//!
//! Invariants: on the local engine these commands run while no broker has the data directory
//! open; redb's exclusive file lock makes them fail with a message naming the lock instead (a
//! running broker is never written behind its back). `list` and `delete` never create a data
//! directory; `add` creates it like a first broker start would. Passwords are never printed or
//! stored.

use std::io::{BufRead, Write};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use tributary_api::users::{
    ScramMechanism, USER_TAGS_NAMESPACE, UserRecord, validate_tag, validate_user_name,
};
use tributary_api::{MetadataStore, USERS_NAMESPACE};

use crate::broker::metadata::MetaStore;
use crate::broker::records::RecordsService;
use crate::cli::UserCommand;
use crate::config::Config;

/// A RocketMQ white address given on the command line, checked as the ACL will parse it;
/// blank is none.
fn checked_white_address(pattern: Option<&str>) -> anyhow::Result<Option<&str>> {
    let pattern = pattern.map(str::trim).filter(|p| !p.is_empty());
    if let Some(pattern) = pattern {
        tributary_rocketmq::white_address::WhiteList::parse(pattern)?;
    }
    Ok(pattern)
}

/// Runs one `tributary user` command; `stdin` feeds `--password-stdin`, results go to `out`.
pub fn run(
    config: &Config,
    command: &UserCommand,
    stdin: impl BufRead,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let place = store_name(config);
    match command {
        UserCommand::Add {
            name,
            password,
            password_stdin,
            replace,
            iterations,
            tags,
            rocketmq_secret,
            rocketmq_white_address,
        } => {
            validate_user_name(name)?;
            let password = match (password, password_stdin) {
                (Some(password), false) => password.clone(),
                (None, true) => read_password(stdin)?,
                _ => bail!("give exactly one of --password and --password-stdin"),
            };
            let white_address = checked_white_address(rocketmq_white_address.as_deref())?;
            let record = if *rocketmq_secret {
                UserRecord::from_password_with_rocketmq_secret(&password, *iterations)?
            } else {
                UserRecord::from_password(&password, *iterations)?
            }
            .with_rocketmq_white_address(white_address)?;
            let tags: Vec<&str> = tags
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect();
            for tag in &tags {
                validate_tag(tag)?;
            }
            with_store(config, true, async |store| {
                if !replace && store.get(USERS_NAMESPACE, name).await?.is_some() {
                    bail!("user `{name}` exists; pass --replace to change its password");
                }
                store.put(USERS_NAMESPACE, name, record.encode()).await?;
                if tags.is_empty() {
                    store.delete(USER_TAGS_NAMESPACE, name).await?;
                } else {
                    let value = Bytes::from(tags.join(","));
                    store.put(USER_TAGS_NAMESPACE, name, value).await?;
                }
                Ok(())
            })?;
            let mut mechanisms: Vec<&str> = ScramMechanism::ALL.iter().map(|m| m.name()).collect();
            if *rocketmq_secret {
                mechanisms.push("RocketMQ ACL secret key");
            }
            if let Some(pattern) = white_address {
                writeln!(
                    out,
                    "RocketMQ requests as `{name}` from `{pattern}` need no signature"
                )?;
            }
            writeln!(
                out,
                "user `{name}` saved: PLAIN, {} ({iterations} iterations) in {place}",
                mechanisms.join(", "),
            )?;
        }
        UserCommand::List => {
            let names = with_store(config, false, async |store| {
                Ok(store.scan(USERS_NAMESPACE, "").await?)
            })?;
            for (name, _) in names {
                writeln!(out, "{name}")?;
            }
        }
        UserCommand::Delete { name } => {
            with_store(config, false, async |store| {
                if !store.delete(USERS_NAMESPACE, name).await? {
                    bail!("no user `{name}` in {place}");
                }
                store.delete(USER_TAGS_NAMESPACE, name).await?;
                // As in RabbitMQ, the user's AMQP permissions go with it.
                let permissions = tributary_amqp::access::PERMISSION_NAMESPACE;
                for (key, _) in store.scan(permissions, "").await? {
                    if tributary_amqp::definitions::split_key(&key).get(1) == Some(&name.as_str()) {
                        store.delete(permissions, &key).await?;
                    }
                }
                Ok(())
            })?;
            writeln!(out, "user `{name}` deleted")?;
        }
    }
    Ok(())
}

/// Where the commands write: PostgreSQL with `cluster.metadata_url`, else the data directory.
fn store_name(config: &Config) -> String {
    match &config.cluster.metadata_url {
        Some(_) => "PostgreSQL (cluster.metadata_url)".to_owned(),
        None => config.data_dir.join("metadata.redb").display().to_string(),
    }
}

/// Opens the store the brokers read and runs `work` on a small runtime: with
/// `cluster.metadata_url` the cluster's PostgreSQL records (schema migrated first, writes
/// announced to the running brokers), else the data directory's metadata file (`create`: make
/// it when missing).
pub(crate) fn with_store<T>(
    config: &Config,
    create: bool,
    work: impl AsyncFnOnce(&dyn MetadataStore) -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a runtime")?;
    if let Some(url) = &config.cluster.metadata_url {
        return runtime.block_on(async {
            let store = crate::cloud::PgRecords::connect(url)
                .await
                .context("cannot open the cluster's metadata store (cluster.metadata_url)")?;
            work(&store).await
        });
    }
    let path = config.data_dir.join("metadata.redb");
    let store: Arc<dyn MetadataStore> = Arc::new(RecordsService::new(open(&path, create)?));
    runtime.block_on(work(store.as_ref()))
}

pub(crate) fn open(path: &Path, create: bool) -> anyhow::Result<Arc<MetaStore>> {
    if !create && !path.exists() {
        bail!(
            "no metadata store at {} (check --data-dir / data_dir)",
            path.display()
        );
    }
    MetaStore::open(path).with_context(|| format!("cannot open {}", path.display()))
}

/// The first line of `input`, without its line ending.
pub(crate) fn read_password(mut input: impl BufRead) -> anyhow::Result<String> {
    let mut line = String::new();
    input
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        bail!("standard input gave an empty password");
    }
    Ok(password.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &Path) -> Config {
        Config {
            data_dir: dir.join("data"),
            ..Config::default()
        }
    }

    fn add(config: &Config, name: &str, stdin: &str, replace: bool) -> anyhow::Result<String> {
        let mut out = Vec::new();
        let command = UserCommand::Add {
            name: name.to_owned(),
            password: None,
            password_stdin: true,
            replace,
            iterations: 4096,
            tags: String::new(),
            rocketmq_secret: false,
            rocketmq_white_address: None,
        };
        run(config, &command, stdin.as_bytes(), &mut out)?;
        Ok(String::from_utf8(out)?)
    }

    fn list(config: &Config) -> anyhow::Result<String> {
        let mut out = Vec::new();
        run(config, &UserCommand::List, &b""[..], &mut out)?;
        Ok(String::from_utf8(out)?)
    }

    #[test]
    fn add_list_replace_and_delete_users() {
        let dir = tempfile::tempdir().unwrap();
        let config = config(dir.path());
        assert!(list(&config).is_err(), "no data directory yet");
        assert!(
            add(&config, "bob", "pw\r\n", false)
                .unwrap()
                .contains("bob")
        );
        add(&config, "alice", "secret\nignored", false).unwrap();
        assert_eq!(list(&config).unwrap(), "alice\nbob\n");
        assert!(add(&config, "alice", "other", false).is_err());
        add(&config, "alice", "other", true).unwrap();

        let store = MetaStore::open(&config.data_dir.join("metadata.redb")).unwrap();
        let value = store.get_record(USERS_NAMESPACE, "bob").unwrap().unwrap();
        let bob = UserRecord::decode(&value).unwrap();
        assert!(bob.verify_plain("pw").unwrap());
        let value = store.get_record(USERS_NAMESPACE, "alice").unwrap().unwrap();
        assert!(
            UserRecord::decode(&value)
                .unwrap()
                .verify_plain("other")
                .unwrap()
        );
        // While the store is open (as a running broker holds it) the command names the lock.
        let locked = format!("{:#}", list(&config).unwrap_err());
        assert!(locked.contains("locked"), "{locked}");
        drop(store);

        let mut out = Vec::new();
        let delete = UserCommand::Delete {
            name: "bob".to_owned(),
        };
        run(&config, &delete, &b""[..], &mut out).unwrap();
        assert!(run(&config, &delete, &b""[..], &mut out).is_err());
        assert_eq!(list(&config).unwrap(), "alice\n");
        assert!(
            add(&config, "carol", "\n", false).is_err(),
            "empty password"
        );
        assert!(add(&config, "", "pw", false).is_err(), "empty name");
    }
}

#[cfg(test)]
mod tag_tests {
    use super::*;

    fn add_tagged(config: &Config, name: &str, tags: &str) -> anyhow::Result<()> {
        let command = UserCommand::Add {
            name: name.to_owned(),
            password: Some("pw".to_owned()),
            password_stdin: false,
            replace: true,
            iterations: 4096,
            tags: tags.to_owned(),
            rocketmq_secret: false,
            rocketmq_white_address: None,
        };
        run(config, &command, &b""[..], &mut Vec::new())
    }

    #[test]
    fn tags_are_stored_replaced_and_deleted_with_the_user() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        let path = config.data_dir.join("metadata.redb");
        let tags_of = |name: &str| {
            let store = MetaStore::open(&path).unwrap();
            store.get_record(USER_TAGS_NAMESPACE, name).unwrap()
        };
        add_tagged(&config, "ops", "administrator, monitoring").unwrap();
        assert_eq!(
            tags_of("ops").as_deref(),
            Some(&b"administrator,monitoring"[..])
        );
        add_tagged(&config, "ops", "").unwrap();
        assert_eq!(tags_of("ops"), None, "no tags: no record");
        assert!(add_tagged(&config, "ops", "bad\ttag").is_err());
        add_tagged(&config, "ops", "administrator").unwrap();
        let delete = UserCommand::Delete {
            name: "ops".to_owned(),
        };
        run(&config, &delete, &b""[..], &mut Vec::new()).unwrap();
        assert_eq!(tags_of("ops"), None);
    }
}
