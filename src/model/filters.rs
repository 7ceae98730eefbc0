//! Route behaviour as data: what forwarding on a route does to the request
//! and the response, compiled once when the route is built and applied by
//! one loop per request (the proxy's `filters` module).
//!
//! [`compile`] is pure: it reads a built [`Route`] and returns its
//! [`Compiled`] form. The filters keep the order the proxy has always
//! applied them in: removed headers, set headers, `${pomerium.*}`
//! templates, the assertion and identity headers, then Kubernetes
//! impersonation.

use super::rewrite::ResponseHeaderRewrite;
use super::{Route, UpstreamTls};
use crate::identity::IssuerFormat;
use http::{HeaderMap, HeaderName, HeaderValue};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// One step a route applies to a forwarded request's head.
#[derive(Clone, Debug, PartialEq)]
pub enum RequestFilter {
    /// Removes these headers (`remove_request_headers`).
    RemoveHeaders(Vec<HeaderName>),
    /// Sets these headers, replacing any sent (`set_request_headers`).
    SetHeaders(Vec<(HeaderName, HeaderValue)>),
    /// Appends these headers after any of the same name
    /// (`add_request_headers`).
    AppendHeaders(Vec<(HeaderName, HeaderValue)>),
    /// Fills `${pomerium.id_token}` / `${pomerium.access_token}` header
    /// templates from the session (routes whose templates do not name the
    /// assertion). Does nothing without a session.
    Templates(Vec<(HeaderName, String)>),
    /// Mints (or reuses) the route's assertion, fills the header templates
    /// and, with `pass_identity_headers`, sends the assertion and the claim
    /// headers. Does nothing without a session.
    Assertion(AssertionFilter),
    /// Removes client-sent `Impersonate-*` headers and, with a session,
    /// sends the route's service-account token and the user's
    /// `Impersonate-User` / `Impersonate-Group` (Kubernetes API routes).
    Impersonate(HeaderValue),
}

/// What the assertion step of a route needs.
#[derive(Clone, Debug, PartialEq)]
pub struct AssertionFilter {
    /// Header templates, filled with the assertion and the IdP's tokens.
    pub templates: Vec<(HeaderName, String)>,
    /// Send `X-Pomerium-Jwt-Assertion` and the claim headers.
    pub identity_headers: bool,
    /// (header, claim) pairs sent with `identity_headers`.
    pub claim_headers: Vec<(HeaderName, String)>,
    /// Groups kept in the assertion (`None`: all of them).
    pub groups: Option<Vec<String>>,
    /// How the assertion's `iss` is written.
    pub issuer: IssuerFormat,
}

impl AssertionFilter {
    /// The assertion step of `route`, as its fields say.
    pub fn of(route: &Route) -> AssertionFilter {
        AssertionFilter {
            templates: route.templated_request_headers.clone(),
            identity_headers: route.pass_identity_headers,
            claim_headers: route.jwt_claims_headers.clone(),
            groups: route.jwt_groups_filter.clone(),
            issuer: route.issuer_format,
        }
    }
}

/// One step a route applies to a forwarded response's head.
#[derive(Clone, Debug, PartialEq)]
pub enum ResponseFilter {
    /// Rewrites values starting with a prefix (`rewrite_response_headers`).
    RewriteHeaders(Vec<ResponseHeaderRewrite>),
    /// Sets headers; an empty value removes one (`set_response_headers`).
    SetHeaders(Vec<(HeaderName, HeaderValue)>),
    /// Appends headers after any of the same name (`add_response_headers`).
    AppendHeaders(Vec<(HeaderName, HeaderValue)>),
}

/// Request trailer names that must not bring back what the head was
/// cleaned of: the claim headers and the headers the route removes, sets
/// or appends.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TrailerRules {
    /// The route's (header, claim) pairs.
    pub claim_headers: Vec<(HeaderName, String)>,
    /// Removed, set and appended request header names.
    pub also: Vec<HeaderName>,
}

/// A route's upstream TLS settings, shared, with their hash computed once:
/// the proxy's client cache looks them up per attempt without cloning or
/// hashing certificate text.
#[derive(Clone, Debug)]
pub struct SharedTls {
    tls: Arc<UpstreamTls>,
    key: u64,
}

