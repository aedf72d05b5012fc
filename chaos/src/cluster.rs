//! The cluster under test: `deai genesis` writes it, and each node is a `deai coordinator`
//! process with its own data directory and log, started, killed, restarted, paused and resumed
//! by PID. Dropping the cluster stops every process it started, paused ones included.

use crate::delay_proxy::{DelayProxy, LinkDelays};
use crate::netns::Network;
use crate::{ChaosError, ChaosResult};
use deai_api::views::{LedgerAudit, NodeStatus};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest one status request to one node may take, in milliseconds: a paused or dead node
/// must not hold up the sampler.
pub const STATUS_TIMEOUT_MS: u64 = 500;
/// Longest one audit of one node's whole ledger may take, in milliseconds.
pub const AUDIT_TIMEOUT_MS: u64 = 30_000;
/// Longest a node may take to be ready after it starts, in milliseconds.
pub const READY_TIMEOUT_MS: u64 = 60_000;
/// Longest a node may take to exit after SIGTERM before it gets SIGKILL, in milliseconds.
pub const STOP_GRACE_MS: u64 = 5_000;
/// Pause between two polls of a condition, in milliseconds.
pub const POLL_MS: u64 = 50;

/// One coordinator process.
pub struct NodeProcess {
    pub id: u64,
    /// The node's Raft address as its peers know it (the membership's).
    pub raft: String,
    /// Where the node listens for Raft: `raft` itself, or behind a delay proxy at `raft`.
    pub raft_listen: String,
    pub http: String,
    child: Option<Child>,
    paused: bool,
}

impl NodeProcess {
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    fn pid(&self) -> Option<Pid> {
        self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok()).map(Pid::from_raw)
    }
}

/// The cluster's processes.
pub struct ProcessCluster {
    pub dir: PathBuf,
    exe: PathBuf,
    peers: String,
    pub nodes: Vec<NodeProcess>,
    probe: ClusterProbe,
    /// The nodes' namespaces, when the run partitions them; otherwise all are on loopback.
    network: Option<Network>,
    /// The data directories mounted as small file systems of their own (for `disk-full`).
    mounted: Vec<PathBuf>,
    /// The delay proxies in front of the nodes' Raft ports (for `slow-net`), and their delays.
    proxies: Vec<DelayProxy>,
    link_delays: Option<LinkDelays>,
}

/// Size of each node's own file system when the run fills disks, in bytes: far more than a
/// run writes, so that only the filler fills it.
pub const DATA_FS_BYTES: u64 = 512 * 1024 * 1024;
/// The file that fills a node's disk.
const FILLER: &str = "chaos-filler.bin";
/// Size of one write of the filler, in bytes.
const FILL_CHUNK_BYTES: usize = 1024 * 1024;

/// Asks nodes about themselves over HTTP, each request bounded by [`STATUS_TIMEOUT_MS`];
/// cheap to clone, so a sampler thread holds its own.
#[derive(Clone)]
pub struct ClusterProbe {
    /// Node ids and HTTP addresses, in node order.
    nodes: Vec<(u64, String)>,
    agent: ureq::Agent,
}

impl ClusterProbe {
    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    /// Node `i`'s Raft id.
    pub fn id(&self, i: usize) -> u64 {
        self.nodes[i].0
    }

    /// Node `i`'s own ledger checked against its invariants (`/v1/ledger/audit`, its own
    /// state), or `None` when it does not answer within [`AUDIT_TIMEOUT_MS`].
    pub fn audit(&self, i: usize) -> Option<LedgerAudit> {
        let url = format!("http://{}/v1/ledger/audit?consistency=stale", self.nodes[i].1);
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_millis(AUDIT_TIMEOUT_MS)))
            .http_status_as_error(false)
            .build()
            .into();
        let mut answer = agent.get(&url).call().ok()?;
        if !answer.status().is_success() {
            return None;
        }
        answer.body_mut().read_json().ok()
    }

    /// Node `i`'s own view of the cluster, or `None` when it does not answer in time.
    pub fn status(&self, i: usize) -> Option<NodeStatus> {
        let url = format!("http://{}/v1/admin/status", self.nodes[i].1);
        let mut answer = self.agent.get(&url).call().ok()?;
        if !answer.status().is_success() {
            return None;
        }
        answer.body_mut().read_json().ok()
    }

    pub fn ready(&self, i: usize) -> bool {
        let url = format!("http://{}/readyz", self.nodes[i].1);
        self.agent.get(&url).call().is_ok_and(|r| r.status().is_success())
    }

    /// The index of the node that calls itself leader, if one that answers does.
    pub fn leader(&self) -> Option<usize> {
        (0..self.nodes.len()).find(|&i| self.status(i).is_some_and(|s| s.state == "leader"))
    }
}

