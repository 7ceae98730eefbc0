//! Programmatic access as Pomerium offers it, driven by a script acting as
//! the command-line client against npm `oidc-provider`:
//! `/.pomerium/api/v1/login` → browser sign-in → `pomerium_jwt` on the
//! client's loopback URL → `Authorization: Pomerium <token>` on requests;
//! `/.pomerium/routes` and the flag-gated `/.pomerium/jwt`.

use crate::harness;
use harness::config::*;
use harness::login::*;
use http::StatusCode;

struct World {
    proxy: RunningProxy,
    _idp: ChildGuard,
    seen: std::sync::Arc<std::sync::Mutex<Vec<http::HeaderMap>>>,
    port: u16,
}

impl World {
    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}.localhost:{}{path}", self.port)
    }
}

async fn world(jwt_endpoint: bool) -> World {
    world_with(jwt_endpoint, |c| c).await
}

/// As [`world`], with more top-level settings (e.g. a certificate).
async fn world_with(jwt_endpoint: bool, extra: impl FnOnce(ConfigFile) -> ConfigFile) -> World {
    let https = bind_https().await;
    let port = https.local_addr().unwrap().port();
    let callback = format!("https://authenticate.localhost:{port}/oauth2/callback");
    let (issuer, idp) = start_idp("cli", "cli-secret", &[callback], &[]);
    let (up, seen) = echo_upstream().await;
    let to = format!("http://{up}");
    let yaml = extra(ConfigFile {
        runtime_flags: Some(
            [
                ("pomerium_jwt_endpoint".to_string(), jwt_endpoint),
                ("match_any_incoming_port".to_string(), true),
            ]
            .into(),
        ),
        ..sign_in_config(
            port,
            &issuer,
            "cli",
            "cli-secret",
            [
                RouteConfig {
                    pass_identity_headers: Some(true),
                    policy: ppl("allow: {or: [{email: {is: alice@example.com}}]}"),
                    ..route("api.localhost", &to)
                },
                RouteConfig {
                    name: Some("Other".into()),
                    logo_url: Some("https://cdn.example.com/other.svg".into()),
                    ..signed_in_route("other.localhost", &to)
                },
            ],
        )
    });
    World {
        proxy: start_proxy(https, &yaml).await,
        _idp: idp,
        seen,
        port,
    }
}

