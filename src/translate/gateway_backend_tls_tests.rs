use crate::model::UpstreamScheme;
use crate::translate::cluster::{Cluster, ClusterInputs, ClusterSettings, from_cluster};
use crate::translate::gateway::{
    BackendTlsOutcome, CONTROLLER, GatewayObjects, PUBLIC_ACCESS_ANNOTATION,
};
use crate::translate::{PathSpec, RouteInput};
use std::sync::Arc;

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Arc<T> {
    Arc::new(serde_json::from_value(v).unwrap())
}

fn ca_pem() -> String {
    rcgen::generate_simple_self_signed(vec!["ca.example".to_string()])
        .unwrap()
        .cert
        .pem()
}

/// A ConfigMap `name` in `app` whose `ca.crt` is `pem`.
fn config_map(name: &str, pem: &str) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"name": name, "namespace": "app"},
        "data": {"ca.crt": pem}
    })
}

/// A BackendTLSPolicy `name` in `app`, created at `created` (seconds into
/// 2026-01-01), with `spec`.
fn policy(name: &str, created: u32, spec: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"name": name, "namespace": "app", "generation": 2,
                     "creationTimestamp": format!("2026-01-01T00:00:{created:02}Z")},
        "spec": spec
    })
}

/// A policy spec targeting Service `svc` (port `section` if given) with
/// CA references `refs` and `hostname`.
fn spec(
    svc: &str,
    section: Option<&str>,
    refs: serde_json::Value,
    hostname: &str,
) -> serde_json::Value {
    let mut target = serde_json::json!({"group": "", "kind": "Service", "name": svc});
    if let Some(s) = section {
        target["sectionName"] = s.into();
    }
    serde_json::json!({
        "targetRefs": [target],
        "validation": {"caCertificateRefs": refs, "hostname": hostname}
    })
}

fn ca_ref(name: &str) -> serde_json::Value {
    serde_json::json!([{"group": "", "kind": "ConfigMap", "name": name}])
}

/// A public Gateway `gw` in `infra` (HTTP, `*.example.com`, routes from
/// every namespace); Services `secure` (ports `https` 443 and `other`
/// 8443) and `plain` (port 80) in `app`, each with one ready endpoint; one
/// HTTPRoute `r` with a rule per backend (`/secure`, `/other`, `/plain`);
/// and the policies and ConfigMaps given.
fn world(policies: Vec<serde_json::Value>, maps: Vec<serde_json::Value>) -> Cluster {
    let service = |name: &str, ports: serde_json::Value| {
        obj(serde_json::json!({
            "metadata": {"name": name, "namespace": "app"},
            "spec": {"ports": ports}
        }))
    };
    let slice = |name: &str, ports: serde_json::Value, ip: &str| {
        obj(serde_json::json!({
            "metadata": {"name": format!("{name}-1"), "namespace": "app",
                         "labels": {"kubernetes.io/service-name": name}},
            "addressType": "IPv4",
            "ports": ports,
            "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}]
        }))
    };
    let rule = |path: &str, svc: &str, port: u16| {
        serde_json::json!({
            "matches": [{"path": {"type": "Exact", "value": path}}],
            "backendRefs": [{"name": svc, "port": port}]
        })
    };
    Cluster {
        services: vec![
            service(
                "secure",
                serde_json::json!([{"name": "https", "port": 443, "targetPort": 8443},
                                   {"name": "other", "port": 8443, "targetPort": 9443}]),
            ),
            service("plain", serde_json::json!([{"name": "http", "port": 80}])),
        ],
        slices: vec![
            slice(
                "secure",
                serde_json::json!([{"name": "https", "port": 8443}, {"name": "other", "port": 9443}]),
                "10.0.0.7",
            ),
            slice(
                "plain",
                serde_json::json!([{"name": "http", "port": 3000}]),
                "10.0.0.8",
            ),
        ],
        gateway: GatewayObjects {
            classes: vec![obj(serde_json::json!({
                "metadata": {"name": "jetbridge"},
                "spec": {"controllerName": CONTROLLER}
            }))],
            gateways: vec![obj(serde_json::json!({
                "metadata": {"name": "gw", "namespace": "infra",
                             "annotations": {PUBLIC_ACCESS_ANNOTATION: "true"}},
                "spec": {"gatewayClassName": "jetbridge", "listeners": [
                    {"name": "web", "port": 80, "protocol": "HTTP", "hostname": "*.example.com",
                     "allowedRoutes": {"namespaces": {"from": "All"}}}
                ]}
            }))],
            http_routes: vec![obj(serde_json::json!({
                "metadata": {"name": "r", "namespace": "app", "generation": 1,
                             "creationTimestamp": "2026-01-01T00:00:00Z"},
                "spec": {
                    "parentRefs": [{"name": "gw", "namespace": "infra"}],
                    "hostnames": ["a.example.com"],
                    "rules": [rule("/secure", "secure", 443), rule("/other", "secure", 8443),
                              rule("/plain", "plain", 80)]
                }
            }))],
            backend_tls_policies: policies.into_iter().map(obj).collect(),
            config_maps: maps.into_iter().map(obj).collect(),
            ..GatewayObjects::default()
        },
        ..Cluster::default()
    }
}

