//! The data plane: listeners, the per-handshake certificate resolver, and the
//! request pipeline `admit → prepare → send`. This module admits a request
//! (normalise the target, route it, read the session, evaluate the policy);
//! `prepare` applies the route's request filters synchronously (header
//! hygiene, the assertion, impersonation, rewrites); `send` balances,
//! applies the breaker and retries, and answers with the route's response
//! filters.
//! The proxy reads the current snapshot once per request and never imports
//! `kube` or the controller.

pub mod admin;
pub mod assertions;
pub mod auth;
pub mod body;
pub mod client_addr;
pub mod clock;
pub mod dataplane;
mod decision_log;
pub mod error;
mod filters;
pub mod headers;
pub mod health;
pub mod health_board;
pub mod idp_board;
pub mod idp_health;
pub mod metrics;
mod mirror;
pub mod negotiate;
pub mod pages;
mod prepare;
pub mod redirect;
pub mod request;
mod send;
pub mod server;
pub mod sessions;
mod trace;
mod tunnel;
pub mod upstream;

use crate::identity::jwks::{DISCOVERY_PATH, Document, JWKS_PATH};
use crate::identity::session::Session;
use crate::model::pathnorm::{normalize_path, split_target};
use crate::model::routing::{Scheme, TableRef, normalize_host};
use crate::model::{Access, BearerTokenFormat, Route, Snapshot};
use crate::policy::{Facts, RequestFacts};
use crate::snapshot::SnapshotReader;
use body::{Body, empty, full};
use error::{ProxyError, error_response, wants_json};
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use hyper::body::Incoming;
use metrics::Metrics;
use std::sync::Arc;
use std::time::Instant;
use upstream::Upstreams;

use clock::unix_now;
use request::{Admitted, ConnInfo, Target};

/// Shared proxy state.
pub struct Proxy {
    pub reader: SnapshotReader,
    pub upstreams: Upstreams,
    pub metrics: Arc<Metrics>,
    /// The HTTPS port users reach (the public one, else the bound one): the
    /// port the HTTP→HTTPS redirect names.
    pub https_port: u16,
    /// Sign-in state and the identity provider client.
    pub auth: Arc<auth::state::Authenticator>,
    /// Which fronts name the client (`use_proxy_protocol`,
    /// `xff_num_trusted_hops`, `skip_xff_append`).
    pub client_addr: client_addr::ClientAddrSettings,
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
    // Sixteen hex digits, written directly (`format!` cost 550 instructions
    // a request).
    const HEX: &[u8; 16] = b"0123456789abcdef";
    (0..16)
        .rev()
        .map(|i| char::from(HEX[(z >> (i * 4)) as usize & 0xf]))
        .collect()
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

impl Proxy {
    /// A proxy over the given snapshot reader.
    pub fn new(reader: SnapshotReader, https_port: u16) -> Self {
        Proxy {
            reader,
            upstreams: Upstreams::new(),
            metrics: Arc::new(Metrics::default()),
            https_port,
            auth: Arc::new(auth::state::Authenticator::default()),
            client_addr: Default::default(),
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
            client_addr: self.client_addr,
        }
    }

    /// The proxy's own endpoints and session checks.
    fn endpoints(&self) -> auth::endpoints::Endpoints<'_> {
        auth::endpoints::Endpoints {
            auth: &self.auth,
            upstreams: &self.upstreams,
        }
    }

