//! The calling side of the internal RPC: one connection per peer, calls multiplexed over it by
//! request id.
//!
//! Invariants: a call that gets no answer (the connection broke, the peer died, the timeout
//! passed) fails with a retriable error, never a made-up answer; a broken connection is
//! dropped and the next call to that peer connects again, to the address the membership names
//! now (a restarted peer may listen on another port), and a call that timed out drops its
//! connection too (see `Peers::call`); at most [`MAX_IN_FLIGHT`] calls wait on one
//! connection, later ones wait for a slot.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use parking_lot::Mutex;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, mpsc, oneshot};

use super::codec::{self, Frame, Reply, Request, WireError};
use super::outgoing::Outgoing;
use super::{HELLO_TIMEOUT, MAX_IN_FLIGHT};
use crate::cloud::error::{CloudError, CloudResult};
use crate::cloud::members::Membership;

/// How long connecting to a peer may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

type Waiters = Mutex<HashMap<u64, oneshot::Sender<Result<Reply, WireError>>>>;

/// One live connection to a peer.
#[derive(Debug)]
struct Conn {
    address: (String, u16),
    frames: mpsc::Sender<Frame>,
    waiters: Arc<Waiters>,
    next_id: AtomicU64,
    slots: Arc<Semaphore>,
    alive: Arc<AtomicBool>,
}

/// Connections to the other brokers of the cluster.
#[derive(Debug)]
pub struct Peers {
    members: Arc<Membership>,
    secret: Bytes,
    conns: Mutex<HashMap<i32, Arc<Conn>>>,
    /// Serialises connecting, so concurrent first calls to a peer share one connection.
    connecting: tokio::sync::Mutex<()>,
}

fn failed(peer: i32, what: impl std::fmt::Display) -> CloudError {
    CloudError::Rpc(format!("broker {peer}: {what}"))
}

impl Peers {
    pub fn new(members: Arc<Membership>, secret: Bytes) -> Self {
        Self {
            members,
            secret,
            conns: Mutex::default(),
            connecting: tokio::sync::Mutex::new(()),
        }
    }

    /// Sends `request` to broker `peer` and waits up to `timeout` for its answer.
    pub async fn call(
        &self,
        peer: i32,
        request: Request,
        timeout: Duration,
    ) -> CloudResult<Result<Reply, WireError>> {
        let conn = self.connection(peer).await?;
        let slot = tokio::time::timeout(timeout, conn.slots.clone().acquire_owned())
            .await
            .map_err(|_| failed(peer, "too many calls in flight"))?
            .map_err(|_| failed(peer, "connection closed"))?;
        let id = conn.next_id.fetch_add(1, Ordering::Relaxed);
        let (answer, answered) = oneshot::channel();
        conn.waiters.lock().insert(id, answer);
        if !conn.alive.load(Ordering::Acquire) {
            // The reader may have failed the waiters before this one was added.
            conn.waiters.lock().remove(&id);
            return Err(failed(peer, "connection closed"));
        }
        if conn
            .frames
            .send(Frame::Request { id, request })
            .await
            .is_err()
        {
            conn.waiters.lock().remove(&id);
            return Err(failed(peer, "connection closed"));
        }
        let outcome = tokio::time::timeout(timeout, answered).await;
        drop(slot);
        match outcome {
            Ok(Ok(reply)) => Ok(reply),
            Ok(Err(_)) => Err(failed(peer, "connection lost before the answer")),
            Err(_) => {
                conn.waiters.lock().remove(&id);
                // The call may have taken effect (a take's deliveries lent to this
                // connection): drop the connection, so the peer releases what it lent over
                // it once the calls still on it end, and the next call connects afresh.
                conn.alive.store(false, Ordering::Release);
                self.conns
                    .lock()
                    .retain(|_, held| !Arc::ptr_eq(held, &conn));
                Err(failed(peer, "no answer in time"))
            }
        }
    }

