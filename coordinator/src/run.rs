//! `deai coordinator`: one node of the cluster, from its configuration to a clean stop.
//!
//! Start order: load the genesis and key, open the database and start Raft, listen for peers,
//! bootstrap the cluster if asked to and the log is empty, start the actors (scheduler and
//! reward epochs while leading, payout signing), sign checkpoints, serve HTTP. On SIGINT or
//! SIGTERM the reverse: stop HTTP (in-flight requests get `shutdown_grace_ms`), stop the actors
//! and signing, stop Raft; the database is left consistent and the exit code is 0. When a
//! critical task dies (the write batcher, the peer listener, the HTTP server), `/readyz` turns
//! 503 at once; after `critical_failure_hold_ms` the node stops the same way and exits non-zero,
//! so that its orchestrator restarts it.

use crate::config::CoordinatorConfig;
use anyhow::{bail, Context};
use deai_actors::{CoordinatorActors, Duties};
use deai_cluster::identity::CoordinatorIdentity;
use deai_cluster::network::peer_auth::PeerAuth;
use deai_cluster::network::tcp::{self, TcpNetwork};
use deai_cluster::outbox::CoordinatorOutbox;
use deai_cluster::{CoordinatorNode, NodeMetrics};
use deai_protocol::Genesis;
use openraft::BasicNode;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

/// Largest genesis file read, in bytes.
pub const MAX_GENESIS_FILE_BYTES: u64 = 1024 * 1024;

/// Reads a genesis file written by `deai genesis`.
pub fn load_genesis(path: &Path) -> anyhow::Result<Genesis> {
    let size = std::fs::metadata(path)
        .with_context(|| {
            format!(
                "genesis file {}: set genesis_file (DEAI_NODE_GENESIS_FILE) to the network's genesis.bin, \
                 which `deai genesis --out DIR` writes",
                path.display()
            )
        })?
        .len();
    if size > MAX_GENESIS_FILE_BYTES {
        bail!("genesis file {} is {size} bytes, over the limit of {MAX_GENESIS_FILE_BYTES}", path.display());
    }
    let bytes = std::fs::read(path).with_context(|| format!("genesis file {}", path.display()))?;
    deai_protocol::codec::decode_framed(&bytes).map_err(|e| {
        anyhow::anyhow!(
            "genesis file {} is not a deai genesis: {e}; use the genesis.bin `deai genesis` wrote for this network",
            path.display()
        )
    })
}

