//! One seed's world: the nodes (real `CoordinatorNode`s with their redb databases, on a
//! [`SimNetwork`]), the clients and the fault schedule, all driven by one seed on a
//! single-threaded tokio runtime whose clock is virtual: time moves only when every task waits,
//! so a run of seconds takes as long as its work does, and the same seed takes the same path.

use crate::checker::{Checker, Op, OpKind, Outcome};
use crate::disk::{CutReport, SimBackend, SimDisk};
use crate::network::{SimNetwork, Weather};
use crate::{SimError, SimResult, SimSettings};
use deai_cluster::{ClusterConfig, ClusterError, Consistency, CoordinatorNode};
use deai_protocol::message::{DevFaucet, LockStake, Message};
use deai_protocol::params::CoordinatorInfo;
use deai_protocol::types::{AssetId, ParticipantId};
use deai_protocol::vrf::VrfSecret;
use deai_protocol::{Genesis, Ledger, SignedEnvelope};
use deai_storage::EntryOutcome;
use ed25519_dalek::SigningKey;
use openraft::BasicNode;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::time::Instant;

/// Ledger time at the start of every simulation (2026-01-01T00:00:00Z), in milliseconds.
pub const SIM_EPOCH_MS: u64 = 1_767_225_600_000;
/// Longest a client waits for a write or a read, in virtual milliseconds; past it the
/// outcome is unknown.
pub const CALL_TIMEOUT_MS: u64 = 2_000;
/// Longest a stopped node's callers and storage may take to let go of it, in virtual ms: a
/// call in flight ends within its timeout.
pub const RELEASE_WAIT_MS: u64 = 2 * CALL_TIMEOUT_MS;
/// Longest the cluster may take to converge once every fault is healed, in virtual ms.
pub const SETTLE_TIMEOUT_MS: u64 = 30_000;
/// Most disk operations a node makes between a power cut's start and the cut itself.
pub const MAX_OPS_BEFORE_CUT: u32 = 64;
/// Chance per step that a fault starts while none is under way, in percent.
pub const FAULT_START_PERCENT: u32 = 4;
/// Shortest and longest a fault lasts, in virtual milliseconds.
pub const MIN_FAULT_MS: u64 = 100;
pub const MAX_FAULT_MS: u64 = 2_000;
/// Worst weather a network fault brings: delay each way, and loss.
pub const STORM_MAX_DELAY_MS: u64 = 400;
pub const STORM_MAX_DROP_PER_MILLE: u32 = 300;

/// A fault of the schedule, as it was injected.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SimFault {
    /// The node stops (its Raft shut down, its database closed) and later restarts from disk.
    Crash(u64),
    /// A crash with the power gone too: of the disk's writes since its last sync, only some
    /// remain, the last perhaps torn ([`crate::disk`]).
    PowerCut(u64),
    /// The node alone cut off from the others.
    Isolate(u64),
    /// A minority cut off from the majority, with the first node of the minority named.
    Split(u64),
    /// Every message delayed up to this many ms and this many per mille lost.
    Storm { max_delay_ms: u64, drop_per_mille: u32 },
}

impl SimFault {
    pub fn kind(&self) -> &'static str {
        match self {
            SimFault::Crash(_) => "crash",
            SimFault::PowerCut(_) => "power-cut",
            SimFault::Isolate(_) => "isolate",
            SimFault::Split(_) => "split",
            SimFault::Storm { .. } => "storm",
        }
    }
}

/// The node slots: `None` while a node is down.
type Nodes = Arc<Mutex<Vec<Option<Arc<CoordinatorNode>>>>>;

fn slots(nodes: &Nodes) -> std::sync::MutexGuard<'_, Vec<Option<Arc<CoordinatorNode>>>> {
    nodes.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What one seed did and found.
