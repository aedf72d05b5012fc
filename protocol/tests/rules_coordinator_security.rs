//! SPEC 5.12: coordinators are accountable and replaceable. Governance changes the coordinator
//! signing set; a removed coordinator's entries are refused from then on and the certificate
//! quorum follows the new set.

#![allow(clippy::result_large_err)]

use deai_protocol::message::{Message, Propose, Tick, Vote};
use deai_protocol::params::ProposalAction;
use deai_protocol::testkit::{CoordinatorKeys, TestNet};

/// SPEC 5.12 with 5.11: a passed `SetCoordinators` proposal ejects a coordinator.
#[test]
fn spec_5_12_governance_replaces_a_coordinator() {
    let mut net = TestNet::new();
    assert_eq!(net.ledger.quorum(), 3, "ceil((2*3+1)/3)");
    let voter = net.client("voter");
    let newcomer = CoordinatorKeys::from_name("coordinator-new");
    let new_set = vec![net.coordinators[0].info(), net.coordinators[1].info(), newcomer.info()];
    net.submit(&voter, Message::Propose(Propose { action: ProposalAction::SetCoordinators { coordinators: new_set } }))
        .expect("a staker may propose");
    net.submit(&voter, Message::Vote(Vote { proposal: 0, approve: true })).expect("vote");

    // Before the vote ends coordinator 2 still signs.
    net.submit_as_coordinator(2, Message::Tick(Tick {})).expect("still a member");
    net.advance(net.ledger.params.voting_period_ms);
    net.tick();

    let removed = net.coordinators[2].keys.id;
    assert!(!net.ledger.is_coordinator(&removed));
    assert!(net.ledger.is_coordinator(&newcomer.keys.id));
    let (root, height) = (net.ledger.root, net.ledger.height);
    let err = net.submit_as_coordinator(2, Message::Tick(Tick {})).unwrap_err();
    assert_eq!(err.code(), "wrong_role");
    assert_eq!((net.ledger.root, net.ledger.height), (root, height));
    let newcomer_keys = newcomer.keys.clone();
    net.submit(&newcomer_keys, Message::Tick(Tick {})).expect("the new member signs");
    assert_eq!(net.ledger.quorum(), 3, "still three members");
}

/// SPEC 5.12 with 6.3: shrinking the set lowers the certificate quorum to ceil((2n+1)/3).
#[test]
fn spec_5_12_quorum_follows_the_signing_set() {
    let mut net = TestNet::with_genesis(4, |_| {});
    assert_eq!(net.ledger.quorum(), 3);
    let voter = net.client("voter");
    let smaller = vec![net.coordinators[0].info(), net.coordinators[1].info()];
    net.submit(&voter, Message::Propose(Propose { action: ProposalAction::SetCoordinators { coordinators: smaller } }))
        .unwrap();
    net.submit(&voter, Message::Vote(Vote { proposal: 0, approve: true })).unwrap();
    net.advance(net.ledger.params.voting_period_ms);
    net.tick();
    assert_eq!(net.ledger.coordinators.len(), 2);
    assert_eq!(net.ledger.quorum(), 2, "ceil((2*2+1)/3)");
}

/// SPEC 5.12: a set with a duplicate member or no member is refused when proposed.
#[test]
fn spec_5_12_malformed_signing_sets_are_refused() {
    let mut net = TestNet::new();
    let voter = net.client("voter");
    let dup = vec![net.coordinators[0].info(), net.coordinators[0].info()];
    for set in [dup, vec![]] {
        let err = net
            .submit(&voter, Message::Propose(Propose { action: ProposalAction::SetCoordinators { coordinators: set } }))
            .unwrap_err();
        assert_eq!(err.code(), "invalid_proposal");
    }
}
