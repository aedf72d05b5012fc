//! The one place that knows the byte format (SPEC 2): bincode 2.x behind a version byte and a
//! size limit. Decoding arbitrary bytes returns an error, never panics, and never allocates more
//! than the limit allows.

use crate::error::CodecError;
use bincode::{Decode, Encode};

/// First byte of every framed value. Bump it when any encoded type changes shape.
pub const CODEC_VERSION: u8 = 1;
/// Largest framed message (an envelope on the wire or in a log entry), in bytes.
pub const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// Largest snapshot accepted by [`decode_snapshot`], in bytes.
pub const MAX_SNAPSHOT_BYTES: usize = 8 * 1024 * 1024 * 1024;

/// Encoding has no limit (it only ever encodes our own values); limits guard decoding.
const ENCODE_CONFIG: bincode::config::Configuration = bincode::config::standard();

/// Plain bincode bytes of `value`, no version byte: used for hashing and for envelope bodies,
/// which are already covered by the envelope's framing.
pub fn to_bytes<T: Encode + ?Sized>(value: &T) -> Vec<u8> {
    // Encoding into a Vec cannot fail for our types: they hold no fallible Encode impls.
    bincode::encode_to_vec(value, ENCODE_CONFIG).expect("encoding into memory cannot fail")
}

/// Writes the same bytes as [`to_bytes`] into `writer` (a hasher, say) without a buffer.
pub fn encode_into<T: Encode, W: std::io::Write>(value: &T, writer: &mut W) {
    bincode::encode_into_std_write(value, writer, ENCODE_CONFIG).expect("our writers do not fail");
}

/// Same bytes as [`to_bytes`]; named for call sites that encode whole states.
pub fn to_bytes_unbounded<T: Encode>(value: &T) -> Vec<u8> {
    to_bytes(value)
}

/// Decodes plain bincode bytes made by [`to_bytes`]; every byte must be consumed.
pub fn from_bytes<T: Decode<()>>(bytes: &[u8]) -> Result<T, CodecError> {
    decode_bounded::<T, MAX_MESSAGE_BYTES>(bytes)
}

/// Decodes `bytes` as one `T`, refusing inputs over `LIMIT` bytes and trailing bytes; bincode's
/// own limit keeps any length prefix inside the input from allocating past `LIMIT`.
fn decode_bounded<T: Decode<()>, const LIMIT: usize>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > LIMIT {
        return Err(CodecError::TooLarge { size_bytes: bytes.len(), limit_bytes: LIMIT });
    }
    let config = bincode::config::standard().with_limit::<LIMIT>();
    let (value, used) = bincode::decode_from_slice(bytes, config).map_err(|e| CodecError::Invalid(e.to_string()))?;
    if used != bytes.len() {
        return Err(CodecError::TrailingBytes(bytes.len() - used));
    }
    Ok(value)
}

/// `[CODEC_VERSION] ++ bincode(value)`: the framing of everything sent or stored.
pub fn encode_framed<T: Encode + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(128);
    out.push(CODEC_VERSION);
    bincode::encode_into_std_write(value, &mut out, ENCODE_CONFIG).expect("encoding into memory cannot fail");
    out
}

/// Inverse of [`encode_framed`], bounded by [`MAX_MESSAGE_BYTES`].
pub fn decode_framed<T: Decode<()>>(bytes: &[u8]) -> Result<T, CodecError> {
    let body = check_version(bytes)?;
    from_bytes(body)
}

fn check_version(bytes: &[u8]) -> Result<&[u8], CodecError> {
    let (&version, body) = bytes.split_first().ok_or(CodecError::Empty)?;
    if version != CODEC_VERSION {
        return Err(CodecError::UnsupportedVersion { got: version, supported: CODEC_VERSION });
    }
    Ok(body)
}

/// Largest framed batch of entries (one replicated log command), in bytes.
pub const MAX_BATCH_BYTES: usize = 8 * 1024 * 1024;

/// Like [`decode_framed`], bounded by [`MAX_BATCH_BYTES`]: for a batch of entries in one log
/// command.
pub fn decode_framed_large<T: Decode<()>>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > MAX_BATCH_BYTES {
        return Err(CodecError::TooLarge { size_bytes: bytes.len(), limit_bytes: MAX_BATCH_BYTES });
    }
    decode_bounded::<T, MAX_BATCH_BYTES>(check_version(bytes)?)
}

/// Framed encoding for snapshots: the same bytes as [`encode_framed`], decoded with a larger limit.
pub fn encode_snapshot<T: Encode>(value: &T) -> Vec<u8> {
    encode_framed(value)
}

/// Inverse of [`encode_snapshot`], bounded by [`MAX_SNAPSHOT_BYTES`].
pub fn decode_snapshot<T: Decode<()>>(bytes: &[u8]) -> Result<T, CodecError> {
    if bytes.len() > MAX_SNAPSHOT_BYTES {
        return Err(CodecError::TooLarge { size_bytes: bytes.len(), limit_bytes: MAX_SNAPSHOT_BYTES });
    }
    decode_bounded::<T, MAX_SNAPSHOT_BYTES>(check_version(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framed_round_trip_and_version_check() {
        let v: (u64, String, Vec<u8>) = (7, "x".into(), vec![1, 2, 3]);
        let bytes = encode_framed(&v);
        assert_eq!(bytes[0], CODEC_VERSION);
        assert_eq!(decode_framed::<(u64, String, Vec<u8>)>(&bytes).unwrap(), v);
        let mut wrong = bytes.clone();
        wrong[0] = CODEC_VERSION + 1;
        assert!(matches!(decode_framed::<(u64, String, Vec<u8>)>(&wrong), Err(CodecError::UnsupportedVersion { .. })));
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert_eq!(decode_framed::<(u64, String, Vec<u8>)>(&trailing), Err(CodecError::TrailingBytes(1)));
        assert_eq!(decode_framed::<u64>(&[]), Err(CodecError::Empty));
    }

    #[test]
    fn huge_length_prefix_is_refused_without_allocating() {
        // A Vec<u8> claiming u64::MAX elements: varint 0xFF marker then 8 bytes.
        let mut bytes = vec![CODEC_VERSION, 0xFF];
        bytes.extend_from_slice(&u64::MAX.to_le_bytes());
        assert!(decode_framed::<Vec<u8>>(&bytes).is_err());
    }
}
