//! Apply throughput of full signed task cycles (put, allocate, claim, rate) on one core.
//!
//! The entries are generated once, outside the timed loop, by driving a generator ledger; each
//! timed iteration applies the same recorded entries to a fresh clone of the starting ledger
//! (the clone is not timed). Three ways of applying are compared:
//!
//! - `apply_strict`: [`Ledger::apply`] per entry (strict ed25519 check of each envelope);
//! - `apply_batchN`: [`Ledger::apply_batch`] over chunks of N entries (batched ed25519);
//! - `apply_preverified`: [`Ledger::apply_preverified`], no signature check at all (the pure
//!   state transitions, plus envelope decode, root update and the VRF check of `Allocate`).
//!
//! Throughput is counted in cycles. A cycle is one `PutOrder`, one `Claim`, one `Rate` and its
//! share of an `Allocate` entry: with `alloc1` every order gets its own `Allocate` (4 entries a
//! cycle), with `allocN` one `Allocate` carries N orders (3 + 1/N entries a cycle).
//!
//! The `parts` group times the sub-steps of an apply on their own, to show where time goes.
//!
//! Run: `cargo bench -p deai-protocol --bench apply` (add a filter such as `cycles/` or
//! `parts/` to run one group).

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, SamplingMode, Throughput};
use deai_protocol::codec;
use deai_protocol::envelope::{self, SignedEnvelope};
use deai_protocol::ledger::{self, Effects, Entry, Event};
use deai_protocol::message::MessageKind;
use deai_protocol::rules;
use deai_protocol::testkit::{CoordinatorKeys, CycleWorkload};
use deai_protocol::vrf::{self, VrfSecret};
use deai_protocol::Ledger;
use std::hint::black_box;
use std::time::Duration;

fn apply_preverified(ledger: &mut Ledger, entry: &Entry) {
    if let Err(e) = ledger.apply_preverified(entry) {
        panic!("generated entry rejected: {e}");
    }
}

/// A starting ledger and the recorded entries of `cycles` cycles that follow it.
struct Recorded {
    start: Ledger,
    entries: Vec<Entry>,
    cycles: usize,
}

/// Builds a ledger with `warm` completed cycles, then records `cycles` more.
fn record(batch: usize, warm: usize, cycles: usize) -> Recorded {
    let mut w = CycleWorkload::new();
    w.run(warm, batch, apply_preverified, |_| {});
    let start = w.net.ledger.clone();
    let mut entries = Vec::new();
    w.run(cycles, batch, apply_preverified, |e| entries.push(e));
    let end_root = w.net.ledger.root;

    // Every way of applying accepts every entry and ends at the generator's root.
    let mut l = start.clone();
    for e in &entries {
        l.apply(e).expect("strict apply accepts");
    }
    assert_eq!(l.root, end_root);
    let mut l = start.clone();
    for chunk in entries.chunks(64) {
        for r in l.apply_batch(chunk) {
            r.expect("batch apply accepts");
        }
    }
    assert_eq!(l.root, end_root);
    Recorded { start, entries, cycles }
}

// ---------------------------------------------------------------------------------------------
// Full cycles.

/// Completed cycles in the ledger before the timed entries.
const WARM_CYCLES: usize = 10_000;
/// Cycles applied per timed iteration.
const TIMED_CYCLES: usize = 2_048;

fn full_cycles(c: &mut Criterion) {
    for batch in [1usize, 64, 256, 512] {
        let rec = record(batch, WARM_CYCLES, TIMED_CYCLES);
        let mut g = c.benchmark_group(format!("cycles/alloc{batch}"));
        g.throughput(Throughput::Elements(rec.cycles as u64));
        g.sample_size(10);
        g.sampling_mode(SamplingMode::Flat);
        g.warm_up_time(Duration::from_secs(2));
        g.measurement_time(Duration::from_secs(15));

        g.bench_function("apply_strict", |b| {
            b.iter_batched(
                || rec.start.clone(),
                |mut l| {
                    for e in &rec.entries {
                        assert!(l.apply(e).is_ok());
                    }
                    l
                },
                BatchSize::PerIteration,
            )
        });
        for chunk in [64usize, 256] {
            g.bench_function(format!("apply_batch{chunk}"), |b| {
                b.iter_batched(
                    || rec.start.clone(),
                    |mut l| {
                        for ch in rec.entries.chunks(chunk) {
                            for r in l.apply_batch(ch) {
                                assert!(r.is_ok());
                            }
                        }
                        l
                    },
                    BatchSize::PerIteration,
                )
            });
        }
        g.bench_function("apply_preverified", |b| {
            b.iter_batched(
                || rec.start.clone(),
                |mut l| {
                    for e in &rec.entries {
                        assert!(l.apply_preverified(e).is_ok());
                    }
                    l
                },
                BatchSize::PerIteration,
            )
        });
        g.finish();
    }
}

// ---------------------------------------------------------------------------------------------
// Sub-steps of an apply.

