//! Multi-node behaviour in one process (issue 4): election, replication, and a follower that
//! restarts from its own disk. Nodes talk through `InProcessRouter`; each test waits on a
//! condition with a deadline, never on a sleep.

use deai_cluster::network::in_process::InProcessRouter;
use deai_cluster::{ClusterConfig, ClusterError, CoordinatorNode};
use deai_protocol::ledger::Entry;
use deai_protocol::message::{DevFaucet, Message};
use deai_protocol::testkit::{Keys, TestNet};
use deai_protocol::types::AssetId;
use deai_protocol::Genesis;
use deai_storage::EntryOutcome;
use openraft::BasicNode;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Longest a test waits for the cluster to reach a state.
const WAIT: Duration = Duration::from_secs(10);

fn genesis() -> Genesis {
    deai_protocol::testkit::test_genesis(3)
}

struct Cluster {
    router: InProcessRouter,
    dirs: tempfile::TempDir,
    nodes: BTreeMap<u64, CoordinatorNode>,
    config: ClusterConfig,
}

impl Cluster {
    async fn start(n: u64) -> Cluster {
        let router = InProcessRouter::new();
        let dirs = tempfile::tempdir().unwrap();
        let config = ClusterConfig {
            heartbeat_interval_ms: 50,
            election_timeout_min_ms: 200,
            election_timeout_max_ms: 400,
            ..ClusterConfig::default()
        };
        let mut cluster = Cluster { router, dirs, nodes: BTreeMap::new(), config };
        for id in 0..n {
            cluster.start_node(id).await;
        }
        let members: BTreeMap<u64, BasicNode> = (0..n).map(|id| (id, BasicNode::default())).collect();
        cluster.nodes[&0].raft.initialize(members).await.expect("initialize");
        cluster
    }

    fn dir(&self, id: u64) -> PathBuf {
        self.dirs.path().join(format!("node-{id}"))
    }

    async fn start_node(&mut self, id: u64) {
        let dir = self.dir(id);
        let node = start(id, &dir, &self.router, &self.config).await;
        self.router.register(id, node.raft.clone());
        self.nodes.insert(id, node);
    }

    async fn stop_node(&mut self, id: u64) {
        self.router.unregister(id);
        self.nodes.remove(&id).expect("running").shutdown().await.unwrap();
    }

    async fn leader(&self) -> u64 {
        let any = self.nodes.values().next().unwrap();
        let m = any
            .raft
            .wait(Some(WAIT))
            .metrics(|m| m.current_leader.is_some_and(|l| self.nodes.contains_key(&l)), "a running leader")
            .await
            .expect("a leader is elected");
        m.current_leader.unwrap()
    }

    async fn wait_applied(&self, index: u64) {
        for node in self.nodes.values() {
            node.raft.wait(Some(WAIT)).applied_index_at_least(Some(index), "caught up").await.expect("applied");
        }
    }

    fn roots(&self) -> Vec<[u8; 32]> {
        self.nodes.values().map(|n| n.ledger().read().root).collect()
    }
}

async fn start(id: u64, dir: &Path, router: &InProcessRouter, config: &ClusterConfig) -> CoordinatorNode {
    CoordinatorNode::start(id, dir, genesis(), router.network_for(id), config).await.expect("node starts")
}

/// `n` signed faucet entries from distinct clients, sealed against a fresh ledger.
fn faucet_batch(net: &TestNet, tag: &str, n: usize) -> Vec<Entry> {
    (0..n)
        .map(|i| {
            let who = Keys::from_name(&format!("{tag}-{i}"));
            net.entry(&who, Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 1_000 }))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_elect_a_leader_and_replicate_signed_batches() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let net = TestNet::new();
    let written = cluster.nodes[&leader].submit(&faucet_batch(&net, "a", 10)).await.expect("write");
    let outcome = written.outcome;
    assert_eq!(outcome.outcomes, vec![EntryOutcome::Accepted; 10]);
    assert_eq!(outcome.height, 10);
    cluster.wait_applied(written.log_index).await;
    let roots = cluster.roots();
    assert!(roots.iter().all(|r| *r == outcome.root), "every replica reaches the leader's root");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_refuses_writes_and_names_the_leader() {
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = (0..3).find(|id| *id != leader).unwrap();
    cluster.nodes[&follower]
        .raft
        .wait(Some(WAIT))
        .current_leader(leader, "the follower knows the leader")
        .await
        .expect("the follower hears from the leader");
    let net = TestNet::new();
    let err = cluster.nodes[&follower].submit(&faucet_batch(&net, "f", 1)).await.unwrap_err();
    assert!(matches!(err, ClusterError::NotLeader { leader: Some(l) } if l == leader), "{err}");
    assert_eq!(err.code(), "not_leader");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_follower_restarts_from_its_own_disk_and_catches_up() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let follower = (0..3).find(|id| *id != leader).unwrap();
    let net = TestNet::new();
    let written = cluster.nodes[&leader].submit(&faucet_batch(&net, "before", 5)).await.unwrap();
    cluster.wait_applied(written.log_index).await;
    let height_before = cluster.nodes[&follower].ledger().read().height;
    assert_eq!(height_before, 5);

    cluster.stop_node(follower).await;
    // The survivors keep a majority and keep writing.
    let during = cluster.nodes[&leader].submit(&faucet_batch(&net, "during", 5)).await.unwrap();

    // The follower comes back from disk: its own log gives back the 5 entries it had applied
    // before it hears from anyone.
    let node = start(follower, &cluster.dir(follower), &cluster.router, &cluster.config).await;
    node.raft
        .wait(Some(WAIT))
        .metrics(|_| node.ledger().read().height >= height_before, "re-applied its own log")
        .await
        .expect("the restarted node re-applies its committed log from disk");
    cluster.router.register(follower, node.raft.clone());
    cluster.nodes.insert(follower, node);
    cluster.wait_applied(during.log_index).await;
    let roots = cluster.roots();
    assert!(roots.windows(2).all(|w| w[0] == w[1]), "replicas agree after the restart");
    assert_eq!(cluster.nodes[&follower].ledger().read().height, 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_crashed_leader_is_replaced_and_no_acknowledged_write_is_lost() {
    let mut cluster = Cluster::start(3).await;
    let old = cluster.leader().await;
    let net = TestNet::new();
    let first = cluster.nodes[&old].submit(&faucet_batch(&net, "first", 3)).await.unwrap().outcome;
    // Crash the leader; the other two elect a new one.
    cluster.stop_node(old).await;
    let new = cluster.leader().await;
    assert_ne!(new, old);
    let second = cluster.nodes[&new].submit(&faucet_batch(&net, "second", 3)).await.unwrap();
    assert_eq!(second.outcome.height, first.height + 3, "the acknowledged batch survived the failover");
    cluster.start_node(old).await;
    cluster.wait_applied(second.log_index).await;
    assert!(cluster.roots().windows(2).all(|w| w[0] == w[1]));
}
