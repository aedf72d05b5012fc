//! Miner liveness (SPEC 5.3 "online", 5.10; `docs/decisions.md`, "Miner liveness"): a miner is
//! eligible only while its lease is live (ledger time at most `miner_lease_ms` past the last
//! accepted entry it signed), and `miner_max_consecutive_failures` timeouts in a row take it
//! offline until it signs `SetAvailability { online: true }`.
//!
//! These tests run the default lease and failure limit; `testkit::test_genesis` gives every
//! other test an endless lease so that scenarios can jump weeks.

#![allow(clippy::result_large_err)]

use deai_protocol::ledger::{Entry, Event, Liveness, OfflineReason};
use deai_protocol::message::{Allocate, Claim, DevFaucet, Message, OrderMode, SetAvailability, UnregisterMiner};
use deai_protocol::params::{
    Genesis, ParamChange, Params, ProposalAction, DEFAULT_MINER_LEASE_MS, DEFAULT_MINER_MAX_CONSECUTIVE_FAILURES, TOKEN,
};
use deai_protocol::testkit::{expect_rejected, output_hash, reject, reject_msg, test_genesis, Keys, TestNet};
use deai_protocol::types::{AssetId, OrderId, ParticipantId};
use deai_protocol::{vrf, Effects, Ledger, Rejection, SignedEnvelope};

const TEXT: &str = "text-generation";
const LEASE: u64 = DEFAULT_MINER_LEASE_MS;
const MAX_FAILURES: u32 = DEFAULT_MINER_MAX_CONSECUTIVE_FAILURES;

/// The test genesis with the production lease (and, as everywhere, the production failure limit).
fn with_lease(g: &mut Genesis) {
    g.params.miner_lease_ms = LEASE;
}

fn net() -> TestNet {
    TestNet::with_genesis(3, with_lease)
}

fn liveness(net: &TestNet, miner: &Keys) -> Liveness {
    net.ledger.miner_liveness(&miner.id).expect("a registered miner")
}

fn failures(net: &TestNet, miner: &Keys) -> u32 {
    net.ledger.miner(&miner.id).expect("a registered miner").consecutive_failures
}

/// What a running agent sends every third of a lease: accepted, and it changes nothing that
/// anyone watches (no event, no flip, the failure count kept).
fn renew(net: &mut TestNet, miner: &Keys) {
    let before = net.ledger.miner(&miner.id).cloned().expect("a registered miner");
    assert!(before.online, "only an online miner renews");
    let fx = net.submit(miner, Message::SetAvailability(SetAvailability { online: true })).expect("renewal");
    assert_eq!(fx.events, vec![], "a renewal emits nothing");
    let after = net.ledger.miner(&miner.id).expect("still there");
    assert_eq!(after.last_seen_ms, net.ledger.now_ms, "the renewal restarts the lease");
    assert_eq!(
        (after.online, after.offline_reason, after.consecutive_failures),
        (before.online, None, before.consecutive_failures)
    );
}

fn set_online(net: &mut TestNet, miner: &Keys, online: bool) -> Effects {
    net.submit(miner, Message::SetAvailability(SetAvailability { online })).expect("availability")
}

/// The leader allocates everything it can; returns each allocated order's miner.
fn allocate_all(net: &mut TestNet) -> Vec<ParticipantId> {
    let fx = net.allocate(64).expect("something can be allocated").expect("honest allocation");
    fx.events
        .iter()
        .filter_map(|e| match e {
            Event::OrderAllocated { miner, .. } => Some(*miner),
            _ => None,
        })
        .collect()
}

/// Lets the allocated orders' deadlines pass and ticks.
fn time_out(net: &mut TestNet) -> Effects {
    net.advance(net.ledger.params.order_timeout_ms);
    net.tick()
}

/// One timeout held against `miner`, its only live candidate: the pending order (a new one if
/// none waits) is allocated to it (its agent renews first) and left to time out. Returns the
/// order and the tick's effects.
fn fail_once(net: &mut TestNet, client: &Keys, miner: &Keys) -> (OrderId, Effects) {
    if net.ledger.pending.is_empty() {
        net.put_free(client, TEXT);
    }
    renew(net, miner);
    let fx = net.allocate(1).expect("the miner is live").expect("honest allocation");
    let order = match fx.events.as_slice() {
        [Event::OrderAllocated { order, miner: m }] if *m == miner.id => *order,
        other => panic!("expected one allocation to the miner, got {other:?}"),
    };
    (order, time_out(net))
}

