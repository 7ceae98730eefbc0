//! Pomerium's route settings through the running proxy: path and Host
//! rewrites, response headers, `${pomerium.jwt}`, and the same keys as
//! Ingress annotations building the same route as in a config file.

use crate::harness;

use harness::proxy::*;
use jetbridge::model::Access;
use jetbridge::translate::cluster::{Cluster, ClusterSettings, from_cluster};
use jetbridge::translate::{Inputs, translate};

#[tokio::test]
async fn path_rewrites_change_only_the_forwarded_path() {
    let up = echo_http1("a").await;
    let to = format!("http://{}", up.authority());
    let to_v1 = format!("http://{}/v1", up.authority());
    let h = Harness::start(&config([
        RouteConfig {
            prefix: Some("/api".into()),
            prefix_rewrite: Some("/v2".into()),
            ..public_route("prefix.test", &to)
        },
        RouteConfig {
            prefix: Some("/old/".into()),
            prefix_rewrite: Some("/".into()),
            ..public_route("root.test", &to)
        },
        RouteConfig {
            regex_rewrite_pattern: Some("^/service/([^/]+)(/.*)$".into()),
            regex_rewrite_substitution: Some("\\2/instance/\\1".into()),
            ..public_route("regex.test", &to)
        },
        RouteConfig {
            prefix: Some("/api".into()),
            ..public_route("topath.test", &to_v1)
        },
        public_route("plain.test", &to_v1),
        RouteConfig {
            path: Some("/a".into()),
            prefix_rewrite: Some("/b/c".into()),
            ..public_route("exact.test", &to)
        },
    ]))
    .await;
    let cases = [
        ("prefix.test", "/api/x/y?q=1", "/v2/x/y?q=1"),
        ("prefix.test", "/api", "/v2"),
        ("root.test", "/old/x", "/x"),
        ("regex.test", "/service/foo/v1/api", "/v1/api/instance/foo"),
        ("regex.test", "/other", "/other"),
        // A `to` URL's path replaces the matched prefix, as in Pomerium.
        ("topath.test", "/api/users", "/v1/users"),
        ("plain.test", "/users", "/v1/users"),
        ("exact.test", "/a", "/b/c"),
        // Rewrites act on the normalised path.
        ("prefix.test", "/api/./x/../y", "/v2/y"),
    ];
    for (host, path, want) in cases {
        let r = h.get(host, path).await;
        assert_eq!(r.status, 200, "{host}{path}: {}", r.text());
        assert_eq!(r.echo().path_and_query, want, "{host}{path}");
    }
}

#[tokio::test]
async fn the_policy_sees_the_client_path_not_the_rewritten_one() {
    let up = echo_http1("a").await;
    let to = format!("http://{}", up.authority());
    // /public/... is forwarded as /admin/...; the policy denies /admin only.
    let h = Harness::start(&config([RouteConfig {
        prefix: Some("/public".into()),
        prefix_rewrite: Some("/admin".into()),
        policy: ppl(
            "[{allow: {or: [{accept: true}]}}, {deny: {or: [{http_path: {starts_with: /admin}}]}}]",
        ),
        ..route("p.test", &to)
    }]))
    .await;
    let r = h.get("p.test", "/public/page").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echo().path_and_query, "/admin/page");
    assert_eq!(up.requests(), 1);
}

#[tokio::test]
async fn host_rewrites_set_the_forwarded_host() {
    let up = echo_http1("a").await;
    let to = format!("http://{}", up.authority());
    let h = Harness::start(&config([
        RouteConfig {
            host_rewrite: Some("internal.example".into()),
            preserve_host_header: true,
            ..public_route("lit.test", &to)
        },
        RouteConfig {
            host_rewrite_header: Some("x-target-host".into()),
            ..public_route("hdr.test", &to)
        },
        RouteConfig {
            host_path_regex_rewrite_pattern: Some("^/([a-z]+)/.*$".into()),
            host_path_regex_rewrite_substitution: Some("\\1.backend.example".into()),
            ..public_route("re.test", &to)
        },
        RouteConfig {
            preserve_host_header: true,
            ..public_route("pres.test", &to)
        },
        public_route("auto.test", &to),
    ]))
    .await;
    let host_of = |r: Resp| r.echo().all("host").join(",");
    assert_eq!(
        host_of(h.raw_get("lit.test", "/", &[]).await),
        "internal.example"
    );
    assert_eq!(
        host_of(
            h.raw_get("hdr.test", "/", &[("x-target-host", "picked.example")])
                .await
        ),
        "picked.example"
    );
    // Without the header the client's Host is kept (Envoy's behaviour).
    assert_eq!(host_of(h.raw_get("hdr.test", "/", &[]).await), "hdr.test");
    assert_eq!(
        host_of(h.raw_get("re.test", "/eu/x", &[]).await),
        "eu.backend.example"
    );
    assert_eq!(host_of(h.raw_get("pres.test", "/", &[]).await), "pres.test");
    assert_eq!(
        host_of(h.raw_get("auto.test", "/", &[]).await),
        up.authority()
    );
}

#[tokio::test]
async fn response_headers_have_pomeriums_defaults_route_additions_and_an_off_switch() {
    let up = echo_http1("a").await;
    let to = format!("http://{}", up.authority());
    let upstream_location = format!("Location: http://{}/login", up.authority());
    let defaults = Harness::start(&config([
        public_route("d.test", &to),
        RouteConfig {
            set_response_headers: Some(headers(&[("X-Frame-Options", "DENY"), ("X-Route", "yes")])),
            rewrite_response_headers: vec![RewriteHeader {
                header: "Location".into(),
                prefix: format!("http://{}/", up.authority()),
                value: "https://r.test/".into(),
            }],
            ..public_route("r.test", &to)
        },
        RouteConfig {
            set_response_headers: Some(headers(&[("disable", "true")])),
            ..public_route("off.test", &to)
        },
    ]))
    .await;
    let r = defaults.get("d.test", "/").await;
    assert_eq!(r.header("x-frame-options"), Some("SAMEORIGIN"));
    assert_eq!(r.header("x-xss-protection"), Some("1; mode=block"));
    // The test config has no certificate of its own (a generated one): no HSTS,
    // as Pomerium does without certificates.
    assert_eq!(r.header("strict-transport-security"), None);
    let r = defaults
        .get_with(
            "r.test",
            "/",
            &[("x-echo-response-header", &upstream_location)],
        )
        .await;
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    assert_eq!(r.header("x-route"), Some("yes"));
    assert_eq!(r.header("location"), Some("https://r.test/login"));
    let r = defaults.get("off.test", "/").await;
    assert_eq!(r.header("x-frame-options"), None);
    assert_eq!(r.header("x-xss-protection"), None);

    // A global map replaces the defaults; a route still adds to it.
    let global = Harness::start(&ConfigFile {
        set_response_headers: Some(headers(&[("X-Global", "g")])),
        ..config([
            public_route("g.test", &to),
            RouteConfig {
                set_response_headers: Some(headers(&[("X-Route", "r")])),
                ..public_route("g2.test", &to)
            },
        ])
    })
    .await;
    let r = global.get("g.test", "/").await;
    assert_eq!(r.header("x-global"), Some("g"));
    assert_eq!(r.header("x-frame-options"), None);
    let r = global.get("g2.test", "/").await;
    assert_eq!(
        (r.header("x-global"), r.header("x-route")),
        (Some("g"), Some("r"))
    );
}

#[tokio::test]
async fn pomerium_jwt_substitution_carries_the_routes_assertion() {
    let up = echo_http1("a").await;
    let to = format!("http://{}", up.authority());
    let h = Harness::start(&config([RouteConfig {
        set_request_headers: headers(&[("Authorization", "Bearer ${pomerium.jwt}")]),
        ..signed_in_route("jwt.test", &to)
    }]))
    .await;
    let cookie = session_cookie("jwt.test", &session("alice@example.com", &[]));
    let r = h.get_with("jwt.test", "/", &[("cookie", &cookie)]).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let e = r.echo();
    let auth = e.one("authorization").expect("authorization header");
    let token = auth.strip_prefix("Bearer ").expect("bearer");
    assert_eq!(token.split('.').count(), 3, "{auth}");
    // The assertion header itself is not sent: pass_identity_headers is off.
    assert_eq!(e.one("x-pomerium-jwt-assertion"), None);
    let t = jetbridge::verify::decode_unverified(token).unwrap();
    assert_eq!(t.claims["email"], "alice@example.com", "{:?}", t.claims);
    assert_eq!(t.claims["aud"], "jwt.test");
}

