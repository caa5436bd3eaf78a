//! A blocking agent: registers at a rendezvous, subscribes to a topic filter, publishes events
//! on a period and prints every event it receives, all in the main thread without an async
//! runtime. Ctrl-C or `--count` ends it.
//!
//! ```text
//! pilotctl rendezvous --registry-listen 127.0.0.1:9000 --beacon-listen 127.0.0.1:9001 &
//! cargo run -p pilot-mio --example blocking_agent -- --registry 127.0.0.1:9000 \
//!     --beacon 127.0.0.1:9001 --subscribe 'tasks.*' --publish tasks.heartbeat --count 3
//! ```
//!
//! With `--at <node>` it subscribes and publishes on another node's broker (a daemon's, say)
//! instead of its own.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use pilot_mio::{Addr, MioConfig, MioError, MioNode};

#[derive(Debug, Parser)]
#[command(about = "A blocking pilot agent over mio: subscribe, publish, print events")]
struct Args {
    /// Registry TCP address.
    #[arg(long, default_value = "127.0.0.1:9000")]
    registry: SocketAddr,
    /// Beacon UDP address (NAT traversal); without it the bound address is registered.
    #[arg(long)]
    beacon: Option<SocketAddr>,
    /// UDP address to bind.
    #[arg(long, default_value = "0.0.0.0:0")]
    listen: SocketAddr,
    /// Identity file (v0.5 format, created with mode 0600); none means a fresh identity.
    #[arg(long)]
    identity: Option<PathBuf>,
    /// Topic filter to subscribe to.
    #[arg(long, default_value = "tasks.*")]
    subscribe: String,
    /// Topic to publish on (nothing is published without it).
    #[arg(long)]
    publish: Option<String>,
    /// Seconds between publishes.
    #[arg(long, default_value_t = 1)]
    every: u64,
    /// Stop after printing this many events.
    #[arg(long)]
    count: Option<u64>,
    /// Use this node's broker instead of our own.
    #[arg(long)]
    at: Option<Addr>,
    /// Make the node public (resolvable and reachable by every node).
    #[arg(long)]
    public: bool,
}

fn main() -> Result<(), MioError> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let mut config = MioConfig::new(args.registry);
    config.beacon = args.beacon;
    config.listen = args.listen;
    config.identity = args.identity.clone();
    config.public = args.public;

    let node = MioNode::new(config)?;
    let own = node.wait_registered(Duration::from_secs(30))?;
    println!("registered as {own}");
    let broker = args.at.unwrap_or(own);
    let mut sub = node.subscribe_at(broker, &args.subscribe, Duration::from_secs(30))?;
    println!("subscribed to {:?} on {broker}", args.subscribe);
    run(&node, &mut sub, &args, broker, own)
}

fn run(
    node: &MioNode,
    sub: &mut pilot_mio::Subscription,
    args: &Args,
    broker: Addr,
    own: Addr,
) -> Result<(), MioError> {
    let period = Duration::from_secs(args.every.max(1));
    let mut next_publish = Instant::now();
    let mut printed = 0;
    let mut sent = 0u64;
    while args.count.is_none_or(|n| printed < n) {
        if let Some(topic) = &args.publish
            && Instant::now() >= next_publish
        {
            sent += 1;
            let payload = format!("{{\"from\":\"{own}\",\"n\":{sent}}}");
            if broker == own {
                node.publish(topic, payload.as_bytes())?;
            } else {
                node.publish_to(broker, topic, payload.as_bytes(), period * 5)?;
            }
            next_publish = Instant::now() + period;
        }
        let wait = match args.publish {
            Some(_) => next_publish.saturating_duration_since(Instant::now()),
            None => period,
        };
        match sub.next_event(wait.max(Duration::from_millis(10))) {
            Ok(event) => {
                printed += 1;
                let text = String::from_utf8_lossy(&event.payload);
                println!("[{}] {text}", event.topic);
            }
            Err(MioError::TimedOut) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
