//! `/api/overview`, `/api/exchanges`, `/api/queues`, `/api/bindings`: the AMQP side in
//! RabbitMQ's shapes (the fields rabbitmqadmin, Celery Flower and KEDA read).

use hyper::Method;
use serde_json::{Value, json};
use tributary_amqp::access;
use tributary_amqp::admin::{
    AmqpAdmin, BindingView, ExchangeSpec, ExchangeView, QueueSpec, QueueView,
};
use tributary_amqp::definitions::arguments_fingerprint;

use super::json::{flag, json_to_table, object, required, string, table_to_json};
use super::rates::QueueRates;
use super::{AdminApi, Call, get_only, not_found};
use crate::server::http::reply::{self, ApiError, HttpResponse};

/// The node name shown where RabbitMQ shows an Erlang node.
pub(crate) const NODE: &str = "tributary@localhost";

/// A queue in RabbitMQ's shape; `message_stats` carries its counts and their rates.
fn queue_json(queue: &QueueView, rates: &QueueRates) -> Value {
    let depth = queue.depth.unwrap_or_default();
    let stats = rates.message_stats(&queue.vhost, &queue.name, queue.stats);
    json!({
        "name": queue.name, "vhost": queue.vhost, "type": queue.kind,
        "durable": queue.durable, "auto_delete": queue.auto_delete, "exclusive": queue.exclusive,
        "arguments": table_to_json(&queue.arguments),
        "state": "running", "node": NODE, "consumers": queue.consumers,
        "messages": depth.ready + depth.unacked,
        "messages_ready": depth.ready,
        "messages_unacknowledged": depth.unacked,
        "message_bytes_ready": depth.ready_bytes,
        "message_stats": stats,
    })
}

pub(crate) fn exchange_json(exchange: &ExchangeView) -> Value {
    json!({
        "name": exchange.name, "vhost": exchange.vhost, "type": exchange.kind,
        "durable": exchange.durable, "auto_delete": exchange.auto_delete,
        "internal": exchange.internal, "arguments": table_to_json(&exchange.arguments),
        "user_who_performed_action": "",
    })
}

/// RabbitMQ's `properties_key`: the routing key, `~` for an empty one, and the arguments'
/// fingerprint after a `~` when there are any.
fn properties_key(binding: &BindingView) -> String {
    match (
        binding.routing_key.is_empty(),
        binding.arguments.0.is_empty(),
    ) {
        (true, true) => "~".to_owned(),
        (false, true) => binding.routing_key.clone(),
        _ => format!(
            "{}~{}",
            binding.routing_key,
            arguments_fingerprint(&binding.arguments)
        ),
    }
}

pub(crate) fn binding_json(binding: &BindingView) -> Value {
    json!({
        "source": binding.source, "vhost": binding.vhost,
        "destination": binding.destination, "destination_type": binding.destination_type,
        "routing_key": binding.routing_key, "arguments": table_to_json(&binding.arguments),
        "properties_key": properties_key(binding),
    })
}

/// The vhosts a listing covers: one, or all.
async fn vhosts_of(amqp: &AmqpAdmin, vhost: Option<&str>) -> Result<Vec<String>, ApiError> {
    match vhost {
        Some(vhost) => Ok(vec![vhost.to_owned()]),
        None => Ok(access::list_vhosts(amqp.store()).await?),
    }
}

/// Every queue of one vhost or of all.
pub(crate) async fn all_queues(
    amqp: &AmqpAdmin,
    vhost: Option<&str>,
) -> Result<Vec<QueueView>, ApiError> {
    let mut out = Vec::new();
    for vhost in vhosts_of(amqp, vhost).await? {
        out.extend(amqp.queues(&vhost).await?);
    }
    Ok(out)
}

pub(crate) async fn all_exchanges(
    amqp: &AmqpAdmin,
    vhost: Option<&str>,
) -> Result<Vec<ExchangeView>, ApiError> {
    let mut out = Vec::new();
    for vhost in vhosts_of(amqp, vhost).await? {
        out.extend(amqp.exchanges(&vhost).await?);
    }
    Ok(out)
}

