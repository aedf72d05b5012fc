//! Raft over real, authenticated TCP sockets on loopback: a three-node cluster replicates,
//! forwards, transfers leadership, and a peer from another network is refused with the reason.

mod common;

use common::{auth_as, faucet_batch, start_tcp_cluster, NETWORK, WAIT};
use deai_cluster::admin::{AdminGate, AdmitFuture, SignedAdmin};
use deai_cluster::network::tcp::TcpNetwork;
use deai_cluster::{Consistency, CoordinatorNode};
use deai_protocol::testkit::{test_genesis, TestNet};
use deai_storage::EntryOutcome;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::VoteRequest;
use openraft::{BasicNode, Vote};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

/// Starts `n` nodes listening on loopback ports the OS picks; returns them and their addresses.
async fn start_cluster(dir: &std::path::Path, n: u64) -> (Vec<Arc<CoordinatorNode>>, BTreeMap<u64, BasicNode>) {
    start_tcp_cluster(dir, n, test_genesis(3)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_replicate_over_loopback_tcp() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, _) = start_cluster(dir.path(), 3).await;
    let m = nodes[0]
        .raft
        .wait(Some(WAIT))
        .metrics(|m| m.current_leader.is_some(), "a leader")
        .await
        .expect("a leader is elected over TCP");
    let leader = m.current_leader.unwrap() as usize;
    let net = TestNet::new();
    let batch = faucet_batch(&net, "tcp", 20);
    let written = nodes[leader].submit(&batch).await.expect("write over TCP");
    assert_eq!(written.outcome.outcomes, vec![EntryOutcome::Accepted; 20]);
    for node in &nodes {
        node.raft.wait(Some(WAIT)).applied_index_at_least(Some(written.log_index), "applied").await.unwrap();
        assert_eq!(node.ledger().read().root, written.outcome.root);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_from_another_network_is_refused_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, members) = start_cluster(dir.path(), 3).await;
    // A member's key, but another network's id: refused in the hello, with the reason.
    let mut stranger = TcpNetwork::new("another-network", auth_as(2, 3));
    let mut link = stranger.new_client(0, &members[&0]).await;
    let request = VoteRequest { vote: Vote::new(99, 9), last_log_id: None };
    let err = link.vote(request, RPCOption::new(Duration::from_secs(2))).await.unwrap_err();
    let text = err.to_string();
    assert!(text.contains("another-network") && text.contains("deai-test"), "unclear refusal: {text}");
    assert!(nodes[0].raft.metrics().borrow().current_term < 99, "the stranger's vote never reached Raft");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_reaching_a_follower_is_forwarded_and_a_linearizable_read_there_sees_it() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, _) = start_cluster(dir.path(), 3).await;
    let m = nodes[0].raft.wait(Some(WAIT)).metrics(|m| m.current_leader.is_some(), "a leader").await.unwrap();
    let leader = m.current_leader.unwrap();
    let follower = (0..3u64).find(|id| *id != leader).unwrap() as usize;
    nodes[follower].raft.wait(Some(WAIT)).current_leader(leader, "follower knows the leader").await.unwrap();
    let net = TestNet::new();
    let batch = faucet_batch(&net, "fwd", 5);
    let written = nodes[follower].write(&batch).await.expect("the follower forwards the write");
    assert_eq!(written.outcome.outcomes, vec![EntryOutcome::Accepted; 5]);
    let height = nodes[leader as usize].read(Consistency::Linearizable, |l| l.height).await.unwrap();
    assert_eq!(height, 5, "a linearizable read on the leader sees the acknowledged write");
    // Right after the acknowledgement, with no wait: the follower asks the leader for its read
    // index and applies up to it first, so it cannot answer from before the write.
    let on_follower = nodes[follower].read(Consistency::Linearizable, |l| l.height).await.unwrap();
    assert_eq!(on_follower, 5, "a linearizable read on a follower sees the acknowledged write");
    assert!(nodes[follower].raft.metrics().borrow().last_applied.map_or(0, |l| l.index) >= written.log_index);
    assert_eq!(nodes[follower].read(Consistency::Stale, |l| l.height).await.unwrap(), 5);
}

