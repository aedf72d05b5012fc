//! A coordinator's Prometheus metrics.
//!
//! One [`NodeMetrics`] per node owns a registry. Raft state (term, leadership, log indexes) is
//! copied from openraft's metrics channel by [`watch_raft`]; ledger figures (height, checkpoint
//! lag, divergences) are read from the ledger when scraped; storage timings come from
//! `deai-storage`. The series names are stable: dashboards and alert rules depend on them.

use deai_storage::{NodeId, SharedLedger, StorageMetrics, TypeConfig};
use openraft::{Raft, ServerState};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

/// Round-trip buckets for RPCs between coordinators, in seconds: 100 µs to 5 s.
const RTT_BUCKETS_SECONDS: &[f64] =
    &[0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0];

/// A follower applying more than this many entries behind the commit index is not ready
/// (`CoordinatorNode::readiness`).
pub const READY_MAX_APPLY_LAG_ENTRIES: u64 = 1_000;

/// Every series a coordinator exports.
#[derive(Clone)]
pub struct NodeMetrics {
    registry: Registry,
    pub storage: StorageMetrics,
    pub term: IntGauge,
    pub is_leader: IntGauge,
    pub leader_changes: IntCounter,
    pub applied_index: IntGauge,
    pub last_log_index: IntGauge,
    pub members: IntGaugeVec,
    pub proposals_committed: IntCounter,
    pub proposals_failed: IntCounter,
    pub proposals_pending: IntGauge,
    /// Leadership checks for linearizable reads that missed a quorum and were asked again.
    pub read_quorum_retries: IntCounter,
    /// The leader's own entries planned at the head of a batch, by outcome.
    pub batch_heads: IntCounterVec,
    /// Round trip of one RPC to a peer, by peer id and RPC kind.
    pub peer_round_trip_seconds: HistogramVec,
    /// Peer connections and requests refused at the trust boundary, by reason.
    pub peer_refusals: IntCounterVec,
    pub ledger_height: IntGauge,
    pub checkpoint_lag: IntGauge,
    pub last_certified_height: IntGauge,
    pub divergences: IntGauge,
}

fn gauge(name: &str, help: &str) -> IntGauge {
    IntGauge::new(name, help).expect("valid gauge options")
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("valid counter options")
}

