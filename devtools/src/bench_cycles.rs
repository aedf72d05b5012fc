//! `deai bench cycles`: full signed task cycles through the HTTP API of a 3-node cluster.
//!
//! Three coordinators run in this process, as `deai dev` runs them (their own databases, Raft
//! over loopback TCP, their own HTTP endpoints, the actors). Simulated clients and miners are
//! threads speaking HTTP to them, spread over the three nodes:
//!
//! - a client puts a free order, waits until its miner has claimed it (a long poll of the
//!   order), and rates it; one cycle is those three signed entries plus the leader's allocation;
//! - a miner keeps a session (`/v1/miners/{id}/session`, pushed by its `MinerSession`) and
//!   claims all new assignments in one request (no service runs: the benchmark measures the
//!   coordinators, not a model).
//!
//! Participants write through the binary route (`POST /v1/ledger/entries`). Clients sign their
//! orders and ratings before the clock starts, as `deai bench ledger` signs its entries, since
//! in a real network that work is done on the clients' machines, not the coordinators'; the
//! coordinators still verify every signature. Miners sign their claims during the run (a claim
//! names an order only known once allocated). `--sign-live` signs everything during the run.
//!
//! Reported: completed cycles per second, cycle latency (put to rating accepted) percentiles,
//! and order-to-allocation latency percentiles, taken from ledger time (the allocation's
//! deadline minus `order_timeout_ms`, against the order's `placed_ms`), so the miners' polling
//! does not count. `--rate` caps the cycles per second, to measure latency below saturation.

use crate::genesis::NewCluster;
use anyhow::bail;
use deai_api::hex::{hex, unhex32};
use deai_client::{Coordinators, Participant};
use deai_coordinator::config::CoordinatorConfig;
use deai_protocol::message::*;
use deai_protocol::types::{AssetId, OrderId, Rating};
use deai_protocol::{Ledger, SignedEnvelope};
use ed25519_dalek::SigningKey;
use hdrhistogram::Histogram;
use serde::Serialize;
use serde_json::Value;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Highest latency the histograms track, in microseconds.
const MAX_TRACKED_LATENCY_US: u64 = 60_000_000;
/// How long one long poll of an order may wait, in milliseconds.
const LONG_POLL_MS: u64 = 1_000;
/// Pause between a client's polls of its order, in milliseconds.
const CLIENT_POLL_MS: u64 = 2;
/// How long one simulated miner's session is asked to last, in milliseconds.
const MINER_SESSION_MS: u64 = 60_000;
/// Session lines a simulated miner's reader holds for its claimer.
const MINER_EVENTS_BUFFERED: usize = 1_024;
/// How often a simulated miner waiting for session lines checks whether the run is over, in ms.
const MINER_STOP_CHECK_MS: u64 = 100;
/// Pause before a simulated miner opens its session again after a failure, in milliseconds.
const MINER_RETRY_MS: u64 = 50;
/// Time between progress lines, in milliseconds.
const PROGRESS_EVERY_MS: u64 = 1_000;
/// Claimed orders a simulated miner remembers (assignments it already claimed may still be
/// listed until the claim is applied on the node it polls).
const MAX_REMEMBERED_CLAIMS: usize = 1_000_000;
/// Longest one cycle may take before the client gives it up, in milliseconds.
const CYCLE_TIMEOUT_MS: u64 = 30_000;
/// Cycles per second of the run that clients sign ahead of the clock when no `--rate` is given:
/// above the 5,000/s goal, so an unthrottled run signs nothing live.
const PRESIGNED_CYCLES_PER_S: u64 = 6_000;
/// Pre-signed cycles one client holds at most (each is two envelopes, about 0.5 KiB).
const MAX_PRESIGNED_CYCLES_PER_CLIENT: u64 = 100_000;

#[derive(Clone, Debug)]
pub struct CyclesBench {
    pub clients: usize,
    pub miners: usize,
    pub duration_s: u64,
    /// Cap on cycles started per second, all clients together (none if `None`).
    pub rate: Option<u64>,
    /// Sign every client entry during the run instead of ahead of it.
    pub sign_live: bool,
}

