//! Signed checkpoints, quorum certificates and divergence evidence (SPEC 6.3).

use super::{CheckpointState, Ctx, DivergenceEvidence, Effects, Event, Ledger, QuorumCertificate};
use super::{MAX_CHECKPOINTS_RETAINED, MAX_EVIDENCE_RETAINED};
use crate::envelope::verify_detached;
use crate::error::Rejection;
use crate::message::SignCheckpoint;
use crate::types::{Digest, NetworkId};
use std::collections::BTreeMap;

fn signing_bytes(what: &str, network: &NetworkId, number: u64, root: &Digest) -> Vec<u8> {
    let mut out = Vec::with_capacity(96);
    let domain = format!("deai/v1/{what}");
    out.extend_from_slice(&(domain.len() as u32).to_le_bytes());
    out.extend_from_slice(domain.as_bytes());
    out.extend_from_slice(&(network.0.len() as u32).to_le_bytes());
    out.extend_from_slice(network.0.as_bytes());
    out.extend_from_slice(&number.to_le_bytes());
    out.extend_from_slice(root);
    out
}

/// What a coordinator signs for checkpoint `(height, root)`; outside parties verify this.
pub fn checkpoint_signing_bytes(network: &NetworkId, height: u64, root: &Digest) -> Vec<u8> {
    signing_bytes("checkpoint", network, height, root)
}

/// What a coordinator signs to release an epoch's payouts on L2 (m-of-c, SPEC 6.4).
pub fn payouts_signing_bytes(network: &NetworkId, epoch: u64, payouts_root: &Digest) -> Vec<u8> {
    signing_bytes("payouts", network, epoch, payouts_root)
}

impl Ledger {
    /// Called when the height reaches a multiple of `checkpoint_every`.
    pub(super) fn record_checkpoint_height(&mut self) {
        self.checkpoints
            .insert(self.height, CheckpointState { root: self.root, signatures: BTreeMap::new(), certified: false });
        self.last_checkpoint_root = self.root;
        while self.checkpoints.len() > MAX_CHECKPOINTS_RETAINED {
            self.checkpoints.pop_first();
        }
    }

    /// A coordinator's checkpoint signature: counts toward a certificate if its root matches,
    /// otherwise is kept as divergence (or equivocation) evidence. Either way it is accepted: a
    /// validly signed wrong root is exactly the proof outside parties need.
    pub(super) fn sign_checkpoint(
        &mut self,
        ctx: &Ctx<'_>,
        m: SignCheckpoint,
        fx: &mut Effects,
    ) -> Result<(), Rejection> {
        let bytes = checkpoint_signing_bytes(&self.network_id, m.height, &m.root);
        if !verify_detached(&ctx.signer, &bytes, &m.signature) {
            return Err(Rejection::BadCheckpointSignature);
        }
        let quorum = self.quorum();
        let cp = self.checkpoints.get_mut(&m.height).ok_or(Rejection::UnknownCheckpoint { height: m.height })?;
        if m.root == cp.root {
            if cp.signatures.contains_key(&ctx.signer) {
                return Err(Rejection::AlreadySigned(ctx.signer));
            }
            cp.signatures.insert(ctx.signer, m.signature);
            // Signing the right root after a wrong one for the same height is equivocation too.
            for d in self.divergences.iter_mut().filter(|d| d.coordinator == ctx.signer && d.height == m.height) {
                d.equivocation = true;
            }
            if !cp.certified && cp.signatures.len() >= quorum {
                cp.certified = true;
                let certificate = QuorumCertificate {
                    height: m.height,
                    root: cp.root,
                    signatures: cp.signatures.iter().map(|(k, v)| (*k, *v)).collect(),
                };
                if self.last_certificate.as_ref().is_none_or(|c| c.height < m.height) {
                    self.last_certificate = Some(certificate);
                }
                fx.events.push(Event::CertificateFormed { height: m.height, root: m.root });
            }
            return Ok(());
        }
        let expected_root = cp.root;
        let signed_before = self.divergences.iter().any(|d| d.coordinator == ctx.signer && d.height == m.height);
        let equivocation = cp.signatures.contains_key(&ctx.signer) || signed_before;
        let known = self
            .divergences
            .iter()
            .any(|d| d.coordinator == ctx.signer && d.height == m.height && d.signed_root == m.root);
        if known {
            return Err(Rejection::AlreadySigned(ctx.signer));
        }
        self.divergences.push_back(DivergenceEvidence {
            coordinator: ctx.signer,
            height: m.height,
            signed_root: m.root,
            expected_root,
            signature: m.signature,
            equivocation,
        });
        while self.divergences.len() > MAX_EVIDENCE_RETAINED {
            self.divergences.pop_front();
        }
        self.divergence_count += 1;
        fx.events.push(Event::DivergenceRecorded { coordinator: ctx.signer, height: m.height });
        Ok(())
    }
}
