//! Configuration: flags, then environment (`PILOT_*`, handled by clap), then a JSON config file,
//! then defaults. This module owns the file format, the state directory layout and the
//! resolution of each setting.
//!
//! State directory (`--home`, `$PILOT_HOME`, default `~/.pilot`, created with mode 0700):
//! `config.json`, `identity.json`, `pilot.sock`, `pilot.pid`, `pilot.log`, `rendezvous/`.

use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Keys read from the config file (unknown keys are ignored, as in v0.5).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct FileConfig {
    /// IPC socket path.
    pub socket: Option<String>,
    /// Registry `host:port`; absent means the embedded rendezvous.
    pub registry: Option<String>,
    /// Beacon `host:port`.
    pub beacon: Option<String>,
    /// Beacon TCP `host:port` (fallback when UDP to the beacon is blocked).
    pub beacon_tcp: Option<String>,
    /// Outbound webhook URL set at start (v0.5 `-webhook`).
    pub webhook: Option<String>,
    /// Tunnel UDP listen address.
    pub listen: Option<String>,
    /// Hostname to claim.
    pub hostname: Option<String>,
    /// Identity file path.
    pub identity: Option<String>,
    /// Make the node public.
    pub public: Option<bool>,
    /// Log filter.
    pub log_level: Option<String>,
    /// `text` or `json`.
    pub log_format: Option<String>,
    /// Embedded rendezvous registry listen address (loopback).
    pub rendezvous_registry: Option<String>,
    /// Embedded rendezvous beacon listen address (loopback).
    pub rendezvous_beacon: Option<String>,
}

/// Why configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The config file is not a JSON object of strings.
    #[error("config file {path} is not valid: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// An address setting does not parse or resolve.
    #[error("invalid {what} address {text:?}: expected host:port")]
    Address {
        /// Which setting.
        what: &'static str,
        /// The text given.
        text: String,
    },
    /// The embedded rendezvous may only listen on loopback.
    #[error("the embedded rendezvous listens on loopback only, not {0}")]
    NotLoopback(SocketAddr),
}

/// `$HOME/.pilot`, or `./.pilot` without a home directory.
pub fn default_home() -> PathBuf {
    std::env::var_os("HOME").map_or_else(
        || PathBuf::from(".pilot"),
        |h| PathBuf::from(h).join(".pilot"),
    )
}

/// Paths inside the state directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The state directory.
    pub home: PathBuf,
    /// The IPC socket.
    pub socket: PathBuf,
    /// The daemon's PID file.
    pub pidfile: PathBuf,
    /// The background daemon's log.
    pub logfile: PathBuf,
    /// The identity file.
    pub identity: PathBuf,
}

impl Paths {
    /// Resolves paths; `socket` and `identity` come from flag/env, else the file, else the home.
    pub fn new(
        home: &Path,
        socket: Option<PathBuf>,
        identity: Option<PathBuf>,
        file: &FileConfig,
    ) -> Paths {
        let socket = socket.or_else(|| file.socket.as_ref().map(PathBuf::from));
        let identity = identity.or_else(|| file.identity.as_ref().map(PathBuf::from));
        Paths {
            home: home.to_owned(),
            socket: socket.unwrap_or_else(|| home.join("pilot.sock")),
            pidfile: home.join("pilot.pid"),
            logfile: home.join("pilot.log"),
            identity: identity.unwrap_or_else(|| home.join("identity.json")),
        }
    }
}

/// Reads the config file. A missing file is an empty config unless it was named explicitly.
pub fn load_file(path: &Path, explicit: bool) -> Result<FileConfig, ConfigError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| ConfigError::Parse {
            path: path.to_owned(),
            source,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => {
            Ok(FileConfig::default())
        }
        Err(source) => Err(ConfigError::Read {
            path: path.to_owned(),
            source,
        }),
    }
}

/// First of flag/env, then file.
pub fn pick(flag_or_env: Option<String>, file: &Option<String>) -> Option<String> {
    flag_or_env
        .or_else(|| file.clone())
        .filter(|s| !s.is_empty())
}

/// Parses (and resolves) `host:port`.
pub fn endpoint(what: &'static str, text: &str) -> Result<SocketAddr, ConfigError> {
    let fail = || ConfigError::Address {
        what,
        text: text.to_owned(),
    };
    text.to_socket_addrs()
        .map_err(|_| fail())?
        .next()
        .ok_or_else(fail)
}

/// Parses a loopback listen address for the embedded rendezvous.
pub fn loopback(what: &'static str, text: Option<&str>) -> Result<SocketAddr, ConfigError> {
    let addr = endpoint(what, text.unwrap_or("127.0.0.1:0"))?;
    if !addr.ip().is_loopback() {
        return Err(ConfigError::NotLoopback(addr));
    }
    Ok(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_beats_file_and_empty_means_unset() {
        let file = Some("127.0.0.1:9000".to_owned());
        assert_eq!(
            pick(Some("127.0.0.1:1".into()), &file).as_deref(),
            Some("127.0.0.1:1")
        );
        assert_eq!(pick(None, &file).as_deref(), Some("127.0.0.1:9000"));
        assert_eq!(pick(Some(String::new()), &None), None);
    }

    #[test]
    fn rendezvous_refuses_public_addresses() {
        assert!(loopback("registry", Some("0.0.0.0:9000")).is_err());
        assert!(loopback("registry", None).is_ok());
        assert!(endpoint("registry", "no-port").is_err());
    }
}
