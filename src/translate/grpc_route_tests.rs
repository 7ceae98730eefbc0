use super::*;
use crate::crd::gateway::GrpcMethodMatch;
use crate::model::UpstreamScheme;
use crate::translate::cluster::{Cluster, ClusterInputs, ClusterSettings, from_cluster};
use crate::translate::gateway::{CONTROLLER, GatewayObjects, PUBLIC_ACCESS_ANNOTATION};
use std::sync::Arc;

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Arc<T> {
    Arc::new(serde_json::from_value(v).unwrap())
}

/// A public Gateway `gw` in `infra` with an HTTP listener `web` for
/// `*.example.com` (the given `allowedRoutes`), a Service `grpc` in `app`
/// (one ready endpoint on 3000), and the given routes (`kind` decides
/// which list).
fn world(allowed: serde_json::Value, routes: Vec<serde_json::Value>) -> Cluster {
    let mut gateway = GatewayObjects {
        classes: vec![obj(serde_json::json!({
            "metadata": {"name": "jetbridge"},
            "spec": {"controllerName": CONTROLLER}
        }))],
        gateways: vec![obj(serde_json::json!({
            "metadata": {"name": "gw", "namespace": "infra",
                         "annotations": {PUBLIC_ACCESS_ANNOTATION: "true"}},
            "spec": {"gatewayClassName": "jetbridge", "listeners": [
                {"name": "web", "port": 80, "protocol": "HTTP", "hostname": "*.example.com",
                 "allowedRoutes": allowed}
            ]}
        }))],
        ..GatewayObjects::default()
    };
    for r in routes {
        match r["kind"].as_str() {
            Some("HTTPRoute") => gateway.http_routes.push(obj(r)),
            _ => gateway.grpc_routes.push(obj(r)),
        }
    }
    Cluster {
        services: vec![obj(serde_json::json!({
            "metadata": {"name": "grpc", "namespace": "app"},
            "spec": {"ports": [{"name": "grpc", "port": 8080, "appProtocol": "kubernetes.io/h2c"}]}
        }))],
        slices: vec![obj(serde_json::json!({
            "metadata": {"name": "grpc-1", "namespace": "app",
                         "labels": {"kubernetes.io/service-name": "grpc"}},
            "addressType": "IPv4",
            "ports": [{"name": "grpc", "port": 3000}],
            "endpoints": [{"addresses": ["10.0.0.9"], "conditions": {"ready": true}}]
        }))],
        gateway,
        ..Cluster::default()
    }
}

fn all_namespaces() -> serde_json::Value {
    serde_json::json!({"namespaces": {"from": "All"}})
}

fn route(kind: &str, name: &str, created: &str, spec: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "kind": kind,
        "metadata": {"name": name, "namespace": "app", "generation": 2,
                     "creationTimestamp": created},
        "spec": spec
    })
}

fn grpc(name: &str, spec: serde_json::Value) -> serde_json::Value {
    route("GRPCRoute", name, "2026-01-01T00:00:00Z", spec)
}

fn spec(hostnames: &[&str], rules: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "parentRefs": [{"name": "gw", "namespace": "infra"}],
        "hostnames": hostnames,
        "rules": rules
    })
}

fn translate(c: &Cluster) -> ClusterInputs {
    from_cluster(c, &ClusterSettings::default())
}

fn method(type_: Option<&str>, service: Option<&str>, method: Option<&str>) -> GrpcMethodMatch {
    GrpcMethodMatch {
        type_: type_.map(str::to_string),
        service: service.map(str::to_string),
        method: method.map(str::to_string),
    }
}

