//! `deai miner register|unregister|status` and `deai gov propose|vote|show` through the real
//! binary, against three real `deai coordinator` processes, each command's ledger effect read
//! back through the API: collateral locked and returned to the base unit (SPEC 5.10), the
//! miner's view as the ledger holds it, a proposal's action, a vote moving the tally by the
//! voter's locked stake, proposals closing with their tally (SPEC 5.11), and errors as the API's
//! `ErrorBody` with the right code.
//!
//! The tests share one cluster while any of them runs (CI has two cores); each uses keys of its
//! own, so they do not depend on each other's order.

mod common;

use common::{hex, new_agent, spawn_miner, wait_for, Processes};
use deai_api::views::{
    AccountView, CoordinatorMemberView, ErrorBody, MinerView, ProposalActionView, ProposalList, ProposalView,
    ProviderView,
};
use deai_api::Code;
use deai_client::{Coordinators, Participant};
use deai_protocol::message::{DevFaucet, LockStake, Message, Propose};
use deai_protocol::params::{ParamChange, ProposalAction, TOKEN};
use deai_protocol::types::AssetId;
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, Weak};

/// The voting period of the shared cluster's genesis, in ms: long enough to vote in, short
/// enough for a test to see a proposal close.
const VOTING_PERIOD_MS: u64 = 15_000;

/// A JSON value as the API view the binding's type names.
macro_rules! typed {
    ($value:expr) => {{
        let value: Value = $value;
        serde_json::from_value(value.clone()).unwrap_or_else(|e| panic!("{e}: {value}"))
    }};
}

struct Cluster {
    processes: Processes,
    /// Held for the processes' data; removed when the last test using the cluster ends.
    dir: tempfile::TempDir,
}

impl Cluster {
    fn addresses(&self) -> String {
        self.processes.nodes.iter().map(|n| n.http.clone()).collect::<Vec<_>>().join(",")
    }

    fn key_file(&self, seed: u8) -> PathBuf {
        let path = self.dir.path().join(format!("key-{seed}.key"));
        std::fs::write(&path, hex(&[seed; 32])).unwrap();
        path
    }

    fn participant(&self, seed: u8) -> Participant {
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        Participant::connect(key, Coordinators::new(&self.addresses()).unwrap()).unwrap()
    }

    /// A participant with `tokens` from the faucet, `staked` of them locked as stake.
    fn funded(&self, seed: u8, tokens: u128, staked: u128) -> Participant {
        let me = self.participant(seed);
        me.submit_accepted(Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: tokens * TOKEN })).unwrap();
        if staked > 0 {
            me.submit_accepted(Message::LockStake(LockStake { asset: AssetId::NATIVE, amount: staked * TOKEN }))
                .unwrap();
        }
        me
    }

    /// A linearizable read of `path` through node `i`, typed.
    fn read(&self, i: usize, path: &str) -> Value {
        let mut answer = new_agent().get(&self.processes.url(i, path)).call().unwrap();
        assert!(answer.status().is_success(), "GET {path}: HTTP {}", answer.status());
        answer.body_mut().read_json().unwrap()
    }

    /// Runs `deai <role> --json --coordinator ... --key <seed's key> <args>`: its parsed stdout
    /// and whether it exited with success.
    fn run(&self, role: &str, seed: u8, args: &[&str]) -> (bool, Value) {
        let out = Command::new(env!("CARGO_BIN_EXE_deai"))
            .args([role, "--json", "--coordinator", &self.addresses()])
            .arg("--key")
            .arg(self.key_file(seed))
            .args(args)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let parsed = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
            panic!("deai {role} {args:?} printed no such JSON ({e}): {stdout} {}", String::from_utf8_lossy(&out.stderr))
        });
        (out.status.success(), parsed)
    }

    /// Like [`run`](Self::run), for a command that must succeed.
    fn ok(&self, role: &str, seed: u8, args: &[&str]) -> Value {
        let (success, value) = self.run(role, seed, args);
        assert!(success, "deai {role} {args:?} failed");
        value
    }

    /// Runs `deai <role> --coordinator ... --key <seed's key> <args>` for people; what it
    /// printed, once it exited with success.
    fn text(&self, role: &str, seed: u8, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_deai"))
            .args([role, "--coordinator", &self.addresses()])
            .arg("--key")
            .arg(self.key_file(seed))
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "deai {role} {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    }

    /// Runs a command that must fail; the API's error object it printed.
    fn refused(&self, role: &str, seed: u8, args: &[&str]) -> ErrorBody {
        let (success, body) = self.run(role, seed, args);
        assert!(!success, "deai {role} {args:?} succeeded");
        typed!(body)
    }
}

