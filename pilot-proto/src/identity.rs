//! Ed25519 node identities and the v0.5 identity file format, as pure encode/decode.
//!
//! The file is JSON, `{"private_key": b64(seed ‖ public), "public_key": b64(public)}`, 2-space
//! indented (controlplane.md §5), so an identity moves between the Go and Rust daemons. This
//! module never touches the file system: the drivers read and write the file (temp file, fsync,
//! rename, mode 0600) and use [`Identity::to_file_json`], [`Identity::from_file_json`] and
//! [`check_file_mode`] for the content. Secret bytes are zeroized on drop and never appear in
//! `Debug` output.
//!
//! # Limitations
//!
//! - serde_json and base64 may leave transient copies of the private key text on the heap
//!   while decoding; the buffers this module owns are wiped, theirs are not.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;
use zeroize::{Zeroize, Zeroizing};

use crate::rng::Rng;

/// File permission bits an identity file may have: owner read/write at most.
pub const FILE_MODE: u32 = 0o600;

/// Why identity file content, or the file itself, is unusable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum IdentityFileError {
    /// No file at the configured path (drivers map `NotFound` here).
    #[error("identity file is missing")]
    Missing,
    /// The file exists but could not be read.
    #[error("identity file is unreadable")]
    Unreadable(#[source] std::io::Error),
    /// Group or other users may access the file.
    #[error("identity file mode {mode:#o} gives access beyond its owner (want 0600)")]
    InsecureMode {
        /// The permission bits found.
        mode: u32,
    },
    /// The content is not the expected JSON object.
    #[error("identity file is not valid json")]
    Json(#[source] serde_json::Error),
    /// A key field is not standard base64.
    #[error("identity file field {field} is not valid base64")]
    Base64 {
        /// Which field.
        field: &'static str,
    },
    /// A key field decodes to the wrong number of bytes.
    #[error("identity file field {field} has {len} bytes, want {want}")]
    KeyLength {
        /// Which field.
        field: &'static str,
        /// Bytes found.
        len: usize,
        /// Bytes required.
        want: usize,
    },
    /// The public key does not belong to the private key.
    #[error("identity file public key does not match its private key")]
    KeyMismatch,
}

/// Why a base64 Ed25519 public key (as the registry sends it) is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PublicKeyError {
    /// Not standard base64.
    #[error("public key is not valid base64")]
    Base64,
    /// Not 32 bytes.
    #[error("public key has {0} bytes, want 32")]
    Length(usize),
    /// 32 bytes that are not an Ed25519 point.
    #[error("public key is not a valid ed25519 point")]
    InvalidPoint,
}

/// Decodes a registry-provided public key (standard base64 of 32 bytes), for
/// [`crate::tunnel::Tunnel::add_peer`].
///
/// # Errors
/// [`PublicKeyError`] when the text is not base64 of a valid 32-byte Ed25519 key.
pub fn decode_public_key(text: &str) -> Result<VerifyingKey, PublicKeyError> {
    let bytes = BASE64
        .decode(text.trim())
        .map_err(|_| PublicKeyError::Base64)?;
    let bytes: [u8; 32] = bytes
        .as_slice()
        .try_into()
        .map_err(|_| PublicKeyError::Length(bytes.len()))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| PublicKeyError::InvalidPoint)
}

/// A node's long-term Ed25519 identity. The secret is zeroized on drop.
#[derive(Clone)]
pub struct Identity {
    signing: SigningKey,
}

impl Identity {
    /// Draws a new identity from the seeded generator.
    pub fn generate(rng: &mut Rng) -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rng.fill(&mut seed[..]);
        Self::from_seed(&seed)
    }

    /// Builds an identity from its 32-byte Ed25519 seed (RFC 8032 private key).
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            signing: SigningKey::from_bytes(seed),
        }
    }

    /// The public key peers and the registry know this node by.
    pub fn verifying_key(&self) -> VerifyingKey {
        self.signing.verifying_key()
    }

    /// The public key's 32 bytes.
    pub fn public_key_bytes(&self) -> [u8; 32] {
        self.signing.verifying_key().to_bytes()
    }

    /// The public key in standard base64, as the registry and `info` show it.
    pub fn public_key_base64(&self) -> String {
        BASE64.encode(self.public_key_bytes())
    }

    /// Signs `message` (plain Ed25519, RFC 8032, deterministic).
    pub fn sign(&self, message: &[u8]) -> Signature {
        self.signing.sign(message)
    }

    /// Encodes the v0.5 identity file content. The returned string holds the secret and
    /// zeroizes itself on drop.
    pub fn to_file_json(&self) -> Zeroizing<String> {
        let keypair = Zeroizing::new(self.signing.to_keypair_bytes());
        let file = IdentityFile {
            private_key: BASE64.encode(&keypair[..]),
            public_key: self.public_key_base64(),
        };
        // Serialising two strings into JSON cannot fail.
        let Ok(text) = serde_json::to_string_pretty(&file) else {
            unreachable!("two string fields always serialise")
        };
        Zeroizing::new(text)
    }

    /// Decodes v0.5 identity file content and checks that its two keys belong together.
    ///
    /// # Errors
    /// [`IdentityFileError::Json`], [`IdentityFileError::Base64`],
    /// [`IdentityFileError::KeyLength`] or [`IdentityFileError::KeyMismatch`].
    pub fn from_file_json(text: &str) -> Result<Self, IdentityFileError> {
        // Limitation: serde_json's own intermediate buffers are not wiped.
        let file: IdentityFile = serde_json::from_str(text).map_err(IdentityFileError::Json)?;
        let private = decode_field("private_key", &file.private_key, 64)?;
        let public = decode_field("public_key", &file.public_key, 32)?;

        let mut seed = Zeroizing::new([0u8; 32]);
        seed.copy_from_slice(&private[..32]);
        let identity = Self::from_seed(&seed);

        // Go stores seed ‖ public; both copies of the public key must match the derived one.
        let derived = identity.public_key_bytes();
        let same_embedded = derived.ct_eq(&private[32..]);
        let same_field = derived.ct_eq(&public[..]);
        if !bool::from(same_embedded & same_field) {
            return Err(IdentityFileError::KeyMismatch);
        }
        Ok(identity)
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("public_key", &self.public_key_base64())
            .finish()
    }
}

