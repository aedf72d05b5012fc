//! Three real `deai coordinator` processes on loopback (issue 4): writes go through every node,
//! the leader is killed with SIGKILL under load and restarted, and afterwards every acknowledged
//! write is on every node, the roots agree, and a quorum certificate covers the last
//! acknowledged write. Every wait polls a condition against a deadline.

use deai_protocol::message::{DevFaucet, Message};
use deai_protocol::types::{AssetId, NetworkId};
use deai_protocol::SignedEnvelope;
use ed25519_dalek::SigningKey;
mod common;

use common::{get_json, get_text, hex, new_agent, wait_for, Processes};
use serde_json::Value;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

const WRITERS: usize = 6;

fn faucet(key: &SigningKey, network: &NetworkId, nonce: u64) -> Vec<u8> {
    let message = Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 1 });
    deai_protocol::codec::encode_framed(&[SignedEnvelope::seal(key, network, nonce, &message)][..])
}

enum Posted {
    /// Acknowledged as accepted, at this ledger height.
    Acked(u64),
    /// Certainly not written: the node was down, or answered that it could not propose.
    Refused,
    /// Maybe written: the answer was lost or the proposal failed midway.
    Unknown,
}

fn post(agent: &ureq::Agent, url: &str, body: &[u8]) -> Posted {
    let mut response = match agent.post(url).header("content-type", "application/octet-stream").send(body) {
        Ok(response) => response,
        Err(ureq::Error::Io(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => return Posted::Refused,
        Err(ureq::Error::ConnectionFailed) => return Posted::Refused,
        Err(_) => return Posted::Unknown,
    };
    let Ok(result) = response.body_mut().read_json::<Value>() else { return Posted::Unknown };
    if !matches!(response.status().as_u16(), 200) {
        return match result["code"].as_str() {
            Some("not_leader" | "leader_transfer" | "leader_unreachable") => Posted::Refused,
            _ => Posted::Unknown,
        };
    }
    assert_eq!(result["outcomes"][0], "accepted", "an acknowledged write was rejected: {result}");
    result["height"].as_u64().map_or(Posted::Unknown, Posted::Acked)
}

#[derive(Default)]
struct WriterLog {
    acked: u64,
    /// Writes whose outcome is unknown: they may or may not have committed.
    uncertain: u64,
    refused: u64,
    max_acked_nonce: u64,
    max_acked_height: u64,
}

#[test]
fn three_processes_survive_a_leader_kill_without_losing_an_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Processes::create(dir.path(), &["--network", "deai-proc", "--checkpoint-every", "20"]);
    let network = cluster.network_id();
    cluster.start_all();
    let agent = new_agent();
    let ready = |cluster: &Processes, i: usize| cluster.wait_ready(i);

    // Writers: each has its own key and walks the nodes, so writes enter through every node.
    let stop = Arc::new(AtomicBool::new(false));
    let acked_total = Arc::new(AtomicU64::new(0));
    let logs: Arc<Mutex<Vec<WriterLog>>> = Arc::new(Mutex::new((0..WRITERS).map(|_| WriterLog::default()).collect()));
    let urls: Vec<String> = (0..3).map(|i| cluster.url(i, "/v1/ledger/entries")).collect();
    let keys: Vec<SigningKey> = (0..WRITERS).map(|w| SigningKey::from_bytes(&[w as u8 + 40; 32])).collect();
    let writers: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(w, key)| {
            let (key, network, urls) = (key.clone(), network.clone(), urls.clone());
            let (stop, acked_total, logs) = (stop.clone(), acked_total.clone(), logs.clone());
            std::thread::spawn(move || {
                let agent = new_agent();
                let mut nonce = 0u64;
                let mut target = w % 3;
                while !stop.load(Ordering::Relaxed) {
                    nonce += 1;
                    let outcome = post(&agent, &urls[target], &faucet(&key, &network, nonce));
                    let mut logs = logs.lock().unwrap();
                    let log = &mut logs[w];
                    match outcome {
                        Posted::Acked(height) => {
                            log.acked += 1;
                            log.max_acked_nonce = nonce;
                            log.max_acked_height = log.max_acked_height.max(height);
                            acked_total.fetch_add(1, Ordering::Relaxed);
                        }
                        Posted::Refused => log.refused += 1,
                        Posted::Unknown => log.uncertain += 1,
                    }
                    drop(logs);
                    target = (target + 1) % 3;
                }
            })
        })
        .collect();

    let acked = || acked_total.load(Ordering::Relaxed);
    wait_for("writes under way", || (acked() >= 150).then_some(()));
    let leader = wait_for("a leader", || {
        get_json(&agent, &cluster.url(0, "/v1/admin/status")).and_then(|s| s["leader"].as_u64())
    }) as usize;
    // The leader's metrics show it leading and writing durably.
    let metrics = wait_for("leader metrics", || get_text(&agent, &cluster.url(leader, "/metrics")));
    let value = |name: &str| -> f64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name) && !l.starts_with('#'))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics"))
    };
    assert_eq!(value("deai_raft_is_leader{"), 1.0);
    assert!(value("deai_raft_proposals_committed_total{") > 0.0);
    assert!(value("deai_storage_fsync_duration_seconds_count{") > 0.0);
    assert!(value("deai_raft_peer_round_trip_seconds_count{") > 0.0);

    let mut child = cluster.nodes[leader].child.take().unwrap();
    child.kill().unwrap(); // SIGKILL
    child.wait().unwrap();
    let at_kill = acked();
    let survivor = (leader + 1) % 3;
    wait_for("a new leader", || {
        get_json(&agent, &cluster.url(survivor, "/v1/admin/status"))
            .and_then(|s| s["leader"].as_u64())
            .filter(|l| *l as usize != leader)
    });
    wait_for("writes acknowledged by the new leader", || (acked() >= at_kill + 150).then_some(()));
    cluster.start(leader);
    ready(&cluster, leader);
    let at_restart = acked();
    wait_for("writes after the restart", || (acked() >= at_restart + 150).then_some(()));
    stop.store(true, Ordering::Relaxed);
    for writer in writers {
        writer.join().unwrap();
    }
    let logs = std::mem::take(&mut *logs.lock().unwrap());
    let uncertain: u64 = logs.iter().map(|l| l.uncertain).sum();
    let refused: u64 = logs.iter().map(|l| l.refused).sum();
    eprintln!(
        "killed node {leader}; {} writes acknowledged, {refused} refused, {uncertain} of unknown outcome",
        acked()
    );
    let last_acked_height = logs.iter().map(|l| l.max_acked_height).max().unwrap();

    // A certificate must cover the last acknowledged write. Checkpoints fall every 20 entries:
    // top the ledger up with filler entries until one is certified on every node.
    let filler = SigningKey::from_bytes(&[99; 32]);
    let mut filler_nonce = 0;
    wait_for("a certificate covering every acknowledged write on every node", || {
        let covered = (0..3).all(|i| {
            get_json(&agent, &cluster.url(i, "/v1/admin/status"))
                .and_then(|s| s["last_certificate"]["height"].as_u64())
                .is_some_and(|h| h >= last_acked_height)
        });
        if !covered {
            filler_nonce += 1;
            post(&agent, &urls[filler_nonce as usize % 3], &faucet(&filler, &network, filler_nonce));
        }
        covered.then_some(())
    });

    // Quiet now: every node reaches the same applied index and root.
    let statuses = wait_for("all nodes at the same index and root", || {
        let s: Vec<Value> = (0..3).filter_map(|i| get_json(&agent, &cluster.url(i, "/v1/admin/status"))).collect();
        (s.len() == 3
            && s.iter().all(|x| x["applied_index"] == s[0]["applied_index"] && x["ledger_root"] == s[0]["ledger_root"]))
        .then_some(s)
    });
    let certificate = &statuses[0]["last_certificate"];
    assert!(certificate["signers"].as_u64().unwrap() >= 3, "{certificate}");
    assert!(statuses.iter().all(|s| s["last_certificate"] == *certificate), "every node holds the same certificate");

    // Every acknowledged write is on every node.
    for (w, key) in keys.iter().enumerate() {
        let id = hex(&key.verifying_key().to_bytes());
        let log = &logs[w];
        assert!(log.acked > 0, "writer {w} got writes through");
        for i in 0..3 {
            let account = get_json(&agent, &cluster.url(i, &format!("/v1/ledger/accounts/{id}?consistency=stale")))
                .expect("account readable");
            let balance: u64 = account["balance"].as_str().unwrap().parse().unwrap();
            assert!(
                balance >= log.acked && balance <= log.acked + log.uncertain,
                "node {i}, writer {w}: balance {balance}, acknowledged {}, uncertain {}",
                log.acked,
                log.uncertain
            );
            assert!(account["last_nonce"].as_u64().unwrap() >= log.max_acked_nonce);
        }
    }

    // `deai admin` moves leadership to the restarted node through another node. The nodes hold
    // the admin key `deai genesis` made: unsigned, or signed by another key, it is refused.
    let other = (leader + 1) % 3;
    let admin_key = dir.path().join("admin.key");
    let run_admin = |key: Option<&std::path::Path>, args: &[&str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_deai"));
        command.args(["admin", "--node", &cluster.nodes[other].http]).env_remove("DEAI_ADMIN_KEY_FILE");
        if let Some(key) = key {
            command.arg("--key").arg(key);
        }
        command.args(args).output().unwrap()
    };
    let admin = |args: &[&str]| {
        let out = run_admin(Some(&admin_key), args);
        assert!(out.status.success(), "deai admin {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    let unsigned = run_admin(None, &["transfer-leader", &leader.to_string()]);
    assert!(!unsigned.status.success());
    assert!(String::from_utf8_lossy(&unsigned.stderr).contains("[unsigned]"), "{unsigned:?}");
    let stranger = dir.path().join("coordinator-0.key");
    let wrong = run_admin(Some(&stranger), &["transfer-leader", &leader.to_string()]);
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("[unknown_admin_key]"), "{wrong:?}");
    admin(&["transfer-leader", &leader.to_string()]);
    // The transfer returns once the target leads; the node asked learns it with the next
    // heartbeat, so its status may name no leader for a moment, but never another one.
    wait_for("the node asked to name the new leader", || {
        let status: Value = serde_json::from_str(&admin(&["--json", "status"])).unwrap();
        match status["leader"].as_u64() {
            Some(l) => {
                assert_eq!(l, leader as u64, "leadership went elsewhere: {status}");
                Some(())
            }
            None => None,
        }
    });
    let is_leader = format!("deai_raft_is_leader{{node=\"{leader}\"}} 1");
    let text = wait_for("the restarted node's metrics to show it leads", || {
        let text = get_text(&agent, &cluster.url(leader, "/metrics"))?;
        text.lines().any(|l| l == is_leader).then_some(text)
    });
    assert!(text.lines().any(|l| l.starts_with("deai_bft_certificates_formed_total") && !l.ends_with(" 0")));

    // A clean stop: SIGTERM, and every process exits 0; no node panicked on the way.
    cluster.stop_all_cleanly();
    assert_eq!(cluster.panics_in_logs(), Vec::<String>::new());
}

