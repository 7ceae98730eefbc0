//! The send stage: a prepared request to the route's targets. Targets are
//! ordered by the balancing policy and health, the circuit breaker admits
//! the request, and a failed connection moves on to the next target while
//! the request may be sent again. Request trailers are cleaned as the body
//! ends; the response's head gets the route's response filters.

use super::body::{self, Body, empty};
use super::error::ProxyError;
use super::headers;
use super::prepare::Prepared;
use super::tunnel;
use super::upstream::{HttpClient, UpstreamBody, Upstreams};
use crate::model::filters::apply_response_filters;
use crate::model::{LoadBalancing, Route, Upstream, UpstreamScheme};
use http::{HeaderValue, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;

/// What one attempt at a target came to.
enum Attempt {
    /// The target answered.
    Answered(Response<UpstreamBody>),
    /// The connection failed: the next target may be tried.
    ConnectFailed,
    /// Failed for good.
    Failed(ProxyError),
}

/// Sends `p` with `body` to the route's targets in turn; `upstream` is
/// set to the target last tried (for the access log).
pub(crate) async fn send(
    upstreams: &Upstreams,
    p: Prepared<'_>,
    body: Incoming,
    id: &str,
    upstream: &mut Option<String>,
) -> Result<Response<Body>, ProxyError> {
    let Prepared {
        route,
        parts,
        mut upgrade,
        path_and_query,
        host,
        affinity,
        retryable,
    } = p;
    let targets = upstreams.order_by(
        &route.id,
        &route.upstreams,
        route.load_balancing,
        &affinity,
        route.healthy_panic_threshold,
    );
    let mut body = Some(clean_trailers(route, body));
    let admitted = match route.circuit_breaker {
        Some(cb) => Some(
            upstreams
                .board()
                .admit(&route.id, cb.max_requests)
                .ok_or(ProxyError::Overloaded)?,
        ),
        None => None,
    };
    let attempts = targets.len();
    let mut parts = Some(parts);
    let target = Head {
        path_and_query: &path_and_query,
        host: host.as_ref(),
    };
    for (attempt, up) in targets.into_iter().enumerate() {
        *upstream = Some(up.authority.clone());
        let client = upstreams
            .client(up, &route.compiled.upstream_tls)
            .map_err(|e| {
                tracing::warn!(request_id = %id, route = %route.id, error = %e, "cannot build upstream client");
                ProxyError::BadGateway
            })?;
        let last = attempt + 1 == attempts || !retryable;
        let Some(req) = upstream_request(&target, up, last, &mut parts, &mut body)? else {
            break;
        };
        match try_target(upstreams, route, up, &client, req, id).await {
            Attempt::Answered(resp) => {
                let resp = answer(route, up, resp, upgrade.take(), id)?;
                // A request counts against the breaker until its body ends.
                return Ok(match admitted {
                    Some(a) => resp.map(|b| body::boxed(body::Guarded::new(b, a))),
                    None => resp,
                });
            }
            Attempt::ConnectFailed if retryable => continue,
            Attempt::ConnectFailed => return Err(ProxyError::UpstreamUnavailable),
            Attempt::Failed(e) => return Err(e),
        }
    }
    Err(ProxyError::UpstreamUnavailable)
}

/// What every attempt's request line and `Host` are made from.
struct Head<'a> {
    path_and_query: &'a str,
    /// `None`: the target's address.
    host: Option<&'a HeaderValue>,
}

/// The request body; trailers must not bring back what the head was
/// cleaned of.
fn clean_trailers(route: &Route, body: Incoming) -> Body {
    if http_body::Body::is_end_stream(&body) {
        return body::boxed(body);
    }
    let rules = route.compiled.trailers.clone();
    body::boxed(body::CleanTrailers::new(
        body,
        move |t: &mut http::HeaderMap| {
            headers::sanitize_trailers(t, &rules.claim_headers, &rules.also)
        },
    ))
}

