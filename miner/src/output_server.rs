//! The miner's own endpoint, `GET /v1/outputs/{order}`: an output goes only to the client that
//! ordered it (SPEC 5.8), proven by a signature over the request ([`output_request_bytes`]) made
//! within [`MAX_REQUEST_SKEW_MS`] of the miner's clock. Errors are the API's JSON error body.

use deai_api::hex::{unhex, unhex32};
use deai_api::signed_requests::{output_request_bytes, OUTPUT_SIGNATURE_HEADER, OUTPUT_TIME_HEADER};
use deai_api::{Code, ErrorBody};
use deai_clock::SharedClock;
use deai_protocol::types::{NetworkId, ParticipantId};
use ed25519_dalek::{Signature, Verifier, VerifyingKey};
use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Outputs kept for clients to fetch; the oldest goes first.
pub const MAX_STORED_OUTPUTS: usize = 10_000;
/// How far a client's request time may be from the miner's clock, in milliseconds.
pub const MAX_REQUEST_SKEW_MS: u64 = 60_000;
/// Threads answering output requests.
pub const OUTPUT_SERVER_THREADS: usize = 2;
/// How often an idle server thread looks whether the miner is stopping, in milliseconds.
const STOP_POLL_MS: u64 = 100;

/// Outputs waiting for their clients, by order.
#[derive(Default)]
pub struct OutputStore {
    by_order: HashMap<[u8; 32], (ParticipantId, Vec<u8>)>,
    order: VecDeque<[u8; 32]>,
}

impl OutputStore {
    pub fn put(&mut self, order: [u8; 32], client: ParticipantId, output: Vec<u8>) {
        if self.by_order.insert(order, (client, output)).is_none() {
            self.order.push_back(order);
        }
        while self.order.len() > MAX_STORED_OUTPUTS {
            if let Some(old) = self.order.pop_front() {
                self.by_order.remove(&old);
            }
        }
    }

    fn get(&self, order: &[u8; 32]) -> Option<(ParticipantId, Vec<u8>)> {
        self.by_order.get(order).cloned()
    }
}

/// A running output server; dropping it stops its threads.
pub struct OutputServer {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl OutputServer {
    /// Listens on `listen` and serves `outputs` to their clients on `network`.
    pub fn start(
        listen: &str,
        network: NetworkId,
        outputs: Arc<Mutex<OutputStore>>,
        clock: SharedClock,
    ) -> Result<Self, String> {
        let server = Arc::new(tiny_http::Server::http(listen).map_err(|e| format!("cannot listen on {listen}: {e}"))?);
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        for i in 0..OUTPUT_SERVER_THREADS {
            let (server, stop, outputs, network, clock) =
                (server.clone(), stop.clone(), outputs.clone(), network.clone(), clock.clone());
            let thread = std::thread::Builder::new()
                .name(format!("deai-miner-http-{i}"))
                .spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match server.recv_timeout(Duration::from_millis(STOP_POLL_MS)) {
                            Ok(Some(request)) => answer(request, &network, &outputs, clock.now_ms()),
                            Ok(None) => {}
                            Err(e) => {
                                tracing::warn!(error = %e, "the output server stopped accepting");
                                return;
                            }
                        }
                    }
                })
                .map_err(|e| format!("cannot start the output server: {e}"))?;
            threads.push(thread);
        }
        Ok(OutputServer { stop, threads })
    }
}

impl Drop for OutputServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
    }
}

fn answer(request: tiny_http::Request, network: &NetworkId, outputs: &Mutex<OutputStore>, now_ms: u64) {
    let header = |name: &'static str| {
        request.headers().iter().find(|h| h.field.equiv(name)).map(|h| h.value.as_str().trim().to_string())
    };
    let result = if *request.method() != tiny_http::Method::Get {
        Err((405, Code::MethodNotAllowed, "this endpoint takes GET only".to_string()))
    } else {
        let order = request.url().strip_prefix("/v1/outputs/").map(|rest| rest.split('?').next().unwrap_or(""));
        match order {
            None => Err((404, Code::NotFound, "no such route; outputs are at /v1/outputs/{order}".to_string())),
            Some(order) => {
                output_for(order, header(OUTPUT_TIME_HEADER), header(OUTPUT_SIGNATURE_HEADER), network, outputs, now_ms)
            }
        }
    };
    let response = match result {
        Ok(output) => tiny_http::Response::from_data(output).with_header(content_type("application/octet-stream")),
        Err((status, code, message)) => {
            let body = ErrorBody { code, message, leader: None, until_ms: None };
            tiny_http::Response::from_data(serde_json::to_vec(&body).unwrap_or_default())
                .with_status_code(status)
                .with_header(content_type("application/json"))
        }
    };
    if let Err(e) = request.respond(response) {
        tracing::debug!(error = %e, "a client left before its answer");
    }
}

