//! Domain-separated BLAKE3 hashing and Merkle roots (SPEC 3: every hashed structure is
//! domain-separated as `"deai/v1/<what>"`).

use crate::types::Digest;

/// Hashes `parts` under the domain `"deai/v1/<what>"`. Each part is length-prefixed so that
/// different splits of the same bytes never collide.
pub fn hash_parts(what: &str, parts: &[&[u8]]) -> Digest {
    let mut h = domain_hasher(what);
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
    *h.finalize().as_bytes()
}

fn domain_hasher(what: &str) -> blake3::Hasher {
    const PREFIX: &[u8] = b"deai/v1/";
    let mut h = blake3::Hasher::new();
    h.update(&((PREFIX.len() + what.len()) as u32).to_le_bytes());
    h.update(PREFIX);
    h.update(what.as_bytes());
    h
}

/// Hashes parts whose lengths are fixed by their types (digests, integers) under the domain
/// `"deai/v1/<what>"`: `H(u32 LE domain length || domain || part_1 || part_2 || ...)`. No length
/// prefixes are needed because no part can vary in length; use [`hash_parts`] otherwise.
pub fn hash_fixed(what: &str, parts: &[&[u8]]) -> Digest {
    let mut h = domain_hasher(what);
    for p in parts {
        h.update(p);
    }
    *h.finalize().as_bytes()
}

/// Hashes the bincode encoding of `value` under the domain `"deai/v1/<what>"`, streaming the
/// encoding into the hasher: `H(u32 LE domain length || domain || bincode(value))`.
pub fn hash_encoded<T: bincode::Encode>(what: &str, value: &T) -> Digest {
    let mut h = domain_hasher(what);
    crate::codec::encode_into(value, &mut h);
    *h.finalize().as_bytes()
}

/// Merkle root over `leaves` (already hashed), domain-separated for leaves and inner nodes.
/// An odd node is carried up unchanged; the empty tree has the root `H("merkle-empty")`.
pub fn merkle_root(leaves: &[Digest]) -> Digest {
    if leaves.is_empty() {
        return hash_parts("merkle-empty", &[]);
    }
    let mut level: Vec<Digest> = leaves.iter().map(|l| hash_parts("merkle-leaf", &[l])).collect();
    while level.len() > 1 {
        let mut next = Vec::with_capacity(level.len().div_ceil(2));
        for pair in level.chunks(2) {
            match pair {
                [a, b] => next.push(hash_parts("merkle-node", &[a, b])),
                [a] => next.push(*a),
                _ => unreachable!("chunks(2) yields one or two items"),
            }
        }
        level = next;
    }
    level[0]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_separate_equal_bytes() {
        assert_ne!(hash_parts("a", &[b"x"]), hash_parts("b", &[b"x"]));
        assert_ne!(hash_parts("a", &[b"xy"]), hash_parts("a", &[b"x", b"y"]));
    }

    #[test]
    fn streamed_encoding_hashes_like_the_documented_framing() {
        let value = (7u64, String::from("x"), vec![1u8, 2, 3]);
        let mut framed = Vec::new();
        framed.extend_from_slice(&12u32.to_le_bytes());
        framed.extend_from_slice(b"deai/v1/test");
        framed.extend_from_slice(&crate::codec::to_bytes(&value));
        assert_eq!(hash_encoded("test", &value), *blake3::hash(&framed).as_bytes());
        framed.truncate(16);
        framed.extend_from_slice(&[1; 32]);
        framed.extend_from_slice(&[2; 8]);
        assert_eq!(hash_fixed("test", &[&[1; 32], &[2; 8]]), *blake3::hash(&framed).as_bytes());
    }

    #[test]
    fn merkle_root_depends_on_every_leaf_and_order() {
        let l: Vec<Digest> = (0u8..5).map(|i| [i; 32]).collect();
        let r = merkle_root(&l);
        let mut swapped = l.clone();
        swapped.swap(1, 2);
        assert_ne!(r, merkle_root(&swapped));
        let mut changed = l.clone();
        changed[4] = [9; 32];
        assert_ne!(r, merkle_root(&changed));
        assert_ne!(merkle_root(&l[..4]), r);
    }
}
