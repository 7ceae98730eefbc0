//! The request's spans (exported by [`crate::traces`] when tracing is on):
//!
//! - one server span per request, `METHOD route`, continuing the client's
//!   W3C `traceparent` (and `tracestate`) when it is valid, else a new
//!   trace; attributes `http.request.method`, `server.address` (the
//!   normalised host), `jetbridge.route`, `jetbridge.request_id`,
//!   `http.response.status_code`;
//! - `jetbridge.authorize`, the policy decision: `jetbridge.decision`
//!   (allow/deny), `jetbridge.policy` and `jetbridge.rule` (as the decision
//!   log names them), `jetbridge.reason`;
//! - `jetbridge.upstream`, the upstream call (a client span): the
//!   upstream's `traceparent` names this span, so the upstream's own spans
//!   are its children; `server.address` (the target last tried) and
//!   `http.response.status_code`;
//! - the sign-in steps: `jetbridge.sign_in.callback`, `jetbridge.idp.discover`
//!   (inside a request, or a trace of its own when the health check runs it),
//!   and one client span per call to the identity provider (`idp.discovery`, `idp.jwks`,
//!   `idp.token_exchange`, `idp.token_refresh`, `idp.userinfo`) with its
//!   host, path (never its query) and status.
//!
//! Never recorded: query strings, cookies, tokens, request or response
//! headers, bodies, the user's identity. Every hook starts with
//! [`crate::traces::enabled`], so with tracing off a request pays one
//! relaxed load per hook.

use super::error::ProxyError;
use crate::model::Route;
use crate::traces;
use http::{HeaderMap, Request, Response, header};
use opentelemetry::context::FutureExt as _;
use opentelemetry::propagation::TextMapPropagator as _;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt as _, Tracer as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use std::future::Future;
use std::time::SystemTime;

const TRACEPARENT: &str = "traceparent";
const TRACESTATE: &str = "tracestate";

/// The request's server span, when tracing is on.
pub struct Server(Option<Context>);

impl Server {
    /// Starts the server span of `req`, a child of the client's valid
    /// `traceparent` or the root of a new trace.
    #[inline]
    pub fn start<B>(req: &Request<B>) -> Self {
        if !traces::enabled() {
            return Server(None);
        }
        Server(traces::tracer().map(|t| server_span(t, req)))
    }

    /// Runs `fut` (the request's stages) with this span as the current one,
    /// so the stages' spans are its children. Not an `async fn`: the
    /// request's future is moved once and kept once (an `async fn` would keep
    /// its argument and its awaited copy side by side, doubling the state
    /// every request moves).
    pub fn run<F: Future>(
        &self,
        fut: F,
    ) -> futures_util::future::Either<F, opentelemetry::context::WithContext<F>> {
        match &self.0 {
            None => futures_util::future::Either::Left(fut),
            Some(cx) => futures_util::future::Either::Right(fut.with_context(cx.clone())),
        }
    }

    /// Ends the span with what the request came to.
    #[inline]
    pub fn finish(self, method: &str, route: &str, host: Option<&str>, id: &str, status: u16) {
        if let Some(cx) = self.0 {
            finish_server(&cx, method, route, host, id, status);
        }
    }
}

fn server_span<B>(tracer: &opentelemetry_sdk::trace::Tracer, req: &Request<B>) -> Context {
    let parent =
        TraceContextPropagator::new().extract(&opentelemetry_http::HeaderExtractor(req.headers()));
    let method = req.method().as_str().to_string();
    let span = tracer
        .span_builder(method.clone())
        .with_kind(SpanKind::Server)
        .with_attributes([KeyValue::new("http.request.method", method)])
        .start_with_context(tracer, &parent);
    parent.with_span(span)
}

fn finish_server(
    cx: &Context,
    method: &str,
    route: &str,
    host: Option<&str>,
    id: &str,
    status: u16,
) {
    let span = cx.span();
    span.update_name(format!("{method} {route}"));
    span.set_attribute(KeyValue::new("jetbridge.route", route.to_string()));
    span.set_attribute(KeyValue::new("jetbridge.request_id", id.to_string()));
    span.set_attribute(KeyValue::new(
        "http.response.status_code",
        i64::from(status),
    ));
    if let Some(h) = host {
        span.set_attribute(KeyValue::new("server.address", h.to_string()));
    }
    if status >= 500 {
        span.set_status(Status::error(format!("status {status}")));
    }
    span.end();
}

