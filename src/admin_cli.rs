//! `tributary user|vhost|permissions` against a running broker: when a broker holds the data
//! directory's metadata store (or `--admin-url` is given), the commands go through the admin
//! API, so they apply at once; otherwise [`crate::users`] and [`crate::vhosts`] edit the store
//! directly, as before. With `cluster.metadata_url` (and no `--admin-url`) they always edit the
//! cluster's PostgreSQL records directly: the brokers read those and are notified.
//!
//! The API's address is `--admin-url` / `TRIBUTARY_ADMIN_URL`, else `http://<bind>:<http.port>`
//! of the configuration (loopback when bound to every address); credentials are
//! `--admin-user` / `TRIBUTARY_ADMIN_USER` and `--admin-password` / `TRIBUTARY_ADMIN_PASSWORD`
//! (default `guest`/`guest`, which the broker accepts from loopback only).
//!
//! Output is the same as offline, so scripts work against both.

use std::io::{BufRead, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use anyhow::{Context, bail};
use serde_json::{Value, json};

use crate::admin_client::{AdminClient, Answer, api_path};
use crate::broker::metadata::MetaStore;
use crate::cli::{AdminFlags, PermissionsCommand, UserCommand, VhostCommand};
use crate::config::Config;

/// The admin API to use, or `None` to edit the stopped data directory.
pub fn target(flags: &AdminFlags, config: &Config) -> anyhow::Result<Option<AdminClient>> {
    let user = flags.admin_user.as_deref().unwrap_or("guest");
    let password = flags.admin_password.as_deref().unwrap_or("guest");
    if let Some(url) = &flags.admin_url {
        return AdminClient::new(url, user, password).map(Some);
    }
    if config.cluster.metadata_url.is_some() {
        // The brokers read users, vhosts and permissions from PostgreSQL and are told of
        // changes: write there directly, whichever broker holds the data directory.
        return Ok(None);
    }
    let store = config.data_dir.join("metadata.redb");
    if !MetaStore::held_by_another_process(&store) {
        return Ok(None);
    }
    if !config.http.enabled || !config.http.admin_enabled {
        bail!(
            "a broker holds {} and its admin API is off (http.enabled / http.admin_enabled); \
             stop the broker or enable the API",
            store.display()
        );
    }
    let host = match config.bind {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    let url = format!("http://{}", SocketAddr::new(host, config.http.port));
    AdminClient::new(&url, user, password).map(Some)
}

/// The answer, or an error naming the API's reason.
fn expect(answer: Answer, what: &str) -> anyhow::Result<Value> {
    if (200..300).contains(&answer.status) {
        return Ok(answer.body);
    }
    bail!(
        "{what}: the admin API answered {}: {}",
        answer.status,
        answer.reason()
    )
}

pub fn run_user(
    client: &AdminClient,
    command: &UserCommand,
    stdin: impl BufRead,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        UserCommand::Add {
            name,
            password,
            password_stdin,
            replace,
            tags,
            rocketmq_secret,
            rocketmq_white_address,
            ..
        } => {
            let password = match (password, password_stdin) {
                (Some(password), false) => password.clone(),
                (None, true) => crate::users::read_password(stdin)?,
                _ => bail!("give exactly one of --password and --password-stdin"),
            };
            let path = api_path(&["users", name]);
            if !replace && client.call("GET", &path, None)?.status == 200 {
                bail!("user `{name}` exists; pass --replace to change its password");
            }
            let body = json!({
                "password": password,
                "tags": tags,
                "rocketmq_secret": rocketmq_secret,
                "rocketmq_white_address": rocketmq_white_address,
            });
            expect(client.call("PUT", &path, Some(&body))?, "add user")?;
            writeln!(out, "user `{name}` saved through the admin API")?;
        }
        UserCommand::List => {
            let users = expect(
                client.call("GET", &api_path(&["users"]), None)?,
                "list users",
            )?;
            for user in users.as_array().into_iter().flatten() {
                writeln!(out, "{}", user["name"].as_str().unwrap_or_default())?;
            }
        }
        UserCommand::Delete { name } => {
            let answer = client.call("DELETE", &api_path(&["users", name]), None)?;
            expect(answer, &format!("delete user `{name}`"))?;
            writeln!(out, "user `{name}` deleted")?;
        }
    }
    Ok(())
}

pub fn run_vhost(
    client: &AdminClient,
    command: &VhostCommand,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    match command {
        VhostCommand::Add { name } => {
            let answer = client.call("PUT", &api_path(&["vhosts", name]), Some(&json!({})))?;
            if answer.status == 204 {
                bail!("vhost `{name}` exists");
            }
            expect(answer, "add vhost")?;
            writeln!(out, "vhost `{name}` added")?;
        }
        VhostCommand::List => {
            let vhosts = expect(
                client.call("GET", &api_path(&["vhosts"]), None)?,
                "list vhosts",
            )?;
            for vhost in vhosts.as_array().into_iter().flatten() {
                writeln!(out, "{}", vhost["name"].as_str().unwrap_or_default())?;
            }
        }
        VhostCommand::Delete { name } => {
            let answer = client.call("DELETE", &api_path(&["vhosts", name]), None)?;
            expect(answer, &format!("delete vhost `{name}`"))?;
            writeln!(out, "vhost `{name}` deleted")?;
        }
    }
    Ok(())
}

pub fn run_permissions(
    client: &AdminClient,
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
            let body = json!({ "configure": configure, "write": write, "read": read });
            let path = api_path(&["permissions", vhost, user]);
            expect(client.call("PUT", &path, Some(&body))?, "set permissions")?;
            writeln!(out, "permissions of `{user}` on vhost `{vhost}` set")?;
        }
        PermissionsCommand::Clear { vhost, user } => {
            let path = api_path(&["permissions", vhost, user]);
            expect(client.call("DELETE", &path, None)?, "clear permissions")
                .context("clear permissions")?;
            writeln!(out, "permissions of `{user}` on vhost `{vhost}` cleared")?;
        }
        PermissionsCommand::List => {
            let all = expect(
                client.call("GET", &api_path(&["permissions"]), None)?,
                "list permissions",
            )?;
            for p in all.as_array().into_iter().flatten() {
                let field = |name: &str| p[name].as_str().unwrap_or_default().to_owned();
                writeln!(
                    out,
                    "{}\t{}\t{}\t{}\t{}",
                    field("vhost"),
                    field("user"),
                    field("configure"),
                    field("write"),
                    field("read")
                )?;
            }
        }
    }
    Ok(())
}