/// The cluster the running tests share, started by the first test that needs it and stopped
/// when the last one holding it ends.
fn cluster() -> Arc<Cluster> {
    static SHARED: Mutex<Weak<Cluster>> = Mutex::new(Weak::new());
    let mut shared = SHARED.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
    if let Some(running) = shared.upgrade() {
        return running;
    }
    let dir = tempfile::tempdir().unwrap();
    let voting = VOTING_PERIOD_MS.to_string();
    let mut processes = Processes::create(dir.path(), &["--network", "deai-cli-gov", "--voting-period-ms", &voting]);
    processes.start_all();
    let started = Arc::new(Cluster { processes, dir });
    *shared = Arc::downgrade(&started);
    started
}

fn account(c: &Cluster, id: &str) -> AccountView {
    typed!(c.read(0, &format!("/v1/ledger/accounts/{id}")))
}

/// A miner's services with their prices, as the ledger holds them.
fn offers(miner: &MinerView) -> Vec<(&str, &str, Option<&str>)> {
    miner
        .services
        .iter()
        .map(|s| (s.service.as_str(), s.price_per_request.as_str(), s.subscription_price.as_deref()))
        .collect()
}

#[test]
fn miner_help_lists_its_commands_and_gov_help_lists_its_own() {
    for (role, commands) in
        [("miner", &["run", "register", "unregister", "status"][..]), ("gov", &["propose", "vote", "show"])]
    {
        let out = Command::new(env!("CARGO_BIN_EXE_deai")).args([role, "--help"]).output().unwrap();
        assert!(out.status.success());
        let help = String::from_utf8_lossy(&out.stdout);
        for command in commands {
            assert!(
                help.lines().any(|l| l.trim_start().starts_with(command)),
                "deai {role} --help lacks {command}: {help}"
            );
        }
    }
}

#[test]
fn register_locks_exactly_the_collateral_and_lists_the_miner_with_its_services() {
    let c = cluster();
    let me = c.funded(61, 1_000, 0);
    let id = me.id_hex();
    let shown: MinerView = typed!(c.ok(
        "miner",
        61,
        &[
            "register",
            "--collateral",
            "150.5",
            "--services",
            "text-generation,image-generation",
            "--capacity",
            "3",
            "--endpoint",
            "http://127.0.0.1:9999",
            "--price-per-request",
            "0.25",
            "--subscription-price",
            "2",
        ],
    ));
    let collateral = 150 * TOKEN + TOKEN / 2;
    assert_eq!(
        account(&c, &id).balance,
        (1_000 * TOKEN - collateral).to_string(),
        "exactly the collateral left the balance"
    );
    let miner: MinerView = typed!(c.read(1, &format!("/v1/miners/{id}")));
    assert_eq!(miner.status, "active");
    assert_eq!(miner.collateral, collateral.to_string());
    assert_eq!(miner.capacity, 3);
    assert_eq!(miner.endpoint, "http://127.0.0.1:9999");
    let services = offers(&miner);
    let quarter = (TOKEN / 4).to_string();
    let two = (2 * TOKEN).to_string();
    assert_eq!(
        services,
        vec![
            ("image-generation", quarter.as_str(), Some(two.as_str())),
            ("text-generation", quarter.as_str(), Some(two.as_str()))
        ]
    );
    assert_eq!(shown.collateral, miner.collateral, "the command prints what the ledger holds");
    let listed: Vec<ProviderView> = typed!(c.read(2, "/v1/miners"));
    let entry = listed.iter().find(|m| m.id == id).expect("the provider list holds the new miner");
    assert_eq!(entry.services, vec!["image-generation".to_string(), "text-generation".to_string()]);
}