/// Sends `signal` (`STOP`, `CONT`) to a node's process.
fn signal(cluster: &Processes, i: usize, signal: &str) {
    let pid = cluster.nodes[i].child.as_ref().expect("the node runs").id();
    let sent = Command::new("kill").args([&format!("-{signal}"), &pid.to_string()]).status().expect("run kill");
    assert!(sent.success(), "kill -{signal} {pid}");
}

/// Three processes with elections between `min_ms` and `max_ms`, all ready; returns them and
/// the leader's index.
fn ready_cluster(dir: &std::path::Path, network: &str, min_ms: &str, max_ms: &str) -> (Processes, usize) {
    let mut cluster = Processes::create(dir, &["--network", network]);
    cluster.env.push(("DEAI_NODE_RAFT__ELECTION_TIMEOUT_MIN_MS".into(), min_ms.into()));
    cluster.env.push(("DEAI_NODE_RAFT__ELECTION_TIMEOUT_MAX_MS".into(), max_ms.into()));
    cluster.start_all();
    let agent = new_agent();
    let leader = wait_for("a leader", || {
        get_json(&agent, &cluster.url(0, "/v1/admin/status")).and_then(|s| s["leader"].as_u64())
    }) as usize;
    (0..3).for_each(|i| cluster.wait_ready(i));
    (cluster, leader)
}

