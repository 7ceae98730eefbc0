//! The sign-in cookies: their names, the `Set-Cookie` form, and the nonce
//! a route host binds a sign-in to.

use base64::Engine as _;
use http::HeaderValue;
use sha2::{Digest, Sha256};

/// Name of the login-state cookies on the authenticate host: one per
/// sign-in, `_jetbridge_state_<start of the state>`, so sign-ins in several
/// tabs of one browser do not overwrite each other's state.
pub const STATE_COOKIE: &str = "_jetbridge_state";
/// Prefix of the nonce cookies on route hosts, one per sign-in, named
/// `__Host-jetbridge_login_<start of the nonce's hash>`. `__Host-` makes
/// browsers refuse the cookie unless it is host-only, Secure and `Path=/`,
/// so no other host (not even a sibling domain) can set or receive it.
pub const LOGIN_COOKIE_PREFIX: &str = "__Host-jetbridge_login_";
/// How many characters of a random value name its cookie.
pub(super) const COOKIE_ID_LEN: usize = 16;

/// Name of the browser-session cookie on the authenticate host: it carries
/// the session id and expiry that every route host's session of this
/// browser shares, so one sign-out ends them all.
pub const BROWSER_COOKIE: &str = "_jetbridge_sid";

/// A `Set-Cookie` value: host-only, Secure, HttpOnly, SameSite=Lax.
pub fn cookie_header(name: &str, value: &str, max_age: i64) -> Option<HeaderValue> {
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/; Max-Age={max_age}; Secure; HttpOnly; SameSite=Lax"
    ))
    .ok()
}

/// True for the cookies of sign-ins in progress (state on the authenticate
/// host, nonces on route hosts): never forwarded upstream.
pub fn is_sign_in_cookie(name: &str) -> bool {
    name.starts_with(LOGIN_COOKIE_PREFIX)
        || name
            .strip_prefix(STATE_COOKIE)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('_'))
}

/// The hash of a sign-in nonce that travels in its place (base64url SHA-256).
pub(super) fn binding_of(nonce: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(nonce.as_bytes()))
}

/// True for a well-formed binding (the form [`binding_of`] produces).
pub(super) fn is_binding(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The name of the nonce cookie of the sign-in with this binding.
pub(super) fn login_cookie_name(binding: &str) -> Option<String> {
    is_binding(binding).then(|| format!("{LOGIN_COOKIE_PREFIX}{}", &binding[..COOKIE_ID_LEN]))
}

/// The name of the state cookie of the sign-in with this `state`.
pub(super) fn state_cookie_name(state: &str) -> Option<String> {
    let id = state.get(..COOKIE_ID_LEN)?;
    id.bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        .then(|| format!("{STATE_COOKIE}_{id}"))
}

/// True when the request carries the nonce whose hash is `binding`.
pub(super) fn presents_nonce(headers: &http::HeaderMap, binding: &str) -> bool {
    login_cookie_name(binding)
        .and_then(|name| crate::proxy::headers::cookie(headers, &name).map(binding_of))
        .is_some_and(|presented| constant_time_eq(presented.as_bytes(), binding.as_bytes()))
}

/// Compares two byte strings in time independent of their content.
pub(super) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a, b).is_ok()
}
