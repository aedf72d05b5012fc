//! The simulated network between the nodes: every Raft RPC and its answer cross it, each held
//! for a delay drawn from the seed (so concurrent messages overtake each other), some dropped,
//! none across a cut link or to a node that is down. All of it on tokio's virtual clock.

use deai_storage::{NodeId, TypeConfig};
use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, Raft};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How the network misbehaves at a given moment; the fault schedule changes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Weather {
    /// Longest a message is held, each way, in milliseconds (each draws from `0..=max`).
    pub max_delay_ms: u64,
    /// Messages lost, in per mille.
    pub drop_per_mille: u32,
}

impl Weather {
    pub const CALM: Weather = Weather { max_delay_ms: 2, drop_per_mille: 0 };
}

struct Switchboard {
    nodes: BTreeMap<NodeId, Raft<TypeConfig>>,
    cut: BTreeSet<(NodeId, NodeId)>,
    /// Each node's power switch (its disk's): a node without power sends and answers nothing.
    power: BTreeMap<NodeId, Arc<AtomicBool>>,
    weather: Weather,
    rng: StdRng,
    delivered: u64,
    dropped: u64,
}

/// The network all nodes of one simulation share. Clones share it.
#[derive(Clone)]
pub struct SimNetwork {
    board: Arc<Mutex<Switchboard>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Lost(String);

/// What became of one message.
enum Fate {
    Deliver(Duration),
    Drop(Duration),
}

impl SimNetwork {
    pub fn new(seed: u64) -> Self {
        let board = Switchboard {
            nodes: BTreeMap::new(),
            cut: BTreeSet::new(),
            power: BTreeMap::new(),
            weather: Weather::CALM,
            rng: StdRng::seed_from_u64(seed),
            delivered: 0,
            dropped: 0,
        };
        SimNetwork { board: Arc::new(Mutex::new(board)) }
    }

    fn lock(&self) -> MutexGuard<'_, Switchboard> {
        self.board.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn up(&self, id: NodeId, raft: Raft<TypeConfig>) {
        self.lock().nodes.insert(id, raft);
    }

    pub fn attach_power(&self, id: NodeId, power: Arc<AtomicBool>) {
        self.lock().power.insert(id, power);
    }

    pub fn down(&self, id: NodeId) {
        self.lock().nodes.remove(&id);
    }

    /// Cuts every link between a node of `side` and one of `other`, both ways.
    pub fn partition(&self, side: &[NodeId], other: &[NodeId]) {
        let mut board = self.lock();
        for &a in side {
            for &b in other {
                board.cut.insert((a, b));
                board.cut.insert((b, a));
            }
        }
    }

    pub fn heal(&self) {
        self.lock().cut.clear();
    }

    pub fn set_weather(&self, weather: Weather) {
        self.lock().weather = weather;
    }

    /// Messages delivered and dropped so far.
    pub fn counts(&self) -> (u64, u64) {
        let board = self.lock();
        (board.delivered, board.dropped)
    }

    fn fate(&self) -> Fate {
        let mut board = self.lock();
        let weather = board.weather;
        let delay = Duration::from_millis(board.rng.random_range(0..=weather.max_delay_ms));
        if board.rng.random_range(0..1000) < weather.drop_per_mille {
            board.dropped += 1;
            Fate::Drop(delay)
        } else {
            board.delivered += 1;
            Fate::Deliver(delay)
        }
    }

    /// The target's Raft if `from` reaches it now.
    fn reach(&self, from: NodeId, to: NodeId) -> Result<Raft<TypeConfig>, Lost> {
        let board = self.lock();
        if board.cut.contains(&(from, to)) {
            return Err(Lost(format!("link {from} -> {to} is cut")));
        }
        for end in [from, to] {
            if board.power.get(&end).is_some_and(|p| !p.load(Ordering::Relaxed)) {
                return Err(Lost(format!("node {end} has no power")));
            }
        }
        board.nodes.get(&to).cloned().ok_or_else(|| Lost(format!("node {to} is down")))
    }

    /// Carries one request from `from` to `to` and its answer back, through the weather.
    async fn carry<T, E, F, Fut>(&self, from: NodeId, to: NodeId, call: F) -> Result<T, RPCError<NodeId, BasicNode, E>>
    where
        E: std::error::Error,
        F: FnOnce(Raft<TypeConfig>) -> Fut,
        Fut: std::future::Future<Output = Result<T, E>>,
    {
        let unreachable = |e: Lost| RPCError::Unreachable(Unreachable::new(&e));
        // A node that lost its power sends nothing more.
        if let Err(e) = self.reach(from, from) {
            return Err(unreachable(e));
        }
        match self.fate() {
            Fate::Drop(after) => {
                tokio::time::sleep(after).await;
                return Err(unreachable(Lost(format!("request {from} -> {to} lost"))));
            }
            Fate::Deliver(after) => tokio::time::sleep(after).await,
        }
        let raft = self.reach(from, to).map_err(unreachable)?;
        let answer = call(raft).await;
        match self.fate() {
            Fate::Drop(after) => {
                tokio::time::sleep(after).await;
                Err(unreachable(Lost(format!("answer {to} -> {from} lost"))))
            }
            Fate::Deliver(after) => {
                tokio::time::sleep(after).await;
                // The answer crosses the link back: a cut since then loses it.
                self.reach(to, from).map_err(unreachable)?;
                answer.map_err(|e| RPCError::RemoteError(RemoteError::new(to, e)))
            }
        }
    }

    pub fn for_node(&self, from: NodeId) -> NodeLinks {
        NodeLinks { from, network: self.clone() }
    }
}

/// Node `from`'s view of the network, as its Raft takes it.
pub struct NodeLinks {
    from: NodeId,
    network: SimNetwork,
}

impl RaftNetworkFactory<TypeConfig> for NodeLinks {
    type Network = SimLink;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> SimLink {
        SimLink { from: self.from, to: target, network: self.network.clone() }
    }
}

/// One node's link to another.
pub struct SimLink {
    from: NodeId,
    to: NodeId,
    network: SimNetwork,
}

impl RaftNetwork<TypeConfig> for SimLink {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.network.carry(self.from, self.to, |raft| async move { raft.append_entries(rpc).await }).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        self.network.carry(self.from, self.to, |raft| async move { raft.install_snapshot(rpc).await }).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.network.carry(self.from, self.to, |raft| async move { raft.vote(rpc).await }).await
    }
}
