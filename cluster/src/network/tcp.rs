//! Raft traffic, forwarded writes and admin requests between coordinators over TCP.
//!
//! Each frame is a u32 little-endian length followed by one record in the storage crate's
//! openraft record format (bincode behind the codec's version byte). Every connection starts
//! with a handshake naming the network; a peer from another network is refused with a clear
//! reason and never reaches Raft.
//!
//! Connections are persistent and pipelined: one per peer address, shared by every caller in
//! the process (Raft replication, votes, forwarded writes, admin). Each request carries an id;
//! the server handles up to [`MAX_IN_FLIGHT_PER_CONNECTION`] requests of a connection at once and
//! answers each as it completes, and the client matches answers to callers by id. A caller that
//! gives up (openraft cancels its own calls at `RPCOption::hard_ttl`) leaves its id behind; a late
//! answer for it is dropped, never credited to another request.
//!
//! Limits: [`MAX_FRAME_BYTES`] per frame, [`MAX_INBOUND_CONNECTIONS`] served at once,
//! [`MAX_IN_FLIGHT_PER_CONNECTION`] requests per connection, [`CONNECT_TIMEOUT_MS`] to connect and
//! shake hands, [`IDLE_TIMEOUT_MS`] of silence before a server closes a connection.

use crate::admin::{AdminCommand, ControlFuture, ControlReply, ControlRequest, PeerControl};
use deai_storage::{decode_raft_limited, encode_raft, CommandOutcome, LogCommand, NodeId, TypeConfig};
use openraft::error::{InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::BasicNode;
use prometheus::HistogramVec;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufWriter};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, Semaphore};

/// Largest frame read or written, in bytes (snapshots travel in chunks well below this).
pub const MAX_FRAME_BYTES: usize = 32 * 1024 * 1024;
/// Inbound connections served at once; more wait in the listen backlog.
pub const MAX_INBOUND_CONNECTIONS: usize = 64;
/// Requests of one connection handled at once; further ones wait to be read (TCP backpressure).
pub const MAX_IN_FLIGHT_PER_CONNECTION: usize = 1_024;
/// Time to connect and complete the handshake, in milliseconds.
pub const CONNECT_TIMEOUT_MS: u64 = 1_000;
/// Pause after a failed `accept` (say, out of file descriptors) before the next, in milliseconds.
pub const ACCEPT_RETRY_DELAY_MS: u64 = 100;
/// Largest handshake frame accepted from a peer that has not yet said who it is, in bytes.
pub const MAX_HANDSHAKE_BYTES: usize = 4 * 1024;
/// An inbound connection silent this long is closed (heartbeats keep live ones busy), in ms.
pub const IDLE_TIMEOUT_MS: u64 = 60_000;
/// Version of this frame protocol, checked in the handshake. Version 2 tags requests with ids.
pub const WIRE_VERSION: u32 = 2;

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
    /// A write forwarded by a follower or sent by a client; answered by `client_write` here,
    /// never forwarded again.
    Write(LogCommand),
    /// An admin command forwarded to the leader; never forwarded again.
    Admin(AdminCommand),
    /// A step of a leader transfer.
    Control(ControlRequest),
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
    fn from_cluster(e: &crate::ClusterError) -> Self {
        let leader = match e {
            crate::ClusterError::NotLeader { leader } => *leader,
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
    /// The request could not be handled here (the server has no node for admin requests).
    Unsupported(String),
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

async fn read_frame_limited<R: AsyncRead + Unpin, T: for<'de> Deserialize<'de>>(
    stream: &mut R,
    limit: usize,
) -> std::io::Result<T> {
    let mut len = [0u8; 4];
    stream.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > limit {
        return Err(std::io::Error::other(format!("peer sent a frame of {len} bytes, over the limit of {limit}")));
    }
    let mut bytes = vec![0u8; len];
    stream.read_exact(&mut bytes).await?;
    decode_raft_limited::<T, MAX_FRAME_BYTES>(&bytes).map_err(std::io::Error::other)
}

/// What a server does with the requests that are not Raft RPCs. A bare Raft server (see
/// [`serve`]) answers them as unsupported; [`serve_node`] runs them on its node.
type NodeHandle = Option<Arc<crate::CoordinatorNode>>;

/// Serves Raft RPCs for `raft` on `listener` until the task is dropped. Writes are proposed to
/// `raft` directly; admin requests are refused (use [`serve_node`] for those).
pub async fn serve(listener: TcpListener, raft: openraft::Raft<TypeConfig>, network: String) {
    serve_with(listener, raft, None, network).await
}

/// Serves everything for `node`: Raft RPCs, writes and admin commands.
pub async fn serve_node(listener: TcpListener, node: Arc<crate::CoordinatorNode>, network: String) {
    let raft = node.raft.clone();
    serve_with(listener, raft, Some(node), network).await
}

async fn serve_with(listener: TcpListener, raft: openraft::Raft<TypeConfig>, node: NodeHandle, network: String) {
    let slots = Arc::new(Semaphore::new(MAX_INBOUND_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "raft listener: accept failed; retrying");
                tokio::time::sleep(Duration::from_millis(ACCEPT_RETRY_DELAY_MS)).await;
                continue;
            }
        };
        let (raft, node, network) = (raft.clone(), node.clone(), network.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match serve_connection(stream, raft, node, network).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    tracing::debug!(%peer, "raft connection closed by peer")
                }
                Err(e) => tracing::warn!(%peer, error = %e, "raft connection failed"),
            }
        });
    }
}

