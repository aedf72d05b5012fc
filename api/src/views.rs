//! The JSON bodies of `/v1`: what coordinators answer and what they read. Amounts are decimal
//! strings of base units (they are 128-bit); ids, hashes and payloads are hex.

use crate::codes::Code;
use serde::{Deserialize, Serialize};

#[cfg(feature = "openapi")]
use utoipa::{IntoParams, ToSchema};

/// An error as the API shows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ErrorBody {
    pub code: Code,
    pub message: String,
    /// For `not_leader`: the Raft id of the leader, when this node knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader: Option<u64>,
    /// For `frozen`: when the freeze ends (ledger time, ms since the Unix epoch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until_ms: Option<u64>,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AdminDone {
    pub done: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct LearnerBody {
    pub id: u64,
    pub raft_addr: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct IdBody {
    pub id: u64,
}

/// A snapshot takes no parameters.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SnapshotBody {}

/// What a node reports about itself and the cluster.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct NodeStatus {
    pub id: u64,
    /// `leader`, `follower`, `candidate`, `learner` or `shutdown`.
    pub state: String,
    pub leader: Option<u64>,
    pub term: u64,
    /// Raft address by node id (JSON object keys are the ids in decimal).
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::BTreeMap<String, String>))]
    pub voters: std::collections::BTreeMap<u64, String>,
    #[cfg_attr(feature = "openapi", schema(value_type = std::collections::BTreeMap<String, String>))]
    pub learners: std::collections::BTreeMap<u64, String>,
    pub commit_index: u64,
    pub applied_index: u64,
    pub last_log_index: u64,
    pub snapshot_index: Option<u64>,
    pub ledger_height: u64,
    /// Hex of the ledger root.
    pub ledger_root: String,
    pub last_certificate: Option<CertificateStatus>,
    /// Why the node is not ready, if it is not.
    pub not_ready: Option<String>,
}

/// The last quorum certificate (SPEC 6.3) as the status reports it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CertificateStatus {
    pub height: u64,
    pub root: String,
    pub signers: usize,
}

/// What a write returns.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct WriteResult {
    pub log_index: u64,
    pub height: u64,
    pub root: String,
    /// One per entry: `accepted`, or the rejection's code.
    pub outcomes: Vec<String>,
}

/// Envelopes as JSON: each one's codec bytes in hex.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EnvelopesBody {
    /// Each envelope's codec bytes, in hex.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 128))]
    pub envelopes: Vec<String>,
}

/// `linearizable`: confirmed with a quorum (a follower asks the leader how far to read).
/// `stale`: this node's applied state.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ReadConsistency {
    #[default]
    Linearizable,
    Stale,
}

/// How fresh a read must be.
#[derive(Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct HeadQuery {
    /// `linearizable` (the default) or `stale` (this node's own state).
    pub consistency: Option<ReadConsistency>,
}

/// Longest a long poll waits, in milliseconds.
pub const MAX_LONG_POLL_MS: u64 = 30_000;

/// Long polling: answer as soon as there is something to report, or after `wait_ms`.
#[derive(Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct WaitQuery {
    /// Wait up to this long (at most 30000) for the order to be claimed or to end, or for an
    /// assignment to appear, instead of answering at once.
    #[cfg_attr(feature = "openapi", param(maximum = 30000))]
    pub wait_ms: Option<u64>,
}

/// A participant, by public key.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Path))]
pub struct AccountPath {
    /// The participant's ed25519 public key, 64 hex digits.
    #[cfg_attr(feature = "openapi", param(pattern = "^[0-9a-fA-F]{64}$"))]
    pub id: String,
}

/// An order id, by its hex.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Path))]
pub struct OrderPath {
    /// The order id (the hash of the signed `PutOrder` envelope), 64 hex digits.
    #[cfg_attr(feature = "openapi", param(pattern = "^[0-9a-fA-F]{64}$"))]
    pub id: String,
}

/// An epoch number.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Path))]
pub struct EpochPath {
    pub number: u64,
}

/// How long a miner session should last.
#[derive(Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct SessionQuery {
    /// End the session after this long (default 60000, at most 300000); the miner then opens
    /// the next one.
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 300000))]
    pub max_ms: Option<u64>,
}

