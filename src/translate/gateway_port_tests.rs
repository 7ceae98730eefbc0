//! Gateway ports: each Gateway's listener ports are served on proxy ports
//! of their own, whose route tables hold that Gateway's routes only.

use super::*;
use crate::model::conditions::RequestView;
use crate::model::routing::TableRef;
use crate::model::{GatewayTable, Snapshot};
use crate::translate::cluster::{Cluster, from_cluster};
use crate::translate::{GlobalInputs, Inputs, translate};

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Arc<T> {
    Arc::new(serde_json::from_value(v).unwrap())
}

/// A public Gateway `name` in `infra`, created at `created`, with `listeners`.
fn gateway(name: &str, created: &str, listeners: serde_json::Value) -> Arc<Gateway> {
    obj(serde_json::json!({
        "metadata": {"name": name, "namespace": "infra", "creationTimestamp": created,
                     "annotations": {PUBLIC_ACCESS_ANNOTATION: "true"}},
        "spec": {"gatewayClassName": "jetbridge", "listeners": listeners}
    }))
}

/// An HTTPRoute `name` sending `prefix` (any host) to Service `backend`,
/// attached to the Gateways `parents`.
fn route(name: &str, parents: &[&str], prefix: &str, backend: &str) -> Arc<HttpRoute> {
    let parents: Vec<serde_json::Value> = parents
        .iter()
        .map(|p| serde_json::json!({"name": p}))
        .collect();
    obj(serde_json::json!({
        "metadata": {"name": name, "namespace": "infra", "generation": 1},
        "spec": {"parentRefs": parents, "rules": [{
            "matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
            "backendRefs": [{"name": backend, "port": 8080}]}]}
    }))
}

/// Services `v1`, `v2`, `v3` in `infra` with an endpoint each.
fn backends() -> (
    Vec<Arc<k8s_openapi::api::core::v1::Service>>,
    Vec<Arc<k8s_openapi::api::discovery::v1::EndpointSlice>>,
) {
    let names = ["v1", "v2", "v3"];
    let services = names
        .iter()
        .map(|n| {
            obj(serde_json::json!({
                "metadata": {"name": n, "namespace": "infra"},
                "spec": {"ports": [{"name": "http", "port": 8080}]}
            }))
        })
        .collect();
    let slices = names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            obj(serde_json::json!({
                "metadata": {"name": format!("{n}-1"), "namespace": "infra",
                             "labels": {"kubernetes.io/service-name": n}},
                "addressType": "IPv4",
                "ports": [{"name": "http", "port": 3000}],
                "endpoints": [{"addresses": [format!("10.0.0.{}", i + 1)], "conditions": {"ready": true}}]
            }))
        })
        .collect();
    (services, slices)
}

fn snapshot(gateways: Vec<Arc<Gateway>>, routes: Vec<Arc<HttpRoute>>) -> (Snapshot, GatewayInputs) {
    let (services, slices) = backends();
    let c = Cluster {
        services,
        slices,
        gateway: GatewayObjects {
            classes: vec![obj(serde_json::json!({
                "metadata": {"name": "jetbridge"},
                "spec": {"controllerName": CONTROLLER}
            }))],
            gateways,
            http_routes: routes,
            ..GatewayObjects::default()
        },
        ..Cluster::default()
    };
    let out = from_cluster(&c, &ClusterSettings::default());
    let mut global = GlobalInputs::for_test();
    global.gateway_ports = out.gateway.ports.clone();
    let snapshot = translate(&Inputs {
        global,
        routes: out.routes,
        diagnostics: Vec::new(),
    });
    (snapshot, out.gateway)
}

/// The Gateway table of `gateway`'s `port`.
fn table<'s>(s: &'s Snapshot, gateway: &str, port: u16) -> &'s GatewayTable {
    let found: Vec<&GatewayTable> = s
        .gateway_tables
        .values()
        .filter(|t| t.port.gateway == gateway && t.port.port == port)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "{gateway}:{port} in {:?}",
        s.gateway_tables.keys()
    );
    found[0]
}

/// The first upstream of the route serving `path` on proxy port `at`.
fn upstream(s: &Snapshot, at: u16, path: &str) -> Option<String> {
    upstream_for(s, at, "any.example.com", path)
}

/// The first upstream of the route serving `host` and `path` on proxy
/// port `at`.
fn upstream_for(s: &Snapshot, at: u16, host: &str, path: &str) -> Option<String> {
    let headers = http::HeaderMap::new();
    let view = RequestView {
        method: &http::Method::GET,
        headers: &headers,
        query: None,
    };
    s.route_on(TableRef::GatewayPort(at), host, path, &view)
        .map(|r| r.upstreams[0].authority.clone())
}

