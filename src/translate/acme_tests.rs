//! cert-manager's solver Ingresses through translation: what becomes a
//! challenge answer, what is refused, and who may answer on which host.

use super::*;
use crate::model::conditions::RequestView;
use crate::model::routing::Scheme;
use crate::model::{Access, Diagnostic, Severity, Snapshot};
use crate::translate::cluster::{Cluster, ClusterSettings, from_cluster};
use crate::translate::{GlobalInputs, Inputs, translate};
use serde_json::{Value, json};
use std::sync::Arc;

const TOKEN_PATH: &str = "/.well-known/acme-challenge/Zm9vYmFy-_x";

fn obj<T: serde::de::DeserializeOwned>(v: Value) -> Arc<T> {
    Arc::new(serde_json::from_value(v).unwrap())
}

/// A Service `name` in `ns` with one ready endpoint.
fn service(ns: &str, name: &str) -> (Value, Value) {
    (
        json!({"metadata": {"name": name, "namespace": ns},
               "spec": {"ports": [{"name": "http", "port": 8089}]}}),
        json!({"metadata": {"name": format!("{name}-1"), "namespace": ns,
                            "labels": {"kubernetes.io/service-name": name}},
               "addressType": "IPv4",
               "ports": [{"name": "http", "port": 8089}],
               "endpoints": [{"addresses": ["10.0.0.9"], "conditions": {"ready": true}}]}),
    )
}

/// An Ingress as cert-manager's solver writes it (its labels, annotation,
/// owner and one rule), with `paths` (`(pathType, path)`) on `host`.
fn solver(ns: &str, name: &str, host: &str, paths: &[(&str, &str)]) -> Value {
    let paths: Vec<Value> = paths
        .iter()
        .map(|(t, p)| {
            json!({"path": p, "pathType": t, "backend": {"service":
                  {"name": "cm-acme-http-solver-x", "port": {"number": 8089}}}})
        })
        .collect();
    json!({
        "metadata": {
            "name": name, "namespace": ns,
            "creationTimestamp": "2026-12-07T10:00:00Z",
            "labels": {SOLVER_LABEL: "true",
                       "acme.cert-manager.io/http-domain": "1234",
                       "acme.cert-manager.io/http-token": "5678"},
            "annotations": {"nginx.ingress.kubernetes.io/whitelist-source-range": "0.0.0.0/0,::/0"},
            "ownerReferences": [{"apiVersion": "acme.cert-manager.io/v1", "kind": "Challenge",
                                 "name": "c", "uid": "u", "controller": true}]
        },
        "spec": {"ingressClassName": "jetbridge",
                 "rules": [{"host": host, "http": {"paths": paths}}]}
    })
}

/// The application's own Ingress on `host` in `ns`, with a policy.
fn app(ns: &str, host: &str, created: &str) -> Value {
    json!({
        "metadata": {"name": "app", "namespace": ns, "creationTimestamp": created,
                     "annotations": {"jetbridge.dev/allowed_users": "[\"a@example.com\"]"}},
        "spec": {"ingressClassName": "jetbridge",
                 "rules": [{"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix",
                     "backend": {"service": {"name": "cm-acme-http-solver-x", "port": {"number": 8089}}}}]}}]}
    })
}

fn world(ingresses: Vec<Value>) -> Cluster {
    let mut services = Vec::new();
    let mut slices = Vec::new();
    for ns in ["a", "b"] {
        let (svc, slice) = service(ns, "cm-acme-http-solver-x");
        services.push(obj(svc));
        slices.push(obj(slice));
    }
    Cluster {
        ingresses: ingresses.into_iter().map(obj).collect(),
        classes: vec![obj(json!({"metadata": {"name": "jetbridge"},
                                 "spec": {"controller": crate::translate::cluster::CONTROLLER}}))],
        services,
        slices,
        ..Cluster::default()
    }
}

fn snapshot(c: &Cluster, s: &ClusterSettings) -> (Snapshot, Vec<Diagnostic>) {
    let out = from_cluster(c, s);
    let snapshot = translate(&Inputs {
        global: GlobalInputs::for_test(),
        routes: out.routes,
        diagnostics: Vec::new(),
    });
    (snapshot, out.diagnostics)
}

fn route_id(s: &Snapshot, at: Scheme, host: &str, path: &str) -> Option<String> {
    let headers = http::HeaderMap::new();
    let view = RequestView {
        method: &http::Method::GET,
        headers: &headers,
        query: None,
    };
    s.route_on(at, host, path, &view).map(|r| r.id.clone())
}

