//! `deai client`: a participant's side of the marketplace, for people (and `--json` for scripts).
//!
//! Money: faucet (dev networks), stake and unstake per asset (SPEC 5.1), withdraw, balance.
//! Service: pass and release (SPEC 5.1), order in one of the three modes of SPEC 5.9 (free with
//! a pass, charged per request, or under a subscription), subscribe, status, orders, rate
//! (SPEC 5.5), report a non-delivery (SPEC 5.8). Market: providers with their prices, closed
//! epochs and the payouts of SPEC 5.7.
//!
//! An order waits for the miner, fetches the output from the miner's endpoint with a signed
//! request and checks it against the hash the miner claimed before printing it. Every answer
//! goes through [`crate::output`]: the same views the API answers with for `--json`, sentences
//! and tables for people.

use crate::output::{emit, BadArgument, Printed, Refused};
use crate::sdk::{ClientError, Participant, Rejected};
use crate::units::{format_base_units, format_tokens, parse_tokens};
use anyhow::{bail, Context};
use clap::Subcommand;
use deai_api::codes::Code;
use deai_api::hex::{hex, unhex32};
use deai_api::signed_requests::output_request_bytes;
use deai_api::views::{
    AccountView, AssetAmount, ClientOrdersPage, EpochView, OrderView, PayoutView, ProviderView, ServiceCatalog,
    MAX_EPOCHS_PER_REQUEST,
};
use deai_clock::Clock;
use deai_protocol::message::{
    AcquirePass, DevFaucet, LockStake, Message, OrderMode, Payload, PutOrder, Rate, ReleasePass, ReportNonDelivery,
    Subscribe, UnlockStake, Withdraw,
};
use deai_protocol::types::{AssetId, OrderId, ParticipantId, Rating};
use deai_protocol::Ledger;
use ed25519_dalek::Signer;
use serde_json::json;
use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Pause between order status polls, in milliseconds.
pub const ORDER_POLL_MS: u64 = 20;
/// How long one long poll of an order may wait on the coordinator, in milliseconds.
pub const ORDER_LONG_POLL_MS: u64 = 1_000;
/// How often the spinner moves while an order waits, in milliseconds.
pub const SPINNER_TICK_MS: u64 = 100;

/// A client: stake, pass, order, fetch and check outputs, rate, and read the market.
#[derive(clap::Args, Debug)]
pub struct ClientArgs {
    /// HTTP addresses of coordinators (`host:port,...`); any member will do, and the client
    /// fails over among them.
    #[arg(long, env = "DEAI_COORDINATORS", default_value = "127.0.0.1:8100")]
    pub coordinator: String,
    /// The client's key file (make one with `deai client keygen`).
    #[arg(long, env = "DEAI_CLIENT_KEY_FILE", default_value = "client.key")]
    pub key: PathBuf,
    /// Print JSON (errors too, as the API's error object); amounts in base units.
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub action: ClientAction,
}

/// Runs `deai client`.
pub fn run_client(args: &ClientArgs) -> anyhow::Result<()> {
    emit(args.json, run_action(args))
}

fn run_action(args: &ClientArgs) -> anyhow::Result<Printed> {
    if matches!(args.action, ClientAction::Keygen) {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness for a new key: {e}"))?;
        deai_api::key_file::save_seed(&args.key, &seed)?;
        let id = hex(ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().as_bytes());
        let file = args.key.display().to_string();
        return Ok(Printed::new(format!("wrote {file} (id {id})"), &json!({ "file": file, "id": id })));
    }
    let key = deai_api::key_file::load_signing_key(&args.key)?;
    let me = Participant::connect(key, crate::Coordinators::new(&args.coordinator)?)?;
    run(&me, &args.action, Spinner::wanted(args.json))
}

/// A rating as the command line writes it: `good`, `fair` or `bad`. Parsed here rather than by
/// clap, so that a wrong one is a `bad_argument` error like any other (JSON with `--json`).
pub fn parse_rating(text: &str) -> anyhow::Result<Rating> {
    match text {
        "good" => Ok(Rating::Good),
        "fair" => Ok(Rating::Fair),
        "bad" => Ok(Rating::Bad),
        other => Err(BadArgument(format!("a rating is good, fair or bad, not {other:?}")).into()),
    }
}

