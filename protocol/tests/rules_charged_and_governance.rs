//! SPEC 5.9 (charged mode: escrow, fee split, refunds, asking prices, subscriptions, provider
//! listing) and SPEC 5.11 (stake-weighted governance).

// `Rejection` is a large enum by design (it carries its evidence); closures returning it are fine.
#![allow(clippy::result_large_err)]

use deai_protocol::ledger::{Effects, Event, OrderStatus};
use deai_protocol::message::{
    Message, OrderMode, Propose, RegisterMiner, ServiceOffer, SetAvailability, Subscribe, Vote,
};
use deai_protocol::params::{ParamChange, ProposalAction, TOKEN};
use deai_protocol::rules;
use deai_protocol::testkit::{expect_rejected, Keys, TestNet, MINER_COLLATERAL};
use deai_protocol::types::{Amount, AssetId, OrderId, ParticipantId, Rating};
use deai_protocol::Rejection;

const TEXT: &str = "text-generation";
const EMBED: &str = "text-embedding";
const IMAGE: &str = "image-generation";

fn put_rejected(net: &mut TestNet, code: &str, client: &Keys, service: &str, mode: OrderMode) -> Rejection {
    expect_rejected(net, code, |n| n.put(client, service, mode).map(|_| Effects::default()))
}

fn balance(net: &TestNet, who: &ParticipantId) -> Amount {
    net.ledger.account(who).map(|a| a.balance(AssetId::NATIVE)).unwrap_or(0)
}

/// A participant with `amount` free native balance and nothing locked.
fn funded(net: &mut TestNet, name: &str, amount: Amount) -> Keys {
    let k = Keys::from_name(name);
    net.faucet(&k, AssetId::NATIVE, amount);
    k
}

/// Registers a miner by hand: `(service, asking price, subscription price)` offers.
fn register(net: &mut TestNet, name: &str, offers: &[(&str, Amount, Option<Amount>)], collateral: Amount) -> Keys {
    let k = funded(net, name, collateral);
    let services = offers
        .iter()
        .map(|(s, p, sub)| ServiceOffer { service: s.to_string(), price_per_request: *p, subscription_price: *sub })
        .collect();
    net.submit(
        &k,
        Message::RegisterMiner(RegisterMiner {
            collateral,
            capacity: 16,
            endpoint: format!("http://127.0.0.1/{name}"),
            services,
        }),
    )
    .expect("register");
    k
}

fn fee_of(net: &TestNet, price: Amount) -> Amount {
    price * net.ledger.params.coordinator_fee_ppm as Amount / 1_000_000
}

/// Places `mode`, allocates it and returns the order and the chosen miner.
fn put_and_allocate(net: &mut TestNet, client: &Keys, service: &str, mode: OrderMode) -> (OrderId, ParticipantId) {
    let order = net.put(client, service, mode).expect("order admitted");
    net.allocate(1).expect("a miner is ready").expect("honest allocation");
    (order, net.assigned(&order).expect("allocated"))
}

