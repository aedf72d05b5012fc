//! Multi-node behaviour in one process (issue 4): election, replication, and a follower that
//! restarts from its own disk. Nodes talk through `InProcessRouter`; each test waits on a
//! condition with a deadline, never on a sleep.

mod common;

use common::{faucet_batch, start, Cluster, WAIT};
use deai_cluster::ClusterError;
use deai_protocol::testkit::TestNet;
use deai_storage::EntryOutcome;

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

/// The leader's batcher stamps with the clock the node was started with, and only the leader's:
/// each node here has a hand-driven clock of its own, and ledger time follows the leader's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_stamps_batches_with_its_injected_clock() {
    use deai_clock::{ManualClock, SharedClock};
    use std::collections::BTreeMap;
    use std::sync::Arc;

    let manual: BTreeMap<u64, Arc<ManualClock>> =
        (0..3).map(|id| (id, Arc::new(ManualClock::new(1_000_000 * (id + 1))))).collect();
    let clocks: BTreeMap<u64, SharedClock> = manual.iter().map(|(id, c)| (*id, c.clone() as SharedClock)).collect();
    let cluster = Cluster::start_with_clocks(3, common::fast_elections(), clocks).await;
    let leader = cluster.leader().await;
    assert_eq!(cluster.nodes[&leader].clock().now_ms(), 1_000_000 * (leader + 1), "node.clock() is the one injected");
    let net = TestNet::new();
    let first = cluster.nodes[&leader].submit(&faucet_batch(&net, "t1", 2)).await.expect("write");
    cluster.wait_applied(first.log_index).await;
    for node in cluster.nodes.values() {
        assert_eq!(node.ledger().read().now_ms, 1_000_000 * (leader + 1), "ledger time is the leader's clock");
    }
    manual[&leader].advance(250);
    let second = cluster.nodes[&leader].submit(&faucet_batch(&net, "t2", 1)).await.expect("write");
    cluster.wait_applied(second.log_index).await;
    assert_eq!(cluster.nodes[&leader].ledger().read().now_ms, 1_000_000 * (leader + 1) + 250);
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_over_the_log_command_limit_is_refused_before_raft() {
    use deai_protocol::message::{Message, OrderMode, Payload, PutOrder};
    use deai_protocol::testkit::Keys;
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let net = TestNet::new();
    let who = Keys::from_name("big");
    let big: Vec<_> = (0..150)
        .map(|i| {
            let put = PutOrder {
                service: "text-generation".into(),
                mode: OrderMode::Free,
                payload: Payload::Inline(vec![i as u8; 60_000]),
            };
            net.entry(&who, Message::PutOrder(put)).envelope
        })
        .collect();
    let before = cluster.nodes[&leader].raft.metrics().borrow().last_log_index;
    let err = cluster.nodes[&leader].submit(&big).await.unwrap_err();
    assert_eq!(err.code(), "batch_too_large", "{err}");
    assert_eq!(cluster.nodes[&leader].raft.metrics().borrow().last_log_index, before, "nothing was appended");
}

/// Leader transfer (issue 4) in a five-voter cluster, where the target needs the votes of
/// followers whose leader leases must first run out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_is_transferred_to_the_chosen_voter() {
    use deai_cluster::admin::transfer_leader;
    let cluster = Cluster::start(5).await;
    let leader = cluster.leader().await;
    let target = (0..5).rev().find(|id| *id != leader).unwrap();
    let net = TestNet::new();
    let written = cluster.nodes[&leader].submit(&faucet_batch(&net, "t", 5)).await.expect("write");
    cluster.wait_applied(written.log_index).await;
    let term_before = cluster.nodes[&leader].raft.metrics().borrow().current_term;
    transfer_leader(&cluster.nodes[&leader], target, &cluster.router).await.expect("transfer");
    for node in cluster.nodes.values() {
        node.raft.wait(Some(WAIT)).current_leader(target, "every node follows the target").await.unwrap();
    }
    assert!(cluster.nodes[&target].raft.metrics().borrow().current_term > term_before);
    let after = cluster.nodes[&target].submit(&faucet_batch(&net, "t2", 5)).await.expect("the new leader writes");
    assert_eq!(after.outcome.outcomes, vec![EntryOutcome::Accepted; 5]);
    cluster.wait_applied(after.log_index).await;
    assert!(cluster.roots().iter().all(|r| *r == after.outcome.root));
    // The old leader is a follower again, with its elections back on: it refuses writes.
    let err = cluster.nodes[&leader].submit(&faucet_batch(&net, "t3", 1)).await.unwrap_err();
    assert_eq!(err.code(), "not_leader");
}

/// A transfer to a node that is not a voter is refused before anything changes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_cannot_go_to_a_non_voter() {
    use deai_cluster::admin::transfer_leader;
    let cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    let err = transfer_leader(&cluster.nodes[&leader], 42, &cluster.router).await.unwrap_err();
    assert_eq!(err.code(), "cluster_config");
    assert!(err.to_string().contains("not a voter"), "{err}");
    let follower = (0..3).find(|id| *id != leader).unwrap();
    let err = transfer_leader(&cluster.nodes[&follower], leader, &cluster.router).await.unwrap_err();
    assert_eq!(err.code(), "not_leader");
    assert_eq!(cluster.leader().await, leader, "leadership did not move");
}

/// `/readyz` semantics: a node is ready once it is a member, knows a leader and has applied
/// what it knows is committed; a node nobody has added is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_needs_membership_and_a_leader() {
    let mut cluster = Cluster::start(3).await;
    let leader = cluster.leader().await;
    for node in cluster.nodes.values() {
        node.raft.wait(Some(WAIT)).current_leader(leader, "knows the leader").await.unwrap();
    }
    for (id, node) in &cluster.nodes {
        let deadline = std::time::Instant::now() + WAIT;
        while node.readiness().is_err() {
            assert!(std::time::Instant::now() < deadline, "node {id} never ready: {:?}", node.readiness());
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
    }
    cluster.start_node(7).await;
    let why = cluster.nodes[&7].readiness().unwrap_err();
    assert!(why.contains("not a member"), "{why}");
    let status = deai_cluster::admin::status(&cluster.nodes[&7]);
    assert_eq!(status.not_ready.as_deref(), Some(why.as_str()));
    assert!(status.voters.is_empty());
}
