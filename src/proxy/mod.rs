//! The data plane: listeners, the per-handshake certificate resolver, and the
//! request pipeline
//! `normalise → route → session → policy → sign → upstream`.
//! The proxy reads the current snapshot once per request and never imports
//! `kube` or the controller.

pub mod auth;
pub mod body;
pub mod dataplane;
pub mod error;
pub mod headers;
pub mod metrics;
pub mod server;
pub mod upstream;

use crate::identity::jwks::{DISCOVERY_PATH, Document, JWKS_PATH};
use crate::identity::jwt;
use crate::identity::session::Session;
use crate::model::pathnorm::{normalize_path, split_target};
use crate::model::rewrite::{self, HostRewrite};
use crate::model::routing::normalize_host;
use crate::model::{Access, LoadBalancing, Route, Snapshot};
use crate::policy::{Facts, RequestFacts};
use crate::snapshot::SnapshotReader;
use body::{Body, empty, full};
use error::{ProxyError, error_response, wants_json};
use http::{HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri, header};
use hyper::body::Incoming;
use metrics::Metrics;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use upstream::Upstreams;

/// Facts about the client connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// True on the HTTPS listener.
    pub tls: bool,
}

/// Shared proxy state.
pub struct Proxy {
    pub reader: SnapshotReader,
    pub upstreams: Upstreams,
    pub metrics: Arc<Metrics>,
    /// Port of the HTTPS listener as clients see it (for redirects).
    pub https_port: u16,
    /// Sign-in state and the identity provider client.
    pub auth: Arc<auth::Authenticator>,
}

/// Current unix time in seconds.
pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn request_id() -> String {
    let mut b = [0u8; 8];
    crate::identity::random_bytes(&mut b);
    hex::encode(b)
}

/// What the access log records about one request, filled in as the
/// pipeline learns it.
#[derive(Default)]
struct Trail {
    host: Option<String>,
    path: Option<String>,
    user: Option<String>,
    upstream: Option<String>,
}

/// What the pipeline decided before forwarding.
struct Admitted<'a> {
    route: &'a Route,
    session: Option<Session>,
    host: String,
    path: String,
    query: Option<String>,
}

impl Proxy {
    /// A proxy over the given snapshot reader.
    pub fn new(reader: SnapshotReader, https_port: u16) -> Self {
        Proxy {
            reader,
            upstreams: Upstreams::new(),
            metrics: Arc::new(Metrics::default()),
            https_port,
            auth: Arc::new(auth::Authenticator::default()),
        }
    }

    /// Another handle for a worker thread: shares the snapshot, metrics and
    /// sign-in state, but has its own upstream connection pools, so a worker
    /// thread never wakes another to talk to an upstream.
    pub fn worker(&self) -> Self {
        Proxy {
            reader: self.reader.clone(),
            upstreams: Upstreams::new(),
            metrics: self.metrics.clone(),
            https_port: self.https_port,
            auth: self.auth.clone(),
        }
    }