pub(crate) async fn all_bindings(
    amqp: &AmqpAdmin,
    vhost: Option<&str>,
) -> Result<Vec<BindingView>, ApiError> {
    let mut out = Vec::new();
    for vhost in vhosts_of(amqp, vhost).await? {
        out.extend(amqp.bindings(&vhost).await?);
    }
    Ok(out)
}

impl AdminApi {
    pub(super) async fn overview(&self, call: &Call<'_>) -> Result<HttpResponse, ApiError> {
        get_only(call)?;
        let (mut ready, mut unacked, mut queues, mut exchanges, mut consumers) = (0, 0, 0, 0, 0);
        let (mut connections, mut channels) = (0, 0);
        if let Some(amqp) = &self.amqp {
            for queue in all_queues(amqp, None).await? {
                let depth = queue.depth.unwrap_or_default();
                ready += depth.ready;
                unacked += depth.unacked;
                consumers += queue.consumers;
                queues += 1;
            }
            exchanges = all_exchanges(amqp, None).await?.len();
            let open = amqp.connections();
            connections = open.len();
            channels = open.iter().map(|c| c.channels).sum::<usize>();
        }
        connections += self.connections.list(&super::connections::NON_AMQP).len();
        let topics = self.engine.topics.list_topics();
        let visible = topics.iter().filter(|t| !t.internal).count();
        let groups = self.engine.offsets.groups().await?.len();
        let bound = self.settings.listeners.lock().clone();
        let listeners: Vec<Value> = bound
            .iter()
            .map(|(protocol, addr)| {
                json!({ "node": NODE, "protocol": protocol, "ip_address": addr.ip().to_string(),
                        "port": addr.port() })
            })
            .collect();
        let version = env!("CARGO_PKG_VERSION");
        Ok(reply::ok(&json!({
            "management_version": version, "rabbitmq_version": version,
            "product_name": "Tributary", "product_version": version,
            "erlang_version": "none", "erlang_full_version": "none (Tributary is written in Rust)",
            "cluster_name": NODE, "node": NODE, "statistics_db_event_queue": 0,
            "churn_rates": {}, "message_stats": {},
            "queue_totals": {
                "messages": ready + unacked, "messages_ready": ready,
                "messages_unacknowledged": unacked,
            },
            "object_totals": {
                "connections": connections, "channels": channels, "queues": queues,
                "exchanges": exchanges, "consumers": consumers,
            },
            "listeners": listeners,
            "tributary": { "topics": visible, "groups": groups },
        })))
    }

    pub(super) async fn exchanges(
        &self,
        call: &Call<'_>,
        path: &[&str],
    ) -> Result<HttpResponse, ApiError> {
        let amqp = self.amqp()?;
        match (call.method, path) {
            (&Method::GET, [] | [_]) => {
                let list = all_exchanges(amqp, path.first().copied()).await?;
                Ok(reply::ok(&Value::Array(
                    list.iter().map(exchange_json).collect(),
                )))
            }
            (&Method::GET, [vhost, name]) => Ok(reply::ok(&exchange_json(
                &amqp.exchange(vhost, name).await?,
            ))),
            (&Method::PUT, [vhost, name]) => {
                let body = &call.body;
                object(body)?;
                let spec = ExchangeSpec {
                    kind: required(body, "type")?.to_owned(),
                    durable: flag(body, "durable", true)?,
                    auto_delete: flag(body, "auto_delete", false)?,
                    internal: flag(body, "internal", false)?,
                    arguments: json_to_table(body.get("arguments"))?,
                };
                let existed = amqp.exchange(vhost, name).await.is_ok();
                amqp.declare_exchange(vhost, name, spec).await?;
                Ok(if existed {
                    reply::no_content()
                } else {
                    reply::created()
                })
            }
            (&Method::DELETE, [vhost, name]) => {
                amqp.delete_exchange(vhost, name).await?;
                Ok(reply::no_content())
            }
            (_, [] | [_] | [_, _]) => Err(ApiError::method_not_allowed()),
            _ => Err(not_found()),
        }
    }

