//! Cluster tier for Gateway ports: listeners of one port with different
//! hostnames serve their own routes alone (listener isolation); a listener
//! port without routes is bound and answers 404; a port the proxy cannot
//! listen on shows in the Gateway's status (`Programmed: False`, reason
//! `Pending`) until it is free; and the Service of a Gateway moved to
//! another class is deleted.

use super::gateway::{install_gateway_api, wait_for_jsonpath};
use super::gateway_addresses::{get_args, wait_for_value};
use crate::harness;
use harness::cluster::*;
use http::StatusCode;
use std::time::{Duration, Instant};

/// The GatewayClass of this corner and a public Gateway `name` with
/// `listeners` (YAML flow sequence).
fn gateway_yaml(ns: &str, class: &str, name: &str, listeners: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: {name}\n  namespace: {ns}\n  annotations: {{jetbridge.dev/allow_public_unauthenticated_access: \"true\"}}\nspec:\n  gatewayClassName: {class}\n  listeners: {listeners}\n"
    )
}

fn class_yaml(class: &str, controller: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {{name: {class}}}\nspec: {{controllerName: {controller}}}\n"
    )
}

/// The proxy port the Gateway's Service maps `port` to.
async fn proxy_port(c: &Corner, gateway: &str, port: u16) -> u16 {
    let svc = format!("jetbridge-{gateway}");
    let path = format!("jsonpath={{.spec.ports[?(@.port=={port})].targetPort}}");
    let target = wait_for_value(&c.kube, &get_args("service", &svc, &c.ns, &path)).await;
    target.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn listeners_of_one_port_serve_their_own_routes_and_a_port_without_routes_answers_404() {
    let kube = Kube::get();
    install_gateway_api(&kube);
    let c = Corner::new(kube);
    let ns = c.ns.clone();
    c.echo_pods("echo", Some("echo"), 1);
    c.select("echo", "echo");
    c.wait_ready_endpoints("echo", 1, 120).await;
    let proxy = named_upstream("proxy").await;
    c.service("jetbridge-proxy", &[proxy]);
    let class = format!("jb-{ns}");
    let listeners = "[{name: empty, port: 80, protocol: HTTP}, \
        {name: wild, port: 80, protocol: HTTP, hostname: \"*.iso.test\"}, \
        {name: wild-foo, port: 80, protocol: HTTP, hostname: \"*.foo.iso.test\"}, \
        {name: abc, port: 80, protocol: HTTP, hostname: abc.foo.iso.test}, \
        {name: idle, port: 8080, protocol: HTTP}]";
    // Each route names every hostname: only its own listener's part serves.
    let route = |section: &str| {
        format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {section}, namespace: {ns}}}\nspec:\n  parentRefs: [{{name: iso, sectionName: {section}}}]\n  hostnames: [bar.test, \"*.iso.test\", \"*.foo.iso.test\", abc.foo.iso.test]\n  rules: [{{matches: [{{path: {{type: PathPrefix, value: /{section}}}}}], backendRefs: [{{name: echo, port: 80}}]}}]\n"
        )
    };
    c.kube.apply(&format!(
        "{}{}{}{}{}{}",
        class_yaml(&class, "jetbridge.dev/gateway-controller"),
        gateway_yaml(&ns, &class, "iso", listeners),
        route("empty"),
        route("wild"),
        route("wild-foo"),
        route("abc"),
    ));
    let publish = format!("{ns}/jetbridge-proxy");
    let ctl = Controller::start(&c, &["--publish-service", &publish]).await;
    let p80 = proxy_port(&c, "iso", 80).await;
    let p8080 = proxy_port(&c, "iso", 8080).await;
    let mut b = api_client();
    eventually(
        &mut b,
        &format!("http://abc.foo.iso.test:{p80}/abc"),
        "serves the exact listener's route",
        |r| r.status == StatusCode::OK,
        &ctl,
    )
    .await;
    // host → the one listener whose routes serve it.
    let cases = [
        ("bar.test", "empty"),
        ("bar.iso.test", "wild"),
        ("a.b.iso.test", "wild"),
        ("bar.foo.iso.test", "wild-foo"),
        ("a.b.foo.iso.test", "wild-foo"),
        ("abc.foo.iso.test", "abc"),
    ];
    for (host, own) in cases {
        for section in ["empty", "wild", "wild-foo", "abc"] {
            let r = b.get(&format!("http://{host}:{p80}/{section}/x")).await;
            let want = match section == own {
                true => StatusCode::OK,
                false => StatusCode::NOT_FOUND,
            };
            assert_eq!(r.status, want, "{host} /{section}: {}", r.body);
        }
    }
    // The listener port without routes: bound, 404 for every host.
    for host in ["bar.test", "abc.foo.iso.test"] {
        let r = b.get(&format!("http://{host}:{p8080}/")).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{host}: {}", r.body);
    }
    let programmed = "jsonpath={.status.listeners[?(@.name==\"idle\")].conditions[?(@.type==\"Programmed\")].status}";
    wait_for_jsonpath(
        &c.kube,
        &get_args("gateway", "iso", &ns, programmed),
        "True",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_port_the_proxy_cannot_bind_is_pending_and_a_gateway_leaving_the_class_loses_its_service()
{
    let kube = Kube::get();
    install_gateway_api(&kube);
    let c = Corner::new(kube);
    let ns = c.ns.clone();
    let proxy = named_upstream("proxy").await;
    c.service("jetbridge-proxy", &[proxy]);
    let class = format!("jb-{ns}");
    let other = format!("other-{ns}");
    // The proxy port the Gateway will get (the controller sees this
    // namespace's Gateways only), held by another socket first.
    let key = format!("{ns}/busy");
    let expected = jetbridge::model::routing::allocate_proxy_ports(&[(key.clone(), 80)])[0];
    let held = std::net::TcpListener::bind(("127.0.0.1", expected)).unwrap();
    c.kube.apply(&format!(
        "{}{}{}",
        class_yaml(&class, "jetbridge.dev/gateway-controller"),
        class_yaml(&other, "example.com/another-controller"),
        gateway_yaml(
            &ns,
            &class,
            "busy",
            "[{name: web, port: 80, protocol: HTTP}]"
        ),
    ));
    let publish = format!("{ns}/jetbridge-proxy");
    let ctl = Controller::start(&c, &["--publish-service", &publish]).await;
    assert_eq!(proxy_port(&c, "busy", 80).await, expected);
    let listener = |t: &str, field: &str| {
        format!("jsonpath={{.status.listeners[0].conditions[?(@.type==\"{t}\")].{field}}}")
    };
    let gateway = |t: &str, field: &str| {
        format!("jsonpath={{.status.conditions[?(@.type==\"{t}\")].{field}}}")
    };
    let get = |path: &str| c.kube.ok(&get_args("gateway", "busy", &ns, path), None);
    let pending = listener("Programmed", "reason");
    wait_for_jsonpath(
        &c.kube,
        &get_args("gateway", "busy", &ns, &pending),
        "Pending",
    )
    .await;
    assert_eq!(get(&listener("Programmed", "status")).trim(), "False");
    let message = get(&listener("Programmed", "message"));
    assert!(message.contains(&expected.to_string()), "{message}");
    assert_eq!(get(&listener("Accepted", "status")).trim(), "True");
    assert_eq!(get(&gateway("Programmed", "reason")).trim(), "Pending");
    ctl.wait_for_log(|l| l.contains("cannot listen on a Gateway port") && l.contains(&key))
        .await;
    // Freed: bound, Programmed, and answering (404: no route).
    drop(held);
    wait_for_jsonpath(
        &c.kube,
        &get_args("gateway", "busy", &ns, &listener("Programmed", "status")),
        "True",
    )
    .await;
    assert_eq!(get(&gateway("Programmed", "status")).trim(), "True");
    let mut b = api_client();
    eventually(
        &mut b,
        &format!("http://busy.test:{expected}/"),
        "answers 404 on the freed port",
        |r| r.status == StatusCode::NOT_FOUND,
        &ctl,
    )
    .await;
    // Moved to another controller's class: its Service and EndpointSlice go.
    c.kube.ok(
        &[
            "patch",
            "gateway",
            "busy",
            "-n",
            &ns,
            "--type=merge",
            "-p",
            &format!("{{\"spec\":{{\"gatewayClassName\":\"{other}\"}}}}"),
        ],
        None,
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (_, out, _) = c.kube.kubectl(
            &[
                "get",
                "service,endpointslice",
                "-n",
                &ns,
                "-l",
                "jetbridge.dev/gateway=busy",
                "-o",
                "name",
            ],
            None,
        );
        if out.trim().is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "still there: {out}\n{:#?}",
            ctl.log()
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    // And the proxy no longer listens there.
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(("127.0.0.1", expected))
        .await
        .is_ok()
    {
        assert!(Instant::now() < deadline, "port {expected} still served");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
