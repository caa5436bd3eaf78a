//! `pilotctl` commands about this node's registry entry beyond its hostname: visibility,
//! tags, deregistration, and networks (create, join, leave, list).
//!
//! Network changes need the registry's admin token (`--admin-token` or `PILOT_ADMIN_TOKEN`),
//! as in v0.5's design; a v0.5 registry refuses networks altogether, which is reported as
//! "not available" with a hint.

use clap::{Args, Subcommand};
use serde_json::Value;

use super::Ctx;
use super::output::CliError;
use crate::client::ClientError;
use crate::shim::extension::Extension;

/// The registry-entry commands (flattened into `pilotctl`'s top level).
#[derive(Debug, Subcommand)]
pub(super) enum DirectoryCommand {
    /// Make this node public: anyone may resolve its endpoint and connect.
    SetPublic,
    /// Make this node private: only trusted nodes may resolve it or connect.
    SetPrivate,
    /// Replace this node's tags at the registry (at most 3; lower-case letters, digits, '-').
    SetTags {
        /// The tags.
        #[arg(required = true, num_args = 1..=3)]
        tags: Vec<String>,
    },
    /// Remove all of this node's tags.
    ClearTags,
    /// Remove this node from the registry until the daemon registers again (restart).
    Deregister,
    /// Join a network: `join <id>` (same as `network join <id>`).
    Join(JoinArgs),
    /// Networks at the registry: create, join, leave, list.
    Network {
        #[command(subcommand)]
        action: NetworkAction,
    },
}

/// What `pilotctl network` does.
#[derive(Debug, Subcommand)]
pub(super) enum NetworkAction {
    /// Create a network; this node becomes its first member.
    Create {
        /// Network name (lower-case letters, digits and '-').
        name: String,
        /// Who may join: open, token or invite.
        #[arg(long, default_value = "open")]
        rule: String,
        /// The join token (for `--rule token`).
        #[arg(long, env = "PILOT_NETWORK_TOKEN")]
        token: Option<String>,
        #[command(flatten)]
        admin: AdminToken,
    },
    /// Join a network.
    Join(JoinArgs),
    /// Leave a network (network 0 cannot be left).
    Leave {
        /// The network id.
        network: u16,
        #[command(flatten)]
        admin: AdminToken,
    },
    /// List the registry's networks.
    List,
}

/// `join` arguments.
#[derive(Debug, Args)]
pub(super) struct JoinArgs {
    /// The network id.
    network: u16,
    /// The network's join token (token rule).
    #[arg(long, env = "PILOT_NETWORK_TOKEN")]
    token: Option<String>,
    /// A member that invited this node (invite rule).
    #[arg(long)]
    inviter: Option<u32>,
    #[command(flatten)]
    admin: AdminToken,
}

/// The registry's admin token, which v0.5-style registries want for network changes.
#[derive(Debug, Args)]
pub(super) struct AdminToken {
    /// The registry's admin token.
    #[arg(
        long = "admin-token",
        env = "PILOT_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
}

pub(super) async fn run(ctx: &Ctx, command: DirectoryCommand) -> Result<(), CliError> {
    let client = ctx.client().await?;
    let out = ctx.out;
    match command {
        DirectoryCommand::SetPublic | DirectoryCommand::SetPrivate => {
            let public = matches!(command, DirectoryCommand::SetPublic);
            let reply = client.set_visibility(public).await?;
            let word = if public { "public" } else { "private" };
            out.ok(reply, |_| format!("this node is now {word}"));
        }
        DirectoryCommand::SetTags { tags } => {
            let reply = client.set_tags(&tags).await?;
            out.ok(reply, |d| format!("tags set: {}", tag_list(d)));
        }
        DirectoryCommand::ClearTags => {
            let reply = client.set_tags(&[]).await?;
            out.ok(reply, |_| "tags cleared".into());
        }
        DirectoryCommand::Deregister => {
            let reply = client.deregister().await?;
            out.ok(reply, |_| {
                "deregistered; a daemon restart registers again".into()
            });
        }
        DirectoryCommand::Join(args) => network(ctx, &client, NetworkAction::Join(args)).await?,
        DirectoryCommand::Network { action } => network(ctx, &client, action).await?,
    }
    Ok(())
}

