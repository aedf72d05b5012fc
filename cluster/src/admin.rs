//! Cluster administration: status, membership changes, snapshots and leader transfer.
//!
//! `deai admin` sends an [`AdminCommand`] to any node; a command that needs the leader is
//! forwarded to it once over the TCP transport (as writes are). Leader transfer is built from
//! openraft 0.9's parts, since its `transfer_leader` arrives only in 0.10 (`docs/decisions.md`):
//!
//! 1. every voter but the target stops starting elections of its own, and the leader holds
//!    writes back;
//! 2. the leader waits until the target holds its whole log, then stops heartbeats so that the
//!    followers' leader leases (`election_timeout_max_ms`) run out;
//! 3. the target campaigns; it has the longest log and is the only candidate, so it wins;
//! 4. everything is switched back on, and a timer on every node switches it back on anyway if
//!    the leader dies midway ([`ControlRequest::SetElection::restore_after_ms`]).

use crate::{ClusterError, CoordinatorNode};
use deai_storage::{NodeId, TypeConfig};
use openraft::{BasicNode, ChangeMembers, Raft, ServerState};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// How long a node keeps its elections switched off before switching them on by itself, in ms.
pub const TRANSFER_ROLLBACK_MS: u64 = 10_000;
/// Campaigns the target may start before the transfer gives up.
pub const TRANSFER_MAX_CAMPAIGNS: u32 = 3;
/// Longest the leader waits for the target to hold its whole log, in milliseconds.
pub const TRANSFER_CATCH_UP_MS: u64 = 5_000;

/// What one node asks another during a leader transfer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub enum ControlRequest {
    /// Switches this node's own elections on or off; when off, they come back on by themselves
    /// after `restore_after_ms`.
    SetElection { enabled: bool, restore_after_ms: u64 },
    /// Starts an election here and waits up to `wait_ms` to become leader.
    Campaign { wait_ms: u64 },
}

/// The answer to a [`ControlRequest`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControlReply {
    Done,
    /// The campaign ended with this node as leader.
    Elected,
    /// The campaign ended without a win; the known leader, if any.
    NotElected {
        leader: Option<NodeId>,
    },
}

/// Carries out `request` on `raft`.
pub async fn handle_control(raft: &Raft<TypeConfig>, request: ControlRequest) -> Result<ControlReply, String> {
    match request {
        ControlRequest::SetElection { enabled, restore_after_ms } => {
            raft.runtime_config().elect(enabled);
            if !enabled {
                let raft = raft.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(restore_after_ms)).await;
                    raft.runtime_config().elect(true);
                });
            }
            Ok(ControlReply::Done)
        }
        ControlRequest::Campaign { wait_ms } => {
            raft.trigger().elect().await.map_err(|e| e.to_string())?;
            let won = raft
                .wait(Some(Duration::from_millis(wait_ms)))
                .state(ServerState::Leader, "won the transfer campaign")
                .await
                .is_ok();
            if won {
                Ok(ControlReply::Elected)
            } else {
                Ok(ControlReply::NotElected { leader: raft.metrics().borrow().current_leader })
            }
        }
    }
}

/// A future that a [`PeerControl`] returns.
pub type ControlFuture<'a> = Pin<Box<dyn Future<Output = Result<ControlReply, String>> + Send + 'a>>;

/// How the leader reaches its peers' control handlers: over TCP in a deployment, directly in
/// the in-process tests.
pub trait PeerControl: Send + Sync {
    fn control<'a>(&'a self, peer: NodeId, addr: &'a str, request: ControlRequest) -> ControlFuture<'a>;
}

/// An operator's signed admin request, carried as it reached the cluster to the node that carries
/// it out, which checks the signature itself (`docs/decisions.md`, "Admin authority"): no node
/// takes another's word for an operator's authority.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SignedAdmin {
    /// What the request asks, as the receiving node read it; the executing node reads the signed
    /// path and body again and refuses a mismatch.
    pub command: AdminCommand,
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
    /// The node the operator addressed; the signature covers it.
    pub node: NodeId,
    /// The operator's clock when signing, in ms since the Unix epoch.
    pub time_ms: u64,
    /// The admin's public key.
    pub key: [u8; 32],
    pub signature: Vec<u8>,
}

/// A future that an [`AdminGate`] returns.
pub type AdmitFuture<'a> = Pin<Box<dyn Future<Output = Result<(), ClusterError>> + Send + 'a>>;