/// A free loopback port (another process may take it before the node binds it; the node then
/// fails to start and says so in its log).
fn free_port() -> ChaosResult<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").map_err(ChaosError::io("bind a loopback port"))?;
    Ok(listener.local_addr().map_err(ChaosError::io("read a bound port"))?.port())
}

impl ProcessCluster {
    /// Writes a new `nodes`-member cluster for network `network` into `dir` with `exe genesis`
    /// (`exe` is the `deai` binary); starts nothing. With `namespaces`, each node runs in its
    /// own network namespace (for partitions and slow links); otherwise on loopback. With
    /// `slow_links`, each node's Raft port sits behind a [`DelayProxy`] (it needs `namespaces`).
    pub fn create(
        exe: &Path,
        dir: &Path,
        nodes: u64,
        network: &str,
        namespaces: Option<Network>,
        slow_links: bool,
    ) -> ChaosResult<Self> {
        if slow_links && namespaces.is_none() {
            return Err(ChaosError::BadArgument(
                "slow links need each node in a network namespace (a proxy knows a sender by its address)".into(),
            ));
        }
        let status = Command::new(exe)
            .arg("genesis")
            .args(["--network", network, "--coordinators", &nodes.to_string(), "--checkpoint-every", "50"])
            .arg("--out")
            .arg(dir)
            .stdout(Stdio::null())
            .status()
            .map_err(ChaosError::io("run deai genesis"))?;
        if !status.success() {
            return Err(ChaosError::NotReady(format!("deai genesis exited with {status}")));
        }
        let nodes = (0..nodes)
            .map(|id| {
                let (raft, http) = match &namespaces {
                    Some(n) => {
                        let address = n.address(id as usize);
                        (
                            format!("{address}:{}", crate::netns::RAFT_PORT),
                            format!("{address}:{}", crate::netns::HTTP_PORT),
                        )
                    }
                    None => (format!("127.0.0.1:{}", free_port()?), format!("127.0.0.1:{}", free_port()?)),
                };
                let raft_listen = match &namespaces {
                    Some(n) if slow_links => format!("{}:{}", n.address(id as usize), crate::netns::PROXIED_RAFT_PORT),
                    _ => raft.clone(),
                };
                Ok(NodeProcess { id, raft, raft_listen, http, child: None, paused: false })
            })
            .collect::<ChaosResult<Vec<_>>>()?;
        let peers = nodes.iter().map(|n| format!("{}={}", n.id, n.raft)).collect::<Vec<_>>().join(",");
        let timeout = Some(Duration::from_millis(STATUS_TIMEOUT_MS));
        let agent = ureq::Agent::config_builder().timeout_global(timeout).http_status_as_error(false).build().into();
        let probe = ClusterProbe { nodes: nodes.iter().map(|n| (n.id, n.http.clone())).collect(), agent };
        let (mut proxies, mut link_delays) = (Vec::new(), None);
        if let (true, Some(network)) = (slow_links, &namespaces) {
            let parse = |a: &str| {
                a.parse::<std::net::SocketAddr>().map_err(|e| ChaosError::Network(format!("address {a}: {e}")))
            };
            let hosts = nodes.iter().map(|n| parse(&n.raft).map(|a| a.ip())).collect::<ChaosResult<Vec<_>>>()?;
            let delays = LinkDelays::new(hosts);
            for (i, node) in nodes.iter().enumerate() {
                let (listen, upstream) = (parse(&node.raft)?, parse(&node.raft_listen)?);
                proxies.push(DelayProxy::start(i, listen, upstream, Some(network.namespace(i)), delays.clone())?);
            }
            link_delays = Some(delays);
        }
        Ok(ProcessCluster {
            dir: dir.to_path_buf(),
            exe: exe.to_path_buf(),
            peers,
            nodes,
            probe,
            network: namespaces,
            mounted: Vec::new(),
            proxies,
            link_delays,
        })
    }

