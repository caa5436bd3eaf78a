//! The client's I/O thread: writes queued request frames to the daemon socket and reads frames
//! from it, routing tagged replies to their waiters and pushes (data, accepted connections,
//! closes) to the connection or listener they belong to.

use std::io;
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::sync::Weak;

use async_channel::Receiver;
use async_io::Async;
use futures_lite::{AsyncRead, AsyncReadExt as _, AsyncWriteExt as _};

use super::{ConnEvent, Inner, Waiter};
use crate::client_proto::dial_reply;
use crate::framing::{self, Frame, MAX_BODY};
use crate::shim::addr::AddrPort;
use crate::shim::ipc::Message;

/// Messages buffered per connection before the reader waits for the application.
const CONN_QUEUE: usize = 256;

/// Starts the I/O thread for one client. It holds only a weak reference to the client, so
/// dropping the client closes the request queue, which ends the thread.
pub(super) fn start(
    stream: Async<UnixStream>,
    out_rx: Receiver<Vec<u8>>,
    inner: Weak<Inner>,
) -> io::Result<()> {
    std::thread::Builder::new()
        .name("pilot-client-io".into())
        .spawn(move || async_io::block_on(run(stream, out_rx, inner)))?;
    Ok(())
}

async fn run(stream: Async<UnixStream>, out_rx: Receiver<Vec<u8>>, inner: Weak<Inner>) {
    let reading = read_loop(&stream, &inner);
    let writing = async {
        let mut wr = &stream;
        while let Ok(body) = out_rx.recv().await {
            if wr.write_all(&framing::frame(&body)).await.is_err() {
                break;
            }
        }
    };
    futures_lite::future::or(reading, writing).await;
    let _ = stream.get_ref().shutdown(Shutdown::Both);
    if let Some(inner) = inner.upgrade()
        && let Ok(mut t) = inner.tables.lock()
    {
        t.close();
    }
}

async fn read_loop(stream: &Async<UnixStream>, inner: &Weak<Inner>) {
    let mut rd = stream;
    while let Ok(Some(frame)) = read_frame(&mut rd).await {
        let Frame::Body(body) = frame else { continue };
        let Some(inner) = inner.upgrade() else { return };
        match framing::split_tag(&body) {
            (Some(tag), reply) => on_reply(&inner, tag, reply),
            (None, push) => on_push(&inner, push).await,
        }
    }
}

/// Reads one length-prefixed frame (the futures-io twin of `framing::read_frame`).
/// `Ok(None)` at a clean end of stream between frames.
async fn read_frame<R: AsyncRead + Unpin>(reader: &mut R) -> io::Result<Option<Frame>> {
    let mut len = [0u8; 4];
    match reader.read_exact(&mut len).await {
        Ok(()) => {}
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_BODY {
        let skip = (&mut *reader).take(len as u64);
        let skipped = futures_lite::io::copy(skip, futures_lite::io::sink()).await?;
        if (skipped as usize) < len {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        return Ok(Some(Frame::Oversized(len)));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    Ok(Some(Frame::Body(body)))
}

fn on_reply(inner: &Inner, tag: u32, reply: &[u8]) {
    let Ok(mut t) = inner.tables.lock() else {
        return;
    };
    match t.take_waiter(tag) {
        Some(Waiter::Plain(tx)) => {
            let _ = tx.try_send(reply.to_vec());
        }
        Some(Waiter::Dial(tx)) => {
            let result = dial_reply(reply).map(|conn| {
                let (ctx, crx) = async_channel::bounded(CONN_QUEUE);
                t.add_conn(conn, ctx);
                (conn, crx)
            });
            let _ = tx.try_send(result);
        }
        None => {}
    }
}

async fn on_push(inner: &Inner, push: &[u8]) {
    match Message::decode(push) {
        Ok(Message::Recv { conn, data }) => {
            let tx = inner.tables.lock().ok().and_then(|t| t.conn(conn));
            if let Some(tx) = tx {
                let _ = tx.send(ConnEvent::Data(data)).await;
            }
        }
        Ok(Message::CloseOk { conn }) => {
            let tx = inner
                .tables
                .lock()
                .ok()
                .and_then(|mut t| t.remove_conn(conn));
            if let Some(tx) = tx {
                let _ = tx.send(ConnEvent::Closed).await;
            }
        }
        Ok(Message::Accept {
            local_port,
            conn,
            remote,
        }) => on_accept(inner, local_port, conn, remote).await,
        Ok(Message::Error { message, .. }) => {
            tracing::debug!(%message, "untagged error from the daemon")
        }
        _ => tracing::debug!("unexpected message from the daemon ignored"),
    }
}

async fn on_accept(inner: &Inner, local_port: u16, conn: u32, remote: AddrPort) {
    let (ctx, crx) = async_channel::bounded(CONN_QUEUE);
    let listener = match inner.tables.lock() {
        Ok(mut t) => t.accept(local_port, conn, ctx),
        Err(_) => return,
    };
    if let Some(listener) = listener {
        let _ = listener.send((conn, remote, crx)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_frame_is_skipped_and_the_next_one_read() {
        let mut bytes = ((MAX_BODY + 10) as u32).to_be_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(0xa5, MAX_BODY + 10));
        bytes.extend(framing::frame(&[0x0d]));
        let mut reader = &bytes[..];
        futures_lite::future::block_on(async {
            assert_eq!(
                read_frame(&mut reader).await.expect("io"),
                Some(Frame::Oversized(MAX_BODY + 10))
            );
            assert_eq!(
                read_frame(&mut reader).await.expect("io"),
                Some(Frame::Body(vec![0x0d]))
            );
            assert_eq!(read_frame(&mut reader).await.expect("io"), None);
        });
    }

    #[test]
    fn a_truncated_frame_is_an_error_not_a_clean_end() {
        let mut bytes = 8u32.to_be_bytes().to_vec();
        bytes.extend([1, 2, 3]);
        let mut reader = &bytes[..];
        let result = futures_lite::future::block_on(read_frame(&mut reader));
        assert!(result.is_err());
    }
}
