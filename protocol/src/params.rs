//! Governance-settable parameters with the SPEC 4 defaults, and the genesis that starts a ledger.

use crate::types::{Amount, AssetId, NetworkId, ParticipantId, ServiceName, TimeMs};
use crate::vrf::VrfPublicKey;
use bincode::{Decode, Encode};

/// One base unit of the native token is 10^-9 tokens; the defaults below are in base units.
pub const TOKEN: Amount = 1_000_000_000;

/// SPEC 4 parameters. Ratios are ppm, times are ms, amounts are base units.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Params {
    /// `q`: weight of non-native stake in effective stake (SPEC 5.1).
    pub q_ppm: u32,
    /// `theta`: reputation sensitivity (SPEC 5.5).
    pub theta_ppm: u32,
    pub epoch_ms: u64,
    pub inflation_ppm_per_year: u32,
    pub coordinator_fee_ppm: u32,
    pub min_collateral: Amount,
    pub order_timeout_ms: u64,
    pub rate_window_ms: u64,
    pub stake_unit: Amount,
    pub requests_per_stake_unit: u32,
    pub freeze_ms: u64,
    pub t_restricted_ms: u64,
    pub min_reputation_milli: u32,
    pub probe_window_ms: u64,
    /// Every this many accepted entries each coordinator signs `(height, root)` (SPEC 6.3).
    pub checkpoint_every: u64,
    /// Ratings looked at for rating abuse (SPEC 5.6).
    pub abuse_window: u32,
    pub abuse_ratio_ppm: u32,
    pub voting_period_ms: u64,
    /// Share of all locked native stake that must vote for a proposal to count.
    pub quorum_ppm: u32,
    /// Share of the votes cast that must approve.
    pub pass_threshold_ppm: u32,
    pub max_inline_payload_bytes: u32,
    pub subscription_period_ms: u64,
    /// Finished orders (completed, rated, expired, invalidated) are pruned this long after they
    /// finished, unless a non-delivery report is still open.
    pub order_retention_ms: u64,
    /// Furthest one entry may move ledger time forward, in ms: ledger time after an entry is
    /// `max(previous, min(stamped, previous + max_ledger_step_ms))`, so no stamp, however
    /// wrong, moves time far (`docs/decisions.md`, "Ledger time").
    pub max_ledger_step_ms: u64,
    /// A miner's lease, in ms: it is eligible for new orders only while ledger time is at most
    /// this far past the last accepted entry it signed (SPEC 5.3 "online"; `docs/decisions.md`,
    /// "Miner liveness"). Its agent renews it well within this.
    pub miner_lease_ms: u64,
    /// Allocated orders in a row a miner may let time out; at this many the ledger sets it
    /// offline until it signs `SetAvailability { online: true }` (SPEC 5.10).
    pub miner_max_consecutive_failures: u32,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            q_ppm: 100_000,
            theta_ppm: 100_000,
            epoch_ms: 3_600_000,
            inflation_ppm_per_year: 70_000,
            coordinator_fee_ppm: 20_000,
            min_collateral: 100 * TOKEN,
            order_timeout_ms: 60_000,
            rate_window_ms: 60_000,
            stake_unit: 10 * TOKEN,
            requests_per_stake_unit: 10,
            freeze_ms: 300_000,
            t_restricted_ms: 3_600_000,
            min_reputation_milli: 0,
            probe_window_ms: 30_000,
            checkpoint_every: 1_000,
            abuse_window: 10,
            abuse_ratio_ppm: 600_000,
            voting_period_ms: 7 * 24 * 3_600_000,
            quorum_ppm: 200_000,
            pass_threshold_ppm: 500_001,
            max_inline_payload_bytes: 16 * 1024,
            subscription_period_ms: 30 * 24 * 3_600_000,
            order_retention_ms: 7 * 24 * 3_600_000,
            max_ledger_step_ms: DEFAULT_MAX_LEDGER_STEP_MS,
            miner_lease_ms: DEFAULT_MINER_LEASE_MS,
            miner_max_consecutive_failures: DEFAULT_MINER_MAX_CONSECUTIVE_FAILURES,
        }
    }
}

