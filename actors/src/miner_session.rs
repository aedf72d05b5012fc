//! One actor per connected miner: its persistent session with this node (SPEC 5.3, 5.4, 5.10).
//!
//! A miner opens a session with any coordinator and keeps it; the coordinator pushes each order
//! allocated to the miner as soon as this node applies the allocation (one task of the registry
//! wakes every open session on each change of the ledger, so an idle node's sessions cost
//! nothing but their heartbeats), and a heartbeat every
//! `miner_heartbeat_ms` so that the miner notices a dead or stuck coordinator and moves its
//! session to another. The session never decides anything: what it pushes is what the ledger
//! says the miner was allocated, and the miner's claims are ordinary signed entries (its
//! [`ClientQueue`](crate::ClientQueue) takes them). A miner that stops serving is caught by the
//! ledger itself: a missed deadline re-queues the order and takes the miner offline.
//!
//! Limits: a session lasts at most `max_ms` ([`MAX_SESSION_MS`]), then ends with an `end` event
//! and the miner opens the next; its outgoing queue holds [`SESSION_OUTBOX_EVENTS`] events, and a
//! miner that does not read them is disconnected (`slow_reader`) rather than buffered without
//! bound; a node holds at most [`MAX_MINER_SESSIONS`]; a miner has one session per node (a new
//! one replaces the old, which ends with `replaced`).

use crate::Duties;
use actix::{Actor, ActorContext, Addr, AsyncContext, Context, Handler, Message};
use deai_protocol::ledger::OrderStatus;
use deai_protocol::message::Payload;
use deai_protocol::types::{OrderId, ParticipantId};
use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;

/// Events one session may have waiting for the miner to read.
pub const SESSION_OUTBOX_EVENTS: usize = 64;
/// How many times per `miner_heartbeat_ms` a session checks whether a heartbeat is due.
pub const HEARTBEAT_CHECKS_PER_PERIOD: u64 = 4;
/// Sessions one node holds at once.
pub const MAX_MINER_SESSIONS: usize = 10_000;
/// How far a miner's signed session request may be from the node's clock, in milliseconds.
pub const MAX_SESSION_SKEW_MS: u64 = 60_000;
/// Longest one session may last, in milliseconds.
pub const MAX_SESSION_MS: u64 = 300_000;
/// Most assignments one event carries.
pub const MAX_ASSIGNMENTS_PER_EVENT: usize = 256;

/// An order allocated to the miner, with what it needs to serve it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AssignmentInfo {
    pub order: OrderId,
    pub client: ParticipantId,
    pub service: String,
    /// The inline payload; empty for an external one (the miner fetches it).
    pub payload: Vec<u8>,
    pub deadline_ms: u64,
    pub placed_ms: u64,
    pub allocated_ms: u64,
}

/// What a session sends the miner.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionEvent {
    /// Orders allocated to the miner since the last event (or, first, all it holds).
    Assignments(Vec<AssignmentInfo>),
    /// The session is alive; `height` is this node's applied ledger height.
    Heartbeat { height: u64, at_ms: u64 },
    /// The session ends; the miner opens another (here or elsewhere).
    End { reason: &'static str },
}

/// Why a session could not open.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("the node holds {MAX_MINER_SESSIONS} miner sessions already; retry shortly")]
    Overloaded,
    #[error("this node is stopping or its actors stopped; open the session on another node")]
    Stopped,
    /// A session request signed no later than the last one this node took for the miner: a
    /// replay, or a clock gone back.
    #[error(
        "a session signed at {signed_ms} ms is no later than the last one opened here ({last_ms} ms); sign a new one"
    )]
    Replayed { signed_ms: u64, last_ms: u64 },
}

impl SessionError {
    pub fn code(&self) -> &'static str {
        match self {
            SessionError::Overloaded => "overloaded",
            SessionError::Stopped => "session_stopped",
            SessionError::Replayed { .. } => "session_replay",
        }
    }
}

/// The orders allocated to `miner` and not yet claimed, in deadline order.
///
/// The ledger keeps the miner's `in_flight` equal to its allocated orders (an invariant its
/// audit checks), so the scan of the deadline queue stops at the last of them, and costs
/// nothing for a miner with none: every session looks on each applied entry.
pub fn assignments_of(ledger: &deai_protocol::Ledger, miner: &ParticipantId, limit: usize) -> Vec<AssignmentInfo> {
    let held = ledger.miner(miner).map_or(0, |m| m.in_flight as usize);
    if held == 0 {
        return Vec::new();
    }
    ledger
        .deadlines
        .iter()
        .filter_map(|(deadline, id)| {
            let o = ledger.order(id)?;
            (o.miner.as_ref() == Some(miner) && o.status == OrderStatus::Allocated).then(|| AssignmentInfo {
                order: *id,
                client: o.client,
                service: o.service.to_string(),
                payload: match &o.payload {
                    Some(Payload::Inline(bytes)) => bytes.clone(),
                    _ => Vec::new(),
                },
                deadline_ms: *deadline,
                placed_ms: o.placed_ms,
                allocated_ms: deadline.saturating_sub(ledger.params.order_timeout_ms),
            })
        })
        .take(limit.min(held))
        .collect()
}

