//! Hex, as every id, hash and byte string in the API is written: lower case out, either case in.

pub fn hex(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

/// `None` for an odd length or a non-hex digit.
pub fn unhex(text: &str) -> Option<Vec<u8>> {
    hex::decode(text).ok()
}

/// Exactly 64 hex digits.
pub fn unhex32(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

/// `#[serde(with = "deai_api::hex::bytes")]` for a `Vec<u8>` written as hex.
pub mod bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::hex(value))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::unhex(&text).ok_or_else(|| serde::de::Error::custom("not hex"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        assert_eq!(hex(&[0xab, 0x01]), "ab01");
        assert_eq!(unhex("AB01"), Some(vec![0xab, 0x01]));
        assert_eq!(unhex("abc"), None);
        assert_eq!(unhex("zz"), None);
        assert_eq!(unhex32(&"11".repeat(32)), Some([0x11; 32]));
        assert_eq!(unhex32(&"11".repeat(31)), None);
    }
}
