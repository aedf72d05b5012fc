//! The verdicts over a run's history and the cluster's final state.
//!
//! Each client's account has one writer (the client, one operation at a time), so its history
//! is a sequence. A write's nonce says where it lands: the ledger accepts an envelope only with
//! a nonce above the account's last one (SPEC 3), so the entries applied to an account are a
//! set of writes with distinct nonces, the largest being the account's `last_nonce`. A state
//! (read or final) is *explained* when some such set holds every acknowledged write before it
//! and any of the writes whose outcome is unknown, and sums to exactly its balance and stake.
//!
//! - `acknowledged_writes_kept`: the final state of every account is explained by its whole
//!   history.
//! - `reads_linearizable`: every successful read of a client's own account is explained by the
//!   writes before it, and reads never go back (a later read sees at least the writes an earlier
//!   one saw); a read of another client's account shows every write its owner had acknowledged
//!   before the read began, and may show those the owner invoked before it ended.
//! - `nonces_increase`: a client's acknowledged writes have strictly increasing nonces.
//! - `replicas_agree`: at the end every node holds the same height and root, and nodes that
//!   hold a certificate of the same height hold it over the same root.
//! - `ledger_invariants`: at the end every node's ledger passes its own invariants (its
//!   `/v1/ledger/audit`): tokens conserved, orders, passes and miners consistent, each closed
//!   epoch paying out exactly its reward.
//! - `no_panics`: no node's log reports a panic.

use crate::history::{AccountState, Op, OpKind, Outcome};
use deai_api::views::{LedgerAudit, NodeStatus};
use serde::Serialize;
use std::collections::BTreeMap;

/// Most combinations of unknown writes one state is tried against; a state that needs more is
/// counted as undecided, not as a violation.
pub const MAX_COMBINATIONS: u64 = 1 << 16;
/// Most operations a violation's window shows.
pub const MAX_WINDOW_OPS: usize = 40;

/// One invariant's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    pub name: &'static str,
    pub valid: bool,
    /// How many things were checked (states, reads, writes, nodes, log files).
    pub checked: u64,
    /// What was wrong, or notes on what could not be decided.
    pub detail: String,
    /// The operations that show a violation: the client's history from its last explained
    /// state up to the one that is not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub window: Vec<Op>,
}

/// What the cluster held at the end.
pub struct FinalState {
    /// Each client's account, as a linearizable read after the faults ended saw it; `None` if
    /// that read failed.
    pub accounts: Vec<Option<AccountState>>,
    /// Each node's status after the cluster settled; `None` if it did not answer.
    pub nodes: Vec<Option<NodeStatus>>,
    /// Log lines that report a panic.
    pub panics: Vec<String>,
    /// Each node's ledger against its own invariants after the cluster settled; `None` if it
    /// did not answer.
    pub audits: Vec<Option<LedgerAudit>>,
}

/// Whether a state is explained by the writes before it.
#[derive(Debug, PartialEq, Eq)]
pub enum Explained {
    Yes,
    /// Too many combinations of unknown writes to try.
    Undecided,
    No(String),
}

/// One client's writes so far, summed as they come, so that each state is checked in time
/// proportional to the unknown writes only (a run has tens of thousands of acknowledged ones).
#[derive(Default)]
pub struct Writes<'a> {
    /// Acknowledged writes by nonce.
    forced: BTreeMap<u64, &'a Op>,
    total: i128,
    locked: i128,
    /// Writes of unknown outcome, in order.
    unknown: Vec<&'a Op>,
    /// A second acknowledged write with a nonce already taken, if one came.
    duplicate: Option<u64>,
}

/// A write's effect on (free plus locked, locked).
fn effect(op: &Op) -> (i128, i128) {
    let amount = op.amount.and_then(|a| i128::try_from(a).ok()).unwrap_or(0);
    match op.kind {
        OpKind::Faucet => (amount, 0),
        OpKind::Lock => (0, amount),
        OpKind::Unlock => (0, -amount),
        OpKind::Read => (0, 0),
    }
}

impl<'a> Writes<'a> {
    pub fn add(&mut self, op: &'a Op) {
        let Some(nonce) = op.nonce else { return };
        match op.outcome {
            Outcome::Ok => {
                if self.forced.insert(nonce, op).is_some() {
                    self.duplicate.get_or_insert(nonce);
                }
                let (total, locked) = effect(op);
                self.total += total;
                self.locked += locked;
            }
            Outcome::Unknown => self.unknown.push(op),
            Outcome::Failed => {}
        }
    }

