//! Kafka's authorizer (`kafka.authorizer`): ACL bindings kept in the metadata store, the
//! decision of [`model::allowed`] for every request, and super users who bypass it.
//!
//! Storage: one record per binding in [`ACL_NAMESPACE`]; the key holds every field,
//! `type␟pattern␟operation␟permission␟principal␟host␟name` (␟ = U+001F, numbers in decimal, the
//! name last so that it may hold any character), the value is empty. Principals and hosts with a
//! U+001F are refused at creation.
//!
//! Invariants: with the authorizer off every check passes and the ACL APIs answer
//! SECURITY_DISABLED, as Kafka without an authorizer does; with it on a principal is a super user
//! (`kafka.super_users`) or is held to the bindings; the bindings are re-read from the store at
//! least every [`REFRESH`] (several brokers over one store see each other's changes), at once
//! after a change made here, and at the next check after the store's generation of the
//! namespace moved (another broker's change, announced by the cloud engine); a store that
//! cannot be read denies (logged), never allows: a failed reload never falls back to the old
//! set.

pub(crate) mod model;

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::warn;
use tributary_api::{EngineError, EngineResult, MetadataStore};

use model::{AclBinding, AclFilter};

/// Namespace of the ACL bindings in the metadata store.
pub const ACL_NAMESPACE: &str = "kafka.acl";
/// The principal of a connection that did not authenticate (SASL off).
pub(crate) const ANONYMOUS: &str = "User:ANONYMOUS";
/// Longest the cached bindings are used before the store is read again.
const REFRESH: Duration = Duration::from_secs(2);
const SEPARATOR: char = '\u{1f}';

/// The bindings, when they were read and the store's generation of the namespace then.
type Cached = (Instant, u64, Arc<Vec<AclBinding>>);

/// The authorizer of one Kafka listener.
#[derive(Debug)]
pub(crate) struct Authorizer {
    enabled: bool,
    /// Principals (`User:name`) allowed everything.
    super_users: Vec<String>,
    store: Arc<dyn MetadataStore>,
    cached: parking_lot::Mutex<Option<Cached>>,
    /// Serialises changes, so a create and a delete do not interleave their store writes.
    changes: tokio::sync::Mutex<()>,
}

impl Authorizer {
    pub(crate) fn new(
        enabled: bool,
        super_users: &[String],
        store: Arc<dyn MetadataStore>,
    ) -> Self {
        let super_users = super_users
            .iter()
            .map(|user| match user.strip_prefix("User:") {
                Some(_) => user.clone(),
                None => format!("User:{user}"),
            })
            .collect();
        Self {
            enabled,
            super_users,
            store,
            cached: parking_lot::Mutex::new(None),
            changes: tokio::sync::Mutex::new(()),
        }
    }

    pub(crate) fn enabled(&self) -> bool {
        self.enabled
    }

    fn is_super_user(&self, principal: &str) -> bool {
        self.super_users.iter().any(|user| user == principal)
    }

    async fn bindings(&self) -> EngineResult<Arc<Vec<AclBinding>>> {
        // Read before the scan: a change landing during it moves the generation again.
        let generation = self.store.generation(ACL_NAMESPACE);
        if let Some((loaded, seen, bindings)) = self.cached.lock().as_ref()
            && loaded.elapsed() < REFRESH
            && *seen == generation
        {
            return Ok(Arc::clone(bindings));
        }
        let mut bindings = Vec::new();
        for (key, _) in self.store.scan(ACL_NAMESPACE, "").await? {
            // Fail closed: a skipped DENY would grant what it denies, so one unreadable record
            // makes the whole set unreadable (callers deny and say why).
            let binding = decode_key(&key).ok_or_else(|| EngineError::Metadata {
                context: "reading the Kafka ACLs",
                message: format!("unreadable ACL record `{key}`"),
            })?;
            bindings.push(binding);
        }
        let bindings = Arc::new(bindings);
        *self.cached.lock() = Some((Instant::now(), generation, Arc::clone(&bindings)));
        Ok(bindings)
    }

    /// Whether `principal` from `host` may do `operation` on (`resource_type`, `name`).
    pub(crate) async fn allows(
        &self,
        principal: &str,
        host: &str,
        operation: i8,
        resource_type: i8,
        name: &str,
    ) -> bool {
        if !self.enabled || self.is_super_user(principal) {
            return true;
        }
        match self.bindings().await {
            Ok(bindings) => {
                model::allowed(&bindings, principal, host, operation, resource_type, name)
            }
            Err(error) => {
                warn!(%error, principal, "cannot read the Kafka ACLs; denying");
                false
            }
        }
    }

