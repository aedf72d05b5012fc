//! A coordinator's keys and the files that hold them.
//!
//! One 32-byte secret seed per coordinator, stored as hex in a key file readable only by its
//! owner. The ed25519 signing key (entries, checkpoint signatures, SPEC 6) is the seed itself;
//! the VRF key (allocations, SPEC 5.3) is derived from it under its own domain, so one file is
//! all an operator backs up.

use crate::ClusterError;
use deai_protocol::hash::hash_parts;
use deai_protocol::params::CoordinatorInfo;
use deai_protocol::types::ParticipantId;
use deai_protocol::vrf::VrfSecret;
use ed25519_dalek::SigningKey;
use std::path::Path;

/// A coordinator's signing and VRF keys.
pub struct CoordinatorIdentity {
    pub signing: SigningKey,
    pub vrf: VrfSecret,
    seed: [u8; 32],
}

impl CoordinatorIdentity {
    /// Derives both keys from `seed`.
    pub fn from_seed(seed: [u8; 32]) -> Self {
        let vrf = VrfSecret::from_seed(hash_parts("deai-coordinator-vrf-key", &[&seed]));
        CoordinatorIdentity { signing: SigningKey::from_bytes(&seed), vrf, seed }
    }

    /// The public part, as a genesis lists it.
    pub fn info(&self) -> CoordinatorInfo {
        CoordinatorInfo { id: self.id(), vrf_key: self.vrf.public() }
    }

    pub fn id(&self) -> ParticipantId {
        ParticipantId(self.signing.verifying_key().to_bytes())
    }

    /// Reads a key file (`deai_api::key_file`: 64 hex digits, white space around them ignored).
    pub fn load(path: &Path) -> Result<Self, ClusterError> {
        let seed = deai_api::key_file::load_seed(path).map_err(|e| ClusterError::Config(e.to_string()))?;
        Ok(Self::from_seed(seed))
    }

    /// Writes the key file, readable by its owner only; refuses to overwrite an existing one.
    pub fn save(&self, path: &Path) -> Result<(), ClusterError> {
        deai_api::key_file::save_seed(path, &self.seed).map_err(|e| ClusterError::Config(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_key_loads_to_the_same_identity_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.key");
        let identity = CoordinatorIdentity::from_seed([7; 32]);
        identity.save(&path).unwrap();
        let loaded = CoordinatorIdentity::load(&path).unwrap();
        assert_eq!(loaded.info(), identity.info());
        assert!(identity.save(&path).is_err(), "an existing key is never overwritten");
        std::fs::write(&path, "abc").unwrap();
        let err = CoordinatorIdentity::load(&path).err().unwrap();
        assert!(err.to_string().contains("64 hex digits") && err.to_string().contains("c.key"), "{err}");
        std::fs::write(&path, "zz".repeat(32)).unwrap();
        assert!(CoordinatorIdentity::load(&path).err().unwrap().to_string().contains("not hex"));
    }
}
