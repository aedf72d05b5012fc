//! `deai gov`: governance for participants (SPEC 5.11). A proposal or a vote is an entry the
//! participant signs with its own key (`Propose`, `Vote`); its weight is the native stake it has
//! locked, read by the ledger when the voting period ends. `show` reads proposals, open and
//! closed, with their tallies (`GET /v1/proposals`).
//!
//! Amounts are written in tokens with up to nine decimals (`deai_client::units`); JSON carries
//! base units as decimal strings, as the API does.

use crate::output::{emit, BadArgument, Printed};
use crate::sdk::Participant;
use crate::units::{format_base_units, parse_tokens};
use anyhow::Context;
use clap::{Subcommand, ValueEnum};
use deai_api::hex::unhex32;
use deai_api::views::{ProposalActionView, ProposalList, ProposalView};
use deai_protocol::message::{Message, Propose, Vote};
use deai_protocol::params::{CoordinatorInfo, ParamChange, ProposalAction};
use deai_protocol::types::{AssetId, ParticipantId};

/// Governance: propose parameter, service, miner and coordinator changes, vote on them with
/// locked native stake, and show proposals with their tallies.
#[derive(clap::Args, Debug)]
pub struct GovArgs {
    /// HTTP addresses of coordinators (`host:port,...`); any member will do, and the command
    /// fails over among them.
    #[arg(long, env = "DEAI_COORDINATORS", default_value = "127.0.0.1:8100", global = true)]
    pub coordinator: String,
    /// The participant's key file; proposals and votes are signed with it, and weigh the native
    /// stake it has locked (`deai client stake`).
    #[arg(long, env = "DEAI_CLIENT_KEY_FILE", default_value = "client.key", global = true)]
    pub key: std::path::PathBuf,
    /// Print JSON (errors too, as the API's error object): amounts in base units as decimal
    /// strings. Without it, amounts are tokens with decimals.
    #[arg(long, global = true)]
    pub json: bool,
    #[command(subcommand)]
    pub action: GovAction,
}

#[derive(Subcommand, Debug)]
pub enum GovAction {
    /// Opens a proposal; it needs locked native stake and is decided when its voting period
    /// ends (the ledger's voting_period_ms, quorum_ppm and pass_threshold_ppm).
    Propose {
        #[command(subcommand)]
        action: ProposeAction,
    },
    /// Votes on an open proposal; a later vote replaces an earlier one.
    Vote {
        /// The proposal's number (`deai gov show` lists them).
        id: u64,
        /// `yes` to approve, `no` to reject.
        choice: Choice,
    },
    /// Shows one proposal with its votes, or lists proposals, open and closed, with tallies.
    Show {
        /// The proposal's number; without it, every proposal the ledger keeps.
        id: Option<u64>,
    },
}

/// A vote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Choice {
    /// Approve the proposal.
    Yes,
    /// Reject the proposal.
    No,
}

/// What a proposal does if it passes: one subcommand per governance action.
#[derive(Subcommand, Debug)]
pub enum ProposeAction {
    /// Sets a ledger parameter (SPEC 4), named as the ledger's `Params` field (e.g.
    /// order_timeout_ms, quorum_ppm). min_collateral and stake_unit are in tokens with
    /// decimals; every other value is a whole number in the unit its name ends with.
    SetParam {
        /// The parameter's name; a name that is no parameter is answered with the list.
        name: String,
        /// The new value.
        value: String,
    },
    /// Sets the price of a non-native asset, in native base units per asset base unit, in
    /// parts per million (effective stake, SPEC 5.1).
    SetAssetPrice {
        /// The asset's number (non-native: 1 and up).
        asset: u32,
        /// The price in ppm.
        price_ppm: u64,
    },
    /// Adds a service, or sets the contribution weight of one (SPEC 5.7).
    SetServiceWeight {
        /// The service's name, e.g. text-generation.
        service: String,
        /// Its weight in contributions (text 1 and image 4 by default).
        weight: u32,
    },
    /// Removes a service from the ledger's list.
    RemoveService {
        /// The service's name.
        service: String,
    },
    /// Ejects a miner: it gets no more work and cannot register again.
    EjectMiner {
        /// The miner's id, 64 hex digits.
        miner: String,
    },
    /// Replaces the coordinator signing set (SPEC 5.12).
    SetCoordinators {
        /// Each member as `ID:VRF_KEY`, both 64 hex digits (`deai keygen --coordinator` prints a
        /// coordinator key's VRF key).
        #[arg(required = true, num_args = 1..)]
        members: Vec<String>,
    },
}

