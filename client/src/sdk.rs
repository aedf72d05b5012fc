//! A blocking client of the coordinators' `/v1` API, shared by `deai client` and `deai miner`.
//!
//! It knows several coordinators and fails over: a request goes to the last one that answered,
//! and on a connection failure or a 421/503 answer it tries the next. Participants sign their
//! envelopes here; the nonce comes from a linearizable read of their account.

use deai_api::codes::Code;
use deai_api::hex::hex;
use deai_api::signed_requests::{session_request_bytes, SESSION_SIGNATURE_HEADER, SESSION_TIME_HEADER};
use deai_api::views::{AccountView, ErrorBody, Head, SessionLine, WriteResult};
use deai_clock::Clock;
use deai_protocol::message::Message;
use deai_protocol::types::{NetworkId, ParticipantId};
use deai_protocol::SignedEnvelope;
use ed25519_dalek::{Signer, SigningKey};
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// Longest each phase of one API request may take, in milliseconds: connecting, sending the
/// request, waiting for the answer's head, and reading its body are each bounded by it.
///
/// Per phase and not for the whole request, because ureq honours a whole-request timeout
/// during the address lookup by running the lookup on a thread of its own, one new thread per
/// request, even for an IP address. The lookup is bounded by the system resolver's own
/// timeouts instead (`resolv.conf`).
pub const API_REQUEST_TIMEOUT_MS: u64 = 10_000;
/// Rounds over the whole address list one request may take before it fails.
pub const MAX_RETRY_ROUNDS: u32 = 6;
/// Pause before the second round, in milliseconds; it doubles each round.
pub const RETRY_BACKOFF_MS: u64 = 100;
/// Longest one request keeps retrying (elections take a second or two), in milliseconds.
pub const RETRY_BUDGET_MS: u64 = 15_000;

/// An agent whose every request phase but the address lookup is bounded by `phase_ms` (see
/// [`API_REQUEST_TIMEOUT_MS`]); answers of any status are returned, not turned into errors.
fn agent_with_phase_timeouts(phase_ms: u64) -> ureq::Agent {
    let phase = Some(Duration::from_millis(phase_ms));
    ureq::Agent::config_builder()
        .timeout_connect(phase)
        .timeout_send_request(phase)
        .timeout_send_body(phase)
        .timeout_recv_response(phase)
        .timeout_recv_body(phase)
        .http_status_as_error(false)
        .build()
        .into()
}

/// The coordinators one participant talks to.
pub struct Coordinators {
    bases: Vec<String>,
    current: AtomicUsize,
    agent: ureq::Agent,
}

/// An answer the API gave with a non-success status.
#[derive(Debug, thiserror::Error)]
#[error("[{code}] {message} (HTTP {status})")]
pub struct ApiFailure {
    pub status: u16,
    pub code: String,
    pub message: String,
}

