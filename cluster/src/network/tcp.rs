//! Raft traffic, forwarded writes and admin requests between coordinators, over mutual TLS.
//!
//! **Who may speak.** Every connection starts with the TLS 1.3 handshake of
//! [`peer_auth`](super::peer_auth): both sides authenticate with their coordinator key, and only
//! members' keys are accepted. Inside the encrypted stream the client then names its wire version,
//! network and node id; a node id other than the one its key is bound to is refused
//! (`impersonation`), and so is a member the Raft membership no longer holds. Every request is
//! then checked against that member: an append, a vote or a snapshot must be in its own name, a
//! leader-transfer step must come from the leader. Forwarded writes carry envelopes only; the
//! leader stamps time (see `batcher.rs`).
//!
//! **Who answers.** The listener serves a [`PeerService`]: the Raft it hands RPCs to, and the
//! node's answers to forwarded writes and admin requests. This file knows no node; the
//! coordinator node implements the service above it (`peer_service.rs`).
//!
//! **What a stranger costs.** A connection that has not authenticated holds a handshake slot for
//! at most [`HANDSHAKE_TIMEOUT_MS`]. There are at most [`MAX_HANDSHAKES_PER_ADDRESS`] of them per
//! source address, and at most [`MAX_STRANGER_HANDSHAKES`] in all from addresses that are no
//! member's host; beyond that a connection is closed at once. Members' hosts (resolved from the
//! Raft membership every [`MEMBER_HOSTS_REFRESH_MS`]) never draw on the strangers' budget, so
//! strangers cannot starve them. An authenticated member keeps at most
//! [`MAX_CONNECTIONS_PER_MEMBER`] connections; a new one closes its oldest.
//!
//! **Frames.** This is the only file that knows the peer frame format: a u32 little-endian length
//! and one record in the storage crate's openraft record format (bincode behind the codec's
//! version byte), tagged with a request id. Connections are persistent and pipelined: one per
//! peer, shared by every caller in the process. The server handles up to
//! [`MAX_IN_FLIGHT_PER_CONNECTION`] requests of a connection at once, holding at most
//! [`MAX_BYTES_IN_FLIGHT_PER_CONNECTION`] of request bytes per connection and
//! [`MAX_BYTES_IN_FLIGHT_PER_NODE`] in all; past either it stops reading (TCP backpressure). A
//! caller that gives up leaves its id behind; a late answer for it is dropped.

use crate::control::{handle_control, ControlFuture, ControlReply, ControlRequest, PeerControl, SignedAdmin};
use crate::metrics::NodeMetrics;
use crate::network::peer_auth::PeerAuth;
use crate::raft_write::Written;
use crate::ClusterError;
use deai_storage::{decode_raft_limited, encode_raft, CommandOutcome, NodeId, TypeConfig, UnstampedBatch};
use openraft::error::{InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, Raft};
use prometheus::HistogramVec;
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::net::IpAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Notify, OwnedSemaphorePermit, Semaphore};

/// Largest frame read or written, in bytes (snapshots travel in chunks well below this).
pub const MAX_FRAME_BYTES: usize = 32 * 1024 * 1024;
/// Request bytes one connection may hold in requests being handled, in bytes.
pub const MAX_BYTES_IN_FLIGHT_PER_CONNECTION: usize = 2 * MAX_FRAME_BYTES;
/// Request bytes all of a node's peer connections may hold at once, in bytes.
pub const MAX_BYTES_IN_FLIGHT_PER_NODE: usize = 8 * MAX_FRAME_BYTES;
const _: () = assert!(MAX_FRAME_BYTES <= MAX_BYTES_IN_FLIGHT_PER_CONNECTION);
const _: () = assert!(MAX_BYTES_IN_FLIGHT_PER_CONNECTION <= MAX_BYTES_IN_FLIGHT_PER_NODE);
const _: () = assert!(MAX_BYTES_IN_FLIGHT_PER_NODE <= u32::MAX as usize);
/// Requests of one connection handled at once; further ones wait to be read (TCP backpressure).
pub const MAX_IN_FLIGHT_PER_CONNECTION: usize = 1_024;
/// Time a client has to connect, shake hands and be welcomed, in milliseconds.
pub const CONNECT_TIMEOUT_MS: u64 = 1_000;
/// Time an inbound connection has to complete TLS and name itself, in milliseconds; a stranger
/// holds a handshake slot no longer than this.
pub const HANDSHAKE_TIMEOUT_MS: u64 = 1_000;
/// Inbound connections from one source address still shaking hands.
pub const MAX_HANDSHAKES_PER_ADDRESS: usize = 8;
/// Inbound connections still shaking hands from addresses that are no member's host.
pub const MAX_STRANGER_HANDSHAKES: usize = 32;
/// Authenticated connections kept per member; a new one closes the member's oldest.
pub const MAX_CONNECTIONS_PER_MEMBER: usize = 4;
/// How often the members' hosts are resolved again from the Raft membership, in milliseconds.
pub const MEMBER_HOSTS_REFRESH_MS: u64 = 5_000;
/// Largest snapshot a node receives, in bytes: a chunk reaching past it is refused.
pub const MAX_SNAPSHOT_RECEIVE_BYTES: u64 = 2 * 1024 * 1024 * 1024;
/// Pause after a failed `accept` (say, out of file descriptors) before the next, in milliseconds.
pub const ACCEPT_RETRY_DELAY_MS: u64 = 100;
/// Largest hello frame accepted, in bytes.
pub const MAX_HANDSHAKE_BYTES: usize = 4 * 1024;
/// An inbound connection silent this long is closed (heartbeats keep live ones busy), in ms.
pub const IDLE_TIMEOUT_MS: u64 = 60_000;
/// Version of this frame protocol, checked in the hello. Version 3 runs inside mutual TLS.
pub const WIRE_VERSION: u32 = 3;