fn went_offline(fx: &Effects, miner: &Keys) -> bool {
    fx.events.contains(&Event::MinerAvailability { miner: miner.id, online: false })
}

/// SPEC 4 style: both parameters have defaults, governance may set them, and a value that
/// makes no sense is refused, whether proposed or in a genesis, without changing anything.
#[test]
fn the_parameters_have_defaults_and_are_validated() {
    let p = Params::default();
    assert_eq!((p.miner_lease_ms, p.miner_max_consecutive_failures), (30_000, 3));
    assert!(p.miner_lease_ms < p.order_timeout_ms, "a dead miner's lease lapses before its order is re-queued");
    assert!(ParamChange::MinerLeaseMs(0).validate().is_err());
    assert!(ParamChange::MinerMaxConsecutiveFailures(0).validate().is_err());
    let mut q = p.clone();
    ParamChange::MinerLeaseMs(90_000).validate().unwrap();
    ParamChange::MinerLeaseMs(90_000).apply_to(&mut q);
    ParamChange::MinerMaxConsecutiveFailures(1).validate().unwrap();
    ParamChange::MinerMaxConsecutiveFailures(1).apply_to(&mut q);
    assert_eq!((q.miner_lease_ms, q.miner_max_consecutive_failures), (90_000, 1));

    let mut net = net();
    let voter = net.client("voter");
    for change in [ParamChange::MinerLeaseMs(0), ParamChange::MinerMaxConsecutiveFailures(0)] {
        let propose = Message::Propose(deai_protocol::message::Propose { action: ProposalAction::SetParam(change) });
        expect_rejected(&mut net, "invalid_proposal", |n| n.submit(&voter, propose));
    }
    let tweaks: [fn(&mut Genesis); 2] =
        [|g| g.params.miner_lease_ms = 0, |g| g.params.miner_max_consecutive_failures = 0];
    for tweak in tweaks {
        let mut genesis = test_genesis(3);
        tweak(&mut genesis);
        assert_eq!(Ledger::new(genesis).map(|_| ()).unwrap_err().code(), "invalid_genesis");
    }
}

/// SPEC 5.3 "online" with a lease: a miner whose last accepted entry is more than
/// `miner_lease_ms` old is not allocated (nor listed), even for an order that names it; the
/// boundary itself is still live; a renewal makes it eligible again.
#[test]
fn a_miner_whose_lease_lapsed_is_not_allocated_until_it_renews() {
    let mut net = net();
    let a = net.miner("miner-a", &[TEXT], 8);
    let b = net.miner("miner-b", &[TEXT], 8);
    let client = net.client("client");
    let payer = Keys::from_name("payer");
    net.faucet(&payer, AssetId::NATIVE, 10 * TOKEN);
    let registered = net.ledger.miner(&a.id).unwrap().last_seen_ms;
    assert_eq!(net.ledger.miner(&a.id).unwrap().lease_expires_ms(LEASE), registered + LEASE);

    // Exactly one lease later both are still live; b's agent renews.
    net.now_ms = registered + LEASE;
    net.put_free(&client, TEXT);
    assert_eq!((liveness(&net, &a), liveness(&net, &b)), (Liveness::Live, Liveness::Live));
    renew(&mut net, &b);

    // A millisecond later a's lease has lapsed: every order goes to b, an order that names a
    // waits, and a is not listed.
    net.advance(1);
    for _ in 0..5 {
        net.put_free(&client, TEXT);
    }
    let named = net.put(&payer, TEXT, OrderMode::Charged { price: TOKEN, miner: Some(a.id) }).unwrap();
    assert_eq!((liveness(&net, &a), liveness(&net, &b)), (Liveness::LeaseLapsed, Liveness::Live));
    assert_eq!(liveness(&net, &a).name(), "lease_lapsed");
    assert!(net.ledger.miner(&a.id).unwrap().online, "a lapsed lease is not a flip of the miner's word");
    assert_eq!(allocate_all(&mut net), vec![b.id; 6]);
    assert_eq!(net.ledger.order(&named).unwrap().miner, None, "still pending");
    let listed: Vec<ParticipantId> = net.ledger.provider_listing(None).iter().map(|r| r.miner).collect();
    assert_eq!(listed, vec![b.id]);

    // a renews; b's lease lapses a lease after its renewal; now everything goes to a.
    renew(&mut net, &a);
    assert_eq!(liveness(&net, &a), Liveness::Live);
    net.advance(LEASE);
    for _ in 0..3 {
        net.put_free(&client, TEXT);
    }
    assert_eq!((liveness(&net, &a), liveness(&net, &b)), (Liveness::Live, Liveness::LeaseLapsed));
    assert_eq!(allocate_all(&mut net), vec![a.id; 4], "the named order and three free ones");
    assert_eq!(net.assigned(&named), Some(a.id));

    // With both leases lapsed nothing is allocated; orders wait.
    net.advance(LEASE + 1);
    net.put_free(&client, TEXT);
    assert!(net.ledger.plan_allocation(&net.coordinators[0].vrf, 8).is_none());
    net.ledger.check_invariants().unwrap();
}

