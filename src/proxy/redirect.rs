//! Redirects the proxy answers itself:
//!
//! - the HTTP → HTTPS redirect the plain-HTTP listener answers for every
//!   request it serves no route for ([`redirect_to_https`]);
//! - a route that redirects ([`answer`]): an admitted request gets the
//!   route's status and a `Location` built by
//!   [`crate::model::redirect::Redirect::location`] from the route's checked
//!   settings and the request's normalised host and path. Policy has
//!   already run (as in Pomerium, where authorization precedes the route's
//!   action).

use super::body::{Body, empty, full};
use super::request::{ConnInfo, Target};
use crate::model::redirect::{Redirect, RequestUrl, Scheme};
use crate::model::routing::normalize_host;
use http::request::Parts;
use http::{HeaderValue, Request, Response, StatusCode, header};

/// The HTTP → HTTPS redirect response (308 keeps the method), to the same
/// host on `https_port`: the HTTPS port users reach, left out when 443.
pub fn redirect_to_https<B>(req: &Request<B>, https_port: u16) -> Response<Body> {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .and_then(normalize_host);
    let Some(host) = host else {
        let mut r = Response::new(full("missing or invalid Host header\n"));
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return r;
    };
    let pq = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let pq = if pq.starts_with('/') { pq } else { "/" };
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host
    };
    let location = if https_port == 443 {
        format!("https://{host}{pq}")
    } else {
        format!("https://{host}:{https_port}{pq}")
    };
    let mut r = Response::new(empty());
    *r.status_mut() = StatusCode::PERMANENT_REDIRECT;
    if let Ok(v) = HeaderValue::from_str(&location) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    r
}

/// The redirect answer to the request `target` and `parts` describe.
pub(crate) fn answer(
    r: &Redirect,
    target: &Target,
    parts: &Parts,
    conn: &ConnInfo,
) -> Response<Body> {
    let url = RequestUrl {
        scheme: if conn.tls {
            Scheme::Https
        } else {
            Scheme::Http
        },
        host: &target.host,
        port: requested_port(parts),
        path: &target.path,
        query: target.query.as_deref(),
    };
    let mut resp = Response::new(empty());
    *resp.status_mut() = r.status;
    // Built from checked parts: a value that still fails is left out.
    if let Ok(v) = HeaderValue::from_str(&r.location(&url)) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from_static("0"));
    resp
}

/// The port the client named (the request target's authority, else
/// `Host`): the listener it came to. `None` when it named none.
fn requested_port(parts: &Parts) -> Option<u16> {
    let authority = match parts.uri.authority() {
        Some(a) => a.as_str().to_string(),
        None => parts.headers.get(header::HOST)?.to_str().ok()?.to_string(),
    };
    let (_, port) = authority.rsplit_once(':')?;
    match port.parse::<u16>() {
        Ok(p) if !authority.ends_with(']') => Some(p),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::translate::fixtures::one_route;

    fn parts(host: &str) -> Parts {
        http::Request::builder()
            .uri("/old/x?q=1")
            .header(header::HOST, host)
            .body(())
            .unwrap()
            .into_parts()
            .0
    }

    fn conn(tls: bool) -> ConnInfo {
        ConnInfo::new(
            "192.0.2.7:5000".parse().unwrap(),
            tls,
            match tls {
                true => crate::proxy::request::Listener::Tls,
                false => crate::proxy::request::Listener::Plain,
            },
        )
    }

    fn target() -> Target {
        Target {
            host: "app.example.com".into(),
            path: "/old/x".into(),
            query: Some("q=1".into()),
        }
    }

    #[test]
    fn a_configured_redirect_answers_with_its_status_and_location() {
        let s = one_route(
            "    allow_public_unauthenticated_access: true\n    redirect:\n      \
             host_redirect: example.org\n      prefix_rewrite: /new\n      response_code: 302\n",
        );
        let r = s.routes[0].redirect.as_ref().expect("a redirect");
        let resp = answer(r, &target(), &parts("app.example.com:8080"), &conn(false));
        assert_eq!(resp.status(), 302);
        assert_eq!(
            resp.headers()[header::LOCATION],
            "http://example.org:8080/new/old/x?q=1"
        );
        let resp = answer(r, &target(), &parts("app.example.com"), &conn(true));
        assert_eq!(
            resp.headers()[header::LOCATION],
            "https://example.org/new/old/x?q=1"
        );
    }

    #[test]
    fn https_redirect_uses_the_well_known_port_and_envoy_codes_are_read() {
        let s = one_route(
            "    allow_public_unauthenticated_access: true\n    redirect:\n      \
             https_redirect: true\n      response_code: 4\n      strip_query: true\n",
        );
        let r = s.routes[0].redirect.as_ref().expect("a redirect");
        let resp = answer(r, &target(), &parts("app.example.com:8080"), &conn(false));
        assert_eq!(resp.status(), 308);
        assert_eq!(
            resp.headers()[header::LOCATION],
            "https://app.example.com/old/x"
        );
    }
}
