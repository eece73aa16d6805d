//! The TLS handshake of one accepted connection, in that connection's task.
//!
//! Invariants worth naming:
//! - the handshake (and, on a permissive listener, the wait for the first byte) is bounded by
//!   the listener's handshake time limit; a client that says nothing cannot hold a task;
//! - a failure closes this connection only and is counted in
//!   `tributary_tls_handshake_failures_total{protocol,reason}` with a reason from the fixed set
//!   of [`Failure::reason`], never from client input; it is logged at info (debug for a peer
//!   that merely went away), at most one line a second for the whole broker with the number of
//!   lines held back since, so a client retrying in a loop cannot flood the log;
//! - a plaintext client on a TLS-only port is told apart by its first byte (a TLS record
//!   starts with 0x16, a handshake record) and closed without a TLS alert it could not read.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::net::TcpStream;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, info};
use tributary_api::{CertificateIdentity, ConnectionStream};

use super::{TlsRole, TlsServer, subject};
use crate::server::listener::RateLimitedLog;
use crate::telemetry::names;

/// The info lines of failed handshakes, broker-wide (the counter has every failure).
static FAILURE_LOG: parking_lot::Mutex<RateLimitedLog> =
    parking_lot::Mutex::new(RateLimitedLog::new());

/// The first byte of a TLS record carrying a handshake message (the ClientHello).
const TLS_HANDSHAKE_RECORD: u8 = 0x16;

/// Why a TLS handshake failed; its reason is the metric label.
#[derive(Debug)]
pub enum Failure {
    /// Not finished within the handshake time limit.
    Timeout,
    /// The peer closed or reset the connection before the handshake finished.
    Closed,
    /// The first byte is not a TLS record's: a plaintext client on a TLS-only port.
    NotTls,
    /// `tls.client_auth = required` and the client sent no certificate.
    NoClientCertificate,
    /// The client's certificate does not verify against `tls.ca_file`.
    BadClientCertificate(rustls::Error),
    /// Any other TLS error (no common version or cipher suite, a malformed message, ...).
    Protocol(rustls::Error),
    /// A socket error.
    Io(io::Error),
}

impl Failure {
    /// Every label value this metric can have.
    pub const REASONS: &[&str] = &[
        "timeout",
        "closed",
        "not_tls",
        "no_client_certificate",
        "bad_client_certificate",
        "protocol",
        "io",
    ];

    pub fn reason(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Closed => "closed",
            Self::NotTls => "not_tls",
            Self::NoClientCertificate => "no_client_certificate",
            Self::BadClientCertificate(_) => "bad_client_certificate",
            Self::Protocol(_) => "protocol",
            Self::Io(_) => "io",
        }
    }

    /// Sorts an error from the TLS layer.
    fn of(error: io::Error) -> Self {
        if let Some(tls) = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        {
            return match tls {
                rustls::Error::NoCertificatesPresented => Self::NoClientCertificate,
                rustls::Error::InvalidCertificate(_) => Self::BadClientCertificate(tls.clone()),
                other => Self::Protocol(other.clone()),
            };
        }
        match error.kind() {
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => Self::Closed,
            _ => Self::Io(error),
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::BadClientCertificate(error) | Self::Protocol(error) => error.to_string(),
            Self::Io(error) => error.to_string(),
            _ => String::new(),
        }
    }
}

/// A connection after its handshake: the stream and the verified client identity.
#[derive(Debug)]
pub struct Established {
    pub stream: ConnectionStream,
    pub client_certificate: Option<CertificateIdentity>,
}

/// Runs the handshake `role` asks for within `limit`; a failure is logged and counted here.
pub async fn establish(
    tcp: TcpStream,
    role: TlsRole,
    server: Option<&Arc<TlsServer>>,
    limit: Duration,
    protocol: &'static str,
    peer: SocketAddr,
) -> Option<Established> {
    let server = match (role, server) {
        (TlsRole::Off, _) => {
            return Some(Established {
                stream: ConnectionStream::Plain(tcp),
                client_certificate: None,
            });
        }
        (_, Some(server)) => server,
        // Never plain TCP on a TLS listener, even if the shell failed to hand it a config.
        (_, None) => {
            tracing::error!(protocol, %peer, "TLS listener without a TLS configuration; closing the connection");
            return None;
        }
    };
    let outcome = tokio::time::timeout(limit, accept(tcp, role, server))
        .await
        .unwrap_or(Err(Failure::Timeout));
    match outcome {
        Ok(established) => Some(established),
        Err(failure) => {
            let reason = failure.reason();
            metrics::counter!(names::TLS_HANDSHAKE_FAILURES, "protocol" => protocol, "reason" => reason)
                .increment(1);
            match failure {
                Failure::Closed => {
                    debug!(protocol, %peer, reason, "TLS handshake failed: the peer went away")
                }
                _ => {
                    let admitted = FAILURE_LOG.lock().admit(Instant::now());
                    if let Some(unlogged) = admitted {
                        info!(protocol, %peer, reason, detail = %failure.detail(), unlogged_since_last = unlogged, "TLS handshake failed; closing the connection")
                    }
                }
            }
            None
        }
    }
}

async fn accept(tcp: TcpStream, role: TlsRole, server: &TlsServer) -> Result<Established, Failure> {
    let mut first = [0u8; 1];
    let peeked = tcp.peek(&mut first).await.map_err(Failure::of)?;
    if peeked == 0 {
        return Err(Failure::Closed);
    }
    if first[0] != TLS_HANDSHAKE_RECORD {
        return match role {
            TlsRole::Permissive => Ok(Established {
                stream: ConnectionStream::Plain(tcp),
                client_certificate: None,
            }),
            _ => Err(Failure::NotTls),
        };
    }
    let acceptor = TlsAcceptor::from(server.current());
    let tls = acceptor.accept(tcp).await.map_err(Failure::of)?;
    let client_certificate = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|chain| chain.first())
        .and_then(|leaf| subject::identity(leaf.as_ref()));
    Ok(Established {
        stream: ConnectionStream::Tls(Box::new(tls)),
        client_certificate,
    })
}
