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
//!
//! The leader's other own entries (checkpoint signatures, ticks, epoch closes, payout
//! signatures) reach the batcher unsealed ([`WriteBatcher::write_own`]) and are sealed when the
//! batch is formed, after the head, so the coordinator's nonces follow log order without making
//! the head wait for the outbox.

use crate::raft_write::{client_write, Written};
use crate::ClusterError;
use deai_clock::SharedClock;
use deai_protocol::ledger::Entry;
use deai_protocol::message::Message;
use deai_protocol::types::{NetworkId, ParticipantId};
use deai_protocol::{Ledger, SignedEnvelope};
use deai_storage::{CommandOutcome, EntryOutcome, LogCommand, NodeId, SharedLedger, TypeConfig};
use ed25519_dalek::SigningKey;
use openraft::Raft;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{mpsc, oneshot, Notify, Semaphore};

/// Writes waiting for a batch; beyond this, callers wait to queue (backpressure).
pub const MAX_QUEUED_WRITES: usize = 4_096;
/// Most signed entries in one merged batch.
pub const MAX_BATCH_ENTRIES: usize = 4_096;
/// Merged batches proposed and not yet committed. One: while a batch is made durable and
/// replicated the next one fills, and larger batches mean fewer fsyncs and cheaper batch
/// signature checks. Measured against 2 and 4 in `docs/benchmarks.md`. It is also what makes
/// a batch head exact: the next batch is formed only once the previous one is applied here.
pub const MAX_BATCHES_IN_FLIGHT: usize = 1;
const _: () = assert!(MAX_BATCHES_IN_FLIGHT == 1, "batch heads are planned from a ledger holding every earlier batch");
/// Longest the batcher waits for openraft's metrics to show its last batch applied, in ms. They
/// normally lag by microseconds; the bound only matters if the node is stopping.
pub const METRICS_CATCH_UP_MS: u64 = 1_000;

/// Plans the leader's own entry for the head of the next batch from the ledger as that batch
/// will find it; `None` when there is nothing to lead with.
pub type HeadPlanner = Arc<dyn Fn(&Ledger) -> Option<Message> + Send + Sync>;

/// What the leader puts at the head of its batches, and the key it signs with.
struct BatchHead {
    planner: HeadPlanner,
    /// While no write arrives, how often to plan again (a new leader whose log is not yet
    /// applied, orders left from before), in milliseconds.
    retry_ms: u64,
    key: Arc<SigningKey>,
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

/// What a caller hands the batcher. Neither carries a time: the batcher stamps every entry of a
/// batch with this node's clock when it seals the batch.
enum Writing {
    /// Envelopes their signers sealed.
    Signed(Vec<SignedEnvelope>),
    /// This coordinator's own message, sealed with `key` when its batch is formed.
    Own { message: Message, key: Arc<SigningKey> },
}

struct QueuedWrite {
    writing: Writing,
    /// Entries the write becomes.
    count: usize,
    /// Its size in the log command, at most (an own message is measured with the largest nonce).
    encoded_bytes: usize,
    reply: oneshot::Sender<Result<Written, ClusterError>>,
}

impl QueuedWrite {
    /// Whether `signer` sealed one of these entries itself (an own entry from before this
    /// node led): a head sealed now could take the same nonce.
    fn sealed_by(&self, signer: &ParticipantId) -> bool {
        matches!(&self.writing, Writing::Signed(envelopes) if envelopes.iter().any(|e| e.signer == *signer))
    }
}

/// The queue in front of a node's Raft.
#[derive(Clone)]
pub struct WriteBatcher {
    queue: mpsc::Sender<QueuedWrite>,
    head: Arc<Mutex<Option<Arc<BatchHead>>>>,
    /// Wakes the batching task when a head is installed, so it plans before the next write.
    head_installed: Arc<Notify>,
    /// The network own messages are sealed for (to measure them before they are sealed).
    network: NetworkId,
}

/// The size of `message` sealed by `key` as an entry in a log command, at most (with the
/// largest nonce and time). Measured unsigned: a signature has the same size whatever it signs.
fn sealed_size_bytes(key: &SigningKey, network: &NetworkId, message: &Message) -> usize {
    let envelope = SignedEnvelope {
        kind: message.kind(),
        body: message.body_bytes(),
        signer: ParticipantId(key.verifying_key().to_bytes()),
        nonce: u64::MAX,
        network_id: network.clone(),
        signature: [0; 64],
    };
    deai_protocol::codec::encode_framed(&Entry { stamped_ms: u64::MAX, envelope }).len()
}

impl WriteBatcher {
    /// Starts the batching task for node `id`'s `raft`, whose state machine is `ledger`; it
    /// ends when every `WriteBatcher` clone is dropped. While `transferring` is set (a leader
    /// transfer holds writes back), it plans no heads of its own.
    /// Every batch is stamped with `clock` when it is sealed.
    /// The task is critical (`supervision`): if it dies the node is not ready. `faults` are the
    /// node's fault injection (`batcher_panic_after_batches`, and the canary in canary builds).
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        id: NodeId,
        raft: Raft<TypeConfig>,
        ledger: SharedLedger,
        metrics: crate::NodeMetrics,
        transferring: Arc<AtomicBool>,
        critical: &crate::supervision::CriticalTasks,
        clock: SharedClock,
        faults: &crate::faults::FaultInjection,
    ) -> Self {
        let (queue, queued) = mpsc::channel(MAX_QUEUED_WRITES);
        let head = Arc::new(Mutex::new(None));
        let head_installed = Arc::new(Notify::new());
        let network = ledger.read().network_id.clone();
        let sequencer = Sequencer {
            id,
            raft,
            ledger,
            metrics,
            clock,
            head: head.clone(),
            head_installed: head_installed.clone(),
            network: network.clone(),
            written: Arc::default(),
            transferring,
            nothing_planned_at: None,
            panic_after_batches: faults.batcher_panic_after_batches,
            #[cfg(feature = "canary")]
            canary: faults.canary_ack_without_commit_every.map(|every| (every.max(1), 0)),
        };
        critical.spawn("write batcher", sequencer.run(queued));
        WriteBatcher { queue, head, head_installed, network }
    }

