//! How the broker shell runs a protocol frontend. The shell owns the listener, the connection
//! cap and shutdown; a frontend serves one accepted connection at a time per call and must return
//! soon after `ConnectionContext::shutdown` is cancelled (finishing the request in flight).

use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::guard::{ConnectionTimeouts, MemoryBudget};
use crate::log::{LogService, TopicAdmin};
use crate::metadata::MetadataStore;
use crate::offsets::OffsetStore;
use crate::outbound::SendBudget;
use crate::queue::QueueService;
use crate::scheduler::Scheduler;
use crate::stream::{CertificateIdentity, ConnectionStream};
use crate::transactions::TransactionReads;

/// The engine's services, handed to every frontend. Each is a narrow trait so a second engine
/// (the scale-out one) can stand behind any of them.
#[derive(Debug, Clone)]
pub struct Engine {
    pub log: Arc<dyn LogService>,
    pub topics: Arc<dyn TopicAdmin>,
    pub offsets: Arc<dyn OffsetStore>,
    pub queues: Arc<dyn QueueService>,
    pub metadata: Arc<dyn MetadataStore>,
    pub scheduler: Arc<dyn Scheduler>,
    /// Which records Kafka transactions leave readable, for readers of every protocol.
    pub transactions: Arc<TransactionReads>,
}

/// Size limits a frontend's codec enforces before allocating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLimits {
    /// Largest frame accepted from a client, length prefix included.
    pub max_frame_bytes: usize,
}

/// Facts about one accepted connection.
#[derive(Debug, Clone)]
pub struct ConnectionContext {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    /// Cancelled when the broker shuts down.
    pub shutdown: CancellationToken,
    pub limits: FrameLimits,
    /// The listener's time limits.
    pub timeouts: ConnectionTimeouts,
    /// The broker-wide budget for buffered request frames.
    pub budget: MemoryBudget,
    /// The broker-wide and per-connection budgets for output queued for sockets.
    pub send_budget: SendBudget,
    /// Where the frontend records the id the client gives itself, for the admin API.
    pub client_id: ClientId,
    /// The verified client certificate of a TLS connection (mutual TLS), if the client sent one.
    pub client_certificate: Option<CertificateIdentity>,
}

/// The id a client names itself with on one connection (Kafka `client.id`, RocketMQ
/// `clientID`), shown by the admin API's connection list.
///
/// Invariant: it holds at most [`ClientId::MAX_CHARS`] characters (longer ids are cut), so a
/// client cannot make the broker keep an unbounded string per connection.
#[derive(Debug, Clone, Default)]
pub struct ClientId(Arc<std::sync::Mutex<Option<String>>>);

impl ClientId {
    /// Longest id kept; Kafka and RocketMQ clients use ids well under this.
    pub const MAX_CHARS: usize = 128;

    /// Records `id` (cut to [`Self::MAX_CHARS`]); an empty id or the one already held is no-op.
    pub fn set(&self, id: &str) {
        if id.is_empty() {
            return;
        }
        let cut = match id.char_indices().nth(Self::MAX_CHARS) {
            Some((end, _)) => &id[..end],
            None => id,
        };
        let mut held = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if held.as_deref() != Some(cut) {
            *held = Some(cut.to_owned());
        }
    }

    /// The id recorded last, if any.
    pub fn get(&self) -> Option<String> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// Where a frontend runs work that is not a connection (the AMQP topic feeds): tasks spawned on
/// `tracker` are waited for before the engine is closed and must end soon after `shutdown`.
#[derive(Debug, Clone)]
pub struct BackgroundContext {
    pub shutdown: CancellationToken,
    pub tracker: TaskTracker,
}

/// Why a connection ended abnormally; the shell logs it.
pub type ConnectionError = Box<dyn std::error::Error + Send + Sync>;

#[async_trait]
pub trait Frontend: Send + Sync + std::fmt::Debug + 'static {
    /// Short lowercase name used in config keys, logs and metric labels (`kafka`, `amqp`, ...).
    fn name(&self) -> &'static str;

    /// The port the protocol's clients expect.
    fn default_port(&self) -> u16;

    /// Called once when the broker starts serving, before any connection: starts the
    /// frontend's background work. The default has none.
    fn start_background(&self, _background: BackgroundContext) {}

    /// Serves one connection until the peer closes it, a protocol error closes it, or shutdown.
    async fn serve_connection(
        &self,
        stream: ConnectionStream,
        context: ConnectionContext,
    ) -> Result<(), ConnectionError>;
}

/// Lets the runtime move the calling task to another worker after it woke others.
///
/// A task woken from a tokio worker lands in that worker's LIFO slot, which no other worker may
/// steal from, and no idle worker is told about it. A connection task that never waits (its
/// client keeps the socket full) would then hold, say, the consumer it just woke until its
/// client pauses. Waking itself during its own poll makes the runtime queue this task at the
/// back of the run queue and unpark an idle worker: the woken task runs here, this one there.
/// `tokio::task::yield_now` does not do this: it defers the wake until the worker runs idle.
pub async fn yield_to_peers() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            return std::task::Poll::Ready(());
        }
        yielded = true;
        cx.waker().wake_by_ref();
        std::task::Poll::Pending
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::ClientId;

    #[test]
    fn a_client_id_is_cut_to_its_cap_on_a_char_boundary() {
        let id = ClientId::default();
        assert_eq!(id.get(), None);
        id.set("");
        assert_eq!(id.get(), None);
        id.set("rdkafka");
        assert_eq!(id.get().as_deref(), Some("rdkafka"));
        id.set(&"é".repeat(10_000));
        assert_eq!(id.get(), Some("é".repeat(ClientId::MAX_CHARS)));
    }
}