/// The node's authority over admin commands: checks a signed request for the node `executing`
/// (key, signature, time, network, target node) and records it cluster-wide so that it runs
/// once; only then may the node carry it out.
pub trait AdminGate: Send + Sync {
    fn admit<'a>(&'a self, request: &'a SignedAdmin, executing: NodeId) -> AdmitFuture<'a>;
}

/// An operator's request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum AdminCommand {
    /// Adds a node that follows the log without voting.
    AddLearner { id: NodeId, raft_addr: String },
    /// Makes a learner a voter.
    Promote { id: NodeId },
    /// Removes a voter or learner from the cluster.
    Remove { id: NodeId },
    /// Moves leadership to `to`, a voter.
    TransferLeader { to: NodeId },
    /// Builds a snapshot on the node that receives it (never forwarded).
    Snapshot,
}

impl AdminCommand {
    /// Whether the command must run on the leader.
    pub fn needs_leader(&self) -> bool {
        !matches!(self, AdminCommand::Snapshot)
    }
}

/// What a node reports about itself and the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NodeStatus {
    pub id: NodeId,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub state: String,
    pub leader: Option<NodeId>,
    pub term: u64,
    /// Raft address by node id (JSON object keys are the ids in decimal).
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, String>))]
    pub voters: BTreeMap<NodeId, String>,
    #[cfg_attr(feature = "openapi", schema(value_type = BTreeMap<String, String>))]
    pub learners: BTreeMap<NodeId, String>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    pub snapshot_index: Option<u64>,
    pub ledger_height: u64,
    /// Hex of the ledger root.
    pub ledger_root: String,
    pub last_certificate: Option<CertificateStatus>,
    /// Why the node is not ready, if it is not.
    pub not_ready: Option<String>,
}

/// The last quorum certificate (SPEC 6.3) as the status reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CertificateStatus {
    pub height: u64,
    pub root: String,
    pub signers: usize,
}

/// This node's status.
pub fn status(node: &CoordinatorNode) -> NodeStatus {
    let (state, leader, term, voters, learners, applied, last_log, snapshot) = {
        let metrics = node.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let addr = |id: &NodeId| membership.get_node(id).map(|n| n.addr.clone()).unwrap_or_default();
        let voters: BTreeMap<_, _> = membership.voter_ids().map(|id| (id, addr(&id))).collect();
        let learners: BTreeMap<_, _> = membership.learner_ids().map(|id| (id, addr(&id))).collect();
        let state = match m.state {
            ServerState::Leader => "leader",
            ServerState::Follower => "follower",
            ServerState::Candidate => "candidate",
            ServerState::Learner => "learner",
            ServerState::Shutdown => "shutdown",
        };
        (
            state.to_string(),
            m.current_leader,
            m.current_term,
            voters,
            learners,
            m.last_applied.map(|l| l.index).unwrap_or(0),
            m.last_log_index.unwrap_or(0),
            m.snapshot.map(|s| s.index),
        )
    };
    let (ledger_height, ledger_root, last_certificate) = {
        let ledger = node.ledger().read();
        let cert = ledger.last_certificate.as_ref().map(|c| CertificateStatus {
            height: c.height,
            root: hex::encode(c.root),
            signers: c.signatures.len(),
        });
        (ledger.height, hex::encode(&ledger.root), cert)
    };
    NodeStatus {
        id: node.id,
        state,
        leader,
        term,
        voters,
        learners,
        commit_index: u64::try_from(node.metrics().storage.committed_index.get()).unwrap_or(0),
        applied_index: applied,
        last_log_index: last_log,
        snapshot_index: snapshot,
        ledger_height,
        ledger_root,
        last_certificate,
        not_ready: node.readiness().err(),
    }
}

fn raft_err(e: impl std::fmt::Display) -> ClusterError {
    ClusterError::Raft(e.to_string())
}

/// Runs `command` on this node, which must be the leader for commands that need one.
pub async fn run_local(
    node: &CoordinatorNode,
    command: AdminCommand,
    peers: Option<&dyn PeerControl>,
) -> Result<String, ClusterError> {
    match command {
        AdminCommand::AddLearner { id, raft_addr } => {
            node.raft.add_learner(id, BasicNode::new(raft_addr.clone()), true).await.map_err(membership_err)?;
            Ok(format!("node {id} at {raft_addr} is a learner and has caught up"))
        }
        AdminCommand::Promote { id } => {
            node.raft
                .change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])), false)
                .await
                .map_err(membership_err)?;
            Ok(format!("node {id} is a voter"))
        }
        AdminCommand::Remove { id } => {
            let is_voter = node.raft.metrics().borrow().membership_config.membership().voter_ids().any(|v| v == id);
            if is_voter {
                node.raft
                    .change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])), false)
                    .await
                    .map_err(membership_err)?;
            } else {
                node.raft
                    .change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])), false)
                    .await
                    .map_err(membership_err)?;
            }
            Ok(format!("node {id} is no longer a member"))
        }
        AdminCommand::TransferLeader { to } => {
            let peers =
                peers.ok_or_else(|| ClusterError::Config("this node has no control link to its peers".into()))?;
            transfer_leader(node, to, peers).await?;
            Ok(format!("node {to} is the leader"))
        }
        AdminCommand::Snapshot => {
            node.raft.trigger().snapshot().await.map_err(raft_err)?;
            Ok("snapshot build started".into())
        }
    }
}

