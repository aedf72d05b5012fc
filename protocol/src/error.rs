//! Why an entry was refused, with a stable machine-readable code.
//!
//! SPEC 7 asks every error to carry a stable `code`; the HTTP API and the CLI expose
//! [`Rejection::code`] verbatim, so codes are a public interface: never rename one, only add.

use crate::types::{OrderId, ParticipantId, TimeMs};

/// Everything that can make [`crate::Ledger::apply`] refuse an entry.
///
/// A rejected entry changes nothing: the ledger state and its root stay exactly as they were.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejection {
    // --- envelope and codec (SPEC 3) ---
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error("body of {size_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    BodyTooLarge { size_bytes: usize, limit_bytes: usize },
    #[error("signature does not verify for signer {0}")]
    BadSignature(ParticipantId),
    #[error("message is for network {got:?}, this ledger is network {expected:?}")]
    WrongNetwork { expected: String, got: String },
    #[error("nonce {nonce} is not greater than the last accepted nonce {last} of {signer}")]
    Replay { signer: ParticipantId, nonce: u64, last: u64 },
    #[error("nonce {nonce} of {signer} skips more than {max_gap} past the last accepted nonce {last}")]
    NonceGap { signer: ParticipantId, nonce: u64, last: u64, max_gap: u64 },
    #[error("this admin request was already carried out")]
    AdminReplay,
    #[error("this admin request expired at {expires_ms}; ledger time is {now_ms}")]
    AdminStale { expires_ms: u64, now_ms: u64 },
    #[error("{retained} admin requests are remembered, the most there may be; retry once one expires")]
    AdminBusy { retained: usize },
    #[error("message kind {kind} may only be signed by a {role}")]
    WrongRole { kind: &'static str, role: &'static str },

    // --- accounts, stake and pass (SPEC 5.1) ---
    #[error("the dev faucet only exists on networks configured as dev")]
    NotDevNetwork,
    #[error("unknown asset {0}")]
    UnknownAsset(u32),
    #[error("insufficient balance: need {needed}, have {available}")]
    InsufficientBalance { needed: u128, available: u128 },
    #[error("insufficient stake: effective stake {effective} is below one stake unit {stake_unit}")]
    InsufficientStake { effective: u128, stake_unit: u128 },
    #[error("the client holds no valid service pass")]
    NoServicePass,
    #[error("the client already holds a service pass")]
    PassAlreadyHeld,
    #[error("the client's pass is being released; stake cannot change until it is")]
    PassReleasing,
    #[error("amount must be greater than zero")]
    ZeroAmount,
    #[error("the client holds a service pass; stake stays locked until it is released")]
    PassHeld,
    #[error("insufficient locked stake of asset {asset}: need {needed}, locked {locked}")]
    InsufficientLocked { asset: u32, needed: u128, locked: u128 },

    // --- admission (SPEC 5.2) ---
    #[error("client is frozen until {until_ms} ms (ledger time) for exceeding its request threshold")]
    Frozen { until_ms: TimeMs },
    #[error("unknown service {0:?}")]
    UnknownService(String),
    #[error("inline payload of {size_bytes} bytes exceeds {limit_bytes} bytes; send a hash and URL")]
    PayloadTooLarge { size_bytes: usize, limit_bytes: usize },
    #[error("order {0} already exists")]
    DuplicateOrder(OrderId),
    #[error("client has {pending} orders waiting, the limit is {limit}")]
    TooManyPending { pending: usize, limit: usize },

    // --- allocation and cycle (SPEC 5.3, 5.10) ---
    #[error("unknown order {0}")]
    UnknownOrder(OrderId),
    #[error("order {order} is {status}, expected {expected}")]
    WrongOrderStatus { order: OrderId, status: &'static str, expected: &'static str },
    #[error("VRF proof does not verify for coordinator {0}")]
    BadVrfProof(ParticipantId),
    #[error("allocation batch is malformed: {0}")]
    MalformedBatch(&'static str),
    #[error("coordinator {leader} allocated order {order} to {claimed:?}, every replica computes {expected:?}")]
    AllocationMismatch {
        leader: ParticipantId,
        order: OrderId,
        claimed: ParticipantId,
        expected: Option<ParticipantId>,
    },
    #[error("order {order} is assigned to {assigned}, not to {signer}")]
    NotAssignedMiner { order: OrderId, assigned: ParticipantId, signer: ParticipantId },
    #[error("order {0} belongs to another client")]
    NotOrderOwner(OrderId),

    // --- miners (SPEC 5.10) ---
    #[error("unknown miner {0}")]
    UnknownMiner(ParticipantId),
    #[error("miner {0} is already registered")]
    AlreadyRegistered(ParticipantId),
    #[error("collateral {offered} is below the minimum {minimum}")]
    CollateralTooLow { offered: u128, minimum: u128 },
    #[error("miner registration is invalid: {0}")]
    InvalidRegistration(&'static str),
    #[error("miner {0} has been ejected")]
    MinerEjected(ParticipantId),

    // --- rating (SPEC 5.5, 5.6) ---
    #[error("client is restricted from rating until {until_ms} ms (ledger time)")]
    RatingRestricted { until_ms: TimeMs },

    // --- availability (SPEC 5.8) ---
    #[error("no open non-delivery report for order {0}")]
    NoOpenReport(OrderId),
    #[error("a non-delivery report for order {0} is already open")]
    ReportAlreadyOpen(OrderId),
    #[error("the probe window for order {order} closed at {closed_at_ms} ms")]
    ProbeWindowClosed { order: OrderId, closed_at_ms: TimeMs },

    // --- charged mode (SPEC 5.9) ---
    #[error("miner {miner} does not offer a subscription for {service:?}")]
    NoSubscriptionOffer { miner: ParticipantId, service: String },
    #[error("client has no active subscription with miner {0}")]
    NoSubscription(ParticipantId),
    #[error("price must be at least the miner's asking price {asking}")]
    PriceBelowAsking { asking: u128 },

    // --- epochs (SPEC 5.7) ---
    #[error("epoch {epoch} cannot close before {ends_at_ms} ms (ledger time)")]
    EpochNotOver { epoch: u64, ends_at_ms: TimeMs },
    #[error("epoch {got} is not the open epoch {open}")]
    WrongEpoch { open: u64, got: u64 },
    #[error("coordinator {leader} proposed payouts for epoch {epoch} that every replica computes differently")]
    PayoutMismatch { leader: ParticipantId, epoch: u64 },

    // --- governance (SPEC 5.11) ---
    #[error("unknown proposal {0}")]
    UnknownProposal(u64),
    #[error("voting on proposal {0} is closed")]
    VotingClosed(u64),
    #[error("only holders of locked native stake may propose or vote")]
    NoVotingPower,
    #[error("invalid proposal: {0}")]
    InvalidProposal(&'static str),
    #[error("too many open proposals (limit {0})")]
    TooManyProposals(usize),

    // --- checkpoints (SPEC 6) ---
    #[error("height {height} is not a checkpoint height the ledger still holds")]
    UnknownCheckpoint { height: u64 },
    #[error("checkpoint signature does not verify")]
    BadCheckpointSignature,
    #[error("coordinator {0} already signed this checkpoint")]
    AlreadySigned(ParticipantId),

    #[error("invalid genesis: {0}")]
    InvalidGenesis(&'static str),
    #[error("order {order} expired at {deadline_ms} ms (ledger time)")]
    OrderOverdue { order: OrderId, deadline_ms: TimeMs },

    // --- arithmetic guards ---
    #[error("amount overflow")]
    Overflow,
}

impl Rejection {
    /// The stable code exposed by the API (`{"code": ...}`), snake case.
    pub fn code(&self) -> &'static str {
        use Rejection::*;
        match self {
            Malformed(_) => "malformed",
            BodyTooLarge { .. } => "body_too_large",
            BadSignature(_) => "bad_signature",
            WrongNetwork { .. } => "wrong_network",
            Replay { .. } => "replay",
            NonceGap { .. } => "nonce_gap",
            AdminReplay => "admin_replay",
            AdminStale { .. } => "admin_stale",
            AdminBusy { .. } => "admin_busy",
            WrongRole { .. } => "wrong_role",
            NotDevNetwork => "not_dev_network",
            UnknownAsset(_) => "unknown_asset",
            InsufficientBalance { .. } => "insufficient_balance",
            InsufficientStake { .. } => "insufficient_stake",
            NoServicePass => "no_service_pass",
            PassAlreadyHeld => "pass_already_held",
            PassReleasing => "pass_releasing",
            ZeroAmount => "zero_amount",
            PassHeld => "pass_held",
            InsufficientLocked { .. } => "insufficient_locked",
            Frozen { .. } => "frozen",
            UnknownService(_) => "unknown_service",
            PayloadTooLarge { .. } => "payload_too_large",
            DuplicateOrder(_) => "duplicate_order",
            TooManyPending { .. } => "too_many_pending",
            UnknownOrder(_) => "unknown_order",
            WrongOrderStatus { .. } => "wrong_order_status",
            BadVrfProof(_) => "bad_vrf_proof",
            MalformedBatch(_) => "malformed_batch",
            AllocationMismatch { .. } => "allocation_mismatch",
            NotAssignedMiner { .. } => "not_assigned_miner",
            NotOrderOwner(_) => "not_order_owner",
            UnknownMiner(_) => "unknown_miner",
            AlreadyRegistered(_) => "already_registered",
            CollateralTooLow { .. } => "collateral_too_low",
            InvalidRegistration(_) => "invalid_registration",
            MinerEjected(_) => "miner_ejected",
            RatingRestricted { .. } => "rating_restricted",
            NoOpenReport(_) => "no_open_report",
            ReportAlreadyOpen(_) => "report_already_open",
            ProbeWindowClosed { .. } => "probe_window_closed",
            NoSubscriptionOffer { .. } => "no_subscription_offer",
            NoSubscription(_) => "no_subscription",
            PriceBelowAsking { .. } => "price_below_asking",
            EpochNotOver { .. } => "epoch_not_over",
            WrongEpoch { .. } => "wrong_epoch",
            PayoutMismatch { .. } => "payout_mismatch",
            UnknownProposal(_) => "unknown_proposal",
            VotingClosed(_) => "voting_closed",
            NoVotingPower => "no_voting_power",
            InvalidProposal(_) => "invalid_proposal",
            TooManyProposals(_) => "too_many_proposals",
            UnknownCheckpoint { .. } => "unknown_checkpoint",
            BadCheckpointSignature => "bad_checkpoint_signature",
            AlreadySigned(_) => "already_signed",
            InvalidGenesis(_) => "invalid_genesis",
            OrderOverdue { .. } => "order_overdue",
            Overflow => "overflow",
        }
    }

    /// The coordinator whose signed entry proves it misbehaved (SPEC 6.2), if this is such a
    /// rejection. The entry stays in the replicated log, so the signed entry is the evidence;
    /// the cluster layer stores and reports it.
    pub fn misbehaving_coordinator(&self) -> Option<ParticipantId> {
        match self {
            Rejection::AllocationMismatch { leader, .. } | Rejection::PayoutMismatch { leader, .. } => Some(*leader),
            Rejection::BadVrfProof(c) => Some(*c),
            _ => None,
        }
    }
}

/// Errors of the codec: bytes that are not a valid encoding of the expected value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodecError {
    #[error("empty input")]
    Empty,
    #[error("unsupported codec version {got}, this build reads version {supported}")]
    UnsupportedVersion { got: u8, supported: u8 },
    #[error("input of {size_bytes} bytes exceeds the limit of {limit_bytes} bytes")]
    TooLarge { size_bytes: usize, limit_bytes: usize },
    #[error("{0} trailing bytes after the value")]
    TrailingBytes(usize),
    #[error("invalid encoding: {0}")]
    Invalid(String),
}

impl CodecError {
    pub fn code(&self) -> &'static str {
        match self {
            CodecError::Empty => "codec_empty",
            CodecError::UnsupportedVersion { .. } => "codec_version",
            CodecError::TooLarge { .. } => "codec_too_large",
            CodecError::TrailingBytes(_) => "codec_trailing_bytes",
            CodecError::Invalid(_) => "codec_invalid",
        }
    }
}

impl From<CodecError> for Rejection {
    fn from(e: CodecError) -> Self {
        Rejection::Malformed(e.to_string())
    }
}
