//! The brokers' internal RPC listener, spoken to directly with the broker's own codec: a
//! connection whose first frame lacks the cluster secret (another secret, or a request right
//! away) is closed unanswered; with the secret from PostgreSQL it is welcomed and answers calls
//! (an unknown queue, with the engine's error).

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tributary::cloud::rpc::codec::{Frame, Request, WireError, decode_frame, encode_frame};
use tributary::cloud::rpc::outgoing::Outgoing;

use crate::broker::TestBroker;
use crate::cluster::start_broker;
use crate::services::{bucket, connect, fresh_database, unique};

/// The internal RPC port `broker` logged.
fn internal_port(broker: &mut TestBroker) -> u16 {
    let line = match broker
        .lines_seen()
        .iter()
        .find(|line| line.contains("internal RPC listening"))
    {
        Some(line) => line.clone(),
        None => broker.wait_for_line(&["internal RPC listening"], Duration::from_secs(10)),
    };
    let digits: String = line
        .split("internal_port=")
        .nth(1)
        .expect("the port in the line")
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().expect("a port")
}

/// Sends `frames`, then reads until one frame arrives (`Some`) or the broker closes (`None`).
async fn exchange(port: u16, frames: &[Frame]) -> Option<Frame> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut out = Outgoing::default();
    for frame in frames {
        encode_frame(frame, &mut out).expect("encode");
    }
    stream.write_all(&out.to_bytes()).await.expect("write");
    let mut buf = BytesMut::new();
    loop {
        if let Some(frame) = decode_frame(&mut buf).expect("a valid frame") {
            return Some(frame);
        }
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_buf(&mut buf))
            .await
            .expect("an answer or a close within 10 s");
        match read {
            Ok(0) | Err(_) => return None,
            Ok(_) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_a_caller_with_the_cluster_secret_is_served() {
    let database = fresh_database("rpc").await;
    let objects = format!("s3://{}/{}", bucket(), unique("rpc"));
    let config = tempfile::NamedTempFile::new().expect("config file");
    let path = config.path().to_str().expect("utf-8").to_owned();
    let mut broker = start_broker(1, &database, &objects, &path);
    let port = internal_port(&mut broker);
    let depth = Frame::Request {
        id: 7,
        request: Request::Depth {
            queue: "nowhere".into(),
        },
    };

    let wrong = Frame::Hello {
        broker_id: 9,
        secret: Bytes::from_static(&[0; 32]),
    };
    assert_eq!(exchange(port, &[wrong, depth.clone()]).await, None);
    assert_eq!(exchange(port, std::slice::from_ref(&depth)).await, None);

    let secret: Vec<u8> = connect(&database)
        .await
        .query_one("SELECT secret FROM cluster_secret", &[])
        .await
        .expect("the secret row")
        .get(0);
    assert_eq!(secret.len(), 32);
    let hello = Frame::Hello {
        broker_id: 9,
        secret: Bytes::from(secret),
    };
    assert_eq!(
        exchange(port, std::slice::from_ref(&hello)).await,
        Some(Frame::Welcome)
    );
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .expect("connect");
    let mut out = Outgoing::default();
    encode_frame(&hello, &mut out).expect("encode");
    encode_frame(&depth, &mut out).expect("encode");
    stream.write_all(&out.to_bytes()).await.expect("write");
    let mut buf = BytesMut::new();
    let mut frames = Vec::new();
    while frames.len() < 2 {
        if let Some(frame) = decode_frame(&mut buf).expect("a valid frame") {
            frames.push(frame);
            continue;
        }
        let read = tokio::time::timeout(Duration::from_secs(10), stream.read_buf(&mut buf))
            .await
            .expect("answers within 10 s")
            .expect("read");
        assert_ne!(read, 0, "closed early; got {frames:?}");
    }
    assert_eq!(
        frames,
        vec![
            Frame::Welcome,
            Frame::Response {
                id: 7,
                reply: Err(WireError::UnknownQueue("nowhere".into())),
            }
        ]
    );
}
