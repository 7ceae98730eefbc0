//! Login tier: `standalone`-equivalent proxy + npm `oidc-provider` as the IdP.
//! A full login with an HTTP client that follows the flow; the upstream
//! receives an assertion that npm `jose` and PyPI `PyJWT` verify against the
//! JWKS URL; policy decisions match the route's PPL; login-flow attacks fail.

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

async fn world() -> World {
    let https = bind_https().await;
    let port = https.local_addr().unwrap().port();
    let callback = format!("https://authenticate.localhost:{port}/oauth2/callback");
    let signed_out = format!("https://authenticate.localhost:{port}/.pomerium/signed_out");
    let (issuer, idp) = start_idp("jetbridge", "jetbridge-secret", &[callback], &[signed_out]);
    let (up, seen) = echo_upstream().await;
    let yaml = format!(
        r#"
authenticate_service_url: https://authenticate.localhost:{port}
idp_provider: oidc
idp_provider_url: {issuer}
idp_client_id: jetbridge
idp_client_secret: jetbridge-secret
idp_scopes: [openid, email, profile, groups]
cookie_secret: {cs}
shared_secret: {ss}
jwt_claims_headers: [email, groups]
routes:
  - from: https://app.localhost
    to: http://{up}
    pass_identity_headers: true
    policy:
      - allow:
          or:
            - email:
                is: alice@example.com
            - groups:
                has: admins
  - from: https://admin.localhost
    to: http://{up}
    pass_identity_headers: true
    policy:
      allow:
        and:
          - groups: {{has: admins}}
  - from: https://plain.localhost
    to: http://{up}
    allow_any_authenticated_user: true
"#,
        cs = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        ss = "HxwdHh8AAQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRo=",
    );
    let proxy = start_proxy(https, &yaml).await;
    World {
        proxy,
        _idp: idp,
        seen,
        port,
    }
}

/// Logs `login` in starting from `start`; returns the final response.
async fn login(b: &mut Browser, w: &World, start: &str, login: &str) -> Reply {
    let r = b.get(start).await;
    assert_eq!(
        r.status,
        StatusCode::FOUND,
        "unauthenticated browser request: {}",
        r.body
    );
    let sign_in = r.location().unwrap();
    assert!(
        sign_in.starts_with(&w.url("authenticate", "/.pomerium/sign_in")),
        "{sign_in}"
    );
    let r = b.get(&sign_in).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    let authorize = r.location().unwrap();
    assert!(
        authorize.contains("code_challenge_method=S256") && authorize.contains("nonce="),
        "{authorize}"
    );
    let callback = idp_login(b, &authorize, login).await;
    assert!(
        callback.starts_with(&w.url("authenticate", "/oauth2/callback")),
        "{callback}"
    );
    let (url, r) = follow(b, callback, "never", 5).await;
    assert_eq!(url, start, "lands back where it started");
    r
}

fn json(body: &str) -> serde_json::Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{body}: {e}"))
}

#[tokio::test(flavor = "multi_thread")]
async fn full_login_delivers_an_assertion_that_jose_and_pyjwt_verify() {
    let w = world().await;
    let mut b = Browser::new();
    let start = w.url("app", "/hello?x=1");
    let r = login(&mut b, &w, &start, "alice").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let echoed = json(&r.body);
    assert_eq!(echoed["path"], "/hello?x=1");
    let token = echoed["headers"]["x-pomerium-jwt-assertion"]
        .as_str()
        .expect("assertion forwarded")
        .to_string();
    assert_eq!(
        echoed["headers"]["x-pomerium-claim-email"],
        "alice@example.com"
    );
    assert_eq!(echoed["headers"]["x-pomerium-claim-groups"], "users");
    assert!(
        echoed["headers"]
            .get("cookie")
            .is_none_or(|c| !c.as_str().unwrap().contains("_jetbridge")),
        "session cookie not forwarded"
    );

    let jwks = format!("http://{}/.well-known/pomerium/jwks.json", w.proxy.internal);
    for kind in ["jose", "pyjwt"] {
        let (ok, out) = run_verifier(kind, &jwks, &token, "app.localhost", "app.localhost");
        assert!(ok, "{kind}: {out}");
        let p = &out["payload"];
        assert_eq!(p["email"], "alice@example.com", "{kind}");
        assert_eq!(p["sub"], "alice");
        assert_eq!(p["user"], "alice");
        assert_eq!(p["groups"], serde_json::json!(["users"]));
        assert_eq!(p["name"], "Alice");
        assert_eq!(p["exp"].as_i64().unwrap() - p["iat"].as_i64().unwrap(), 300);
        // An assertion minted for app.localhost fails aud for another route.
        let (ok, _) = run_verifier(kind, &jwks, &token, "app.localhost", "admin.localhost");
        assert!(!ok, "{kind} accepted a foreign audience");
    }
    // /.pomerium/user reports the same identity.
    b.accept = "application/json".into();
    let me = b.get(&w.url("app", "/.pomerium/user")).await;
    assert_eq!(me.status, StatusCode::OK);
    assert_eq!(json(&me.body)["email"], "alice@example.com");
}

