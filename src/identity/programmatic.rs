//! The programmatic-login token (`pomerium_jwt`): what a command-line
//! client receives on its loopback URL and sends back as
//! `Authorization: Pomerium <token>`.
//!
//! Pomerium's clients read it as a JWT (three dot-separated parts whose
//! payload carries `exp`, which they use to cache it), and Pomerium's is an
//! HS256 JWS under a secret of the proxy's; so is this one, under a key
//! derived from `cookie_secret`. No JWKS verifier can take it for an
//! identity assertion, and no assertion (ES256, from the JWKS) is ever
//! taken for it. Its claims are `iss` and `aud` (the route host it was
//! issued for), `sub`, `sid`, `iat`, `exp` (the session's), and `session`:
//! the session sealed for that host, exactly as the session cookie carries
//! it. The session inside is what grants access: host-bound (sealed with
//! the host, and `aud` checked), unforgeable (authenticated encryption, and
//! the MAC), revocable (signing out revokes its `sid`).

use super::seal::derive_key;
use super::session::{Session, SessionCodec};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The purpose label of the token's MAC key.
const PURPOSE: &str = "programmatic-token";

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

/// The token handing `session` to a command-line client of `host`.
pub fn issue(
    cookie_secret: &[u8; 32],
    codec: &SessionCodec,
    host: &str,
    session: &Session,
    now: i64,
) -> Result<String, TokenError> {
    let claims = TokenClaims {
        iss: host.to_string(),
        aud: host.to_string(),
        sub: session.sub.clone(),
        sid: session.id.clone(),
        iat: now,
        exp: session.exp,
        session: codec.seal(host, session),
    };
    let key = EncodingKey::from_secret(&derive_key(cookie_secret, PURPOSE))
        .map_err(|e| TokenError::Sign(e.to_string()))?;
    jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &key)
        .map_err(|e| TokenError::Sign(e.to_string()))
}

/// The sealed session inside a token presented on `host`: `None` unless its
/// MAC is right, `aud` is `host` and it has not expired. The caller still
/// opens the sealed session (for `host`) and checks its revocation.
pub fn sealed_session(
    cookie_secret: &[u8; 32],
    host: &str,
    token: &str,
    now: i64,
) -> Option<String> {
    let key = DecodingKey::from_secret(&derive_key(cookie_secret, PURPOSE)).ok()?;
    let mut v = Validation::new(Algorithm::HS256);
    v.set_audience(&[host]);
    v.set_required_spec_claims(&["exp", "aud"]);
    // `exp` is checked below against the caller's clock.
    v.validate_exp = false;
    let claims = jsonwebtoken::decode::<TokenClaims>(token, &key, &v)
        .ok()?
        .claims;
    (claims.exp > now).then_some(claims.session)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::session::test_session as session;

    #[test]
    fn a_token_opens_only_on_its_host_under_its_secret_before_it_expires() {
        let (secret, codec, now) = ([7; 32], SessionCodec::new(&[7; 32]), 1_000);
        let token = issue(&secret, &codec, "api.example.com", &session(now), now).unwrap();
        assert_eq!(token.split('.').count(), 3, "{token}");
        let sealed = sealed_session(&secret, "api.example.com", &token, now).unwrap();
        assert_eq!(
            codec.open("api.example.com", &sealed, now).unwrap().id,
            "sid-1"
        );
        assert!(sealed_session(&secret, "other.example.com", &token, now).is_none());
        assert!(sealed_session(&[8; 32], "api.example.com", &token, now).is_none());
        assert!(sealed_session(&secret, "api.example.com", &token, now + 3600).is_none());
    }
}
