//! `pilotctl` itself: help on every command, usage errors, exit codes, the `--json` envelope,
//! and the port commands (send/recv, ping) against a real daemon.

mod daemon_support;

use daemon_support::TestNode;
use serde_json::Value;

const COMMANDS: &[&str] = &[
    "daemon",
    "rendezvous",
    "info",
    "set-hostname",
    "clear-hostname",
    "find",
    "handshake",
    "approve",
    "reject",
    "pending",
    "trust",
    "untrust",
    "peers",
    "connections",
    "ping",
    "send",
    "recv",
    "send-file",
    "listen",
    "subscribe",
    "publish",
    "join",
    "network",
    "set-public",
    "set-private",
    "set-tags",
    "clear-tags",
    "deregister",
    "set-webhook",
    "clear-webhook",
    "webhook-status",
];

#[test]
fn every_command_has_help() {
    let node = TestNode::new();
    for command in COMMANDS {
        let out = node.run(&[command, "--help"]);
        assert!(out.status.success(), "{command} --help");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("Usage:"), "{command} --help prints usage");
    }
    for sub in ["start", "stop", "status", "run"] {
        assert!(
            node.run(&["daemon", sub, "--help"]).status.success(),
            "daemon {sub} --help"
        );
    }
}

#[test]
fn usage_errors_exit_two_and_json_mode_reports_them_as_json() {
    let node = TestNode::new();
    let out = node.run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let out = node.run(&["--json", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2));
    let v: Value = serde_json::from_slice(&out.stderr).expect("json error");
    assert_eq!(v["code"], "invalid_argument");
    let out = node.run(&["ping", "0:0000.0000.0001", "--count", "many"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn without_a_daemon_networks_and_webhooks_say_so_and_usage_errors_exit_two() {
    let node = TestNode::new();
    // A signed receiver needs a secret; that is checked before the daemon is asked.
    let out = node.run(&["--json", "set-webhook", "http://127.0.0.1:1/hook"]);
    assert_eq!(out.status.code(), Some(2));
    let out = node.run(&["set-webhook", "http://127.0.0.1:1/hook", "--secret", "s"]);
    assert_eq!(out.status.code(), Some(3), "no daemon running");
    let mut from_env = node.cmd();
    from_env.env("PILOT_WEBHOOK_SECRET", "s");
    let out = from_env
        .args(["set-webhook", "http://127.0.0.1:1/hook"])
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(3),
        "the secret may come from the environment"
    );
    let out = node.run(&["join", "5"]);
    assert_eq!(out.status.code(), Some(3), "no daemon: not running");
}

#[test]
fn send_recv_ping_and_hostnames_against_a_daemon() {
    let mut node = TestNode::new();
    let addr = node.start()["address"]
        .as_str()
        .expect("address")
        .to_owned();

    let recv = node.spawn(&["--json", "recv", "1234", "--count", "1", "--timeout", "20s"]);
    // recv binds asynchronously: send until it has received (bounded).
    let deadline = std::time::Instant::now() + daemon_support::WAIT;
    loop {
        let out = node.run(&[
            "--json",
            "send",
            &addr,
            "1234",
            "--data",
            "hello port",
            "--timeout",
            "5s",
        ]);
        if out.status.success() {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "send never connected");
    }
    let envelope: Value = serde_json::from_str(&recv.next_stdout()).expect("recv envelope");
    assert_eq!(envelope["data"]["messages"][0]["data"], "hello port");

    let ping = node.json_ok(&["ping", &addr, "--count", "1"]);
    assert_eq!(ping["results"][0]["bytes"], 6);
    let out = node.run(&[
        "ping",
        "0:0000.0000.0063",
        "--count",
        "1",
        "--timeout",
        "5s",
    ]);
    assert!(
        !out.status.success(),
        "ping of an unreachable node exits non-zero"
    );

    node.json_ok(&["set-hostname", "alice"]);
    let found = node.json_ok(&["find", "alice"]);
    assert_eq!(found["address"], addr.as_str());
    let out = node.run(&["--json", "find", "nobody-here"]);
    assert_eq!(out.status.code(), Some(4));
    assert_eq!(node.json_ok(&["info"])["hostname"], "alice");
    node.stop();
}