/// SPEC 6.3 end to end: each node signs the checkpoint its own replica computed, and a quorum
/// certificate forms on every replica.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinators_sign_checkpoints_into_a_quorum_certificate() {
    use deai_cluster::checkpointer;
    use deai_protocol::envelope::verify_detached;
    use deai_protocol::ledger::checkpoint_signing_bytes;
    use deai_protocol::testkit::CoordinatorKeys;

    let dir = tempfile::tempdir().unwrap();
    let mut genesis = test_genesis(3);
    genesis.params.checkpoint_every = 10;
    let (nodes, _) = start_tcp_cluster(dir.path(), 3, genesis).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let signers: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(i, node)| {
            let key = CoordinatorKeys::from_name(&format!("coordinator-{i}")).keys.signing;
            let outbox = deai_cluster::outbox::CoordinatorOutbox::new(node.clone(), key);
            tokio::spawn(checkpointer::run(outbox, stopped.clone()))
        })
        .collect();
    let m = nodes[0].raft.wait(Some(WAIT)).metrics(|m| m.current_leader.is_some(), "a leader").await.unwrap();
    let leader = m.current_leader.unwrap() as usize;
    let net = TestNet::new();
    let batch = faucet_batch(&net, "cp", 10);
    nodes[leader].write(&batch).await.unwrap();
    for node in &nodes {
        node.raft
            .wait(Some(WAIT))
            .metrics(|_| node.ledger().read().last_certificate.is_some(), "a certificate")
            .await
            .expect("a quorum certificate forms on every replica");
        let ledger = node.ledger().read();
        let cert = ledger.last_certificate.clone().unwrap();
        assert_eq!(cert.height, 10);
        assert_eq!(cert.root, ledger.checkpoints[&10].root);
        assert!(cert.signatures.len() >= ledger.quorum());
        let bytes = checkpoint_signing_bytes(&ledger.network_id, cert.height, &cert.root);
        assert!(cert.signatures.iter().all(|(who, sig)| verify_detached(who, &bytes, sig)));
        assert_eq!(ledger.divergence_count, 0);
    }
    stop.send(true).unwrap();
    for signer in signers {
        let signed = signer.await.unwrap().unwrap();
        // With three coordinators the quorum is three: every one must have signed, once.
        assert_eq!(signed, vec![10], "each coordinator signs height 10 exactly once");
    }
}

/// A peer that has not shaken hands cannot make the node read a large frame: the connection is
/// closed with no reply but a TLS alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_handshake_is_dropped() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = tempfile::tempdir().unwrap();
    let (_nodes, members) = start_cluster(dir.path(), 3).await;
    let mut raw = tokio::net::TcpStream::connect(&members[&0].addr).await.unwrap();
    raw.write_all(&(10_000_000u32).to_le_bytes()).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(WAIT, raw.read(&mut buf)).await.expect("the node answers promptly");
    // The bytes are no TLS record: the node answers with at most a TLS alert, then closes.
    assert!(
        matches!(read, Ok(0) | Err(_)) || buf[0] == 0x15,
        "only an alert, or nothing, comes back: {read:?} {buf:?}"
    );
}

/// Many writes reaching a follower at once are forwarded over one pipelined connection to the
/// leader, and each gets its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_forwarded_writes_share_one_pipelined_link() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, _) = start_cluster(dir.path(), 3).await;
    let m = nodes[0].raft.wait(Some(WAIT)).metrics(|m| m.current_leader.is_some(), "a leader").await.unwrap();
    let leader = m.current_leader.unwrap();
    let follower = (0..3u64).find(|id| *id != leader).unwrap() as usize;
    nodes[follower].raft.wait(Some(WAIT)).current_leader(leader, "follower knows the leader").await.unwrap();
    let net = TestNet::new();
    let batch = faucet_batch(&net, "pipe", 200);
    // A separate client network, so that the count below is about these writes alone.
    let client = TcpNetwork::new(NETWORK, auth_as(follower as u64, 3));
    let leader_addr =
        nodes[follower].raft.metrics().borrow().membership_config.membership().get_node(&leader).unwrap().addr.clone();
    let writes = batch.iter().map(|envelope| {
        let (client, addr) = (client.clone(), leader_addr.clone());
        let unstamped = deai_storage::UnstampedBatch::new(std::slice::from_ref(envelope));
        tokio::spawn(async move { client.write(leader, &addr, unstamped, WAIT).await })
    });
    let mut indexes = std::collections::BTreeSet::new();
    for write in writes.collect::<Vec<_>>() {
        let (index, outcome) = write.await.unwrap().expect("link").expect("written");
        assert_eq!(outcome.outcomes, vec![EntryOutcome::Accepted], "each write gets its own outcome");
        indexes.insert(index);
    }
    // Group commit: the leader merged concurrent writes into fewer log entries.
    assert!(indexes.len() < 200, "{} log entries for 200 concurrent writes", indexes.len());
    let leader_node = &nodes[leader as usize];
    assert_eq!(leader_node.read(Consistency::Linearizable, |l| l.height).await.unwrap(), 200);
    assert_eq!(client.links_opened(), 1, "every write travelled over the same connection");
    // And through the follower, which forwards them all over its own single link.
    let more = faucet_batch(&net, "pipe-fwd", 50);
    let follower_node = nodes[follower].clone();
    let forwarded: Vec<_> = more
        .into_iter()
        .map(|entry| {
            let node = follower_node.clone();
            tokio::spawn(async move { node.write(&[entry]).await })
        })
        .collect();
    for write in forwarded {
        let written = write.await.unwrap().expect("forwarded write");
        assert_eq!(written.outcome.outcomes, vec![EntryOutcome::Accepted]);
    }
}