/// The default of [`Params::max_ledger_step_ms`]: one minute. An honest leader stamps its own
/// clock and ticks while idle, so ledger time never trails it by more than half of this.
pub const DEFAULT_MAX_LEDGER_STEP_MS: u64 = 60_000;

/// The default of [`Params::miner_lease_ms`]: 30 s, half of the default `order_timeout_ms`, so
/// that a dead miner's lease has lapsed by the time its first order is re-queued and the order
/// goes elsewhere. A miner agent renews every third of it.
pub const DEFAULT_MINER_LEASE_MS: u64 = 30_000;

/// The default of [`Params::miner_max_consecutive_failures`].
pub const DEFAULT_MINER_MAX_CONSECUTIVE_FAILURES: u32 = 3;

/// A parameter a proposal can change, with its new value.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum ParamChange {
    QPpm(u32),
    ThetaPpm(u32),
    EpochMs(u64),
    InflationPpmPerYear(u32),
    CoordinatorFeePpm(u32),
    MinCollateral(Amount),
    OrderTimeoutMs(u64),
    RateWindowMs(u64),
    StakeUnit(Amount),
    RequestsPerStakeUnit(u32),
    FreezeMs(u64),
    TRestrictedMs(u64),
    MinReputationMilli(u32),
    ProbeWindowMs(u64),
    AbuseWindow(u32),
    AbuseRatioPpm(u32),
    VotingPeriodMs(u64),
    QuorumPpm(u32),
    PassThresholdPpm(u32),
    AssetPricePpm(AssetId, u64),
    OrderRetentionMs(u64),
    MaxLedgerStepMs(u64),
    MinerLeaseMs(u64),
    MinerMaxConsecutiveFailures(u32),
}

/// Names each [`ParamChange`] by the [`Params`] field it sets, in both directions, so that
/// every tool and view calls a parameter the same (`deai gov propose set-param NAME VALUE`).
/// `asset_price_ppm` also names an asset, so it has its own constructor.
macro_rules! param_names {
    ($($variant:ident => $name:literal: $ty:ty,)*) => {
        impl ParamChange {
            /// Every name [`ParamChange::name`] can return.
            pub const NAMES: &'static [&'static str] = &[$($name,)* ASSET_PRICE_PARAM];

            /// The name of the [`Params`] field this change sets.
            pub fn name(&self) -> &'static str {
                match self {
                    $(ParamChange::$variant(_) => $name,)*
                    ParamChange::AssetPricePpm(..) => ASSET_PRICE_PARAM,
                }
            }

            /// The new value, widened; amounts are base units.
            pub fn value(&self) -> u128 {
                match *self {
                    $(ParamChange::$variant(v) => u128::from(v),)*
                    ParamChange::AssetPricePpm(_, v) => u128::from(v),
                }
            }

            /// The change that sets parameter `name` to `value`; out of the parameter's type's
            /// range, or no such name, is an error that says which.
            pub fn from_name(name: &str, value: u128) -> Result<ParamChange, String> {
                match name {
                    $($name => <$ty>::try_from(value)
                        .map(ParamChange::$variant)
                        .map_err(|_| format!("{name} is at most {}", <$ty>::MAX)),)*
                    ASSET_PRICE_PARAM => Err(format!("{ASSET_PRICE_PARAM} names an asset too: set an asset's price on its own")),
                    other => Err(format!("no parameter is called {other:?}; the parameters are {}", Self::NAMES.join(", "))),
                }
            }
        }
    };
}

/// The name of [`ParamChange::AssetPricePpm`].
pub const ASSET_PRICE_PARAM: &str = "asset_price_ppm";

