//! The loopback performance table: `cargo bench -p pilot-tests --bench perf_table`.
//!
//! Starts real processes on loopback (a rendezvous and several `pilotctl daemon run` nodes from
//! the release build, see `procs`), measures goodput, first contact, echo round trips, pub/sub
//! throughput and latency and daemon memory, prints a markdown table with each goal and the
//! v0.5 figure beside the measured value, and writes `docs/perf.svg`.
//!
//! Every wait has a deadline, every loop a count or time bound; only loopback addresses are
//! used; the only processes signalled are the children this binary started, by PID, when their
//! guards drop (also on panic). A full run takes about a minute.
//!
//! # Limitations
//!
//! - The mio column covers goodput and events/s only; its events/s uses the mio node's own
//!   broker with publisher and subscriber in the node's one thread.
//! - Clients, daemons and the bench share the machine's cores; on a busy machine every figure
//!   is lower than on an idle one (the table prints the load average).

#[path = "perf_table/measure.rs"]
mod measure;
#[path = "perf_table/mio_node.rs"]
mod mio_node;
#[path = "perf_table/plot.rs"]
mod plot;
#[path = "perf_table/procs.rs"]
mod procs;
#[path = "perf_table/table.rs"]
mod table;

use std::path::Path;
use std::time::Duration;

use measure::{Throughput, bounded};
use procs::{Daemon, Rendezvous, Rss};

/// Everything one run measured.
#[derive(Debug, Clone)]
pub struct Results {
    raw_udp_mbs: f64,
    raw_udp_offload_mbs: f64,
    goodput_mbs: Result<f64, String>,
    /// Per target: (dial returned, first byte back) in ms.
    first_contact_ms: Vec<(f64, f64)>,
    echo_ms: (f64, f64),
    pubsub_1: Throughput,
    pubsub_100: Throughput,
    latency_ms: (f64, f64),
    latency_counts: (u64, usize),
    /// Longest publish-to-deliver latency (ms) and the number of episodes (runs of
    /// consecutive events) slower than 2 ms.
    latency_tail: (f64, usize),
    udp_latency_ms: (f64, f64),
    idle_rss: Rss,
    rss_100: Rss,
    mio: mio_node::MioFigures,
    load_before: String,
    load_after: String,
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let load_before = load_average();
    let exe = procs::pilotctl();
    eprintln!("perf_table: using {}", exe.display());
    if std::env::var("PILOT_PERF_ONLY").as_deref() == Ok("goodput") {
        goodput_only(&exe);
        return;
    }
    let raw_udp_mbs = measure::raw_udp(Duration::from_millis(500));
    let raw_udp_offload_mbs = measure::raw_udp_offload(Duration::from_millis(500));
    let mut udp_latency = measure::udp_latency(10_000, Duration::from_secs(2));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut results = rt.block_on(run(&exe));
    results.raw_udp_mbs = raw_udp_mbs;
    results.raw_udp_offload_mbs = raw_udp_offload_mbs;
    results.udp_latency_ms = measure::p50_p99(&mut udp_latency);
    results.load_before = load_before;
    results.load_after = load_average();
    let text = table::render(&results);
    println!("{text}");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let md = root.join("target").join("perf_table.md");
    if std::fs::write(&md, &text).is_ok() {
        eprintln!("perf_table: table written to {}", md.display());
    }
    let svg = root.join("docs").join("perf.svg");
    match plot::write(&svg, &results) {
        Ok(()) => eprintln!("perf_table: plot written to {}", svg.display()),
        Err(e) => eprintln!("perf_table: plot not written: {e}"),
    }
}