#[test]
fn each_gateway_serves_only_its_own_routes_on_its_ports() {
    let http80 = serde_json::json!([{"name": "http", "port": 80, "protocol": "HTTP"}]);
    let (s, outcomes) = snapshot(
        vec![
            gateway("same-namespace", "2026-01-01T00:00:00Z", http80.clone()),
            gateway("all-namespaces", "2026-01-02T00:00:00Z", http80),
        ],
        vec![
            route(
                "shared",
                &["same-namespace", "all-namespaces"],
                "/shared",
                "v1",
            ),
            route("dedicated-a", &["same-namespace"], "/", "v2"),
            route("dedicated-b", &["all-namespaces"], "/", "v3"),
        ],
    );
    let a = table(&s, "infra/same-namespace", 80).port.proxy_port;
    let b = table(&s, "infra/all-namespaces", 80).port.proxy_port;
    assert_ne!(a, b);
    assert!(!table(&s, "infra/same-namespace", 80).port.tls);
    for (port, dedicated) in [(a, "10.0.0.2"), (b, "10.0.0.3")] {
        let shared = upstream(&s, port, "/shared/x").unwrap();
        assert!(shared.contains("10.0.0.1"), "{shared}");
        let own = upstream(&s, port, "/other").unwrap();
        assert!(own.contains(dedicated), "port {port}: {own}");
    }
    // A proxy port no Gateway uses has no table.
    let unused = (20000..30000).find(|p| *p != a && *p != b).unwrap();
    assert_eq!(upstream(&s, unused, "/"), None);
    // The listeners' outcomes carry the ports the Services map.
    let ports: Vec<(String, u16, u16)> = outcomes
        .listeners
        .iter()
        .filter_map(|l| l.gateway_port.as_ref())
        .map(|p| (p.gateway.clone(), p.port, p.proxy_port))
        .collect();
    assert!(ports.contains(&("infra/same-namespace".into(), 80, a)));
    assert!(ports.contains(&("infra/all-namespaces".into(), 80, b)));
}

#[test]
fn listeners_on_other_ports_get_ports_of_their_own_and_keep_their_protocol() {
    let listeners = serde_json::json!([
        {"name": "http", "port": 8080, "protocol": "HTTP"},
        {"name": "web", "port": 80, "protocol": "HTTP"},
        {"name": "tcp", "port": 9000, "protocol": "TCP"}
    ]);
    let (s, outcomes) = snapshot(
        vec![gateway("gw", "2026-01-01T00:00:00Z", listeners)],
        vec![route("r", &["gw"], "/", "v1")],
    );
    let p8080 = table(&s, "infra/gw", 8080).port.proxy_port;
    let p80 = table(&s, "infra/gw", 80).port.proxy_port;
    assert_ne!(p8080, p80);
    assert!(upstream(&s, p8080, "/").unwrap().contains("10.0.0.1"));
    // The TCP listener takes no routes: no port of its own.
    let tcp = outcomes
        .listeners
        .iter()
        .find(|l| l.listener == "tcp")
        .unwrap();
    assert_eq!(tcp.gateway_port, None);
    // An older Gateway's ports do not move when a newer one arrives.
    let (s2, _) = snapshot(
        vec![
            gateway(
                "gw",
                "2026-01-01T00:00:00Z",
                serde_json::json!([
                    {"name": "http", "port": 8080, "protocol": "HTTP"},
                    {"name": "web", "port": 80, "protocol": "HTTP"}
                ]),
            ),
            gateway(
                "newer",
                "2026-02-01T00:00:00Z",
                serde_json::json!([
                    {"name": "web", "port": 80, "protocol": "HTTP"}
                ]),
            ),
        ],
        vec![route("r", &["gw", "newer"], "/", "v1")],
    );
    assert_eq!(table(&s2, "infra/gw", 8080).port.proxy_port, p8080);
    assert_eq!(table(&s2, "infra/gw", 80).port.proxy_port, p80);
}

/// An HTTPRoute `name` attached to listener `section` of Gateway `gw`, with
/// `hostnames`, sending the prefix `/<name>` to Service `v1`.
fn section_route(name: &str, gw: &str, section: &str, hostnames: &[&str]) -> Arc<HttpRoute> {
    obj(serde_json::json!({
        "metadata": {"name": name, "namespace": "infra", "generation": 1},
        "spec": {"parentRefs": [{"name": gw, "sectionName": section}],
                 "hostnames": hostnames,
                 "rules": [{
                     "matches": [{"path": {"type": "PathPrefix", "value": format!("/{name}")}}],
                     "backendRefs": [{"name": "v1", "port": 8080}]}]}
    }))
}

/// Four HTTP listeners on port 80: no hostname, `*.example.com`,
/// `*.foo.example.com`, `abc.foo.example.com` (the conformance suite's
/// `GatewayHTTPListenerIsolation`).
fn isolation_listeners() -> serde_json::Value {
    serde_json::json!([
        {"name": "empty", "port": 80, "protocol": "HTTP"},
        {"name": "wild", "port": 80, "protocol": "HTTP", "hostname": "*.example.com"},
        {"name": "wild-foo", "port": 80, "protocol": "HTTP", "hostname": "*.foo.example.com"},
        {"name": "abc", "port": 80, "protocol": "HTTP", "hostname": "abc.foo.example.com"}
    ])
}

