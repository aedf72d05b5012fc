//! SPEC 6: the BFT-signature layer on top of Raft. Signed inputs (6.1), verified leader
//! choices (6.2), the running root, signed checkpoints and quorum certificates with divergence
//! evidence (6.3), and m-of-c payout signatures (6.4).

// `Rejection` is a large enum by design (it carries its evidence); closures returning it are fine.
#![allow(clippy::result_large_err)]

use deai_protocol::codec;
use deai_protocol::envelope::verify_detached;
use deai_protocol::ledger::{self, Effects, Entry, Event, Ledger, OrderStatus};
use deai_protocol::message::{
    Claim, DevFaucet, Message, OrderMode, Payload, PutOrder, Rate, SignCheckpoint, SignPayouts,
};
use deai_protocol::testkit::{expect_rejected, output_hash, Keys, TestNet};
use deai_protocol::types::{AssetId, Digest, Rating};
use deai_protocol::{Rejection, SignedEnvelope};

const TEXT: &str = "text-generation";
const IMAGE: &str = "image-generation";

/// An envelope that claims to come from `victim` but is signed with `forger`'s key: what a
/// leader would have to produce to invent a client's or miner's input.
fn forged(net: &TestNet, forger: &Keys, victim: &Keys, message: Message) -> Entry {
    let nonce = net.ledger.next_nonce(&victim.id);
    let mut envelope = SignedEnvelope::seal(&forger.signing, &net.ledger.network_id, nonce, &message);
    envelope.signer = victim.id;
    Entry { stamped_ms: net.now_ms, envelope }
}

fn apply_rejected(net: &mut TestNet, code: &str, entry: &Entry) -> Rejection {
    let entry = entry.clone();
    expect_rejected(net, code, move |n| n.ledger.apply(&entry))
}

/// SPEC 6.1: a leader cannot invent an order, a rating or a claim: an envelope naming the
/// client (or miner) as signer but signed with the coordinator's key is `bad_signature`, on the
/// one-by-one path and on the batch path alike.
#[test]
fn spec_6_1_leader_cannot_invent_orders_ratings_or_claims() {
    let mut net = TestNet::new();
    let m = net.miner("miner", &[TEXT], 4);
    let alice = net.client("alice");
    let leader = net.leader().keys.clone();

    // An order out of thin air.
    let put = Message::PutOrder(PutOrder {
        service: TEXT.into(),
        mode: OrderMode::Free,
        payload: Payload::Inline(b"x".to_vec()),
    });
    let entry = forged(&net, &leader, &alice, put.clone());
    assert_eq!(apply_rejected(&mut net, "bad_signature", &entry), Rejection::BadSignature(alice.id));
    assert!(net.ledger.orders.is_empty());

    // A rating the client never gave.
    let order = net.put_free(&alice, TEXT);
    net.allocate(1).unwrap().unwrap();
    let forged_claim = forged(&net, &leader, &m, Message::Claim(Claim { order, output_hash: output_hash(b"fake") }));
    assert_eq!(apply_rejected(&mut net, "bad_signature", &forged_claim), Rejection::BadSignature(m.id));
    assert_eq!(net.ledger.order(&order).unwrap().status, OrderStatus::Allocated);
    net.claim(&m, order, b"output").unwrap();
    let forged_rate = forged(&net, &leader, &alice, Message::Rate(Rate { order, rating: Rating::Bad }));
    assert_eq!(apply_rejected(&mut net, "bad_signature", &forged_rate), Rejection::BadSignature(alice.id));
    assert_eq!(net.ledger.order(&order).unwrap().status, OrderStatus::Completed);
    assert_eq!(net.ledger.miner(&m.id).unwrap().rating_sum, 0);

    // Altering a genuine envelope's body breaks its signature too.
    let mut altered = net.entry(&alice, Message::Rate(Rate { order, rating: Rating::Good }));
    altered.envelope.body = Message::Rate(Rate { order, rating: Rating::Bad }).body_bytes();
    apply_rejected(&mut net, "bad_signature", &altered);

    // Batch path: the genuine entry applies, the forged one does not.
    let genuine = net.entry(&alice, Message::Rate(Rate { order, rating: Rating::Good }));
    let forged_again = forged(&net, &leader, &alice, put);
    let mut reference = net.ledger.clone();
    reference.apply(&genuine).unwrap();
    let results = net.ledger.apply_batch(&[genuine, forged_again]);
    assert!(results[0].is_ok());
    assert_eq!(results[1].as_ref().unwrap_err().code(), "bad_signature");
    assert_eq!(net.ledger.root, reference.root, "the forged entry in the batch changed nothing");
    assert_eq!(net.ledger.height, reference.height);
    assert_eq!(net.ledger.miner(&m.id).unwrap().rating_sum, 1);
    net.ledger.check_invariants().unwrap();
}

