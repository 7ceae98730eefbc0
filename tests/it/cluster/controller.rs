//! Cluster tier: `jetbridge controller` (the real binary) against a real
//! kube-apiserver and etcd (`scripts/cluster`), driven with kubectl as a user
//! would, checked through the proxy with an HTTP client.
//!
//! `scripts/test` starts one cluster for the run and exports
//! `JETBRIDGE_CLUSTER_DIR`; without it each test starts its own. Every test
//! works in its own namespace with its own IngressClass and controller name,
//! so tests run side by side on one API server.

use crate::harness;
use harness::cluster::*;
use harness::config::{ConfigFile, route_from_keys};
use harness::login::*;
use http::StatusCode;
use std::process::Command;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn an_ingress_is_served_edited_moved_and_removed() {
    let c = Corner::new(Kube::get());
    c.echo_pods("blue", Some("blue"), 1);
    c.echo_pods("green", Some("green"), 1);
    c.select("web", "blue");
    let ctl = Controller::start(&c, &[]).await;
    let mut b = api_client();
    let url = ctl.url("web.test", "/");

    c.public_ingress("web", "web.test", "web");
    let started = Instant::now();
    eventually(
        &mut b,
        &url,
        "serves blue",
        |r| r.status == StatusCode::OK && r.body == "blue",
        &ctl,
    )
    .await;
    eprintln!("Ingress created -> route answers: {:?}", started.elapsed());

    // An annotation edit changes behaviour: now sign-in is needed.
    c.ingress(
        "web",
        "web.test",
        "web",
        &[("jetbridge.dev/allow_any_authenticated_user", "true")],
    );
    eventually(
        &mut b,
        &url,
        "asks for sign-in",
        |r| r.status == StatusCode::UNAUTHORIZED,
        &ctl,
    )
    .await;
    c.ingress(
        "web",
        "web.test",
        "web",
        &[(
            "ingress.pomerium.io/allow_public_unauthenticated_access",
            "true",
        )],
    );
    eventually(
        &mut b,
        &url,
        "is public again",
        |r| r.status == StatusCode::OK,
        &ctl,
    )
    .await;

    // The Service selects other pods: the EndpointSlice controller rewrites
    // its slices and traffic moves.
    c.select("web", "green");
    eventually(&mut b, &url, "serves green", |r| r.body == "green", &ctl).await;

    // A second host on the same Service, then the first Ingress deleted.
    c.public_ingress("other", "other.test", "web");
    ctl.expect_status(&mut b, "other.test", "serves", StatusCode::OK)
        .await;
    let metrics = Browser::new()
        .get(&format!("http://127.0.0.1:{}/metrics", ctl.internal))
        .await
        .body;
    assert!(
        metrics.contains(&format!("route=\"{}/web/1\"", c.ns)),
        "{metrics}"
    );
    c.kube.ok(&["delete", "ingress", "web", "-n", &c.ns], None);
    eventually(
        &mut b,
        &url,
        "is gone",
        |r| r.status == StatusCode::NOT_FOUND,
        &ctl,
    )
    .await;
    // Its metric series go with it.
    let metrics = Browser::new()
        .get(&format!("http://127.0.0.1:{}/metrics", ctl.internal))
        .await
        .body;
    assert!(metrics.contains("jetbridge_requests_total"), "{metrics}");
    assert!(
        !metrics.contains(&format!("route=\"{}/web/", c.ns)),
        "{metrics}"
    );
    assert_eq!(
        b.get(&ctl.url("other.test", "/")).await.status,
        StatusCode::OK
    );

    // An Ingress of another class is not ours.
    let ns = &c.ns;
    c.kube.apply(&format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata: {{name: foreign, namespace: {ns}}}\nspec:\n  ingressClassName: nginx\n  rules:\n    - host: foreign.test\n      http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: web, port: {{number: 80}}}}}}}}]}}\n"
    ));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        b.get(&ctl.url("foreign.test", "/")).await.status,
        StatusCode::NOT_FOUND
    );
    // The Service deleted: the route stays but denies, and says why.
    c.kube.ok(&["delete", "service", "web", "-n", &c.ns], None);
    ctl.expect_status(&mut b, "other.test", "denies", StatusCode::FORBIDDEN)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_annotation_denies_only_its_route_and_raises_a_warning_event() {
    let c = Corner::with_upstream("web", "ok").await;
    let ctl = Controller::start(&c, &[]).await;
    c.public_ingress("good", "good.test", "web");
    c.ingress(
        "bad",
        "bad.test",
        "web",
        &[
            ("jetbridge.dev/allow_public_unauthenticated_access", "true"),
            ("jetbridge.dev/pass_identity_header", "true"),
        ],
    );
    c.ingress(
        "badpolicy",
        "badpolicy.test",
        "web",
        &[(
            "jetbridge.dev/policy",
            "allow:\n  or:\n    - emial: {is: a@b.c}\n",
        )],
    );
    let mut b = api_client();
    ctl.expect_status(&mut b, "good.test", "serves", StatusCode::OK)
        .await;
    ctl.expect_status(&mut b, "bad.test", "denies", StatusCode::FORBIDDEN)
        .await;
    ctl.expect_status(&mut b, "badpolicy.test", "denies", StatusCode::FORBIDDEN)
        .await;

    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let out = c.kube.ok(
            &["get", "events.events.k8s.io", "-n", &c.ns, "-o", "json"],
            None,
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let items = v["items"].as_array().cloned().unwrap_or_default();
        let on = |name: &str| {
            items
                .iter()
                .any(|e| e["regarding"]["name"] == name && e["type"] == "Warning")
        };
        if on("bad") && on("badpolicy") || Instant::now() > deadline {
            break items;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let note = |name: &str| {
        events
            .iter()
            .filter(|e| e["regarding"]["name"] == name && e["regarding"]["kind"] == "Ingress")
            .map(|e| format!("{} {} {}", e["type"], e["reason"], e["note"]))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let bad = note("bad");
    assert!(
        bad.contains("Warning") && bad.contains("InvalidRoute"),
        "{bad}"
    );
    assert!(
        bad.contains("did you mean \\\"pass_identity_headers\\\""),
        "{bad}"
    );
    assert!(
        note("badpolicy").contains("unknown criterion"),
        "{}",
        note("badpolicy")
    );
    assert!(note("good").contains("Programmed"), "{}", note("good"));
    assert!(!note("good").contains("Warning"), "{}", note("good"));
    // Once per problem, not per resync: a later unrelated change adds none.
    let count = |items: &[serde_json::Value]| {
        items
            .iter()
            .filter(|e| e["regarding"]["name"] == "bad")
            .count()
    };
    let before = count(&events);
    c.ingress(
        "good",
        "good.test",
        "web",
        &[
            ("jetbridge.dev/allow_public_unauthenticated_access", "true"),
            ("jetbridge.dev/timeout", "10s"),
        ],
    );
    tokio::time::sleep(Duration::from_secs(1)).await;
    let out = c.kube.ok(
        &["get", "events.events.k8s.io", "-n", &c.ns, "-o", "json"],
        None,
    );
    let after: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(count(after["items"].as_array().unwrap()), before);
    // The controller's own log names the object.
    assert!(
        ctl.log()
            .iter()
            .any(|l| l.contains(&format!("Ingress {}/bad", c.ns))),
        "{:#?}",
        ctl.log()
    );
}

/// A session cookie for `host` sealed with the bootstrap Secret's cookie secret.
pub(super) fn mint_cookie(c: &Corner, host: &str, sub: &str, email: &str, groups: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.yaml");
    std::fs::write(&cfg, format!("cookie_secret: {}\n", cookie_secret(c))).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_jetbridge"))
        .args([
            "mint-session",
            "--config",
            cfg.to_str().unwrap(),
            "--host",
            host,
            "--sub",
            sub,
            "--email",
            email,
            "--groups",
            groups,
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// `jsonpath` of the corner's object `kind/name` (`None` while kubectl
/// cannot read it).
pub(super) fn jsonpath(c: &Corner, kind: &str, name: &str, path: &str) -> Option<String> {
    let (ok, out, _) = c.kube.kubectl(
        &[
            "get",
            kind,
            name,
            "-n",
            &c.ns,
            "-o",
            &format!("jsonpath={path}"),
        ],
        None,
    );
    ok.then_some(out)
}

/// The key `key` of the bootstrap Secret the controller made, decoded
/// (`None` while there is no such Secret or key).
fn bootstrap_value(c: &Corner, key: &str) -> Option<String> {
    use base64::Engine as _;
    let value = jsonpath(
        c,
        "secret",
        "jetbridge-bootstrap",
        &format!("{{.data.{key}}}"),
    )?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(value.trim())
        .unwrap();
    Some(String::from_utf8(bytes).unwrap()).filter(|v| !v.is_empty())
}

/// Who holds the leader Lease (`None` while there is no Lease).
fn lease_holder(c: &Corner) -> Option<String> {
    jsonpath(c, "lease", "jetbridge-leader", "{.spec.holderIdentity}")
}

/// The `cookie_secret` of the bootstrap Secret the controller made.
fn cookie_secret(c: &Corner) -> String {
    bootstrap_value(c, "cookie_secret").expect("the bootstrap Secret has a cookie_secret")
}

pub(super) fn with_cookie(host: &str, cookie: &str) -> Browser {
    let mut b = api_client();
    b.jar
        .entry(host.into())
        .or_default()
        .insert("_jetbridge".into(), cookie.into());
    b
}

/// A Policy `name` in `ns` whose one allow rule is the criterion `rule`.
fn one_rule_policy(ns: &str, name: &str, rule: &str) -> String {
    format!(
        "apiVersion: jetbridge.dev/v1\nkind: Policy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  allow:\n    or:\n      - {rule}\n"
    )
}

/// What the Policy tests start from: Service `app`, the Policy `staff`
/// allowing example.com, a controller, Ingresses `one.test` and `two.test`
/// naming the Policies `refs`, and alice's browser on each host (alice is
/// allowed on `one.test` once served).
async fn policy_corner(refs: [&str; 2]) -> (Corner, Controller, Browser, Browser) {
    let c = Corner::with_upstream("app", "app").await;
    c.kube.apply(&one_rule_policy(
        &c.ns,
        "staff",
        "domain: {is: example.com}",
    ));
    let ctl = Controller::start(&c, &[]).await;
    for (name, policy) in [("one", refs[0]), ("two", refs[1])] {
        c.ingress(
            name,
            &format!("{name}.test"),
            "app",
            &[("jetbridge.dev/policy_ref", policy)],
        );
    }
    let alice = |host: &str| {
        with_cookie(
            host,
            &mint_cookie(&c, host, "alice", "alice@example.com", "ops"),
        )
    };
    let (mut a1, a2) = (alice("one.test"), alice("two.test"));
    ctl.expect_status(&mut a1, "one.test", "allows alice", StatusCode::OK)
        .await;
    (c, ctl, a1, a2)
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_policy_object_changes_every_referencing_route_and_its_status() {
    let (c, ctl, mut a1, mut a2) = policy_corner(["staff", "staff"]).await;
    let ns = c.ns.clone();
    let policy = |rule: &str| one_rule_policy(&ns, "staff", rule);
    ctl.expect_status(&mut a2, "two.test", "allows alice", StatusCode::OK)
        .await;
    let accepted = |c: &Corner| {
        c.kube.ok(
            &["get", "policy.jetbridge.dev", "staff", "-n", &c.ns, "-o", "jsonpath={.status.conditions[0].status} {.status.conditions[0].reason} {.status.conditions[0].observedGeneration} {.status.conditions[0].message}"],
            None,
        )
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !accepted(&c).starts_with("True Compiled 1") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        accepted(&c).starts_with("True Compiled 1"),
        "{}",
        accepted(&c)
    );

    // Edit the Policy only: both routes follow, the Ingresses are untouched.
    c.kube.apply(&policy("groups: {has: admins}"));
    ctl.expect_status(&mut a1, "one.test", "denies alice", StatusCode::FORBIDDEN)
        .await;
    ctl.expect_status(&mut a2, "two.test", "denies alice", StatusCode::FORBIDDEN)
        .await;

    // A broken edit: Accepted=False with the located error, routes deny.
    c.kube.apply(&policy("emial: {is: alice@example.com}"));
    let deadline = Instant::now() + Duration::from_secs(20);
    while !accepted(&c).starts_with("False InvalidPolicy 3") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let status = accepted(&c);
    assert!(status.starts_with("False InvalidPolicy 3"), "{status}");
    assert!(
        status.contains("unknown criterion \"emial\" (did you mean \"email\"?)"),
        "{status}"
    );
    // `kubectl get` shows the column.
    let table = c
        .kube
        .ok(&["get", "policies.jetbridge.dev", "-n", &c.ns], None);
    assert!(
        table.contains("ACCEPTED") && table.contains("False"),
        "{table}"
    );

    // Fixed again; a second Policy ORed in; deleting one leaves a deny.
    c.kube.apply(&policy("email: {is: alice@example.com}"));
    ctl.expect_status(&mut a1, "one.test", "allows alice", StatusCode::OK)
        .await;
    c.kube.ok(
        &["delete", "policy.jetbridge.dev", "staff", "-n", &c.ns],
        None,
    );
    ctl.expect_status(
        &mut a1,
        "one.test",
        "denies (policy gone)",
        StatusCode::FORBIDDEN,
    )
    .await;
}

/// Decisions on a `policy_ref` route: each is one decision-log line naming
/// the Policy object and its rule (or no rule), never the cookie, and the
/// per-Policy counters in `/metrics` move.
#[tokio::test(flavor = "multi_thread")]
async fn decisions_on_a_policy_ref_route_name_the_policy_object_and_are_counted() {
    let (c, ctl, _a1, _a2) = policy_corner(["staff", "staff"]).await;
    let bob_cookie = mint_cookie(&c, "one.test", "bob", "bob@elsewhere.net", "ops");
    let mut bob = with_cookie("one.test", &bob_cookie);
    ctl.expect_status(&mut bob, "one.test", "denies bob", StatusCode::FORBIDDEN)
        .await;
    ctl.wait_for_log(|l| l.contains("jetbridge::authorize") && l.contains("\"user\":\"bob\""))
        .await;
    let lines: Vec<serde_json::Value> = ctl
        .log()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "jetbridge::authorize")
        .collect();
    let route = format!("{}/one/1", c.ns);
    let alice = lines
        .iter()
        .find(|l| l["user"] == "alice" && l["allow"] == true)
        .unwrap_or_else(|| panic!("{lines:#?}"));
    assert_eq!(alice["route-id"], route.as_str());
    assert_eq!(alice["policy"], format!("{}/staff", c.ns).as_str());
    assert_eq!(alice["rule"], "rule 1");
    assert_eq!(alice["reason"], "rule 1 allow matched");
    assert_eq!(alice["email"], "alice@example.com");
    let bob_line = lines.iter().find(|l| l["user"] == "bob").unwrap();
    assert_eq!(bob_line["allow"], false);
    assert_eq!(bob_line["reason"], "no allow rule matched");
    assert!(bob_line.get("policy").is_none() && bob_line.get("rule").is_none());
    assert!(
        !ctl.log().join("\n").contains(&bob_cookie[..24]),
        "a cookie was logged"
    );
    let metrics = Browser::new()
        .get(&format!("http://127.0.0.1:{}/metrics", ctl.internal))
        .await
        .body;
    let count = |policy: &str, decision: &str| -> f64 {
        let series = format!(
            "jetbridge_policy_decisions_total{{route=\"{route}\",policy=\"{policy}\",decision=\"{decision}\"}} "
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&series))
            .unwrap_or_else(|| panic!("no {series} in {metrics}"))
            .parse()
            .unwrap()
    };
    assert!(count(&format!("{}/staff", c.ns), "allow") >= 1.0);
    assert!(count("-", "deny") >= 1.0);

    // A route whose annotations do not compile is refused before its rules
    // are asked, and that refusal has its line, with the Event's reason.
    c.ingress(
        "bad",
        "bad.test",
        "app",
        &[
            ("jetbridge.dev/policy_ref", "staff"),
            (
                "jetbridge.dev/set_request_headers",
                "{\"bad header\": \"x\"}",
            ),
        ],
    );
    let alice = mint_cookie(&c, "bad.test", "alice", "alice@example.com", "ops");
    let mut alice = with_cookie("bad.test", &alice);
    ctl.expect_status(&mut alice, "bad.test", "refuses", StatusCode::FORBIDDEN)
        .await;
    ctl.wait_for_log(|l| l.contains("jetbridge::authorize") && l.contains("invalid route: "))
        .await;
    let line = ctl
        .log()
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v["target"] == "jetbridge::authorize" && v["host"] == "bad.test")
        .unwrap();
    assert_eq!(line["allow"], false);
    let reason = line["reason"].as_str().unwrap();
    assert!(reason.contains("set_request_headers"), "{line}");
    assert!(
        line.get("rule").is_none() && line.get("policy").is_none(),
        "{line}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_nested_too_deep_is_refused_alone_while_other_policies_keep_updating() {
    let (c, ctl, mut a1, mut a2) = policy_corner(["staff", "deep"]).await;
    let ns = c.ns.clone();
    let staff = |rule: &str| one_rule_policy(&ns, "staff", rule);
    // Nested maps (which `managedFields` mirrors) and nested lists, far
    // deeper than a JSON reader allows by default, in one object the API
    // server stores as it is.
    let maps = format!(
        "{}{{\"email\": {{\"is\": \"alice@example.com\"}}}}{}",
        "{\"and\": ".repeat(150),
        "}".repeat(150)
    );
    let lists = format!(
        "{}{{\"email\": {{\"is\": \"alice@example.com\"}}}}{}",
        "{\"or\": [".repeat(100),
        "]}".repeat(100)
    );
    c.kube.apply(&format!(
        "{{\"apiVersion\": \"jetbridge.dev/v1\", \"kind\": \"Policy\", \"metadata\": {{\"name\": \"deep\", \"namespace\": \"{ns}\"}}, \"spec\": {{\"allow\": {maps}, \"rules\": [{{\"allow\": {lists}}}]}}}}"
    ));
    let status = |c: &Corner, name: &str| {
        c.kube.ok(
            &["get", "policy.jetbridge.dev", name, "-n", &c.ns, "-o", "jsonpath={.status.conditions[0].status} {.status.conditions[0].reason} {.status.conditions[0].message}"],
            None,
        )
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !status(&c, "deep").starts_with("False InvalidPolicy") && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let deep = status(&c, "deep");
    assert!(deep.starts_with("False InvalidPolicy"), "{deep}");
    assert!(deep.contains("nested more than"), "{deep}");
    assert!(
        deep.len() < 1024,
        "the message does not quote the spec: {deep}"
    );
    ctl.expect_status(
        &mut a2,
        "two.test",
        "denies (its Policy is invalid)",
        StatusCode::FORBIDDEN,
    )
    .await;

    // The other Policy still follows its edits, both ways.
    c.kube.apply(&staff("groups: {has: admins}"));
    ctl.expect_status(&mut a1, "one.test", "denies alice", StatusCode::FORBIDDEN)
        .await;
    c.kube.apply(&staff("email: {is: alice@example.com}"));
    ctl.expect_status(&mut a1, "one.test", "allows alice again", StatusCode::OK)
        .await;
    assert!(
        ctl.log().iter().all(|l| !l.contains("watch failed")),
        "no watch failed: {:#?}",
        ctl.log()
    );

    // Repaired, the deep Policy is accepted and its route follows.
    c.kube.ok(
        &["delete", "policy.jetbridge.dev", "deep", "-n", &c.ns],
        None,
    );
    c.kube
        .apply(&staff("email: {is: alice@example.com}").replace("name: staff", "name: deep"));
    ctl.expect_status(
        &mut a2,
        "two.test",
        "allows alice (repaired)",
        StatusCode::OK,
    )
    .await;
}

/// `type reason note` of each Event on the object `kind/name`, one a line.
pub(super) fn event_lines(c: &Corner, kind: &str, name: &str) -> String {
    events_on(c, kind, name)
        .iter()
        .map(|e| {
            format!(
                "{} {} {}",
                e["type"].as_str().unwrap_or(""),
                e["reason"].as_str().unwrap_or(""),
                e["note"].as_str().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Waits up to 30 s for the Events on `kind/name` to satisfy `want`.
pub(super) async fn wait_for_events(
    c: &Corner,
    kind: &str,
    name: &str,
    want: impl Fn(&str) -> bool,
) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let events = event_lines(c, kind, name);
        if want(&events) || Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_setting_under_both_prefixes_warns_when_equal_and_denies_when_conflicting() {
    let c = Corner::with_upstream("web", "app").await;
    let ctl = Controller::start(&c, &[]).await;
    let (jb, pom) = ("jetbridge.dev", "ingress.pomerium.io");
    let both = |key: &str, a: &'static str, b: &'static str| {
        [(format!("{jb}/{key}"), a), (format!("{pom}/{key}"), b)]
    };
    let policy_yaml = "allow:\n  or:\n    - email: {is: alice@example.com}\n";
    let policy_json = r#"{"allow": {"or": [{"email": {"is": "alice@example.com"}}]}}"#;
    let other_json = r#"{"allow": {"or": [{"email": {"is": "bob@example.com"}}]}}"#;
    // name → (annotations, equal?)
    let cases = [
        (
            "same-bool",
            both("allow_public_unauthenticated_access", "true", "True"),
            true,
        ),
        (
            "same-list",
            both(
                "allowed_users",
                "alice@example.com, carol@example.com",
                r#"["alice@example.com", "carol@example.com"]"#,
            ),
            true,
        ),
        (
            "same-policy",
            both("policy", policy_yaml, policy_json),
            true,
        ),
        (
            "diff-bool",
            both("allow_public_unauthenticated_access", "true", "false"),
            false,
        ),
        (
            "diff-list",
            both("allowed_users", "alice@example.com", "carol@example.com"),
            false,
        ),
        (
            "diff-policy",
            both("policy", policy_yaml, other_json),
            false,
        ),
    ];
    for (name, annotations, _) in &cases {
        let refs: Vec<(&str, &str)> = annotations.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        c.ingress(name, &format!("{name}.test"), "web", &refs);
    }
    for (name, annotations, equal) in &cases {
        let host = format!("{name}.test");
        let mut b = with_cookie(
            &host,
            &mint_cookie(&c, &host, "alice", "alice@example.com", "ops"),
        );
        let want = if *equal {
            StatusCode::OK
        } else {
            StatusCode::FORBIDDEN
        };
        ctl.expect(&mut b, &host, "decides", |r| r.status == want)
            .await;
        let key = annotations[0].0.split_once('/').unwrap().1;
        let (reason, text) = if *equal {
            ("DuplicateAnnotation", "to the same value")
        } else {
            ("InvalidRoute", "to different values")
        };
        let events = wait_for_events(&c, "Ingress", name, |e| e.contains(reason)).await;
        let line = events
            .lines()
            .find(|l| l.contains(reason))
            .unwrap_or_else(|| panic!("{name}: no {reason} Event: {events}"));
        assert!(line.starts_with("Warning"), "{name}: {line}");
        assert!(
            line.contains(&format!(
                "annotations {pom}/{key} and {jb}/{key} set {key} {text}"
            )),
            "{name}: {line}"
        );
        if *equal {
            assert!(!events.contains("InvalidRoute"), "{name}: {events}");
        }
    }
    // A route with only one prefix is untouched by the other routes' problems.
    c.ingress(
        "one",
        "one.test",
        "web",
        &[(&format!("{jb}/allow_public_unauthenticated_access"), "true")],
    );
    let mut b = api_client();
    ctl.expect_status(&mut b, "one.test", "serves", StatusCode::OK)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_policy_with_lint_warnings_says_so_in_its_status_and_a_warning_event() {
    let c = Corner::new(Kube::get());
    let _ctl = Controller::start(&c, &[]).await;
    let ns = c.ns.clone();
    c.kube.apply(&one_rule_policy(&ns, "never", "reject: true"));
    c.kube
        .apply(&one_rule_policy(&ns, "clean", "domain: {is: example.com}"));
    c.kube.apply(&format!(
        "apiVersion: jetbridge.dev/v1\nkind: Policy\nmetadata: {{name: empty, namespace: {ns}}}\nspec: {{}}\n"
    ));
    let status = |name: &str| {
        c.kube.ok(
            &["get", "policy.jetbridge.dev", name, "-n", &ns, "-o", "jsonpath={.status.conditions[0].status} {.status.conditions[0].reason} {.status.conditions[0].message}"],
            None,
        )
    };
    let wait_status = |name: &'static str, prefix: &'static str| {
        let status = &status;
        async move {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !status(name).starts_with(prefix) && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            status(name)
        }
    };
    let never = wait_status("never", "True CompiledWithWarnings").await;
    assert_eq!(
        never,
        "True CompiledWithWarnings the rules compile with warnings: rule 1, allow.or[0].reject: `reject` under allow never matches"
    );
    let empty = wait_status("empty", "True CompiledWithWarnings").await;
    assert!(
        empty.ends_with("the policy has no rules and denies every request"),
        "{empty}"
    );
    assert_eq!(
        wait_status("clean", "True Compiled ").await,
        "True Compiled the rules compile"
    );
    let events = wait_for_events(&c, "Policy", "never", |e| e.contains("PolicyWarning")).await;
    assert!(
        events.contains("Warning PolicyWarning policy: rule 1, allow.or[0].reject: `reject` under allow never matches"),
        "{events}"
    );
    let table = c
        .kube
        .ok(&["get", "policies.jetbridge.dev", "-n", &ns], None);
    assert!(table.contains("CompiledWithWarnings"), "{table}");

    // Fixed, the Policy is plainly Compiled again; the clean one never warned.
    c.kube.apply(&one_rule_policy(&ns, "never", "accept: true"));
    assert_eq!(
        wait_status("never", "True Compiled ").await,
        "True Compiled the rules compile"
    );
    assert!(!event_lines(&c, "Policy", "clean").contains("Warning"));
}

/// A corner with Ingress `app` for `app.test`, open to any signed-in user,
/// in front of the echo upstream `app`.
pub(super) async fn signed_in_app() -> Corner {
    let c = Corner::with_upstream("app", "app").await;
    c.ingress(
        "app",
        "app.test",
        "app",
        &[("jetbridge.dev/allow_any_authenticated_user", "true")],
    );
    c
}

#[tokio::test(flavor = "multi_thread")]
async fn replicas_started_at_once_share_one_bootstrap_secret_and_sessions() {
    let c = signed_in_app().await;
    let (r1, r2, r3) = tokio::join!(
        Controller::start(&c, &[]),
        Controller::start(&c, &[]),
        Controller::start(&c, &[])
    );
    let secrets = c
        .kube
        .ok(&["get", "secrets", "-n", &c.ns, "-o", "name"], None);
    assert_eq!(
        secrets
            .lines()
            .filter(|l| l.contains("jetbridge-bootstrap"))
            .count(),
        1,
        "{secrets}"
    );
    let (j1, j2, j3) = (r1.jwks().await, r2.jwks().await, r3.jwks().await);
    assert_eq!(j1, j2);
    assert_eq!(j1, j3);
    let kid_of = |pem: &str| {
        jetbridge::identity::KeySet::parse(pem)
            .unwrap()
            .signer()
            .kid()
            .to_string()
    };
    let kid = kid_of(&bootstrap_value(&c, "signing_key").expect("a signing key"));
    assert!(j1.contains(&kid), "the JWKS publishes the Secret's key");

    // A cookie minted with the shared secret works on every replica.
    let cookie = mint_cookie(&c, "app.test", "alice", "alice@example.com", "");
    for r in [&r1, &r2, &r3] {
        let mut b = with_cookie("app.test", &cookie);
        r.expect(&mut b, "app.test", "serves", |x| x.status == StatusCode::OK)
            .await;
    }

    // Deleted: re-created with the same key; corrupted: the last good key stays.
    c.kube.ok(
        &["delete", "secret", "jetbridge-bootstrap", "-n", &c.ns],
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    let pem = loop {
        if let Some(pem) = bootstrap_value(&c, "signing_key") {
            break pem;
        }
        assert!(
            Instant::now() < deadline,
            "bootstrap Secret was not re-created"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    use base64::Engine as _;
    assert_eq!(kid_of(&pem), kid, "same kid after re-creation");
    // Patches the bootstrap Secret (a JSON patch); false with kubectl's
    // message if the API server refused it.
    let patch_secret = |patch: &str| {
        let (ok, _, err) = c.kube.kubectl(
            &[
                "patch",
                "secret",
                "jetbridge-bootstrap",
                "-n",
                &c.ns,
                "--type=json",
                "-p",
                patch,
            ],
            None,
        );
        assert!(ok, "{patch}: {err}");
    };
    let replace = |path: &str, value: &str| {
        format!(r#"[{{"op": "replace", "path": "{path}", "value": {value}}}]"#)
    };
    let b64 = |b: &[u8]| {
        format!(
            "\"{}\"",
            base64::engine::general_purpose::STANDARD.encode(b)
        )
    };
    // Every replica still publishes `j1` and accepts the session.
    let keeps_last_good_keys = async |what: &str| {
        for r in [&r1, &r2, &r3] {
            assert_eq!(
                r.jwks().await,
                j1,
                "{what}: the last good keys stay published"
            );
            let mut b = with_cookie("app.test", &cookie);
            assert_eq!(
                b.get(&r.url("app.test", "/")).await.status,
                StatusCode::OK,
                "{what}: sessions keep working"
            );
        }
    };
    patch_secret(&replace("/data/signing_key", &b64(b"not a key")));
    tokio::time::sleep(Duration::from_secs(2)).await;
    keeps_last_good_keys("garbage key").await;
    let events = c.kube.ok(
        &["get", "events.events.k8s.io", "-n", &c.ns, "-o", "json"],
        None,
    );
    assert!(events.contains("InvalidBootstrapSecret"), "{events}");

    // Every other way of breaking it keeps the last good keys too: emptied,
    // a key of the wrong curve, RSA, a short cookie secret, a value that is
    // not base64 text.
    let openssl = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "openssl {args:?}: {out:?}");
        out.stdout
    };
    let p384 = openssl(&["ecparam", "-name", "secp384r1", "-genkey", "-noout"]);
    let rsa = openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:2048",
    ]);
    let breakages = [
        ("emptied", replace("/data", "{}")),
        ("a P-384 key", replace("/data/signing_key", &b64(&p384))),
        ("an RSA key", replace("/data/signing_key", &b64(&rsa))),
        (
            "a short cookie_secret",
            replace("/data/cookie_secret", &b64(b"short")),
        ),
        (
            "a one-byte shared_secret",
            replace("/data/shared_secret", &b64(&[0])),
        ),
    ];
    // The Secret as it was, with the original key back in place.
    let restore = {
        let current: serde_json::Value = serde_json::from_str(&c.kube.ok(
            &[
                "get",
                "secret",
                "jetbridge-bootstrap",
                "-n",
                &c.ns,
                "-o",
                "json",
            ],
            None,
        ))
        .unwrap();
        let mut data = current["data"].clone();
        data["signing_key"] =
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(&pem));
        replace("/data", &data.to_string())
    };
    for (what, patch) in &breakages {
        // Back to the original keys, then broken another way.
        patch_secret(&restore);
        tokio::time::sleep(Duration::from_millis(500)).await;
        patch_secret(patch);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        keeps_last_good_keys(what).await;
    }

    // A deliberate rotation: a new key in the Secret is served by every
    // replica, the old one stays published next to it (assertions already
    // minted still verify), and the JWKS is the same everywhere.
    let next_pem = jetbridge::identity::secrets::Bootstrap::generate().signing_key_pem;
    let next_kid = jetbridge::identity::KeySet::parse(&next_pem)
        .unwrap()
        .signer()
        .kid()
        .to_string();
    patch_secret(&restore);
    patch_secret(&replace("/data/signing_key", &b64(next_pem.as_bytes())));
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let all = [r1.jwks().await, r2.jwks().await, r3.jwks().await];
        let both = all
            .iter()
            .all(|j| j.contains(&next_kid) && j.contains(&kid));
        if both && all[0] == all[1] && all[0] == all[2] {
            break;
        }
        assert!(Instant::now() < deadline, "rotation not converged: {all:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_server_outage_and_expired_watches_keep_serving_and_changes_made_meanwhile_are_picked_up()
 {
    // Its own API server: stopping it must not disturb other tests.
    let c = Corner::new(Kube::own());
    c.echo_pods("blue", Some("blue"), 1);
    c.echo_pods("green", Some("green"), 1);
    c.select("web", "blue");
    c.public_ingress("web", "web.test", "web");
    let ctl = Controller::start(&c, &[]).await;
    let mut b = api_client();
    ctl.expect(&mut b, "web.test", "serves blue", |r| r.body == "blue")
        .await;

    c.kube.stop_apiserver();
    tokio::time::sleep(Duration::from_secs(3)).await;
    for _ in 0..5 {
        let r = b.get(&ctl.url("web.test", "/")).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (StatusCode::OK, "blue"),
            "serves through the outage"
        );
    }
    assert_eq!(
        Browser::new()
            .get(&format!("http://127.0.0.1:{}/readyz", ctl.internal))
            .await
            .status,
        StatusCode::OK
    );

    // Meanwhile etcd moves on and forgets its history: the watches the
    // controller resumes are too old (410 Gone) and it lists again, serving
    // the last good configuration while it does, never an empty one.
    c.kube.compact_etcd();
    c.kube.restart_apiserver();
    let expired = |l: &str| {
        l.contains("watch failed")
            && (l.contains("too old resource version") || l.contains("code: 410"))
    };
    ctl.wait_for_log(expired).await;
    println!("{:?}", ctl.log().iter().find(|l| expired(l)));
    for _ in 0..5 {
        let r = b.get(&ctl.url("web.test", "/")).await;
        assert_eq!(
            (r.status, r.body.as_str()),
            (StatusCode::OK, "blue"),
            "serves through the relist"
        );
    }
    c.select("web", "green");
    c.public_ingress("late", "late.test", "web");
    ctl.expect(&mut b, "web.test", "serves green", |r| r.body == "green")
        .await;
    ctl.expect_status(&mut b, "late.test", "serves", StatusCode::OK)
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ingress_tls_secret_is_served_for_its_own_hosts_only() {
    let c = Corner::with_upstream("app", "app").await;
    let ctl = Controller::start(&c, &[]).await;
    let shop = certificate(&["shop.test"]);
    c.tls_secret("shop-tls", &shop);
    let ns = &c.ns;
    let class = &c.class;
    let tls_ingress = |name: &str, host: &str, secret: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: {ns}\n  annotations: {{jetbridge.dev/allow_public_unauthenticated_access: \"true\"}}\nspec:\n  ingressClassName: {class}\n  tls: [{{hosts: [{host}], secretName: {secret}}}]\n  rules:\n    - host: {host}\n      http: {{paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: app, port: {{number: 80}}}}}}}}]}}\n"
        )
    };
    c.kube.apply(&tls_ingress("shop", "shop.test", "shop-tls"));
    let mut b = api_client();
    ctl.expect_status(&mut b, "shop.test", "serves", StatusCode::OK)
        .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while served_certificate(ctl.https, "shop.test").await != shop.2 {
        assert!(
            Instant::now() < deadline,
            "SNI shop.test never served the Secret's certificate"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Another host gets the default certificate, not this one.
    assert_ne!(
        served_certificate(ctl.https, "elsewhere.test").await,
        shop.2
    );

    // A younger Ingress claiming the same host with its own Secret does not
    // take the host's certificate over. Creation times have one-second
    // resolution (a tie goes to namespace/name order, which would favour
    // "rogue"), so it is made at least a second later.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let rogue = certificate(&["shop.test"]);
    c.tls_secret("rogue-tls", &rogue);
    c.kube
        .apply(&tls_ingress("rogue", "shop.test", "rogue-tls"));
    // Once the controller has seen it (its duplicate-claim warning is
    // logged), the host still serves the older Ingress's certificate.
    let seen = format!("Ingress {ns}/rogue");
    ctl.wait_for_log(|l| l.contains(&seen) && l.contains("older"))
        .await;
    assert_eq!(served_certificate(ctl.https, "shop.test").await, shop.2);

    // The Secret rotated: the new certificate is served without a restart.
    let renewed = certificate(&["shop.test"]);
    c.tls_secret("shop-tls", &renewed);
    let deadline = Instant::now() + Duration::from_secs(20);
    while served_certificate(ctl.https, "shop.test").await != renewed.2 {
        assert!(
            Instant::now() < deadline,
            "the renewed certificate was never served"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_lease_holder_writes_ingress_status_and_another_takes_over() {
    let c = Corner::with_upstream("app", "app").await;
    c.public_ingress("app", "app.test", "app");
    let lease_args =
        |addr: &'static str| vec!["--publish-address", addr, "--lease-duration-secs", "3"];
    let a = Controller::start_with(
        &c.kube,
        &c.ns,
        &c.controller_name,
        &lease_args("10.0.0.1"),
        &[("POD_NAME", "replica-a")],
    )
    .await;
    let b = Controller::start_with(
        &c.kube,
        &c.ns,
        &c.controller_name,
        &lease_args("10.0.0.2"),
        &[("POD_NAME", "replica-b")],
    )
    .await;
    let holder = || lease_holder(&c).expect("the leader Lease");
    let status = || {
        c.kube.ok(
            &[
                "get",
                "ingress",
                "app",
                "-n",
                &c.ns,
                "-o",
                "jsonpath={.status.loadBalancer.ingress[*].ip}",
            ],
            None,
        )
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while status().trim().is_empty() {
        assert!(
            Instant::now() < deadline,
            "no status written; a: {:#?}",
            a.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let leader = holder();
    let expected = if leader == "replica-a" {
        "10.0.0.1"
    } else {
        "10.0.0.2"
    };
    assert!(leader == "replica-a" || leader == "replica-b", "{leader}");
    // Stable: the other replica never overwrites it.
    for _ in 0..10 {
        assert_eq!(status(), expected, "leader {leader}");
        assert_eq!(holder(), leader);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    // Every replica serves traffic, leader or not.
    for r in [&a, &b] {
        assert_eq!(
            api_client().get(&r.url("app.test", "/")).await.status,
            StatusCode::OK
        );
    }
    // The leader goes away (killed, no goodbye): the other takes over.
    let (gone, other, other_addr) = if leader == "replica-a" {
        (a, b, "10.0.0.2")
    } else {
        (b, a, "10.0.0.1")
    };
    drop(gone);
    let deadline = Instant::now() + Duration::from_secs(30);
    while status() != other_addr {
        assert!(
            Instant::now() < deadline,
            "no takeover; holder {}; log {:#?}",
            holder(),
            other.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_ne!(holder(), leader);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_sign_out_on_one_replica_revokes_the_session_on_the_others() {
    let c = signed_in_app().await;
    let (a, b) = tokio::join!(Controller::start(&c, &[]), Controller::start(&c, &[]));
    let cookie = mint_cookie(&c, "app.test", "alice", "alice@example.com", "");
    let other = mint_cookie(&c, "app.test", "bob", "bob@example.com", "");
    for r in [&a, &b] {
        let mut x = with_cookie("app.test", &cookie);
        r.expect(&mut x, "app.test", "serves", |y| y.status == StatusCode::OK)
            .await;
    }
    let mut out = with_cookie("app.test", &cookie);
    let r = out
        .request("POST", &a.url("app.test", "/.pomerium/sign_out"), None)
        .await;
    assert_eq!(r.status, StatusCode::FOUND);
    let signed_out = Instant::now();
    let mut copy = with_cookie("app.test", &cookie);
    assert_eq!(
        copy.get(&a.url("app.test", "/")).await.status,
        StatusCode::UNAUTHORIZED
    );
    b.expect(&mut copy, "app.test", "refuses the revoked session", |y| {
        y.status == StatusCode::UNAUTHORIZED
    })
    .await;
    eprintln!(
        "sign-out on replica A -> refused on replica B after {:?}",
        signed_out.elapsed()
    );
    // Other sessions are untouched, and a replica started later learns it too.
    assert_eq!(
        with_cookie("app.test", &other)
            .get(&b.url("app.test", "/"))
            .await
            .status,
        StatusCode::OK
    );
    let late = Controller::start(&c, &[]).await;
    let mut x = with_cookie("app.test", &cookie);
    late.expect(&mut x, "app.test", "refuses the revoked session", |y| {
        y.status == StatusCode::UNAUTHORIZED
    })
    .await;
    let cm = c.kube.ok(
        &[
            "get",
            "configmap",
            "jetbridge-revocations",
            "-n",
            &c.ns,
            "-o",
            "jsonpath={.data}",
        ],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&cm).unwrap();
    assert_eq!(v.as_object().unwrap().len(), 1, "one revoked id: {cm}");
}

#[tokio::test(flavor = "multi_thread")]
async fn secret_backed_annotations_follow_their_secrets() {
    let c = Corner::new(Kube::get());
    let (up, seen) = echo_upstream().await;
    c.service("app", &[up]);
    let ns = &c.ns;
    let secret = |value: &str| {
        format!(
            "apiVersion: v1\nkind: Secret\nmetadata: {{name: hdrs, namespace: {ns}}}\ntype: Opaque\nstringData: {{X-From-Secret: {value}}}\n"
        )
    };
    c.kube.apply(&secret("one"));
    c.ingress(
        "app",
        "hdr.test",
        "app",
        &[
            ("jetbridge.dev/allow_public_unauthenticated_access", "true"),
            ("ingress.pomerium.io/set_request_headers_secret", "hdrs"),
        ],
    );
    let ctl = Controller::start(&c, &[]).await;
    let mut b = api_client();
    let header_is = |want: &'static str| {
        let seen = seen.clone();
        move |r: &Reply| {
            r.status == StatusCode::OK
                && seen
                    .lock()
                    .unwrap()
                    .last()
                    .and_then(|h| h.get("x-from-secret").cloned())
                    .is_some_and(|v| v == want)
        }
    };
    ctl.expect(
        &mut b,
        "hdr.test",
        "carries the Secret's header",
        header_is("one"),
    )
    .await;
    // The Secret edited: the header follows, without touching the Ingress.
    c.kube.apply(&secret("two"));
    ctl.expect(
        &mut b,
        "hdr.test",
        "carries the edited header",
        header_is("two"),
    )
    .await;
    // The Secret deleted: the route fails closed and says why.
    c.kube.ok(&["delete", "secret", "hdrs", "-n", ns], None);
    ctl.expect_status(&mut b, "hdr.test", "is refused", StatusCode::FORBIDDEN)
        .await;
    let missing = format!("Secret {ns}/hdrs not found");
    ctl.wait_for_log(|l| l.contains(&missing)).await;
}

/// Polls `guarded.test`-style requests over fresh connections (a pooled one
/// may predate the route's CA) until `want` holds.
async fn eventually_as(
    ctl: &Controller,
    host: &str,
    client: Option<&harness::proxy::ClientCert>,
    what: &str,
    want: impl Fn(u16) -> bool,
) -> harness::proxy::Resp {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], ctl.https));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (r, _) = harness::proxy::get_as(addr, host, host, "/", client, false).await;
        if want(r.status) {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{host}: never {what}; last {} {}\nlog: {:#?}",
            r.status,
            r.text(),
            ctl.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn client_certificate_secrets_work_both_ways_and_a_missing_one_denies_only_its_route() {
    harness::proxy::init();
    let c = Corner::new(Kube::get());
    let ns = c.ns.clone();
    // An upstream that requires the proxy's client certificate.
    let server = harness::proxy::test_cert();
    let clients = harness::proxy::TestCa::new("upstream clients");
    let proxy_cert = clients.client("jetbridge-proxy");
    let (up, subjects) = harness::proxy::echo_https_mtls("mtls", &server, &clients.pem).await;
    c.service("secure", &[up.addr]);
    c.service("open", &[named_upstream("open").await]);
    c.kube.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: upstream-ca, namespace: {ns}}}\ntype: Opaque\nstringData:\n  ca.crt: {:?}\n",
        server.ca_pem
    ));
    c.tls_secret(
        "proxy-client",
        &(
            proxy_cert.cert_pem.clone(),
            proxy_cert.key_pem.clone(),
            Vec::new(),
        ),
    );
    let public = ("jetbridge.dev/allow_public_unauthenticated_access", "true");
    c.ingress(
        "upstream",
        "up.test",
        "secure",
        &[
            public,
            ("jetbridge.dev/secure_upstream", "true"),
            ("ingress.pomerium.io/tls_custom_ca_secret", "upstream-ca"),
            ("ingress.pomerium.io/tls_client_secret", "proxy-client"),
            // Its certificate names localhost; the Service reaches it at the
            // host's address in the cluster network.
            ("ingress.pomerium.io/tls_server_name", "localhost"),
        ],
    );
    // The CA Secret does not exist yet.
    c.ingress(
        "guarded",
        "guarded.test",
        "open",
        &[
            public,
            (
                "ingress.pomerium.io/tls_downstream_client_ca_secret",
                "browsers",
            ),
        ],
    );
    c.ingress("plain", "open.test", "open", &[public]);
    let ctl = Controller::start(&c, &[]).await;
    let mut b = api_client();
    let r = ctl
        .expect(&mut b, "up.test", "reaches the mTLS upstream", |r| {
            r.status == StatusCode::OK
        })
        .await;
    assert!(r.body.contains("\"server\":\"mtls\""), "{}", r.body);
    assert!(
        subjects
            .lock()
            .unwrap()
            .iter()
            .all(|s| s == "CN=jetbridge-proxy"),
        "{subjects:?}"
    );
    ctl.expect_status(
        &mut b,
        "guarded.test",
        "denies (no CA Secret)",
        StatusCode::FORBIDDEN,
    )
    .await;
    ctl.expect_status(&mut b, "open.test", "serves", StatusCode::OK)
        .await;
    // The missing Secret is a Warning Event on that Ingress only.
    let missing = format!("Secret {ns}/browsers not found");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = c.kube.ok(
            &["get", "events.events.k8s.io", "-n", &ns, "-o", "json"],
            None,
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        let items = v["items"].as_array().cloned().unwrap_or_default();
        let warned = |name: &str| {
            items.iter().any(|e| {
                e["regarding"]["name"] == name
                    && e["type"] == "Warning"
                    && e["reason"] == "InvalidRoute"
                    && e["note"].as_str().is_some_and(|n| n.contains(&missing))
            })
        };
        if warned("guarded") {
            assert!(!warned("plain") && !warned("upstream"));
            break;
        }
        assert!(Instant::now() < deadline, "no Warning Event: {items:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // The CA Secret appears: the route requires a certificate from it.
    let browsers = harness::proxy::TestCa::new("browsers");
    let alice = browsers.client("alice");
    let mallory = harness::proxy::TestCa::new("rogue").client("alice");
    c.kube.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata: {{name: browsers, namespace: {ns}}}\ntype: Opaque\nstringData:\n  ca.crt: {:?}\n",
        browsers.pem
    ));
    eventually_as(&ctl, "guarded.test", Some(&alice), "serves alice", |s| {
        s == 200
    })
    .await;
    let r = eventually_as(&ctl, "guarded.test", None, "asks for a certificate", |s| {
        s == 495
    })
    .await;
    assert!(r.text().contains("client certificate"), "{}", r.text());
    eventually_as(
        &ctl,
        "guarded.test",
        Some(&mallory),
        "refuses mallory",
        |s| s == 495,
    )
    .await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], ctl.https));
    let (r, asked) = harness::proxy::get_as(addr, "open.test", "open.test", "/", None, false).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(asked.count(), 0, "open.test asked for a client certificate");
    // No key material in the log.
    let key_body: String = proxy_cert
        .key_pem
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for line in ctl.log() {
        assert!(!line.contains("PRIVATE KEY"), "{line}");
        for part in key_body.as_bytes().chunks(16) {
            assert!(!line.contains(std::str::from_utf8(part).unwrap()), "{line}");
        }
    }
}

/// A route key, its annotation value and its config-file value.
type Setting = (&'static str, &'static str, &'static str);

/// What a request through a proxy showed: its status, what the upstream saw
/// (path and the headers that the route settings decide) and the response
/// headers the route sets, as one comparable map.
async fn observe(b: &mut Browser, url: &str, headers: &[(&str, &str)]) -> Vec<(String, String)> {
    let r = b.request_with("GET", url, headers).await;
    let mut seen = vec![("status".to_string(), r.status.as_u16().to_string())];
    for h in [
        "x-resp",
        "x-frame-options",
        "strict-transport-security",
        "x-xss-protection",
    ] {
        let v = r.headers.get(h).map(|v| v.to_str().unwrap_or("?"));
        seen.push((format!("response {h}"), v.unwrap_or("-").to_string()));
    }
    let Ok(upstream) = serde_json::from_str::<serde_json::Value>(&r.body) else {
        return seen;
    };
    seen.push((
        "upstream path".into(),
        upstream["path"].as_str().unwrap_or("?").into(),
    ));
    let h = &upstream["headers"];
    for name in [
        "host",
        "x-set",
        "x-drop",
        "x-keep",
        "x-pomerium-claim-email",
        "x-pomerium-claim-groups",
    ] {
        let v = h[name].as_str().unwrap_or("-");
        // The port differs between the two proxies; the host must not.
        let v = if name == "host" {
            v.split(':').next().unwrap_or(v)
        } else {
            v
        };
        seen.push((format!("upstream {name}"), v.to_string()));
    }
    let assertion = h["x-pomerium-jwt-assertion"].as_str();
    seen.push((
        "upstream ${pomerium.jwt} copy is the assertion".into(),
        (assertion.is_some() && h["x-jwt-copy"].as_str() == assertion).to_string(),
    ));
    let email = assertion.and_then(|t| {
        use base64::Engine as _;
        let payload = t.split('.').nth(1)?;
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(payload)
            .ok()?;
        let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
        Some(format!("{} for {}", v["email"], v["aud"]))
    });
    seen.push((
        "upstream assertion".into(),
        email.unwrap_or_else(|| "-".into()),
    ));
    seen
}

/// Pomerium's route settings given as `ingress.pomerium.io/` annotations on
/// Ingresses in the real API server behave as the same settings in a config
/// file: the same requests through the controller and through a config-file
/// proxy (sharing the cookie secret, so one session cookie works on both)
/// show the same status, forwarded path and headers and response headers.
#[tokio::test(flavor = "multi_thread")]
async fn pomerium_annotations_behave_in_the_cluster_as_the_same_keys_in_a_config_file() {
    let c = Corner::new(Kube::get());
    let (up, _) = echo_upstream().await;
    c.service("app", &[up]);
    let ctl = Controller::start(&c, &[]).await;
    let policy = "allow:\n  or:\n    - email: {is: alice@example.com}\n";
    let routes: [(&str, Vec<Setting>); 3] = [
        (
            "rw.test",
            vec![
                ("allow_public_unauthenticated_access", "true", "true"),
                ("prefix_rewrite", "/base/", "/base/"),
                (
                    "set_request_headers",
                    r#"{"X-Set": "one"}"#,
                    r#"{"X-Set": "one"}"#,
                ),
                ("remove_request_headers", r#"["X-Drop"]"#, r#"["X-Drop"]"#),
                (
                    "set_response_headers",
                    r#"{"X-Resp": "r", "X-Frame-Options": "DENY"}"#,
                    r#"{"X-Resp": "r", "X-Frame-Options": "DENY"}"#,
                ),
                ("host_rewrite", "internal.example", "internal.example"),
                ("timeout", "5s", "5s"),
                ("load_balancing_policy", "random", "random"),
            ],
        ),
        (
            "re.test",
            vec![
                ("allow_public_unauthenticated_access", "true", "true"),
                ("regex_rewrite_pattern", "^/api/(.*)$", r#""^/api/(.*)$""#),
                ("regex_rewrite_substitution", r"/v2/\1", r#""/v2/\\1""#),
                ("host_rewrite_header", "X-Target-Host", "X-Target-Host"),
                (
                    "set_response_headers",
                    r#"{"disable": "true"}"#,
                    r#"{"disable": "true"}"#,
                ),
            ],
        ),
        (
            "id.test",
            vec![
                (
                    "policy",
                    policy,
                    r#"{"allow": {"or": [{"email": {"is": "alice@example.com"}}]}}"#,
                ),
                ("pass_identity_headers", "true", "true"),
                ("jwt_claims_headers", "email,groups", "email,groups"),
                (
                    "set_request_headers",
                    r#"{"X-Jwt-Copy": "${pomerium.jwt}"}"#,
                    r#"{"X-Jwt-Copy": "${pomerium.jwt}"}"#,
                ),
                ("preserve_host_header", "true", "true"),
            ],
        ),
    ];
    let mut yaml = ConfigFile {
        cookie_secret: Some(cookie_secret(&c)),
        ..Default::default()
    };
    for (host, keys) in &routes {
        let name = host.split('.').next().unwrap();
        let annotations: Vec<(String, &str)> = keys
            .iter()
            .map(|(k, a, _)| (format!("ingress.pomerium.io/{k}"), *a))
            .collect();
        let refs: Vec<(&str, &str)> = annotations.iter().map(|(k, v)| (k.as_str(), *v)).collect();
        c.ingress(name, host, "app", &refs);
        let file_keys = keys.iter().map(|(k, _, v)| (k, v));
        yaml.routes
            .push(route_from_keys(host, &format!("http://{up}"), file_keys));
    }
    let file = start_proxy(bind_https().await, &yaml).await;

    let alice = mint_cookie(&c, "id.test", "alice", "alice@example.com", "ops");
    let bob = mint_cookie(&c, "id.test", "bob", "bob@example.com", "ops");
    let as_user = |cookie: &str| with_cookie("id.test", cookie);
    ctl.expect(&mut api_client(), "rw.test", "serves", |r| {
        r.status == StatusCode::OK
    })
    .await;
    ctl.expect(&mut as_user(&alice), "id.test", "allows alice", |r| {
        r.status == StatusCode::OK
    })
    .await;
    ctl.expect(&mut api_client(), "re.test", "serves", |r| {
        r.status == StatusCode::OK
    })
    .await;

    let headers = [
        ("X-Drop", "gone"),
        ("X-Keep", "kept"),
        ("X-Target-Host", "t.example"),
    ];
    let cases: [(&str, &str, Option<&str>); 7] = [
        ("rw.test", "/x/y?q=1", None),
        ("rw.test", "/", None),
        ("re.test", "/api/items?n=2", None),
        ("re.test", "/other", None),
        ("id.test", "/who", Some(&alice)),
        ("id.test", "/who", Some(&bob)),
        ("id.test", "/who", None),
    ];
    let mut results = Vec::new();
    for (host, path, cookie) in cases {
        let client = || match cookie {
            Some(c) => as_user(c),
            None => api_client(),
        };
        let in_cluster = observe(&mut client(), &ctl.url(host, path), &headers).await;
        let from_file = observe(
            &mut client(),
            &format!("https://{host}:{}{path}", file.port),
            &headers,
        )
        .await;
        assert_eq!(
            in_cluster, from_file,
            "{host}{path}: annotations (left) and config file (right) differ"
        );
        results.push(in_cluster);
    }
    let get = |i: usize, what: &str| -> String {
        results[i]
            .iter()
            .find(|(k, _)| k == what)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{what} not in {:?}", results[i]))
    };
    // And each behaves as the setting says (so agreeing on nothing fails).
    assert_eq!(get(0, "upstream path"), "/base/x/y?q=1");
    assert_eq!(get(1, "upstream path"), "/base/");
    assert_eq!(get(0, "upstream host"), "internal.example");
    assert_eq!(get(0, "upstream x-set"), "one");
    assert_eq!(get(0, "upstream x-drop"), "-");
    assert_eq!(get(0, "upstream x-keep"), "kept");
    assert_eq!(get(0, "response x-resp"), "r");
    assert_eq!(get(0, "response x-frame-options"), "DENY");
    assert_eq!(get(0, "response x-xss-protection"), "1; mode=block");
    assert_eq!(get(2, "upstream path"), "/v2/items?n=2");
    assert_eq!(get(3, "upstream path"), "/other");
    assert_eq!(get(2, "upstream host"), "t.example");
    assert_eq!(get(2, "response x-xss-protection"), "-");
    assert_eq!(get(2, "response x-frame-options"), "-");
    assert_eq!(get(4, "status"), "200");
    assert_eq!(get(4, "upstream host"), "id.test");
    assert_eq!(
        get(4, "upstream x-pomerium-claim-email"),
        "alice@example.com"
    );
    assert_eq!(get(4, "upstream x-pomerium-claim-groups"), "ops");
    assert_eq!(
        get(4, "upstream ${pomerium.jwt} copy is the assertion"),
        "true"
    );
    assert_eq!(
        get(4, "upstream assertion"),
        r#""alice@example.com" for "id.test""#
    );
    assert_eq!(get(5, "status"), "403");
    assert_eq!(get(6, "status"), "401");
}

/// The Events regarding `kind` `name` in the corner's namespace.
pub(super) fn events_on(c: &Corner, kind: &str, name: &str) -> Vec<serde_json::Value> {
    let out = c.kube.ok(
        &["get", "events.events.k8s.io", "-n", &c.ns, "-o", "json"],
        None,
    );
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    v["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .filter(|e| e["regarding"]["kind"] == kind && e["regarding"]["name"] == name)
        .collect()
}

/// When an Event was last seen: its series' last observation, else its time.
fn last_seen(e: &serde_json::Value) -> String {
    e["series"]["lastObservedTime"]
        .as_str()
        .or(e["eventTime"].as_str())
        .unwrap_or_default()
        .to_string()
}

/// The newest Event on Ingress `name` as "type reason note", as `kubectl
/// get events --sort-by` would show it last.
fn newest_event(c: &Corner, name: &str) -> String {
    events_on(c, "Ingress", name)
        .iter()
        .max_by_key(|e| last_seen(e))
        .map(|e| {
            format!(
                "{} {} {}",
                e["type"].as_str().unwrap_or_default(),
                e["reason"].as_str().unwrap_or_default(),
                e["note"].as_str().unwrap_or_default()
            )
        })
        .unwrap_or_default()
}

/// Polls `probe` until `want` holds on its value (or panics after 30 s).
async fn wait_for(what: &str, probe: impl Fn() -> String, want: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let v = probe();
        if want(&v) {
            return v;
        }
        assert!(Instant::now() < deadline, "never {what}; last: {v}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// A jsonpath of Ingress `name`.
fn ingress_field(c: &Corner, name: &str, path: &str) -> String {
    jsonpath(c, "ingress", name, path).unwrap_or_default()
}

/// The `jetbridge.dev/status` annotation of Ingress `name`.
fn status_annotation(c: &Corner, name: &str) -> String {
    ingress_field(c, name, "{.metadata.annotations.jetbridge\\.dev/status}")
}

/// The addresses in `status.loadBalancer` of Ingress `name`.
fn load_balancer(c: &Corner, name: &str) -> String {
    ingress_field(c, name, "{.status.loadBalancer.ingress[*].ip}")
}

/// The annotation that makes a route public.
const PUBLIC: (&str, &str) = ("jetbridge.dev/allow_public_unauthenticated_access", "true");

/// Ingress `name` on `host` to Service `svc` port `port` with `annotations`.
fn ingress_to_port(
    c: &Corner,
    name: &str,
    host: &str,
    svc: &str,
    port: u16,
    annotations: &[(&str, &str)],
) {
    let ns = &c.ns;
    let class = &c.class;
    let mut ann = String::from("    jetbridge.dev/timeout: 30s\n");
    for (k, v) in annotations {
        ann.push_str(&format!("    {k}: {}\n", serde_json::to_string(v).unwrap()));
    }
    // A replace, not an apply: annotations dropped from the manifest go away.
    let yaml = format!(
        "apiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: {name}\n  namespace: {ns}\n  annotations:\n{ann}spec:\n  ingressClassName: {class}\n  rules:\n    - host: {host}\n      http:\n        paths:\n          - {{path: /, pathType: Prefix, backend: {{service: {{name: {svc}, port: {{number: {port}}}}}}}}}\n"
    );
    let (_, exists, _) = c
        .kube
        .kubectl(&["get", "ingress", name, "-n", ns, "-o", "name"], None);
    if exists.trim().is_empty() {
        c.kube.ok(&["create", "-f", "-"], Some(&yaml));
    } else {
        c.kube.ok(&["replace", "-f", "-"], Some(&yaml));
    }
}

/// One way to break an Ingress: what its Event says, its backend port, its annotations.
type Break<'a> = (&'a str, u16, &'a [(&'a str, &'a str)]);

/// The Warning Events of an Ingress broken three different ways in turn
/// (all with the reason InvalidRoute): each problem is an Event of its own
/// and the newest Event always carries the current message, also when an
/// earlier problem comes back.
#[tokio::test(flavor = "multi_thread")]
async fn each_new_problem_on_an_ingress_is_its_newest_event() {
    let c = Corner::with_upstream("web", "app").await;
    let ctl = Controller::start(&c, &[]).await;
    let mut b = api_client();
    // (what the Event says, the backend port, the annotations)
    let breaks: [Break; 3] = [
        (
            "pass_identity_header",
            80,
            &[PUBLIC, ("jetbridge.dev/pass_identity_header", "true")],
        ),
        (
            "unknown criterion \"emial\"",
            80,
            &[(
                "jetbridge.dev/policy",
                "allow:\n  or:\n    - emial: {is: a@b.c}\n",
            )],
        ),
        ("has no port 81", 81, &[PUBLIC]),
    ];
    for (says, port, annotations) in breaks {
        ingress_to_port(&c, "app", "app.test", "web", port, annotations);
        let newest = wait_for(says, || newest_event(&c, "app"), |v| v.contains(says)).await;
        assert!(newest.starts_with("Warning InvalidRoute"), "{newest}");
    }
    let notes: Vec<String> = events_on(&c, "Ingress", "app")
        .iter()
        .filter(|e| e["type"] == "Warning")
        .map(|e| e["note"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(notes.len(), 3, "{notes:#?}");
    // An earlier problem again is the newest Event again (its series moves on).
    ingress_to_port(&c, "app", "app.test", "web", 80, breaks[0].2);
    wait_for(
        "the first problem again",
        || newest_event(&c, "app"),
        |v| v.contains("pass_identity_header"),
    )
    .await;
    ctl.expect_status(&mut b, "app.test", "denies", StatusCode::FORBIDDEN)
        .await;
}

/// A served Ingress that breaks shows `Invalid` and the message in its
/// status annotation and loses its address; once fixed it gets a Normal
/// Event saying so, `Programmed` and its address back. The annotation the
/// controller writes is not read as a route setting.
#[tokio::test(flavor = "multi_thread")]
async fn a_broken_ingress_shows_invalid_without_an_address_and_a_fix_is_announced() {
    let c = Corner::with_upstream("web", "app").await;
    let ctl = Controller::start(&c, &["--publish-address", "10.0.0.9"]).await;
    let mut b = api_client();
    ingress_to_port(&c, "app", "app.test", "web", 80, &[PUBLIC]);
    ctl.expect_status(&mut b, "app.test", "serves", StatusCode::OK)
        .await;
    wait_for(
        "an address",
        || load_balancer(&c, "app"),
        |v| v == "10.0.0.9",
    )
    .await;

    ingress_to_port(&c, "app", "app.test", "web", 81, &[PUBLIC]);
    ctl.expect_status(&mut b, "app.test", "denies", StatusCode::FORBIDDEN)
        .await;
    wait_for("no address", || load_balancer(&c, "app"), |v| v.is_empty()).await;
    let state = wait_for(
        "Invalid",
        || status_annotation(&c, "app"),
        |v| v.starts_with("Invalid: "),
    )
    .await;
    assert!(state.contains("has no port 81"), "{state}");

    ingress_to_port(&c, "app", "app.test", "web", 80, &[PUBLIC]);
    let newest = wait_for(
        "a recovery Event",
        || newest_event(&c, "app"),
        |v| v.starts_with("Normal Programmed"),
    )
    .await;
    assert!(newest.contains("fixed"), "{newest}");
    wait_for(
        "Programmed",
        || status_annotation(&c, "app"),
        |v| v == "Programmed",
    )
    .await;
    wait_for(
        "the address back",
        || load_balancer(&c, "app"),
        |v| v == "10.0.0.9",
    )
    .await;
    ctl.expect_status(&mut b, "app.test", "serves again", StatusCode::OK)
        .await;
    assert!(
        !ctl.log().iter().any(|l| l.contains("jetbridge.dev/status")),
        "{:#?}",
        ctl.log()
    );
    ctl.assert_no_debug_options();
}

/// A controller replica named `who` with a short Lease.
async fn replica(c: &Corner, who: &str) -> Controller {
    Controller::start_with(
        &c.kube,
        &c.ns,
        &c.controller_name,
        &["--lease-duration-secs", "3"],
        &[("POD_NAME", who)],
    )
    .await
}

/// Two replicas: each problem is one Event (written by the Lease holder),
/// not one per replica; when the holder dies, the other takes over, repeats
/// nothing already reported and reports a new problem.
#[tokio::test(flavor = "multi_thread")]
async fn two_replicas_report_each_problem_once_and_the_survivor_reports_after_a_takeover() {
    let c = Corner::with_upstream("web", "app").await;
    let a = replica(&c, "replica-a").await;
    let b = replica(&c, "replica-b").await;
    ingress_to_port(&c, "one", "one.test", "web", 81, &[PUBLIC]);
    wait_for(
        "a Warning on one",
        || newest_event(&c, "one"),
        |v| v.contains("has no port 81"),
    )
    .await;
    // Both replicas have translated it (each logs it) ...
    for r in [&a, &b] {
        r.wait_for_log(|l| l.contains("has no port 81")).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    // ... but one Event was written, seen once.
    let once = |name: &str| {
        let events = events_on(&c, "Ingress", name);
        let warnings: Vec<&serde_json::Value> =
            events.iter().filter(|e| e["type"] == "Warning").collect();
        assert_eq!(warnings.len(), 1, "{events:#?}");
        assert!(warnings[0]["series"].is_null(), "{events:#?}");
        warnings[0]["reportingInstance"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let writer = once("one");
    let holder = lease_holder(&c).expect("the leader Lease");
    assert_eq!(writer, holder);

    // The holder dies without a goodbye; the other takes over.
    let (gone, survivor, other) = if holder == "replica-a" {
        (a, b, "replica-b")
    } else {
        (b, a, "replica-a")
    };
    drop(gone);
    ingress_to_port(&c, "two", "two.test", "web", 81, &[PUBLIC]);
    wait_for(
        "a Warning on two",
        || newest_event(&c, "two"),
        |v| v.contains("has no port 81"),
    )
    .await;
    assert_eq!(once("two"), other);
    // What the old holder reported is not reported again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(once("one"), holder);
    survivor.assert_no_debug_options();
}

/// `status.loadBalancer` follows what jetbridge serves and the publish
/// Service: a replica that stops while the Service is there leaves the
/// address (another carries on); an Ingress that is no longer ours (its
/// IngressClass deleted) loses it at once; and when the Service is deleted
/// and the last replica stops (as `helm uninstall` does), that replica clears
/// it. The Service lives in a namespace the controller does not watch, so
/// only the shutdown notices its deletion.
#[tokio::test(flavor = "multi_thread")]
async fn the_ingress_address_is_cleared_when_the_publish_service_goes_away() {
    let c = Corner::with_upstream("web", "app").await;
    let release = format!("{}-rel", c.ns);
    c.kube.ok(&["create", "namespace", &release], None);
    c.kube.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{name: proxy, namespace: {release}}}\nspec:\n  ports: [{{name: https, port: 443, targetPort: 8443, protocol: TCP}}]\n"
    ));
    let cluster_ip = c.kube.ok(
        &[
            "get",
            "service",
            "proxy",
            "-n",
            &release,
            "-o",
            "jsonpath={.spec.clusterIP}",
        ],
        None,
    );
    assert!(!cluster_ip.is_empty());
    let publish = format!("{release}/proxy");
    let args = [
        "--publish-service",
        publish.as_str(),
        "--lease-duration-secs",
        "3",
    ];
    let first = Controller::start(&c, &args).await;
    ingress_to_port(&c, "app", "app.test", "web", 80, &[PUBLIC]);
    wait_for(
        "the Service's address",
        || load_balancer(&c, "app"),
        |v| v == cluster_ip,
    )
    .await;

    // A replica leaving while the Service is there changes nothing.
    first.terminate();
    assert_eq!(load_balancer(&c, "app"), cluster_ip);

    // The Ingress is no longer ours: its address goes at once.
    let last = Controller::start(&c, &args).await;
    last.wait_for_log(|l| l.contains("leader: this replica now writes"))
        .await;
    let class = c
        .kube
        .ok(&["get", "ingressclass", &c.class, "-o", "yaml"], None);
    c.kube.ok(&["delete", "ingressclass", &c.class], None);
    wait_for(
        "the address cleared",
        || load_balancer(&c, "app"),
        |v| v.is_empty(),
    )
    .await;
    c.kube.ok(&["create", "-f", "-"], Some(&class));
    wait_for(
        "the address back",
        || load_balancer(&c, "app"),
        |v| v == cluster_ip,
    )
    .await;

    // The release goes: the Service is deleted, then the last replica stops.
    c.kube
        .ok(&["delete", "service", "proxy", "-n", &release], None);
    let log = last.terminate();
    assert_eq!(load_balancer(&c, "app"), "", "{log:#?}");
    assert!(
        log.iter()
            .any(|l| l.contains("status.loadBalancer cleared on shutdown")
                && l.contains("\"ingresses\":1")),
        "{log:#?}"
    );
    let _ = c
        .kube
        .kubectl(&["delete", "namespace", &release, "--wait=false"], None);
}

/// The chart installs where `discovery.k8s.io/v1` EndpointSlices are served
/// (a Kubernetes 1.20 API server with its EndpointSlice stand-in), and
/// refuses with a message naming the API once they are not (the stand-in
/// removed: a plain 1.20 cluster, older than the 1.21 that serves them).
#[tokio::test(flavor = "multi_thread")]
async fn the_chart_refuses_a_cluster_without_discovery_v1_endpoint_slices() {
    let kube = Kube::own_version(Some("1.20.2"));
    let chart = format!("{}/charts/jetbridge", env!("CARGO_MANIFEST_DIR"));
    let dry_run = || {
        // A fresh discovery cache each time: the served APIs change below.
        let cache = tempfile::tempdir().unwrap();
        run_command(
            Command::new(&kube.env["HELM"])
                .args(["install", "jb", &chart, "--namespace", "default"])
                .arg("--dry-run=server")
                .env("KUBECONFIG", kube.kubeconfig())
                .env("KUBECACHEDIR", cache.path())
                .env("HELM_CACHE_HOME", cache.path()),
            None,
        )
    };
    let (ok, out, err) = dry_run();
    assert!(ok, "{err}{out}");

    kube.ok(&["delete", "crd", "endpointslices.discovery.k8s.io"], None);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let cache = tempfile::tempdir().unwrap();
        let (_, versions, _) = run_command(
            Command::new(&kube.env["KUBECTL"])
                .arg("api-versions")
                .env("KUBECONFIG", kube.kubeconfig())
                .env("KUBECACHEDIR", cache.path()),
            None,
        );
        if !versions.lines().any(|l| l == "discovery.k8s.io/v1") {
            break;
        }
        assert!(Instant::now() < deadline, "{versions}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (ok, out, err) = dry_run();
    assert!(!ok, "{out}");
    assert!(
        err.contains(
            "jetbridge needs Kubernetes 1.21 or newer: it reads discovery.k8s.io/v1 EndpointSlices"
        ),
        "{err}"
    );
}

/// A kubeconfig for the ServiceAccount `sa` of the corner's namespace, with
/// `rules` (a Role's, in that namespace) and the IngressClass reads every
/// controller needs; the [`Kube`] to run a controller with it.
fn restricted_kube(c: &Corner, sa: &str, rules: &str) -> (Kube, tempfile::TempDir) {
    let ns = &c.ns;
    let cluster_role = format!("{ns}-{sa}");
    c.kube.apply(&format!(
        "apiVersion: v1\nkind: ServiceAccount\nmetadata: {{name: {sa}, namespace: {ns}}}\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: {sa}, namespace: {ns}}}\nrules:\n{rules}---\napiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {{name: {sa}, namespace: {ns}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: Role, name: {sa}}}\nsubjects: [{{kind: ServiceAccount, name: {sa}, namespace: {ns}}}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {{name: {cluster_role}}}\nrules: [{{apiGroups: [networking.k8s.io], resources: [ingressclasses], verbs: [get, list, watch]}}]\n---\napiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRoleBinding\nmetadata: {{name: {cluster_role}}}\nroleRef: {{apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: {cluster_role}}}\nsubjects: [{{kind: ServiceAccount, name: {sa}, namespace: {ns}}}]\n"
    ));
    let token = c
        .kube
        .ok(&["create", "token", sa, "-n", ns, "--duration=1h"], None);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: \"{}\", certificate-authority: \"{}\"}}}}]\nusers: [{{name: u, user: {{token: \"{}\"}}}}]\ncontexts: [{{name: c, context: {{cluster: c, user: u, namespace: {ns}}}}}]\ncurrent-context: c\n",
            c.kube.env["APISERVER_URL"],
            c.kube.env["CA_FILE"],
            token.trim()
        ),
    )
    .unwrap();
    let mut env = c.kube.env.clone();
    env.insert("KUBECONFIG".into(), path.to_string_lossy().into_owned());
    let kube = Kube {
        env,
        dir: c.kube.dir.clone(),
        own: None,
    };
    (kube, dir)
}

/// A replica that does not hold the Lease writes nothing on the
/// controller's behalf: run with an identity that may read everything and
/// take part in the election but may write no Event and no status, it is
/// never refused, while the holder writes the Policy condition and the
/// Events.
#[tokio::test(flavor = "multi_thread")]
async fn a_replica_without_the_lease_writes_no_event_and_no_status() {
    let c = Corner::with_upstream("web", "app").await;
    let _holder = replica(&c, "holder").await;
    // The first replica takes the Lease (checked below by who wrote the Events).
    let lease = || lease_holder(&c).unwrap_or_default();
    let deadline = Instant::now() + Duration::from_secs(10);
    while lease() != "holder" && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let reads = "- {apiGroups: [networking.k8s.io], resources: [ingresses], verbs: [get, list, watch]}\n\
- {apiGroups: [jetbridge.dev], resources: [policies], verbs: [get, list, watch]}\n\
- {apiGroups: [discovery.k8s.io], resources: [endpointslices], verbs: [get, list, watch]}\n\
- {apiGroups: [\"\"], resources: [services, secrets, configmaps], verbs: [get, list, watch, create]}\n\
- {apiGroups: [\"\"], resources: [configmaps], verbs: [patch]}\n\
- {apiGroups: [coordination.k8s.io], resources: [leases], verbs: [get, create, update]}\n";
    let (reader, _dir) = restricted_kube(&c, "reader", reads);
    let follower = Controller::start_with(
        &reader,
        &c.ns,
        &c.controller_name,
        &["--lease-duration-secs", "3"],
        &[("POD_NAME", "follower")],
    )
    .await;

    c.kube
        .apply(&one_rule_policy(&c.ns, "broken", "emial: {is: a@b.c}"));
    ingress_to_port(&c, "app", "app.test", "web", 81, &[PUBLIC]);
    let condition = || {
        c.kube.ok(
            &[
                "get",
                "policy.jetbridge.dev",
                "broken",
                "-n",
                &c.ns,
                "-o",
                "jsonpath={.status.conditions[0].status}",
            ],
            None,
        )
    };
    wait_for("the Policy condition", condition, |v| v == "False").await;
    wait_for(
        "the Ingress's Event",
        || newest_event(&c, "app"),
        |v| v.contains("has no port 81"),
    )
    .await;
    // The follower saw both problems (it logs them) and wrote nothing.
    follower
        .wait_for_log(|l| l.contains("has no port 81"))
        .await;
    follower
        .wait_for_log(|l| l.contains("unknown criterion"))
        .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let refused: Vec<String> = follower
        .log()
        .into_iter()
        .filter(|l| l.contains("cannot ") || l.to_lowercase().contains("forbidden"))
        .collect();
    assert!(refused.is_empty(), "{refused:#?}");
    for e in events_on(&c, "Ingress", "app") {
        assert_eq!(e["reportingInstance"], "holder", "{e:#}");
    }
    let cluster_role = format!("{}-reader", c.ns);
    let _ = c.kube.kubectl(
        &[
            "delete",
            "clusterrolebinding,clusterrole",
            &cluster_role,
            "--wait=false",
        ],
        None,
    );
}

/// Checks that neither the other namespace's routes nor its certificate
/// answer `app.test`; tells whether the owner's certificate is served.
async fn only_the_owner(ctl: &Controller, own: &[u8], intruder: &[u8]) -> bool {
    let mut b = api_client();
    for u in [ctl.url("app.test", "/"), ctl.url("app.test", "/takeover/x")] {
        let r = b.get(&u).await;
        assert_ne!(r.body, "rogue", "{u} answered by the other namespace");
    }
    let cert = served_certificate(ctl.https, "app.test").await;
    assert_ne!(
        cert, intruder,
        "the other namespace's certificate was served"
    );
    cert == own
}

/// Warning Events on an Ingress, as `reason note` lines.
fn warnings_on(c: &Corner, name: &str) -> String {
    events_on(c, "Ingress", name)
        .iter()
        .filter(|e| e["type"] == "Warning")
        .map(|e| format!("{} {}", e["reason"], e["note"]))
        .collect::<Vec<_>>()
        .join("\n")
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_stays_with_its_namespace_through_intruders_redeploys_and_restarts() {
    let apps = Corner::new(Kube::get());
    let team2 = apps.beside();
    let (app, rogue) = (named_upstream("app").await, named_upstream("rogue").await);
    apps.service("app", &[app]);
    team2.service("rogue", &[rogue]);
    let own = certificate(&["app.test"]);
    let intruder = certificate(&["app.test"]);
    apps.tls_secret("app-tls", &own);
    team2.tls_secret("rogue-tls", &intruder);
    let extra = ["--namespaces", team2.ns.as_str()];
    let mut ctl = Controller::start(&apps, &extra).await;
    apps.public_tls_ingress("web", "app.test", "/", "app", "app-tls");
    let mut b = api_client();
    ctl.expect(&mut b, "app.test", "serves the owner", |r| r.body == "app")
        .await;
    // Creation times have one-second resolution: the intruder is younger.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    team2.public_tls_ingress("takeover", "app.test", "/takeover", "rogue", "rogue-tls");
    team2.public_tls_ingress("root", "app.test", "/", "rogue", "rogue-tls");
    let seen = format!("Ingress {}/takeover", team2.ns);
    ctl.wait_for_log(|l| l.contains(&seen) && l.contains("belongs to namespace"))
        .await;
    assert!(
        only_the_owner(&ctl, &own.2, &intruder.2).await,
        "the owner's certificate is served"
    );
    assert_eq!(b.get(&ctl.url("app.test", "/takeover/x")).await.body, "app");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let w = warnings_on(&team2, "takeover");
        if w.contains("HostConflict") && w.contains(&apps.ns) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no Warning naming the owner: {w}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // A redeploy: delete, wait, re-apply. Throughout the gap the host denies
    // and never serves the other namespace's routes or certificate.
    apps.kube
        .ok(&["delete", "ingress", "web", "-n", &apps.ns], None);
    ctl.expect_status(&mut b, "app.test", "is held", StatusCode::NOT_FOUND)
        .await;
    for _ in 0..10 {
        only_the_owner(&ctl, &own.2, &intruder.2).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The claim is stored where a restarted controller finds it.
    let stored = apps.kube.ok(
        &[
            "get",
            "configmap",
            "jetbridge-host-claims",
            "-n",
            &apps.ns,
            "-o",
            "json",
        ],
        None,
    );
    assert!(
        stored.contains(&format!("\"app.test\": \"{} released=", apps.ns)),
        "{stored}"
    );
    drop(ctl);
    ctl = Controller::start(&apps, &extra).await;
    for _ in 0..10 {
        only_the_owner(&ctl, &own.2, &intruder.2).await;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        b.get(&ctl.url("app.test", "/")).await.status,
        StatusCode::NOT_FOUND
    );

    apps.public_tls_ingress("web", "app.test", "/", "app", "app-tls");
    ctl.expect(&mut b, "app.test", "serves the owner again", |r| {
        r.body == "app"
    })
    .await;
    assert!(only_the_owner(&ctl, &own.2, &intruder.2).await);

    // An administrator hands the host over: delete the owner's Ingress and
    // its stored claim; the other namespace's Ingresses then serve it.
    apps.kube
        .ok(&["delete", "ingress", "web", "-n", &apps.ns], None);
    ctl.expect_status(&mut b, "app.test", "is held", StatusCode::NOT_FOUND)
        .await;
    apps.kube.ok(
        &[
            "patch",
            "configmap",
            "jetbridge-host-claims",
            "-n",
            &apps.ns,
            "--type=json",
            "-p",
            r#"[{"op": "remove", "path": "/data/app.test"}]"#,
        ],
        None,
    );
    ctl.expect(&mut b, "app.test", "goes to the other namespace", |r| {
        r.body == "rogue"
    })
    .await;
}
