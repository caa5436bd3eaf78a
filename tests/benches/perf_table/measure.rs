//! The measurements: raw loopback UDP, stream goodput, first contact, echo round trips,
//! pub/sub throughput and latency. Each one is bounded in time and count and returns plain
//! numbers; the table and plot are made elsewhere.

use std::net::UdpSocket;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use pilot_tokio::client::{PORT_EVENTS, encode_event};
use pilot_tokio::{AddrPort, Client, Conn, Subscription};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::procs::Daemon;

/// Upper bound for one step of a measurement.
const STEP: Duration = Duration::from_secs(20);

/// Awaits `fut`, or panics naming `what` after [`STEP`].
pub(crate) async fn bounded<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(STEP, fut).await {
        Ok(v) => v,
        Err(_) => panic!("{what}: no result within {STEP:?}"),
    }
}

/// p50 and p99 of `samples` (sorted in place), in milliseconds.
pub(crate) fn p50_p99(samples: &mut [Duration]) -> (f64, f64) {
    if samples.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    samples.sort_unstable();
    let at = |q: usize| samples[(samples.len() * q / 100).min(samples.len() - 1)];
    (ms(at(50)), ms(at(99)))
}

/// The largest sample (ms) and how many runs of consecutive samples exceed `over`, in arrival
/// order: one scheduling stall delays a run of events, so runs count stalls.
pub(crate) fn tail(samples: &[Duration], over: Duration) -> (f64, usize) {
    let max = samples.iter().max().copied().unwrap_or_default();
    let runs = samples
        .windows(2)
        .filter(|w| w[1] > over && w[0] <= over)
        .count()
        + usize::from(samples.first().is_some_and(|s| *s > over));
    (ms(max), runs)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Raw loopback UDP, best of three runs of `run` each (the machine is shared, so the best run
/// is the closest to what loopback can do). MB/s (10^6 bytes) received.
pub(crate) fn raw_udp(run: Duration) -> f64 {
    (0..3).map(|_| raw_udp_once(run)).fold(0.0, f64::max)
}

/// One thread sends 1200-byte datagrams for `run`, another counts what arrives.
fn raw_udp_once(run: Duration) -> f64 {
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind rx");
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind tx");
    tx.connect(rx.local_addr().expect("addr")).expect("connect");
    rx.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let receiver = std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        let mut bytes = 0u64;
        while let Ok(n) = rx.recv(&mut buf) {
            bytes += n as u64;
        }
        bytes
    });
    let payload = [0x5au8; 1200];
    let start = Instant::now();
    while start.elapsed() < run {
        for _ in 0..64 {
            let _ = tx.send(&payload);
        }
    }
    let elapsed = start.elapsed();
    let bytes = receiver.join().expect("receiver thread");
    bytes as f64 / elapsed.as_secs_f64() / 1e6
}

/// Raw loopback UDP with segmentation and receive offload (GSO/GRO), best of three: what
/// the kernel can carry when a sender hands over runs of datagrams, as the daemon does.
pub(crate) fn raw_udp_offload(run: Duration) -> f64 {
    (0..3)
        .map(|_| raw_udp_offload_once(run))
        .fold(0.0, f64::max)
}

/// One thread sends runs of 1200-byte datagrams (up to 64 KB a call) for `run`, another reads
/// them with receive offload and counts the bytes.
fn raw_udp_offload_once(run: Duration) -> f64 {
    use quinn_udp::{RecvMeta, Transmit, UdpSocketState};

    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind rx");
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind tx");
    let dst = rx.local_addr().expect("addr");
    let rx_state = UdpSocketState::new((&rx).into()).expect("rx offload");
    let tx_state = UdpSocketState::new((&tx).into()).expect("tx offload");
    let stop = Instant::now() + run + Duration::from_millis(200);
    let receiver = std::thread::spawn(move || {
        let mut buf = vec![0u8; 96 * 1024];
        let mut bytes = 0u64;
        let mut meta = [RecvMeta::default()];
        while Instant::now() < stop {
            let mut bufs = [std::io::IoSliceMut::new(&mut buf)];
            match rx_state.recv((&rx).into(), &mut bufs, &mut meta) {
                Ok(1..) => bytes += meta[0].len as u64,
                _ => std::thread::yield_now(),
            }
        }
        bytes
    });
    let segments = tx_state.max_gso_segments().clamp(1, 53);
    let payload = vec![0x5au8; 1200 * segments];
    let transmit = Transmit {
        destination: dst,
        ecn: None,
        contents: &payload,
        segment_size: (segments > 1).then_some(1200),
        src_ip: None,
    };
    let start = Instant::now();
    while start.elapsed() < run {
        let _ = tx_state.try_send((&tx).into(), &transmit);
    }
    let elapsed = start.elapsed();
    let bytes = receiver.join().expect("receiver thread");
    bytes as f64 / elapsed.as_secs_f64() / 1e6
}

