//! Commands that move data: ping, send, recv, send-file, listen, subscribe, publish.

use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use super::Ctx;
use super::control::resolve_target;
use super::output::{CliError, parse_duration};
use crate::client::{Client, ClientError, EventItem, EventSession, PORT_ECHO};
use crate::shim::addr::{Addr, AddrPort};

const PORT_DATA_EXCHANGE: u16 = 1001;
/// Largest data-exchange frame body v0.5 receivers accept.
const MAX_FRAME_BODY: usize = 16 << 20;

#[derive(Debug, Args)]
pub(super) struct PingArgs {
    /// Node id, address or hostname.
    target: String,
    /// Number of probes.
    #[arg(long, default_value_t = 4)]
    count: u32,
    /// Time limit for each probe.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
}

#[derive(Debug, Args)]
pub(super) struct SendArgs {
    /// Node id, address or hostname.
    target: String,
    /// Virtual port.
    port: u16,
    /// The message.
    #[arg(long)]
    data: String,
    /// How long to wait for a reply.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
}

#[derive(Debug, Args)]
pub(super) struct RecvArgs {
    /// Virtual port to bind.
    port: u16,
    /// Messages to receive before exiting.
    #[arg(long, default_value_t = 1)]
    count: usize,
    /// Give up after this long (0 = never).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    timeout: Duration,
}

#[derive(Debug, Args)]
pub(super) struct SendFileArgs {
    /// Node id, address or hostname.
    target: String,
    /// The file to send.
    path: std::path::PathBuf,
}

#[derive(Debug, Args)]
pub(super) struct ListenArgs {
    /// Destination port of the datagrams to print.
    port: u16,
    /// Exit after this many datagrams (0 = never).
    #[arg(long, default_value_t = 0)]
    count: usize,
    /// Exit after this long (0 = never).
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    timeout: Duration,
}

#[derive(Debug, Args)]
pub(super) struct SubscribeArgs {
    /// `<topic>` on this node, or `<node> <topic>`. Patterns: `*` (everything), `tasks.*`.
    #[arg(num_args = 1..=2, required = true, value_name = "NODE_OR_TOPIC")]
    args: Vec<String>,
    /// Exit after this many events and print them as one result (0 = stream forever).
    #[arg(long, default_value_t = 0)]
    count: usize,
    /// Exit after this long (0 = never).
    #[arg(long, default_value = "0", value_parser = parse_duration)]
    timeout: Duration,
    /// Resume: first the retained events from this sequence number on, then live ones; a gap
    /// notice line says which were gone. Uses the extended protocol (this implementation's
    /// brokers only) and prints each event's sequence number.
    #[arg(long, value_name = "SEQ")]
    since: Option<u64>,
    /// Durable subscription name: the broker keeps this subscription's place while you are
    /// away (and across daemon restarts) and redelivers what was not acknowledged; each
    /// printed event is acknowledged. Subscribe again with the same name to resume.
    #[arg(long, value_name = "NAME")]
    durable: Option<String>,
}

#[derive(Debug, Args)]
pub(super) struct PublishArgs {
    /// `<topic> <data>`, `<topic> --data <data>` or `<node> <topic> --data <data>`.
    #[arg(num_args = 1..=3, required = true, value_name = "ARGS")]
    args: Vec<String>,
    /// The payload.
    #[arg(long)]
    data: Option<String>,
}

fn deadline(timeout: Duration) -> Option<Instant> {
    (!timeout.is_zero()).then(|| Instant::now() + timeout)
}

async fn until<T>(at: Option<Instant>, fut: impl Future<Output = T>) -> Option<T> {
    match at {
        None => Some(fut.await),
        Some(at) => tokio::time::timeout_at(at.into(), fut).await.ok(),
    }
}

async fn target_or_self(
    ctx: &Ctx,
    client: &Client,
    target: Option<&str>,
) -> Result<Addr, CliError> {
    match target {
        Some(t) => resolve_target(ctx, client, t).await,
        None => Ok(client.address().await?),
    }
}

