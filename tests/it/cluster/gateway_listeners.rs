//! Cluster tier for Gateway listeners: a Gateway with an `HTTP` and an
//! `HTTPS` listener for the same host, each with a route of its own, served
//! by `jetbridge controller` on its plain-HTTP and TLS listeners (the HTTPS
//! listener's certificate chosen by SNI); a route needing sign-in on an
//! `HTTP` listener, and an Ingress host, redirected from the plain port.

use super::gateway::{install_gateway_api, wait_for_jsonpath};
use crate::harness;
use harness::cluster::*;
use harness::login::served_certificate;
use http::StatusCode;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread")]
async fn http_and_https_listeners_serve_their_own_routes_and_the_rest_is_redirected() {
    let kube = Kube::get();
    install_gateway_api(&kube);
    let c = Corner::with_upstream("plain", "plain").await;
    c.echo_pods("secure", Some("secure"), 1);
    c.select("secure", "secure");
    c.wait_ready_endpoints("secure", 1, 60).await;
    let ns = c.ns.clone();
    let cert = certificate(&["app.gwl.test"]);
    c.tls_secret("app-cert", &cert);
    let class = format!("jb-{ns}");
    let route = |name: &str, gateway: &str, section: &str, host: &str, svc: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  parentRefs: [{{name: {gateway}, sectionName: {section}}}]\n  hostnames: [{host}]\n  rules: [{{backendRefs: [{{name: {svc}, port: 80}}]}}]\n"
        )
    };
    c.kube.apply(&format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: {class}}}\nspec: {{controllerName: jetbridge.dev/gateway-controller}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: edge\n  namespace: {ns}\n  annotations: {{jetbridge.dev/allow_public_unauthenticated_access: \"true\"}}\nspec:\n  gatewayClassName: {class}\n  listeners:\n    - {{name: http, port: 80, protocol: HTTP, hostname: app.gwl.test}}\n    - {{name: https, port: 443, protocol: HTTPS, hostname: app.gwl.test, tls: {{certificateRefs: [{{name: app-cert}}]}}}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: guarded, namespace: {ns}}}\nspec:\n  gatewayClassName: {class}\n  listeners: [{{name: http, port: 80, protocol: HTTP, hostname: private.gwl.test}}]\n{}{}{}",
        route("on-http", "edge", "http", "app.gwl.test", "plain"),
        route("on-https", "edge", "https", "app.gwl.test", "secure"),
        route("private", "guarded", "http", "private.gwl.test", "plain"),
    ));
    c.public_ingress("ing", "ing.gwl.test", "secure");
    let ctl = Controller::start(&c, &[]).await;
    let mut b = api_client();

    // The same host: the HTTP listener's route over plain HTTP, the HTTPS
    // listener's over TLS.
    let plain = eventually(
        &mut b,
        &ctl.plain_url("app.gwl.test", "/x"),
        "serves the HTTP listener's route",
        |r| r.status == StatusCode::OK,
        &ctl,
    )
    .await;
    assert_eq!(plain.body.trim(), "plain");
    let secure = eventually(
        &mut b,
        &ctl.url("app.gwl.test", "/x"),
        "serves the HTTPS listener's route",
        |r| r.status == StatusCode::OK,
        &ctl,
    )
    .await;
    assert_eq!(secure.body.trim(), "secure");
    // The HTTPS listener's certificate, chosen by SNI.
    assert_eq!(served_certificate(ctl.https, "app.gwl.test").await, cert.2);

    // A route that needs sign-in (its Gateway is not public) and an
    // Ingress host: the plain port redirects both to HTTPS.
    let ingress = ctl
        .expect_status(&mut b, "ing.gwl.test", "serves", StatusCode::OK)
        .await;
    assert_eq!(ingress.body.trim(), "secure");
    for (host, path) in [("private.gwl.test", "/p?q=1"), ("ing.gwl.test", "/i")] {
        let r = b.get(&ctl.plain_url(host, path)).await;
        assert_eq!(
            (r.status, r.location()),
            (
                StatusCode::PERMANENT_REDIRECT,
                // The controller names the public HTTPS port, 443.
                Some(format!("https://{host}{path}"))
            ),
            "{host}"
        );
    }
    // A host no listener serves: 404 on the plain port (nothing to
    // redirect to).
    let r = b.get(&ctl.plain_url("nothing.gwl.test", "/")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);

    // Both listeners resolved and each has its route.
    wait_for_jsonpath(
        &c.kube,
        &["get", "gateway", "edge", "-n", &ns, "-o",
          "jsonpath={.status.listeners[*].name} {.status.listeners[*].attachedRoutes} {.status.listeners[*].conditions[?(@.type==\"ResolvedRefs\")].status}"],
        "http https 1 1 True True",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_https_listener_with_a_missing_secret_reports_invalid_certificate_ref() {
    let kube = Kube::get();
    install_gateway_api(&kube);
    let c = Corner::new(kube);
    let ns = c.ns.clone();
    let class = format!("jb-{ns}");
    c.kube.apply(&format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: {class}}}\nspec: {{controllerName: jetbridge.dev/gateway-controller}}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {{name: broken, namespace: {ns}}}\nspec:\n  gatewayClassName: {class}\n  listeners: [{{name: https, port: 443, protocol: HTTPS, tls: {{certificateRefs: [{{name: missing}}]}}}}]\n"
    ));
    let _ctl = Controller::start(&c, &[]).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, out, _) = c.kube.kubectl(
            &["get", "gateway", "broken", "-n", &ns, "-o",
              "jsonpath={.status.listeners[0].conditions[?(@.type==\"ResolvedRefs\")].status} {.status.listeners[0].conditions[?(@.type==\"ResolvedRefs\")].reason} {.status.listeners[0].conditions[?(@.type==\"Programmed\")].status}"],
            None,
        );
        if out.trim() == "False InvalidCertificateRef False" {
            break;
        }
        assert!(Instant::now() < deadline, "listener status: {out:?}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
}
