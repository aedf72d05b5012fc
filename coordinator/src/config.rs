//! `deai coordinator` configuration: a TOML file, then `DEAI_NODE_*` environment variables on
//! top.
//!
//! Every field has a default, so a file holds only what differs. Environment variables are
//! `DEAI_NODE_` and the field in upper case (`DEAI_NODE_RAFT_ADDR`; the node id is
//! `DEAI_NODE_ID`); nested fields join with a double underscore
//! (`DEAI_NODE_RAFT__HEARTBEAT_INTERVAL_MS`). Only that prefix is read, so one environment can
//! also hold what `deai client` and `deai miner` read (`DEAI_COORDINATORS`, ...); a
//! `DEAI_NODE_*` variable that names no field is warned about and ignored, not fatal, while an
//! unknown field in the file is an error (a file is written for this program alone). Relative
//! paths in the file are relative to the file's own directory, so a cluster directory can move
//! as a whole.

use anyhow::{bail, Context};
use deai_cluster::ClusterConfig;
use deai_protocol::types::ParticipantId;
use figment::providers::{Format, Serialized, Toml};
use figment::Figment;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// One coordinator's settings.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoordinatorConfig {
    /// This node's Raft id; unique in the cluster.
    pub node_id: u64,
    /// Where the node keeps its database.
    pub data_dir: PathBuf,
    /// The network's genesis file (`deai genesis` writes one).
    pub genesis_file: PathBuf,
    /// This coordinator's key file (64 hex digits).
    pub key_file: PathBuf,
    /// Address to listen on for Raft traffic from peers; also what peers are told.
    pub raft_addr: String,
    /// Address of the HTTP endpoint: `/metrics`, `/livez`, `/readyz` and `/v1`.
    pub http_addr: String,
    /// The cluster's first voters, as `id=host:port` separated by commas. Used only with
    /// `bootstrap`.
    pub peers: String,
    /// Every member's Raft node id and coordinator public key (hex), as `id=key` separated by
    /// commas. Peers authenticate with these keys (mutual TLS); a connection presenting any
    /// other key, or a member claiming another's id, is refused. Must list this node.
    pub member_keys: String,
    /// Initialise the cluster with `peers` when this node's log is empty. Set it on one node.
    pub bootstrap: bool,
    /// Sign checkpoints (SPEC 6.3) with this node's key.
    pub sign_checkpoints: bool,
    /// `text` or `json`.
    pub log_format: String,
    /// Largest request body the HTTP endpoint reads, in bytes.
    pub max_body_bytes: usize,
    /// Request bodies read at once; past it a request is answered 503 (retry).
    pub max_concurrent_bodies: usize,
    /// Bytes of request bodies held at once, across all requests, in bytes.
    pub max_body_bytes_in_flight: usize,
    /// Time a request body has to arrive whole, in milliseconds (408 past it).
    pub body_read_timeout_ms: u64,
    /// Time a request's head (line and headers) has to arrive, in milliseconds.
    pub header_read_timeout_ms: u64,
    /// Time in-flight HTTP requests get to finish at shutdown, in milliseconds.
    pub shutdown_grace_ms: u64,
    /// How long a node whose critical task died keeps answering (`/readyz` 503) before it
    /// stops and exits non-zero, in milliseconds.
    pub critical_failure_hold_ms: u64,
    /// Longest a long poll (`wait_ms` on orders and assignments) may wait, in milliseconds.
    pub max_long_poll_ms: u64,
    /// For `deai chaos` only, never in production: this node's clock reads this many
    /// milliseconds ahead of the system clock (behind when negative), to check what a skewed
    /// node does to ledger time (SPEC 6.1).
    pub clock_offset_ms: i64,
    /// Public keys (hex) whose signature the mutating admin routes require. Empty: the routes
    /// are open (dev networks; bind `http_addr` to a private interface then).
    pub admin_keys: Vec<String>,
    pub raft: RaftSettings,
    pub actors: ActorSettings,
}

/// The actors' timers (`deai_actors::ActorsConfig`), with their units in their names.
pub type ActorSettings = deai_actors::ActorsConfig;

/// The Raft timeouts and limits, as `deai_cluster::ClusterConfig` names them (units in the names).
pub type RaftSettings = ClusterConfig;

/// Default largest HTTP body: a full log command plus framing, in bytes.
pub const DEFAULT_MAX_BODY_BYTES: usize = deai_storage::MAX_LOG_COMMAND_BYTES + 1024;

impl Default for CoordinatorConfig {
    fn default() -> Self {
        CoordinatorConfig {
            node_id: 0,
            data_dir: "data".into(),
            genesis_file: "genesis.bin".into(),
            key_file: "coordinator.key".into(),
            raft_addr: "127.0.0.1:7100".into(),
            http_addr: "127.0.0.1:8100".into(),
            peers: String::new(),
            member_keys: String::new(),
            bootstrap: false,
            sign_checkpoints: true,
            log_format: "text".into(),
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_concurrent_bodies: 32,
            max_body_bytes_in_flight: 8 * DEFAULT_MAX_BODY_BYTES,
            body_read_timeout_ms: 10_000,
            header_read_timeout_ms: 5_000,
            shutdown_grace_ms: 5_000,
            critical_failure_hold_ms: 1_000,
            max_long_poll_ms: deai_api::views::MAX_LONG_POLL_MS,
            clock_offset_ms: 0,
            admin_keys: Vec::new(),
            raft: RaftSettings::default(),
            actors: ActorSettings::default(),
        }
    }
}