    /// Proposes `envelopes` in the next batch, stamped when it is sealed, and waits for its
    /// outcome. `encoded_bytes` is their size once stamped, at most.
    pub async fn write(&self, envelopes: Vec<SignedEnvelope>, encoded_bytes: usize) -> Result<Written, ClusterError> {
        let count = envelopes.len();
        self.enqueue(Writing::Signed(envelopes), count, encoded_bytes).await
    }

    /// Proposes this coordinator's `message` in the next batch, sealed with `key` and the
    /// signer's next nonce when the batch is formed, and waits for its outcome.
    pub async fn write_own(&self, message: Message, key: Arc<SigningKey>) -> Result<Written, ClusterError> {
        let encoded_bytes = sealed_size_bytes(&key, &self.network, &message);
        self.enqueue(Writing::Own { message, key }, 1, encoded_bytes).await
    }

    async fn enqueue(&self, writing: Writing, count: usize, encoded_bytes: usize) -> Result<Written, ClusterError> {
        let (reply, answer) = oneshot::channel();
        self.queue
            .send(QueuedWrite { writing, count, encoded_bytes, reply })
            .await
            .map_err(|_| ClusterError::Fatal("the write batcher stopped".into()))?;
        answer.await.map_err(|_| ClusterError::Fatal("the write batcher dropped a write".into()))?
    }

    /// Has `planner` lead every batch this node proposes while the returned value lives;
    /// its entries are sealed with `key`.
    pub(crate) fn install_head(&self, planner: HeadPlanner, retry_ms: u64, key: Arc<SigningKey>) -> HeadInstalled {
        let head = Arc::new(BatchHead { planner, retry_ms, key });
        if let Ok(mut slot) = self.head.lock() {
            *slot = Some(head.clone());
        }
        self.head_installed.notify_one();
        HeadInstalled { slot: self.head.clone(), head }
    }
}

/// The head the leader planned for the next batch.
struct PlannedHead {
    message: Message,
    key: Arc<SigningKey>,
}

