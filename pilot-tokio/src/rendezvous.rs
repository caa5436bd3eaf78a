//! The rendezvous: a registry (TCP, v0.5 length-prefixed JSON) and a beacon (UDP) served on
//! configured addresses. The daemon embeds one on loopback when no registry is configured;
//! `pilotctl rendezvous` runs one on its own.
//!
//! The registry's decisions live in [`RegistryCore`] (request JSON in, reply JSON out); its
//! state (key → node id, hostnames) is saved atomically after every change, so a restart keeps
//! every node's address and a kill at any moment leaves a whole file.
//!
//! # Limitations
//!
//! - `RegistryCore` is a stand-in covering `register`, `heartbeat`, `lookup`,
//!   `resolve_hostname`, `set_hostname` and `deregister`, until the registry server state
//!   machine from `pilot_proto::registry` is merged. It does not check signatures.
//! - The beacon socket is bound but answers nothing until `pilot_proto::beacon` is merged.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

use crate::shim::addr::Addr;

/// Largest registry frame accepted.
const MAX_FRAME: usize = 1 << 20;
/// A registry connection idle this long is closed.
const IDLE: Duration = Duration::from_secs(300);

/// Where the rendezvous listens and keeps state.
#[derive(Debug, Clone)]
pub struct RendezvousConfig {
    /// Registry TCP listen address.
    pub registry: SocketAddr,
    /// Beacon UDP listen address.
    pub beacon: SocketAddr,
    /// Directory for `registry.json`.
    pub state_dir: PathBuf,
}

/// A running rendezvous.
#[derive(Debug)]
pub struct Rendezvous {
    /// The bound registry address.
    pub registry: SocketAddr,
    /// The bound beacon address.
    pub beacon: SocketAddr,
}

/// Binds both sockets, loads state and spawns the servers on the current runtime.
pub async fn start(config: &RendezvousConfig) -> Result<Rendezvous, std::io::Error> {
    std::fs::create_dir_all(&config.state_dir)?;
    let core = RegistryCore::load(&config.state_dir.join("registry.json"))?;
    let tcp = TcpListener::bind(config.registry).await?;
    let udp = UdpSocket::bind(config.beacon).await?;
    let rv = Rendezvous {
        registry: tcp.local_addr()?,
        beacon: udp.local_addr()?,
    };
    tracing::info!(registry = %rv.registry, beacon = %rv.beacon, "rendezvous listening");
    let core = Arc::new(Mutex::new(core));
    tokio::spawn(accept_loop(tcp, core));
    tokio::spawn(beacon_loop(udp));
    Ok(rv)
}

