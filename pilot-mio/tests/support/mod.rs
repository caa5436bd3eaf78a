//! A registry for the tests: `pilot_proto`'s sans-IO [`RegistryServer`] driven over a std
//! `TcpListener` on loopback in a background thread, so a `MioNode` can register without
//! another process. The thread ends when the [`Registry`] is dropped (a flag it checks every
//! millisecond), and every connection is closed with it.

use std::collections::BTreeMap;
use std::io::{ErrorKind, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use pilot_proto::registry::{ConnectionId, RegistryConfig, RegistryServer, ServerEvent};

/// A registry serving on a loopback port until dropped.
pub(crate) struct Registry {
    /// Where it listens.
    pub(crate) addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Registry {
    /// Binds an ephemeral loopback port and starts serving.
    pub(crate) fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind registry");
        listener.set_nonblocking(true).expect("nonblocking");
        let addr = listener.local_addr().expect("registry addr");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::spawn(move || serve(&listener, &flag));
        Self {
            addr,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(listener: &TcpListener, stop: &AtomicBool) {
    let unix = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut server = RegistryServer::new(RegistryConfig::default(), Instant::now(), unix);
    let mut conns: BTreeMap<u64, TcpStream> = BTreeMap::new();
    let (mut next, mut buf, mut out) = (1u64, vec![0u8; 16 * 1024], Vec::new());
    while !stop.load(Ordering::Acquire) {
        let now = Instant::now();
        if let Ok((stream, peer)) = listener.accept() {
            stream.set_nonblocking(true).expect("nonblocking");
            server.handle_connect(now, ConnectionId(next), peer);
            conns.insert(next, stream);
            next += 1;
        }
        let mut gone = Vec::new();
        for (id, stream) in &mut conns {
            match stream.read(&mut buf) {
                Ok(0) => gone.push(*id),
                Ok(n) => server.handle_bytes(now, ConnectionId(*id), &buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(_) => gone.push(*id),
            }
        }
        while let Some(transmit) = server.poll_transmit(&mut out) {
            if let Some(stream) = conns.get_mut(&transmit.conn.0) {
                write_all(stream, &out[..transmit.len]);
            }
        }
        while let Some(event) = server.poll_event() {
            if let ServerEvent::Close { conn, .. } = event {
                gone.push(conn.0);
            }
        }
        for id in gone {
            conns.remove(&id);
            server.handle_disconnect(now, ConnectionId(id));
        }
        if server.poll_timeout().is_some_and(|at| at <= now) {
            server.handle_timeout(now);
        }
        // A poll interval, not synchronisation: the tests wait on the node's own state.
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Writes everything to a nonblocking stream (bounded: gives up after 5 s).
fn write_all(stream: &mut TcpStream, mut bytes: &[u8]) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !bytes.is_empty() && Instant::now() < deadline {
        match stream.write(bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::yield_now(),
            Err(_) => return,
        }
    }
}
