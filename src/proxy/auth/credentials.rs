//! Credentials a request carries besides the session cookie, as the
//! pipeline reads them: programmatic tokens (Pomerium's forms) and tokens
//! issued by the identity provider.

use crate::model::BearerTokenFormat;
use http::header;

/// The programmatic token of a request, in any of Pomerium's forms:
/// `Authorization: Pomerium <t>`, `Authorization: Bearer Pomerium-<t>`,
/// `X-Pomerium-Authorization: <t>` (or `Pomerium <t>` there).
pub fn programmatic_token(headers: &http::HeaderMap) -> Option<&str> {
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let v = v.trim();
            v.strip_prefix("Pomerium ")
                .or_else(|| v.strip_prefix("Bearer Pomerium-"))
                .map(str::trim)
        });
    let x = headers
        .get("x-pomerium-authorization")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim())
        .map(|v| v.strip_prefix("Pomerium ").unwrap_or(v));
    auth.or(x).filter(|t| !t.is_empty())
}

/// Which kind of identity-provider token a request presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IdpToken {
    /// An access token, checked at the provider's userinfo endpoint.
    Access,
    /// An ID token, checked against the provider's keys.
    Identity,
}

/// The identity-provider token of a request, in Pomerium's forms:
/// `X-Pomerium-IDP-Access-Token: <t>` and `Authorization:
/// Pomerium-IDP-Access-Token <t>` (and the same with `Identity`) always;
/// `Authorization: Bearer <t>` where the route's `bearer_token_format`
/// names a kind.
pub fn idp_token(headers: &http::HeaderMap, format: BearerTokenFormat) -> Option<(IdpToken, &str)> {
    let named = |name: &str| {
        headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|t| !t.is_empty())
    };
    if let Some(t) = named("x-pomerium-idp-access-token") {
        return Some((IdpToken::Access, t));
    }
    if let Some(t) = named("x-pomerium-idp-identity-token") {
        return Some((IdpToken::Identity, t));
    }
    let auth = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())?
        .trim();
    let (kind, token) = if let Some(t) = auth.strip_prefix("Pomerium-IDP-Access-Token ") {
        (IdpToken::Access, t)
    } else if let Some(t) = auth.strip_prefix("Pomerium-IDP-Identity-Token ") {
        (IdpToken::Identity, t)
    } else {
        let t = auth.strip_prefix("Bearer ")?;
        match format {
            _ if t.starts_with("Pomerium-") => return None,
            BearerTokenFormat::Default => return None,
            BearerTokenFormat::IdpAccessToken => (IdpToken::Access, t),
            BearerTokenFormat::IdpIdentityToken => (IdpToken::Identity, t),
        }
    };
    Some((kind, token.trim())).filter(|(_, t)| !t.is_empty())
}

/// Removes a programmatic token from a request going upstream, and with
/// `consumed_bearer` (the route reads `Bearer` tokens as credentials) any
/// `Authorization: Bearer`; an `Authorization` header of any other scheme is
/// the upstream's business.
pub fn remove_programmatic_token(headers: &mut http::HeaderMap, consumed_bearer: bool) {
    let ours = headers.get_all(header::AUTHORIZATION).iter().any(|v| {
        v.to_str().is_ok_and(|v| {
            let v = v.trim();
            v.starts_with("Pomerium ")
                || v.starts_with("Pomerium-IDP-")
                || v.starts_with("Bearer Pomerium-")
                || (consumed_bearer && v.starts_with("Bearer "))
        })
    });
    if ours {
        headers.remove(header::AUTHORIZATION);
    }
    headers.remove("x-pomerium-authorization");
}

/// Where a command-line client may receive its token: `http(s)` on a
/// loopback host (Pomerium's default `programmatic_redirect_domain_whitelist`).
pub fn validate_programmatic_redirect(raw: &str) -> Option<url::Url> {
    if raw.chars().any(|c| c.is_control() || c == '\\') {
        return None;
    }
    let url = url::Url::parse(raw).ok()?;
    let loopback = match url.host()? {
        url::Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    };
    (matches!(url.scheme(), "http" | "https")
        && loopback
        && url.username().is_empty()
        && url.password().is_none()
        && url.fragment().is_none())
    .then_some(url)
}
