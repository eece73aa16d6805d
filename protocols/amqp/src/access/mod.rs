//! Virtual hosts and per-(vhost, user) permissions as RabbitMQ has them, stored in the engine's
//! metadata store; shared by the AMQP frontend and the `tributary vhost|permissions` commands.
//!
//! Records (values are one AMQP field table in wire encoding, like [`crate::definitions`]):
//!
//! | namespace | key | value table entries |
//! |---|---|---|
//! | `amqp.vhost` | vhost name | `description` (S) |
//! | `amqp.permission` | vhost, U+001F, user | `configure`, `write`, `read` (S, regexes) |
//!
//! Invariants: the vhost `/` always exists. The first time any store is touched through
//! [`ensure_defaults`] (a broker start or a command), `/` is written together with RabbitMQ's
//! default grant, `guest` with `.*` `.*` `.*` on `/`; once `/` has a record nothing is re-seeded,
//! so a cleared guest grant stays cleared. Deleting a vhost deletes its permissions and its
//! durable definitions; its queues' messages go when the broker next opens it (see
//! [`crate::vhost`]).

mod control;
pub(crate) mod follow;
mod grant;
pub mod login;

use bytes::Bytes;
use tributary_api::{EngineError, EngineResult, MetadataStore};

use crate::codec::table::{FieldTable, FieldValue};
use crate::definitions::{
    self as defs, BINDING_NAMESPACE, EXCHANGE_BINDING_NAMESPACE, EXCHANGE_NAMESPACE,
    QUEUE_NAMESPACE,
};

pub use control::StoreAccess;
pub use grant::Grant;

pub const VHOST_NAMESPACE: &str = "amqp.vhost";
pub const PERMISSION_NAMESPACE: &str = "amqp.permission";
/// The vhost that always exists.
pub const DEFAULT_VHOST: &str = "/";
/// The user RabbitMQ creates on first boot (loopback-only by default).
pub const DEFAULT_USER: &str = "guest";
/// Longest vhost name (an AMQP shortstr).
pub const MAX_VHOST_BYTES: usize = 255;

/// One user's configure / write / read regexes on one vhost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permissions {
    pub configure: String,
    pub write: String,
    pub read: String,
}

impl Permissions {
    /// `.*` for all three.
    pub fn full() -> Self {
        Self {
            configure: ".*".into(),
            write: ".*".into(),
            read: ".*".into(),
        }
    }

    fn encode(&self) -> Bytes {
        let mut table = FieldTable::default();
        for (name, value) in [
            ("configure", &self.configure),
            ("write", &self.write),
            ("read", &self.read),
        ] {
            table.insert(name, text(value));
        }
        defs::encode(&table)
    }

    fn decode(value: &[u8]) -> Option<Self> {
        let table = defs::decode(value)?;
        let field = |name| {
            table
                .get(name)
                .and_then(FieldValue::as_str)
                .map(str::to_owned)
        };
        Some(Self {
            configure: field("configure")?,
            write: field("write")?,
            read: field("read")?,
        })
    }
}

fn text(value: &str) -> FieldValue {
    FieldValue::LongString(Bytes::copy_from_slice(value.as_bytes()))
}

fn invalid(reason: String) -> EngineError {
    EngineError::Metadata {
        context: "change AMQP access",
        message: reason,
    }
}

/// A vhost name any client can send in `connection.open`: 1..=255 bytes, no control characters.
pub fn validate_vhost_name(name: &str) -> EngineResult<()> {
    if name.is_empty() || name.len() > MAX_VHOST_BYTES || name.chars().any(char::is_control) {
        return Err(invalid(format!(
            "a vhost name has 1 to {MAX_VHOST_BYTES} bytes and no control characters"
        )));
    }
    Ok(())
}

fn permission_key(vhost: &str, user: &str) -> String {
    defs::key(&[vhost, user])
}

/// Writes `/` and guest's grant on it unless `/` already has a record.
pub async fn ensure_defaults(store: &dyn MetadataStore) -> EngineResult<()> {
    if store.get(VHOST_NAMESPACE, DEFAULT_VHOST).await?.is_some() {
        return Ok(());
    }
    store
        .put(
            PERMISSION_NAMESPACE,
            &permission_key(DEFAULT_VHOST, DEFAULT_USER),
            Permissions::full().encode(),
        )
        .await?;
    store
        .put(VHOST_NAMESPACE, DEFAULT_VHOST, vhost_record(""))
        .await
}

