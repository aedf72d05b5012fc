//! The in-process cluster harness the multi-node tests share.

#![allow(dead_code)]

use deai_cluster::network::in_process::InProcessRouter;
use deai_cluster::{ClusterConfig, CoordinatorNode};
use deai_protocol::ledger::Entry;
use deai_protocol::message::{DevFaucet, Message};
use deai_protocol::testkit::{Keys, TestNet};
use deai_protocol::types::AssetId;
use deai_protocol::Genesis;
use openraft::BasicNode;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

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
}

impl Cluster {
    pub async fn start(n: u64) -> Cluster {
        Self::start_with(n, fast_elections()).await
    }

    pub async fn start_with(n: u64, config: ClusterConfig) -> Cluster {
        let router = InProcessRouter::new();
        let dirs = tempfile::tempdir().unwrap();
        let mut cluster = Cluster { router, dirs, nodes: BTreeMap::new(), config };
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
        let node = start(id, &dir, &self.router, &self.config).await;
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
    CoordinatorNode::start(id, dir, genesis(), router.network_for(id), config).await.expect("node starts")
}

/// `n` signed faucet entries from distinct clients, sealed against a fresh ledger.
pub fn faucet_batch(net: &TestNet, tag: &str, n: usize) -> Vec<Entry> {
    (0..n)
        .map(|i| {
            let who = Keys::from_name(&format!("{tag}-{i}"));
            net.entry(&who, Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 1_000 }))
        })
        .collect()
}
