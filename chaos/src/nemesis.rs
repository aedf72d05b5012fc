//! Faults, scheduled from the run's seed so that a run can be replayed: which fault, on which
//! node (the leader of the moment, or a node drawn from the seed), when, and for how long.
//!
//! - `kill`: SIGKILL, and a restart from the node's data directory when the fault ends.
//! - `pause`: SIGSTOP, and SIGCONT when it ends: the node holds its sockets and answers nothing,
//!   like a process stuck in a long GC pause or a VM frozen by its host.
//! - `partition`: links between nodes cut (each node in its own network namespace, see
//!   [`crate::netns`]), in one of three shapes drawn from the seed: the leader alone against
//!   the rest, a minority against a majority, or a bridge (two sides that cannot reach each
//!   other and one node that reaches both). Healing restores every link.
//! - `clock`: the node restarted with its clock skewed by up to [`MAX_CLOCK_SKEW_MS`] either
//!   way (drawn from the seed), through `clock_offset_ms`, the setting only chaos runs use; when
//!   the fault ends it restarts with the system clock. A skewed leader stamps entries with its
//!   time, which the ledger bounds (SPEC 6.1).
//! - `slow-net`: every link of the node (inbound and outbound) held back by
//!   [`MIN_SLOW_MS`]..[`MAX_SLOW_MS`] milliseconds each way (drawn from the seed) by the delay
//!   proxies in front of the Raft ports ([`crate::delay_proxy`]); healing sets it back to none.
//! - `disk-full`: the node's data directory (a tmpfs of its own) filled to the last byte; when
//!   the fault ends the filler is removed, and a node that exited meanwhile is started again,
//!   as a supervisor (Kubernetes) would.

use crate::cluster::ProcessCluster;
use crate::{ChaosError, ChaosResult};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};
use serde::{Deserialize, Serialize};

/// No fault starts in the first this many milliseconds of a run: the workload warms up.
pub const WARMUP_MS: u64 = 3_000;
/// No fault is under way in the last this many milliseconds: the cluster settles before the
/// final reads.
pub const COOLDOWN_MS: u64 = 3_000;
/// Shortest and longest a fault lasts, in milliseconds.
pub const MIN_FAULT_MS: u64 = 1_000;
pub const MAX_FAULT_MS: u64 = 5_000;
/// Shortest and longest quiet time between two faults, in milliseconds.
pub const MIN_QUIET_MS: u64 = 2_000;
pub const MAX_QUIET_MS: u64 = 6_000;
/// Largest clock skew the `clock` nemesis gives a node, either way, in milliseconds.
pub const MAX_CLOCK_SKEW_MS: i64 = 10 * 60 * 1000;
/// Shortest and longest delay the `slow-net` nemesis adds to each of a node's links, each way,
/// in milliseconds: from a slow WAN to longer than an election timeout.
pub const MIN_SLOW_MS: u64 = 50;
pub const MAX_SLOW_MS: u64 = 1_500;
/// Share of faults aimed at the leader of the moment, in percent; the others hit a node drawn
/// from the seed.
pub const LEADER_TARGET_PERCENT: u32 = 50;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NemesisKind {
    Kill,
    Pause,
    Partition,
    DiskFull,
    Clock,
    SlowNet,
}

/// Nemeses of the issue that this build does not inject yet; asking for one is an error that
/// says so, not a run that silently skips it.
pub const NOT_YET: &[&str] = &["membership"];

impl NemesisKind {
    pub const ALL: [NemesisKind; 6] = [
        NemesisKind::Kill,
        NemesisKind::Pause,
        NemesisKind::Partition,
        NemesisKind::DiskFull,
        NemesisKind::Clock,
        NemesisKind::SlowNet,
    ];

    pub fn name(self) -> &'static str {
        match self {
            NemesisKind::Kill => "kill",
            NemesisKind::Pause => "pause",
            NemesisKind::Partition => "partition",
            NemesisKind::DiskFull => "disk-full",
            NemesisKind::Clock => "clock",
            NemesisKind::SlowNet => "slow-net",
        }
    }

    /// A comma-separated list: `kill,pause`. Empty means none (a run without faults).
    pub fn parse_list(list: &str) -> ChaosResult<Vec<NemesisKind>> {
        let mut kinds = Vec::new();
        for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            let kind = NemesisKind::ALL.into_iter().find(|k| k.name() == name);
            match kind {
                Some(kind) if !kinds.contains(&kind) => kinds.push(kind),
                Some(_) => {}
                None if NOT_YET.contains(&name) => {
                    return Err(ChaosError::BadArgument(format!(
                        "the {name} nemesis is not built yet; this build injects: {}",
                        NemesisKind::ALL.map(NemesisKind::name).join(", ")
                    )))
                }
                None => {
                    return Err(ChaosError::BadArgument(format!(
                        "no nemesis {name:?}; known: {}",
                        NemesisKind::ALL.map(NemesisKind::name).join(", ")
                    )))
                }
            }
        }
        Ok(kinds)
    }
}

