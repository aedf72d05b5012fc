//! Admission rules: the signed envelope (SPEC 3), the service pass and effective stake
//! (SPEC 5.1), and admission thresholds with freezing, including the sybil flood (SPEC 5.2).
//!
//! Every rejection is checked with its stable code and with the ledger root, height and whole
//! state digest unchanged: a refused entry applies nothing.

use deai_protocol::envelope::{signing_bytes, SignedEnvelope, MAX_BODY_BYTES};
use deai_protocol::ledger::{Entry, Event, OrderStatus, PassState};
use deai_protocol::message::*;
use deai_protocol::params::TOKEN;
use deai_protocol::testkit::{reject, reject_envelope, reject_msg, Keys, TestNet, CLIENT_STAKE};
use deai_protocol::types::{AssetId, NetworkId, OrderId};
use deai_protocol::{Effects, Rejection};

const TEXT: &str = "text-generation";
const IMAGE: &str = "image-generation";
const NON_NATIVE: AssetId = AssetId(1);

fn put_msg(service: &str) -> Message {
    Message::PutOrder(PutOrder {
        service: service.into(),
        mode: OrderMode::Free,
        payload: Payload::Inline(b"prompt".to_vec()),
    })
}

fn faucet_msg(asset: AssetId, amount: u128) -> Message {
    Message::DevFaucet(DevFaucet { asset, amount })
}

/// An envelope over arbitrary body bytes, correctly signed by `who`.
fn seal_raw(who: &Keys, network: &NetworkId, nonce: u64, kind: MessageKind, body: Vec<u8>) -> SignedEnvelope {
    let signature = who.sign_detached(&signing_bytes(kind, network, nonce, &body));
    SignedEnvelope { kind, body, signer: who.id, nonce, network_id: network.clone(), signature }
}

fn lock(net: &mut TestNet, who: &Keys, asset: AssetId, amount: u128) -> Effects {
    net.submit(who, Message::LockStake(LockStake { asset, amount })).expect("lock stake")
}

/// A key with `amount` of `asset` credited by the faucet and locked, but no pass.
fn staker(net: &mut TestNet, name: &str, stakes: &[(AssetId, u128)]) -> Keys {
    let k = Keys::from_name(name);
    for &(asset, amount) in stakes {
        net.faucet(&k, asset, amount);
        lock(net, &k, asset, amount);
    }
    k
}

fn frozen_until(err: &Rejection) -> u64 {
    match err {
        Rejection::Frozen { until_ms } => *until_ms,
        other => panic!("expected frozen, got {other:?} ({})", other.code()),
    }
}

/// Sends `attempts` free orders for `service` as `client`; returns how many were admitted and
/// checks every refusal is `frozen` and changed nothing.
fn flood(net: &mut TestNet, client: &Keys, service: &str, attempts: usize) -> usize {
    let mut admitted = 0;
    for _ in 0..attempts {
        let entry = net.entry(client, put_msg(service));
        let (root, height) = (net.ledger.root, net.ledger.height);
        match net.ledger.apply(&entry) {
            Ok(_) => admitted += 1,
            Err(e) => {
                assert_eq!(e.code(), "frozen", "flood refusal must be frozen, got {e}");
                assert_eq!((net.ledger.root, net.ledger.height), (root, height));
            }
        }
    }
    admitted
}

// ---------------------------------------------------------------------------------------------
// SPEC 3: signed envelopes
// ---------------------------------------------------------------------------------------------

/// SPEC 3: an envelope whose signature does not verify (a flipped signature byte, or a body,
/// nonce or signer changed after signing) is rejected `bad_signature`, and the nonce stays free.
#[test]
fn spec3_bad_signature_is_rejected_without_state_change() {
    let mut net = TestNet::new();
    let alice = net.client("alice");
    let mallory = Keys::from_name("mallory");

    let honest = net.entry(&alice, put_msg(TEXT));

    let mut flipped = honest.clone();
    flipped.envelope.signature[17] ^= 0x01;
    let err = reject(&mut net, &flipped);
    assert_eq!(err.code(), "bad_signature");
    assert_eq!(err, Rejection::BadSignature(alice.id));

    // The signature covers the body: a different (valid) body under the old signature fails.
    let mut body_swapped = honest.clone();
    body_swapped.envelope.body = put_msg(IMAGE).body_bytes();
    assert_eq!(reject(&mut net, &body_swapped), Rejection::BadSignature(alice.id));

    // It covers the nonce.
    let mut nonce_bumped = honest.clone();
    nonce_bumped.envelope.nonce += 1;
    assert_eq!(reject(&mut net, &nonce_bumped), Rejection::BadSignature(alice.id));

    // It binds the signer: alice's signature presented as mallory's.
    let mut resigned = honest.clone();
    resigned.envelope.signer = mallory.id;
    assert_eq!(reject(&mut net, &resigned), Rejection::BadSignature(mallory.id));

    // Nothing was consumed: the honest entry with the same nonce is accepted.
    let fx = net.ledger.apply(&honest).expect("the honest entry is accepted");
    assert!(matches!(fx.events.as_slice(), [Event::OrderPlaced { client, .. }] if *client == alice.id));
    net.ledger.check_invariants().unwrap();
}

