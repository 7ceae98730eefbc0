use super::*;
use crate::model::routing::{HostMatch, PathMatch, RouteKey, route_order_of};
use crate::translate::cluster::{Cluster, from_cluster};
use std::cmp::Ordering;

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Arc<T> {
    Arc::new(serde_json::from_value(v).unwrap())
}

fn up(a: &str) -> Upstream {
    Upstream {
        scheme: crate::model::UpstreamScheme::Http,
        authority: a.into(),
        base_path: String::new(),
    }
}

/// A class, a Gateway `gw` in `infra` with an HTTP listener `web` for
/// `*.example.com` taking routes from every namespace, a Service `echo` in
/// `app` with one ready endpoint, and the given HTTPRoutes.
fn world(gateway_annotations: serde_json::Value, routes: Vec<serde_json::Value>) -> Cluster {
    Cluster {
        services: vec![obj(serde_json::json!({
            "metadata": {"name": "echo", "namespace": "app"},
            "spec": {"ports": [{"name": "http", "port": 8080}]}
        }))],
        slices: vec![obj(serde_json::json!({
            "metadata": {"name": "echo-1", "namespace": "app",
                         "labels": {"kubernetes.io/service-name": "echo"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 3000}],
            "endpoints": [{"addresses": ["10.0.0.7"], "conditions": {"ready": true}}]
        }))],
        gateway: GatewayObjects {
            classes: vec![obj(serde_json::json!({
                "metadata": {"name": "jetbridge"},
                "spec": {"controllerName": CONTROLLER}
            }))],
            gateways: vec![obj(serde_json::json!({
                "metadata": {"name": "gw", "namespace": "infra", "annotations": gateway_annotations},
                "spec": {"gatewayClassName": "jetbridge", "listeners": [
                    {"name": "web", "port": 80, "protocol": "HTTP", "hostname": "*.example.com",
                     "allowedRoutes": {"namespaces": {"from": "All"}}},
                    {"name": "tcp", "port": 9000, "protocol": "TCP"}
                ]}
            }))],
            http_routes: routes.into_iter().map(obj).collect(),
            ..GatewayObjects::default()
        },
        ..Cluster::default()
    }
}

fn route(name: &str, spec: serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "metadata": {"name": name, "namespace": "app", "generation": 3,
                     "creationTimestamp": "2026-01-01T00:00:00Z"},
        "spec": spec
    })
}

fn echo_rule(extra: serde_json::Value) -> serde_json::Value {
    let mut rule = serde_json::json!({"backendRefs": [{"name": "echo", "port": 8080}]});
    if let (Some(r), Some(e)) = (rule.as_object_mut(), extra.as_object()) {
        r.extend(e.clone());
    }
    rule
}

fn translate(c: &Cluster) -> crate::translate::cluster::ClusterInputs {
    from_cluster(c, &ClusterSettings::default())
}

#[test]
fn attached_route_serves_its_hostnames_with_conditions_and_headers() {
    let c = world(
        serde_json::json!({PUBLIC_ACCESS_ANNOTATION: "true"}),
        vec![route(
            "r",
            serde_json::json!({
                "parentRefs": [{"name": "gw", "namespace": "infra"}],
                "hostnames": ["a.example.com", "b.other.com"],
                "rules": [echo_rule(serde_json::json!({
                    "matches": [{"path": {"type": "Exact", "value": "/x"},
                                 "headers": [{"name": "Version", "value": "2"}],
                                 "method": "GET"}],
                    "filters": [{"type": "RequestHeaderModifier",
                                 "requestHeaderModifier": {"set": [{"name": "X-A", "value": "1"}],
                                                           "remove": ["X-B"]}}]
                }))]
            }),
        )],
    );
    let out = translate(&c);
    assert_eq!(out.routes.len(), 1, "{:?}", out.diagnostics);
    let r = &out.routes[0];
    assert_eq!(r.host, "a.example.com");
    assert_eq!(r.path, PathSpec::Exact("/x".into()));
    assert_eq!(r.backends, vec![up("10.0.0.7:3000")]);
    assert!(r.problems.is_empty(), "{:?}", r.problems);
    assert!(r.options.allow_public_unauthenticated_access);
    assert_eq!(
        r.options.set_request_headers.get("X-A").map(String::as_str),
        Some("1")
    );
    assert_eq!(r.options.remove_request_headers, vec!["X-B".to_string()]);
    let cond = r.conditions.as_deref().unwrap();
    assert_eq!(cond.method, Some(http::Method::GET));
    assert_eq!(cond.headers.len(), 1);
    let parent = &out.gateway.parents[0];
    assert_eq!(
        (parent.accepted.clone(), parent.resolved_refs.clone()),
        (Ok(()), Ok(()))
    );
    assert_eq!(parent.generation, Some(3));
    let web = out
        .gateway
        .listeners
        .iter()
        .find(|l| l.listener == "web")
        .unwrap();
    assert_eq!(web.attached_routes, 1);
    let tcp = out
        .gateway
        .listeners
        .iter()
        .find(|l| l.listener == "tcp")
        .unwrap();
    assert_eq!(tcp.accepted.as_ref().unwrap_err().0, "UnsupportedProtocol");
}

