//! Policy attachment to a route (`tests/fixtures/gateway/route-policy.yaml`):
//! a Policy whose `targetRefs` name an HTTPRoute guards each rule of it,
//! combined with a rule's own Policy and with the Gateway's baseline, and
//! its `Attached` outcome names what it found and what it did not.

use super::gateway_fixtures::{route_on_either, snapshot};
use crate::harness::golden::cluster_objects as objects;
use crate::harness::golden::lets_in;
use jetbridge::model::Access;

fn fixture() -> (
    jetbridge::translate::cluster::ClusterInputs,
    jetbridge::model::Snapshot,
) {
    let path = format!(
        "{}/tests/fixtures/gateway/route-policy.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    snapshot(&objects(&std::fs::read_to_string(path).unwrap()))
}

fn route<'s>(
    snap: &'s jetbridge::model::Snapshot,
    host: &str,
    path: &str,
) -> &'s jetbridge::model::Route {
    let headers = http::HeaderMap::new();
    let view = jetbridge::model::conditions::RequestView {
        method: &http::Method::GET,
        headers: &headers,
        query: None,
    };
    route_on_either(snap, host, path, &view).unwrap_or_else(|| panic!("no route for {host}{path}"))
}

/// Whether `email` may pass on the route serving `host` `path`.
fn decide(snap: &jetbridge::model::Snapshot, host: &str, path: &str, email: &str) -> bool {
    match &route(snap, host, path).access {
        Access::Policy(p) => lets_in(p, host, email),
        other => panic!("{host}{path}: not a policy: {other:?}"),
    }
}

#[test]
fn a_policy_targeting_an_httproute_guards_each_of_its_rules_under_the_gateway_baseline() {
    let (_, snap) = fixture();
    let table = [
        // No Policy on the rule: the route's Policy's allow, not the
        // baseline's (example.com); the baseline's deny still holds.
        ("team.example.com", "/", "dave@team.test", true),
        ("team.example.com", "/", "bob@example.com", false),
        ("team.example.com", "/", "mallory@team.test", false),
        // The rule's own Policy replaces the route's allow, never its deny.
        ("team.example.com", "/own", "dan@partner.test", true),
        ("team.example.com", "/own", "carol@partner.test", false),
        ("team.example.com", "/own", "dave@team.test", false),
        // Another route of the Gateway: the baseline alone.
        ("other.example.com", "/", "bob@example.com", true),
        ("other.example.com", "/", "dave@team.test", false),
    ];
    for (host, path, email, want) in table {
        assert_eq!(
            decide(&snap, host, path, email),
            want,
            "{email} on {host}{path}"
        );
    }
}

#[test]
fn a_policy_targeting_a_route_sends_the_identity_it_asks_for_on_every_rule() {
    let (_, snap) = fixture();
    assert!(route(&snap, "team.example.com", "/").pass_identity_headers);
    assert!(route(&snap, "team.example.com", "/own").pass_identity_headers);
    assert!(!route(&snap, "other.example.com", "/").pass_identity_headers);
}

#[test]
fn a_route_policy_reports_the_routes_it_found_and_those_it_did_not() {
    let (ci, _) = fixture();
    let outcome = |name: &str| {
        ci.gateway
            .policy_targets
            .iter()
            .find(|t| t.namespace == "shop" && t.name == name)
            .unwrap_or_else(|| panic!("no outcome for {name}"))
            .clone()
    };
    let team = outcome("team-route");
    assert_eq!(
        team.attached,
        ["HTTPRoute shop/team", "GRPCRoute shop/team-grpc"]
    );
    assert!(team.missing.is_empty(), "{:?}", team.missing);
    let astray = outcome("astray");
    assert!(astray.attached.is_empty());
    assert_eq!(astray.missing.len(), 2, "{:?}", astray.missing);
    assert!(astray.missing[0].starts_with("HTTPRoute shop/nowhere not found"));
    assert!(astray.missing[1].starts_with("HTTPRoute shop/orphan not found"));
}