#[tokio::test]
async fn a_bad_rewrite_denies_only_its_route() {
    let up = echo_http1("a").await;
    let to = format!("http://{}", up.authority());
    let yaml = config([
        RouteConfig {
            regex_rewrite_pattern: Some("(unclosed".into()),
            ..public_route("bad.test", &to)
        },
        RouteConfig {
            host_path_regex_rewrite_pattern: Some("[".into()),
            ..public_route("badhost.test", &to)
        },
        RouteConfig {
            set_request_headers: headers(&[("X-Token", "${pomerium.client_cert_fingerprint}")]),
            ..public_route("idp.test", &to)
        },
        RouteConfig {
            prefix_rewrite: Some("/a".into()),
            regex_rewrite_pattern: Some("x".into()),
            ..public_route("both.test", &to)
        },
        RouteConfig {
            prefix_rewrite: Some("/ok".into()),
            ..public_route("good.test", &to)
        },
    ]);
    let mut generated = jetbridge::translate::config::Generated::default();
    let snapshot = snapshot_with_diagnostics(&yaml, &mut generated);
    let messages: Vec<String> = snapshot.diagnostics.iter().map(|d| d.to_string()).collect();
    for (host, needle) in [
        (
            "bad.test",
            "regex_rewrite_pattern: invalid regular expression",
        ),
        (
            "badhost.test",
            "host_path_regex_rewrite_pattern: invalid regular expression",
        ),
        (
            "idp.test",
            "${pomerium.client_cert_fingerprint} is not supported by jetbridge",
        ),
        ("both.test", "mutually exclusive"),
    ] {
        assert!(
            messages
                .iter()
                .any(|m| m.contains(host) && m.contains(needle)),
            "{host}: {messages:#?}"
        );
        let r = snapshot
            .routes
            .iter()
            .find(|r| format!("{:?}", r.host).contains(host))
            .unwrap();
        assert!(matches!(r.access, Access::Invalid(_)), "{host}");
    }
    // Served: the bad routes answer 403, the good one is rewritten.
    let mut driver = jetbridge::translate::driver::Driver::new();
    let inputs = inputs_from_yaml(&yaml, &mut generated);
    driver.apply(inputs, 0, |_| Ok::<(), String>(())).unwrap();
    let h = Harness::serve(driver, generated).await;
    assert_eq!(h.get("bad.test", "/").await.status, 403);
    let r = h.get("good.test", "/x").await;
    assert_eq!(
        (r.status, r.echo().path_and_query),
        (200, "/ok/x".to_string())
    );
}

/// Every route key given as an annotation builds the same route as in a
/// config file (one `RouteOptions` behind both).
#[test]
fn annotations_and_config_keys_build_the_same_route() {
    let settings: &[(&str, &str)] = &[
        ("prefix_rewrite", "/v2"),
        ("host_rewrite", "internal.example"),
        ("set_response_headers", "{X-A: one, X-Frame-Options: DENY}"),
        (
            "rewrite_response_headers",
            "[{header: Location, prefix: 'http://x/', value: 'https://y/'}]",
        ),
        (
            "set_request_headers",
            "{X-Token: 'Bearer ${pomerium.jwt}', X-B: two}",
        ),
        ("remove_request_headers", "[X-Drop]"),
        ("pass_identity_headers", "true"),
        ("allow_websockets", "true"),
        ("timeout", "7s"),
        ("idle_timeout", "9m"),
        ("jwt_claims_headers", "{X-Email: email}"),
        ("tls_server_name", "backend.internal"),
        ("allowed_domains", "[example.com]"),
        ("policy", "{allow: {or: [{email: {is: a@example.com}}]}}"),
        ("bearer_token_format", "idp_identity_token"),
        ("jwt_issuer_format", "uri"),
    ];
    let regex_settings: &[(&str, &str)] = &[
        ("regex_rewrite_pattern", "'^/(.*)$'"),
        ("regex_rewrite_substitution", "'/x/\\1'"),
        ("host_path_regex_rewrite_pattern", "'^/([a-z]+)'"),
        ("host_path_regex_rewrite_substitution", "'\\1.example'"),
        ("preserve_host_header", "true"),
    ];
    // Client certificates both ways, as base64 of PEM (Pomerium's form).
    let ca = TestCa::new("browsers");
    let proxy_cert = TestCa::new("upstream clients").client("jetbridge");
    let owned = |set: &[(&str, &str)]| -> Vec<(String, String)> {
        set.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let mtls_settings = owned(&[
        ("tls_client_cert", &proxy_cert.cert_b64()),
        ("tls_client_key", &proxy_cert.key_b64()),
        ("tls_downstream_client_ca", &ca.pem_b64()),
        ("tls_skip_verify", "true"),
    ]);
    for set in [owned(settings), owned(regex_settings), mtls_settings] {
        let yaml = config([route_from_keys(
            "same.test",
            "http://10.0.0.1:8080",
            set.iter().map(|(k, v)| (k, v)),
        )]);
        let mut generated = jetbridge::translate::config::Generated::default();
        let file_inputs = inputs_from_yaml(&yaml, &mut generated);
        let from_file = translate(&file_inputs);
        assert!(
            from_file.diagnostics.is_empty(),
            "{:?}",
            from_file.diagnostics
        );

        let annotations: serde_json::Map<String, serde_json::Value> = set
            .iter()
            .map(|(k, v)| {
                let v = v.trim_matches('\'').to_string();
                (format!("jetbridge.dev/{k}"), serde_json::Value::String(v))
            })
            .collect();
        let cluster = one_ingress_cluster(annotations);
        let out = from_cluster(&cluster, &ClusterSettings::default());
        assert!(out.diagnostics.is_empty(), "{:?}", out.diagnostics);
        let from_cluster = translate(&Inputs {
            global: file_inputs.global.clone(),
            routes: out.routes,
            diagnostics: Vec::new(),
        });
        assert!(
            from_cluster.diagnostics.is_empty(),
            "{:?}",
            from_cluster.diagnostics
        );
        let (a, mut b) = (
            (*from_file.routes[0]).clone(),
            (*from_cluster.routes[0]).clone(),
        );
        // Only where they come from differs.
        b.id = a.id.clone();
        b.upstreams = a.upstreams.clone();
        assert_eq!(a, b);
        let mtls = set.iter().any(|(k, _)| k.starts_with("tls_client"));
        if mtls {
            assert!(a.upstream_tls.client_auth().unwrap().is_some());
            assert!(a.client_ca.is_some());
            assert!(from_cluster.tls.client_auth.is_some());
        }
    }
}

fn one_ingress_cluster(annotations: serde_json::Map<String, serde_json::Value>) -> Cluster {
    fn obj<T: serde::de::DeserializeOwned>(v: serde_json::Value) -> T {
        serde_json::from_value(v).unwrap()
    }
    Cluster {
        classes: vec![std::sync::Arc::new(obj(serde_json::json!({
            "metadata": {"name": "jetbridge"},
            "spec": {"controller": "jetbridge.dev/ingress-controller"}
        })))],
        ingresses: vec![std::sync::Arc::new(obj(serde_json::json!({
            "metadata": {"name": "same", "namespace": "t", "annotations": annotations,
                         "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"ingressClassName": "jetbridge", "rules": [{"host": "same.test", "http": {"paths": [
                {"path": "/", "pathType": "Prefix",
                 "backend": {"service": {"name": "web", "port": {"number": 80}}}}]}}]}
        })))],
        services: vec![std::sync::Arc::new(obj(serde_json::json!({
            "metadata": {"name": "web", "namespace": "t"},
            "spec": {"ports": [{"port": 80}]}
        })))],
        ..Cluster::default()
    }
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// A Secret `name` of type `kind` in namespace `t`, with `data` (base64 values).
fn k8s_secret(
    name: &str,
    kind: &str,
    data: serde_json::Value,
) -> std::sync::Arc<k8s_openapi::api::core::v1::Secret> {
    std::sync::Arc::new(
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": "t"}, "type": kind, "data": data
        }))
        .unwrap(),
    )
}

