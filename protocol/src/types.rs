//! Plain identifiers and units shared by every rule (SPEC 3).

use bincode::{Decode, Encode};
use std::fmt;

/// Token amounts, in base units (SPEC 3).
pub type Amount = u128;
/// Ledger time in milliseconds, as stamped by the leader on each entry (SPEC 3).
pub type TimeMs = u64;
/// A 32-byte BLAKE3 digest.
pub type Digest = [u8; 32];

/// Parts per million, the unit of every ratio parameter.
pub const PPM: u128 = 1_000_000;

fn write_hex(f: &mut fmt::Formatter<'_>, bytes: &[u8]) -> fmt::Result {
    for b in bytes {
        write!(f, "{b:02x}")?;
    }
    Ok(())
}

/// Parses 64 hex digits into 32 bytes.
pub fn parse_hex32(s: &str) -> Option<[u8; 32]> {
    let s = s.as_bytes();
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

/// Orders 32-byte ids exactly as their bytes compare, four big-endian words at a time: ids are
/// the keys of every large map in the ledger, and this is cheaper than a byte-wise `memcmp`.
fn cmp_digest(a: &[u8; 32], b: &[u8; 32]) -> std::cmp::Ordering {
    for i in 0..4 {
        let x = u64::from_be_bytes(a[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        let y = u64::from_be_bytes(b[i * 8..i * 8 + 8].try_into().expect("8 bytes"));
        if x != y {
            return x.cmp(&y);
        }
    }
    std::cmp::Ordering::Equal
}

macro_rules! digest_order {
    ($t:ty) => {
        impl Ord for $t {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                cmp_digest(&self.0, &other.0)
            }
        }
        impl PartialOrd for $t {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
    };
}

/// A participant (client, miner or coordinator): its ed25519 public key (SPEC 3).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub struct ParticipantId(pub [u8; 32]);
digest_order!(ParticipantId);

impl fmt::Display for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}
impl fmt::Debug for ParticipantId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ParticipantId(")?;
        write_hex(f, &self.0[..6])?;
        f.write_str("..)")
    }
}

/// An order's id: the hash of the signed envelope that placed it (SPEC 4).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Encode, Decode)]
pub struct OrderId(pub Digest);
digest_order!(OrderId);

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}
impl fmt::Debug for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OrderId(")?;
        write_hex(f, &self.0[..6])?;
        f.write_str("..)")
    }
}

/// A stakeable asset. [`AssetId::NATIVE`] is the network's own token; every other asset is
/// valued in native units by a governance-set price (SPEC 5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct AssetId(pub u32);

impl AssetId {
    pub const NATIVE: AssetId = AssetId(0);
    pub fn is_native(self) -> bool {
        self == Self::NATIVE
    }
}

/// Names a network so that a message signed for one network is never valid on another.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub struct NetworkId(pub String);

impl NetworkId {
    /// Longest accepted network name, in bytes.
    pub const MAX_LEN_BYTES: usize = 32;
}

/// A service name from the governance service list, e.g. `text-generation`.
pub type ServiceName = String;
/// Longest accepted service name, in bytes.
pub const MAX_SERVICE_NAME_BYTES: usize = 64;

/// A client's rating of a served order (paper eq. 2: Good 1, Fair 0, Bad -1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Encode, Decode)]
pub enum Rating {
    Bad,
    Fair,
    Good,
}

impl Rating {
    pub fn score(self) -> i64 {
        match self {
            Rating::Bad => -1,
            Rating::Fair => 0,
            Rating::Good => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_order_is_byte_order() {
        let mut ids: Vec<[u8; 32]> = (0u8..=255)
            .map(|i| {
                let mut b = [i.wrapping_mul(37); 32];
                b[i as usize % 32] = i;
                b[31] = 255 - i;
                b
            })
            .collect();
        ids.push([0; 32]);
        ids.push([255; 32]);
        for a in &ids {
            for b in &ids {
                assert_eq!(ParticipantId(*a).cmp(&ParticipantId(*b)), a.cmp(b));
                assert_eq!(OrderId(*a).cmp(&OrderId(*b)), a.cmp(b));
            }
        }
    }
}
