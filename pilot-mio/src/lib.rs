//! A Pilot Protocol node embedded in a program without an async runtime: `pilot-proto`'s
//! [`Agent`](pilot_proto::agent::Agent) (registry client, beacon client, NAT traversal, trust
//! and the data-plane node) driven over mio in the caller's thread.
//!
//! # The loop
//!
//! [`MioNode::turn`] polls one mio `Poll` (the tunnel UDP socket, the registry TCP stream and
//! a waker) with the timeout the core asks for, receives datagrams until `WouldBlock`, feeds
//! registry bytes and due timers to the core, then drains the core: datagrams to the socket, in
//! runs with segmentation offload where the kernel has it (a send hitting `WouldBlock` is
//! queued and the socket re-registered `WRITABLE`), registry bytes
//! to the stream, events to the application state. The registry stream is reopened with the
//! core's back-off whenever it breaks. Design notes: `docs/design/mio.md`.
//!
//! Nothing runs between calls. Every blocking call of this crate turns the loop while it
//! waits: [`MioNode::run_until`], [`MioNode::run`], [`Stream`]'s `Read`/`Write`,
//! [`Listener::accept`], [`Subscription::next_event`], [`Publisher::flush`].
//! [`StopHandle::stop`] (from any thread)
//! makes the blocked call return [`MioError::Stopped`].
//!
//! A [`Subscription`] or [`Publisher`] on the node's own broker is an in-process client of
//! that broker (no loopback stream); on another node's broker it is a virtual stream to port
//! 1002. Both speak the same protocol with the same guarantees.
//!
//! ```no_run
//! use std::time::Duration;
//! use pilot_mio::{MioConfig, MioNode};
//!
//! # fn main() -> Result<(), pilot_mio::MioError> {
//! let node = MioNode::new(MioConfig::new("127.0.0.1:9000".parse().unwrap()))?;
//! let address = node.wait_registered(Duration::from_secs(10))?;
//! let mut sub = node.subscribe("tasks.*", Duration::from_secs(5))?;
//! node.publish("tasks.done", b"{\"id\":1}")?;
//! let event = sub.next_event(Duration::from_secs(5))?;
//! println!("{address}: [{}] {}", event.topic, String::from_utf8_lossy(&event.payload));
//! # Ok(()) }
//! ```
//!
//! # Limitations
//!
//! - Single-threaded: a [`MioNode`] and its handles are `!Send`; only [`StopHandle`] crosses
//!   threads. Use the tokio daemon for a multi-threaded program.
//! - Trust state is not persisted (see `driver`), and inbound port datagrams are not exposed.
//! - Dropped streams finish closing only while the node keeps turning.
//! - A broken broker connection is not resumed; subscribe again.
//! - At most 1024 datagrams wait for a full socket; more are dropped (the transport
//!   retransmits). A local broker link dropped inside another call of this crate stays open.

#![forbid(unsafe_code)]

mod config;
mod driver;
mod error;
mod identity;
mod link;
mod node;
mod pubsub;
mod stream;
mod udp;

pub use config::MioConfig;
pub use error::{MioError, Result};
pub use node::{MioNode, StopHandle};
pub use pubsub::{Event, Publisher, Subscription};
pub use stream::{Listener, Stream};

pub use pilot_proto::agent::AgentConfig;
pub use pilot_proto::wire::addr::{Addr, AddrPort};
