//! Gateway listeners: which proxy listener a route is served on, and the
//! listener conditions (certificates, ports).

use super::*;
use crate::model::conditions::RequestView;
use crate::model::routing::Scheme;
use crate::translate::cluster::{Cluster, from_cluster};
use crate::translate::{GlobalInputs, Inputs, translate};

fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> Arc<T> {
    Arc::new(serde_json::from_value(v).unwrap())
}

/// A TLS Secret `name` in `ns` for `host` (a fresh self-signed certificate).
fn tls_secret(ns: &str, name: &str, host: &str) -> serde_json::Value {
    use base64::Engine as _;
    let ck = rcgen::generate_simple_self_signed(vec![host.to_string()]).unwrap();
    let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
    serde_json::json!({
        "metadata": {"name": name, "namespace": ns},
        "type": "kubernetes.io/tls",
        "data": {"tls.crt": b64(ck.cert.pem()), "tls.key": b64(ck.signing_key.serialize_pem())}
    })
}

/// A public Gateway `gw` in `infra` with `listeners`, a Service `echo` in
/// `infra`, the Secrets and the HTTPRoutes (in `infra`) given.
fn world(
    listeners: serde_json::Value,
    secrets: Vec<serde_json::Value>,
    routes: Vec<serde_json::Value>,
) -> Cluster {
    Cluster {
        services: vec![obj(serde_json::json!({
            "metadata": {"name": "echo", "namespace": "infra"},
            "spec": {"ports": [{"name": "http", "port": 8080}]}
        }))],
        slices: vec![obj(serde_json::json!({
            "metadata": {"name": "echo-1", "namespace": "infra",
                         "labels": {"kubernetes.io/service-name": "echo"}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 3000}],
            "endpoints": [{"addresses": ["10.0.0.7"], "conditions": {"ready": true}}]
        }))],
        secrets: secrets.into_iter().map(obj).collect(),
        gateway: GatewayObjects {
            classes: vec![obj(serde_json::json!({
                "metadata": {"name": "jetbridge"},
                "spec": {"controllerName": CONTROLLER}
            }))],
            gateways: vec![obj(serde_json::json!({
                "metadata": {"name": "gw", "namespace": "infra",
                             "annotations": {PUBLIC_ACCESS_ANNOTATION: "true"}},
                "spec": {"gatewayClassName": "jetbridge", "listeners": listeners}
            }))],
            http_routes: routes.into_iter().map(obj).collect(),
            ..GatewayObjects::default()
        },
        ..Cluster::default()
    }
}

/// An HTTPRoute `name` for `host` whose one rule sends `path` (a prefix)
/// to `echo`, attached to `gw` (on `section` when given).
fn route(name: &str, section: Option<&str>, host: &str, path: &str) -> serde_json::Value {
    let mut parent = serde_json::json!({"name": "gw"});
    if let Some(s) = section {
        parent["sectionName"] = s.into();
    }
    serde_json::json!({
        "metadata": {"name": name, "namespace": "infra", "generation": 1},
        "spec": {
            "parentRefs": [parent],
            "hostnames": [host],
            "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": path}}],
                       "backendRefs": [{"name": "echo", "port": 8080}]}]
        }
    })
}

fn http_and_https() -> serde_json::Value {
    serde_json::json!([
        {"name": "http", "port": 80, "protocol": "HTTP"},
        {"name": "https", "port": 443, "protocol": "HTTPS",
         "tls": {"certificateRefs": [{"name": "cert"}]}}
    ])
}

/// The id of the route each listener kind serves `host` + `path` with.
fn served(c: &Cluster, host: &str, path: &str) -> (Option<String>, Option<String>) {
    let out = from_cluster(c, &ClusterSettings::default());
    let snapshot = translate(&Inputs {
        global: GlobalInputs::for_test(),
        routes: out.routes,
        diagnostics: Vec::new(),
    });
    let headers = http::HeaderMap::new();
    let view = RequestView {
        method: &http::Method::GET,
        headers: &headers,
        query: None,
    };
    let on = |scheme| {
        snapshot
            .route_on(scheme, host, path, &view)
            .map(|r| r.id.clone())
    };
    (on(Scheme::Plain), on(Scheme::Tls))
}