#[test]
fn route_without_policy_denies_unless_the_gateway_opts_in() {
    let spec = serde_json::json!({
        "parentRefs": [{"name": "gw", "namespace": "infra"}],
        "rules": [echo_rule(serde_json::json!({}))]
    });
    let closed = translate(&world(
        serde_json::json!({}),
        vec![route("r", spec.clone())],
    ));
    let o = &closed.routes[0].options;
    assert!(!o.allow_public_unauthenticated_access && o.policy.is_none());
    let bad = translate(&world(
        serde_json::json!({PUBLIC_ACCESS_ANNOTATION: "yes"}),
        vec![route("r", spec)],
    ));
    assert!(!bad.routes[0].problems.is_empty());
    assert!(!bad.routes[0].options.allow_public_unauthenticated_access);
}

#[test]
fn extension_ref_attaches_a_policy_and_a_missing_one_fails_closed() {
    let spec = |policy: &str| {
        serde_json::json!({
            "parentRefs": [{"name": "gw", "namespace": "infra"}],
            "rules": [echo_rule(serde_json::json!({"filters": [{"type": "ExtensionRef",
                "extensionRef": {"group": "jetbridge.dev", "kind": "Policy", "name": policy}}]}))]
        })
    };
    let mut c = world(
        serde_json::json!({PUBLIC_ACCESS_ANNOTATION: "true"}),
        vec![route("ok", spec("staff")), route("missing", spec("nobody"))],
    );
    c.policies.push(obj(serde_json::json!({
        "metadata": {"name": "staff", "namespace": "app"},
        "spec": {"allow": {"or": [{"domain": {"is": "example.com"}}]}}
    })));
    let out = translate(&c);
    let by = |n: &str| {
        out.routes
            .iter()
            .find(|r| r.id.starts_with(&format!("app/{n}/")))
            .unwrap()
    };
    assert!(by("ok").problems.is_empty());
    assert!(by("ok").options.policy.is_some());
    assert!(!by("ok").options.allow_public_unauthenticated_access);
    assert!(by("missing").problems[0].message.contains("not found"));
}

#[test]
fn cross_namespace_backend_needs_a_reference_grant() {
    let spec = serde_json::json!({
        "parentRefs": [{"name": "gw", "namespace": "infra"}],
        "rules": [{"backendRefs": [{"name": "echo", "namespace": "app", "port": 8080}]}]
    });
    let mut r = route("r", spec);
    r["metadata"]["namespace"] = "other".into();
    let mut c = world(
        serde_json::json!({PUBLIC_ACCESS_ANNOTATION: "true"}),
        vec![r],
    );
    let denied = translate(&c);
    assert_eq!(
        denied.gateway.parents[0]
            .resolved_refs
            .as_ref()
            .unwrap_err()
            .0,
        "RefNotPermitted"
    );
    assert!(!denied.routes[0].problems.is_empty());
    c.gateway.grants.push(obj(serde_json::json!({
        "metadata": {"name": "g", "namespace": "app"},
        "spec": {"from": [{"group": GROUP, "kind": "HTTPRoute", "namespace": "other"}],
                 "to": [{"group": "", "kind": "Service"}]}
    })));
    let allowed = translate(&c);
    assert!(
        allowed.routes[0].problems.is_empty(),
        "{:?}",
        allowed.routes[0].problems
    );
    assert_eq!(allowed.gateway.parents[0].resolved_refs, Ok(()));
}