/// How long a session lasts when the miner does not say, in milliseconds.
pub const DEFAULT_SESSION_MS: u64 = 60_000;

/// The ledger's head as a read returns it.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Head {
    /// The network id every envelope must be signed for.
    pub network_id: String,
    pub height: u64,
    pub root: String,
    pub last_certified_height: Option<u64>,
}

/// The ledger checked against its own invariants (`GET /v1/ledger/audit`): tokens conserved
/// (balances, stakes, escrow, fee pool and collateral equal deposits plus minted minus
/// withdrawals), orders, passes and miners consistent, and every closed epoch paying out exactly
/// its reward or nothing.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct LedgerAudit {
    pub height: u64,
    pub root: String,
    /// Whether every invariant holds.
    pub holds: bool,
    /// The first invariant that does not, when one does not.
    pub broken: Option<String>,
    /// Closed epochs whose payouts were checked.
    pub closed_epochs: u64,
}

/// One account as a read returns it.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AccountView {
    pub id: String,
    /// Native balance, base units.
    pub balance: String,
    /// Native locked stake, base units.
    pub locked: String,
    /// The nonce the account's next entry must exceed.
    pub last_nonce: u64,
    /// Free balance of every asset the account holds (native is asset 0), base units.
    #[serde(default)]
    pub balances: Vec<AssetAmount>,
    /// Locked stake of every asset, base units.
    #[serde(default)]
    pub locked_by_asset: Vec<AssetAmount>,
    /// `s` of SPEC 5.1: native stake plus the governance-priced value of the others, base units.
    #[serde(default)]
    pub effective_stake: String,
    /// The service pass: `none`, `valid`, or `releasing` (stake unlocks when in-flight orders end).
    #[serde(default)]
    pub pass: String,
    /// Ledger time until which free orders are refused (SPEC 5.2); 0 if never frozen.
    #[serde(default)]
    pub frozen_until_ms: u64,
    /// Charged-mode prices held in escrow for open orders (SPEC 5.9), base units.
    #[serde(default)]
    pub escrow: String,
    /// Orders placed and not yet finished.
    #[serde(default)]
    pub in_flight: u32,
}

/// One order as a read returns it.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct OrderView {
    pub id: String,
    pub client: String,
    pub service: String,
    /// `pending`, `allocated`, `completed`, `rated`, `expired`, `failed` or `invalidated`.
    pub status: String,
    pub miner: Option<String>,
    /// Where the assigned miner serves the output.
    pub miner_endpoint: Option<String>,
    pub deadline_ms: u64,
    /// The hash the miner's claim commits to (SPEC 5.8), once claimed.
    pub output_hash: Option<String>,
}

/// An order allocated to a miner and not yet claimed.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct Assignment {
    pub order: String,
    pub client: String,
    pub service: String,
    /// The inline payload in hex (empty for an external payload).
    pub payload: String,
    pub deadline_ms: u64,
    /// Ledger time when the order was put, and when it was allocated.
    pub placed_ms: u64,
    pub allocated_ms: u64,
}

/// One line of a miner session's stream.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct SessionLine {
    /// `assignments`, `heartbeat` or `end`.
    pub kind: String,
    /// For `assignments`: orders newly allocated to the miner (the first line: all it holds).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub assignments: Vec<Assignment>,
    /// For `heartbeat`: this node's ledger height, and its clock.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at_ms: Option<u64>,
    /// For `end`: why (`max_ms`, `replaced`, `shutdown`); the miner opens a new session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A miner as the provider list shows it.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ProviderView {
    pub id: String,
    pub endpoint: String,
    pub services: Vec<String>,
    /// Eligible as far as liveness goes: online by its word and its lease live
    /// (docs/decisions.md, "Miner liveness").
    pub online: bool,
    /// `live`, `lease_lapsed`, `declared` (it said it is offline) or `consecutive_failures`.
    pub liveness: String,
    /// Ledger time of the last entry the miner signed, and when its lease lapses without another.
    pub last_seen_ms: u64,
    pub lease_expires_ms: u64,
    /// Allocated orders it let expire in a row; at the ledger's limit it goes offline.
    pub consecutive_failures: u32,
    /// Reputation in thousandths (SPEC 5.5).
    pub reputation_milli: u32,
    pub in_flight: u32,
    pub capacity: u32,
    /// Each service with the miner's prices (SPEC 5.9).
    #[serde(default)]
    pub offers: Vec<OfferView>,
}

