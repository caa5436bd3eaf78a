//! [`MioNode`], the blocking handle on one node, and [`StopHandle`], which stops it from any
//! thread.
//!
//! A `MioNode` is a cheap clone of a shared, single-threaded reference to the driver: the
//! [`crate::Stream`], [`crate::Listener`] and [`crate::Subscription`] handles hold one too, and
//! their blocking calls turn the same loop until they make progress. Nothing runs between calls:
//! the node makes progress only while some call of this crate is blocked in it (or in
//! [`MioNode::run`]).

use std::cell::RefCell;
use std::net::{SocketAddr, UdpSocket as StdUdpSocket};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::Waker;
use mio::net::UdpSocket;
use pilot_proto::agent::{Agent, AgentError, AgentInfo, Dial, PeerInfo};
use pilot_proto::pubsub::Topic;
use pilot_proto::transport::ConnId;
use pilot_proto::wire::addr::{Addr, AddrPort};

use crate::config::MioConfig;
use crate::driver::{Driver, StreamState};
use crate::error::{MioError, Result};
use crate::identity;
use crate::stream::{Listener, Stream};

/// Longest single sleep inside the blocking helpers, so that a stop is seen promptly even if
/// the waker's wake-up were lost.
const SLICE: Duration = Duration::from_millis(250);

/// A node embedded in the caller's thread. See the crate docs for the loop it runs.
#[derive(Debug, Clone)]
pub struct MioNode {
    inner: Rc<RefCell<Driver>>,
}

/// Stops a [`MioNode`] from any thread: its blocked call returns [`MioError::Stopped`].
#[derive(Debug, Clone)]
pub struct StopHandle {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl StopHandle {
    /// Asks the node to stop and wakes its poll.
    pub fn stop(&self) {
        self.flag.store(true, Ordering::Release);
        if let Err(e) = self.waker.wake() {
            tracing::debug!(error = %e, "waker failed; the node sees the stop within 250 ms");
        }
    }
}

impl MioNode {
    /// Binds the UDP socket, loads or creates the identity, and starts registering (the
    /// registry stream opens during the first turn).
    ///
    /// # Errors
    /// [`MioError::Io`] when the socket cannot be bound, [`MioError::Identity`] for a bad
    /// identity file, [`MioError::Random`] when the OS random source fails.
    pub fn new(config: MioConfig) -> Result<Self> {
        let key = match &config.identity {
            Some(path) => identity::load_or_create(path)?,
            None => identity::ephemeral()?,
        };
        let udp = UdpSocket::bind(config.listen)?;
        let local = udp.local_addr()?;
        let mut agent_config = config.agent.clone();
        agent_config.beacon = config.beacon;
        agent_config.beacon_tcp = config.beacon_tcp;
        agent_config.hostname = config.hostname.clone();
        agent_config.public = config.public;
        agent_config.local_endpoints = vec![advertised(local, config.registry)];

        let now = Instant::now();
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let agent = Agent::new(agent_config, key, identity::random_bytes()?, now, unix_now);
        tracing::info!(%local, registry = %config.registry, "mio node started");
        let driver = Driver::new(udp, config.registry, config.beacon_tcp, agent, now)?;
        Ok(Self {
            inner: Rc::new(RefCell::new(driver)),
        })
    }

    /// Runs one turn: waits at most `timeout` for I/O or a timer, then handles everything
    /// that is ready.
    ///
    /// # Errors
    /// [`MioError::Stopped`] after [`StopHandle::stop`], or a poll failure.
    pub fn turn(&self, timeout: Duration) -> Result<()> {
        self.inner.borrow_mut().turn(timeout)
    }

    /// Turns until `done(self)` is true, checked before every turn.
    ///
    /// # Errors
    /// [`MioError::TimedOut`] at `deadline`, [`MioError::Stopped`], or a poll failure.
    pub fn run_until(
        &self,
        mut done: impl FnMut(&MioNode) -> bool,
        deadline: Instant,
    ) -> Result<()> {
        loop {
            if done(self) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(MioError::TimedOut);
            }
            self.turn(left.min(SLICE))?;
        }
    }

