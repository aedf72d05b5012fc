//! Signed admin requests: who may change a cluster's membership, move its leader or build a
//! snapshot.
//!
//! A coordinator takes a mutating admin request only with three headers: `x-deai-admin-key`
//! (one of its `admin_keys`), `x-deai-time-ms` (the sender's clock) and `x-deai-signature` over
//! [`admin_request_bytes`]: the network id, the node addressed, method, path, time and a hash of
//! the body. So a signature is good for one network, one node, one route and one body, for
//! [`MAX_ADMIN_SKEW_MS`] around its time. The node that receives the request only packages it
//! ([`signed_request`]); the node that carries it out (the leader, for membership and leader
//! transfer; the addressed node itself, for a snapshot) checks it with its own keys and clock
//! ([`AdminAuthority`]), then records the request's hash in the ledger (`AuthorizeAdmin`): a
//! second record of the same hash is refused on every replica, so a request runs once in the
//! whole cluster, whichever node it is sent to. A coordinator refuses to start without admin keys.

use deai_api::hex::{hex, unhex, unhex32};
pub use deai_api::signed_requests::admin_request_bytes;
use deai_api::signed_requests::{
    ADMIN_KEY_HEADER as KEY_HEADER, ADMIN_SIGNATURE_HEADER as SIGNATURE_HEADER, ADMIN_TIME_HEADER as TIME_HEADER,
};
use deai_api::views::{IdBody, LearnerBody, SnapshotBody};
use deai_cluster::admin::{AdminCommand, AdminGate, AdmitFuture, SignedAdmin};
use deai_cluster::outbox::CoordinatorOutbox;
use deai_cluster::ClusterError;
use deai_protocol::message::{AuthorizeAdmin, Message};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};

/// How far an admin request's time may be from the executing node's clock, in milliseconds.
pub const MAX_ADMIN_SKEW_MS: u64 = 60_000;

/// The three headers that sign one admin request to node `node`.
pub fn sign(
    key: &SigningKey,
    network: &str,
    node: u64,
    method: &str,
    path: &str,
    time_ms: u64,
    body: &[u8],
) -> [(String, String); 3] {
    let signature = key.sign(&admin_request_bytes(network, node, method, path, time_ms, body));
    [
        (KEY_HEADER.into(), hex(key.verifying_key().as_bytes())),
        (TIME_HEADER.into(), time_ms.to_string()),
        (SIGNATURE_HEADER.into(), hex(&signature.to_bytes())),
    ]
}

/// Why an admin request was refused; each has a stable code (one of
/// `deai_cluster::ADMIN_REFUSAL_CODES`), whose HTTP status the API's code list gives.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AdminAuthError {
    #[error("sign admin requests: {KEY_HEADER}, {TIME_HEADER} and {SIGNATURE_HEADER} (deai admin --key)")]
    Unsigned,
    #[error("a header is malformed: {0}")]
    Malformed(&'static str),
    #[error("the request time is more than {MAX_ADMIN_SKEW_MS} ms from the executing node's clock")]
    Stale,
    #[error("this key is not one of the node's admin_keys")]
    UnknownKey,
    #[error("the signature does not match the request")]
    BadSignature,
    #[error("this signed request was already carried out")]
    Replay,
    #[error("the request was signed for node {signed_for}, and node {executing} carries out only its own")]
    WrongNode { signed_for: u64, executing: u64 },
    #[error("the request does not say what the signed path and body say: {0}")]
    Mismatch(String),
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
            AdminAuthError::WrongNode { .. } => "wrong_node",
            AdminAuthError::Mismatch(_) => "admin_mismatch",
        }
    }
}

impl From<AdminAuthError> for ClusterError {
    fn from(e: AdminAuthError) -> Self {
        ClusterError::AdminRefused { code: e.code(), message: e.to_string() }
    }
}

/// The command an admin route's `path` and JSON `body` ask for.
pub fn command_of(path: &str, body: &[u8]) -> Result<AdminCommand, String> {
    let body = if body.is_empty() { b"{}".as_slice() } else { body };
    let json = |e: serde_json::Error| format!("the body: {e}");
    Ok(match path {
        "/v1/admin/learners" => {
            let LearnerBody { id, raft_addr } = serde_json::from_slice(body).map_err(json)?;
            AdminCommand::AddLearner { id, raft_addr }
        }
        "/v1/admin/promote" => AdminCommand::Promote { id: serde_json::from_slice::<IdBody>(body).map_err(json)?.id },
        "/v1/admin/remove" => AdminCommand::Remove { id: serde_json::from_slice::<IdBody>(body).map_err(json)?.id },
        "/v1/admin/transfer-leader" => {
            AdminCommand::TransferLeader { to: serde_json::from_slice::<IdBody>(body).map_err(json)?.id }
        }
        "/v1/admin/snapshot" => {
            let SnapshotBody {} = serde_json::from_slice(body).map_err(json)?;
            AdminCommand::Snapshot
        }
        other => return Err(format!("{other} is no admin route")),
    })
}

