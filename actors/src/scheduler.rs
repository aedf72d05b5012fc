//! The leader's scheduler: AVRF allocation in batches (SPEC 5.3, 5.4) and `Tick`s.
//!
//! When this node applies a new entry, and at the latest every `allocate_every_ms`, it asks the
//! ledger for a plan over the pending orders (`Ledger::plan_allocation`: interleaved WRR order,
//! one VRF evaluation per batch) and proposes it as an `Allocate`. The plan is made on the main
//! runtime's blocking pool, not on the actor thread, and not again while the ledger stands where
//! the last plan found nothing to allocate. Only one proposal is in flight at a time: the next
//! plan is made from a ledger that holds the previous one, so two plans never claim the same
//! order. Orders queue in
//! the ledger while a proposal is in flight, so batches grow with the load.
//!
//! A `Tick` carries ledger time forward for time-driven rules (deadlines, expiries, lapsed
//! reports, closing proposals, pruning). It is proposed only when [`tick_due`] finds work.

use crate::{Duties, StepDown, MAILBOX_CAPACITY};
use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, Message as ActixMessage, WrapFuture};
use deai_cluster::outbox::Submitted;
use deai_cluster::ClusterError;
use deai_protocol::message::{Message, Tick};
use deai_protocol::Ledger;
use std::time::Duration;

/// Whether a `Tick` at `now_ms` would do anything.
pub fn tick_due(ledger: &Ledger, now_ms: u64) -> bool {
    let due = |first: Option<u64>| first.is_some_and(|t| t <= now_ms);
    due(ledger.deadlines.first().map(|d| d.0))
        || due(ledger.pending_deadlines.first().map(|d| d.0))
        || due(ledger.report_deadlines.first().map(|d| d.0))
        || due(ledger.proposal_deadlines.first().map(|d| d.0))
        || due(ledger.finished.first().map(|d| d.0.saturating_add(ledger.params.order_retention_ms)))
}

/// The leader's allocation and tick duty.
pub struct Scheduler {
    duties: Duties,
    in_flight: bool,
    /// The ledger height at which the last plan came back empty: until the ledger moves, a new
    /// plan would come back empty too.
    nothing_to_plan_at: Option<u64>,
}

impl Scheduler {
    pub fn new(duties: Duties) -> Self {
        Scheduler { duties, in_flight: false, nothing_to_plan_at: None }
    }

    fn propose(&mut self, message: Message, what: &'static str, ctx: &mut Context<Self>) {
        self.in_flight = true;
        let done =
            self.duties.submit(message).into_actor(self).map(move |result: Result<Submitted, ClusterError>, act, _| {
                act.in_flight = false;
                match result {
                    Ok(s) if s.accepted() => tracing::debug!(what, log_index = s.written.log_index, "proposed"),
                    // A plan made from a ledger that moved meanwhile: the next round replans.
                    Ok(s) => tracing::debug!(what, code = ?s.rejection(), "proposal rejected"),
                    Err(e) => tracing::debug!(what, error = %e, "proposal failed"),
                }
            });
        ctx.spawn(done);
    }

    /// Stops this scheduler if the node no longer leads; true if it stopped.
    fn deposed(&self, ctx: &mut Context<Self>) -> bool {
        if self.duties.leads() {
            return false;
        }
        ctx.stop();
        true
    }

    fn allocate(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight || self.deposed(ctx) {
            return;
        }
        let height = {
            let ledger = self.duties.outbox.node().ledger().read();
            if ledger.pending.is_empty() {
                return;
            }
            ledger.height
        };
        if self.nothing_to_plan_at == Some(height) {
            return;
        }
        // Planning proves a VRF and replays the batch: CPU work, done on the main runtime's
        // blocking pool so that the actor thread stays free for the client queues.
        self.in_flight = true;
        let (node, identity) = (self.duties.outbox.node().clone(), self.duties.identity.clone());
        let max_orders = self.duties.config.allocation_batch_orders;
        let planning = self.duties.runtime.spawn_blocking(move || {
            let ledger = node.ledger().read();
            (ledger.height, ledger.plan_allocation(&identity.vrf, max_orders))
        });
        let planned = async move { planning.await.ok() }.into_actor(self).map(|planned, act, ctx| {
            act.in_flight = false;
            match planned {
                Some((_, Some(plan))) => {
                    act.nothing_to_plan_at = None;
                    act.propose(Message::Allocate(plan), "allocate", ctx);
                }
                Some((height, None)) => act.nothing_to_plan_at = Some(height),
                None => tracing::warn!("allocation planning stopped unexpectedly; planning again"),
            }
        });
        ctx.spawn(planned);
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight || self.deposed(ctx) {
            return;
        }
        let now = deai_cluster::checkpointer::now_ms();
        if tick_due(&self.duties.outbox.node().ledger().read(), now) {
            self.propose(Message::Tick(Tick {}), "tick", ctx);
        }
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.duties.metrics.started("scheduler");
        // Woken by each newly applied entry (an order may have arrived), on top of the timer.
        let (node, scheduler) = (self.duties.outbox.node().clone(), ctx.address());
        self.duties.runtime.spawn(async move {
            let mut changes = node.ledger().changes();
            while changes.changed().await.is_ok() && scheduler.connected() {
                // A full mailbox already holds a wake-up.
                if let Err(actix::dev::SendError::Closed(_)) = scheduler.try_send(Applied) {
                    return;
                }
            }
        });
        let config = &self.duties.config;
        ctx.run_interval(Duration::from_millis(config.allocate_every_ms), |act, ctx| act.allocate(ctx));
        ctx.run_interval(Duration::from_millis(config.tick_check_every_ms), |act, ctx| act.tick(ctx));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.duties.metrics.stopped("scheduler");
    }
}

/// This node applied a new entry.
#[derive(ActixMessage)]
#[rtype(result = "()")]
struct Applied;

impl Handler<Applied> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: Applied, ctx: &mut Self::Context) {
        self.allocate(ctx);
    }
}

impl Handler<StepDown> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: StepDown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
