//! The shell's generic accept loop over real sockets: the connection cap, the drain on
//! shutdown, the abort at the drain deadline, and the HTTP endpoint's health states.
//!
//! `LineEcho` is a test fixture frontend (one request per line, answered with the same line,
//! `slow <ms> <text>` answered after a delay); it exercises the shell, not any protocol.

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tributary::server::http::HttpEndpoint;
use tributary::server::listener::serve_listener;
use tributary::server::shutdown::{DrainOutcome, Lifecycle};
use tributary::telemetry;
use tributary_api::{ConnectionContext, ConnectionError, FrameLimits, Frontend};

const LIMITS: FrameLimits = FrameLimits {
    max_frame_bytes: 4096,
};
const PATIENCE: Duration = Duration::from_secs(5);

/// The process-wide recorder, so the tests can read the shell's counters.
fn metrics() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| telemetry::install_metrics().expect("install recorder"))
}

#[derive(Debug)]
struct LineEcho {
    name: &'static str,
    /// Told when a request starts being served.
    started: mpsc::UnboundedSender<String>,
}

#[async_trait]
impl Frontend for LineEcho {
    fn name(&self) -> &'static str {
        self.name
    }

    fn default_port(&self) -> u16 {
        0
    }

    async fn serve_connection(
        &self,
        stream: tributary_api::ConnectionStream,
        context: ConnectionContext,
    ) -> Result<(), ConnectionError> {
        let (read, mut write) = stream.into_split();
        let mut lines = BufReader::new(read).lines();
        loop {
            // Between requests, shutdown ends the connection; a request in flight completes.
            let line = tokio::select! {
                line = lines.next_line() => line?,
                () = context.shutdown.cancelled() => return Ok(()),
            };
            let Some(line) = line else { return Ok(()) };
            let _ = self.started.send(line.clone());
            let reply = match line
                .strip_prefix("slow ")
                .and_then(|rest| rest.split_once(' '))
            {
                Some((ms, text)) => {
                    tokio::time::sleep(Duration::from_millis(ms.parse()?)).await;
                    text.to_owned()
                }
                None => line,
            };
            write.write_all(format!("{reply}\n").as_bytes()).await?;
        }
    }
}

struct Served {
    addr: std::net::SocketAddr,
    lifecycle: Lifecycle,
    started: mpsc::UnboundedReceiver<String>,
}

async fn serve_echo(name: &'static str, max_connections: usize) -> Served {
    let (started_tx, started) = mpsc::unbounded_channel();
    let frontend = Arc::new(LineEcho {
        name,
        started: started_tx,
    });
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let lifecycle = Lifecycle::new();
    let accept = serve_listener(
        frontend,
        listener,
        LIMITS,
        max_connections,
        lifecycle.clone(),
    );
    lifecycle.tracker.spawn(accept);
    Served {
        addr,
        lifecycle,
        started,
    }
}

async fn request(stream: &mut TcpStream, line: &str) -> String {
    stream
        .write_all(format!("{line}\n").as_bytes())
        .await
        .expect("send");
    read_line(stream).await
}

/// Reads one line; an empty string means EOF (or a reset).
async fn read_line(stream: &mut TcpStream) -> String {
    let mut reply = Vec::new();
    let mut byte = [0u8; 1];
    let read_all = async {
        loop {
            match stream.read(&mut byte).await {
                Ok(0) | Err(_) => break,
                Ok(_) if byte[0] == b'\n' => break,
                Ok(_) => reply.push(byte[0]),
            }
        }
    };
    tokio::time::timeout(PATIENCE, read_all)
        .await
        .expect("reply or EOF in time");
    String::from_utf8(reply).expect("utf-8 reply")
}

fn counter(name: &str, protocol: &str) -> Option<u64> {
    let prefix = format!("{name}{{protocol=\"{protocol}\"}} ");
    metrics().render().lines().find_map(|line| {
        line.strip_prefix(&prefix)
            .and_then(|value| value.parse().ok())
    })
}