    /// Handles one request end to end; never fails (errors become pages).
    pub async fn handle(
        self: Arc<Self>,
        req: Request<Incoming>,
        mut conn: ConnInfo,
    ) -> Response<Body> {
        let started = Instant::now();
        client_addr::resolve(&self.client_addr, &mut conn, req.headers());
        let id = request_id();
        // Read for an error page only (most requests make none).
        let accept = req.headers().get(header::ACCEPT).cloned();
        let method = req.method().clone();
        let span = trace::Server::start(&req);
        let snapshot = self.reader.load();
        let mut cx = Ctx {
            id: &id,
            conn,
            label: "-",
            set_cookie: None,
            trail: Trail::default(),
        };
        let outcome = match &snapshot {
            None if cx.conn.listener.is_plain() => {
                Outcome::Respond(redirect::redirect_to_https(&req, self.https_port))
            }
            None => Outcome::Error(ProxyError::NotReady),
            Some(s) => span.run(self.pipeline(s, &mut cx, req)).await,
        };
        let mut resp = match outcome {
            Outcome::Forward(r) | Outcome::Respond(r) | Outcome::SignIn(r) => r,
            Outcome::Error(e) => {
                if e.is_upstream_failure() {
                    self.metrics.upstream_error(cx.label);
                }
                error_response(&e, &id, wants_json(accept.as_ref()))
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
        let status = resp.status().as_u16();
        span.finish(
            method.as_str(),
            cx.label,
            trail.host.as_deref(),
            &id,
            status,
        );
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
            remote = %cx.conn.client,
            "request"
        );
        resp
    }

    /// `normalise → own endpoints → admit → forward`. The session is opened
    /// only where it is used: a public route without identity headers, an
    /// unknown host or a 404 never touches the cookie (nor the identity
    /// provider).
    async fn pipeline<'s>(
        &self,
        snapshot: &'s Snapshot,
        cx: &mut Ctx<'s>,
        req: Request<Incoming>,
    ) -> Outcome {
        // normalise
        let target = match normalise(&req) {
            Ok(t) => t,
            Err(_) if cx.conn.listener.is_plain() => {
                return Outcome::Respond(redirect::redirect_to_https(&req, self.https_port));
            }
            Err(e) => return Outcome::Error(e),
        };
        cx.trail.host = Some(target.host.clone());
        cx.trail.path = Some(target.path.clone());
        if cx.conn.listener.is_plain() {
            return match plain_http(snapshot, &req, &target, cx.conn.listener.table()) {
                PlainHttp::Serve => self.admit_and_forward(snapshot, cx, req, target).await,
                PlainHttp::NoRoute => Outcome::Error(ProxyError::NoRoute),
                PlainHttp::Redirect => {
                    Outcome::Respond(redirect::redirect_to_https(&req, self.https_port))
                }
            };
        }
        if !snapshot.serves_host_at(cx.conn.listener.table(), &target.host) {
            return Outcome::Error(ProxyError::UnknownHost);
        }
        if let Some(answered) = self.own_endpoint(snapshot, cx, &req, &target).await {
            return answered;
        }
        self.admit_and_forward(snapshot, cx, req, target).await
    }

