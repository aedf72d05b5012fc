//! `deai miner`: registers with collateral, serves its assignments and claims them (SPEC 5.10).
//!
//! The miner keeps a session with one coordinator, `GET /v1/miners/{id}/session`: a stream of
//! JSON lines on which the coordinator's `MinerSession` actor pushes each assignment as it is
//! applied, and a heartbeat every second. A session that breaks, or stays silent for
//! `SESSION_SILENCE_MS`, moves to the next coordinator, so a coordinator going away only moves
//! the session; each new session starts with everything still assigned, so nothing is missed. New assignments are served in interleaved round robin over
//! their clients (SPEC 5.4), each through the backend (`backends.rs`); the output is kept in
//! memory and served from the miner's own endpoint, `GET /v1/outputs/{order}`, to the client
//! that ordered it only (a signature over the request, checked against the order's client); the
//! miner then signs a `Claim` with the output's hash. On stop it reports itself offline.

use crate::api_client::{hex, output_request_bytes, unhex, unhex32, Coordinators, Participant};
use crate::backends::Backend;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use anyhow::Context;
use deai_clock::Clock;
use deai_protocol::message::{Claim, DevFaucet, Message, RegisterMiner, ServiceOffer, SetAvailability};
use deai_protocol::types::{AssetId, OrderId, ParticipantId};
use ed25519_dalek::{Signature, SigningKey, Verifier, VerifyingKey};
use serde_json::Value;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long one session is asked to last before the miner opens the next, in milliseconds.
pub const SESSION_MS: u64 = 60_000;
/// Longest silence on a session before the miner moves it to another coordinator (the
/// coordinator sends a heartbeat every second), in milliseconds.
pub const SESSION_SILENCE_MS: u64 = 3_000;
/// Session lines read ahead while the miner is busy serving; a full queue stops the reading,
/// and the coordinator then ends the session (the next one resends what is still assigned).
pub const SESSION_LINES_QUEUED: usize = 64;
/// Outputs kept for clients to fetch; the oldest goes first.
pub const MAX_STORED_OUTPUTS: usize = 10_000;
/// How far a client's request time may be from the miner's clock, in milliseconds.
pub const MAX_REQUEST_SKEW_MS: u64 = 60_000;
/// How often the miner checks that the ledger still lists it online, in milliseconds.
pub const PRESENCE_CHECK_EVERY_MS: u64 = 1_000;
/// Pause after a failed poll before the next (every coordinator unreachable), in milliseconds.
pub const MINER_RETRY_MS: u64 = 200;

pub struct MinerSettings {
    pub coordinators: String,
    pub key: SigningKey,
    pub listen: String,
    /// The URL clients fetch outputs from; `http://<listen>` by default.
    pub endpoint: Option<String>,
    pub services: Vec<String>,
    pub backend: String,
    pub capacity: u32,
    /// Native tokens locked as collateral at registration.
    pub collateral_tokens: u128,
    /// Take the collateral from the dev faucet first (dev networks only).
    pub use_faucet: bool,
}

/// Outputs waiting for their clients, by order.
#[derive(Default)]
struct OutputStore {
    by_order: HashMap<[u8; 32], (ParticipantId, Vec<u8>)>,
    order: VecDeque<[u8; 32]>,
}

impl OutputStore {
    fn put(&mut self, order: [u8; 32], client: ParticipantId, output: Vec<u8>) {
        if self.by_order.insert(order, (client, output)).is_none() {
            self.order.push_back(order);
        }
        while self.order.len() > MAX_STORED_OUTPUTS {
            if let Some(old) = self.order.pop_front() {
                self.by_order.remove(&old);
            }
        }
    }
}

struct Shared {
    outputs: Mutex<OutputStore>,
    network: String,
}

fn now_ms() -> u64 {
    deai_clock::SystemClock.now_ms()
}

