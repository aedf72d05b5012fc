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
//!
//! **Batch heads.** The leader's scheduler installs a [`HeadPlanner`]; the batcher then plans an
//! entry of the leader's own (an `Allocate`, SPEC 5.3) each time it forms a batch, and puts it
//! first. With one batch in flight, a batch is formed only once the previous one is applied on
//! the leader, so when the log holds nothing unapplied the ledger the planner reads is exactly the
//! one the head will be applied to: the plan cannot go stale, and an order is allocated in the
//! batch right after its own, with no separate round for the allocation.

use crate::node::client_write;
use crate::{ClusterError, Written};
use deai_protocol::ledger::Entry;
use deai_protocol::message::Message;
use deai_protocol::{Ledger, SignedEnvelope};
use deai_storage::{CommandOutcome, EntryOutcome, LogCommand, NodeId, SharedLedger, TypeConfig};
use ed25519_dalek::SigningKey;
use openraft::Raft;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, Notify, OwnedMutexGuard, Semaphore};

/// Writes waiting for a batch; beyond this, callers wait to queue (backpressure).
pub const MAX_QUEUED_WRITES: usize = 4_096;
/// Most signed entries in one merged batch.
pub const MAX_BATCH_ENTRIES: usize = 4_096;
/// Merged batches proposed and not yet committed. One: while a batch is made durable and
/// replicated the next one fills, and larger batches mean fewer fsyncs and cheaper batch
/// signature checks. Measured against 2 and 4 in `docs/benchmarks.md`. It is also what makes
/// a batch head exact: the next batch is formed only once the previous one is applied here.
pub const MAX_BATCHES_IN_FLIGHT: usize = 1;
/// Longest the batcher waits for openraft's metrics to show its last batch applied, in ms.
pub const METRICS_CATCH_UP_MS: u64 = 100;
const _: () = assert!(MAX_BATCHES_IN_FLIGHT == 1, "batch heads are planned from a ledger holding every earlier batch");
/// Plans the leader's own entry for the head of the next batch from the ledger as that batch
/// will find it; `None` when there is nothing to lead with.
pub type HeadPlanner = Arc<dyn Fn(&Ledger) -> Option<Message> + Send + Sync>;

/// What the leader puts at the head of its batches, and how it seals it.
struct BatchHead {
    planner: HeadPlanner,
    /// While no write arrives, how often to plan again (a new leader whose log is not yet
    /// applied, orders left from before), in milliseconds.
    retry_ms: u64,
    key: Arc<SigningKey>,
    /// The coordinator outbox's turn: held from sealing until the batch is applied, so that the
    /// outbox's next entry reads a nonce above the head's.
    turn: Arc<tokio::sync::Mutex<()>>,
}

/// Removes its batch head when dropped, unless another has replaced it meanwhile.
pub struct HeadInstalled {
    slot: Arc<Mutex<Option<Arc<BatchHead>>>>,
    head: Arc<BatchHead>,
}

impl Drop for HeadInstalled {
    fn drop(&mut self) {
        if let Ok(mut slot) = self.slot.lock() {
            if slot.as_ref().is_some_and(|h| Arc::ptr_eq(h, &self.head)) {
                *slot = None;
            }
        }
    }
}

struct QueuedWrite {
    entries: Vec<Entry>,
    encoded_bytes: usize,
    reply: oneshot::Sender<Result<Written, ClusterError>>,
}

/// The queue in front of a node's Raft.
#[derive(Clone)]
pub struct WriteBatcher {
    queue: mpsc::Sender<QueuedWrite>,
    head: Arc<Mutex<Option<Arc<BatchHead>>>>,
    /// Wakes the batching task when a head is installed, so it plans before the next write.
    head_installed: Arc<Notify>,
}

