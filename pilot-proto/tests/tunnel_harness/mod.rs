//! Test harness shared by the tunnel integration tests: two [`Tunnel`]s wired together in
//! memory on virtual time, a log of every datagram for replay attacks, and a hand-driven fake
//! v0.5 peer built from the public crypto and wire APIs (so tests know its session key).

#![allow(dead_code, unreachable_pub)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use pilot_proto::crypto::{SessionCipher, X25519Secret};
use pilot_proto::identity::Identity;
use pilot_proto::rng::Rng;
use pilot_proto::tunnel::{Event, Inbound, Tunnel, TunnelConfig};
use pilot_proto::wire::tunnel::{
    AuthKeyExchangeRepr, KeyExchangeRepr, Nonce, SEALED_HEADER_LEN, TunnelRepr, auth_signed_message,
};

/// Node ids used throughout.
pub const A: u32 = 1;
pub const B: u32 = 2;

/// Upper bound on delivery rounds in `run`; a healthy exchange settles in a handful.
const MAX_ROUNDS: usize = 64;

/// One datagram on the simulated wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub bytes: Vec<u8>,
}

/// A tunnel plus what it delivered and reported.
pub struct Side {
    pub id: u32,
    pub addr: SocketAddr,
    pub identity: Identity,
    pub tunnel: Tunnel,
    pub delivered: Vec<(u32, Vec<u8>, bool)>,
    pub events: Vec<Event>,
}

impl Side {
    pub fn new(id: u32, seed: u8, config: TunnelConfig) -> Self {
        Self::with_rng_seed(id, seed, seed.wrapping_add(100), config)
    }

    /// Same identity and address as `new(id, seed)`, but different X25519 keys: a restart.
    pub fn with_rng_seed(id: u32, seed: u8, rng_seed: u8, config: TunnelConfig) -> Self {
        let identity = Identity::from_seed(&[seed; 32]);
        let rng = Rng::from_seed([rng_seed; 32]);
        let tunnel = Tunnel::new(config, identity.clone(), id, rng);
        Self {
            id,
            addr: addr(seed),
            identity,
            tunnel,
            delivered: Vec::new(),
            events: Vec::new(),
        }
    }

    /// Feeds one datagram and records a delivered packet. Returns a summary of the outcome.
    pub fn receive(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) -> Outcome {
        let mut buf = bytes.to_vec();
        let outcome = match self.tunnel.handle_datagram(now, from, &mut buf) {
            Inbound::Packet {
                node,
                packet,
                encrypted,
            } => {
                self.delivered.push((node, packet.to_vec(), encrypted));
                Outcome::Packet { node, encrypted }
            }
            Inbound::NotTunnel => Outcome::NotTunnel,
            Inbound::Consumed => Outcome::Consumed,
            Inbound::Dropped(reason) => Outcome::Dropped(reason),
        };
        self.collect_events();
        outcome
    }

    pub fn collect_events(&mut self) {
        while let Some(event) = self.tunnel.poll_event() {
            self.events.push(event);
        }
    }

    /// Drains the transmit queue.
    pub fn transmits(&mut self, now: Instant) -> Vec<Datagram> {
        let mut out = Vec::new();
        let mut buf = Vec::new();
        // Bounded: the queue holds at most `max_transmits` frames.
        for _ in 0..100_000 {
            let Some(transmit) = self.tunnel.poll_transmit(now, &mut buf) else {
                break;
            };
            assert_eq!(transmit.len, buf.len());
            out.push(Datagram {
                src: self.addr,
                dst: transmit.dst,
                bytes: buf.clone(),
            });
        }
        self.collect_events();
        out
    }
}

/// A datagram outcome without the borrowed packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Packet { node: u32, encrypted: bool },
    NotTunnel,
    Consumed,
    Dropped(pilot_proto::tunnel::DropReason),
}

/// Two tunnels A and B on a lossless in-memory wire.
pub struct Pair {
    pub a: Side,
    pub b: Side,
    pub now: Instant,
    /// Every datagram ever put on the wire, in order.
    pub log: Vec<Datagram>,
}

impl Pair {
    /// Two tunnels that know each other (with registry keys), not yet keyed.
    pub fn new() -> Self {
        Self::with_config(TunnelConfig::default())
    }

