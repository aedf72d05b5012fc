//! The verifiable random function behind AVRF allocation (SPEC 5.3, paper eq. 5).
//!
//! We use schnorrkel's sr25519 VRF (maintained by Web3 Foundation, used by Polkadot's BABE).
//! Only verification runs inside [`crate::Ledger::apply`]; proving runs on the leader. The prover
//! here is derandomised: its nonce comes from the secret key and the input transcript (as
//! ed25519's does), which is sound for a single-signer DLEQ proof and keeps this crate free of
//! randomness.

use crate::hash::hash_fixed;
use crate::types::Digest;
use schnorrkel::vrf::{VRFPreOut, VRFProof};
use schnorrkel::{signing_context, ExpansionMode, MiniSecretKey, PublicKey};

const VRF_CONTEXT: &[u8] = b"deai/v1/vrf";
const VRF_OUTPUT_CONTEXT: &[u8] = b"deai/v1/vrf-output";

/// A coordinator's VRF public key (sr25519, 32 bytes).
pub type VrfPublicKey = [u8; 32];

/// What the leader puts in an `Allocate` entry: the VRF pre-output and its proof.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct VrfProofBytes {
    pub pre_output: [u8; 32],
    pub proof: [u8; 64],
}

/// The VRF input for one allocation batch: `H(hash of the batch's order ids, previous
/// checkpoint root)` (SPEC 5.3).
pub fn allocation_input(batch_hash: &Digest, previous_checkpoint_root: &Digest) -> Digest {
    hash_fixed("vrf-input", &[batch_hash, previous_checkpoint_root])
}

/// Verifies `proof` for `input` under `public`, returning the 32-byte VRF output.
pub fn verify(public: &VrfPublicKey, input: &Digest, proof: &VrfProofBytes) -> Option<Digest> {
    let public = PublicKey::from_bytes(public).ok()?;
    let pre = VRFPreOut::from_bytes(&proof.pre_output).ok()?;
    let proof = VRFProof::from_bytes(&proof.proof).ok()?;
    let ctx = signing_context(VRF_CONTEXT);
    let (inout, _) = public.vrf_verify(ctx.bytes(input), &pre, &proof).ok()?;
    Some(inout.make_bytes::<[u8; 32]>(VRF_OUTPUT_CONTEXT))
}

/// `u_i`: the first 8 bytes (little-endian) of `H(vrf_output || i as u32 LE)` (SPEC 5.3).
pub fn draw(vrf_output: &Digest, i: u32) -> u64 {
    let h = hash_fixed("vrf-draw", &[vrf_output, &i.to_le_bytes()]);
    u64::from_le_bytes(h[..8].try_into().expect("8 bytes"))
}

/// A coordinator's VRF secret, held by the node that proves allocations.
pub struct VrfSecret {
    keypair: schnorrkel::Keypair,
}

impl VrfSecret {
    /// Derives the keypair from a 32-byte seed.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let mini = MiniSecretKey::from_bytes(&seed).expect("any 32 bytes are a mini secret key");
        VrfSecret { keypair: mini.expand_to_keypair(ExpansionMode::Ed25519) }
    }

    pub fn public(&self) -> VrfPublicKey {
        self.keypair.public.to_bytes()
    }

    /// Evaluates the VRF on `input`: returns the output and the proof.
    pub fn prove(&self, input: &Digest) -> (Digest, VrfProofBytes) {
        let ctx = signing_context(VRF_CONTEXT);
        // The proof's nonce is drawn from the extra transcript, so that is where the entropy
        // source must be replaced (plain `vrf_sign` would draw from the OS).
        let extra = schnorrkel::context::attach_rng(merlin::Transcript::new(b"VRF"), NoExtraEntropy);
        let (inout, proof, _) = self.keypair.vrf_sign_extra(ctx.bytes(input), extra);
        (
            inout.make_bytes::<[u8; 32]>(VRF_OUTPUT_CONTEXT),
            VrfProofBytes { pre_output: inout.to_preout().to_bytes(), proof: proof.to_bytes() },
        )
    }
}

/// Adds nothing to the transcript's witness, which already mixes the secret nonce and input.
struct NoExtraEntropy;

impl rand_core::RngCore for NoExtraEntropy {
    fn next_u32(&mut self) -> u32 {
        0
    }
    fn next_u64(&mut self) -> u64 {
        0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        dest.fill(0)
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        dest.fill(0);
        Ok(())
    }
}
impl rand_core::CryptoRng for NoExtraEntropy {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proof_verifies_and_binds_key_and_input() {
        let sk = VrfSecret::from_seed([7; 32]);
        let input = [1u8; 32];
        let (out, proof) = sk.prove(&input);
        assert_eq!(verify(&sk.public(), &input, &proof), Some(out));
        assert_eq!(verify(&sk.public(), &[2u8; 32], &proof), None);
        let other = VrfSecret::from_seed([8; 32]);
        assert_eq!(verify(&other.public(), &input, &proof), None);
        let mut bent = proof.clone();
        bent.proof[5] ^= 1;
        assert_eq!(verify(&sk.public(), &input, &bent), None);
        // Deterministic prover: same input, same output and the same proof bytes.
        assert_eq!(sk.prove(&input), (out, proof.clone()));
    }

    #[test]
    fn draws_differ_per_index() {
        let out = [3u8; 32];
        assert_ne!(draw(&out, 0), draw(&out, 1));
    }
}
