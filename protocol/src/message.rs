//! Every message a participant can sign, one body type per kind (SPEC 3, 5 and 6).
//!
//! Client and miner kinds can be signed by any key (one key may be both, as the paper's reward
//! attacker is); coordinator kinds only by a member of the ledger's coordinator set.

use crate::codec;
use crate::error::Rejection;
use crate::params::ProposalAction;
use crate::types::{Amount, AssetId, Digest, OrderId, ParticipantId, Rating, ServiceName};
use crate::vrf::VrfProofBytes;
use bincode::{Decode, Encode};

/// Who may sign a kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Any participant: clients and miners alike.
    Participant,
    /// A member of the coordinator set.
    Coordinator,
}

macro_rules! message_kinds {
    ($($kind:ident => $body:ty, $role:ident, $name:literal;)*) => {
        /// The `kind` field of an envelope: names the body type and the signature domain.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
        pub enum MessageKind { $($kind),* }

        /// A decoded message body.
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub enum Message { $($kind($body)),* }

        impl MessageKind {
            pub const ALL: &'static [MessageKind] = &[$(MessageKind::$kind),*];
            /// Stable name, used in the signature domain `"deai/v1/" + name`.
            pub fn name(self) -> &'static str {
                match self { $(MessageKind::$kind => $name),* }
            }
            pub fn role(self) -> Role {
                match self { $(MessageKind::$kind => Role::$role),* }
            }
        }

        impl Message {
            pub fn kind(&self) -> MessageKind {
                match self { $(Message::$kind(_) => MessageKind::$kind),* }
            }
            pub fn body_bytes(&self) -> Vec<u8> {
                match self { $(Message::$kind(b) => codec::to_bytes(b)),* }
            }
            pub fn decode_body(kind: MessageKind, body: &[u8]) -> Result<Message, Rejection> {
                Ok(match kind { $(MessageKind::$kind => Message::$kind(codec::from_bytes(body)?)),* })
            }
        }
    };
}

message_kinds! {
    DevFaucet => DevFaucet, Participant, "dev-faucet";
    LockStake => LockStake, Participant, "lock-stake";
    AcquirePass => AcquirePass, Participant, "acquire-pass";
    ReleasePass => ReleasePass, Participant, "release-pass";
    Withdraw => Withdraw, Participant, "withdraw";
    PutOrder => PutOrder, Participant, "put-order";
    Rate => Rate, Participant, "rate";
    ReportNonDelivery => ReportNonDelivery, Participant, "report-non-delivery";
    Subscribe => Subscribe, Participant, "subscribe";
    Propose => Propose, Participant, "propose";
    Vote => Vote, Participant, "vote";
    RegisterMiner => RegisterMiner, Participant, "register-miner";
    UnregisterMiner => UnregisterMiner, Participant, "unregister-miner";
    SetAvailability => SetAvailability, Participant, "set-availability";
    Claim => Claim, Participant, "claim";
    Allocate => Allocate, Coordinator, "allocate";
    CloseEpoch => CloseEpoch, Coordinator, "close-epoch";
    SignCheckpoint => SignCheckpoint, Coordinator, "sign-checkpoint";
    SignPayouts => SignPayouts, Coordinator, "sign-payouts";
    ProbeResult => ProbeResult, Coordinator, "probe-result";
    Tick => Tick, Coordinator, "tick";
    AuthorizeAdmin => AuthorizeAdmin, Coordinator, "authorize-admin";
    UnlockStake => UnlockStake, Participant, "unlock-stake";
}

impl MessageKind {
    /// `"deai/v1/" + name`, the signature domain of SPEC 3.
    pub fn domain(self) -> String {
        format!("deai/v1/{}", self.name())
    }
}

/// Credits tokens out of thin air; valid only on a network configured as dev (SPEC 5.1). The
/// stake source is pluggable: a later L2 deposit kind credits the same balances.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct DevFaucet {
    pub asset: AssetId,
    pub amount: Amount,
}

/// Moves free balance of `asset` into locked stake (SPEC 5.1).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct LockStake {
    pub asset: AssetId,
    pub amount: Amount,
}

/// Moves locked stake of `asset` back to the free balance while the client holds no pass
/// (SPEC 5.1: stake backs a pass only while one is held; `docs/decisions.md`, "Unlocking
/// stake").
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct UnlockStake {
    pub asset: AssetId,
    pub amount: Amount,
}

/// `AcquireServicePass` (paper Algorithm 1).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct AcquirePass {}

/// Releases the pass; stake unlocks once in-flight orders finish (SPEC 5.1).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ReleasePass {}