#[derive(Debug, Serialize)]
pub struct CyclesReport {
    pub cycles_per_s: f64,
    pub cycles: u64,
    pub failed: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub allocation_p50_ms: f64,
    pub allocation_p99_ms: f64,
    pub duration_s: f64,
    pub clients: usize,
    pub miners: usize,
    pub rate_cap: Option<u64>,
    pub nodes: u64,
    /// Cycles whose order and rating were signed during the measured window (the others were
    /// signed before it; miners' claims are always signed during it).
    pub cycles_signed_live: u64,
    /// CPU time of the whole process (coordinators and simulated participants, user and
    /// system) over the measured window, per completed cycle; `None` where it cannot be read.
    pub cpu_ms_per_cycle: Option<f64>,
    /// The same CPU time over the window's length: how many cores were busy on average.
    pub cores_busy: Option<f64>,
}

/// Clock ticks per second in `/proc/<pid>/stat` (`USER_HZ`, 100 on every Linux ABI).
const PROC_STAT_TICKS_PER_S: f64 = 100.0;

/// This process's CPU time so far (user and system, all threads) in seconds, from
/// `/proc/self/stat`; `None` off Linux.
fn process_cpu_s() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    Some(cpu_ticks_of(&stat)? as f64 / PROC_STAT_TICKS_PER_S)
}

/// utime + stime of a `/proc/<pid>/stat` line, in clock ticks.
fn cpu_ticks_of(stat: &str) -> Option<u64> {
    // The command name is in parentheses and may hold spaces and parentheses: skip to the last.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, so 12 and 13 after the name.
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

fn key(tag: u8, i: usize) -> SigningKey {
    let mut seed = [tag; 32];
    seed[..8].copy_from_slice(&(i as u64).to_le_bytes());
    SigningKey::from_bytes(&seed)
}

fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, MAX_TRACKED_LATENCY_US, 3).expect("valid bounds")
}

/// A participant that keeps its own nonce: it is the only writer under its key.
struct Actor {
    me: Participant,
    nonce: u64,
    /// Cycles whose order and rating were signed before the clock started, next first.
    presigned: std::collections::VecDeque<PresignedCycle>,
}

/// A client's order and the rating of that order, sealed ahead with consecutive nonces. The
/// rating can be sealed before the order is sent because an order's id is the hash of its
/// signed envelope.
struct PresignedCycle {
    order: SignedEnvelope,
    order_id: OrderId,
    rate: SignedEnvelope,
}

impl Actor {
    fn new(key: SigningKey, nodes: &str) -> anyhow::Result<Self> {
        let me = Participant::connect(key, Coordinators::new(nodes)?)?;
        let nonce = me.next_nonce()? - 1;
        Ok(Actor { me, nonce, presigned: Default::default() })
    }

    fn seal_next(&mut self, message: &Message) -> SignedEnvelope {
        self.nonce += 1;
        self.me.seal(self.nonce, message)
    }

    fn submit(&mut self, message: Message) -> anyhow::Result<()> {
        let envelope = self.seal_next(&message);
        self.send(&envelope)
    }

    /// Sends one sealed envelope; anything but `accepted` is an error. On an error the nonce is
    /// read back from the ledger and the pre-signed cycles, whose nonces may no longer fit,
    /// are dropped.
    fn send(&mut self, envelope: &SignedEnvelope) -> anyhow::Result<()> {
        let outcome = self.me.submit_envelope(envelope).map(|o| o.outcome);
        match outcome {
            Ok(o) if o == "accepted" => Ok(()),
            failed => {
                self.presigned.clear();
                self.resync_nonce();
                match failed {
                    Ok(code) => bail!("{} rejected: {code}", envelope.kind.name()),
                    Err(e) => Err(e.into()),
                }
            }
        }
    }

    /// After a write whose outcome is unknown: takes the nonce back from the ledger.
    fn resync_nonce(&mut self) {
        if let Ok(next) = self.me.next_nonce() {
            self.nonce = next - 1;
        }
    }

    /// Seals `cycles` orders and their ratings ahead, with the nonces they will be sent with.
    fn presign(&mut self, cycles: usize) {
        for _ in 0..cycles {
            let order = self.seal_next(&bench_order());
            let order_id = Ledger::order_id_of(&order);
            let rate = self.seal_next(&Message::Rate(Rate { order: order_id, rating: Rating::Good }));
            self.presigned.push_back(PresignedCycle { order, order_id, rate });
        }
    }
}

