use super::*;
use crate::model::Access;
use crate::settings::ConfigFile;
use crate::source::file::inputs_from_config;
use crate::translate::config::Generated;

fn inputs(yaml: &str) -> Inputs {
    let cfg = ConfigFile::parse("test.yaml", yaml).unwrap();
    let mut warnings = Vec::new();
    inputs_from_config(&cfg, &mut Generated::default(), &mut warnings).unwrap()
}

const SEED: &str = include_str!("../../tests/fixtures/config/seed.yaml");

#[test]
fn seed_config_with_idp_keys_translates_without_errors() {
    let s = translate(&inputs(SEED));
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    assert_eq!(s.routes.len(), 1);
    let r = s.route("verify.localhost.pomerium.io", "/").unwrap();
    assert!(r.pass_identity_headers);
    assert!(matches!(r.access, Access::Policy(_)));
    assert_eq!(r.upstreams[0].authority, "verify:8000");
}

#[test]
fn bad_policy_makes_only_its_route_invalid() {
    let s = translate(&inputs(
        "routes:\n  - from: https://good.example.com\n    to: http://127.0.0.1:1\n    allow_public_unauthenticated_access: true\n  - from: https://bad.example.com\n    to: http://127.0.0.1:2\n    policy:\n      allow:\n        or:\n          - emial: {is: a@b.c}\n",
    ));
    assert_eq!(s.diagnostics.len(), 1);
    assert!(s.diagnostics[0].object.to_string().contains("routes[1]"));
    assert!(
        s.diagnostics[0].message.contains("emial"),
        "{}",
        s.diagnostics[0].message
    );
    assert!(matches!(
        s.route("good.example.com", "/").unwrap().access,
        Access::Public
    ));
    assert!(matches!(
        s.route("bad.example.com", "/").unwrap().access,
        Access::Invalid(_)
    ));
}

#[test]
fn bad_upstream_url_and_header_are_diagnosed() {
    let s = translate(&inputs(
        "routes:\n  - from: https://a.example.com\n    to: ftp://x\n    allow_public_unauthenticated_access: true\n  - from: https://b.example.com\n    to: http://ok:80\n    allow_public_unauthenticated_access: true\n    set_request_headers:\n      \"bad header\": x\n",
    ));
    assert_eq!(s.diagnostics.len(), 2, "{:?}", s.diagnostics);
    assert!(s.diagnostics[0].message.contains("scheme"));
    assert!(s.diagnostics[1].message.contains("set_request_headers"));
}

#[test]
fn upstream_urls_parse_with_default_ports_and_base_paths() {
    let u = parse_upstream("http://svc").unwrap();
    assert_eq!((u.authority.as_str(), u.base_path.as_str()), ("svc:80", ""));
    let u = parse_upstream("https://svc/base/").unwrap();
    assert_eq!(
        (u.authority.as_str(), u.base_path.as_str()),
        ("svc:443", "/base")
    );
    let u = parse_upstream("h2c://127.0.0.1:9000").unwrap();
    assert_eq!(u.scheme, crate::model::UpstreamScheme::H2c);
    assert!(parse_upstream("http://user:pw@svc").is_err());
    assert!(parse_upstream("not a url").is_err());
}

#[test]
fn no_policy_means_deny_after_sign_in() {
    let s = translate(&inputs(
        "routes:\n  - from: https://a.example.com\n    to: http://x:1\n",
    ));
    let Access::Policy(p) = &s.route("a.example.com", "/").unwrap().access else {
        panic!("expected a policy");
    };
    let user = crate::policy::User {
        id: "u".into(),
        email: "u@example.com".into(),
        ..Default::default()
    };
    let req = crate::policy::RequestFacts {
        method: "GET",
        host: "a.example.com",
        path: "/",
        ..Default::default()
    };
    let d = p.eval(&crate::policy::Facts {
        user: Some(&user),
        request: &req,
        now: time::OffsetDateTime::UNIX_EPOCH,
    });
    assert!(!d.allow);
}

#[test]
fn generated_certificate_covers_route_hosts() {
    let s = translate(&inputs(
        "routes:\n  - from: https://a.example.com\n    to: http://x:1\n  - from: https://*.wild.example.com\n    to: http://x:1\n",
    ));
    assert!(s.tls.resolve(Some("a.example.com")).is_some());
    assert!(s.tls.by_name.contains_key("a.example.com"));
    assert!(s.tls.by_wildcard.contains_key("wild.example.com"));
    assert!(s.tls.resolve(None).is_some(), "default certificate");
}

