//! The Gateway API `ExternalAuth` filter's HTTP form, as a Gateway sends it
//! to jetbridge as its auth Service with `http.path: /.pomerium/external_auth`:
//! the original method, `Host` and path (behind the prefix), the allowed
//! request headers (here `Cookie`), no body. 200 with the assertion the app
//! verifies, a redirect to sign in that the Gateway passes to the browser,
//! 403 with the reason; only in forward-auth mode.

use super::checks::{APP, cookie, enc, verified_email, world};
use crate::harness::config::*;
use crate::harness::proxy::{Harness, Resp, request, send_h1};

const PREFIX: &str = "/.pomerium/external_auth";

/// A check as the filter sends it: `method` on `APP`, the prefix before the path.
async fn ask(h: &Harness, method: &str, path: &str, headers: &[(&str, &str)]) -> Resp {
    let req = request(method, APP, &format!("{PREFIX}{path}"), headers);
    send_h1(h.https, APP, req).await
}

#[tokio::test]
async fn an_allowed_check_answers_200_with_an_assertion_for_the_original_host() {
    let h = world().await;
    let alice = cookie("alice@example.com");
    for (method, path) in [
        ("GET", "/reports?q=1"),
        ("POST", "/reports"),
        ("DELETE", ""),
    ] {
        let r = ask(&h, method, path, &[("cookie", &alice)]).await;
        assert_eq!(r.status, 200, "{method} {path}: {}", r.text());
        assert_eq!(
            r.header("x-pomerium-claim-email"),
            Some("alice@example.com")
        );
        assert_eq!(verified_email(&h, &r).await, "alice@example.com");
    }
    // A public path of the route: 200 without identity.
    let r = ask(&h, "GET", "/public/x", &[]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.header("x-pomerium-jwt-assertion").is_none());
}

#[tokio::test]
async fn without_a_session_the_browser_is_sent_to_sign_in_and_a_denied_user_gets_403() {
    let h = world().await;
    let r = ask(&h, "GET", "/reports?q=1", &[("accept", "text/html")]).await;
    assert_eq!(r.status, 302, "{}", r.text());
    let want = format!(
        "https://{APP}/.pomerium/forward_auth/sign_in?uri={}",
        enc(&format!("https://{APP}/reports?q=1"))
    );
    assert_eq!(r.header("location"), Some(want.as_str()));
    assert!(r.header("x-pomerium-jwt-assertion").is_none());
    let r = ask(&h, "GET", "/reports", &[("accept", "application/json")]).await;
    assert_eq!(r.status, 401);

    let bob = cookie("bob@example.com");
    let r = ask(
        &h,
        "GET",
        "/reports",
        &[("cookie", &bob), ("accept", "application/json")],
    )
    .await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(r.text().contains("access denied"), "{}", r.text());
    assert!(r.header("x-pomerium-jwt-assertion").is_none());
    // Only the prefix itself and paths below it are checks.
    let r = h
        .get_with(
            APP,
            "/.pomerium/external_authx",
            &[("cookie", &cookie("alice@example.com"))],
        )
        .await;
    assert!(r.header("x-pomerium-jwt-assertion").is_none());
}

#[tokio::test]
async fn without_forward_auth_mode_the_prefix_is_no_check() {
    let yaml = config([RouteConfig {
        policy: ppl("allow: {or: [{email: {is: alice@example.com}}]}"),
        ..route(APP, "http://127.0.0.1:9")
    }]);
    let h = Harness::start(&yaml).await;
    let r = ask(
        &h,
        "GET",
        "/reports",
        &[("cookie", &cookie("alice@example.com"))],
    )
    .await;
    assert_ne!(r.status, 200, "{}", r.text());
    assert!(r.header("x-pomerium-jwt-assertion").is_none());
}