    pub(super) async fn queues(
        &self,
        call: &Call<'_>,
        path: &[&str],
    ) -> Result<HttpResponse, ApiError> {
        let amqp = self.amqp()?;
        match (call.method, path) {
            (&Method::GET, [] | [_]) => {
                let mut list = all_queues(amqp, path.first().copied()).await?;
                // Celery Flower asks `?name=...` style filters of some tools; honour `name`.
                if let Some(name) = super::request::query_value(call.query, "name") {
                    list.retain(|queue| queue.name == name);
                }
                Ok(reply::ok(&Value::Array(
                    list.iter()
                        .map(|queue| queue_json(queue, &self.rates))
                        .collect(),
                )))
            }
            (&Method::GET, [vhost, name]) => {
                let queue = amqp.queue(vhost, name).await?;
                Ok(reply::ok(&queue_json(&queue, &self.rates)))
            }
            (&Method::PUT, [vhost, name]) => {
                let body = &call.body;
                object(body)?;
                let spec = QueueSpec {
                    durable: flag(body, "durable", true)?,
                    auto_delete: flag(body, "auto_delete", false)?,
                    arguments: json_to_table(body.get("arguments"))?,
                };
                let existed = amqp.queue(vhost, name).await.is_ok();
                amqp.declare_queue(vhost, name, spec).await?;
                Ok(if existed {
                    reply::no_content()
                } else {
                    reply::created()
                })
            }
            (&Method::DELETE, [vhost, name]) => {
                amqp.delete_queue(vhost, name).await?;
                Ok(reply::no_content())
            }
            (&Method::DELETE, [vhost, name, "contents"]) => {
                amqp.purge_queue(vhost, name).await?;
                Ok(reply::no_content())
            }
            (&Method::GET, [vhost, name, "bindings"]) => {
                let list = amqp.bindings(vhost).await?;
                let mine = list
                    .iter()
                    .filter(|b| b.destination_type == "queue" && b.destination == *name);
                Ok(reply::ok(&Value::Array(mine.map(binding_json).collect())))
            }
            (_, [] | [_] | [_, _] | [_, _, "contents" | "bindings"]) => {
                Err(ApiError::method_not_allowed())
            }
            _ => Err(not_found()),
        }
    }

    pub(super) async fn bindings(
        &self,
        call: &Call<'_>,
        path: &[&str],
    ) -> Result<HttpResponse, ApiError> {
        let amqp = self.amqp()?;
        let kind = |letter: &str| match letter {
            "q" => Ok(false),
            "e" => Ok(true),
            _ => Err(not_found()),
        };
        match (call.method, path) {
            (&Method::GET, [] | [_]) => {
                let list = all_bindings(amqp, path.first().copied()).await?;
                Ok(reply::ok(&Value::Array(
                    list.iter().map(binding_json).collect(),
                )))
            }
            (&Method::GET, [vhost, "e", source, letter, destination]) => {
                let to_exchange = kind(letter)?;
                let list = amqp.bindings(vhost).await?;
                let mine = list.iter().filter(|b| {
                    b.source == *source
                        && b.destination == *destination
                        && (b.destination_type == "exchange") == to_exchange
                });
                Ok(reply::ok(&Value::Array(mine.map(binding_json).collect())))
            }
            (&Method::POST, [vhost, "e", source, letter, destination]) => {
                let to_exchange = kind(letter)?;
                let body = &call.body;
                object(body)?;
                let routing_key = string(body, "routing_key")?.unwrap_or("");
                let arguments = json_to_table(body.get("arguments"))?;
                amqp.bind(
                    vhost,
                    source,
                    destination,
                    to_exchange,
                    routing_key,
                    &arguments,
                )
                .await?;
                Ok(reply::created())
            }
            (&Method::DELETE, [vhost, "e", source, letter, destination, props]) => {
                let to_exchange = kind(letter)?;
                let list = amqp.bindings(vhost).await?;
                let found = list.iter().find(|b| {
                    b.source == *source
                        && b.destination == *destination
                        && (b.destination_type == "exchange") == to_exchange
                        && properties_key(b) == *props
                });
                let Some(binding) = found else {
                    return Err(ApiError::not_found("no such binding"));
                };
                amqp.unbind(
                    vhost,
                    source,
                    destination,
                    to_exchange,
                    &binding.routing_key,
                    &binding.arguments,
                )
                .await?;
                Ok(reply::no_content())
            }
            (_, [] | [_] | [_, "e", _, _, _] | [_, "e", _, _, _, _]) => {
                Err(ApiError::method_not_allowed())
            }
            _ => Err(not_found()),
        }
    }
}
