//! SPEC 5.1: balances, locked stake, the service pass and effective stake.

use super::{credit, debit, Ctx, Effects, Event, Ledger, PassState};
use crate::error::Rejection;
use crate::message::{DevFaucet, LockStake, UnlockStake, Withdraw};
use crate::rules;
use crate::types::{Amount, AssetId, ParticipantId};

impl Ledger {
    fn check_asset(&self, asset: AssetId) -> Result<(), Rejection> {
        if asset.is_native() || self.asset_prices_ppm.contains_key(&asset) {
            Ok(())
        } else {
            Err(Rejection::UnknownAsset(asset.0))
        }
    }

    /// The dev faucet: the stake source of a dev network. Counts as a deposit.
    pub(super) fn dev_faucet(&mut self, ctx: &Ctx<'_>, m: DevFaucet, fx: &mut Effects) -> Result<(), Rejection> {
        if !self.dev {
            return Err(Rejection::NotDevNetwork);
        }
        self.check_asset(m.asset)?;
        if m.amount == 0 {
            return Err(Rejection::ZeroAmount);
        }
        // Everything the ledger holds of an asset must stay summable in u128.
        let held = self.held_supply(m.asset).ok_or(Rejection::Overflow)?;
        let deposited = self.totals.deposits.get(&m.asset).copied().unwrap_or(0);
        if held.checked_add(m.amount).is_none() || deposited.checked_add(m.amount).is_none() {
            return Err(Rejection::Overflow);
        }
        let acc = self.accounts.entry(ctx.signer).or_default();
        credit(&mut acc.balances, m.asset, m.amount)?;
        credit(&mut self.totals.deposits, m.asset, m.amount)?;
        fx.events.push(Event::Credited { who: ctx.signer, asset: m.asset, amount: m.amount });
        Ok(())
    }

    pub(super) fn lock_stake(&mut self, ctx: &Ctx<'_>, m: LockStake, fx: &mut Effects) -> Result<(), Rejection> {
        self.check_asset(m.asset)?;
        if m.amount == 0 {
            return Err(Rejection::ZeroAmount);
        }
        let acc =
            self.accounts.get(&ctx.signer).ok_or(Rejection::InsufficientBalance { needed: m.amount, available: 0 })?;
        if acc.pass == PassState::Releasing {
            return Err(Rejection::PassReleasing);
        }
        let available = acc.balance(m.asset);
        if available < m.amount {
            return Err(Rejection::InsufficientBalance { needed: m.amount, available });
        }
        acc.locked(m.asset).checked_add(m.amount).ok_or(Rejection::Overflow)?;
        let acc = self.accounts.get_mut(&ctx.signer).expect("checked above");
        debit(&mut acc.balances, m.asset, m.amount);
        credit(&mut acc.locked, m.asset, m.amount)?;
        fx.events.push(Event::StakeLocked { client: ctx.signer, asset: m.asset, amount: m.amount });
        Ok(())
    }

    /// `UnlockStake`: moves locked stake back to the free balance, allowed only while the client
    /// holds no pass. SPEC 5.1 ties locked stake to the pass ("released from the obligation"
    /// once the pass is given back and its orders are done); without a pass the stake backs
    /// nothing, so it may leave at once, in part or whole, asset by asset.
    pub(super) fn unlock_stake(&mut self, ctx: &Ctx<'_>, m: UnlockStake, fx: &mut Effects) -> Result<(), Rejection> {
        self.check_asset(m.asset)?;
        if m.amount == 0 {
            return Err(Rejection::ZeroAmount);
        }
        let insufficient = |locked| Rejection::InsufficientLocked { asset: m.asset.0, needed: m.amount, locked };
        let acc = self.accounts.get(&ctx.signer).ok_or_else(|| insufficient(0))?;
        match acc.pass {
            PassState::Valid => return Err(Rejection::PassHeld),
            PassState::Releasing => return Err(Rejection::PassReleasing),
            PassState::None => {}
        }
        let locked = acc.locked(m.asset);
        if locked < m.amount {
            return Err(insufficient(locked));
        }
        acc.balance(m.asset).checked_add(m.amount).ok_or(Rejection::Overflow)?;
        let acc = self.accounts.get_mut(&ctx.signer).expect("checked above");
        debit(&mut acc.locked, m.asset, m.amount);
        credit(&mut acc.balances, m.asset, m.amount)?;
        fx.events.push(Event::StakeReturned { client: ctx.signer, asset: m.asset, amount: m.amount });
        Ok(())
    }

