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
