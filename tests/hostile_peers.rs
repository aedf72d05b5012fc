//! The trust boundary of real `deai coordinator` processes, attacked from outside: strangers on
//! the peer port (an old plaintext hello, a TLS client with a key of its own, a crowd of silent
//! connections while the leader is killed and restarted), and a node whose write batcher dies.
//! Every wait polls a condition against a deadline.

mod common;

use common::{get_text, new_agent, wait_for, Processes};
use deai_clock::Clock;
use deai_cluster::network::peer_auth::{MemberKeys, PeerAuth};
use deai_cluster::network::tcp::TcpNetwork;
use deai_protocol::message::{DevFaucet, Message};
use deai_protocol::types::{AssetId, NetworkId, ParticipantId};
use deai_protocol::SignedEnvelope;
use ed25519_dalek::SigningKey;
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::VoteRequest;
use openraft::{BasicNode, Vote};
use std::io::{Read, Write};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

fn faucet_body(key: &SigningKey, network: &NetworkId, nonce: u64) -> Vec<u8> {
    let message = Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 1 });
    deai_protocol::codec::encode_framed(&[SignedEnvelope::seal(key, network, nonce, &message)][..])
}

/// Posts one faucet write to node `i`; true if it was accepted.
fn write(cluster: &Processes, i: usize, key: &SigningKey, network: &NetworkId, nonce: u64) -> bool {
    let agent = new_agent();
    let Ok(mut response) = agent
        .post(&cluster.url(i, "/v1/ledger/entries"))
        .header("content-type", "application/octet-stream")
        .send(&faucet_body(key, network, nonce)[..])
    else {
        return false;
    };
    let ok = response.status().is_success();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    ok && body.contains("\"accepted\"")
}

/// The value of the counter `name{reason="..."}` in node `i`'s `/metrics`, or 0.
fn counter(cluster: &Processes, i: usize, name: &str, reason: &str) -> u64 {
    let text = get_text(&new_agent(), &cluster.url(i, "/metrics")).unwrap_or_default();
    let label = format!("reason=\"{reason}\"");
    text.lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(&label))
        .find_map(|l| l.rsplit(' ').next()?.trim().parse().ok())
        .unwrap_or(0)
}

fn leader(cluster: &Processes) -> usize {
    let agent = new_agent();
    wait_for("a leader", || {
        let status = common::get_json(&agent, &cluster.url(0, "/v1/admin/status"))?;
        status["leader"].as_u64().map(|l| l as usize)
    })
}

#[test]
fn strangers_on_the_peer_port_are_refused_and_the_cluster_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Processes::create(dir.path(), &["--network", "deai-hostile"]);
    let network = cluster.network_id();
    cluster.start_all();
    let leader = leader(&cluster);
    let target = (leader + 1) % 3;

    // The old, unencrypted hello of wire version 2, naming the right network: the TLS
    // listener answers at most an alert, and nothing of it reaches Raft.
    let mut raw = std::net::TcpStream::connect(&cluster.nodes[target].raft).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    raw.write_all(&[40, 0, 0, 0, 1, 2, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0]).unwrap();
    let mut buf = [0u8; 256];
    let n = raw.read(&mut buf).unwrap_or(0);
    assert!(n == 0 || buf[0] == 0x15, "only a TLS alert, or nothing, comes back ({n} bytes)");

    // A TLS client with a key of its own, knowing every member's public key: refused in the
    // handshake, counted, and its vote for a far term never reaches Raft.
    let genesis: deai_protocol::Genesis =
        deai_protocol::codec::decode_framed(&std::fs::read(dir.path().join("genesis.bin")).unwrap()).unwrap();
    let stranger_key = SigningKey::from_bytes(&[0x77; 32]);
    let mut table: MemberKeys = genesis.coordinators.iter().enumerate().map(|(i, c)| (i as u64, c.id)).collect();
    table.insert(99, ParticipantId(stranger_key.verifying_key().to_bytes()));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let refused = runtime.block_on(async {
        let stranger = TcpNetwork::new(network.0.clone(), PeerAuth::new(99, &stranger_key, table).unwrap());
        let mut failures = 0;
        // The genesis lists coordinators in key order, not node order: try every member's key
        // as the target's, so one of them is the right one and the TLS handshake itself decides.
        for claimed in 0..3u64 {
            let mut link = stranger.clone().new_client(claimed, &BasicNode::new(&cluster.nodes[target].raft)).await;
            let vote = VoteRequest { vote: Vote::new(1_000_000, 99), last_log_id: None };
            if link.vote(vote, RPCOption::new(Duration::from_secs(2))).await.is_err() {
                failures += 1;
            }
        }
        failures
    });
    assert_eq!(refused, 3, "the stranger's votes were all refused");
    wait_for("the refusal counted", || {
        (counter(&cluster, target, "deai_raft_peer_refusals_total", "not_member") >= 1).then_some(())
    });
    let status = common::get_json(&new_agent(), &cluster.url(target, "/v1/admin/status")).unwrap();
    assert!(status["term"].as_u64().unwrap() < 1_000_000, "no stranger's vote reached Raft: {status}");

    // The cluster goes on: a write through the attacked node is accepted.
    let key = SigningKey::from_bytes(&[0x31; 32]);
    wait_for("a write after the attack", || write(&cluster, target, &key, &network, 1).then_some(()));
    cluster.stop_all_cleanly();
    assert!(cluster.panics_in_logs().is_empty(), "{:?}", cluster.panics_in_logs());
}

