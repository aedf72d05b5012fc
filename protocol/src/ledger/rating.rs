//! Ratings and reputation (SPEC 5.5) and rating-abuse restriction (SPEC 5.6).

use super::{Ctx, Effects, Event, Ledger, Miner, OrderStatus};
use crate::error::Rejection;
use crate::message::Rate;
use crate::rules;
use crate::types::{ParticipantId, Rating, PPM};

/// Whether `rating` is the opposite of the strict majority of the other clients' latest ratings
/// of `miner` (SPEC 5.6). Fair is never a deviation; with no strict majority nothing deviates.
pub fn is_deviation(miner: &Miner, rater: &ParticipantId, rating: Rating) -> bool {
    let own = miner.latest_ratings.get(rater).copied();
    let others = miner.latest_ratings.len() as u64 - own.is_some() as u64;
    let good = miner.good_ratings as u64 - (own == Some(Rating::Good)) as u64;
    let bad = miner.bad_ratings as u64 - (own == Some(Rating::Bad)) as u64;
    match rating {
        Rating::Good => 2 * bad > others,
        Rating::Bad => 2 * good > others,
        Rating::Fair => false,
    }
}

impl Ledger {
    /// `Rate` (paper 3.3): one rating per completed order; the client's latest rating of the
    /// miner replaces its earlier one.
    pub(super) fn rate(&mut self, ctx: &Ctx<'_>, m: Rate, fx: &mut Effects) -> Result<(), Rejection> {
        // One traversal per map: validation reads through the mutable borrows.
        let order = self.orders.get_mut(&m.order).ok_or(Rejection::UnknownOrder(m.order))?;
        if order.client != ctx.signer {
            return Err(Rejection::NotOrderOwner(m.order));
        }
        if order.status != OrderStatus::Completed {
            return Err(Rejection::WrongOrderStatus {
                order: m.order,
                status: order.status.name(),
                expected: "completed",
            });
        }
        let acc = self.accounts.get(&ctx.signer).expect("order owner has an account");
        if ctx.now < acc.rater.restricted_until_ms {
            return Err(Rejection::RatingRestricted { until_ms: acc.rater.restricted_until_ms });
        }
        let miner_id = order.miner.expect("completed orders have a miner");
        let miner = self.miners.get_mut(&miner_id).expect("serving miner exists");
        let deviation = is_deviation(miner, &ctx.signer, m.rating);

        // Accepted.
        order.status = OrderStatus::Rated;
        order.rating = Some(m.rating);
        let theta = self.params.theta_ppm;
        if let Some(previous) = miner.latest_ratings.insert(ctx.signer, m.rating) {
            miner.rating_sum -= previous.score();
            match previous {
                Rating::Good => miner.good_ratings -= 1,
                Rating::Bad => miner.bad_ratings -= 1,
                Rating::Fair => {}
            }
        }
        miner.rating_sum += m.rating.score();
        match m.rating {
            Rating::Good => miner.good_ratings += 1,
            Rating::Bad => miner.bad_ratings += 1,
            Rating::Fair => {}
        }
        miner.reputation_milli = rules::reputation_milli(theta, miner.rating_sum);
        fx.events.push(Event::OrderRated { order: m.order, miner: miner_id, reputation_milli: miner.reputation_milli });

        let window = self.params.abuse_window as usize;
        let (ratio, t_restricted) = (self.params.abuse_ratio_ppm as u128, self.params.t_restricted_ms);
        let rater = &mut self.accounts.get_mut(&ctx.signer).expect("checked").rater;
        rater.recent_deviations.push_back(deviation);
        while rater.recent_deviations.len() > window {
            rater.recent_deviations.pop_front();
        }
        let deviations = rater.recent_deviations.iter().filter(|&&d| d).count() as u128;
        if deviations * PPM > ratio * window as u128 {
            let until_ms = ctx.now.saturating_add(rules::restriction_ms(t_restricted, rater.restrictions));
            rater.restricted_until_ms = until_ms;
            rater.restrictions = rater.restrictions.saturating_add(1);
            rater.recent_deviations.clear();
            fx.events.push(Event::RatingRestricted { client: ctx.signer, until_ms });
        }
        Ok(())
    }
}