#[test]
fn route_settings_are_carried_into_the_snapshot() {
    let s = translate(&inputs(
        "pass_identity_headers: true\njwt_claims_headers:\n  X-Email: email\nroutes:\n  - from: https://a.example.com\n    to: [http://x:1, http://y:2]\n    prefix: /api\n    allow_any_authenticated_user: true\n    allow_websockets: true\n    preserve_host_header: true\n    timeout: 5s\n    remove_request_headers: [x-drop]\n    set_request_headers: {x-set: v}\n",
    ));
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    let r = s.route("a.example.com", "/api/x").unwrap();
    assert!(s.route("a.example.com", "/apix").is_none());
    assert_eq!(r.upstreams.len(), 2);
    assert!(r.pass_identity_headers && r.allow_websockets);
    assert_eq!(r.host_rewrite, crate::model::rewrite::HostRewrite::Preserve);
    assert_eq!(r.timeout, std::time::Duration::from_secs(5));
    assert_eq!(r.jwt_claims_headers[0].0.as_str(), "x-email");
    assert_eq!(r.remove_request_headers[0].as_str(), "x-drop");
    assert_eq!(r.set_request_headers[0].0.as_str(), "x-set");
}

#[test]
fn bad_upstream_tls_settings_are_the_routes_diagnostic_at_load() {
    for (setting, expect) in [
        ("tls_custom_ca: bm90IGEgY2VydGlmaWNhdGU=", "tls_custom_ca"),
        (
            "tls_custom_ca: \"-----BEGIN CERTIFICATE-----\\nAAAA\\n-----END CERTIFICATE-----\\n\"",
            "tls_custom_ca",
        ),
        ("tls_server_name: \"not a name\"", "tls_server_name"),
    ] {
        let s = translate(&inputs(&format!(
            "routes:\n  - from: https://a.example.com\n    to: https://127.0.0.1:1\n    allow_public_unauthenticated_access: true\n    {setting}\n  - from: https://b.example.com\n    to: http://127.0.0.1:2\n    allow_public_unauthenticated_access: true\n"
        )));
        let a = s.route("a.example.com", "/").unwrap();
        assert!(
            matches!(&a.access, Access::Invalid(m) if m.contains(expect)),
            "{setting}: {:?}",
            a.access
        );
        assert!(matches!(
            s.route("b.example.com", "/").unwrap().access,
            Access::Public
        ));
        assert_eq!(s.diagnostics.len(), 1, "{setting}");
    }
    // A good CA and name load.
    let ca = rcgen::generate_simple_self_signed(vec!["up.internal".to_string()]).unwrap();
    let s = translate(&inputs(&format!(
        "routes:\n  - from: https://a.example.com\n    to: https://127.0.0.1:1\n    allow_public_unauthenticated_access: true\n    tls_server_name: up.internal\n    tls_custom_ca: {:?}\n",
        ca.cert.pem()
    )));
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
}

fn client_pair(ca_name: &str) -> (String, String) {
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, ca_name);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

fn b64(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}

/// Translates one route with `settings` next to a good route; returns the
/// bad route's denial message (asserting the good route still serves).
fn only_route_denied(settings: &str) -> String {
    let s = translate(&inputs(&format!(
        "routes:\n  - from: https://a.example.com\n    to: https://127.0.0.1:1\n    allow_public_unauthenticated_access: true\n{settings}  - from: https://b.example.com\n    to: http://127.0.0.1:2\n    allow_public_unauthenticated_access: true\n"
    )));
    assert!(
        matches!(
            s.route("b.example.com", "/").unwrap().access,
            Access::Public
        ),
        "{settings}"
    );
    assert_eq!(s.diagnostics.len(), 1, "{settings}: {:?}", s.diagnostics);
    assert!(s.diagnostics[0].object.to_string().contains("routes[0]"));
    match &s.route("a.example.com", "/").unwrap().access {
        Access::Invalid(m) => {
            assert_eq!(m, &s.diagnostics[0].message);
            m.clone()
        }
        other => panic!("{settings}: not denied: {other:?}"),
    }
}

