//! `pilotctl daemon start|stop|status|run` and `pilotctl rendezvous`.
//!
//! `start` re-executes this binary as `pilotctl daemon run` in its own process group with output
//! appended to `<home>/pilot.log`, then polls the IPC socket until the daemon answers with an
//! address (bounded by `--wait`). `stop` asks the daemon over IPC to exit, and only signals the
//! PID in the PID file if that process is a `pilotctl daemon run`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};
use serde_json::{Value, json};

use super::Ctx;
use super::output::{CliError, parse_duration};
use crate::client::Client;
use crate::config::{self, pick};
use crate::daemon::DaemonSettings;

#[derive(Debug, Subcommand)]
pub(super) enum DaemonAction {
    /// Start the daemon in the background (embedded rendezvous unless --registry is given).
    Start(DaemonArgs),
    /// Stop the background daemon.
    Stop,
    /// Report whether the daemon runs and answers.
    Status {
        /// Print nothing; exit 0 if the daemon answers, 3 otherwise.
        #[arg(long)]
        check: bool,
    },
    /// Run the daemon in the foreground (for service managers).
    Run(DaemonArgs),
}

impl DaemonAction {
    pub(super) fn identity(&self) -> Option<PathBuf> {
        match self {
            DaemonAction::Start(a) | DaemonAction::Run(a) => a.identity.clone(),
            _ => None,
        }
    }
}

/// Daemon options (flags, then `PILOT_*` environment, then the config file).
#[derive(Debug, Clone, Args)]
pub(super) struct DaemonArgs {
    /// Registry host:port. Without one, an embedded rendezvous runs on loopback.
    #[arg(long, env = "PILOT_REGISTRY")]
    registry: Option<String>,
    /// Beacon host:port (used with --registry).
    #[arg(long, env = "PILOT_BEACON")]
    beacon: Option<String>,
    /// Beacon TCP host:port, tried only when the beacon is silent over UDP (a pilot-rs
    /// rendezvous serves it on the beacon's port number) [default: the beacon address].
    #[arg(long, env = "PILOT_BEACON_TCP")]
    beacon_tcp: Option<String>,
    /// POST every event published on this node to this http(s) URL, signed and retried (the
    /// v0.5 flag; `pilotctl set-webhook --outbound` offers more options).
    #[arg(long, env = "PILOT_WEBHOOK", value_name = "URL")]
    webhook: Option<String>,
    /// Tunnel UDP listen address [default: 127.0.0.1:0 embedded, 0.0.0.0:0 with --registry].
    #[arg(long, env = "PILOT_LISTEN")]
    listen: Option<String>,
    /// Hostname to claim at registration.
    #[arg(long, env = "PILOT_HOSTNAME")]
    hostname: Option<String>,
    /// Let any node resolve this node's endpoint (otherwise only trusted nodes can).
    #[arg(long, env = "PILOT_PUBLIC")]
    public: bool,
    /// Identity file [default: <home>/identity.json].
    #[arg(long, env = "PILOT_IDENTITY")]
    identity: Option<PathBuf>,
    /// Embedded rendezvous registry address (loopback only) [default: 127.0.0.1:0].
    #[arg(long, env = "PILOT_RENDEZVOUS_REGISTRY")]
    rendezvous_registry: Option<String>,
    /// Embedded rendezvous beacon address (loopback only) [default: 127.0.0.1:0].
    #[arg(long, env = "PILOT_RENDEZVOUS_BEACON")]
    rendezvous_beacon: Option<String>,
    /// How long `start` waits for the daemon to answer (e.g. 15s).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    wait: Duration,
}