fn vhost_record(description: &str) -> Bytes {
    let mut table = FieldTable::default();
    table.insert("description", text(description));
    defs::encode(&table)
}

pub async fn vhost_exists(store: &dyn MetadataStore, name: &str) -> EngineResult<bool> {
    Ok(name == DEFAULT_VHOST || store.get(VHOST_NAMESPACE, name).await?.is_some())
}

/// Adds a vhost; returns false when it already existed.
pub async fn add_vhost(store: &dyn MetadataStore, name: &str) -> EngineResult<bool> {
    validate_vhost_name(name)?;
    ensure_defaults(store).await?;
    if vhost_exists(store, name).await? {
        return Ok(false);
    }
    store.put(VHOST_NAMESPACE, name, vhost_record("")).await?;
    Ok(true)
}

/// Every vhost name, in key order.
pub async fn list_vhosts(store: &dyn MetadataStore) -> EngineResult<Vec<String>> {
    ensure_defaults(store).await?;
    let records = store.scan(VHOST_NAMESPACE, "").await?;
    Ok(records.into_iter().map(|(name, _)| name).collect())
}

/// Deletes a vhost with its permissions and durable definitions; returns false when it did not
/// exist. `/` cannot be deleted.
pub async fn delete_vhost(store: &dyn MetadataStore, name: &str) -> EngineResult<bool> {
    if name == DEFAULT_VHOST {
        return Err(invalid("the default vhost `/` cannot be deleted".into()));
    }
    if store.get(VHOST_NAMESPACE, name).await?.is_none() {
        return Ok(false);
    }
    let prefix = defs::key(&[name, ""]);
    for namespace in [
        PERMISSION_NAMESPACE,
        BINDING_NAMESPACE,
        EXCHANGE_BINDING_NAMESPACE,
        QUEUE_NAMESPACE,
        EXCHANGE_NAMESPACE,
    ] {
        for (key, _) in store.scan(namespace, &prefix).await? {
            store.delete(namespace, &key).await?;
        }
    }
    store.delete(VHOST_NAMESPACE, name).await
}

/// Sets a user's permissions on a vhost (the vhost must exist; the regexes must compile).
pub async fn set_permissions(
    store: &dyn MetadataStore,
    vhost: &str,
    user: &str,
    permissions: &Permissions,
) -> EngineResult<()> {
    ensure_defaults(store).await?;
    if !vhost_exists(store, vhost).await? {
        return Err(invalid(format!("no vhost `{vhost}`")));
    }
    Grant::compile(permissions).map_err(invalid)?;
    store
        .put(
            PERMISSION_NAMESPACE,
            &permission_key(vhost, user),
            permissions.encode(),
        )
        .await
}

/// Removes a user's permissions on a vhost; returns whether there were any.
pub async fn clear_permissions(
    store: &dyn MetadataStore,
    vhost: &str,
    user: &str,
) -> EngineResult<bool> {
    ensure_defaults(store).await?;
    store
        .delete(PERMISSION_NAMESPACE, &permission_key(vhost, user))
        .await
}

/// The permissions of `user` on `vhost`, if any.
pub async fn permissions(
    store: &dyn MetadataStore,
    vhost: &str,
    user: &str,
) -> EngineResult<Option<Permissions>> {
    let value = store
        .get(PERMISSION_NAMESPACE, &permission_key(vhost, user))
        .await?;
    Ok(value.as_deref().and_then(Permissions::decode))
}

/// Every (vhost, user, permissions), in key order.
pub async fn list_permissions(
    store: &dyn MetadataStore,
) -> EngineResult<Vec<(String, String, Permissions)>> {
    ensure_defaults(store).await?;
    let records = store.scan(PERMISSION_NAMESPACE, "").await?;
    let mut out = Vec::with_capacity(records.len());
    for (key, value) in records {
        if let ([vhost, user], Some(permissions)) =
            (&defs::split_key(&key)[..], Permissions::decode(&value))
        {
            out.push(((*vhost).to_owned(), (*user).to_owned(), permissions));
        }
    }
    Ok(out)
}