/// The prefix of the environment variables a coordinator reads its configuration from.
pub const ENV_PREFIX: &str = "DEAI_NODE_";

/// A configuration, and the environment variables it ignored (for the caller to warn about once
/// logging is set up).
pub struct Loaded {
    pub config: CoordinatorConfig,
    pub ignored_env: Vec<String>,
}

/// The field a `DEAI_NODE_*` variable names, as figment keys it (lower case, `.` for `__`).
fn env_key(rest: &str) -> String {
    let key = rest.to_ascii_lowercase().replace("__", ".");
    if key == "id" {
        "node_id".to_string()
    } else {
        key
    }
}

/// Every key the configuration has, nested ones joined with `.`.
fn known_keys() -> std::collections::BTreeSet<String> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut std::collections::BTreeSet<String>) {
        if let serde_json::Value::Object(fields) = value {
            for (name, inner) in fields {
                let key = if prefix.is_empty() { name.clone() } else { format!("{prefix}.{name}") };
                walk(&key, inner, out);
                out.insert(key);
            }
        }
    }
    let mut keys = std::collections::BTreeSet::new();
    if let Ok(defaults) = serde_json::to_value(CoordinatorConfig::default()) {
        walk("", &defaults, &mut keys);
    }
    keys
}

impl CoordinatorConfig {
    /// Defaults, then `file` (if given), then the environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_from(file, std::env::vars()).map(|loaded| loaded.config)
    }

    /// Defaults, then `file` (if given), then the `DEAI_NODE_*` variables among `env`.
    pub fn load_from(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> anyhow::Result<Loaded> {
        let mut figment = Figment::from(Serialized::defaults(CoordinatorConfig::default()));
        if let Some(file) = file {
            if !file.exists() {
                bail!("config file {} does not exist; `deai genesis --out DIR` writes one per node", file.display());
            }
            figment = figment.merge(Toml::file(file));
        }
        let known = known_keys();
        let mut ignored_env = Vec::new();
        let mut values = figment::value::Dict::new();
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else { continue };
            let key = env_key(rest);
            if !known.contains(&key) || rest == "CONFIG" {
                if rest != "CONFIG" {
                    ignored_env.push(name);
                }
                continue;
            }
            let parsed: figment::value::Value = value.parse().unwrap_or(figment::value::Value::from(value));
            insert_nested(&mut values, &key, parsed);
        }
        figment = figment.merge(Serialized::defaults(values));
        let mut config: CoordinatorConfig = figment.extract().context("invalid coordinator configuration")?;
        if let Some(base) = file.and_then(Path::parent) {
            for path in [&mut config.data_dir, &mut config.genesis_file, &mut config.key_file] {
                if path.is_relative() {
                    *path = base.join(&*path);
                }
            }
        }
        config.check()?;
        ignored_env.sort();
        Ok(Loaded { config, ignored_env })
    }

    fn check(&self) -> anyhow::Result<()> {
        if !matches!(self.log_format.as_str(), "text" | "json") {
            bail!("log_format must be \"text\" or \"json\", not {:?}", self.log_format);
        }
        if self.bootstrap {
            let peers = self.peer_map()?;
            if !peers.contains_key(&self.node_id) {
                bail!("bootstrap: peers must include this node ({})", self.node_id);
            }
        }
        Ok(())
    }

    /// `peers` as a map from node id to Raft address.
    pub fn peer_map(&self) -> anyhow::Result<BTreeMap<u64, String>> {
        parse_peers(&self.peers)
    }

    /// `member_keys` as a map from node id to coordinator key.
    pub fn member_key_map(&self) -> anyhow::Result<BTreeMap<u64, ParticipantId>> {
        let mut keys = BTreeMap::new();
        for (id, hex) in parse_peers(&self.member_keys).context("member_keys")? {
            let bytes = deai_api::hex::unhex32(&hex)
                .with_context(|| format!("member_keys: node {id}'s key is not 64 hex digits"))?;
            keys.insert(id, ParticipantId(bytes));
        }
        Ok(keys)
    }
}

/// Puts `value` at `key` (`a.b.c`) in `dict`, making the inner dictionaries on the way.
fn insert_nested(dict: &mut figment::value::Dict, key: &str, value: figment::value::Value) {
    match key.split_once('.') {
        None => {
            dict.insert(key.to_string(), value);
        }
        Some((head, rest)) => {
            let inner = dict
                .entry(head.to_string())
                .or_insert_with(|| figment::value::Value::from(figment::value::Dict::new()));
            if let figment::value::Value::Dict(_, inner) = inner {
                insert_nested(inner, rest, value);
            }
        }
    }
}

