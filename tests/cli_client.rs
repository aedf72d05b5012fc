//! `deai client`, one test per command, against a real cluster: three `deai coordinator`
//! processes and a real `deai miner` with the demo backend. Each test drives the client binary
//! with a key of its own and checks the ledger's effect through a read of the API.
//!
//! The tests of this file share one cluster while any of them runs (starting one costs seconds,
//! and CI has two cores); the last test to finish stops it, and a test that finds none starts
//! one.

mod common;

use common::{get_json, hex, new_agent, spawn_miner, wait_for, KilledOnDrop, Processes};
use deai_api::codes::Code;
use deai_api::views::{AccountView, ClientOrdersPage, EpochView, ErrorBody, OrderView, ProviderView};
use deai_client::{Coordinators, Participant};
use deai_protocol::message::{DevFaucet, Message, RegisterMiner, ServiceOffer};
use deai_protocol::params::TOKEN;
use deai_protocol::types::AssetId;
use serde_json::Value;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::{Arc, Mutex, Weak};

/// Reward epochs last this long here, so that the payout tests see epochs close, in ms.
const EPOCH_MS: u64 = 3_000;
/// The service the demo miner offers, which every order here uses.
const TEXT: &str = "text-generation";
/// The service only the hand-registered subscription miner offers, so that no order of the
/// other tests is ever allocated to a miner that does not serve.
const SUBSCRIBED: &str = "text-embedding";

/// The cluster, the miner and the directory their files live in; dropped in this order.
struct Market {
    _miner: KilledOnDrop,
    cluster: Processes,
    miner_id: String,
    coordinators: String,
    dir: tempfile::TempDir,
}

static SHARED: Mutex<Weak<Market>> = Mutex::new(Weak::new());

/// The shared market, started if no test holds one.
fn market() -> Arc<Market> {
    let mut slot = SHARED.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(market) = slot.upgrade() {
        return market;
    }
    let market = Arc::new(Market::start());
    *slot = Arc::downgrade(&market);
    market
}

impl Market {
    fn start() -> Market {
        let dir = tempfile::tempdir().unwrap();
        let epoch_ms = EPOCH_MS.to_string();
        let mut cluster = Processes::create(dir.path(), &["--network", "deai-client-cli", "--epoch-ms", &epoch_ms]);
        cluster.start_all();
        let coordinators = cluster.nodes.iter().map(|n| n.http.clone()).collect::<Vec<_>>().join(",");
        let miner_seed = [61u8; 32];
        let miner_id = hex(ed25519_dalek::SigningKey::from_bytes(&miner_seed).verifying_key().as_bytes());
        let miner = spawn_miner(dir.path(), miner_seed, &coordinators, TEXT, &["--faucet"]);
        let market = Market { _miner: miner, cluster, miner_id, coordinators, dir };
        wait_for("the miner registered and live", || {
            market.providers().into_iter().find(|p| p.id == market.miner_id && p.online).map(|_| ())
        });
        market
    }

    fn api(&self, path: &str) -> Option<Value> {
        get_json(&new_agent(), &self.cluster.url(0, path))
    }

    fn providers(&self) -> Vec<ProviderView> {
        self.api("/v1/miners").and_then(|v| serde_json::from_value(v).ok()).unwrap_or_default()
    }

    fn account(&self, id: &str) -> AccountView {
        let value = wait_for("an account read", || self.api(&format!("/v1/ledger/accounts/{id}")));
        serde_json::from_value(value).expect("an AccountView")
    }

    fn order(&self, id: &str) -> OrderView {
        let value = wait_for("an order read", || self.api(&format!("/v1/orders/{id}")));
        serde_json::from_value(value).expect("an OrderView")
    }