    /// `admit → forward`: the route's answer, or the outcome that refuses.
    async fn admit_and_forward<'s>(
        &self,
        snapshot: &'s Snapshot,
        cx: &mut Ctx<'s>,
        req: Request<Incoming>,
        target: Target,
    ) -> Outcome {
        let admitted = match self.admit(snapshot, cx, &req, target).await {
            Ok(a) => a,
            Err(refused) => return refused,
        };
        match self.forward(snapshot, cx, admitted, req).await {
            Ok(r) => Outcome::Forward(r),
            Err(e) => Outcome::Error(e),
        }
    }

    /// The proxy's own endpoints, answered before routing: the
    /// `/.well-known/pomerium` documents, the authenticate host's and the
    /// route hosts' `/.pomerium/` endpoints. `None`: not one of them.
    async fn own_endpoint<'s>(
        &self,
        snapshot: &'s Snapshot,
        cx: &mut Ctx<'s>,
        req: &Request<Incoming>,
        target: &Target,
    ) -> Option<Outcome> {
        if let Some(resp) = well_known(snapshot, &target.host, &target.path, req) {
            cx.label = "well-known";
            return Some(Outcome::Respond(resp));
        }
        let json = || wants_json(req.headers().get(header::ACCEPT));
        let query = target.query.as_deref();
        // The endpoints below are rare beside proxied requests and their
        // futures large (sign-in calls the identity provider): boxed, so
        // the future every request moves stays small.
        if snapshot.auth.authenticate_host.as_deref() == Some(target.host.as_str())
            && let Some(r) = Box::pin(self.endpoints().authenticate_endpoint(
                snapshot,
                req,
                &target.path,
                query,
                cx.id,
                json(),
            ))
            .await
        {
            cx.label = "authenticate";
            return Some(r.into());
        }
        if snapshot.auth.forward_auth_host.as_deref() == Some(target.host.as_str()) {
            cx.label = "forward-auth";
            let check = auth::forward_auth::Check::read(snapshot, req, target);
            return Some(self.forward_auth(snapshot, cx, req, check).await);
        }
        if !target.path.starts_with(auth::endpoints::POMERIUM_PREFIX) {
            return None;
        }
        // A Gateway API ExternalAuth filter's check, in forward-auth mode only.
        if snapshot.auth.forward_auth_host.is_some()
            && let Some(check) = auth::forward_auth::Check::external_auth(snapshot, req, target)
        {
            cx.label = "forward-auth";
            return Some(self.forward_auth(snapshot, cx, req, check).await);
        }
        let session = match self
            .session(
                snapshot,
                cx,
                req,
                &target.host,
                BearerTokenFormat::Default,
                &[],
            )
            .await
        {
            Ok(s) => s,
            Err(e) => return Some(Outcome::Error(e)),
        };
        if target.path == auth::forward_auth::SIGN_IN_PATH {
            cx.label = "pomerium";
            return Some(
                auth::forward_auth::start(snapshot, &target.host, query, session.as_ref()).into(),
            );
        }
        let r = Box::pin(self.endpoints().route_host_endpoint(
            snapshot,
            req,
            &target.host,
            &target.path,
            query,
            session.as_ref(),
            cx.id,
            json(),
        ))
        .await?;
        cx.label = "pomerium";
        Some(r.into())
    }

    /// `route → client certificate → session → policy`: the route and
    /// session a request is forwarded with, or the outcome that refuses it.
    async fn admit<'s>(
        &self,
        snapshot: &'s Snapshot,
        cx: &mut Ctx<'s>,
        req: &Request<Incoming>,
        target: Target,
    ) -> Result<Admitted<'s>, Outcome> {
        let view = crate::model::conditions::RequestView {
            method: req.method(),
            headers: req.headers(),
            query: target.query.as_deref(),
        };
        let at = cx.conn.listener.table();
        let Some(route) = snapshot.route_on(at, &target.host, &target.path, &view) else {
            return Err(Outcome::Error(ProxyError::NoRoute));
        };
        cx.label = &route.id;
        // client certificate, on routes that require one
        if let Some(ca) = &route.client_ca {
            client_certificate(ca, &cx.conn, &route.id).map_err(|e| {
                if matches!(e, ProxyError::ClientCertificateRequired) {
                    let reason = "no client certificate the route's CA signed";
                    let at = decided_at(cx, route, &target, req.method());
                    decision_log::record(&decision_log::Decided { reason, ..at }, &self.metrics);
                }
                Outcome::Error(e)
            })?;
        }
        let session = self
            .route_session(snapshot, cx, req, route, &target.host)
            .await
            .map_err(Outcome::Error)?;
        // policy
        let metrics = &self.metrics;
        if let Some(refused) =
            authorize(snapshot, cx, metrics, route, session.as_ref(), &target, req)
        {
            return Err(refused);
        }
        Ok(Admitted {
            route,
            session,
            target,
        })
    }
}

impl Proxy {
    /// The session a request on `route` counts, opened only where the
    /// route uses one.
    async fn route_session(
        &self,
        snapshot: &Snapshot,
        cx: &mut Ctx<'_>,
        req: &Request<Incoming>,
        route: &Route,
        host: &str,
    ) -> Result<Option<Session>, ProxyError> {
        if !route.uses_session() {
            return Ok(None);
        }
        let bearer = route.bearer_token_format;
        let audiences = &route.access_token_audiences;
        Ok(self
            .session(snapshot, cx, req, host, bearer, audiences)
            .await?
            // A route with its own OAuth client counts only sessions
            // signed in through it (and the others only theirs).
            .filter(|s| s.idp == route.idp_id()))
    }

