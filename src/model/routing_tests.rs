use super::*;
use crate::model::pathnorm::split_target;
use proptest::prelude::*;

enum Kind {
    Exact,
    Prefix,
}

fn key(host: &str, kind: Kind, path: &str, created: i64, name: &str) -> RouteKey {
    RouteKey {
        host: HostMatch::parse(host).unwrap(),
        path: match kind {
            Kind::Exact => PathMatch::exact(path).unwrap(),
            Kind::Prefix => PathMatch::prefix(path).unwrap(),
        },
        created,
        name: name.to_owned(),
        conditions: None,
        grpc: None,
        hostname: None,
    }
}

/// Routes the way the proxy does: normalise the authority and the target,
/// then look up; returns the winning route's name.
fn route<'k>(
    keys: &'k [RouteKey],
    table: &RouteTable,
    authority: &str,
    target: &str,
) -> Option<&'k str> {
    let host = normalize_host(authority)?;
    let path = normalize_path(split_target(target).0).ok()?;
    table
        .lookup(&host, &path.path)
        .map(|i| keys[i].name.as_str())
}

/// The rule sets of the ingress-controller conformance features
/// `host_rules.feature` and `path_rules.feature`, plus a catch-all host.
fn conformance_keys() -> Vec<RouteKey> {
    use Kind::*;
    vec![
        key("*.foo.com", Prefix, "/", 1, "wildcard-foo-com"),
        key("foo.bar.com", Prefix, "/", 1, "foo-bar-com"),
        key("exact-path-rules", Exact, "/foo", 1, "foo-exact"),
        key("prefix-path-rules", Prefix, "/foo", 1, "foo-prefix"),
        key(
            "prefix-path-rules",
            Prefix,
            "/aaa/bbb",
            1,
            "aaa-slash-bbb-prefix",
        ),
        key("prefix-path-rules", Prefix, "/aaa", 1, "aaa-prefix"),
        key("mixed-path-rules", Prefix, "/foo", 1, "mixed-foo-prefix"),
        key("mixed-path-rules", Exact, "/foo", 1, "mixed-foo-exact"),
        key(
            "trailing-slash-path-rules",
            Prefix,
            "/aaa/bbb/",
            1,
            "aaa-slash-bbb-slash-prefix",
        ),
        key(
            "trailing-slash-path-rules",
            Exact,
            "/foo/",
            1,
            "foo-slash-exact",
        ),
        key("catch-all", Prefix, "/", 1, "catch-all-slash"),
        key("catch-all", Exact, "/", 1, "catch-all-root-exact"),
    ]
}

