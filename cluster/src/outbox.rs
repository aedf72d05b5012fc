//! The one place a coordinator signs its own ledger entries.
//!
//! Several duties sign with the coordinator's key: allocations and ticks (the scheduler), epoch
//! closes and payout signatures (the reward epoch), checkpoint signatures (the checkpointer).
//! Nonces must rise in log order (SPEC 3), so two duties sealing concurrently could see one
//! entry rejected as a replay. The outbox submits entries one at a time, in order: each waits
//! for its commit and for this node to apply it before the next is sealed, so the next nonce is
//! read from a ledger that already holds the previous one. Coordinator
//! entries are few (one allocation carries up to 512 orders), so one at a time is not a limit.
//!
//! On the leader, the batcher does the sealing, at the batch's formation: the leader's
//! allocation goes first in a batch (see [`lead_batches`](CoordinatorOutbox::lead_batches)),
//! and the outbox's messages take the nonces after it.
//!
//! A submission that the ledger rejects is returned as such; deciding whether to try again is
//! the duty's business (a stale allocation plan is simply replanned).

use crate::batcher::{HeadInstalled, HeadPlanner};
use crate::{ClusterError, Consistency, CoordinatorNode, Written};
use deai_protocol::message::Message;
use deai_protocol::types::ParticipantId;
use deai_protocol::SignedEnvelope;
use deai_storage::EntryOutcome;
use ed25519_dalek::SigningKey;
use std::sync::Arc;
use std::time::Duration;

/// Longest the outbox waits for this node to apply its own committed entry, in milliseconds.
pub const OWN_APPLY_WAIT_MS: u64 = 5_000;

/// What became of one submitted message.
#[derive(Debug)]
pub struct Submitted {
    pub written: Written,
    pub outcome: EntryOutcome,
}

impl Submitted {
    pub fn accepted(&self) -> bool {
        self.outcome == EntryOutcome::Accepted
    }

    /// The rejection code, if rejected.
    pub fn rejection(&self) -> Option<&str> {
        match &self.outcome {
            EntryOutcome::Accepted => None,
            EntryOutcome::Rejected { code, .. } => Some(code),
        }
    }
}

/// Signs and submits this coordinator's entries, in order. Clones share the order.
///
/// On the leader, the outbox hands its messages to the write batcher unsealed: the batcher
/// seals them when it forms their batch, after the allocation it may put at the batch's head,
/// so nonces follow log order without the allocation waiting for the outbox.
#[derive(Clone)]
pub struct CoordinatorOutbox {
    node: Arc<CoordinatorNode>,
    key: Arc<SigningKey>,
    turn: Arc<tokio::sync::Mutex<()>>,
}

impl CoordinatorOutbox {
    pub fn new(node: Arc<CoordinatorNode>, key: SigningKey) -> Self {
        CoordinatorOutbox { node, key: Arc::new(key), turn: Arc::default() }
    }

    /// This coordinator's id.
    pub fn id(&self) -> ParticipantId {
        ParticipantId(self.key.verifying_key().to_bytes())
    }

    /// The key, for detached signatures (checkpoints, payouts).
    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    pub fn node(&self) -> &Arc<CoordinatorNode> {
        &self.node
    }

    /// Has `planner` plan an entry of this coordinator's at the head of every batch its node
    /// proposes as leader, for as long as the returned value lives (see
    /// [`batcher`](crate::batcher)), and every `retry_ms` while no write arrives. The batcher
    /// seals it first in its batch, and this outbox's messages after it.
    pub fn lead_batches(&self, planner: HeadPlanner, retry_ms: u64) -> HeadInstalled {
        self.node.batcher().install_head(planner, retry_ms, self.key.clone())
    }

    /// Seals `message` with the next nonce, writes it through the leader (whose batcher stamps it),
    /// and waits until this node has applied it.
    pub async fn submit(&self, message: Message) -> Result<Submitted, ClusterError> {
        let _turn = self.turn.lock().await;
        let written = if self.node.leads() {
            // The leader's batcher seals it at its place in the log, after any allocation.
            self.node.write_own(message, self.key.clone()).await?
        } else {
            let me = self.id();
            let (network, nonce) =
                self.node.read(Consistency::Stale, |l| (l.network_id.clone(), l.next_nonce(&me))).await?;
            let envelope = SignedEnvelope::seal(&self.key, &network, nonce, &message);
            self.node.write(&[envelope]).await?
        };
        self.node
            .raft
            .wait(Some(Duration::from_millis(OWN_APPLY_WAIT_MS)))
            .applied_index_at_least(Some(written.log_index), "own entry applied")
            .await
            .map_err(|e| ClusterError::Raft(format!("own entry not applied in time: {e}")))?;
        let outcome = written
            .outcome
            .outcomes
            .first()
            .cloned()
            .ok_or_else(|| ClusterError::Raft("a write came back without an outcome".into()))?;
        Ok(Submitted { written, outcome })
    }
}