/// 100 source addresses keep silent connections open to every node's peer port while the leader
/// is killed with SIGKILL and restarted: a new leader is elected, writes go on, and the
/// restarted node rejoins, because strangers hold handshake slots for a bounded time from a
/// budget members' hosts never draw on.
#[test]
fn a_crowd_of_silent_strangers_does_not_stop_failover_or_a_rejoin() {
    const STRANGERS: u8 = 100;
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Processes::create(dir.path(), &["--network", "deai-crowd"]);
    let network = cluster.network_id();
    cluster.start_all();
    let stop = Arc::new(AtomicBool::new(false));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let crowd: Vec<_> = (0..STRANGERS)
        .flat_map(|i| cluster.nodes.iter().map(move |n| (i, n.raft.clone())))
        .map(|(i, addr)| {
            let stop = stop.clone();
            runtime.spawn(async move {
                use tokio::io::AsyncReadExt;
                let from = std::net::SocketAddr::from(([127, 0, 0, 2 + i], 0));
                let to: std::net::SocketAddr = addr.parse().unwrap();
                let mut held = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let socket = tokio::net::TcpSocket::new_v4().unwrap();
                    if socket.bind(from).is_ok() {
                        if let Ok(mut stream) = socket.connect(to).await {
                            held += 1;
                            // Silent until the node closes the connection.
                            let _ = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut [0u8; 1])).await;
                        }
                    }
                    // A pause between attempts keeps the test's own load within two cores.
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                held
            })
        })
        .collect();
    wait_for("the crowd to fill the strangers' budget", || {
        (0..3).any(|i| counter(&cluster, i, "deai_raft_peer_refusals_total", "busy") > 0).then_some(())
    });

    let old = leader(&cluster);
    let pid = cluster.nodes[old].child.as_ref().unwrap().id().to_string();
    assert!(Command::new("kill").args(["-KILL", &pid]).status().unwrap().success());
    let _ = cluster.nodes[old].child.take().unwrap().wait();
    let survivor = (old + 1) % 3;
    let key = SigningKey::from_bytes(&[0x32; 32]);
    wait_for("a write through a survivor after the kill", || {
        write(&cluster, survivor, &key, &network, 1).then_some(())
    });
    cluster.start(old);
    cluster.wait_ready(old);
    wait_for("a write through the restarted node", || write(&cluster, old, &key, &network, 2).then_some(()));

    stop.store(true, Ordering::Relaxed);
    let connections: u64 = runtime.block_on(async {
        let mut total = 0;
        for stranger in crowd {
            total += stranger.await.unwrap();
        }
        total
    });
    assert!(connections >= u64::from(STRANGERS), "the crowd did connect ({connections} connections)");
    cluster.stop_all_cleanly();
}