impl SharedTls {
    /// Shares `tls` and computes its key.
    pub fn new(tls: UpstreamTls) -> Self {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        tls.hash(&mut h);
        SharedTls {
            key: h.finish(),
            tls: Arc::new(tls),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &UpstreamTls {
        &self.tls
    }
}

impl Default for SharedTls {
    fn default() -> Self {
        SharedTls::new(UpstreamTls::default())
    }
}

impl PartialEq for SharedTls {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key && (Arc::ptr_eq(&self.tls, &other.tls) || self.tls == other.tls)
    }
}

impl Eq for SharedTls {}

impl Hash for SharedTls {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(self.key);
    }
}

/// A route's behaviour in the form the proxy applies it, derived from the
/// route's own fields by [`compile`].
#[derive(Clone, Default, PartialEq)]
pub struct Compiled {
    /// Applied in order to the forwarded request's head.
    pub request: Vec<RequestFilter>,
    /// Applied in order to the forwarded response's head.
    pub response: Vec<ResponseFilter>,
    /// What request trailers are cleaned of.
    pub trailers: Arc<TrailerRules>,
    /// The upstream TLS settings, keyed once.
    pub upstream_tls: SharedTls,
}

impl std::fmt::Debug for Compiled {
    // Derived from the route's other fields, which the snapshot fingerprint
    // already covers; printing it again would only double that work.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Compiled")
    }
}

/// Compiles a route's request and response filters, trailer rules and
/// shared TLS settings from its fields.
pub fn compile(route: &Route) -> Compiled {
    Compiled {
        request: request_filters(route),
        response: response_filters(route),
        trailers: Arc::new(trailer_rules(route)),
        upstream_tls: SharedTls::new(route.upstream_tls.clone()),
    }
}

/// Whether the route's forwarded requests carry its assertion: it passes
/// identity headers, or a header template names the assertion.
fn wants_assertion(route: &Route) -> bool {
    route.pass_identity_headers
        || route
            .templated_request_headers
            .iter()
            .any(|(_, t)| t.contains(super::ASSERTION))
}

fn request_filters(route: &Route) -> Vec<RequestFilter> {
    let mut filters = Vec::new();
    if !route.remove_request_headers.is_empty() {
        filters.push(RequestFilter::RemoveHeaders(
            route.remove_request_headers.clone(),
        ));
    }
    if !route.set_request_headers.is_empty() {
        filters.push(RequestFilter::SetHeaders(route.set_request_headers.clone()));
    }
    if !route.add_request_headers.is_empty() {
        filters.push(RequestFilter::AppendHeaders(
            route.add_request_headers.clone(),
        ));
    }
    if wants_assertion(route) {
        filters.push(RequestFilter::Assertion(AssertionFilter::of(route)));
    } else if !route.templated_request_headers.is_empty() {
        filters.push(RequestFilter::Templates(
            route.templated_request_headers.clone(),
        ));
    }
    if let Some(token) = &route.kubernetes_token {
        filters.push(RequestFilter::Impersonate(token.clone()));
    }
    filters
}

fn response_filters(route: &Route) -> Vec<ResponseFilter> {
    let mut filters = Vec::new();
    if !route.rewrite_response_headers.is_empty() {
        filters.push(ResponseFilter::RewriteHeaders(
            route.rewrite_response_headers.clone(),
        ));
    }
    if !route.set_response_headers.is_empty() {
        filters.push(ResponseFilter::SetHeaders(
            route.set_response_headers.clone(),
        ));
    }
    if !route.add_response_headers.is_empty() {
        filters.push(ResponseFilter::AppendHeaders(
            route.add_response_headers.clone(),
        ));
    }
    filters
}

fn trailer_rules(route: &Route) -> TrailerRules {
    TrailerRules {
        claim_headers: route.jwt_claims_headers.clone(),
        also: route
            .remove_request_headers
            .iter()
            .chain(route.set_request_headers.iter().map(|(n, _)| n))
            .chain(route.add_request_headers.iter().map(|(n, _)| n))
            .cloned()
            .collect(),
    }
}

/// Applies response filters in order.
pub fn apply_response_filters(filters: &[ResponseFilter], headers: &mut HeaderMap) {
    for f in filters {
        match f {
            ResponseFilter::RewriteHeaders(r) => super::rewrite::rewrite_headers(headers, r),
            ResponseFilter::SetHeaders(s) => super::rewrite::set_headers(headers, s),
            ResponseFilter::AppendHeaders(a) => {
                for (n, v) in a {
                    headers.append(n.clone(), v.clone());
                }
            }
        }
    }
}

#[cfg(test)]
#[path = "filters_tests.rs"]
mod tests;
