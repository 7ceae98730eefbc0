//! Debian's nginx (`auth_request`) and Debian's Caddy (`forward_auth`) in
//! front of an app, each run with its config from
//! `examples/forward-auth/`, asking jetbridge (`forward_auth_url`) about
//! every request. The app verifies the assertion it receives against
//! jetbridge's JWKS and reports what reached it.
//!
//! For each front proxy: a browser without a session is sent to sign in
//! and comes back to the page it asked for; the app then receives a valid
//! assertion for the app's host; identity headers the client sends never
//! reach the app (with a session, without one, on a public path); a user
//! the policy refuses gets 403 and the app sees nothing. Chromium signs in
//! through nginx.
//!
//! nginx is `JETBRIDGE_NGINX` or `/usr/sbin/nginx`, Caddy `caddy` on the
//! PATH; without them the tests are skipped, unless
//! `JETBRIDGE_REQUIRE_REAL_PARTS=1`, where they fail.

use super::checks::FWD;
use crate::harness::config::*;
use crate::harness::login::*;
use crate::harness::proxy::TestCa;
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::Full;
use jetbridge::verify::{Verifier, VerifierConfig};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

const APP: &str = "app.localhost";
const FORGED: &str = "eyJhbGciOiJub25lIn0.eyJlbWFpbCI6Im1hbGxvcnlAZXhhbXBsZS5jb20ifQ.";

#[derive(Clone, Copy, Debug)]
enum Front {
    Nginx,
    Caddy,
}

impl Front {
    /// The binary, or `None` when it is missing and that is allowed.
    fn binary(self) -> Option<PathBuf> {
        let found = match self {
            Front::Nginx => Some(PathBuf::from(
                std::env::var("JETBRIDGE_NGINX").unwrap_or_else(|_| "/usr/sbin/nginx".into()),
            ))
            .filter(|p| p.exists()),
            Front::Caddy => std::env::var_os("PATH").and_then(|paths| {
                std::env::split_paths(&paths)
                    .map(|d| d.join("caddy"))
                    .find(|p| p.exists())
            }),
        };
        if found.is_none() {
            assert!(
                std::env::var("JETBRIDGE_REQUIRE_REAL_PARTS").as_deref() != Ok("1"),
                "JETBRIDGE_REQUIRE_REAL_PARTS=1 but {self:?} is missing (run ./scripts/test to install it)"
            );
            eprintln!("skipped: {self:?} is missing");
        }
        found
    }

    fn template(self) -> &'static str {
        match self {
            Front::Nginx => "nginx.conf",
            Front::Caddy => "Caddyfile",
        }
    }

    /// Starts the front proxy on a port of its own, with its example
    /// config filled in; waits until it serves a public page.
    async fn start(self, bin: &Path, w: &World) -> Running {
        let dir = tempfile::tempdir().unwrap();
        let port = free_port();
        let d = dir.path().to_str().unwrap().to_string();
        let template = std::fs::read_to_string(format!(
            "{}/examples/forward-auth/{}",
            env!("CARGO_MANIFEST_DIR"),
            self.template()
        ))
        .unwrap();
        let text = [
            ("@APP@", APP.to_string()),
            ("@PORT@", port.to_string()),
            ("@JETBRIDGE@", format!("127.0.0.1:{}", w.jetbridge.port)),
            ("@FWD@", FWD.to_string()),
            ("@UPSTREAM@", w.app.to_string()),
            ("@CERT@", w.files.join("cert.pem").display().to_string()),
            ("@KEY@", w.files.join("key.pem").display().to_string()),
            ("@CA@", w.files.join("ca.pem").display().to_string()),
            ("@DIR@", d.clone()),
        ]
        .iter()
        .fold(template, |t, (k, v)| t.replace(k, v));
        let config = dir.path().join(self.template());
        std::fs::write(&config, text).unwrap();
        let mut cmd = std::process::Command::new(bin);
        match self {
            // One process, so killing it (on drop) leaves no worker behind.
            Front::Nginx => cmd.args([
                "-e",
                &format!("{d}/error.log"),
                "-g",
                "daemon off; master_process off;",
                "-c",
            ]),
            Front::Caddy => cmd
                .env("HOME", &d)
                .env("XDG_DATA_HOME", &d)
                .env("XDG_CONFIG_HOME", &d)
                .args(["run", "--adapter", "caddyfile", "--config"]),
        };
        let child = cmd
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin:?}: {e}"));
        let guard = ChildGuard(child);
        // Ready once a public page reaches the app through it.
        let ready = format!("https://{APP}:{port}/public/ready");
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
                && Browser::new().get(&ready).await.status == StatusCode::OK
            {
                w.seen.lock().unwrap().clear();
                return Running {
                    port,
                    _child: guard,
                    _dir: dir,
                };
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("{self:?} did not serve {ready}");
    }
}

struct Running {
    port: u16,
    _child: ChildGuard,
    _dir: tempfile::TempDir,
}

/// What the app received: the request headers of each request.
type Seen = Arc<Mutex<Vec<HeaderMap>>>;

