//! SPEC 5.5 (reputation from each client's latest rating) and SPEC 5.6 (rating abuse and
//! escalating restriction), driven through the ledger with signed entries.

// `Rejection` is a large enum by design (it carries its evidence); closures returning it are fine.
#![allow(clippy::result_large_err)]

use deai_protocol::ledger::{Effects, Event, OrderStatus};
use deai_protocol::message::{Message, Propose, Vote};
use deai_protocol::params::{ParamChange, ProposalAction};
use deai_protocol::rules;
use deai_protocol::testkit::{expect_rejected, Keys, TestNet};
use deai_protocol::types::{OrderId, Rating};
use deai_protocol::Rejection;

const TEXT: &str = "text-generation";

/// Puts a free order, allocates it and has `miner` (the only possible choice) claim it.
fn served(net: &mut TestNet, client: &Keys, miner: &Keys) -> OrderId {
    let order = net.put_free(client, TEXT);
    net.allocate(1).expect("a miner is ready").expect("honest allocation");
    assert_eq!(net.assigned(&order), Some(miner.id), "the single miner serves every order");
    net.claim(miner, order, b"output").expect("claim");
    order
}

fn rating_sum(net: &TestNet, miner: &Keys) -> i64 {
    net.ledger.miner(&miner.id).unwrap().rating_sum
}

fn reputation(net: &TestNet, miner: &Keys) -> u32 {
    net.ledger.miner(&miner.id).unwrap().reputation_milli
}

fn logistic_milli(theta_ppm: u32, sum: i64) -> f64 {
    100_000.0 / (1.0 + (-(theta_ppm as f64 / 1e6) * sum as f64).exp())
}

fn restricted_event(fx: &Effects) -> Option<u64> {
    fx.events.iter().find_map(|e| match e {
        Event::RatingRestricted { until_ms, .. } => Some(*until_ms),
        _ => None,
    })
}

fn deviations(net: &TestNet, client: &Keys) -> Vec<bool> {
    net.ledger.account(&client.id).unwrap().rater.recent_deviations.iter().copied().collect()
}

