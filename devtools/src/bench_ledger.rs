//! `deai bench ledger`: committed writes per second and their latency on a 3-node loopback
//! cluster with fsync.
//!
//! Three coordinators run in this process, each with its own redb database (durable commits,
//! one fsync per appended batch) and real TCP between them. `writers` clients each send
//! `writes / writers` writes, one at a time, over one pipelined connection to the leader, as an
//! etcd benchmark's clients send puts. A write is one Raft log entry carrying a batch of signed
//! `DevFaucet` entries at least `entry_bytes` long; every replica verifies and applies it. All
//! entries are signed before the clock starts, so client signing is not measured.

use anyhow::{bail, Context};
use deai_cluster::identity::CoordinatorIdentity;
use deai_cluster::network::peer_auth::{MemberKeys, PeerAuth};
use deai_cluster::network::tcp::{self, TcpNetwork};
use deai_cluster::{ClusterConfig, CoordinatorNode};
use deai_protocol::message::{DevFaucet, Message};
use deai_protocol::types::{AssetId, NetworkId};
use deai_protocol::{Genesis, SignedEnvelope};
use deai_storage::{EntryOutcome, UnstampedBatch};
use ed25519_dalek::SigningKey;
use hdrhistogram::Histogram;
use openraft::BasicNode;
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Nodes in the benchmark cluster.
pub const BENCH_NODES: u64 = 3;
/// Longest one write may take before it counts as failed, in milliseconds.
pub const WRITE_TIMEOUT_MS: u64 = 10_000;
/// Time between progress lines, in milliseconds.
pub const PROGRESS_EVERY_MS: u64 = 1_000;
/// Highest latency the histograms track, in microseconds (longer ones are clamped).
const MAX_TRACKED_LATENCY_US: u64 = 60_000_000;

#[derive(Clone, Debug)]
pub struct LedgerBench {
    pub writers: usize,
    pub writes: u64,
    pub entry_bytes: usize,
    pub data_dir: Option<std::path::PathBuf>,
}

/// What the benchmark reports; `--json` prints exactly this.
#[derive(Debug, Serialize)]
pub struct LedgerBenchReport {
    pub committed_per_s: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub signed_entries_per_s: f64,
    pub writes: u64,
    pub failed: u64,
    pub duration_s: f64,
    pub writers: usize,
    /// Bytes of one write's payload (the framed batch).
    pub entry_bytes: usize,
    pub signed_entries_per_write: usize,
    pub nodes: u64,
    pub fsync: bool,
}

fn faucet(key: &SigningKey, network: &str, nonce: u64) -> SignedEnvelope {
    let message = Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 1 });
    SignedEnvelope::seal(key, &NetworkId(network.to_string()), nonce, &message)
}

/// One writer's pre-signed writes.
fn sign_writes(seed: u64, network: &str, writes: u64, per_write: usize) -> Vec<UnstampedBatch> {
    let mut bytes = [0u8; 32];
    bytes[..8].copy_from_slice(&seed.to_le_bytes());
    bytes[8] = 0xbe;
    let key = SigningKey::from_bytes(&bytes);
    let mut nonce = 0;
    (0..writes)
        .map(|_| {
            let envelopes: Vec<SignedEnvelope> = (0..per_write)
                .map(|_| {
                    nonce += 1;
                    faucet(&key, network, nonce)
                })
                .collect();
            UnstampedBatch::new(&envelopes)
        })
        .collect()
}

fn quantile_ms(h: &Histogram<u64>, q: f64) -> f64 {
    h.value_at_quantile(q) as f64 / 1_000.0
}

