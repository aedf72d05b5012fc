//! The invariants a simulation checks, after every step on every running replica and once more
//! on the final states:
//!
//! - **replicas agree**: two replicas at the same height have the same state root (SPEC 6.3),
//!   whenever each is looked at;
//! - **nonces never go back** on a replica (SPEC 4.2);
//! - **the ledger's own invariants** hold on every replica at every height it reaches: tokens
//!   conserved (balances + stakes + escrow + fee pool + collateral = deposits + minted −
//!   withdrawals), and orders, passes and miners consistent (`Ledger::check_invariants`);
//! - **reads are linearizable**: a client's linearizable read of its own holdings (only it
//!   writes them, one operation at a time) sees every faucet write acknowledged before the read
//!   began, nothing that was never written, and never less than its previous read;
//! - **no acknowledged write is lost**: on every final replica, a client's holdings are at
//!   least the sum of its acknowledged faucet writes and at most that plus the unknown ones.

use deai_protocol::types::ParticipantId;
use deai_protocol::Ledger;
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};

/// Violations of one invariant a seed shows in full (the rest are counted).
pub const MAX_EXAMPLES_PER_INVARIANT: usize = 3;
/// Operations of the client shown with a violation: the window that shows it.
pub const WINDOW_OPS: usize = 6;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpKind {
    Faucet { amount: u128 },
    Lock { amount: u128 },
    Read { value: Option<u128> },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// Acknowledged: applied (a write) or answered (a read).
    Ok,
    /// Decided and refused by the ledger: not applied.
    Rejected,
    /// Refused before it was proposed: not applied.
    Failed,
    /// No answer in time or an error after it may have been proposed: applied or not.
    Unknown,
}

impl Outcome {
    fn name(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Rejected => "rejected",
            Outcome::Failed => "failed",
            Outcome::Unknown => "unknown",
        }
    }
}

/// One operation of the history, with its invocation and completion (virtual ms and a logical
/// sequence of events).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Op {
    pub client: usize,
    pub kind: OpKind,
    pub outcome: Outcome,
    pub invoked: u64,
    pub completed: u64,
    pub invoked_ms: u64,
    pub completed_ms: u64,
    /// The ledger height an acknowledged write reached.
    pub height: u64,
}

/// Folds `value` into a running digest.
pub fn mix(state: u64, value: &impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    state.hash(&mut hasher);
    value.hash(&mut hasher);
    hasher.finish()
}

pub struct Checker {
    clients: Vec<ParticipantId>,
    events: u64,
    ops: Vec<Op>,
    /// By client: the sum of acknowledged faucet writes, and of acknowledged and unknown ones.
    acknowledged: Vec<u128>,
    possible: Vec<u128>,
    last_read: Vec<u128>,
    highest_acknowledged_height: u64,
    /// The root every replica seen at a height had, with the first node seen there.
    roots: BTreeMap<u64, ([u8; 32], u64)>,
    /// By node: the height its ledger invariants were last checked at, and each client's nonce.
    checked_height: BTreeMap<u64, u64>,
    nonces: BTreeMap<u64, Vec<u64>>,
    /// By invariant: the first violations in full, and how many there were.
    violations: BTreeMap<&'static str, (Vec<String>, usize)>,
    fingerprint: u64,
}

impl Checker {
    pub fn new(clients: Vec<ParticipantId>) -> Self {
        let n = clients.len();
        Checker {
            clients,
            events: 0,
            ops: Vec::new(),
            acknowledged: vec![0; n],
            possible: vec![0; n],
            last_read: vec![0; n],
            highest_acknowledged_height: 0,
            roots: BTreeMap::new(),
            checked_height: BTreeMap::new(),
            nonces: BTreeMap::new(),
            violations: BTreeMap::new(),
            fingerprint: 0,
        }
    }

    /// The next event of the history: an operation's invocation.
    pub fn invoke(&mut self) -> u64 {
        self.events += 1;
        self.events
    }

    pub fn violation(&mut self, invariant: &'static str, text: String) {
        let (examples, count) = self.violations.entry(invariant).or_default();
        if examples.len() < MAX_EXAMPLES_PER_INVARIANT {
            examples.push(text);
        }
        *count += 1;
    }

