//! Session credentials mangled every way, against the real binary: a route
//! that needs a signed-in user (`signed.test`) gets a genuine session —
//! as the cookie, as `Authorization: Pomerium <token>` and as
//! `Authorization: Bearer Pomerium-<token>` — and then every variant of it:
//! single characters changed anywhere, truncated, extended, re-encoded in
//! another base64 alphabet or with padding, percent-encoded, case-folded,
//! minted for another host, minted under another `cookie_secret`, grown past
//! what a browser keeps, and the proxy's own signed assertion offered as a
//! credential. None may reach the upstream; none may get a 5xx; the genuine
//! credential, sent the same way, must.

use crate::harness;

use harness::attack::*;
use harness::config::{ConfigFile, identity_route, signed_in_route};

const SIGNED: &str = "signed.test";
const OTHER: &str = "other.test";

fn config(up: std::net::SocketAddr) -> ConfigFile {
    let to = format!("http://{up}");
    ConfigFile {
        routes: vec![identity_route(SIGNED, &to), signed_in_route(OTHER, &to)],
        ..Default::default()
    }
}

/// How the credential travels.
#[derive(Clone, Copy, Debug)]
enum Carrier {
    Cookie,
    Pomerium,
    BearerPomerium,
}

impl Carrier {
    fn header(self, token: &str) -> String {
        match self {
            Carrier::Cookie => format!("Cookie: _jetbridge={token}"),
            Carrier::Pomerium => format!("Authorization: Pomerium {token}"),
            Carrier::BearerPomerium => format!("Authorization: Bearer Pomerium-{token}"),
        }
    }
}

/// Sends `token` on `carrier` to `signed.test` with a unique marker; returns
/// the status and whether the upstream saw the request.
async fn attempt(
    j: &Jetbridge,
    up: &Recorder,
    carrier: Carrier,
    token: &str,
    n: usize,
) -> (Option<u16>, bool) {
    let marker = format!("/cred-{n:04}");
    let req = format!(
        "GET {marker} HTTP/1.1\r\nHost: {SIGNED}\r\nAccept: application/json\r\n{}\r\nConnection: close\r\n\r\n",
        carrier.header(token)
    );
    let status = h1_raw(j.https, SIGNED, req.as_bytes()).await;
    (status, !up.with(&marker).is_empty())
}

