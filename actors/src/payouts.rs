//! Every coordinator signs each closed epoch's payout root (SPEC 5.7, 6).
//!
//! The payouts of a closed epoch are released on L2 against a quorum of coordinator signatures
//! over `(network, epoch, payouts_root)`. Like checkpoint signing, each coordinator signs the
//! root *its own* replica recorded, never one it was told.

use crate::{Duties, MAILBOX_CAPACITY};
use actix::{Actor, ActorFutureExt, AsyncContext, Context, WrapFuture};
use deai_cluster::outbox::Submitted;
use deai_cluster::ClusterError;
use deai_protocol::ledger::payouts_signing_bytes;
use deai_protocol::message::{Message, SignPayouts};
use ed25519_dalek::Signer;
use std::time::Duration;

/// Signs closed epochs' payouts on one node.
pub struct PayoutSigner {
    duties: Duties,
    in_flight: bool,
}

impl PayoutSigner {
    pub fn new(duties: Duties) -> Self {
        PayoutSigner { duties, in_flight: false }
    }

    fn sign_next(&mut self, ctx: &mut Context<Self>) {
        if self.in_flight {
            return;
        }
        let me = self.duties.outbox.id();
        let next = {
            let ledger = self.duties.outbox.node().ledger().read();
            if !ledger.is_coordinator(&me) {
                return;
            }
            ledger
                .closed_epochs
                .values()
                .find(|e| !e.certified && !e.signatures.contains_key(&me))
                .map(|e| (e.number, e.payouts_root, ledger.network_id.clone()))
        };
        let Some((epoch, payouts_root, network)) = next else { return };
        let signature =
            self.duties.outbox.key().sign(&payouts_signing_bytes(&network, epoch, &payouts_root)).to_bytes();
        self.in_flight = true;
        let message = Message::SignPayouts(SignPayouts { epoch, payouts_root, signature });
        let done =
            self.duties.submit(message).into_actor(self).map(move |result: Result<Submitted, ClusterError>, act, _| {
                act.in_flight = false;
                match result {
                    Ok(s) if s.accepted() => tracing::info!(epoch, "signed the epoch's payouts"),
                    Ok(s) => tracing::debug!(epoch, code = ?s.rejection(), "payout signature rejected"),
                    Err(e) => tracing::debug!(epoch, error = %e, "payout signature not written; will retry"),
                }
            });
        ctx.spawn(done);
    }
}

impl Actor for PayoutSigner {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.set_mailbox_capacity(MAILBOX_CAPACITY);
        self.duties.metrics.started("payout_signer");
        let every = Duration::from_millis(self.duties.config.payout_check_every_ms);
        ctx.run_interval(every, |act, ctx| act.sign_next(ctx));
    }

    fn stopped(&mut self, _: &mut Self::Context) {
        self.duties.metrics.stopped("payout_signer");
    }
}
