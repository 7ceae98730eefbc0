//! The bootstrap secrets: `signing_key`, `cookie_secret`, `shared_secret`.

use super::keys::KeySet;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// Errors reading a 32-byte base64 secret.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SecretError {
    #[error("{name}: not valid base64")]
    Base64 { name: &'static str },
    #[error("{name}: must decode to exactly 32 bytes, got {len}")]
    Length { name: &'static str, len: usize },
}

/// A 32-byte secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret32(pub [u8; 32]);

impl std::fmt::Debug for Secret32 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret32(..)")
    }
}

impl Secret32 {
    /// A fresh random secret.
    pub fn generate() -> Self {
        let mut b = [0u8; 32];
        super::random_bytes(&mut b);
        Secret32(b)
    }
    /// Parses base64 (standard or URL-safe, padding optional) of 32 bytes.
    pub fn parse(name: &'static str, text: &str) -> Result<Self, SecretError> {
        let t = text.trim();
        let bytes = STANDARD
            .decode(t)
            .or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(t))
            .or_else(|_| {
                base64::engine::general_purpose::STANDARD_NO_PAD.decode(t.trim_end_matches('='))
            })
            .or_else(|_| {
                base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(t.trim_end_matches('='))
            })
            .map_err(|_| SecretError::Base64 { name })?;
        let len = bytes.len();
        let arr: [u8; 32] = bytes
            .try_into()
            .map_err(|_| SecretError::Length { name, len })?;
        Ok(Secret32(arr))
    }
    /// Base64 text.
    pub fn to_base64(&self) -> String {
        STANDARD.encode(self.0)
    }
}

/// A fresh set of bootstrap secrets.
pub struct Bootstrap {
    pub signing_key_pem: String,
    pub cookie_secret: Secret32,
    pub shared_secret: Secret32,
}

impl Bootstrap {
    /// Generates new secrets.
    pub fn generate() -> Self {
        let keys = KeySet::generate();
        Bootstrap {
            signing_key_pem: keys.signer().to_sec1_pem(),
            cookie_secret: Secret32::generate(),
            shared_secret: Secret32::generate(),
        }
    }

    /// A Kubernetes Secret manifest (`stringData`: PEM and base64 text).
    /// The namespace must be a DNS-1123 label and the name a DNS-1123
    /// subdomain, as the API server requires.
    pub fn to_secret_yaml(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<String, crate::names::NameError> {
        crate::names::check_label("namespace", namespace)?;
        crate::names::check_subdomain("name", name)?;
        let pem: String = self
            .signing_key_pem
            .lines()
            .map(|l| format!("    {l}\n"))
            .collect();
        Ok(format!(
            "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\n  namespace: {namespace}\ntype: Opaque\nstringData:\n  signing_key: |\n{pem}  cookie_secret: {}\n  shared_secret: {}\n",
            self.cookie_secret.to_base64(),
            self.shared_secret.to_base64(),
        ))
    }

    /// The equivalent config-file keys (`signing_key` as base64 PEM, like Pomerium).
    pub fn to_config_yaml(&self) -> String {
        format!(
            "signing_key: {}\ncookie_secret: {}\nshared_secret: {}\n",
            STANDARD.encode(self.signing_key_pem.as_bytes()),
            self.cookie_secret.to_base64(),
            self.shared_secret.to_base64(),
        )
    }
}

/// The global secrets a configuration runs with, resolved once by its
/// source (the config file, the bootstrap Secret, the demo) and handed to
/// translation as typed values: nothing is encoded back into text.
#[derive(Clone, Debug)]
pub struct Secrets {
    /// The signing keys (the first signs; all are published).
    pub keys: std::sync::Arc<KeySet>,
    /// Seals session cookies.
    pub cookie_secret: Secret32,
    /// Shared with upstreams and replicas.
    pub shared_secret: Secret32,
}

impl Secrets {
    /// Fresh random secrets (the demo's, and for tests).
    pub fn generate() -> Self {
        Secrets {
            keys: std::sync::Arc::new(KeySet::generate()),
            cookie_secret: Secret32::generate(),
            shared_secret: Secret32::generate(),
        }
    }
}
