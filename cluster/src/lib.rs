//! # deai-cluster: the coordinator cluster around the ledger
//!
//! This crate only wires: an openraft node over `deai-storage`, with the limits of
//! [`ClusterConfig`], and the networks that carry Raft traffic between nodes.
//!
//! ## Layout
//! - [`node`]: [`CoordinatorNode`], one coordinator: start from a data directory, submit batches
//!   of signed entries, read the ledger, shut down.
//! - [`supervision`]: the node's critical tasks; one that dies fails readiness and stops it.
//! - [`error`]: [`ClusterError`] and its stable codes.
//! - [`raft_write`]: one proposal to openraft, with its errors mapped to ours.
//! - [`checkpointer`]: signs every checkpoint this node's ledger reaches (SPEC 6.3).
//! - [`network::tcp`]: Raft traffic and forwarded writes over TCP, with a network handshake.
//! - [`network::in_process`]: a router that delivers Raft RPCs between nodes in one process, with
//!   links that can be cut. It drives the multi-node tests, as a test network drives raft-rs's.
//!
//! The `deai coordinator` binary, metrics and the process-level tests come next (see
//! `ARCHITECTURE.md`).

// openraft's error types, returned through its trait signatures, are large; errors are the cold
// path.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod batcher;
pub mod checkpointer;
pub mod error;
pub mod identity;
pub mod metrics;
pub mod network;
pub mod node;
pub mod outbox;
pub mod raft_write;
pub mod supervision;

pub use error::{admin_refusal, ClusterError, ADMIN_REFUSAL_CODES, ERROR_CODES};
pub use metrics::NodeMetrics;
pub use node::{ClusterConfig, Consistency, CoordinatorNode};
pub use raft_write::Written;
