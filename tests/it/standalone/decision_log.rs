//! The decision log of the real binary: one `jetbridge::authorize` line per
//! decision on a policy route (signed in and allowed, signed in and denied,
//! anonymous; a route's `policy` rules and its `allowed_users`), none on a
//! public route; the fields `authorize_log_fields` asks for and no others;
//! never a cookie; `authorize_log: false` silences it; unknown and
//! credential field names are refused; the per-Policy counters move;
//! `jetbridge policy eval --log-line` replays a decision from its line.

use super::operations::{Standalone, listeners_and_secrets, refused_start, rewrite_in_place};
use crate::harness;
use harness::config::ConfigText as _;
use harness::login::*;
use http::StatusCode;
use jetbridge::identity::secrets::Bootstrap;
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The config text: listeners and secrets, `log` (decision-log settings,
/// YAML lines), a policy route, an `allowed_users` route and a public one,
/// on host `public-{version}` (so each version is a new snapshot).
fn config(head: &str, log: &str, up: std::net::SocketAddr, version: usize) -> String {
    format!(
        "{head}{log}routes:
  - from: https://app.localhost
    to: http://{up}
    policy:
      - allow: {{or: [{{email: {{is: alice@example.com}}}}]}}
      - deny: {{or: [{{groups: {{has: blocked}}}}]}}
  - from: https://legacy.localhost
    to: http://{up}
    allowed_users: [bob@example.com]
  - from: https://public-{version}.localhost
    to: http://{up}
    allow_public_unauthenticated_access: true
"
    )
}

/// A session cookie for `host` as `mint-session` seals it.
fn cookie(path: &Path, host: &str, sub: &str, email: &str, groups: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
        .args(["mint-session", "--config", path.to_str().unwrap()])
        .args(["--host", host, "--sub", sub, "--email", email])
        .args(["--groups", groups])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A browser that sends `cookie` to `host` (none when empty) and asks for JSON.
fn browser(host: &str, cookie: &str) -> Browser {
    let mut b = Browser::new();
    b.accept = "application/json".into();
    if !cookie.is_empty() {
        b.jar
            .entry(host.into())
            .or_default()
            .insert("_jetbridge".into(), cookie.into());
    }
    b
}

/// The decision lines among `lines`, as JSON.
fn decisions(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["target"] == "jetbridge::authorize")
        .collect()
}

/// Requests `path` on `host` and returns the status, the request id and
/// the decision lines written meanwhile.
async fn decide(
    s: &Standalone,
    b: &mut Browser,
    host: &str,
    path: &str,
) -> (StatusCode, String, Vec<Value>) {
    let before = s.log().len();
    let r = b.get(&format!("https://{host}:{}{path}", s.https)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let id = r.headers["x-request-id"].to_str().unwrap().to_string();
    (r.status, id, decisions(&s.log()[before..]))
}

/// The keys of a line other than the timestamp, level, target and message.
fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| !matches!(k.as_str(), "timestamp" | "level" | "target" | "message"))
        .cloned()
        .collect();
    k.sort();
    k
}

