//! Allocation rules: AVRF provider selection (SPEC 5.3), interleaved WRR draining of pending
//! orders (SPEC 5.4), and miner registration, claims and expiry (SPEC 5.10).
//!
//! Every rejection is checked with its stable code and with the ledger root, height and whole
//! state digest unchanged. Keys are deterministic, so the "statistical" checks are exact.

use deai_protocol::ledger::{batch_hash, Event, Miner, MinerStatus, OfflineReason, OrderStatus};
use deai_protocol::message::*;
use deai_protocol::params::{ProposalAction, TOKEN};
use deai_protocol::rules::{reputation_milli, select_weighted};
use deai_protocol::testkit::{output_hash, reject, reject_envelope, reject_msg, Keys, TestNet, MINER_COLLATERAL};
use deai_protocol::types::{AssetId, OrderId, ParticipantId, Rating};
use deai_protocol::vrf;
use deai_protocol::{Effects, Ledger, Rejection, SignedEnvelope};
use std::collections::BTreeMap;

const TEXT: &str = "text-generation";
const IMAGE: &str = "image-generation";

/// Submits `plan` as coordinator `i` and expects a rejection with no state change.
fn reject_allocation(net: &mut TestNet, i: usize, plan: Allocate) -> Rejection {
    let keys = net.coordinators[i].keys.clone();
    reject_msg(net, &keys, Message::Allocate(plan))
}

fn leader_id(net: &TestNet, i: usize) -> ParticipantId {
    net.coordinators[i].keys.id
}

fn set_online(net: &mut TestNet, miner: &Keys, online: bool) {
    let fx = net.submit(miner, Message::SetAvailability(SetAvailability { online })).expect("availability");
    assert_eq!(fx.events, vec![Event::MinerAvailability { miner: miner.id, online }]);
}

fn charged_to(miner: &Keys, price: u128) -> OrderMode {
    OrderMode::Charged { price, miner: Some(miner.id) }
}

/// SPEC 5.3 eligibility, read from public state: registered and active, not ejected, online
/// with a live lease at the ledger's time, offering the service, below capacity, reputation at
/// least the minimum.
fn eligible(ledger: &Ledger, m: &Miner, service: &str, load: u32) -> bool {
    m.status == MinerStatus::Active
        && !m.ejected
        && m.online
        && ledger.now_ms - m.last_seen_ms <= ledger.params.miner_lease_ms
        && m.services.contains_key(service)
        && load < m.capacity
        && m.reputation_milli >= ledger.params.min_reputation_milli
}

/// SPEC 5.3 recomputed from the public state, one order after the other: verify the leader's
/// proof over `(batch hash, previous checkpoint root)`, draw `u_i`, select over the eligible
/// miners' reputations in ascending id order, and count each choice before the next draw.
fn expected_choices(ledger: &Ledger, leader: &ParticipantId, plan: &Allocate) -> Vec<Option<ParticipantId>> {
    let key = ledger.coordinator(leader).expect("leader is a coordinator").vrf_key;
    let input = vrf::allocation_input(&batch_hash(&plan.orders), &ledger.last_checkpoint_root);
    let output = vrf::verify(&key, &input, &plan.vrf).expect("the proof verifies");
    let mut load: BTreeMap<ParticipantId, u32> = ledger.miners.iter().map(|(id, m)| (*id, m.in_flight)).collect();
    let mut out = Vec::new();
    for (i, id) in plan.orders.iter().enumerate() {
        let order = ledger.order(id).expect("known order");
        let u = vrf::draw(&output, i as u32);
        let pick = match &order.mode {
            OrderMode::Charged { miner: Some(m), .. } | OrderMode::Subscription { miner: m } => {
                eligible(ledger, &ledger.miners[m], &order.service, load[m]).then_some(*m)
            }
            _ => {
                let mut candidates: Vec<(ParticipantId, u64)> = ledger
                    .miners
                    .iter()
                    .filter(|(id, m)| eligible(ledger, m, &order.service, load[*id]))
                    .map(|(id, m)| (*id, m.reputation_milli as u64))
                    .collect();
                candidates.sort_by_key(|c| c.0);
                let weights: Vec<u64> = candidates.iter().map(|c| c.1).collect();
                select_weighted(u, &weights).map(|k| candidates[k].0)
            }
        };
        if let Some(m) = pick {
            *load.get_mut(&m).unwrap() += 1;
        }
        out.push(pick);
    }
    out
}

/// Plans with coordinator 0, checks the plan against [`expected_choices`], applies it and
/// returns the effects.
fn allocate_checked(net: &mut TestNet, max: usize) -> (Allocate, Effects) {
    let plan = net.ledger.plan_allocation(&net.coordinators[0].vrf, max).expect("something can be allocated");
    let expected = expected_choices(&net.ledger, &leader_id(net, 0), &plan);
    assert_eq!(expected, plan.miners.iter().map(|m| Some(*m)).collect::<Vec<_>>(), "plan differs from SPEC 5.3");
    let fx = net.submit_as_coordinator(0, Message::Allocate(plan.clone())).expect("honest allocation");
    (plan, fx)
}

/// Places `n` free text orders as `client` and allocates them in one batch; returns each
/// order's miner.
fn place_and_allocate(net: &mut TestNet, client: &Keys, service: &str, n: usize) -> Vec<ParticipantId> {
    let orders: Vec<OrderId> = (0..n).map(|_| net.put_free(client, service)).collect();
    let (plan, _) = allocate_checked(net, n);
    assert_eq!(plan.orders.len(), n, "every order is allocated");
    orders.iter().map(|o| net.assigned(o).expect("allocated")).collect()
}

fn count(miners: &[ParticipantId], who: &Keys) -> usize {
    miners.iter().filter(|m| **m == who.id).count()
}

/// Ejects `miner` by a governance vote of a fresh staked client (SPEC 5.11).
fn eject(net: &mut TestNet, miner: &Keys) {
    let voter = net.client("eject-voter");
    net.submit(&voter, Message::Propose(Propose { action: ProposalAction::EjectMiner { miner: miner.id } })).unwrap();
    let proposal = net.ledger.next_proposal - 1;
    net.submit(&voter, Message::Vote(Vote { proposal, approve: true })).unwrap();
    net.advance(net.ledger.params.voting_period_ms);
    let fx = net.tick();
    assert!(fx.events.contains(&Event::MinerEjected { miner: miner.id }));
    assert!(net.ledger.miner(&miner.id).unwrap().ejected);
}

/// Serves one pre-specified order on `miner` for a fresh client and rates it.
fn rated_cycle(net: &mut TestNet, rater: &str, miner: &Keys, rating: Rating) {
    let client = Keys::from_name(rater);
    net.faucet(&client, AssetId::NATIVE, 1);
    let order = net.put(&client, TEXT, charged_to(miner, 1)).expect("paid order");
    let plan = net.ledger.plan_allocation(&net.coordinators[0].vrf, 1).expect("the miner is ready");
    assert_eq!(plan.orders, vec![order]);
    net.submit_as_coordinator(0, Message::Allocate(plan)).unwrap();
    net.claim(miner, order, b"out").unwrap();
    net.rate(&client, order, rating).unwrap();
}

// ---------------------------------------------------------------------------------------------
// SPEC 5.3: AVRF allocation
// ---------------------------------------------------------------------------------------------

