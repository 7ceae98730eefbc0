//! Signing keys: loading operator-supplied key material and deriving the
//! public JWK and its RFC 7638 `kid`.
//!
//! Accepted input (the `signing_key` setting or the bootstrap Secret's
//! `signing_key` value):
//! - PEM text with one or more blocks: SEC1 `EC PRIVATE KEY`, PKCS#8
//!   `PRIVATE KEY`; `EC PARAMETERS` blocks are skipped;
//! - base64 of any of those (Pomerium's `signing_key` is usually base64 PEM);
//! - base64 of a single DER key (SEC1 or PKCS#8).
//!
//! Only P-256 keys are accepted (the assertion is ES256). The first key signs;
//! all keys are published in the JWKS, so an operator rotates by prepending a
//! new key, waiting, then removing the old one.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use p256::SecretKey;
use p256::elliptic_curve::sec1::ToSec1Point;
use p256::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use sha2::{Digest, Sha256};
use std::fmt;

/// Errors from loading key material. Messages never contain key bytes.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("signing key is empty")]
    Empty,
    #[error("signing key block {index} ({label}): {reason}")]
    Block {
        index: usize,
        label: String,
        reason: String,
    },
    #[error("signing key: {0}")]
    Format(String),
    #[error(
        "signing key: no private key found (expected an EC PRIVATE KEY or PRIVATE KEY PEM block)"
    )]
    NoKeys,
}

type Result<T, E = KeyError> = std::result::Result<T, E>;

/// A non-fatal problem found while loading keys; the key still signs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyWarning {
    /// A SEC1 key whose PEM body is damaged after the private scalar, and
    /// was rebuilt from the scalar alone.
    #[error(
        "signing key block {index}: the PEM body is damaged after the private scalar; \
         the key was recovered from the scalar (kid {kid}). Re-encode it with \
         `jetbridge gen-secrets` or openssl to silence this warning"
    )]
    Recovered { index: usize, kid: String },
}

/// One P-256 signing key with its derived public parts.
#[derive(Clone)]
pub struct SigningKey {
    kid: String,
    x: String,
    y: String,
    encoding: jsonwebtoken::EncodingKey,
    decoding: jsonwebtoken::DecodingKey,
    /// Parsed once: parsing a PKCS#8 key costs as much as a signature.
    signer: std::sync::Arc<aws_lc_rs::signature::EcdsaKeyPair>,
    secret: SecretKey,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print private material.
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish()
    }
}

impl PartialEq for SigningKey {
    fn eq(&self, other: &Self) -> bool {
        self.kid == other.kid
    }
}

impl SigningKey {
    /// Builds a key from a P-256 secret.
    pub fn from_secret(secret: SecretKey) -> Result<Self> {
        let point = secret.public_key().to_sec1_point(false);
        let (Some(x), Some(y)) = (point.x(), point.y()) else {
            return Err(KeyError::Format("public key has no coordinates".into()));
        };
        let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let x = b64.encode(x);
        let y = b64.encode(y);
        let kid = thumbprint_p256(&x, &y);
        let der = secret
            .to_pkcs8_der()
            .map_err(|e| KeyError::Format(format!("cannot encode key: {e}")))?;
        let encoding = jsonwebtoken::EncodingKey::from_ec_der(der.as_bytes());
        let signer = aws_lc_rs::signature::EcdsaKeyPair::from_pkcs8(
            &aws_lc_rs::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            der.as_bytes(),
        )
        .map_err(|e| KeyError::Format(format!("cannot load signing key: {e}")))?;
        let decoding = jsonwebtoken::DecodingKey::from_ec_components(&x, &y)
            .map_err(|e| KeyError::Format(format!("cannot build verifying key: {e}")))?;
        Ok(SigningKey {
            kid,
            x,
            y,
            encoding,
            decoding,
            signer: std::sync::Arc::new(signer),
            secret,
        })
    }

    /// Generates a fresh random key.
    pub fn generate() -> Self {
        loop {
            let mut bytes = [0u8; 32];
            crate::identity::random_bytes(&mut bytes);
            if let Ok(secret) = SecretKey::from_slice(&bytes)
                && let Ok(key) = SigningKey::from_secret(secret)
            {
                return key;
            }
        }
    }