    /// Whether `target` is these acknowledged writes plus some of the unknown ones, each nonce
    /// applied at most once, the largest being `target.last_nonce`.
    pub fn explain(&self, target: &AccountState) -> Explained {
        self.explain_with(target, &[])
    }

    /// [`explain`](Self::explain), with `also` (acknowledged or not) counted as writes that may
    /// or may not have been applied, as unknown ones are.
    pub fn explain_with(&self, target: &AccountState, also: &[&Op]) -> Explained {
        if let Some(nonce) = self.duplicate {
            return Explained::No(format!("two acknowledged writes carry nonce {nonce}"));
        }
        if let Some((nonce, op)) = self.forced.range(target.last_nonce + 1..).next() {
            return Explained::No(format!(
                "an acknowledged {:?} with nonce {nonce} is missing: the account's last nonce is {}",
                op.kind, target.last_nonce
            ));
        }
        let mut open: BTreeMap<u64, Vec<&Op>> = BTreeMap::new();
        for op in self.unknown.iter().chain(also) {
            match op.nonce {
                Some(nonce) if nonce <= target.last_nonce && !self.forced.contains_key(&nonce) => {
                    open.entry(nonce).or_default().push(op)
                }
                _ => {}
            }
        }
        let combinations = open.values().try_fold(1u64, |n, group| n.checked_mul(group.len() as u64 + 1));
        if combinations.is_none_or(|n| n > MAX_COMBINATIONS) {
            return Explained::Undecided;
        }
        let held = i128::try_from(target.balance.saturating_add(target.locked)).unwrap_or(i128::MAX);
        let locked = i128::try_from(target.locked).unwrap_or(i128::MAX);
        let forced_max = self.forced.keys().next_back().copied().unwrap_or(0);
        let groups: Vec<&Vec<&Op>> = open.values().collect();
        let mut choice = vec![0usize; groups.len()];
        loop {
            let (mut sum_total, mut sum_locked, mut max_nonce) = (self.total, self.locked, forced_max);
            for (group, &c) in groups.iter().zip(&choice) {
                if c > 0 {
                    let (total, locked) = effect(group[c - 1]);
                    sum_total += total;
                    sum_locked += locked;
                    max_nonce = max_nonce.max(group[c - 1].nonce.unwrap_or(0));
                }
            }
            if sum_total == held && sum_locked == locked && max_nonce == target.last_nonce {
                return Explained::Yes;
            }
            // The next combination, as an odometer with group i's digit in 0..=len.
            let mut i = 0;
            loop {
                if i == groups.len() {
                    return Explained::No(format!(
                        "no set of the acknowledged writes ({}) and any of the unknown ones sums to balance {}, locked {}, last nonce {}",
                        self.forced.len(),
                        target.balance,
                        target.locked,
                        target.last_nonce
                    ));
                }
                choice[i] += 1;
                if choice[i] <= groups[i].len() {
                    break;
                }
                choice[i] = 0;
                i += 1;
            }
        }
    }
}

/// Checks every invariant.
pub fn check(ops: &[Op], clients: usize, end: &FinalState) -> Vec<Verdict> {
    let mut by_client: Vec<Vec<&Op>> = vec![Vec::new(); clients];
    for op in ops {
        if let Some(list) = by_client.get_mut(op.client) {
            list.push(op);
        }
    }
    // Each client's operations in the order it made them.
    by_client.iter_mut().for_each(|list| list.sort_by_key(|op| op.invoke_ms));
    vec![
        acknowledged_writes_kept(&by_client, end),
        reads_linearizable(&by_client),
        nonces_increase(&by_client),
        replicas_agree(&end.nodes),
        ledger_invariants(&end.audits),
        no_panics(&end.panics),
    ]
}

fn window(history: &[&Op], from: usize, to: usize) -> Vec<Op> {
    let from = from.max(to.saturating_sub(MAX_WINDOW_OPS - 1));
    history[from..=to.min(history.len().saturating_sub(1))].iter().map(|op| (*op).clone()).collect()
}