/// Runs `deai gov`.
pub fn run_gov(args: &GovArgs) -> anyhow::Result<()> {
    emit(args.json, gov(args))
}

fn gov(args: &GovArgs) -> anyhow::Result<Printed> {
    let key = deai_api::key_file::load_signing_key(&args.key)
        .with_context(|| format!("cannot read the key file {}", args.key.display()))?;
    let me = Participant::connect(key, crate::Coordinators::new(&args.coordinator)?)?;
    match &args.action {
        GovAction::Propose { action } => {
            let action = proposal_action(action)?;
            me.submit_accepted(Message::Propose(Propose { action }))?;
            let mine = newest_proposal_of(&me)?;
            Ok(Printed::new(format!("opened proposal {}\n{}", mine.id, proposal_text(&mine)), &mine))
        }
        GovAction::Vote { id, choice } => {
            me.submit_accepted(Message::Vote(Vote { proposal: *id, approve: *choice == Choice::Yes }))?;
            let view: ProposalView = me.api.get(&format!("/v1/proposals/{id}"))?;
            let said = if *choice == Choice::Yes { "yes" } else { "no" };
            Ok(Printed::new(format!("voted {said} on proposal {id}\n{}", proposal_text(&view)), &view))
        }
        GovAction::Show { id: Some(id) } => {
            let view: ProposalView = me.api.get(&format!("/v1/proposals/{id}"))?;
            Ok(Printed::new(proposal_text(&view), &view))
        }
        GovAction::Show { id: None } => {
            let all = all_proposals(&me)?;
            let text = if all.is_empty() {
                "no proposals".to_string()
            } else {
                all.iter().map(proposal_line).collect::<Vec<_>>().join("\n")
            };
            Ok(Printed::new(text, &all))
        }
    }
}

/// The signed action for `action`, its arguments checked here so that a typo is refused before
/// anything is signed.
pub fn proposal_action(action: &ProposeAction) -> anyhow::Result<ProposalAction> {
    Ok(match action {
        ProposeAction::SetParam { name, value } => {
            let base_units = if ParamChange::is_amount(name) {
                parse_tokens(value)?
            } else {
                value
                    .trim()
                    .replace('_', "")
                    .parse::<u128>()
                    .map_err(|_| BadArgument(format!("{name} takes a whole number, not {value:?}")))?
            };
            let change = ParamChange::from_name(name, base_units).map_err(BadArgument)?;
            change.validate().map_err(|why| BadArgument(format!("{name} = {value}: {why}")))?;
            ProposalAction::SetParam(change)
        }
        ProposeAction::SetAssetPrice { asset, price_ppm } => {
            let change = ParamChange::AssetPricePpm(AssetId(*asset), *price_ppm);
            change.validate().map_err(|why| BadArgument(format!("asset {asset}: {why}")))?;
            ProposalAction::SetParam(change)
        }
        ProposeAction::SetServiceWeight { service, weight } => {
            ProposalAction::SetServiceWeight { service: service.as_str().into(), weight: *weight }
        }
        ProposeAction::RemoveService { service } => ProposalAction::RemoveService { service: service.as_str().into() },
        ProposeAction::EjectMiner { miner } => ProposalAction::EjectMiner { miner: participant_id(miner)? },
        ProposeAction::SetCoordinators { members } => {
            let coordinators = members
                .iter()
                .map(|member| {
                    let (id, vrf) = member
                        .split_once(':')
                        .ok_or_else(|| BadArgument(format!("{member:?}: write each member as ID:VRF_KEY")))?;
                    let vrf_key =
                        unhex32(vrf).ok_or_else(|| BadArgument(format!("{vrf:?}: a VRF key is 64 hex digits")))?;
                    Ok(CoordinatorInfo { id: participant_id(id)?, vrf_key })
                })
                .collect::<anyhow::Result<Vec<_>>>()?;
            ProposalAction::SetCoordinators { coordinators }
        }
    })
}