/// Any accepted entry the miner signs renews its lease (here a claim and a faucet request, the
/// latter not even a miner message); a rejected one does not, and changes nothing.
#[test]
fn any_accepted_entry_renews_the_lease_and_a_rejected_one_does_not() {
    let mut net = net();
    let miner = net.miner("miner", &[TEXT], 4);
    let client = net.client("client");
    let order = net.put_free(&client, TEXT);
    assert_eq!(allocate_all(&mut net), vec![miner.id]);

    net.advance(LEASE + 1);
    net.tick();
    assert_eq!(liveness(&net, &miner), Liveness::LeaseLapsed);
    // A claim for an order it does not hold is refused; the lease stays lapsed.
    let unknown = Message::Claim(Claim { order: OrderId([7; 32]), output_hash: output_hash(b"x") });
    assert_eq!(reject_msg(&mut net, &miner, unknown).code(), "unknown_order");
    assert_eq!(liveness(&net, &miner), Liveness::LeaseLapsed);
    // Its claim of the allocated order is accepted and renews it.
    net.claim(&miner, order, b"output").unwrap();
    assert_eq!(net.ledger.miner(&miner.id).unwrap().last_seen_ms, net.ledger.now_ms);
    assert_eq!(liveness(&net, &miner), Liveness::Live);

    net.advance(LEASE + 1);
    net.tick();
    assert_eq!(liveness(&net, &miner), Liveness::LeaseLapsed);
    net.submit(&miner, Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 1 })).unwrap();
    assert_eq!(liveness(&net, &miner), Liveness::Live);

    // Someone who is not a miner cannot set availability; nothing changes.
    let stranger = Keys::from_name("stranger");
    let online = Message::SetAvailability(SetAvailability { online: true });
    assert_eq!(reject_msg(&mut net, &stranger, online).code(), "unknown_miner");
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.10 ("the miner's history counts the timeout") with the failure limit: fewer than
/// `miner_max_consecutive_failures` timeouts in a row leave the miner online (its agent's
/// renewals do not reset the count); the limit-th takes it offline with the reason recorded,
/// and signing other entries then renews the lease but does not bring it back.
#[test]
fn timeouts_in_a_row_take_a_miner_offline_and_fewer_do_not() {
    let mut net = net();
    let miner = net.miner("flaky", &[TEXT], 4);
    let client = net.client("client");

    // The order's two allocations, re-queued once then expired: two failures, still online.
    let (order, fx) = fail_once(&mut net, &client, &miner);
    assert_eq!(fx.events, vec![Event::OrderRequeued { order, miner: miner.id }]);
    assert_eq!(failures(&net, &miner), 1);
    let (_, fx) = fail_once(&mut net, &client, &miner);
    assert_eq!(fx.events, vec![Event::OrderExpired { order }]);
    assert_eq!(failures(&net, &miner), MAX_FAILURES - 1);
    assert_eq!(liveness(&net, &miner), Liveness::LeaseLapsed, "online, its lease due for renewal");

    // The third in a row: offline, in the same tick that re-queues the order.
    let (third, fx) = fail_once(&mut net, &client, &miner);
    assert!(went_offline(&fx, &miner), "{:?}", fx.events);
    assert!(fx.events.contains(&Event::OrderRequeued { order: third, miner: miner.id }));
    let m = net.ledger.miner(&miner.id).unwrap();
    assert_eq!((m.online, m.offline_reason), (false, Some(OfflineReason::ConsecutiveFailures)));
    assert_eq!((m.consecutive_failures, m.timed_out, m.served), (MAX_FAILURES, 3, 0));
    assert_eq!(liveness(&net, &miner).name(), "consecutive_failures");

    // Its agent still signs entries: the lease is live, the miner stays offline.
    net.submit(&miner, Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 1 })).unwrap();
    assert_eq!(liveness(&net, &miner), Liveness::Offline(OfflineReason::ConsecutiveFailures));
    assert!(net.ledger.plan_allocation(&net.coordinators[0].vrf, 8).is_none(), "the re-queued order waits");
    // Saying it is offline too changes nothing, and keeps the first reason.
    let fx = set_online(&mut net, &miner, false);
    assert_eq!(fx.events, vec![]);
    assert_eq!(liveness(&net, &miner), Liveness::Offline(OfflineReason::ConsecutiveFailures));
    net.ledger.check_invariants().unwrap();
}