/// Where a planned fault lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// Whichever node leads when the fault starts.
    Leader,
    /// Node index drawn from the seed.
    Node(usize),
}

/// One fault of the schedule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedFault {
    pub kind: NemesisKind,
    pub target: Target,
    pub start_ms: u64,
    pub hold_ms: u64,
    /// A number drawn from the seed for the fault's own choices (a partition's shape and sides).
    pub draw: u64,
}

/// The faults of a run of `duration_ms` over `nodes` nodes, drawn from `seed`: the same seed,
/// kinds, node count and duration give the same schedule.
pub fn schedule(seed: u64, kinds: &[NemesisKind], nodes: usize, duration_ms: u64) -> Vec<PlannedFault> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut planned = Vec::new();
    if kinds.is_empty() || nodes == 0 {
        return planned;
    }
    let mut at = WARMUP_MS;
    loop {
        let hold_ms = rng.random_range(MIN_FAULT_MS..=MAX_FAULT_MS);
        if at + hold_ms + COOLDOWN_MS > duration_ms {
            break;
        }
        let kind = kinds[rng.random_range(0..kinds.len())];
        let target = if rng.random_range(0..100) < LEADER_TARGET_PERCENT {
            Target::Leader
        } else {
            Target::Node(rng.random_range(0..nodes))
        };
        let draw = rng.random_range(0..u64::MAX);
        planned.push(PlannedFault { kind, target, start_ms: at, hold_ms, draw });
        at += hold_ms + rng.random_range(MIN_QUIET_MS..=MAX_QUIET_MS);
    }
    planned
}

/// A fault as it was injected.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Fault {
    pub kind: NemesisKind,
    /// The node's Raft id (for a partition, the first node of the side it cut off).
    pub node: u64,
    /// Whether it was aimed at the leader.
    pub at_leader: bool,
    pub start_ms: u64,
    pub end_ms: u64,
    /// What exactly was done (a partition's sides).
    pub detail: String,
}

/// A partition's two sides (node indices); the nodes in neither reach both.
pub fn partition_sides(nodes: usize, leader: Option<usize>, draw: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..nodes).collect();
    // A rotation drawn from the seed, so that sides differ from fault to fault.
    order.rotate_left((draw % nodes.max(1) as u64) as usize);
    match (draw / 7) % 3 {
        0 => {
            let alone = leader.unwrap_or(order[0]);
            (vec![alone], (0..nodes).filter(|&i| i != alone).collect())
        }
        1 => {
            let minority = (nodes - 1) / 2;
            (order[..minority].to_vec(), order[minority..].to_vec())
        }
        _ => {
            // A bridge: the leader (or the first drawn) reaches both sides.
            let bridge = leader.unwrap_or(order[0]);
            let rest: Vec<usize> = order.into_iter().filter(|&i| i != bridge).collect();
            let half = rest.len() / 2;
            (rest[..half].to_vec(), rest[half..].to_vec())
        }
    }
}

/// Starts `fault`; returns the node it hit first and what was done.
pub fn inject(
    cluster: &mut ProcessCluster,
    fault: &PlannedFault,
    i: usize,
    leader: Option<usize>,
) -> ChaosResult<(usize, String)> {
    match fault.kind {
        NemesisKind::Kill => cluster.kill(i).map(|_| (i, format!("SIGKILL node {}", cluster.nodes[i].id))),
        NemesisKind::Pause => cluster.pause(i).map(|_| (i, format!("SIGSTOP node {}", cluster.nodes[i].id))),
        NemesisKind::Clock => {
            let span = u64::try_from(2 * MAX_CLOCK_SKEW_MS).unwrap_or(0) + 1;
            let offset_ms = i64::try_from(fault.draw % span).unwrap_or(0) - MAX_CLOCK_SKEW_MS;
            cluster.kill(i)?;
            cluster.start_skewed(i, offset_ms)?;
            Ok((i, format!("node {} restarted with its clock {offset_ms:+} ms off", cluster.nodes[i].id)))
        }
        NemesisKind::SlowNet => {
            let ms = MIN_SLOW_MS + fault.draw % (MAX_SLOW_MS - MIN_SLOW_MS + 1);
            let delays =
                cluster.link_delays().ok_or_else(|| ChaosError::Network("slow links need the delay proxies".into()))?;
            delays.set(i, ms);
            Ok((i, format!("node {}'s links held back {ms} ms each way", cluster.nodes[i].id)))
        }
        NemesisKind::DiskFull => {
            let bytes = cluster.fill_disk(i)?;
            Ok((i, format!("node {}'s disk filled ({bytes} bytes)", cluster.nodes[i].id)))
        }
        NemesisKind::Partition => {
            let (side, other) = partition_sides(cluster.nodes.len(), leader, fault.draw);
            let ids =
                |side: &[usize]| side.iter().map(|&i| cluster.nodes[i].id.to_string()).collect::<Vec<_>>().join(",");
            let detail = format!("{{{}}} cut from {{{}}}", ids(&side), ids(&other));
            let network = cluster
                .network_mut()
                .ok_or_else(|| ChaosError::Network("a partition needs the nodes in namespaces".into()))?;
            network.partition(&side, &other)?;
            Ok((side.first().copied().unwrap_or(i), detail))
        }
    }
}

