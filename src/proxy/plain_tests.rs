//! The plain-HTTP listener's decision per request.

use super::*;
use crate::model::routing::Listeners;
use crate::settings::ConfigFile;
use crate::translate::config::{Files, Generated, inputs_from_parts};

/// A snapshot of config-file routes (YAML list items), each placed on the
/// listeners given with it.
fn snapshot(routes: &[(&str, Listeners)]) -> Snapshot {
    snapshot_with(routes, |_| ())
}

/// [`snapshot`], with `edit` applied to the inputs before translation.
fn snapshot_with(
    routes: &[(&str, Listeners)],
    edit: impl Fn(&mut crate::translate::Inputs),
) -> Snapshot {
    let yaml: String = routes.iter().map(|(r, _)| *r).collect();
    let cfg = ConfigFile::parse("test.yaml", &format!("routes:\n{yaml}")).unwrap();
    let mut inputs = inputs_from_parts(
        &cfg,
        &Files::new(),
        &mut Generated::default(),
        &mut Vec::new(),
    )
    .unwrap();
    for (input, (_, listeners)) in inputs.routes.iter_mut().zip(routes) {
        input.listeners = listeners.clone();
    }
    edit(&mut inputs);
    crate::translate::translate(&inputs)
}

fn decide(s: &Snapshot, host: &str, path: &str) -> PlainHttp {
    let req = Request::get(path).header("host", host).body(()).unwrap();
    let target = normalise(&req).unwrap();
    plain_http(s, &req, &target, TableRef::Shared(Scheme::Plain))
}

#[test]
fn plain_http_serves_only_its_own_routes_that_need_no_sign_in() {
    let both = Listeners::TLS.union(Listeners::PLAIN);
    let s = snapshot(&[
        (
            "  - {from: http://gw.example.com, prefix: /pub, to: http://127.0.0.1:1, allow_public_unauthenticated_access: true}\n",
            Listeners::PLAIN,
        ),
        (
            "  - {from: http://gw.example.com, prefix: /both, to: http://127.0.0.1:1, allow_public_unauthenticated_access: true}\n",
            both,
        ),
        (
            "  - {from: http://gw.example.com, prefix: /private, to: http://127.0.0.1:1, policy: [{allow: {or: [{email: {is: a@example.com}}]}}]}\n",
            Listeners::PLAIN,
        ),
        (
            "  - {from: http://gw.example.com, prefix: /tls, to: http://127.0.0.1:1, allow_public_unauthenticated_access: true}\n",
            Listeners::TLS,
        ),
        (
            "  - {from: https://ingress.example.com, to: http://127.0.0.1:1, allow_public_unauthenticated_access: true}\n",
            Listeners::TLS,
        ),
    ]);
    let cases = [
        ("gw.example.com", "/pub/x", PlainHttp::Serve),
        ("gw.example.com", "/both", PlainHttp::Serve),
        // A route needing a session: sign-in happens over HTTPS only.
        ("gw.example.com", "/private", PlainHttp::Redirect),
        // The host is the plain listener's, the path is not: 404.
        ("gw.example.com", "/tls", PlainHttp::NoRoute),
        ("gw.example.com", "/.pomerium/jwt", PlainHttp::Redirect),
        ("ingress.example.com", "/", PlainHttp::Redirect),
        // No listener serves it: nothing to redirect to.
        ("unknown.example.com", "/", PlainHttp::NoRoute),
    ];
    for (host, path, want) in cases {
        assert_eq!(decide(&s, host, path), want, "{host}{path}");
    }
}

#[test]
fn a_catch_all_plain_route_leaves_tls_hosts_redirected() {
    // A Gateway route without hostnames on a listener without hostname.
    let routes = [
        (
            "  - {from: http://any.invalid, to: http://127.0.0.1:1, allow_public_unauthenticated_access: true}\n",
            Listeners::PLAIN,
        ),
        (
            "  - {from: https://ingress.example.com, to: http://127.0.0.1:1, allow_public_unauthenticated_access: true}\n",
            Listeners::TLS,
        ),
    ];
    let s = snapshot_with(&routes, |i| i.routes[0].host = String::new());
    assert_eq!(decide(&s, "10.0.0.1", "/x"), PlainHttp::Serve);
    assert_eq!(decide(&s, "ingress.example.com", "/"), PlainHttp::Redirect);
}

#[test]
fn without_plain_http_routes_every_request_is_redirected() {
    let s = snapshot(&[(
        "  - {from: https://ingress.example.com, to: http://127.0.0.1:1, allow_public_unauthenticated_access: true}\n",
        Listeners::TLS,
    )]);
    for host in ["ingress.example.com", "unknown.example.com"] {
        assert_eq!(decide(&s, host, "/"), PlainHttp::Redirect, "{host}");
    }
}

