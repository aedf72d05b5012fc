//! A deai miner: [`agent`] (registration, the assignment session, serving outputs, claims) and
//! [`backends`] (what actually runs a service) and [`output_server`] (outputs, to their clients only).

pub mod agent;
pub mod backends;
pub mod cli;
pub mod output_server;

pub use agent::{run, MinerSettings};
