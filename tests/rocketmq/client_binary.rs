//! `rocketmq-client-rust` 1.0.0 with ROCKETMQ binary headers (what `ROCKETMQ_SERIALIZE_TYPE=ROCKETMQ`
//! selects) against the real binary: a send and a push-consumed round trip, with the broker's
//! debug log proving the requests arrived in the binary form.

use crate::broker;
use crate::rocketmq;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use broker::TestBroker;
use parking_lot::Mutex;
use rocketmq::{Client, body, consumer, message, producer, runtime, wait_for};
use rocketmq_protocol::protocol::SerializeType;

#[test]
fn binary_headers_send_and_consume_round_trip() {
    let mut broker = TestBroker::start_with(&["--log=info,tributary_rocketmq=debug"]);
    let namesrv = broker.addr("rocketmq-namesrv").to_string();
    runtime().block_on(async {
        let client = Client::with_headers("binary", SerializeType::ROCKETMQ).expect("client");
        let mut producer = producer(&client, &namesrv, "PID-binary").await;
        let mut expected = BTreeSet::new();
        for n in 0..8 {
            let result = producer
                .send(message("BinaryRmq", "TagX", body("bin", n), "bin"))
                .await
                .expect("send")
                .expect("send result");
            assert!(result.offset_msg_id.is_some());
            expected.insert(body("bin", n));
        }
        let received = Arc::new(Mutex::new(Vec::new()));
        let mut consumer = consumer(
            &client,
            &namesrv,
            "CID-binary",
            "BinaryRmq",
            "TagX || TagY",
            Arc::clone(&received),
        )
        .await;
        wait_for("8 messages", Duration::from_secs(60), || {
            received.lock().len() >= 8
        })
        .await;
        let bodies: BTreeSet<Vec<u8>> = received.lock().iter().map(|(b, _, _)| b.clone()).collect();
        assert_eq!(bodies, expected);
        consumer.shutdown().await;
        producer.shutdown().await;
        client.shutdown().await;
    });
    let line = broker.wait_for_line(&["code=10", "serialize=RocketMq"], Duration::from_secs(5));
    assert!(line.contains("BinaryRmq"), "{line}");
    broker.terminate();
}
