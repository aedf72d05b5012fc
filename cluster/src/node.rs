//! One coordinator: an openraft node whose log and state machine are `deai-storage`'s.

use crate::ClusterError;
use deai_protocol::ledger::Entry;
use deai_protocol::Genesis;
use deai_storage::{CommandOutcome, LogCommand, NodeId, SharedLedger, TypeConfig};
use openraft::error::{ClientWriteError, RaftError};
use openraft::network::RaftNetworkFactory;
use openraft::{Config, Raft, SnapshotPolicy};
use std::path::Path;
use std::sync::Arc;

/// Timeouts and limits of the Raft layer. Every field has its unit in its name.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub heartbeat_interval_ms: u64,
    pub election_timeout_min_ms: u64,
    pub election_timeout_max_ms: u64,
    /// Most log entries in one append request.
    pub max_payload_entries: u64,
    /// Build a snapshot after this many log entries since the last one.
    pub snapshot_every_entries: u64,
    /// Keep this many applied entries in the log after a snapshot, for lagging followers.
    pub max_in_snapshot_log_to_keep: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            heartbeat_interval_ms: 100,
            election_timeout_min_ms: 400,
            election_timeout_max_ms: 800,
            max_payload_entries: 300,
            snapshot_every_entries: 10_000,
            max_in_snapshot_log_to_keep: 1_000,
        }
    }
}

impl ClusterConfig {
    fn raft_config(&self) -> Result<Config, ClusterError> {
        let config = Config {
            cluster_name: "deai".into(),
            heartbeat_interval: self.heartbeat_interval_ms,
            election_timeout_min: self.election_timeout_min_ms,
            election_timeout_max: self.election_timeout_max_ms,
            max_payload_entries: self.max_payload_entries,
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_every_entries),
            max_in_snapshot_log_to_keep: self.max_in_snapshot_log_to_keep,
            ..Config::default()
        };
        config.validate().map_err(|e| ClusterError::Config(e.to_string()))
    }
}

/// A batch the cluster committed: its log index and what applying it did.
#[derive(Clone, Debug)]
pub struct Written {
    pub log_index: u64,
    pub outcome: CommandOutcome,
}

/// How fresh a read must be (SPEC 7: linearizable by default, `?consistency=stale` on request).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Consistency {
    /// Confirms leadership with a quorum (read index) and waits until that index is applied.
    /// Only the leader answers; a follower reports `NotLeader`.
    Linearizable,
    /// This node's ledger as last applied, with no round trip.
    Stale,
}

/// Longest `start` waits for a previous instance in this process to release the database (openraft
/// returns from shutdown before its state-machine task has dropped it), in milliseconds.
pub const DATABASE_RELEASE_WAIT_MS: u64 = 5_000;
/// Pause between attempts to open a database still held by a stopping instance, in milliseconds.
pub const DATABASE_RETRY_DELAY_MS: u64 = 10;

/// Longest a forwarded write may take, in milliseconds.
pub const FORWARD_TIMEOUT_MS: u64 = 5_000;

/// One running coordinator node.
pub struct CoordinatorNode {
    pub id: NodeId,
    pub raft: Raft<TypeConfig>,
    ledger: SharedLedger,
    /// Set when writes reaching this node as a follower are forwarded to the leader over TCP.
    forward_network: Option<String>,
}

