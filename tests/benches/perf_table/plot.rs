//! The plot: six bar-chart panels (goodput, first contact, echo, pub/sub rate, pub/sub latency,
//! memory) as one SVG, pilot-rs bars beside the v0.5 figures, each goal as a red line.

use std::path::Path;

use plotters::prelude::*;

use crate::Results;

const RS: RGBColor = RGBColor(31, 119, 180);
const V05: RGBColor = RGBColor(160, 160, 160);
const RAW: RGBColor = RGBColor(44, 160, 44);
const MIO: RGBColor = RGBColor(255, 127, 14);

/// One panel: a title, a unit and bars; `goal` draws a horizontal line.
struct Panel {
    title: &'static str,
    unit: &'static str,
    bars: Vec<(String, f64, RGBColor)>,
    goal: Option<f64>,
}

fn panels(r: &Results) -> Vec<Panel> {
    let mut fc: Vec<f64> = r.first_contact_ms.iter().map(|s| s.1).collect();
    fc.sort_by(f64::total_cmp);
    let fc_median = fc.get(fc.len() / 2).copied().unwrap_or(0.0);
    let bar = |label: &str, v: f64, c: RGBColor| (label.to_owned(), v, c);
    vec![
        Panel {
            title: "stream goodput (MB/s)",
            unit: "MB/s",
            bars: vec![
                bar("raw UDP", r.raw_udp_mbs, RAW),
                bar("raw+GSO", r.raw_udp_offload_mbs, RAW),
                bar("pilot-rs", *r.goodput_mbs.as_ref().unwrap_or(&0.0), RS),
                bar("mio", *r.mio.goodput_mbs.as_ref().unwrap_or(&0.0), MIO),
                bar("v0.5", 0.29, V05),
            ],
            goal: Some(r.raw_udp_mbs * 0.5),
        },
        Panel {
            title: "first contact, cold (ms)",
            unit: "ms",
            bars: vec![bar("pilot-rs", fc_median, RS), bar("v0.5", 12.7, V05)],
            goal: None,
        },
        Panel {
            title: "echo 64 B round trip (ms)",
            unit: "ms",
            bars: vec![
                bar("rs p50", r.echo_ms.0, RS),
                bar("rs p99", r.echo_ms.1, RS),
                bar("v0.5 p50", 0.34, V05),
                bar("v0.5 p99", 0.84, V05),
            ],
            goal: None,
        },
        Panel {
            title: "pub/sub events/s per subscriber",
            unit: "events/s",
            bars: vec![
                bar("1 sub", r.pubsub_1.per_subscriber, RS),
                bar(
                    "mio 1 sub",
                    *r.mio.events_per_s.as_ref().unwrap_or(&0.0),
                    MIO,
                ),
                bar("100 subs", r.pubsub_100.per_subscriber, RS),
                bar("v0.5 1 sub", 37.0, V05),
            ],
            goal: Some(200_000.0),
        },
        Panel {
            title: "publish to deliver at 10k/s (ms)",
            unit: "ms",
            bars: vec![
                bar("p50", r.latency_ms.0, RS),
                bar("p99", r.latency_ms.1, RS),
                bar("UDP p50", r.udp_latency_ms.0, RAW),
                bar("UDP p99", r.udp_latency_ms.1, RAW),
            ],
            goal: Some(1.0),
        },
        Panel {
            title: "daemon RSS (MiB)",
            unit: "MiB",
            bars: vec![
                bar("idle", r.idle_rss.total as f64 / 1024.0, RS),
                bar("idle anon", r.idle_rss.anon as f64 / 1024.0, RS),
                bar("100 clients", r.rss_100.total as f64 / 1024.0, RS),
                bar("v0.5 idle", 10.0, V05),
            ],
            goal: Some(4e6 / 1_048_576.0),
        },
    ]
}

/// Writes the SVG to `path`.
pub(crate) fn write(path: &Path, r: &Results) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (1200, 720)).into_drawing_area();
    root.fill(&WHITE)?;
    let (title, body) = root.split_vertically(40);
    title.titled(
        &format!(
            "pilot-rs on loopback (load {}); red line: goal",
            r.load_before
        ),
        ("sans-serif", 20),
    )?;
    for (area, panel) in body.split_evenly((2, 3)).iter().zip(panels(r)) {
        draw_panel(area, &panel)?;
    }
    root.present()?;
    Ok(())
}

fn draw_panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    p: &Panel,
) -> Result<(), Box<dyn std::error::Error>>
where
    DB::ErrorType: 'static,
{
    let top = p
        .bars
        .iter()
        .map(|b| b.1)
        .chain(p.goal)
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    let top = if top > 0.0 { top * 1.15 } else { 1.0 };
    let n = p.bars.len();
    let mut chart = ChartBuilder::on(area)
        .caption(p.title, ("sans-serif", 16))
        .margin(12)
        .x_label_area_size(28)
        .y_label_area_size(60)
        .build_cartesian_2d((0..n.max(2) - 1).into_segmented(), 0.0..top)?;
    let labels: Vec<String> = p.bars.iter().map(|b| b.0.clone()).collect();
    chart
        .configure_mesh()
        .disable_x_mesh()
        .y_desc(p.unit)
        .y_label_formatter(&|v| compact(*v))
        .x_label_formatter(&|x| match x {
            SegmentValue::CenterOf(i) => labels.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        })
        .draw()?;
    chart.draw_series(p.bars.iter().enumerate().map(|(i, (_, v, c))| {
        let v = if v.is_finite() { *v } else { 0.0 };
        let mut r = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), v),
            ],
            c.filled(),
        );
        r.set_margin(0, 0, 10, 10);
        r
    }))?;
    if let Some(g) = p.goal {
        let line = vec![(SegmentValue::Exact(0), g), (SegmentValue::Exact(n), g)];
        chart.draw_series(std::iter::once(PathElement::new(line, RED.stroke_width(2))))?;
    }
    Ok(())
}

/// Axis numbers short enough for the label area: `400k`, `12.5`, `0.25`.
fn compact(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{:.0}k", v / 1000.0)
    } else if v >= 10.0 {
        format!("{v:.0}")
    } else {
        format!("{v:.2}")
    }
}