    /// Handles one request end to end; never fails (errors become pages).
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>, conn: ConnInfo) -> Response<Body> {
        let started = Instant::now();
        let id = request_id();
        let json = wants_json(req.headers().get(header::ACCEPT));
        let method = req.method().clone();
        let mut trail = Trail::default();
        let (route_id, mut resp) = match self.reader.load() {
            None => (
                "-".to_string(),
                error_response(&ProxyError::NotReady, &id, json),
            ),
            Some(snapshot) => {
                self.respond(&snapshot, req, conn, &id, json, &mut trail)
                    .await
            }
        };
        // The id the access log carries, so a user can quote it.
        if !resp.headers().contains_key("x-request-id")
            && let Ok(v) = HeaderValue::from_str(&id)
        {
            resp.headers_mut().insert("x-request-id", v);
        }
        let elapsed = started.elapsed();
        self.metrics
            .observe(&route_id, resp.status().as_u16(), elapsed);
        tracing::info!(
            target: crate::telemetry::ACCESS_TARGET,
            request_id = %id,
            route = %route_id,
            method = %method,
            host = trail.host.as_deref().unwrap_or("-"),
            path = trail.path.as_deref().unwrap_or("-"),
            status = resp.status().as_u16(),
            upstream = trail.upstream.as_deref().unwrap_or("-"),
            duration_ms = elapsed.as_secs_f64() * 1e3,
            user = trail.user.as_deref().unwrap_or("-"),
            remote = %conn.remote.ip(),
            "request"
        );
        resp
    }

    /// Runs the pipeline and turns its outcome into a response.
    async fn respond(
        &self,
        snapshot: &Snapshot,
        req: Request<Incoming>,
        conn: ConnInfo,
        id: &str,
        json: bool,
        trail: &mut Trail,
    ) -> (String, Response<Body>) {
        match self.pipeline(snapshot, req, conn, id, trail).await {
            Ok((route_id, resp)) => (route_id, resp),
            Err((route_id, err)) => {
                if matches!(
                    err,
                    ProxyError::UpstreamUnavailable
                        | ProxyError::GatewayTimeout
                        | ProxyError::BadGateway
                ) {
                    self.metrics.upstream_error(&route_id);
                }
                (route_id, error_response(&err, id, json))
            }
        }
    }

    async fn pipeline(
        &self,
        snapshot: &Snapshot,
        req: Request<Incoming>,
        conn: ConnInfo,
        id: &str,
        trail: &mut Trail,
    ) -> Result<(String, Response<Body>), (String, ProxyError)> {
        let none = || String::from("-");
        let host = request_host(&req).ok_or_else(|| {
            (
                none(),
                ProxyError::BadRequest("missing or invalid Host header".into()),
            )
        })?;
        let target = req
            .uri()
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/");
        let (raw_path, query) = split_target(target);
        trail.host = Some(host.clone());
        let path = normalize_path(raw_path)
            .map_err(|e| (none(), ProxyError::BadRequest(e.to_string())))?
            .path;
        trail.path = Some(path.clone());
        let query = query.map(str::to_string);

        if !snapshot.host_known(&host) {
            return Err((none(), ProxyError::UnknownHost));
        }
        if let Some(resp) = well_known(snapshot, &host, &path, &req) {
            return Ok(("well-known".into(), resp));
        }
        let json = wants_json(req.headers().get(header::ACCEPT));
        if snapshot.auth.authenticate_host.as_deref() == Some(host.as_str())
            && let Some(r) = self
                .authenticate_endpoint(snapshot, &req, &path, query.as_deref(), id, json)
                .await
        {
            return r
                .map(|r| ("authenticate".into(), r))
                .map_err(|e| ("authenticate".into(), e));
        }
        let (session, set_cookie) = match self.session(snapshot, &req, &host) {
            Some(s) => self.maybe_refresh(snapshot, &host, s).await,
            None => (None, None),
        };
        trail.user = session.as_ref().map(|s| s.sub.clone());
        let with_cookie = |mut r: Response<Body>| {
            if let Some(c) = &set_cookie {
                r.headers_mut().append(header::SET_COOKIE, c.clone());
            }
            r
        };
        if path.starts_with(auth::POMERIUM_PREFIX)
            && let Some(r) = self
                .route_host_endpoint(
                    snapshot,
                    &req,
                    &host,
                    &path,
                    query.as_deref(),
                    session.as_ref(),
                    id,
                    json,
                )
                .await
        {
            return r
                .map(|r| ("pomerium".into(), with_cookie(r)))
                .map_err(|e| ("pomerium".into(), e));
        }
        let route = snapshot
            .route(&host, &path)
            .ok_or_else(|| (none(), ProxyError::NoRoute))?;
        let rid = route.id.clone();
        let fail = |e| (rid.clone(), e);

        match &route.access {
            Access::Invalid(_) => return Err(fail(ProxyError::RouteInvalid)),
            Access::Public => {}
            Access::Policy(_) if route.cors_allow_preflight && is_cors_preflight(&req) => {}
            Access::Policy(program) => {
                let user = session.as_ref().map(Session::user);
                let facts_req = RequestFacts {
                    method: req.method().as_str().to_string(),
                    host: host.clone(),
                    path: path.clone(),
                    source_ip: Some(conn.remote.ip()),
                    headers: policy_headers(&req),
                };
                let now = time::OffsetDateTime::now_utc();
                let decision = program.eval(&Facts {
                    user: user.as_ref(),
                    request: &facts_req,
                    now,
                });
                if !decision.allow {
                    tracing::debug!(route = %route.id, reason = %decision.reason, "denied");
                    if session.is_none() && (decision.needs_login || program.needs_user()) {
                        let browser = req
                            .headers()
                            .get(header::ACCEPT)
                            .and_then(|v| v.to_str().ok())
                            .is_some_and(|a| a.contains("text/html"));
                        let mut return_to =
                            format!("{}{}", auth::origin(&host, auth::client_port(&req)), path);
                        if let Some(q) = &query {
                            return_to.push('?');
                            return_to.push_str(q);
                        }
                        if browser && let Some(r) = auth::start_sign_in(snapshot, &return_to) {
                            return Ok((rid.clone(), with_cookie(r)));
                        }
                        return Err(fail(ProxyError::Unauthenticated));
                    }
                    return Err(fail(ProxyError::Forbidden));
                }
            }
        }
        let admitted = Admitted {
            route,
            session,
            host,
            path,
            query,
        };
        self.forward(snapshot, admitted, req, conn, id, trail)
            .await
            .map(|r| (rid.clone(), with_cookie(r)))
            .map_err(fail)
    }

    /// The session of the request: the host's session cookie, else a
    /// programmatic token (`Authorization: Pomerium <token>`,
    /// `Authorization: Bearer Pomerium-<token>` or
    /// `X-Pomerium-Authorization: <token>`, Pomerium's forms), which is the
    /// same sealed, host-bound value.
    fn session(&self, snapshot: &Snapshot, req: &Request<Incoming>, host: &str) -> Option<Session> {
        let value = headers::cookie(req.headers(), &snapshot.auth.cookie_name)
            .or_else(|| auth::programmatic_token(req.headers()))?;
        snapshot
            .sessions
            .open(host, value, unix_now())
            .filter(|s| !self.auth.revocations.is_revoked(&s.id))
    }

    async fn forward(
        &self,
        snapshot: &Snapshot,
        a: Admitted<'_>,
        req: Request<Incoming>,
        conn: ConnInfo,
        id: &str,
        trail: &mut Trail,
    ) -> Result<Response<Body>, ProxyError> {
        let route = a.route;
        // An upgrade the route allows is passed through; a WebSocket one it
        // does not allow is refused; any other is forwarded as a plain request.
        let upgrade = match upgrade_protocol(&req) {
            Some(p) if p == "websocket" && !route.allow_websockets => {
                return Err(ProxyError::UpgradeNotAllowed);
            }
            Some(p) if p == "websocket" || route.allow_upgrades.contains(&p) => Some(p),
            _ => None,
        };
        let is_upgrade = upgrade.is_some();
        let (mut parts, body) = req.into_parts();
        let client_upgrade = if is_upgrade {
            Some(hyper::upgrade::on(Request::from_parts(parts.clone(), ())))
        } else {
            None
        };
        // The host the request was routed by: the target's authority (an
        // absolute-form target, or `:authority`) wins over `Host`, as in
        // `request_host`, so the upstream never gets a host another route's
        // policy was meant for.
        let original_host = parts
            .uri
            .authority()
            .and_then(|a| HeaderValue::from_str(a.as_str()).ok())
            .or_else(|| parts.headers.get(header::HOST).cloned());

        let h = &mut parts.headers;
        headers::remove_hop_by_hop(h, is_upgrade);
        if let Some(p) = &upgrade {
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            if let Ok(v) = HeaderValue::from_str(p) {
                h.insert(header::UPGRADE, v);
            }
        }
        headers::strip_identity_headers(h, &route.jwt_claims_headers);
        headers::strip_path_overrides(h);
        headers::remove_cookies_where(h, |name| {
            name == snapshot.auth.cookie_name || auth::is_sign_in_cookie(name)
        });
        auth::remove_programmatic_token(h);
        headers::set_forwarded(
            h,
            &conn.remote.ip().to_string(),
            &a.host,
            if conn.tls { "https" } else { "http" },
        );
        if let Ok(v) = HeaderValue::from_str(id) {
            h.insert("x-request-id", v);
        }
        for n in &route.remove_request_headers {
            h.remove(n);
        }
        for (n, v) in &route.set_request_headers {
            h.insert(n.clone(), v.clone());
        }
        let wants_token =
            route.pass_identity_headers || !route.templated_request_headers.is_empty();
        if wants_token && let Some(s) = &a.session {
            let mut identity = s.identity();
            if let Some(keep) = &route.jwt_groups_filter {
                identity.groups.retain(|g| keep.contains(g));
            }
            let (token, claims) = jwt::mint(
                &snapshot.identity.keys,
                &identity,
                &a.host,
                snapshot.identity.issuer_format,
                unix_now(),
            )
            .map_err(|e| ProxyError::Identity(e.to_string()))?;
            let token_value =
                HeaderValue::from_str(&token).map_err(|e| ProxyError::Identity(e.to_string()))?;
            for (name, template) in &route.templated_request_headers {
                if let Ok(v) = HeaderValue::from_str(&template.replace("${pomerium.jwt}", &token)) {
                    h.insert(name.clone(), v);
                }
            }
            if route.pass_identity_headers {
                h.insert("x-pomerium-jwt-assertion", token_value);
                for (name, claim) in &route.jwt_claims_headers {
                    let value = claims
                        .header_value(claim)
                        .or_else(|| s.claims.get(claim).map(claim_text));
                    if let Some(v) = value.and_then(|v| HeaderValue::from_str(&v).ok()) {
                        h.insert(name.clone(), v);
                    }
                }
            }
        }
        if let Some(token) = &route.kubernetes_token {
            // Only the proxy says whom the Kubernetes API is acting for.
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
            if let Some(s) = &a.session {
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
        // The forwarded path and Host; routing and policy used the client's.
        let forwarded_path = route.path_rewrite.apply(&a.path);
        let rewritten_host = match &route.host_rewrite {
            HostRewrite::Upstream => None,
            HostRewrite::Preserve => original_host.clone(),
            HostRewrite::Literal(v) => Some(v.clone()),
            // Envoy's: without the header the client's Host is kept.
            HostRewrite::FromHeader(n) => h.get(n).cloned().or_else(|| original_host.clone()),
            HostRewrite::PathRegex {
                pattern,
                substitution,
            } => HeaderValue::from_str(&pattern.replace_all(&a.path, substitution)).ok(),
        };

        // The consistent hash's key; other policies need none.
        let affinity: std::borrow::Cow<'_, str> = match (&a.session, route.load_balancing) {
            (_, policy) if policy != LoadBalancing::ConsistentHash => "".into(),
            (Some(s), _) => s.id.as_str().into(),
            (None, _) => conn.remote.ip().to_string().into(),
        };
        let targets = self
            .upstreams
            .order_by(&route.upstreams, route.load_balancing, &affinity);
        let retryable = body_is_empty(&parts) && !is_upgrade;
        let body = if http_body::Body::is_end_stream(&body) {
            body::boxed(body)
        } else {
            // Trailers must not bring back what the head was cleaned of.
            let claims = route.jwt_claims_headers.clone();
            let also: Vec<http::HeaderName> = route
                .remove_request_headers
                .iter()
                .chain(route.set_request_headers.iter().map(|(n, _)| n))
                .cloned()
                .collect();
            body::boxed(body::CleanTrailers::new(
                body,
                move |t: &mut http::HeaderMap| headers::sanitize_trailers(t, &claims, &also),
            ))
        };
        let mut body = Some(body);
        let mut last_err = ProxyError::UpstreamUnavailable;
        let attempts = targets.len();
        let mut parts = Some(parts);
        for (attempt, up) in targets.into_iter().enumerate() {
            trail.upstream = Some(up.authority.clone());
            let client = self
                .upstreams
                .client(up, &route.upstream_tls)
                .map_err(|e| {
                    tracing::warn!(request_id = %id, route = %route.id, error = %e, "cannot build upstream client");
                    ProxyError::BadGateway
                })?;
            let scheme = if up.scheme == "https" {
                "https"
            } else {
                "http"
            };
            let mut pq = String::with_capacity(forwarded_path.len() + 16);
            pq.push_str(&forwarded_path);
            if let Some(q) = &a.query {
                pq.push('?');
                pq.push_str(q);
            }
            let uri: Uri = format!("{scheme}://{}{pq}", up.authority)
                .parse()
                .map_err(|_| ProxyError::BadRequest("invalid request target".into()))?;
            // Clone the request head only if another target may be tried.
            let mut p = if attempt + 1 == attempts || !retryable {
                match parts.take() {
                    Some(p) => p,
                    None => return Err(last_err),
                }
            } else {
                match &parts {
                    Some(p) => p.clone(),
                    None => return Err(last_err),
                }
            };
            p.uri = uri;
            p.version = http::Version::HTTP_11;
            match &rewritten_host {
                Some(hv) => {
                    p.headers.insert(header::HOST, hv.clone());
                }
                None => {
                    if let Ok(hv) = HeaderValue::from_str(&up.authority) {
                        p.headers.insert(header::HOST, hv);
                    }
                }
            }
            if up.scheme == "h2c" {
                p.version = http::Version::HTTP_2;
            }
            let b = match body.take() {
                Some(b) => b,
                None => empty(),
            };
            let upstream_req = Request::from_parts(p, b);
            // Requests in flight are counted only where they decide.
            let in_flight = (route.load_balancing == LoadBalancing::LeastRequest)
                .then(|| self.upstreams.start(up));
            let result = tokio::time::timeout(route.timeout, client.request(upstream_req)).await;
            drop(in_flight);
            match result {
                Err(_) => {
                    tracing::warn!(request_id = %id, route = %route.id, upstream = %up.url(), "upstream timed out");
                    return Err(ProxyError::GatewayTimeout);
                }
                Ok(Err(e)) => {
                    let connect = e.is_connect();
                    tracing::warn!(request_id = %id, route = %route.id, upstream = %up.url(), error = %e, connect, "upstream request failed");
                    if connect {
                        self.upstreams.mark_failed(up);
                        last_err = ProxyError::UpstreamUnavailable;
                        if retryable {
                            continue;
                        }
                        return Err(last_err);
                    }
                    return Err(ProxyError::BadGateway);
                }
                Ok(Ok(resp)) => {
                    self.upstreams.mark_ok(up);
                    // A switch nobody asked for (or the route does not allow)
                    // would leave the client talking to a closed stream.
                    if resp.status() == StatusCode::SWITCHING_PROTOCOLS && client_upgrade.is_none()
                    {
                        tracing::warn!(request_id = %id, route = %route.id, upstream = %up.url(), "upstream switched protocols without an allowed upgrade");
                        return Err(ProxyError::BadGateway);
                    }
                    let mut resp = finish_response(resp, client_upgrade, route.idle_timeout);
                    rewrite::rewrite_response_headers(
                        resp.headers_mut(),
                        &route.rewrite_response_headers,
                        &route.set_response_headers,
                    );
                    return Ok(resp);
                }
            }
        }
        Err(last_err)
    }
}

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