/// One-way latency of raw loopback UDP at a fixed rate: the machine's own floor for the pub/sub
/// latency figure (two threads, 100-byte datagrams carrying their send time, paced like the
/// publisher).
pub(crate) fn udp_latency(rate: u32, run: Duration) -> Vec<Duration> {
    let rx = UdpSocket::bind("127.0.0.1:0").expect("bind rx");
    let tx = UdpSocket::bind("127.0.0.1:0").expect("bind tx");
    tx.connect(rx.local_addr().expect("addr")).expect("connect");
    rx.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let base = Instant::now();
    let receiver = std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        let mut out = Vec::new();
        while let Ok(n) = rx.recv(&mut buf) {
            if let Some(sent) = buf[..n].get(..8) {
                let sent = u64::from_be_bytes(sent.try_into().expect("8 bytes"));
                out.push(base.elapsed().saturating_sub(Duration::from_nanos(sent)));
            }
        }
        out
    });
    let total = (rate as f64 * run.as_secs_f64()) as u64;
    let mut payload = [0u8; 100];
    for i in 0..total {
        let due = Duration::from_nanos(i * 1_000_000_000 / rate as u64);
        if let Some(wait) = due.checked_sub(base.elapsed()) {
            std::thread::sleep(wait);
        }
        payload[..8].copy_from_slice(&(base.elapsed().as_nanos() as u64).to_be_bytes());
        let _ = tx.send(&payload);
    }
    receiver.join().expect("receiver thread")
}

/// Stream goodput from `a` to `b`: writes up to `max_bytes` (stopping after `max_time`) over
/// one virtual-port stream; MB/s from the first write to the last byte read. A failed write or a
/// short read is returned as an error (the table shows it) rather than ending the run.
pub(crate) async fn goodput(
    a: &Daemon,
    b: &Daemon,
    port: u16,
    max_bytes: usize,
    max_time: Duration,
) -> Result<f64, String> {
    let (ca, cb) = (a.client().await, b.client().await);
    let mut listener = bounded("listen", cb.listen(port)).await.expect("listen");
    let reader = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await.expect("accept");
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0usize;
        while let Ok(n @ 1..) = conn.read(&mut buf).await {
            total += n;
        }
        (total, Instant::now())
    });
    let remote = AddrPort { addr: b.addr, port };
    let mut conn = bounded("dial", ca.dial(remote)).await.expect("dial");
    let piece: Vec<u8> = (0..(1u32 << 20))
        .map(|i| ((i.wrapping_mul(2_654_435_761)) >> 13) as u8)
        .collect();
    let start = Instant::now();
    let mut sent = 0;
    while sent < max_bytes && start.elapsed() < max_time {
        let wrote = bounded("write", conn.write_all(&piece)).await;
        wrote.map_err(|e| format!("write failed after {} MiB: {e}", sent >> 20))?;
        sent += piece.len();
    }
    bounded("close", conn.shutdown())
        .await
        .map_err(|e| format!("close failed: {e}"))?;
    let (got, end) = bounded("receive", reader).await.expect("reader task");
    if got != sent {
        return Err(format!("{got} of {sent} bytes arrived"));
    }
    Ok(got as f64 / (end - start).as_secs_f64() / 1e6)
}

