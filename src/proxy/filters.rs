//! Applies a route's compiled request filters ([`RequestFilter`]) to a
//! forwarded request's head, in order, in one loop: removed, set and
//! appended headers, `${pomerium.*}` templates, the assertion and identity headers,
//! Kubernetes impersonation.

use super::assertions;
use super::error::ProxyError;
use crate::identity::jwt;
use crate::identity::session::Session;
use crate::model::Snapshot;
use crate::model::filters::{AssertionFilter, RequestFilter};
use http::{HeaderMap, HeaderName, HeaderValue, header};

/// What the filters read about the request besides its headers.
pub(crate) struct FilterCx<'a> {
    /// The snapshot the request is served from (signing keys, generation).
    pub snapshot: &'a Snapshot,
    /// The route's id (assertion cache key, logs).
    pub route: &'a str,
    /// The normalised request host: the assertion's audience.
    pub host: &'a str,
    /// The user's session, if any.
    pub session: Option<&'a Session>,
    /// Unix time in seconds.
    pub now: i64,
}

/// Applies `filters` to `h` in order.
pub(crate) fn apply_request_filters(
    filters: &[RequestFilter],
    cx: &FilterCx<'_>,
    h: &mut HeaderMap,
) -> Result<(), ProxyError> {
    for f in filters {
        match f {
            RequestFilter::RemoveHeaders(names) => {
                for n in names {
                    h.remove(n);
                }
            }
            RequestFilter::SetHeaders(set) => {
                for (n, v) in set {
                    h.insert(n.clone(), v.clone());
                }
            }
            RequestFilter::AppendHeaders(add) => {
                for (n, v) in add {
                    h.append(n.clone(), v.clone());
                }
            }
            RequestFilter::Templates(templates) => {
                if let Some(s) = cx.session {
                    fill_templates(h, templates, cx.route, s, "");
                }
            }
            RequestFilter::Assertion(a) => {
                if let Some(s) = cx.session {
                    assertion(h, a, cx, s)?;
                }
            }
            RequestFilter::Impersonate(token) => impersonate(h, token, cx.session),
        }
    }
    Ok(())
}

/// The headers a forward-auth answer hands the front proxy for `s` on
/// `route`: the assertion and the route's claim headers, whatever the
/// route's `pass_identity_headers` says (the front proxy copies them to
/// its upstream).
pub(crate) fn identity_headers(
    route: &crate::model::Route,
    cx: &FilterCx<'_>,
    s: &Session,
) -> Result<HeaderMap, ProxyError> {
    let a = AssertionFilter {
        templates: Vec::new(),
        identity_headers: true,
        ..AssertionFilter::of(route)
    };
    let mut h = HeaderMap::new();
    assertion(&mut h, &a, cx, s)?;
    Ok(h)
}

/// The assertion step: mints (or reuses) the route's assertion for the
/// session, fills the templates, and with identity headers sends the
/// assertion and the claim headers.
fn assertion(
    h: &mut HeaderMap,
    a: &AssertionFilter,
    cx: &FilterCx<'_>,
    s: &Session,
) -> Result<(), ProxyError> {
    let key = assertions::Key {
        session_id: &s.id,
        session_refreshed: s.refresh_at,
        route: cx.route,
        host: cx.host,
        generation: cx.snapshot.generation,
    };
    let minted = assertions::get_or_mint(key, cx.now, || {
        let mut identity = s.identity();
        if let Some(keep) = &a.groups {
            identity.groups.retain(|g| keep.contains(g));
        }
        let (token, claims) = jwt::mint(
            &cx.snapshot.identity.keys,
            &identity,
            cx.host,
            a.issuer,
            cx.now,
        )
        .map_err(|e| ProxyError::Identity(e.to_string()))?;
        let token =
            HeaderValue::from_str(&token).map_err(|e| ProxyError::Identity(e.to_string()))?;
        Ok((token, claims))
    })?;
    fill_templates(
        h,
        &a.templates,
        cx.route,
        s,
        minted.token.to_str().unwrap_or_default(),
    );
    if a.identity_headers {
        h.insert("x-pomerium-jwt-assertion", minted.token.clone());
        for (name, claim) in &a.claim_headers {
            let value = minted
                .claims
                .header_value(claim)
                .or_else(|| s.claims.get(claim).map(claim_text));
            if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                h.insert(name.clone(), v);
            }
        }
    }
    Ok(())
}

/// The impersonation step: only the proxy says whom the Kubernetes API is
/// acting for, so client-sent `Impersonate-*` headers always go; with a
/// session, the route's token and the user's identity are sent.
fn impersonate(h: &mut HeaderMap, token: &HeaderValue, session: Option<&Session>) {
    let spoofed: Vec<HeaderName> = h
        .keys()
        .filter(|n| {
            n.as_str()
                .replace(['_', '.'], "-")
                .starts_with("impersonate-")
        })
        .cloned()
        .collect();
    for n in spoofed {
        h.remove(&n);
    }
    if let Some(s) = session {
        h.insert(header::AUTHORIZATION, token.clone());
        let user = if s.email.is_empty() { &s.sub } else { &s.email };
        if let Ok(v) = HeaderValue::from_str(user) {
            h.insert("impersonate-user", v);
        }
        for g in &s.groups {
            if let Ok(v) = HeaderValue::from_str(g) {
                h.append("impersonate-group", v);
            }
        }
    }
}

/// Sets the route's `${pomerium.*}` request headers: the assertion, and the
/// IdP's tokens the session kept. A header whose token the session does not
/// have (it was too large for the cookie, or the session predates the
/// route's asking for it) is left out, never sent empty.
fn fill_templates(
    h: &mut HeaderMap,
    templates: &[(HeaderName, String)],
    route: &str,
    s: &Session,
    assertion: &str,
) {
    let tokens = s.idp_tokens.as_ref();
    let id_token = tokens.and_then(|t| t.id_token.as_deref());
    let access_token = tokens.and_then(|t| t.access_token.as_deref());
    for (name, template) in templates {
        let mut value = template.replace(crate::model::ASSERTION, assertion);
        for (placeholder, token) in [
            (crate::model::IDP_ID_TOKEN, id_token),
            (crate::model::IDP_ACCESS_TOKEN, access_token),
        ] {
            if value.contains(placeholder) {
                match token {
                    Some(t) => value = value.replace(placeholder, t),
                    None => {
                        tracing::warn!(route = %route, header = %name, sid = %s.id, "the session has no IdP token for this header; header left out");
                        value.clear();
                        break;
                    }
                }
            }
        }
        if value.is_empty() {
            continue;
        }
        if let Ok(mut v) = HeaderValue::from_str(&value) {
            v.set_sensitive(true);
            h.insert(name.clone(), v);
        }
    }
}

/// A claim as a header value: strings as they are, lists comma-joined,
/// anything else as JSON.
fn claim_text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(a) => a
            .iter()
            .map(|x| match x {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .collect::<Vec<_>>()
            .join(","),
        other => other.to_string(),
    }
}