#[test]
fn bad_upstream_client_certificates_deny_only_their_route_and_name_the_key() {
    let (cert, key) = client_pair("proxy");
    let (_, other_key) = client_pair("other");
    let cases = [
        (
            format!(
                "    tls_client_cert: '!!not base64!!'\n    tls_client_key: {}\n",
                b64(&key)
            ),
            "tls_client_cert: neither PEM nor base64 of PEM",
        ),
        (
            format!(
                "    tls_client_cert: {}\n    tls_client_key: '%%%'\n",
                b64(&cert)
            ),
            "tls_client_key: neither PEM nor base64 of PEM",
        ),
        (
            format!(
                "    tls_client_cert: {}\n    tls_client_key: {}\n",
                b64(&cert),
                b64(&other_key)
            ),
            "tls_client_cert and tls_client_key do not match",
        ),
        (
            format!("    tls_client_cert: {}\n", b64(&cert)),
            "tls_client_key is missing",
        ),
        (
            format!("    tls_client_key: {}\n", b64(&key)),
            "tls_client_cert is missing",
        ),
        (
            format!(
                "    tls_client_cert: {}\n    tls_client_key: {}\n",
                b64("garbage"),
                b64(&key)
            ),
            "tls_client_cert: no CERTIFICATE block found",
        ),
        (
            format!(
                "    tls_client_cert: {}\n    tls_client_key: {}\n",
                b64(&cert),
                b64("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
            ),
            "tls_client_key: not a usable private key",
        ),
        (
            format!(
                "    tls_client_cert: {}\n    tls_client_cert_file: /nonexistent/c.pem\n    tls_client_key: {}\n",
                b64(&cert),
                b64(&key)
            ),
            "tls_client_cert and tls_client_cert_file: set only one",
        ),
        (
            "    tls_client_key_file: /nonexistent/k.pem\n".to_string(),
            "tls_client_key_file \"/nonexistent/k.pem\"",
        ),
    ];
    // The key's body, which no message may quote.
    let secret: String = other_key
        .lines()
        .chain(key.lines())
        .filter(|l| !l.starts_with("-----"))
        .collect();
    for (settings, want) in &cases {
        let message = only_route_denied(settings);
        assert!(message.contains(want), "{settings}: {message}");
        for line in secret.as_bytes().chunks(16) {
            let line = std::str::from_utf8(line).unwrap();
            assert!(!message.contains(line), "quotes the key: {message}");
        }
    }
    // PEM as it is and base64 of PEM both load.
    for (c, k) in [
        (b64(&cert), b64(&key)),
        (format!("{cert:?}"), format!("{key:?}")),
    ] {
        let s = translate(&inputs(&format!(
            "routes:\n  - from: https://a.example.com\n    to: https://127.0.0.1:1\n    allow_public_unauthenticated_access: true\n    tls_client_cert: {c}\n    tls_client_key: {k}\n"
        )));
        assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
        let tls = &s.routes[0].upstream_tls;
        assert!(tls.client_auth().unwrap().is_some());
        assert!(
            !format!("{tls:?}").contains(&key[40..80]),
            "Debug shows the key"
        );
    }
}

#[test]
fn bad_downstream_client_cas_deny_only_their_route_and_ask_no_certificate() {
    for (settings, want) in [
        (
            "    tls_downstream_client_ca: '!!'\n".to_string(),
            "tls_downstream_client_ca: neither PEM nor base64 of PEM",
        ),
        (
            format!("    tls_downstream_client_ca: {}\n", b64("just text")),
            "tls_downstream_client_ca: no certificates found",
        ),
        (
            format!(
                "    tls_downstream_client_ca: {}\n",
                b64("-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
            ),
            "tls_downstream_client_ca",
        ),
    ] {
        let message = only_route_denied(&settings);
        assert!(message.contains(want), "{settings}: {message}");
    }
    let s = translate(&inputs(
        "routes:\n  - from: https://a.example.com\n    to: http://127.0.0.1:1\n    tls_downstream_client_ca: '!!'\n",
    ));
    assert!(
        s.tls.client_auth.is_none(),
        "an invalid CA asks for nothing"
    );
    // A good one asks on its own host (and a wildcard's names) only.
    let (ca, _) = client_pair("browsers");
    let s = translate(&inputs(&format!(
        "routes:\n  - from: https://a.example.com\n    to: http://127.0.0.1:1\n    tls_downstream_client_ca: {}\n  - from: https://*.w.example.com\n    to: http://127.0.0.1:1\n    tls_downstream_client_ca: {:?}\n  - from: https://b.example.com\n    to: http://127.0.0.1:1\n",
        b64(&ca),
        ca
    )));
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    let names = s.tls.client_auth.as_ref().unwrap();
    assert!(names.covers(Some("a.example.com")) && names.covers(Some("A.Example.com.")));
    assert!(names.covers(Some("x.w.example.com")));
    assert!(!names.covers(Some("b.example.com")) && !names.covers(None));
    assert_eq!(names.subjects.len(), 1, "the same CA is offered once");
}
