//! Verifying the identity stamp: the `X-Pomerium-Jwt-Assertion` header.
//!
//! jetbridge (like Pomerium) sends every upstream on a route with
//! `pass_identity_headers: true` a signed JWT describing the user. An upstream
//! must not trust the header until it has checked that:
//!
//! - it is an ES256 JWS signed by a key published in the proxy's JWKS
//!   (`/.well-known/pomerium/jwks.json`, in a cluster usually
//!   `http://jetbridge.jetbridge.svc/.well-known/pomerium/jwks.json`);
//! - `iss` and `aud` name this upstream's route host;
//! - it has not expired (`exp`, with at most 60 s of clock skew).
//!
//! [`Verifier`] does all of this. Create one at start-up and share it (it is
//! cheap to clone); it fetches the JWKS on first use, keeps it in memory, and
//! fetches it again when an assertion names a key it has not seen (a rotated
//! key), at most once per [`VerifierConfig::refetch_min_interval`].
//!
//! ```no_run
//! use jetbridge_verify::{Verifier, VerifierConfig, VerifyError};
//!
//! # async fn demo(headers: http::HeaderMap) -> Result<(), Box<dyn std::error::Error>> {
//! let verifier = Verifier::new(
//!     VerifierConfig::new("http://jetbridge.jetbridge.svc/.well-known/pomerium/jwks.json".parse()?)
//!         .issuer("app.example.com")
//!         .audience("app.example.com"),
//! )?;
//!
//! // In a request handler:
//! match verifier.verify_headers(&headers).await {
//!     Ok(claims) => println!("hello {} ({:?})", claims.email, claims.groups),
//!     Err(VerifyError::MissingAssertion) => println!("not behind the proxy?"),
//!     Err(e) => println!("rejected: {e}"),
//! }
//! # Ok(()) }
//! ```
//!
//! Only the signed assertion proves anything. The `X-Pomerium-Claim-*` headers
//! are unsigned conveniences; read identity from [`VerifiedClaims`].
//!
//! This crate has no Kubernetes or HTTP-server dependencies: it is meant to be
//! embedded in the upstream apps themselves. (`jetbridge verify` runs a small
//! upstream built on it that shows what the proxy sent and whether it verifies.)
#![forbid(unsafe_code)]

mod claims;
mod jwks;
mod jwks_cache;
mod token;

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use url::Url;

pub use claims::VerifiedClaims;
pub use token::{UnverifiedToken, decode_unverified};

use claims::ClaimChecks;
use jwks_cache::JwksCache;

/// The request header carrying the signed assertion.
pub const ASSERTION_HEADER: &str = "x-pomerium-jwt-assertion";

/// The prefix of the unsigned per-claim headers (`jwt_claims_headers`).
pub const CLAIM_HEADER_PREFIX: &str = "x-pomerium-claim-";

/// The largest clock-skew allowance accepted, and the default.
pub const MAX_LEEWAY: Duration = Duration::from_secs(60);

/// The default minimum interval between re-fetches caused by an unknown `kid`.
pub const DEFAULT_REFETCH_MIN_INTERVAL: Duration = Duration::from_secs(30);

/// Why an assertion was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum VerifyError {
    /// The request carries no assertion header.
    #[error("missing X-Pomerium-Jwt-Assertion header")]
    MissingAssertion,
    /// The assertion is not a well-formed JWS/JWT, or a claim has the wrong type.
    #[error("malformed assertion: {0}")]
    Malformed(String),
    /// The header's `alg` is anything but ES256 (including `none`, HS*, RS*).
    #[error("unsupported algorithm {0}: only ES256 is accepted")]
    BadAlgorithm(String),
    /// The header has no `kid`, so no key can be chosen.
    #[error("the assertion header has no key id (kid)")]
    MissingKid,
    /// No key in the JWKS has the assertion's `kid`, even after a re-fetch
    /// (or a re-fetch was not allowed yet).
    #[error("unknown key id {0:?}: not in the JWKS")]
    UnknownKid(String),
    /// The signature does not verify with the key named by `kid`.
    #[error("bad signature: the assertion was not signed by the JWKS key it names, or was altered")]
    BadSignature,
    /// `exp` is more than the leeway in the past.
    #[error("assertion expired at {exp} (now {now}, Unix seconds)")]
    Expired {
        /// The `exp` claim.
        exp: i64,
        /// The time of the check.
        now: i64,
    },
    /// `iat` or `nbf` is more than the leeway in the future.
    #[error("assertion not valid yet: {claim} is {at}, in the future (now {now}, Unix seconds)")]
    NotYetValid {
        /// `iat` or `nbf`.
        claim: &'static str,
        /// The claim's value.
        at: i64,
        /// The time of the check.
        now: i64,
    },
    /// `iss` differs from the configured issuer.
    #[error("wrong issuer: expected {expected:?}, got {actual:?}")]
    WrongIssuer {
        /// The configured issuer.
        expected: String,
        /// The assertion's `iss` (empty when absent).
        actual: String,
    },
    /// `aud` does not contain the configured audience.
    #[error("wrong audience: expected {expected:?}, got {actual:?}")]
    WrongAudience {
        /// The configured audience.
        expected: String,
        /// The assertion's `aud`.
        actual: Vec<String>,
    },
    /// The JWKS could not be fetched or read.
    #[error("fetching the JWKS from {url} failed: {reason}")]
    JwksFetch {
        /// The JWKS URL.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// The [`VerifierConfig`] cannot be used.
    #[error("invalid verifier configuration: {0}")]
    InvalidConfig(String),
}

