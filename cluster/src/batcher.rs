//! Group commit on the leader: concurrent writes share one log entry, one fsync.
//!
//! openraft 0.9 appends each `client_write` as its own log entry, and our log store makes each
//! append durable with its own fsync, so a leader taking writes one by one is bound by fsync
//! latency. The batcher queues writes (at most [`MAX_QUEUED_WRITES`]) and a single task drains
//! the queue into one `LogCommand` of up to [`MAX_BATCH_ENTRIES`] entries and
//! `MAX_LOG_COMMAND_BYTES`, with at most [`MAX_BATCHES_IN_FLIGHT`] proposals outstanding. While
//! one batch is being made durable the next one fills, so the batch size follows the load: one
//! write alone goes out at once, a thousand concurrent writes share a handful of fsyncs.
//!
//! Each caller gets the outcomes of its own entries, and the log index, height and root of the
//! batch it rode in. Every replica applies the merged batch with `Ledger::apply_batch`, so a bad
//! signature in one caller's entry rejects only that entry.

use crate::node::client_write;
use crate::{ClusterError, Written};
use deai_protocol::ledger::Entry;
use deai_storage::{CommandOutcome, LogCommand, TypeConfig};
use openraft::Raft;
use std::sync::Arc;
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Writes waiting for a batch; beyond this, callers wait to queue (backpressure).
pub const MAX_QUEUED_WRITES: usize = 4_096;
/// Most signed entries in one merged batch.
pub const MAX_BATCH_ENTRIES: usize = 4_096;
/// Merged batches proposed and not yet committed. One: while a batch is made durable and
/// replicated the next one fills, and larger batches mean fewer fsyncs and cheaper batch
/// signature checks. Measured against 2 and 4 in `docs/benchmarks.md`.
pub const MAX_BATCHES_IN_FLIGHT: usize = 1;

struct QueuedWrite {
    entries: Vec<Entry>,
    encoded_bytes: usize,
    reply: oneshot::Sender<Result<Written, ClusterError>>,
}

/// The queue in front of a node's Raft.
#[derive(Clone)]
pub struct WriteBatcher {
    queue: mpsc::Sender<QueuedWrite>,
}

impl WriteBatcher {
    /// Starts the batching task for `raft`; it ends when every `WriteBatcher` clone is dropped.
    pub fn start(raft: Raft<TypeConfig>) -> Self {
        let (queue, queued) = mpsc::channel(MAX_QUEUED_WRITES);
        tokio::spawn(run(raft, queued));
        WriteBatcher { queue }
    }

    /// Proposes `entries` in the next batch and waits for its outcome.
    pub async fn write(&self, entries: Vec<Entry>, encoded_bytes: usize) -> Result<Written, ClusterError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(QueuedWrite { entries, encoded_bytes, reply })
            .await
            .map_err(|_| ClusterError::Fatal("the write batcher stopped".into()))?;
        answer.await.map_err(|_| ClusterError::Fatal("the write batcher dropped a write".into()))?
    }
}

async fn run(raft: Raft<TypeConfig>, mut queued: mpsc::Receiver<QueuedWrite>) {
    let slots = Arc::new(Semaphore::new(MAX_BATCHES_IN_FLIGHT));
    let mut carried: Option<QueuedWrite> = None;
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else { return };
        let first = match carried.take() {
            Some(write) => write,
            None => match queued.recv().await {
                Some(write) => write,
                None => return,
            },
        };
        let mut bytes = first.encoded_bytes;
        let mut count = first.entries.len();
        let mut batch = vec![first];
        while let Ok(next) = queued.try_recv() {
            if count + next.entries.len() > MAX_BATCH_ENTRIES
                || bytes + next.encoded_bytes > deai_storage::MAX_LOG_COMMAND_BYTES
            {
                carried = Some(next);
                break;
            }
            bytes += next.encoded_bytes;
            count += next.entries.len();
            batch.push(next);
        }
        let raft = raft.clone();
        tokio::spawn(async move {
            let _slot = slot;
            propose(&raft, batch).await;
        });
    }
}

async fn propose(raft: &Raft<TypeConfig>, batch: Vec<QueuedWrite>) {
    let sizes: Vec<usize> = batch.iter().map(|w| w.entries.len()).collect();
    let mut entries = Vec::with_capacity(sizes.iter().sum());
    let mut replies = Vec::with_capacity(batch.len());
    for write in batch {
        entries.extend(write.entries);
        replies.push(write.reply);
    }
    let result = client_write(raft, LogCommand::new(&entries)).await;
    let mut start = 0;
    for (reply, size) in replies.into_iter().zip(sizes) {
        let part = match &result {
            Ok(written) => Ok(Written {
                log_index: written.log_index,
                outcome: CommandOutcome {
                    outcomes: written.outcome.outcomes.get(start..start + size).map(<[_]>::to_vec).unwrap_or_default(),
                    height: written.outcome.height,
                    root: written.outcome.root,
                },
            }),
            Err(e) => Err(e.clone_for_caller()),
        };
        start += size;
        // The caller may have given up; its answer has nowhere to go.
        let _ = reply.send(part);
    }
}