#[test]
fn parents_that_do_not_fit_a_listener_say_why() {
    let cases = [
        (
            serde_json::json!({"name": "gw", "namespace": "infra", "sectionName": "nope"}),
            "NoMatchingParent",
        ),
        (
            serde_json::json!({"name": "gw", "namespace": "infra", "sectionName": "tcp"}),
            "NotAllowedByListeners",
        ),
    ];
    for (parent, reason) in cases {
        let spec = serde_json::json!({"parentRefs": [parent], "rules": [echo_rule(serde_json::json!({}))]});
        let out = translate(&world(serde_json::json!({}), vec![route("r", spec)]));
        assert_eq!(
            out.gateway.parents[0].accepted.as_ref().unwrap_err().0,
            reason
        );
        assert!(out.routes.is_empty());
    }
    let spec = serde_json::json!({"parentRefs": [{"name": "gw", "namespace": "infra"}],
        "hostnames": ["a.other.com"], "rules": [echo_rule(serde_json::json!({}))]});
    let out = translate(&world(serde_json::json!({}), vec![route("r", spec)]));
    assert_eq!(
        out.gateway.parents[0].accepted.as_ref().unwrap_err().0,
        "NoMatchingListenerHostname"
    );
    let spec = serde_json::json!({"parentRefs": [{"name": "elsewhere"}], "rules": []});
    let out = translate(&world(serde_json::json!({}), vec![route("r", spec)]));
    assert!(
        out.gateway.parents.is_empty(),
        "another controller's parent gets no status from us"
    );
}

#[test]
fn hostnames_intersect_as_the_gateway_api_says() {
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let cases: [(Option<&str>, Vec<String>, Vec<String>); 6] = [
        (None, vec![], s(&[""])),
        (Some("*.example.com"), vec![], s(&["*.example.com"])),
        (None, s(&["A.example.com"]), s(&["a.example.com"])),
        (
            Some("*.example.com"),
            s(&["a.example.com", "x.org"]),
            s(&["a.example.com"]),
        ),
        (
            Some("a.example.com"),
            s(&["*.example.com"]),
            s(&["a.example.com"]),
        ),
        (
            Some("*.example.com"),
            s(&["*.b.example.com", "*.com"]),
            s(&["*.b.example.com", "*.example.com"]),
        ),
    ];
    for (listener, route, want) in cases {
        assert_eq!(intersect(listener, &route), want, "{listener:?} {route:?}");
    }
}

#[test]
fn weights_share_round_robin_turns() {
    let a = vec![up("a:1")];
    let b = vec![up("b:1"), up("b:2")];
    let count = |v: &[Upstream], p: &str| v.iter().filter(|u| u.authority.starts_with(p)).count();
    let out = spread(&[(3, a.clone()), (1, b.clone())]);
    assert_eq!((count(&out, "a"), count(&out, "b")), (6, 2));
    let out = spread(&[(0, a.clone()), (5, b.clone())]);
    assert_eq!((count(&out, "a"), count(&out, "b")), (0, 2));
    assert!(spread(&[(0, a)]).is_empty());
}

#[test]
fn label_selectors_match_like_kubernetes() {
    let labels: BTreeMap<String, String> = [("team".to_string(), "a".to_string())].into();
    let sel = |v: serde_json::Value| serde_json::from_value::<LabelSelector>(v).unwrap();
    assert!(label_selector_matches(
        &sel(serde_json::json!({"matchLabels": {"team": "a"}})),
        &labels
    ));
    assert!(!label_selector_matches(
        &sel(serde_json::json!({"matchLabels": {"team": "b"}})),
        &labels
    ));
    let expr = |op: &str| {
        sel(
            serde_json::json!({"matchExpressions": [{"key": "team", "operator": op, "values": ["a"]}]}),
        )
    };
    assert!(label_selector_matches(&expr("In"), &labels));
    assert!(!label_selector_matches(&expr("NotIn"), &labels));
    assert!(label_selector_matches(&expr("Exists"), &labels));
    assert!(!label_selector_matches(&expr("Bogus"), &labels));
}