/// A closed reward epoch (SPEC 5.7): the reward, the payouts and their certification.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct EpochView {
    pub number: u64,
    pub start_ms: u64,
    pub end_ms: u64,
    /// Base units, decimal.
    pub reward: String,
    /// `(miner, amount)`, amounts in decimal base units.
    pub payouts: Vec<(String, String)>,
    pub payouts_root: String,
    pub signatures: usize,
    pub certified: bool,
}

/// The error a miner's output endpoint answers with, in the same shape as the coordinators'.
pub type OutputError = ErrorBody;

// --- client reads ---

/// An amount of one asset.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct AssetAmount {
    /// The asset id; the native token is 0.
    pub asset: u32,
    /// Base units, decimal.
    pub amount: String,
}

/// Most orders one `GET /v1/clients/{id}/orders` returns.
pub const MAX_CLIENT_ORDERS_PER_PAGE: usize = 200;

/// Which of a client's orders to list, newest first.
#[derive(Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct ClientOrdersQuery {
    /// Most orders to return (default and maximum 200).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 200))]
    pub limit: Option<usize>,
    /// Only orders placed before this one (the `next_before` of the previous page).
    pub before: Option<String>,
}

/// One of a client's orders, as the list shows it.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ClientOrderView {
    pub id: String,
    pub service: String,
    /// `pending`, `allocated`, `completed`, `rated`, `expired`, `failed` or `invalidated`.
    pub status: String,
    /// `free`, `charged` or `subscription` (SPEC 5.9).
    pub mode: String,
    /// For a charged order: the price offered, base units.
    pub price: Option<String>,
    pub miner: Option<String>,
    /// Ledger time the order was put.
    pub placed_ms: u64,
    /// `good`, `fair` or `bad`, once rated.
    pub rating: Option<String>,
}

/// A page of a client's orders, newest first.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ClientOrdersPage {
    pub orders: Vec<ClientOrderView>,
    /// Pass as `before` for the next (older) page; absent on the last page.
    pub next_before: Option<String>,
}

/// Most closed epochs one `GET /v1/epochs` returns.
pub const MAX_EPOCHS_PER_REQUEST: usize = 100;

/// How many closed epochs to list.
#[derive(Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct EpochsQuery {
    /// Most epochs to return, newest first (default and maximum 100).
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 100))]
    pub limit: Option<usize>,
}

/// One service the ledger knows, and its weight in contributions (SPEC 5.7).
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ServiceView {
    pub name: String,
    pub weight: u32,
}

/// What can be ordered: the ledger's services and the largest prompt an order may carry.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ServiceCatalog {
    pub services: Vec<ServiceView>,
    /// The ledger's `max_inline_payload_bytes`: the largest inline prompt, in bytes.
    pub max_inline_payload_bytes: u32,
}

/// One service a miner offers, with its prices in base units.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct OfferView {
    pub service: String,
    /// The least a charged order that names this miner must offer, base units.
    pub price_per_request: String,
    /// The price of one subscription period, if the miner sells subscriptions.
    pub subscription_price: Option<String>,
}

/// What one miner was paid for one closed epoch (SPEC 5.7), as `deai client payouts` lists it.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct PayoutView {
    pub epoch: u64,
    pub miner: String,
    /// Base units, decimal.
    pub amount: String,
    /// Whether a quorum of coordinators signed the epoch's payouts.
    pub certified: bool,
}

// --- miners and governance ---

/// Closed epochs a miner view looks back over for payouts.
pub const MINER_PAYOUT_EPOCHS: usize = 10;

