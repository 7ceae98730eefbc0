//! Hostile cluster objects: annotations and Policy objects built to break a
//! parser or smuggle configuration, and backends aimed at what a tenant must
//! not reach (the cluster's API server, cloud metadata, jetbridge's own
//! listeners). Each is refused on its own object, every other route keeps
//! serving, and nothing panics. Pure: the same translation the controller
//! runs, on the objects the API server would hand it.

use jetbridge::model::Access;
use jetbridge::translate::cluster::{Cluster, ClusterSettings, from_cluster};
use jetbridge::translate::{GlobalInputs, Inputs, translate};
use std::sync::Arc;

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn ingress(name: &str, host: &str, svc: &str, annotations: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"name": name, "namespace": "t", "annotations": annotations,
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {"ingressClassName": "jetbridge", "rules": [{"host": host, "http": {"paths": [
            {"path": "/", "pathType": "Prefix",
             "backend": {"service": {"name": svc, "port": {"number": 80}}}}]}}]}
    })
}

fn service(ns: &str, name: &str, spec: serde_json::Value) -> serde_json::Value {
    serde_json::json!({"metadata": {"name": name, "namespace": ns}, "spec": spec})
}

fn slice(ns: &str, svc: &str, addresses: &[&str]) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"name": format!("{svc}-1"), "namespace": ns,
                     "labels": {"kubernetes.io/service-name": svc}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": addresses, "conditions": {"ready": true}}]
    })
}

struct World {
    cluster: Cluster,
}

impl World {
    fn new() -> World {
        let mut cluster = Cluster {
            classes: vec![Arc::new(obj(serde_json::json!({
                "metadata": {"name": "jetbridge"},
                "spec": {"controller": "jetbridge.dev/ingress-controller"}
            })))],
            ..Cluster::default()
        };
        cluster.services.push(Arc::new(obj(service(
            "t",
            "good",
            serde_json::json!({"ports": [{"name": "http", "port": 80}]}),
        ))));
        cluster
            .slices
            .push(Arc::new(obj(slice("t", "good", &["10.1.2.3"]))));
        cluster.ingresses.push(Arc::new(obj(ingress(
            "good",
            "good.test",
            "good",
            serde_json::json!({"jetbridge.dev/allow_public_unauthenticated_access": "true"}),
        ))));
        World { cluster }
    }

    fn translate(&self, settings: &ClusterSettings) -> jetbridge::model::Snapshot {
        let out = from_cluster(&self.cluster, settings);
        translate(&Inputs {
            global: GlobalInputs::for_test(),
            routes: out.routes,
            diagnostics: out.diagnostics,
        })
    }
}

/// The route of `host`, and the diagnostics naming Ingress `name`.
fn outcome(snap: &jetbridge::model::Snapshot, host: &str, name: &str) -> (Option<bool>, String) {
    let valid = snap
        .routes
        .iter()
        .find(|r| format!("{:?}", r.host).contains(host))
        .map(|r| !matches!(r.access, Access::Invalid(_)));
    let notes = snap
        .diagnostics
        .iter()
        .filter(|d| d.object.name == name)
        .map(|d| d.message.clone())
        .collect::<Vec<_>>()
        .join("; ");
    (valid, notes)
}

fn good_still_serves(snap: &jetbridge::model::Snapshot) {
    let (valid, notes) = outcome(snap, "good.test", "good");
    assert_eq!(valid, Some(true), "the good route: {notes}");
}