fn participant_id(text: &str) -> anyhow::Result<ParticipantId> {
    unhex32(text).map(ParticipantId).ok_or_else(|| BadArgument(format!("{text:?}: an id is 64 hex digits")).into())
}

/// Every proposal the ledger keeps, page by page.
fn all_proposals(me: &Participant) -> anyhow::Result<Vec<ProposalView>> {
    let mut all = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let path = match after {
            Some(after) => format!("/v1/proposals?after={after}"),
            None => "/v1/proposals".to_string(),
        };
        let page: ProposalList = me.api.get(&path)?;
        all.extend(page.proposals);
        match page.next_after {
            Some(next) if Some(next) != after => after = Some(next),
            _ => return Ok(all),
        }
    }
}

/// The newest proposal `me` opened: the one its accepted `Propose` just made.
fn newest_proposal_of(me: &Participant) -> anyhow::Result<ProposalView> {
    let id = me.id_hex();
    all_proposals(me)?
        .into_iter()
        .rev()
        .find(|p| p.proposer == id)
        .context("the proposal was accepted but is not listed; `deai gov show` lists proposals")
}

fn action_text(action: &ProposalActionView) -> String {
    match action {
        ProposalActionView::SetParam { name, value, asset: Some(asset) } => {
            format!("set {name} of asset {asset} to {value}")
        }
        ProposalActionView::SetParam { name, value, asset: None } if ParamChange::is_amount(name) => {
            format!("set {name} to {} tokens", format_base_units(value))
        }
        ProposalActionView::SetParam { name, value, asset: None } => format!("set {name} to {value}"),
        ProposalActionView::SetServiceWeight { service, weight } => format!("set the weight of {service} to {weight}"),
        ProposalActionView::RemoveService { service } => format!("remove the service {service}"),
        ProposalActionView::EjectMiner { miner } => format!("eject miner {miner}"),
        ProposalActionView::SetCoordinators { coordinators } => {
            let ids: Vec<&str> = coordinators.iter().map(|c| c.id.as_str()).collect();
            format!("set the coordinators to {}", ids.join(", "))
        }
    }
}

fn tally_text(p: &ProposalView) -> String {
    format!(
        "yes {} / no {} tokens of {} locked",
        format_base_units(&p.yes),
        format_base_units(&p.no),
        format_base_units(&p.total_locked)
    )
}

/// One line per proposal, for the list.
fn proposal_line(p: &ProposalView) -> String {
    format!("#{:<4} {:<8} {}  ({})", p.id, p.state, action_text(&p.action), tally_text(p))
}

/// A proposal with its votes, for people.
fn proposal_text(p: &ProposalView) -> String {
    let mut text = format!(
        "proposal {}: {}\n  state     {}\n  proposer  {}\n  voting    {} to {} (ledger ms)\n  tally     {}\n  rules     quorum {} ppm of locked stake, pass at {} ppm of votes cast\n",
        p.id,
        action_text(&p.action),
        p.state,
        p.proposer,
        p.opened_ms,
        p.ends_ms,
        tally_text(p),
        p.quorum_ppm,
        p.pass_threshold_ppm,
    );
    for v in &p.votes {
        let said = if v.approve { "yes" } else { "no " };
        text.push_str(&format!("  vote      {said} {} ({} tokens)\n", v.voter, format_base_units(&v.weight)));
    }
    text
}
