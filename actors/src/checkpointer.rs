//! Every coordinator signs each checkpoint its own replica reaches (SPEC 6.3).
//!
//! Every `checkpoint_every` accepted entries the ledger records `(height, root)`; a quorum of
//! coordinators signing the same root makes the quorum certificate outside parties check, and a
//! coordinator that signed another root is recorded as diverged. The `Checkpointer` wakes on
//! each change of this node's ledger, signs the lowest checkpoint it has not signed (the root its
//! own replica computed, never one it was told), one at a time, and retries a signature that
//! could not be written after `CHECKPOINT_RETRY_MS`. The steps are
//! `deai_cluster::checkpointer`'s; this actor drives them on every coordinator.

use crate::{Duties, MAILBOX_CAPACITY};
use actix::{Actor, ActorContext, ActorFutureExt, AsyncContext, Context, Handler, Message as ActixMessage, WrapFuture};
use deai_cluster::checkpointer::{next_unsigned, sign_checkpoint, Signing, CHECKPOINT_RETRY_MS};
use deai_cluster::ClusterError;
use std::time::Duration;

/// Signs this node's checkpoints.
pub struct Checkpointer {
    duties: Duties,
    in_flight: bool,
    /// Checkpoints at or below this height are signed (or were already).
    signed_up_to: u64,
}

impl Checkpointer {
    pub fn new(duties: Duties) -> Self {
        Checkpointer { duties, in_flight: false, signed_up_to: 0 }
    }

    fn sign_next(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight {
            return;
        }
        let outbox = self.duties.outbox.clone();
        let Some((height, root)) = next_unsigned(outbox.node(), &outbox.id(), self.signed_up_to) else { return };
        self.in_flight = true;
        let signing = self.duties.runtime.spawn(async move { sign_checkpoint(&outbox, height, root).await });
        let done = async move {
            signing.await.unwrap_or_else(|e| Err(ClusterError::Fatal(format!("checkpoint signing stopped: {e}"))))
        }
        .into_actor(self)
        .map(move |result, act, ctx| {
            act.in_flight = false;
            match result {
                Ok(Signing::Signed) => {
                    tracing::debug!(height, "signed the checkpoint");
                    act.signed_up_to = height;
                    act.sign_next(ctx);
                }
                Ok(Signing::AlreadySigned) => {
                    act.signed_up_to = height;
                    act.sign_next(ctx);
                }
                Ok(Signing::Retry) => {
                    ctx.run_later(Duration::from_millis(CHECKPOINT_RETRY_MS), |act, ctx| act.sign_next(ctx));
                }
                Err(e) => {
                    tracing::error!(code = e.code(), error = %e, "checkpoint signing stopped; this node no longer signs");
                    ctx.stop();
                }
            }
        });
        ctx.spawn(done);
    }
}

impl Actor for Checkpointer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.duties.metrics.started("checkpointer");
        let (node, checkpointer) = (self.duties.outbox.node().clone(), ctx.address());
        self.duties.runtime.spawn(async move {
            let mut changes = node.ledger().changes();
            while changes.changed().await.is_ok() && checkpointer.connected() {
                // A full mailbox already holds a wake-up.
                if let Err(actix::dev::SendError::Closed(_)) = checkpointer.try_send(LedgerChanged) {
                    return;
                }
            }
        });
        self.sign_next(ctx);
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.duties.metrics.stopped("checkpointer");
    }
}

/// This node's ledger changed.
#[derive(ActixMessage)]
#[rtype(result = "()")]
struct LedgerChanged;

impl Handler<LedgerChanged> for Checkpointer {
    type Result = ();

    fn handle(&mut self, _: LedgerChanged, ctx: &mut Self::Context) {
        self.sign_next(ctx);
    }
}
