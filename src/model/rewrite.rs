//! What a route changes on the way through: the forwarded path and `Host`,
//! and the response headers. Routing and policy always see the client's
//! normalised path; only the forwarded request and the response change.
//!
//! Regular expressions use the `regex` crate (RE2 syntax, linear time, no
//! backtracking blow-ups) and are compiled once, when the route is built.
//! Substitutions take Envoy's `\1` group references (Pomerium's form) as well
//! as `$1` / `${name}`.

use http::{HeaderMap, HeaderName, HeaderValue};
use std::borrow::Cow;

/// A compiled regular expression; equal when the patterns are equal.
#[derive(Clone, Debug)]
pub struct Pattern(pub regex::Regex);

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl Eq for Pattern {}

impl std::hash::Hash for Pattern {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.0.as_str().hash(state)
    }
}

/// A regular expression that does not compile (or compiles too big).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid regular expression {pattern:?}: {reason}")]
pub struct PatternError {
    /// The pattern as written.
    pub pattern: String,
    /// What the `regex` crate said.
    pub reason: String,
}

impl Pattern {
    /// Compiles `pattern`, bounded in size so a hostile pattern cannot
    /// exhaust memory.
    pub fn new(pattern: &str) -> Result<Self, PatternError> {
        regex::RegexBuilder::new(pattern)
            .size_limit(1 << 20)
            .dfa_size_limit(1 << 20)
            .build()
            .map(Pattern)
            .map_err(|e| PatternError {
                pattern: pattern.to_string(),
                reason: e.to_string(),
            })
    }

    /// Compiles `pattern` to match a whole path (Envoy's `safe_regex` route
    /// match), not a part of it.
    pub fn whole(pattern: &str) -> Result<Self, PatternError> {
        // Checked as written first, so an error quotes the user's text.
        Self::new(pattern)?;
        Self::new(&format!("^(?:{pattern})$"))
    }

    /// Every match replaced by `substitution` (already in `regex` syntax).
    pub fn replace_all<'a>(&self, text: &'a str, substitution: &str) -> Cow<'a, str> {
        self.0.replace_all(text, substitution)
    }
}

/// Turns an Envoy/RE2 substitution (`\1`, `\\`) into the `regex` crate's
/// (`${1}`, literal `$` as `$$`). `$1` and `${name}` pass through.
pub fn substitution(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 4);
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.peek() {
                Some(d) if d.is_ascii_digit() => {
                    let d = *d;
                    chars.next();
                    out.push_str(&format!("${{{d}}}"));
                }
                Some('\\') => {
                    chars.next();
                    out.push('\\');
                }
                _ => out.push('\\'),
            },
            _ => out.push(c),
        }
    }
    out
}

/// How the forwarded path is made from the client's.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum PathRewrite {
    /// Forwarded as it came.
    #[default]
    Keep,
    /// The route's matched prefix (or exact path) is replaced, element-wise:
    /// prefix `/api` → `/v2` turns `/api/x` into `/v2/x` and `/api` into `/v2`.
    Prefix {
        matched: String,
        replacement: String,
    },
    /// Every match of the pattern in the path is substituted.
    Regex {
        pattern: Pattern,
        substitution: String,
    },
}

impl PathRewrite {
    /// The path to forward for the client's normalised `path`.
    pub fn apply<'a>(&self, path: &'a str) -> Cow<'a, str> {
        match self {
            PathRewrite::Keep => Cow::Borrowed(path),
            PathRewrite::Prefix {
                matched,
                replacement,
            } => {
                let rest = path
                    .strip_prefix(matched.trim_end_matches('/'))
                    .unwrap_or(path)
                    .trim_start_matches('/');
                let base = replacement.trim_matches('/');
                let mut out = String::with_capacity(base.len() + rest.len() + 2);
                out.push('/');
                out.push_str(base);
                if !rest.is_empty() {
                    if !base.is_empty() {
                        out.push('/');
                    }
                    out.push_str(rest);
                } else if !base.is_empty() && replacement.ends_with('/') {
                    out.push('/');
                }
                Cow::Owned(out)
            }
            PathRewrite::Regex {
                pattern,
                substitution,
            } => {
                let out = pattern.replace_all(path, substitution);
                if out.starts_with('/') {
                    out
                } else {
                    Cow::Owned(format!("/{out}"))
                }
            }
        }
    }
}

/// Where the forwarded `Host` comes from.
#[derive(Clone, Debug, Default, PartialEq)]
pub enum HostRewrite {
    /// The upstream's own `host:port` (the default).
    #[default]
    Upstream,
    /// The client's `Host` (`preserve_host_header`).
    Preserve,
    /// A fixed value (`host_rewrite`).
    Literal(HeaderValue),
    /// The value of this request header, else the upstream's (`host_rewrite_header`).
    FromHeader(HeaderName),
    /// The path with every match substituted (`host_path_regex_rewrite_*`).
    PathRegex {
        pattern: Pattern,
        substitution: String,
    },
}

/// A `rewrite_response_headers` entry: a value of `header` starting with
/// `prefix` gets that prefix replaced by `value` (no prefix: the whole value).
#[derive(Clone, Debug, PartialEq)]
pub struct ResponseHeaderRewrite {
    pub header: HeaderName,
    pub prefix: String,
    pub value: String,
}