#[test]
fn each_listener_serves_the_routes_attached_to_it() {
    let c = world(
        http_and_https(),
        vec![tls_secret("infra", "cert", "app.example.com")],
        vec![
            route("plain-only", Some("http"), "app.example.com", "/plain"),
            route("tls-only", Some("https"), "app.example.com", "/tls"),
            route("both", None, "app.example.com", "/both"),
        ],
    );
    let id = |name: &str| Some(format!("infra/{name}/r000/m000/app.example.com"));
    // (path, plain-HTTP listener's route, TLS listener's route)
    let cases = [
        ("/plain", id("plain-only"), None),
        ("/tls", None, id("tls-only")),
        ("/both/x", id("both"), id("both")),
        ("/other", None, None),
    ];
    for (path, plain, tls) in cases {
        assert_eq!(served(&c, "app.example.com", path), (plain, tls), "{path}");
    }
}

#[test]
fn same_host_has_different_rules_per_listener() {
    // Two routes for the same host and path, one per listener: each
    // listener serves its own, never the other's.
    let c = world(
        http_and_https(),
        vec![tls_secret("infra", "cert", "app.example.com")],
        vec![
            route("on-http", Some("http"), "app.example.com", "/"),
            route("on-https", Some("https"), "app.example.com", "/"),
        ],
    );
    let (plain, tls) = served(&c, "app.example.com", "/x");
    assert_eq!(
        plain.as_deref(),
        Some("infra/on-http/r000/m000/app.example.com")
    );
    assert_eq!(
        tls.as_deref(),
        Some("infra/on-https/r000/m000/app.example.com")
    );
}

#[test]
fn routes_outside_gateways_stay_on_the_tls_listener() {
    let input = |id: &str| crate::translate::RouteInput {
        options: RouteOptions {
            allow_public_unauthenticated_access: true,
            ..RouteOptions::default()
        },
        ..crate::translate::RouteInput::new(
            id.into(),
            ObjectRef::kube("Ingress", "ns", id),
            "app.example.com".into(),
            PathSpec::Prefix("/".into()),
        )
    };
    let snapshot = translate(&Inputs {
        global: GlobalInputs::for_test(),
        routes: vec![input("ing")],
        diagnostics: Vec::new(),
    });
    assert!(snapshot.plain_table.is_empty());
    assert_eq!(snapshot.table.lookup("app.example.com", "/"), Some(0));
}

/// The `ResolvedRefs` outcome of the Gateway's one listener `https`, whose
/// certificate reference is `cert_ref`.
fn https_refs(
    cert_ref: serde_json::Value,
    secrets: Vec<serde_json::Value>,
    grants: Vec<serde_json::Value>,
) -> ConditionOutcome {
    let mut c = world(
        serde_json::json!([{"name": "https", "port": 443, "protocol": "HTTPS",
                            "tls": {"certificateRefs": [cert_ref]}}]),
        secrets,
        Vec::new(),
    );
    c.gateway.grants = grants.into_iter().map(obj).collect();
    let out = from_cluster(&c, &ClusterSettings::default());
    let l = out
        .gateway
        .listeners
        .iter()
        .find(|l| l.listener == "https")
        .unwrap();
    l.resolved_refs.clone()
}

/// A certificate reference, the Secrets and grants, the expected reason.
type RefCase = (
    serde_json::Value,
    Vec<serde_json::Value>,
    Vec<serde_json::Value>,
    Option<&'static str>,
);

