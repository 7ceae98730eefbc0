//! The internal listener (the cluster-internal URL): the JWKS and discovery
//! documents, `/healthz`, `/readyz` (ready = a snapshot with keys is
//! published; the identity provider is not part of it, so public routes
//! stay in service while it is unreachable), `/healthz/idp` (each identity
//! provider's discovery: 200 when all work, 503 naming the failing URL
//! otherwise) and Prometheus `/metrics`.

use crate::identity::jwks::{DISCOVERY_PATH, JWKS_PATH, discovery_document};
use crate::proxy::body::{Body, full};
use crate::proxy::{Proxy, document_response};
use http::{HeaderValue, Request, Response, StatusCode, header};
use std::sync::Arc;

/// Handles one request on the internal listener.
pub fn handle<B>(proxy: &Arc<Proxy>, req: &Request<B>) -> Response<Body> {
    let snapshot = proxy.reader.load();
    let path = req.uri().path();
    match (path, snapshot) {
        ("/healthz" | "/ping", _) => text(StatusCode::OK, "ok\n"),
        ("/readyz", Some(_)) => text(StatusCode::OK, "ready\n"),
        ("/healthz/idp", _) => idp_health(proxy),
        ("/readyz", None) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no configuration loaded\n",
        ),
        ("/metrics", snap) => {
            if let Some(s) = &snap {
                let keep: std::collections::HashSet<&str> =
                    s.routes.iter().map(|r| r.id.as_str()).collect();
                proxy.metrics.retain_routes(&keep);
            }
            let (expiry, routes) = snap
                .as_ref()
                .map(|s| (s.tls.expiry.clone(), s.routes.len()))
                .unwrap_or_default();
            let body = proxy.metrics.render(&crate::proxy::metrics::Gauges {
                generation: proxy.reader.generation(),
                reload_failures: proxy.reader.reload_failures(),
                last_reload_ok: proxy.reader.last_reload_ok(),
                cert_expiry: &expiry,
                routes,
                revocations: crate::proxy::metrics::RevocationGauges::of(&proxy.auth.revocations),
                idps: &proxy.auth.idp_board.states(),
            });
            let mut r = text(StatusCode::OK, &body);
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            r
        }
        (JWKS_PATH, Some(s)) => document_response(&s.identity.jwks, req),
        (DISCOVERY_PATH | "/.well-known/pomerium/", Some(s)) => {
            // The internal listener is plain HTTP: name it as the client
            // addressed it (host and port), so the JWKS URL works as printed.
            let authority = req
                .uri()
                .authority()
                .map(|a| a.to_string())
                .or_else(|| {
                    req.headers()
                        .get(header::HOST)
                        .and_then(|h| h.to_str().ok())
                        .map(str::to_string)
                })
                .filter(|a| !a.contains('@'))
                .and_then(|a| a.parse::<http::uri::Authority>().ok())
                .map(|a| a.to_string().to_ascii_lowercase())
                .unwrap_or_else(|| "localhost".into());
            let auth = s.auth.authenticate_url.clone().unwrap_or_default();
            document_response(
                &discovery_document(&format!("http://{authority}"), &auth, false),
                req,
            )
        }
        (JWKS_PATH | DISCOVERY_PATH, None) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "not ready: no keys loaded\n",
        ),
        _ => text(StatusCode::NOT_FOUND, "not found\n"),
    }
}

/// `/healthz/idp`: `{"ok": bool, "idps": [{idp, issuer, ok, error,
/// checked_at}]}`, 200 when every configured provider client was
/// discovered (or none is configured), 503 otherwise.
fn idp_health(proxy: &Proxy) -> Response<Body> {
    let board = &proxy.auth.idp_board;
    let ok = board.all_ok();
    let body = serde_json::json!({ "ok": ok, "idps": board.states() });
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = match ok {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

fn text(status: StatusCode, body: &str) -> Response<Body> {
    let mut r = Response::new(full(body.to_string()));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// Serves the internal listener until `shutdown` is cancelled.
pub async fn serve(
    listener: tokio::net::TcpListener,
    proxy: Arc<Proxy>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    crate::proxy::server::serve_plain(
        listener,
        move |req, _| {
            let p = proxy.clone();
            async move { handle(&p, &req) }
        },
        shutdown,
    )
    .await
}
