//! The global ledger of SPEC 4 as a deterministic state machine.
//!
//! [`Ledger::apply`] takes one [`Entry`] (a signed envelope stamped with the leader's time) and
//! either accepts it, returning the [`Effects`] it had, or refuses it with a [`Rejection`] and
//! changes nothing. Every handler validates before it mutates; time-driven work happens only in
//! an explicit `Tick` entry, so no rollback is ever needed.
//!
//! One file per rule family: `accounts` (5.1), `orders` (5.2-5.4, 5.10), `rating` (5.5-5.6),
//! `availability` (5.8), `charged` (5.9), `miners` (5.10), `epoch` (5.7), `governance` (5.11),
//! `checkpoint` (6.3-6.4).

mod accounts;
mod admin;
mod availability;
mod charged;
mod checkpoint;
mod epoch;
mod governance;
mod miners;
mod orders;
mod rating;

pub use checkpoint::{checkpoint_signing_bytes, payouts_signing_bytes};
pub use epoch::payouts_root;
pub use orders::{batch_hash, payload_hash};

/// The hash a miner's `Claim` commits to and a client checks its output against (SPEC 5.8).
pub fn output_hash(output: &[u8]) -> Digest {
    crate::hash::hash_parts("output", &[output])
}

use crate::codec;
use crate::envelope::{self, SignedEnvelope};
use crate::error::{CodecError, Rejection};
use crate::hash::{hash_encoded, hash_fixed, hash_parts};
use crate::message::{Message, OrderMode, Payload, Role};
use crate::params::{CoordinatorInfo, Genesis, Params, ProposalAction, MAX_COORDINATORS, MAX_SERVICES};
use crate::types::{Amount, AssetId, Digest, NetworkId, OrderId, ParticipantId, Rating, ServiceName, TimeMs};
use bincode::{Decode, Encode};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// Most deadlines one `Tick` entry processes; the rest wait for the next tick.
pub const MAX_TICK_ITEMS: usize = 10_000;
/// Most orders one `Allocate` entry may carry. Its body (an order id and a miner id per order,
/// plus the VRF proof) must fit in one envelope; the assertion below keeps the limits coherent.
pub const MAX_ALLOCATION_BATCH: usize = 512;
/// VRF draws `Ledger::plan_allocation` makes for one batch before it falls back to a batch of
/// one order (each draw is a proof and a replay of the batch).
pub const MAX_PLAN_DRAWS: usize = 8;
const _: () = assert!(MAX_ALLOCATION_BATCH * 2 * 32 + 1_024 <= crate::envelope::MAX_BODY_BYTES);
/// Most orders a client may have waiting (pending) at once.
pub const MAX_PENDING_PER_CLIENT: usize = 10_000;
/// Closed epochs kept in state; older ones live in snapshots and on L2.
pub const MAX_EPOCHS_RETAINED: usize = 1_000;
/// Checkpoint heights whose roots and signatures are kept.
pub const MAX_CHECKPOINTS_RETAINED: usize = 64;
/// Divergence evidence records kept (the count is kept forever).
pub const MAX_EVIDENCE_RETAINED: usize = 1_024;
/// Most services one miner may offer.
pub const MAX_SERVICES_PER_MINER: usize = 64;
/// Longest miner endpoint URL, and longest external payload URL, in bytes.
pub const MAX_URL_BYTES: usize = 512;
/// Admin requests remembered at once; each is dropped when it expires.
pub const MAX_ADMIN_REQUESTS_RETAINED: usize = 1_024;
/// Most proposals open at once.
pub const MAX_OPEN_PROPOSALS: usize = 64;
/// Closed proposals kept in state with their final tally (the newest); older ones live in
/// snapshots and in the log.
pub const MAX_CLOSED_PROPOSALS_RETAINED: usize = 256;

/// One replicated log entry: a signed envelope and the leader's stamp (SPEC 3).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Entry {
    /// Leader time in ms, stamped on the whole batch the entry rides in; the ledger moves to it
    /// by [`next_ledger_time`], so time never goes back and one entry moves it at most
    /// `max_ledger_step_ms`.
    pub stamped_ms: TimeMs,
    pub envelope: SignedEnvelope,
}

/// What an accepted entry did, in order. Hashed into the running root.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct Effects {
    pub events: Vec<Event>,
}

