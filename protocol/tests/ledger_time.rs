//! SPEC 3 ledger time with the bound of `docs/decisions.md` ("Ledger time"): time never goes
//! back, and one entry moves it at most `max_ledger_step_ms`, whatever its stamp says.

#![allow(clippy::result_large_err)]

use deai_protocol::ledger::next_ledger_time;
use deai_protocol::message::{DevFaucet, Message, Tick};
use deai_protocol::params::{DEFAULT_MAX_LEDGER_STEP_MS, TOKEN};
use deai_protocol::testkit::{Keys, TestNet};
use deai_protocol::types::AssetId;
use deai_protocol::{Ledger, SignedEnvelope};

const START_MS: u64 = 1_800_000_000_000;

/// A test network with the production step, its ledger time at `START_MS`.
fn net_with_default_step() -> TestNet {
    let mut net = TestNet::with_genesis(3, |g| {
        g.params.max_ledger_step_ms = DEFAULT_MAX_LEDGER_STEP_MS;
        g.start_ms = START_MS;
    });
    net.now_ms = START_MS;
    net
}

fn faucet(net: &TestNet, who: &Keys, stamped_ms: u64) -> deai_protocol::ledger::Entry {
    let mut entry = net.entry(who, Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: TOKEN }));
    entry.stamped_ms = stamped_ms;
    entry
}

#[test]
fn the_rule_never_goes_back_and_never_moves_past_one_step() {
    assert_eq!(next_ledger_time(1_000, 500, 60_000), 1_000, "an old stamp leaves time where it is");
    assert_eq!(next_ledger_time(1_000, 2_000, 60_000), 2_000, "a stamp within the step is taken");
    assert_eq!(next_ledger_time(1_000, 61_000, 60_000), 61_000, "exactly one step is taken");
    assert_eq!(next_ledger_time(1_000, 61_001, 60_000), 61_000, "past the step is cut to it");
    assert_eq!(next_ledger_time(1_000, u64::MAX, 60_000), 61_000);
    assert_eq!(next_ledger_time(u64::MAX - 5, u64::MAX, 60_000), u64::MAX, "saturates, never wraps");
}

#[test]
fn an_entry_stamped_at_the_end_of_time_moves_the_ledger_one_step() {
    let mut net = net_with_default_step();
    let client = Keys::from_name("time-traveller");
    net.apply_recorded(faucet(&net, &client, u64::MAX)).expect("the entry itself is valid");
    assert_eq!(net.ledger.now_ms, START_MS + DEFAULT_MAX_LEDGER_STEP_MS);

    // The next honest stamp, a second after the start, neither moves time back nor forward.
    net.apply_recorded(faucet(&net, &client, START_MS + 1_000)).expect("accepted");
    assert_eq!(net.ledger.now_ms, START_MS + DEFAULT_MAX_LEDGER_STEP_MS);

    // Every replica applies the same clamp: the same entries give the same time and root.
    let mut replica: Ledger = net_with_default_step().ledger;
    for entry in &net.accepted {
        replica.apply(entry).expect("replayed");
    }
    assert_eq!((replica.now_ms, replica.root), (net.ledger.now_ms, net.ledger.root));
}

#[test]
fn many_far_stamps_move_time_at_most_one_step_each() {
    let mut net = net_with_default_step();
    let leader = net.leader().keys.clone();
    for i in 1..=5u64 {
        let nonce = net.ledger.next_nonce(&leader.id);
        let envelope = SignedEnvelope::seal(&leader.signing, &net.ledger.network_id, nonce, &Message::Tick(Tick {}));
        net.apply_recorded(deai_protocol::ledger::Entry { stamped_ms: u64::MAX, envelope }).expect("tick");
        assert_eq!(net.ledger.now_ms, START_MS + i * DEFAULT_MAX_LEDGER_STEP_MS);
    }
}