/// A node whose write batcher dies (injected: it panics after a few batches) says so on
/// `/readyz` and exits non-zero, so that its orchestrator restarts it.
#[test]
fn a_dead_batcher_fails_readiness_and_ends_the_process_non_zero() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Processes::create(dir.path(), &["--network", "deai-batcher"]);
    let network = cluster.network_id();
    cluster.env.push(("DEAI_NODE_RAFT__FAULTS__BATCHER_PANIC_AFTER_BATCHES".into(), "20".into()));
    cluster.env.push(("DEAI_NODE_CRITICAL_FAILURE_HOLD_MS".into(), "3000".into()));
    cluster.start_all();
    let leader = leader(&cluster);
    let key = SigningKey::from_bytes(&[0x33; 32]);
    let agent = new_agent();
    let mut nonce = 0;
    // Writes until the leader's batcher has proposed its twenty batches and died.
    let reason = wait_for("readiness to fail", || {
        nonce += 1;
        let _ = write(&cluster, leader, &key, &network, nonce);
        let response = agent.get(&cluster.url(leader, "/readyz")).call().ok()?;
        (response.status().as_u16() == 503)
            .then(|| get_text(&agent, &cluster.url(leader, "/readyz")).unwrap_or_default())
    });
    assert!(reason.contains("write batcher panicked"), "{reason}");
    let child = cluster.nodes[leader].child.as_mut().unwrap();
    let code = wait_for("the process to exit", || child.try_wait().unwrap());
    assert!(!code.success(), "a node without its batcher exits non-zero, not {code}");
    cluster.nodes[leader].child = None;
}

/// A flood of envelopes with bad signatures through the HTTP API: each is refused at the edge
/// with its code, none reaches the log, and once the source has spent its invalid-input budget it
/// is answered 429 at once, until the budget refills.
#[test]
fn junk_envelopes_never_reach_the_log_and_a_junk_source_is_cut_off() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Processes::create(dir.path(), &["--network", "deai-junk"]);
    let network = cluster.network_id();
    cluster.start_all();
    let leader = leader(&cluster);
    let agent = new_agent();
    let status = |agent: &ureq::Agent| common::get_json(agent, &cluster.url(leader, "/v1/admin/status")).unwrap();
    let index_before = status(&agent)["last_log_index"].as_u64().unwrap();
    let key = SigningKey::from_bytes(&[0x34; 32]);
    let mut codes = Vec::new();
    for nonce in 1..=40u64 {
        let mut envelope = SignedEnvelope::seal(
            &key,
            &network,
            nonce,
            &Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 1 }),
        );
        envelope.signature[0] ^= 1;
        let body = deai_protocol::codec::encode_framed(&[envelope][..]);
        let mut response = agent
            .post(&cluster.url(leader, "/v1/ledger/entries"))
            .header("content-type", "application/octet-stream")
            .send(&body[..])
            .unwrap();
        let json: serde_json::Value = response.body_mut().read_json().unwrap();
        codes.push((response.status().as_u16(), json["code"].as_str().unwrap_or("?").to_string()));
    }
    assert!(codes[..20].iter().all(|c| *c == (400, "bad_signature".to_string())), "{codes:?}");
    assert!(codes[20..].iter().any(|c| *c == (429, "too_much_invalid_input".to_string())), "{codes:?}");
    assert!(codes.iter().all(|(s, _)| *s == 400 || *s == 429), "{codes:?}");
    // The leader's own entries (ticks, checkpoint signatures) may move the log meanwhile; the
    // junk may not. Every replica's ledger height counts only accepted entries.
    let after = status(&agent);
    let own_entries = after["last_log_index"].as_u64().unwrap() - index_before;
    assert!(own_entries < 5, "{own_entries} log entries appeared during a junk flood of 40");
    // A valid write from the same source goes through once the budget has refilled.
    wait_for("the source let back in", || write(&cluster, leader, &key, &network, 1).then_some(()));
    cluster.stop_all_cleanly();
}

