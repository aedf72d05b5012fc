//! Edge cases found in review, each tied to the SPEC rule it protects.

#![allow(clippy::result_large_err)]

use deai_protocol::message::{Message, OrderMode, RegisterMiner, ServiceOffer};
use deai_protocol::params::TOKEN;
use deai_protocol::testkit::{Keys, TestNet, MINER_COLLATERAL};
use deai_protocol::types::AssetId;

const TEXT: &str = "text-generation";

fn priced_miner(net: &mut TestNet, name: &str, asking: u128) -> Keys {
    let k = Keys::from_name(name);
    net.faucet(&k, AssetId::NATIVE, MINER_COLLATERAL);
    net.submit(
        &k,
        Message::RegisterMiner(RegisterMiner {
            collateral: MINER_COLLATERAL,
            capacity: 8,
            endpoint: format!("http://127.0.0.1/{name}"),
            services: vec![ServiceOffer { service: TEXT.into(), price_per_request: asking, subscription_price: None }],
        }),
    )
    .expect("register");
    k
}

/// SPEC 5.9 with 5.3: a charged order without a pre-specified miner is only drawn among miners
/// whose asking price it meets, so a one-unit price cannot buy a pricier miner's work.
#[test]
fn spec_5_9_charged_order_goes_only_to_miners_whose_price_it_meets() {
    let mut net = TestNet::new();
    let pricey = priced_miner(&mut net, "pricey", 100);
    let client = Keys::from_name("payer");
    net.faucet(&client, AssetId::NATIVE, TOKEN);
    let cheap_order = net.put(&client, TEXT, OrderMode::Charged { price: 1, miner: None }).unwrap();
    assert!(net.ledger.plan_allocation(&net.coordinators[0].vrf, 8).is_none(), "nobody asks 1 or less");

    let bargain = priced_miner(&mut net, "bargain", 1);
    let fair_order = net.put(&client, TEXT, OrderMode::Charged { price: 100, miner: None }).unwrap();
    net.allocate(8).expect("both orders can be served now").expect("honest");
    assert_eq!(net.assigned(&cheap_order), Some(bargain.id));
    assert!(matches!(net.assigned(&fair_order), Some(m) if m == pricey.id || m == bargain.id));
    net.ledger.check_invariants().unwrap();
}

/// SPEC 6.3: a coordinator that signs a wrong root and then the right one for the same height
/// is an equivocator, whichever it signed first.
#[test]
fn spec_6_3_equivocation_is_detected_in_either_order() {
    let mut net = TestNet::with_genesis(3, |g| g.params.checkpoint_every = 4);
    let who = Keys::from_name("filler");
    for _ in 0..4 {
        net.faucet(&who, AssetId::NATIVE, 1);
    }
    let root = net.ledger.checkpoints[&4].root;
    net.sign_checkpoint(1, 4, [7; 32]).expect("a signed wrong root is accepted as evidence");
    assert!(!net.ledger.divergences[0].equivocation, "one wrong root alone is divergence");
    net.sign_checkpoint(1, 4, root).expect("the right root still counts");
    assert!(net.ledger.divergences[0].equivocation, "wrong then right is equivocation");
    assert_eq!(net.ledger.checkpoints[&4].signatures.len(), 1);
}

/// SPEC 5.10 with 5.1: an order no miner ever takes expires, so a released pass unlocks.
#[test]
fn spec_5_10_unserved_pending_order_expires_and_the_stake_unlocks() {
    let mut net = TestNet::new();
    let client = net.client("waiting");
    let order = net.put_free(&client, "image-generation");
    net.submit(&client, Message::ReleasePass(deai_protocol::message::ReleasePass {})).unwrap();
    assert!(net.ledger.account(&client.id).unwrap().locked(AssetId::NATIVE) > 0, "held while in flight");
    net.advance(net.ledger.params.order_timeout_ms);
    net.tick();
    assert_eq!(net.ledger.order(&order).unwrap().status, deai_protocol::ledger::OrderStatus::Expired);
    let acc = net.ledger.account(&client.id).unwrap();
    assert_eq!(acc.locked(AssetId::NATIVE), 0);
    assert_eq!(acc.balance(AssetId::NATIVE), deai_protocol::testkit::CLIENT_STAKE);
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.4: a client paying per order with no stake ranks with the smallest staked client, so
/// its orders interleave instead of waiting behind every staked order.
#[test]
fn spec_5_4_paying_client_without_stake_ranks_with_the_smallest_stake() {
    let mut net = TestNet::new();
    let small = net.client_with_stake("small", 10 * TOKEN);
    let big = net.client_with_stake("big", 20 * TOKEN);
    let payer = Keys::from_name("payer-no-stake");
    net.faucet(&payer, AssetId::NATIVE, TOKEN);
    let mut ids = std::collections::BTreeMap::new();
    for _ in 0..2 {
        ids.insert(net.put_free(&small, TEXT), "small");
        ids.insert(net.put_free(&big, TEXT), "big");
        ids.insert(net.put(&payer, TEXT, OrderMode::Charged { price: 1, miner: None }).unwrap(), "payer");
    }
    let order: Vec<&str> = net.ledger.pending_in_wrr_order(6).iter().map(|id| ids[id]).collect();
    // Weights small 1, big 2, payer 1: round 1 serves all three, round 2 only big.
    assert_eq!(order, vec!["small", "big", "payer", "big", "small", "payer"]);
}

/// SPEC 3 replay protection cannot be turned against the signer: a nonce of `u64::MAX` would
/// leave no greater nonce to sign with, so a nonce may skip at most `MAX_NONCE_GAP` ahead.
#[test]
fn spec_3_no_nonce_can_brick_an_account() {
    use deai_protocol::ledger::MAX_NONCE_GAP;
    use deai_protocol::message::DevFaucet;
    use deai_protocol::SignedEnvelope;
    let mut net = TestNet::new();
    let client = Keys::from_name("bricker");
    let faucet = Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: TOKEN });
    let seal = |net: &TestNet, nonce: u64| deai_protocol::ledger::Entry {
        stamped_ms: net.now_ms,
        envelope: SignedEnvelope::seal(&client.signing, &net.ledger.network_id, nonce, &faucet),
    };
    let err = net.apply_recorded(seal(&net, u64::MAX)).unwrap_err();
    assert_eq!(err.code(), "nonce_gap", "{err}");
    assert!(net.apply_recorded(seal(&net, MAX_NONCE_GAP + 1)).is_err(), "one past the gap is refused");
    net.apply_recorded(seal(&net, MAX_NONCE_GAP)).expect("exactly the gap is allowed");
    net.apply_recorded(seal(&net, MAX_NONCE_GAP + 1)).expect("and the account signs on");
}
