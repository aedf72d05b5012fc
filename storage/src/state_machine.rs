//! The ledger as openraft's state machine (storage v2 `RaftStateMachine`), with durable snapshots.
//!
//! The ledger lives in memory. A snapshot is the ledger's own deterministic snapshot bytes plus
//! openraft's metadata (last applied log id, membership), written to the `snapshot` table in one
//! durable transaction. At start the state machine restores the stored snapshot, if any, and
//! openraft re-applies the committed log after it.

use crate::metrics::StorageMetrics;
use crate::{
    decode_raft, decode_raft_snapshot, encode_raft, CommandOutcome, EntryOutcome, OpenError, TypeConfig, EVIDENCE,
    SNAPSHOT, SNAPSHOT_KEY, SNAPSHOT_META_KEY,
};
use deai_protocol::{Genesis, Ledger};
use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, SnapshotMeta, StorageError, StorageIOError,
    StoredMembership,
};
use redb::{Database, ReadableDatabase, ReadableTable};
use serde::{Deserialize, Serialize};
use std::io::Cursor;
use std::sync::{Arc, RwLock, RwLockReadGuard};

/// A read handle on the replicated ledger, shared with the state machine that writes it.
///
/// Besides the ledger it carries one change signal: the ledger's height, published once per
/// group of entries the state machine applies (and on a snapshot install). Readers waiting for
/// something to happen (long polls, the scheduler, miner sessions) wait on it instead of on
/// openraft's metrics, which change several times per log entry (appended, committed,
/// replicated, applied) and would wake every waiter each time.
#[derive(Clone)]
pub struct SharedLedger {
    ledger: Arc<RwLock<Ledger>>,
    height: Arc<tokio::sync::watch::Sender<u64>>,
}

impl SharedLedger {
    fn new(ledger: Ledger) -> Self {
        let (height, _) = tokio::sync::watch::channel(ledger.height);
        SharedLedger { ledger: Arc::new(RwLock::new(ledger)), height: Arc::new(height) }
    }

    /// The ledger as of the last applied entry. A writer that panicked mid-apply poisons the
    /// lock; that is a bug, and reading on would serve a half-applied state, so it panics too.
    pub fn read(&self) -> RwLockReadGuard<'_, Ledger> {
        self.ledger.read().expect("the state machine panicked while applying")
    }

    /// The ledger's height, changed (and waiters woken) when applied entries change the state.
    pub fn changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.height.subscribe()
    }

    fn publish(&self) {
        let height = self.read().height;
        self.height.send_if_modified(|published| std::mem::replace(published, height) != height);
    }
}

type NodeId = crate::NodeId;

/// A coordinator-signed entry that every replica proved wrong (SPEC 6.2): the entry itself is
/// the proof, since it carries the coordinator's signature.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MisbehaviourEvidence {
    pub log_index: u64,
    /// Position of the entry in its log command's batch.
    pub position: u32,
    pub coordinator: [u8; 32],
    /// The rejection's stable code (`allocation_mismatch`, `payout_mismatch`, `bad_vrf_proof`).
    pub code: String,
    pub message: String,
    /// The signed entry, in codec framing.
    pub entry: Vec<u8>,
}

/// Reads the stored evidence; usable after openraft has taken the state machine.
#[derive(Clone)]
pub struct EvidenceLog {
    db: Arc<Database>,
}

impl EvidenceLog {
    /// Every record, oldest first.
    pub fn list(&self) -> Result<Vec<MisbehaviourEvidence>, String> {
        let txn = self.db.begin_read().map_err(|e| e.to_string())?;
        let table = txn.open_table(EVIDENCE).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for row in table.range::<(u64, u32)>(..).map_err(|e| e.to_string())? {
            let (_, bytes) = row.map_err(|e| e.to_string())?;
            out.push(decode_raft(bytes.value())?);
        }
        Ok(out)
    }
}

/// What the `snapshot` table stores.
#[derive(Serialize, Deserialize)]
struct StoredSnapshot {
    meta: SnapshotMeta<NodeId, BasicNode>,
    /// `Ledger::snapshot()` bytes.
    data: Vec<u8>,
}

