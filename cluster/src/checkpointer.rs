//! The coordinator's side of SPEC 6.3: sign every checkpoint this node's ledger reaches.
//!
//! Every `checkpoint_every` accepted entries the ledger records a checkpoint `(height, root)`.
//! Each coordinator signs the root *its own* replica computed and submits the signature as a
//! `SignCheckpoint` entry; `ceil((2n+1)/3)` matching signatures form a quorum certificate, and a
//! coordinator whose replica diverged is recorded with its signed root as evidence. The loop wakes
//! when this node's Raft metrics change (new entries applied), never on a timer.

use crate::outbox::CoordinatorOutbox;
use crate::{ClusterError, Consistency, CoordinatorNode};
use deai_protocol::ledger::checkpoint_signing_bytes;
use deai_protocol::message::{Message, SignCheckpoint};
use deai_protocol::types::ParticipantId;
use ed25519_dalek::Signer;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Ledger time stamp from this node's clock, in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The next checkpoint this coordinator has not signed and that is not yet certified.
fn next_unsigned(node: &CoordinatorNode, me: &ParticipantId, after: u64) -> Option<(u64, [u8; 32])> {
    let ledger = node.ledger().read();
    let (height, cp) =
        ledger.checkpoints.iter().find(|(h, cp)| **h > after && !cp.certified && !cp.signatures.contains_key(me))?;
    Some((*height, cp.root))
}

/// Signs checkpoints through `outbox` until `stop` turns true. Returns the heights it signed.
pub async fn run(outbox: CoordinatorOutbox, mut stop: watch::Receiver<bool>) -> Result<Vec<u64>, ClusterError> {
    let node = outbox.node().clone();
    let me = outbox.id();
    let mut metrics = node.raft.metrics();
    let mut signed_up_to = 0u64;
    let mut signed = Vec::new();
    loop {
        if *stop.borrow() {
            return Ok(signed);
        }
        if let Some((height, root)) = next_unsigned(&node, &me, signed_up_to) {
            let network = node.read(Consistency::Stale, |l| l.network_id.clone()).await?;
            let signature = outbox.key().sign(&checkpoint_signing_bytes(&network, height, &root)).to_bytes();
            match outbox.submit(Message::SignCheckpoint(SignCheckpoint { height, root, signature })).await {
                Ok(submitted) => {
                    match submitted.rejection() {
                        None => {
                            signed_up_to = height;
                            signed.push(height);
                        }
                        Some("already_signed") => signed_up_to = height,
                        // Rejected for another reason (a stale nonce after a leader change, say):
                        // try again.
                        Some(_) => {}
                    }
                    continue;
                }
                // No reachable leader right now: wait for the cluster to change and try again.
                Err(e) if e.is_transient() => {
                    tracing::debug!(height, error = %e, "checkpoint signature not written yet; will retry")
                }
                Err(e) => return Err(e),
            }
        }
        tokio::select! {
            changed = metrics.changed() => if changed.is_err() { return Ok(signed) },
            changed = stop.changed() => if changed.is_err() { return Ok(signed) },
        }
    }
}
