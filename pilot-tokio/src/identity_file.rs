//! The identity file on disk: load it, or create it atomically (temp file, fsync, rename,
//! fsync of the directory) with mode 0600, so a crash at any point leaves either the old file or
//! the new one, never a torn one.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};

use ring::rand::SecureRandom as _;

use pilot_proto::identity::{Identity, IdentityFileError as FormatError};
use zeroize::Zeroizing;

/// Why the identity file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityFileError {
    /// Reading or writing failed.
    #[error("identity file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file exists but does not hold a valid identity; it is left untouched.
    #[error("identity file {path} is corrupt ({source}); move it away to create a new identity")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: FormatError,
    },
    /// The OS random source failed.
    #[error("could not get randomness from the operating system")]
    Random,
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> IdentityFileError + '_ {
    move |source| IdentityFileError::Io {
        path: path.to_owned(),
        source,
    }
}

/// 32 bytes from the OS random source.
pub fn random_seed() -> Result<[u8; 32], IdentityFileError> {
    let mut seed = [0u8; 32];
    ring::rand::SystemRandom::new()
        .fill(&mut seed)
        .map_err(|_| IdentityFileError::Random)?;
    Ok(seed)
}

/// An identity loaded from disk, with the seed the registry client signs with.
pub struct Loaded {
    /// The node identity.
    pub identity: Identity,
    /// Its Ed25519 seed (wiped on drop).
    pub seed: Zeroizing<[u8; 32]>,
    /// Whether the file was created now.
    pub created: bool,
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("identity", &self.identity)
            .field("created", &self.created)
            .finish()
    }
}

/// Loads the identity at `path`, creating a new one if the file does not exist.
pub fn load_or_create(path: &Path) -> Result<Loaded, IdentityFileError> {
    match fs::read_to_string(path) {
        Ok(text) => {
            let corrupt = |source| IdentityFileError::Corrupt {
                path: path.to_owned(),
                source,
            };
            let identity = Identity::from_file_json(&text).map_err(corrupt)?;
            let seed = seed_from_file(&text).map_err(corrupt)?;
            Ok(Loaded {
                identity,
                seed,
                created: false,
            })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let seed = Zeroizing::new(random_seed()?);
            let identity = Identity::from_seed(&seed);
            write_atomic(path, identity.to_file_json().as_bytes())?;
            Ok(Loaded {
                identity,
                seed,
                created: true,
            })
        }
        Err(e) => Err(io_err(path)(e)),
    }
}

/// The 32-byte seed at the front of the file's `private_key` (already validated by
/// `Identity::from_file_json`).
fn seed_from_file(text: &str) -> Result<Zeroizing<[u8; 32]>, FormatError> {
    use base64::Engine as _;
    #[derive(serde::Deserialize)]
    struct File {
        private_key: String,
    }
    let file: File = serde_json::from_str(text).map_err(FormatError::Json)?;
    let bytes = Zeroizing::new(
        base64::engine::general_purpose::STANDARD
            .decode(file.private_key)
            .unwrap_or_default(),
    );
    let mut seed = Zeroizing::new([0u8; 32]);
    if let Some(head) = bytes.get(..32) {
        seed.copy_from_slice(head);
    }
    Ok(seed)
}

/// Writes `bytes` to `path` atomically with mode 0600; creates the directory (0700) if needed.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), IdentityFileError> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or_else(|| Path::new("."));
    if !dir.exists() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700)).map_err(io_err(dir))?;
    }
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(io_err(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_then_load_gives_the_same_key_and_mode_0600() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("identity.json");
        let a = load_or_create(&path).expect("create");
        assert!(a.created);
        let b = load_or_create(&path).expect("load");
        assert!(!b.created);
        assert_eq!(a.identity.public_key_bytes(), b.identity.public_key_bytes());
        assert_eq!(*a.seed, *b.seed);
        let mode = fs::metadata(&path).expect("meta").permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    #[test]
    fn corrupt_file_is_a_clear_error_and_left_alone() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("identity.json");
        fs::write(&path, b"{not json").expect("write");
        let err = load_or_create(&path).expect_err("corrupt");
        assert!(err.to_string().contains("corrupt"), "{err}");
        assert_eq!(fs::read(&path).expect("read"), b"{not json");
    }
}