#[derive(Serialize, Deserialize)]
struct Hello {
    wire_version: u32,
    network: String,
    from: NodeId,
}

#[derive(Serialize, Deserialize)]
enum HelloReply {
    Welcome,
    Refused(String),
}

#[derive(Serialize, Deserialize)]
struct Tagged<T> {
    id: u64,
    body: T,
}

#[derive(Serialize, Deserialize)]
enum Request {
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// Envelopes forwarded by a follower, unstamped; answered by this node's batcher (it must
    /// lead), never forwarded again.
    Write(UnstampedBatch),
    /// An operator's signed admin request forwarded to the leader, which checks the signature
    /// itself; never forwarded again.
    Admin(SignedAdmin),
    /// A step of a leader transfer.
    Control(ControlRequest),
    /// A follower asks the leader how far a linearizable read must wait: the leader confirms
    /// its leadership with a quorum and answers its commit index (Raft's ReadIndex, section 6.4
    /// of the Raft thesis); the follower reads once it applied that far.
    ReadIndex,
}

impl Request {
    fn kind(&self) -> &'static str {
        match self {
            Request::Append(_) => "append",
            Request::Vote(_) => "vote",
            Request::Snapshot(_) => "snapshot",
            Request::Write(_) => "write",
            Request::ReadIndex => "read_index",
            Request::Admin(_) => "admin",
            Request::Control(_) => "control",
        }
    }
}

/// Why a forwarded write or admin command failed on the node that received it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RemoteFailure {
    pub code: String,
    pub message: String,
    /// Set when the receiver is not the leader either (leadership moved meanwhile).
    pub leader: Option<NodeId>,
}

impl RemoteFailure {
    fn from_cluster(e: &ClusterError) -> Self {
        let leader = match e {
            ClusterError::NotLeader { leader } => *leader,
            _ => None,
        };
        RemoteFailure { code: e.code().to_string(), message: e.to_string(), leader }
    }
}

#[derive(Serialize, Deserialize)]
enum Response {
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Written(Result<(u64, CommandOutcome), RemoteFailure>),
    Admin(Result<String, RemoteFailure>),
    Control(Result<ControlReply, String>),
    ReadIndex(Result<u64, RemoteFailure>),
    /// The member may not make this request (in another's name, out of its role, too large).
    Refused(String),
}

/// What went wrong on a link, as text for openraft's error types.
#[derive(Debug, thiserror::Error)]
pub enum LinkError {
    #[error("cannot reach {addr}: {reason}")]
    Connect { addr: String, reason: String },
    #[error("peer {addr} refused the connection: {reason}")]
    Refused { addr: String, reason: String },
    #[error("link to {addr} failed: {reason}")]
    Io { addr: String, reason: String },
    #[error("a request of {size_bytes} bytes exceeds the frame limit of {limit_bytes} bytes")]
    TooLarge { size_bytes: usize, limit_bytes: usize },
    #[error("peer {addr} refused the request: {reason}")]
    RequestRefused { addr: String, reason: String },
}

async fn write_frame_bytes<W: AsyncWrite + Unpin>(stream: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(&(bytes.len() as u32).to_le_bytes()).await?;
    stream.write_all(bytes).await
}

async fn write_frame<W: AsyncWrite + Unpin, T: Serialize>(stream: &mut W, value: &T) -> std::io::Result<()> {
    let bytes = encode_raft(value);
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(std::io::Error::other(format!("frame of {} bytes over the limit", bytes.len())));
    }
    write_frame_bytes(stream, &bytes).await?;
    stream.flush().await
}

async fn read_length<R: AsyncRead + Unpin>(stream: &mut R, limit: usize) -> std::io::Result<usize> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > limit {
        return Err(std::io::Error::other(format!("peer sent a frame of {len} bytes, over the limit of {limit}")));
    }
    Ok(len)
}

async fn read_body<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    stream: &mut R,
    len: usize,
) -> std::io::Result<T> {
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes).await?;
    decode_raft_limited::<T, MAX_FRAME_BYTES>(&bytes).map_err(std::io::Error::other)
}

