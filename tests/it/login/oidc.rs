//! Login tier: `standalone`-equivalent proxy + npm `oidc-provider` as the IdP.
//! A full login with an HTTP client that follows the flow; the upstream
//! receives an assertion that npm `jose` and PyPI `PyJWT` verify against the
//! JWKS URL; policy decisions match the route's PPL; login-flow attacks fail.

use crate::harness;
use harness::config::*;
use harness::login::*;
use http::StatusCode;
use serde_json::Value;

struct World {
    proxy: RunningProxy,
    _idp: ChildGuard,
    seen: std::sync::Arc<std::sync::Mutex<Vec<http::HeaderMap>>>,
    port: u16,
    /// The config every replica of this world runs.
    yaml: ConfigFile,
    /// The real IdP's issuer URL.
    issuer: String,
}

impl World {
    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}.localhost:{}{path}", self.port)
    }

    /// Another replica: a second proxy with the same config (the same
    /// `cookie_secret`, `shared_secret` and the signing key derived from it)
    /// on its own port, sharing nothing in memory with the first.
    async fn replica(&self) -> RunningProxy {
        start_proxy(bind_https().await, &self.yaml).await
    }
}

/// `url` with its port replaced: the same request sent to another replica
/// (a browser keeps cookies per host, not per port, as behind a load balancer).
fn on_replica(url: &str, port: u16) -> String {
    let mut u = url::Url::parse(url).unwrap();
    u.set_port(Some(port)).unwrap();
    u.to_string()
}

async fn world() -> World {
    world_as("oidc").await
}

