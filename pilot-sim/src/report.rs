//! Reports of a run for people: the readable timeline and the pcap files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::queue::format_elapsed;
use crate::sim::Iface;
use crate::sim::Sim;
use crate::trace::Place;
use crate::trace::TraceKind;
use crate::{HostId, NatId};

impl Sim {
    /// Writes one pcap file per host (`<name>.pcap`) and per NAT public side
    /// (`nat-<name>.pcap`) into `dir`, creating it. Returns the paths written.
    ///
    /// # Errors
    ///
    /// Returns any I/O error.
    pub fn write_pcaps(&self, dir: &Path) -> std::io::Result<Vec<PathBuf>> {
        std::fs::create_dir_all(dir)?;
        let hosts = self
            .hosts
            .iter()
            .map(|h| (file_name(&h.name, ""), &h.capture));
        let nats = self
            .nats
            .iter()
            .map(|n| (file_name(&n.name, "nat-"), &n.capture));
        let mut written = Vec::new();
        for (name, capture) in hosts.chain(nats) {
            let Some(capture) = capture else { continue };
            let path = dir.join(format!("{name}.pcap"));
            let mut file = std::io::BufWriter::new(std::fs::File::create(&path)?);
            capture.write_pcap(&mut file)?;
            std::io::Write::flush(&mut file)?;
            written.push(path);
        }
        Ok(written)
    }

    /// Renders the recorded trace as a readable timeline, one event per line.
    pub fn timeline(&self) -> String {
        let mut out = String::new();
        for record in self.trace.records() {
            let class = record
                .class
                .map(|label| format!(" [{label}]"))
                .unwrap_or_default();
            let line = self.describe(&record.kind);
            let _ = writeln!(out, "{} {line}{class}", format_elapsed(record.at));
        }
        out
    }

    fn describe(&self, kind: &TraceKind) -> String {
        let host = |id: &HostId| self.host_name(*id).to_owned();
        match kind {
            TraceKind::Sent {
                host: h,
                src,
                dst,
                len,
            } => {
                format!("{:<8} send    {src} -> {dst} len={len}", host(h))
            }
            TraceKind::Delivered {
                host: h,
                src,
                dst,
                len,
            } => {
                format!("{:<8} recv    {src} -> {dst} len={len}", host(h))
            }
            TraceKind::Timer { host: h } => format!("{:<8} timer", host(h)),
            TraceKind::Crashed { host: h } => format!("{:<8} CRASH", host(h)),
            TraceKind::Started { host: h, boot } => format!("{:<8} start   boot {boot}", host(h)),
            TraceKind::Stream {
                host: h,
                id,
                what,
                len,
            } => {
                format!("{:<8} stream  {id} {what} len={len}", host(h))
            }
            TraceKind::Note(text) => format!("{:<8} {text}", "*"),
            other => self.describe_network(other),
        }
    }

    /// Returns the name of the place (for the actor column) and any detail to add.
    fn place_name(&self, place: Place) -> (String, String) {
        match place {
            Place::Host(host) => (self.host_name(host).to_owned(), String::new()),
            Place::Nat(nat) => (self.nat_name(nat).to_owned(), String::new()),
            Place::Router(net) => match net.nat() {
                Some(nat) => (format!("{}-lan", self.nat_name(nat)), String::new()),
                None => ("internet".to_owned(), String::new()),
            },
            Place::Link(Iface::Host(host), direction) => (
                self.host_name(host).to_owned(),
                format!(", {direction:?} link"),
            ),
            Place::Link(Iface::Nat(nat), direction) => (
                self.nat_name(nat).to_owned(),
                format!(", {direction:?} link"),
            ),
        }
    }

    fn nat_name(&self, nat: NatId) -> &str {
        self.nats
            .get(nat.0)
            .map_or("?", |state| state.name.as_str())
    }

    /// Describes what happened to a packet inside the network (no host acted).
    fn describe_network(&self, kind: &TraceKind) -> String {
        match kind {
            TraceKind::Dropped {
                reason,
                place,
                src,
                dst,
                len,
            } => {
                let (actor, detail) = self.place_name(*place);
                format!("{actor:<8} DROP    {src} -> {dst} len={len} ({reason}{detail})")
            }
            TraceKind::Mapped {
                nat,
                internal,
                external,
                remote,
            } => {
                let name = self
                    .nats
                    .get(nat.0)
                    .map_or("?", |state| state.name.as_str());
                format!("{name:<8} map     {internal} => {external} (to {remote})")
            }
            TraceKind::Faulted {
                rule,
                action,
                src,
                dst,
            } => {
                format!("{:<8} fault   {src} -> {dst} rule {rule} {action}", "-")
            }
            other => format!("{other:?}"),
        }
    }
}

fn file_name(name: &str, prefix: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("{prefix}{clean}")
}