async fn wait_until(mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + PATIENCE;
    while !done() {
        assert!(Instant::now() < deadline, "condition not reached in time");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn the_connection_over_the_cap_is_closed_at_once_and_a_freed_slot_is_reused() {
    metrics();
    let served = serve_echo("echo-cap", 2).await;
    let mut first = TcpStream::connect(served.addr).await.expect("connect 1");
    let mut second = TcpStream::connect(served.addr).await.expect("connect 2");
    assert_eq!(request(&mut first, "one").await, "one");
    assert_eq!(request(&mut second, "two").await, "two");

    let mut third = TcpStream::connect(served.addr)
        .await
        .expect("the kernel accepts into the backlog");
    let refused_at = Instant::now();
    let _ = third.write_all(b"three\n").await;
    assert_eq!(
        read_line(&mut third).await,
        "",
        "the third connection must be closed unanswered"
    );
    assert!(
        refused_at.elapsed() < Duration::from_secs(1),
        "closed at once, not after a timeout"
    );
    assert_eq!(
        counter("tributary_connections_refused_total", "echo-cap"),
        Some(1)
    );
    assert_eq!(
        counter("tributary_connections_accepted_total", "echo-cap"),
        Some(2)
    );

    drop(first);
    // The accept loop plus the one remaining connection: the first one's task and permit are gone.
    wait_until(|| served.lifecycle.tracker.len() == 2).await;
    let mut fourth = TcpStream::connect(served.addr).await.expect("connect 4");
    assert_eq!(
        request(&mut fourth, "four").await,
        "four",
        "a freed slot takes a new connection"
    );
    assert_eq!(request(&mut second, "still").await, "still");
    assert_eq!(
        counter("tributary_connections_accepted_total", "echo-cap"),
        Some(3)
    );
    assert_eq!(
        counter("tributary_connections_refused_total", "echo-cap"),
        Some(1)
    );

    assert_eq!(
        served.lifecycle.drain(PATIENCE).await,
        DrainOutcome::Drained
    );
}

#[tokio::test]
async fn shutdown_lets_the_request_in_flight_finish_then_closes() {
    let mut served = serve_echo("echo-drain", 8).await;
    let mut client = TcpStream::connect(served.addr).await.expect("connect");
    client
        .write_all(b"slow 400 finished\n")
        .await
        .expect("send");
    assert_eq!(
        served.started.recv().await.as_deref(),
        Some("slow 400 finished")
    );

    let drain_started = Instant::now();
    let lifecycle = served.lifecycle.clone();
    let drain = tokio::spawn(async move { lifecycle.drain(PATIENCE).await });
    assert_eq!(
        read_line(&mut client).await,
        "finished",
        "the slow reply arrives despite shutdown"
    );
    assert_eq!(drain.await.expect("drain task"), DrainOutcome::Drained);
    assert!(
        drain_started.elapsed() >= Duration::from_millis(300),
        "drain waited for the request"
    );
    assert_eq!(
        read_line(&mut client).await,
        "",
        "the connection is closed after its request"
    );
    assert!(
        TcpStream::connect(served.addr).await.is_err(),
        "the listener is closed"
    );
}

#[tokio::test]
async fn connections_past_the_drain_deadline_are_aborted() {
    let mut served = serve_echo("echo-abort", 8).await;
    let mut client = TcpStream::connect(served.addr).await.expect("connect");
    client.write_all(b"slow 60000 never\n").await.expect("send");
    assert!(served.started.recv().await.is_some());

    let drain_started = Instant::now();
    let outcome = served.lifecycle.drain(Duration::from_millis(200)).await;
    assert_eq!(outcome, DrainOutcome::Aborted { tasks: 1 });
    assert!(
        drain_started.elapsed() < Duration::from_secs(2),
        "abort is prompt"
    );
    assert_eq!(
        read_line(&mut client).await,
        "",
        "the aborted connection is closed unanswered"
    );
    assert!(served.lifecycle.tracker.is_empty());
}

async fn http_status(addr: std::net::SocketAddr, method: &str, path: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let request = format!("{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut response = String::new();
    tokio::time::timeout(PATIENCE, stream.read_to_string(&mut response))
        .await
        .expect("response in time")
        .expect("read response");
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    (status, response)
}

#[tokio::test]
async fn health_turns_503_when_shutdown_begins_while_metrics_keep_answering() {
    let stopping = CancellationToken::new();
    let endpoint = Arc::new(HttpEndpoint::new(metrics().clone(), stopping.clone()));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let lifecycle = Lifecycle::new();
    lifecycle.tracker.spawn(serve_listener(
        endpoint,
        listener,
        LIMITS,
        4,
        lifecycle.clone(),
    ));

    let (status, body) = http_status(addr, "GET", "/health").await;
    assert_eq!(status, 200, "{body}");
    stopping.cancel();
    let (status, body) = http_status(addr, "GET", "/health").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.ends_with("shutting down\n"), "{body}");
    let (status, body) = http_status(addr, "GET", "/metrics").await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("content-type: text/plain; version=0.0.4"),
        "{body}"
    );
    assert!(
        body.contains("tributary_http_requests_total{endpoint=\"health\",status=\"503\"}"),
        "{body}"
    );
    assert_eq!(http_status(addr, "GET", "/other").await.0, 404);
    assert_eq!(http_status(addr, "DELETE", "/metrics").await.0, 405);

    assert_eq!(lifecycle.drain(PATIENCE).await, DrainOutcome::Drained);
}