/// When a decision started: `Some` only when tracing is on.
#[inline]
pub fn decision_started() -> Option<SystemTime> {
    traces::enabled().then(SystemTime::now)
}

/// The policy decision's span, a child of the current span (`started`
/// from [`decision_started`]).
#[inline]
pub fn decision(started: Option<SystemTime>, route: &Route, d: &crate::policy::Decision) {
    if let Some(at) = started {
        decision_span(at, route, d);
    }
}

fn decision_span(at: SystemTime, route: &Route, d: &crate::policy::Decision) {
    let Some(tracer) = traces::tracer() else {
        return;
    };
    let (policy, rule) = super::decision_log::decided_by(route, d.rule);
    let mut attributes = vec![
        KeyValue::new("jetbridge.route", route.id.clone()),
        KeyValue::new("jetbridge.decision", if d.allow { "allow" } else { "deny" }),
        KeyValue::new("jetbridge.policy", policy.unwrap_or("-").to_string()),
        KeyValue::new("jetbridge.reason", d.reason.clone()),
    ];
    if let Some(rule) = rule {
        attributes.push(KeyValue::new("jetbridge.rule", rule));
    }
    let mut span = tracer
        .span_builder("jetbridge.authorize")
        .with_kind(SpanKind::Internal)
        .with_start_time(at)
        .with_attributes(attributes)
        .start_with_context(tracer, &Context::current());
    opentelemetry::trace::Span::end(&mut span);
}

/// The upstream call's client span, when tracing is on.
pub struct Upstream(Option<Context>);

impl Upstream {
    /// Starts the span and sets the upstream request's `traceparent` (and
    /// `tracestate`) to it, replacing what the client sent.
    #[inline]
    pub fn start(headers: &mut HeaderMap) -> Self {
        if !traces::enabled() {
            return Upstream(None);
        }
        Upstream(traces::tracer().map(|t| upstream_span(t, headers)))
    }

    /// Ends the span with the upstream's answer (or the failure).
    #[inline]
    pub fn end<B>(self, result: &Result<Response<B>, ProxyError>, address: Option<&str>) {
        if let Some(cx) = self.0 {
            let status = result.as_ref().map(|r| r.status().as_u16());
            end_client(&cx, status.map_err(|e| e.to_string()), address);
        }
    }
}

fn upstream_span(tracer: &opentelemetry_sdk::trace::Tracer, headers: &mut HeaderMap) -> Context {
    let span = tracer
        .span_builder("jetbridge.upstream")
        .with_kind(SpanKind::Client)
        .start_with_context(tracer, &Context::current());
    let cx = Context::current().with_span(span);
    headers.remove(TRACEPARENT);
    headers.remove(TRACESTATE);
    TraceContextPropagator::new()
        .inject_context(&cx, &mut opentelemetry_http::HeaderInjector(headers));
    cx
}

/// Ends a client span: the status the server answered, or why none came.
fn end_client(cx: &Context, status: Result<u16, String>, address: Option<&str>) {
    let span = cx.span();
    if let Some(a) = address {
        span.set_attribute(KeyValue::new("server.address", a.to_string()));
    }
    match status {
        Ok(s) => {
            span.set_attribute(KeyValue::new("http.response.status_code", i64::from(s)));
            if s >= 500 {
                span.set_status(Status::error(format!("status {s}")));
            }
        }
        Err(e) => span.set_status(Status::error(e)),
    }
    span.end();
}

