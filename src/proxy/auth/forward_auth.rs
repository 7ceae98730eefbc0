//! Forward-auth mode: the proxy as the authentication service of another
//! proxy (nginx `auth_request`, Caddy `forward_auth`, Traefik
//! `ForwardAuth`), with the contract Pomerium had until v0.20.
//!
//! On the host of `forward_auth_url` every request is a check of one URL,
//! given as `?uri=<url>` or, from Caddy and Traefik, as the
//! `X-Forwarded-Proto`, `X-Forwarded-Host` and `X-Forwarded-Uri` headers:
//!
//! - allowed: 200 with `X-Pomerium-Jwt-Assertion` (and the route's claim
//!   headers) for the front proxy to copy to its upstream;
//! - no session: 401 on `/verify` (nginx answers it with its own redirect),
//!   else a redirect that starts sign-in on the URL's own host;
//! - denied, or a URL no route serves: 403 with the reason.
//!
//! The session cookie belongs to the front proxy's host: the check reads
//! the cookie the browser sent there (the front proxy passes the request's
//! headers on), and sign-in ends on that host's `/.pomerium/callback`,
//! which the front proxy forwards to this proxy, like every `/.pomerium/`
//! path. So a sign-in starts there too ([`SIGN_IN_PATH`]): the nonce that
//! binds the sign-in to the browser is set on the host that receives the
//! hand-off.
//!
//! The Gateway API `ExternalAuth` filter's HTTP form asks another way: it
//! sends the original request's method, `Host` and path, the path behind
//! the filter's `http.path` prefix, to the auth Service. With that prefix
//! set to [`EXTERNAL_AUTH_PREFIX`], the request reaches this proxy on the
//! route's host, and is a check of `https://<host><path>` answered as `/`
//! answers (a browser without a session is redirected to sign in, which the
//! Gateway passes on).
//!
//! Every URL is checked before it is used: an absolute `https` URL, no
//! credentials, control characters or backslashes, on a host some route
//! names. A redirect only ever goes to such a URL on the host it was asked
//! on.

use super::endpoints::{https_url, query_param, redirect, start_sign_in};
use crate::identity::session::Session;
use crate::model::Snapshot;
use crate::model::pathnorm::normalize_path;
use crate::model::routing::normalize_host;
use crate::proxy::body::{Body, empty};
use crate::proxy::error::{ProxyError, error_response};
use crate::proxy::request::Target;
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};

/// The check that answers 401 instead of redirecting (nginx `auth_request`).
pub const VERIFY_PATH: &str = "/verify";
/// On a route host, reached through the front proxy: starts sign-in for
/// `?uri=` with this host's nonce cookie.
pub const SIGN_IN_PATH: &str = "/.pomerium/forward_auth/sign_in";
/// On a route host, reached through a Gateway API `ExternalAuth` filter
/// (HTTP form) whose `http.path` is this prefix: a check of the URL made of
/// the request's host and its path after the prefix, with its method.
pub const EXTERNAL_AUTH_PREFIX: &str = "/.pomerium/external_auth";
/// The query parameter naming the URL checked.
const URI_PARAM: &str = "uri";

/// What a check answers when there is no session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// `/verify`: 401.
    Verify,
    /// `/`: a redirect to sign in.
    Redirect,
}

/// One forward-auth check: the URL asked about, as routing and policy see it.
pub(crate) struct Check {
    pub mode: Mode,
    /// The checked URL (absolute, https, on a route host).
    pub url: String,
    /// Its normalised host and path, and its query.
    pub target: Target,
    /// The method of the original request (`X-Forwarded-Method`, else GET).
    pub method: Method,
}

impl Check {
    /// Reads the check a request on the forward-auth host asks for.
    pub fn read<B>(
        snapshot: &Snapshot,
        req: &Request<B>,
        target: &Target,
    ) -> Result<Check, ProxyError> {
        let query = target.query.as_deref();
        let mode = match target.path.as_str() {
            VERIFY_PATH | "/verify/" => Mode::Verify,
            "/" => Mode::Redirect,
            _ => {
                return Err(ProxyError::ForwardAuthRefused(
                    "not a forward-auth endpoint: use /verify?uri=<url> or /?uri=<url>".into(),
                ));
            }
        };
        let raw = match query_param(query, URI_PARAM) {
            Some(u) => only_param(query, u)?,
            None => forwarded_url(req.headers())?,
        };
        let (url, target) = checked_url(snapshot, &raw)?;
        let method = req
            .headers()
            .get("x-forwarded-method")
            .and_then(|v| Method::from_bytes(v.as_bytes()).ok())
            .unwrap_or(Method::GET);
        Ok(Check {
            mode,
            url,
            target,
            method,
        })
    }

    /// Reads the check a Gateway API `ExternalAuth` filter (HTTP form) asks
    /// for on a route host: `None` when the path is not under
    /// [`EXTERNAL_AUTH_PREFIX`].
    pub fn external_auth<B>(
        snapshot: &Snapshot,
        req: &Request<B>,
        target: &Target,
    ) -> Option<Result<Check, ProxyError>> {
        let rest = target.path.strip_prefix(EXTERNAL_AUTH_PREFIX)?;
        if !(rest.is_empty() || rest.starts_with('/')) {
            return None;
        }
        let path = if rest.is_empty() { "/" } else { rest };
        let query = target.query.as_deref().map(|q| format!("?{q}"));
        // The Host the Gateway sends (with its port), else the target's.
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|v| v.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or(&target.host);
        let raw = format!("https://{host}{path}{}", query.unwrap_or_default());
        Some(checked_url(snapshot, &raw).map(|(url, target)| Check {
            mode: Mode::Redirect,
            url,
            target,
            method: req.method().clone(),
        }))
    }

