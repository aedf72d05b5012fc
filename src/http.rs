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
//! - `GET /v1/ledger/accounts/{id}?consistency=...`: native balance, locked stake, last nonce.
//!
//! Errors are JSON `{"code", "message", "leader"?}` with the stable codes of the library crates.

use actix_web::http::StatusCode;
use actix_web::{web, App, HttpResponse, HttpServer, ResponseError};
use deai_cluster::admin::AdminCommand;
use deai_cluster::{ClusterError, Consistency, CoordinatorNode};
use deai_protocol::ledger::Entry;
use deai_protocol::SignedEnvelope;
use deai_storage::EntryOutcome;
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// Largest JSON body an admin route reads, in bytes.
pub const MAX_ADMIN_BODY_BYTES: usize = 64 * 1024;

/// HTTP worker threads; the Raft work runs on the tokio runtime beside them.
pub const HTTP_WORKERS: usize = 2;

/// An error as the API shows it.
#[derive(Debug, Serialize, Deserialize)]
pub struct ApiError {
    pub code: String,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub leader: Option<u64>,
    #[serde(skip)]
    status: u16,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

impl ApiError {
    fn bad_request(code: &str, message: impl Into<String>) -> Self {
        ApiError { code: code.into(), message: message.into(), leader: None, status: 400 }
    }
}

impl From<ClusterError> for ApiError {
    fn from(e: ClusterError) -> Self {
        let status = match &e {
            ClusterError::NotLeader { .. }
            | ClusterError::TransferInProgress
            | ClusterError::LeaderUnreachable { .. }
            | ClusterError::Raft(_) => 503,
            ClusterError::TooLarge { .. } => 413,
            ClusterError::Config(_) | ClusterError::Malformed(_) => 400,
            ClusterError::Fatal(_) | ClusterError::Storage(_) => 500,
            ClusterError::Forwarded { code, .. } => match *code {
                "cluster_config" => 400,
                "batch_too_large" => 413,
                "raft_fatal" => 500,
                _ => 503,
            },
        };
        let leader = match &e {
            ClusterError::NotLeader { leader } => *leader,
            _ => None,
        };
        ApiError { code: e.code().into(), message: e.to_string(), leader, status }
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }
    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(self)
    }
}

type Node = web::Data<Arc<CoordinatorNode>>;

async fn livez() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("ok\n")
}

async fn readyz(node: Node) -> HttpResponse {
    match deai_cluster::metrics::readiness(&node) {
        Ok(()) => HttpResponse::Ok().content_type("text/plain").body("ready\n"),
        Err(why) => HttpResponse::ServiceUnavailable().content_type("text/plain").body(format!("not ready: {why}\n")),
    }
}

async fn metrics(node: Node) -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain; version=0.0.4; charset=utf-8").body(node.metrics().render(&node))
}

async fn status(node: Node) -> HttpResponse {
    HttpResponse::Ok().json(deai_cluster::admin::status(&node))
}

#[derive(Deserialize)]
struct LearnerBody {
    id: u64,
    raft_addr: String,
}

#[derive(Deserialize)]
struct IdBody {
    id: u64,
}

#[derive(Serialize, Deserialize)]
pub struct AdminDone {
    pub done: String,
}

async fn admin(node: &CoordinatorNode, command: AdminCommand) -> Result<HttpResponse, ApiError> {
    tracing::info!(?command, "admin command");
    let done = node.admin(command).await?;
    Ok(HttpResponse::Ok().json(AdminDone { done }))
}

async fn add_learner(node: Node, body: web::Json<LearnerBody>) -> Result<HttpResponse, ApiError> {
    let LearnerBody { id, raft_addr } = body.into_inner();
    admin(&node, AdminCommand::AddLearner { id, raft_addr }).await
}

async fn promote(node: Node, body: web::Json<IdBody>) -> Result<HttpResponse, ApiError> {
    admin(&node, AdminCommand::Promote { id: body.id }).await
}

async fn remove(node: Node, body: web::Json<IdBody>) -> Result<HttpResponse, ApiError> {
    admin(&node, AdminCommand::Remove { id: body.id }).await
}

async fn transfer_leader(node: Node, body: web::Json<IdBody>) -> Result<HttpResponse, ApiError> {
    admin(&node, AdminCommand::TransferLeader { to: body.id }).await
}

async fn snapshot(node: Node) -> Result<HttpResponse, ApiError> {
    admin(&node, AdminCommand::Snapshot).await
}

