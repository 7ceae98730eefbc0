//! The data plane: listeners, the per-handshake certificate resolver, and the
//! request pipeline
//! `normalise → route → session → policy → sign → upstream`.
//! The proxy reads the current snapshot once per request and never imports
//! `kube` or the controller.

pub mod admin;
pub mod assertions;
pub mod auth;
pub mod body;
pub mod dataplane;
pub mod error;
pub mod headers;
pub mod health;
pub mod idp_health;
pub mod metrics;
pub mod negotiate;
pub mod pages;
pub mod server;
pub mod sessions;
pub mod upstream;

use crate::identity::jwks::{DISCOVERY_PATH, Document, JWKS_PATH};
use crate::identity::jwt;
use crate::identity::session::Session;
use crate::model::pathnorm::{normalize_path, split_target};
use crate::model::rewrite::{self, HostRewrite};
use crate::model::routing::normalize_host;
use crate::model::{Access, BearerTokenFormat, LoadBalancing, Route, Snapshot};
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
#[derive(Clone, Debug)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    /// True on the HTTPS listener.
    pub tls: bool,
    /// The handshake asked for a client certificate (its SNI name is a host
    /// of a route with `tls_downstream_client_ca`).
    pub client_auth_asked: bool,
    /// The client certificate chain presented, leaf first (shared by every
    /// request of the connection). Only its key's possession is proven at
    /// the handshake; each route checks the chain against its own CA.
    pub client_cert: Option<Arc<Vec<rustls::pki_types::CertificateDer<'static>>>>,
}