    /// Where a browser without a session signs in: the sign-in start on
    /// the checked URL's own host (through the front proxy).
    fn sign_in_url(&self) -> String {
        let origin = url::Url::parse(&self.url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_default();
        let mut q = url::form_urlencoded::Serializer::new(String::new());
        q.append_pair(URI_PARAM, &self.url);
        format!("{origin}{SIGN_IN_PATH}?{}", q.finish())
    }

    /// The redirect to [`Check::sign_in_url`].
    pub fn sign_in_redirect(&self) -> Response<Body> {
        redirect(&self.sign_in_url())
    }

    /// 401, naming [`Check::sign_in_url`] in `Location`, so a front proxy
    /// can send the browser there (nginx: `auth_request_set` from
    /// `$upstream_http_location`, then `return 302`).
    pub fn unauthenticated(&self, id: &str, json: bool) -> Response<Body> {
        let mut r = error_response(&ProxyError::Unauthenticated, id, json);
        if let Ok(v) = HeaderValue::from_str(&self.sign_in_url()) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r.headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        r
    }
}

/// The `uri` parameter, refused when the query holds anything else: a URL
/// passed without percent-encoding (nginx's `$request_uri`) is cut at its
/// first `&` (and its `+` read as spaces), so its path could be checked
/// other than the front proxy serves it.
fn only_param(query: Option<&str>, uri: String) -> Result<String, ProxyError> {
    let params = url::form_urlencoded::parse(query.unwrap_or("").as_bytes()).count();
    if params != 1 || uri.contains(' ') {
        return Err(ProxyError::ForwardAuthRefused(
            "uri refused: it must be the only query parameter, percent-encoded (or send \
             X-Forwarded-Proto, X-Forwarded-Host and X-Forwarded-Uri instead)"
                .into(),
        ));
    }
    Ok(uri)
}

/// The URL the `X-Forwarded-*` headers name (Caddy, Traefik).
fn forwarded_url(h: &HeaderMap) -> Result<String, ProxyError> {
    let get = |name: &str| h.get(name).and_then(|v| v.to_str().ok());
    let (Some(proto), Some(host)) = (get("x-forwarded-proto"), get("x-forwarded-host")) else {
        return Err(ProxyError::ForwardAuthRefused(
            "no URL to check: send ?uri=<url>, or X-Forwarded-Proto, X-Forwarded-Host and \
             X-Forwarded-Uri"
                .into(),
        ));
    };
    let uri = get("x-forwarded-uri").unwrap_or("/");
    if !uri.starts_with('/') || uri.starts_with("//") {
        return Err(ProxyError::ForwardAuthRefused(
            "X-Forwarded-Uri must be a path starting with a single /".into(),
        ));
    }
    Ok(format!("{proto}://{host}{uri}"))
}

/// Checks a URL a forward-auth request names: absolute, https, without
/// credentials, control characters or backslashes, on a host some route
/// names. Returns it as written by the URL parser, and its target.
pub(crate) fn checked_url(snapshot: &Snapshot, raw: &str) -> Result<(String, Target), ProxyError> {
    let refuse = |why: &str| ProxyError::ForwardAuthRefused(format!("uri refused: {why}"));
    let (url, host) = https_url(raw).map_err(refuse)?;
    let host = normalize_host(&host).ok_or_else(|| refuse("no host name"))?;
    if !snapshot.table.host_known(&host) {
        return Err(ProxyError::ForwardAuthRefused(format!(
            "uri refused: no route serves {host}"
        )));
    }
    let path = normalize_path(url.path())
        .map_err(|e| refuse(&e.to_string()))?
        .path;
    let target = Target {
        host,
        path,
        query: url.query().map(str::to_string),
    };
    Ok((url.to_string(), target))
}

/// The answer to an allowed check: 200 with the identity headers.
pub fn allowed(headers: HeaderMap) -> Response<Body> {
    let mut r = Response::new(empty());
    *r.headers_mut() = headers;
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// [`SIGN_IN_PATH`] on a route host: with a session (of the route's
/// OAuth client) back to `uri`, else off to sign in, bound to this browser
/// by a nonce cookie on this host. `uri` must be on this host.
pub fn start(
    snapshot: &Snapshot,
    host: &str,
    query: Option<&str>,
    session: Option<&Session>,
) -> Result<Response<Body>, ProxyError> {
    let raw = query_param(query, URI_PARAM)
        .ok_or_else(|| ProxyError::BadRequest("missing uri".into()))?;
    let (url, target) =
        checked_url(snapshot, &raw).map_err(|e| ProxyError::BadRequest(e.to_string()))?;
    if target.host != host {
        return Err(ProxyError::BadRequest(format!(
            "uri refused: not on {host}"
        )));
    }
    let idp = snapshot
        .route(host, &target.path)
        .map_or("", |r| r.idp_id());
    if session.is_some_and(|s| s.idp == idp) {
        return Ok(redirect(&url));
    }
    start_sign_in(snapshot, &url, idp).ok_or(ProxyError::Unauthenticated)
}
