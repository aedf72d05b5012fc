//! The coordinator's side of SPEC 6.3: sign every checkpoint this node's ledger reaches.
//!
//! Every `checkpoint_every` accepted entries the ledger records a checkpoint `(height, root)`.
//! Each coordinator signs the root *its own* replica computed and submits the signature as a
//! `SignCheckpoint` entry; `ceil((2n+1)/3)` matching signatures form a quorum certificate, and a
//! coordinator whose replica diverged is recorded with its signed root as evidence. Signing wakes
//! when this node's ledger changes, and on a timer only to retry a signature that could not be
//! written.

use crate::outbox::CoordinatorOutbox;
use crate::{ClusterError, Consistency, CoordinatorNode};
use deai_protocol::ledger::checkpoint_signing_bytes;
use deai_protocol::message::{Message, SignCheckpoint};
use deai_protocol::types::ParticipantId;
use ed25519_dalek::Signer;
use tokio::sync::watch;

/// After a signature could not be written (no reachable leader), wait this long before trying
/// again, in milliseconds.
pub const CHECKPOINT_RETRY_MS: u64 = 500;

/// The next checkpoint this coordinator has not signed and that is not yet certified, above
/// height `after`: its height and this replica's root.
pub fn next_unsigned(node: &CoordinatorNode, me: &ParticipantId, after: u64) -> Option<(u64, [u8; 32])> {
    let ledger = node.ledger().read();
    let (height, cp) =
        ledger.checkpoints.iter().find(|(h, cp)| **h > after && !cp.certified && !cp.signatures.contains_key(me))?;
    Some((*height, cp.root))
}

/// What became of one checkpoint signature.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signing {
    /// Written: this coordinator's signature is in the ledger.
    Signed,
    /// The ledger already held it.
    AlreadySigned,
    /// Rejected for another reason (a stale nonce after a leader change, say) or not written
    /// (no reachable leader): try again.
    Retry,
}

/// Signs `root` at `height` with the outbox's key and submits it as a `SignCheckpoint`.
/// Transient cluster errors come back as [`Signing::Retry`]; others as errors.
pub async fn sign_checkpoint(outbox: &CoordinatorOutbox, height: u64, root: [u8; 32]) -> Result<Signing, ClusterError> {
    let node = outbox.node();
    let network = node.read(Consistency::Stale, |l| l.network_id.clone()).await?;
    let signature = outbox.key().sign(&checkpoint_signing_bytes(&network, height, &root)).to_bytes();
    match outbox.submit(Message::SignCheckpoint(SignCheckpoint { height, root, signature })).await {
        Ok(submitted) => Ok(match submitted.rejection() {
            None => Signing::Signed,
            Some("already_signed") => Signing::AlreadySigned,
            Some(_) => Signing::Retry,
        }),
        Err(e) if e.is_transient() => {
            tracing::debug!(height, error = %e, "checkpoint signature not written yet; will retry");
            Ok(Signing::Retry)
        }
        Err(e) => Err(e),
    }
}

/// Signs checkpoints through `outbox` until `stop` turns true, as a task of its own (a node run
/// without the actors; coordinators run the `Checkpointer` actor, which drives the same steps).
/// Returns the heights it signed.
pub async fn run(outbox: CoordinatorOutbox, mut stop: watch::Receiver<bool>) -> Result<Vec<u64>, ClusterError> {
    let node = outbox.node().clone();
    let me = outbox.id();
    let mut changes = node.ledger().changes();
    let mut signed_up_to = 0u64;
    let mut signed = Vec::new();
    loop {
        if *stop.borrow() {
            return Ok(signed);
        }
        changes.borrow_and_update();
        let mut retry = false;
        if let Some((height, root)) = next_unsigned(&node, &me, signed_up_to) {
            match sign_checkpoint(&outbox, height, root).await? {
                Signing::Signed => {
                    signed_up_to = height;
                    signed.push(height);
                    continue;
                }
                Signing::AlreadySigned => {
                    signed_up_to = height;
                    continue;
                }
                Signing::Retry => retry = true,
            }
        }
        let pause = std::time::Duration::from_millis(CHECKPOINT_RETRY_MS);
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { return Ok(signed) },
            changed = stop.changed() => if changed.is_err() { return Ok(signed) },
            _ = tokio::time::sleep(pause), if retry => {}
        }
    }
}
