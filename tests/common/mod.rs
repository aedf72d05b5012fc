//! The process harness the binary's tests share: a cluster of real `deai coordinator`
//! processes on loopback, created by `deai genesis`, and waits that poll a condition against a
//! deadline.

#![allow(dead_code)]

use serde_json::Value;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const DEADLINE: Duration = Duration::from_secs(60);

/// Lower-case hex, as the API writes ids and envelopes.
pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}
pub const POLL: Duration = Duration::from_millis(50);

pub fn wait_for<T>(what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        std::thread::sleep(POLL);
    }
}

pub fn new_agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .http_status_as_error(false)
        .build()
        .into()
}

pub fn get_json(agent: &ureq::Agent, url: &str) -> Option<Value> {
    let mut response = agent.get(url).call().ok()?;
    if !response.status().is_success() {
        return None;
    }
    response.body_mut().read_json().ok()
}

/// Three consecutive free loopback ports (for `deai dev`'s port bases).
pub fn free_port_run() -> u16 {
    for _ in 0..1_000 {
        let first = free_port();
        if first > 65_000 {
            continue;
        }
        let held: Vec<_> = (0..3).filter_map(|k| std::net::TcpListener::bind(("127.0.0.1", first + k)).ok()).collect();
        if held.len() == 3 {
            return first;
        }
    }
    panic!("no three consecutive free ports");
}

/// A child process killed when the test ends, however it ends.
pub struct KilledOnDrop(pub Child);

impl Drop for KilledOnDrop {
    fn drop(&mut self) {
        stop(&mut self.0);
    }
}

/// A `deai miner run` process with the demo backend: its key file is written from `seed` into
/// `dir`, its log goes to `dir/miner-<first seed byte>.log`, it listens on a free port, and it
/// talks to `coordinators` (`host:port,...`). `extra` are more arguments (`--faucet`,
/// `--collateral ...`).
pub fn spawn_miner(
    dir: &std::path::Path,
    seed: [u8; 32],
    coordinators: &str,
    services: &str,
    extra: &[&str],
) -> KilledOnDrop {
    let key_file = dir.join(format!("miner-{}.key", seed[0]));
    std::fs::write(&key_file, hex(&seed)).expect("write the miner's key");
    let log = std::fs::File::create(dir.join(format!("miner-{}.log", seed[0]))).expect("create the miner's log");
    let child = Command::new(env!("CARGO_BIN_EXE_deai"))
        .args(["miner", "run", "--coordinator", coordinators, "--services", services])
        .args(extra)
        .arg("--key")
        .arg(&key_file)
        .args(["--listen", &format!("127.0.0.1:{}", free_port())])
        .env("DEAI_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("start deai miner run");
    KilledOnDrop(child)
}

fn stop(child: &mut Child) {
    let _ = child.kill();
    let _ = child.wait();
}

/// The text of a GET, whatever its status; `None` if the request failed.
pub fn get_text(agent: &ureq::Agent, url: &str) -> Option<String> {
    agent.get(url).call().ok()?.body_mut().read_to_string().ok()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

pub struct Node {
    pub id: u64,
    pub raft: String,
    pub http: String,
    pub child: Option<Child>,
}

/// The cluster's processes; killed when the test ends, however it ends.
pub struct Processes {
    pub dir: PathBuf,
    pub peers: String,
    pub nodes: Vec<Node>,
    /// More `DEAI_*` settings for every node this harness starts.
    pub env: Vec<(String, String)>,
}

impl Drop for Processes {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                stop(&mut child);
            }
        }
    }
}

impl Processes {
    pub fn start(&mut self, i: usize) {
        let node = &self.nodes[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join(format!("node-{}.log", node.id)))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_deai"))
            .arg("coordinator")
            .arg("--config")
            .arg(self.dir.join(format!("node-{}.toml", node.id)))
            // Addresses and timeouts come from the environment, over the file's.
            .env("DEAI_NODE_RAFT_ADDR", &node.raft)
            .env("DEAI_NODE_HTTP_ADDR", &node.http)
            .env("DEAI_NODE_PEERS", &self.peers)
            .env("DEAI_NODE_RAFT__HEARTBEAT_INTERVAL_MS", "50")
            .env("DEAI_NODE_RAFT__ELECTION_TIMEOUT_MIN_MS", "300")
            .env("DEAI_NODE_RAFT__ELECTION_TIMEOUT_MAX_MS", "600")
            .env("DEAI_NODE_LOG_FORMAT", "json")
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("deai coordinator starts");
        self.nodes[i].child = Some(child);
    }

    /// The network id of the genesis `deai genesis` wrote.
    pub fn network_id(&self) -> deai_protocol::types::NetworkId {
        let bytes = std::fs::read(self.dir.join("genesis.bin")).expect("genesis.bin");
        let genesis: deai_protocol::Genesis = deai_protocol::codec::decode_framed(&bytes).expect("a genesis");
        genesis.network_id
    }

    pub fn url(&self, i: usize, path: &str) -> String {
        format!("http://{}{}", self.nodes[i].http, path)
    }
}

impl Processes {
    /// Writes a new cluster with `deai genesis` into `dir` (extra arguments appended) and picks
    /// free loopback ports for three nodes; starts nothing.
    pub fn create(dir: &std::path::Path, genesis_args: &[&str]) -> Processes {
        let status = Command::new(env!("CARGO_BIN_EXE_deai"))
            .arg("genesis")
            .args(genesis_args)
            .arg("--out")
            .arg(dir)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "deai genesis");
        let nodes: Vec<Node> = (0..3)
            .map(|id| Node {
                id,
                raft: format!("127.0.0.1:{}", free_port()),
                http: format!("127.0.0.1:{}", free_port()),
                child: None,
            })
            .collect();
        let peers = nodes.iter().map(|n| format!("{}={}", n.id, n.raft)).collect::<Vec<_>>().join(",");
        Processes { dir: dir.to_path_buf(), peers, nodes, env: Vec::new() }
    }

    /// Starts all three and waits until each is ready.
    pub fn start_all(&mut self) {
        for i in 0..self.nodes.len() {
            self.start(i);
        }
        for i in 0..self.nodes.len() {
            self.wait_ready(i);
        }
    }

    pub fn wait_ready(&self, i: usize) {
        let agent = new_agent();
        wait_for("a node ready", || {
            agent.get(&self.url(i, "/readyz")).call().ok().filter(|r| r.status().is_success()).map(|_| ())
        });
    }

    /// SIGTERM to every running node; each must exit with code 0.
    pub fn stop_all_cleanly(&mut self) {
        for node in &mut self.nodes {
            if let Some(child) = node.child.as_mut() {
                let pid = child.id().to_string();
                assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
            }
        }
        for node in &mut self.nodes {
            if let Some(mut child) = node.child.take() {
                let code = wait_for("a clean exit", || child.try_wait().unwrap());
                assert!(code.success(), "node {} exited with {code}", node.id);
            }
        }
    }

    /// Every log line of every node that reports a panic.
    pub fn panics_in_logs(&self) -> Vec<String> {
        (0..self.nodes.len())
            .flat_map(|i| {
                let log = std::fs::read_to_string(self.dir.join(format!("node-{i}.log"))).unwrap_or_default();
                log.lines().filter(|l| l.contains("panicked")).map(str::to_string).collect::<Vec<_>>()
            })
            .collect()
    }
}