/// SPEC 5.3: the leader's honest plan is accepted; each order goes to the miner that
/// `select_weighted(u_i, reputations in ascending id order)` names, and the allocation record
/// keeps the leader, the height and the draw `u_i`.
#[test]
fn spec5_3_honest_plan_is_accepted_and_follows_the_avrf_rule() {
    let mut net = TestNet::new();
    let miners = [net.miner("m-a", &[TEXT], 5), net.miner("m-b", &[TEXT], 5), net.miner("m-c", &[TEXT, IMAGE], 5)];
    let alice = net.client("alice");
    let orders: Vec<OrderId> = (0..5).map(|_| net.put_free(&alice, TEXT)).collect();
    net.advance(2_500);

    let plan = net.ledger.plan_allocation(&net.coordinators[0].vrf, 5).expect("ready miners");
    assert_eq!(plan.orders, orders);
    let expected = expected_choices(&net.ledger, &leader_id(&net, 0), &plan);
    let input = vrf::allocation_input(&batch_hash(&plan.orders), &net.ledger.last_checkpoint_root);
    let (output, _) = net.coordinators[0].vrf.prove(&input);

    let fx = net.submit_as_coordinator(0, Message::Allocate(plan.clone())).expect("honest plan accepted");
    let height = net.ledger.height;
    let deadline = net.now_ms + net.ledger.params.order_timeout_ms;
    let mut allocated = Vec::new();
    for (i, o) in orders.iter().enumerate() {
        let order = net.ledger.order(o).unwrap();
        assert_eq!(order.status, OrderStatus::Allocated);
        assert_eq!(Some(order.miner.unwrap()), expected[i]);
        assert!(miners.iter().any(|m| Some(m.id) == order.miner));
        let record = order.allocation.as_ref().unwrap();
        assert_eq!(
            (record.height, record.coordinator, record.draw),
            (height, leader_id(&net, 0), vrf::draw(&output, i as u32))
        );
        assert_eq!(order.deadline_ms, deadline);
        allocated.push(Event::OrderAllocated { order: *o, miner: order.miner.unwrap() });
    }
    assert_eq!(fx.events, allocated);
    assert!(net.ledger.pending.is_empty());
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.3 / 6: a second replica fed the same entries, and a ledger restored from a snapshot,
/// accept the same `Allocate` entry and compute the same miner for every order.
#[test]
fn spec5_3_every_replica_computes_the_same_miner() {
    fn feed(net: &mut TestNet, replica: &mut Ledger, who: &Keys, message: Message) -> Effects {
        let entry = net.entry(who, message);
        let a = net.ledger.apply(&entry).expect("accepted");
        let b = replica.apply(&entry).expect("accepted by the replica");
        assert_eq!(a, b);
        assert_eq!(net.ledger.root, replica.root);
        a
    }
    let mut net = TestNet::new();
    let mut replica = TestNet::new().ledger;
    let miners: Vec<Keys> = (0..4).map(|i| Keys::from_name(&format!("replica-miner-{i}"))).collect();
    for (i, m) in miners.iter().enumerate() {
        feed(
            &mut net,
            &mut replica,
            m,
            Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: MINER_COLLATERAL }),
        );
        let offer = ServiceOffer { service: TEXT.into(), price_per_request: 0, subscription_price: None };
        let register = RegisterMiner {
            collateral: MINER_COLLATERAL,
            capacity: 2 + i as u32,
            endpoint: format!("http://m{i}"),
            services: vec![offer],
        };
        feed(&mut net, &mut replica, m, Message::RegisterMiner(register));
    }
    let clients: Vec<Keys> = (0..2).map(|i| Keys::from_name(&format!("replica-client-{i}"))).collect();
    for c in &clients {
        feed(&mut net, &mut replica, c, Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 100 * TOKEN }));
        feed(&mut net, &mut replica, c, Message::LockStake(LockStake { asset: AssetId::NATIVE, amount: 100 * TOKEN }));
        feed(&mut net, &mut replica, c, Message::AcquirePass(AcquirePass {}));
    }
    let put = Message::PutOrder(PutOrder {
        service: TEXT.into(),
        mode: OrderMode::Free,
        payload: Payload::Inline(b"p".to_vec()),
    });
    let mut orders = Vec::new();
    for i in 0..8 {
        net.advance(10);
        let c = &clients[i % 2];
        let entry = net.entry(c, put.clone());
        orders.push(Ledger::order_id_of(&entry.envelope));
        net.ledger.apply(&entry).unwrap();
        replica.apply(&entry).unwrap();
    }
    let mut restored = Ledger::restore(&net.ledger.snapshot()).expect("snapshot restores");
    assert_eq!(restored.state_digest(), net.ledger.state_digest());

    // Each replica's own planner, given the leader's key, proposes the same orders and miners.
    let plan = net.ledger.plan_allocation(&net.coordinators[0].vrf, 8).unwrap();
    for other in [&replica, &restored] {
        let p = other.plan_allocation(&net.coordinators[0].vrf, 8).unwrap();
        assert_eq!((&p.orders, &p.miners), (&plan.orders, &plan.miners));
    }
    let expected = expected_choices(&net.ledger, &leader_id(&net, 0), &plan);

    let c0 = net.coordinators[0].keys.clone();
    // A cheating variant is rejected by every replica alike, and changes none of them.
    let mut cheat = plan.clone();
    cheat.miners[0] = miners.iter().map(|m| m.id).find(|id| *id != plan.miners[0]).unwrap();
    let bad = net.entry(&c0, Message::Allocate(cheat));
    let roots = (net.ledger.root, replica.root, restored.root);
    let errors =
        [net.ledger.apply(&bad).unwrap_err(), replica.apply(&bad).unwrap_err(), restored.apply(&bad).unwrap_err()];
    assert_eq!(errors[0].code(), "allocation_mismatch");
    assert!(errors.iter().all(|e| *e == errors[0]));
    assert_eq!(roots, (net.ledger.root, replica.root, restored.root));

    let entry = net.entry(&c0, Message::Allocate(plan.clone()));
    let a = net.ledger.apply(&entry).unwrap();
    let b = replica.apply(&entry).unwrap();
    let c = restored.apply(&entry).unwrap();
    assert_eq!(a, b);
    assert_eq!(a, c);
    assert_eq!(net.ledger.root, replica.root);
    assert_eq!(net.ledger.root, restored.root);
    assert_eq!(net.ledger.state_digest(), replica.state_digest());
    assert_eq!(net.ledger.state_digest(), restored.state_digest());
    for (i, o) in plan.orders.iter().enumerate() {
        let m = net.ledger.order(o).unwrap().miner;
        assert_eq!(m, replica.order(o).unwrap().miner);
        assert_eq!(m, restored.order(o).unwrap().miner);
        assert_eq!(m, expected[i]);
    }
    assert_eq!(plan.orders.len(), 8);
    for o in &orders {
        assert!(plan.orders.contains(o));
    }
    net.ledger.check_invariants().unwrap();
    replica.check_invariants().unwrap();
}

/// SPEC 2 / 5.3: the protocol core has no randomness of its own: the leader's plan (VRF output
/// and proof included) is a pure function of the ledger state and the leader's key, so the
/// same state planned twice gives the same `Allocate` entry, and the same scenario driven twice
/// ends with the same running root.
#[test]
fn spec5_3_plan_allocation_is_deterministic() {
    let run = || {
        let mut net = TestNet::new();
        let miners = [net.miner("m-a", &[TEXT], 4), net.miner("m-b", &[TEXT], 4)];
        let alice = net.client("alice");
        net.put_free(&alice, TEXT);
        net.put_free(&alice, TEXT);
        let first = net.ledger.plan_allocation(&net.coordinators[0].vrf, 2).unwrap();
        let second = net.ledger.plan_allocation(&net.coordinators[0].vrf, 2).unwrap();
        assert_eq!(
            (&first.orders, &first.miners, first.vrf.pre_output),
            (&second.orders, &second.miners, second.vrf.pre_output)
        );
        assert_eq!(first.vrf.proof, second.vrf.proof, "VRF proof bytes differ between two plans of the same state");
        net.submit_as_coordinator(0, Message::Allocate(first)).unwrap();
        let _ = miners;
        net.ledger.root
    };
    assert_eq!(run(), run(), "the same scenario ends with different roots");
}