impl CoordinatorNode {
    /// Opens the node's database in `data_dir` and starts its Raft. A restarted node keeps its
    /// log, vote and snapshot, and re-applies its committed log.
    pub async fn start<N: RaftNetworkFactory<TypeConfig>>(
        id: NodeId,
        data_dir: &Path,
        genesis: Genesis,
        network: N,
        config: &ClusterConfig,
    ) -> Result<Self, ClusterError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| ClusterError::Config(format!("cannot create data dir {}: {e}", data_dir.display())))?;
        let path = data_dir.join("ledger.redb");
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(DATABASE_RELEASE_WAIT_MS);
        let (log_store, state_machine) = loop {
            match deai_storage::open(&path, genesis.clone()) {
                Err(deai_storage::OpenError::Database { source: redb::DatabaseError::DatabaseAlreadyOpen, .. })
                    if std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(DATABASE_RETRY_DELAY_MS)).await;
                }
                other => break other?,
            }
        };
        let ledger = state_machine.shared_ledger();
        let raft = Raft::new(id, Arc::new(config.raft_config()?), network, log_store, state_machine)
            .await
            .map_err(|e| ClusterError::Fatal(e.to_string()))?;
        Ok(CoordinatorNode { id, raft, ledger, forward_network: None })
    }

    /// The ledger as this node last applied it (a stale read: no leader round trip).
    pub fn ledger(&self) -> &SharedLedger {
        &self.ledger
    }

    /// Replicates one batch of signed entries and returns what applying it did. Only the leader
    /// accepts writes; a follower answers `NotLeader` with the leader's id.
    pub async fn submit(&self, entries: &[Entry]) -> Result<Written, ClusterError> {
        self.submit_command(LogCommand::new(entries)).await
    }

    async fn submit_command(&self, command: LogCommand) -> Result<Written, ClusterError> {
        if command.batch.len() > deai_storage::MAX_LOG_COMMAND_BYTES {
            return Err(ClusterError::TooLarge {
                size_bytes: command.batch.len(),
                limit_bytes: deai_storage::MAX_LOG_COMMAND_BYTES,
            });
        }
        match self.raft.client_write(command).await {
            Ok(response) => Ok(Written { log_index: response.log_id.index, outcome: response.data }),
            Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => {
                Err(ClusterError::NotLeader { leader: f.leader_id })
            }
            Err(e) => Err(ClusterError::Raft(e.to_string())),
        }
    }

    /// Forwards writes that reach this node as a follower to the leader, over the TCP transport
    /// of `network`.
    pub fn forward_writes_over_tcp(&mut self, network: impl Into<String>) {
        self.forward_network = Some(network.into());
    }

    /// Writes a batch through whichever node leads: locally if this node leads, else forwarded
    /// once to the leader (when forwarding is on).
    pub async fn write(&self, entries: &[Entry]) -> Result<Written, ClusterError> {
        let command = LogCommand::new(entries);
        let Some(network) = self.forward_network.as_deref() else { return self.submit_command(command).await };
        // openraft consumes the command, so keep the encoded bytes for a possible forward.
        let leader = match self.submit_command(command.clone()).await {
            Err(ClusterError::NotLeader { leader: Some(leader) }) => leader,
            other => return other,
        };
        let addr = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            m.membership_config.membership().get_node(&leader).map(|n| n.addr.clone())
        }
        .ok_or(ClusterError::NotLeader { leader: Some(leader) })?;
        let deadline = std::time::Duration::from_millis(FORWARD_TIMEOUT_MS);
        match crate::network::tcp::forward_write(&addr, network, self.id, command, deadline).await {
            Ok(Ok((log_index, outcome))) => Ok(Written { log_index, outcome }),
            Ok(Err(f)) if f.code == "not_leader" => Err(ClusterError::NotLeader { leader: f.leader }),
            Ok(Err(f)) => Err(ClusterError::Raft(f.message)),
            Err(e) => Err(ClusterError::Raft(e.to_string())),
        }
    }

    /// Reads the ledger with the given consistency.
    pub async fn read<T>(
        &self,
        consistency: Consistency,
        f: impl FnOnce(&deai_protocol::Ledger) -> T,
    ) -> Result<T, ClusterError> {
        if consistency == Consistency::Linearizable {
            match self.raft.ensure_linearizable().await {
                Ok(_) => {}
                Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                    return Err(ClusterError::NotLeader { leader: f.leader_id })
                }
                Err(e) => return Err(ClusterError::Raft(e.to_string())),
            }
        }
        Ok(f(&self.ledger.read()))
    }

    /// Stops the node's Raft; its data stays on disk.
    pub async fn shutdown(self) -> Result<(), ClusterError> {
        self.raft.shutdown().await.map_err(|e| ClusterError::Fatal(e.to_string()))
    }
}