/// On a real API server: a Policy applied with `targetRefs` naming an
/// HTTPRoute guards the rules of that route that name no Policy, leaves a
/// rule naming its own and the Gateway's other routes as they were, and
/// reports `Attached` (or `TargetNotFound`); deleting it opens the route again.
#[tokio::test(flavor = "multi_thread")]
async fn a_policy_applied_to_an_httproute_guards_it_on_a_cluster_and_reports_attached() {
    use super::gateway::{condition_path, install_gateway_api, wait_for_jsonpath};
    use crate::harness::cluster::*;
    use http::StatusCode;
    let kube = Kube::get();
    install_gateway_api(&kube);
    let c = Corner::new(kube);
    let ns = c.ns.clone();
    c.echo_pods("one", Some("one"), 1);
    c.select("one", "one");
    c.wait_ready_endpoints("one", 1, 120).await;
    c.tls_secret("gw-cert", &certificate(&["*.gw.test"]));
    let class = format!("jb-{ns}");
    c.kube.apply(&format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: {class}}}\nspec: {{controllerName: jetbridge.dev/gateway-controller}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: edge\n  namespace: {ns}\n  annotations: {{jetbridge.dev/allow_public_unauthenticated_access: \"true\"}}\nspec:\n  gatewayClassName: {class}\n  listeners: [{{name: websecure, port: 443, protocol: HTTPS, hostname: \"*.gw.test\", tls: {{certificateRefs: [{{name: gw-cert}}]}}}}]\n---\napiVersion: jetbridge.dev/v1\nkind: Policy\nmetadata: {{name: anyone, namespace: {ns}}}\nspec:\n  allow: {{or: [{{accept: true}}]}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: team, namespace: {ns}}}\nspec:\n  parentRefs: [{{name: edge}}]\n  hostnames: [team.gw.test]\n  rules:\n    - matches: [{{path: {{type: PathPrefix, value: /open}}}}]\n      filters: [{{type: ExtensionRef, extensionRef: {{group: jetbridge.dev, kind: Policy, name: anyone}}}}]\n      backendRefs: [{{name: one, port: 80}}]\n    - backendRefs: [{{name: one, port: 80}}]\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: other, namespace: {ns}}}\nspec:\n  parentRefs: [{{name: edge}}]\n  hostnames: [other.gw.test]\n  rules:\n    - backendRefs: [{{name: one, port: 80}}]\n"
    ));
    let ctl = Controller::start(&c, &[]).await;
    let mut b = api_client();
    // No Policy targets the route yet: the Gateway's public default.
    ctl.expect_status(&mut b, "team.gw.test", "public", StatusCode::OK)
        .await;
    let policy = |name: &str, route: &str| {
        format!(
            "apiVersion: jetbridge.dev/v1\nkind: Policy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {route}}}]\n  allow: {{or: [{{domain: {{is: example.com}}}}]}}\n"
        )
    };
    c.kube.apply(&format!(
        "{}---\n{}",
        policy("team-only", "team"),
        policy("stray", "nowhere")
    ));
    eventually(
        &mut b,
        &ctl.url("team.gw.test", "/"),
        "guarded by the Policy targeting its route",
        |r| r.status != StatusCode::OK,
        &ctl,
    )
    .await;
    let guarded = b.get(&ctl.url("team.gw.test", "/reports")).await;
    assert_ne!(guarded.status, StatusCode::OK, "{}", guarded.body);
    assert_ne!(
        guarded.status,
        StatusCode::INTERNAL_SERVER_ERROR,
        "{}",
        guarded.body
    );
    // The rule naming its own Policy, and the Gateway's other route: as before.
    for (host, path) in [("team.gw.test", "/open"), ("other.gw.test", "/")] {
        let r = b.get(&ctl.url(host, path)).await;
        assert_eq!(r.status, StatusCode::OK, "{host}{path}: {}", r.body);
    }
    for (name, want) in [
        ("team-only", "True Attached"),
        ("stray", "False TargetNotFound"),
    ] {
        let path = condition_path("Attached");
        let args = ["get", "policy.jetbridge.dev", name, "-n", &ns, "-o", &path];
        wait_for_jsonpath(&c.kube, &args, want).await;
    }
    let message = [
        "get",
        "policy.jetbridge.dev",
        "team-only",
        "-n",
        &ns,
        "-o",
        "jsonpath={.status.conditions[?(@.type==\"Attached\")].message}",
    ];
    wait_for_jsonpath(
        &c.kube,
        &message,
        &format!("attached to HTTPRoute {ns}/team"),
    )
    .await;
    // Deleted: the route is public again.
    c.kube.ok(
        &["delete", "policy.jetbridge.dev", "team-only", "-n", &ns],
        None,
    );
    ctl.expect_status(&mut b, "team.gw.test", "public again", StatusCode::OK)
        .await;
}