#[derive(Debug)]
pub struct SeedReport {
    pub seed: u64,
    pub violations: Vec<String>,
    pub faults: Vec<(u64, SimFault)>,
    pub operations: BTreeMap<&'static str, u64>,
    pub virtual_ms: u64,
    pub messages_delivered: u64,
    pub messages_dropped: u64,
    /// What each power cut left of its disk's unsynced writes.
    pub power_cuts: Vec<CutReport>,
    /// A digest of everything that happened: the same seed, the same fingerprint.
    pub fingerprint: u64,
}

impl SeedReport {
    pub fn valid(&self) -> bool {
        self.violations.is_empty()
    }
}

fn raft_config(settings: &SimSettings) -> ClusterConfig {
    ClusterConfig {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 150,
        election_timeout_max_ms: 300,
        max_payload_entries: 64,
        // Small, so that snapshots are built, sent to lagging nodes and restored after crashes.
        snapshot_every_entries: 40,
        max_in_snapshot_log_to_keep: 10,
        faults: settings.faults.clone(),
    }
}

pub(crate) fn genesis(nodes: u64, seed: u64) -> Genesis {
    let infos = (0..nodes)
        .map(|i| {
            let key = SigningKey::from_bytes(&key_bytes(seed, 0xC0, i));
            CoordinatorInfo {
                id: ParticipantId(key.verifying_key().to_bytes()),
                vrf_key: VrfSecret::from_seed(key_bytes(seed, 0xF0, i)).public(),
            }
        })
        .collect();
    let mut genesis = Genesis::dev(&format!("sim-{seed}"), infos);
    genesis.start_ms = SIM_EPOCH_MS;
    genesis
}

fn key_bytes(seed: u64, role: u8, i: u64) -> [u8; 32] {
    let mut rng = StdRng::seed_from_u64(seed ^ (u64::from(role) << 56) ^ i.wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut bytes = [0u8; 32];
    rng.fill(&mut bytes);
    bytes
}

fn client_key(seed: u64, index: usize) -> SigningKey {
    SigningKey::from_bytes(&key_bytes(seed, 0xA0, index as u64))
}

fn client_id(seed: u64, index: usize) -> ParticipantId {
    ParticipantId(client_key(seed, index).verifying_key().to_bytes())
}

/// Ledger time on the virtual clock.
struct VirtualClock {
    start: Instant,
}

impl VirtualClock {
    /// Virtual milliseconds since the simulation started.
    fn elapsed_ms(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - SIM_EPOCH_MS)
    }
}

impl deai_clock::Clock for VirtualClock {
    fn now_ms(&self) -> u64 {
        SIM_EPOCH_MS + self.elapsed_ms()
    }
}

struct World {
    settings: SimSettings,
    seed: u64,
    genesis: Genesis,
    network: SimNetwork,
    nodes: Nodes,
    disks: Vec<SimDisk>,
    /// When the power cuts fall and what they leave of the disks' unsynced writes, drawn from
    /// the seed.
    cuts: Mutex<StdRng>,
    power_cuts: Mutex<Vec<CutReport>>,
    config: ClusterConfig,
    clock: Arc<VirtualClock>,
    checker: Arc<Mutex<Checker>>,
}

/// Runs one seed to its verdict. Builds its own single-threaded runtime on virtual time.
pub fn run_seed(seed: u64, settings: &SimSettings) -> SimResult<SeedReport> {
    let mut builder = tokio::runtime::Builder::new_current_thread();
    builder.enable_time().start_paused(true);
    #[cfg(tokio_unstable)]
    builder.rng_seed(tokio::runtime::RngSeed::from_bytes(&seed.to_le_bytes()));
    let runtime = builder.build().map_err(SimError::io("build the simulation runtime"))?;
    deai_storage::raft_runtime::seed_this_thread(seed);
    runtime.block_on(simulate(seed, settings.clone()))
}

