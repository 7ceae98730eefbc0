use super::*;
use proptest::prelude::*;

#[test]
fn canonical_forms_table() {
    let cases: &[(&str, &str)] = &[
        // unchanged
        ("/", "/"),
        ("/foo", "/foo"),
        ("/foo/", "/foo/"),
        ("/Foo/BAR", "/Foo/BAR"),
        ("/a;b=c/d:e@f!$&'()*+,", "/a;b=c/d:e@f!$&'()*+,"),
        // unreserved escapes are decoded, in either hex case
        ("/%41%62%63", "/Abc"),
        ("/%7E%7euser", "/~~user"),
        ("/a%2Db%5Fc", "/a-b_c"),
        ("/%30%39", "/09"),
        // other escapes are kept, hex upper-cased
        ("/caf%c3%a9", "/caf%C3%A9"),
        ("/a%20b", "/a%20b"),
        ("/100%25", "/100%25"),
        ("/%3f%23", "/%3F%23"),
        ("/%0a", "/%0A"),
        // characters not allowed raw are encoded
        ("/a b", "/a%20b"),
        ("/café", "/caf%C3%A9"),
        ("/a\"<>`{}|^[]#", "/a%22%3C%3E%60%7B%7D%7C%5E%5B%5D%23"),
        // dot segments
        ("/.", "/"),
        ("/./", "/"),
        ("/a/.", "/a/"),
        ("/a/./b", "/a/b"),
        ("/a/b/..", "/a/"),
        ("/a/b/../", "/a/"),
        ("/a/b/../c", "/a/c"),
        ("/a/..", "/"),
        ("/a/b/../../c/./d/", "/c/d/"),
        ("/a/...", "/a/..."),
        ("/a/..b/.c", "/a/..b/.c"),
        // encoded dots are dots
        ("/a/%2e/b", "/a/b"),
        ("/a/b/%2E%2e/c", "/a/c"),
        ("/a/b/.%2E", "/a/"),
        ("/a/%2e%2e%2e", "/a/..."),
        // slashes are merged
        ("//", "/"),
        ("//a///b//", "/a/b/"),
        ("/a//../b", "/b"),
        ("/a/.//./b", "/a/b"),
        // path parameters on ordinary segments are kept
        ("/a;x/b", "/a;x/b"),
        ("/a;/b", "/a;/b"),
    ];
    for (raw, want) in cases {
        assert_eq!(
            normalize_path(raw).map(|p| p.path),
            Ok((*want).to_owned()),
            "normalize_path({raw:?})"
        );
    }
}

#[test]
fn rejected_paths_table() {
    use PathError::*;
    let cases: &[(&str, PathError)] = &[
        ("", NotAbsolute),
        ("*", NotAbsolute),
        ("foo/bar", NotAbsolute),
        ("%2Ffoo", NotAbsolute),
        ("http://h/a", NotAbsolute),
        ("/a%2Fb", EncodedSlash),
        ("/a%2fb", EncodedSlash),
        ("/a%5Cb", EncodedBackslash),
        ("/a%5cb", EncodedBackslash),
        ("/a%00", EncodedNul),
        ("/a\\b", Backslash),
        ("/a\0b", ControlChar),
        ("/a\nb", ControlChar),
        ("/a\rb", ControlChar),
        ("/a\tb", ControlChar),
        ("/a\x7fb", ControlChar),
        ("/%zz", InvalidEscape),
        ("/%4", InvalidEscape),
        ("/%", InvalidEscape),
        ("/%g1", InvalidEscape),
        ("/a%", InvalidEscape),
        ("/..", EscapesRoot),
        ("/../a", EscapesRoot),
        ("/a/../..", EscapesRoot),
        ("/a/../../b", EscapesRoot),
        ("/%2e%2e/etc/passwd", EscapesRoot),
        ("/a/%2E%2E/%2e%2e", EscapesRoot),
        ("/a/..;/b", DotSegmentWithParams),
        ("/a/.;x/b", DotSegmentWithParams),
        ("/a/%2e%2e;jsessionid=1/b", DotSegmentWithParams),
        ("/;/a", EmptySegmentWithParams),
        ("/;x=1/a", EmptySegmentWithParams),
        ("/a/;", EmptySegmentWithParams),
        ("/a/;/../b", EmptySegmentWithParams),
    ];
    for (raw, want) in cases {
        assert_eq!(
            normalize_path(raw),
            Err(want.clone()),
            "normalize_path({raw:?})"
        );
    }
}

#[test]
fn encoded_escape_is_not_decoded_twice() {
    // %252F is a literal "%2F" text, not a slash.
    assert_eq!(normalize_path("/a%252Fb").unwrap().path, "/a%252Fb");
    assert_eq!(
        normalize_path("/a%252e%252e/b").unwrap().path,
        "/a%252e%252e/b"
    );
}

#[test]
fn target_splits_at_first_question_mark() {
    assert_eq!(split_target("/a/b"), ("/a/b", None));
    assert_eq!(split_target("/a?x=1&y=2"), ("/a", Some("x=1&y=2")));
    assert_eq!(split_target("/a?"), ("/a", Some("")));
    assert_eq!(split_target("/a?x=?y"), ("/a", Some("x=?y")));
    assert_eq!(split_target("?q"), ("", Some("q")));
}

#[test]
fn error_messages_are_short_and_human() {
    assert_eq!(
        PathError::EncodedSlash.to_string(),
        "encoded slash (%2F) in request path"
    );
    assert_eq!(
        PathError::EscapesRoot.to_string(),
        "request path escapes above the root"
    );
}

proptest! {
    #[test]
    fn normalize_path_never_panics_and_is_idempotent(raw in any::<String>()) {
        if let Ok(once) = normalize_path(&raw) {
            let twice = normalize_path(&once.path);
            prop_assert_eq!(twice.as_ref(), Ok(&once));
        }
    }

    #[test]
    fn path_shaped_input_is_idempotent(
        raw in "/([a-zA-Z0-9._~;=/ -]|%[0-9a-fA-F]{2}|\\.\\.|%2[eE]){0,24}"
    ) {
        if let Ok(once) = normalize_path(&raw) {
            prop_assert!(once.path.starts_with('/'));
            prop_assert!(!once.path.contains("//"));
            prop_assert!(once.path.bytes().all(|b| b.is_ascii_graphic()));
            prop_assert_eq!(normalize_path(&once.path), Ok(once.clone()));
        }
    }
}
