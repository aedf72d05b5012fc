//! `deai admin`: talks to one coordinator's HTTP endpoint. Commands that need the leader are
//! forwarded by that node, so any member will do.

use anyhow::{bail, Context};
use clap::Subcommand;
use deai_clock::Clock;
use ed25519_dalek::SigningKey;
use serde_json::{json, Value};
use std::time::Duration;

/// Longest an admin request may take (a learner catching up, a leader transfer), in ms.
pub const ADMIN_REQUEST_TIMEOUT_MS: u64 = 90_000;

#[derive(Subcommand, Debug)]
pub enum AdminAction {
    /// Members, leader, term, commit and applied index, last certificate.
    Status,
    /// Adds a node as a learner (it follows the log without voting) and waits for it to catch up.
    AddLearner { id: u64, raft_addr: String },
    /// Makes a learner a voter.
    Promote { id: u64 },
    /// Removes a voter or learner.
    Remove { id: u64 },
    /// Moves leadership to the given voter.
    TransferLeader { id: u64 },
    /// Builds a snapshot on the node addressed.
    Snapshot,
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_millis(ADMIN_REQUEST_TIMEOUT_MS)))
        .http_status_as_error(false)
        .build()
        .into()
}

/// Sends `action` to the node at `node` (`host:port` of its HTTP endpoint) and returns the JSON
/// answer, or the API's error as an error. Commands that change the cluster are signed with
/// `key` when one is given (`admin_auth.rs`).
pub fn request(node: &str, action: &AdminAction, key: Option<&SigningKey>) -> anyhow::Result<Value> {
    let base = if node.starts_with("http") { node.to_string() } else { format!("http://{node}") };
    let agent = agent();
    // A signature names the network and the node it is for: ask the node for both.
    let (network, node_id) = match key {
        Some(_) if !matches!(action, AdminAction::Status) => {
            let read = |path: &str| -> anyhow::Result<Value> {
                let mut response = agent
                    .get(&format!("{base}{path}"))
                    .call()
                    .with_context(|| format!("cannot reach the coordinator at {base}"))?;
                response.body_mut().read_json().with_context(|| format!("the coordinator's {path} is not JSON"))
            };
            let head = read("/v1/ledger/head?consistency=stale")?;
            let network = head["network_id"].as_str().context("the coordinator did not name its network")?.to_string();
            let status = read("/v1/admin/status")?;
            (network, status["id"].as_u64().context("the coordinator did not name its node id")?)
        }
        _ => (String::new(), 0),
    };
    let post = |path: &str, body: Value| {
        let path = format!("/v1/admin/{path}");
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        let mut request = agent.post(&format!("{base}{path}")).header("content-type", "application/json");
        if let Some(key) = key {
            let now_ms = deai_clock::SystemClock.now_ms();
            for (name, value) in crate::admin_auth::sign(key, &network, node_id, "POST", &path, now_ms, &bytes) {
                request = request.header(name, value);
            }
        }
        request.send(&bytes[..])
    };
    let response = match action {
        AdminAction::Status => agent.get(&format!("{base}/v1/admin/status")).call(),
        AdminAction::AddLearner { id, raft_addr } => post("learners", json!({"id": id, "raft_addr": raft_addr})),
        AdminAction::Promote { id } => post("promote", json!({"id": id})),
        AdminAction::Remove { id } => post("remove", json!({"id": id})),
        AdminAction::TransferLeader { id } => post("transfer-leader", json!({"id": id})),
        AdminAction::Snapshot => post("snapshot", json!({})),
    };
    let mut response = response.with_context(|| format!("cannot reach the coordinator at {base}"))?;
    let status = response.status();
    let body: Value = response.body_mut().read_json().context("the coordinator's answer is not JSON")?;
    if !status.is_success() {
        let code = body["code"].as_str().unwrap_or("unknown");
        let message = body["message"].as_str().unwrap_or("");
        bail!("[{code}] {message} (HTTP {status})");
    }
    Ok(body)
}

/// A status answer for people.
pub fn print_status(status: &Value) {
    let id = &status["id"];
    println!("node {id}: {}", status["state"].as_str().unwrap_or("?"));
    match status["leader"].as_u64() {
        Some(leader) => println!("leader: node {leader} (term {})", status["term"]),
        None => println!("leader: none known (term {})", status["term"]),
    }
    for (role, key) in [("voter", "voters"), ("learner", "learners")] {
        if let Some(members) = status[key].as_object() {
            for (member, addr) in members {
                println!("  {role:8} {member:>3}  {}", addr.as_str().unwrap_or(""));
            }
        }
    }
    println!(
        "log: commit {}  applied {}  last {}  snapshot {}",
        status["commit_index"], status["applied_index"], status["last_log_index"], status["snapshot_index"]
    );
    println!("ledger: height {}  root {}", status["ledger_height"], status["ledger_root"].as_str().unwrap_or(""));
    match status["last_certificate"].as_object() {
        Some(c) => println!(
            "last certificate: height {} root {} ({} signatures)",
            c["height"],
            c["root"].as_str().unwrap_or(""),
            c["signers"]
        ),
        None => println!("last certificate: none yet"),
    }
    match status["not_ready"].as_str() {
        Some(why) => println!("ready: no ({why})"),
        None => println!("ready: yes"),
    }
}
