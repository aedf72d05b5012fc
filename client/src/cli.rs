//! `deai client`: a participant's side of a task cycle, for people (and `--json` for scripts).
//!
//! keygen → faucet (dev networks) → stake → pass → order (waits for the miner, fetches the
//! output from the miner's endpoint with a signed request and checks it against the hash the
//! miner claimed) → rate. `providers` lists miners; `release` gives the pass back.

use crate::sdk::Participant;
use deai_api::hex::{hex, unhex32};
use deai_api::signed_requests::output_request_bytes;
use deai_clock::Clock;
use anyhow::{bail, Context};
use clap::Subcommand;
use deai_protocol::message::{
    AcquirePass, DevFaucet, LockStake, Message, OrderMode, Payload, PutOrder, Rate, ReleasePass,
};
use deai_protocol::types::{AssetId, OrderId, Rating};
use deai_protocol::Ledger;
use ed25519_dalek::Signer;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

/// Pause between order status polls, in milliseconds.
pub const ORDER_POLL_MS: u64 = 20;
/// How long one long poll of an order may wait on the coordinator, in milliseconds.
pub const ORDER_LONG_POLL_MS: u64 = 1_000;

/// A client: stake, pass, order, fetch and check outputs, rate.
#[derive(clap::Args, Debug)]
pub struct ClientArgs {
    /// HTTP addresses of coordinators (`host:port,...`); any member will do, and the client
    /// fails over among them.
    #[arg(long, env = "DEAI_COORDINATORS", default_value = "127.0.0.1:8100")]
    pub coordinator: String,
    /// The client's key file (make one with `deai client keygen`).
    #[arg(long, env = "DEAI_CLIENT_KEY_FILE", default_value = "client.key")]
    pub key: std::path::PathBuf,
    /// Print JSON (errors too).
    #[arg(long)]
    pub json: bool,
    #[command(subcommand)]
    pub action: ClientAction,
}

/// Runs `deai client`.
pub fn run_client(args: &ClientArgs) -> anyhow::Result<()> {
    if matches!(args.action, ClientAction::Keygen) {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
        deai_api::key_file::save_seed(&args.key, &seed)?;
        let id = hex(ed25519_dalek::SigningKey::from_bytes(&seed).verifying_key().as_bytes());
        if args.json {
            println!("{}", json!({ "file": args.key.display().to_string(), "id": id }));
        } else {
            println!("wrote {} (id {id})", args.key.display());
        }
        return Ok(());
    }
    let key = deai_api::key_file::load_signing_key(&args.key)?;
    let me = Participant::connect(key, crate::Coordinators::new(&args.coordinator)?)?;
    let (text, value) = run(&me, &args.action)?;
    if args.json {
        println!("{value}");
    } else {
        println!("{text}");
    }
    Ok(())
}

#[derive(Subcommand, Debug)]
pub enum ClientAction {
    /// Writes a new key file (refuses to overwrite one).
    Keygen,
    /// Takes tokens from the dev faucet (dev networks only).
    Faucet { tokens: u128 },
    /// Locks tokens as stake (SPEC 5.1).
    Stake { tokens: u128 },
    /// Acquires the service pass that free orders need.
    Pass,
    /// Gives the pass back.
    Release,
    /// Orders a service with a prompt, waits for the output, checks it and prints it.
    Order {
        service: String,
        prompt: String,
        /// Longest to wait for the output, in milliseconds.
        #[arg(long, default_value_t = 30_000)]
        wait_ms: u64,
    },
    /// An order's status.
    Status { order: String },
    /// Rates a served order: good, fair or bad.
    Rate { order: String, rating: String },
    /// Registered miners and their reputations.
    Providers,
}

/// A served order, its output checked against the miner's claim.
pub struct Served {
    pub miner: String,
    pub output: Vec<u8>,
}

/// Puts a free order for `service` and returns its id.
pub fn put_order(me: &Participant, service: &str, prompt: &str) -> anyhow::Result<String> {
    let message = Message::PutOrder(PutOrder {
        service: service.into(),
        mode: OrderMode::Free,
        payload: Payload::Inline(prompt.as_bytes().to_vec()),
    });
    let envelope = me.seal(me.next_nonce()?, &message);
    let order = hex(&Ledger::order_id_of(&envelope).0);
    let outcome = me.submit_envelope(&envelope)?;
    if outcome.outcome != "accepted" {
        bail!("order rejected: {}", outcome.outcome);
    }
    Ok(order)
}