/// The IdP, jetbridge (with a forward-auth host, and the routes of the
/// app's host: `/public` open to anyone, the rest for alice only) and the
/// app, which verifies every assertion against jetbridge's JWKS.
struct World {
    jetbridge: RunningProxy,
    _idp: ChildGuard,
    app: SocketAddr,
    seen: Seen,
    /// ca.pem, cert.pem, key.pem: jetbridge's and the front proxies'.
    files: PathBuf,
    _dir: tempfile::TempDir,
}

impl World {
    async fn start() -> World {
        let dir = tempfile::tempdir().unwrap();
        let files = dir.path().to_path_buf();
        let ca = TestCa::new("forward-auth test CA");
        let leaf = ca.server(&[APP, FWD, "authenticate.localhost", "localhost"]);
        std::fs::write(files.join("ca.pem"), &ca.pem).unwrap();
        std::fs::write(files.join("cert.pem"), &leaf.cert_pem).unwrap();
        std::fs::write(files.join("key.pem"), &leaf.key_pem).unwrap();

        let https = bind_https().await;
        let port = https.local_addr().unwrap().port();
        let callback = format!("https://authenticate.localhost:{port}/oauth2/callback");
        let (issuer, idp) = start_idp("jetbridge", "jetbridge-secret", &[callback], &[]);
        let app_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = app_listener.local_addr().unwrap();
        let yaml = ConfigFile {
            forward_auth_url: Some(format!("https://{FWD}:{port}")),
            jwt_claims_headers: claim_list(&["email"]),
            certificate_file: Some(files.join("cert.pem").display().to_string()),
            certificate_key_file: Some(files.join("key.pem").display().to_string()),
            ..sign_in_config(
                port,
                &issuer,
                "jetbridge",
                "jetbridge-secret",
                [
                    RouteConfig {
                        prefix: Some("/public".into()),
                        ..public_route(APP, &format!("http://{app}"))
                    },
                    RouteConfig {
                        policy: ppl("allow: {or: [{email: {is: alice@example.com}}]}"),
                        ..route(APP, &format!("http://{app}"))
                    },
                ],
            )
        };
        let jetbridge = start_proxy(https, &yaml).await;
        let jwks = format!(
            "http://{}/.well-known/pomerium/jwks.json",
            jetbridge.internal
        );
        let seen = verifying_app(app_listener, &jwks);
        World {
            jetbridge,
            _idp: idp,
            app,
            seen,
            files,
            _dir: dir,
        }
    }
}

