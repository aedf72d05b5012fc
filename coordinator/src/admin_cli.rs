//! `deai admin`: talks to one coordinator's HTTP endpoint. Commands that need the leader are
//! forwarded by that node, so any member will do.

use anyhow::{bail, Context};
use clap::Subcommand;
use deai_api::views::{AdminDone, ErrorBody, Head, IdBody, LearnerBody, NodeStatus, SnapshotBody};
use deai_clock::Clock;
use ed25519_dalek::SigningKey;
use serde::de::DeserializeOwned;
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

/// What a node answered to an admin command.
pub enum AdminAnswer {
    Status(NodeStatus),
    Done(AdminDone),
}

impl AdminAnswer {
    pub fn to_json(&self) -> serde_json::Result<String> {
        match self {
            AdminAnswer::Status(status) => serde_json::to_string_pretty(status),
            AdminAnswer::Done(done) => serde_json::to_string_pretty(done),
        }
    }
}

/// Reads `path`'s JSON answer as a `T`, or the API's error as an error.
fn answer<T: DeserializeOwned>(
    base: &str,
    path: &str,
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
) -> anyhow::Result<T> {
    let mut response = response.with_context(|| format!("cannot reach the coordinator at {base}"))?;
    let status = response.status();
    let body = response.body_mut().read_to_vec().with_context(|| format!("reading the answer to {path}"))?;
    if !status.is_success() {
        let error: ErrorBody = serde_json::from_slice(&body)
            .with_context(|| format!("the coordinator answered {path} with HTTP {status} and no error object"))?;
        bail!("[{}] {} (HTTP {status}); next: {}", error.code, error.message, error.code.next_step());
    }
    serde_json::from_slice(&body).with_context(|| format!("unexpected answer to {path}"))
}

/// Sends `action` to the node at `node` (`host:port` of its HTTP endpoint) and returns its
/// answer, or the API's error as an error. Commands that change the cluster are signed with
/// `key` when one is given (`admin_auth.rs`).
pub fn request(node: &str, action: &AdminAction, key: Option<&SigningKey>) -> anyhow::Result<AdminAnswer> {
    let base = if node.starts_with("http") { node.to_string() } else { format!("http://{node}") };
    let agent = agent();
    let get = |path: &str| agent.get(&format!("{base}{path}")).call();
    if matches!(action, AdminAction::Status) {
        return answer(&base, "/v1/admin/status", get("/v1/admin/status")).map(AdminAnswer::Status);
    }
    // A signature names the network and the node it is for: ask the node for both.
    let (network, node_id) = match key {
        Some(_) => {
            let head: Head = answer(&base, "/v1/ledger/head", get("/v1/ledger/head?consistency=stale"))?;
            let status: NodeStatus = answer(&base, "/v1/admin/status", get("/v1/admin/status"))?;
            (head.network_id, status.id)
        }
        None => (String::new(), 0),
    };
    let post = |path: &str, bytes: serde_json::Result<Vec<u8>>| {
        let path = format!("/v1/admin/{path}");
        let bytes = bytes.unwrap_or_default();
        let mut request = agent.post(&format!("{base}{path}")).header("content-type", "application/json");
        if let Some(key) = key {
            let now_ms = deai_clock::SystemClock.now_ms();
            for (name, value) in crate::admin_auth::sign(key, &network, node_id, "POST", &path, now_ms, &bytes) {
                request = request.header(name, value);
            }
        }
        (path, request.send(&bytes[..]))
    };
    let (path, response) = match action {
        AdminAction::Status => unreachable!("answered above"),
        AdminAction::AddLearner { id, raft_addr } => {
            post("learners", serde_json::to_vec(&LearnerBody { id: *id, raft_addr: raft_addr.clone() }))
        }
        AdminAction::Promote { id } => post("promote", serde_json::to_vec(&IdBody { id: *id })),
        AdminAction::Remove { id } => post("remove", serde_json::to_vec(&IdBody { id: *id })),
        AdminAction::TransferLeader { id } => post("transfer-leader", serde_json::to_vec(&IdBody { id: *id })),
        AdminAction::Snapshot => post("snapshot", serde_json::to_vec(&SnapshotBody {})),
    };
    answer(&base, &path, response).map(AdminAnswer::Done)
}

/// A status answer for people.
pub fn print_status(status: &NodeStatus) {
    println!("node {}: {}", status.id, status.state);
    match status.leader {
        Some(leader) => println!("leader: node {leader} (term {})", status.term),
        None => println!("leader: none known (term {})", status.term),
    }
    for (role, members) in [("voter", &status.voters), ("learner", &status.learners)] {
        for (member, addr) in members {
            println!("  {role:8} {member:>3}  {addr}");
        }
    }
    let snapshot = status.snapshot_index.map_or_else(|| "none".to_string(), |i| i.to_string());
    println!(
        "log: commit {}  applied {}  last {}  snapshot {snapshot}",
        status.commit_index, status.applied_index, status.last_log_index
    );
    println!("ledger: height {}  root {}", status.ledger_height, status.ledger_root);
    match &status.last_certificate {
        Some(c) => println!("last certificate: height {} root {} ({} signatures)", c.height, c.root, c.signers),
        None => println!("last certificate: none yet"),
    }
    match &status.not_ready {
        Some(why) => println!("ready: no ({why})"),
        None => println!("ready: yes"),
    }
}
