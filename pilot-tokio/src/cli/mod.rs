//! `pilotctl`: argument parsing (clap), configuration resolution and command dispatch.
//!
//! Every command has help text (`pilotctl <command> --help`). `--json` works anywhere on the
//! line. Exit codes: 0 success, 1 failure, 2 usage or invalid argument, 3 daemon not running,
//! 4 not found, 5 timeout, 6 already exists, 7 not available (not offered by this daemon or
//! its registry).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

mod control;
mod daemon_cmd;
mod directory;
mod net;
pub mod output;
mod webhook;

use output::{CliError, Out};

use crate::client::Client;
use crate::config::{self, FileConfig, Paths};

/// Pilot Protocol: an overlay network of virtual addresses, encrypted tunnels, trust and topic
/// pub/sub. `pilotctl daemon start` runs a node; the other commands talk to it.
#[derive(Debug, Parser)]
#[command(
    name = "pilotctl",
    version,
    propagate_version = true,
    arg_required_else_help = true
)]
pub struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

/// Options every command accepts.
#[derive(Debug, Args)]
struct Global {
    /// Machine output: one JSON envelope (or one JSON object per event when streaming).
    #[arg(long, global = true)]
    json: bool,
    /// State directory (identity, socket, PID file, log) [default: ~/.pilot].
    #[arg(long, global = true, env = "PILOT_HOME", value_name = "DIR")]
    home: Option<PathBuf>,
    /// Daemon IPC socket [default: <home>/pilot.sock].
    #[arg(long, global = true, env = "PILOT_SOCKET", value_name = "PATH")]
    socket: Option<PathBuf>,
    /// Config file (JSON object; flags and environment win over it) [default: <home>/config.json].
    #[arg(long, global = true, env = "PILOT_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// Log filter for the daemon and rendezvous (error, warn, info, debug, trace).
    #[arg(long, global = true, env = "PILOT_LOG_LEVEL", value_name = "LEVEL")]
    log_level: Option<String>,
    /// Log format: text or json.
    #[arg(long, global = true, env = "PILOT_LOG_FORMAT", value_name = "FORMAT")]
    log_format: Option<String>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Start, stop, inspect or run the local daemon.
    Daemon {
        #[command(subcommand)]
        action: daemon_cmd::DaemonAction,
    },
    /// Run a rendezvous (registry + beacon) for other nodes, in the foreground.
    Rendezvous(daemon_cmd::RendezvousArgs),
    /// Show this node's address, hostname, connections and keys.
    Info,
    /// Claim a hostname at the registry.
    SetHostname {
        /// Lower-case letters, digits and '-', at most 63 characters.
        hostname: String,
    },
    /// Release this node's hostname.
    ClearHostname,
    /// Look up a node by hostname.
    Find {
        /// The hostname to resolve.
        hostname: String,
    },
    /// Ask a node for trust.
    Handshake {
        /// Node id, address or hostname.
        target: String,
        /// Why you ask (shown to the other side).
        justification: Vec<String>,
    },
    /// Approve a pending trust request.
    Approve {
        /// The requesting node id.
        node_id: u32,
    },
    /// Reject a pending trust request.
    Reject {
        /// The requesting node id.
        node_id: u32,
        /// Why (optional).
        reason: Vec<String>,
    },
    /// List trust requests waiting for approval.
    Pending,
    /// List trusted nodes.
    Trust,
    /// Revoke trust in a node.
    Untrust {
        /// The node id.
        node_id: u32,
    },
    /// List peers with tunnels to this node.
    Peers {
        /// Only peers whose node id or endpoint contains this text.
        #[arg(long)]
        search: Option<String>,
    },
    /// List open connections.
    Connections,
    /// Measure round trips to a node's echo port (exits non-zero if no reply arrives).
    Ping(net::PingArgs),
    /// Send a message to a port on a node and print the reply.
    Send(net::SendArgs),
    /// Receive messages sent to a port on this node.
    Recv(net::RecvArgs),
    /// Send a file to a node's data-exchange port (1001), with a progress bar on a terminal.
    SendFile(net::SendFileArgs),
    /// Print datagrams arriving at a port on this node.
    Listen(net::ListenArgs),
    /// Print events on a topic: `subscribe <topic>` (this node) or `subscribe <node> <topic>`.
    Subscribe(net::SubscribeArgs),
    /// Publish an event: `publish <topic> <data>` or `publish <node> <topic> --data <data>`.
    Publish(net::PublishArgs),
    #[command(flatten)]
    Directory(directory::DirectoryCommand),
    /// Receive provider webhooks as events (`set-webhook <url>`) and/or POST events out
    /// (`--outbound <url>`), signed and retried.
    SetWebhook(webhook::SetWebhookArgs),
    /// Stop the webhook receiver and/or outbound delivery (both by default).
    ClearWebhook(webhook::ClearWebhookArgs),
    /// Show the webhook configuration and counters (received, duplicates, rejected, delivered).
    WebhookStatus,
}

