//! Participants follow the cluster (issue 14): three `deai coordinator` processes and a real
//! `deai miner`. After `deai admin transfer-leader`, a `deai client` that knows only a follower
//! completes a full cycle (order, output fetched and checked against the claimed hash, rating).
//! Then the coordinator the client lists first, the leader, is killed with SIGKILL, and the client
//! completes another cycle through the next address while the miner keeps serving.

mod common;

use common::{new_agent, spawn_miner, wait_for, Processes};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Instant;

/// Runs `deai client --json` against `coordinators`; the parsed JSON it printed, or the failure.
fn client(dir: &Path, coordinators: &str, args: &[&str]) -> Result<Value, String> {
    let out = Command::new(env!("CARGO_BIN_EXE_deai"))
        .args(["client", "--json", "--coordinator", coordinators])
        .arg("--key")
        .arg(dir.join("client.key"))
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    if !out.status.success() {
        return Err(format!("deai client {args:?}: {stdout} {}", String::from_utf8_lossy(&out.stderr)));
    }
    serde_json::from_str(stdout.trim().lines().last().unwrap_or("")).map_err(|e| format!("{e}: {stdout}"))
}

fn status(agent: &ureq::Agent, cluster: &Processes, i: usize) -> Option<Value> {
    let mut r = agent.get(&cluster.url(i, "/v1/admin/status")).call().ok()?;
    r.body_mut().read_json::<Value>().ok()
}

/// One full cycle through `coordinators`: order, output checked, rating. Returns the order id.
fn full_cycle(dir: &Path, coordinators: &str, prompt: &str) -> String {
    let served = client(dir, coordinators, &["order", "text-generation", prompt]).expect("the order is served");
    let order = served["order"].as_str().expect("an order id").to_string();
    assert!(!served["output"].as_str().unwrap_or("").is_empty(), "the output came back: {served}");
    client(dir, coordinators, &["rate", &order, "good"]).expect("the rating is accepted");
    order
}

fn order_status(agent: &ureq::Agent, cluster: &Processes, through: usize, order: &str) -> Option<String> {
    let mut r = agent.get(&cluster.url(through, &format!("/v1/orders/{order}?consistency=stale"))).call().ok()?;
    r.body_mut().read_json::<Value>().ok()?["status"].as_str().map(str::to_string)
}

#[test]
fn a_client_and_a_miner_follow_the_cluster_through_a_leader_transfer_and_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut cluster = Processes::create(dir.path(), &["--network", "deai-follow"]);
    cluster.start_all();
    let agent = new_agent();
    let leader = wait_for("a leader", || status(&agent, &cluster, 0)?["leader"].as_u64()) as usize;

    let all: Vec<String> = cluster.nodes.iter().map(|n| n.http.clone()).collect();
    let _miner = spawn_miner(dir.path(), [52u8; 32], &all.join(","), "text-generation", &["--faucet"]);

    // Leadership moves, signed by the admin key `deai genesis` wrote.
    let target = (leader + 1) % 3;
    let moved = Command::new(env!("CARGO_BIN_EXE_deai"))
        .args(["admin", "--node", &cluster.nodes[leader].http])
        .arg("--key")
        .arg(dir.path().join("admin.key"))
        .args(["transfer-leader", &target.to_string()])
        .output()
        .unwrap();
    assert!(moved.status.success(), "transfer-leader: {}", String::from_utf8_lossy(&moved.stderr));
    wait_for("every node to follow the new leader", || {
        (0..3)
            .all(|i| status(&agent, &cluster, i).and_then(|s| s["leader"].as_u64()) == Some(target as u64))
            .then_some(())
    });

    // A client that knows one follower only.
    let follower = (target + 1) % 3;
    let only_follower = cluster.nodes[follower].http.clone();
    client(dir.path(), &only_follower, &["keygen"]).expect("a client key");
    client(dir.path(), &only_follower, &["faucet", "100"]).expect("faucet through a follower");
    client(dir.path(), &only_follower, &["stake", "100"]).expect("stake through a follower");
    client(dir.path(), &only_follower, &["pass"]).expect("a pass through a follower");
    let first = full_cycle(dir.path(), &only_follower, "through a follower");
    assert_eq!(order_status(&agent, &cluster, target, &first).as_deref(), Some("rated"));

    // The client lists the leader first; the leader dies.
    let listed: Vec<String> =
        [target, follower, (follower + 1) % 3].iter().map(|&i| cluster.nodes[i].http.clone()).collect();
    let mut child = cluster.nodes[target].child.take().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let killed_at = Instant::now();
    let second = full_cycle(dir.path(), &listed.join(","), "after the leader died");
    let gap = killed_at.elapsed();
    eprintln!("leader killed -> next full cycle (order, miner session moved or kept, output, rating): {gap:?}");
    let survivor = follower;
    wait_for("the rating on a survivor", || {
        (order_status(&agent, &cluster, survivor, &second).as_deref() == Some("rated")).then_some(())
    });
    assert_eq!(cluster.panics_in_logs(), Vec::<String>::new());
}