fn io_err(e: impl std::fmt::Display) -> AnyError {
    AnyError::error(e.to_string())
}

/// The replicated ledger and what openraft needs to know about it.
pub struct LedgerStateMachine {
    db: Arc<Database>,
    ledger: SharedLedger,
    last_applied: Option<LogId<NodeId>>,
    membership: StoredMembership<NodeId, BasicNode>,
    /// Snapshots built so far, for unique snapshot ids.
    snapshots_built: u64,
    metrics: StorageMetrics,
}

impl LedgerStateMachine {
    pub(crate) fn open(
        db: Arc<Database>,
        genesis: Genesis,
        path: &str,
        metrics: StorageMetrics,
    ) -> Result<Self, OpenError> {
        let stored = read_stored(&db).map_err(|detail| OpenError::Damaged { path: path.to_string(), detail })?;
        let mut ledger = Ledger::new(genesis).map_err(OpenError::Genesis)?;
        let (mut last_applied, mut membership) = (None, StoredMembership::default());
        if let Some(s) = stored {
            ledger =
                Ledger::restore(&s.data).map_err(|source| OpenError::Snapshot { path: path.to_string(), source })?;
            last_applied = s.meta.last_log_id;
            membership = s.meta.last_membership;
        }
        Ok(LedgerStateMachine {
            db,
            ledger: SharedLedger::new(ledger),
            last_applied,
            membership,
            snapshots_built: 0,
            metrics,
        })
    }

    /// The ledger as of the last applied entry.
    pub fn ledger(&self) -> RwLockReadGuard<'_, Ledger> {
        self.ledger.read()
    }

    /// A handle on the stored misbehaviour evidence.
    pub fn evidence_log(&self) -> EvidenceLog {
        EvidenceLog { db: self.db.clone() }
    }

    /// A handle that keeps reading the ledger after openraft takes the state machine.
    pub fn shared_ledger(&self) -> SharedLedger {
        self.ledger.clone()
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Ledger> {
        self.ledger.ledger.write().expect("the state machine panicked while applying")
    }

    fn apply_command(&mut self, log_index: u64, command: &crate::LogCommand) -> Result<CommandOutcome, redb::Error> {
        let mut evidence = Vec::new();
        let outcomes = match command.entries() {
            // Every replica decodes the same bytes the same way, so a malformed command is a
            // deterministic rejection, not a crash.
            Err(e) => vec![EntryOutcome::Rejected { code: e.code().to_string(), message: e.to_string() }],
            Ok(entries) => {
                let results = self.write().apply_batch(&entries);
                results
                    .into_iter()
                    .enumerate()
                    .map(|(position, r)| match r {
                        Ok(effects) => {
                            let formed = effects
                                .events
                                .iter()
                                .filter(|e| matches!(e, deai_protocol::ledger::Event::CertificateFormed { .. }))
                                .count();
                            self.metrics.certificates_formed.inc_by(formed as u64);
                            EntryOutcome::Accepted
                        }
                        Err(rej) => {
                            if let Some(coordinator) = rej.misbehaving_coordinator() {
                                evidence.push(MisbehaviourEvidence {
                                    log_index,
                                    position: position as u32,
                                    coordinator: coordinator.0,
                                    code: rej.code().to_string(),
                                    message: rej.to_string(),
                                    entry: deai_protocol::codec::encode_framed(&entries[position]),
                                });
                            }
                            EntryOutcome::Rejected { code: rej.code().to_string(), message: rej.to_string() }
                        }
                    })
                    .collect()
            }
        };
        if !evidence.is_empty() {
            self.metrics.misbehaviour_evidence.inc_by(evidence.len() as u64);
            let txn = self.db.begin_write()?;
            {
                let mut table = txn.open_table(EVIDENCE)?;
                for e in &evidence {
                    table.insert((e.log_index, e.position), encode_raft(e).as_slice())?;
                }
            }
            self.metrics.commit(txn)?;
        }
        let ledger = self.ledger();
        Ok(CommandOutcome { outcomes, height: ledger.height, root: ledger.root })
    }

    fn empty_outcome(&self) -> CommandOutcome {
        let ledger = self.ledger();
        CommandOutcome { outcomes: Vec::new(), height: ledger.height, root: ledger.root }
    }

    fn persist(&self, stored: &StoredSnapshot) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        {
            let mut table = txn.open_table(SNAPSHOT)?;
            table.insert(SNAPSHOT_KEY, encode_raft(stored).as_slice())?;
            table.insert(SNAPSHOT_META_KEY, encode_raft(&stored.meta).as_slice())?;
        }
        self.metrics.commit(txn)?;
        Ok(())
    }
}