/// One miner as the ledger holds it (SPEC 4 "node info", 5.10): registration, collateral,
/// offer, liveness, reputation, work and recent payouts.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct MinerView {
    pub id: String,
    /// `active`, `unregistering` (collateral returns once in-flight work ends) or
    /// `unregistered`.
    pub status: String,
    /// Governance ejected it (SPEC 5.11): it gets no work and cannot register again.
    pub ejected: bool,
    /// Locked collateral, base units, decimal (0 once returned).
    pub collateral: String,
    /// Orders it serves at once.
    pub capacity: u32,
    /// Where it serves outputs.
    pub endpoint: String,
    /// Each service with its charged-mode prices (SPEC 5.9).
    pub services: Vec<OfferView>,
    /// Eligible as far as liveness goes (docs/decisions.md, "Miner liveness").
    pub online: bool,
    /// `live`, `lease_lapsed`, `declared` or `consecutive_failures`.
    pub liveness: String,
    pub last_seen_ms: u64,
    pub lease_expires_ms: u64,
    pub consecutive_failures: u32,
    /// Reputation in thousandths of a point, 0 to 100000 (SPEC 5.5).
    pub reputation_milli: u32,
    /// Clients whose latest rating counts, and how many of those are good and bad.
    pub raters: usize,
    pub good_ratings: u32,
    pub bad_ratings: u32,
    pub in_flight: u32,
    /// Cycles completed, cycles invalidated, and allocated orders that timed out.
    pub served: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub subscribers: u32,
    /// Its contribution so far in the open epoch (service weights of completed cycles).
    pub epoch_contribution: String,
    /// What it was paid in the last closed epochs the ledger keeps (at most
    /// [`MINER_PAYOUT_EPOCHS`], newest first; epochs it earned nothing in are left out).
    pub recent_payouts: Vec<PayoutView>,
}

/// A governance proposal, by its number.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Path))]
pub struct ProposalPath {
    /// The proposal's number, as `deai gov propose` prints it.
    pub id: u64,
}

/// Most proposals one page of `GET /v1/proposals` holds.
pub const MAX_PROPOSALS_PER_PAGE: usize = 100;

/// A page of proposals: those numbered after `after`, in ascending order.
#[derive(Debug, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct ProposalPageQuery {
    /// Start after this proposal number (the previous page's `next_after`); from the first
    /// retained proposal when absent.
    pub after: Option<u64>,
}

/// A member of a proposed coordinator set.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct CoordinatorMemberView {
    /// The coordinator's ed25519 public key, hex.
    pub id: String,
    /// Its VRF public key, hex.
    pub vrf_key: String,
}

/// What a proposal does when it passes (SPEC 5.11).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ProposalActionView {
    /// Sets a parameter (its `Params` name); amounts in base units, decimal. `asset` only for
    /// `asset_price_ppm`.
    SetParam {
        name: String,
        value: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        asset: Option<u32>,
    },
    /// Adds a service, or sets the contribution weight of one.
    SetServiceWeight {
        service: String,
        weight: u32,
    },
    RemoveService {
        service: String,
    },
    /// Ejects a miner (hex id).
    EjectMiner {
        miner: String,
    },
    /// Replaces the coordinator signing set (SPEC 5.12).
    SetCoordinators {
        coordinators: Vec<CoordinatorMemberView>,
    },
}

/// One vote and the stake it weighs (at the tally for a closed proposal, now for an open one).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct VoteView {
    pub voter: String,
    pub approve: bool,
    /// Base units, decimal: the voter's locked native stake.
    pub weight: String,
}

/// A proposal and its tally. Votes weigh the voter's locked native stake at tally time, so the
/// tally of an open proposal is what it would be if voting ended now.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ProposalView {
    pub id: u64,
    pub proposer: String,
    pub action: ProposalActionView,
    pub opened_ms: u64,
    pub ends_ms: u64,
    /// `open`, `passed` or `rejected`.
    pub state: String,
    /// Stake for and against, base units, decimal.
    pub yes: String,
    pub no: String,
    /// All locked native stake (the quorum's base), base units, decimal.
    pub total_locked: String,
    /// Share of all locked stake that must vote, and share of votes cast that must approve.
    pub quorum_ppm: u32,
    pub pass_threshold_ppm: u32,
    /// Ascending voter id.
    pub votes: Vec<VoteView>,
}

/// A page of proposals, open and closed, ascending by number.
#[derive(Debug, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(ToSchema))]
pub struct ProposalList {
    pub proposals: Vec<ProposalView>,
    /// Pass as `after` for the next page; absent on the last page.
    pub next_after: Option<u64>,
}
