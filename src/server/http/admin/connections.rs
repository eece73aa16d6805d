//! `/api/connections`: the open connections of every protocol in RabbitMQ's shape, with a
//! `protocol` field saying which (`AMQP 0-9-1`, `Kafka`, `RocketMQ remoting`) and the id the
//! client gave itself (`client_id`: Kafka `client.id`, RocketMQ `clientID`; null for AMQP).
//!
//! Names: an AMQP connection's is its AMQP connection id in decimal; any other's is
//! RabbitMQ's form, `peer -> local`, unique among open TCP connections. Clients only echo a
//! name back in `DELETE /api/connections/{name}`, which closes the connection: AMQP with
//! `320 CONNECTION_FORCED`, the others by closing the socket after the request in flight (a
//! Kafka or RocketMQ client reconnects and is listed again under a new name).
//!
//! Kafka and RocketMQ connections have no vhost and no authenticated user here: those fields
//! are empty strings (not omitted, so RabbitMQ tools that read them still parse the list).

use hyper::Method;
use serde_json::{Value, json};
use tributary_amqp::admin::ConnectionInfo;

use super::amqp::NODE;
use super::{AdminApi, Call, not_found};
use crate::server::connections::OpenConnection;
use crate::server::http::reply::{self, ApiError, HttpResponse};

/// The frontends listed from the shell's registry (AMQP lists its own, with users and vhosts).
pub(super) const NON_AMQP: [&str; 3] = ["kafka", "rocketmq-broker", "rocketmq-namesrv"];

fn amqp_json(connection: &ConnectionInfo) -> Value {
    json!({
        "name": connection.id.to_string(), "node": NODE, "type": "network",
        "protocol": "AMQP 0-9-1", "state": "running", "user": connection.user,
        "vhost": connection.vhost, "channels": connection.channels, "channel_max": 0,
        "peer_host": connection.peer.ip().to_string(), "peer_port": connection.peer.port(),
        "host": "", "port": 0, "client_id": null, "client_properties": {},
        "connected_at": connection.connected_at_ms, "auth_mechanism": "PLAIN",
        "tributary_listener": "amqp",
    })
}

fn other_json(connection: &OpenConnection) -> Value {
    let protocol = match connection.frontend {
        "kafka" => "Kafka",
        _ => "RocketMQ remoting",
    };
    // `connection_name` is where RabbitMQ tools (rabbitmqadmin's listing) show a client's own
    // name for its connection.
    let client_properties = match &connection.client_id {
        Some(id) => json!({ "client_id": id, "connection_name": id }),
        None => json!({}),
    };
    json!({
        "name": connection.name(), "node": NODE, "type": "network",
        "protocol": protocol, "state": "running", "user": "", "vhost": "",
        "channels": 0, "channel_max": 0,
        "peer_host": connection.peer.ip().to_string(), "peer_port": connection.peer.port(),
        "host": connection.local.ip().to_string(), "port": connection.local.port(),
        "client_id": connection.client_id, "client_properties": client_properties,
        "connected_at": connection.connected_at_ms, "auth_mechanism": "",
        "tributary_listener": connection.frontend,
    })
}

/// One open connection, found by its API name.
enum Found {
    Amqp(ConnectionInfo),
    Other(OpenConnection),
}

impl AdminApi {
    /// Every open connection as the API lists it: AMQP ones first, by id, then the rest by age.
    pub(super) fn connection_list(&self) -> Vec<Value> {
        let amqp = self.amqp.iter().flat_map(|amqp| amqp.connections());
        let mut out: Vec<Value> = amqp.map(|c| amqp_json(&c)).collect();
        let others = self.connections.list(&NON_AMQP);
        out.extend(others.iter().map(other_json));
        out
    }

    fn find_connection(&self, name: &str) -> Result<Found, ApiError> {
        let mut amqp = self.amqp.iter().flat_map(|amqp| amqp.connections());
        if let Some(found) = amqp.find(|c| c.id.to_string() == name) {
            return Ok(Found::Amqp(found));
        }
        let others = self.connections.list(&NON_AMQP);
        match others.into_iter().find(|c| c.name() == name) {
            Some(found) => Ok(Found::Other(found)),
            None => Err(ApiError::not_found(format!("no connection '{name}'"))),
        }
    }

    pub(super) async fn connections(
        &self,
        call: &Call<'_>,
        path: &[&str],
    ) -> Result<HttpResponse, ApiError> {
        match (call.method, path) {
            (&Method::GET, []) => Ok(reply::ok(&Value::Array(self.connection_list()))),
            (&Method::GET, [name]) => Ok(reply::ok(&match self.find_connection(name)? {
                Found::Amqp(connection) => amqp_json(&connection),
                Found::Other(connection) => other_json(&connection),
            })),
            (&Method::DELETE, [name]) => {
                match self.find_connection(name)? {
                    Found::Amqp(connection) => {
                        let reason = "Closed via management plugin";
                        self.amqp()?.close_connection(connection.id, reason);
                    }
                    Found::Other(connection) => {
                        self.connections.close(connection.id);
                    }
                }
                Ok(reply::no_content())
            }
            (_, [] | [_]) => Err(ApiError::method_not_allowed()),
            _ => Err(not_found()),
        }
    }
}