/// The request for one target: its URI and `Host`. The head is cloned only
/// if another target may be tried; `None` once it is gone.
fn upstream_request(
    p: &Head<'_>,
    up: &Upstream,
    last: bool,
    parts: &mut Option<http::request::Parts>,
    body: &mut Option<Body>,
) -> Result<Option<Request<Body>>, ProxyError> {
    let scheme = up.scheme.wire();
    let uri: Uri = format!("{scheme}://{}{}", up.authority, p.path_and_query)
        .parse()
        .map_err(|_| ProxyError::BadRequest("invalid request target".into()))?;
    let head = if last { parts.take() } else { parts.clone() };
    let Some(mut head) = head else {
        return Ok(None);
    };
    head.uri = uri;
    head.version = if up.scheme == UpstreamScheme::H2c {
        http::Version::HTTP_2
    } else {
        http::Version::HTTP_11
    };
    match p.host {
        Some(hv) => {
            head.headers.insert(header::HOST, hv.clone());
        }
        None => {
            if let Ok(hv) = HeaderValue::from_str(&up.authority) {
                head.headers.insert(header::HOST, hv);
            }
        }
    }
    Ok(Some(Request::from_parts(
        head,
        body.take().unwrap_or_else(empty),
    )))
}

/// One attempt at a target, within the route's timeout; outlier detection
/// and the failed-target marks learn its outcome.
async fn try_target(
    upstreams: &Upstreams,
    route: &Route,
    up: &Upstream,
    client: &HttpClient,
    req: Request<Body>,
    id: &str,
) -> Attempt {
    let board = upstreams.board();
    // Requests in flight are counted only where they decide.
    let in_flight =
        (route.load_balancing == LoadBalancing::LeastRequest).then(|| upstreams.start(up));
    let result = tokio::time::timeout(route.timeout, upstreams.request(up, client, req)).await;
    drop(in_flight);
    match result {
        Err(_) => {
            tracing::warn!(request_id = %id, route = %route.id, upstream = %up.url(), "upstream timed out");
            board.outcome(route, &up.authority, None);
            Attempt::Failed(ProxyError::GatewayTimeout)
        }
        Ok(Err(e)) => {
            board.outcome(route, &up.authority, None);
            let connect = e.is_connect();
            tracing::warn!(request_id = %id, route = %route.id, upstream = %up.url(), error = %e, connect, "upstream request failed");
            if connect {
                upstreams.mark_failed(up);
                return Attempt::ConnectFailed;
            }
            Attempt::Failed(ProxyError::BadGateway)
        }
        Ok(Ok(resp)) => {
            upstreams.mark_ok(up);
            board.outcome(route, &up.authority, Some(resp.status().as_u16()));
            Attempt::Answered(resp)
        }
    }
}

/// The target's answer as the client gets it: an allowed upgrade is
/// tunnelled, hop-by-hop headers go, the route's response filters apply.
fn answer(
    route: &Route,
    up: &Upstream,
    resp: Response<UpstreamBody>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    id: &str,
) -> Result<Response<Body>, ProxyError> {
    // A switch nobody asked for (or the route does not allow) would leave
    // the client talking to a closed stream.
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS && client_upgrade.is_none() {
        tracing::warn!(request_id = %id, route = %route.id, upstream = %up.url(), "upstream switched protocols without an allowed upgrade");
        return Err(ProxyError::BadGateway);
    }
    let mut resp = finish_response(resp, client_upgrade, route.idle_timeout);
    apply_response_filters(&route.compiled.response, resp.headers_mut());
    Ok(resp)
}

fn finish_response(
    resp: Response<UpstreamBody>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    idle: std::time::Duration,
) -> Response<Body> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_up) = client_upgrade
    {
        let (mut parts, body) = resp.into_parts();
        let upstream_resp = Response::from_parts(parts.clone(), body);
        tokio::spawn(tunnel::splice(client_up, upstream_resp, idle));
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, empty());
    }
    let (mut parts, body) = resp.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers, false);
    parts.extensions.insert(body::SendIdle(idle));
    Response::from_parts(parts, body::boxed(body::IdleTimeout::new(body, idle)))
}