async fn network(
    ctx: &Ctx,
    client: &crate::client::Client,
    action: NetworkAction,
) -> Result<(), CliError> {
    let request = extension(action);
    let reply = client.extension(&request).await.map_err(network_error)?;
    match request {
        Extension::NetworkList => ctx.out.ok(reply, human_list),
        Extension::NetworkCreate { name, .. } => ctx.out.ok(reply, |d| {
            format!("created network {name} (id {})", d["network_id"])
        }),
        Extension::NetworkJoin { network_id, .. } => ctx.out.ok(reply, |d| {
            let address = d["address"].as_str().unwrap_or_default();
            format!("joined network {network_id}; address there: {address}")
        }),
        Extension::NetworkLeave { network_id, .. } => {
            ctx.out.ok(reply, |_| format!("left network {network_id}"));
        }
    }
    Ok(())
}

fn extension(action: NetworkAction) -> Extension {
    match action {
        NetworkAction::Create {
            name,
            rule,
            token,
            admin,
        } => Extension::NetworkCreate {
            name,
            join_rule: Some(rule),
            token,
            admin_token: admin.admin_token,
        },
        NetworkAction::Join(args) => Extension::NetworkJoin {
            network_id: args.network,
            inviter_id: args.inviter,
            token: args.token,
            admin_token: args.admin.admin_token,
        },
        NetworkAction::Leave { network, admin } => Extension::NetworkLeave {
            network_id: network,
            admin_token: admin.admin_token,
        },
        NetworkAction::List => Extension::NetworkList,
    }
}

/// Registry refusals of network requests, explained.
fn network_error(e: ClientError) -> CliError {
    let ClientError::Daemon(text) = &e else {
        return e.into();
    };
    let lower = text.to_ascii_lowercase();
    if lower.contains("unsupported") || lower.contains("wip") || lower.contains("unknown") {
        return CliError::new("unavailable", format!("the registry refused: {text}")).hint(
            "this registry does not offer networks (v0.5 registries never do); a pilot-rs \
             rendezvous offers them when started with --admin-token",
        );
    }
    if lower.contains("denied") || lower.contains("forbidden") {
        return CliError::new("denied", format!("the registry refused: {text}")).hint(
            "network changes need the registry's admin token: --admin-token or PILOT_ADMIN_TOKEN",
        );
    }
    CliError::new("failed", text.clone())
}

fn tag_list(reply: &Value) -> String {
    let tags = reply["tags"].as_array().cloned().unwrap_or_default();
    let names: Vec<&str> = tags.iter().filter_map(Value::as_str).collect();
    names.join(", ")
}

fn human_list(reply: &Value) -> String {
    let networks = reply["networks"].as_array().cloned().unwrap_or_default();
    let mut lines = vec![format!(
        "{:<6} {:<24} {:<8} {}",
        "ID", "NAME", "RULE", "MEMBERS"
    )];
    for n in &networks {
        lines.push(format!(
            "{:<6} {:<24} {:<8} {}",
            n["id"],
            n["name"].as_str().unwrap_or_default(),
            n["join_rule"].as_str().unwrap_or_default(),
            n["members"]
        ));
    }
    lines.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_explained() {
        let wip = network_error(ClientError::Daemon("custom networks are WIP".into()));
        assert_eq!((wip.code, wip.exit_code()), ("unavailable", 7));
        assert!(wip.hint.is_some_and(|h| h.contains("--admin-token")));
        let denied = network_error(ClientError::Daemon("registry error: denied".into()));
        assert_eq!(denied.code, "denied");
        assert!(denied.hint.is_some_and(|h| h.contains("PILOT_ADMIN_TOKEN")));
    }
}