#[test]
fn unregister_returns_the_collateral_and_takes_the_miner_off_the_list() {
    let c = cluster();
    let me = c.funded(62, 500, 0);
    let id = me.id_hex();
    let _: MinerView = typed!(c.ok(
        "miner",
        62,
        &["register", "--collateral", "200", "--services", "text-embedding", "--endpoint", "http://127.0.0.1:9998"],
    ));
    assert_eq!(account(&c, &id).balance, (300 * TOKEN).to_string());
    let shown: MinerView = typed!(c.ok("miner", 62, &["unregister"]));
    // Nothing in flight: the ledger returns the collateral at once (SPEC 5.10).
    assert_eq!(shown.status, "unregistered");
    let miner: MinerView = typed!(c.read(0, &format!("/v1/miners/{id}")));
    assert_eq!((miner.status.as_str(), miner.collateral.as_str()), ("unregistered", "0"));
    assert_eq!(account(&c, &id).balance, (500 * TOKEN).to_string(), "the whole collateral came back");
    let listed: Vec<ProviderView> = typed!(c.read(1, "/v1/miners"));
    assert!(!listed.iter().any(|m| m.id == id), "an unregistered miner is no provider");
    // A second unregistration is refused with the ledger's code, and changes nothing.
    assert_eq!(c.refused("miner", 62, &["unregister"]).code, Code::UnknownMiner);
    assert_eq!(account(&c, &id).balance, (500 * TOKEN).to_string());
}

#[test]
fn run_registers_again_a_miner_that_unregistered() {
    let c = cluster();
    let me = c.funded(71, 400, 0);
    let id = me.id_hex();
    let _: MinerView = typed!(c.ok(
        "miner",
        71,
        &["register", "--collateral", "100", "--services", "text-generation", "--endpoint", "http://127.0.0.1:9995"],
    ));
    let _: MinerView = typed!(c.ok("miner", 71, &["unregister"]));
    let _running = spawn_miner(c.dir.path(), [71; 32], &c.addresses(), "text-embedding", &["--collateral", "110"]);
    let back: MinerView = wait_for("the miner registered again", || {
        let view: MinerView = typed!(c.read(0, &format!("/v1/miners/{id}")));
        (view.status == "active").then_some(view)
    });
    assert_eq!(back.collateral, (110 * TOKEN).to_string());
    assert_eq!(back.services.iter().map(|s| s.service.as_str()).collect::<Vec<_>>(), vec!["text-embedding"]);
    assert_eq!(account(&c, &id).balance, (290 * TOKEN).to_string());
}

#[test]
fn status_shows_what_the_ledger_holds_about_a_miner() {
    let c = cluster();
    let me = c.funded(63, 300, 0);
    let id = me.id_hex();
    let _: MinerView = typed!(c.ok(
        "miner",
        63,
        &[
            "register",
            "--collateral",
            "120",
            "--services",
            "text-generation",
            "--capacity",
            "5",
            "--endpoint",
            "http://127.0.0.1:9997"
        ],
    ));
    let own: MinerView = typed!(c.ok("miner", 63, &["status"]));
    // Another key asks about this miner by its id.
    let by_id: MinerView = typed!(c.ok("miner", 70, &["status", &id]));
    let ledger: MinerView = typed!(c.read(2, &format!("/v1/miners/{id}")));
    for shown in [&own, &by_id] {
        assert_eq!(shown.id, id);
        assert_eq!(shown.status, ledger.status);
        assert_eq!(shown.collateral, (120 * TOKEN).to_string());
        assert_eq!(shown.capacity, 5);
        assert_eq!(offers(shown), offers(&ledger));
        assert_eq!(shown.reputation_milli, 50_000, "a new miner has 50.000 (SPEC 5.5)");
        assert_eq!((shown.in_flight, shown.served, shown.failed, shown.timed_out), (0, 0, 0, 0));
        assert!(shown.recent_payouts.is_empty());
    }
    // For people: amounts in tokens.
    let text = c.text("miner", 70, &["status", &id]);
    assert!(text.contains("collateral    120 tokens"), "{text}");
    assert!(text.contains("reputation    50.000 of 100"), "{text}");
}