async fn simulate(seed: u64, settings: SimSettings) -> SimResult<SeedReport> {
    let world = World {
        genesis: genesis(settings.nodes, seed),
        network: SimNetwork::new(seed ^ 0x6e65_7477_6f72_6b),
        nodes: Arc::new(Mutex::new((0..settings.nodes).map(|_| None).collect())),
        disks: (0..settings.nodes).map(|_| SimDisk::default()).collect(),
        cuts: Mutex::new(StdRng::seed_from_u64(seed ^ 0x706f_7765_72)),
        power_cuts: Mutex::new(Vec::new()),
        config: raft_config(&settings),
        clock: Arc::new(VirtualClock { start: Instant::now() }),
        checker: Arc::new(Mutex::new(Checker::new((0..settings.clients).map(|c| client_id(seed, c)).collect()))),
        settings,
        seed,
    };
    for id in 0..world.settings.nodes {
        world.network.attach_power(id, world.disks[id as usize].power());
        world.start(id).await?;
    }
    let members: BTreeMap<u64, BasicNode> = (0..world.settings.nodes).map(|id| (id, BasicNode::default())).collect();
    let first = slots(&world.nodes)[0].clone().ok_or_else(|| SimError::Setup("node 0 did not start".into()))?;
    first.raft.initialize(members).await.map_err(|e| SimError::Setup(format!("initialise: {e}")))?;
    drop(first);

    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..world.settings.clients)
        .map(|c| {
            let client = Client::new(&world, c);
            let stop = stop.clone();
            tokio::spawn(async move { client.run(&stop).await })
        })
        .collect();

    let mut rng = StdRng::seed_from_u64(seed ^ 0x6661_756c_7473);
    let mut faults = Vec::new();
    let mut active: Option<(SimFault, Instant)> = None;
    for _ in 0..world.settings.steps {
        tokio::time::sleep(Duration::from_millis(world.settings.step_ms)).await;
        match active {
            Some((fault, until)) if Instant::now() >= until => {
                world.heal(fault).await?;
                active = None;
            }
            None if rng.random_range(0..100) < FAULT_START_PERCENT => {
                let fault = world.draw_fault(&mut rng);
                tracing::debug!(?fault, at = world.now_ms(), "fault starts");
                world.inject(fault).await;
                faults.push((world.now_ms(), fault));
                active = Some((
                    fault,
                    Instant::now() + Duration::from_millis(rng.random_range(MIN_FAULT_MS..=MAX_FAULT_MS)),
                ));
            }
            _ => {}
        }
        world.reap_powerless().await;
        world.check_step();
    }
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.map_err(|e| SimError::Setup(format!("a client task failed: {e}")))?;
    }
    if let Some((fault, _)) = active {
        world.heal(fault).await?;
    }
    world.settle().await;

    let (messages_delivered, messages_dropped) = world.network.counts();
    let virtual_ms = world.now_ms();
    let checker = world.checker.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let mut fingerprint = checker.fingerprint();
    for (at, fault) in &faults {
        fingerprint = crate::checker::mix(fingerprint, &(at, fault));
    }
    let power_cuts = std::mem::take(&mut *world.power_cuts.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
    fingerprint = crate::checker::mix(fingerprint, &power_cuts);
    let report = SeedReport {
        seed,
        violations: checker.violations().to_vec(),
        operations: checker.counts(),
        faults,
        virtual_ms,
        messages_delivered,
        messages_dropped,
        power_cuts,
        fingerprint,
    };
    drop(checker);
    world.stop_all().await;
    Ok(report)
}

impl World {
    fn now_ms(&self) -> u64 {
        self.clock.elapsed_ms()
    }