/// How a [`Verifier`] checks assertions.
///
/// ```
/// use std::time::Duration;
/// use jetbridge_verify::VerifierConfig;
///
/// let config = VerifierConfig::new("https://app.example.com/.well-known/pomerium/jwks.json".parse().unwrap())
///     .issuer("app.example.com")
///     .audience("app.example.com");
/// assert_eq!(config.leeway, Duration::from_secs(60));
/// assert_eq!(config.refetch_min_interval, Duration::from_secs(30));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifierConfig {
    /// Where the JWKS is served (`http` or `https`).
    pub jwks_url: Url,
    /// When set, `iss` must equal it exactly.
    pub expected_issuer: Option<String>,
    /// When set, `aud` (a string or a list) must contain it exactly.
    pub expected_audience: Option<String>,
    /// Clock skew tolerated on `exp`, `iat` and `nbf`; at most [`MAX_LEEWAY`]
    /// (whole seconds count).
    pub leeway: Duration,
    /// Minimum time between two JWKS re-fetches caused by an unknown `kid`.
    pub refetch_min_interval: Duration,
}

impl VerifierConfig {
    /// A configuration with the defaults: no issuer or audience check, 60 s
    /// leeway, 30 s between re-fetches.
    pub fn new(jwks_url: Url) -> Self {
        Self {
            jwks_url,
            expected_issuer: None,
            expected_audience: None,
            leeway: MAX_LEEWAY,
            refetch_min_interval: DEFAULT_REFETCH_MIN_INTERVAL,
        }
    }

    /// Requires `iss` to be exactly `issuer`.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.expected_issuer = Some(issuer.into());
        self
    }

    /// Requires `aud` to contain exactly `audience`.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.expected_audience = Some(audience.into());
        self
    }
}

/// Verifies assertions against a JWKS it fetches and caches.
///
/// Cloning is cheap and clones share the cache.
#[derive(Clone)]
pub struct Verifier {
    inner: Arc<Inner>,
}

struct Inner {
    config: VerifierConfig,
    checks: ClaimChecks,
    cache: JwksCache,
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("config", &self.inner.config)
            .finish_non_exhaustive()
    }
}

