//! `/api/definitions[/{vhost}]`: export (`GET`) and import (`POST`) in RabbitMQ's definitions
//! format, plus a `topics` section of Tributary's own (name, partitions, explicit settings).
//!
//! Export holds what a restart keeps: stored users (with [`super::access::HASHING_ALGORITHM`]
//! hashes), vhosts, permissions, durable non-exclusive queues, durable exchanges (not the
//! default or `amq.*` ones) and the bindings to exported queues and exchanges.
//!
//! Import applies sections in dependency order (topics, vhosts, users, permissions, exchanges,
//! queues, bindings) and stops at the first item it cannot apply with a 400 naming it (items
//! before it stay applied, as with RabbitMQ). Items of sections it cannot honour — `policies`,
//! `parameters` (federation, shovels, vhost limits), `topic_permissions` — make the whole
//! import fail up front with a 400 that names each of them (a policy's keys that Tributary
//! offers as queue arguments are named too), rather than being dropped; empty sections, as a
//! RabbitMQ export without policies has, are fine. `global_parameters` (cluster name and id
//! of the exporting node) are not applicable and are ignored. rabbitmqadmin v2's
//! `definitions import` posts the file as is, so these rules are what it meets.

use hyper::Method;
use serde_json::{Value, json};
use tributary_amqp::access::{self, Permissions};
use tributary_amqp::admin::{ExchangeSpec, QueueSpec};
use tributary_api::{MetadataStore, USERS_NAMESPACE};

use super::access::{permissions_json, put_user, user_json, vhost_json};
use super::amqp::{all_bindings, all_exchanges, all_queues};
use super::json::{flag, json_to_table, required, string, table_to_json};
use super::{AdminApi, Call, not_found};
use crate::server::http::reply::{self, ApiError, HttpResponse};

fn items<'a>(body: &'a Value, section: &str) -> Result<&'a [Value], ApiError> {
    match body.get(section) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(ApiError::bad_request(format!(
            "`{section}` must be an array"
        ))),
    }
}

/// Wraps an item's failure with the section and item it came from.
fn in_item(section: &str, item: &Value, error: ApiError) -> ApiError {
    let name = item.get("name").or_else(|| item.get("user")).cloned();
    let name = name.unwrap_or(Value::Null);
    ApiError::new(
        error.status.max(hyper::StatusCode::BAD_REQUEST),
        format!("definitions: {section} item {name}: {}", error.reason),
    )
}

/// Policy keys whose effect Tributary offers as the queue argument `x-<key>` instead.
const POLICY_KEYS_AS_ARGUMENTS: [&str; 9] = [
    "message-ttl",
    "expires",
    "max-length",
    "max-length-bytes",
    "overflow",
    "dead-letter-exchange",
    "dead-letter-routing-key",
    "delivery-limit",
    "max-age",
];

/// Items shown by name in a refusal; the rest are counted.
const NAMED_AT_MOST: usize = 20;

fn field<'a>(item: &'a Value, name: &str) -> &'a str {
    item.get(name).and_then(Value::as_str).unwrap_or("?")
}

