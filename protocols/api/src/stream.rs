//! The byte stream of one accepted connection: plain TCP, or TLS over TCP.
//!
//! The shell accepts the TCP connection and, on a TLS listener, runs the TLS handshake before a
//! frontend sees anything; a frontend serves a [`ConnectionStream`] and never learns how it was
//! established, except through [`ConnectionContext::client_certificate`](crate::ConnectionContext).
//!
//! Invariants worth naming:
//! - the plaintext path costs nothing over a bare `TcpStream`: the enum's `Plain` variant holds
//!   it unboxed, every poll is one `match` away from the socket's own, and [`split`] hands out
//!   tokio's owned halves (no lock between the reader and the writer);
//! - only the TLS variant is boxed (a rustls connection is kilobytes of state) and only its
//!   halves share a lock (tokio's `split`), since one TLS session serves both directions.
//!
//! [`split`]: ConnectionStream::into_split

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

/// A server-side TLS session over TCP.
pub type TlsStream = tokio_rustls::server::TlsStream<TcpStream>;

/// One connection's stream, as a frontend serves it.
#[derive(Debug)]
pub enum ConnectionStream {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
}

/// The read half of a [`ConnectionStream`].
#[derive(Debug)]
pub enum ConnectionReader {
    Plain(OwnedReadHalf),
    Tls(tokio::io::ReadHalf<Box<TlsStream>>),
}

/// The write half of a [`ConnectionStream`].
#[derive(Debug)]
pub enum ConnectionWriter {
    Plain(OwnedWriteHalf),
    Tls(tokio::io::WriteHalf<Box<TlsStream>>),
}

impl ConnectionStream {
    /// The TCP connection underneath (for socket options).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(tcp) => tcp,
            Self::Tls(tls) => tls.get_ref().0,
        }
    }

    /// Whether the connection speaks TLS.
    pub fn is_tls(&self) -> bool {
        matches!(self, Self::Tls(_))
    }

    /// Splits the stream into halves that can be used from different tasks.
    pub fn into_split(self) -> (ConnectionReader, ConnectionWriter) {
        match self {
            Self::Plain(tcp) => {
                let (read, write) = tcp.into_split();
                (
                    ConnectionReader::Plain(read),
                    ConnectionWriter::Plain(write),
                )
            }
            Self::Tls(tls) => {
                let (read, write) = tokio::io::split(tls);
                (ConnectionReader::Tls(read), ConnectionWriter::Tls(write))
            }
        }
    }
}

impl ConnectionReader {
    /// Reads what has already arrived without waiting, as `OwnedReadHalf::try_read_buf`:
    /// `WouldBlock` when nothing is ready (for TLS: no whole record is decrypted or buffered).
    pub fn try_read_buf(&mut self, buf: &mut bytes::BytesMut) -> io::Result<usize> {
        match self {
            Self::Plain(half) => half.try_read_buf(buf),
            Self::Tls(half) => {
                // One poll with a waker that does nothing: the caller's next real read polls
                // again and registers its own waker, so no wake-up is lost.
                let mut cx = Context::from_waker(std::task::Waker::noop());
                match tokio_util::io::poll_read_buf(Pin::new(half), &mut cx, buf) {
                    Poll::Ready(result) => result,
                    Poll::Pending => Err(io::ErrorKind::WouldBlock.into()),
                }
            }
        }
    }
}

impl From<TcpStream> for ConnectionStream {
    fn from(tcp: TcpStream) -> Self {
        Self::Plain(tcp)
    }
}

/// Forwards a poll to whichever variant holds the stream (both are `Unpin`).
macro_rules! forward {
    ($self:ident, $inner:ident => $call:expr) => {
        match $self.get_mut() {
            Self::Plain($inner) => $call,
            Self::Tls($inner) => $call,
        }
    };
}

impl AsyncRead for ConnectionStream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        forward!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for ConnectionStream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        forward!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        forward!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(tcp) => tcp.is_write_vectored(),
            Self::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        forward!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        forward!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

impl AsyncRead for ConnectionReader {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        forward!(self, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for ConnectionWriter {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        forward!(self, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        forward!(self, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(half) => half.is_write_vectored(),
            Self::Tls(half) => half.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        forward!(self, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        forward!(self, s => Pin::new(s).poll_shutdown(cx))
    }
}

/// The identity a verified client certificate gives its connection.
///
/// Invariant: only set when the TLS handshake verified the certificate chain against the
/// listener's client CAs; a frontend may trust it as it trusts a checked password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateIdentity {
    /// The subject's (last) common name, if it has one: the broker user it maps to.
    pub common_name: Option<String>,
    /// The subject distinguished name in RFC 4514 form (`CN=alice,O=Example`), as Kafka
    /// prints an SSL principal's full name.
    pub subject: String,
}