fn translate(c: &Cluster) -> ClusterInputs {
    from_cluster(c, &ClusterSettings::default())
}

fn route<'a>(out: &'a ClusterInputs, path: &str) -> &'a RouteInput {
    out.routes
        .iter()
        .find(|r| r.path == PathSpec::Exact(path.into()))
        .unwrap_or_else(|| panic!("no route for {path}: {:?}", out.routes))
}

fn outcome<'a>(out: &'a ClusterInputs, name: &str) -> &'a BackendTlsOutcome {
    out.gateway
        .backend_tls
        .iter()
        .find(|o| o.name == name)
        .unwrap_or_else(|| panic!("no outcome for {name}: {:?}", out.gateway.backend_tls))
}

fn reason(c: &crate::translate::gateway::ConditionOutcome) -> Option<&str> {
    c.as_ref().err().map(|(r, _)| r.as_str())
}

#[test]
fn a_policy_on_a_service_port_makes_its_backend_https_with_the_ca_and_name() {
    let pem = ca_pem();
    let c = world(
        vec![policy(
            "p",
            1,
            spec("secure", Some("https"), ca_ref("ca"), "abc.example.com"),
        )],
        vec![config_map("ca", &pem)],
    );
    let out = translate(&c);
    let secure = route(&out, "/secure");
    assert!(secure.problems.is_empty(), "{:?}", secure.problems);
    assert_eq!(secure.backends.len(), 1);
    assert_eq!(secure.backends[0].scheme, UpstreamScheme::Https);
    assert_eq!(secure.backends[0].authority, "10.0.0.7:8443");
    assert_eq!(
        secure.options.tls_server_name.as_deref(),
        Some("abc.example.com")
    );
    assert_eq!(secure.custom_ca_pem.as_deref(), Some(pem.as_str()));
    // The Service's other port, and another Service, are left as they are.
    for path in ["/other", "/plain"] {
        let r = route(&out, path);
        assert_eq!(r.backends[0].scheme, UpstreamScheme::Http, "{path}");
        assert_eq!(r.options.tls_server_name, None, "{path}");
        assert_eq!(r.custom_ca_pem, None, "{path}");
    }
    let o = outcome(&out, "p");
    assert_eq!(
        (o.accepted.clone(), o.resolved_refs.clone()),
        (Ok(()), Ok(()))
    );
    assert_eq!(o.generation, Some(2));
    assert_eq!(o.ancestors.len(), 1);
    let a = &o.ancestors[0];
    assert_eq!(
        (a.kind.as_deref(), a.namespace.as_deref(), a.name.as_str()),
        (Some("Gateway"), Some("infra"), "gw")
    );
}

