//! # deai-actors: a coordinator's duties as actors (SPEC 2)
//!
//! The ledger decides; these actors make it move. Each proposes coordinator-signed entries
//! through the node's [`CoordinatorOutbox`] and changes nothing itself.
//!
//! - [`Leadership`] (every node) watches Raft and starts the leader's duties when this node
//!   becomes leader, and stops them when it no longer is.
//! - [`Scheduler`] (leader) has the leader's write batcher allocate pending orders in AVRF
//!   batches at the head of each batch (SPEC 5.3, 5.4), and sends a `Tick` when time-driven
//!   work is due (deadlines, expiries, pruning).
//! - [`RewardEpoch`] (leader, one per epoch) closes its epoch at its boundary with the payouts
//!   every replica recomputes (SPEC 5.7).
//! - [`PayoutSigner`] (every node) signs each closed epoch's payout root, as the checkpointer
//!   signs checkpoints, so that a quorum certifies the payouts for L2 (SPEC 6).
//! - [`Checkpointer`] (every node, unless `sign_checkpoints` is off) signs each checkpoint its
//!   own replica reaches, for the quorum certificates of SPEC 6.3.
//! - [`ClientQueue`] (every node, one per active client) takes the client's submissions in
//!   order, with a bounded queue, and answers a frozen client at once (SPEC 5.2).
//! - [`MinerSession`] (every node, one per connected miner) pushes the miner's assignments as
//!   they are applied, with heartbeats, over a session the miner keeps open (SPEC 5.3, 5.10).
//!
//! ## Two runtimes
//!
//! openraft, the TCP transport and the HTTP endpoint run on the process's multi-threaded tokio
//! runtime. actix actors need a single-threaded one (their contexts are `!Send`), so the actors
//! live on one actix `System`, on a thread of their own ([`CoordinatorActors::start`]). An actor
//! never blocks that thread: work that touches the node (a proposal waits for a commit) is
//! spawned onto the main runtime through its `Handle`, and the result comes back to the actor as
//! a message. Timers and bookkeeping stay on the actor thread; disk, network and Raft stay on
//! the main runtime.
//!
//! Mailboxes are bounded ([`MAILBOX_CAPACITY`]); these actors take few messages, all from
//! their own timers and proposals.
//!
//! Because every actor shares that one thread, none may keep running work nobody needs: the
//! leader-only actors stop on [`StepDown`] when leadership moves, and check leadership on each
//! of their own ticks as well, so a deposed leader never plans allocations it cannot propose.

// openraft's errors inside `ClusterError` are large; errors are the cold path.
#![allow(clippy::result_large_err)]

mod checkpointer;
mod client_queue;
mod leadership;
mod miner_session;
mod payouts;
mod reward_epoch;
mod scheduler;

pub use checkpointer::Checkpointer;
pub use client_queue::{ClientQueue, ClientQueues, QueueError, CLIENT_QUEUE_CAPACITY, MAX_CLIENT_QUEUES};
pub use leadership::Leadership;
pub use miner_session::{
    assignments_of, AssignmentInfo, MinerSession, MinerSessions, SessionError, SessionEvent, MAX_ASSIGNMENTS_PER_EVENT,
    MAX_MINER_SESSIONS, MAX_SESSION_MS, MAX_SESSION_SKEW_MS, SESSION_OUTBOX_EVENTS,
};
pub use payouts::PayoutSigner;
pub use reward_epoch::RewardEpoch;
pub use scheduler::{tick_due, Scheduler};

use deai_cluster::identity::CoordinatorIdentity;
use deai_cluster::outbox::CoordinatorOutbox;
use std::sync::Arc;

/// Messages an actor's mailbox holds before senders must wait.
pub const MAILBOX_CAPACITY: usize = 64;

/// Timers of the actors, each with its unit in its name.
#[derive(Clone, Debug, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ActorsConfig {
    /// How often a node checks whether it leads.
    pub leadership_poll_ms: u64,
    /// With no writes arriving, how often the leader's batcher plans an allocation for orders
    /// left pending (with writes, every batch is planned for).
    pub allocate_every_ms: u64,
    /// Most orders in one `Allocate` (at most the protocol's `MAX_ALLOCATION_BATCH`).
    pub allocation_batch_orders: usize,
    /// How often the scheduler checks whether a `Tick` is due.
    pub tick_check_every_ms: u64,
    /// How often the payout signer looks for closed epochs to sign.
    pub payout_check_every_ms: u64,
    /// A client queue with nothing to do for this long stops.
    pub client_idle_ms: u64,
    /// Longest a client queue waits for one write before answering `write_timeout` (outcome
    /// unknown) and taking the client's next batch.
    pub client_write_timeout_ms: u64,
    /// How often a miner session looks for new assignments on its own. Sessions are woken by
    /// each change of this node's ledger and push at once; this is only a fallback.
    pub miner_session_poll_ms: u64,
    /// Longest a miner session stays silent: a heartbeat goes out when nothing else did.
    pub miner_heartbeat_ms: u64,
    /// Longest a miner session lasts, whatever the miner asks (at most `MAX_SESSION_MS`).
    pub miner_session_max_ms: u64,
    /// Whether this node signs checkpoints (the [`Checkpointer`]). Not read from the `[actors]`
    /// table: the node's own `sign_checkpoints` setting decides it.
    #[serde(skip)]
    pub sign_checkpoints: bool,
}

