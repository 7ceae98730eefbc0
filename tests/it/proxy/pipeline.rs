//! Proxy integration tier: the whole proxy in-process on loopback, built from
//! config YAML, in front of real upstream servers. Each test asserts what the
//! client received and what reached the upstream.

use crate::harness;

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use harness::proxy::*;
use http::{Request, Version};
use http_body_util::Full;
use std::time::{Duration, Instant};
use tokio_tungstenite::tungstenite::Message;

const ASSERTION: &str = "x-pomerium-jwt-assertion";

/// An echo upstream `a` behind one public route for `host`, and the proxy.
async fn behind_public_route(host: &str) -> (Upstream, Harness) {
    behind_route(host, |r| r).await
}

/// [`behind_public_route`], the route's other settings made by `with`.
async fn behind_route(
    host: &str,
    with: impl FnOnce(RouteConfig) -> RouteConfig,
) -> (Upstream, Harness) {
    let up = echo_http1("a").await;
    let to = format!("http://{}", up.authority());
    let h = Harness::start(&config([with(public_route(host, &to))])).await;
    (up, h)
}

/// What a table case got: `Ok(pick(echo))` when the upstream answered 200,
/// `Err(status)` otherwise.
fn outcome(r: &Resp, pick: impl FnOnce(Echo) -> String) -> Result<String, u16> {
    if r.status == 200 {
        Ok(pick(r.echo()))
    } else {
        Err(r.status)
    }
}

/// Whether a table case got what it wants (the same value, or the same status).
fn meets(want: &Result<&str, u16>, got: &Result<String, u16>) -> bool {
    match (want, got) {
        (Ok(w), Ok(g)) => w == g,
        (Err(w), Err(g)) => w == g,
        _ => false,
    }
}

