//! Each node in a network namespace of its own, joined to the host by a veth pair on one bridge,
//! so that a partition is a routing change inside the namespaces (iproute2 only: no netfilter,
//! no netem). A cut link sends its packets to a neighbour that does not exist (a permanent
//! entry with an unused MAC address): they vanish without an error, as on a cut cable, and
//! connections time out instead of failing fast. Clients stay on the host and reach every node.
//!
//! Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN) and `ip`. Everything made here is removed on
//! drop: the namespaces (with their veth ends) and the bridge.

use crate::{ChaosError, ChaosResult};
use std::collections::BTreeSet;
use std::process::Command;

/// The port every node listens on for Raft, inside its namespace.
pub const RAFT_PORT: u16 = 7000;
/// The port a node really listens on for Raft when a delay proxy holds [`RAFT_PORT`].
pub const PROXIED_RAFT_PORT: u16 = 7001;
/// The port every node serves HTTP on, inside its namespace.
pub const HTTP_PORT: u16 = 8000;
/// The last octet of the neighbour that swallows a cut link's packets.
const SINK_OCTET: u8 = 254;
/// Its MAC address: locally administered, used by no interface.
const SINK_MAC: &str = "02:00:00:de:a1:fe";

/// The namespaces, bridge and addresses of one run.
pub struct Network {
    bridge: String,
    /// The first three octets of the run's /24.
    prefix: String,
    namespaces: Vec<String>,
    cut: BTreeSet<(usize, usize)>,
}

fn ip(args: &[&str]) -> ChaosResult<()> {
    let out = Command::new("ip").args(args).output().map_err(ChaosError::io("run ip (iproute2)"))?;
    if !out.status.success() {
        return Err(ChaosError::Network(format!(
            "ip {}: {} (partitions need root and iproute2)",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

impl Network {
    /// Makes `nodes` namespaces on a bridge, named after `run` (a small number that no other
    /// run on this machine uses at the same time, such as the process id), on 10.200+.x.0/24.
    pub fn create(run: u32, nodes: usize) -> ChaosResult<Self> {
        let tag = run % 10_000;
        let prefix = format!("10.{}.{}", 200 + tag / 256 % 50, tag % 256);
        let mut network =
            Network { bridge: format!("dc{tag}br"), prefix, namespaces: Vec::new(), cut: BTreeSet::new() };
        ip(&["link", "add", "name", &network.bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{}.1/24", network.prefix), "dev", &network.bridge])?;
        ip(&["link", "set", &network.bridge, "up"])?;
        for i in 0..nodes {
            let ns = format!("deai-chaos-{tag}-{i}");
            ip(&["netns", "add", &ns])?;
            network.namespaces.push(ns.clone());
            let host_end = format!("dc{tag}h{i}");
            ip(&["link", "add", &host_end, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            ip(&["link", "set", &host_end, "master", &network.bridge, "up"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", network.address(i)), "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            let sink = format!("{}.{SINK_OCTET}", network.prefix);
            ip(&["-n", &ns, "neigh", "add", &sink, "lladdr", SINK_MAC, "dev", "eth0", "nud", "permanent"])?;
        }
        Ok(network)
    }

    /// Node `i`'s address.
    pub fn address(&self, i: usize) -> String {
        format!("{}.{}", self.prefix, 10 + i)
    }

    /// The namespace node `i` runs in.
    pub fn namespace(&self, i: usize) -> &str {
        &self.namespaces[i]
    }

    fn route(&self, from: usize, to: usize, add: bool) -> ChaosResult<()> {
        let target = format!("{}/32", self.address(to));
        let sink = format!("{}.{SINK_OCTET}", self.prefix);
        let ns = self.namespace(from);
        if add {
            ip(&["-n", ns, "route", "add", &target, "via", &sink, "dev", "eth0"])
        } else {
            ip(&["-n", ns, "route", "del", &target])
        }
    }

    /// Cuts every link between a node of `side` and a node of `other`, both ways.
    pub fn partition(&mut self, side: &[usize], other: &[usize]) -> ChaosResult<()> {
        for &a in side {
            for &b in other {
                for (from, to) in [(a, b), (b, a)] {
                    if a != b && self.cut.insert((from, to)) {
                        self.route(from, to, true)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Restores every cut link.
    pub fn heal(&mut self) -> ChaosResult<()> {
        for (from, to) in std::mem::take(&mut self.cut) {
            self.route(from, to, false)?;
        }
        Ok(())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        for ns in &self.namespaces {
            let _ = ip(&["netns", "del", ns]);
        }
        let _ = ip(&["link", "del", &self.bridge]);
    }
}