/// Packages an admin request as it reached node `node`: its command, what was signed and the
/// signature. Nothing is verified here; the node that carries it out does that.
pub fn signed_request(
    node: u64,
    method: &str,
    path: &str,
    body: &[u8],
    header: impl Fn(&str) -> Option<String>,
) -> Result<SignedAdmin, AdminAuthError> {
    let (Some(key), Some(time), Some(signature)) = (header(KEY_HEADER), header(TIME_HEADER), header(SIGNATURE_HEADER))
    else {
        return Err(AdminAuthError::Unsigned);
    };
    let time_ms: u64 = time.trim().parse().map_err(|_| AdminAuthError::Malformed(TIME_HEADER))?;
    let key = unhex32(key.trim()).ok_or(AdminAuthError::Malformed(KEY_HEADER))?;
    let signature =
        unhex(signature.trim()).filter(|s| s.len() == 64).ok_or(AdminAuthError::Malformed(SIGNATURE_HEADER))?;
    let command = command_of(path, body).map_err(AdminAuthError::Mismatch)?;
    Ok(SignedAdmin {
        command,
        method: method.to_string(),
        path: path.to_string(),
        body: body.to_vec(),
        node,
        time_ms,
        key,
        signature,
    })
}

/// A node's admin keys, and its check of one signed request.
#[derive(Debug)]
pub struct AdminAuth {
    keys: Vec<VerifyingKey>,
    network: String,
}