/// SPEC 5.3 / 6.2 (paper: LEADER ALLOCATES TO THE WRONG MINER): the honest plan with its miner
/// swapped for another registered, ready miner is rejected `allocation_mismatch`, names the
/// leader as the misbehaving coordinator, and allocates nothing, not even the honest orders of
/// the batch.
#[test]
fn spec5_3_leader_allocating_to_the_wrong_miner_is_caught() {
    let mut net = TestNet::new();
    let miners = [net.miner("m-a", &[TEXT], 8), net.miner("m-b", &[TEXT], 8), net.miner("m-c", &[TEXT], 8)];
    let alice = net.client("alice");
    let order = net.put_free(&alice, TEXT);

    let honest = net.ledger.plan_allocation(&net.coordinators[0].vrf, 1).unwrap();
    let right = honest.miners[0];
    for wrong in miners.iter().map(|m| m.id).filter(|id| *id != right) {
        let mut cheat = honest.clone();
        cheat.miners[0] = wrong;
        let err = reject_allocation(&mut net, 0, cheat);
        assert_eq!(err.code(), "allocation_mismatch");
        assert_eq!(
            err,
            Rejection::AllocationMismatch { leader: leader_id(&net, 0), order, claimed: wrong, expected: Some(right) }
        );
        assert_eq!(err.misbehaving_coordinator(), Some(leader_id(&net, 0)));
        assert_eq!(net.ledger.order(&order).unwrap().status, OrderStatus::Pending);
    }
    // An id that is no miner at all.
    let mut cheat = honest.clone();
    cheat.miners[0] = alice.id;
    assert_eq!(reject_allocation(&mut net, 0, cheat).misbehaving_coordinator(), Some(leader_id(&net, 0)));

    // Another coordinator as leader, cheating on the last order of a batch of four.
    let more: Vec<OrderId> = (0..3).map(|_| net.put_free(&alice, TEXT)).collect();
    let honest2 = net.ledger.plan_allocation(&net.coordinators[2].vrf, 4).unwrap();
    assert_eq!(honest2.orders.len(), 4);
    let mut cheat = honest2.clone();
    let last = cheat.miners[3];
    cheat.miners[3] = miners.iter().map(|m| m.id).find(|id| *id != last).unwrap();
    let err = reject_allocation(&mut net, 2, cheat);
    assert!(matches!(err, Rejection::AllocationMismatch { order: o, .. } if o == honest2.orders[3]));
    assert_eq!(err.misbehaving_coordinator(), Some(leader_id(&net, 2)));
    for o in more.iter().chain([&order]) {
        assert_eq!(net.ledger.order(o).unwrap().status, OrderStatus::Pending, "nothing of the batch applied");
    }

    // The honest batch from the same leader goes through.
    net.submit_as_coordinator(2, Message::Allocate(honest2.clone())).expect("honest plan");
    for (o, m) in honest2.orders.iter().zip(&honest2.miners) {
        assert_eq!(net.assigned(o), Some(*m));
    }
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.3 / 6.2: a tampered VRF proof (proof bytes or pre-output), or a valid proof reused for
/// a different batch, is rejected `bad_vrf_proof`, naming the signer.
#[test]
fn spec5_3_tampered_vrf_proof_is_rejected() {
    let mut net = TestNet::new();
    let _m = [net.miner("m-a", &[TEXT], 8), net.miner("m-b", &[TEXT], 8)];
    let alice = net.client("alice");
    let o1 = net.put_free(&alice, TEXT);
    let o2 = net.put_free(&alice, TEXT);
    let honest = net.ledger.plan_allocation(&net.coordinators[0].vrf, 1).unwrap();
    assert_eq!(honest.orders, vec![o1]);

    let mut bent = honest.clone();
    bent.vrf.proof[5] ^= 0x01;
    let err = reject_allocation(&mut net, 0, bent);
    assert_eq!(err.code(), "bad_vrf_proof");
    assert_eq!(err, Rejection::BadVrfProof(leader_id(&net, 0)));
    assert_eq!(err.misbehaving_coordinator(), Some(leader_id(&net, 0)));

    let mut bent = honest.clone();
    bent.vrf.pre_output[0] ^= 0x01;
    assert_eq!(reject_allocation(&mut net, 0, bent), Rejection::BadVrfProof(leader_id(&net, 0)));

    let mut bent = honest.clone();
    bent.vrf.proof = [0; 64];
    assert_eq!(reject_allocation(&mut net, 0, bent).code(), "bad_vrf_proof");

    // The proof is bound to the batch: grinding by moving it to another order fails.
    let mut moved = honest.clone();
    moved.orders = vec![o2];
    assert_eq!(reject_allocation(&mut net, 0, moved), Rejection::BadVrfProof(leader_id(&net, 0)));

    net.submit_as_coordinator(0, Message::Allocate(honest)).expect("the honest proof verifies");
    assert_eq!(net.ledger.order(&o1).unwrap().status, OrderStatus::Allocated);
}

/// SPEC 5.3: the proof must be made with the signing coordinator's own VRF key: a plan proved
/// with coordinator 1's key but signed by coordinator 0 is rejected; coordinator 1 may submit it.
#[test]
fn spec5_3_proof_by_another_coordinators_vrf_key_is_rejected() {
    let mut net = TestNet::new();
    let _m = [net.miner("m-a", &[TEXT], 8), net.miner("m-b", &[TEXT], 8)];
    let alice = net.client("alice");
    let order = net.put_free(&alice, TEXT);
    let borrowed = net.ledger.plan_allocation(&net.coordinators[1].vrf, 1).unwrap();

    let err = reject_allocation(&mut net, 0, borrowed.clone());
    assert_eq!(err.code(), "bad_vrf_proof");
    assert_eq!(err, Rejection::BadVrfProof(leader_id(&net, 0)));
    assert_eq!(err.misbehaving_coordinator(), Some(leader_id(&net, 0)));
    assert_eq!(net.ledger.order(&order).unwrap().status, OrderStatus::Pending);

    net.submit_as_coordinator(1, Message::Allocate(borrowed.clone())).expect("its own key");
    assert_eq!(net.assigned(&order), Some(borrowed.miners[0]));
    assert_eq!(net.ledger.order(&order).unwrap().allocation.as_ref().unwrap().coordinator, leader_id(&net, 1));
}

/// SPEC 5.3 eligibility: an offline miner (SetAvailability false) is never chosen; back online
/// it is chosen again.
#[test]
fn spec5_3_offline_miner_is_never_chosen() {
    let mut net = TestNet::new();
    let good = net.miner("good", &[TEXT], 100);
    let bad = net.miner("bad", &[TEXT], 100);
    let alice = net.client("alice");
    set_online(&mut net, &bad, false);
    let got = place_and_allocate(&mut net, &alice, TEXT, 20);
    assert_eq!(count(&got, &good), 20);

    set_online(&mut net, &bad, true);
    let got = place_and_allocate(&mut net, &alice, TEXT, 20);
    assert!(count(&got, &bad) > 0 && count(&got, &good) > 0, "both are chosen when both are ready");
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.3 eligibility: a miner at capacity ("busy") is never chosen; once it frees a slot it
/// takes exactly one more order in a batch.
#[test]
fn spec5_3_busy_miner_at_capacity_is_never_chosen() {
    let mut net = TestNet::new();
    let good = net.miner("good", &[TEXT], 100);
    let busy = net.miner("busy", &[TEXT], 1);
    let alice = net.client("alice");
    net.faucet(&alice, AssetId::NATIVE, 1);
    let first = net.put(&alice, TEXT, charged_to(&busy, 1)).unwrap();
    allocate_checked(&mut net, 1);
    assert_eq!(net.assigned(&first), Some(busy.id));
    assert_eq!(net.ledger.miner(&busy.id).unwrap().in_flight, 1);

    let got = place_and_allocate(&mut net, &alice, TEXT, 20);
    assert_eq!(count(&got, &good), 20);

    net.claim(&busy, first, b"done").unwrap();
    let got = place_and_allocate(&mut net, &alice, TEXT, 20);
    assert_eq!(count(&got, &busy), 1, "one free slot, one order");
    assert_eq!(net.ledger.miner(&busy.id).unwrap().in_flight, 1);
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.3 eligibility: a miner that does not offer the order's service is never chosen.
#[test]
fn spec5_3_miner_not_offering_the_service_is_never_chosen() {
    let mut net = TestNet::new();
    let texter = net.miner("texter", &[TEXT], 100);
    let painter = net.miner("painter", &[IMAGE], 100);
    let alice = net.client("alice");
    let got = place_and_allocate(&mut net, &alice, TEXT, 20);
    assert_eq!(count(&got, &texter), 20);
    let got = place_and_allocate(&mut net, &alice, IMAGE, 10);
    assert_eq!(count(&got, &painter), 10);
}

/// SPEC 5.3 / 5.10 eligibility: a miner that is unregistering (collateral still held for its
/// in-flight order) is never chosen, and cannot be pre-specified.
#[test]
fn spec5_3_unregistering_miner_is_never_chosen() {
    let mut net = TestNet::new();
    let good = net.miner("good", &[TEXT], 100);
    let leaving = net.miner("leaving", &[TEXT], 100);
    let alice = net.client("alice");
    net.faucet(&alice, AssetId::NATIVE, 1);
    let held = net.put(&alice, TEXT, charged_to(&leaving, 1)).unwrap();
    allocate_checked(&mut net, 1);
    net.submit(&leaving, Message::UnregisterMiner(UnregisterMiner {})).unwrap();
    assert_eq!(net.ledger.miner(&leaving.id).unwrap().status, MinerStatus::Unregistering);

    let got = place_and_allocate(&mut net, &alice, TEXT, 20);
    assert_eq!(count(&got, &good), 20);
    let err = reject_msg(
        &mut net,
        &alice,
        Message::PutOrder(PutOrder {
            service: TEXT.into(),
            mode: charged_to(&leaving, 1),
            payload: Payload::Inline(vec![1]),
        }),
    );
    assert_eq!(err.code(), "unknown_miner");

    net.claim(&leaving, held, b"last").unwrap();
    assert_eq!(net.ledger.miner(&leaving.id).unwrap().status, MinerStatus::Unregistered);
    let got = place_and_allocate(&mut net, &alice, TEXT, 20);
    assert_eq!(count(&got, &good), 20);
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.3 / 5.11 eligibility: an ejected miner is never chosen.
#[test]
fn spec5_3_ejected_miner_is_never_chosen() {
    let mut net = TestNet::new();
    let good = net.miner("good", &[TEXT], 100);
    let ejected = net.miner("ejected", &[TEXT], 100);
    let alice = net.client("alice");
    let before = place_and_allocate(&mut net, &alice, TEXT, 20);
    assert!(count(&before, &ejected) > 0, "chosen while in good standing");
    for (o, _) in net.ledger.orders.clone().iter().filter(|(_, o)| o.status == OrderStatus::Allocated) {
        let m = net.assigned(o).unwrap();
        let keys = if m == good.id { good.clone() } else { ejected.clone() };
        net.claim(&keys, *o, b"x").unwrap();
    }
    eject(&mut net, &ejected);
    let got = place_and_allocate(&mut net, &alice, TEXT, 20);
    assert_eq!(count(&got, &good), 20);
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.3 eligibility: a miner whose reputation fell below `min_reputation_milli` is never
/// chosen.
#[test]
fn spec5_3_miner_below_min_reputation_is_never_chosen() {
    let mut net = TestNet::with_genesis(3, |g| g.params.min_reputation_milli = 49_000);
    let good = net.miner("good", &[TEXT], 100);
    let shady = net.miner("shady", &[TEXT], 100);
    let alice = net.client("alice");
    let before = place_and_allocate(&mut net, &alice, TEXT, 20);
    assert!(count(&before, &shady) > 0, "50.000 >= 49.000: eligible");

    rated_cycle(&mut net, "critic", &shady, Rating::Bad);
    let rep = net.ledger.miner(&shady.id).unwrap().reputation_milli;
    assert_eq!(rep, reputation_milli(net.ledger.params.theta_ppm, -1));
    assert!(rep < 49_000);
    let got = place_and_allocate(&mut net, &alice, TEXT, 20);
    assert_eq!(count(&got, &good), 20);
}

/// SPEC 5.3: with no ready miner `plan_allocation` returns `None` and the order stays
/// `Pending`; a leader forcing it onto an offline miner is caught; orders nobody can serve do not
/// block the others; once a miner is ready the order is allocated.
#[test]
fn spec5_3_no_ready_miner_leaves_the_order_pending() {
    let mut net = TestNet::new();
    let alice = net.client("alice");
    let order = net.put_free(&alice, TEXT);
    assert!(net.ledger.plan_allocation(&net.coordinators[0].vrf, 10).is_none());
    assert!(net.allocate(10).is_none());

    let miner = net.miner("sleepy", &[TEXT], 1);
    set_online(&mut net, &miner, false);
    assert!(net.ledger.plan_allocation(&net.coordinators[0].vrf, 10).is_none());
    let o = net.ledger.order(&order).unwrap();
    assert_eq!((o.status, o.miner), (OrderStatus::Pending, None));
    assert!(net.ledger.pending.values().any(|p| *p == order));

    // A leader forcing the order onto the offline miner, with a valid proof, is caught.
    let input = vrf::allocation_input(&batch_hash(&[order]), &net.ledger.last_checkpoint_root);
    let (_, proof) = net.coordinators[0].vrf.prove(&input);
    let forced = Allocate { orders: vec![order], miners: vec![miner.id], vrf: proof };
    let err = reject_allocation(&mut net, 0, forced);
    assert_eq!(
        err,
        Rejection::AllocationMismatch { leader: leader_id(&net, 0), order, claimed: miner.id, expected: None }
    );

    // Nobody offers images: that order is left out and the text order is not blocked by it.
    let picture = net.put_free(&alice, IMAGE);
    set_online(&mut net, &miner, true);
    let (plan, _) = allocate_checked(&mut net, 10);
    assert_eq!(plan.orders, vec![order]);
    assert_eq!(net.assigned(&order), Some(miner.id));
    assert_eq!(net.ledger.order(&picture).unwrap().status, OrderStatus::Pending);

    // The only miner is now busy: another text order waits too.
    let waiting = net.put_free(&alice, TEXT);
    assert!(net.ledger.plan_allocation(&net.coordinators[0].vrf, 10).is_none());
    net.claim(&miner, order, b"done").unwrap();
    let (plan, _) = allocate_checked(&mut net, 10);
    assert_eq!(plan.orders, vec![waiting]);
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.3 (paper eq. 5): selection is weighted by reputation. Over 400 orders a miner at
/// ~73.1 (ten Good ratings) is chosen about 73.1 / (73.1 + 50) of the time against one at 50.0,
/// and every single choice equals the SPEC recomputation with reputation weights.
#[test]
fn spec5_3_higher_reputation_is_chosen_more_often() {
    let mut net = TestNet::new();
    let high = net.miner("reputable", &[TEXT], 1_000);
    let low = net.miner("newcomer", &[TEXT], 1_000);
    for i in 0..10 {
        rated_cycle(&mut net, &format!("happy-{i}"), &high, Rating::Good);
    }
    let theta = net.ledger.params.theta_ppm;
    let rep_high = net.ledger.miner(&high.id).unwrap().reputation_milli;
    assert_eq!(rep_high, reputation_milli(theta, 10));
    assert!((73_000..=73_200).contains(&rep_high), "100 / (1 + e^-1) = 73.106: got {rep_high}");
    assert_eq!(net.ledger.miner(&low.id).unwrap().reputation_milli, 50_000);

    let unit = net.ledger.params.stake_unit;
    let flood = net.client_with_stake("busy-client", 40 * unit);
    let mut chosen = Vec::new();
    for _ in 0..8 {
        chosen.extend(place_and_allocate(&mut net, &flood, TEXT, 50));
    }
    let (h, l) = (count(&chosen, &high), count(&chosen, &low));
    assert_eq!(h + l, 400);
    assert!(h > l, "higher reputation must win more often: {h} vs {l}");
    // Expected share 0.594; equal weights would give 0.5.
    assert!((216..=264).contains(&h), "reputable miner got {h} of 400");
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.3 / 5.9: a charged order that pre-specifies a miner goes to that miner whatever the
/// draw; a leader moving it elsewhere is caught; if that miner is not ready the order waits
/// instead of going to another miner.
#[test]
fn spec5_3_charged_order_with_a_pre_specified_miner_goes_to_that_miner() {
    let mut net = TestNet::new();
    let a = net.miner("m-a", &[TEXT], 50);
    let chosen = net.miner("m-chosen", &[TEXT], 50);
    let _c = net.miner("m-c", &[TEXT], 50);
    let payer = Keys::from_name("payer");
    net.faucet(&payer, AssetId::NATIVE, 100 * TOKEN);
    let orders: Vec<OrderId> = (0..10).map(|_| net.put(&payer, TEXT, charged_to(&chosen, TOKEN)).unwrap()).collect();
    assert_eq!(net.ledger.account(&payer.id).unwrap().escrow, 10 * TOKEN);

    let honest = net.ledger.plan_allocation(&net.coordinators[0].vrf, 10).unwrap();
    assert_eq!(honest.miners, vec![chosen.id; 10]);
    let mut cheat = honest.clone();
    cheat.miners[4] = a.id;
    let err = reject_allocation(&mut net, 0, cheat);
    assert_eq!(
        err,
        Rejection::AllocationMismatch {
            leader: leader_id(&net, 0),
            order: orders[4],
            claimed: a.id,
            expected: Some(chosen.id)
        }
    );

    net.submit_as_coordinator(0, Message::Allocate(honest)).unwrap();
    for o in &orders {
        assert_eq!(net.assigned(o), Some(chosen.id));
    }
    let fx = net.claim(&chosen, orders[0], b"paid work").unwrap();
    let fee = TOKEN * net.ledger.params.coordinator_fee_ppm as u128 / 1_000_000;
    assert!(fx.events.contains(&Event::Paid { miner: chosen.id, amount: TOKEN - fee, fee }));

    // The pre-specified miner goes offline: the next such order waits, it is not given to a or c.
    set_online(&mut net, &chosen, false);
    let waiting = net.put(&payer, TEXT, charged_to(&chosen, TOKEN)).unwrap();
    assert!(net.ledger.plan_allocation(&net.coordinators[0].vrf, 10).is_none());
    set_online(&mut net, &chosen, true);
    allocate_checked(&mut net, 10);
    assert_eq!(net.assigned(&waiting), Some(chosen.id));
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.3: in a batch, miners' in-flight counts are updated between draws, so a batch equals
/// the same orders allocated one by one with draws `u_i`: no miner exceeds its capacity, the
/// orders beyond total capacity stay pending, and a batch overfilling a miner is rejected.
#[test]
fn spec5_3_batch_updates_in_flight_between_draws() {
    let mut net = TestNet::new();
    let miners = [net.miner("m-a", &[TEXT], 2), net.miner("m-b", &[TEXT], 2), net.miner("m-c", &[TEXT], 2)];
    let alice = net.client("alice");
    let orders: Vec<OrderId> = (0..8).map(|_| net.put_free(&alice, TEXT)).collect();

    let (plan, fx) = allocate_checked(&mut net, 8);
    assert_eq!(plan.orders.len(), 6, "total capacity is 6");
    assert_eq!(fx.events.len(), 6);
    for m in &miners {
        assert_eq!(count(&plan.miners, m), 2);
        let state = net.ledger.miner(&m.id).unwrap();
        assert_eq!((state.in_flight, state.capacity), (2, 2));
    }
    let pending: Vec<&OrderId> =
        orders.iter().filter(|o| net.ledger.order(o).unwrap().status == OrderStatus::Pending).collect();
    assert_eq!(pending.len(), 2);
    assert!(net.ledger.plan_allocation(&net.coordinators[0].vrf, 8).is_none(), "everyone is busy");
    net.ledger.check_invariants().unwrap();

    // Two capacity-1 miners, two orders: a batch giving both orders to one miner is refused.
    let mut net = TestNet::new();
    let small = [net.miner("s-a", &[TEXT], 1), net.miner("s-b", &[TEXT], 1)];
    let bob = net.client("bob");
    let two: Vec<OrderId> = (0..2).map(|_| net.put_free(&bob, TEXT)).collect();
    let honest = net.ledger.plan_allocation(&net.coordinators[0].vrf, 2).unwrap();
    assert_eq!(honest.orders, two);
    assert_ne!(honest.miners[0], honest.miners[1]);
    let mut overfill = honest.clone();
    overfill.miners[1] = overfill.miners[0];
    let err = reject_allocation(&mut net, 0, overfill);
    assert_eq!(
        err,
        Rejection::AllocationMismatch {
            leader: leader_id(&net, 0),
            order: two[1],
            claimed: honest.miners[0],
            expected: Some(honest.miners[1])
        }
    );
    // An order listed twice is a malformed batch (even with a valid proof for that batch).
    let mut doubled = honest.clone();
    doubled.orders[1] = doubled.orders[0];
    let input = vrf::allocation_input(&batch_hash(&doubled.orders), &net.ledger.last_checkpoint_root);
    doubled.vrf = net.coordinators[0].vrf.prove(&input).1;
    doubled.miners =
        expected_choices(&net.ledger, &leader_id(&net, 0), &doubled).into_iter().map(|m| m.unwrap()).collect();
    assert_eq!(reject_allocation(&mut net, 0, doubled).code(), "malformed_batch");
    net.submit_as_coordinator(0, Message::Allocate(honest)).unwrap();
    assert!(small.iter().all(|m| net.ledger.miner(&m.id).unwrap().in_flight == 1));
}

// ---------------------------------------------------------------------------------------------
// SPEC 5.4: interleaved weighted round robin over pending orders
// ---------------------------------------------------------------------------------------------

/// SPEC 5.4: pending orders drain by interleaved WRR weighted by effective stake: a client with
/// twice the stake gets 2 of every 3 slots while both have orders; clients are taken in the
/// order they first entered; `plan_allocation` drains in that order.
#[test]
fn spec5_4_pending_orders_drain_by_interleaved_wrr() {
    // Small first: a (100) then b (200). a's later orders do not change who entered first.
    let mut net = TestNet::new();
    let a = net.client_with_stake("a", 100 * TOKEN);
    let b = net.client_with_stake("b", 200 * TOKEN);
    let mut qa = vec![net.put_free(&a, TEXT)];
    let qb: Vec<OrderId> = (0..6).map(|_| net.put_free(&b, TEXT)).collect();
    qa.extend((0..5).map(|_| net.put_free(&a, TEXT)));
    let want = vec![qa[0], qb[0], qb[1], qa[1], qb[2], qb[3], qa[2], qb[4], qb[5], qa[3], qa[4], qa[5]];
    assert_eq!(net.ledger.pending_in_wrr_order(100), want);
    assert_eq!(net.ledger.pending_in_wrr_order(4), want[..4].to_vec());
    let early = &want[..9];
    assert_eq!(early.iter().filter(|o| qb.contains(o)).count(), 6, "2 of every 3 early slots");

    // Big first: b then a.
    let mut net = TestNet::new();
    let a = net.client_with_stake("a", 100 * TOKEN);
    let b = net.client_with_stake("b", 200 * TOKEN);
    let qb: Vec<OrderId> = (0..6).map(|_| net.put_free(&b, TEXT)).collect();
    let qa: Vec<OrderId> = (0..6).map(|_| net.put_free(&a, TEXT)).collect();
    let want = vec![qb[0], qa[0], qb[1], qb[2], qa[1], qb[3], qb[4], qa[2], qb[5], qa[3], qa[4], qa[5]];
    assert_eq!(net.ledger.pending_in_wrr_order(12), want);

    // The scheduler drains in that order as capacity frees up.
    let miner = net.miner("only", &[TEXT], 3);
    let (plan, _) = allocate_checked(&mut net, 3);
    assert_eq!(plan.orders, want[..3].to_vec());
    assert!(net.ledger.plan_allocation(&net.coordinators[0].vrf, 3).is_none());
    for o in &want[..3] {
        net.claim(&miner, *o, b"x").unwrap();
    }
    let next = net.ledger.pending_in_wrr_order(3);
    let (plan, _) = allocate_checked(&mut net, 3);
    assert_eq!(plan.orders, next);
    assert_eq!(plan.orders.iter().filter(|o| qb.contains(o)).count(), 2);
    assert_eq!(plan.orders.iter().filter(|o| qa.contains(o)).count(), 1);
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.4: weights are `floor(s / s_min)` over effective stake (non-native stake counts at q);
/// three clients weighted 1, 3, 1.
#[test]
fn spec5_4_wrr_weights_use_effective_stake() {
    let mut net = TestNet::new();
    let x = net.client_with_stake("x", 100 * TOKEN);
    // y: 100 native + 2000 non-native (counts 200): effective 300 -> weight 3.
    let y = Keys::from_name("y");
    net.faucet(&y, AssetId::NATIVE, 100 * TOKEN);
    net.faucet(&y, AssetId(1), 2_000 * TOKEN);
    net.submit(&y, Message::LockStake(LockStake { asset: AssetId::NATIVE, amount: 100 * TOKEN })).unwrap();
    net.submit(&y, Message::LockStake(LockStake { asset: AssetId(1), amount: 2_000 * TOKEN })).unwrap();
    net.submit(&y, Message::AcquirePass(AcquirePass {})).unwrap();
    assert_eq!(net.ledger.effective_stake(&y.id), 300 * TOKEN);
    // z: 199 TOKEN -> floor(199 / 100) = 1.
    let z = net.client_with_stake("z", 199 * TOKEN);
    let qx: Vec<OrderId> = (0..4).map(|_| net.put_free(&x, TEXT)).collect();
    let qy: Vec<OrderId> = (0..4).map(|_| net.put_free(&y, TEXT)).collect();
    let qz: Vec<OrderId> = (0..4).map(|_| net.put_free(&z, TEXT)).collect();
    let want = vec![qx[0], qy[0], qz[0], qy[1], qy[2], qx[1], qy[3], qz[1], qx[2], qz[2], qx[3], qz[3]];
    assert_eq!(net.ledger.pending_in_wrr_order(usize::MAX), want);
}

// ---------------------------------------------------------------------------------------------
// SPEC 5.10: miner registration and the task cycle
// ---------------------------------------------------------------------------------------------

/// SPEC 5.10: registering locks the collateral out of the miner's balance and records services,
/// capacity and endpoint; a second registration is refused.
#[test]
fn spec5_10_register_locks_collateral() {
    let mut net = TestNet::new();
    let rex = Keys::from_name("rex");
    net.faucet(&rex, AssetId::NATIVE, 150 * TOKEN);
    let offer = ServiceOffer { service: TEXT.into(), price_per_request: 3, subscription_price: None };
    let register = RegisterMiner {
        collateral: 120 * TOKEN,
        capacity: 3,
        endpoint: "http://rex".into(),
        services: vec![offer.clone()],
    };
    let fx = net.submit(&rex, Message::RegisterMiner(register.clone())).unwrap();
    assert_eq!(fx.events, vec![Event::MinerRegistered { miner: rex.id }]);
    assert_eq!(net.ledger.account(&rex.id).unwrap().balance(AssetId::NATIVE), 30 * TOKEN);
    let m = net.ledger.miner(&rex.id).unwrap();
    assert_eq!(m.collateral, 120 * TOKEN);
    assert_eq!(
        (m.status, m.capacity, m.endpoint.as_str(), m.online, m.ejected),
        (MinerStatus::Active, 3, "http://rex", true, false)
    );
    assert_eq!(m.services.get(TEXT), Some(&offer));
    assert_eq!((m.in_flight, m.reputation_milli), (0, 50_000));

    let err = reject_msg(&mut net, &rex, Message::RegisterMiner(register));
    assert_eq!(err, Rejection::AlreadyRegistered(rex.id));
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.10: collateral below `min_collateral` is refused `collateral_too_low`; exactly the
/// minimum is accepted; collateral beyond the balance is refused.
#[test]
fn spec5_10_collateral_below_minimum_rejected() {
    let mut net = TestNet::new();
    let min = net.ledger.params.min_collateral;
    let sam = Keys::from_name("sam");
    net.faucet(&sam, AssetId::NATIVE, 2 * min);
    let reg = |collateral| {
        Message::RegisterMiner(RegisterMiner {
            collateral,
            capacity: 2,
            endpoint: "http://sam".into(),
            services: vec![ServiceOffer { service: TEXT.into(), price_per_request: 0, subscription_price: None }],
        })
    };
    let err = reject_msg(&mut net, &sam, reg(min - 1));
    assert_eq!(err.code(), "collateral_too_low");
    assert_eq!(err, Rejection::CollateralTooLow { offered: min - 1, minimum: min });
    assert!(net.ledger.miner(&sam.id).is_none());
    assert_eq!(reject_msg(&mut net, &sam, reg(0)).code(), "collateral_too_low");
    assert_eq!(reject_msg(&mut net, &sam, reg(2 * min + 1)).code(), "insufficient_balance");

    net.submit(&sam, reg(min)).expect("exactly the minimum");
    assert_eq!(net.ledger.account(&sam.id).unwrap().balance(AssetId::NATIVE), min);
}

/// SPEC 5.10: `UnRegisterResource` returns the collateral only once in-flight work ends (here,
/// with the claim of the last order); in between the miner gets no new work.
#[test]
fn spec5_10_unregister_returns_collateral_after_in_flight_work_ends() {
    let mut net = TestNet::new();
    let miner = net.miner("leaving", &[TEXT], 2);
    let alice = net.client("alice");
    let o1 = net.put_free(&alice, TEXT);
    let o2 = net.put_free(&alice, TEXT);
    allocate_checked(&mut net, 2);
    let balance = |net: &TestNet| net.ledger.account(&miner.id).unwrap().balance(AssetId::NATIVE);
    assert_eq!(balance(&net), 0);

    let fx = net.submit(&miner, Message::UnregisterMiner(UnregisterMiner {})).unwrap();
    assert_eq!(fx.events, vec![Event::MinerUnregistering { miner: miner.id, in_flight: 2 }]);
    let m = net.ledger.miner(&miner.id).unwrap();
    assert_eq!((m.status, m.collateral), (MinerStatus::Unregistering, MINER_COLLATERAL));
    assert_eq!(balance(&net), 0);
    net.put_free(&alice, TEXT);
    assert!(net.ledger.plan_allocation(&net.coordinators[0].vrf, 5).is_none(), "no new work");

    let fx = net.claim(&miner, o1, b"one").unwrap();
    assert!(!fx.events.iter().any(|e| matches!(e, Event::MinerUnregistered { .. })));
    assert_eq!(balance(&net), 0);
    assert_eq!(net.ledger.miner(&miner.id).unwrap().collateral, MINER_COLLATERAL);

    let fx = net.claim(&miner, o2, b"two").unwrap();
    assert!(fx.events.contains(&Event::MinerUnregistered { miner: miner.id, collateral_returned: MINER_COLLATERAL }));
    assert_eq!(balance(&net), MINER_COLLATERAL);
    let m = net.ledger.miner(&miner.id).unwrap();
    assert_eq!((m.status, m.collateral), (MinerStatus::Unregistered, 0));
    assert_eq!(reject_msg(&mut net, &miner, Message::UnregisterMiner(UnregisterMiner {})).code(), "unknown_miner");
    net.ledger.check_invariants().unwrap();

    // With nothing in flight the collateral comes back at once.
    let idle = net.miner("idle", &[TEXT], 2);
    let fx = net.submit(&idle, Message::UnregisterMiner(UnregisterMiner {})).unwrap();
    assert_eq!(
        fx.events,
        vec![
            Event::MinerUnregistering { miner: idle.id, in_flight: 0 },
            Event::MinerUnregistered { miner: idle.id, collateral_returned: MINER_COLLATERAL }
        ]
    );
}

/// SPEC 5.10: an unregistering miner's in-flight work may also end by timeout: the collateral
/// returns in the tick that re-queues its last order.
#[test]
fn spec5_10_unregister_completes_when_last_order_times_out() {
    let mut net = TestNet::new();
    let miner = net.miner("leaving", &[TEXT], 2);
    let alice = net.client("alice");
    let order = net.put_free(&alice, TEXT);
    allocate_checked(&mut net, 1);
    net.submit(&miner, Message::UnregisterMiner(UnregisterMiner {})).unwrap();
    net.advance(net.ledger.params.order_timeout_ms);
    let fx = net.tick();
    assert!(fx.events.contains(&Event::OrderRequeued { order, miner: miner.id }));
    assert!(fx.events.contains(&Event::MinerUnregistered { miner: miner.id, collateral_returned: MINER_COLLATERAL }));
    assert_eq!(net.ledger.account(&miner.id).unwrap().balance(AssetId::NATIVE), MINER_COLLATERAL);
    assert_eq!(net.ledger.order(&order).unwrap().status, OrderStatus::Pending);
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.10 / 6.1 (paper: FORGED CLAIM): a claim for an order signed by anyone but its assigned
/// miner (another miner, the client, a coordinator, a stranger) is rejected `not_assigned_miner`.
#[test]
fn spec5_10_forged_claim_by_non_assigned_miner_rejected() {
    let mut net = TestNet::new();
    let miners = [net.miner("m-a", &[TEXT], 4), net.miner("m-b", &[TEXT], 4)];
    let alice = net.client("alice");
    let order = net.put_free(&alice, TEXT);
    allocate_checked(&mut net, 1);
    let assigned = net.assigned(&order).unwrap();
    let (owner, other) = if miners[0].id == assigned { (&miners[0], &miners[1]) } else { (&miners[1], &miners[0]) };
    let claim = Message::Claim(Claim { order, output_hash: output_hash(b"stolen") });

    let forgers = [other.clone(), alice.clone(), net.coordinators[1].keys.clone(), Keys::from_name("stranger")];
    for forger in &forgers {
        let err = reject_msg(&mut net, forger, claim.clone());
        assert_eq!(err.code(), "not_assigned_miner");
        assert_eq!(err, Rejection::NotAssignedMiner { order, assigned, signer: forger.id });
    }
    assert_eq!(net.ledger.order(&order).unwrap().status, OrderStatus::Allocated);
    assert_eq!(net.ledger.miner(&other.id).unwrap().served, 0);

    let fx = net.claim(owner, order, b"honest").unwrap();
    assert!(fx.events.contains(&Event::OrderCompleted { order, miner: assigned, weight: 1 }));
    assert_eq!(net.ledger.order(&order).unwrap().claim.as_ref().unwrap().output_hash, output_hash(b"honest"));
    let err = reject_msg(&mut net, owner, claim);
    assert_eq!(err.code(), "wrong_order_status");
}

/// SPEC 3 / 5.10 (paper: FORGED CLAIM): an envelope naming the assigned miner as signer but
/// signed with another key is rejected `bad_signature`.
#[test]
fn spec5_10_claim_signed_by_another_key_under_the_miners_name_is_bad_signature() {
    let mut net = TestNet::new();
    let miner = net.miner("m-a", &[TEXT], 4);
    let thief = net.miner("thief", &[IMAGE], 4);
    let alice = net.client("alice");
    let order = net.put_free(&alice, TEXT);
    allocate_checked(&mut net, 1);
    assert_eq!(net.assigned(&order), Some(miner.id));

    let claim = Message::Claim(Claim { order, output_hash: output_hash(b"forged") });
    let nonce = net.ledger.next_nonce(&miner.id);
    let mut envelope = SignedEnvelope::seal(&thief.signing, &net.ledger.network_id, nonce, &claim);
    envelope.signer = miner.id;
    let err = reject_envelope(&mut net, envelope);
    assert_eq!(err.code(), "bad_signature");
    assert_eq!(err, Rejection::BadSignature(miner.id));
    let o = net.ledger.order(&order).unwrap();
    assert_eq!((o.status, o.claim.is_none()), (OrderStatus::Allocated, true));
    net.claim(&miner, order, b"real").expect("the real miner's claim, same nonce, is accepted");
}

/// SPEC 5.10: a claim at or after the order's deadline (allocation time + `order_timeout_ms`)
/// is rejected `order_overdue`, even before a tick expires it; one ms earlier it is accepted.
#[test]
fn spec5_10_claim_after_the_deadline_is_overdue() {
    let mut net = TestNet::new();
    let miner = net.miner("slow", &[TEXT], 4);
    let alice = net.client("alice");
    let o1 = net.put_free(&alice, TEXT);
    let o2 = net.put_free(&alice, TEXT);
    net.advance(1_000);
    allocate_checked(&mut net, 2);
    let deadline = 1_000 + net.ledger.params.order_timeout_ms;
    assert_eq!(net.ledger.order(&o2).unwrap().deadline_ms, deadline);

    net.now_ms = deadline - 1;
    net.claim(&miner, o1, b"just in time").expect("before the deadline");
    net.now_ms = deadline;
    let entry = net.entry(&miner, Message::Claim(Claim { order: o2, output_hash: output_hash(b"late") }));
    let err = reject(&mut net, &entry);
    assert_eq!(err.code(), "order_overdue");
    assert_eq!(err, Rejection::OrderOverdue { order: o2, deadline_ms: deadline });
    assert_eq!(net.ledger.order(&o2).unwrap().status, OrderStatus::Allocated);
    assert_eq!(net.ledger.miner(&miner.id).unwrap().served, 1);
}

/// SPEC 5.10 / 5.9: an allocated order not completed within `order_timeout_ms` is re-queued once
/// by a tick (Pending again, the miner's history counts the timeout); the second timeout expires
/// it and refunds the charged price. Two timeouts in a row stay below the default
/// `miner_max_consecutive_failures` (3), so the miner stays online throughout.
#[test]
fn spec5_10_timeout_requeues_once_then_expires_and_refunds() {
    let mut net = TestNet::new();
    let miner = net.miner("flaky", &[TEXT], 4);
    let _other = net.miner("other", &[TEXT], 4);
    let payer = Keys::from_name("payer");
    net.faucet(&payer, AssetId::NATIVE, 50 * TOKEN);
    let price = 5 * TOKEN;
    let order = net.put(&payer, TEXT, charged_to(&miner, price)).unwrap();
    let acc = net.ledger.account(&payer.id).unwrap();
    assert_eq!((acc.balance(AssetId::NATIVE), acc.escrow), (45 * TOKEN, price));
    let timeout = net.ledger.params.order_timeout_ms;

    net.advance(1_000);
    allocate_checked(&mut net, 1);
    let deadline = net.now_ms + timeout;

    net.now_ms = deadline - 1;
    let fx = net.tick();
    assert!(fx.events.is_empty(), "nothing is due yet: {:?}", fx.events);
    assert_eq!(net.ledger.order(&order).unwrap().status, OrderStatus::Allocated);

    // First timeout: re-queued.
    net.now_ms = deadline;
    let fx = net.tick();
    assert_eq!(fx.events, vec![Event::OrderRequeued { order, miner: miner.id }], "one timeout flips nothing");
    let o = net.ledger.order(&order).unwrap();
    assert_eq!((o.status, o.miner, o.requeued, o.escrow), (OrderStatus::Pending, None, true, price));
    let m = net.ledger.miner(&miner.id).unwrap();
    assert_eq!((m.timed_out, m.in_flight, m.served), (1, 0, 0));
    assert_eq!((m.consecutive_failures, m.online), (1, true));
    let acc = net.ledger.account(&payer.id).unwrap();
    assert_eq!((acc.balance(AssetId::NATIVE), acc.escrow, acc.in_flight, acc.pending), (45 * TOKEN, price, 1, 1));
    let err = reject_msg(&mut net, &miner, Message::Claim(Claim { order, output_hash: output_hash(b"late") }));
    assert_eq!(err.code(), "wrong_order_status");

    // Second allocation (the pre-specified miner is still online) and timeout: expired, refunded.
    allocate_checked(&mut net, 1);
    assert_eq!(net.assigned(&order), Some(miner.id));
    net.advance(timeout);
    let fx = net.tick();
    assert!(fx.events.contains(&Event::OrderExpired { order }));
    assert!(fx.events.contains(&Event::Refunded { client: payer.id, amount: price }));
    assert!(!fx.events.iter().any(|e| matches!(e, Event::OrderRequeued { .. })), "re-queued once only");
    let o = net.ledger.order(&order).unwrap();
    assert_eq!((o.status, o.escrow), (OrderStatus::Expired, 0));
    let m = net.ledger.miner(&miner.id).unwrap();
    assert_eq!((m.timed_out, m.consecutive_failures, m.online), (2, 2, true));
    let acc = net.ledger.account(&payer.id).unwrap();
    assert_eq!((acc.balance(AssetId::NATIVE), acc.escrow, acc.in_flight, acc.pending), (50 * TOKEN, 0, 0, 0));
    assert!(net.ledger.pending.is_empty());

    // Nothing more happens to it.
    net.advance(10 * timeout);
    let fx = net.tick();
    assert!(!fx.events.iter().any(|e| matches!(e, Event::OrderExpired { .. } | Event::Refunded { .. })));
    assert!(net.ledger.plan_allocation(&net.coordinators[0].vrf, 5).is_none());
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.10: the same for a free order drawn by AVRF: two timeouts (one per allocation, counted
/// in the serving miners' histories), then `Expired`.
#[test]
fn spec5_10_free_order_times_out_twice_then_expires() {
    let mut net = TestNet::new();
    let miners = [net.miner("m-a", &[TEXT], 4), net.miner("m-b", &[TEXT], 4)];
    let alice = net.client("alice");
    let order = net.put_free(&alice, TEXT);
    let timeout = net.ledger.params.order_timeout_ms;
    for round in 0..2 {
        allocate_checked(&mut net, 1);
        net.advance(timeout);
        let events = net.tick().events;
        let status = net.ledger.order(&order).unwrap().status;
        // One timeout each is below `miner_max_consecutive_failures`: nobody is taken offline.
        if round == 0 {
            assert!(matches!(events.as_slice(), [Event::OrderRequeued { order: o, .. }] if *o == order));
            assert_eq!(status, OrderStatus::Pending);
        } else {
            assert_eq!(events, vec![Event::OrderExpired { order }]);
            assert_eq!(status, OrderStatus::Expired);
        }
    }
    let timed_out: u64 = miners.iter().map(|m| net.ledger.miner(&m.id).unwrap().timed_out).sum();
    assert_eq!(timed_out, 2);
    assert_eq!(net.ledger.account(&alice.id).unwrap().in_flight, 0);
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.10 (timeout and re-queue) with our decision where it is silent: with
/// `miner_max_consecutive_failures` at 1, a miner that lets a deadline pass is taken offline
/// (the reason recorded), so the re-queued order goes to another miner; the miner gets orders
/// again once it says it is online. `tests/rules_liveness.rs` covers the default of 3.
#[test]
fn spec5_10_a_miner_that_times_out_goes_offline_and_its_order_is_served_elsewhere() {
    let mut net = TestNet::with_genesis(3, |g| g.params.miner_max_consecutive_failures = 1);
    let a = net.miner("miner-a", &["text-generation"], 4);
    let b = net.miner("miner-b", &["text-generation"], 4);
    let client = net.client("client");
    let order = net.put_free(&client, "text-generation");
    net.allocate(1).unwrap().unwrap();
    let first = net.assigned(&order).unwrap();
    let (gone, other) = if first == a.id { (&a, &b) } else { (&b, &a) };

    net.advance(net.ledger.params.order_timeout_ms);
    let fx = net.tick();
    assert!(fx.events.contains(&Event::OrderRequeued { order, miner: gone.id }));
    assert!(fx.events.contains(&Event::MinerAvailability { miner: gone.id, online: false }));
    let m = net.ledger.miner(&gone.id).unwrap();
    assert_eq!((m.online, m.offline_reason), (false, Some(OfflineReason::ConsecutiveFailures)));

    net.allocate(1).unwrap().unwrap();
    assert_eq!(net.assigned(&order), Some(other.id), "the re-queued order goes to the miner still online");
    net.claim(other, order, b"served elsewhere").unwrap();
    assert_eq!(net.ledger.order(&order).unwrap().status, OrderStatus::Completed);

    // Back online, the first miner is eligible again.
    set_online(&mut net, gone, true);
    let m = net.ledger.miner(&gone.id).unwrap();
    assert_eq!((m.online, m.offline_reason, m.consecutive_failures), (true, None, 0));
    net.ledger.check_invariants().unwrap();
}
