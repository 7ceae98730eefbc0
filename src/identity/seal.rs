//! Authenticated encryption for cookies and hand-off tokens:
//! ChaCha20-Poly1305 (aws-lc) under a key derived with HKDF-SHA256 from a
//! 32-byte secret and a purpose label. Output is base64url text.
//! Pure apart from the random nonce.

use aws_lc_rs::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, KeyType, Salt};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// A sealing key for one purpose.
pub struct Sealer {
    key: LessSafeKey,
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

struct Len32;
impl KeyType for Len32 {
    fn len(&self) -> usize {
        32
    }
}

/// A 32-byte key for `purpose` derived from `secret` (HKDF-SHA256), so one
/// secret serves several purposes without one key serving two.
pub fn derive_key(secret: &[u8; 32], purpose: &str) -> [u8; 32] {
    let salt = Salt::new(HKDF_SHA256, b"jetbridge/v1");
    let prk = salt.extract(secret);
    let mut out = [0u8; 32];
    let info = [purpose.as_bytes()];
    // HKDF-expand of 32 bytes from SHA-256 cannot fail (limit is 255 × 32).
    if let Ok(okm) = prk.expand(&info, Len32) {
        let _ = okm.fill(&mut out);
    }
    out
}

impl Sealer {
    /// Derives the key for `purpose` from `secret`.
    pub fn new(secret: &[u8; 32], purpose: &str) -> Self {
        let out = derive_key(secret, purpose);
        let unbound = UnboundKey::new(&CHACHA20_POLY1305, &out)
            .expect("32-byte key is valid for ChaCha20-Poly1305");
        Sealer {
            key: LessSafeKey::new(unbound),
        }
    }

    /// Encrypts and authenticates `plaintext`, bound to `aad`.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        super::random_bytes(&mut nonce);
        let mut buf = plaintext.to_vec();
        // Sealing only fails for absurd lengths (> 2^38 bytes).
        let _ = self.key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut buf,
        );
        let mut out = Vec::with_capacity(NONCE_LEN + buf.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&buf);
        URL_SAFE_NO_PAD.encode(out)
    }

    /// Decrypts text from [`Sealer::seal`]; `None` if it was tampered with,
    /// truncated, bound to another `aad`, or sealed under another key.
    pub fn open(&self, aad: &[u8], text: &str) -> Option<Vec<u8>> {
        let raw = URL_SAFE_NO_PAD.decode(text.trim()).ok()?;
        if raw.len() < NONCE_LEN + CHACHA20_POLY1305.tag_len() {
            return None;
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = ct.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(aad), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_text_opens_only_with_same_key_purpose_and_aad() {
        let s = Sealer::new(&[7; 32], "session");
        let t = s.seal(b"a.example.com", b"hello");
        assert_eq!(s.open(b"a.example.com", &t).unwrap(), b"hello");
        assert!(s.open(b"b.example.com", &t).is_none());
        assert!(
            Sealer::new(&[7; 32], "state")
                .open(b"a.example.com", &t)
                .is_none()
        );
        assert!(
            Sealer::new(&[8; 32], "session")
                .open(b"a.example.com", &t)
                .is_none()
        );
    }

    #[test]
    fn tampered_or_truncated_text_does_not_open() {
        let s = Sealer::new(&[1; 32], "x");
        let t = s.seal(b"", b"payload-payload");
        let mut bytes = t.clone().into_bytes();
        let i = bytes.len() / 2;
        bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
        assert!(s.open(b"", std::str::from_utf8(&bytes).unwrap()).is_none());
        assert!(s.open(b"", &t[..t.len() - 3]).is_none());
        assert!(s.open(b"", "").is_none());
        assert!(s.open(b"", "!!!").is_none());
    }
}
