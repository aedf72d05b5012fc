//! Raft traffic between coordinators over TCP (issue 4).
//!
//! Each frame is a u32 little-endian length followed by one record in the storage crate's
//! openraft record format (bincode behind the codec's version byte). Every connection starts
//! with a handshake naming the network. A peer from another network is refused with a clear
//! reason, and never reaches Raft. A connection carries one request at a time and is kept open
//! for the next; a failed call drops it, and the next call reconnects.
//!
//! Limits: [`MAX_FRAME_BYTES`] per frame, [`MAX_INBOUND_CONNECTIONS`] served at once,
//! [`CONNECT_TIMEOUT_MS`] to connect and shake hands; each RPC is bounded by openraft's own
//! deadline (`RPCOption::hard_ttl`).

use deai_storage::{decode_raft_limited, encode_raft, CommandOutcome, LogCommand, NodeId, TypeConfig};
use openraft::error::ClientWriteError;
use openraft::error::{InstallSnapshotError, NetworkError, PayloadTooLarge, RPCError, RaftError, Unreachable};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse, VoteRequest,
    VoteResponse,
};
use openraft::{BasicNode, Raft};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// Largest frame read or written, in bytes (snapshots travel in chunks well below this).
pub const MAX_FRAME_BYTES: usize = 32 * 1024 * 1024;
/// Inbound connections served at once; more wait in the listen backlog.
pub const MAX_INBOUND_CONNECTIONS: usize = 64;
/// Time to connect and complete the handshake, in milliseconds.
pub const CONNECT_TIMEOUT_MS: u64 = 1_000;
/// Pause after a failed `accept` (say, out of file descriptors) before the next, in milliseconds.
pub const ACCEPT_RETRY_DELAY_MS: u64 = 100;
/// Largest handshake frame accepted from a peer that has not yet said who it is, in bytes.
pub const MAX_HANDSHAKE_BYTES: usize = 4 * 1024;
/// An inbound connection silent this long is closed (heartbeats keep live ones busy), in ms.
pub const IDLE_TIMEOUT_MS: u64 = 60_000;
/// Version of this frame protocol, checked in the handshake.
pub const WIRE_VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
enum Request {
    Hello {
        wire_version: u32,
        network: String,
        from: NodeId,
    },
    Append(AppendEntriesRequest<TypeConfig>),
    Vote(VoteRequest<NodeId>),
    Snapshot(InstallSnapshotRequest<TypeConfig>),
    /// A write forwarded by a follower; answered by `client_write` here, never forwarded again.
    Write(LogCommand),
}

/// Why a forwarded write failed on the node that received it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RemoteWriteFailure {
    pub code: String,
    pub message: String,
    /// Set when the receiver is not the leader either (leadership moved meanwhile).
    pub leader: Option<NodeId>,
}

#[derive(Serialize, Deserialize)]
enum Response {
    Welcome,
    Refused(String),
    Append(Result<AppendEntriesResponse<NodeId>, RaftError<NodeId>>),
    Vote(Result<VoteResponse<NodeId>, RaftError<NodeId>>),
    Snapshot(Result<InstallSnapshotResponse<NodeId>, RaftError<NodeId, InstallSnapshotError>>),
    Written(Result<(u64, CommandOutcome), RemoteWriteFailure>),
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

async fn write_frame<T: Serialize>(stream: &mut TcpStream, value: &T) -> std::io::Result<()> {
    let bytes = encode_raft(value);
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(std::io::Error::other(format!("frame of {} bytes over the limit", bytes.len())));
    }
    write_frame_bytes(stream, &bytes).await
}

async fn write_frame_bytes(stream: &mut TcpStream, bytes: &[u8]) -> std::io::Result<()> {
    stream.write_all(&(bytes.len() as u32).to_le_bytes()).await?;
    stream.write_all(bytes).await?;
    stream.flush().await
}

async fn read_frame<T: for<'de> Deserialize<'de>>(stream: &mut TcpStream) -> std::io::Result<T> {
    read_frame_limited(stream, MAX_FRAME_BYTES).await
}

async fn read_frame_limited<T: for<'de> Deserialize<'de>>(stream: &mut TcpStream, limit: usize) -> std::io::Result<T> {
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

/// Serves Raft RPCs for `raft` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, raft: Raft<TypeConfig>, network: String) {
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
        let (raft, network) = (raft.clone(), network.clone());
        tokio::spawn(async move {
            let _permit = permit;
            match serve_connection(stream, raft, network).await {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    tracing::debug!(%peer, "raft connection closed by peer")
                }
                Err(e) => tracing::warn!(%peer, error = %e, "raft connection failed"),
            }
        });
    }
}

