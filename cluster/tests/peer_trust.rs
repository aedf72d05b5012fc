//! The trust boundary of the peer port, attacked over real loopback sockets: a stranger is
//! refused at the handshake, a member cannot speak as another, a forwarded write carries no
//! time, and a crowd of silent strangers does not stop an election or writes.

mod common;

use common::{
    auth_as, bind_listeners, faucet_batch, member_keys, start_tcp_cluster, start_tcp_nodes, tcp_leader, NETWORK, WAIT,
};
use deai_cluster::network::peer_auth::PeerAuth;
use deai_cluster::network::tcp::TcpNetwork;
use deai_protocol::testkit::{test_genesis, TestNet};
use deai_storage::{EntryOutcome, LogCommand, UnstampedBatch};
use ed25519_dalek::SigningKey;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::VoteRequest;
use openraft::Vote;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn refusals(node: &deai_cluster::CoordinatorNode, reason: &str) -> u64 {
    node.metrics().peer_refusals.with_label_values(&[reason]).get()
}

/// A vote request for a far term in `candidate`'s name: what an attacker would send to depose
/// the leader.
fn far_vote(candidate: u64) -> VoteRequest<u64> {
    VoteRequest { vote: Vote::new(1_000, candidate), last_log_id: None }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_key_is_refused_at_the_handshake() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, members) = start_tcp_cluster(dir.path(), 3, test_genesis(3)).await;
    tcp_leader(&nodes).await;
    // The stranger knows the network id, the addresses and the members' public keys; it lists
    // itself as node 9 in a member table of its own.
    let key = SigningKey::from_bytes(&[0x5a; 32]);
    let mut table = member_keys(3);
    table.insert(9, deai_protocol::types::ParticipantId(key.verifying_key().to_bytes()));
    let stranger = TcpNetwork::new(NETWORK, PeerAuth::new(9, &key, table).unwrap());
    let mut link = stranger.clone().new_client(0, &members[&0]).await;
    let err = link.vote(far_vote(9), RPCOption::new(Duration::from_secs(2))).await.unwrap_err();
    assert!(nodes[0].raft.metrics().borrow().current_term < 1_000, "the stranger's vote never reached Raft: {err}");
    assert!(refusals(&nodes[0], "not_member") >= 1, "the refusal is counted as a non-member key");
    // The same with a plain TCP client speaking the old, unencrypted hello: nothing is answered.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut raw = tokio::net::TcpStream::connect(&members[&1].addr).await.unwrap();
    raw.write_all(&[12, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]).await.unwrap();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(WAIT, raw.read(&mut buf)).await.expect("the node closes promptly");
    assert!(!matches!(read, Ok(n) if n > 0 && buf[0] != 0x15), "no frame comes back, at most a TLS alert: {read:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_cannot_speak_as_another() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, members) = start_tcp_cluster(dir.path(), 3, test_genesis(3)).await;
    let leader = tcp_leader(&nodes).await;
    let term = nodes[0].raft.metrics().borrow().current_term;
    let target = 0;

    // Member 2's key with a hello claiming node 1: its own table binds 1 to that key (and keeps
    // node 1's real key under another id, so that the table still trusts every server).
    let key2 = deai_protocol::testkit::CoordinatorKeys::from_name("coordinator-2").keys;
    let mut forged = member_keys(3);
    let key1 = forged[&1];
    forged.insert(1, key2.id);
    forged.insert(7, key1);
    let impostor = TcpNetwork::new(NETWORK, PeerAuth::new(1, &key2.signing, forged).unwrap());
    let mut link = impostor.clone().new_client(target, &members[&target]).await;
    let err = link.vote(far_vote(1), RPCOption::new(Duration::from_secs(2))).await.unwrap_err().to_string();
    assert!(err.contains("authenticated as node 2") && err.contains("claims to be node 1"), "{err}");
    assert!(refusals(&nodes[target as usize], "impersonation") >= 1);

    // Member 2, honest in its hello, sends a vote in node 1's name: refused, request by request.
    let honest2 = TcpNetwork::new(NETWORK, auth_as(2, 3));
    let mut link = honest2.clone().new_client(target, &members[&target]).await;
    let err = link.vote(far_vote(1), RPCOption::new(Duration::from_secs(2))).await.unwrap_err().to_string();
    assert!(err.contains("in the name of node Some(1)"), "{err}");
    assert!(refusals(&nodes[target as usize], "request") >= 1);
    assert_eq!(nodes[target as usize].raft.metrics().borrow().current_term, term, "no vote reached Raft");
    assert_eq!(nodes[target as usize].raft.metrics().borrow().current_leader, Some(leader), "the leader stands");

    // A leader-transfer step from a member that does not lead is refused too.
    let follower = (0..3).find(|id| *id != leader).unwrap();
    let other = (0..3).find(|id| *id != leader && *id != follower).unwrap();
    let from_follower = TcpNetwork::new(NETWORK, auth_as(follower, 3));
    let control = deai_cluster::admin::ControlRequest::Campaign { wait_ms: 10 };
    let answer = deai_cluster::admin::PeerControl::control(&from_follower, other, &members[&other].addr, control).await;
    let err = answer.unwrap_err();
    assert!(err.contains("leader-transfer step"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_write_carries_no_time_of_its_sender() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, members) = start_tcp_cluster(dir.path(), 3, test_genesis(3)).await;
    let leader = tcp_leader(&nodes).await;
    let follower = (0..3).find(|id| *id != leader).unwrap();
    let net = TestNet::new();
    let client = TcpNetwork::new(NETWORK, auth_as(follower, 3));
    let addr = members[&leader].addr.clone();

    // Entries stamped at the end of time, framed as a log command and sent as a forwarded
    // write: they do not decode as envelopes, so nothing is written.
    let mut stamped = Vec::new();
    for envelope in faucet_batch(&net, "far", 3) {
        stamped.push(deai_protocol::ledger::Entry { stamped_ms: u64::MAX, envelope });
    }
    let height = nodes[leader as usize].ledger().read().height;
    let forged = UnstampedBatch { envelopes: LogCommand::new(&stamped).batch };
    let answer = client.write(leader, &addr, forged, WAIT).await.expect("the link works");
    let failure = answer.expect_err("a stamped batch is not a batch of envelopes");
    assert!(failure.code.starts_with("codec_") || failure.code.contains("malformed"), "{failure:?}");
    assert_eq!(nodes[leader as usize].ledger().read().height, height, "nothing was written");

    // Envelopes written through a follower take the leader's clock.
    let before = nodes[leader as usize].clock().now_ms();
    let written = nodes[follower as usize].write(&faucet_batch(&net, "near", 2)).await.expect("forwarded");
    let after = nodes[leader as usize].clock().now_ms();
    assert_eq!(written.outcome.outcomes, vec![EntryOutcome::Accepted; 2]);
    let time = nodes[leader as usize].ledger().read().now_ms;
    assert!((before..=after).contains(&time), "ledger time {time} is the leader's clock ({before}..={after})");
}

/// 100 source addresses keep a silent connection open to every node, reconnecting as soon as
/// one is closed, from before the cluster forms until the test ends: the nodes still elect a
/// leader and take writes, because strangers hold handshake slots for a bounded time, from a
/// budget members' hosts never draw on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hundred_silent_strangers_do_not_stop_an_election_or_writes() {
    const STRANGERS: u8 = 100;
    let dir = tempfile::tempdir().unwrap();
    let (listeners, members) = bind_listeners(3).await;
    let nodes = start_tcp_nodes(dir.path(), listeners, &members, test_genesis(3)).await;
    let stop = Arc::new(AtomicBool::new(false));
    let mut crowd = Vec::new();
    for i in 0..STRANGERS {
        for member in members.values() {
            let (addr, stop) = (member.addr.parse::<std::net::SocketAddr>().unwrap(), stop.clone());
            // Each stranger from its own loopback address, 127.0.0.2 onwards.
            let from = std::net::SocketAddr::from(([127, 0, 0, 2 + i], 0));
            crowd.push(tokio::spawn(async move {
                let mut held = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let socket = tokio::net::TcpSocket::new_v4().unwrap();
                    socket.bind(from).unwrap();
                    if let Ok(mut stream) = socket.connect(addr).await {
                        held += 1;
                        use tokio::io::AsyncReadExt;
                        let mut buf = [0u8; 1];
                        // Silent until the node closes the connection.
                        let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await;
                    }
                    // A pause between attempts keeps the test's own load within two cores.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                held
            }));
        }
    }
    // Let the crowd take every slot it can before the cluster forms.
    let deadline = tokio::time::Instant::now() + WAIT;
    while (0..3).map(|i| refusals(&nodes[i], "busy")).sum::<u64>() == 0 {
        assert!(tokio::time::Instant::now() < deadline, "the crowd never filled the strangers' budget");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    nodes[0].raft.initialize(members.clone()).await.unwrap();
    let leader = tcp_leader(&nodes).await;
    let net = TestNet::new();
    let written = nodes[leader as usize].write(&faucet_batch(&net, "crowded", 5)).await.expect("writes go on");
    assert_eq!(written.outcome.outcomes, vec![EntryOutcome::Accepted; 5]);
    let follower = (0..3).find(|id| *id != leader).unwrap();
    let forwarded = nodes[follower as usize].write(&faucet_batch(&net, "crowded-fwd", 5)).await.expect("forwarded");
    assert_eq!(forwarded.outcome.outcomes, vec![EntryOutcome::Accepted; 5]);
    stop.store(true, Ordering::Relaxed);
    let mut connections = 0;
    for stranger in crowd {
        connections += stranger.await.unwrap();
    }
    assert!(connections >= u64::from(STRANGERS), "the crowd did connect ({connections} connections)");
}

/// A member that speaks in its own name but lies as a leader (a higher term, a blank entry at an
/// index the follower holds as committed) is refused before openraft sees the append: the
/// follower neither stops nor loses anything, and the cluster writes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_that_would_overwrite_a_committed_entry_is_refused() {
    use openraft::{CommittedLeaderId, Entry, EntryPayload, LogId};
    let dir = tempfile::tempdir().unwrap();
    let (nodes, members) = start_tcp_cluster(dir.path(), 3, test_genesis(3)).await;
    let leader = tcp_leader(&nodes).await;
    let net = TestNet::new();
    let written = nodes[leader as usize].write(&faucet_batch(&net, "before", 3)).await.expect("written");
    for node in &nodes {
        node.raft.wait(Some(WAIT)).applied_index_at_least(Some(written.log_index), "applied").await.unwrap();
    }
    let liar = 2u64;
    let target = (0..3).find(|id| *id != liar).unwrap();
    let term = nodes[target as usize].raft.metrics().borrow().current_term;
    let forged = openraft::raft::AppendEntriesRequest {
        vote: Vote::new_committed(term + 1, liar),
        prev_log_id: None,
        entries: vec![Entry {
            log_id: LogId::new(CommittedLeaderId::new(term + 1, liar), 1),
            payload: EntryPayload::Blank,
        }],
        leader_commit: None,
    };
    let mut link = TcpNetwork::new(NETWORK, auth_as(liar, 3)).new_client(target, &members[&target]).await;
    let err = link.append_entries(forged, RPCOption::new(Duration::from_secs(2))).await.unwrap_err().to_string();
    assert!(err.contains("holds committed"), "{err}");
    assert!(refusals(&nodes[target as usize], "overwrite_committed") >= 1);
    assert_eq!(nodes[target as usize].raft.metrics().borrow().current_term, term, "nothing reached openraft");

    let more = nodes[leader as usize].write(&faucet_batch(&net, "after", 3)).await.expect("the cluster writes on");
    for node in &nodes {
        node.raft.wait(Some(WAIT)).applied_index_at_least(Some(more.log_index), "applied").await.unwrap();
        assert_eq!(node.ledger().read().root, more.outcome.root, "every replica agrees");
    }
}

