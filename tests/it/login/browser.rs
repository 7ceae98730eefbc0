//! Login tier in a real browser: headless Chromium (driven by
//! `tests/tools/login_browser.mjs`) logs in through the proxy and npm
//! `oidc-provider`, and lands on the Verify app, which checks the identity
//! assertion against the proxy's internal JWKS URL. The assertion the app
//! received is then verified again with npm `jose` and PyPI `PyJWT`.
//!
//! Chromium is `JETBRIDGE_CHROMIUM` or `/usr/bin/chromium`; without it the
//! test is skipped, unless `JETBRIDGE_REQUIRE_REAL_PARTS=1`, where it fails.

use crate::harness;
use bytes::Bytes;
use harness::config::*;
use harness::login::*;
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
pub(crate) fn chromium() -> Option<String> {
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
    let yaml = ConfigFile {
        jwt_claims_headers: claim_list(&["email"]),
        ..sign_in_config(
            port,
            &issuer,
            "jetbridge",
            "jetbridge-secret",
            [RouteConfig {
                pass_identity_headers: Some(true),
                policy: ppl("allow: {or: [{email: {is: alice@example.com}}]}"),
                ..route("verify.localhost", &format!("http://{front}"))
            }],
        )
    };
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
    let result = browse(&[
        "--start-url",
        &start,
        "--until",
        &start,
        "--login",
        "alice",
        "--map",
        "verify.localhost,authenticate.localhost",
    ])
    .await;
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

/// Runs `login_browser.mjs` with `args`; its JSON result (asserted `ok`).
pub(crate) async fn browse(args: &[&str]) -> serde_json::Value {
    let out = tokio::process::Command::new("node")
        .arg(format!("{}/login_browser.mjs", support_dir()))
        .args(args)
        .args(["--timeout", "60000"])
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
    result
}

/// Where the pages' screenshots go (kept for a person to look at).
fn screenshot_dir() -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("pages");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A proxy whose route `app` lets only alice in, with the IdP's sign-out
/// coming back to the signed-out page. Returns it, the IdP and the port.
async fn pages_world() -> (RunningProxy, ChildGuard, u16) {
    let https = bind_https().await;
    let port = https.local_addr().unwrap().port();
    let callback = format!("https://authenticate.localhost:{port}/oauth2/callback");
    let signed_out = format!("https://authenticate.localhost:{port}/.pomerium/signed_out");
    let (issuer, idp) = start_idp("jetbridge", "jetbridge-secret", &[callback], &[signed_out]);
    let (up, _) = echo_upstream().await;
    let yaml = sign_in_config(
        port,
        &issuer,
        "jetbridge",
        "jetbridge-secret",
        [RouteConfig {
            policy: ppl("allow: {or: [{email: {is: alice@example.com}}]}"),
            ..route("app.localhost", &format!("http://{up}"))
        }],
    );
    (start_proxy(https, &yaml).await, idp, port)
}

/// The pages a person meets, in Chromium: access denied says who is
/// signed in and offers sign-out and switching user; who-am-I shows the
/// session as plain text; signed-out offers to sign in again; a sign-in
/// the IdP refused says so and offers to try again. Each is saved as a PNG.
#[tokio::test(flavor = "multi_thread")]
async fn the_proxys_pages_say_what_happened_who_you_are_and_what_to_do_next() {
    let Some(_chromium) = chromium() else { return };
    let (_proxy, _idp, port) = pages_world().await;
    let dir = screenshot_dir();
    let app = format!("https://app.localhost:{port}");
    let auth = format!("https://authenticate.localhost:{port}");
    let map = "app.localhost,authenticate.localhost";

    let denied = dir.join("403-denied.png");
    let r = browse(&[
        "--start-url",
        &format!("{app}/reports?q=1"),
        "--login",
        "bob",
        "--map",
        map,
        "--screenshot",
        denied.to_str().unwrap(),
        "--then-screenshots",
        dir.to_str().unwrap(),
        "--then",
        &format!("{app}/.pomerium/"),
        "--then",
        &format!("{auth}/.pomerium/signed_out?pomerium_redirect_uri={app}/reports"),
    ])
    .await;
    let text = r["body_text"].as_str().unwrap();
    for want in [
        "Access denied",
        "Signed in as Bob <bob@example.com>",
        "Sign in as someone else",
        "Sign out",
        "request id",
    ] {
        assert!(text.contains(want), "403 page lacks {want:?}: {text}");
    }
    assert!(!text.contains("403 Forbidden"), "{text}");

    let who = &r["then"][0];
    assert_eq!(who["status"], 200, "{who}");
    let text = who["body_text"].as_str().unwrap();
    for want in [
        "Signed in to app.localhost",
        "Signed in as Bob <bob@example.com>",
        "users",
        "Sign out",
        "Sign in as someone else",
    ] {
        assert!(text.contains(want), "who-am-I page lacks {want:?}: {text}");
    }
    assert!(
        !text.contains('"'),
        "claims are shown as text, not JSON: {text}"
    );

    let out = &r["then"][1];
    assert_eq!(out["status"], 200, "{out}");
    let text = out["body_text"].as_str().unwrap();
    assert!(text.contains("You are signed out"), "{text}");
    assert!(text.contains("Sign in again"), "{text}");
    assert!(!text.contains("200 OK"), "{text}");

    // The IdP refuses: the user cancels at its login page.
    let refused = dir.join("400-refused.png");
    let r = browse(&[
        "--start-url",
        &format!("{app}/reports"),
        "--until",
        &format!("{auth}/oauth2/callback"),
        "--login",
        "alice",
        "--cancel",
        "--map",
        map,
        "--screenshot",
        refused.to_str().unwrap(),
    ])
    .await;
    let text = r["body_text"].as_str().unwrap();
    for want in ["Sign-in was refused", "access_denied", "Try again"] {
        assert!(text.contains(want), "refused page lacks {want:?}: {text}");
    }
    eprintln!("screenshots of the pages: {}", dir.display());
}

/// The links on those pages lead where they say: "Try again" after a
/// refused sign-in starts a new sign-in for the same page; "Sign in as
/// someone else" signs out at the IdP and comes back through the
/// signed-out page, whose "Sign in again" leads to the refused page.
#[tokio::test(flavor = "multi_thread")]
async fn the_next_steps_on_the_pages_lead_back_to_the_page_asked_for() {
    let (_proxy, _idp, port) = pages_world().await;
    let app = format!("https://app.localhost:{port}");
    let href = |body: &str, label: &str| -> String {
        let end = body
            .find(&format!(">{label}</a>"))
            .unwrap_or_else(|| panic!("{label} in {body}"));
        let start = body[..end].rfind("href=\"").unwrap() + 6;
        body[start..end - 1].replace("&amp;", "&")
    };

    // Refused: cancel at the IdP, then "Try again".
    let mut b = Browser::new();
    let (idp_page, _) = follow(&mut b, format!("{app}/reports?q=1"), "http://127.0.0.1", 8).await;
    let interaction = {
        let (url, r) = follow(&mut b, idp_page, "https://", 8).await;
        assert_eq!(r.status, StatusCode::OK, "IdP login page: {}", r.body);
        url
    };
    let (callback, _) = follow(&mut b, format!("{interaction}/abort"), "https://", 4).await;
    let r = b.get(&callback).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("Sign-in was refused"), "{}", r.body);
    let again = href(&r.body, "Try again");
    assert_eq!(again, format!("{app}/reports?q=1"));
    let r = b.get(&again).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(r.location().unwrap().contains("/.pomerium/sign_in?"));

    // Denied: bob switches user; the IdP's sign-out comes back to the
    // signed-out page, which links to the page he was refused.
    let mut b = Browser::new();
    let (authorize, _) = follow(&mut b, format!("{app}/reports"), "http://127.0.0.1", 8).await;
    let callback = idp_login(&mut b, &authorize, "bob").await;
    let (_, r) = follow(&mut b, callback, "http://never/", 8).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let switch = resolve(
        &format!("{app}/reports"),
        &href(&r.body, "Sign in as someone else"),
    );
    let r = b.get(&switch).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let end_session = r.location().unwrap();
    assert!(end_session.contains("/session/end?"), "{end_session}");
    let confirm = b.get(&end_session).await;
    let xsrf = confirm
        .body
        .split("name=\"xsrf\" value=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap_or_else(|| panic!("IdP logout form: {}", confirm.body))
        .to_string();
    let confirm_url = resolve(&end_session, "/session/end/confirm");
    let r = b
        .request(
            "POST",
            &confirm_url,
            Some(&format!("xsrf={xsrf}&logout=yes")),
        )
        .await;
    let (signed_out, r) = follow(
        &mut b,
        resolve(&confirm_url, &r.location().unwrap()),
        "http://never/",
        4,
    )
    .await;
    assert!(
        signed_out.contains("/.pomerium/signed_out?"),
        "{signed_out}"
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(href(&r.body, "Sign in again"), format!("{app}/reports"));
}