/// One observable consequence of an accepted entry.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Event {
    Credited {
        who: ParticipantId,
        asset: AssetId,
        amount: Amount,
    },
    StakeLocked {
        client: ParticipantId,
        asset: AssetId,
        amount: Amount,
    },
    Withdrawn {
        who: ParticipantId,
        asset: AssetId,
        amount: Amount,
    },
    PassAcquired {
        client: ParticipantId,
        effective_stake: Amount,
    },
    PassReleasing {
        client: ParticipantId,
        in_flight: u32,
    },
    StakeUnlocked {
        client: ParticipantId,
    },
    OrderPlaced {
        order: OrderId,
        client: ParticipantId,
    },
    ClientFrozen {
        client: ParticipantId,
        until_ms: TimeMs,
    },
    OrderAllocated {
        order: OrderId,
        miner: ParticipantId,
    },
    OrderCompleted {
        order: OrderId,
        miner: ParticipantId,
        weight: u32,
    },
    OrderRated {
        order: OrderId,
        miner: ParticipantId,
        reputation_milli: u32,
    },
    RatingRestricted {
        client: ParticipantId,
        until_ms: TimeMs,
    },
    OrderRequeued {
        order: OrderId,
        miner: ParticipantId,
    },
    OrderExpired {
        order: OrderId,
    },
    Refunded {
        client: ParticipantId,
        amount: Amount,
    },
    Paid {
        miner: ParticipantId,
        amount: Amount,
        fee: Amount,
    },
    MinerRegistered {
        miner: ParticipantId,
    },
    MinerUnregistering {
        miner: ParticipantId,
        in_flight: u32,
    },
    MinerUnregistered {
        miner: ParticipantId,
        collateral_returned: Amount,
    },
    MinerAvailability {
        miner: ParticipantId,
        online: bool,
    },
    MinerEjected {
        miner: ParticipantId,
    },
    Subscribed {
        client: ParticipantId,
        miner: ParticipantId,
        until_ms: TimeMs,
    },
    ReportOpened {
        order: OrderId,
    },
    ReportCleared {
        order: OrderId,
    },
    ReportLapsed {
        order: OrderId,
    },
    ProbeFailed {
        order: OrderId,
        coordinator: ParticipantId,
        failures: u32,
    },
    CycleInvalidated {
        order: OrderId,
        miner: ParticipantId,
    },
    EpochClosed {
        epoch: u64,
        reward: Amount,
        paid: Amount,
        carried: Amount,
    },
    PayoutsCertified {
        epoch: u64,
        payouts_root: Digest,
    },
    CheckpointDue {
        height: u64,
    },
    CertificateFormed {
        height: u64,
        root: Digest,
    },
    DivergenceRecorded {
        coordinator: ParticipantId,
        height: u64,
    },
    ProposalOpened {
        id: u64,
    },
    Voted {
        id: u64,
        voter: ParticipantId,
        approve: bool,
    },
    ProposalClosed {
        id: u64,
        passed: bool,
    },
    OrdersPruned {
        count: u32,
    },
    AdminAuthorized {
        request: Digest,
    },
    /// `UnlockStake`: `amount` of locked `asset` went back to the free balance. Last, so that
    /// the encodings of the older events stay as they were.
    StakeReturned {
        client: ParticipantId,
        asset: AssetId,
        amount: Amount,
    },
}

/// The service pass of SPEC 5.1.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum PassState {
    None,
    Valid,
    /// Released; the stake unlocks when the last in-flight order finishes.
    Releasing,
}

/// SPEC 5.2: the client's request counter for one service.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct RateWindow {
    pub start_ms: TimeMs,
    pub count: u64,
}

/// SPEC 5.6: the client's recent deviations and restriction history.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct RaterState {
    /// One flag per recent rating, newest last; at most `abuse_window` long.
    pub recent_deviations: VecDeque<bool>,
    pub restrictions: u32,
    pub restricted_until_ms: TimeMs,
}

/// Everything the ledger knows about one participant's money and client state (SPEC 4).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Account {
    pub balances: BTreeMap<AssetId, Amount>,
    pub locked: BTreeMap<AssetId, Amount>,
    pub pass: PassState,
    /// Orders placed and not yet finished (pending or allocated).
    pub in_flight: u32,
    /// Orders waiting for a miner.
    pub pending: u32,
    /// Charged-mode prices held for this client's open orders.
    pub escrow: Amount,
    pub windows: BTreeMap<ServiceName, RateWindow>,
    pub frozen_until_ms: TimeMs,
    pub rater: RaterState,
    /// `(miner, service) -> paid until`.
    pub subscriptions: BTreeMap<(ParticipantId, ServiceName), TimeMs>,
}

impl Default for Account {
    fn default() -> Self {
        Account {
            balances: BTreeMap::new(),
            locked: BTreeMap::new(),
            pass: PassState::None,
            in_flight: 0,
            pending: 0,
            escrow: 0,
            windows: BTreeMap::new(),
            frozen_until_ms: 0,
            rater: RaterState::default(),
            subscriptions: BTreeMap::new(),
        }
    }
}

impl Account {
    pub fn balance(&self, asset: AssetId) -> Amount {
        self.balances.get(&asset).copied().unwrap_or(0)
    }
    pub fn locked(&self, asset: AssetId) -> Amount {
        self.locked.get(&asset).copied().unwrap_or(0)
    }
}

/// A miner's registration state (SPEC 5.10).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum MinerStatus {
    Active,
    /// Unregistered; collateral returns when in-flight work ends.
    Unregistering,
    Unregistered,
}

impl MinerStatus {
    /// Stable name, for views and logs.
    pub fn name(self) -> &'static str {
        match self {
            MinerStatus::Active => "active",
            MinerStatus::Unregistering => "unregistering",
            MinerStatus::Unregistered => "unregistered",
        }
    }
}

/// "Node info" of SPEC 4.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Miner {
    pub status: MinerStatus,
    pub collateral: Amount,
    pub capacity: u32,
    pub endpoint: String,
    pub services: BTreeMap<ServiceName, crate::message::ServiceOffer>,
    /// The miner's own word (`SetAvailability`), unless the ledger took it offline; `false`
    /// exactly when `offline_reason` is set. Eligibility also needs a live lease
    /// ([`Miner::liveness`]).
    pub online: bool,
    /// Why the miner is offline; `None` while online.
    pub offline_reason: Option<OfflineReason>,
    /// Ledger time of the last accepted entry the miner signed: its lease runs from here.
    pub last_seen_ms: TimeMs,
    /// Allocated orders in a row that timed out; a claim, or coming back online, resets it.
    pub consecutive_failures: u32,
    pub ejected: bool,
    pub in_flight: u32,
    /// Each client's latest rating (paper 3.3: only the latest counts).
    pub latest_ratings: BTreeMap<ParticipantId, Rating>,
    pub rating_sum: i64,
    pub good_ratings: u32,
    pub bad_ratings: u32,
    pub reputation_milli: u32,
    pub served: u64,
    pub failed: u64,
    pub timed_out: u64,
    pub subscribers: u32,
}

