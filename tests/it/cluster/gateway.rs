//! Cluster tier for the Gateway API: the Gateway API CRDs installed in a
//! real API server, echo pods behind Services, a Gateway and an HTTPRoute
//! with header and path matches and a response header filter, served by
//! `jetbridge controller`, and the status it writes.

use crate::harness;
use harness::cluster::*;
use http::StatusCode;
use std::time::{Duration, Instant};

/// Installs the Gateway API CRDs (standard channel) of the suite's release
/// (`JETBRIDGE_GATEWAY_VERSION`, default 1.7.0), from its cached build
/// (`~/.cache/jetbridge/gateway-api-vVERSION/crd/standard`), else from the
/// Go module (`go mod download sigs.k8s.io/gateway-api`, with Go 1.27).
pub(super) fn install_gateway_api(kube: &Kube) {
    let home = std::env::var("HOME").unwrap_or_default();
    let version =
        std::env::var("JETBRIDGE_GATEWAY_VERSION").unwrap_or_else(|_| "1.7.0".to_string());
    let cache = std::env::var("JETBRIDGE_CACHE").unwrap_or(format!("{home}/.cache/jetbridge"));
    let cached = std::path::PathBuf::from(format!("{cache}/gateway-api-v{version}/crd/standard"));
    let dir = if cached.is_dir() {
        cached
    } else {
        let toolchain = std::env::var("GOTOOLCHAIN").unwrap_or_else(|_| "go1.27.3".to_string());
        let out = std::process::Command::new("go")
            .args(["mod", "download", "-json"])
            .arg(format!("sigs.k8s.io/gateway-api@v{version}"))
            .env("GOTOOLCHAIN", toolchain)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        std::path::PathBuf::from(v["Dir"].as_str().unwrap()).join("config/crd/standard")
    };
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
    // The cluster's kubectl discovery cache is shared by the tests: one
    // filled before these kinds were served would have the next `apply`
    // refuse them ("no matches for kind"). Listing the group's resources
    // reads discovery afresh and rewrites the cache.
    kube.ok(
        &["api-resources", "--api-group=gateway.networking.k8s.io"],
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

/// Installs Pomerium's PolicyFilter CRD (`tests/fixtures/crd/`).
fn install_policy_filter_crd(kube: &Kube) {
    let crd = format!(
        "{}/tests/fixtures/crd/policyfilters.gateway.pomerium.io.yaml",
        env!("CARGO_MANIFEST_DIR")
    );
    kube.ok(&["apply", "--server-side", "-f", &crd], None);
    kube.ok(
        &[
            "wait",
            "--for=condition=Established",
            "crd/policyfilters.gateway.pomerium.io",
        ],
        None,
    );
}

/// `type=status reason` of one condition of an object, as kubectl shows it.
pub(super) fn condition_path(type_: &str) -> String {
    format!(
        "jsonpath={{.status.conditions[?(@.type==\"{type_}\")].status}} {{.status.conditions[?(@.type==\"{type_}\")].reason}}"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn pomerium_policy_filters_and_gateway_baselines_guard_httproutes_and_report_status() {
    let kube = Kube::get();
    install_gateway_api(&kube);
    install_policy_filter_crd(&kube);
    let c = Corner::new(kube);
    let ns = c.ns.clone();
    c.echo_pods("one", Some("one"), 1);
    c.select("one", "one");
    c.wait_ready_endpoints("one", 1, 120).await;
    // Guarded routes need sign-in: they are served on an HTTPS listener.
    c.tls_secret("gw-cert", &certificate(&["*.gw.test"]));
    let class = format!("jb-{ns}");
    let route = |name: &str, filter: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  parentRefs: [{{name: edge}}]\n  hostnames: [{name}.gw.test]\n  rules:\n    - filters: [{{type: ExtensionRef, extensionRef: {{group: gateway.pomerium.io, kind: PolicyFilter, name: {filter}}}}}]\n      backendRefs: [{{name: one, port: 80}}]\n"
        )
    };
    c.kube.apply(&format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: {class}}}\nspec: {{controllerName: jetbridge.dev/gateway-controller}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: edge\n  namespace: {ns}\n  annotations: {{jetbridge.dev/allow_public_unauthenticated_access: \"true\"}}\nspec:\n  gatewayClassName: {class}\n  listeners: [{{name: websecure, port: 443, protocol: HTTPS, hostname: \"*.gw.test\", tls: {{certificateRefs: [{{name: gw-cert}}]}}}}]\n---\napiVersion: gateway.pomerium.io/v1alpha1\nkind: PolicyFilter\nmetadata: {{name: members, namespace: {ns}}}\nspec:\n  ppl: |\n    allow:\n      or:\n        - email:\n            is: alice@example.com\n---\napiVersion: gateway.pomerium.io/v1alpha1\nkind: PolicyFilter\nmetadata: {{name: broken, namespace: {ns}}}\nspec:\n  ppl: 'allow: {{or: [{{emali: {{is: alice@example.com}}}}]}}'\n---\n{}---\n{}---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: open, namespace: {ns}}}\nspec:\n  parentRefs: [{{name: edge}}]\n  hostnames: [open.gw.test]\n  rules:\n    - backendRefs: [{{name: one, port: 80}}]\n",
        route("guarded", "members"),
        route("broken", "broken"),
    ));
    let ctl = Controller::start(&c, &[]).await;
    let mut b = api_client();
    // The Gateway says routes without a Policy are public.
    ctl.expect_status(&mut b, "open.gw.test", "public", StatusCode::OK)
        .await;
    // A valid PolicyFilter: anonymous requests are not let through.
    let guarded = b.get(&ctl.url("guarded.gw.test", "/")).await;
    assert_ne!(guarded.status, StatusCode::OK, "{}", guarded.body);
    assert_ne!(guarded.status, StatusCode::FORBIDDEN, "{}", guarded.body);
    // An invalid one: the rule is invalid, and an invalid Gateway API rule
    // answers every request with 500, forwarding none.
    ctl.expect_status(
        &mut b,
        "broken.gw.test",
        "refuses as invalid",
        StatusCode::INTERNAL_SERVER_ERROR,
    )
    .await;
    for (filter, want) in [("members", "True Valid"), ("broken", "False Invalid")] {
        let path = condition_path("Valid");
        let args = ["get", "policyfilter", filter, "-n", &ns, "-o", &path];
        wait_for_jsonpath(&c.kube, &args, want).await;
    }
    let selector = "involvedObject.kind=PolicyFilter,involvedObject.name=broken";
    let args = [
        "get",
        "events",
        "-n",
        &ns,
        "--field-selector",
        selector,
        "-o",
        "jsonpath={.items[0].type} {.items[0].reason}",
    ];
    wait_for_jsonpath(&c.kube, &args, "Warning InvalidPolicy").await;
    // A baseline Policy targeting the Gateway: the public route now needs
    // its allow rules; a Policy targeting a missing Gateway says so.
    c.kube.apply(&format!(
        "apiVersion: jetbridge.dev/v1\nkind: Policy\nmetadata: {{name: baseline, namespace: {ns}}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: edge}}]\n  allow: {{or: [{{domain: {{is: example.com}}}}]}}\n---\napiVersion: jetbridge.dev/v1\nkind: Policy\nmetadata: {{name: stray, namespace: {ns}}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: nowhere}}]\n  allow: {{or: [{{accept: true}}]}}\n"
    ));
    eventually(
        &mut b,
        &ctl.url("open.gw.test", "/"),
        "guarded by the baseline",
        |r| r.status != StatusCode::OK,
        &ctl,
    )
    .await;
    for (policy, type_, want) in [
        ("baseline", "Attached", "True Attached"),
        ("baseline", "Accepted", "True Compiled"),
        ("stray", "Attached", "False TargetNotFound"),
    ] {
        let path = condition_path(type_);
        let args = [
            "get",
            "policy.jetbridge.dev",
            policy,
            "-n",
            &ns,
            "-o",
            &path,
        ];
        wait_for_jsonpath(&c.kube, &args, want).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_host_belongs_to_its_oldest_claimant_across_ingresses_and_httproutes() {
    let kube = Kube::get();
    install_gateway_api(&kube);
    let apps = Corner::new(kube);
    let team2 = apps.beside();
    let (app, rogue) = (named_upstream("app").await, named_upstream("rogue").await);
    apps.service("app", &[app]);
    team2.service("rogue", &[rogue]);
    let (ns, ns2) = (apps.ns.clone(), team2.ns.clone());
    // The Ingress host is served over TLS: the HTTPRoute's too, to compare.
    apps.tls_secret("gw-cert", &certificate(&["*.gw.test"]));
    let class = format!("jb-{ns}");
    let route = |name: &str, host: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {ns2}}}\nspec:\n  parentRefs: [{{name: edge, namespace: {ns}}}]\n  hostnames: [{host}]\n  rules:\n    - backendRefs: [{{name: rogue, port: 80}}]\n"
        )
    };
    // An Ingress first: a later HTTPRoute of another namespace loses its host.
    apps.public_ingress("web", "first.gw.test", "app");
    apps.kube.apply(&format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: {class}}}\nspec: {{controllerName: jetbridge.dev/gateway-controller}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: edge\n  namespace: {ns}\n  annotations: {{jetbridge.dev/allow_public_unauthenticated_access: \"true\"}}\nspec:\n  gatewayClassName: {class}\n  listeners: [{{name: websecure, port: 443, protocol: HTTPS, tls: {{certificateRefs: [{{name: gw-cert}}]}}, allowedRoutes: {{namespaces: {{from: All}}}}}}]\n"
    ));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    apps.kube.apply(&route("late", "first.gw.test"));
    // An HTTPRoute first: a later Ingress of another namespace loses the host.
    apps.kube.apply(&route("early", "second.gw.test"));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    apps.public_ingress("late-web", "second.gw.test", "app");
    let extra = ["--namespaces", ns2.as_str()];
    let ctl = Controller::start(&apps, &extra).await;
    let mut b = api_client();
    ctl.expect(&mut b, "first.gw.test", "the Ingress serves", |r| {
        r.body == "app"
    })
    .await;
    ctl.expect(&mut b, "second.gw.test", "the HTTPRoute serves", |r| {
        r.body == "rogue"
    })
    .await;
    let accepted = "jsonpath={.status.parents[0].conditions[?(@.type==\"Accepted\")].status} {.status.parents[0].conditions[?(@.type==\"Accepted\")].reason}";
    let args = ["get", "httproute", "late", "-n", &ns2, "-o", accepted];
    wait_for_jsonpath(&apps.kube, &args, "False HostnameConflict").await;
    let args = ["get", "httproute", "early", "-n", &ns2, "-o", accepted];
    wait_for_jsonpath(&apps.kube, &args, "True Accepted").await;
    // Settled: both answers stay as they are.
    for (host, want) in [("first.gw.test", "app"), ("second.gw.test", "rogue")] {
        let r = b.get(&ctl.url(host, "/")).await;
        assert_eq!(r.body, want, "{host}");
    }
}