/// The newest proposal `proposer` (hex id) opened, through the API.
fn newest_of(c: &Cluster, proposer: &str) -> ProposalView {
    let list: ProposalList = typed!(c.read(0, "/v1/proposals"));
    list.proposals.into_iter().rev().find(|p| p.proposer == proposer).expect("the proposer's proposal is listed")
}

#[test]
fn propose_opens_a_proposal_with_the_right_action() {
    let c = cluster();
    let me = c.funded(64, 1_000, 400);
    let shown: ProposalView = typed!(c.ok("gov", 64, &["propose", "set-param", "order_timeout_ms", "120000"]));
    let read: ProposalView = typed!(c.read(1, &format!("/v1/proposals/{}", shown.id)));
    assert_eq!(read.proposer, me.id_hex());
    assert_eq!(read.state, "open");
    assert_eq!(
        read.action,
        ProposalActionView::SetParam { name: "order_timeout_ms".into(), value: "120000".into(), asset: None }
    );
    assert_eq!(read.ends_ms, read.opened_ms + VOTING_PERIOD_MS);
    // An amount parameter is written in tokens and carried in base units.
    let amount: ProposalView = typed!(c.ok("gov", 64, &["propose", "set-param", "min_collateral", "50.5"]));
    let read: ProposalView = typed!(c.read(2, &format!("/v1/proposals/{}", amount.id)));
    let value = (50 * TOKEN + TOKEN / 2).to_string();
    assert_eq!(read.action, ProposalActionView::SetParam { name: "min_collateral".into(), value, asset: None });
    let weight: ProposalView = typed!(c.ok("gov", 64, &["propose", "set-service-weight", "image-generation", "6"]));
    let read: ProposalView = typed!(c.read(0, &format!("/v1/proposals/{}", weight.id)));
    assert_eq!(read.action, ProposalActionView::SetServiceWeight { service: "image-generation".into(), weight: 6 });
    assert!(weight.id > amount.id && amount.id > shown.id);

    // Every other action, each read back as the ledger holds it.
    let miner = c.funded(72, 200, 0);
    let _: MinerView = typed!(c.ok(
        "miner",
        72,
        &["register", "--collateral", "100", "--services", "text-generation", "--endpoint", "http://127.0.0.1:9994"],
    ));
    let ejected = miner.id_hex();
    let (first, second) = (hex(&[1; 32]), hex(&[2; 32]));
    let members = [format!("{first}:{second}"), format!("{second}:{first}")];
    let cases: Vec<(Vec<&str>, ProposalActionView)> = vec![
        (
            vec!["set-asset-price", "1", "2000000"],
            ProposalActionView::SetParam { name: "asset_price_ppm".into(), value: "2000000".into(), asset: Some(1) },
        ),
        (
            vec!["remove-service", "text-embedding"],
            ProposalActionView::RemoveService { service: "text-embedding".into() },
        ),
        (vec!["eject-miner", ejected.as_str()], ProposalActionView::EjectMiner { miner: ejected.clone() }),
        (
            vec!["set-coordinators", members[0].as_str(), members[1].as_str()],
            ProposalActionView::SetCoordinators {
                coordinators: vec![
                    CoordinatorMemberView { id: first.clone(), vrf_key: second.clone() },
                    CoordinatorMemberView { id: second.clone(), vrf_key: first.clone() },
                ],
            },
        ),
    ];
    for (args, expected) in cases {
        let mut command = vec!["propose"];
        command.extend(&args);
        let opened: ProposalView = typed!(c.ok("gov", 64, &command));
        let read: ProposalView = typed!(c.read(1, &format!("/v1/proposals/{}", opened.id)));
        assert_eq!(read.action, expected, "deai gov {command:?}");
    }
}