#[test]
fn hostile_annotation_values_are_refused_on_their_own_ingress() {
    let nested = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let nested_map = format!("{}1{}", "{a: ".repeat(50_000), "}".repeat(50_000));
    let alias_bomb = {
        let mut y = String::from("a: &a [x, x, x, x, x, x, x, x, x, x]\n");
        for (i, name) in ["b", "c", "d", "e", "f", "g", "h", "i", "j"]
            .iter()
            .enumerate()
        {
            let prev = ["a", "b", "c", "d", "e", "f", "g", "h", "i"][i];
            y.push_str(&format!(
                "{name}: &{name} [*{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}, *{prev}]\n"
            ));
        }
        y
    };
    let big = "x".repeat(1 << 20);
    let cases: Vec<(&str, String)> = vec![
        ("policy", nested.clone()),
        ("policy", nested_map.clone()),
        ("policy", alias_bomb.clone()),
        ("set_request_headers", alias_bomb.clone()),
        (
            "set_request_headers",
            "{X-A: \"v\\r\\nX-Injected: 1\"}".to_string(),
        ),
        ("set_request_headers", "{\"X-A\\nB\": v}".into()),
        ("set_response_headers", format!("{{X-Big: {big}}}")),
        (
            "policy",
            format!("{{allow: {{or: [{{email: {{is: {big}}}}}]}}}}"),
        ),
        ("timeout", "1e400s".into()),
        ("timeout", "-5s".into()),
        (
            "regex_rewrite_pattern",
            "(((((((((((((((((((((x)))))))))))))))))))))){1000}{1000}".into(),
        ),
        ("prefix_rewrite", "/ok\r\n\r\nGET /admin HTTP/1.1".into()),
        ("host_rewrite", "evil.test\r\nX-Injected: 1".into()),
        (
            "policy",
            "{allow: {or: [{no_such_criterion: true}]}}".into(),
        ),
        ("policy_ref", "../other-namespace/policy".into()),
        ("policy_ref", "missing".into()),
        ("allowed_idp_claims", "{groups: {$ne: 1}}".into()),
        (
            "jwt_claims_headers",
            "{\"X-Pomerium-Jwt-Assertion\": email}".into(),
        ),
        ("path_regex", "maybe".into()),
        ("load_balancing_policy", "{$gt: ''}".into()),
    ];
    for (i, (key, value)) in cases.iter().enumerate() {
        let mut w = World::new();
        let name = format!("bad{i}");
        let host = format!("bad{i}.test");
        let mut ann = serde_json::Map::new();
        ann.insert(
            format!("jetbridge.dev/{key}"),
            serde_json::Value::String(value.clone()),
        );
        ann.insert(
            "jetbridge.dev/allow_public_unauthenticated_access".into(),
            if *key == "policy" || *key == "policy_ref" || *key == "allowed_idp_claims" {
                "false".into()
            } else {
                "true".into()
            },
        );
        w.cluster.ingresses.push(Arc::new(obj(ingress(
            &name,
            &host,
            "good",
            serde_json::Value::Object(ann),
        ))));
        let snap = w.translate(&ClusterSettings::default());
        good_still_serves(&snap);
        let (valid, notes) = outcome(&snap, &host, &name);
        let shown: String = value.chars().take(80).collect();
        assert_ne!(valid, Some(true), "{key} = {shown:?}… was accepted");
        assert!(!notes.is_empty(), "{key}: refused without a word");
        assert!(
            notes.len() < 4096,
            "{key}: the message quotes the value: {} bytes",
            notes.len()
        );
    }
}