#[test]
fn method_matches_become_paths_of_the_grpc_call() {
    // (type, service, method) → path.
    type Case<'a> = (Option<&'a str>, Option<&'a str>, Option<&'a str>, PathSpec);
    let cases: &[Case<'_>] = &[
        (
            None,
            Some("pkg.Echo"),
            Some("Say"),
            PathSpec::Exact("/pkg.Echo/Say".into()),
        ),
        (
            Some("Exact"),
            Some("pkg.Echo"),
            None,
            PathSpec::Prefix("/pkg.Echo".into()),
        ),
        (
            Some("Exact"),
            None,
            Some("Say"),
            PathSpec::Regex("/[^/]+/Say".into()),
        ),
        (
            Some("RegularExpression"),
            Some(r"pkg\.E.*"),
            Some("Say|Tell"),
            PathSpec::Regex(r"/(?:pkg\.E.*)/(?:Say|Tell)".into()),
        ),
        (
            Some("RegularExpression"),
            None,
            Some("S.y"),
            PathSpec::Regex("/[^/]+/(?:S.y)".into()),
        ),
    ];
    for (t, s, m, want) in cases {
        assert_eq!(
            method_path(Some(&method(*t, *s, *m))).as_ref(),
            Ok(want),
            "{t:?} {s:?} {m:?}"
        );
    }
    assert_eq!(method_path(None), Ok(PathSpec::Prefix("/".into())));
}

#[test]
fn unreadable_method_matches_are_refused() {
    let cases = [
        method(None, None, None),
        method(Some("Exact"), Some("pkg/Echo"), Some("Say")),
        method(Some("Exact"), Some("pkg.Echo"), Some("Sa y")),
        method(Some("RegularExpression"), Some("(unclosed"), None),
        method(Some("Prefix"), Some("pkg.Echo"), None),
    ];
    for m in cases {
        assert!(method_path(Some(&m)).is_err(), "{m:?}");
    }
}

#[test]
fn grpc_route_serves_its_methods_over_h2c_with_header_conditions() {
    let c = world(
        all_namespaces(),
        vec![grpc(
            "echo",
            spec(
                &["api.example.com", "api.other.org"],
                serde_json::json!([{
                    "matches": [{"method": {"service": "pkg.Echo", "method": "Say"},
                                 "headers": [{"name": "Version", "value": "2"}]}],
                    "backendRefs": [{"name": "grpc", "port": 8080}]
                }]),
            ),
        )],
    );
    let out = translate(&c);
    assert_eq!(out.routes.len(), 1, "{:?}", out.diagnostics);
    let r = &out.routes[0];
    assert_eq!(r.host, "api.example.com");
    assert_eq!(r.path, PathSpec::Exact("/pkg.Echo/Say".into()));
    assert!(r.options.h2c_upstream);
    assert!(r.options.allow_public_unauthenticated_access);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.source.kind, "GRPCRoute");
    assert_eq!(r.conditions.as_deref().map(|c| c.headers.len()), Some(1));
    let p = &out.gateway.parents[0];
    assert_eq!((p.kind.as_str(), &p.accepted), ("GRPCRoute", &Ok(())));
    assert_eq!(out.gateway.listeners[0].attached_routes, 1);
    // The snapshot speaks h2c to the backend.
    let inputs = crate::translate::Inputs {
        global: crate::translate::GlobalInputs::for_test(),
        routes: out.routes.clone(),
        diagnostics: Vec::new(),
    };
    let snapshot = crate::translate::translate(&inputs);
    let upstream = &snapshot.routes[0].upstreams[0];
    assert_eq!(upstream.scheme, UpstreamScheme::H2c);
}

#[test]
fn listener_kinds_decide_which_route_kinds_attach() {
    let only_http = serde_json::json!({
        "namespaces": {"from": "All"},
        "kinds": [{"kind": "HTTPRoute"}]
    });
    let rules = serde_json::json!([{"backendRefs": [{"name": "grpc", "port": 8080}]}]);
    let out = translate(&world(only_http, vec![grpc("g", spec(&[], rules.clone()))]));
    let (reason, _) = out.gateway.parents[0].accepted.clone().unwrap_err();
    assert_eq!(reason, "NotAllowedByListeners");
    assert!(out.routes.is_empty());
    let only_grpc = serde_json::json!({
        "namespaces": {"from": "All"},
        "kinds": [{"group": "gateway.networking.k8s.io", "kind": "GRPCRoute"}]
    });
    let out = translate(&world(only_grpc, vec![grpc("g", spec(&[], rules))]));
    assert_eq!(out.gateway.parents[0].accepted, Ok(()));
}

