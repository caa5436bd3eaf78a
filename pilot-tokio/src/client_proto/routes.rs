//! The runtime-free state both clients' readers route into: who waits for which tagged reply,
//! which sender takes which connection's data, which listener takes which port's streams
//! ([`Routes`]), and the read side of one stream ([`RecvBuf`]).
//!
//! The channel types stay the runtime's own (tokio `mpsc`/`oneshot`, `async-channel`); only the
//! bookkeeping is shared. Nothing here blocks, waits or does I/O.

use std::collections::HashMap;

use super::ClientError;

/// A client's routing tables: waiters `W` of tagged requests, senders `C` of connections and
/// senders `L` of listeners. Kept behind the client's mutex; dropping an entry drops its
/// sender, which tells whoever waits on the other end.
#[derive(Debug)]
pub(crate) struct Routes<W, C, L> {
    pending: HashMap<u32, W>,
    conns: HashMap<u32, C>,
    listeners: HashMap<u16, L>,
    closed: bool,
}

impl<W, C, L> Default for Routes<W, C, L> {
    fn default() -> Self {
        Self {
            pending: HashMap::new(),
            conns: HashMap::new(),
            listeners: HashMap::new(),
            closed: false,
        }
    }
}

impl<W, C: Clone, L: Clone> Routes<W, C, L> {
    /// Records who waits for the reply to request `tag`.
    ///
    /// # Errors
    ///
    /// [`ClientError::Disconnected`] once the reader has ended: no reply would ever come.
    pub(crate) fn expect_reply(&mut self, tag: u32, waiter: W) -> Result<(), ClientError> {
        if self.closed {
            return Err(ClientError::Disconnected);
        }
        self.pending.insert(tag, waiter);
        Ok(())
    }

    /// Takes the waiter of request `tag` (a reply arrived).
    pub(crate) fn take_waiter(&mut self, tag: u32) -> Option<W> {
        self.pending.remove(&tag)
    }

    /// Starts routing data pushed for `conn` to `tx`.
    pub(crate) fn add_conn(&mut self, conn: u32, tx: C) {
        self.conns.insert(conn, tx);
    }

    /// The sender of `conn`'s data, cloned so the caller can send without the lock.
    pub(crate) fn conn(&self, conn: u32) -> Option<C> {
        self.conns.get(&conn).cloned()
    }

    /// Stops routing `conn` and returns its sender (the stream closed or was dropped).
    pub(crate) fn remove_conn(&mut self, conn: u32) -> Option<C> {
        self.conns.remove(&conn)
    }

    /// Hands streams accepted on `port` to `tx` from now on.
    pub(crate) fn bind(&mut self, port: u16, tx: L) {
        self.listeners.insert(port, tx);
    }

    /// Stops handing out streams accepted on `port`.
    pub(crate) fn unbind(&mut self, port: u16) {
        self.listeners.remove(&port);
    }

    /// Records an accepted stream and returns the listener of `port` to hand it to, if any.
    pub(crate) fn accept(&mut self, port: u16, conn: u32, tx: C) -> Option<L> {
        self.conns.insert(conn, tx);
        self.listeners.get(&port).cloned()
    }

    /// The reader ended: refuses further requests and drops every waiter and sender, which
    /// wakes everyone waiting on them.
    pub(crate) fn close(&mut self) {
        self.closed = true;
        self.pending.clear();
        self.conns.clear();
        self.listeners.clear();
    }
}

/// The read side of one stream: the chunk the reader delivered last, handed out in reads of
/// any size, and whether the stream ended.
#[derive(Debug, Default)]
pub(crate) struct RecvBuf {
    buf: Vec<u8>,
    pos: usize,
    eof: bool,
}

impl RecvBuf {
    /// Whether a read needs the next chunk first: everything was read and the stream goes on.
    pub(crate) fn wants_data(&self) -> bool {
        self.pos >= self.buf.len() && !self.eof
    }

    /// Takes the next chunk (only call when [`RecvBuf::wants_data`]).
    pub(crate) fn fill(&mut self, data: Vec<u8>) {
        self.buf = data;
        self.pos = 0;
    }

    /// The stream ended: reads return 0 once the buffer is empty.
    pub(crate) fn finish(&mut self) {
        self.eof = true;
    }

    /// Copies as much as fits into `out`; returns the byte count (0 only at the end of the
    /// stream or for an empty `out`).
    pub(crate) fn read_into(&mut self, out: &mut [u8]) -> usize {
        let unread = self.buf.get(self.pos..).unwrap_or_default();
        let n = out.len().min(unread.len());
        out[..n].copy_from_slice(&unread[..n]);
        self.pos += n;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Tables = Routes<&'static str, u8, char>;

    #[test]
    fn a_closed_table_refuses_requests_and_forgets_everything() {
        let mut t = Tables::default();
        t.expect_reply(1, "info").expect("open");
        t.add_conn(7, 70);
        t.bind(1002, 'l');
        t.close();
        assert!(matches!(
            t.expect_reply(2, "dial"),
            Err(ClientError::Disconnected)
        ));
        assert_eq!((t.take_waiter(1), t.conn(7)), (None, None));
        assert_eq!(t.accept(1002, 8, 80), None);
    }

    #[test]
    fn replies_and_streams_are_routed_once() {
        let mut t = Tables::default();
        t.expect_reply(1, "info").expect("open");
        assert_eq!(t.take_waiter(1), Some("info"));
        assert_eq!(t.take_waiter(1), None, "a reply is delivered once");

        t.bind(80, 'h');
        t.bind(81, 'x');
        t.unbind(81);
        assert_eq!(t.accept(80, 5, 50), Some('h'));
        assert_eq!(t.accept(81, 6, 60), None, "no listener on 81");
        assert_eq!((t.conn(5), t.conn(6)), (Some(50), Some(60)));
        assert_eq!(t.remove_conn(5), Some(50));
        assert_eq!(t.conn(5), None);
    }

    #[test]
    fn recv_buf_hands_out_a_chunk_in_small_reads_then_ends() {
        let mut r = RecvBuf::default();
        assert!(r.wants_data());
        r.fill(b"hello".to_vec());
        let mut out = [0u8; 2];
        assert_eq!(r.read_into(&mut out), 2);
        assert_eq!(&out, b"he");
        assert!(!r.wants_data());
        assert_eq!(r.read_into(&mut [0u8; 8]), 3);
        assert!(r.wants_data(), "drained");
        r.finish();
        assert!(!r.wants_data());
        assert_eq!(r.read_into(&mut out), 0, "end of stream");
    }
}
