//! Request conditions beyond host and path: method, headers and query
//! parameters (a Gateway API `HTTPRouteMatch`). Compiled when the route is
//! built; checked by the route table after the path matched.
//!
//! - A header name matches case-insensitively; the value is compared
//!   case-sensitively, to each value the request carries under that name
//!   (any one matching is enough). A header the request lacks never matches.
//! - A query parameter's name is compared exactly; the first occurrence of
//!   the parameter is its value (percent-decoded).
//! - Regular expressions match the whole value (RE2 syntax).

use super::rewrite::Pattern;
use http::{HeaderMap, HeaderName, Method};

/// How one value is compared.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ValueMatch {
    /// Equal, byte for byte.
    Exact(String),
    /// The whole value matches the pattern.
    Regex(Pattern),
}

impl ValueMatch {
    /// Whether `value` satisfies the match.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            ValueMatch::Exact(v) => v == value,
            ValueMatch::Regex(p) => p.0.is_match(value),
        }
    }
}

/// What a request must also carry for a route to serve it; every condition
/// must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Conditions {
    /// The request method.
    pub method: Option<Method>,
    /// Header name and value match.
    pub headers: Vec<(HeaderName, ValueMatch)>,
    /// Query parameter name and value match.
    pub query: Vec<(String, ValueMatch)>,
}

/// The parts of a request conditions look at.
#[derive(Clone, Copy, Debug)]
pub struct RequestView<'a> {
    pub method: &'a Method,
    pub headers: &'a HeaderMap,
    /// The raw query, without `?`.
    pub query: Option<&'a str>,
}

impl Conditions {
    /// Whether the request satisfies every condition.
    pub fn matches(&self, r: &RequestView<'_>) -> bool {
        if self.method.as_ref().is_some_and(|m| m != r.method) {
            return false;
        }
        let headers = self.headers.iter().all(|(name, m)| {
            r.headers
                .get_all(name)
                .iter()
                .any(|v| v.to_str().is_ok_and(|v| m.matches(v)))
        });
        headers
            && self
                .query
                .iter()
                .all(|(name, m)| first_query_value(r.query, name).is_some_and(|v| m.matches(&v)))
    }

    /// How specific the conditions are, for route order: a method match
    /// first, then more header matches, then more query matches (the
    /// Gateway API's precedence after the path). Greater is more specific.
    pub fn specificity(&self) -> (bool, usize, usize) {
        (self.method.is_some(), self.headers.len(), self.query.len())
    }

    /// True when nothing beyond host and path is asked for.
    pub fn is_empty(&self) -> bool {
        self.method.is_none() && self.headers.is_empty() && self.query.is_empty()
    }
}

/// The percent-decoded value of the first `name` parameter in `query`.
fn first_query_value(query: Option<&str>, name: &str) -> Option<String> {
    url::form_urlencoded::parse(query?.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view<'a>(
        method: &'a Method,
        headers: &'a HeaderMap,
        query: Option<&'a str>,
    ) -> RequestView<'a> {
        RequestView {
            method,
            headers,
            query,
        }
    }

    #[test]
    fn every_condition_must_hold() {
        let c = Conditions {
            method: Some(Method::POST),
            headers: vec![(
                HeaderName::from_static("version"),
                ValueMatch::Exact("two".into()),
            )],
            query: vec![(
                "animal".into(),
                ValueMatch::Regex(Pattern::whole("wh.*").unwrap()),
            )],
        };
        let mut h = HeaderMap::new();
        h.insert("Version", "two".parse().unwrap());
        let cases = [
            (Method::POST, Some("animal=whale"), true),
            (Method::GET, Some("animal=whale"), false),
            (Method::POST, Some("animal=dolphin"), false),
            (Method::POST, Some("animal=whale&animal=dolphin"), true),
            (Method::POST, Some("animal=dolphin&animal=whale"), false),
            (Method::POST, None, false),
        ];
        for (m, q, want) in cases {
            assert_eq!(c.matches(&view(&m, &h, q)), want, "{m} {q:?}");
        }
        let empty = HeaderMap::new();
        assert!(!c.matches(&view(&Method::POST, &empty, Some("animal=whale"))));
    }

    #[test]
    fn header_value_is_case_sensitive_and_regex_is_whole() {
        let mut h = HeaderMap::new();
        h.insert("x", "Abc".parse().unwrap());
        let get = Method::GET;
        let exact = |v: &str| Conditions {
            headers: vec![(HeaderName::from_static("x"), ValueMatch::Exact(v.into()))],
            ..Conditions::default()
        };
        assert!(exact("Abc").matches(&view(&get, &h, None)));
        assert!(!exact("abc").matches(&view(&get, &h, None)));
        let re = Conditions {
            headers: vec![(
                HeaderName::from_static("x"),
                ValueMatch::Regex(Pattern::whole("b").unwrap()),
            )],
            ..Conditions::default()
        };
        assert!(!re.matches(&view(&get, &h, None)));
    }
}