#[derive(Subcommand, Debug)]
pub enum ClientAction {
    /// Writes a new key file (refuses to overwrite one).
    Keygen,
    /// Free balance and locked stake per asset, effective stake, pass, freeze and escrow.
    Balance,
    /// Takes tokens from the dev faucet (dev networks only).
    Faucet {
        /// Tokens to take, with up to 9 decimals (`12`, `0.5`).
        tokens: String,
        /// The asset (0 is the native token; others as the genesis lists them).
        #[arg(long, default_value_t = 0)]
        asset: u32,
    },
    /// Locks free balance as stake (SPEC 5.1); stake backs the pass and the order threshold.
    Stake {
        /// Tokens to lock, with up to 9 decimals.
        tokens: String,
        /// The asset to lock (0 is the native token).
        #[arg(long, default_value_t = 0)]
        asset: u32,
    },
    /// Moves locked stake back to the free balance; only while no pass is held (release it first).
    Unstake {
        /// Tokens to unlock, with up to 9 decimals.
        tokens: String,
        /// The asset to unlock (0 is the native token).
        #[arg(long, default_value_t = 0)]
        asset: u32,
    },
    /// Acquires the service pass that free orders need (it needs one stake unit locked).
    Pass,
    /// Gives the pass back; the stake unlocks once in-flight orders finish.
    Release,
    /// Orders a service, waits for the output, checks its hash and prints it.
    ///
    /// The prompt is the PROMPT argument, or a file (`--prompt-file`, `-` for stdin). It may be
    /// at most the ledger's max_inline_payload_bytes (16384 bytes unless governance changed it);
    /// a larger prompt is refused here, before anything is sent. Free orders (the default) need
    /// a pass; `--pay` orders are charged per request (SPEC 5.9); `--subscription` orders are
    /// served by a miner you subscribed to.
    Order {
        /// The service, e.g. `text-generation` (`deai client providers` lists them).
        service: String,
        /// The prompt text; leave it out to use --prompt-file.
        prompt: Option<String>,
        /// Read the prompt from this file, or from stdin for `-`.
        #[arg(long, conflicts_with = "prompt")]
        prompt_file: Option<PathBuf>,
        /// Pay this many tokens for the order (charged mode); escrowed now, paid to the miner
        /// on completion, refunded on expiry.
        #[arg(long, conflicts_with = "subscription")]
        pay: Option<String>,
        /// With --pay: the miner that must serve it (64 hex digits); the price must meet its
        /// asking price.
        #[arg(long, requires = "pay")]
        miner: Option<String>,
        /// Order under your subscription with this miner (64 hex digits).
        #[arg(long)]
        subscription: Option<String>,
        /// Print the order id and return at once, without waiting for the output.
        #[arg(long)]
        no_wait: bool,
        /// Longest to wait for the output, in milliseconds.
        #[arg(long, default_value_t = 30_000)]
        wait_ms: u64,
    },
    /// Buys subscription periods with a miner for a service (SPEC 5.9), paid now.
    Subscribe {
        /// The miner's id, 64 hex digits (`deai client providers` lists miners and prices).
        miner: String,
        /// The service to subscribe to.
        service: String,
        /// How many periods to buy (each lasts the ledger's subscription_period_ms).
        #[arg(long, default_value_t = 1)]
        periods: u32,
    },
    /// An order's status, its miner and the output hash it claimed.
    Status {
        /// The order id, 64 hex digits.
        order: String,
    },
    /// This client's orders that the ledger still holds, newest first.
    Orders {
        /// Only orders placed before this one (the last id of the previous page).
        #[arg(long)]
        before: Option<String>,
    },
    /// Rates a served order (SPEC 5.5).
    Rate {
        /// The order id, 64 hex digits.
        order: String,
        /// good, fair or bad.
        rating: String,
    },
    /// Reports that the miner did not deliver a claimed order's output (SPEC 5.8).
    Report {
        /// The order id, 64 hex digits.
        order: String,
    },
    /// Registered miners: liveness, reputation, load, and each service with its prices.
    Providers,
    /// Closed reward epochs, newest first: reward, payouts, certification.
    Epochs {
        /// Most epochs to list (at most 100).
        #[arg(long, default_value_t = MAX_EPOCHS_PER_REQUEST)]
        limit: usize,
    },
    /// What a miner was paid per closed epoch (SPEC 5.7).
    Payouts {
        /// The miner's id, 64 hex digits; this key's id if left out.
        #[arg(long)]
        miner: Option<String>,
    },
    /// Takes free balance out of the ledger.
    Withdraw {
        /// Tokens to withdraw, with up to 9 decimals.
        tokens: String,
        /// The asset (0 is the native token).
        #[arg(long, default_value_t = 0)]
        asset: u32,
    },
}

