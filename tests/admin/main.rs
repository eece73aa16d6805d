//! The live admin API end to end: the real `tributary` binary on ephemeral ports, the API
//! called with the crate's own client ([`tributary::admin_client`]) and raw HTTP, lapin as the
//! AMQP client. One binary with modules (each binary links the world).
//!
//! - [`api`]: status codes (401 with `WWW-Authenticate`, 403, 404, 400), RabbitMQ's JSON shapes
//!   for the calls Celery Flower and KEDA make, definitions export and re-import into a fresh
//!   broker, topics and group offsets.
//! - [`live`]: changes apply at once: a deleted user's AMQP connection closes, revoked
//!   permissions refuse the next method, the CLI talks to the running broker.
//! - [`queue_stats`]: RabbitMQ's per-queue `message_stats` counts and rates move with traffic.
//! - [`protocols`]: Kafka and RocketMQ connections listed and closed, RocketMQ groups with
//!   members and a reset the consumer follows.

#[path = "../support/broker.rs"]
mod broker;
#[path = "../support/lapin.rs"]
mod lapin_support;
#[path = "../support/rocketmq.rs"]
mod rocketmq;

mod api;
mod live;
mod protocols;
mod queue_stats;

use std::io::{Read, Write};
use std::net::SocketAddr;

use broker::TestBroker;
use serde_json::Value;
use tributary::admin_client::{AdminClient, Answer, api_path};

/// The admin API of `broker` as `guest` (an administrator on loopback).
pub(crate) fn guest(broker: &mut TestBroker) -> AdminClient {
    as_user(broker, "guest", "guest")
}

pub(crate) fn as_user(broker: &mut TestBroker, user: &str, password: &str) -> AdminClient {
    let url = format!("http://{}", broker.addr("http"));
    AdminClient::new(&url, user, password).expect("client")
}

/// Calls the API off the async runtime (the client blocks).
pub(crate) async fn call(
    client: &AdminClient,
    method: &str,
    segments: &[&str],
    body: Option<Value>,
) -> Answer {
    let client = client.clone();
    let path = api_path(segments);
    let method = method.to_owned();
    tokio::task::spawn_blocking(move || client.call(&method, &path, body.as_ref()))
        .await
        .expect("join")
        .unwrap_or_else(|error| panic!("{error:#}"))
}

/// A raw request without credentials: the status line and headers, lower-cased.
pub(crate) fn raw_head(addr: SocketAddr, request: &str) -> String {
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.write_all(request.as_bytes()).expect("send");
    let mut out = String::new();
    stream.read_to_string(&mut out).expect("read");
    out.to_lowercase()
}
