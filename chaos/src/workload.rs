//! The workload: concurrent clients, each with its own key and one operation at a time, that
//! credit themselves from the dev faucet, lock and unlock stake, and read their own account or
//! another client's linearizably, through the SDK (which fails over across every coordinator). Each operation
//! goes into the [`History`] with its outcome, as certain as the client can know it.

use crate::history::{AccountState, History, Op, OpKind, Outcome};
use deai_api::views::AccountView;
use deai_client::sdk::ClientError;
use deai_client::{Coordinators, Participant};
use deai_protocol::message::{DevFaucet, LockStake, Message, UnlockStake};
use deai_protocol::types::AssetId;
use ed25519_dalek::SigningKey;
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

/// Largest faucet credit one operation asks for, in base units.
pub const MAX_FAUCET_AMOUNT: u128 = 1_000_000_000_000;
/// Share of operations of each kind, in percent: faucet, lock, unlock; the rest are reads.
pub const FAUCET_PERCENT: u32 = 35;
pub const LOCK_PERCENT: u32 = 15;
pub const UNLOCK_PERCENT: u32 = 10;
/// Share of reads that read another client's account (while its owner writes to it), in
/// percent: the reads a stale replica would get wrong.
pub const FOREIGN_READ_PERCENT: u32 = 25;

/// API codes after which a write may still have been carried out by an earlier attempt (the
/// SDK retries; a second copy of an applied envelope is refused for its nonce).
const AMBIGUOUS_CODES: &[&str] = &["replay", "nonce_gap", "write_timeout", "raft_error", "unknown"];

/// The statuses the SDK tries again on another node (`deai_client::sdk`).
const RETRIED_STATUSES: &[u16] = &[408, 421, 503];

/// Client `index`'s key, drawn from the run's seed.
pub fn client_key(seed: u64, index: usize) -> SigningKey {
    let mut rng = StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(index as u64 + 1));
    let mut secret = [0u8; 32];
    rng.fill(&mut secret);
    SigningKey::from_bytes(&secret)
}

/// What a client believes its account holds, from its last read and its writes since; only to
/// choose amounts that are likely to be accepted.
#[derive(Default)]
struct Belief {
    free: u128,
    locked: u128,
}

/// How a write ended, as the client can tell.
fn write_outcome(result: Result<deai_client::sdk::Outcome, ClientError>) -> (Outcome, Option<String>) {
    match result {
        Ok(o) if o.outcome == "accepted" => (Outcome::Ok, None),
        Ok(o) => (Outcome::Failed, Some(o.outcome)),
        // The SDK retries 408, 421 and 503 on the next node, and its error is the last answer
        // only: an earlier attempt may have been written. Every other refusal is its first.
        Err(ClientError::Api(f))
            if f.status < 500
                && !RETRIED_STATUSES.contains(&f.status)
                && !AMBIGUOUS_CODES.contains(&f.code.as_str()) =>
        {
            (Outcome::Failed, Some(f.code))
        }
        Err(e) => (Outcome::Unknown, Some(e.to_string())),
    }
}

/// The API path of client `index`'s account.
pub fn account_path(seed: u64, index: usize) -> String {
    format!("/v1/ledger/accounts/{}", deai_api::hex::hex(&client_key(seed, index).verifying_key().to_bytes()))
}