/// The app: records each request's headers and answers, as JSON (text),
/// the path, the headers and whether the assertion verifies against
/// jetbridge's JWKS for the app's host (with its claims).
fn verifying_app(l: TcpListener, jwks: &str) -> Seen {
    let verifier = Arc::new(
        Verifier::new(
            VerifierConfig::new(jwks.parse().unwrap())
                .issuer(APP)
                .audience(APP),
        )
        .unwrap(),
    );
    let seen = Seen::default();
    let s = seen.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = l.accept().await {
            let (s, verifier) = (s.clone(), verifier.clone());
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (s, verifier) = (s.clone(), verifier.clone());
                    async move {
                        s.lock().unwrap().push(req.headers().clone());
                        let assertion = jetbridge::verify::assertion_from_headers(req.headers());
                        let (verified, claims, error) = match assertion {
                            None => (false, Value::Null, "no assertion".to_string()),
                            Some(t) => match verifier.verify(t).await {
                                Ok(c) => (true, serde_json::to_value(c).unwrap(), String::new()),
                                Err(e) => (false, Value::Null, e.to_string()),
                            },
                        };
                        let headers: serde_json::Map<String, Value> = req
                            .headers()
                            .keys()
                            .map(|k| {
                                let all: Vec<&str> = req
                                    .headers()
                                    .get_all(k)
                                    .iter()
                                    .map(|v| v.to_str().unwrap_or("?"))
                                    .collect();
                                (k.to_string(), json!(all))
                            })
                            .collect();
                        let body = json!({
                            "path": req.uri().to_string(), "verified": verified,
                            "claims": claims, "error": error, "headers": headers,
                        });
                        let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
                        r.headers_mut()
                            .insert("content-type", "text/plain".parse().unwrap());
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    seen
}

/// Signs `login` in from `start` (through the front proxy); the reply of
/// the page the browser ends on, and its URL.
async fn sign_in(b: &mut Browser, start: &str, login: &str) -> (String, Reply) {
    let (authorize, _) = follow(b, start.to_string(), "http://127.0.0.1", 8).await;
    let callback = idp_login(b, &authorize, login).await;
    follow(b, callback, "http://never/", 8).await
}

fn app_json(r: &Reply) -> Value {
    serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{}: {e}: {}", r.status, r.body))
}

/// The whole contract through one front proxy.
async fn front_proxy_asks_jetbridge(front: Front) {
    let Some(bin) = front.binary() else { return };
    let w = World::start().await;
    let f = front.start(&bin, &w).await;
    let app = format!("https://{APP}:{}", f.port);
    let spoof = [
        ("x-pomerium-jwt-assertion", FORGED),
        ("x-pomerium-claim-email", "mallory@example.com"),
    ];

    // No session: sent to sign in on the app's own host; the app sees nothing.
    let mut alice = Browser::new();
    let page = format!("{app}/reports?q=1");
    let r = alice.get(&page).await;
    assert_eq!(r.status, StatusCode::FOUND, "{front:?}: {}", r.body);
    let to = r.location().unwrap();
    assert!(
        to.starts_with(&format!("{app}/.pomerium/forward_auth/sign_in?uri=")),
        "{front:?}: {to}"
    );
    assert!(w.seen.lock().unwrap().is_empty(), "{front:?}");

    // Signed in, back on the page asked for, with a valid assertion.
    let (url, r) = sign_in(&mut alice, &page, "alice").await;
    assert_eq!(url, page, "{front:?}");
    assert_eq!(r.status, StatusCode::OK, "{front:?}: {}", r.body);
    let got = app_json(&r);
    assert_eq!(got["path"], "/reports?q=1", "{front:?}");
    assert_eq!(got["verified"], true, "{front:?}: {got:#}");
    assert_eq!(got["claims"]["email"], "alice@example.com", "{front:?}");
    assert_eq!(got["claims"]["aud"], json!([APP]), "{front:?}");

    // Spoofed identity headers with a session: only jetbridge's reach the app.
    let r = alice
        .request_with("GET", &format!("{app}/spoof"), &spoof)
        .await;
    let got = app_json(&r);
    assert_eq!(got["verified"], true, "{front:?}: {got:#}");
    let h = &got["headers"];
    assert_eq!(
        h["x-pomerium-claim-email"],
        json!(["alice@example.com"]),
        "{front:?}"
    );
    let sent = h["x-pomerium-jwt-assertion"].as_array().unwrap();
    assert_eq!(sent.len(), 1, "{front:?}: {h:#}");
    assert_ne!(sent[0], FORGED, "{front:?}");

    // A public path, with a session and without: no identity headers at
    // all, whatever the client sent.
    for (who, b) in [("alice", &mut alice), ("nobody", &mut Browser::new())] {
        let r = b
            .request_with("GET", &format!("{app}/public/x"), &spoof)
            .await;
        assert_eq!(r.status, StatusCode::OK, "{front:?} {who}: {}", r.body);
        let h = &app_json(&r)["headers"];
        assert!(
            h.get("x-pomerium-jwt-assertion").is_none(),
            "{front:?} {who}: {h:#}"
        );
        assert!(
            h.get("x-pomerium-claim-email").is_none(),
            "{front:?} {who}: {h:#}"
        );
    }

    // A user the policy refuses: 403, and the app sees nothing of it.
    let before = w.seen.lock().unwrap().len();
    let mut bob = Browser::new();
    let (_, r) = sign_in(&mut bob, &page, "bob").await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{front:?}: {}", r.body);
    if let Front::Caddy = front {
        // Caddy hands jetbridge's answer to the browser as it is.
        assert!(r.body.contains("bob@example.com"), "{}", r.body);
    }
    assert_eq!(w.seen.lock().unwrap().len(), before, "{front:?}");

    // Another host named to nginx (its only server is the default): the
    // URL jetbridge is asked about names no route's host, so nothing
    // reaches the app, even with a session cookie. (Caddy refuses the
    // handshake for a name it has no site for.)
    if let Front::Nginx = front {
        let evil = format!("https://evil.example:{}/reports", f.port);
        alice
            .jar
            .insert("evil.example".into(), alice.jar[APP].clone());
        let r = alice.get(&evil).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
        assert_eq!(w.seen.lock().unwrap().len(), before);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn nginx_auth_request_signs_in_forwards_the_assertion_and_drops_spoofed_identity() {
    front_proxy_asks_jetbridge(Front::Nginx).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn caddy_forward_auth_signs_in_forwards_the_assertion_and_drops_spoofed_identity() {
    front_proxy_asks_jetbridge(Front::Caddy).await;
}

/// Chromium, through nginx: opens the app, signs in at the IdP, and lands
/// on the page it asked for, which shows the verified assertion.
#[tokio::test(flavor = "multi_thread")]
async fn chromium_signs_in_through_nginx_and_lands_on_the_app_with_a_verified_assertion() {
    let Some(_chromium) = crate::login::browser::chromium() else {
        return;
    };
    let Some(bin) = Front::Nginx.binary() else {
        return;
    };
    let w = World::start().await;
    let f = Front::Nginx.start(&bin, &w).await;
    let page = format!("https://{APP}:{}/reports", f.port);
    let result = crate::login::browser::browse(&[
        "--start-url",
        &page,
        "--until",
        &page,
        "--login",
        "alice",
        "--map",
        &format!("{APP},{FWD},authenticate.localhost"),
    ])
    .await;
    assert_eq!(result["logged_in"], true, "{result:#}");
    assert_eq!(result["final_url"], page.as_str());
    let text = result["body_text"].as_str().unwrap();
    let got: Value = serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("{e}: {text}"));
    assert_eq!(got["verified"], true, "{got:#}");
    assert_eq!(got["claims"]["email"], "alice@example.com");
}
