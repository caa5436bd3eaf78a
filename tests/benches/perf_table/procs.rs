//! The processes the perf table starts: the optimised `pilotctl` binary, a standalone rendezvous
//! and `pilotctl daemon run` nodes, each in its own temp state directory. Every child is killed
//! by its own PID when its guard drops (also on panic); nothing else is ever signalled.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use pilot_tokio::{Addr, Client};

/// Upper bound for any start-up wait.
pub(crate) const START_WAIT: Duration = Duration::from_secs(30);

/// The workspace root (the parent of the `tests` crate).
fn workspace_root() -> PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// The optimised `pilotctl`: `PILOT_PERF_PILOTCTL` if set, otherwise built (or found up to
/// date) by `cargo build --profile bench -p pilot-tokio --bin pilotctl` and taken from
/// `target/release/`. The bench profile is the release profile without stripping, so this
/// build shares most compiled dependencies with `cargo bench` (a `--release` build did not).
pub(crate) fn pilotctl() -> PathBuf {
    if let Some(path) = std::env::var_os("PILOT_PERF_PILOTCTL") {
        return PathBuf::from(path);
    }
    let root = workspace_root();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    eprintln!("perf_table: cargo build --profile bench -p pilot-tokio --bin pilotctl");
    let status = Command::new(cargo)
        .args([
            "build",
            "--profile",
            "bench",
            "-p",
            "pilot-tokio",
            "--bin",
            "pilotctl",
        ])
        .current_dir(&root)
        .status();
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let path = target.join("release").join("pilotctl");
    assert!(
        path.is_file(),
        "no optimised pilotctl at {} (cargo build: {status:?})",
        path.display()
    );
    path
}

/// A child process killed (by its PID) and reaped when dropped.
#[derive(Debug)]
pub(crate) struct Guard {
    child: Child,
}

impl Guard {
    /// The child's PID.
    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A standalone rendezvous on ephemeral loopback ports.
#[derive(Debug)]
pub(crate) struct Rendezvous {
    _guard: Guard,
    /// Its registry address (`127.0.0.1:port`).
    pub(crate) registry: String,
    _dir: tempfile::TempDir,
}

impl Rendezvous {
    /// Starts one and waits (bounded) for it to print its addresses.
    pub(crate) fn start(exe: &Path) -> Rendezvous {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut child = Command::new(exe)
            .arg("--home")
            .arg(dir.path())
            .args(["--log-level", "warn", "--json", "rendezvous"])
            .args(["--registry-listen", "127.0.0.1:0"])
            .args(["--beacon-listen", "127.0.0.1:0"])
            .arg("--state-dir")
            .arg(dir.path().join("rv"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rendezvous");
        let stdout = child.stdout.take().expect("stdout");
        let guard = Guard { child };
        let line = first_line(stdout, START_WAIT).expect("rendezvous prints its addresses");
        let v: serde_json::Value = serde_json::from_str(&line).expect("json line");
        let registry = v["data"]["registry"].as_str().expect("registry").to_owned();
        Rendezvous {
            _guard: guard,
            registry,
            _dir: dir,
        }
    }
}

/// Reads the first line of `reader` within `wait` (the reader thread ends with the pipe).
fn first_line(reader: impl std::io::Read + Send + 'static, wait: Duration) -> Option<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(reader).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    rx.recv_timeout(wait).ok()
}

/// One `pilotctl daemon run` node registered at a rendezvous.
#[derive(Debug)]
pub(crate) struct Daemon {
    guard: Guard,
    dir: tempfile::TempDir,
    /// Its virtual address.
    pub(crate) addr: Addr,
}

impl Daemon {
    /// Spawns the daemon (no wait).
    pub(crate) fn spawn(exe: &Path, registry: &str) -> (Guard, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let child = Command::new(exe)
            .arg("--home")
            .arg(dir.path())
            .args(["--log-level", "warn", "daemon", "run", "--public"])
            .args(["--registry", registry, "--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn daemon");
        (Guard { child }, dir)
    }

    /// Waits (bounded) until the spawned daemon answers with an address.
    pub(crate) async fn ready(guard: Guard, dir: tempfile::TempDir) -> Daemon {
        let socket = dir.path().join("pilot.sock");
        let deadline = Instant::now() + START_WAIT;
        loop {
            if let Ok(client) = Client::connect(&socket).await
                && let Ok(addr) = client.address().await
            {
                return Daemon { guard, dir, addr };
            }
            assert!(Instant::now() < deadline, "daemon did not come up in time");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// A new client connection to this daemon.
    pub(crate) async fn client(&self) -> Client {
        Client::connect(self.dir.path().join("pilot.sock"))
            .await
            .expect("client connects")
    }

    /// The daemon's IPC socket.
    pub(crate) fn socket(&self) -> PathBuf {
        self.dir.path().join("pilot.sock")
    }

    /// The daemon's PID.
    pub(crate) fn pid(&self) -> u32 {
        self.guard.pid()
    }

    /// `VmRSS`, `RssAnon` and `RssFile` in KiB from `/proc/<pid>/status` (0 when unreadable).
    pub(crate) fn rss_kib(&self) -> Rss {
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0)
        };
        Rss {
            total: field("VmRSS:"),
            anon: field("RssAnon:"),
            file: field("RssFile:"),
        }
    }
}

/// A process's resident memory in KiB.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rss {
    /// All resident pages (`VmRSS`).
    pub(crate) total: u64,
    /// Anonymous pages: heap, stacks (`RssAnon`).
    pub(crate) anon: u64,
    /// File-backed pages: the mapped binary and shared libraries (`RssFile`).
    pub(crate) file: u64,
}