    /// A new client key of this test's own, made with `deai client keygen`.
    fn new_client(&self, name: &str) -> Keyed<'_> {
        let client = Client { market: self, key: self.dir.path().join(format!("{name}.key")) };
        let made = client.json(&["keygen"]).expect("keygen");
        let id = made["id"].as_str().expect("keygen prints the id").to_string();
        Keyed { client, id }
    }
}

struct Client<'a> {
    market: &'a Market,
    key: PathBuf,
}

struct Keyed<'a> {
    client: Client<'a>,
    id: String,
}

impl Client<'_> {
    fn command(&self, json: bool, args: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_deai"));
        command.arg("client");
        if json {
            command.arg("--json");
        }
        command.args(["--coordinator", &self.market.coordinators]).arg("--key").arg(&self.key).args(args);
        command
    }

    /// Runs `deai client --json ARGS`: the JSON it printed, as `Ok` on success and `Err` on a
    /// non-zero exit.
    fn json(&self, args: &[&str]) -> Result<Value, Value> {
        let out = self.command(true, args).output().unwrap();
        parse(args, &out)
    }

    /// Runs `deai client --json ARGS` with `input` on stdin.
    fn json_with_stdin(&self, args: &[&str], input: &[u8]) -> Result<Value, Value> {
        let mut child = self
            .command(true, args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(input).unwrap();
        parse(args, &child.wait_with_output().unwrap())
    }

    /// Runs `deai client ARGS` for people: its stdout, which must be a success.
    fn text(&self, args: &[&str]) -> String {
        let out = self.command(false, args).output().unwrap();
        assert!(out.status.success(), "deai client {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).to_string()
    }
}

fn parse(args: &[&str], out: &Output) -> Result<Value, Value> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let value: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or("")).unwrap_or_else(|e| {
        panic!("deai client {args:?} printed no JSON ({e}): {stdout} {}", String::from_utf8_lossy(&out.stderr))
    });
    if out.status.success() {
        Ok(value)
    } else {
        Err(value)
    }
}

impl<'a> std::ops::Deref for Keyed<'a> {
    type Target = Client<'a>;
    fn deref(&self) -> &Client<'a> {
        &self.client
    }
}

impl Keyed<'_> {
    fn ok(&self, args: &[&str]) -> Value {
        self.json(args).unwrap_or_else(|e| panic!("deai client {args:?} failed: {e}"))
    }

    /// The error a command must end with, as the API's error object.
    fn refused(&self, args: &[&str]) -> ErrorBody {
        let error = self.json(args).expect_err("the command must fail");
        serde_json::from_value(error).expect("an ErrorBody")
    }

    fn account(&self) -> AccountView {
        self.market.account(&self.id)
    }

    /// Faucet, stake and pass: ready for free orders.
    fn with_pass(self) -> Self {
        self.ok(&["faucet", "20"]);
        self.ok(&["stake", "10"]);
        self.ok(&["pass"]);
        self
    }
}

fn base(tokens: u128) -> String {
    (tokens * TOKEN).to_string()
}

#[test]
fn keygen_writes_a_key_once() {
    let market = market();
    let client = market.new_client("keygen");
    assert_eq!(client.id.len(), 64);
    assert_eq!(client.account().last_nonce, 0);
    assert_eq!(client.refused(&["keygen"]).code, Code::LocalFailure, "a key file is never overwritten");
}

#[test]
fn faucet_credits_exactly_the_amount() {
    let market = market();
    let client = market.new_client("faucet");
    let answer = client.ok(&["faucet", "12.5"]);
    assert_eq!(answer["amount"], "12500000000");
    let account = client.account();
    assert_eq!(account.balance, (12 * TOKEN + TOKEN / 2).to_string());
    assert_eq!(account.locked, "0");
    assert_eq!(client.refused(&["faucet", "1.0000000001"]).code, Code::BadArgument);
    assert_eq!(client.account().balance, (12 * TOKEN + TOKEN / 2).to_string(), "a refused amount sends nothing");
}

