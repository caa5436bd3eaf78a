//! Commands answered by one daemon request: info, hostnames, trust, peers, connections and
//! networks.

use serde_json::{Value, json};

use super::output::CliError;
use super::{Command, Ctx};
use crate::client::Client;
use crate::shim::addr::Addr;

/// Resolves a target: full address, bare decimal node id (network 0), or hostname.
pub(super) async fn resolve_target(
    ctx: &Ctx,
    client: &Client,
    text: &str,
) -> Result<Addr, CliError> {
    if let Ok(addr) = text.parse::<Addr>() {
        return Ok(addr);
    }
    if let Ok(node) = text.parse::<u32>() {
        return Ok(Addr::new(0, node));
    }
    if text.contains(':') {
        let err = text
            .parse::<Addr>()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        return Err(
            CliError::invalid(format!("invalid address {text:?}: {err}"))
                .hint("addresses look like 0:0000.0000.0001 (network:NNNN.HHHH.LLLL)"),
        );
    }
    let reply = client.resolve_hostname(text).await.map_err(|e| {
        CliError::new("not_found", format!("cannot resolve {text:?}: {e}"))
            .hint("use an address like 0:0000.0000.0001, a node id, or a registered hostname")
    })?;
    let addr = reply
        .get("address")
        .and_then(Value::as_str)
        .and_then(|a| a.parse().ok());
    let addr: Addr =
        addr.ok_or_else(|| CliError::new("not_found", format!("no node has hostname {text:?}")))?;
    ctx.out.note(format!("resolved {text:?} → {addr}"));
    Ok(addr)
}

pub(super) async fn run(ctx: &Ctx, command: Command) -> Result<(), CliError> {
    let out = ctx.out;
    let client = ctx.client().await?;
    match command {
        Command::Info => {
            let info = client.info().await?;
            out.ok(info, human_info);
        }
        Command::SetHostname { hostname } => {
            let reply = client.set_hostname(&hostname).await?;
            out.ok(
                json!({"hostname": hostname, "node_id": reply.get("node_id")}),
                |d| {
                    format!(
                        "hostname set to {}",
                        d["hostname"].as_str().unwrap_or_default()
                    )
                },
            );
        }
        Command::ClearHostname => {
            client.set_hostname("").await?;
            out.ok(json!({"hostname": ""}), |_| "hostname cleared".into());
        }
        Command::Find { hostname } => find(ctx, &client, &hostname).await?,
        Command::Handshake {
            target,
            justification,
        } => {
            let addr = resolve_target(ctx, &client, &target).await?;
            let reply = client
                .handshake(0x01, Some(addr.node), &justification.join(" "))
                .await?;
            out.ok_data(reply);
        }
        Command::Approve { node_id } => {
            out.ok_data(client.handshake(0x02, Some(node_id), "").await?)
        }
        Command::Reject { node_id, reason } => {
            out.ok_data(
                client
                    .handshake(0x03, Some(node_id), &reason.join(" "))
                    .await?,
            );
        }
        Command::Pending => out.ok_data(client.handshake(0x04, None, "").await?),
        Command::Trust => out.ok_data(client.handshake(0x05, None, "").await?),
        Command::Untrust { node_id } => {
            client.handshake(0x06, Some(node_id), "").await?;
            out.ok_data(json!({"node_id": node_id}));
        }
        Command::Peers { search } => {
            let info = client.info().await?;
            let peers: Vec<Value> = list(&info, "peer_list")
                .into_iter()
                .filter(|p| search.as_deref().is_none_or(|s| p.to_string().contains(s)))
                .collect();
            out.ok_data(json!({"total": peers.len(), "peers": peers}));
        }
        Command::Connections => {
            let info = client.info().await?;
            let conns = list(&info, "conn_list");
            out.ok_data(json!({"total": conns.len(), "connections": conns}));
        }
        _ => {
            return Err(CliError::new(
                "internal",
                "command routed to the wrong handler",
            ));
        }
    }
    Ok(())
}

async fn find(ctx: &Ctx, client: &Client, hostname: &str) -> Result<(), CliError> {
    let reply = client.resolve_hostname(hostname).await.map_err(|e| {
        CliError::new(
            "not_found",
            format!("hostname {hostname:?} not found ({e})"),
        )
    })?;
    let data = json!({
        "hostname": hostname,
        "node_id": reply.get("node_id"),
        "address": reply.get("address"),
        "public": reply.get("public").cloned().unwrap_or(Value::Bool(false)),
    });
    ctx.out.ok(data, |d| {
        format!(
            "Hostname:  {}\nNode ID:   {}\nAddress:   {}\nVisible:   {}",
            hostname,
            d["node_id"],
            d["address"].as_str().unwrap_or_default(),
            d["public"]
        )
    });
    Ok(())
}

fn list(info: &Value, key: &str) -> Vec<Value> {
    info.get(key)
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

fn human_info(d: &Value) -> String {
    let s = |k: &str| {
        d.get(k)
            .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
            .unwrap_or_default()
    };
    let uptime = d.get("uptime_secs").and_then(Value::as_f64).unwrap_or(0.0) as u64;
    let key = s("public_key");
    let mut lines = vec![
        "Pilot Protocol Daemon".to_owned(),
        format!("  Node ID:     {}", s("node_id")),
        format!("  Address:     {}", s("address")),
    ];
    if !s("hostname").is_empty() {
        lines.push(format!("  Hostname:    {}", s("hostname")));
    }
    lines.push(format!(
        "  Uptime:      {:02}:{:02}:{:02}",
        uptime / 3600,
        uptime / 60 % 60,
        uptime % 60
    ));
    lines.push(format!("  Connections: {}", s("connections")));
    lines.push(format!("  Ports:       {}", s("ports")));
    lines.push(format!("  Peers:       {}", s("peers")));
    lines.push(format!(
        "  Identity:    persistent (Ed25519 {}...)",
        key.get(..16).unwrap_or(&key)
    ));
    lines.join("\n")
}