/// A served order, its output checked against the miner's claim.
pub struct Served {
    pub miner: String,
    pub output: Vec<u8>,
    pub output_hash: String,
}

/// Puts a free order for `service` and returns its id.
pub fn put_order(me: &Participant, service: &str, prompt: &str) -> anyhow::Result<String> {
    place_order(me, service, OrderMode::Free, prompt.as_bytes().to_vec())
}

/// Puts an order for `service` in `mode` with an inline `prompt` and returns its id.
pub fn place_order(me: &Participant, service: &str, mode: OrderMode, prompt: Vec<u8>) -> anyhow::Result<String> {
    let message = Message::PutOrder(PutOrder { service: service.into(), mode, payload: Payload::Inline(prompt) });
    let envelope = me.seal(me.next_nonce()?, &message);
    let order = hex(&Ledger::order_id_of(&envelope).0);
    let outcome = me.submit_envelope(&envelope)?;
    if outcome.outcome != "accepted" {
        return Err(ClientError::from(Rejected { kind: "put-order", code: outcome.outcome }).into());
    }
    Ok(order)
}

/// Waits until `order` is claimed, fetches its output from the miner and checks its hash.
pub fn fetch_output(me: &Participant, order: &str, wait: Duration) -> anyhow::Result<Served> {
    fetch_output_watching(me, order, wait, |_| {})
}

/// [`fetch_output`], calling `seen` with each status read while it waits.
pub fn fetch_output_watching(
    me: &Participant,
    order: &str,
    wait: Duration,
    mut seen: impl FnMut(&OrderView),
) -> anyhow::Result<Served> {
    let started = Instant::now();
    let (view, claimed) = loop {
        // Linearizable: a node that has not applied the order yet would answer 404.
        let view: OrderView = me.api.get(&format!("/v1/orders/{order}?wait_ms={ORDER_LONG_POLL_MS}"))?;
        seen(&view);
        if let Some(hash) = view.output_hash.clone() {
            break (view, hash);
        }
        if matches!(view.status.as_str(), "expired" | "failed" | "invalidated") {
            bail!("order {order} ended {}: `deai client status {order}` shows it", view.status);
        }
        if started.elapsed() > wait {
            bail!(
                "order {order} not served within {} ms (status {}): look again later with `deai client status {order}`, or wait longer with --wait-ms",
                wait.as_millis(),
                view.status
            );
        }
        std::thread::sleep(Duration::from_millis(ORDER_POLL_MS));
    };
    let endpoint = view
        .miner_endpoint
        .as_deref()
        .context("the order has no miner endpoint: report it with `deai client report`")?;
    let order_id = unhex32(order).context("order ids are 64 hex digits")?;
    let time_ms = deai_clock::SystemClock.now_ms();
    let signature = me.key.sign(&output_request_bytes(me.network(), &order_id, time_ms)).to_bytes();
    let mut response = me
        .api
        .agent()
        .get(&format!("{endpoint}/v1/outputs/{order}"))
        .header("x-deai-time-ms", time_ms.to_string())
        .header("x-deai-signature", hex(&signature))
        .call()
        .with_context(|| {
            format!("cannot reach the miner at {endpoint}; if it stays away, `deai client report {order}`")
        })?;
    if !response.status().is_success() {
        bail!(
            "the miner refused the output: HTTP {}; if it keeps refusing, `deai client report {order}`",
            response.status()
        );
    }
    let output = response.body_mut().read_to_vec().context("reading the output from the miner")?;
    let actual = hex(&deai_protocol::ledger::output_hash(&output));
    if actual != claimed {
        bail!("the miner's output hashes to {actual}, but it claimed {claimed}: rate it bad or report it (`deai client report {order}`)");
    }
    Ok(Served { miner: view.miner.unwrap_or_default(), output, output_hash: claimed })
}

