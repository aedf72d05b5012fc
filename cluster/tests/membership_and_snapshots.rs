//! Membership changes and snapshot install to a lagging node (issue 4), in one process.

mod common;

use common::{faucet_batch, start, Cluster, WAIT};
use deai_cluster::ClusterConfig;
use deai_protocol::testkit::TestNet;
use openraft::BasicNode;
use std::collections::BTreeSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn membership_grows_from_three_to_five_and_shrinks_back() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let net = TestNet::new();
    cluster.nodes[&leader].submit(&faucet_batch(&net, "m", 4)).await.unwrap();
    for id in [3, 4] {
        cluster.start_node(id).await;
        cluster.nodes[&leader].raft.add_learner(id, BasicNode::default(), true).await.expect("learner catches up");
    }
    let five: BTreeSet<u64> = (0..5).collect();
    cluster.nodes[&leader].raft.change_membership(five.clone(), false).await.expect("3 -> 5");
    let voters = |c: &Cluster, id: u64| -> BTreeSet<u64> {
        c.nodes[&id].raft.metrics().borrow().membership_config.membership().voter_ids().collect()
    };
    assert_eq!(voters(&cluster, leader), five);
    let written = cluster.nodes[&leader].submit(&faucet_batch(&net, "five", 2)).await.unwrap();
    cluster.wait_applied(written.log_index).await;
    assert!(cluster.roots().windows(2).all(|w| w[0] == w[1]), "all five agree");

    let back: BTreeSet<u64> = [0, 1, 2].into();
    let leader = cluster.leader().await;
    cluster.nodes[&leader].raft.change_membership(back.clone(), false).await.expect("5 -> 3");
    assert_eq!(voters(&cluster, leader), back);
    for id in [3, 4] {
        cluster.stop_node(id).await;
    }
    let leader = cluster.leader().await;
    cluster.nodes[&leader].submit(&faucet_batch(&net, "three", 2)).await.expect("the three-node cluster writes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lagging_follower_is_brought_up_by_snapshot() {
    let config = ClusterConfig {
        heartbeat_interval_ms: 50,
        election_timeout_min_ms: 200,
        election_timeout_max_ms: 400,
        snapshot_every_entries: 5,
        max_in_snapshot_log_to_keep: 0,
        ..ClusterConfig::default()
    };
    let mut cluster = Cluster::start_with(3, config).await;
    let leader = cluster.leader().await;
    let lagging = (0..3).find(|id| *id != leader).unwrap();
    cluster.stop_node(lagging).await;
    let net = TestNet::new();
    let mut last = None;
    for round in 0..12 {
        last = Some(cluster.nodes[&leader].submit(&faucet_batch(&net, &format!("s{round}"), 2)).await.unwrap());
    }
    let last = last.unwrap();
    // The leader snapshots and purges its log, so the lagging node can only catch up by snapshot.
    cluster.nodes[&leader]
        .raft
        .wait(Some(WAIT))
        .metrics(|m| m.purged.is_some_and(|p| p.index > 1), "the leader purged its log")
        .await
        .expect("log purged after a snapshot");
    let node = start(lagging, &cluster.dir(lagging), &cluster.router, &cluster.config).await;
    cluster.router.register(lagging, node.raft.clone());
    cluster.nodes.insert(lagging, node);
    cluster.wait_applied(last.log_index).await;
    let snapshot = cluster.nodes[&lagging].raft.metrics().borrow().snapshot;
    assert!(snapshot.is_some(), "the lagging node installed a snapshot");
    assert_eq!(cluster.nodes[&lagging].ledger().read().root, last.outcome.root);
}
