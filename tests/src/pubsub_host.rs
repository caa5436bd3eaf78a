//! A `pilot-sim` host running an [`AgentHost`] plus a tiny port-1002 client application: it
//! dials a broker, writes queued frames once the stream is up, and (unless paused) reads after
//! every input, decoding what arrives and keeping it with its arrival time.
//!
//! Two client kinds: an extended client ([`ClientSession`], hello and subscribe requests,
//! sequence numbers and gap notices) and a v0.5 client, whose first frame is its subscription
//! and whose every later frame is a publish; it only ever receives plain frames.

use std::net::SocketAddr;
use std::time::Instant;

use pilot_proto::Transmit;
use pilot_proto::agent::AgentConfig;
use pilot_proto::pubsub::client::ClientSession;
use pilot_proto::pubsub::codec::{FrameReader, ServerMessage};
use pilot_proto::transport::ConnId;
use pilot_proto::wire::addr::AddrPort;
use pilot_proto::wire::event::MAX_PAYLOAD_LEN;
use pilot_sim::{HostContext, Machine, StreamCommand, StreamEvent};

use crate::agent_host::AgentHost;

/// Messages kept in [`PubSubHost::received`] at most; later ones are only counted.
pub const MAX_RECEIVED: usize = 1 << 20;

/// Bytes read from the stream per `recv` call.
const READ_CHUNK: usize = 64 * 1024;

/// Which protocol the client speaks.
#[derive(Debug)]
pub enum Protocol {
    /// The extended protocol, through the sans-IO client session.
    Extended(ClientSession),
    /// v0.5: plain frames only (the test writes the subscription frame first).
    Legacy(FrameReader),
}

/// An agent host with a pub/sub client on top.
#[derive(Debug)]
pub struct PubSubHost {
    /// The agent and its driver state.
    pub host: AgentHost,
    /// The client protocol state.
    pub protocol: Protocol,
    /// While true the application reads nothing (a stalled subscriber).
    pub paused: bool,
    /// Every decoded message with its arrival time (bounded by [`MAX_RECEIVED`]).
    pub received: Vec<(Instant, ServerMessage)>,
    /// Messages not kept because [`PubSubHost::received`] was full.
    pub dropped: u64,
    /// Whether the stream's framing broke (the client would close the connection).
    pub framing_error: bool,
    /// Whether the current stream reached its end.
    pub eof: bool,
    dial_base: usize,
    outbox: Vec<u8>,
    dialling: bool,
}

impl PubSubHost {
    /// A host whose client speaks the extended protocol (`legacy` false) or v0.5.
    pub fn new(ctx: &HostContext, config: AgentConfig, registry: SocketAddr, legacy: bool) -> Self {
        let protocol = if legacy {
            Protocol::Legacy(FrameReader::new(MAX_PAYLOAD_LEN))
        } else {
            Protocol::Extended(ClientSession::new())
        };
        Self {
            host: AgentHost::new(ctx, config, registry),
            protocol,
            paused: false,
            received: Vec::new(),
            dropped: 0,
            framing_error: false,
            eof: false,
            dial_base: 0,
            outbox: Vec::new(),
            dialling: false,
        }
    }

    /// The extended client session (`None` for a v0.5 client).
    pub fn session(&mut self) -> Option<&mut ClientSession> {
        match &mut self.protocol {
            Protocol::Extended(session) => Some(session),
            Protocol::Legacy(_) => None,
        }
    }

    /// Opens a new stream to `broker`; frames queued with [`PubSubHost::write`] go out once it
    /// is established.
    pub fn dial(&mut self, now: Instant, broker: AddrPort) {
        self.dial_base = self.host.dialled.len();
        self.dialling = true;
        self.eof = false;
        self.host.connect(now, broker);
        self.pump(now);
    }

    /// Queues bytes (whole frames) for the broker and writes what the stream accepts.
    pub fn write(&mut self, now: Instant, bytes: &[u8]) {
        self.outbox.extend_from_slice(bytes);
        self.pump(now);
    }

    /// Closes the current stream (a client going away) and forgets unsent bytes.
    pub fn disconnect(&mut self, now: Instant) {
        if let Some(stream) = self.stream() {
            self.host.agent.close(now, stream);
        }
        self.dialling = false;
        self.outbox.clear();
    }

    /// The established stream of the latest dial.
    pub fn stream(&self) -> Option<ConnId> {
        if !self.dialling {
            return None;
        }
        let dialled = self.host.dialled.get(self.dial_base..)?;
        dialled
            .iter()
            .rev()
            .find(|s| self.host.connected.contains_key(s))
            .copied()
    }

    /// Whether the latest dial's stream is established and everything queued was written.
    pub fn is_flushed(&self) -> bool {
        self.stream().is_some() && self.outbox.is_empty()
    }

    /// Writes queued bytes and, unless paused, reads and decodes everything available.
    pub fn pump(&mut self, now: Instant) {
        let Some(stream) = self.stream() else { return };
        self.flush(now, stream);
        if !self.paused {
            self.read(now, stream);
        }
    }

    fn flush(&mut self, now: Instant, stream: ConnId) {
        if self.outbox.is_empty() {
            return;
        }
        if let Ok(n) = self.host.agent.send(now, stream, &self.outbox) {
            self.outbox.drain(..n);
        }
    }

    fn read(&mut self, now: Instant, stream: ConnId) {
        let mut chunk = vec![0u8; READ_CHUNK];
        // Bounded: each pass empties up to READ_CHUNK bytes of a bounded receive buffer.
        for _ in 0..1024 {
            match self.host.agent.recv(stream, &mut chunk) {
                Ok(0) => {
                    self.eof = true;
                    return;
                }
                Ok(n) => self.decode(now, &chunk[..n]),
                Err(_) => return,
            }
        }
    }

    fn decode(&mut self, now: Instant, bytes: &[u8]) {
        let mut messages = Vec::new();
        match &mut self.protocol {
            Protocol::Extended(session) => {
                if session.handle_bytes(bytes).is_err() {
                    self.framing_error = true;
                }
                while let Some(message) = session.poll_message() {
                    messages.push(message);
                }
            }
            Protocol::Legacy(reader) => {
                reader.push(bytes);
                loop {
                    match reader.next_frame() {
                        Ok(Some(frame)) => {
                            let (topic, payload) = (frame.topic, frame.payload);
                            messages.push(ServerMessage::Plain { topic, payload });
                        }
                        Ok(None) => break,
                        Err(_) => {
                            self.framing_error = true;
                            break;
                        }
                    }
                }
            }
        }
        for message in messages {
            self.keep(now, message);
        }
    }

    fn keep(&mut self, now: Instant, message: ServerMessage) {
        if self.received.len() >= MAX_RECEIVED {
            self.dropped += 1;
            return;
        }
        self.received.push((now, message));
    }
}

impl Machine for PubSubHost {
    fn handle_datagram(&mut self, now: Instant, local: SocketAddr, from: SocketAddr, bytes: &[u8]) {
        self.host.handle_datagram(now, local, from, bytes);
        self.pump(now);
    }

    fn handle_timeout(&mut self, now: Instant) {
        self.host.handle_timeout(now);
        self.pump(now);
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        self.host.poll_transmit(now, buf)
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.host.poll_timeout()
    }

    fn handle_stream(&mut self, now: Instant, event: StreamEvent<'_>) {
        self.host.handle_stream(now, event);
        self.pump(now);
    }

    fn poll_stream(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<StreamCommand> {
        self.host.poll_stream(now, buf)
    }
}
