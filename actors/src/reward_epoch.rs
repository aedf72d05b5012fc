//! One reward epoch, on the leader: closes it at its boundary (SPEC 5.7).
//!
//! The epoch ends at `start_ms + epoch_ms` of ledger time. Ledger time only moves with entries,
//! so the actor waits on this node's clock until the boundary, then proposes `CloseEpoch` with
//! `Ledger::expected_payouts` (which every replica recomputes, rejecting a difference). The
//! entry's stamp carries ledger time past the boundary. Until the close is accepted it tries
//! again every `RETRY_CLOSE_MS`; once the ledger's open epoch has moved on, it stops.

use crate::{Duties, StepDown, MAILBOX_CAPACITY};
use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, WrapFuture};
use deai_cluster::outbox::Submitted;
use deai_cluster::ClusterError;
use deai_protocol::message::{CloseEpoch, Message};
use std::time::Duration;

/// Pause between attempts to close an epoch, in milliseconds.
pub const RETRY_CLOSE_MS: u64 = 100;

/// The leader's duty for one epoch.
pub struct RewardEpoch {
    duties: Duties,
    number: u64,
    in_flight: bool,
}

impl RewardEpoch {
    pub fn new(duties: Duties, number: u64) -> Self {
        RewardEpoch { duties, number, in_flight: false }
    }

    fn try_close(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight {
            return;
        }
        if !self.duties.leads() {
            ctx.stop();
            return;
        }
        let (open, ends_ms, payouts) = {
            let ledger = self.duties.outbox.node().ledger().read();
            (ledger.epoch.number, ledger.epoch_ends_ms(), ledger.expected_payouts().1)
        };
        if open != self.number {
            ctx.stop();
            return;
        }
        if self.duties.now_ms() < ends_ms {
            return;
        }
        self.in_flight = true;
        let message = Message::CloseEpoch(CloseEpoch { epoch: self.number, payouts });
        let number = self.number;
        let done = self.duties.submit(message).into_actor(self).map(
            move |result: Result<Submitted, ClusterError>, act, ctx| {
                act.in_flight = false;
                match result {
                    Ok(s) if s.accepted() => {
                        tracing::info!(epoch = number, "epoch closed");
                        ctx.stop();
                    }
                    Ok(s) => tracing::warn!(epoch = number, code = ?s.rejection(), "epoch close rejected; retrying"),
                    Err(e) => tracing::debug!(epoch = number, error = %e, "epoch close failed; retrying"),
                }
            },
        );
        ctx.spawn(done);
    }
}

impl Actor for RewardEpoch {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.duties.metrics.started("reward_epoch");
        let ends_ms = self.duties.outbox.node().ledger().read().epoch_ends_ms();
        let wait_ms = ends_ms.saturating_sub(self.duties.now_ms());
        tracing::debug!(epoch = self.number, wait_ms, "reward epoch waiting for its boundary");
        ctx.run_later(Duration::from_millis(wait_ms), |act, ctx| {
            act.try_close(ctx);
            ctx.run_interval(Duration::from_millis(RETRY_CLOSE_MS), |act, ctx| act.try_close(ctx));
        });
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.duties.metrics.stopped("reward_epoch");
    }
}

impl Handler<StepDown> for RewardEpoch {
    type Result = ();

    fn handle(&mut self, _: StepDown, ctx: &mut Self::Context) {
        ctx.stop();
    }
}