async fn read_frame_limited<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    stream: &mut R,
    limit: usize,
) -> std::io::Result<T> {
    let len = read_length(stream, limit).await?;
    read_body(stream, len).await
}

/// Aborts a task when dropped, so that a helper task ends with the future that owns it.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Every table behind these locks is changed by single inserts and removes, so a panic while
    // holding one cannot leave it inconsistent: carry on with it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Handshake slots: who is shaking hands now, by source address.
#[derive(Default)]
struct Handshakes {
    by_address: HashMap<IpAddr, usize>,
    strangers: usize,
}

/// A handshake slot, released when dropped.
struct HandshakeSlot {
    table: Arc<Mutex<Handshakes>>,
    address: IpAddr,
    stranger: bool,
}

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        let mut table = lock(&self.table);
        if let Some(n) = table.by_address.get_mut(&self.address) {
            *n -= 1;
            if *n == 0 {
                table.by_address.remove(&self.address);
            }
        }
        if self.stranger {
            table.strangers -= 1;
        }
    }
}

/// A member's authenticated connections, oldest first, each with the signal that closes it.
type MemberConnections = HashMap<NodeId, VecDeque<(u64, Arc<Notify>)>>;

/// A future that a [`PeerService`] returns.
pub type ServiceFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// What answers the requests of authenticated members: the node behind a listener. The
/// listener checks each request against the member that sent it first (its own name, its role,
/// the caps); the service only carries it out.
pub trait PeerService: Send + Sync + 'static {
    /// The Raft that takes appends, votes and snapshot chunks, and whose membership and leader
    /// the listener checks members against.
    fn raft(&self) -> &Raft<TypeConfig>;

    /// The series where refusals at the trust boundary are counted (`peer_refusals`).
    fn metrics(&self) -> &NodeMetrics;

    /// Why `rpc` would replace an entry this node holds as committed, if it would; the listener
    /// then refuses it rather than hand it to openraft.
    fn overwrites_committed<'a>(
        &'a self,
        rpc: &'a AppendEntriesRequest<TypeConfig>,
    ) -> ServiceFuture<'a, Option<String>>;

    /// Proposes a batch a follower forwarded, unstamped (this node must lead; it stamps the
    /// batch and never forwards it again).
    fn forwarded_write(&self, batch: UnstampedBatch) -> ServiceFuture<'_, Result<Written, ClusterError>>;

    /// Checks an operator's signed admin request with this node's gate and carries it out
    /// here, never forwarding it again.
    fn forwarded_admin(&self, request: SignedAdmin) -> ServiceFuture<'_, Result<String, ClusterError>>;

    /// The index a linearizable read must have applied, confirmed with a quorum (this node must
    /// lead).
    fn read_index(&self) -> ServiceFuture<'_, Result<u64, ClusterError>>;
}

/// Everything the listener of one node shares between its connections.
struct PeerServer {
    service: Arc<dyn PeerService>,
    network: TcpNetwork,
    handshakes: Arc<Mutex<Handshakes>>,
    member_hosts: RwLock<HashSet<IpAddr>>,
    connections: Mutex<MemberConnections>,
    next_connection: AtomicU64,
    node_bytes: Arc<Semaphore>,
}

impl PeerServer {
    fn refuse(&self, reason: &str) {
        self.service.metrics().peer_refusals.with_label_values(&[reason]).inc();
    }

    /// A handshake slot for a connection from `address`, or `None` if its budget is spent.
    fn admit(&self, address: IpAddr) -> Option<HandshakeSlot> {
        let stranger = !self.member_hosts.read().unwrap_or_else(|p| p.into_inner()).contains(&address);
        let mut table = lock(&self.handshakes);
        let from_address = table.by_address.get(&address).copied().unwrap_or(0);
        if from_address >= MAX_HANDSHAKES_PER_ADDRESS || (stranger && table.strangers >= MAX_STRANGER_HANDSHAKES) {
            return None;
        }
        *table.by_address.entry(address).or_default() += 1;
        if stranger {
            table.strangers += 1;
        }
        Some(HandshakeSlot { table: self.handshakes.clone(), address, stranger })
    }

    /// Resolves every member's Raft address to the hosts that never draw on the strangers'
    /// handshake budget.
    async fn refresh_member_hosts(&self) {
        let mut addrs: Vec<String> = {
            let metrics = self.service.raft().metrics();
            let m = metrics.borrow();
            m.membership_config.membership().nodes().map(|(_, n)| n.addr.clone()).collect()
        };
        addrs.extend(self.network.seed_peer_addrs.iter().cloned());
        let mut hosts = HashSet::new();
        for addr in addrs {
            match tokio::net::lookup_host(&addr).await {
                Ok(resolved) => hosts.extend(resolved.map(|a| a.ip())),
                Err(e) => tracing::debug!(%addr, error = %e, "a member's address does not resolve"),
            }
        }
        *self.member_hosts.write().unwrap_or_else(|p| p.into_inner()) = hosts;
    }