pub fn rate(me: &Participant, order: &str, rating: Rating) -> anyhow::Result<()> {
    me.submit_accepted(Message::Rate(Rate { order: order_id(order)?, rating }))?;
    Ok(())
}

fn order_id(text: &str) -> anyhow::Result<OrderId> {
    Ok(OrderId(parse_hex_id(text, "order id")?))
}

fn participant_id(text: &str) -> anyhow::Result<ParticipantId> {
    Ok(ParticipantId(parse_hex_id(text, "miner id")?))
}

fn parse_hex_id(text: &str, what: &str) -> anyhow::Result<[u8; 32]> {
    unhex32(text.trim()).ok_or_else(|| BadArgument(format!("{what} {text:?} is not 64 hex digits")).into())
}

fn tokens(text: &str) -> anyhow::Result<u128> {
    Ok(parse_tokens(text)?)
}

/// The spinner an order shows on stderr while it waits: only for people at a terminal.
struct Spinner(Option<indicatif::ProgressBar>);

impl Spinner {
    fn wanted(json: bool) -> bool {
        !json && std::io::stderr().is_terminal()
    }

    fn start(wanted: bool, message: String) -> Spinner {
        if !wanted {
            return Spinner(None);
        }
        let bar = indicatif::ProgressBar::new_spinner();
        bar.enable_steady_tick(Duration::from_millis(SPINNER_TICK_MS));
        bar.set_message(message);
        Spinner(Some(bar))
    }

    fn say(&self, message: String) {
        if let Some(bar) = &self.0 {
            bar.set_message(message);
        }
    }
}

impl Drop for Spinner {
    fn drop(&mut self) {
        if let Some(bar) = &self.0 {
            bar.finish_and_clear();
        }
    }
}

/// Reads the prompt from the argument, a file, or stdin (`-`).
fn read_prompt(prompt: &Option<String>, file: &Option<PathBuf>) -> anyhow::Result<Vec<u8>> {
    match (prompt, file) {
        (Some(text), None) => Ok(text.as_bytes().to_vec()),
        (None, Some(path)) if path.as_os_str() == "-" => {
            let mut bytes = Vec::new();
            std::io::stdin().read_to_end(&mut bytes).context("reading the prompt from stdin")?;
            Ok(bytes)
        }
        (None, Some(path)) => {
            std::fs::read(path).with_context(|| format!("cannot read the prompt file {}", path.display()))
        }
        (None, None) => {
            Err(BadArgument("give a prompt: as an argument, or with --prompt-file FILE (- for stdin)".into()).into())
        }
        (Some(_), Some(_)) => {
            Err(BadArgument("give the prompt as an argument or with --prompt-file, not both".into()).into())
        }
    }
}

fn unknown_service(service: &str, catalog: &ServiceCatalog) -> anyhow::Error {
    let known: Vec<&str> = catalog.services.iter().map(|s| s.name.as_str()).collect();
    Refused {
        code: Code::UnknownService,
        message: format!("the ledger knows no service {service:?}; it knows: {}", known.join(", ")),
    }
    .into()
}