impl Default for ActorsConfig {
    fn default() -> Self {
        ActorsConfig {
            leadership_poll_ms: 50,
            allocate_every_ms: 5,
            allocation_batch_orders: deai_protocol::ledger::MAX_ALLOCATION_BATCH,
            tick_check_every_ms: 200,
            payout_check_every_ms: 200,
            client_idle_ms: 30_000,
            client_write_timeout_ms: 10_000,
            miner_session_poll_ms: 1_000,
            miner_heartbeat_ms: 1_000,
            miner_session_max_ms: MAX_SESSION_MS,
            sign_checkpoints: true,
        }
    }
}

/// What every actor needs: the node's outbox, its VRF key, the main runtime, the timers and the
/// actors' metrics.
#[derive(Clone)]
pub struct Duties {
    pub outbox: CoordinatorOutbox,
    pub identity: Arc<CoordinatorIdentity>,
    pub runtime: tokio::runtime::Handle,
    pub config: ActorsConfig,
    pub metrics: ActorMetrics,
}

/// Series of the actors, registered in the node's registry (so they carry its `node` label).
///
/// - `deai_actors_running{actor}`: actors alive now, by kind (`scheduler`, `reward_epoch`,
///   `payout_signer`, `leadership`, `client_queue`). On a healthy cluster exactly one node runs
///   a scheduler.
/// - `deai_actor_refusals_total{actor,code}`: work an actor turned away: client batches
///   answered without a write (`client_queue`: `client_queue_full`, `frozen`, `overloaded`) and
///   miner sessions refused or cut (`miner_session`: `overloaded`, `slow_reader`).
#[derive(Clone)]
pub struct ActorMetrics {
    running: prometheus::IntGaugeVec,
    refusals: prometheus::IntCounterVec,
}

impl ActorMetrics {
    /// Creates the series and registers them in `registry`.
    pub fn register(registry: &prometheus::Registry) -> Result<Self, ActorsError> {
        let running = prometheus::IntGaugeVec::new(
            prometheus::Opts::new("deai_actors_running", "Actors alive now, by kind"),
            &["actor"],
        )
        .map_err(|e| ActorsError::Metrics(e.to_string()))?;
        let refusals = prometheus::IntCounterVec::new(
            prometheus::Opts::new("deai_actor_refusals_total", "Work an actor turned away, by actor and error code"),
            &["actor", "code"],
        )
        .map_err(|e| ActorsError::Metrics(e.to_string()))?;
        registry.register(Box::new(running.clone())).map_err(|e| ActorsError::Metrics(e.to_string()))?;
        registry.register(Box::new(refusals.clone())).map_err(|e| ActorsError::Metrics(e.to_string()))?;
        Ok(ActorMetrics { running, refusals })
    }

    /// Actors of kind `actor` alive now.
    pub fn running(&self, actor: &str) -> i64 {
        self.running.with_label_values(&[actor]).get()
    }

    pub(crate) fn started(&self, actor: &str) {
        self.running.with_label_values(&[actor]).inc();
    }

    pub(crate) fn stopped(&self, actor: &str) {
        self.running.with_label_values(&[actor]).dec();
    }

    pub(crate) fn refused(&self, actor: &str, code: &str) {
        self.refusals.with_label_values(&[actor, code]).inc();
    }

    /// Work actors of kind `actor` turned away with `code`.
    pub fn refusals(&self, actor: &str, code: &str) -> u64 {
        self.refusals.with_label_values(&[actor, code]).get()
    }
}

/// Tells a leader-only actor (the scheduler, a reward epoch) to stop: this node no longer leads.
///
/// Dropping an actor's address is not enough: actix keeps an actor alive while its own timers
/// run, so a deposed leader's scheduler would go on planning allocations that only collect
/// `not_leader`, on the thread the client queues share.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct StepDown;

impl Duties {
    /// Duties of the node behind `outbox`, with the actors' series registered in its registry.
    pub fn new(
        outbox: CoordinatorOutbox,
        identity: Arc<CoordinatorIdentity>,
        runtime: tokio::runtime::Handle,
        config: ActorsConfig,
    ) -> Result<Self, ActorsError> {
        let metrics = ActorMetrics::register(outbox.node().metrics().registry())?;
        Ok(Duties { outbox, identity, runtime, config, metrics })
    }

