//! [`StoreAccess`]: the AMQP permissions of the vhost `/` answering other protocols'
//! [`AccessControl`] questions, so one `tributary permissions set / USER ...` governs a user's
//! topics and groups over Kafka, RocketMQ and AMQP alike.
//!
//! Invariants: every check reads the user's current record (a changed or cleared grant applies
//! to the next request, as RabbitMQ applies it to the next channel); compiled regexes are cached
//! per user only while the record is unchanged; a record that does not compile refuses (and is
//! reported as an error), never allows.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use parking_lot::Mutex;
use tributary_api::users::{ADMINISTRATOR_TAG, get_tags};
use tributary_api::{Access, AccessControl, EngineError, EngineResult, MetadataStore};

use super::{DEFAULT_VHOST, Grant, Permissions, permissions};

/// Users whose compiled grants are kept; past this the cache starts over (it only saves
/// regex compilation).
const MAX_CACHED_USERS: usize = 1024;

/// Permission checks over the metadata store's AMQP permissions on `/`.
#[derive(Debug)]
pub struct StoreAccess {
    store: Arc<dyn MetadataStore>,
    compiled: Mutex<HashMap<String, (Permissions, Arc<Grant>)>>,
}

impl StoreAccess {
    pub fn new(store: Arc<dyn MetadataStore>) -> Self {
        Self {
            store,
            compiled: Mutex::new(HashMap::new()),
        }
    }

    async fn grant(&self, user: &str) -> EngineResult<Option<Arc<Grant>>> {
        let Some(current) = permissions(self.store.as_ref(), DEFAULT_VHOST, user).await? else {
            return Ok(None);
        };
        if let Some((seen, grant)) = self.compiled.lock().get(user)
            && *seen == current
        {
            return Ok(Some(Arc::clone(grant)));
        }
        let grant =
            Arc::new(
                Grant::compile(&current).map_err(|message| EngineError::Metadata {
                    context: "compile a user's permissions",
                    message,
                })?,
            );
        let mut compiled = self.compiled.lock();
        if compiled.len() >= MAX_CACHED_USERS {
            compiled.clear();
        }
        compiled.insert(user.to_owned(), (current, Arc::clone(&grant)));
        Ok(Some(grant))
    }
}

#[async_trait]
impl AccessControl for StoreAccess {
    async fn allows(&self, user: &str, access: Access, name: &str) -> EngineResult<bool> {
        Ok(self
            .grant(user)
            .await?
            .is_some_and(|grant| grant.allows_access(access, name)))
    }

    async fn is_administrator(&self, user: &str) -> EngineResult<bool> {
        Ok(get_tags(self.store.as_ref(), user)
            .await?
            .iter()
            .any(|tag| tag == ADMINISTRATOR_TAG))
    }
}
