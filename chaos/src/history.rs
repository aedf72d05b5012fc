//! The history of a run, as Jepsen keeps one: every operation with the client that made it,
//! when it was invoked and when it completed (milliseconds since the run started), and its
//! outcome. `ok` and `failed` are certain (a write that failed changed nothing); `unknown` is a
//! write whose fate the client could not learn, which the checker may count either way.

use serde::{Deserialize, Serialize};
use std::sync::Mutex;
use std::time::Instant;

/// What one operation was.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpKind {
    /// A dev-faucet credit of `amount` to the client's own account.
    Faucet,
    /// Locking `amount` of the free balance as stake.
    Lock,
    /// Unlocking `amount` of locked stake.
    Unlock,
    /// A linearizable read of the client's own account, or of another client's.
    Read,
}

impl OpKind {
    pub fn is_write(self) -> bool {
        self != OpKind::Read
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Ok,
    Failed,
    Unknown,
}

/// An account as a read saw it, native asset, base units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountState {
    #[serde(with = "decimal")]
    pub balance: u128,
    #[serde(with = "decimal")]
    pub locked: u128,
    pub last_nonce: u64,
}

/// One operation.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Op {
    /// The client (0-based) that made it; each client makes one operation at a time.
    pub client: usize,
    pub kind: OpKind,
    /// Base units, for writes.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "decimal_option")]
    pub amount: Option<u128>,
    /// The nonce a write was signed with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nonce: Option<u64>,
    pub invoke_ms: u64,
    pub complete_ms: u64,
    pub outcome: Outcome,
    /// A refusal's or rejection's code, or what made the outcome unknown.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// What a read saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read: Option<AccountState>,
    /// For a read of another client's account, that client; absent for a client's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account_of: Option<usize>,
}

/// The run's clock (milliseconds since it started) and the operations recorded so far.
pub struct History {
    started: Instant,
    ops: Mutex<Vec<Op>>,
}

impl History {
    pub fn new() -> Self {
        History { started: Instant::now(), ops: Mutex::new(Vec::new()) }
    }

    /// Milliseconds since the run started.
    pub fn now_ms(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn record(&self, op: Op) {
        self.ops.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(op);
    }

    /// The operations, ordered by completion.
    pub fn into_ops(self) -> Vec<Op> {
        let mut ops = self.ops.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner);
        ops.sort_by_key(|op| (op.complete_ms, op.invoke_ms));
        ops
    }
}

impl Default for History {
    fn default() -> Self {
        History::new()
    }
}

/// Amounts as decimal strings, as the API writes them (JSON numbers lose precision past 2^53).
mod decimal {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&value.to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

mod decimal_option {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<u128>, s: S) -> Result<S::Ok, S::Error> {
        match value {
            Some(v) => s.serialize_str(&v.to_string()),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u128>, D::Error> {
        Option::<String>::deserialize(d)?.map(|v| v.parse().map_err(serde::de::Error::custom)).transpose()
    }
}