/// SPEC 6.2: allocations carry a VRF proof every replica verifies and replays: a leader that
/// picks another miner is caught with evidence naming it, and a proof by another key fails.
#[test]
fn spec_6_2_leader_allocation_is_verified_by_every_replica() {
    let mut net = TestNet::new();
    let a = net.miner("miner-a", &[TEXT], 4);
    let b = net.miner("miner-b", &[TEXT], 4);
    let alice = net.client("alice");
    net.put_free(&alice, TEXT);
    let plan = net.ledger.plan_allocation(&net.coordinators[0].vrf, 1).unwrap();
    let honest_miner = plan.miners[0];
    let other = if honest_miner == a.id { b.id } else { a.id };

    let mut bent = plan.clone();
    bent.miners[0] = other;
    let err = expect_rejected(&mut net, "allocation_mismatch", |n| n.submit_as_coordinator(0, Message::Allocate(bent)));
    assert_eq!(err.misbehaving_coordinator(), Some(net.leader().keys.id));
    assert!(
        matches!(err, Rejection::AllocationMismatch { claimed, expected: Some(e), .. } if claimed == other && e == honest_miner)
    );

    // Coordinator 1 submitting the leader's proof: the proof does not verify under its VRF key.
    let err =
        expect_rejected(&mut net, "bad_vrf_proof", |n| n.submit_as_coordinator(1, Message::Allocate(plan.clone())));
    assert_eq!(err.misbehaving_coordinator(), Some(net.coordinators[1].keys.id));

    net.submit_as_coordinator(0, Message::Allocate(plan)).expect("honest allocation");
    net.ledger.check_invariants().unwrap();
}

/// `H(root_{i-1} || H(entry_i) || H(effects_i))` with the ledger's domains.
fn next_root(prev: &Digest, entry: &Entry, fx: &Effects) -> Digest {
    // Every hash is BLAKE3 over `u32 LE domain length || "deai/v1/<what>" || data`.
    let h = |what: &str, data: &[&[u8]]| -> Digest {
        let domain = format!("deai/v1/{what}");
        let mut hasher = blake3::Hasher::new();
        hasher.update(&(domain.len() as u32).to_le_bytes());
        hasher.update(domain.as_bytes());
        for d in data {
            hasher.update(d);
        }
        *hasher.finalize().as_bytes()
    };
    let envelope_digest = h("envelope", &[&codec::to_bytes(&entry.envelope)]);
    let entry_hash = h("entry", &[&entry.stamped_ms.to_le_bytes(), &envelope_digest]);
    let effects_hash = h("effects", &[&codec::to_bytes(fx)]);
    h("root", &[prev, &entry_hash, &effects_hash])
}

fn faucet_entry(net: &TestNet, who: &Keys, amount: u128) -> Entry {
    net.entry(who, Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount }))
}