fn read_stored(db: &Database) -> Result<Option<StoredSnapshot>, String> {
    let txn = db.begin_read().map_err(|e| e.to_string())?;
    let table = txn.open_table(SNAPSHOT).map_err(|e| e.to_string())?;
    match table.get(SNAPSHOT_KEY).map_err(|e| e.to_string())? {
        Some(bytes) => decode_raft_snapshot(bytes.value()).map(Some).map_err(|e| format!("snapshot record: {e}")),
        None => Ok(None),
    }
}

/// Builds a snapshot from ledger bytes taken when openraft asked for a builder.
pub struct LedgerSnapshotBuilder {
    db: Arc<Database>,
    metrics: StorageMetrics,
    /// When openraft asked for the builder: the ledger bytes were taken then.
    started: std::time::Instant,
    meta: SnapshotMeta<NodeId, BasicNode>,
    data: Vec<u8>,
}

impl RaftSnapshotBuilder<TypeConfig> for LedgerSnapshotBuilder {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<NodeId>> {
        let stored = StoredSnapshot { meta: self.meta.clone(), data: std::mem::take(&mut self.data) };
        // openraft builds snapshots in the background; a snapshot installed from the leader
        // meanwhile may be newer. Never replace a newer stored snapshot with an older one.
        let result: Result<(), redb::Error> = (|| {
            let txn = self.db.begin_write()?;
            {
                let mut table = txn.open_table(SNAPSHOT)?;
                let newer_stored = match table.get(SNAPSHOT_META_KEY)? {
                    Some(bytes) => decode_raft::<SnapshotMeta<NodeId, BasicNode>>(bytes.value())
                        .map(|meta| meta.last_log_id > stored.meta.last_log_id)
                        .unwrap_or(false),
                    None => false,
                };
                if !newer_stored {
                    table.insert(SNAPSHOT_KEY, encode_raft(&stored).as_slice())?;
                    table.insert(SNAPSHOT_META_KEY, encode_raft(&stored.meta).as_slice())?;
                }
            }
            self.metrics.commit(txn)?;
            Ok(())
        })();
        result.map_err(|e| StorageIOError::write_snapshot(Some(stored.meta.signature()), io_err(e)))?;
        self.metrics.snapshots_built.inc();
        self.metrics.snapshot_build_seconds.observe(self.started.elapsed().as_secs_f64());
        Ok(Snapshot { meta: stored.meta, snapshot: Box::new(Cursor::new(stored.data)) })
    }
}