/// `pilotctl rendezvous` options.
#[derive(Debug, Args)]
pub(super) struct RendezvousArgs {
    /// Registry TCP listen address.
    #[arg(
        long,
        env = "PILOT_RENDEZVOUS_REGISTRY",
        default_value = "127.0.0.1:9000"
    )]
    registry_listen: String,
    /// Beacon UDP listen address.
    #[arg(
        long,
        env = "PILOT_RENDEZVOUS_BEACON",
        default_value = "127.0.0.1:9001"
    )]
    beacon_listen: String,
    /// Where registry state is kept [default: <home>/rendezvous].
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Switch networks on: create, join and leave must carry this token. Without it the
    /// registry refuses networks, as a v0.5 registry does.
    #[arg(
        long = "admin-token",
        env = "PILOT_ADMIN_TOKEN",
        hide_env_values = true
    )]
    admin_token: Option<String>,
}

pub(super) async fn run(ctx: &Ctx, action: DaemonAction) -> Result<(), CliError> {
    match action {
        DaemonAction::Start(args) => start(ctx, args).await,
        DaemonAction::Stop => stop(ctx).await,
        DaemonAction::Status { check } => status(ctx, check).await,
        DaemonAction::Run(args) => {
            crate::logging::init(&ctx.log_level, ctx.log_format);
            let settings = settings(ctx, &args)?;
            crate::daemon::run(settings)
                .await
                .map_err(|e| CliError::new("internal", e.to_string()))
        }
    }
}

fn settings(ctx: &Ctx, args: &DaemonArgs) -> Result<DaemonSettings, CliError> {
    let file = &ctx.file;
    let bad = |e: config::ConfigError| CliError::invalid(e.to_string());
    let registry = pick(args.registry.clone(), &file.registry)
        .map(|r| config::endpoint("registry", &r))
        .transpose()
        .map_err(bad)?;
    let beacon = pick(args.beacon.clone(), &file.beacon)
        .map(|b| config::endpoint("beacon", &b))
        .transpose()
        .map_err(bad)?;
    let webhook = pick(args.webhook.clone(), &file.webhook);
    if let Some(url) = &webhook
        && !(url.starts_with("http://") || url.starts_with("https://"))
    {
        return Err(CliError::invalid(format!(
            "--webhook {url:?}: expected an http:// or https:// URL"
        )));
    }
    let beacon_tcp = pick(args.beacon_tcp.clone(), &file.beacon_tcp)
        .map(|b| config::endpoint("beacon tcp", &b))
        .transpose()
        .map_err(bad)?;
    let default_listen = if registry.is_some() {
        "0.0.0.0:0"
    } else {
        "127.0.0.1:0"
    };
    let listen = pick(args.listen.clone(), &file.listen).unwrap_or_else(|| default_listen.into());
    let rv_reg = pick(args.rendezvous_registry.clone(), &file.rendezvous_registry);
    let rv_beacon = pick(args.rendezvous_beacon.clone(), &file.rendezvous_beacon);
    Ok(DaemonSettings {
        paths: ctx.paths.clone(),
        registry,
        beacon,
        beacon_tcp,
        webhook,
        listen: config::endpoint("listen", &listen).map_err(bad)?,
        hostname: pick(args.hostname.clone(), &file.hostname),
        public: args.public || file.public.unwrap_or(false),
        rendezvous_registry: config::loopback("rendezvous registry", rv_reg.as_deref())
            .map_err(bad)?,
        rendezvous_beacon: config::loopback("rendezvous beacon", rv_beacon.as_deref())
            .map_err(bad)?,
    })
}

