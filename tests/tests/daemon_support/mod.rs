//! Shared helpers for the real-process daemon tests: a node in a temp state directory, started
//! and stopped through `pilotctl`, and line readers with deadlines (never fixed sleeps).
//!
//! The tests run the `pilotctl` binary from the target directory; `cargo test --workspace`
//! builds it (pilot-tokio has integration tests). With `-p pilot-tests` alone, run
//! `cargo build -p pilot-tokio` first.

#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// Upper bound for anything a test waits for.
pub const WAIT: Duration = Duration::from_secs(20);

/// The `pilotctl` binary under test.
pub fn pilotctl_path() -> PathBuf {
    let path = assert_cmd::cargo::cargo_bin("pilotctl");
    assert!(
        path.is_file(),
        "pilotctl not built at {}: run `cargo build -p pilot-tokio` or `cargo test --workspace`",
        path.display()
    );
    path
}

/// One node: a temp state directory and the daemon started in it.
pub struct TestNode {
    pub home: tempfile::TempDir,
    pub pid: Option<u32>,
}

impl TestNode {
    /// A node with an empty state directory (daemon not started).
    pub fn new() -> TestNode {
        TestNode {
            home: tempfile::tempdir().expect("tempdir"),
            pid: None,
        }
    }

    pub fn dir(&self) -> &Path {
        self.home.path()
    }

    /// `pilotctl --home <dir>` with the environment cleared of PILOT_* settings.
    pub fn cmd(&self) -> Command {
        let mut cmd = Command::new(pilotctl_path());
        for (key, _) in std::env::vars() {
            if key.starts_with("PILOT_") {
                cmd.env_remove(key);
            }
        }
        cmd.arg("--home").arg(self.dir());
        cmd
    }

    /// Runs `pilotctl <args>` to completion (bounded by the commands' own timeouts).
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd()
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("run pilotctl")
    }

    /// Runs a `--json` command that must succeed and returns its `data`.
    pub fn json_ok(&self, args: &[&str]) -> Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        assert!(
            out.status.success(),
            "pilotctl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("stdout is one JSON envelope");
        assert_eq!(v["status"], "ok");
        v["data"].clone()
    }

    /// `daemon start` (embedded rendezvous); returns the start data.
    pub fn start(&mut self) -> Value {
        let data = self.json_ok(&["daemon", "start", "--wait", "20s"]);
        self.pid = data["pid"].as_u64().map(|p| p as u32);
        data
    }

    /// `daemon stop`, asserting success.
    pub fn stop(&mut self) {
        self.json_ok(&["daemon", "stop"]);
        self.pid = None;
    }

    /// Spawns a long-running `pilotctl` (subscribe, listen, recv) with piped output.
    pub fn spawn(&self, args: &[&str]) -> Streamed {
        let mut child = self
            .cmd()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn pilotctl");
        let stdout = lines(child.stdout.take().expect("stdout"));
        let stderr = lines(child.stderr.take().expect("stderr"));
        Streamed {
            child,
            stdout,
            stderr,
        }
    }
}

impl Drop for TestNode {
    fn drop(&mut self) {
        let Some(pid) = self.pid else { return };
        let _ = self.run(&["daemon", "stop"]);
        if Path::new(&format!("/proc/{pid}")).exists() && is_daemon(pid) {
            kill(pid, "KILL");
        }
    }
}

/// Whether `pid` runs `pilotctl daemon run` (so tests only ever signal their own daemons).
pub fn is_daemon(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|c| {
            c.split(|b| *b == 0)
                .collect::<Vec<_>>()
                .windows(2)
                .any(|w| w[0] == b"daemon" && w[1] == b"run")
        })
        .unwrap_or(false)
}

/// Sends a signal to one PID this test started.
pub fn kill(pid: u32, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(pid.to_string())
        .status();
    assert!(status.is_ok(), "kill -{signal} {pid}");
}

/// Waits (bounded) until `pid` has exited.
pub fn wait_gone(pid: u32) {
    let deadline = Instant::now() + WAIT;
    while Path::new(&format!("/proc/{pid}")).exists() {
        let zombie = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .map(|s| s.rsplit_once(") ").is_some_and(|(_, r)| r.starts_with('Z')))
            .unwrap_or(true);
        if zombie {
            return;
        }
        assert!(Instant::now() < deadline, "pid {pid} did not exit");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running child with its output lines arriving on channels.
pub struct Streamed {
    pub child: Child,
    pub stdout: mpsc::Receiver<String>,
    pub stderr: mpsc::Receiver<String>,
}

impl Streamed {
    /// The next stdout line, or panic after [`WAIT`].
    pub fn next_stdout(&self) -> String {
        self.stdout
            .recv_timeout(WAIT)
            .expect("a stdout line before the deadline")
    }

    /// Waits for a stderr line containing `needle`.
    pub fn wait_stderr(&self, needle: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self
                .stderr
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no stderr line with {needle:?}"));
            if line.contains(needle) {
                return;
            }
        }
    }

    /// Waits (bounded) for exit.
    pub fn wait_exit(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return status;
            }
            assert!(Instant::now() < deadline, "child did not exit");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Streamed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn lines(reader: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(reader).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// A standalone `pilotctl rendezvous` (registry and beacon) on loopback; the process is
/// killed when `proc` drops.
pub struct Rendezvous {
    pub proc: Streamed,
    pub registry: String,
    pub beacon: String,
    pub dir: tempfile::TempDir,
}

impl Rendezvous {
    /// Starts on ephemeral ports with a fresh state directory and `extra` flags.
    pub fn start(extra: &[&str]) -> Rendezvous {
        let dir = tempfile::tempdir().expect("tempdir");
        Rendezvous::start_at(dir, "127.0.0.1:0", "127.0.0.1:0", extra)
    }

    /// Starts with `dir` as its state directory on the given addresses.
    pub fn start_at(dir: tempfile::TempDir, registry: &str, beacon: &str, extra: &[&str]) -> Self {
        let state = dir.path().to_str().expect("utf-8 path").to_owned();
        let mut args = vec!["--json", "rendezvous", "--registry-listen", registry];
        args.extend(["--beacon-listen", beacon, "--state-dir", &state]);
        args.extend_from_slice(extra);
        let proc = TestNode::new().spawn(&args);
        let line: Value =
            serde_json::from_str(&proc.next_stdout()).expect("rendezvous prints its addresses");
        let field = |name: &str| line["data"][name].as_str().expect(name).to_owned();
        Rendezvous {
            registry: field("registry"),
            beacon: field("beacon"),
            proc,
            dir,
        }
    }
}

/// `daemon start` against `registry` on a loopback tunnel port, with `extra` flags; records
/// the PID for cleanup and returns the start data (`address`, `node_id`, ...).
pub fn start_with_registry(node: &mut TestNode, registry: &str, extra: &[&str]) -> Value {
    let mut args = vec!["daemon", "start", "--registry", registry];
    args.extend(["--listen", "127.0.0.1:0", "--wait", "20s"]);
    args.extend_from_slice(extra);
    let data = node.json_ok(&args);
    node.pid = data["pid"].as_u64().map(|p| p as u32);
    data
}