#[test]
fn backends_aimed_at_the_api_server_metadata_or_jetbridge_itself_are_refused() {
    let mut base = World::new();
    // The cluster's API server, as every cluster has it.
    base.cluster.services.push(Arc::new(obj(service(
        "default",
        "kubernetes",
        serde_json::json!({"clusterIP": "10.96.0.1", "ports": [{"name": "https", "port": 443}]}),
    ))));
    base.cluster.slices.push(Arc::new(obj(slice(
        "default",
        "kubernetes",
        &["172.18.0.2"],
    ))));
    let external = |name: &str| serde_json::json!({"type": "ExternalName", "externalName": name, "ports": [{"port": 80}]});
    let plain = serde_json::json!({"ports": [{"name": "http", "port": 80}]});
    let cases: Vec<(&str, serde_json::Value, Option<Vec<&str>>, &str)> = vec![
        (
            "t",
            plain.clone(),
            Some(vec!["169.254.169.254"]),
            "link-local",
        ),
        (
            "t",
            plain.clone(),
            Some(vec!["169.254.170.2"]),
            "link-local",
        ),
        ("t", plain.clone(), Some(vec!["fe80::1"]), "link-local"),
        ("t", plain.clone(), Some(vec!["127.0.0.1"]), "loopback"),
        ("t", plain.clone(), Some(vec!["::1"]), "loopback"),
        ("t", plain.clone(), Some(vec!["0.0.0.0"]), "unicast"),
        ("t", plain.clone(), Some(vec!["224.0.0.1"]), "unicast"),
        (
            "t",
            plain.clone(),
            Some(vec!["10.1.2.3", "172.18.0.2"]),
            "API server",
        ),
        ("t", plain.clone(), Some(vec!["10.96.0.1"]), "API server"),
        (
            "t",
            external("kubernetes.default.svc.cluster.local"),
            None,
            "API server",
        ),
        ("t", external("kubernetes.default"), None, "API server"),
        ("t", external("metadata.google.internal."), None, "metadata"),
        ("t", external("169.254.169.254"), None, "link-local"),
        ("t", external("localhost"), None, "loopback"),
        ("t", external("app.localhost"), None, "loopback"),
        ("default", plain.clone(), None, "API server"),
    ];
    for (i, (ns, spec, addresses, why)) in cases.into_iter().enumerate() {
        let mut w = World {
            cluster: base.cluster.clone(),
        };
        let name = format!("ssrf{i}");
        let host = format!("ssrf{i}.test");
        let svc = if ns == "default" {
            "kubernetes".to_string()
        } else {
            format!("svc{i}")
        };
        if ns != "default" {
            w.cluster
                .services
                .push(Arc::new(obj(service(ns, &svc, spec))));
            if let Some(a) = &addresses {
                w.cluster.slices.push(Arc::new(obj(slice(ns, &svc, a))));
            }
        }
        let mut ing = ingress(
            &name,
            &host,
            &svc,
            serde_json::json!({"jetbridge.dev/allow_public_unauthenticated_access": "true"}),
        );
        ing["metadata"]["namespace"] = ns.into();
        w.cluster.ingresses.push(Arc::new(obj(ing)));
        let snap = w.translate(&ClusterSettings::default());
        good_still_serves(&snap);
        let (valid, notes) = outcome(&snap, &host, &name);
        assert_eq!(valid, Some(false), "case {i} ({why}): {notes}");
        assert!(
            notes.contains(why) && notes.contains("refused"),
            "case {i}: {notes}"
        );
        let r = snap
            .routes
            .iter()
            .find(|r| format!("{:?}", r.host).contains(&host))
            .unwrap();
        assert!(
            r.upstreams.is_empty(),
            "case {i}: no upstream kept: {:?}",
            r.upstreams
        );
    }
    // Loopback is allowed only when the controller says so (out of cluster).
    let mut w = World {
        cluster: base.cluster.clone(),
    };
    w.cluster
        .services
        .push(Arc::new(obj(service("t", "lo", plain))));
    w.cluster
        .slices
        .push(Arc::new(obj(slice("t", "lo", &["127.0.0.1"]))));
    w.cluster.ingresses.push(Arc::new(obj(ingress(
        "lo",
        "lo.test",
        "lo",
        serde_json::json!({"jetbridge.dev/allow_public_unauthenticated_access": "true"}),
    ))));
    let allowed = ClusterSettings {
        allow_loopback_backends: true,
        ..ClusterSettings::default()
    };
    assert_eq!(
        outcome(&w.translate(&allowed), "lo.test", "lo").0,
        Some(true)
    );
    assert_eq!(
        outcome(&w.translate(&ClusterSettings::default()), "lo.test", "lo").0,
        Some(false)
    );
}

#[test]
fn hostile_policy_objects_are_refused_on_their_own_and_their_referrers() {
    let nested = serde_json::Value::String(format!("{}{}", "[".repeat(50_000), "]".repeat(50_000)));
    // Built by hand: `json!` would re-serialise (and recurse through) the value.
    let mut deep = serde_json::json!({"email": {"is": "a@example.com"}});
    for _ in 0..120 {
        let mut m = serde_json::Map::new();
        m.insert("not".into(), serde_json::Value::Array(vec![deep]));
        deep = serde_json::Value::Object(m);
    }
    for (i, spec) in [
        serde_json::json!({"allow": {"or": [{"no_such": true}]}}),
        serde_json::json!({"allow": {"or": [deep]}}),
        serde_json::json!({"allow": nested}),
        serde_json::json!({"rules": [{"allow": {"or": [{"http_path": {"matches": "(unclosed"}}]}}]}),
    ]
    .into_iter()
    .enumerate()
    {
        let mut w = World::new();
        w.cluster.policies.push(Arc::new(obj(serde_json::json!({
            "apiVersion": "jetbridge.dev/v1", "kind": "Policy",
            "metadata": {"name": "p", "namespace": "t", "generation": 1},
            "spec": spec
        }))));
        w.cluster.ingresses.push(Arc::new(obj(ingress(
            "uses",
            "uses.test",
            "good",
            serde_json::json!({"jetbridge.dev/policy_ref": "p"}),
        ))));
        let snap = w.translate(&ClusterSettings::default());
        good_still_serves(&snap);
        let (valid, notes) = outcome(&snap, "uses.test", "uses");
        assert_eq!(valid, Some(false), "case {i}: {notes}");
        assert!(
            snap.diagnostics.iter().any(|d| d.object.kind == "Policy" && d.object.name == "p"),
            "case {i}: the Policy itself is reported"
        );
    }
}

