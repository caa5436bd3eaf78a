//! The markdown table: one row per figure with the measured value, the mio column, the goal,
//! whether it was met, and the v0.5 figure (from `shared/pilot-v0.5/README.md`).

use crate::Results;

/// The mio column's cell: the value, its share of the tokio figure and the 10% goal.
fn mio_cell(mio: &Result<f64, String>, tokio: Option<f64>, unit: &str) -> String {
    match (mio, tokio) {
        (Err(e), _) => format!("failed: {e}"),
        (Ok(v), Some(t)) if t > 0.0 => {
            let verdict = if *v >= 0.9 * t { "met" } else { "MISSED" };
            format!(
                "{v:.1} {unit} ({:.0}% of tokio; goal within 10%: {verdict})",
                v / t * 100.0
            )
        }
        (Ok(v), _) => format!("{v:.1} {unit}"),
    }
}

/// One table row.
struct Row {
    figure: String,
    tokio: String,
    mio: String,
    goal: &'static str,
    met: Option<bool>,
    v05: &'static str,
}

fn row(
    figure: &str,
    tokio: String,
    goal: &'static str,
    met: Option<bool>,
    v05: &'static str,
) -> Row {
    Row {
        figure: figure.to_owned(),
        tokio,
        mio: String::new(),
        goal,
        met,
        v05,
    }
}

fn verdict(met: Option<bool>) -> &'static str {
    match met {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "",
    }
}

/// Renders the whole table with the run's load averages under it.
pub(crate) fn render(r: &Results) -> String {
    let mut out = String::from(
        "| figure | pilot-rs (tokio daemon) | pilot-rs (mio node) | goal | | v0.5 |\n\
         |---|---|---|---|---|---|\n",
    );
    for row in rows(r) {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            row.figure,
            row.tokio,
            row.mio,
            row.goal,
            verdict(row.met),
            row.v05
        ));
    }
    out.push_str(&format!(
        "\nLoad average (1/5/15 min) before the run: {}; after: {}.\n",
        r.load_before, r.load_after
    ));
    out
}

/// The idle RSS goal: 4 MB, in bytes.
const IDLE_RSS_GOAL_BYTES: u64 = 4_000_000;

fn rows(r: &Results) -> Vec<Row> {
    let goodput = match &r.goodput_mbs {
        Ok(mbs) => format!(
            "{mbs:.1} MB/s ({:.0}% of raw UDP; {:.0}% of raw UDP with offload)",
            mbs / r.raw_udp_mbs * 100.0,
            mbs / r.raw_udp_offload_mbs * 100.0
        ),
        Err(e) => format!("failed: {e}"),
    };
    let share = r.goodput_mbs.as_ref().map_or(0.0, |m| m / r.raw_udp_mbs);
    let mut fc: Vec<f64> = r.first_contact_ms.iter().map(|s| s.1).collect();
    fc.sort_by(f64::total_cmp);
    let fc_median = fc.get(fc.len() / 2).copied().unwrap_or(f64::NAN);
    let fc_max = fc.last().copied().unwrap_or(f64::NAN);
    let dials: Vec<String> = r
        .first_contact_ms
        .iter()
        .map(|s| format!("{:.1}", s.0))
        .collect();
    let mut rows = vec![
        row(
            "raw loopback UDP, 1200-byte datagrams, 2 threads",
            format!("{:.0} MB/s", r.raw_udp_mbs),
            "",
            None,
            "",
        ),
        row(
            "raw loopback UDP with segmentation and receive offload (runs of 1200-byte datagrams)",
            format!("{:.0} MB/s", r.raw_udp_offload_mbs),
            "",
            None,
            "",
        ),
        Row {
            mio: mio_cell(
                &r.mio.goodput_mbs,
                r.goodput_mbs.as_ref().ok().copied(),
                "MB/s",
            ),
            ..row(
                "stream goodput between two daemons",
                goodput,
                "≥ 50% of raw UDP",
                Some(share >= 0.5),
                "0.29 MB/s",
            )
        },
        row(
            &format!(
                "first contact, dial to first echoed byte, cold (median / max of {})",
                fc.len()
            ),
            format!(
                "{fc_median:.1} / {fc_max:.1} ms (dial alone: {} ms)",
                dials.join(", ")
            ),
            "",
            None,
            "12.7 ms",
        ),
        row(
            "echo round trip 64 B, p50 / p99 (2000 on one stream)",
            format!("{:.3} / {:.3} ms", r.echo_ms.0, r.echo_ms.1),
            "",
            None,
            "0.34 / 0.84 ms",
        ),
    ];
    rows.extend(pubsub_rows(r));
    rows.extend(rss_rows(r));
    rows
}

fn pubsub_rows(r: &Results) -> Vec<Row> {
    let (p1, p100) = (&r.pubsub_1, &r.pubsub_100);
    vec![
        Row {
            mio: mio_cell(
                &r.mio.events_per_s,
                Some(p1.per_subscriber),
                "events/s, batches of 500",
            ),
            ..row(
                "pub/sub, 100-byte events, 1 subscriber (events/s received)",
                format!(
                    "{:.0} ({} of {} delivered)",
                    p1.per_subscriber, p1.delivered, p1.published
                ),
                "≥ 200,000 events/s",
                Some(p1.per_subscriber >= 200_000.0),
                "37 events/s",
            )
        },
        row(
            "pub/sub, 100-byte events, 100 subscribers (events/s per subscriber)",
            format!(
                "{:.0} ({:.0} deliveries/s; {} of {} delivered)",
                p100.per_subscriber,
                p100.per_subscriber * 100.0,
                p100.delivered,
                p100.published * 100
            ),
            "",
            None,
            "",
        ),
        row(
            "publish to deliver at 10,000 events/s offered, p50 / p99",
            format!(
                "{:.3} / {:.3} ms (max {:.1} ms; {} runs over 2 ms; {} of {} delivered)",
                r.latency_ms.0,
                r.latency_ms.1,
                r.latency_tail.0,
                r.latency_tail.1,
                r.latency_counts.1,
                r.latency_counts.0
            ),
            "p99 < 1 ms",
            Some(r.latency_ms.1 < 1.0),
            "",
        ),
        row(
            "raw loopback UDP one-way at 10,000 datagrams/s, p50 / p99 (this machine's floor)",
            format!("{:.3} / {:.3} ms", r.udp_latency_ms.0, r.udp_latency_ms.1),
            "",
            None,
            "",
        ),
    ]
}

fn rss_rows(r: &Results) -> Vec<Row> {
    let mib = |kib: u64| kib as f64 / 1024.0;
    let show = |rss: &crate::Rss| {
        format!(
            "{:.1} MiB ({:.1} anonymous + {:.1} mapped files)",
            mib(rss.total),
            mib(rss.anon),
            mib(rss.file)
        )
    };
    vec![
        row(
            "idle daemon RSS (registered, no traffic)",
            show(&r.idle_rss),
            "< 4 MB (3.81 MiB)",
            Some(r.idle_rss.total * 1024 < IDLE_RSS_GOAL_BYTES),
            "about 10 MB",
        ),
        row(
            "daemon RSS with 100 connected clients, each with a broker stream",
            show(&r.rss_100),
            "",
            None,
            "",
        ),
    ]
}