/// For each host, the one path prefix (route name) it is served on; every
/// other route's path is a miss there.
fn assert_isolated(s: &Snapshot, port: u16, expected: &[(&str, Option<&str>)]) {
    let names = ["empty", "wild", "wild-foo", "abc"];
    for (host, served) in expected {
        for name in names {
            let got = upstream_for(s, port, host, &format!("/{name}/x")).is_some();
            assert_eq!(got, *served == Some(name), "{host} /{name}");
        }
    }
}

#[test]
fn a_request_is_served_by_the_routes_of_the_most_specific_listener_alone() {
    let expected = [
        ("bar.com", Some("empty")),
        ("bar.example.com", Some("wild")),
        ("bar.foo.example.com", Some("wild-foo")),
        ("a.b.foo.example.com", Some("wild-foo")),
        ("a.bar.example.com", Some("wild")),
        ("abc.foo.example.com", Some("abc")),
    ];
    let all = [
        "bar.com",
        "*.example.com",
        "*.foo.example.com",
        "abc.foo.example.com",
    ];
    // Hostnames on the listeners only, then on the routes too (each route
    // naming every hostname: only its listener's part may serve).
    for hostnames in [&[][..], &all[..]] {
        let routes = ["empty", "wild", "wild-foo", "abc"]
            .iter()
            .map(|l| section_route(l, "gw", l, hostnames))
            .collect();
        let (s, outcomes) = snapshot(
            vec![gateway("gw", "2026-01-01T00:00:00Z", isolation_listeners())],
            routes,
        );
        let port = table(&s, "infra/gw", 80).port.proxy_port;
        assert_isolated(&s, port, &expected);
        // Every route stays attached and accepted.
        assert!(outcomes.parents.iter().all(|p| p.accepted.is_ok()));
    }
}

#[test]
fn a_listener_without_routes_still_keeps_its_names_from_wider_listeners() {
    // Routes on the listener without a hostname only, naming hosts the
    // narrower listeners cover: those answer 404, the rest is served.
    let (s, _) = snapshot(
        vec![gateway("gw", "2026-01-01T00:00:00Z", isolation_listeners())],
        vec![
            section_route("empty", "gw", "empty", &["*.foo.example.com", "bar.com"]),
            section_route("wild", "gw", "wild", &["*.example.com"]),
        ],
    );
    let port = table(&s, "infra/gw", 80).port.proxy_port;
    assert_isolated(
        &s,
        port,
        &[
            ("bar.com", Some("empty")),
            ("bar.example.com", Some("wild")),
            ("bar.foo.example.com", None),
            ("abc.foo.example.com", None),
        ],
    );
    // A wildcard route on the widest listener, and a narrower listener
    // (`*.example.com`) covering all of it: the route serves none of it.
    let (s, _) = snapshot(
        vec![gateway(
            "gw",
            "2026-01-01T00:00:00Z",
            serde_json::json!([
                {"name": "empty", "port": 80, "protocol": "HTTP"},
                {"name": "wild", "port": 80, "protocol": "HTTP", "hostname": "*.example.com"}
            ]),
        )],
        vec![section_route(
            "empty",
            "gw",
            "empty",
            &["*.foo.example.com"],
        )],
    );
    let port = table(&s, "infra/gw", 80).port.proxy_port;
    assert_eq!(upstream_for(&s, port, "x.foo.example.com", "/empty"), None);
}

#[test]
fn listeners_of_other_ports_or_gateways_do_not_isolate_each_other() {
    let (s, _) = snapshot(
        vec![
            gateway(
                "gw",
                "2026-01-01T00:00:00Z",
                serde_json::json!([
                    {"name": "empty", "port": 80, "protocol": "HTTP"},
                    {"name": "wild", "port": 8080, "protocol": "HTTP", "hostname": "*.example.com"}
                ]),
            ),
            gateway(
                "other",
                "2026-01-02T00:00:00Z",
                serde_json::json!([
                    {"name": "wild", "port": 80, "protocol": "HTTP", "hostname": "*.example.com"}
                ]),
            ),
        ],
        vec![section_route("empty", "gw", "empty", &[])],
    );
    let port = table(&s, "infra/gw", 80).port.proxy_port;
    assert!(upstream_for(&s, port, "bar.example.com", "/empty").is_some());
}

#[test]
fn a_gateway_port_without_routes_has_a_table_that_matches_nothing() {
    let (s, outcomes) = snapshot(
        vec![gateway(
            "gw",
            "2026-01-01T00:00:00Z",
            serde_json::json!([{"name": "web", "port": 80, "protocol": "HTTP",
                                "hostname": "web.example.com"}]),
        )],
        Vec::new(),
    );
    let t = table(&s, "infra/gw", 80);
    assert!(t.table.is_empty());
    assert_eq!(
        upstream_for(&s, t.port.proxy_port, "web.example.com", "/"),
        None
    );
    let declared = outcomes.listeners[0].gateway_port.as_ref().unwrap();
    assert_eq!(declared.proxy_port, t.port.proxy_port);
}