/// A linearizable read on the leader while both followers answer late (stopped with SIGSTOP,
/// then resumed before any election can start) is answered, not refused: the leader asks the
/// quorum again within its retry budget.
#[test]
fn a_linearizable_read_waits_out_followers_that_answer_late() {
    let dir = tempfile::tempdir().unwrap();
    // Elections far slower than heartbeats, so followers stopped for a few heartbeats stay followers.
    let (cluster, leader) = ready_cluster(dir.path(), "deai-late", "4000", "4500");
    let agent = new_agent();
    let retries = |cluster: &Processes| -> Option<f64> {
        let metrics = get_text(&agent, &cluster.url(leader, "/metrics"))?;
        let line = metrics.lines().find(|l| l.starts_with("deai_raft_read_quorum_retries_total{"))?;
        line.rsplit(' ').next()?.parse().ok()
    };
    let before = wait_for("the retry counter", || retries(&cluster));

    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    followers.iter().for_each(|&i| signal(&cluster, i, "STOP"));
    let head_url = cluster.url(leader, "/v1/ledger/head?consistency=linearizable");
    let read = std::thread::spawn(move || {
        let mut answer = new_agent().get(&head_url).call().expect("the leader answers");
        (answer.status().as_u16(), answer.body_mut().read_to_string().unwrap_or_default())
    });
    wait_for("the leader to ask the quorum again", || retries(&cluster).filter(|&now| now > before));
    followers.iter().for_each(|&i| signal(&cluster, i, "CONT"));

    let (status, body) = read.join().expect("the reading thread");
    assert_eq!(status, 200, "{body}");
    let head: Value = serde_json::from_str(&body).expect("a head");
    assert!(head["height"].is_u64(), "{head}");
}