#[test]
fn conformance_host_and_path_table() {
    let keys = conformance_keys();
    let table = RouteTable::build(&keys);
    let cases: &[(&str, &str, Option<&str>)] = &[
        // host_rules.feature
        ("foo.bar.com", "/", Some("foo-bar-com")),
        ("subdomain.bar.com", "/", None),
        ("bar.foo.com", "/", Some("wildcard-foo-com")),
        ("baz.bar.foo.com", "/", None),
        ("foo.com", "/", None),
        // host case, ports and a trailing dot do not matter
        ("FOO.Bar.COM", "/", Some("foo-bar-com")),
        ("foo.bar.com:8443", "/x", Some("foo-bar-com")),
        ("foo.bar.com.", "/x", Some("foo-bar-com")),
        ("foo.bar.com.:443", "/x", Some("foo-bar-com")),
        ("BAR.foo.com:80", "/x", Some("wildcard-foo-com")),
        // path_rules.feature: Exact
        ("exact-path-rules", "/foo", Some("foo-exact")),
        ("exact-path-rules", "/foo/", None),
        ("exact-path-rules", "/FOO", None),
        ("exact-path-rules", "/bar", None),
        ("exact-path-rules", "/foo?x=1", Some("foo-exact")),
        // path_rules.feature: Prefix
        ("prefix-path-rules", "/foo", Some("foo-prefix")),
        ("prefix-path-rules", "/foo/", Some("foo-prefix")),
        ("prefix-path-rules", "/FOO", None),
        (
            "prefix-path-rules",
            "/aaa/bbb",
            Some("aaa-slash-bbb-prefix"),
        ),
        (
            "prefix-path-rules",
            "/aaa/bbb/",
            Some("aaa-slash-bbb-prefix"),
        ),
        (
            "prefix-path-rules",
            "/aaa/bbb/ccc",
            Some("aaa-slash-bbb-prefix"),
        ),
        ("prefix-path-rules", "/aaa/ccc", Some("aaa-prefix")),
        ("prefix-path-rules", "/aaa/bbbccc", Some("aaa-prefix")),
        ("prefix-path-rules", "/aaaccc", None),
        ("prefix-path-rules", "/foobar", None),
        ("prefix-path-rules", "/", None),
        // path_rules.feature: Exact preferred over Prefix
        ("mixed-path-rules", "/foo", Some("mixed-foo-exact")),
        ("mixed-path-rules", "/foo/", Some("mixed-foo-prefix")),
        ("mixed-path-rules", "/foo/bar", Some("mixed-foo-prefix")),
        // path_rules.feature: trailing slashes in rules
        (
            "trailing-slash-path-rules",
            "/aaa/bbb",
            Some("aaa-slash-bbb-slash-prefix"),
        ),
        (
            "trailing-slash-path-rules",
            "/aaa/bbb/",
            Some("aaa-slash-bbb-slash-prefix"),
        ),
        (
            "trailing-slash-path-rules",
            "/foo/",
            Some("foo-slash-exact"),
        ),
        ("trailing-slash-path-rules", "/foo", None),
        // "/" prefix catches everything; Exact "/" still wins for "/"
        ("catch-all", "/", Some("catch-all-root-exact")),
        ("catch-all", "/anything/at/all", Some("catch-all-slash")),
        ("catch-all", "//", Some("catch-all-root-exact")),
        // matching happens on the normalised path
        (
            "prefix-path-rules",
            "/x/../aaa/./bbb//ccc",
            Some("aaa-slash-bbb-prefix"),
        ),
        ("prefix-path-rules", "/%61aa", Some("aaa-prefix")),
        ("exact-path-rules", "/f%6F%6f", Some("foo-exact")),
        ("prefix-path-rules", "/aaa%2Fbbb", None),
    ];
    for (authority, target, want) in cases {
        assert_eq!(
            route(&keys, &table, authority, target),
            *want,
            "{authority} {target}"
        );
    }
}

#[test]
fn exact_host_beats_wildcard_beats_any() {
    use Kind::*;
    let keys = vec![
        key("", Prefix, "/", 1, "any"),
        key("*.example.com", Prefix, "/", 1, "wildcard"),
        key("app.example.com", Prefix, "/", 1, "exact"),
    ];
    let table = RouteTable::build(&keys);
    assert_eq!(route(&keys, &table, "app.example.com", "/"), Some("exact"));
    assert_eq!(
        route(&keys, &table, "other.example.com", "/"),
        Some("wildcard")
    );
    assert_eq!(route(&keys, &table, "example.com", "/"), Some("any"));
    assert_eq!(route(&keys, &table, "a.b.example.com", "/"), Some("any"));
    assert_eq!(route(&keys, &table, "unrelated.org", "/"), Some("any"));
}

#[test]
fn path_miss_on_selected_host_does_not_fall_through() {
    use Kind::*;
    let keys = vec![
        key("", Prefix, "/", 1, "any"),
        key("*.example.com", Prefix, "/", 1, "wildcard"),
        key("*.example.com", Prefix, "/wild", 1, "wildcard-wild"),
        key("app.example.com", Prefix, "/api", 1, "exact-api"),
    ];
    let table = RouteTable::build(&keys);
    assert_eq!(
        route(&keys, &table, "app.example.com", "/api/v1"),
        Some("exact-api")
    );
    // The precise host has rules, so neither the wildcard nor the empty host
    // serves its other paths.
    assert_eq!(route(&keys, &table, "app.example.com", "/"), None);
    assert_eq!(route(&keys, &table, "app.example.com", "/wild"), None);

    let keys = vec![
        key("", Prefix, "/", 1, "any"),
        key("*.example.com", Exact, "/only", 1, "wildcard-only"),
    ];
    let table = RouteTable::build(&keys);
    assert_eq!(
        route(&keys, &table, "x.example.com", "/only"),
        Some("wildcard-only")
    );
    assert_eq!(route(&keys, &table, "x.example.com", "/other"), None);
}

#[test]
fn longest_prefix_wins_whatever_the_input_order() {
    use Kind::*;
    let keys = vec![
        key("h", Prefix, "/", 1, "root"),
        key("h", Prefix, "/a", 1, "a"),
        key("h", Prefix, "/a/b/c", 1, "abc"),
        key("h", Prefix, "/a/b", 1, "ab"),
    ];
    let table = RouteTable::build(&keys);
    assert_eq!(route(&keys, &table, "h", "/a/b/c/d"), Some("abc"));
    assert_eq!(route(&keys, &table, "h", "/a/b/cd"), Some("ab"));
    assert_eq!(route(&keys, &table, "h", "/a/bc"), Some("a"));
    assert_eq!(route(&keys, &table, "h", "/ab"), Some("root"));
}