async fn serve_connection(
    mut stream: TcpStream,
    raft: openraft::Raft<TypeConfig>,
    node: NodeHandle,
    network: String,
) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let hello = tokio::time::timeout(
        Duration::from_millis(CONNECT_TIMEOUT_MS),
        read_frame_limited::<_, Hello>(&mut stream, MAX_HANDSHAKE_BYTES),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no handshake in time"))??;
    if hello.wire_version != WIRE_VERSION {
        let reason = format!("wire version {}, this node speaks {WIRE_VERSION}", hello.wire_version);
        return write_frame(&mut stream, &HelloReply::Refused(reason)).await;
    }
    if hello.network != network {
        let reason = format!("peer is on network {:?}, this node is on network {network:?}", hello.network);
        tracing::warn!(peer = ?stream.peer_addr().ok(), %reason, "refused a raft connection");
        return write_frame(&mut stream, &HelloReply::Refused(reason)).await;
    }
    write_frame(&mut stream, &HelloReply::Welcome).await?;

    let (mut reader, writer) = stream.into_split();
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
    let idle = Duration::from_millis(IDLE_TIMEOUT_MS);
    let result = loop {
        let Ok(slot) = in_flight.clone().acquire_owned().await else { break Ok(()) };
        let request =
            match tokio::time::timeout(idle, read_frame_limited::<_, Tagged<Request>>(&mut reader, MAX_FRAME_BYTES))
                .await
            {
                Ok(Ok(request)) => request,
                Ok(Err(e)) => break Err(e),
                Err(_) => break Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "idle connection closed")),
            };
        let (raft, node, answers) = (raft.clone(), node.clone(), answers.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let body = handle(request.body, &raft, node.as_deref()).await;
            // The connection may be gone; then the answer has nowhere to go.
            let _ = answers.send(encode_raft(&Tagged { id: request.id, body })).await;
        });
    };
    drop(answers);
    let _ = writing.await;
    result
}

