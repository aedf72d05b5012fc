//! The `/v1` API of deai coordinators, shared by the coordinator that serves it and every
//! participant that calls it: the request and response bodies ([`views`]), the one list of error
//! codes ([`codes`]), hex ([`hex`]), the bytes signed for requests that are not ledger entries
//! ([`signed_requests`]) and key files ([`key_file`]). It depends on the protocol crate and serde
//! only, so a client links nothing of the coordinator's engine.

pub mod codes;
pub mod hex;
pub mod key_file;
pub mod signed_requests;
pub mod views;

pub use codes::Code;
pub use views::ErrorBody;
