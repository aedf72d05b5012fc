//! `GuardedLogStore`: the log store a coordinator node hands openraft. It is [`RedbLogStore`]
//! (which keeps openraft's storage contract, and passes openraft's suite) with two orderings
//! that openraft 0.9 leaves to chance made safe across a crash. `deai sim` found both with power
//! cuts, the first also a chaos run with SIGKILL:
//!
//! - **A restarted node never resumes leading on its own.** openraft reads the vote only at
//!   start-up, and a node that finds a committed vote for itself there leads that term again at
//!   once. But a leader sends entries to its followers while its own write of them is under way;
//!   killed before that write lands, it came back leading with a log that lacked entries its
//!   followers held for that term, wrote others at those indexes (which Raft's log matching takes
//!   for equal) and answered linearizable reads without writes it had acknowledged. The vote is
//!   read back uncommitted: it still binds the node to its term and candidate, and the node leads
//!   again only by winning an election, which a node missing committed entries cannot win.
//! - **The log is never purged past the stored snapshot.** After installing a leader's snapshot,
//!   openraft asks for the purge while its state machine task is still storing that snapshot; a
//!   crash between the two left a node with neither the entries nor a snapshot of them, unable
//!   to start. A purge waits for the stored snapshot to cover it, within
//!   [`PURGE_SNAPSHOT_WAIT_MS`]; past it, it fails (a storage error stops the node, which then
//!   restarts consistent) rather than drop what no snapshot holds.

use crate::{NodeId, RedbLogStore, TypeConfig};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use std::fmt::Debug;
use std::ops::RangeBounds;

/// Longest a purge waits for the snapshot that covers it to be stored, in milliseconds.
pub const PURGE_SNAPSHOT_WAIT_MS: u64 = 5_000;
/// Pause between two looks at the stored snapshot, in milliseconds.
pub const PURGE_SNAPSHOT_POLL_MS: u64 = 5;

/// [`RedbLogStore`] with the vote read back uncommitted and purges held behind the stored
/// snapshot.
#[derive(Clone)]
pub struct GuardedLogStore {
    inner: RedbLogStore,
}

impl RedbLogStore {
    /// This store as a coordinator node runs it.
    pub fn guarded(self) -> GuardedLogStore {
        GuardedLogStore { inner: self }
    }
}

impl RaftLogReader<TypeConfig> for GuardedLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        self.inner.try_get_log_entries(range).await
    }
}

impl RaftLogStorage<TypeConfig> for GuardedLogStore {
    type LogReader = RedbLogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        self.inner.get_log_state().await
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.inner.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.inner.save_vote(vote).await
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        Ok(self.inner.read_vote().await?.map(|stored| Vote { committed: false, ..stored }))
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        self.inner.save_committed(committed).await
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        self.inner.read_committed().await
    }

    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        self.inner.append(entries, callback).await
    }

    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.inner.truncate(log_id).await
    }

    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let failed =
            |e: &dyn std::fmt::Display| StorageError::from(StorageIOError::write_logs(AnyError::error(e.to_string())));
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_millis(PURGE_SNAPSHOT_WAIT_MS);
        loop {
            let stored = self.inner.stored_snapshot_index().map_err(|e| failed(&e))?;
            if stored.is_some_and(|index| index >= log_id.index) {
                return self.inner.purge(log_id).await;
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(failed(&format!(
                    "asked to purge the log up to {} while the stored snapshot ends at {stored:?}",
                    log_id.index
                )));
            }
            tokio::time::sleep(std::time::Duration::from_millis(PURGE_SNAPSHOT_POLL_MS)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
    use openraft::{CommittedLeaderId, SnapshotMeta, StoredMembership};

    fn log_id(index: u64) -> LogId<NodeId> {
        LogId::new(CommittedLeaderId::new(1, 0), index)
    }

    #[tokio::test]
    async fn a_restarted_node_never_finds_its_vote_committed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("v.redb");
        let genesis = deai_protocol::testkit::test_genesis(3);
        {
            let (logs, _) = crate::open(&path, genesis.clone()).unwrap();
            let mut logs = logs.guarded();
            let mut vote = Vote::new(4, 1);
            vote.commit();
            logs.save_vote(&vote).await.unwrap();
        }
        let (logs, _) = crate::open(&path, genesis).unwrap();
        let mut plain = logs.clone();
        let stored = plain.read_vote().await.unwrap().expect("a vote");
        assert!(stored.is_committed(), "the store itself keeps what it was given");
        let read = logs.guarded().read_vote().await.unwrap().expect("a vote");
        assert_eq!(read, Vote::new(4, 1), "the same term and candidate, not committed");
        assert!(!read.is_committed());
    }

    #[tokio::test(start_paused = true)]
    async fn a_purge_waits_for_the_snapshot_that_covers_it() {
        let dir = tempfile::tempdir().unwrap();
        let genesis = deai_protocol::testkit::test_genesis(3);
        let (logs, mut machine) = crate::open(&dir.path().join("p.redb"), genesis).unwrap();
        let mut logs = logs.guarded();

        // Nothing stored covers index 5: the purge refuses once its wait is over.
        let refused = logs.purge(log_id(5)).await;
        assert!(refused.is_err(), "{refused:?}");
        assert_eq!(logs.get_log_state().await.unwrap().last_purged_log_id, None);

        // A purge asked for before the snapshot is stored completes once it is.
        let mut waiting = logs.clone();
        let purge = tokio::spawn(async move { waiting.purge(log_id(5)).await });
        tokio::time::sleep(std::time::Duration::from_millis(10 * PURGE_SNAPSHOT_POLL_MS)).await;
        assert!(!purge.is_finished(), "the purge waits for the snapshot");
        let meta = SnapshotMeta {
            last_log_id: Some(log_id(7)),
            last_membership: StoredMembership::default(),
            snapshot_id: "s".into(),
        };
        let bytes = machine.get_snapshot_builder().await.build_snapshot().await.unwrap().snapshot.into_inner();
        machine.install_snapshot(&meta, Box::new(std::io::Cursor::new(bytes))).await.unwrap();
        purge.await.unwrap().unwrap();
        assert_eq!(logs.get_log_state().await.unwrap().last_purged_log_id, Some(log_id(5)));
    }
}
