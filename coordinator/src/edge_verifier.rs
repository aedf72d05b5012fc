//! Signature checks at the HTTP edge, batched across requests.
//!
//! Checking one ed25519 signature alone costs about three times what it costs inside a batch,
//! and the edge would otherwise check each request's few envelopes alone. So requests hand their
//! envelopes to one verifying thread, which drains every request waiting (up to
//! [`MAX_EDGE_BATCH_ENVELOPES`]), checks all their signatures as one batch and answers each; if
//! the batch fails, it checks each request's envelopes one by one, strictly, so that one bad
//! request never fails another. The edge's verdict only keeps junk out of the log: every replica
//! checks every signature again when it applies the entry.

use deai_protocol::{Rejection, SignedEnvelope};
use std::sync::mpsc;
use tokio::sync::oneshot;

/// Most envelopes checked in one batch.
pub const MAX_EDGE_BATCH_ENVELOPES: usize = 4_096;
/// Requests waiting for the verifier; past it a request waits to queue (backpressure).
pub const MAX_EDGE_QUEUED_REQUESTS: usize = 1_024;

/// The first bad envelope of a request: its index and why.
pub type Verdict = Result<(), (usize, Rejection)>;

struct Check {
    envelopes: Vec<SignedEnvelope>,
    reply: oneshot::Sender<(Vec<SignedEnvelope>, Verdict)>,
}

/// The handle requests check their envelopes' signatures through. Clones share the thread,
/// which ends when the last clone is dropped.
#[derive(Clone)]
pub struct EdgeVerifier {
    queue: mpsc::SyncSender<Check>,
}

impl EdgeVerifier {
    pub fn start() -> std::io::Result<Self> {
        let (queue, checks) = mpsc::sync_channel(MAX_EDGE_QUEUED_REQUESTS);
        std::thread::Builder::new().name("deai-edge-verifier".into()).spawn(move || run(checks))?;
        Ok(EdgeVerifier { queue })
    }

    /// Checks the signatures of `envelopes`; returns them with the verdict.
    pub async fn verify(&self, envelopes: Vec<SignedEnvelope>) -> Result<(Vec<SignedEnvelope>, Verdict), String> {
        let (reply, answer) = oneshot::channel();
        let queue = self.queue.clone();
        // A full queue blocks the sender: wait for room off the async workers.
        let check = Check { envelopes, reply };
        match queue.try_send(check) {
            Ok(()) => {}
            Err(mpsc::TrySendError::Full(check)) => {
                tokio::task::spawn_blocking(move || queue.send(check))
                    .await
                    .map_err(|e| e.to_string())?
                    .map_err(|_| "the edge verifier stopped".to_string())?;
            }
            Err(mpsc::TrySendError::Disconnected(_)) => return Err("the edge verifier stopped".into()),
        }
        answer.await.map_err(|_| "the edge verifier dropped a check".to_string())
    }
}

fn run(checks: mpsc::Receiver<Check>) {
    while let Ok(first) = checks.recv() {
        let mut batch = vec![first];
        let mut envelopes = batch[0].envelopes.len();
        while envelopes < MAX_EDGE_BATCH_ENVELOPES {
            match checks.try_recv() {
                Ok(next) => {
                    envelopes += next.envelopes.len();
                    batch.push(next);
                }
                Err(_) => break,
            }
        }
        let all: Vec<&SignedEnvelope> = batch.iter().flat_map(|c| &c.envelopes).collect();
        let all_good = all.len() > 1 && deai_protocol::envelope::verify_batch(&all);
        drop(all);
        for check in batch {
            let verdict = if all_good { Ok(()) } else { strictly(&check.envelopes) };
            // The request may have given up; its answer has nowhere to go.
            let _ = check.reply.send((check.envelopes, verdict));
        }
    }
}

fn strictly(envelopes: &[SignedEnvelope]) -> Verdict {
    for (i, envelope) in envelopes.iter().enumerate() {
        envelope.verify_signature().map_err(|r| (i, r))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use deai_protocol::message::{DevFaucet, Message};
    use deai_protocol::types::{AssetId, NetworkId};

    fn sealed(seed: u8, nonce: u64) -> SignedEnvelope {
        let key = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
        let message = Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 1 });
        SignedEnvelope::seal(&key, &NetworkId("edge".into()), nonce, &message)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_request_fails_alone_among_concurrent_good_ones() {
        let verifier = EdgeVerifier::start().unwrap();
        let mut bad = vec![sealed(1, 1), sealed(1, 2)];
        bad[1].signature[5] ^= 1;
        let checks: Vec<_> = (0..20u8)
            .map(|i| {
                let verifier = verifier.clone();
                let envelopes = if i == 7 { bad.clone() } else { vec![sealed(i + 10, 1)] };
                tokio::spawn(async move { verifier.verify(envelopes).await.unwrap().1 })
            })
            .collect();
        for (i, check) in checks.into_iter().enumerate() {
            let verdict = check.await.unwrap();
            if i == 7 {
                assert_eq!(verdict.unwrap_err().0, 1, "the second envelope of the bad request is named");
            } else {
                assert!(verdict.is_ok(), "request {i} is good");
            }
        }
    }
}
