//! SPEC 5.7 (contributions, epoch rewards, verified payouts, carry-over), the reward-gaming
//! attack of paper 3.2.1 "Securities", and SPEC 5.8 (non-delivery reports, coordinator probes,
//! quorum invalidation).

// `Rejection` is a large enum by design (it carries its evidence); closures returning it are fine.
#![allow(clippy::result_large_err)]

use deai_protocol::ledger::{Effects, Event, OrderStatus};
use deai_protocol::message::{CloseEpoch, Message, OrderMode, ProbeResult, Propose, ReportNonDelivery, Vote};
use deai_protocol::params::{ParamChange, ProposalAction, TOKEN};
use deai_protocol::rules;
use deai_protocol::testkit::{expect_rejected, output_hash, Keys, TestNet};
use deai_protocol::types::{Amount, AssetId, OrderId, ParticipantId, Rating};
use deai_protocol::Rejection;

const TEXT: &str = "text-generation";
const EMBED: &str = "text-embedding";
const IMAGE: &str = "image-generation";

fn balance(net: &TestNet, who: &ParticipantId) -> Amount {
    net.ledger.account(who).map(|a| a.balance(AssetId::NATIVE)).unwrap_or(0)
}

fn contribution(net: &TestNet, miner: &ParticipantId) -> u128 {
    net.ledger.epoch.contributions.get(miner).copied().unwrap_or(0)
}

/// Puts an order in `mode`, allocates it and has whichever miner was chosen claim it.
/// Returns the order, the miner and the claim's effects.
fn serve_mode(
    net: &mut TestNet,
    client: &Keys,
    miners: &[Keys],
    service: &str,
    mode: OrderMode,
) -> (OrderId, Keys, Effects) {
    let order = net.put(client, service, mode).expect("order admitted");
    net.allocate(1).expect("a miner is ready").expect("honest allocation");
    let id = net.assigned(&order).expect("allocated");
    let miner = miners.iter().find(|m| m.id == id).expect("known miner").clone();
    let fx = net.claim(&miner, order, b"output").expect("claim");
    (order, miner, fx)
}

fn serve(net: &mut TestNet, client: &Keys, miners: &[Keys], service: &str) -> (OrderId, Keys, Effects) {
    serve_mode(net, client, miners, service, OrderMode::Free)
}

fn close_msg(net: &TestNet, payouts: Vec<(ParticipantId, Amount)>) -> Message {
    Message::CloseEpoch(CloseEpoch { epoch: net.ledger.epoch.number, payouts })
}

