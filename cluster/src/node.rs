//! One coordinator: an openraft node whose log and state machine are `deai-storage`'s.

use crate::batcher::WriteBatcher;
use crate::control::AdminGate;
use crate::error::{admin_refusal, ClusterError, ERROR_CODES};
use crate::faults::FaultInjection;
use crate::metrics::NodeMetrics;
use crate::network::tcp::{LinkError, RemoteFailure, TcpNetwork};
pub use crate::raft_write::Written;
use crate::supervision::CriticalTasks;
use deai_clock::SharedClock;
use deai_protocol::message::Message;
use deai_protocol::Genesis;
use deai_protocol::SignedEnvelope;
use deai_storage::{NodeId, SharedLedger, TypeConfig, UnstampedBatch};
use ed25519_dalek::SigningKey;
use openraft::error::RaftError;
use openraft::network::RaftNetworkFactory;
use openraft::raft::AppendEntriesRequest;
use openraft::storage::RaftLogReader;
use openraft::{Config, LogId, Raft, SnapshotPolicy};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Timeouts and limits of the Raft layer. Every field has its unit in its name.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
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
    /// Faults to inject, for fault tests; none by default.
    pub faults: FaultInjection,
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
            faults: FaultInjection::default(),
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
/// Longest the leader keeps asking a quorum to confirm its leadership for one linearizable read,
/// in milliseconds. A heartbeat round that misses a quorum (a follower slow to answer under
/// load, a message lost) is asked again within this budget before the read is refused.
pub const READ_QUORUM_RETRY_MS: u64 = 2_000;
/// Pause between two such rounds, in milliseconds.
pub const READ_QUORUM_RETRY_PAUSE_MS: u64 = 50;
/// Longest a forwarded admin command may take (a learner catching up, a leader transfer), in ms.
pub const ADMIN_TIMEOUT_MS: u64 = 60_000;

/// A failure reported by the node a request was forwarded to, as our own error.
pub(crate) fn remote_error(f: RemoteFailure) -> ClusterError {
    match f.code.as_str() {
        "not_leader" => ClusterError::NotLeader { leader: f.leader },
        "leader_transfer" => ClusterError::TransferInProgress,
        code => match admin_refusal(code) {
            Some(code) => ClusterError::AdminRefused { code, message: f.message },
            None => {
                let code = ERROR_CODES.iter().find(|c| **c == code).copied().unwrap_or("raft_error");
                ClusterError::Forwarded { code, message: f.message }
            }
        },
    }
}

/// One running coordinator node.
pub struct CoordinatorNode {
    pub id: NodeId,
    pub raft: Raft<TypeConfig>,
    ledger: SharedLedger,
    metrics: NodeMetrics,
    batcher: WriteBatcher,
    config: ClusterConfig,
    /// The one clock of this node: its batcher stamps entries with it, and whatever holds the
    /// node reads the time from it.
    clock: SharedClock,
    /// Set while a leader transfer holds writes back (see `admin::transfer_leader`).
    transferring: Arc<AtomicBool>,
    /// Set when writes and admin commands reaching this node as a follower are forwarded to the
    /// leader over TCP.
    forward_network: Option<TcpNetwork>,
    critical: CriticalTasks,
    /// Checks operators' signed admin requests before this node carries one out; none: refused.
    admin_gate: std::sync::Mutex<Option<Arc<dyn AdminGate>>>,
    /// Reads this node's own log, to check what a leader's append would overwrite.
    log_reader: deai_storage::RedbLogStore,
}

