//! The leader's scheduler: AVRF allocation in batches (SPEC 5.3, 5.4) and `Tick`s.
//!
//! Allocation rides at the head of the leader's write batches: while it runs, the scheduler has
//! its node's batcher ask `Ledger::plan_allocation` (interleaved WRR order, one VRF evaluation
//! per batch) each time a batch is formed, and put the `Allocate` first in it (see
//! `deai_cluster::batcher`). The plan is made from the ledger exactly as the batch finds it, so
//! it never goes stale, and an order is allocated in the batch after its own. With no writes
//! coming, the batcher plans again every `allocate_every_ms`. Stopping the scheduler (on losing
//! leadership) removes the planner.
//!
//! A `Tick` carries ledger time forward for time-driven rules (deadlines, expiries, lapsed
//! reports, closing proposals, pruning), and keeps an idle ledger's time within half a step of
//! the leader's clock. It is proposed only when [`tick_due`] finds work.

use crate::{Duties, StepDown, MAILBOX_CAPACITY};
use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, WrapFuture};
use deai_cluster::batcher::{HeadInstalled, HeadPlanner};
use deai_cluster::outbox::Submitted;
use deai_cluster::ClusterError;
use deai_protocol::message::{Message, Tick};
use deai_protocol::Ledger;
use std::sync::Arc;
use std::time::Duration;

/// Whether a `Tick` at `now_ms` would do anything: a deadline has passed, or ledger time trails
/// the clock by more than half of the furthest one entry may move it, so that an idle ledger
/// keeps up and the next order's deadlines are not measured from a stale time.
pub fn tick_due(ledger: &Ledger, now_ms: u64) -> bool {
    let due = |first: Option<u64>| first.is_some_and(|t| t <= now_ms);
    now_ms.saturating_sub(ledger.now_ms) > ledger.params.max_ledger_step_ms / 2
        || due(ledger.deadlines.first().map(|d| d.0))
        || due(ledger.pending_deadlines.first().map(|d| d.0))
        || due(ledger.report_deadlines.first().map(|d| d.0))
        || due(ledger.proposal_deadlines.first().map(|d| d.0))
        || due(ledger.finished.first().map(|d| d.0.saturating_add(ledger.params.order_retention_ms)))
}

/// The leader's allocation and tick duty.
pub struct Scheduler {
    duties: Duties,
    tick_in_flight: bool,
    /// The allocation planner installed at the head of the node's batches, while running.
    allocating: Option<HeadInstalled>,
}

impl Scheduler {
    pub fn new(duties: Duties) -> Self {
        Scheduler { duties, tick_in_flight: false, allocating: None }
    }

    /// Stops this scheduler if the node no longer leads; true if it stopped.
    fn deposed(&self, ctx: &mut Context<Self>) -> bool {
        if self.duties.leads() {
            return false;
        }
        ctx.stop();
        true
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        if self.tick_in_flight || self.deposed(ctx) {
            return;
        }
        let now = self.duties.now_ms();
        if !tick_due(&self.duties.outbox.node().ledger().read(), now) {
            return;
        }
        self.tick_in_flight = true;
        let done = self.duties.submit(Message::Tick(Tick {})).into_actor(self).map(
            |result: Result<Submitted, ClusterError>, act, _| {
                act.tick_in_flight = false;
                match result {
                    Ok(s) if s.accepted() => tracing::debug!(log_index = s.written.log_index, "tick proposed"),
                    Ok(s) => tracing::debug!(code = ?s.rejection(), "tick rejected"),
                    Err(e) => tracing::debug!(error = %e, "tick failed"),
                }
            },
        );
        ctx.spawn(done);
    }
}

impl Actor for Scheduler {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.duties.metrics.started("scheduler");
        let (identity, config) = (self.duties.identity.clone(), &self.duties.config);
        let max_orders = config.allocation_batch_orders;
        let planner: HeadPlanner =
            Arc::new(move |ledger: &Ledger| ledger.plan_allocation(&identity.vrf, max_orders).map(Message::Allocate));
        self.allocating = Some(self.duties.outbox.lead_batches(planner, config.allocate_every_ms));
        ctx.run_interval(Duration::from_millis(config.tick_check_every_ms), |act, ctx| act.tick(ctx));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.allocating = None;
        self.duties.metrics.stopped("scheduler");
    }
}

impl Handler<StepDown> for Scheduler {
    type Result = ();

    fn handle(&mut self, _: StepDown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