fn body_is_empty(parts: &http::request::Parts) -> bool {
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

fn finish_response(
    resp: Response<Incoming>,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    idle: std::time::Duration,
) -> Response<Body> {
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS
        && let Some(client_up) = client_upgrade
    {
        let (mut parts, body) = resp.into_parts();
        let upstream_resp = Response::from_parts(parts.clone(), body);
        tokio::spawn(async move {
            let (Ok(client), Ok(upstream)) =
                (client_up.await, hyper::upgrade::on(upstream_resp).await)
            else {
                return;
            };
            let client = hyper_util::rt::TokioIo::new(client);
            let upstream = hyper_util::rt::TokioIo::new(upstream);
            pipe_with_idle_timeout(client, upstream, idle).await;
        });
        parts.headers.remove(header::CONTENT_LENGTH);
        return Response::from_parts(parts, empty());
    }
    let (mut parts, body) = resp.into_parts();
    headers::remove_hop_by_hop(&mut parts.headers, false);
    Response::from_parts(parts, body::boxed(body::IdleTimeout::new(body, idle)))
}

/// Copies both ways until either side closes or nothing moves for `idle`.
async fn pipe_with_idle_timeout<A, B>(a: A, b: B, idle: std::time::Duration)
where
    A: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    B: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    use std::sync::atomic::{AtomicU64, Ordering};
    let start = Instant::now();
    let last = AtomicU64::new(0);
    let (mut ar, mut aw) = tokio::io::split(a);
    let (mut br, mut bw) = tokio::io::split(b);
    let idle_ms = idle.as_millis().max(1) as u64;
    let watchdog = async {
        let tick = (idle / 4).clamp(
            std::time::Duration::from_millis(50),
            std::time::Duration::from_secs(5),
        );
        loop {
            tokio::time::sleep(tick).await;
            let now = start.elapsed().as_millis() as u64;
            if now.saturating_sub(last.load(Ordering::Relaxed)) >= idle_ms {
                break;
            }
        }
    };
    tokio::select! {
        _ = async { tokio::join!(copy_half(&mut ar, &mut bw, &last, start), copy_half(&mut br, &mut aw, &last, start)) } => {}
        _ = watchdog => tracing::debug!("upgraded connection idle; closing"),
    }
}