    /// Every violation shown, as `invariant: what`, each invariant's count after its examples.
    pub fn violations(&self) -> Vec<String> {
        let mut all = Vec::new();
        for (invariant, (examples, count)) in &self.violations {
            all.extend(examples.iter().map(|text| format!("{invariant}: {text}")));
            if *count > examples.len() {
                all.push(format!("{invariant}: ... {} violations in all", count));
            }
        }
        all
    }

    /// The last operations of `client`: the window a violation shows.
    fn window(&self, client: usize) -> String {
        let mut last: Vec<&Op> = self.ops.iter().rev().filter(|o| o.client == client).take(WINDOW_OPS).collect();
        last.reverse();
        last.iter()
            .map(|o| {
                format!(
                    "\n    client {} {:?} {} [{} ms .. {} ms]",
                    o.client,
                    o.kind,
                    o.outcome.name(),
                    o.invoked_ms,
                    o.completed_ms
                )
            })
            .collect()
    }

    /// Records a completed operation and checks a read against the writes before it.
    pub fn complete(&mut self, mut op: Op) {
        self.events += 1;
        op.completed = self.events;
        let c = op.client;
        match (op.kind, op.outcome) {
            (OpKind::Faucet { amount }, Outcome::Ok) => {
                self.acknowledged[c] += amount;
                self.possible[c] += amount;
                self.highest_acknowledged_height = self.highest_acknowledged_height.max(op.height);
            }
            (OpKind::Faucet { amount }, Outcome::Unknown) => self.possible[c] += amount,
            (OpKind::Lock { .. }, Outcome::Ok) => {
                self.highest_acknowledged_height = self.highest_acknowledged_height.max(op.height)
            }
            _ => {}
        }
        self.ops.push(op);
        self.fingerprint = mix(self.fingerprint, &op);
        if let (OpKind::Read { value: Some(value) }, Outcome::Ok) = (op.kind, op.outcome) {
            // A client runs one operation at a time: every earlier one had completed when the
            // read began.
            let (low, high, before) = (self.acknowledged[c], self.possible[c], self.last_read[c]);
            if value < low || value > high || value < before {
                let window = self.window(c);
                self.violation(
                    "reads_linearizable",
                    format!(
                        "client {c} read holdings {value}, but writes acknowledged before the \
                     read make at least {low}, all writes at most {high}, and its previous read saw {before}:{window}"
                    ),
                );
            }
            self.last_read[c] = value;
        }
    }

    /// A replica starts again: after a power cut it may come back behind what it had applied
    /// (it re-applies its durable log), so its nonces are watched afresh; its roots must still
    /// agree with every other replica's at each height.
    pub fn forget_replica(&mut self, node: u64) {
        self.nonces.remove(&node);
        self.checked_height.remove(&node);
    }

    /// Checks one replica as it stands now.
    pub fn observe_replica(&mut self, node: u64, at_ms: u64, ledger: &Ledger) {
        match self.roots.get(&ledger.height) {
            Some((root, first)) if *root != ledger.root => {
                let text = format!(
                    "at height {} node {node} has root {} but node {first} had {} (at {at_ms} ms)",
                    ledger.height,
                    hex(&ledger.root),
                    hex(root)
                );
                self.violation("replicas_agree", text);
            }
            Some(_) => {}
            None => {
                self.roots.insert(ledger.height, (ledger.root, node));
            }
        }
        let now: Vec<u64> = self.clients.iter().map(|id| ledger.nonces.get(id).copied().unwrap_or(0)).collect();
        if let Some(before) = self.nonces.get(&node).cloned() {
            for (c, (was, is)) in before.iter().zip(&now).enumerate() {
                if is < was {
                    let window = self.window(c);
                    self.violation(
                        "nonces_increase",
                        format!(
                            "node {node}'s nonce of client {c} went from {was} back to {is} \
                         (at {at_ms} ms, height {}):{window}",
                            ledger.height
                        ),
                    );
                }
            }
        }
        self.nonces.insert(node, now);
        if self.checked_height.get(&node) != Some(&ledger.height) {
            self.checked_height.insert(node, ledger.height);
            if let Err(broken) = ledger.check_invariants() {
                self.violation(
                    "ledger_invariants",
                    format!("node {node} at height {} (at {at_ms} ms): {broken}", ledger.height),
                );
            }
        }
    }

