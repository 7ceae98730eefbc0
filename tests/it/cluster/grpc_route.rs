//! Cluster tier for GRPCRoute: the Gateway API conformance suite's gRPC
//! echo server (echo-basic with `GRPC_ECHO_SERVER`, run by the pod runner)
//! behind Services, a Gateway with an HTTPS listener taking GRPCRoutes only,
//! and a GRPCRoute with method and header matches, served by `jetbridge
//! controller`. The client below is a unary gRPC call written out: HTTP/2
//! over TLS, a `POST` to `/<service>/<method>` with one length-prefixed
//! message, the status in the `grpc-status` trailer.

use super::gateway::{install_gateway_api, wait_for_jsonpath};
use crate::harness;
use bytes::Bytes;
use harness::cluster::*;
use harness::proxy::tls_connect;
use http::Request;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// The echo server's gRPC service.
const SERVICE: &str = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho";

/// What one unary call brought back.
#[derive(Debug)]
struct Call {
    /// The HTTP status of the response.
    http: u16,
    /// `grpc-status` from the trailers (or, for an answer without a body,
    /// the headers).
    grpc_status: Option<String>,
    /// The response messages, length prefixes included.
    body: Vec<u8>,
    /// The leaf certificate the proxy presented for `host`.
    certificate: Vec<u8>,
}

impl Call {
    /// Whether the answer is an `EchoResponse` from a pod of `deployment`
    /// for `method` (its strings are plain bytes in the message).
    fn answered_by(&self, deployment: &str, method: &str) -> bool {
        let has = |s: &str| self.body.windows(s.len()).any(|w| w == s.as_bytes());
        self.grpc_status.as_deref() == Some("0")
            && has(&format!("{deployment}-"))
            && has(&format!("/{SERVICE}/{method}"))
    }
}