/// The measurements in order; daemons start together, then each figure is taken in turn.
async fn run(exe: &Path) -> Results {
    let rv = Rendezvous::start(exe);
    let spawned: Vec<_> = (0..6).map(|_| Daemon::spawn(exe, &rv.registry)).collect();
    let mut nodes = Vec::new();
    for (guard, dir) in spawned {
        nodes.push(Daemon::ready(guard, dir).await);
    }
    let (a, b, idle) = (&nodes[0], &nodes[1], &nodes[5]);
    let ca = a.client().await;
    eprintln!("perf_table: {} daemons up", nodes.len());

    let mut first_contact_ms = Vec::new();
    for target in [b, &nodes[2], &nodes[3], &nodes[4]] {
        let (dial, first) = measure::first_contact(&ca, target).await;
        let (dial, first) = (dial.as_secs_f64() * 1e3, first.as_secs_f64() * 1e3);
        eprintln!("perf_table: first contact: dial {dial:.1} ms, first byte {first:.1} ms");
        first_contact_ms.push((dial, first));
    }
    let mut echo = measure::echo_rtts(&ca, b, 2000).await;
    let echo_ms = measure::p50_p99(&mut echo);
    eprintln!("perf_table: first contact and echo done");

    let goodput_mbs = measure::goodput(a, b, 5000, 96 << 20, Duration::from_secs(10)).await;
    eprintln!("perf_table: goodput {goodput_mbs:?} MB/s");

    let (publisher, subs) = measure::subscribers(b, 1).await;
    let pubsub_1 =
        measure::pubsub_throughput(b, &publisher, subs, 400_000, Duration::from_secs(3)).await;
    let (published, mut lat) = measure::pubsub_latency(b, 10_000, Duration::from_secs(2)).await;
    let latency_counts = (published, lat.len());
    let latency_tail = measure::tail(&lat, Duration::from_millis(2));
    eprintln!(
        "perf_table: latency max {:.1} ms, {} episodes over 2 ms",
        latency_tail.0, latency_tail.1
    );
    let latency_ms = measure::p50_p99(&mut lat);
    eprintln!("perf_table: pub/sub to one subscriber done");

    let mio = mio_node::measure(&rv.registry, b).await;
    eprintln!("perf_table: mio node: {mio:?}");

    let host = &nodes[3];
    let (publisher, subs) = bounded("100 subscribers", measure::subscribers(host, 100)).await;
    let rss_100 = host.rss_kib();
    let pubsub_100 =
        measure::pubsub_throughput(host, &publisher, subs, 20_000, Duration::from_secs(3)).await;
    eprintln!("perf_table: pub/sub to 100 subscribers done");

    Results {
        raw_udp_mbs: 0.0,
        raw_udp_offload_mbs: 0.0,
        goodput_mbs,
        first_contact_ms,
        echo_ms,
        pubsub_1,
        pubsub_100,
        latency_ms,
        latency_counts,
        latency_tail,
        udp_latency_ms: (0.0, 0.0),
        idle_rss: idle.rss_kib(),
        rss_100,
        mio,
        load_before: String::new(),
        load_after: String::new(),
    }
}

/// The 1/5/15-minute load averages from `/proc/loadavg`.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

/// `PILOT_PERF_ONLY=goodput`: `PILOT_PERF_RUNS` (default 5) goodput runs between two fresh daemons and nothing else
/// (for profiling the stream path; prints each figure, writes no table).
fn goodput_only(exe: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let rv = Rendezvous::start(exe);
        let (ga, da) = Daemon::spawn(exe, &rv.registry);
        let (gb, db) = Daemon::spawn(exe, &rv.registry);
        let (a, b) = (Daemon::ready(ga, da).await, Daemon::ready(gb, db).await);
        eprintln!("perf_table: daemon pids {} {}", a.pid(), b.pid());
        let runs: u16 = std::env::var("PILOT_PERF_RUNS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(5);
        for port in 6000..6000 + runs.min(100) {
            let mbs = measure::goodput(&a, &b, port, 96 << 20, Duration::from_secs(10)).await;
            eprintln!("perf_table: goodput {mbs:?} MB/s");
        }
        let mio = mio_node::measure(&rv.registry, &b).await;
        eprintln!("perf_table: mio node: {mio:?}");
    });
}
