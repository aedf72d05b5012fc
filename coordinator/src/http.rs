//! A coordinator's HTTP endpoint (actix-web): operations and the first `/v1` routes.
//!
//! - `GET /livez`: the process serves requests.
//! - `GET /readyz`: the node is a member, knows a leader and has applied what is committed
//!   (503 with the reason otherwise).
//! - `GET /metrics`: Prometheus text format.
//! - `GET /v1/admin/status` and `POST /v1/admin/{learners,promote,remove,transfer-leader,snapshot}`.
//! - `POST /v1/ledger/entries`: a codec-framed list of signed envelopes, stamped with this
//!   node's clock and written through the leader (forwarded if this node follows).
//! - `GET /v1/ledger/head?consistency=stale|linearizable`: height and root.
//! - `GET /v1/ledger/audit?consistency=stale|linearizable`: the ledger against its invariants.
//! - `GET /v1/ledger/accounts/{id}?consistency=...`: balances, locked stake, pass, last nonce.
//! - `GET /v1/clients/{id}/orders`, `GET /v1/epochs`, `GET /v1/services`: what `deai client`
//!   lists (a client's orders, closed epochs, the services and the prompt size limit).
//!
//! Errors are JSON `{"code", "message", "leader"?}` with the stable codes of the library crates.

use crate::edge_verifier::EdgeVerifier;
use crate::http_body::BodyLimits;
use crate::invalid_input::InvalidInputLimiter;
use actix_web::http::StatusCode;
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use deai_actors::{
    AssignmentInfo, ClientQueues, MinerSessions, QueueError, SessionEvent, MAX_SESSION_MS, MAX_SESSION_SKEW_MS,
};
use deai_api::hex::{hex, unhex, unhex32};
use deai_api::signed_requests::{session_request_bytes, SESSION_SIGNATURE_HEADER, SESSION_TIME_HEADER};
use deai_api::views::{
    AccountPath, AccountView, AdminDone, AssetAmount, Assignment, ClientOrderView, ClientOrdersPage, ClientOrdersQuery,
    CoordinatorMemberView, EnvelopesBody, EpochPath, EpochView, EpochsQuery, ErrorBody, Head, HeadQuery, IdBody,
    LearnerBody, LedgerAudit, MinerView, OfferView, OrderPath, OrderView, PayoutView, ProposalActionView, ProposalList,
    ProposalPageQuery, ProposalPath, ProposalView, ProviderView, ReadConsistency, ServiceCatalog, ServiceView,
    SessionLine, SessionQuery, SnapshotBody, VoteView, WaitQuery, WriteResult, DEFAULT_SESSION_MS,
    MAX_CLIENT_ORDERS_PER_PAGE, MAX_EPOCHS_PER_REQUEST, MAX_LONG_POLL_MS, MAX_PROPOSALS_PER_PAGE, MINER_PAYOUT_EPOCHS,
};
use deai_api::Code;
use deai_cluster::admin::SignedAdmin;
use deai_cluster::{ClusterError, Consistency, CoordinatorNode};
use deai_protocol::ledger::{Liveness, PassState};
use deai_protocol::SignedEnvelope;
use deai_storage::EntryOutcome;
use utoipa::{IntoParams, OpenApi};

/// The API description, generated from the handlers' annotations and the types they use.
#[derive(OpenApi)]
#[openapi(
    info(title = "deai coordinator API", description = "Clients, miners, ledger queries and cluster administration."),
    paths(
        livez,
        readyz,
        metrics,
        status,
        add_learner,
        promote,
        remove,
        transfer_leader,
        snapshot,
        write_entries,
        write_entries_json,
        head,
        audit,
        account,
        openapi_json,
        order,
        providers,
        epoch,
        assignments,
        miner_session,
        client_orders,
        epochs,
        services,
        miner,
        proposals,
        proposal,
    ),
    // Answers described through `IntoResponses` enums are not collected from the paths.
    components(schemas(ReadConsistency, WriteResult, AdminDone))
)]
pub struct ApiDoc;

/// This API's OpenAPI 3.1 document.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "operations", responses((status = 200, description = "the OpenAPI document", content_type = "application/json")))]
async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
use std::sync::Arc;
use std::time::Instant;

/// Largest JSON body an admin route reads, in bytes.
pub const MAX_ADMIN_BODY_BYTES: usize = 64 * 1024;

/// HTTP worker threads; the Raft work runs on the tokio runtime beside them.
pub const HTTP_WORKERS: usize = 2;

/// An error as the API answers it: the JSON body ([`ErrorBody`]) and its HTTP status.
#[derive(Debug)]
pub struct ApiError {
    pub body: ErrorBody,
    status: u16,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.body.code, self.body.message)
    }
}

impl ApiError {
    /// An error with a stable `code` (one of [`Code`]) and a message; its HTTP status is the
    /// code's in the one list. No leader hint, no `until_ms`.
    pub(crate) fn new(code: &str, message: impl Into<String>) -> Self {
        let known = Code::of(code);
        debug_assert!(known != Code::Unknown, "error code {code:?} is missing from deai_api::Code");
        ApiError {
            status: known.http_status(),
            body: ErrorBody { code: known, message: message.into(), leader: None, until_ms: None },
        }
    }

    /// An envelope the edge refuses on its face, answered 400 whatever the code: the write
    /// routes document a 400 for every envelope that fails its checks before consensus, while
    /// the same code as an entry's outcome (in a 200) may carry another status in the list.
    pub(crate) fn refused_envelope(code: &str, message: impl Into<String>) -> Self {
        ApiError { status: 400, ..ApiError::new(code, message) }
    }

    fn with_leader(mut self, leader: Option<u64>) -> Self {
        self.body.leader = leader;
        self
    }

    fn with_until_ms(mut self, until_ms: Option<u64>) -> Self {
        self.body.until_ms = until_ms;
        self
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        // 421 Misdirected Request for `not_leader`: this node cannot answer; the leader named
        // in the body can.
        let leader = match &e {
            ClusterError::NotLeader { leader } => *leader,
            _ => None,
        };
        ApiError::new(e.code(), e.to_string()).with_leader(leader)
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(&self.body)
    }
}

type Node = web::Data<Arc<CoordinatorNode>>;
type Queues = web::Data<Option<ClientQueues>>;
type Sessions = web::Data<Option<MinerSessions>>;
type Limiter = web::Data<InvalidInputLimiter>;
type Limits = web::Data<BodyLimits>;
type Verifier = web::Data<EdgeVerifier>;

impl From<QueueError> for ApiError {
    fn from(e: QueueError) -> Self {
        let until_ms = match e {
            QueueError::Cluster(inner) => return ApiError::from(inner),
            QueueError::Frozen { until_ms } => Some(until_ms),
            QueueError::Full | QueueError::Overloaded | QueueError::Stopped | QueueError::Timeout { .. } => None,
        };
        ApiError::new(e.code(), e.to_string()).with_until_ms(until_ms)
    }
}

/// The process serves requests.
#[utoipa::path(get, path = "/livez", tag = "operations", responses((status = 200, description = "alive", body = String, content_type = "text/plain")))]
async fn livez() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

/// A member that knows a leader and has applied what is committed.
#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "ready", body = String, content_type = "text/plain"),
    (status = 503, description = "not ready, with the reason", body = String, content_type = "text/plain"),
))]
async fn readyz(node: Node) -> HttpResponse {
    match node.readiness() {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").body("ready\n"),
        Err(why) => HttpResponse::ServiceUnavailable().content_type("text/plain").body(format!("not ready: {why}\n")),
    }
}