/// Applies the rewrites, then sets the headers (an empty value removes the
/// header, so a route can switch a default off).
pub fn rewrite_response_headers(
    headers: &mut HeaderMap,
    rewrites: &[ResponseHeaderRewrite],
    set: &[(HeaderName, HeaderValue)],
) {
    rewrite_headers(headers, rewrites);
    set_headers(headers, set);
}

/// The `rewrite_response_headers` step: each value of a listed header that
/// starts with its prefix gets the prefix replaced (every value, with an
/// empty prefix); other values stay.
pub fn rewrite_headers(headers: &mut HeaderMap, rewrites: &[ResponseHeaderRewrite]) {
    for r in rewrites {
        let values: Vec<HeaderValue> = headers.get_all(&r.header).iter().cloned().collect();
        if values.is_empty() {
            continue;
        }
        headers.remove(&r.header);
        for v in values {
            let text = v.to_str().unwrap_or("");
            let new = if r.prefix.is_empty() {
                Some(r.value.clone())
            } else {
                text.strip_prefix(r.prefix.as_str())
                    .map(|rest| format!("{}{rest}", r.value))
            };
            match new.and_then(|n| HeaderValue::from_str(&n).ok()) {
                Some(n) => headers.append(r.header.clone(), n),
                None => headers.append(r.header.clone(), v),
            };
        }
    }
}

/// The `set_response_headers` step: each header set, or removed when its
/// value is empty.
pub fn set_headers(headers: &mut HeaderMap, set: &[(HeaderName, HeaderValue)]) {
    for (name, value) in set {
        if value.is_empty() {
            headers.remove(name);
        } else {
            headers.insert(name.clone(), value.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn prefix(matched: &str, replacement: &str) -> PathRewrite {
        PathRewrite::Prefix {
            matched: matched.into(),
            replacement: replacement.into(),
        }
    }

    #[test]
    fn prefix_rewrites_are_element_wise() {
        let cases = [
            ("/api", "/v2", "/api/x/y", "/v2/x/y"),
            ("/api", "/v2", "/api", "/v2"),
            ("/api", "/v2/", "/api", "/v2/"),
            ("/api", "/", "/api/x", "/x"),
            ("/api", "/", "/api", "/"),
            ("/api/", "/v2", "/api/x", "/v2/x"),
            ("/", "/v1", "/x", "/v1/x"),
            ("/", "/v1", "/", "/v1"),
            ("/", "", "/x", "/x"),
            ("/old", "new", "/old/a", "/new/a"),
        ];
        for (matched, replacement, path, want) in cases {
            assert_eq!(
                prefix(matched, replacement).apply(path),
                want,
                "{matched} -> {replacement} on {path}"
            );
        }
    }

    #[test]
    fn regex_substitutions_take_envoy_and_regex_group_syntax() {
        let r = |p: &str, s: &str, path: &str| {
            PathRewrite::Regex {
                pattern: Pattern::new(p).unwrap(),
                substitution: substitution(s),
            }
            .apply(path)
            .into_owned()
        };
        assert_eq!(
            r(
                "^/service/([^/]+)(/.*)$",
                "\\2/instance/\\1",
                "/service/foo/v1/api"
            ),
            "/v1/api/instance/foo"
        );
        assert_eq!(
            r(
                "^/service/([^/]+)(/.*)$",
                "$2/instance/$1",
                "/service/foo/v1/api"
            ),
            "/v1/api/instance/foo"
        );
        assert_eq!(r("o", "0", "/foo/boo"), "/f00/b00");
        assert_eq!(r("^/(.*)$", "\\1", "/x"), "/x");
        assert_eq!(substitution("a\\\\b\\x"), "a\\b\\x");
    }

    #[test]
    fn hostile_patterns_are_refused_not_run() {
        assert!(Pattern::new("(").is_err());
        assert!(Pattern::new("(a{1000}){1000}").is_err());
        // No backtracking: this is linear in the input.
        let p = Pattern::new("(a+)+$").unwrap();
        let text = format!("/{}b", "a".repeat(100_000));
        assert!(!p.0.is_match(&text));
    }

    #[test]
    fn response_headers_are_rewritten_then_set() {
        let mut h = HeaderMap::new();
        h.insert(
            "location",
            HeaderValue::from_static("http://10.0.0.7:8080/login"),
        );
        h.insert("x-frame-options", HeaderValue::from_static("DENY"));
        rewrite_response_headers(
            &mut h,
            &[ResponseHeaderRewrite {
                header: HeaderName::from_static("location"),
                prefix: "http://10.0.0.7:8080/".into(),
                value: "https://app.example.com/".into(),
            }],
            &[
                (
                    HeaderName::from_static("x-frame-options"),
                    HeaderValue::from_static(""),
                ),
                (
                    HeaderName::from_static("x-a"),
                    HeaderValue::from_static("1"),
                ),
            ],
        );
        assert_eq!(h["location"], "https://app.example.com/login");
        assert!(!h.contains_key("x-frame-options"));
        assert_eq!(h["x-a"], "1");
    }
}