/// Runs client `index` of `clients` until `stop` is set.
pub fn run_client(index: usize, clients: usize, seed: u64, addresses: &str, history: &History, stop: &AtomicBool) {
    let mut rng = StdRng::seed_from_u64(seed.wrapping_add(index as u64).wrapping_mul(0x2545_f491_4f6c_dd1d));
    let connected = Coordinators::new(addresses).and_then(|api| Participant::connect(client_key(seed, index), api));
    let me = match connected {
        Ok(me) => me,
        Err(e) => {
            tracing::error!(client = index, error = %e, "a workload client could not connect");
            return;
        }
    };
    let path = account_path(seed, index);
    let mut belief = Belief::default();
    // No nonce is signed twice, even after a write of unknown fate (gaps are allowed, SPEC 3):
    // then a `replay` can only mean this very envelope was written, as the SDK counts it.
    let mut last_signed = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let roll = rng.random_range(0..100);
        let invoke_ms = history.now_ms();
        if roll >= FAUCET_PERCENT + LOCK_PERCENT + UNLOCK_PERCENT {
            let other = (clients > 1 && rng.random_range(0..100) < FOREIGN_READ_PERCENT)
                .then(|| (index + rng.random_range(1..clients)) % clients);
            let read = match other {
                Some(other) => me.api.get::<AccountView>(&account_path(seed, other)),
                None => me.api.get::<AccountView>(&path),
            };
            let complete_ms = history.now_ms();
            let (outcome, error, read) = match read.map(|view| account_state(&view)) {
                Ok(Some(state)) => {
                    if other.is_none() {
                        belief = Belief { free: state.balance, locked: state.locked };
                    }
                    (Outcome::Ok, None, Some(state))
                }
                Ok(None) => (Outcome::Failed, Some("an account view with amounts that are not numbers".into()), None),
                Err(e) => (Outcome::Failed, Some(e.to_string()), None),
            };
            history.record(Op {
                client: index,
                kind: OpKind::Read,
                amount: None,
                nonce: None,
                invoke_ms,
                complete_ms,
                outcome,
                error,
                read,
                account_of: other,
            });
            continue;
        }
        let (kind, amount) = if roll < FAUCET_PERCENT {
            (OpKind::Faucet, rng.random_range(1..=MAX_FAUCET_AMOUNT))
        } else if roll < FAUCET_PERCENT + LOCK_PERCENT {
            (OpKind::Lock, rng.random_range(1..=belief.free.max(1)))
        } else {
            (OpKind::Unlock, rng.random_range(1..=belief.locked.max(1)))
        };
        let message = match kind {
            OpKind::Faucet => Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount }),
            OpKind::Lock => Message::LockStake(LockStake { asset: AssetId::NATIVE, amount }),
            _ => Message::UnlockStake(UnlockStake { asset: AssetId::NATIVE, amount }),
        };
        let nonce = match me.next_nonce() {
            Ok(nonce) => nonce.max(last_signed + 1),
            Err(e) => {
                // Nothing was sent.
                let complete_ms = history.now_ms();
                history.record(Op {
                    client: index,
                    kind,
                    amount: Some(amount),
                    nonce: None,
                    invoke_ms,
                    complete_ms,
                    outcome: Outcome::Failed,
                    error: Some(format!("no nonce: {e}")),
                    read: None,
                    account_of: None,
                });
                continue;
            }
        };
        last_signed = nonce;
        let (outcome, error) = write_outcome(me.submit_envelope(&me.seal(nonce, &message)));
        if outcome == Outcome::Ok {
            match kind {
                OpKind::Faucet => belief.free = belief.free.saturating_add(amount),
                OpKind::Lock => {
                    belief.free = belief.free.saturating_sub(amount);
                    belief.locked = belief.locked.saturating_add(amount);
                }
                _ => {
                    belief.locked = belief.locked.saturating_sub(amount);
                    belief.free = belief.free.saturating_add(amount);
                }
            }
        }
        history.record(Op {
            client: index,
            kind,
            amount: Some(amount),
            nonce: Some(nonce),
            invoke_ms,
            complete_ms: history.now_ms(),
            outcome,
            error,
            read: None,
            account_of: None,
        });
    }
}

/// The native amounts and nonce of an account view.
pub fn account_state(view: &AccountView) -> Option<AccountState> {
    Some(AccountState {
        balance: view.balance.parse().ok()?,
        locked: view.locked.parse().ok()?,
        last_nonce: view.last_nonce,
    })
}

/// Starts `clients` client threads; they run until `stop` is set.
pub fn start(
    clients: usize,
    seed: u64,
    addresses: String,
    history: Arc<History>,
    stop: Arc<AtomicBool>,
) -> Vec<std::thread::JoinHandle<()>> {
    (0..clients)
        .map(|index| {
            let (history, stop, addresses) = (history.clone(), stop.clone(), addresses.clone());
            std::thread::spawn(move || run_client(index, clients, seed, &addresses, &history, &stop))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use deai_client::sdk::ApiFailure;

    fn refused(status: u16, code: &str) -> (Outcome, Option<String>) {
        write_outcome(Err(ClientError::Api(ApiFailure { status, code: code.into(), message: String::new() })))
    }

    #[test]
    fn only_a_first_refusal_is_a_certain_failure() {
        assert_eq!(refused(400, "bad_signature").0, Outcome::Failed);
        assert_eq!(refused(429, "client_queue_full").0, Outcome::Failed);
        // Answers the SDK retried past: an earlier attempt may have been written.
        for (status, code) in [(421, "not_leader"), (503, "leader_unreachable"), (408, "body_timeout"), (409, "replay")]
        {
            assert_eq!(refused(status, code).0, Outcome::Unknown, "{status} {code}");
        }
    }
}