/// What every simulated client orders.
fn bench_order() -> Message {
    Message::PutOrder(PutOrder {
        service: "text-generation".into(),
        mode: OrderMode::Free,
        payload: Payload::Inline(b"bench".to_vec()),
    })
}

fn three_free_ports() -> anyhow::Result<u16> {
    for _ in 0..1_000 {
        let first = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        if first > 65_000 {
            continue;
        }
        let held: Vec<_> = (0..3).filter_map(|k| std::net::TcpListener::bind(("127.0.0.1", first + k)).ok()).collect();
        if held.len() == 3 {
            return Ok(first);
        }
    }
    bail!("no three consecutive free ports")
}

pub fn run(settings: &CyclesBench) -> anyhow::Result<CyclesReport> {
    if settings.clients == 0 || settings.miners == 0 {
        bail!("need at least one client and one miner");
    }
    let dir = tempfile::Builder::new().prefix("deai-bench-cycles-").tempdir()?;
    let (raft_base, http_base) = (three_free_ports()?, three_free_ports()?);
    crate::genesis::write(
        dir.path(),
        &NewCluster {
            network: "deai-bench".into(),
            coordinators: 3,
            host: "127.0.0.1".into(),
            raft_port_base: raft_base,
            http_port_base: http_base,
            dev: true,
            checkpoint_every: None,
            epoch_ms: None,
            voting_period_ms: None,
        },
    )?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut nodes = Vec::new();
    for i in 0..3 {
        let config = CoordinatorConfig::load(Some(&dir.path().join(format!("node-{i}.toml"))))?;
        let mut stop = stop_rx.clone();
        nodes.push(runtime.spawn(deai_coordinator::run::run_until(config, async move {
            let _ = stop.wait_for(|s| *s).await;
            "benchmark done"
        })));
    }
    let http: Vec<String> = (0..3).map(|i| format!("127.0.0.1:{}", http_base + i)).collect();
    let result = drive(settings, &http);
    let _ = stop_tx.send(true);
    for node in nodes {
        let _ = runtime.block_on(node);
    }
    result
}