/// Fails with every failed case of a table, one a line.
fn assert_no_failures(what: &str, failures: &[String]) {
    assert!(
        failures.is_empty(),
        "{what} cases failed:\n{}",
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------
// Basics and error pages

#[tokio::test]
async fn public_route_reaches_the_upstream_with_method_path_and_query() {
    let (up, h) = behind_public_route("public.example.com").await;
    let r = h.get("public.example.com", "/hello/world?x=1&y=two").await;
    let e = r.echo();
    assert_eq!(e.server, "a");
    assert_eq!(e.method, "GET");
    assert_eq!(e.path_and_query, "/hello/world?x=1&y=two");
    assert_eq!(up.requests(), 1);
    let r = h
        .raw(
            "public.example.com",
            "POST /submit HTTP/1.1\r\nHost: public.example.com\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        )
        .await;
    assert_eq!(r.echo().method, "POST");
}

#[tokio::test]
async fn unknown_host_and_unmatched_path_are_404() {
    let (up, h) = behind_route("known.example.com", |r| RouteConfig {
        prefix: Some("/app".into()),
        ..r
    })
    .await;
    assert_eq!(h.get("unknown.example.com", "/app").await.status, 404);
    assert_eq!(h.get("known.example.com", "/other").await.status, 404);
    assert_eq!(h.get("known.example.com", "/app/x").await.status, 200);
    assert_eq!(
        up.requests(),
        1,
        "only the matching request reached the upstream"
    );
}

#[tokio::test]
async fn error_pages_are_html_by_default_and_json_for_api_clients_with_a_request_id() {
    let (_up, h) = behind_route("known.example.com", |r| RouteConfig {
        prefix: Some("/app".into()),
        ..r
    })
    .await;
    for (host, path) in [
        ("unknown.example.com", "/"),
        ("known.example.com", "/nothing"),
    ] {
        let html = h.get(host, path).await;
        assert_eq!(html.status, 404);
        assert!(
            html.header("content-type")
                .unwrap()
                .starts_with("text/html")
        );
        let id = html
            .header("x-request-id")
            .expect("request id header")
            .to_string();
        assert!(!id.is_empty());
        let body = html.text();
        assert!(body.starts_with("<!DOCTYPE html>"), "{body}");
        assert!(body.contains(&id), "HTML page names the request id: {body}");

        let json = h
            .get_with(host, path, &[("accept", "application/json")])
            .await;
        assert_eq!(json.status, 404);
        assert_eq!(json.header("content-type"), Some("application/json"));
        let v = json.json();
        assert_eq!(v["status"], 404);
        assert_eq!(v["request_id"].as_str(), json.header("x-request-id"));
        assert_ne!(
            v["request_id"].as_str(),
            Some(id.as_str()),
            "ids are per request"
        );
    }
}

#[tokio::test]
async fn error_pages_never_reveal_the_upstream_address() {
    let dead = closed_port().await;
    let silent = silent_upstream().await;
    let garbage = garbage_upstream().await;
    let h = Harness::start(&config([
        public_route("down.example.com", &format!("http://{dead}")),
        public_route(
            "garbage.example.com",
            &format!("http://{}", garbage.authority()),
        ),
        RouteConfig {
            timeout: Some(Duration::from_secs(1)),
            ..public_route(
                "slow.example.com",
                &format!("http://{}", silent.authority()),
            )
        },
    ]))
    .await;
    for (host, status, port) in [
        ("down.example.com", 503, dead.port()),
        ("garbage.example.com", 502, garbage.addr.port()),
        ("slow.example.com", 504, silent.addr.port()),
    ] {
        for accept in ["text/html", "application/json"] {
            let r = h.get_with(host, "/", &[("accept", accept)]).await;
            assert_eq!(r.status, status, "{host}: {}", r.text());
            let all = format!("{:?}{}", r.headers, r.text());
            assert!(
                !all.contains("127.0.0.1"),
                "{host} leaks the upstream: {all}"
            );
            assert!(
                !all.contains(&port.to_string()),
                "{host} leaks the upstream port: {all}"
            );
        }
    }
}

#[tokio::test]
async fn an_invalid_route_fails_closed_while_the_others_keep_serving() {
    let up = echo_http1("a").await;
    let to = format!("http://{}", up.authority());
    let yaml = config([
        public_route("good.example.com", &to),
        RouteConfig {
            policy: ppl("[{allow: {or: [{no_such_criterion: true}]}}]"),
            ..route("bad.example.com", &to)
        },
    ]);
    let mut generated = jetbridge::translate::config::Generated::default();
    let snapshot = snapshot_with_diagnostics(&yaml, &mut generated);
    assert!(
        snapshot
            .diagnostics
            .iter()
            .any(|d| d.object.to_string().contains("bad.example.com")),
        "{:?}",
        snapshot.diagnostics
    );
    let mut driver = jetbridge::translate::driver::Driver::new();
    let inputs = inputs_from_yaml(&yaml, &mut generated);
    let applied = driver.apply(inputs, jetbridge::proxy::clock::unix_now(), |_| {
        Ok::<(), String>(())
    });
    assert_eq!(applied.unwrap().generation, Some(1));
    let h = Harness::serve(driver, generated).await;
    let bad = h
        .get_with("bad.example.com", "/", &[("accept", "application/json")])
        .await;
    assert_eq!(bad.status, 403, "{}", bad.text());
    assert_eq!(h.get("good.example.com", "/").await.echo().server, "a");
    assert_eq!(up.requests(), 1);
}

#[tokio::test]
async fn plain_http_listener_redirects_to_https_keeping_path_and_query() {
    init();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let stop = tokio_util::sync::CancellationToken::new();
    tokio::spawn(jetbridge::proxy::server::serve_plain(
        l,
        |req, _| async move { jetbridge::proxy::server::redirect_to_https(&req, 8443) },
        stop.clone(),
    ));
    let r = plain_get(addr, "app.example.com:80", "/a/b?c=d", &[]).await;
    assert_eq!(r.status, 308);
    assert_eq!(
        r.header("location"),
        Some("https://app.example.com:8443/a/b?c=d")
    );
    stop.cancel();
}

// ---------------------------------------------------------------------------
// Identity headers

/// Every spelling of a spoofed identity header a client could send.
const SPOOFS: &[(&str, &str)] = &[
    ("X-Pomerium-Jwt-Assertion", "spoof-1"),
    ("x-pomerium-jwt-assertion", "spoof-2"),
    ("X-POMERIUM-JWT-ASSERTION", "spoof-3"),
    ("x_pomerium_jwt_assertion", "spoof-4"),
    ("X_Pomerium_Jwt_Assertion", "spoof-5"),
    ("x.pomerium.jwt.assertion", "spoof-6"),
    ("x.pomerium.claim.email", "evil@example.com"),
    ("X-POMERIUM-CLAIM-EMAIL", "evil@example.com"),
    ("X-Pomerium-Claim-Groups", "admins"),
    ("x-pomerium-anything", "spoof-7"),
];

/// An echo upstream `a` behind the routes of [`identity_config`], and the proxy.
async fn behind_identity_routes() -> (Upstream, Harness) {
    let up = echo_http1("a").await;
    let h = Harness::start(&identity_config(&up.authority())).await;
    (up, h)
}

fn identity_config(echo: &str) -> ConfigFile {
    let to = format!("http://{echo}");
    config([
        public_route("public.example.com", &to),
        RouteConfig {
            pass_identity_headers: Some(true),
            jwt_claims_headers: claim_list(&["email", "groups"]),
            ..signed_in_route("id.example.com", &to)
        },
        signed_in_route("noid.example.com", &to),
        signed_in_route("other.example.com", &to),
        RouteConfig {
            pass_identity_headers: Some(true),
            policy: ppl("[{allow: {or: [{email: {is: alice@example.com}}]}}]"),
            ..route("policy.example.com", &to)
        },
    ])
}

async fn jwks_from_route_host(h: &Harness, host: &str) -> serde_json::Value {
    let r = h.get(host, "/.well-known/pomerium/jwks.json").await;
    assert_eq!(r.status, 200);
    r.json()
}

/// Verifies an ES256 assertion against a JWKS document; returns its claims.
fn verify_assertion(token: &str, jwks: &serde_json::Value, host: &str) -> serde_json::Value {
    use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
    let header = decode_header(token).expect("assertion header");
    assert_eq!(header.alg, Algorithm::ES256);
    assert_eq!(header.typ.as_deref(), Some("JWT"));
    let kid = header.kid.expect("kid");
    let jwk = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == kid.as_str())
        .unwrap_or_else(|| panic!("kid {kid} not in JWKS {jwks}"));
    assert!(
        jwk.get("d").is_none(),
        "JWKS must not publish private members"
    );
    let key =
        DecodingKey::from_ec_components(jwk["x"].as_str().unwrap(), jwk["y"].as_str().unwrap())
            .unwrap();
    let mut v = Validation::new(Algorithm::ES256);
    v.set_audience(&[host]);
    v.set_issuer(&[host]);
    v.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    decode::<serde_json::Value>(token, &key, &v)
        .expect("assertion verifies against the JWKS")
        .claims
}

#[tokio::test]
async fn spoofed_identity_headers_never_reach_a_public_upstream() {
    let (_up, h) = behind_identity_routes().await;
    let e = h.raw_get("public.example.com", "/", SPOOFS).await.echo();
    assert!(
        e.identity_lookalikes().is_empty(),
        "{:?}",
        e.identity_lookalikes()
    );
    // Over HTTP/2 too.
    let mut req = Request::builder().uri("https://public.example.com/h2");
    for (n, v) in SPOOFS {
        req = req.header(n.to_ascii_lowercase(), *v);
    }
    let e = send_h2(
        h.https,
        "public.example.com",
        req.body(Full::new(Bytes::new())).unwrap(),
    )
    .await
    .echo();
    assert!(
        e.identity_lookalikes().is_empty(),
        "{:?}",
        e.identity_lookalikes()
    );
}

#[tokio::test]
async fn identity_route_upstream_sees_only_the_proxys_assertion_and_claim_headers() {
    let (_up, h) = behind_identity_routes().await;
    let host = "id.example.com";
    let cookie = session_cookie(host, &session("alice@example.com", &["eng", "ops"]));
    let mut headers: Vec<(&str, &str)> = SPOOFS.to_vec();
    headers.push(("Cookie", &cookie));
    let e = h.raw_get(host, "/", &headers).await.echo();
    let assertions = e.all(ASSERTION);
    assert_eq!(assertions.len(), 1, "exactly one assertion: {assertions:?}");
    assert!(!assertions[0].starts_with("spoof"));
    let jwks = jwks_from_route_host(&h, host).await;
    let claims = verify_assertion(assertions[0], &jwks, host);
    assert_eq!(claims["email"], "alice@example.com");
    assert_eq!(e.all("x-pomerium-claim-email"), ["alice@example.com"]);
    assert_eq!(e.all("x-pomerium-claim-groups"), ["eng,ops"]);
    let allowed = [
        ASSERTION,
        "x-pomerium-claim-email",
        "x-pomerium-claim-groups",
    ];
    for (n, v) in e.identity_lookalikes() {
        assert!(allowed.contains(&n), "unexpected identity header {n}: {v}");
    }
}

#[tokio::test]
async fn assertion_verifies_against_the_jwks_from_route_host_and_internal_listener() {
    let (_up, h) = behind_identity_routes().await;
    let host = "id.example.com";
    let s = session("alice@example.com", &["eng", "ops"]);
    let cookie = session_cookie(host, &s);
    let e = h.get_with(host, "/", &[("cookie", &cookie)]).await.echo();
    let token = e.one(ASSERTION).expect("assertion reaches the upstream");

    let from_route = jwks_from_route_host(&h, host).await;
    let internal = h.internal_get("/.well-known/pomerium/jwks.json").await;
    assert_eq!(internal.status, 200);
    let from_internal = internal.json();
    assert_eq!(from_route, from_internal, "one JWKS everywhere");

    for jwks in [&from_route, &from_internal] {
        let claims = verify_assertion(token, jwks, host);
        assert_eq!(claims["iss"], host);
        assert_eq!(claims["aud"], host);
        assert_eq!(claims["email"], "alice@example.com");
        assert_eq!(claims["groups"], serde_json::json!(["eng", "ops"]));
        assert_eq!(claims["sub"], s.sub.as_str());
        assert_eq!(claims["user"], s.sub.as_str());
        assert_eq!(claims["sid"], s.id.as_str());
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            300
        );
    }
    // The next request of the same session reuses the assertion minted for
    // it (same jti and iat, see src/proxy/assertions.rs); another session
    // (even of the same user) gets its own.
    let e2 = h.get_with(host, "/", &[("cookie", &cookie)]).await.echo();
    let c1 = verify_assertion(token, &from_route, host);
    let c2 = verify_assertion(e2.one(ASSERTION).unwrap(), &from_route, host);
    assert_eq!((&c1["jti"], &c1["iat"]), (&c2["jti"], &c2["iat"]));
    let mut second = session("alice@example.com", &["eng", "ops"]);
    second.id = "sid-second-browser".into();
    let other = session_cookie(host, &second);
    let e3 = h.get_with(host, "/", &[("cookie", &other)]).await.echo();
    let c3 = verify_assertion(e3.one(ASSERTION).unwrap(), &from_route, host);
    assert_ne!(c1["jti"], c3["jti"]);
    assert_ne!(c1["sid"], c3["sid"]);
}

#[tokio::test]
async fn route_without_pass_identity_headers_gets_no_assertion() {
    let (_up, h) = behind_identity_routes().await;
    let host = "noid.example.com";
    let cookie = session_cookie(host, &session("alice@example.com", &[]));
    let e = h.get_with(host, "/", &[("cookie", &cookie)]).await.echo();
    assert!(
        e.identity_lookalikes().is_empty(),
        "{:?}",
        e.identity_lookalikes()
    );
}

#[tokio::test]
async fn session_cookie_is_not_forwarded_but_other_cookies_are() {
    let (_up, h) = behind_identity_routes().await;
    let host = "id.example.com";
    let cookie = session_cookie(host, &session("alice@example.com", &[]));
    let mixed = format!("a=1; {cookie}; b=2");
    let e = h
        .raw_get(
            host,
            "/",
            &[("Cookie", &mixed), ("Cookie", &cookie), ("Cookie", "c=3")],
        )
        .await
        .echo();
    assert!(e.one(ASSERTION).is_some(), "the session was accepted");
    let cookies = e.all("cookie").join("; ");
    assert!(
        !cookies.contains("_jetbridge"),
        "session cookie forwarded: {cookies}"
    );
    for kept in ["a=1", "b=2", "c=3"] {
        assert!(cookies.contains(kept), "{kept} missing from {cookies}");
    }
}

#[tokio::test]
async fn session_sealed_for_one_host_is_refused_on_another() {
    let (up, h) = behind_identity_routes().await;
    let cookie = session_cookie("id.example.com", &session("alice@example.com", &[]));
    let json = ("accept", "application/json");
    let here = h
        .get_with("id.example.com", "/", &[("cookie", &cookie), json])
        .await;
    assert_eq!(here.status, 200);
    let there = h
        .get_with("other.example.com", "/", &[("cookie", &cookie), json])
        .await;
    assert_eq!(there.status, 401, "{}", there.text());
    let none = h.get_with("other.example.com", "/", &[json]).await;
    assert_eq!(none.status, 401);
    let mut old = session("alice@example.com", &[]);
    old.iat -= 7200;
    old.exp -= 7200;
    let expired = session_cookie("id.example.com", &old);
    let r = h
        .get_with("id.example.com", "/", &[("cookie", &expired), json])
        .await;
    assert_eq!(r.status, 401, "expired session: {}", r.text());
    assert_eq!(up.requests(), 1);
}

#[tokio::test]
async fn custom_cookie_name_carries_the_session_and_is_stripped() {
    let up = echo_http1("a").await;
    let to = format!("http://{}", up.authority());
    let h = Harness::start(&ConfigFile {
        cookie_name: Some("_corp_session".into()),
        ..config([identity_route("id.example.com", &to)])
    })
    .await;
    let host = "id.example.com";
    let default_named = session_cookie(host, &session("alice@example.com", &[]));
    let value = default_named.split_once('=').unwrap().1;
    let custom = format!("_corp_session={value}; keep=1");
    let json = ("accept", "application/json");
    let e = h
        .get_with(host, "/", &[("cookie", &custom), json])
        .await
        .echo();
    assert!(e.one(ASSERTION).is_some());
    assert_eq!(e.all("cookie"), ["keep=1"]);
    let r = h
        .get_with(host, "/", &[("cookie", &default_named), json])
        .await;
    assert_eq!(
        r.status, 401,
        "the default name is not the session cookie here"
    );
}

#[tokio::test]
async fn policy_allows_the_named_user_and_forbids_others() {
    let (up, h) = behind_identity_routes().await;
    let host = "policy.example.com";
    let alice = session_cookie(host, &session("alice@example.com", &[]));
    let bob = session_cookie(host, &session("bob@example.com", &[]));
    let ok = h.get_with(host, "/", &[("cookie", &alice)]).await;
    assert_eq!(ok.echo().server, "a");
    let denied = h
        .get_with(
            host,
            "/",
            &[("cookie", &bob), ("accept", "application/json")],
        )
        .await;
    assert_eq!(denied.status, 403, "{}", denied.text());
    let anonymous = h
        .get_with(host, "/", &[("accept", "application/json")])
        .await;
    assert_eq!(anonymous.status, 401);
    assert_eq!(
        up.requests(),
        1,
        "the denied request never reached the upstream"
    );
}

// ---------------------------------------------------------------------------
// Request headers

#[tokio::test]
async fn forwarding_headers_are_replaced_with_the_proxys_view() {
    let (_up, h) = behind_public_route("hdr.example.com").await;
    let e = h
        .raw_get(
            "hdr.example.com",
            "/",
            &[
                ("X-Forwarded-For", "1.2.3.4"),
                ("X-Forwarded-For", "5.6.7.8"),
                ("X-Forwarded-Proto", "http"),
                ("X-Forwarded-Host", "evil.example.com"),
                ("X-Forwarded-Port", "80"),
                ("X-Real-IP", "1.2.3.4"),
                ("Forwarded", "for=1.2.3.4;proto=http"),
            ],
        )
        .await
        .echo();
    assert_eq!(e.all("x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(e.all("x-forwarded-proto"), ["https"]);
    assert_eq!(e.all("x-forwarded-host"), ["hdr.example.com"]);
    assert_eq!(e.all("x-real-ip"), ["127.0.0.1"]);
    assert!(e.all("x-forwarded-port").is_empty());
    assert!(e.all("forwarded").is_empty());
    assert_eq!(e.all("x-request-id").len(), 1);
}

#[tokio::test]
async fn hop_by_hop_and_connection_listed_headers_are_removed() {
    let (_up, h) = behind_public_route("hdr.example.com").await;
    let e = h
        .raw_get(
            "hdr.example.com",
            "/",
            &[
                ("Connection", "X-Secret, x-other"),
                ("X-Secret", "1"),
                ("X-Other", "2"),
                ("Keep-Alive", "timeout=5"),
                ("Proxy-Connection", "keep-alive"),
                ("Proxy-Authorization", "Basic Zm9vOmJhcg=="),
                ("TE", "gzip, trailers"),
                ("Trailer", "x-checksum"),
                ("Upgrade", "foo/1"),
                ("X-Keep", "yes"),
            ],
        )
        .await
        .echo();
    for gone in [
        "x-secret",
        "x-other",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "te",
        "trailer",
        "upgrade",
    ] {
        assert!(
            e.all(gone).is_empty(),
            "{gone} reached the upstream: {:?}",
            e.all(gone)
        );
    }
    for c in e.all("connection") {
        assert!(
            !c.to_ascii_lowercase().contains("x-secret"),
            "client Connection forwarded: {c}"
        );
    }
    assert_eq!(e.all("x-keep"), ["yes"]);
}

#[tokio::test]
async fn preserve_host_header_sends_the_client_host_otherwise_the_upstream_authority() {
    let up = echo_http1("a").await;
    let to = format!("http://{}", up.authority());
    let h = Harness::start(&config([
        RouteConfig {
            preserve_host_header: true,
            ..public_route("pres.example.com", &to)
        },
        public_route("nopres.example.com", &to),
    ]))
    .await;
    let e = h.raw_get("pres.example.com", "/", &[]).await.echo();
    assert_eq!(e.all("host"), ["pres.example.com"]);
    let e = h.raw_get("nopres.example.com", "/", &[]).await.echo();
    assert_eq!(e.all("host"), [up.authority().as_str()]);
    // HTTP/2 clients send :authority instead of Host.
    let req = Request::builder()
        .uri("https://pres.example.com/")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let e = send_h2(h.https, "pres.example.com", req).await.echo();
    assert_eq!(e.all("host"), ["pres.example.com"]);
}

#[tokio::test]
async fn set_and_remove_request_headers_are_applied() {
    let (_up, h) = behind_route("hdr.example.com", |r| RouteConfig {
        set_request_headers: headers(&[("X-Set", "from-proxy"), ("X-Override", "proxy-value")]),
        remove_request_headers: strings(&["X-Remove-Me"]),
        ..r
    })
    .await;
    let e = h
        .raw_get(
            "hdr.example.com",
            "/",
            &[
                ("X-Override", "client-value"),
                ("X-Remove-Me", "1"),
                ("X-Keep", "kept"),
            ],
        )
        .await
        .echo();
    assert_eq!(e.all("x-set"), ["from-proxy"]);
    assert_eq!(e.all("x-override"), ["proxy-value"]);
    assert!(e.all("x-remove-me").is_empty());
    assert_eq!(e.all("x-keep"), ["kept"]);
}

#[tokio::test]
async fn request_bodies_reach_the_upstream_intact_with_length_or_chunked_framing() {
    let (_up, h) = behind_public_route("body.example.com").await;
    let e = h
        .raw(
            "body.example.com",
            "POST /len HTTP/1.1\r\nHost: body.example.com\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello world",
        )
        .await
        .echo();
    assert_eq!(e.body, "hello world");
    assert_eq!(e.all("content-length"), ["11"]);
    let e = h
        .raw(
            "body.example.com",
            "POST /chunked HTTP/1.1\r\nHost: body.example.com\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        )
        .await
        .echo();
    assert_eq!(e.body, "hello world");
    assert!(
        e.all("transfer-encoding").len() <= 1,
        "{:?}",
        e.all("transfer-encoding")
    );
    let req = Request::builder()
        .method("PUT")
        .uri("https://body.example.com/h2")
        .body(Full::new(Bytes::from_static(b"over h2")))
        .unwrap();
    let e = send_h2(h.https, "body.example.com", req).await.echo();
    assert_eq!((e.method.as_str(), e.body.as_str()), ("PUT", "over h2"));
}

#[tokio::test]
async fn upstream_hop_by_hop_response_headers_do_not_reach_the_client() {
    let (_up, h) = behind_public_route("resp.example.com").await;
    let r = h
        .raw_get(
            "resp.example.com",
            "/",
            &[
                ("X-Echo-Response-Header", "Connection: x-up-secret"),
                ("X-Echo-Response-Header", "X-Up-Secret: 1"),
                ("X-Echo-Response-Header", "Keep-Alive: timeout=1"),
                ("X-Echo-Response-Header", "Proxy-Authenticate: Basic"),
                ("X-Echo-Response-Header", "X-Up-Keep: yes"),
            ],
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-up-keep"), Some("yes"));
    for gone in ["x-up-secret", "keep-alive", "proxy-authenticate"] {
        assert_eq!(r.header(gone), None, "{gone} reached the client");
    }
    if let Some(c) = r.header("connection") {
        assert!(
            !c.contains("x-up-secret"),
            "upstream Connection forwarded: {c}"
        );
    }
}

// ---------------------------------------------------------------------------
// Paths and routing (tables)

#[tokio::test]
async fn request_paths_are_normalised_or_refused_before_routing() {
    let (_up, h) = behind_route("paths.example.com", |r| RouteConfig {
        prefix: Some("/a/c".into()),
        ..r
    })
    .await;
    // (request target, Ok(forwarded path and query) | Err(status))
    let cases: &[(&str, Result<&str, u16>)] = &[
        ("/a/c", Ok("/a/c")),
        ("/a/./b/../c", Ok("/a/c")),
        ("/a/b/../c/d", Ok("/a/c/d")),
        ("/a//c", Ok("/a/c")),
        ("/a/%2e/c", Ok("/a/c")),
        ("/x/%2E%2E/a/c", Ok("/a/c")),
        ("/a/c?x=1&y=%2F&z", Ok("/a/c?x=1&y=%2F&z")),
        ("/a/./c?q=a/../b", Ok("/a/c?q=a/../b")),
        ("/a/c/%7euser", Ok("/a/c/~user")),
        ("/a/c/%41", Ok("/a/c/A")),
        ("/a/c/%c3%a9", Ok("/a/c/%C3%A9")),
        ("/a/c/", Ok("/a/c/")),
        ("/a/b", Err(404)),
        ("/a/cd", Err(404)),
        ("/A/C", Err(404)),
        ("/a/c/%2F", Err(400)),
        ("/a/c%2f", Err(400)),
        ("/a/c/%5C", Err(400)),
        ("/a/c%5cx", Err(400)),
        ("/a/c/%00", Err(400)),
        ("/../a/c", Err(400)),
        ("/a/c/../../../x", Err(400)),
        ("/a/c/%2e%2e/%2e%2e/%2e%2e", Err(400)),
        ("/a/c/bad%zz", Err(400)),
    ];
    let mut failures = Vec::new();
    for (target, want) in cases {
        let r = h.raw_get("paths.example.com", target, &[]).await;
        let got = outcome(&r, |e| e.path_and_query);
        if !meets(want, &got) {
            failures.push(format!("{target}: want {want:?}, got {got:?}"));
        }
    }
    assert_no_failures("path", &failures);
}

#[tokio::test]
async fn routing_matrix_through_the_listener() {
    let up = echo_http1("a").await;
    let to = format!("http://{}", up.authority());
    let route = |from: &str, matcher: &str, name: &str| {
        let (key, value) = matcher.split_once(": ").unwrap();
        let value = Some(value.to_string());
        let (path, prefix) = if key == "path" {
            (value, None)
        } else {
            (None, value)
        };
        RouteConfig {
            path,
            prefix,
            set_request_headers: headers(&[("X-Route", name)]),
            ..public_route(from, &to)
        }
    };
    let h = Harness::start(&config([
        route("route.example.com", "path: /exact", "exact"),
        route("route.example.com", "prefix: /exact", "exact-prefix"),
        route("route.example.com", "prefix: /api", "api"),
        route("route.example.com", "prefix: /api/v1", "api-v1"),
        route("*.wild.example.com", "prefix: /", "wild"),
        route("b.wild.example.com", "prefix: /only", "precise-b"),
    ]))
    .await;
    // (Host header, target, Ok(route) | Err(status))
    let cases: &[(&str, &str, Result<&str, u16>)] = &[
        ("route.example.com", "/exact", Ok("exact")),
        ("route.example.com", "/exact/", Ok("exact-prefix")),
        ("route.example.com", "/exact/x", Ok("exact-prefix")),
        ("route.example.com", "/exactly", Err(404)),
        ("route.example.com", "/api", Ok("api")),
        ("route.example.com", "/api/", Ok("api")),
        ("route.example.com", "/api/x", Ok("api")),
        ("route.example.com", "/api/v1", Ok("api-v1")),
        ("route.example.com", "/api/v1/users", Ok("api-v1")),
        ("route.example.com", "/api/v10", Ok("api")),
        ("route.example.com", "/apix", Err(404)),
        ("route.example.com", "/API", Err(404)),
        ("route.example.com", "/", Err(404)),
        ("route.example.com", "/api/v1/../../exact", Ok("exact")),
        ("ROUTE.Example.COM", "/api", Ok("api")),
        ("route.example.com.", "/api", Ok("api")),
        ("route.example.com:443", "/api", Ok("api")),
        ("route.example.com:8443", "/api/v1", Ok("api-v1")),
        ("Route.Example.Com.:443", "/exact", Ok("exact")),
        ("a.wild.example.com", "/", Ok("wild")),
        ("A.WILD.example.com", "/x/y", Ok("wild")),
        ("a.wild.example.com.:8443", "/", Ok("wild")),
        ("a.b.wild.example.com", "/", Err(404)),
        ("wild.example.com", "/", Err(404)),
        ("b.wild.example.com", "/only/x", Ok("precise-b")),
        // A precise host does not fall through to the wildcard.
        ("b.wild.example.com", "/other", Err(404)),
        ("other.example.com", "/", Err(404)),
    ];
    let mut failures = Vec::new();
    for (host, target, want) in cases {
        let r = h.raw_get(host, target, &[]).await;
        let got = outcome(&r, |e| e.one("x-route").unwrap_or("").to_string());
        if !meets(want, &got) {
            failures.push(format!("{host} {target}: want {want:?}, got {got:?}"));
        }
    }
    assert_no_failures("routing", &failures);
}

// ---------------------------------------------------------------------------
// Well-known documents

#[tokio::test]
async fn jwks_and_discovery_are_served_on_every_route_host_with_caching() {
    let up = echo_http1("a").await;
    let to = format!("http://{}", up.authority());
    let h = Harness::start(&config([
        RouteConfig {
            prefix: Some("/app".into()),
            ..public_route("public.example.com", &to)
        },
        signed_in_route("private.example.com", &to),
        public_route("*.wild.example.com", &to),
    ]))
    .await;
    let jwks_path = "/.well-known/pomerium/jwks.json";
    let mut bodies = Vec::new();
    for host in [
        "public.example.com",
        "private.example.com",
        "x.wild.example.com",
    ] {
        let r = h.get(host, jwks_path).await;
        assert_eq!(r.status, 200, "{host}");
        assert_eq!(r.header("cache-control"), Some("max-age=60"), "{host}");
        assert_eq!(r.header("content-type"), Some("application/json"));
        let etag = r.header("etag").expect("etag").to_string();
        let keys = r.json()["keys"].as_array().unwrap().clone();
        assert!(!keys.is_empty());
        assert_eq!(keys[0]["alg"], "ES256");
        assert_eq!(keys[0]["crv"], "P-256");
        bodies.push(r.body.clone());
        let again = h
            .get_with(host, jwks_path, &[("if-none-match", &etag)])
            .await;
        assert_eq!(again.status, 304, "{host}");
        assert!(again.body.is_empty());
        assert_eq!(again.header("etag"), Some(etag.as_str()));
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "same JWKS on every host"
    );
    // Discovery on every precise host.
    for host in ["public.example.com", "private.example.com"] {
        let r = h.get(host, "/.well-known/pomerium").await;
        assert_eq!(r.status, 200, "{host}");
        assert_eq!(r.header("cache-control"), Some("max-age=60"));
        let etag = r.header("etag").expect("etag").to_string();
        let v = r.json();
        assert_eq!(v["issuer"], format!("https://{host}/"));
        assert_eq!(v["jwks_uri"], format!("https://{host}{jwks_path}"));
        let again = h
            .get_with(host, "/.well-known/pomerium", &[("if-none-match", &etag)])
            .await;
        assert_eq!(again.status, 304);
    }
    assert_eq!(
        up.requests(),
        0,
        "well-known documents are answered by the proxy"
    );
}

// ---------------------------------------------------------------------------
// WebSocket

#[tokio::test]
async fn websocket_upgrade_and_echo_work_on_a_route_that_allows_them() {
    let ws = websocket_echo().await;
    let to = format!("http://{}", ws.authority());
    let h = Harness::start(&config([RouteConfig {
        allow_websockets: true,
        ..public_route("ws.example.com", &to)
    }]))
    .await;
    let tls = tls_connect(h.https, "ws.example.com", &[b"http/1.1"]).await;
    let (mut stream, resp) = tokio::time::timeout(
        STEP,
        tokio_tungstenite::client_async("wss://ws.example.com/echo", tls),
    )
    .await
    .unwrap()
    .expect("upgrade succeeds");
    assert_eq!(resp.status(), 101);
    stream
        .send(Message::text("hello through the bridge"))
        .await
        .unwrap();
    let m = tokio::time::timeout(STEP, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m.into_text().unwrap().as_str(), "hello through the bridge");
    stream.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let m = tokio::time::timeout(STEP, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(m.into_data().as_ref(), &[1, 2, 3]);
    assert_eq!(ws.requests(), 1);
}

#[tokio::test]
async fn websocket_upgrade_is_refused_on_a_route_without_allow_websockets() {
    let ws = websocket_echo().await;
    let h = Harness::start(&config([public_route(
        "nows.example.com",
        &format!("http://{}", ws.authority()),
    )]))
    .await;
    let tls = tls_connect(h.https, "nows.example.com", &[b"http/1.1"]).await;
    let result = tokio::time::timeout(
        STEP,
        tokio_tungstenite::client_async("wss://nows.example.com/echo", tls),
    )
    .await
    .unwrap();
    match result {
        Ok(_) => panic!("upgrade must be refused"),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_ne!(resp.status(), 101);
            assert_eq!(resp.status(), 403);
        }
        Err(other) => panic!("expected an HTTP refusal, got {other:?}"),
    }
    assert_eq!(
        ws.requests(),
        0,
        "no WebSocket session reached the upstream"
    );
}

// ---------------------------------------------------------------------------
// Protocols and upstream TLS

#[tokio::test]
async fn client_speaks_http2_to_the_proxy_via_alpn() {
    let (_up, h) = behind_public_route("public.example.com").await;
    let req = Request::builder()
        .uri("https://public.example.com/over/h2?q=1")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let r = send_h2(h.https, "public.example.com", req).await;
    assert_eq!(r.version, Version::HTTP_2);
    let e = r.echo();
    assert_eq!(e.path_and_query, "/over/h2?q=1");
    assert_eq!(e.version, "HTTP/1.1", "HTTP/1.1 upstream gets HTTP/1.1");
    assert_eq!(e.all("x-forwarded-host"), ["public.example.com"]);
}

#[tokio::test]
async fn h2c_upstream_setting_speaks_http2_to_an_http_target() {
    let up = echo_h2c("h2c").await;
    let plain = echo_http1("plain").await;
    let h = Harness::start(&config([
        RouteConfig {
            h2c_upstream: true,
            ..public_route("flag.example.com", &format!("http://{}", up.authority()))
        },
        RouteConfig {
            h2c_upstream: false,
            ..public_route("h1.example.com", &format!("http://{}", plain.authority()))
        },
    ]))
    .await;
    let e = h.get("flag.example.com", "/x").await.echo();
    assert_eq!((e.server.as_str(), e.version.as_str()), ("h2c", "HTTP/2.0"));
    let e = h.get("h1.example.com", "/x").await.echo();
    assert_eq!(
        (e.server.as_str(), e.version.as_str()),
        ("plain", "HTTP/1.1")
    );
}

#[tokio::test]
async fn h2c_upstream_receives_http2() {
    let up = echo_h2c("h2c").await;
    let h = Harness::start(&config([public_route(
        "h2c.example.com",
        &format!("h2c://{}", up.authority()),
    )]))
    .await;
    for _ in 0..2 {
        let e = h.get("h2c.example.com", "/grpc-ish?x=y").await.echo();
        assert_eq!(e.server, "h2c");
        assert_eq!(e.version, "HTTP/2.0");
        assert_eq!(e.path_and_query, "/grpc-ish?x=y");
    }
}

#[tokio::test]
async fn https_upstream_is_verified_unless_skip_verify_and_trusts_a_custom_ca() {
    let cert = test_cert();
    let up = echo_https("tls", &cert).await;
    let dir = tempfile::tempdir().unwrap();
    let ca_path = dir.path().join("ca.pem");
    std::fs::write(&ca_path, &cert.ca_pem).unwrap();
    let to = format!("https://{}", up.authority());
    let h = Harness::start(&config([
        RouteConfig {
            tls_skip_verify: true,
            ..public_route("skip.example.com", &to)
        },
        public_route("verify.example.com", &to),
        RouteConfig {
            tls_custom_ca_file: Some(ca_path.display().to_string()),
            ..public_route("ca.example.com", &to)
        },
    ]))
    .await;
    let e = h.get("skip.example.com", "/s").await.echo();
    assert_eq!(e.server, "tls");
    let refused = h.get("verify.example.com", "/v").await;
    assert!(
        [502, 503].contains(&refused.status),
        "untrusted upstream certificate must fail, got {}: {}",
        refused.status,
        refused.text()
    );
    let e = h.get("ca.example.com", "/c").await.echo();
    assert_eq!(e.server, "tls");
    assert_eq!(e.path_and_query, "/c");
    assert_eq!(
        up.requests(),
        2,
        "the refused request never reached the upstream"
    );
}

// ---------------------------------------------------------------------------
// Client certificates: to upstreams (tls_client_cert) and from browsers
// (tls_downstream_client_ca)

#[tokio::test]
async fn mtls_upstream_gets_the_routes_client_certificate_and_nothing_else() {
    let server = test_cert();
    let clients = TestCa::new("upstream client CA");
    let (up, subjects) = echo_https_mtls("mtls", &server, &clients.pem).await;
    let proxy_cert = clients.client("jetbridge-proxy");
    let stranger = TestCa::new("another CA").client("jetbridge-proxy");
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    std::fs::write(&cert_file, &proxy_cert.cert_pem).unwrap();
    std::fs::write(&key_file, &proxy_cert.key_pem).unwrap();
    let to = format!("https://{}", up.authority());
    let trusting = |host: &str| RouteConfig {
        tls_custom_ca: Some(base64::Engine::encode(
            &base64::engine::general_purpose::STANDARD,
            &server.ca_pem,
        )),
        ..public_route(host, &to)
    };
    let h = Harness::start(&config([
        RouteConfig {
            tls_client_cert: Some(proxy_cert.cert_b64()),
            tls_client_key: Some(proxy_cert.key_b64()),
            ..trusting("b64.example.com")
        },
        RouteConfig {
            tls_client_cert_file: Some(cert_file.display().to_string()),
            tls_client_key_file: Some(key_file.display().to_string()),
            ..trusting("files.example.com")
        },
        trusting("none.example.com"),
        RouteConfig {
            tls_client_cert: Some(stranger.cert_b64()),
            tls_client_key: Some(stranger.key_b64()),
            ..trusting("stranger.example.com")
        },
    ]))
    .await;
    for host in ["b64.example.com", "files.example.com"] {
        let e = h.get(host, "/x").await.echo();
        assert_eq!(e.server, "mtls", "{host}");
        assert_eq!(
            subjects.lock().unwrap().last().map(String::as_str),
            Some("CN=jetbridge-proxy"),
            "{host}"
        );
    }
    let served = up.requests();
    for host in ["none.example.com", "stranger.example.com"] {
        let r = h.get(host, "/x").await;
        assert_eq!(r.status, 502, "{host}: {}", r.text());
    }
    assert_eq!(up.requests(), served, "refused handshakes reach no handler");
    // Only the route's own certificate was ever accepted (the two routes
    // with the same certificate share one pooled connection).
    let seen = subjects.lock().unwrap().clone();
    assert!(
        !seen.is_empty() && seen.iter().all(|s| s == "CN=jetbridge-proxy"),
        "{seen:?}"
    );
}

/// One listener, two routes: `mtls.example.com` requires a certificate from
/// its CA, `open.example.com` asks for nothing.
async fn downstream_mtls_harness(ca: &TestCa) -> (Harness, Upstream) {
    let up = echo_http1("app").await;
    let to = format!("http://{}", up.authority());
    let h = Harness::start(&config([
        RouteConfig {
            tls_downstream_client_ca: Some(ca.pem_b64()),
            ..public_route("mtls.example.com", &to)
        },
        public_route("open.example.com", &to),
    ]))
    .await;
    (h, up)
}

#[tokio::test]
async fn mtls_route_requires_a_client_certificate_from_its_ca_over_http1_and_http2() {
    let ca = TestCa::new("browser CA");
    let alice = ca.client("alice");
    // Same name, another CA.
    let mallory = TestCa::new("rogue CA").client("alice");
    let (h, up) = downstream_mtls_harness(&ca).await;
    for h2 in [false, true] {
        let mtls = "mtls.example.com";
        let (r, asked) = get_as(h.https, mtls, mtls, "/p", Some(&alice), h2).await;
        assert_eq!(r.status, 200, "h2={h2}: {}", r.text());
        assert_eq!(r.echo().server, "app");
        assert_eq!(asked.count(), 1, "the handshake asked for a certificate");
        for who in [None, Some(&mallory)] {
            let (r, _) = get_as(h.https, mtls, mtls, "/p", who, h2).await;
            let what = format!("h2={h2} cert={}", who.is_some());
            assert_eq!(r.status, 495, "{what}: {}", r.text());
            assert!(
                r.text().contains("a valid client certificate is required"),
                "{what}: {}",
                r.text()
            );
        }
        // The other route on the listener neither asks nor cares.
        let open = "open.example.com";
        for who in [None, Some(&alice)] {
            let (r, asked) = get_as(h.https, open, open, "/p", who, h2).await;
            assert_eq!(r.status, 200, "h2={h2}: {}", r.text());
            assert_eq!(asked.count(), 0, "{open} asked for a certificate");
        }
    }
    // Per protocol: alice on the mTLS route, and both on the open one.
    assert_eq!(up.requests(), 6);
}

#[tokio::test]
async fn mtls_route_keeps_the_client_certificate_of_a_resumed_tls_session() {
    let ca = TestCa::new("browser CA");
    let alice = ca.client("alice");
    let (h, up) = downstream_mtls_harness(&ca).await;
    let host = "mtls.example.com";
    // One client configuration: the second connection resumes the first's
    // session, and the certificate of that session still counts.
    let (cfg, asked) = client_config_as(&[b"http/1.1"], Some(&alice));
    for round in 0..3 {
        let tls = tls_connect_with(h.https, host, cfg.clone()).await;
        let resumed = tls.get_ref().1.handshake_kind() == Some(rustls::HandshakeKind::Resumed);
        assert_eq!(resumed, round > 0, "round {round}");
        let r = H1Conn::over(tls)
            .await
            .send(request("GET", host, "/", &[]))
            .await;
        assert_eq!(r.status, 200, "round {round}: {}", r.text());
    }
    assert_eq!(asked.count(), 1, "only the full handshake asked");
    // A session resumed without a certificate stays without one.
    let (cfg, _) = client_config_as(&[b"http/1.1"], None);
    for round in 0..2 {
        let tls = tls_connect_with(h.https, host, cfg.clone()).await;
        let r = H1Conn::over(tls)
            .await
            .send(request("GET", host, "/", &[]))
            .await;
        assert_eq!(r.status, 495, "round {round}: {}", r.text());
    }
    assert_eq!(up.requests(), 3);
}

/// `downstream_mtls` over two routes: `any` has no CA of its own, `team`
/// names its own.
async fn downstream_mtls_config(
    global: &TestCa,
    team: &TestCa,
    enforcement: Option<&str>,
) -> (Harness, Upstream) {
    let up = echo_http1("app").await;
    let to = format!("http://{}", up.authority());
    let h = Harness::start(&ConfigFile {
        downstream_mtls: Some(DownstreamMtls {
            ca: Some(global.pem_b64()),
            enforcement: enforcement.map(str::to_string),
            ..Default::default()
        }),
        ..config([
            public_route("any.example.com", &to),
            RouteConfig {
                tls_downstream_client_ca: Some(team.pem_b64()),
                ..public_route("team.example.com", &to)
            },
        ])
    })
    .await;
    (h, up)
}

#[tokio::test]
async fn downstream_mtls_requires_the_global_ca_on_every_route_without_a_ca_of_its_own() {
    let (global, team) = (TestCa::new("company CA"), TestCa::new("team CA"));
    let (alice, bob) = (global.client("alice"), team.client("bob"));
    let mallory = TestCa::new("rogue CA").client("alice");
    let (h, _up) = downstream_mtls_config(&global, &team, None).await;
    for (host, who, want) in [
        ("any.example.com", Some(&alice), 200),
        ("any.example.com", None, 495),
        ("any.example.com", Some(&bob), 495),
        ("any.example.com", Some(&mallory), 495),
        ("team.example.com", Some(&bob), 200),
        ("team.example.com", Some(&alice), 495),
        ("team.example.com", None, 495),
    ] {
        let (r, asked) = get_as(h.https, host, host, "/", who, false).await;
        assert_eq!(
            r.status,
            want,
            "{host} {:?}: {}",
            who.map(|_| "cert"),
            r.text()
        );
        assert_eq!(asked.count(), 1, "every handshake asks");
    }
}

#[tokio::test]
async fn downstream_mtls_reject_connection_fails_the_handshake_without_a_known_ca() {
    let (global, team) = (TestCa::new("company CA"), TestCa::new("team CA"));
    let (alice, bob) = (global.client("alice"), team.client("bob"));
    let mallory = TestCa::new("rogue CA").client("alice");
    let (h, _up) = downstream_mtls_config(&global, &team, Some("reject_connection")).await;
    for (host, who, want) in [
        ("any.example.com", Some(&alice), Some(200)),
        ("any.example.com", None, None),
        ("any.example.com", Some(&mallory), None),
        // A route's own CA passes the handshake; the route it is not for
        // still refuses it.
        ("team.example.com", Some(&bob), Some(200)),
        ("any.example.com", Some(&bob), Some(495)),
        ("team.example.com", None, None),
    ] {
        let got = try_get_as(h.https, host, who).await;
        assert_eq!(got, want, "{host} {}", who.is_some());
    }
}

/// Why a config with these `downstream_mtls` settings is refused.
fn downstream_mtls_refusal(mtls: DownstreamMtls) -> String {
    let yaml = ConfigFile {
        downstream_mtls: Some(mtls),
        ..config([])
    }
    .text();
    let cfg = ConfigFile::parse("c.yaml", &yaml).unwrap();
    jetbridge::source::file::inputs_from_config(
        &cfg,
        &mut jetbridge::translate::config::Generated::default(),
        &mut Vec::new(),
    )
    .unwrap_err()
    .to_string()
}

#[test]
fn downstream_mtls_settings_jetbridge_cannot_honour_are_refused() {
    let ca = TestCa::new("company CA");
    let enforcement = |e: &str| DownstreamMtls {
        enforcement: Some(e.into()),
        ..Default::default()
    };
    for (extra, want) in [
        (
            enforcement("policy"),
            "enforcement \"policy\" is not supported",
        ),
        (
            enforcement("sometimes"),
            "expected policy_with_default_deny",
        ),
        (
            DownstreamMtls {
                crl: Some(serde_json::json!("abc")),
                ..Default::default()
            },
            "downstream_mtls.crl is a Pomerium setting not supported",
        ),
        (
            DownstreamMtls {
                match_subject_alt_names: Some(serde_json::json!([{"email": ".*"}])),
                ..Default::default()
            },
            "match_subject_alt_names",
        ),
        (
            DownstreamMtls {
                max_verify_depth: Some(2),
                ..Default::default()
            },
            "max_verify_depth",
        ),
        (
            DownstreamMtls {
                ca_file: Some("/nonexistent".into()),
                ..Default::default()
            },
            "set ca or ca_file, not both",
        ),
    ] {
        let err = downstream_mtls_refusal(DownstreamMtls {
            ca: Some(ca.pem_b64()),
            ..extra.clone()
        });
        assert!(err.contains(want), "{extra:?}: {err}");
    }
    let err = downstream_mtls_refusal(DownstreamMtls {
        ca: Some("bm90IGEgY2VydA==".into()),
        ..Default::default()
    });
    assert!(
        err.contains("downstream_mtls.ca: no certificates found"),
        "{err}"
    );
}

#[tokio::test]
async fn mtls_route_follows_a_new_ca_and_a_host_given_one_starts_asking() {
    let (first, second) = (TestCa::new("first CA"), TestCa::new("second CA"));
    let (alice, bob) = (first.client("alice"), second.client("bob"));
    let (h, up) = downstream_mtls_harness(&first).await;
    let mtls = "mtls.example.com";
    let (r, _) = get_as(h.https, mtls, mtls, "/", Some(&alice), false).await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The CA is replaced, and open.example.com gets one too.
    let to = format!("http://{}", up.authority());
    let asking = |host: &str| RouteConfig {
        tls_downstream_client_ca: Some(second.pem_b64()),
        ..public_route(host, &to)
    };
    h.publish(&config([asking(mtls), asking("open.example.com")]));
    for host in [mtls, "open.example.com"] {
        let (r, asked) = get_as(h.https, host, host, "/", Some(&alice), false).await;
        assert_eq!(r.status, 495, "{host}: {}", r.text());
        assert_eq!(asked.count(), 1, "{host}");
        let (r, _) = get_as(h.https, host, host, "/", Some(&bob), false).await;
        assert_eq!(r.status, 200, "{host}: {}", r.text());
    }
    // No CA left: nothing is asked, and the route serves without one.
    h.publish(&config([public_route(mtls, &to)]));
    let (r, asked) = get_as(h.https, mtls, mtls, "/", None, false).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(asked.count(), 0);
}

#[tokio::test]
async fn mtls_handshake_offers_the_route_cas_and_a_connection_for_another_name_gets_421() {
    let ca = TestCa::new("browser CA");
    let alice = ca.client("alice");
    let (h, up) = downstream_mtls_harness(&ca).await;
    let (r, asked) = get_as(
        h.https,
        "mtls.example.com",
        "mtls.example.com",
        "/",
        Some(&alice),
        false,
    )
    .await;
    assert_eq!(r.status, 200, "{}", r.text());
    // The hint names the route's CA, so a browser offers the right certificate.
    let hints = asked.last_hints();
    use rustls_pki_types::pem::PemObject as _;
    let ca_der = rustls_pki_types::CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap();
    let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    assert_eq!(hints.len(), 1, "{hints:?}");
    assert!(
        hints[0].ends_with(ca_cert.subject().as_raw()),
        "hint is not the CA's subject"
    );
    // A connection opened for open.example.com (e.g. an HTTP/2 connection a
    // browser reuses) asked for no certificate: the request for the mTLS
    // host is misdirected, whatever the client holds, over h1 and h2.
    for h2 in [false, true] {
        let (r, _) = get_as(
            h.https,
            "open.example.com",
            "mtls.example.com",
            "/",
            Some(&alice),
            h2,
        )
        .await;
        assert_eq!(r.status, 421, "h2={h2}: {}", r.text());
    }
    assert_eq!(up.requests(), 1);
}

// ---------------------------------------------------------------------------
// Load balancing and timeouts

#[tokio::test]
async fn requests_are_spread_over_every_target() {
    let a = echo_http1("a").await;
    let b = echo_http1("b").await;
    let h = Harness::start(&config([RouteConfig {
        to: vec![
            format!("http://{}", a.authority()),
            format!("http://{}", b.authority()),
        ],
        ..public_route("lb.example.com", "")
    }]))
    .await;
    for _ in 0..10 {
        assert_eq!(h.get("lb.example.com", "/").await.status, 200);
    }
    assert!(
        a.requests() > 0 && b.requests() > 0,
        "a={} b={}",
        a.requests(),
        b.requests()
    );
    assert_eq!(a.requests() + b.requests(), 10);
}

#[tokio::test]
async fn dead_target_is_skipped_and_requests_still_succeed() {
    let dead = closed_port().await;
    let live = echo_http1("live").await;
    let h = Harness::start(&config([RouteConfig {
        to: vec![
            format!("http://{dead}"),
            format!("http://{}", live.authority()),
        ],
        ..public_route("lb.example.com", "")
    }]))
    .await;
    for i in 0..6 {
        let r = h.get("lb.example.com", "/").await;
        assert_eq!(r.status, 200, "request {i}: {}", r.text());
        assert_eq!(r.echo().server, "live");
    }
    assert_eq!(live.requests(), 6);
}

#[tokio::test]
async fn upstream_that_never_answers_times_out_with_504() {
    let silent = silent_upstream().await;
    let h = Harness::start(&config([RouteConfig {
        timeout: Some(Duration::from_secs(1)),
        ..public_route(
            "slow.example.com",
            &format!("http://{}", silent.authority()),
        )
    }]))
    .await;
    let started = Instant::now();
    let r = h.get("slow.example.com", "/").await;
    let took = started.elapsed();
    assert_eq!(r.status, 504, "{}", r.text());
    assert!(
        took >= Duration::from_millis(900),
        "answered before the timeout: {took:?}"
    );
    assert!(silent.connections() >= 1, "the proxy did connect");
}

// ---------------------------------------------------------------------------
// Configuration changes

#[tokio::test]
async fn snapshot_swap_applies_to_the_next_request_on_the_same_connection() {
    let a = echo_http1("a").await;
    let b = echo_http1("b").await;
    let cfg = |up: &Upstream| {
        config([public_route(
            "swap.example.com",
            &format!("http://{}", up.authority()),
        )])
    };
    let h = Harness::start(&cfg(&a)).await;
    let (relay, accepted) = counting_relay(h.https).await;
    let tcp = tokio::net::TcpStream::connect(relay).await.unwrap();
    let tls = tls_over(tcp, "swap.example.com", &[b"http/1.1"]).await;
    let mut conn = H1Conn::over(tls).await;

    let r1 = conn
        .send(request("GET", "swap.example.com", "/one", &[]))
        .await;
    assert_eq!(r1.echo().server, "a");
    assert_eq!(h.publish(&cfg(&b)), Some(2));
    let r2 = conn
        .send(request("GET", "swap.example.com", "/two", &[]))
        .await;
    assert_eq!(r2.echo().server, "b");
    assert_eq!(
        accepted.load(std::sync::atomic::Ordering::SeqCst),
        1,
        "one client connection"
    );
    assert_eq!((a.requests(), b.requests()), (1, 1));
}

#[tokio::test]
async fn config_file_reload_publishes_valid_edits_and_keeps_serving_on_invalid_ones() {
    use jetbridge::source::file::load_and_publish;
    use jetbridge::translate::config::Generated;
    use jetbridge::translate::driver::Driver;
    init();
    let a = echo_http1("a").await;
    let b = echo_http1("b").await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.yaml");
    let path_s = path.to_str().unwrap().to_string();
    let cfg = |up: &Upstream| {
        config([public_route(
            "reload.example.com",
            &format!("http://{}", up.authority()),
        )])
        .text()
    };
    let now = jetbridge::proxy::clock::unix_now();
    let mut driver = Driver::new();
    let mut generated = Generated::default();
    std::fs::write(&path, cfg(&a)).unwrap();
    let (generation, _) = load_and_publish(&path_s, &mut driver, &mut generated, now).unwrap();
    assert_eq!(generation, Some(1));
    let h = Harness::serve(driver, generated).await;
    assert_eq!(h.get("reload.example.com", "/").await.echo().server, "a");

    let reload = |text: String| {
        std::fs::write(&path, text).unwrap();
        h.with_state(|d, g| load_and_publish(&path_s, d, g, now).map_err(|e| e.to_string()))
    };

    // A valid edit: the route now points at b.
    let (generation, _) = reload(cfg(&b)).unwrap();
    assert_eq!(generation, Some(2));
    assert_eq!(h.reader.generation(), 2);
    assert_eq!(h.get("reload.example.com", "/").await.echo().server, "b");

    // The same content again publishes nothing.
    let (generation, _) = reload(cfg(&b)).unwrap();
    assert_eq!(generation, None);

    // An unknown key: rejected with the key's name, old snapshot keeps serving.
    let misspelt = format!(
        "cookie_secret: {}\nroutes:\n  - from: https://reload.example.com\n    to: http://{}\n    pass_identity_header: true\n",
        cookie_secret_b64(),
        a.authority()
    );
    let err = reload(misspelt).unwrap_err();
    assert!(err.contains("pass_identity_header"), "{err}");
    assert_eq!(h.reader.generation(), 2);
    assert_eq!(h.get("reload.example.com", "/").await.echo().server, "b");

    // Broken YAML: rejected, old snapshot keeps serving.
    let err = reload(format!(
        "cookie_secret: {}\nroutes:\n  - from: [unclosed\n",
        cookie_secret_b64()
    ))
    .unwrap_err();
    assert!(err.contains(&path_s), "error names the file: {err}");
    assert_eq!(h.reader.generation(), 2);
    assert_eq!(h.get("reload.example.com", "/").await.echo().server, "b");

    // A route error (bad upstream scheme) is rejected too.
    let bad = config([public_route("reload.example.com", "ftp://127.0.0.1:21")]);
    let err = reload(bad.text()).unwrap_err();
    assert!(err.contains("ftp"), "{err}");
    assert_eq!(h.reader.generation(), 2);
    assert_eq!(h.get("reload.example.com", "/").await.echo().server, "b");
}

// ---------------------------------------------------------------------------
// Internal listener

#[tokio::test]
async fn internal_listener_reports_health_readiness_and_metrics() {
    init();
    let up = echo_http1("a").await;
    let h = Harness::serve(
        jetbridge::translate::driver::Driver::new(),
        jetbridge::translate::config::Generated::default(),
    )
    .await;
    assert_eq!(h.internal_get("/healthz").await.status, 200);
    assert_eq!(
        h.internal_get("/readyz").await.status,
        503,
        "not ready before a publish"
    );

    let cfg = config([RouteConfig {
        name: Some("metered".into()),
        prefix: Some("/app".into()),
        ..public_route("metered.example.com", &format!("http://{}", up.authority()))
    }]);
    assert_eq!(h.publish(&cfg), Some(1));
    assert_eq!(h.internal_get("/readyz").await.status, 200);
    for _ in 0..3 {
        assert_eq!(h.get("metered.example.com", "/app").await.status, 200);
    }
    assert_eq!(h.get("metered.example.com", "/nope").await.status, 404);

    let m = h.internal_get("/metrics").await;
    assert_eq!(m.status, 200);
    assert!(m.header("content-type").unwrap().starts_with("text/plain"));
    let text = m.text();
    assert!(
        text.contains("jetbridge_requests_total{route=\"metered\",status=\"200\"} 3"),
        "{text}"
    );
    assert!(text.contains("jetbridge_config_generation 1"), "{text}");
    assert!(
        text.contains("jetbridge_request_duration_seconds_count"),
        "{text}"
    );
}

#[tokio::test]
async fn missing_or_repeated_host_headers_are_400() {
    let (up, h) = behind_public_route("public.example.com").await;
    let twice = h
        .raw(
            "public.example.com",
            "GET / HTTP/1.1\r\nHost: public.example.com\r\nHost: other.example.com\r\nConnection: close\r\n\r\n",
        )
        .await;
    assert_eq!(twice.status, 400);
    let none = h
        .raw(
            "public.example.com",
            "GET / HTTP/1.1\r\nConnection: close\r\n\r\n",
        )
        .await;
    assert_eq!(none.status, 400);
    assert_eq!(up.requests(), 0);
}

#[tokio::test]
async fn a_response_body_that_stalls_is_cut_after_the_idle_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // An upstream that sends the head and 5 of 100 body bytes, then stalls.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nhello")
                    .await;
                tokio::time::sleep(std::time::Duration::from_secs(60)).await;
            });
        }
    });
    let h = Harness::start(&config([RouteConfig {
        idle_timeout: Some(Duration::from_secs(1)),
        ..public_route("stall.example.com", &format!("http://{addr}"))
    }]))
    .await;
    // Without the idle timeout this read would wait for the 60 s stall (and
    // the harness gives up after 10 s).
    let r = h.raw_get("stall.example.com", "/", &[]).await;
    assert_eq!(r.status, 200);
    assert!(r.body.len() < 100, "the stalled body was cut short");
}
