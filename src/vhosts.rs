//! `tributary vhost add|list|delete` and `tributary permissions set|clear|list`: AMQP virtual
//! hosts and users' per-vhost permissions, edited in the data directory's metadata store with
//! the record formats of [`tributary_amqp::access`].
//!
//! With `cluster.metadata_url` they edit the cluster's PostgreSQL records, as `tributary user`
//! does. Invariants: as for `tributary user`, on the local engine these run while no broker has
//! the data directory open (redb's lock refuses otherwise); `list` never creates a data
//! directory. Deleting a vhost removes its definitions and permissions at once; the broker
//! removes the messages of its queues when it next starts.

use std::io::Write;

use anyhow::bail;
use tributary_amqp::access::{self, Permissions};

use crate::cli::{PermissionsCommand, VhostCommand};
use crate::config::Config;

use crate::users::with_store;

pub fn run_vhost(
    config: &Config,
    command: &VhostCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        VhostCommand::Add { name } => {
            if !with_store(config, true, async |store| {
                Ok(access::add_vhost(store, name).await?)
            })? {
                bail!("vhost `{name}` exists");
            }
            writeln!(out, "vhost `{name}` added")?;
        }
        VhostCommand::List => {
            let names = with_store(config, false, async |store| {
                Ok(access::list_vhosts(store).await?)
            })?;
            for name in names {
                writeln!(out, "{name}")?;
            }
        }
        VhostCommand::Delete { name } => {
            if !with_store(config, false, async |store| {
                Ok(access::delete_vhost(store, name).await?)
            })? {
                bail!("no vhost `{name}`");
            }
            writeln!(out, "vhost `{name}` deleted")?;
        }
    }
    Ok(())
}

pub fn run_permissions(
    config: &Config,
    command: &PermissionsCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        PermissionsCommand::Set {
            vhost,
            user,
            configure,
            write,
            read,
        } => {
            let permissions = Permissions {
                configure: configure.clone(),
                write: write.clone(),
                read: read.clone(),
            };
            with_store(config, true, async |store| {
                Ok(access::set_permissions(store, vhost, user, &permissions).await?)
            })?;
            writeln!(out, "permissions of `{user}` on vhost `{vhost}` set")?;
        }
        PermissionsCommand::Clear { vhost, user } => {
            if !with_store(config, false, async |store| {
                Ok(access::clear_permissions(store, vhost, user).await?)
            })? {
                bail!("user `{user}` has no permissions on vhost `{vhost}`");
            }
            writeln!(out, "permissions of `{user}` on vhost `{vhost}` cleared")?;
        }
        PermissionsCommand::List => {
            let all = with_store(config, false, async |store| {
                Ok(access::list_permissions(store).await?)
            })?;
            for (vhost, user, p) in all {
                writeln!(
                    out,
                    "{vhost}\t{user}\t{}\t{}\t{}",
                    p.configure, p.write, p.read
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_all(config: &Config) -> anyhow::Result<String> {
        let mut out = Vec::new();
        run_vhost(config, &VhostCommand::List, &mut out)?;
        run_permissions(config, &PermissionsCommand::List, &mut out)?;
        Ok(String::from_utf8(out)?)
    }

    #[test]
    fn vhosts_and_permissions_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let config = Config {
            data_dir: dir.path().join("data"),
            ..Config::default()
        };
        assert!(run_all(&config).is_err(), "no data directory yet");
        let mut out = Vec::new();
        let add = VhostCommand::Add {
            name: "shop".into(),
        };
        run_vhost(&config, &add, &mut out).unwrap();
        assert!(run_vhost(&config, &add, &mut out).is_err(), "exists");
        let set = PermissionsCommand::Set {
            vhost: "shop".into(),
            user: "alice".into(),
            configure: "^alice\\.".into(),
            write: ".*".into(),
            read: String::new(),
        };
        run_permissions(&config, &set, &mut out).unwrap();
        let bad = PermissionsCommand::Set {
            vhost: "nope".into(),
            user: "alice".into(),
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        };
        assert!(run_permissions(&config, &bad, &mut out).is_err());
        assert_eq!(
            run_all(&config).unwrap(),
            "/\nshop\n/\tguest\t.*\t.*\t.*\nshop\talice\t^alice\\.\t.*\t\n"
        );
        let delete = VhostCommand::Delete {
            name: "shop".into(),
        };
        run_vhost(&config, &delete, &mut out).unwrap();
        let root = VhostCommand::Delete { name: "/".into() };
        assert!(run_vhost(&config, &root, &mut out).is_err());
        assert_eq!(run_all(&config).unwrap(), "/\n/\tguest\t.*\t.*\t.*\n");
    }
}
