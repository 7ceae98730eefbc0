use super::*;
use crate::identity::session::Session;
use crate::proxy::request::Target;
use crate::translate::fixtures::one_route as snapshot;

fn conn() -> ConnInfo {
    ConnInfo::new(
        "192.0.2.7:5000".parse().unwrap(),
        true,
        crate::proxy::request::Listener::Tls,
    )
}

fn admitted<'a>(s: &'a Snapshot, path: &str, session: Option<Session>) -> Admitted<'a> {
    Admitted {
        route: &s.routes[0],
        session,
        target: Target {
            host: "app.example.com".into(),
            path: path.into(),
            query: Some("q=1".into()),
        },
    }
}

fn head(req: http::request::Builder) -> Parts {
    req.uri("/x?q=1")
        .header(header::HOST, "app.example.com")
        .body(())
        .unwrap()
        .into_parts()
        .0
}

fn alice() -> Session {
    Session {
        id: "sid-1".into(),
        sub: "alice".into(),
        email: "alice@example.com".into(),
        groups: vec!["ops".into()],
        iat: 1_000_000,
        exp: 1_003_600,
        ..Default::default()
    }
}

/// Prepares `parts` on the snapshot's route.
fn run<'a>(s: &Snapshot, a: &'a Admitted<'a>, parts: Parts) -> Result<Prepared<'a>, ProxyError> {
    let conn = conn();
    let input = Inputs {
        snapshot: s,
        conn: &conn,
        id: "0123456789abcdef",
        now: 1_000_100,
    };
    prepare(&input, a, parts)
}

#[test]
fn spoofed_identity_and_forwarding_headers_are_replaced() {
    let s = snapshot("    allow_public_unauthenticated_access: true\n");
    let a = admitted(&s, "/x", None);
    let cookie = format!("{}=sealed; other=kept", s.auth.cookie_name);
    let parts = head(
        Request::builder()
            .header("x-pomerium-jwt-assertion", "forged")
            .header("x-forwarded-for", "10.0.0.1")
            .header("connection", "keep-alive")
            .header("keep-alive", "timeout=5")
            .header(header::COOKIE, cookie),
    );
    let p = run(&s, &a, parts).unwrap();
    let h = &p.parts.headers;
    assert!(!h.contains_key("x-pomerium-jwt-assertion"));
    assert!(!h.contains_key("keep-alive"));
    assert_eq!(h["x-forwarded-for"], "192.0.2.7");
    assert_eq!(h["x-forwarded-proto"], "https");
    assert_eq!(h["x-request-id"], "0123456789abcdef");
    assert_eq!(h[header::COOKIE], "other=kept");
    assert_eq!(p.path_and_query, "/x?q=1");
    assert_eq!(p.host, None);
    assert!(p.retryable);
    assert!(p.upgrade.is_none());
}

#[test]
fn route_headers_are_removed_and_set() {
    let s = snapshot(
        "    allow_public_unauthenticated_access: true\n    remove_request_headers: [x-secret]\n    \
         set_request_headers:\n      x-env: prod\n",
    );
    let a = admitted(&s, "/x", None);
    let parts = head(
        Request::builder()
            .header("x-secret", "s3cr3t")
            .header("x-env", "client"),
    );
    let p = run(&s, &a, parts).unwrap();
    assert!(!p.parts.headers.contains_key("x-secret"));
    assert_eq!(p.parts.headers["x-env"], "prod");
}

#[test]
fn a_websocket_upgrade_the_route_does_not_allow_is_refused() {
    let s = snapshot("    allow_public_unauthenticated_access: true\n");
    let a = admitted(&s, "/x", None);
    let parts = head(
        Request::builder()
            .header("connection", "upgrade")
            .header("upgrade", "websocket"),
    );
    assert!(matches!(
        run(&s, &a, parts),
        Err(ProxyError::UpgradeNotAllowed)
    ));
}

#[test]
fn the_forwarded_path_is_rewritten_and_the_client_host_kept() {
    let s = snapshot(
        "    allow_public_unauthenticated_access: true\n    prefix: /api\n    prefix_rewrite: /v2\n    \
         preserve_host_header: true\n",
    );
    let a = admitted(&s, "/api/items", None);
    let parts = head(
        Request::builder()
            .method("POST")
            .header("content-length", "3"),
    );
    let p = run(&s, &a, parts).unwrap();
    assert_eq!(p.path_and_query, "/v2/items?q=1");
    assert_eq!(p.host.unwrap(), "app.example.com");
    // A request with a body cannot be sent to a second target.
    assert!(!p.retryable);
}

#[test]
fn a_session_gets_the_assertion_and_its_claim_headers() {
    let s = snapshot("    allow_any_authenticated_user: true\n    pass_identity_headers: true\n");
    let a = admitted(&s, "/x", Some(alice()));
    let parts = head(Request::builder().header("x-pomerium-claim-email", "mallory@example.com"));
    let p = run(&s, &a, parts).unwrap();
    let token = p.parts.headers["x-pomerium-jwt-assertion"]
        .to_str()
        .unwrap();
    assert_eq!(token.split('.').count(), 3, "{token}");
    assert_ne!(
        p.parts
            .headers
            .get("x-pomerium-claim-email")
            .map(|v| v.as_bytes()),
        Some(&b"mallory@example.com"[..])
    );
}

#[test]
fn impersonation_is_the_proxys_alone() {
    let s = snapshot(
        "    allow_any_authenticated_user: true\n    kubernetes_service_account_token: sa-token\n",
    );
    let spoofed = || head(Request::builder().header("impersonate-user", "admin"));
    let anonymous = admitted(&s, "/x", None);
    let p = run(&s, &anonymous, spoofed()).unwrap();
    assert!(!p.parts.headers.contains_key("impersonate-user"));
    assert!(!p.parts.headers.contains_key(header::AUTHORIZATION));
    let signed_in = admitted(&s, "/x", Some(alice()));
    let p = run(&s, &signed_in, spoofed()).unwrap();
    assert_eq!(p.parts.headers["impersonate-user"], "alice@example.com");
    assert_eq!(p.parts.headers["impersonate-group"], "ops");
    assert_eq!(p.parts.headers[header::AUTHORIZATION], "Bearer sa-token");
}

#[test]
fn appended_request_headers_keep_what_the_client_sent() {
    let s = snapshot(
        "    allow_public_unauthenticated_access: true\n    add_request_headers:\n      \
         x-tag: added\n      x-new: only\n",
    );
    let a = admitted(&s, "/x", None);
    let parts = head(Request::builder().header("x-tag", "client"));
    let p = run(&s, &a, parts).unwrap();
    let tags: Vec<_> = p.parts.headers.get_all("x-tag").iter().collect();
    assert_eq!(tags, ["client", "added"]);
    assert_eq!(p.parts.headers["x-new"], "only");
}