    /// The time on the node's clock, in ms since the Unix epoch: what the leader's batcher will
    /// stamp, so what a tick or an epoch close is compared with.
    pub(crate) fn now_ms(&self) -> u64 {
        self.outbox.node().clock().now_ms()
    }

    /// Whether this node leads now (a read of openraft's metrics watch; never blocks).
    pub(crate) fn leads(&self) -> bool {
        let node = self.outbox.node();
        node.raft.metrics().borrow().current_leader == Some(node.id)
    }

    /// Submits `message` through the outbox on the main runtime; the returned future only waits
    /// for the answer, so an actor can await it without holding the node's work on its thread.
    pub(crate) fn submit(
        &self,
        message: deai_protocol::Message,
    ) -> impl std::future::Future<Output = Result<deai_cluster::outbox::Submitted, deai_cluster::ClusterError>> + 'static
    {
        let outbox = self.outbox.clone();
        let work = self.runtime.spawn(async move { outbox.submit(message).await });
        async move { work.await.unwrap_or_else(|e| Err(deai_cluster::ClusterError::Fatal(e.to_string()))) }
    }
}

/// The actor system of one coordinator, on its own thread.
pub struct CoordinatorActors {
    system: actix::System,
    /// Set by [`stop`](Self::stop): the thread ending then is no failure.
    stopping: Arc<std::sync::atomic::AtomicBool>,
    client_queues: ClientQueues,
    miner_sessions: MinerSessions,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

/// Why the actor system could not start.
#[derive(Debug, thiserror::Error)]
pub enum ActorsError {
    #[error("cannot start the actor thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("the actor system stopped while starting")]
    Start,
    #[error("cannot register the actors' metrics: {0}")]
    Metrics(String),
}

impl ActorsError {
    pub fn code(&self) -> &'static str {
        match self {
            ActorsError::Thread(_) => "actors_thread",
            ActorsError::Start => "actors_start",
            ActorsError::Metrics(_) => "actors_metrics",
        }
    }
}

/// Runs the actor system on the current thread: every node's actors, then the registries the
/// API submits through, handed back on `started`.
fn run_system(duties: Duties, started: StartedSender) -> std::io::Result<()> {
    let system = actix::System::new();
    system.block_on(async {
        use actix::Actor;
        Leadership::new(duties.clone()).start();
        PayoutSigner::new(duties.clone()).start();
        if duties.config.sign_checkpoints {
            Checkpointer::new(duties.clone()).start();
        }
        let queues = ClientQueues::new(duties.clone(), actix::Arbiter::current());
        let sessions = MinerSessions::new(duties, actix::Arbiter::current());
        let _ = started.send((actix::System::current(), queues, sessions));
    });
    system.run()
}

type StartedSender = std::sync::mpsc::Sender<(actix::System, ClientQueues, MinerSessions)>;

impl CoordinatorActors {
    /// Starts [`Leadership`], [`PayoutSigner`] and (unless `sign_checkpoints` is off)
    /// [`Checkpointer`] on a new actix system thread.
    pub fn start(duties: Duties) -> Result<Self, ActorsError> {
        let (started, system) = std::sync::mpsc::channel();
        // The actor system is a critical task of the node: if its thread ends (an actor's panic
        // unwinds it) while the node runs, the node is not ready and stops.
        let critical = duties.outbox.node().critical_tasks().clone();
        let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped_on_purpose = stopping.clone();
        let thread = std::thread::Builder::new().name("deai-actors".into()).spawn(move || {
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_system(duties, started)));
            if !stopped_on_purpose.load(std::sync::atomic::Ordering::Acquire) {
                let why = match &ran {
                    Ok(Ok(())) => "ended".to_string(),
                    Ok(Err(e)) => format!("failed: {e}"),
                    Err(_) => "panicked".to_string(),
                };
                critical.report("actor system", &why);
            }
            ran.unwrap_or_else(|_| Err(std::io::Error::other("the actor system panicked")))
        })?;
        let (system, client_queues, miner_sessions) = system.recv().map_err(|_| ActorsError::Start)?;
        Ok(CoordinatorActors { system, stopping, client_queues, miner_sessions, thread: Some(thread) })
    }

    /// The registry of client queues, for the API to submit through.
    pub fn client_queues(&self) -> ClientQueues {
        self.client_queues.clone()
    }

    /// The registry of miner sessions, for the API to open sessions through.
    pub fn miner_sessions(&self) -> MinerSessions {
        self.miner_sessions.clone()
    }

    /// Stops every actor and waits for the thread to end. Proposals already handed to the main
    /// runtime finish there.
    pub fn stop(mut self) {
        self.stopping.store(true, std::sync::atomic::Ordering::Release);
        self.system.stop();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for CoordinatorActors {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.system.stop();
            let _ = thread.join();
        }
    }
}