#[tokio::test(flavor = "multi_thread")]
async fn policy_decides_allow_forbidden_and_sign_in_by_client_kind() {
    let w = world().await;
    // API client without a session: 401, no redirect.
    let mut api = Browser::new();
    api.accept = "application/json".into();
    let r = api.get(&w.url("app", "/")).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.location().is_none());

    // carol is signed in but not allowed on app or admin: 403; allowed on plain.
    let mut b = Browser::new();
    let r = login(&mut b, &w, &w.url("plain", "/"), "carol").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let upstream_before = w.seen.lock().unwrap().len();
    // Sessions are per host: app needs its own sign-in, which reuses the IdP session.
    let r = b.get(&w.url("app", "/")).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let (url, r) = follow(&mut b, r.location().unwrap(), "never", 10).await;
    assert_eq!(url, w.url("app", "/"));
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    assert_eq!(
        w.seen.lock().unwrap().len(),
        upstream_before,
        "denied request never reached the upstream"
    );

    // An admin passes both.
    let mut a = Browser::new();
    let r = login(&mut a, &w, &w.url("admin", "/"), "admin.bob").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        json(&r.body)["headers"]["x-pomerium-claim-groups"],
        "users,admins"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn replayed_state_and_reused_code_are_rejected() {
    let w = world().await;
    let mut b = Browser::new();
    let start = w.url("app", "/");
    let sign_in = b.get(&start).await.location().unwrap();
    let authorize = b.get(&sign_in).await.location().unwrap();
    let callback = idp_login(&mut b, &authorize, "alice").await;
    let state_cookie = b.jar.get("authenticate.localhost").cloned().unwrap();
    let first = b.get(&callback).await;
    assert_eq!(first.status, StatusCode::FOUND, "{}", first.body);
    // Replay the same callback with the same state cookie restored.
    b.jar.insert("authenticate.localhost".into(), state_cookie);
    let replay = b.get(&callback).await;
    assert_eq!(replay.status, StatusCode::BAD_REQUEST, "{}", replay.body);

    // A fresh state with the old code: the IdP refuses the reused code.
    let mut b2 = Browser::new();
    let sign_in = b2.get(&start).await.location().unwrap();
    let authorize = b2.get(&sign_in).await.location().unwrap();
    let state = url::Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "state")
        .unwrap()
        .1
        .to_string();
    let code = url::Url::parse(&callback)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .unwrap()
        .1
        .to_string();
    let forged = w.url(
        "authenticate",
        &format!(
            "/oauth2/callback?code={}&state={}",
            urlencode(&code),
            urlencode(&state)
        ),
    );
    let r = b2.get(&forged).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("sign-in failed"), "{}", r.body);

    // A state that does not match the browser's cookie.
    let r = b2
        .get(&w.url(
            "authenticate",
            "/oauth2/callback?code=x&state=not-the-state",
        ))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    // No state cookie at all.
    let mut b3 = Browser::new();
    let r = b3.get(&forged).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn open_redirect_targets_are_refused() {
    let w = world().await;
    let mut b = Browser::new();
    let port = w.port;
    for target in [
        "https://evil.example.com/".to_string(),
        "//evil.example.com/".to_string(),
        "/\\evil.example.com".to_string(),
        format!("https://app.localhost:{port}@evil.example.com/"),
        format!("https://user:pw@app.localhost:{port}/"),
        "javascript:alert(1)".to_string(),
        format!("http://app.localhost:{port}/"),
        format!("https://app.localhost:{port}/%0d%0aSet-Cookie:x=1"),
        format!("https://app.localhost:{port}/\r\nx"),
        "data:text/html,hi".to_string(),
        String::new(),
    ] {
        let url = w.url(
            "authenticate",
            &format!(
                "/.pomerium/sign_in?pomerium_redirect_uri={}",
                urlencode(&target)
            ),
        );
        let r = b.get(&url).await;
        if target.contains("%0d%0a") {
            // Percent-encoded CR/LF stays encoded in a valid URL: allowed, but never decoded into a header.
            assert!(r.location().is_none_or(|l| !l.contains('\n')), "{target}");
            continue;
        }
        assert_eq!(
            r.status,
            StatusCode::BAD_REQUEST,
            "{target:?} → {} {:?}",
            r.status,
            r.location()
        );
    }
    // A valid route target is accepted.
    let ok = w.url(
        "authenticate",
        &format!(
            "/.pomerium/sign_in?pomerium_redirect_uri={}",
            urlencode(&w.url("app", "/x"))
        ),
    );
    assert_eq!(b.get(&ok).await.status, StatusCode::FOUND);
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_foreign_or_replayed_cookies_and_handoffs_mean_no_session() {
    let w = world().await;
    let mut b = Browser::new();
    let r = login(&mut b, &w, &w.url("app", "/"), "alice").await;
    assert_eq!(r.status, StatusCode::OK);
    let cookie = b.jar["app.localhost"]["_jetbridge"].clone();

    let mut api = Browser::new();
    api.accept = "application/json".into();
    // Tampered: flip one character.
    let mut t = cookie.clone().into_bytes();
    let i = t.len() / 2;
    t[i] = if t[i] == b'A' { b'B' } else { b'A' };
    for bad in [
        String::from_utf8(t).unwrap(),
        cookie[..cookie.len() - 5].to_string(),
        "garbage".into(),
        String::new(),
    ] {
        api.jar.insert(
            "app.localhost".into(),
            [("_jetbridge".to_string(), bad.clone())].into(),
        );
        let r = api.get(&w.url("app", "/")).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "cookie {bad:?}");
    }
    // The app cookie is not valid on another host.
    api.jar.insert(
        "plain.localhost".into(),
        [("_jetbridge".to_string(), cookie.clone())].into(),
    );
    assert_eq!(
        api.get(&w.url("plain", "/")).await.status,
        StatusCode::UNAUTHORIZED
    );
    // The genuine cookie works for an API client too.
    api.jar.insert(
        "app.localhost".into(),
        [("_jetbridge".to_string(), cookie)].into(),
    );
    assert_eq!(api.get(&w.url("app", "/")).await.status, StatusCode::OK);

    // A forged hand-off is refused.
    let r = api
        .get(&w.url("app", "/.pomerium/callback?pomerium_handoff=AAAA"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_out_clears_the_cookie_and_uses_the_idp_logout() {
    let w = world().await;
    let mut b = Browser::new();
    login(&mut b, &w, &w.url("app", "/"), "alice").await;
    let r = b.get(&w.url("app", "/.pomerium/sign_out")).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let loc = r.location().unwrap();
    assert!(
        loc.contains("/session/end") && loc.contains("post_logout_redirect_uri"),
        "{loc}"
    );
    assert!(
        b.jar
            .get("app.localhost")
            .is_none_or(|j| !j.contains_key("_jetbridge"))
    );
    b.accept = "application/json".into();
    assert_eq!(
        b.get(&w.url("app", "/")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

async fn session_id(b: &mut Browser, url: &str) -> (StatusCode, Option<String>) {
    let r = b.get(url).await;
    (r.status, json(&r.body)["sid"].as_str().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_out_on_one_host_ends_the_browsers_session_on_every_host() {
    let w = world().await;
    let mut b = Browser::new();
    assert_eq!(
        login(&mut b, &w, &w.url("app", "/"), "alice").await.status,
        StatusCode::OK
    );
    // The second host's sign-in rides on the IdP's session and on the
    // browser-session cookie of the authenticate host.
    assert_eq!(
        login(&mut b, &w, &w.url("plain", "/"), "alice")
            .await
            .status,
        StatusCode::OK
    );
    b.accept = "application/json".into();
    let (s1, app_sid) = session_id(&mut b, &w.url("app", "/.pomerium/user")).await;
    let (s2, plain_sid) = session_id(&mut b, &w.url("plain", "/.pomerium/user")).await;
    assert_eq!((s1, s2), (StatusCode::OK, StatusCode::OK));
    assert_eq!(app_sid, plain_sid, "one browser, one session id");

    // Copies of both cookies, taken before sign-out.
    let mut copy = Browser::new();
    copy.accept = "application/json".into();
    copy.jar = b.jar.clone();

    let r = b.get(&w.url("app", "/.pomerium/sign_out")).await;
    assert_eq!(r.status, StatusCode::FOUND);
    for host in ["app", "plain"] {
        assert_eq!(
            copy.get(&w.url(host, "/")).await.status,
            StatusCode::UNAUTHORIZED,
            "{host}: a copied cookie is refused after sign-out"
        );
    }
    // Signing in again gives a new session id, not the revoked one.
    let mut fresh = Browser::new();
    login(&mut fresh, &w, &w.url("app", "/"), "alice").await;
    fresh.accept = "application/json".into();
    let r = fresh.get(&w.url("app", "/.pomerium/user")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_ne!(json(&r.body)["sid"].as_str().map(str::to_string), app_sid);
}