    async fn connection(&self, peer: i32) -> CloudResult<Arc<Conn>> {
        let address = self
            .members
            .internal_address(peer)
            .ok_or_else(|| failed(peer, "no internal address advertised"))?;
        let usable =
            |conn: &Arc<Conn>| conn.alive.load(Ordering::Acquire) && conn.address == address;
        if let Some(conn) = self.conns.lock().get(&peer).filter(|c| usable(c)) {
            return Ok(conn.clone());
        }
        let _one = self.connecting.lock().await;
        if let Some(conn) = self.conns.lock().get(&peer).filter(|c| usable(c)) {
            return Ok(conn.clone());
        }
        let conn = Arc::new(self.connect(peer, address).await?);
        self.conns.lock().insert(peer, conn.clone());
        Ok(conn)
    }

    async fn connect(&self, peer: i32, address: (String, u16)) -> CloudResult<Conn> {
        let target = (address.0.as_str(), address.1);
        let mut stream = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(target))
            .await
            .map_err(|_| failed(peer, "connect timed out"))?
            .map_err(|e| failed(peer, e))?;
        let _ = stream.set_nodelay(true);
        let mut out = Outgoing::default();
        let hello = Frame::Hello {
            broker_id: self.members.broker_id(),
            secret: self.secret.clone(),
        };
        codec::encode_frame(&hello, &mut out).map_err(|e| failed(peer, e))?;
        super::write_outgoing(&mut stream, &out)
            .await
            .map_err(|e| failed(peer, e))?;
        let mut buf = BytesMut::new();
        let welcome = tokio::time::timeout(HELLO_TIMEOUT, async {
            loop {
                if let Some(frame) = codec::decode_frame(&mut buf).map_err(|e| failed(peer, e))? {
                    return Ok(frame);
                }
                if stream
                    .read_buf(&mut buf)
                    .await
                    .map_err(|e| failed(peer, e))?
                    == 0
                {
                    return Err(failed(peer, "refused the hello (wrong cluster secret?)"));
                }
            }
        })
        .await
        .map_err(|_| failed(peer, "no welcome in time"))??;
        if welcome != Frame::Welcome {
            return Err(failed(peer, "answered the hello with another frame"));
        }
        let (mut reader, mut writer) = stream.into_split();
        let (frames, mut to_write) = mpsc::channel::<Frame>(MAX_IN_FLIGHT);
        let waiters: Arc<Waiters> = Arc::default();
        let alive = Arc::new(AtomicBool::new(true));
        {
            let alive = alive.clone();
            tokio::spawn(async move {
                let mut out = Outgoing::default();
                while let Some(frame) = to_write.recv().await {
                    out.clear();
                    let mut encoded = codec::encode_frame(&frame, &mut out).is_ok();
                    while let Ok(frame) = to_write.try_recv() {
                        encoded &= codec::encode_frame(&frame, &mut out).is_ok();
                    }
                    if !encoded {
                        // A request too big to send: its caller times out; the others go on.
                        tracing::error!(peer, "an internal RPC request could not be encoded");
                    }
                    if super::write_outgoing(&mut writer, &out).await.is_err() {
                        break;
                    }
                    // Written: the message bodies it points into are released now.
                    out.clear();
                }
                alive.store(false, Ordering::Release);
            });
        }
        {
            let (alive, waiters) = (alive.clone(), waiters.clone());
            tokio::spawn(async move {
                loop {
                    match codec::decode_frame(&mut buf) {
                        Ok(Some(Frame::Response { id, reply })) => {
                            if let Some(waiter) = waiters.lock().remove(&id) {
                                let _ = waiter.send(reply);
                            }
                            continue;
                        }
                        Ok(Some(_)) => {
                            tracing::warn!(peer, "unexpected internal RPC frame; reconnecting");
                            break;
                        }
                        Ok(None) => {}
                        Err(error) => {
                            tracing::warn!(peer, %error, "bad internal RPC frame; reconnecting");
                            break;
                        }
                    }
                    match reader.read_buf(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(_) => {}
                    }
                }
                alive.store(false, Ordering::Release);
                // Dropping the senders fails every call still waiting on this connection.
                waiters.lock().clear();
            });
        }
        Ok(Conn {
            address,
            frames,
            waiters,
            next_id: AtomicU64::new(1),
            slots: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            alive,
        })
    }
}