    async fn start(&self, id: u64) -> SimResult<()> {
        let disk = &self.disks[id as usize];
        let backend = self
            .released(disk)
            .await
            .ok_or_else(|| SimError::Setup(format!("node {id}'s disk is still held by its last incarnation")))?;
        let metrics = deai_cluster::NodeMetrics::new(id);
        let name = format!("the simulated disk of node {id}");
        let mut storage = deai_storage::open_on_backend(backend, &name, self.genesis.clone(), metrics.storage.clone())
            .map_err(|e| SimError::Setup(format!("node {id} did not start: {e}")))?;
        if tracing::enabled!(tracing::Level::DEBUG) {
            use openraft::storage::{RaftLogStorage, RaftStateMachine};
            let logs = storage.0.clone().get_log_state().await;
            let committed = storage.0.clone().read_committed().await;
            let applied = storage.1.applied_state().await.map(|a| a.0);
            tracing::debug!(id, at = self.now_ms(), ?logs, ?committed, ?applied, "node starts from its disk");
        }
        let node = CoordinatorNode::start_on_storage(
            id,
            storage,
            self.network.for_node(id),
            &self.config,
            self.clock.clone(),
            metrics,
        )
        .await
        .map_err(|e| SimError::Setup(format!("node {id} did not start: {e}")))?;
        disk.power_on();
        self.checker_mut().forget_replica(id);
        self.network.up(id, node.raft.clone());
        slots(&self.nodes)[id as usize] = Some(Arc::new(node));
        Ok(())
    }

    /// Starts a node again after a fault; one that cannot start from its own disk breaks an
    /// invariant (it stays down), it does not end the run.
    async fn restart(&self, id: u64) -> SimResult<()> {
        if let Err(e) = self.start(id).await {
            self.checker_mut().violation("nodes_restart", format!("node {id} did not start from its disk: {e}"));
        }
        Ok(())
    }

    /// The disk's backend once no earlier database holds it, within a bounded virtual wait
    /// (openraft's tasks let go of the storage as they end).
    async fn released(&self, disk: &SimDisk) -> Option<SimBackend> {
        let mut backend = None;
        self.wait_until(|| {
            backend = disk.backend();
            backend.is_some()
        })
        .await;
        backend
    }