/// Why a miner is offline (`docs/decisions.md`, "Miner liveness").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum OfflineReason {
    /// The miner signed `SetAvailability { online: false }`.
    Declared,
    /// `miner_max_consecutive_failures` orders allocated to it in a row timed out.
    ConsecutiveFailures,
}

impl OfflineReason {
    /// Stable name, for views and logs.
    pub fn name(self) -> &'static str {
        match self {
            OfflineReason::Declared => "declared",
            OfflineReason::ConsecutiveFailures => "consecutive_failures",
        }
    }
}

/// Whether a miner counts as "online" for SPEC 5.3 at some ledger time, and if not, why.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Liveness {
    /// Online with a live lease: eligible, as far as liveness goes.
    Live,
    /// Online by its word, but it has signed nothing the ledger accepted for longer than
    /// `miner_lease_ms`: its agent is presumed gone.
    LeaseLapsed,
    Offline(OfflineReason),
}

impl Liveness {
    /// Stable name, for views and logs: `live`, `lease_lapsed`, or the offline reason.
    pub fn name(self) -> &'static str {
        match self {
            Liveness::Live => "live",
            Liveness::LeaseLapsed => "lease_lapsed",
            Liveness::Offline(reason) => reason.name(),
        }
    }
}

impl Miner {
    /// The miner's liveness at ledger time `now_ms` under a lease of `lease_ms`: live while
    /// online and `now_ms - last_seen_ms <= lease_ms`.
    pub fn liveness(&self, now_ms: TimeMs, lease_ms: u64) -> Liveness {
        match self.offline_reason {
            Some(reason) => Liveness::Offline(reason),
            None if now_ms.saturating_sub(self.last_seen_ms) > lease_ms => Liveness::LeaseLapsed,
            None => Liveness::Live,
        }
    }

    /// Ledger time after which the lease lapses unless the miner signs something first.
    pub fn lease_expires_ms(&self, lease_ms: u64) -> TimeMs {
        self.last_seen_ms.saturating_add(lease_ms)
    }
}

/// `Pending -> Allocated -> Completed -> Rated`, or `Expired` / `Failed` / `Invalidated`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Encode, Decode)]
pub enum OrderStatus {
    Pending,
    Allocated,
    Completed,
    Rated,
    Expired,
    Failed,
    Invalidated,
}

impl OrderStatus {
    pub fn name(self) -> &'static str {
        match self {
            OrderStatus::Pending => "pending",
            OrderStatus::Allocated => "allocated",
            OrderStatus::Completed => "completed",
            OrderStatus::Rated => "rated",
            OrderStatus::Expired => "expired",
            OrderStatus::Failed => "failed",
            OrderStatus::Invalidated => "invalidated",
        }
    }
}

/// How the order was allocated: the height of the `Allocate` entry (whose VRF proof is in the
/// log), the coordinator that proposed it and the draw `u_i` used.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct AllocationRecord {
    pub height: u64,
    pub coordinator: ParticipantId,
    pub draw: u64,
}

/// The miner's signed claim, kept so that anyone can re-verify it (task cycle data, SPEC 4).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ClaimRecord {
    pub output_hash: Digest,
    pub nonce: u64,
    pub signature: [u8; 64],
}

/// One order and, once served, its task cycle data (SPEC 4).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Order {
    pub client: ParticipantId,
    pub service: ServiceName,
    pub mode: OrderMode,
    /// The payload while the order is open; dropped once served (its hash stays).
    pub payload: Option<Payload>,
    pub payload_hash: Digest,
    pub status: OrderStatus,
    pub seq: u64,
    pub placed_ms: TimeMs,
    pub miner: Option<ParticipantId>,
    /// Boxed: only served orders carry it, and a smaller `Order` moves faster in the map.
    pub allocation: Option<Box<AllocationRecord>>,
    pub deadline_ms: TimeMs,
    pub requeued: bool,
    /// Price held in escrow for a charged order (0 otherwise).
    pub escrow: Amount,
    pub claim: Option<Box<ClaimRecord>>,
    pub completed_ms: TimeMs,
    /// Epoch the completion counted in, and the service weight it added.
    pub epoch: u64,
    pub weight: u32,
    /// Price paid to the miner and fee taken, once completed.
    pub paid: Amount,
    pub fee: Amount,
    pub rating: Option<Rating>,
    /// A non-delivery report was filed (one per order).
    pub reported: bool,
}

/// An open non-delivery report (SPEC 5.8).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct NonDeliveryReport {
    pub opened_ms: TimeMs,
    /// End of the probe window, fixed when the report opens (a later parameter change does not
    /// move it).
    pub closes_ms: TimeMs,
    pub failures: BTreeSet<ParticipantId>,
}

/// The open reward epoch (SPEC 5.7).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct OpenEpoch {
    pub number: u64,
    pub start_ms: TimeMs,
    pub contributions: BTreeMap<ParticipantId, u128>,
    /// Reward carried from earlier epochs that paid nothing.
    pub carried: Amount,
}

