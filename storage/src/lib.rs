//! # deai-storage: durable openraft storage for the deai ledger
//!
//! One redb database per coordinator holds everything Raft must not lose: the log, the vote, the
//! committed index, and the latest snapshot of the ledger state machine. Every write that openraft
//! is told is durable has been committed by redb with `Durability::Immediate` (fsync) first;
//! appends are written in one transaction per batch, so one fsync covers many entries.
//!
//! ## Layout
//! - [`TypeConfig`]: the openraft type configuration. A log entry's application data is a
//!   [`LogCommand`]: the codec bytes of a batch of signed protocol entries, applied with
//!   `Ledger::apply_batch` so that every replica verifies the batch exactly as the leader framed
//!   it.
//! - [`RedbLogStore`]: `RaftLogStorage` and `RaftLogReader` over the `logs` and `meta` tables.
//! - [`LedgerStateMachine`]: `RaftStateMachine` holding the in-memory `Ledger`; snapshots are the
//!   ledger's own deterministic snapshot bytes, stored in the `snapshot` table.
//! - [`open`]: opens or creates the database and checks it, with a clear error for files that
//!   are not redb databases or are damaged.
//!
//! We use the stable openraft 0.9 line and its storage v2 traits (`RaftLogStorage` plus
//! `RaftStateMachine`), and openraft's own storage test suite checks them
//! (`tests/openraft_suite.rs`).

// openraft's `StorageError` (fixed by its trait signatures) and our `OpenError` carrying a
// protocol `Rejection` are large; both are cold paths.
#![allow(clippy::result_large_err)]

mod guarded;
mod log_store;
pub mod metrics;
pub mod raft_runtime;
mod state_machine;

pub use guarded::{GuardedLogStore, PURGE_SNAPSHOT_POLL_MS, PURGE_SNAPSHOT_WAIT_MS};
pub use log_store::RedbLogStore;
pub use metrics::StorageMetrics;
pub use state_machine::{EvidenceLog, LedgerSnapshotBuilder, LedgerStateMachine, MisbehaviourEvidence, SharedLedger};

use deai_protocol::ledger::Entry;
use deai_protocol::{codec, CodecError, Genesis, SignedEnvelope};
use redb::{Database, TableDefinition};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::path::Path;
use std::sync::Arc;

openraft::declare_raft_types!(
    /// The openraft type configuration of a deai coordinator cluster.
    pub TypeConfig:
        D = LogCommand,
        R = CommandOutcome,
        AsyncRuntime = raft_runtime::SeededTokio,
);

/// Raft log index, per openraft.
pub type LogIndex = u64;
/// A node's id in the Raft cluster.
pub type NodeId = u64;

/// Log entries by index: bincode of openraft's `Entry<TypeConfig>`.
pub(crate) const LOGS: TableDefinition<u64, &[u8]> = TableDefinition::new("logs");
/// Small records: the vote, the committed log id, the last purged log id.
pub(crate) const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// The latest snapshot: its metadata and the ledger's snapshot bytes.
pub(crate) const SNAPSHOT: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshot");
/// Evidence of coordinator misbehaviour, by `(log index, position in the batch)`.
pub(crate) const EVIDENCE: TableDefinition<(u64, u32), &[u8]> = TableDefinition::new("evidence");

pub(crate) const VOTE_KEY: &str = "vote";
pub(crate) const COMMITTED_KEY: &str = "committed";
pub(crate) const LAST_PURGED_KEY: &str = "last_purged";
pub(crate) const SNAPSHOT_KEY: &str = "current";
/// The current snapshot's metadata alone, so that comparing snapshots reads a few bytes.
pub(crate) const SNAPSHOT_META_KEY: &str = "current_meta";

/// Largest `LogCommand` accepted, in bytes: a batch of envelopes in one log entry.
pub const MAX_LOG_COMMAND_BYTES: usize = codec::MAX_BATCH_BYTES;

/// A log entry's application data: a batch of signed protocol entries in codec framing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogCommand {
    pub batch: Vec<u8>,
}