#[test]
fn a_policy_without_section_covers_every_port_and_system_roots_set_no_ca() {
    let c = world(
        vec![policy(
            "p",
            1,
            serde_json::json!({
                "targetRefs": [{"group": "", "kind": "Service", "name": "secure"}],
                "validation": {"wellKnownCACertificates": "System", "hostname": "up.example.org"}
            }),
        )],
        vec![],
    );
    let out = translate(&c);
    for path in ["/secure", "/other"] {
        let r = route(&out, path);
        assert!(r.problems.is_empty(), "{path}: {:?}", r.problems);
        assert_eq!(r.backends[0].scheme, UpstreamScheme::Https, "{path}");
        assert_eq!(r.options.tls_server_name.as_deref(), Some("up.example.org"));
        assert_eq!(r.custom_ca_pem, None);
    }
    assert_eq!(
        route(&out, "/plain").backends[0].scheme,
        UpstreamScheme::Http
    );
    assert_eq!(outcome(&out, "p").accepted, Ok(()));
}

#[test]
fn an_unusable_ca_reference_fails_its_backend_only_with_the_spec_reasons() {
    let good = ca_pem();
    let cases: Vec<(&str, serde_json::Value, Vec<serde_json::Value>, &str)> = vec![
        (
            "missing",
            ca_ref("nowhere"),
            vec![],
            "InvalidCACertificateRef",
        ),
        (
            "malformed",
            ca_ref("bad"),
            vec![config_map(
                "bad",
                "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
            )],
            "InvalidCACertificateRef",
        ),
        (
            "not a certificate",
            ca_ref("text"),
            vec![config_map("text", "hello")],
            "InvalidCACertificateRef",
        ),
        (
            "no ca.crt key",
            ca_ref("other-key"),
            vec![
                serde_json::json!({"metadata": {"name": "other-key", "namespace": "app"},
                                     "data": {"tls.crt": good}}),
            ],
            "InvalidCACertificateRef",
        ),
        (
            "a Secret",
            serde_json::json!([{"group": "", "kind": "Secret", "name": "ca"}]),
            vec![config_map("ca", &good)],
            "InvalidKind",
        ),
    ];
    for (what, refs, maps, resolved_reason) in cases {
        let c = world(
            vec![policy(
                "p",
                1,
                spec("secure", None, refs, "abc.example.com"),
            )],
            maps,
        );
        let out = translate(&c);
        let o = outcome(&out, "p");
        assert_eq!(reason(&o.accepted), Some("NoValidCACertificate"), "{what}");
        assert_eq!(reason(&o.resolved_refs), Some(resolved_reason), "{what}");
        assert_eq!(o.ancestors.len(), 1, "{what}: the Gateway still lists it");
        let r = route(&out, "/secure");
        assert!(
            r.problems
                .iter()
                .any(|p| p.message.contains("BackendTLSPolicy")),
            "{what}: {:?}",
            r.problems
        );
        // The route itself is accepted with its refs resolved; the other
        // rules are untouched.
        let parent = &out.gateway.parents[0];
        assert_eq!(
            (parent.accepted.clone(), parent.resolved_refs.clone()),
            (Ok(()), Ok(()))
        );
        assert!(route(&out, "/plain").problems.is_empty(), "{what}");
    }
}

#[test]
fn one_valid_ca_among_invalid_ones_is_used_and_reported() {
    let pem = ca_pem();
    let refs = serde_json::json!([{"group": "", "kind": "ConfigMap", "name": "nowhere"},
                                  {"group": "", "kind": "ConfigMap", "name": "ca"}]);
    let c = world(
        vec![policy(
            "p",
            1,
            spec("secure", None, refs, "abc.example.com"),
        )],
        vec![config_map("ca", &pem)],
    );
    let out = translate(&c);
    let o = outcome(&out, "p");
    assert_eq!(o.accepted, Ok(()));
    assert_eq!(reason(&o.resolved_refs), Some("InvalidCACertificateRef"));
    let r = route(&out, "/secure");
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert_eq!(r.custom_ca_pem.as_deref(), Some(pem.as_str()));
}

