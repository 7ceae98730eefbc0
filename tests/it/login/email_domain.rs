//! Login tier: `domain` and `email` criteria through a real sign-in at npm
//! `oidc-provider` (`tests/tools/idp.mjs`, whose accounts carry the login
//! name as their email when it contains `@`). Only a single `local@domain`
//! address whose identity provider does not call it unverified can pass a
//! `domain` check; every other shape gets 403 after signing in.

use crate::harness;
use harness::config::{RouteConfig, ppl, route};
use harness::login::*;
use http::StatusCode;

struct World {
    _proxy: RunningProxy,
    _idp: ChildGuard,
    port: u16,
}

impl World {
    fn url(&self, host: &str, path: &str) -> String {
        format!("https://{host}.localhost:{}{path}", self.port)
    }
}

/// A proxy with `corp.localhost` (`domain: {is: example.com}`),
/// `idn.localhost` (`domain: {is: xn--bcher-kva.example}`) and
/// `mixed.localhost` (any signed-in user, except at `evil.com`), signing in
/// at a real IdP.
async fn world() -> World {
    let https = bind_https().await;
    let port = https.local_addr().unwrap().port();
    let callback = format!("https://authenticate.localhost:{port}/oauth2/callback");
    let (issuer, idp) = start_idp("jetbridge", "jetbridge-secret", &[callback], &[]);
    let (up, _seen) = echo_upstream().await;
    let to = format!("http://{up}");
    let yaml = sign_in_config(
        port,
        &issuer,
        "jetbridge",
        "jetbridge-secret",
        [
            RouteConfig {
                pass_identity_headers: Some(true),
                policy: ppl("allow: {or: [{domain: {is: example.com}}]}"),
                ..route("corp.localhost", &to)
            },
            RouteConfig {
                policy: ppl("allow: {or: [{domain: {is: xn--bcher-kva.example}}]}"),
                ..route("idn.localhost", &to)
            },
            RouteConfig {
                policy: ppl(
                    "[{allow: {or: [{authenticated_user: true}]}}, {deny: {or: [{domain: {is: evil.com}}]}}]",
                ),
                ..route("mixed.localhost", &to)
            },
        ],
    );
    let proxy = start_proxy(https, &yaml).await;
    World {
        _proxy: proxy,
        _idp: idp,
        port,
    }
}

/// Signs `login` in at the IdP starting from `start` (a fresh browser) and
/// returns the response of `start` once back, with the signed-in session.
async fn sign_in(w: &World, start: &str, login: &str) -> Reply {
    let mut b = Browser::new();
    let r = b.get(start).await;
    assert_eq!(r.status, StatusCode::FOUND, "{login}: {}", r.body);
    let (authorize, _) = follow(&mut b, r.location().unwrap(), "http://127.0.0.1", 5).await;
    let callback = idp_login(&mut b, &authorize, login).await;
    assert!(
        callback.starts_with(&w.url("authenticate", "/oauth2/callback")),
        "{login}: {callback}"
    );
    let (url, r) = follow(&mut b, callback, "never", 5).await;
    assert_eq!(url, start, "{login}: lands back where it started");
    r
}

#[tokio::test(flavor = "multi_thread")]
async fn only_a_single_verified_local_at_domain_address_passes_a_domain_check() {
    let w = world().await;
    let corp = w.url("corp", "/");
    // (login name = the account's email when it has an `@`, expected status)
    let cases: &[(&str, StatusCode)] = &[
        ("alice", StatusCode::OK), // alice@example.com
        ("Bob@EXAMPLE.COM", StatusCode::OK),
        ("x@evil.com@example.com", StatusCode::FORBIDDEN),
        ("x@example.com@evil.com", StatusCode::FORBIDDEN),
        ("\"a@b\"@example.com", StatusCode::FORBIDDEN),
        ("trailing@example.com.", StatusCode::FORBIDDEN),
        ("space @example.com", StatusCode::FORBIDDEN),
        ("empty@", StatusCode::FORBIDDEN),
        ("@example.com", StatusCode::FORBIDDEN),
        ("idn@exаmple.com", StatusCode::FORBIDDEN), // Cyrillic "а"
        ("unverified.dave", StatusCode::FORBIDDEN), // email_verified: false
    ];
    for (login, want) in cases {
        let r = sign_in(&w, &corp, login).await;
        assert_eq!(r.status, *want, "{login}: {}", r.body);
        if *want == StatusCode::OK {
            let echoed: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            assert!(
                echoed["headers"]["x-pomerium-jwt-assertion"].is_string(),
                "{login}"
            );
        }
    }
    // An internationalised domain is the same name as its punycode.
    let idn = w.url("idn", "/");
    for (login, want) in [
        ("max@bücher.example", StatusCode::OK),
        ("max@XN--BCHER-KVA.example", StatusCode::OK),
        ("max@bucher.example", StatusCode::FORBIDDEN),
    ] {
        let r = sign_in(&w, &idn, login).await;
        assert_eq!(r.status, want, "{login}: {}", r.body);
    }
    // A deny on the domain cannot be slipped past either: an address whose
    // last part dodges `evil.com` is refused, not let in as "not evil.com".
    let mixed = w.url("mixed", "/");
    for (login, want) in [
        ("carol", StatusCode::OK),
        ("mallory@evil.com", StatusCode::FORBIDDEN),
        ("mallory@evil.com@example.com", StatusCode::FORBIDDEN),
    ] {
        let r = sign_in(&w, &mixed, login).await;
        assert_eq!(r.status, want, "{login}: {}", r.body);
    }
}
