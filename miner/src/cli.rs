//! `deai miner`: run a miner, change its registration, or show what the ledger holds about it.
//!
//! Amounts are written in tokens with up to nine decimals (`deai_client::units`); `--json`
//! prints the API's views, amounts in base units as decimal strings, and errors as the API's
//! error object with a non-zero exit.

use crate::agent::MinerSettings;
use crate::registration::{self, Offer};
use anyhow::Context;
use deai_api::views::MinerView;
use deai_client::output::{emit, Printed};
use deai_client::units::{format_base_units, parse_tokens};
use deai_client::{Coordinators, Participant};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// A miner: run it (serve and claim), register or unregister it, show its status.
#[derive(clap::Args, Debug)]
pub struct MinerArgs {
    /// HTTP addresses of coordinators (`host:port,...`); the miner fails over among them.
    #[arg(long, env = "DEAI_COORDINATORS", default_value = "127.0.0.1:8100", global = true)]
    pub coordinator: String,
    /// The miner's key file (64 hex digits; make one with `deai keygen --out miner.key`).
    #[arg(long, env = "DEAI_MINER_KEY_FILE", default_value = "miner.key", global = true)]
    pub key: PathBuf,
    /// Print JSON (errors too, as the API's error object): amounts in base units as decimal
    /// strings. Without it, amounts are tokens with decimals. `run` logs instead.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub command: MinerCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum MinerCommand {
    /// Runs the miner until Ctrl-C: registers first unless the ledger lists it as active, keeps
    /// a session with the coordinators, serves its assignments and claims them.
    Run(RunArgs),
    /// Registers the miner: locks collateral and declares services, prices, capacity and
    /// endpoint (SPEC 5.10). Start serving with `deai miner run`.
    Register(RegisterArgs),
    /// Unregisters the miner: no new work; the collateral returns once in-flight orders end.
    Unregister,
    /// What the ledger holds about a miner: registration, collateral, services and prices,
    /// liveness, reputation, work and recent payouts.
    Status {
        /// The miner's id (64 hex digits); this key's miner when left out.
        id: Option<String>,
    },
}

/// The charged-mode prices a miner declares for every service it offers (SPEC 5.9).
#[derive(clap::Args, Debug)]
pub struct PriceArgs {
    /// Smallest price of a charged order that names this miner, in tokens (decimals allowed).
    #[arg(long, default_value = "0")]
    pub price_per_request: String,
    /// Price of one subscription period, in tokens (decimals allowed); without it the miner
    /// sells no subscriptions.
    #[arg(long)]
    pub subscription_price: Option<String>,
}

impl PriceArgs {
    /// `(price_per_request, subscription_price)` in base units.
    fn base_units(&self) -> anyhow::Result<(u128, Option<u128>)> {
        let per_request = parse_tokens(&self.price_per_request).context("--price-per-request")?;
        let subscription =
            self.subscription_price.as_deref().map(parse_tokens).transpose().context("--subscription-price")?;
        Ok((per_request, subscription))
    }
}

/// `deai miner run`.
#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Where to serve outputs to clients.
    #[arg(long, env = "DEAI_MINER_LISTEN", default_value = "127.0.0.1:9100")]
    pub listen: String,
    /// The URL clients use, if not `http://<listen>`.
    #[arg(long, env = "DEAI_MINER_ENDPOINT")]
    pub endpoint: Option<String>,
    /// Services offered, comma-separated (used when the miner registers).
    #[arg(long, default_value = "text-generation,text-embedding,image-generation")]
    pub services: String,
    /// `demo`, `openai:<url>[#model]` or `command:<program> [args]`.
    #[arg(long, env = "DEAI_MINER_BACKEND", default_value = "demo")]
    pub backend: String,
    /// Orders served at once (used when the miner registers).
    #[arg(long, default_value_t = 4)]
    pub capacity: u32,
    /// Collateral to lock if the miner registers, in tokens (decimals allowed).
    #[arg(long, default_value = "100")]
    pub collateral: String,
    /// Take the collateral from the dev faucet before registering (dev networks only).
    #[arg(long)]
    pub faucet: bool,
    #[command(flatten)]
    pub prices: PriceArgs,
}

/// `deai miner register`.
#[derive(clap::Args, Debug)]
pub struct RegisterArgs {
    /// Collateral to lock, in tokens (decimals allowed); at least the ledger's min_collateral.
    #[arg(long)]
    pub collateral: String,
    /// Services offered, comma-separated (names the ledger lists, e.g. text-generation).
    #[arg(long)]
    pub services: String,
    /// Orders served at once.
    #[arg(long, default_value_t = 4)]
    pub capacity: u32,
    /// The URL clients fetch outputs from (where `deai miner run --listen` serves them).
    #[arg(long)]
    pub endpoint: String,
    /// Take the collateral from the dev faucet first (dev networks only).
    #[arg(long)]
    pub faucet: bool,
    #[command(flatten)]
    pub prices: PriceArgs,
}

fn service_list(text: &str) -> Vec<String> {
    text.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect()
}

impl MinerArgs {
    /// The agent's settings for `run`.
    pub fn settings(&self, run: &RunArgs) -> anyhow::Result<MinerSettings> {
        let (price_per_request, subscription_price) = run.prices.base_units()?;
        Ok(MinerSettings {
            coordinators: self.coordinator.clone(),
            key: deai_api::key_file::load_signing_key(&self.key)?,
            listen: run.listen.clone(),
            endpoint: run.endpoint.clone(),
            services: service_list(&run.services),
            backend: run.backend.clone(),
            capacity: run.capacity,
            collateral: parse_tokens(&run.collateral).context("--collateral")?,
            use_faucet: run.faucet,
            price_per_request,
            subscription_price,
        })
    }

