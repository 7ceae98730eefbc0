//! Header hygiene on the way to the upstream: hop-by-hop removal, identity
//! header stripping (any spelling), forwarding headers, session cookie removal.

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// True for names that are, or look like, `X-Pomerium-*` identity headers in
/// any case, with `_` or `.` in place of `-`.
pub fn is_identity_lookalike(name: &str) -> bool {
    const PREFIX: &[u8] = b"x-pomerium";
    let b = name.as_bytes();
    if b.len() < PREFIX.len() {
        return false;
    }
    b[..PREFIX.len()].iter().zip(PREFIX).all(|(&c, &p)| {
        let c = c.to_ascii_lowercase();
        c == p || (p == b'-' && (c == b'_' || c == b'.'))
    })
}

/// A header name as a lenient upstream may read it: lower case, with `_`
/// and `.` read as `-` (CGI-style servers map all three to `_`).
fn folded(name: &str) -> String {
    name.bytes()
        .map(|c| match c.to_ascii_lowercase() {
            b'_' | b'.' => '-',
            c => char::from(c),
        })
        .collect()
}

/// Whether `name` read as [`folded`] reads starts with `prefix` (lower
/// case, `-`), without building the folded name: this runs for every
/// header of every request.
fn folded_starts_with(name: &str, prefix: &str) -> bool {
    let (n, p) = (name.as_bytes(), prefix.as_bytes());
    n.len() >= p.len()
        && n.iter()
            .zip(p)
            .all(|(&c, &p)| match c.to_ascii_lowercase() {
                b'_' | b'.' => p == b'-',
                c => c == p,
            })
}

/// Whether `name` read as [`folded`] reads is `other` (lower case, `-`).
fn folded_eq(name: &str, other: &str) -> bool {
    name.len() == other.len() && folded_starts_with(name, other)
}

/// True for names that are, or look like, the forwarding headers the proxy
/// sets itself (`Forwarded`, `X-Real-IP`, any `X-Forwarded-*`), in any case,
/// with `_` or `.` in place of `-`.
pub fn is_forwarding_lookalike(name: &str) -> bool {
    folded_eq(name, "forwarded")
        || folded_eq(name, "x-real-ip")
        || folded_starts_with(name, "x-forwarded-")
}

/// True for names that are, or look like, headers some frameworks read as
/// the request URL instead of the request line (`X-Original-URL`,
/// `X-Rewrite-URL`): a client could name `/admin` there while the policy
/// saw `/`.
pub fn is_path_override_lookalike(name: &str) -> bool {
    folded_eq(name, "x-original-url") || folded_eq(name, "x-rewrite-url")
}

/// Removes client-sent URL override headers in any spelling.
pub fn strip_path_overrides(h: &mut HeaderMap) {
    remove_where(h, is_path_override_lookalike);
}

/// Headers that describe one connection, never forwarded (RFC 9110 §7.6.1).
/// Names, not text: removing by text parses the name on every request.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
];

/// The forwarding headers the proxy sets.
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Removes hop-by-hop headers, including those listed in `Connection`.
/// `Upgrade` is removed too unless `keep_upgrade`.
pub fn remove_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    let (present, upgrade) = hop_by_hop_present(h);
    let drop_upgrade = upgrade && !keep_upgrade;
    if present == 0 && !drop_upgrade {
        return;
    }
    let mut te_listed = false;
    if present & 1 != 0 {
        let (listed, te) = connection_listed(h);
        te_listed = te;
        for name in listed {
            h.remove(name);
        }
    }
    // `TE: trailers` may be forwarded (gRPC needs it); other TE values may
    // not, nor any `TE` that `Connection` names.
    let te_trailers = !te_listed
        && h.get(header::TE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim().eq_ignore_ascii_case("trailers"));
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            h.remove(name);
        }
    }
    if te_trailers {
        h.insert(header::TE, HeaderValue::from_static("trailers"));
    }
    if drop_upgrade {
        h.remove(header::UPGRADE);
    }
}

/// Which of [`HOP_BY_HOP`] the head carries (bit `i` for entry `i`), and
/// whether it carries `Upgrade`: one pass over the names present, which
/// costs less than a lookup per name (most heads carry one or none).
fn hop_by_hop_present(h: &HeaderMap) -> (u16, bool) {
    let mut present = 0u16;
    let mut upgrade = false;
    for n in h.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|hop| hop == n) {
            present |= 1 << i;
        } else if n == header::UPGRADE {
            upgrade = true;
        }
    }
    (present, upgrade)
}