#[test]
fn stake_locks_and_unstake_unlocks_exactly_the_amount() {
    let market = market();
    let client = market.new_client("stake");
    client.ok(&["faucet", "50"]);
    client.ok(&["stake", "30"]);
    let account = client.account();
    assert_eq!((account.balance, account.locked), (base(20), base(30)));
    client.ok(&["unstake", "12.25"]);
    let account = client.account();
    assert_eq!(account.balance, (32 * TOKEN + TOKEN / 4).to_string());
    assert_eq!(account.locked, (17 * TOKEN + 3 * TOKEN / 4).to_string());
    assert_eq!(client.refused(&["unstake", "18"]).code, Code::InsufficientLocked);
    assert_eq!(client.refused(&["stake", "1", "--asset", "99"]).code, Code::UnknownAsset);
}

#[test]
fn pass_and_release_hold_the_stake_and_give_it_back() {
    let market = market();
    let client = market.new_client("pass");
    assert_eq!(client.refused(&["pass"]).code, Code::InsufficientStake);
    client.ok(&["faucet", "10"]);
    client.ok(&["stake", "10"]);
    client.ok(&["pass"]);
    assert_eq!(client.account().pass, "valid");
    let held = client.refused(&["unstake", "1"]);
    assert_eq!(held.code, Code::PassHeld);
    assert_eq!(client.account().locked, base(10), "the refused unlock changed nothing");
    client.ok(&["release"]);
    let account = client.account();
    assert_eq!((account.pass.as_str(), account.locked, account.balance), ("none", "0".to_string(), base(10)));
}

#[test]
fn balance_shows_what_the_ledger_holds() {
    let market = market();
    let client = market.new_client("balance");
    client.ok(&["faucet", "25"]);
    client.ok(&["stake", "10"]);
    client.ok(&["pass"]);
    let shown: AccountView = serde_json::from_value(client.ok(&["balance"])).expect("an AccountView");
    assert_eq!((shown.balance.as_str(), shown.locked.as_str()), (base(15).as_str(), base(10).as_str()));
    assert_eq!(shown.effective_stake, base(10));
    assert_eq!(shown.pass, "valid");
    assert_eq!(shown.last_nonce, client.account().last_nonce);
    let text = client.text(&["balance"]);
    assert!(text.contains("free balance     15 (asset 0)"), "{text}");
    assert!(text.contains("locked stake     10 (asset 0)"), "{text}");
}

#[test]
fn withdraw_takes_exactly_the_amount_out() {
    let market = market();
    let client = market.new_client("withdraw");
    client.ok(&["faucet", "9"]);
    client.ok(&["withdraw", "2.5"]);
    assert_eq!(client.account().balance, (6 * TOKEN + TOKEN / 2).to_string());
    assert_eq!(client.refused(&["withdraw", "7"]).code, Code::InsufficientBalance);
}

#[test]
fn an_order_from_a_file_and_one_from_stdin_reach_the_miner() {
    let market = market();
    let client = market.new_client("order").with_pass();
    let file = market.dir.path().join("prompt.txt");
    std::fs::write(&file, "alpha beta gamma").unwrap();
    let served = client.ok(&["order", TEXT, "--prompt-file", file.to_str().unwrap()]);
    assert_eq!(served["output"], "gamma beta alpha (3 words; demo service)");
    assert_eq!(served["miner"], market.miner_id.as_str());
    let order = served["order"].as_str().unwrap().to_string();
    assert_eq!(market.order(&order).status, "completed");

    let served = client.json_with_stdin(&["order", TEXT, "--prompt-file", "-"], b"one two").expect("served");
    assert_eq!(served["output"], "two one (2 words; demo service)");
    let text = client.text(&["order", TEXT, "left right"]);
    assert!(text.contains("output (hash checked):\nright left (2 words; demo service)"), "{text}");
}