/// Prometheus metrics in the text format.
#[utoipa::path(get, path = "/metrics", tag = "operations", responses((status = 200, description = "metrics", body = String, content_type = "text/plain")))]
async fn metrics(node: Node) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(node.metrics().render(node.ledger()))
}

/// This node and the cluster as it sees them.
#[utoipa::path(get, path = "/v1/admin/status", tag = "admin", responses((status = 200, body = deai_api::views::NodeStatus)))]
async fn status(node: Node) -> HttpResponse {
    HttpResponse::Ok().json(deai_cluster::admin::status(&node))
}

/// The signature headers of a change to the cluster, required when the node has `admin_keys`
/// (`deai admin --key` sets them): the admin's public key (hex), the time of the request (ms
/// since the Unix epoch, within 60 s of the node's clock) and the ed25519 signature (hex).
#[derive(IntoParams)]
#[into_params(names("x-deai-admin-key", "x-deai-time-ms", "x-deai-signature"), parameter_in = Header)]
#[allow(dead_code)] // read from the request's headers by `signed`; here for the document
struct AdminSignatureHeaders(Option<String>, Option<u64>, Option<String>);

/// The admin request `req` with its raw `body`, packaged for the node that carries it out, which
/// checks its signature (`admin_auth.rs`).
fn signed(node: &CoordinatorNode, req: &HttpRequest, body: &[u8]) -> Result<SignedAdmin, ApiError> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    crate::admin_auth::signed_request(node.id, req.method().as_str(), req.path(), body, header).map_err(|e| {
        tracing::warn!(code = e.code(), path = req.path(), "admin request refused");
        ApiError::new(e.code(), e.to_string())
    })
}

/// Every admin route: reads the body, packages the signed request, and has the node that
/// carries it out check and run it.
async fn admin(
    node: &CoordinatorNode,
    limits: &BodyLimits,
    req: &HttpRequest,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let body = limits.read(req, payload, MAX_ADMIN_BODY_BYTES).await?;
    let request = signed(node, req, &body)?;
    tracing::info!(command = ?request.command, "admin command");
    let done = node.admin_signed(request).await.inspect_err(
        |e| tracing::warn!(code = e.code(), path = req.path(), error = %e, "admin request refused or failed"),
    )?;
    Ok(HttpResponse::Ok().json(AdminDone { done }))
}

