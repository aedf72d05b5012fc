//! The public rules API of SPEC section 8: pure integer functions, exactly these names and
//! signatures. Outside test suites call them as `deai_protocol::rules::*`.
//!
//! No floating point anywhere: the logistic of SPEC 5.5 is evaluated in Q62 fixed point and the
//! products of SPEC 5.7 are widened to 256 bits, so every replica gets the same integers.

use crate::types::PPM;
use ethnum::U256;

/// Milliseconds in a year of 365 days (SPEC 8, `epoch_reward`).
pub const YEAR_MS: u64 = 365 * 24 * 60 * 60 * 1000;

/// `floor(a * b / c)` without overflow when `c <= 2^64`, saturating at `u128::MAX`.
pub(crate) fn mul_div_floor(a: u128, b: u128, c: u128) -> u128 {
    debug_assert!(c > 0);
    let wide = U256::from(a) * U256::from(b) / U256::from(c);
    u128::try_from(wide).unwrap_or(u128::MAX)
}

/// SPEC 5.1: `native + floor(value * q_ppm / 1e6)`, saturating.
pub fn effective_stake(native: u128, non_native_value: u128, q_ppm: u32) -> u128 {
    native.saturating_add(mul_div_floor(non_native_value, q_ppm as u128, PPM))
}

/// SPEC 5.4, paper eq. 1: `floor(s / s_min)` with `s_min` over the non-zero stakes; a zero stake
/// gets weight 0; empty in, empty out. Weights saturate at `u64::MAX`.
pub fn wrr_weights(stakes: &[u128]) -> Vec<u64> {
    let Some(s_min) = stakes.iter().copied().filter(|&s| s > 0).min() else {
        return vec![0; stakes.len()];
    };
    stakes.iter().map(|&s| u64::try_from(s / s_min).unwrap_or(u64::MAX)).collect()
}

/// SPEC 5.4: interleaved weighted round robin over one queue snapshot.
///
/// ```
/// use deai_protocol::rules::wrr_order;
/// // Client 7 staked twice what client 9 did: it is served twice per cycle.
/// assert_eq!(wrr_order(&[(9, 100, 2), (7, 200, 3)]), vec![9, 7, 7, 9, 7]);
/// ```
///
/// `queue` is `(client, stake, queued requests)` in the order clients first entered the queue.
/// Weights are fixed once from this snapshot. Rounds `j = 1..=w_max` make a cycle; in round `j`
/// every client with `w >= j` and requests left is served once, in queue order. Cycles repeat
/// until every request of a weighted client is served. Weight-0 clients are left out.
pub fn wrr_order(queue: &[(u64, u128, u32)]) -> Vec<u64> {
    let stakes: Vec<u128> = queue.iter().map(|&(_, s, _)| s).collect();
    let weights = wrr_weights(&stakes);
    let mut left: Vec<u32> = queue.iter().zip(&weights).map(|(&(_, _, n), &w)| if w == 0 { 0 } else { n }).collect();
    let total: usize = left.iter().map(|&n| n as usize).sum();
    let mut served = Vec::with_capacity(total);
    while served.len() < total {
        // One cycle. The set served in round j only shrinks as j grows (w >= j is monotone and
        // requests only go down), so the cycle ends at the first round that serves nobody.
        let mut round: u64 = 1;
        loop {
            let before = served.len();
            for (i, &(client, _, _)) in queue.iter().enumerate() {
                if weights[i] >= round && left[i] > 0 {
                    left[i] -= 1;
                    served.push(client);
                }
            }
            if served.len() == before || round == u64::MAX {
                break;
            }
            round += 1;
        }
    }
    served
}

/// `ln 2` in Q62 fixed point.
const LN2_Q62: u128 = 3_196_577_161_300_663_914;
const ONE_Q62: u128 = 1 << 62;
/// Beyond `|theta * sum| >= 60` the logistic is 0 or 100 to far better than a milli-point.
const LOGISTIC_SATURATION_PPM: u128 = 60 * PPM;