fn content_type(value: &str) -> tiny_http::Header {
    tiny_http::Header {
        field: "Content-Type".parse().expect("a valid header name"),
        value: value.parse().expect("ascii"),
    }
}

type Refusal = (u16, Code, String);

/// The output of `order` if the request is signed by its client in time.
fn output_for(
    order: &str,
    time: Option<String>,
    signature: Option<String>,
    network: &NetworkId,
    outputs: &Mutex<OutputStore>,
    now_ms: u64,
) -> Result<Vec<u8>, Refusal> {
    let refuse = |status: u16, code: Code, message: &str| Err((status, code, message.to_string()));
    let Some(order) = unhex32(order) else { return refuse(400, Code::BadId, "the order id is 64 hex digits") };
    let (Some(time), Some(signature)) = (time, signature) else {
        return refuse(401, Code::Unsigned, "sign the request: x-deai-time-ms and x-deai-signature");
    };
    let Ok(time_ms) = time.parse::<u64>() else {
        return refuse(400, Code::MalformedSignature, "x-deai-time-ms is a number of milliseconds");
    };
    if now_ms.abs_diff(time_ms) > MAX_REQUEST_SKEW_MS {
        return refuse(401, Code::StaleRequest, "the request time is too far from the miner's clock");
    }
    let Some(signature) = unhex(&signature).and_then(|b| <[u8; 64]>::try_from(b).ok()) else {
        return refuse(400, Code::MalformedSignature, "x-deai-signature is 128 hex digits");
    };
    let found = outputs.lock().map(|s| s.get(&order)).ok().flatten();
    let Some((client, output)) = found else { return refuse(404, Code::UnknownOrder, "no output for this order here") };
    let bytes = output_request_bytes(network, &order, time_ms);
    let verified = VerifyingKey::from_bytes(&client.0)
        .map(|key| key.verify(&bytes, &Signature::from_bytes(&signature)).is_ok())
        .unwrap_or(false);
    if !verified {
        return refuse(403, Code::NotOrderOwner, "only the client that ordered may fetch the output");
    }
    Ok(output)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::{Signer, SigningKey};

    #[test]
    fn only_the_ordering_client_in_time_gets_the_output() {
        let network = NetworkId("n".into());
        let client = SigningKey::from_bytes(&[3; 32]);
        let other = SigningKey::from_bytes(&[4; 32]);
        let store = Mutex::new(OutputStore::default());
        store.lock().unwrap().put([9; 32], ParticipantId(client.verifying_key().to_bytes()), b"out".to_vec());
        let order = deai_api::hex::hex(&[9; 32]);
        let signed = |key: &SigningKey, t: u64| {
            Some(deai_api::hex::hex(&key.sign(&output_request_bytes(&network, &[9; 32], t)).to_bytes()))
        };
        let now = 1_000_000;
        let get = |time: Option<String>, sig: Option<String>| output_for(&order, time, sig, &network, &store, now);
        assert_eq!(get(Some(now.to_string()), signed(&client, now)).unwrap(), b"out");
        assert_eq!(get(Some(now.to_string()), signed(&other, now)).unwrap_err().1, Code::NotOrderOwner);
        assert_eq!(get(None, signed(&client, now)).unwrap_err().1, Code::Unsigned);
        let old = now - MAX_REQUEST_SKEW_MS - 1;
        assert_eq!(get(Some(old.to_string()), signed(&client, old)).unwrap_err().1, Code::StaleRequest);
        // Signed for another time than the one sent.
        assert_eq!(get(Some((now + 1).to_string()), signed(&client, now)).unwrap_err().1, Code::NotOrderOwner);
    }
}