/// What an operator signs for one admin request (`src/admin_auth.rs`), rebuilt the way an
/// outside script, or an attacker holding a captured request, would.
fn admin_headers(
    key: &SigningKey,
    network: &str,
    node: u64,
    path: &str,
    time_ms: u64,
    body: &[u8],
) -> Vec<(String, String)> {
    use ed25519_dalek::Signer;
    let bytes = deai_api::signed_requests::admin_request_bytes(network, node, "POST", path, time_ms, body);
    vec![
        ("x-deai-admin-key".into(), hex::encode(key.verifying_key().as_bytes())),
        ("x-deai-time-ms".into(), time_ms.to_string()),
        ("x-deai-signature".into(), hex::encode(key.sign(&bytes).to_bytes())),
    ]
}

fn post_admin(cluster: &Processes, i: usize, path: &str, body: &[u8], headers: &[(String, String)]) -> (u16, String) {
    let mut request = new_agent().post(&cluster.url(i, path)).header("content-type", "application/json");
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let mut response = request.send(body).unwrap();
    let json: serde_json::Value = response.body_mut().read_json().unwrap_or_default();
    (response.status().as_u16(), json["code"].as_str().unwrap_or("").to_string())
}

/// Admin commands are checked by the node that carries them out: unsigned, foreign-key,
/// other-node and replayed commands are refused on every node, and a signed command runs once in
/// the whole cluster, even when replayed after leadership moved.
#[test]
fn admin_commands_are_refused_unsigned_elsewhere_or_again_on_every_node() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Processes::create(dir.path(), &["--network", "deai-admin"]);
    cluster.start_all();
    let network = cluster.network_id().0;
    let admin = deai_cluster::identity::CoordinatorIdentity::load(&dir.path().join("admin.key")).unwrap().signing;
    let stranger = SigningKey::from_bytes(&[0x44; 32]);
    let now = deai_clock::SystemClock.now_ms();
    let snapshot = "/v1/admin/snapshot";
    for i in 0..3 {
        assert_eq!(post_admin(&cluster, i, snapshot, b"{}", &[]), (401, "unsigned".into()), "node {i}");
        let foreign = admin_headers(&stranger, &network, i as u64, snapshot, now, b"{}");
        assert_eq!(post_admin(&cluster, i, snapshot, b"{}", &foreign), (403, "unknown_admin_key".into()));
    }
    // Signed for node 1: refused by the others, taken once by node 1.
    let for_one = admin_headers(&admin, &network, 1, snapshot, now, b"{}");
    assert_eq!(post_admin(&cluster, 2, snapshot, b"{}", &for_one), (401, "bad_signature".into()), "bound to node 1");
    assert_eq!(post_admin(&cluster, 1, snapshot, b"{}", &for_one).0, 200);
    assert_eq!(post_admin(&cluster, 1, snapshot, b"{}", &for_one), (409, "replay".into()));
    let stale = admin_headers(&admin, &network, 1, snapshot, now - 120_000, b"{}");
    assert_eq!(post_admin(&cluster, 1, snapshot, b"{}", &stale), (401, "stale_request".into()));

    // A leader transfer sent to a follower runs on the leader; replayed after leadership moved
    // (the new leader never saw it run), it is refused all the same.
    let leader = leader(&cluster);
    let asked = (leader + 1) % 3;
    let target = (leader + 2) % 3;
    let path = "/v1/admin/transfer-leader";
    let body = format!("{{\"id\":{target}}}");
    let transfer = admin_headers(&admin, &network, asked as u64, path, now, body.as_bytes());
    assert_eq!(post_admin(&cluster, asked, path, body.as_bytes(), &transfer).0, 200);
    wait_for("the new leader", || {
        let status = common::get_json(&new_agent(), &cluster.url(asked, "/v1/admin/status"))?;
        (status["leader"].as_u64() == Some(target as u64)).then_some(())
    });
    assert_eq!(post_admin(&cluster, asked, path, body.as_bytes(), &transfer), (409, "replay".into()));
    cluster.stop_all_cleanly();
}

