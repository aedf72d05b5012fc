//! `deai genesis`: everything a new cluster needs, in one directory.
//!
//! Writes one key per coordinator (fresh randomness, owner-only files), the genesis listing
//! their public keys, and one configuration file per node with loopback addresses, node 0
//! bootstrapping. Copy the directory to the hosts, or edit the addresses, and start each node
//! with `deai coordinator --config node-<i>.toml`.

use anyhow::{bail, Context};
use deai_clock::Clock;
use deai_cluster::identity::CoordinatorIdentity;
use deai_coordinator::config::node_file;
use deai_protocol::Genesis;
use std::path::Path;

/// What `deai genesis` creates.
pub struct NewCluster {
    pub network: String,
    pub coordinators: u64,
    pub host: String,
    pub raft_port_base: u16,
    pub http_port_base: u16,
    /// A dev network accepts `DevFaucet` entries.
    pub dev: bool,
    /// Overrides the default checkpoint interval, in accepted entries.
    pub checkpoint_every: Option<u64>,
    /// Overrides the default reward epoch length, in milliseconds.
    pub epoch_ms: Option<u64>,
    /// Overrides the default voting period of governance proposals, in milliseconds.
    pub voting_period_ms: Option<u64>,
}

/// The admin key file `deai genesis` writes beside the node files.
pub const ADMIN_KEY_FILE: &str = "admin.key";

pub fn fresh_seed() -> anyhow::Result<[u8; 32]> {
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(|e| anyhow::anyhow!("no randomness for a new key: {e}"))?;
    Ok(seed)
}

pub fn write(out: &Path, new: &NewCluster) -> anyhow::Result<()> {
    if !(1..=16).contains(&new.coordinators) {
        bail!("a cluster has 1 to 16 coordinators, not {}", new.coordinators);
    }
    if out.join("genesis.bin").exists() {
        bail!("{} already holds a genesis; choose an empty directory", out.display());
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut infos = Vec::new();
    let mut member_keys = Vec::new();
    for i in 0..new.coordinators {
        let identity = CoordinatorIdentity::from_seed(fresh_seed()?);
        identity.save(&out.join(format!("coordinator-{i}.key")))?;
        member_keys.push(format!("{i}={}", identity.id()));
        infos.push(identity.info());
    }
    let member_keys = member_keys.join(",");
    let mut genesis = Genesis::dev(&new.network, infos);
    genesis.dev = new.dev;
    // Ledger time and the first epoch start now: a genesis in the past would make the leader
    // close every epoch since then, one entry each.
    genesis.start_ms = deai_clock::SystemClock.now_ms();
    if let Some(epoch_ms) = new.epoch_ms {
        genesis.params.epoch_ms = epoch_ms;
    }
    if let Some(voting_period_ms) = new.voting_period_ms {
        if voting_period_ms == 0 {
            bail!("the voting period must be at least 1 ms");
        }
        genesis.params.voting_period_ms = voting_period_ms;
    }
    if let Some(every) = new.checkpoint_every {
        // Each checkpoint adds one signature entry per coordinator; an interval no longer than
        // that would make the signatures themselves due for signing, forever.
        if every <= new.coordinators {
            bail!("checkpoint_every must exceed the number of coordinators ({})", new.coordinators);
        }
        genesis.params.checkpoint_every = every;
    }
    deai_protocol::Ledger::new(genesis.clone()).map_err(|e| anyhow::anyhow!("invalid genesis: {e}"))?;
    std::fs::write(out.join("genesis.bin"), deai_protocol::codec::encode_framed(&genesis))?;
    let port = |base: u16, i: u64| -> anyhow::Result<u16> {
        u16::try_from(u64::from(base) + i).context("port numbers run past 65535")
    };
    let mut peers = Vec::new();
    for i in 0..new.coordinators {
        peers.push(format!("{i}={}:{}", new.host, port(new.raft_port_base, i)?));
    }
    let peers = peers.join(",");
    // The operator's admin key: the nodes accept membership changes, leader transfers and
    // snapshots only when it signs them (`deai admin --key admin.key`).
    let admin = CoordinatorIdentity::from_seed(fresh_seed()?);
    admin.save(&out.join(ADMIN_KEY_FILE))?;
    let admin_key = deai_api::hex::hex(admin.signing.verifying_key().as_bytes());
    for i in 0..new.coordinators {
        let raft = format!("{}:{}", new.host, port(new.raft_port_base, i)?);
        let http = format!("{}:{}", new.host, port(new.http_port_base, i)?);
        let file =
            node_file(i, &raft, &http, &peers, &member_keys, i == 0) + &format!("admin_keys = [\"{admin_key}\"]\n");
        std::fs::write(out.join(format!("node-{i}.toml")), file)?;
    }
    Ok(())
}