/// The Gateway API's precedence: Exact path, longer prefix, method, more
/// headers, more query parameters, then older, then namespace/name.
#[test]
fn route_order_follows_gateway_api_precedence() {
    let key = |path: PathMatch, c: Conditions, created: i64, name: &str| RouteKey {
        host: HostMatch::Exact("a.test".into()),
        path,
        created,
        name: name.into(),
        conditions: Some(Arc::new(c)),
        grpc: None,
        hostname: None,
    };
    let pre = |p: &str| PathMatch::prefix(p).unwrap();
    let header = |n: usize| Conditions {
        headers: (0..n)
            .map(|i| {
                (
                    http::HeaderName::from_bytes(format!("h{i}").as_bytes()).unwrap(),
                    ValueMatch::Exact("v".into()),
                )
            })
            .collect(),
        ..Conditions::default()
    };
    let method = Conditions {
        method: Some(http::Method::GET),
        ..Conditions::default()
    };
    let query = Conditions {
        query: vec![("q".into(), ValueMatch::Exact("1".into()))],
        ..Conditions::default()
    };
    let ordered = [
        key(
            PathMatch::exact("/a").unwrap(),
            Conditions::default(),
            9,
            "z",
        ),
        key(pre("/a/b"), Conditions::default(), 9, "z"),
        key(pre("/a"), method.clone(), 9, "z"),
        key(pre("/a"), header(2), 9, "z"),
        key(pre("/a"), header(1), 9, "z"),
        key(pre("/a"), query, 9, "z"),
        key(pre("/a"), Conditions::default(), 1, "z"),
        key(pre("/a"), Conditions::default(), 9, "a"),
        key(pre("/a"), Conditions::default(), 9, "b"),
    ];
    for (i, a) in ordered.iter().enumerate() {
        for (j, b) in ordered.iter().enumerate() {
            assert_eq!(route_order_of(a, b), i.cmp(&j), "{i} vs {j}");
        }
    }
    assert_eq!(route_order_of(&ordered[0], &ordered[0]), Ordering::Equal);
}

/// `world`'s Service `echo` with its port declaring `app_protocol`, and
/// one public route to it.
fn echo_speaking(app_protocol: Option<&str>) -> crate::translate::cluster::ClusterInputs {
    let spec = serde_json::json!({
        "parentRefs": [{"name": "gw", "namespace": "infra"}],
        "rules": [echo_rule(serde_json::json!({}))]
    });
    let mut c = world(
        serde_json::json!({PUBLIC_ACCESS_ANNOTATION: "true"}),
        vec![route("r", spec)],
    );
    let mut port = serde_json::json!({"name": "http", "port": 8080});
    if let Some(p) = app_protocol {
        port["appProtocol"] = p.into();
    }
    c.services = vec![obj(serde_json::json!({
        "metadata": {"name": "echo", "namespace": "app"},
        "spec": {"ports": [port]}
    }))];
    translate(&c)
}

#[test]
fn backend_protocol_follows_the_service_ports_app_protocol() {
    use crate::model::UpstreamScheme::{H2c, Http, Https};
    let cases = [
        (None, Http, false),
        (Some("http"), Http, false),
        (Some("kubernetes.io/h2c"), H2c, false),
        (Some("kubernetes.io/ws"), Http, true),
        (Some("kubernetes.io/wss"), Https, true),
        (Some("example.com/custom"), Http, false),
        (Some("h2c"), Http, false),
    ];
    for (protocol, scheme, websocket) in cases {
        let out = echo_speaking(protocol);
        assert_eq!(out.routes.len(), 1, "{protocol:?}");
        let r = &out.routes[0];
        assert!(r.problems.is_empty(), "{protocol:?}: {:?}", r.problems);
        let schemes: Vec<_> = r.backends.iter().map(|u| u.scheme).collect();
        assert_eq!(schemes, vec![scheme], "{protocol:?}");
        assert_eq!(r.backends[0].authority, "10.0.0.7:3000", "{protocol:?}");
        assert_eq!(r.options.allow_websockets, websocket, "{protocol:?}");
    }
}