    /// Hex of the RFC 7638 SHA-256 JWK thumbprint.
    pub fn kid(&self) -> &str {
        &self.kid
    }
    /// Base64url of the public point's x coordinate.
    pub fn x(&self) -> &str {
        &self.x
    }
    /// Base64url of the public point's y coordinate.
    pub fn y(&self) -> &str {
        &self.y
    }
    /// The key used by `jsonwebtoken` to sign.
    pub fn encoding_key(&self) -> &jsonwebtoken::EncodingKey {
        &self.encoding
    }
    /// Signs `message` with ECDSA P-256 / SHA-256, fixed-size `r‖s` (the JWS ES256 form).
    pub fn sign_es256(&self, message: &[u8]) -> Result<Vec<u8>> {
        let rng = aws_lc_rs::rand::SystemRandom::new();
        self.signer
            .sign(&rng, message)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| KeyError::Format("signing failed".into()))
    }
    /// The public key for verification.
    pub fn decoding_key(&self) -> &jsonwebtoken::DecodingKey {
        &self.decoding
    }
    /// The secret scalar (for deriving other keys, e.g. the demo IdP's).
    pub fn secret(&self) -> &SecretKey {
        &self.secret
    }

    /// SEC1 `EC PRIVATE KEY` PEM of this key.
    pub fn to_sec1_pem(&self) -> String {
        self.secret
            .to_sec1_pem(p256::pkcs8::LineEnding::LF)
            .map(|z| z.to_string())
            .unwrap_or_default()
    }
}

/// RFC 7638 thumbprint of a P-256 public JWK: SHA-256 over the canonical JSON
/// with members `crv`, `kty`, `x`, `y` in lexicographic order, hex encoded.
pub fn thumbprint_p256(x: &str, y: &str) -> String {
    let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    hex::encode(Sha256::digest(canonical.as_bytes()))
}

/// A non-empty list of keys; the first signs, all are published.
#[derive(Clone, Debug, PartialEq)]
pub struct KeySet {
    keys: Vec<SigningKey>,
    /// Non-fatal problems found while loading (shown to the operator).
    pub warnings: Vec<KeyWarning>,
}

impl KeySet {
    /// A set from already-built keys. Fails if empty.
    pub fn new(keys: Vec<SigningKey>) -> Result<Self> {
        if keys.is_empty() {
            return Err(KeyError::NoKeys);
        }
        Ok(KeySet {
            keys,
            warnings: Vec::new(),
        })
    }
    /// A set of one freshly generated key.
    pub fn generate() -> Self {
        KeySet {
            keys: vec![SigningKey::generate()],
            warnings: Vec::new(),
        }
    }
    /// The key that signs new assertions.
    pub fn signer(&self) -> &SigningKey {
        &self.keys[0]
    }
    /// All keys, signer first.
    pub fn keys(&self) -> &[SigningKey] {
        &self.keys
    }
    /// Finds a key by `kid`.
    pub fn get(&self, kid: &str) -> Option<&SigningKey> {
        self.keys.iter().find(|k| k.kid == kid)
    }

    /// Loads keys from PEM, base64 PEM, or base64 DER text.
    pub fn parse(input: &str) -> Result<Self> {
        let text = input.trim();
        if text.is_empty() {
            return Err(KeyError::Empty);
        }
        if text.contains("-----BEGIN") {
            return parse_pem_text(text);
        }
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let decoded = STANDARD
            .decode(&compact)
            .or_else(|_| STANDARD_NO_PAD.decode(compact.trim_end_matches('=')))
            .map_err(|_| {
                KeyError::Format(
                    "not PEM and not valid base64 (expected PEM text or base64 of PEM)".into(),
                )
            })?;
        if let Ok(inner) = std::str::from_utf8(&decoded)
            && inner.contains("-----BEGIN")
        {
            return parse_pem_text(inner.trim());
        }
        if decoded.contains(&b'-') && decoded.windows(5).any(|w| w == b"BEGIN") {
            // Decodes to PEM-like text that is not UTF-8 (damaged PEM).
            return parse_pem_text(&String::from_utf8_lossy(&decoded));
        }
        let key = parse_der(&decoded, "DER").map_err(|reason| KeyError::Block {
            index: 1,
            label: "DER".into(),
            reason,
        })?;
        KeySet::new(vec![key])
    }
}

