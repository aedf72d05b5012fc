//! Starts the leader's duties when this node leads and stops them when it does not.
//!
//! Polls openraft's metrics every `leadership_poll_ms` on the actor thread (reading a watch
//! channel is cheap and never blocks). On gaining leadership it starts a [`Scheduler`] and the
//! [`RewardEpoch`] of the open epoch; when that epoch closes it starts the next one. On losing
//! leadership it tells them to stop ([`StepDown`](crate::StepDown)): a deposed leader proposing
//! would only collect rejections.

use crate::{Duties, RewardEpoch, Scheduler, StepDown, MAILBOX_CAPACITY};
use actix::{Actor, Addr, AsyncContext, Context, Handler, Message};
use std::time::Duration;

/// The leadership watch of one node.
pub struct Leadership {
    duties: Duties,
    scheduler: Option<Addr<Scheduler>>,
    epoch: Option<(u64, Addr<RewardEpoch>)>,
}

impl Leadership {
    pub fn new(duties: Duties) -> Self {
        Leadership { duties, scheduler: None, epoch: None }
    }

    fn check(&mut self) {
        if !self.duties.leads() {
            if let Some(scheduler) = self.scheduler.take() {
                scheduler.do_send(StepDown);
                tracing::info!("no longer leader: scheduler and reward epoch stopped");
            }
            if let Some((_, epoch)) = self.epoch.take() {
                epoch.do_send(StepDown);
            }
            return;
        }
        if self.scheduler.is_none() {
            tracing::info!("leader: starting the scheduler and the reward epoch");
            self.scheduler = Some(Scheduler::new(self.duties.clone()).start());
        }
        let open = self.duties.outbox.node().ledger().read().epoch.number;
        if self.epoch.as_ref().map(|(n, _)| *n) != Some(open) {
            // A closed epoch's actor stops by itself; one still running is told to.
            if let Some((_, previous)) = self.epoch.take() {
                previous.do_send(StepDown);
            }
            self.epoch = Some((open, RewardEpoch::new(self.duties.clone(), open).start()));
        }
    }
}

impl Actor for Leadership {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.duties.metrics.started("leadership");
        self.check();
        ctx.run_interval(Duration::from_millis(self.duties.config.leadership_poll_ms), |act, _| act.check());
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.duties.metrics.stopped("leadership");
    }
}

/// Asks whether this node's leader duties are running (for tests and status).
#[derive(Message)]
#[rtype(result = "bool")]
pub struct DutiesRunning;

impl Handler<DutiesRunning> for Leadership {
    type Result = bool;
    fn handle(&mut self, _: DutiesRunning, _: &mut Self::Context) -> bool {
        self.scheduler.is_some()
    }
}
