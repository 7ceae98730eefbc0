//! A minute at saturation: the real binary under two `wrk` loads at once (a
//! public route and an authenticated route with identity headers), while a
//! bystander keeps making fresh-connection requests and the process's
//! resident memory is sampled. What must hold: every answer is a 2xx, the
//! bystander is always served, the process lives, and memory stays flat
//! once warm. The throughput is printed, never asserted.
//!
//! Then a mixed run: authenticated load, full sign-ins at the real IdP one
//! after another, the config file rewritten every 1.5 s, and a route whose
//! upstream comes and goes every 2 s. Nothing may disturb anything else.

use crate::harness;

use harness::attack::*;
use harness::config::{
    ConfigFile, ConfigText as _, RouteConfig, identity_route, public_route, route, strings,
};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const OPEN: &str = "open.test";
const SIGNED: &str = "signed.test";
/// The whole run, and the warm-up after which memory must stay flat.
const RUN: Duration = Duration::from_secs(60);
const WARM: Duration = Duration::from_secs(15);
/// How much resident memory may grow between the end of the warm-up and
/// the end of the run.
const FLAT_KIB: u64 = 24 * 1024;

/// A keep-alive upstream answering every request with 200 "ok", keeping
/// nothing.
async fn ok_upstream() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            tokio::spawn(serve_ok(s));
        }
    });
    addr
}

/// Answers every request on `s` with 200 "ok" until the client leaves.
async fn serve_ok(mut s: tokio::net::TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    let mut pending = Vec::new();
    loop {
        let n = match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            pending.drain(..end + 4);
            if s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

/// An upstream on a fixed port that serves like [`ok_upstream`] for
/// `period`, then is gone (listener closed, open connections cut) for
/// `period`, over and over.
async fn flapping_upstream(period: Duration) -> std::net::SocketAddr {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], harness::login::free_port()));
    tokio::spawn(async move {
        loop {
            if let Ok(l) = TcpListener::bind(addr).await {
                let mut conns = tokio::task::JoinSet::new();
                let up = tokio::time::sleep(period);
                tokio::pin!(up);
                loop {
                    tokio::select! {
                        _ = &mut up => break,
                        a = l.accept() => if let Ok((s, _)) = a {
                            conns.spawn(serve_ok(s));
                        },
                    }
                }
                conns.abort_all();
            }
            tokio::time::sleep(period).await;
        }
    });
    addr
}