#[test]
fn unsupported_validation_is_refused_not_ignored() {
    let pem = ca_pem();
    let variants = vec![
        (
            "subjectAltNames",
            serde_json::json!({
            "caCertificateRefs": ca_ref("ca"), "hostname": "abc.example.com",
            "subjectAltNames": [{"type": "Hostname", "hostname": "x.example.com"}]}),
        ),
        (
            "unknown well-known",
            serde_json::json!({
            "wellKnownCACertificates": "Cluster", "hostname": "abc.example.com"}),
        ),
        (
            "bad hostname",
            serde_json::json!({
            "caCertificateRefs": ca_ref("ca"), "hostname": "not a name"}),
        ),
        (
            "no CA at all",
            serde_json::json!({"hostname": "abc.example.com"}),
        ),
    ];
    for (what, validation) in variants {
        let c = world(
            vec![policy(
                "p",
                1,
                serde_json::json!({
                    "targetRefs": [{"group": "", "kind": "Service", "name": "secure"}],
                    "validation": validation
                }),
            )],
            vec![config_map("ca", &pem)],
        );
        let out = translate(&c);
        assert_eq!(
            reason(&outcome(&out, "p").accepted),
            Some("Invalid"),
            "{what}"
        );
        let r = route(&out, "/secure");
        assert!(
            !r.problems.is_empty(),
            "{what}: the backend must not be used"
        );
        // Never plain text to a backend a policy asks TLS for.
        assert_eq!(r.backends[0].scheme, UpstreamScheme::Https, "{what}");
    }
}

#[test]
fn the_oldest_policy_wins_a_target_and_a_port_policy_wins_over_a_service_one() {
    let pem = ca_pem();
    let maps = vec![config_map("ca", &pem)];
    let c = world(
        vec![
            // Younger, same target: Conflicted.
            policy(
                "b-young",
                5,
                spec("secure", None, ca_ref("ca"), "young.example.com"),
            ),
            policy(
                "a-old",
                3,
                spec("secure", None, ca_ref("ca"), "old.example.com"),
            ),
            // Same age as a-old, later name: Conflicted.
            policy(
                "z-same-age",
                3,
                spec("secure", None, ca_ref("ca"), "z.example.com"),
            ),
            // Names the port: wins there over any Service-wide one.
            policy(
                "port",
                9,
                spec("secure", Some("other"), ca_ref("ca"), "port.example.com"),
            ),
        ],
        maps,
    );
    let out = translate(&c);
    assert_eq!(outcome(&out, "a-old").accepted, Ok(()));
    assert_eq!(outcome(&out, "port").accepted, Ok(()));
    for loser in ["b-young", "z-same-age"] {
        let o = outcome(&out, loser);
        assert_eq!(reason(&o.accepted), Some("Conflicted"), "{loser}");
        assert!(
            o.accepted.as_ref().unwrap_err().1.contains("app/a-old"),
            "{loser}"
        );
        assert_eq!(
            o.ancestors.len(),
            1,
            "{loser}: still reports on the Gateway"
        );
    }
    let name = |path| route(&out, path).options.tls_server_name.clone();
    assert_eq!(name("/secure").as_deref(), Some("old.example.com"));
    assert_eq!(name("/other").as_deref(), Some("port.example.com"));
}

