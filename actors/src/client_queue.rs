//! One actor per active client: its submissions, in order, with a bounded queue (SPEC 5.2).
//!
//! Every single-signer batch a client sends through this node's API goes to that client's
//! `ClientQueue`. The queue answers a frozen client at once (with the time the freeze ends),
//! without spending a log entry on an order the ledger would refuse anyway, and otherwise
//! writes the batch through the leader, one batch at a time, so a client's own submissions
//! reach the log in the order they arrived. Its mailbox holds [`CLIENT_QUEUE_CAPACITY`]
//! batches; beyond that the client is told it is sending too fast (`client_queue_full`) rather
//! than left hanging. A queue idle for `client_idle_ms` stops, and the registry forgets it; the
//! registry holds at most [`MAX_CLIENT_QUEUES`] queues (`overloaded` beyond).

use crate::Duties;
use actix::{Actor, ActorContext, ActorFutureExt, Addr, AsyncContext, Context, Handler, Message, WrapFuture};
use deai_cluster::{ClusterError, Written};
use deai_protocol::types::ParticipantId;
use deai_protocol::SignedEnvelope;
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// Batches one client may have waiting in its queue.
pub const CLIENT_QUEUE_CAPACITY: usize = 64;
/// Client queues one node keeps at once.
pub const MAX_CLIENT_QUEUES: usize = 100_000;

/// Why a submission was not taken.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("this client has {CLIENT_QUEUE_CAPACITY} batches waiting; slow down")]
    Full,
    #[error("the node tracks {MAX_CLIENT_QUEUES} clients already; retry shortly")]
    Overloaded,
    #[error("the client is frozen until {until_ms} (ledger time)")]
    Frozen { until_ms: u64 },
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error("the client queue stopped")]
    Stopped,
    #[error("the write took longer than {timeout_ms} ms; its outcome is unknown (look the entry up before resending)")]
    Timeout { timeout_ms: u64 },
}

impl QueueError {
    pub fn code(&self) -> &'static str {
        match self {
            QueueError::Full => "client_queue_full",
            QueueError::Overloaded => "overloaded",
            QueueError::Frozen { .. } => "frozen",
            QueueError::Cluster(e) => e.code(),
            QueueError::Stopped => "client_queue_stopped",
            QueueError::Timeout { .. } => "write_timeout",
        }
    }
}

/// A batch of one client's entries and where to send the outcome.
#[derive(Message)]
#[rtype(result = "()")]
struct Submit {
    envelopes: Vec<SignedEnvelope>,
    reply: oneshot::Sender<Result<Written, QueueError>>,
    /// Holds the batch's place in its queue until the batch is answered or dropped.
    _place: QueuePlace,
}

/// One batch's place in a client's queue. actix bounds a mailbox per sender (each `Addr` clone
/// may add one more message), so the queue keeps its own count of the batches it holds.
struct QueuePlace(Arc<AtomicUsize>);

impl QueuePlace {
    /// A place in the queue counted by `held`, if fewer than [`CLIENT_QUEUE_CAPACITY`] are taken.
    fn take(held: &Arc<AtomicUsize>) -> Option<QueuePlace> {
        held.fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| (n < CLIENT_QUEUE_CAPACITY).then_some(n + 1))
            .ok()
            .map(|_| QueuePlace(held.clone()))
    }
}