impl AdminAuth {
    /// `keys` as the configuration lists them (hex). Fails on a key that is not one, and on
    /// none at all: a cluster without an operator key is open to anyone who reaches it.
    pub fn new(keys: &[String], network: &str) -> anyhow::Result<Self> {
        if keys.is_empty() {
            anyhow::bail!(
                "admin_keys is empty: list at least one operator key (deai genesis writes admin.key and \
                 lists its public half in every node file)"
            );
        }
        let keys = keys
            .iter()
            .map(|k| {
                let bytes = unhex32(k.trim()).ok_or_else(|| anyhow::anyhow!("admin key {k:?} is not 64 hex digits"))?;
                VerifyingKey::from_bytes(&bytes).map_err(|_| anyhow::anyhow!("admin key {k} is not an ed25519 key"))
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        Ok(AdminAuth { keys, network: network.to_string() })
    }

    /// Checks `request` for node `executing` at `now_ms`: a listed key signed exactly this
    /// request (network, addressed node, route, body, time) within the skew, the command is what
    /// the signed path and body say, and a node-local command runs only on the node addressed.
    /// Returns the hash of the signed bytes, to record.
    pub fn check(&self, request: &SignedAdmin, executing: u64, now_ms: u64) -> Result<[u8; 32], AdminAuthError> {
        if now_ms.abs_diff(request.time_ms) > MAX_ADMIN_SKEW_MS {
            return Err(AdminAuthError::Stale);
        }
        let known = self.keys.iter().find(|k| k.as_bytes() == &request.key).ok_or(AdminAuthError::UnknownKey)?;
        let signature: [u8; 64] =
            request.signature.as_slice().try_into().map_err(|_| AdminAuthError::Malformed(SIGNATURE_HEADER))?;
        let bytes = admin_request_bytes(
            &self.network,
            request.node,
            &request.method,
            &request.path,
            request.time_ms,
            &request.body,
        );
        known.verify(&bytes, &Signature::from_bytes(&signature)).map_err(|_| AdminAuthError::BadSignature)?;
        let command = command_of(&request.path, &request.body).map_err(AdminAuthError::Mismatch)?;
        if command != request.command {
            return Err(AdminAuthError::Mismatch(format!("{:?} against {:?}", request.command, command)));
        }
        if !command.needs_leader() && request.node != executing {
            return Err(AdminAuthError::WrongNode { signed_for: request.node, executing });
        }
        Ok(*blake3::hash(&bytes).as_bytes())
    }
}

/// The gate a coordinator installs on its node: [`AdminAuth::check`] with this node's keys and
/// clock, then the request's hash recorded in the ledger through the coordinator's outbox.
pub struct AdminAuthority {
    pub auth: AdminAuth,
    pub outbox: CoordinatorOutbox,
}

impl AdminGate for AdminAuthority {
    fn admit<'a>(&'a self, request: &'a SignedAdmin, executing: u64) -> AdmitFuture<'a> {
        Box::pin(async move {
            let hash = self.auth.check(request, executing, self.outbox.node().clock().now_ms())?;
            let record = AuthorizeAdmin { request: hash, expires_ms: request.time_ms + MAX_ADMIN_SKEW_MS };
            let submitted = self.outbox.submit(Message::AuthorizeAdmin(record)).await?;
            match submitted.rejection() {
                None => Ok(()),
                Some("admin_replay") => Err(AdminAuthError::Replay.into()),
                Some("admin_stale") => Err(AdminAuthError::Stale.into()),
                Some(code) => Err(ClusterError::Raft(format!("the admin request could not be recorded: {code}"))),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: [(String, String); 3]) -> impl Fn(&str) -> Option<String> {
        move |name| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    }

    fn request(signed: [(String, String); 3], node: u64, path: &str, body: &[u8]) -> SignedAdmin {
        signed_request(node, "POST", path, body, headers(signed)).unwrap()
    }

    #[test]
    fn only_a_listed_key_signing_this_request_for_this_node_now_passes() {
        let admin = SigningKey::from_bytes(&[7; 32]);
        let other = SigningKey::from_bytes(&[8; 32]);
        let auth = AdminAuth::new(&[hex(admin.verifying_key().as_bytes())], "net-a").unwrap();
        let now = 1_000_000;
        let (path, body) = ("/v1/admin/remove", br#"{"id":2}"#.as_slice());
        let signed = sign(&admin, "net-a", 1, "POST", path, now, body);

        let unsigned = signed_request(1, "POST", path, body, |_| None).unwrap_err();
        assert_eq!(unsigned, AdminAuthError::Unsigned);
        let good = request(signed.clone(), 1, path, body);
        assert!(auth.check(&good, 0, now).is_ok(), "a cluster command may run on the leader it was forwarded to");
        let mut wrong_body = good.clone();
        wrong_body.body = br#"{"id":0}"#.to_vec();
        wrong_body.command = AdminCommand::Remove { id: 0 };
        assert_eq!(auth.check(&wrong_body, 0, now), Err(AdminAuthError::BadSignature));
        let mut lying = good.clone();
        lying.command = AdminCommand::Remove { id: 0 };
        assert!(matches!(auth.check(&lying, 0, now), Err(AdminAuthError::Mismatch(_))), "the command must match");
        let mut other_node = good.clone();
        other_node.node = 2;
        assert_eq!(auth.check(&other_node, 0, now), Err(AdminAuthError::BadSignature), "bound to the node addressed");
        assert_eq!(auth.check(&good, 0, now + MAX_ADMIN_SKEW_MS + 1), Err(AdminAuthError::Stale));
        let other_network = request(sign(&admin, "net-b", 1, "POST", path, now, body), 1, path, body);
        assert_eq!(auth.check(&other_network, 0, now), Err(AdminAuthError::BadSignature));
        let stranger = request(sign(&other, "net-a", 1, "POST", path, now, body), 1, path, body);
        assert_eq!(auth.check(&stranger, 0, now), Err(AdminAuthError::UnknownKey));
    }

    #[test]
    fn a_snapshot_runs_only_on_the_node_it_was_signed_for() {
        let admin = SigningKey::from_bytes(&[7; 32]);
        let auth = AdminAuth::new(&[hex(admin.verifying_key().as_bytes())], "net").unwrap();
        let path = "/v1/admin/snapshot";
        let signed = request(sign(&admin, "net", 1, "POST", path, 5, b""), 1, path, b"");
        assert!(auth.check(&signed, 1, 5).is_ok());
        assert_eq!(auth.check(&signed, 2, 5), Err(AdminAuthError::WrongNode { signed_for: 1, executing: 2 }));
    }

    #[test]
    fn no_keys_refuse_to_start_and_bad_keys_are_named() {
        assert!(AdminAuth::new(&[], "net").unwrap_err().to_string().contains("admin_keys is empty"));
        assert!(AdminAuth::new(&["zz".into()], "net").is_err());
    }
}