#[test]
fn each_backend_of_a_rule_keeps_its_own_protocol() {
    let spec = serde_json::json!({
        "parentRefs": [{"name": "gw", "namespace": "infra"}],
        "rules": [{"backendRefs": [{"name": "echo", "port": 8080}, {"name": "grpc", "port": 9000}]}]
    });
    let mut c = world(
        serde_json::json!({PUBLIC_ACCESS_ANNOTATION: "true"}),
        vec![route("r", spec)],
    );
    c.services.push(obj(serde_json::json!({
        "metadata": {"name": "grpc", "namespace": "app"},
        "spec": {"ports": [{"name": "h2", "port": 9000, "appProtocol": "kubernetes.io/h2c"}]}
    })));
    let out = translate(&c);
    let urls: Vec<String> = out.routes[0].backends.iter().map(|u| u.url()).collect();
    assert_eq!(
        urls,
        vec![
            "http://10.0.0.7:3000".to_string(),
            "h2c://grpc.app.svc.cluster.local:9000".to_string()
        ]
    );
    assert!(!out.routes[0].options.allow_websockets);
}

#[test]
fn a_routes_own_hostname_is_its_most_specific_one_giving_the_host() {
    let s = |v: &[&str]| v.iter().map(|h| h.to_string()).collect::<Vec<_>>();
    let cases: Vec<(&str, Vec<String>, Option<&str>)> = vec![
        (
            "abc.example.com",
            s(&["*.com", "ABC.example.com"]),
            Some("ABC.example.com"),
        ),
        (
            "abc.example.com",
            s(&["*.com", "*.example.com"]),
            Some("*.example.com"),
        ),
        ("*.example.com", s(&["*.com"]), Some("*.com")),
        ("abc.example.com", vec![], None),
    ];
    for (host, names, want) in cases {
        assert_eq!(route_hostname(host, &names), want, "{host} {names:?}");
    }
    let rank = |n: Option<&str>| HostnamePrecedence::of(n);
    let mut ranked = vec![
        rank(None),
        rank(Some("*.com")),
        rank(Some("abc.example.com")),
        rank(Some("*.example.com")),
    ];
    ranked.sort();
    assert_eq!(
        ranked,
        vec![
            rank(Some("abc.example.com")),
            rank(Some("*.example.com")),
            rank(Some("*.com")),
            rank(None)
        ]
    );
}