    /// Whether `member` is a voter or learner of the Raft membership this node knows. A node with
    /// no membership yet (a new cluster's or a new learner's first contact) takes every member of
    /// the member table; once it has one, a removed member is refused even though its key is
    /// still in the table.
    fn in_membership(&self, member: NodeId) -> bool {
        let metrics = self.service.raft().metrics();
        let m = metrics.borrow();
        let membership = m.membership_config.membership();
        membership.nodes().next().is_none() || membership.get_node(&member).is_some()
    }

    /// Registers a new authenticated connection of `member`, closing its oldest past the cap;
    /// returns its id and the signal that closes it.
    fn register(&self, member: NodeId) -> (u64, Arc<Notify>) {
        let id = self.next_connection.fetch_add(1, Ordering::Relaxed);
        let close = Arc::new(Notify::new());
        let mut connections = lock(&self.connections);
        let list = connections.entry(member).or_default();
        list.push_back((id, close.clone()));
        while list.len() > MAX_CONNECTIONS_PER_MEMBER {
            if let Some((_, oldest)) = list.pop_front() {
                oldest.notify_one();
            }
        }
        (id, close)
    }

    fn unregister(&self, member: NodeId, id: u64) {
        let mut connections = lock(&self.connections);
        if let Some(list) = connections.get_mut(&member) {
            list.retain(|(c, _)| *c != id);
            if list.is_empty() {
                connections.remove(&member);
            }
        }
    }
}

/// Serves everything for `node` (a `CoordinatorNode`, or any [`PeerService`]) on `listener`:
/// Raft RPCs, forwarded writes, admin commands and leader-transfer steps, to authenticated
/// members only. `network` is the node's own (its handshake identity and member table). Runs
/// until dropped.
pub async fn serve_node(listener: TcpListener, node: Arc<dyn PeerService>, network: TcpNetwork) {
    let server = Arc::new(PeerServer {
        service: node,
        network,
        handshakes: Arc::default(),
        member_hosts: RwLock::default(),
        connections: Mutex::default(),
        next_connection: AtomicU64::new(0),
        node_bytes: Arc::new(Semaphore::new(MAX_BYTES_IN_FLIGHT_PER_NODE)),
    });
    let refresher = server.clone();
    let _refreshing = AbortOnDrop(tokio::spawn(async move {
        loop {
            refresher.refresh_member_hosts().await;
            tokio::time::sleep(Duration::from_millis(MEMBER_HOSTS_REFRESH_MS)).await;
        }
    }));
    let mut connections = tokio::task::JoinSet::new();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "peer listener: accept failed; retrying");
                    tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_DELAY_MS)).await;
                    continue;
                }
            },
            // Reap finished connections, so the set holds only live ones.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let Some(slot) = server.admit(peer.ip()) else {
            server.refuse("busy");
            tracing::debug!(%peer, "peer listener: handshake budget spent; connection closed");
            continue;
        };
        let server = server.clone();
        connections.spawn(async move {
            match serve_connection(&server, stream, slot).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    tracing::debug!(%peer, "peer connection closed by peer")
                }
                Err(e) => tracing::debug!(%peer, error = %e, "peer connection ended"),
            }
        });
    }
}

/// Authenticates an inbound connection: TLS with a member's key, then a hello whose node id is
/// that member's. Returns the encrypted stream and the member.
async fn authenticate(
    server: &PeerServer,
    stream: TcpStream,
) -> std::io::Result<(tokio_rustls::server::TlsStream<TcpStream>, NodeId)> {
    let (mut tls, member) = match server.network.auth.accept(stream).await {
        Ok(accepted) => accepted,
        Err(e) => {
            server.refuse(if e.kind() == std::io::ErrorKind::PermissionDenied { "not_member" } else { "handshake" });
            return Err(e);
        }
    };
    let hello = read_frame_limited::<_, Hello>(&mut tls, MAX_HANDSHAKE_BYTES).await?;
    let network = server.network.network();
    let refusal = if !server.in_membership(member) {
        Some(("not_member", format!("node {member} is not in this node's Raft membership (removed?)")))
    } else if hello.wire_version != WIRE_VERSION {
        Some(("handshake", format!("wire version {}, this node speaks {WIRE_VERSION}", hello.wire_version)))
    } else if hello.network != network {
        Some(("handshake", format!("peer is on network {:?}, this node is on network {network:?}", hello.network)))
    } else if hello.from != member {
        Some(("impersonation", format!("authenticated as node {member}, but claims to be node {}", hello.from)))
    } else {
        None
    };
    if let Some((reason, text)) = refusal {
        server.refuse(reason);
        tracing::warn!(member, %text, "refused a peer connection");
        write_frame(&mut tls, &HelloReply::Refused(text.clone())).await?;
        return Err(std::io::Error::new(std::io::ErrorKind::PermissionDenied, text));
    }
    write_frame(&mut tls, &HelloReply::Welcome).await?;
    Ok((tls, member))
}