#[test]
fn equal_rules_are_ordered_by_age_then_name() {
    use Kind::*;
    let keys = vec![
        key("h", Prefix, "/p", 20, "ns/a-newer"),
        key("h", Prefix, "/p/", 10, "ns/z-older"),
        key("h", Exact, "/e", 5, "ns/b"),
        key("h", Exact, "/e", 5, "ns/a"),
        key("h", Exact, "/e", 9, "ns/0-newest"),
    ];
    let table = RouteTable::build(&keys);
    // "/p/" and "/p" are the same prefix: the older route wins.
    assert_eq!(route(&keys, &table, "h", "/p/x"), Some("ns/z-older"));
    // Same age: name ascending.
    assert_eq!(route(&keys, &table, "h", "/e"), Some("ns/a"));
}

#[test]
fn fully_identical_keys_resolve_to_the_first_input() {
    use Kind::*;
    let keys = vec![
        key("h", Prefix, "/", 1, "same"),
        key("h", Prefix, "/", 1, "same"),
    ];
    assert_eq!(RouteTable::build(&keys).lookup("h", "/x"), Some(0));
}

fn mixed_keys() -> Vec<RouteKey> {
    use Kind::*;
    let mut keys = conformance_keys();
    keys.extend([
        key("", Prefix, "/", 3, "any-root"),
        key("", Prefix, "/foo", 3, "any-foo"),
        key("*.foo.com", Exact, "/x", 2, "wild-x-new"),
        key("*.foo.com", Exact, "/x", 1, "wild-x-old"),
        key(
            "prefix-path-rules",
            Prefix,
            "/aaa",
            1,
            "aaa-prefix-same-age-later-name",
        ),
        key("prefix-path-rules", Prefix, "/aaa/", 0, "aaa-prefix-oldest"),
        key("foo.bar.com", Prefix, "/deep/er/path", 7, "deep"),
        key("foo.bar.com", Exact, "/deep/er/path", 8, "deep-exact"),
    ]);
    keys
}

const PROBES: &[(&str, &str)] = &[
    ("foo.bar.com", "/"),
    ("foo.bar.com", "/deep/er/path"),
    ("foo.bar.com", "/deep/er/path/x"),
    ("bar.foo.com", "/x"),
    ("bar.foo.com", "/y"),
    ("prefix-path-rules", "/aaa/x"),
    ("prefix-path-rules", "/aaa/bbb"),
    ("mixed-path-rules", "/foo"),
    ("mixed-path-rules", "/foo/x"),
    ("nowhere.example", "/foo/bar"),
    ("nowhere.example", "/"),
    ("catch-all", "/"),
];

#[test]
fn shuffled_input_yields_the_same_routes() {
    let keys = mixed_keys();
    let table = RouteTable::build(&keys);
    let want: Vec<_> = PROBES
        .iter()
        .map(|(h, p)| route(&keys, &table, h, p))
        .collect();
    assert_eq!(want[1], Some("deep-exact"));
    assert_eq!(want[3], Some("wild-x-old"));
    assert_eq!(want[5], Some("aaa-prefix-oldest"));
    assert_eq!(want[9], Some("any-foo"));

    let indices: Vec<usize> = (0..keys.len()).collect();
    proptest!(|(order in Just(indices).prop_shuffle())| {
        let shuffled: Vec<RouteKey> = order.iter().map(|&i| keys[i].clone()).collect();
        let table = RouteTable::build(&shuffled);
        for ((h, p), want) in PROBES.iter().zip(&want) {
            prop_assert_eq!(route(&shuffled, &table, h, p), *want, "{} {}", h, p);
        }
    });
}

#[test]
fn host_known_tells_unknown_host_from_unknown_path() {
    use Kind::*;
    let keys = vec![
        key("app.example.com", Exact, "/a", 1, "a"),
        key("*.wild.example.com", Exact, "/a", 1, "w"),
        key("", Exact, "/a", 1, "any"),
    ];
    let table = RouteTable::build(&keys);
    assert!(table.host_known("app.example.com"));
    assert!(table.host_known("x.wild.example.com"));
    assert!(!table.host_known("wild.example.com"));
    assert!(!table.host_known("y.x.wild.example.com"));
    assert!(!table.host_known("other.example.com"));
    assert!(!table.host_known(".wild.example.com"));
    assert_eq!(table.lookup("app.example.com", "/b"), None);
}

