//! The node's identity on disk, in the v0.5 identity file format (`pilot_proto::identity`):
//! loaded if present (its permission bits checked), else created atomically with mode 0600
//! (temporary file, fsync, rename, fsync of the directory), so a crash leaves either no file or
//! a whole one.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::SigningKey;
use pilot_proto::identity::{Identity, check_file_mode};
use ring::rand::SecureRandom as _;
use zeroize::Zeroizing;

use crate::error::{MioError, Result};

/// 32 bytes from the operating system's random source.
pub(crate) fn random_bytes() -> Result<[u8; 32]> {
    let mut bytes = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| MioError::Random)?;
    Ok(bytes)
}

/// A fresh identity that is never written anywhere.
pub(crate) fn ephemeral() -> Result<SigningKey> {
    let seed = Zeroizing::new(random_bytes()?);
    Ok(SigningKey::from_bytes(&seed))
}

/// Loads the identity at `path`, creating it when the file does not exist.
pub(crate) fn load_or_create(path: &Path) -> Result<SigningKey> {
    match fs::read_to_string(path) {
        Ok(text) => load(path, &Zeroizing::new(text)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => create(path),
        Err(e) => Err(fail(path, e.to_string())),
    }
}

fn fail(path: &Path, reason: String) -> MioError {
    MioError::Identity {
        path: path.to_owned(),
        reason,
    }
}

fn load(path: &Path, text: &str) -> Result<SigningKey> {
    let meta = fs::metadata(path).map_err(|e| fail(path, e.to_string()))?;
    check_file_mode(meta.mode()).map_err(|e| fail(path, e.to_string()))?;

    // `from_file_json` checks that the two keys belong together; the seed is then read back.
    Identity::from_file_json(text).map_err(|e| fail(path, e.to_string()))?;
    let value: serde_json::Value =
        serde_json::from_str(text).map_err(|e| fail(path, e.to_string()))?;
    let private = value["private_key"].as_str().unwrap_or_default();
    let bytes = Zeroizing::new(
        BASE64
            .decode(private)
            .map_err(|e| fail(path, e.to_string()))?,
    );
    let seed: Zeroizing<[u8; 32]> = Zeroizing::new(
        bytes
            .get(..32)
            .and_then(|s| s.try_into().ok())
            .ok_or_else(|| fail(path, "private key too short".into()))?,
    );
    Ok(SigningKey::from_bytes(&seed))
}

fn create(path: &Path) -> Result<SigningKey> {
    let seed = Zeroizing::new(random_bytes()?);
    let text = Identity::from_seed(&seed).to_file_json();
    write_atomically(path, text.as_bytes()).map_err(|e| fail(path, e.to_string()))?;
    tracing::info!(path = %path.display(), "created a new identity");
    Ok(SigningKey::from_bytes(&seed))
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    fs::create_dir_all(dir)?;
    let tmp = temp_path(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = file.write_all(bytes).and_then(|()| file.sync_all());
    if let Err(e) = written.and_then(|()| fs::rename(&tmp, path)) {
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    File::open(dir)?.sync_all()
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_owned();
    name.push(format!(".tmp.{}", std::process::id()));
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_identity_is_private_and_reloads_to_the_same_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("identity.json");
        let first = load_or_create(&path).expect("create");
        let mode = fs::metadata(&path).expect("meta").mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = load_or_create(&path).expect("load");
        assert_eq!(first.to_bytes(), again.to_bytes());
    }

    #[test]
    fn corrupt_or_open_identity_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("identity.json");
        fs::write(&path, "{not json").expect("write");
        fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o600))
            .expect("chmod");
        assert!(matches!(
            load_or_create(&path),
            Err(MioError::Identity { .. })
        ));
        assert_eq!(fs::read_to_string(&path).expect("read"), "{not json");

        load_or_create(&dir.path().join("ok.json")).expect("create");
        let ok = dir.path().join("ok.json");
        fs::set_permissions(&ok, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .expect("chmod");
        assert!(matches!(
            load_or_create(&ok),
            Err(MioError::Identity { .. })
        ));
    }
}
