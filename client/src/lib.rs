//! A participant's side of deai: [`sdk`], the `/v1` client that follows the cluster (leader
//! hints, failover across addresses, bounded retries), and [`cli`], `deai client`.

pub mod cli;
pub mod output;
pub mod sdk;
pub mod units;

pub use sdk::{Coordinators, Participant};
