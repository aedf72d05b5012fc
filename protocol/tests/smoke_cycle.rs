//! One honest network: clients and miners run full task cycles and an epoch closes.

use deai_protocol::testkit::TestNet;
use deai_protocol::types::{AssetId, Rating};

#[test]
fn full_cycles_then_epoch_pays_exactly_the_reward() {
    let mut net = TestNet::new();
    let miners = vec![
        net.miner("miner-a", &["text-generation"], 4),
        net.miner("miner-b", &["text-generation", "image-generation"], 4),
    ];
    let alice = net.client("alice");
    for _ in 0..20 {
        net.full_cycle(&alice, &miners, "text-generation", Rating::Good);
    }
    let (reward, payouts) = net.ledger.expected_payouts();
    assert!(reward > 0);
    assert_eq!(payouts.iter().map(|p| p.1).sum::<u128>(), reward);
    let before: u128 = miners.iter().map(|m| net.ledger.account(&m.id).unwrap().balance(AssetId::NATIVE)).sum();
    net.close_epoch().expect("epoch closes");
    let after: u128 = miners.iter().map(|m| net.ledger.account(&m.id).unwrap().balance(AssetId::NATIVE)).sum();
    assert_eq!(after - before, reward);
    net.ledger.check_invariants().unwrap();
}