/// `e^{-x}` for `x = x_ppm / 1e6 >= 0`, in Q62 fixed point.
fn exp_neg_q62(x_ppm: u128) -> u128 {
    // x in Q62; x_ppm < 60e6 so x_ppm << 62 < 2^88: no overflow.
    let x = (x_ppm << 62) / PPM;
    let n = x / LN2_Q62;
    let r = x - n * LN2_Q62; // r in [0, ln 2)
                             // e^{-r} by its Taylor series, alternating signs; the magnitudes |r|^k / k! shrink below one
                             // Q62 unit well before k = 30. Every magnitude fits in 64 bits, so the division by k is a
                             // 64-bit one and the division by 2^62 a shift.
    let mut sum: i128 = ONE_Q62 as i128;
    let mut magnitude: u64 = ONE_Q62 as u64;
    for k in 1..30u64 {
        magnitude = (((magnitude as u128 * r) >> 62) as u64) / k;
        if magnitude == 0 {
            break;
        }
        if k % 2 == 1 {
            sum -= magnitude as i128;
        } else {
            sum += magnitude as i128;
        }
    }
    (sum.max(0) as u128) >> n.min(127)
}

/// SPEC 5.5, paper eq. 2: `round(100_000 / (1 + exp(-theta * sum)))` in milli-points.
///
/// ```
/// use deai_protocol::rules::reputation_milli;
/// assert_eq!(reputation_milli(100_000, 0), 50_000); // a new miner
/// assert_eq!(reputation_milli(100_000, 10), 73_106); // 100 / (1 + e^-1) = 73.1059
/// ```
pub fn reputation_milli(theta_ppm: u32, rating_sum: i64) -> u32 {
    const FULL: u128 = 100_000;
    let x_ppm = theta_ppm as u128 * rating_sum.unsigned_abs() as u128;
    if x_ppm >= LOGISTIC_SATURATION_PPM {
        return if rating_sum > 0 { FULL as u32 } else { 0 };
    }
    let e = exp_neg_q62(x_ppm); // e^{-|x|}
    let denom = ONE_Q62 + e;
    // For x >= 0: 1/(1+e^{-x}); for x < 0: e^{-|x|}/(1+e^{-|x|}).
    let numer = if rating_sum >= 0 { ONE_Q62 } else { e };
    ((FULL * numer + denom / 2) / denom) as u32
}

/// SPEC 5.3: `target = (u * total) >> 64`; the first index whose cumulative weight exceeds the
/// target; `None` if the total weight is 0.
///
/// ```
/// use deai_protocol::rules::select_weighted;
/// assert_eq!(select_weighted(0, &[0, 3, 1]), Some(1)); // weight 0 is never chosen
/// assert_eq!(select_weighted(u64::MAX, &[0, 3, 1]), Some(2));
/// assert_eq!(select_weighted(42, &[0, 0]), None);
/// ```
pub fn select_weighted(u: u64, weights: &[u64]) -> Option<usize> {
    let total: u128 = weights.iter().map(|&w| w as u128).sum();
    if total == 0 {
        return None;
    }
    let target: U256 = (U256::from(u) * U256::from(total)) >> 64u32;
    let target = target.as_u128(); // < total, so it fits
    let mut cumulative: u128 = 0;
    for (i, &w) in weights.iter().enumerate() {
        cumulative += w as u128;
        if cumulative > target {
            return Some(i);
        }
    }
    unreachable!("target < total, so some cumulative weight exceeds it")
}

/// SPEC 5.7: `floor(total_supply * inflation_ppm_per_year * epoch_ms / (1e6 * year_ms))`,
/// exact (256-bit intermediate); saturates at `u128::MAX` only for absurd inputs.
pub fn epoch_reward(total_supply: u128, inflation_ppm_per_year: u32, epoch_ms: u64) -> u128 {
    let numer = U256::from(total_supply) * U256::from(inflation_ppm_per_year) * U256::from(epoch_ms);
    let denom = U256::from(PPM) * U256::from(YEAR_MS);
    u128::try_from(numer / denom).unwrap_or(u128::MAX)
}