#[test]
fn bad_certificate_references_are_the_listeners_resolved_refs_reason() {
    let good = tls_secret("infra", "cert", "app.example.com");
    let elsewhere = tls_secret("certs", "cert", "app.example.com");
    let mut malformed = tls_secret("infra", "bad", "app.example.com");
    malformed["data"]["tls.crt"] = "SGVsbG8gd29ybGQK".into();
    let grant = serde_json::json!({
        "metadata": {"name": "g", "namespace": "certs"},
        "spec": {"from": [{"group": GROUP, "kind": "Gateway", "namespace": "infra"}],
                 "to": [{"group": "", "kind": "Secret"}]}
    });
    // (certificate ref, Secrets, grants, expected reason)
    let cases: Vec<RefCase> = vec![
        (
            (serde_json::json!({"name": "cert"})),
            vec![good.clone()],
            vec![],
            None,
        ),
        (
            (serde_json::json!({"name": "missing"})),
            vec![good.clone()],
            vec![],
            Some("InvalidCertificateRef"),
        ),
        (
            (serde_json::json!({"name": "cert", "kind": "WrongKind"})),
            vec![good.clone()],
            vec![],
            Some("InvalidCertificateRef"),
        ),
        (
            (serde_json::json!({"name": "cert", "group": "wrong.group"})),
            vec![good.clone()],
            vec![],
            Some("InvalidCertificateRef"),
        ),
        (
            (serde_json::json!({"name": "bad"})),
            vec![malformed],
            vec![],
            Some("InvalidCertificateRef"),
        ),
        (
            (serde_json::json!({"name": "cert", "namespace": "certs"})),
            vec![elsewhere.clone()],
            vec![],
            Some("RefNotPermitted"),
        ),
        (
            (serde_json::json!({"name": "cert", "namespace": "certs"})),
            vec![elsewhere],
            vec![grant],
            None,
        ),
    ];
    for (cert_ref, secrets, grants, want) in cases {
        let got = https_refs(cert_ref.clone(), secrets, grants);
        assert_eq!(
            got.as_ref().err().map(|(reason, _)| reason.as_str()),
            want,
            "{cert_ref}: {got:?}"
        );
    }
}

#[test]
fn a_listener_takes_the_supported_route_kinds_it_names_and_reports_the_others() {
    // (allowedRoutes.kinds, protocol, supported kinds, ResolvedRefs reason)
    let cases = [
        (
            serde_json::json!([]),
            "HTTP",
            vec!["HTTPRoute", "GRPCRoute"],
            None,
        ),
        (
            serde_json::json!([{"kind": "GRPCRoute"}]),
            "HTTP",
            vec!["GRPCRoute"],
            None,
        ),
        (
            serde_json::json!([{"kind": "InvalidRoute"}]),
            "HTTP",
            vec![],
            Some("InvalidRouteKinds"),
        ),
        (
            serde_json::json!([{"kind": "InvalidRoute"}, {"kind": "HTTPRoute"}]),
            "HTTP",
            vec!["HTTPRoute"],
            Some("InvalidRouteKinds"),
        ),
        (
            serde_json::json!([{"group": "example.com", "kind": "HTTPRoute"}]),
            "HTTP",
            vec![],
            Some("InvalidRouteKinds"),
        ),
        (serde_json::json!([]), "UDP", vec![], None),
    ];
    for (kinds, protocol, want_kinds, want_reason) in cases {
        let c = world(
            serde_json::json!([{"name": "l", "port": 80, "protocol": protocol,
                                "allowedRoutes": {"kinds": kinds}}]),
            Vec::new(),
            Vec::new(),
        );
        let out = from_cluster(&c, &ClusterSettings::default());
        let l = &out.gateway.listeners[0];
        assert_eq!(l.supported_kinds, want_kinds, "{kinds} {protocol}");
        assert_eq!(
            l.resolved_refs.as_ref().err().map(|(r, _)| r.as_str()),
            want_reason,
            "{kinds} {protocol}"
        );
    }
}
