//! A wrong or unreachable identity provider is noticed at start, not at
//! the first sign-in: the real binary logs an error naming the URL, the
//! `jetbridge_idp_discovery_ok` metric says 0 and the internal listener's
//! `/healthz/idp` says which provider fails; public routes keep serving and
//! readiness holds, while sign-in answers 503 naming the provider. Once the
//! real provider answers on that URL, the metric turns 1 without a restart.
//! A plain-`http` issuer that is not loopback is warned about at load.

use crate::harness;
use harness::config::*;
use harness::login::*;
use http::StatusCode;
use std::process::Command;

/// The binary's listeners on `https` and `internal`, the fixed test
/// secrets, OIDC client `app` at `issuer` (no `idp_provider`, no scopes),
/// and `routes`.
fn config(
    https: u16,
    internal: u16,
    issuer: &str,
    routes: impl IntoIterator<Item = RouteConfig>,
) -> ConfigFile {
    ConfigFile {
        address: Some(format!("127.0.0.1:{https}")),
        internal_address: Some(format!("127.0.0.1:{internal}")),
        idp_provider: None,
        idp_scopes: None,
        ..sign_in_config(https, issuer, "app", "secret", routes)
    }
}

/// The value of the `jetbridge_idp_discovery_ok` series for `issuer`.
async fn discovery_ok(s: &JetbridgeProcess, issuer: &str) -> Option<String> {
    let body = s.get("/metrics").await.body;
    let series = format!("jetbridge_idp_discovery_ok{{idp=\"default\",issuer=\"{issuer}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map(|v| v.trim().to_string())
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_provider_is_reported_at_start_and_its_recovery_without_restart() {
    let (up, _) = echo_upstream().await;
    let (https, internal, idp_port) = (free_port(), free_port(), free_port());
    let issuer = format!("http://127.0.0.1:{idp_port}");
    let to = format!("http://{up}");
    let config = config(
        https,
        internal,
        &issuer,
        [
            public_route("public.localhost", &to),
            signed_in_route("private.localhost", &to),
        ],
    );
    let s = JetbridgeProcess::start(&config, internal).await;

    // Within seconds of start: a log line naming the URL, the metric at 0,
    // the internal listener naming the failing provider.
    s.wait_for("an error line naming the provider URL", 20, || {
        let log = s.log();
        let issuer = issuer.clone();
        async move {
            log.iter()
                .any(|l| l.contains("ERROR") && l.contains(&issuer) && l.contains("discovery"))
        }
    })
    .await;
    s.wait_for("the metric at 0", 20, || async {
        discovery_ok(&s, &issuer).await.as_deref() == Some("0")
    })
    .await;
    let r = s.get("/healthz/idp").await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    let v: serde_json::Value = serde_json::from_str(&r.body).unwrap();
    assert_eq!(v["ok"], false);
    assert_eq!(v["idps"][0]["idp"], "default");
    assert_eq!(v["idps"][0]["issuer"], issuer.as_str());
    assert_eq!(v["idps"][0]["ok"], false);
    assert!(
        v["idps"][0]["error"]
            .as_str()
            .is_some_and(|e| !e.is_empty())
    );

    // Ready, and public routes serve; sign-in is a 503 naming the provider.
    assert_eq!(s.get("/readyz").await.status, StatusCode::OK);
    let mut b = Browser::new();
    let r = b.get(&format!("https://public.localhost:{https}/")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let (_, r) = follow(
        &mut b,
        format!("https://private.localhost:{https}/"),
        "http://",
        5,
    )
    .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.body);
    assert!(r.body.contains(&issuer), "{}", r.body);

    // The real provider comes up on that URL: noticed without a restart.
    let callback = format!("https://authenticate.localhost:{https}/oauth2/callback");
    let port_arg = idp_port.to_string();
    let (started, _idp) = start_idp_with("app", "secret", &[callback], &[], &["--port", &port_arg]);
    assert_eq!(started, issuer);
    s.wait_for("the metric at 1", 60, || async {
        discovery_ok(&s, &issuer).await.as_deref() == Some("1")
    })
    .await;
    let r = s.get("/healthz/idp").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(
        s.log()
            .iter()
            .any(|l| l.contains(&issuer) && l.contains("succeeded")),
        "{:#?}",
        s.log()
    );
    // And sign-in now reaches the provider.
    let (url, _) = follow(
        &mut b,
        format!("https://private.localhost:{https}/"),
        "http://",
        5,
    )
    .await;
    assert!(url.starts_with(&issuer), "{url}");
}

/// The same check follows a configuration change: a reload that points at
/// an unreachable provider is reported without a restart.
#[tokio::test(flavor = "multi_thread")]
async fn a_reload_to_a_wrong_provider_is_reported() {
    let (https, internal) = (free_port(), free_port());
    let callback = format!("https://authenticate.localhost:{https}/oauth2/callback");
    let (good, _idp) = start_idp("app", "secret", &[callback], &[]);
    let bad = format!("http://{}", refused_addr());
    let config_for = |issuer: &str| {
        config(
            https,
            internal,
            issuer,
            [signed_in_route("private.localhost", "http://127.0.0.1:1")],
        )
        .text()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config_for(&good)).unwrap();
    let s = JetbridgeProcess::start_file(&path, internal).await;
    s.wait_for("the good provider discovered", 30, || async {
        discovery_ok(&s, &good).await.as_deref() == Some("1")
    })
    .await;
    std::fs::write(&path, config_for(&bad)).unwrap();
    s.wait_for("the wrong provider reported", 30, || async {
        discovery_ok(&s, &bad).await.as_deref() == Some("0")
            && discovery_ok(&s, &good).await.is_none()
    })
    .await;
    assert!(
        s.log()
            .iter()
            .any(|l| l.contains("ERROR") && l.contains(&bad)),
        "{:#?}",
        s.log()
    );
}

/// A plain-`http` issuer on a host that is not loopback is warned about at
/// load, naming the key and the URL; a loopback one is not.
#[tokio::test(flavor = "multi_thread")]
async fn a_plain_http_issuer_off_loopback_is_warned_about_at_load() {
    for (issuer, warned) in [
        ("http://idp.example.invalid", true),
        ("http://10.0.0.1:5556/dex", true),
        ("http://127.0.0.1:5556", false),
        ("http://localhost:5556", false),
        ("http://[::1]:5556", false),
        ("https://idp.example.invalid", false),
    ] {
        let (https, internal) = (free_port(), free_port());
        let config = ConfigFile {
            authenticate_service_url: Some("https://authenticate.localhost".into()),
            ..config(
                https,
                internal,
                issuer,
                [signed_in_route("private.localhost", "http://127.0.0.1:1")],
            )
        };
        // Warnings are logged before the listeners start.
        let s = JetbridgeProcess::start(&config, internal).await;
        let has_warning = |log: &[String]| {
            log.iter().any(|l| {
                l.contains("WARN") && l.contains("idp_provider_url") && l.contains("plain http")
            })
        };
        assert_eq!(has_warning(&s.log()), warned, "{issuer}: {:#?}", s.log());
        if warned {
            assert!(s.log().iter().any(|l| l.contains(issuer)), "{:#?}", s.log());
        }
    }
}

/// `jetbridge controller` reads the same config file: its plain-`http`
/// issuer is warned about at start too (here against an API server that
/// does not answer; the warning comes before any cluster read).
#[tokio::test(flavor = "multi_thread")]
async fn the_controller_warns_about_a_plain_http_issuer_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = unreachable_kubeconfig(dir.path());
    let config = dir.path().join("config.yaml");
    std::fs::write(
        &config,
        "authenticate_service_url: https://authenticate.example.com\n\
         idp_provider_url: http://dex.example.com:5556/dex\nidp_client_id: app\nidp_client_secret: s\n",
    )
    .unwrap();
    let (https, internal) = (free_port(), free_port());
    let s = JetbridgeProcess::spawn(
        Command::new(env!("CARGO_BIN_EXE_jetbridge"))
            .args(["controller", "--kubeconfig", kubeconfig.to_str().unwrap()])
            .args(["--config", config.to_str().unwrap()])
            .args(["--address", &format!("127.0.0.1:{https}")])
            .args(["--internal-address", &format!("127.0.0.1:{internal}")]),
        internal,
    );
    s.wait_for("a warning naming the plain-http issuer", 20, || {
        let log = s.log();
        async move {
            log.iter().any(|l| {
                l.contains("WARN")
                    && l.contains("http://dex.example.com:5556/dex")
                    && l.contains("plain http")
            })
        }
    })
    .await;
}