/// SPEC 3: an envelope sealed for another network is rejected `wrong_network`; relabelling it
/// with this network's id breaks its signature.
#[test]
fn spec3_wrong_network_id_is_rejected() {
    let mut net = TestNet::new();
    let alice = net.client("alice");
    let other = NetworkId("deai-elsewhere".into());
    let nonce = net.ledger.next_nonce(&alice.id);
    let envelope = SignedEnvelope::seal(&alice.signing, &other, nonce, &put_msg(TEXT));
    let foreign = Entry { stamped_ms: net.now_ms, envelope };

    let err = reject(&mut net, &foreign);
    assert_eq!(err.code(), "wrong_network");
    assert_eq!(err, Rejection::WrongNetwork { expected: "deai-test".into(), got: "deai-elsewhere".into() });

    let mut relabelled = foreign.clone();
    relabelled.envelope.network_id = net.ledger.network_id.clone();
    assert_eq!(reject(&mut net, &relabelled).code(), "bad_signature");

    // A faucet entry from the other network is refused just the same: no tokens appear.
    let envelope = SignedEnvelope::seal(&alice.signing, &other, nonce, &faucet_msg(AssetId::NATIVE, TOKEN));
    let err = reject_envelope(&mut net, envelope);
    assert_eq!(err.code(), "wrong_network");
    assert_eq!(net.ledger.account(&alice.id).unwrap().balance(AssetId::NATIVE), 0);
}

/// SPEC 3: applying the very same entry twice is a replay: the second copy is rejected `replay`
/// and places no second order.
#[test]
fn spec3_replayed_entry_is_rejected() {
    let mut net = TestNet::new();
    let alice = net.client("alice");
    let entry = net.entry(&alice, put_msg(TEXT));
    net.ledger.apply(&entry).expect("first copy accepted");
    let orders = net.ledger.orders.len();

    let err = reject(&mut net, &entry);
    assert_eq!(err.code(), "replay");
    assert_eq!(err, Rejection::Replay { signer: alice.id, nonce: entry.envelope.nonce, last: entry.envelope.nonce });
    assert_eq!(net.ledger.orders.len(), orders);

    // Still a replay after other entries, and with a later time stamp.
    net.put_free(&alice, TEXT);
    net.advance(1_000);
    let mut later = entry.clone();
    later.stamped_ms = net.now_ms;
    assert_eq!(reject(&mut net, &later).code(), "replay");

    // A replayed faucet entry credits nothing twice.
    let faucet = net.entry(&alice, faucet_msg(AssetId::NATIVE, 5 * TOKEN));
    net.ledger.apply(&faucet).unwrap();
    assert_eq!(reject(&mut net, &faucet).code(), "replay");
    assert_eq!(net.ledger.account(&alice.id).unwrap().balance(AssetId::NATIVE), 5 * TOKEN);
    net.ledger.check_invariants().unwrap();
}

/// SPEC 3: a nonce not greater than the signer's last accepted nonce (lower or equal) is a
/// replay; gaps upward are allowed.
#[test]
fn spec3_lower_or_equal_nonce_is_rejected() {
    let mut net = TestNet::new();
    let bob = Keys::from_name("bob");
    let network = net.ledger.network_id.clone();
    let at = |nonce: u64, amount: u128, now: u64| Entry {
        stamped_ms: now,
        envelope: SignedEnvelope::seal(&bob.signing, &network, nonce, &faucet_msg(AssetId::NATIVE, amount)),
    };

    // A fresh signer's last nonce is 0, so nonce 0 is already a replay.
    let err = reject(&mut net, &at(0, TOKEN, 0));
    assert_eq!(err, Rejection::Replay { signer: bob.id, nonce: 0, last: 0 });

    net.ledger.apply(&at(5, TOKEN, net.now_ms)).expect("nonce 5 after nothing: a gap is fine");
    assert_eq!(net.ledger.next_nonce(&bob.id), 6);

    let err = reject(&mut net, &at(3, 2 * TOKEN, 0));
    assert_eq!(err.code(), "replay");
    assert_eq!(err, Rejection::Replay { signer: bob.id, nonce: 3, last: 5 });
    let err = reject(&mut net, &at(5, 2 * TOKEN, 0));
    assert_eq!(err, Rejection::Replay { signer: bob.id, nonce: 5, last: 5 });

    net.ledger.apply(&at(6, 2 * TOKEN, net.now_ms)).expect("nonce 6 is next");
    assert_eq!(net.ledger.account(&bob.id).unwrap().balance(AssetId::NATIVE), 3 * TOKEN);
}