/// SPEC 5.7, paper eq. 4: `floor(C_k * R / C_total)`, then the leftover units one each to the
/// largest fractional parts (ties: ascending miner id, then input position). Same order as the
/// input; sums to exactly `reward` unless every contribution is 0 (then all 0).
///
/// ```
/// use deai_protocol::rules::split_rewards;
/// let paid = split_rewards(&[([1; 32], 2), ([2; 32], 1)], 10);
/// assert_eq!(paid, vec![([1; 32], 7), ([2; 32], 3)]); // 6.67 and 3.33: the larger fraction wins
/// ```
pub fn split_rewards(contributions: &[([u8; 32], u128)], reward: u128) -> Vec<([u8; 32], u128)> {
    let total: U256 = contributions.iter().map(|&(_, c)| U256::from(c)).sum();
    if total == U256::ZERO {
        return contributions.iter().map(|&(id, _)| (id, 0)).collect();
    }
    let r = U256::from(reward);
    let mut out = Vec::with_capacity(contributions.len());
    let mut remainders = Vec::with_capacity(contributions.len());
    let mut paid = U256::ZERO;
    for (i, &(id, c)) in contributions.iter().enumerate() {
        let product = U256::from(c) * r;
        let share = product / total;
        paid += share;
        out.push((id, share.as_u128())); // share <= reward
        remainders.push((product % total, id, i));
    }
    let leftover = (r - paid).as_u128() as usize; // < number of contributors
    remainders.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    for &(_, _, i) in remainders.iter().take(leftover) {
        out[i].1 += 1;
    }
    out
}

