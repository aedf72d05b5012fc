//! The signed envelope every client, miner and coordinator message travels in (SPEC 3).
//!
//! The signature covers a domain-separated encoding: `"deai/v1/" + kind`, the network id, the
//! nonce and the bincode body. Checking an envelope never panics on any bytes, and a failed
//! check changes no state (the ledger checks before it applies).

use crate::codec;
use crate::error::Rejection;
use crate::message::{Message, MessageKind};
use crate::types::{NetworkId, ParticipantId};
use bincode::{Decode, Encode};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// Largest message body accepted in an envelope, in bytes.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// `{ kind, body, signer, nonce, network_id, signature }` of SPEC 3.
#[derive(Clone, Debug, PartialEq, Eq, Encode, Decode)]
pub struct SignedEnvelope {
    pub kind: MessageKind,
    /// `bincode(body)` of the message named by `kind`.
    pub body: Vec<u8>,
    pub signer: ParticipantId,
    /// Must be greater than the signer's last accepted nonce.
    pub nonce: u64,
    pub network_id: NetworkId,
    pub signature: [u8; 64],
}

/// The exact bytes an envelope's signature covers.
pub fn signing_bytes(kind: MessageKind, network: &NetworkId, nonce: u64, body: &[u8]) -> Vec<u8> {
    let domain = kind.domain();
    let mut out = Vec::with_capacity(domain.len() + network.0.len() + body.len() + 24);
    out.extend_from_slice(&(domain.len() as u32).to_le_bytes());
    out.extend_from_slice(domain.as_bytes());
    out.extend_from_slice(&(network.0.len() as u32).to_le_bytes());
    out.extend_from_slice(network.0.as_bytes());
    out.extend_from_slice(&nonce.to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.extend_from_slice(body);
    out
}

impl SignedEnvelope {
    /// Signs `message` as `key` for `network` with `nonce`.
    pub fn seal(key: &SigningKey, network: &NetworkId, nonce: u64, message: &Message) -> Self {
        let kind = message.kind();
        let body = message.body_bytes();
        let signature = key.sign(&signing_bytes(kind, network, nonce, &body)).to_bytes();
        SignedEnvelope {
            kind,
            body,
            signer: ParticipantId(key.verifying_key().to_bytes()),
            nonce,
            network_id: network.clone(),
            signature,
        }
    }

    /// Checks size and network, then decodes the body. Does not verify the signature.
    pub fn check_and_decode(&self, network: &NetworkId) -> Result<Message, Rejection> {
        if self.body.len() > MAX_BODY_BYTES {
            return Err(Rejection::BodyTooLarge { size_bytes: self.body.len(), limit_bytes: MAX_BODY_BYTES });
        }
        if &self.network_id != network {
            return Err(Rejection::WrongNetwork { expected: network.0.clone(), got: self.network_id.0.clone() });
        }
        Message::decode_body(self.kind, &self.body)
    }

    /// Verifies the ed25519 signature (strict: rejects small-order keys and malleable forms).
    pub fn verify_signature(&self) -> Result<(), Rejection> {
        let key = verifying_key(&self.signer.0).ok_or(Rejection::BadSignature(self.signer))?;
        let sig = Signature::from_bytes(&self.signature);
        let bytes = signing_bytes(self.kind, &self.network_id, self.nonce, &self.body);
        key.verify_strict(&bytes, &sig).map_err(|_| Rejection::BadSignature(self.signer))
    }

    /// `H("envelope" domain || bincode(envelope))` ([`crate::hash::hash_encoded`]): names the
    /// signed envelope. An order's id is the
    /// digest of the envelope that placed it, and the running root hashes entries through it.
    pub fn digest(&self) -> crate::types::Digest {
        crate::hash::hash_encoded("envelope", self)
    }

    /// Framed wire bytes (version byte + bincode).
    pub fn to_wire(&self) -> Vec<u8> {
        codec::encode_framed(self)
    }

    /// Decodes wire bytes; any input gives a value or an error, never a panic.
    pub fn from_wire(bytes: &[u8]) -> Result<Self, Rejection> {
        Ok(codec::decode_framed(bytes)?)
    }
}

/// Slots in the per-thread cache of decompressed public keys.
const KEY_CACHE_SLOTS: usize = 4_096;

/// One cache slot: the key's bytes and its decompressed point.
type KeySlot = Option<([u8; 32], VerifyingKey)>;

thread_local! {
    /// Decompressing a public key (a field square root) is about a third of verifying a
    /// signature, and the same signers sign again and again. A direct-mapped cache per thread,
    /// bounded by [`KEY_CACHE_SLOTS`]: a pure memo of `VerifyingKey::from_bytes`, so results do
    /// not depend on it, and nothing here is replicated state.
    static KEY_CACHE: std::cell::RefCell<Vec<KeySlot>> =
        std::cell::RefCell::new(vec![None; KEY_CACHE_SLOTS]);
}

/// `VerifyingKey::from_bytes`, memoised; `None` for bytes that are not a curve point.
fn verifying_key(bytes: &[u8; 32]) -> Option<VerifyingKey> {
    let slot = usize::from(u16::from_le_bytes([bytes[0], bytes[1]])) % KEY_CACHE_SLOTS;
    KEY_CACHE.with(|cache| {
        let mut cache = cache.borrow_mut();
        if let Some((cached, key)) = &cache[slot] {
            if cached == bytes {
                return Some(*key);
            }
        }
        let key = VerifyingKey::from_bytes(bytes).ok()?;
        cache[slot] = Some((*bytes, key));
        Some(key)
    })
}

/// Verifies many envelopes' signatures at once (ed25519 batch verification). Returns `true`
/// only if all verify; on `false` the caller falls back to one-by-one checks to find the bad one.
pub fn verify_batch(envelopes: &[&SignedEnvelope]) -> bool {
    if envelopes.is_empty() {
        return true;
    }
    let mut messages = Vec::with_capacity(envelopes.len());
    let mut signatures = Vec::with_capacity(envelopes.len());
    let mut keys = Vec::with_capacity(envelopes.len());
    for e in envelopes {
        let Some(key) = verifying_key(&e.signer.0) else { return false };
        if key.is_weak() {
            return false;
        }
        messages.push(signing_bytes(e.kind, &e.network_id, e.nonce, &e.body));
        signatures.push(Signature::from_bytes(&e.signature));
        keys.push(key);
    }
    let refs: Vec<&[u8]> = messages.iter().map(|m| m.as_slice()).collect();
    ed25519_dalek::verify_batch(&refs, &signatures, &keys).is_ok()
}

/// Verifies a detached signature over `bytes` by `signer` (checkpoint and payout signatures).
pub fn verify_detached(signer: &ParticipantId, bytes: &[u8], signature: &[u8; 64]) -> bool {
    let Ok(key) = VerifyingKey::from_bytes(&signer.0) else { return false };
    key.verify(bytes, &Signature::from_bytes(signature)).is_ok() && !key.is_weak()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::DevFaucet;
    use crate::types::AssetId;

    fn slot(key: &SigningKey) -> usize {
        let b = key.verifying_key().to_bytes();
        usize::from(u16::from_le_bytes([b[0], b[1]])) % KEY_CACHE_SLOTS
    }

    /// Two signers whose keys share a cache slot: each verifies as itself, before and after the
    /// other, and neither's cached key vouches for the other's signature.
    #[test]
    fn the_key_cache_never_confuses_signers_that_share_a_slot() {
        let a = SigningKey::from_bytes(&[1; 32]);
        let b = (0u32..)
            .map(|i| {
                let mut seed = [2u8; 32];
                seed[..4].copy_from_slice(&i.to_le_bytes());
                SigningKey::from_bytes(&seed)
            })
            .find(|k| slot(k) == slot(&a) && k.verifying_key() != a.verifying_key())
            .expect("a colliding key");
        let network = NetworkId("deai-test".into());
        let message = Message::DevFaucet(DevFaucet { asset: AssetId::NATIVE, amount: 1 });
        let by_a = SignedEnvelope::seal(&a, &network, 1, &message);
        let by_b = SignedEnvelope::seal(&b, &network, 1, &message);
        for _ in 0..2 {
            assert!(by_a.verify_signature().is_ok());
            assert!(by_b.verify_signature().is_ok());
            assert!(verify_batch(&[&by_a, &by_b]));
        }
        let mut forged = by_b.clone();
        forged.signer = by_a.signer;
        assert!(forged.verify_signature().is_err(), "b's signature under a's name is refused");
        assert!(!verify_batch(&[&by_a, &forged]));
    }
}
