//! `deai dev`: a whole local network on loopback, one command, no setup.
//!
//! Three coordinators (tasks of this process, each with its own database, Raft over real TCP
//! and its own HTTP endpoint), three miners running the demo services, and a dev genesis with a
//! faucet and short epochs. It prints the endpoints and a client example and runs until Ctrl-C.
//! With `--demo` a scripted client runs full task cycles, waits for the epoch to close, checks
//! that the payouts sum exactly to the epoch's reward and reached the miners, prints what
//! happened, and exits 0 only if all of that held.

use crate::genesis::NewCluster;
use anyhow::bail;
use deai_client::cli::{fetch_output, put_order, rate};
use deai_client::{Coordinators, Participant};
use deai_coordinator::config::CoordinatorConfig;
use deai_miner::MinerSettings;
use deai_protocol::message::{AcquirePass, DevFaucet, LockStake, Message};
use deai_protocol::types::{AssetId, Rating};
use ed25519_dalek::SigningKey;
use serde_json::Value;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Coordinators and miners in a dev network.
pub const DEV_COORDINATORS: u64 = 3;
pub const DEV_MINERS: u16 = 3;
/// Reward epoch length of a dev network, in milliseconds.
pub const DEV_EPOCH_MS: u64 = 8_000;
/// Longest the demo waits for the network, an order or the epoch close, in milliseconds.
pub const DEMO_WAIT_MS: u64 = 60_000;
/// Pause between readiness and epoch polls, in milliseconds.
const DEV_POLL_MS: u64 = 50;

pub struct DevSettings {
    pub dir: Option<PathBuf>,
    pub raft_port_base: u16,
    pub http_port_base: u16,
    pub miner_port_base: u16,
    pub demo: bool,
    pub demo_cycles: usize,
}

fn random_key() -> anyhow::Result<SigningKey> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(SigningKey::from_bytes(&seed))
}

fn wait_until<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let started = Instant::now();
    loop {
        if let Some(v) = check() {
            return Ok(v);
        }
        if started.elapsed() > Duration::from_millis(DEMO_WAIT_MS) {
            bail!("timed out after {DEMO_WAIT_MS} ms waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(DEV_POLL_MS));
    }
}

/// Every port the network will listen on, with what listens there.
fn ports(settings: &DevSettings) -> Vec<(u16, String)> {
    let mut ports = Vec::new();
    for i in 0..DEV_COORDINATORS as u16 {
        ports.push((
            settings.raft_port_base.saturating_add(i),
            format!("coordinator {i}'s peer port (--raft-port-base)"),
        ));
        ports.push((settings.http_port_base.saturating_add(i), format!("coordinator {i}'s API (--http-port-base)")));
    }
    for i in 0..DEV_MINERS {
        ports.push((
            settings.miner_port_base.saturating_add(i),
            format!("miner {i}'s output server (--miner-port-base)"),
        ));
    }
    ports
}

/// Fails at once, naming the port, if any port the network needs is taken (another `deai dev`
/// would otherwise answer this one's readiness checks).
fn check_ports_free(settings: &DevSettings) -> anyhow::Result<()> {
    for (port, what) in ports(settings) {
        if let Err(e) = std::net::TcpListener::bind(("127.0.0.1", port)) {
            bail!(
                "port {port} ({what}) is not free: {e}. Stop what listens there (another `deai dev`?) \
                 or choose other ports with --raft-port-base, --http-port-base and --miner-port-base"
            );
        }
    }
    Ok(())
}

pub fn run(settings: DevSettings) -> anyhow::Result<()> {
    check_ports_free(&settings)?;
    let temp;
    let dir = match &settings.dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new().prefix("deai-dev-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    if !dir.join("genesis.bin").exists() {
        crate::genesis::write(
            &dir,
            &NewCluster {
                network: "deai-dev".into(),
                coordinators: DEV_COORDINATORS,
                host: "127.0.0.1".into(),
                raft_port_base: settings.raft_port_base,
                http_port_base: settings.http_port_base,
                dev: true,
                checkpoint_every: None,
                epoch_ms: Some(DEV_EPOCH_MS),
                voting_period_ms: None,
            },
        )?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut nodes = Vec::new();
    for i in 0..DEV_COORDINATORS {
        let config = CoordinatorConfig::load(Some(&dir.join(format!("node-{i}.toml"))))?;
        let mut stop = stop_rx.clone();
        nodes.push(runtime.spawn(deai_coordinator::run::run_until(config, async move {
            let _ = stop.wait_for(|s| *s).await;
            "dev network stopping"
        })));
    }
    let http: Vec<String> =
        (0..DEV_COORDINATORS).map(|i| format!("127.0.0.1:{}", u64::from(settings.http_port_base) + i)).collect();
    let api = Coordinators::new(&http.join(","))?;
    let ready = wait_until("the coordinators", || {
        if nodes.iter().any(|node| node.is_finished()) {
            return Some(Err(anyhow::anyhow!("a coordinator stopped while starting (its error follows)")));
        }
        http.iter()
            .all(|a| api.agent().get(&format!("http://{a}/readyz")).call().is_ok_and(|r| r.status().is_success()))
            .then_some(Ok(()))
    })
    .and_then(|started| started);
    let result = ready.and_then(|()| run_network(&settings, &http));
    let _ = stop_tx.send(true);
    for node in nodes {
        match runtime.block_on(node) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("a coordinator stopped with an error: {e:#}"),
            Err(e) => eprintln!("a coordinator task failed: {e}"),
        }
    }
    result
}

fn run_network(settings: &DevSettings, http: &[String]) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut miners = Vec::new();
    let mut miner_endpoints = Vec::new();
    for m in 0..DEV_MINERS {
        let listen = format!("127.0.0.1:{}", settings.miner_port_base + m);
        miner_endpoints.push(format!("http://{listen}"));
        let miner = MinerSettings {
            coordinators: http.join(","),
            key: random_key()?,
            listen,
            endpoint: None,
            services: vec!["text-generation".into(), "text-embedding".into(), "image-generation".into()],
            backend: "demo".into(),
            capacity: 8,
            collateral: 100 * deai_protocol::params::TOKEN,
            use_faucet: true,
            price_per_request: 0,
            subscription_price: None,
        };
        let stop = stop.clone();
        miners.push(
            std::thread::Builder::new().name(format!("deai-miner-{m}")).spawn(move || deai_miner::run(miner, stop))?,
        );
    }
    let api = Coordinators::new(&http.join(","))?;
    let registered = wait_until("the miners to register", || {
        let list: Vec<Value> = api.get("/v1/miners?consistency=stale").ok()?;
        (list.len() >= usize::from(DEV_MINERS)).then_some(())
    });
    println!("deai dev network (network id deai-dev, epochs of {} s)", DEV_EPOCH_MS / 1000);
    for (i, a) in http.iter().enumerate() {
        println!("  coordinator {i}: http://{a}  (/v1, /metrics, /readyz, /v1/openapi.json)");
    }
    for (i, e) in miner_endpoints.iter().enumerate() {
        println!("  miner {i}: {e}  (demo services)");
    }
    let result = registered.and_then(|()| {
        if settings.demo {
            demo(http, settings.demo_cycles)
        } else {
            println!("\ntry a client (in another terminal):");
            println!("  deai client --coordinator {} --key my.key keygen", http[0]);
            println!("  deai client --coordinator {} --key my.key faucet 1000", http[0]);
            println!("  deai client --coordinator {} --key my.key stake 100", http[0]);
            println!("  deai client --coordinator {} --key my.key pass", http[0]);
            println!("  deai client --coordinator {} --key my.key order text-generation 'an old silent pond'", http[0]);
            println!("\nCtrl-C stops everything.");
            wait_for_ctrl_c()
        }
    });
    stop.store(true, Ordering::Relaxed);
    for miner in miners {
        match miner.join() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => eprintln!("a miner stopped with an error: {e:#}"),
            Err(_) => eprintln!("a miner thread panicked"),
        }
    }
    result
}