async fn accept_loop(listener: TcpListener, core: Arc<Mutex<RegistryCore>>) {
    loop {
        match listener.accept().await {
            Ok((stream, peer)) => {
                tokio::spawn(serve_conn(stream, peer, core.clone()));
            }
            Err(e) => {
                tracing::warn!(error = %e, "registry accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn serve_conn(mut stream: TcpStream, peer: SocketAddr, core: Arc<Mutex<RegistryCore>>) {
    loop {
        let mut len = [0u8; 4];
        match tokio::time::timeout(IDLE, stream.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => return,
        }
        let len = u32::from_be_bytes(len) as usize;
        if len > MAX_FRAME {
            return;
        }
        let mut body = vec![0u8; len];
        if stream.read_exact(&mut body).await.is_err() {
            return;
        }
        let request = serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null);
        let reply = match core.lock() {
            Ok(mut core) => core.handle(peer, &request),
            Err(_) => return,
        };
        let bytes = serde_json::to_vec(&reply).unwrap_or_default();
        let mut frame = (bytes.len() as u32).to_be_bytes().to_vec();
        frame.extend_from_slice(&bytes);
        if stream.write_all(&frame).await.is_err() {
            return;
        }
    }
}

async fn beacon_loop(udp: UdpSocket) {
    let mut buf = vec![0u8; 2048];
    while let Ok((n, from)) = udp.recv_from(&mut buf).await {
        tracing::debug!(%from, len = n, "beacon datagram ignored (beacon not merged yet)");
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Saved {
    next_node: u32,
    keys: BTreeMap<String, u32>,
    hostnames: BTreeMap<String, u32>,
}

/// The registry's decisions (stand-in; see the module's limitations).
#[derive(Debug)]
pub struct RegistryCore {
    path: PathBuf,
    saved: Saved,
    endpoints: BTreeMap<u32, SocketAddr>,
}

impl RegistryCore {
    /// Loads state from `path` (missing file: empty registry).
    pub fn load(path: &Path) -> Result<RegistryCore, std::io::Error> {
        let saved = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(std::io::Error::other)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Saved {
                next_node: 1,
                ..Saved::default()
            },
            Err(e) => return Err(e),
        };
        Ok(RegistryCore {
            path: path.to_owned(),
            saved,
            endpoints: BTreeMap::new(),
        })
    }

    /// Answers one request.
    pub fn handle(&mut self, peer: SocketAddr, request: &Value) -> Value {
        let kind = request.get("type").and_then(Value::as_str).unwrap_or("");
        let reply = match kind {
            "register" => self.register(peer, request),
            "heartbeat" => Some(json!({"time": 0})),
            "lookup" => self.lookup(request),
            "resolve_hostname" => self.resolve_hostname(request),
            "set_hostname" => self.set_hostname(request),
            "deregister" => Some(json!({})),
            _ => None,
        };
        match reply {
            Some(mut v) => {
                v["type"] = format!("{kind}_ok").into();
                v
            }
            None => json!({"type": "error", "error": "request failed"}),
        }
    }

    fn register(&mut self, peer: SocketAddr, request: &Value) -> Option<Value> {
        let key = request.get("public_key")?.as_str()?.to_owned();
        let id = match self.saved.keys.get(&key) {
            Some(id) => *id,
            None => {
                let id = self.saved.next_node.max(1);
                self.saved.next_node = id.checked_add(1)?;
                self.saved.keys.insert(key.clone(), id);
                self.save();
                id
            }
        };
        self.endpoints.insert(id, peer);
        let mut reply = json!({"node_id": id, "network_id": 0, "address": Addr::new(0, id).to_string(), "public_key": key});
        if let Some(name) = request.get("hostname").and_then(Value::as_str)
            && self.claim(id, name)
        {
            reply["hostname"] = name.into();
        }
        Some(reply)
    }

    fn lookup(&self, request: &Value) -> Option<Value> {
        let id = u32::try_from(request.get("node_id")?.as_u64()?).ok()?;
        self.saved.keys.values().any(|v| *v == id).then(|| {
            json!({"node_id": id, "address": Addr::new(0, id).to_string(), "networks": [0], "public": false})
        })
    }

    fn resolve_hostname(&self, request: &Value) -> Option<Value> {
        let name = request.get("hostname")?.as_str()?;
        let id = *self.saved.hostnames.get(name)?;
        Some(
            json!({"node_id": id, "address": Addr::new(0, id).to_string(), "public": false, "hostname": name}),
        )
    }

    fn set_hostname(&mut self, request: &Value) -> Option<Value> {
        let id = u32::try_from(request.get("node_id")?.as_u64()?).ok()?;
        let name = request.get("hostname")?.as_str()?;
        if name.is_empty() {
            self.saved.hostnames.retain(|_, v| *v != id);
            self.save();
        } else if !self.claim(id, name) {
            return None;
        }
        Some(json!({"node_id": id, "hostname": name}))
    }

    /// Claims `name` for `id` if it is valid and free (or already `id`'s).
    fn claim(&mut self, id: u32, name: &str) -> bool {
        let valid = !name.is_empty()
            && name.len() <= 63
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if !valid
            || self
                .saved
                .hostnames
                .get(name)
                .is_some_and(|owner| *owner != id)
        {
            return false;
        }
        self.saved.hostnames.retain(|_, v| *v != id);
        self.saved.hostnames.insert(name.to_owned(), id);
        self.save();
        true
    }

    fn save(&self) {
        let bytes = serde_json::to_vec_pretty(&self.saved).unwrap_or_default();
        if let Err(e) = crate::identity_file::write_atomic(&self.path, &bytes) {
            tracing::warn!(error = %e, "could not save registry state");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_key_gets_the_same_id_after_reload() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("registry.json");
        let peer: SocketAddr = "127.0.0.1:5".parse().expect("addr");
        let req = json!({"type": "register", "public_key": "AAAA"});
        let first = RegistryCore::load(&path).expect("load").handle(peer, &req);
        let again = RegistryCore::load(&path)
            .expect("reload")
            .handle(peer, &req);
        assert_eq!(first["node_id"], 1);
        assert_eq!(again["node_id"], 1);
        assert_eq!(again["type"], "register_ok");
        let bad = RegistryCore::load(&path)
            .expect("load")
            .handle(peer, &json!({"type": "nope"}));
        assert_eq!(bad["type"], "error");
    }
}