/// A 3-coordinator network checkpointing every 10 entries, advanced to height 10 by faucet
/// entries; returns it with the entries applied.
fn at_first_checkpoint() -> (TestNet, Vec<Entry>) {
    let mut net = TestNet::with_genesis(3, |g| g.params.checkpoint_every = 10);
    let alice = Keys::from_name("alice");
    let mut entries = Vec::new();
    for i in 1..=10u64 {
        net.advance(7);
        let entry = faucet_entry(&net, &alice, 1_000 + i as u128);
        let prev = net.ledger.root;
        let fx = net.ledger.apply(&entry).unwrap();
        assert_eq!(net.ledger.height, i);
        assert_eq!(net.ledger.root, next_root(&prev, &entry, &fx));
        entries.push(entry);
    }
    (net, entries)
}

/// SPEC 6.3: the running root is `H(root_{i-1} || H(entry_i) || H(effects_i))`: it moves on
/// every accepted entry, never on a rejected one, and any replica fed the same log agrees.
#[test]
fn spec_6_3_running_root_chains_accepted_entries_only() {
    let mut net = TestNet::with_genesis(3, |g| g.params.checkpoint_every = 10);
    let alice = Keys::from_name("alice");
    let genesis_root = net.ledger.root;
    let mut log = Vec::new();
    let mut seen = vec![genesis_root];
    for i in 1..=6u64 {
        net.advance(3);
        let entry = faucet_entry(&net, &alice, 500 * i as u128);
        let prev = net.ledger.root;
        let fx = net.ledger.apply(&entry).unwrap();
        assert_eq!(net.ledger.root, next_root(&prev, &entry, &fx), "entry {i}");
        assert!(!seen.contains(&net.ledger.root), "every accepted entry gives a new root");
        seen.push(net.ledger.root);
        // Rejected entries in between: a replay of the same entry and a zero amount.
        assert_eq!(apply_rejected(&mut net, "replay", &entry).code(), "replay");
        let zero = faucet_entry(&net, &alice, 0);
        apply_rejected(&mut net, "zero_amount", &zero);
        log.push(entry);
    }
    assert_eq!(net.ledger.height, 6);

    // A second replica from the same genesis, fed the same log, reaches the same root and state.
    let mut replica = TestNet::with_genesis(3, |g| g.params.checkpoint_every = 10);
    assert_eq!(replica.ledger.root, genesis_root);
    for e in &log {
        replica.ledger.apply(e).unwrap();
    }
    assert_eq!(replica.ledger.root, net.ledger.root);
    assert_eq!(replica.ledger.state_digest(), net.ledger.state_digest());
    // The same entries with a different stamp give a different root: the stamp is hashed.
    let mut other = TestNet::with_genesis(3, |g| g.params.checkpoint_every = 10);
    for e in &log {
        let mut e = e.clone();
        e.stamped_ms += 1;
        other.ledger.apply(&e).unwrap();
    }
    assert_ne!(other.ledger.root, net.ledger.root);
    net.ledger.check_invariants().unwrap();
}

/// SPEC 6.3: after `checkpoint_every` accepted entries the entry's effects announce
/// `CheckpointDue` and the root at that height is recorded for signing.
#[test]
fn spec_6_3_checkpoint_is_due_every_n_entries() {
    let mut net = TestNet::with_genesis(3, |g| g.params.checkpoint_every = 10);
    let alice = Keys::from_name("alice");
    for i in 1..=9u64 {
        let fx = net.ledger.apply(&faucet_entry(&net, &alice, 10 + i as u128)).unwrap();
        assert!(!fx.events.iter().any(|e| matches!(e, Event::CheckpointDue { .. })), "height {i}");
        // Rejected entries do not count toward the checkpoint.
        let bad = faucet_entry(&net, &alice, 0);
        apply_rejected(&mut net, "zero_amount", &bad);
    }
    assert!(net.ledger.checkpoints.is_empty());
    let fx = net.ledger.apply(&faucet_entry(&net, &alice, 99)).unwrap();
    assert_eq!(fx.events.last(), Some(&Event::CheckpointDue { height: 10 }));
    assert_eq!(net.ledger.height, 10);
    assert_eq!(net.ledger.checkpoints.keys().copied().collect::<Vec<_>>(), vec![10]);
    let cp = &net.ledger.checkpoints[&10];
    assert_eq!(cp.root, net.ledger.root);
    assert!(cp.signatures.is_empty() && !cp.certified);
    assert_eq!(net.ledger.last_checkpoint_root, net.ledger.root, "the next VRF input uses it");
    net.ledger.check_invariants().unwrap();
}

