//! `deai miner`: run a miner, or change its registration.

use crate::agent::MinerSettings;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Runs a miner: registers, keeps a session with the coordinators, serves and claims.
#[derive(clap::Args, Debug)]
pub struct MinerArgs {
    /// HTTP addresses of coordinators (`host:port,...`); the session fails over among them.
    #[arg(long, env = "DEAI_COORDINATORS", default_value = "127.0.0.1:8100")]
    pub coordinator: String,
    /// The miner's key file (64 hex digits; make one with `deai keygen --out miner.key`).
    #[arg(long, env = "DEAI_MINER_KEY_FILE", default_value = "miner.key")]
    pub key: PathBuf,
    /// Where to serve outputs to clients.
    #[arg(long, env = "DEAI_MINER_LISTEN", default_value = "127.0.0.1:9100")]
    pub listen: String,
    /// The URL clients use, if not `http://<listen>`.
    #[arg(long, env = "DEAI_MINER_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Services offered, comma-separated.
    #[arg(long, default_value = "text-generation,text-embedding,image-generation")]
    pub services: String,
    /// `demo`, `openai:<url>[#model]` or `command:<program> [args]`.
    #[arg(long, env = "DEAI_MINER_BACKEND", default_value = "demo")]
    pub backend: String,
    /// Orders served at once.
    #[arg(long, default_value_t = 4)]
    pub capacity: u32,
    /// Collateral to lock at registration, in tokens (decimals allowed).
    #[arg(long, default_value = "100")]
    pub collateral: String,
    /// Take the collateral from the dev faucet first (dev networks only).
    #[arg(long)]
    pub faucet: bool,
}

impl MinerArgs {
    pub fn settings(&self) -> anyhow::Result<MinerSettings> {
        Ok(MinerSettings {
            coordinators: self.coordinator.clone(),
            key: deai_api::key_file::load_signing_key(&self.key)?,
            listen: self.listen.clone(),
            endpoint: self.endpoint.clone(),
            services: self.services.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
            backend: self.backend.clone(),
            capacity: self.capacity,
            collateral: deai_client::units::parse_tokens(&self.collateral)?,
            use_faucet: self.faucet,
        })
    }
}

/// Runs the miner until Ctrl-C.
pub fn run_miner(args: &MinerArgs) -> anyhow::Result<()> {
    let settings = args.settings()?;
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = stop.clone();
    ctrlc::set_handler(move || on_signal.store(true, Ordering::Relaxed))
        .map_err(|e| anyhow::anyhow!("cannot handle SIGINT and SIGTERM: {e}"))?;
    crate::agent::run(settings, stop)
}