#[test]
fn a_gateway_port_answers_from_its_own_routes_alone() {
    let port = |gateway: &str, proxy_port: u16| {
        let mut l = Listeners::PLAIN;
        l.gateway_ports.insert(crate::model::routing::GatewayPort {
            proxy_port,
            gateway: gateway.into(),
            port: 80,
            tls: false,
        });
        l
    };
    let s = snapshot(&[
        (
            "  - {from: http://gw.example.com, prefix: /a, to: http://127.0.0.1:1, allow_public_unauthenticated_access: true}\n",
            port("ns/a", 20001),
        ),
        (
            "  - {from: http://gw.example.com, prefix: /b, to: http://127.0.0.1:1, allow_public_unauthenticated_access: true}\n",
            port("ns/b", 20002),
        ),
        (
            "  - {from: http://gw.example.com, prefix: /private, to: http://127.0.0.1:1, policy: [{allow: {or: [{email: {is: a@example.com}}]}}]}\n",
            port("ns/a", 20001),
        ),
    ]);
    let on = |at: u16, host: &str, path: &str| {
        let req = Request::get(path).header("host", host).body(()).unwrap();
        let target = normalise(&req).unwrap();
        plain_http(&s, &req, &target, TableRef::GatewayPort(at))
    };
    assert_eq!(on(20001, "gw.example.com", "/a/x"), PlainHttp::Serve);
    assert_eq!(on(20001, "gw.example.com", "/b/x"), PlainHttp::NoRoute);
    assert_eq!(on(20002, "gw.example.com", "/b/x"), PlainHttp::Serve);
    assert_eq!(on(20002, "gw.example.com", "/a/x"), PlainHttp::NoRoute);
    // Another host, or a port no Gateway uses: 404, never a redirect.
    assert_eq!(on(20001, "other.example.com", "/a"), PlainHttp::NoRoute);
    assert_eq!(on(20003, "gw.example.com", "/a"), PlainHttp::NoRoute);
    // Sign-in happens over HTTPS.
    assert_eq!(on(20001, "gw.example.com", "/private"), PlainHttp::Redirect);
    // The shared plain-HTTP listener serves both Gateways' routes.
    assert_eq!(decide(&s, "gw.example.com", "/b/x"), PlainHttp::Serve);
}

#[test]
fn an_acme_challenge_is_served_on_plain_http_alone_and_nothing_else_of_its_host() {
    let s = snapshot(&[
        (
            "  - {from: https://app.example.com, to: http://127.0.0.1:1, policy: [{allow: {or: [{email: {is: a@example.com}}]}}]}\n",
            Listeners::TLS,
        ),
        (
            "  - {from: http://app.example.com, path: /.well-known/acme-challenge/tok-1_A, to: http://127.0.0.1:2, allow_public_unauthenticated_access: true}\n",
            Listeners::ACME_CHALLENGE,
        ),
        (
            "  - {from: http://gw.example.com, prefix: /, to: http://127.0.0.1:1, allow_public_unauthenticated_access: true}\n",
            Listeners::PLAIN,
        ),
    ]);
    let cases = [
        (
            "app.example.com",
            "/.well-known/acme-challenge/tok-1_A",
            PlainHttp::Serve,
        ),
        // Every other path of the host keeps going to HTTPS (and its policy).
        (
            "app.example.com",
            "/.well-known/acme-challenge/other",
            PlainHttp::Redirect,
        ),
        (
            "app.example.com",
            "/.well-known/acme-challenge/tok-1_A/x",
            PlainHttp::Redirect,
        ),
        (
            "app.example.com",
            "/.well-known/acme-challenge/",
            PlainHttp::Redirect,
        ),
        ("app.example.com", "/", PlainHttp::Redirect),
        // The same token on another host is not this challenge.
        (
            "other.example.com",
            "/.well-known/acme-challenge/tok-1_A",
            PlainHttp::NoRoute,
        ),
        (
            "gw.example.com",
            "/.well-known/acme-challenge/tok-1_A",
            PlainHttp::Serve,
        ),
    ];
    for (host, path, want) in cases {
        assert_eq!(decide(&s, host, path), want, "{host}{path}");
    }
    let view = crate::model::conditions::RequestView {
        method: &http::Method::GET,
        headers: &http::HeaderMap::new(),
        query: None,
    };
    let path = "/.well-known/acme-challenge/tok-1_A";
    let on = |at: Scheme, host| s.route_on(at, host, path, &view).map(|r| r.id.as_str());
    // Over plain HTTP the challenge answers; over HTTPS the host's own
    // route (with its policy) does, and another host never gets it.
    assert_eq!(on(Scheme::Plain, "app.example.com"), Some("routes[1]"));
    assert_eq!(on(Scheme::Tls, "app.example.com"), Some("routes[0]"));
    assert_eq!(on(Scheme::Plain, "gw.example.com"), Some("routes[2]"));
    let challenge = s.acme_challenge("app.example.com", path).unwrap();
    assert!(matches!(challenge.access, Access::Public));
}