/// Shared proxy state.
pub struct Proxy {
    pub reader: SnapshotReader,
    pub upstreams: Upstreams,
    pub metrics: Arc<Metrics>,
    /// The HTTPS port users reach (the public one, else the bound one): the
    /// port the HTTP→HTTPS redirect names.
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

/// A request id: 16 hex digits. Each worker thread counts from a random
/// start and mixes the count through SplitMix64 (a bijection), so ids never
/// repeat on a thread and threads' ranges collide only with negligible
/// probability; the system RNG is read once per thread, not per request.
/// Ids are labels for logs and error pages, never credentials.
fn request_id() -> String {
    use std::cell::Cell;
    thread_local! {
        static NEXT: Cell<u64> = Cell::new({
            let mut b = [0u8; 8];
            crate::identity::random_bytes(&mut b);
            u64::from_le_bytes(b)
        });
    }
    let n = NEXT.with(|c| {
        let n = c.get().wrapping_add(0x9e37_79b9_7f4a_7c15);
        c.set(n);
        n
    });
    let mut z = n;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^= z >> 31;
    format!("{z:016x}")
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

/// What a request came to. [`Proxy::handle`] is the one place that turns an
/// outcome into a response, a metric and an access-log line.
enum Outcome {
    /// The upstream's response.
    Forward(Response<Body>),
    /// A response the proxy makes itself: discovery documents, the
    /// authenticate service, the `/.pomerium/` endpoints.
    Respond(Response<Body>),
    /// A browser sent to sign in.
    SignIn(Response<Body>),
    /// Refused or failed; becomes an error page (or JSON).
    Error(ProxyError),
}

impl From<Result<Response<Body>, ProxyError>> for Outcome {
    fn from(r: Result<Response<Body>, ProxyError>) -> Self {
        match r {
            Ok(r) => Outcome::Respond(r),
            Err(e) => Outcome::Error(e),
        }
    }
}

/// The request context the stages read and fill in.
struct Ctx<'s> {
    id: &'s str,
    conn: ConnInfo,
    /// The series metrics count the request under: a route id, or one of
    /// `-`, `well-known`, `authenticate`, `pomerium`.
    label: &'s str,
    /// A refreshed session cookie to send back with whatever the outcome.
    set_cookie: Option<HeaderValue>,
    trail: Trail,
}

/// The request as routing and policy see it (normalised).
struct Target {
    host: String,
    path: String,
    query: Option<String>,
}

/// What the pipeline decided before forwarding.
struct Admitted<'a> {
    route: &'a Route,
    session: Option<Session>,
    target: Target,
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
            upstreams: Upstreams::with_health(self.upstreams.health()),
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
        let snapshot = self.reader.load();
        let mut cx = Ctx {
            id: &id,
            conn,
            label: "-",
            set_cookie: None,
            trail: Trail::default(),
        };
        let outcome = match &snapshot {
            None => Outcome::Error(ProxyError::NotReady),
            Some(s) => self.pipeline(s, &mut cx, req).await,
        };
        let mut resp = match outcome {
            Outcome::Forward(r) | Outcome::Respond(r) | Outcome::SignIn(r) => r,
            Outcome::Error(e) => {
                if e.is_upstream_failure() {
                    self.metrics.upstream_error(cx.label);
                }
                error_response(&e, &id, json)
            }
        };
        if let (Some(c), Some(s)) = (cx.set_cookie.take(), &snapshot) {
            headers::append_cookie_unless_set(resp.headers_mut(), &s.auth.cookie_name, c);
        }
        // The id the access log carries, so a user can quote it.
        if !resp.headers().contains_key("x-request-id")
            && let Ok(v) = HeaderValue::from_str(&id)
        {
            resp.headers_mut().insert("x-request-id", v);
        }
        let elapsed = started.elapsed();
        self.metrics
            .observe(cx.label, resp.status().as_u16(), elapsed);
        let trail = &cx.trail;
        tracing::info!(
            target: crate::telemetry::ACCESS_TARGET,
            request_id = %id,
            route = %cx.label,
            method = %method,
            host = trail.host.as_deref().unwrap_or("-"),
            path = trail.path.as_deref().unwrap_or("-"),
            status = resp.status().as_u16(),
            upstream = trail.upstream.as_deref().unwrap_or("-"),
            duration_ms = elapsed.as_secs_f64() * 1e3,
            user = trail.user.as_deref().unwrap_or("-"),
            remote = %cx.conn.remote.ip(),
            "request"
        );
        resp
    }

    /// `normalise → route → session → policy → forward`; the proxy's own
    /// endpoints are answered on the way. The session is opened only where
    /// it is used: a public route without identity headers, an unknown host
    /// or a 404 never touches the cookie (nor the identity provider).
    async fn pipeline<'s>(
        &self,
        snapshot: &'s Snapshot,
        cx: &mut Ctx<'s>,
        req: Request<Incoming>,
    ) -> Outcome {
        // normalise
        let target = match normalise(&req) {
            Ok(t) => t,
            Err(e) => return Outcome::Error(e),
        };
        cx.trail.host = Some(target.host.clone());
        cx.trail.path = Some(target.path.clone());
        if !snapshot.host_known(&target.host) && !snapshot.table.serves_any_host() {
            return Outcome::Error(ProxyError::UnknownHost);
        }
        if let Some(resp) = well_known(snapshot, &target.host, &target.path, &req) {
            cx.label = "well-known";
            return Outcome::Respond(resp);
        }
        let json = wants_json(req.headers().get(header::ACCEPT));
        if snapshot.auth.authenticate_host.as_deref() == Some(target.host.as_str())
            && let Some(r) = self
                .authenticate_endpoint(
                    snapshot,
                    &req,
                    &target.path,
                    target.query.as_deref(),
                    cx.id,
                    json,
                )
                .await
        {
            cx.label = "authenticate";
            return r.into();
        }
        if target.path.starts_with(auth::POMERIUM_PREFIX) {
            let session = match self
                .session(
                    snapshot,
                    cx,
                    &req,
                    &target.host,
                    BearerTokenFormat::Default,
                    &[],
                )
                .await
            {
                Ok(s) => s,
                Err(e) => return Outcome::Error(e),
            };
            if let Some(r) = self
                .route_host_endpoint(
                    snapshot,
                    &req,
                    &target.host,
                    &target.path,
                    target.query.as_deref(),
                    session.as_ref(),
                    cx.id,
                    json,
                )
                .await
            {
                cx.label = "pomerium";
                return r.into();
            }
        }
        // route
        let Some(route) = snapshot.route(&target.host, &target.path) else {
            return Outcome::Error(ProxyError::NoRoute);
        };
        cx.label = &route.id;
        // client certificate, on routes that require one
        if let Some(ca) = &route.client_ca
            && let Err(e) = client_certificate(ca, &cx.conn, &route.id)
        {
            return Outcome::Error(e);
        }
        // session, only where the route uses one
        let session = match route.uses_session() {
            true => {
                let bearer = route.bearer_token_format;
                let audiences = &route.access_token_audiences;
                match self
                    .session(snapshot, cx, &req, &target.host, bearer, audiences)
                    .await
                {
                    // A route with its own OAuth client counts only sessions
                    // signed in through it (and the others only theirs).
                    Ok(s) => s.filter(|s| s.idp == route.idp_id()),
                    Err(e) => return Outcome::Error(e),
                }
            }
            false => None,
        };
        // policy
        if let Some(refused) = authorize(snapshot, cx, route, session.as_ref(), &target, &req) {
            return refused;
        }
        // identity headers and forward
        let admitted = Admitted {
            route,
            session,
            target,
        };
        match self.forward(snapshot, cx, admitted, req).await {
            Ok(r) => Outcome::Forward(r),
            Err(e) => Outcome::Error(e),
        }
    }
}