/// SPEC 5.9: a priced order escrows its price from the client's balance; the claim pays the
/// miner the price minus floor(price * coordinator_fee_ppm / 1e6) and the fee pool the fee.
#[test]
fn spec_5_9_charged_order_escrows_then_pays_miner_minus_fee() {
    let mut net = TestNet::new();
    let m = net.miner("miner", &[TEXT], 4);
    let payer = funded(&mut net, "payer", 10 * TOKEN);
    let price: Amount = 1_234_567;
    let fee = fee_of(&net, price);
    assert_eq!(fee, 24_691, "floor(1_234_567 * 20_000 / 1e6)");

    // More than the balance cannot be escrowed.
    let err = put_rejected(
        &mut net,
        "insufficient_balance",
        &payer,
        TEXT,
        OrderMode::Charged { price: 11 * TOKEN, miner: None },
    );
    assert_eq!(err, Rejection::InsufficientBalance { needed: 11 * TOKEN, available: 10 * TOKEN });

    let order = net.put(&payer, TEXT, OrderMode::Charged { price, miner: None }).expect("charged order needs no pass");
    assert_eq!(balance(&net, &payer.id), 10 * TOKEN - price);
    assert_eq!(net.ledger.account(&payer.id).unwrap().escrow, price);
    assert_eq!(net.ledger.order(&order).unwrap().escrow, price);
    net.allocate(1).unwrap().unwrap();
    assert_eq!(net.ledger.account(&payer.id).unwrap().escrow, price, "escrow held while allocated");

    let miner_before = balance(&net, &m.id);
    let fx = net.claim(&m, order, b"output").unwrap();
    assert!(fx.events.contains(&Event::Paid { miner: m.id, amount: 1_209_876, fee: 24_691 }));
    assert_eq!(balance(&net, &m.id), miner_before + price - fee);
    assert_eq!(net.ledger.totals.fee_pool, fee);
    assert_eq!(net.ledger.account(&payer.id).unwrap().escrow, 0);
    assert_eq!(balance(&net, &payer.id), 10 * TOKEN - price, "the price is spent, not refunded");
    let o = net.ledger.order(&order).unwrap();
    assert_eq!((o.paid, o.fee, o.escrow), (price - fee, fee, 0));
    net.ledger.audit_supply().unwrap();
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.9 / 5.10: an allocated charged order that times out is re-queued once; when it
/// times out again it expires and its price returns to the client.
#[test]
fn spec_5_9_expired_charged_order_refunds_the_price() {
    let mut net = TestNet::new();
    let m = net.miner("miner", &[TEXT], 4);
    let payer = funded(&mut net, "payer", 10 * TOKEN);
    let price: Amount = 777_777;
    let timeout = net.ledger.params.order_timeout_ms;

    let (order, _) = put_and_allocate(&mut net, &payer, TEXT, OrderMode::Charged { price, miner: None });
    net.advance(timeout);
    let fx = net.tick();
    assert!(fx.events.contains(&Event::OrderRequeued { order, miner: m.id }));
    assert!(!fx.events.iter().any(|e| matches!(e, Event::Refunded { .. })));
    assert_eq!(net.ledger.order(&order).unwrap().status, OrderStatus::Pending);
    assert_eq!(net.ledger.account(&payer.id).unwrap().escrow, price, "still escrowed after the first timeout");

    // The timeout took the only miner offline; it comes back for the second allocation.
    net.submit(&m, Message::SetAvailability(SetAvailability { online: true })).unwrap();
    net.allocate(1).unwrap().unwrap();
    net.advance(timeout);
    let fx = net.tick();
    assert!(fx.events.contains(&Event::OrderExpired { order }));
    assert!(fx.events.contains(&Event::Refunded { client: payer.id, amount: price }));
    assert_eq!(net.ledger.order(&order).unwrap().status, OrderStatus::Expired);
    assert_eq!(balance(&net, &payer.id), 10 * TOKEN);
    assert_eq!(net.ledger.account(&payer.id).unwrap().escrow, 0);
    assert_eq!(net.ledger.miner(&m.id).unwrap().timed_out, 2);
    assert_eq!(net.ledger.totals.fee_pool, 0);
    // Too late to claim.
    expect_rejected(&mut net, "wrong_order_status", |n| n.claim(&m, order, b"late"));
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.9: a charged order may pre-specify a miner, but must pay at least its asking price;
/// such an order always goes to that miner.
#[test]
fn spec_5_9_prespecified_miner_gets_at_least_its_asking_price() {
    let mut net = TestNet::new();
    let pricey = register(&mut net, "pricey", &[(TEXT, 5_000, None)], MINER_COLLATERAL);
    let _cheap: Vec<Keys> = (0..3).map(|i| net.miner(&format!("cheap-{i}"), &[TEXT], 16)).collect();
    let payer = funded(&mut net, "payer", TOKEN);

    let err = put_rejected(
        &mut net,
        "price_below_asking",
        &payer,
        TEXT,
        OrderMode::Charged { price: 4_999, miner: Some(pricey.id) },
    );
    assert_eq!(err, Rejection::PriceBelowAsking { asking: 5_000 });
    // The miner does not offer the service at all.
    put_rejected(
        &mut net,
        "unknown_service",
        &payer,
        IMAGE,
        OrderMode::Charged { price: 9_999, miner: Some(pricey.id) },
    );
    // Unknown miner.
    put_rejected(
        &mut net,
        "unknown_miner",
        &payer,
        TEXT,
        OrderMode::Charged { price: 9_999, miner: Some(ParticipantId([3; 32])) },
    );

    for _ in 0..5 {
        let (order, chosen) =
            put_and_allocate(&mut net, &payer, TEXT, OrderMode::Charged { price: 5_000, miner: Some(pricey.id) });
        assert_eq!(chosen, pricey.id, "a pre-specified order goes to that miner");
        let fx = net.claim(&pricey, order, b"output").unwrap();
        assert!(fx.events.contains(&Event::Paid { miner: pricey.id, amount: 4_900, fee: 100 }));
    }
    assert_eq!(balance(&net, &pricey.id), 5 * 4_900);
    assert_eq!(net.ledger.totals.fee_pool, 500);
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.9: a subscription is paid up front (miner minus fee, fee to the pool); while it is
/// active, Subscription-mode orders are accepted and go to that miner; after it, they are not.
#[test]
fn spec_5_9_subscription_pays_up_front_and_routes_orders_while_active() {
    let mut net = TestNet::new();
    let sub_miner = net.miner("sub-miner", &[TEXT, EMBED], 16);
    let others: Vec<Keys> = (0..3).map(|i| net.miner(&format!("other-{i}"), &[TEXT], 16)).collect();
    let no_offer = register(&mut net, "no-subscriptions", &[(TEXT, 0, None)], MINER_COLLATERAL);
    let client = funded(&mut net, "subscriber", 5 * TOKEN);
    let sub_price = TOKEN; // testkit miners sell one period for one token
    let period = net.ledger.params.subscription_period_ms;

    let err = put_rejected(&mut net, "no_subscription", &client, TEXT, OrderMode::Subscription { miner: sub_miner.id });
    assert_eq!(err, Rejection::NoSubscription(sub_miner.id));
    let msg = Message::Subscribe(Subscribe { miner: no_offer.id, service: TEXT.into(), periods: 1 });
    expect_rejected(&mut net, "no_subscription_offer", |n| n.submit(&client, msg));
    let msg = Message::Subscribe(Subscribe { miner: sub_miner.id, service: TEXT.into(), periods: 6 });
    let err = expect_rejected(&mut net, "insufficient_balance", |n| n.submit(&client, msg));
    assert_eq!(err, Rejection::InsufficientBalance { needed: 6 * TOKEN, available: 5 * TOKEN });

    let now = net.now_ms;
    let total = 2 * sub_price;
    let fee = fee_of(&net, total);
    assert_eq!(fee, 40_000_000);
    let fx = net
        .submit(&client, Message::Subscribe(Subscribe { miner: sub_miner.id, service: TEXT.into(), periods: 2 }))
        .expect("subscribe");
    let until = now + 2 * period;
    assert!(fx.events.contains(&Event::Subscribed { client: client.id, miner: sub_miner.id, until_ms: until }));
    assert!(fx.events.contains(&Event::Paid { miner: sub_miner.id, amount: total - fee, fee }));
    assert_eq!(balance(&net, &client.id), 5 * TOKEN - total);
    assert_eq!(balance(&net, &sub_miner.id), total - fee);
    assert_eq!(net.ledger.totals.fee_pool, fee);
    assert_eq!(net.ledger.miner(&sub_miner.id).unwrap().subscribers, 1);
    assert_eq!(net.ledger.account(&client.id).unwrap().subscriptions[&(sub_miner.id, TEXT.to_string())], until);

    // Subscription orders: accepted, no escrow, always to the subscribed miner.
    for _ in 0..6 {
        let (order, chosen) =
            put_and_allocate(&mut net, &client, TEXT, OrderMode::Subscription { miner: sub_miner.id });
        assert_eq!(chosen, sub_miner.id);
        assert_eq!(net.ledger.order(&order).unwrap().escrow, 0);
        let fx = net.claim(&sub_miner, order, b"output").unwrap();
        assert!(!fx.events.iter().any(|e| matches!(e, Event::Paid { .. })), "already paid up front");
    }
    assert_eq!(net.ledger.miner(&sub_miner.id).unwrap().served, 6);
    assert!(others.iter().all(|o| net.ledger.miner(&o.id).unwrap().served == 0));
    // Only the service subscribed to, and only with that miner.
    put_rejected(&mut net, "no_subscription", &client, EMBED, OrderMode::Subscription { miner: sub_miner.id });
    put_rejected(&mut net, "no_subscription", &client, TEXT, OrderMode::Subscription { miner: others[0].id });

    // Still active one millisecond before the end, refused from the end on.
    net.now_ms = until - 1;
    let order = net.put(&client, TEXT, OrderMode::Subscription { miner: sub_miner.id }).expect("still active");
    net.allocate(1).unwrap().unwrap();
    net.claim(&sub_miner, order, b"output").unwrap();
    net.now_ms = until;
    put_rejected(&mut net, "no_subscription", &client, TEXT, OrderMode::Subscription { miner: sub_miner.id });
    net.ledger.check_invariants().unwrap();
}

/// The provider listing score as documented in listing.rs, computed independently.
fn documented_score(
    reputation_milli: u32,
    subscribers: u32,
    collateral: Amount,
    min_collateral: Amount,
    services: usize,
) -> u64 {
    let rating = (reputation_milli as u64).min(100_000);
    let subs = (subscribers as u64 * 1_000).min(100_000);
    let stake = ((collateral * 100_000) / (10 * min_collateral)).min(100_000) as u64;
    let kinds = (services as u64 * 10_000).min(100_000);
    4 * rating + 2 * subs + 2 * stake + kinds
}

/// SPEC 5.9 (paper Table 2): the provider listing ranks by the documented score (rating x4,
/// subscribers x2, collateral x2, service types x1), ties by ascending id; only active,
/// online, non-ejected miners offering the service are listed.
#[test]
fn spec_5_9_provider_listing_ranks_by_documented_score() {
    let mut net = TestNet::new();
    let fresh_a = net.miner("fresh-a", &[TEXT], 4);
    let fresh_b = net.miner("fresh-b", &[TEXT], 4);
    let rated = net.miner("rated", &[TEXT], 4);
    let popular = net.miner("popular", &[TEXT], 4);
    let rich = register(&mut net, "rich", &[(TEXT, 0, None)], 4 * MINER_COLLATERAL);
    let versatile = net.miner("versatile", &[TEXT, EMBED, IMAGE], 4);
    let offline = net.miner("offline", &[TEXT], 4);
    let image_only = net.miner("image-only", &[IMAGE], 4);
    net.submit(&offline, Message::SetAvailability(SetAvailability { online: false })).unwrap();

    // One Good rating for `rated` (through a pre-specified order), three subscribers for `popular`.
    let rater = funded(&mut net, "rater", TOKEN);
    let (order, chosen) =
        put_and_allocate(&mut net, &rater, TEXT, OrderMode::Charged { price: 10, miner: Some(rated.id) });
    assert_eq!(chosen, rated.id);
    net.claim(&rated, order, b"output").unwrap();
    net.rate(&rater, order, Rating::Good).unwrap();
    for i in 0..3 {
        let s = funded(&mut net, &format!("fan-{i}"), 2 * TOKEN);
        net.submit(&s, Message::Subscribe(Subscribe { miner: popular.id, service: TEXT.into(), periods: 1 })).unwrap();
    }

    let min = net.ledger.params.min_collateral;
    let listing = net.ledger.provider_listing(Some(TEXT));
    // Every row carries the documented score of the miner's current state.
    for row in &listing {
        let m = net.ledger.miner(&row.miner).unwrap();
        assert_eq!(row.score, documented_score(m.reputation_milli, m.subscribers, m.collateral, min, m.services.len()));
        assert_eq!(
            (row.reputation_milli, row.subscribers, row.collateral),
            (m.reputation_milli, m.subscribers, m.collateral)
        );
        assert_eq!(row.services, m.services.keys().cloned().collect::<Vec<_>>());
    }
    let scores: Vec<(ParticipantId, u64)> = listing.iter().map(|r| (r.miner, r.score)).collect();
    let score_of = |k: &Keys| scores.iter().find(|s| s.0 == k.id).unwrap().1;
    assert_eq!(score_of(&fresh_a), 4 * 50_000 + 2 * 10_000 + 10_000);
    assert_eq!(score_of(&rated), 4 * rules::reputation_milli(100_000, 1) as u64 + 2 * 10_000 + 10_000);
    assert_eq!(score_of(&popular), 4 * 50_000 + 2 * 3_000 + 2 * 10_000 + 10_000);
    assert_eq!(score_of(&rich), 4 * 50_000 + 2 * 40_000 + 10_000);
    assert_eq!(score_of(&versatile), 4 * 50_000 + 2 * 10_000 + 30_000);

    // rich 290_000 > versatile 250_000 > rated 239_992 > popular 236_000 > fresh 230_000 (x2, by id).
    let (first, second) = if fresh_a.id < fresh_b.id { (&fresh_a, &fresh_b) } else { (&fresh_b, &fresh_a) };
    let want: Vec<ParticipantId> = [&rich, &versatile, &rated, &popular, first, second].iter().map(|k| k.id).collect();
    assert_eq!(listing.iter().map(|r| r.miner).collect::<Vec<_>>(), want);
    assert_eq!(score_of(&fresh_a), score_of(&fresh_b), "a genuine tie, broken by id");

    // The unfiltered listing also holds the image-only miner; the offline one is never listed.
    let all = net.ledger.provider_listing(None);
    assert!(all.iter().any(|r| r.miner == image_only.id));
    assert!(!all.iter().any(|r| r.miner == offline.id));
    assert!(!listing.iter().any(|r| r.miner == image_only.id));
    for pair in all.windows(2) {
        assert!(pair[0].score > pair[1].score || (pair[0].score == pair[1].score && pair[0].miner < pair[1].miner));
    }
    net.ledger.check_invariants().unwrap();
}

fn propose(net: &mut TestNet, who: &Keys, action: ProposalAction) -> Result<Effects, Rejection> {
    net.submit(who, Message::Propose(Propose { action }))
}

fn vote(net: &mut TestNet, who: &Keys, proposal: u64, approve: bool) -> Result<Effects, Rejection> {
    net.submit(who, Message::Vote(Vote { proposal, approve }))
}

fn closed(fx: &Effects, id: u64) -> Option<bool> {
    fx.events.iter().find_map(|e| match e {
        Event::ProposalClosed { id: i, passed } if *i == id => Some(*passed),
        _ => None,
    })
}

/// SPEC 5.11: proposing and voting need locked native stake; votes weigh by that stake; a tick
/// after `voting_period_ms` tallies against the quorum and the pass threshold (both exact
/// boundaries checked); late votes are refused.
#[test]
fn spec_5_11_stake_weighted_votes_quorum_and_threshold() {
    let mut net = TestNet::new();
    let p = net.ledger.params.clone();
    assert_eq!((p.quorum_ppm, p.pass_threshold_ppm), (200_000, 500_001));
    // Locked native stake: 1_000 tokens in all.
    let whale = net.client_with_stake("whale", 300 * TOKEN);
    let alice = net.client_with_stake("alice", 100 * TOKEN);
    let bob = net.client_with_stake("bob", 100 * TOKEN);
    let _carol = net.client_with_stake("carol", 500 * TOKEN);
    let miner = net.miner("miner", &[TEXT], 4); // collateral is not voting stake
    let free_rider = funded(&mut net, "free-rider", 1_000 * TOKEN); // free balance is not either

    let action = ProposalAction::SetParam(ParamChange::CoordinatorFeePpm(50_000));
    assert_eq!(
        expect_rejected(&mut net, "no_voting_power", |n| propose(n, &free_rider, action.clone())),
        Rejection::NoVotingPower
    );
    expect_rejected(&mut net, "no_voting_power", |n| propose(n, &miner, action.clone()));
    expect_rejected(&mut net, "invalid_proposal", |n| {
        propose(n, &whale, ProposalAction::SetParam(ParamChange::AbuseWindow(0)))
    });
    expect_rejected(&mut net, "unknown_proposal", |n| vote(n, &alice, 0, true));

    let opened = net.now_ms;
    let actions = [
        ProposalAction::SetParam(ParamChange::OrderTimeoutMs(120_000)), // 0: alice yes: 10% < 20% quorum
        ProposalAction::SetParam(ParamChange::FreezeMs(600_000)),       // 1: alice yes, whale no: 25% yes
        ProposalAction::SetParam(ParamChange::CoordinatorFeePpm(50_000)), // 2: whale yes, alice+bob no: 60%
        ProposalAction::SetParam(ParamChange::RateWindowMs(30_000)),    // 3: alice+bob yes: exactly 20%
        ProposalAction::SetParam(ParamChange::ProbeWindowMs(10_000)),   // 4: alice yes, bob no: exactly 50%
    ];
    for (i, a) in actions.iter().enumerate() {
        let fx = propose(&mut net, &whale, a.clone()).unwrap();
        assert!(fx.events.contains(&Event::ProposalOpened { id: i as u64 }));
        assert_eq!(net.ledger.proposals[&(i as u64)].ends_ms, opened + p.voting_period_ms);
    }
    expect_rejected(&mut net, "no_voting_power", |n| vote(n, &free_rider, 2, true));
    let votes: [(&Keys, u64, bool); 10] = [
        (&alice, 0, true),
        (&alice, 1, true),
        (&whale, 1, false),
        (&whale, 2, false), // replaced below
        (&alice, 2, false),
        (&bob, 2, false),
        (&alice, 3, true),
        (&bob, 3, true),
        (&alice, 4, true),
        (&bob, 4, false),
    ];
    for (who, id, approve) in votes {
        let fx = vote(&mut net, who, id, approve).unwrap();
        assert!(fx.events.contains(&Event::Voted { id, voter: who.id, approve }));
    }
    vote(&mut net, &whale, 2, true).expect("a later vote replaces the earlier one");
    assert_eq!(net.ledger.proposals[&2].votes.len(), 3);

    // Not over yet: a tick one millisecond early tallies nothing.
    net.now_ms = opened + p.voting_period_ms - 1;
    let fx = net.tick();
    assert!(!fx.events.iter().any(|e| matches!(e, Event::ProposalClosed { .. })));
    assert_eq!(net.ledger.proposals.len(), 5);

    // At the end, voting is closed even before the tally.
    net.now_ms = opened + p.voting_period_ms;
    assert_eq!(expect_rejected(&mut net, "voting_closed", |n| vote(n, &bob, 0, true)), Rejection::VotingClosed(0));

    let fx = net.tick();
    assert_eq!(closed(&fx, 0), Some(false), "quorum not met");
    assert_eq!(closed(&fx, 1), Some(false), "25% approval is below the threshold");
    assert_eq!(closed(&fx, 2), Some(true), "300 tokens for outweigh 200 against");
    assert_eq!(closed(&fx, 3), Some(true), "exactly the quorum counts");
    assert_eq!(closed(&fx, 4), Some(false), "exactly half does not pass a 500_001 ppm threshold");
    let now = &net.ledger.params;
    assert_eq!(now.order_timeout_ms, p.order_timeout_ms);
    assert_eq!(now.freeze_ms, p.freeze_ms);
    assert_eq!(now.coordinator_fee_ppm, 50_000);
    assert_eq!(now.rate_window_ms, 30_000);
    assert_eq!(now.probe_window_ms, p.probe_window_ms);
    assert!(net.ledger.proposals.is_empty());
    // Closed proposals stay readable with the tally they were decided by.
    let decided = &net.ledger.closed_proposals[&2];
    assert_eq!(decided.proposal.closed, Some(true));
    assert_eq!((decided.yes, decided.no, decided.total_locked), (300 * TOKEN, 200 * TOKEN, 1_000 * TOKEN));
    assert_eq!(decided.weights[&whale.id], 300 * TOKEN);
    assert_eq!(net.ledger.closed_proposals[&0].proposal.closed, Some(false));
    assert_eq!(net.ledger.closed_proposals.len(), 5);
    expect_rejected(&mut net, "unknown_proposal", |n| vote(n, &bob, 0, true));
    net.ledger.check_invariants().unwrap();
}

/// Closed proposals are kept, newest first, up to `MAX_CLOSED_PROPOSALS_RETAINED`: state stays
/// bounded however many proposals a ledger sees.
#[test]
fn closed_proposals_are_retained_up_to_their_limit() {
    use deai_protocol::ledger::{MAX_CLOSED_PROPOSALS_RETAINED, MAX_OPEN_PROPOSALS};
    let mut net = TestNet::new();
    let whale = net.client_with_stake("whale", 300 * TOKEN);
    let period = net.ledger.params.voting_period_ms;
    let mut opened = 0u64;
    while (opened as usize) < MAX_CLOSED_PROPOSALS_RETAINED + MAX_OPEN_PROPOSALS {
        for _ in 0..MAX_OPEN_PROPOSALS {
            propose(&mut net, &whale, ProposalAction::SetParam(ParamChange::FreezeMs(300_000))).unwrap();
            opened += 1;
        }
        net.now_ms += period;
        net.tick();
        assert!(net.ledger.proposals.is_empty());
        assert!(net.ledger.closed_proposals.len() <= MAX_CLOSED_PROPOSALS_RETAINED);
    }
    assert_eq!(net.ledger.closed_proposals.len(), MAX_CLOSED_PROPOSALS_RETAINED);
    let oldest_kept = opened - MAX_CLOSED_PROPOSALS_RETAINED as u64;
    assert_eq!(net.ledger.closed_proposals.keys().next(), Some(&oldest_kept));
    assert_eq!(net.ledger.closed_proposals.keys().last(), Some(&(opened - 1)));
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.11: a passed SetServiceWeight changes the weight later completions contribute.
#[test]
fn spec_5_11_set_service_weight_changes_later_contributions() {
    let mut net = TestNet::with_genesis(3, |g| g.params.voting_period_ms = 600_000);
    let m = net.miner("miner", &[TEXT], 4);
    let alice = net.client("alice");
    let miners = [m.clone()];
    let (first, _) = net.full_cycle(&alice, &miners, TEXT, Rating::Good);
    assert_eq!(net.ledger.order(&first).unwrap().weight, 1);
    assert_eq!(net.ledger.epoch.contributions[&m.id], 1);

    propose(&mut net, &alice, ProposalAction::SetServiceWeight { service: TEXT.into(), weight: 7 }).unwrap();
    vote(&mut net, &alice, 0, true).unwrap();
    // Not yet in force while voting.
    let (before_tally, _) = net.full_cycle(&alice, &miners, TEXT, Rating::Good);
    assert_eq!(net.ledger.order(&before_tally).unwrap().weight, 1);
    net.advance(600_000);
    let fx = net.tick();
    assert_eq!(closed(&fx, 0), Some(true));
    assert_eq!(net.ledger.services[TEXT], 7);

    let order = net.put_free(&alice, TEXT);
    net.allocate(1).unwrap().unwrap();
    let fx = net.claim(&m, order, b"output").unwrap();
    assert!(fx.events.contains(&Event::OrderCompleted { order, miner: m.id, weight: 7 }));
    assert_eq!(net.ledger.epoch.contributions[&m.id], 1 + 1 + 7);
    assert_eq!(net.ledger.order(&first).unwrap().weight, 1, "earlier completions keep their weight");
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.11: a passed EjectMiner makes the miner never selected again, even when it is the
/// only one offering the service; a leader cannot allocate to it either.
#[test]
fn spec_5_11_eject_miner_is_never_selected_again() {
    let mut net = TestNet::with_genesis(3, |g| g.params.voting_period_ms = 600_000);
    let keep = net.miner("keeper", &[TEXT], 16);
    let ejectee = net.miner("ejectee", &[TEXT], 16);
    let miners = [keep.clone(), ejectee.clone()];
    let alice = net.client("alice");
    let mut before = 0;
    for _ in 0..20 {
        let (_, chosen) = net.full_cycle(&alice, &miners, TEXT, Rating::Good);
        before += (chosen == ejectee.id) as u32;
    }
    assert!(before > 0 && before < 20, "both miners were selected before: {before} of 20");

    propose(&mut net, &alice, ProposalAction::EjectMiner { miner: ejectee.id }).unwrap();
    vote(&mut net, &alice, 0, true).unwrap();
    net.advance(600_000);
    let fx = net.tick();
    assert_eq!(closed(&fx, 0), Some(true));
    assert!(fx.events.contains(&Event::MinerEjected { miner: ejectee.id }));
    assert!(net.ledger.miner(&ejectee.id).unwrap().ejected);

    for _ in 0..30 {
        let (_, chosen) = net.full_cycle(&alice, &miners, TEXT, Rating::Good);
        assert_eq!(chosen, keep.id);
    }
    // A leader that allocates to the ejected miner is caught.
    let order = net.put_free(&alice, TEXT);
    let mut plan = net.ledger.plan_allocation(&net.coordinators[0].vrf, 1).unwrap();
    assert_eq!(plan.miners, vec![keep.id]);
    plan.miners[0] = ejectee.id;
    let err = expect_rejected(&mut net, "allocation_mismatch", |n| n.submit_as_coordinator(0, Message::Allocate(plan)));
    assert_eq!(err.misbehaving_coordinator(), Some(net.leader().keys.id));
    // With the other miner offline, nobody is ready: the order waits rather than go to it.
    net.submit(&keep, Message::SetAvailability(SetAvailability { online: false })).unwrap();
    assert!(net.allocate(1).is_none());
    assert_eq!(net.ledger.order(&order).unwrap().status, OrderStatus::Pending);
    // Not listed, not subscribable, not pre-specifiable, cannot re-register.
    assert!(!net.ledger.provider_listing(None).iter().any(|r| r.miner == ejectee.id));
    let fan = funded(&mut net, "fan", 2 * TOKEN);
    let msg = Message::Subscribe(Subscribe { miner: ejectee.id, service: TEXT.into(), periods: 1 });
    expect_rejected(&mut net, "unknown_miner", |n| n.submit(&fan, msg));
    put_rejected(&mut net, "unknown_miner", &fan, TEXT, OrderMode::Charged { price: 10, miner: Some(ejectee.id) });
    net.faucet(&ejectee, AssetId::NATIVE, MINER_COLLATERAL);
    let msg = Message::RegisterMiner(RegisterMiner {
        collateral: MINER_COLLATERAL,
        capacity: 4,
        endpoint: "http://127.0.0.1/again".into(),
        services: vec![ServiceOffer { service: TEXT.into(), price_per_request: 0, subscription_price: None }],
    });
    expect_rejected(&mut net, "miner_ejected", |n| n.submit(&ejectee, msg));
    net.ledger.check_invariants().unwrap();
}