pub async fn run(settings: &LedgerBench) -> anyhow::Result<LedgerBenchReport> {
    if settings.writers == 0 || settings.writes < settings.writers as u64 {
        bail!("need at least one writer and at least one write per writer");
    }
    let network = "deai-bench";
    let temp;
    let dir = match &settings.data_dir {
        Some(dir) => dir.clone(),
        None => {
            temp = tempfile::Builder::new().prefix("deai-bench-").tempdir()?;
            temp.path().to_path_buf()
        }
    };
    let identities: Vec<CoordinatorIdentity> =
        (0..BENCH_NODES).map(|i| CoordinatorIdentity::from_seed([i as u8 + 1; 32])).collect();
    let mut genesis = Genesis::dev(network, identities.iter().map(|c| c.info()).collect());
    let clock = deai_clock::system();
    genesis.start_ms = clock.now_ms();
    let member_keys: MemberKeys = (0..BENCH_NODES).zip(identities.iter().map(|c| c.id())).collect();

    // Size a write: whole signed entries until the batch reaches `entry_bytes`.
    let one = UnstampedBatch::new(&[faucet(&SigningKey::from_bytes(&[9; 32]), network, 1)]).stamped_size_bytes(1);
    let per_write = settings.entry_bytes.div_ceil(one).max(1);
    let per_writer = settings.writes / settings.writers as u64;
    eprintln!("signing {} writes of {per_write} entries each ...", per_writer * settings.writers as u64);
    let batches: Vec<Vec<UnstampedBatch>> =
        (0..settings.writers).map(|w| sign_writes(w as u64, network, per_writer, per_write)).collect();
    let entry_bytes = batches[0][0].stamped_size_bytes(per_write);

    let config = ClusterConfig::default();
    let mut listeners = Vec::new();
    let mut members = BTreeMap::new();
    for id in 0..BENCH_NODES {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        members.insert(id, BasicNode::new(listener.local_addr()?.to_string()));
        listeners.push(listener);
    }
    let mut nodes = Vec::new();
    let mut writer_auth = None;
    for (id, listener) in (0..BENCH_NODES).zip(listeners) {
        let auth = PeerAuth::new(id, &identities[id as usize].signing, member_keys.clone())
            .map_err(|e| anyhow::anyhow!("[{}] {e}", e.code()))?;
        let net = TcpNetwork::new(network, auth);
        let node_dir = dir.join(format!("node-{id}"));
        let mut node = CoordinatorNode::start(id, &node_dir, genesis.clone(), net.clone(), &config, clock.clone())
            .await
            .map_err(|e| anyhow::anyhow!("[{}] {e}", e.code()))?;
        node.forward_writes_over_tcp(net.clone());
        if id == 0 {
            writer_auth = Some(net.auth().clone());
        }
        let net_for_listener = net;
        let node = Arc::new(node);
        tokio::spawn(tcp::serve_node(listener, node.clone(), net_for_listener));
        nodes.push(node);
    }
    nodes[0].raft.initialize(members.clone()).await.map_err(|e| anyhow::anyhow!("bootstrap: {e}"))?;
    let leader = nodes[0]
        .raft
        .wait(Some(Duration::from_secs(10)))
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .context("no leader elected")?
        .current_leader
        .context("no leader")?;
    let leader_addr = members[&leader].addr.clone();

    // The writers speak for node 0: only members reach the peer port.
    let client = TcpNetwork::new(network, writer_auth.context("node 0 started")?);
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let progress = {
        let (done, total) = (done.clone(), per_writer * settings.writers as u64);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(PROGRESS_EVERY_MS)).await;
                let n = done.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                eprintln!("  {n:>9}/{total} writes committed  {:>9.0} writes/s", n as f64 / secs);
            }
        })
    };
    let tasks: Vec<_> = batches
        .into_iter()
        .map(|writes| {
            let (client, addr, done) = (client.clone(), leader_addr.clone(), done.clone());
            tokio::spawn(async move {
                let mut latencies = Histogram::<u64>::new_with_bounds(1, MAX_TRACKED_LATENCY_US, 3).expect("bounds");
                let mut failed = 0u64;
                for command in writes {
                    let t = Instant::now();
                    let ok = matches!(
                        client.write(leader, &addr, command, Duration::from_millis(WRITE_TIMEOUT_MS)).await,
                        Ok(Ok((_, ref outcome))) if outcome.outcomes.iter().all(|o| *o == EntryOutcome::Accepted)
                    );
                    if ok {
                        latencies.saturating_record(t.elapsed().as_micros() as u64);
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed += 1;
                    }
                }
                (latencies, failed)
            })
        })
        .collect();
    let mut all = Histogram::<u64>::new_with_bounds(1, MAX_TRACKED_LATENCY_US, 3).expect("bounds");
    let mut failed = 0;
    for task in tasks {
        let (h, f) = task.await?;
        all.add(&h).expect("same bounds");
        failed += f;
    }
    let elapsed = started.elapsed().as_secs_f64();
    progress.abort();
    for node in nodes {
        if let Ok(node) = Arc::try_unwrap(node) {
            let _ = node.shutdown().await;
        }
    }
    let committed = all.len();
    Ok(LedgerBenchReport {
        committed_per_s: committed as f64 / elapsed,
        p50_ms: quantile_ms(&all, 0.50),
        p99_ms: quantile_ms(&all, 0.99),
        p999_ms: quantile_ms(&all, 0.999),
        signed_entries_per_s: (committed * per_write as u64) as f64 / elapsed,
        writes: committed,
        failed,
        duration_s: elapsed,
        writers: settings.writers,
        entry_bytes,
        signed_entries_per_write: per_write,
        nodes: BENCH_NODES,
        fsync: true,
    })
}

/// The report for people.
pub fn print(report: &LedgerBenchReport) {
    println!("deai bench ledger: {} nodes on loopback, fsync on", report.nodes);
    println!(
        "  {} writers, {} writes of {} bytes ({} signed entries each), {} failed",
        report.writers, report.writes, report.entry_bytes, report.signed_entries_per_write, report.failed
    );
    println!(
        "  committed: {:.0} writes/s ({:.0} signed entries/s) in {:.1} s",
        report.committed_per_s, report.signed_entries_per_s, report.duration_s
    );
    println!("  latency: p50 {:.2} ms  p99 {:.2} ms  p999 {:.2} ms", report.p50_ms, report.p99_ms, report.p999_ms);
}
