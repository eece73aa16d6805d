//! The brokers' internal RPC: how a broker forwards a queue call to the broker that runs the
//! queue, and an AMQP or RocketMQ append to the broker that leads the partition.
//!
//! Each broker listens on `cluster.internal_port` (0: an OS-chosen port) on the host its other
//! listeners bind, and advertises the port in its `brokers` row. A caller keeps one connection
//! per peer ([`client::Peers`]) and multiplexes calls over it by request id; a broken
//! connection fails its calls with a retriable error and the next call reconnects.
//!
//! Who may call: the first frame of a connection must carry the cluster secret, 32 random bytes
//! the first broker of the cluster stored in PostgreSQL (`cluster_secret`) and every broker
//! reads at start; any other first frame, or none within [`HELLO_TIMEOUT`], closes the
//! connection. This keeps out a process that can reach the port but cannot read the database
//! (a client pointed at the wrong port, another cluster's broker, a scan). It does NOT protect
//! the traffic itself: there is no TLS, so anyone who can read the network between brokers
//! sees the secret and the messages, and can replay the secret; run the brokers' internal
//! traffic on a trusted network (as PostgreSQL's own traffic would be).
//!
//! Invariants: frames are parsed by [`codec`] (lengths checked before buffering); a server
//! connection runs at most [`MAX_IN_FLIGHT`] calls at once and stops reading while at the
//! limit; a caller waits for a free slot of the same bound, so a slow peer applies
//! backpressure instead of growing memory.

pub mod client;
pub mod codec;
pub mod outgoing;
pub mod server;

use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncWrite, AsyncWriteExt};

pub use client::Peers;
pub use codec::{Reply, Request, WireError};

/// Calls in flight per connection, on either side.
pub const MAX_IN_FLIGHT: usize = 256;

/// Connections a broker's internal listener serves at once.
pub const MAX_CONNECTIONS: usize = 256;

/// How long a new connection may take to send its first frame.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(5);

/// Bytes of the random cluster secret.
pub const SECRET_BYTES: usize = 32;

/// What the server side runs for each request. `conn` identifies the calling connection
/// (one per calling broker), so state a caller holds can be released when it goes.
#[async_trait]
pub trait Handler: Send + Sync + 'static {
    async fn handle(&self, conn: u64, request: Request) -> Result<Reply, WireError>;

    /// The connection `conn` closed (the caller died, restarted or reconnected); runs after
    /// its last call finished.
    async fn closed(&self, conn: u64);
}

/// Writes encoded frames, piece by piece (large message bodies straight from their buffers).
pub(crate) async fn write_outgoing<W: AsyncWrite + Unpin>(
    writer: &mut W,
    out: &outgoing::Outgoing,
) -> std::io::Result<()> {
    for piece in out.pieces() {
        writer.write_all(piece).await?;
    }
    Ok(())
}

/// Reads the cluster secret, creating it if this is the first broker.
pub async fn cluster_secret(pool: &super::pool::PgPool) -> super::CloudResult<Vec<u8>> {
    let mut fresh = [0u8; SECRET_BYTES];
    getrandom::fill(&mut fresh).map_err(|error| {
        super::CloudError::Rpc(format!("no randomness for the cluster secret: {error}"))
    })?;
    let client = pool.get().await?;
    client
        .execute(
            "INSERT INTO cluster_secret (id, secret) VALUES (1, $1) ON CONFLICT (id) DO NOTHING",
            &[&fresh.as_slice()],
        )
        .await
        .map_err(super::CloudError::pg("creating the cluster secret"))?;
    let row = client
        .query_one("SELECT secret FROM cluster_secret WHERE id = 1", &[])
        .await
        .map_err(super::CloudError::pg("reading the cluster secret"))?;
    Ok(row.get(0))
}

/// Compares secrets without an early exit (the time taken does not tell how much matched).
pub(crate) fn same_secret(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