/// SPEC 5.7, paper eq. 3: each completed cycle adds its service's weight (text 1, image 4),
/// and the epoch close pays `split_rewards(contributions, epoch_reward(...) + carried)`, which
/// sums exactly to R, lands in the miners' balances and grows the total supply.
#[test]
fn spec_5_7_contributions_are_service_weights_and_close_pays_exactly_r() {
    let mut net = TestNet::new();
    let text_miner = net.miner("text-miner", &[TEXT], 4);
    let image_miner = net.miner("image-miner", &[IMAGE], 4);
    let miners = [text_miner.clone(), image_miner.clone()];
    let alice = net.client("alice");
    assert_eq!(net.ledger.services[TEXT], 1);
    assert_eq!(net.ledger.services[IMAGE], 4);

    for _ in 0..3 {
        let (order, m, fx) = serve(&mut net, &alice, &miners, TEXT);
        assert_eq!(m.id, text_miner.id);
        assert!(fx.events.contains(&Event::OrderCompleted { order, miner: text_miner.id, weight: 1 }));
        assert_eq!(net.ledger.order(&order).unwrap().weight, 1);
    }
    for _ in 0..2 {
        let (order, m, fx) = serve(&mut net, &alice, &miners, IMAGE);
        assert_eq!(m.id, image_miner.id);
        assert!(fx.events.contains(&Event::OrderCompleted { order, miner: image_miner.id, weight: 4 }));
    }
    assert_eq!(contribution(&net, &text_miner.id), 3);
    assert_eq!(contribution(&net, &image_miner.id), 8);

    let supply = net.ledger.totals.total_supply;
    assert_eq!(supply, 1_000_000_000 * TOKEN);
    let r = rules::epoch_reward(supply, 70_000, 3_600_000);
    // floor(1e18 * 0.07 * 3_600_000 / (365 * 86_400_000))
    assert_eq!(r, 7_990_867_579_908);
    let (reward, payouts) = net.ledger.expected_payouts();
    assert_eq!(reward, r, "nothing carried into the first epoch");
    let mut contributions = vec![(text_miner.id.0, 3u128), (image_miner.id.0, 8u128)];
    contributions.sort();
    let want: Vec<(ParticipantId, Amount)> =
        rules::split_rewards(&contributions, r).into_iter().map(|(id, a)| (ParticipantId(id), a)).collect();
    assert_eq!(payouts, want);
    assert_eq!(payouts.iter().map(|p| p.1).sum::<Amount>(), r);
    for (id, amount) in &payouts {
        let c = if *id == text_miner.id { 3 } else { 8 };
        let floor = c * r / 11;
        assert!(*amount == floor || *amount == floor + 1, "paper eq. 4: floor(C_k * R / C_total) (+1 leftover)");
    }

    let before: Vec<Amount> = miners.iter().map(|m| balance(&net, &m.id)).collect();
    let fx = net.close_epoch().expect("epoch closes at its end");
    assert!(fx.events.contains(&Event::EpochClosed { epoch: 0, reward: r, paid: r, carried: 0 }));
    for (m, b) in miners.iter().zip(before) {
        let paid = payouts.iter().find(|p| p.0 == m.id).unwrap().1;
        assert_eq!(balance(&net, &m.id), b + paid, "payout lands in the miner's balance");
    }
    assert_eq!(net.ledger.totals.total_supply, supply + r);
    assert_eq!(net.ledger.totals.minted, r);
    let record = &net.ledger.closed_epochs[&0];
    assert_eq!((record.start_ms, record.end_ms, record.reward), (0, 3_600_000, r));
    assert_eq!(record.payouts, payouts);
    assert_eq!(net.ledger.epoch.number, 1);
    assert_eq!(net.ledger.epoch.start_ms, 3_600_000);
    assert!(net.ledger.epoch.contributions.is_empty());
    // The next epoch's inflation is computed on the grown supply.
    assert_eq!(net.ledger.expected_payouts().0, rules::epoch_reward(supply + r, 70_000, 3_600_000));
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.7 / 6.2: the epoch cannot close early; a leader proposing wrong payouts is refused
/// with `payout_mismatch` naming it as the misbehaving coordinator.
#[test]
fn spec_5_7_early_close_and_wrong_payouts_are_refused() {
    let mut net = TestNet::new();
    let a = net.miner("miner-a", &[TEXT], 4);
    let b = net.miner("miner-b", &[EMBED], 4);
    let miners = [a.clone(), b.clone()];
    let alice = net.client("alice");
    serve(&mut net, &alice, &miners, TEXT);
    serve(&mut net, &alice, &miners, EMBED);
    serve(&mut net, &alice, &miners, EMBED);
    let (_, honest) = net.ledger.expected_payouts();
    assert_eq!(honest.len(), 2);

    // Early: now and one millisecond before the end.
    for now in [net.now_ms, 3_600_000 - 1] {
        net.now_ms = now;
        let msg = close_msg(&net, honest.clone());
        let err = expect_rejected(&mut net, "epoch_not_over", |n| n.submit_as_coordinator(0, msg));
        assert_eq!(err, Rejection::EpochNotOver { epoch: 0, ends_at_ms: 3_600_000 });
    }
    net.now_ms = 3_600_000;

    // Not the open epoch.
    let msg = Message::CloseEpoch(CloseEpoch { epoch: 1, payouts: honest.clone() });
    assert_eq!(
        expect_rejected(&mut net, "wrong_epoch", |n| n.submit_as_coordinator(0, msg)),
        Rejection::WrongEpoch { open: 0, got: 1 }
    );

    // The leader shifts one unit from one miner to the other: every replica recomputes.
    let mut shifted = honest.clone();
    shifted[0].1 -= 1;
    shifted[1].1 += 1;
    assert_eq!(shifted.iter().map(|p| p.1).sum::<Amount>(), honest.iter().map(|p| p.1).sum::<Amount>());
    let leader = net.leader().keys.id;
    let msg = close_msg(&net, shifted);
    let err = expect_rejected(&mut net, "payout_mismatch", |n| n.submit_as_coordinator(0, msg));
    assert_eq!(err, Rejection::PayoutMismatch { leader, epoch: 0 });
    assert_eq!(err.misbehaving_coordinator(), Some(leader));

    // Any other coordinator proposing a wrong list is named too; so is a dropped miner or a
    // reordered list.
    let mut dropped = honest.clone();
    dropped.pop();
    let msg = close_msg(&net, dropped);
    let err = expect_rejected(&mut net, "payout_mismatch", |n| n.submit_as_coordinator(2, msg));
    assert_eq!(err.misbehaving_coordinator(), Some(net.coordinators[2].keys.id));
    let mut reordered = honest.clone();
    reordered.reverse();
    let msg = close_msg(&net, reordered);
    expect_rejected(&mut net, "payout_mismatch", |n| n.submit_as_coordinator(0, msg));

    // Only a coordinator may close an epoch.
    let msg = close_msg(&net, honest.clone());
    expect_rejected(&mut net, "wrong_role", |n| n.submit(&alice, msg));

    // The honest list closes it.
    let msg = close_msg(&net, honest.clone());
    net.submit_as_coordinator(0, msg).expect("honest payouts");
    assert_eq!(net.ledger.closed_epochs[&0].payouts, honest);
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.7: with C_total = 0 nothing is paid and R carries into the next epoch's reward.
#[test]
fn spec_5_7_empty_epochs_carry_the_reward_forward() {
    let mut net = TestNet::new();
    let m = net.miner("miner", &[TEXT], 4);
    let alice = net.client("alice");
    let supply = net.ledger.totals.total_supply;
    let r0 = rules::epoch_reward(supply, 70_000, 3_600_000);

    let fx = net.close_epoch().expect("empty epoch 0 closes");
    assert!(fx.events.contains(&Event::EpochClosed { epoch: 0, reward: r0, paid: 0, carried: r0 }));
    assert!(net.ledger.closed_epochs[&0].payouts.is_empty());
    assert_eq!(net.ledger.epoch.carried, r0);
    assert_eq!(net.ledger.totals.total_supply, supply, "nothing minted");
    assert_eq!(balance(&net, &m.id), 0);

    // Epoch 1 is empty too: the carry accumulates.
    assert_eq!(net.ledger.expected_payouts(), (2 * r0, vec![]));
    let fx = net.close_epoch().expect("empty epoch 1 closes");
    assert!(fx.events.contains(&Event::EpochClosed { epoch: 1, reward: 2 * r0, paid: 0, carried: 2 * r0 }));

    // Epoch 2 has work: it pays its own R plus both carried rewards to the only contributor.
    serve(&mut net, &alice, std::slice::from_ref(&m), TEXT);
    assert_eq!(net.ledger.expected_payouts(), (3 * r0, vec![(m.id, 3 * r0)]));
    let fx = net.close_epoch().expect("epoch 2 closes");
    assert!(fx.events.contains(&Event::EpochClosed { epoch: 2, reward: 3 * r0, paid: 3 * r0, carried: 0 }));
    assert_eq!(balance(&net, &m.id), 3 * r0);
    assert_eq!(net.ledger.totals.total_supply, supply + 3 * r0, "total supply grows by what was paid");
    assert_eq!(net.ledger.epoch.carried, 0);
    assert_eq!(net.ledger.expected_payouts().0, rules::epoch_reward(supply + 3 * r0, 70_000, 3_600_000));
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.7: "Reputation does not change rewards, only selection": a well-rated and a
/// badly-rated miner with equal contributions get equal payouts.
#[test]
fn spec_5_7_reputation_does_not_change_rewards() {
    let mut net = TestNet::new();
    let liked = net.miner("liked-miner", &[TEXT], 4);
    let disliked = net.miner("disliked-miner", &[EMBED], 4);
    let miners = [liked.clone(), disliked.clone()];
    for i in 0..3 {
        let c = net.client(&format!("client-{i}"));
        let (o, _, _) = serve(&mut net, &c, &miners, TEXT);
        net.rate(&c, o, Rating::Good).unwrap();
        let (o, _, _) = serve(&mut net, &c, &miners, EMBED);
        net.rate(&c, o, Rating::Bad).unwrap();
    }
    let rep = |n: &TestNet, k: &Keys| n.ledger.miner(&k.id).unwrap().reputation_milli;
    assert_eq!(rep(&net, &liked), rules::reputation_milli(100_000, 3));
    assert_eq!(rep(&net, &disliked), rules::reputation_milli(100_000, -3));
    assert_eq!(contribution(&net, &liked.id), 3);
    assert_eq!(contribution(&net, &disliked.id), 3);

    let (reward, payouts) = net.ledger.expected_payouts();
    assert_eq!(reward % 2, 0);
    assert_eq!(payouts.len(), 2);
    assert!(payouts.iter().all(|p| p.1 == reward / 2), "equal contributions, equal payouts: {payouts:?}");
    net.close_epoch().unwrap();
    assert_eq!(balance(&net, &liked.id), reward / 2);
    assert_eq!(balance(&net, &disliked.id), reward / 2);
    net.ledger.check_invariants().unwrap();
}

/// Paper 3.2.1 "Securities", reward gaming by fake orders: an attacker controlling a client
/// and a miner floods orders. AVRF picks the miner by reputation, so its own miner gets only
/// about its reputation-weighted share, and the flood stops at the client's stake threshold.
#[test]
fn reward_gaming_by_fake_orders_is_diluted_by_avrf_and_capped_by_stake() {
    let mut net = TestNet::new();
    let honest: Vec<Keys> = (0..3).map(|i| net.miner(&format!("honest-miner-{i}"), &[TEXT], 16)).collect();
    let evil_miner = net.miner("attacker-miner", &[TEXT], 16);
    let mut all = honest.clone();
    all.push(evil_miner.clone());

    // Two honest clients have been served well by each honest miner (charged, pre-specified).
    for i in 0..2 {
        let c = Keys::from_name(&format!("honest-client-{i}"));
        net.faucet(&c, AssetId::NATIVE, TOKEN);
        for m in &honest {
            let (o, _, _) =
                serve_mode(&mut net, &c, &all, TEXT, OrderMode::Charged { price: 1_000, miner: Some(m.id) });
            net.rate(&c, o, Rating::Good).unwrap();
        }
    }
    let evil_client = net.client("attacker-client");
    let limit = net.ledger.admission_limit(&evil_client.id);
    assert_eq!(limit, 100, "floor(100 tokens / 10 tokens per unit) * 10 requests per unit");

    let mut to_attacker = 0u32;
    let mut expected = 0f64;
    let mut variance = 0f64;
    let window_start = net.now_ms;
    for n in 1..=limit {
        // The reputation-weighted share the attacker's miner has at this draw.
        let weights: Vec<f64> = all.iter().map(|m| net.ledger.miner(&m.id).unwrap().reputation_milli as f64).collect();
        let p = weights[3] / weights.iter().sum::<f64>();
        expected += p;
        variance += p * (1.0 - p);

        let order = net.put_free(&evil_client, TEXT);
        let fx = net.allocate(1).expect("ready").expect("honest allocation");
        let chosen = net.assigned(&order).unwrap();
        // The draw recorded with the allocation reproduces the choice over ascending ids.
        let draw = net.ledger.order(&order).unwrap().allocation.as_ref().unwrap().draw;
        let mut sorted = all.clone();
        sorted.sort_by_key(|m| m.id);
        let w: Vec<u64> = sorted.iter().map(|m| net.ledger.miner(&m.id).unwrap().reputation_milli as u64).collect();
        assert_eq!(sorted[rules::select_weighted(draw, &w).unwrap()].id, chosen);
        assert!(fx.events.contains(&Event::OrderAllocated { order, miner: chosen }));

        let miner = all.iter().find(|m| m.id == chosen).unwrap().clone();
        net.claim(&miner, order, b"fake output").unwrap();
        if chosen == evil_miner.id {
            to_attacker += 1;
            // Self-praise: only the latest rating counts, so it is worth +1 once.
            net.rate(&evil_client, order, Rating::Good).unwrap();
        }
        let frozen = net.ledger.account(&evil_client.id).unwrap().frozen_until_ms;
        if n < limit {
            assert_eq!(frozen, 0, "not frozen before the threshold");
        }
    }
    assert_eq!(net.ledger.miner(&evil_miner.id).unwrap().rating_sum, 1);

    // AVRF: roughly the reputation-weighted share (about a quarter), far from all of them.
    let sd = variance.sqrt();
    assert!(
        (to_attacker as f64 - expected).abs() <= 4.0 * sd,
        "attacker's miner served {to_attacker} of {limit}, expected {expected:.1} +- {:.1}",
        4.0 * sd
    );
    assert!(to_attacker > 0 && (to_attacker as u64) < limit / 2, "served {to_attacker}");
    assert!(honest.iter().all(|m| net.ledger.miner(&m.id).unwrap().served > 2), "honest miners get most fake orders");

    // The threshold: the 100th order froze the client, the 101st is refused.
    let p = net.ledger.params.clone();
    let until = (window_start + p.freeze_ms).max(window_start + p.rate_window_ms);
    assert_eq!(net.ledger.account(&evil_client.id).unwrap().frozen_until_ms, until);
    let err =
        expect_rejected(&mut net, "frozen", |n| n.put(&evil_client, TEXT, OrderMode::Free).map(|_| Effects::default()));
    assert_eq!(err, Rejection::Frozen { until_ms: until });
    // Ten times the volume needs ten times the locked stake.
    let whale = net.client_with_stake("whale", 1_000 * TOKEN);
    assert_eq!(net.ledger.admission_limit(&whale.id), 1_000);

    // Rewards follow contributions: the attacker's miner earns only for what AVRF sent it.
    assert_eq!(contribution(&net, &evil_miner.id), to_attacker as u128);
    let (reward, payouts) = net.ledger.expected_payouts();
    let total: u128 = net.ledger.epoch.contributions.values().sum();
    let evil_pay = payouts.iter().find(|p| p.0 == evil_miner.id).unwrap().1;
    assert!(evil_pay <= to_attacker as u128 * reward / total + 1);
    assert!(evil_pay < reward / 2);
    net.close_epoch().unwrap();
    net.ledger.check_invariants().unwrap();
}

fn probe(net: &mut TestNet, i: usize, order: OrderId, delivered: bool, hash: [u8; 32]) -> Result<Effects, Rejection> {
    net.submit_as_coordinator(i, Message::ProbeResult(ProbeResult { order, delivered, output_hash: hash }))
}

fn report(net: &mut TestNet, client: &Keys, order: OrderId) -> Result<Effects, Rejection> {
    net.submit(client, Message::ReportNonDelivery(ReportNonDelivery { order }))
}

/// SPEC 5.8: a client reports non-delivery of its own served order; one coordinator's
/// successful probe with the right output hash clears the report; single failures do not
/// invalidate.
#[test]
fn spec_5_8_report_is_cleared_by_one_good_probe() {
    let mut net = TestNet::new();
    let m = net.miner("miner", &[TEXT], 4);
    let alice = net.client("alice");
    let bob = net.client("bob");
    let good_hash = output_hash(b"output");

    // Only served orders can be reported.
    let pending = net.put_free(&alice, TEXT);
    let err = expect_rejected(&mut net, "wrong_order_status", |n| report(n, &alice, pending));
    assert!(matches!(err, Rejection::WrongOrderStatus { status: "pending", .. }));
    net.allocate(1).unwrap().unwrap();
    net.claim(&m, pending, b"output").unwrap();
    let order = pending;
    net.rate(&alice, order, Rating::Bad).unwrap();

    // A client cannot report someone else's order; nobody can probe without a report.
    assert_eq!(
        expect_rejected(&mut net, "not_order_owner", |n| report(n, &bob, order)),
        Rejection::NotOrderOwner(order)
    );
    assert_eq!(
        expect_rejected(&mut net, "no_open_report", |n| probe(n, 0, order, false, [0; 32])),
        Rejection::NoOpenReport(order)
    );

    let fx = report(&mut net, &alice, order).expect("report a rated order");
    assert!(fx.events.contains(&Event::ReportOpened { order }));
    assert!(net.ledger.reports.contains_key(&order));
    expect_rejected(&mut net, "report_already_open", |n| report(n, &alice, order));
    // Probes are coordinator entries.
    let msg = Message::ProbeResult(ProbeResult { order, delivered: false, output_hash: [0; 32] });
    expect_rejected(&mut net, "wrong_role", |n| n.submit(&alice, msg));

    let c1 = net.coordinators[1].keys.id;
    let fx = probe(&mut net, 1, order, false, [0; 32]).unwrap();
    assert!(fx.events.contains(&Event::ProbeFailed { order, coordinator: c1, failures: 1 }));
    assert_eq!(
        expect_rejected(&mut net, "already_signed", |n| probe(n, 1, order, false, [0; 32])),
        Rejection::AlreadySigned(c1)
    );
    // "Delivered" with the wrong bytes is a failure too.
    let fx = probe(&mut net, 2, order, true, output_hash(b"something else")).unwrap();
    assert!(fx.events.contains(&Event::ProbeFailed { order, coordinator: net.coordinators[2].keys.id, failures: 2 }));
    assert_eq!(net.ledger.order(&order).unwrap().status, OrderStatus::Rated, "two of three is not a quorum");
    assert_eq!(contribution(&net, &m.id), 1);

    // One good probe clears it.
    let fx = probe(&mut net, 0, order, true, good_hash).unwrap();
    assert!(fx.events.contains(&Event::ReportCleared { order }));
    assert!(net.ledger.reports.is_empty());
    assert!(net.ledger.report_deadlines.is_empty());
    assert_eq!(net.ledger.order(&order).unwrap().status, OrderStatus::Rated);
    assert_eq!(contribution(&net, &m.id), 1);
    assert_eq!(net.ledger.miner(&m.id).unwrap().failed, 0);
    expect_rejected(&mut net, "no_open_report", |n| probe(n, 2, order, false, [0; 32]));
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.8: a quorum (ceil((2n+1)/3) = 3 of 3) of failed probes within the window invalidates
/// the cycle: no contribution, miner `failed` + 1, the charged price refunded in full.
#[test]
fn spec_5_8_quorum_of_failed_probes_invalidates_and_refunds() {
    let mut net = TestNet::new();
    assert_eq!(net.ledger.quorum(), 3);
    let m = net.miner("miner", &[TEXT], 4);
    let alice = net.client("alice");
    net.faucet(&alice, AssetId::NATIVE, 10 * TOKEN);
    let price: Amount = 1_000_000;
    let fee = price * 20_000 / 1_000_000;

    // One honest free cycle, which stays counted.
    let (_kept, _, _) = serve(&mut net, &alice, std::slice::from_ref(&m), TEXT);
    let start_balance = balance(&net, &alice.id);
    let (order, _, fx) =
        serve_mode(&mut net, &alice, std::slice::from_ref(&m), TEXT, OrderMode::Charged { price, miner: None });
    assert!(fx.events.contains(&Event::Paid { miner: m.id, amount: price - fee, fee }));
    assert_eq!(balance(&net, &alice.id), start_balance - price);
    assert_eq!(balance(&net, &m.id), price - fee);
    assert_eq!(net.ledger.totals.fee_pool, fee);
    assert_eq!(contribution(&net, &m.id), 2);

    report(&mut net, &alice, order).unwrap();
    net.advance(1_000);
    probe(&mut net, 0, order, false, [0; 32]).unwrap();
    probe(&mut net, 1, order, false, [0; 32]).unwrap();
    assert_eq!(net.ledger.order(&order).unwrap().status, OrderStatus::Completed);
    assert_eq!(contribution(&net, &m.id), 2);
    net.now_ms = net.ledger.reports[&order].opened_ms + net.ledger.params.probe_window_ms - 1;
    let fx = probe(&mut net, 2, order, false, [0; 32]).expect("last moment of the window");
    assert!(fx.events.contains(&Event::ProbeFailed { order, coordinator: net.coordinators[2].keys.id, failures: 3 }));
    assert!(fx.events.contains(&Event::CycleInvalidated { order, miner: m.id }));
    assert!(fx.events.contains(&Event::Refunded { client: alice.id, amount: price }));

    assert_eq!(net.ledger.order(&order).unwrap().status, OrderStatus::Invalidated);
    assert_eq!(contribution(&net, &m.id), 1, "the invalidated cycle contributes nothing");
    let miner = net.ledger.miner(&m.id).unwrap();
    assert_eq!((miner.failed, miner.served), (1, 2));
    assert_eq!(balance(&net, &alice.id), start_balance, "price refunded in full");
    assert_eq!(balance(&net, &m.id), 0);
    assert_eq!(net.ledger.totals.fee_pool, 0);
    assert!(net.ledger.reports.is_empty());
    // The epoch pays only the cycle that stood.
    assert_eq!(net.ledger.expected_payouts().1, vec![(m.id, net.ledger.expected_payouts().0)]);
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.8: probes after `probe_window_ms` are refused, and a tick after the window lapses the
/// report without invalidating anything.
#[test]
fn spec_5_8_probe_window_closes_and_tick_lapses_the_report() {
    let mut net = TestNet::new();
    let m = net.miner("miner", &[TEXT], 4);
    let alice = net.client("alice");
    let (order, _, _) = serve(&mut net, &alice, std::slice::from_ref(&m), TEXT);
    net.advance(5_000);
    report(&mut net, &alice, order).unwrap();
    let opened = net.now_ms;
    let closes = opened + net.ledger.params.probe_window_ms;
    probe(&mut net, 0, order, false, [0; 32]).unwrap();
    probe(&mut net, 1, order, false, [0; 32]).unwrap();

    // A tick before the end leaves the report open.
    net.now_ms = closes - 1;
    let fx = net.tick();
    assert!(!fx.events.contains(&Event::ReportLapsed { order }));
    assert!(net.ledger.reports.contains_key(&order));

    net.now_ms = closes;
    let err = expect_rejected(&mut net, "probe_window_closed", |n| probe(n, 2, order, false, [0; 32]));
    assert_eq!(err, Rejection::ProbeWindowClosed { order, closed_at_ms: closes });
    expect_rejected(&mut net, "probe_window_closed", |n| probe(n, 2, order, true, output_hash(b"output")));

    let fx = net.tick();
    assert!(fx.events.contains(&Event::ReportLapsed { order }));
    assert!(net.ledger.reports.is_empty());
    assert!(net.ledger.report_deadlines.is_empty());
    assert_eq!(net.ledger.order(&order).unwrap().status, OrderStatus::Completed);
    assert_eq!(contribution(&net, &m.id), 1);
    assert_eq!(net.ledger.miner(&m.id).unwrap().failed, 0);
    expect_rejected(&mut net, "no_open_report", |n| probe(n, 2, order, false, [0; 32]));
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.8 with SPEC 6.3's quorum on a larger cluster: 4 coordinators need 3 failures, and
/// 5 need 4.
#[test]
fn spec_5_8_invalidation_quorum_follows_cluster_size() {
    for (n, quorum) in [(4usize, 3usize), (5, 4)] {
        let mut net = TestNet::with_genesis(n, |_| {});
        assert_eq!(net.ledger.quorum(), quorum);
        let m = net.miner("miner", &[TEXT], 4);
        let alice = net.client("alice");
        let (order, _, _) = serve(&mut net, &alice, std::slice::from_ref(&m), TEXT);
        report(&mut net, &alice, order).unwrap();
        for i in 0..quorum - 1 {
            let fx = probe(&mut net, i, order, false, [0; 32]).unwrap();
            assert!(!fx.events.iter().any(|e| matches!(e, Event::CycleInvalidated { .. })));
        }
        assert_eq!(net.ledger.order(&order).unwrap().status, OrderStatus::Completed);
        let fx = probe(&mut net, quorum - 1, order, false, [0; 32]).unwrap();
        assert!(fx.events.contains(&Event::CycleInvalidated { order, miner: m.id }));
        assert_eq!(contribution(&net, &m.id), 0);
        net.ledger.check_invariants().unwrap();
    }
}

/// SPEC 5.8 with a governance change (SPEC 5.11) of `probe_window_ms` while a report is open:
/// once one good probe clears the report, nothing of it may remain: no pending deadline, and
/// no later `ReportLapsed` for a report that was cleared.
#[test]
fn spec_5_8_cleared_report_leaves_no_deadline_when_probe_window_changed_meanwhile() {
    let mut net = TestNet::with_genesis(3, |g| g.params.voting_period_ms = 1_000);
    let m = net.miner("miner", &[TEXT], 4);
    let alice = net.client("alice");
    let (order, _, _) = serve(&mut net, &alice, std::slice::from_ref(&m), TEXT);
    let action = ProposalAction::SetParam(ParamChange::ProbeWindowMs(10_000));
    net.submit(&alice, Message::Propose(Propose { action })).unwrap();
    net.submit(&alice, Message::Vote(Vote { proposal: 0, approve: true })).unwrap();

    net.advance(500);
    report(&mut net, &alice, order).unwrap(); // opened under the 30_000 ms window
    net.advance(500);
    let fx = net.tick();
    assert!(fx.events.contains(&Event::ProposalClosed { id: 0, passed: true }));
    assert_eq!(net.ledger.params.probe_window_ms, 10_000);

    net.advance(1_000);
    let fx = probe(&mut net, 0, order, true, output_hash(b"output")).unwrap();
    assert!(fx.events.contains(&Event::ReportCleared { order }));
    assert!(net.ledger.reports.is_empty());
    assert!(net.ledger.report_deadlines.is_empty(), "stale deadline left behind: {:?}", net.ledger.report_deadlines);

    net.now_ms = 60_000;
    let fx = net.tick();
    assert!(!fx.events.contains(&Event::ReportLapsed { order }), "a cleared report cannot lapse: {:?}", fx.events);
    net.ledger.check_invariants().unwrap();
}