param_names! {
    QPpm => "q_ppm": u32,
    ThetaPpm => "theta_ppm": u32,
    EpochMs => "epoch_ms": u64,
    InflationPpmPerYear => "inflation_ppm_per_year": u32,
    CoordinatorFeePpm => "coordinator_fee_ppm": u32,
    MinCollateral => "min_collateral": Amount,
    OrderTimeoutMs => "order_timeout_ms": u64,
    RateWindowMs => "rate_window_ms": u64,
    StakeUnit => "stake_unit": Amount,
    RequestsPerStakeUnit => "requests_per_stake_unit": u32,
    FreezeMs => "freeze_ms": u64,
    TRestrictedMs => "t_restricted_ms": u64,
    MinReputationMilli => "min_reputation_milli": u32,
    ProbeWindowMs => "probe_window_ms": u64,
    AbuseWindow => "abuse_window": u32,
    AbuseRatioPpm => "abuse_ratio_ppm": u32,
    VotingPeriodMs => "voting_period_ms": u64,
    QuorumPpm => "quorum_ppm": u32,
    PassThresholdPpm => "pass_threshold_ppm": u32,
    OrderRetentionMs => "order_retention_ms": u64,
    MaxLedgerStepMs => "max_ledger_step_ms": u64,
    MinerLeaseMs => "miner_lease_ms": u64,
    MinerMaxConsecutiveFailures => "miner_max_consecutive_failures": u32,
}

impl ParamChange {
    /// Whether parameter `name` is an amount of native tokens (people write it in tokens).
    pub fn is_amount(name: &str) -> bool {
        matches!(name, "min_collateral" | "stake_unit")
    }
}

/// Upper bound on windows, so that no per-client history grows past it.
pub const MAX_ABUSE_WINDOW: u32 = 1_000;

impl ParamChange {
    /// Checks the value is in range: a proposal with an invalid value is refused when proposed.
    pub fn validate(&self) -> Result<(), &'static str> {
        use ParamChange::*;
        let ppm_ok = |v: u32| v <= 1_000_000;
        match *self {
            QPpm(v) | CoordinatorFeePpm(v) | AbuseRatioPpm(v) | QuorumPpm(v) | PassThresholdPpm(v) if !ppm_ok(v) => {
                Err("ratio above 1_000_000 ppm")
            }
            EpochMs(0) | OrderTimeoutMs(0) | RateWindowMs(0) | VotingPeriodMs(0) | ProbeWindowMs(0)
            | OrderRetentionMs(0) | MaxLedgerStepMs(0) | MinerLeaseMs(0) => Err("duration must be positive"),
            MinerMaxConsecutiveFailures(0) => Err("consecutive failures must be at least 1"),
            StakeUnit(0) => Err("stake unit must be positive"),
            AbuseWindow(v) if v == 0 || v > MAX_ABUSE_WINDOW => Err("abuse window out of range"),
            MinReputationMilli(v) if v > 100_000 => Err("reputation above 100_000 milli-points"),
            InflationPpmPerYear(v) if v > 1_000_000 => Err("inflation above 100% a year"),
            AssetPricePpm(a, _) if a.is_native() => Err("the native asset has no price"),
            _ => Ok(()),
        }
    }

    pub fn apply_to(&self, p: &mut Params) {
        use ParamChange::*;
        match *self {
            QPpm(v) => p.q_ppm = v,
            ThetaPpm(v) => p.theta_ppm = v,
            EpochMs(v) => p.epoch_ms = v,
            InflationPpmPerYear(v) => p.inflation_ppm_per_year = v,
            CoordinatorFeePpm(v) => p.coordinator_fee_ppm = v,
            MinCollateral(v) => p.min_collateral = v,
            OrderTimeoutMs(v) => p.order_timeout_ms = v,
            RateWindowMs(v) => p.rate_window_ms = v,
            StakeUnit(v) => p.stake_unit = v,
            RequestsPerStakeUnit(v) => p.requests_per_stake_unit = v,
            FreezeMs(v) => p.freeze_ms = v,
            TRestrictedMs(v) => p.t_restricted_ms = v,
            MinReputationMilli(v) => p.min_reputation_milli = v,
            ProbeWindowMs(v) => p.probe_window_ms = v,
            AbuseWindow(v) => p.abuse_window = v,
            AbuseRatioPpm(v) => p.abuse_ratio_ppm = v,
            VotingPeriodMs(v) => p.voting_period_ms = v,
            QuorumPpm(v) => p.quorum_ppm = v,
            PassThresholdPpm(v) => p.pass_threshold_ppm = v,
            OrderRetentionMs(v) => p.order_retention_ms = v,
            MaxLedgerStepMs(v) => p.max_ledger_step_ms = v,
            MinerLeaseMs(v) => p.miner_lease_ms = v,
            MinerMaxConsecutiveFailures(v) => p.miner_max_consecutive_failures = v,
            AssetPricePpm(..) => {} // prices live in the asset table, see the ledger
        }
    }
}