/// Everything the SDK can fail with. Each error has a code from the API's one list, so a caller
/// (and `--json` output) handles a refusal the same way wherever it was found.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Api(#[from] ApiFailure),
    #[error(transparent)]
    Rejected(#[from] Rejected),
    #[error(transparent)]
    Unreachable(#[from] Unreachable),
    #[error("no coordinator address given: pass --coordinator host:port[,host:port...] or set DEAI_COORDINATORS")]
    NoAddress,
    /// An answer that is not the shape `/v1` documents (a coordinator of another version, or not
    /// a coordinator at all).
    #[error("unexpected answer to {what}: {reason}")]
    UnexpectedAnswer { what: String, reason: String },
}

impl ClientError {
    /// The error's code in the API's list.
    pub fn code(&self) -> Code {
        match self {
            ClientError::Api(failure) => Code::of(&failure.code),
            ClientError::Rejected(rejected) => Code::of(&rejected.code),
            ClientError::Unreachable(_) => Code::NoCoordinator,
            ClientError::NoAddress => Code::BadArgument,
            ClientError::UnexpectedAnswer { .. } => Code::Unknown,
        }
    }
}

/// The last failure of a round over the addresses: a refusal (its code says more) or a
/// transport failure.
enum Last {
    Refused(ApiFailure),
    Transport(String),
}

/// What SDK calls return.
pub type ClientResult<T> = Result<T, ClientError>;

fn unexpected(what: impl Into<String>, reason: impl std::fmt::Display) -> ClientError {
    ClientError::UnexpectedAnswer { what: what.into(), reason: reason.to_string() }
}

/// An entry the ledger refused; `code` is the rejection's (docs/error-codes.md).
#[derive(Debug, thiserror::Error)]
#[error("{kind} rejected: {code}")]
pub struct Rejected {
    pub kind: &'static str,
    pub code: String,
}

/// No coordinator of the list answered within the retry budget.
#[derive(Debug, thiserror::Error)]
#[error("no coordinator answered (tried {tried}); last failure: {last}")]
pub struct Unreachable {
    pub tried: String,
    pub last: String,
}

impl Coordinators {
    /// `list` is `host:port[,host:port...]` of coordinators' HTTP endpoints.
    pub fn new(list: &str) -> ClientResult<Self> {
        let bases: Vec<String> = list
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| if s.starts_with("http") { s.to_string() } else { format!("http://{s}") })
            .collect();
        if bases.is_empty() {
            return Err(ClientError::NoAddress);
        }
        Ok(Coordinators {
            bases,
            current: AtomicUsize::new(0),
            agent: agent_with_phase_timeouts(API_REQUEST_TIMEOUT_MS),
        })
    }

    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// Sends the request built by `send` to each coordinator in turn until one answers with
    /// something other than "ask another node", in at most [`MAX_RETRY_ROUNDS`] rounds over the
    /// list within [`RETRY_BUDGET_MS`], pausing [`RETRY_BACKOFF_MS`] (doubling) between rounds.
    ///
    /// Tried again: a connection that fails or times out, and the answers that mean another node
    /// or a moment later can do it (421, 503, 408). Retrying a write is safe: an envelope carries
    /// its nonce, so a second copy of one that was written is refused as a `replay` and changes
    /// nothing (see [`Participant::submit_envelopes`]). Every other answer is final.
    fn call(
        &self,
        send: impl Fn(&str) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> ClientResult<Value> {
        self.call_tracked(send).map(|(value, _)| value)
    }

    /// [`call`](Self::call), also saying whether an earlier attempt may have reached a node
    /// (it failed after the request was sent, so its effect is unknown).
    fn call_tracked(
        &self,
        send: impl Fn(&str) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> ClientResult<(Value, bool)> {
        let started = std::time::Instant::now();
        let mut ambiguous = false;
        let mut last = None;
        let mut backoff_ms = RETRY_BACKOFF_MS;
        for round in 0..MAX_RETRY_ROUNDS {
            if round > 0 {
                if started.elapsed() + Duration::from_millis(backoff_ms) > Duration::from_millis(RETRY_BUDGET_MS) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(backoff_ms));
                backoff_ms = backoff_ms.saturating_mul(2);
            }
            let start = self.current.load(Ordering::Relaxed);
            for k in 0..self.bases.len() {
                let i = (start + k) % self.bases.len();
                let mut response = match send(&self.bases[i]) {
                    Ok(r) => r,
                    Err(e) => {
                        // A refused connection never reached the node; anything later may have.
                        let refused = matches!(&e, ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused)
                            || matches!(&e, ureq::Error::ConnectionFailed | ureq::Error::HostNotFound);
                        ambiguous |= !refused;
                        last = Some(Last::Transport(format!("{}: {e}", self.bases[i])));
                        continue;
                    }
                };
                let status = response.status().as_u16();
                let body: Value = response.body_mut().read_json().unwrap_or(Value::Null);
                if (200..300).contains(&status) {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok((body, ambiguous));
                }
                let error: Option<ErrorBody> = serde_json::from_value(body).ok();
                let failure = ApiFailure {
                    status,
                    code: error.as_ref().map_or_else(|| "unknown".to_string(), |e| e.code.as_str().to_string()),
                    message: error.map(|e| e.message).unwrap_or_default(),
                };
                if matches!(status, 408 | 421 | 503) {
                    ambiguous |= status != 421;
                    last = Some(Last::Refused(failure));
                    continue;
                }
                return Err(failure.into());
            }
        }
        Err(self.unreachable(last))
    }

    /// The error after every address failed: the last API refusal if there was one (its code
    /// says more), else [`Unreachable`].
    fn unreachable(&self, last: Option<Last>) -> ClientError {
        match last {
            Some(Last::Refused(failure)) => failure.into(),
            Some(Last::Transport(what)) => Unreachable { tried: self.bases.join(", "), last: what }.into(),
            None => Unreachable { tried: self.bases.join(", "), last: "none".to_string() }.into(),
        }
    }

    /// Opens `/v1/miners/{miner}/session` lasting at most `max_ms` on the first coordinator that
    /// takes it (from the current one on). Returns the coordinator's address and the session's
    /// lines as JSON, until the stream ends or breaks; a line that is not JSON is skipped.
    /// The request is signed with `key` (the miner's), on `network`, for each coordinator tried.
    pub fn open_session(
        &self,
        key: &SigningKey,
        network: &NetworkId,
        max_ms: u64,
    ) -> ClientResult<(String, impl Iterator<Item = SessionLine>)> {
        let miner = key.verifying_key().to_bytes();
        let sign = || {
            let time_ms = deai_clock::SystemClock.now_ms();
            let signature = key.sign(&session_request_bytes(network, &miner, time_ms, max_ms)).to_bytes();
            [(SESSION_TIME_HEADER, time_ms.to_string()), (SESSION_SIGNATURE_HEADER, hex(&signature))]
        };
        let path = format!("/v1/miners/{}/session?max_ms={max_ms}", hex(&miner));
        let (coordinator, body) = self.open_stream(&path, max_ms, sign)?;
        let lines = std::io::BufRead::lines(std::io::BufReader::new(body.into_reader()))
            .map_while(Result::ok)
            .filter_map(|line| serde_json::from_str::<SessionLine>(&line).ok());
        Ok((coordinator, lines))
    }

    /// Opens a long-lived streaming GET of `path` on the first coordinator, from the current one
    /// on, that answers 2xx; the body may take up to `max_ms` to arrive. Returns the
    /// coordinator's address and the body.
    fn open_stream<const N: usize>(
        &self,
        path: &str,
        max_ms: u64,
        headers: impl Fn() -> [(&'static str, String); N],
    ) -> ClientResult<(String, ureq::Body)> {
        let start = self.current.load(Ordering::Relaxed);
        let mut last = None;
        for k in 0..self.bases.len() {
            let i = (start + k) % self.bases.len();
            let mut request = self.agent.get(&format!("{}{path}", self.bases[i]));
            for (name, value) in headers() {
                request = request.header(name, value);
            }
            let request = request
                .config()
                .timeout_recv_body(Some(Duration::from_millis(max_ms.saturating_add(API_REQUEST_TIMEOUT_MS))))
                .build();
            match request.call() {
                Ok(response) if response.status().is_success() => {
                    self.current.store(i, Ordering::Relaxed);
                    return Ok((self.bases[i].clone(), response.into_body()));
                }
                Ok(mut response) => {
                    let error: Option<ErrorBody> = response.body_mut().read_json().ok();
                    last = Some(Last::Refused(ApiFailure {
                        status: response.status().as_u16(),
                        code: error.as_ref().map_or_else(|| "unknown".to_string(), |e| e.code.as_str().to_string()),
                        message: format!("{}: {}", self.bases[i], error.map(|e| e.message).unwrap_or_default()),
                    }));
                }
                Err(e) => last = Some(Last::Transport(format!("{}: {e}", self.bases[i]))),
            }
        }
        Err(self.unreachable(last))
    }

    /// Moves to the next coordinator (after the current one went silent).
    pub fn skip_current(&self) {
        let next = (self.current.load(Ordering::Relaxed) + 1) % self.bases.len();
        self.current.store(next, Ordering::Relaxed);
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> ClientResult<T> {
        let value = self.call(|base| self.agent.get(&format!("{base}{path}")).call())?;
        serde_json::from_value(value).map_err(|e| unexpected(format!("GET {path}"), e))
    }

    /// POSTs `body` as `application/octet-stream`; the answer is JSON.
    pub fn post_bytes(&self, path: &str, body: &[u8]) -> ClientResult<Value> {
        self.post_bytes_tracked(path, body).map(|(value, _)| value)
    }

    /// [`post_bytes`](Self::post_bytes), also saying whether an earlier attempt may have been
    /// carried out.
    fn post_bytes_tracked(&self, path: &str, body: &[u8]) -> ClientResult<(Value, bool)> {
        self.call_tracked(|base| {
            self.agent.post(&format!("{base}{path}")).content_type("application/octet-stream").send(body)
        })
    }
}

/// A participant: its key and the coordinators it uses.
pub struct Participant {
    pub key: SigningKey,
    pub api: Coordinators,
    network: NetworkId,
}

/// What a write of one envelope came to.
#[derive(Debug)]
pub struct Outcome {
    pub log_index: u64,
    /// `accepted`, or the rejection code.
    pub outcome: String,
}

impl Participant {
    /// Reads the network id from the coordinators (it is part of every signature).
    pub fn connect(key: SigningKey, api: Coordinators) -> ClientResult<Self> {
        let head: Head = api.get("/v1/ledger/head?consistency=stale")?;
        Ok(Participant { key, api, network: NetworkId(head.network_id) })
    }

    pub fn id(&self) -> ParticipantId {
        ParticipantId(self.key.verifying_key().to_bytes())
    }

    pub fn id_hex(&self) -> String {
        hex(&self.id().0)
    }

    pub fn network(&self) -> &NetworkId {
        &self.network
    }

    /// Opens this participant's miner session, signed with its key (see
    /// [`Coordinators::open_session`]).
    pub fn open_session(&self, max_ms: u64) -> ClientResult<(String, impl Iterator<Item = SessionLine>)> {
        self.api.open_session(&self.key, &self.network, max_ms)
    }

    /// The next nonce, from a linearizable read of this participant's account.
    pub fn next_nonce(&self) -> ClientResult<u64> {
        let account: AccountView = self.api.get(&format!("/v1/ledger/accounts/{}", self.id_hex()))?;
        Ok(account.last_nonce + 1)
    }

    /// Seals `message` with nonce `nonce`.
    pub fn seal(&self, nonce: u64, message: &Message) -> SignedEnvelope {
        SignedEnvelope::seal(&self.key, &self.network, nonce, message)
    }

    /// Signs and submits `message` with the next nonce.
    pub fn submit(&self, message: Message) -> ClientResult<Outcome> {
        let envelope = self.seal(self.next_nonce()?, &message);
        self.submit_envelope(&envelope)
    }

    pub fn submit_envelope(&self, envelope: &SignedEnvelope) -> ClientResult<Outcome> {
        let (log_index, mut outcomes) = self.submit_envelopes(std::slice::from_ref(envelope))?;
        Ok(Outcome { log_index, outcome: outcomes.pop().unwrap_or_else(|| "unknown".to_string()) })
    }

    /// Submits envelopes in one write, in their binary form (`POST /v1/ledger/entries`, no hex
    /// or JSON to encode and parse). Returns the write's log index and one outcome per envelope,
    /// in order: `accepted` or the rejection code.
    pub fn submit_envelopes(&self, envelopes: &[SignedEnvelope]) -> ClientResult<(u64, Vec<String>)> {
        let (answer, ambiguous) =
            self.api.post_bytes_tracked("/v1/ledger/entries", &deai_protocol::codec::encode_framed(envelopes))?;
        let answer: WriteResult = serde_json::from_value(answer).map_err(|e| unexpected("a write", e))?;
        // After an attempt whose fate is unknown, `replay` means that attempt wrote the envelope:
        // this participant signs one envelope per nonce.
        let outcomes: Vec<String> = answer
            .outcomes
            .into_iter()
            .map(|o| if ambiguous && o == "replay" { "accepted".to_string() } else { o })
            .collect();
        if outcomes.len() != envelopes.len() {
            return Err(unexpected(
                "a write",
                format!("{} outcomes for {} envelopes", outcomes.len(), envelopes.len()),
            ));
        }
        Ok((answer.log_index, outcomes))
    }

    /// Like [`submit`](Self::submit), but an entry the ledger rejects is an error.
    pub fn submit_accepted(&self, message: Message) -> ClientResult<u64> {
        let kind = message.kind().name();
        let outcome = self.submit(message)?;
        if outcome.outcome != "accepted" {
            return Err(Rejected { kind, code: outcome.outcome }.into());
        }
        Ok(outcome.log_index)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpListener;
    use std::sync::mpsc;

    const PHASE_MS: u64 = 200;
    /// How long a test waits for a bounded request to give up; far above `PHASE_MS`.
    const GIVE_UP_WITHIN_MS: u64 = 5_000;

    /// Serves one connection: reads the request, then writes `answer` and holds the
    /// connection open without writing anything more.
    fn stalling_server(answer: &'static [u8]) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        std::thread::spawn(move || {
            let Ok((mut stream, _)) = listener.accept() else { return };
            let mut request = [0u8; 4_096];
            let _ = stream.read(&mut request);
            let _ = stream.write_all(answer);
            std::thread::sleep(Duration::from_millis(GIVE_UP_WITHIN_MS * 2));
        });
        format!("http://{address}/")
    }

    /// Runs a GET of `url` through an agent bounded per phase; `Some(failed)` if it ended in
    /// time, `None` if it was still waiting after `GIVE_UP_WITHIN_MS`.
    fn get_with_phase_timeouts(url: String) -> Option<bool> {
        let (done, ended) = mpsc::channel();
        std::thread::spawn(move || {
            let agent = agent_with_phase_timeouts(PHASE_MS);
            let result = agent.get(&url).call().and_then(|mut r| r.body_mut().read_to_string());
            let _ = done.send(result.is_err());
        });
        ended.recv_timeout(Duration::from_millis(GIVE_UP_WITHIN_MS)).ok()
    }

    #[test]
    fn a_server_that_never_answers_is_given_up_on() {
        assert_eq!(get_with_phase_timeouts(stalling_server(b"")), Some(true));
    }

    #[test]
    fn an_answer_whose_body_stalls_is_given_up_on() {
        let head = b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\npartial";
        assert_eq!(get_with_phase_timeouts(stalling_server(head)), Some(true));
    }

    #[test]
    fn a_complete_answer_is_read() {
        let whole = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(get_with_phase_timeouts(stalling_server(whole)), Some(false));
    }
}
