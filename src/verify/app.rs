//! The Verify app: an upstream that shows what the proxy sent it and whether
//! the identity assertion verifies.
//!
//! Put it behind a route with `pass_identity_headers: true` (the seed
//! tutorial's `verify` upstream) and open it in a browser:
//!
//! - `GET /`: an HTML page, "Identity verified" with the verified claims, or
//!   the reason verification failed together with the claims decoded without
//!   verification (marked UNVERIFIED); plus any `X-Pomerium-Claim-*` headers.
//! - `GET /json`: `{"verified": bool, "claims": {...} | null, "error": string | null}`.
//! - `GET /headers`: `{"headers": {name: value}}`, every request header
//!   (repeated headers joined with `, `).
//! - `GET /healthz`: `ok`.
//!
//! All of these answer 200 whatever the verification outcome: the app reports,
//! it does not enforce. It speaks HTTP/1.1 and cleartext HTTP/2 (h2c).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::header::{ALLOW, CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::{Map, Value, json};
use tokio::net::{TcpListener, TcpStream};

use crate::proxy::pages::html_escape as escape;

use super::{
    ASSERTION_HEADER, CLAIM_HEADER_PREFIX, VerifiedClaims, Verifier, VerifierConfig, VerifyError,
    assertion_from_headers, decode_unverified,
};

/// A client must start sending, and finish its request headers, within this.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// How long open connections get to finish after shutdown is requested.
pub const SHUTDOWN_GRACE: Duration = Duration::from_secs(10);

/// Why the app could not run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The verifier configuration is unusable.
    #[error(transparent)]
    Verifier(#[from] VerifyError),
}

/// Binds `listen` and serves the Verify app until `shutdown` completes.
///
/// ```no_run
/// use jetbridge::verify::{VerifierConfig, app};
///
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let config = VerifierConfig::new("http://127.0.0.1:8443/.well-known/pomerium/jwks.json".parse()?)
///     .issuer("verify.localhost.pomerium.io")
///     .audience("verify.localhost.pomerium.io");
/// app::run("127.0.0.1:8000".parse()?, config, async {
///     let _ = tokio::signal::ctrl_c().await;
/// })
/// .await?;
/// # Ok(()) }
/// ```
pub async fn run(
    listen: SocketAddr,
    config: VerifierConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let verifier = Verifier::new(config)?;
    let listener = TcpListener::bind(listen)
        .await
        .map_err(|source| Error::Bind {
            addr: listen,
            source,
        })?;
    serve(listener, verifier, shutdown).await
}

/// Serves the Verify app on an already-bound listener until `shutdown`
/// completes, then lets open connections finish (up to [`SHUTDOWN_GRACE`]).
pub async fn serve(
    listener: TcpListener,
    verifier: Verifier,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_secs(30));
    let graceful = GracefulShutdown::new();
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, jwks_url = %verifier.config().jwks_url, "verify app listening");
    }

    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Usually out of file descriptors; pause instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let verifier = verifier.clone();
        let service = service_fn(move |request| {
            let verifier = verifier.clone();
            async move { Ok::<_, Infallible>(handle(&verifier, request).await) }
        });
        let builder = builder.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            if !client_speaks_in_time(&stream).await {
                tracing::debug!(%peer, "closing a connection that sent nothing");
                return;
            }
            let connection = builder.serve_connection(TokioIo::new(stream), service);
            if let Err(e) = watcher.watch(connection.into_owned()).await {
                tracing::debug!(%peer, "connection ended with an error: {e}");
            }
        });
    }

    drop(listener);
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(SHUTDOWN_GRACE) => {
            tracing::warn!("connections still open after {SHUTDOWN_GRACE:?}; closing them");
        }
    }
    Ok(())
}

/// hyper's header timeout starts only once the protocol is known; this
/// covers a client that connects and then sends nothing.
async fn client_speaks_in_time(stream: &TcpStream) -> bool {
    let mut byte = [0u8; 1];
    matches!(
        tokio::time::timeout(HEADER_READ_TIMEOUT, stream.peek(&mut byte)).await,
        Ok(Ok(n)) if n > 0
    )
}

