//! `deai`: the coordinator binary and its tools.
//!
//! - `deai genesis`: keys, genesis and node configurations for a new cluster.
//! - `deai coordinator`: runs one node (see `coordinator.rs`).
//! - `deai admin`: status and membership of a running cluster.
//! - `deai bench ledger`: replicated-ledger throughput and latency.
//! - `deai dev`: a whole local network (coordinators, miners, faucet); `--demo` checks a cycle.
//! - `deai miner`, `deai client`: the two participants' sides.

mod admin_auth;
mod admin_cli;
mod api_client;
mod backends;
mod bench_cycles;
mod bench_ledger;
mod client_cli;
mod config;
mod coordinator;
mod dev;
mod edge_verifier;
mod genesis;
mod http;
mod http_body;
mod invalid_input;
mod miner;

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "deai", version, about = "deai coordinator cluster")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates keys, a genesis and one config file per node for a new cluster.
    Genesis {
        /// Directory to write into; must not hold a genesis yet.
        #[arg(long)]
        out: PathBuf,
        /// The network id every message is signed for (1 to 32 bytes).
        #[arg(long, default_value = "deai-local")]
        network: String,
        #[arg(long, default_value_t = 3)]
        coordinators: u64,
        /// Host the node configurations listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// Node i listens for Raft traffic on this port plus i.
        #[arg(long, default_value_t = 7100)]
        raft_port_base: u16,
        /// Node i serves HTTP on this port plus i.
        #[arg(long, default_value_t = 8100)]
        http_port_base: u16,
        /// A production network: no dev faucet.
        #[arg(long)]
        no_faucet: bool,
        /// Accepted entries between signed checkpoints (SPEC 6.3).
        #[arg(long)]
        checkpoint_every: Option<u64>,
        /// Length of a reward epoch, in milliseconds.
        #[arg(long)]
        epoch_ms: Option<u64>,
    },
    /// Runs one coordinator node until SIGINT or SIGTERM.
    Coordinator {
        /// TOML configuration; `DEAI_*` environment variables override it.
        #[arg(long, env = "DEAI_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Administers a running cluster through any of its nodes.
    Admin {
        /// HTTP address of a node (`host:port`).
        #[arg(long, default_value = "127.0.0.1:8100", env = "DEAI_ADMIN_NODE")]
        node: String,
        /// Print the JSON answer.
        #[arg(long)]
        json: bool,
        /// The admin key file (64 hex digits; `deai genesis` writes `admin.key`) that signs
        /// commands changing the cluster.
        #[arg(long, env = "DEAI_ADMIN_KEY_FILE")]
        key: Option<PathBuf>,
        #[command(subcommand)]
        action: admin_cli::AdminAction,
    },
    /// A whole local network on loopback: 3 coordinators, 3 demo miners, a faucet.
    Dev {
        /// Keep the network's files here (a temporary directory otherwise).
        #[arg(long)]
        dir: Option<PathBuf>,
        #[arg(long, default_value_t = 7100)]
        raft_port_base: u16,
        #[arg(long, default_value_t = 8100)]
        http_port_base: u16,
        #[arg(long, default_value_t = 9100)]
        miner_port_base: u16,
        /// Run a scripted client through full cycles and an epoch close, then exit.
        #[arg(long)]
        demo: bool,
        /// Task cycles the demo runs.
        #[arg(long, default_value_t = 6)]
        demo_cycles: usize,
    },
    /// Runs a miner: registers, keeps a session with the coordinators, serves and claims.
    Miner {
        /// HTTP addresses of coordinators (`host:port,...`); the session fails over among them.
        #[arg(long, env = "DEAI_COORDINATORS")]
        coordinator: String,
        /// The miner's key file (64 hex digits).
        #[arg(long)]
        key: PathBuf,
        /// Where to serve outputs to clients.
        #[arg(long, default_value = "127.0.0.1:9100")]
        listen: String,
        /// The URL clients use, if not `http://<listen>`.
        #[arg(long)]
        endpoint: Option<String>,
        /// Services offered, comma-separated.
        #[arg(long, default_value = "text-generation,text-embedding,image-generation")]
        services: String,
        /// `demo`, `openai:<url>[#model]` or `command:<program> [args]`.
        #[arg(long, default_value = "demo")]
        backend: String,
        #[arg(long, default_value_t = 4)]
        capacity: u32,
        /// Collateral to lock, in tokens.
        #[arg(long, default_value_t = 100)]
        collateral: u128,
        /// Take the collateral from the dev faucet first.
        #[arg(long)]
        faucet: bool,
    },
    /// A client: stake, pass, order, fetch and check outputs, rate.
    Client {
        #[arg(long, env = "DEAI_COORDINATORS", default_value = "127.0.0.1:8100")]
        coordinator: String,
        #[arg(long, default_value = "client.key")]
        key: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(subcommand)]
        action: client_cli::ClientAction,
    },
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        bench: Bench,
    },
}