/// SPEC 6.3: `ceil((2n+1)/3)` matching signatures form a quorum certificate whose signatures
/// verify with `verify_detached` over `checkpoint_signing_bytes`; a different root is kept as
/// divergence evidence (equivocation if the same coordinator also signed the right root); bad
/// signatures and double signing are refused.
#[test]
fn spec_6_3_quorum_certificate_and_divergence_evidence() {
    let (mut net, _) = at_first_checkpoint();
    assert_eq!(net.ledger.quorum(), 3);
    let root = net.ledger.checkpoints[&10].root;
    let wrong: Digest = [0xAB; 32];
    let ids: Vec<_> = net.coordinators.iter().map(|c| c.keys.id).collect();
    let network = net.ledger.network_id.clone();

    let fx = net.sign_checkpoint(0, 10, root).unwrap();
    assert!(fx.events.iter().all(|e| !matches!(e, Event::CertificateFormed { .. })));
    assert_eq!(net.ledger.checkpoints[&10].signatures.len(), 1);
    assert_eq!(
        expect_rejected(&mut net, "already_signed", |n| n.sign_checkpoint(0, 10, root)),
        Rejection::AlreadySigned(ids[0])
    );

    // A detached signature by another key, or over another height, does not verify.
    let bytes = ledger::checkpoint_signing_bytes(&network, 10, &root);
    let by_other_key = net.coordinators[2].keys.sign_detached(&bytes);
    let msg = Message::SignCheckpoint(SignCheckpoint { height: 10, root, signature: by_other_key });
    expect_rejected(&mut net, "bad_checkpoint_signature", |n| n.submit_as_coordinator(1, msg));
    let other_height = net.coordinators[1].keys.sign_detached(&ledger::checkpoint_signing_bytes(&network, 20, &root));
    let msg = Message::SignCheckpoint(SignCheckpoint { height: 10, root, signature: other_height });
    expect_rejected(&mut net, "bad_checkpoint_signature", |n| n.submit_as_coordinator(1, msg));
    expect_rejected(&mut net, "unknown_checkpoint", |n| n.sign_checkpoint(1, 5, root));
    // Only coordinators sign checkpoints.
    let outsider = Keys::from_name("outsider");
    let sig = outsider.sign_detached(&bytes);
    expect_rejected(&mut net, "wrong_role", |n| {
        n.submit(&outsider, Message::SignCheckpoint(SignCheckpoint { height: 10, root, signature: sig }))
    });

    // Coordinator 1 signs a different root: divergence, not equivocation (one root signed).
    let fx = net.sign_checkpoint(1, 10, wrong).expect("a validly signed wrong root is accepted as evidence");
    assert!(fx.events.contains(&Event::DivergenceRecorded { coordinator: ids[1], height: 10 }));
    assert_eq!(net.ledger.divergence_count, 1);
    let d = net.ledger.divergences.back().unwrap().clone();
    assert_eq!(
        (d.coordinator, d.height, d.signed_root, d.expected_root, d.equivocation),
        (ids[1], 10, wrong, root, false)
    );
    assert!(
        verify_detached(&ids[1], &ledger::checkpoint_signing_bytes(&network, 10, &wrong), &d.signature),
        "evidence is checkable"
    );
    expect_rejected(&mut net, "already_signed", |n| n.sign_checkpoint(1, 10, wrong));

    // Coordinator 0 already signed the right root; signing another one is equivocation.
    let fx = net.sign_checkpoint(0, 10, wrong).unwrap();
    assert!(fx.events.contains(&Event::DivergenceRecorded { coordinator: ids[0], height: 10 }));
    assert_eq!(net.ledger.divergence_count, 2);
    let d = net.ledger.divergences.back().unwrap();
    assert_eq!((d.coordinator, d.equivocation), (ids[0], true));
    assert_eq!(net.ledger.checkpoints[&10].signatures.len(), 1, "wrong roots do not count");

    // Two matching signatures are not a quorum of three; the third forms the certificate.
    net.sign_checkpoint(1, 10, root).unwrap();
    assert!(net.ledger.last_certificate.is_none());
    assert!(!net.ledger.checkpoints[&10].certified);
    let fx = net.sign_checkpoint(2, 10, root).unwrap();
    assert!(fx.events.contains(&Event::CertificateFormed { height: 10, root }));
    let cert = net.ledger.last_certificate.clone().expect("certificate");
    assert_eq!((cert.height, cert.root), (10, root));
    assert_eq!(cert.signatures.len(), 3);
    let mut signers: Vec<_> = cert.signatures.iter().map(|s| s.0).collect();
    signers.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(signers, want);
    for (id, sig) in &cert.signatures {
        assert!(verify_detached(id, &bytes, sig), "certificate signature of {id} verifies");
        assert!(!verify_detached(id, &ledger::checkpoint_signing_bytes(&network, 10, &wrong), sig));
        let mut flipped = *sig;
        flipped[0] ^= 1;
        assert!(!verify_detached(id, &bytes, &flipped));
    }
    assert!(net.ledger.checkpoints[&10].certified);
    // A late duplicate does not re-form it.
    expect_rejected(&mut net, "already_signed", |n| n.sign_checkpoint(2, 10, root));
    net.ledger.check_invariants().unwrap();
}

