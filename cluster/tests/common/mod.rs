//! The in-process cluster harness the multi-node tests share.

#![allow(dead_code)]

use deai_clock::SharedClock;
use deai_cluster::network::in_process::InProcessRouter;
use deai_cluster::network::peer_auth::{MemberKeys, PeerAuth};
use deai_cluster::network::tcp::{self, TcpNetwork};
use deai_cluster::{ClusterConfig, CoordinatorNode};
use deai_protocol::message::{DevFaucet, Message};
use deai_protocol::testkit::{CoordinatorKeys, Keys, TestNet};
use deai_protocol::types::AssetId;
use deai_protocol::{Genesis, SignedEnvelope};
use openraft::BasicNode;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

/// Longest a test waits for the cluster to reach a state.
pub const WAIT: Duration = Duration::from_secs(10);

pub fn genesis() -> Genesis {
    deai_protocol::testkit::test_genesis(3)
}

/// Short timeouts, so that tests elect quickly.
pub fn fast_elections() -> ClusterConfig {
    ClusterConfig {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 200,
        election_timeout_max_ms: 400,
        ..ClusterConfig::default()
    }
}

pub struct Cluster {
    pub router: InProcessRouter,
    pub dirs: tempfile::TempDir,
    pub nodes: BTreeMap<u64, CoordinatorNode>,
    pub config: ClusterConfig,
    /// Each node's clock; a node not listed reads the system clock.
    pub clocks: BTreeMap<u64, SharedClock>,
}

impl Cluster {
    pub async fn start(n: u64) -> Cluster {
        Self::start_with(n, fast_elections()).await
    }

    pub async fn start_with(n: u64, config: ClusterConfig) -> Cluster {
        Self::start_with_clocks(n, config, BTreeMap::new()).await
    }

    /// An `n`-node cluster whose nodes read the time from `clocks` (the system clock if not listed).
    pub async fn start_with_clocks(n: u64, config: ClusterConfig, clocks: BTreeMap<u64, SharedClock>) -> Cluster {
        let router = InProcessRouter::new();
        let dirs = tempfile::tempdir().unwrap();
        let mut cluster = Cluster { router, dirs, nodes: BTreeMap::new(), config, clocks };
        for id in 0..n {
            cluster.start_node(id).await;
        }
        let members: BTreeMap<u64, BasicNode> = (0..n).map(|id| (id, BasicNode::default())).collect();
        cluster.nodes[&0].raft.initialize(members).await.expect("initialize");
        cluster
    }

    pub fn dir(&self, id: u64) -> PathBuf {
        self.dirs.path().join(format!("node-{id}"))
    }

    pub async fn start_node(&mut self, id: u64) {
        let dir = self.dir(id);
        let clock = self.clocks.get(&id).cloned().unwrap_or_else(deai_clock::system);
        let node = start_with_clock(id, &dir, &self.router, &self.config, clock).await;
        self.router.register(id, node.raft.clone());
        self.nodes.insert(id, node);
    }

    pub async fn stop_node(&mut self, id: u64) {
        self.router.unregister(id);
        self.nodes.remove(&id).expect("running").shutdown().await.unwrap();
    }

    pub async fn leader(&self) -> u64 {
        let any = self.nodes.values().next().unwrap();
        let m = any
            .raft
            .wait(Some(WAIT))
            .metrics(|m| m.current_leader.is_some_and(|l| self.nodes.contains_key(&l)), "a running leader")
            .await
            .expect("a leader is elected");
        m.current_leader.unwrap()
    }

    pub async fn wait_applied(&self, index: u64) {
        for node in self.nodes.values() {
            node.raft.wait(Some(WAIT)).applied_index_at_least(Some(index), "caught up").await.expect("applied");
        }
    }

    pub fn roots(&self) -> Vec<[u8; 32]> {
        self.nodes.values().map(|n| n.ledger().read().root).collect()
    }
}

pub async fn start(id: u64, dir: &Path, router: &InProcessRouter, config: &ClusterConfig) -> CoordinatorNode {
    start_with_clock(id, dir, router, config, deai_clock::system()).await
}

