//! Registry-entry commands against real processes on loopback: networks (create, join, list,
//! leave) on a rendezvous started with an admin token, the refusals without the token or
//! without networks, and visibility, tags and deregistration.

mod daemon_support;

use daemon_support::{Rendezvous, TestNode, start_with_registry};
use serde_json::Value;

const ADMIN: &str = "test-admin-token";

/// Runs a `--json` command that must fail; returns (exit code, error object).
fn json_err(node: &TestNode, args: &[&str]) -> (Option<i32>, Value) {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let out = node.run(&all);
    assert!(!out.status.success(), "pilotctl {args:?} should fail");
    let error = serde_json::from_slice(&out.stderr).expect("stderr is one JSON error");
    (out.status.code(), error)
}

#[test]
fn networks_are_created_joined_listed_and_left_with_the_admin_token() {
    let rv = Rendezvous::start(&["--admin-token", ADMIN]);
    let (mut a, mut b) = (TestNode::new(), TestNode::new());
    start_with_registry(&mut a, &rv.registry, &["--public"]);
    start_with_registry(&mut b, &rv.registry, &["--public"]);

    let (code, error) = json_err(&a, &["network", "create", "lab"]);
    assert_eq!(
        (code, error["code"].as_str()),
        (Some(1), Some("denied")),
        "{error}"
    );

    let created = a.json_ok(&["network", "create", "lab", "--admin-token", ADMIN]);
    let id = created["network_id"].as_u64().expect("network id");
    assert!(id >= 1, "network 0 is the backbone: {created}");

    let joined = b.json_ok(&["join", &id.to_string(), "--admin-token", ADMIN]);
    let address = joined["address"].as_str().expect("address in the network");
    assert!(address.starts_with(&format!("{id}:")), "{joined}");

    let members = |node: &TestNode| {
        let list = node.json_ok(&["network", "list"]);
        let networks = list["networks"].as_array().cloned().unwrap_or_default();
        let lab = networks.iter().find(|n| n["name"] == "lab").cloned();
        lab.map(|n| n["members"].as_u64().unwrap_or(0))
    };
    assert_eq!(members(&a), Some(2));

    b.json_ok(&["network", "leave", &id.to_string(), "--admin-token", ADMIN]);
    assert_eq!(members(&b), Some(1));
}

#[test]
fn a_registry_without_networks_says_they_are_unavailable() {
    let mut node = TestNode::new();
    node.start();
    let (code, error) = json_err(&node, &["join", "1", "--admin-token", "x"]);
    assert_eq!(code, Some(7), "{error}");
    assert_eq!(error["code"], "unavailable");
    assert!(
        error["hint"]
            .as_str()
            .is_some_and(|h| h.contains("--admin-token")),
        "{error}"
    );
}

#[test]
fn visibility_tags_and_deregistration_reach_the_registry() {
    let mut node = TestNode::new();
    node.start();

    let tags = node.json_ok(&["set-tags", "web", "db"]);
    assert_eq!(tags["tags"], serde_json::json!(["web", "db"]), "{tags}");
    let out = node.run(&["set-tags", "a", "b", "c", "d"]);
    assert_eq!(out.status.code(), Some(2), "four tags is a usage error");
    let (_, error) = json_err(&node, &["set-tags", "Not A Tag"]);
    assert!(error["message"].as_str().is_some(), "{error}");
    node.json_ok(&["clear-tags"]);

    let private = node.json_ok(&["set-private"]);
    assert_eq!(private["visibility"], "private", "{private}");
    assert_eq!(node.json_ok(&["info"])["public"], false);
    let public = node.json_ok(&["set-public"]);
    assert_eq!(public["visibility"], "public", "{public}");
    assert_eq!(node.json_ok(&["info"])["public"], true);

    node.json_ok(&["deregister"]);
}