// ---------------------------------------------------------------------------
// Host ownership between namespaces: a tenant never serves paths, nor its
// certificate, on a host another namespace owns; ownership survives the
// owner's redeploy; an administrator's rules and an owner's delegations are
// the only ways in.

/// Several namespaces' Ingresses, translated the way the controller does:
/// each translation starts from the claims the previous one remembered.
struct Tenants {
    cluster: Cluster,
    settings: ClusterSettings,
    now: i64,
}

/// One rule path: (host, path, pathType).
type Rule<'a> = (&'a str, &'a str, &'a str);

fn tenant_ingress(
    ns: &str,
    name: &str,
    created: i64,
    rules: &[Rule<'_>],
    annotations: serde_json::Value,
    tls: Option<(&str, &[&str])>,
) -> serde_json::Value {
    let rules: Vec<serde_json::Value> = rules
        .iter()
        .map(|(host, path, kind)| {
            serde_json::json!({"host": host, "http": {"paths": [{"path": path, "pathType": kind,
                "backend": {"service": {"name": "svc", "port": {"number": 80}}}}]}})
        })
        .collect();
    let created = time::OffsetDateTime::from_unix_timestamp(created)
        .unwrap()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let mut spec = serde_json::json!({"ingressClassName": "jetbridge", "rules": rules});
    if let Some((secret, hosts)) = tls {
        spec["tls"] = serde_json::json!([{"secretName": secret, "hosts": hosts}]);
    }
    serde_json::json!({
        "metadata": {"name": name, "namespace": ns, "annotations": annotations,
                     "creationTimestamp": created},
        "spec": spec
    })
}

fn tls_secret_object(ns: &str, name: &str, names: &[&str]) -> (serde_json::Value, Vec<u8>) {
    use base64::Engine as _;
    let ck =
        rcgen::generate_simple_self_signed(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .unwrap();
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    (
        serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "type": "kubernetes.io/tls",
            "data": {"tls.crt": b64(ck.cert.pem()), "tls.key": b64(ck.signing_key.serialize_pem())}
        }),
        ck.cert.der().to_vec(),
    )
}

impl Tenants {
    fn new(namespaces: &[&str]) -> Tenants {
        let mut cluster = Cluster {
            classes: vec![Arc::new(obj(serde_json::json!({
                "metadata": {"name": "jetbridge"},
                "spec": {"controller": "jetbridge.dev/ingress-controller"}
            })))],
            ..Cluster::default()
        };
        for ns in namespaces {
            cluster.services.push(Arc::new(obj(service(
                ns,
                "svc",
                serde_json::json!({"ports": [{"name": "http", "port": 80}]}),
            ))));
            cluster
                .slices
                .push(Arc::new(obj(slice(ns, "svc", &["10.1.2.3"]))));
        }
        Tenants {
            cluster,
            settings: ClusterSettings::default(),
            now: 1_800_000_000,
        }
    }

    fn add(&mut self, ingress: serde_json::Value) {
        self.cluster.ingresses.push(Arc::new(obj(ingress)));
    }

