//! Virtual ports: listeners, per-port connection counts and ephemeral port allocation.
//!
//! Ephemeral ports are drawn from 49152–65535 only. The allocator starts at a random port of
//! that range and walks forward, wrapping back to 49152 (never past 65535 into the reserved or
//! registered ranges, which v0.5's 16-bit counter overflows into).

use std::collections::BTreeMap;

use crate::rng::Rng;
use crate::wire::addr::{EPHEMERAL_PORTS, FIRST_EPHEMERAL_PORT};

/// One listening port.
#[derive(Debug, Default)]
pub(crate) struct Listener {
    /// Connections in SYN_RECEIVED on this port.
    pub(crate) half_open: usize,
}

/// Listeners and port usage of one transport.
#[derive(Debug, Default)]
pub(crate) struct Ports {
    listeners: BTreeMap<u16, Listener>,
    /// Connections per local port.
    in_use: BTreeMap<u16, usize>,
}

impl Ports {
    /// Starts listening; false if already listening.
    pub(crate) fn listen(&mut self, port: u16) -> bool {
        if self.listeners.contains_key(&port) {
            return false;
        }
        self.listeners.insert(port, Listener::default());
        true
    }

    /// Stops listening; existing connections are unaffected.
    pub(crate) fn unlisten(&mut self, port: u16) -> bool {
        self.listeners.remove(&port).is_some()
    }

    /// The listener on `port`.
    pub(crate) fn listener(&mut self, port: u16) -> Option<&mut Listener> {
        self.listeners.get_mut(&port)
    }

    /// Connections using `port` locally.
    pub(crate) fn count(&self, port: u16) -> usize {
        self.in_use.get(&port).copied().unwrap_or(0)
    }

    /// Records a connection on `port`.
    pub(crate) fn add(&mut self, port: u16) {
        *self.in_use.entry(port).or_default() += 1;
    }

    /// Forgets a connection on `port`.
    pub(crate) fn remove(&mut self, port: u16) {
        if let Some(count) = self.in_use.get_mut(&port) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                self.in_use.remove(&port);
            }
        }
    }

    /// A free ephemeral port (no listener, no connection), or `None` if all are taken.
    pub(crate) fn ephemeral(&self, rng: &mut Rng) -> Option<u16> {
        let span = u32::from(*EPHEMERAL_PORTS.end() - FIRST_EPHEMERAL_PORT) + 1;
        // `below(span)` is under 16,384, so it fits in u32.
        let start = rng.below(u64::from(span)) as u32;
        (0..span).find_map(|step| {
            // `(start + step) % span` < 16,384, so the sum stays within 49152..=65535.
            let port = FIRST_EPHEMERAL_PORT + ((start + step) % span) as u16;
            self.is_free(port).then_some(port)
        })
    }

    fn is_free(&self, port: u16) -> bool {
        !self.listeners.contains_key(&port) && self.count(port) == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ephemeral_ports_stay_in_range_until_exhausted() {
        let mut rng = Rng::from_seed([3; 32]);
        let mut ports = Ports::default();
        for _ in 0..200 {
            let port = ports.ephemeral(&mut rng).expect("a port is free");
            assert!(EPHEMERAL_PORTS.contains(&port));
            ports.add(port);
        }
        for port in EPHEMERAL_PORTS {
            if ports.count(port) == 0 && port != 65535 {
                ports.add(port);
            }
        }
        assert_eq!(ports.ephemeral(&mut rng), Some(65535));
        ports.add(65535);
        assert_eq!(ports.ephemeral(&mut rng), None);
    }
}