/// Routes that meet a listener for `abc.example.com` with different
/// hostnames of their own: the one whose own hostname is more specific
/// orders first, whatever its age, path or header matches; requests it does
/// not match still reach the others.
#[test]
fn a_more_specific_route_hostname_wins_before_path_headers_and_age() {
    let mut c = world(
        serde_json::json!({PUBLIC_ACCESS_ANNOTATION: "true"}),
        vec![],
    );
    c.gateway.gateways = vec![obj(serde_json::json!({
        "metadata": {"name": "gw", "namespace": "infra",
                     "annotations": {PUBLIC_ACCESS_ANNOTATION: "true"}},
        "spec": {"gatewayClassName": "jetbridge", "listeners": [
            {"name": "web", "port": 80, "protocol": "HTTP", "hostname": "abc.example.com",
             "allowedRoutes": {"namespaces": {"from": "All"}}}
        ]}
    }))];
    let at = |name: &str, second: u32, hostnames: serde_json::Value, m: serde_json::Value| {
        let mut r = route(
            name,
            serde_json::json!({
                "parentRefs": [{"name": "gw", "namespace": "infra"}],
                "hostnames": hostnames,
                "rules": [echo_rule(serde_json::json!({"matches": [m]}))]
            }),
        );
        r["metadata"]["creationTimestamp"] = format!("2026-01-01T00:00:{second:02}Z").into();
        r
    };
    let prefix = |p: &str| serde_json::json!({"path": {"type": "PathPrefix", "value": p}});
    let header = |p: &str, h: &str| {
        serde_json::json!({"path": {"type": "PathPrefix", "value": p},
                           "headers": [{"name": h, "value": "x"}]})
    };
    let cases = vec![
        ("same matches", prefix("/"), prefix("/")),
        (
            "longer path on the wildcard route",
            prefix("/path/prefix"),
            prefix("/path"),
        ),
        (
            "more headers on the wildcard route",
            header("/path/prefix", "B"),
            header("/path", "A"),
        ),
    ];
    for (what, wildcard_match, exact_match) in cases {
        c.gateway.http_routes = vec![
            obj(at(
                "any",
                1,
                serde_json::json!(["*.com"]),
                wildcard_match.clone(),
            )),
            obj(at(
                "wildcard",
                2,
                serde_json::json!(["*.example.com"]),
                wildcard_match,
            )),
            obj(at(
                "exact",
                9,
                serde_json::json!(["abc.example.com"]),
                exact_match,
            )),
        ];
        let out = translate(&c);
        let mut keys: Vec<RouteKey> = out
            .routes
            .iter()
            .map(|r| RouteKey {
                host: HostMatch::Exact(r.host.clone()),
                path: match &r.path {
                    PathSpec::Exact(p) => PathMatch::Exact(p.clone()),
                    PathSpec::Prefix(p) => PathMatch::prefix(p).unwrap(),
                    PathSpec::Regex(p) => panic!("no regex here: {p}"),
                },
                created: r.created,
                name: r.id.clone(),
                conditions: r.conditions.clone(),
                grpc: r.grpc,
                hostname: r.hostname,
            })
            .collect();
        assert_eq!(keys.len(), 3, "{what}: {:?}", out.diagnostics);
        assert!(
            keys.iter()
                .all(|k| k.host == HostMatch::Exact("abc.example.com".into()))
        );
        keys.sort_by(route_order_of);
        let order: Vec<&str> = keys
            .iter()
            .map(|k| k.name.split('/').nth(1).unwrap_or(""))
            .collect();
        assert_eq!(order, vec!["exact", "wildcard", "any"], "{what}");
    }
}

/// A Policy targeting a Gateway has that Gateway as its ancestor; one
/// targeting an HTTPRoute has the Gateways accepting the route.
#[test]
fn a_targeting_policys_ancestors_are_its_gateways() {
    let mut c = world(
        serde_json::json!({}),
        vec![route(
            "r",
            serde_json::json!({
                "parentRefs": [{"name": "gw", "namespace": "infra"}, {"name": "nowhere", "namespace": "infra"}],
                "hostnames": ["a.example.com"],
                "rules": [echo_rule(serde_json::json!({}))]
            }),
        )],
    );
    let policy = |name: &str, ns: &str, target: serde_json::Value| {
        obj::<crate::crd::WatchedPolicy>(serde_json::json!({
            "apiVersion": "jetbridge.dev/v1", "kind": "Policy",
            "metadata": {"name": name, "namespace": ns, "generation": 1},
            "spec": {"allow": {"or": [{"email": {"is": "a@example.com"}}]}, "targetRefs": [target]}
        }))
    };
    c.policies = vec![
        policy(
            "on-route",
            "app",
            serde_json::json!({"group": GROUP, "kind": "HTTPRoute", "name": "r"}),
        ),
        policy(
            "on-gateway",
            "infra",
            serde_json::json!({"group": GROUP, "kind": "Gateway", "name": "gw"}),
        ),
    ];
    let out = translate(&c);
    let ancestors = |name: &str| {
        out.gateway
            .policy_targets
            .iter()
            .find(|t| t.name == name)
            .map(|t| t.ancestors.clone())
            .unwrap_or_else(|| panic!("no outcome for {name}: {:?}", out.gateway.policy_targets))
    };
    let gw = vec![("infra".to_string(), "gw".to_string())];
    assert_eq!(ancestors("on-route"), gw);
    assert_eq!(ancestors("on-gateway"), gw);
}