fn membership_err(
    e: openraft::error::RaftError<NodeId, openraft::error::ClientWriteError<NodeId, BasicNode>>,
) -> ClusterError {
    match e {
        openraft::error::RaftError::APIError(openraft::error::ClientWriteError::ForwardToLeader(f)) => {
            ClusterError::NotLeader { leader: f.leader_id }
        }
        openraft::error::RaftError::APIError(openraft::error::ClientWriteError::ChangeMembershipError(e)) => {
            ClusterError::Config(e.to_string())
        }
        other => ClusterError::Raft(other.to_string()),
    }
}

/// Moves leadership from this node (the leader) to voter `to`; see the module docs.
pub async fn transfer_leader(node: &CoordinatorNode, to: NodeId, peers: &dyn PeerControl) -> Result<(), ClusterError> {
    let (leader, voters, addrs) = {
        let metrics = node.raft.metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        let voters: Vec<NodeId> = membership.voter_ids().collect();
        let addrs: BTreeMap<NodeId, String> = voters
            .iter()
            .map(|id| (*id, membership.get_node(id).map(|n| n.addr.clone()).unwrap_or_default()))
            .collect();
        (m.current_leader, voters, addrs)
    };
    if leader != Some(node.id) {
        return Err(ClusterError::NotLeader { leader });
    }
    if to == node.id {
        return Ok(());
    }
    if !voters.contains(&to) {
        return Err(ClusterError::Config(format!("node {to} is not a voter; promote it first")));
    }
    let _held = node.hold_writes_for_transfer();
    let quiet = ControlRequest::SetElection { enabled: false, restore_after_ms: TRANSFER_ROLLBACK_MS };
    node.raft.runtime_config().elect(false);
    for peer in voters.iter().filter(|v| **v != to && **v != node.id) {
        if let Err(e) = peers.control(*peer, &addrs[peer], quiet.clone()).await {
            tracing::warn!(peer, error = %e, "leader transfer: could not pause the peer's elections");
        }
    }
    let result = campaign_for(node, to, &addrs[&to], peers).await;
    node.raft.runtime_config().heartbeat(true);
    node.raft.runtime_config().elect(true);
    let resume = ControlRequest::SetElection { enabled: true, restore_after_ms: 0 };
    for peer in voters.iter().filter(|v| **v != node.id) {
        let _ = peers.control(*peer, &addrs[peer], resume.clone()).await;
    }
    result
}

async fn campaign_for(
    node: &CoordinatorNode,
    to: NodeId,
    addr: &str,
    peers: &dyn PeerControl,
) -> Result<(), ClusterError> {
    let last_log = node.raft.metrics().borrow().last_log_index;
    node.raft
        .wait(Some(Duration::from_millis(TRANSFER_CATCH_UP_MS)))
        .metrics(
            |m| m.replication.as_ref().and_then(|r| r.get(&to).cloned().flatten()).map(|l| l.index) >= last_log,
            "transfer target holds the whole log",
        )
        .await
        .map_err(|e| ClusterError::Raft(format!("node {to} did not catch up for the transfer: {e}")))?;
    node.raft.runtime_config().heartbeat(false);
    let config = node.config();
    let lease = Duration::from_millis(config.election_timeout_max_ms + 2 * config.heartbeat_interval_ms);
    tokio::time::sleep(lease).await;
    let wait_ms = 2 * config.election_timeout_max_ms;
    let mut last = None;
    for _ in 0..TRANSFER_MAX_CAMPAIGNS {
        match peers.control(to, addr, ControlRequest::Campaign { wait_ms }).await {
            Ok(ControlReply::Elected) => return Ok(()),
            Ok(reply) => last = Some(format!("{reply:?}")),
            Err(e) => last = Some(e),
        }
    }
    Err(ClusterError::Raft(format!(
        "node {to} did not win leadership after {TRANSFER_MAX_CAMPAIGNS} campaigns: {}",
        last.unwrap_or_default()
    )))
}
