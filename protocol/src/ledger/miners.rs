//! Miner registration with collateral, unregistration and availability (SPEC 5.10).

use super::{
    credit, debit, Ctx, Effects, Event, Ledger, Miner, MinerStatus, OfflineReason, MAX_SERVICES_PER_MINER,
    MAX_URL_BYTES,
};
use crate::error::Rejection;
use crate::message::{RegisterMiner, SetAvailability};
use crate::rules;
use crate::types::{AssetId, ParticipantId};
use std::collections::BTreeMap;

impl Ledger {
    /// `Miner.RegisterResource`: locks collateral, declares services, capacity and endpoint.
    /// A miner that unregistered may register again and keeps its reputation and history.
    pub(super) fn register_miner(
        &mut self,
        ctx: &Ctx<'_>,
        m: RegisterMiner,
        fx: &mut Effects,
    ) -> Result<(), Rejection> {
        if let Some(existing) = self.miners.get(&ctx.signer) {
            if existing.ejected {
                return Err(Rejection::MinerEjected(ctx.signer));
            }
            if existing.status != MinerStatus::Unregistered {
                return Err(Rejection::AlreadyRegistered(ctx.signer));
            }
        }
        if m.collateral < self.params.min_collateral {
            return Err(Rejection::CollateralTooLow { offered: m.collateral, minimum: self.params.min_collateral });
        }
        if m.capacity == 0 {
            return Err(Rejection::InvalidRegistration("capacity must be at least 1"));
        }
        if m.endpoint.is_empty() || m.endpoint.len() > MAX_URL_BYTES {
            return Err(Rejection::InvalidRegistration("endpoint must be 1 to 512 bytes"));
        }
        if m.services.is_empty() || m.services.len() > MAX_SERVICES_PER_MINER {
            return Err(Rejection::InvalidRegistration("a miner offers 1 to 64 services"));
        }
        let mut services = BTreeMap::new();
        for offer in m.services {
            if !self.services.contains_key(&offer.service) {
                return Err(Rejection::UnknownService(offer.service));
            }
            if services.insert(offer.service.clone(), offer).is_some() {
                return Err(Rejection::InvalidRegistration("a service is offered twice"));
            }
        }
        let available = self.accounts.get(&ctx.signer).map(|a| a.balance(AssetId::NATIVE)).unwrap_or(0);
        if available < m.collateral {
            return Err(Rejection::InsufficientBalance { needed: m.collateral, available });
        }

        // Accepted.
        debit(&mut self.accounts.get_mut(&ctx.signer).expect("has balance").balances, AssetId::NATIVE, m.collateral);
        let fresh = Miner {
            status: MinerStatus::Active,
            collateral: 0,
            capacity: 0,
            endpoint: String::new(),
            services: BTreeMap::new(),
            online: true,
            offline_reason: None,
            last_seen_ms: ctx.now,
            consecutive_failures: 0,
            ejected: false,
            in_flight: 0,
            latest_ratings: BTreeMap::new(),
            rating_sum: 0,
            good_ratings: 0,
            bad_ratings: 0,
            reputation_milli: rules::reputation_milli(self.params.theta_ppm, 0),
            served: 0,
            failed: 0,
            timed_out: 0,
            subscribers: 0,
        };
        let miner = self.miners.entry(ctx.signer).or_insert(fresh);
        miner.status = MinerStatus::Active;
        miner.collateral = m.collateral;
        miner.capacity = m.capacity;
        miner.endpoint = m.endpoint;
        miner.services = services;
        // A registration starts afresh: online, a new lease, no failures held against it.
        miner.online = true;
        miner.offline_reason = None;
        miner.last_seen_ms = ctx.now;
        miner.consecutive_failures = 0;
        fx.events.push(Event::MinerRegistered { miner: ctx.signer });
        Ok(())
    }

    /// `Miner.UnRegisterResource`: no new work; collateral returns when in-flight work ends.
    pub(super) fn unregister_miner(&mut self, ctx: &Ctx<'_>, fx: &mut Effects) -> Result<(), Rejection> {
        let miner = self.miners.get_mut(&ctx.signer).ok_or(Rejection::UnknownMiner(ctx.signer))?;
        if miner.ejected {
            return Err(Rejection::MinerEjected(ctx.signer));
        }
        if miner.status != MinerStatus::Active {
            return Err(Rejection::UnknownMiner(ctx.signer));
        }
        miner.status = MinerStatus::Unregistering;
        fx.events.push(Event::MinerUnregistering { miner: ctx.signer, in_flight: miner.in_flight });
        self.finish_unregister_if_idle(&ctx.signer, fx);
        Ok(())
    }

    /// Returns the collateral of an unregistering miner once it has nothing in flight.
    pub(super) fn finish_unregister_if_idle(&mut self, id: &ParticipantId, fx: &mut Effects) {
        let Some(miner) = self.miners.get_mut(id) else { return };
        if miner.status != MinerStatus::Unregistering || miner.in_flight > 0 {
            return;
        }
        miner.status = MinerStatus::Unregistered;
        let collateral = std::mem::take(&mut miner.collateral);
        // Collateral came out of this balance, so it fits back.
        let _ = credit(&mut self.accounts.entry(*id).or_default().balances, AssetId::NATIVE, collateral);
        fx.events.push(Event::MinerUnregistered { miner: *id, collateral_returned: collateral });
    }

    /// `SetAvailability`. Saying what is already so changes nothing but the lease, which every
    /// accepted entry of the miner renews (see `Ledger::apply_checked`): `online: true` from an
    /// online miner is the agent's lease renewal, so it flips nothing, emits no event and keeps
    /// the failure count. Coming back online clears the offline reason and the failure count;
    /// going offline records that the miner said so (an offline miner keeps its first reason).
    pub(super) fn set_availability(
        &mut self,
        ctx: &Ctx<'_>,
        m: SetAvailability,
        fx: &mut Effects,
    ) -> Result<(), Rejection> {
        let miner = self
            .miners
            .get_mut(&ctx.signer)
            .filter(|mi| mi.status == MinerStatus::Active)
            .ok_or(Rejection::UnknownMiner(ctx.signer))?;
        if miner.online == m.online {
            return Ok(());
        }
        miner.online = m.online;
        if m.online {
            miner.offline_reason = None;
            miner.consecutive_failures = 0;
        } else {
            miner.offline_reason = Some(OfflineReason::Declared);
        }
        fx.events.push(Event::MinerAvailability { miner: ctx.signer, online: m.online });
        Ok(())
    }
}