/// A claim ends the run: the count is of timeouts in a row, not of all timeouts.
#[test]
fn a_claim_resets_the_count() {
    let mut net = net();
    let miner = net.miner("miner", &[TEXT], 4);
    let client = net.client("client");
    for _ in 0..MAX_FAILURES - 1 {
        fail_once(&mut net, &client, &miner);
    }
    assert_eq!(failures(&net, &miner), MAX_FAILURES - 1);

    let served = net.put_free(&client, TEXT);
    renew(&mut net, &miner);
    allocate_all(&mut net);
    net.claim(&miner, served, b"output").unwrap();
    assert_eq!(failures(&net, &miner), 0);

    for _ in 0..MAX_FAILURES - 1 {
        let (_, fx) = fail_once(&mut net, &client, &miner);
        assert!(!went_offline(&fx, &miner));
    }
    let m = net.ledger.miner(&miner.id).unwrap();
    assert_eq!(
        (m.online, m.consecutive_failures, m.timed_out),
        (true, MAX_FAILURES - 1, 2 * (MAX_FAILURES as u64 - 1))
    );
    let (_, fx) = fail_once(&mut net, &client, &miner);
    assert!(went_offline(&fx, &miner), "the limit-th in a row");
    net.ledger.check_invariants().unwrap();
}

/// Coming back: `SetAvailability { online: true }` from a miner the ledger took offline flips
/// it back (one event), clears the reason and the count, and the waiting order goes to it. A
/// miner that said it is offline comes back the same way; a registration after unregistering
/// also starts afresh.
#[test]
fn a_renewal_after_suspension_brings_it_back() {
    let mut net = net();
    let miner = net.miner("miner", &[TEXT], 4);
    let client = net.client("client");
    let mut last = None;
    for _ in 0..MAX_FAILURES {
        last = Some(fail_once(&mut net, &client, &miner).0);
    }
    assert_eq!(liveness(&net, &miner), Liveness::Offline(OfflineReason::ConsecutiveFailures));

    let fx = set_online(&mut net, &miner, true);
    assert_eq!(fx.events, vec![Event::MinerAvailability { miner: miner.id, online: true }]);
    let m = net.ledger.miner(&miner.id).unwrap();
    assert_eq!((m.online, m.offline_reason, m.consecutive_failures), (true, None, 0));
    assert_eq!(m.timed_out, MAX_FAILURES as u64, "the history keeps every timeout");
    assert_eq!(liveness(&net, &miner), Liveness::Live);
    assert_eq!(allocate_all(&mut net), vec![miner.id]);
    assert_eq!(net.assigned(&last.unwrap()), Some(miner.id));

    // Declared offline: recorded as such, once; back with the same message.
    let fx = set_online(&mut net, &miner, false);
    assert_eq!(fx.events, vec![Event::MinerAvailability { miner: miner.id, online: false }]);
    assert_eq!(liveness(&net, &miner), Liveness::Offline(OfflineReason::Declared));
    assert_eq!(set_online(&mut net, &miner, false).events, vec![], "saying it again flips nothing");
    set_online(&mut net, &miner, true);
    assert_eq!(liveness(&net, &miner), Liveness::Live);

    // Failures held against a miner do not survive a new registration.
    net.claim(&miner, last.unwrap(), b"output").unwrap();
    for _ in 0..MAX_FAILURES - 1 {
        fail_once(&mut net, &client, &miner);
    }
    net.submit(&miner, Message::UnregisterMiner(UnregisterMiner {})).unwrap();
    let again = net.miner("miner", &[TEXT], 4);
    assert_eq!(again.id, miner.id);
    let m = net.ledger.miner(&miner.id).unwrap();
    assert_eq!((m.online, m.offline_reason, m.consecutive_failures), (true, None, 0));
    assert_eq!(m.last_seen_ms, net.ledger.now_ms);
    net.ledger.check_invariants().unwrap();
}

