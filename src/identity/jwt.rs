//! The identity assertion (`X-Pomerium-Jwt-Assertion`): an ES256 compact JWS
//! with exactly Pomerium's claim set. Pure given the key, the identity and
//! `now`.

use super::keys::KeySet;
use serde::{Deserialize, Serialize};

/// Lifetime of an assertion, in seconds (`exp` = `iat` + 5 min).
pub const ASSERTION_TTL_SECS: i64 = 300;

/// How `iss` is written.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IssuerFormat {
    /// `iss` = the route's host name (Pomerium's default).
    #[default]
    #[serde(alias = "host_only", alias = "IssuerHostOnly", alias = "hostOnly")]
    Host,
    /// `iss` = `https://<host>/`.
    #[serde(alias = "IssuerURI", alias = "issuer_uri")]
    Uri,
}

impl IssuerFormat {
    /// Pomerium's spellings of `jwt_issuer_format` (empty: the default).
    pub fn parse(text: &str) -> Result<Self, JwtError> {
        match text {
            "" | "host" | "hostOnly" | "host_only" | "IssuerHostOnly" => Ok(IssuerFormat::Host),
            "uri" | "IssuerURI" | "issuer_uri" => Ok(IssuerFormat::Uri),
            other => Err(JwtError::IssuerFormat(other.to_string())),
        }
    }
}

/// The identity a session carries into an assertion.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    /// IdP subject.
    pub sub: String,
    pub email: String,
    pub name: String,
    pub groups: Vec<String>,
    /// Session id.
    pub sid: String,
}

/// The exact claim set of the assertion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssertionClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub user: String,
    pub email: String,
    pub name: String,
    /// Always an array (`[]` when none).
    pub groups: Vec<String>,
    pub sid: String,
    pub jti: String,
    pub iat: i64,
    pub exp: i64,
}

impl AssertionClaims {
    /// The claims for `identity` on the route `host` at `now` (unix seconds).
    pub fn new(
        identity: &Identity,
        host: &str,
        format: IssuerFormat,
        now: i64,
        jti: String,
    ) -> Self {
        let iss = match format {
            IssuerFormat::Host => host.to_string(),
            IssuerFormat::Uri => format!("https://{host}/"),
        };
        AssertionClaims {
            iss,
            aud: host.to_string(),
            sub: identity.sub.clone(),
            user: identity.sub.clone(),
            email: identity.email.clone(),
            name: identity.name.clone(),
            groups: identity.groups.clone(),
            sid: identity.sid.clone(),
            jti,
            iat: now,
            exp: now + ASSERTION_TTL_SECS,
        }
    }

    /// The value of a claim as header text (multi-valued claims joined with `,`).
    pub fn header_value(&self, claim: &str) -> Option<String> {
        Some(match claim {
            "iss" => self.iss.clone(),
            "aud" => self.aud.clone(),
            "sub" => self.sub.clone(),
            "user" => self.user.clone(),
            "email" => self.email.clone(),
            "name" => self.name.clone(),
            "groups" => self.groups.join(","),
            "sid" => self.sid.clone(),
            "jti" => self.jti.clone(),
            "iat" => self.iat.to_string(),
            "exp" => self.exp.to_string(),
            _ => return None,
        })
    }
}

/// Errors from signing, and an issuer format jetbridge does not know.
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    #[error("signing failed: {0}")]
    Sign(String),
    /// A `jwt_issuer_format` other than Pomerium's spellings.
    #[error("jwt_issuer_format {0:?}: expected host or uri")]
    IssuerFormat(String),
}

#[derive(Serialize)]
struct JwsHeader<'a> {
    alg: &'static str,
    kid: &'a str,
    typ: &'static str,
}

/// Signs `claims` with the set's signing key as a compact JWS (RFC 7515):
/// header `{alg: ES256, kid, typ: JWT}`. The signature is aws-lc's ECDSA
/// P-256/SHA-256 over `base64url(header).base64url(claims)`; the key pair is
/// parsed once per key, not per signature.
pub fn sign(keys: &KeySet, claims: &AssertionClaims) -> Result<String, JwtError> {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let key = keys.signer();
    let header = serde_json::to_vec(&JwsHeader {
        alg: "ES256",
        kid: key.kid(),
        typ: "JWT",
    })
    .map_err(|e| JwtError::Sign(e.to_string()))?;
    let payload = serde_json::to_vec(claims).map_err(|e| JwtError::Sign(e.to_string()))?;
    let mut out = String::with_capacity(64 + payload.len() * 4 / 3 + 100);
    b64.encode_string(&header, &mut out);
    out.push('.');
    b64.encode_string(&payload, &mut out);
    let signature = key
        .sign_es256(out.as_bytes())
        .map_err(|e| JwtError::Sign(e.to_string()))?;
    out.push('.');
    b64.encode_string(&signature, &mut out);
    Ok(out)
}

/// Mints an assertion with a fresh random `jti`.
pub fn mint(
    keys: &KeySet,
    identity: &Identity,
    host: &str,
    format: IssuerFormat,
    now: i64,
) -> Result<(String, AssertionClaims), JwtError> {
    let claims = AssertionClaims::new(
        identity,
        host,
        format,
        now,
        uuid::Uuid::new_v4().to_string(),
    );
    Ok((sign(keys, &claims)?, claims))
}
