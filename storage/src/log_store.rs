//! The Raft log, vote and committed index in redb (openraft storage v2 `RaftLogStorage`).

use crate::metrics::StorageMetrics;
use crate::{
    decode_raft, encode_raft, TypeConfig, COMMITTED_KEY, LAST_PURGED_KEY, LOGS, META, SNAPSHOT, SNAPSHOT_META_KEY,
    VOTE_KEY,
};
use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use redb::{Database, ReadableDatabase, ReadableTable};
use std::fmt::Debug;
use std::ops::RangeBounds;
use std::sync::Arc;

type NodeId = crate::NodeId;

/// Log storage over one redb database; clones share it (the log reader is a clone).
#[derive(Clone)]
pub struct RedbLogStore {
    db: Arc<Database>,
    metrics: StorageMetrics,
}

fn io_err(e: impl std::fmt::Display) -> AnyError {
    AnyError::error(e.to_string())
}

impl RedbLogStore {
    pub(crate) fn new(db: Arc<Database>, metrics: StorageMetrics) -> Self {
        RedbLogStore { db, metrics }
    }

    /// Reads every metadata record and the ends of the log, so that a damaged store fails at
    /// start with a clear error rather than later.
    pub(crate) fn check(&self) -> Result<(), String> {
        for key in [VOTE_KEY, COMMITTED_KEY, LAST_PURGED_KEY] {
            if let Some(bytes) = self.meta(key).map_err(|e| e.to_string())? {
                match key {
                    VOTE_KEY => decode_raft::<Vote<NodeId>>(&bytes).map(|_| ()),
                    _ => decode_raft::<Option<LogId<NodeId>>>(&bytes).map(|_| ()),
                }
                .map_err(|e| format!("meta record {key:?}: {e}"))?;
            }
        }
        let txn = self.db.begin_read().map_err(|e| e.to_string())?;
        let logs = txn.open_table(LOGS).map_err(|e| e.to_string())?;
        for end in
            [logs.first().map_err(|e| e.to_string())?, logs.last().map_err(|e| e.to_string())?].into_iter().flatten()
        {
            let (index, bytes) = (end.0.value(), end.1.value());
            let entry: Entry<TypeConfig> = decode_raft(bytes).map_err(|e| format!("log entry {index}: {e}"))?;
            if entry.log_id.index != index {
                return Err(format!("log entry stored at {index} has index {}", entry.log_id.index));
            }
        }
        Ok(())
    }

    fn meta(&self, key: &str) -> Result<Option<Vec<u8>>, redb::Error> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(META)?;
        Ok(table.get(key)?.map(|v| v.value().to_vec()))
    }

    fn put_meta(&self, key: &str, value: &[u8]) -> Result<(), redb::Error> {
        let txn = self.db.begin_write()?;
        txn.open_table(META)?.insert(key, value)?;
        self.metrics.commit(txn)?;
        Ok(())
    }

    /// Writes a record without waiting for the disk: it becomes durable with the next durable
    /// commit (the next append), and a crash before that loses only this write.
    fn put_meta_lazily(&self, key: &str, value: &[u8]) -> Result<(), redb::Error> {
        let mut txn = self.db.begin_write()?;
        txn.set_durability(redb::Durability::None)?;
        txn.open_table(META)?.insert(key, value)?;
        txn.commit()?;
        Ok(())
    }

    /// The last log index the snapshot stored on disk covers.
    pub(crate) fn stored_snapshot_index(&self) -> Result<Option<u64>, redb::Error> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(SNAPSHOT)?;
        let stored = match table.get(SNAPSHOT_META_KEY)? {
            Some(bytes) => decode_raft::<openraft::SnapshotMeta<NodeId, openraft::BasicNode>>(bytes.value())
                .map_err(|e| redb::Error::Corrupted(format!("stored snapshot meta: {e}")))?
                .last_log_id
                .map(|id| id.index),
            None => None,
        };
        Ok(stored)
    }

    fn last_purged(&self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        match self.meta(LAST_PURGED_KEY).map_err(|e| StorageIOError::read_logs(io_err(e)))? {
            Some(bytes) => decode_raft(&bytes).map_err(|e| StorageIOError::read_logs(io_err(e)).into()),
            None => Ok(None),
        }
    }
}