/// The batching task: forms batches, puts the leader's planned entry at their head, seals the
/// leader's own messages after it, proposes.
struct Sequencer {
    id: NodeId,
    raft: Raft<TypeConfig>,
    ledger: SharedLedger,
    metrics: crate::NodeMetrics,
    /// Stamps every batch when it is sealed.
    clock: SharedClock,
    head: Arc<Mutex<Option<Arc<BatchHead>>>>,
    head_installed: Arc<Notify>,
    /// The ledger's network, which never changes.
    network: NetworkId,
    /// The log index of the last batch this node wrote (and so applied).
    written: Arc<AtomicU64>,
    /// Set while a leader transfer holds writes back.
    transferring: Arc<AtomicBool>,
    /// The ledger height at which the planner last found nothing: it would find nothing again
    /// until the ledger moves.
    nothing_planned_at: Option<u64>,
    /// Fault injection: batches left to propose before this task panics.
    panic_after_batches: Option<u64>,
    /// The canary: every how many batches one is acknowledged and dropped, and the batches
    /// counted so far.
    #[cfg(feature = "canary")]
    canary: Option<(u64, u64)>,
}

impl Sequencer {
    async fn run(mut self, mut queued: mpsc::Receiver<QueuedWrite>) {
        let slots = Arc::new(Semaphore::new(MAX_BATCHES_IN_FLIGHT));
        let mut changes = self.ledger.changes();
        let mut carried: Option<QueuedWrite> = None;
        // Set when a write did not fit behind a head: it goes next, without one.
        let mut carried_past_head = false;
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else { return };
            let mut head = if std::mem::take(&mut carried_past_head) { None } else { self.plan_head().await };
            let installed_retry_ms = self.installed_head().map(|h| h.retry_ms);
            let first = match (carried.take(), &head, installed_retry_ms) {
                (Some(write), _, _) => Some(write),
                (None, Some(_), _) => queued.try_recv().ok(),
                (None, None, Some(retry_ms)) => {
                    changes.borrow_and_update();
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
                (None, None, None) => tokio::select! {
                    write = queued.recv() => match write {
                        Some(write) => Some(write),
                        None => return,
                    },
                    _ = self.head_installed.notified() => continue,
                },
            };
            let head_bytes = head.as_ref().map_or(0, |h| sealed_size_bytes(&h.key, &self.network, &h.message));
            let (mut bytes, mut count) = (head_bytes, usize::from(head.is_some()));
            let mut batch = Vec::new();
            // A write alone always fits (`submit_command` checks); with a head in front it may
            // not, and then it goes first in the next batch.
            let mut next = first;
            while let Some(write) = next.take() {
                let fits = count + write.count <= MAX_BATCH_ENTRIES
                    && bytes + write.encoded_bytes <= deai_storage::MAX_LOG_COMMAND_BYTES;
                let alone = batch.is_empty() && head.is_none();
                if !fits && !alone {
                    carried_past_head = batch.is_empty();
                    carried = Some(write);
                    break;
                }
                bytes += write.encoded_bytes;
                count += write.count;
                batch.push(write);
                next = queued.try_recv().ok();
            }
            if let Some(h) = &head {
                let signer = ParticipantId(h.key.verifying_key().to_bytes());
                if batch.iter().any(|w| w.sealed_by(&signer)) {
                    head = None;
                }
            }
            if let Some(left) = self.panic_after_batches.as_mut() {
                assert!(*left > 0, "fault injection: the write batcher panics (faults.batcher_panic_after_batches)");
                *left -= 1;
            }
            let (entries, replies) = self.seal(head.as_ref(), batch);
            #[cfg(feature = "canary")]
            if head.is_none() && self.canary_drops_this_batch() {
                tracing::warn!(entries = entries.len(), "canary: a batch acknowledged and never proposed");
                acknowledge_without_commit(replies, self.written.load(Ordering::Acquire));
                continue;
            }
            let (raft, metrics, written) = (self.raft.clone(), self.metrics.clone(), self.written.clone());
            let led = head.is_some();
            tokio::spawn(async move {
                let _slot = slot;
                if let Some(index) = propose(&raft, &metrics, led, entries, replies).await {
                    written.fetch_max(index, Ordering::AcqRel);
                }
            });
        }
    }

    /// The canary's count: whether this batch is the one in every `every` to drop.
    #[cfg(feature = "canary")]
    fn canary_drops_this_batch(&mut self) -> bool {
        let Some((every, counted)) = self.canary.as_mut() else { return false };
        *counted += 1;
        *counted % *every == 0
    }

    fn installed_head(&self) -> Option<Arc<BatchHead>> {
        self.head.lock().ok()?.clone()
    }