/// The order command: checks the service and the prompt's size against the ledger before
/// sending, puts the order, and unless `no_wait`, waits for and checks the output.
fn order(
    me: &Participant,
    service: &str,
    prompt: Vec<u8>,
    mode: OrderMode,
    no_wait: bool,
    wait: Duration,
    spinner: bool,
) -> anyhow::Result<Printed> {
    let catalog: ServiceCatalog = me.api.get("/v1/services?consistency=stale")?;
    if !catalog.services.iter().any(|s| s.name == service) {
        return Err(unknown_service(service, &catalog));
    }
    let limit = catalog.max_inline_payload_bytes as usize;
    if prompt.len() > limit {
        return Err(Refused {
            code: Code::PayloadTooLarge,
            message: format!(
                "the prompt is {} bytes, over the ledger's limit of {limit} bytes (max_inline_payload_bytes); nothing was sent",
                prompt.len()
            ),
        }
        .into());
    }
    let order = match place_order(me, service, mode, prompt) {
        Err(e) if e.downcast_ref::<ClientError>().is_some_and(|c| c.code() == Code::UnknownService) => {
            return Err(unknown_service(service, &catalog));
        }
        other => other?,
    };
    if no_wait {
        return Ok(Printed::new(order.clone(), &json!({ "order": order })));
    }
    let progress = Spinner::start(spinner, format!("order {order}: waiting for a miner"));
    let served = fetch_output_watching(me, &order, wait, |view| {
        let doing = match view.status.as_str() {
            "pending" => "waiting for a miner".to_string(),
            "allocated" => format!("allocated to {}; waiting for the output", view.miner.as_deref().unwrap_or("?")),
            other => other.to_string(),
        };
        progress.say(format!("order {order}: {doing}"));
    })?;
    drop(progress);
    let text = String::from_utf8_lossy(&served.output).to_string();
    Ok(Printed::new(
        format!("order {order}\nserved by {}\noutput (hash checked):\n{text}", served.miner),
        &json!({ "order": order, "miner": served.miner, "output_hash": served.output_hash, "output": text }),
    ))
}

/// `amounts` for people: `12 (asset 0), 3.5 (asset 1)`, or `0`.
fn amounts_text(amounts: &[AssetAmount]) -> String {
    if amounts.is_empty() {
        return "0".into();
    }
    amounts
        .iter()
        .map(|a| format!("{} (asset {})", format_base_units(&a.amount), a.asset))
        .collect::<Vec<_>>()
        .join(", ")
}

fn balance_text(view: &AccountView) -> String {
    let frozen = if view.frozen_until_ms == 0 {
        "never".to_string()
    } else {
        format!("{} ms (ledger time)", view.frozen_until_ms)
    };
    format!(
        "account          {}\nfree balance     {}\nlocked stake     {}\neffective stake  {}\npass             {}\nfrozen until     {frozen}\nin escrow        {}\norders in flight {}",
        view.id,
        amounts_text(&view.balances),
        amounts_text(&view.locked_by_asset),
        format_base_units(&view.effective_stake),
        view.pass,
        format_base_units(&view.escrow),
        view.in_flight,
    )
}

fn providers_text(list: &[ProviderView]) -> String {
    if list.is_empty() {
        return "no miners are registered".into();
    }
    let mut text = String::from("MINER                                                             LIVENESS      REPUTATION  LOAD   SERVICES (price per request / per subscription period, tokens)\n");
    for m in list {
        let services: Vec<String> = m
            .offers
            .iter()
            .map(|o| {
                let sub = o.subscription_price.as_deref().map_or("-".to_string(), format_base_units);
                format!("{} ({} / {sub})", o.service, format_base_units(&o.price_per_request))
            })
            .collect();
        text.push_str(&format!(
            "{}  {:<12}  {:>10}  {:>5}  {}\n",
            m.id,
            m.liveness,
            format!("{}.{:03}", m.reputation_milli / 1000, m.reputation_milli % 1000),
            format!("{}/{}", m.in_flight, m.capacity),
            services.join(", ")
        ));
    }
    text
}

