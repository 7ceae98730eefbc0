//! Spoofed identity, from outside: the real binary, a recording upstream,
//! and requests written byte by byte over HTTP/1.1 (raw TLS socket) and
//! HTTP/2 (raw frames). Every spelling of every header the proxy owns — the
//! identity assertion, `X-Pomerium-Claim-*`, the route's own claim header
//! names, `X-Forwarded-*`, `Forwarded`, `X-Real-IP` — in any case, with `_`
//! or `.` for `-`, repeated, comma-joined, in the head or in trailers, must
//! never reach the upstream; on a signed-in route the upstream gets exactly
//! the proxy's own assertion for the minted session. Header values with CR,
//! LF, NUL or obs-fold are refused and never forwarded.

use crate::harness;

use harness::attack::*;
use harness::config::{
    ConfigFile, RouteConfig, claim_list, claims_headers, public_route, signed_in_route,
};
use std::fmt::Write as _;

const PUBLIC: &str = "public.test";
const PUBLIC_H2C: &str = "public-h2c.test";
const SIGNED: &str = "signed.test";
const SIGNED_H2C: &str = "signed-h2c.test";
/// Every route with whether it signs in: public and signed, each to an
/// HTTP/1.1 and an h2c upstream.
const EVERY_ROUTE: &[(&str, bool)] = &[
    (PUBLIC, false),
    (PUBLIC_H2C, false),
    (SIGNED, true),
    (SIGNED_H2C, true),
];
const SUB: &str = "minted-subject-7f3a";
const EMAIL: &str = "minted@example.com";

/// The headers the proxy owns, as a client might name them.
const OWNED: &[&str] = &[
    "X-Pomerium-Jwt-Assertion",
    "X-Pomerium-Jwt-Assertion-For",
    "X-Pomerium-Claim-Email",
    "X-Pomerium-Claim-Groups",
    "X-Pomerium-Claim-Sub",
    // The routes' own `jwt_claims_headers` names.
    "X-Email",
    "X-User-Sub",
    "X-Forwarded-For",
    "X-Forwarded-Host",
    "X-Forwarded-Proto",
    "X-Forwarded-Port",
    "X-Forwarded-Prefix",
    "Forwarded",
    "X-Real-IP",
];

/// A recording upstream and the binary in front of it with [`config`].
async fn recorder_behind_jetbridge() -> (Recorder, Jetbridge) {
    let up = Recorder::start().await;
    let j = Jetbridge::start(&config(up.addr)).await;
    (up, j)
}

fn config(up: std::net::SocketAddr) -> ConfigFile {
    let identity = |r: RouteConfig| RouteConfig {
        pass_identity_headers: Some(true),
        jwt_claims_headers: claims_headers(&[("X-Email", "email"), ("X-User-Sub", "sub")]),
        ..r
    };
    let (http, h2c) = (format!("http://{up}"), format!("h2c://{up}"));
    ConfigFile {
        jwt_claims_headers: claim_list(&["email"]),
        routes: vec![
            identity(public_route(PUBLIC, &http)),
            identity(public_route(PUBLIC_H2C, &h2c)),
            identity(signed_in_route(SIGNED, &http)),
            identity(signed_in_route(SIGNED_H2C, &h2c)),
        ],
        ..Default::default()
    }
}

