//! Cluster tier for the Gateway API: the Gateway API CRDs installed in a
//! real API server, echo pods behind Services, a Gateway and an HTTPRoute
//! with header and path matches and a response header filter, served by
//! `jetbridge controller`, and the status it writes.

use crate::harness;
use harness::cluster::*;
use http::StatusCode;
use std::time::{Duration, Instant};

/// Installs the Gateway API CRDs (standard channel), from the cached
/// release (`~/.cache/jetbridge/gateway-api-v*/crd/standard`), else from
/// the Go module (`go mod download sigs.k8s.io/gateway-api`).
pub(super) fn install_gateway_api(kube: &Kube) {
    let home = std::env::var("HOME").unwrap_or_default();
    let cached = std::fs::read_dir(format!("{home}/.cache/jetbridge"))
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("gateway-api-v"))
        })
        .map(|p| p.join("crd/standard"))
        .find(|p| p.is_dir());
    let dir = cached.unwrap_or_else(|| {
        let out = std::process::Command::new("go")
            .args(["mod", "download", "-json", "sigs.k8s.io/gateway-api@v1.6.3"])
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        std::path::PathBuf::from(v["Dir"].as_str().unwrap()).join("config/crd/standard")
    });
    kube.ok(
        &["apply", "--server-side", "-f", dir.to_str().unwrap()],
        None,
    );
    kube.ok(
        &[
            "wait",
            "--for=condition=Established",
            "crd/httproutes.gateway.networking.k8s.io",
            "crd/gateways.gateway.networking.k8s.io",
            "crd/gatewayclasses.gateway.networking.k8s.io",
        ],
        None,
    );
}

/// Polls `kubectl get … -o jsonpath` until it equals `want` (30 s).
pub(super) async fn wait_for_jsonpath(kube: &Kube, args: &[&str], want: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, out, _) = kube.kubectl(args, None);
        if out.trim() == want {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{args:?}: {out:?}, wanted {want:?}"
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_httproute_with_header_and_path_matches_is_served_and_its_status_written() {
    let kube = Kube::get();
    install_gateway_api(&kube);
    let c = Corner::new(kube);
    let ns = c.ns.clone();
    c.echo_pods("one", Some("one"), 1);
    c.echo_pods("two", Some("two"), 1);
    c.select("one", "one");
    c.select("two", "two");
    c.wait_ready_endpoints("one", 1, 120).await;
    c.wait_ready_endpoints("two", 1, 120).await;
    let class = format!("jb-{ns}");
    c.kube.apply(&format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: {class}}}\nspec: {{controllerName: jetbridge.dev/gateway-controller}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: edge\n  namespace: {ns}\n  annotations: {{jetbridge.dev/allow_public_unauthenticated_access: \"true\"}}\nspec:\n  gatewayClassName: {class}\n  listeners: [{{name: web, port: 80, protocol: HTTP, hostname: \"*.gw.test\"}}]\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: app, namespace: {ns}}}\nspec:\n  parentRefs: [{{name: edge}}]\n  hostnames: [app.gw.test]\n  rules:\n    - backendRefs: [{{name: one, port: 80}}]\n    - matches: [{{path: {{type: PathPrefix, value: /v2}}, headers: [{{name: version, value: \"2\"}}]}}]\n      filters: [{{type: ResponseHeaderModifier, responseHeaderModifier: {{set: [{{name: X-Route, value: two}}]}}}}]\n      backendRefs: [{{name: two, port: 80}}]\n"
    ));
    let ctl = Controller::start(&c, &[]).await;
    let mut b = api_client();
    // An HTTP listener's routes are served on the plain-HTTP port.
    let url = |path: &str| ctl.plain_url("app.gw.test", path);
    eventually(
        &mut b,
        &url("/"),
        "serves",
        |r| r.status == StatusCode::OK,
        &ctl,
    )
    .await;
    let plain = b.get(&url("/v2/x")).await;
    assert_eq!((plain.status, plain.body.trim()), (StatusCode::OK, "one"));
    let matched = b
        .request_with("GET", &url("/v2/x"), &[("version", "2")])
        .await;
    assert_eq!(
        (matched.status, matched.body.trim()),
        (StatusCode::OK, "two")
    );
    assert_eq!(
        matched.headers.get("x-route").map(|v| v.to_str().unwrap()),
        Some("two")
    );
    let other_path = b
        .request_with("GET", &url("/v3"), &[("version", "2")])
        .await;
    assert_eq!(other_path.body.trim(), "one");
    wait_for_jsonpath(
        &c.kube,
        &[
            "get",
            "gatewayclass",
            &class,
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Accepted\")].status}",
        ],
        "True",
    )
    .await;
    wait_for_jsonpath(
        &c.kube,
        &[
            "get",
            "gateway",
            "edge",
            "-n",
            &ns,
            "-o",
            "jsonpath={.status.listeners[0].attachedRoutes}",
        ],
        "1",
    )
    .await;
    wait_for_jsonpath(
        &c.kube,
        &["get", "httproute", "app", "-n", &ns, "-o",
          "jsonpath={.status.parents[0].controllerName} {.status.parents[0].conditions[?(@.type==\"Accepted\")].status} {.status.parents[0].conditions[?(@.type==\"ResolvedRefs\")].status}"],
        "jetbridge.dev/gateway-controller True True",
    )
    .await;
}
