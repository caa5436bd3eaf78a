//! The mio column: a `pilot_mio::MioNode` in its own thread (the node is single-threaded),
//! registered at the same rendezvous. Goodput: the mio node streams to a tokio daemon's
//! listener. Events/s: a publisher and a subscriber on the mio node's own broker (in-process
//! broker clients, no loopback stream), in the node's thread, in lock-step batches of 500
//! (publish, wait for acks, take the batch).

use std::io::Write as _;
use std::time::{Duration, Instant};

use pilot_mio::{MioConfig, MioNode};
use pilot_tokio::AddrPort;
use tokio::io::AsyncReadExt as _;

use crate::measure::bounded;
use crate::procs::Daemon;

/// Upper bound for one blocking mio call.
const WAIT: Duration = Duration::from_secs(20);

/// What the mio node measured (errors are shown in the table).
#[derive(Debug, Clone)]
pub(crate) struct MioFigures {
    /// Stream goodput, mio node to a tokio daemon, MB/s.
    pub(crate) goodput_mbs: Result<f64, String>,
    /// Events/s received by one subscriber on the mio node's broker.
    pub(crate) events_per_s: Result<f64, String>,
}

/// Starts a mio node registered at `registry` (blocking; call from its own thread).
fn start(registry: &str) -> Result<MioNode, String> {
    let mut config = MioConfig::new(registry.parse().map_err(|e| format!("{e}"))?);
    config.listen = "127.0.0.1:0".parse().map_err(|e| format!("{e}"))?;
    config.public = true;
    let node = MioNode::new(config).map_err(|e| format!("mio node: {e}"))?;
    node.wait_registered(WAIT)
        .map_err(|e| format!("mio register: {e}"))?;
    Ok(node)
}

/// Runs both mio measurements; `b` listens for the goodput stream.
pub(crate) async fn measure(registry: &str, b: &Daemon) -> MioFigures {
    let cb = b.client().await;
    let mut listener = bounded("mio listen", cb.listen(5001))
        .await
        .expect("listen");
    let reader = tokio::spawn(async move {
        let (mut conn, _) = listener.accept().await?;
        let mut buf = vec![0u8; 256 * 1024];
        let mut total = 0usize;
        while let Ok(n @ 1..) = conn.read(&mut buf).await {
            total += n;
        }
        Some((total, Instant::now()))
    });
    let (registry, target) = (registry.to_owned(), b.addr);
    let worker = tokio::task::spawn_blocking(move || {
        let node = start(&registry)?;
        let sent = send(&node, target);
        let events = events(&node);
        Ok::<_, String>((sent, events))
    });
    let joined = tokio::time::timeout(Duration::from_secs(60), worker).await;
    let (sent, events) = match joined {
        Ok(Ok(Ok(v))) => v,
        Ok(Ok(Err(e))) => return failed(e),
        Ok(Err(e)) => return failed(format!("mio thread: {e}")),
        Err(_) => return failed("mio thread: no result within 60 s".into()),
    };
    let goodput_mbs = match sent {
        Err(e) => Err(e),
        Ok((sent, start)) => match tokio::time::timeout(WAIT, reader).await {
            Ok(Ok(Some((got, end)))) if got == sent => {
                Ok(got as f64 / (end - start).as_secs_f64() / 1e6)
            }
            Ok(Ok(Some((got, _)))) => Err(format!("{got} of {sent} bytes arrived")),
            _ => Err("the receiver did not finish".into()),
        },
    };
    MioFigures {
        goodput_mbs,
        events_per_s: events,
    }
}

fn failed(e: String) -> MioFigures {
    MioFigures {
        goodput_mbs: Err(e.clone()),
        events_per_s: Err(e),
    }
}

/// Streams 1 MiB pieces to `target:5001` (up to 96 MiB or 10 s); returns bytes and start time.
fn send(node: &MioNode, target: pilot_tokio::Addr) -> Result<(usize, Instant), String> {
    let remote = AddrPort {
        addr: target,
        port: 5001,
    };
    let mut stream = node
        .dial(remote, WAIT)
        .map_err(|e| format!("mio dial: {e}"))?;
    stream.set_write_timeout(Some(WAIT));
    let piece: Vec<u8> = (0..1u32 << 20).map(|i| (i >> 7) as u8).collect();
    let start = Instant::now();
    let mut sent = 0;
    while sent < 96 << 20 && start.elapsed() < Duration::from_secs(10) {
        stream
            .write_all(&piece)
            .map_err(|e| format!("mio write after {} MiB: {e}", sent >> 20))?;
        sent += piece.len();
    }
    stream
        .finish(WAIT)
        .map_err(|e| format!("mio finish: {e}"))?;
    Ok((sent, start))
}

/// Publishes 100-byte events on the node's own broker (up to 200,000 or 3 s) in lock-step
/// batches of 500: publish, wait for the broker's acks, then take every event of the batch
/// from the one subscriber (publisher and subscriber share the node's thread, and the broker
/// drops events for a subscriber that falls behind). Events per second over the whole run.
fn events(node: &MioNode) -> Result<f64, String> {
    let me = node.address().ok_or("mio node has no address")?;
    let mut sub = node
        .subscribe("perf.*", WAIT)
        .map_err(|e| format!("mio subscribe: {e}"))?;
    let mut publisher = node
        .publisher(me, WAIT)
        .map_err(|e| format!("mio publisher: {e}"))?;
    let payload = [7u8; 100];
    let start = Instant::now();
    let (mut published, mut got) = (0u64, 0u64);
    while published < 200_000 && start.elapsed() < Duration::from_secs(3) {
        for _ in 0..500 {
            publisher
                .publish("perf.e", &payload)
                .map_err(|e| format!("mio publish: {e}"))?;
        }
        published += 500;
        publisher
            .flush(WAIT)
            .map_err(|e| format!("mio flush: {e}"))?;
        while got < published {
            sub.next_event(WAIT).map_err(|e| {
                let missed = sub.missed();
                format!("mio: {got} of {published} events received ({missed} in gap notices): {e}")
            })?;
            got += 1;
        }
    }
    Ok(got as f64 / start.elapsed().as_secs_f64())
}