fn acknowledged_writes_kept(by_client: &[Vec<&Op>], end: &FinalState) -> Verdict {
    let mut verdict =
        Verdict { name: "acknowledged_writes_kept", valid: true, checked: 0, detail: String::new(), window: vec![] };
    let mut undecided = 0;
    for (client, history) in by_client.iter().enumerate() {
        let mut writes = Writes::default();
        history.iter().for_each(|op| writes.add(op));
        let Some(Some(last)) = end.accounts.get(client) else {
            verdict.valid = false;
            verdict.detail = format!("client {client}'s account could not be read at the end");
            return verdict;
        };
        verdict.checked += 1;
        match writes.explain(last) {
            Explained::Yes => {}
            Explained::Undecided => undecided += 1,
            Explained::No(why) => {
                verdict.valid = false;
                verdict.detail = format!("client {client}'s final account {last:?}: {why}");
                verdict.window = window(history, 0, history.len().saturating_sub(1));
                return verdict;
            }
        }
    }
    if undecided > 0 {
        verdict.detail = format!("{undecided} accounts had too many unknown writes to decide");
    }
    verdict
}

fn reads_linearizable(by_client: &[Vec<&Op>]) -> Verdict {
    let mut verdict =
        Verdict { name: "reads_linearizable", valid: true, checked: 0, detail: String::new(), window: vec![] };
    let mut undecided = 0;
    for (client, history) in by_client.iter().enumerate() {
        let mut previous: Option<(usize, AccountState)> = None;
        let mut before = Writes::default();
        for (k, op) in history.iter().enumerate() {
            let (OpKind::Read, Outcome::Ok, Some(seen), None) = (op.kind, op.outcome, op.read, op.account_of) else {
                before.add(op);
                continue;
            };
            verdict.checked += 1;
            let went_back = previous.filter(|(_, earlier)| {
                earlier.last_nonce > seen.last_nonce || (earlier.last_nonce == seen.last_nonce && *earlier != seen)
            });
            let failure = match (went_back, before.explain(&seen)) {
                (Some((_, earlier)), _) => Some(format!("a read saw {seen:?} after an earlier read saw {earlier:?}")),
                (None, Explained::No(why)) => Some(why),
                (None, Explained::Undecided) => {
                    undecided += 1;
                    None
                }
                (None, Explained::Yes) => None,
            };
            if let Some(why) = failure {
                verdict.valid = false;
                verdict.detail = format!("client {client}, read at {} ms: {why}", op.invoke_ms);
                verdict.window = window(history, previous.map_or(0, |(i, _)| i), k);
                return verdict;
            }
            previous = Some((k, seen));
        }
    }
    if let Some(failure) = reads_of_others(by_client, &mut verdict.checked, &mut undecided) {
        verdict.valid = false;
        (verdict.detail, verdict.window) = failure;
        return verdict;
    }
    if undecided > 0 {
        verdict.detail = format!("{undecided} reads had too many unknown writes before them to decide");
    }
    verdict
}

/// Reads of another client's account, concurrent with its owner's writes: each must show every
/// write of the owner acknowledged before the read was invoked, and may show any the owner
/// invoked before the read completed (acknowledged later, or of unknown fate). A replica that
/// answered a linearizable read from a stale ledger fails it.
fn reads_of_others(by_client: &[Vec<&Op>], checked: &mut u64, undecided: &mut u64) -> Option<(String, Vec<Op>)> {
    let mut reads: Vec<Vec<&Op>> = vec![Vec::new(); by_client.len()];
    for op in by_client.iter().flatten() {
        if let (OpKind::Read, Outcome::Ok, Some(_), Some(owner)) = (op.kind, op.outcome, op.read, op.account_of) {
            if let Some(list) = reads.get_mut(owner) {
                list.push(op);
            }
        }
    }
    for (owner, mut reads) in reads.into_iter().enumerate() {
        reads.sort_by_key(|op| op.invoke_ms);
        let mut writes: Vec<&Op> =
            by_client[owner].iter().copied().filter(|op| op.kind.is_write() && op.outcome != Outcome::Failed).collect();
        writes.sort_by_key(|op| op.complete_ms);
        let (mut settled, mut next) = (Writes::default(), 0);
        for read in reads {
            let Some(seen) = read.read else { continue };
            *checked += 1;
            // Writes done before the read began count as they ended; the others may or may not.
            while next < writes.len() && writes[next].complete_ms < read.invoke_ms {
                settled.add(writes[next]);
                next += 1;
            }
            let concurrent: Vec<&Op> =
                writes[next..].iter().copied().filter(|w| w.invoke_ms < read.complete_ms).collect();
            match settled.explain_with(&seen, &concurrent) {
                Explained::Yes => {}
                Explained::Undecided => *undecided += 1,
                Explained::No(why) => {
                    let detail =
                        format!("client {} read client {owner}'s account at {} ms: {why}", read.client, read.invoke_ms);
                    let mut window: Vec<Op> = by_client[owner]
                        .iter()
                        .filter(|op| {
                            op.kind.is_write()
                                && op.complete_ms + 1_000 >= read.invoke_ms
                                && op.invoke_ms <= read.complete_ms
                        })
                        .map(|op| (*op).clone())
                        .collect();
                    window.push(read.clone());
                    return Some((detail, window));
                }
            }
        }
    }
    None
}