    /// Plans the head of the next batch, if a head is installed, this node leads and every
    /// entry in its log is applied (so the ledger is exactly what the batch will find).
    async fn plan_head(&mut self) -> Option<PlannedHead> {
        let head = self.installed_head()?;
        if self.transferring.load(Ordering::Acquire) {
            return None;
        }
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
        let ledger = self.ledger.read();
        if self.nothing_planned_at == Some(ledger.height) {
            return None;
        }
        let Some(message) = (head.planner)(&ledger) else {
            self.nothing_planned_at = Some(ledger.height);
            return None;
        };
        self.nothing_planned_at = None;
        Some(PlannedHead { message, key: head.key.clone() })
    }

    /// The batch's entries in log order (the head, then each write's, own messages sealed with
    /// their signer's next nonces), all stamped with this node's clock now, and the callers'
    /// replies with their entry counts.
    #[allow(clippy::type_complexity)]
    fn seal(
        &self,
        head: Option<&PlannedHead>,
        batch: Vec<QueuedWrite>,
    ) -> (Vec<Entry>, Vec<(oneshot::Sender<Result<Written, ClusterError>>, usize)>) {
        let stamped_ms = self.clock.now_ms();
        let ledger = self.ledger.read();
        let mut nonces: Vec<(ParticipantId, u64)> = Vec::new();
        let mut seal_own = |key: &SigningKey, message: &Message| {
            let signer = ParticipantId(key.verifying_key().to_bytes());
            let nonce = match nonces.iter_mut().find(|(s, _)| *s == signer) {
                Some((_, next)) => {
                    *next += 1;
                    *next
                }
                None => {
                    let next = ledger.next_nonce(&signer);
                    nonces.push((signer, next));
                    next
                }
            };
            Entry { stamped_ms, envelope: SignedEnvelope::seal(key, &ledger.network_id, nonce, message) }
        };
        let mut entries =
            Vec::with_capacity(batch.iter().map(|w| w.count).sum::<usize>() + usize::from(head.is_some()));
        if let Some(h) = head {
            entries.push(seal_own(&h.key, &h.message));
        }
        let mut replies = Vec::with_capacity(batch.len());
        for write in batch {
            match write.writing {
                Writing::Signed(signed) => {
                    entries.extend(signed.into_iter().map(|envelope| Entry { stamped_ms, envelope }))
                }
                Writing::Own { message, key } => entries.push(seal_own(&key, &message)),
            }
            replies.push((write.reply, write.count));
        }
        (entries, replies)
    }
}

/// Proposes one batch and answers its callers; returns the batch's log index if it was written.
async fn propose(
    raft: &Raft<TypeConfig>,
    metrics: &crate::NodeMetrics,
    led: bool,
    entries: Vec<Entry>,
    replies: Vec<(oneshot::Sender<Result<Written, ClusterError>>, usize)>,
) -> Option<u64> {
    let result = client_write(raft, LogCommand::new(&entries)).await;
    if led {
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
    let mut start = usize::from(led);
    for (reply, size) in replies {
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

/// The canary's bug: every writer of the batch is told its entries were accepted at
/// `log_index`, and nothing was proposed.
#[cfg(feature = "canary")]
fn acknowledge_without_commit(replies: Vec<(oneshot::Sender<Result<Written, ClusterError>>, usize)>, log_index: u64) {
    for (reply, size) in replies {
        let outcome = CommandOutcome { outcomes: vec![EntryOutcome::Accepted; size], height: 0, root: [0; 32] };
        let _ = reply.send(Ok(Written { log_index, outcome }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deai_protocol::message::Tick;

    /// An own message is measured unsigned before its batch is formed; the measure must bound
    /// what the sealed entry takes in the log command.
    #[test]
    fn an_own_message_is_measured_as_large_as_it_will_be_sealed() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let network = NetworkId("deai-measure".into());
        let message = Message::Tick(Tick {});
        let sealed = Entry { stamped_ms: u64::MAX, envelope: SignedEnvelope::seal(&key, &network, u64::MAX, &message) };
        assert_eq!(sealed_size_bytes(&key, &network, &message), deai_protocol::codec::encode_framed(&sealed).len());
        let small = Entry { stamped_ms: 1, envelope: SignedEnvelope::seal(&key, &network, 1, &message) };
        assert!(sealed_size_bytes(&key, &network, &message) >= deai_protocol::codec::encode_framed(&small).len());
    }
}