#[test]
fn a_policy_no_route_reaches_has_no_ancestors_and_other_kinds_are_not_targets() {
    let pem = ca_pem();
    let c = world(
        vec![
            policy(
                "unused",
                1,
                spec("nobody", None, ca_ref("ca"), "abc.example.com"),
            ),
            policy(
                "gateway-target",
                1,
                serde_json::json!({
                    "targetRefs": [{"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "secure"}],
                    "validation": {"caCertificateRefs": ca_ref("ca"), "hostname": "abc.example.com"}
                }),
            ),
        ],
        vec![config_map("ca", &pem)],
    );
    let out = translate(&c);
    assert!(outcome(&out, "unused").ancestors.is_empty());
    assert!(outcome(&out, "gateway-target").ancestors.is_empty());
    assert_eq!(
        route(&out, "/secure").backends[0].scheme,
        UpstreamScheme::Http
    );
}

#[test]
fn without_access_to_config_maps_a_ca_reference_fails_closed_and_system_roots_still_work() {
    let pem = ca_pem();
    let mut c = world(
        vec![
            policy(
                "by-map",
                1,
                spec("secure", Some("https"), ca_ref("ca"), "abc.example.com"),
            ),
            policy(
                "system",
                1,
                serde_json::json!({
                    "targetRefs": [{"group": "", "kind": "Service", "name": "secure", "sectionName": "other"}],
                    "validation": {"wellKnownCACertificates": "System", "hostname": "abc.example.com"}
                }),
            ),
        ],
        vec![config_map("ca", &pem)],
    );
    c.gateway.config_maps_unreadable = true;
    let out = translate(&c);
    let o = outcome(&out, "by-map");
    assert_eq!(reason(&o.accepted), Some("NoValidCACertificate"));
    assert!(
        o.resolved_refs
            .as_ref()
            .unwrap_err()
            .1
            .contains("may not read ConfigMaps")
    );
    assert!(!route(&out, "/secure").problems.is_empty());
    assert_eq!(outcome(&out, "system").accepted, Ok(()));
    assert!(route(&out, "/other").problems.is_empty());
}

/// The snapshot of the Gateway API routes of `c`, with no other settings.
fn snapshot(c: &Cluster) -> crate::model::Snapshot {
    let cfg = crate::settings::ConfigFile::parse("test.yaml", "routes: []\n").unwrap();
    let mut generated = crate::translate::config::Generated::default();
    let mut inputs =
        crate::source::file::inputs_from_config(&cfg, &mut generated, &mut Vec::new()).unwrap();
    inputs.routes = translate(c).routes;
    crate::translate::translate(&inputs)
}

#[test]
fn an_httproute_speaks_http1_to_a_tls_backend_and_a_grpcroute_http2() {
    let pem = ca_pem();
    let mut c = world(
        vec![policy(
            "p",
            1,
            spec("secure", None, ca_ref("ca"), "abc.example.com"),
        )],
        vec![config_map("ca", &pem)],
    );
    c.gateway.grpc_routes = vec![obj(serde_json::json!({
        "metadata": {"name": "g", "namespace": "app", "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": {
            "parentRefs": [{"name": "gw", "namespace": "infra"}],
            "hostnames": ["grpc.example.com"],
            "rules": [{"backendRefs": [{"name": "secure", "port": 443}]}]
        }
    }))];
    let s = snapshot(&c);
    let tls_of = |host: &str, path_hint: &str| {
        let r = s
            .routes
            .iter()
            .find(|r| r.id.contains(host) && r.id.contains(path_hint))
            .unwrap_or_else(|| {
                panic!(
                    "no route {host}: {:?}",
                    s.routes.iter().map(|r| &r.id).collect::<Vec<_>>()
                )
            });
        r.upstream_tls.clone()
    };
    // The client's Host reaches an HTTPRoute's backend only over HTTP/1.1
    // (over HTTP/2 the target's address would be its :authority).
    let http = tls_of("a.example.com", "r000");
    assert!(http.http1_only);
    assert_eq!(http.server_name.as_deref(), Some("abc.example.com"));
    assert_eq!(http.custom_ca_pem.as_deref(), Some(pem.as_str()));
    // gRPC needs HTTP/2.
    let grpc = tls_of("grpc.example.com", "grpc:");
    assert!(!grpc.http1_only);
    assert_eq!(grpc.server_name.as_deref(), Some("abc.example.com"));
}
