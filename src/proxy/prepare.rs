//! The prepare stage: turns an admitted request's head into the head sent
//! upstream, synchronously and without I/O. Upgrades are decided, the head
//! is cleaned of hop-by-hop headers, identity look-alikes and the proxy's
//! own credentials, the route's filters are applied, and the forwarded
//! path, `Host` and balancing key are worked out once for every attempt.

use super::auth;
use super::error::ProxyError;
use super::filters::{FilterCx, apply_request_filters};
use super::headers;
use super::request::{Admitted, ConnInfo};
use crate::model::rewrite::HostRewrite;
use crate::model::{BearerTokenFormat, LoadBalancing, Route, Snapshot};
use http::request::Parts;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, header};
use std::borrow::Cow;

/// The request id the upstream gets (a name, so it is not parsed per request).
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// A request head ready to send: what every attempt at a target shares.
pub(crate) struct Prepared<'a> {
    /// The route forwarded on.
    pub route: &'a Route,
    /// The cleaned head (its URI and `Host` are set per target).
    pub parts: Parts,
    /// The client side of an upgrade the route allows.
    pub upgrade: Option<hyper::upgrade::OnUpgrade>,
    /// The forwarded path and query.
    pub path_and_query: String,
    /// The forwarded `Host`; `None`: the target's address.
    pub host: Option<HeaderValue>,
    /// The consistent hash's key (empty for other balancing policies).
    pub affinity: Cow<'a, str>,
    /// Whether another target may be tried after a failed connection.
    pub retryable: bool,
}

/// The request's inputs the prepare stage reads besides its head.
pub(crate) struct Inputs<'a> {
    /// The snapshot the request is served from.
    pub snapshot: &'a Snapshot,
    /// The client connection.
    pub conn: &'a ConnInfo,
    /// The request id, sent as `X-Request-Id`.
    pub id: &'a str,
    /// Unix time in seconds.
    pub now: i64,
}

/// Prepares an admitted request's head for forwarding on its route.
pub(crate) fn prepare<'a>(
    input: &Inputs<'_>,
    admitted: &'a Admitted<'a>,
    mut parts: Parts,
) -> Result<Prepared<'a>, ProxyError> {
    let route = admitted.route;
    let upgrade = allowed_upgrade(route, &parts)?;
    let client_upgrade = upgrade
        .as_ref()
        .map(|_| hyper::upgrade::on(Request::from_parts(parts.clone(), ())));
    let original_host = routed_host(&parts);
    clean_head(
        input,
        route,
        &admitted.target.host,
        upgrade.as_deref(),
        &mut parts.headers,
    );
    let cx = FilterCx {
        snapshot: input.snapshot,
        route: &route.id,
        host: &admitted.target.host,
        session: admitted.session.as_ref(),
        now: input.now,
    };
    apply_request_filters(&route.compiled.request, &cx, &mut parts.headers)?;
    let host = forwarded_host(route, &admitted.target.path, &parts.headers, original_host);
    let retryable = body_is_empty(&parts) && upgrade.is_none();
    Ok(Prepared {
        route,
        path_and_query: forwarded_target(route, admitted),
        host,
        affinity: affinity(admitted, input.conn),
        retryable,
        upgrade: client_upgrade,
        parts,
    })
}

/// An upgrade the route allows is passed through; a WebSocket one it does
/// not allow is refused; any other is forwarded as a plain request.
fn allowed_upgrade(route: &Route, parts: &Parts) -> Result<Option<String>, ProxyError> {
    Ok(match upgrade_protocol(parts.version, &parts.headers) {
        Some(p) if p == "websocket" && !route.allow_websockets => {
            return Err(ProxyError::UpgradeNotAllowed);
        }
        Some(p) if p == "websocket" || route.allow_upgrades.contains(&p) => Some(p),
        _ => None,
    })
}

/// The host the request was routed by: the target's authority (an
/// absolute-form target, or `:authority`) wins over `Host`, as in
/// `request_host`, so the upstream never gets a host another route's
/// policy was meant for.
fn routed_host(parts: &Parts) -> Option<HeaderValue> {
    parts
        .uri
        .authority()
        .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
        .or_else(|| parts.headers.get(header::HOST).cloned())
}