/// A member removed from the Raft membership keeps its key in the member table, but is refused
/// at the hello from then on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_member_is_refused_though_its_key_is_still_listed() {
    use deai_cluster::admin::AdminCommand;
    let dir = tempfile::tempdir().unwrap();
    let (nodes, members) = start_tcp_cluster(dir.path(), 3, test_genesis(3)).await;
    let leader = tcp_leader(&nodes).await;
    let removed = (0..3).find(|id| *id != leader).unwrap();
    let asked = (0..3).find(|id| *id != leader && *id != removed).unwrap();
    // A membership change waits for the first membership to be committed: a write first.
    let written = nodes[leader as usize].write(&faucet_batch(&TestNet::new(), "settle", 1)).await.expect("written");
    for node in &nodes {
        node.raft.wait(Some(WAIT)).applied_index_at_least(Some(written.log_index), "applied").await.unwrap();
    }
    nodes[leader as usize].admin(AdminCommand::Remove { id: removed }).await.expect("removed");
    nodes[asked as usize]
        .raft
        .wait(Some(WAIT))
        .metrics(|m| m.membership_config.membership().get_node(&removed).is_none(), "the removal applied")
        .await
        .unwrap();
    let mut link = TcpNetwork::new(NETWORK, auth_as(removed, 3)).new_client(asked, &members[&asked]).await;
    let err = link.vote(far_vote(removed), RPCOption::new(Duration::from_secs(2))).await.unwrap_err().to_string();
    assert!(err.contains("not in this node's Raft membership"), "{err}");
    assert!(refusals(&nodes[asked as usize], "not_member") >= 1);
}