    pub fn with_config(config: TunnelConfig) -> Self {
        let now = base_instant();
        let mut pair = Self {
            a: Side::new(A, 1, config.clone()),
            b: Side::new(B, 2, config),
            now,
            log: Vec::new(),
        };
        let (a_key, b_key) = (
            pair.a.identity.verifying_key(),
            pair.b.identity.verifying_key(),
        );
        pair.a
            .tunnel
            .add_peer(now, B, pair.b.addr, Some(b_key))
            .unwrap();
        pair.b
            .tunnel
            .add_peer(now, A, pair.a.addr, Some(a_key))
            .unwrap();
        pair
    }

    /// Keyed and confirmed both ways (one packet each way exchanged).
    pub fn established() -> Self {
        let mut pair = Self::new();
        pair.run();
        pair.send_a_to_b(b"warm-up a");
        pair.send_b_to_a(b"warm-up b");
        pair.run();
        pair.a.delivered.clear();
        pair.b.delivered.clear();
        pair.a.events.clear();
        pair.b.events.clear();
        pair
    }

    /// Delivers everything both sides send until the wire is quiet.
    pub fn run(&mut self) {
        for _ in 0..MAX_ROUNDS {
            let mut datagrams = self.a.transmits(self.now);
            datagrams.extend(self.b.transmits(self.now));
            if datagrams.is_empty() {
                return;
            }
            for datagram in datagrams {
                self.deliver(&datagram);
            }
        }
        panic!("the pair did not go quiet within {MAX_ROUNDS} rounds");
    }

    /// Delivers one datagram to whichever side it is addressed to (logging it).
    pub fn deliver(&mut self, datagram: &Datagram) -> Option<Outcome> {
        self.log.push(datagram.clone());
        if datagram.dst == self.a.addr {
            Some(self.a.receive(self.now, datagram.src, &datagram.bytes))
        } else if datagram.dst == self.b.addr {
            Some(self.b.receive(self.now, datagram.src, &datagram.bytes))
        } else {
            None
        }
    }

    pub fn send_a_to_b(&mut self, payload: &[u8]) {
        self.a
            .tunnel
            .send(self.now, B, &packet(A, B, payload))
            .unwrap();
    }

    pub fn send_b_to_a(&mut self, payload: &[u8]) {
        self.b
            .tunnel
            .send(self.now, A, &packet(B, A, payload))
            .unwrap();
    }

    /// Sends from A and returns the sealed frame without delivering it.
    pub fn intercept_a_to_b(&mut self, payload: &[u8]) -> Datagram {
        self.send_a_to_b(payload);
        let mut frames = self.a.transmits(self.now);
        assert_eq!(frames.len(), 1, "expected exactly one frame");
        frames.remove(0)
    }

    /// Moves virtual time forward and fires both tunnels' due timers.
    pub fn advance(&mut self, by: Duration) {
        self.now += by;
        self.a.tunnel.handle_timeout(self.now);
        self.b.tunnel.handle_timeout(self.now);
        self.a.collect_events();
        self.b.collect_events();
    }

    /// Asserts that traffic still flows both ways.
    pub fn assert_working(&mut self) {
        self.send_a_to_b(b"still working a->b");
        self.send_b_to_a(b"still working b->a");
        self.run();
        let last_at_b = self.b.delivered.last().expect("b received nothing");
        assert_eq!(last_at_b.1, packet(A, B, b"still working a->b"));
        assert!(last_at_b.2, "not encrypted");
        let last_at_a = self.a.delivered.last().expect("a received nothing");
        assert_eq!(last_at_a.1, packet(B, A, b"still working b->a"));
    }
}

/// An arbitrary starting instant: only differences between instants matter to the tunnel.
#[allow(clippy::disallowed_methods)]
pub fn base_instant() -> Instant {
    Instant::now()
}

/// A loopback socket address per seed.
pub fn addr(seed: u8) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 40_000 + u16::from(seed)))
}

/// A marshalled stream packet from `src` to `dst` (checksum left zero: the tunnel does not
/// check it).
pub fn packet(src: u32, dst: u32, payload: &[u8]) -> Vec<u8> {
    let mut bytes = vec![0u8; 34];
    bytes[0] = 0x12;
    bytes[1] = 0x01;
    bytes[2..4].copy_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    bytes[6..10].copy_from_slice(&src.to_be_bytes());
    bytes[12..16].copy_from_slice(&dst.to_be_bytes());
    bytes.extend_from_slice(payload);
    bytes
}

/// A hand-driven v0.5-style peer whose keys the test controls.
pub struct FakePeer {
    pub node: u32,
    pub addr: SocketAddr,
    pub identity: Identity,
    pub secret: X25519Secret,
    pub cipher: Option<SessionCipher>,
    pub prefix: [u8; 4],
    pub counter: u64,
}