/// One line per item of the sections Tributary cannot apply: policies, runtime parameters
/// (federation, shovels, limits) and topic permissions.
fn unsupported_items(body: &Value) -> Result<Vec<String>, ApiError> {
    let mut out = Vec::new();
    for item in items(body, "policies")? {
        let keys: Vec<&str> = item
            .get("definition")
            .and_then(Value::as_object)
            .map(|definition| definition.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let hints: Vec<String> = keys
            .iter()
            .filter(|key| POLICY_KEYS_AS_ARGUMENTS.contains(key))
            .map(|key| format!("x-{key}"))
            .collect();
        let hint = match hints.is_empty() {
            true => String::new(),
            false => format!("; declare queues with {} instead", hints.join(", ")),
        };
        out.push(format!(
            "policy \"{}\" (vhost \"{}\", keys {}{hint})",
            field(item, "name"),
            field(item, "vhost"),
            keys.join(", ")
        ));
    }
    for item in items(body, "parameters")? {
        out.push(format!(
            "parameter \"{}\" of component \"{}\" (vhost \"{}\")",
            field(item, "name"),
            field(item, "component"),
            field(item, "vhost")
        ));
    }
    for item in items(body, "topic_permissions")? {
        out.push(format!(
            "topic permission of user \"{}\" on exchange \"{}\" (vhost \"{}\")",
            field(item, "user"),
            field(item, "exchange"),
            field(item, "vhost")
        ));
    }
    Ok(out)
}

/// The 400's text: nothing was imported, and which items to remove.
fn refusal(refused: &[String]) -> String {
    let named = refused.iter().take(NAMED_AT_MOST).cloned();
    let mut list: Vec<String> = named.collect();
    if refused.len() > NAMED_AT_MOST {
        list.push(format!("and {} more", refused.len() - NAMED_AT_MOST));
    }
    format!(
        "definitions: Tributary does not apply policies, runtime parameters or topic permissions, \
         so nothing was imported; remove these {} items to import the rest: {}",
        refused.len(),
        list.join("; ")
    )
}

impl AdminApi {
    pub(super) async fn definitions(
        &self,
        call: &Call<'_>,
        path: &[&str],
    ) -> Result<HttpResponse, ApiError> {
        match (call.method, path) {
            (&Method::GET, []) => Ok(reply::ok(&self.export(None).await?)),
            (&Method::GET, [vhost]) => Ok(reply::ok(&self.export(Some(vhost)).await?)),
            (&Method::POST, []) => {
                self.import(&call.body, None).await?;
                Ok(reply::no_content())
            }
            (&Method::POST, [vhost]) => {
                self.import(&call.body, Some(vhost)).await?;
                Ok(reply::no_content())
            }
            (_, [] | [_]) => Err(ApiError::method_not_allowed()),
            _ => Err(not_found()),
        }
    }

    async fn export(&self, vhost: Option<&str>) -> Result<Value, ApiError> {
        let store: &dyn MetadataStore = self.engine.metadata.as_ref();
        let version = env!("CARGO_PKG_VERSION");
        let mut out = json!({
            "rabbit_version": version, "rabbitmq_version": version,
            "product_name": "Tributary", "product_version": version,
            "topic_permissions": [], "parameters": [], "global_parameters": [], "policies": [],
        });
        if vhost.is_none() {
            let mut users = Vec::new();
            for (name, record) in store.scan(USERS_NAMESPACE, "").await? {
                users.push(user_json(store, &name, &record).await?);
            }
            out["users"] = Value::Array(users);
            let vhosts = access::list_vhosts(store).await?;
            out["vhosts"] = Value::Array(vhosts.iter().map(|v| vhost_json(v)).collect());
            let permissions = access::list_permissions(store).await?;
            out["permissions"] = Value::Array(
                permissions
                    .iter()
                    .map(|(v, u, p)| permissions_json(v, u, p))
                    .collect(),
            );
            let topics = self.engine.topics.list_topics();
            out["topics"] = Value::Array(
                topics
                    .iter()
                    .filter(|t| !t.internal && !t.name.starts_with('\u{1f}'))
                    .map(|t| {
                        let overridden = &t.settings.overridden;
                        json!({ "name": t.name, "partitions": t.partitions, "settings": {
                            "retention_ms": overridden.retention_ms,
                            "retention_bytes": overridden.retention_bytes,
                            "segment_bytes": overridden.segment_bytes,
                            "segment_ms": overridden.segment_ms,
                            "max_message_bytes": overridden.max_message_bytes,
                            "durability": overridden.durability.map(|d| d.to_string()),
                        }})
                    })
                    .collect(),
            );
        }
        let (mut queues, mut exchanges, mut bindings) = (Vec::new(), Vec::new(), Vec::new());
        if let Some(amqp) = &self.amqp {
            let kept_queues: Vec<_> = all_queues(amqp, vhost)
                .await?
                .into_iter()
                .filter(|q| q.durable && !q.exclusive)
                .collect();
            let kept_exchanges: Vec<_> = all_exchanges(amqp, vhost)
                .await?
                .into_iter()
                .filter(|e| e.durable && !e.name.is_empty() && !e.name.starts_with("amq."))
                .collect();
            for binding in all_bindings(amqp, vhost).await? {
                let kept = match binding.destination_type {
                    "queue" => kept_queues
                        .iter()
                        .any(|q| q.vhost == binding.vhost && q.name == binding.destination),
                    _ => kept_exchanges
                        .iter()
                        .any(|e| e.vhost == binding.vhost && e.name == binding.destination),
                };
                if kept && !binding.source.is_empty() {
                    bindings.push(json!({
                        "source": binding.source, "vhost": binding.vhost,
                        "destination": binding.destination,
                        "destination_type": binding.destination_type,
                        "routing_key": binding.routing_key,
                        "arguments": table_to_json(&binding.arguments),
                    }));
                }
            }
            for q in &kept_queues {
                queues.push(json!({
                    "name": q.name, "vhost": q.vhost, "durable": q.durable,
                    "auto_delete": q.auto_delete, "arguments": table_to_json(&q.arguments),
                }));
            }
            for e in &kept_exchanges {
                exchanges.push(json!({
                    "name": e.name, "vhost": e.vhost, "type": e.kind, "durable": e.durable,
                    "auto_delete": e.auto_delete, "internal": e.internal,
                    "arguments": table_to_json(&e.arguments),
                }));
            }
        }
        out["queues"] = Value::Array(queues);
        out["exchanges"] = Value::Array(exchanges);
        out["bindings"] = Value::Array(bindings);
        Ok(out)
    }

    async fn import(&self, body: &Value, only: Option<&str>) -> Result<(), ApiError> {
        super::json::object(body)?;
        let refused = unsupported_items(body)?;
        if !refused.is_empty() {
            return Err(ApiError::bad_request(refusal(&refused)));
        }
        let store: &dyn MetadataStore = self.engine.metadata.as_ref();
        let vhost_of = |item: &Value| -> Result<String, ApiError> {
            match only {
                Some(vhost) => Ok(vhost.to_owned()),
                None => Ok(string(item, "vhost")?.unwrap_or("/").to_owned()),
            }
        };
        if only.is_none() {
            for item in items(body, "topics")? {
                self.import_topic(item)
                    .await
                    .map_err(|e| in_item("topics", item, e))?;
            }
            for item in items(body, "vhosts")? {
                let step = async {
                    access::add_vhost(store, required(item, "name")?).await?;
                    Ok::<(), ApiError>(())
                };
                step.await.map_err(|e| in_item("vhosts", item, e))?;
            }
            for item in items(body, "users")? {
                let step = async {
                    put_user(store, required(item, "name")?, item).await?;
                    Ok::<(), ApiError>(())
                };
                step.await.map_err(|e| in_item("users", item, e))?;
            }
            for item in items(body, "permissions")? {
                let step = async {
                    let permissions = Permissions {
                        configure: required(item, "configure")?.to_owned(),
                        write: required(item, "write")?.to_owned(),
                        read: required(item, "read")?.to_owned(),
                    };
                    let (vhost, user) = (vhost_of(item)?, required(item, "user")?);
                    access::set_permissions(store, &vhost, user, &permissions).await?;
                    Ok::<(), ApiError>(())
                };
                step.await.map_err(|e| in_item("permissions", item, e))?;
            }
            if let Some(amqp) = &self.amqp {
                amqp.refresh_grants(None).await?;
            }
        }
        let amqp = match (
            &self.amqp,
            ["exchanges", "queues", "bindings"].map(|s| items(body, s)),
        ) {
            (Some(amqp), _) => amqp,
            (None, [Ok([]), Ok([]), Ok([])]) => return Ok(()),
            (None, _) => {
                return Err(ApiError::bad_request(
                    "definitions: AMQP is disabled, so exchanges, queues and bindings cannot be imported",
                ));
            }
        };
        for item in items(body, "exchanges")? {
            let step = async {
                let spec = ExchangeSpec {
                    kind: required(item, "type")?.to_owned(),
                    durable: flag(item, "durable", true)?,
                    auto_delete: flag(item, "auto_delete", false)?,
                    internal: flag(item, "internal", false)?,
                    arguments: json_to_table(item.get("arguments"))?,
                };
                amqp.declare_exchange(&vhost_of(item)?, required(item, "name")?, spec)
                    .await?;
                Ok::<(), ApiError>(())
            };
            step.await.map_err(|e| in_item("exchanges", item, e))?;
        }
        for item in items(body, "queues")? {
            let step = async {
                let spec = QueueSpec {
                    durable: flag(item, "durable", true)?,
                    auto_delete: flag(item, "auto_delete", false)?,
                    arguments: json_to_table(item.get("arguments"))?,
                };
                amqp.declare_queue(&vhost_of(item)?, required(item, "name")?, spec)
                    .await?;
                Ok::<(), ApiError>(())
            };
            step.await.map_err(|e| in_item("queues", item, e))?;
        }
        for item in items(body, "bindings")? {
            let step = async {
                let to_exchange = match string(item, "destination_type")?.unwrap_or("queue") {
                    "queue" => false,
                    "exchange" => true,
                    other => {
                        return Err(ApiError::bad_request(format!(
                            "unknown destination_type '{other}'"
                        )));
                    }
                };
                amqp.bind(
                    &vhost_of(item)?,
                    required(item, "source")?,
                    required(item, "destination")?,
                    to_exchange,
                    string(item, "routing_key")?.unwrap_or(""),
                    &json_to_table(item.get("arguments"))?,
                )
                .await?;
                Ok::<(), ApiError>(())
            };
            step.await.map_err(|e| in_item("bindings", item, e))?;
        }
        Ok(())
    }

    /// Creates a topic of the export unless one of that name exists (then it is left as is).
    async fn import_topic(&self, item: &Value) -> Result<(), ApiError> {
        let name = required(item, "name")?;
        if self.engine.topics.describe_topic(name).is_ok() {
            return Ok(());
        }
        let mut call_body = item.clone();
        if call_body.get("partitions").is_none() {
            call_body["partitions"] = json!(1);
        }
        let partitions = super::json::integer(&call_body, "partitions")?
            .and_then(|n| u32::try_from(n).ok())
            .filter(|n| *n >= 1)
            .ok_or_else(|| ApiError::bad_request("`partitions` must be at least 1"))?;
        let settings = super::topics::parse_settings(item.get("settings"))?;
        self.engine
            .topics
            .create_topic(name, partitions, settings)
            .await?;
        Ok(())
    }
}
