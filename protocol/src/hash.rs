//! Domain-separated BLAKE3 hashing and Merkle roots (SPEC 3: every hashed structure is
//! domain-separated as `"deai/v1/<what>"`).

use crate::types::Digest;

/// Hashes `parts` under the domain `"deai/v1/<what>"`. Each part is length-prefixed so that
/// different splits of the same bytes never collide.
pub fn hash_parts(what: &str, parts: &[&[u8]]) -> Digest {
    const PREFIX: &[u8] = b"deai/v1/";
    let mut h = blake3::Hasher::new();
    h.update(&((PREFIX.len() + what.len()) as u32).to_le_bytes());
    h.update(PREFIX);
    h.update(what.as_bytes());
    for p in parts {
        h.update(&(p.len() as u64).to_le_bytes());
        h.update(p);
    }
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