    /// A forward-auth check (on the `forward_auth_url` host, or from a
    /// Gateway API ExternalAuth filter): the route that serves the checked
    /// URL decides, on the session the browser sent.
    async fn forward_auth<'s>(
        &self,
        snapshot: &'s Snapshot,
        cx: &mut Ctx<'s>,
        req: &Request<Incoming>,
        check: Result<auth::forward_auth::Check, ProxyError>,
    ) -> Outcome {
        use auth::forward_auth::{Mode, allowed};
        let check = match check {
            Ok(c) => c,
            Err(e) => return Outcome::Error(e),
        };
        let view = crate::model::conditions::RequestView {
            method: &check.method,
            headers: req.headers(),
            query: check.target.query.as_deref(),
        };
        let checked = &check.target;
        let Some(route) = snapshot.route_request(&checked.host, &checked.path, &view) else {
            let why = format!("uri refused: no route serves {}", check.url);
            return Outcome::Error(ProxyError::ForwardAuthRefused(why));
        };
        cx.label = &route.id;
        let session = match self
            .route_session(snapshot, cx, req, route, &checked.host)
            .await
        {
            Ok(s) => s,
            Err(e) => return Outcome::Error(e),
        };
        match verdict(
            cx,
            &self.metrics,
            route,
            session.as_ref(),
            checked,
            &check.method,
            req,
        ) {
            Verdict::Allow => {
                let Some(s) = &session else {
                    return Outcome::Respond(allowed(http::HeaderMap::new()));
                };
                let fcx = filters::FilterCx {
                    snapshot,
                    route: &route.id,
                    host: &checked.host,
                    session: Some(s),
                    now: unix_now(),
                };
                filters::identity_headers(route, &fcx, s)
                    .map(allowed)
                    .into()
            }
            Verdict::Refuse(e) => Outcome::Error(ProxyError::ForwardAuthRefused(e.to_string())),
            Verdict::Deny { user, reason } => Outcome::Error(ProxyError::ForwardAuthRefused(
                format!("access denied to {user} by route {}: {reason}", route.id),
            )),
            Verdict::SignIn => match check.mode {
                Mode::Redirect if sends_to_sign_in(req, route.bearer_token_format) => {
                    Outcome::SignIn(check.sign_in_redirect())
                }
                _ => {
                    let json = wants_json(req.headers().get(header::ACCEPT));
                    Outcome::Respond(check.unauthenticated(cx.id, json))
                }
            },
        }
    }
}

/// What a route's access says about a request.
enum Verdict {
    /// Forward it.
    Allow,
    /// Refused before the policy was asked (an invalid route).
    Refuse(ProxyError),
    /// A signed-in user the policy refuses.
    Deny {
        /// Who (name and email, or the subject).
        user: String,
        /// The policy's reason.
        reason: String,
    },
    /// Refused without a session: signing in may help.
    SignIn,
}

/// The route's access for a request by `method` to `target`, with `session`.
fn verdict(
    cx: &Ctx<'_>,
    metrics: &Metrics,
    route: &Route,
    session: Option<&Session>,
    target: &Target,
    method: &Method,
    req: &Request<Incoming>,
) -> Verdict {
    let at = || decided_at(cx, route, target, method);
    let program = match &route.access {
        Access::Invalid(why) => {
            let reason = format!("invalid route: {why}");
            decision_log::record(
                &decision_log::Decided {
                    reason: &reason,
                    ..at()
                },
                metrics,
            );
            return Verdict::Refuse(match route.contract {
                crate::model::Contract::Pomerium => ProxyError::RouteInvalid,
                crate::model::Contract::GatewayApi => ProxyError::RouteUnresolved,
            });
        }
        Access::Public => return Verdict::Allow,
        Access::Policy(_) if route.cors_allow_preflight && is_cors_preflight(method, req) => {
            let d = decision_log::Decided {
                allow: true,
                reason: "CORS preflight let through (cors_allow_preflight)",
                session,
                ..at()
            };
            decision_log::record(&d, metrics);
            return Verdict::Allow;
        }
        Access::Policy(program) => program,
    };
    let user = session.map(Session::user);
    let mut headers = [("", ""); POLICY_HEADERS.len()];
    let facts_req = RequestFacts {
        method: method.as_str(),
        host: &target.host,
        path: &target.path,
        source_ip: Some(cx.conn.client),
        headers: policy_headers(req, &mut headers),
    };
    let started = trace::decision_started();
    let decision = program.eval(&Facts {
        user: user.as_ref(),
        request: &facts_req,
        now: time::OffsetDateTime::now_utc(),
    });
    trace::decision(started, route, &decision);
    decision_log::record(
        &decision_log::Decided {
            session,
            allow: decision.allow,
            reason: &decision.reason,
            rule: decision.rule,
            ..at()
        },
        metrics,
    );
    if decision.allow {
        return Verdict::Allow;
    }
    tracing::debug!(route = %route.id, reason = %decision.reason, "denied");
    if let Some(s) = session {
        return Verdict::Deny {
            user: pages::who(s),
            reason: decision.reason,
        };
    }
    if !(decision.needs_login || program.needs_user()) {
        return Verdict::Refuse(ProxyError::Forbidden);
    }
    Verdict::SignIn
}