/// Runs one sign-in step (`name`) in a span of its own, a child of the
/// current span, so the identity provider's calls inside are its children.
/// Outside a traced request it makes no span. An `Err` marks the span failed.
pub async fn step<T, E: std::fmt::Display, F>(name: &'static str, fut: F) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
{
    in_span(name, false, fut).await
}

/// As [`step`], but outside a request the span starts a trace of its own
/// (the identity provider's discovery, which the health check runs ahead
/// of the first sign-in).
pub async fn task<T, E: std::fmt::Display, F>(name: &'static str, fut: F) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
{
    in_span(name, true, fut).await
}

async fn in_span<T, E: std::fmt::Display, F>(name: &'static str, root: bool, fut: F) -> Result<T, E>
where
    F: Future<Output = Result<T, E>>,
{
    let Some(tracer) = traces::tracer().filter(|_| traces::enabled()) else {
        return fut.await;
    };
    let parent = Context::current();
    if !root && !parent.has_active_span() {
        return fut.await;
    }
    let span = tracer
        .span_builder(name)
        .with_kind(SpanKind::Internal)
        .start_with_context(tracer, &parent);
    let cx = parent.with_span(span);
    let result = fut.with_context(cx.clone()).await;
    let span = cx.span();
    if let Err(e) = &result {
        span.set_status(Status::error(e.to_string()));
    }
    span.end();
    result
}

/// A call to the identity provider, when it is made for a traced request.
pub struct IdpCall(Option<Context>);

impl IdpCall {
    /// Starts a client span named for what `req` asks of the provider (only
    /// inside a span: a traced request, or the discovery's own trace).
    pub fn start(req: &http::request::Parts, body: &[u8]) -> Self {
        if !traces::enabled() {
            return IdpCall(None);
        }
        let parent = Context::current();
        let Some(tracer) = traces::tracer().filter(|_| parent.has_active_span()) else {
            return IdpCall(None);
        };
        let attributes = [
            KeyValue::new("http.request.method", req.method.as_str().to_string()),
            KeyValue::new(
                "server.address",
                req.uri.host().unwrap_or_default().to_string(),
            ),
            KeyValue::new("url.path", req.uri.path().to_string()),
        ];
        let span = tracer
            .span_builder(idp_step(req, body))
            .with_kind(SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(tracer, &parent);
        IdpCall(Some(parent.with_span(span)))
    }

    /// Ends the span with the provider's status, or why none came.
    pub fn end(self, status: Result<u16, String>) {
        if let Some(cx) = self.0 {
            end_client(&cx, status, None);
        }
    }
}

/// What a request to the identity provider is for, from its method, path,
/// form grant and whether it carries a token (read, never recorded).
fn idp_step(req: &http::request::Parts, body: &[u8]) -> &'static str {
    let form_has = |needle: &[u8]| body.windows(needle.len()).any(|w| w == needle);
    if req.method == http::Method::POST {
        if form_has(b"grant_type=authorization_code") {
            return "idp.token_exchange";
        }
        if form_has(b"grant_type=refresh_token") {
            return "idp.token_refresh";
        }
        return "idp.request";
    }
    if req
        .uri
        .path()
        .ends_with("/.well-known/openid-configuration")
    {
        return "idp.discovery";
    }
    if req.headers.contains_key(header::AUTHORIZATION) {
        return "idp.userinfo";
    }
    "idp.jwks"
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, uri: &str, auth: bool) -> http::request::Parts {
        let mut b = Request::builder().method(method).uri(uri);
        if auth {
            b = b.header("authorization", "Bearer x");
        }
        b.body(()).unwrap().into_parts().0
    }

    #[test]
    fn identity_provider_calls_are_named_by_their_step() {
        let cases = [
            (
                parts("GET", "https://idp/.well-known/openid-configuration", false),
                "",
                "idp.discovery",
            ),
            (parts("GET", "https://idp/keys", false), "", "idp.jwks"),
            (
                parts("GET", "https://idp/userinfo", true),
                "",
                "idp.userinfo",
            ),
            (
                parts("POST", "https://idp/token", false),
                "code=a&grant_type=authorization_code",
                "idp.token_exchange",
            ),
            (
                parts("POST", "https://idp/token", false),
                "grant_type=refresh_token&refresh_token=r",
                "idp.token_refresh",
            ),
            (
                parts("POST", "https://idp/other", false),
                "x=y",
                "idp.request",
            ),
        ];
        for (p, body, want) in cases {
            assert_eq!(
                idp_step(&p, body.as_bytes()),
                want,
                "{} {}",
                p.method,
                p.uri
            );
        }
    }

    #[test]
    fn with_tracing_off_hooks_make_nothing_and_leave_headers_alone() {
        assert!(!traces::enabled());
        let mut h = HeaderMap::new();
        h.insert(
            TRACEPARENT,
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
                .parse()
                .unwrap(),
        );
        let up = Upstream::start(&mut h);
        assert!(up.0.is_none());
        assert_eq!(h.len(), 1);
        assert!(decision_started().is_none());
        let req = Request::builder().uri("/").body(()).unwrap();
        assert!(Server::start(&req).0.is_none());
    }
}