    /// Checks a final replica: every acknowledged write is in it, and nothing never written.
    pub fn check_final(&mut self, node: u64, ledger: &Ledger) {
        self.observe_replica(node, u64::MAX, ledger);
        for c in 0..self.clients.len() {
            let held = crate::world::holdings(ledger, &self.clients[c]);
            let (low, high) = (self.acknowledged[c], self.possible[c]);
            if held < low || held > high {
                let window = self.window(c);
                self.violation(
                    "acknowledged_writes_kept",
                    format!(
                        "node {node} holds {held} for client {c}, but its acknowledged \
                     writes make {low} and all its writes at most {high}:{window}"
                    ),
                );
            }
        }
        self.fingerprint = mix(self.fingerprint, &(node, ledger.height, ledger.root));
    }

    pub fn highest_acknowledged_height(&self) -> u64 {
        self.highest_acknowledged_height
    }

    pub fn fingerprint(&self) -> u64 {
        self.fingerprint
    }

    /// Operations by kind of outcome.
    pub fn counts(&self) -> BTreeMap<&'static str, u64> {
        let mut counts = BTreeMap::new();
        for op in &self.ops {
            *counts.entry(op.outcome.name()).or_default() += 1;
        }
        counts
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(kind: OpKind, outcome: Outcome) -> Op {
        Op { client: 0, kind, outcome, invoked: 0, completed: 0, invoked_ms: 0, completed_ms: 0, height: 1 }
    }

    fn checker() -> Checker {
        Checker::new(vec![ParticipantId([7; 32])])
    }

    #[test]
    fn a_stale_read_is_caught_and_a_fresh_one_is_not() {
        let mut checker = checker();
        checker.complete(op(OpKind::Faucet { amount: 5 }, Outcome::Ok));
        checker.complete(op(OpKind::Read { value: Some(5) }, Outcome::Ok));
        assert!(checker.violations().is_empty(), "{:?}", checker.violations());
        checker.complete(op(OpKind::Faucet { amount: 7 }, Outcome::Ok));
        checker.complete(op(OpKind::Read { value: Some(5) }, Outcome::Ok));
        let found = checker.violations();
        assert_eq!(found.len(), 1, "{found:?}");
        assert!(found[0].starts_with("reads_linearizable") && found[0].contains("at least 12"), "{found:?}");
    }

    #[test]
    fn an_unknown_write_may_show_once_but_never_vanish_again() {
        let mut checker = checker();
        checker.complete(op(OpKind::Faucet { amount: 5 }, Outcome::Unknown));
        checker.complete(op(OpKind::Read { value: Some(0) }, Outcome::Ok));
        checker.complete(op(OpKind::Read { value: Some(5) }, Outcome::Ok));
        assert!(checker.violations().is_empty(), "{:?}", checker.violations());
        checker.complete(op(OpKind::Read { value: Some(0) }, Outcome::Ok));
        assert_eq!(checker.violations().len(), 1, "a write seen and then unseen");
        checker.complete(op(OpKind::Read { value: Some(9) }, Outcome::Ok));
        assert_eq!(checker.violations().len(), 2, "a value no write makes");
    }

    #[test]
    fn a_lost_acknowledged_write_and_diverging_replicas_are_caught() {
        let mut checker = checker();
        checker.complete(op(OpKind::Faucet { amount: 5 }, Outcome::Ok));
        let empty = Ledger::new(crate::world::genesis(3, 1)).unwrap();
        checker.check_final(0, &empty);
        let found = checker.violations();
        assert!(found.iter().any(|v| v.starts_with("acknowledged_writes_kept") && v.contains("holds 0")), "{found:?}");
        let mut other = empty.clone();
        other.root = [9; 32];
        checker.observe_replica(1, 0, &other);
        assert!(checker.violations().iter().any(|v| v.starts_with("replicas_agree")), "{:?}", checker.violations());
    }
}