/// One admin route that changes the cluster: its handler hands the signed request to
/// [`admin`], and its document entry names its body and answers.
macro_rules! admin_change_route {
    ($(#[doc = $doc:literal])* $name:ident, $path:literal, $body:expr) => {
        $(#[doc = $doc])*
        #[utoipa::path(post, path = $path, tag = "admin", params(AdminSignatureHeaders), request_body = $body, responses(AdminResponses))]
        async fn $name(node: Node, limits: Limits, req: HttpRequest, payload: web::Payload) -> Result<HttpResponse, ApiError> {
            admin(&node, &limits, &req, payload).await
        }
    };
}

admin_change_route!(
    /// Adds a learner and waits until it has caught up.
    add_learner, "/v1/admin/learners", LearnerBody
);
admin_change_route!(
    /// Makes a learner a voter.
    promote, "/v1/admin/promote", IdBody
);
admin_change_route!(
    /// Removes a voter or learner.
    remove, "/v1/admin/remove", IdBody
);
admin_change_route!(
    /// Moves leadership to a voter.
    transfer_leader, "/v1/admin/transfer-leader", IdBody
);
admin_change_route!(
    /// Builds a snapshot on this node; an empty object, or no body.
    snapshot, "/v1/admin/snapshot", SnapshotBody
);

/// What the admin routes that change the cluster answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // a description of the answers for the document; never built
enum AdminResponses {
    /// done
    #[response(status = 200)]
    Done(AdminDone),
    /// invalid request, or a malformed signature header
    #[response(status = 400)]
    Invalid(ErrorBody),
    /// unsigned, stale, or a signature that does not match (when the node has admin_keys)
    #[response(status = 401)]
    Unsigned(ErrorBody),
    /// the signing key is not one of the node's admin_keys
    #[response(status = 403)]
    UnknownKey(ErrorBody),
    /// this signed request was already carried out
    #[response(status = 409)]
    Replayed(ErrorBody),
    /// this node cannot forward to the leader: ask the leader named in the body
    #[response(status = 421)]
    Misdirected(ErrorBody),
    /// no leader, leader unreachable, or a transfer under way
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// How every read route may refuse, beside its own 404.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // a description of the answers for the document; never built
enum ReadRefusals {
    /// a bad parameter
    #[response(status = 400)]
    BadParameter(ErrorBody),
    /// no leader known to confirm a linearizable read: retry, or ask another node
    #[response(status = 421)]
    Misdirected(ErrorBody),
    /// no leader
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// What the two write routes answer.
#[derive(utoipa::IntoResponses)]
#[allow(dead_code)] // a description of the answers for the document; never built
enum WriteResponses {
    /// committed; one outcome per envelope
    #[response(status = 200)]
    Committed(WriteResult),
    /// malformed, empty or undecodable, or an envelope that fails its size, network, nonce or
    /// signature check: nothing is written
    #[response(status = 400)]
    Refused(ErrorBody),
    /// over the size limit
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// the client is frozen (until_ms says until when), has too many batches waiting, or this
    /// source or key sent too much invalid input
    #[response(status = 429)]
    TooMany(ErrorBody),
    /// this node cannot forward to the leader: ask the leader named in the body
    #[response(status = 421)]
    Misdirected(ErrorBody),
    /// no leader, leader unreachable, or a transfer under way
    #[response(status = 503)]
    Unavailable(ErrorBody),
}

/// Submits signed envelopes in their binary form: a codec-framed list.
#[utoipa::path(post, path = "/v1/ledger/entries", tag = "ledger",
    request_body(content = Vec<u8>, content_type = "application/octet-stream"), responses(WriteResponses))]
async fn write_entries(
    req: HttpRequest,
    node: Node,
    queues: Queues,
    verifier: Verifier,
    limiter: Limiter,
    limits: Limits,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let source = edge_source(&req, &limiter)?;
    let body = limits.read(&req, payload, limits.max_body_bytes()).await?;
    // Refuse what cannot decode here, before it costs a log entry.
    let envelopes: Vec<SignedEnvelope> = deai_protocol::codec::decode_framed_large(&body).map_err(|e| {
        limiter.charge(source, None, Instant::now());
        ApiError::refused_envelope(e.code(), e.to_string())
    })?;
    write_envelopes(&node, queues.get_ref().as_ref(), &verifier, &limiter, source, envelopes).await
}

/// The request's source address, refused with 429 if it has spent its invalid-input budget.
fn edge_source(req: &HttpRequest, limiter: &InvalidInputLimiter) -> Result<Option<std::net::IpAddr>, ApiError> {
    let source = req.peer_addr().map(|a| a.ip());
    match limiter.address_wait_ms(source, Instant::now()) {
        Some(wait_ms) => Err(too_much_invalid_input(wait_ms)),
        None => Ok(source),
    }
}

fn too_much_invalid_input(wait_ms: u64) -> ApiError {
    ApiError::new("too_much_invalid_input", format!("too many invalid requests; retry in {wait_ms} ms"))
}

/// Refuses a batch holding an envelope the ledger would refuse on its face (SPEC 3: oversized
/// body, wrong network, undecodable body, bad signature, or a nonce this node has already seen
/// accepted), before anything reaches the cluster: junk never becomes a log entry. Signatures are
/// checked as one batch, and one by one only to name a bad one.
fn check_at_edge(
    node: &CoordinatorNode,
    envelopes: &[SignedEnvelope],
) -> Result<(), (usize, deai_protocol::Rejection)> {
    // The ledger is read for the network and the signers' last nonces only, and let go before
    // any signature is checked: applying entries never waits on the edge.
    let (network, last_nonces) = {
        let ledger = node.ledger().read();
        let last: Vec<u64> = envelopes.iter().map(|e| ledger.next_nonce(&e.signer).saturating_sub(1)).collect();
        (ledger.network_id.clone(), last)
    };
    for (i, (envelope, last)) in envelopes.iter().zip(last_nonces).enumerate() {
        envelope.check_and_decode(&network).map_err(|r| (i, r))?;
        deai_protocol::ledger::check_nonce(&envelope.signer, envelope.nonce, last).map_err(|r| (i, r))?;
    }
    Ok(())
}

/// Most envelopes one JSON write carries: their hex must fit [`MAX_JSON_BODY_BYTES`] (an envelope
/// takes at least 300 hex digits), so larger batches use the binary route.
pub const MAX_JSON_ENVELOPES: usize = 128;
/// Largest JSON write body, in bytes.
pub const MAX_JSON_BODY_BYTES: usize = MAX_ADMIN_BODY_BYTES;
const _: () = assert!(MAX_JSON_ENVELOPES * 300 <= MAX_JSON_BODY_BYTES);

/// Submits signed envelopes as JSON (hex of each envelope's codec bytes), at most 128 in a body
/// of at most 64 KiB; larger batches go to `/v1/ledger/entries`.
#[utoipa::path(post, path = "/v1/entries", tag = "ledger", request_body = EnvelopesBody, responses(WriteResponses))]
async fn write_entries_json(
    req: HttpRequest,
    node: Node,
    queues: Queues,
    verifier: Verifier,
    limiter: Limiter,
    limits: Limits,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let source = edge_source(&req, &limiter)?;
    let bytes = limits.read(&req, payload, MAX_JSON_BODY_BYTES).await?;
    let body: EnvelopesBody = serde_json::from_slice(&bytes).map_err(|e| {
        limiter.charge(source, None, Instant::now());
        ApiError::new("malformed_request", format!("the body: {e}"))
    })?;
    if body.envelopes.len() > MAX_JSON_ENVELOPES {
        return Err(ApiError::new(
            "batch_too_large",
            format!("at most {MAX_JSON_ENVELOPES} envelopes per JSON write; use /v1/ledger/entries for more"),
        ));
    }
    let mut envelopes = Vec::with_capacity(body.envelopes.len());
    for (i, text) in body.envelopes.iter().enumerate() {
        let envelope =
            unhex(text).ok_or_else(|| ApiError::new("bad_hex", format!("envelope {i} is not hex"))).and_then(|bytes| {
                SignedEnvelope::from_wire(&bytes)
                    .map_err(|e| ApiError::refused_envelope(e.code(), format!("envelope {i}: {e}")))
            });
        match envelope {
            Ok(envelope) => envelopes.push(envelope),
            Err(e) => {
                limiter.charge(source, None, Instant::now());
                return Err(e);
            }
        }
    }
    write_envelopes(&node, queues.get_ref().as_ref(), &verifier, &limiter, source, envelopes).await
}

async fn write_envelopes(
    node: &Arc<CoordinatorNode>,
    queues: Option<&ClientQueues>,
    verifier: &EdgeVerifier,
    limiter: &InvalidInputLimiter,
    source: Option<std::net::IpAddr>,
    envelopes: Vec<SignedEnvelope>,
) -> Result<HttpResponse, ApiError> {
    if envelopes.is_empty() {
        limiter.charge(source, None, Instant::now());
        return Err(ApiError::new("empty_batch", "a write needs at least one entry"));
    }
    if let Some(wait_ms) = envelopes.iter().find_map(|e| limiter.key_wait_ms(&e.signer, Instant::now())) {
        return Err(too_much_invalid_input(wait_ms));
    }
    // Size, network, body and nonce here; signatures on the verifier's thread, in one batch
    // with whatever other requests are being checked.
    let (envelopes, checked) = match check_at_edge(node, &envelopes) {
        Err(bad) => (envelopes, Err(bad)),
        Ok(()) => verifier
            .verify(envelopes)
            .await
            .map_err(|e| ApiError::new("shutting_down", format!("the edge check did not run: {e}")))?,
    };
    if let Err((i, rejection)) = checked {
        limiter.charge(source, Some(envelopes[i].signer), Instant::now());
        return Err(ApiError::refused_envelope(
            rejection.code(),
            format!("envelope {i}: {rejection}; nothing was written"),
        ));
    }
    // One participant's batch goes through its client queue (in order, bounded, frozen clients
    // answered at once); anything else straight to the cluster.
    let signer = envelopes[0].signer;
    let one_participant = envelopes.iter().all(|e| e.signer == signer)
        && envelopes[0].kind.role() == deai_protocol::message::Role::Participant;
    // Ledger time is the leader's: its batcher stamps the batch these envelopes ride in.
    let written = match queues {
        Some(queues) if one_participant => queues.submit(signer, envelopes).await.map_err(ApiError::from)?,
        _ => node.write(&envelopes).await?,
    };
    let outcomes = written
        .outcome
        .outcomes
        .iter()
        .map(|o| match o {
            EntryOutcome::Accepted => "accepted".to_string(),
            EntryOutcome::Rejected { code, .. } => code.clone(),
        })
        .collect();
    Ok(HttpResponse::Ok().json(WriteResult {
        log_index: written.log_index,
        height: written.outcome.height,
        root: hex(&written.outcome.root),
        outcomes,
    }))
}

/// This node's cap on long polls (`max_long_poll_ms`, at most [`MAX_LONG_POLL_MS`]).
struct LongPoll {
    max_ms: u64,
}

/// Runs `read` now and after every change this node applies, until `done` holds for its result
/// or `wait_ms` passes; returns the last result. `read` runs once per change, so it should be
/// cheap (the handlers read the little they test, and build their answer once at the end).
async fn read_until<T>(
    node: &CoordinatorNode,
    limit: &LongPoll,
    consistency: Consistency,
    wait_ms: Option<u64>,
    read: impl Fn(&deai_protocol::Ledger) -> T,
    done: impl Fn(&T) -> bool,
) -> Result<T, ApiError> {
    let mut changes = node.ledger().changes();
    let deadline =
        tokio::time::Instant::now() + std::time::Duration::from_millis(wait_ms.unwrap_or(0).min(limit.max_ms));
    let mut consistency = consistency;
    loop {
        changes.borrow_and_update();
        let value = node.read(consistency, &read).await?;
        if done(&value) || tokio::time::Instant::now() >= deadline {
            return Ok(value);
        }
        // Later rounds read this node's state: the first read already confirmed leadership.
        consistency = Consistency::Stale;
        match tokio::time::timeout_at(deadline, changes.changed()).await {
            Ok(Ok(())) => {}
            _ => return node.read(Consistency::Stale, &read).await.map_err(ApiError::from),
        }
    }
}

/// The ledger's height, root and last certified height.
#[utoipa::path(get, path = "/v1/ledger/head", tag = "ledger", params(HeadQuery), responses(
    (status = 200, body = Head),
    ReadRefusals,
))]
async fn head(node: Node, query: web::Query<HeadQuery>) -> Result<HttpResponse, ApiError> {
    let consistency = consistency_of(&query)?;
    let head = node
        .read(consistency, |l| Head {
            network_id: l.network_id.0.clone(),
            height: l.height,
            root: hex(&l.root),
            last_certified_height: l.last_certificate.as_ref().map(|c| c.height),
        })
        .await?;
    Ok(HttpResponse::Ok().json(head))
}