impl LogCommand {
    /// Frames `entries` for the log.
    pub fn new(entries: &[Entry]) -> Self {
        // A slice encodes exactly as the Vec that `entries()` decodes: no copy of the entries.
        LogCommand { batch: codec::encode_framed(entries) }
    }

    /// The entries this command carries.
    pub fn entries(&self) -> Result<Vec<Entry>, CodecError> {
        if self.batch.len() > MAX_LOG_COMMAND_BYTES {
            return Err(CodecError::TooLarge { size_bytes: self.batch.len(), limit_bytes: MAX_LOG_COMMAND_BYTES });
        }
        codec::decode_framed_large(&self.batch)
    }
}

/// Signed envelopes on their way to the leader, not yet stamped: what a follower forwards over
/// the peer port. Only the leader's batcher stamps time (`docs/decisions.md`, "Ledger time"), so
/// no sender-chosen time reaches the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnstampedBatch {
    pub envelopes: Vec<u8>,
}

/// The most bytes a stamp adds to an envelope in a log command (a varint u64).
pub const MAX_STAMP_BYTES: usize = 9;

impl UnstampedBatch {
    pub fn new(envelopes: &[SignedEnvelope]) -> Self {
        UnstampedBatch { envelopes: codec::encode_framed(envelopes) }
    }

    /// The envelopes, refused whole if the bytes are over the limit or do not decode.
    pub fn envelopes(&self) -> Result<Vec<SignedEnvelope>, CodecError> {
        if self.envelopes.len() > MAX_LOG_COMMAND_BYTES {
            return Err(CodecError::TooLarge { size_bytes: self.envelopes.len(), limit_bytes: MAX_LOG_COMMAND_BYTES });
        }
        codec::decode_framed_large(&self.envelopes)
    }

    /// The size of these envelopes once stamped into a log command, at most.
    pub fn stamped_size_bytes(&self, count: usize) -> usize {
        self.envelopes.len() + count * MAX_STAMP_BYTES
    }
}

/// What applying one log entry did: one outcome per protocol entry of its batch, and the ledger's
/// height and root afterwards.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommandOutcome {
    pub outcomes: Vec<EntryOutcome>,
    pub height: u64,
    pub root: [u8; 32],
}

/// Accepted, or rejected with the protocol's stable code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryOutcome {
    Accepted,
    Rejected { code: String, message: String },
}

/// Why a data directory could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the ledger database at {path}: {source} (is it a deai data directory, and is it intact?)")]
    Database { path: String, source: redb::DatabaseError },
    #[error("the ledger database at {path} is damaged: {detail}")]
    Damaged { path: String, detail: String },
    #[error("the ledger database at {path} holds a snapshot this build cannot read: {source}")]
    Snapshot { path: String, source: CodecError },
    #[error("invalid genesis: {0}")]
    Genesis(deai_protocol::Rejection),
}

impl OpenError {
    /// Stable code for logs and the admin API.
    pub fn code(&self) -> &'static str {
        match self {
            OpenError::Database { .. } => "storage_open_failed",
            OpenError::Damaged { .. } => "storage_damaged",
            OpenError::Snapshot { .. } => "storage_snapshot_unreadable",
            OpenError::Genesis(_) => "storage_bad_genesis",
        }
    }
}

/// Opens (or creates) the coordinator's database at `path` and returns its log store and state
/// machine. The state machine starts from the stored snapshot if there is one, else from
/// `genesis`; openraft then re-applies the committed log after it.
pub fn open(path: &Path, genesis: Genesis) -> Result<(RedbLogStore, LedgerStateMachine), OpenError> {
    open_with_metrics(path, genesis, StorageMetrics::default())
}

/// [`open`], reporting to `metrics`.
pub fn open_with_metrics(
    path: &Path,
    genesis: Genesis,
    metrics: StorageMetrics,
) -> Result<(RedbLogStore, LedgerStateMachine), OpenError> {
    let shown = path.display().to_string();
    let db = Database::create(path).map_err(|source| OpenError::Database { path: shown.clone(), source })?;
    open_database(db, shown, genesis, metrics)
}

