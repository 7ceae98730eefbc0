use super::*;
use crate::translate::fixtures::one_route;

/// The one route of a config file with these options, as translated.
fn route(options: &str) -> Route {
    (*one_route(options).routes[0]).clone()
}

fn kinds(filters: &[RequestFilter]) -> Vec<&'static str> {
    filters
        .iter()
        .map(|f| match f {
            RequestFilter::RemoveHeaders(_) => "remove",
            RequestFilter::SetHeaders(_) => "set",
            RequestFilter::AppendHeaders(_) => "append",
            RequestFilter::Templates(_) => "templates",
            RequestFilter::Assertion(_) => "assertion",
            RequestFilter::Impersonate(_) => "impersonate",
        })
        .collect()
}

#[test]
fn a_plain_public_route_has_no_filters() {
    let r = route("    allow_public_unauthenticated_access: true\n");
    assert!(r.compiled.request.is_empty());
    // Only the default response headers (set_response_headers).
    assert!(
        r.compiled
            .response
            .iter()
            .all(|f| matches!(f, ResponseFilter::SetHeaders(_)))
    );
    assert!(r.compiled.trailers.also.is_empty());
}

#[test]
fn request_filters_keep_the_order_headers_were_always_applied_in() {
    let r = route(
        "    allow_any_authenticated_user: true\n    pass_identity_headers: true\n    \
         remove_request_headers: [x-drop]\n    set_request_headers:\n      x-set: v\n    \
         kubernetes_service_account_token: sa-token\n",
    );
    assert_eq!(
        kinds(&r.compiled.request),
        ["remove", "set", "assertion", "impersonate"]
    );
    let RequestFilter::Assertion(a) = &r.compiled.request[2] else {
        panic!("not an assertion filter");
    };
    assert!(a.identity_headers);
    assert_eq!(r.compiled.trailers.also, ["x-drop", "x-set"]);
}

#[test]
fn templates_without_the_assertion_need_no_minting() {
    let r = route(
        "    allow_any_authenticated_user: true\n    set_request_headers:\n      \
         x-token: \"${pomerium.access_token}\"\n",
    );
    assert_eq!(kinds(&r.compiled.request), ["templates"]);
    let r = route(
        "    allow_any_authenticated_user: true\n    set_request_headers:\n      \
         authorization: \"Bearer ${pomerium.jwt}\"\n",
    );
    let [RequestFilter::Assertion(a)] = r.compiled.request.as_slice() else {
        panic!("{:?}", r.compiled.request);
    };
    assert!(!a.identity_headers);
    assert_eq!(a.templates.len(), 1);
}

#[test]
fn response_filters_rewrite_then_set_and_an_empty_value_removes() {
    let r = route(
        "    allow_public_unauthenticated_access: true\n    rewrite_response_headers:\n      \
         - header: location\n        prefix: http://internal/\n        value: https://app.example.com/\n    \
         set_response_headers:\n      x-frame-options: DENY\n      server: \"\"\n",
    );
    let mut h = HeaderMap::new();
    h.insert("location", HeaderValue::from_static("http://internal/a"));
    h.insert("server", HeaderValue::from_static("upstream"));
    apply_response_filters(&r.compiled.response, &mut h);
    assert_eq!(h["location"], "https://app.example.com/a");
    assert_eq!(h["x-frame-options"], "DENY");
    assert!(!h.contains_key("server"));
}

#[test]
fn shared_tls_settings_are_one_cache_key_by_content() {
    let tls = UpstreamTls {
        server_name: Some("internal.example".into()),
        ..Default::default()
    };
    let (a, b) = (SharedTls::new(tls.clone()), SharedTls::new(tls));
    assert_eq!(a, b);
    let mut set = std::collections::HashSet::new();
    set.insert(a);
    assert!(set.contains(&b));
    assert_ne!(b, SharedTls::default());
}

#[test]
fn appended_headers_follow_set_ones_and_keep_what_was_sent() {
    let r = route(
        "    allow_public_unauthenticated_access: true\n    set_request_headers:\n      \
         x-set: v\n    add_request_headers:\n      x-add: added\n    \
         add_response_headers:\n      x-resp: added\n",
    );
    assert_eq!(kinds(&r.compiled.request), ["set", "append"]);
    assert_eq!(r.compiled.trailers.also, ["x-set", "x-add"]);
    let mut h = HeaderMap::new();
    h.insert("x-resp", HeaderValue::from_static("upstream"));
    apply_response_filters(&r.compiled.response, &mut h);
    let values: Vec<_> = h.get_all("x-resp").iter().collect();
    assert_eq!(values, ["upstream", "added"]);
}

#[test]
fn headers_the_proxy_owns_cannot_be_appended() {
    for (key, name) in [
        ("add_request_headers", "x-pomerium-jwt-assertion"),
        ("add_request_headers", "x-forwarded-for"),
        ("add_request_headers", "host"),
        ("add_request_headers", "content-length"),
        ("add_response_headers", "transfer-encoding"),
        ("add_response_headers", "x-pomerium-jwt-assertion"),
    ] {
        let t = crate::translate::fixtures::translate_one(&format!(
            "    allow_public_unauthenticated_access: true\n    {key}:\n      {name}: x\n"
        ));
        assert!(
            t.diagnostics.iter().any(|d| d.message.contains(name)),
            "{key} {name}: {:?}",
            t.diagnostics
        );
    }
}

#[test]
fn a_redirect_is_checked_part_by_part() {
    let bad = [
        ("scheme_redirect: ftp", "scheme_redirect"),
        (
            "https_redirect: true\n      scheme_redirect: http",
            "contradict",
        ),
        ("host_redirect: \"evil.example/x\"", "host_redirect"),
        ("host_redirect: \"*.example.org\"", "host_redirect"),
        ("port_redirect: 70000", "port_redirect"),
        ("path_redirect: \"no-slash\"", "path_redirect"),
        ("path_redirect: \"/a?b=c\"", "path_redirect"),
        (
            "prefix_rewrite: /a\n      path_redirect: /b",
            "mutually exclusive",
        ),
        ("response_code: 200", "response_code"),
    ];
    for (settings, want) in bad {
        let s = crate::translate::fixtures::translate_one(&format!(
            "    allow_public_unauthenticated_access: true\n    redirect:\n      {settings}\n"
        ));
        assert!(
            s.diagnostics.iter().any(|d| d.message.contains(want)),
            "{settings}: {:?}",
            s.diagnostics
        );
        assert!(s.routes[0].redirect.is_none(), "{settings}");
    }
}

#[test]
fn a_redirecting_route_needs_no_upstream_and_a_zero_timeout_is_none() {
    let yaml = "routes:\n  - from: https://app.example.com\n    \
                allow_public_unauthenticated_access: true\n    timeout: 0s\n    \
                redirect:\n      https_redirect: true\n";
    let cfg = crate::settings::ConfigFile::parse("t.yaml", yaml).unwrap();
    let inputs = crate::translate::config::inputs_from_parts(
        &cfg,
        &crate::translate::config::Files::new(),
        &mut Default::default(),
        &mut Vec::new(),
    )
    .unwrap();
    let s = crate::translate::translate(&inputs);
    assert!(s.diagnostics.is_empty(), "{:?}", s.diagnostics);
    assert!(s.routes[0].redirect.is_some());
    assert_eq!(s.routes[0].timeout, std::time::Duration::MAX);
}