async fn serve_connection(mut stream: TcpStream, raft: Raft<TypeConfig>, network: String) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    let handshake = tokio::time::timeout(
        Duration::from_millis(CONNECT_TIMEOUT_MS),
        read_frame_limited::<Request>(&mut stream, MAX_HANDSHAKE_BYTES),
    )
    .await
    .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no handshake in time"))??;
    match handshake {
        Request::Hello { wire_version, network: theirs, .. } => {
            if wire_version != WIRE_VERSION {
                let reason = format!("wire version {wire_version}, this node speaks {WIRE_VERSION}");
                return write_frame(&mut stream, &Response::Refused(reason)).await;
            }
            if theirs != network {
                let reason = format!("peer is on network {theirs:?}, this node is on network {network:?}");
                tracing::warn!(peer = ?stream.peer_addr().ok(), %reason, "refused a raft connection");
                return write_frame(&mut stream, &Response::Refused(reason)).await;
            }
            write_frame(&mut stream, &Response::Welcome).await?;
        }
        _ => return write_frame(&mut stream, &Response::Refused("no handshake".into())).await,
    }
    let idle = Duration::from_millis(IDLE_TIMEOUT_MS);
    loop {
        let request = tokio::time::timeout(idle, read_frame::<Request>(&mut stream))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "idle connection closed"))??;
        let response = match request {
            Request::Hello { .. } => Response::Refused("handshake already done".into()),
            Request::Append(rpc) => Response::Append(raft.append_entries(rpc).await),
            Request::Vote(rpc) => Response::Vote(raft.vote(rpc).await),
            Request::Snapshot(rpc) => Response::Snapshot(raft.install_snapshot(rpc).await),
            Request::Write(command) => Response::Written(match raft.client_write(command).await {
                Ok(r) => Ok((r.log_id.index, r.data)),
                Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f))) => Err(RemoteWriteFailure {
                    code: "not_leader".into(),
                    message: "the forwarded-to node is not the leader".into(),
                    leader: f.leader_id,
                }),
                Err(e) => Err(RemoteWriteFailure { code: "raft_error".into(), message: e.to_string(), leader: None }),
            }),
        };
        write_frame(&mut stream, &response).await?;
    }
}

/// The network factory of one node.
#[derive(Clone)]
pub struct TcpNetwork {
    from: NodeId,
    network: String,
}

impl TcpNetwork {
    /// `network` must equal every peer's network id, or they refuse the connection.
    pub fn new(from: NodeId, network: impl Into<String>) -> Self {
        TcpNetwork { from, network: network.into() }
    }
}

impl RaftNetworkFactory<TypeConfig> for TcpNetwork {
    type Network = TcpConnection;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> Self::Network {
        TcpConnection { target, addr: node.addr.clone(), from: self.from, network: self.network.clone(), stream: None }
    }
}

/// A persistent connection to one peer, reopened after a failure.
pub struct TcpConnection {
    target: NodeId,
    addr: String,
    from: NodeId,
    network: String,
    stream: Option<TcpStream>,
}

impl TcpConnection {
    async fn connect(&self) -> Result<TcpStream, LinkError> {
        let addr = self.addr.clone();
        let connect = async {
            let mut stream = TcpStream::connect(&addr)
                .await
                .map_err(|e| LinkError::Connect { addr: addr.clone(), reason: e.to_string() })?;
            stream.set_nodelay(true).map_err(|e| LinkError::Io { addr: addr.clone(), reason: e.to_string() })?;
            let hello = Request::Hello { wire_version: WIRE_VERSION, network: self.network.clone(), from: self.from };
            let io = |e: std::io::Error| LinkError::Io { addr: addr.clone(), reason: e.to_string() };
            write_frame(&mut stream, &hello).await.map_err(io)?;
            match read_frame::<Response>(&mut stream).await.map_err(io)? {
                Response::Welcome => Ok(stream),
                Response::Refused(reason) => Err(LinkError::Refused { addr: addr.clone(), reason }),
                _ => Err(LinkError::Io { addr: addr.clone(), reason: "unexpected handshake reply".into() }),
            }
        };
        tokio::time::timeout(Duration::from_millis(CONNECT_TIMEOUT_MS), connect).await.unwrap_or_else(|_| {
            Err(LinkError::Connect {
                addr: self.addr.clone(),
                reason: format!("no handshake within {CONNECT_TIMEOUT_MS} ms"),
            })
        })
    }

    /// Sends one request and reads its response within `deadline`.
    ///
    /// The stream is taken out for the exchange and put back only after a complete one: if the
    /// caller drops this future mid-exchange (openraft times out its own calls), the half-used
    /// stream is dropped with it, so a late response can never be read as the answer to the next
    /// request.
    async fn call(&mut self, request: Request, deadline: Duration) -> Result<Response, LinkError> {
        let bytes = encode_raft(&request);
        if bytes.len() > MAX_FRAME_BYTES {
            return Err(LinkError::TooLarge { size_bytes: bytes.len(), limit_bytes: MAX_FRAME_BYTES });
        }
        let mut stream = match self.stream.take() {
            Some(stream) => stream,
            None => self.connect().await?,
        };
        let addr = self.addr.clone();
        let exchange = async {
            write_frame_bytes(&mut stream, &bytes).await?;
            read_frame::<Response>(&mut stream).await
        };
        let result = match tokio::time::timeout(deadline, exchange).await {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) => Err(LinkError::Io { addr, reason: e.to_string() }),
            Err(_) => Err(LinkError::Io { addr, reason: format!("no response within {} ms", deadline.as_millis()) }),
        };
        if result.is_ok() {
            self.stream = Some(stream);
        }
        result
    }
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
        let response = match self.call(Request::Append(rpc), option.hard_ttl()).await {
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
        match self.call(Request::Snapshot(rpc), option.hard_ttl()).await.map_err(link_error)? {
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
        match self.call(Request::Vote(rpc), option.hard_ttl()).await.map_err(link_error)? {
            Response::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(openraft::error::RemoteError::new(self.target, e)))
            }
            _ => Err(unexpected(&self.addr)),
        }
    }
}

/// Sends `command` to the node at `addr` (the leader) and returns its log index and outcome.
/// One hop only: the receiver writes locally or answers `not_leader`.
pub async fn forward_write(
    addr: &str,
    network: &str,
    from: NodeId,
    command: LogCommand,
    deadline: Duration,
) -> Result<Result<(u64, CommandOutcome), RemoteWriteFailure>, LinkError> {
    let mut link =
        TcpConnection { target: 0, addr: addr.to_string(), from, network: network.to_string(), stream: None };
    match link.call(Request::Write(command), deadline).await? {
        Response::Written(r) => Ok(r),
        _ => Err(LinkError::Io { addr: addr.to_string(), reason: "response of the wrong kind".into() }),
    }
}