/// The snapshot of [`one_ingress_cluster`] with `ingress.pomerium.io/`
/// `annotations`, these `secrets` in its namespace, and `global`.
fn annotated_snapshot(
    annotations: &[(&str, &str)],
    secrets: Vec<std::sync::Arc<k8s_openapi::api::core::v1::Secret>>,
    global: &jetbridge::translate::GlobalInputs,
) -> jetbridge::model::Snapshot {
    let map: serde_json::Map<String, serde_json::Value> = annotations
        .iter()
        .map(|(k, v)| {
            (
                format!("ingress.pomerium.io/{k}"),
                serde_json::Value::from(*v),
            )
        })
        .collect();
    let mut c = one_ingress_cluster(map);
    c.secrets = secrets;
    let out = from_cluster(&c, &ClusterSettings::default());
    translate(&Inputs {
        global: global.clone(),
        routes: out.routes,
        diagnostics: out.diagnostics,
    })
}

/// Pomerium keys jetbridge refuses say so and why, in a config file (route
/// or global) and as annotations, never as a bare "unknown key".
#[test]
fn refused_pomerium_keys_say_not_supported_and_why() {
    let route_cases = [
        ("allowed_groups", "[admins]", "no longer supported"),
        (
            "tcp_upstream",
            "true",
            "TCP tunnels are not supported by jetbridge",
        ),
        (
            "mcp_server_upstream_oauth2_auth_url",
            "x",
            "MCP is not supported by jetbridge",
        ),
        (
            "enable_google_cloud_serverless_authentication",
            "true",
            "Google Cloud serverless",
        ),
    ];
    for (key, value, needle) in route_cases {
        let yaml =
            format!("routes:\n  - from: https://a.test\n    to: http://x:1\n    {key}: {value}\n");
        let e = jetbridge::settings::ConfigFile::parse("c.yaml", &yaml)
            .unwrap_err()
            .to_string();
        assert!(e.contains(needle) && e.contains(key), "{key}: {e}");
        assert!(!e.contains("unknown key"), "{key}: {e}");

        let mut annotations = serde_json::Map::new();
        annotations.insert(format!("ingress.pomerium.io/{key}"), value.into());
        let out = from_cluster(
            &one_ingress_cluster(annotations),
            &ClusterSettings::default(),
        );
        let problems = out.routes[0].problems.iter();
        let problems = problems
            .map(|d| d.message.clone())
            .collect::<Vec<_>>()
            .join("; ");
        assert!(
            problems.contains(needle) && problems.contains(key),
            "{key}: {problems}"
        );
    }
    for (key, value, needle) in [
        ("autocert", "true", "cert-manager"),
        ("codec_type", "http1", "not supported by jetbridge yet"),
        ("databroker_storage_type", "postgres", "no databroker"),
    ] {
        let yaml = format!("{key}: {value}\nroutes: []\n");
        let e = jetbridge::settings::ConfigFile::parse("c.yaml", &yaml)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains(needle) && e.contains(key) && e.contains("line 1"),
            "{key}: {e}"
        );
    }
    // A typo is still a typo, with a suggestion.
    let e = jetbridge::settings::ConfigFile::parse(
        "c.yaml",
        "routes:\n  - from: https://a.test\n    to: http://x:1\n    prefix_rewrit: /x\n",
    )
    .unwrap_err()
    .to_string();
    assert!(e.contains("did you mean \"prefix_rewrite\""), "{e}");
}

/// The README's table of Pomerium route keys is rendered from the code
/// (`JETBRIDGE_BLESS=1` rewrites it).
#[test]
fn the_readme_route_key_table_matches_the_code() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/docs/migrating-from-pomerium.md"
    );
    let readme = std::fs::read_to_string(path).unwrap();
    let (begin, end) = ("<!-- route-keys:begin -->\n", "<!-- route-keys:end -->");
    let start = readme
        .find(begin)
        .expect("README has the route-keys markers")
        + begin.len();
    let stop = readme[start..].find(end).expect("end marker") + start;
    let want = jetbridge::settings::pomerium::route_keys_table();
    if std::env::var_os("JETBRIDGE_BLESS").is_some() {
        let updated = format!("{}{want}{}", &readme[..start], &readme[stop..]);
        std::fs::write(path, updated).unwrap();
        return;
    }
    assert_eq!(
        &readme[start..stop],
        want,
        "README route-key table drifted: run JETBRIDGE_BLESS=1 cargo test --test route_options"
    );
}

#[tokio::test]
async fn regex_routes_match_the_whole_path_between_exact_and_prefix_routes() {
    let (a, b, c) = (
        echo_http1("regex").await,
        echo_http1("exact").await,
        echo_http1("prefix").await,
    );
    let to = |u: &Upstream| format!("http://{}", u.authority());
    let h = Harness::start(&config([
        RouteConfig {
            regex: Some("/api/v[0-9]+/.*".into()),
            ..public_route("m.test", &to(&a))
        },
        RouteConfig {
            path: Some("/api/v1/status".into()),
            ..public_route("m.test", &to(&b))
        },
        RouteConfig {
            prefix: Some("/api".into()),
            ..public_route("m.test", &to(&c))
        },
        // No backtracking blow-up: linear in the path.
        RouteConfig {
            regex: Some("/(a+)+".into()),
            ..public_route("slow.test", &to(&a))
        },
    ]))
    .await;
    for (path, want) in [
        ("/api/v1/users", "regex"),
        ("/api/v22/x/y", "regex"),
        ("/api/v1/status", "exact"),
        ("/api/vx/users", "prefix"),
        // The whole path must match, not a part of it.
        ("/api/v1", "prefix"),
        ("/x/api/v1/y", ""),
    ] {
        let r = h.get("m.test", path).await;
        if want.is_empty() {
            assert_eq!(r.status, 404, "{path}");
        } else {
            assert_eq!(r.status, 200, "{path}: {}", r.text());
            assert_eq!(r.echo().server, want, "{path}");
        }
    }
    let long = format!("/{}b", "a".repeat(20_000));
    let r = h.get("slow.test", &long).await;
    assert_eq!(r.status, 404);
    assert_eq!(h.get("slow.test", "/aaa").await.status, 200);
}

#[tokio::test]
async fn cors_preflights_pass_without_sign_in_only_where_allowed() {
    let up = echo_http1("a").await;
    let to = format!("http://{}", up.authority());
    let h = Harness::start(&config([
        RouteConfig {
            cors_allow_preflight: true,
            ..signed_in_route("cors.test", &to)
        },
        signed_in_route("nocors.test", &to),
    ]))
    .await;
    let preflight = |host: &'static str, headers: Vec<(&'static str, &'static str)>| {
        let h = &h;
        async move {
            let mut req = format!("OPTIONS /api HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
            for (n, v) in headers {
                req.push_str(&format!("{n}: {v}\r\n"));
            }
            req.push_str("\r\n");
            h.raw(host, &req).await
        }
    };
    let full = vec![
        ("Origin", "https://app.example"),
        ("Access-Control-Request-Method", "POST"),
    ];
    let r = preflight("cors.test", full.clone()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.echo().method, "OPTIONS");
    // Not a preflight (no Access-Control-Request-Method), or not allowed: sign-in.
    let r = preflight("cors.test", vec![("Origin", "https://app.example")]).await;
    assert_eq!(r.status, 401);
    assert_eq!(preflight("nocors.test", full).await.status, 401);
    assert_eq!(h.get("cors.test", "/api").await.status, 401);
    assert_eq!(up.requests(), 1);
}

