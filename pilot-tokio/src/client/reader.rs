//! The client's reader task: routes tagged replies to their waiters and pushes (data, accepted
//! connections, closes, datagrams) to the connection, listener or datagram queue they belong to.

use std::sync::Arc;

use tokio::net::unix::OwnedReadHalf;
use tokio::sync::mpsc;

use super::{ConnEvent, Inner, Waiter};
use crate::client_proto::dial_reply;
use crate::framing::{self, Frame};
use crate::shim::ipc::Message;

/// Messages buffered per connection before the reader waits for the application.
const CONN_QUEUE: usize = 256;

pub(super) async fn run(mut rd: OwnedReadHalf, inner: Arc<Inner>) {
    while let Ok(Some(frame)) = framing::read_frame(&mut rd).await {
        let Frame::Body(body) = frame else { continue };
        match framing::split_tag(&body) {
            (Some(tag), reply) => on_reply(&inner, tag, reply),
            (None, push) => on_push(&inner, push).await,
        }
    }
    if let Ok(mut t) = inner.tables.lock() {
        t.closed = true;
        t.pending.clear();
        t.conns.clear();
        t.listeners.clear();
        t.datagrams = None;
    }
}

fn on_reply(inner: &Inner, tag: u32, reply: &[u8]) {
    let Ok(mut t) = inner.tables.lock() else {
        return;
    };
    match t.pending.remove(&tag) {
        Some(Waiter::Plain(tx)) => {
            let _ = tx.send(reply.to_vec());
        }
        Some(Waiter::Dial(tx)) => {
            let result = dial_reply(reply).map(|conn| {
                let (ctx, crx) = mpsc::channel(CONN_QUEUE);
                t.conns.insert(conn, ctx);
                (conn, crx)
            });
            let _ = tx.send(result);
        }
        None => {}
    }
}

async fn on_push(inner: &Inner, push: &[u8]) {
    match Message::decode(push) {
        Ok(Message::Recv { conn, data }) => {
            let tx = inner
                .tables
                .lock()
                .ok()
                .and_then(|t| t.conns.get(&conn).cloned());
            if let Some(tx) = tx {
                let _ = tx.send(ConnEvent::Data(data)).await;
            }
        }
        Ok(Message::CloseOk { conn }) => {
            let tx = inner
                .tables
                .lock()
                .ok()
                .and_then(|mut t| t.conns.remove(&conn));
            if let Some(tx) = tx {
                let _ = tx.send(ConnEvent::Closed).await;
            }
        }
        Ok(Message::Accept {
            local_port,
            conn,
            remote,
        }) => on_accept(inner, local_port, conn, remote).await,
        Ok(Message::RecvFrom {
            src,
            dst_port,
            data,
        }) => {
            let tx = inner.tables.lock().ok().and_then(|t| t.datagrams.clone());
            if let Some(tx) = tx {
                let _ = tx.try_send((src, dst_port, data));
            }
        }
        Ok(Message::Error { message, .. }) => {
            tracing::debug!(%message, "untagged error from the daemon")
        }
        _ => tracing::debug!("unexpected message from the daemon ignored"),
    }
}

async fn on_accept(inner: &Inner, local_port: u16, conn: u32, remote: crate::shim::addr::AddrPort) {
    let (ctx, crx) = mpsc::channel(CONN_QUEUE);
    let listener = {
        let Ok(mut t) = inner.tables.lock() else {
            return;
        };
        t.conns.insert(conn, ctx);
        t.listeners.get(&local_port).cloned()
    };
    if let Some(listener) = listener {
        let _ = listener.send((conn, remote, crx)).await;
    }
}
