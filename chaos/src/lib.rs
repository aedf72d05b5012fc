//! `deai chaos`: a cluster of real `deai coordinator` processes ([`cluster`]) under faults
//! scheduled from a seed ([`nemesis`]), a concurrent workload whose every operation is
//! recorded with its invocation, completion and outcome ([`workload`], [`history`]), a checker
//! of the invariants over that history and the final states ([`checker`]), and a report
//! ([`report`]): `index.html`, `results.json` and the raw history.
//!
//! It drives the binary, never a library copy of the engine: the cluster it breaks is the one
//! operators run.

pub mod checker;
pub mod cli;
pub mod cluster;
pub mod delay_proxy;
pub mod history;
pub mod nemesis;
pub mod netns;
pub mod report;
pub mod workload;

/// Everything a chaos run can fail with before it reaches a verdict.
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    #[error("bad argument: {0}")]
    BadArgument(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the cluster did not come up: {0}")]
    NotReady(String),
    #[error("a signal could not be sent: {0}")]
    Signal(String),
    #[error("the network could not be set up or changed: {0}")]
    Network(String),
    #[error("a disk could not be set up or filled: {0}")]
    Disk(String),
    #[error("the workload could not start: {0}")]
    Workload(String),
}

impl ChaosError {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> ChaosError {
        let what = what.into();
        move |source| ChaosError::Io { what, source }
    }
}

pub type ChaosResult<T> = Result<T, ChaosError>;