/// The other headers `Connection` names (those of [`HOP_BY_HOP`] go anyway,
/// and `Upgrade` goes or stays as the caller says), and whether it names
/// `TE`.
fn connection_listed(h: &HeaderMap) -> (Vec<HeaderName>, bool) {
    let mut listed = Vec::new();
    let mut te = false;
    let tokens = h
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| !t.is_empty());
    for token in tokens {
        if token.eq_ignore_ascii_case(header::TE.as_str()) {
            te = true;
        }
        let known = token.eq_ignore_ascii_case(header::UPGRADE.as_str())
            || HOP_BY_HOP
                .iter()
                .any(|hop| token.eq_ignore_ascii_case(hop.as_str()));
        if known {
            continue;
        }
        if let Ok(name) = HeaderName::from_bytes(token.as_bytes()) {
            listed.push(name);
        }
    }
    (listed, te)
}

/// Removes every client-sent identity header and the route's claim headers,
/// each in any spelling (`_` or `.` for `-`).
pub fn strip_identity_headers(h: &mut HeaderMap, claim_headers: &[(HeaderName, String)]) {
    let claims: Vec<String> = claim_headers
        .iter()
        .map(|(n, _)| folded(n.as_str()))
        .collect();
    remove_where(h, |n| {
        is_identity_lookalike(n) || (!claims.is_empty() && claims.contains(&folded(n)))
    });
}

/// Removes every header whose name satisfies `pred`.
fn remove_where(h: &mut HeaderMap, pred: impl Fn(&str) -> bool) {
    let doomed: Vec<HeaderName> = h.keys().filter(|n| pred(n.as_str())).cloned().collect();
    for n in doomed {
        h.remove(&n);
    }
}

/// Cleans request trailers: a client must not deliver there what the proxy
/// removes or owns in the head (identity, claim, forwarding and URL
/// override headers in any spelling, and the names in `also`), since some upstreams merge
/// trailers into the header fields.
pub fn sanitize_trailers(
    h: &mut HeaderMap,
    claim_headers: &[(HeaderName, String)],
    also: &[HeaderName],
) {
    strip_identity_headers(h, claim_headers);
    remove_where(h, |n| {
        is_forwarding_lookalike(n) || is_path_override_lookalike(n)
    });
    for n in also {
        h.remove(n);
    }
}

/// Removes the named cookies from every `Cookie` header, dropping the header
/// if nothing is left.
pub fn remove_cookies(h: &mut HeaderMap, names: &[&str]) {
    remove_cookies_where(h, |name| names.contains(&name));
}

/// Removes the cookies whose name `remove` says yes to; keeps the others.
pub fn remove_cookies_where(h: &mut HeaderMap, remove: impl Fn(&str) -> bool) {
    let values: Vec<HeaderValue> = h.get_all(header::COOKIE).iter().cloned().collect();
    if values.is_empty() {
        return;
    }
    h.remove(header::COOKIE);
    for v in values {
        let Ok(s) = v.to_str() else {
            continue;
        };
        let kept: Vec<&str> = s
            .split(';')
            .map(str::trim)
            .filter(|c| {
                let name = c.split('=').next().unwrap_or("").trim();
                !c.is_empty() && !remove(name)
            })
            .collect();
        if !kept.is_empty()
            && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
        {
            h.append(header::COOKIE, v);
        }
    }
}

/// Appends a `Set-Cookie` for cookie `name` unless the response already
/// sets that cookie (a sign-out's clearing cookie wins over a refresh).
pub fn append_cookie_unless_set(h: &mut HeaderMap, name: &str, value: HeaderValue) {
    let sets_it = h.get_all(header::SET_COOKIE).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.split_once('=').is_some_and(|(n, _)| n.trim() == name))
    });
    if !sets_it {
        h.append(header::SET_COOKIE, value);
    }
}

/// Returns a cookie's value from the request headers.
pub fn cookie<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| n.trim() == name)
        .map(|(_, v)| v.trim())
}

/// An address as text, as `Display` writes it, on the stack: IPv4 (what
/// nearly every request forwards) without the formatting machinery, which
/// cost more than the rest of the forwarded headers together.
pub struct IpText {
    buf: [u8; 46],
    len: usize,
}

impl IpText {
    /// The text of `ip`.
    pub fn new(ip: std::net::IpAddr) -> Self {
        let mut t = IpText {
            buf: [0; 46],
            len: 0,
        };
        match ip {
            std::net::IpAddr::V4(v4) => {
                for (i, o) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        t.push(b'.');
                    }
                    if o >= 100 {
                        t.push(b'0' + o / 100);
                    }
                    if o >= 10 {
                        t.push(b'0' + o / 10 % 10);
                    }
                    t.push(b'0' + o % 10);
                }
            }
            std::net::IpAddr::V6(v6) => {
                use std::io::Write as _;
                let mut rest: &mut [u8] = &mut t.buf;
                // At most 45 bytes: it fits.
                let _ = write!(rest, "{v6}");
                t.len = 46 - rest.len();
            }
        }
        t
    }

    fn push(&mut self, b: u8) {
        self.buf[self.len] = b;
        self.len += 1;
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.buf[..self.len]).unwrap_or_default()
    }
}