/// The ledger checked against its own invariants: tokens conserved, orders, passes and miners
/// consistent, each closed epoch paying out its reward. What `deai chaos` asks every node once
/// its faults are over; an operator may ask too (it reads the whole ledger once).
#[utoipa::path(get, path = "/v1/ledger/audit", tag = "ledger", params(HeadQuery), responses(
    (status = 200, body = LedgerAudit),
    ReadRefusals,
))]
async fn audit(node: Node, query: web::Query<HeadQuery>) -> Result<HttpResponse, ApiError> {
    let consistency = consistency_of(&query)?;
    let audit = node
        .read(consistency, |l| {
            let broken = l.check_invariants().err();
            LedgerAudit {
                height: l.height,
                root: hex(&l.root),
                holds: broken.is_none(),
                broken,
                closed_epochs: l.closed_epochs.len() as u64,
            }
        })
        .await?;
    Ok(HttpResponse::Ok().json(audit))
}

fn parse_id(text: &str) -> Result<deai_protocol::types::ParticipantId, ApiError> {
    unhex32(text)
        .map(deai_protocol::types::ParticipantId)
        .ok_or_else(|| ApiError::new("bad_id", format!("{:?} is not 64 hex digits", echoed(text))))
}

/// Most characters of a caller's input an error message repeats.
pub const MAX_ECHOED_CHARS: usize = 80;

/// `text` as an error may repeat it: cut to [`MAX_ECHOED_CHARS`], marked when cut.
fn echoed(text: &str) -> String {
    match text.char_indices().nth(MAX_ECHOED_CHARS) {
        Some((end, _)) => format!("{}...", &text[..end]),
        None => text.to_string(),
    }
}

fn consistency_of(query: &HeadQuery) -> Result<Consistency, ApiError> {
    Ok(match query.consistency {
        None | Some(ReadConsistency::Linearizable) => Consistency::Linearizable,
        Some(ReadConsistency::Stale) => Consistency::Stale,
    })
}

/// A participant's balances and locked stake per asset, effective stake, pass, freeze, escrow
/// and last nonce.
#[utoipa::path(get, path = "/v1/ledger/accounts/{id}", tag = "ledger",
    params(AccountPath, HeadQuery), responses(
    (status = 200, body = AccountView),
    ReadRefusals,
))]
async fn account(
    node: Node,
    path: web::Path<AccountPath>,
    query: web::Query<HeadQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path.id)?;
    let consistency = consistency_of(&query)?;
    let native = deai_protocol::types::AssetId::NATIVE;
    let view = node
        .read(consistency, |l| {
            let account = l.account(&id);
            let amounts = |map: Option<&std::collections::BTreeMap<deai_protocol::types::AssetId, u128>>| {
                map.into_iter()
                    .flatten()
                    .map(|(asset, amount)| AssetAmount { asset: asset.0, amount: amount.to_string() })
                    .collect()
            };
            AccountView {
                id: hex(&id.0),
                balance: account.map(|a| a.balance(native)).unwrap_or(0).to_string(),
                locked: account.map(|a| a.locked(native)).unwrap_or(0).to_string(),
                last_nonce: l.next_nonce(&id).saturating_sub(1),
                balances: amounts(account.map(|a| &a.balances)),
                locked_by_asset: amounts(account.map(|a| &a.locked)),
                effective_stake: l.effective_stake(&id).to_string(),
                pass: pass_name(account.map_or(PassState::None, |a| a.pass)).to_string(),
                frozen_until_ms: account.map_or(0, |a| a.frozen_until_ms),
                escrow: account.map_or(0, |a| a.escrow).to_string(),
                in_flight: account.map_or(0, |a| a.in_flight),
            }
        })
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

/// 405 with the `Allow` header RFC 9110 asks for.
async fn method_not_allowed(allow: &'static str) -> HttpResponse {
    let error = ApiError::new("method_not_allowed", format!("this route takes {allow} only"));
    HttpResponse::MethodNotAllowed().insert_header(("Allow", allow)).json(error.body)
}

fn assignment_view(a: &AssignmentInfo) -> Assignment {
    {
        Assignment {
            order: hex(&a.order.0),
            client: hex(&a.client.0),
            service: a.service.clone(),
            payload: hex(&a.payload),
            deadline_ms: a.deadline_ms,
            placed_ms: a.placed_ms,
            allocated_ms: a.allocated_ms,
        }
    }
}

fn session_line(event: SessionEvent) -> SessionLine {
    {
        let line = |kind: &str| SessionLine {
            kind: kind.into(),
            assignments: Vec::new(),
            height: None,
            at_ms: None,
            reason: None,
        };
        match event {
            SessionEvent::Assignments(list) => {
                SessionLine { assignments: list.iter().map(assignment_view).collect(), ..line("assignments") }
            }
            SessionEvent::Heartbeat { height, at_ms } => {
                SessionLine { height: Some(height), at_ms: Some(at_ms), ..line("heartbeat") }
            }
            SessionEvent::End { reason } => SessionLine { reason: Some(reason.into()), ..line("end") },
        }
    }
}

/// A miner's session: its assignments pushed as this node applies them, and heartbeats.
///
/// The answer is a stream of JSON lines (`application/x-ndjson`), one `SessionLine` each: first
/// everything allocated to the miner, then each new allocation, and a `heartbeat` whenever a
/// second passes without a line. It ends with an `end` line after `max_ms`, or when a newer
/// session of the same miner opens on this node. Claims go through `/v1/entries`.
#[utoipa::path(get, path = "/v1/miners/{id}/session", tag = "miners", params(AccountPath, SessionQuery), responses(
    (status = 200, description = "a stream of JSON lines, one SessionLine each", body = SessionLine, content_type = "application/x-ndjson"),
    (status = 400, description = "bad parameter", body = ErrorBody),
    (status = 401, description = "not signed by the miner's key (x-deai-session-time-ms, x-deai-session-signature), or stale", body = ErrorBody),
    (status = 403, description = "the miner is not registered", body = ErrorBody),
    (status = 409, description = "signed no later than the last session this node opened for the miner (a replay)", body = ErrorBody),
    (status = 503, description = "this node runs no actors, or holds too many sessions", body = ErrorBody),
))]
async fn miner_session(
    req: HttpRequest,
    node: Node,
    sessions: Sessions,
    path: web::Path<AccountPath>,
    query: web::Query<SessionQuery>,
) -> Result<HttpResponse, ApiError> {
    let miner = parse_id(&path.id)?;
    let Some(sessions) = sessions.get_ref() else {
        return Err(ApiError::new("no_sessions", "this node runs no actors; open the session on another"));
    };
    let max_ms = query.max_ms.unwrap_or(DEFAULT_SESSION_MS);
    if max_ms == 0 || max_ms > MAX_SESSION_MS {
        return Err(ApiError::new("bad_max_ms", format!("max_ms is 1 to {MAX_SESSION_MS}")));
    }
    let signed_ms = session_signer_check(&req, &node, &miner, max_ms)?;
    let events = sessions.open(miner, max_ms, signed_ms).map_err(|e| ApiError::new(e.code(), e.to_string()))?;
    let lines = futures_util::stream::unfold(events, |mut events| async move {
        let event = events.recv().await?;
        let mut line = serde_json::to_vec(&session_line(event)).unwrap_or_default();
        line.push(b'\n');
        Some((Ok::<_, actix_web::Error>(web::Bytes::from(line)), events))
    });
    Ok(HttpResponse::Ok().content_type("application/x-ndjson").streaming(lines))
}

