//! Cluster tier: revocations against a real API server — `jetbridge revoke`
//! (a user, one session) refused by every replica, the revocation
//! ConfigMap past its limit (compacted, no sign-out lost, no write loop),
//! and a list in the old format read after an upgrade.

use super::controller::{events_on, jsonpath, mint_cookie, signed_in_app, with_cookie};
use crate::harness;
use harness::cluster::*;
use harness::login::*;
use http::StatusCode;
use std::process::Command;
use std::time::{Duration, Instant};

const LIST: &str = "jetbridge-revocations";

/// Runs `jetbridge revoke` against the corner's revocation ConfigMap;
/// returns what it printed (panics unless it succeeds).
fn revoke(c: &Corner, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
        .args(["--log-format", "json", "revoke", "--kubeconfig"])
        .arg(c.kube.kubeconfig())
        .args(["--configmap", &format!("{}/{LIST}", c.ns)])
        .args(args)
        .env_remove("KUBECONFIG")
        .output()
        .unwrap();
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(out.status.success(), "{stdout}\n{stderr}");
    stdout
}

/// The status `host` answers `cookie` with on `r`.
async fn status(r: &Controller, cookie: &str) -> StatusCode {
    with_cookie("app.test", cookie)
        .get(&r.url("app.test", "/"))
        .await
        .status
}

/// Waits until `r` answers `cookie` with `want` (polls, up to 20 s).
async fn until_status(r: &Controller, cookie: &str, want: StatusCode, what: &str) {
    let mut x = with_cookie("app.test", cookie);
    r.expect(&mut x, "app.test", what, |y| y.status == want)
        .await;
}

/// The session id of `cookie`, as the user page on `r` shows it.
async fn session_id(r: &Controller, cookie: &str) -> String {
    let page = browser_with(cookie)
        .get(&r.url("app.test", "/.pomerium/"))
        .await
        .body;
    let after = page
        .split("<th>Session</th><td>")
        .nth(1)
        .unwrap_or_else(|| panic!("no session id on the user page: {page}"));
    after.split('<').next().unwrap().trim().to_string()
}

/// A browser (asking for HTML) holding `cookie` for `app.test`.
fn browser_with(cookie: &str) -> Browser {
    let mut b = Browser::new();
    b.jar
        .entry("app.test".into())
        .or_default()
        .insert("_jetbridge".into(), cookie.into());
    b
}

/// The value of the metric `name` on `r`.
async fn metric(r: &Controller, name: &str) -> f64 {
    let body = Browser::new()
        .get(&format!("http://127.0.0.1:{}/metrics", r.internal))
        .await
        .body;
    body.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {body}"))
}

/// The revocation ConfigMap's data (empty while there is none).
fn list_data(c: &Corner) -> serde_json::Map<String, serde_json::Value> {
    jsonpath(c, "configmap", LIST, "{.data}")
        .and_then(|d| serde_json::from_str::<serde_json::Value>(&d).ok())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
}

/// Bytes of the ConfigMap's data as the API server counts them.
fn list_size(c: &Corner) -> usize {
    list_data(c)
        .iter()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum()
}

