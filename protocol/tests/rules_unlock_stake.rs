//! SPEC 5.1, `UnlockStake`: locked stake goes back to the free balance, per asset, only while
//! the client holds no pass; a refused unlock changes nothing.

use deai_protocol::ledger::{Event, PassState};
use deai_protocol::message::{AcquirePass, LockStake, Message, ReleasePass, UnlockStake};
use deai_protocol::params::TOKEN;
use deai_protocol::testkit::{reject_msg, Keys, TestNet, CLIENT_STAKE};
use deai_protocol::types::AssetId;

const TEXT: &str = "text-generation";
const NON_NATIVE: AssetId = AssetId(1);

fn unlock(asset: AssetId, amount: u128) -> Message {
    Message::UnlockStake(UnlockStake { asset, amount })
}

#[test]
fn spec5_1_stake_unlocks_in_part_per_asset_without_a_pass() {
    let mut net = TestNet::new();
    let lee = Keys::from_name("lee");
    net.faucet(&lee, AssetId::NATIVE, 40 * TOKEN);
    net.faucet(&lee, NON_NATIVE, 20 * TOKEN);
    net.submit(&lee, Message::LockStake(LockStake { asset: AssetId::NATIVE, amount: 40 * TOKEN })).unwrap();
    net.submit(&lee, Message::LockStake(LockStake { asset: NON_NATIVE, amount: 20 * TOKEN })).unwrap();

    let fx = net.submit(&lee, unlock(AssetId::NATIVE, 15 * TOKEN)).unwrap();
    assert_eq!(fx.events, vec![Event::StakeReturned { client: lee.id, asset: AssetId::NATIVE, amount: 15 * TOKEN }]);
    let acc = net.ledger.account(&lee.id).unwrap();
    assert_eq!((acc.locked(AssetId::NATIVE), acc.balance(AssetId::NATIVE)), (25 * TOKEN, 15 * TOKEN));
    assert_eq!((acc.locked(NON_NATIVE), acc.balance(NON_NATIVE)), (20 * TOKEN, 0));

    // The whole of the other asset; nothing of it stays locked.
    net.submit(&lee, unlock(NON_NATIVE, 20 * TOKEN)).unwrap();
    let acc = net.ledger.account(&lee.id).unwrap();
    assert_eq!((acc.locked(NON_NATIVE), acc.balance(NON_NATIVE)), (0, 20 * TOKEN));
    assert!(!acc.locked.contains_key(&NON_NATIVE));
    assert_eq!(net.ledger.effective_stake(&lee.id), 25 * TOKEN);
    net.ledger.check_invariants().unwrap();
}

#[test]
fn spec5_1_stake_stays_locked_while_a_pass_is_held() {
    let mut net = TestNet::new();
    let max = net.client("max");
    let before = net.ledger.state_digest();
    assert_eq!(reject_msg(&mut net, &max, unlock(AssetId::NATIVE, TOKEN)).code(), "pass_held");
    assert_eq!(net.ledger.state_digest(), before);

    // Releasing with an order in flight: still locked, and the unlock says why.
    let _miner = net.miner("miner-u", &[TEXT], 4);
    net.put_free(&max, TEXT);
    net.allocate(1).unwrap().unwrap();
    net.submit(&max, Message::ReleasePass(ReleasePass {})).unwrap();
    assert_eq!(net.ledger.account(&max.id).unwrap().pass, PassState::Releasing);
    assert_eq!(reject_msg(&mut net, &max, unlock(AssetId::NATIVE, TOKEN)).code(), "pass_releasing");
    assert_eq!(net.ledger.account(&max.id).unwrap().locked(AssetId::NATIVE), CLIENT_STAKE);
}

#[test]
fn spec5_1_an_unlock_of_nothing_or_of_more_than_is_locked_is_refused() {
    let mut net = TestNet::new();
    let ned = Keys::from_name("ned");
    assert_eq!(reject_msg(&mut net, &ned, unlock(AssetId::NATIVE, TOKEN)).code(), "insufficient_locked");
    net.faucet(&ned, AssetId::NATIVE, 20 * TOKEN);
    net.submit(&ned, Message::LockStake(LockStake { asset: AssetId::NATIVE, amount: 10 * TOKEN })).unwrap();
    assert_eq!(reject_msg(&mut net, &ned, unlock(AssetId::NATIVE, 0)).code(), "zero_amount");
    assert_eq!(reject_msg(&mut net, &ned, unlock(AssetId::NATIVE, 10 * TOKEN + 1)).code(), "insufficient_locked");
    assert_eq!(reject_msg(&mut net, &ned, unlock(AssetId(77), TOKEN)).code(), "unknown_asset");
    // After the refusals, the pass can still be had and unlocking waits for its release.
    net.submit(&ned, Message::AcquirePass(AcquirePass {})).unwrap();
    net.submit(&ned, Message::ReleasePass(ReleasePass {})).unwrap();
    let acc = net.ledger.account(&ned.id).unwrap();
    assert_eq!((acc.locked(AssetId::NATIVE), acc.balance(AssetId::NATIVE)), (0, 20 * TOKEN));
    net.ledger.check_invariants().unwrap();
}
