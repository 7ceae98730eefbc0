//! Request-path failures, and the one place they become responses: a short
//! HTML page (JSON when the client asks for JSON) with the status, a reason
//! and the request id. No stack traces, no internal addresses.

use super::body::{Body, full};
use http::{HeaderValue, Response, StatusCode, header};

/// Everything that can stop a request inside the proxy.
#[derive(Debug, thiserror::Error)]
pub enum ProxyError {
    #[error("{0}")]
    BadRequest(String),
    #[error("no route for this host")]
    UnknownHost,
    #[error("no route for this path")]
    NoRoute,
    #[error("sign-in required")]
    Unauthenticated,
    #[error("access denied")]
    Forbidden,
    /// A sign-in hand-off arrived without the nonce cookie of the browser
    /// that started the sign-in.
    #[error("sign-in was started in another browser; start again")]
    SignInElsewhere,
    /// A request that needs a session on a host only a route without a
    /// host (`subtle_allow_empty_host`) serves: any client can name any
    /// host there, so no session is ever handed to one.
    #[error("sign-in is not available on this host: no route names it")]
    NoSignInOnHost,
    /// A route with `tls_downstream_client_ca`, and no client certificate
    /// from its CA on this connection (Pomerium's 495 and words).
    #[error("a valid client certificate is required to access this page")]
    ClientCertificateRequired,
    /// A route that asks for client certificates, reached over a connection
    /// whose handshake (for another name) did not ask for one.
    #[error(
        "this connection was opened for another host; reconnect to this host \
         with a client certificate"
    )]
    Misdirected,
    #[error("this route is misconfigured; access is denied until it is fixed")]
    RouteInvalid,
    #[error("websocket upgrades are not allowed on this route")]
    UpgradeNotAllowed,
    #[error("upstream unavailable")]
    UpstreamUnavailable,
    /// The route's circuit breaker is open.
    #[error("too many requests in flight to this route's upstream; try again shortly")]
    Overloaded,
    #[error("upstream sent an invalid response")]
    BadGateway,
    #[error("upstream timed out")]
    GatewayTimeout,
    #[error("not ready: no configuration loaded yet")]
    NotReady,
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("{0}")]
    Identity(String),
    #[error("the identity provider is unavailable; try again shortly ({0})")]
    IdpUnavailable(String),
}

impl ProxyError {
    /// Whether the upstream failed (counted in `jetbridge_upstream_errors_total`).
    pub fn is_upstream_failure(&self) -> bool {
        matches!(
            self,
            ProxyError::UpstreamUnavailable | ProxyError::GatewayTimeout | ProxyError::BadGateway
        )
    }

    /// The HTTP status for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::ClientCertificateRequired => {
                StatusCode::from_u16(495).unwrap_or(StatusCode::FORBIDDEN)
            }
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::UnknownHost | ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ProxyError::Forbidden
            | ProxyError::SignInElsewhere
            | ProxyError::NoSignInOnHost
            | ProxyError::RouteInvalid
            | ProxyError::UpgradeNotAllowed => StatusCode::FORBIDDEN,
            ProxyError::UpstreamUnavailable | ProxyError::NotReady | ProxyError::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::BadGateway => StatusCode::BAD_GATEWAY,
            ProxyError::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::Identity(_) => StatusCode::INTERNAL_SERVER_ERROR,
            ProxyError::IdpUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// True when the client prefers JSON (API clients) over HTML.
pub fn wants_json(accept: Option<&HeaderValue>) -> bool {
    let Some(a) = accept.and_then(|v| v.to_str().ok()) else {
        return false;
    };
    a.contains("application/json") && !a.contains("text/html")
}

/// Renders an error page.
pub fn error_response(err: &ProxyError, request_id: &str, json: bool) -> Response<Body> {
    page(err.status(), &err.to_string(), request_id, json)
}

/// Renders a status page with a reason.
pub fn page(status: StatusCode, reason: &str, request_id: &str, json: bool) -> Response<Body> {
    let (ctype, body) = if json {
        (
            "application/json",
            serde_json::json!({
                "status": status.as_u16(),
                "error": reason_phrase(status),
                "reason": reason,
                "request_id": request_id,
            })
            .to_string(),
        )
    } else {
        let title = format!("{} {}", status.as_u16(), reason_phrase(status));
        (
            "text/html; charset=utf-8",
            format!(
                "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{t}</title>\
                 <style>body{{font-family:system-ui,sans-serif;margin:3em auto;max-width:40em;color:#222}}\
                 code{{color:#666}}</style></head><body><h1>{t}</h1><p>{r}</p>\
                 <p><code>request id: {id}</code></p></body></html>",
                t = html_escape(&title),
                r = html_escape(reason),
                id = html_escape(request_id),
            ),
        )
    };
    let mut resp = Response::new(full(body));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(ctype));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        h.insert("x-request-id", v);
    }
    resp
}

/// The status's reason phrase, nginx's for 495 (which has no standard one).
fn reason_phrase(status: StatusCode) -> &'static str {
    match status.as_u16() {
        495 => "SSL Certificate Error",
        _ => status.canonical_reason().unwrap_or(""),
    }
}

/// Escapes text for HTML element and attribute content.
pub fn html_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}
