//! Config files for the tests, built from the product's own config types
//! (`jetbridge::settings`) and written as YAML by serde: a test config holds
//! only keys the proxy knows, and a typo is a compile error.
//!
//! Start from [`config`] (the fixed cookie secret and a list of routes) and
//! the route builders ([`public_route`], [`signed_in_route`], [`route`]);
//! set anything else with struct update syntax:
//!
//! ```ignore
//! let c = config([RouteConfig { prefix: Some("/app".into()), ..public_route(host, &to) }]);
//! Harness::start(&c).await;
//! ```
//!
//! Text that is not a valid config on purpose (parse errors, refused keys)
//! stays text: [`ConfigText`] takes both.

use base64::Engine as _;
pub use jetbridge::settings::{
    ClaimsHeaders, ConfigFile, DownstreamMtls, RewriteHeader, RouteConfig,
};
use std::collections::BTreeMap;

/// The cookie secret every test config uses.
pub const COOKIE_SECRET: [u8; 32] = [7; 32];

/// `cookie_secret` as it appears in the YAML.
pub fn cookie_secret_b64() -> String {
    base64::engine::general_purpose::STANDARD.encode(COOKIE_SECRET)
}

/// A config with the fixed cookie secret and these routes.
pub fn config(routes: impl IntoIterator<Item = RouteConfig>) -> ConfigFile {
    ConfigFile {
        cookie_secret: Some(cookie_secret_b64()),
        routes: routes.into_iter().collect(),
        ..Default::default()
    }
}

/// A route from `https://{host}` to `to` with no access rule (nobody gets in
/// until one is set).
pub fn route(host: &str, to: &str) -> RouteConfig {
    RouteConfig {
        from: format!("https://{host}"),
        to: vec![to.to_string()],
        ..Default::default()
    }
}

/// A route from `https://{host}` to `to`, open to anyone.
pub fn public_route(host: &str, to: &str) -> RouteConfig {
    RouteConfig {
        allow_public_unauthenticated_access: true,
        ..route(host, to)
    }
}

/// A route from `https://{host}` to `to`, for any signed-in user.
pub fn signed_in_route(host: &str, to: &str) -> RouteConfig {
    RouteConfig {
        allow_any_authenticated_user: true,
        ..route(host, to)
    }
}

/// A route from `https://{host}` to `to` for any signed-in user, with the
/// identity headers (the assertion) passed to the upstream.
pub fn identity_route(host: &str, to: &str) -> RouteConfig {
    RouteConfig {
        pass_identity_headers: Some(true),
        ..signed_in_route(host, to)
    }
}

/// A route given as a config file's `key: value` lines (each value as YAML),
/// for tests whose subject is the keys' text, e.g. the same text as an
/// Ingress annotation.
pub fn route_from_keys(
    host: &str,
    to: &str,
    keys: impl IntoIterator<Item = (impl AsRef<str>, impl AsRef<str>)>,
) -> RouteConfig {
    let lines: String = keys
        .into_iter()
        .map(|(k, v)| format!("{}: {}\n", k.as_ref(), v.as_ref()))
        .collect();
    let text = format!("from: https://{host}\nto: {to}\n{lines}");
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("test route {text:?}: {e}"))
}

/// `jwt_claims_headers` as a map, header → claim, in this order.
pub fn claims_headers(pairs: &[(&str, &str)]) -> Option<ClaimsHeaders> {
    Some(ClaimsHeaders(
        pairs
            .iter()
            .map(|(h, c)| (h.to_string(), c.to_string()))
            .collect(),
    ))
}

/// `jwt_claims_headers` as Pomerium's list of claims: each to
/// `x-pomerium-claim-<claim>`.
pub fn claim_list(claims: &[&str]) -> Option<ClaimsHeaders> {
    Some(ClaimsHeaders(
        claims
            .iter()
            .map(|c| (format!("x-pomerium-claim-{c}"), c.to_string()))
            .collect(),
    ))
}

/// A header map (`set_request_headers`, `set_response_headers`, …).
pub fn headers(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A list of strings (`allowed_users`, `remove_request_headers`, …).
pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// A value given as the YAML (or JSON) a config file holds: Envoy messages
/// (`health_checks`, `outlier_detection`, …).
pub fn yaml_value(text: &str) -> Option<serde_json::Value> {
    Some(serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("test value {text:?}: {e}")))
}

/// A PPL `policy`, given as the YAML a config file holds.
pub fn ppl(text: &str) -> Option<serde_json::Value> {
    yaml_value(text)
}

/// `to` for several plain-HTTP targets (`host:port` each).
pub fn http_targets(authorities: &[impl std::fmt::Display]) -> Vec<String> {
    authorities.iter().map(|a| format!("http://{a}")).collect()
}

/// The text of a config file: a typed [`ConfigFile`] written by serde, or
/// text kept as it is (a config that is wrong on purpose).
pub trait ConfigText {
    fn text(&self) -> String;
}

impl ConfigText for ConfigFile {
    fn text(&self) -> String {
        serde_saphyr::to_string(self).expect("a test config serialises")
    }
}

impl ConfigText for str {
    fn text(&self) -> String {
        self.to_string()
    }
}

impl ConfigText for String {
    fn text(&self) -> String {
        self.clone()
    }
}
