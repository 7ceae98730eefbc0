//! `jetbridge demo` end to end: the built-in development IdP, the proxy and
//! the Verify app on loopback; a user picks a demo identity and lands on a
//! page showing the claims the Verify app verified.

use crate::harness;
use harness::login::*;
use http::StatusCode;
use tokio_util::sync::CancellationToken;

/// Starts the demo on loopback with a free port.
async fn start_demo() -> (jetbridge::demo::DemoHandle, CancellationToken) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let shutdown = CancellationToken::new();
    let h = jetbridge::demo::start(
        jetbridge::demo::DemoOptions {
            ip: "127.0.0.1".parse().unwrap(),
            port: 0,
            ..Default::default()
        },
        shutdown.clone(),
    )
    .await
    .unwrap();
    (h, shutdown)
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_login_ends_on_a_page_with_verified_claims() {
    let (h, shutdown) = start_demo().await;
    let banner = jetbridge::demo::banner(&h);
    assert!(banner.contains(&h.verify_url), "{banner}");

    let mut b = Browser::new();
    let start = format!("{}/", h.verify_url);
    let r = b.get(&start).await;
    assert_eq!(r.status, StatusCode::FOUND);
    let (picker_url, page) = follow(&mut b, r.location().unwrap(), "never", 5).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(picker_url.starts_with(&h.issuer), "{picker_url}");
    assert!(
        page.body.contains("alice@example.com"),
        "the picker lists demo users"
    );
    let (url, page) = dev_idp_pick(&mut b, &picker_url, &page.body, "alice", "never").await;
    assert_eq!(url, start);
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Identity verified"), "{}", page.body);
    assert!(page.body.contains("alice@example.com"));
    assert!(!page.body.contains("UNVERIFIED"));
    shutdown.cancel();
}

#[tokio::test]
async fn demo_refuses_a_non_loopback_address() {
    let err = jetbridge::demo::start(
        jetbridge::demo::DemoOptions {
            ip: "0.0.0.0".parse().unwrap(),
            port: 0,
            ..Default::default()
        },
        CancellationToken::new(),
    )
    .await
    .err()
    .expect("refused");
    assert!(err.to_string().contains("loopback"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn demo_in_a_real_browser_shows_verified_claims() {
    let chromium =
        std::env::var("JETBRIDGE_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !std::path::Path::new(&chromium).exists() {
        assert!(
            std::env::var("JETBRIDGE_REQUIRE_REAL_PARTS").is_err(),
            "Chromium missing at {chromium}"
        );
        eprintln!("skipping: no Chromium at {chromium} (./scripts/test installs it)");
        return;
    }
    let (h, shutdown) = start_demo().await;
    let start = format!("{}/", h.verify_url);
    let script = format!("{}/login_browser.mjs", support_dir());
    let out = tokio::process::Command::new("node")
        .args([
            &script,
            "--start-url",
            &start,
            "--login",
            "bob",
            "--map",
            "verify.localhost,authenticate.localhost",
        ])
        .output()
        .await
        .expect("run login_browser.mjs");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{text:?} {}: {e}", String::from_utf8_lossy(&out.stderr)));
    assert_eq!(v["ok"], true, "{v}");
    let body = v["body_text"].as_str().unwrap();
    assert!(body.contains("Identity verified"), "{body}");
    assert!(body.contains("bob@example.com"), "{body}");
    assert!(body.contains("admins"), "{body}");
    shutdown.cancel();
}