async fn serve_connection(server: &Arc<PeerServer>, stream: TcpStream, slot: HandshakeSlot) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let handshake = tokio::time::timeout(Duration::from_millis(HANDSHAKE_TIMEOUT_MS), authenticate(server, stream));
    let (tls, member) = match handshake.await {
        Ok(authenticated) => authenticated?,
        Err(_) => {
            server.refuse("handshake");
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no handshake in time"));
        }
    };
    drop(slot);
    let (connection, close) = server.register(member);
    let result = serve_member(server, tls, member, &close).await;
    server.unregister(member, connection);
    result
}

/// The request loop of one authenticated connection.
async fn serve_member(
    server: &Arc<PeerServer>,
    tls: tokio_rustls::server::TlsStream<TcpStream>,
    member: NodeId,
    close: &Notify,
) -> std::io::Result<()> {
    let (mut reader, writer) = tokio::io::split(tls);
    let (answers, mut outbox) = mpsc::channel::<Vec<u8>>(MAX_IN_FLIGHT_PER_CONNECTION);
    let writing = tokio::spawn(async move {
        let mut writer = BufWriter::new(writer);
        while let Some(frame) = outbox.recv().await {
            write_frame_bytes(&mut writer, &frame).await?;
            // Flush once the queue is drained: answers that complete together share a write.
            if outbox.is_empty() {
                writer.flush().await?;
            }
        }
        writer.shutdown().await
    });
    let in_flight = Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_CONNECTION));
    let connection_bytes = Arc::new(Semaphore::new(MAX_BYTES_IN_FLIGHT_PER_CONNECTION));
    let idle = Duration::from_millis(IDLE_TIMEOUT_MS);
    let result = loop {
        let Ok(slot) = in_flight.clone().acquire_owned().await else { break Ok(()) };
        let next = read_request(&mut reader, &connection_bytes, &server.node_bytes);
        let (request, held) = tokio::select! {
            read = tokio::time::timeout(idle, next) => match read {
                Ok(Ok(request)) => request,
                Ok(Err(e)) => break Err(e),
                Err(_) => break Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "idle connection closed")),
            },
            _ = close.notified() => break Ok(()),
        };
        let (server, answers) = (server.clone(), answers.clone());
        tokio::spawn(async move {
            let _held = (slot, held);
            let body = match authorize(&request.body, member, server.service.raft()) {
                Ok(()) => handle(request.body, server.service.as_ref()).await,
                Err(why) => {
                    server.refuse("request");
                    tracing::warn!(member, kind = request.body.kind(), %why, "refused a peer request");
                    Response::Refused(why)
                }
            };
            // The connection may be gone; then the answer has nowhere to go.
            let _ = answers.send(encode_raft(&Tagged { id: request.id, body })).await;
        });
    };
    drop(answers);
    let _ = writing.await;
    result
}

/// Reads one request, first taking its size from the connection's and the node's byte budgets
/// (waiting while they are spent); the permits are released when the request is answered.
async fn read_request<R: AsyncRead + Unpin>(
    reader: &mut R,
    connection_bytes: &Arc<Semaphore>,
    node_bytes: &Arc<Semaphore>,
) -> std::io::Result<(Tagged<Request>, (OwnedSemaphorePermit, OwnedSemaphorePermit))> {
    let len = read_length(reader, MAX_FRAME_BYTES).await?;
    let closed = |_| std::io::Error::other("byte budget closed");
    // `len` fits in u32: it came from a u32 and is at most MAX_FRAME_BYTES.
    let connection = connection_bytes.clone().acquire_many_owned(len as u32).await.map_err(closed)?;
    let node = node_bytes.clone().acquire_many_owned(len as u32).await.map_err(closed)?;
    let request = read_body(reader, len).await?;
    Ok((request, (connection, node)))
}

/// Whether authenticated `member` may make `request`: Raft messages only in its own name, a
/// leader-transfer step only from the leader, a snapshot chunk only within the receive cap.
fn authorize(request: &Request, member: NodeId, raft: &Raft<TypeConfig>) -> Result<(), String> {
    let own_name = |claimed: Option<NodeId>, what: &str| match claimed {
        Some(claimed) if claimed == member => Ok(()),
        claimed => Err(format!("node {member} sent a {what} in the name of node {claimed:?}")),
    };
    match request {
        Request::Append(rpc) => own_name(rpc.vote.leader_id().voted_for(), "append"),
        Request::Vote(rpc) => own_name(rpc.vote.leader_id().voted_for(), "vote request"),
        Request::Snapshot(rpc) => {
            own_name(rpc.vote.leader_id().voted_for(), "snapshot")?;
            let end = rpc.offset.saturating_add(rpc.data.len() as u64);
            if end > MAX_SNAPSHOT_RECEIVE_BYTES {
                return Err(format!(
                    "a snapshot chunk reaching byte {end} is past the {MAX_SNAPSHOT_RECEIVE_BYTES}-byte cap"
                ));
            }
            Ok(())
        }
        Request::Control(_) => {
            let leader = raft.metrics().borrow().current_leader;
            if leader == Some(member) {
                Ok(())
            } else {
                Err(format!("node {member} sent a leader-transfer step, but the leader is {leader:?}"))
            }
        }
        Request::Write(_) | Request::Admin(_) | Request::ReadIndex => Ok(()),
    }
}

