//! The bytes a participant or an admin signs for requests that are not ledger entries, and the
//! headers that carry the signatures. Both sides (the signer in the SDK or CLI, the verifier in
//! the coordinator or miner) build the bytes here, so they cannot drift apart.

use deai_protocol::types::NetworkId;

/// Headers of a signed miner session request: the time of asking and the signature.
pub const SESSION_TIME_HEADER: &str = "x-deai-session-time-ms";
pub const SESSION_SIGNATURE_HEADER: &str = "x-deai-session-signature";

/// Headers of a signed output request (client to miner): the time of asking and the signature.
pub const OUTPUT_TIME_HEADER: &str = "x-deai-time-ms";
pub const OUTPUT_SIGNATURE_HEADER: &str = "x-deai-signature";

/// Headers of a signed admin request.
pub const ADMIN_KEY_HEADER: &str = "x-deai-admin-key";
pub const ADMIN_TIME_HEADER: &str = "x-deai-time-ms";
pub const ADMIN_SIGNATURE_HEADER: &str = "x-deai-signature";

/// What a miner signs to open its assignment session: the network, the miner, the time of
/// asking and the length asked for. A coordinator takes it within its skew bound of its clock,
/// only with a time later than the last session it opened for that miner.
pub fn session_request_bytes(network: &NetworkId, miner: &[u8; 32], time_ms: u64, max_ms: u64) -> Vec<u8> {
    let mut bytes = b"deai-miner-session/v1\0".to_vec();
    bytes.extend_from_slice(&(network.0.len() as u64).to_le_bytes());
    bytes.extend_from_slice(network.0.as_bytes());
    bytes.extend_from_slice(miner);
    bytes.extend_from_slice(&time_ms.to_le_bytes());
    bytes.extend_from_slice(&max_ms.to_le_bytes());
    bytes
}

/// What a client signs to fetch an order's output from the miner (SPEC 5.8: outputs go to the
/// requesting client only).
pub fn output_request_bytes(network: &NetworkId, order: &[u8; 32], time_ms: u64) -> Vec<u8> {
    let mut bytes = b"deai-output-request".to_vec();
    bytes.extend_from_slice(network.0.as_bytes());
    bytes.extend_from_slice(order);
    bytes.extend_from_slice(&time_ms.to_le_bytes());
    bytes
}

/// What an admin signature covers: the network, the node addressed, method, path, time and a
/// hash of the body, so that one signature is good for one request to one node.
pub fn admin_request_bytes(network: &str, node: u64, method: &str, path: &str, time_ms: u64, body: &[u8]) -> Vec<u8> {
    let mut bytes = b"deai-admin-request/v2\0".to_vec();
    for part in [network.as_bytes(), method.as_bytes(), path.as_bytes()] {
        bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
        bytes.extend_from_slice(part);
    }
    bytes.extend_from_slice(&node.to_le_bytes());
    bytes.extend_from_slice(&time_ms.to_le_bytes());
    bytes.extend_from_slice(blake3::hash(body).as_bytes());
    bytes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_field_changes_what_is_signed() {
        let net = NetworkId("n".into());
        let base = session_request_bytes(&net, &[1; 32], 5, 6);
        assert_ne!(base, session_request_bytes(&NetworkId("m".into()), &[1; 32], 5, 6));
        assert_ne!(base, session_request_bytes(&net, &[2; 32], 5, 6));
        assert_ne!(base, session_request_bytes(&net, &[1; 32], 7, 6));
        assert_ne!(base, session_request_bytes(&net, &[1; 32], 5, 7));
        let admin = admin_request_bytes("n", 1, "POST", "/v1/admin/remove", 9, b"{}");
        assert_ne!(admin, admin_request_bytes("n", 2, "POST", "/v1/admin/remove", 9, b"{}"));
        assert_ne!(admin, admin_request_bytes("n", 1, "POST", "/v1/admin/promote", 9, b"{}"));
        assert_ne!(admin, admin_request_bytes("n", 1, "POST", "/v1/admin/remove", 9, b"{\"id\":1}"));
        // Length prefixes: moving a byte between fields changes the bytes.
        assert_ne!(admin_request_bytes("ab", 1, "c", "/", 9, b""), admin_request_bytes("a", 1, "bc", "/", 9, b""));
    }
}
