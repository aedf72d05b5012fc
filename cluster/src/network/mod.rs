//! Networks that carry Raft traffic between coordinators.

pub mod in_process;
pub mod tcp;