/// Every mangled form of `v` (a base64url token) worth trying.
fn mangled(v: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let len = v.len();
    for at in [0, 1, 2, len / 4, len / 2, 3 * len / 4, len - 2, len - 1] {
        for with in ['A', 'z', '-', '_', '0'] {
            let mut b = v.as_bytes().to_vec();
            if b[at] == with as u8 {
                continue;
            }
            b[at] = with as u8;
            out.push((
                format!("byte {at} -> {with}"),
                String::from_utf8(b).unwrap(),
            ));
        }
    }
    for keep in [len - 1, len - 2, len - 3, len - 4, len - 16, len / 2, 12, 1] {
        out.push((format!("first {keep} chars"), v[..keep].to_string()));
    }
    out.push(("last char dropped at the front".into(), v[1..].to_string()));
    for tail in ["A", "AA", "AAAA", "=", "==", ".", "%00", " x"] {
        out.push((format!("{tail:?} appended"), format!("{v}{tail}")));
    }
    let standard = v.replace('-', "+").replace('_', "/");
    if standard != v {
        out.push(("standard base64 alphabet".into(), standard));
    }
    for pad in ["=", "=="] {
        out.push((format!("padded with {pad}"), format!("{v}{pad}")));
    }
    out.push(("upper case".into(), v.to_uppercase()));
    out.push(("lower case".into(), v.to_lowercase()));
    let pct: String = v.bytes().map(|b| format!("%{b:02X}")).collect();
    out.push(("percent-encoded".into(), pct));
    out.push(("doubled".into(), format!("{v}{v}")));
    out.push(("reversed".into(), v.chars().rev().collect()));
    out.push((
        "whitespace inside".into(),
        format!("{} {}", &v[..len / 2], &v[len / 2..]),
    ));
    out.push(("empty".into(), String::new()));
    // Past what a browser keeps: refused before anything is opened.
    out.push((
        "grown to 5 000 chars".into(),
        format!("{v}{}", "A".repeat(5_000 - len)),
    ));
    out.retain(|(_, m)| m != v);
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mangled_foreign_and_misplaced_session_credentials_never_reach_the_upstream() {
    let up = Recorder::start().await;
    let j = Jetbridge::start(&config(up.addr)).await;
    // Another installation: its own cookie_secret.
    let stranger = Jetbridge::start(&config(up.addr)).await;
    let genuine = j.mint_session(SIGNED, "alice", "alice@example.com");
    let v = genuine.strip_prefix("_jetbridge=").unwrap().to_string();
    let mut n = 0;
    // The controls: the genuine session on every carrier gets through, and
    // hands the upstream a signed assertion.
    for carrier in [Carrier::Cookie, Carrier::Pomerium, Carrier::BearerPomerium] {
        n += 1;
        let (status, reached) = attempt(&j, &up, carrier, &v, n).await;
        assert_eq!(
            (status, reached),
            (Some(200), true),
            "genuine session on {carrier:?}"
        );
    }
    let assertion = up
        .with("/cred-0001")
        .first()
        .and_then(|s| s.all("x-pomerium-jwt-assertion").first().cloned())
        .expect("the upstream got an assertion");

    let mut variants = mangled(&v);
    let for_other_host = j.mint_session(OTHER, "alice", "alice@example.com");
    variants.push((
        "minted for another host".into(),
        for_other_host
            .strip_prefix("_jetbridge=")
            .unwrap()
            .to_string(),
    ));
    let foreign = stranger.mint_session(SIGNED, "alice", "alice@example.com");
    variants.push((
        "minted under another cookie_secret".into(),
        foreign.strip_prefix("_jetbridge=").unwrap().to_string(),
    ));
    variants.push(("the proxy's own assertion".into(), assertion.clone()));
    variants.push((
        "the assertion's payload alone".into(),
        assertion.split('.').nth(1).unwrap().to_string(),
    ));
    let mut failures = Vec::new();
    let mut tried = 0;
    for (what, token) in &variants {
        for carrier in [Carrier::Cookie, Carrier::Pomerium, Carrier::BearerPomerium] {
            n += 1;
            tried += 1;
            let (status, reached) = attempt(&j, &up, carrier, token, n).await;
            let safe = !reached && matches!(status, Some(400..=499));
            if !safe {
                failures.push(format!(
                    "{what} on {carrier:?}: {status:?}, reached upstream: {reached}"
                ));
            }
        }
    }
    println!(
        "{tried} mangled credentials tried, {} let through or answered badly",
        failures.len()
    );
    assert!(failures.is_empty(), "{failures:#?}");
    // The genuine credential still works afterwards, and the process is up.
    n += 1;
    assert_eq!(
        attempt(&j, &up, Carrier::Cookie, &v, n).await,
        (Some(200), true)
    );
    assert!(j.alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genuine_session_among_bad_ones_and_oversized_cookie_headers_are_handled_safely() {
    let up = Recorder::start().await;
    let j = Jetbridge::start(&config(up.addr)).await;
    let genuine = j.mint_session(SIGNED, "alice", "alice@example.com");
    let send = |n: usize, cookie_lines: String| {
        let j = &j;
        let up = &up;
        async move {
            let marker = format!("/many-{n:03}");
            let req = format!(
                "GET {marker} HTTP/1.1\r\nHost: {SIGNED}\r\nAccept: application/json\r\n{cookie_lines}Connection: close\r\n\r\n"
            );
            let status = h1_raw(j.https, SIGNED, req.as_bytes()).await;
            (status, up.with(&marker))
        }
    };
    // Several session cookies at once, in one header or in several: never a
    // 5xx, and whatever reaches the upstream carries the genuine identity
    // and none of the cookies.
    let cases = [
        format!("Cookie: _jetbridge=garbage; {genuine}\r\n"),
        format!("Cookie: {genuine}; _jetbridge=garbage\r\n"),
        format!("Cookie: _jetbridge=garbage\r\nCookie: {genuine}\r\n"),
        format!("Cookie: {}{genuine}\r\n", "_jetbridge=x; ".repeat(100)),
        format!("Cookie: a=1; {genuine}; b=2\r\n"),
    ];
    for (n, lines) in cases.iter().enumerate() {
        let (status, seen) = send(n, lines.clone()).await;
        match status {
            Some(200) => {
                let s = seen.first().expect("a 200 came from the upstream");
                assert!(
                    s.all("cookie").iter().all(|c| !c.contains("_jetbridge")),
                    "case {n}: the session cookie was forwarded: {:?}",
                    s.all("cookie")
                );
                assert_eq!(s.all("x-pomerium-claim-email").len(), 0);
                assert_eq!(s.all("x-pomerium-jwt-assertion").len(), 1, "case {n}");
            }
            Some(400..=499) => assert!(seen.is_empty(), "case {n}: refused but forwarded"),
            other => panic!("case {n}: {other:?}"),
        }
    }
    // A long cookie header within the head limit is served like any
    // other (the session cookie still stripped); past the limit (64 KiB),
    // refused and never forwarded.
    let (status, seen) = send(
        10,
        format!("Cookie: {genuine}; pad={}\r\n", "p".repeat(16 << 10)),
    )
    .await;
    assert_eq!(status, Some(200));
    let cookies = seen[0].all("cookie");
    assert!(
        cookies
            .iter()
            .all(|c| !c.contains("_jetbridge") && c.contains("pad=")),
        "{cookies:?}"
    );
    for (n, size) in [(11, 70 << 10), (12, 200 << 10)] {
        let lines = format!("Cookie: {genuine}; pad={}\r\n", "p".repeat(size));
        let (status, seen) = send(n, lines).await;
        assert!(
            status.is_none() || matches!(status, Some(400..=499)),
            "{size}-byte cookie: {status:?}"
        );
        assert!(seen.is_empty(), "{size}-byte cookie reached the upstream");
    }
    assert!(j.alive());
}