/// Parses `id=value,id=value` (`id=host:port` for peers, `id=key` for member keys).
pub fn parse_peers(text: &str) -> anyhow::Result<BTreeMap<u64, String>> {
    let mut peers = BTreeMap::new();
    for item in text.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (id, addr) = item.split_once('=').with_context(|| format!("peer {item:?} is not id=host:port"))?;
        let id: u64 = id.trim().parse().with_context(|| format!("peer id {id:?} is not a number"))?;
        if peers.insert(id, addr.trim().to_string()).is_some() {
            bail!("peer {id} is listed twice");
        }
    }
    Ok(peers)
}

/// The TOML `deai genesis` writes for one node of a new cluster.
pub fn node_file(
    node_id: u64,
    raft_addr: &str,
    http_addr: &str,
    peers: &str,
    member_keys: &str,
    bootstrap: bool,
) -> String {
    format!(
        "# deai coordinator {node_id}. Every field can be overridden by a DEAI_NODE_* environment variable.\n\
         node_id = {node_id}\n\
         data_dir = \"data/node-{node_id}\"\n\
         genesis_file = \"genesis.bin\"\n\
         key_file = \"coordinator-{node_id}.key\"\n\
         raft_addr = \"{raft_addr}\"\n\
         http_addr = \"{http_addr}\"\n\
         peers = \"{peers}\"\n\
         member_keys = \"{member_keys}\"\n\
         bootstrap = {bootstrap}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_parse_and_bad_ones_are_named() {
        let peers = parse_peers("0=127.0.0.1:7100, 1=127.0.0.1:7101").unwrap();
        assert_eq!(peers[&1], "127.0.0.1:7101");
        assert!(parse_peers("x=1").unwrap_err().to_string().contains("\"x\""));
        assert!(parse_peers("1=a,1=b").unwrap_err().to_string().contains("twice"));
        assert!(parse_peers("oops").unwrap_err().to_string().contains("id=host:port"));
    }

    #[test]
    fn a_file_is_read_and_its_relative_paths_follow_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node-1.toml");
        std::fs::write(
            &file,
            node_file(
                1,
                "127.0.0.1:7101",
                "127.0.0.1:8101",
                "1=127.0.0.1:7101",
                &format!("1={}", "ab".repeat(32)),
                true,
            ),
        )
        .unwrap();
        let config = CoordinatorConfig::load(Some(&file)).unwrap();
        assert_eq!(config.node_id, 1);
        assert_eq!(config.member_key_map().unwrap()[&1], ParticipantId([0xab; 32]));
        assert_eq!(config.data_dir, dir.path().join("data/node-1"));
        assert_eq!(config.raft.heartbeat_interval_ms, ClusterConfig::default().heartbeat_interval_ms);
    }

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn node_variables_override_and_others_are_left_alone_or_warned_about() {
        let env = vars(&[
            ("DEAI_NODE_ID", "7"),
            ("DEAI_NODE_RAFT_ADDR", "127.0.0.1:7999"),
            ("DEAI_NODE_BOOTSTRAP", "false"),
            ("DEAI_NODE_RAFT__HEARTBEAT_INTERVAL_MS", "42"),
            ("DEAI_NODE_ADMIN_KEYS", "[\"ab\"]"),
            ("DEAI_NODE_NOT_A_FIELD", "1"),
            ("DEAI_COORDINATORS", "127.0.0.1:8100"),
            ("DEAI_CLIENT_KEY_FILE", "client.key"),
            ("DEAI_RAFT_ADDR", "127.0.0.1:1"),
        ]);
        let loaded = CoordinatorConfig::load_from(None, env).unwrap();
        assert_eq!(loaded.config.node_id, 7);
        assert_eq!(loaded.config.raft_addr, "127.0.0.1:7999");
        assert_eq!(loaded.config.raft.heartbeat_interval_ms, 42);
        assert_eq!(loaded.config.admin_keys, vec!["ab".to_string()]);
        assert_eq!(loaded.ignored_env, vec!["DEAI_NODE_NOT_A_FIELD".to_string()]);
    }

    #[test]
    fn a_bad_value_names_its_field() {
        let err = CoordinatorConfig::load_from(None, vars(&[("DEAI_NODE_MAX_BODY_BYTES", "lots")])).err().unwrap();
        assert!(format!("{err:#}").contains("max_body_bytes"), "{err:#}");
    }

    #[test]
    fn a_missing_file_says_how_to_make_one() {
        let err = CoordinatorConfig::load_from(Some(Path::new("/nonexistent/node.toml")), []).err().unwrap();
        assert!(err.to_string().contains("deai genesis"), "{err}");
    }

    #[test]
    fn file_errors_stay_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("node.toml");
        std::fs::write(&file, "node_id = 1\nnot_a_field = 2\n").unwrap();
        let err = format!("{:#}", CoordinatorConfig::load_from(Some(&file), []).err().unwrap());
        assert!(err.contains("not_a_field"), "{err}");
    }
}