/// The command-line client's part: asks the route for a login URL, "opens"
/// it in a browser that signs in as `login`, and reads `pomerium_jwt` from
/// the redirect to its loopback URL.
async fn cli_login(w: &World, host: &str, login: &str) -> String {
    let cb = "http://127.0.0.1:45678/callback?state=cli";
    let mut cli = Browser::new();
    cli.accept = "*/*".into();
    let r = cli
        .get(&w.url(
            host,
            &format!(
                "/.pomerium/api/v1/login?pomerium_redirect_uri={}",
                urlencode(cb)
            ),
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let open = r.body.trim().to_string();
    assert!(
        open.starts_with(&w.url(host, "/.pomerium/api/v1/finish?")),
        "{open}"
    );

    let mut browser = Browser::new();
    let (url, _) = follow(&mut browser, open, "http://localhost/never", 6).await;
    let authorize = url;
    let callback = idp_login(&mut browser, &authorize, login).await;
    let (landing, _) = follow(&mut browser, callback, "http://127.0.0.1:45678/", 8).await;
    assert!(landing.starts_with(cb), "{landing}");
    let u = url::Url::parse(&landing).unwrap();
    let state = u
        .query_pairs()
        .find(|(k, _)| k == "state")
        .map(|(_, v)| v.to_string());
    assert_eq!(
        state.as_deref(),
        Some("cli"),
        "the client's own query is kept"
    );
    u.query_pairs()
        .find(|(k, _)| k == "pomerium_jwt")
        .map(|(_, v)| v.to_string())
        .expect("pomerium_jwt on the loopback URL")
}

/// A request carrying `token` as `Authorization: Pomerium <token>`.
async fn with_token(api: &mut Browser, url: &str, token: &str) -> Reply {
    api.request_with(
        "GET",
        url,
        &[("authorization", &format!("Pomerium {token}"))],
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cli_logs_in_and_calls_the_route_with_its_token_in_every_pomerium_form() {
    let w = world(false).await;
    let token = cli_login(&w, "api", "alice").await;
    let mut api = Browser::new();
    api.accept = "application/json".into();
    for (name, value) in [
        ("authorization", format!("Pomerium {token}")),
        ("authorization", format!("Bearer Pomerium-{token}")),
        ("x-pomerium-authorization", token.clone()),
    ] {
        let r = api
            .request_with("GET", &w.url("api", "/v1/items"), &[(name, &value)])
            .await;
        assert_eq!(r.status, StatusCode::OK, "{name}: {}", r.body);
        let h = w.seen.lock().unwrap().last().cloned().unwrap();
        // The credential never reaches the upstream; the assertion does.
        assert!(h.get("authorization").is_none(), "{h:?}");
        assert!(h.get("x-pomerium-authorization").is_none(), "{h:?}");
        assert!(h.get("x-pomerium-jwt-assertion").is_some(), "{h:?}");
    }
    // Another Authorization scheme is the upstream's business: passed on.
    let r = api
        .request_with(
            "GET",
            &w.url("api", "/"),
            &[
                ("authorization", "Basic dTpw"),
                ("x-pomerium-authorization", &token),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let h = w.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(h["authorization"], "Basic dTpw");

    // The token is bound to its host, and a tampered one is nothing.
    let r = with_token(&mut api, &w.url("other", "/"), &token).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    let mut bad = token.clone();
    bad.replace_range(10..11, if &token[10..11] == "A" { "B" } else { "A" });
    let r = with_token(&mut api, &w.url("api", "/"), &bad).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // The policy still decides: bob signs in fine but is refused.
    let bob = cli_login(&w, "api", "bob").await;
    let r = with_token(&mut api, &w.url("api", "/"), &bob).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);

    // /.pomerium/routes for a signed-in client.
    let r = with_token(&mut api, &w.url("api", "/.pomerium/routes"), &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let routes: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    let froms: Vec<&str> = routes["routes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["from"].as_str().unwrap())
        .collect();
    assert_eq!(
        froms,
        ["https://api.localhost/", "https://other.localhost/"]
    );
    assert_eq!(routes["routes"][1]["name"], "Other");
    assert_eq!(
        routes["routes"][1]["logo_url"],
        "https://cdn.example.com/other.svg"
    );
    assert_eq!(
        api.get(&w.url("api", "/.pomerium/routes")).await.status,
        StatusCode::UNAUTHORIZED
    );
    // Without the runtime flag there is no /.pomerium/jwt.
    let r = with_token(&mut api, &w.url("api", "/.pomerium/jwt"), &token).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn login_redirects_go_only_to_loopback_clients() {
    let w = world(false).await;
    let mut cli = Browser::new();
    cli.accept = "*/*".into();
    for target in [
        "https://evil.example/callback",
        "http://localhost.evil.example/",
        "http://user@localhost/cb",
        "javascript:alert(1)",
        "//localhost/cb",
        "http://127.0.0.1.nip.io/cb",
        "http://localhost/cb\r\nX: y",
        "",
    ] {
        for endpoint in ["login", "finish"] {
            let r = cli
                .get(&w.url(
                    "api",
                    &format!(
                        "/.pomerium/api/v1/{endpoint}?pomerium_redirect_uri={}",
                        urlencode(target)
                    ),
                ))
                .await;
            assert_eq!(
                r.status,
                StatusCode::BAD_REQUEST,
                "{endpoint} {target:?}: {}",
                r.body
            );
            assert!(r.location().is_none());
        }
    }
    for ok in [
        "http://localhost:8000/cb",
        "http://127.0.0.1:1/",
        "http://[::1]:9/x",
        "https://localhost/",
    ] {
        let r = cli
            .get(&w.url(
                "api",
                &format!(
                    "/.pomerium/api/v1/login?pomerium_redirect_uri={}",
                    urlencode(ok)
                ),
            ))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{ok}");
    }
    let _ = &w.proxy;
}

#[tokio::test(flavor = "multi_thread")]
async fn the_jwt_endpoint_serves_the_routes_assertion_behind_its_runtime_flag() {
    let w = world(true).await;
    let token = cli_login(&w, "api", "alice").await;
    let mut api = Browser::new();
    api.accept = "*/*".into();
    let r = with_token(&mut api, &w.url("api", "/.pomerium/jwt"), &token).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let jwks = format!("http://{}/.well-known/pomerium/jwks.json", w.proxy.internal);
    let (ok, out) = run_verifier(
        "jose",
        &jwks,
        r.body.trim(),
        "api.localhost",
        "api.localhost",
    );
    assert!(ok, "{out}");
    assert_eq!(out["payload"]["email"], "alice@example.com");
    // The proxy's own assertion is never a credential to the proxy, in any
    // of the places a credential or an identity could be carried.
    let assertion = r.body.trim().to_string();
    // A programmatic credential that is not one gets 401; elsewhere the
    // client has no credential at all and, preferring any type, is sent to
    // sign in.
    for (name, value, credential) in [
        ("authorization", format!("Pomerium {assertion}"), true),
        (
            "authorization",
            format!("Bearer Pomerium-{assertion}"),
            true,
        ),
        ("x-pomerium-authorization", assertion.clone(), true),
        ("authorization", format!("Bearer {assertion}"), false),
        ("x-pomerium-jwt-assertion", assertion.clone(), false),
        ("cookie", format!("_jetbridge={assertion}"), false),
    ] {
        let r = api
            .request_with("GET", &w.url("api", "/"), &[(name, &value)])
            .await;
        if credential {
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name}");
        } else {
            assert_eq!(r.status, StatusCode::FOUND, "{name}");
            assert!(
                r.location().unwrap().contains("/.pomerium/sign_in?"),
                "{name}"
            );
        }
    }
    assert_eq!(
        api.get(&w.url("api", "/.pomerium/jwt")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

/// The sign-in URL every redirect of `w` goes to.
fn sign_in_prefix(w: &World) -> String {
    format!(
        "https://authenticate.localhost:{}/.pomerium/sign_in?",
        w.port
    )
}

/// Pomerium's negotiation: a request without a session is sent to sign in
/// unless the client prefers JSON, text or gRPC, or carries a credential
/// of its own (a programmatic or identity-provider token), which gets 401.
#[tokio::test(flavor = "multi_thread")]
async fn clients_without_a_session_go_to_sign_in_unless_they_prefer_data_or_send_a_token() {
    let w = world(false).await;
    let mut c = Browser::new();
    let none: &[(&str, &str)] = &[];
    for (accept, headers, redirect) in [
        ("", none, true),
        ("*/*", none, true),
        ("text/html,application/xhtml+xml,*/*;q=0.8", none, true),
        ("image/png", none, true),
        ("text/*", none, true),
        ("application/json", none, false),
        ("application/json, */*;q=0.1", none, false),
        ("text/plain", none, false),
        ("application/grpc-web-text", none, false),
        ("*/*", &[("authorization", "Pomerium not-a-token")], false),
        ("*/*", &[("authorization", "Bearer Pomerium-a.b.c")], false),
        ("*/*", &[("x-pomerium-authorization", "a.b.c")], false),
        ("*/*", &[("x-pomerium-idp-access-token", "t")], false),
        ("*/*", &[("content-type", "application/grpc")], false),
        // An empty token is no credential (the adapter's first request).
        ("*/*", &[("authorization", "Pomerium ")], true),
    ] {
        c.accept = accept.into();
        let r = c
            .request_with("GET", &w.url("api", "/v1/items?x=1"), headers)
            .await;
        let what = format!("Accept {accept:?} with {headers:?}");
        if redirect {
            assert_eq!(r.status, StatusCode::FOUND, "{what}: {}", r.body);
            let to = r.location().unwrap();
            assert!(to.starts_with(&sign_in_prefix(&w)), "{what}: {to}");
            let back = url::Url::parse(&to).unwrap();
            let back = back
                .query_pairs()
                .find(|(k, _)| k == "pomerium_redirect_uri")
                .unwrap()
                .1
                .to_string();
            assert_eq!(back, w.url("api", "/v1/items?x=1"), "{what}");
        } else {
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{what}: {}", r.body);
        }
    }
    // Error bodies are JSON for a client preferring JSON, a page otherwise.
    c.accept = "application/json".into();
    let r = c.get(&w.url("api", "/")).await;
    assert_eq!(r.headers["content-type"], "application/json");
    c.accept = "application/json;q=0.5, text/html".into();
    let r = c
        .request_with(
            "GET",
            &w.url("api", "/"),
            &[("authorization", "Pomerium x")],
        )
        .await;
    assert!(
        r.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/html")
    );

    // curl with no Accept option (it sends `Accept: */*`) gets the redirect.
    let (ok, out, err) = run_command(
        std::process::Command::new("curl").args([
            "-sk",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code} %{redirect_url}",
            &w.url("api", "/v1/items"),
        ]),
        None,
    );
    assert!(ok, "curl: {err}");
    let (code, to) = out.split_once(' ').unwrap();
    assert_eq!(code, "302", "{out}");
    assert!(to.starts_with(&sign_in_prefix(&w)), "{out}");
}

/// A certificate for the test hosts that is its own trust anchor (for
/// clients that verify, e.g. Python's requests), written with its key to `dir`.
fn trusted_certificate(dir: &std::path::Path) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(vec![
        "api.localhost".to_string(),
        "other.localhost".to_string(),
        "authenticate.localhost".to_string(),
    ])
    .unwrap();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    let (c, k) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&c, cert.pem()).unwrap();
    std::fs::write(&k, key.serialize_pem()).unwrap();
    (
        c.to_str().unwrap().to_string(),
        k.to_str().unwrap().to_string(),
    )
}

/// The Python that has PyPI `pomerium-http-adapter` (installed by
/// `scripts/test` into `.cache/pomerium-adapter`), or `None` when it is
/// missing and that is allowed.
fn adapter_python() -> Option<String> {
    let path = std::env::var("JETBRIDGE_POMERIUM_ADAPTER_PYTHON").unwrap_or_else(|_| {
        format!(
            "{}/.cache/pomerium-adapter/bin/python",
            env!("CARGO_MANIFEST_DIR")
        )
    });
    if std::path::Path::new(&path).exists() {
        return Some(path);
    }
    assert!(
        std::env::var("JETBRIDGE_REQUIRE_REAL_PARTS").as_deref() != Ok("1"),
        "JETBRIDGE_REQUIRE_REAL_PARTS=1 but pomerium-http-adapter is missing at {path} (run ./scripts/test to install it)"
    );
    eprintln!("skipped: pomerium-http-adapter is missing at {path}");
    None
}

/// Pomerium's own Python client, unchanged: its request without a token is
/// redirected to sign in, it asks for the login URL, a real browser signs
/// in at the real IdP, it parses `exp` from the `pomerium_jwt` it receives
/// to cache it, and its requests then pass with the token, which stays
/// bound to its host and dies with a sign-out.
#[tokio::test(flavor = "multi_thread")]
async fn pomeriums_python_adapter_signs_in_through_a_browser_and_reuses_its_token() {
    let Some(python) = adapter_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = trusted_certificate(dir.path());
    let w = world_with(false, |c| ConfigFile {
        certificate_file: Some(cert.to_string()),
        certificate_key_file: Some(key.to_string()),
        cookie_expire: Some(std::time::Duration::from_secs(2 * 3600)),
        ..c
    })
    .await;
    let listen = free_port();
    let (ok, out, err) = run_command(
        std::process::Command::new(&python)
            .arg(format!("{}/pomerium_adapter.py", support_dir()))
            .args(["--url", &w.url("api", "/v1/items")])
            .args(["--login", "alice", "--requests", "2"])
            .args(["--listen-port", &listen.to_string()])
            .args(["--cache", dir.path().join("cache").to_str().unwrap()])
            .args(["--map", "api.localhost", "--map", "authenticate.localhost"])
            .env("REQUESTS_CA_BUNDLE", &cert)
            .env("JETBRIDGE_SUPPORT", support_dir()),
        None,
    );
    assert!(ok, "adapter: {out}\n{err}");
    let v: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}\n{err}"));
    assert_eq!(v["statuses"], serde_json::json!([200, 200]), "{v}");
    assert_eq!(
        v["browser_runs"], 1,
        "the second request reuses the cached token: {v}"
    );
    assert_eq!(v["browser"]["ok"], true, "{v}");
    let h = w.seen.lock().unwrap().last().cloned().unwrap();
    assert!(h.get("authorization").is_none(), "{h:?}");
    assert!(h.get("x-pomerium-jwt-assertion").is_some(), "{h:?}");

    // The token is a JWT whose exp the adapter read: the session's.
    let token = v["jwt"].as_str().unwrap().to_string();
    let payload = token.split('.').nth(1).unwrap();
    let claims: serde_json::Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, payload)
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v["expiry"], claims["exp"], "{claims}");
    let left = claims["exp"].as_i64().unwrap() - jetbridge::proxy::clock::unix_now();
    assert!(
        (7000..=7200).contains(&left),
        "exp is the session's (2h): {left}"
    );
    assert_eq!(claims["aud"], "api.localhost");

    // Bound to its host, and ended by signing out.
    let mut api = Browser::new();
    api.accept = "application/json".into();
    assert_eq!(
        with_token(&mut api, &w.url("api", "/"), &token)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        with_token(&mut api, &w.url("other", "/"), &token)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    let out = with_token(&mut api, &w.url("api", "/.pomerium/sign_out"), &token).await;
    assert_eq!(out.status, StatusCode::FOUND);
    assert_eq!(
        with_token(&mut api, &w.url("api", "/"), &token)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
}
