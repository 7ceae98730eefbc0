//! The bootstrap Secret: the signing key, cookie secret and shared secret
//! every replica shares. Created once if absent (create-if-not-exists; the
//! loser of a race re-reads), never overwritten, re-created from the keys in
//! memory if deleted, and when it turns corrupt the last good keys stay.

use super::Error;
use crate::identity::secrets::{Bootstrap, Secret32, SecretError, Secrets};
use crate::identity::{KeyError, KeySet};
use crate::model::Diagnostic;
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, ObjectMeta, PostParams};
use std::collections::BTreeMap;

/// Why the bootstrap Secret's keys cannot be used (the last good keys stay).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum BootstrapError {
    /// A key the Secret must hold is absent.
    #[error("key {0} is missing")]
    Missing(&'static str),
    /// `signing_key` is not UTF-8 text.
    #[error("signing_key: not text")]
    SigningKeyNotText,
    /// `signing_key` does not load.
    #[error(transparent)]
    SigningKey(#[from] KeyError),
    /// A 32-byte secret that is neither raw bytes nor text.
    #[error("{0}: not 32 bytes nor base64")]
    NotSecret32(&'static str),
    /// A 32-byte secret whose base64 text is not 32 bytes.
    #[error(transparent)]
    Secret(#[from] SecretError),
}

/// Keys read from (or written to) the bootstrap Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BootstrapKeys {
    /// PEM, possibly several blocks (the first signs; all are published).
    pub signing_key: String,
    pub cookie_secret: Secret32,
    pub shared_secret: Secret32,
}

impl BootstrapKeys {
    /// Fresh keys.
    pub fn generate() -> Self {
        let b = Bootstrap::generate();
        BootstrapKeys {
            signing_key: b.signing_key_pem,
            cookie_secret: b.cookie_secret,
            shared_secret: b.shared_secret,
        }
    }

    /// The keys as typed secrets, with what loading the signing key warns
    /// about.
    pub fn secrets(&self) -> Result<(Secrets, Vec<Diagnostic>), KeyError> {
        let keys = KeySet::parse(&self.signing_key)?;
        let warnings = keys
            .warnings
            .iter()
            .map(|w| Diagnostic::setting(w.to_string()))
            .collect();
        let secrets = Secrets {
            keys: std::sync::Arc::new(keys),
            cookie_secret: self.cookie_secret.clone(),
            shared_secret: self.shared_secret.clone(),
        };
        Ok((secrets, warnings))
    }

    /// The `kid` of the signing key.
    pub fn kid(&self) -> String {
        KeySet::parse(&self.signing_key)
            .map(|k| k.signer().kid().to_string())
            .unwrap_or_default()
    }
}

/// A 32-byte secret stored either raw (as Pomerium's bootstrap does) or as
/// base64 text (as `jetbridge gen-secrets` writes it).
fn secret32(
    name: &'static str,
    data: &BTreeMap<String, ByteString>,
) -> Result<Secret32, BootstrapError> {
    let raw = &data.get(name).ok_or(BootstrapError::Missing(name))?.0;
    if let Ok(arr) = <[u8; 32]>::try_from(raw.as_slice()) {
        return Ok(Secret32(arr));
    }
    let text = std::str::from_utf8(raw).map_err(|_| BootstrapError::NotSecret32(name))?;
    Ok(Secret32::parse(name, text)?)
}

/// Reads the keys from a Secret, checking that each one loads.
pub fn parse(secret: &Secret) -> Result<BootstrapKeys, BootstrapError> {
    let mut data = secret.data.clone().unwrap_or_default();
    for (k, v) in secret.string_data.clone().unwrap_or_default() {
        data.insert(k, ByteString(v.into_bytes()));
    }
    let signing = data
        .get("signing_key")
        .ok_or(BootstrapError::Missing("signing_key"))?
        .0
        .clone();
    let signing = String::from_utf8(signing).map_err(|_| BootstrapError::SigningKeyNotText)?;
    KeySet::parse(&signing)?;
    Ok(BootstrapKeys {
        signing_key: signing,
        cookie_secret: secret32("cookie_secret", &data)?,
        shared_secret: secret32("shared_secret", &data)?,
    })
}

/// The Secret object holding `keys`.
pub fn to_secret(keys: &BootstrapKeys, namespace: &str, name: &str) -> Secret {
    let mut data = BTreeMap::new();
    data.insert(
        "signing_key".to_string(),
        ByteString(keys.signing_key.clone().into_bytes()),
    );
    data.insert(
        "cookie_secret".to_string(),
        ByteString(keys.cookie_secret.to_base64().into_bytes()),
    );
    data.insert(
        "shared_secret".to_string(),
        ByteString(keys.shared_secret.to_base64().into_bytes()),
    );
    let mut labels = BTreeMap::new();
    labels.insert(
        "app.kubernetes.io/managed-by".to_string(),
        "jetbridge".to_string(),
    );
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            namespace: Some(namespace.to_string()),
            labels: Some(labels),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    }
}

/// Reads the bootstrap Secret, creating it with `keys` when absent. When
/// another replica created it first, its keys win.
pub async fn ensure(
    api: &Api<Secret>,
    name: &str,
    keys: BootstrapKeys,
) -> Result<BootstrapKeys, Error> {
    if let Some(s) = api.get_opt(name).await.map_err(Error::Kube)? {
        return parse(&s).map_err(|e| Error::Bootstrap(format!("Secret {name}: {e}")));
    }
    let ns = api_namespace(api);
    match api
        .create(&PostParams::default(), &to_secret(&keys, &ns, name))
        .await
    {
        Ok(_) => {
            tracing::info!(secret = %format!("{ns}/{name}"), kid = %keys.kid(), "created the bootstrap Secret");
            Ok(keys)
        }
        Err(kube::Error::Api(e)) if e.code == 409 => {
            let s = api.get(name).await.map_err(Error::Kube)?;
            parse(&s).map_err(|e| Error::Bootstrap(format!("Secret {name}: {e}")))
        }
        Err(e) => Err(Error::Kube(e)),
    }
}

fn api_namespace(api: &Api<Secret>) -> String {
    api.resource_url()
        .split("/namespaces/")
        .nth(1)
        .and_then(|r| r.split('/').next())
        .unwrap_or("default")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_through_the_secret_and_raw_bytes_are_accepted() {
        let k = BootstrapKeys::generate();
        let s = to_secret(&k, "jetbridge", "jetbridge-bootstrap");
        assert_eq!(parse(&s).unwrap(), k);
        // Pomerium's bootstrap Secret holds the 32 raw bytes.
        let mut raw = s.clone();
        let data = raw.data.as_mut().unwrap();
        data.insert(
            "cookie_secret".into(),
            ByteString(k.cookie_secret.0.to_vec()),
        );
        assert_eq!(parse(&raw).unwrap(), k);
    }

    #[test]
    fn a_corrupt_secret_is_an_error_naming_the_key() {
        let k = BootstrapKeys::generate();
        for (key, value) in [
            ("signing_key", b"garbage".to_vec()),
            ("cookie_secret", b"short".to_vec()),
            ("shared_secret", vec![0xff; 7]),
        ] {
            let mut s = to_secret(&k, "ns", "b");
            s.data
                .as_mut()
                .unwrap()
                .insert(key.into(), ByteString(value));
            let e = parse(&s).unwrap_err().to_string();
            assert!(e.contains(key) || e.contains("signing key"), "{key}: {e}");
        }
        let mut s = to_secret(&k, "ns", "b");
        s.data.as_mut().unwrap().remove("shared_secret");
        assert!(
            parse(&s)
                .unwrap_err()
                .to_string()
                .contains("shared_secret is missing")
        );
    }
}
