//! The coordinator's side of SPEC 6.3: sign every checkpoint this node's ledger reaches.
//!
//! Every `checkpoint_every` accepted entries the ledger records a checkpoint `(height, root)`.
//! Each coordinator signs the root *its own* replica computed and submits the signature as a
//! `SignCheckpoint` entry; `ceil((2n+1)/3)` matching signatures form a quorum certificate, and a
//! coordinator whose replica diverged is recorded with its signed root as evidence. The loop wakes
//! when this node's Raft metrics change (new entries applied), never on a timer.

use crate::{ClusterError, Consistency, CoordinatorNode};
use deai_protocol::ledger::{checkpoint_signing_bytes, Entry};
use deai_protocol::message::{Message, SignCheckpoint};
use deai_protocol::types::ParticipantId;
use deai_protocol::SignedEnvelope;
use deai_storage::EntryOutcome;
use ed25519_dalek::{Signer, SigningKey};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};
use tokio::sync::watch;

/// Longest the signer waits for its own replica to apply its signature, in milliseconds.
pub const APPLY_WAIT_MS: u64 = 5_000;

/// Ledger time stamp from this node's clock, in ms since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// The next checkpoint this coordinator has not signed and that is not yet certified.
fn next_unsigned(node: &CoordinatorNode, me: &ParticipantId, after: u64) -> Option<(u64, [u8; 32], u64)> {
    let ledger = node.ledger().read();
    let (height, cp) =
        ledger.checkpoints.iter().find(|(h, cp)| **h > after && !cp.certified && !cp.signatures.contains_key(me))?;
    Some((*height, cp.root, ledger.next_nonce(me)))
}

/// Signs checkpoints as `key` until `stop` turns true. Returns the heights it signed.
pub async fn run(
    node: Arc<CoordinatorNode>,
    key: SigningKey,
    mut stop: watch::Receiver<bool>,
) -> Result<Vec<u64>, ClusterError> {
    let me = ParticipantId(key.verifying_key().to_bytes());
    let mut metrics = node.raft.metrics();
    let mut signed_up_to = 0u64;
    let mut signed = Vec::new();
    loop {
        if *stop.borrow() {
            return Ok(signed);
        }
        let network = node.read(Consistency::Stale, |l| l.network_id.clone()).await?;
        if let Some((height, root, nonce)) = next_unsigned(&node, &me, signed_up_to) {
            let signature = key.sign(&checkpoint_signing_bytes(&network, height, &root)).to_bytes();
            let message = Message::SignCheckpoint(SignCheckpoint { height, root, signature });
            let entry = Entry { stamped_ms: now_ms(), envelope: SignedEnvelope::seal(&key, &network, nonce, &message) };
            match node.write(&[entry]).await {
                Ok(written) => {
                    // Our own replica must apply it before the next nonce is read from it.
                    let applied = node
                        .raft
                        .wait(Some(std::time::Duration::from_millis(APPLY_WAIT_MS)))
                        .applied_index_at_least(Some(written.log_index), "own checkpoint signature applied")
                        .await;
                    match written.outcome.outcomes.first() {
                        Some(EntryOutcome::Accepted) => {
                            signed_up_to = height;
                            signed.push(height);
                        }
                        Some(EntryOutcome::Rejected { code, .. }) if code == "already_signed" => {
                            signed_up_to = height;
                        }
                        // Rejected for another reason (a stale nonce, say): try again once this
                        // replica has caught up.
                        _ => {}
                    }
                    if applied.is_ok() {
                        continue;
                    }
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
