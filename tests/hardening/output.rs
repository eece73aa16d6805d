//! Output and per-connection buffers against the real binary: a consumer that stops reading
//! holds at most its connection's send budget, and is closed after the send timeout; Kafka and
//! RocketMQ peers that pipeline requests and read nothing are closed the same way; an AMQP
//! connection cannot hold more partly received messages than its buffer cap.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use lapin::BasicProperties;
use lapin::options::ConfirmSelectOptions;
use tributary_amqp::codec as amqp;

use crate::conns::{Amqp, scrape, start, status_bytes};
use crate::lapin_support;

const MIB: u64 = 1 << 20;
/// Largest AMQP message the default settings accept is 900 KiB; this stays under it.
const BIG_MESSAGE: usize = 800 << 10;

fn shortstr(out: &mut Vec<u8>, text: &str) {
    out.push(text.len() as u8);
    out.extend_from_slice(text.as_bytes());
}

/// Publishes `count` messages of `size` bytes to queue `queue` (declared durable) with
/// confirms, on a lapin connection.
fn fill_queue(addr: SocketAddr, queue: &str, count: usize, size: usize) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let connection = lapin_support::connect_to(addr).await;
        let channel = connection.create_channel().await.expect("channel");
        lapin_support::declare(&channel, queue, true).await;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .expect("confirm.select");
        let body = vec![7u8; size];
        for _ in 0..count {
            lapin_support::publish(&channel, "", queue, &body, BasicProperties::default()).await;
        }
        connection.close(200, "done".into()).await.expect("close");
    });
}

/// Opens a raw AMQP connection that consumes `queue` with no prefetch limit and then reads
/// nothing more.
fn stalled_consumer(addr: SocketAddr, queue: &str) -> Amqp {
    let mut client = Amqp::open(addr);
    client.method(1, 20, 10, &[0]);
    client.expect(20, 11);
    let mut consume = vec![0, 0];
    shortstr(&mut consume, queue);
    shortstr(&mut consume, "stalled");
    consume.push(0); // no_local, no_ack, exclusive, no_wait: all off
    consume.extend_from_slice(&0u32.to_be_bytes()); // no arguments
    client.method(1, 60, 20, &consume);
    client.expect(60, 21);
    client
}

/// Reads and drops what the server sends until it closes; how long after `since` that was,
/// or `None` if it is still open at `give_up`.
fn drained_until_closed(stream: &mut TcpStream, give_up: Duration) -> Option<Instant> {
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .expect("read timeout");
    let deadline = Instant::now() + give_up;
    let mut scratch = vec![0u8; 1 << 16];
    loop {
        match stream.read(&mut scratch) {
            Ok(0) | Err(_) if Instant::now() >= deadline => return None,
            Ok(0) => return Some(Instant::now()),
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if Instant::now() >= deadline {
                    return None;
                }
            }
            Err(_) => return Some(Instant::now()),
        }
    }
}

fn closed_for(metrics: &str, listener: &str, reason: &str) -> f64 {
    let series = format!(
        "tributary_connections_closed_total{{listener=\"{listener}\",reason=\"{reason}\"}}"
    );
    lapin_support::sample(metrics, &series).unwrap_or(0.0)
}

#[test]
fn a_consumer_that_stops_reading_holds_only_its_send_budget() {
    // Send timeout off: the budget alone must hold the line.
    let mut broker = start(
        "[limits]\nconnection_buffer_bytes = 4194304\nsend_timeout_ms = 0\n\n[amqp]\nidle_timeout_ms = 0\n",
    );
    let addr = broker.addr("amqp");
    let pid = broker.pid();
    // 240 MB queued: enough to fill 256 queued deliveries of 800 KiB (the count bound alone).
    fill_queue(addr, "stalled", 300, BIG_MESSAGE);
    thread::sleep(Duration::from_millis(500));
    let before = status_bytes(pid, "VmRSS:");
    let consumers: Vec<Amqp> = (0..3).map(|_| stalled_consumer(addr, "stalled")).collect();
    // Deliveries are queued as fast as the log is read; give them time to pile up.
    thread::sleep(Duration::from_secs(4));
    let growth = status_bytes(pid, "VmRSS:").saturating_sub(before);
    eprintln!("RSS growth with 3 stalled consumers: {} MiB", growth / MIB);
    // Three connections x 4 MiB queued, plus the socket buffers the kernel holds (not RSS) and
    // what reading the log costs. Without the byte budget each connection queues up to 256
    // deliveries: about 200 MiB each.
    assert!(
        growth < 96 * MIB,
        "3 stalled consumers under a 4 MiB connection budget grew RSS by {} MiB",
        growth / MIB
    );
    drop(consumers);
}