/// Connecting to a peer that never answers holds up callers of that peer only: a write to the
/// leader goes through while the connect to the silent address is still waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_peer_never_holds_up_links_to_others() {
    let dir = tempfile::tempdir().unwrap();
    let (nodes, members) = start_tcp_cluster(dir.path(), 3, test_genesis(3)).await;
    let leader = tcp_leader(&nodes).await;
    let follower = (0..3).find(|id| *id != leader).unwrap();
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    // Accepts and holds every connection, answering nothing: a TLS handshake there waits out
    // its deadline.
    let _holding = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            held.push(stream);
        }
    });
    let client = TcpNetwork::new(NETWORK, auth_as(follower, 3));
    let net = TestNet::new();
    let stuck = {
        let client = client.clone();
        let batch = UnstampedBatch::new(&faucet_batch(&net, "nowhere", 1));
        tokio::spawn(async move { client.write(leader, &silent_addr, batch, WAIT).await })
    };
    let written = client
        .write(leader, &members[&leader].addr, UnstampedBatch::new(&faucet_batch(&net, "through", 1)), WAIT)
        .await
        .expect("the link to the leader is not held up")
        .expect("written");
    assert_eq!(written.1.outcomes, vec![EntryOutcome::Accepted]);
    assert!(!stuck.is_finished(), "the write went through while the silent connect was still waiting");
    assert!(stuck.await.unwrap().is_err(), "the silent peer's connect gives up in the end");
}

