//! Key files: one 32-byte ed25519 seed as 64 hex digits, readable by its owner only. Clients,
//! miners, admins and coordinators all keep their keys this way (a coordinator derives its VRF
//! key from the same seed).

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    #[error("key file {path}: {reason}")]
    Read { path: PathBuf, reason: String },
    #[error("key file {path} exists; a key file is never overwritten (choose another path)")]
    Exists { path: PathBuf },
    #[error("key file {path}: cannot write it: {reason}")]
    Write { path: PathBuf, reason: String },
}

/// Reads the seed in `path`: 64 hex digits, white space around them ignored.
pub fn load_seed(path: &Path) -> Result<[u8; 32], KeyFileError> {
    let bad = |reason: String| KeyFileError::Read { path: path.to_path_buf(), reason };
    let text = std::fs::read_to_string(path).map_err(|e| {
        bad(if e.kind() == std::io::ErrorKind::NotFound {
            "no such file (make one with `deai keygen --out <file>`)".to_string()
        } else {
            e.to_string()
        })
    })?;
    let text = text.trim();
    if text.len() != 64 {
        return Err(bad(format!("expected 64 hex digits, found {} characters", text.len())));
    }
    let mut seed = [0u8; 32];
    for (i, byte) in seed.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16)
            .map_err(|_| bad(format!("not hex at character {}", 2 * i)))?;
    }
    Ok(seed)
}

/// Writes `seed` to a new file at `path`, readable by its owner only.
pub fn save_seed(path: &Path, seed: &[u8; 32]) -> Result<(), KeyFileError> {
    use std::io::Write;
    let write_error = |e: std::io::Error| KeyFileError::Write { path: path.to_path_buf(), reason: e.to_string() };
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options.open(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            KeyFileError::Exists { path: path.to_path_buf() }
        } else {
            write_error(e)
        }
    })?;
    writeln!(file, "{}", crate::hex::hex(seed)).map_err(write_error)?;
    file.sync_all().map_err(write_error)
}

/// The signing key in `path`.
pub fn load_signing_key(path: &Path) -> Result<ed25519_dalek::SigningKey, KeyFileError> {
    load_seed(path).map(|seed| ed25519_dalek::SigningKey::from_bytes(&seed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_seed_loads_back_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.key");
        save_seed(&path, &[7; 32]).unwrap();
        assert_eq!(load_seed(&path).unwrap(), [7; 32]);
        assert!(matches!(save_seed(&path, &[8; 32]), Err(KeyFileError::Exists { .. })), "never overwritten");
        std::fs::write(&path, "abc").unwrap();
        let err = load_seed(&path).unwrap_err().to_string();
        assert!(err.contains("64 hex digits") && err.contains("c.key"), "{err}");
        std::fs::write(&path, "zz".repeat(32)).unwrap();
        assert!(load_seed(&path).unwrap_err().to_string().contains("not hex"));
        let missing = load_seed(&dir.path().join("none.key")).unwrap_err().to_string();
        assert!(missing.contains("deai keygen"), "{missing}");
    }
}