async fn handle(verifier: &Verifier, request: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = request.uri().path();
    if !matches!(path, "/" | "/json" | "/headers" | "/healthz") {
        return text(StatusCode::NOT_FOUND, "not found\n");
    }
    if !matches!(*request.method(), Method::GET | Method::HEAD) {
        let mut response = text(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
        response
            .headers_mut()
            .insert(ALLOW, HeaderValue::from_static("GET, HEAD"));
        return response;
    }
    let headers = request.headers();
    match path {
        "/healthz" => text(StatusCode::OK, "ok\n"),
        "/headers" => json_response(&json!({ "headers": headers_json(headers) })),
        "/json" => {
            let outcome = verifier.verify_headers(headers).await;
            let body = match &outcome {
                Ok(claims) => json!({"verified": true, "claims": claims, "error": null}),
                Err(e) => json!({"verified": false, "claims": null, "error": e.to_string()}),
            };
            with_status(json_response(&body), outcome_status(&outcome))
        }
        _ => {
            let outcome = verifier.verify_headers(headers).await;
            with_status(
                html_response(render_page(verifier, headers, &outcome)),
                outcome_status(&outcome),
            )
        }
    }
}

/// The status a script or monitor reads: 200 verified, 401 no or a bad
/// assertion, 503 when the JWKS cannot be fetched, 500 when the Verify app
/// itself is misconfigured.
fn outcome_status(outcome: &Result<VerifiedClaims, VerifyError>) -> StatusCode {
    match outcome {
        Ok(_) => StatusCode::OK,
        Err(VerifyError::JwksFetch { .. }) => StatusCode::SERVICE_UNAVAILABLE,
        Err(VerifyError::InvalidConfig(_)) => StatusCode::INTERNAL_SERVER_ERROR,
        Err(_) => StatusCode::UNAUTHORIZED,
    }
}

fn with_status(mut response: Response<Full<Bytes>>, status: StatusCode) -> Response<Full<Bytes>> {
    *response.status_mut() = status;
    response
}

fn headers_json(headers: &HeaderMap) -> BTreeMap<String, String> {
    headers
        .keys()
        .map(|name| {
            let values: Vec<_> = headers
                .get_all(name)
                .iter()
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
                .collect();
            (name.as_str().to_owned(), values.join(", "))
        })
        .collect()
}

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    // Every page shows one user's identity: never cache it.
    h.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    respond(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(body.as_bytes()),
    )
}

fn json_response(value: &Value) -> Response<Full<Bytes>> {
    let mut body = serde_json::to_vec_pretty(value).unwrap_or_default();
    body.push(b'\n');
    respond(StatusCode::OK, "application/json", body.into())
}

fn html_response(page: String) -> Response<Full<Bytes>> {
    let mut response = respond(StatusCode::OK, "text/html; charset=utf-8", page.into());
    response.headers_mut().insert(
        "content-security-policy",
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    response
}

/// A claim value for display: strings bare, lists joined, times also as dates.
fn display_value(name: &str, value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) if items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(", "),
        Value::Number(n) if matches!(name, "exp" | "iat" | "nbf") => {
            let date = n
                .as_i64()
                .and_then(|t| time::OffsetDateTime::from_unix_timestamp(t).ok())
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                });
            match date {
                Some(date) => format!("{n} ({date})"),
                None => n.to_string(),
            }
        }
        other => other.to_string(),
    }
}

/// Claims in the contract's order, then the others alphabetically.
fn ordered_claims(claims: &Map<String, Value>) -> Vec<(&str, &Value)> {
    const ORDER: [&str; 11] = [
        "iss", "aud", "sub", "user", "email", "name", "groups", "sid", "jti", "iat", "exp",
    ];
    let mut rows: Vec<(&str, &Value)> = ORDER
        .iter()
        .filter_map(|k| claims.get_key_value(*k).map(|(k, v)| (k.as_str(), v)))
        .collect();
    let mut rest: Vec<(&str, &Value)> = claims
        .iter()
        .filter(|(k, _)| !ORDER.contains(&k.as_str()))
        .map(|(k, v)| (k.as_str(), v))
        .collect();
    rest.sort_by(|a, b| a.0.cmp(b.0));
    rows.extend(rest);
    rows
}