    /// Whether some ALLOW binding for `principal` grants `operation` on some resource of
    /// `resource_type` (Kafka lets a producer be idempotent if it may write any topic).
    pub(crate) async fn allows_any(
        &self,
        principal: &str,
        host: &str,
        operation: i8,
        resource_type: i8,
    ) -> bool {
        if !self.enabled || self.is_super_user(principal) {
            return true;
        }
        let Ok(bindings) = self.bindings().await else {
            return false;
        };
        bindings.iter().any(|binding| {
            binding.resource_type == resource_type
                && binding.permission == model::permission::ALLOW
                && (binding.principal == principal || binding.principal == "User:*")
                && (binding.host == host || binding.host == model::WILDCARD)
                && model::allowed(
                    std::slice::from_ref(binding),
                    principal,
                    host,
                    operation,
                    resource_type,
                    &binding.resource_name,
                )
        })
    }

    /// Stores `binding` (idempotent: an existing binding is kept).
    pub(crate) async fn create(&self, binding: &AclBinding) -> EngineResult<()> {
        if binding.principal.contains(SEPARATOR) || binding.host.contains(SEPARATOR) {
            return Err(EngineError::InvalidSetting {
                name: "acl".to_owned(),
                reason: "a principal or host holds U+001F".to_owned(),
            });
        }
        let _change = self.changes.lock().await;
        self.store
            .put(ACL_NAMESPACE, &encode_key(binding), Bytes::new())
            .await?;
        *self.cached.lock() = None;
        Ok(())
    }

    /// The stored bindings `filter` selects, freshly read.
    pub(crate) async fn describe(&self, filter: &AclFilter) -> EngineResult<Vec<AclBinding>> {
        *self.cached.lock() = None;
        let bindings = self.bindings().await?;
        Ok(bindings
            .iter()
            .filter(|binding| filter.matches(binding))
            .cloned()
            .collect())
    }

    /// Deletes the bindings `filter` selects and returns them.
    pub(crate) async fn delete(&self, filter: &AclFilter) -> EngineResult<Vec<AclBinding>> {
        let _change = self.changes.lock().await;
        let selected = self.describe(filter).await?;
        for binding in &selected {
            self.store
                .delete(ACL_NAMESPACE, &encode_key(binding))
                .await?;
        }
        *self.cached.lock() = None;
        Ok(selected)
    }
}

fn encode_key(binding: &AclBinding) -> String {
    format!(
        "{}{SEPARATOR}{}{SEPARATOR}{}{SEPARATOR}{}{SEPARATOR}{}{SEPARATOR}{}{SEPARATOR}{}",
        binding.resource_type,
        binding.pattern_type,
        binding.operation,
        binding.permission,
        binding.principal,
        binding.host,
        binding.resource_name
    )
}

fn decode_key(key: &str) -> Option<AclBinding> {
    let mut parts = key.splitn(7, SEPARATOR);
    let mut code = || parts.next()?.parse::<i8>().ok();
    let (resource_type, pattern_type, operation, permission) = (code()?, code()?, code()?, code()?);
    let principal = parts.next()?.to_owned();
    let host = parts.next()?.to_owned();
    let resource_name = parts.next()?.to_owned();
    let binding = AclBinding {
        resource_type,
        pattern_type,
        resource_name,
        principal,
        host,
        operation,
        permission,
    };
    binding.invalid().is_none().then_some(binding)
}

#[cfg(test)]
mod tests {
    use super::*;
    use model::{operation, pattern, permission, resource};

    #[test]
    fn keys_round_trip_with_any_name() {
        let binding = AclBinding {
            resource_type: resource::GROUP,
            pattern_type: pattern::PREFIXED,
            resource_name: "a\u{1f}b c".to_owned(),
            principal: "User:alice".to_owned(),
            host: "*".to_owned(),
            operation: operation::READ,
            permission: permission::ALLOW,
        };
        assert_eq!(decode_key(&encode_key(&binding)), Some(binding));
        assert_eq!(decode_key("2\u{1f}3\u{1f}x"), None);
    }

    #[tokio::test]
    async fn an_unreadable_record_denies_instead_of_being_skipped() {
        let store = Arc::new(tributary_api::metadata::MemoryMetadataStore::default());
        let allow = AclBinding {
            resource_type: resource::TOPIC,
            pattern_type: pattern::LITERAL,
            resource_name: "t".to_owned(),
            principal: "User:alice".to_owned(),
            host: "*".to_owned(),
            operation: operation::READ,
            permission: permission::ALLOW,
        };
        store
            .put(ACL_NAMESPACE, &encode_key(&allow), Bytes::new())
            .await
            .unwrap();
        let authorizer = Authorizer::new(true, &[], store.clone());
        let may_read = async |authorizer: &Authorizer| {
            authorizer
                .allows(
                    "User:alice",
                    "127.0.0.1",
                    operation::READ,
                    resource::TOPIC,
                    "t",
                )
                .await
        };
        assert!(may_read(&authorizer).await);
        // Perhaps the DENY that would have applied: skipping it would grant the read.
        store
            .put(ACL_NAMESPACE, "2\u{1f}3\u{1f}x", Bytes::new())
            .await
            .unwrap();
        let authorizer = Authorizer::new(true, &[], store);
        assert!(!may_read(&authorizer).await);
    }
}