#[test]
fn an_oversized_prompt_is_refused_before_sending() {
    let market = market();
    let client = market.new_client("oversized").with_pass();
    let nonce = client.account().last_nonce;
    let file = market.dir.path().join("large-prompt.txt");
    std::fs::write(&file, "x".repeat(16 * 1024 + 1)).unwrap();
    let refused = client.refused(&["order", TEXT, "--prompt-file", file.to_str().unwrap()]);
    assert_eq!(refused.code, Code::PayloadTooLarge);
    assert!(refused.message.contains("16384 bytes"), "the limit is named: {}", refused.message);
    assert_eq!(client.account().last_nonce, nonce, "nothing was sent");
    // Exactly the limit is fine.
    std::fs::write(&file, "x".repeat(16 * 1024)).unwrap();
    client.ok(&["order", TEXT, "--prompt-file", file.to_str().unwrap(), "--no-wait"]);
}

#[test]
fn an_unknown_service_is_refused_with_the_services_the_ledger_knows() {
    let market = market();
    let client = market.new_client("unknown-service").with_pass();
    let refused = client.refused(&["order", "poetry", "a prompt"]);
    assert_eq!(refused.code, Code::UnknownService);
    for known in ["text-generation", "text-embedding", "image-generation"] {
        assert!(refused.message.contains(known), "{known} is listed: {}", refused.message);
    }
}

#[test]
fn a_charged_order_pays_the_miner_exactly_the_price() {
    let market = market();
    let client = market.new_client("charged");
    client.ok(&["faucet", "5"]);
    let miner_before: u128 = market.account(&market.miner_id).balance.parse().unwrap();
    let served = client.ok(&["order", TEXT, "paid for", "--pay", "2", "--miner", &market.miner_id]);
    assert_eq!(served["output"], "for paid (2 words; demo service)");
    let account = client.account();
    assert_eq!((account.balance, account.escrow), (base(3), "0".to_string()), "the price left, nothing held");
    let miner_after: u128 = market.account(&market.miner_id).balance.parse().unwrap();
    assert!(miner_after > miner_before, "the miner got the price less the fee");
    let listed: ClientOrdersPage = serde_json::from_value(client.ok(&["orders"])).unwrap();
    assert_eq!(listed.orders[0].mode, "charged");
    assert_eq!(listed.orders[0].price.as_deref(), Some(base(2).as_str()));
}

/// Registers a miner by hand that sells subscriptions to [`SUBSCRIBED`] at `price` a period; it
/// never serves, and no test orders its service in another mode.
fn subscription_miner(market: &Market, price: u128) -> String {
    let key = ed25519_dalek::SigningKey::from_bytes(&[62u8; 32]);
    let id = hex(key.verifying_key().as_bytes());
    if market.providers().iter().any(|p| p.id == id) {
        return id;
    }
    let me = Participant::connect(key, Coordinators::new(&market.coordinators).unwrap()).unwrap();
    let collateral = 100 * TOKEN;
    me.submit_accepted(Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: collateral })).unwrap();
    me.submit_accepted(Message::RegisterMiner(RegisterMiner {
        collateral,
        capacity: 1,
        endpoint: "http://127.0.0.1:9".into(),
        services: vec![ServiceOffer {
            service: SUBSCRIBED.into(),
            price_per_request: TOKEN,
            subscription_price: Some(price),
        }],
    }))
    .unwrap();
    id
}

#[test]
fn subscribe_pays_the_periods_and_subscription_orders_are_put() {
    let market = market();
    let seller = subscription_miner(&market, 3 * TOKEN);
    let client = market.new_client("subscribe");
    client.ok(&["faucet", "10"]);
    client.ok(&["subscribe", &seller, SUBSCRIBED, "--periods", "2"]);
    assert_eq!(client.account().balance, base(4), "two periods at 3 tokens each");
    assert_eq!(client.refused(&["subscribe", &seller, TEXT]).code, Code::NoSubscriptionOffer);
    let put = client.ok(&["order", SUBSCRIBED, "words", "--subscription", &seller, "--no-wait"]);
    let listed: ClientOrdersPage = serde_json::from_value(client.ok(&["orders"])).unwrap();
    assert_eq!(listed.orders[0].id, put["order"].as_str().unwrap());
    assert_eq!(listed.orders[0].mode, "subscription");
}