/// A closed epoch: its payouts, their Merkle root and the coordinators' payout signatures.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct EpochRecord {
    pub number: u64,
    pub start_ms: TimeMs,
    pub end_ms: TimeMs,
    pub contributions: Vec<(ParticipantId, u128)>,
    pub reward: Amount,
    pub payouts: Vec<(ParticipantId, Amount)>,
    pub payouts_root: Digest,
    pub signatures: BTreeMap<ParticipantId, [u8; 64]>,
    pub certified: bool,
}

/// A governance proposal (SPEC 5.11).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Proposal {
    pub proposer: ParticipantId,
    pub action: ProposalAction,
    pub opened_ms: TimeMs,
    pub ends_ms: TimeMs,
    pub votes: BTreeMap<ParticipantId, bool>,
    pub closed: Option<bool>,
}

/// A proposal whose voting period ended, with the tally it was decided by (SPEC 5.11): the
/// weights are those of the tally time, which later stake changes do not move.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ClosedProposal {
    /// `closed` holds whether it passed.
    pub proposal: Proposal,
    pub yes: Amount,
    pub no: Amount,
    /// Each voter's weight at the tally.
    pub weights: BTreeMap<ParticipantId, Amount>,
    /// All locked native stake at the tally: the base of the quorum.
    pub total_locked: Amount,
    pub closed_ms: TimeMs,
}

/// Signatures gathered for one checkpoint height (SPEC 6.3).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct CheckpointState {
    pub root: Digest,
    pub signatures: BTreeMap<ParticipantId, [u8; 64]>,
    pub certified: bool,
}

/// `ceil((2n+1)/3)` matching signatures over `(height, root)` (SPEC 6.3).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct QuorumCertificate {
    pub height: u64,
    pub root: Digest,
    pub signatures: Vec<(ParticipantId, [u8; 64])>,
}

/// A coordinator signed a root that differs from the ledger's, or two roots for one height.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct DivergenceEvidence {
    pub coordinator: ParticipantId,
    pub height: u64,
    pub signed_root: Digest,
    pub expected_root: Digest,
    pub signature: [u8; 64],
    pub equivocation: bool,
}

/// Token totals for the conservation audit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Encode, Decode)]
pub struct SupplyTotals {
    pub deposits: BTreeMap<AssetId, Amount>,
    pub withdrawals: BTreeMap<AssetId, Amount>,
    /// Native tokens minted as epoch rewards and paid out.
    pub minted: Amount,
    pub fee_pool: Amount,
    /// Native supply: the genesis supply plus everything minted (base of inflation).
    pub total_supply: Amount,
}

/// The whole replicated state. A snapshot is exactly this, encoded.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Ledger {
    pub network_id: NetworkId,
    pub dev: bool,
    pub params: Params,
    pub services: BTreeMap<ServiceName, u32>,
    pub asset_prices_ppm: BTreeMap<AssetId, u64>,
    /// Ascending id: the canonical order.
    pub coordinators: Vec<CoordinatorInfo>,
    pub now_ms: TimeMs,
    /// Accepted entries so far.
    pub height: u64,
    /// `root_i = H(root_{i-1} || H(entry_i) || H(effects_i))` (SPEC 6.3).
    pub root: Digest,
    /// Root at the last checkpoint height: half of the VRF input (SPEC 5.3).
    pub last_checkpoint_root: Digest,
    pub nonces: BTreeMap<ParticipantId, u64>,
    pub accounts: BTreeMap<ParticipantId, Account>,
    pub miners: BTreeMap<ParticipantId, Miner>,
    pub orders: BTreeMap<OrderId, Order>,
    /// Pending orders by admission sequence: first in, first seen by the scheduler.
    pub pending: BTreeMap<u64, OrderId>,
    pub next_seq: u64,
    /// `(deadline, order)` of allocated orders.
    pub deadlines: BTreeSet<(TimeMs, OrderId)>,
    /// `(deadline, order)` of pending orders: an order no miner takes within
    /// `order_timeout_ms` of being queued expires (SPEC 5.10).
    pub pending_deadlines: BTreeSet<(TimeMs, OrderId)>,
    /// `(finished at, order)` of finished orders, for pruning after `order_retention_ms`.
    pub finished: BTreeSet<(TimeMs, OrderId)>,
    pub reports: BTreeMap<OrderId, NonDeliveryReport>,
    pub report_deadlines: BTreeSet<(TimeMs, OrderId)>,
    pub epoch: OpenEpoch,
    pub closed_epochs: BTreeMap<u64, EpochRecord>,
    /// Open proposals.
    pub proposals: BTreeMap<u64, Proposal>,
    /// The last [`MAX_CLOSED_PROPOSALS_RETAINED`] closed proposals.
    pub closed_proposals: BTreeMap<u64, ClosedProposal>,
    pub proposal_deadlines: BTreeSet<(TimeMs, u64)>,
    pub next_proposal: u64,
    /// Admin requests carried out, by hash, until they expire (cluster-wide replay protection).
    pub admin_requests: BTreeMap<Digest, TimeMs>,
    pub checkpoints: BTreeMap<u64, CheckpointState>,
    pub last_certificate: Option<QuorumCertificate>,
    pub divergences: VecDeque<DivergenceEvidence>,
    pub divergence_count: u64,
    pub totals: SupplyTotals,
}