/// A coordinator: its ed25519 id and its VRF key.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct CoordinatorInfo {
    pub id: ParticipantId,
    pub vrf_key: VrfPublicKey,
}

/// What a governance proposal does when it passes (SPEC 5.11).
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub enum ProposalAction {
    SetParam(ParamChange),
    /// Adds a service, or sets the weight of an existing one.
    SetServiceWeight {
        service: ServiceName,
        weight: u32,
    },
    RemoveService {
        service: ServiceName,
    },
    EjectMiner {
        miner: ParticipantId,
    },
    /// Replaces the coordinator signing set (SPEC 5.12).
    SetCoordinators {
        coordinators: Vec<CoordinatorInfo>,
    },
}

/// Most coordinators a set may hold (SPEC 1: 3 to 7 nodes; room for a membership change).
pub const MAX_COORDINATORS: usize = 16;
/// Most services the governance list may hold.
pub const MAX_SERVICES: usize = 256;

/// Everything a ledger starts from. Two ledgers from the same genesis fed the same entries end
/// in the same state.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct Genesis {
    pub network_id: NetworkId,
    /// Only a dev network accepts `DevFaucet` entries.
    pub dev: bool,
    pub params: Params,
    /// `(service, weight)`: text services 1, image services 4 by default.
    pub services: Vec<(ServiceName, u32)>,
    /// Non-native assets and their price in native base units per asset base unit, in ppm.
    pub asset_prices_ppm: Vec<(AssetId, u64)>,
    pub coordinators: Vec<CoordinatorInfo>,
    /// Native supply outside the ledger at genesis: the base of the inflation (SPEC 5.7).
    pub total_supply: Amount,
    pub start_ms: TimeMs,
}

impl Genesis {
    /// The default service list of SPEC 4.
    pub fn default_services() -> Vec<(ServiceName, u32)> {
        vec![("text-generation".into(), 1), ("text-embedding".into(), 1), ("image-generation".into(), 4)]
    }

    /// A dev network with default parameters and the given coordinators.
    pub fn dev(network: &str, coordinators: Vec<CoordinatorInfo>) -> Self {
        Genesis {
            network_id: NetworkId(network.to_string()),
            dev: true,
            params: Params::default(),
            services: Self::default_services(),
            asset_prices_ppm: vec![(AssetId(1), 1_000_000)],
            coordinators,
            total_supply: 1_000_000_000 * TOKEN,
            start_ms: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_parameter_name_reads_back_as_the_same_change() {
        for name in ParamChange::NAMES.iter().filter(|n| **n != ASSET_PRICE_PARAM) {
            let change = ParamChange::from_name(name, 7).expect("a known name");
            assert_eq!(change.name(), *name);
            assert_eq!(change.value(), 7);
        }
        assert!(ParamChange::from_name("no_such_param", 1).unwrap_err().contains("order_timeout_ms"));
        assert!(ParamChange::from_name("q_ppm", u128::from(u32::MAX) + 1).unwrap_err().contains("at most"));
        assert!(ParamChange::from_name(ASSET_PRICE_PARAM, 1).is_err());
    }
}
