//! Contributions and epoch close (SPEC 5.7, paper eq. 3 and 4) and m-of-c payout signatures
//! (SPEC 6.4). Every replica recomputes the payouts the leader proposes.

use super::{credit, Ctx, Effects, EpochRecord, Event, Ledger, OpenEpoch, MAX_EPOCHS_RETAINED};
use crate::envelope::verify_detached;
use crate::error::Rejection;
use crate::hash::{hash_fixed, merkle_root};
use crate::message::{CloseEpoch, SignPayouts};
use crate::rules;
use crate::types::{Amount, AssetId, Digest, ParticipantId};
use std::collections::BTreeMap;

/// Merkle root committing to an epoch's payout list (SPEC 6.4): one leaf per payout,
/// `H("payout-leaf", epoch, miner, amount)`, in list order.
pub fn payouts_root(epoch: u64, payouts: &[(ParticipantId, Amount)]) -> Digest {
    let leaves: Vec<Digest> = payouts
        .iter()
        .map(|(id, amount)| hash_fixed("payout-leaf", &[&epoch.to_le_bytes(), &id.0, &amount.to_le_bytes()]))
        .collect();
    merkle_root(&leaves)
}

impl Ledger {
    /// The open epoch's reward `R` (inflation plus carried dust) and the payouts every replica
    /// computes: miners with a contribution, ascending id.
    pub fn expected_payouts(&self) -> (Amount, Vec<(ParticipantId, Amount)>) {
        let inflation =
            rules::epoch_reward(self.totals.total_supply, self.params.inflation_ppm_per_year, self.params.epoch_ms);
        let reward = inflation.saturating_add(self.epoch.carried);
        let contributions: Vec<([u8; 32], u128)> =
            self.epoch.contributions.iter().filter(|(_, &c)| c > 0).map(|(id, &c)| (id.0, c)).collect();
        if contributions.is_empty() {
            return (reward, Vec::new());
        }
        let payouts =
            rules::split_rewards(&contributions, reward).into_iter().map(|(id, a)| (ParticipantId(id), a)).collect();
        (reward, payouts)
    }

    /// When the open epoch may close (ledger time).
    pub fn epoch_ends_ms(&self) -> u64 {
        self.epoch.start_ms.saturating_add(self.params.epoch_ms)
    }

    pub(super) fn close_epoch(&mut self, ctx: &Ctx<'_>, m: CloseEpoch, fx: &mut Effects) -> Result<(), Rejection> {
        if m.epoch != self.epoch.number {
            return Err(Rejection::WrongEpoch { open: self.epoch.number, got: m.epoch });
        }
        let ends_at_ms = self.epoch_ends_ms();
        if ctx.now < ends_at_ms {
            return Err(Rejection::EpochNotOver { epoch: m.epoch, ends_at_ms });
        }
        let (reward, payouts) = self.expected_payouts();
        if m.payouts != payouts {
            return Err(Rejection::PayoutMismatch { leader: ctx.signer, epoch: m.epoch });
        }
        let paid: Amount = payouts.iter().map(|p| p.1).sum();
        debug_assert!(payouts.is_empty() || paid == reward, "split_rewards sums to the reward");
        for (id, amount) in &payouts {
            let have = self.accounts.get(id).map(|a| a.balance(AssetId::NATIVE)).unwrap_or(0);
            have.checked_add(*amount).ok_or(Rejection::Overflow)?;
        }
        self.totals.total_supply.checked_add(paid).ok_or(Rejection::Overflow)?;
        self.totals.minted.checked_add(paid).ok_or(Rejection::Overflow)?;
        self.held_supply(AssetId::NATIVE).and_then(|h| h.checked_add(paid)).ok_or(Rejection::Overflow)?;

        // Accepted.
        for (id, amount) in &payouts {
            if *amount > 0 {
                credit(&mut self.accounts.entry(*id).or_default().balances, AssetId::NATIVE, *amount)?;
            }
        }
        self.totals.minted += paid;
        self.totals.total_supply += paid;
        let carried = if payouts.is_empty() { reward } else { 0 };
        let closed = std::mem::replace(
            &mut self.epoch,
            OpenEpoch { number: m.epoch + 1, start_ms: ends_at_ms, contributions: BTreeMap::new(), carried },
        );
        let record = EpochRecord {
            number: closed.number,
            start_ms: closed.start_ms,
            end_ms: ends_at_ms,
            contributions: closed.contributions.into_iter().collect(),
            reward,
            payouts_root: payouts_root(closed.number, &payouts),
            payouts,
            signatures: BTreeMap::new(),
            certified: false,
        };
        self.closed_epochs.insert(record.number, record);
        while self.closed_epochs.len() > MAX_EPOCHS_RETAINED {
            self.closed_epochs.pop_first();
        }
        fx.events.push(Event::EpochClosed { epoch: closed.number, reward, paid, carried });
        Ok(())
    }

    /// A coordinator signs an epoch's payout root; `quorum` signatures certify it for L2.
    pub(super) fn sign_payouts(&mut self, ctx: &Ctx<'_>, m: SignPayouts, fx: &mut Effects) -> Result<(), Rejection> {
        let bytes = super::payouts_signing_bytes(&self.network_id, m.epoch, &m.payouts_root);
        if !verify_detached(&ctx.signer, &bytes, &m.signature) {
            return Err(Rejection::BadCheckpointSignature);
        }
        let quorum = self.quorum();
        let record = self
            .closed_epochs
            .get_mut(&m.epoch)
            .ok_or(Rejection::WrongEpoch { open: self.epoch.number, got: m.epoch })?;
        if record.payouts_root != m.payouts_root {
            return Err(Rejection::PayoutMismatch { leader: ctx.signer, epoch: m.epoch });
        }
        if record.signatures.contains_key(&ctx.signer) {
            return Err(Rejection::AlreadySigned(ctx.signer));
        }
        record.signatures.insert(ctx.signer, m.signature);
        if !record.certified && record.signatures.len() >= quorum {
            record.certified = true;
            fx.events.push(Event::PayoutsCertified { epoch: m.epoch, payouts_root: m.payouts_root });
        }
        Ok(())
    }
}