/// Per-entry facts handed to every handler.
pub(crate) struct Ctx<'a> {
    pub signer: ParticipantId,
    pub now: TimeMs,
    pub envelope: &'a SignedEnvelope,
    /// [`SignedEnvelope::digest`]: the order id of a `PutOrder`.
    pub envelope_digest: Digest,
    /// Height this entry gets if accepted.
    pub height: u64,
}

impl Ledger {
    /// Starts a ledger from `genesis`, checking it is coherent.
    pub fn new(genesis: Genesis) -> Result<Ledger, Rejection> {
        let g = genesis;
        if g.network_id.0.is_empty() || g.network_id.0.len() > NetworkId::MAX_LEN_BYTES {
            return Err(Rejection::InvalidGenesis("network id must be 1 to 32 bytes"));
        }
        if g.coordinators.is_empty() || g.coordinators.len() > MAX_COORDINATORS {
            return Err(Rejection::InvalidGenesis("coordinator set must hold 1 to 16 members"));
        }
        if g.services.len() > MAX_SERVICES {
            return Err(Rejection::InvalidGenesis("too many services"));
        }
        if g.params.checkpoint_every == 0 || g.params.epoch_ms == 0 || g.params.stake_unit == 0 {
            return Err(Rejection::InvalidGenesis("checkpoint_every, epoch_ms and stake_unit must be positive"));
        }
        if g.params.abuse_window == 0 || g.params.abuse_window > crate::params::MAX_ABUSE_WINDOW {
            return Err(Rejection::InvalidGenesis("abuse_window out of range"));
        }
        if g.params.miner_lease_ms == 0 || g.params.miner_max_consecutive_failures == 0 {
            return Err(Rejection::InvalidGenesis("miner lease and failure limit must be positive"));
        }
        let mut coordinators = g.coordinators;
        coordinators.sort_by_key(|c| c.id);
        coordinators.dedup_by(|a, b| a.id == b.id);
        let genesis_root = hash_parts("genesis", &[&codec::to_bytes(&(&g.network_id, &g.params, &coordinators))]);
        Ok(Ledger {
            network_id: g.network_id,
            dev: g.dev,
            params: g.params,
            services: g.services.into_iter().collect(),
            asset_prices_ppm: g.asset_prices_ppm.into_iter().filter(|(a, _)| !a.is_native()).collect(),
            coordinators,
            now_ms: g.start_ms,
            height: 0,
            root: genesis_root,
            last_checkpoint_root: genesis_root,
            nonces: BTreeMap::new(),
            accounts: BTreeMap::new(),
            miners: BTreeMap::new(),
            orders: BTreeMap::new(),
            pending: BTreeMap::new(),
            next_seq: 0,
            deadlines: BTreeSet::new(),
            pending_deadlines: BTreeSet::new(),
            finished: BTreeSet::new(),
            reports: BTreeMap::new(),
            report_deadlines: BTreeSet::new(),
            epoch: OpenEpoch { number: 0, start_ms: g.start_ms, contributions: BTreeMap::new(), carried: 0 },
            closed_epochs: BTreeMap::new(),
            proposals: BTreeMap::new(),
            closed_proposals: BTreeMap::new(),
            proposal_deadlines: BTreeSet::new(),
            next_proposal: 0,
            admin_requests: BTreeMap::new(),
            checkpoints: BTreeMap::new(),
            last_certificate: None,
            divergences: VecDeque::new(),
            divergence_count: 0,
            totals: SupplyTotals { total_supply: g.total_supply, ..SupplyTotals::default() },
        })
    }

    /// Applies one entry: verifies its envelope (strict ed25519), then runs its rule.
    pub fn apply(&mut self, entry: &Entry) -> Result<Effects, Rejection> {
        let message = entry.envelope.check_and_decode(&self.network_id)?;
        entry.envelope.verify_signature()?;
        self.apply_checked(entry, message)
    }

    /// Applies entries in order with one batched signature check over all of them.
    ///
    /// Batch verification is a pure function of the batch, but on crafted signatures it may
    /// decide differently from one-by-one strict checks. A replicated log entry that carries a
    /// batch must therefore always be applied with exactly that batch, so every replica decides
    /// alike. If the batch check fails, each envelope is checked strictly on its own.
    pub fn apply_batch(&mut self, entries: &[Entry]) -> Vec<Result<Effects, Rejection>> {
        let envelopes: Vec<&SignedEnvelope> = entries.iter().map(|e| &e.envelope).collect();
        let batch_ok = envelope::verify_batch(&envelopes);
        entries
            .iter()
            .map(|entry| {
                let message = entry.envelope.check_and_decode(&self.network_id)?;
                if !batch_ok {
                    entry.envelope.verify_signature()?;
                }
                self.apply_checked(entry, message)
            })
            .collect()
    }

    /// Applies an entry without checking its ed25519 signature: for replaying a node's own
    /// committed log, whose entries were verified when first applied (and for measuring the pure
    /// state transitions). Everything else (network, size, role, nonce, the rule) is checked.
    pub fn apply_preverified(&mut self, entry: &Entry) -> Result<Effects, Rejection> {
        let message = entry.envelope.check_and_decode(&self.network_id)?;
        self.apply_checked(entry, message)
    }

