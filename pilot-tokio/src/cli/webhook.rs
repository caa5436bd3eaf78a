//! `pilotctl set-webhook`, `clear-webhook` and `webhook-status`: the daemon's webhook bridge,
//! configured over the `0x84` IPC extension (`webhook::host::ipc`).
//!
//! `set-webhook <url>` runs the inbound receiver on exactly that address (a non-loopback IP
//! only when written out); `--outbound <url>` sets where the daemon's events are POSTed. Both
//! are saved under the daemon home and restored when the daemon starts.
//!
//! # Limitations
//!
//! - Secrets are given on the command line, where other local users may see them in the
//!   process list while the command runs; the daemon stores them in a 0600 file.

use std::time::Duration;

use clap::{Args, ValueEnum};
use serde_json::Value;

use super::Ctx;
use super::output::{CliError, parse_duration};
use crate::client::ClientError;
use crate::webhook::host::ipc::{self, HostRequest, WEBHOOK_OK};
use crate::webhook::host::store::{InboundSpec, OutboundSpec, Provider};

/// How inbound requests are signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum Scheme {
    /// Standard Webhooks (`webhook-id`, `webhook-timestamp`, `webhook-signature`; whsec_ secrets).
    Standard,
    /// Stripe `Stripe-Signature` (the whsec_ secret used verbatim).
    Stripe,
    /// GitHub `X-Hub-Signature-256` (the secret used verbatim).
    Github,
    /// No signature: accepted only on a loopback address.
    Unsigned,
}

/// `pilotctl set-webhook`.
#[derive(Debug, Args)]
pub(super) struct SetWebhookArgs {
    /// Inbound: http://IP:PORT/PATH (IP or localhost) to receive provider webhooks on; each
    /// verified POST becomes an event (topic from the path, or --topic / --topic-header).
    url: Option<String>,
    /// Signing secret of the inbound scheme; repeat during a rotation. One secret can come
    /// from `PILOT_WEBHOOK_SECRET` instead, which keeps it out of the process list.
    #[arg(
        long = "secret",
        value_name = "SECRET",
        env = "PILOT_WEBHOOK_SECRET",
        hide_env_values = true
    )]
    secrets: Vec<String>,
    /// Signature scheme of the inbound provider.
    #[arg(long, value_enum, default_value = "standard")]
    scheme: Scheme,
    /// Topic prefix instead of the one derived from the url path.
    #[arg(long, value_name = "PREFIX")]
    topic: Option<String>,
    /// Header whose value ends the topic (e.g. x-github-event) instead of sub-path segments.
    #[arg(long, value_name = "NAME")]
    topic_header: Option<String>,
    /// Outbound: POST every event published on this node to this http(s) URL, signed.
    #[arg(long, value_name = "URL")]
    outbound: Option<String>,
    /// Outbound Standard Webhooks secret (whsec_...) [default: kept, or generated and shown].
    #[arg(long, value_name = "SECRET", requires = "outbound")]
    outbound_secret: Option<String>,
    /// Outbound: delay before the first retry (doubling up to 1h).
    #[arg(long, value_parser = parse_duration, value_name = "DURATION", requires = "outbound")]
    retry_initial: Option<Duration>,
    /// Outbound: attempts before an event is given up on (and counted as failed).
    #[arg(long, value_name = "N", requires = "outbound")]
    max_attempts: Option<u32>,
}

/// `pilotctl clear-webhook`.
#[derive(Debug, Args)]
pub(super) struct ClearWebhookArgs {
    /// Only stop the inbound receiver.
    #[arg(long, conflicts_with = "outbound")]
    inbound: bool,
    /// Only stop outbound delivery (queued events stay on disk).
    #[arg(long)]
    outbound: bool,
}

pub(super) async fn set(ctx: &Ctx, args: SetWebhookArgs) -> Result<(), CliError> {
    let request = set_request(args)?;
    let data = call(ctx, &request).await?;
    if let Some(secret) = data.get("generated_secret").and_then(Value::as_str) {
        ctx.out.note(format!(
            "outbound signing secret (shown once, store it with your receiver): {secret}"
        ));
    }
    ctx.out.ok(data, human_status);
    Ok(())
}