fn epochs_text(list: &[EpochView]) -> String {
    if list.is_empty() {
        return "no epoch has closed yet".into();
    }
    let mut text = String::from("EPOCH  START_MS       END_MS         REWARD (tokens)  PAYOUTS  CERTIFIED\n");
    for e in list {
        text.push_str(&format!(
            "{:<5}  {:<13}  {:<13}  {:>15}  {:>7}  {}\n",
            e.number,
            e.start_ms,
            e.end_ms,
            format_base_units(&e.reward),
            e.payouts.len(),
            if e.certified { "yes" } else { "no" }
        ));
    }
    text
}

fn orders_text(page: &ClientOrdersPage) -> String {
    if page.orders.is_empty() {
        return "no orders".into();
    }
    let mut text = String::from("ORDER                                                             SERVICE            MODE          STATUS      PLACED_MS\n");
    for o in &page.orders {
        text.push_str(&format!("{}  {:<17}  {:<12}  {:<10}  {}\n", o.id, o.service, o.mode, o.status, o.placed_ms));
    }
    if let Some(next) = &page.next_before {
        text.push_str(&format!("more: deai client orders --before {next}\n"));
    }
    text
}

/// Runs one client command; `spinner` says whether an order may show a spinner on stderr.
pub fn run(me: &Participant, action: &ClientAction, spinner: bool) -> anyhow::Result<Printed> {
    let asset_json = |asset: u32, amount: u128| json!({ "asset": asset, "amount": amount.to_string() });
    Ok(match action {
        ClientAction::Keygen => bail!("keygen runs before connecting"),
        ClientAction::Balance => {
            let view: AccountView = me.api.get(&format!("/v1/ledger/accounts/{}", me.id_hex()))?;
            Printed::new(balance_text(&view), &view)
        }
        ClientAction::Faucet { tokens: text, asset } => {
            let amount = tokens(text)?;
            me.submit_accepted(Message::DevFaucet(DevFaucet { asset: AssetId(*asset), amount }))?;
            Printed::new(
                format!("{} tokens of asset {asset} from the faucet", format_tokens(amount)),
                &asset_json(*asset, amount),
            )
        }
        ClientAction::Stake { tokens: text, asset } => {
            let amount = tokens(text)?;
            me.submit_accepted(Message::LockStake(LockStake { asset: AssetId(*asset), amount }))?;
            Printed::new(
                format!("{} tokens of asset {asset} locked as stake", format_tokens(amount)),
                &asset_json(*asset, amount),
            )
        }
        ClientAction::Unstake { tokens: text, asset } => {
            let amount = tokens(text)?;
            me.submit_accepted(Message::UnlockStake(UnlockStake { asset: AssetId(*asset), amount }))?;
            Printed::new(
                format!("{} tokens of asset {asset} unlocked into the free balance", format_tokens(amount)),
                &asset_json(*asset, amount),
            )
        }
        ClientAction::Withdraw { tokens: text, asset } => {
            let amount = tokens(text)?;
            me.submit_accepted(Message::Withdraw(Withdraw { asset: AssetId(*asset), amount }))?;
            Printed::new(
                format!("{} tokens of asset {asset} withdrawn", format_tokens(amount)),
                &asset_json(*asset, amount),
            )
        }
        ClientAction::Pass => {
            me.submit_accepted(Message::AcquirePass(AcquirePass {}))?;
            Printed::new("service pass acquired", &json!({ "pass": "valid" }))
        }
        ClientAction::Release => {
            me.submit_accepted(Message::ReleasePass(ReleasePass {}))?;
            Printed::new(
                "service pass released; the stake unlocks once in-flight orders finish",
                &json!({ "pass": "released" }),
            )
        }
        ClientAction::Order { service, prompt, prompt_file, pay, miner, subscription, no_wait, wait_ms } => {
            let mode = match (pay, subscription) {
                (Some(price), None) => OrderMode::Charged {
                    price: tokens(price)?,
                    miner: miner.as_deref().map(participant_id).transpose()?,
                },
                (None, Some(miner)) => OrderMode::Subscription { miner: participant_id(miner)? },
                (None, None) => OrderMode::Free,
                (Some(_), Some(_)) => bail!(BadArgument("--pay and --subscription exclude each other".into())),
            };
            let prompt = read_prompt(prompt, prompt_file)?;
            order(me, service, prompt, mode, *no_wait, Duration::from_millis(*wait_ms), spinner)?
        }
        ClientAction::Subscribe { miner, service, periods } => {
            let id = participant_id(miner)?;
            me.submit_accepted(Message::Subscribe(Subscribe {
                miner: id,
                service: service.clone(),
                periods: *periods,
            }))?;
            Printed::new(
                format!("subscribed to {miner} for {service}: {periods} period(s) paid"),
                &json!({ "miner": hex(&id.0), "service": service, "periods": periods }),
            )
        }
        ClientAction::Status { order } => {
            let id = order_id(order)?;
            let view: OrderView = me.api.get(&format!("/v1/orders/{}", hex(&id.0)))?;
            let mut text = format!("order {}: {} ({})", view.id, view.status, view.service);
            if let Some(miner) = &view.miner {
                text.push_str(&format!("\nminer {miner}"));
            }
            if let Some(hash) = &view.output_hash {
                text.push_str(&format!("\noutput hash {hash}"));
            }
            Printed::new(text, &view)
        }
        ClientAction::Orders { before } => {
            let mut path = format!("/v1/clients/{}/orders", me.id_hex());
            if let Some(before) = before {
                path.push_str(&format!("?before={}", hex(&order_id(before)?.0)));
            }
            let page: ClientOrdersPage = me.api.get(&path)?;
            Printed::new(orders_text(&page), &page)
        }
        ClientAction::Rate { order, rating } => {
            rate(me, order, parse_rating(rating)?)?;
            Printed::new(format!("rated {order} {rating}"), &json!({ "order": order, "rating": rating }))
        }
        ClientAction::Report { order } => {
            let id = order_id(order)?;
            me.submit_accepted(Message::ReportNonDelivery(ReportNonDelivery { order: id }))?;
            Printed::new(
                format!("reported {order} undelivered; coordinators probe the miner within the ledger's probe window"),
                &json!({ "order": order, "reported": true }),
            )
        }
        ClientAction::Providers => {
            let list: Vec<ProviderView> = me.api.get("/v1/miners")?;
            Printed::new(providers_text(&list), &list)
        }
        ClientAction::Epochs { limit } => {
            if !(1..=MAX_EPOCHS_PER_REQUEST).contains(limit) {
                bail!(BadArgument(format!("--limit is 1 to {MAX_EPOCHS_PER_REQUEST}")));
            }
            let list: Vec<EpochView> = me.api.get(&format!("/v1/epochs?limit={limit}"))?;
            Printed::new(epochs_text(&list), &list)
        }
        ClientAction::Payouts { miner } => {
            let id = match miner {
                Some(text) => hex(&participant_id(text)?.0),
                None => me.id_hex(),
            };
            let list: Vec<EpochView> = me.api.get(&format!("/v1/epochs?limit={MAX_EPOCHS_PER_REQUEST}"))?;
            let payouts: Vec<PayoutView> = list
                .iter()
                .flat_map(|e| {
                    e.payouts.iter().filter(|(m, _)| *m == id).map(|(m, amount)| PayoutView {
                        epoch: e.number,
                        miner: m.clone(),
                        amount: amount.clone(),
                        certified: e.certified,
                    })
                })
                .collect();
            let text = if payouts.is_empty() {
                format!("no payouts to {id} in the last {} closed epochs", list.len())
            } else {
                let total: u128 = payouts.iter().filter_map(|p| p.amount.parse::<u128>().ok()).sum();
                let mut text = format!("payouts to {id}:\n");
                for p in &payouts {
                    let certified = if p.certified { "certified" } else { "not yet certified" };
                    text.push_str(&format!(
                        "epoch {:<5} {} tokens ({certified})\n",
                        p.epoch,
                        format_base_units(&p.amount)
                    ));
                }
                text.push_str(&format!("total       {} tokens", format_tokens(total)));
                text
            };
            Printed::new(text, &payouts)
        }
    })
}