    /// `s = native + floor(q * sum of value(asset))`, valuing each asset at its governance price.
    pub fn effective_stake(&self, client: &ParticipantId) -> Amount {
        self.accounts.get(client).map(|acc| self.effective_stake_of(acc)).unwrap_or(0)
    }

    pub(super) fn effective_stake_of(&self, acc: &super::Account) -> Amount {
        let mut non_native_value: Amount = 0;
        for (asset, &amount) in &acc.locked {
            if asset.is_native() {
                continue;
            }
            let price = self.asset_prices_ppm.get(asset).copied().unwrap_or(0);
            non_native_value =
                non_native_value.saturating_add(rules::mul_div_floor(amount, price as u128, crate::types::PPM));
        }
        rules::effective_stake(acc.locked(AssetId::NATIVE), non_native_value, self.params.q_ppm)
    }

    /// `AcquireServicePass`: needs at least one stake unit of effective stake.
    pub(super) fn acquire_pass(&mut self, ctx: &Ctx<'_>, fx: &mut Effects) -> Result<(), Rejection> {
        let effective = self.effective_stake(&ctx.signer);
        match self.accounts.get(&ctx.signer).map(|a| a.pass) {
            Some(PassState::Valid) => return Err(Rejection::PassAlreadyHeld),
            Some(PassState::Releasing) => return Err(Rejection::PassReleasing),
            _ => {}
        }
        if effective < self.params.stake_unit {
            return Err(Rejection::InsufficientStake { effective, stake_unit: self.params.stake_unit });
        }
        self.accounts.get_mut(&ctx.signer).expect("has stake, so has an account").pass = PassState::Valid;
        fx.events.push(Event::PassAcquired { client: ctx.signer, effective_stake: effective });
        Ok(())
    }

    /// Releases the pass; the stake unlocks now if nothing is in flight, else when the last
    /// in-flight order finishes.
    pub(super) fn release_pass(&mut self, ctx: &Ctx<'_>, fx: &mut Effects) -> Result<(), Rejection> {
        let acc = self.accounts.get_mut(&ctx.signer).ok_or(Rejection::NoServicePass)?;
        if acc.pass != PassState::Valid {
            return Err(Rejection::NoServicePass);
        }
        acc.pass = PassState::Releasing;
        fx.events.push(Event::PassReleasing { client: ctx.signer, in_flight: acc.in_flight });
        self.finish_release_if_idle(&ctx.signer, fx);
        Ok(())
    }

    /// Called whenever a client's in-flight count drops: completes a pending release.
    pub(super) fn finish_release_if_idle(&mut self, client: &ParticipantId, fx: &mut Effects) {
        let Some(acc) = self.accounts.get_mut(client) else { return };
        if acc.pass != PassState::Releasing || acc.in_flight > 0 {
            return;
        }
        acc.pass = PassState::None;
        let locked = std::mem::take(&mut acc.locked);
        for (asset, amount) in locked {
            // Locked amounts came out of balances, so their sum fits.
            let slot = acc.balances.entry(asset).or_insert(0);
            *slot = slot.saturating_add(amount);
        }
        fx.events.push(Event::StakeUnlocked { client: *client });
    }

    pub(super) fn withdraw(&mut self, ctx: &Ctx<'_>, m: Withdraw, fx: &mut Effects) -> Result<(), Rejection> {
        self.check_asset(m.asset)?;
        if m.amount == 0 {
            return Err(Rejection::ZeroAmount);
        }
        let available = self.accounts.get(&ctx.signer).map(|a| a.balance(m.asset)).unwrap_or(0);
        if available < m.amount {
            return Err(Rejection::InsufficientBalance { needed: m.amount, available });
        }
        let acc = self.accounts.get_mut(&ctx.signer).expect("has balance");
        debit(&mut acc.balances, m.asset, m.amount);
        credit(&mut self.totals.withdrawals, m.asset, m.amount)?;
        fx.events.push(Event::Withdrawn { who: ctx.signer, asset: m.asset, amount: m.amount });
        Ok(())
    }
}