    /// Waits, a step at a time, until `done` holds or [`RELEASE_WAIT_MS`] of virtual time
    /// passed; whether it held.
    async fn wait_until(&self, mut done: impl FnMut() -> bool) -> bool {
        let deadline = Instant::now() + Duration::from_millis(RELEASE_WAIT_MS);
        loop {
            if done() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(self.settings.step_ms)).await;
        }
    }

    /// The end of a power cut: the node stops (it already sends nothing), and once its
    /// database has let go of the disk, the disk keeps only what the power left
    /// ([`SimDisk::restore_after_cut`]). A disk still held is a violation.
    async fn after_power_cut(&self, id: u64) {
        self.crash(id).await;
        let disk = &self.disks[id as usize];
        if !self.wait_until(|| !disk.in_use()).await {
            self.checker_mut()
                .violation("nodes_stop", format!("node {id}'s database still held its disk after a crash"));
            return;
        }
        let cut = disk.restore_after_cut(&mut self.cuts.lock().unwrap_or_else(std::sync::PoisonError::into_inner));
        tracing::debug!(id, ?cut, "power cut");
        self.power_cuts.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(cut);
    }

    /// Stops every node whose power went since the last step.
    async fn reap_powerless(&self) {
        for id in 0..self.settings.nodes {
            let running = slots(&self.nodes)[id as usize].is_some();
            if running && !self.disks[id as usize].has_power() {
                self.after_power_cut(id).await;
            }
        }
    }

    /// Stops node `id` where it stands: unreachable at once, its Raft shut down, its database
    /// closed when the last caller lets go.
    async fn crash(&self, id: u64) {
        self.network.down(id);
        let node = slots(&self.nodes)[id as usize].take();
        if let Some(node) = node {
            let _ = node.raft.shutdown().await;
            // A client's call in flight still holds the node; its timeout bounds the wait. The
            // database closes with the last holder, before the node may start again.
            self.wait_until(|| Arc::strong_count(&node) == 1).await;
        }
    }

    fn leader(&self) -> Option<u64> {
        slots(&self.nodes).iter().flatten().find(|n| n.leads()).map(|n| n.id)
    }

    fn draw_fault(&self, rng: &mut StdRng) -> SimFault {
        let n = self.settings.nodes;
        // Half of the node faults hit the leader of the moment.
        let target = match (rng.random_range(0..2), self.leader()) {
            (0, Some(leader)) => leader,
            _ => rng.random_range(0..n),
        };
        match rng.random_range(0..5) {
            0 => SimFault::Crash(target),
            1 => SimFault::PowerCut(target),
            2 => SimFault::Isolate(target),
            3 => SimFault::Split(target),
            _ => SimFault::Storm {
                max_delay_ms: rng.random_range(10..=STORM_MAX_DELAY_MS),
                drop_per_mille: rng.random_range(0..=STORM_MAX_DROP_PER_MILLE),
            },
        }
    }

    fn minority(&self, first: u64) -> Vec<u64> {
        let n = self.settings.nodes;
        (0..(n - 1) / 2).map(|k| (first + k) % n).collect()
    }

    async fn inject(&self, fault: SimFault) {
        let all: Vec<u64> = (0..self.settings.nodes).collect();
        match fault {
            SimFault::Crash(id) => self.crash(id).await,
            SimFault::PowerCut(id) => {
                let ops = self.cuts.lock().map(|mut rng| rng.random_range(0..=MAX_OPS_BEFORE_CUT)).unwrap_or(0);
                self.disks[id as usize].cut_power_in(ops);
            }
            SimFault::Isolate(id) => {
                let rest: Vec<u64> = all.iter().copied().filter(|&i| i != id).collect();
                self.network.partition(&[id], &rest);
            }
            SimFault::Split(first) => {
                let side = self.minority(first);
                let rest: Vec<u64> = all.iter().copied().filter(|i| !side.contains(i)).collect();
                self.network.partition(&side, &rest);
            }
            SimFault::Storm { max_delay_ms, drop_per_mille } => {
                self.network.set_weather(Weather { max_delay_ms, drop_per_mille })
            }
        }
    }

    async fn heal(&self, fault: SimFault) -> SimResult<()> {
        match fault {
            SimFault::Crash(id) => self.restart(id).await,
            SimFault::PowerCut(id) => {
                // A node that wrote too little for the cut to fall yet loses its power now.
                if self.disks[id as usize].has_power() {
                    self.disks[id as usize].cut_power();
                }
                if slots(&self.nodes)[id as usize].is_some() {
                    self.after_power_cut(id).await;
                }
                self.restart(id).await
            }
            SimFault::Isolate(_) | SimFault::Split(_) => {
                self.network.heal();
                Ok(())
            }
            SimFault::Storm { .. } => {
                self.network.set_weather(Weather::CALM);
                Ok(())
            }
        }
    }

    /// The invariants every step must keep, on every running node.
    fn check_step(&self) {
        let nodes: Vec<Arc<CoordinatorNode>> = slots(&self.nodes).iter().flatten().cloned().collect();
        let at_ms = self.now_ms();
        let mut checker = self.checker.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        for node in nodes {
            let ledger = node.ledger().read();
            checker.observe_replica(node.id, at_ms, &ledger);
        }
    }

    /// Heals everything, restarts every node that is down, waits for all to apply the same
    /// log, then checks the final states.
    async fn settle(&self) {
        self.network.heal();
        self.network.set_weather(Weather::CALM);
        for id in 0..self.settings.nodes {
            if slots(&self.nodes)[id as usize].is_none() {
                if let Err(e) = self.start(id).await {
                    self.checker_mut().violation("nodes_restart", format!("node {id} did not restart: {e}"));
                }
            }
        }
        let deadline = Instant::now() + Duration::from_millis(SETTLE_TIMEOUT_MS);
        loop {
            let heights: Vec<(u64, [u8; 32])> = slots(&self.nodes)
                .iter()
                .flatten()
                .map(|n| {
                    let ledger = n.ledger().read();
                    (ledger.height, ledger.root)
                })
                .collect();
            let acked = self.checker_mut().highest_acknowledged_height();
            let converged = heights.windows(2).all(|w| w[0] == w[1]) && heights.first().is_some_and(|h| h.0 >= acked);
            if converged && heights.len() as u64 == self.settings.nodes {
                break;
            }
            if Instant::now() >= deadline {
                self.checker_mut().violation(
                    "replicas_converge",
                    format!(
                        "the replicas did not converge within {SETTLE_TIMEOUT_MS} ms of the last fault healing: \
                     (height, root) by node {heights:?}, highest acknowledged height {acked}"
                    ),
                );
                return;
            }
            tokio::time::sleep(Duration::from_millis(self.settings.step_ms)).await;
            self.check_step();
        }
        let nodes: Vec<Arc<CoordinatorNode>> = slots(&self.nodes).iter().flatten().cloned().collect();
        let mut checker = self.checker_mut();
        for node in nodes {
            let ledger = node.ledger().read();
            checker.check_final(node.id, &ledger);
        }
    }

    fn checker_mut(&self) -> std::sync::MutexGuard<'_, Checker> {
        self.checker.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    async fn stop_all(&self) {
        for id in 0..self.settings.nodes {
            self.crash(id).await;
        }
    }
}