pub async fn start_with_clock(
    id: u64,
    dir: &Path,
    router: &InProcessRouter,
    config: &ClusterConfig,
    clock: SharedClock,
) -> CoordinatorNode {
    CoordinatorNode::start(id, dir, genesis(), router.network_for(id), config, clock).await.expect("node starts")
}

/// `n` signed faucet envelopes from distinct clients, sealed against a fresh ledger.
pub fn faucet_batch(net: &TestNet, tag: &str, n: usize) -> Vec<SignedEnvelope> {
    (0..n)
        .map(|i| {
            let who = Keys::from_name(&format!("{tag}-{i}"));
            net.entry(&who, Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 1_000 })).envelope
        })
        .collect()
}

/// The name every TCP test network shares.
pub const NETWORK: &str = "deai-test";

/// Raft timeouts for clusters over loopback TCP.
pub fn tcp_config() -> ClusterConfig {
    ClusterConfig {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 300,
        election_timeout_max_ms: 600,
        ..ClusterConfig::default()
    }
}

/// The test coordinators' keys, bound to node ids 0..n as `test_genesis` lists them.
pub fn member_keys(n: u64) -> MemberKeys {
    (0..n).map(|i| (i, CoordinatorKeys::from_name(&format!("coordinator-{i}")).keys.id)).collect()
}

/// Node `id`'s side of the peer handshake in an `n`-member test cluster.
pub fn auth_as(id: u64, n: u64) -> PeerAuth {
    let key = CoordinatorKeys::from_name(&format!("coordinator-{id}")).keys.signing;
    PeerAuth::new(id, &key, member_keys(n)).expect("a member's auth")
}

/// Binds `n` loopback listeners on ports the OS picks; returns them and the membership.
pub async fn bind_listeners(n: u64) -> (Vec<TcpListener>, BTreeMap<u64, BasicNode>) {
    let mut listeners = Vec::new();
    let mut members = BTreeMap::new();
    for id in 0..n {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        members.insert(id, BasicNode::new(listener.local_addr().unwrap().to_string()));
        listeners.push(listener);
    }
    (listeners, members)
}

/// Starts one node per listener over authenticated TCP, forwarding writes; not initialised.
pub async fn start_tcp_nodes(
    dir: &Path,
    listeners: Vec<TcpListener>,
    members: &BTreeMap<u64, BasicNode>,
    genesis: Genesis,
) -> Vec<Arc<CoordinatorNode>> {
    let n = listeners.len() as u64;
    let seeds: Vec<String> = members.values().map(|m| m.addr.clone()).collect();
    let mut nodes = Vec::new();
    for (id, listener) in (0..n).zip(listeners) {
        let network = TcpNetwork::new(NETWORK, auth_as(id, n)).with_seed_peer_addrs(seeds.clone());
        let mut node = CoordinatorNode::start(
            id,
            &dir.join(format!("node-{id}")),
            genesis.clone(),
            network.clone(),
            &tcp_config(),
            deai_clock::system(),
        )
        .await
        .unwrap();
        node.forward_writes_over_tcp(network.clone());
        let node = Arc::new(node);
        tokio::spawn(tcp::serve_node(listener, node.clone(), network));
        nodes.push(node);
    }
    nodes
}

/// Starts and initialises an `n`-node cluster over authenticated loopback TCP.
pub async fn start_tcp_cluster(
    dir: &Path,
    n: u64,
    genesis: Genesis,
) -> (Vec<Arc<CoordinatorNode>>, BTreeMap<u64, BasicNode>) {
    let (listeners, members) = bind_listeners(n).await;
    let nodes = start_tcp_nodes(dir, listeners, &members, genesis).await;
    nodes[0].raft.initialize(members.clone()).await.unwrap();
    (nodes, members)
}

/// The leader, once every node in `nodes` agrees there is one.
pub async fn tcp_leader(nodes: &[Arc<CoordinatorNode>]) -> u64 {
    let m = nodes[0].raft.wait(Some(WAIT)).metrics(|m| m.current_leader.is_some(), "a leader").await.unwrap();
    let leader = m.current_leader.unwrap();
    for node in nodes {
        node.raft.wait(Some(WAIT)).current_leader(leader, "every node knows the leader").await.unwrap();
    }
    leader
}