/// SPEC 5.6: `t_restricted * 2^k`, saturating.
pub fn restriction_ms(t_restricted_ms: u64, earlier_restrictions: u32) -> u64 {
    if t_restricted_ms == 0 {
        return 0;
    }
    if earlier_restrictions >= 64 {
        return u64::MAX;
    }
    t_restricted_ms.saturating_mul(1u64 << earlier_restrictions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_stake_applies_q_and_floors() {
        assert_eq!(effective_stake(100, 1_000, 100_000), 200);
        assert_eq!(effective_stake(0, 19, 100_000), 1);
        assert_eq!(effective_stake(u128::MAX, u128::MAX, 1_000_000), u128::MAX);
        assert_eq!(effective_stake(0, u128::MAX, 1_000_000), u128::MAX);
    }

    #[test]
    fn wrr_weights_floor_by_smallest_nonzero() {
        assert_eq!(wrr_weights(&[]), Vec::<u64>::new());
        assert_eq!(wrr_weights(&[10, 25, 0, 30]), vec![1, 2, 0, 3]);
        assert_eq!(wrr_weights(&[0, 0]), vec![0, 0]);
    }

    #[test]
    fn wrr_order_interleaves_by_rounds_paper_example() {
        // Weights 1, 2, 3; each has 3 requests. Cycle 1: round1 a b c, round2 b c, round3 c.
        // Cycle 2: a b, b done after 3; round... a(1 left), b(0), c(0).
        let q = [(1, 10, 3), (2, 20, 3), (3, 30, 3)];
        assert_eq!(wrr_order(&q), vec![1, 2, 3, 2, 3, 3, 1, 2, 1]);
        // Zero-stake clients are left out; empty queue gives nothing.
        assert_eq!(wrr_order(&[(1, 0, 5), (2, 7, 2)]), vec![2, 2]);
        assert!(wrr_order(&[]).is_empty());
    }

    #[test]
    fn wrr_order_huge_weight_does_not_spin() {
        let q = [(1, 1, 1), (2, u128::MAX, 2)];
        assert_eq!(wrr_order(&q), vec![1, 2, 2]);
    }

    fn reputation_float(theta_ppm: u32, sum: i64) -> f64 {
        100_000.0 / (1.0 + (-(theta_ppm as f64 / 1e6) * sum as f64).exp())
    }

    #[test]
    fn reputation_matches_logistic_within_one_milli() {
        for theta in [1_000u32, 50_000, 100_000, 500_000, 1_000_000, 3_000_000] {
            for sum in -700i64..=700 {
                let got = reputation_milli(theta, sum) as f64;
                let want = reputation_float(theta, sum);
                assert!((got - want).abs() <= 1.0, "theta {theta} sum {sum}: {got} vs {want}");
            }
        }
        assert_eq!(reputation_milli(100_000, 0), 50_000);
        assert_eq!(reputation_milli(100_000, i64::MAX), 100_000);
        assert_eq!(reputation_milli(100_000, i64::MIN), 0);
        assert_eq!(reputation_milli(0, 12345), 50_000);
    }

    #[test]
    fn select_weighted_follows_cumulative_weights() {
        assert_eq!(select_weighted(0, &[]), None);
        assert_eq!(select_weighted(123, &[0, 0]), None);
        assert_eq!(select_weighted(0, &[0, 3, 1]), Some(1));
        assert_eq!(select_weighted(u64::MAX, &[0, 3, 1]), Some(2));
        // target = u*4 >> 64; u = 2^63 -> target 2 -> index 1 (cumulative 3 > 2).
        assert_eq!(select_weighted(1 << 63, &[0, 3, 1]), Some(1));
        assert_eq!(select_weighted(u64::MAX, &[u64::MAX, u64::MAX]), Some(1));
    }

    #[test]
    fn epoch_reward_is_exact_floor() {
        // 1e9 supply, 7%, one hour: 1e9 * 0.07 / 8760 = 7990.867... -> 7990
        assert_eq!(epoch_reward(1_000_000_000, 70_000, 3_600_000), 7990);
        let s = (1u128 << 100) - 1;
        let want =
            U256::from(s) * U256::from(70_000u32) * U256::from(YEAR_MS) / (U256::from(PPM) * U256::from(YEAR_MS));
        assert_eq!(epoch_reward(s, 70_000, YEAR_MS), want.as_u128());
        assert_eq!(epoch_reward(0, 70_000, YEAR_MS), 0);
    }

    #[test]
    fn split_rewards_sums_exactly_and_breaks_ties_by_id() {
        let c = [([3u8; 32], 1u128), ([1u8; 32], 1), ([2u8; 32], 1)];
        let out = split_rewards(&c, 10);
        assert_eq!(out.iter().map(|x| x.1).sum::<u128>(), 10);
        // 10/3 = 3 each, one leftover unit goes to the smallest id among equal fractions.
        assert_eq!(out, vec![([3u8; 32], 3), ([1u8; 32], 4), ([2u8; 32], 3)]);
        let zero = split_rewards(&[([1u8; 32], 0)], 99);
        assert_eq!(zero, vec![([1u8; 32], 0)]);
        let big = [([1u8; 32], (1u128 << 100) - 1), ([2u8; 32], 1)];
        let out = split_rewards(&big, (1u128 << 100) - 3);
        assert_eq!(out.iter().map(|x| x.1).sum::<u128>(), (1u128 << 100) - 3);
    }

    #[test]
    fn restriction_doubles_and_saturates() {
        assert_eq!(restriction_ms(3_600_000, 0), 3_600_000);
        assert_eq!(restriction_ms(3_600_000, 2), 14_400_000);
        assert_eq!(restriction_ms(3_600_000, 63), u64::MAX);
        assert_eq!(restriction_ms(3_600_000, 1_000), u64::MAX);
        assert_eq!(restriction_ms(0, 5), 0);
    }
}