/// A decision line's fields that say where: the route, the request and the
/// client; a denial without a session or rule until the caller says more.
fn decided_at<'a>(
    cx: &'a Ctx<'_>,
    route: &'a Route,
    target: &'a Target,
    method: &'a Method,
) -> decision_log::Decided<'a> {
    decision_log::Decided {
        route,
        request_id: cx.id,
        method: method.as_str(),
        host: &target.host,
        path: &target.path,
        ip: Some(cx.conn.client),
        session: None,
        allow: false,
        reason: "",
        rule: None,
    }
}

/// What the plain-HTTP listener does with a request.
#[derive(Debug, PartialEq, Eq)]
enum PlainHttp {
    /// Admit and forward it on the plain-HTTP route it matches.
    Serve,
    /// A host the plain-HTTP listener serves, but no route matches: 404.
    NoRoute,
    /// Everything else: the 308 to HTTPS.
    Redirect,
}

/// The plain-HTTP listener's decision. It answers for the hosts of its own
/// routes ([`Snapshot::plain_http_host`]); a matched route is served only
/// when it needs no sign-in (a `Policy` route: session cookies are
/// `Secure`, so a browser never sends them over plain HTTP) and no client
/// certificate; such a route, the proxy's own `/.pomerium/` endpoints and
/// the hosts the TLS listener serves are redirected to HTTPS. A host
/// neither serves is 404 once some route is on the plain-HTTP listener
/// (there is no HTTPS page to send it to), else redirected as always. A
/// Gateway's `HTTP` port (`at`) answers from its own routes alone: what
/// they do not match is 404.
fn plain_http<B>(
    snapshot: &Snapshot,
    req: &Request<B>,
    target: &Target,
    at: TableRef,
) -> PlainHttp {
    if target.path.starts_with(auth::endpoints::POMERIUM_PREFIX) {
        return PlainHttp::Redirect;
    }
    if at == TableRef::Shared(Scheme::Plain)
        && snapshot
            .acme_challenge(&target.host, &target.path)
            .is_some()
    {
        return PlainHttp::Serve;
    }
    if at == TableRef::Shared(Scheme::Plain) && !snapshot.plain_http_host(&target.host) {
        let tls_serves = snapshot.host_known(&target.host) || snapshot.table.serves_any_host();
        return match tls_serves || snapshot.plain_table.is_empty() {
            true => PlainHttp::Redirect,
            false => PlainHttp::NoRoute,
        };
    }
    let view = crate::model::conditions::RequestView {
        method: req.method(),
        headers: req.headers(),
        query: target.query.as_deref(),
    };
    match snapshot.route_on(at, &target.host, &target.path, &view) {
        None => PlainHttp::NoRoute,
        Some(r) if matches!(r.access, Access::Policy(_)) || r.client_ca.is_some() => {
            PlainHttp::Redirect
        }
        Some(_) => PlainHttp::Serve,
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
    metrics: &Metrics,
    route: &Route,
    session: Option<&Session>,
    target: &Target,
    req: &Request<Incoming>,
) -> Option<Outcome> {
    let return_to = || requested_url(target, req);
    match verdict(cx, metrics, route, session, target, req.method(), req) {
        Verdict::Allow => None,
        Verdict::Refuse(e) => Some(Outcome::Error(e)),
        Verdict::Deny { user, .. } => Some(Outcome::Error(ProxyError::Denied {
            user,
            here: return_to(),
        })),
        Verdict::SignIn if !snapshot.table.host_known(&target.host) => {
            Some(Outcome::Error(ProxyError::NoSignInOnHost))
        }
        Verdict::SignIn => {
            let browser = sends_to_sign_in(req, route.bearer_token_format);
            match browser
                .then(|| auth::endpoints::start_sign_in(snapshot, &return_to(), route.idp_id()))
                .flatten()
            {
                Some(r) => Some(Outcome::SignIn(r)),
                None => Some(Outcome::Error(ProxyError::Unauthenticated)),
            }
        }
    }
}

/// The absolute URL the client asked for (where a sign-in returns to).
fn requested_url<B>(target: &Target, req: &Request<B>) -> String {
    let mut url = format!(
        "{}{}",
        auth::endpoints::origin(&target.host, auth::endpoints::client_port(req)),
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
    if grpc
        || auth::credentials::programmatic_token(h).is_some()
        || auth::credentials::idp_token(h, bearer).is_some()
    {
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
            None => auth::credentials::programmatic_token(req.headers())
                .map(|t| programmatic_session(snapshot, host, t, now)),
        };
        let session = match value.as_deref() {
            Some(value) => {
                let Some(opened) = sessions::open(snapshot, host, value, now)
                    .filter(|s| !self.auth.revocations.refuses(s))
                else {
                    return Ok(None);
                };
                // The refresh (an IdP round trip) is rare and its future
                // large: boxed, so every request's future stays small.
                let endpoints = self.endpoints();
                let (session, set_cookie) = match endpoints.refresh_due(&opened, now) {
                    None => (Some(opened), None),
                    Some(rt) => Box::pin(endpoints.refresh(snapshot, host, opened, rt)).await,
                };
                cx.set_cookie = set_cookie;
                session
            }
            None => match auth::credentials::idp_token(req.headers(), bearer) {
                Some((kind, token)) => {
                    let endpoints = self.endpoints();
                    let verify = endpoints.idp_token_session(snapshot, kind, token, audiences);
                    Box::pin(verify).await?
                }
                None => None,
            },
        };
        cx.trail.user = session.as_ref().map(|s| s.sub.clone());
        Ok(session)
    }

    /// `prepare → send`: the admitted request's head made ready for its
    /// route, then sent to the route's targets.
    async fn forward(
        &self,
        snapshot: &Snapshot,
        cx: &mut Ctx<'_>,
        admitted: Admitted<'_>,
        req: Request<Incoming>,
    ) -> Result<Response<Body>, ProxyError> {
        let (parts, body) = req.into_parts();
        if let Some(r) = &admitted.route.redirect {
            return Ok(redirect::answer(r, &admitted.target, &parts, &cx.conn));
        }
        let input = prepare::Inputs {
            snapshot,
            conn: &cx.conn,
            id: cx.id,
            now: unix_now(),
        };
        let mut prepared = prepare::prepare(&input, &admitted, parts)?;
        mirror::spawn(&self.upstreams, &prepared, cx.id);
        let span = trace::Upstream::start(&mut prepared.parts.headers);
        let sent = send::send(
            &self.upstreams,
            prepared,
            body,
            cx.id,
            &mut cx.trail.upstream,
        )
        .await;
        span.end(&sent, cx.trail.upstream.as_deref());
        sent
    }
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
fn is_cors_preflight<B>(method: &Method, req: &Request<B>) -> bool {
    method == Method::OPTIONS
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

/// The request headers policy criteria look at (CORS preflight); only these
/// are handed to evaluation, to keep it cheap.
const POLICY_HEADERS: [&str; 2] = ["origin", "access-control-request-method"];

/// Fills `buf` with the [`POLICY_HEADERS`] the request carries (as text) and
/// returns the filled part; borrows, allocates nothing.
fn policy_headers<'a, B>(
    req: &'a Request<B>,
    buf: &'a mut [(&'a str, &'a str); POLICY_HEADERS.len()],
) -> &'a [(&'a str, &'a str)] {
    let mut n = 0;
    for name in POLICY_HEADERS {
        if let Some(v) = req.headers().get(name).and_then(|v| v.to_str().ok()) {
            buf[n] = (name, v);
            n += 1;
        }
    }
    &buf[..n]
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
            let origin = auth::endpoints::origin(host, auth::endpoints::client_port(req));
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

    /// The size of what `f` returns, without calling it.
    fn returned_size<F, A, B, C, R>(_: F) -> usize
    where
        F: FnOnce(A, B, C) -> R,
    {
        std::mem::size_of::<R>()
    }

    /// hyper moves every request's future at least once, so its size is a
    /// cost per request: a large rare path (sign-in, a session refresh)
    /// awaited inline, or a wrapper keeping its future twice, grows it for
    /// every request (it was 25 432 bytes before the rare paths were boxed;
    /// 7 048 now, about the same in test and release builds).
    #[test]
    fn the_request_future_stays_small() {
        let handle = returned_size(super::Proxy::handle);
        eprintln!("request future: {handle} bytes");
        assert!(handle < 10_000, "the request future is {handle} bytes");
    }
}

#[cfg(test)]
#[path = "plain_tests.rs"]
mod plain_tests;