/// Checks that the session request for `miner` is signed by the miner's own key, within
/// `MAX_SESSION_SKEW_MS` of this node's clock, and that the miner is registered (sessions are
/// for miners who locked collateral). Returns the signing time.
fn session_signer_check(
    req: &HttpRequest,
    node: &CoordinatorNode,
    miner: &deai_protocol::types::ParticipantId,
    max_ms: u64,
) -> Result<u64, ApiError> {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let unsigned = || {
        ApiError::new(
            "unsigned_session",
            format!(
                "sign the session request with the miner's key: {SESSION_TIME_HEADER} and {SESSION_SIGNATURE_HEADER}"
            ),
        )
    };
    let signed_ms: u64 = header(SESSION_TIME_HEADER).ok_or_else(unsigned)?.parse().map_err(|_| unsigned())?;
    let signature: [u8; 64] =
        header(SESSION_SIGNATURE_HEADER).and_then(unhex).and_then(|b| b.try_into().ok()).ok_or_else(unsigned)?;
    let now_ms = node.clock().now_ms();
    if now_ms.abs_diff(signed_ms) > MAX_SESSION_SKEW_MS {
        return Err(ApiError::new(
            "stale_session",
            format!("the session request is more than {MAX_SESSION_SKEW_MS} ms from this node's clock"),
        ));
    }
    let (network, registered) = {
        let ledger = node.ledger().read();
        (ledger.network_id.clone(), ledger.miners.contains_key(miner))
    };
    let bytes = session_request_bytes(&network, &miner.0, signed_ms, max_ms);
    if !deai_protocol::envelope::verify_detached(miner, &bytes, &signature) {
        return Err(ApiError::new("bad_session_signature", "the session request is not signed by this miner's key"));
    }
    if !registered {
        return Err(ApiError::new("unknown_miner", "no such registered miner: register (with collateral) first"));
    }
    Ok(signed_ms)
}

/// Most assignments one request returns.
pub const MAX_ASSIGNMENTS_PER_REQUEST: usize = 512;
/// Most providers one request returns.
pub const MAX_PROVIDERS_PER_REQUEST: usize = 1_000;

fn not_found(what: &str) -> ApiError {
    ApiError::new("not_found", format!("no such {what}"))
}

/// One order: status, assigned miner and where it serves the output, claimed output hash.
#[utoipa::path(get, path = "/v1/orders/{id}", tag = "clients", params(OrderPath, HeadQuery, WaitQuery), responses(
    (status = 200, body = OrderView),
    (status = 404, description = "no such order", body = ErrorBody),
    ReadRefusals,
))]
async fn order(
    node: Node,
    long_poll: web::Data<LongPoll>,
    path: web::Path<OrderPath>,
    query: web::Query<HeadQuery>,
    wait: web::Query<WaitQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = deai_protocol::types::OrderId(parse_id(&path.id)?.0);
    let settled = |l: &deai_protocol::Ledger| {
        l.order(&id)
            .is_none_or(|o| o.claim.is_some() || matches!(o.status.name(), "expired" | "failed" | "invalidated"))
    };
    read_until(&node, &long_poll, consistency_of(&query)?, wait.wait_ms, settled, |done| *done).await?;
    let view = node
        .read(Consistency::Stale, |l| {
            l.order(&id).map(|o| OrderView {
                id: hex(&id.0),
                client: hex(&o.client.0),
                service: o.service.to_string(),
                status: o.status.name().to_string(),
                miner: o.miner.map(|m| hex(&m.0)),
                miner_endpoint: o.miner.and_then(|m| l.miner(&m)).map(|m| m.endpoint.clone()),
                deadline_ms: o.deadline_ms,
                output_hash: o.claim.as_ref().map(|c| hex(&c.output_hash)),
            })
        })
        .await?
        .ok_or_else(|| not_found("order"))?;
    Ok(HttpResponse::Ok().json(view))
}

/// The orders allocated to a miner and not yet claimed: what its session must serve.
#[utoipa::path(get, path = "/v1/miners/{id}/assignments", tag = "miners", params(AccountPath, HeadQuery, WaitQuery), responses(
    (status = 200, body = Vec<Assignment>),
    ReadRefusals,
))]
async fn assignments(
    node: Node,
    long_poll: web::Data<LongPoll>,
    path: web::Path<AccountPath>,
    query: web::Query<HeadQuery>,
    wait: web::Query<WaitQuery>,
) -> Result<HttpResponse, ApiError> {
    let miner = parse_id(&path.id)?;
    let read = |l: &deai_protocol::Ledger| {
        deai_actors::assignments_of(l, &miner, MAX_ASSIGNMENTS_PER_REQUEST)
            .iter()
            .map(assignment_view)
            .collect::<Vec<_>>()
    };
    let list =
        read_until(&node, &long_poll, consistency_of(&query)?, wait.wait_ms, read, |list| !list.is_empty()).await?;
    Ok(HttpResponse::Ok().json(list))
}

/// Registered miners (and unregistering ones, until their collateral returns), their services
/// and reputations.
#[utoipa::path(get, path = "/v1/miners", tag = "clients", params(HeadQuery), responses(
    (status = 200, body = Vec<ProviderView>),
    ReadRefusals,
))]
async fn providers(node: Node, query: web::Query<HeadQuery>) -> Result<HttpResponse, ApiError> {
    let list = node
        .read(consistency_of(&query)?, |l| {
            l.miners
                .iter()
                .filter(|(_, m)| m.status != deai_protocol::ledger::MinerStatus::Unregistered)
                .take(MAX_PROVIDERS_PER_REQUEST)
                .map(|(id, m)| ProviderView {
                    id: hex(&id.0),
                    endpoint: m.endpoint.clone(),
                    services: m.services.keys().map(|s| s.to_string()).collect(),
                    online: m.liveness(l.now_ms, l.params.miner_lease_ms) == Liveness::Live,
                    liveness: m.liveness(l.now_ms, l.params.miner_lease_ms).name().to_string(),
                    last_seen_ms: m.last_seen_ms,
                    lease_expires_ms: m.lease_expires_ms(l.params.miner_lease_ms),
                    consecutive_failures: m.consecutive_failures,
                    reputation_milli: m.reputation_milli,
                    in_flight: m.in_flight,
                    capacity: m.capacity,
                    offers: m.services.values().map(offer_view).collect(),
                })
                .collect::<Vec<_>>()
        })
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// A closed epoch, its payouts and their signatures.
#[utoipa::path(get, path = "/v1/epochs/{number}", tag = "ledger", params(EpochPath, HeadQuery), responses(
    (status = 200, body = EpochView),
    (status = 404, description = "not closed (or no longer retained)", body = ErrorBody),
    ReadRefusals,
))]
async fn epoch(node: Node, path: web::Path<EpochPath>, query: web::Query<HeadQuery>) -> Result<HttpResponse, ApiError> {
    let view = node
        .read(consistency_of(&query)?, |l| l.closed_epochs.get(&path.number).map(epoch_view))
        .await?
        .ok_or_else(|| not_found("closed epoch"))?;
    Ok(HttpResponse::Ok().json(view))
}

