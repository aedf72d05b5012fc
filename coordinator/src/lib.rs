//! A deai coordinator node: its configuration ([`config`]), its start and ordered stop
//! ([`run`]), the `/v1` HTTP API it serves ([`http`], with [`http_body`], [`edge_verifier`] and
//! [`invalid_input`] guarding the edge), signed admin requests ([`admin_auth`]) and `deai admin`,
//! their client ([`admin_cli`]).

pub mod admin_auth;
pub mod admin_cli;
pub mod cli;
pub mod config;
pub mod edge_verifier;
pub mod http;
pub mod http_body;
pub mod invalid_input;
pub mod run;