/// SPEC 5.5: a new miner has 50.000 points (50_000 milli-points), the logistic at sum 0.
#[test]
fn spec_5_5_new_miner_has_fifty_points() {
    let mut net = TestNet::new();
    let m = net.miner("fresh-miner", &[TEXT], 4);
    assert_eq!(reputation(&net, &m), 50_000);
    assert_eq!(rules::reputation_milli(net.ledger.params.theta_ppm, 0), 50_000);
    let miner = net.ledger.miner(&m.id).unwrap();
    assert_eq!(miner.rating_sum, 0);
    assert!(miner.latest_ratings.is_empty());
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.5: reputation is `reputation_milli(theta, sum of each client's latest rating)`; a
/// client's second rating of the same miner replaces its first instead of adding to it.
#[test]
fn spec_5_5_reputation_is_logistic_of_latest_ratings_and_rerating_replaces() {
    let mut net = TestNet::new();
    let theta = net.ledger.params.theta_ppm;
    assert_eq!(theta, 100_000, "SPEC 4 default theta = 0.1");
    let m = net.miner("miner", &[TEXT], 8);
    let (a, b, c, d) = (net.client("client-a"), net.client("client-b"), net.client("client-c"), net.client("client-d"));

    let steps: [(&Keys, Rating, i64); 4] =
        [(&a, Rating::Good, 1), (&b, Rating::Good, 2), (&c, Rating::Bad, 1), (&d, Rating::Fair, 1)];
    for (client, rating, want_sum) in steps {
        let order = served(&mut net, client, &m);
        let fx = net.rate(client, order, rating).expect("rate");
        let want = rules::reputation_milli(theta, want_sum);
        assert!(fx.events.contains(&Event::OrderRated { order, miner: m.id, reputation_milli: want }));
        assert_eq!(rating_sum(&net, &m), want_sum);
        assert_eq!(reputation(&net, &m), want);
        assert_eq!(net.ledger.order(&order).unwrap().status, OrderStatus::Rated);
        assert_eq!(net.ledger.order(&order).unwrap().rating, Some(rating));
    }
    // Exact to +-1 milli-point of 100_000 / (1 + e^{-0.1 * 1}).
    assert!((reputation(&net, &m) as f64 - logistic_milli(theta, 1)).abs() <= 1.0);
    assert_eq!(net.ledger.miner(&m.id).unwrap().latest_ratings.len(), 4);

    // Client a changes its mind on a second order: Good (+1) is replaced by Bad (-1).
    // Adding instead of replacing would give 1 + (-1) = 0; replacing gives 1 - 1 - 1 = -1.
    let order = served(&mut net, &a, &m);
    net.rate(&a, order, Rating::Bad).expect("re-rate");
    assert_eq!(rating_sum(&net, &m), -1);
    assert_eq!(reputation(&net, &m), rules::reputation_milli(theta, -1));
    assert!((reputation(&net, &m) as f64 - logistic_milli(theta, -1)).abs() <= 1.0);
    let miner = net.ledger.miner(&m.id).unwrap();
    assert_eq!(miner.latest_ratings.len(), 4, "still one rating per client");
    assert_eq!(miner.latest_ratings[&a.id], Rating::Bad);
    assert_eq!((miner.good_ratings, miner.bad_ratings), (1, 2));

    // And back to Good: sum returns to 1, not 2.
    let order = served(&mut net, &a, &m);
    net.rate(&a, order, Rating::Good).expect("re-rate");
    assert_eq!(rating_sum(&net, &m), 1);
    assert_eq!(reputation(&net, &m), rules::reputation_milli(theta, 1));
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.5: theta is a parameter: with theta = 0.5 one Good rating gives 1 / (1 + e^-0.5).
#[test]
fn spec_5_5_reputation_uses_the_theta_parameter() {
    let mut net = TestNet::with_genesis(3, |g| g.params.theta_ppm = 500_000);
    let m = net.miner("miner", &[TEXT], 4);
    let a = net.client("client-a");
    let order = served(&mut net, &a, &m);
    net.rate(&a, order, Rating::Good).unwrap();
    assert_eq!(reputation(&net, &m), rules::reputation_milli(500_000, 1));
    assert!((reputation(&net, &m) as f64 - logistic_milli(500_000, 1)).abs() <= 1.0);
    assert_ne!(reputation(&net, &m), rules::reputation_milli(100_000, 1));
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.5 / paper 3.3: ratings only on completed orders, only by the order's client, once
/// per order.
#[test]
fn spec_5_5_ratings_only_on_completed_orders_by_their_client_once() {
    let mut net = TestNet::new();
    let m = net.miner("miner", &[TEXT], 4);
    let alice = net.client("alice");
    let mallory = net.client("mallory");

    // Pending: not yet rateable.
    let order = net.put_free(&alice, TEXT);
    let err = expect_rejected(&mut net, "wrong_order_status", |n| n.rate(&alice, order, Rating::Good));
    assert!(matches!(err, Rejection::WrongOrderStatus { status: "pending", expected: "completed", .. }));
    // Allocated: still not rateable.
    net.allocate(1).unwrap().unwrap();
    let err = expect_rejected(&mut net, "wrong_order_status", |n| n.rate(&alice, order, Rating::Good));
    assert!(matches!(err, Rejection::WrongOrderStatus { status: "allocated", .. }));
    net.claim(&m, order, b"output").unwrap();

    // Completed, but somebody else (another client, or the miner itself) may not rate it.
    let err = expect_rejected(&mut net, "not_order_owner", |n| n.rate(&mallory, order, Rating::Bad));
    assert_eq!(err, Rejection::NotOrderOwner(order));
    expect_rejected(&mut net, "not_order_owner", |n| n.rate(&m, order, Rating::Good));
    // Unknown order.
    let bogus = OrderId([9; 32]);
    assert_eq!(
        expect_rejected(&mut net, "unknown_order", |n| n.rate(&alice, bogus, Rating::Good)),
        Rejection::UnknownOrder(bogus)
    );

    // The client rates once.
    net.rate(&alice, order, Rating::Good).expect("first rating");
    assert_eq!(rating_sum(&net, &m), 1);
    let err = expect_rejected(&mut net, "wrong_order_status", |n| n.rate(&alice, order, Rating::Good));
    assert!(matches!(err, Rejection::WrongOrderStatus { status: "rated", .. }));
    assert_eq!(rating_sum(&net, &m), 1);
    assert_eq!(reputation(&net, &m), rules::reputation_milli(net.ledger.params.theta_ppm, 1));
    net.ledger.check_invariants().unwrap();
}

/// A miner rated Good by three honest clients, and the keys of those clients.
fn well_rated_miner(net: &mut TestNet) -> (Keys, Vec<Keys>) {
    let m = net.miner("good-miner", &[TEXT], 64);
    let honest: Vec<Keys> = (0..3).map(|i| net.client(&format!("honest-{i}"))).collect();
    for h in &honest {
        let order = served(net, h, &m);
        let fx = net.rate(h, order, Rating::Good).unwrap();
        assert_eq!(restricted_event(&fx), None);
    }
    assert_eq!(rating_sum(net, &m), 3);
    (m, honest)
}

/// SPEC 5.6 (paper 3.2.1 "Securities"): an abuser rating a well-rated miner Bad again and again
/// is restricted once more than 60% of its last 10 ratings deviate, for t, then 2t, then 4t.
/// Honest clients agreeing with the majority are never restricted.
#[test]
fn spec_5_6_rating_abuse_is_restricted_with_doubling_periods() {
    let mut net = TestNet::new();
    let p = net.ledger.params.clone();
    assert_eq!((p.abuse_window, p.abuse_ratio_ppm, p.t_restricted_ms), (10, 600_000, 3_600_000));
    let (m, honest) = well_rated_miner(&mut net);
    let abuser = net.client("abuser");

    for round in 0u32..3 {
        // A restriction clears the window; after it, the held-back Fair rating opens a new one.
        let window_start = if round == 0 { vec![] } else { vec![false] };
        assert_eq!(deviations(&net, &abuser), window_start);
        // 6 deviations out of a window of 10 is 600_000 ppm: not more than the ratio.
        for k in 1..=6usize {
            let order = served(&mut net, &abuser, &m);
            let fx = net.rate(&abuser, order, Rating::Bad).expect("abuser may still rate");
            assert_eq!(restricted_event(&fx), None, "round {round}: {k} deviations must not restrict");
            assert_eq!(deviations(&net, &abuser), [window_start.clone(), vec![true; k]].concat());
            // An honest client keeps rating with the majority, interleaved with the abuse.
            let h = &honest[k % honest.len()];
            let order = served(&mut net, h, &m);
            let fx = net.rate(h, order, Rating::Good).expect("honest rating");
            assert_eq!(restricted_event(&fx), None);
        }
        // The seventh deviation: 7/10 > 60%: restricted for t_restricted * 2^round.
        let order = served(&mut net, &abuser, &m);
        let now = net.now_ms;
        let fx = net.rate(&abuser, order, Rating::Bad).expect("the triggering rating itself is accepted");
        let until = now + rules::restriction_ms(p.t_restricted_ms, round);
        assert_eq!(until, now + p.t_restricted_ms * (1 << round), "1x, 2x, 4x");
        assert!(fx.events.contains(&Event::RatingRestricted { client: abuser.id, until_ms: until }));
        let rater = &net.ledger.account(&abuser.id).unwrap().rater;
        assert_eq!(rater.restrictions, round + 1);
        assert_eq!(rater.restricted_until_ms, until);

        // While restricted, every rating is refused with the end time; just before the end too.
        let pending_rating = served(&mut net, &abuser, &m);
        let err = expect_rejected(&mut net, "rating_restricted", |n| n.rate(&abuser, pending_rating, Rating::Bad));
        assert_eq!(err, Rejection::RatingRestricted { until_ms: until });
        net.now_ms = until - 1;
        let err = expect_rejected(&mut net, "rating_restricted", |n| n.rate(&abuser, pending_rating, Rating::Fair));
        assert_eq!(err, Rejection::RatingRestricted { until_ms: until });
        assert_eq!(net.ledger.order(&pending_rating).unwrap().status, OrderStatus::Completed);

        // Restriction over: the held-back order may be rated (it is a Fair rating, no deviation).
        net.now_ms = until;
        let fx = net.rate(&abuser, pending_rating, Rating::Fair).expect("restriction has ended");
        assert_eq!(restricted_event(&fx), None);
    }

    // Honest clients were never restricted, and their windows hold no deviation.
    for h in &honest {
        let rater = &net.ledger.account(&h.id).unwrap().rater;
        assert_eq!(rater.restrictions, 0);
        assert_eq!(rater.restricted_until_ms, 0);
        assert!(rater.recent_deviations.iter().all(|d| !d));
    }
    // Only latest ratings count: 3 Good + the abuser's latest (Fair) = 3.
    assert_eq!(rating_sum(&net, &m), 3);
    assert_eq!(reputation(&net, &m), rules::reputation_milli(p.theta_ppm, 3));
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.6: the ratio is over the LAST `abuse_window` ratings: exactly 60% never restricts,
/// and old deviations slide out of the window.
#[test]
fn spec_5_6_window_slides_and_exactly_the_ratio_does_not_restrict() {
    let mut net = TestNet::new();
    let (m, _honest) = well_rated_miner(&mut net);
    let abuser = net.client("abuser");
    let rate_as = |net: &mut TestNet, r: Rating| {
        let order = served(net, &abuser, &m);
        restricted_event(&net.rate(&abuser, order, r).expect("rate"))
    };
    // D^6 F^4: 6 deviations out of 10.
    for _ in 0..6 {
        assert_eq!(rate_as(&mut net, Rating::Bad), None);
    }
    for _ in 0..4 {
        assert_eq!(rate_as(&mut net, Rating::Fair), None);
    }
    assert_eq!(deviations(&net, &abuser), [vec![true; 6], vec![false; 4]].concat());
    // D^6 F^4 D^k keeps exactly 6 deviations in the last 10 for k <= 6.
    for k in 1..=6 {
        assert_eq!(rate_as(&mut net, Rating::Bad), None, "k = {k}: still 6 of the last 10");
        assert_eq!(deviations(&net, &abuser).len(), 10, "the window holds abuse_window flags");
        assert_eq!(deviations(&net, &abuser).iter().filter(|d| **d).count(), 6);
    }
    // k = 7: the window is F^3 D^7.
    let now = net.now_ms;
    assert_eq!(rate_as(&mut net, Rating::Bad), Some(now + net.ledger.params.t_restricted_ms));
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.6: Good against a Bad majority is a deviation too (a shill praising a bad miner).
#[test]
fn spec_5_6_good_against_bad_majority_deviates() {
    let mut net = TestNet::new();
    let m = net.miner("bad-miner", &[TEXT], 64);
    for i in 0..3 {
        let h = net.client(&format!("victim-{i}"));
        let order = served(&mut net, &h, &m);
        net.rate(&h, order, Rating::Bad).unwrap();
    }
    let shill = net.client("shill");
    for k in 1..=6 {
        let order = served(&mut net, &shill, &m);
        assert_eq!(restricted_event(&net.rate(&shill, order, Rating::Good).unwrap()), None);
        assert_eq!(deviations(&net, &shill), vec![true; k]);
    }
    let order = served(&mut net, &shill, &m);
    let now = net.now_ms;
    let fx = net.rate(&shill, order, Rating::Good).unwrap();
    assert_eq!(restricted_event(&fx), Some(now + net.ledger.params.t_restricted_ms));
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.6: Fair ratings never deviate, however often they go against the majority.
#[test]
fn spec_5_6_fair_ratings_never_deviate() {
    let mut net = TestNet::new();
    let (m, _honest) = well_rated_miner(&mut net);
    let critic = net.client("fair-critic");
    for _ in 0..12 {
        let order = served(&mut net, &critic, &m);
        let fx = net.rate(&critic, order, Rating::Fair).unwrap();
        assert_eq!(restricted_event(&fx), None);
    }
    assert_eq!(deviations(&net, &critic), vec![false; 10]);
    assert_eq!(net.ledger.account(&critic.id).unwrap().rater.restrictions, 0);
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.6: with no strict majority among the other clients (a 2-2 tie), nothing deviates.
#[test]
fn spec_5_6_no_strict_majority_no_deviation() {
    let mut net = TestNet::new();
    let m = net.miner("split-miner", &[TEXT], 64);
    for (i, r) in [Rating::Good, Rating::Good, Rating::Bad, Rating::Bad].into_iter().enumerate() {
        let c = net.client(&format!("other-{i}"));
        let order = served(&mut net, &c, &m);
        net.rate(&c, order, r).unwrap();
    }
    let voter = net.client("contrarian");
    for r in [Rating::Bad, Rating::Good] {
        for _ in 0..10 {
            let order = served(&mut net, &voter, &m);
            let fx = net.rate(&voter, order, r).unwrap();
            assert_eq!(restricted_event(&fx), None, "2 Good vs 2 Bad: no majority to deviate from");
        }
        assert_eq!(deviations(&net, &voter), vec![false; 10]);
    }
    assert_eq!(net.ledger.account(&voter.id).unwrap().rater.restrictions, 0);

    // A single extra Good rating makes a strict majority (3 of 5): Bad now deviates.
    let tipping = net.client("tipping");
    let order = served(&mut net, &tipping, &m);
    net.rate(&tipping, order, Rating::Good).unwrap();
    let order = served(&mut net, &voter, &m);
    net.rate(&voter, order, Rating::Bad).unwrap();
    assert!(*deviations(&net, &voter).last().unwrap(), "Bad against a 3-of-5 Good majority deviates");
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.5 with a governance change of theta (SPEC 4 lists theta among the governance-settable
/// parameters): `R_k = 100 / (1 + exp(-theta * sum))` holds for every miner under the theta in
/// force, so two miners with the same rating sum have the same reputation (and AVRF weight,
/// SPEC 5.3), whether or not they were rated again since the change.
#[test]
fn spec_5_5_reputation_follows_a_governance_change_of_theta() {
    let mut net = TestNet::with_genesis(3, |g| g.params.voting_period_ms = 1_000);
    let text = net.miner("text-miner", &[TEXT], 8);
    let embed = net.miner("embed-miner", &["text-embedding"], 8);
    let clients: Vec<Keys> = (0..2).map(|i| net.client(&format!("client-{i}"))).collect();
    for c in &clients {
        let order = served(&mut net, c, &text);
        net.rate(c, order, Rating::Good).unwrap();
        let order = net.put_free(c, "text-embedding");
        net.allocate(1).unwrap().unwrap();
        assert_eq!(net.assigned(&order), Some(embed.id));
        net.claim(&embed, order, b"output").unwrap();
        net.rate(c, order, Rating::Good).unwrap();
    }
    assert_eq!(reputation(&net, &text), rules::reputation_milli(100_000, 2));
    assert_eq!(reputation(&net, &embed), rules::reputation_milli(100_000, 2));

    let action = ProposalAction::SetParam(ParamChange::ThetaPpm(500_000));
    net.submit(&clients[0], Message::Propose(Propose { action })).unwrap();
    for c in &clients {
        net.submit(c, Message::Vote(Vote { proposal: 0, approve: true })).unwrap();
    }
    net.advance(1_000);
    let fx = net.tick();
    assert!(fx.events.contains(&Event::ProposalClosed { id: 0, passed: true }));
    assert_eq!(net.ledger.params.theta_ppm, 500_000);

    // Client 0 repeats its Good rating of the text miner: its sum stays 2.
    let order = served(&mut net, &clients[0], &text);
    net.rate(&clients[0], order, Rating::Good).unwrap();
    assert_eq!(rating_sum(&net, &text), 2);
    assert_eq!(rating_sum(&net, &embed), 2);
    let want = rules::reputation_milli(500_000, 2);
    assert_eq!(reputation(&net, &text), want);
    assert_eq!(
        reputation(&net, &embed),
        want,
        "same rating sum, same theta, different reputation: the cached value predates the theta change"
    );
    net.ledger.check_invariants().unwrap();
}
