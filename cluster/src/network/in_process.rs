//! Delivers Raft RPCs between nodes of one process, with links that can be cut: the network of
//! the multi-node tests. A message to a node that is not registered, or across a cut link, fails
//! as an unreachable peer does.

use deai_storage::{NodeId, TypeConfig};
use openraft::error::{InstallSnapshotError, RPCError, RaftError, RemoteError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, Raft};
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};

#[derive(Default)]
struct Routes {
    nodes: BTreeMap<NodeId, Raft<TypeConfig>>,
    /// Cut links, as `(from, to)`.
    cut: BTreeSet<(NodeId, NodeId)>,
}

/// The shared switchboard. Clones share it.
#[derive(Clone, Default)]
pub struct InProcessRouter {
    routes: Arc<Mutex<Routes>>,
}

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct LinkDown(String);

impl InProcessRouter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Makes `raft` reachable as node `id`.
    pub fn register(&self, id: NodeId, raft: Raft<TypeConfig>) {
        self.lock().nodes.insert(id, raft);
    }

    /// Makes node `id` unreachable (as if it crashed).
    pub fn unregister(&self, id: NodeId) {
        self.lock().nodes.remove(&id);
    }

    /// Cuts both directions between `a` and `b`.
    pub fn cut(&self, a: NodeId, b: NodeId) {
        let mut r = self.lock();
        r.cut.insert((a, b));
        r.cut.insert((b, a));
    }

    /// Restores every cut link.
    pub fn heal(&self) {
        self.lock().cut.clear();
    }

    /// The network factory node `from` hands to its Raft.
    pub fn network_for(&self, from: NodeId) -> InProcessNetwork {
        InProcessNetwork { from, router: self.clone() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Routes> {
        self.routes.lock().expect("router lock holder panicked")
    }

    fn target(&self, from: NodeId, to: NodeId) -> Result<Raft<TypeConfig>, LinkDown> {
        let r = self.lock();
        if r.cut.contains(&(from, to)) {
            return Err(LinkDown(format!("link {from} -> {to} is cut")));
        }
        r.nodes.get(&to).cloned().ok_or_else(|| LinkDown(format!("node {to} is not running")))
    }
}

/// Node `from`'s view of the router.
pub struct InProcessNetwork {
    from: NodeId,
    router: InProcessRouter,
}

impl RaftNetworkFactory<TypeConfig> for InProcessNetwork {
    type Network = InProcessConnection;

    async fn new_client(&mut self, target: NodeId, _node: &BasicNode) -> Self::Network {
        InProcessConnection { from: self.from, to: target, router: self.router.clone() }
    }
}

/// One node's connection to another.
pub struct InProcessConnection {
    from: NodeId,
    to: NodeId,
    router: InProcessRouter,
}

impl InProcessConnection {
    fn target<E: std::error::Error>(&self) -> Result<Raft<TypeConfig>, RPCError<NodeId, BasicNode, E>> {
        self.router.target(self.from, self.to).map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))
    }
}

impl RaftNetwork<TypeConfig> for InProcessConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let raft = self.target()?;
        raft.append_entries(rpc).await.map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)))
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        _option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        let raft = self.target()?;
        raft.install_snapshot(rpc).await.map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)))
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        _option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let raft = self.target()?;
        raft.vote(rpc).await.map_err(|e| RPCError::RemoteError(RemoteError::new(self.to, e)))
    }
}

/// Leader-transfer steps reach the other nodes' Raft directly.
impl crate::control::PeerControl for InProcessRouter {
    fn control<'a>(
        &'a self,
        peer: NodeId,
        _addr: &'a str,
        request: crate::control::ControlRequest,
    ) -> crate::control::ControlFuture<'a> {
        Box::pin(async move {
            let raft = self.lock().nodes.get(&peer).cloned().ok_or_else(|| format!("node {peer} is not running"))?;
            crate::control::handle_control(&raft, request).await
        })
    }
}