/// SPEC 3: a body larger than `MAX_BODY_BYTES` is rejected `body_too_large`, even when validly
/// signed; a body of exactly the limit passes the envelope check (and meets the payload rule).
#[test]
fn spec3_oversized_body_is_rejected() {
    let mut net = TestNet::new();
    let alice = net.client("alice");
    let big = |n: usize| {
        Message::PutOrder(PutOrder {
            service: TEXT.into(),
            mode: OrderMode::Free,
            payload: Payload::Inline(vec![7u8; n]),
        })
    };

    let over = big(MAX_BODY_BYTES);
    let size = over.body_bytes().len();
    assert!(size > MAX_BODY_BYTES);
    let err = reject_msg(&mut net, &alice, over);
    assert_eq!(err.code(), "body_too_large");
    assert_eq!(err, Rejection::BodyTooLarge { size_bytes: size, limit_bytes: MAX_BODY_BYTES });

    // Raw oversized bytes, signed, are refused before any decoding.
    let nonce = net.ledger.next_nonce(&alice.id);
    let raw = seal_raw(&alice, &net.ledger.network_id, nonce, MessageKind::PutOrder, vec![0u8; MAX_BODY_BYTES + 1]);
    let err = reject_envelope(&mut net, raw);
    assert_eq!(err, Rejection::BodyTooLarge { size_bytes: MAX_BODY_BYTES + 1, limit_bytes: MAX_BODY_BYTES });

    // Exactly at the limit: the envelope is fine, the inline payload rule refuses it instead.
    let at_limit = (MAX_BODY_BYTES - 64..=MAX_BODY_BYTES)
        .rev()
        .map(big)
        .find(|m| m.body_bytes().len() == MAX_BODY_BYTES)
        .expect("some payload size gives a body of exactly the limit");
    assert_eq!(reject_msg(&mut net, &alice, at_limit).code(), "payload_too_large");
}

/// SPEC 3: body bytes that are not a valid encoding of the kind's body are rejected `malformed`
/// even when properly signed.
#[test]
fn spec3_malformed_body_is_rejected() {
    let mut net = TestNet::new();
    let alice = net.client("alice");
    let network = net.ledger.network_id.clone();
    let nonce = net.ledger.next_nonce(&alice.id);
    let valid = put_msg(TEXT).body_bytes();
    let mut trailing = valid.clone();
    trailing.push(0);
    let bodies: Vec<(MessageKind, Vec<u8>)> = vec![
        (MessageKind::PutOrder, vec![0xff; 9]),
        (MessageKind::PutOrder, Vec::new()),
        (MessageKind::PutOrder, trailing),
        (MessageKind::PutOrder, valid[..valid.len() - 1].to_vec()),
        (MessageKind::Claim, faucet_msg(AssetId::NATIVE, TOKEN).body_bytes()),
    ];
    for (kind, body) in bodies {
        let envelope = seal_raw(&alice, &network, nonce, kind, body.clone());
        let err = reject_envelope(&mut net, envelope);
        assert_eq!(err.code(), "malformed", "body {body:?} as {kind:?}: {err}");
        assert!(matches!(err, Rejection::Malformed(_)));
    }
    // The nonce was not consumed.
    let envelope = seal_raw(&alice, &network, nonce, MessageKind::PutOrder, valid);
    net.ledger.apply(&Entry { stamped_ms: net.now_ms, envelope }).expect("the valid body is accepted");
}

/// SPEC 3 (roles): coordinator-only kinds signed by anyone outside the coordinator set are
/// rejected `wrong_role`; the same kinds signed by a coordinator are accepted.
#[test]
fn spec3_coordinator_kinds_signed_by_a_participant_are_wrong_role() {
    let mut net = TestNet::new();
    let miner = net.miner("miner-a", &[TEXT], 4);
    let alice = net.client("alice");
    let order = net.put_free(&alice, TEXT);

    let err = reject_msg(&mut net, &alice, Message::Tick(Tick {}));
    assert_eq!(err.code(), "wrong_role");
    assert_eq!(err, Rejection::WrongRole { kind: "tick", role: "coordinator" });

    // An honest allocation plan, but signed by the miner (or the client): refused.
    let plan = net.ledger.plan_allocation(&net.coordinators[0].vrf, 1).expect("a miner is ready");
    for who in [&miner, &alice] {
        let err = reject_msg(&mut net, who, Message::Allocate(plan.clone()));
        assert_eq!(err, Rejection::WrongRole { kind: "allocate", role: "coordinator" });
    }
    let epoch = Message::CloseEpoch(CloseEpoch { epoch: 0, payouts: vec![] });
    assert_eq!(reject_msg(&mut net, &alice, epoch).code(), "wrong_role");
    assert_eq!(net.ledger.order(&order).unwrap().status, OrderStatus::Pending);

    // The coordinator may.
    net.submit_as_coordinator(0, Message::Allocate(plan)).expect("coordinator allocates");
    assert_eq!(net.ledger.order(&order).unwrap().status, OrderStatus::Allocated);
    net.submit_as_coordinator(1, Message::Tick(Tick {})).expect("any coordinator may tick");
}