async fn copy_half<R, W>(r: &mut R, w: &mut W, last: &std::sync::atomic::AtomicU64, start: Instant)
where
    R: tokio::io::AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if w.write_all(&buf[..n]).await.is_err() {
            break;
        }
        last.store(
            start.elapsed().as_millis() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
    }
    let _ = w.shutdown().await;
}

/// The protocol an HTTP/1.1 request asks to upgrade to (lower case), if it
/// carries `Connection: upgrade` and one `Upgrade` token.
fn upgrade_protocol<B>(req: &Request<B>) -> Option<String> {
    if req.version() != http::Version::HTTP_11 {
        return None;
    }
    let connection_upgrade = req
        .headers()
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
    let mut values = req.headers().get_all(header::UPGRADE).iter();
    let first = values.next()?.to_str().ok()?.trim().to_ascii_lowercase();
    (values.next().is_none() && !first.is_empty() && !first.contains(',')).then_some(first)
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
fn is_cors_preflight<B>(req: &Request<B>) -> bool {
    req.method() == Method::OPTIONS
        && req.headers().contains_key(header::ORIGIN)
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// The normalised request host: `:authority` / absolute URI first, then `Host`.
///
/// An HTTP/1.1 absolute-form target overrides `Host` (RFC 9112 §3.2.2). On
/// HTTP/2 a `Host` naming another host than `:authority` makes the request
/// malformed (RFC 9113 §8.3.1): refused, so the two can never be read
/// differently by the router and the upstream.
pub fn request_host<B>(req: &Request<B>) -> Option<String> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let first = hosts.next();
    if hosts.next().is_some() {
        return None; // several Host headers: ambiguous, refuse
    }
    if let Some(a) = req.uri().authority() {
        let host = normalize_host(a.as_str())?;
        if req.version() == http::Version::HTTP_2
            && let Some(h) = first
            && h.to_str().ok().and_then(normalize_host).as_deref() != Some(host.as_str())
        {
            return None;
        }
        return Some(host);
    }
    normalize_host(first?.to_str().ok()?)
}

fn policy_headers<B>(req: &Request<B>) -> std::collections::BTreeMap<String, String> {
    // Only the headers criteria look at (CORS preflight), to keep eval cheap.
    let mut m = std::collections::BTreeMap::new();
    for n in ["origin", "access-control-request-method"] {
        if let Some(v) = req.headers().get(n).and_then(|v| v.to_str().ok()) {
            m.insert(n.to_string(), v.to_string());
        }
    }
    m
}

/// Serves `/.well-known/pomerium*` on every known host (route hosts and the
/// authenticate host); the discovery document names the host and port the
/// client used.
fn well_known<B>(
    snapshot: &Snapshot,
    host: &str,
    path: &str,
    req: &Request<B>,
) -> Option<Response<Body>> {
    match path {
        JWKS_PATH => Some(document_response(&snapshot.identity.jwks, req)),
        DISCOVERY_PATH | "/.well-known/pomerium/" => {
            let origin = auth::origin(host, auth::client_port(req));
            let auth_url = snapshot.auth.authenticate_url.as_deref().unwrap_or("");
            let doc = crate::identity::jwks::discovery_document(&origin, auth_url, true);
            Some(document_response(&doc, req))
        }
        _ => None,
    }
}

/// A cached JSON document with ETag / If-None-Match support.
pub fn document_response<B>(doc: &Document, req: &Request<B>) -> Response<Body> {
    let mut resp = if req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            v.split(',')
                .any(|t| t.trim() == doc.etag || t.trim() == "*")
        }) {
        let mut r = Response::new(empty());
        *r.status_mut() = StatusCode::NOT_MODIFIED;
        r
    } else if req.method() == Method::HEAD {
        Response::new(empty())
    } else {
        Response::new(full(doc.body.clone()))
    };
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("max-age=60"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    if let Ok(v) = HeaderValue::from_str(&doc.etag) {
        h.insert(header::ETAG, v);
    }
    resp
}
