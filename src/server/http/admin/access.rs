//! `/api/vhosts`, `/api/users`, `/api/permissions`: RabbitMQ's paths and shapes over the
//! broker's user store and AMQP access records, applied to open connections at once.
//!
//! Users are exported with their stored SCRAM record as `password_hash` (base64) and
//! `hashing_algorithm` [`HASHING_ALGORITHM`], so definitions re-import losslessly; a
//! RabbitMQ password hash (another algorithm) cannot be turned into SCRAM credentials and is
//! refused with a 400 naming the user rather than importing a user who cannot log in.

use base64::Engine as _;
use hyper::Method;
use serde_json::{Value, json};
use tributary_amqp::access::{self, Permissions};
use tributary_api::users::{
    MIN_ITERATIONS, USER_TAGS_NAMESPACE, UserRecord, get_tags, set_tags, validate_user_name,
};
use tributary_api::{MetadataStore, USERS_NAMESPACE};

use super::json::{object, required, string};
use super::{AdminApi, Call, not_found};
use crate::server::http::reply::{self, ApiError, HttpResponse};

/// `hashing_algorithm` of exported users: the base64 of a `tributary_api::users` record.
pub(crate) const HASHING_ALGORITHM: &str = "tributary_scram_v1";

/// Tags as RabbitMQ takes them: an array of strings or one comma-separated string.
pub(crate) fn parse_tags(value: Option<&Value>) -> Result<Vec<String>, ApiError> {
    let tags: Vec<String> = match value {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::String(text)) => text.split(',').map(|t| t.trim().to_owned()).collect(),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| item.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| ApiError::bad_request("`tags` must hold strings"))?,
        Some(_) => return Err(ApiError::bad_request("`tags` must be a string or an array")),
    };
    Ok(tags.into_iter().filter(|tag| !tag.is_empty()).collect())
}

pub(crate) fn permissions_json(vhost: &str, user: &str, p: &Permissions) -> Value {
    json!({
        "user": user, "vhost": vhost,
        "configure": p.configure, "write": p.write, "read": p.read,
    })
}

pub(crate) fn vhost_json(name: &str) -> Value {
    json!({
        "name": name, "description": "", "tags": [], "default_queue_type": "classic",
        "metadata": { "description": "", "tags": [], "default_queue_type": "classic" },
        "tracing": false,
    })
}

/// One stored user as RabbitMQ lists it.
pub(crate) async fn user_json(
    store: &dyn MetadataStore,
    name: &str,
    record: &[u8],
) -> Result<Value, ApiError> {
    let tags = get_tags(store, name).await?;
    Ok(json!({
        "name": name,
        "password_hash": base64::engine::general_purpose::STANDARD.encode(record),
        "hashing_algorithm": HASHING_ALGORITHM,
        "tags": tags,
        "limits": {},
    }))
}