async fn start(ctx: &Ctx, args: DaemonArgs) -> Result<(), CliError> {
    settings(ctx, &args)?;
    if let Some(info) = answering_info(&ctx.paths.socket).await {
        return Err(CliError::new(
            "already_exists",
            format!(
                "a daemon is already running on {}",
                ctx.paths.socket.display()
            ),
        )
        .hint(format!(
            "its address is {}; stop it with: pilotctl daemon stop",
            info["address"].as_str().unwrap_or("?")
        )));
    }
    let mut child = spawn_run(ctx, &args)?;
    let deadline = Instant::now() + args.wait;
    ctx.out.note("starting daemon...");
    let info = loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(CliError::new(
                "internal",
                format!("the daemon exited during start-up ({status})"),
            )
            .hint(format!("last log lines:\n{}", log_tail(&ctx.paths.logfile))));
        }
        if let Some(info) = answering_info(&ctx.paths.socket).await
            && info["address"].as_str().is_some_and(|a| !a.is_empty())
        {
            break info;
        }
        if Instant::now() >= deadline {
            return Err(CliError::new(
                "timeout",
                format!("the daemon did not answer within {:?}", args.wait),
            )
            .hint(format!(
                "the daemon keeps trying in the background (stop it with: pilotctl daemon \
                     stop); see the log: {}",
                ctx.paths.logfile.display()
            )));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let data = json!({
        "pid": child.id(),
        "node_id": info["node_id"],
        "address": info["address"],
        "hostname": info["hostname"],
        "socket": ctx.paths.socket,
        "log_file": ctx.paths.logfile,
    });
    ctx.out.ok(data, |d| {
        format!(
            "Daemon running (pid {})\n  Address:  {}\n  Socket:   {}\n  Logs:     {}",
            d["pid"],
            d["address"].as_str().unwrap_or_default(),
            ctx.paths.socket.display(),
            ctx.paths.logfile.display()
        )
    });
    Ok(())
}

fn spawn_run(ctx: &Ctx, args: &DaemonArgs) -> Result<std::process::Child, CliError> {
    use std::os::unix::process::CommandExt as _;

    let internal =
        |what: &str, e: std::io::Error| CliError::new("internal", format!("{what}: {e}"));
    std::fs::create_dir_all(&ctx.paths.home).map_err(|e| internal("create state directory", e))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&ctx.paths.logfile)
        .map_err(|e| internal("open log file", e))?;
    let log2 = log.try_clone().map_err(|e| internal("open log file", e))?;
    let exe = std::env::current_exe().map_err(|e| internal("find own executable", e))?;
    let mut cmd = std::process::Command::new(exe);
    cmd.args(["daemon", "run", "--home"])
        .arg(&ctx.paths.home)
        .arg("--socket")
        .arg(&ctx.paths.socket);
    cmd.arg("--identity").arg(&ctx.paths.identity);
    cmd.args([
        "--log-level",
        &ctx.log_level,
        "--log-format",
        if ctx.log_format == crate::logging::LogFormat::Json {
            "json"
        } else {
            "text"
        },
    ]);
    let flags = [
        ("--registry", &args.registry),
        ("--beacon", &args.beacon),
        ("--beacon-tcp", &args.beacon_tcp),
        ("--webhook", &args.webhook),
        ("--listen", &args.listen),
        ("--hostname", &args.hostname),
        ("--rendezvous-registry", &args.rendezvous_registry),
        ("--rendezvous-beacon", &args.rendezvous_beacon),
    ];
    if args.public {
        cmd.arg("--public");
    }
    for (flag, value) in flags {
        if let Some(v) = value {
            cmd.arg(flag).arg(v);
        }
    }
    cmd.stdin(Stdio::null())
        .stdout(log)
        .stderr(log2)
        .process_group(0);
    cmd.spawn().map_err(|e| internal("spawn the daemon", e))
}

async fn answering_info(socket: &Path) -> Option<Value> {
    let client = Client::connect(socket).await.ok()?;
    tokio::time::timeout(Duration::from_secs(2), client.info())
        .await
        .ok()?
        .ok()
}

fn read_pid(pidfile: &Path) -> Option<u32> {
    std::fs::read_to_string(pidfile).ok()?.trim().parse().ok()
}

/// Alive and not a zombie.
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| !rest.starts_with('Z')))
        .unwrap_or(false)
}

/// Whether `pid` is a `pilotctl daemon run` process.
fn is_our_daemon(pid: u32) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    args.windows(2).any(|w| w[0] == b"daemon" && w[1] == b"run")
}