    /// Turns until stopped; returns `Ok(())` then.
    ///
    /// # Errors
    /// A poll failure.
    pub fn run(&self) -> Result<()> {
        loop {
            match self.turn(SLICE) {
                Ok(()) => {}
                Err(MioError::Stopped) => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }

    /// A handle that stops this node from any thread.
    pub fn stop_handle(&self) -> StopHandle {
        let (flag, waker) = self.inner.borrow().stop_parts();
        StopHandle { flag, waker }
    }

    /// Our virtual address, once the registry assigned it.
    pub fn address(&self) -> Option<Addr> {
        self.inner.borrow().state.address
    }

    /// Whether the registry stream is open now (it is reopened with back-off when it breaks).
    pub fn registry_connected(&self) -> bool {
        self.inner.borrow().registry_connected()
    }

    /// The bound UDP address of the tunnel socket.
    pub fn local_addr(&self) -> SocketAddr {
        self.inner.borrow().local_addr()
    }

    /// A snapshot of the core (address, endpoints, peers tracked).
    pub fn info(&self) -> AgentInfo {
        self.inner.borrow().agent.info()
    }

    /// Every tracked peer and its route.
    pub fn peers(&self) -> Vec<PeerInfo> {
        self.inner.borrow().agent.peers()
    }

    /// Turns until the registry assigned our address.
    ///
    /// # Errors
    /// [`MioError::TimedOut`] (the message names the last registration error, if any),
    /// [`MioError::Stopped`], or a poll failure.
    pub fn wait_registered(&self, timeout: Duration) -> Result<Addr> {
        let deadline = Instant::now() + timeout;
        match self.run_until(|n| n.address().is_some(), deadline) {
            Ok(()) => self.address().ok_or(MioError::NotRegistered),
            Err(MioError::TimedOut) => {
                if let Some(error) = self.inner.borrow().state.registration_error.clone() {
                    tracing::warn!(%error, "registration did not complete");
                }
                Err(MioError::TimedOut)
            }
            Err(e) => Err(e),
        }
    }

    /// Publishes an event on this node's own broker (its subscribers, local and remote, get
    /// it).
    ///
    /// # Errors
    /// [`MioError::Topic`] for a malformed topic, [`MioError::Agent`] when not registered or
    /// the broker refuses.
    pub fn publish(&self, topic: &str, payload: &[u8]) -> Result<()> {
        let topic = Topic::parse(topic).map_err(|e| MioError::Topic(e.to_string()))?;
        self.command(|agent, now| agent.publish_local(now, &topic, payload).map(|_| ()))
    }

    /// Listens for streams on a virtual port.
    ///
    /// # Errors
    /// [`MioError::Agent`] when not registered or the port is taken or reserved.
    pub fn listen(&self, port: u16) -> Result<Listener> {
        self.command(|agent, _| agent.listen(port))?;
        self.inner
            .borrow_mut()
            .state
            .incoming
            .entry(port)
            .or_default();
        Ok(Listener::new(self.clone(), port))
    }

    /// Opens a stream to `remote` and waits until it is established.
    ///
    /// # Errors
    /// [`MioError::Dial`] when resolving or connecting fails, [`MioError::TimedOut`],
    /// [`MioError::Stopped`].
    pub fn dial(&self, remote: AddrPort, timeout: Duration) -> Result<Stream> {
        let deadline = Instant::now() + timeout;
        // The stream's state entry must exist before the drain: a stream to this node itself
        // is established within the command.
        let dial = self.with(|d, now| {
            let dial = d.agent.connect(now, remote);
            if let Ok(Dial::Ready(id)) = dial {
                d.state.streams.entry(id).or_default();
            }
            dial
        })?;
        let id = match dial {
            Dial::Ready(id) => id,
            Dial::Pending(dial) => {
                let take = |n: &MioNode| n.inner.borrow().state.dials.contains_key(&dial);
                self.run_until(take, deadline)?;
                let result = self.inner.borrow_mut().state.dials.remove(&dial);
                match result {
                    Some(Ok(id)) => id,
                    Some(Err(error)) => return Err(MioError::Dial(error)),
                    None => return Err(MioError::TimedOut),
                }
            }
        };
        let stream = Stream::new(self.clone(), id, remote);
        let settled = |n: &MioNode| {
            n.stream_state(id)
                .is_none_or(|s| s.connected || s.closed.is_some())
        };
        self.run_until(settled, deadline)?;
        match self.stream_state(id).and_then(|s| s.closed) {
            Some(reason) => Err(MioError::StreamClosed(reason)),
            None => Ok(stream),
        }
    }

    pub(crate) fn stream_state(&self, id: ConnId) -> Option<StreamState> {
        self.inner.borrow().state.streams.get(&id).copied()
    }

    /// Runs a core command at the current time, then drains its output.
    pub(crate) fn command<T>(
        &self,
        f: impl FnOnce(&mut Agent, Instant) -> std::result::Result<T, AgentError>,
    ) -> Result<T> {
        let mut driver = self.inner.borrow_mut();
        let now = Instant::now();
        let result = f(&mut driver.agent, now);
        driver.drain(now);
        Ok(result?)
    }

    /// Like [`Self::command`] for infallible access to the driver.
    pub(crate) fn with<T>(&self, f: impl FnOnce(&mut Driver, Instant) -> T) -> T {
        let mut driver = self.inner.borrow_mut();
        let now = Instant::now();
        let out = f(&mut driver, now);
        driver.drain(now);
        out
    }

    /// Like [`Self::with`], but does nothing when the driver is busy (used from `Drop`).
    pub(crate) fn try_with(&self, f: impl FnOnce(&mut Driver, Instant)) {
        if let Ok(mut driver) = self.inner.try_borrow_mut() {
            let now = Instant::now();
            f(&mut driver, now);
            driver.drain(now);
        }
    }
}

/// The endpoint to register when no beacon observes one: the bound address, or, when bound to
/// the unspecified address, the local address the OS would use to reach the registry (a
/// connected UDP socket sends nothing).
fn advertised(local: SocketAddr, registry: SocketAddr) -> SocketAddr {
    if !local.ip().is_unspecified() {
        return local;
    }
    let bind = SocketAddr::new(local.ip(), 0);
    let probe = StdUdpSocket::bind(bind).and_then(|s| s.connect(registry).map(|()| s));
    match probe.and_then(|s| s.local_addr()) {
        Ok(route) => SocketAddr::new(route.ip(), local.port()),
        Err(_) => local,
    }
}