fn parse_pem_text(text: &str) -> Result<KeySet> {
    let mut keys = Vec::new();
    let mut warnings = Vec::new();
    let mut rest = text;
    let mut index = 0;
    while let Some(start) = rest.find("-----BEGIN ") {
        index += 1;
        let after = &rest[start + 11..];
        let Some(label_end) = after.find("-----") else {
            return Err(KeyError::Format(format!(
                "block {index}: unterminated BEGIN line"
            )));
        };
        let label = after[..label_end].trim().to_string();
        let body_and_rest = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let Some(end) = body_and_rest.find(&end_marker) else {
            return Err(KeyError::Block {
                index,
                label,
                reason: "missing END line".into(),
            });
        };
        let body = &body_and_rest[..end];
        rest = &body_and_rest[end + end_marker.len()..];
        let block_err = |reason: String| KeyError::Block {
            index,
            label: label.clone(),
            reason,
        };
        match label.as_str() {
            "EC PARAMETERS" => continue,
            "EC PRIVATE KEY" | "PRIVATE KEY" => {}
            "RSA PRIVATE KEY" => {
                return Err(block_err(
                    "RSA keys are not supported; use a P-256 EC key (openssl ecparam -name prime256v1 -genkey)".into(),
                ));
            }
            other if other.contains("PUBLIC") || other.contains("CERTIFICATE") => {
                return Err(block_err(
                    "expected a private key; public keys and certificates cannot sign".into(),
                ));
            }
            _ => return Err(block_err("unsupported PEM block type".into())),
        }
        let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
        match STANDARD.decode(&compact) {
            Ok(der) => keys.push(parse_der(&der, &label).map_err(block_err)?),
            Err(_) if label == "EC PRIVATE KEY" => {
                // Some published examples carry a SEC1 key whose optional
                // trailing fields were damaged in transit while the private
                // scalar is intact. The scalar alone defines the key (the
                // public point is derived from it), so recover it and warn.
                let key = recover_sec1_scalar(&compact)
                    .ok_or_else(|| block_err("invalid base64 in PEM body".into()))?;
                warnings.push(KeyWarning::Recovered {
                    index,
                    kid: key.kid().to_string(),
                });
                keys.push(key);
            }
            Err(_) => return Err(block_err("invalid base64 in PEM body".into())),
        }
    }
    if index == 0 {
        return Err(KeyError::Format("no PEM block found".into()));
    }
    let mut set = KeySet::new(keys)?;
    set.warnings = warnings;
    Ok(set)
}

/// DER prefix of a SEC1 ECPrivateKey for a 32-byte scalar:
/// SEQUENCE (len 0x77) { INTEGER 1, OCTET STRING (32) … }.
const SEC1_P256_PREFIX: [u8; 7] = [0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20];

fn recover_sec1_scalar(b64: &str) -> Option<SigningKey> {
    // Decode the longest run of valid base64 quads from the start.
    let valid: String = b64
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '+' || *c == '/')
        .collect();
    let usable = valid.len() - valid.len() % 4;
    let der = STANDARD.decode(&valid[..usable]).ok()?;
    if der.len() < SEC1_P256_PREFIX.len() + 32 || der[..7] != SEC1_P256_PREFIX {
        return None;
    }
    let secret = SecretKey::from_slice(&der[7..39]).ok()?;
    SigningKey::from_secret(secret).ok()
}

fn parse_der(der: &[u8], label: &str) -> std::result::Result<SigningKey, String> {
    let parsed = if label == "PRIVATE KEY" {
        SecretKey::from_pkcs8_der(der).map_err(|e| e.to_string())
    } else if label == "EC PRIVATE KEY" {
        SecretKey::from_sec1_der(der).map_err(|e| e.to_string())
    } else {
        SecretKey::from_sec1_der(der)
            .or_else(|_| SecretKey::from_pkcs8_der(der))
            .map_err(|e| e.to_string())
    };
    match parsed {
        Ok(secret) => SigningKey::from_secret(secret).map_err(|e| e.to_string()),
        Err(detail) => Err(match curve_name(der) {
            Some(name) => format!("{name} keys are not supported; use a P-256 (prime256v1) key"),
            None if contains(der, &RSA_OID) => {
                "RSA keys are not supported; use a P-256 (prime256v1) key".into()
            }
            None => format!("not a valid P-256 private key ({detail})"),
        }),
    }
}

const RSA_OID: [u8; 11] = [
    0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
];

fn curve_name(der: &[u8]) -> Option<&'static str> {
    const CURVES: [(&[u8], &str); 4] = [
        (
            &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
            "P-384 (secp384r1)",
        ),
        (
            &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23],
            "P-521 (secp521r1)",
        ),
        (&[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a], "secp256k1"),
        (&[0x06, 0x03, 0x2b, 0x65, 0x70], "Ed25519"),
    ];
    CURVES
        .iter()
        .find(|(oid, _)| contains(der, oid))
        .map(|(_, name)| *name)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