/// `GET /v1/outputs/{order}`: the output, to the client who ordered it.
async fn get_output(shared: web::Data<Arc<Shared>>, path: web::Path<String>, req: HttpRequest) -> HttpResponse {
    let error = |status: u16, code: &str, message: &str| {
        HttpResponse::build(actix_web::http::StatusCode::from_u16(status).unwrap_or_default())
            .json(serde_json::json!({ "code": code, "message": message }))
    };
    let Some(order) = unhex32(&path) else { return error(400, "bad_id", "the order id is 64 hex digits") };
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let (Some(time), Some(signature)) = (header("x-deai-time-ms"), header("x-deai-signature")) else {
        return error(401, "unsigned", "sign the request: x-deai-time-ms and x-deai-signature");
    };
    let Ok(time_ms) = time.parse::<u64>() else { return error(400, "bad_time", "x-deai-time-ms is a number") };
    if now_ms().abs_diff(time_ms) > MAX_REQUEST_SKEW_MS {
        return error(401, "stale_request", "the request time is too far from the miner's clock");
    }
    let Some(signature) = unhex(&signature).and_then(|b| <[u8; 64]>::try_from(b).ok()) else {
        return error(400, "bad_signature", "x-deai-signature is 128 hex digits");
    };
    let found = shared.outputs.lock().map(|s| s.by_order.get(&order).cloned()).ok().flatten();
    let Some((client, output)) = found else { return error(404, "unknown_order", "no output for this order here") };
    let bytes = output_request_bytes(&deai_protocol::types::NetworkId(shared.network.clone()), &order, time_ms);
    let verified = VerifyingKey::from_bytes(&client.0)
        .map(|key| key.verify(&bytes, &Signature::from_bytes(&signature)).is_ok())
        .unwrap_or(false);
    if !verified {
        return error(403, "not_the_client", "only the client that ordered may fetch the output");
    }
    HttpResponse::Ok().content_type("application/octet-stream").body(output)
}

/// Registers if needed, then serves assignments until `stop` is set.
pub fn run(settings: MinerSettings, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let backend = Backend::parse(&settings.backend)?;
    let me = Participant::connect(settings.key.clone(), Coordinators::new(&settings.coordinators)?)?;
    let endpoint = settings.endpoint.clone().unwrap_or_else(|| format!("http://{}", settings.listen));
    let shared = Arc::new(Shared { outputs: Mutex::default(), network: me.network().0.clone() });

    let server_shared = web::Data::new(shared.clone());
    let listen = settings.listen.clone();
    let (server_tx, server_rx) = std::sync::mpsc::channel();
    let server_thread = std::thread::Builder::new().name("deai-miner-http".into()).spawn(move || {
        let system = actix_web::rt::System::new();
        system.block_on(async move {
            let server = HttpServer::new(move || {
                App::new().app_data(server_shared.clone()).route("/v1/outputs/{order}", web::get().to(get_output))
            })
            .workers(1)
            .disable_signals()
            .bind(&listen);
            match server {
                Ok(server) => {
                    let server = server.run();
                    let _ = server_tx.send(Ok(server.handle()));
                    let _ = server.await;
                }
                Err(e) => {
                    let _ = server_tx.send(Err(e));
                }
            }
        })
    })?;
    let server = server_rx
        .recv()
        .context("the output server did not start")?
        .with_context(|| format!("cannot listen on {}", settings.listen))?;

    let registered: Vec<Value> = me.api.get("/v1/miners?consistency=stale").unwrap_or_default();
    if !registered.iter().any(|m| m["id"].as_str() == Some(&me.id_hex())) {
        let collateral = settings.collateral_tokens * deai_protocol::params::TOKEN;
        if settings.use_faucet {
            me.submit_accepted(Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: collateral }))?;
        }
        let services = settings
            .services
            .iter()
            .map(|s| ServiceOffer { service: s.clone(), price_per_request: 0, subscription_price: None })
            .collect();
        me.submit_accepted(Message::RegisterMiner(RegisterMiner {
            collateral,
            capacity: settings.capacity,
            endpoint: endpoint.clone(),
            services,
        }))?;
        tracing::info!(miner = %me.id_hex(), %endpoint, "registered");
    } else {
        me.submit_accepted(Message::SetAvailability(SetAvailability { online: true }))?;
        tracing::info!(miner = %me.id_hex(), "back online");
    }

    let me = Arc::new(me);
    let (lines, incoming) = std::sync::mpsc::sync_channel::<(u64, Value)>(SESSION_LINES_QUEUED);
    let mut generation = 0;
    let mut session = SessionReader::start(me.clone(), generation, lines.clone(), stop.clone());
    let mut served: VecDeque<[u8; 32]> = VecDeque::new();
    let mut last_presence_check = std::time::Instant::now();
    let mut last_line = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        // A deadline this miner missed took it offline (docs/decisions.md); say it is back.
        if last_presence_check.elapsed() >= Duration::from_millis(PRESENCE_CHECK_EVERY_MS) {
            last_presence_check = std::time::Instant::now();
            let listed: Vec<Value> = me.api.get("/v1/miners?consistency=stale").unwrap_or_default();
            if listed.iter().any(|m| m["id"].as_str() == Some(&me.id_hex()) && m["online"] == false) {
                tracing::warn!("marked offline after a missed deadline; announcing that this miner is online");
                let _ = me.submit(Message::SetAvailability(SetAvailability { online: true }));
            }
        }
        let line = match incoming.recv_timeout(Duration::from_millis(PRESENCE_CHECK_EVERY_MS)) {
            Ok((from, line)) if from == generation => line,
            Ok(_) => continue, // from a session already abandoned
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                if last_line.elapsed() >= Duration::from_millis(SESSION_SILENCE_MS) {
                    tracing::warn!("the session went silent; moving it to another coordinator");
                    session.abandon();
                    me.api.skip_current();
                    generation += 1;
                    session = SessionReader::start(me.clone(), generation, lines.clone(), stop.clone());
                    last_line = std::time::Instant::now();
                }
                continue;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        };
        last_line = std::time::Instant::now();
        if line["kind"] != "assignments" {
            continue;
        }
        // Interleaved round robin over clients (SPEC 5.4): one order per client per turn.
        let mut by_client: BTreeMap<String, VecDeque<Value>> = BTreeMap::new();
        for a in line["assignments"].as_array().cloned().unwrap_or_default() {
            let order = a["order"].as_str().and_then(unhex32);
            if order.is_some_and(|o| !served.contains(&o)) {
                by_client.entry(a["client"].as_str().unwrap_or_default().to_string()).or_default().push_back(a);
            }
        }
        let mut turn = Vec::new();
        while by_client.values().any(|q| !q.is_empty()) {
            for queue in by_client.values_mut() {
                if let Some(a) = queue.pop_front() {
                    turn.push(a);
                }
            }
        }
        for a in turn {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            if let Err(e) = serve_one(&me, &backend, &shared, &a, &mut served) {
                tracing::warn!(order = a["order"].as_str().unwrap_or(""), error = %e, "could not serve an assignment");
            }
        }
        last_line = std::time::Instant::now();
    }
    session.abandon();
    let _ = me.submit(Message::SetAvailability(SetAvailability { online: false }));
    actix_web::rt::System::new().block_on(server.stop(true));
    let _ = server_thread.join();
    Ok(())
}