/// The miner session request, signed the way `deai miner` signs it (`src/api_client.rs`).
fn session_headers(key: &SigningKey, network: &NetworkId, time_ms: u64, max_ms: u64) -> Vec<(String, String)> {
    use ed25519_dalek::Signer;
    let mut bytes = b"deai-miner-session/v1\0".to_vec();
    bytes.extend_from_slice(&(network.0.len() as u64).to_le_bytes());
    bytes.extend_from_slice(network.0.as_bytes());
    bytes.extend_from_slice(key.verifying_key().as_bytes());
    bytes.extend_from_slice(&time_ms.to_le_bytes());
    bytes.extend_from_slice(&max_ms.to_le_bytes());
    vec![
        ("x-deai-session-time-ms".into(), time_ms.to_string()),
        ("x-deai-session-signature".into(), hex::encode(key.sign(&bytes).to_bytes())),
    ]
}

/// Opens the session of `miner` on node `i` with `headers`; the status and error code.
fn open_session(cluster: &Processes, i: usize, miner: &[u8; 32], headers: &[(String, String)]) -> (u16, String) {
    let url = cluster.url(i, &format!("/v1/miners/{}/session?max_ms=2000", hex::encode(miner)));
    let mut request = new_agent().get(&url);
    for (name, value) in headers {
        request = request.header(name, value);
    }
    let mut response = request.call().unwrap();
    let status = response.status().as_u16();
    if status == 200 {
        return (200, String::new());
    }
    let json: serde_json::Value = response.body_mut().read_json().unwrap_or_default();
    (status, json["code"].as_str().unwrap_or("").to_string())
}

/// A miner session opens only for a registered miner's own signature, and a captured request
/// cannot open another: no stranger can take over a miner's session and its prompts.
#[test]
fn a_miner_session_cannot_be_taken_over_by_another_key() {
    use deai_protocol::message::{RegisterMiner, ServiceOffer};
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Processes::create(dir.path(), &["--network", "deai-sessions"]);
    let network = cluster.network_id();
    cluster.start_all();
    let miner = SigningKey::from_bytes(&[0x51; 32]);
    let id = miner.verifying_key().to_bytes();
    let register = [
        Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 100 * deai_protocol::params::TOKEN }),
        Message::RegisterMiner(RegisterMiner {
            collateral: 100 * deai_protocol::params::TOKEN,
            capacity: 2,
            endpoint: "http://127.0.0.1:9/miner".into(),
            services: vec![ServiceOffer {
                service: "text-generation".into(),
                price_per_request: 0,
                subscription_price: None,
            }],
        }),
    ];
    let envelopes: Vec<SignedEnvelope> =
        register.iter().enumerate().map(|(n, m)| SignedEnvelope::seal(&miner, &network, n as u64 + 1, m)).collect();
    let body = deai_protocol::codec::encode_framed(&envelopes[..]);
    wait_for("the miner registered", || {
        let mut r = new_agent()
            .post(&cluster.url(0, "/v1/ledger/entries"))
            .header("content-type", "application/octet-stream")
            .send(&body[..])
            .ok()?;
        let text = r.body_mut().read_to_string().ok()?;
        (text.matches("\"accepted\"").count() == 2).then_some(())
    });
    let now = deai_clock::SystemClock.now_ms();
    assert_eq!(open_session(&cluster, 0, &id, &[]), (401, "unsigned_session".into()));
    let thief = SigningKey::from_bytes(&[0x52; 32]);
    let forged = session_headers(&thief, &network, now, 2000);
    assert_eq!(open_session(&cluster, 0, &id, &forged), (401, "bad_session_signature".into()), "another key");
    let stale = session_headers(&miner, &network, now - 120_000, 2000);
    assert_eq!(open_session(&cluster, 0, &id, &stale), (401, "stale_session".into()));
    let own = session_headers(&thief, &network, now, 2000);
    let thief_id = thief.verifying_key().to_bytes();
    assert_eq!(open_session(&cluster, 0, &thief_id, &own), (403, "unknown_miner".into()), "a key with no collateral");
    // Wait until node 1 has applied the registration, then the miner's own request opens, once.
    let signed = session_headers(&miner, &network, now, 2000);
    let first = wait_for("the session to open on node 1", || {
        let opened = open_session(&cluster, 1, &id, &signed);
        (opened.1 != "unknown_miner").then_some(opened)
    });
    assert_eq!(first.0, 200, "{first:?}");
    assert_eq!(open_session(&cluster, 1, &id, &signed), (409, "session_replay".into()), "a captured request");
    cluster.stop_all_cleanly();
}

