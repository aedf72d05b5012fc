//! Governance (SPEC 5.11): proposals voted by locked native stake, with a voting period, a
//! quorum and a pass threshold. Weights are read at tally time, so stake unlocked before the
//! end no longer counts.

use super::{ClosedProposal, Ctx, Effects, Event, Ledger, Proposal, MAX_CLOSED_PROPOSALS_RETAINED, MAX_OPEN_PROPOSALS};
use crate::error::Rejection;
use crate::message::{Propose, Vote};
use crate::params::{ParamChange, ProposalAction, MAX_COORDINATORS, MAX_SERVICES};
use crate::types::{AssetId, ParticipantId, TimeMs, MAX_SERVICE_NAME_BYTES, PPM};
use std::collections::{BTreeMap, BTreeSet};

impl Ledger {
    /// The native stake `who` has locked: its vote's weight.
    pub fn voting_power(&self, who: &ParticipantId) -> u128 {
        self.accounts.get(who).map(|a| a.locked(AssetId::NATIVE)).unwrap_or(0)
    }

    fn validate_action(&self, action: &ProposalAction) -> Result<(), Rejection> {
        match action {
            ProposalAction::SetParam(change) => change.validate().map_err(Rejection::InvalidProposal)?,
            ProposalAction::SetServiceWeight { service, .. } => {
                if service.is_empty() || service.len() > MAX_SERVICE_NAME_BYTES {
                    return Err(Rejection::InvalidProposal("service name must be 1 to 64 bytes"));
                }
                if !self.services.contains_key(service) && self.services.len() >= MAX_SERVICES {
                    return Err(Rejection::InvalidProposal("the service list is full"));
                }
            }
            ProposalAction::RemoveService { service } => {
                if !self.services.contains_key(service) {
                    return Err(Rejection::UnknownService(service.clone()));
                }
            }
            ProposalAction::EjectMiner { miner } => {
                if !self.miners.contains_key(miner) {
                    return Err(Rejection::UnknownMiner(*miner));
                }
            }
            ProposalAction::SetCoordinators { coordinators } => {
                let unique: BTreeSet<_> = coordinators.iter().map(|c| c.id).collect();
                if coordinators.is_empty()
                    || coordinators.len() > MAX_COORDINATORS
                    || unique.len() != coordinators.len()
                {
                    return Err(Rejection::InvalidProposal("coordinator set must hold 1 to 16 distinct members"));
                }
            }
        }
        Ok(())
    }

    pub(super) fn propose(&mut self, ctx: &Ctx<'_>, m: Propose, fx: &mut Effects) -> Result<(), Rejection> {
        if self.voting_power(&ctx.signer) == 0 {
            return Err(Rejection::NoVotingPower);
        }
        self.validate_action(&m.action)?;
        if self.proposals.len() >= MAX_OPEN_PROPOSALS {
            return Err(Rejection::TooManyProposals(MAX_OPEN_PROPOSALS));
        }
        let id = self.next_proposal;
        self.next_proposal += 1;
        let ends_ms = ctx.now.saturating_add(self.params.voting_period_ms);
        self.proposals.insert(
            id,
            Proposal {
                proposer: ctx.signer,
                action: m.action,
                opened_ms: ctx.now,
                ends_ms,
                votes: BTreeMap::new(),
                closed: None,
            },
        );
        self.proposal_deadlines.insert((ends_ms, id));
        fx.events.push(Event::ProposalOpened { id });
        Ok(())
    }

    /// A later vote by the same voter replaces its earlier one.
    pub(super) fn vote(&mut self, ctx: &Ctx<'_>, m: Vote, fx: &mut Effects) -> Result<(), Rejection> {
        let power = self.voting_power(&ctx.signer);
        let proposal = self.proposals.get(&m.proposal).ok_or(Rejection::UnknownProposal(m.proposal))?;
        if ctx.now >= proposal.ends_ms {
            return Err(Rejection::VotingClosed(m.proposal));
        }
        if power == 0 {
            return Err(Rejection::NoVotingPower);
        }
        self.proposals.get_mut(&m.proposal).expect("checked").votes.insert(ctx.signer, m.approve);
        fx.events.push(Event::Voted { id: m.proposal, voter: ctx.signer, approve: m.approve });
        Ok(())
    }

    /// Tick work: tallies proposals whose voting period ended, runs those that passed.
    pub(super) fn close_due_proposals(&mut self, now: TimeMs, budget: usize, fx: &mut Effects) -> usize {
        let mut used = 0;
        while used < budget {
            let Some(id) = super::pop_due(&mut self.proposal_deadlines, now) else { break };
            used += 1;
            let Some(mut proposal) = self.proposals.remove(&id) else { continue };
            let total_locked: u128 = self.accounts.values().map(|a| a.locked(AssetId::NATIVE)).sum();
            let (mut yes, mut no) = (0u128, 0u128);
            let mut weights = BTreeMap::new();
            for (voter, approve) in &proposal.votes {
                let w = self.voting_power(voter);
                weights.insert(*voter, w);
                if *approve {
                    yes += w;
                } else {
                    no += w;
                }
            }
            let cast = yes + no;
            let quorum_met = cast > 0 && cast * PPM >= self.params.quorum_ppm as u128 * total_locked;
            let passed = quorum_met && yes * PPM >= self.params.pass_threshold_ppm as u128 * cast;
            if passed {
                self.execute(proposal.action.clone(), fx);
            }
            proposal.closed = Some(passed);
            self.closed_proposals
                .insert(id, ClosedProposal { proposal, yes, no, weights, total_locked, closed_ms: now });
            while self.closed_proposals.len() > MAX_CLOSED_PROPOSALS_RETAINED {
                self.closed_proposals.pop_first();
            }
            fx.events.push(Event::ProposalClosed { id, passed });
        }
        used
    }

    fn execute(&mut self, action: ProposalAction, fx: &mut Effects) {
        match action {
            ProposalAction::SetParam(ParamChange::AssetPricePpm(asset, price)) => {
                self.asset_prices_ppm.insert(asset, price);
            }
            ProposalAction::SetParam(change) => {
                // Re-checked: it was valid when proposed, and validity does not depend on state.
                if change.validate().is_ok() {
                    change.apply_to(&mut self.params);
                    if let ParamChange::ThetaPpm(theta) = change {
                        // Reputation is a function of theta (SPEC 5.5): no miner keeps a stale one.
                        for miner in self.miners.values_mut() {
                            miner.reputation_milli = crate::rules::reputation_milli(theta, miner.rating_sum);
                        }
                    }
                }
            }
            ProposalAction::SetServiceWeight { service, weight } => {
                if self.services.contains_key(&service) || self.services.len() < MAX_SERVICES {
                    self.services.insert(service, weight);
                }
            }
            ProposalAction::RemoveService { service } => {
                self.services.remove(&service);
            }
            ProposalAction::EjectMiner { miner } => {
                if let Some(m) = self.miners.get_mut(&miner) {
                    m.ejected = true;
                    fx.events.push(Event::MinerEjected { miner });
                }
            }
            ProposalAction::SetCoordinators { mut coordinators } => {
                coordinators.sort_by_key(|c| c.id);
                coordinators.dedup_by(|a, b| a.id == b.id);
                if !coordinators.is_empty() {
                    self.coordinators = coordinators;
                }
            }
        }
    }
}
