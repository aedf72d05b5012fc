//! A participant's side of deai: [`sdk`], the `/v1` client that follows the cluster (leader
//! hints, failover across addresses, bounded retries), [`cli`], `deai client`, and [`gov`],
//! `deai gov`.

pub mod cli;
pub mod gov;
pub mod output;
pub mod sdk;
pub mod units;

pub use sdk::{Coordinators, Participant};