#[test]
fn a_solver_ingress_answers_its_exact_path_publicly_on_plain_http_only() {
    for path_type in ["Exact", "ImplementationSpecific"] {
        let c = world(vec![
            app("a", "app.example.com", "2026-12-01T00:00:00Z"),
            solver(
                "a",
                "cm-acme-http-solver-1",
                "App.Example.com",
                &[(path_type, TOKEN_PATH)],
            ),
        ]);
        let (s, diagnostics) = snapshot(&c, &ClusterSettings::default());
        assert!(diagnostics.is_empty(), "{diagnostics:?}");
        let challenge = s.acme_challenge("app.example.com", TOKEN_PATH).unwrap();
        assert_eq!(challenge.id, "a/cm-acme-http-solver-1/1");
        assert!(matches!(challenge.access, Access::Public));
        assert_eq!(challenge.upstreams.len(), 1, "{:?}", challenge.upstreams);
        // cert-manager's solver answers only when the Host is its domain.
        assert_eq!(
            challenge.host_rewrite,
            crate::model::rewrite::HostRewrite::Preserve
        );
        let plain = route_id(&s, Scheme::Plain, "app.example.com", TOKEN_PATH);
        assert_eq!(plain.as_deref(), Some("a/cm-acme-http-solver-1/1"));
        // Over HTTPS the application's own route (and policy) answers,
        // the challenge path included; no prefix of it is a challenge.
        let tls = route_id(&s, Scheme::Tls, "app.example.com", TOKEN_PATH);
        assert_eq!(tls.as_deref(), Some("a/app/1"));
        for other in [
            "/.well-known/acme-challenge/",
            "/.well-known/acme-challenge/x",
            "/",
        ] {
            assert!(
                s.acme_challenge("app.example.com", other).is_none(),
                "{other}"
            );
            assert_eq!(route_id(&s, Scheme::Plain, "app.example.com", other), None);
        }
        assert!(!s.plain_http_host("app.example.com"));
    }
}

#[test]
fn a_solver_ingress_asking_for_anything_else_is_refused_whole_with_an_error() {
    let more = |v: &mut Value| {
        v["spec"]["rules"][0]["http"]["paths"]
            .as_array_mut()
            .unwrap()
            .push(
                json!({"path": "/", "pathType": "Prefix", "backend": {"service":
                  {"name": "cm-acme-http-solver-x", "port": {"number": 8089}}}}),
            );
    };
    let default_backend = |v: &mut Value| {
        v["spec"]["defaultBackend"] = json!({"service":
            {"name": "cm-acme-http-solver-x", "port": {"number": 8089}}});
    };
    let tls = |v: &mut Value| {
        v["spec"]["tls"] = json!([{"hosts": ["app.example.com"], "secretName": "s"}]);
    };
    let resource_backend = |v: &mut Value| {
        v["spec"]["rules"][0]["http"]["paths"][0]["backend"] =
            json!({"resource": {"kind": "Bucket", "name": "b"}});
    };
    let keep = |_: &mut Value| {};
    type Edit<'a> = &'a dyn Fn(&mut Value);
    let cases: Vec<(&str, &str, &str, Edit)> = vec![
        ("app.example.com", "Prefix", TOKEN_PATH, &keep),
        (
            "app.example.com",
            "Exact",
            "/.well-known/acme-challenge/",
            &keep,
        ),
        (
            "app.example.com",
            "Exact",
            "/.well-known/acme-challenge/a/b",
            &keep,
        ),
        (
            "app.example.com",
            "Exact",
            "/.well-known/acme-challenge/a.b",
            &keep,
        ),
        (
            "app.example.com",
            "Exact",
            "/.well-known/acme-challenge",
            &keep,
        ),
        ("app.example.com", "Exact", "/admin", &keep),
        ("app.example.com", "ImplementationSpecific", "/", &keep),
        ("*.example.com", "Exact", TOKEN_PATH, &keep),
        ("", "Exact", TOKEN_PATH, &keep),
        ("10.0.0.1", "Exact", TOKEN_PATH, &keep),
        ("app.example.com", "Exact", TOKEN_PATH, &more),
        ("app.example.com", "Exact", TOKEN_PATH, &default_backend),
        ("app.example.com", "Exact", TOKEN_PATH, &tls),
        ("app.example.com", "Exact", TOKEN_PATH, &resource_backend),
    ];
    for (host, path_type, path, edit) in cases {
        let mut ing = solver("a", "cm-acme-http-solver-1", host, &[(path_type, path)]);
        edit(&mut ing);
        let c = world(vec![
            app("a", "app.example.com", "2026-12-01T00:00:00Z"),
            ing,
        ]);
        let (s, diagnostics) = snapshot(&c, &ClusterSettings::default());
        let case = format!("{host} {path_type} {path}");
        assert!(s.acme_challenges.is_empty(), "{case}");
        assert!(
            s.routes.iter().all(|r| !r.id.starts_with("a/cm-acme")),
            "{case}"
        );
        let refused: Vec<_> = diagnostics
            .iter()
            .filter(|d| d.object.name == "cm-acme-http-solver-1")
            .collect();
        assert_eq!(refused.len(), 1, "{case}: {diagnostics:?}");
        assert_eq!(refused[0].severity, Severity::Error, "{case}");
        assert!(
            refused[0].message.contains(SOLVER_LABEL),
            "{case}: {}",
            refused[0].message
        );
    }
}