/// Ends a fault of `kind` on node `i`: a killed node restarts from disk, a paused one resumes,
/// a partition's links are restored.
pub fn heal(cluster: &mut ProcessCluster, kind: NemesisKind, i: usize) -> ChaosResult<()> {
    match kind {
        NemesisKind::Kill => cluster.start(i),
        NemesisKind::Pause => cluster.resume(i),
        NemesisKind::Partition => match cluster.network_mut() {
            Some(network) => network.heal(),
            None => Ok(()),
        },
        NemesisKind::Clock => {
            cluster.kill(i)?;
            cluster.start(i)
        }
        NemesisKind::SlowNet => {
            if let Some(delays) = cluster.link_delays() {
                delays.set(i, 0);
            }
            Ok(())
        }
        NemesisKind::DiskFull => {
            cluster.free_disk(i)?;
            cluster.restart_exited().map(|_| ())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_is_the_same_for_the_same_seed_and_differs_for_another() {
        let kinds = NemesisKind::ALL;
        let one = schedule(7, &kinds, 3, 300_000);
        assert_eq!(one, schedule(7, &kinds, 3, 300_000));
        assert_ne!(one, schedule(8, &kinds, 3, 300_000));
        assert!(one.len() > 20, "a five-minute run has many faults: {}", one.len());
    }

    #[test]
    fn faults_stay_inside_the_run_and_never_overlap() {
        let planned = schedule(3, &[NemesisKind::Pause], 5, 60_000);
        assert!(!planned.is_empty());
        for pair in planned.windows(2) {
            assert!(pair[0].start_ms + pair[0].hold_ms + MIN_QUIET_MS <= pair[1].start_ms, "{pair:?}");
        }
        for fault in &planned {
            assert!(fault.start_ms >= WARMUP_MS);
            assert!(fault.start_ms + fault.hold_ms + COOLDOWN_MS <= 60_000);
            assert!(matches!(fault.target, Target::Leader | Target::Node(0..5)));
        }
    }

    #[test]
    fn a_nemesis_not_built_yet_is_refused_by_name() {
        let err = NemesisKind::parse_list("kill,membership").unwrap_err().to_string();
        assert!(err.contains("membership") && err.contains("not built yet"), "{err}");
        assert!(NemesisKind::parse_list("kil").unwrap_err().to_string().contains("no nemesis"));
        assert_eq!(NemesisKind::parse_list("pause,kill,pause").unwrap(), vec![NemesisKind::Pause, NemesisKind::Kill]);
    }

    #[test]
    fn partition_sides_are_disjoint_and_take_every_shape() {
        let mut shapes = std::collections::BTreeSet::new();
        for nodes in [3, 5] {
            for draw in 0..200u64 {
                let (side, other) = partition_sides(nodes, Some(1), draw);
                assert!(!side.is_empty() && !other.is_empty(), "{nodes} {draw}: {side:?} {other:?}");
                assert!(side.iter().all(|i| !other.contains(i) && *i < nodes));
                let bridged = nodes - side.len() - other.len();
                assert!(bridged <= 1);
                if side == [1] && bridged == 0 {
                    shapes.insert("leader alone");
                } else if bridged == 1 {
                    shapes.insert("bridge");
                } else {
                    assert!(side.len() < other.len());
                    shapes.insert("minority");
                }
            }
        }
        assert_eq!(shapes.len(), 3, "{shapes:?}");
    }
}
