//! How an Ingress's annotations are read. One setting under both annotation
//! prefixes (`jetbridge.dev/` and `ingress.pomerium.io/`), for every kind of
//! key: values that mean the same
//! (after YAML decoding, list splitting and policy parsing) serve the route
//! with a `DuplicateAnnotation` warning; different values make only that
//! route deny, with a message naming both keys. An inline `policy` joins
//! referenced Policies in any form it compiles in. Pure: the translation the
//! controller runs (`tests/it/cluster/controller.rs` does the same against a real API
//! server).

use crate::harness::golden::lets_in;
use jetbridge::model::{Access, Reason, Severity};
use jetbridge::translate::cluster::{Cluster, ClusterSettings, from_cluster};
use jetbridge::translate::{GlobalInputs, Inputs, translate};
use std::sync::Arc;

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Arc<T> {
    Arc::new(serde_json::from_value(v).unwrap())
}

/// The IngressClass `jetbridge` (the default controller name), an Ingress
/// `t/app` of it (host `app.test`, path `/`, Service `web` port 80) with
/// `annotations`, and the Service.
pub(super) fn one_ingress(annotations: serde_json::Map<String, serde_json::Value>) -> Cluster {
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
        ..Cluster::default()
    }
}

/// [`one_ingress`] with `annotations`, plus the Secrets `hdrs` and `other`
/// and the Policies `a` and `b` it may name.
fn cluster(annotations: &[(String, &str)]) -> Cluster {
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
        ..one_ingress(annotations)
    }
}

/// One module per annotation key, each running the three checks below:
/// `key: (a value, a value meaning the same, a different value);`
macro_rules! prefix_cases {
    ($($key:ident: ($value:expr, $same:expr, $other:expr);)*) => {$(
        mod $key {
            const CASE: super::Case = (stringify!($key), $value, $same, $other);

            #[test]
            fn equal_values_under_both_prefixes_serve_with_a_warning() {
                super::equal_values_under_both_prefixes_serve_with_a_warning(CASE);
            }

            #[test]
            fn conflicting_values_under_both_prefixes_deny_the_route_naming_both_keys() {
                super::conflicting_values_under_both_prefixes_deny_the_route_naming_both_keys(CASE);
            }

            #[test]
            fn one_prefix_alone_neither_warns_nor_denies() {
                super::one_prefix_alone_neither_warns_nor_denies(CASE);
            }
        }
    )*};
}

/// (key, a value, a value meaning the same, a different value)
type Case = (&'static str, &'static str, &'static str, &'static str);

prefix_cases! {
    allow_public_unauthenticated_access: ("true", "True", "false");
    pass_identity_headers: ("false", "False", "true");
    secure_upstream: ("true", "TRUE", "false");
    allowed_users: ("a@example.com, b@example.com", r#"["a@example.com", "b@example.com"]"#, "a@example.com");
    remove_request_headers: ("X-A,X-B", "[X-A, X-B]", "X-B");
    set_request_headers: ("{X-A: one}", r#"{"X-A": "one"}"#, "{X-A: two}");
    timeout: ("30s", "\"30s\"", "31s");
    policy: ("allow:\n  or:\n    - email: {is: a@example.com}\n", r#"{"allow": {"or": [{"email": {"is": "a@example.com"}}]}}"#, r#"{"allow": {"or": [{"email": {"is": "b@example.com"}}]}}"#);
    policy_ref: ("a, b", "b a", "a");
    set_request_headers_secret: ("hdrs", " hdrs ", "other");
}

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
    let problems = out.routes[0].problems.iter();
    (problems.map(|d| d.message.clone()).collect(), warnings)
}

fn equal_values_under_both_prefixes_serve_with_a_warning((key, value, same, _): Case) {
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

fn conflicting_values_under_both_prefixes_deny_the_route_naming_both_keys(
    (key, value, _, other): Case,
) {
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

fn one_prefix_alone_neither_warns_nor_denies((key, value, _, _): Case) {
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

/// Whether the translated route of `c` lets `email` in.
fn allows(c: &Cluster, email: &str) -> Result<bool, String> {
    let out = from_cluster(c, &ClusterSettings::default());
    let snap = translate(&Inputs {
        global: GlobalInputs::for_test(),
        routes: out.routes,
        diagnostics: out.diagnostics,
    });
    let route = snap.routes.first().ok_or("no route")?;
    let Access::Policy(p) = &route.access else {
        return Err(format!("{:?}", route.access));
    };
    Ok(lets_in(p, "app.test", email))
}

/// An inline `policy` joins the Policies of `policy_ref` in every form a
/// policy may be written in (a rule object, a list, a spec with `allow` and
/// `rules`, a `Policy` object), as it compiles alone.
#[test]
fn an_inline_policy_in_any_accepted_form_joins_referenced_policies() {
    let forms = [
        "allow: {or: [{email: {is: c@example.com}}]}",
        "[{allow: {or: [{email: {is: c@example.com}}]}}]",
        "rules: [{allow: {or: [{email: {is: c@example.com}}]}}]",
        "{allow: {or: [{reject: true}]}, rules: [{allow: {or: [{email: {is: c@example.com}}]}}]}",
        "{apiVersion: jetbridge.dev/v1, kind: Policy, spec: {rules: [{allow: {or: [{email: {is: c@example.com}}]}}]}}",
    ];
    for form in forms {
        let inline = ("jetbridge.dev/policy".to_string(), form);
        let alone = cluster(std::slice::from_ref(&inline));
        assert_eq!(allows(&alone, "c@example.com"), Ok(true), "{form}");
        assert_eq!(allows(&alone, "a@example.com"), Ok(false), "{form}");
        let joined = cluster(&[inline, ("jetbridge.dev/policy_ref".to_string(), "a")]);
        for (email, want) in [
            ("c@example.com", true),
            ("a@example.com", true),
            ("b@example.com", false),
        ] {
            assert_eq!(
                allows(&joined, email),
                Ok(want),
                "{form} + Policy a: {email}"
            );
        }
    }
}