/// What a client holds of the native token: free balance and locked stake.
pub fn holdings(ledger: &Ledger, client: &ParticipantId) -> u128 {
    ledger.accounts.get(client).map_or(0, |a| {
        a.balances.get(&AssetId::NATIVE).copied().unwrap_or(0) + a.locked.get(&AssetId::NATIVE).copied().unwrap_or(0)
    })
}

/// One client: writes (faucet and stake locks, each with the next nonce) and linearizable
/// reads of its own holdings, one at a time, at the node it believes leads.
struct Client {
    index: usize,
    key: SigningKey,
    id: ParticipantId,
    network: deai_protocol::types::NetworkId,
    nodes: Nodes,
    checker: Arc<Mutex<Checker>>,
    clock: Arc<VirtualClock>,
    rng: StdRng,
    target: usize,
    nonce: u64,
    /// Faucet writes made, to make every amount distinct.
    made: u128,
}

impl Client {
    fn new(world: &World, index: usize) -> Self {
        let key = client_key(world.seed, index);
        Client {
            index,
            id: ParticipantId(key.verifying_key().to_bytes()),
            key,
            network: world.genesis.network_id.clone(),
            nodes: world.nodes.clone(),
            checker: world.checker.clone(),
            clock: world.clock.clone(),
            rng: StdRng::seed_from_u64(world.seed ^ 0x636c_6965_6e74 ^ index as u64),
            target: 0,
            nonce: 1,
            made: 0,
        }
    }

    fn now_ms(&self) -> u64 {
        self.clock.elapsed_ms()
    }

    fn node(&mut self) -> Option<Arc<CoordinatorNode>> {
        let slots = slots(&self.nodes);
        for _ in 0..slots.len() {
            if let Some(node) = &slots[self.target] {
                return Some(node.clone());
            }
            self.target = (self.target + 1) % slots.len();
        }
        None
    }

    fn follow(&mut self, error: &ClusterError) {
        let n = slots(&self.nodes).len();
        self.target = match error {
            ClusterError::NotLeader { leader: Some(leader) } if (*leader as usize) < n => *leader as usize,
            _ => (self.target + 1) % n,
        };
    }

    async fn run(mut self, stop: &AtomicBool) {
        while !stop.load(Ordering::Relaxed) {
            let pause = self.rng.random_range(1..=20);
            tokio::time::sleep(Duration::from_millis(pause)).await;
            let Some(node) = self.node() else { continue };
            match self.rng.random_range(0..10) {
                0..=5 => {
                    self.made += 1;
                    let amount = 1_000 * self.made + self.index as u128;
                    self.write(&node, OpKind::Faucet { amount }).await;
                }
                6 => self.write(&node, OpKind::Lock { amount: 1 }).await,
                _ => self.read(&node).await,
            }
        }
    }