/// Header hygiene every route gets: hop-by-hop headers (but an allowed
/// upgrade), identity and path-override look-alikes, the proxy's cookies
/// and consumed tokens go; `X-Forwarded-*` and `X-Request-Id` are set.
fn clean_head(
    input: &Inputs<'_>,
    route: &Route,
    host: &str,
    upgrade: Option<&str>,
    h: &mut HeaderMap,
) {
    headers::remove_hop_by_hop(h, upgrade.is_some());
    if let Some(p) = upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        if let Ok(v) = HeaderValue::from_str(p) {
            h.insert(header::UPGRADE, v);
        }
    }
    headers::strip_identity_headers(h, &route.jwt_claims_headers);
    headers::strip_path_overrides(h);
    let cookie_name = &input.snapshot.auth.cookie_name;
    headers::remove_cookies_where(h, |name| {
        name == cookie_name || auth::cookies::is_sign_in_cookie(name)
    });
    // A `Bearer` token the route reads as a credential stops here.
    let consumed = route.uses_session() && route.bearer_token_format != BearerTokenFormat::Default;
    auth::credentials::remove_programmatic_token(h, consumed);
    let conn = input.conn;
    let client = headers::IpText::new(conn.client);
    headers::set_forwarded(
        h,
        conn.forwarded_for.as_ref(),
        client.as_str(),
        host,
        if conn.tls { "https" } else { "http" },
    );
    if let Ok(v) = HeaderValue::from_str(input.id) {
        h.insert(X_REQUEST_ID, v);
    }
}

/// The forwarded path (rewritten; routing and policy used the client's)
/// and the query as sent.
fn forwarded_target(route: &Route, a: &Admitted<'_>) -> String {
    let path = route.path_rewrite.apply(&a.target.path);
    let mut pq = String::with_capacity(path.len() + 16);
    pq.push_str(&path);
    if let Some(q) = &a.target.query {
        pq.push('?');
        pq.push_str(q);
    }
    pq
}

/// The forwarded `Host`, from the route's host rewrite (`None`: the
/// target's address).
fn forwarded_host(
    route: &Route,
    path: &str,
    h: &HeaderMap,
    original: Option<HeaderValue>,
) -> Option<HeaderValue> {
    match &route.host_rewrite {
        HostRewrite::Upstream => None,
        HostRewrite::Preserve => original,
        HostRewrite::Literal(v) => Some(v.clone()),
        // Envoy's: without the header the client's Host is kept.
        HostRewrite::FromHeader(n) => h.get(n).cloned().or(original),
        HostRewrite::PathRegex {
            pattern,
            substitution,
        } => HeaderValue::from_str(&pattern.replace_all(path, substitution)).ok(),
    }
}

/// The consistent hash's key: the session, else the client address; other
/// policies need none.
fn affinity<'a>(a: &'a Admitted<'a>, conn: &ConnInfo) -> Cow<'a, str> {
    match (&a.session, a.route.load_balancing) {
        (_, policy) if policy != LoadBalancing::ConsistentHash => "".into(),
        (Some(s), _) => s.id.as_str().into(),
        (None, _) => conn.client.to_string().into(),
    }
}

/// Whether the request has no body, so its head may be sent again.
fn body_is_empty(parts: &Parts) -> bool {
    let cl = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.trim() == "0");
    match cl {
        Some(zero) => zero,
        None => {
            !parts.headers.contains_key(header::TRANSFER_ENCODING)
                && matches!(
                    parts.method,
                    Method::GET | Method::HEAD | Method::OPTIONS | Method::DELETE
                )
        }
    }
}

/// The protocol an HTTP/1.1 request asks to upgrade to (lower case), if it
/// carries `Connection: upgrade` and one `Upgrade` token.
fn upgrade_protocol(version: http::Version, headers: &HeaderMap) -> Option<String> {
    if version != http::Version::HTTP_11 {
        return None;
    }
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        });
    if !connection_upgrade {
        return None;
    }
    let mut values = headers.get_all(header::UPGRADE).iter();
    let first = values.next()?.to_str().ok()?.trim().to_ascii_lowercase();
    (values.next().is_none() && !first.is_empty() && !first.contains(',')).then_some(first)
}

#[cfg(test)]
#[path = "prepare_tests.rs"]
mod tests;