fn nonces_increase(by_client: &[Vec<&Op>]) -> Verdict {
    let mut verdict =
        Verdict { name: "nonces_increase", valid: true, checked: 0, detail: String::new(), window: vec![] };
    for (client, history) in by_client.iter().enumerate() {
        let mut last: Option<(usize, u64)> = None;
        for (k, op) in history.iter().enumerate() {
            let (true, Outcome::Ok, Some(nonce)) = (op.kind.is_write(), op.outcome, op.nonce) else { continue };
            verdict.checked += 1;
            if let Some((at, before)) = last.filter(|(_, before)| *before >= nonce) {
                verdict.valid = false;
                verdict.detail =
                    format!("client {client}: an acknowledged write with nonce {nonce} after one with {before}");
                verdict.window = window(history, at, k);
                return verdict;
            }
            last = Some((k, nonce));
        }
    }
    verdict
}

fn replicas_agree(nodes: &[Option<NodeStatus>]) -> Verdict {
    let mut verdict =
        Verdict { name: "replicas_agree", valid: true, checked: 0, detail: String::new(), window: vec![] };
    let answered: Vec<&NodeStatus> = nodes.iter().flatten().collect();
    verdict.checked = answered.len() as u64;
    if answered.len() < nodes.len() {
        verdict.valid = false;
        verdict.detail = format!("{} of {} nodes did not answer at the end", nodes.len() - answered.len(), nodes.len());
        return verdict;
    }
    let heads: Vec<(u64, u64, &str)> =
        answered.iter().map(|s| (s.id, s.ledger_height, s.ledger_root.as_str())).collect();
    if heads.windows(2).any(|w| w[0].1 != w[1].1 || w[0].2 != w[1].2) {
        verdict.valid = false;
        verdict.detail = format!("nodes disagree at the end (id, height, root): {heads:?}");
        return verdict;
    }
    let mut certified: BTreeMap<u64, (u64, &str)> = BTreeMap::new();
    for status in &answered {
        let Some(cert) = &status.last_certificate else { continue };
        match certified.get(&cert.height) {
            Some((other, root)) if *root != cert.root => {
                verdict.valid = false;
                verdict.detail = format!(
                    "nodes {other} and {} hold certificates of height {} over different roots",
                    status.id, cert.height
                );
                return verdict;
            }
            _ => {
                certified.insert(cert.height, (status.id, cert.root.as_str()));
            }
        }
    }
    verdict.detail = format!("height {} on every node", heads.first().map_or(0, |h| h.1));
    verdict
}

/// Every node's final ledger passes the ledger's own invariants: tokens conserved, orders,
/// passes and miners consistent, each closed epoch paying out exactly its reward.
fn ledger_invariants(audits: &[Option<LedgerAudit>]) -> Verdict {
    let mut verdict =
        Verdict { name: "ledger_invariants", valid: true, checked: 0, detail: String::new(), window: vec![] };
    for (i, audit) in audits.iter().enumerate() {
        match audit {
            None => {
                verdict.valid = false;
                verdict.detail = format!("node index {i} did not answer its audit");
            }
            Some(audit) if !audit.holds => {
                verdict.valid = false;
                verdict.detail = format!(
                    "node index {i} at height {}: {}",
                    audit.height,
                    audit.broken.as_deref().unwrap_or("an invariant does not hold")
                );
            }
            Some(_) => verdict.checked += 1,
        }
    }
    verdict
}

