//! Kafka through rdkafka (librdkafka). A topic is a topic, a subscription a consumer group;
//! producers wait for `acks=all`. See the mapping in [`crate::driver`].

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};

use super::{Consumer, Driver, OnMessage, Producer, Protocol};
use crate::Error;

const SEND_TIMEOUT: Duration = Duration::from_secs(30);

fn err(e: impl std::fmt::Display) -> Error {
    Error::driver("kafka", e)
}

#[derive(Debug)]
pub struct KafkaDriver {
    bootstrap: String,
}

impl KafkaDriver {
    pub fn new(bootstrap: &str) -> Result<Self, Error> {
        Ok(Self {
            bootstrap: bootstrap.to_owned(),
        })
    }

    fn config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        config
    }
}

#[async_trait]
impl Driver for KafkaDriver {
    fn protocol(&self) -> Protocol {
        Protocol::Kafka
    }

    async fn create_topic(&self, topic: &str, partitions: u32) -> Result<(), Error> {
        let admin: AdminClient<DefaultClientContext> = self.config().create().map_err(err)?;
        let new = NewTopic::new(topic, partitions as i32, TopicReplication::Fixed(1));
        let results = admin
            .create_topics(
                [&new],
                &AdminOptions::new().operation_timeout(Some(SEND_TIMEOUT)),
            )
            .await
            .map_err(err)?;
        for result in results {
            match result {
                Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((name, code)) => return Err(err(format!("create topic {name}: {code}"))),
            }
        }
        Ok(())
    }

    async fn create_subscription(&self, _: &str, _: u32, _: &str) -> Result<(), Error> {
        // A new group starts from the earliest offset (`auto.offset.reset`), so it sees
        // everything published before its members join.
        Ok(())
    }

    async fn producer(&self, topic: &str, _: u32) -> Result<Arc<dyn Producer>, Error> {
        let producer: FutureProducer = self
            .config()
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", SEND_TIMEOUT.as_millis().to_string())
            .create()
            .map_err(err)?;
        Ok(Arc::new(KafkaProducer {
            producer,
            topic: topic.to_owned(),
        }))
    }

    async fn consumer(
        &self,
        topic: &str,
        _: u32,
        subscription: &str,
        _: u32,
        _: u32,
        on_message: OnMessage,
    ) -> Result<Box<dyn Consumer>, Error> {
        let consumer: StreamConsumer = self
            .config()
            .set("group.id", subscription)
            .set("auto.offset.reset", "earliest")
            .set("enable.auto.commit", "true")
            .create()
            .map_err(err)?;
        consumer.subscribe(&[topic]).map_err(err)?;
        let task = tokio::spawn(async move {
            loop {
                match consumer.recv().await {
                    Ok(message) => on_message(message.payload().unwrap_or_default()),
                    // Transient errors (a rebalance, a leader move) are retried by librdkafka.
                    Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                }
            }
        });
        Ok(Box::new(KafkaConsumer { task }))
    }

    async fn close(&self) {}
}

struct KafkaProducer {
    producer: FutureProducer,
    topic: String,
}

#[async_trait]
impl Producer for KafkaProducer {
    async fn send(&self, key: Option<String>, body: Vec<u8>) -> Result<(), Error> {
        let mut record = FutureRecord::<String, Vec<u8>>::to(&self.topic).payload(&body);
        if let Some(key) = &key {
            record = record.key(key);
        }
        self.producer
            .send(record, SEND_TIMEOUT)
            .await
            .map(|_| ())
            .map_err(|(e, _)| err(e))
    }
}

struct KafkaConsumer {
    task: tokio::task::JoinHandle<()>,
}

#[async_trait]
impl Consumer for KafkaConsumer {
    async fn close(self: Box<Self>) {
        self.task.abort();
        let _ = self.task.await;
    }
}