impl WriteBatcher {
    /// Starts the batching task for node `id`'s `raft`, whose state machine is `ledger`; it
    /// ends when every `WriteBatcher` clone is dropped.
    pub fn start(id: NodeId, raft: Raft<TypeConfig>, ledger: SharedLedger, metrics: crate::NodeMetrics) -> Self {
        let (queue, queued) = mpsc::channel(MAX_QUEUED_WRITES);
        let head = Arc::new(Mutex::new(None));
        let head_installed = Arc::new(Notify::new());
        let sequencer = Sequencer {
            id,
            raft,
            ledger,
            metrics,
            head: head.clone(),
            head_installed: head_installed.clone(),
            written: Arc::default(),
            nothing_planned_at: None,
        };
        tokio::spawn(sequencer.run(queued));
        WriteBatcher { queue, head, head_installed }
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

    /// Has `planner` lead every batch this node proposes while the returned value lives;
    /// entries are sealed with `key` under the outbox's `turn`.
    pub(crate) fn install_head(
        &self,
        planner: HeadPlanner,
        retry_ms: u64,
        key: Arc<SigningKey>,
        turn: Arc<tokio::sync::Mutex<()>>,
    ) -> HeadInstalled {
        let head = Arc::new(BatchHead { planner, retry_ms, key, turn });
        if let Ok(mut slot) = self.head.lock() {
            *slot = Some(head.clone());
        }
        self.head_installed.notify_one();
        HeadInstalled { slot: self.head.clone(), head }
    }
}

/// The leader's own entry, sealed for the head of a batch, and the outbox turn it holds.
struct SealedHead {
    entry: Entry,
    _turn: OwnedMutexGuard<()>,
}

/// The batching task: forms batches, puts the leader's planned entry at their head, proposes.
struct Sequencer {
    id: NodeId,
    raft: Raft<TypeConfig>,
    ledger: SharedLedger,
    metrics: crate::NodeMetrics,
    head: Arc<Mutex<Option<Arc<BatchHead>>>>,
    head_installed: Arc<Notify>,
    /// The log index of the last batch this node wrote (and so applied).
    written: Arc<AtomicU64>,
    /// The ledger height at which the planner last found nothing: it would find nothing again
    /// until the ledger moves.
    nothing_planned_at: Option<u64>,
}

impl Sequencer {
    async fn run(mut self, mut queued: mpsc::Receiver<QueuedWrite>) {
        let slots = Arc::new(Semaphore::new(MAX_BATCHES_IN_FLIGHT));
        let mut changes = self.ledger.changes();
        let mut carried: Option<QueuedWrite> = None;
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else { return };
            let head = self.seal_head().await;
            let first = match (carried.take(), &head) {
                (Some(write), _) => Some(write),
                (None, Some(_)) => queued.try_recv().ok(),
                (None, None) if self.installed_head().is_some() => {
                    changes.borrow_and_update();
                    let retry_ms = self.installed_head().map_or(0, |h| h.retry_ms);
                    let retry = std::time::Duration::from_millis(retry_ms.max(1));
                    tokio::select! {
                        write = queued.recv() => match write {
                            Some(write) => Some(write),
                            None => return,
                        },
                        _ = changes.changed() => continue,
                        _ = tokio::time::sleep(retry) => continue,
                    }
                }
                (None, None) => tokio::select! {
                    write = queued.recv() => match write {
                        Some(write) => Some(write),
                        None => return,
                    },
                    _ = self.head_installed.notified() => continue,
                },
            };
            let mut bytes = head.as_ref().map_or(0, |h| deai_protocol::codec::encode_framed(&h.entry).len());
            let mut count = usize::from(head.is_some());
            let mut batch = Vec::new();
            if let Some(first) = first {
                bytes += first.encoded_bytes;
                count += first.entries.len();
                batch.push(first);
            }
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
            let (raft, metrics, written) = (self.raft.clone(), self.metrics.clone(), self.written.clone());
            tokio::spawn(async move {
                let _slot = slot;
                if let Some(index) = propose(&raft, &metrics, head, batch).await {
                    written.fetch_max(index, Ordering::AcqRel);
                }
            });
        }
    }

    fn installed_head(&self) -> Option<Arc<BatchHead>> {
        self.head.lock().ok()?.clone()
    }

    /// Plans and seals the head of the next batch, if a head is installed, this node leads,
    /// every entry in its log is applied (so the ledger is exactly what the batch will find)
    /// and the outbox is not mid-submission.
    async fn seal_head(&mut self) -> Option<SealedHead> {
        let head = self.installed_head()?;
        // Our last batch is applied (its write returned), but openraft's metrics may not say so
        // yet; let them catch up before reading them.
        let written = self.written.load(Ordering::Acquire);
        if written > 0 {
            let catch_up = std::time::Duration::from_millis(METRICS_CATCH_UP_MS);
            let _ = self.raft.wait(Some(catch_up)).applied_index_at_least(Some(written), "own batch applied").await;
        }
        {
            let m = self.raft.metrics();
            let m = m.borrow();
            if m.current_leader != Some(self.id) || m.last_applied.map(|l| l.index) != m.last_log_index {
                return None;
            }
        }
        let turn = head.turn.clone().try_lock_owned().ok()?;
        let ledger = self.ledger.read();
        if self.nothing_planned_at == Some(ledger.height) {
            return None;
        }
        let Some(message) = (head.planner)(&ledger) else {
            self.nothing_planned_at = Some(ledger.height);
            return None;
        };
        self.nothing_planned_at = None;
        let signer = deai_protocol::types::ParticipantId(head.key.verifying_key().to_bytes());
        let envelope = SignedEnvelope::seal(&head.key, &ledger.network_id, ledger.next_nonce(&signer), &message);
        let stamped_ms = crate::checkpointer::now_ms();
        Some(SealedHead { entry: Entry { stamped_ms, envelope }, _turn: turn })
    }
}

/// Proposes one batch and answers its callers; returns the batch's log index if it was written.
async fn propose(
    raft: &Raft<TypeConfig>,
    metrics: &crate::NodeMetrics,
    head: Option<SealedHead>,
    batch: Vec<QueuedWrite>,
) -> Option<u64> {
    let sizes: Vec<usize> = batch.iter().map(|w| w.entries.len()).collect();
    let led = usize::from(head.is_some());
    let mut entries = Vec::with_capacity(sizes.iter().sum::<usize>() + led);
    let (head_entry, turn) = match head {
        Some(SealedHead { entry, _turn }) => (Some(entry), Some(_turn)),
        None => (None, None),
    };
    entries.extend(head_entry);
    let mut replies = Vec::with_capacity(batch.len());
    for write in batch {
        entries.extend(write.entries);
        replies.push(write.reply);
    }
    let result = client_write(raft, LogCommand::new(&entries)).await;
    // The head is applied (or failed): the outbox may read its next nonce.
    drop(turn);
    if led == 1 {
        match result.as_ref().map(|w| w.outcome.outcomes.first()) {
            Ok(Some(EntryOutcome::Accepted)) => metrics.batch_heads.with_label_values(&["accepted"]).inc(),
            Ok(other) => {
                tracing::warn!(outcome = ?other, "the leader's own batch head was rejected");
                metrics.batch_heads.with_label_values(&["rejected"]).inc();
            }
            Err(e) => {
                tracing::debug!(error = %e, "a batch with a head failed");
                metrics.batch_heads.with_label_values(&["failed"]).inc();
            }
        }
    }
    let mut start = led;
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
    result.ok().map(|w| w.log_index)
}