fn clamp(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl NodeMetrics {
    /// Fresh series in a registry of their own, labelled with the node id.
    pub fn new(node: NodeId) -> Self {
        let labels = std::iter::once(("node".to_string(), node.to_string())).collect();
        let registry = Registry::new_custom(None, Some(labels)).expect("valid registry labels");
        let metrics = NodeMetrics {
            registry,
            storage: StorageMetrics::default(),
            term: gauge("deai_raft_term", "Current Raft term."),
            is_leader: gauge("deai_raft_is_leader", "1 while this node is the Raft leader."),
            leader_changes: counter("deai_raft_leader_changes_total", "Times this node saw the leader change."),
            applied_index: gauge("deai_raft_applied_index", "Highest log index applied to the ledger."),
            last_log_index: gauge("deai_raft_last_log_index", "Highest log index in this node's log."),
            members: IntGaugeVec::new(Opts::new("deai_raft_members", "Cluster members by role."), &["role"])
                .expect("valid gauge options"),
            proposals_committed: counter(
                "deai_raft_proposals_committed_total",
                "Batches proposed on this node and committed.",
            ),
            proposals_failed: counter("deai_raft_proposals_failed_total", "Batches proposed on this node that failed."),
            proposals_pending: gauge("deai_raft_proposals_pending", "Batches proposed on this node, not yet answered."),
            batch_heads: IntCounterVec::new(
                Opts::new(
                    "deai_raft_batch_heads_total",
                    "The leader's own entries (allocations) planned at the head of a batch, by outcome: \
                     accepted, rejected (a bug: the plan is made from the ledger it applies to) or failed.",
                ),
                &["outcome"],
            )
            .expect("valid metric"),
            peer_round_trip_seconds: HistogramVec::new(
                HistogramOpts::new("deai_raft_peer_round_trip_seconds", "Round trip of one RPC to a peer.")
                    .buckets(RTT_BUCKETS_SECONDS.to_vec()),
                &["peer", "rpc"],
            )
            .expect("valid histogram options"),
            peer_refusals: IntCounterVec::new(
                Opts::new(
                    "deai_raft_peer_refusals_total",
                    "Peer connections and requests refused: handshake, not_member, impersonation, busy, budget, request.",
                ),
                &["reason"],
            )
            .expect("valid metric"),
            read_quorum_retries: counter(
                "deai_raft_read_quorum_retries_total",
                "Leadership checks for linearizable reads that missed a quorum and were asked again.",
            ),
            ledger_height: gauge("deai_ledger_height", "Accepted entries in the ledger."),
            checkpoint_lag: gauge(
                "deai_bft_checkpoint_lag_entries",
                "Ledger height minus the height of the last quorum certificate (SPEC 6.3).",
            ),
            last_certified_height: gauge("deai_bft_last_certified_height", "Height of the last quorum certificate."),
            divergences: gauge(
                "deai_bft_divergences_detected",
                "Checkpoint signatures over a root other than the ledger's, recorded as evidence (SPEC 6.3).",
            ),
        };
        metrics.register_all().expect("series names are unique");
        metrics
    }

    fn register_all(&self) -> prometheus::Result<()> {
        self.storage.register(&self.registry)?;
        let r = &self.registry;
        r.register(Box::new(self.term.clone()))?;
        r.register(Box::new(self.is_leader.clone()))?;
        r.register(Box::new(self.leader_changes.clone()))?;
        r.register(Box::new(self.applied_index.clone()))?;
        r.register(Box::new(self.last_log_index.clone()))?;
        r.register(Box::new(self.members.clone()))?;
        r.register(Box::new(self.proposals_committed.clone()))?;
        r.register(Box::new(self.proposals_failed.clone()))?;
        r.register(Box::new(self.proposals_pending.clone()))?;
        r.register(Box::new(self.read_quorum_retries.clone()))?;
        r.register(Box::new(self.batch_heads.clone()))?;
        r.register(Box::new(self.peer_round_trip_seconds.clone()))?;
        r.register(Box::new(self.peer_refusals.clone()))?;
        r.register(Box::new(self.ledger_height.clone()))?;
        r.register(Box::new(self.checkpoint_lag.clone()))?;
        r.register(Box::new(self.last_certified_height.clone()))?;
        r.register(Box::new(self.divergences.clone()))?;
        Ok(())
    }

    /// The registry, for a process that adds series of its own.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Every series in the Prometheus text format, with figures of the node's `ledger` read now.
    pub fn render(&self, ledger: &SharedLedger) -> String {
        {
            let ledger = ledger.read();
            let certified = ledger.last_certificate.as_ref().map(|c| c.height).unwrap_or(0);
            self.ledger_height.set(clamp(ledger.height));
            self.last_certified_height.set(clamp(certified));
            self.checkpoint_lag.set(clamp(ledger.height.saturating_sub(certified)));
            self.divergences.set(clamp(ledger.divergence_count));
        }
        let mut out = Vec::new();
        // Encoding into memory only fails on series with invalid names, which `new` rules out.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Copies openraft's metrics into `metrics` whenever they change, until Raft stops.
pub async fn watch_raft(raft: Raft<TypeConfig>, metrics: NodeMetrics) {
    let mut rx = raft.metrics();
    let mut last_leader = None;
    loop {
        {
            let m = rx.borrow_and_update();
            metrics.term.set(clamp(m.current_term));
            metrics.is_leader.set(i64::from(m.state == ServerState::Leader));
            if m.current_leader != last_leader {
                if m.current_leader.is_some() {
                    metrics.leader_changes.inc();
                }
                last_leader = m.current_leader;
            }
            metrics.applied_index.set(clamp(m.last_applied.map(|l| l.index).unwrap_or(0)));
            metrics.last_log_index.set(clamp(m.last_log_index.unwrap_or(0)));
            let membership = m.membership_config.membership();
            let voters = membership.voter_ids().count();
            let learners = membership.learner_ids().count();
            metrics.members.with_label_values(&["voter"]).set(voters as i64);
            metrics.members.with_label_values(&["learner"]).set(learners as i64);
        }
        if rx.changed().await.is_err() {
            return;
        }
    }
}