impl FakePeer {
    pub fn new(node: u32, seed: u8) -> Self {
        Self {
            node,
            addr: addr(seed),
            identity: Identity::from_seed(&[seed; 32]),
            secret: X25519Secret::from_bytes([seed.wrapping_mul(3).wrapping_add(1); 32]),
            cipher: None,
            prefix: [0xfa, 0x4e, 0, seed],
            counter: 0,
        }
    }

    /// Our PILA, signed by `identity`.
    pub fn pila(&self) -> Vec<u8> {
        self.pila_signed_by(&self.identity, self.identity.public_key_bytes())
    }

    /// A PILA naming `signing_key` in the frame but signed by `signer`.
    pub fn pila_signed_by(&self, signer: &Identity, signing_key: [u8; 32]) -> Vec<u8> {
        let public_key = self.secret.public_key();
        let signature = signer
            .sign(&auth_signed_message(self.node, &public_key))
            .to_bytes();
        let repr = AuthKeyExchangeRepr {
            sender: self.node,
            public_key,
            signing_key,
            signature,
        };
        emit(TunnelRepr::AuthKeyExchange(repr))
    }

    /// A PILK carrying `public_key`.
    pub fn pilk(&self, public_key: [u8; 32]) -> Vec<u8> {
        emit(TunnelRepr::KeyExchange(KeyExchangeRepr {
            sender: self.node,
            public_key,
        }))
    }

    /// Derives the session key from the tunnel's PILA.
    pub fn learn(&mut self, tunnel_pila: &[u8]) {
        let Ok(TunnelRepr::AuthKeyExchange(auth)) = TunnelRepr::parse(tunnel_pila) else {
            panic!("not a PILA");
        };
        let key = self.secret.agree(&auth.public_key).unwrap();
        self.cipher = Some(SessionCipher::new(&key));
    }

    /// Seals `packet` with the next counter under the current prefix.
    pub fn seal(&mut self, packet: &[u8]) -> Vec<u8> {
        self.counter += 1;
        self.seal_with(
            Nonce {
                prefix: self.prefix,
                counter: self.counter,
            },
            packet,
        )
    }

    /// v0.5 behaviour on receiving a PILA: new random prefix, counter restarts.
    pub fn reset_prefix(&mut self, prefix: [u8; 4]) {
        self.prefix = prefix;
        self.counter = 0;
    }

    pub fn seal_with(&self, nonce: Nonce, packet: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        self.cipher
            .as_ref()
            .expect("no key yet")
            .seal_frame(self.node, nonce, packet, &mut out);
        out
    }

    /// Opens a PILS the tunnel sent us.
    pub fn open(&self, frame: &[u8]) -> Vec<u8> {
        let Ok(TunnelRepr::Sealed(sealed)) = TunnelRepr::parse(frame) else {
            panic!("not PILS")
        };
        let nonce = sealed.nonce;
        let mut bytes = frame.to_vec();
        let cipher = self.cipher.as_ref().expect("no key yet");
        cipher
            .open_in_place(nonce, &mut bytes[SEALED_HEADER_LEN..])
            .unwrap()
            .to_vec()
    }
}

/// Emits a repr into a fresh vector.
pub fn emit(repr: TunnelRepr<'_>) -> Vec<u8> {
    let mut out = vec![0u8; repr.buffer_len()];
    repr.emit(&mut out).unwrap();
    out
}

/// A tunnel (node A) keyed with a fake peer; returns both, the tunnel already confirmed.
pub fn tunnel_with_fake_peer(config: TunnelConfig) -> (Side, FakePeer, Instant) {
    let now = base_instant();
    let mut side = Side::new(A, 1, config);
    let mut fake = FakePeer::new(B, 9);
    let key = fake.identity.verifying_key();
    side.tunnel.add_peer(now, B, fake.addr, Some(key)).unwrap();
    let first = side.transmits(now);
    fake.learn(&first[0].bytes);
    assert_eq!(
        side.receive(now, fake.addr, &fake.pila()),
        Outcome::Consumed
    );
    side.transmits(now);
    let frame = fake.seal(&packet(B, A, b"hello"));
    assert_eq!(
        side.receive(now, fake.addr, &frame),
        Outcome::Packet {
            node: B,
            encrypted: true
        }
    );
    (side, fake, now)
}