impl Drop for QueuePlace {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// One client's queue.
pub struct ClientQueue {
    client: ParticipantId,
    duties: Duties,
    registry: ClientQueues,
    last_active: Instant,
}

impl Actor for ClientQueue {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(CLIENT_QUEUE_CAPACITY);
        self.duties.metrics.started("client_queue");
        let idle = Duration::from_millis(self.duties.config.client_idle_ms);
        ctx.run_interval(idle, move |act, ctx| {
            if act.last_active.elapsed() >= idle {
                act.registry.forget(&act.client);
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.duties.metrics.stopped("client_queue");
    }
}

impl Handler<Submit> for ClientQueue {
    type Result = ();

    fn handle(&mut self, msg: Submit, ctx: &mut Self::Context) {
        self.last_active = Instant::now();
        let frozen_until = {
            let ledger = self.duties.outbox.node().ledger().read();
            let now = self.duties.now_ms().max(ledger.now_ms);
            ledger.account(&self.client).map(|a| a.frozen_until_ms).filter(|until| *until > now)
        };
        let orders = msg.envelopes.iter().any(|e| e.kind == deai_protocol::message::MessageKind::PutOrder);
        if let (Some(until_ms), true) = (frozen_until, orders) {
            self.duties.metrics.refused("client_queue", "frozen");
            let _ = msg.reply.send(Err(QueueError::Frozen { until_ms }));
            return;
        }
        let node = self.duties.outbox.node().clone();
        let timeout_ms = self.duties.config.client_write_timeout_ms;
        // Bounded, so that one write stuck behind a leader without a quorum cannot hold the
        // client's later submissions forever.
        let work = self.duties.runtime.spawn(async move {
            match tokio::time::timeout(Duration::from_millis(timeout_ms), node.write(&msg.envelopes)).await {
                Ok(written) => written.map_err(QueueError::from),
                Err(_) => Err(QueueError::Timeout { timeout_ms }),
            }
        });
        let (reply, place) = (msg.reply, msg._place);
        // `wait`: the next batch of this client is handled only after this one is written.
        ctx.wait(
            async move { work.await.unwrap_or_else(|e| Err(QueueError::Cluster(ClusterError::Fatal(e.to_string())))) }
                .into_actor(self)
                .map(move |result, _, _| {
                    drop(place);
                    let _ = reply.send(result);
                }),
        );
    }
}

/// A client's queue and its count of batches held.
type QueueHandle = (Addr<ClientQueue>, Arc<AtomicUsize>);

/// The registry of this node's client queues; clones share it. Queues run on the actor
/// system's thread; the registry may be used from any thread.
#[derive(Clone)]
pub struct ClientQueues {
    inner: Arc<Mutex<HashMap<ParticipantId, QueueHandle>>>,
    duties: Duties,
    arbiter: actix::ArbiterHandle,
}

impl ClientQueues {
    pub(crate) fn new(duties: Duties, arbiter: actix::ArbiterHandle) -> Self {
        ClientQueues { inner: Arc::default(), duties, arbiter }
    }

    fn forget(&self, client: &ParticipantId) {
        if let Ok(mut map) = self.inner.lock() {
            map.remove(client);
        }
    }

    /// Queues: how many clients have one now.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The queue of `client` (started on the actor thread if it has none) and its count of
    /// batches held.
    fn queue(&self, client: ParticipantId) -> Result<QueueHandle, QueueError> {
        let mut map = self.inner.lock().map_err(|_| QueueError::Stopped)?;
        if let Some((addr, held)) = map.get(&client) {
            if addr.connected() {
                return Ok((addr.clone(), held.clone()));
            }
        }
        if map.len() >= MAX_CLIENT_QUEUES {
            return Err(QueueError::Overloaded);
        }
        let queue =
            ClientQueue { client, duties: self.duties.clone(), registry: self.clone(), last_active: Instant::now() };
        let addr = ClientQueue::start_in_arbiter(&self.arbiter, move |_| queue);
        let held = Arc::new(AtomicUsize::new(0));
        map.insert(client, (addr.clone(), held.clone()));
        Ok((addr, held))
    }

    /// Submits one client's batch through its queue and waits for the outcome.
    pub async fn submit(&self, client: ParticipantId, envelopes: Vec<SignedEnvelope>) -> Result<Written, QueueError> {
        let (reply, answer) = oneshot::channel();
        let queued = self.queue(client).and_then(|(queue, held)| {
            let place = QueuePlace::take(&held).ok_or(QueueError::Full)?;
            queue.try_send(Submit { envelopes, reply, _place: place }).map_err(|e| match e {
                actix::dev::SendError::Full(_) => QueueError::Full,
                actix::dev::SendError::Closed(_) => QueueError::Stopped,
            })
        });
        if let Err(e) = queued {
            self.duties.metrics.refused("client_queue", e.code());
            return Err(e);
        }
        answer.await.map_err(|_| QueueError::Stopped)?
    }
}