/// Sends raw HTTP/1.1 bytes to `addr` and returns what comes back (until the server closes or
/// 5 s pass).
fn raw_http(addr: &str, request: &[u8], stall: bool) -> (std::net::TcpStream, String) {
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    stream.write_all(request).unwrap();
    if stall {
        return (stream, String::new());
    }
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    (stream, String::from_utf8_lossy(&answer).into_owned())
}

fn answer_of(stream: &mut std::net::TcpStream) -> String {
    let mut answer = vec![0u8; 4096];
    let n = stream.read(&mut answer).unwrap_or(0);
    String::from_utf8_lossy(&answer[..n]).into_owned()
}

/// The HTTP endpoint's resources: a stalled body is closed after its timeout with a JSON 408,
/// an oversized one is refused with a JSON 413 before it is read, bodies past the concurrency
/// cap get a JSON 503, and HEAD, unknown routes and wrong methods all get their answer.
#[test]
fn stalled_oversized_and_crowded_bodies_are_refused_with_json_errors() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Processes::create(dir.path(), &["--network", "deai-bodies"]);
    cluster.env.push(("DEAI_NODE_BODY_READ_TIMEOUT_MS".into(), "500".into()));
    cluster.env.push(("DEAI_NODE_MAX_CONCURRENT_BODIES".into(), "2".into()));
    cluster.start_all();
    let addr = cluster.nodes[0].http.clone();
    let post = |length: usize| {
        format!(
            "POST /v1/ledger/entries HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/octet-stream\r\nContent-Length: {length}\r\n\r\n0123456789"
        )
    };

    let (_, oversized) = raw_http(&addr, post(9 * 1024 * 1024).as_bytes(), false);
    assert!(oversized.starts_with("HTTP/1.1 413") && oversized.contains("\"body_too_large\""), "{oversized}");

    // Two stalled bodies hold both slots; a third body is refused at once; then the stalled
    // ones are closed after the read timeout with a JSON 408.
    let (mut first, _) = raw_http(&addr, post(1_000).as_bytes(), true);
    let (mut second, _) = raw_http(&addr, post(1_000).as_bytes(), true);
    let crowded = wait_for("the third body refused", || {
        let (_, answer) = raw_http(&addr, post(10).as_bytes(), false);
        answer.contains("\"busy\"").then_some(answer)
    });
    assert!(crowded.starts_with("HTTP/1.1 503"), "{crowded}");
    for stalled in [&mut first, &mut second] {
        let answer = answer_of(stalled);
        assert!(answer.starts_with("HTTP/1.1 408") && answer.contains("\"body_timeout\""), "{answer}");
    }
    // The slots are free again.
    let (_, after) = raw_http(&addr, post(10).as_bytes(), false);
    assert!(after.starts_with("HTTP/1.1 400") && after.contains("\"code\""), "{after}");

    let (_, head) = raw_http(&addr, b"HEAD /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false);
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let (_, missing) = raw_http(&addr, b"GET /v2/nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false);
    assert!(missing.starts_with("HTTP/1.1 404") && missing.contains("\"not_found\""), "{missing}");
    let (_, method) = raw_http(&addr, b"DELETE /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", false);
    assert!(method.starts_with("HTTP/1.1 405") && method.contains("\"method_not_allowed\""), "{method}");
    cluster.stop_all_cleanly();
}