#[tokio::test(flavor = "multi_thread")]
async fn each_policy_decision_is_one_line_naming_rule_user_and_reason_never_a_cookie() {
    let (up, _) = echo_upstream().await;
    let (https, internal) = (free_port(), free_port());
    let head = listeners_and_secrets(https, internal, &Bootstrap::generate()).text();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, config(&head, "", up, 0)).unwrap();
    let s = Standalone::start(&path, https, internal, &[]).await;
    let alice = cookie(
        &path,
        "app.localhost",
        "u-alice",
        "alice@example.com",
        "staff",
    );
    let carol = cookie(
        &path,
        "app.localhost",
        "u-carol",
        "alice@example.com",
        "blocked",
    );
    let bob = cookie(
        &path,
        "legacy.localhost",
        "u-bob",
        "bob@example.com",
        "staff",
    );

    // Signed in and allowed by the route's first policy rule; Pomerium's
    // default fields (as far as they have a value here).
    let (status, id, lines) = decide(
        &s,
        &mut browser("app.localhost", &alice),
        "app.localhost",
        "/a?token=QUERYSECRET",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(lines.len(), 1, "one line per decision: {lines:#?}");
    let l = &lines[0];
    assert_eq!(l["message"], "authorize check");
    assert_eq!(l["level"], "INFO");
    assert_eq!(l["allow"], true);
    assert_eq!(l["reason"], "rule 1 allow matched");
    assert_eq!(l["rule"], "policy rule 1");
    assert_eq!(l["route-id"], "routes[0]");
    assert_eq!(l["request-id"], id.as_str());
    assert_eq!(
        (&l["user"], &l["email"]),
        (&"u-alice".into(), &"alice@example.com".into())
    );
    assert_eq!(
        (&l["method"], &l["host"], &l["path"]),
        (&"GET".into(), &"app.localhost".into(), &"/a".into())
    );
    assert_eq!(l["ip"], "127.0.0.1");
    assert!(
        l["session-id"].as_str().is_some_and(|v| !v.is_empty()),
        "{l}"
    );
    assert!(
        l.get("policy").is_none() && l.get("groups").is_none(),
        "{l}"
    );

    // Signed in, denied by a deny rule (deny wins over the matching allow).
    let (status, _, lines) = decide(
        &s,
        &mut browser("app.localhost", &carol),
        "app.localhost",
        "/b",
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["allow"], false);
    assert_eq!(lines[0]["reason"], "rule 2 deny matched");
    assert_eq!(lines[0]["rule"], "policy rule 2");
    assert_eq!(lines[0]["user"], "u-carol");

    // Anonymous: denied, no rule, no identity fields.
    let (status, id, lines) =
        decide(&s, &mut browser("app.localhost", ""), "app.localhost", "/c").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    let l = &lines[0];
    assert_eq!(
        (&l["allow"], &l["reason"]),
        (&false.into(), &"no allow rule matched".into())
    );
    assert_eq!(l["request-id"], id.as_str());
    for absent in ["rule", "user", "email", "session-id", "policy"] {
        assert!(
            l.get(absent).is_none(),
            "{absent} on an anonymous line: {l}"
        );
    }

    // The legacy shorthand names itself as the rule.
    let (status, _, lines) = decide(
        &s,
        &mut browser("legacy.localhost", &bob),
        "legacy.localhost",
        "/",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(lines[0]["rule"], "allowed_users");
    assert_eq!(lines[0]["route-id"], "routes[1]");

    // A public route makes no decision.
    let (status, _, lines) = decide(
        &s,
        &mut browser("public-0.localhost", ""),
        "public-0.localhost",
        "/",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(lines.is_empty(), "{lines:#?}");

    let all = s.log().join("\n");
    for secret in [&alice, &carol, &bob] {
        assert!(!all.contains(&secret[..24]), "a cookie was logged");
    }
    assert!(!all.contains("QUERYSECRET"), "a query value was logged");

    // The counters: by route, Policy (`-`: the route's own rules) and decision.
    let series = |route: &str, d: &str| {
        format!(
            "jetbridge_policy_decisions_total{{route=\"{route}\",policy=\"-\",decision=\"{d}\"}}"
        )
    };
    assert_eq!(s.metric(&series("routes[0]", "allow")).await, 1.0);
    assert_eq!(s.metric(&series("routes[0]", "deny")).await, 2.0);
    assert_eq!(s.metric(&series("routes[1]", "allow")).await, 1.0);
    browser("app.localhost", &alice)
        .get(&format!("https://app.localhost:{https}/again"))
        .await;
    s.wait_metric(&series("routes[0]", "allow"), 2.0).await;

    // authorize_log_fields on reload: exactly the fields asked for, in
    // Pomerium's comma-separated form too.
    for (n, (setting, want)) in [
        (
            "authorize_log_fields: [email, groups]\n",
            vec!["email", "groups"],
        ),
        (
            "authorize_log_fields: \"request-id,user\"\n",
            vec!["request-id", "user"],
        ),
        ("authorize_log_fields: []\n", vec![]),
    ]
    .into_iter()
    .enumerate()
    {
        rewrite_in_place(&path, &config(&head, setting, up, n + 1));
        s.wait_metric("jetbridge_config_generation", 2.0 + n as f64)
            .await;
        let (_, _, lines) = decide(
            &s,
            &mut browser("app.localhost", &alice),
            "app.localhost",
            "/f",
        )
        .await;
        assert_eq!(lines.len(), 1, "{setting}: {lines:#?}");
        let mut expected: Vec<String> = ["allow", "reason", "route-id", "rule"]
            .iter()
            .chain(&want)
            .map(|k| k.to_string())
            .collect();
        expected.sort();
        assert_eq!(keys(&lines[0]), expected, "{setting}");
        if want.contains(&"groups") {
            assert_eq!(lines[0]["groups"], "staff");
        }
    }

    // authorize_log: false silences the decision log, not the access log.
    rewrite_in_place(&path, &config(&head, "authorize_log: false\n", up, 4));
    s.wait_metric("jetbridge_config_generation", 5.0).await;
    let before = s.log().len();
    let (status, _, lines) = decide(
        &s,
        &mut browser("app.localhost", &alice),
        "app.localhost",
        "/quiet",
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert!(lines.is_empty(), "{lines:#?}");
    assert!(
        s.log()[before..]
            .iter()
            .any(|l| l.contains("jetbridge::access"))
    );

    // `jetbridge policy eval --log-line` replays a decision from its line
    // (with the fields the policy reads logged).
    let fields = "authorize_log_fields: [user, email, groups, method, host, path, ip]\n";
    rewrite_in_place(&path, &config(&head, fields, up, 5));
    s.wait_metric("jetbridge_config_generation", 6.0).await;
    let policy = dir.path().join("policy.yaml");
    std::fs::write(
        &policy,
        "- allow: {or: [{email: {is: alice@example.com}}]}\n- deny: {or: [{groups: {has: blocked}}]}\n",
    )
    .unwrap();
    for (who, code, decided) in [
        (&carol, 1, "deny: rule 2 deny matched"),
        (&alice, 0, "allow: rule 1 allow matched"),
    ] {
        let (_, _, lines) = decide(
            &s,
            &mut browser("app.localhost", who),
            "app.localhost",
            "/r",
        )
        .await;
        let out = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
            .args(["policy", "eval", "--policy", policy.to_str().unwrap()])
            .args(["--log-line", &lines[0].to_string()])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(out.status.code(), Some(code), "{text}{:?}", out.stderr);
        assert_eq!(text.trim(), format!("{decided}\nlogged: {decided}"));
    }
    let out = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
        .args(["policy", "eval", "--policy", policy.to_str().unwrap()])
        .args(["--log-line", "{\"message\":\"request\"}"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a decision-log line"));

    // A bad field name in a reload is refused and named; the running
    // settings stay.
    rewrite_in_place(
        &path,
        &config(
            &head,
            "authorize_log_fields: [user, headers.cookie]\n",
            up,
            6,
        ),
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = s.log().join("\n");
    assert!(
        log.contains("headers.cookie") && log.contains("never logged"),
        "{log}"
    );
    assert_eq!(s.metric("jetbridge_config_generation").await, 6.0);
}

#[test]
fn unknown_or_credential_field_names_refuse_the_file_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let head = listeners_and_secrets(free_port(), free_port(), &Bootstrap::generate()).text();
    let route = "routes:\n  - from: https://a.localhost\n    to: http://127.0.0.1:1\n    allow_public_unauthenticated_access: true\n";
    for (fields, says) in [
        ("[user, emial]", "unknown field \\\"emial\\\""),
        ("[id-token]", "\\\"id-token\\\" is never logged"),
        (
            "\"user,headers.authorization\"",
            "\\\"headers.authorization\\\" is never logged",
        ),
    ] {
        let text = refused_start(
            &path,
            &format!("{head}authorize_log_fields: {fields}\n{route}"),
        );
        assert!(
            text.contains("authorize_log_fields") && text.contains(says.replace('\\', "").as_str()),
            "{fields}: {text}"
        );
    }
}

/// The decisions made before a route's rules are asked have their lines
/// too: a CORS preflight let through by `cors_allow_preflight`, and a
/// request without the client certificate a route requires. Each counts as
/// the route's own decision. (A config file with an invalid route is
/// refused whole, so the invalid-route line is a cluster test's.)
#[tokio::test(flavor = "multi_thread")]
async fn refusals_before_the_rules_and_let_through_preflights_have_lines() {
    harness::proxy::init();
    let (up, _) = echo_upstream().await;
    let (https, internal) = (free_port(), free_port());
    let head = listeners_and_secrets(https, internal, &Bootstrap::generate()).text();
    let dir = tempfile::tempdir().unwrap();
    let ca = dir.path().join("browsers.pem");
    std::fs::write(&ca, harness::proxy::TestCa::new("browsers").pem).unwrap();
    let path = dir.path().join("config.yaml");
    let text = format!(
        "{head}routes:
  - from: https://cors.localhost
    to: http://{up}
    cors_allow_preflight: true
    policy:
      - allow: {{or: [{{email: {{is: alice@example.com}}}}]}}
  - from: https://mtls.localhost
    to: http://{up}
    tls_downstream_client_ca_file: {}
    policy:
      - allow: {{or: [{{email: {{is: alice@example.com}}}}]}}
",
        ca.display()
    );
    std::fs::write(&path, text).unwrap();
    let s = Standalone::start(&path, https, internal, &[]).await;

    // A preflight is let through without a session, and says so; the same
    // path without the preflight headers is decided by the rules.
    let before = s.log().len();
    let mut b = browser("cors.localhost", "");
    let url = format!("https://cors.localhost:{https}/api");
    let r = b
        .request_with(
            "OPTIONS",
            &url,
            &[
                ("origin", "https://app.localhost"),
                ("access-control-request-method", "PUT"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = decisions(&s.log()[before..]);
    assert_eq!(lines.len(), 1, "{lines:#?}");
    assert_eq!(lines[0]["allow"], true);
    assert_eq!(
        lines[0]["reason"],
        "CORS preflight let through (cors_allow_preflight)"
    );
    assert_eq!(
        (&lines[0]["method"], &lines[0]["path"]),
        (&"OPTIONS".into(), &"/api".into())
    );
    let (status, _, lines) = decide(
        &s,
        &mut browser("cors.localhost", ""),
        "cors.localhost",
        "/api",
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(lines[0]["reason"], "no allow rule matched");

    // No client certificate: refused before the session and the rules.
    let before = s.log().len();
    let r = browser("mtls.localhost", "")
        .try_get(&format!("https://mtls.localhost:{https}/"))
        .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let lines = decisions(&s.log()[before..]);
    assert_eq!(lines.len(), 1, "{:?} {lines:#?}", r.map(|r| r.status));
    assert_eq!(lines[0]["allow"], false);
    assert_eq!(
        lines[0]["reason"],
        "no client certificate the route's CA signed"
    );
    assert_eq!(lines[0]["route-id"], "routes[1]");

    let series = |route: &str, d: &str| {
        format!(
            "jetbridge_policy_decisions_total{{route=\"{route}\",policy=\"-\",decision=\"{d}\"}}"
        )
    };
    assert_eq!(s.metric(&series("routes[0]", "allow")).await, 1.0);
    assert_eq!(s.metric(&series("routes[0]", "deny")).await, 1.0);
    assert_eq!(s.metric(&series("routes[1]", "deny")).await, 1.0);
}
