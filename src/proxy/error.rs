//! Request-path failures, and the one place they become responses: a page
//! (see [`super::pages`]; JSON when the client prefers JSON) saying what
//! happened, who is signed in when that matters, the next step, and the
//! request id. No stack traces, no internal addresses.

use super::body::{Body, own_response};
use super::pages::{Action, Page, Tone, heading_for, switch_user_url};
use http::{HeaderValue, Response, StatusCode};

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
    /// A signed-in user the route's policy refuses.
    #[error("access denied")]
    Denied {
        /// Who is signed in (name and email, or the subject).
        user: String,
        /// The refused URL (where signing in as someone else returns to).
        here: String,
    },
    /// The identity provider refused the sign-in (`error` on the callback).
    #[error("{message}")]
    SignInRefused {
        message: String,
        /// The page the sign-in was for (signing in again starts there).
        retry: Option<String>,
    },
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
    #[error("this route's backends or filters are invalid")]
    RouteUnresolved,
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
    /// A forward-auth check refused: the URL it asks about is not one this
    /// proxy may answer for, or the route's policy denies (the reason says
    /// which). 403, the answer nginx's `auth_request` passes on.
    #[error("{0}")]
    ForwardAuthRefused(String),
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
            ProxyError::BadRequest(_) | ProxyError::SignInRefused { .. } => StatusCode::BAD_REQUEST,
            ProxyError::ClientCertificateRequired => {
                StatusCode::from_u16(495).unwrap_or(StatusCode::FORBIDDEN)
            }
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::UnknownHost | ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::Unauthenticated => StatusCode::UNAUTHORIZED,
            ProxyError::Forbidden
            | ProxyError::Denied { .. }
            | ProxyError::SignInElsewhere
            | ProxyError::NoSignInOnHost
            | ProxyError::RouteInvalid
            | ProxyError::ForwardAuthRefused(_)
            | ProxyError::UpgradeNotAllowed => StatusCode::FORBIDDEN,
            ProxyError::UpstreamUnavailable | ProxyError::NotReady | ProxyError::Overloaded => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::BadGateway => StatusCode::BAD_GATEWAY,
            ProxyError::GatewayTimeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ProxyError::Identity(_) | ProxyError::RouteUnresolved => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ProxyError::IdpUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }
}

/// True when the client prefers JSON (API clients) over HTML.
pub fn wants_json(accept: Option<&HeaderValue>) -> bool {
    super::negotiate::prefers_json(accept.and_then(|v| v.to_str().ok()))
}

/// Renders an error page: what happened, who is signed in when the error
/// knows, and the next step.
pub fn error_response(err: &ProxyError, request_id: &str, json: bool) -> Response<Body> {
    if json {
        return page(err.status(), &err.to_string(), request_id, true);
    }
    error_page(err, request_id).response()
}

/// The HTML page for an error.
fn error_page(err: &ProxyError, request_id: &str) -> Page {
    let status = err.status();
    let mut p = Page::new(
        status,
        Tone::Bad,
        heading_for(status),
        &err.to_string(),
        request_id,
    );
    match err {
        ProxyError::Denied { user, here } => {
            p.text = vec![
                "This route's policy does not let you in. Sign out, or sign in as \
                 someone else who has access."
                    .into(),
            ];
            p.who = Some(user.clone());
            p.actions = vec![
                Action::link("Sign in as someone else", switch_user_url(here)),
                Action::post("Sign out", "/.pomerium/sign_out"),
            ];
        }
        ProxyError::SignInRefused { retry, .. } => {
            p.heading = "Sign-in was refused".into();
            match retry {
                Some(url) => p.actions = vec![Action::link("Try again", url.clone())],
                None => p
                    .text
                    .push("Go back to the page you were opening to sign in again.".into()),
            }
        }
        ProxyError::SignInElsewhere => {
            p.heading = "Sign-in started in another browser".into();
        }
        ProxyError::UpstreamUnavailable
        | ProxyError::GatewayTimeout
        | ProxyError::Overloaded
        | ProxyError::IdpUnavailable(_)
        | ProxyError::NotReady => p.text.push("Try again in a moment.".into()),
        _ => {}
    }
    p
}

/// Renders a status page with a reason (JSON for clients preferring it).
pub fn page(status: StatusCode, reason: &str, request_id: &str, json: bool) -> Response<Body> {
    if !json {
        let tone = if status.is_success() {
            Tone::Good
        } else {
            Tone::Bad
        };
        return Page::new(status, tone, heading_for(status), reason, request_id).response();
    }
    let body = serde_json::json!({
        "status": status.as_u16(),
        "error": reason_phrase(status),
        "reason": reason,
        "request_id": request_id,
    })
    .to_string();
    own_response(status, "application/json", body, Some(request_id))
}

/// The status's reason phrase, nginx's for 495 (which has no standard one).
fn reason_phrase(status: StatusCode) -> &'static str {
    match status.as_u16() {
        495 => "SSL Certificate Error",
        _ => status.canonical_reason().unwrap_or(""),
    }
}