/// Takes free balance out of the ledger (to L2).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Withdraw {
    pub asset: AssetId,
    pub amount: Amount,
}

/// The order's input: inline bytes up to `max_inline_payload_bytes`, else a hash and a URL.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum Payload {
    Inline(Vec<u8>),
    External { hash: Digest, url: String },
}

/// How an order is paid (SPEC 5.9).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum OrderMode {
    /// Uncharged: needs a service pass, counts against the admission threshold.
    Free,
    /// Pay per request; `price` is escrowed at put time. May pre-specify a miner.
    Charged { price: Amount, miner: Option<ParticipantId> },
    /// Served by the miner the client holds an active subscription with.
    Subscription { miner: ParticipantId },
}

/// `Put` (paper 3.3, client cycle step 1). The order id is the hash of the signed envelope.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct PutOrder {
    pub service: ServiceName,
    pub mode: OrderMode,
    pub payload: Payload,
}

/// `Rate` (paper 3.3, client cycle step 3).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Rate {
    pub order: OrderId,
    pub rating: Rating,
}

/// The client says the miner did not deliver the output (SPEC 5.8).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ReportNonDelivery {
    pub order: OrderId,
}

/// Buys `periods` subscription periods with `miner` for `service` (SPEC 5.9).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Subscribe {
    pub miner: ParticipantId,
    pub service: ServiceName,
    pub periods: u32,
}

/// Opens a governance proposal (SPEC 5.11).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Propose {
    pub action: ProposalAction,
}

/// A stake-weighted vote (SPEC 5.11).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Vote {
    pub proposal: u64,
    pub approve: bool,
}

/// One service a miner offers, with its charged-mode prices.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ServiceOffer {
    pub service: ServiceName,
    /// Smallest price the miner accepts for a pre-specified charged order.
    pub price_per_request: Amount,
    /// Price of one subscription period, if the miner sells subscriptions.
    pub subscription_price: Option<Amount>,
}

/// `Miner.RegisterResource` (SPEC 5.10).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct RegisterMiner {
    pub collateral: Amount,
    /// Orders the miner serves at once; at capacity it is "busy".
    pub capacity: u32,
    pub endpoint: String,
    pub services: Vec<ServiceOffer>,
}

/// `Miner.UnRegisterResource` (SPEC 5.10).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct UnregisterMiner {}

/// The miner goes online or offline.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SetAvailability {
    pub online: bool,
}

/// `sClaim`: the miner served `order` and its output hashes to `output_hash` (SPEC 5.10).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Claim {
    pub order: OrderId,
    pub output_hash: Digest,
}

/// The leader's AVRF allocation of a batch of pending orders (SPEC 5.3): `miners[i]` serves
/// `orders[i]`; every replica verifies the proof and recomputes each choice.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Allocate {
    pub orders: Vec<OrderId>,
    pub miners: Vec<ParticipantId>,
    pub vrf: VrfProofBytes,
}

/// The leader closes the open epoch with these payouts, which every replica recomputes (SPEC
/// 5.7, 6.2). Ascending miner id, miners with a contribution only.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct CloseEpoch {
    pub epoch: u64,
    pub payouts: Vec<(ParticipantId, Amount)>,
}

/// A coordinator's signature over `(network, height, root)` (SPEC 6.3). `signature` is detached
/// so that outside parties can check a certificate without the envelope.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SignCheckpoint {
    pub height: u64,
    pub root: Digest,
    pub signature: [u8; 64],
}

/// A coordinator's signature over an epoch's payout Merkle root (SPEC 6.4, m-of-c payouts).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SignPayouts {
    pub epoch: u64,
    pub payouts_root: Digest,
    pub signature: [u8; 64],
}

/// A coordinator's own probe of a miner's output endpoint (SPEC 5.8).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct ProbeResult {
    pub order: OrderId,
    pub delivered: bool,
    /// Hash of what the probe fetched; must equal the claim's hash to count as delivered.
    pub output_hash: Digest,
}

/// Lets ledger time act: expires overdue orders (re-queueing once), lapses probe windows and
/// closes votes whose period ended. Proposed by the leader's timer; at most
/// [`crate::ledger::MAX_TICK_ITEMS`] deadlines are processed per tick, the rest on the next.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Tick {}

/// A coordinator records that it is about to carry out an operator's signed admin request, so
/// that no node of the cluster carries out the same request again (`docs/decisions.md`, "Admin
/// authority").
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct AuthorizeAdmin {
    /// Hash of the bytes the admin signed.
    pub request: Digest,
    /// Ledger time after which the request is stale anyway; its record is dropped then.
    pub expires_ms: crate::types::TimeMs,
}
