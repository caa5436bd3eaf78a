//! The beacon stream: TCP to the beacon's port number, opened only when the agent finds the
//! beacon silent over UDP (`AgentEvent::ConnectBeaconStream`). It reuses the registry's
//! connection machinery (`RegistryLink`); the agent frames and unframes the datagrams.

use super::registry_io::RegistryIo;
use super::{Driver, clock};

impl Driver {
    /// The agent wants beacon traffic over TCP.
    pub(super) fn connect_beacon_stream(&mut self) {
        if self.beacon_link.has_target() {
            tracing::info!("the beacon is silent over UDP; trying it over TCP");
            self.beacon_link.request_connect(clock());
        } else {
            tracing::warn!("the beacon is silent over UDP and has no TCP address");
            self.agent.handle_beacon_stream_closed(clock());
        }
    }

    /// An event of the beacon stream's connection.
    pub(super) fn on_beacon_io(&mut self, io: RegistryIo) {
        let now = clock();
        let link = &mut self.beacon_link;
        match io {
            RegistryIo::Connected(g, writer) if link.is_current(g) => {
                tracing::info!("beacon traffic now goes over TCP");
                link.on_connected(writer);
                self.agent.handle_beacon_stream_connected(now);
            }
            RegistryIo::Bytes(g, bytes) if link.is_current(g) => {
                self.agent.handle_beacon_stream_bytes(now, &bytes);
            }
            RegistryIo::Closed(g) if link.is_current(g) => {
                tracing::info!("beacon stream closed; back to UDP");
                link.on_closed();
                self.agent.handle_beacon_stream_closed(now);
            }
            _ => {}
        }
    }

    /// Moves the agent's framed beacon bytes to the stream.
    pub(super) fn drain_beacon_stream(&mut self, out: &mut Vec<u8>) {
        out.clear();
        while let Some(len) = self.agent.poll_beacon_stream_bytes(out) {
            self.beacon_link.send(out[..len].to_vec());
            out.clear();
        }
    }
}