fn push_table<N: AsRef<str>>(out: &mut String, class: &str, rows: &[(N, String)]) {
    let _ = write!(out, "<table class=\"{}\">", escape(class));
    for (name, value) in rows {
        let _ = write!(
            out,
            "<tr><th>{}</th><td>{}</td></tr>",
            escape(name.as_ref()),
            escape(value)
        );
    }
    out.push_str("</table>\n");
}

fn claim_rows(claims: &Map<String, Value>) -> Vec<(&str, String)> {
    ordered_claims(claims)
        .into_iter()
        .map(|(k, v)| (k, display_value(k, v)))
        .collect()
}

/// The HTML page: the verdict, the verified (or, failing that, the
/// unverified) claims, the unsigned claim headers and a footer.
fn render_page(
    verifier: &Verifier,
    headers: &HeaderMap,
    outcome: &Result<VerifiedClaims, VerifyError>,
) -> String {
    let title = if outcome.is_ok() {
        "Identity verified"
    } else {
        "Identity not verified"
    };
    let mut out = String::with_capacity(4096);
    let _ = write!(
        out,
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title><style>{STYLE}</style></head><body>\n"
    );
    match outcome {
        Ok(claims) => push_verified(&mut out, title, verifier.config(), claims),
        Err(error) => push_not_verified(&mut out, title, headers, error),
    }
    push_claim_headers(&mut out, headers);
    let present = if headers.contains_key(ASSERTION_HEADER) {
        "present"
    } else {
        "absent"
    };
    let _ = write!(
        out,
        "<p class=\"foot\">Assertion header: {present}. Raw request headers: \
         <a href=\"/headers\">/headers</a>; this result as JSON: <a href=\"/json\">/json</a>.</p>\n\
         </body></html>\n"
    );
    out
}

/// The verdict and the table of verified claims.
fn push_verified(out: &mut String, title: &str, config: &VerifierConfig, claims: &VerifiedClaims) {
    let _ = write!(
        out,
        "<h1 class=\"ok\">{title}</h1>\n<p>The <code>X-Pomerium-Jwt-Assertion</code> \
         header is an ES256 assertion signed by a key from <code>{}</code>{}.</p>\n\
         <h2>Verified claims</h2>\n",
        escape(config.jwks_url.as_str()),
        expectations(config)
    );
    let claims = match serde_json::to_value(claims) {
        Ok(Value::Object(m)) => m,
        _ => Map::new(),
    };
    push_table(out, "claims verified", &claim_rows(&claims));
}

/// Why the assertion was refused, a hint when it is missing, and what the
/// assertion says when it can be decoded, marked UNVERIFIED.
fn push_not_verified(out: &mut String, title: &str, headers: &HeaderMap, error: &VerifyError) {
    let _ = write!(
        out,
        "<h1 class=\"bad\">{title}</h1>\n<p class=\"error\">{}</p>\n",
        escape(&error.to_string())
    );
    if matches!(error, VerifyError::MissingAssertion) {
        out.push_str(
            "<p>Is this app behind the proxy, on a route with \
             <code>pass_identity_headers: true</code>?</p>\n",
        );
    }
    let Some(token) = assertion_from_headers(headers) else {
        return;
    };
    out.push_str(
        "<h2>UNVERIFIED claims</h2>\n<p class=\"warn\">UNVERIFIED: decoded from the \
         assertion without checking it. Do not trust these values.</p>\n",
    );
    match decode_unverified(token) {
        Ok(t) => {
            push_table(out, "claims unverified", &claim_rows(&t.claims));
            out.push_str("<h3>UNVERIFIED header</h3>\n");
            push_table(out, "claims unverified", &claim_rows(&t.header));
        }
        Err(e) => {
            let _ = writeln!(
                out,
                "<p>Could not decode it either: {}</p>",
                escape(&e.to_string())
            );
        }
    }
}

/// The unsigned `X-Pomerium-Claim-*` headers, said to be unsigned.
fn push_claim_headers(out: &mut String, headers: &HeaderMap) {
    out.push_str("<h2>X-Pomerium-Claim headers</h2>\n");
    let claim_headers: Vec<(String, String)> = headers_json(headers)
        .into_iter()
        .filter(|(name, _)| name.starts_with(CLAIM_HEADER_PREFIX))
        .collect();
    if claim_headers.is_empty() {
        out.push_str("<p>None.</p>\n");
    } else {
        out.push_str("<p>Unsigned: set by the proxy for convenience, proven by nothing.</p>\n");
        push_table(out, "claim-headers", &claim_headers);
    }
}

