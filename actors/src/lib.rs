//! # deai-actors: a coordinator's duties as actors (SPEC 2)
//!
//! The ledger decides; these actors make it move. Each proposes coordinator-signed entries
//! through the node's [`CoordinatorOutbox`] and changes nothing itself.
//!
//! - [`Leadership`] (every node) watches Raft and starts the leader's duties when this node
//!   becomes leader, and stops them when it no longer is.
//! - [`Scheduler`] (leader) allocates pending orders in AVRF batches (SPEC 5.3, 5.4) and sends a
//!   `Tick` when time-driven work is due (deadlines, expiries, pruning).
//! - [`RewardEpoch`] (leader, one per epoch) closes its epoch at its boundary with the payouts
//!   every replica recomputes (SPEC 5.7).
//! - [`PayoutSigner`] (every node) signs each closed epoch's payout root, as the checkpointer
//!   signs checkpoints, so that a quorum certifies the payouts for L2 (SPEC 6).
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

// openraft's errors inside `ClusterError` are large; errors are the cold path.
#![allow(clippy::result_large_err)]

mod leadership;
mod payouts;
mod reward_epoch;
mod scheduler;

pub use leadership::Leadership;
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
    /// How often the scheduler looks for pending orders.
    pub allocate_every_ms: u64,
    /// Most orders in one `Allocate` (at most the protocol's `MAX_ALLOCATION_BATCH`).
    pub allocation_batch_orders: usize,
    /// How often the scheduler checks whether a `Tick` is due.
    pub tick_check_every_ms: u64,
    /// How often the payout signer looks for closed epochs to sign.
    pub payout_check_every_ms: u64,
}

impl Default for ActorsConfig {
    fn default() -> Self {
        ActorsConfig {
            leadership_poll_ms: 50,
            allocate_every_ms: 5,
            allocation_batch_orders: deai_protocol::ledger::MAX_ALLOCATION_BATCH,
            tick_check_every_ms: 200,
            payout_check_every_ms: 200,
        }
    }
}

/// What every actor needs: the node's outbox, its VRF key, the main runtime and the timers.
#[derive(Clone)]
pub struct Duties {
    pub outbox: CoordinatorOutbox,
    pub identity: Arc<CoordinatorIdentity>,
    pub runtime: tokio::runtime::Handle,
    pub config: ActorsConfig,
}

impl Duties {
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
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

/// Why the actor system could not start.
#[derive(Debug, thiserror::Error)]
pub enum ActorsError {
    #[error("cannot start the actor thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("the actor system stopped while starting")]
    Start,
}

impl ActorsError {
    pub fn code(&self) -> &'static str {
        match self {
            ActorsError::Thread(_) => "actors_thread",
            ActorsError::Start => "actors_start",
        }
    }
}

impl CoordinatorActors {
    /// Starts [`Leadership`] and [`PayoutSigner`] on a new actix system thread.
    pub fn start(duties: Duties) -> Result<Self, ActorsError> {
        let (started, system) = std::sync::mpsc::channel();
        let thread = std::thread::Builder::new().name("deai-actors".into()).spawn(move || {
            let system = actix::System::new();
            system.block_on(async {
                use actix::Actor;
                Leadership::new(duties.clone()).start();
                PayoutSigner::new(duties).start();
                let _ = started.send(actix::System::current());
            });
            system.run()
        })?;
        let system = system.recv().map_err(|_| ActorsError::Start)?;
        Ok(CoordinatorActors { system, thread: Some(thread) })
    }

    /// Stops every actor and waits for the thread to end. Proposals already handed to the main
    /// runtime finish there.
    pub fn stop(mut self) {
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
