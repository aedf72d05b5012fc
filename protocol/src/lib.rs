//! # deai-protocol: the pure core of the deai coordinator cluster
//!
//! Everything the coordinators replicate is decided here, with no IO: no sockets, no clocks, no
//! randomness, no floats in replicated state. Ledger time arrives stamped on each entry;
//! randomness arrives as a VRF proof carried in the entry; the shell around this crate (openraft,
//! actix, HTTP) only moves bytes and timers.
//!
//! ## Layout
//! - [`rules`]: SPEC section 8's public functions (WRR, reputation, AVRF selection, rewards).
//! - [`types`]: ids and units (SPEC 3). [`hash`]: domain-separated BLAKE3 and Merkle roots.
//! - [`codec`]: the only place that knows the byte format (bincode 2.x + version byte + limits).
//! - [`envelope`]: the signed envelope (SPEC 3). [`message`]: one body type per message kind.
//! - [`params`]: parameters with SPEC 4 defaults, governance changes and the genesis.
//! - [`vrf`]: schnorrkel sr25519 VRF for allocation (SPEC 5.3).
//! - [`ledger`]: the [`Ledger`] state machine, one file per rule family (SPEC 5 and 6).
//! - [`listing`]: the provider listing score (SPEC 5.9, paper Table 2).
//! - [`testkit`] (feature `testkit`): deterministic keys and a network builder for tests/benches.
//!
//! ## The main loop, as a shell drives it
//! 1. A client or miner signs a [`message::Message`] into a [`SignedEnvelope`] with its next nonce.
//! 2. The leader stamps it with its clock into a [`ledger::Entry`] and replicates it.
//! 3. Every replica calls [`Ledger::apply`] (or [`Ledger::apply_batch`]) in log order and gets the
//!    same [`ledger::Effects`] or the same [`Rejection`], and the same running root.
//! 4. The leader's timers submit coordinator entries: `Allocate` (from
//!    [`Ledger::plan_allocation`]), `Tick`, `CloseEpoch` (from [`Ledger::expected_payouts`]) and
//!    checkpoint signatures.

// `Rejection` carries the evidence of a lying leader (four 32-byte ids), so `Result`s that can
// hold it are large. Rejections are the cold path and a move of ~140 bytes is small next to the
// hashing every accepted entry does, so we keep the evidence inline rather than boxed.
#![allow(clippy::result_large_err)]

pub mod codec;
pub mod envelope;
pub mod error;
pub mod hash;
pub mod ledger;
pub mod listing;
pub mod message;
pub mod params;
pub mod rules;
pub mod types;
pub mod vrf;

#[cfg(any(test, feature = "testkit"))]
pub mod testkit;

pub use envelope::SignedEnvelope;
pub use error::{CodecError, Rejection};
pub use ledger::{Effects, Entry, Event, Ledger};
pub use message::Message;
pub use params::{Genesis, Params};
