//! Shared set-up for the end-to-end tests with `rocketmq-client-rust` 1.0.0: a client runtime
//! with telemetry off, a collecting listener, producers and push consumers. Include it with
//! `#[path = "support/rocketmq.rs"] mod rocketmq;`.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rocketmq_client_rust::{
    ClientConfig, ClientError, ClientResult, ClientRuntime, ClientRuntimeConfig,
    ConsumeConcurrentlyContext, ConsumeConcurrentlyStatus, DefaultMQProducer,
    DefaultMQPushConsumer, MQPushConsumer, MessageListenerConcurrently,
};
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_protocol::protocol::SerializeType;
use rocketmq_protocol::protocol::remoting_command_defaults::{
    RemotingCommandDefaults, RemotingCommandFactory,
};
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};

/// A received message: body, tag and the user property `origin`.
pub(crate) type Received = (Vec<u8>, Option<String>, Option<String>);

/// The client's runtime and shutdown; telemetry stays off (no process-global install, so
/// several clients can live in one test process).
pub(crate) struct Client {
    owner: RuntimeOwner,
    pub(crate) runtime: Arc<ClientRuntime>,
}

impl Client {
    pub(crate) fn new(scope: &str) -> ClientResult<Self> {
        Self::with_headers(scope, SerializeType::JSON)
    }

    /// A client whose requests use `headers` (JSON or the ROCKETMQ binary form).
    pub(crate) fn with_headers(scope: &str, headers: SerializeType) -> ClientResult<Self> {
        let owner = RuntimeOwner::plan(RuntimeConfig {
            thread_name: format!("rmq-test-{scope}"),
            ..Default::default()
        })
        .expect("runtime plan")
        .build()
        .map_err(|source| ClientError::internal("client runtime", source))?;
        let factory = RemotingCommandFactory::new(RemotingCommandDefaults::new(
            rocketmq_model::version::CURRENT_VERSION as i32,
            headers,
        ));
        let runtime = ClientRuntime::try_new_with_remoting_command_factory(
            owner.root_context().component("client"),
            ClientRuntimeConfig::default(),
            rocketmq_observability::TelemetryHandle::noop(),
            factory,
        )?;
        Ok(Self { owner, runtime })
    }

    pub(crate) async fn shutdown(self) {
        let _ = self.runtime.shutdown().await;
        let _ = self.owner.shutdown_tasks().await;
        let _ = self.owner.shutdown_background();
    }
}

pub(crate) struct Collector(pub(crate) Arc<Mutex<Vec<Received>>>);

impl MessageListenerConcurrently for Collector {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _context: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        let mut received = self.0.lock();
        for msg in msgs {
            received.push((
                msg.body().map(|b| b.to_vec()).unwrap_or_default(),
                msg.tags().map(str::to_owned),
                msg.property("origin").map(str::to_owned),
            ));
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

pub(crate) fn message(topic: &str, tag: &str, body: Vec<u8>, origin: &str) -> Message {
    Message::builder()
        .topic(topic)
        .tags(tag)
        .key(format!("key-{origin}"))
        .raw_property("origin", origin)
        .expect("user property")
        .body(body)
        .build()
        .expect("message")
}

/// A body with bytes that are not UTF-8, so byte-identity is really checked.
pub(crate) fn body(label: &str, n: usize) -> Vec<u8> {
    let mut body = format!("{label}-{n}-").into_bytes();
    body.extend_from_slice(&[0, 0xFF, 0xFE, n as u8, 0x80]);
    body
}

pub(crate) async fn producer(client: &Client, namesrv: &str, group: &str) -> DefaultMQProducer {
    let mut producer = DefaultMQProducer::builder(client.runtime.clone())
        .producer_group(group.to_string())
        .name_server_addr(namesrv.to_string())
        .build();
    producer.start().await.expect("producer start");
    producer
}

pub(crate) async fn consumer(
    client: &Client,
    namesrv: &str,
    group: &str,
    topic: &str,
    expression: &str,
    sink: Arc<Mutex<Vec<Received>>>,
) -> DefaultMQPushConsumer {
    consumer_with(client, namesrv, group, topic, expression, Collector(sink)).await
}

/// A started push consumer of `topic` filtered by `expression` that hands messages to
/// `listener`.
pub(crate) async fn consumer_with(
    client: &Client,
    namesrv: &str,
    group: &str,
    topic: &str,
    expression: &str,
    listener: impl MessageListenerConcurrently + 'static,
) -> DefaultMQPushConsumer {
    let config = ClientConfig {
        namesrv_addr: Some(namesrv.into()),
        ..ClientConfig::default()
    };
    consumer_configured(client, config, 1, group, topic, expression, listener).await
}

/// [`consumer_with`] with the client's own settings (name servers, route refresh, offset
/// persistence intervals) in `config`, handing the listener up to `batch` messages at a time.
pub(crate) async fn consumer_configured(
    client: &Client,
    config: ClientConfig,
    batch: u32,
    group: &str,
    topic: &str,
    expression: &str,
    listener: impl MessageListenerConcurrently + 'static,
) -> DefaultMQPushConsumer {
    let mut consumer = DefaultMQPushConsumer::builder(client.runtime.clone())
        .consumer_group(group.to_string())
        .client_config(config)
        .consume_message_batch_max_size(batch)
        .build();
    consumer
        .subscribe(topic, expression)
        .await
        .expect("subscribe");
    consumer.register_message_listener_concurrently(listener);
    consumer.start().await.expect("consumer start");
    consumer
}

pub(crate) async fn wait_for(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until `received` holds `count` messages and checks each carries the `origin` property.
pub(crate) async fn wait_for_from(received: &Mutex<Vec<Received>>, count: usize, origin: &str) {
    wait_for(
        &format!("{count} messages from {origin}"),
        Duration::from_secs(30),
        || received.lock().len() >= count,
    )
    .await;
    assert!(
        received
            .lock()
            .iter()
            .all(|(_, _, from)| from.as_deref() == Some(origin))
    );
}

pub(crate) fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}