    /// Applies an entry whose signature the caller has already verified.
    fn apply_checked(&mut self, entry: &Entry, message: Message) -> Result<Effects, Rejection> {
        let env = &entry.envelope;
        let signer = env.signer;
        let kind = message.kind();
        if kind.role() == Role::Coordinator && !self.is_coordinator(&signer) {
            return Err(Rejection::WrongRole { kind: kind.name(), role: "coordinator" });
        }
        let last = self.nonces.get(&signer).copied().unwrap_or(0);
        check_nonce(&signer, env.nonce, last)?;
        let envelope_digest = env.digest();
        let ctx = Ctx {
            signer,
            now: next_ledger_time(self.now_ms, entry.stamped_ms, self.params.max_ledger_step_ms),
            envelope: env,
            envelope_digest,
            height: self.height + 1,
        };
        let mut fx = Effects::default();
        self.dispatch(&ctx, message, &mut fx)?;

        // Accepted: commit the common parts. Any entry a miner signs renews its lease.
        if kind.role() == Role::Participant {
            if let Some(miner) = self.miners.get_mut(&signer) {
                miner.last_seen_ms = ctx.now;
            }
        }
        self.now_ms = ctx.now;
        self.nonces.insert(signer, env.nonce);
        self.height = ctx.height;
        if self.height % self.params.checkpoint_every == 0 {
            fx.events.push(Event::CheckpointDue { height: self.height });
        }
        let entry_hash = entry_hash(entry.stamped_ms, &envelope_digest);
        self.root = root_step(&self.root, &entry_hash, &effects_hash(&fx));
        if self.height % self.params.checkpoint_every == 0 {
            self.record_checkpoint_height();
        }
        Ok(fx)
    }

    fn dispatch(&mut self, ctx: &Ctx<'_>, message: Message, fx: &mut Effects) -> Result<(), Rejection> {
        match message {
            Message::DevFaucet(m) => self.dev_faucet(ctx, m, fx),
            Message::LockStake(m) => self.lock_stake(ctx, m, fx),
            Message::UnlockStake(m) => self.unlock_stake(ctx, m, fx),
            Message::AcquirePass(_) => self.acquire_pass(ctx, fx),
            Message::ReleasePass(_) => self.release_pass(ctx, fx),
            Message::Withdraw(m) => self.withdraw(ctx, m, fx),
            Message::PutOrder(m) => self.put_order(ctx, m, fx),
            Message::Rate(m) => self.rate(ctx, m, fx),
            Message::ReportNonDelivery(m) => self.report_non_delivery(ctx, m, fx),
            Message::Subscribe(m) => self.subscribe(ctx, m, fx),
            Message::Propose(m) => self.propose(ctx, m, fx),
            Message::Vote(m) => self.vote(ctx, m, fx),
            Message::RegisterMiner(m) => self.register_miner(ctx, m, fx),
            Message::UnregisterMiner(_) => self.unregister_miner(ctx, fx),
            Message::SetAvailability(m) => self.set_availability(ctx, m, fx),
            Message::Claim(m) => self.claim(ctx, m, fx),
            Message::Allocate(m) => self.allocate(ctx, m, fx),
            Message::CloseEpoch(m) => self.close_epoch(ctx, m, fx),
            Message::SignCheckpoint(m) => self.sign_checkpoint(ctx, m, fx),
            Message::SignPayouts(m) => self.sign_payouts(ctx, m, fx),
            Message::ProbeResult(m) => self.probe_result(ctx, m, fx),
            Message::AuthorizeAdmin(m) => self.authorize_admin(ctx, m, fx),
            Message::Tick(_) => {
                self.tick(ctx, fx);
                Ok(())
            }
        }
    }

    /// `Tick`: processes due deadlines, at most [`MAX_TICK_ITEMS`] in all.
    fn tick(&mut self, ctx: &Ctx<'_>, fx: &mut Effects) {
        let mut budget = MAX_TICK_ITEMS;
        budget -= self.expire_overdue(ctx.now, budget, fx);
        budget -= self.expire_unallocated(ctx.now, budget, fx);
        budget -= self.lapse_reports(ctx.now, budget, fx);
        budget -= self.close_due_proposals(ctx.now, budget, fx);
        self.prune_finished(ctx.now, budget, fx);
    }

    pub fn is_coordinator(&self, id: &ParticipantId) -> bool {
        self.coordinators.binary_search_by(|c| c.id.cmp(id)).is_ok()
    }

    pub fn coordinator(&self, id: &ParticipantId) -> Option<&CoordinatorInfo> {
        self.coordinators.binary_search_by(|c| c.id.cmp(id)).ok().map(|i| &self.coordinators[i])
    }

    /// `ceil((2n+1)/3)` for the current coordinator set (SPEC 6.3).
    pub fn quorum(&self) -> usize {
        (2 * self.coordinators.len() + 1).div_ceil(3)
    }

    pub fn account(&self, id: &ParticipantId) -> Option<&Account> {
        self.accounts.get(id)
    }

    pub fn miner(&self, id: &ParticipantId) -> Option<&Miner> {
        self.miners.get(id)
    }

    /// A miner's liveness at the current ledger time (SPEC 5.3 "online"): what allocation
    /// planned now, and the replay of an `Allocate` applied next, go by.
    pub fn miner_liveness(&self, id: &ParticipantId) -> Option<Liveness> {
        self.miners.get(id).map(|m| m.liveness(self.now_ms, self.params.miner_lease_ms))
    }

    pub fn order(&self, id: &OrderId) -> Option<&Order> {
        self.orders.get(id)
    }

