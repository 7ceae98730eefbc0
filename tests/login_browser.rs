//! Login tier in a real browser: headless Chromium (driven by
//! `tests/support/login_browser.mjs`) logs in through the proxy and npm
//! `oidc-provider`, and lands on the Verify app, which checks the identity
//! assertion against the proxy's internal JWKS URL. The assertion the app
//! received is then verified again with npm `jose` and PyPI `PyJWT`.
//!
//! Chromium is `JETBRIDGE_CHROMIUM` or `/usr/bin/chromium`; without it the
//! test is skipped, unless `JETBRIDGE_REQUIRE_REAL_PARTS=1`, where it fails.

mod e2e_common;
use bytes::Bytes;
use e2e_common::*;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use jetbridge::verify::{Verifier, VerifierConfig, app};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// Chromium, or `None` when it is missing and that is allowed.
fn chromium() -> Option<String> {
    let path = std::env::var("JETBRIDGE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if std::path::Path::new(&path).exists() {
        return Some(path);
    }
    assert!(
        std::env::var("JETBRIDGE_REQUIRE_REAL_PARTS").as_deref() != Ok("1"),
        "JETBRIDGE_REQUIRE_REAL_PARTS=1 but Chromium is missing at {path} (run ./scripts/test to install it)"
    );
    eprintln!("skipped: Chromium is missing at {path}");
    None
}

/// A pass-through in front of the Verify app that keeps every
/// `X-Pomerium-Jwt-Assertion` it forwards, so the test can check the very
/// stamp the app verified.
async fn recording_front(
    to: SocketAddr,
    stop: CancellationToken,
) -> (SocketAddr, Arc<Mutex<Vec<String>>>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let s = seen.clone();
    tokio::spawn(async move {
        loop {
            let stream = tokio::select! {
                () = stop.cancelled() => return,
                a = l.accept() => match a { Ok((stream, _)) => stream, Err(_) => return },
            };
            let (s, client) = (s.clone(), client.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (s, client) = (s.clone(), client.clone());
                    async move {
                        let (mut parts, body) = req.into_parts();
                        if let Some(a) = parts.headers.get("x-pomerium-jwt-assertion") {
                            s.lock().unwrap().push(a.to_str().unwrap().to_string());
                        }
                        let pq = parts
                            .uri
                            .path_and_query()
                            .map_or("/", |p| p.as_str())
                            .to_string();
                        parts.uri = format!("http://{to}{pq}").parse().unwrap();
                        let body = body
                            .collect()
                            .await
                            .map(|b| b.to_bytes())
                            .unwrap_or_default();
                        let resp = client
                            .request(Request::from_parts(parts, Full::new(body)))
                            .await;
                        Ok::<_, std::convert::Infallible>(match resp {
                            Ok(r) => {
                                let (parts, body) = r.into_parts();
                                let body = body
                                    .collect()
                                    .await
                                    .map(|b| b.to_bytes())
                                    .unwrap_or_default();
                                Response::from_parts(parts, Full::new(body))
                            }
                            Err(e) => {
                                let mut r = Response::new(Full::new(Bytes::from(format!(
                                    "verify app: {e}"
                                ))));
                                *r.status_mut() = StatusCode::BAD_GATEWAY;
                                r
                            }
                        })
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    (addr, seen)
}

#[tokio::test(flavor = "multi_thread")]
async fn chromium_logs_in_and_lands_on_the_verify_app_showing_verified_claims() {
    let Some(_chromium) = chromium() else { return };
    let https = bind_https().await;
    let port = https.local_addr().unwrap().port();
    let callback = format!("https://authenticate.localhost:{port}/oauth2/callback");
    let (issuer, _idp) = start_idp("jetbridge", "jetbridge-secret", &[callback], &[]);

    let stop = CancellationToken::new();
    let _stop_guard = stop.clone().drop_guard();
    let verify_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (front, assertions) =
        recording_front(verify_listener.local_addr().unwrap(), stop.clone()).await;
    let yaml = format!(
        r#"
authenticate_service_url: https://authenticate.localhost:{port}
idp_provider: oidc
idp_provider_url: {issuer}
idp_client_id: jetbridge
idp_client_secret: jetbridge-secret
idp_scopes: [openid, email, profile, groups]
cookie_secret: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
shared_secret: HxwdHh8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRo=
jwt_claims_headers: [email]
routes:
  - from: https://verify.localhost
    to: http://{front}
    pass_identity_headers: true
    policy:
      allow:
        or:
          - email: {{is: alice@example.com}}
"#
    );
    let proxy = start_proxy(https, &yaml).await;
    let jwks = format!("http://{}/.well-known/pomerium/jwks.json", proxy.internal);
    let verifier = Verifier::new(
        VerifierConfig::new(jwks.parse().unwrap())
            .issuer("verify.localhost")
            .audience("verify.localhost"),
    )
    .unwrap();
    let app_stop = stop.clone();
    tokio::spawn(app::serve(verify_listener, verifier, async move {
        app_stop.cancelled().await
    }));

    let start = format!("https://verify.localhost:{port}/");
    let out = tokio::process::Command::new("node")
        .arg(format!("{}/login_browser.mjs", support_dir()))
        .args([
            "--start-url",
            &start,
            "--until",
            &start,
            "--login",
            "alice",
            "--timeout",
            "60000",
        ])
        .args(["--map", "verify.localhost,authenticate.localhost"])
        .output()
        .await
        .expect("run node login_browser.mjs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap_or_else(|e| {
        panic!(
            "login_browser.mjs printed {stdout:?} ({e}); stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(
        result["ok"],
        true,
        "{result:#}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        result["logged_in"], true,
        "the browser never saw the IdP login form: {result:#}"
    );
    assert_eq!(result["final_url"], start.as_str());
    let text = result["body_text"].as_str().unwrap();
    assert!(text.contains("Identity verified"), "{text}");
    assert!(!text.contains("UNVERIFIED"), "{text}");
    assert!(text.contains("alice@example.com"), "{text}");
    assert!(text.contains("verify.localhost"), "iss/aud shown: {text}");

    // The stamp the Verify app received, checked by two third-party verifiers.
    let token = assertions
        .lock()
        .unwrap()
        .last()
        .cloned()
        .expect("the Verify app received an assertion");
    let jwks_url = jwks.clone();
    let verified = tokio::task::spawn_blocking(move || {
        ["jose", "pyjwt"].map(|kind| {
            (
                kind,
                run_verifier(
                    kind,
                    &jwks_url,
                    &token,
                    "verify.localhost",
                    "verify.localhost",
                ),
            )
        })
    })
    .await
    .unwrap();
    for (kind, (ok, out)) in verified {
        assert!(ok, "{kind}: {out}");
        let p = &out["payload"];
        assert_eq!(p["email"], "alice@example.com", "{kind}: {out}");
        assert_eq!(p["sub"], "alice", "{kind}");
        assert_eq!(p["groups"], serde_json::json!(["users"]), "{kind}");
        assert_eq!(out["header"]["alg"], "ES256", "{kind}");
    }
}