#[test]
fn peers_that_stop_reading_are_closed_after_the_send_timeout() {
    let mut broker = start(
        "[limits]\nsend_timeout_ms = 1000\n\n[amqp]\nidle_timeout_ms = 0\n\n[kafka]\nconnections_max_idle_ms = 0\n\n[rocketmq]\nchannel_idle_ms = 0\n",
    );
    let amqp_addr = broker.addr("amqp");
    let kafka_addr = broker.addr("kafka");
    let rocketmq_addr = broker.addr("rocketmq-broker");
    let http = broker.http_addr();
    fill_queue(amqp_addr, "unread", 60, BIG_MESSAGE);

    let amqp = thread::spawn(move || {
        let mut consumer = stalled_consumer(amqp_addr, "unread");
        // The socket fills within moments; then one second without progress closes it.
        thread::sleep(Duration::from_secs(4));
        drained_until_closed(&mut consumer.stream, Duration::from_secs(10))
    });
    // Kafka: ApiVersions v0 requests pipelined, never read (each answer is about 400 bytes).
    let kafka = thread::spawn(move || pipeline_unread(kafka_addr, &kafka_api_versions()));
    // RocketMQ: requests with an unknown code, each answered with a remark, never read.
    let rocketmq = thread::spawn(move || pipeline_unread(rocketmq_addr, &rocketmq_unknown_code()));

    for (name, outcome) in [
        ("amqp", amqp.join().expect("amqp")),
        ("kafka", kafka.join().expect("kafka")),
        ("rocketmq", rocketmq.join().expect("rocketmq")),
    ] {
        assert!(
            outcome.is_some(),
            "the {name} connection that reads nothing was not closed"
        );
    }
    let metrics = scrape(http);
    for listener in ["amqp", "kafka", "rocketmq-broker"] {
        assert!(
            closed_for(&metrics, listener, "send_timeout") >= 1.0,
            "no send_timeout close counted for {listener}"
        );
    }
    // A reading client still works: the consumer's deliveries went back to the queue.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let connection = lapin_support::connect_to(amqp_addr).await;
        let channel = connection.create_channel().await.expect("channel");
        let message = lapin_support::get(&channel, "unread").await;
        assert!(
            message.is_some(),
            "the closed consumer's deliveries are requeued"
        );
    });
}

/// Writes `request` over and over without reading, for up to 20 s or until the server
/// closes; then waits for the close. `None` if the server never closed.
fn pipeline_unread(addr: SocketAddr, request: &[u8]) -> Option<Instant> {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_write_timeout(Some(Duration::from_millis(500)))
        .expect("write timeout");
    let batch: Vec<u8> = request.repeat(256);
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        match stream.write(&batch) {
            Ok(_) => {}
            Err(err)
                if matches!(
                    err.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                // The broker stopped reading (its output is full); it must close us soon.
                break;
            }
            Err(_) => return Some(Instant::now()),
        }
    }
    // Do not read before the broker gave up: reading would let it make progress.
    thread::sleep(Duration::from_secs(4));
    drained_until_closed(&mut stream, Duration::from_secs(10))
}

fn kafka_api_versions() -> Vec<u8> {
    // ApiVersions v0: api key 18, version 0, correlation id 1, client id null.
    let body = [0u8, 18, 0, 0, 0, 0, 0, 1, 0xFF, 0xFF];
    let mut frame = (body.len() as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&body);
    frame
}

fn rocketmq_unknown_code() -> Vec<u8> {
    let header =
        br#"{"code":31999,"language":"JAVA","version":401,"opaque":1,"flag":0,"extFields":{}}"#;
    let mut frame = ((4 + header.len()) as u32).to_be_bytes().to_vec();
    frame.extend_from_slice(&(header.len() as u32).to_be_bytes());
    frame.extend_from_slice(header);
    frame
}

#[test]
fn partly_received_amqp_messages_are_capped_per_connection() {
    // 1 MiB per connection: one 800 KiB message at a time fits, a second one does not.
    let mut broker = start("[limits]\nconnection_buffer_bytes = 1048576\n");
    let addr = broker.addr("amqp");
    let http = broker.http_addr();
    let mut client = Amqp::open(addr);
    for channel in [1u16, 2] {
        client.method(channel, 20, 10, &[0]);
        client.expect(20, 11);
    }
    let header = |size: u64| {
        let mut payload = vec![0, 60, 0, 0];
        payload.extend_from_slice(&size.to_be_bytes());
        payload.extend_from_slice(&[0, 0]);
        payload
    };
    let mut publish = vec![0, 0];
    shortstr(&mut publish, "");
    shortstr(&mut publish, "nowhere");
    publish.push(0);
    // Channel 1 announces 800 KiB and sends a part of it; so does channel 2.
    let mut out = BytesMut::new();
    for channel in [1u16, 2] {
        let mut method = vec![0, 60, 0, 40];
        method.extend_from_slice(&publish);
        amqp::encode_frame(&mut out, amqp::FRAME_METHOD, channel, &method);
        amqp::encode_frame(
            &mut out,
            amqp::FRAME_HEADER,
            channel,
            &header(BIG_MESSAGE as u64),
        );
        amqp::encode_frame(&mut out, amqp::FRAME_BODY, channel, &[1u8; 1024]);
    }
    client.stream.write_all(&out).expect("send");
    // connection.close with 506 RESOURCE_ERROR.
    client.expect(10, 50);
    let metrics = scrape(http);
    assert!(
        closed_for(&metrics, "amqp", "buffer_limit") >= 1.0,
        "the close is counted"
    );
}