pub(super) async fn subscribe(ctx: &Ctx, args: SubscribeArgs) -> Result<(), CliError> {
    let (target, topic) = match &args.args[..] {
        [topic] => (None, topic.as_str()),
        [target, topic] => (Some(target.as_str()), topic.as_str()),
        _ => return Err(CliError::invalid("usage: subscribe [<node>] <topic>")),
    };
    let client = ctx.client().await?;
    let node = target_or_self(ctx, &client, target).await?;
    if args.since.is_some() || args.durable.is_some() {
        return subscribe_extended(ctx, &args, &client, (node, topic)).await;
    }
    let mut sub = client.subscribe_at(node, topic).await?;
    ctx.out.note(format!(
        "subscribed to {topic:?} on {node} — waiting for events..."
    ));
    let at = deadline(args.timeout);
    let mut events = Vec::new();
    let mut timed_out = false;
    loop {
        let Some(next) = until(at, sub.next_event()).await else {
            timed_out = true;
            break;
        };
        let Some(event) = next else { break };
        let event = event?;
        let data = String::from_utf8_lossy(&event.payload).into_owned();
        let obj = json!({"bytes": event.payload.len(), "data": data, "topic": event.topic});
        if args.count == 0 {
            if ctx.out.json {
                println!("{obj}")
            } else {
                println!("[{}] {}", event.topic, data)
            }
        } else {
            events.push(obj);
            if events.len() >= args.count {
                break;
            }
        }
    }
    finish_subscribe(ctx, &args, events, timed_out);
    Ok(())
}

/// `subscribe --since` / `--durable`: the extended protocol; events carry `seq`, gap notices
/// are items too, and a durable subscription's events are acknowledged once printed.
async fn subscribe_extended(
    ctx: &Ctx,
    args: &SubscribeArgs,
    client: &Client,
    (node, topic): (Addr, &str),
) -> Result<(), CliError> {
    let at = deadline(args.timeout);
    // A v0.5 broker takes the hello for a subscription and never answers it: bounded too.
    let Some(sub) = until(at, open_extended(client, args, (node, topic))).await else {
        let text = format!("{node}: no answer to the extended subscribe (a v0.5 broker?)");
        return Err(CliError::new("timeout", text));
    };
    let (mut sub, id) = sub?;
    let from = args
        .since
        .map_or_else(|| "live".to_owned(), |s| format!("seq {s}"));
    ctx.out.note(format!(
        "subscribed to {topic:?} on {node} from {from} (head {}) — waiting for events...",
        sub.head()
    ));
    let (mut items, mut events) = (Vec::new(), 0);
    let mut timed_out = false;
    loop {
        let Some(next) = until(at, sub.next_item()).await else {
            timed_out = true;
            break;
        };
        let Some(item) = next else { break };
        let item = item?;
        let (obj, is_event) = item_json(&item);
        if let (EventItem::Event { seq, .. }, Some(_)) = (&item, &args.durable) {
            sub.ack(id, *seq).await?;
        }
        if args.count == 0 {
            print_item(ctx, &obj);
            continue;
        }
        items.push(obj);
        events += usize::from(is_event);
        if events >= args.count {
            break;
        }
    }
    finish_subscribe(ctx, args, items, timed_out);
    Ok(())
}

/// Opens the extended session and subscribes as `args` ask; returns it with the
/// subscription's id.
async fn open_extended(
    client: &Client,
    args: &SubscribeArgs,
    (node, topic): (Addr, &str),
) -> Result<(EventSession, u32), ClientError> {
    let mut sub = client.event_session_at(node).await?;
    let id = match &args.durable {
        Some(name) => sub.subscribe_durable(topic, name, args.since).await?,
        None => sub.subscribe(topic, args.since).await?,
    };
    Ok((sub, id))
}

/// An event or gap notice as JSON; the flag says whether it is an event.
fn item_json(item: &EventItem) -> (Value, bool) {
    match item {
        EventItem::Event {
            seq,
            topic,
            payload,
            ..
        } => {
            let data = String::from_utf8_lossy(payload).into_owned();
            let obj = json!({"seq": seq, "bytes": payload.len(), "data": data, "topic": topic});
            (obj, true)
        }
        EventItem::Gap {
            from,
            to,
            missed,
            reason,
            ..
        } => {
            let gap = json!({"from": from, "to": to, "missed": missed, "reason": reason});
            (json!({ "gap": gap }), false)
        }
    }
}

fn print_item(ctx: &Ctx, obj: &Value) {
    if ctx.out.json {
        println!("{obj}");
    } else {
        println!("{}", item_text(obj));
    }
}