/// An upstream that answers any upgrade with 101 naming the requested
/// protocol, then echoes bytes.
async fn upgrade_echo() -> std::net::SocketAddr {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    if s.read(&mut byte).await.unwrap_or(0) == 0 {
                        return;
                    }
                    head.push(byte[0]);
                }
                let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
                let proto = text
                    .lines()
                    .find_map(|l| l.strip_prefix("upgrade: "))
                    .unwrap_or("none")
                    .trim()
                    .to_string();
                let reply = format!(
                    "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: {proto}\r\n\r\n"
                );
                if s.write_all(reply.as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

#[tokio::test]
async fn spdy_and_listed_upgrades_pass_through_only_where_allowed() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let up = upgrade_echo().await;
    let to = format!("http://{up}");
    let h = Harness::start(&config([
        RouteConfig {
            allow_spdy: true,
            ..public_route("spdy.test", &to)
        },
        RouteConfig {
            allow_upgrades: strings(&["my-proto"]),
            ..public_route("custom.test", &to)
        },
        public_route("none.test", &to),
    ]))
    .await;
    let upgrade = |host: &'static str, proto: &'static str| {
        let h = &h;
        async move {
            let mut tls = tls_connect(h.https, host, &[b"http/1.1"]).await;
            let req = format!(
                "GET / HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: {proto}\r\n\r\n"
            );
            tls.write_all(req.as_bytes()).await.unwrap();
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if tls.read(&mut byte).await.unwrap_or(0) == 0 {
                    break;
                }
                head.push(byte[0]);
            }
            let head = String::from_utf8_lossy(&head).to_string();
            let mut echoed = String::new();
            if head.starts_with("HTTP/1.1 101") {
                tls.write_all(b"ping").await.unwrap();
                let mut buf = [0u8; 4];
                tls.read_exact(&mut buf).await.unwrap();
                echoed = String::from_utf8_lossy(&buf).to_string();
            }
            (head, echoed)
        }
    };
    let (head, echoed) = upgrade("spdy.test", "SPDY/3.1").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(echoed, "ping");
    let (head, echoed) = upgrade("custom.test", "my-proto").await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(echoed, "ping");
    // Not allowed: forwarded as a plain request without the upgrade; this
    // upstream switches anyway, and the proxy answers 502 rather than a 101
    // it cannot carry out.
    let (head, _) = upgrade("custom.test", "spdy/3.1").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    let (head, _) = upgrade("none.test", "my-proto").await;
    assert!(head.starts_with("HTTP/1.1 502"), "{head}");
    // WebSocket on a route without allow_websockets is refused.
    let (head, _) = upgrade("none.test", "websocket").await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
}

#[test]
fn path_regex_annotation_makes_implementation_specific_paths_patterns() {
    let mut annotations = serde_json::Map::new();
    annotations.insert("ingress.pomerium.io/path_regex".into(), "true".into());
    let mut c = one_ingress_cluster(annotations);
    let mut ing = (*c.ingresses[0]).clone();
    let paths = &mut ing.spec.as_mut().unwrap().rules.as_mut().unwrap()[0]
        .http
        .as_mut()
        .unwrap()
        .paths;
    paths[0].path = Some("/api/v[0-9]+/.*".into());
    paths[0].path_type = "ImplementationSpecific".into();
    let mut prefix = paths[0].clone();
    prefix.path = Some("/static".into());
    prefix.path_type = "Prefix".into();
    paths.push(prefix);
    let mut bad = paths[0].clone();
    bad.path = Some("/(unclosed".into());
    paths.push(bad);
    c.ingresses = vec![std::sync::Arc::new(ing)];
    let out = from_cluster(&c, &ClusterSettings::default());
    let snap = translate(&Inputs {
        global: jetbridge::translate::GlobalInputs::for_test(),
        routes: out.routes,
        diagnostics: out.diagnostics,
    });
    let table = &snap.table;
    let served = |p: &str| {
        table
            .lookup("same.test", p)
            .map(|i| snap.routes[i].path.as_str().to_string())
    };
    assert_eq!(
        served("/api/v2/x").as_deref(),
        Some("^(?:/api/v[0-9]+/.*)$")
    );
    assert_eq!(served("/api/vx/x"), None);
    assert_eq!(served("/static/a").as_deref(), Some("/static"));
    // The bad pattern is that route's diagnostic; the others serve.
    assert!(
        snap.diagnostics
            .iter()
            .any(|d| d.message.contains("regex") && d.object.name == "same"),
        "{:?}",
        snap.diagnostics
    );
}

#[tokio::test]
async fn load_balancing_policies_pick_targets_as_named() {
    let ups = [
        echo_http1("a").await,
        echo_http1("b").await,
        echo_http1("c").await,
    ];
    let to = http_targets(&ups.iter().map(Upstream::authority).collect::<Vec<_>>());
    let all = |r: RouteConfig| RouteConfig {
        to: to.clone(),
        ..r
    };
    let signed = |host: &str, policy: &str| RouteConfig {
        load_balancing_policy: Some(policy.into()),
        ..all(signed_in_route(host, ""))
    };
    let h = Harness::start(&config([
        all(public_route("rr.test", "")),
        RouteConfig {
            load_balancing_policy: Some("random".into()),
            ..all(public_route("random.test", ""))
        },
        signed("ring.test", "ring_hash"),
        signed("maglev.test", "maglev"),
    ]))
    .await;
    let served = |r: Resp| r.echo().server;
    // round robin: every target once per three requests
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(served(h.get("rr.test", "/").await));
    }
    for name in ["a", "b", "c"] {
        assert_eq!(seen.iter().filter(|s| *s == name).count(), 2, "{seen:?}");
    }
    // random: spreads (three targets all missed in 40 tries: ~1e-7)
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        seen.insert(served(h.get("random.test", "/").await));
    }
    assert!(seen.len() >= 2, "{seen:?}");
    // consistent hashing: a session keeps its target; sessions spread
    for host in ["ring.test", "maglev.test"] {
        let mut targets = std::collections::BTreeSet::new();
        for user in 0..12 {
            let cookie = session_cookie(host, &session(&format!("u{user}@example.com"), &[]));
            let first = served(h.get_with(host, "/", &[("cookie", &cookie)]).await);
            for _ in 0..4 {
                let again = served(h.get_with(host, "/", &[("cookie", &cookie)]).await);
                assert_eq!(again, first, "{host} user {user}");
            }
            targets.insert(first);
        }
        assert!(targets.len() >= 2, "{host}: {targets:?}");
    }
    // An unknown policy is that route's problem.
    let mut generated = jetbridge::translate::config::Generated::default();
    let snap = snapshot_with_diagnostics(
        &config([RouteConfig {
            load_balancing_policy: Some("fastest".into()),
            ..all(public_route("bad.test", ""))
        }]),
        &mut generated,
    );
    assert!(
        snap.diagnostics[0]
            .message
            .contains("load_balancing_policy \"fastest\""),
        "{:?}",
        snap.diagnostics
    );
    assert!(matches!(snap.routes[0].access, Access::Invalid(_)));
}

#[tokio::test]
async fn jwt_groups_filter_keeps_the_listed_groups_global_and_per_route() {
    let up = echo_http1("a").await;
    let to = format!("http://{}", up.authority());
    let identity = |host: &str| identity_route(host, &to);
    let h = Harness::start(&ConfigFile {
        jwt_groups_filter: Some(strings(&["eng"])),
        ..config([
            RouteConfig {
                jwt_groups_filter: Some(strings(&["admins"])),
                ..identity("f.test")
            },
            identity("g.test"),
        ])
    })
    .await;
    let groups = |host: &'static str| {
        let h = &h;
        async move {
            let cookie = session_cookie(
                host,
                &session("alice@example.com", &["eng", "ops", "admins"]),
            );
            let e = h.get_with(host, "/", &[("cookie", &cookie)]).await.echo();
            let token = e.one("x-pomerium-jwt-assertion").unwrap().to_string();
            jetbridge::verify::decode_unverified(&token).unwrap().claims["groups"].clone()
        }
    };
    assert_eq!(groups("f.test").await, serde_json::json!(["eng", "admins"]));
    assert_eq!(groups("g.test").await, serde_json::json!(["eng"]));
}