/// Creates or replaces user `name` from a body with `password` or `password_hash` (+
/// `hashing_algorithm`) and `tags`; returns whether the user is new.
pub(crate) async fn put_user(
    store: &dyn MetadataStore,
    name: &str,
    body: &Value,
) -> Result<bool, ApiError> {
    object(body)?;
    validate_user_name(name)?;
    let tags = parse_tags(body.get("tags"))?;
    let record = match (string(body, "password")?, string(body, "password_hash")?) {
        (Some(password), _) => {
            let password = password.to_owned();
            // Tributary's own field: keep the password as the RocketMQ ACL secret key.
            let keep = body
                .get("rocketmq_secret")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            tokio::task::spawn_blocking(move || {
                if keep {
                    UserRecord::from_password_with_rocketmq_secret(&password, MIN_ITERATIONS)
                } else {
                    UserRecord::from_password(&password, MIN_ITERATIONS)
                }
            })
            .await
            .map_err(|_| {
                ApiError::new(
                    hyper::StatusCode::INTERNAL_SERVER_ERROR,
                    "password hashing failed",
                )
            })??
        }
        (None, Some(hash)) => {
            let algorithm = string(body, "hashing_algorithm")?.unwrap_or("");
            if algorithm != HASHING_ALGORITHM {
                return Err(ApiError::bad_request(format!(
                    "user '{name}': password_hash of algorithm '{algorithm}' cannot be used \
                     (only '{HASHING_ALGORITHM}', as exported by Tributary); give `password` instead"
                )));
            }
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(hash)
                .map_err(|_| {
                    ApiError::bad_request(format!("user '{name}': password_hash is not base64"))
                })?;
            UserRecord::decode(&bytes)?
        }
        (None, None) => {
            return Err(ApiError::bad_request(
                "`password` or `password_hash` is required",
            ));
        }
    };
    // Tributary's own field, checked as the RocketMQ ACL parses it; an imported
    // `password_hash` carries its own, checked the same way.
    let record = match string(body, "rocketmq_white_address")? {
        Some(pattern) => record.with_rocketmq_white_address(Some(pattern))?,
        None => record,
    };
    if let Some(pattern) = record.rocketmq_white_address()
        && let Err(error) = tributary_rocketmq::white_address::WhiteList::parse(pattern)
    {
        return Err(ApiError::bad_request(format!("user '{name}': {error}")));
    }
    let new = store.get(USERS_NAMESPACE, name).await?.is_none();
    store.put(USERS_NAMESPACE, name, record.encode()).await?;
    set_tags(store, name, &tags).await?;
    Ok(new)
}

impl AdminApi {
    fn store(&self) -> &dyn MetadataStore {
        self.engine.metadata.as_ref()
    }

    /// Applies changed permissions to the open AMQP connections of `user` (all when `None`).
    async fn refresh(&self, user: Option<&str>) -> Result<(), ApiError> {
        if let Some(amqp) = &self.amqp {
            amqp.refresh_grants(user).await?;
        }
        Ok(())
    }

    pub(super) async fn vhosts(
        &self,
        call: &Call<'_>,
        path: &[&str],
    ) -> Result<HttpResponse, ApiError> {
        match (call.method, path) {
            (&Method::GET, []) => {
                let names = access::list_vhosts(self.store()).await?;
                Ok(reply::ok(&Value::Array(
                    names.iter().map(|n| vhost_json(n)).collect(),
                )))
            }
            (&Method::GET, [name]) => {
                if !access::vhost_exists(self.store(), name).await? {
                    return Err(ApiError::not_found(format!("no vhost '{name}'")));
                }
                Ok(reply::ok(&vhost_json(name)))
            }
            (&Method::PUT, [name]) => match access::add_vhost(self.store(), name).await? {
                true => Ok(reply::created()),
                false => Ok(reply::no_content()),
            },
            (&Method::DELETE, [name]) => {
                let deleted = match &self.amqp {
                    Some(amqp) => amqp.delete_vhost(name).await?,
                    None => access::delete_vhost(self.store(), name).await?,
                };
                if !deleted {
                    return Err(ApiError::not_found(format!("no vhost '{name}'")));
                }
                Ok(reply::no_content())
            }
            (&Method::GET, [name, "permissions"]) => {
                let all = access::list_permissions(self.store()).await?;
                let mine = all.iter().filter(|(vhost, _, _)| vhost == name);
                let list = mine.map(|(v, u, p)| permissions_json(v, u, p)).collect();
                Ok(reply::ok(&Value::Array(list)))
            }
            (_, [] | [_] | [_, "permissions"]) => Err(ApiError::method_not_allowed()),
            _ => Err(not_found()),
        }
    }

