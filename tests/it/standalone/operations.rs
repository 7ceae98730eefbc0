//! What an operator meets running the real `jetbridge standalone` binary:
//! config files rewritten in place, truncated, emptied or swapped the way
//! Kubernetes swaps mounted ConfigMaps; error messages next to secrets; log
//! lines read by a machine; discovery documents on odd ports; sign-out.

use crate::harness;
use harness::config::{ConfigFile, ConfigText as _, RouteConfig, public_route, signed_in_route};
use harness::login::*;
use http::StatusCode;
use jetbridge::identity::secrets::Bootstrap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A running `jetbridge standalone` whose stdout and stderr lines are kept.
pub(crate) struct Standalone {
    _child: ChildGuard,
    lines: Arc<Mutex<Vec<String>>>,
    pub(super) https: u16,
    internal: u16,
}

impl Standalone {
    /// Starts the binary on `config` (which must use `self.https` and
    /// `self.internal` as written by [`listeners`]) and waits until ready.
    pub(crate) async fn start(
        config: &Path,
        https: u16,
        internal: u16,
        extra: &[&str],
    ) -> Standalone {
        Self::start_with(config, https, internal, extra, &[]).await
    }

    /// As [`Standalone::start`], with `after` given to the `standalone`
    /// subcommand itself.
    async fn start_with(
        config: &Path,
        https: u16,
        internal: u16,
        extra: &[&str],
        after: &[&str],
    ) -> Standalone {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
            .args(extra)
            .args(["standalone", "--config", config.to_str().unwrap()])
            .args(after)
            .env_remove("JETBRIDGE_LOG")
            .env_remove("JETBRIDGE_LOG_FORMAT")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = capture_lines(&mut child);
        let s = Standalone {
            _child: ChildGuard(child),
            lines,
            https,
            internal,
        };
        let mut b = Browser::new();
        for _ in 0..150 {
            let up = tokio::net::TcpStream::connect(("127.0.0.1", https))
                .await
                .is_ok()
                && tokio::net::TcpStream::connect(("127.0.0.1", internal))
                    .await
                    .is_ok();
            if up
                && b.get(&format!("http://127.0.0.1:{internal}/readyz"))
                    .await
                    .status
                    == StatusCode::OK
            {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("standalone did not become ready: {:?}", s.log());
    }

    pub(crate) fn log(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    pub(crate) async fn metric(&self, name: &str) -> f64 {
        let body = Browser::new()
            .get(&format!("http://127.0.0.1:{}/metrics", self.internal))
            .await
            .body;
        body.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no metric {name} in {body}"))
            .trim()
            .parse()
            .unwrap()
    }

    /// Waits until `metric` reaches at least `value` (or panics after 10 s).
    pub(super) async fn wait_metric(&self, name: &str, value: f64) {
        for _ in 0..100 {
            if self.metric(name).await >= value {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!(
            "{name} never reached {value} (now {}); log: {:#?}",
            self.metric(name).await,
            self.log()
        );
    }

    async fn status(&self, b: &mut Browser, host: &str, path: &str) -> StatusCode {
        b.get(&format!("https://{host}:{}{path}", self.https))
            .await
            .status
    }
}

/// The binary's listeners on `https` and `internal`, and nothing else.
fn listeners(https: u16, internal: u16) -> ConfigFile {
    ConfigFile {
        address: Some(format!("127.0.0.1:{https}")),
        internal_address: Some(format!("127.0.0.1:{internal}")),
        ..Default::default()
    }
}

/// [`listeners`] with fresh secrets (`signing_key`, `cookie_secret`,
/// `shared_secret`) as `jetbridge gen-secrets` writes them.
pub(super) fn listeners_and_secrets(https: u16, internal: u16, secrets: &Bootstrap) -> ConfigFile {
    with_secrets(listeners(https, internal), secrets)
}

/// `config` with the secrets of `secrets` as `jetbridge gen-secrets`
/// writes them (`signing_key`, `cookie_secret`, `shared_secret`).
fn with_secrets(config: ConfigFile, secrets: &Bootstrap) -> ConfigFile {
    let secrets = ConfigFile::parse("secrets", &secrets.to_config_yaml()).unwrap();
    ConfigFile {
        signing_key: secrets.signing_key,
        cookie_secret: secrets.cookie_secret,
        shared_secret: secrets.shared_secret,
        ..config
    }
}

/// Writes the config `make` builds on [`listeners`] on free ports to a new
/// file and starts the binary on it (with the flags `extra`); returns it,
/// the file's path and the folder holding it.
async fn start_on_new_file(
    make: impl FnOnce(ConfigFile) -> ConfigFile,
    extra: &[&str],
) -> (Standalone, PathBuf, tempfile::TempDir) {
    let (https, internal) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, make(listeners(https, internal)).text()).unwrap();
    let s = Standalone::start(&path, https, internal, extra).await;
    (s, path, dir)
}

/// Public routes for `hosts`, each to `to`.
fn public_routes(hosts: &[&str], to: std::net::SocketAddr) -> Vec<RouteConfig> {
    let to = format!("http://{to}");
    hosts.iter().map(|h| public_route(h, &to)).collect()
}

/// Writes `text` over `path` the way editors and `>` do: truncate, then write.
pub(super) fn rewrite_in_place(path: &Path, text: &str) {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn jwks_kids(body: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["kid"].as_str().unwrap().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn truncated_empty_or_secretless_rewrites_keep_the_last_good_config() {
    let (up, _) = echo_upstream().await;
    let (https, internal) = (free_port(), free_port());
    let base = listeners_and_secrets(https, internal, &Bootstrap::generate());
    let routes = public_routes(&["a.localhost", "b.localhost"], up);
    let full = ConfigFile {
        routes: routes.clone(),
        ..base.clone()
    };
    let head = base.text();
    let full_text = full.text();
    assert!(full_text.starts_with(&head), "routes are written last");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, &full_text).unwrap();
    let s = Standalone::start(&path, https, internal, &["--log-format", "json"]).await;
    let mut b = Browser::new();
    let jwks_url = format!("http://127.0.0.1:{internal}/.well-known/pomerium/jwks.json");
    let kids = jwks_kids(&b.get(&jwks_url).await.body);
    assert_eq!(s.status(&mut b, "a.localhost", "/").await, StatusCode::OK);

    // Each broken rewrite is held long enough to be read, then checked.
    let broken = [
        ("empty", String::new()),
        ("blank lines", "\n\n  \n".to_string()),
        ("half written", full_text[..full_text.len() / 2].to_string()),
        ("cut in a secret", full_text[..head.len() - 20].to_string()),
        (
            "secrets gone",
            ConfigFile {
                routes,
                ..listeners(https, internal)
            }
            .text(),
        ),
        (
            "signing key gone",
            ConfigFile {
                signing_key: None,
                ..full.clone()
            }
            .text(),
        ),
        ("routes gone", head.clone()),
        ("not yaml", "routes: [\n  {from: \n".to_string()),
    ];
    let mut failures = s.metric("jetbridge_config_reload_failures_total").await;
    for (what, text) in &broken {
        rewrite_in_place(&path, text);
        failures += 1.0;
        s.wait_metric("jetbridge_config_reload_failures_total", failures)
            .await;
        assert_eq!(
            s.metric("jetbridge_config_last_reload_successful").await,
            0.0,
            "{what}"
        );
        assert_eq!(s.metric("jetbridge_routes").await, 2.0, "{what}");
        assert_eq!(s.metric("jetbridge_config_generation").await, 1.0, "{what}");
        for host in ["a.localhost", "b.localhost"] {
            assert_eq!(s.status(&mut b, host, "/").await, StatusCode::OK, "{what}");
        }
        assert_eq!(jwks_kids(&b.get(&jwks_url).await.body), kids, "{what}");
        assert_eq!(
            b.get(&format!("http://127.0.0.1:{internal}/readyz"))
                .await
                .status,
            StatusCode::OK
        );
    }
    let log = s.log().join("\n");
    assert!(
        log.contains("no longer sets signing_key"),
        "the refusal says what was lost: {log}"
    );

    // A slow writer: the file is seen empty and then half-written for a
    // moment; only the finished file is ever applied.
    let edited = full_text.replace("b.localhost", "c.localhost");
    {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .truncate(true)
            .open(&path)
            .unwrap();
        let route_c = edited.find("from: https://c.localhost").unwrap();
        let cut = edited[..route_c].rfind('\n').unwrap() + 1;
        f.write_all(&edited.as_bytes()[..cut]).unwrap();
        f.flush().unwrap();
        std::thread::sleep(Duration::from_millis(150));
        f.write_all(&edited.as_bytes()[cut..]).unwrap();
    }
    s.wait_metric("jetbridge_config_generation", 2.0).await;
    assert_eq!(
        s.metric("jetbridge_config_reload_failures_total").await,
        failures,
        "the half-written moment was never read as a config"
    );
    assert_eq!(
        s.metric("jetbridge_config_last_reload_successful").await,
        1.0
    );
    assert_eq!(s.metric("jetbridge_config_generation").await, 2.0);
    assert_eq!(s.status(&mut b, "c.localhost", "/").await, StatusCode::OK);
    assert_eq!(s.status(&mut b, "a.localhost", "/").await, StatusCode::OK);
    assert_eq!(
        s.status(&mut b, "b.localhost", "/").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(jwks_kids(&b.get(&jwks_url).await.body), kids);
}

/// Kubernetes mounts a ConfigMap as `config.yaml -> ..data/config.yaml`
/// with `..data -> ..<timestamp>`, and updates it by swapping `..data`.
#[tokio::test(flavor = "multi_thread")]
async fn a_mounted_configmap_swap_is_applied() {
    let (up, _) = echo_upstream().await;
    let (https, internal) = (free_port(), free_port());
    let base = listeners_and_secrets(https, internal, &Bootstrap::generate());
    let version = |hosts: &[&str]| {
        ConfigFile {
            routes: public_routes(hosts, up),
            ..base.clone()
        }
        .text()
    };
    let dir = tempfile::tempdir().unwrap();
    let mount = dir.path();
    let publish = |n: u32, text: &str| {
        let versioned = mount.join(format!("..2026_11_29_{n:02}"));
        std::fs::create_dir(&versioned).unwrap();
        std::fs::write(versioned.join("config.yaml"), text).unwrap();
        let tmp = mount.join("..data_tmp");
        std::os::unix::fs::symlink(versioned.file_name().unwrap(), &tmp).unwrap();
        std::fs::rename(&tmp, mount.join("..data")).unwrap();
        if n > 1 {
            std::fs::remove_dir_all(mount.join(format!("..2026_11_29_{:02}", n - 1))).unwrap();
        }
    };
    publish(1, &version(&["one.localhost"]));
    let path: PathBuf = mount.join("config.yaml");
    std::os::unix::fs::symlink("..data/config.yaml", &path).unwrap();
    let s = Standalone::start(&path, https, internal, &[]).await;
    let mut b = Browser::new();
    assert_eq!(s.status(&mut b, "one.localhost", "/").await, StatusCode::OK);

    publish(2, &version(&["one.localhost", "two.localhost"]));
    s.wait_metric("jetbridge_config_generation", 2.0).await;
    assert_eq!(s.status(&mut b, "two.localhost", "/").await, StatusCode::OK);
    publish(3, &version(&["three.localhost"]));
    s.wait_metric("jetbridge_config_generation", 3.0).await;
    assert_eq!(
        s.status(&mut b, "three.localhost", "/").await,
        StatusCode::OK
    );
    assert_eq!(
        s.status(&mut b, "one.localhost", "/").await,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        s.metric("jetbridge_config_reload_failures_total").await,
        0.0
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn startup_and_reload_errors_are_located_and_never_print_secrets() {
    let (https, internal) = (free_port(), free_port());
    let base = ConfigFile {
        idp_client_secret: Some("Idp-Client-Secret-9f8e7d6c5b4a".into()),
        ..listeners_and_secrets(https, internal, &Bootstrap::generate())
    };
    let secret_values: Vec<String> = [
        &base.signing_key,
        &base.cookie_secret,
        &base.shared_secret,
        &base.idp_client_secret,
    ]
    .into_iter()
    .flatten()
    .cloned()
    .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let misspelt = format!("{}idp_cliend_id: app\nroutes: []\n", base.text());
    let misspelt_line = base.text().lines().count() + 1;
    std::fs::write(&path, misspelt).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
        .args(["standalone", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("config.yaml"), "{text}");
    assert!(text.contains(&format!("line {misspelt_line}")), "{text}");
    assert!(
        text.contains("unknown key \"idp_cliend_id\" (did you mean \"idp_client_id\"?)"),
        "{text}"
    );
    assert!(!text.contains("error: error"), "{text}");
    for v in &secret_values {
        assert!(!text.contains(&v[..16]), "secret printed: {text}");
    }

    // The same mistakes made in a running process's file: logged, not printed.
    let (up, _) = echo_upstream().await;
    let good = ConfigFile {
        routes: public_routes(&["a.localhost"], up),
        ..base
    }
    .text();
    std::fs::write(&path, &good).unwrap();
    let s = Standalone::start(&path, https, internal, &["--log-format", "text"]).await;
    let mut failures = 0.0;
    for bad in [
        format!("{good}idp_cliend_id: x\n"),
        format!("{good}\tbad: tab\n"),
        good.replace("idp_client_secret: ", "idp_client_secret: ["),
        good.replacen("cookie_secret: ", "cookie_secret: x", 1),
        good.replacen(&secret_values[0], &secret_values[0][..40], 1),
    ] {
        rewrite_in_place(&path, &bad);
        failures += 1.0;
        s.wait_metric("jetbridge_config_reload_failures_total", failures)
            .await;
    }
    let log = s.log().join("\n");
    assert!(
        log.contains("did you mean \\\"idp_client_id\\\"")
            || log.contains("did you mean \"idp_client_id\""),
        "{log}"
    );
    for v in &secret_values {
        assert!(!log.contains(&v[..16]), "secret logged: {log}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn logs_are_machine_readable_with_one_access_line_per_request() {
    let (up, _) = echo_upstream().await;
    let (https, internal) = (free_port(), free_port());
    let base = listeners_and_secrets(https, internal, &Bootstrap::generate());
    // Each version adds a route too, so its reload shows as a new generation.
    let config = |level: &str, extra: &str| {
        let mut routes = public_routes(&["public.localhost", extra], up);
        routes.push(signed_in_route(
            "private.localhost",
            &format!("http://{up}"),
        ));
        ConfigFile {
            log_level: Some(level.into()),
            routes,
            ..base.clone()
        }
        .text()
    };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config("info", "v1.localhost")).unwrap();
    // stdout is a pipe: JSON by default.
    let s = Standalone::start(&path, https, internal, &[]).await;
    let mut b = Browser::new();
    b.accept = "application/json".into();
    let r = b
        .get(&format!(
            "https://public.localhost:{https}/some/path?token=QUERYSECRET123&x=1"
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let cookie = {
        let out = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
            .args([
                "mint-session",
                "--config",
                path.to_str().unwrap(),
                "--host",
                "private.localhost",
                "--sub",
                "user-42",
            ])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    b.jar
        .entry("private.localhost".into())
        .or_default()
        .insert("_jetbridge".into(), cookie.clone());
    let signed_in = b.get(&format!("https://private.localhost:{https}/p")).await;
    assert_eq!(signed_in.status, StatusCode::OK);
    let denied = b.get(&format!("https://unknown.localhost:{https}/x")).await;
    assert_eq!(denied.status, StatusCode::NOT_FOUND);
    let error_id = denied.headers["x-request-id"].to_str().unwrap().to_string();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let lines = s.log();
    assert!(!lines.is_empty());
    let mut access = Vec::new();
    for l in &lines {
        assert!(!l.contains('\u{1b}'), "escape codes off a terminal: {l:?}");
        let v: serde_json::Value =
            serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"));
        assert!(v["timestamp"].is_string() && v["level"].is_string(), "{l}");
        if v["target"] == "jetbridge::access" {
            access.push(v);
        }
    }
    assert_eq!(access.len(), 3, "one access line per request: {lines:#?}");
    let first = &access[0];
    assert_eq!(first["method"], "GET");
    assert_eq!(first["host"], "public.localhost");
    assert_eq!(first["path"], "/some/path");
    assert_eq!(first["status"], 200);
    assert_eq!(first["upstream"], up.to_string());
    assert!(first["duration_ms"].is_number());
    assert_eq!(first["user"], "-");
    assert_eq!(
        first["request_id"],
        r.headers["x-request-id"].to_str().unwrap()
    );
    assert_eq!(access[1]["user"], "user-42");
    assert_eq!(access[2]["status"], 404);
    assert_eq!(access[2]["request_id"], error_id.as_str());
    let all = lines.join("\n");
    assert!(
        !all.contains("QUERYSECRET123"),
        "query values are not logged"
    );
    assert!(!all.contains(&cookie[..20]), "cookies are not logged");

    // log_level applies on reload: at warn, no access lines; back at info, again.
    rewrite_in_place(&path, &config("warn", "v2.localhost"));
    s.wait_metric("jetbridge_config_generation", 2.0).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    let before = s.log().len();
    for _ in 0..3 {
        assert_eq!(
            b.get(&format!("https://public.localhost:{https}/quiet"))
                .await
                .status,
            StatusCode::OK
        );
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let quiet: Vec<String> = s.log()[before..].to_vec();
    assert!(
        quiet.iter().all(|l| !l.contains("jetbridge::access")),
        "{quiet:#?}"
    );
    rewrite_in_place(&path, &config("info", "v3.localhost"));
    s.wait_metric("jetbridge_config_generation", 3.0).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    b.get(&format!("https://public.localhost:{https}/loud"))
        .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        s.log().iter().any(|l| l.contains("\"/loud\"")),
        "{:#?}",
        s.log()
    );

    // At trace, jetbridge's own events are verbose but the libraries' frame
    // and header dumps stay out, and still no cookie or query value.
    rewrite_in_place(&path, &config("trace", "v4.localhost"));
    s.wait_metric("jetbridge_config_generation", 4.0).await;
    let before = s.log().len();
    let r = b
        .get(&format!(
            "https://private.localhost:{https}/t?token=QUERYSECRET123"
        ))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let traced = s.log()[before..].join("\n");
    assert!(traced.contains("jetbridge::access"), "{traced}");
    for library in ["\"h2::", "\"hyper", "\"rustls", "\"tokio"] {
        assert!(!traced.contains(library), "{library} at trace: {traced}");
    }
    assert!(!traced.contains("QUERYSECRET123") && !traced.contains(&cookie[..20]));
}

#[tokio::test(flavor = "multi_thread")]
async fn text_logs_have_no_escape_codes_off_a_terminal() {
    let (up, _) = echo_upstream().await;
    let (s, _path, _dir) = start_on_new_file(
        |listeners| ConfigFile {
            log_format: Some("text".into()),
            routes: public_routes(&["t.localhost"], up),
            ..listeners
        },
        &[],
    )
    .await;
    let mut b = Browser::new();
    assert_eq!(s.status(&mut b, "t.localhost", "/").await, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let lines = s.log();
    assert!(
        lines.iter().any(|l| l.contains("request_id=")),
        "{lines:#?}"
    );
    assert!(lines.iter().all(|l| !l.contains('\u{1b}')), "{lines:#?}");
    assert!(lines.iter().all(|l| !l.starts_with('{')), "{lines:#?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn discovery_urls_work_as_printed_on_every_host_and_port() {
    let (up, _) = echo_upstream().await;
    let (s, _path, _dir) = start_on_new_file(
        |listeners| ConfigFile {
            authenticate_service_url: Some("https://auth.localhost".into()),
            idp_provider_url: Some("https://idp.invalid".into()),
            idp_client_id: Some("c".into()),
            routes: public_routes(&["app.localhost", "*.wild.localhost"], up),
            ..listeners
        },
        &[],
    )
    .await;
    let (https, internal) = (s.https, s.internal);
    let mut b = Browser::new();
    b.accept = "application/json".into();
    let jwks = b
        .get(&format!(
            "http://127.0.0.1:{internal}/.well-known/pomerium/jwks.json"
        ))
        .await
        .body;
    for origin in [
        format!("https://app.localhost:{https}"),
        format!("https://x.wild.localhost:{https}"),
        format!("https://auth.localhost:{https}"),
        format!("http://127.0.0.1:{internal}"),
        format!("http://localhost:{internal}"),
    ] {
        for path in ["/.well-known/pomerium", "/.well-known/pomerium/"] {
            let r = b.get(&format!("{origin}{path}")).await;
            assert_eq!(r.status, StatusCode::OK, "{origin}{path}: {}", r.body);
            let doc: serde_json::Value = serde_json::from_str(&r.body).unwrap();
            assert_eq!(doc["issuer"], format!("{origin}/"), "{origin}");
            let jwks_uri = doc["jwks_uri"].as_str().unwrap();
            assert_eq!(
                jwks_uri,
                format!("{origin}/.well-known/pomerium/jwks.json"),
                "{origin}"
            );
            let fetched = b.get(jwks_uri).await;
            assert_eq!(fetched.status, StatusCode::OK, "{jwks_uri}");
            assert_eq!(fetched.body, jwks, "{jwks_uri}");
            assert_eq!(
                doc["authentication_callback_endpoint"],
                "https://auth.localhost/oauth2/callback"
            );
            if origin.starts_with("https://") {
                let logout = doc["frontchannel_logout_uri"].as_str().unwrap();
                assert_eq!(logout, format!("{origin}/.pomerium/sign_out"));
                let r = b.get(logout).await;
                assert_eq!(r.status, StatusCode::FOUND, "{logout} answers");
            } else {
                assert!(doc.get("frontchannel_logout_uri").is_none(), "{origin}");
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sign_out_revokes_every_copy_of_the_session_cookie() {
    let (up, seen) = echo_upstream().await;
    let to = format!("http://{up}");
    let (s, path, _dir) = start_on_new_file(
        |listeners| ConfigFile {
            routes: vec![
                signed_in_route("app.localhost", &to),
                signed_in_route("other.localhost", &to),
            ],
            ..with_secrets(listeners, &Bootstrap::generate())
        },
        &[],
    )
    .await;
    let https = s.https;
    let mint = |host: &str, sub: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
            .args(["mint-session", "--config", path.to_str().unwrap()])
            .args(["--host", host, "--sub", sub])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let alice = mint("app.localhost", "alice");
    let bob = mint("app.localhost", "bob");
    let with_cookie = |c: &str| json_browser_with_session("app.localhost", c);
    let app = format!("https://app.localhost:{https}/");
    let mut copy = with_cookie(&alice);
    assert_eq!(copy.get(&app).await.status, StatusCode::OK);
    let seen_before = seen.lock().unwrap().len();

    for method in ["POST", "GET"] {
        let mut browser = with_cookie(&alice);
        let r = browser
            .request(
                method,
                &format!("https://app.localhost:{https}/.pomerium/sign_out"),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::FOUND, "{method}");
        assert!(
            r.headers
                .get_all("set-cookie")
                .iter()
                .any(|c| c.to_str().unwrap().starts_with("_jetbridge=;")),
            "{method}: the cookie is cleared"
        );
    }
    // The copy taken before sign-out is now worthless, on every path.
    assert_eq!(copy.get(&app).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        copy.get(&format!("https://app.localhost:{https}/.pomerium/user"))
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(seen.lock().unwrap().len(), seen_before, "never forwarded");
    assert_eq!(s.metric("jetbridge_revoked_sessions").await, 1.0);
    // Another user's session is untouched.
    assert_eq!(with_cookie(&bob).get(&app).await.status, StatusCode::OK);
    assert!(
        s.log().iter().any(|l| l.contains("session revoked")),
        "{:#?}",
        s.log()
    );
}

/// A browser asking for JSON that holds the session cookie `cookie` for `host`.
fn json_browser_with_session(host: &str, cookie: &str) -> Browser {
    let mut b = Browser::new();
    b.accept = "application/json".into();
    b.jar
        .entry(host.into())
        .or_default()
        .insert("_jetbridge".into(), cookie.to_string());
    b
}

/// The line (from 1) of the first line of `text` containing `needle`, and
/// the column (from 1) of `at` in it.
fn line_and_column(text: &str, needle: &str, at: char) -> (usize, usize) {
    let (i, line) = text
        .lines()
        .enumerate()
        .find(|(_, l)| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle} in {text}"));
    (i + 1, line.find(at).unwrap() + 1)
}

/// Runs `jetbridge standalone` on `config` expecting it to refuse to start;
/// returns what it printed.
pub(super) fn refused_start(path: &Path, config: &str) -> String {
    std::fs::write(path, config).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
        .args(["standalone", "--config", path.to_str().unwrap()])
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "started: {text}");
    text
}

/// A policy error names the file, and the line and column of the policy
/// (in `routes` or the legacy `policy` list, flow or block style); an
/// `idp_client_secret` that is set but empty refuses the file, a missing
/// one is a warning; a rejected edit that is then fixed is logged as fixed.
#[tokio::test(flavor = "multi_thread")]
async fn config_errors_say_where_and_a_fixed_file_is_logged_as_accepted_again() {
    let (https, internal) = (free_port(), free_port());
    let (up, _) = echo_upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    // The subject is where in the text a problem is: the files are text.
    let head = listeners(https, internal).text();
    let route_a = format!(
        "  - from: https://a.localhost\n    to: http://{up}\n    allow_public_unauthenticated_access: true\n"
    );

    // At start: routes[1], a flow-style policy.
    let flow = format!(
        "{head}routes:\n{route_a}  - from: https://b.localhost\n    to: http://{up}\n    policy: {{allow: {{or: [{{emial: {{is: a@example.com}}}}]}}}}\n"
    );
    let text = refused_start(&path, &flow);
    let (line, column) = line_and_column(&flow, "emial", '{');
    assert!(text.contains("config.yaml"), "{text}");
    assert!(
        text.contains(&format!(
            "routes[1] (https://b.localhost): policy at line {line}, column {column}:"
        )),
        "{text}"
    );
    assert!(text.contains("unknown criterion \"emial\""), "{text}");

    // The legacy `policy` list, block style: the policy's first line.
    let block = format!(
        "{head}policy:\n  - from: https://b.localhost\n    to: http://{up}\n    policy:\n      allow:\n        or:\n          - emial: {{is: a@example.com}}\n"
    );
    let text = refused_start(&path, &block);
    let (line, column) = line_and_column(&block, "allow:", 'a');
    assert!(
        text.contains(&format!(
            "routes[0] (https://b.localhost): policy at line {line}, column {column}:"
        )),
        "{text}"
    );

    // The identity provider's client secret.
    let idp = "authenticate_service_url: https://authenticate.localhost\nidp_provider_url: http://127.0.0.1:9\nidp_client_id: app\n";
    let routes = format!("routes:\n{route_a}");
    let text = refused_start(
        &path,
        &format!("{head}{idp}idp_client_secret: \"\"\n{routes}"),
    );
    assert!(text.contains("idp_client_secret is empty"), "{text}");
    let secret_file = dir.path().join("client-secret");
    std::fs::write(&secret_file, "\n").unwrap();
    let text = refused_start(
        &path,
        &format!(
            "{head}{idp}idp_client_secret_file: {}\n{routes}",
            secret_file.display()
        ),
    );
    assert!(
        text.contains("idp_client_secret_file") && text.contains("empty"),
        "{text}"
    );

    // Running: a missing secret is a warning; a broken edit is refused, and
    // its fix is logged as such.
    let good = format!("{head}{idp}{routes}");
    std::fs::write(&path, &good).unwrap();
    let s = Standalone::start(&path, https, internal, &["--log-format", "text"]).await;
    let log = s.log().join("\n");
    assert!(log.contains("idp_client_secret is not set"), "{log}");
    let broken =
        format!("{good}    policy: {{allow: {{or: [{{emial: {{is: a@example.com}}}}]}}}}\n")
            .replace("    allow_public_unauthenticated_access: true\n", "");
    rewrite_in_place(&path, &broken);
    s.wait_metric("jetbridge_config_reload_failures_total", 1.0)
        .await;
    let (line, column) = line_and_column(&broken, "emial", '{');
    let log = s.log().join("\n");
    assert!(
        log.contains(&format!("policy at line {line}, column {column}")),
        "{log}"
    );
    assert!(!log.contains("accepted again"), "{log}");
    rewrite_in_place(&path, &good);
    for _ in 0..100 {
        if s.log().join("\n").contains("accepted again") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = s.log().join("\n");
    assert!(log.contains("configuration accepted again"), "{log}");
    assert_eq!(
        s.metric("jetbridge_config_last_reload_successful").await,
        1.0
    );
}

/// The config-file mode's revocation file: two processes on one file share
/// sign-outs, `jetbridge revoke --file` refuses a user's sessions on both
/// while another user's work, and a restart keeps what was revoked.
#[tokio::test(flavor = "multi_thread")]
async fn a_revocation_file_shares_sign_outs_and_revoked_users_between_processes() {
    let (up, _seen) = echo_upstream().await;
    let to = format!("http://{up}");
    let secrets = Bootstrap::generate();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("revocations.json");
    let file = file.to_str().unwrap().to_string();
    let start = |n: usize| {
        let (https, internal) = (free_port(), free_port());
        let path = dir.path().join(format!("config{n}.yaml"));
        let cfg = ConfigFile {
            routes: vec![signed_in_route("app.localhost", &to)],
            ..listeners_and_secrets(https, internal, &secrets)
        };
        std::fs::write(&path, cfg.text()).unwrap();
        let file = file.clone();
        async move {
            let args = ["--revocations-file", file.as_str()];
            (
                Standalone::start_with(&path, https, internal, &[], &args).await,
                path,
            )
        }
    };
    let ((a, config), (b, _)) = tokio::join!(start(1), start(2));
    let mint = |sub: &str, email: &str| {
        let out = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
            .args(["mint-session", "--config", config.to_str().unwrap()])
            .args(["--host", "app.localhost", "--sub", sub, "--email", email])
            .output()
            .unwrap();
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    };
    let with_cookie = |c: &str| json_browser_with_session("app.localhost", c);
    let status = async |s: &Standalone, cookie: &str| {
        s.status(&mut with_cookie(cookie), "app.localhost", "/")
            .await
    };
    let until = async |s: &Standalone, cookie: &str, want: StatusCode| {
        for _ in 0..100 {
            if status(s, cookie).await == want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("never {want}: {:#?}", s.log());
    };
    let (alice, bob, carol) = (
        mint("alice", "alice@example.com"),
        mint("bob", "bob@example.com"),
        mint("carol", "carol@example.com"),
    );
    for s in [&a, &b] {
        assert_eq!(status(s, &alice).await, StatusCode::OK);
    }
    // A sign-out on one process is refused by the other.
    let r = with_cookie(&carol)
        .request(
            "POST",
            &format!("https://app.localhost:{}/.pomerium/sign_out", a.https),
            None,
        )
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    until(&b, &carol, StatusCode::UNAUTHORIZED).await;
    // An operator revokes alice by email: refused on both, bob still works.
    let out = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
        .args(["--log-format", "json", "revoke", "--file", &file])
        .args(["--user", "alice@example.com", "--reason", "left the team"])
        .output()
        .unwrap();
    let printed = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{printed}");
    assert!(
        printed.contains("alice@example.com") && printed.contains("left the team"),
        "{printed}"
    );
    for s in [&a, &b] {
        until(s, &alice, StatusCode::UNAUTHORIZED).await;
        assert_eq!(status(s, &bob).await, StatusCode::OK);
        s.wait_metric("jetbridge_revoked_users", 1.0).await;
    }
    // A restart reads the file: nothing revoked comes back.
    drop(a);
    let (again, _) = start(3).await;
    assert_eq!(status(&again, &alice).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&again, &carol).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status(&again, &bob).await, StatusCode::OK);
}