#[derive(Subcommand)]
enum Bench {
    /// Full signed task cycles/s through the HTTP API of a 3-node cluster.
    Cycles {
        /// Simulated clients, each with one cycle in flight.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        #[arg(long, default_value_t = 4)]
        miners: usize,
        #[arg(long, default_value_t = 20)]
        duration_s: u64,
        /// Cap on cycles started per second (all clients), to measure latency below saturation.
        #[arg(long)]
        rate: Option<u64>,
        /// Clients sign their orders and ratings during the run, on the same cores as the
        /// coordinators, instead of ahead of it (miners always sign their claims during it).
        #[arg(long)]
        sign_live: bool,
        #[arg(long)]
        json: bool,
    },
    /// Committed writes/s and latency of a 3-node loopback cluster with fsync.
    Ledger {
        /// Concurrent writers, each with one write in flight.
        #[arg(long, default_value_t = 32)]
        writers: usize,
        /// Writes in all, split evenly between the writers.
        #[arg(long, default_value_t = 50_000)]
        writes: u64,
        /// Least payload bytes per write (whole signed entries are added until it is reached).
        #[arg(long, default_value_t = 256)]
        entry_bytes: usize,
        /// Keep the databases here instead of a temporary directory.
        #[arg(long)]
        data_dir: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn init_logs(json: bool, default_filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DEAI_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_filter));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_ansi(ansi).with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

fn main() -> std::process::ExitCode {
    match run(Cli::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Genesis {
            out,
            network,
            coordinators,
            host,
            raft_port_base,
            http_port_base,
            no_faucet,
            checkpoint_every,
            epoch_ms,
        } => {
            let new = genesis::NewCluster {
                network,
                coordinators,
                host,
                raft_port_base,
                http_port_base,
                dev: !no_faucet,
                checkpoint_every,
                epoch_ms,
            };
            genesis::write(&out, &new)?;
            println!("wrote a {coordinators}-coordinator cluster for network {:?} to {}", new.network, out.display());
            for i in 0..coordinators {
                println!("  deai coordinator --config {}", out.join(format!("node-{i}.toml")).display());
            }
            Ok(())
        }
        Command::Coordinator { config } => {
            let config = config::CoordinatorConfig::load(config.as_deref())?;
            init_logs(config.log_format == "json", "info,openraft=warn");
            runtime()?.block_on(coordinator::run(config))
        }
        Command::Admin { node, json, key, action } => {
            let key = key
                .map(|k| {
                    deai_cluster::identity::CoordinatorIdentity::load(&k)
                        .map(|i| i.signing)
                        .map_err(|e| anyhow::anyhow!("admin key {}: {e}", k.display()))
                })
                .transpose()?;
            let answer = admin_cli::request(&node, &action, key.as_ref())?;
            if json {
                println!("{}", serde_json::to_string_pretty(&answer)?);
            } else if matches!(action, admin_cli::AdminAction::Status) {
                admin_cli::print_status(&answer);
            } else {
                println!("{}", answer["done"].as_str().unwrap_or("done"));
            }
            Ok(())
        }
        Command::Dev { dir, raft_port_base, http_port_base, miner_port_base, demo, demo_cycles } => {
            init_logs(false, "warn,openraft=off,actix_server=error");
            dev::run(dev::DevSettings { dir, raft_port_base, http_port_base, miner_port_base, demo, demo_cycles })
        }
        Command::Miner { coordinator, key, listen, endpoint, services, backend, capacity, collateral, faucet } => {
            init_logs(false, "info,actix_server=warn");
            let key = deai_cluster::identity::CoordinatorIdentity::load(&key)?.signing;
            let settings = miner::MinerSettings {
                coordinators: coordinator,
                key,
                listen,
                endpoint,
                services: services.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect(),
                backend,
                capacity,
                collateral_tokens: collateral,
                use_faucet: faucet,
            };
            let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
            let on_signal = stop.clone();
            std::thread::spawn(move || {
                if let Ok(rt) = tokio::runtime::Builder::new_current_thread().enable_all().build() {
                    let _ = rt.block_on(tokio::signal::ctrl_c());
                }
                on_signal.store(true, std::sync::atomic::Ordering::Relaxed);
            });
            miner::run(settings, stop)
        }
        Command::Client { coordinator, key, json, action } => {
            if matches!(action, client_cli::ClientAction::Keygen) {
                let seed = {
                    let mut seed = [0u8; 32];
                    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
                    seed
                };
                let identity = deai_cluster::identity::CoordinatorIdentity::from_seed(seed);
                identity.save(&key)?;
                println!("wrote {} (id {})", key.display(), api_client::hex(&identity.id().0));
                return Ok(());
            }
            let signing = deai_cluster::identity::CoordinatorIdentity::load(&key)?.signing;
            let me = api_client::Participant::connect(signing, api_client::Coordinators::new(&coordinator)?)?;
            let (text, value) = client_cli::run(&me, &action)?;
            if json {
                println!("{value}");
            } else {
                println!("{text}");
            }
            Ok(())
        }
        Command::Bench { bench: Bench::Cycles { clients, miners, duration_s, rate, sign_live, json } } => {
            init_logs(false, "warn,openraft=off,actix_server=error");
            let report =
                bench_cycles::run(&bench_cycles::CyclesBench { clients, miners, duration_s, rate, sign_live })?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                bench_cycles::print(&report);
            }
            Ok(())
        }
        Command::Bench { bench: Bench::Ledger { writers, writes, entry_bytes, data_dir, json } } => {
            // The benchmark's own lines are the output; startup chatter would only interleave.
            init_logs(false, "warn,openraft=error");
            let settings = bench_ledger::LedgerBench { writers, writes, entry_bytes, data_dir };
            let report = runtime()?.block_on(bench_ledger::run(&settings))?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                bench_ledger::print(&report);
            }
            Ok(())
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread().enable_all().build().context("cannot start the async runtime")
}
