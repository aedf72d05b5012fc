//! What goes wrong in the cluster: [`ClusterError`], with a stable code for every case, and the
//! codes that cross the network (so that a forwarded failure maps back to one of them).

/// Everything that can go wrong starting or driving a node, with a stable code.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error(transparent)]
    Storage(#[from] deai_storage::OpenError),
    #[error("invalid cluster configuration: {0}")]
    Config(String),
    #[error("raft stopped: {0}")]
    Fatal(String),
    #[error("this node is not the leader{}", leader.map(|l| format!("; the leader is node {l}")).unwrap_or_default())]
    NotLeader { leader: Option<deai_storage::NodeId> },
    #[error("raft could not complete the request: {0}")]
    Raft(String),
    /// The write was not sent: the leader this node knows could not be reached.
    #[error("the leader, node {leader}, cannot be reached; nothing was written: {reason}")]
    LeaderUnreachable { leader: deai_storage::NodeId, reason: String },
    #[error("a leader transfer is under way; retry shortly")]
    TransferInProgress,
    /// This node leads but has heard from no quorum for longer than an election takes: it is
    /// most likely cut off, and another node leads or soon will. A write it was holding may
    /// still commit if the quorum comes back (its outcome is unknown; retrying it is safe).
    #[error("this leader has heard from no quorum for {since_ms} ms; ask another node")]
    QuorumLost { since_ms: u64 },
    /// A batch that does not decode; nothing was proposed.
    #[error("malformed batch: {0}")]
    Malformed(#[from] deai_protocol::CodecError),
    /// The node a request was forwarded to failed it; `code` is its code.
    #[error("{message}")]
    Forwarded { code: &'static str, message: String },
    #[error("a batch of {size_bytes} bytes exceeds the log command limit of {limit_bytes} bytes; split it")]
    TooLarge { size_bytes: usize, limit_bytes: usize },
    /// An admin request the executing node refused: unsigned, stale, unknown key, replayed...
    #[error("{message}")]
    AdminRefused { code: &'static str, message: String },
}

/// Every code an [`AdminGate`](crate::control::AdminGate) refuses with (their HTTP statuses are
/// in the API's code list, `deai_api::codes`).
pub const ADMIN_REFUSAL_CODES: &[&str] = &[
    "unsigned",
    "malformed_signature",
    "stale_request",
    "unknown_admin_key",
    "bad_signature",
    "replay",
    "wrong_node",
    "admin_mismatch",
];

/// `code` as one of [`ADMIN_REFUSAL_CODES`], if it is one.
pub fn admin_refusal(code: &str) -> Option<&'static str> {
    ADMIN_REFUSAL_CODES.iter().find(|c| **c == code).copied()
}

/// Every code [`ClusterError::code`] can return, so that a code that crossed the network maps
/// back to one of them.
pub const ERROR_CODES: &[&str] = &[
    "cluster_config",
    "raft_fatal",
    "not_leader",
    "raft_error",
    "batch_too_large",
    "leader_transfer",
    "leader_unreachable",
    "quorum_lost",
    "storage_open_failed",
    "storage_damaged",
    "storage_snapshot_unreadable",
    "storage_bad_genesis",
];

impl ClusterError {
    /// Whether retrying later may succeed: leadership moving, a peer unreachable, a forwarded
    /// request failing on the way. Configuration, storage and fatal errors are not transient.
    pub fn is_transient(&self) -> bool {
        match self {
            ClusterError::NotLeader { .. }
            | ClusterError::Raft(_)
            | ClusterError::LeaderUnreachable { .. }
            | ClusterError::QuorumLost { .. }
            | ClusterError::TransferInProgress => true,
            ClusterError::Forwarded { code, .. } => {
                matches!(*code, "not_leader" | "raft_error" | "leader_unreachable" | "leader_transfer" | "quorum_lost")
            }
            ClusterError::Storage(_)
            | ClusterError::Config(_)
            | ClusterError::Fatal(_)
            | ClusterError::TooLarge { .. }
            | ClusterError::AdminRefused { .. }
            | ClusterError::Malformed(_) => false,
        }
    }

    /// The same error for another caller of a shared proposal (storage errors, which never come
    /// from a proposal, become `Fatal` with their text).
    pub fn clone_for_caller(&self) -> ClusterError {
        match self {
            ClusterError::Storage(e) => ClusterError::Fatal(e.to_string()),
            ClusterError::Config(s) => ClusterError::Config(s.clone()),
            ClusterError::Fatal(s) => ClusterError::Fatal(s.clone()),
            ClusterError::NotLeader { leader } => ClusterError::NotLeader { leader: *leader },
            ClusterError::Raft(s) => ClusterError::Raft(s.clone()),
            ClusterError::TooLarge { size_bytes, limit_bytes } => {
                ClusterError::TooLarge { size_bytes: *size_bytes, limit_bytes: *limit_bytes }
            }
            ClusterError::LeaderUnreachable { leader, reason } => {
                ClusterError::LeaderUnreachable { leader: *leader, reason: reason.clone() }
            }
            ClusterError::TransferInProgress => ClusterError::TransferInProgress,
            ClusterError::QuorumLost { since_ms } => ClusterError::QuorumLost { since_ms: *since_ms },
            ClusterError::Forwarded { code, message } => ClusterError::Forwarded { code, message: message.clone() },
            ClusterError::Malformed(e) => ClusterError::Forwarded { code: e.code(), message: e.to_string() },
            ClusterError::AdminRefused { code, message } => {
                ClusterError::AdminRefused { code, message: message.clone() }
            }
        }
    }

    /// Stable code for logs and the API.
    pub fn code(&self) -> &'static str {
        match self {
            ClusterError::Storage(e) => e.code(),
            ClusterError::Config(_) => "cluster_config",
            ClusterError::Fatal(_) => "raft_fatal",
            ClusterError::NotLeader { .. } => "not_leader",
            ClusterError::Raft(_) => "raft_error",
            ClusterError::TooLarge { .. } => "batch_too_large",
            ClusterError::TransferInProgress => "leader_transfer",
            ClusterError::LeaderUnreachable { .. } => "leader_unreachable",
            ClusterError::QuorumLost { .. } => "quorum_lost",
            ClusterError::Forwarded { code, .. } => code,
            ClusterError::Malformed(e) => e.code(),
            ClusterError::AdminRefused { code, .. } => code,
        }
    }
}