// --- client reads ---

fn pass_name(pass: PassState) -> &'static str {
    match pass {
        PassState::None => "none",
        PassState::Valid => "valid",
        PassState::Releasing => "releasing",
    }
}

fn offer_view(offer: &deai_protocol::message::ServiceOffer) -> OfferView {
    OfferView {
        service: offer.service.clone(),
        price_per_request: offer.price_per_request.to_string(),
        subscription_price: offer.subscription_price.map(|p| p.to_string()),
    }
}

fn client_order_view(id: &deai_protocol::types::OrderId, o: &deai_protocol::ledger::Order) -> ClientOrderView {
    use deai_protocol::message::OrderMode;
    let (mode, price) = match &o.mode {
        OrderMode::Free => ("free", None),
        OrderMode::Charged { price, .. } => ("charged", Some(price.to_string())),
        OrderMode::Subscription { .. } => ("subscription", None),
    };
    ClientOrderView {
        id: hex(&id.0),
        service: o.service.to_string(),
        status: o.status.name().to_string(),
        mode: mode.to_string(),
        price,
        miner: o.miner.map(|m| hex(&m.0)),
        placed_ms: o.placed_ms,
        rating: o.rating.map(|r| {
            match r {
                deai_protocol::types::Rating::Good => "good",
                deai_protocol::types::Rating::Fair => "fair",
                deai_protocol::types::Rating::Bad => "bad",
            }
            .to_string()
        }),
    }
}

/// A client's orders the ledger still holds (finished ones are pruned after
/// `order_retention_ms`), newest first, at most [`MAX_CLIENT_ORDERS_PER_PAGE`] a page.
///
/// The ledger keeps no index by client, so a page is one pass over the orders it holds.
#[utoipa::path(get, path = "/v1/clients/{id}/orders", tag = "clients", params(AccountPath, HeadQuery, ClientOrdersQuery), responses(
    (status = 200, body = ClientOrdersPage),
    ReadRefusals,
))]
async fn client_orders(
    node: Node,
    path: web::Path<AccountPath>,
    query: web::Query<HeadQuery>,
    page: web::Query<ClientOrdersQuery>,
) -> Result<HttpResponse, ApiError> {
    let client = parse_id(&path.id)?;
    let limit = page_limit(page.limit, MAX_CLIENT_ORDERS_PER_PAGE)?;
    let before =
        page.before.as_deref().map(|text| parse_id(text).map(|id| deai_protocol::types::OrderId(id.0))).transpose()?;
    let page = node
        .read(consistency_of(&query)?, |l| {
            let before_seq = before.and_then(|id| l.order(&id)).map_or(u64::MAX, |o| o.seq);
            let mut mine: Vec<_> = l.orders.iter().filter(|(_, o)| o.client == client && o.seq < before_seq).collect();
            mine.sort_by_key(|(_, o)| std::cmp::Reverse(o.seq));
            let more = mine.len() > limit;
            mine.truncate(limit);
            ClientOrdersPage {
                next_before: if more { mine.last().map(|(id, _)| hex(&id.0)) } else { None },
                orders: mine.into_iter().map(|(id, o)| client_order_view(id, o)).collect(),
            }
        })
        .await?;
    Ok(HttpResponse::Ok().json(page))
}

/// `requested`, or `max` when absent; 0 and anything above `max` are refused.
fn page_limit(requested: Option<usize>, max: usize) -> Result<usize, ApiError> {
    match requested {
        None => Ok(max),
        Some(n) if (1..=max).contains(&n) => Ok(n),
        Some(n) => Err(ApiError::new("malformed_request", format!("limit is 1 to {max}, not {n}"))),
    }
}

fn epoch_view(e: &deai_protocol::ledger::EpochRecord) -> EpochView {
    EpochView {
        number: e.number,
        start_ms: e.start_ms,
        end_ms: e.end_ms,
        reward: e.reward.to_string(),
        payouts: e.payouts.iter().map(|(id, a)| (hex(&id.0), a.to_string())).collect(),
        payouts_root: hex(&e.payouts_root),
        signatures: e.signatures.len(),
        certified: e.certified,
    }
}

/// Closed epochs the ledger retains, newest first, at most [`MAX_EPOCHS_PER_REQUEST`].
#[utoipa::path(get, path = "/v1/epochs", tag = "ledger", params(HeadQuery, EpochsQuery), responses(
    (status = 200, body = Vec<EpochView>),
    ReadRefusals,
))]
async fn epochs(
    node: Node,
    query: web::Query<HeadQuery>,
    list: web::Query<EpochsQuery>,
) -> Result<HttpResponse, ApiError> {
    let limit = page_limit(list.limit, MAX_EPOCHS_PER_REQUEST)?;
    let views = node
        .read(consistency_of(&query)?, |l| {
            l.closed_epochs.values().rev().take(limit).map(epoch_view).collect::<Vec<_>>()
        })
        .await?;
    Ok(HttpResponse::Ok().json(views))
}

/// The services the ledger knows, with their weights, and the largest inline prompt.
#[utoipa::path(get, path = "/v1/services", tag = "clients", params(HeadQuery), responses(
    (status = 200, body = ServiceCatalog),
    ReadRefusals,
))]
async fn services(node: Node, query: web::Query<HeadQuery>) -> Result<HttpResponse, ApiError> {
    let catalog = node
        .read(consistency_of(&query)?, |l| ServiceCatalog {
            services: l.services.iter().map(|(name, &weight)| ServiceView { name: name.clone(), weight }).collect(),
            max_inline_payload_bytes: l.params.max_inline_payload_bytes,
        })
        .await?;
    Ok(HttpResponse::Ok().json(catalog))
}

// --- end of client reads ---

// --- miners and governance ---

/// A miner as `MinerView` shows it, read from `l`.
fn miner_view(l: &deai_protocol::Ledger, id: &deai_protocol::types::ParticipantId) -> Option<MinerView> {
    let m = l.miner(id)?;
    let liveness = m.liveness(l.now_ms, l.params.miner_lease_ms);
    let recent_payouts = l
        .closed_epochs
        .values()
        .rev()
        .take(MINER_PAYOUT_EPOCHS)
        .filter_map(|e| {
            let (_, amount) = e.payouts.iter().find(|(miner, _)| miner == id)?;
            Some(PayoutView { epoch: e.number, miner: hex(&id.0), amount: amount.to_string(), certified: e.certified })
        })
        .collect();
    Some(MinerView {
        id: hex(&id.0),
        status: m.status.name().to_string(),
        ejected: m.ejected,
        collateral: m.collateral.to_string(),
        capacity: m.capacity,
        endpoint: m.endpoint.clone(),
        services: m.services.values().map(offer_view).collect(),
        online: liveness == Liveness::Live,
        liveness: liveness.name().to_string(),
        last_seen_ms: m.last_seen_ms,
        lease_expires_ms: m.lease_expires_ms(l.params.miner_lease_ms),
        consecutive_failures: m.consecutive_failures,
        reputation_milli: m.reputation_milli,
        raters: m.latest_ratings.len(),
        good_ratings: m.good_ratings,
        bad_ratings: m.bad_ratings,
        in_flight: m.in_flight,
        served: m.served,
        failed: m.failed,
        timed_out: m.timed_out,
        subscribers: m.subscribers,
        epoch_contribution: l.epoch.contributions.get(id).copied().unwrap_or(0).to_string(),
        recent_payouts,
    })
}

