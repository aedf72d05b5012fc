//! Signed admin requests: who may change a cluster's membership, move its leader or build a
//! snapshot through the HTTP endpoint.
//!
//! A node configured with `admin_keys` (ed25519 public keys, hex) accepts a mutating admin
//! request only with three headers: `x-deai-admin-key` (one of those keys), `x-deai-time-ms`
//! (the sender's clock) and `x-deai-signature` over [`admin_request_bytes`]: the network id,
//! method, path, time and a hash of the body. So a signature is good for one network, one route
//! and one body, for [`MAX_ADMIN_SKEW_MS`] around its time; within that window the node
//! remembers the signatures it accepted (at most [`MAX_REMEMBERED_ADMIN_SIGNATURES`]) and refuses
//! a replay. With no `admin_keys` (a dev network) the routes are open and the node says so at
//! start. Commands a node forwards to the leader travel over the peer link, which only the
//! network's members hold; the edge that took the request checked it.

use crate::api_client::{hex, unhex, unhex32};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

/// How far an admin request's time may be from the node's clock, in milliseconds.
pub const MAX_ADMIN_SKEW_MS: u64 = 60_000;
/// Accepted admin signatures a node remembers to refuse replays.
pub const MAX_REMEMBERED_ADMIN_SIGNATURES: usize = 4_096;

pub const KEY_HEADER: &str = "x-deai-admin-key";
pub const TIME_HEADER: &str = "x-deai-time-ms";
pub const SIGNATURE_HEADER: &str = "x-deai-signature";

/// What an admin signature covers.
pub fn admin_request_bytes(network: &str, method: &str, path: &str, time_ms: u64, body: &[u8]) -> Vec<u8> {
    let mut bytes = b"deai-admin-request\0".to_vec();
    for part in [network.as_bytes(), method.as_bytes(), path.as_bytes()] {
        bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
        bytes.extend_from_slice(part);
    }
    bytes.extend_from_slice(&time_ms.to_le_bytes());
    bytes.extend_from_slice(blake3::hash(body).as_bytes());
    bytes
}

/// The three headers that sign one admin request.
pub fn sign(
    key: &SigningKey,
    network: &str,
    method: &str,
    path: &str,
    time_ms: u64,
    body: &[u8],
) -> [(String, String); 3] {
    let signature = key.sign(&admin_request_bytes(network, method, path, time_ms, body));
    [
        (KEY_HEADER.into(), hex(key.verifying_key().as_bytes())),
        (TIME_HEADER.into(), time_ms.to_string()),
        (SIGNATURE_HEADER.into(), hex(&signature.to_bytes())),
    ]
}

/// Why an admin request was refused; each has a stable code and an HTTP status.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdminAuthError {
    #[error("sign admin requests: {KEY_HEADER}, {TIME_HEADER} and {SIGNATURE_HEADER} (deai admin --key)")]
    Unsigned,
    #[error("a header is malformed: {0}")]
    Malformed(&'static str),
    #[error("the request time is more than {MAX_ADMIN_SKEW_MS} ms from this node's clock")]
    Stale,
    #[error("this key is not one of the node's admin_keys")]
    UnknownKey,
    #[error("the signature does not match the request")]
    BadSignature,
    #[error("this signed request was already carried out")]
    Replay,
}

impl AdminAuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AdminAuthError::Unsigned => "unsigned",
            AdminAuthError::Malformed(_) => "malformed_signature",
            AdminAuthError::Stale => "stale_request",
            AdminAuthError::UnknownKey => "unknown_admin_key",
            AdminAuthError::BadSignature => "bad_signature",
            AdminAuthError::Replay => "replay",
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            AdminAuthError::Unsigned | AdminAuthError::Stale | AdminAuthError::BadSignature => 401,
            AdminAuthError::Malformed(_) => 400,
            AdminAuthError::UnknownKey => 403,
            AdminAuthError::Replay => 409,
        }
    }
}

/// A node's admin keys and the signatures it has accepted.
pub struct AdminAuth {
    keys: Vec<VerifyingKey>,
    network: String,
    seen: Mutex<SeenSignatures>,
}

/// Signatures accepted lately, for refusing replays: a set, and the order to forget them in.
#[derive(Default)]
struct SeenSignatures {
    set: HashSet<[u8; 64]>,
    order: VecDeque<[u8; 64]>,
}