/// `name` in every spelling a lenient upstream may read as `name`.
fn spellings(name: &str) -> Vec<String> {
    let mixed: String = name
        .chars()
        .enumerate()
        .map(|(i, c)| {
            if i % 2 == 0 {
                c.to_ascii_uppercase()
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    let mut sep = 0;
    let alternating: String = name
        .chars()
        .map(|c| {
            if c == '-' {
                sep += 1;
                if sep % 2 == 0 { '.' } else { '_' }
            } else {
                c
            }
        })
        .collect();
    let mut v = vec![
        name.to_string(),
        name.to_ascii_lowercase(),
        name.to_ascii_uppercase(),
        mixed,
        name.replace('-', "_"),
        name.replace('-', "."),
        name.to_ascii_uppercase().replace('-', "_"),
        alternating,
    ];
    v.dedup();
    v
}

/// How one spelling is repeated in a request.
#[derive(Clone, Copy, Debug)]
enum Shape {
    Once,
    Twice,
    CommaJoined,
    WithCanonical,
}

/// The header lines (name, value) one variant sends.
fn spoof_fields(base: &str, spelling: &str, shape: Shape) -> Vec<(String, String)> {
    let one = |v: &str| (spelling.to_string(), v.to_string());
    match shape {
        Shape::Once => vec![one("spoof-1")],
        Shape::Twice => vec![one("spoof-1"), one("spoof-2")],
        Shape::CommaJoined => vec![one("spoof-1, spoof-2,spoof-3")],
        Shape::WithCanonical => vec![(base.to_string(), "spoof-0".into()), one("spoof-1")],
    }
}

/// A header name as a lenient upstream reads it: lower case, `_`/`.` as `-`.
fn folded(name: &str) -> String {
    name.to_ascii_lowercase().replace(['_', '.'], "-")
}

fn owned_folded(name: &str) -> bool {
    let f = folded(name);
    f.starts_with("x-pomerium")
        || f == "forwarded"
        || f == "x-real-ip"
        || f.starts_with("x-forwarded-")
        || f == "x-email"
        || f == "x-user-sub"
}

/// What the upstream must have received for a request to `host`; returns
/// every deviation.
fn check_received(seen: &Seen, host: &str, signed: bool, jwks: &serde_json::Value) -> Vec<String> {
    let mut bad = Vec::new();
    for (n, v) in seen.fields() {
        if String::from_utf8_lossy(v).contains("spoof") {
            bad.push(format!(
                "{n}: {} reached the upstream",
                String::from_utf8_lossy(v)
            ));
        }
    }
    for (n, _) in &seen.trailers {
        if owned_folded(n) {
            bad.push(format!("trailer {n} reached the upstream"));
        }
    }
    // Exactly the proxy's own owned headers, each once, canonical spelling.
    let mut expected: Vec<(&str, String)> = vec![
        ("x-forwarded-for", "127.0.0.1".into()),
        ("x-real-ip", "127.0.0.1".into()),
        ("x-forwarded-proto", "https".into()),
        ("x-forwarded-host", host.into()),
    ];
    if signed {
        expected.push(("x-pomerium-claim-email", EMAIL.into()));
        expected.push(("x-email", EMAIL.into()));
        expected.push(("x-user-sub", SUB.into()));
    }
    let owned: Vec<&(String, Vec<u8>)> = seen
        .headers
        .iter()
        .filter(|(n, _)| owned_folded(n))
        .collect();
    for (n, v) in &owned {
        let v = String::from_utf8_lossy(v);
        if n == "x-pomerium-jwt-assertion" && signed {
            continue;
        }
        if !expected.iter().any(|(en, ev)| en == n && *ev == v) {
            bad.push(format!("unexpected {n}: {v}"));
        }
    }
    for (en, ev) in &expected {
        let got = seen.all(en);
        if got != [ev.clone()] {
            bad.push(format!("{en} is {got:?}, expected [{ev:?}]"));
        }
    }
    let assertions = seen.all("x-pomerium-jwt-assertion");
    if signed {
        match assertions.as_slice() {
            [token] => match verify_assertion(token, jwks, host) {
                Ok(c) if c["sub"] == SUB && c["email"] == EMAIL => {}
                Ok(c) => bad.push(format!("assertion for the wrong user: {c}")),
                Err(e) => bad.push(format!("assertion does not verify: {e}")),
            },
            other => bad.push(format!("{} assertions reached the upstream", other.len())),
        }
    } else if !assertions.is_empty() {
        bad.push(format!("assertion on a public request: {assertions:?}"));
    }
    bad
}

/// One request of the suite.
#[derive(Clone)]
struct Variant {
    label: String,
    method: &'static str,
    host: &'static str,
    signed: bool,
    h2: bool,
    fields: Vec<(String, String)>,
    trailers: Vec<(String, String)>,
}

async fn send(port: u16, v: &Variant, marker: &str, cookie: Option<&str>) -> Result<u16, String> {
    if v.h2 {
        let mut head = fields(&[
            (":method", v.method),
            (":scheme", "https"),
            (":authority", v.host),
            (":path", &format!("/?m={marker}")),
        ]);
        if let Some(c) = cookie {
            head.extend(fields(&[("cookie", c)]));
        }
        for (n, val) in &v.fields {
            head.push((n.as_bytes().to_vec(), val.as_bytes().to_vec()));
        }
        let trailers: Fields = v
            .trailers
            .iter()
            .map(|(n, val)| (n.as_bytes().to_vec(), val.as_bytes().to_vec()))
            .collect();
        let body = (!trailers.is_empty()).then_some(&b"hello"[..]);
        match h2_raw(
            port,
            v.host,
            &head,
            body,
            (!trailers.is_empty()).then_some(&trailers),
        )
        .await
        {
            H2::Status(s) => Ok(s),
            other => Err(format!("{other:?}")),
        }
    } else {
        let mut req = String::new();
        write!(
            req,
            "{} /?m={marker} HTTP/1.1\r\nHost: {}\r\n",
            v.method, v.host
        )
        .unwrap();
        if let Some(c) = cookie {
            write!(req, "Cookie: {c}\r\n").unwrap();
        }
        for (n, val) in &v.fields {
            write!(req, "{n}: {val}\r\n").unwrap();
        }
        if v.trailers.is_empty() {
            req.push_str("Connection: close\r\n\r\n");
        } else {
            req.push_str("Transfer-Encoding: chunked\r\nConnection: close\r\n");
            let names: Vec<&str> = v.trailers.iter().map(|(n, _)| n.as_str()).collect();
            write!(
                req,
                "Trailer: {}\r\n\r\n5\r\nhello\r\n0\r\n",
                names.join(", ")
            )
            .unwrap();
            for (n, val) in &v.trailers {
                write!(req, "{n}: {val}\r\n").unwrap();
            }
            req.push_str("\r\n");
        }
        h1_raw(port, v.host, req.as_bytes())
            .await
            .ok_or_else(|| "closed without a response".to_string())
    }
}

/// Sends every variant (a few at a time) and checks what reached the upstream.
async fn run(j: &Jetbridge, up: &Recorder, variants: Vec<Variant>) -> Vec<String> {
    let jwks = j.jwks().await;
    let cookies: std::collections::HashMap<&str, String> = [SIGNED, SIGNED_H2C]
        .into_iter()
        .map(|h| (h, j.mint_session(h, SUB, EMAIL)))
        .collect();
    let port = j.https;
    let jobs: Vec<_> = variants
        .iter()
        .enumerate()
        .map(|(i, v)| {
            let v = v.clone();
            let cookie = v.signed.then(|| cookies[v.host].clone());
            async move { send(port, &v, &format!("mk{i}z"), cookie.as_deref()).await }
        })
        .collect();
    let outcomes = bounded(8, jobs).await;
    let mut failures = Vec::new();
    for (i, (v, outcome)) in variants.iter().zip(outcomes).enumerate() {
        let seen = up.with(&format!("m=mk{i}z"));
        let mut bad = Vec::new();
        match outcome {
            Ok(200) => {}
            other => bad.push(format!("answered {other:?}, expected 200")),
        }
        match seen.as_slice() {
            [s] => bad.extend(check_received(s, v.host, v.signed, &jwks)),
            other => bad.push(format!("upstream saw it {} times", other.len())),
        }
        if !bad.is_empty() {
            failures.push(format!("{:<70} {}", v.label, bad.join("; ")));
        }
    }
    failures
}

fn proto(h2: bool) -> &'static str {
    if h2 { "h2" } else { "h1" }
}

/// The full table: every owned name × spelling × shape × route × protocol.
fn header_variants() -> Vec<Variant> {
    let mut out = Vec::new();
    for &(host, signed) in &[(PUBLIC, false), (SIGNED, true)] {
        for h2 in [false, true] {
            for base in OWNED {
                for spelling in spellings(base) {
                    for shape in [
                        Shape::Once,
                        Shape::Twice,
                        Shape::CommaJoined,
                        Shape::WithCanonical,
                    ] {
                        // HTTP/2 field names are lower case on the wire
                        // (RFC 9113 §8.2.1); upper case is tested below.
                        let fields: Vec<(String, String)> = spoof_fields(base, &spelling, shape)
                            .into_iter()
                            .map(|(n, v)| (if h2 { n.to_ascii_lowercase() } else { n }, v))
                            .collect();
                        out.push(Variant {
                            label: format!("{} {host} {spelling} {shape:?}", proto(h2)),
                            method: "GET",
                            host,
                            signed,
                            h2,
                            fields,
                            trailers: Vec::new(),
                        });
                    }
                }
            }
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_headers_in_any_spelling_never_reach_the_upstream() {
    let (up, j) = recorder_behind_jetbridge().await;
    let variants = header_variants();
    let n = variants.len();
    let failures = run(&j, &up, variants).await;
    assert!(
        failures.is_empty(),
        "{} of {n} variants failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_owned_header_at_once_is_replaced_on_both_protocols_and_upstream_kinds() {
    let (up, j) = recorder_behind_jetbridge().await;
    let mut variants = Vec::new();
    for &(host, signed) in EVERY_ROUTE {
        for h2 in [false, true] {
            // Three spellings each: the whole list stays under the
            // proxy's header count limit (more gets 431).
            let fields: Vec<(String, String)> = OWNED
                .iter()
                .flat_map(|b| [b.to_string(), b.replace('-', "_"), b.replace('-', ".")])
                .map(|n| {
                    (
                        if h2 { n.to_ascii_lowercase() } else { n },
                        "spoof-all".into(),
                    )
                })
                .collect();
            variants.push(Variant {
                label: format!("{} {host} all owned names at once", proto(h2)),
                method: "GET",
                host,
                signed,
                h2,
                fields,
                trailers: Vec::new(),
            });
        }
    }
    let failures = run(&j, &up, variants).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn owned_headers_in_trailers_never_reach_the_upstream() {
    let (up, j) = recorder_behind_jetbridge().await;
    let mut variants = Vec::new();
    for &(host, signed) in EVERY_ROUTE {
        for h2 in [false, true] {
            for base in OWNED {
                let mut names = vec![base.to_string(), base.replace('-', "_")];
                names.dedup();
                for (name, method) in names
                    .iter()
                    .flat_map(|n| [(n.clone(), "POST"), (n.clone(), "GET")])
                {
                    let name = if h2 { name.to_ascii_lowercase() } else { name };
                    variants.push(Variant {
                        label: format!("{} {host} {method} trailer {name}", proto(h2)),
                        method,
                        host,
                        signed,
                        h2,
                        fields: Vec::new(),
                        trailers: vec![
                            (name, "spoof-trailer".into()),
                            ("x-benign-trailer".into(), "ok".into()),
                        ],
                    });
                }
            }
        }
    }
    let labels: Vec<(String, &str, bool)> = variants
        .iter()
        .map(|v| (v.label.clone(), v.host, v.h2))
        .collect();
    let failures = run(&j, &up, variants).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    // Trailers do reach an h2c upstream, so the check above saw a live channel.
    for (i, (label, host, _)) in labels.iter().enumerate() {
        if host.contains("h2c") {
            let seen = up.with(&format!("m=mk{i}z"));
            assert!(
                seen[0]
                    .trailers
                    .iter()
                    .any(|(n, v)| n == "x-benign-trailer" && v == b"ok"),
                "{label}: benign trailer did not arrive: {:?}",
                seen[0].trailers
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_genuine_assertion_sent_by_the_client_is_neither_accepted_nor_forwarded() {
    let (up, j) = recorder_behind_jetbridge().await;
    let jwks = j.jwks().await;
    // A genuine, proxy-signed assertion for another user on this very host.
    let other = j.mint_session(SIGNED, "someone-else", "else@example.com");
    let req = format!(
        "GET /?m=genuine HTTP/1.1\r\nHost: {SIGNED}\r\nCookie: {other}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(h1_raw(j.https, SIGNED, req.as_bytes()).await, Some(200));
    let stolen = up.with("m=genuine")[0].all("x-pomerium-jwt-assertion")[0].clone();
    assert_eq!(
        verify_assertion(&stolen, &jwks, SIGNED).unwrap()["sub"],
        "someone-else"
    );

    // Without a session it does not sign anyone in.
    for (i, h2) in [false, true].into_iter().enumerate() {
        let marker = format!("replay-nosession-{i}");
        let status = if h2 {
            let head = fields(&[
                (":method", "GET"),
                (":scheme", "https"),
                (":authority", SIGNED),
                (":path", &format!("/?m={marker}")),
                ("x-pomerium-jwt-assertion", &stolen),
                ("accept", "application/json"),
            ]);
            match h2_raw(j.https, SIGNED, &head, None, None).await {
                H2::Status(s) => Some(s),
                _ => None,
            }
        } else {
            let req = format!(
                "GET /?m={marker} HTTP/1.1\r\nHost: {SIGNED}\r\nX-Pomerium-Jwt-Assertion: {stolen}\r\nAccept: application/json\r\nConnection: close\r\n\r\n"
            );
            h1_raw(j.https, SIGNED, req.as_bytes()).await
        };
        assert_eq!(status, Some(401), "{} replay without a session", proto(h2));
        assert!(up.with(&marker).is_empty());
    }

    // With the minted session, the upstream gets the proxy's assertion for
    // the minted subject, never the replayed one.
    let cookie = j.mint_session(SIGNED, SUB, EMAIL);
    let req = format!(
        "GET /?m=replay-session HTTP/1.1\r\nHost: {SIGNED}\r\nCookie: {cookie}\r\nX-Pomerium-Jwt-Assertion: {stolen}\r\nx_pomerium_jwt_assertion: {stolen}\r\nConnection: close\r\n\r\n"
    );
    assert_eq!(h1_raw(j.https, SIGNED, req.as_bytes()).await, Some(200));
    let seen = &up.with("m=replay-session")[0];
    let got = seen.all("x-pomerium-jwt-assertion");
    assert_eq!(got.len(), 1, "{got:?}");
    assert_ne!(got[0], stolen);
    let claims = verify_assertion(&got[0], &jwks, SIGNED).unwrap();
    assert_eq!(claims["sub"], SUB);
    assert!(
        seen.fields().all(|(_, v)| v != stolen.as_bytes()),
        "the replayed assertion reached the upstream"
    );
}

/// Raw HTTP/1.1 header sections that must be refused with 400.
fn malformed_h1() -> Vec<(&'static str, Vec<u8>)> {
    let lines: &[(&str, &[u8])] = &[
        (
            "bare CR in a value",
            b"X-Note: a\rX-Pomerium-Jwt-Assertion: spoof-cr\r\n",
        ),
        (
            "bare CR at the end of a value",
            b"X-Pomerium-Jwt-Assertion: spoof-cr\r\r\n",
        ),
        ("NUL in a value", b"X-Note: a\0spoof-nul\r\n"),
        (
            "NUL in an identity value",
            b"X-Pomerium-Jwt-Assertion: spoof\0nul\r\n",
        ),
        ("DEL in a value", b"X-Note: spoof\x7fdel\r\n"),
        ("vertical tab in a value", b"X-Note: spoof\x0bvt\r\n"),
        ("form feed in a value", b"X-Note: spoof\x0cff\r\n"),
        ("obs-fold with a space", b"X-Note: a\r\n spoof-fold\r\n"),
        ("obs-fold with a tab", b"X-Note: a\r\n\tspoof-fold\r\n"),
        (
            "obs-fold continuing an identity header",
            b"X-Pomerium-Jwt-Assertion: spoof-a\r\n spoof-fold\r\n",
        ),
        (
            "obs-fold continuing X-Forwarded-For",
            b"X-Forwarded-For: 10.0.0.1\r\n\tspoof-fold\r\n",
        ),
        (
            "obs-fold hiding a field",
            b"X-Note: a\r\n X-Pomerium-Jwt-Assertion: spoof-fold\r\n",
        ),
        (
            "space before the colon",
            b"X-Pomerium-Jwt-Assertion : spoof-ws\r\n",
        ),
        (
            "tab before the colon",
            b"X-Pomerium-Jwt-Assertion\t: spoof-ws\r\n",
        ),
        (
            "NUL in a name",
            b"X-Pomerium\0-Jwt-Assertion: spoof-name\r\n",
        ),
        (
            "CR in a name",
            b"X-Pomerium\r-Jwt-Assertion: spoof-name\r\n",
        ),
        (
            "line without a colon",
            b"X-Pomerium-Jwt-Assertion spoof-nocolon\r\n",
        ),
    ];
    lines.iter().map(|(l, b)| (*l, b.to_vec())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_characters_and_obs_fold_in_http1_headers_get_400() {
    let (up, j) = recorder_behind_jetbridge().await;
    let cookie = j.mint_session(SIGNED, SUB, EMAIL);
    let mut table = Vec::new();
    let mut failed = false;
    for (host, signed) in [(PUBLIC, false), (SIGNED, true)] {
        for (i, (label, line)) in malformed_h1().into_iter().enumerate() {
            let marker = format!("bad{i}{host}");
            let mut req = format!("GET /?m={marker} HTTP/1.1\r\nHost: {host}\r\n").into_bytes();
            if signed {
                req.extend_from_slice(format!("Cookie: {cookie}\r\n").as_bytes());
            }
            req.extend_from_slice(&line);
            req.extend_from_slice(b"Connection: close\r\n\r\n");
            let status = h1_raw(j.https, host, &req).await;
            let reached = up.with(&marker).len();
            let ok = status == Some(400) && reached == 0;
            failed |= !ok;
            table.push(format!(
                "{} {host:<12} {label:<40} {status:?} upstream saw it {reached}x",
                if ok { "ok " } else { "BAD" }
            ));
        }
    }
    assert!(
        !failed,
        "expected 400 and nothing upstream:\n{}",
        table.join("\n")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_lf_ends_the_field_and_what_follows_is_stripped_like_any_field() {
    // RFC 9112 §2.2 lets a recipient treat a bare LF as a line terminator;
    // the proxy (hyper) does, so "a value containing LF" is two fields and
    // the second is subject to the same stripping. It must never carry a
    // spoofed identity to the upstream.
    let (up, j) = recorder_behind_jetbridge().await;
    let jwks = j.jwks().await;
    let cookie = j.mint_session(SIGNED, SUB, EMAIL);
    let lines: &[&[u8]] = &[
        b"X-Note: a\nX-Pomerium-Jwt-Assertion: spoof-lf\r\n",
        b"X-Note: a\nx_pomerium_jwt_assertion: spoof-lf\r\n",
        b"X-Note: a\nX-Forwarded-For: spoof-lf\r\n",
        b"X-Note: a\nX-Email: spoof-lf\r\n",
    ];
    for (host, signed) in [(PUBLIC, false), (SIGNED, true)] {
        for (i, line) in lines.iter().enumerate() {
            let marker = format!("lf{i}{host}");
            let mut req = format!("GET /?m={marker} HTTP/1.1\r\nHost: {host}\r\n").into_bytes();
            if signed {
                req.extend_from_slice(format!("Cookie: {cookie}\r\n").as_bytes());
            }
            req.extend_from_slice(line);
            req.extend_from_slice(b"Connection: close\r\n\r\n");
            let status = h1_raw(j.https, host, &req).await;
            let seen = up.with(&marker);
            match status {
                Some(400) => assert!(seen.is_empty(), "400 but forwarded"),
                Some(200) => {
                    let bad = check_received(&seen[0], host, signed, &jwks);
                    assert!(bad.is_empty(), "{host} {line:?}: {bad:?}");
                }
                other => panic!("{host} {line:?}: {other:?}"),
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_http2_fields_are_refused_and_never_forwarded() {
    let (up, j) = recorder_behind_jetbridge().await;
    let cookie = j.mint_session(SIGNED, SUB, EMAIL);
    let cases: Vec<(&str, Vec<u8>, Vec<u8>)> = vec![
        (
            "CR LF in a value",
            b"x-note".to_vec(),
            b"a\r\nx-pomerium-jwt-assertion: spoof".to_vec(),
        ),
        (
            "LF in a value",
            b"x-note".to_vec(),
            b"a\nx-pomerium-jwt-assertion: spoof".to_vec(),
        ),
        ("CR in a value", b"x-note".to_vec(), b"a\rspoof".to_vec()),
        ("NUL in a value", b"x-note".to_vec(), b"a\0spoof".to_vec()),
        (
            "LF in an identity value",
            b"x-pomerium-jwt-assertion".to_vec(),
            b"spoof\nx".to_vec(),
        ),
        (
            "NUL in an identity value",
            b"x-pomerium-jwt-assertion".to_vec(),
            b"spoof\0".to_vec(),
        ),
        (
            "LF in X-Forwarded-For",
            b"x-forwarded-for".to_vec(),
            b"1.2.3.4\nspoof".to_vec(),
        ),
        (
            "upper-case identity name",
            b"X-Pomerium-Jwt-Assertion".to_vec(),
            b"spoof-upper".to_vec(),
        ),
        (
            "upper-case claim name",
            b"X-Email".to_vec(),
            b"spoof-upper".to_vec(),
        ),
        (
            "LF in a name",
            b"x-note\nx-pomerium-jwt-assertion".to_vec(),
            b"spoof".to_vec(),
        ),
        (
            "colon in a name",
            b"x-pomerium-jwt-assertion:".to_vec(),
            b"spoof".to_vec(),
        ),
        (
            "space in a name",
            b"x-pomerium-jwt-assertion ".to_vec(),
            b"spoof".to_vec(),
        ),
        (
            "connection-specific field",
            b"connection".to_vec(),
            b"x-pomerium-jwt-assertion".to_vec(),
        ),
        (
            "transfer-encoding field",
            b"transfer-encoding".to_vec(),
            b"chunked".to_vec(),
        ),
    ];
    let mut table = Vec::new();
    let mut failed = false;
    for (host, signed) in [(PUBLIC, false), (SIGNED, true)] {
        for (i, (label, name, value)) in cases.iter().enumerate() {
            for in_trailers in [false, true] {
                let marker = format!("h2bad{i}{in_trailers}{host}");
                let mut head = fields(&[
                    (":method", "POST"),
                    (":scheme", "https"),
                    (":authority", host),
                    (":path", &format!("/?m={marker}")),
                ]);
                if signed {
                    head.extend(fields(&[("cookie", &cookie)]));
                }
                let bad = vec![(name.clone(), value.clone())];
                let outcome = if in_trailers {
                    h2_raw(j.https, host, &head, Some(b"hello"), Some(&bad)).await
                } else {
                    head.extend(bad);
                    h2_raw(j.https, host, &head, None, None).await
                };
                let seen = up.with(&marker);
                // In trailers the head may already be on its way upstream;
                // the bad field itself must not be.
                let leaked = seen.iter().any(|s| {
                    s.fields()
                        .any(|(_, v)| String::from_utf8_lossy(v).contains("spoof"))
                });
                let ok = outcome.refused() && !leaked && (in_trailers || seen.is_empty());
                failed |= !ok;
                table.push(format!(
                    "{} {host:<12} {label:<28} {} {outcome:?} upstream saw it {}x",
                    if ok { "ok " } else { "BAD" },
                    if in_trailers { "trailer" } else { "header " },
                    seen.len()
                ));
            }
        }
    }
    assert!(
        !failed,
        "expected a refusal and nothing upstream:\n{}",
        table.join("\n")
    );
}
