//! How a command's answer reaches its user: a sentence or table for people, or JSON for scripts
//! (`--json`), errors included. An error in JSON is the API's own error object, so a script
//! handles a refusal the same way whether a coordinator or this machine found it.

use crate::sdk::ClientError;
use deai_api::codes::Code;
use deai_api::views::ErrorBody;
use serde::Serialize;

/// What one command prints: `text` for people, `json` with `--json`.
pub struct Printed {
    pub text: String,
    pub json: serde_json::Value,
}

impl Printed {
    /// `text` for people and `value`, serialized, for `--json`.
    pub fn new(text: impl Into<String>, value: &impl Serialize) -> Printed {
        let json =
            serde_json::to_value(value).unwrap_or_else(|e| serde_json::json!({ "unserializable": e.to_string() }));
        Printed { text: text.into(), json }
    }
}

/// An argument the command cannot use, and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct BadArgument(pub String);

/// A request this machine refused before sending it, with the code the ledger would have
/// answered (an unknown service, a prompt over the size limit), so that scripts see one code
/// for one mistake wherever it was caught.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    pub code: Code,
    pub message: String,
}

/// The API's error object for `error`: the code of the first error in its chain that has one.
pub fn error_body(error: &anyhow::Error) -> ErrorBody {
    let code = error
        .chain()
        .find_map(|cause| {
            if let Some(client) = cause.downcast_ref::<ClientError>() {
                Some(client.code())
            } else if let Some(refused) = cause.downcast_ref::<Refused>() {
                Some(refused.code)
            } else if cause.is::<BadArgument>() || cause.is::<crate::units::AmountError>() {
                Some(Code::BadArgument)
            } else {
                None
            }
        })
        .unwrap_or(Code::LocalFailure);
    ErrorBody { code, message: format!("{error:#}"), leader: None, until_ms: None }
}

/// Prints `result` as the user asked; an error is printed as JSON on stdout with `--json` and
/// returned either way, with its next step, so that the process ends non-zero.
pub fn emit(json: bool, result: anyhow::Result<Printed>) -> anyhow::Result<()> {
    match result {
        Ok(printed) if json => {
            println!("{}", printed.json);
            Ok(())
        }
        Ok(printed) => {
            if !printed.text.is_empty() {
                println!("{}", printed.text.trim_end());
            }
            Ok(())
        }
        Err(error) => {
            let body = error_body(&error);
            if json {
                println!("{}", serde_json::to_string(&body).unwrap_or_default());
            }
            Err(Reported { next: body.code.next_step(), code: body.code, message: body.message }.into())
        }
    }
}

/// An error as `emit` reports it: what went wrong, its code, and what to do next.
#[derive(Debug, thiserror::Error)]
#[error("{message}\n  [{code}] next: {next}")]
pub struct Reported {
    pub code: Code,
    pub message: String,
    pub next: &'static str,
}
