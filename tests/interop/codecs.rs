//! Compressed data read across protocols: each of librdkafka's four codecs, a mixed run of
//! none/gzip/none/zstd batches (the loss issue 13 was filed for), and RocketMQ bodies over
//! 4 KiB that the client zlib-compresses. Readers must get every record, byte-identical, in
//! order, and no more. The stored batches' codec bits are checked too, so a producer that
//! quietly sent uncompressed batches cannot make a codec test pass.

use crate::amqp::read_stream;
use crate::broker::TestBroker;
use crate::checks::Checks;
use crate::kafka::{create_topic, produce, producer, read_exactly as kafka_read, stored_codecs};
use crate::mapping::Record;
use crate::rmq::{now_ms, read_exactly as rocketmq_read, send_in_order};
use crate::rocketmq::{Client, runtime};

const PER_CODEC: usize = 250;

/// Compressible values that still hold binary bytes; `label` makes them unique per run.
fn compressible(label: &str, range: std::ops::Range<usize>) -> Vec<Record> {
    let timestamp = now_ms();
    range
        .map(|n| {
            let mut value = format!("{label}-{n}-{}", "compressible ".repeat(20)).into_bytes();
            value.extend_from_slice(&[0x00, 0x01, 0x02, 0xFF, n as u8]);
            Record {
                key: Some(format!("key-{n}").into_bytes()),
                value: Some(value),
                timestamp,
                headers: vec![("n".to_owned(), Some(n.to_string().into_bytes()))],
            }
        })
        .collect()
}

/// Reads `topic` whole through a stream queue and a RocketMQ push consumer and checks both
/// got exactly `records`' values, in order.
async fn check_read_by_amqp_and_rocketmq(broker: &mut TestBroker, topic: &str, records: &[Record]) {
    let amqp = broker.addr("amqp");
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    let mut checks = Checks::default();
    let delivered = read_stream(amqp, topic, records.len()).await;
    for (n, (record, got)) in records.iter().zip(&delivered).enumerate() {
        checks.eq("AMQP order", n, got.stream_offset, Some(n as i64));
        checks.eq("AMQP body", n, Some(&got.body), record.value.as_ref());
    }
    let group = format!("CID-{topic}");
    let read = rocketmq_read(&namesrv, &group, topic, records.len()).await;
    checks.eq("RocketMQ redeliveries", 0, read.redelivered, 0);
    for (n, (record, got)) in records.iter().zip(&read.messages).enumerate() {
        checks.eq("RocketMQ order", n, got.queue_offset, n as i64);
        checks.eq("RocketMQ body", n, Some(&got.body), record.value.as_ref());
    }
    checks.finish(topic, records.len());
}

/// Writes [`PER_CODEC`] records with `codec` and checks AMQP and RocketMQ read them whole.
fn codec_is_read_whole(codec: &str, attribute: u8) {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let topic = format!("codec-{codec}");
    runtime().block_on(async {
        create_topic(&bootstrap, &topic, 1).await;
        let records = compressible(codec, 0..PER_CODEC);
        let producer = producer(&bootstrap, &[("compression.codec", codec)]);
        produce(&producer, &topic, 0, &records).await;
        let codecs = stored_codecs(&broker.data_dir(), &topic);
        assert!(
            !codecs.is_empty() && codecs.iter().all(|c| *c == attribute),
            "stored batches of {topic} have codecs {codecs:?}, want all {attribute}"
        );
        check_read_by_amqp_and_rocketmq(&mut broker, &topic, &records).await;
    });
}

#[test]
fn gzip_batches_are_read_whole_by_amqp_and_rocketmq() {
    codec_is_read_whole("gzip", 1);
}

#[test]
fn snappy_batches_are_read_whole_by_amqp_and_rocketmq() {
    codec_is_read_whole("snappy", 2);
}

#[test]
fn lz4_batches_are_read_whole_by_amqp_and_rocketmq() {
    codec_is_read_whole("lz4", 3);
}

#[test]
fn zstd_batches_are_read_whole_by_amqp_and_rocketmq() {
    codec_is_read_whole("zstd", 4);
}

#[test]
fn mixed_codec_batches_are_read_whole_and_in_order() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let topic = "mixed-codecs";
    runtime().block_on(async {
        create_topic(&bootstrap, topic, 1).await;
        let mut records = Vec::new();
        for (step, codec) in ["none", "gzip", "none", "zstd"].into_iter().enumerate() {
            let part = compressible(codec, step * PER_CODEC..(step + 1) * PER_CODEC);
            // A producer per step, flushed before the next, so codecs never share a batch.
            let producer = producer(&bootstrap, &[("compression.codec", codec)]);
            produce(&producer, topic, 0, &part).await;
            records.extend(part);
        }
        let mut codecs = stored_codecs(&broker.data_dir(), topic);
        codecs.dedup();
        assert_eq!(codecs, [0, 1, 0, 4], "stored codec runs of {topic}");
        check_read_by_amqp_and_rocketmq(&mut broker, topic, &records).await;
    });
}

/// Bodies at and over the client's 4 KiB compression threshold, compressible but binary.
fn large_bodies() -> Vec<Vec<u8>> {
    [4_096, 10_000, 300_000]
        .into_iter()
        .enumerate()
        .map(|(n, size)| {
            let mut body: Vec<u8> = format!("large-{n}-").into_bytes();
            let pattern = [0x00, 0x01, 0x02, 0xFF, b'a', b'b', n as u8];
            while body.len() < size {
                body.push(pattern[body.len() % pattern.len()]);
            }
            body
        })
        .collect()
}

#[test]
fn zlib_rocketmq_bodies_over_4_kib_are_read_byte_identical_by_kafka_and_amqp() {
    let mut broker = TestBroker::start();
    let bootstrap = broker.addr("kafka").to_string();
    let amqp = broker.addr("amqp");
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    let topic = "large-bodies";
    runtime().block_on(async {
        create_topic(&bootstrap, topic, 1).await;
        let bodies = large_bodies();
        let client = Client::new("large").expect("RocketMQ client");
        let mut producer = crate::rmq::producer(&client, &namesrv, "PID-large").await;
        let messages = bodies
            .iter()
            .map(|body| {
                rocketmq_model::common::message::message_single::Message::builder()
                    .topic(topic)
                    .tags("Large")
                    .body(body.clone())
                    .build()
                    .expect("message")
            })
            .collect();
        send_in_order(&producer, messages).await;
        producer.shutdown().await;
        client.shutdown().await;

        let count = bodies.len();
        let fetched = tokio::task::spawn_blocking(move || kafka_read(&bootstrap, topic, 1, count))
            .await
            .expect("Kafka reader");
        let delivered = read_stream(amqp, topic, count).await;
        let mut checks = Checks::default();
        for (n, body) in bodies.iter().enumerate() {
            let kafka_value = fetched[n].record.value.clone().unwrap_or_default();
            checks.that(
                "Kafka value = body as sent",
                n,
                &kafka_value == body,
                || format!("{} bytes, sent {}", kafka_value.len(), body.len()),
            );
            let amqp_body = &delivered[n].body;
            checks.that("AMQP body = body as sent", n, amqp_body == body, || {
                format!("{} bytes, sent {}", amqp_body.len(), body.len())
            });
        }
        checks.finish("RocketMQ zlib bodies", count);
    });
}
