//! The forward-auth endpoints asked directly, as a front proxy asks them:
//! every answer of the contract (200 with a verifiable assertion, 401, the
//! redirect to sign in, 403 with the reason), both ways of naming the URL
//! (`?uri=` and `X-Forwarded-*`), and the class of URLs that must be
//! refused (other hosts, other schemes, scheme-relative, credentials,
//! backslashes, a URL cut by a missing percent-encoding).

use crate::harness::config::*;
use crate::harness::proxy::{Harness, Resp, session, session_cookie};
use jetbridge::verify::{Verifier, VerifierConfig};

pub const FWD: &str = "fwdauth.localhost";
pub const APP: &str = "app.localhost";

pub fn enc(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

/// A proxy with a forward-auth host and the routes of `app.localhost`:
/// `/public` open to anyone, the rest for alice only, the email claim as a
/// header.
pub async fn world() -> Harness {
    let yaml = ConfigFile {
        forward_auth_url: Some(format!("https://{FWD}")),
        jwt_claims_headers: claim_list(&["email"]),
        ..config([
            RouteConfig {
                prefix: Some("/public".into()),
                ..public_route(APP, "http://127.0.0.1:9")
            },
            RouteConfig {
                policy: ppl("allow: {or: [{email: {is: alice@example.com}}]}"),
                ..route(APP, "http://127.0.0.1:9")
            },
        ])
    };
    Harness::start(&yaml).await
}

pub fn cookie(email: &str) -> String {
    session_cookie(APP, &session(email, &["users"]))
}

/// The email of the assertion `r` carries for the app's host, verified
/// against the JWKS jetbridge serves.
pub async fn verified_email(h: &Harness, r: &Resp) -> String {
    let token = r.header("x-pomerium-jwt-assertion").expect("assertion");
    let jwks = format!("http://{}/.well-known/pomerium/jwks.json", h.internal);
    let v = Verifier::new(
        VerifierConfig::new(jwks.parse().unwrap())
            .issuer(APP)
            .audience(APP),
    )
    .unwrap();
    v.verify(token).await.expect("assertion verifies").email
}

async fn check(h: &Harness, path_and_query: &str, headers: &[(&str, &str)]) -> Resp {
    h.get_with(FWD, path_and_query, headers).await
}

#[tokio::test]
async fn an_allowed_check_answers_200_with_an_assertion_the_app_can_verify() {
    let h = world().await;
    let alice = cookie("alice@example.com");
    let uri = enc(&format!("https://{APP}:8443/reports?q=1"));
    for path in [format!("/verify?uri={uri}"), format!("/?uri={uri}")] {
        let r = check(&h, &path, &[("cookie", &alice)]).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        assert_eq!(
            r.header("x-pomerium-claim-email"),
            Some("alice@example.com")
        );
        assert_eq!(r.header("cache-control"), Some("no-store"));
        assert_eq!(verified_email(&h, &r).await, "alice@example.com");
    }
    // The JWKS is served on the forward-auth host too.
    let r = h.get(FWD, "/.well-known/pomerium/jwks.json").await;
    assert_eq!(r.status, 200);
    assert!(r.json()["keys"].as_array().is_some_and(|k| !k.is_empty()));
}

#[tokio::test]
async fn the_url_may_come_as_x_forwarded_headers_with_the_method() {
    let h = world().await;
    let alice = cookie("alice@example.com");
    let fwd = |uri| {
        [
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "app.localhost:8443"),
            ("x-forwarded-uri", uri),
            ("x-forwarded-method", "POST"),
        ]
    };
    let mut headers = fwd("/reports?a=1&b=2").to_vec();
    headers.push(("cookie", &alice));
    let r = check(&h, "/", &headers).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("x-pomerium-jwt-assertion").is_some());

    for bad in ["//evil.example/", "evil", "@evil.example/"] {
        let mut headers = fwd(bad).to_vec();
        headers.push(("cookie", &alice));
        let r = check(&h, "/", &headers).await;
        assert_eq!(r.status, 403, "X-Forwarded-Uri {bad}: {}", r.text());
        assert!(r.header("x-pomerium-jwt-assertion").is_none());
    }
    let r = check(
        &h,
        "/",
        &[
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "evil.example"),
            ("x-forwarded-uri", "/"),
            ("cookie", &alice),
        ],
    )
    .await;
    assert_eq!(r.status, 403);
    assert!(
        r.text().contains("no route serves evil.example"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn without_a_session_verify_answers_401_and_the_root_redirects_to_sign_in_on_the_apps_host() {
    let h = world().await;
    let target = format!("https://{APP}:8443/reports?q=1");
    let sign_in = format!(
        "https://{APP}:8443/.pomerium/forward_auth/sign_in?uri={}",
        enc(&target)
    );
    let r = check(&h, &format!("/verify?uri={}", enc(&target)), &[]).await;
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(r.header("location"), Some(sign_in.as_str()));
    assert!(r.header("x-pomerium-jwt-assertion").is_none());

    let html = [("accept", "text/html")];
    let r = check(&h, &format!("/?uri={}", enc(&target)), &html).await;
    assert_eq!(r.status, 302, "{}", r.text());
    assert_eq!(r.header("location"), Some(sign_in.as_str()));

    // An API client is told 401, not redirected.
    let r = check(
        &h,
        &format!("/?uri={}", enc(&target)),
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(r.status, 401);

    // A session sealed for another host does not count here.
    let other = session_cookie("other.localhost", &session("alice@example.com", &[]));
    let r = check(
        &h,
        &format!("/verify?uri={}", enc(&target)),
        &[("cookie", &other)],
    )
    .await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn a_denied_user_gets_403_with_the_reason_and_a_public_path_200_without_identity() {
    let h = world().await;
    let bob = cookie("bob@example.com");
    let r = check(
        &h,
        &format!("/verify?uri={}", enc(&format!("https://{APP}/reports"))),
        &[("cookie", &bob), ("accept", "application/json")],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    let reason = r.json()["reason"].as_str().unwrap().to_string();
    assert!(reason.contains("access denied"), "{reason}");
    assert!(reason.contains("bob@example.com"), "{reason}");
    assert!(r.header("x-pomerium-jwt-assertion").is_none());

    let r = check(
        &h,
        &format!("/verify?uri={}", enc(&format!("https://{APP}/public/x"))),
        &[],
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("x-pomerium-jwt-assertion").is_none());
}

#[tokio::test]
async fn urls_no_route_serves_or_that_could_mislead_are_refused_with_the_reason() {
    let h = world().await;
    let alice = cookie("alice@example.com");
    let cases = [
        ("https://evil.example/", "no route serves evil.example"),
        ("javascript:alert(1)", "not https"),
        ("//evil.example/", "not an absolute URL"),
        ("/reports", "not an absolute URL"),
        ("", "not an absolute URL"),
        ("http://app.localhost/reports", "not https"),
        ("https://alice:pw@app.localhost/", "credentials"),
        ("https://app.localhost\\@evil.example/", "backslashes"),
        ("https://app.localhost/a\r\nx:y", "control characters"),
        ("https://[::1]/", "no host name"),
        ("https://127.0.0.1/", "no host name"),
    ];
    for (uri, why) in cases {
        for endpoint in ["/verify", "/"] {
            let r = check(
                &h,
                &format!("{endpoint}?uri={}", enc(uri)),
                &[("cookie", &alice), ("accept", "application/json")],
            )
            .await;
            assert_eq!(r.status, 403, "{endpoint} uri {uri:?}: {}", r.text());
            let reason = r.json()["reason"].as_str().unwrap().to_string();
            assert!(reason.contains(why), "{uri:?}: {reason}");
            assert!(r.header("location").is_none(), "{uri:?}");
            assert!(r.header("x-pomerium-jwt-assertion").is_none(), "{uri:?}");
        }
    }
    // Not percent-encoded: cut at `&`, so refused rather than checked as
    // another path than the one served.
    let r = check(
        &h,
        "/verify?uri=https://app.localhost/public&x=/reports",
        &[("accept", "application/json")],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("only query parameter"), "{}", r.text());
    // Paths of the host other than the two checks are not endpoints.
    let r = check(&h, "/other?uri=https://app.localhost/", &[]).await;
    assert_eq!(r.status, 403);
    // No URL at all.
    let r = check(&h, "/verify", &[("accept", "application/json")]).await;
    assert_eq!(r.status, 403);
    assert!(r.text().contains("no URL to check"), "{}", r.text());
}

#[tokio::test]
async fn the_sign_in_start_on_the_apps_host_only_sends_back_to_that_host() {
    let h = world().await;
    let path = "/.pomerium/forward_auth/sign_in";
    for uri in [
        "https://evil.example/",
        "https://other.localhost/",
        "javascript:alert(1)",
        "//evil.example/",
    ] {
        let r = h.get(APP, &format!("{path}?uri={}", enc(uri))).await;
        assert_eq!(r.status, 400, "{uri}: {}", r.text());
        assert!(r.header("location").is_none(), "{uri}");
    }
    // Signed in already: straight back to the page.
    let alice = cookie("alice@example.com");
    let back = format!("https://{APP}:8443/reports");
    let r = h
        .get_with(
            APP,
            &format!("{path}?uri={}", enc(&back)),
            &[("cookie", &alice)],
        )
        .await;
    assert_eq!(r.status, 302, "{}", r.text());
    assert_eq!(r.header("location"), Some(back.as_str()));
}

#[tokio::test]
async fn forward_auth_url_must_be_https_on_a_host_of_its_own() {
    for (url, why) in [
        ("http://fwdauth.localhost", "must be https"),
        ("https://app.localhost", "host of its own"),
    ] {
        let yaml = ConfigFile {
            forward_auth_url: Some(url.into()),
            ..config([public_route(APP, "http://127.0.0.1:9")])
        };
        let cfg = ConfigFile::parse("test.yaml", &yaml.text()).unwrap();
        let err = jetbridge::source::file::inputs_from_config(
            &cfg,
            &mut Default::default(),
            &mut Vec::new(),
        )
        .err()
        .unwrap_or_else(|| panic!("{url} accepted"));
        assert!(err.to_string().contains(why), "{url}: {err}");
    }
}