fn drive(settings: &CyclesBench, http: &[String]) -> anyhow::Result<CyclesReport> {
    let all = http.join(",");
    let probe = Coordinators::new(&all)?;
    let started = Instant::now();
    while http
        .iter()
        .any(|a| !probe.agent().get(&format!("http://{a}/readyz")).call().is_ok_and(|r| r.status().is_success()))
    {
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the cluster did not become ready");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let token = deai_protocol::params::TOKEN;
    eprintln!("registering {} miners and {} clients ...", settings.miners, settings.clients);
    let node_for = |i: usize| {
        // Each participant talks to one node first (and fails over to the others).
        let mut order: Vec<&String> = http.iter().collect();
        order.rotate_left(i % http.len());
        order.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(",")
    };
    let mut miners = Vec::new();
    for m in 0..settings.miners {
        let mut a = Actor::new(key(0x4d, m), &node_for(m))?;
        a.submit(Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 1_000 * token }))?;
        a.submit(Message::RegisterMiner(RegisterMiner {
            collateral: 100 * token,
            capacity: 100_000,
            endpoint: format!("http://127.0.0.1:1/bench-miner-{m}"),
            services: vec![ServiceOffer {
                service: "text-generation".into(),
                price_per_request: 0,
                subscription_price: None,
            }],
        }))?;
        miners.push(a);
    }
    let mut clients = Vec::new();
    for c in 0..settings.clients {
        let mut a = Actor::new(key(0x43, c), &node_for(c))?;
        a.submit(Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 1_000_000 * token }))?;
        a.submit(Message::LockStake(LockStake { asset: AssetId::NATIVE, amount: 500_000 * token }))?;
        a.submit(Message::AcquirePass(AcquirePass {}))?;
        clients.push(a);
    }
    if !settings.sign_live {
        let per_s = settings.rate.unwrap_or(PRESIGNED_CYCLES_PER_S);
        let per_client = (per_s.saturating_mul(settings.duration_s)).div_ceil(settings.clients as u64);
        let per_client = per_client.min(MAX_PRESIGNED_CYCLES_PER_CLIENT) as usize;
        eprintln!("signing {} orders and ratings ahead ...", per_client * settings.clients);
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        std::thread::scope(|scope| {
            for chunk in clients.chunks_mut(settings.clients.div_ceil(threads)) {
                scope.spawn(move || chunk.iter_mut().for_each(|a| a.presign(per_client)));
            }
        });
    }

    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let signed_live = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let allocation = Arc::new(Mutex::new(histogram()));
    let claim_output = deai_protocol::ledger::output_hash(b"bench output");
    let miner_threads: Vec<_> = miners
        .into_iter()
        .map(|mut a| {
            let (stop, allocation) = (stop.clone(), allocation.clone());
            std::thread::spawn(move || {
                let mut claimed = std::collections::HashSet::new();
                while !stop.load(Ordering::Relaxed) {
                    let events = match a.me.open_session(MINER_SESSION_MS) {
                        Ok((_, events)) => events,
                        Err(_) => {
                            std::thread::sleep(Duration::from_millis(MINER_RETRY_MS));
                            continue;
                        }
                    };
                    // The session is read on its own thread, so that the lines pushed while a
                    // claim request is out are taken together, as a busy miner would.
                    let (lines, received) = std::sync::mpsc::sync_channel(MINER_EVENTS_BUFFERED);
                    std::thread::spawn(move || {
                        for event in events {
                            if lines.send(event).is_err() {
                                return;
                            }
                        }
                    });
                    loop {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let first = match received.recv_timeout(Duration::from_millis(MINER_STOP_CHECK_MS)) {
                            Ok(event) => event,
                            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => continue,
                            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
                        };
                        let events = std::iter::once(first).chain(std::iter::from_fn(|| received.try_recv().ok()));
                        // Claim everything new in one request.
                        let mut envelopes: Vec<SignedEnvelope> = Vec::new();
                        for event in events {
                            for item in &event.assignments {
                                let Some(order) = unhex32(&item.order) else { continue };
                                if !claimed.insert(order) {
                                    continue;
                                }
                                if let Ok(mut h) = allocation.lock() {
                                    h.saturating_record(
                                        item.allocated_ms.saturating_sub(item.placed_ms).max(1) * 1_000,
                                    );
                                }
                                let claim = Message::Claim(Claim { order: OrderId(order), output_hash: claim_output });
                                envelopes.push(a.seal_next(&claim));
                            }
                        }
                        if envelopes.is_empty() {
                            continue;
                        }
                        if a.me.submit_envelopes(&envelopes).is_err() {
                            a.resync_nonce();
                        }
                        if claimed.len() > MAX_REMEMBERED_CLAIMS {
                            claimed.clear();
                        }
                    }
                }
            })
        })
        .collect();

    let per_client_interval = settings.rate.map(|r| Duration::from_secs_f64(settings.clients as f64 / r.max(1) as f64));
    let bench_started = Instant::now();
    let cpu_started = process_cpu_s();
    let deadline = bench_started + Duration::from_secs(settings.duration_s);
    let client_threads: Vec<_> = clients
        .into_iter()
        .map(|mut a| {
            let (done, failed, signed_live) = (done.clone(), failed.clone(), signed_live.clone());
            std::thread::spawn(move || {
                let mut latencies = histogram();
                let mut next_start = Instant::now();
                while Instant::now() < deadline {
                    if let Some(interval) = per_client_interval {
                        let now = Instant::now();
                        if next_start > now {
                            std::thread::sleep(next_start - now);
                        }
                        next_start += interval;
                    }
                    let t = Instant::now();
                    match cycle(&mut a, &signed_live) {
                        Ok(()) => {
                            latencies.saturating_record(t.elapsed().as_micros() as u64);
                            done.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            tracing::debug!(error = %e, "a cycle failed");
                            failed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                latencies
            })
        })
        .collect();
    let progress_stop = Arc::new(AtomicBool::new(false));
    let progress = {
        let (done, progress_stop) = (done.clone(), progress_stop.clone());
        std::thread::spawn(move || {
            while !progress_stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(PROGRESS_EVERY_MS));
                let n = done.load(Ordering::Relaxed);
                eprintln!("  {n:>8} cycles  {:>8.0} cycles/s", n as f64 / bench_started.elapsed().as_secs_f64());
            }
        })
    };
    let mut cycles = histogram();
    for t in client_threads {
        if let Ok(h) = t.join() {
            let _ = cycles.add(&h);
        }
    }
    let elapsed = bench_started.elapsed().as_secs_f64();
    let cpu_s = process_cpu_s().zip(cpu_started).map(|(end, start)| end - start);
    stop.store(true, Ordering::Relaxed);
    progress_stop.store(true, Ordering::Relaxed);
    for t in miner_threads {
        let _ = t.join();
    }
    let _ = progress.join();
    let allocation = allocation.lock().map(|h| h.clone()).unwrap_or_else(|_| histogram());
    let ms = |h: &Histogram<u64>, q: f64| h.value_at_quantile(q) as f64 / 1_000.0;
    Ok(CyclesReport {
        cycles_per_s: cycles.len() as f64 / elapsed,
        cycles: cycles.len(),
        failed: failed.load(Ordering::Relaxed),
        p50_ms: ms(&cycles, 0.5),
        p99_ms: ms(&cycles, 0.99),
        p999_ms: ms(&cycles, 0.999),
        allocation_p50_ms: ms(&allocation, 0.5),
        allocation_p99_ms: ms(&allocation, 0.99),
        duration_s: elapsed,
        clients: settings.clients,
        miners: settings.miners,
        rate_cap: settings.rate,
        nodes: 3,
        cycles_signed_live: signed_live.load(Ordering::Relaxed),
        cpu_ms_per_cycle: cpu_s.filter(|_| !cycles.is_empty()).map(|c| c * 1_000.0 / cycles.len() as f64),
        cores_busy: cpu_s.map(|c| c / elapsed),
    })
}