fn no_panics(panics: &[String]) -> Verdict {
    Verdict {
        name: "no_panics",
        valid: panics.is_empty(),
        checked: 1,
        detail: panics.iter().take(3).cloned().collect::<Vec<_>>().join("\n"),
        window: vec![],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(kind: OpKind, amount: u128, nonce: u64, outcome: Outcome, at: u64) -> Op {
        Op {
            client: 0,
            kind,
            amount: Some(amount),
            nonce: Some(nonce),
            invoke_ms: at,
            complete_ms: at + 1,
            outcome,
            error: None,
            read: None,
            account_of: None,
        }
    }

    fn read(balance: u128, locked: u128, last_nonce: u64, at: u64) -> Op {
        Op {
            client: 0,
            kind: OpKind::Read,
            amount: None,
            nonce: None,
            invoke_ms: at,
            complete_ms: at + 1,
            outcome: Outcome::Ok,
            error: None,
            read: Some(AccountState { balance, locked, last_nonce }),
            account_of: None,
        }
    }

    /// Client 1's read of client 0's account.
    fn foreign_read(balance: u128, last_nonce: u64, invoke_ms: u64, complete_ms: u64) -> Op {
        Op { client: 1, invoke_ms, complete_ms, account_of: Some(0), ..read(balance, 0, last_nonce, invoke_ms) }
    }

    fn foreign_verdict(ops: &[Op], last: AccountState) -> Verdict {
        let end = FinalState {
            accounts: vec![Some(last), Some(AccountState { balance: 0, locked: 0, last_nonce: 0 })],
            nodes: vec![],
            panics: vec![],
            audits: vec![],
        };
        check(ops, 2, &end).into_iter().find(|v| v.name == "reads_linearizable").expect("the verdict")
    }

    #[test]
    fn a_read_of_another_account_may_see_a_concurrent_write_either_way() {
        let ops = [
            write(OpKind::Faucet, 100, 1, Outcome::Ok, 0),
            write(OpKind::Faucet, 5, 2, Outcome::Ok, 20),
            foreign_read(100, 1, 15, 30),
            foreign_read(105, 2, 16, 30),
            foreign_read(105, 2, 40, 45),
        ];
        let v = foreign_verdict(&ops, AccountState { balance: 105, locked: 0, last_nonce: 2 });
        assert!(v.valid && v.checked == 3, "{v:#?}");
    }

    #[test]
    fn a_stale_read_of_another_account_is_caught() {
        let ops = [
            write(OpKind::Faucet, 100, 1, Outcome::Ok, 0),
            write(OpKind::Faucet, 5, 2, Outcome::Ok, 10),
            // Invoked after the second write was acknowledged, yet without it.
            foreign_read(100, 1, 30, 35),
        ];
        let v = foreign_verdict(&ops, AccountState { balance: 105, locked: 0, last_nonce: 2 });
        assert!(!v.valid && v.detail.contains("read client 0's account"), "{v:#?}");
        assert_eq!(v.window.last().map(|op| op.client), Some(1));
    }

    fn verdicts(ops: &[Op], last: AccountState) -> BTreeMap<&'static str, Verdict> {
        let end = FinalState { accounts: vec![Some(last)], nodes: vec![], panics: vec![], audits: vec![] };
        check(ops, 1, &end).into_iter().map(|v| (v.name, v)).collect()
    }

    #[test]
    fn a_history_that_adds_up_is_valid() {
        let ops = [
            write(OpKind::Faucet, 100, 1, Outcome::Ok, 0),
            write(OpKind::Lock, 30, 2, Outcome::Ok, 10),
            read(70, 30, 2, 20),
            write(OpKind::Faucet, 5, 3, Outcome::Unknown, 30),
            write(OpKind::Unlock, 10, 3, Outcome::Ok, 40),
            read(80, 20, 3, 50),
        ];
        let v = verdicts(&ops, AccountState { balance: 80, locked: 20, last_nonce: 3 });
        assert!(v.values().all(|v| v.valid), "{v:#?}");
    }

    #[test]
    fn an_unknown_write_may_count_either_way() {
        let ops = [write(OpKind::Faucet, 100, 1, Outcome::Ok, 0), write(OpKind::Faucet, 7, 2, Outcome::Unknown, 10)];
        for last in [
            AccountState { balance: 100, locked: 0, last_nonce: 1 },
            AccountState { balance: 107, locked: 0, last_nonce: 2 },
        ] {
            assert!(verdicts(&ops, last)["acknowledged_writes_kept"].valid, "{last:?}");
        }
    }

    #[test]
    fn a_lost_acknowledged_write_is_caught() {
        let ops = [write(OpKind::Faucet, 100, 1, Outcome::Ok, 0), write(OpKind::Faucet, 7, 2, Outcome::Ok, 10)];
        let v = &verdicts(&ops, AccountState { balance: 100, locked: 0, last_nonce: 1 })["acknowledged_writes_kept"];
        assert!(!v.valid && v.detail.contains("nonce 2 is missing"), "{v:#?}");
        assert_eq!(v.window.len(), 2);
    }

    #[test]
    fn a_failed_write_that_took_effect_is_caught() {
        let ops = [write(OpKind::Faucet, 100, 1, Outcome::Ok, 0), write(OpKind::Faucet, 7, 2, Outcome::Failed, 10)];
        let v = &verdicts(&ops, AccountState { balance: 107, locked: 0, last_nonce: 2 })["acknowledged_writes_kept"];
        assert!(!v.valid, "{v:#?}");
    }

    #[test]
    fn a_stale_read_is_caught() {
        let ops = [
            write(OpKind::Faucet, 100, 1, Outcome::Ok, 0),
            write(OpKind::Faucet, 50, 2, Outcome::Ok, 10),
            read(100, 0, 1, 20),
        ];
        let v = &verdicts(&ops, AccountState { balance: 150, locked: 0, last_nonce: 2 })["reads_linearizable"];
        assert!(!v.valid && v.detail.contains("missing"), "{v:#?}");
        assert_eq!(v.window.last().and_then(|op| op.read).map(|r| r.last_nonce), Some(1));
    }

    #[test]
    fn a_read_that_goes_back_is_caught() {
        let ops = [
            write(OpKind::Faucet, 100, 1, Outcome::Ok, 0),
            write(OpKind::Faucet, 50, 2, Outcome::Unknown, 10),
            read(150, 0, 2, 20),
            read(100, 0, 1, 30),
        ];
        let v = &verdicts(&ops, AccountState { balance: 150, locked: 0, last_nonce: 2 })["reads_linearizable"];
        assert!(!v.valid && v.detail.contains("earlier read"), "{v:#?}");
    }

    #[test]
    fn nonces_that_do_not_increase_are_caught() {
        let ops = [write(OpKind::Faucet, 100, 2, Outcome::Ok, 0), write(OpKind::Faucet, 50, 1, Outcome::Ok, 10)];
        let v = &verdicts(&ops, AccountState { balance: 150, locked: 0, last_nonce: 2 })["nonces_increase"];
        assert!(!v.valid, "{v:#?}");
    }

    #[test]
    fn replicas_that_disagree_are_caught() {
        let status = |id: u64, root: &str| NodeStatus {
            id,
            state: "follower".into(),
            leader: Some(0),
            term: 1,
            voters: BTreeMap::new(),
            learners: BTreeMap::new(),
            commit_index: 9,
            applied_index: 9,
            last_log_index: 9,
            snapshot_index: None,
            ledger_height: 9,
            ledger_root: root.into(),
            last_certificate: None,
            not_ready: None,
        };
        let audit = |holds: bool| LedgerAudit {
            height: 9,
            root: "aa".into(),
            holds,
            broken: (!holds).then(|| "asset 0: held 1, deposits 2".to_string()),
            closed_epochs: 0,
        };
        assert!(ledger_invariants(&[Some(audit(true)), Some(audit(true))]).valid);
        let broken = ledger_invariants(&[Some(audit(true)), Some(audit(false))]);
        assert!(!broken.valid && broken.detail.contains("held 1"), "{}", broken.detail);
        assert!(!ledger_invariants(&[Some(audit(true)), None]).valid, "a node that does not answer fails it");
        assert!(replicas_agree(&[Some(status(0, "aa")), Some(status(1, "aa"))]).valid);
        assert!(!replicas_agree(&[Some(status(0, "aa")), Some(status(1, "bb"))]).valid);
        assert!(!replicas_agree(&[Some(status(0, "aa")), None]).valid);
    }
}
