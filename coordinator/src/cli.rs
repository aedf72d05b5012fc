//! The command lines of a coordinator's process and of its operators: `deai coordinator` and
//! `deai admin`.

use crate::admin_cli;
use crate::config::CoordinatorConfig;
use anyhow::Context;
use std::path::PathBuf;

/// Runs one coordinator node until SIGINT or SIGTERM.
#[derive(clap::Args, Debug)]
pub struct CoordinatorArgs {
    /// TOML configuration (`deai genesis` writes one per node); `DEAI_NODE_*` environment
    /// variables override its fields (`DEAI_NODE_HTTP_ADDR`, `DEAI_NODE_RAFT__HEARTBEAT_INTERVAL_MS`;
    /// docs/operations.md lists them).
    #[arg(long, env = "DEAI_NODE_CONFIG")]
    pub config: Option<PathBuf>,
}

impl CoordinatorArgs {
    /// The configuration, for the caller to set up logging from before [`run`](Self::run), and
    /// the `DEAI_NODE_*` variables that name no field (to warn about).
    pub fn load(&self) -> anyhow::Result<crate::config::Loaded> {
        CoordinatorConfig::load_from(self.config.as_deref(), std::env::vars())
    }
}

/// Runs the node under `config` on a new runtime.
pub fn run_coordinator(config: CoordinatorConfig) -> anyhow::Result<()> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?
        .block_on(crate::run::run(config))
}

/// Administers a running cluster through any of its nodes.
#[derive(clap::Args, Debug)]
pub struct AdminArgs {
    /// HTTP address of a node (`host:port`).
    #[arg(long, default_value = "127.0.0.1:8100", env = "DEAI_ADMIN_NODE")]
    pub node: String,
    /// Print the JSON answer.
    #[arg(long)]
    pub json: bool,
    /// The admin key file (64 hex digits; `deai genesis` writes `admin.key`) that signs
    /// commands changing the cluster.
    #[arg(long, env = "DEAI_ADMIN_KEY_FILE")]
    pub key: Option<PathBuf>,
    #[command(subcommand)]
    pub action: admin_cli::AdminAction,
}

pub fn run_admin(args: AdminArgs) -> anyhow::Result<()> {
    let key = args.key.map(|k| deai_api::key_file::load_signing_key(&k)).transpose()?;
    let answer = admin_cli::request(&args.node, &args.action, key.as_ref())?;
    match answer {
        _ if args.json => println!("{}", answer.to_json()?),
        admin_cli::AdminAnswer::Status(status) => admin_cli::print_status(&status),
        admin_cli::AdminAnswer::Done(done) => println!("{}", done.done),
    }
    Ok(())
}