/// SPEC 6.3: the certificate quorum follows the cluster size: 3 of 4, 5 of 7.
#[test]
fn spec_6_3_certificate_quorum_is_ceil_two_n_plus_one_over_three() {
    for (n, quorum) in [(3usize, 3usize), (4, 3), (5, 4), (7, 5)] {
        let mut net = TestNet::with_genesis(n, |g| g.params.checkpoint_every = 4);
        assert_eq!(net.ledger.quorum(), quorum, "n = {n}");
        let alice = Keys::from_name("alice");
        for i in 0..4 {
            net.faucet(&alice, AssetId::NATIVE, 1 + i);
        }
        let root = net.ledger.checkpoints[&4].root;
        for i in 0..quorum - 1 {
            net.sign_checkpoint(i, 4, root).unwrap();
        }
        assert!(net.ledger.last_certificate.is_none(), "n = {n}: {} signatures are not enough", quorum - 1);
        net.sign_checkpoint(quorum - 1, 4, root).unwrap();
        assert_eq!(net.ledger.last_certificate.as_ref().map(|c| c.signatures.len()), Some(quorum));
        net.ledger.check_invariants().unwrap();
    }
}

/// SPEC 6.4 (m-of-c payouts): the closed epoch's payouts are committed by `payouts_root`;
/// coordinators sign `payouts_signing_bytes(network, epoch, root)`, and a quorum of signatures
/// certifies the epoch for release on L2.
#[test]
fn spec_6_4_payouts_are_certified_by_m_of_c_signatures() {
    let mut net = TestNet::new();
    let text_miner = net.miner("text-miner", &[TEXT], 4);
    let image_miner = net.miner("image-miner", &[IMAGE], 4);
    let miners = [text_miner.clone(), image_miner.clone()];
    let alice = net.client("alice");
    for _ in 0..3 {
        net.full_cycle(&alice, &miners, TEXT, Rating::Good);
    }
    net.full_cycle(&alice, &miners, IMAGE, Rating::Good);
    net.close_epoch().unwrap();

    let record = net.ledger.closed_epochs[&0].clone();
    assert_eq!(record.payouts.len(), 2);
    let root = ledger::payouts_root(0, &record.payouts);
    assert_eq!(record.payouts_root, root, "the root recomputed from the payouts matches");
    let mut tampered = record.payouts.clone();
    tampered[0].1 += 1;
    assert_ne!(ledger::payouts_root(0, &tampered), root, "the root commits to every amount");
    assert_ne!(ledger::payouts_root(1, &record.payouts), root, "and to the epoch");
    assert!(!record.certified && record.signatures.is_empty());

    let network = net.ledger.network_id.clone();
    let bytes = ledger::payouts_signing_bytes(&network, 0, &root);
    let sign = |net: &mut TestNet, i: usize, epoch: u64, root: Digest, signature: [u8; 64]| {
        net.submit_as_coordinator(i, Message::SignPayouts(SignPayouts { epoch, payouts_root: root, signature }))
    };
    let ids: Vec<_> = net.coordinators.iter().map(|c| c.keys.id).collect();
    let sig: Vec<[u8; 64]> = net.coordinators.iter().map(|c| c.keys.sign_detached(&bytes)).collect();

    let fx = sign(&mut net, 0, 0, root, sig[0]).unwrap();
    assert!(!fx.events.iter().any(|e| matches!(e, Event::PayoutsCertified { .. })));
    expect_rejected(&mut net, "already_signed", |n| sign(n, 0, 0, root, sig[0]));
    // Another coordinator's signature, a root that is not the record's, an unknown epoch.
    expect_rejected(&mut net, "bad_checkpoint_signature", |n| sign(n, 1, 0, root, sig[2]));
    let tampered_root = ledger::payouts_root(0, &tampered);
    let tampered_sig =
        net.coordinators[1].keys.sign_detached(&ledger::payouts_signing_bytes(&network, 0, &tampered_root));
    let err = expect_rejected(&mut net, "payout_mismatch", |n| sign(n, 1, 0, tampered_root, tampered_sig));
    assert_eq!(err.misbehaving_coordinator(), Some(ids[1]));
    let later = net.coordinators[1].keys.sign_detached(&ledger::payouts_signing_bytes(&network, 7, &root));
    expect_rejected(&mut net, "wrong_epoch", |n| sign(n, 1, 7, root, later));
    let outsider = Keys::from_name("outsider");
    let outsider_sig = outsider.sign_detached(&bytes);
    expect_rejected(&mut net, "wrong_role", |n| {
        n.submit(&outsider, Message::SignPayouts(SignPayouts { epoch: 0, payouts_root: root, signature: outsider_sig }))
    });

    sign(&mut net, 1, 0, root, sig[1]).unwrap();
    assert!(!net.ledger.closed_epochs[&0].certified, "2 of 3 is below the quorum");
    let fx = sign(&mut net, 2, 0, root, sig[2]).unwrap();
    assert!(fx.events.contains(&Event::PayoutsCertified { epoch: 0, payouts_root: root }));
    let record = &net.ledger.closed_epochs[&0];
    assert!(record.certified);
    assert_eq!(record.signatures.len(), 3);
    for (id, s) in &record.signatures {
        assert!(ids.contains(id));
        assert!(verify_detached(id, &bytes, s), "an L2 contract can check {id}'s signature");
    }
    assert_eq!(ledger::payouts_root(record.number, &record.payouts), record.payouts_root);
    net.ledger.check_invariants().unwrap();
}

/// SPEC 6.3: a restored snapshot keeps the running root, so the chain continues identically.
#[test]
fn spec_6_3_snapshot_preserves_the_running_root() {
    let (mut net, _) = at_first_checkpoint();
    let snapshot = net.ledger.snapshot();
    let mut restored = Ledger::restore(&snapshot).expect("restore");
    assert_eq!(restored.root, net.ledger.root);
    let alice = Keys::from_name("alice");
    let entry = faucet_entry(&net, &alice, 42);
    let a = net.ledger.apply(&entry).unwrap();
    let b = restored.apply(&entry).unwrap();
    assert_eq!(a, b);
    assert_eq!(restored.root, net.ledger.root);
    net.ledger.check_invariants().unwrap();
}