#[test]
fn a_vote_moves_the_tally_by_the_voters_locked_stake() {
    let c = cluster();
    let proposer = c.funded(65, 200, 100);
    let _yes = c.funded(66, 400, 300);
    let _no = c.funded(67, 100, 50);
    let action = ProposalAction::SetParam(ParamChange::FreezeMs(300_000));
    proposer.submit_accepted(Message::Propose(Propose { action })).unwrap();
    let id = newest_of(&c, &proposer.id_hex()).id;
    let before: ProposalView = typed!(c.read(0, &format!("/v1/proposals/{id}")));
    assert_eq!((before.yes.as_str(), before.no.as_str()), ("0", "0"));

    let after_yes: ProposalView = typed!(c.ok("gov", 66, &["vote", &id.to_string(), "yes"]));
    assert_eq!(after_yes.yes, (300 * TOKEN).to_string(), "a yes weighs the voter's 300 locked tokens");
    let read: ProposalView = typed!(c.read(1, &format!("/v1/proposals/{id}")));
    assert_eq!((read.yes.clone(), read.no.as_str()), ((300 * TOKEN).to_string(), "0"));

    let _: ProposalView = typed!(c.ok("gov", 67, &["vote", &id.to_string(), "no"]));
    let read: ProposalView = typed!(c.read(2, &format!("/v1/proposals/{id}")));
    assert_eq!(read.yes, (300 * TOKEN).to_string());
    assert_eq!(read.no, (50 * TOKEN).to_string());
    assert_eq!(read.votes.len(), 2);
}

#[test]
fn show_lists_proposals_with_their_tallies_until_and_after_they_close() {
    let c = cluster();
    // Far more stake than the other tests lock: this vote alone meets the quorum.
    let me = c.funded(68, 20_000, 10_000);
    let opened: ProposalView = typed!(c.ok("gov", 68, &["propose", "set-service-weight", "text-embedding", "1"]));
    let _: ProposalView = typed!(c.ok("gov", 68, &["vote", &opened.id.to_string(), "yes"]));
    let listed: Vec<ProposalView> = typed!(c.ok("gov", 68, &["show"]));
    let mine = listed.iter().find(|p| p.id == opened.id).expect("show lists the new proposal");
    assert_eq!((mine.state.as_str(), mine.proposer.as_str()), ("open", me.id_hex().as_str()));
    assert_eq!(mine.yes, (10_000 * TOKEN).to_string());

    // The leader's tick closes it when the voting period ends; it stays listed, with its tally.
    wait_for("the proposal to close", || {
        let read: ProposalView = typed!(c.read(0, &format!("/v1/proposals/{}", opened.id)));
        (read.state != "open").then_some(())
    });
    let closed: ProposalView = typed!(c.ok("gov", 68, &["show", &opened.id.to_string()]));
    assert_eq!(closed.state, "passed");
    assert_eq!(closed.yes, (10_000 * TOKEN).to_string());
    assert_eq!(closed.votes.len(), 1);
    let listed: Vec<ProposalView> = typed!(c.ok("gov", 68, &["show"]));
    assert!(listed.iter().any(|p| p.id == opened.id && p.state == "passed"));
    // For people: the tally in tokens.
    let text = c.text("gov", 68, &["show", &opened.id.to_string()]);
    assert!(text.contains("state     passed"), "{text}");
    assert!(text.contains("tally     yes 10000 / no 0 tokens"), "{text}");
    assert!(c.text("gov", 68, &["show"]).contains(&format!("#{:<4} passed", opened.id)));
}

#[test]
fn refusals_print_the_apis_error_body_with_the_right_code() {
    let c = cluster();
    let _ = c.funded(69, 10, 0);
    assert_eq!(c.refused("gov", 69, &["vote", "999999", "yes"]).code, Code::UnknownProposal);
    assert_eq!(c.refused("gov", 69, &["propose", "set-param", "no_such_param", "1"]).code, Code::BadArgument);
    assert_eq!(
        c.refused("gov", 69, &["propose", "set-service-weight", "text-generation", "2"]).code,
        Code::NoVotingPower,
        "a participant without locked stake cannot propose"
    );
    let low = c.refused(
        "miner",
        69,
        &["register", "--collateral", "5", "--services", "text-generation", "--endpoint", "http://127.0.0.1:9996"],
    );
    assert_eq!(low.code, Code::CollateralTooLow);
    assert!(!low.message.is_empty());
    assert_eq!(c.refused("miner", 69, &["status"]).code, Code::NotFound, "no miner with this key");
    assert_eq!(c.refused("miner", 69, &["status", "nothex"]).code, Code::BadId);
}