/// SPEC 5.3 and 6.2 with the lease: plan and replay judge liveness at the ledger time before
/// the `Allocate` entry, so an honest plan is accepted whatever its stamp; an allocation to a
/// miner whose lease lapsed is refused as a mismatch, naming the miner every replica computes,
/// and changes nothing; replicas and a restored snapshot agree on every liveness field.
#[test]
fn allocation_replay_agrees_on_liveness() {
    let mut net = net();
    let a = net.miner("miner-a", &[TEXT], 8);
    let b = net.miner("miner-b", &[TEXT], 8);
    let client = net.client("client");

    // Planned at the last live millisecond of both leases, stamped well past them.
    net.now_ms = net.ledger.miner(&a.id).unwrap().lease_expires_ms(LEASE);
    net.put_free(&client, TEXT);
    let plan = net.ledger.plan_allocation(&net.coordinators[0].vrf, 8).expect("both are live now");
    net.advance(LEASE);
    net.submit_as_coordinator(0, Message::Allocate(plan)).expect("judged at the ledger time before the entry");

    // Now both have lapsed; b renews. An allocation to a is a lie every replica catches.
    renew(&mut net, &b);
    let order = net.put_free(&client, TEXT);
    let orders = vec![order];
    let input = vrf::allocation_input(&deai_protocol::ledger::batch_hash(&orders), &net.ledger.last_checkpoint_root);
    let (_, proof) = net.coordinators[0].vrf.prove(&input);
    let forged = Allocate { orders, miners: vec![a.id], vrf: proof };
    let leader = net.leader().keys.clone();
    let err = reject_msg(&mut net, &leader, Message::Allocate(forged));
    let Rejection::AllocationMismatch { claimed, expected, .. } = err else { panic!("{err}") };
    assert_eq!((claimed, expected), (a.id, Some(b.id)));
    assert_eq!(allocate_all(&mut net), vec![b.id]);

    // b's agent goes too; c alone takes the orders and lets them time out: suspended.
    let c = net.miner("miner-c", &[TEXT], 1);
    net.advance(LEASE + 1);
    for _ in 0..MAX_FAILURES {
        fail_once(&mut net, &client, &c);
    }
    assert_eq!(net.ledger.miner_liveness(&c.id), Some(Liveness::Offline(OfflineReason::ConsecutiveFailures)));

    // A replica replays the log, and a snapshot restores, to the same state.
    let mut replica = TestNet::with_genesis(3, with_lease).ledger;
    for entry in &net.accepted {
        replica.apply(entry).expect("every accepted entry replays");
    }
    assert_eq!((replica.root, replica.state_digest()), (net.ledger.root, net.ledger.state_digest()));
    for m in [&a, &b, &c] {
        assert_eq!(replica.miner_liveness(&m.id), net.ledger.miner_liveness(&m.id));
    }
    let restored = Ledger::restore(&net.ledger.snapshot()).expect("restores");
    assert!(restored == net.ledger);
    let m = restored.miner(&c.id).unwrap();
    let original = net.ledger.miner(&c.id).unwrap();
    assert_eq!(
        (m.last_seen_ms, m.consecutive_failures, m.offline_reason),
        (original.last_seen_ms, original.consecutive_failures, original.offline_reason)
    );
    net.ledger.check_invariants().unwrap();
}

/// A replica given an `Allocate` that another replica would judge against a later time (a
/// stamp is not a clock): the same entry and the same prior state give the same outcome.
#[test]
fn the_stamp_of_an_allocate_does_not_change_its_outcome() {
    let mut net = net();
    let miner = net.miner("miner", &[TEXT], 4);
    let client = net.client("client");
    net.now_ms += LEASE;
    net.put_free(&client, TEXT);
    let plan = net.ledger.plan_allocation(&net.coordinators[0].vrf, 1).expect("live at the boundary");
    let leader = net.leader().keys.clone();
    let envelope = |net: &TestNet| {
        SignedEnvelope::seal(
            &leader.signing,
            &net.ledger.network_id,
            net.ledger.next_nonce(&leader.id),
            &Message::Allocate(plan.clone()),
        )
    };
    for stamp in [net.now_ms, net.now_ms + 1, net.now_ms + 10 * LEASE] {
        let mut replica = net.ledger.clone();
        let entry = Entry { stamped_ms: stamp, envelope: envelope(&net) };
        let fx = replica.apply(&entry).expect("accepted at any stamp");
        assert!(fx.events.iter().any(|e| matches!(e, Event::OrderAllocated { miner: m, .. } if *m == miner.id)));
    }
    // Once the ledger itself has moved past the lease, the same plan is refused.
    net.advance(1);
    net.tick();
    let entry = Entry { stamped_ms: net.now_ms, envelope: envelope(&net) };
    assert_eq!(reject(&mut net, &entry).code(), "allocation_mismatch");
}