/// Runs `pilotctl` with the process arguments and returns the exit code.
pub fn main() -> i32 {
    let json = std::env::args().any(|a| a == "--json");
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e, json),
    };
    let out = Out {
        json: cli.global.json,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            out.error(&CliError::new(
                "internal",
                format!("cannot start the async runtime: {e}"),
            ));
            return 1;
        }
    };
    match runtime.block_on(run(cli, out)) {
        Ok(()) => 0,
        Err(e) => {
            out.error(&e);
            e.exit_code()
        }
    }
}

fn usage_error(e: &clap::Error, json: bool) -> i32 {
    use clap::error::ErrorKind;
    if json && !matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let text = e.kind().as_str().unwrap_or("invalid arguments").to_owned();
        Out { json }.error(&CliError::invalid(format!("{text}: {}", first_line(e))));
        return 2;
    }
    let _ = e.print();
    e.exit_code()
}

fn first_line(e: &clap::Error) -> String {
    e.to_string()
        .lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
        .to_owned()
}

/// Resolved configuration shared by the commands.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub(crate) out: Out,
    pub(crate) paths: Paths,
    pub(crate) file: FileConfig,
    pub(crate) log_level: String,
    pub(crate) log_format: crate::logging::LogFormat,
}

impl Ctx {
    fn new(global: Global, identity: Option<PathBuf>) -> Result<Ctx, CliError> {
        let home = global.home.unwrap_or_else(config::default_home);
        let explicit = global.config.is_some();
        let config_path = global.config.unwrap_or_else(|| home.join("config.json"));
        let file = config::load_file(&config_path, explicit)
            .map_err(|e| CliError::invalid(e.to_string()))?;
        let log_level =
            config::pick(global.log_level, &file.log_level).unwrap_or_else(|| "info".into());
        let log_format = config::pick(global.log_format, &file.log_format)
            .map(|f| f.parse())
            .transpose()
            .map_err(CliError::invalid)?
            .unwrap_or_default();
        let paths = Paths::new(&home, global.socket, identity, &file);
        Ok(Ctx {
            out: Out { json: global.json },
            paths,
            file,
            log_level,
            log_format,
        })
    }

    /// Connects to the local daemon.
    pub(crate) async fn client(&self) -> Result<Client, CliError> {
        Ok(Client::connect(&self.paths.socket).await?)
    }
}

async fn run(cli: Cli, out: Out) -> Result<(), CliError> {
    let identity = match &cli.command {
        Command::Daemon { action } => action.identity(),
        _ => None,
    };
    let ctx = Ctx::new(cli.global, identity)?;
    debug_assert_eq!(ctx.out.json, out.json);
    match cli.command {
        Command::Daemon { action } => daemon_cmd::run(&ctx, action).await,
        Command::Rendezvous(args) => daemon_cmd::rendezvous(&ctx, args).await,
        Command::Ping(args) => net::ping(&ctx, args).await,
        Command::Send(args) => net::send(&ctx, args).await,
        Command::Recv(args) => net::recv(&ctx, args).await,
        Command::SendFile(args) => net::send_file(&ctx, args).await,
        Command::Listen(args) => net::listen(&ctx, args).await,
        Command::Subscribe(args) => net::subscribe(&ctx, args).await,
        Command::Publish(args) => net::publish(&ctx, args).await,
        Command::Directory(command) => directory::run(&ctx, command).await,
        Command::SetWebhook(args) => webhook::set(&ctx, args).await,
        Command::ClearWebhook(args) => webhook::clear(&ctx, args).await,
        Command::WebhookStatus => webhook::status(&ctx).await,
        other => control::run(&ctx, other).await,
    }
}
