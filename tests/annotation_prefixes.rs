//! One setting under both annotation prefixes (`jetbridge.dev/` and
//! `ingress.pomerium.io/`), for every kind of key: values that mean the same
//! (after YAML decoding, list splitting and policy parsing) serve the route
//! with a `DuplicateAnnotation` warning; different values make only that
//! route deny, with a message naming both keys. Pure: the translation the
//! controller runs (`tests/cluster.rs` does the same against a real API
//! server).

use jetbridge::model::{Reason, Severity};
use jetbridge::translate::cluster::{Cluster, ClusterSettings, from_cluster};
use std::sync::Arc;

/// An Ingress `t/app` (host `app.test`, Service `web`) with `annotations`,
/// plus the Secrets `hdrs` and `other` and the Policies `a` and `b` it may
/// name.
fn cluster(annotations: &[(String, &str)]) -> Cluster {
    fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Arc<T> {
        Arc::new(serde_json::from_value(v).unwrap())
    }
    let annotations: serde_json::Map<String, serde_json::Value> = annotations
        .iter()
        .map(|(k, v)| (k.clone(), serde_json::Value::from(*v)))
        .collect();
    let policy = |name: &str| {
        obj(serde_json::json!({
            "metadata": {"name": name, "namespace": "t"},
            "spec": {"allow": {"or": [{"email": {"is": format!("{name}@example.com")}}]}}
        }))
    };
    Cluster {
        classes: vec![obj(serde_json::json!({
            "metadata": {"name": "jetbridge"},
            "spec": {"controller": "jetbridge.dev/ingress-controller"}
        }))],
        ingresses: vec![obj(serde_json::json!({
            "metadata": {"name": "app", "namespace": "t", "annotations": annotations},
            "spec": {"ingressClassName": "jetbridge", "rules": [{"host": "app.test", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
        }))],
        services: vec![obj(serde_json::json!({
            "metadata": {"name": "web", "namespace": "t"},
            "spec": {"ports": [{"port": 80}]}
        }))],
        policies: vec![policy("a"), policy("b")],
        // "dmFsdWU=" is base64 of "value".
        secrets: ["hdrs", "other"]
            .map(|name| {
                obj(serde_json::json!({
                    "metadata": {"name": name, "namespace": "t"}, "type": "Opaque",
                    "data": {"X-Secret": "dmFsdWU="}
                }))
            })
            .to_vec(),
        ..Cluster::default()
    }
}

/// (key, a value, a value meaning the same, a different value)
const CASES: &[(&str, &str, &str, &str)] = &[
    (
        "allow_public_unauthenticated_access",
        "true",
        "True",
        "false",
    ),
    ("pass_identity_headers", "false", "False", "true"),
    ("secure_upstream", "true", "TRUE", "false"),
    (
        "allowed_users",
        "a@example.com, b@example.com",
        r#"["a@example.com", "b@example.com"]"#,
        "a@example.com",
    ),
    ("remove_request_headers", "X-A,X-B", "[X-A, X-B]", "X-B"),
    (
        "set_request_headers",
        "{X-A: one}",
        r#"{"X-A": "one"}"#,
        "{X-A: two}",
    ),
    ("timeout", "30s", "\"30s\"", "31s"),
    (
        "policy",
        "allow:\n  or:\n    - email: {is: a@example.com}\n",
        r#"{"allow": {"or": [{"email": {"is": "a@example.com"}}]}}"#,
        r#"{"allow": {"or": [{"email": {"is": "b@example.com"}}]}}"#,
    ),
    ("policy_ref", "a, b", "b a", "a"),
    ("set_request_headers_secret", "hdrs", " hdrs ", "other"),
];

/// `(route problems, DuplicateAnnotation warnings)` for the key set under
/// both prefixes to `jb` and `pom`.
fn translate_both(key: &str, jb: &str, pom: &str) -> (Vec<String>, Vec<String>) {
    let c = cluster(&[
        (format!("jetbridge.dev/{key}"), jb),
        (format!("ingress.pomerium.io/{key}"), pom),
    ]);
    let out = from_cluster(&c, &ClusterSettings::default());
    assert_eq!(out.routes.len(), 1, "{key}");
    let warnings = out
        .diagnostics
        .iter()
        .filter(|d| d.reason == Reason::DuplicateAnnotation)
        .inspect(|d| assert_eq!(d.severity, Severity::Warning, "{key}"))
        .map(|d| d.message.clone())
        .collect();
    (out.routes[0].problems.clone(), warnings)
}

#[test]
fn equal_values_under_both_prefixes_serve_with_a_warning() {
    for (key, value, same, _) in CASES {
        for (jb, pom) in [(value, value), (value, same), (same, value)] {
            let (problems, warnings) = translate_both(key, jb, pom);
            assert!(problems.is_empty(), "{key}: {jb:?} / {pom:?}: {problems:?}");
            assert_eq!(
                warnings,
                [format!(
                    "annotations ingress.pomerium.io/{key} and jetbridge.dev/{key} set {key} \
                     to the same value; one of them is enough"
                )],
                "{key}: {jb:?} / {pom:?}"
            );
        }
    }
}

#[test]
fn conflicting_values_under_both_prefixes_deny_the_route_naming_both_keys() {
    for (key, value, _, other) in CASES {
        let (problems, warnings) = translate_both(key, value, other);
        assert!(warnings.is_empty(), "{key}: {warnings:?}");
        assert_eq!(
            problems,
            [format!(
                "annotations ingress.pomerium.io/{key} and jetbridge.dev/{key} set {key} \
                 to different values; keep one of them"
            )],
            "{key}"
        );
    }
}

#[test]
fn one_prefix_alone_neither_warns_nor_denies() {
    for (key, value, _, _) in CASES {
        for prefix in ["jetbridge.dev", "ingress.pomerium.io"] {
            let c = cluster(&[(format!("{prefix}/{key}"), value)]);
            let out = from_cluster(&c, &ClusterSettings::default());
            assert!(out.routes[0].problems.is_empty(), "{prefix}/{key}");
            assert!(
                out.diagnostics.is_empty(),
                "{prefix}/{key}: {:?}",
                out.diagnostics
            );
        }
    }
}

/// A bad value under one prefix is reported for that annotation, and the
/// route denies whatever the other prefix holds.
#[test]
fn a_bad_value_under_one_prefix_names_that_annotation() {
    let (problems, warnings) =
        translate_both("allow_public_unauthenticated_access", "true", "maybe");
    assert!(warnings.is_empty());
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(
        problems[0]
            .starts_with("annotation ingress.pomerium.io/allow_public_unauthenticated_access:"),
        "{problems:?}"
    );
}
