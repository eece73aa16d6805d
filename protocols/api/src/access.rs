//! The question every protocol's authorization asks of the one user store: may this
//! authenticated user do this to that named resource? The broker's users
//! ([`crate::users`]) carry RabbitMQ-style permissions (configure / write / read regexes per
//! vhost, edited with `tributary permissions`); a frontend other than AMQP asks them through
//! [`AccessControl`], so its checks and AMQP's read the same records.
//!
//! Meaning outside AMQP (resources are topic and group names, on the vhost `/`):
//! [`Access::Write`] is producing to a topic; [`Access::Read`] is consuming a topic and using a
//! consumer group (joining it, reading and committing its offsets); [`Access::Configure`] is
//! creating, growing and deleting a topic.
//!
//! Invariant: a user without permissions on `/` is allowed nothing; an implementation that
//! cannot read a user's permissions answers with an error, never with "allowed".

use async_trait::async_trait;

use crate::error::EngineResult;

/// One of RabbitMQ's three permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Access {
    Configure,
    Write,
    Read,
}

impl Access {
    /// The permission's name, as `tributary permissions` lists them.
    pub fn name(self) -> &'static str {
        match self {
            Self::Configure => "configure",
            Self::Write => "write",
            Self::Read => "read",
        }
    }
}

/// Permission checks against the broker's user store.
#[async_trait]
pub trait AccessControl: Send + Sync + std::fmt::Debug {
    /// Whether `user` holds `access` on the resource `name` of the default vhost.
    async fn allows(&self, user: &str, access: Access, name: &str) -> EngineResult<bool>;

    /// Whether `user` has the `administrator` tag (admin-only requests).
    async fn is_administrator(&self, user: &str) -> EngineResult<bool>;
}
