//! The JWKS and discovery documents, serialised once per key set.

use super::keys::{KeySet, SigningKey};
use bytes::Bytes;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// Path of the JWKS document on every route host and the internal listener.
pub const JWKS_PATH: &str = "/.well-known/pomerium/jwks.json";
/// Path of the discovery document.
pub const DISCOVERY_PATH: &str = "/.well-known/pomerium";

/// A public JWK: public members only.
#[derive(Debug, Serialize)]
struct PublicJwk<'a> {
    kty: &'static str,
    crv: &'static str,
    x: &'a str,
    y: &'a str,
    kid: &'a str,
    alg: &'static str,
    #[serde(rename = "use")]
    use_: &'static str,
}

#[derive(Serialize)]
struct Jwks<'a> {
    keys: Vec<PublicJwk<'a>>,
}

/// A pre-serialised document with its strong ETag.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Document {
    pub body: Bytes,
    /// Quoted strong ETag.
    pub etag: String,
}

impl Document {
    fn from_json(body: Vec<u8>) -> Self {
        let digest = Sha256::digest(&body);
        let etag = format!("\"{}\"", hex::encode(&digest[..12]));
        Document {
            body: Bytes::from(body),
            etag,
        }
    }
}

/// The JWKS document for the published keys (signer first, then every other
/// configured or still-valid retired key, without duplicates).
pub fn jwks_document<'a>(keys: impl IntoIterator<Item = &'a SigningKey>) -> Document {
    let mut seen = std::collections::HashSet::new();
    let keys = keys
        .into_iter()
        .filter(|k| seen.insert(k.kid().to_string()))
        .map(|k| PublicJwk {
            kty: "EC",
            crv: "P-256",
            x: k.x(),
            y: k.y(),
            kid: k.kid(),
            alg: "ES256",
            use_: "sig",
        })
        .collect();
    Document::from_json(serde_json::to_vec(&Jwks { keys }).unwrap_or_default())
}

/// The JWKS document of a key set.
pub fn jwks_for(keys: &KeySet) -> Document {
    jwks_document(keys.keys())
}

/// `/.well-known/pomerium` as served at `origin` (`https://host[:port]` or
/// `http://host:port`, exactly as the client addressed it, so every URL in
/// it works as printed). `sign_out` says whether `origin` serves
/// `/.pomerium/sign_out` (the internal listener does not).
pub fn discovery_document(origin: &str, authenticate_url: &str, sign_out: bool) -> Document {
    let base = authenticate_url.trim_end_matches('/');
    let origin = origin.trim_end_matches('/');
    let mut doc = serde_json::json!({
        "issuer": format!("{origin}/"),
        "jwks_uri": format!("{origin}{JWKS_PATH}"),
    });
    if !base.is_empty() {
        doc["authentication_callback_endpoint"] = format!("{base}/oauth2/callback").into();
    }
    if sign_out {
        doc["frontchannel_logout_uri"] = format!("{origin}/.pomerium/sign_out").into();
    }
    Document::from_json(serde_json::to_vec(&doc).unwrap_or_default())
}
