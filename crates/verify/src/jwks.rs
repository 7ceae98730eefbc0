//! Reading a JWKS document into verification keys. Pure: bytes in, keys out.

use std::collections::HashMap;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use p256::ecdsa::VerifyingKey;
use serde_json::Value;

/// The usable keys of one JWKS document, by `kid`.
#[derive(Debug, Default, Clone)]
pub(crate) struct KeySet {
    by_kid: HashMap<String, Vec<VerifyingKey>>,
}

impl KeySet {
    /// The keys published under `kid` (normally one).
    pub(crate) fn get(&self, kid: &str) -> Option<&[VerifyingKey]> {
        self.by_kid.get(kid).map(Vec::as_slice)
    }

    pub(crate) fn len(&self) -> usize {
        self.by_kid.values().map(Vec::len).sum()
    }
}

/// Why a document is not a JWKS.
#[derive(Debug, thiserror::Error)]
pub(crate) enum JwksError {
    /// The body does not parse as JSON.
    #[error("the JWKS is not valid JSON: {0}")]
    NotJson(serde_json::Error),
    /// The JSON has no `keys` array.
    #[error("the JWKS has no `keys` array")]
    NoKeys,
}

/// Parses a JWKS document (`{"keys": [...]}`).
///
/// Only keys that can verify ES256 are kept: `kty` EC, `crv` P-256, a `kid`,
/// `alg` absent or ES256, `use` absent or `sig`, and a point on the curve.
/// Other keys are skipped (and logged), so one odd key does not hide the rest.
/// A document that is not a JWKS at all is an error.
pub(crate) fn parse(body: &[u8]) -> Result<KeySet, JwksError> {
    let doc: Value = serde_json::from_slice(body).map_err(JwksError::NotJson)?;
    let Some(keys) = doc.get("keys").and_then(Value::as_array) else {
        return Err(JwksError::NoKeys);
    };
    let mut set = KeySet::default();
    for (i, jwk) in keys.iter().enumerate() {
        match es256_key(jwk) {
            Ok((kid, key)) => set.by_kid.entry(kid).or_default().push(key),
            Err(why) => {
                tracing::debug!(
                    index = i,
                    kid = jwk.get("kid").and_then(serde_json::Value::as_str),
                    "skipping JWKS key: {why}"
                )
            }
        }
    }
    Ok(set)
}

fn es256_key(jwk: &Value) -> Result<(String, VerifyingKey), String> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    if member("kty") != Some("EC") {
        return Err("`kty` is not EC".into());
    }
    if member("crv") != Some("P-256") {
        return Err("`crv` is not P-256".into());
    }
    if jwk.get("alg").is_some() && member("alg") != Some("ES256") {
        return Err("`alg` is not ES256".into());
    }
    if jwk.get("use").is_some() && member("use") != Some("sig") {
        return Err("`use` is not sig".into());
    }
    let kid = match member("kid") {
        Some(k) if !k.is_empty() => k.to_owned(),
        _ => return Err("no `kid`".into()),
    };
    let coordinate = |name: &str| -> Result<[u8; 32], String> {
        let raw = URL_SAFE_NO_PAD
            .decode(member(name).ok_or_else(|| format!("no `{name}`"))?)
            .map_err(|_| format!("`{name}` is not base64url"))?;
        <[u8; 32]>::try_from(raw.as_slice()).map_err(|_| format!("`{name}` is not 32 bytes"))
    };
    let mut sec1 = [0u8; 65];
    sec1[0] = 0x04;
    sec1[1..33].copy_from_slice(&coordinate("x")?);
    sec1[33..].copy_from_slice(&coordinate("y")?);
    let key = VerifyingKey::from_sec1_bytes(&sec1)
        .map_err(|_| "the point is not on P-256".to_string())?;
    Ok((kid, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use serde_json::json;

    fn jwk(seed: u8, kid: &str) -> Value {
        let key = SigningKey::from_slice(&[seed; 32]).unwrap();
        let point = key.verifying_key().to_sec1_point(false);
        let bytes = point.as_bytes();
        json!({
            "kty": "EC", "crv": "P-256", "alg": "ES256", "use": "sig", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&bytes[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&bytes[33..]),
        })
    }

    fn with(mut v: Value, name: &str, value: Value) -> Value {
        v[name] = value;
        v
    }

    fn without(mut v: Value, name: &str) -> Value {
        v.as_object_mut().unwrap().remove(name);
        v
    }

    #[test]
    fn pomerium_jwks_keys_are_indexed_by_kid() {
        let doc = json!({"keys": [jwk(1, "a"), jwk(2, "b"), jwk(3, "b")]});
        let set = parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 3);
        assert_eq!(set.get("a").unwrap().len(), 1);
        assert_eq!(set.get("b").unwrap().len(), 2);
        assert!(set.get("c").is_none());
    }

    #[test]
    fn keys_unusable_for_es256_are_skipped_and_the_rest_kept() {
        let mut off_curve = jwk(4, "bad-point");
        off_curve["y"] = json!(URL_SAFE_NO_PAD.encode([1u8; 32]));
        let doc = json!({"keys": [
            jwk(1, "good"),
            with(jwk(2, "rsa"), "kty", json!("RSA")),
            with(jwk(2, "p384"), "crv", json!("P-384")),
            with(jwk(2, "hs"), "alg", json!("HS256")),
            with(jwk(2, "enc"), "use", json!("enc")),
            without(jwk(2, "ignored"), "kid"),
            with(jwk(2, "short"), "x", json!("AAAA")),
            off_curve,
            {"kty": "oct", "k": "c2VjcmV0", "kid": "oct"},
            "not an object",
        ]});
        let set = parse(doc.to_string().as_bytes()).unwrap();
        assert_eq!(set.len(), 1);
        assert!(set.get("good").is_some());
    }

    #[test]
    fn alg_and_use_may_be_absent() {
        let key = without(without(jwk(1, "bare"), "alg"), "use");
        let set = parse(json!({"keys": [key]}).to_string().as_bytes()).unwrap();
        assert!(set.get("bare").is_some());
    }

    #[test]
    fn documents_that_are_not_a_jwks_are_errors() {
        for body in [&b"<html>"[..], b"{}", b"{\"keys\": {}}", b"[]"] {
            assert!(parse(body).is_err(), "{}", String::from_utf8_lossy(body));
        }
    }
}