impl AdminAuth {
    /// `keys` as the configuration lists them (hex). Fails on a key that is not one.
    pub fn new(keys: &[String], network: &str) -> anyhow::Result<Self> {
        let keys = keys
            .iter()
            .map(|k| {
                let bytes = unhex32(k.trim()).ok_or_else(|| anyhow::anyhow!("admin key {k:?} is not 64 hex digits"))?;
                VerifyingKey::from_bytes(&bytes).map_err(|_| anyhow::anyhow!("admin key {k} is not an ed25519 key"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(AdminAuth { keys, network: network.to_string(), seen: Mutex::default() })
    }

    /// Whether mutating admin routes are open (no keys configured).
    pub fn is_open(&self) -> bool {
        self.keys.is_empty()
    }

    /// Checks one request; `header` reads a request header.
    pub fn check(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        header: impl Fn(&str) -> Option<String>,
        now_ms: u64,
    ) -> Result<(), AdminAuthError> {
        if self.is_open() {
            return Ok(());
        }
        let (Some(key), Some(time), Some(signature)) =
            (header(KEY_HEADER), header(TIME_HEADER), header(SIGNATURE_HEADER))
        else {
            return Err(AdminAuthError::Unsigned);
        };
        let time_ms: u64 = time.trim().parse().map_err(|_| AdminAuthError::Malformed(TIME_HEADER))?;
        if now_ms.abs_diff(time_ms) > MAX_ADMIN_SKEW_MS {
            return Err(AdminAuthError::Stale);
        }
        let key = unhex32(key.trim()).ok_or(AdminAuthError::Malformed(KEY_HEADER))?;
        let signature: [u8; 64] = unhex(signature.trim())
            .and_then(|b| b.try_into().ok())
            .ok_or(AdminAuthError::Malformed(SIGNATURE_HEADER))?;
        let known = self.keys.iter().find(|k| k.as_bytes() == &key).ok_or(AdminAuthError::UnknownKey)?;
        let bytes = admin_request_bytes(&self.network, method, path, time_ms, body);
        known.verify(&bytes, &Signature::from_bytes(&signature)).map_err(|_| AdminAuthError::BadSignature)?;
        let mut seen = self.seen.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !seen.set.insert(signature) {
            return Err(AdminAuthError::Replay);
        }
        seen.order.push_back(signature);
        if seen.order.len() > MAX_REMEMBERED_ADMIN_SIGNATURES {
            if let Some(oldest) = seen.order.pop_front() {
                seen.set.remove(&oldest);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: [(String, String); 3]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    #[test]
    fn only_a_listed_key_signing_this_request_now_and_once_passes() {
        let admin = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let auth = AdminAuth::new(&[hex(admin.verifying_key().as_bytes())], "net-a").unwrap();
        let now = 1_000_000;
        let body = br#"{"id":2}"#;
        let signed = sign(&admin, "net-a", "POST", "/v1/admin/remove", now, body);

        assert_eq!(auth.check("POST", "/v1/admin/remove", body, |_| None, now), Err(AdminAuthError::Unsigned));
        let wrong_body = auth.check("POST", "/v1/admin/remove", br#"{"id":0}"#, headers(signed.clone()), now);
        assert_eq!(wrong_body, Err(AdminAuthError::BadSignature));
        let wrong_route = auth.check("POST", "/v1/admin/promote", body, headers(signed.clone()), now);
        assert_eq!(wrong_route, Err(AdminAuthError::BadSignature));
        let late = auth.check("POST", "/v1/admin/remove", body, headers(signed.clone()), now + MAX_ADMIN_SKEW_MS + 1);
        assert_eq!(late, Err(AdminAuthError::Stale));
        let other_network = sign(&admin, "net-b", "POST", "/v1/admin/remove", now, body);
        assert_eq!(
            auth.check("POST", "/v1/admin/remove", body, headers(other_network), now),
            Err(AdminAuthError::BadSignature)
        );
        let stranger = sign(&other, "net-a", "POST", "/v1/admin/remove", now, body);
        assert_eq!(
            auth.check("POST", "/v1/admin/remove", body, headers(stranger), now),
            Err(AdminAuthError::UnknownKey)
        );

        assert_eq!(auth.check("POST", "/v1/admin/remove", body, headers(signed.clone()), now), Ok(()));
        assert_eq!(auth.check("POST", "/v1/admin/remove", body, headers(signed), now), Err(AdminAuthError::Replay));
    }

    #[test]
    fn without_keys_the_routes_are_open_and_bad_keys_are_refused_at_start() {
        let open = AdminAuth::new(&[], "net").unwrap();
        assert!(open.is_open());
        assert_eq!(open.check("POST", "/v1/admin/snapshot", b"", |_| None, 0), Ok(()));
        assert!(AdminAuth::new(&["zz".into()], "net").is_err());
    }
}