/// One task cycle: put, wait for the claim, rate. Uses the next pre-signed cycle, and signs one
/// now if none is left.
fn cycle(a: &mut Actor, signed_live: &AtomicU64) -> anyhow::Result<()> {
    if a.presigned.is_empty() {
        signed_live.fetch_add(1, Ordering::Relaxed);
        a.presign(1);
    }
    let Some(PresignedCycle { order, order_id, rate }) = a.presigned.pop_front() else {
        bail!("no cycle to send");
    };
    a.send(&order)?;
    let path = format!("/v1/orders/{}?consistency=stale&wait_ms={LONG_POLL_MS}", hex(&order_id.0));
    let started = Instant::now();
    loop {
        let view: Value = a.me.api.get(&path)?;
        if view["output_hash"].is_string() {
            break;
        }
        if started.elapsed() > Duration::from_millis(CYCLE_TIMEOUT_MS) {
            bail!("order not claimed in time");
        }
        std::thread::sleep(Duration::from_millis(CLIENT_POLL_MS));
    }
    a.send(&rate)?;
    Ok(())
}

pub fn print(r: &CyclesReport) {
    println!("deai bench cycles: 3 coordinators, {} clients, {} miners, over HTTP", r.clients, r.miners);
    if let Some(cap) = r.rate_cap {
        println!("  rate capped at {cap} cycles/s");
    }
    println!("  {} cycles in {:.1} s: {:.0} cycles/s, {} failed", r.cycles, r.duration_s, r.cycles_per_s, r.failed);
    println!("  cycle latency: p50 {:.2} ms  p99 {:.2} ms  p999 {:.2} ms", r.p50_ms, r.p99_ms, r.p999_ms);
    println!("  order to allocation: p50 {:.2} ms  p99 {:.2} ms", r.allocation_p50_ms, r.allocation_p99_ms);
    println!(
        "  signing: {} cycles' orders and ratings signed during the run, the rest ahead; every claim during it",
        r.cycles_signed_live
    );
    if let (Some(per_cycle), Some(cores)) = (r.cpu_ms_per_cycle, r.cores_busy) {
        println!("  CPU, whole process: {cores:.2} cores busy, {per_cycle:.3} ms per cycle");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_is_read_from_the_utime_and_stime_fields() {
        let line = "4242 (deai (bench) x) S 1 4242 4242 0 -1 4194560 1520 0 3 0 731 269 0 0 20 0 9 0 1234 5678";
        assert_eq!(cpu_ticks_of(line), Some(731 + 269));
        assert_eq!(cpu_ticks_of("4242 (deai) S 1"), None, "a cut line is no figure");
        assert!(process_cpu_s().is_some(), "this process's own stat line reads");
    }
}
