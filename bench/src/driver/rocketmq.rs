//! RocketMQ remoting through rocketmq-client-rust 1.0. A topic has `partitionsPerTopic`
//! queues; a subscription is a consumer group in clustering mode reading from the first
//! offset. Every producer and consumer is its own client instance (runtime), as separate
//! processes would be. See the mapping in [`crate::driver`].

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use rocketmq_client_rust::{
    ClientResult, ClientRuntime, ClientRuntimeConfig, ConsumeConcurrentlyContext,
    ConsumeConcurrentlyStatus, DefaultMQProducer, DefaultMQPushConsumer, MQPushConsumer,
    MessageListenerConcurrently,
};
use rocketmq_model::common::consumer::consume_from_where::ConsumeFromWhere;
use rocketmq_model::common::message::message_ext::MessageExt;
use rocketmq_model::common::message::message_single::Message;
use rocketmq_protocol::protocol::SerializeType;
use rocketmq_protocol::protocol::remoting_command_defaults::{
    RemotingCommandDefaults, RemotingCommandFactory,
};
use rocketmq_runtime::{RuntimeConfig, RuntimeOwner};
use tokio::sync::RwLock;

use super::{Consumer, Driver, OnMessage, Producer, Protocol};
use crate::Error;

/// The topic whose route tells a client where topics may be created (RocketMQ's default).
const CREATE_TOPIC_KEY: &str = "TBW102";
/// Messages per listener call: with the client's default of 1 its dispatch caps delivery.
const CONSUME_BATCH: u32 = 32;

fn err(e: impl std::fmt::Display) -> Error {
    Error::driver("rocketmq", e)
}

/// One client instance: its runtime and shutdown. Telemetry stays off (no process-global
/// install, so several clients live in one process).
struct Client {
    owner: RuntimeOwner,
    runtime: Arc<ClientRuntime>,
}

impl Client {
    fn new(scope: &str) -> Result<Self, Error> {
        let owner = RuntimeOwner::plan(RuntimeConfig {
            thread_name: format!("rmq-bench-{scope}"),
            ..Default::default()
        })
        .map_err(err)?
        .build()
        .map_err(err)?;
        let factory = RemotingCommandFactory::new(RemotingCommandDefaults::new(
            rocketmq_model::version::CURRENT_VERSION as i32,
            SerializeType::JSON,
        ));
        let runtime = ClientRuntime::try_new_with_remoting_command_factory(
            owner.root_context().component("client"),
            ClientRuntimeConfig::default(),
            rocketmq_observability::TelemetryHandle::noop(),
            factory,
        )
        .map_err(err)?;
        Ok(Self { owner, runtime })
    }

    async fn shutdown(self) {
        let _ = self.runtime.shutdown().await;
        let _ = self.owner.shutdown_tasks().await;
        let _ = self.owner.shutdown_background();
    }
}

#[derive(Debug)]
pub struct RocketMqDriver {
    namesrv: String,
}

impl RocketMqDriver {
    pub fn new(namesrv: &str) -> Result<Self, Error> {
        Ok(Self {
            namesrv: namesrv.to_owned(),
        })
    }

    async fn started_producer(
        &self,
        client: &Client,
        group: &str,
        queues: u32,
    ) -> Result<DefaultMQProducer, Error> {
        let mut producer = DefaultMQProducer::builder(client.runtime.clone())
            .producer_group(group.to_string())
            .name_server_addr(self.namesrv.clone())
            .default_topic_queue_nums(queues)
            .build();
        producer.start().await.map_err(err)?;
        Ok(producer)
    }
}

#[async_trait]
impl Driver for RocketMqDriver {
    fn protocol(&self) -> Protocol {
        Protocol::RocketMq
    }

    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), Error> {
        let client = Client::new("admin")?;
        let mut producer = self
            .started_producer(&client, "bench-admin", partitions)
            .await?;
        let created = producer
            .create_topic(CREATE_TOPIC_KEY, topic, partitions as i32, HashMap::new())
            .await;
        producer.shutdown().await;
        client.shutdown().await;
        created.map_err(|e| err(format!("create topic {topic}: {e}")))
    }

    async fn create_subscription(&self, _: &str, _: u32, _: &str) -> Result<(), Error> {
        // A new group reads from the first offset, so it sees everything published before.
        Ok(())
    }

    async fn producer(&self, topic: &str, partitions: u32) -> Result<Arc<dyn Producer>, Error> {
        let client = Client::new("producer")?;
        let producer = self
            .started_producer(&client, &format!("bench-producer-{topic}"), partitions)
            .await?;
        Ok(Arc::new(RocketMqProducer {
            producer: RwLock::new(Some(producer)),
            client: tokio::sync::Mutex::new(Some(client)),
            topic: topic.to_owned(),
        }))
    }

    async fn consumer(
        &self,
        topic: &str,
        _: u32,
        subscription: &str,
        index: u32,
        _: u32,
        on_message: OnMessage,
    ) -> Result<Box<dyn Consumer>, Error> {
        let client = Client::new(&format!("{subscription}-{index}"))?;
        let mut consumer = DefaultMQPushConsumer::builder(client.runtime.clone())
            .consumer_group(subscription.to_string())
            .name_server_addr(self.namesrv.clone())
            .consume_from_where(ConsumeFromWhere::ConsumeFromFirstOffset)
            .consume_message_batch_max_size(CONSUME_BATCH)
            .build();
        consumer.subscribe(topic, "*").await.map_err(err)?;
        consumer.register_message_listener_concurrently(Listener(on_message));
        consumer.start().await.map_err(err)?;
        Ok(Box::new(RocketMqConsumer { consumer, client }))
    }

    async fn close(&self) {}
}

struct Listener(OnMessage);

impl MessageListenerConcurrently for Listener {
    fn consume_message(
        &self,
        msgs: &[&MessageExt],
        _: &ConsumeConcurrentlyContext,
    ) -> ClientResult<ConsumeConcurrentlyStatus> {
        for msg in msgs {
            let body = msg.body();
            (self.0)(body.as_deref().unwrap_or_default());
        }
        Ok(ConsumeConcurrentlyStatus::ConsumeSuccess)
    }
}

struct RocketMqProducer {
    /// `send` needs `&self`, `shutdown` `&mut self`: sends share the read side.
    producer: RwLock<Option<DefaultMQProducer>>,
    client: tokio::sync::Mutex<Option<Client>>,
    topic: String,
}

#[async_trait]
impl Producer for RocketMqProducer {
    async fn send(&self, key: Option<String>, body: Vec<u8>) -> Result<(), Error> {
        let mut builder = Message::builder().topic(self.topic.as_str()).body(body);
        if let Some(key) = key {
            builder = builder.key(key);
        }
        let message = builder.build().map_err(err)?;
        let producer = self.producer.read().await;
        let producer = producer.as_ref().ok_or_else(|| err("producer closed"))?;
        match producer.send(message).await {
            Ok(Some(_)) => Ok(()),
            Ok(None) => Err(err("send returned no result")),
            Err(e) => Err(err(e)),
        }
    }

    async fn close(&self) {
        if let Some(mut producer) = self.producer.write().await.take() {
            producer.shutdown().await;
        }
        if let Some(client) = self.client.lock().await.take() {
            client.shutdown().await;
        }
    }
}

struct RocketMqConsumer {
    consumer: DefaultMQPushConsumer,
    client: Client,
}

#[async_trait]
impl Consumer for RocketMqConsumer {
    async fn close(mut self: Box<Self>) {
        self.consumer.shutdown().await;
        self.client.shutdown().await;
    }
}