async fn stop(ctx: &Ctx) -> Result<(), CliError> {
    let pid = read_pid(&ctx.paths.pidfile);
    let asked = match Client::connect(&ctx.paths.socket).await {
        Ok(client) => tokio::time::timeout(Duration::from_secs(5), client.shutdown())
            .await
            .ok()
            .and_then(Result::ok),
        Err(_) => None,
    };
    let Some(pid) = asked.or(pid) else {
        return Err(CliError::new("not_running", "daemon is not running"));
    };
    if asked.is_none() {
        if !alive(pid) {
            let _ = std::fs::remove_file(&ctx.paths.pidfile);
            return Err(CliError::new(
                "not_running",
                format!("daemon is not running (removed stale PID file for pid {pid})"),
            ));
        }
        if !is_our_daemon(pid) {
            return Err(CliError::new(
                "invalid_state",
                format!(
                    "pid {pid} in {} is not a pilotctl daemon; not signalling it",
                    ctx.paths.pidfile.display()
                ),
            ));
        }
        signal(pid, "TERM");
    }
    let forced = wait_exit(pid, Duration::from_secs(10)).await;
    ctx.out.ok(json!({"pid": pid, "forced": forced}), |d| {
        format!("Daemon stopped (pid {})", d["pid"])
    });
    Ok(())
}

/// Waits for `pid` to exit; kills it (if it is ours) after `grace`. Returns whether it was killed.
async fn wait_exit(pid: u32, grace: Duration) -> bool {
    let deadline = Instant::now() + grace;
    while alive(pid) {
        if Instant::now() >= deadline {
            if is_our_daemon(pid) {
                signal(pid, "KILL");
            }
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

fn signal(pid: u32, name: &str) {
    let _ = std::process::Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid.to_string())
        .status();
}

async fn status(ctx: &Ctx, check: bool) -> Result<(), CliError> {
    let pid = read_pid(&ctx.paths.pidfile).filter(|p| alive(*p));
    let info = answering_info(&ctx.paths.socket).await;
    if check {
        return if info.is_some() {
            Ok(())
        } else {
            std::process::exit(3)
        };
    }
    let mut data = json!({
        "running": pid.is_some() || info.is_some(),
        "responsive": info.is_some(),
        "pid": pid,
        "pid_file": ctx.paths.pidfile,
        "socket": ctx.paths.socket,
    });
    if let Some(info) = &info {
        for key in [
            "node_id",
            "address",
            "hostname",
            "uptime_secs",
            "peers",
            "connections",
        ] {
            data[key] = info[key].clone();
        }
    }
    let responsive = info.is_some();
    ctx.out.ok(data, |d| match d["responsive"].as_bool() {
        Some(true) => format!(
            "Daemon running (pid {})\n  Address:  {}",
            d["pid"],
            d["address"].as_str().unwrap_or_default()
        ),
        _ => "Daemon not running".to_owned(),
    });
    if responsive {
        Ok(())
    } else {
        Err(CliError::new("not_running", "daemon is not running"))
    }
}

pub(super) async fn rendezvous(ctx: &Ctx, args: RendezvousArgs) -> Result<(), CliError> {
    crate::logging::init(&ctx.log_level, ctx.log_format);
    let bad = |e: config::ConfigError| CliError::invalid(e.to_string());
    let config = crate::rendezvous::RendezvousConfig {
        registry: config::endpoint("registry listen", &args.registry_listen).map_err(bad)?,
        beacon: config::endpoint("beacon listen", &args.beacon_listen).map_err(bad)?,
        state_dir: args
            .state_dir
            .unwrap_or_else(|| ctx.paths.home.join("rendezvous")),
        admin_token: args.admin_token,
    };
    let rv = crate::rendezvous::start(&config)
        .await
        .map_err(|e| CliError::new("internal", format!("rendezvous: {e}")))?;
    ctx.out.ok(
        json!({"registry": rv.registry.to_string(), "beacon": rv.beacon.to_string()}),
        |d| {
            format!(
                "rendezvous running: registry {} beacon {}",
                d["registry"].as_str().unwrap_or_default(),
                d["beacon"].as_str().unwrap_or_default()
            )
        },
    );
    let _ = tokio::signal::ctrl_c().await;
    Ok(())
}

/// The last lines of the daemon log, for start-up errors.
fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join("\n")
}