/// [`open_with_metrics`] on a storage backend of the caller's instead of a file: the
/// simulation's disk, which can lose and tear what was never synced. `name` names it in errors.
pub fn open_on_backend(
    backend: impl redb::StorageBackend,
    name: &str,
    genesis: Genesis,
    metrics: StorageMetrics,
) -> Result<(RedbLogStore, LedgerStateMachine), OpenError> {
    let db = redb::Builder::new()
        .create_with_backend(backend)
        .map_err(|source| OpenError::Database { path: name.to_string(), source })?;
    open_database(db, name.to_string(), genesis, metrics)
}

fn open_database(
    db: Database,
    shown: String,
    genesis: Genesis,
    metrics: StorageMetrics,
) -> Result<(RedbLogStore, LedgerStateMachine), OpenError> {
    let damaged = |e: &dyn std::fmt::Display| OpenError::Damaged { path: shown.clone(), detail: e.to_string() };
    // Create every table up front, so readers never meet a missing one.
    let txn = db.begin_write().map_err(|e| damaged(&e))?;
    txn.open_table(LOGS).map_err(|e| damaged(&e))?;
    txn.open_table(META).map_err(|e| damaged(&e))?;
    txn.open_table(SNAPSHOT).map_err(|e| damaged(&e))?;
    txn.open_table(EVIDENCE).map_err(|e| damaged(&e))?;
    txn.commit().map_err(|e| damaged(&e))?;
    let db = Arc::new(db);
    let log_store = RedbLogStore::new(db.clone(), metrics.clone());
    log_store.check().map_err(|e| damaged(&e))?;
    let state_machine = LedgerStateMachine::open(db, genesis, &shown, metrics)?;
    Ok((log_store, state_machine))
}

/// bincode (serde) encoding of openraft's types, behind the codec's version byte: the one
/// format for openraft's records, on disk and on the wire between coordinators.
pub fn encode_raft<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = vec![codec::CODEC_VERSION];
    out.extend(bincode::serde::encode_to_vec(value, bincode::config::standard()).expect("encoding into memory"));
    out
}

/// Decodes a log or metadata record, bounded by [`MAX_LOG_COMMAND_BYTES`].
pub(crate) fn decode_raft<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    decode_raft_limited::<T, MAX_LOG_COMMAND_BYTES>(bytes)
}

/// Decodes a stored snapshot, bounded by the codec's snapshot limit (a ledger of a million
/// cycles is hundreds of megabytes).
pub(crate) fn decode_raft_snapshot<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    decode_raft_limited::<T, { codec::MAX_SNAPSHOT_BYTES }>(bytes)
}

/// Decodes a record made by [`encode_raft`], refusing anything over `LIMIT` bytes of payload.
pub fn decode_raft_limited<T: for<'de> Deserialize<'de>, const LIMIT: usize>(bytes: &[u8]) -> Result<T, String> {
    let (&version, body) = bytes.split_first().ok_or("empty record")?;
    if version != codec::CODEC_VERSION {
        return Err(format!("record version {version}, this build reads {}", codec::CODEC_VERSION));
    }
    let config = bincode::config::standard().with_limit::<LIMIT>();
    let (value, used) = bincode::serde::decode_from_slice(body, config).map_err(|e| e.to_string())?;
    if used != body.len() {
        return Err(format!("{} trailing bytes", body.len() - used));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use deai_protocol::message::{Message, Tick};
    use deai_protocol::types::NetworkId;

    #[test]
    fn a_stamp_adds_at_most_max_stamp_bytes_to_a_batch() {
        let key = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
        let network = NetworkId("deai-stamp".into());
        let envelopes: Vec<SignedEnvelope> =
            (1..=3).map(|n| SignedEnvelope::seal(&key, &network, n, &Message::Tick(Tick {}))).collect();
        let unstamped = UnstampedBatch::new(&envelopes);
        assert_eq!(unstamped.envelopes().unwrap(), envelopes);
        let stamped: Vec<Entry> =
            envelopes.into_iter().map(|envelope| Entry { stamped_ms: u64::MAX, envelope }).collect();
        assert!(LogCommand::new(&stamped).batch.len() <= unstamped.stamped_size_bytes(3));
    }
}