/// Ends, a critical failure, when openraft's core stops on an error of its own, such as a log
/// write refused for a full disk: openraft never restarts it, so the node could only refuse
/// everything from then on. The node then exits (see `critical_failure_hold_ms`) and its
/// supervisor starts it again from disk once the cause is gone. A requested shutdown is no
/// failure: the task then waits for the process to end.
async fn raft_core_alive(raft: Raft<TypeConfig>) {
    let mut metrics = raft.metrics();
    loop {
        let stopped = match &metrics.borrow_and_update().running_state {
            Err(openraft::error::Fatal::Stopped) => Some(None),
            Err(fatal) => Some(Some(fatal.to_string())),
            Ok(()) => None,
        };
        match stopped {
            Some(Some(why)) => {
                tracing::error!(error = %why, "the raft core stopped on an error");
                return;
            }
            Some(None) => std::future::pending::<()>().await,
            None => {}
        }
        if metrics.changed().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Counts a proposal as pending while it lives, even if its caller gives up.
struct Pending<'a>(&'a prometheus::IntGauge);

impl<'a> Pending<'a> {
    fn new(gauge: &'a prometheus::IntGauge) -> Self {
        gauge.inc();
        Pending(gauge)
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// Holds writes back while it lives.
pub(crate) struct WritesHeld(Arc<AtomicBool>);

impl Drop for WritesHeld {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

impl CoordinatorNode {
    /// Opens the node's database in `data_dir` and starts its Raft, reading the time from
    /// `clock` (the process's one clock; `deai_clock::system()` in a deployment). A restarted
    /// node keeps its log, vote and snapshot, and re-applies its committed log.
    pub async fn start<N: RaftNetworkFactory<TypeConfig>>(
        id: NodeId,
        data_dir: &Path,
        genesis: Genesis,
        network: N,
        config: &ClusterConfig,
        clock: SharedClock,
    ) -> Result<Self, ClusterError> {
        Self::start_with_metrics(id, data_dir, genesis, network, config, clock, NodeMetrics::new(id)).await
    }

    /// [`start`](Self::start), reporting to `metrics` (whose round-trip series the network may
    /// share).
    pub async fn start_with_metrics<N: RaftNetworkFactory<TypeConfig>>(
        id: NodeId,
        data_dir: &Path,
        genesis: Genesis,
        network: N,
        config: &ClusterConfig,
        clock: SharedClock,
        metrics: NodeMetrics,
    ) -> Result<Self, ClusterError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| ClusterError::Config(format!("cannot create data dir {}: {e}", data_dir.display())))?;
        let path = data_dir.join("ledger.redb");
        let deadline = std::time::Instant::now() + std::time::Duration::from_millis(DATABASE_RELEASE_WAIT_MS);
        let (log_store, state_machine) = loop {
            match deai_storage::open_with_metrics(&path, genesis.clone(), metrics.storage.clone()) {
                Err(deai_storage::OpenError::Database { source: redb::DatabaseError::DatabaseAlreadyOpen, .. })
                    if std::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(std::time::Duration::from_millis(DATABASE_RETRY_DELAY_MS)).await;
                }
                other => break other?,
            }
        };
        Self::start_on_storage(id, (log_store, state_machine), network, config, clock, metrics).await
    }

    /// Starts the node's Raft on storage its caller opened (the simulation's disk); otherwise
    /// as [`start_with_metrics`](Self::start_with_metrics).
    pub async fn start_on_storage<N: RaftNetworkFactory<TypeConfig>>(
        id: NodeId,
        (log_store, state_machine): (deai_storage::RedbLogStore, deai_storage::LedgerStateMachine),
        network: N,
        config: &ClusterConfig,
        clock: SharedClock,
        metrics: NodeMetrics,
    ) -> Result<Self, ClusterError> {
        let ledger = state_machine.shared_ledger();
        let log_reader = log_store.clone();
        let raft = Raft::new(id, Arc::new(config.raft_config()?), network, log_store.guarded(), state_machine)
            .await
            .map_err(|e| ClusterError::Fatal(e.to_string()))?;
        tokio::spawn(crate::metrics::watch_raft(raft.clone(), metrics.clone()));
        let transferring = Arc::<AtomicBool>::default();
        let critical = CriticalTasks::default();
        critical.spawn("raft core", raft_core_alive(raft.clone()));
        let batcher = WriteBatcher::start(
            id,
            raft.clone(),
            ledger.clone(),
            metrics.clone(),
            transferring.clone(),
            &critical,
            clock.clone(),
            &config.faults,
        );
        Ok(CoordinatorNode {
            id,
            raft,
            ledger,
            metrics,
            batcher,
            config: config.clone(),
            clock,
            transferring,
            forward_network: None,
            critical,
            admin_gate: std::sync::Mutex::new(None),
            log_reader,
        })
    }

    /// The tasks this node cannot run without; readiness fails once one has died.
    pub fn critical_tasks(&self) -> &CriticalTasks {
        &self.critical
    }

    pub(crate) fn batcher(&self) -> &WriteBatcher {
        &self.batcher
    }

    /// This node's clock, the one its batcher stamps entries with.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// The timeouts and limits this node runs with.
    pub fn config(&self) -> &ClusterConfig {
        &self.config
    }

    pub(crate) fn hold_writes_for_transfer(&self) -> WritesHeld {
        self.transferring.store(true, Ordering::Release);
        WritesHeld(self.transferring.clone())
    }

    /// This node's metrics.
    pub fn metrics(&self) -> &NodeMetrics {
        &self.metrics
    }

    /// The ledger as this node last applied it (a stale read: no leader round trip).
    pub fn ledger(&self) -> &SharedLedger {
        &self.ledger
    }

    /// Replicates one batch of signed envelopes, stamped with this node's clock by its batcher,
    /// and returns what applying it did. Only the leader accepts writes; a follower answers
    /// `NotLeader` with the leader's id.
    pub async fn submit(&self, envelopes: &[SignedEnvelope]) -> Result<Written, ClusterError> {
        self.submit_batch(&UnstampedBatch::new(envelopes)).await
    }

    pub(crate) async fn submit_batch(&self, batch: &UnstampedBatch) -> Result<Written, ClusterError> {
        self.refuse_while_transferring()?;
        let too_large =
            |size_bytes| ClusterError::TooLarge { size_bytes, limit_bytes: deai_storage::MAX_LOG_COMMAND_BYTES };
        // Refused before decoding: the bytes alone are already too many.
        if batch.envelopes.len() > deai_storage::MAX_LOG_COMMAND_BYTES {
            return Err(too_large(batch.envelopes.len()));
        }
        // A follower that knows the leader says so at once, without queueing.
        let leader = self.raft.metrics().borrow().current_leader;
        if leader.is_some_and(|l| l != self.id) {
            return Err(ClusterError::NotLeader { leader });
        }
        let envelopes = batch.envelopes()?;
        let stamped_bytes = batch.stamped_size_bytes(envelopes.len());
        if stamped_bytes > deai_storage::MAX_LOG_COMMAND_BYTES {
            return Err(too_large(stamped_bytes));
        }
        self.quorum_heard()?;
        let written = self.counted(self.batcher.write(envelopes, stamped_bytes));
        tokio::select! {
            written = written => written,
            lost = self.quorum_lost() => Err(lost),
        }
    }

    /// Refuses at once when this node leads and has heard from no quorum for longer than an
    /// election takes (`election_timeout_max_ms`): it is most likely cut off, and a write it
    /// took would wait for a quorum that is gone.
    fn quorum_heard(&self) -> Result<(), ClusterError> {
        // Two fields read under the borrow: every write passes here, so the metrics are not cloned.
        let (since_quorum_ms, leader) = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            (m.millis_since_quorum_ack, m.current_leader)
        };
        match since_quorum_ms {
            Some(since_ms) if leader == Some(self.id) && since_ms > self.config.election_timeout_max_ms => {
                Err(ClusterError::QuorumLost { since_ms })
            }
            _ => Ok(()),
        }
    }

    /// Resolves when [`quorum_heard`](Self::quorum_heard) starts refusing; checked every
    /// heartbeat, when openraft refreshes the figure.
    async fn quorum_lost(&self) -> ClusterError {
        let every = std::time::Duration::from_millis(self.config.heartbeat_interval_ms.max(1));
        loop {
            tokio::time::sleep(every).await;
            if let Err(lost) = self.quorum_heard() {
                tracing::warn!(error = %lost, "a write is answered: this leader is cut off from its quorum");
                return lost;
            }
        }
    }

    /// Whether this node leads, as far as it knows.
    pub fn leads(&self) -> bool {
        self.raft.metrics().borrow().current_leader == Some(self.id)
    }

    /// Writes this coordinator's own `message`, sealed with `key` by the batcher when its batch
    /// is formed (the caller is the outbox). Only the leader takes it.
    pub async fn write_own(&self, message: Message, key: Arc<SigningKey>) -> Result<Written, ClusterError> {
        self.refuse_while_transferring()?;
        let leader = self.raft.metrics().borrow().current_leader;
        if leader != Some(self.id) {
            return Err(ClusterError::NotLeader { leader });
        }
        self.counted(self.batcher.write_own(message, key)).await
    }

    fn refuse_while_transferring(&self) -> Result<(), ClusterError> {
        match self.transferring.load(Ordering::Acquire) {
            true => Err(ClusterError::TransferInProgress),
            false => Ok(()),
        }
    }

    /// Runs a proposal through the batcher, counted as pending while it lives and as committed
    /// or failed when answered.
    async fn counted(
        &self,
        proposal: impl std::future::Future<Output = Result<Written, ClusterError>>,
    ) -> Result<Written, ClusterError> {
        let _pending = Pending::new(&self.metrics.proposals_pending);
        let result = proposal.await;
        match &result {
            Ok(_) => self.metrics.proposals_committed.inc(),
            Err(ClusterError::NotLeader { .. }) => {}
            Err(_) => self.metrics.proposals_failed.inc(),
        }
        result
    }

    /// Forwards writes and admin commands that reach this node as a follower to the leader, over
    /// `network` (a clone of the node's own, so that they share links).
    pub fn forward_writes_over_tcp(&mut self, network: TcpNetwork) {
        self.forward_network = Some(network);
    }

    /// The link that writes and admin commands reaching this follower go to the leader over,
    /// and a leader's transfer steps go to its peers over; set by
    /// [`forward_writes_over_tcp`](Self::forward_writes_over_tcp).
    pub(crate) fn peer_network(&self) -> Option<&TcpNetwork> {
        self.forward_network.as_ref()
    }

    /// The leader's Raft address, when this node knows the leader and it is another node.
    pub(crate) fn leader_addr(&self, leader: NodeId) -> Result<String, ClusterError> {
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        m.membership_config
            .membership()
            .get_node(&leader)
            .map(|n| n.addr.clone())
            .ok_or(ClusterError::NotLeader { leader: Some(leader) })
    }

    /// Writes a batch through whichever node leads: locally if this node leads, else forwarded
    /// once, unstamped, to the leader (when forwarding is on), whose batcher stamps it.
    pub async fn write(&self, envelopes: &[SignedEnvelope]) -> Result<Written, ClusterError> {
        self.write_batch(UnstampedBatch::new(envelopes)).await
    }

    /// [`write`](Self::write) for an already framed batch.
    pub async fn write_batch(&self, batch: UnstampedBatch) -> Result<Written, ClusterError> {
        let Some(network) = self.forward_network.as_ref() else { return self.submit_batch(&batch).await };
        // Proposing only borrows the batch, so the bytes are still here for a forward.
        let leader = match self.submit_batch(&batch).await {
            Err(ClusterError::NotLeader { leader: Some(leader) }) if leader != self.id => leader,
            other => return other,
        };
        let addr = self.leader_addr(leader)?;
        let deadline = std::time::Duration::from_millis(FORWARD_TIMEOUT_MS);
        let forwarded = tokio::select! {
            forwarded = network.write(leader, &addr, batch, deadline) => forwarded,
            gone = self.leader_gone(leader) => return Err(gone),
        };
        match forwarded {
            Ok(Ok((log_index, outcome))) => Ok(Written { log_index, outcome }),
            Ok(Err(f)) => Err(remote_error(f)),
            Err(e @ (LinkError::Connect { .. } | LinkError::Refused { .. } | LinkError::RequestRefused { .. })) => {
                Err(ClusterError::LeaderUnreachable { leader, reason: e.to_string() })
            }
            Err(e) => Err(ClusterError::Raft(e.to_string())),
        }
    }

    /// Why `rpc` would replace an entry this node holds as committed, if it would: a leader that
    /// asks for that is lying or broken (Raft never rewrites a committed entry), so the append is
    /// refused here rather than handed to openraft, whose core stops on it.
    pub(crate) async fn overwrites_committed(&self, rpc: &AppendEntriesRequest<TypeConfig>) -> Option<String> {
        let committed = u64::try_from(self.metrics.storage.committed_index.get()).unwrap_or(0);
        let claimed: Vec<LogId<NodeId>> = rpc
            .prev_log_id
            .iter()
            .copied()
            .chain(rpc.entries.iter().map(|e| e.log_id))
            .filter(|id| id.index <= committed)
            .collect();
        // The usual append follows on from what this node applied last: nothing to read.
        let last_applied = self.raft.metrics().borrow().last_applied;
        if claimed.len() == 1 && Some(claimed[0]) == last_applied && rpc.prev_log_id == last_applied {
            return None;
        }
        let (first, last) = (claimed.first()?.index, claimed.last()?.index);
        let mut reader = self.log_reader.clone();
        let ours = match reader.try_get_log_entries(first..=last).await {
            Ok(ours) => ours,
            Err(e) => return Some(format!("cannot read this node's own log to check the append: {e}")),
        };
        // Entries already purged into a snapshot are not compared; openraft skips them anyway.
        claimed.iter().find_map(|id| {
            let own = ours.iter().find(|o| o.log_id.index == id.index)?;
            (own.log_id != *id).then(|| {
                format!(
                    "the append puts {id} where this node holds committed {} (commit index {committed})",
                    own.log_id
                )
            })
        })
    }

    /// Has `gate` check every signed admin request this node carries out, until
    /// [`remove_admin_gate`](Self::remove_admin_gate) (a gate may hold the node: call it at stop).
    pub fn install_admin_gate(&self, gate: Arc<dyn AdminGate>) {
        *self.admin_gate.lock().unwrap_or_else(|p| p.into_inner()) = Some(gate);
    }

    pub fn remove_admin_gate(&self) {
        self.admin_gate.lock().unwrap_or_else(|p| p.into_inner()).take();
    }

    /// The gate installed now, if any.
    pub(crate) fn admin_gate(&self) -> Option<Arc<dyn AdminGate>> {
        self.admin_gate.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Why this node is not ready to serve, or `Ok` when it is: no critical task has died, it is
    /// a member of the cluster, knows a leader, and has applied what it knows to be committed
    /// (within [`READY_MAX_APPLY_LAG_ENTRIES`](crate::metrics::READY_MAX_APPLY_LAG_ENTRIES)).
    pub fn readiness(&self) -> Result<(), String> {
        if let Some(failure) = self.critical.failure() {
            return Err(format!("a critical task died: {failure}"));
        }
        let metrics = self.raft.metrics();
        let m = metrics.borrow();
        if m.membership_config.membership().get_node(&self.id).is_none() {
            return Err("not a member of the cluster".into());
        }
        if m.current_leader.is_none() {
            return Err("no known leader".into());
        }
        let committed = u64::try_from(self.metrics.storage.committed_index.get()).unwrap_or(0);
        let applied = m.last_applied.map(|l| l.index).unwrap_or(0);
        if applied.saturating_add(crate::metrics::READY_MAX_APPLY_LAG_ENTRIES) < committed {
            return Err(format!("applied index {applied} is behind the commit index {committed}"));
        }
        Ok(())
    }

    /// Reads the ledger with the given consistency.
    pub async fn read<T>(
        &self,
        consistency: Consistency,
        f: impl FnOnce(&deai_protocol::Ledger) -> T,
    ) -> Result<T, ClusterError> {
        if consistency == Consistency::Linearizable {
            match self.read_index_here().await {
                Ok(_) => {}
                Err(ClusterError::NotLeader { leader: Some(leader) }) if leader != self.id => {
                    self.follow_read_index(leader).await?
                }
                Err(e) => return Err(e),
            }
        }
        Ok(f(&self.ledger.read()))
    }

    /// On the leader: confirms leadership with a quorum and returns the index every
    /// linearizable read must have applied (openraft waits until this node applied it).
    ///
    /// A round that misses a quorum is tried again for up to [`READ_QUORUM_RETRY_MS`]: a read
    /// changes nothing, so asking again is always safe.
    pub(crate) async fn read_index_here(&self) -> Result<u64, ClusterError> {
        let started = tokio::time::Instant::now();
        let budget = std::time::Duration::from_millis(READ_QUORUM_RETRY_MS);
        loop {
            // A leader cut off from its quorum says so at once, rather than asking again.
            self.quorum_heard()?;
            match self.raft.ensure_linearizable().await {
                Ok(index) => return Ok(index.map_or(0, |id| id.index)),
                Err(RaftError::APIError(openraft::error::CheckIsLeaderError::ForwardToLeader(f))) => {
                    return Err(ClusterError::NotLeader { leader: f.leader_id })
                }
                Err(RaftError::APIError(openraft::error::CheckIsLeaderError::QuorumNotEnough(missed)))
                    if started.elapsed() < budget =>
                {
                    tracing::debug!(%missed, "a leadership check missed a quorum; asking again");
                    self.metrics.read_quorum_retries.inc();
                    tokio::time::sleep(std::time::Duration::from_millis(READ_QUORUM_RETRY_PAUSE_MS)).await;
                }
                Err(e) => return Err(ClusterError::Raft(e.to_string())),
            }
        }
    }

    /// On a follower: asks the leader for its read index and waits until this node applied that
    /// far, within [`FORWARD_TIMEOUT_MS`], so that a linearizable read works on any member.
    async fn follow_read_index(&self, leader: NodeId) -> Result<(), ClusterError> {
        let Some(network) = self.forward_network.as_ref() else {
            return Err(ClusterError::NotLeader { leader: Some(leader) });
        };
        let addr = self.leader_addr(leader)?;
        let deadline = std::time::Duration::from_millis(FORWARD_TIMEOUT_MS);
        let asked = tokio::select! {
            asked = network.read_index(leader, &addr, deadline) => asked,
            gone = self.leader_gone(leader) => return Err(gone),
        };
        let index = match asked {
            Ok(Ok(index)) => index,
            Ok(Err(f)) => return Err(remote_error(f)),
            Err(e @ (LinkError::Connect { .. } | LinkError::Refused { .. } | LinkError::RequestRefused { .. })) => {
                return Err(ClusterError::LeaderUnreachable { leader, reason: e.to_string() })
            }
            Err(e) => return Err(ClusterError::Raft(e.to_string())),
        };
        self.raft
            .wait(Some(deadline))
            .applied_index_at_least(Some(index), "linearizable read on a follower")
            .await
            .map(|_| ())
            .map_err(|e| ClusterError::Raft(format!("this node did not apply up to the read index {index}: {e}")))
    }

    /// Resolves when this node stops taking `leader` for the leader (it started an election, or
    /// learned of a newer one): a request forwarded to `leader` and not yet answered would only
    /// wait out its deadline on a link that is likely cut. Its outcome is unknown: a forwarded
    /// write may still commit, which its nonce makes safe to retry.
    async fn leader_gone(&self, leader: NodeId) -> ClusterError {
        let mut metrics = self.raft.metrics();
        loop {
            let current = metrics.borrow_and_update().current_leader;
            if current != Some(leader) {
                return ClusterError::Raft(format!(
                    "node {leader} stopped leading while a forwarded request was under way (now {}); its outcome is unknown",
                    current.map_or("no leader".to_string(), |l| format!("node {l}"))
                ));
            }
            if metrics.changed().await.is_err() {
                return ClusterError::Fatal("raft stopped".into());
            }
        }
    }

    /// Stops the node's Raft; its data stays on disk.
    pub async fn shutdown(self) -> Result<(), ClusterError> {
        self.raft.shutdown().await.map_err(|e| ClusterError::Fatal(e.to_string()))
    }
}