fn parts(c: &mut Criterion) {
    // One batch of 64 cycles from a small ledger: 64 puts, one Allocate(64), 64 claims, 64 rates.
    let rec = record(64, 0, 64);
    let by_kind = |k: MessageKind| rec.entries.iter().filter(move |e| e.envelope.kind == k);
    let put = by_kind(MessageKind::PutOrder).next().unwrap().clone();
    let claim = by_kind(MessageKind::Claim).next().unwrap().clone();
    let rate = by_kind(MessageKind::Rate).next().unwrap().clone();
    let alloc_pos = rec.entries.iter().position(|e| e.envelope.kind == MessageKind::Allocate).unwrap();
    let alloc = rec.entries[alloc_pos].clone();

    let mut g = c.benchmark_group("parts");
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));

    // Signatures.
    g.bench_function("ed25519_verify_strict", |b| b.iter(|| black_box(&put.envelope).verify_signature().is_ok()));
    for n in [64usize, 256] {
        // n envelopes from different signers (puts, claims and rates of the recording).
        let mut pool: Vec<SignedEnvelope> = Vec::new();
        while pool.len() < n {
            for e in &rec.entries {
                if pool.len() < n {
                    pool.push(e.envelope.clone());
                }
            }
        }
        let refs: Vec<&SignedEnvelope> = pool.iter().collect();
        assert!(envelope::verify_batch(&refs));
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(format!("ed25519_verify_batch{n}"), |b| b.iter(|| envelope::verify_batch(black_box(&refs))));
    }
    g.throughput(Throughput::Elements(1));

    // VRF (sr25519) verification, as done once per Allocate entry.
    let secret = VrfSecret::from_seed([7; 32]);
    let public = secret.public();
    let input = vrf::allocation_input(&[1; 32], &[2; 32]);
    let (_, proof) = secret.prove(&input);
    g.bench_function("vrf_verify", |b| {
        b.iter(|| vrf::verify(black_box(&public), black_box(&input), black_box(&proof)))
    });
    g.bench_function("vrf_draw", |b| b.iter(|| vrf::draw(black_box(&[3; 32]), black_box(5))));

    // Envelope work done by every apply.
    let env = &put.envelope;
    g.bench_function("signing_bytes_put", |b| {
        b.iter(|| envelope::signing_bytes(env.kind, black_box(&env.network_id), env.nonce, black_box(&env.body)))
    });
    g.bench_function("check_and_decode_put", |b| {
        b.iter(|| black_box(env).check_and_decode(&rec.start.network_id).is_ok())
    });
    g.bench_function("check_and_decode_allocate64", |b| {
        b.iter(|| black_box(&alloc.envelope).check_and_decode(&rec.start.network_id).is_ok())
    });
    g.bench_function("encode_envelope_put", |b| b.iter(|| codec::to_bytes(black_box(env))));
    g.bench_function("encode_envelope_allocate64", |b| b.iter(|| codec::to_bytes(black_box(&alloc.envelope))));
    let fx = Effects { events: vec![Event::OrderPlaced { order: Ledger::order_id_of(env), client: env.signer }] };
    let root = [9u8; 32];
    g.bench_function("root_update_put", |b| {
        b.iter(|| {
            let entry_hash = ledger::entry_hash(put.stamped_ms, &black_box(env).digest());
            ledger::root_step(&root, &entry_hash, &ledger::effects_hash(black_box(&fx)))
        })
    });
    g.bench_function("order_id_of_put", |b| b.iter(|| Ledger::order_id_of(black_box(env))));
    g.bench_function("reputation_milli", |b| b.iter(|| rules::reputation_milli(black_box(100_000), black_box(40))));

    // Single entries applied to a small ledger, without and with the signature check.
    let ledger_before = |upto: usize| {
        let mut l = rec.start.clone();
        for e in &rec.entries[..upto] {
            l.apply_preverified(e).unwrap();
        }
        l
    };
    let claim_pos = rec.entries.iter().position(|e| e == &claim).unwrap();
    let rate_pos = rec.entries.iter().position(|e| e == &rate).unwrap();
    let put_pos = rec.entries.iter().position(|e| e == &put).unwrap();
    for (name, pos) in [("put", put_pos), ("allocate64", alloc_pos), ("claim", claim_pos), ("rate", rate_pos)] {
        let before = ledger_before(pos);
        let entry = rec.entries[pos].clone();
        g.bench_function(format!("entry_{name}_preverified"), |b| {
            b.iter_batched(|| before.clone(), |mut l| (l.apply_preverified(&entry).is_ok(), l), BatchSize::PerIteration)
        });
        g.bench_function(format!("entry_{name}_strict"), |b| {
            b.iter_batched(|| before.clone(), |mut l| (l.apply(&entry).is_ok(), l), BatchSize::PerIteration)
        });
    }
    g.bench_function("plan_allocation64", |b| {
        let before = ledger_before(alloc_pos);
        let leader = CoordinatorKeys::from_name("coordinator-0"); // the TestNet leader
        b.iter(|| before.plan_allocation(&leader.vrf, 64))
    });
    g.finish();
}

criterion_group!(benches, full_cycles, parts);
criterion_main!(benches);