/// Replaces client-sent forwarding headers with the proxy's own.
/// Every client-sent `Forwarded`, `X-Real-IP` and `X-Forwarded-*` (any
/// spelling, including ones the proxy does not set, such as
/// `X-Forwarded-Prefix`) is removed first. `X-Forwarded-For` is
/// `forwarded_for` when trusted hops worked one out, else `client_ip`.
pub fn set_forwarded(
    h: &mut HeaderMap,
    forwarded_for: Option<&HeaderValue>,
    client_ip: &str,
    host: &str,
    proto: &'static str,
) {
    remove_where(h, is_forwarding_lookalike);
    if let Ok(v) = HeaderValue::from_str(client_ip) {
        let xff = forwarded_for.cloned().unwrap_or_else(|| v.clone());
        h.insert(X_FORWARDED_FOR, xff);
        h.insert(X_REAL_IP, v);
    }
    h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    if let Ok(v) = HeaderValue::from_str(host) {
        h.insert(X_FORWARDED_HOST, v);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_text_is_what_display_writes() {
        use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        let mut ips: Vec<IpAddr> = vec![
            Ipv4Addr::new(0, 0, 0, 0).into(),
            Ipv4Addr::new(255, 255, 255, 255).into(),
            Ipv4Addr::new(10, 9, 100, 99).into(),
            Ipv6Addr::UNSPECIFIED.into(),
            Ipv6Addr::LOCALHOST.into(),
            Ipv4Addr::new(255, 255, 255, 255).to_ipv6_mapped().into(),
            Ipv6Addr::new(
                0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff, 0xffff,
            )
            .into(),
        ];
        for _ in 0..10_000 {
            let n = next();
            ips.push(Ipv4Addr::from((n >> 32) as u32).into());
            let m = u128::from(n) << 64 | u128::from(next());
            ips.push(Ipv6Addr::from(m).into());
        }
        for ip in ips {
            assert_eq!(IpText::new(ip).as_str(), ip.to_string());
        }
    }

    #[test]
    fn identity_lookalikes_are_recognised_in_any_spelling() {
        for n in [
            "x-pomerium-jwt-assertion",
            "X-Pomerium-Jwt-Assertion",
            "x_pomerium_jwt_assertion",
            "x.pomerium.claim.email",
            "X-POMERIUM-CLAIM-EMAIL",
            "x-pomerium-jwt-assertion-for",
            "x_Pomerium-claim_groups",
        ] {
            assert!(is_identity_lookalike(n), "{n}");
        }
        for n in [
            "x-pomeriu",
            "pomerium",
            "x-forwarded-for",
            "xx-pomerium-jwt",
        ] {
            assert!(!is_identity_lookalike(n), "{n}");
        }
    }

    #[test]
    fn all_copies_of_spoofed_identity_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.append("x-pomerium-jwt-assertion", HeaderValue::from_static("a"));
        h.append("x-pomerium-jwt-assertion", HeaderValue::from_static("b"));
        h.append("x_pomerium_claim_email", HeaderValue::from_static("c"));
        h.append("x-email", HeaderValue::from_static("d"));
        h.append("accept", HeaderValue::from_static("*/*"));
        strip_identity_headers(
            &mut h,
            &[(HeaderName::from_static("x-email"), "email".into())],
        );
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("accept"));
    }

    #[test]
    fn claim_headers_are_removed_in_any_spelling() {
        let mut h = HeaderMap::new();
        for n in ["x-email", "x_email", "x.email", "X_EMAIL"] {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static("spoof"),
            );
        }
        h.append("x-emails", HeaderValue::from_static("kept"));
        strip_identity_headers(
            &mut h,
            &[(HeaderName::from_static("x-email"), "email".into())],
        );
        assert_eq!(
            h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            ["x-emails"]
        );
    }

    #[test]
    fn client_forwarding_headers_are_replaced_in_any_spelling() {
        let mut h = HeaderMap::new();
        for n in [
            "x-forwarded-for",
            "x_forwarded_for",
            "x.forwarded.host",
            "x-forwarded-prefix",
            "x-forwarded-port",
            "forwarded",
            "x_real_ip",
        ] {
            h.append(
                HeaderName::from_bytes(n.as_bytes()).unwrap(),
                HeaderValue::from_static("spoof"),
            );
        }
        h.append("x-forwarder", HeaderValue::from_static("kept"));
        set_forwarded(&mut h, None, "10.0.0.1", "app.example.com", "https");
        let mut names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "x-forwarded-for",
                "x-forwarded-host",
                "x-forwarded-proto",
                "x-forwarder",
                "x-real-ip"
            ]
        );
        assert!(h.values().all(|v| v != "spoof"));
    }

    #[test]
    fn connection_listed_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", HeaderValue::from_static("close, x-secret"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("te", HeaderValue::from_static("gzip"));
        h.insert("upgrade", HeaderValue::from_static("websocket"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.keys().map(|k| k.as_str()).collect::<Vec<_>>(), ["x-keep"]);
    }

    #[test]
    fn each_hop_by_hop_header_alone_is_removed_and_upgrade_kept_only_when_asked() {
        let names = [
            "connection",
            "keep-alive",
            "proxy-connection",
            "proxy-authenticate",
            "proxy-authorization",
            "te",
            "trailer",
            "transfer-encoding",
            "upgrade",
        ];
        for name in names {
            for keep_upgrade in [false, true] {
                let mut h = HeaderMap::new();
                h.insert("x-keep", HeaderValue::from_static("1"));
                h.insert(name, HeaderValue::from_static("x"));
                remove_hop_by_hop(&mut h, keep_upgrade);
                let kept = keep_upgrade && name == "upgrade";
                assert_eq!(
                    h.contains_key(name),
                    kept,
                    "{name}, keep_upgrade {keep_upgrade}"
                );
                assert!(h.contains_key("x-keep"), "{name}");
            }
        }
        // Nothing hop-by-hop: the head is left as it is.
        let mut h = HeaderMap::new();
        h.insert("host", HeaderValue::from_static("a"));
        h.append("x-two", HeaderValue::from_static("1"));
        h.append("x-two", HeaderValue::from_static("2"));
        let before = h.clone();
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h, before);
    }

    #[test]
    fn connection_listed_names_go_in_any_case_and_upgrade_stays_only_when_asked() {
        // (Connection value, keep_upgrade, names left besides x-keep)
        let cases: [(&str, bool, &[&str]); 6] = [
            ("X-Secret, close", false, &["te"]),
            ("keep-alive", false, &["te", "x-secret"]),
            ("Upgrade", true, &["te", "upgrade", "x-secret"]),
            ("upgrade", false, &["te", "x-secret"]),
            // TE named by Connection goes, even as `trailers`.
            ("TE", false, &["x-secret"]),
            (" , x-secret ,, te", true, &["upgrade"]),
        ];
        for (connection, keep_upgrade, left) in cases {
            let mut h = HeaderMap::new();
            h.insert("connection", HeaderValue::from_str(connection).unwrap());
            h.insert("x-secret", HeaderValue::from_static("1"));
            h.insert("te", HeaderValue::from_static("trailers"));
            h.insert("upgrade", HeaderValue::from_static("websocket"));
            h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
            h.insert("x-keep", HeaderValue::from_static("1"));
            remove_hop_by_hop(&mut h, keep_upgrade);
            let mut got: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
            got.sort_unstable();
            let mut want: Vec<&str> = left.iter().copied().chain(["x-keep"]).collect();
            want.sort_unstable();
            assert_eq!(
                got, want,
                "Connection: {connection}, keep_upgrade {keep_upgrade}"
            );
        }
    }

    #[test]
    fn te_trailers_alone_is_forwarded_for_grpc() {
        let mut h = HeaderMap::new();
        h.insert("te", HeaderValue::from_static("trailers"));
        remove_hop_by_hop(&mut h, false);
        assert_eq!(h.get("te").unwrap(), "trailers");
    }

    #[test]
    fn session_cookie_is_removed_and_others_kept() {
        let mut h = HeaderMap::new();
        h.append(
            "cookie",
            HeaderValue::from_static("a=1; _jetbridge=secret; b=2"),
        );
        h.append("cookie", HeaderValue::from_static("_jetbridge=again"));
        remove_cookies(&mut h, &["_jetbridge"]);
        let all: Vec<_> = h.get_all("cookie").iter().collect();
        assert_eq!(all, ["a=1; b=2"]);
        assert_eq!(cookie(&h, "b"), Some("2"));
    }

    #[test]
    fn sign_in_cookies_are_removed_by_name_and_others_kept() {
        let mut h = HeaderMap::new();
        h.append(
            "cookie",
            HeaderValue::from_static(
                "a=1; __Host-jetbridge_login_abc=n1; _jetbridge_state_xyz=s; \
                 _jetbridge_state=old; _jetbridge_statement=keep; __Host-jetbridge_login_d=n2",
            ),
        );
        remove_cookies_where(&mut h, crate::proxy::auth::cookies::is_sign_in_cookie);
        let all: Vec<_> = h.get_all("cookie").iter().collect();
        assert_eq!(all, ["a=1; _jetbridge_statement=keep"]);
    }
}
