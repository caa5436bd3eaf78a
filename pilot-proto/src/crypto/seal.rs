//! AES-256-GCM sealing and opening with the v0.5 nonce layout: a 4-byte random prefix chosen
//! per session, then a 64-bit big-endian counter (`docs/design/tunnel.md#nonces`).
//!
//! Sealing and opening work in place on caller buffers. The nonce counter never repeats: a
//! [`NonceSequence`] refuses to hand out a nonce once its limit is reached, and the caller
//! must then re-key.

use ring::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce as AeadNonce, UnboundKey};

use super::keys::TunnelKey;
use crate::wire::tunnel::{Nonce, SEALED_HEADER_LEN, TAG_LEN, sealed_header};

/// The largest counter a sequence hands out when no tighter limit is configured.
pub const MAX_COUNTER: u64 = u64::MAX;

/// The sealed frame could not be opened: wrong key, tampered bytes, or a forged tag.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("sealed frame failed authentication")]
#[non_exhaustive]
pub struct OpenError;

/// The nonce counter reached its limit; sealing again under this key would risk reuse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("nonce counter exhausted after {limit} frames; re-key before sending")]
#[non_exhaustive]
pub struct NonceExhausted {
    /// The last counter value that was allowed.
    pub limit: u64,
}

// Limitation: ring keeps the expanded AES key schedule inside `LessSafeKey` and does not wipe it
// on drop; only the 32-byte `TunnelKey` this crate holds is zeroized.
/// An AES-256-GCM key for one tunnel session (v0.5 uses the same key in both directions).
#[derive(Clone)]
pub struct SessionCipher {
    key: LessSafeKey,
}

impl SessionCipher {
    /// Builds the cipher from a derived key.
    pub fn new(key: &TunnelKey) -> Self {
        // A 32-byte key always fits AES-256; `new` only fails on a wrong key length.
        let Ok(unbound) = UnboundKey::new(&AES_256_GCM, key.as_bytes()) else {
            unreachable!("AES-256 key is 32 bytes by construction")
        };
        Self {
            key: LessSafeKey::new(unbound),
        }
    }

    /// Writes a whole PILS frame for `packet` into `out` (cleared first): header, ciphertext,
    /// tag. Reuses `out`'s capacity, so steady-state sealing does not allocate.
    pub fn seal_frame(&self, sender: u32, nonce: Nonce, packet: &[u8], out: &mut Vec<u8>) {
        out.clear();
        out.extend_from_slice(&sealed_header(sender, nonce));
        out.extend_from_slice(packet);
        let tag = self.seal_in_place(nonce, &mut out[SEALED_HEADER_LEN..]);
        out.extend_from_slice(&tag);
    }

    /// Encrypts `in_out` in place and returns the tag. No additional authenticated data.
    pub fn seal_in_place(&self, nonce: Nonce, in_out: &mut [u8]) -> [u8; TAG_LEN] {
        let nonce = AeadNonce::assume_unique_for_key(nonce.to_bytes());
        // ring only fails for inputs beyond GCM's 64 GiB limit; a UDP packet is far below it.
        match self
            .key
            .seal_in_place_separate_tag(nonce, Aad::empty(), in_out)
        {
            Ok(tag) => {
                let mut out = [0u8; TAG_LEN];
                out.copy_from_slice(tag.as_ref());
                out
            }
            Err(_) => unreachable!("a datagram is below the AES-GCM length limit"),
        }
    }

    /// Decrypts ciphertext-plus-tag in place and returns the plaintext part. The tag is
    /// checked in constant time by ring. On failure the buffer content is unspecified.
    ///
    /// # Errors
    /// [`OpenError`] when authentication fails.
    pub fn open_in_place<'a>(
        &self,
        nonce: Nonce,
        sealed: &'a mut [u8],
    ) -> Result<&'a mut [u8], OpenError> {
        let nonce = AeadNonce::assume_unique_for_key(nonce.to_bytes());
        self.key
            .open_in_place(nonce, Aad::empty(), sealed)
            .map_err(|_| OpenError)
    }
}

impl std::fmt::Debug for SessionCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionCipher(..)")
    }
}

/// Hands out the nonces of one sending session: `prefix ‖ BE64(counter)`, counters from 1 (as
/// v0.5 does) up to and including `limit`, never twice.
#[derive(Debug, Clone)]
pub struct NonceSequence {
    prefix: [u8; 4],
    next: u64,
    limit: u64,
}

