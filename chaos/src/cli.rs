//! `deai chaos`: runs a cluster of real coordinator processes under scheduled faults with a
//! concurrent workload, checks the history, writes the report, and exits non-zero when any
//! invariant failed.

use crate::checker::{self, FinalState};
use crate::cluster::{ClusterProbe, ProcessCluster, POLL_MS};
use crate::history::History;
use crate::nemesis::{self, Fault, NemesisKind, Target};
use crate::report::{self, RoleSample, RunRecord};
use crate::{workload, ChaosError, ChaosResult};
use deai_api::views::AccountView;
use deai_client::Coordinators;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How often each node's role is sampled, in milliseconds.
pub const ROLE_SAMPLE_MS: u64 = 250;
/// Longest the cluster may take to settle after the last fault (every node up and at the same
/// height), in milliseconds.
pub const SETTLE_TIMEOUT_MS: u64 = 60_000;
/// Most concurrent workload clients.
pub const MAX_CLIENTS: usize = 64;
/// Longest run, in seconds.
pub const MAX_DURATION_S: u64 = 24 * 3600;

#[derive(clap::Args, Debug, Clone)]
pub struct ChaosArgs {
    /// Coordinators in the cluster: 3 or 5.
    #[arg(long, default_value_t = 3)]
    pub nodes: u64,
    /// How long the workload and the faults run, in seconds.
    #[arg(long, default_value_t = 60)]
    pub duration_s: u64,
    /// Faults to inject, comma-separated: kill (SIGKILL, restart from disk), pause
    /// (SIGSTOP, SIGCONT), partition (links cut between network namespaces: needs root and
    /// iproute2), disk-full (a node's data directory, on a tmpfs of its own, filled: needs
    /// root), clock (a node restarted with its clock skewed), slow-net (a node's links held
    /// back by delay proxies: needs root and iproute2). Empty for none.
    #[arg(long, default_value = "kill,pause")]
    pub nemesis: String,
    /// The seed of the fault schedule, the targets and the workload: the same seed replays the
    /// same run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Concurrent clients of the workload.
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Where the report goes (index.html, results.json, history.jsonl, faults.json) and the
    /// cluster's data and logs (cluster/); must be empty or absent.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `deai chaos`; `Ok(true)` when every invariant held.
pub fn run_chaos(args: &ChaosArgs) -> ChaosResult<bool> {
    if !matches!(args.nodes, 3 | 5) {
        return Err(ChaosError::BadArgument(format!("--nodes must be 3 or 5, not {}", args.nodes)));
    }
    if args.duration_s == 0 || args.duration_s > MAX_DURATION_S {
        return Err(ChaosError::BadArgument(format!("--duration-s must be 1 to {MAX_DURATION_S}")));
    }
    if args.clients == 0 || args.clients > MAX_CLIENTS {
        return Err(ChaosError::BadArgument(format!("--clients must be 1 to {MAX_CLIENTS}")));
    }
    let kinds = NemesisKind::parse_list(&args.nemesis)?;
    if args.out.exists() && std::fs::read_dir(&args.out).map_err(ChaosError::io("read --out"))?.next().is_some() {
        return Err(ChaosError::BadArgument(format!("--out {} is not empty", args.out.display())));
    }
    let cluster_dir = args.out.join("cluster");
    std::fs::create_dir_all(&cluster_dir).map_err(ChaosError::io("create --out"))?;
    let stop = Arc::new(AtomicBool::new(false));
    let on_signal = stop.clone();
    ctrlc::set_handler(move || on_signal.store(true, Ordering::Relaxed))
        .map_err(|e| ChaosError::Signal(format!("cannot handle SIGINT and SIGTERM: {e}")))?;
    let exe = std::env::current_exe().map_err(ChaosError::io("find the deai binary"))?;

    let record = run(&exe, args, &kinds, &cluster_dir, &stop)?;
    report::write(&args.out, &record)?;
    let valid = report::valid(&record);
    println!(
        "{}: {} operations, {} faults, seed {}; report: {}",
        if valid { "valid" } else { "INVALID" },
        record.ops.len(),
        record.faults.len(),
        record.seed,
        args.out.join("index.html").display()
    );
    for verdict in record.verdicts.iter().filter(|v| !v.valid) {
        println!("  {} violated: {}", verdict.name, verdict.detail);
        for op in &verdict.window {
            println!("    {}", serde_json::to_string(op).unwrap_or_default());
        }
    }
    Ok(valid)
}

/// Waits until `at_ms` on the run's clock, or until `stop` is set; `false` if stopped.
fn wait_until(history: &History, at_ms: u64, stop: &AtomicBool) -> bool {
    while history.now_ms() < at_ms {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(POLL_MS.min(at_ms - history.now_ms())));
    }
    !stop.load(Ordering::Relaxed)
}

fn sample_roles(probe: ClusterProbe, history: Arc<History>, done: Arc<AtomicBool>, roles: Arc<Mutex<Vec<RoleSample>>>) {
    while !done.load(Ordering::Relaxed) {
        let at_ms = history.now_ms();
        for i in 0..probe.len() {
            let status = probe.status(i);
            let term = status.as_ref().map(|s| s.term);
            let role = status.map_or_else(|| "down".to_string(), |s| s.state);
            let sample = RoleSample { at_ms, node: probe.id(i), role, term };
            roles.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(sample);
        }
        let next = at_ms + ROLE_SAMPLE_MS;
        while history.now_ms() < next && !done.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(POLL_MS));
        }
    }
}