    /// An Ingress without annotations or TLS.
    fn plain(&mut self, ns: &str, name: &str, created: i64, rules: &[Rule<'_>]) {
        self.add(tenant_ingress(
            ns,
            name,
            created,
            rules,
            serde_json::json!({}),
            None,
        ));
    }

    fn remove(&mut self, ns: &str, name: &str) {
        self.cluster.ingresses.retain(|i| {
            i.metadata.namespace.as_deref() != Some(ns) || i.metadata.name.as_deref() != Some(name)
        });
    }

    /// Translates at `now` (seconds after the start), carrying the claims on.
    fn at(&mut self, seconds: i64) -> jetbridge::model::Snapshot {
        self.cluster.now = self.now + seconds;
        let out = from_cluster(&self.cluster, &self.settings);
        self.cluster.claims = out.hosts.claims.clone();
        let mut global = GlobalInputs::for_test();
        global.certificates = out.certificates;
        translate(&Inputs {
            global,
            routes: out.routes,
            diagnostics: out.diagnostics,
        })
    }
}

/// The id of the route answering `host` `path` (`ns/name/index`, or
/// `held/<host>`), with whether it serves.
fn answering(snap: &jetbridge::model::Snapshot, host: &str, path: &str) -> Option<(String, bool)> {
    snap.route(host, path)
        .map(|r| (r.id.clone(), !matches!(r.access, Access::Invalid(_))))
}

/// Asserts that route `id` answers `host` `path`.
fn assert_answers(snap: &jetbridge::model::Snapshot, host: &str, path: &str, id: &str) {
    assert_eq!(
        answering(snap, host, path).map(|a| a.0).as_deref(),
        Some(id),
        "{host}{path}"
    );
}

fn warnings_of(snap: &jetbridge::model::Snapshot, ns: &str, name: &str) -> String {
    snap.diagnostics
        .iter()
        .filter(|d| d.object.namespace == ns && d.object.name == name)
        .map(|d| format!("{} {}", d.reason.as_str(), d.message))
        .collect::<Vec<_>>()
        .join("; ")
}

fn owner_and_intruder(intruder: &[Rule<'_>]) -> Tenants {
    let mut t = Tenants::new(&["apps", "team2"]);
    t.plain("apps", "web", 100, &[("app.test", "/", "Prefix")]);
    t.add(tenant_ingress(
        "team2",
        "takeover",
        200,
        intruder,
        serde_json::json!({"jetbridge.dev/allow_public_unauthenticated_access": "true"}),
        None,
    ));
    t
}

#[test]
fn another_namespace_cannot_add_a_path_to_an_owned_host() {
    for (i, rule) in [
        ("app.test", "/takeover", "Prefix"),
        ("app.test", "/takeover", "Exact"),
        ("app.test", "/", "Prefix"),
        ("app.test", "/", "Exact"),
        ("app.test", "/deep/er/path", "ImplementationSpecific"),
    ]
    .into_iter()
    .enumerate()
    {
        let mut t = owner_and_intruder(&[rule]);
        let snap = t.at(0);
        for path in ["/", rule.1, "/takeover/x"] {
            assert_eq!(
                answering(&snap, "app.test", path).map(|a| a.0),
                Some("apps/web/1".to_string()),
                "case {i} {rule:?}: {path} is the owner's"
            );
        }
        let notes = warnings_of(&snap, "team2", "takeover");
        assert!(
            notes.contains("HostConflict")
                && notes.contains("namespace apps")
                && notes.contains("apps/web"),
            "case {i}: the intruder's Warning names the owner: {notes}"
        );
    }
}

#[test]
fn a_default_backend_from_another_namespace_does_not_merge_into_an_owned_host() {
    let mut t = Tenants::new(&["apps", "team2"]);
    t.plain("apps", "web", 100, &[("app.test", "/app", "Prefix")]);
    let mut intruder = tenant_ingress("team2", "fallback", 50, &[], serde_json::json!({}), None);
    intruder["spec"]["defaultBackend"] =
        serde_json::json!({"service": {"name": "svc", "port": {"number": 80}}});
    intruder["spec"]["tls"] = serde_json::json!([{"hosts": ["app.test"]}]);
    intruder["spec"]["rules"] = serde_json::json!([]);
    t.add(intruder);
    let snap = t.at(0);
    // team2's Ingress is older, so it owns app.test; apps' younger one is
    // the one refused, and nothing of the two is mixed on the host.
    assert_answers(&snap, "app.test", "/", "team2/fallback/1");
    assert_answers(&snap, "app.test", "/app", "team2/fallback/1");
    assert!(warnings_of(&snap, "apps", "web").contains("namespace team2"));
}

#[test]
fn a_redeployed_owner_keeps_its_host_and_certificate_through_the_gap() {
    let mut t = Tenants::new(&["apps", "team2"]);
    let (own, own_der) = tls_secret_object("apps", "app-tls", &["app.test"]);
    let (rogue, rogue_der) = tls_secret_object("team2", "rogue-tls", &["app.test"]);
    t.cluster.secrets.push(Arc::new(obj(own)));
    t.cluster.secrets.push(Arc::new(obj(rogue)));
    let owner = || {
        tenant_ingress(
            "apps",
            "web",
            100,
            &[("app.test", "/", "Prefix")],
            serde_json::json!({}),
            Some(("app-tls", &["app.test"])),
        )
    };
    t.add(owner());
    t.add(tenant_ingress(
        "team2",
        "takeover",
        200,
        &[("app.test", "/", "Prefix")],
        serde_json::json!({"jetbridge.dev/allow_public_unauthenticated_access": "true"}),
        Some(("rogue-tls", &["app.test"])),
    ));
    let cert = |snap: &jetbridge::model::Snapshot| {
        snap.tls
            .resolve(Some("app.test"))
            .map(|c| c.cert[0].as_ref().to_vec())
    };
    let snap = t.at(0);
    assert_eq!(
        answering(&snap, "app.test", "/"),
        Some(("apps/web/1".into(), true))
    );
    assert_eq!(cert(&snap), Some(own_der.clone()));

    // The owner deletes its Ingress: the host is held, nobody serves it and
    // the intruder's certificate is not served either.
    t.remove("apps", "web");
    let gap = t.at(5);
    assert_eq!(answering(&gap, "app.test", "/"), None);
    assert_ne!(cert(&gap), Some(rogue_der.clone()));
    assert!(warnings_of(&gap, "team2", "takeover").contains("held until"));

    // Re-applied (now the younger of the two): the owner's again.
    let mut again = owner();
    again["metadata"]["creationTimestamp"] = serde_json::json!("2027-01-15T08:00:10Z");
    t.add(again);
    let back = t.at(10);
    assert_eq!(
        answering(&back, "app.test", "/"),
        Some(("apps/web/1".into(), true))
    );
    assert_eq!(cert(&back), Some(own_der));
    // The claim is worth storing (contested), so a restart keeps it.
    let stored = from_cluster(&t.cluster, &t.settings).hosts.stored();
    assert_eq!(stored["app.test"].namespace, "apps");
}

#[test]
fn a_held_host_goes_to_the_next_claimant_only_after_the_grace_period() {
    let mut t = owner_and_intruder(&[("app.test", "/", "Prefix")]);
    t.settings.claim_grace_seconds = 60;
    t.at(0);
    t.remove("apps", "web");
    // Held from the first translation that misses the owner (at 1 s).
    for at in [1, 30, 60] {
        let snap = t.at(at);
        assert_eq!(answering(&snap, "app.test", "/"), None, "at {at}");
        assert!(warnings_of(&snap, "team2", "takeover").contains("held until"));
    }
    assert_eq!(
        answering(&t.at(61), "app.test", "/"),
        Some(("team2/takeover/1".into(), true))
    );
}

#[test]
fn a_restarted_controller_keeps_a_stored_claim() {
    let mut t = owner_and_intruder(&[("app.test", "/", "Prefix")]);
    t.at(0);
    let stored = from_cluster(&t.cluster, &t.settings).hosts.stored();
    // Restart: memory is only what was stored; the owner is mid-redeploy.
    t.cluster.claims = stored;
    t.remove("apps", "web");
    let snap = t.at(1);
    assert_eq!(answering(&snap, "app.test", "/"), None);
    assert!(warnings_of(&snap, "team2", "takeover").contains("held until"));
}

#[test]
fn a_wildcard_or_any_host_route_of_another_namespace_does_not_answer_a_held_host() {
    let mut t = Tenants::new(&["apps", "team2"]);
    t.plain("apps", "web", 100, &[("app.test", "/", "Prefix")]);
    t.add(tenant_ingress(
        "team2",
        "wild",
        200,
        &[("*.test", "/", "Prefix")],
        serde_json::json!({"jetbridge.dev/allow_public_unauthenticated_access": "true"}),
        None,
    ));
    let snap = t.at(0);
    assert_answers(&snap, "other.test", "/", "team2/wild/1");
    assert_answers(&snap, "app.test", "/", "apps/web/1");
    t.remove("apps", "web");
    let gap = t.at(5);
    assert_eq!(
        answering(&gap, "app.test", "/"),
        Some(("held/app.test".into(), false)),
        "the held host denies rather than fall to the other namespace's wildcard"
    );
    assert_answers(&gap, "other.test", "/", "team2/wild/1");
}

#[test]
fn another_namespaces_wildcard_certificate_is_not_served_for_an_owned_host() {
    let mut t = Tenants::new(&["apps", "team2"]);
    let (wild, wild_der) = tls_secret_object("team2", "wild-tls", &["*.test"]);
    t.cluster.secrets.push(Arc::new(obj(wild)));
    t.plain("apps", "web", 100, &[("app.test", "/", "Prefix")]);
    t.add(tenant_ingress(
        "team2",
        "wild",
        200,
        &[("*.test", "/", "Prefix")],
        serde_json::json!({}),
        Some(("wild-tls", &["*.test"])),
    ));
    let snap = t.at(0);
    let cert = |host| {
        snap.tls
            .resolve(Some(host))
            .map(|c| c.cert[0].as_ref().to_vec())
    };
    assert_eq!(
        cert("other.test"),
        Some(wild_der.clone()),
        "team2's own names"
    );
    assert_ne!(cert("app.test"), Some(wild_der), "apps' host");
}

#[test]
fn an_owner_delegates_paths_to_another_namespace_element_by_element() {
    let mut t = Tenants::new(&["apps", "team2", "team3"]);
    let (rogue, rogue_der) = tls_secret_object("team2", "t2-tls", &["app.test"]);
    t.cluster.secrets.push(Arc::new(obj(rogue)));
    t.add(tenant_ingress(
        "apps",
        "web",
        100,
        &[("app.test", "/", "Prefix")],
        serde_json::json!({"jetbridge.dev/delegate_paths": "team2=/api"}),
        None,
    ));
    t.add(tenant_ingress(
        "team2",
        "api",
        200,
        &[
            ("app.test", "/api", "Prefix"),
            ("app.test", "/apix", "Prefix"),
        ],
        serde_json::json!({}),
        Some(("t2-tls", &["app.test"])),
    ));
    t.plain("team3", "api", 300, &[("app.test", "/api/v3", "Prefix")]);
    let snap = t.at(0);
    assert_answers(&snap, "app.test", "/api/v1", "team2/api/1");
    assert_answers(&snap, "app.test", "/apix", "apps/web/1");
    assert_eq!(
        answering(&snap, "app.test", "/api/v3").map(|a| a.0),
        Some("team2/api/1".into()),
        "team3 was not delegated anything"
    );
    assert!(warnings_of(&snap, "team2", "api").contains("/apix"));
    assert!(warnings_of(&snap, "team3", "api").contains("namespace apps"));
    assert_ne!(
        snap.tls
            .resolve(Some("app.test"))
            .map(|c| c.cert[0].as_ref().to_vec()),
        Some(rogue_der),
        "a delegate's certificate is not served for the owner's host"
    );
}

#[test]
fn administrator_rules_decide_which_namespaces_may_claim_a_host() {
    let mut t = Tenants::new(&["apps", "team2", "platform"]);
    t.settings.host_rules =
        jetbridge::translate::hosts::HostRules::parse(&["*=platform", "*.apps.test=apps"]).unwrap();
    // team2 is older everywhere, and still owns nothing.
    t.plain(
        "team2",
        "t",
        10,
        &[("a.apps.test", "/", "Prefix"), ("free.test", "/", "Prefix")],
    );
    t.plain("apps", "web", 100, &[("a.apps.test", "/", "Prefix")]);
    t.plain("platform", "p", 100, &[("free.test", "/", "Prefix")]);
    let snap = t.at(0);
    assert_answers(&snap, "a.apps.test", "/", "apps/web/1");
    assert_answers(&snap, "free.test", "/", "platform/p/1");
    let notes = warnings_of(&snap, "team2", "t");
    assert!(
        notes.contains("namespace apps") && notes.contains("namespace platform"),
        "{notes}"
    );
    // A host only a refused namespace names is not served at all.
    let mut alone = Tenants::new(&["team2"]);
    alone.settings.host_rules = t.settings.host_rules.clone();
    alone.plain("team2", "t", 10, &[("b.apps.test", "/", "Prefix")]);
    let snap = alone.at(0);
    assert_eq!(answering(&snap, "b.apps.test", "/"), None);
    assert!(warnings_of(&snap, "team2", "t").contains("--host-namespaces"));
}

#[test]
fn ingresses_of_one_namespace_still_share_a_host() {
    let mut t = Tenants::new(&["apps"]);
    t.plain("apps", "web", 100, &[("app.test", "/", "Prefix")]);
    t.plain("apps", "api", 200, &[("app.test", "/api", "Prefix")]);
    let snap = t.at(0);
    assert_answers(&snap, "app.test", "/api/x", "apps/api/1");
    assert_answers(&snap, "app.test", "/", "apps/web/1");
    assert!(
        from_cluster(&t.cluster, &t.settings)
            .hosts
            .stored()
            .is_empty()
    );
}