/// One unary call of `method` with an empty `EchoRequest`, through the
/// proxy listening on `port`, for `host` (SNI and `:authority`).
async fn call(port: u16, host: &str, method: &str, headers: &[(&str, &str)]) -> Call {
    let tls = tls_connect(SocketAddr::from(([127, 0, 0, 1], port)), host, &[b"h2"]).await;
    let certificate = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method("POST")
        .uri(format!("https://{host}/{SERVICE}/{method}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    for (n, v) in headers {
        req = req.header(*n, *v);
    }
    // One uncompressed message of length 0: an empty EchoRequest.
    let req = req.body(Full::new(Bytes::from_static(&[0; 5]))).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("gRPC call timed out")
        .expect("gRPC response");
    let http = resp.status().as_u16();
    let in_headers = resp
        .headers()
        .get("grpc-status")
        .map(|v| v.to_str().unwrap().to_string());
    let collected = resp.into_body().collect().await.unwrap();
    let grpc_status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .map(|v| v.to_str().unwrap().to_string())
        .or(in_headers);
    Call {
        http,
        grpc_status,
        body: collected.to_bytes().to_vec(),
        certificate,
    }
}

/// A Deployment `name` of the gRPC echo server and a Service `name` on
/// port 8080 for it, spoken to as h2c.
fn grpc_echo(c: &Corner, name: &str) {
    let ns = &c.ns;
    c.kube.apply(&format!(
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  replicas: 1\n  selector: {{matchLabels: {{app: {name}}}}}\n  template:\n    metadata: {{labels: {{app: {name}}}}}\n    spec:\n      containers:\n        - name: echo\n          image: registry.k8s.io/gateway-api/echo-basic:v1.5.1\n          env:\n            - {{name: GRPC_ECHO_SERVER, value: \"1\"}}\n            - {{name: POD_NAME, valueFrom: {{fieldRef: {{fieldPath: metadata.name}}}}}}\n            - {{name: NAMESPACE, valueFrom: {{fieldRef: {{fieldPath: metadata.namespace}}}}}}\n          ports: [{{name: grpc, containerPort: 3000}}]\n          readinessProbe: {{tcpSocket: {{port: grpc}}, periodSeconds: 1}}\n---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  selector: {{app: {name}}}\n  ports: [{{name: grpc, port: 8080, targetPort: grpc, protocol: TCP, appProtocol: kubernetes.io/h2c}}]\n"
    ));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_grpc_route_routes_calls_by_method_and_header_to_grpc_pods_over_tls() {
    let kube = Kube::get();
    install_gateway_api(&kube);
    let c = Corner::new(kube);
    let ns = c.ns.clone();
    grpc_echo(&c, "grpc-one");
    grpc_echo(&c, "grpc-two");
    let cert = certificate(&["rpc.gw.test"]);
    c.tls_secret("rpc-tls", &cert);
    c.wait_ready_endpoints("grpc-one", 1, 120).await;
    c.wait_ready_endpoints("grpc-two", 1, 120).await;
    let class = format!("jb-{ns}");
    c.kube.apply(&format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: {class}}}\nspec: {{controllerName: jetbridge.dev/gateway-controller}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: edge\n  namespace: {ns}\n  annotations: {{jetbridge.dev/allow_public_unauthenticated_access: \"true\"}}\nspec:\n  gatewayClassName: {class}\n  listeners:\n    - name: rpc\n      port: 443\n      protocol: HTTPS\n      hostname: rpc.gw.test\n      tls: {{certificateRefs: [{{name: rpc-tls}}]}}\n      allowedRoutes: {{kinds: [{{kind: GRPCRoute}}]}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: GRPCRoute\nmetadata: {{name: echo, namespace: {ns}}}\nspec:\n  parentRefs: [{{name: edge}}]\n  rules:\n    - matches: [{{method: {{service: {SERVICE}, method: Echo}}}}]\n      backendRefs: [{{name: grpc-one, port: 8080}}]\n    - matches: [{{method: {{service: {SERVICE}, method: EchoTwo}}}}, {{method: {{service: {SERVICE}, method: Echo}}, headers: [{{name: x-canary, value: \"yes\"}}]}}]\n      backendRefs: [{{name: grpc-two, port: 8080}}]\n"
    ));
    let ctl = Controller::start(&c, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let first = call(ctl.https, "rpc.gw.test", "Echo", &[]).await;
        if first.answered_by("grpc-one", "Echo") {
            assert_eq!(first.http, 200);
            assert_eq!(first.certificate, cert.2, "the listener's Secret is served");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Echo never reached grpc-one: {first:?}\n{:#?}",
            ctl.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    let two = call(ctl.https, "rpc.gw.test", "EchoTwo", &[]).await;
    assert!(two.answered_by("grpc-two", "EchoTwo"), "{two:?}");
    let canary = call(ctl.https, "rpc.gw.test", "Echo", &[("x-canary", "yes")]).await;
    assert!(canary.answered_by("grpc-two", "Echo"), "{canary:?}");
    // No rule takes EchoThree: no backend sees it (a gRPC client reads the
    // 404 as UNIMPLEMENTED).
    let three = call(ctl.https, "rpc.gw.test", "EchoThree", &[]).await;
    assert_eq!(three.http, 404, "{three:?}");
    wait_for_jsonpath(
        &c.kube,
        &["get", "grpcroute", "echo", "-n", &ns, "-o",
          "jsonpath={.status.parents[0].controllerName} {.status.parents[0].conditions[?(@.type==\"Accepted\")].status} {.status.parents[0].conditions[?(@.type==\"ResolvedRefs\")].status}"],
        "jetbridge.dev/gateway-controller True True",
    )
    .await;
    wait_for_jsonpath(
        &c.kube,
        &["get", "gateway", "edge", "-n", &ns, "-o",
          "jsonpath={.status.listeners[0].attachedRoutes} {.status.listeners[0].supportedKinds[?(@.kind==\"GRPCRoute\")].kind}"],
        "1 GRPCRoute",
    )
    .await;
}