#[test]
fn status_reads_an_order_put_without_waiting() {
    let market = market();
    let client = market.new_client("status").with_pass();
    let put = client.ok(&["order", TEXT, "later please", "--no-wait"]);
    let order = put["order"].as_str().expect("the order id").to_string();
    let view = wait_for("the order served", || {
        let view: OrderView = serde_json::from_value(client.ok(&["status", &order])).ok()?;
        (view.status == "completed").then_some(view)
    });
    assert_eq!(view.id, order);
    assert_eq!(view.miner.as_deref(), Some(market.miner_id.as_str()));
    assert_eq!(view.output_hash, market.order(&order).output_hash);
    assert_eq!(client.refused(&["status", "not-an-id"]).code, Code::BadArgument);
    assert_eq!(client.refused(&["status", &"0".repeat(64)]).code, Code::NotFound);
}

#[test]
fn orders_lists_this_clients_orders_newest_first() {
    let market = market();
    let client = market.new_client("orders").with_pass();
    let first = client.ok(&["order", TEXT, "first", "--no-wait"])["order"].as_str().unwrap().to_string();
    let second = client.ok(&["order", TEXT, "second", "--no-wait"])["order"].as_str().unwrap().to_string();
    let page: ClientOrdersPage = serde_json::from_value(client.ok(&["orders"])).unwrap();
    let ids: Vec<&str> = page.orders.iter().map(|o| o.id.as_str()).collect();
    assert_eq!(ids, vec![second.as_str(), first.as_str()]);
    assert!(page.orders.iter().all(|o| o.mode == "free" && o.service == TEXT));
    let older: ClientOrdersPage = serde_json::from_value(client.ok(&["orders", "--before", &second])).unwrap();
    assert_eq!(older.orders.iter().map(|o| o.id.as_str()).collect::<Vec<_>>(), vec![first.as_str()]);
}

#[test]
fn rate_records_the_rating() {
    let market = market();
    let client = market.new_client("rate").with_pass();
    let order = client.ok(&["order", TEXT, "rate me"])["order"].as_str().unwrap().to_string();
    client.ok(&["rate", &order, "fair"]);
    assert_eq!(market.order(&order).status, "rated");
    let page: ClientOrdersPage = serde_json::from_value(client.ok(&["orders"])).unwrap();
    assert_eq!(page.orders[0].rating.as_deref(), Some("fair"));
    assert_eq!(client.refused(&["rate", &order, "splendid"]).code, Code::BadArgument, "only good, fair or bad");
}

#[test]
fn report_opens_one_non_delivery_report() {
    let market = market();
    let client = market.new_client("report").with_pass();
    let order = client.ok(&["order", TEXT, "report me"])["order"].as_str().unwrap().to_string();
    client.ok(&["report", &order]);
    assert_eq!(client.refused(&["report", &order]).code, Code::ReportAlreadyOpen, "the ledger holds the report");
    let other = market.new_client("report-other");
    assert_eq!(other.refused(&["report", &order]).code, Code::NotOrderOwner);
}

#[test]
fn providers_lists_the_miner_with_its_services_and_prices() {
    let market = market();
    let client = market.new_client("providers");
    let list: Vec<ProviderView> = serde_json::from_value(client.ok(&["providers"])).unwrap();
    let miner = list.iter().find(|p| p.id == market.miner_id).expect("the miner is listed");
    assert_eq!(miner.offers.len(), 1);
    assert_eq!((miner.offers[0].service.as_str(), miner.offers[0].price_per_request.as_str()), (TEXT, "0"));
    let text = client.text(&["providers"]);
    let line = text.lines().find(|l| l.starts_with(&market.miner_id)).expect("a line for the miner");
    assert!(line.contains("text-generation (0 / -)"), "{line}");
}