impl Verifier {
    /// Checks the configuration and builds the verifier. Nothing is fetched
    /// until the first verification.
    ///
    /// Fails when the URL is not `http(s)://host/...`, or the leeway exceeds
    /// [`MAX_LEEWAY`].
    pub fn new(config: VerifierConfig) -> Result<Self, VerifyError> {
        let url = &config.jwks_url;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
            return Err(VerifyError::InvalidConfig(format!(
                "the JWKS URL must be http(s)://host/..., got {url}"
            )));
        }
        if config.leeway > MAX_LEEWAY {
            return Err(VerifyError::InvalidConfig(format!(
                "leeway {:?} is more than the maximum {MAX_LEEWAY:?}",
                config.leeway
            )));
        }
        let checks = ClaimChecks {
            issuer: config.expected_issuer.clone(),
            audience: config.expected_audience.clone(),
            // At most 60 after the check above.
            leeway: config.leeway.as_secs() as i64,
        };
        let cache = JwksCache::new(config.jwks_url.clone(), config.refetch_min_interval)?;
        Ok(Self {
            inner: Arc::new(Inner {
                config,
                checks,
                cache,
            }),
        })
    }

    /// The configuration this verifier was built with.
    pub fn config(&self) -> &VerifierConfig {
        &self.inner.config
    }

    /// Verifies an assertion now. See [`verify_at`](Self::verify_at).
    pub async fn verify(&self, token: &str) -> Result<VerifiedClaims, VerifyError> {
        self.verify_at(token, SystemTime::now()).await
    }

    /// Verifies the assertion in a request's headers now.
    ///
    /// [`VerifyError::MissingAssertion`] when there is none.
    pub async fn verify_headers(
        &self,
        headers: &http::HeaderMap,
    ) -> Result<VerifiedClaims, VerifyError> {
        let token = assertion_from_headers(headers).ok_or(VerifyError::MissingAssertion)?;
        self.verify(token).await
    }

    /// Verifies an assertion as if the time were `now`.
    ///
    /// In order: the token's structure; `alg` must be ES256; `kid` must be
    /// present and in the JWKS (fetched if needed); the signature; then `exp`
    /// (required), `iat` and `nbf` against `now` with the leeway; then `iss`
    /// and `aud` if configured. No claim is looked at before the signature
    /// has verified.
    ///
    /// ```no_run
    /// # use jetbridge_verify::{Verifier, VerifierConfig, VerifyError};
    /// # async fn demo(verifier: Verifier, token: &str) {
    /// use std::time::{Duration, SystemTime};
    ///
    /// // An hour from now, every assertion minted today has expired.
    /// let later = SystemTime::now() + Duration::from_secs(3600);
    /// assert!(matches!(
    ///     verifier.verify_at(token, later).await,
    ///     Err(VerifyError::Expired { .. })
    /// ));
    /// # }
    /// ```
    pub async fn verify_at(
        &self,
        token: &str,
        now: SystemTime,
    ) -> Result<VerifiedClaims, VerifyError> {
        let parsed = token::parse(token.trim())?;
        let keys = self.inner.cache.keys_for(&parsed.kid).await?;
        parsed.verify_signature(&keys)?;
        claims::check(
            parsed.payload()?,
            &self.inner.checks,
            claims::unix_seconds(now),
        )
    }
}

/// The assertion in a request's headers, if there is exactly one usable value.
///
/// Header names are case-insensitive. Returns `None` when the header is
/// absent, empty, not visible ASCII, or present more than once (an ambiguous
/// request is never guessed at).
///
/// ```
/// use http::HeaderMap;
/// use jetbridge_verify::assertion_from_headers;
///
/// let mut headers = HeaderMap::new();
/// assert_eq!(assertion_from_headers(&headers), None);
/// headers.insert("X-Pomerium-Jwt-Assertion", "aaa.bbb.ccc".parse().unwrap());
/// assert_eq!(assertion_from_headers(&headers), Some("aaa.bbb.ccc"));
/// ```
pub fn assertion_from_headers(headers: &http::HeaderMap) -> Option<&str> {
    let mut values = headers.get_all(ASSERTION_HEADER).iter();
    let value = values.next()?;
    if values.next().is_some() {
        return None;
    }
    let token = value.to_str().ok()?.trim();
    (!token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    #[test]
    fn assertion_is_read_only_from_a_single_nonempty_header() {
        let mut headers = HeaderMap::new();
        headers.insert("x-pomerium-jwt-assertion", " a.b.c ".parse().unwrap());
        assert_eq!(assertion_from_headers(&headers), Some("a.b.c"));

        headers.append("X-Pomerium-Jwt-Assertion", "d.e.f".parse().unwrap());
        assert_eq!(assertion_from_headers(&headers), None);

        let mut empty = HeaderMap::new();
        empty.insert("x-pomerium-jwt-assertion", "".parse().unwrap());
        assert_eq!(assertion_from_headers(&empty), None);

        let mut look_alike = HeaderMap::new();
        look_alike.insert("x-pomerium-jwt_assertion", "a.b.c".parse().unwrap());
        assert_eq!(assertion_from_headers(&look_alike), None);
    }

    #[test]
    fn config_with_unusable_url_or_excess_leeway_is_refused() {
        let base = VerifierConfig::new("http://jwks.local/jwks.json".parse().unwrap());
        let cases = [
            VerifierConfig {
                jwks_url: "file:///etc/jwks.json".parse().unwrap(),
                ..base.clone()
            },
            VerifierConfig {
                leeway: Duration::from_secs(61),
                ..base.clone()
            },
        ];
        for config in cases {
            assert!(matches!(
                Verifier::new(config),
                Err(VerifyError::InvalidConfig(_))
            ));
        }
        assert!(Verifier::new(base).is_ok());
    }

    #[tokio::test]
    async fn request_without_assertion_is_reported_as_missing() {
        let verifier = Verifier::new(VerifierConfig::new(
            "http://127.0.0.1:9/jwks.json".parse().unwrap(),
        ))
        .unwrap();
        assert_eq!(
            verifier.verify_headers(&HeaderMap::new()).await,
            Err(VerifyError::MissingAssertion)
        );
    }
}