impl NonceSequence {
    /// Starts a sequence. `limit` is the last counter it may hand out.
    pub fn new(prefix: [u8; 4], limit: u64) -> Self {
        Self {
            prefix,
            next: 1,
            limit,
        }
    }

    /// The next nonce.
    ///
    /// # Errors
    /// [`NonceExhausted`] once `limit` has been handed out; the sequence stays exhausted.
    pub fn next_nonce(&mut self) -> Result<Nonce, NonceExhausted> {
        if self.next > self.limit || self.next == 0 {
            return Err(NonceExhausted { limit: self.limit });
        }
        let counter = self.next;
        // Wrapping to 0 marks exhaustion when the limit is u64::MAX.
        self.next = self.next.wrapping_add(1);
        Ok(Nonce {
            prefix: self.prefix,
            counter,
        })
    }

    /// The prefix this sequence uses.
    pub fn prefix(&self) -> [u8; 4] {
        self.prefix
    }

    /// Whether another nonce is available.
    pub fn is_exhausted(&self) -> bool {
        self.next > self.limit || self.next == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TUNNEL_KEY: &str = "7fba3471bc8efe5a218c59651ad860926646b44c842bb2747ad11d976d60c50e";
    const P1: &str = "11010000000000000001000000000002c00003e800000000000000000200145ed874";

    fn cipher() -> SessionCipher {
        let key: [u8; 32] = hex::decode(TUNNEL_KEY).unwrap().try_into().unwrap();
        SessionCipher::new(&TunnelKey::from_bytes(key))
    }

    #[test]
    fn spec_pils_vector_seals_and_opens() {
        // dataplane.md §9.2: PILS carrying P1 from node 1, prefix a1a2a3a4, counter 1.
        let packet = hex::decode(P1).unwrap();
        let nonce = Nonce {
            prefix: [0xa1, 0xa2, 0xa3, 0xa4],
            counter: 1,
        };
        let mut frame = Vec::new();
        cipher().seal_frame(1, nonce, &packet, &mut frame);
        assert_eq!(
            hex::encode(&frame),
            concat!(
                "50494c5300000001a1a2a3a40000000000000001d52fce1fb819d552c48b1e34f59bd670",
                "10a58a5287c2bdf7f21e7fad6efe0761f75ac91446eec564eaee12fac147950aa682"
            )
        );
        let opened = cipher()
            .open_in_place(nonce, &mut frame[SEALED_HEADER_LEN..])
            .unwrap();
        assert_eq!(opened, &packet[..]);
    }

    #[test]
    fn tampering_fails_to_open() {
        let nonce = Nonce {
            prefix: [1; 4],
            counter: 9,
        };
        let mut frame = Vec::new();
        cipher().seal_frame(1, nonce, b"0123456789012345678901234567890123", &mut frame);
        for index in SEALED_HEADER_LEN..frame.len() {
            let mut copy = frame.clone();
            copy[index] ^= 0x01;
            let result = cipher().open_in_place(nonce, &mut copy[SEALED_HEADER_LEN..]);
            assert_eq!(result.err(), Some(OpenError), "byte {index}");
        }
        let wrong_nonce = Nonce {
            counter: 10,
            ..nonce
        };
        let result = cipher().open_in_place(wrong_nonce, &mut frame[SEALED_HEADER_LEN..]);
        assert_eq!(result.err(), Some(OpenError));
    }

    #[test]
    fn nonce_sequence_stops_at_limit() {
        let mut sequence = NonceSequence::new([9; 4], 3);
        let counters: Vec<u64> = (0..3)
            .map(|_| sequence.next_nonce().unwrap().counter)
            .collect();
        assert_eq!(counters, [1, 2, 3]);
        assert_eq!(sequence.next_nonce(), Err(NonceExhausted { limit: 3 }));
        assert!(sequence.is_exhausted());
    }

    #[test]
    fn nonce_sequence_never_wraps() {
        let mut sequence = NonceSequence {
            prefix: [0; 4],
            next: u64::MAX,
            limit: MAX_COUNTER,
        };
        assert_eq!(sequence.next_nonce().unwrap().counter, u64::MAX);
        assert!(sequence.next_nonce().is_err());
        assert!(sequence.next_nonce().is_err());
    }
}
