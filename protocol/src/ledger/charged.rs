//! Charged mode (SPEC 5.9): subscriptions. Per-request prices are escrowed at put time and
//! settled by the claim (see `orders`).

use super::{credit, debit, Ctx, Effects, Event, Ledger, MinerStatus};
use crate::error::Rejection;
use crate::message::Subscribe;
use crate::rules;
use crate::types::{AssetId, PPM};

impl Ledger {
    /// Pays `periods` subscription periods up front; the miner is paid at once, less the fee.
    pub(super) fn subscribe(&mut self, ctx: &Ctx<'_>, m: Subscribe, fx: &mut Effects) -> Result<(), Rejection> {
        if m.periods == 0 {
            return Err(Rejection::ZeroAmount);
        }
        let miner = self
            .miners
            .get(&m.miner)
            .filter(|mi| mi.status == MinerStatus::Active && !mi.ejected)
            .ok_or(Rejection::UnknownMiner(m.miner))?;
        let price = miner
            .services
            .get(&m.service)
            .and_then(|o| o.subscription_price)
            .ok_or_else(|| Rejection::NoSubscriptionOffer { miner: m.miner, service: m.service.clone() })?;
        let total = price.checked_mul(m.periods as u128).ok_or(Rejection::Overflow)?;
        let available = self.accounts.get(&ctx.signer).map(|a| a.balance(AssetId::NATIVE)).unwrap_or(0);
        if available < total {
            return Err(Rejection::InsufficientBalance { needed: total, available });
        }
        let fee = rules::mul_div_floor(total, self.params.coordinator_fee_ppm as u128, PPM);
        let miner_balance = self.accounts.get(&m.miner).map(|a| a.balance(AssetId::NATIVE)).unwrap_or(0);
        miner_balance.checked_add(total - fee).ok_or(Rejection::Overflow)?;
        let key = (m.miner, m.service);
        let acc = self.accounts.get(&ctx.signer).expect("has balance");
        let previous = acc.subscriptions.get(&key).copied();
        let extend_ms = (m.periods as u64).saturating_mul(self.params.subscription_period_ms);
        let until_ms = previous.unwrap_or(0).max(ctx.now).saturating_add(extend_ms);

        // Accepted.
        let acc = self.accounts.get_mut(&ctx.signer).expect("checked");
        debit(&mut acc.balances, AssetId::NATIVE, total);
        acc.subscriptions.insert(key.clone(), until_ms);
        credit(&mut self.accounts.entry(key.0).or_default().balances, AssetId::NATIVE, total - fee)?;
        self.totals.fee_pool += fee;
        if previous.is_none() {
            self.miners.get_mut(&key.0).expect("checked").subscribers += 1;
        }
        fx.events.push(Event::Subscribed { client: ctx.signer, miner: key.0, until_ms });
        fx.events.push(Event::Paid { miner: key.0, amount: total - fee, fee });
        Ok(())
    }
}