impl RaftStateMachine<TypeConfig> for LedgerStateMachine {
    type SnapshotBuilder = LedgerSnapshotBuilder;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<NodeId>>, StoredMembership<NodeId, BasicNode>), StorageError<NodeId>> {
        Ok((self.last_applied, self.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<CommandOutcome>, StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut responses = Vec::new();
        for entry in entries {
            self.last_applied = Some(entry.log_id);
            let outcome = match &entry.payload {
                EntryPayload::Blank => self.empty_outcome(),
                EntryPayload::Normal(command) => {
                    let _timer = self.metrics.apply_seconds.start_timer();
                    self.apply_command(entry.log_id.index, command)
                        .map_err(|e| StorageIOError::write_state_machine(io_err(e)))?
                }
                EntryPayload::Membership(m) => {
                    self.membership = StoredMembership::new(Some(entry.log_id), m.clone());
                    self.empty_outcome()
                }
            };
            responses.push(outcome);
        }
        self.ledger.publish();
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.snapshots_built += 1;
        let started = std::time::Instant::now();
        let index = self.last_applied.map(|l| l.index).unwrap_or(0);
        let (root, data) = {
            let ledger = self.ledger();
            (ledger.root[..6].iter().map(|b| format!("{b:02x}")).collect::<String>(), ledger.snapshot())
        };
        LedgerSnapshotBuilder {
            db: self.db.clone(),
            metrics: self.metrics.clone(),
            started,
            meta: SnapshotMeta {
                last_log_id: self.last_applied,
                last_membership: self.membership.clone(),
                snapshot_id: format!("{index}-{root}-{}", self.snapshots_built),
            },
            data,
        }
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<NodeId>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    /// Installs a snapshot from the leader: the bytes must restore to a ledger that passes its
    /// invariants, or the install fails and nothing changes.
    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<NodeId, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<NodeId>> {
        let data = snapshot.into_inner();
        let ledger =
            Ledger::restore(&data).map_err(|e| StorageIOError::read_snapshot(Some(meta.signature()), io_err(e)))?;
        let stored = StoredSnapshot { meta: meta.clone(), data };
        self.persist(&stored).map_err(|e| StorageIOError::write_snapshot(Some(meta.signature()), io_err(e)))?;
        *self.write() = ledger;
        self.ledger.publish();
        self.metrics.snapshots_installed.inc();
        self.last_applied = meta.last_log_id;
        self.membership = meta.last_membership.clone();
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<TypeConfig>>, StorageError<NodeId>> {
        let stored = read_stored(&self.db).map_err(|e| StorageIOError::read_snapshot(None, io_err(e)))?;
        Ok(stored.map(|s| Snapshot { meta: s.meta, snapshot: Box::new(Cursor::new(s.data)) }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A snapshot built before a newer one was installed must not replace it on disk.
    #[tokio::test]
    async fn an_older_build_never_overwrites_a_newer_installed_snapshot() {
        use openraft::{CommittedLeaderId, LogId};
        let dir = tempfile::tempdir().unwrap();
        let genesis = deai_protocol::testkit::test_genesis(3);
        let (_, mut sm) = crate::open(&dir.path().join("l.redb"), genesis).unwrap();
        let mut older = sm.get_snapshot_builder().await; // captured at last_applied = None
        let newer = SnapshotMeta {
            last_log_id: Some(LogId::new(CommittedLeaderId::new(1, 0), 50)),
            last_membership: StoredMembership::default(),
            snapshot_id: "newer".into(),
        };
        let bytes = sm.ledger().snapshot();
        sm.install_snapshot(&newer, Box::new(Cursor::new(bytes))).await.unwrap();
        older.build_snapshot().await.unwrap();
        let current = sm.get_current_snapshot().await.unwrap().expect("a snapshot");
        assert_eq!(current.meta.snapshot_id, "newer");
    }

    /// Snapshots outgrow the log-record limit long before a million cycles; they must still load.
    #[test]
    fn snapshot_records_larger_than_a_log_record_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let db = Database::create(dir.path().join("s.redb")).unwrap();
        let txn = db.begin_write().unwrap();
        txn.open_table(SNAPSHOT).unwrap();
        txn.commit().unwrap();
        let data: Vec<u8> = (0..crate::MAX_LOG_COMMAND_BYTES + 1_000_000).map(|i| (i % 251) as u8).collect();
        let stored = StoredSnapshot {
            meta: SnapshotMeta {
                last_log_id: None,
                last_membership: StoredMembership::default(),
                snapshot_id: "s".into(),
            },
            data: data.clone(),
        };
        let txn = db.begin_write().unwrap();
        txn.open_table(SNAPSHOT).unwrap().insert(SNAPSHOT_KEY, encode_raft(&stored).as_slice()).unwrap();
        txn.commit().unwrap();
        let back = read_stored(&db).unwrap().expect("stored");
        assert_eq!(back.data, data);
    }
}