    fn participant(&self) -> anyhow::Result<Participant> {
        let key = deai_api::key_file::load_signing_key(&self.key)
            .with_context(|| format!("cannot read the miner's key file {}", self.key.display()))?;
        Ok(Participant::connect(key, Coordinators::new(&self.coordinator)?)?)
    }
}

/// Runs `deai miner`.
pub fn run_miner(args: &MinerArgs) -> anyhow::Result<()> {
    match &args.command {
        MinerCommand::Run(run) => {
            let settings = args.settings(run)?;
            let stop = Arc::new(AtomicBool::new(false));
            let on_signal = stop.clone();
            ctrlc::set_handler(move || on_signal.store(true, Ordering::Relaxed))
                .map_err(|e| anyhow::anyhow!("cannot handle SIGINT and SIGTERM: {e}"))?;
            crate::agent::run(settings, stop)
        }
        MinerCommand::Register(register) => emit(args.json, register_miner(args, register)),
        MinerCommand::Unregister => emit(args.json, unregister_miner(args)),
        MinerCommand::Status { id } => emit(args.json, miner_status(args, id.as_deref())),
    }
}

/// The ledger's view of the miner `me` just changed; it must exist.
fn changed_view(me: &Participant) -> anyhow::Result<MinerView> {
    registration::lookup(me, &me.id_hex())?
        .context("the entry was accepted but the miner is not listed; `deai miner status` shows it")
}

fn register_miner(args: &MinerArgs, register: &RegisterArgs) -> anyhow::Result<Printed> {
    let (price_per_request, subscription_price) = register.prices.base_units()?;
    let offer = Offer {
        collateral: parse_tokens(&register.collateral).context("--collateral")?,
        capacity: register.capacity,
        endpoint: register.endpoint.clone(),
        services: service_list(&register.services),
        price_per_request,
        subscription_price,
    };
    let me = args.participant()?;
    registration::register(&me, &offer, register.faucet)?;
    let view = changed_view(&me)?;
    let text = format!(
        "registered miner {} with {} tokens of collateral\n{}",
        view.id,
        format_base_units(&view.collateral),
        status_text(&view)
    );
    Ok(Printed::new(text, &view))
}

fn unregister_miner(args: &MinerArgs) -> anyhow::Result<Printed> {
    let me = args.participant()?;
    let before = registration::lookup(&me, &me.id_hex())?;
    registration::unregister(&me)?;
    let view = changed_view(&me)?;
    let collateral = before.map(|b| format_base_units(&b.collateral)).unwrap_or_default();
    let text = if view.status == registration::UNREGISTERED {
        format!("unregistered miner {}; {collateral} tokens of collateral returned to its balance", view.id)
    } else {
        format!(
            "miner {} is unregistering: no new work; its {collateral} tokens of collateral return once its {} in-flight orders end",
            view.id, view.in_flight
        )
    };
    Ok(Printed::new(text, &view))
}

fn miner_status(args: &MinerArgs, id: Option<&str>) -> anyhow::Result<Printed> {
    let me = args.participant()?;
    let id = id.map_or_else(|| me.id_hex(), str::to_string);
    let view: MinerView = me.api.get(&format!("/v1/miners/{id}"))?;
    Ok(Printed::new(status_text(&view), &view))
}

/// A miner's view for people: one fact a line.
fn status_text(v: &MinerView) -> String {
    let mut lines = vec![
        format!("miner         {}", v.id),
        format!("registration  {}{}", v.status, if v.ejected { " (ejected by governance)" } else { "" }),
        format!("collateral    {} tokens", format_base_units(&v.collateral)),
        format!("endpoint      {}", v.endpoint),
        format!("capacity      {} at once, {} in flight", v.capacity, v.in_flight),
        format!(
            "liveness      {} ({}; lease until {} ms, {} failures in a row)",
            v.liveness,
            if v.online { "online" } else { "offline" },
            v.lease_expires_ms,
            v.consecutive_failures
        ),
        format!(
            "reputation    {}.{:03} of 100 ({} raters: {} good, {} bad)",
            v.reputation_milli / 1000,
            v.reputation_milli % 1000,
            v.raters,
            v.good_ratings,
            v.bad_ratings
        ),
        format!("work          {} served, {} failed, {} timed out", v.served, v.failed, v.timed_out),
        format!("subscribers   {}", v.subscribers),
        format!("this epoch    contribution {}", v.epoch_contribution),
    ];
    for s in &v.services {
        let subscription = match &s.subscription_price {
            Some(p) => format!("{} tokens a subscription period", format_base_units(p)),
            None => "no subscriptions".to_string(),
        };
        lines.push(format!(
            "service       {}: {} tokens a charged request, {subscription}",
            s.service,
            format_base_units(&s.price_per_request)
        ));
    }
    if v.recent_payouts.is_empty() {
        lines.push("payouts       none in the last closed epochs".to_string());
    }
    for p in &v.recent_payouts {
        lines.push(format!(
            "payout        epoch {}: {} tokens{}",
            p.epoch,
            format_base_units(&p.amount),
            if p.certified { " (certified)" } else { "" }
        ));
    }
    lines.join("\n")
}