/// Starts `wrk` for `secs` seconds with `headers` (one per line); returns the
/// child whose stdout holds its report.
fn wrk(
    port: u16,
    headers: &[String],
    secs: u64,
    dir: &std::path::Path,
    name: &str,
) -> std::process::Child {
    let script = dir.join(format!("{name}.lua"));
    let lines: String = headers
        .iter()
        .filter_map(|h| h.split_once(": "))
        .map(|(k, v)| format!("wrk.headers[\"{k}\"] = \"{v}\"\n"))
        .collect();
    std::fs::write(&script, lines).unwrap();
    std::process::Command::new("wrk")
        .args(["-t1", "-c32", &format!("-d{secs}s"), "-s"])
        .arg(&script)
        .arg(format!("https://127.0.0.1:{port}/soak"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("wrk (./scripts/test installs it): {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_minute_at_saturation_keeps_answers_right_bystanders_served_and_memory_flat() {
    let up = ok_upstream().await;
    let to = format!("http://{up}");
    let j = Jetbridge::start(&ConfigFile {
        access_log: Some(false),
        routes: vec![
            public_route(OPEN, &to),
            RouteConfig {
                pass_identity_headers: Some(true),
                allowed_users: vec!["soak@example.com".into()],
                ..route(SIGNED, &to)
            },
        ],
        ..Default::default()
    })
    .await;
    let cookie = j.mint_session(SIGNED, "soak", "soak@example.com");
    let dir = tempfile::tempdir().unwrap();
    let public = wrk(
        j.https,
        &[format!("Host: {OPEN}")],
        RUN.as_secs(),
        dir.path(),
        "public",
    );
    let signed = wrk(
        j.https,
        &[format!("Host: {SIGNED}"), format!("Cookie: {cookie}")],
        RUN.as_secs(),
        dir.path(),
        "signed",
    );

    let started = Instant::now();
    let mut rss = Vec::new();
    let mut worst = Duration::ZERO;
    let mut probes = 0;
    while started.elapsed() < RUN {
        let (status, took) = probe(j.https, OPEN, "/bystander").await;
        assert_eq!(status, Some(200), "bystander at {:?}", started.elapsed());
        worst = worst.max(took);
        probes += 1;
        rss.push((started.elapsed(), j.rss_kib().expect("the process lives")));
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let reports: Vec<String> = [public, signed]
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success(), "wrk: {out:?}");
            String::from_utf8_lossy(&out.stdout).into_owned()
        })
        .collect();
    for (name, report) in ["public", "signed"].iter().zip(&reports) {
        println!("{name}:\n{report}");
        assert!(
            !report.contains("Non-2xx"),
            "{name}: answers other than 2xx under load:\n{report}"
        );
        let done: u64 = report
            .lines()
            .find_map(|l| l.trim().split_once(" requests in"))
            .and_then(|(n, _)| n.trim().parse().ok())
            .unwrap_or(0);
        assert!(done > 0, "{name}: nothing served:\n{report}");
    }
    let warm = rss
        .iter()
        .find(|(t, _)| *t >= WARM)
        .map(|(_, kib)| *kib)
        .unwrap();
    let end = rss.last().map(|(_, kib)| *kib).unwrap();
    let peak = rss.iter().map(|(_, kib)| *kib).max().unwrap();
    println!(
        "RSS: {} MiB after warm-up, {} MiB at the end, {} MiB peak; {probes} bystander requests, slowest {worst:?}",
        warm / 1024,
        end / 1024,
        peak / 1024
    );
    assert!(
        end.saturating_sub(warm) < FLAT_KIB,
        "memory grew {} KiB after warm-up: {rss:?}",
        end - warm
    );
    assert!(j.alive());
}

/// How long the mixed run lasts.
const MIXED: Duration = Duration::from_secs(40);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logins_reloads_and_a_flapping_upstream_under_load_disturb_nothing() {
    use harness::login::{Browser, follow, idp_login, start_idp};
    use http::StatusCode;
    let up = ok_upstream().await;
    let flap = flapping_upstream(Duration::from_secs(2)).await;
    let https = harness::login::free_port();
    let callback = format!("https://authenticate.localhost:{https}/oauth2/callback");
    let (issuer, _idp) = start_idp("jetbridge", "jetbridge-secret", &[callback], &[]);
    let j = Jetbridge::start_on(
        https,
        &ConfigFile {
            access_log: Some(false),
            authenticate_service_url: Some(format!("https://authenticate.localhost:{https}")),
            idp_provider: Some("oidc".into()),
            idp_provider_url: Some(issuer.clone()),
            idp_client_id: Some("jetbridge".into()),
            idp_client_secret: Some("jetbridge-secret".into()),
            idp_scopes: Some(strings(&["openid", "email", "profile"])),
            routes: vec![
                identity_route("app.localhost", &format!("http://{up}")),
                RouteConfig {
                    timeout: Some(Duration::from_secs(5)),
                    ..public_route("flap.localhost", &format!("http://{flap}"))
                },
            ],
            ..Default::default()
        },
    )
    .await;
    let original =
        ConfigFile::parse("config.yaml", &std::fs::read_to_string(&j.config).unwrap()).unwrap();
    let cookie = j.mint_session("app.localhost", "soak", "soak@example.com");
    let dir = tempfile::tempdir().unwrap();
    let load = wrk(
        j.https,
        &[
            "Host: app.localhost".to_string(),
            format!("Cookie: {cookie}"),
        ],
        MIXED.as_secs(),
        dir.path(),
        "mixed",
    );
    let started = Instant::now();
    let url = |host: &str, path: &str| format!("https://{host}.localhost:{https}{path}");

    // Full sign-ins at the real IdP, one after another.
    let logins = async {
        let mut took = Vec::new();
        while started.elapsed() < MIXED {
            let t = Instant::now();
            let mut b = Browser::new();
            let target = url("app", &format!("/login-{}", took.len()));
            let r = b.get(&target).await;
            assert_eq!(
                r.status,
                StatusCode::FOUND,
                "login {}: {}",
                took.len(),
                r.body
            );
            let r = b.get(&r.location().unwrap()).await;
            assert_eq!(r.status, StatusCode::FOUND, "sign-in start: {}", r.body);
            let back = idp_login(&mut b, &r.location().unwrap(), "alice").await;
            let (_, r) = follow(&mut b, back, "never", 6).await;
            assert_eq!(
                (r.status, r.body.as_str()),
                (StatusCode::OK, "ok"),
                "login {}",
                took.len()
            );
            took.push(t.elapsed());
        }
        took
    };
    // The config file rewritten (atomically, as an editor or a ConfigMap
    // mount does) every 1.5 s, adding and dropping a route each time.
    let reloads = async {
        let mut n = 0usize;
        let path = j.config.clone();
        while started.elapsed() < MIXED {
            n += 1;
            let mut version = original.clone();
            if n % 2 == 1 {
                let extra = public_route(&format!("extra-{n}.localhost"), &format!("http://{up}"));
                version.routes.push(extra);
            }
            let tmp = path.with_extension("tmp");
            std::fs::write(&tmp, version.text()).unwrap();
            std::fs::rename(&tmp, &path).unwrap();
            tokio::time::sleep(Duration::from_millis(1500)).await;
        }
        n
    };
    // The flapping route, every 100 ms; and the process's memory.
    let probes = async {
        let mut b = Browser::new();
        let mut statuses = std::collections::BTreeMap::<u16, usize>::new();
        let mut slowest = Duration::ZERO;
        let mut rss = Vec::new();
        while started.elapsed() < MIXED {
            let t = Instant::now();
            let r = b.get(&url("flap", "/flap")).await;
            slowest = slowest.max(t.elapsed());
            *statuses.entry(r.status.as_u16()).or_default() += 1;
            rss.push((started.elapsed(), j.rss_kib().expect("the process lives")));
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        (statuses, slowest, rss)
    };
    let (took, reloaded, (statuses, slowest, rss)) = tokio::join!(logins, reloads, probes);
    let out = load.wait_with_output().unwrap();
    assert!(out.status.success(), "wrk: {out:?}");
    let report = String::from_utf8_lossy(&out.stdout).into_owned();
    println!("authenticated load during the mixed run:\n{report}");
    assert!(
        !report.contains("Non-2xx"),
        "answers other than 2xx under load:\n{report}"
    );
    assert!(!report.contains("Socket errors"), "{report}");

    let mut sorted = took.clone();
    sorted.sort();
    assert!(!took.is_empty());
    // The flapping upstream: served when up, a 502/503 when down, each
    // answered well within the route timeout; never anything else.
    assert!(
        statuses.keys().all(|s| [200, 502, 503].contains(s)),
        "flapping route: {statuses:?}"
    );
    assert!(
        statuses.contains_key(&200),
        "flapping route never served: {statuses:?}"
    );
    assert!(
        slowest < Duration::from_secs(6),
        "a flapping-route request took {slowest:?}"
    );
    // Reloads all took, and the last one is in force.
    let metrics = j.internal_get("/metrics").await.1;
    assert!(
        metrics.contains("jetbridge_config_reload_failures_total 0"),
        "a reload failed: {}",
        metrics
            .lines()
            .filter(|l| l.contains("reload"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    let last_extra = if reloaded % 2 == 1 {
        Some(reloaded)
    } else {
        None
    };
    if let Some(n) = last_extra {
        let mut b = Browser::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = b.get(&url(&format!("extra-{n}"), "/")).await;
            if r.status == StatusCode::OK {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the last reload never took: {}",
                r.status
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    let warm = rss
        .iter()
        .find(|(t, _)| *t >= WARM)
        .map(|(_, k)| *k)
        .unwrap();
    let end = rss.last().map(|(_, k)| *k).unwrap();
    println!(
        "MIXED {:?}: {} sign-ins (p50 {:?}, slowest {:?}), {reloaded} config rewrites, flapping route {statuses:?} (slowest {slowest:?}), RSS {} MiB after warm-up, {} MiB at the end",
        MIXED,
        took.len(),
        sorted[sorted.len() / 2],
        sorted[sorted.len() - 1],
        warm / 1024,
        end / 1024
    );
    assert!(end.saturating_sub(warm) < FLAT_KIB, "memory grew: {rss:?}");
    assert!(j.alive());
}