fn resource_version(c: &Corner) -> String {
    jsonpath(c, "configmap", LIST, "{.metadata.resourceVersion}").unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_revoked_user_is_refused_by_every_replica_and_other_users_are_not() {
    let c = signed_in_app().await;
    let (a, b) = tokio::join!(Controller::start(&c, &[]), Controller::start(&c, &[]));
    let alice = [
        mint_cookie(&c, "app.test", "alice", "alice@example.com", ""),
        mint_cookie(&c, "app.test", "alice", "alice@example.com", "ops"),
    ];
    let bob = mint_cookie(&c, "app.test", "bob", "bob@example.com", "");
    for r in [&a, &b] {
        until_status(r, &alice[0], StatusCode::OK, "serves alice").await;
        assert_eq!(status(r, &alice[1]).await, StatusCode::OK);
    }

    // By email: every session of alice, on both replicas, within seconds.
    let printed = revoke(
        &c,
        &["--user", "alice@example.com", "--reason", "laptop lost"],
    );
    assert!(
        printed.contains("alice@example.com") && printed.contains("revoked by"),
        "{printed}"
    );
    let revoked = Instant::now();
    for r in [&a, &b] {
        for cookie in &alice {
            until_status(r, cookie, StatusCode::UNAUTHORIZED, "refuses alice").await;
        }
        assert_eq!(status(r, &bob).await, StatusCode::OK, "bob still works");
    }
    let took = revoked.elapsed();
    eprintln!("revoke -> refused on both replicas after {took:?}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    // A browser is sent to sign in again, as one without a session is.
    let r = browser_with(&alice[0]).get(&b.url("app.test", "/")).await;
    let anonymous = Browser::new().get(&b.url("app.test", "/")).await;
    assert!(
        matches!(r.status, StatusCode::FOUND | StatusCode::UNAUTHORIZED),
        "{}",
        r.body
    );
    assert_eq!(r.status, anonymous.status, "{}", r.body);
    let path = |l: Option<String>| l.unwrap_or_default().split('?').next().map(str::to_string);
    assert_eq!(path(r.location()), path(anonymous.location()));

    // Audited: an Event on the ConfigMap naming the user and who ran it,
    // and a log line on each replica that learned it.
    let events = events_on(&c, "ConfigMap", LIST);
    let note = events
        .iter()
        .find(|e| e["reason"] == "Revoked")
        .and_then(|e| e["note"].as_str())
        .unwrap_or_else(|| panic!("no Revoked Event: {events:#?}"))
        .to_string();
    assert!(
        note.contains("alice@example.com") && note.contains("laptop lost"),
        "{note}"
    );
    assert!(
        !note.contains("revoked by unknown"),
        "names who ran it: {note}"
    );
    for r in [&a, &b] {
        r.wait_for_log(|l| l.contains("revocations learned from the shared list"))
            .await;
    }

    // A session issued after the revocation works (alice signed in again).
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let again = mint_cookie(&c, "app.test", "alice", "alice@example.com", "");
    for r in [&a, &b] {
        assert_eq!(
            status(r, &again).await,
            StatusCode::OK,
            "a new session works"
        );
    }

    // By subject and one session only: that session is refused, the other not.
    let carol = [
        mint_cookie(&c, "app.test", "carol", "carol@example.com", ""),
        mint_cookie(&c, "app.test", "carol", "carol@example.com", ""),
    ];
    let sid = session_id(&a, &carol[0]).await;
    revoke(&c, &["--user", "carol", "--session", &sid]);
    for r in [&a, &b] {
        until_status(
            r,
            &carol[0],
            StatusCode::UNAUTHORIZED,
            "refuses the session",
        )
        .await;
        assert_eq!(
            status(r, &carol[1]).await,
            StatusCode::OK,
            "her other session works"
        );
    }
    // The store holds one user entry (alice) and one session entry (carol's).
    let data = list_data(&c);
    assert_eq!(
        data.keys().filter(|k| k.starts_with("u.")).count(),
        1,
        "{data:?}"
    );
    assert!(data.contains_key(&sid), "{data:?}");
    assert_eq!(metric(&a, "jetbridge_revoked_users").await, 1.0);
}

#[tokio::test(flavor = "multi_thread")]
async fn past_its_limit_the_list_is_compacted_without_losing_a_sign_out_or_looping() {
    let c = signed_in_app().await;
    let limit = ["--revocations-max-bytes", "3000"];
    let (a, b) = tokio::join!(Controller::start(&c, &limit), Controller::start(&c, &limit));
    // Many sessions of one user, a few of others; one more of each kept.
    let heavy: Vec<String> = (0..50)
        .map(|_| mint_cookie(&c, "app.test", "heavy", "heavy@example.com", ""))
        .collect();
    let light: Vec<String> = (0..6)
        .map(|i| mint_cookie(&c, "app.test", &format!("light{i}"), "", ""))
        .collect();
    let heavy_kept = mint_cookie(&c, "app.test", "heavy", "heavy@example.com", "");
    let light_kept = mint_cookie(&c, "app.test", "light0", "", "");
    until_status(&a, &heavy_kept, StatusCode::OK, "serves").await;
    until_status(&b, &heavy_kept, StatusCode::OK, "serves").await;

    // Sign-outs on both replicas, past the limit.
    let all: Vec<&String> = light.iter().chain(heavy.iter()).collect();
    for (i, cookie) in all.iter().enumerate() {
        let r = if i % 2 == 0 { &a } else { &b };
        let out = with_cookie("app.test", cookie)
            .request("POST", &r.url("app.test", "/.pomerium/sign_out"), None)
            .await;
        assert_eq!(out.status, StatusCode::FOUND);
    }
    // No sign-out lost: each is refused by both replicas.
    for r in [&a, &b] {
        for cookie in &all {
            until_status(
                r,
                cookie,
                StatusCode::UNAUTHORIZED,
                "refuses a signed-out session",
            )
            .await;
        }
    }
    // Compacted: the heavy user is one not-before entry; the list is
    // within its limit; a Warning says so.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !list_data(&c).keys().any(|k| k.starts_with("u.")) {
        assert!(
            Instant::now() < deadline,
            "no compaction: {:?}",
            list_data(&c)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let size = list_size(&c);
    assert!(size <= 3000, "{size} bytes: {:?}", list_data(&c));
    let warnings: Vec<String> = events_on(&c, "ConfigMap", LIST)
        .iter()
        .filter(|e| e["type"] == "Warning")
        .filter_map(|e| e["reason"].as_str().map(str::to_string))
        .collect();
    assert!(
        warnings.iter().any(|r| r == "RevocationsNearLimit"),
        "{warnings:?}"
    );
    assert!(
        warnings.iter().any(|r| r == "RevocationsCompacted"),
        "{warnings:?}"
    );
    let compactions = metric(&a, "jetbridge_revocation_store_compactions_total").await
        + metric(&b, "jetbridge_revocation_store_compactions_total").await;
    assert!(compactions >= 1.0);
    assert!(metric(&a, "jetbridge_revocation_store_bytes").await <= 3000.0);
    // Fail-closed: the compacted user's other session issued before it
    // signs in again; other users' kept sessions work.
    for r in [&a, &b] {
        until_status(
            r,
            &heavy_kept,
            StatusCode::UNAUTHORIZED,
            "compacted user refused",
        )
        .await;
        assert_eq!(status(r, &light_kept).await, StatusCode::OK);
    }

    // No write loop: once settled, neither replica writes again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (version, writes) = (
        resource_version(&c),
        metric(&a, "jetbridge_revocation_store_writes_total").await
            + metric(&b, "jetbridge_revocation_store_writes_total").await,
    );
    tokio::time::sleep(Duration::from_secs(6)).await;
    assert_eq!(resource_version(&c), version, "the list was written again");
    let after = metric(&a, "jetbridge_revocation_store_writes_total").await
        + metric(&b, "jetbridge_revocation_store_writes_total").await;
    assert_eq!(after, writes, "API writes while idle");
    eprintln!(
        "{} sign-outs -> {writes} writes, {size} bytes, {} entries",
        all.len(),
        list_data(&c).len()
    );
    // Another sign-out past compaction is kept too.
    let more = mint_cookie(&c, "app.test", "late", "", "");
    with_cookie("app.test", &more)
        .request("POST", &a.url("app.test", "/.pomerium/sign_out"), None)
        .await;
    until_status(
        &b,
        &more,
        StatusCode::UNAUTHORIZED,
        "refuses the later sign-out",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_in_the_old_format_is_honoured_after_an_upgrade() {
    let c = signed_in_app().await;
    let first = Controller::start(&c, &[]).await;
    let old = mint_cookie(&c, "app.test", "dave", "dave@example.com", "");
    let other = mint_cookie(&c, "app.test", "erin", "erin@example.com", "");
    until_status(&first, &old, StatusCode::OK, "serves").await;
    let sid = session_id(&first, &old).await;
    first.terminate();
    // What an earlier version wrote: `<sid>: <expiry>`.
    let exp = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600)
        .to_string();
    c.kube.apply(&format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {LIST}, namespace: {}}}\ndata:\n  {sid}: \"{exp}\"\n  not-an-entry: \"soon\"\n",
        c.ns
    ));
    let upgraded = Controller::start(&c, &[]).await;
    until_status(
        &upgraded,
        &old,
        StatusCode::UNAUTHORIZED,
        "refuses the old entry",
    )
    .await;
    assert_eq!(status(&upgraded, &other).await, StatusCode::OK);
    // A new sign-out is added beside it; the old entries stay as they were.
    with_cookie("app.test", &other)
        .request(
            "POST",
            &upgraded.url("app.test", "/.pomerium/sign_out"),
            None,
        )
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while list_data(&c).len() < 3 {
        assert!(Instant::now() < deadline, "{:?}", list_data(&c));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let data = list_data(&c);
    assert_eq!(data[&sid], exp.as_str(), "{data:?}");
    assert_eq!(data["not-an-entry"], "soon", "left alone: {data:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_full_at_the_default_limit_is_compacted_by_the_next_sign_out() {
    use jetbridge::identity::revocation::{DEFAULT_MAX_BYTES, user_key};
    let c = signed_in_app().await;
    // What replicas wrote for heavy's signed-out sessions, just under the
    // default limit (one more sign-out goes over it).
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let value = format!("{} {} {}", now + 3600, user_key("heavy"), now - 60);
    let mut data = serde_json::Map::new();
    let mut size = 0;
    while size + 22 + value.len() <= DEFAULT_MAX_BYTES - 30 {
        data.insert(format!("seed{:018}", data.len()), value.clone().into());
        size += 22 + value.len();
    }
    let seeded = data.len();
    let cm = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": LIST, "namespace": c.ns}, "data": data,
    });
    c.kube.ok(&["create", "-f", "-"], Some(&cm.to_string()));
    let a = Controller::start(&c, &[]).await;
    let heavy = mint_cookie(&c, "app.test", "heavy", "heavy@example.com", "");
    let light = mint_cookie(&c, "app.test", "light", "light@example.com", "");
    let other = mint_cookie(&c, "app.test", "other", "other@example.com", "");
    // Near the limit: a Warning; under it nothing is compacted.
    let deadline = Instant::now() + Duration::from_secs(20);
    while !events_on(&c, "ConfigMap", LIST)
        .iter()
        .any(|e| e["reason"] == "RevocationsNearLimit")
    {
        assert!(Instant::now() < deadline, "no near-limit Warning");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(list_data(&c).len(), seeded);
    assert_eq!(status(&a, &heavy).await, StatusCode::OK);
    // One more sign-out: over the limit, compacted, nothing lost.
    let signed_out = Instant::now();
    with_cookie("app.test", &light)
        .request("POST", &a.url("app.test", "/.pomerium/sign_out"), None)
        .await;
    let deadline = Instant::now() + Duration::from_secs(30);
    while list_data(&c).len() > 10 {
        assert!(Instant::now() < deadline, "not compacted: {:#?}", a.log());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let took = signed_out.elapsed();
    let size = list_size(&c);
    assert!(size <= DEFAULT_MAX_BYTES / 2, "{size}");
    assert_eq!(status(&a, &light).await, StatusCode::UNAUTHORIZED);
    assert_eq!(
        status(&a, &heavy).await,
        StatusCode::UNAUTHORIZED,
        "fails closed"
    );
    assert_eq!(status(&a, &other).await, StatusCode::OK);
    let version = resource_version(&c);
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_eq!(resource_version(&c), version, "written again while idle");
    eprintln!(
        "{seeded} entries ({} bytes) + 1 sign-out -> compacted to {} entries ({size} bytes) in {took:?}",
        seeded * (22 + value.len()),
        list_data(&c).len()
    );
}
