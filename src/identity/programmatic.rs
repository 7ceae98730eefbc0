//! The programmatic-login token (`pomerium_jwt`): what a command-line
//! client receives on its loopback URL and sends back as
//! `Authorization: Pomerium <token>`.
//!
//! Pomerium's clients read it as a JWT (three dot-separated parts whose
//! payload carries `exp`, which they use to cache it), so it is one: an
//! ES256 JWS signed with the proxy's signing key, `typ` `JWT`. Its claims
//! are `iss` and `aud` (the route host it was issued for), `sub`, `sid`,
//! `iat`, `exp` (the session's), and `session`: the session sealed for that
//! host, exactly as the session cookie carries it. The session inside stays
//! what grants access: host-bound (sealed with the host, and `aud`
//! checked), unforgeable (authenticated encryption under `cookie_secret`,
//! and the signature), and revocable (signing out revokes its `sid`). An
//! identity assertion, signed by the same key, has no `session` claim and
//! is never accepted as a token.

use super::keys::KeySet;
use super::session::{Session, SessionCodec};
use serde::{Deserialize, Serialize};

/// The token's claims.
#[derive(Debug, Serialize, Deserialize)]
pub struct TokenClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
    /// The session sealed for `aud` (the session cookie's value).
    pub session: String,
}

/// Why a token could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("signing the programmatic token failed: {0}")]
    Sign(String),
}

#[derive(Serialize)]
struct Header<'a> {
    alg: &'static str,
    kid: &'a str,
    typ: &'static str,
}

/// The token handing `session` to a command-line client of `host`.
pub fn issue(
    keys: &KeySet,
    codec: &SessionCodec,
    host: &str,
    session: &Session,
    now: i64,
) -> Result<String, TokenError> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let claims = TokenClaims {
        iss: host.to_string(),
        aud: host.to_string(),
        sub: session.sub.clone(),
        sid: session.id.clone(),
        iat: now,
        exp: session.exp,
        session: codec.seal(host, session),
    };
    let key = keys.signer();
    let header = serde_json::to_vec(&Header {
        alg: "ES256",
        kid: key.kid(),
        typ: "JWT",
    })
    .map_err(|e| TokenError::Sign(e.to_string()))?;
    let payload = serde_json::to_vec(&claims).map_err(|e| TokenError::Sign(e.to_string()))?;
    let mut out = b64.encode(header);
    out.push('.');
    b64.encode_string(payload, &mut out);
    let signature = key
        .sign_es256(out.as_bytes())
        .map_err(|e| TokenError::Sign(e.to_string()))?;
    out.push('.');
    b64.encode_string(signature, &mut out);
    Ok(out)
}

/// The sealed session inside a token presented on `host`: `None` unless
/// the signature is one of `keys`', `aud` is `host` and it has not expired.
/// The caller still opens the sealed session (for `host`) and checks its
/// revocation.
pub fn sealed_session(keys: &KeySet, host: &str, token: &str, now: i64) -> Option<String> {
    let kid = jsonwebtoken::decode_header(token).ok()?.kid?;
    let key = keys.get(&kid)?;
    let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    v.set_audience(&[host]);
    v.set_required_spec_claims(&["exp", "aud"]);
    // `exp` is checked below against the caller's clock.
    v.validate_exp = false;
    let claims = jsonwebtoken::decode::<TokenClaims>(token, key.decoding_key(), &v)
        .ok()?
        .claims;
    (claims.exp > now).then_some(claims.session)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(now: i64) -> Session {
        Session {
            id: "sid-1".into(),
            sub: "u1".into(),
            email: "u1@example.com".into(),
            name: "U One".into(),
            groups: vec![],
            claims: Default::default(),
            truncated: false,
            iat: now,
            exp: now + 3600,
            refresh_token: None,
            refresh_at: 0,
            idp_tokens: None,
            idp: String::new(),
        }
    }

    #[test]
    fn a_token_opens_only_on_its_host_with_its_keys_before_it_expires() {
        let (keys, codec, now) = (KeySet::generate(), SessionCodec::new(&[7; 32]), 1_000);
        let token = issue(&keys, &codec, "api.example.com", &session(now), now).unwrap();
        assert_eq!(token.split('.').count(), 3, "{token}");
        let sealed = sealed_session(&keys, "api.example.com", &token, now).unwrap();
        assert_eq!(
            codec.open("api.example.com", &sealed, now).unwrap().id,
            "sid-1"
        );
        assert!(sealed_session(&keys, "other.example.com", &token, now).is_none());
        assert!(sealed_session(&KeySet::generate(), "api.example.com", &token, now).is_none());
        assert!(sealed_session(&keys, "api.example.com", &token, now + 3600).is_none());
    }
}
