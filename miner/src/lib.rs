//! A deai miner: [`agent`] (the assignment session, serving outputs, claims),
//! [`registration`] (collateral, offer, unregistration), [`backends`] (what actually runs a
//! service) and [`output_server`] (outputs, to their clients only).

pub mod agent;
pub mod backends;
pub mod cli;
pub mod output_server;
pub mod registration;

pub use agent::{run, MinerSettings};
