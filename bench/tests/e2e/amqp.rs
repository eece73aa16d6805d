//! AMQP: an observer queue bound to every partition's routing key before the run holds one
//! copy of every accepted message; its depth is the independent count.

use lapin::options::{ExchangeDeclareOptions, QueueBindOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use tributary_bench::driver::Protocol;

#[test]
fn tiny_workload_over_amqp_matches_an_observer_queue() {
    let workload = crate::tiny_workload();
    let broker = crate::start_tributary(&workload);
    let uri = broker.address(Protocol::Amqp).to_owned();
    crate::runtime().block_on(async {
        let connection = Connection::connect(&uri, ConnectionProperties::default())
            .await
            .expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        // The runner's first topic; declared here first, with the driver's arguments.
        let exchange = "h19-amqp-t0";
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Direct,
                durable,
                FieldTable::default(),
            )
            .await
            .expect("exchange");
        let queue = QueueDeclareOptions {
            durable: true,
            ..Default::default()
        };
        channel
            .queue_declare("h19-observer".into(), queue, FieldTable::default())
            .await
            .expect("observer queue");
        for n in 0..workload.partitions_per_topic {
            channel
                .queue_bind(
                    "h19-observer".into(),
                    exchange.into(),
                    n.to_string().as_str().into(),
                    QueueBindOptions::default(),
                    FieldTable::default(),
                )
                .await
                .expect("bind");
        }
        let output = crate::run(&workload, Protocol::Amqp, &uri, "h19-amqp").await;
        assert_eq!(output.topics[0], exchange);
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let depth = channel
            .queue_declare("h19-observer".into(), passive, FieldTable::default())
            .await
            .expect("observer depth")
            .message_count();
        crate::check(&output, u64::from(depth));
    });
    // The broker goes down after the client is done with it.
    drop(broker);
}
