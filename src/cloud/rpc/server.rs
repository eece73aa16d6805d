//! The internal RPC listener: checks each connection's first frame for the cluster secret,
//! then runs its requests concurrently (at most [`MAX_IN_FLIGHT`]) and writes the answers in
//! the order they finish.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

use super::codec::{self, Frame};
use super::outgoing::Outgoing;
use super::{HELLO_TIMEOUT, Handler, MAX_CONNECTIONS, MAX_IN_FLIGHT, same_secret};

/// Accepts connections until `stop`.
pub async fn serve(
    listener: TcpListener,
    secret: Bytes,
    handler: Arc<dyn Handler>,
    stop: CancellationToken,
) {
    let connections = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut next_conn = 0u64;
    loop {
        let permit = tokio::select! {
            () = stop.cancelled() => return,
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => return,
            },
        };
        let accepted = tokio::select! {
            () = stop.cancelled() => return,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // EMFILE and the like: back off rather than spin.
                tracing::warn!(%error, "internal RPC accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        let (secret, handler, stop) = (secret.clone(), handler.clone(), stop.clone());
        next_conn += 1;
        let conn = next_conn;
        tokio::spawn(async move {
            if let Err(reason) = connection(stream, &secret, handler.clone(), stop, conn).await {
                tracing::warn!(%peer, reason, "internal RPC connection closed");
            }
            handler.closed(conn).await;
            drop(permit);
        });
    }
}

async fn read_frame(
    stream: &mut tokio::net::tcp::OwnedReadHalf,
    buf: &mut BytesMut,
) -> Result<Option<Frame>, String> {
    loop {
        if let Some(frame) = codec::decode_frame(buf).map_err(|e| e.to_string())? {
            return Ok(Some(frame));
        }
        if stream.read_buf(buf).await.map_err(|e| e.to_string())? == 0 {
            return match buf.is_empty() {
                true => Ok(None),
                false => Err("connection closed inside a frame".to_owned()),
            };
        }
    }
}

async fn connection(
    stream: TcpStream,
    secret: &[u8],
    handler: Arc<dyn Handler>,
    stop: CancellationToken,
    conn: u64,
) -> Result<(), String> {
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let mut buf = BytesMut::with_capacity(8 * 1024);
    let hello = tokio::time::timeout(HELLO_TIMEOUT, read_frame(&mut reader, &mut buf))
        .await
        .map_err(|_| "no hello in time".to_owned())??;
    match hello {
        Some(Frame::Hello {
            secret: offered, ..
        }) if same_secret(&offered, secret) => {}
        Some(Frame::Hello { broker_id, .. }) => {
            return Err(format!("broker {broker_id} offered a wrong cluster secret"));
        }
        Some(_) => return Err("the first frame is not a hello".to_owned()),
        None => return Ok(()),
    }
    let mut out = Outgoing::default();
    codec::encode_frame(&Frame::Welcome, &mut out).map_err(|e| e.to_string())?;
    super::write_outgoing(&mut writer, &out)
        .await
        .map_err(|e| e.to_string())?;

    let (answers, mut to_write) = mpsc::channel::<Frame>(MAX_IN_FLIGHT);
    let write_task = tokio::spawn(async move {
        let mut out = Outgoing::default();
        while let Some(frame) = to_write.recv().await {
            out.clear();
            if let Err(error) = codec::encode_frame(&frame, &mut out) {
                tracing::error!(%error, "an internal RPC answer could not be encoded");
                continue;
            }
            // Gather what else is ready into the same write.
            while let Ok(frame) = to_write.try_recv() {
                if codec::encode_frame(&frame, &mut out).is_err() {
                    tracing::error!("an internal RPC answer could not be encoded");
                }
            }
            if super::write_outgoing(&mut writer, &out).await.is_err() {
                return;
            }
            // Written: the message bodies it points into are released now.
            out.clear();
        }
    });
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    let outcome = loop {
        // A slot before reading the next frame: at the limit the peer waits on TCP.
        let Ok(slot) = in_flight.clone().acquire_owned().await else {
            break Ok(());
        };
        let frame = tokio::select! {
            () = stop.cancelled() => break Ok(()),
            frame = read_frame(&mut reader, &mut buf) => frame,
        };
        match frame {
            Ok(Some(Frame::Request { id, request })) => {
                let (handler, answers) = (handler.clone(), answers.clone());
                tokio::spawn(async move {
                    let reply = handler.handle(conn, request).await;
                    let _ = answers.send(Frame::Response { id, reply }).await;
                    drop(slot);
                });
            }
            Ok(Some(_)) => break Err("unexpected frame kind from a caller".to_owned()),
            Ok(None) => break Ok(()),
            Err(error) => break Err(error),
        }
    };
    drop(answers);
    // Answers of calls still running are written as they finish, unless the peer is gone;
    let _ = write_task.await;
    // Every call has finished once all slots are back (the writer may have stopped early).
    let _ = in_flight.acquire_many(MAX_IN_FLIGHT as u32).await;
    outcome
}