/// Pomerium's Secret-backed annotations read the Secrets of the Ingress's
/// namespace; a missing Secret or key denies only that route.
#[test]
fn secret_backed_annotations_fill_the_route() {
    let messages = |snap: &jetbridge::model::Snapshot| {
        snap.diagnostics
            .iter()
            .map(|d| d.message.clone())
            .collect::<Vec<_>>()
            .join("; ")
    };
    let ca = jetbridge_test_ca();
    let client = TestCa::new("upstream clients").client("jetbridge");
    let stranger = TestCa::new("other").client("jetbridge");
    let browsers = TestCa::new("browsers");
    let secret = k8s_secret;
    // A kubernetes.io/tls Secret named `name` holding this pair.
    let tls_pair = |name: &str, cert: &str, key: &str| {
        secret(
            name,
            "kubernetes.io/tls",
            serde_json::json!({"tls.crt": b64(cert), "tls.key": b64(key)}),
        )
    };
    let global = jetbridge::translate::GlobalInputs::for_test();
    let build =
        |annotations: &[(&str, &str)], secrets| annotated_snapshot(annotations, secrets, &global);
    let snap = build(
        &[
            ("allow_public_unauthenticated_access", "true"),
            ("tls_custom_ca_secret", "ca"),
            ("set_request_headers_secret", "req"),
            ("set_response_headers_secret", "resp"),
            ("kubernetes_service_account_token_secret", "sa"),
            ("service_proxy_upstream", "true"),
            ("tls_client_secret", "client"),
            ("tls_downstream_client_ca_secret", "browsers"),
        ],
        vec![
            secret("ca", "Opaque", serde_json::json!({"ca.crt": b64(&ca)})),
            tls_pair("client", &client.cert_pem, &client.key_pem),
            // cert-manager's CA Secrets are of type kubernetes.io/tls.
            secret(
                "browsers",
                "kubernetes.io/tls",
                serde_json::json!({"ca.crt": b64(&browsers.pem)}),
            ),
            secret("req", "Opaque", serde_json::json!({"X-Api-Key": b64("k1")})),
            secret(
                "resp",
                "Opaque",
                serde_json::json!({"X-Served-By": b64("edge")}),
            ),
            secret(
                "sa",
                "kubernetes.io/service-account-token",
                serde_json::json!({"token": b64("sa-token-value\n")}),
            ),
        ],
    );
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
    let r = &snap.routes[0];
    assert!(
        r.upstream_tls
            .custom_ca_pem
            .as_deref()
            .is_some_and(|p| p.contains("BEGIN CERTIFICATE"))
    );
    assert!(
        r.set_request_headers
            .iter()
            .any(|(n, v)| n == "x-api-key" && v == "k1")
    );
    assert!(
        r.set_response_headers
            .iter()
            .any(|(n, v)| n == "x-served-by" && v == "edge")
    );
    assert_eq!(
        r.kubernetes_token.as_ref().unwrap(),
        "Bearer sa-token-value"
    );
    assert_eq!(r.upstreams[0].authority, "web.t.svc.cluster.local:80");
    assert_eq!(
        r.upstream_tls.client_cert_pem.as_deref(),
        Some(client.cert_pem.trim())
    );
    assert!(r.upstream_tls.client_auth().unwrap().is_some());
    assert_eq!(
        r.client_ca.as_ref().map(|c| c.pem()),
        Some(browsers.pem.trim())
    );
    assert!(
        snap.tls
            .client_auth
            .as_ref()
            .unwrap()
            .covers(Some("same.test"))
    );

    // A Secret of the wrong type, a missing one, a key that is not the
    // certificate's: each denies the route and says which.
    for (annotations, secrets, want) in [
        (
            vec![("tls_client_secret", "opaque")],
            vec![secret(
                "opaque",
                "Opaque",
                serde_json::json!({"tls.crt": b64(&client.cert_pem), "tls.key": b64(&client.key_pem)}),
            )],
            "tls_client_secret: Secret t/opaque is of type Opaque, not kubernetes.io/tls",
        ),
        (
            vec![("tls_client_secret", "gone")],
            vec![],
            "tls_client_secret: Secret t/gone not found",
        ),
        (
            vec![("tls_client_secret", "mixed")],
            vec![tls_pair("mixed", &client.cert_pem, &stranger.key_pem)],
            "tls_client_cert and tls_client_key do not match",
        ),
        (
            vec![("tls_downstream_client_ca_secret", "nope")],
            vec![],
            "tls_downstream_client_ca_secret: Secret t/nope not found",
        ),
        (
            vec![("tls_downstream_client_ca_secret", "noca")],
            vec![secret("noca", "Opaque", serde_json::json!({"x": b64("y")}))],
            "Secret t/noca has no key \"ca.crt\"",
        ),
    ] {
        let mut all = vec![("allow_public_unauthenticated_access", "true")];
        all.extend(annotations);
        let snap = build(&all, secrets);
        let message = messages(&snap);
        assert!(message.contains(want), "{message}");
        assert!(!message.contains("PRIVATE"), "{message}");
        assert!(matches!(snap.routes[0].access, Access::Invalid(_)));
        assert!(snap.tls.client_auth.is_none());
    }

    let snap = build(
        &[
            ("allow_public_unauthenticated_access", "true"),
            ("tls_custom_ca_secret", "nope"),
            ("kubernetes_service_account_token_secret", "empty"),
        ],
        vec![secret("empty", "Opaque", serde_json::json!({}))],
    );
    let message = messages(&snap);
    assert!(message.contains("Secret t/nope not found"), "{message}");
    assert!(
        message.contains("Secret t/empty has no key \"token\""),
        "{message}"
    );
    assert!(matches!(snap.routes[0].access, Access::Invalid(_)));
}

fn jetbridge_test_ca() -> String {
    rcgen::generate_simple_self_signed(vec!["ca.test".to_string()])
        .unwrap()
        .cert
        .pem()
}

