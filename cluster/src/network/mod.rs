//! Networks that carry Raft traffic between coordinators.

pub mod in_process;
pub mod peer_auth;
pub mod tcp;