#[test]
fn the_older_of_an_http_and_a_grpc_route_on_one_hostname_keeps_it() {
    let rules = serde_json::json!([{"backendRefs": [{"name": "grpc", "port": 8080}]}]);
    let http_old = route(
        "HTTPRoute",
        "web",
        "2025-01-01T00:00:00Z",
        spec(&["api.example.com"], rules.clone()),
    );
    let grpc_new = route(
        "GRPCRoute",
        "rpc",
        "2026-01-01T00:00:00Z",
        spec(&["*.example.com"], rules.clone()),
    );
    let grpc_apart = route(
        "GRPCRoute",
        "apart",
        "2026-01-01T00:00:00Z",
        spec(&["rpc.example.com"], rules.clone()),
    );
    let out = translate(&world(
        all_namespaces(),
        vec![grpc_new, http_old, grpc_apart],
    ));
    let outcome = |kind: &str, name: &str| {
        out.gateway
            .parents
            .iter()
            .find(|p| p.kind == kind && p.name == name)
            .unwrap()
            .accepted
            .clone()
    };
    assert_eq!(outcome("HTTPRoute", "web"), Ok(()));
    assert_eq!(outcome("GRPCRoute", "apart"), Ok(()));
    let (reason, message) = outcome("GRPCRoute", "rpc").unwrap_err();
    assert_eq!(reason, "HostnameConflict");
    assert!(message.contains("HTTPRoute app/web"), "{message}");
    let hosts: Vec<(&str, &str)> = out
        .routes
        .iter()
        .map(|r| (r.source.kind.as_str(), r.host.as_str()))
        .collect();
    assert_eq!(
        hosts,
        [
            ("HTTPRoute", "api.example.com"),
            ("GRPCRoute", "rpc.example.com")
        ]
    );
    assert_eq!(out.gateway.listeners[0].attached_routes, 2);
}

#[test]
fn a_grpc_route_needs_a_grant_for_grpc_routes_to_reach_another_namespace() {
    let rules = serde_json::json!([{"backendRefs": [
        {"name": "grpc", "namespace": "app", "port": 8080}
    ]}]);
    let mut r = grpc("g", spec(&[], rules));
    r["metadata"]["namespace"] = "other".into();
    let grant = |from_kind: &str| {
        obj(serde_json::json!({
            "metadata": {"name": "grant", "namespace": "app"},
            "spec": {"from": [{"group": "gateway.networking.k8s.io", "kind": from_kind,
                               "namespace": "other"}],
                     "to": [{"group": "", "kind": "Service"}]}
        }))
    };
    let mut c = world(all_namespaces(), vec![r]);
    c.gateway.grants = vec![grant("HTTPRoute")];
    let out = translate(&c);
    let refs = out.gateway.parents[0].resolved_refs.clone();
    assert_eq!(refs.unwrap_err().0, "RefNotPermitted");
    assert!(!out.routes[0].problems.is_empty());
    c.gateway.grants = vec![grant("GRPCRoute")];
    let out = translate(&c);
    assert_eq!(out.gateway.parents[0].resolved_refs, Ok(()));
    assert!(out.routes[0].problems.is_empty());
}