/// Ends a session: a newer one of the same miner replaces it, or the node shuts down.
#[derive(Message)]
#[rtype(result = "()")]
struct EndSession {
    reason: &'static str,
}

/// One miner's session on this node.
pub struct MinerSession {
    miner: ParticipantId,
    duties: Duties,
    registry: MinerSessions,
    outbox: mpsc::Sender<SessionEvent>,
    ends_at: Instant,
    /// Orders already pushed and still allocated to the miner.
    pushed: BTreeSet<OrderId>,
    /// The ledger height the last look at the assignments was made at.
    seen_height: Option<u64>,
    last_sent: Instant,
}

impl MinerSession {
    /// Sends `event`; false (and the session stops) if the miner left or does not keep up.
    fn send(&mut self, event: SessionEvent, ctx: &mut Context<Self>) -> bool {
        match self.outbox.try_send(event) {
            Ok(()) => {
                self.last_sent = Instant::now();
                true
            }
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.duties.metrics.refused("miner_session", "slow_reader");
                tracing::info!(miner = %self.miner, "miner session ended: the miner does not read its events");
                ctx.stop();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                ctx.stop();
                false
            }
        }
    }

    fn end(&mut self, reason: &'static str, ctx: &mut Context<Self>) {
        let _ = self.outbox.try_send(SessionEvent::End { reason });
        ctx.stop();
    }

    /// Ends the session when its time is up or its miner left; true if it ended.
    fn ended(&mut self, ctx: &mut Context<Self>) -> bool {
        if Instant::now() >= self.ends_at {
            self.end("max_ms", ctx);
            return true;
        }
        if self.outbox.is_closed() {
            ctx.stop();
            return true;
        }
        false
    }

    /// A heartbeat when the session has been silent for `miner_heartbeat_ms`.
    fn beat(&mut self, ctx: &mut Context<Self>) {
        if self.ended(ctx) {
            return;
        }
        if self.last_sent.elapsed() >= Duration::from_millis(self.duties.config.miner_heartbeat_ms) {
            let height = self.duties.outbox.node().ledger().read().height;
            self.send(SessionEvent::Heartbeat { height, at_ms: self.duties.now_ms() }, ctx);
        }
    }

    /// Pushes the miner's new assignments if the ledger moved.
    fn look(&mut self, ctx: &mut Context<Self>) {
        if self.ended(ctx) {
            return;
        }
        let ledger = self.duties.outbox.node().ledger().read();
        let height = ledger.height;
        if self.seen_height != Some(height) {
            self.seen_height = Some(height);
            let current = assignments_of(&ledger, &self.miner, MAX_ASSIGNMENTS_PER_EVENT);
            drop(ledger);
            self.pushed.retain(|o| current.iter().any(|a| a.order == *o));
            let new: Vec<AssignmentInfo> = current.into_iter().filter(|a| !self.pushed.contains(&a.order)).collect();
            if !new.is_empty() {
                let orders: Vec<OrderId> = new.iter().map(|a| a.order).collect();
                if self.send(SessionEvent::Assignments(new), ctx) {
                    self.pushed.extend(orders);
                }
            }
        }
    }
}

impl Actor for MinerSession {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.duties.metrics.started("miner_session");
        // The first look sends everything the miner holds now, so a miner that moved its
        // session from another node misses nothing.
        self.look(ctx);
        let config = &self.duties.config;
        ctx.run_interval(Duration::from_millis(config.miner_session_poll_ms), |act, ctx| act.look(ctx));
        let beat_every = (config.miner_heartbeat_ms / HEARTBEAT_CHECKS_PER_PERIOD).max(1);
        ctx.run_interval(Duration::from_millis(beat_every), |act, ctx| act.beat(ctx));
        // The session ends at `max_ms` sharp, not at the next heartbeat check.
        ctx.run_later(self.ends_at.saturating_duration_since(Instant::now()), |act, ctx| {
            act.ended(ctx);
        });
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        self.registry.forget(&self.miner, ctx.address());
        self.duties.metrics.stopped("miner_session");
    }
}

/// This node's ledger changed: there may be new assignments to push.
#[derive(Message)]
#[rtype(result = "()")]
struct Look;

impl Handler<Look> for MinerSession {
    type Result = ();

    fn handle(&mut self, _: Look, ctx: &mut Self::Context) {
        self.look(ctx);
    }
}

impl Handler<EndSession> for MinerSession {
    type Result = ();

    fn handle(&mut self, msg: EndSession, ctx: &mut Self::Context) {
        self.end(msg.reason, ctx);
    }
}

