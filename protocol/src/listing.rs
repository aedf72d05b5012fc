//! Provider listing for charged mode (SPEC 5.9, paper Table 2): a documented, deterministic
//! score from rating, subscriber count, staked collateral and service types.
//!
//! Each factor is scaled to 0..=100_000 points and weighted:
//! - rating: the reputation in milli-points (0..=100_000), weight 4;
//! - subscribers: 1_000 points per distinct subscriber, capped at 100_000, weight 2;
//! - collateral: `100_000 * collateral / (10 * min_collateral)`, capped at 100_000, weight 2;
//! - service types: 10_000 points per offered service, capped at 100_000, weight 1.
//!
//! Ties break by ascending miner id. Only active, non-ejected miners that are live at the current
//! ledger time (online, lease not lapsed: the miners allocation would consider) are listed.

use crate::ledger::{Ledger, Liveness, MinerStatus};
use crate::types::{Amount, ParticipantId, ServiceName};

/// One row of the provider listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderListing {
    pub miner: ParticipantId,
    pub score: u64,
    pub reputation_milli: u32,
    /// Table 2's "customer rating" on a 1-5 star scale, in milli-stars (1_000..=5_000).
    pub rating_milli_stars: u32,
    pub subscribers: u32,
    pub collateral: Amount,
    pub services: Vec<ServiceName>,
}

const FACTOR_MAX: u64 = 100_000;

/// The listing score of SPEC 5.9, as documented at the top of this module.
pub fn listing_score(
    reputation_milli: u32,
    subscribers: u32,
    collateral: Amount,
    min_collateral: Amount,
    services: usize,
) -> u64 {
    let rating = (reputation_milli as u64).min(FACTOR_MAX);
    let subs = (subscribers as u64).saturating_mul(1_000).min(FACTOR_MAX);
    let reference = min_collateral.saturating_mul(10).max(1);
    let stake =
        u64::try_from(collateral.saturating_mul(FACTOR_MAX as u128) / reference).unwrap_or(u64::MAX).min(FACTOR_MAX);
    let kinds = (services as u64).saturating_mul(10_000).min(FACTOR_MAX);
    4 * rating + 2 * subs + 2 * stake + kinds
}

impl Ledger {
    /// Listed providers, best first; only those offering `service` if given.
    pub fn provider_listing(&self, service: Option<&str>) -> Vec<ProviderListing> {
        let mut rows: Vec<ProviderListing> = self
            .miners
            .iter()
            .filter(|(_, m)| {
                m.status == MinerStatus::Active
                    && !m.ejected
                    && m.liveness(self.now_ms, self.params.miner_lease_ms) == Liveness::Live
            })
            .filter(|(_, m)| service.is_none_or(|s| m.services.contains_key(s)))
            .map(|(id, m)| ProviderListing {
                miner: *id,
                score: listing_score(
                    m.reputation_milli,
                    m.subscribers,
                    m.collateral,
                    self.params.min_collateral,
                    m.services.len(),
                ),
                reputation_milli: m.reputation_milli,
                rating_milli_stars: 1_000 + m.reputation_milli.min(100_000) * 4 / 100,
                subscribers: m.subscribers,
                collateral: m.collateral,
                services: m.services.keys().cloned().collect(),
            })
            .collect();
        rows.sort_by(|a, b| b.score.cmp(&a.score).then(a.miner.cmp(&b.miner)));
        rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_factor_raises_the_score_and_caps() {
        let base = listing_score(50_000, 1, 100, 100, 1);
        assert!(listing_score(60_000, 1, 100, 100, 1) > base);
        assert!(listing_score(50_000, 2, 100, 100, 1) > base);
        assert!(listing_score(50_000, 1, 200, 100, 1) > base);
        assert!(listing_score(50_000, 1, 100, 100, 2) > base);
        assert_eq!(listing_score(100_000, 10_000, u128::MAX, 1, 1_000), 9 * FACTOR_MAX);
    }
}
