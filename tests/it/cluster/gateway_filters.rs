//! Cluster tier for the HTTPRoute filters: a Gateway with an HTTPS
//! listener (its certificate from a `kubernetes.io/tls` Secret), HTTPRoutes
//! whose rules carry request and response header modifiers (`set`, `add`,
//! `remove`), filters on a backendRef, `RequestRedirect` and `URLRewrite`,
//! served by `jetbridge controller` to a real echo pod, which answers with
//! the request it saw.

use super::gateway::install_gateway_api;
use crate::harness;
use harness::cluster::*;
use harness::login::Reply;
use http::StatusCode;

/// The echo pod's view of the request's headers (`/_echo/headers`), by
/// lower-case name.
fn seen(r: &Reply) -> std::collections::BTreeMap<String, String> {
    let v: serde_json::Value =
        serde_json::from_str(&r.body).unwrap_or_else(|e| panic!("{e}: {} {}", r.status, r.body));
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap().to_string()))
        .collect()
}

fn header<'a>(r: &'a Reply, name: &str) -> Vec<&'a str> {
    r.headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

/// The Gateway, its certificate and the HTTPRoutes under test.
fn routes(ns: &str, class: &str) -> String {
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: {class}}}
spec: {{controllerName: jetbridge.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata:
  name: edge
  namespace: {ns}
  annotations: {{jetbridge.dev/allow_public_unauthenticated_access: "true"}}
spec:
  gatewayClassName: {class}
  listeners:
    - name: secure
      port: 443
      protocol: HTTPS
      hostname: "*.filters.test"
      tls: {{certificateRefs: [{{name: filters-tls}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: headers, namespace: {ns}}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [headers.filters.test]
  rules:
    - filters:
        - type: RequestHeaderModifier
          requestHeaderModifier:
            set: [{{name: X-Set, value: set-by-route}}]
            add: [{{name: X-Add, value: added-by-route}}]
            remove: [X-Remove]
        - type: ResponseHeaderModifier
          responseHeaderModifier:
            set: [{{name: X-Resp-Set, value: one}}]
            add: [{{name: X-Echo-Ip, value: added-by-route}}]
            remove: [X-Echo-Pod]
      backendRefs: [{{name: one, port: 80}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: backend, namespace: {ns}}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [backend.filters.test]
  rules:
    - backendRefs:
        - name: one
          port: 80
          filters:
            - type: RequestHeaderModifier
              requestHeaderModifier: {{add: [{{name: X-Backend, value: one}}]}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: moves, namespace: {ns}}}
spec:
  parentRefs: [{{name: edge}}]
  hostnames: [moves.filters.test]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: /old}}}}]
      filters:
        - type: RequestRedirect
          requestRedirect:
            statusCode: 301
            path: {{type: ReplacePrefixMatch, replacePrefixMatch: /new}}
    - matches: [{{path: {{type: PathPrefix, value: /away}}}}]
      filters:
        - type: RequestRedirect
          requestRedirect: {{scheme: http, hostname: example.org}}
    - matches: [{{path: {{type: PathPrefix, value: /api}}}}]
      filters:
        - type: URLRewrite
          urlRewrite:
            hostname: internal.example
            path: {{type: ReplacePrefixMatch, replacePrefixMatch: /_echo}}
      backendRefs: [{{name: one, port: 80}}]
"#
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn httproute_filters_change_what_the_backend_and_the_client_see() {
    let kube = Kube::get();
    install_gateway_api(&kube);
    let c = Corner::new(kube);
    let ns = c.ns.clone();
    c.echo_pods("one", Some("one"), 1);
    c.select("one", "one");
    c.tls_secret("filters-tls", &certificate(&["*.filters.test"]));
    c.wait_ready_endpoints("one", 1, 120).await;
    c.kube.apply(&routes(&ns, &format!("jb-{ns}")));
    let ctl = Controller::start(&c, &[]).await;
    let mut b = api_client();
    let url = |host: &str, path: &str| ctl.url(&format!("{host}.filters.test"), path);
    ctl.expect_status(&mut b, "headers.filters.test", "serves", StatusCode::OK)
        .await;

    // Request headers: set replaces, add appends, remove removes; response
    // headers likewise.
    let r = b
        .request_with(
            "GET",
            &url("headers", "/_echo/headers"),
            &[
                ("x-set", "client"),
                ("x-add", "client"),
                ("x-remove", "gone"),
            ],
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let h = seen(&r);
    assert_eq!(h.get("x-set").map(String::as_str), Some("set-by-route"));
    assert_eq!(
        h.get("x-add").map(String::as_str),
        Some("client, added-by-route")
    );
    assert!(!h.contains_key("x-remove"), "{h:?}");
    assert_eq!(header(&r, "x-resp-set"), ["one"]);
    assert_eq!(header(&r, "x-echo-ip").last(), Some(&"added-by-route"));
    assert_eq!(header(&r, "x-echo-ip").len(), 2, "{:?}", r.headers);
    assert!(header(&r, "x-echo-pod").is_empty(), "{:?}", r.headers);

    // A filter on the (only) backendRef applies to what that backend gets.
    let r = b.get(&url("backend", "/_echo/headers")).await;
    assert_eq!(seen(&r).get("x-backend").map(String::as_str), Some("one"));

    // RequestRedirect: answered by the proxy, from the route's parts and
    // the request's own host, port and query.
    let port = ctl.https;
    let r = b.get(&url("moves", "/old/lemon?x=1")).await;
    assert_eq!(r.status, StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        r.location().as_deref(),
        Some(format!("https://moves.filters.test:{port}/new/lemon?x=1").as_str())
    );
    let r = b.get(&url("moves", "/away/x")).await;
    assert_eq!(r.status, StatusCode::FOUND);
    assert_eq!(r.location().as_deref(), Some("http://example.org/away/x"));

    // URLRewrite: the backend sees the rewritten host and path.
    let r = b.get(&url("moves", "/api/headers")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        seen(&r).get("host").map(String::as_str),
        Some("internal.example")
    );
}