async fn handle(request: Request, service: &dyn PeerService) -> Response {
    let raft = service.raft();
    match request {
        Request::Append(rpc) => match service.overwrites_committed(&rpc).await {
            Some(why) => {
                service.metrics().peer_refusals.with_label_values(&["overwrite_committed"]).inc();
                let leader = rpc.vote.leader_id().voted_for();
                tracing::error!(?leader, %why, "refused an append that would overwrite a committed entry");
                Response::Refused(why)
            }
            None => Response::Append(raft.append_entries(rpc).await),
        },
        Request::Vote(rpc) => Response::Vote(raft.vote(rpc).await),
        Request::Snapshot(rpc) => Response::Snapshot(raft.install_snapshot(rpc).await),
        Request::Write(batch) => Response::Written(
            service
                .forwarded_write(batch)
                .await
                .map(|w| (w.log_index, w.outcome))
                .map_err(|e| RemoteFailure::from_cluster(&e)),
        ),
        Request::Admin(request) => {
            Response::Admin(service.forwarded_admin(request).await.map_err(|e| RemoteFailure::from_cluster(&e)))
        }
        Request::Control(request) => Response::Control(handle_control(raft, request).await),
        Request::ReadIndex => {
            Response::ReadIndex(service.read_index().await.map_err(|e| RemoteFailure::from_cluster(&e)))
        }
    }
}

/// One pipelined connection to a peer.
struct Link {
    addr: String,
    outbox: mpsc::Sender<Vec<u8>>,
    waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<Response>>>>,
    next_id: AtomicU64,
    closed: Arc<AtomicBool>,
}

/// Removes a caller's id from the waiting table when the caller finishes or gives up.
struct Waiting<'a> {
    link: &'a Link,
    id: u64,
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        lock(&self.link.waiting).remove(&self.id);
    }
}

impl Link {
    /// Connects to node `to` at `addr`: TCP, mutual TLS as `auth`'s member, then the hello.
    async fn open(addr: &str, to: NodeId, network: &str, auth: &PeerAuth) -> Result<Link, LinkError> {
        let connect = async {
            let io = |e: std::io::Error| LinkError::Io { addr: addr.to_string(), reason: e.to_string() };
            let stream = TcpStream::connect(addr)
                .await
                .map_err(|e| LinkError::Connect { addr: addr.to_string(), reason: e.to_string() })?;
            stream.set_nodelay(true).map_err(io)?;
            let mut tls = auth.connect(stream, to).await.map_err(|e| match e.kind() {
                std::io::ErrorKind::PermissionDenied => {
                    LinkError::Refused { addr: addr.to_string(), reason: e.to_string() }
                }
                _ => LinkError::Connect { addr: addr.to_string(), reason: format!("TLS handshake: {e}") },
            })?;
            let hello = Hello { wire_version: WIRE_VERSION, network: network.to_string(), from: auth.me() };
            write_frame(&mut tls, &hello).await.map_err(io)?;
            match read_frame_limited::<_, HelloReply>(&mut tls, MAX_HANDSHAKE_BYTES).await.map_err(io)? {
                HelloReply::Welcome => Ok(tls),
                HelloReply::Refused(reason) => Err(LinkError::Refused { addr: addr.to_string(), reason }),
            }
        };
        let stream =
            tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), connect).await.unwrap_or_else(|_| {
                Err(LinkError::Connect {
                    addr: addr.to_string(),
                    reason: format!("no handshake within {CONNECT_TIMEOUT_MS} ms"),
                })
            })?;
        let (mut reader, writer) = tokio::io::split(stream);
        let (outbox, mut queued) = mpsc::channel::<Vec<u8>>(MAX_IN_FLIGHT_PER_CONNECTION);
        let waiting: Arc<Mutex<HashMap<u64, oneshot::Sender<Response>>>> = Arc::default();
        let closed = Arc::new(AtomicBool::new(false));
        let (writer_closed, reader_closed) = (closed.clone(), closed.clone());
        tokio::spawn(async move {
            let mut writer = BufWriter::new(writer);
            while let Some(frame) = queued.recv().await {
                let sent = async {
                    write_frame_bytes(&mut writer, &frame).await?;
                    if queued.is_empty() {
                        writer.flush().await?;
                    }
                    Ok::<_, std::io::Error>(())
                };
                if sent.await.is_err() {
                    break;
                }
            }
            writer_closed.store(true, Ordering::Release);
            // Tells the server we are done, so that its side (and our reader) ends too.
            let _ = writer.shutdown().await;
        });
        let answered = waiting.clone();
        let peer = addr.to_string();
        tokio::spawn(async move {
            loop {
                match read_frame_limited::<_, Tagged<Response>>(&mut reader, MAX_FRAME_BYTES).await {
                    Ok(answer) => {
                        if let Some(caller) = lock(&answered).remove(&answer.id) {
                            let _ = caller.send(answer.body);
                        }
                    }
                    Err(e) => {
                        if e.kind() != std::io::ErrorKind::UnexpectedEof {
                            tracing::debug!(peer, error = %e, "raft link closed");
                        }
                        break;
                    }
                }
            }
            reader_closed.store(true, Ordering::Release);
            // Every caller still waiting learns the link is gone.
            lock(&answered).clear();
        });
        Ok(Link { addr: addr.to_string(), outbox, waiting, next_id: AtomicU64::new(0), closed })
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire) || self.outbox.is_closed()
    }

    async fn call(&self, request: &Request, deadline: Duration) -> Result<Response, LinkError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let bytes = encode_raft(&Tagged { id, body: request });
        if bytes.len() > MAX_FRAME_BYTES {
            return Err(LinkError::TooLarge { size_bytes: bytes.len(), limit_bytes: MAX_FRAME_BYTES });
        }
        let (tx, rx) = oneshot::channel();
        lock(&self.waiting).insert(id, tx);
        let _waiting = Waiting { link: self, id };
        let io = |reason: String| LinkError::Io { addr: self.addr.clone(), reason };
        let exchange = async {
            self.outbox.send(bytes).await.map_err(|_| io("link closed".into()))?;
            rx.await.map_err(|_| io("link closed before the answer".into()))
        };
        tokio::time::timeout(deadline, exchange)
            .await
            .unwrap_or_else(|_| Err(io(format!("no response within {} ms", deadline.as_millis()))))
    }
}