/// Resolves when the process is asked to stop.
async fn stop_requested() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => tokio::select! {
                _ = tokio::signal::ctrl_c() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
                "SIGINT"
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

/// Runs a node until SIGINT or SIGTERM.
pub async fn run(config: CoordinatorConfig) -> anyhow::Result<()> {
    run_until(config, stop_requested()).await
}

/// Runs a node until `stop` resolves (with the reason to log).
pub async fn run_until(
    config: CoordinatorConfig,
    stop: impl std::future::Future<Output = &'static str>,
) -> anyhow::Result<()> {
    let genesis = load_genesis(&config.genesis_file)?;
    let identity = CoordinatorIdentity::load(&config.key_file)?;
    let network_id = genesis.network_id.0.clone();
    let admin_auth = crate::admin_auth::AdminAuth::new(&config.admin_keys, &network_id)?;
    let is_coordinator = genesis.coordinators.iter().any(|c| c.id == identity.id());
    if config.sign_checkpoints && !is_coordinator {
        bail!(
            "the key in {} is not one of the genesis coordinators of network {network_id:?}; \
             use the coordinator's own key, or set sign_checkpoints = false",
            config.key_file.display()
        );
    }
    let id = config.node_id;
    tracing::info!(node = id, network = %network_id, data_dir = %config.data_dir.display(), "starting coordinator");

    let member_keys = config.member_key_map()?;
    if member_keys.is_empty() {
        bail!(
            "member_keys is empty: list every member's node id and coordinator key as id=hex \
             (deai genesis writes it into each node file)"
        );
    }
    for (member, key) in &member_keys {
        if !genesis.coordinators.iter().any(|c| c.id == *key) {
            bail!(
                "member_keys: node {member}'s key {key} is not a genesis coordinator of network {network_id:?}; \
                 copy member_keys from a node file `deai genesis` wrote for this network"
            );
        }
    }
    let auth = PeerAuth::new(id, &identity.signing, member_keys).map_err(|e| anyhow::anyhow!("[{}] {e}", e.code()))?;
    let metrics = NodeMetrics::new(id);
    let network = TcpNetwork::new(network_id.clone(), auth)
        .with_round_trip_metric(metrics.peer_round_trip_seconds.clone())
        .with_seed_peer_addrs(config.peer_map()?.into_values().collect());
    let mut node = CoordinatorNode::start_with_metrics(
        id,
        &config.data_dir,
        genesis,
        network.clone(),
        &config.raft,
        clock(config.clock_offset_ms),
        metrics,
    )
    .await
    .map_err(|e| anyhow::anyhow!("[{}] {e}", e.code()))?;
    node.forward_writes_over_tcp(network.clone());
    let node = Arc::new(node);

    let listener = tokio::net::TcpListener::bind(&config.raft_addr).await.with_context(|| {
        format!(
            "cannot listen for Raft traffic on {}: stop what listens there or set raft_addr \
                 (DEAI_NODE_RAFT_ADDR) to a free address",
            config.raft_addr
        )
    })?;
    let raft_server = node.critical_tasks().spawn("peer listener", tcp::serve_node(listener, node.clone(), network));
    tracing::info!(addr = %config.raft_addr, "listening for peers");

    if config.bootstrap {
        let initialized = node.raft.is_initialized().await.map_err(|e| anyhow::anyhow!("raft stopped: {e}"))?;
        if initialized {
            tracing::info!("log is not empty: joining the existing cluster, no bootstrap");
        } else {
            let members: BTreeMap<u64, BasicNode> =
                config.peer_map()?.into_iter().map(|(id, addr)| (id, BasicNode::new(addr))).collect();
            tracing::info!(voters = ?members.keys().collect::<Vec<_>>(), "bootstrapping the cluster");
            node.raft.initialize(members).await.map_err(|e| anyhow::anyhow!("bootstrap failed: {e}"))?;
        }
    }

    let outbox = CoordinatorOutbox::new(node.clone(), identity.signing.clone());
    let identity = Arc::new(identity);
    // Only a genesis coordinator can sign allocations, epoch closes, payouts and checkpoints.
    let actors = if is_coordinator {
        let actors_config =
            deai_actors::ActorsConfig { sign_checkpoints: config.sign_checkpoints, ..config.actors.clone() };
        let duties = Duties::new(outbox.clone(), identity.clone(), tokio::runtime::Handle::current(), actors_config)
            .map_err(|e| anyhow::anyhow!("[{}] {e}", e.code()))?;
        Some(CoordinatorActors::start(duties).map_err(|e| anyhow::anyhow!("[{}] {e}", e.code()))?)
    } else {
        tracing::warn!("this node's key is not a genesis coordinator's: it will not schedule, close epochs or sign");
        None
    };

    let handles = crate::http::ActorHandles {
        client_queues: actors.as_ref().map(CoordinatorActors::client_queues),
        miner_sessions: actors.as_ref().map(CoordinatorActors::miner_sessions),
    };
    node.install_admin_gate(Arc::new(crate::admin_auth::AdminAuthority { auth: admin_auth, outbox: outbox.clone() }));
    let http = crate::http::serve(
        node.clone(),
        handles,
        &config.http_addr,
        crate::http_body::BodyLimits::new(
            config.max_body_bytes,
            config.max_concurrent_bodies,
            config.max_body_bytes_in_flight,
            config.body_read_timeout_ms,
        ),
        config.header_read_timeout_ms,
        config.shutdown_grace_ms,
        config.max_long_poll_ms,
    )
    .with_context(|| {
        format!(
            "cannot serve HTTP on {}: stop what listens there or set http_addr (DEAI_NODE_HTTP_ADDR) to a free address",
            config.http_addr
        )
    })?;
    let http_handle = http.handle();
    let mut http_task = tokio::spawn(http);
    tracing::info!(addr = %config.http_addr, "serving /metrics, /livez, /readyz and /v1");

    let critical = node.critical_tasks().clone();
    let mut http_ended = false;
    let failure = tokio::select! {
        signal = stop => {
            tracing::info!(signal, "stopping: HTTP first, then the actors (checkpoint signing included), then Raft");
            None
        }
        why = critical.failed() => Some(why),
        ended = &mut http_task => {
            http_ended = true;
            let why = format!("ended: {ended:?}");
            critical.report("HTTP server", &why);
            Some(format!("HTTP server {why}"))
        }
    };
    if let Some(why) = &failure {
        // Readiness already fails; keep answering a moment so that probes and load balancers
        // see it before the process goes.
        tracing::error!(%why, hold_ms = config.critical_failure_hold_ms, "a critical task died: stopping the node");
        tokio::time::sleep(std::time::Duration::from_millis(config.critical_failure_hold_ms)).await;
    }
    // Miner sessions are streams without an end of their own: end them, so that the graceful
    // stop waits only for requests that finish.
    if let Some(actors) = &actors {
        actors.miner_sessions().close();
    }
    http_handle.stop(true).await;
    if !http_ended {
        let _ = http_task.await;
    }
    if let Some(actors) = actors {
        // The actor thread joins here; proposals it started finish on this runtime.
        tokio::task::block_in_place(|| actors.stop());
    }
    raft_server.abort();
    // The gate holds the node through the outbox: let go of it, so the node can close.
    node.remove_admin_gate();
    node.raft.shutdown().await.map_err(|e| anyhow::anyhow!("raft did not stop cleanly: {e}"))?;
    match failure {
        Some(why) => bail!("the node stopped because a critical task died: {why}"),
        None => {
            tracing::info!("stopped");
            Ok(())
        }
    }
}

/// The node's one clock: the system's, moved by `offset_ms` when a chaos run skews this node.
fn clock(offset_ms: i64) -> deai_clock::SharedClock {
    if offset_ms == 0 {
        return deai_clock::system();
    }
    tracing::warn!(offset_ms, "this node's clock is skewed on purpose (clock_offset_ms): for chaos runs only");
    std::sync::Arc::new(deai_clock::OffsetClock::new(deai_clock::system(), offset_ms))
}
