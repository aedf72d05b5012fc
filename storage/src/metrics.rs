//! What the storage layer measures about itself, as Prometheus metrics.
//!
//! The names are part of the operator interface (dashboards and alert rules query them), so they
//! are fixed here and follow Prometheus naming: `deai_<subsystem>_<name>_<unit>`. A
//! [`StorageMetrics`] that was never registered still works; nothing reads it.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntGauge, Registry};

/// Latency buckets for disk work, in seconds: 50 µs to 2.5 s.
const DISK_BUCKETS_SECONDS: &[f64] =
    &[0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5];
/// Buckets for snapshot builds and installs, in seconds: 1 ms to 60 s.
const SNAPSHOT_BUCKETS_SECONDS: &[f64] = &[0.001, 0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0];

/// Handles on every storage metric; clones share the underlying series.
#[derive(Clone)]
pub struct StorageMetrics {
    /// Appending one batch of log entries, fsync included.
    pub log_append_seconds: Histogram,
    /// redb's durable commit (the fsync) alone, for every write transaction.
    pub fsync_seconds: Histogram,
    /// Applying one log entry to the ledger.
    pub apply_seconds: Histogram,
    pub committed_index: IntGauge,
    pub snapshots_built: IntCounter,
    pub snapshot_build_seconds: Histogram,
    pub snapshots_installed: IntCounter,
    pub certificates_formed: IntCounter,
    /// Coordinator entries every replica proved wrong, stored as evidence (SPEC 6.2).
    pub misbehaviour_evidence: IntCounter,
}

fn histogram(name: &str, help: &str, buckets: &[f64]) -> Histogram {
    Histogram::with_opts(HistogramOpts::new(name, help).buckets(buckets.to_vec())).expect("valid histogram options")
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("valid counter options")
}

impl Default for StorageMetrics {
    fn default() -> Self {
        StorageMetrics {
            log_append_seconds: histogram(
                "deai_storage_log_append_duration_seconds",
                "Time to append one batch of Raft log entries, fsync included.",
                DISK_BUCKETS_SECONDS,
            ),
            fsync_seconds: histogram(
                "deai_storage_fsync_duration_seconds",
                "Time of one durable redb commit (fsync).",
                DISK_BUCKETS_SECONDS,
            ),
            apply_seconds: histogram(
                "deai_ledger_apply_duration_seconds",
                "Time to apply one Raft log entry (a batch of signed entries) to the ledger.",
                DISK_BUCKETS_SECONDS,
            ),
            committed_index: IntGauge::new("deai_raft_commit_index", "Highest log index known committed.")
                .expect("valid gauge options"),
            snapshots_built: counter("deai_storage_snapshots_built_total", "Snapshots this node built."),
            snapshot_build_seconds: histogram(
                "deai_storage_snapshot_build_duration_seconds",
                "Time to serialise and store one snapshot.",
                SNAPSHOT_BUCKETS_SECONDS,
            ),
            snapshots_installed: counter(
                "deai_storage_snapshots_installed_total",
                "Snapshots received from a leader and installed.",
            ),
            certificates_formed: counter(
                "deai_bft_certificates_formed_total",
                "Checkpoint quorum certificates this replica saw form (SPEC 6.3).",
            ),
            misbehaviour_evidence: counter(
                "deai_bft_misbehaviour_evidence_total",
                "Coordinator entries proved wrong by replaying them and stored as evidence (SPEC 6.2).",
            ),
        }
    }
}

impl StorageMetrics {
    /// Registers every series in `registry`.
    pub fn register(&self, registry: &Registry) -> prometheus::Result<()> {
        registry.register(Box::new(self.log_append_seconds.clone()))?;
        registry.register(Box::new(self.fsync_seconds.clone()))?;
        registry.register(Box::new(self.apply_seconds.clone()))?;
        registry.register(Box::new(self.committed_index.clone()))?;
        registry.register(Box::new(self.snapshots_built.clone()))?;
        registry.register(Box::new(self.snapshot_build_seconds.clone()))?;
        registry.register(Box::new(self.snapshots_installed.clone()))?;
        registry.register(Box::new(self.certificates_formed.clone()))?;
        registry.register(Box::new(self.misbehaviour_evidence.clone()))?;
        Ok(())
    }

    /// Commits `txn` durably, timing the fsync.
    pub(crate) fn commit(&self, txn: redb::WriteTransaction) -> Result<(), redb::CommitError> {
        let _timer = self.fsync_seconds.start_timer();
        txn.commit()
    }
}