#[test]
fn epochs_lists_closed_epochs_newest_first() {
    let market = market();
    let client = market.new_client("epochs");
    wait_for("two closed epochs", || market.api("/v1/epochs/1"));
    let list: Vec<EpochView> = serde_json::from_value(client.ok(&["epochs"])).unwrap();
    assert!(list.len() >= 2);
    assert!(list.windows(2).all(|w| w[0].number > w[1].number), "newest first");
    let newest = &list[0];
    let read: EpochView =
        serde_json::from_value(market.api(&format!("/v1/epochs/{}", newest.number)).unwrap()).unwrap();
    assert_eq!(
        (read.reward.as_str(), read.payouts_root.as_str()),
        (newest.reward.as_str(), newest.payouts_root.as_str())
    );
    let limited: Vec<EpochView> = serde_json::from_value(client.ok(&["epochs", "--limit", "1"])).unwrap();
    assert_eq!(limited.len(), 1);
}

#[test]
fn payouts_lists_what_the_miner_was_paid() {
    let market = market();
    let client = market.new_client("payouts").with_pass();
    let order = client.ok(&["order", TEXT, "count me in"])["order"].as_str().unwrap().to_string();
    assert_eq!(market.order(&order).status, "completed");
    let (epoch, amount) = wait_for("an epoch that paid the miner", || {
        let list: Vec<EpochView> = serde_json::from_value(market.api("/v1/epochs")?).ok()?;
        list.iter()
            .find_map(|e| e.payouts.iter().find(|(m, _)| *m == market.miner_id).map(|(_, a)| (e.number, a.clone())))
    });
    let listed = client.ok(&["payouts", "--miner", &market.miner_id]);
    let found = listed
        .as_array()
        .expect("a list of payouts")
        .iter()
        .find(|p| p["epoch"] == epoch)
        .unwrap_or_else(|| panic!("epoch {epoch} is listed: {listed}"));
    assert_eq!(found["amount"], amount.as_str());
    assert_eq!(found["miner"], market.miner_id.as_str());
    let mine = client.ok(&["payouts"]);
    assert_eq!(mine.as_array().map(Vec::len), Some(0), "a client that never served was paid nothing");
}

#[test]
fn a_json_error_is_the_api_error_object_with_its_code() {
    let market = market();
    let client = market.new_client("errors");
    let out = client.command(true, &["order", TEXT, "no pass yet"]).output().unwrap();
    assert!(!out.status.success());
    let body: ErrorBody = serde_json::from_slice(&out.stdout).expect("the error as JSON on stdout");
    assert_eq!(body.code, Code::NoServicePass);
    assert!(String::from_utf8_lossy(&out.stderr).contains("deai client pass"), "the next step is said");
    assert_eq!(client.refused(&["stake", "ten"]).code, Code::BadArgument);
}

#[test]
fn help_lists_every_command_and_the_amount_convention() {
    let out = Command::new(env!("CARGO_BIN_EXE_deai")).args(["client", "--help"]).output().unwrap();
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout);
    let commands = [
        "keygen",
        "balance",
        "faucet",
        "stake",
        "unstake",
        "pass",
        "release",
        "order",
        "subscribe",
        "status",
        "orders",
        "rate",
        "report",
        "providers",
        "epochs",
        "payouts",
        "withdraw",
    ];
    for command in commands {
        assert!(
            help.lines().any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "{command} is listed:\n{help}"
        );
    }
    assert!(help.contains("base units"), "the help states the amount convention:\n{help}");
    let out = Command::new(env!("CARGO_BIN_EXE_deai")).args(["client", "order", "--help"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("16384 bytes"), "the order help names the prompt limit");
}