fn set_request(args: SetWebhookArgs) -> Result<HostRequest, CliError> {
    if args.url.is_none() && args.outbound.is_none() {
        return Err(
            CliError::invalid("give an inbound url, --outbound <url>, or both")
                .hint("pilotctl set-webhook http://127.0.0.1:8080/events --secret whsec_..."),
        );
    }
    let inbound = match args.url {
        Some(url) => Some(inbound_spec(url, args.secrets, args.scheme, args.topic)?),
        None => None,
    };
    let inbound = inbound.map(|spec| InboundSpec {
        topic_header: args.topic_header,
        ..spec
    });
    let outbound = args.outbound.map(|url| OutboundSpec {
        url,
        secret: args.outbound_secret.unwrap_or_default(),
        retry_initial_ms: args
            .retry_initial
            .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        max_attempts: args.max_attempts,
    });
    Ok(HostRequest::Set { inbound, outbound })
}

fn inbound_spec(
    url: String,
    secrets: Vec<String>,
    scheme: Scheme,
    topic: Option<String>,
) -> Result<InboundSpec, CliError> {
    let provider = match scheme {
        Scheme::Standard => Provider::Standard,
        Scheme::Stripe => Provider::Stripe,
        Scheme::Github => Provider::Github,
        Scheme::Unsigned => Provider::Unsigned,
    };
    if provider != Provider::Unsigned && secrets.is_empty() {
        return Err(CliError::invalid("the inbound receiver needs --secret")
            .hint("or --scheme unsigned, accepted only on a loopback address"));
    }
    // The receiver binds exactly what the url says: an IP written out is the user's choice.
    let (listen, _) = crate::webhook::inbound::parse_listen_url(&url)
        .map_err(|e| CliError::invalid(e.to_string()))?;
    Ok(InboundSpec {
        url,
        provider,
        secrets,
        topic,
        topic_header: None,
        allow_non_loopback: !listen.ip().is_loopback(),
    })
}

pub(super) async fn clear(ctx: &Ctx, args: ClearWebhookArgs) -> Result<(), CliError> {
    let both = !args.inbound && !args.outbound;
    let request = HostRequest::Clear {
        inbound: args.inbound || both,
        outbound: args.outbound || both,
    };
    let data = call(ctx, &request).await?;
    ctx.out.ok(data, human_status);
    Ok(())
}

pub(super) async fn status(ctx: &Ctx) -> Result<(), CliError> {
    let data = call(ctx, &HostRequest::Status).await?;
    ctx.out.ok(data, human_status);
    Ok(())
}

async fn call(ctx: &Ctx, request: &HostRequest) -> Result<Value, CliError> {
    let client = ctx.client().await?;
    let body = client.request(ipc::encode_request(request)).await?;
    match body.split_first() {
        Some((&WEBHOOK_OK, json)) => serde_json::from_slice(json)
            .map_err(|e| CliError::new("connection_failed", format!("bad reply: {e}"))),
        _ => match crate::client_proto::decode_error(&body) {
            ClientError::Daemon(text) => Err(CliError::new("webhook_failed", text)),
            other => Err(other.into()),
        },
    }
}

fn human_status(d: &Value) -> String {
    let mut lines = Vec::new();
    match d.get("inbound").filter(|v| !v.is_null()) {
        None => lines.push("Inbound:   off".to_owned()),
        Some(i) => {
            lines.push(format!(
                "Inbound:   {} ({}, {})",
                text(&i["url"]),
                text(&i["scheme"]),
                running(i)
            ));
            lines.push(format!("  counters: {}", counters(&i["stats"])));
        }
    }
    match d.get("outbound").filter(|v| !v.is_null()) {
        None => lines.push("Outbound:  off".to_owned()),
        Some(o) => {
            lines.push(format!("Outbound:  {} ({})", text(&o["url"]), running(o)));
            lines.push(format!("  counters: {}", counters(&o["stats"])));
            lines.push(format!("  feed:     {}", counters(&o["feed"])));
        }
    }
    lines.join("\n")
}

fn text(v: &Value) -> String {
    v.as_str().map_or_else(|| v.to_string(), str::to_owned)
}

fn running(side: &Value) -> String {
    match side["error"].as_str() {
        Some(err) => format!("not running: {err}"),
        None if side["running"] == true => "running".to_owned(),
        None => "stopped".to_owned(),
    }
}

fn counters(stats: &Value) -> String {
    let Some(map) = stats.as_object() else {
        return "-".to_owned();
    };
    let parts: Vec<String> = map
        .iter()
        .map(|(k, v)| format!("{k}={}", text(v)))
        .collect();
    parts.join(" ")
}
