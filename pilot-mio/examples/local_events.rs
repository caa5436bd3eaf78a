//! Pub/sub throughput on a node's own broker, the way the perf table's mio column measures it:
//! a publisher and one subscriber in the node's thread, lock-step batches of 500 events of
//! 100 bytes (publish, wait for the broker's acks, take the batch), for up to 3 s.
//!
//! ```text
//! pilotctl rendezvous --registry-listen 127.0.0.1:9000 --beacon-listen 127.0.0.1:9001 &
//! cargo run --release -p pilot-mio --example local_events -- 127.0.0.1:9000
//! ```

use std::time::{Duration, Instant};

use pilot_mio::{MioConfig, MioNode};

/// Upper bound for one blocking call.
const WAIT: Duration = Duration::from_secs(20);

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let registry = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:9000".into());
    let secs: u64 = std::env::args().nth(2).map_or(Ok(3), |s| s.parse())?;
    let mut config = MioConfig::new(registry.parse()?);
    config.listen = "127.0.0.1:0".parse()?;
    config.public = true;
    let node = MioNode::new(config)?;
    let me = node.wait_registered(WAIT)?;
    let mut sub = node.subscribe("perf.*", WAIT)?;
    let mut publisher = node.publisher(me, WAIT)?;
    let payload = [7u8; 100];
    let start = Instant::now();
    let (mut published, mut got) = (0u64, 0u64);
    while start.elapsed() < Duration::from_secs(secs) {
        for _ in 0..500 {
            publisher.publish("perf.e", &payload)?;
        }
        published += 500;
        publisher.flush(WAIT)?;
        while got < published {
            sub.next_event(WAIT)?;
            got += 1;
        }
    }
    let rate = got as f64 / start.elapsed().as_secs_f64();
    println!("{got} events, {rate:.0} events/s, {} missed", sub.missed());
    Ok(())
}