/// Reads the miner's session on its own thread and hands each line to the serving loop,
/// opening the next session when one ends (on the next coordinator when one fails).
struct SessionReader {
    abandoned: Arc<AtomicBool>,
}

impl SessionReader {
    fn start(
        me: Arc<Participant>,
        generation: u64,
        lines: std::sync::mpsc::SyncSender<(u64, Value)>,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let abandoned = Arc::new(AtomicBool::new(false));
        let done = abandoned.clone();
        let spawned = std::thread::Builder::new().name("deai-miner-session".into()).spawn(move || {
            let over = || done.load(Ordering::Relaxed) || stop.load(Ordering::Relaxed);
            while !over() {
                let (coordinator, events) = match me.open_session(SESSION_MS) {
                    Ok(opened) => opened,
                    Err(e) => {
                        tracing::warn!(error = %e, "no coordinator took the session");
                        std::thread::sleep(Duration::from_millis(MINER_RETRY_MS));
                        continue;
                    }
                };
                tracing::info!(%coordinator, "session open");
                for event in events {
                    if over() || lines.send((generation, event)).is_err() {
                        return;
                    }
                }
                tracing::info!(%coordinator, "session ended");
                // A broken session goes to the next coordinator; one that ended normally (an
                // `end` line after max_ms) would too, which spreads the miners.
                me.api.skip_current();
            }
        });
        if let Err(e) = spawned {
            tracing::error!(error = %e, "cannot start the session reader");
        }
        SessionReader { abandoned }
    }

    fn abandon(&self) {
        self.abandoned.store(true, Ordering::Relaxed);
    }
}

fn serve_one(
    me: &Participant,
    backend: &Backend,
    shared: &Shared,
    a: &Value,
    served: &mut VecDeque<[u8; 32]>,
) -> anyhow::Result<()> {
    let order = a["order"].as_str().and_then(unhex32).context("assignment without an order id")?;
    let client = a["client"].as_str().and_then(unhex32).context("assignment without a client")?;
    let service = a["service"].as_str().unwrap_or_default();
    let payload = unhex(a["payload"].as_str().unwrap_or_default()).unwrap_or_default();
    let output = backend.run(service, &payload)?;
    let output_hash = deai_protocol::ledger::output_hash(&output);
    shared.outputs.lock().map_err(|_| anyhow::anyhow!("output store poisoned"))?.put(
        order,
        ParticipantId(client),
        output,
    );
    let outcome = me.submit(Message::Claim(Claim { order: OrderId(order), output_hash }))?;
    served.push_back(order);
    while served.len() > MAX_STORED_OUTPUTS {
        served.pop_front();
    }
    tracing::info!(order = %hex(&order), outcome = %outcome.outcome, "served and claimed");
    Ok(())
}