/// A leader cut off from its quorum (both followers stopped with SIGSTOP) answers a write it
/// holds with `quorum_lost` once an election's time has passed, long before the client queue's
/// write timeout, so that clients move on to the side that can elect a leader; and writes again
/// once the followers are back.
#[test]
fn a_leader_cut_off_from_its_quorum_answers_its_writes_within_an_election_timeout() {
    let dir = tempfile::tempdir().unwrap();
    // Followers stopped for seconds must not elect on their own when they resume first.
    let (cluster, leader) = ready_cluster(dir.path(), "deai-cutoff", "1000", "1200");
    let network = cluster.network_id();
    let agent = new_agent();
    let key = SigningKey::from_bytes(&[77; 32]);
    let url = cluster.url(leader, "/v1/ledger/entries");
    assert!(matches!(post(&agent, &url, &faucet(&key, &network, 1)), Posted::Acked(_)));

    let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();
    followers.iter().for_each(|&i| signal(&cluster, i, "STOP"));
    let mut answer = agent
        .post(&url)
        .header("content-type", "application/octet-stream")
        .send(&faucet(&key, &network, 2)[..])
        .expect("the leader answers");
    followers.iter().for_each(|&i| signal(&cluster, i, "CONT"));
    let body: Value = answer.body_mut().read_json().expect("an error body");
    assert_eq!(answer.status().as_u16(), 503, "{body}");
    // Not `write_timeout`, the client queue's answer after 10 s.
    assert_eq!(body["code"], "quorum_lost", "{body}");

    // Back with its quorum, the cluster takes the next write (nonce 2 may have committed).
    wait_for("a write after the followers are back", || {
        let leader = get_json(&agent, &cluster.url(0, "/v1/admin/status"))?["leader"].as_u64()? as usize;
        matches!(post(&agent, &cluster.url(leader, "/v1/ledger/entries"), &faucet(&key, &network, 3)), Posted::Acked(_))
            .then_some(())
    });
}