type OpenSessions = HashMap<ParticipantId, Addr<MinerSession>>;

/// The registry of this node's miner sessions; clones share it.
#[derive(Clone)]
pub struct MinerSessions {
    /// The open sessions; `None` once the node closed them for good (it is stopping).
    inner: Arc<Mutex<Option<OpenSessions>>>,
    /// The signing time of the last session opened for each miner: a session request is taken
    /// only with a later one, so a captured request cannot open another. Bounded: see `open`.
    last_signed_ms: Arc<Mutex<HashMap<ParticipantId, u64>>>,
    duties: Duties,
    arbiter: actix::ArbiterHandle,
}

impl MinerSessions {
    /// The registry, and the task that wakes every open session when this node's ledger
    /// changes (it ends once the registry is closed).
    pub(crate) fn new(duties: Duties, arbiter: actix::ArbiterHandle) -> Self {
        let inner: Arc<Mutex<Option<OpenSessions>>> = Arc::new(Mutex::new(Some(HashMap::new())));
        let (sessions, node) = (inner.clone(), duties.outbox.node().clone());
        duties.runtime.spawn(async move {
            let mut changes = node.ledger().changes();
            while changes.changed().await.is_ok() {
                let Ok(guard) = sessions.lock() else { return };
                let Some(open) = guard.as_ref() else { return };
                for session in open.values() {
                    // A full mailbox already holds a look.
                    let _ = session.try_send(Look);
                }
            }
        });
        MinerSessions { inner, last_signed_ms: Arc::default(), duties, arbiter }
    }

    fn forget(&self, miner: &ParticipantId, addr: Addr<MinerSession>) {
        if let Ok(mut guard) = self.inner.lock() {
            if let Some(map) = guard.as_mut().filter(|m| m.get(miner).is_some_and(|a| *a == addr)) {
                map.remove(miner);
            }
        }
    }

    /// Sessions open now.
    pub fn len(&self) -> usize {
        self.inner.lock().map(|m| m.as_ref().map_or(0, HashMap::len)).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends every session with an `end` line (`shutdown`) and refuses new ones, so that a
    /// stopping node's HTTP server is not left waiting on streams that never finish.
    pub fn close(&self) {
        if let Ok(mut guard) = self.inner.lock() {
            for (_, session) in guard.take().unwrap_or_default() {
                session.do_send(EndSession { reason: "shutdown" });
            }
        }
    }

    /// Opens a session for `miner` lasting at most `max_ms` (capped by `miner_session_max_ms`),
    /// ending any session it already has here; its events arrive on the returned receiver,
    /// and dropping the receiver ends the session. The caller has checked the miner's signature
    /// over the request, made at `signed_ms`; it must be later than the last one taken here for
    /// that miner, or a captured request could replace the miner's session.
    pub fn open(
        &self,
        miner: ParticipantId,
        max_ms: u64,
        signed_ms: u64,
    ) -> Result<mpsc::Receiver<SessionEvent>, SessionError> {
        let mut guard = self.inner.lock().map_err(|_| SessionError::Stopped)?;
        let map = guard.as_mut().ok_or(SessionError::Stopped)?;
        {
            let mut last = self.last_signed_ms.lock().map_err(|_| SessionError::Stopped)?;
            if let Some(&last_ms) = last.get(&miner) {
                if signed_ms <= last_ms {
                    self.duties.metrics.refused("miner_session", "replayed");
                    return Err(SessionError::Replayed { signed_ms, last_ms });
                }
            }
            // Times more than a skew window old can no longer be replayed (the caller refuses a
            // stale request), so forgetting them keeps the table to recent miners.
            if last.len() >= MAX_MINER_SESSIONS {
                let horizon = signed_ms.saturating_sub(2 * MAX_SESSION_SKEW_MS);
                last.retain(|_, t| *t >= horizon);
            }
            last.insert(miner, signed_ms);
        }
        if let Some(old) = map.remove(&miner) {
            old.do_send(EndSession { reason: "replaced" });
        }
        if map.len() >= MAX_MINER_SESSIONS {
            self.duties.metrics.refused("miner_session", "overloaded");
            return Err(SessionError::Overloaded);
        }
        let (outbox, events) = mpsc::channel(SESSION_OUTBOX_EVENTS);
        let session = MinerSession {
            miner,
            duties: self.duties.clone(),
            registry: self.clone(),
            outbox,
            ends_at: Instant::now()
                + Duration::from_millis(max_ms.min(self.duties.config.miner_session_max_ms).min(MAX_SESSION_MS)),
            pushed: BTreeSet::new(),
            seen_height: None,
            last_sent: Instant::now(),
        };
        let addr = MinerSession::start_in_arbiter(&self.arbiter, move |_| session);
        map.insert(miner, addr);
        Ok(events)
    }
}