/// Waits until `order` is claimed, fetches its output from the miner and checks its hash.
pub fn fetch_output(me: &Participant, order: &str, wait: Duration) -> anyhow::Result<Served> {
    let started = Instant::now();
    let view = loop {
        // Linearizable: a node that has not applied the order yet would answer 404.
        let view: Value = me.api.get(&format!("/v1/orders/{order}?wait_ms={ORDER_LONG_POLL_MS}"))?;
        if view["output_hash"].is_string() {
            break view;
        }
        if matches!(view["status"].as_str(), Some("expired" | "failed" | "invalidated")) {
            bail!("order {order} ended {}", view["status"]);
        }
        if started.elapsed() > wait {
            bail!("order {order} not served within {} ms (status {})", wait.as_millis(), view["status"]);
        }
        std::thread::sleep(Duration::from_millis(ORDER_POLL_MS));
    };
    let endpoint = view["miner_endpoint"].as_str().context("the order has no miner endpoint")?;
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
        .with_context(|| format!("cannot reach the miner at {endpoint}"))?;
    if !response.status().is_success() {
        bail!("the miner refused the output: HTTP {}", response.status());
    }
    let output = response.body_mut().read_to_vec().context("reading the output")?;
    let claimed = view["output_hash"].as_str().unwrap_or_default();
    let actual = hex(&deai_protocol::ledger::output_hash(&output));
    if actual != claimed {
        bail!("the miner's output hashes to {actual}, but it claimed {claimed}");
    }
    Ok(Served { miner: view["miner"].as_str().unwrap_or_default().to_string(), output })
}

pub fn parse_rating(text: &str) -> anyhow::Result<Rating> {
    match text {
        "good" => Ok(Rating::Good),
        "fair" => Ok(Rating::Fair),
        "bad" => Ok(Rating::Bad),
        other => bail!("a rating is good, fair or bad, not {other:?}"),
    }
}

pub fn rate(me: &Participant, order: &str, rating: Rating) -> anyhow::Result<()> {
    let order = OrderId(unhex32(order).context("order ids are 64 hex digits")?);
    me.submit_accepted(Message::Rate(Rate { order, rating }))?;
    Ok(())
}

/// Runs one client command; returns what to print (text for people, JSON with `--json`).
pub fn run(me: &Participant, action: &ClientAction) -> anyhow::Result<(String, Value)> {
    let token = deai_protocol::params::TOKEN;
    Ok(match action {
        ClientAction::Keygen => unreachable!("keygen runs before connecting"),
        ClientAction::Faucet { tokens } => {
            me.submit_accepted(Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: tokens * token }))?;
            (format!("{tokens} tokens from the faucet"), json!({ "tokens": tokens.to_string() }))
        }
        ClientAction::Stake { tokens } => {
            me.submit_accepted(Message::LockStake(LockStake { asset: AssetId::NATIVE, amount: tokens * token }))?;
            (format!("{tokens} tokens locked as stake"), json!({ "staked": tokens.to_string() }))
        }
        ClientAction::Pass => {
            me.submit_accepted(Message::AcquirePass(AcquirePass {}))?;
            ("service pass acquired".into(), json!({ "pass": true }))
        }
        ClientAction::Release => {
            me.submit_accepted(Message::ReleasePass(ReleasePass {}))?;
            ("service pass released".into(), json!({ "pass": false }))
        }
        ClientAction::Order { service, prompt, wait_ms } => {
            let order = put_order(me, service, prompt)?;
            let served = fetch_output(me, &order, Duration::from_millis(*wait_ms))?;
            let text = String::from_utf8_lossy(&served.output).to_string();
            (
                format!("order {order}\nserved by {}\noutput (hash checked):\n{text}", served.miner),
                json!({ "order": order, "miner": served.miner, "output": text }),
            )
        }
        ClientAction::Status { order } => {
            let view: Value = me.api.get(&format!("/v1/orders/{order}"))?;
            (format!("order {order}: {}", view["status"].as_str().unwrap_or("?")), view)
        }
        ClientAction::Rate { order, rating } => {
            rate(me, order, parse_rating(rating)?)?;
            (format!("rated {order} {rating}"), json!({ "order": order, "rating": rating }))
        }
        ClientAction::Providers => {
            let list: Value = me.api.get("/v1/miners")?;
            let mut text = String::new();
            for m in list.as_array().into_iter().flatten() {
                text.push_str(&format!(
                    "{}  {}  reputation {}  {}  {}\n",
                    m["id"].as_str().unwrap_or(""),
                    if m["online"].as_bool() == Some(true) { "online " } else { "offline" },
                    m["reputation_milli"],
                    m["endpoint"].as_str().unwrap_or(""),
                    m["services"]
                ));
            }
            (text, list)
        }
    })
}