/// Checks an identity file's permission bits (`st_mode`; file-type bits are ignored).
///
/// # Errors
/// [`IdentityFileError::InsecureMode`] when group or others have any access.
pub fn check_file_mode(mode: u32) -> Result<(), IdentityFileError> {
    let permissions = mode & 0o7777;
    if permissions & 0o077 != 0 {
        return Err(IdentityFileError::InsecureMode { mode: permissions });
    }
    Ok(())
}

/// The JSON shape of the v0.5 identity file, in Go's field order. The private key text is
/// wiped on drop.
#[derive(Serialize, Deserialize)]
struct IdentityFile {
    private_key: String,
    public_key: String,
}

impl Drop for IdentityFile {
    fn drop(&mut self) {
        self.private_key.zeroize();
    }
}

/// Decodes one base64 field into exactly `want` bytes, zeroizing the buffer on drop.
fn decode_field(
    field: &'static str,
    text: &str,
    want: usize,
) -> Result<Zeroizing<Vec<u8>>, IdentityFileError> {
    let mut bytes = BASE64
        .decode(text)
        .map_err(|_| IdentityFileError::Base64 { field })?;
    if bytes.len() != want {
        let len = bytes.len();
        bytes.zeroize();
        return Err(IdentityFileError::KeyLength { field, len, want });
    }
    Ok(Zeroizing::new(bytes))
}

#[cfg(test)]
mod tests {
    use ed25519_dalek::Verifier as _;

    use super::*;

    // RFC 8032 §7.1 test 1.
    const SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    fn rfc_identity() -> Identity {
        Identity::from_seed(&hex::decode(SEED).unwrap().try_into().unwrap())
    }

    #[test]
    fn rfc8032_public_key_and_signature() {
        let identity = rfc_identity();
        assert_eq!(hex::encode(identity.public_key_bytes()), PUBLIC);
        let signature = identity.sign(b"");
        assert_eq!(
            hex::encode(signature.to_bytes()),
            concat!(
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155",
                "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
            )
        );
        assert!(identity.verifying_key().verify(b"", &signature).is_ok());
    }

    #[test]
    fn file_round_trip_in_go_layout() {
        let identity = rfc_identity();
        let text = identity.to_file_json();
        assert!(
            text.starts_with(
                "{\n  \"private_key\": \"nWGxne/9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2DX"
            )
        );
        assert!(
            text.contains(
                "\n  \"public_key\": \"11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=\"\n}"
            )
        );
        let back = Identity::from_file_json(&text).unwrap();
        assert_eq!(back.public_key_bytes(), identity.public_key_bytes());
    }

    #[test]
    fn malformed_files_give_named_errors() {
        let good = rfc_identity().to_file_json();
        assert!(matches!(
            Identity::from_file_json("{"),
            Err(IdentityFileError::Json(_))
        ));
        let bad_b64 = good.replace("\"public_key\": \"", "\"public_key\": \"!");
        assert!(matches!(
            Identity::from_file_json(&bad_b64),
            Err(IdentityFileError::Base64 {
                field: "public_key"
            })
        ));
        let short = r#"{"private_key": "AAAA", "public_key": "AAAA"}"#;
        assert!(matches!(
            Identity::from_file_json(short),
            Err(IdentityFileError::KeyLength {
                field: "private_key",
                len: 3,
                want: 64
            })
        ));
        let other = Identity::from_seed(&[7; 32]).public_key_base64();
        let mismatched = good.replace(&rfc_identity().public_key_base64(), &other);
        assert!(matches!(
            Identity::from_file_json(&mismatched),
            Err(IdentityFileError::KeyMismatch)
        ));
    }

    #[test]
    fn registry_public_keys_decode() {
        let key = decode_public_key("11qYAYKxCrfVS/7TyWQHOg7hcvPapiMlrwIaaPcHURo=").unwrap();
        assert_eq!(hex::encode(key.as_bytes()), PUBLIC);
        assert_eq!(decode_public_key("!!").err(), Some(PublicKeyError::Base64));
        assert_eq!(
            decode_public_key("AAAA").err(),
            Some(PublicKeyError::Length(3))
        );
    }

    #[test]
    fn file_mode_check() {
        assert!(check_file_mode(0o100600).is_ok());
        assert!(check_file_mode(0o400).is_ok());
        assert!(matches!(
            check_file_mode(0o100644),
            Err(IdentityFileError::InsecureMode { mode: 0o644 })
        ));
        assert!(check_file_mode(0o601).is_err());
    }

    #[test]
    fn debug_hides_the_secret() {
        let text = format!("{:?}", rfc_identity());
        assert!(text.contains("11qYAYKx"), "{text}");
        assert!(!text.to_lowercase().contains("9d61b19d"), "{text}");
        assert!(!text.contains("nWGxne"), "{text}");
    }
}