#[test]
fn empty_table_routes_nothing() {
    let table = RouteTable::build(&[]);
    assert_eq!(table.lookup("example.com", "/"), None);
    assert!(!table.host_known("example.com"));
}

#[test]
fn rule_hosts_table() {
    let ok: &[(&str, HostMatch)] = &[
        ("", HostMatch::Any),
        ("foo.bar.com", HostMatch::Exact("foo.bar.com".into())),
        ("Foo.BAR.com", HostMatch::Exact("foo.bar.com".into())),
        ("foo.bar.com.", HostMatch::Exact("foo.bar.com".into())),
        ("localhost", HostMatch::Exact("localhost".into())),
        ("a-1.b2", HostMatch::Exact("a-1.b2".into())),
        ("*.foo.com", HostMatch::Wildcard("foo.com".into())),
        ("*.FOO.com.", HostMatch::Wildcard("foo.com".into())),
        ("*.com", HostMatch::Wildcard("com".into())),
    ];
    for (s, want) in ok {
        assert_eq!(HostMatch::parse(s).as_ref(), Ok(want), "{s:?}");
    }
    let bad: &[&str] = &[
        "*",
        "*.",
        "**.foo.com",
        "*foo.com",
        "foo.*.com",
        "foo.com.*",
        "*.*.foo.com",
        "foo.com:443",
        "https://foo.com",
        "foo.com/path",
        "user@foo.com",
        "foo..com",
        ".foo.com",
        "-foo.com",
        "foo-.com",
        "foo_bar.com",
        "foo bar.com",
        "föö.com",
        "[::1]",
    ];
    for s in bad {
        assert!(HostMatch::parse(s).is_err(), "{s:?} should be rejected");
    }
    let long_label = format!("{}.com", "a".repeat(64));
    assert!(HostMatch::parse(&long_label).is_err());
    let long_host = vec!["abcdefghi"; 26].join(".");
    assert_eq!(HostMatch::parse(&long_host), Err(RoutingError::HostTooLong));
}

#[test]
fn wildcard_covers_exactly_one_label() {
    let w = HostMatch::parse("*.foo.com").unwrap();
    assert!(w.matches("bar.foo.com"));
    assert!(!w.matches("foo.com"));
    assert!(!w.matches("baz.bar.foo.com"));
    assert!(!w.matches("barfoo.com"));
    assert!(!w.matches(".foo.com"));
}

#[test]
fn rule_paths_table() {
    let cases: &[(Result<PathMatch, RoutingError>, PathMatch)] = &[
        (PathMatch::prefix("/foo/"), PathMatch::Prefix("/foo".into())),
        (PathMatch::prefix("/foo"), PathMatch::Prefix("/foo".into())),
        (PathMatch::prefix("/"), PathMatch::Prefix("/".into())),
        (PathMatch::prefix("//"), PathMatch::Prefix("/".into())),
        (
            PathMatch::prefix("/a//b/./c/"),
            PathMatch::Prefix("/a/b/c".into()),
        ),
        (
            PathMatch::prefix("/%7euser"),
            PathMatch::Prefix("/~user".into()),
        ),
        (PathMatch::exact("/foo/"), PathMatch::Exact("/foo/".into())),
        (PathMatch::exact("/a b"), PathMatch::Exact("/a%20b".into())),
    ];
    for (got, want) in cases {
        assert_eq!(got.as_ref(), Ok(want));
    }
    assert_eq!(
        PathMatch::prefix("foo"),
        Err(RoutingError::PathNotAbsolute("foo".into()))
    );
    assert_eq!(
        PathMatch::exact(""),
        Err(RoutingError::PathNotAbsolute(String::new()))
    );
    assert!(matches!(
        PathMatch::prefix("/a%2Fb"),
        Err(RoutingError::BadPath {
            source: PathError::EncodedSlash,
            ..
        })
    ));
    assert!(matches!(
        PathMatch::exact("/.."),
        Err(RoutingError::BadPath {
            source: PathError::EscapesRoot,
            ..
        })
    ));
}

