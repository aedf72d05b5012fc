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

use crate::node::{remote_error, ADMIN_TIMEOUT_MS};
use crate::{ClusterError, CoordinatorNode};
use deai_storage::NodeId;
use openraft::{BasicNode, ChangeMembers, ServerState};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

pub use crate::control::{
    handle_control, AdminCommand, AdminGate, AdmitFuture, ControlFuture, ControlReply, ControlRequest, PeerControl,
    SignedAdmin,
};

/// How long a node keeps its elections switched off before switching them on by itself, in ms.
pub const TRANSFER_ROLLBACK_MS: u64 = 10_000;
/// Campaigns the target may start before the transfer gives up.
pub const TRANSFER_MAX_CAMPAIGNS: u32 = 3;
/// Longest the leader waits for the target to hold its whole log, in milliseconds.
pub const TRANSFER_CATCH_UP_MS: u64 = 5_000;

/// What `/v1/admin/status` answers: a `/v1` shape, so `deai-api` defines it.
pub use deai_api::views::{CertificateStatus, NodeStatus};

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

/// The node's admin commands. They are methods of [`CoordinatorNode`] defined here, above the
/// node, so that the node itself knows nothing of how a command runs.
impl CoordinatorNode {
    /// Runs an operator's signed admin request: here if this node leads or the command is
    /// local, else forwarded once, signature and all, to the leader. Whichever node carries it
    /// out checks it with its own gate first.
    pub async fn admin_signed(&self, request: SignedAdmin) -> Result<String, ClusterError> {
        let leader = self.raft.metrics().borrow().current_leader;
        if !request.command.needs_leader() || leader == Some(self.id) {
            return self.admin_signed_here(request).await;
        }
        let (Some(network), Some(leader)) = (self.peer_network(), leader) else {
            return Err(ClusterError::NotLeader { leader });
        };
        let addr = self.leader_addr(leader)?;
        let deadline = std::time::Duration::from_millis(ADMIN_TIMEOUT_MS);
        match network.admin(leader, &addr, request, deadline).await {
            Ok(Ok(done)) => Ok(done),
            Ok(Err(f)) => Err(remote_error(f)),
            Err(e) => Err(ClusterError::Raft(e.to_string())),
        }
    }

    /// Checks `request` with this node's gate and carries it out here, never forwarding it.
    pub async fn admin_signed_here(&self, request: SignedAdmin) -> Result<String, ClusterError> {
        let Some(gate) = self.admin_gate() else {
            return Err(ClusterError::AdminRefused {
                code: "unknown_admin_key",
                message: "this node takes no admin requests (no admin keys)".into(),
            });
        };
        gate.admit(&request, self.id).await?;
        self.admin_here(request.command).await
    }

    /// Runs an admin command the process itself issues (no operator signature): here if this
    /// node leads or the command is local; a follower answers `not_leader`. Operators' requests
    /// go through [`admin_signed`](Self::admin_signed).
    pub async fn admin(&self, command: AdminCommand) -> Result<String, ClusterError> {
        let leader = self.raft.metrics().borrow().current_leader;
        if !command.needs_leader() || leader == Some(self.id) {
            return self.admin_here(command).await;
        }
        Err(ClusterError::NotLeader { leader })
    }

    /// Runs an admin command on this node, never forwarding it.
    pub async fn admin_here(&self, command: AdminCommand) -> Result<String, ClusterError> {
        let peers = self.peer_network().map(|n| n as &dyn PeerControl);
        run_local(self, command, peers).await
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
