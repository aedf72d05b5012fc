//! `deai`: one binary for every role. Each subcommand lives in the crate of its role; this file
//! only parses the command line, sets up logging and dispatches.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "deai", version, about = "deai: a coordinator cluster for a decentralized AI-service marketplace")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Creates keys, a genesis and one config file per node for a new cluster.
    Genesis(deai_devtools::cli::GenesisArgs),
    /// Writes a new key file (client, miner, admin or coordinator).
    Keygen(deai_devtools::cli::KeygenArgs),
    /// Runs one coordinator node until SIGINT or SIGTERM.
    Coordinator(deai_coordinator::cli::CoordinatorArgs),
    /// Administers a running cluster through any of its nodes.
    Admin(deai_coordinator::cli::AdminArgs),
    /// A whole local network on loopback: 3 coordinators, 3 demo miners, a faucet.
    Dev(deai_devtools::cli::DevArgs),
    /// A miner: run it (serve and claim), register or unregister it, show its status.
    Miner(deai_miner::cli::MinerArgs),
    /// A client: stake, pass, order, fetch and check outputs, rate, read the market.
    ///
    /// Stake and a service pass for free orders, or pay per request, or subscribe to a miner;
    /// order a service, wait for the output and check it against the hash the miner claimed;
    /// rate it or report it undelivered; list providers, closed epochs and payouts.
    ///
    /// Amounts: people write and read tokens with up to 9 decimals (`1.5`); with --json, amounts
    /// are decimal strings of base units (1 token = 1000000000 base units), as the API writes
    /// them. With --json, an error is the API's error object (`code`, `message`) on stdout, and
    /// the exit status is non-zero.
    Client(deai_client::cli::ClientArgs),
    /// Governance: propose changes, vote with locked stake, show proposals and tallies.
    Gov(deai_client::gov::GovArgs),
    /// Breaks a cluster of real coordinator processes on purpose and checks that nothing was lost.
    ///
    /// Starts 3 or 5 `deai coordinator` processes, runs concurrent clients against them while
    /// faults scheduled from --seed hit (kill, pause), records every operation, checks the
    /// history (no acknowledged write lost, linearizable reads, increasing nonces, replicas
    /// agreeing, no panic) and writes OUT/index.html and OUT/results.json. Exits non-zero when
    /// an invariant failed.
    Chaos(deai_chaos::cli::ChaosArgs),
    /// Runs the whole cluster in one process on virtual time, faults drawn from a seed.
    ///
    /// The real nodes (openraft, redb storage, the ledger, the write batcher) on a simulated
    /// network that delays, loses and reorders messages and partitions nodes, with nodes
    /// crashing and restarting from disk; clients write and read linearizably meanwhile. The
    /// invariants are checked after every step. `--seed N` replays one seed exactly; `--seeds
    /// N` runs many and prints each failing seed with its replay command. Exits non-zero when
    /// an invariant failed.
    Sim(deai_sim::cli::SimArgs),
    /// Benchmarks.
    Bench {
        #[command(subcommand)]
        bench: deai_devtools::cli::BenchCommand,
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
        Command::Genesis(args) => deai_devtools::cli::run_genesis(args),
        Command::Keygen(args) => deai_devtools::cli::run_keygen(args),
        Command::Coordinator(args) => {
            let loaded = args.load()?;
            init_logs(loaded.config.log_format == "json", "info,openraft=warn");
            for name in &loaded.ignored_env {
                tracing::warn!(variable = %name, "ignored: it names no coordinator setting (docs/operations.md lists them)");
            }
            deai_coordinator::cli::run_coordinator(loaded.config)
        }
        Command::Admin(args) => deai_coordinator::cli::run_admin(args),
        Command::Dev(args) => {
            init_logs(false, "warn,openraft=off,actix_server=error");
            deai_devtools::cli::run_dev(args)
        }
        Command::Miner(args) => {
            init_logs(false, "info");
            deai_miner::cli::run_miner(&args)
        }
        Command::Client(args) => deai_client::cli::run_client(&args),
        Command::Gov(args) => deai_client::gov::run_gov(&args),
        Command::Chaos(args) => {
            init_logs(false, "info,openraft=off,actix_server=error");
            if deai_chaos::cli::run_chaos(&args)? {
                Ok(())
            } else {
                anyhow::bail!("an invariant failed: see {}", args.out.join("index.html").display())
            }
        }
        Command::Sim(args) => {
            // A node's complaints (a leader cut off, a batcher ending with its crashed node) are
            // the faults working; the verdict is the output. DEAI_LOG shows them.
            init_logs(false, "off");
            if deai_sim::cli::run_sim(&args)? {
                Ok(())
            } else {
                anyhow::bail!("an invariant failed: replay a seed with the command printed above")
            }
        }
        Command::Bench { bench } => {
            // The benchmark's own lines are the output; startup chatter would only interleave.
            init_logs(false, "warn,openraft=off,actix_server=error");
            deai_devtools::cli::run_bench(bench)
        }
    }
}
