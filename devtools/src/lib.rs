//! Tools around a deai network: [`genesis`] (keys, genesis and node files for a new cluster),
//! [`dev`] (`deai dev`, a whole network on loopback) and the benchmarks ([`bench_ledger`],
//! [`bench_cycles`]).

pub mod bench_cycles;
pub mod bench_ledger;
pub mod cli;
pub mod dev;
pub mod genesis;