/// A snapshot chunk reaching past the receive cap is refused before openraft buffers it, even
/// from the leader in its own name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_chunk_past_the_receive_cap_is_refused() {
    use deai_cluster::network::tcp::MAX_SNAPSHOT_RECEIVE_BYTES;
    let dir = tempfile::tempdir().unwrap();
    let (nodes, members) = start_tcp_cluster(dir.path(), 3, test_genesis(3)).await;
    let leader = tcp_leader(&nodes).await;
    let follower = (0..3).find(|id| *id != leader).unwrap();
    let term = nodes[follower as usize].raft.metrics().borrow().current_term;
    let chunk = openraft::raft::InstallSnapshotRequest {
        vote: Vote::new_committed(term, leader),
        meta: openraft::SnapshotMeta {
            last_log_id: None,
            last_membership: openraft::StoredMembership::default(),
            snapshot_id: "huge".into(),
        },
        offset: MAX_SNAPSHOT_RECEIVE_BYTES,
        data: vec![0; 16],
        done: false,
    };
    let mut link = TcpNetwork::new(NETWORK, auth_as(leader, 3)).new_client(follower, &members[&follower]).await;
    let err = link.install_snapshot(chunk, RPCOption::new(Duration::from_secs(2))).await.unwrap_err().to_string();
    assert!(err.contains("past the") && err.contains("cap"), "{err}");
    assert!(refusals(&nodes[follower as usize], "request") >= 1);
}