/// Cold first contact: `a` dials `b`'s echo port (no tunnel yet); time until the first echoed
/// byte is back. Returns (dial returned, first byte back), both from the start.
pub(crate) async fn first_contact(a: &Client, b: &Daemon) -> (Duration, Duration) {
    let start = Instant::now();
    let remote = AddrPort {
        addr: b.addr,
        port: 7,
    };
    let mut conn = bounded("first dial", a.dial(remote)).await.expect("dial");
    let dialled = start.elapsed();
    bounded("first write", conn.write_all(b"x"))
        .await
        .expect("write");
    let mut one = [0u8; 1];
    bounded("first byte", conn.read_exact(&mut one))
        .await
        .expect("echo");
    (dialled, start.elapsed())
}

/// Echo round trips of 64-byte messages on port 7 over one stream: `count` samples.
pub(crate) async fn echo_rtts(a: &Client, b: &Daemon, count: usize) -> Vec<Duration> {
    let remote = AddrPort {
        addr: b.addr,
        port: 7,
    };
    let mut conn = bounded("echo dial", a.dial(remote)).await.expect("dial");
    let msg = [0x42u8; 64];
    let mut back = [0u8; 64];
    let mut out = Vec::with_capacity(count);
    for _ in 0..count {
        let start = Instant::now();
        bounded("echo", async {
            conn.write_all(&msg).await.expect("write");
            conn.read_exact(&mut back).await.expect("read");
        })
        .await;
        out.push(start.elapsed());
    }
    out
}

/// Pub/sub on `node`'s broker: results of one throughput run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Throughput {
    /// Events published.
    pub(crate) published: u64,
    /// Events delivered, summed over subscribers.
    pub(crate) delivered: u64,
    /// Events per second each subscriber received (delivered / subscribers / time).
    pub(crate) per_subscriber: f64,
}

/// `n` subscribers on `node`'s broker, each its own client connection, subscribed to
/// `perf.*` and proven live by a warm-up event.
pub(crate) async fn subscribers(node: &Daemon, n: usize) -> (Client, Vec<Subscription>) {
    let mut subs = Vec::with_capacity(n);
    for _ in 0..n {
        let c = node.client().await;
        subs.push(
            bounded("subscribe", c.subscribe("perf.*"))
                .await
                .expect("sub"),
        );
    }
    let publisher = node.client().await;
    let warm = publisher_conn(&publisher, node).await;
    for s in &mut subs {
        loop {
            let frame = encode_event("perf.warm", b"w").expect("encode");
            bounded("warm publish", warm.send_all(&frame))
                .await
                .expect("warm");
            let got = tokio::time::timeout(Duration::from_millis(200), s.next_event()).await;
            if let Ok(Some(Ok(_))) = got {
                break;
            }
        }
    }
    drain(&mut subs).await;
    (publisher, subs)
}

/// Reads and drops warm-up events still queued on every subscription (bounded).
async fn drain(subs: &mut [Subscription]) {
    for s in subs {
        while let Ok(Some(Ok(_))) =
            tokio::time::timeout(Duration::from_millis(20), s.next_event()).await
        {}
    }
}

/// Publishes 100-byte events as fast as the broker takes them (batched 500 per write, the
/// stream carries framed events) for up to `max_events`/`max_time`; every subscriber counts.
pub(crate) async fn pubsub_throughput(
    node: &Daemon,
    publisher: &Client,
    subs: Vec<Subscription>,
    max_events: u64,
    max_time: Duration,
) -> Throughput {
    let n = subs.len() as u64;
    let delivered = Arc::new(AtomicU64::new(0));
    let last = Arc::new(std::sync::Mutex::new(Instant::now()));
    let tasks: Vec<_> = subs
        .into_iter()
        .map(|mut s| {
            let (delivered, last) = (delivered.clone(), last.clone());
            tokio::spawn(async move {
                while let Some(Ok(event)) = s.next_event().await {
                    if event.topic != "perf.e" {
                        continue;
                    }
                    delivered.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut l) = last.lock() {
                        *l = Instant::now();
                    }
                }
            })
        })
        .collect();
    let conn = publisher_conn(publisher, node).await;
    let mut batch = Vec::new();
    for _ in 0..500 {
        batch.extend(encode_event("perf.e", &[7u8; 100]).expect("encode"));
    }
    let start = Instant::now();
    let mut published = 0;
    while published < max_events && start.elapsed() < max_time {
        bounded("publish batch", conn.send_all(&batch))
            .await
            .expect("publish");
        published += 500;
    }
    let deadline = Instant::now() + STEP;
    while delivered.load(Ordering::Relaxed) < published * n && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let end = last.lock().map(|l| *l).unwrap_or_else(|_| Instant::now());
    for t in tasks {
        t.abort();
    }
    let got = delivered.load(Ordering::Relaxed);
    Throughput {
        published,
        delivered: got,
        per_subscriber: got as f64 / n as f64 / (end - start).as_secs_f64(),
    }
}

