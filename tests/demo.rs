//! `jetbridge demo` end to end: the built-in development IdP, the proxy and
//! the Verify app on loopback; a user picks a demo identity and lands on a
//! page showing the claims the Verify app verified.

mod e2e_common;
use e2e_common::*;
use http::StatusCode;
use tokio_util::sync::CancellationToken;

fn txn_of(html: &str) -> String {
    let i = html.find("name=\"txn\" value=\"").expect("txn field") + "name=\"txn\" value=\"".len();
    html[i..].split('"').next().unwrap().to_string()
}

fn action_of(html: &str) -> String {
    let i = html.find("<form method=\"post\" action=\"").expect("form")
        + "<form method=\"post\" action=\"".len();
    html[i..].split('"').next().unwrap().replace("&amp;", "&")
}

/// Starts the demo on loopback with a free port.
async fn start_demo() -> (jetbridge::demo::DemoHandle, CancellationToken) {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let shutdown = CancellationToken::new();
    let h = jetbridge::demo::start(
        jetbridge::demo::DemoOptions {
            ip: "127.0.0.1".parse().unwrap(),
            port: 0,
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
    let form = format!("txn={}&user=alice", urlencode(&txn_of(&page.body)));
    let action = resolve(&picker_url, &action_of(&page.body));
    let r = b.request("POST", &action, Some(&form)).await;
    assert!(r.status.is_redirection(), "{} {}", r.status, r.body);
    let (url, page) = follow(&mut b, resolve(&action, &r.location().unwrap()), "never", 6).await;
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