fn expectations(config: &VerifierConfig) -> String {
    let mut parts = Vec::new();
    if let Some(iss) = &config.expected_issuer {
        parts.push(format!("issuer <code>{}</code>", escape(iss)));
    }
    if let Some(aud) = &config.expected_audience {
        parts.push(format!("audience <code>{}</code>", escape(aud)));
    }
    if parts.is_empty() {
        String::new()
    } else {
        format!(", for {}", parts.join(" and "))
    }
}

const STYLE: &str = "body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:60rem;padding:0 1rem}\
h1.ok{color:#17692e}h1.bad{color:#a11}.error{font-weight:bold}.warn{color:#a11;font-weight:bold}\
table{border-collapse:collapse;margin-bottom:1rem}th,td{border:1px solid #ccc;padding:.3rem .6rem;\
text-align:left;vertical-align:top;word-break:break-all}th{background:#f4f4f4}\
table.unverified{border:3px dashed #a11}.foot{color:#666}";

#[cfg(test)]
mod tests {
    use super::*;

    fn test_verifier() -> Verifier {
        Verifier::new(
            VerifierConfig::new("http://127.0.0.1:9/jwks.json".parse().unwrap())
                .issuer("<iss>")
                .audience("aud"),
        )
        .unwrap()
    }

    #[test]
    fn html_escaping_covers_markup_and_quotes() {
        assert_eq!(
            escape(r#"<script>alert("x" & 'y')</script>"#),
            "&lt;script&gt;alert(&quot;x&quot; &amp; &#39;y&#39;)&lt;/script&gt;"
        );
    }

    #[test]
    fn failed_verification_page_shows_escaped_unverified_claims_and_claim_headers() {
        use base64::Engine as _;
        let b64 = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
        let token = format!(
            "{}.{}.",
            b64(json!({"alg": "none"})),
            b64(json!({"email": "<img src=x onerror=alert(1)>", "groups": ["a", "b"]}))
        );
        let mut headers = HeaderMap::new();
        headers.insert(ASSERTION_HEADER, token.parse().unwrap());
        headers.insert("x-pomerium-claim-email", "\"><b>bold</b>".parse().unwrap());
        let outcome = Err(VerifyError::BadAlgorithm("\"none\"".into()));
        let page = render_page(&test_verifier(), &headers, &outcome);

        assert!(page.contains("<title>Identity not verified</title>"));
        assert!(page.contains("UNVERIFIED claims"));
        assert!(page.contains("&lt;img src=x onerror=alert(1)&gt;"));
        assert!(page.contains("<td>a, b</td>"));
        assert!(
            page.contains(
                "<th>x-pomerium-claim-email</th><td>&quot;&gt;&lt;b&gt;bold&lt;/b&gt;</td>"
            )
        );
        assert!(!page.contains("<img"));
        assert!(!page.contains("<b>bold"));
    }

    #[test]
    fn verified_page_lists_claims_in_contract_order() {
        let claims: VerifiedClaims = serde_json::from_value(json!({
            "iss": "<iss>", "aud": "aud", "sub": "u", "user": "u", "email": "e@x",
            "groups": [], "exp": 1_700_000_300, "iat": 1_700_000_000, "zeta": 1, "alpha": true
        }))
        .unwrap();
        let page = render_page(&test_verifier(), &HeaderMap::new(), &Ok(claims));
        assert!(page.contains("<h1 class=\"ok\">Identity verified</h1>"));
        assert!(page.contains("issuer <code>&lt;iss&gt;</code>"));
        assert!(page.contains("<td>1700000300 (2023-11-14T22:18:20Z)</td>"));
        let pos = |s: &str| page.find(s).unwrap_or_else(|| panic!("{s} missing"));
        assert!(pos("<th>iss</th>") < pos("<th>email</th>"));
        assert!(pos("<th>exp</th>") < pos("<th>alpha</th>"));
        assert!(pos("<th>alpha</th>") < pos("<th>zeta</th>"));
        assert!(!page.contains("UNVERIFIED"));
    }
}
