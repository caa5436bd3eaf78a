//! Stream behaviour through the seeded lossy link: bulk transfers under loss, closing, a
//! vanishing peer, a receiver that stops reading, and the "SACK" payload prefix.

mod transport_harness;

use std::time::Duration;

use pilot_proto::transport::{CloseReason, TransportConfig};
use transport_harness::{LinkConfig, Pair, bulk, payload, seed};

const TEN_MB: usize = 10 * 1024 * 1024;

fn loss_run(name: &str, loss: f64, limit: Duration) {
    let seed = seed(name, 0x5eed_0000 + (loss * 1000.0) as u64);
    let mut pair = Pair::new(seed, LinkConfig::hostile(loss), TransportConfig::default());
    let data = payload(seed, TEN_MB);
    let result = bulk(&mut pair, &data, limit, 2_000_000);
    let stats = pair.a.stats();
    println!(
        "{name}: {:?} virtual, {} segments, {} retransmitted, {} steps",
        result.elapsed, stats.segments_sent, stats.segments_retransmitted, pair.steps
    );
}

#[test]
fn ten_mb_no_loss() {
    loss_run("ten_mb_no_loss", 0.0, Duration::from_secs(20));
}

#[test]
fn ten_mb_one_percent_loss() {
    loss_run("ten_mb_one_percent_loss", 0.01, Duration::from_secs(60));
}

#[test]
fn ten_mb_five_percent_loss() {
    loss_run("ten_mb_five_percent_loss", 0.05, Duration::from_secs(150));
}

#[test]
fn ten_mb_twenty_percent_loss() {
    loss_run("ten_mb_twenty_percent_loss", 0.20, Duration::from_secs(600));
}