#[test]
fn a_bad_match_denies_only_its_own_route() {
    let c = world(
        all_namespaces(),
        vec![grpc(
            "g",
            spec(
                &["api.example.com"],
                serde_json::json!([
                    {"matches": [{"method": {"service": "pkg/Bad"}}],
                     "backendRefs": [{"name": "grpc", "port": 8080}]},
                    {"matches": [{"method": {"service": "pkg.Good"}}],
                     "backendRefs": [{"name": "grpc", "port": 8080}]}
                ]),
            ),
        )],
    );
    let out = translate(&c);
    let problems: Vec<(String, usize)> = out
        .routes
        .iter()
        .map(|r| (format!("{:?}", r.path), r.problems.len()))
        .collect();
    assert_eq!(
        problems,
        [
            (r#"Exact("/pkg/Bad/_")"#.to_string(), 1),
            (r#"Prefix("/pkg.Good")"#.to_string(), 0)
        ]
    );
}

/// The GRPCRoute order between the matches of one host, whatever the
/// routes' age or the order of their rules: more characters of an exactly
/// matched service, then of the method, then more header matches, then
/// the older route.
#[test]
fn grpc_matches_follow_the_grpc_route_precedence() {
    // (route, created, method match, headers).
    type Rule<'a> = (&'a str, &'a str, serde_json::Value, usize);
    let m = |s: Option<&str>, m: Option<&str>| serde_json::json!({"service": s, "method": m});
    let rules: Vec<Rule<'_>> = vec![
        (
            "method-only",
            "2026-01-01T00:00:00Z",
            m(None, Some("Say")),
            0,
        ),
        (
            "service-only",
            "2026-03-01T00:00:00Z",
            m(Some("pkg.Echo"), None),
            0,
        ),
        (
            "full",
            "2026-04-01T00:00:00Z",
            m(Some("pkg.Echo"), Some("Say")),
            0,
        ),
        (
            "short-service",
            "2026-01-01T00:00:00Z",
            m(Some("pkg.E"), None),
            0,
        ),
        (
            "service-two",
            "2026-06-01T00:00:00Z",
            m(Some("pkg.Two"), None),
            0,
        ),
        ("headers", "2026-05-01T00:00:00Z", m(None, Some("Say")), 1),
        (
            "pattern",
            "2026-01-01T00:00:00Z",
            serde_json::json!({"type": "RegularExpression", "service": "pkg\\..*", "method": "Sa.*"}),
            0,
        ),
        ("any", "2026-01-01T00:00:00Z", serde_json::Value::Null, 0),
    ];
    let build = |rules: &[Rule<'_>]| {
        let routes = rules
            .iter()
            .map(|(name, created, method, headers)| {
                let mut matched = serde_json::json!({});
                if !method.is_null() {
                    matched["method"] = method.clone();
                }
                if *headers > 0 {
                    matched["headers"] = serde_json::json!([{"name": "Version", "value": "2"}]);
                }
                route(
                    "GRPCRoute",
                    name,
                    created,
                    spec(
                        &["api.example.com"],
                        serde_json::json!([{"matches": [matched],
                                            "backendRefs": [{"name": "grpc", "port": 8080}]}]),
                    ),
                )
            })
            .collect();
        let out = translate(&world(all_namespaces(), routes));
        crate::translate::translate(&crate::translate::Inputs {
            global: crate::translate::GlobalInputs::for_test(),
            routes: out.routes,
            diagnostics: Vec::new(),
        })
    };
    // (path, with the Version header) → the route that takes the call.
    let cases = [
        ("/pkg.Echo/Say", false, "full"),
        ("/pkg.Echo/Say", true, "full"),
        ("/pkg.Echo/Tell", false, "service-only"),
        ("/other.Svc/Say", false, "method-only"),
        ("/other.Svc/Say", true, "headers"),
        ("/pkg.E/Say", false, "short-service"),
        // A service-only match before a method-only one, even a newer one
        // without the header matches the other has.
        ("/pkg.Two/Say", false, "service-two"),
        ("/pkg.Two/Say", true, "service-two"),
        ("/pkg.Other/Say", false, "method-only"),
        ("/pkg.Other/Sam", false, "pattern"),
        ("/other.Svc/Tell", false, "any"),
    ];
    let mut reversed = rules.clone();
    reversed.reverse();
    for rules in [rules, reversed] {
        let s = build(&rules);
        for (path, header, want) in cases {
            let mut headers = http::HeaderMap::new();
            if header {
                headers.insert("version", http::HeaderValue::from_static("2"));
            }
            let view = crate::model::conditions::RequestView {
                method: &http::Method::POST,
                headers: &headers,
                query: None,
            };
            let got = s
                .route_on(
                    crate::model::routing::Scheme::Plain,
                    "api.example.com",
                    path,
                    &view,
                )
                .map(|r| r.id.clone())
                .unwrap_or_default();
            assert!(
                got.starts_with(&format!("grpc:app/{want}/")),
                "{path} {header}: {got}"
            );
        }
    }
}

#[test]
fn precedence_counts_only_exactly_named_parts() {
    let p = |m: GrpcMethodMatch| precedence(Some(&m));
    assert_eq!(
        p(method(None, Some("pkg.Echo"), Some("Say"))),
        GrpcPrecedence {
            service: 8,
            method: 3
        }
    );
    assert_eq!(
        p(method(Some("Exact"), None, Some("Say"))),
        GrpcPrecedence {
            service: 0,
            method: 3
        }
    );
    assert_eq!(
        p(method(
            Some("RegularExpression"),
            Some("pkg.Echo"),
            Some("Say")
        )),
        GrpcPrecedence::default()
    );
    assert_eq!(precedence(None), GrpcPrecedence::default());
}