/// The key [`KeyGate`] admits.
const KEY_GATE_KEY: [u8; 32] = [1; 32];

/// A gate that admits requests from one key, standing in for the coordinator's signature check.
struct KeyGate {
    admitted: std::sync::Mutex<Vec<u64>>,
}

impl AdminGate for KeyGate {
    fn admit<'a>(&'a self, request: &'a SignedAdmin, executing: u64) -> AdmitFuture<'a> {
        Box::pin(async move {
            if request.key != KEY_GATE_KEY {
                return Err(deai_cluster::ClusterError::AdminRefused {
                    code: "unknown_admin_key",
                    message: "no".into(),
                });
            }
            self.admitted.lock().unwrap().push(executing);
            Ok(())
        })
    }
}

/// Leader transfer (issue 4): an operator asks a follower to move leadership to the other
/// follower; the signed request is forwarded to the leader, whose gate admits it, the target
/// wins, and writes go on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leadership_moves_to_the_chosen_node_on_an_admin_command() {
    use deai_cluster::admin::AdminCommand;
    let dir = tempfile::tempdir().unwrap();
    let (nodes, _) = start_cluster(dir.path(), 3).await;
    let m = nodes[0].raft.wait(Some(WAIT)).metrics(|m| m.current_leader.is_some(), "a leader").await.unwrap();
    let leader = m.current_leader.unwrap();
    let others: Vec<u64> = (0..3u64).filter(|id| *id != leader).collect();
    let (asked, target) = (others[0] as usize, others[1]);
    nodes[asked].raft.wait(Some(WAIT)).current_leader(leader, "follower knows the leader").await.unwrap();
    let net = TestNet::new();
    nodes[leader as usize].write(&faucet_batch(&net, "before", 3)).await.unwrap();
    // The follower forwards the signed request; the leader's gate checks it before it runs.
    let gate: Arc<dyn AdminGate> = Arc::new(KeyGate { admitted: Default::default() });
    for node in &nodes {
        node.install_admin_gate(gate.clone());
    }
    let request = |key: [u8; 32]| SignedAdmin {
        command: AdminCommand::TransferLeader { to: target },
        method: "POST".into(),
        path: "/v1/admin/transfer-leader".into(),
        body: Vec::new(),
        node: asked as u64,
        time_ms: 0,
        key,
        signature: Vec::new(),
    };
    let refused = nodes[asked].admin_signed(request([2; 32])).await.unwrap_err();
    assert_eq!(refused.code(), "unknown_admin_key", "the leader's gate refuses, and the refusal comes back: {refused}");
    assert_eq!(nodes[leader as usize].raft.metrics().borrow().current_leader, Some(leader), "nothing moved");
    let done = nodes[asked].admin_signed(request(KEY_GATE_KEY)).await.expect("transfer");
    for node in &nodes {
        node.remove_admin_gate();
    }
    assert!(done.contains(&target.to_string()), "{done}");
    for node in &nodes {
        node.raft.wait(Some(WAIT)).current_leader(target, "everyone follows the new leader").await.unwrap();
    }
    let term_after = nodes[target as usize].raft.metrics().borrow().current_term;
    assert!(term_after > m.current_term, "a new term began");
    let written = nodes[leader as usize].write(&faucet_batch(&net, "after", 3)).await.expect("writes resume");
    assert_eq!(written.outcome.outcomes, vec![EntryOutcome::Accepted; 3]);
    assert_eq!(nodes[target as usize].raft.metrics().borrow().current_leader, Some(target), "the target kept it");
}