fn wait_for_ctrl_c() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    runtime.block_on(tokio::signal::ctrl_c())?;
    println!("stopping");
    Ok(())
}

fn demo(http: &[String], cycles: usize) -> anyhow::Result<()> {
    let client = Participant::connect(random_key()?, Coordinators::new(&http.join(","))?)?;
    let token = deai_protocol::params::TOKEN;
    println!("\ndemo client {}", client.id_hex());
    client.submit_accepted(Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 1_000 * token }))?;
    client.submit_accepted(Message::LockStake(LockStake { asset: AssetId::NATIVE, amount: 100 * token }))?;
    client.submit_accepted(Message::AcquirePass(AcquirePass {}))?;
    println!("  faucet 1000, staked 100, pass acquired");
    let services = ["text-generation", "text-embedding", "image-generation"];
    for cycle in 0..cycles {
        let service = services[cycle % services.len()];
        let prompt = format!("demo prompt number {cycle} for the deai network");
        let order = put_order(&client, service, &prompt)?;
        let served = fetch_output(&client, &order, Duration::from_millis(DEMO_WAIT_MS))?;
        rate(&client, &order, Rating::Good)?;
        let shown = if service == "image-generation" {
            format!("{} bytes of PGM image", served.output.len())
        } else {
            String::from_utf8_lossy(&served.output).chars().take(60).collect()
        };
        println!("  cycle {cycle}: {service} served by {}…, output checked, rated good: {shown}", &served.miner[..12]);
    }
    // The epoch the cycles counted in closes at its boundary; its payouts must sum to the
    // reward exactly and reach the miners.
    println!("  waiting for the reward epoch to close (epochs last {} s)", DEV_EPOCH_MS / 1000);
    let mut number = 0;
    loop {
        let epoch: Value = wait_until("the epoch to close and its payouts to be certified", || {
            client.api.get::<Value>(&format!("/v1/epochs/{number}")).ok().filter(|e| e["certified"] == true)
        })?;
        let reward: u128 = epoch["reward"].as_str().unwrap_or("0").parse()?;
        let payouts: Vec<(String, u128)> = epoch["payouts"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| Ok((p[0].as_str().unwrap_or_default().to_string(), p[1].as_str().unwrap_or("0").parse()?)))
            .collect::<anyhow::Result<_>>()?;
        if payouts.is_empty() {
            // An epoch that ended before the cycles were served pays nothing; look at the next.
            number += 1;
            continue;
        }
        let paid: u128 = payouts.iter().map(|p| p.1).sum();
        println!(
            "  epoch {number} closed: reward {reward}, {} miners paid {paid}, {} coordinator signatures",
            payouts.len(),
            epoch["signatures"]
        );
        if paid != reward {
            bail!("the payouts of epoch {number} sum to {paid}, not to the reward {reward}");
        }
        for (miner, amount) in &payouts {
            let account: Value = client.api.get(&format!("/v1/ledger/accounts/{miner}"))?;
            let balance: u128 = account["balance"].as_str().unwrap_or("0").parse()?;
            if balance < *amount {
                bail!("miner {miner} was paid {amount} but holds {balance}");
            }
        }
        println!("demo passed: {cycles} cycles served and verified; payouts sum exactly to the epoch reward");
        return Ok(());
    }
}