async fn handle(
    request: Request,
    raft: &openraft::Raft<TypeConfig>,
    node: Option<&crate::CoordinatorNode>,
) -> Response {
    match request {
        Request::Append(rpc) => Response::Append(raft.append_entries(rpc).await),
        Request::Vote(rpc) => Response::Vote(raft.vote(rpc).await),
        Request::Snapshot(rpc) => Response::Snapshot(raft.install_snapshot(rpc).await),
        Request::Write(command) => Response::Written(
            match node {
                Some(node) => node.submit_command(&command).await.map(|w| (w.log_index, w.outcome)),
                None => crate::node::client_write(raft, command).await.map(|w| (w.log_index, w.outcome)),
            }
            .map_err(|e| RemoteFailure::from_cluster(&e)),
        ),
        Request::Admin(command) => match node {
            Some(node) => Response::Admin(node.admin_here(command).await.map_err(|e| RemoteFailure::from_cluster(&e))),
            None => Response::Unsupported("this endpoint serves Raft only".into()),
        },
        Request::Control(request) => Response::Control(crate::admin::handle_control(raft, request).await),
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

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding this lock cannot leave the table inconsistent (single inserts and
    // removes), so carry on with it.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Link {
    async fn open(addr: &str, network: &str, from: NodeId) -> Result<Link, LinkError> {
        let connect = async {
            let io = |e: std::io::Error| LinkError::Io { addr: addr.to_string(), reason: e.to_string() };
            let mut stream = TcpStream::connect(addr)
                .await
                .map_err(|e| LinkError::Connect { addr: addr.to_string(), reason: e.to_string() })?;
            stream.set_nodelay(true).map_err(io)?;
            let hello = Hello { wire_version: WIRE_VERSION, network: network.to_string(), from };
            write_frame(&mut stream, &hello).await.map_err(io)?;
            match read_frame_limited::<_, HelloReply>(&mut stream, MAX_HANDSHAKE_BYTES).await.map_err(io)? {
                HelloReply::Welcome => Ok(stream),
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
        let (mut reader, writer) = stream.into_split();
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

/// The TCP side of one node, or of a client of the cluster: its network id and its pipelined
/// links to peers. Clones share the links.
#[derive(Clone)]
pub struct TcpNetwork {
    from: NodeId,
    network: String,
    links: Arc<tokio::sync::Mutex<HashMap<String, Arc<Link>>>>,
    links_opened: Arc<AtomicU64>,
    round_trips: Option<HistogramVec>,
}

impl TcpNetwork {
    /// `network` must equal every peer's network id, or they refuse the connection.
    pub fn new(from: NodeId, network: impl Into<String>) -> Self {
        TcpNetwork {
            from,
            network: network.into(),
            links: Arc::default(),
            links_opened: Arc::default(),
            round_trips: None,
        }
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

    async fn link(&self, addr: &str) -> Result<Arc<Link>, LinkError> {
        let mut links = self.links.lock().await;
        if let Some(link) = links.get(addr) {
            if !link.is_closed() {
                return Ok(link.clone());
            }
        }
        let link = Arc::new(Link::open(addr, &self.network, self.from).await?);
        self.links_opened.fetch_add(1, Ordering::Relaxed);
        links.insert(addr.to_string(), link.clone());
        Ok(link)
    }

    async fn call(&self, peer: &str, addr: &str, request: Request, deadline: Duration) -> Result<Response, LinkError> {
        let started = Instant::now();
        let kind = match &request {
            Request::Append(_) => "append",
            Request::Vote(_) => "vote",
            Request::Snapshot(_) => "snapshot",
            Request::Write(_) => "write",
            Request::Admin(_) => "admin",
            Request::Control(_) => "control",
        };
        let link = self.link(addr).await?;
        let result = link.call(&request, deadline).await;
        if let (Ok(_), Some(h)) = (&result, &self.round_trips) {
            h.with_label_values(&[peer, kind]).observe(started.elapsed().as_secs_f64());
        }
        result
    }

    /// Proposes `command` on the node at `addr`, which must lead (it answers `not_leader`
    /// otherwise), and returns its log index and outcome.
    pub async fn write(
        &self,
        addr: &str,
        command: LogCommand,
        deadline: Duration,
    ) -> Result<Result<(u64, CommandOutcome), RemoteFailure>, LinkError> {
        match self.call("client", addr, Request::Write(command), deadline).await? {
            Response::Written(r) => Ok(r),
            _ => Err(LinkError::Io { addr: addr.to_string(), reason: "response of the wrong kind".into() }),
        }
    }

    /// Runs an admin command on the node at `addr` (the leader, for commands that need one).
    pub async fn admin(
        &self,
        addr: &str,
        command: AdminCommand,
        deadline: Duration,
    ) -> Result<Result<String, RemoteFailure>, LinkError> {
        match self.call("admin", addr, Request::Admin(command), deadline).await? {
            Response::Admin(r) => Ok(r),
            Response::Unsupported(reason) => {
                Ok(Err(RemoteFailure { code: "unsupported".into(), message: reason, leader: None }))
            }
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
            match self.call(&peer.to_string(), addr, Request::Control(request), deadline).await {
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
        TcpConnection { target, label: target.to_string(), addr: node.addr.clone(), network: self.clone() }
    }
}

/// openraft's handle on one peer: calls go over the shared pipelined link to its address.
pub struct TcpConnection {
    target: NodeId,
    label: String,
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
        let response = match self.network.call(&self.label, &self.addr, Request::Append(rpc), option.hard_ttl()).await {
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
            .call(&self.label, &self.addr, Request::Snapshot(rpc), option.hard_ttl())
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
            .call(&self.label, &self.addr, Request::Vote(rpc), option.hard_ttl())
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
