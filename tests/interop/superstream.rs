//! A topic of four partitions seen from AMQP as a RabbitMQ super stream: records Kafka wrote
//! into every partition and messages RocketMQ spread over the four queues are read whole, in
//! order, through the stream queues `T-0`..`T-3` (Kafka's in the full read form of
//! docs/interop.md); declaring the stream `T` itself is refused
//! with 406 naming them, and declaring `T-p` creates no topic.

use lapin::options::QueueDeclareOptions;
use rocketmq_model::common::message::message_single::Message;

use crate::amqp::read_stream;
use crate::broker::TestBroker;
use crate::checks::Checks;
use crate::from_kafka::{check_amqp_read_form, kafka_records};
use crate::kafka::{create_topic, produce, producer, topic_names};
use crate::lapin_support::{connect_to, stream_args};
use crate::mapping::Record;
use crate::rmq::send_in_order;
use crate::rocketmq::{Client, runtime};

const PARTITIONS: usize = 4;
const PER_PROTOCOL: usize = 500;

#[test]
fn four_partition_topic_written_by_kafka_and_rocketmq_is_read_whole_through_t_0_to_t_3() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let amqp = broker.addr("amqp");
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    let topic = "super-topic";
    runtime().block_on(async {
        create_topic(&bootstrap, topic, PARTITIONS as i32).await;
        // Per partition: the Kafka records (first), then the bodies RocketMQ put there.
        let mut kafka_parts: Vec<Vec<Record>> = Vec::with_capacity(PARTITIONS);
        let mut expected: Vec<Vec<Vec<u8>>> = vec![Vec::new(); PARTITIONS];
        let records = kafka_records(PER_PROTOCOL);
        let kafka = producer(&bootstrap, &[]);
        for (partition, bodies) in expected.iter_mut().enumerate() {
            let part: Vec<_> = records
                .iter()
                .skip(partition)
                .step_by(PARTITIONS)
                .cloned()
                .collect();
            produce(&kafka, topic, partition as i32, &part).await;
            bodies.extend(part.iter().map(|r| r.value.clone().unwrap_or_default()));
            kafka_parts.push(part);
        }

        let client = Client::new("super").expect("RocketMQ client");
        let mut rocketmq = crate::rmq::producer(&client, &namesrv, "PID-super").await;
        let bodies: Vec<Vec<u8>> = (0..PER_PROTOCOL)
            .map(|n| format!("rmq-super-{n}").into_bytes())
            .collect();
        let messages = bodies
            .iter()
            .map(|body| {
                Message::builder()
                    .topic(topic)
                    .tags("Super")
                    .body(body.clone())
                    .build()
                    .expect("message")
            })
            .collect();
        let sent = send_in_order(&rocketmq, messages).await;
        rocketmq.shutdown().await;
        client.shutdown().await;
        for (body, at) in bodies.into_iter().zip(sent) {
            expected[at.queue_id as usize].push(body);
        }

        let connection = connect_to(amqp).await;
        let channel = connection.create_channel().await.expect("channel");
        let refused = channel
            .queue_declare(
                topic.into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                stream_args(),
            )
            .await
            .expect_err("declaring the stream of a four-partition topic")
            .to_string();
        assert!(
            refused.contains("PRECONDITION_FAILED")
                && refused.contains(&format!("{topic}-0"))
                && refused.contains(&format!("{topic}-{}", PARTITIONS - 1)),
            "{refused}"
        );

        let mut checks = Checks::default();
        let mut total = 0;
        for (partition, bodies) in expected.iter().enumerate() {
            assert!(!bodies.is_empty(), "partition {partition} got no record");
            let stream = format!("{topic}-{partition}");
            let delivered = read_stream(amqp, &stream, bodies.len()).await;
            for (n, (body, got)) in bodies.iter().zip(&delivered).enumerate() {
                if let Some(record) = kafka_parts[partition].get(n) {
                    check_amqp_read_form(&mut checks, total + n, n as i64, record, got);
                }
                checks.eq(
                    "order (x-stream-offset)",
                    total + n,
                    got.stream_offset,
                    Some(n as i64),
                );
                checks.eq("body", total + n, &got.body, body);
            }
            total += bodies.len();
        }
        checks.finish("four partitions through T-p", total);
        let names = topic_names(&bootstrap);
        assert!(
            !names
                .iter()
                .any(|name| name.starts_with(&format!("{topic}-"))),
            "declaring T-p created a topic: {names:?}"
        );
    });
}
