//! The HTTP → HTTPS redirect the plain-HTTP listener answers for every
//! request it serves no route for.

use super::body::{Body, empty, full};
use crate::model::routing::normalize_host;
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
