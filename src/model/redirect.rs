//! A route that answers with a redirect instead of forwarding: the
//! `Location` is the request's own URL with the parts the route names
//! replaced. Built only from the route's validated settings and the parts
//! of the request routing already accepted (its normalised host, which a
//! route serves, and its normalised path), so a client can neither inject a
//! header nor choose another host.

use super::rewrite::PathRewrite;
use http::StatusCode;

/// `http` or `https`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    /// `http` or `https`.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// 80 or 443.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// What a redirecting route writes into `Location`.
#[derive(Clone, Debug, PartialEq)]
pub struct Redirect {
    /// The scheme (`None`: the request's).
    pub scheme: Option<Scheme>,
    /// The host (`None`: the request's).
    pub host: Option<String>,
    /// The port (`None`: the scheme's well-known port when the scheme is
    /// replaced, else the port the request came to).
    pub port: Option<u16>,
    /// The path, made from the request's.
    pub path: PathRewrite,
    /// 301, 302, 303, 307 or 308.
    pub status: StatusCode,
    /// Drop the query.
    pub strip_query: bool,
}

/// The parts of the request a `Location` is made from.
#[derive(Clone, Copy, Debug)]
pub struct RequestUrl<'a> {
    /// The connection's scheme.
    pub scheme: Scheme,
    /// The normalised host (no port).
    pub host: &'a str,
    /// The port the client named in its `Host` (`None`: the scheme's).
    pub port: Option<u16>,
    /// The normalised path.
    pub path: &'a str,
    /// The query as sent.
    pub query: Option<&'a str>,
}

impl Redirect {
    /// The `Location` for `req`. A port that is its scheme's well-known
    /// one is left out.
    pub fn location(&self, req: &RequestUrl<'_>) -> String {
        let scheme = self.scheme.unwrap_or(req.scheme);
        let port = match (self.port, self.scheme) {
            (Some(p), _) => p,
            (None, Some(s)) => s.default_port(),
            (None, None) => req.port.unwrap_or(req.scheme.default_port()),
        };
        let host = self.host.as_deref().unwrap_or(req.host);
        let mut out = format!("{}://", scheme.as_str());
        match host.contains(':') && !host.starts_with('[') {
            true => out.push_str(&format!("[{host}]")),
            false => out.push_str(host),
        }
        if port != scheme.default_port() {
            out.push_str(&format!(":{port}"));
        }
        out.push_str(&self.path.apply(req.path));
        if let (Some(q), false) = (req.query, self.strip_query) {
            out.push('?');
            out.push_str(q);
        }
        out
    }
}

/// The redirect statuses a route may answer with.
pub const STATUSES: [u16; 5] = [301, 302, 303, 307, 308];

#[cfg(test)]
mod tests {
    use super::*;

    fn req<'a>(scheme: Scheme, port: Option<u16>, path: &'a str) -> RequestUrl<'a> {
        RequestUrl {
            scheme,
            host: "app.example.com",
            port,
            path,
            query: Some("a=1"),
        }
    }

    fn redirect(scheme: Option<Scheme>, host: Option<&str>, port: Option<u16>) -> Redirect {
        Redirect {
            scheme,
            host: host.map(str::to_string),
            port,
            path: PathRewrite::Keep,
            status: StatusCode::FOUND,
            strip_query: false,
        }
    }

    #[test]
    fn location_port_follows_the_scheme_and_the_listener_the_client_used() {
        use Scheme::*;
        let h = Some("example.org");
        let cases: &[(Redirect, RequestUrl<'_>, &str)] = &[
            // No scheme, no port: the port the client came to.
            (
                redirect(None, h, None),
                req(Http, None, "/p"),
                "http://example.org/p?a=1",
            ),
            (
                redirect(None, h, None),
                req(Http, Some(8080), "/p"),
                "http://example.org:8080/p?a=1",
            ),
            (
                redirect(None, h, None),
                req(Https, Some(443), "/p"),
                "https://example.org/p?a=1",
            ),
            // A new scheme without a port: its well-known port.
            (
                redirect(Some(Https), h, None),
                req(Http, Some(8080), "/p"),
                "https://example.org/p?a=1",
            ),
            (
                redirect(Some(Http), h, None),
                req(Https, None, "/p"),
                "http://example.org/p?a=1",
            ),
            // A port: written unless well-known for the scheme.
            (
                redirect(None, h, Some(80)),
                req(Http, Some(8080), "/p"),
                "http://example.org/p?a=1",
            ),
            (
                redirect(None, h, Some(8443)),
                req(Http, None, "/p"),
                "http://example.org:8443/p?a=1",
            ),
            (
                redirect(Some(Https), h, Some(443)),
                req(Http, None, "/p"),
                "https://example.org/p?a=1",
            ),
            (
                redirect(Some(Https), h, Some(8443)),
                req(Http, None, "/p"),
                "https://example.org:8443/p?a=1",
            ),
            // No host: the request's.
            (
                redirect(Some(Https), None, None),
                req(Http, None, "/"),
                "https://app.example.com/?a=1",
            ),
        ];
        for (r, q, want) in cases {
            assert_eq!(r.location(q), *want, "{r:?} for {q:?}");
        }
    }

    #[test]
    fn location_path_is_rewritten_and_query_kept_unless_stripped() {
        let mut r = redirect(None, None, None);
        r.path = PathRewrite::Prefix {
            matched: "/original-prefix".into(),
            replacement: "/replacement-prefix".into(),
        };
        let q = req(Scheme::Http, None, "/original-prefix/lemon");
        assert_eq!(
            r.location(&q),
            "http://app.example.com/replacement-prefix/lemon?a=1"
        );
        r.strip_query = true;
        assert_eq!(
            r.location(&q),
            "http://app.example.com/replacement-prefix/lemon"
        );
    }

    #[test]
    fn an_ipv6_host_is_bracketed() {
        let r = redirect(None, Some("::1"), Some(8080));
        let q = req(Scheme::Http, None, "/");
        assert_eq!(r.location(&q), "http://[::1]:8080/?a=1");
    }
}