#[test]
fn request_hosts_table() {
    let cases: &[(&str, Option<&str>)] = &[
        ("example.com", Some("example.com")),
        ("Example.COM", Some("example.com")),
        ("example.com:8443", Some("example.com")),
        ("example.com:", Some("example.com")),
        ("example.com.", Some("example.com")),
        ("example.com.:443", Some("example.com")),
        ("under_score.example.com", Some("under_score.example.com")),
        ("10.0.0.1:80", Some("10.0.0.1")),
        ("[::1]", Some("[::1]")),
        ("[::1]:8443", Some("[::1]")),
        ("[2001:DB8:0:0::1]:443", Some("[2001:db8::1]")),
        ("", None),
        (".", None),
        (":443", None),
        ("example.com..", None),
        (".example.com", None),
        ("a..b", None),
        ("user@example.com", None),
        ("user:pw@example.com", None),
        ("example.com:http", None),
        ("example.com:65536", None),
        ("example.com:443:1", None),
        ("::1", None),
        ("[::1", None),
        ("[::1]x", None),
        ("[::1]:x", None),
        ("[not-ip]", None),
        ("[fe80::1%25eth0]", None),
        ("*.example.com", None),
        ("exa mple.com", None),
        ("exämple.com", None),
        ("example.com/path", None),
    ];
    for (authority, want) in cases {
        assert_eq!(normalize_host(authority).as_deref(), *want, "{authority:?}");
    }
}

#[test]
fn error_messages_name_the_bad_input() {
    let e = HostMatch::parse("foo.com:443").unwrap_err();
    assert_eq!(e.to_string(), "host must not have a port: \"foo.com:443\"");
    let e = PathMatch::prefix("/a/%2e%2e/..").unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid path \"/a/%2e%2e/..\": request path escapes above the root"
    );
}

proptest! {
    #[test]
    fn normalize_host_never_panics_and_is_idempotent(raw in any::<String>()) {
        if let Some(once) = normalize_host(&raw) {
            prop_assert_eq!(normalize_host(&once), Some(once.clone()));
        }
    }

    #[test]
    fn host_shaped_input_is_idempotent(raw in "(\\[[0-9a-fA-F:]{0,12}\\]|[a-zA-Z0-9_.*-]{0,20})(:[0-9]{0,6})?\\.?") {
        if let Some(once) = normalize_host(&raw) {
            prop_assert_eq!(normalize_host(&once), Some(once.clone()));
        }
    }

    #[test]
    fn rule_parsers_never_panic(raw in any::<String>()) {
        let _ = HostMatch::parse(&raw);
        let _ = PathMatch::exact(&raw);
        let _ = PathMatch::prefix(&raw);
    }

    #[test]
    fn prefix_rule_matches_its_own_subpaths(
        segs in proptest::collection::vec("[a-z]{1,4}", 0..5),
        extra in proptest::collection::vec("[a-z]{1,4}", 0..3),
    ) {
        let prefix = format!("/{}", segs.join("/"));
        let rule = PathMatch::prefix(&prefix).unwrap();
        prop_assert!(rule.matches(&prefix));
        let with_slash = if prefix == "/" { prefix.clone() } else { format!("{prefix}/") };
        prop_assert!(rule.matches(&with_slash));
        let sub = format!("{}/{}", prefix.trim_end_matches('/'), extra.join("/"));
        prop_assert!(rule.matches(&sub));
        if !segs.is_empty() {
            // Extending the last element is a different element.
            let longer = format!("{prefix}x");
            prop_assert!(!rule.matches(&longer));
        }
    }
}

/// A Gateway API wildcard key (one or more labels) for `*.suffix`.
fn deep(suffix: &str, name: &str) -> RouteKey {
    RouteKey {
        host: HostMatch::WildcardAny(suffix.into()),
        ..key("x.invalid", Kind::Prefix, "/", 0, name)
    }
}

#[test]
fn a_gateway_wildcard_covers_any_depth_and_yields_to_more_precise_hosts() {
    let keys = vec![
        deep("bar.com", "deep-bar"),
        key("*.bar.com", Kind::Prefix, "/", 0, "one-label-bar"),
        deep("foo.bar.com", "deep-foo-bar"),
        key("*.ingress.com", Kind::Prefix, "/", 0, "ingress"),
        key("exact.a.bar.com", Kind::Prefix, "/", 0, "exact"),
    ];
    let table = RouteTable::build(&keys);
    let cases = [
        // One label under bar.com: both wildcards match; the route order
        // (here the name) decides.
        ("x.bar.com", Some("deep-bar")),
        ("a.b.bar.com", Some("deep-bar")),
        ("a.b.c.bar.com", Some("deep-bar")),
        ("x.foo.bar.com", Some("deep-foo-bar")),
        ("a.x.foo.bar.com", Some("deep-foo-bar")),
        ("exact.a.bar.com", Some("exact")),
        ("bar.com", None),
        // An Ingress wildcard still covers one label only.
        ("x.ingress.com", Some("ingress")),
        ("a.x.ingress.com", None),
    ];
    for (host, want) in cases {
        assert_eq!(route(&keys, &table, host, "/"), want, "{host}");
        assert_eq!(table.host_known(host), want.is_some(), "{host}");
    }
}