/// The client-certificate stage of a route with `tls_downstream_client_ca`:
/// the connection's certificate must chain to the route's CA. A connection
/// whose handshake did not ask for one (another SNI name, e.g. a browser
/// reusing an HTTP/2 connection of another host) gets 421, so the browser
/// retries on a connection of its own for this host.
fn client_certificate(
    ca: &crate::model::ClientCa,
    conn: &ConnInfo,
    route: &str,
) -> Result<(), ProxyError> {
    if conn.tls && !conn.client_auth_asked {
        return Err(ProxyError::Misdirected);
    }
    let Some(chain) = &conn.client_cert else {
        return Err(ProxyError::ClientCertificateRequired);
    };
    ca.verify(chain, rustls::pki_types::UnixTime::now())
        .map_err(|e| {
            tracing::debug!(route, error = %e, "client certificate refused");
            ProxyError::ClientCertificateRequired
        })
}

/// The policy stage: `None` to forward, else the outcome that refuses
/// (sign-in for a browser without a session, 401, 403).
fn authorize(
    snapshot: &Snapshot,
    cx: &Ctx<'_>,
    route: &Route,
    session: Option<&Session>,
    target: &Target,
    req: &Request<Incoming>,
) -> Option<Outcome> {
    let program = match &route.access {
        Access::Invalid(_) => return Some(Outcome::Error(ProxyError::RouteInvalid)),
        Access::Public => return None,
        Access::Policy(_) if route.cors_allow_preflight && is_cors_preflight(req) => {
            return None;
        }
        Access::Policy(program) => program,
    };
    let user = session.map(Session::user);
    let facts_req = RequestFacts {
        method: req.method().as_str().to_string(),
        host: target.host.clone(),
        path: target.path.clone(),
        source_ip: Some(cx.conn.remote.ip()),
        headers: policy_headers(req),
    };
    let decision = program.eval(&Facts {
        user: user.as_ref(),
        request: &facts_req,
        now: time::OffsetDateTime::now_utc(),
    });
    if decision.allow {
        return None;
    }
    tracing::debug!(route = %route.id, reason = %decision.reason, "denied");
    let return_to = requested_url(target, req);
    if let Some(s) = session {
        return Some(Outcome::Error(ProxyError::Denied {
            user: pages::who(s),
            here: return_to,
        }));
    }
    if !(decision.needs_login || program.needs_user()) {
        return Some(Outcome::Error(ProxyError::Forbidden));
    }
    if !snapshot.table.host_known(&target.host) {
        return Some(Outcome::Error(ProxyError::NoSignInOnHost));
    }
    let browser = sends_to_sign_in(req, route.bearer_token_format);
    match browser
        .then(|| auth::start_sign_in(snapshot, &return_to, route.idp_id()))
        .flatten()
    {
        Some(r) => Some(Outcome::SignIn(r)),
        None => Some(Outcome::Error(ProxyError::Unauthenticated)),
    }
}

/// The absolute URL the client asked for (where a sign-in returns to).
fn requested_url<B>(target: &Target, req: &Request<B>) -> String {
    let mut url = format!(
        "{}{}",
        auth::origin(&target.host, auth::client_port(req)),
        target.path
    );
    if let Some(q) = &target.query {
        url.push('?');
        url.push_str(q);
    }
    url
}

/// Whether a request without a session goes to sign in (else it gets 401),
/// as Pomerium decides: not when it carries a credential of its own (a
/// programmatic token, an identity-provider token) or is gRPC, else when
/// its `Accept` prefers a page (no `Accept` and `*/*` included).
fn sends_to_sign_in<B>(req: &Request<B>, bearer: BearerTokenFormat) -> bool {
    let h = req.headers();
    let grpc = h
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|c| c.starts_with("application/grpc"));
    if grpc || auth::programmatic_token(h).is_some() || auth::idp_token(h, bearer).is_some() {
        return false;
    }
    negotiate::prefers_sign_in_page(h.get(header::ACCEPT).and_then(|v| v.to_str().ok()))
}

