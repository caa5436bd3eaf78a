//! A restarted daemon keeps its identity and address; `kill -9` of the daemon leaves every state
//! file whole and the next start works (stale socket and PID file are replaced).

mod daemon_support;

use std::os::unix::fs::PermissionsExt as _;

use daemon_support::{TestNode, kill, wait_gone};
use serde_json::Value;

fn identity(node: &TestNode) -> (String, String) {
    let info = node.json_ok(&["info"]);
    let addr = info["address"].as_str().expect("address").to_owned();
    let key = info["public_key"].as_str().expect("key").to_owned();
    (addr, key)
}

fn assert_state_files_whole(node: &TestNode) {
    let id_path = node.dir().join("identity.json");
    let id: Value = serde_json::from_slice(&std::fs::read(&id_path).expect("identity"))
        .expect("identity is JSON");
    assert!(id["private_key"].is_string() && id["public_key"].is_string());
    let mode = std::fs::metadata(&id_path)
        .expect("meta")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "identity file mode");
    let reg = node.dir().join("rendezvous").join("registry.state");
    let bytes = std::fs::read(reg).expect("registry state");
    let config = pilot_proto::registry::RegistryConfig::default();
    let now = std::time::Instant::now();
    let recovered = pilot_proto::registry::RegistryServer::recover(config, now, 0, &bytes);
    assert!(recovered.is_ok(), "registry state recovers after kill -9");
}

#[test]
fn restart_keeps_identity_and_address() {
    let mut node = TestNode::new();
    node.start();
    let before = identity(&node);
    node.stop();
    assert!(
        !node.dir().join("pilot.sock").exists(),
        "socket removed on stop"
    );
    assert!(
        !node.dir().join("pilot.pid").exists(),
        "PID file removed on stop"
    );

    node.start();
    assert_eq!(identity(&node), before);
    let mode = std::fs::metadata(node.dir().join("pilot.sock"))
        .expect("socket")
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(mode, 0o600, "socket mode");
    node.stop();
}

#[test]
fn kill_dash_nine_corrupts_nothing() {
    let mut node = TestNode::new();
    node.start();
    let before = identity(&node);
    let pid = node.pid.expect("pid");
    kill(pid, "KILL");
    wait_gone(pid);
    node.pid = None;
    assert_state_files_whole(&node);

    let status = node.run(&["daemon", "status"]);
    assert_eq!(
        status.status.code(),
        Some(3),
        "status reports a dead daemon"
    );

    node.start();
    assert_eq!(identity(&node), before);
    node.stop();
}

#[test]
fn second_start_is_refused_and_stop_without_daemon_fails() {
    let mut node = TestNode::new();
    node.start();
    let out = node.run(&["--json", "daemon", "start"]);
    assert_eq!(out.status.code(), Some(6));
    let v: Value = serde_json::from_slice(&out.stderr).expect("json");
    assert_eq!(v["code"], "already_exists");
    node.stop();
    let out = node.run(&["daemon", "stop"]);
    assert_eq!(out.status.code(), Some(3));
}

#[test]
fn corrupt_identity_is_a_clear_start_error() {
    let node = TestNode::new();
    std::fs::write(node.dir().join("identity.json"), b"{\"private_key\": 5}").expect("write");
    let out = node.run(&["daemon", "start", "--wait", "20s"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("identity") && err.contains("corrupt"), "{err}");
    assert_eq!(
        std::fs::read(node.dir().join("identity.json")).expect("kept"),
        b"{\"private_key\": 5}"
    );
}