#[test]
fn proxy_ports_are_in_range_distinct_and_stable_when_a_gateway_is_added() {
    let keys: Vec<(String, u16)> = (0..200)
        .map(|i| (format!("ns/gw-{i}"), if i % 2 == 0 { 80 } else { 443 }))
        .collect();
    let ports = allocate_proxy_ports(&keys);
    assert!(ports.iter().all(|p| GATEWAY_PROXY_PORTS.contains(p)));
    let distinct: HashSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), keys.len());
    // Every replica computes the same ports; a newer Gateway (later in the
    // order) never moves an older one's, even on a collision.
    assert_eq!(allocate_proxy_ports(&keys), ports);
    let mut more = keys.clone();
    more.extend((0..50).map(|i| (format!("other/new-{i}"), 8080)));
    assert_eq!(allocate_proxy_ports(&more)[..keys.len()], ports[..]);
    // The same key twice: the same port.
    let twice = vec![keys[0].clone(), keys[0].clone(), keys[1].clone()];
    let got = allocate_proxy_ports(&twice);
    assert_eq!(got[0], got[1]);
    assert_ne!(got[0], got[2]);
    // A key that hashes to a taken port gets the next free one; the first
    // keeps its own.
    let size = u64::from(GATEWAY_PROXY_PORTS.end - GATEWAY_PROXY_PORTS.start);
    let slot = |k: &(String, u16)| fnv1a(format!("{}:{}", k.0, k.1).as_bytes()) % size;
    let first = ("ns/a".to_string(), 80);
    let clash = (0..)
        .map(|i| (format!("ns/b{i}"), 80))
        .find(|k| slot(k) == slot(&first))
        .unwrap();
    let got = allocate_proxy_ports(&[first.clone(), clash.clone()]);
    assert_eq!(u64::from(got[0] - GATEWAY_PROXY_PORTS.start), slot(&first));
    assert_eq!(allocate_proxy_ports(&[first])[0], got[0]);
    assert_ne!(got[1], got[0]);
}

#[test]
fn listeners_union_keeps_every_gateway_port() {
    let port = |gw: &str, p: u16| GatewayPort {
        proxy_port: p,
        gateway: gw.into(),
        port: 80,
        tls: false,
    };
    let mut a = Listeners::PLAIN;
    a.gateway_ports.insert(port("ns/a", 20001));
    let mut b = Listeners::TLS;
    b.gateway_ports.insert(port("ns/b", 20002));
    let u = a.union(b);
    assert!(u.tls && u.plain);
    assert_eq!(u.gateway_ports.len(), 2);
}

#[test]
fn a_claimed_host_keeps_its_requests_from_wider_hosts_even_without_routes() {
    let keys = vec![
        deep("example.com", "wide"),
        key("", Kind::Prefix, "/", 0, "any"),
    ];
    let mut table = RouteTable::build(&keys);
    let before = |t: &RouteTable, h: &str| t.lookup(h, "/x").map(|i| keys[i].name.as_str());
    assert_eq!(before(&table, "a.b.foo.example.com"), Some("wide"));
    table.claim(&HostMatch::parse_gateway("*.foo.example.com").unwrap());
    table.claim(&HostMatch::parse_gateway("abc.example.com").unwrap());
    table.claim(&HostMatch::parse_gateway("other.org").unwrap());
    for host in [
        "bar.foo.example.com",
        "a.b.foo.example.com",
        "abc.example.com",
        "other.org",
    ] {
        assert_eq!(before(&table, host), None, "{host}");
    }
    assert_eq!(before(&table, "bar.example.com"), Some("wide"));
    assert_eq!(before(&table, "elsewhere.org"), Some("any"));
    // Claims alone are no routes.
    let mut empty = RouteTable::default();
    empty.claim(&HostMatch::parse_gateway("*.example.com").unwrap());
    assert!(empty.is_empty());
}