    pub fn log_path(&self, i: usize) -> PathBuf {
        self.dir.join(format!("node-{}.log", self.nodes[i].id))
    }

    /// The coordinators' HTTP addresses, `host:port,...`, as participants take them.
    pub fn addresses(&self) -> String {
        self.nodes.iter().map(|n| n.http.clone()).collect::<Vec<_>>().join(",")
    }

    /// Starts node `i` from its data directory (a restart after a kill recovers from disk).
    pub fn start(&mut self, i: usize) -> ChaosResult<()> {
        self.start_skewed(i, 0)
    }

    /// [`start`](Self::start) with the node's clock `offset_ms` ahead (behind when negative),
    /// through `clock_offset_ms`, the setting only chaos runs use.
    pub fn start_skewed(&mut self, i: usize, offset_ms: i64) -> ChaosResult<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .map_err(ChaosError::io("open a node's log"))?;
        let node = &self.nodes[i];
        let mut command = match &self.network {
            Some(network) => {
                let mut command = Command::new("ip");
                command.args(["netns", "exec", network.namespace(i)]).arg(&self.exe);
                command
            }
            None => Command::new(&self.exe),
        };
        let child = command
            .arg("coordinator")
            .arg("--config")
            .arg(self.dir.join(format!("node-{}.toml", node.id)))
            .env("DEAI_NODE_RAFT_ADDR", &node.raft_listen)
            .env("DEAI_NODE_HTTP_ADDR", &node.http)
            .env("DEAI_NODE_PEERS", &self.peers)
            .env("DEAI_NODE_LOG_FORMAT", "json")
            .env("DEAI_NODE_CLOCK_OFFSET_MS", offset_ms.to_string())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(ChaosError::io("start deai coordinator"))?;
        self.nodes[i].child = Some(child);
        self.nodes[i].paused = false;
        Ok(())
    }

    /// SIGKILL to node `i`, and waits for it to be gone.
    pub fn kill(&mut self, i: usize) -> ChaosResult<()> {
        if let Some(mut child) = self.nodes[i].child.take() {
            child.kill().map_err(ChaosError::io("SIGKILL a node"))?;
            child.wait().map_err(ChaosError::io("wait for a killed node"))?;
        }
        self.nodes[i].paused = false;
        Ok(())
    }

    fn signal(&self, i: usize, signal: Signal) -> ChaosResult<()> {
        let Some(pid) = self.nodes[i].pid() else { return Ok(()) };
        kill(pid, signal).map_err(|e| ChaosError::Signal(format!("{signal} to node {}: {e}", self.nodes[i].id)))
    }

    /// SIGSTOP to node `i`: it holds its sockets and answers nothing until resumed.
    pub fn pause(&mut self, i: usize) -> ChaosResult<()> {
        self.signal(i, Signal::SIGSTOP)?;
        self.nodes[i].paused = true;
        Ok(())
    }

    /// SIGCONT to node `i`.
    pub fn resume(&mut self, i: usize) -> ChaosResult<()> {
        self.signal(i, Signal::SIGCONT)?;
        self.nodes[i].paused = false;
        Ok(())
    }

    pub fn probe(&self) -> &ClusterProbe {
        &self.probe
    }

    /// Node `i`'s data directory, as its configuration names it.
    pub fn data_dir(&self, i: usize) -> PathBuf {
        self.dir.join("data").join(format!("node-{}", self.nodes[i].id))
    }

    /// Puts every node's data directory on a tmpfs of [`DATA_FS_BYTES`] of its own, so that one
    /// node's disk can be filled without touching the others or the host. Call before starting.
    pub fn mount_data_dirs(&mut self) -> ChaosResult<()> {
        for i in 0..self.nodes.len() {
            let dir = self.data_dir(i);
            std::fs::create_dir_all(&dir).map_err(ChaosError::io("create a data directory"))?;
            let out = Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={DATA_FS_BYTES}"), "deai-chaos"])
                .arg(&dir)
                .output()
                .map_err(ChaosError::io("run mount"))?;
            if !out.status.success() {
                return Err(ChaosError::Disk(format!(
                    "mount a tmpfs on {}: {} (disk-full needs root)",
                    dir.display(),
                    String::from_utf8_lossy(&out.stderr).trim()
                )));
            }
            self.mounted.push(dir);
        }
        Ok(())
    }

    /// Fills node `i`'s file system to the last byte; returns how many bytes it took.
    pub fn fill_disk(&self, i: usize) -> ChaosResult<u64> {
        use std::io::Write as _;
        let path = self.data_dir(i).join(FILLER);
        let mut file = std::fs::File::create(&path).map_err(ChaosError::io("create the filler"))?;
        let chunk = vec![0u8; FILL_CHUNK_BYTES];
        let mut written = 0u64;
        let mut size = FILL_CHUNK_BYTES;
        // Whole chunks until the file system refuses, then smaller writes for the rest.
        while size > 0 {
            match file.write(&chunk[..size]) {
                Ok(0) => size /= 2,
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(nix::libc::ENOSPC) => size /= 2,
                Err(e) => return Err(ChaosError::io("fill a data directory")(e)),
            }
        }
        Ok(written)
    }

    /// Frees what [`fill_disk`](Self::fill_disk) took.
    pub fn free_disk(&self, i: usize) -> ChaosResult<()> {
        match std::fs::remove_file(self.data_dir(i).join(FILLER)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(ChaosError::io("remove the filler")(e)),
            _ => Ok(()),
        }
    }

    /// Whether node `i`'s process has exited (it is then restarted by [`start`](Self::start)).
    pub fn exited(&mut self, i: usize) -> bool {
        match self.nodes[i].child.as_mut().map(Child::try_wait) {
            Some(Ok(Some(status))) => {
                tracing::info!(node = self.nodes[i].id, %status, "a node exited");
                self.nodes[i].child = None;
                true
            }
            Some(Ok(None)) => false,
            _ => true,
        }
    }

    /// Starts again every node whose process exited (a node exits when a critical part of it
    /// dies, a full disk for one), as a supervisor with a restart policy would; returns the
    /// indices started.
    pub fn restart_exited(&mut self) -> ChaosResult<Vec<usize>> {
        let mut started = Vec::new();
        for i in 0..self.nodes.len() {
            if self.nodes[i].child.is_some() && self.exited(i) {
                tracing::info!(node = self.nodes[i].id, "restarting a node that exited");
                self.start(i)?;
                started.push(i);
            }
        }
        Ok(started)
    }

    /// The nodes' namespaces, if the run partitions them.
    /// The delays of the nodes' links, when the run slows them.
    pub fn link_delays(&self) -> Option<&LinkDelays> {
        self.link_delays.as_ref()
    }

    pub fn network_mut(&mut self) -> Option<&mut Network> {
        self.network.as_mut()
    }

    /// Waits until every running node is ready, within [`READY_TIMEOUT_MS`].
    pub fn wait_ready(&self) -> ChaosResult<()> {
        let deadline = Instant::now() + Duration::from_millis(READY_TIMEOUT_MS);
        for i in 0..self.nodes.len() {
            while self.nodes[i].is_running() && !self.probe.ready(i) {
                if Instant::now() > deadline {
                    return Err(ChaosError::NotReady(format!(
                        "node {} not ready within {READY_TIMEOUT_MS} ms (its log: {})",
                        self.nodes[i].id,
                        self.log_path(i).display()
                    )));
                }
                std::thread::sleep(Duration::from_millis(POLL_MS));
            }
        }
        Ok(())
    }

    /// Every log line of every node that reports a panic.
    pub fn panics_in_logs(&self) -> Vec<String> {
        (0..self.nodes.len())
            .flat_map(|i| {
                let log = std::fs::read_to_string(self.log_path(i)).unwrap_or_default();
                log.lines().filter(|l| l.contains("panicked")).map(str::to_string).collect::<Vec<_>>()
            })
            .collect()
    }

    /// Resumes paused nodes, sends SIGTERM to all, and SIGKILL to any still running after
    /// [`STOP_GRACE_MS`].
    pub fn stop_all(&mut self) {
        for i in 0..self.nodes.len() {
            if self.nodes[i].paused {
                let _ = self.resume(i);
            }
            let _ = self.signal(i, Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_millis(STOP_GRACE_MS);
        for node in &mut self.nodes {
            let Some(mut child) = node.child.take() else { continue };
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(POLL_MS)),
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
    }
}

impl Drop for ProcessCluster {
    fn drop(&mut self) {
        self.stop_all();
        // Before the namespaces they run in go.
        self.proxies.clear();
        for dir in std::mem::take(&mut self.mounted) {
            let _ = Command::new("umount").arg(&dir).output();
        }
    }
}