impl RaftLogReader<TypeConfig> for RedbLogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<NodeId>> {
        let read = |e: &dyn std::fmt::Display| StorageError::from(StorageIOError::read_logs(io_err(e)));
        let txn = self.db.begin_read().map_err(|e| read(&e))?;
        let table = txn.open_table(LOGS).map_err(|e| read(&e))?;
        let mut out = Vec::new();
        for row in table.range(range).map_err(|e| read(&e))? {
            let (index, bytes) = row.map_err(|e| read(&e))?;
            let entry = decode_raft(bytes.value()).map_err(|e| read(&format!("log entry {}: {e}", index.value())))?;
            out.push(entry);
        }
        Ok(out)
    }
}

impl RaftLogStorage<TypeConfig> for RedbLogStore {
    type LogReader = Self;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<NodeId>> {
        let last_purged_log_id = self.last_purged()?;
        let read = |e: &dyn std::fmt::Display| StorageError::from(StorageIOError::read_logs(io_err(e)));
        let txn = self.db.begin_read().map_err(|e| read(&e))?;
        let table = txn.open_table(LOGS).map_err(|e| read(&e))?;
        let last = match table.last().map_err(|e| read(&e))? {
            Some((_, bytes)) => {
                let entry: Entry<TypeConfig> = decode_raft(bytes.value()).map_err(|e| read(&e))?;
                Some(entry.log_id)
            }
            None => None,
        };
        Ok(LogState { last_purged_log_id, last_log_id: last.or(last_purged_log_id) })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<NodeId>) -> Result<(), StorageError<NodeId>> {
        self.put_meta(VOTE_KEY, &encode_raft(vote)).map_err(|e| StorageIOError::write_vote(io_err(e)).into())
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<NodeId>>, StorageError<NodeId>> {
        match self.meta(VOTE_KEY).map_err(|e| StorageIOError::read_vote(io_err(e)))? {
            Some(bytes) => Ok(Some(decode_raft(&bytes).map_err(|e| StorageIOError::read_vote(io_err(e)))?)),
            None => Ok(None),
        }
    }

    async fn save_committed(&mut self, committed: Option<LogId<NodeId>>) -> Result<(), StorageError<NodeId>> {
        if let Some(c) = committed {
            self.metrics.committed_index.set(i64::try_from(c.index).unwrap_or(i64::MAX));
        }
        // openraft treats the committed index as optional to persist: a replica that restarts
        // with an older one re-applies less of its log and learns the rest from the leader. So
        // it rides along with the next durable append instead of costing an fsync of its own.
        self.put_meta_lazily(COMMITTED_KEY, &encode_raft(&committed))
            .map_err(|e| StorageIOError::write(io_err(e)).into())
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<NodeId>>, StorageError<NodeId>> {
        match self.meta(COMMITTED_KEY).map_err(|e| StorageIOError::read(io_err(e)))? {
            Some(bytes) => decode_raft(&bytes).map_err(|e| StorageIOError::read(io_err(e)).into()),
            None => Ok(None),
        }
    }

    /// One write transaction, one fsync, for the whole batch; openraft hears of it only after.
    async fn append<I>(&mut self, entries: I, callback: LogFlushed<TypeConfig>) -> Result<(), StorageError<NodeId>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let _timer = self.metrics.log_append_seconds.start_timer();
        let result: Result<(), redb::Error> = (|| {
            let txn = self.db.begin_write()?;
            {
                let mut table = txn.open_table(LOGS)?;
                for entry in entries {
                    table.insert(entry.log_id.index, encode_raft(&entry).as_slice())?;
                }
            }
            self.metrics.commit(txn)?;
            Ok(())
        })();
        match result {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                callback.log_io_completed(Err(std::io::Error::other(e.to_string())));
                Err(StorageIOError::write_logs(io_err(e)).into())
            }
        }
    }

    /// Deletes entries at and after `log_id.index` (a conflicting suffix).
    async fn truncate(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let result: Result<(), redb::Error> = (|| {
            let txn = self.db.begin_write()?;
            txn.open_table(LOGS)?.retain_in(log_id.index.., |_, _| false)?;
            self.metrics.commit(txn)?;
            Ok(())
        })();
        result.map_err(|e| StorageIOError::write_logs(io_err(e)).into())
    }

    /// Deletes entries up to and including `log_id.index`, remembering the purge point.
    async fn purge(&mut self, log_id: LogId<NodeId>) -> Result<(), StorageError<NodeId>> {
        let result: Result<(), redb::Error> = (|| {
            let txn = self.db.begin_write()?;
            txn.open_table(META)?.insert(LAST_PURGED_KEY, encode_raft(&Some(log_id)).as_slice())?;
            txn.open_table(LOGS)?.retain_in(..=log_id.index, |_, _| false)?;
            self.metrics.commit(txn)?;
            Ok(())
        })();
        result.map_err(|e| StorageIOError::write_logs(io_err(e)).into())
    }
}
