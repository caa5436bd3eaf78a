//! Bad input: malformed and oversized local-socket frames, an unknown command, a missing daemon
//! and bad address text each get a clear error, and the daemon keeps serving other clients (and
//! the same session).

mod daemon_support;

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;

use daemon_support::TestNode;
use serde_json::Value;

/// A raw IPC connection with bounded reads.
struct Raw(UnixStream);

impl Raw {
    fn connect(node: &TestNode) -> Raw {
        let s = UnixStream::connect(node.dir().join("pilot.sock")).expect("connect");
        s.set_read_timeout(Some(daemon_support::WAIT))
            .expect("timeout");
        Raw(s)
    }

    fn send(&mut self, body: &[u8]) {
        self.0
            .write_all(&(body.len() as u32).to_be_bytes())
            .expect("write len");
        self.0.write_all(body).expect("write body");
    }

    fn recv(&mut self) -> Vec<u8> {
        let mut len = [0u8; 4];
        self.0.read_exact(&mut len).expect("reply length");
        let mut body = vec![0u8; u32::from_be_bytes(len) as usize];
        self.0.read_exact(&mut body).expect("reply body");
        body
    }

    fn error_text(&mut self) -> String {
        let body = self.recv();
        assert_eq!(body[0], 0x0A, "expected an Error reply, got {body:?}");
        String::from_utf8_lossy(&body[3..]).into_owned()
    }

    fn info(&mut self) -> Value {
        self.send(&[0x0D]);
        let body = self.recv();
        assert_eq!(body[0], 0x0E, "expected InfoOK");
        serde_json::from_slice(&body[1..]).expect("info json")
    }
}

#[test]
fn bad_frames_get_errors_and_the_session_keeps_working() {
    let mut node = TestNode::new();
    node.start();
    let mut raw = Raw::connect(&node);
    let mut other = Raw::connect(&node);

    raw.send(&[0x7F]);
    assert_eq!(raw.error_text(), "unknown command: 0x7F");

    raw.send(&[0x01, 0x00]);
    assert!(
        raw.error_text().contains("truncated bind"),
        "truncated Bind is named"
    );

    raw.send(&[0x0F, 0x09]);
    assert!(raw.error_text().contains("unknown handshake sub-command"));

    // 2 MiB body: over the 1 MiB limit. v0.5 tears the session down; we answer and carry on.
    let huge = vec![0xA5u8; 2 << 20];
    raw.send(&huge);
    assert!(raw.error_text().contains("message too large"));

    assert!(
        raw.info()["address"]
            .as_str()
            .is_some_and(|a| !a.is_empty())
    );
    assert!(other.info()["node_id"].as_u64().is_some());
    node.stop();
}

#[test]
fn garbage_then_disconnect_does_not_hurt_other_clients() {
    let mut node = TestNode::new();
    node.start();
    {
        let mut raw = Raw::connect(&node);
        raw.0
            .write_all(&[0xFF, 0xFF, 0xFF])
            .expect("write partial length");
    }
    let mut raw = Raw::connect(&node);
    raw.send(&[0x06, 0, 0, 0, 99, b'x']);
    let mut fresh = Raw::connect(&node);
    assert!(fresh.info()["node_id"].as_u64().is_some());
    // The Send to an unknown connection errors on its own session only.
    assert_eq!(raw.error_text(), "connection 99 not found");
    node.stop();
}

#[test]
fn missing_daemon_is_not_running_with_a_hint() {
    let node = TestNode::new();
    let out = node.run(&["info"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("daemon is not running") && err.contains("pilotctl daemon start"),
        "{err}"
    );

    let out = node.run(&["--json", "info"]);
    assert_eq!(out.status.code(), Some(3));
    let v: Value = serde_json::from_slice(&out.stderr).expect("json error on stderr");
    assert_eq!(v["status"], "error");
    assert_eq!(v["code"], "not_running");
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_address_text_is_an_invalid_argument() {
    let mut node = TestNode::new();
    node.start();
    let out = node.run(&["--json", "ping", "1:0000.0000.0001", "--count", "1"]);
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stderr).expect("json error");
    assert_eq!(v["code"], "invalid_argument");
    assert!(
        v["message"]
            .as_str()
            .is_some_and(|m| m.contains("network mismatch")),
        "{v}"
    );

    let out = node.run(&["send", "0:zzzz.0000.0001", "80", "--data", "x"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid address"));
    // The daemon still serves.
    assert!(node.json_ok(&["info"])["node_id"].as_u64().is_some());
    node.stop();
}

#[test]
fn slow_or_failing_requests_do_not_block_the_session() {
    let mut node = TestNode::new();
    node.start();
    let mut raw = Raw::connect(&node);
    // Dial a port nobody listens on, then Info: both answered, in request order (v0.5 clients
    // match replies FIFO), and the failure reaches the dial.
    raw.send(&[0x03, 0, 0, 0, 0, 0, 1, 0x27, 0x0F]);
    raw.send(&[0x0D]);
    assert_eq!(raw.error_text(), "connection refused");
    assert_eq!(raw.recv()[0], 0x0E);
    node.stop();
}