#[test]
fn a_solver_of_another_namespace_never_answers_on_an_owned_host() {
    // Namespace a owns the host; b's solver is refused, whichever is older.
    for created in ["2026-12-01T00:00:00Z", "2026-12-09T00:00:00Z"] {
        let c = world(vec![
            app("a", "app.example.com", created),
            solver(
                "b",
                "cm-acme-http-solver-1",
                "app.example.com",
                &[("Exact", TOKEN_PATH)],
            ),
        ]);
        let (s, diagnostics) = snapshot(&c, &ClusterSettings::default());
        assert!(s.acme_challenges.is_empty());
        let d = diagnostics
            .iter()
            .find(|d| d.object.namespace == "b")
            .expect("a diagnostic on b's solver");
        assert!(
            d.message.contains("belongs to namespace a"),
            "{}",
            d.message
        );
        // The host stays a's: its route still answers over HTTPS.
        let tls = route_id(&s, Scheme::Tls, "app.example.com", "/");
        assert_eq!(tls.as_deref(), Some("a/app/1"));
    }
    // A wildcard host of a covers the name too.
    let c = world(vec![
        app("a", "*.example.com", "2026-12-01T00:00:00Z"),
        solver(
            "b",
            "cm-acme-http-solver-1",
            "app.example.com",
            &[("Exact", TOKEN_PATH)],
        ),
    ]);
    let (s, diagnostics) = snapshot(&c, &ClusterSettings::default());
    assert!(s.acme_challenges.is_empty(), "{diagnostics:?}");
}

#[test]
fn a_solver_answers_on_an_unclaimed_host_its_namespace_may_claim() {
    let c = world(vec![solver(
        "b",
        "cm-acme-http-solver-1",
        "new.example.com",
        &[("Exact", TOKEN_PATH)],
    )]);
    let (s, diagnostics) = snapshot(&c, &ClusterSettings::default());
    assert!(diagnostics.is_empty(), "{diagnostics:?}");
    assert!(s.acme_challenge("new.example.com", TOKEN_PATH).is_some());
    // A solver claims nothing: the host is still free for any namespace.
    assert!(
        from_cluster(&c, &ClusterSettings::default())
            .hosts
            .owners
            .is_empty()
    );
    // The administrator's host rules decide who may answer there.
    let rules = ClusterSettings {
        host_rules: super::super::hosts::HostRules::parse(&["*.example.com=a"]).unwrap(),
        ..ClusterSettings::default()
    };
    let (s, diagnostics) = snapshot(&c, &rules);
    assert!(s.acme_challenges.is_empty());
    assert!(
        diagnostics[0].message.contains("--host-namespaces"),
        "{diagnostics:?}"
    );
}

#[test]
fn the_owner_can_delegate_the_challenge_path_to_another_namespace() {
    let mut owner = app("a", "app.example.com", "2026-12-01T00:00:00Z");
    owner["metadata"]["annotations"]["jetbridge.dev/delegate_paths"] =
        "b=/.well-known/acme-challenge".into();
    let c = world(vec![
        owner,
        solver(
            "b",
            "cm-acme-http-solver-1",
            "app.example.com",
            &[("Exact", TOKEN_PATH)],
        ),
    ]);
    let (s, diagnostics) = snapshot(&c, &ClusterSettings::default());
    assert!(
        s.acme_challenge("app.example.com", TOKEN_PATH).is_some(),
        "{diagnostics:?}"
    );
}

#[test]
fn an_ingress_without_the_solver_label_is_an_ordinary_ingress() {
    let mut ing = solver(
        "a",
        "look-alike",
        "app.example.com",
        &[("Exact", TOKEN_PATH)],
    );
    ing["metadata"]["labels"][SOLVER_LABEL] = "false".into();
    let c = world(vec![ing]);
    let (s, _) = snapshot(&c, &ClusterSettings::default());
    assert!(s.acme_challenges.is_empty());
    // An Ingress route: on HTTPS, without a policy it denies.
    let r = s.route("app.example.com", TOKEN_PATH).unwrap();
    assert!(!matches!(r.access, Access::Public));
    assert_eq!(
        route_id(&s, Scheme::Plain, "app.example.com", TOKEN_PATH),
        None
    );
}
