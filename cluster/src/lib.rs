//! # deai-cluster: the coordinator cluster around the ledger
//!
//! This crate only wires: an openraft node over `deai-storage`, with the limits of
//! [`ClusterConfig`], and the networks that carry Raft traffic between nodes.
//!
//! ## Layout
//!
//! The modules form layers, bottom first; a module imports only modules below it
//! (`tests/module_layers.rs` checks it).
//!
//! 1. [`error`]: [`ClusterError`] and its stable codes.
//! 2. [`metrics`] (the node's series), [`supervision`] (the node's critical tasks; one that dies
//!    fails readiness and stops it), [`identity`] (a coordinator's key file), [`control`] (what
//!    one coordinator asks another outside Raft: leader-transfer steps and operators' signed
//!    admin requests), [`raft_write`] (one proposal, with openraft's errors mapped to ours).
//! 3. [`network::peer_auth`]: mutual TLS with the coordinators' own keys.
//! 4. [`network::tcp`]: Raft traffic, forwarded writes and admin requests over TCP; it serves
//!    any [`PeerService`](network::tcp::PeerService) and knows no node.
//!    [`network::in_process`]: a router that delivers Raft RPCs between nodes in one process,
//!    with links that can be cut. It drives the multi-node tests, as a test network drives
//!    raft-rs's.
//! 5. [`batcher`]: the leader's group commit, stamping each batch with the node's clock.
//! 6. [`node`]: [`CoordinatorNode`], one coordinator: start from a data directory, submit
//!    batches of signed entries, read the ledger, shut down.
//! 7. [`admin`] (status, membership, snapshots, leader transfer; the node's admin methods) and
//!    [`outbox`] (the one way a coordinator's duties sign their own entries).
//! 8. [`checkpointer`] (signs every checkpoint this node's ledger reaches, SPEC 6.3) and
//!    [`peer_service`] (what a node answers its peers: the `PeerService` of the TCP listener).

// openraft's error types, returned through its trait signatures, are large; errors are the cold
// path.
#![allow(clippy::result_large_err)]

pub mod admin;
pub mod batcher;
pub mod checkpointer;
pub mod control;
pub mod error;
pub mod faults;
pub mod identity;
pub mod metrics;
pub mod network;
pub mod node;
pub mod outbox;
pub mod peer_service;
pub mod raft_write;
pub mod supervision;

pub use error::{admin_refusal, ClusterError, ADMIN_REFUSAL_CODES, ERROR_CODES};
pub use faults::FaultInjection;
pub use metrics::NodeMetrics;
pub use node::{ClusterConfig, Consistency, CoordinatorNode};
pub use raft_write::Written;