#[tokio::test]
async fn a_kubernetes_token_route_impersonates_the_signed_in_user_only() {
    let up = echo_http1("a").await;
    let to = format!("http://{}", up.authority());
    let h = Harness::start(&config([
        RouteConfig {
            kubernetes_service_account_token: Some("secret-sa-token".into()),
            ..signed_in_route("k8s.test", &to)
        },
        RouteConfig {
            kubernetes_service_account_token: Some("secret-sa-token".into()),
            ..public_route("open.test", &to)
        },
    ]))
    .await;
    let cookie = session_cookie("k8s.test", &session("alice@example.com", &["eng", "ops"]));
    let e = h
        .get_with(
            "k8s.test",
            "/api/v1/pods",
            &[
                ("cookie", &cookie),
                ("impersonate-group", "system:masters"),
                ("Impersonate_User", "admin"),
                ("authorization", "Bearer client-token"),
            ],
        )
        .await
        .echo();
    assert_eq!(e.all("authorization"), ["Bearer secret-sa-token"]);
    assert_eq!(e.all("impersonate-user"), ["alice@example.com"]);
    assert_eq!(e.all("impersonate-group"), ["eng", "ops"]);
    assert!(
        e.headers
            .iter()
            .all(|(n, _)| !n.contains("impersonate_user")),
        "{:?}",
        e.headers
    );
    // Without a session the token is never attached (no acting as the
    // service account for anonymous users), and spoofed headers are gone.
    let e = h
        .get_with("open.test", "/", &[("impersonate-group", "system:masters")])
        .await
        .echo();
    assert!(e.all("authorization").is_empty());
    assert!(e.all("impersonate-group").is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn jwt_issuer_format_per_route_overrides_the_global_one_and_bad_values_deny_their_route() {
    let up = echo_http1("a").await;
    let to = format!("http://{}", up.authority());
    let identity = |host: &str| identity_route(host, &to);
    let h = Harness::start(&ConfigFile {
        jwt_issuer_format: Some("uri".into()),
        ..config([
            identity("global.test"),
            RouteConfig {
                jwt_issuer_format: Some("host".into()),
                ..identity("host.test")
            },
        ])
    })
    .await;
    for (host, iss) in [
        ("global.test", "https://global.test/"),
        ("host.test", "host.test"),
    ] {
        let cookie = session_cookie(host, &session("alice@example.com", &[]));
        let e = h.get_with(host, "/", &[("cookie", &cookie)]).await.echo();
        let token = e.one("x-pomerium-jwt-assertion").unwrap().to_string();
        let claims = jetbridge::verify::decode_unverified(&token).unwrap().claims;
        assert_eq!(claims["iss"], iss, "{host}");
        assert_eq!(claims["aud"], host, "{host}");
    }
    // Unknown values are that route's problem, named in its diagnostic.
    let mut generated = jetbridge::translate::config::Generated::default();
    let snap = snapshot_with_diagnostics(
        &config([RouteConfig {
            jwt_issuer_format: Some("urn".into()),
            bearer_token_format: Some("idp_magic".into()),
            ..identity("bad.test")
        }]),
        &mut generated,
    );
    let d = &snap.diagnostics[0].message;
    assert!(
        d.contains("jwt_issuer_format \"urn\"") && d.contains("bearer_token_format \"idp_magic\""),
        "{d}"
    );
    assert!(matches!(snap.routes[0].access, Access::Invalid(_)));
}

/// An HTTP/1.1 upstream on loopback that answers its `name` to every
/// request, with the status `status_for(path)` gives.
async fn named_upstream<F, Fut>(name: &'static str, status_for: F) -> std::net::SocketAddr
where
    F: Fn(String) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = u16> + Send,
{
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let status_for = status_for.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let status = status_for(req.uri().path().to_string());
                        async move {
                            let mut r = http::Response::new(http_body_util::Full::new(
                                bytes::Bytes::from(name),
                            ));
                            *r.status_mut() = http::StatusCode::from_u16(status.await).unwrap();
                            Ok::<_, std::convert::Infallible>(r)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// An upstream that answers its `name` to everything but `/healthz`, which
/// is 200 while `sick` is false and 503 while it is true.
async fn health_upstream(
    name: &'static str,
) -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicBool>,
) {
    use std::sync::atomic::{AtomicBool, Ordering};
    let sick = std::sync::Arc::new(AtomicBool::new(false));
    let flag = sick.clone();
    let addr = named_upstream(name, move |path| {
        let failing = path == "/healthz" && flag.load(Ordering::SeqCst);
        async move { if failing { 503 } else { 200 } }
    })
    .await;
    (addr, sick)
}

/// What `host` answers to 12 requests: the names of the targets that served
/// them (200), and the status of any other answer.
async fn answers(h: &Harness, host: &str) -> std::collections::BTreeSet<String> {
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..12 {
        let r = h.get(host, "/").await;
        seen.insert(match r.status {
            200 => r.text(),
            other => other.to_string(),
        });
    }
    seen
}

/// Waits up to 10 s until `host` answers exactly `want` (see [`answers`]).
async fn until_answers(h: &Harness, host: &str, want: &[&str]) {
    let want: std::collections::BTreeSet<String> = want.iter().map(|s| s.to_string()).collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let got = answers(h, host).await;
        if got == want {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{host}: {got:?}, want {want:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn targets_failing_active_health_checks_are_tried_last_and_come_back() {
    use std::sync::atomic::Ordering;
    let (a, _) = health_upstream("a").await;
    let (b, b_sick) = health_upstream("b").await;
    let (c, _) = health_upstream("c").await;
    let (d, d_sick) = health_upstream("d").await;
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02x}")).collect::<String>();
    let http_check = "[{timeout: 1s, interval: 200ms, unhealthy_threshold: 2, healthy_threshold: 2, \
                      http_health_check: {path: /healthz, expected_statuses: [{start: 200, end: 300}]}}]";
    let tcp_check = format!(
        "[{{timeout: 1s, interval: 200ms, tcp_health_check: {{send: {{text: {}}}, receive: [{{text: {}}}]}}}}]",
        hex("GET /healthz HTTP/1.1\r\nHost: check\r\nConnection: close\r\n\r\n"),
        hex("HTTP/1.1 200"),
    );
    let h = Harness::start(&config([
        RouteConfig {
            to: http_targets(&[a, b]),
            health_checks: yaml_value(http_check),
            ..public_route("http.test", "")
        },
        RouteConfig {
            to: http_targets(&[c, d]),
            health_checks: yaml_value(&tcp_check),
            ..public_route("tcp.test", "")
        },
    ]))
    .await;
    // Which targets answer 12 requests in a row.
    until_answers(&h, "http.test", &["a", "b"]).await;
    until_answers(&h, "tcp.test", &["c", "d"]).await;
    // b and d fail their checks: all requests go to the others...
    b_sick.store(true, Ordering::SeqCst);
    d_sick.store(true, Ordering::SeqCst);
    until_answers(&h, "http.test", &["a"]).await;
    until_answers(&h, "tcp.test", &["c"]).await;
    // ...and they stay out while failing.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(answers(&h, "http.test").await, ["a".to_string()].into());
    // Passing again, they are back.
    b_sick.store(false, Ordering::SeqCst);
    d_sick.store(false, Ordering::SeqCst);
    until_answers(&h, "http.test", &["a", "b"]).await;
    until_answers(&h, "tcp.test", &["c", "d"]).await;
}

#[test]
fn route_portal_fields_are_kept_with_the_route() {
    let mut generated = jetbridge::translate::config::Generated::default();
    let snap = snapshot_with_diagnostics(
        &config([RouteConfig {
            name: Some("Payroll".into()),
            description: Some("Pay slips".into()),
            logo_url: Some("https://cdn.example.com/payroll.svg".into()),
            ..public_route("p.test", "http://127.0.0.1:9")
        }]),
        &mut generated,
    );
    assert!(snap.diagnostics.is_empty(), "{:?}", snap.diagnostics);
    let info = &snap.routes[0].info;
    assert_eq!(
        (
            info.name.as_str(),
            info.description.as_str(),
            info.logo_url.as_str()
        ),
        (
            "Payroll",
            "Pay slips",
            "https://cdn.example.com/payroll.svg"
        )
    );
}

#[test]
fn bad_health_checks_deny_only_their_route() {
    let mut generated = jetbridge::translate::config::Generated::default();
    let snap = snapshot_with_diagnostics(
        &config([
            RouteConfig {
                health_checks: yaml_value("[{timeout: 1s, interval: 1s, grpc_health_check: {}}]"),
                ..public_route("bad.test", "http://127.0.0.1:9")
            },
            RouteConfig {
                health_checks: yaml_value(
                    "[{timeout: 1s, interval: 5s, http_health_check: {path: /}}]",
                ),
                ..public_route("good.test", "http://127.0.0.1:9")
            },
        ]),
        &mut generated,
    );
    assert_eq!(snap.diagnostics.len(), 1, "{:?}", snap.diagnostics);
    assert!(
        snap.diagnostics[0]
            .message
            .contains("grpc_health_check is not supported")
    );
    assert!(matches!(snap.routes[0].access, Access::Invalid(_)));
    assert!(!matches!(snap.routes[1].access, Access::Invalid(_)));
    assert_eq!(snap.routes[1].health_checks.len(), 1);
}

/// An upstream that answers `status` and its `name` to everything; `/slow`
/// first waits 1.5 s.
async fn fixed_upstream(name: &'static str, status: u16) -> std::net::SocketAddr {
    named_upstream(name, move |path| async move {
        if path == "/slow" {
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
        }
        status
    })
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn targets_failing_requests_in_a_row_are_ejected_for_a_while_within_the_percentage() {
    let good = fixed_upstream("good", 200).await;
    let bad = fixed_upstream("bad", 500).await;
    let (bad1, bad2) = (
        fixed_upstream("bad1", 503).await,
        fixed_upstream("bad2", 503).await,
    );
    let ejecting = |host: &str, targets: [std::net::SocketAddr; 2], pct: u32| RouteConfig {
        to: http_targets(&targets),
        outlier_detection: Some(serde_json::json!({
            "consecutive_5xx": 3,
            "base_ejection_time": "2s",
            "max_ejection_percent": pct,
        })),
        ..public_route(host, "")
    };
    let h = Harness::start(&config([
        ejecting("od.test", [good, bad], 50),
        ejecting("one.test", [bad1, bad2], 10),
        ejecting("all.test", [bad1, bad2], 100),
    ]))
    .await;
    let names = |host: &'static str, n: usize| {
        let h = &h;
        async move {
            let mut seen = Vec::new();
            for _ in 0..n {
                seen.push(h.get(host, "/").await.text());
            }
            seen
        }
    };
    // `bad` answers 500 until its third in a row, then is ejected: the next
    // requests all go to `good`.
    let warm = names("od.test", 8).await;
    assert!(warm.contains(&"bad".to_string()), "{warm:?}");
    let ejected = names("od.test", 10).await;
    assert!(ejected.iter().all(|n| n == "good"), "{ejected:?}");
    // After the ejection time it is tried again.
    tokio::time::sleep(std::time::Duration::from_millis(2300)).await;
    let back = names("od.test", 6).await;
    assert!(back.contains(&"bad".to_string()), "{back:?}");
    // With both targets failing, 10 % still lets one be ejected, never both;
    // 100 % lets both go (and both are still tried, last).
    names("one.test", 12).await;
    let one: std::collections::BTreeSet<String> = names("one.test", 8).await.into_iter().collect();
    assert_eq!(one.len(), 1, "{one:?}");
    names("all.test", 12).await;
    let all: std::collections::BTreeSet<String> = names("all.test", 8).await.into_iter().collect();
    assert_eq!(all.len(), 2, "{all:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_circuit_breaker_refuses_requests_beyond_its_limit_at_once() {
    let up = fixed_upstream("held", 200).await;
    let h = Harness::start(&config([RouteConfig {
        circuit_breaker_thresholds: yaml_value("{max_requests: 2, max_pending_requests: 0}"),
        ..public_route("cb.test", &format!("http://{up}"))
    }]))
    .await;
    let started = std::time::Instant::now();
    let mut calls = Vec::new();
    for _ in 0..6 {
        calls.push(h.get("cb.test", "/slow"));
    }
    let results = futures_util::future::join_all(calls).await;
    let ok = results.iter().filter(|r| r.status == 200).count();
    let refused: Vec<_> = results.iter().filter(|r| r.status == 503).collect();
    assert_eq!(
        (ok, refused.len()),
        (2, 4),
        "{:?}",
        results.iter().map(|r| r.status).collect::<Vec<_>>()
    );
    assert!(
        refused
            .iter()
            .all(|r| r.text().contains("too many requests in flight"))
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
    // Once they are done, the route serves again.
    assert_eq!(h.get("cb.test", "/").await.status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn healthy_panic_threshold_decides_when_failing_targets_are_used() {
    use std::sync::atomic::Ordering;
    let (a, a_sick) = health_upstream("a").await;
    let (b, b_sick) = health_upstream("b").await;
    let check = "[{timeout: 1s, interval: 200ms, http_health_check: {path: /healthz}}]";
    let checked = |host: &str, panic: u32| RouteConfig {
        to: http_targets(&[a, b]),
        health_checks: yaml_value(check),
        healthy_panic_threshold: Some(panic),
        ..public_route(host, "")
    };
    let h = Harness::start(&config([
        checked("never.test", 0),
        checked("always.test", 100),
    ]))
    .await;
    b_sick.store(true, Ordering::SeqCst);
    // 0: a failing target is never used; 100: below 100 % healthy, health is
    // ignored and both serve.
    until_answers(&h, "never.test", &["a"]).await;
    until_answers(&h, "always.test", &["a", "b"]).await;
    // Every target failing: 0 refuses (no healthy upstream), 100 serves.
    a_sick.store(true, Ordering::SeqCst);
    until_answers(&h, "never.test", &["503"]).await;
    until_answers(&h, "always.test", &["a", "b"]).await;
}

/// A config file using every route key jetbridge takes, spread over routes
/// where keys exclude each other, loads with no diagnostic; a key added to
/// `RouteOptions` without a place here fails this test.
#[test]
fn a_config_using_every_route_key_loads_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let ca = TestCa::new("every-key CA");
    let client = ca.client("jetbridge-proxy");
    let file = |name: &str, body: &str| {
        let p = dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    };
    let (ca_file, cert_file, key_file, token_file) = (
        file("ca.pem", &ca.pem),
        file("client.pem", &client.cert_pem),
        file("client.key", &client.key_pem),
        file("token", "sa-token\n"),
    );
    let health = "[{timeout: 1s, interval: 30s, http_health_check: {path: /healthz}}]".to_string();
    // Each route: (host, to, keys as YAML lines).
    type Keys<'a> = Vec<(&'a str, String)>;
    let routes: Vec<(&str, &str, Keys)> = vec![
        (
            "one.test",
            "https://10.0.0.1:8443",
            vec![
                ("name", "One".into()),
                ("description", "the first".into()),
                ("logo_url", "https://cdn.example.com/one.svg".into()),
                ("pass_identity_headers", "true".into()),
                (
                    "policy",
                    "{allow: {or: [{email: {is: a@example.com}}]}}".into(),
                ),
                ("allowed_users", "[b@example.com]".into()),
                ("allowed_domains", "[example.com]".into()),
                ("allowed_idp_claims", "{team: [blue]}".into()),
                ("allow_websockets", "true".into()),
                ("allow_spdy", "true".into()),
                ("allow_upgrades", "[connect-udp]".into()),
                ("cors_allow_preflight", "true".into()),
                ("preserve_host_header", "true".into()),
                (
                    "set_request_headers",
                    "{X-A: one, X-Token: 'Bearer ${pomerium.access_token}'}".into(),
                ),
                ("remove_request_headers", "[X-Drop]".into()),
                ("timeout", "7s".into()),
                ("idle_timeout", "9m".into()),
                ("tls_custom_ca_file", ca_file.clone()),
                ("tls_server_name", "backend.internal".into()),
                ("tls_client_cert_file", cert_file.clone()),
                ("tls_client_key_file", key_file.clone()),
                ("tls_downstream_client_ca_file", ca_file.clone()),
                ("jwt_claims_headers", "{X-Email: email}".into()),
                ("prefix_rewrite", "/v2".into()),
                ("host_rewrite", "internal.example".into()),
                ("load_balancing_policy", "least_request".into()),
                ("health_checks", health.clone()),
                ("outlier_detection", "{consecutive_5xx: 3}".into()),
                ("circuit_breaker_thresholds", "{max_requests: 100}".into()),
                ("healthy_panic_threshold", "30".into()),
                ("jwt_issuer_format", "uri".into()),
                ("bearer_token_format", "idp_access_token".into()),
                ("jwt_groups_filter", "[admins]".into()),
                ("kubernetes_service_account_token_file", token_file.clone()),
                ("set_response_headers", "{X-Frame-Options: DENY}".into()),
                (
                    "rewrite_response_headers",
                    "[{header: Location, prefix: 'http://x/', value: 'https://y/'}]".into(),
                ),
            ],
        ),
        (
            "two.test",
            "http://10.0.0.2:8080",
            vec![
                ("allow_public_unauthenticated_access", "true".into()),
                ("tls_skip_verify", "true".into()),
                ("tls_custom_ca", ca.pem_b64()),
                ("tls_client_cert", client.cert_b64()),
                ("tls_client_key", client.key_b64()),
                ("tls_downstream_client_ca", ca.pem_b64()),
                ("regex_rewrite_pattern", "'^/(.*)$'".into()),
                ("regex_rewrite_substitution", "'/x/\\1'".into()),
                ("host_rewrite_header", "X-Host".into()),
                ("h2c_upstream", "true".into()),
            ],
        ),
        (
            "three.test",
            "http://10.0.0.3:8080",
            vec![
                ("allow_any_authenticated_user", "true".into()),
                ("host_path_regex_rewrite_pattern", "'^/([a-z]+)'".into()),
                (
                    "host_path_regex_rewrite_substitution",
                    "'\\1.example'".into(),
                ),
                ("kubernetes_service_account_token", "sa-token".into()),
                ("add_request_headers", "{X-Tag: added}".into()),
                ("mirror_to", "[http://10.0.0.9:8080]".into()),
                ("add_response_headers", "{X-Served-By: jetbridge}".into()),
                (
                    "redirect",
                    "{https_redirect: true, prefix_rewrite: /v2, response_code: 302}".into(),
                ),
            ],
        ),
        (
            "",
            "http://10.0.0.4:8080",
            vec![
                ("subtle_allow_empty_host", "true".into()),
                ("depends_on", "[one.test, 'https://two.test/']".into()),
                (
                    "idp_access_token_allowed_audiences",
                    "[https://api.example.com/]".into(),
                ),
                ("idp_client_id", "team-app".into()),
                ("idp_client_secret", "team-secret".into()),
            ],
        ),
    ];
    let used: std::collections::BTreeSet<&str> = routes
        .iter()
        .flat_map(|(_, _, kv)| kv.iter().map(|(k, _)| *k))
        .collect();
    let all: std::collections::BTreeSet<&str> = jetbridge::settings::RouteOptions::KEYS
        .iter()
        .copied()
        .collect();
    assert_eq!(
        all.difference(&used).collect::<Vec<_>>(),
        Vec::<&&str>::new(),
        "route keys this test does not use yet"
    );
    let routes = routes
        .iter()
        .map(|(host, to, kv)| route_from_keys(host, to, kv.iter().map(|(k, v)| (k, v))));
    let mut generated = jetbridge::translate::config::Generated::default();
    let snap = snapshot_with_diagnostics(
        &ConfigFile {
            bearer_token_format: Some("default".into()),
            authenticate_service_url: Some("https://auth.example.com".into()),
            idp_provider_url: Some("https://idp.example.com".into()),
            idp_client_id: Some("global".into()),
            idp_client_secret: Some("global-secret".into()),
            ..config(routes)
        },
        &mut generated,
    );
    assert!(snap.diagnostics.is_empty(), "{:#?}", snap.diagnostics);
    assert_eq!(snap.routes.len(), 4);
    assert!(
        snap.routes
            .iter()
            .all(|r| !matches!(r.access, Access::Invalid(_)))
    );
}

/// Pomerium's `subtle_allow_empty_host`: a route without a host serves every
/// host no other route names (the named hosts keep their own routes), never
/// starts a sign-in for such a host (any client can name any host there), and
/// is refused without the key.
#[tokio::test]
async fn a_route_without_a_host_serves_every_host_no_route_names_and_never_signs_in() {
    let (named, any) = (echo_http1("named").await, echo_http1("any").await);
    let any_route = |from: &str| RouteConfig {
        from: from.to_string(),
        to: vec![format!("http://{}", any.authority())],
        subtle_allow_empty_host: true,
        ..Default::default()
    };
    for (round, from) in ["https://", "https://*"].into_iter().enumerate() {
        let h = Harness::start(&config([
            public_route("named.test", &format!("http://{}", named.authority())),
            RouteConfig {
                prefix: Some("/private".into()),
                allow_any_authenticated_user: true,
                ..any_route(from)
            },
            RouteConfig {
                allow_public_unauthenticated_access: true,
                ..any_route(from)
            },
        ]))
        .await;
        for (host, want) in [
            ("named.test", "named"),
            ("random.test", "any"),
            ("other.example", "any"),
            ("x.named.test", "any"),
            ("NAMED.test", "named"),
        ] {
            let r = h.get(host, "/page").await;
            assert_eq!(r.status, 200, "{from} {host}: {}", r.text());
            assert_eq!(r.echo().server, want, "{from} {host}");
        }
        // Sign-in would hand a session to whatever host the client named.
        for accept in ["text/html", "application/json"] {
            let r = h
                .get_with("random.test", "/private/x", &[("accept", accept)])
                .await;
            assert_eq!(r.status, 403, "{from} {accept}: {}", r.text());
            assert!(
                r.text().contains("sign-in is not available on this host"),
                "{}",
                r.text()
            );
            assert_eq!(r.header("location"), None);
        }
        // The refused requests never reached the upstream.
        assert_eq!(any.requests(), 3 * (round + 1), "{from}");
    }

    // Without the key, a route without a host is refused and says how.
    for from in ["https://", "https://*"] {
        let mut generated = jetbridge::translate::config::Generated::default();
        let snap = snapshot_with_diagnostics(
            &config([RouteConfig {
                subtle_allow_empty_host: false,
                ..any_route(from)
            }]),
            &mut generated,
        );
        assert!(snap.routes.is_empty(), "{from}");
        let d = format!("{:?}", snap.diagnostics);
        assert!(d.contains("subtle_allow_empty_host: true"), "{from}: {d}");
    }
}

/// `depends_on` entries name one host each; anything else denies the route
/// and says which entry.
#[test]
fn bad_depends_on_entries_deny_only_their_route() {
    for bad in [
        "https://a.test/path",
        "http://a.test",
        "*.a.test",
        "a test",
        "ftp://a.test",
    ] {
        let yaml = config([
            RouteConfig {
                depends_on: strings(&["b.test", "https://c.test:8443"]),
                ..public_route("good.test", "http://127.0.0.1:1")
            },
            RouteConfig {
                depends_on: strings(&[bad]),
                ..public_route("bad.test", "http://127.0.0.1:1")
            },
        ]);
        let mut generated = jetbridge::translate::config::Generated::default();
        let snap = snapshot_with_diagnostics(&yaml, &mut generated);
        let by_host = |h: &str| {
            snap.routes
                .iter()
                .find(|r| format!("{:?}", r.host).contains(h))
                .unwrap()
        };
        assert_eq!(by_host("good.test").depends_on, ["b.test", "c.test"]);
        match &by_host("bad.test").access {
            Access::Invalid(m) => {
                assert!(m.contains("depends_on") && m.contains(bad), "{bad}: {m}")
            }
            other => panic!("{bad}: {other:?}"),
        }
    }
}

/// Pomerium's `identity_provider_secret` annotation: a Secret's `client_id`
/// and `client_secret` become the route's own OAuth client at the global
/// identity provider (the same as `idp_client_id` / `idp_client_secret`);
/// a missing key, one of the pair alone, or no global provider denies only
/// that route and says why.
#[test]
fn identity_provider_secret_gives_the_route_its_own_client() {
    let mut global = jetbridge::translate::GlobalInputs::for_test();
    global.auth.idp = Some(jetbridge::model::IdpConfig {
        provider: "oidc".into(),
        issuer_url: "https://idp.example.com".into(),
        client_id: "global".into(),
        client_secret: "global-secret".into(),
        scopes: vec!["openid".into()],
        groups_claim: "groups".into(),
    });
    let build = |annotations: &[(&str, &str)],
                 data: Option<serde_json::Value>,
                 global: &jetbridge::translate::GlobalInputs| {
        let secrets = data.map(|d| k8s_secret("idp", "Opaque", d));
        annotated_snapshot(annotations, secrets.into_iter().collect(), global)
    };
    let ok = serde_json::json!({"client_id": b64("team-app"), "client_secret": b64("s3cret")});
    let snap = build(
        &[("identity_provider_secret", "idp")],
        Some(ok.clone()),
        &global,
    );
    let idp = snap.routes[0]
        .idp
        .as_ref()
        .expect("the route has its own client");
    assert_eq!(idp.config.client_id, "team-app");
    assert_eq!(idp.config.client_secret, "s3cret");
    assert_eq!(idp.config.issuer_url, "https://idp.example.com");
    assert!(snap.auth.route_idps.contains_key(&idp.id));
    assert!(
        !format!("{:?}", snap.auth).contains("s3cret"),
        "the secret is never printed"
    );
    // The same as the route keys themselves.
    let keys = build(
        &[
            ("idp_client_id", "team-app"),
            ("idp_client_secret", "s3cret"),
        ],
        None,
        &global,
    );
    assert_eq!(keys.routes[0].idp, snap.routes[0].idp);

    let no_global = jetbridge::translate::GlobalInputs::for_test();
    for (annotations, data, g, needle) in [
        (
            vec![("identity_provider_secret", "idp")],
            Some(serde_json::json!({"client_id": b64("team-app")})),
            &global,
            "has no key \"client_secret\"",
        ),
        (
            vec![("identity_provider_secret", "idp")],
            None,
            &global,
            "not found",
        ),
        (
            vec![("idp_client_id", "team-app")],
            None,
            &global,
            "go together",
        ),
        (
            vec![("identity_provider_secret", "idp")],
            Some(ok.clone()),
            &no_global,
            "global identity provider",
        ),
    ] {
        let snap = build(&annotations, data, g);
        match &snap.routes[0].access {
            Access::Invalid(m) => assert!(m.contains(needle), "{needle}: {m}"),
            other => panic!("{needle}: {other:?}"),
        }
        assert!(snap.routes[0].idp.is_none());
    }
}
