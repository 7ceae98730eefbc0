//! Cluster tier for an address per Gateway: two Gateways listening on the
//! same port, a route attached to both and one attached to each. The
//! controller writes each Gateway a Service of its own (owned by the
//! Gateway; its port mapped to the proxy port that serves that Gateway
//! alone) and an EndpointSlice naming the publish Service's endpoints; the
//! Gateway's `status.addresses` is that Service's cluster IP; each proxy
//! port answers with its own Gateway's routes only.

use super::gateway::{install_gateway_api, wait_for_jsonpath};
use crate::harness;
use harness::cluster::*;
use http::StatusCode;
use std::time::{Duration, Instant};

/// Polls `kubectl get … -o jsonpath` until it prints something (60 s).
pub(super) async fn wait_for_value(kube: &Kube, args: &[&str]) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (_, out, _) = kube.kubectl(args, None);
        if !out.trim().is_empty() {
            return out.trim().to_string();
        }
        assert!(Instant::now() < deadline, "{args:?}: nothing");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

/// `kubectl get KIND NAME -n NS -o jsonpath=PATH`, as arguments.
pub(super) fn get_args<'a>(
    kind: &'a str,
    name: &'a str,
    ns: &'a str,
    jsonpath: &'a str,
) -> [&'a str; 7] {
    ["get", kind, name, "-n", ns, "-o", jsonpath]
}

#[tokio::test(flavor = "multi_thread")]
async fn each_gateway_gets_a_service_of_its_own_and_serves_only_its_routes() {
    let kube = Kube::get();
    install_gateway_api(&kube);
    let c = Corner::new(kube);
    let ns = c.ns.clone();
    for (svc, answer) in [
        ("shared", "shared"),
        ("first", "first"),
        ("second", "second"),
    ] {
        c.echo_pods(svc, Some(answer), 1);
        c.select(svc, svc);
    }
    for svc in ["shared", "first", "second"] {
        c.wait_ready_endpoints(svc, 1, 120).await;
    }
    // The publish Service: the proxy's endpoints, which each Gateway's
    // EndpointSlice names.
    let proxy = named_upstream("proxy").await;
    c.service("jetbridge-proxy", &[proxy]);
    let class = format!("jb-{ns}");
    let gateway = |name: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: {name}\n  namespace: {ns}\n  annotations: {{jetbridge.dev/allow_public_unauthenticated_access: \"true\"}}\nspec:\n  gatewayClassName: {class}\n  listeners: [{{name: web, port: 80, protocol: HTTP}}]\n"
        )
    };
    let route = |name: &str, parents: &str, prefix: &str, svc: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  parentRefs: [{parents}]\n  rules: [{{matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}], backendRefs: [{{name: {svc}, port: 80}}]}}]\n"
        )
    };
    c.kube.apply(&format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: {class}}}\nspec: {{controllerName: jetbridge.dev/gateway-controller}}\n{}{}{}{}{}",
        gateway("one"),
        gateway("two"),
        route("both", "{name: one}, {name: two}", "/shared", "shared"),
        route("only-one", "{name: one}", "/", "first"),
        route("only-two", "{name: two}", "/", "second"),
    ));
    let publish = format!("{ns}/jetbridge-proxy");
    let ctl = Controller::start(&c, &["--publish-service", &publish]).await;

    let mut ports = Vec::new();
    for gw in ["one", "two"] {
        let svc = format!("jetbridge-{gw}");
        // The Gateway's Service: owned by it, port 80 to a proxy port.
        let target = wait_for_value(
            &c.kube,
            &get_args(
                "service",
                &svc,
                &ns,
                "jsonpath={.spec.ports[?(@.port==80)].targetPort}",
            ),
        )
        .await;
        let target: u16 = target.parse().unwrap();
        let owner = c.kube.ok(
            &get_args(
                "service",
                &svc,
                &ns,
                "jsonpath={.metadata.ownerReferences[0].kind}/{.metadata.ownerReferences[0].name}",
            ),
            None,
        );
        assert_eq!(owner.trim(), format!("Gateway/{gw}"));
        // Its EndpointSlice names the publish Service's endpoints.
        let slice = wait_for_value(
            &c.kube,
            &get_args(
                "endpointslice",
                &format!("{svc}-proxy"),
                &ns,
                "jsonpath={.endpoints[*].addresses[0]} {.ports[0].port}",
            ),
        )
        .await;
        assert_eq!(slice, format!("{} {target}", c.kube.host_ip()));
        // The Gateway shows the Service's cluster IP.
        let ip = c.kube.ok(
            &get_args("service", &svc, &ns, "jsonpath={.spec.clusterIP}"),
            None,
        );
        wait_for_jsonpath(
            &c.kube,
            &get_args("gateway", gw, &ns, "jsonpath={.status.addresses[0].value}"),
            ip.trim(),
        )
        .await;
        ports.push(target);
    }
    assert_ne!(ports[0], ports[1]);

    // Each proxy port: the shared route, and its own Gateway's route only.
    let mut b = api_client();
    for (port, own) in [(ports[0], "first"), (ports[1], "second")] {
        let url = |path: &str| format!("http://app.gwa.test:{port}{path}");
        let reply = eventually(
            &mut b,
            &url("/x"),
            "serves the Gateway's own route on its port",
            |r| r.status == StatusCode::OK,
            &ctl,
        )
        .await;
        assert_eq!(reply.body.trim(), own, "port {port}");
        let shared = b.get(&url("/shared/y")).await;
        assert_eq!(
            (shared.status, shared.body.trim()),
            (StatusCode::OK, "shared")
        );
    }
}
