//! Programmatic access as Pomerium offers it, driven by a script acting as
//! the command-line client against npm `oidc-provider`:
//! `/.pomerium/api/v1/login` → browser sign-in → `pomerium_jwt` on the
//! client's loopback URL → `Authorization: Pomerium <token>` on requests;
//! `/.pomerium/routes` and the flag-gated `/.pomerium/jwt`.

mod e2e_common;
use e2e_common::*;
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
    let https = bind_https().await;
    let port = https.local_addr().unwrap().port();
    let callback = format!("https://authenticate.localhost:{port}/oauth2/callback");
    let (issuer, idp) = start_idp("cli", "cli-secret", &[callback], &[]);
    let (up, seen) = echo_upstream().await;
    let yaml = format!(
        r#"
authenticate_service_url: https://authenticate.localhost:{port}
idp_provider: oidc
idp_provider_url: {issuer}
idp_client_id: cli
idp_client_secret: cli-secret
idp_scopes: [openid, email, profile, groups]
cookie_secret: AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=
shared_secret: HxwdHh8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRo=
runtime_flags: {{pomerium_jwt_endpoint: {jwt_endpoint}, match_any_incoming_port: true}}
routes:
  - from: https://api.localhost
    to: http://{up}
    pass_identity_headers: true
    policy: {{allow: {{or: [{{email: {{is: alice@example.com}}}}]}}}}
  - from: https://other.localhost
    to: http://{up}
    allow_any_authenticated_user: true
    name: Other
    logo_url: https://cdn.example.com/other.svg
"#
    );
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
    for (name, value) in [
        ("authorization", format!("Pomerium {assertion}")),
        ("authorization", format!("Bearer Pomerium-{assertion}")),
        ("authorization", format!("Bearer {assertion}")),
        ("x-pomerium-authorization", assertion.clone()),
        ("x-pomerium-jwt-assertion", assertion.clone()),
        ("cookie", format!("_jetbridge={assertion}")),
    ] {
        let r = api
            .request_with("GET", &w.url("api", "/"), &[(name, &value)])
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name}");
    }
    assert_eq!(
        api.get(&w.url("api", "/.pomerium/jwt")).await.status,
        StatusCode::UNAUTHORIZED
    );
}