/// What a write returns.
#[derive(Debug, Serialize, Deserialize)]
pub struct WriteResult {
    pub log_index: u64,
    pub height: u64,
    pub root: String,
    /// One per entry: `accepted`, or the rejection's code.
    pub outcomes: Vec<String>,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

async fn write_entries(node: Node, body: web::Bytes) -> Result<HttpResponse, ApiError> {
    // Refuse what cannot decode here, before it costs a log entry.
    let envelopes: Vec<SignedEnvelope> =
        deai_protocol::codec::decode_framed_large(&body).map_err(|e| ApiError::bad_request(e.code(), e.to_string()))?;
    if envelopes.is_empty() {
        return Err(ApiError::bad_request("empty_batch", "a write needs at least one entry"));
    }
    // Ledger time comes from coordinators' clocks, never from the sender (SPEC 5: the leader
    // stamps entries).
    let stamped_ms = deai_cluster::checkpointer::now_ms();
    let entries: Vec<Entry> = envelopes.into_iter().map(|envelope| Entry { stamped_ms, envelope }).collect();
    let written = node.write(&entries).await?;
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

#[derive(Deserialize)]
struct HeadQuery {
    consistency: Option<String>,
}

/// The ledger's head as a read returns it.
#[derive(Debug, Serialize, Deserialize)]
pub struct Head {
    pub height: u64,
    pub root: String,
    pub last_certified_height: Option<u64>,
}

async fn head(node: Node, query: web::Query<HeadQuery>) -> Result<HttpResponse, ApiError> {
    let consistency = consistency_of(&query)?;
    let head = node
        .read(consistency, |l| Head {
            height: l.height,
            root: hex(&l.root),
            last_certified_height: l.last_certificate.as_ref().map(|c| c.height),
        })
        .await?;
    Ok(HttpResponse::Ok().json(head))
}

/// One account as a read returns it. Amounts are decimal strings: they are 128-bit.
#[derive(Debug, Serialize, Deserialize)]
pub struct AccountView {
    pub id: String,
    pub balance: String,
    pub locked: String,
    /// The nonce the account's next entry must exceed.
    pub last_nonce: u64,
}

fn parse_id(text: &str) -> Result<deai_protocol::types::ParticipantId, ApiError> {
    let bad = || ApiError::bad_request("bad_id", format!("{text:?} is not 64 hex digits"));
    if text.len() != 64 {
        return Err(bad());
    }
    let mut id = [0u8; 32];
    for (i, byte) in id.iter_mut().enumerate() {
        *byte = u8::from_str_radix(text.get(2 * i..2 * i + 2).ok_or_else(bad)?, 16).map_err(|_| bad())?;
    }
    Ok(deai_protocol::types::ParticipantId(id))
}

fn consistency_of(query: &HeadQuery) -> Result<Consistency, ApiError> {
    match query.consistency.as_deref() {
        None | Some("linearizable") => Ok(Consistency::Linearizable),
        Some("stale") => Ok(Consistency::Stale),
        Some(other) => Err(ApiError::bad_request(
            "bad_consistency",
            format!("consistency must be linearizable or stale, not {other:?}"),
        )),
    }
}

async fn account(node: Node, path: web::Path<String>, query: web::Query<HeadQuery>) -> Result<HttpResponse, ApiError> {
    let id = parse_id(&path)?;
    let consistency = consistency_of(&query)?;
    let native = deai_protocol::types::AssetId::NATIVE;
    let view = node
        .read(consistency, |l| {
            let account = l.account(&id);
            AccountView {
                id: hex(&id.0),
                balance: account.map(|a| a.balance(native)).unwrap_or(0).to_string(),
                locked: account.map(|a| a.locked(native)).unwrap_or(0).to_string(),
                last_nonce: l.next_nonce(&id).saturating_sub(1),
            }
        })
        .await?;
    Ok(HttpResponse::Ok().json(view))
}

fn json_error(err: impl std::fmt::Display) -> actix_web::Error {
    ApiError::bad_request("malformed_request", err.to_string()).into()
}

/// Binds the endpoint and returns the running server (stop it through its handle).
pub fn serve(
    node: Arc<CoordinatorNode>,
    addr: &str,
    max_body_bytes: usize,
    grace_ms: u64,
) -> std::io::Result<actix_web::dev::Server> {
    let node = web::Data::new(node);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(node.clone())
            .app_data(web::PayloadConfig::new(max_body_bytes))
            .app_data(web::JsonConfig::default().limit(MAX_ADMIN_BODY_BYTES).error_handler(|e, _| json_error(e)))
            .app_data(web::QueryConfig::default().error_handler(|e, _| json_error(e)))
            .route("/livez", web::get().to(livez))
            .route("/readyz", web::get().to(readyz))
            .route("/metrics", web::get().to(metrics))
            .route("/v1/admin/status", web::get().to(status))
            .route("/v1/admin/learners", web::post().to(add_learner))
            .route("/v1/admin/promote", web::post().to(promote))
            .route("/v1/admin/remove", web::post().to(remove))
            .route("/v1/admin/transfer-leader", web::post().to(transfer_leader))
            .route("/v1/admin/snapshot", web::post().to(snapshot))
            .route("/v1/ledger/entries", web::post().to(write_entries))
            .route("/v1/ledger/head", web::get().to(head))
            .route("/v1/ledger/accounts/{id}", web::get().to(account))
            .default_service(web::to(|| async {
                ApiError { code: "not_found".into(), message: "no such route".into(), leader: None, status: 404 }
                    .error_response()
            }))
    })
    .workers(HTTP_WORKERS)
    .disable_signals()
    .shutdown_timeout(grace_ms.div_ceil(1000))
    .bind(addr)?
    .run();
    Ok(server)
}