// ---------------------------------------------------------------------------------------------
// SPEC 5.1: service pass and effective stake
// ---------------------------------------------------------------------------------------------

/// SPEC 5.1: `s = native + floor(q * value(non-native))`, with the genesis price of AssetId(1)
/// (1_000_000 ppm: one native unit per unit) and q = 0.1.
#[test]
fn spec5_1_effective_stake_is_native_plus_q_times_non_native_value() {
    let mut net = TestNet::new();
    assert_eq!(net.ledger.params.q_ppm, 100_000);
    assert_eq!(net.ledger.asset_prices_ppm.get(&NON_NATIVE), Some(&1_000_000));
    let native = 100 * TOKEN;
    let non_native: u128 = 123_456_789_017; // value 123_456_789_017, q * value = 12_345_678_901.7
    let carol = staker(&mut net, "carol", &[(AssetId::NATIVE, native), (NON_NATIVE, non_native)]);
    let expected = native + 12_345_678_901;
    assert_eq!(net.ledger.effective_stake(&carol.id), expected);
    assert_eq!(deai_protocol::rules::effective_stake(native, non_native, 100_000), expected);

    let fx = net.submit(&carol, Message::AcquirePass(AcquirePass {})).unwrap();
    assert_eq!(fx.events, vec![Event::PassAcquired { client: carol.id, effective_stake: expected }]);
    // 112.3 TOKEN is 11.2 stake units of 10 TOKEN: 11 units of allowance.
    assert_eq!(net.ledger.admission_limit(&carol.id), 11 * 10);

    // Non-native stake alone counts at q.
    let dave = staker(&mut net, "dave", &[(NON_NATIVE, 1_000 * TOKEN)]);
    assert_eq!(net.ledger.effective_stake(&dave.id), 100 * TOKEN);

    // An asset with no governance price cannot be staked at all.
    let err = reject_msg(&mut net, &dave, faucet_msg(AssetId(9), TOKEN));
    assert_eq!(err, Rejection::UnknownAsset(9));
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.1: `value` converts a non-native asset at its governance-set price (here 2.5 native
/// units per unit, set in the genesis).
#[test]
fn spec5_1_effective_stake_values_non_native_at_its_price() {
    let mut net = TestNet::with_genesis(3, |g| g.asset_prices_ppm = vec![(NON_NATIVE, 2_500_000)]);
    // value = 400 * 2.5 = 1000 TOKEN, q * value = 100 TOKEN.
    let erin = staker(&mut net, "erin", &[(NON_NATIVE, 400 * TOKEN)]);
    assert_eq!(net.ledger.effective_stake(&erin.id), 100 * TOKEN);
    // value = 1_000_003 * 2.5 = 2_500_007.5, q * value = 250_000.75: floor is 250_000.
    let fred = staker(&mut net, "fred", &[(AssetId::NATIVE, 7), (NON_NATIVE, 1_000_003)]);
    assert_eq!(net.ledger.effective_stake(&fred.id), 7 + 250_000);
}

/// SPEC 5.1: a pass needs at least one stake unit of effective stake; exactly one unit is enough.
#[test]
fn spec5_1_pass_requires_one_stake_unit_of_effective_stake() {
    let mut net = TestNet::new();
    let unit = net.ledger.params.stake_unit;
    assert_eq!(unit, 10 * TOKEN);
    let acquire = Message::AcquirePass(AcquirePass {});

    // Nothing locked at all.
    let nobody = Keys::from_name("nobody");
    let err = reject_msg(&mut net, &nobody, acquire.clone());
    assert_eq!(err, Rejection::InsufficientStake { effective: 0, stake_unit: unit });

    // 99 TOKEN of non-native stake: effective 9.9 TOKEN, 0.1 TOKEN short of a unit.
    let gina = staker(&mut net, "gina", &[(NON_NATIVE, 99 * TOKEN)]);
    let err = reject_msg(&mut net, &gina, acquire.clone());
    assert_eq!(err.code(), "insufficient_stake");
    assert_eq!(err, Rejection::InsufficientStake { effective: 9_900_000_000, stake_unit: unit });
    net.faucet(&gina, NON_NATIVE, TOKEN);
    lock(&mut net, &gina, NON_NATIVE, TOKEN);
    assert_eq!(net.ledger.effective_stake(&gina.id), unit);
    net.submit(&gina, acquire.clone()).expect("exactly one stake unit is enough");
    assert_eq!(net.ledger.account(&gina.id).unwrap().pass, PassState::Valid);

    // Native one base unit short.
    let hank = staker(&mut net, "hank", &[(AssetId::NATIVE, unit - 1)]);
    let err = reject_msg(&mut net, &hank, acquire.clone());
    assert_eq!(err, Rejection::InsufficientStake { effective: unit - 1, stake_unit: unit });
    // Unlocked balance does not count.
    net.faucet(&hank, AssetId::NATIVE, 1_000 * TOKEN);
    assert_eq!(reject_msg(&mut net, &hank, acquire.clone()).code(), "insufficient_stake");
    lock(&mut net, &hank, AssetId::NATIVE, 1);
    net.submit(&hank, acquire).expect("now one unit");
}

/// SPEC 5.1: a client holding a valid pass cannot acquire it again.
#[test]
fn spec5_1_pass_cannot_be_acquired_twice() {
    let mut net = TestNet::new();
    let alice = net.client("alice");
    let err = reject_msg(&mut net, &alice, Message::AcquirePass(AcquirePass {}));
    assert_eq!(err.code(), "pass_already_held");
    assert_eq!(err, Rejection::PassAlreadyHeld);
    // More stake does not make a second pass either.
    net.faucet(&alice, AssetId::NATIVE, 100 * TOKEN);
    lock(&mut net, &alice, AssetId::NATIVE, 100 * TOKEN);
    assert_eq!(reject_msg(&mut net, &alice, Message::AcquirePass(AcquirePass {})), Rejection::PassAlreadyHeld);
}

/// SPEC 5.1: releasing the pass with orders in flight keeps the whole stake locked until the
/// last one completes (via claims), then it unlocks to balances.
#[test]
fn spec5_1_release_keeps_stake_locked_until_last_order_is_claimed() {
    let mut net = TestNet::new();
    let miner = net.miner("miner-a", &[TEXT], 4);
    let ivy = staker(&mut net, "ivy", &[(AssetId::NATIVE, 50 * TOKEN), (NON_NATIVE, 30 * TOKEN)]);
    net.submit(&ivy, Message::AcquirePass(AcquirePass {})).unwrap();
    let o1 = net.put_free(&ivy, TEXT);
    let o2 = net.put_free(&ivy, TEXT);
    net.allocate(2).expect("ready").expect("honest");
    assert_eq!(net.assigned(&o1), Some(miner.id));
    assert_eq!(net.assigned(&o2), Some(miner.id));

    let fx = net.submit(&ivy, Message::ReleasePass(ReleasePass {})).unwrap();
    assert_eq!(fx.events, vec![Event::PassReleasing { client: ivy.id, in_flight: 2 }]);
    let acc = net.ledger.account(&ivy.id).unwrap();
    assert_eq!(acc.pass, PassState::Releasing);
    assert_eq!((acc.locked(AssetId::NATIVE), acc.locked(NON_NATIVE)), (50 * TOKEN, 30 * TOKEN));
    assert_eq!((acc.balance(AssetId::NATIVE), acc.balance(NON_NATIVE)), (0, 0));

    // While releasing: no free orders, no new stake, no new pass, no second release.
    assert_eq!(reject_msg(&mut net, &ivy, put_msg(TEXT)).code(), "no_service_pass");
    net.faucet(&ivy, AssetId::NATIVE, TOKEN);
    let err = reject_msg(&mut net, &ivy, Message::LockStake(LockStake { asset: AssetId::NATIVE, amount: TOKEN }));
    assert_eq!(err.code(), "pass_releasing");
    assert_eq!(reject_msg(&mut net, &ivy, Message::AcquirePass(AcquirePass {})).code(), "pass_releasing");
    assert_eq!(reject_msg(&mut net, &ivy, Message::ReleasePass(ReleasePass {})).code(), "no_service_pass");

    // First claim: one order still in flight, still locked.
    let fx = net.claim(&miner, o1, b"one").unwrap();
    assert!(!fx.events.iter().any(|e| matches!(e, Event::StakeUnlocked { .. })));
    let acc = net.ledger.account(&ivy.id).unwrap();
    assert_eq!(acc.locked(AssetId::NATIVE), 50 * TOKEN);
    assert_eq!(acc.in_flight, 1);

    // Last claim: stake unlocks into balances.
    let fx = net.claim(&miner, o2, b"two").unwrap();
    assert!(fx.events.contains(&Event::StakeUnlocked { client: ivy.id }));
    let acc = net.ledger.account(&ivy.id).unwrap();
    assert_eq!(acc.pass, PassState::None);
    assert!(acc.locked.is_empty());
    assert_eq!((acc.balance(AssetId::NATIVE), acc.balance(NON_NATIVE)), (51 * TOKEN, 30 * TOKEN));
    assert_eq!(net.ledger.effective_stake(&ivy.id), 0);
    // The unlocked stake is free balance: it can be withdrawn.
    net.submit(&ivy, Message::Withdraw(Withdraw { asset: AssetId::NATIVE, amount: 51 * TOKEN })).unwrap();
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.1 with 5.10: the last in-flight order may also finish by expiry (timed out twice);
/// the stake unlocks in that tick, not before.
#[test]
fn spec5_1_release_unlocks_when_last_order_expires() {
    let mut net = TestNet::new();
    let miner = net.miner("miner-a", &[TEXT], 4);
    let jay = net.client("jay");
    let order = net.put_free(&jay, TEXT);
    net.allocate(1).unwrap().unwrap();
    net.submit(&jay, Message::ReleasePass(ReleasePass {})).unwrap();
    let timeout = net.ledger.params.order_timeout_ms;

    net.advance(timeout);
    let fx = net.tick();
    assert!(fx.events.iter().any(|e| matches!(e, Event::OrderRequeued { order: o, .. } if *o == order)));
    assert!(!fx.events.iter().any(|e| matches!(e, Event::StakeUnlocked { .. })));
    assert_eq!(net.ledger.account(&jay.id).unwrap().locked(AssetId::NATIVE), CLIENT_STAKE);

    // The timeout took the only miner offline; it comes back and takes the order again.
    net.submit(&miner, Message::SetAvailability(SetAvailability { online: true })).unwrap();
    net.allocate(1).unwrap().unwrap();
    net.advance(timeout);
    let fx = net.tick();
    assert!(fx.events.contains(&Event::OrderExpired { order }));
    assert!(fx.events.contains(&Event::StakeUnlocked { client: jay.id }));
    let acc = net.ledger.account(&jay.id).unwrap();
    assert_eq!(acc.locked(AssetId::NATIVE), 0);
    assert_eq!(acc.balance(AssetId::NATIVE), CLIENT_STAKE);
    assert_eq!(acc.pass, PassState::None);
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.1: releasing with nothing in flight unlocks at once.
#[test]
fn spec5_1_release_with_nothing_in_flight_unlocks_at_once() {
    let mut net = TestNet::new();
    let kim = net.client("kim");
    let fx = net.submit(&kim, Message::ReleasePass(ReleasePass {})).unwrap();
    assert_eq!(
        fx.events,
        vec![Event::PassReleasing { client: kim.id, in_flight: 0 }, Event::StakeUnlocked { client: kim.id }]
    );
    let acc = net.ledger.account(&kim.id).unwrap();
    assert_eq!((acc.locked(AssetId::NATIVE), acc.balance(AssetId::NATIVE)), (0, CLIENT_STAKE));
}

/// SPEC 5.1: the dev faucet is refused on a network not configured as dev.
#[test]
fn spec5_1_dev_faucet_rejected_on_non_dev_network() {
    let mut net = TestNet::with_genesis(3, |g| g.dev = false);
    let alice = Keys::from_name("alice");
    let err = reject_msg(&mut net, &alice, faucet_msg(AssetId::NATIVE, 100 * TOKEN));
    assert_eq!(err.code(), "not_dev_network");
    assert_eq!(err, Rejection::NotDevNetwork);
    assert!(net.ledger.account(&alice.id).is_none());
    assert!(net.ledger.totals.deposits.is_empty());
    // A coordinator cannot mint through it either.
    let c0 = net.coordinators[0].keys.clone();
    assert_eq!(reject_msg(&mut net, &c0, faucet_msg(NON_NATIVE, 1)).code(), "not_dev_network");
    // Without a stake source, nobody can get a pass.
    assert_eq!(reject_msg(&mut net, &alice, Message::AcquirePass(AcquirePass {})).code(), "insufficient_stake");
}

// ---------------------------------------------------------------------------------------------
// SPEC 5.2: admission, thresholds and freezing
// ---------------------------------------------------------------------------------------------

/// SPEC 5.2: a client with 10 stake units gets exactly 10 * 10 = 100 free orders in the window;
/// the 101st is refused `frozen` with the unfreeze time; it stays frozen until then (even after
/// the rate window ends) and can order again from that time.
#[test]
fn spec5_2_allowance_then_frozen_until_the_unfreeze_time() {
    let mut net = TestNet::new();
    let alice = net.client("alice");
    let p = net.ledger.params.clone();
    assert_eq!((p.rate_window_ms, p.freeze_ms, p.requests_per_stake_unit), (60_000, 300_000, 10));
    assert_eq!(net.ledger.admission_limit(&alice.id), 100);
    net.advance(1_000);
    let t0 = net.now_ms;
    let until = t0 + p.freeze_ms;

    for i in 0..100 {
        let entry = net.entry(&alice, put_msg(TEXT));
        let fx = net.ledger.apply(&entry).unwrap_or_else(|e| panic!("order {i} refused: {e}"));
        let froze = fx.events.iter().any(|e| matches!(e, Event::ClientFrozen { .. }));
        assert_eq!(froze, i == 99, "only the order that uses the last unit starts the freeze");
        if i == 99 {
            assert!(fx.events.contains(&Event::ClientFrozen { client: alice.id, until_ms: until }));
        }
    }
    let err = reject_msg(&mut net, &alice, put_msg(TEXT));
    assert_eq!(err.code(), "frozen");
    assert_eq!(frozen_until(&err), until);
    assert!(err.to_string().contains(&until.to_string()), "the message names the unfreeze time: {err}");

    // The rate window is over, but the freeze is not.
    net.advance(p.rate_window_ms);
    assert_eq!(frozen_until(&reject_msg(&mut net, &alice, put_msg(TEXT))), until);
    // Other services are frozen too (the freeze is per client).
    assert_eq!(frozen_until(&reject_msg(&mut net, &alice, put_msg(IMAGE))), until);
    net.now_ms = until - 1;
    assert_eq!(frozen_until(&reject_msg(&mut net, &alice, put_msg(TEXT))), until);

    // At the unfreeze time: a fresh window and a full allowance again.
    net.now_ms = until;
    assert_eq!(flood(&mut net, &alice, TEXT, 120), 100);
    let pending = net.ledger.account(&alice.id).unwrap().pending;
    assert_eq!(pending, 200);
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.2: the allowance is counted per service: 9 + 9 orders on two services both fit in a
/// one-unit (10 orders) allowance.
#[test]
fn spec5_2_allowance_is_counted_per_service() {
    let mut net = TestNet::new();
    let unit = net.ledger.params.stake_unit;
    let lee = net.client_with_stake("lee", unit);
    assert_eq!(net.ledger.admission_limit(&lee.id), 10);
    for service in [TEXT, IMAGE] {
        for _ in 0..9 {
            net.put(&lee, service, OrderMode::Free).expect("within the service's allowance");
        }
    }
    let acc = net.ledger.account(&lee.id).unwrap();
    assert_eq!(acc.windows[TEXT].count, 9);
    assert_eq!(acc.windows[IMAGE].count, 9);
    assert_eq!(acc.frozen_until_ms, 0);
    // The tenth on one service uses its last unit and freezes the client.
    net.put(&lee, TEXT, OrderMode::Free).expect("tenth text order");
    assert_eq!(reject_msg(&mut net, &lee, put_msg(IMAGE)).code(), "frozen");
}

/// SPEC 5.2: the count restarts with each rate window: 9 orders, then 9 more one window later,
/// without a freeze; but 10 inside one window (last at window start + 59_999 ms) freeze.
#[test]
fn spec5_2_count_restarts_each_rate_window() {
    let mut net = TestNet::new();
    let unit = net.ledger.params.stake_unit;
    let window = net.ledger.params.rate_window_ms;
    let mia = net.client_with_stake("mia", unit);
    let ned = net.client_with_stake("ned", unit);
    let t0 = net.now_ms;
    assert_eq!(flood(&mut net, &mia, TEXT, 9), 9);
    assert_eq!(flood(&mut net, &ned, TEXT, 9), 9);

    net.now_ms = t0 + window - 1;
    let fx = net.submit(&ned, put_msg(TEXT)).unwrap();
    assert!(fx.events.contains(&Event::ClientFrozen { client: ned.id, until_ms: t0 + window - 1 + 300_000 }));
    assert_eq!(reject_msg(&mut net, &ned, put_msg(TEXT)).code(), "frozen");

    net.now_ms = t0 + window;
    for _ in 0..9 {
        let fx = net.submit(&mia, put_msg(TEXT)).unwrap();
        assert!(!fx.events.iter().any(|e| matches!(e, Event::ClientFrozen { .. })));
    }
    let w = &net.ledger.account(&mia.id).unwrap().windows[TEXT];
    assert_eq!((w.start_ms, w.count), (t0 + window, 9));
    assert_eq!(net.ledger.account(&mia.id).unwrap().frozen_until_ms, 0);
}

/// SPEC 5.2 (paper: SYBIL FLOOD): each identity gets exactly floor(s / stake_unit) * 10 free
/// orders per window however hard it floods; twice the stake buys twice the allowance, stake
/// below a unit buys nothing, and splitting stake over many identities buys no more in total.
#[test]
fn spec5_2_sybil_flood_costs_stake() {
    let mut net = TestNet::new();
    let unit = net.ledger.params.stake_unit;

    let one = net.client_with_stake("one-unit", unit);
    let two = net.client_with_stake("two-units", 2 * unit);
    let almost_two = net.client_with_stake("almost-two", 2 * unit - 1);
    let ten = net.client_with_stake("ten-units", 10 * unit);
    assert_eq!(flood(&mut net, &one, TEXT, 60), 10);
    assert_eq!(flood(&mut net, &two, TEXT, 60), 20);
    assert_eq!(flood(&mut net, &almost_two, TEXT, 60), 10);
    assert_eq!(flood(&mut net, &ten, TEXT, 200), 100);

    // An identity with less than a unit gets no pass, hence no free orders at all.
    let dust = staker(&mut net, "dust", &[(AssetId::NATIVE, unit - 1)]);
    assert_eq!(reject_msg(&mut net, &dust, Message::AcquirePass(AcquirePass {})).code(), "insufficient_stake");
    assert_eq!(reject_msg(&mut net, &dust, put_msg(TEXT)).code(), "no_service_pass");

    // Ten sybils holding one unit each: 100 orders in all, the same as one ten-unit client.
    let mut total = 0;
    for i in 0..10 {
        let sybil = net.client_with_stake(&format!("sybil-{i}"), unit);
        total += flood(&mut net, &sybil, TEXT, 30);
    }
    assert_eq!(total, 100);

    // Each flooder ends frozen, with an unfreeze time freeze_ms after its last admitted order.
    for who in [&one, &two, &almost_two, &ten] {
        let until = net.ledger.account(&who.id).unwrap().frozen_until_ms;
        assert_eq!(until, net.now_ms + net.ledger.params.freeze_ms);
        assert_eq!(frozen_until(&reject_msg(&mut net, who, put_msg(TEXT))), until);
    }
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.2 / 5.1: free orders need a valid pass: no account, stake without a pass, and a
/// released pass are all refused `no_service_pass`.
#[test]
fn spec5_2_free_orders_need_a_pass() {
    let mut net = TestNet::new();
    let stranger = Keys::from_name("stranger");
    let err = reject_msg(&mut net, &stranger, put_msg(TEXT));
    assert_eq!(err, Rejection::NoServicePass);

    let staked = staker(&mut net, "staked", &[(AssetId::NATIVE, CLIENT_STAKE)]);
    assert_eq!(reject_msg(&mut net, &staked, put_msg(TEXT)).code(), "no_service_pass");

    let alice = net.client("alice");
    net.put_free(&alice, TEXT);
    net.submit(&alice, Message::ReleasePass(ReleasePass {})).unwrap();
    assert_eq!(reject_msg(&mut net, &alice, put_msg(TEXT)).code(), "no_service_pass");
}

/// SPEC 5.2: an order for a service not on the governance list is refused `unknown_service`.
#[test]
fn spec5_2_unknown_service_rejected() {
    let mut net = TestNet::new();
    let alice = net.client("alice");
    let err = reject_msg(&mut net, &alice, put_msg("mind-reading"));
    assert_eq!(err.code(), "unknown_service");
    assert_eq!(err, Rejection::UnknownService("mind-reading".into()));
    // Nor does it count against the allowance.
    assert!(net.ledger.account(&alice.id).unwrap().windows.is_empty());
}

/// SPEC 4/5.2: inline payloads are limited to `max_inline_payload_bytes`; larger ones are
/// refused `payload_too_large` (send a hash and URL instead), exactly the limit is accepted.
#[test]
fn spec5_2_inline_payload_over_the_limit_rejected() {
    let mut net = TestNet::new();
    let alice = net.client("alice");
    let limit = net.ledger.params.max_inline_payload_bytes as usize;
    assert_eq!(limit, 16 * 1024);
    let with = |payload: Payload| Message::PutOrder(PutOrder { service: TEXT.into(), mode: OrderMode::Free, payload });

    let err = reject_msg(&mut net, &alice, with(Payload::Inline(vec![1; limit + 1])));
    assert_eq!(err.code(), "payload_too_large");
    assert_eq!(err, Rejection::PayloadTooLarge { size_bytes: limit + 1, limit_bytes: limit });

    net.submit(&alice, with(Payload::Inline(vec![1; limit]))).expect("exactly the limit");
    let external = Payload::External { hash: [9; 32], url: "https://example.invalid/big-prompt".into() };
    net.submit(&alice, with(external)).expect("large inputs go by hash and URL");
    assert_eq!(net.ledger.account(&alice.id).unwrap().pending, 2);
}

/// SPEC 5.2 (docs/decisions.md: thresholds apply to free orders only): a frozen client can still
/// place paid orders, which escrow their price.
#[test]
fn spec5_2_frozen_client_may_still_pay() {
    let mut net = TestNet::new();
    let unit = net.ledger.params.stake_unit;
    let pat = net.client_with_stake("pat", unit);
    assert_eq!(flood(&mut net, &pat, TEXT, 11), 10);
    net.faucet(&pat, AssetId::NATIVE, 3 * TOKEN);
    let paid: OrderId = net
        .put(&pat, TEXT, OrderMode::Charged { price: 2 * TOKEN, miner: None })
        .expect("paid orders are not throttled");
    assert_eq!(net.ledger.order(&paid).unwrap().escrow, 2 * TOKEN);
    assert_eq!(net.ledger.account(&pat.id).unwrap().balance(AssetId::NATIVE), TOKEN);
    assert_eq!(reject_msg(&mut net, &pat, put_msg(TEXT)).code(), "frozen");
    net.ledger.check_invariants().unwrap();
}