/// The peer side of one node: its handshake identity, its network id and its pipelined links
/// to peers. Clones share the links.
#[derive(Clone)]
pub struct TcpNetwork {
    auth: PeerAuth,
    network: String,
    /// One slot per peer, each behind its own lock: connecting to one peer never holds up
    /// callers of another.
    links: Arc<Mutex<HashMap<(NodeId, String), LinkSlot>>>,
    links_opened: Arc<AtomicU64>,
    round_trips: Option<HistogramVec>,
    /// Peer addresses known before the Raft membership is (the bootstrap peers): their hosts
    /// never draw on the strangers' handshake budget.
    seed_peer_addrs: Arc<Vec<String>>,
}

type LinkSlot = Arc<tokio::sync::Mutex<Option<Arc<Link>>>>;

impl TcpNetwork {
    /// `network` must equal every peer's network id, or they refuse the connection; `auth` is
    /// this node's key and the members it trusts.
    pub fn new(network: impl Into<String>, auth: PeerAuth) -> Self {
        TcpNetwork {
            auth,
            network: network.into(),
            links: Arc::default(),
            links_opened: Arc::default(),
            round_trips: None,
            seed_peer_addrs: Arc::default(),
        }
    }

    /// Treats the hosts of `addrs` as members' hosts from the start, before a membership is
    /// known (a new cluster's bootstrap peers).
    pub fn with_seed_peer_addrs(mut self, addrs: Vec<String>) -> Self {
        self.seed_peer_addrs = Arc::new(addrs);
        self
    }

    /// Records every RPC's round trip in `histogram` (labels: peer, rpc).
    pub fn with_round_trip_metric(mut self, histogram: HistogramVec) -> Self {
        self.round_trips = Some(histogram);
        self
    }

    /// Connections opened so far (a pipelined network opens one per peer, plus reconnects).
    pub fn links_opened(&self) -> u64 {
        self.links_opened.load(Ordering::Relaxed)
    }

    /// The network id this side presents.
    pub fn network(&self) -> &str {
        &self.network
    }

    /// This side's handshake identity and member table.
    pub fn auth(&self) -> &PeerAuth {
        &self.auth
    }

    async fn link(&self, to: NodeId, addr: &str) -> Result<Arc<Link>, LinkError> {
        let slot = lock(&self.links).entry((to, addr.to_string())).or_default().clone();
        let mut slot = slot.lock().await;
        if let Some(link) = slot.as_ref() {
            if !link.is_closed() {
                return Ok(link.clone());
            }
        }
        let link = Arc::new(Link::open(addr, to, &self.network, &self.auth).await?);
        self.links_opened.fetch_add(1, Ordering::Relaxed);
        *slot = Some(link.clone());
        Ok(link)
    }

    async fn call(&self, to: NodeId, addr: &str, request: Request, deadline: Duration) -> Result<Response, LinkError> {
        let started = Instant::now();
        let kind = request.kind();
        let link = self.link(to, addr).await?;
        let result = match link.call(&request, deadline).await? {
            Response::Refused(reason) => Err(LinkError::RequestRefused { addr: addr.to_string(), reason }),
            response => Ok(response),
        };
        if let (Ok(_), Some(h)) = (&result, &self.round_trips) {
            h.with_label_values(&[&to.to_string(), kind]).observe(started.elapsed().as_secs_f64());
        }
        result
    }