/// The sealed session a programmatic token carries: inside the JWT that
/// programmatic login hands out, or the token itself in the older sealed
/// form (an empty value, which opens to nothing, when the JWT is not valid
/// for `host`).
fn programmatic_session<'t>(
    snapshot: &Snapshot,
    host: &str,
    token: &'t str,
    now: i64,
) -> std::borrow::Cow<'t, str> {
    if !token.contains('.') {
        return std::borrow::Cow::Borrowed(token);
    }
    std::borrow::Cow::Owned(
        crate::identity::programmatic::sealed_session(
            &snapshot.auth.cookie_secret,
            host,
            token,
            now,
        )
        .unwrap_or_default(),
    )
}

/// The normalise stage: the host and the normalised path routing and
/// policy use, and the query as sent.
fn normalise<B>(req: &Request<B>) -> Result<Target, ProxyError> {
    let host = request_host(req)
        .ok_or_else(|| ProxyError::BadRequest("missing or invalid Host header".into()))?;
    let raw = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let (raw_path, query) = split_target(raw);
    let path = normalize_path(raw_path)
        .map_err(|e| ProxyError::BadRequest(e.to_string()))?
        .path;
    Ok(Target {
        host,
        path,
        query: query.map(str::to_string),
    })
}

impl Proxy {
    /// The session of the request: the host's session cookie, else a
    /// programmatic token (`Authorization: Pomerium <token>`,
    /// `Authorization: Bearer Pomerium-<token>` or
    /// `X-Pomerium-Authorization: <token>`, Pomerium's forms), which is the
    /// same sealed, host-bound value.
    /// It is refreshed at the identity provider when due (a refreshed
    /// cookie goes back with the response).
    ///
    /// Without either, a token issued by the identity provider (Pomerium's
    /// `X-Pomerium-IDP-*-Token` headers, or `Authorization: Bearer` where
    /// `bearer` says what it is) is checked at the provider and stands for
    /// a session of its own; a provider that does not answer is an error.
    async fn session(
        &self,
        snapshot: &Snapshot,
        cx: &mut Ctx<'_>,
        req: &Request<Incoming>,
        host: &str,
        bearer: BearerTokenFormat,
        audiences: &[String],
    ) -> Result<Option<Session>, ProxyError> {
        let now = unix_now();
        let value = match headers::cookie(req.headers(), &snapshot.auth.cookie_name) {
            Some(cookie) => Some(std::borrow::Cow::Borrowed(cookie)),
            None => auth::programmatic_token(req.headers())
                .map(|t| programmatic_session(snapshot, host, t, now)),
        };
        let session = match value.as_deref() {
            Some(value) => {
                let Some(opened) = sessions::open(snapshot, host, value, now)
                    .filter(|s| !self.auth.revocations.is_revoked(&s.id))
                else {
                    return Ok(None);
                };
                let (session, set_cookie) = self.maybe_refresh(snapshot, host, opened).await;
                cx.set_cookie = set_cookie;
                session
            }
            None => match auth::idp_token(req.headers(), bearer) {
                Some((kind, token)) => {
                    self.idp_token_session(snapshot, kind, token, audiences)
                        .await?
                }
                None => None,
            },
        };
        cx.trail.user = session.as_ref().map(|s| s.sub.clone());
        Ok(session)
    }