/// One miner: registration, collateral, services and prices, liveness, reputation, work done
/// and its payouts in the last closed epochs.
#[utoipa::path(get, path = "/v1/miners/{id}", tag = "miners", params(AccountPath, HeadQuery), responses(
    (status = 200, body = MinerView),
    (status = 404, description = "the ledger knows no miner with this id", body = ErrorBody),
    ReadRefusals,
))]
async fn miner(
    node: Node,
    path: web::Path<AccountPath>,
    query: web::Query<HeadQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path.id)?;
    let view = node
        .read(consistency_of(&query)?, |l| miner_view(l, &id))
        .await?
        .ok_or_else(|| ApiError::new("not_found", "no such miner: register it first with `deai miner register`"))?;
    Ok(HttpResponse::Ok().json(view))
}

fn proposal_action_view(action: &deai_protocol::params::ProposalAction) -> ProposalActionView {
    use deai_protocol::params::{ParamChange, ProposalAction};
    match action {
        ProposalAction::SetParam(change) => ProposalActionView::SetParam {
            name: change.name().to_string(),
            value: change.value().to_string(),
            asset: match change {
                ParamChange::AssetPricePpm(asset, _) => Some(asset.0),
                _ => None,
            },
        },
        ProposalAction::SetServiceWeight { service, weight } => {
            ProposalActionView::SetServiceWeight { service: service.to_string(), weight: *weight }
        }
        ProposalAction::RemoveService { service } => ProposalActionView::RemoveService { service: service.to_string() },
        ProposalAction::EjectMiner { miner } => ProposalActionView::EjectMiner { miner: hex(&miner.0) },
        ProposalAction::SetCoordinators { coordinators } => ProposalActionView::SetCoordinators {
            coordinators: coordinators
                .iter()
                .map(|c| CoordinatorMemberView { id: hex(&c.id.0), vrf_key: hex(&c.vrf_key) })
                .collect(),
        },
    }
}

/// Proposal `id` as `ProposalView` shows it: a closed one with the tally it was decided by, an
/// open one with its votes weighed at today's stakes.
fn proposal_view(l: &deai_protocol::Ledger, id: u64) -> Option<ProposalView> {
    let (proposal, weights, total_locked) = match l.closed_proposals.get(&id) {
        Some(closed) => (&closed.proposal, closed.weights.clone(), closed.total_locked),
        None => {
            let open = l.proposals.get(&id)?;
            let weights = open.votes.keys().map(|voter| (*voter, l.voting_power(voter))).collect();
            let native = deai_protocol::types::AssetId::NATIVE;
            let total_locked = l.accounts.values().fold(0u128, |sum, a| sum.saturating_add(a.locked(native)));
            (open, weights, total_locked)
        }
    };
    let weight_of = |voter| weights.get(voter).copied().unwrap_or(0);
    let (mut yes, mut no) = (0u128, 0u128);
    for (voter, approve) in &proposal.votes {
        let side = if *approve { &mut yes } else { &mut no };
        *side = side.saturating_add(weight_of(voter));
    }
    Some(ProposalView {
        id,
        proposer: hex(&proposal.proposer.0),
        action: proposal_action_view(&proposal.action),
        opened_ms: proposal.opened_ms,
        ends_ms: proposal.ends_ms,
        state: match proposal.closed {
            None => "open",
            Some(true) => "passed",
            Some(false) => "rejected",
        }
        .to_string(),
        yes: yes.to_string(),
        no: no.to_string(),
        total_locked: total_locked.to_string(),
        quorum_ppm: l.params.quorum_ppm,
        pass_threshold_ppm: l.params.pass_threshold_ppm,
        votes: proposal
            .votes
            .iter()
            .map(|(voter, approve)| VoteView {
                voter: hex(&voter.0),
                approve: *approve,
                weight: weight_of(voter).to_string(),
            })
            .collect(),
    })
}

/// Governance proposals, open and closed (the last ones the ledger keeps), with their tallies,
/// ascending by number, at most `MAX_PROPOSALS_PER_PAGE` a page.
#[utoipa::path(get, path = "/v1/proposals", tag = "governance", params(ProposalPageQuery, HeadQuery), responses(
    (status = 200, body = ProposalList),
    ReadRefusals,
))]
async fn proposals(
    node: Node,
    page: web::Query<ProposalPageQuery>,
    query: web::Query<HeadQuery>,
) -> Result<HttpResponse, ApiError> {
    let from = page.after.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
    let list = node
        .read(consistency_of(&query)?, |l| {
            let range = (from, std::ops::Bound::Unbounded);
            let mut ids: Vec<u64> =
                l.closed_proposals.range(range).map(|(id, _)| *id).take(MAX_PROPOSALS_PER_PAGE + 1).collect();
            ids.extend(l.proposals.range(range).map(|(id, _)| *id).take(MAX_PROPOSALS_PER_PAGE + 1));
            ids.sort_unstable();
            let more = ids.len() > MAX_PROPOSALS_PER_PAGE;
            ids.truncate(MAX_PROPOSALS_PER_PAGE);
            ProposalList {
                next_after: if more { ids.last().copied() } else { None },
                proposals: ids.into_iter().filter_map(|id| proposal_view(l, id)).collect(),
            }
        })
        .await?;
    Ok(HttpResponse::Ok().json(list))
}

/// One governance proposal and its tally.
#[utoipa::path(get, path = "/v1/proposals/{id}", tag = "governance", params(ProposalPath, HeadQuery), responses(
    (status = 200, body = ProposalView),
    (status = 404, description = "no such proposal (or closed too long ago to be retained)", body = ErrorBody),
    ReadRefusals,
))]
async fn proposal(
    node: Node,
    path: web::Path<ProposalPath>,
    query: web::Query<HeadQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = path.id;
    let view = node
        .read(consistency_of(&query)?, |l| proposal_view(l, id))
        .await?
        .ok_or_else(|| ApiError::new("not_found", format!("no proposal {id}: `deai gov show` lists them")))?;
    Ok(HttpResponse::Ok().json(view))
}

// --- end of miners and governance ---

fn json_error(err: impl std::fmt::Display) -> actix_web::Error {
    ApiError::new("malformed_request", err.to_string()).into()
}

