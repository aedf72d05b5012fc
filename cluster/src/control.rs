//! What one coordinator asks another outside Raft, and what the node checks it with.
//!
//! - Leader-transfer steps ([`ControlRequest`], answered with a [`ControlReply`]), which a
//!   leader sends its peers through a [`PeerControl`] and each peer carries out on its own Raft
//!   with [`handle_control`]. The transfer itself is in [`admin`](crate::admin).
//! - Operators' signed admin requests ([`SignedAdmin`] around an [`AdminCommand`]), carried as
//!   they reached the cluster to the node that carries them out, which checks them with its
//!   [`AdminGate`] first.
//!
//! These are plain messages and traits: the transports carry them, the node holds a gate, and
//! nothing here knows a node.

use crate::ClusterError;
use deai_storage::{NodeId, TypeConfig};
use openraft::{Raft, ServerState};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

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