    async fn write(&mut self, node: &CoordinatorNode, kind: OpKind) {
        let message = match kind {
            OpKind::Faucet { amount } => Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount }),
            OpKind::Lock { amount } => Message::LockStake(LockStake { asset: AssetId::NATIVE, amount }),
            OpKind::Read { .. } => return,
        };
        let envelope = SignedEnvelope::seal(&self.key, &self.network, self.nonce, &message);
        let invoked = self.checker.lock().map(|mut c| c.invoke()).unwrap_or_default();
        let invoked_ms = self.now_ms();
        let answer = tokio::time::timeout(Duration::from_millis(CALL_TIMEOUT_MS), node.submit(&[envelope])).await;
        let written = answer.as_ref().ok().and_then(|a| a.as_ref().ok()).map(|w| (w.log_index, w.outcome.height));
        tracing::debug!(client = self.index, node = node.id, ?kind, ?written, at = self.now_ms(), "write");
        let (outcome, height) = match answer {
            Ok(Ok(written)) => match written.outcome.outcomes.first() {
                Some(EntryOutcome::Accepted) => {
                    self.nonce += 1;
                    (Outcome::Ok, written.outcome.height)
                }
                _ => {
                    self.nonce = node.ledger().read().next_nonce(&self.id).max(self.nonce);
                    (Outcome::Rejected, 0)
                }
            },
            // Refused before it was proposed: nothing was written.
            Ok(Err(e @ ClusterError::NotLeader { .. })) => {
                self.follow(&e);
                (Outcome::Failed, 0)
            }
            Ok(Err(e)) => {
                self.follow(&e);
                self.nonce = node.ledger().read().next_nonce(&self.id).max(self.nonce);
                (Outcome::Unknown, 0)
            }
            Err(_elapsed) => {
                self.target = (self.target + 1) % slots(&self.nodes).len();
                (Outcome::Unknown, 0)
            }
        };
        self.record(Op {
            client: self.index,
            kind,
            outcome,
            invoked,
            completed: 0,
            invoked_ms,
            completed_ms: 0,
            height,
        });
    }

    async fn read(&mut self, node: &CoordinatorNode) {
        let invoked = self.checker.lock().map(|mut c| c.invoke()).unwrap_or_default();
        let invoked_ms = self.now_ms();
        let id = self.id;
        let read = node.read(Consistency::Linearizable, move |ledger| holdings(ledger, &id));
        let answer = tokio::time::timeout(Duration::from_millis(CALL_TIMEOUT_MS), read).await;
        let (term, applied) = {
            let metrics = node.raft.metrics();
            let m = metrics.borrow();
            (m.current_term, m.last_applied)
        };
        let value = answer.as_ref().ok().and_then(|a| a.as_ref().ok());
        tracing::debug!(client = self.index, node = node.id, ?value, term, ?applied, at = self.now_ms(), "read");
        let (kind, outcome) = match answer {
            Ok(Ok(value)) => (OpKind::Read { value: Some(value) }, Outcome::Ok),
            Ok(Err(e)) => {
                self.follow(&e);
                (OpKind::Read { value: None }, Outcome::Failed)
            }
            Err(_) => (OpKind::Read { value: None }, Outcome::Unknown),
        };
        self.record(Op {
            client: self.index,
            kind,
            outcome,
            invoked,
            completed: 0,
            invoked_ms,
            completed_ms: 0,
            height: 0,
        });
    }

    /// Hands a completed operation to the checker, stamped with the time it completed.
    fn record(&self, op: Op) {
        let op = Op { completed_ms: self.now_ms(), ..op };
        if let Ok(mut checker) = self.checker.lock() {
            checker.complete(op);
        }
    }
}
