//! Seal+open of a 1200-byte packet through two keyed [`Tunnel`]s, beside ring's raw
//! AES-256-GCM seal+open of the same size, in the same run.
//!
//! Target: the tunnel path reaches at least 85% of the raw ring rate, and allocates nothing
//! per packet in steady state. `main` checks the allocation claim with a counting global
//! allocator (this file only) and prints both rates and their ratio before divan's table.
//!
//! Run: `cargo bench -p pilot-proto --bench tunnel`.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pilot_proto::identity::Identity;
use pilot_proto::rng::Rng;
use pilot_proto::tunnel::{Inbound, Tunnel, TunnelConfig};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

const PACKET_LEN: usize = 1200;
const TARGET_RATIO: f64 = 0.85;

/// Counts every allocation made by the process.
struct CountingAllocator;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every method forwards its arguments unchanged to the system allocator, which upholds
// the `GlobalAlloc` contract; the only addition is an atomic counter increment.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` with this `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAllocator = CountingAllocator;

fn main() {
    check_steady_state_allocations();
    print_ratio();
    divan::main();
}

/// Two tunnels that have exchanged keys and one packet each way.
struct Bench {
    a: Tunnel,
    b: Tunnel,
    a_addr: SocketAddr,
    b_addr: SocketAddr,
    now: Instant,
    packet: Vec<u8>,
    buf: Vec<u8>,
}

impl Bench {
    #[allow(clippy::disallowed_methods)] // A benchmark needs some starting instant.
    fn new() -> Self {
        let now = Instant::now();
        let (a_id, b_id) = (Identity::from_seed(&[1; 32]), Identity::from_seed(&[2; 32]));
        let (a_key, b_key) = (a_id.verifying_key(), b_id.verifying_key());
        let a_addr = SocketAddr::from(([127, 0, 0, 1], 40_001));
        let b_addr = SocketAddr::from(([127, 0, 0, 1], 40_002));
        let mut a = Tunnel::new(TunnelConfig::default(), a_id, 1, Rng::from_seed([1; 32]));
        let mut b = Tunnel::new(TunnelConfig::default(), b_id, 2, Rng::from_seed([2; 32]));
        a.add_peer(now, 2, b_addr, Some(b_key)).expect("add b");
        b.add_peer(now, 1, a_addr, Some(a_key)).expect("add a");

        let mut packet = vec![0u8; PACKET_LEN];
        packet[6..10].copy_from_slice(&1u32.to_be_bytes());
        let mut bench = Self {
            a,
            b,
            a_addr,
            b_addr,
            now,
            packet,
            buf: Vec::new(),
        };
        bench.exchange();
        bench.round_trip();
        bench
    }

    /// Delivers everything queued on both sides until quiet (bounded).
    fn exchange(&mut self) {
        for _ in 0..16 {
            let mut moved = false;
            while let Some(t) = self.a.poll_transmit(self.now, &mut self.buf) {
                let _ = self
                    .b
                    .handle_datagram(self.now, self.a_addr, &mut self.buf[..t.len]);
                moved = true;
            }
            while let Some(t) = self.b.poll_transmit(self.now, &mut self.buf) {
                let _ = self
                    .a
                    .handle_datagram(self.now, self.b_addr, &mut self.buf[..t.len]);
                moved = true;
            }
            while self.a.poll_event().is_some() || self.b.poll_event().is_some() {}
            if !moved {
                return;
            }
        }
    }

    /// One packet A → B: seal, transmit, open in place. Returns the opened length.
    fn round_trip(&mut self) -> usize {
        self.a.send(self.now, 2, &self.packet).expect("send");
        let transmit = self
            .a
            .poll_transmit(self.now, &mut self.buf)
            .expect("sealed frame");
        match self
            .b
            .handle_datagram(self.now, self.a_addr, &mut self.buf[..transmit.len])
        {
            Inbound::Packet { packet, .. } => packet.len(),
            other => panic!("not delivered: {other:?}"),
        }
    }
}

/// Raw ring AES-256-GCM with counter nonces, sealing and opening one buffer in place.
struct Raw {
    key: LessSafeKey,
    counter: u64,
    buf: Vec<u8>,
}

impl Raw {
    fn new() -> Self {
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7; 32]).expect("key"));
        Self {
            key,
            counter: 0,
            buf: vec![0u8; PACKET_LEN],
        }
    }

    fn round_trip(&mut self) -> usize {
        self.counter += 1;
        let mut nonce = [0u8; 12];
        nonce[4..].copy_from_slice(&self.counter.to_be_bytes());
        let seal_nonce = Nonce::assume_unique_for_key(nonce);
        let tag = self
            .key
            .seal_in_place_separate_tag(seal_nonce, Aad::empty(), &mut self.buf);
        let tag = tag.expect("seal");
        let open_nonce = Nonce::assume_unique_for_key(nonce);
        let opened =
            self.key
                .open_in_place_separate_tag(open_nonce, Aad::empty(), tag, &mut self.buf, 0..);
        opened.expect("open").len()
    }
}

#[divan::bench]
fn tunnel_seal_open_1200(bencher: divan::Bencher<'_, '_>) {
    let mut bench = Bench::new();
    bencher
        .counter(divan::counter::BytesCount::new(PACKET_LEN))
        .bench_local(|| bench.round_trip());
}

#[divan::bench]
fn ring_raw_seal_open_1200(bencher: divan::Bencher<'_, '_>) {
    let mut raw = Raw::new();
    bencher
        .counter(divan::counter::BytesCount::new(PACKET_LEN))
        .bench_local(|| raw.round_trip());
}

/// Asserts that, once warmed up, a tunnel round trip performs no heap allocation.
fn check_steady_state_allocations() {
    let mut bench = Bench::new();
    for _ in 0..100 {
        bench.round_trip();
    }
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..10_000 {
        divan::black_box(bench.round_trip());
    }
    let allocations = ALLOCATIONS.load(Ordering::Relaxed) - before;
    println!("steady state: {allocations} heap allocations in 10000 tunnel round trips");
    assert_eq!(allocations, 0, "the tunnel allocates per packet");
}

/// Prints both rates and their ratio. Batches of the two alternate and the fastest batch of
/// each counts, so that load from other processes on a shared machine skews neither side.
#[allow(clippy::disallowed_methods)] // Benchmarks measure wall time.
fn print_ratio() {
    const BATCHES: u32 = 40;
    const ROUNDS: u32 = 2_000;
    let mut bench = Bench::new();
    let mut raw = Raw::new();
    let (mut tunnel_best, mut ring_best) = (Duration::MAX, Duration::MAX);
    for _ in 0..BATCHES {
        let start = Instant::now();
        for _ in 0..ROUNDS {
            divan::black_box(bench.round_trip());
        }
        tunnel_best = tunnel_best.min(start.elapsed());
        let start = Instant::now();
        for _ in 0..ROUNDS {
            divan::black_box(raw.round_trip());
        }
        ring_best = ring_best.min(start.elapsed());
    }

    let ratio = ring_best.as_secs_f64() / tunnel_best.as_secs_f64();
    println!(
        "1200-byte seal+open, best of {BATCHES} batches: tunnel {:?}/packet, raw ring {:?}/packet; \
         tunnel runs at {:.0}% of the raw rate (target >= {:.0}%)",
        tunnel_best / ROUNDS,
        ring_best / ROUNDS,
        ratio * 100.0,
        TARGET_RATIO * 100.0,
    );
}