    async fn forward(
        &self,
        snapshot: &Snapshot,
        cx: &mut Ctx<'_>,
        a: Admitted<'_>,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, ProxyError> {
        let (conn, id) = (cx.conn.clone(), cx.id);
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
        // A `Bearer` token the route reads as a credential stops here.
        let consumed =
            route.uses_session() && route.bearer_token_format != BearerTokenFormat::Default;
        auth::remove_programmatic_token(h, consumed);
        headers::set_forwarded(
            h,
            &conn.remote.ip().to_string(),
            &a.target.host,
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
        let wants_assertion = route.pass_identity_headers
            || route
                .templated_request_headers
                .iter()
                .any(|(_, t)| t.contains(crate::model::ASSERTION));
        if let Some(s) = &a.session
            && !route.templated_request_headers.is_empty()
            && !wants_assertion
        {
            fill_templates(h, route, s, "");
        }
        if wants_assertion && let Some(s) = &a.session {
            let now = unix_now();
            let key = assertions::Key {
                session_id: &s.id,
                session_refreshed: s.refresh_at,
                route: &route.id,
                host: &a.target.host,
                generation: snapshot.generation,
            };
            let minted = assertions::get_or_mint(key, now, || {
                let mut identity = s.identity();
                if let Some(keep) = &route.jwt_groups_filter {
                    identity.groups.retain(|g| keep.contains(g));
                }
                let (token, claims) = jwt::mint(
                    &snapshot.identity.keys,
                    &identity,
                    &a.target.host,
                    route.issuer_format,
                    now,
                )
                .map_err(|e| ProxyError::Identity(e.to_string()))?;
                let token = HeaderValue::from_str(&token)
                    .map_err(|e| ProxyError::Identity(e.to_string()))?;
                Ok((token, claims))
            })?;
            fill_templates(h, route, s, minted.token.to_str().unwrap_or_default());
            if route.pass_identity_headers {
                h.insert("x-pomerium-jwt-assertion", minted.token.clone());
                let claims = &minted.claims;
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
        let forwarded_path = route.path_rewrite.apply(&a.target.path);
        let rewritten_host = match &route.host_rewrite {
            HostRewrite::Upstream => None,
            HostRewrite::Preserve => original_host.clone(),
            HostRewrite::Literal(v) => Some(v.clone()),
            // Envoy's: without the header the client's Host is kept.
            HostRewrite::FromHeader(n) => h.get(n).cloned().or_else(|| original_host.clone()),
            HostRewrite::PathRegex {
                pattern,
                substitution,
            } => HeaderValue::from_str(&pattern.replace_all(&a.target.path, substitution)).ok(),
        };

        // The consistent hash's key; other policies need none.
        let affinity: std::borrow::Cow<'_, str> = match (&a.session, route.load_balancing) {
            (_, policy) if policy != LoadBalancing::ConsistentHash => "".into(),
            (Some(s), _) => s.id.as_str().into(),
            (None, _) => conn.remote.ip().to_string().into(),
        };
        let targets = self.upstreams.order_by(
            &route.id,
            &route.upstreams,
            route.load_balancing,
            &affinity,
            route.healthy_panic_threshold,
        );
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
        let admitted = match route.circuit_breaker {
            Some(cb) => Some(
                self.upstreams
                    .board()
                    .admit(&route.id, cb.max_requests)
                    .ok_or(ProxyError::Overloaded)?,
            ),
            None => None,
        };
        let board = self.upstreams.board();
        let mut body = Some(body);
        let mut last_err = ProxyError::UpstreamUnavailable;
        let attempts = targets.len();
        let mut parts = Some(parts);
        for (attempt, up) in targets.into_iter().enumerate() {
            cx.trail.upstream = Some(up.authority.clone());
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
            if let Some(q) = &a.target.query {
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
                    board.outcome(route, &up.authority, None);
                    return Err(ProxyError::GatewayTimeout);
                }
                Ok(Err(e)) => {
                    board.outcome(route, &up.authority, None);
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
                    board.outcome(route, &up.authority, Some(resp.status().as_u16()));
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
                    // A request counts against the breaker until its body ends.
                    if let Some(a) = admitted {
                        return Ok(resp.map(|b| body::boxed(body::Guarded::new(b, a))));
                    }
                    return Ok(resp);
                }
            }
        }
        Err(last_err)
    }
}

/// Sets the route's `${pomerium.*}` request headers: the assertion, and the
/// IdP's tokens the session kept. A header whose token the session does not
/// have (it was too large for the cookie, or the session predates the
/// route's asking for it) is left out, never sent empty.
fn fill_templates(h: &mut http::HeaderMap, route: &Route, s: &Session, assertion: &str) {
    let tokens = s.idp_tokens.as_ref();
    let id_token = tokens.and_then(|t| t.id_token.as_deref());
    let access_token = tokens.and_then(|t| t.access_token.as_deref());
    for (name, template) in &route.templated_request_headers {
        let mut value = template.replace(crate::model::ASSERTION, assertion);
        for (placeholder, token) in [
            (crate::model::IDP_ID_TOKEN, id_token),
            (crate::model::IDP_ACCESS_TOKEN, access_token),
        ] {
            if value.contains(placeholder) {
                match token {
                    Some(t) => value = value.replace(placeholder, t),
                    None => {
                        tracing::warn!(route = %route.id, header = %name, sid = %s.id, "the session has no IdP token for this header; header left out");
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
    parts.extensions.insert(body::SendIdle(idle));
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

#[cfg(test)]
mod tests {
    #[test]
    fn request_ids_are_16_hex_digits_and_distinct() {
        let ids: std::collections::HashSet<String> =
            (0..10_000).map(|_| super::request_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(
            ids.iter()
                .all(|i| i.len() == 16 && i.bytes().all(|b| b.is_ascii_hexdigit()))
        );
    }
}