/// One line of text: `[topic] data` (with `#seq` when known) or the gap notice.
fn item_text(obj: &Value) -> String {
    if let Some(gap) = obj.get("gap") {
        return format!(
            "gap: events {}..={} are gone ({} missed, {})",
            gap["from"],
            gap["to"],
            gap["missed"],
            gap["reason"].as_str().unwrap_or_default()
        );
    }
    let text = format!(
        "[{}] {}",
        obj["topic"].as_str().unwrap_or_default(),
        obj["data"].as_str().unwrap_or_default()
    );
    match obj.get("seq") {
        Some(seq) => format!("#{seq} {text}"),
        None => text,
    }
}

/// With `--count`, prints everything collected as one result.
fn finish_subscribe(ctx: &Ctx, args: &SubscribeArgs, events: Vec<Value>, timed_out: bool) {
    if timed_out {
        ctx.out.note("timeout");
    }
    if args.count > 0 {
        ctx.out
            .ok(json!({"events": events, "timeout": timed_out}), |d| {
                d["events"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(item_text)
                    .collect::<Vec<_>>()
                    .join("\n")
            });
    }
}

pub(super) async fn publish(ctx: &Ctx, args: PublishArgs) -> Result<(), CliError> {
    let (target, topic, data) = match (&args.args[..], args.data.as_deref()) {
        ([topic], Some(d)) => (None, topic.as_str(), d.to_owned()),
        ([topic, d], None) => (None, topic.as_str(), d.clone()),
        ([target, topic], Some(d)) => (Some(target.as_str()), topic.as_str(), d.to_owned()),
        ([target, topic, d], None) => (Some(target.as_str()), topic.as_str(), d.clone()),
        _ => {
            return Err(CliError::invalid(
                "usage: publish <topic> <data> | publish <node> <topic> --data <data>",
            ));
        }
    };
    let client = ctx.client().await?;
    let node = target_or_self(ctx, &client, target).await?;
    client.publish_at(node, topic, data.as_bytes()).await?;
    let out = json!({"target": node.to_string(), "topic": topic, "bytes": data.len()});
    ctx.out.ok(out, |d| {
        format!("published {} bytes to {:?} on {}", d["bytes"], topic, node)
    });
    Ok(())
}

pub(super) async fn ping(ctx: &Ctx, args: PingArgs) -> Result<(), CliError> {
    let client = ctx.client().await?;
    let addr = resolve_target(ctx, &client, &args.target).await?;
    ctx.out.note(format!("PING {addr}"));
    let mut results = Vec::new();
    let mut ok = 0;
    for seq in 0..args.count {
        if seq > 0 {
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let result = tokio::time::timeout(args.timeout, probe(&client, addr, seq)).await;
        let entry = match result {
            Ok(Ok((rtt, bytes))) => {
                ok += 1;
                ctx.out.note(format!(
                    "seq={seq} bytes={bytes} time={:.3}ms",
                    rtt.as_secs_f64() * 1000.0
                ));
                json!({"seq": seq, "rtt_ms": rtt.as_secs_f64() * 1000.0, "bytes": bytes})
            }
            Ok(Err(e)) => json!({"seq": seq, "error": e.message}),
            Err(_) => json!({"seq": seq, "error": "timeout"}),
        };
        if let Some(e) = entry.get("error") {
            ctx.out.note(format!(
                "seq={seq} error: {}",
                e.as_str().unwrap_or_default()
            ));
        }
        results.push(entry);
    }
    if ok == 0 && args.count > 0 {
        let last = results
            .last()
            .and_then(|r| r["error"].as_str())
            .unwrap_or("no reply")
            .to_owned();
        return Err(CliError::new(
            if last == "timeout" {
                "timeout"
            } else {
                "connection_failed"
            },
            format!("ping {addr}: {last}"),
        ));
    }
    ctx.out.ok(
        json!({"target": addr.to_string(), "results": results, "timeout": false}),
        |_| String::new(),
    );
    Ok(())
}

async fn probe(client: &Client, addr: Addr, seq: u32) -> Result<(Duration, usize), CliError> {
    let start = Instant::now();
    let mut conn = client
        .dial(AddrPort {
            addr,
            port: PORT_ECHO,
        })
        .await?;
    let payload = format!("ping-{seq}");
    conn.send_all(payload.as_bytes()).await?;
    let mut buf = vec![0u8; payload.len()];
    conn.read_exact(&mut buf)
        .await
        .map_err(|e| CliError::new("connection_failed", e.to_string()))?;
    let rtt = start.elapsed();
    let _ = conn.close().await;
    Ok((rtt, buf.len()))
}

pub(super) async fn send(ctx: &Ctx, args: SendArgs) -> Result<(), CliError> {
    let client = ctx.client().await?;
    let addr = resolve_target(ctx, &client, &args.target).await?;
    let mut conn = client
        .dial(AddrPort {
            addr,
            port: args.port,
        })
        .await?;
    conn.send_all(args.data.as_bytes()).await?;
    let mut response = Vec::new();
    let mut buf = vec![0u8; 64 * 1024];
    let at = Instant::now() + args.timeout;
    while let Some(Ok(n)) = until(Some(at), conn.read(&mut buf)).await {
        if n == 0 {
            break;
        }
        response.extend_from_slice(&buf[..n]);
    }
    let response = String::from_utf8_lossy(&response).into_owned();
    let data = json!({
        "target": addr.to_string(), "port": args.port, "sent": args.data.len(),
        "response": response,
    });
    ctx.out.ok(data, |d| {
        format!(
            "sent {} bytes; response: {}",
            d["sent"],
            d["response"].as_str().unwrap_or_default()
        )
    });
    Ok(())
}

pub(super) async fn recv(ctx: &Ctx, args: RecvArgs) -> Result<(), CliError> {
    let client = ctx.client().await?;
    let mut listener = client.listen(args.port).await?;
    ctx.out.note(format!(
        "listening on port {} for {} message(s)...",
        args.port, args.count
    ));
    let at = deadline(args.timeout);
    let mut messages = Vec::new();
    let mut timed_out = false;
    while messages.len() < args.count {
        let Some(accepted) = until(at, listener.accept()).await else {
            timed_out = true;
            break;
        };
        let Some((mut conn, _)) = accepted else { break };
        let mut buf = vec![0u8; 64 * 1024];
        let n = until(at, conn.read(&mut buf))
            .await
            .and_then(Result::ok)
            .unwrap_or(0);
        let data = String::from_utf8_lossy(&buf[..n]).into_owned();
        messages.push(json!({"seq": messages.len(), "port": args.port, "data": data, "bytes": n}));
        let _ = conn.close().await;
    }
    ctx.out
        .ok(json!({"messages": messages, "timeout": timed_out}), |d| {
            d["messages"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| m["data"].as_str().unwrap_or_default().to_owned())
                .collect::<Vec<_>>()
                .join("\n")
        });
    Ok(())
}

pub(super) async fn listen(ctx: &Ctx, args: ListenArgs) -> Result<(), CliError> {
    let client = ctx.client().await?;
    let mut datagrams = client.datagrams();
    // Register the session with the daemon before waiting (datagrams go to every session).
    client.info().await?;
    ctx.out
        .note(format!("listening for datagrams on port {}...", args.port));
    let at = deadline(args.timeout);
    let mut messages: Vec<Value> = Vec::new();
    let mut timed_out = false;
    while args.count == 0 || messages.len() < args.count {
        let Some(next) = until(at, datagrams.recv()).await else {
            timed_out = true;
            break;
        };
        let Some((src, dst_port, data)) = next else {
            break;
        };
        if dst_port != args.port {
            continue;
        }
        let text = String::from_utf8_lossy(&data).into_owned();
        let obj = json!({
            "bytes": data.len(), "data": text,
            "src_addr": src.addr.to_string(), "src_port": src.port,
        });
        if args.count == 0 {
            if ctx.out.json {
                println!("{obj}")
            } else {
                println!("[{src}] {text}")
            }
        }
        messages.push(obj);
    }
    if args.count > 0 {
        ctx.out
            .ok(json!({"messages": messages, "timeout": timed_out}), |d| {
                d["messages"].to_string()
            });
    }
    Ok(())
}

pub(super) async fn send_file(ctx: &Ctx, args: SendFileArgs) -> Result<(), CliError> {
    let mut file = tokio::fs::File::open(&args.path)
        .await
        .map_err(|e| CliError::new("not_found", format!("{}: {e}", args.path.display())))?;
    let size = file
        .metadata()
        .await
        .map_err(|e| CliError::new("internal", e.to_string()))?
        .len();
    let name = args
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let client = ctx.client().await?;
    let addr = resolve_target(ctx, &client, &args.target).await?;
    let mut conn = client
        .dial(AddrPort {
            addr,
            port: PORT_DATA_EXCHANGE,
        })
        .await?;
    let bar = progress(ctx, size);
    let mut sent = 0u64;
    let mut frames = 0usize;
    let mut chunk = vec![0u8; MAX_FRAME_BODY - 2 - name.len().min(1024)];
    loop {
        let n = read_full(&mut file, &mut chunk).await?;
        if n == 0 && sent > 0 {
            break;
        }
        conn.send_all(&file_frame(&name, &chunk[..n])).await?;
        frames += 1;
        sent += n as u64;
        if let Some(b) = &bar {
            b.set_position(sent);
        }
        if n < chunk.len() {
            break;
        }
    }
    if let Some(b) = bar {
        b.finish();
    }
    conn.flush()
        .await
        .map_err(|e| CliError::new("connection_failed", e.to_string()))?;
    let ack = read_acks(&mut conn, frames).await;
    let _ = conn.close().await;
    let data =
        json!({"filename": name, "bytes": sent, "destination": addr.to_string(), "ack": ack});
    ctx.out.ok(data, |d| {
        format!("sent {} ({} bytes) to {}", name, d["bytes"], addr)
    });
    Ok(())
}

/// Reads one acknowledgement frame per frame sent (bounded wait); returns the last one's text.
async fn read_acks(conn: &mut crate::client::Conn, frames: usize) -> Option<String> {
    let mut last = None;
    for _ in 0..frames {
        let mut header = [0u8; 8];
        let read =
            tokio::time::timeout(Duration::from_secs(30), conn.read_exact(&mut header)).await;
        if !matches!(read, Ok(Ok(_))) {
            break;
        }
        let len = u32::from_be_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let mut text = vec![0u8; len.min(4096)];
        if conn.read_exact(&mut text).await.is_err() {
            break;
        }
        last = Some(String::from_utf8_lossy(&text).into_owned());
    }
    last
}

/// One v0.5 data-exchange FILE frame: type 4, length, `u16 name_len ‖ name ‖ bytes`.
fn file_frame(name: &str, bytes: &[u8]) -> Vec<u8> {
    let name = &name.as_bytes()[..name.len().min(1024)];
    let body_len = 2 + name.len() + bytes.len();
    let mut out = Vec::with_capacity(8 + body_len);
    out.extend_from_slice(&4u32.to_be_bytes());
    out.extend_from_slice(&(body_len as u32).to_be_bytes());
    out.extend_from_slice(&(name.len() as u16).to_be_bytes());
    out.extend_from_slice(name);
    out.extend_from_slice(bytes);
    out
}

async fn read_full(file: &mut tokio::fs::File, buf: &mut [u8]) -> Result<usize, CliError> {
    let mut filled = 0;
    while filled < buf.len() {
        let n = file
            .read(&mut buf[filled..])
            .await
            .map_err(|e| CliError::new("internal", e.to_string()))?;
        if n == 0 {
            break;
        }
        filled += n;
    }
    Ok(filled)
}

fn progress(ctx: &Ctx, size: u64) -> Option<indicatif::ProgressBar> {
    use std::io::IsTerminal as _;
    if ctx.out.json || !std::io::stderr().is_terminal() {
        return None;
    }
    let bar = indicatif::ProgressBar::new(size);
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "{bar:40} {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    ) {
        bar.set_style(style);
    }
    Some(bar)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_and_gap_notices_print_one_line_each() {
        let event = EventItem::Event {
            subscription: 1,
            seq: 7,
            topic: "jobs.done".to_owned(),
            payload: b"ok".to_vec(),
        };
        let (obj, is_event) = item_json(&event);
        assert!(is_event);
        assert_eq!(obj["seq"], 7);
        assert_eq!(item_text(&obj), "#7 [jobs.done] ok");

        let gap = EventItem::Gap {
            subscription: 1,
            from: 3,
            to: 5,
            missed: 3,
            reason: "expired",
        };
        let (obj, is_event) = item_json(&gap);
        assert!(!is_event);
        assert_eq!(obj["gap"]["to"], 5);
        assert_eq!(
            item_text(&obj),
            "gap: events 3..=5 are gone (3 missed, expired)"
        );
    }
}