    pub(super) async fn users(
        &self,
        call: &Call<'_>,
        path: &[&str],
    ) -> Result<HttpResponse, ApiError> {
        let store = self.store();
        match (call.method, path) {
            (&Method::GET, []) => {
                let mut list = Vec::new();
                for (name, record) in store.scan(USERS_NAMESPACE, "").await? {
                    list.push(user_json(store, &name, &record).await?);
                }
                Ok(reply::ok(&Value::Array(list)))
            }
            (&Method::GET, [name]) => match store.get(USERS_NAMESPACE, name).await? {
                Some(record) => Ok(reply::ok(&user_json(store, name, &record).await?)),
                None => Err(ApiError::not_found(format!("no user '{name}'"))),
            },
            (&Method::PUT, [name]) => match put_user(store, name, &call.body).await? {
                true => Ok(reply::created()),
                false => Ok(reply::no_content()),
            },
            (&Method::DELETE, [name]) => {
                if !self.delete_user(name).await? {
                    return Err(ApiError::not_found(format!("no user '{name}'")));
                }
                Ok(reply::no_content())
            }
            (&Method::GET, [name, "permissions"]) => {
                let all = access::list_permissions(store).await?;
                let mine = all.iter().filter(|(_, user, _)| user == name);
                let list = mine.map(|(v, u, p)| permissions_json(v, u, p)).collect();
                Ok(reply::ok(&Value::Array(list)))
            }
            (_, [] | [_] | [_, "permissions"]) => Err(ApiError::method_not_allowed()),
            _ => Err(not_found()),
        }
    }

    /// Deletes a user with its tags and permissions, and closes its AMQP connections.
    async fn delete_user(&self, name: &str) -> Result<bool, ApiError> {
        let store = self.store();
        if !store.delete(USERS_NAMESPACE, name).await? {
            return Ok(false);
        }
        store.delete(USER_TAGS_NAMESPACE, name).await?;
        for (vhost, user, _) in access::list_permissions(store).await? {
            if user == name {
                access::clear_permissions(store, &vhost, &user).await?;
            }
        }
        if let Some(amqp) = &self.amqp {
            let closed = amqp.close_user_connections(name, &format!("user '{name}' is deleted"));
            tracing::info!(user = name, closed, "user deleted through the admin API");
        }
        Ok(true)
    }

    pub(super) async fn permissions(
        &self,
        call: &Call<'_>,
        path: &[&str],
    ) -> Result<HttpResponse, ApiError> {
        let store = self.store();
        match (call.method, path) {
            (&Method::GET, []) => {
                let all = access::list_permissions(store).await?;
                let list = all
                    .iter()
                    .map(|(v, u, p)| permissions_json(v, u, p))
                    .collect();
                Ok(reply::ok(&Value::Array(list)))
            }
            (&Method::GET, [vhost, user]) => match access::permissions(store, vhost, user).await? {
                Some(p) => Ok(reply::ok(&permissions_json(vhost, user, &p))),
                None => Err(ApiError::not_found(format!(
                    "user '{user}' has no permissions on vhost '{vhost}'"
                ))),
            },
            (&Method::PUT, [vhost, user]) => {
                object(&call.body)?;
                let permissions = Permissions {
                    configure: required(&call.body, "configure")?.to_owned(),
                    write: required(&call.body, "write")?.to_owned(),
                    read: required(&call.body, "read")?.to_owned(),
                };
                let new = access::permissions(store, vhost, user).await?.is_none();
                access::set_permissions(store, vhost, user, &permissions).await?;
                self.refresh(Some(user)).await?;
                Ok(if new {
                    reply::created()
                } else {
                    reply::no_content()
                })
            }
            (&Method::DELETE, [vhost, user]) => {
                if !access::clear_permissions(store, vhost, user).await? {
                    return Err(ApiError::not_found(format!(
                        "user '{user}' has no permissions on vhost '{vhost}'"
                    )));
                }
                self.refresh(Some(user)).await?;
                Ok(reply::no_content())
            }
            (_, [] | [_, _]) => Err(ApiError::method_not_allowed()),
            _ => Err(not_found()),
        }
    }
}
