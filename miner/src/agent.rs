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

use crate::backends::Backend;
use crate::output_server::{OutputServer, OutputStore, MAX_STORED_OUTPUTS};
use anyhow::Context;
use deai_api::hex::{hex, unhex, unhex32};
use deai_api::views::{Assignment, ProviderView, SessionLine};
use deai_client::{Coordinators, Participant};
use deai_clock::Clock;
use deai_protocol::message::{Claim, Message, SetAvailability};
use deai_protocol::types::{OrderId, ParticipantId};
use ed25519_dalek::SigningKey;
use std::collections::{BTreeMap, VecDeque};
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
    /// Native collateral locked at registration, in base units.
    pub collateral: u128,
    /// Take the collateral from the dev faucet first (dev networks only).
    pub use_faucet: bool,
    /// Charged-mode prices declared for every service, in base units (SPEC 5.9).
    pub price_per_request: u128,
    pub subscription_price: Option<u128>,
}

/// Registers if the ledger does not list this miner as active (or says it is back online if it
/// does), then serves assignments until `stop` is set.
pub fn run(settings: MinerSettings, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let backend = Backend::parse(&settings.backend)?;
    let me = Participant::connect(settings.key.clone(), Coordinators::new(&settings.coordinators)?)?;
    let endpoint = settings.endpoint.clone().unwrap_or_else(|| format!("http://{}", settings.listen));
    let outputs = Arc::new(Mutex::new(OutputStore::default()));
    let server = OutputServer::start(&settings.listen, me.network().clone(), outputs.clone(), deai_clock::system())
        .map_err(anyhow::Error::msg)?;

    match crate::registration::lookup(&me, &me.id_hex())? {
        Some(view) if view.status == crate::registration::ACTIVE => {
            me.submit_accepted(Message::SetAvailability(SetAvailability { online: true }))?;
            tracing::info!(miner = %me.id_hex(), "back online");
        }
        Some(view) if view.status == crate::registration::UNREGISTERING => anyhow::bail!(
            "this miner is unregistering ({} orders in flight): start it again once `deai miner status` says unregistered",
            view.in_flight
        ),
        _ => {
            let offer = crate::registration::Offer {
                collateral: settings.collateral,
                capacity: settings.capacity,
                endpoint: endpoint.clone(),
                services: settings.services.clone(),
                price_per_request: settings.price_per_request,
                subscription_price: settings.subscription_price,
            };
            crate::registration::register(&me, &offer, settings.use_faucet)?;
            tracing::info!(miner = %me.id_hex(), %endpoint, "registered");
        }
    }

    let me = Arc::new(me);
    let (lines, incoming) = std::sync::mpsc::sync_channel::<(u64, SessionLine)>(SESSION_LINES_QUEUED);
    let mut generation = 0;
    let mut session = SessionReader::start(me.clone(), generation, lines.clone(), stop.clone());
    let mut served: VecDeque<[u8; 32]> = VecDeque::new();
    let mut last_presence_check = std::time::Instant::now();
    let probe_service = settings.services.first().cloned().unwrap_or_default();
    let mut presence = Presence { suspended_since: None, probe_service };
    let mut last_line = std::time::Instant::now();
    while !stop.load(Ordering::Relaxed) {
        if last_presence_check.elapsed() >= Duration::from_millis(PRESENCE_CHECK_EVERY_MS) {
            last_presence_check = std::time::Instant::now();
            let listed: Vec<ProviderView> = me.api.get("/v1/miners?consistency=stale").unwrap_or_default();
            if let Some(view) = listed.iter().find(|m| m.id == me.id_hex()) {
                if let Some(why) = presence.renewal_due(view, deai_clock::SystemClock.now_ms(), &backend) {
                    tracing::info!(liveness = %view.liveness, why, "renewing this miner's lease");
                    let _ = me.submit(Message::SetAvailability(SetAvailability { online: true }));
                }
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
        if line.kind != "assignments" {
            continue;
        }
        // Interleaved round robin over clients (SPEC 5.4): one order per client per turn.
        let mut by_client: BTreeMap<String, VecDeque<Assignment>> = BTreeMap::new();
        for a in line.assignments {
            if unhex32(&a.order).is_some_and(|o| !served.contains(&o)) {
                by_client.entry(a.client.clone()).or_default().push_back(a);
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
            if let Err(e) = serve_one(&me, &backend, &outputs, &a, &mut served) {
                tracing::warn!(order = %a.order, error = %e, "could not serve an assignment");
            }
        }
        last_line = std::time::Instant::now();
    }
    session.abandon();
    let _ = me.submit(Message::SetAvailability(SetAvailability { online: false }));
    drop(server);
    Ok(())
}

/// When the miner signs `SetAvailability { online: true }` (docs/decisions.md, "Miner
/// liveness"): to renew its lease once a third of it has passed, to come back after its lease
/// lapsed, and after its orders failed in a row only once [`SUSPENSION_PAUSE_MS`] passed and its
/// backend answers a probe again, so that a broken backend does not pull in orders it will fail.
struct Presence {
    suspended_since: Option<std::time::Instant>,
    /// One of the services this miner offers, to probe its backend with.
    probe_service: String,
}

/// Least pause after a suspension for failed orders before the miner says it is back, in ms.
pub const SUSPENSION_PAUSE_MS: u64 = 10_000;
/// The payload of the backend probe after a suspension.
const PROBE_PAYLOAD: &[u8] = b"deai liveness probe";

impl Presence {
    fn renewal_due(&mut self, view: &ProviderView, now_ms: u64, backend: &Backend) -> Option<&'static str> {
        match view.liveness.as_str() {
            "consecutive_failures" => {
                let since = *self.suspended_since.get_or_insert_with(std::time::Instant::now);
                if since.elapsed() < Duration::from_millis(SUSPENSION_PAUSE_MS) {
                    return None;
                }
                match backend.run(&self.probe_service, PROBE_PAYLOAD) {
                    Ok(_) => {
                        self.suspended_since = None;
                        Some("the backend answers again after orders failed in a row")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "still suspended: the backend fails its probe");
                        self.suspended_since = Some(std::time::Instant::now());
                        None
                    }
                }
            }
            "declared" | "lease_lapsed" => Some("the ledger lists this miner offline"),
            _ => {
                let lease_ms = view.lease_expires_ms.saturating_sub(view.last_seen_ms);
                (now_ms >= view.last_seen_ms.saturating_add(lease_ms / 3)).then_some("a third of the lease passed")
            }
        }
    }
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
        lines: std::sync::mpsc::SyncSender<(u64, SessionLine)>,
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
    outputs: &Mutex<OutputStore>,
    a: &Assignment,
    served: &mut VecDeque<[u8; 32]>,
) -> anyhow::Result<()> {
    let order = unhex32(&a.order).context("an assignment whose order id is not 64 hex digits")?;
    let client = unhex32(&a.client).context("an assignment whose client id is not 64 hex digits")?;
    let payload = unhex(&a.payload).context("an assignment whose payload is not hex")?;
    let output = backend.run(&a.service, &payload)?;
    let output_hash = deai_protocol::ledger::output_hash(&output);
    outputs.lock().map_err(|_| anyhow::anyhow!("output store poisoned"))?.put(order, ParticipantId(client), output);
    let outcome = me.submit(Message::Claim(Claim { order: OrderId(order), output_hash }))?;
    served.push_back(order);
    while served.len() > MAX_STORED_OUTPUTS {
        served.pop_front();
    }
    tracing::info!(order = %hex(&order), outcome = %outcome.outcome, "served and claimed");
    Ok(())
}