/// A resource with one method; any other method gets 405 with `Allow`.
fn one_route<F, Args>(path: &str, method: &'static str, handler: F) -> actix_web::Resource
where
    F: actix_web::Handler<Args>,
    Args: actix_web::FromRequest + 'static,
    F::Output: actix_web::Responder + 'static,
{
    // HEAD is a GET without the body (actix-web strips it).
    let route = if method == "GET" {
        web::route().guard(actix_web::guard::Any(actix_web::guard::Get()).or(actix_web::guard::Head()))
    } else {
        web::post()
    };
    web::resource(path).route(route.to(handler)).default_service(web::to(move || method_not_allowed(method)))
}

/// What the API hands to this node's actors; `None` on a node that runs none.
pub struct ActorHandles {
    pub client_queues: Option<ClientQueues>,
    pub miner_sessions: Option<MinerSessions>,
}

/// Binds the endpoint and returns the running server (stop it through its handle).
pub fn serve(
    node: Arc<CoordinatorNode>,
    actors: ActorHandles,
    addr: &str,
    body_limits: BodyLimits,
    header_read_timeout_ms: u64,
    grace_ms: u64,
    max_long_poll_ms: u64,
) -> std::io::Result<actix_web::dev::Server> {
    let long_poll = web::Data::new(LongPoll { max_ms: max_long_poll_ms.min(MAX_LONG_POLL_MS) });
    let node = web::Data::new(node);
    let queues = web::Data::new(actors.client_queues);
    let sessions = web::Data::new(actors.miner_sessions);
    let limiter = web::Data::new(InvalidInputLimiter::default());
    let body_limits = web::Data::new(body_limits);
    let verifier = web::Data::new(EdgeVerifier::start()?);
    let max_body_bytes = body_limits.max_body_bytes();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(limiter.clone())
            .app_data(body_limits.clone())
            .app_data(verifier.clone())
            .app_data(node.clone())
            .app_data(queues.clone())
            .app_data(sessions.clone())
            .app_data(long_poll.clone())
            .app_data(web::PayloadConfig::new(max_body_bytes))
            .app_data(web::JsonConfig::default().limit(MAX_ADMIN_BODY_BYTES).error_handler(|e, _| json_error(e)))
            .app_data(web::QueryConfig::default().error_handler(|e, _| json_error(e)))
            .app_data(web::PathConfig::default().error_handler(|e, _| json_error(e)))
            .service(one_route("/livez", "GET", livez))
            .service(one_route("/readyz", "GET", readyz))
            .service(one_route("/metrics", "GET", metrics))
            .service(one_route("/v1/admin/status", "GET", status))
            .service(one_route("/v1/admin/learners", "POST", add_learner))
            .service(one_route("/v1/admin/promote", "POST", promote))
            .service(one_route("/v1/admin/remove", "POST", remove))
            .service(one_route("/v1/admin/transfer-leader", "POST", transfer_leader))
            .service(one_route("/v1/admin/snapshot", "POST", snapshot))
            .service(one_route("/v1/ledger/entries", "POST", write_entries))
            .service(one_route("/v1/ledger/head", "GET", head))
            .service(one_route("/v1/ledger/audit", "GET", audit))
            .service(one_route("/v1/ledger/accounts/{id}", "GET", account))
            .service(one_route("/v1/entries", "POST", write_entries_json))
            .service(one_route("/v1/openapi.json", "GET", openapi_json))
            .service(one_route("/v1/orders/{id}", "GET", order))
            .service(one_route("/v1/miners", "GET", providers))
            .service(one_route("/v1/epochs/{number}", "GET", epoch))
            .service(one_route("/v1/miners/{id}/assignments", "GET", assignments))
            .service(one_route("/v1/miners/{id}/session", "GET", miner_session))
            .service(one_route("/v1/clients/{id}/orders", "GET", client_orders))
            .service(one_route("/v1/epochs", "GET", epochs))
            .service(one_route("/v1/services", "GET", services))
            .service(one_route("/v1/miners/{id}", "GET", miner))
            .service(one_route("/v1/proposals", "GET", proposals))
            .service(one_route("/v1/proposals/{id}", "GET", proposal))
            .default_service(web::to(|| async { ApiError::new("not_found", "no such route").error_response() }))
    })
    .workers(HTTP_WORKERS)
    .client_request_timeout(std::time::Duration::from_millis(header_read_timeout_ms))
    .disable_signals()
    .shutdown_timeout(grace_ms.div_ceil(1000))
    .bind(addr)?
    .run();
    Ok(server)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_admin_change_route_documents_every_answer_with_its_shape() {
        let document = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
        for route in ["learners", "promote", "remove", "transfer-leader", "snapshot"] {
            let responses = &document["paths"][format!("/v1/admin/{route}")]["post"]["responses"];
            for status in ["200", "400", "401", "403", "409", "421", "503"] {
                let schema = &responses[status]["content"]["application/json"]["schema"]["$ref"];
                let wanted = if status == "200" { "AdminDone" } else { "ErrorBody" };
                assert_eq!(
                    schema.as_str(),
                    Some(format!("#/components/schemas/{wanted}").as_str()),
                    "{route} {status}"
                );
            }
        }
    }

    #[test]
    fn both_write_routes_document_every_answer_with_its_shape() {
        let document = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
        for route in ["/v1/ledger/entries", "/v1/entries"] {
            let responses = &document["paths"][route]["post"]["responses"];
            for status in ["200", "400", "413", "421", "429", "503"] {
                let schema = &responses[status]["content"]["application/json"]["schema"]["$ref"];
                let wanted = if status == "200" { "WriteResult" } else { "ErrorBody" };
                assert_eq!(
                    schema.as_str(),
                    Some(format!("#/components/schemas/{wanted}").as_str()),
                    "{route} {status}"
                );
                assert!(responses[status]["description"].as_str().is_some_and(|d| !d.is_empty()), "{route} {status}");
            }
        }
    }

    #[test]
    fn every_read_route_documents_its_refusals_with_their_shape() {
        let document = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
        let reads = [
            "/v1/ledger/head",
            "/v1/ledger/audit",
            "/v1/ledger/accounts/{id}",
            "/v1/orders/{id}",
            "/v1/miners/{id}/assignments",
            "/v1/miners",
            "/v1/miners/{id}",
            "/v1/epochs",
            "/v1/epochs/{number}",
            "/v1/clients/{id}/orders",
            "/v1/services",
            "/v1/proposals",
            "/v1/proposals/{id}",
        ];
        for route in reads {
            let responses = &document["paths"][route]["get"]["responses"];
            assert!(responses["200"]["content"]["application/json"]["schema"].is_object(), "{route} 200");
            for status in ["400", "421", "503"] {
                let schema = &responses[status]["content"]["application/json"]["schema"]["$ref"];
                assert_eq!(schema.as_str(), Some("#/components/schemas/ErrorBody"), "{route} {status}");
                assert!(responses[status]["description"].as_str().is_some_and(|d| !d.is_empty()), "{route} {status}");
            }
        }
    }

    /// Every `$ref` anywhere in `value`.
    fn references(value: &serde_json::Value, found: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, inner) in map {
                    match (key.as_str(), inner) {
                        ("$ref", serde_json::Value::String(target)) => found.push(target.clone()),
                        _ => references(inner, found),
                    }
                }
            }
            serde_json::Value::Array(items) => items.iter().for_each(|inner| references(inner, found)),
            _ => {}
        }
    }

    #[test]
    fn every_reference_in_the_document_names_a_schema_it_holds() {
        let document = serde_json::to_value(ApiDoc::openapi()).expect("the document serializes");
        let mut found = Vec::new();
        references(&document, &mut found);
        assert!(found.len() > 20, "the document refers to its schemas: {found:?}");
        let schemas = &document["components"]["schemas"];
        let missing: Vec<&String> = found
            .iter()
            .filter(|target| {
                let name = target.strip_prefix("#/components/schemas/").unwrap_or(target);
                schemas.get(name).is_none()
            })
            .collect();
        assert!(missing.is_empty(), "references without a schema: {missing:?}");
    }
}