/// The world with `idp_provider: provider` (the real IdP stands in for it).
async fn world_as(provider: &str) -> World {
    let https = bind_https().await;
    let port = https.local_addr().unwrap().port();
    let callback = format!("https://authenticate.localhost:{port}/oauth2/callback");
    let signed_out = format!("https://authenticate.localhost:{port}/.pomerium/signed_out");
    // A second client at the same IdP, for a route with its own
    // (`idp_client_id`).
    let (issuer, idp) = start_idp_with(
        "jetbridge",
        "jetbridge-secret",
        &[callback],
        &[signed_out],
        &["--extra-client", "second:second-secret"],
    );
    let (up, seen) = echo_upstream().await;
    let to = format!("http://{up}");
    let identity = |host: &str| identity_route(host, &to);
    let token_route = |host: &str, format: &str| RouteConfig {
        bearer_token_format: Some(format.into()),
        ..identity(host)
    };
    let routes = [
        RouteConfig {
            pass_identity_headers: Some(true),
            policy: ppl(
                "[{allow: {or: [{email: {is: alice@example.com}}, {groups: {has: admins}}]}}]",
            ),
            ..route("app.localhost", &to)
        },
        RouteConfig {
            pass_identity_headers: Some(true),
            policy: ppl("allow: {and: [{groups: {has: admins}}]}"),
            ..route("admin.localhost", &to)
        },
        signed_in_route("plain.localhost", &to),
        token_route("api.localhost", "idp_access_token"),
        token_route("idt.localhost", "idp_identity_token"),
        RouteConfig {
            idp_client_id: Some("second".into()),
            idp_client_secret: Some("second-secret".into()),
            ..identity("own.localhost")
        },
        RouteConfig {
            idp_access_token_allowed_audiences: Some(strings(&["https://api.jetbridge.test/"])),
            ..token_route("aud.localhost", "idp_access_token")
        },
        RouteConfig {
            bearer_token_format: Some("idp_access_token".into()),
            idp_access_token_allowed_audiences: Some(strings(&["https://other.jetbridge.test/"])),
            ..signed_in_route("aud2.localhost", &to)
        },
        RouteConfig {
            depends_on: strings(&[
                "dep-b.localhost",
                "https://dep-c.localhost/",
                "nowhere.localhost",
            ]),
            ..signed_in_route("dep-a.localhost", &to)
        },
        identity("dep-b.localhost"),
        identity("dep-c.localhost"),
        RouteConfig {
            set_request_headers: headers(&[
                ("X-Id-Token", "${pomerium.id_token}"),
                ("Authorization", "Bearer ${pomerium.access_token}"),
                ("X-Both", "${pomerium.jwt} ${pomerium.id_token}"),
            ]),
            ..signed_in_route("tok.localhost", &to)
        },
    ];
    let yaml = ConfigFile {
        idp_provider: Some(provider.into()),
        jwt_claims_headers: claim_list(&["email", "groups"]),
        ..sign_in_config(port, &issuer, "jetbridge", "jetbridge-secret", routes)
    };
    let proxy = start_proxy(https, &yaml).await;
    World {
        proxy,
        _idp: idp,
        seen,
        port,
        yaml,
        issuer,
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
    assert!(
        r.headers.get(http::header::SET_COOKIE).is_none(),
        "an API client gets no sign-in cookie"
    );

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
    // A valid route target is accepted. Without the binding a route host
    // adds, the browser is sent to the target first, whose host starts a
    // sign-in bound to it.
    let ok = w.url(
        "authenticate",
        &format!(
            "/.pomerium/sign_in?pomerium_redirect_uri={}",
            urlencode(&w.url("app", "/x"))
        ),
    );
    let r = b.get(&ok).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location(), Some(w.url("app", "/x")));
    let sign_in = w.url("authenticate", "/.pomerium/sign_in");
    let (bound, r) = follow(&mut b, ok.clone(), &sign_in, 3).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(bound.contains("jetbridge_login="), "{bound}");
    assert_eq!(b.get(&bound).await.status, StatusCode::FOUND);
    // A malformed binding is refused.
    let r = b.get(&format!("{ok}&jetbridge_login=short")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
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

/// Runs a sign-in for `login` from `start` up to the hand-off URL the
/// authenticate host sends the browser to (returned, not followed).
async fn to_handoff(b: &mut Browser, w: &World, start: &str, login: &str) -> String {
    let sign_in = b.get(start).await.location().unwrap();
    let authorize = b.get(&sign_in).await.location().unwrap();
    let callback = idp_login(b, &authorize, login).await;
    let r = b.get(&callback).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    let handoff = r.location().unwrap();
    assert!(
        handoff.starts_with(&w.url("app", "/.pomerium/callback?pomerium_handoff=")),
        "{handoff}"
    );
    handoff
}

fn sets_session_cookie(r: &Reply) -> bool {
    r.headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|c| c.starts_with("_jetbridge=") && !c.starts_with("_jetbridge=;"))
}

/// Asserts a hand-off was refused as started in another browser: 403 with
/// the reason, no session cookie, no redirect.
fn assert_refused_handoff(r: &Reply, what: &str) {
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {}", r.body);
    assert!(
        r.body
            .contains("sign-in was started in another browser; start again"),
        "{what}: {}",
        r.body
    );
    assert!(!sets_session_cookie(r), "{what}: a session cookie was set");
    assert!(r.location().is_none(), "{what}: redirected");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_captured_handoff_is_refused_in_another_browser_on_every_replica() {
    let w = world().await;
    let second = w.replica().await;
    let start = w.url("app", "/");
    let mut victim = Browser::new();
    let handoff = to_handoff(&mut victim, &w, &start, "alice").await;

    // Replayed from another browser before the victim uses it: refused on
    // both replicas, and the refusals do not use it up for the victim.
    let mut thief = Browser::new();
    for port in [second.port, w.port] {
        let r = thief.get(&on_replica(&handoff, port)).await;
        assert_refused_handoff(&r, &format!("fresh hand-off, other browser, port {port}"));
    }
    let r = victim.get(&handoff).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    assert!(sets_session_cookie(&r));
    assert_eq!(r.location().as_deref(), Some(start.as_str()));

    // Replayed from another browser after the victim used it on the first
    // replica: the second replica has never seen it, and still refuses it.
    for port in [second.port, w.port] {
        let r = thief.get(&on_replica(&handoff, port)).await;
        assert_refused_handoff(&r, &format!("used hand-off, other browser, port {port}"));
    }
    thief.accept = "application/json".into();
    for port in [second.port, w.port] {
        let r = thief.get(&on_replica(&start, port)).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "thief has no session");
    }
    // The victim is signed in on both replicas with the one cookie.
    victim.accept = "application/json".into();
    for port in [second.port, w.port] {
        let r = victim.get(&on_replica(&start, port)).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    }
}

const NONCE_PREFIX: &str = "__Host-jetbridge_login_";

/// The sign-in nonce cookies `b` holds for app.localhost.
fn nonce_cookies(b: &Browser) -> Vec<(String, String)> {
    b.jar
        .get("app.localhost")
        .into_iter()
        .flatten()
        .filter(|(k, _)| k.starts_with(NONCE_PREFIX))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

/// The hash of a nonce as it travels: base64url SHA-256.
fn hash_of(nonce: &str) -> String {
    use base64::Engine as _;
    use sha2::Digest as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(sha2::Sha256::digest(nonce.as_bytes()))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_used_handoff_replayed_in_the_same_browser_on_another_replica_is_refused() {
    let w = world().await;
    let second = w.replica().await;
    let start = w.url("app", "/");
    let mut b = Browser::new();
    let handoff = to_handoff(&mut b, &w, &start, "alice").await;
    assert_eq!(nonce_cookies(&b).len(), 1);
    // A copy of the browser's cookies taken before the hand-off is used.
    let mut copy = Browser::new();
    copy.jar = b.jar.clone();

    let r = b.get(&handoff).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    assert!(sets_session_cookie(&r));
    assert!(nonce_cookies(&b).is_empty(), "the nonce cookie is deleted");

    // The same browser replays it on the other replica, then on the first.
    for port in [second.port, w.port] {
        let r = b.get(&on_replica(&handoff, port)).await;
        assert_refused_handoff(&r, &format!("same browser, port {port}"));
    }
    // Even with the nonce still presented, the replica that took the
    // hand-off refuses it a second time (one use per process).
    let r = copy.get(&handoff).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    assert!(r.body.contains("hand-off already used"), "{}", r.body);
    assert!(!sets_session_cookie(&r));
}

#[tokio::test(flavor = "multi_thread")]
async fn tampered_missing_or_foreign_nonce_cookies_refuse_the_handoff() {
    let w = world().await;
    let second = w.replica().await;
    let start = w.url("app", "/");
    let mut b = Browser::new();
    let handoff = to_handoff(&mut b, &w, &start, "alice").await;
    let [(name, nonce)]: [(String, String); 1] = nonce_cookies(&b).try_into().unwrap();
    // Another sign-in (another browser) has its own nonce.
    let mut other = Browser::new();
    assert_eq!(other.get(&start).await.status, StatusCode::FOUND);
    let [(other_name, other_nonce)]: [(String, String); 1] =
        nonce_cookies(&other).try_into().unwrap();
    assert_ne!(other_name, name);
    let binding = hash_of(&nonce);

    let mut flipped = nonce.clone().into_bytes();
    flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
    let flipped = String::from_utf8(flipped).unwrap();
    let cases: Vec<(&str, Vec<(String, String)>)> = vec![
        ("missing", vec![]),
        ("tampered", vec![(name.clone(), flipped)]),
        (
            "truncated",
            vec![(name.clone(), nonce[..nonce.len() - 1].into())],
        ),
        ("empty", vec![(name.clone(), String::new())]),
        (
            "another sign-in's nonce",
            vec![(name.clone(), other_nonce.clone())],
        ),
        ("another sign-in's cookie", vec![(other_name, other_nonce)]),
        (
            "a hash in place of the nonce",
            vec![(name.clone(), binding)],
        ),
    ];
    for (what, cookies) in cases {
        for port in [w.port, second.port] {
            let mut x = Browser::new();
            x.jar
                .insert("app.localhost".into(), cookies.iter().cloned().collect());
            let r = x.get(&on_replica(&handoff, port)).await;
            assert_refused_handoff(&r, &format!("{what}, port {port}"));
            assert!(
                x.jar
                    .get("app.localhost")
                    .is_none_or(|j| !j.contains_key("_jetbridge")),
                "{what}: no session"
            );
        }
    }
    // The genuine nonce, on the second replica: accepted, once.
    let r = b.get(&on_replica(&handoff, second.port)).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    assert!(sets_session_cookie(&r));
    assert_eq!(
        r.location(),
        Some(start.clone()),
        "back to where the sign-in started"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn two_sign_ins_in_one_browser_at_once_both_complete() {
    let w = world().await;
    let (one, two) = (w.url("app", "/one"), w.url("app", "/two"));
    let mut b = Browser::new();
    // Both tabs reach the IdP before either comes back.
    let sign_in_one = b.get(&one).await.location().unwrap();
    let authorize_one = b.get(&sign_in_one).await.location().unwrap();
    let sign_in_two = b.get(&two).await.location().unwrap();
    let authorize_two = b.get(&sign_in_two).await.location().unwrap();
    assert_eq!(nonce_cookies(&b).len(), 2, "one nonce cookie per sign-in");

    let callback = idp_login(&mut b, &authorize_one, "alice").await;
    let (url, r) = follow(&mut b, callback, "never", 5).await;
    assert_eq!(url, one);
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    // The second sign-in's nonce was sent along, and not forwarded upstream.
    assert_eq!(nonce_cookies(&b).len(), 1);
    let cookie = json(&r.body)["headers"]["cookie"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(!cookie.contains("jetbridge"), "forwarded cookies: {cookie}");

    // The second tab finishes on the IdP's session.
    let callback = idp_login(&mut b, &authorize_two, "alice").await;
    let (url, r) = follow(&mut b, callback, "never", 5).await;
    assert_eq!(url, two);
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(nonce_cookies(&b).is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_nonce_cookie_is_host_only_and_only_its_hash_travels() {
    let w = world().await;
    let start = w.url("app", "/");
    let mut b = Browser::new();
    let r = b.get(&start).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let set: Vec<String> = r
        .headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .collect();
    let [cookie]: [String; 1] = set.try_into().unwrap();
    let mut attrs = cookie.split("; ");
    let (name, nonce) = attrs.next().unwrap().split_once('=').unwrap();
    let attrs: Vec<&str> = attrs.collect();
    assert_eq!(
        attrs,
        [
            "Path=/",
            "Max-Age=600",
            "Secure",
            "HttpOnly",
            "SameSite=Lax"
        ],
        "host-only (no Domain), Secure, HttpOnly, Lax, 10 minutes"
    );
    assert_eq!(nonce.len(), 43, "32 random bytes, base64url");
    let hash = hash_of(nonce);
    assert_eq!(name, format!("{NONCE_PREFIX}{}", &hash[..16]));

    let sign_in = r.location().unwrap();
    let sent = url::Url::parse(&sign_in)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "jetbridge_login")
        .map(|(_, v)| v.to_string());
    assert_eq!(sent.as_deref(), Some(hash.as_str()));
    assert!(!sign_in.contains(nonce));
    // Neither the authenticate host's state cookie, the IdP nor the hand-off
    // sees the nonce or its hash in clear.
    let r = b.get(&sign_in).await;
    let authorize = r.location().unwrap();
    for v in r.headers.get_all(http::header::SET_COOKIE) {
        let v = v.to_str().unwrap();
        assert!(!v.contains(nonce) && !v.contains(&hash), "{v}");
    }
    assert!(!authorize.contains(nonce) && !authorize.contains(&hash));
    let callback = idp_login(&mut b, &authorize, "alice").await;
    let handoff = b.get(&callback).await.location().unwrap();
    assert!(!handoff.contains(nonce) && !handoff.contains(&hash));
    // The nonce cookie stayed on app.localhost only.
    for (host, cookies) in &b.jar {
        if host != "app.localhost" {
            assert!(
                cookies.keys().all(|k| !k.starts_with(NONCE_PREFIX)),
                "{host}"
            );
        }
    }
    let r = b.get(&handoff).await;
    assert_eq!(r.status, StatusCode::FOUND, "{}", r.body);
    let deleted = r
        .headers
        .get_all(http::header::SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_string())
        .find(|v| v.starts_with(name))
        .expect("the nonce cookie is deleted");
    assert!(deleted.starts_with(&format!("{name}=;")) && deleted.contains("Max-Age=0"));
}

/// Signs `login` in at the real IdP the way a command-line tool does (code
/// flow with PKCE, this world's client), without the proxy; returns the
/// IdP's access token and ID token.
async fn idp_tokens(w: &World, login: &str) -> (String, String) {
    idp_tokens_for(w, login, None).await
}

/// As [`idp_tokens`]; with `resource`, the access token is the IdP's JWT
/// for that resource (RFC 8707; `aud` is the resource).
async fn idp_tokens_for(w: &World, login: &str, resource: Option<&str>) -> (String, String) {
    use base64::Engine as _;
    use sha2::Digest as _;
    let mut b = Browser::new();
    let meta: Value = serde_json::from_str(
        &b.get(&format!("{}/.well-known/openid-configuration", w.issuer))
            .await
            .body,
    )
    .unwrap();
    let verifier = format!("cli-verifier-{login}-{}", "x".repeat(43));
    let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(sha2::Sha256::digest(verifier.as_bytes()));
    let callback = w.url("authenticate", "/oauth2/callback");
    let authorize = format!(
        "{}?client_id=jetbridge&response_type=code&scope={}&redirect_uri={}&state=cli-state&nonce=cli-nonce&code_challenge={challenge}&code_challenge_method=S256{}",
        meta["authorization_endpoint"].as_str().unwrap(),
        urlencode(match resource {
            Some(_) => "openid email profile groups api",
            None => "openid email profile groups",
        }),
        urlencode(&callback),
        resource
            .map(|r| format!("&resource={}", urlencode(r)))
            .unwrap_or_default(),
    );
    let back = idp_login(&mut b, &authorize, login).await;
    let code = url::Url::parse(&back)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "code")
        .map(|(_, v)| v.into_owned())
        .expect("the IdP sent a code");
    let basic = base64::engine::general_purpose::STANDARD.encode("jetbridge:jetbridge-secret");
    let r = b
        .post_form_with(
            meta["token_endpoint"].as_str().unwrap(),
            &format!(
                "grant_type=authorization_code&code={}&redirect_uri={}&code_verifier={verifier}{}",
                urlencode(&code),
                urlencode(&callback),
                resource
                    .map(|r| format!("&resource={}", urlencode(r)))
                    .unwrap_or_default(),
            ),
            &[("authorization", &format!("Basic {basic}"))],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "token endpoint: {}", r.body);
    let t: Value = serde_json::from_str(&r.body).unwrap();
    (
        t["access_token"].as_str().unwrap().to_string(),
        t["id_token"].as_str().unwrap().to_string(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn identity_provider_tokens_are_credentials_where_the_route_says_so() {
    let w = world().await;
    let (access, id) = idp_tokens(&w, "alice").await;
    let (bob_access, _) = idp_tokens(&w, "bob").await;
    let mut api = Browser::new();
    api.accept = "application/json".into();
    let bearer = |t: &str| format!("Bearer {t}");
    // What each request got, and what the upstream saw of it.
    let mut call = async |host: &str, path: &str, name: &str, value: String| {
        w.seen.lock().unwrap().clear();
        let r = api
            .request_with("GET", &w.url(host, path), &[(name, &value)])
            .await;
        let seen = w.seen.lock().unwrap().first().cloned();
        (r.status, seen)
    };
    // Routes that read `Authorization: Bearer` as an IdP token accept the
    // kind they name, hand the upstream the user's assertion and claims,
    // and keep the token to themselves.
    for (host, token) in [("api", &access), ("idt", &id)] {
        let (status, seen) = call(host, "/bearer", "authorization", bearer(token)).await;
        assert_eq!(status, StatusCode::OK, "{host}");
        let seen = seen.unwrap();
        assert_eq!(
            seen["x-pomerium-claim-email"], "alice@example.com",
            "{host}"
        );
        assert!(seen.contains_key("x-pomerium-jwt-assertion"), "{host}");
        assert!(
            !seen.contains_key("authorization"),
            "{host}: the token went upstream"
        );
    }
    // The other kind, tampered tokens and made-up ones are refused there.
    let mut forged_sig = id.clone().into_bytes();
    let n = forged_sig.len() - 3;
    forged_sig[n] = if forged_sig[n] == b'A' { b'B' } else { b'A' };
    let forged_sig = String::from_utf8(forged_sig).unwrap();
    let payload = id.split('.').nth(1).unwrap();
    let unsigned = format!("eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.{payload}.");
    for (host, token, what) in [
        ("api", id.as_str(), "an ID token as an access token"),
        ("idt", access.as_str(), "an access token as an ID token"),
        ("api", "made-up-access-token", "a made-up access token"),
        (
            "idt",
            forged_sig.as_str(),
            "an ID token with a changed signature",
        ),
        (
            "idt",
            unsigned.as_str(),
            "the ID token's claims unsigned (alg none)",
        ),
        ("idt", payload, "the ID token's payload alone"),
    ] {
        let (status, seen) = call(host, "/bad", "authorization", bearer(token)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert!(seen.is_none(), "{what} reached the upstream");
    }
    // A route with the default format does not read `Bearer` tokens...
    let (status, _) = call("plain", "/default", "authorization", bearer(&access)).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // ...but Pomerium's explicit forms work on every route, and never reach
    // the upstream.
    for (name, value) in [
        ("x-pomerium-idp-access-token", access.clone()),
        ("x-pomerium-idp-identity-token", id.clone()),
        (
            "authorization",
            format!("Pomerium-IDP-Access-Token {access}"),
        ),
        ("authorization", format!("Pomerium-IDP-Identity-Token {id}")),
    ] {
        let (status, seen) = call("plain", "/explicit", name, value.clone()).await;
        assert_eq!(status, StatusCode::OK, "{name}: {value:.40}");
        let seen = seen.unwrap();
        assert!(
            seen.iter().all(|(_, v)| !v
                .to_str()
                .unwrap_or("")
                .contains(&value[value.len() - 20..])),
            "{name}: the token went upstream"
        );
    }
    // The route's policy still decides: bob is not allowed on app.
    let (status, _) = call(
        "app",
        "/",
        "x-pomerium-idp-access-token",
        bob_access.clone(),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call("app", "/", "x-pomerium-idp-access-token", access.clone()).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_idps_own_tokens_reach_the_upstream_where_a_route_asks_for_them() {
    use base64::Engine as _;
    let w = world().await;
    let mut b = Browser::new();
    let r = login(&mut b, &w, &w.url("tok", "/"), "alice").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let seen = w.seen.lock().unwrap().last().cloned().unwrap();
    let header = |n: &str| seen.get(n).map(|v| v.to_str().unwrap().to_string());
    // The ID token is the IdP's own, for alice, issued to this client.
    let id = header("x-id-token").expect("X-Id-Token");
    let payload: Value = serde_json::from_slice(
        &base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(id.split('.').nth(1).unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(payload["sub"], "alice");
    assert_eq!(payload["iss"], w.issuer.as_str());
    assert_eq!(payload["aud"], "jetbridge");
    // The access token works at the IdP for alice.
    let access = header("authorization")
        .and_then(|a| a.strip_prefix("Bearer ").map(str::to_string))
        .expect("Authorization: Bearer <access token>");
    let mut idp = Browser::new();
    let meta: Value = serde_json::from_str(
        &idp.get(&format!("{}/.well-known/openid-configuration", w.issuer))
            .await
            .body,
    )
    .unwrap();
    let userinfo = idp
        .request_with(
            "GET",
            meta["userinfo_endpoint"].as_str().unwrap(),
            &[("authorization", &format!("Bearer {access}"))],
        )
        .await;
    assert_eq!(userinfo.status, StatusCode::OK, "{}", userinfo.body);
    assert_eq!(
        serde_json::from_str::<Value>(&userinfo.body).unwrap()["sub"],
        "alice"
    );
    // Several substitutions in one value.
    let both = header("x-both").unwrap();
    let (assertion, id_again) = both.split_once(' ').unwrap();
    assert_eq!(id_again, id);
    assert_eq!(assertion.split('.').count(), 3);
    assert_ne!(assertion, id);
    // A token used as the credential is what the route passes on.
    let (access2, id2) = idp_tokens(&w, "alice").await;
    let mut api = Browser::new();
    api.accept = "application/json".into();
    w.seen.lock().unwrap().clear();
    let r = api
        .request_with(
            "GET",
            &w.url("tok", "/"),
            &[("x-pomerium-idp-access-token", &access2)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = w.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen["authorization"], format!("Bearer {access2}").as_str());
    assert!(
        !seen.contains_key("x-id-token"),
        "no ID token came with this request"
    );
    w.seen.lock().unwrap().clear();
    let r = api
        .request_with(
            "GET",
            &w.url("tok", "/"),
            &[("x-pomerium-idp-identity-token", &id2)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = w.seen.lock().unwrap().last().cloned().unwrap();
    assert_eq!(seen["x-id-token"], id2.as_str());
    // Routes that do not ask keep the tokens to themselves.
    w.seen.lock().unwrap().clear();
    let r = api
        .request_with(
            "GET",
            &w.url("plain", "/"),
            &[("x-pomerium-idp-identity-token", &id2)],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let seen = w.seen.lock().unwrap().last().cloned().unwrap();
    let tail = &id2[id2.len() - 20..];
    assert!(
        seen.iter()
            .all(|(_, v)| !v.to_str().unwrap_or("").contains(tail))
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pomeriums_named_oidc_providers_sign_in_through_their_discovery_document() {
    for provider in ["azure", "okta", "auth0", "keycloak"] {
        let w = world_as(provider).await;
        let mut b = Browser::new();
        let r = login(&mut b, &w, &w.url("app", "/"), "alice").await;
        assert_eq!(r.status, StatusCode::OK, "{provider}: {}", r.body);
        let seen = w.seen.lock().unwrap().last().cloned().unwrap();
        assert_eq!(
            seen["x-pomerium-claim-email"], "alice@example.com",
            "{provider}"
        );
    }
}

/// Follows redirects from `url`; returns every URL visited and the last reply.
async fn follow_recording(b: &mut Browser, mut url: String, max: usize) -> (Vec<String>, Reply) {
    let mut visited = vec![url.clone()];
    for _ in 0..max {
        let r = b.get(&url).await;
        match r.location() {
            Some(loc) if r.status.is_redirection() => {
                url = resolve(&url, &loc);
                visited.push(url.clone());
            }
            _ => return (visited, r),
        }
    }
    panic!("too many redirects: {visited:#?}");
}

/// Pomerium's `depends_on`: signing in on a route signs the browser in to
/// each listed host in turn (skipping hosts no route names), then lands
/// where it started; each host then has its own session. A chain stop is
/// sealed for its host: garbage, or a stop for one host shown to another,
/// is refused.
#[tokio::test(flavor = "multi_thread")]
async fn depends_on_signs_the_browser_in_to_each_listed_host_in_turn() {
    let w = world().await;
    let mut b = Browser::new();
    let start = w.url("dep-a", "/start?x=1");
    let r = b.get(&start).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let r = b.get(&r.location().unwrap()).await;
    let callback = idp_login(&mut b, &r.location().unwrap(), "alice").await;
    let (visited, last) = follow_recording(&mut b, callback, 60).await;
    assert_eq!(visited.last().unwrap(), &start, "{visited:#?}");
    assert_eq!(last.status, StatusCode::OK, "{}", last.body);
    let stops: Vec<&String> = visited
        .iter()
        .filter(|u| u.contains("/.pomerium/depends_on?"))
        .collect();
    let mut stop_hosts: Vec<String> = stops
        .iter()
        .map(|u| url::Url::parse(u).unwrap().host_str().unwrap().to_string())
        .collect();
    stop_hosts.dedup();
    assert_eq!(
        stop_hosts,
        ["dep-b.localhost", "dep-c.localhost"],
        "{visited:#?}"
    );
    // Each listed host was signed in through the IdP (silently: the IdP
    // already knows the browser) and now answers with alice's identity.
    for host in ["dep-b", "dep-c"] {
        let r = b.get(&w.url(host, "/")).await;
        assert_eq!(r.status, StatusCode::OK, "{host}: {}", r.body);
        assert_eq!(
            json(&r.body)["headers"]["x-pomerium-claim-email"],
            "alice@example.com",
            "{host}"
        );
    }
    // The sessions are this browser's: another one still has to sign in.
    let r = Browser::new().get(&w.url("dep-b", "/")).await;
    assert_eq!(r.status, StatusCode::FOUND);

    // A stop revisited with a session moves straight on.
    let stop_b = stops[0].clone();
    let r = b.get(&stop_b).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let next = r.location().unwrap();
    assert!(
        next.contains("dep-c.localhost") && next.contains("/.pomerium/depends_on?"),
        "{next}"
    );
    // Sealed for its host: shown to another host, tampered or missing, refused.
    let query = stop_b.split_once('?').unwrap().1;
    let mut fresh = Browser::new();
    for url in [
        w.url("dep-c", &format!("/.pomerium/depends_on?{query}")),
        w.url("app", &format!("/.pomerium/depends_on?{query}")),
        w.url("dep-b", "/.pomerium/depends_on?jetbridge_chain=AAAA"),
        w.url(
            "dep-b",
            &format!("/.pomerium/depends_on?{}", query.replacen('=', "=x", 1)),
        ),
        w.url("dep-b", "/.pomerium/depends_on"),
    ] {
        let r = fresh.get(&url).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{url}: {}", r.body);
    }
    // A fresh browser at a genuine stop signs in there first.
    let r = fresh.get(&stop_b).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert!(
        r.location().unwrap().contains("/.pomerium/sign_in?"),
        "{:?}",
        r.location()
    );
}

/// Pomerium's `idp_access_token_allowed_audiences`: on a route listing
/// audiences, an IdP access token is accepted only as a JWT the IdP signed
/// whose `aud` names one of them (the real IdP issues such tokens for a
/// resource, RFC 8707); its claims are the identity. Tokens for another
/// audience, opaque tokens, the ID token, and altered tokens are refused, and
/// a token accepted on one route is not thereby accepted on another.
#[tokio::test(flavor = "multi_thread")]
async fn idp_access_tokens_must_name_an_allowed_audience_where_a_route_lists_them() {
    let w = world().await;
    let (jwt, id) = idp_tokens_for(&w, "alice", Some("https://api.jetbridge.test/")).await;
    let (other, _) = idp_tokens_for(&w, "alice", Some("https://elsewhere.jetbridge.test/")).await;
    let (opaque, _) = idp_tokens(&w, "alice").await;
    assert_eq!(
        jwt.split('.').count(),
        3,
        "the IdP issued a JWT access token"
    );
    assert_ne!(
        opaque.split('.').count(),
        3,
        "without a resource it is opaque"
    );
    let mut api = Browser::new();
    api.accept = "application/json".into();
    let mut call = async |host: &str, token: &str| {
        w.seen.lock().unwrap().clear();
        let r = api
            .request_with(
                "GET",
                &w.url(host, "/x"),
                &[("authorization", &format!("Bearer {token}"))],
            )
            .await;
        let seen = w.seen.lock().unwrap().first().cloned();
        (r.status, seen)
    };
    let (status, seen) = call("aud", &jwt).await;
    assert_eq!(status, StatusCode::OK);
    let seen = seen.unwrap();
    assert_eq!(seen["x-pomerium-claim-email"], "alice@example.com");
    assert!(
        !seen.contains_key("authorization"),
        "the token went upstream"
    );
    // Accepted once, the same token still fails a route with other audiences.
    let (status, seen) = call("aud2", &jwt).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(seen.is_none());
    let mut forged = jwt.clone().into_bytes();
    let n = forged.len() - 3;
    forged[n] = if forged[n] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    let parts: Vec<&str> = jwt.split('.').collect();
    let unsigned = format!("eyJhbGciOiJub25lIn0.{}.", parts[1]);
    for (token, what) in [
        (other.as_str(), "a JWT for another audience"),
        (opaque.as_str(), "an opaque access token"),
        (id.as_str(), "the ID token (its audience is the client)"),
        (forged.as_str(), "a changed signature"),
        (unsigned.as_str(), "the claims unsigned (alg none)"),
        (parts[1], "the payload alone"),
    ] {
        let (status, seen) = call("aud", token).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
        assert!(seen.is_none(), "{what} reached the upstream");
    }
}

/// Pomerium's per-route `idp_client_id` / `idp_client_secret`: a route with
/// its own OAuth client at the IdP signs its users in through that client
/// (the IdP sees `client_id=second`), and a session counts only on routes of
/// the client it came from: one minted for the global client is not a
/// session on the route, and one from the route's client is not a session on
/// a route of the global client. A sign-in link naming an unknown client is
/// refused.
#[tokio::test(flavor = "multi_thread")]
async fn a_route_with_its_own_idp_client_signs_in_through_it_and_counts_only_its_sessions() {
    let w = world().await;
    let mut b = Browser::new();
    let start = w.url("own", "/mine?x=1");
    let r = b.get(&start).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let sign_in = r.location().unwrap();
    assert!(sign_in.contains("jetbridge_idp="), "{sign_in}");
    let r = b.get(&sign_in).await;
    let authorize = r.location().unwrap();
    let client = url::Url::parse(&authorize)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "client_id")
        .map(|(_, v)| v.into_owned());
    assert_eq!(client.as_deref(), Some("second"), "{authorize}");
    let callback = idp_login(&mut b, &authorize, "alice").await;
    let (url, r) = follow(&mut b, callback, "never", 8).await;
    assert_eq!(url, start);
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        json(&r.body)["headers"]["x-pomerium-claim-email"],
        "alice@example.com"
    );

    // Sessions are the client's: the cookie just set for own.localhost,
    // copied to a route of the global client, is no session there; a session
    // of the global client for own.localhost is none on the route.
    let cookie_secret: [u8; 32] = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD
            .decode("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
            .unwrap()
            .try_into()
            .unwrap()
    };
    let codec = jetbridge::identity::session::SessionCodec::new(&cookie_secret);
    let own_cookie = b.jar["own.localhost"]["_jetbridge"].clone();
    let mut session = codec
        .open(
            "own.localhost",
            &own_cookie,
            jetbridge::proxy::clock::unix_now(),
        )
        .expect("the route's session opens");
    assert!(!session.idp.is_empty());
    let mut api = Browser::new();
    api.accept = "application/json".into();
    let with = |host: &str, value: String| {
        (
            w.url(host, "/"),
            vec![("cookie".to_string(), format!("_jetbridge={value}"))],
        )
    };
    let own_idp = session.idp.clone();
    session.idp = String::new();
    for (host, s, want) in [
        ("own", session.clone(), StatusCode::UNAUTHORIZED),
        ("plain", session.clone(), StatusCode::OK),
        (
            "plain",
            jetbridge::identity::session::Session {
                idp: own_idp.clone(),
                ..session.clone()
            },
            StatusCode::UNAUTHORIZED,
        ),
        (
            "own",
            jetbridge::identity::session::Session {
                idp: own_idp.clone(),
                ..session.clone()
            },
            StatusCode::OK,
        ),
    ] {
        let host_name = format!("{host}.localhost");
        let (url, headers) = with(host, codec.seal(&host_name, &s));
        let headers: Vec<(&str, &str)> = headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let r = api.request_with("GET", &url, &headers).await;
        assert_eq!(r.status, want, "{host} with idp {:?}: {}", s.idp, r.body);
    }

    // A sign-in link naming a client no route has is refused.
    let forged = sign_in.replace(
        &format!("jetbridge_idp={own_idp}"),
        "jetbridge_idp=0000000000000000",
    );
    assert_ne!(forged, sign_in);
    let r = Browser::new().get(&forged).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
}