    /// The next nonce `signer` must use.
    pub fn next_nonce(&self, signer: &ParticipantId) -> u64 {
        self.nonces.get(signer).copied().unwrap_or(0) + 1
    }

    /// The order id an accepted `PutOrder` envelope gets: the hash of the signed envelope.
    pub fn order_id_of(envelope: &SignedEnvelope) -> OrderId {
        OrderId(envelope.digest())
    }

    /// Deterministic snapshot: the encoded state behind a version byte.
    pub fn snapshot(&self) -> Vec<u8> {
        codec::encode_snapshot(self)
    }

    /// Restores a snapshot made by [`Ledger::snapshot`].
    pub fn restore(bytes: &[u8]) -> Result<Ledger, CodecError> {
        let ledger: Ledger = codec::decode_snapshot(bytes)?;
        ledger.check_invariants().map_err(|e| CodecError::Invalid(format!("snapshot violates an invariant: {e}")))?;
        Ok(ledger)
    }

    /// Digest of the whole state (not the running root): equal states, equal digests.
    pub fn state_digest(&self) -> Digest {
        hash_encoded("state", self)
    }

    /// Tokens of `asset` the ledger holds in all: deposits + minted − withdrawals. Every entry
    /// that brings tokens in keeps this within `u128`, so holdings can always be summed.
    pub fn held_supply(&self, asset: AssetId) -> Option<Amount> {
        let deposits = self.totals.deposits.get(&asset).copied().unwrap_or(0);
        let withdrawals = self.totals.withdrawals.get(&asset).copied().unwrap_or(0);
        let minted = if asset.is_native() { self.totals.minted } else { 0 };
        deposits.checked_add(minted)?.checked_sub(withdrawals)
    }

    /// Token conservation (SPEC, issue 3): for every asset,
    /// `locked + balances + escrow + fee pool + collateral = deposits + minted - withdrawals`.
    /// Returns the first asset that does not balance.
    pub fn audit_supply(&self) -> Result<(), String> {
        // Checked sums: a crafted snapshot must neither panic the audit nor wrap around to a
        // plausible total.
        let mut held: BTreeMap<AssetId, u128> = BTreeMap::new();
        let add = |m: &mut BTreeMap<AssetId, u128>, a: AssetId, v: u128| -> Result<(), String> {
            let slot = m.entry(a).or_insert(0);
            *slot = slot.checked_add(v).ok_or_else(|| format!("asset {}: holdings overflow", a.0))?;
            Ok(())
        };
        for acc in self.accounts.values() {
            for (&a, &v) in acc.balances.iter().chain(acc.locked.iter()) {
                add(&mut held, a, v)?;
            }
            add(&mut held, AssetId::NATIVE, acc.escrow)?;
        }
        for m in self.miners.values() {
            add(&mut held, AssetId::NATIVE, m.collateral)?;
        }
        add(&mut held, AssetId::NATIVE, self.totals.fee_pool)?;
        let mut assets: BTreeSet<AssetId> = held.keys().copied().collect();
        assets.extend(self.totals.deposits.keys().copied());
        assets.insert(AssetId::NATIVE);
        for a in assets {
            let deposits = self.totals.deposits.get(&a).copied().unwrap_or(0);
            let withdrawals = self.totals.withdrawals.get(&a).copied().unwrap_or(0);
            let minted = if a.is_native() { self.totals.minted } else { 0 };
            let have = held.get(&a).copied().unwrap_or(0);
            let want = self.held_supply(a);
            if want != Some(have) {
                return Err(format!(
                    "asset {}: held {have}, deposits {deposits} + minted {minted} - withdrawals {withdrawals}",
                    a.0
                ));
            }
        }
        Ok(())
    }