/// A raw stream to `node`'s broker that publishes framed events (its own pattern matches none
/// of them, and the broker never echoes a publisher's events back to it).
pub(crate) async fn publisher_conn(client: &Client, node: &Daemon) -> Conn {
    let remote = AddrPort {
        addr: node.addr,
        port: PORT_EVENTS,
    };
    let conn = bounded("publisher dial", client.dial(remote))
        .await
        .expect("dial broker");
    let pattern = encode_event("bench.none", &[]).expect("encode");
    bounded("publisher pattern", conn.send_all(&pattern))
        .await
        .expect("pattern");
    conn
}

/// Publish-to-deliver latency at a fixed offered rate: one subscriber; the publisher runs in
/// its own thread (own runtime and client) and paces events by the clock, each carrying its
/// send time. Returns one latency per delivered event.
pub(crate) async fn pubsub_latency(
    node: &Daemon,
    rate: u32,
    run: Duration,
) -> (u64, Vec<Duration>) {
    let (_c, mut subs) = subscribers(node, 1).await;
    let mut sub = subs.pop().expect("one subscriber");
    let base = Instant::now();
    let socket = node.socket();
    let addr = node.addr;
    let total = (rate as f64 * run.as_secs_f64()) as u64;
    let publisher = std::thread::spawn(move || pace(&socket, addr, base, rate, total));
    let mut out = Vec::with_capacity(total as usize);
    let deadline = Instant::now() + run + STEP;
    while (out.len() as u64) < total && Instant::now() < deadline {
        let next = tokio::time::timeout(Duration::from_secs(2), sub.next_event()).await;
        let Ok(Some(Ok(event))) = next else { break };
        let Some(sent) = event.payload.get(..8) else {
            continue;
        };
        let sent = u64::from_be_bytes(sent.try_into().expect("8 bytes"));
        out.push(base.elapsed().saturating_sub(Duration::from_nanos(sent)));
    }
    let published = publisher.join().expect("publisher thread");
    (published, out)
}

/// The paced publisher: event `i` is sent at `base + i / rate` (sleeping when ahead).
fn pace(
    socket: &std::path::Path,
    addr: pilot_tokio::Addr,
    base: Instant,
    rate: u32,
    total: u64,
) -> u64 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let client = Client::connect(socket).await.expect("publisher client");
        let remote = AddrPort {
            addr,
            port: PORT_EVENTS,
        };
        let conn = bounded("dial", client.dial(remote))
            .await
            .expect("dial broker");
        let pattern = encode_event("bench.none", &[]).expect("encode");
        bounded("pattern", conn.send_all(&pattern))
            .await
            .expect("pattern");
        let start = base.elapsed();
        let mut payload = [0u8; 100];
        for i in 0..total {
            let due = start + Duration::from_nanos(i * 1_000_000_000 / rate as u64);
            if let Some(wait) = due.checked_sub(base.elapsed()) {
                std::thread::sleep(wait);
            }
            let now = base.elapsed().as_nanos() as u64;
            payload[..8].copy_from_slice(&now.to_be_bytes());
            let frame = encode_event("perf.e", &payload).expect("encode");
            bounded("paced publish", conn.send_all(&frame))
                .await
                .expect("publish");
        }
        total
    })
}
