//! The command lines of the tools: `deai genesis`, `deai keygen`, `deai dev` and `deai bench`.

use crate::{bench_cycles, bench_ledger, dev, genesis};
use anyhow::Context;
use deai_cluster::identity::CoordinatorIdentity;
use std::path::PathBuf;

/// Creates keys, a genesis and one config file per node for a new cluster.
#[derive(clap::Args, Debug)]
pub struct GenesisArgs {
    /// Directory to write into; must not hold a genesis yet.
    #[arg(long)]
    pub out: PathBuf,
    /// The network id every message is signed for (1 to 32 bytes).
    #[arg(long, default_value = "deai-local")]
    pub network: String,
    /// Coordinators in the cluster (1 to 16).
    #[arg(long, default_value_t = 3)]
    pub coordinators: u64,
    /// Host the node configurations listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Node i listens for Raft traffic on this port plus i.
    #[arg(long, default_value_t = 7100)]
    pub raft_port_base: u16,
    /// Node i serves HTTP on this port plus i.
    #[arg(long, default_value_t = 8100)]
    pub http_port_base: u16,
    /// A production network: no dev faucet (the default genesis has one).
    #[arg(long)]
    pub no_faucet: bool,
    /// Accepted entries between signed checkpoints (SPEC 6.3).
    #[arg(long)]
    pub checkpoint_every: Option<u64>,
    /// Length of a reward epoch, in milliseconds (default one hour).
    #[arg(long)]
    pub epoch_ms: Option<u64>,
    /// How long a governance proposal stays open for votes, in milliseconds (default a week).
    #[arg(long)]
    pub voting_period_ms: Option<u64>,
}

pub fn run_genesis(args: GenesisArgs) -> anyhow::Result<()> {
    let new = genesis::NewCluster {
        network: args.network,
        coordinators: args.coordinators,
        host: args.host,
        raft_port_base: args.raft_port_base,
        http_port_base: args.http_port_base,
        dev: !args.no_faucet,
        checkpoint_every: args.checkpoint_every,
        epoch_ms: args.epoch_ms,
        voting_period_ms: args.voting_period_ms,
    };
    genesis::write(&args.out, &new)?;
    println!(
        "wrote a {}-coordinator cluster for network {:?} to {}",
        new.coordinators,
        new.network,
        args.out.display()
    );
    for i in 0..new.coordinators {
        println!("  deai coordinator --config {}", args.out.join(format!("node-{i}.toml")).display());
    }
    Ok(())
}

/// Writes a new key file: a client's, a miner's, an admin's or a coordinator's.
#[derive(clap::Args, Debug)]
pub struct KeygenArgs {
    /// The file to write (never overwritten; readable by its owner only).
    #[arg(long)]
    pub out: PathBuf,
    /// Also print the VRF public key a coordinator's key derives, as a genesis lists it.
    #[arg(long)]
    pub coordinator: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run_keygen(args: KeygenArgs) -> anyhow::Result<()> {
    let seed = genesis::fresh_seed()?;
    deai_api::key_file::save_seed(&args.out, &seed)?;
    let identity = CoordinatorIdentity::from_seed(seed);
    let id = deai_api::hex::hex(&identity.id().0);
    let vrf = deai_api::hex::hex(&identity.info().vrf_key);
    if args.json {
        let mut value = serde_json::json!({ "file": args.out.display().to_string(), "id": id });
        if args.coordinator {
            value["vrf_key"] = serde_json::Value::String(vrf);
        }
        println!("{value}");
    } else {
        println!("wrote {} (id {id})", args.out.display());
        if args.coordinator {
            println!("VRF public key {vrf}");
        }
    }
    Ok(())
}

/// A whole local network on loopback: 3 coordinators, 3 demo miners, a faucet.
#[derive(clap::Args, Debug)]
pub struct DevArgs {
    /// Keep the network's files here (a temporary directory otherwise).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Coordinator i listens for Raft traffic on this port plus i.
    #[arg(long, default_value_t = 7100)]
    pub raft_port_base: u16,
    /// Coordinator i serves the API on this port plus i.
    #[arg(long, default_value_t = 8100)]
    pub http_port_base: u16,
    /// Miner i serves outputs on this port plus i.
    #[arg(long, default_value_t = 9100)]
    pub miner_port_base: u16,
    /// Run a scripted client through full cycles and an epoch close, then exit.
    #[arg(long)]
    pub demo: bool,
    /// Task cycles the demo runs.
    #[arg(long, default_value_t = 6)]
    pub demo_cycles: usize,
}

pub fn run_dev(args: DevArgs) -> anyhow::Result<()> {
    dev::run(dev::DevSettings {
        dir: args.dir,
        raft_port_base: args.raft_port_base,
        http_port_base: args.http_port_base,
        miner_port_base: args.miner_port_base,
        demo: args.demo,
        demo_cycles: args.demo_cycles,
    })
}

/// Benchmarks.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Full signed task cycles/s through the HTTP API of a 3-node cluster.
    Cycles {
        /// Simulated clients, each with one cycle in flight.
        #[arg(long, default_value_t = 64)]
        clients: usize,
        /// Simulated miners.
        #[arg(long, default_value_t = 4)]
        miners: usize,
        /// How long to run, in seconds.
        #[arg(long, default_value_t = 20)]
        duration_s: u64,
        /// Cap on cycles started per second (all clients), to measure latency below saturation.
        #[arg(long)]
        rate: Option<u64>,
        /// Clients sign their orders and ratings during the run, on the same cores as the
        /// coordinators, instead of ahead of it (miners always sign their claims during it).
        #[arg(long)]
        sign_live: bool,
        /// Print the report as JSON.
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

pub fn run_bench(bench: BenchCommand) -> anyhow::Result<()> {
    match bench {
        BenchCommand::Cycles { clients, miners, duration_s, rate, sign_live, json } => {
            let report =
                bench_cycles::run(&bench_cycles::CyclesBench { clients, miners, duration_s, rate, sign_live })?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                bench_cycles::print(&report);
            }
        }
        BenchCommand::Ledger { writers, writes, entry_bytes, data_dir, json } => {
            let settings = bench_ledger::LedgerBench { writers, writes, entry_bytes, data_dir };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let report = runtime.block_on(bench_ledger::run(&settings))?;
            if json {
                println!("{}", serde_json::to_string(&report)?);
            } else {
                bench_ledger::print(&report);
            }
        }
    }
    Ok(())
}