fn run(
    exe: &std::path::Path,
    args: &ChaosArgs,
    kinds: &[NemesisKind],
    dir: &std::path::Path,
    stop: &Arc<AtomicBool>,
) -> ChaosResult<RunRecord> {
    // Partitions and slow links need each node in a namespace of its own; other runs stay on
    // loopback.
    let slow_links = kinds.contains(&NemesisKind::SlowNet);
    let namespaces = match kinds.contains(&NemesisKind::Partition) || slow_links {
        true => Some(crate::netns::Network::create(std::process::id(), args.nodes as usize)?),
        false => None,
    };
    let mut cluster =
        ProcessCluster::create(exe, dir, args.nodes, &format!("chaos-{}", args.seed), namespaces, slow_links)?;
    if kinds.contains(&NemesisKind::DiskFull) {
        cluster.mount_data_dirs()?;
    }
    for i in 0..cluster.nodes.len() {
        cluster.start(i)?;
    }
    cluster.wait_ready()?;
    let duration_ms = args.duration_s * 1000;
    let history = Arc::new(History::new());
    let roles = Arc::new(Mutex::new(Vec::new()));
    let sampling_done = Arc::new(AtomicBool::new(false));
    let sampler = {
        let (probe, history, done, roles) =
            (cluster.probe().clone(), history.clone(), sampling_done.clone(), roles.clone());
        std::thread::spawn(move || sample_roles(probe, history, done, roles))
    };
    let workload_done = Arc::new(AtomicBool::new(false));
    let clients = workload::start(args.clients, args.seed, cluster.addresses(), history.clone(), workload_done.clone());

    let mut targets = StdRng::seed_from_u64(args.seed ^ 0x5eed);
    let mut faults = Vec::new();
    for planned in nemesis::schedule(args.seed, kinds, cluster.nodes.len(), duration_ms) {
        if !wait_until(&history, planned.start_ms, stop) {
            break;
        }
        cluster.restart_exited()?;
        let leader = cluster.probe().leader();
        let (i, at_leader) = match (planned.target, leader) {
            (Target::Leader, Some(i)) => (i, true),
            (Target::Leader, None) => (targets.random_range(0..cluster.nodes.len()), false),
            (Target::Node(i), _) => (i, leader == Some(i)),
        };
        let start_ms = history.now_ms();
        let (hit, detail) = nemesis::inject(&mut cluster, &planned, i, leader)?;
        tracing::info!(nemesis = planned.kind.name(), %detail, at_leader, "fault starts");
        // The fault holds for its time even when the run is interrupted: a node is never left
        // killed, paused or cut off by a half-finished fault.
        wait_until(&history, start_ms + planned.hold_ms, &AtomicBool::new(false));
        nemesis::heal(&mut cluster, planned.kind, i)?;
        faults.push(Fault {
            kind: planned.kind,
            node: cluster.nodes[hit].id,
            at_leader,
            start_ms,
            end_ms: history.now_ms(),
            detail,
        });
    }
    wait_until(&history, duration_ms, stop);
    workload_done.store(true, Ordering::Relaxed);
    for client in clients {
        let _ = client.join();
    }
    sampling_done.store(true, Ordering::Relaxed);
    let _ = sampler.join();

    let end = settle(&mut cluster, args)?;
    let history = Arc::try_unwrap(history).unwrap_or_else(|_| History::new());
    let ops = history.into_ops();
    let verdicts = checker::check(&ops, args.clients, &end);
    let roles = std::mem::take(&mut *roles.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    cluster.stop_all();
    Ok(RunRecord {
        seed: args.seed,
        nodes: cluster.nodes.len(),
        clients: args.clients,
        duration_ms,
        nemeses: kinds.to_vec(),
        replay: format!(
            "deai chaos --nodes {} --duration-s {} --nemesis {} --seed {} --clients {} --out DIR",
            args.nodes,
            args.duration_s,
            kinds.iter().map(|k| k.name()).collect::<Vec<_>>().join(","),
            args.seed,
            args.clients
        ),
        ops,
        faults,
        roles,
        verdicts,
        interrupted: stop.load(Ordering::Relaxed),
    })
}

/// After the faults: every node running and ready, then the same height everywhere, then each
/// client's account read linearizably and each node's status taken.
fn settle(cluster: &mut ProcessCluster, args: &ChaosArgs) -> ChaosResult<FinalState> {
    for i in 0..cluster.nodes.len() {
        if cluster.exited(i) {
            cluster.start(i)?;
        }
    }
    cluster.wait_ready()?;
    let deadline = Instant::now() + Duration::from_millis(SETTLE_TIMEOUT_MS);
    let probe = cluster.probe().clone();
    let nodes = loop {
        let nodes: Vec<_> = (0..probe.len()).map(|i| probe.status(i)).collect();
        let heights: Vec<Option<(u64, u64)>> =
            nodes.iter().map(|s| s.as_ref().map(|s| (s.ledger_height, s.applied_index))).collect();
        let settled = heights.iter().all(Option::is_some) && heights.windows(2).all(|w| w[0] == w[1]);
        if settled || Instant::now() > deadline {
            break nodes;
        }
        std::thread::sleep(Duration::from_millis(POLL_MS));
    };
    let api = Coordinators::new(&cluster.addresses()).map_err(|e| ChaosError::Workload(e.to_string()))?;
    let accounts = (0..args.clients)
        .map(|index| {
            let path = workload::account_path(args.seed, index);
            api.get::<AccountView>(&path).ok().and_then(|view| workload::account_state(&view))
        })
        .collect();
    let audits = (0..probe.len()).map(|i| probe.audit(i)).collect();
    Ok(FinalState { accounts, nodes, panics: cluster.panics_in_logs(), audits })
}