    /// Proposes `batch` on node `to` at `addr`, which must lead (it answers `not_leader`
    /// otherwise) and stamps it, and returns its log index and outcome.
    pub async fn write(
        &self,
        to: NodeId,
        addr: &str,
        batch: UnstampedBatch,
        deadline: Duration,
    ) -> Result<Result<(u64, CommandOutcome), RemoteFailure>, LinkError> {
        match self.call(to, addr, Request::Write(batch), deadline).await? {
            Response::Written(r) => Ok(r),
            _ => Err(LinkError::Io { addr: addr.to_string(), reason: "response of the wrong kind".into() }),
        }
    }

    /// Asks node `to` at `addr`, which must lead, for the index a linearizable read must have
    /// applied.
    pub async fn read_index(
        &self,
        to: NodeId,
        addr: &str,
        deadline: Duration,
    ) -> Result<Result<u64, RemoteFailure>, LinkError> {
        match self.call(to, addr, Request::ReadIndex, deadline).await? {
            Response::ReadIndex(r) => Ok(r),
            _ => Err(LinkError::Io { addr: addr.to_string(), reason: "response of the wrong kind".into() }),
        }
    }

    /// Has node `to` at `addr` (the leader, for commands that need one) check and carry out an
    /// operator's signed admin request.
    pub async fn admin(
        &self,
        to: NodeId,
        addr: &str,
        request: SignedAdmin,
        deadline: Duration,
    ) -> Result<Result<String, RemoteFailure>, LinkError> {
        match self.call(to, addr, Request::Admin(request), deadline).await? {
            Response::Admin(r) => Ok(r),
            _ => Err(LinkError::Io { addr: addr.to_string(), reason: "response of the wrong kind".into() }),
        }
    }
}

/// Longest one step of a leader transfer may take over the network, beyond its own wait, in ms.
pub const CONTROL_TIMEOUT_MS: u64 = 2_000;

impl PeerControl for TcpNetwork {
    fn control<'a>(&'a self, peer: NodeId, addr: &'a str, request: ControlRequest) -> ControlFuture<'a> {
        let wait_ms = match &request {
            ControlRequest::Campaign { wait_ms } => *wait_ms,
            ControlRequest::SetElection { .. } => 0,
        };
        let deadline = Duration::from_millis(CONTROL_TIMEOUT_MS + wait_ms);
        let fut: Pin<Box<dyn Future<Output = _> + Send + 'a>> = Box::pin(async move {
            match self.call(peer, addr, Request::Control(request), deadline).await {
                Ok(Response::Control(r)) => r,
                Ok(_) => Err(format!("peer {peer} answered a control request with the wrong kind")),
                Err(e) => Err(e.to_string()),
            }
        });
        fut
    }
}

impl RaftNetworkFactory<TypeConfig> for TcpNetwork {
    type Network = TcpConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        TcpConnection { target, addr: node.addr.clone(), network: self.clone() }
    }
}

/// openraft's handle on one peer: calls go over the shared pipelined link to its address.
pub struct TcpConnection {
    target: NodeId,
    addr: String,
    network: TcpNetwork,
}

fn link_error<E: std::error::Error>(e: LinkError) -> RPCError<NodeId, BasicNode, E> {
    match e {
        LinkError::Io { .. } => RPCError::Network(NetworkError::new(&e)),
        _ => RPCError::Unreachable(Unreachable::new(&e)),
    }
}

fn unexpected<E: std::error::Error>(addr: &str) -> RPCError<NodeId, BasicNode, E> {
    link_error(LinkError::Io { addr: addr.to_string(), reason: "response of the wrong kind".into() })
}

impl RaftNetwork<TypeConfig> for TcpConnection {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        let entries = rpc.entries.len() as u64;
        let response = match self.network.call(self.target, &self.addr, Request::Append(rpc), option.hard_ttl()).await {
            // Too many entries for one frame: openraft retries with fewer.
            Err(LinkError::TooLarge { .. }) => {
                return Err(RPCError::PayloadTooLarge(PayloadTooLarge::new_entries_hint((entries / 2).max(1))))
            }
            other => other.map_err(link_error)?,
        };
        match response {
            Response::Append(r) => {
                r.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
            }
            _ => Err(unexpected(&self.addr)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<InstallSnapshotResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>>
    {
        match self
            .network
            .call(self.target, &self.addr, Request::Snapshot(rpc), option.hard_ttl())
            .await
            .map_err(link_error)?
        {
            Response::Snapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
            }
            _ => Err(unexpected(&self.addr)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        match self
            .network
            .call(self.target, &self.addr, Request::Vote(rpc), option.hard_ttl())
            .await
            .map_err(link_error)?
        {
            Response::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
            }
            _ => Err(unexpected(&self.addr)),
        }
    }
}
