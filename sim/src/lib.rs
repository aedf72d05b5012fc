//! `deai sim`: the coordinator cluster in one process on virtual time. The nodes are the real
//! `CoordinatorNode`s (openraft, the redb storage, the ledger, the write batcher); only what is
//! outside a node is simulated ([`network`]: delays, losses, reordering, partitions; [`disk`]:
//! a disk that loses and tears what was not synced when the power goes), and every
//! choice (faults, the clients' operations, the network's weather, openraft's election jitter,
//! tokio's own scheduling choices) is drawn from one seed ([`world`]), so that a seed replays.
//! The invariants ([`checker`]) are checked after every step.
//!
//! Where `deai chaos` proves the shipped binary on a real network, slowly, this proves the same
//! engine across thousands of fault schedules a minute.

pub mod checker;
pub mod cli;
pub mod disk;
pub mod network;
pub mod world;

use deai_cluster::FaultInjection;

/// The shape of one simulated run.
#[derive(Clone, Debug)]
pub struct SimSettings {
    /// Coordinators: 3 or 5.
    pub nodes: u64,
    /// Steps of the fault schedule; the invariants are checked after each.
    pub steps: u32,
    /// Virtual time one step takes, in milliseconds.
    pub step_ms: u64,
    /// Concurrent clients.
    pub clients: usize,
    /// Faults every node injects into itself (a test build's canary).
    pub faults: FaultInjection,
}

impl Default for SimSettings {
    fn default() -> Self {
        SimSettings { nodes: 3, steps: 300, step_ms: 10, clients: 3, faults: FaultInjection::default() }
    }
}

/// Everything a simulation can fail with before it reaches a verdict.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    #[error("bad argument: {0}")]
    BadArgument(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the simulated cluster could not be set up: {0}")]
    Setup(String),
}

impl SimError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> SimError {
        let what = what.into();
        move |source| SimError::Io { what, source }
    }
}

pub type SimResult<T> = Result<T, SimError>;