    /// Structural invariants that must hold after every entry; checked on restore and by tests.
    pub fn check_invariants(&self) -> Result<(), String> {
        self.audit_supply()?;
        let mut miner_in_flight: BTreeMap<ParticipantId, u32> = BTreeMap::new();
        let mut client_in_flight: BTreeMap<ParticipantId, u32> = BTreeMap::new();
        let mut client_escrow: BTreeMap<ParticipantId, u128> = BTreeMap::new();
        for (id, o) in &self.orders {
            match o.status {
                OrderStatus::Pending => {
                    if self.pending.get(&o.seq) != Some(id) {
                        return Err(format!("pending order {id} missing from the queue"));
                    }
                    if !self.pending_deadlines.contains(&(o.deadline_ms, *id)) {
                        return Err(format!("pending order {id} has no deadline"));
                    }
                    *client_in_flight.entry(o.client).or_default() += 1;
                    *client_escrow.entry(o.client).or_default() += o.escrow;
                }
                OrderStatus::Allocated => {
                    let m = o.miner.ok_or_else(|| format!("allocated order {id} has no miner"))?;
                    *miner_in_flight.entry(m).or_default() += 1;
                    *client_in_flight.entry(o.client).or_default() += 1;
                    *client_escrow.entry(o.client).or_default() += o.escrow;
                    if !self.deadlines.contains(&(o.deadline_ms, *id)) {
                        return Err(format!("allocated order {id} has no deadline"));
                    }
                }
                _ => {
                    if o.escrow != 0 {
                        return Err(format!("finished order {id} still holds escrow"));
                    }
                }
            }
        }
        let pending_orders = self.orders.values().filter(|o| o.status == OrderStatus::Pending).count();
        if self.pending.len() != pending_orders || self.pending_deadlines.len() != pending_orders {
            return Err("pending queue, pending deadlines and pending orders differ".into());
        }
        if self.report_deadlines.len() != self.reports.len()
            || self.reports.iter().any(|(id, r)| !self.report_deadlines.contains(&(r.closes_ms, *id)))
        {
            return Err("open reports and report deadlines differ".into());
        }
        let allocated = self.orders.values().filter(|o| o.status == OrderStatus::Allocated).count();
        if self.deadlines.len() != allocated {
            return Err("deadlines and allocated orders differ".into());
        }
        for (id, m) in &self.miners {
            let want = miner_in_flight.get(id).copied().unwrap_or(0);
            if m.in_flight != want {
                return Err(format!("miner {id} in_flight {} but {want} allocated orders", m.in_flight));
            }
            if m.in_flight > m.capacity && m.status == MinerStatus::Active {
                return Err(format!("miner {id} over capacity"));
            }
            if m.online != m.offline_reason.is_none() {
                return Err(format!("miner {id} online {} with offline reason {:?}", m.online, m.offline_reason));
            }
            if m.last_seen_ms > self.now_ms {
                return Err(format!("miner {id} last seen after ledger time"));
            }
        }
        for (id, a) in &self.accounts {
            if a.in_flight != client_in_flight.get(id).copied().unwrap_or(0) {
                return Err(format!("client {id} in_flight count is off"));
            }
            if a.escrow != client_escrow.get(id).copied().unwrap_or(0) {
                return Err(format!("client {id} escrow is off"));
            }
        }
        // SPEC 5.7: a closed epoch pays out exactly its reward, or nothing (the reward carries).
        for (number, epoch) in &self.closed_epochs {
            if epoch.payouts.is_empty() {
                continue;
            }
            let paid = epoch.payouts.iter().try_fold(0u128, |sum, (_, amount)| sum.checked_add(*amount));
            if paid != Some(epoch.reward) {
                return Err(format!("epoch {number} paid {paid:?} of a reward of {}", epoch.reward));
            }
        }
        Ok(())
    }
}

/// Largest step one signer's nonce may take past its last accepted one. Gaps are allowed (a
/// client may drop a request), but no nonce can come so far ahead that the signer could never
/// sign again: reaching `u64::MAX` takes more than 10^13 accepted entries.
pub const MAX_NONCE_GAP: u64 = 1_000_000;

/// SPEC 3 replay protection: `nonce` must be greater than `last`, and at most
/// [`MAX_NONCE_GAP`] greater.
pub fn check_nonce(signer: &ParticipantId, nonce: u64, last: u64) -> Result<(), Rejection> {
    if nonce <= last {
        return Err(Rejection::Replay { signer: *signer, nonce, last });
    }
    if nonce - last > MAX_NONCE_GAP {
        return Err(Rejection::NonceGap { signer: *signer, nonce, last, max_gap: MAX_NONCE_GAP });
    }
    Ok(())
}

/// Ledger time after an entry stamped `stamped_ms`: it never goes back (SPEC 3) and moves at
/// most `max_step_ms` forward, so a wrong stamp (a leader's clock jump, a forged `u64::MAX`)
/// costs at most one step per entry.
pub fn next_ledger_time(previous_ms: TimeMs, stamped_ms: TimeMs, max_step_ms: u64) -> TimeMs {
    previous_ms.max(stamped_ms.min(previous_ms.saturating_add(max_step_ms)))
}

/// `H(entry_i)` of the running root: `hash_fixed("entry", stamped_ms LE, envelope digest)`.
pub fn entry_hash(stamped_ms: TimeMs, envelope_digest: &Digest) -> Digest {
    hash_fixed("entry", &[&stamped_ms.to_le_bytes(), envelope_digest])
}

/// `H(effects_i)` of the running root: `hash_encoded("effects", effects)`.
pub fn effects_hash(effects: &Effects) -> Digest {
    hash_encoded("effects", effects)
}

/// `root_i = hash_fixed("root", root_{i-1}, H(entry_i), H(effects_i))` (SPEC 6.3).
pub fn root_step(previous: &Digest, entry_hash: &Digest, effects_hash: &Digest) -> Digest {
    hash_fixed("root", &[previous, entry_hash, effects_hash])
}

/// Removes and returns the earliest entry of a deadline index if it is due at `now`.
pub(crate) fn pop_due<K: Ord + Copy>(index: &mut BTreeSet<(TimeMs, K)>, now: TimeMs) -> Option<K> {
    let &(due, key) = index.first()?;
    if due > now {
        return None;
    }
    index.pop_first();
    Some(key)
}

/// Adds `amount` to `map[key]`, refusing overflow.
pub(crate) fn credit<K: Ord>(map: &mut BTreeMap<K, Amount>, key: K, amount: Amount) -> Result<(), Rejection> {
    let slot = map.entry(key).or_insert(0);
    *slot = slot.checked_add(amount).ok_or(Rejection::Overflow)?;
    Ok(())
}

/// Removes `amount` from `map[key]`; the caller has checked it is there.
pub(crate) fn debit<K: Ord + Clone>(map: &mut BTreeMap<K, Amount>, key: K, amount: Amount) {
    let slot = map.entry(key.clone()).or_insert(0);
    assert!(*slot >= amount, "debit below zero: validation must run before mutation");
    *slot -= amount;
    if *slot == 0 {
        map.remove(&key);
    }
}
