//! Protocol abuse, from outside: the real binary serves a public route
//! (`open.test`), a public route with a 3 s timeout (`slow.test`), a route
//! that needs a signed-in user and allows WebSockets (`signed.test`) and a
//! public WebSocket route (`ws.test`), all to one recording upstream. Each
//! test throws one family of malformed or abusive HTTP/1.1 or HTTP/2 traffic
//! at it over raw TLS and checks the safe outcome — a 4xx, or the
//! connection closed within a bound — and that nothing reaches the upstream
//! in a smuggled form. Meanwhile a bystander makes normal requests: every
//! one must get a 200 within 5 s, the process must stay up, and its resident
//! memory must not grow by more than `RSS_GROWTH_LIMIT_KIB`. Each test prints
//! the bystander's p50/p99 latency idle and under attack, and the memory.

use crate::harness;

use harness::attack::*;
use harness::config::{ConfigFile, RouteConfig, public_route, signed_in_route};
use std::future::Future;
use std::time::{Duration, Instant};

const OPEN: &str = "open.test";
const SLOW: &str = "slow.test";
const SIGNED: &str = "signed.test";
const WS: &str = "ws.test";
const STALL: &str = "stall.test";
/// The `idle_timeout` of `stall.test`.
const STALL_IDLE: Duration = Duration::from_secs(2);

/// How much resident memory an attack may add to the process (64 MiB).
const RSS_GROWTH_LIMIT_KIB: u64 = 64 * 1024;
/// How long a connection doing nothing useful may stay open: the header read
/// timeout (10 s) plus slack for a loaded machine.
const CUT_OFF: Duration = Duration::from_secs(15);
/// The route timeout of `slow.test`.
const SLOW_TIMEOUT: Duration = Duration::from_secs(3);

/// HTTP/2 error codes.
const CANCEL: u32 = 0x8;
/// SETTINGS identifiers.
const SETTINGS_MAX_CONCURRENT_STREAMS: u16 = 0x3;
const SETTINGS_INITIAL_WINDOW_SIZE: u16 = 0x4;

fn config(up: std::net::SocketAddr, stall_up: std::net::SocketAddr) -> ConfigFile {
    let to = format!("http://{up}");
    ConfigFile {
        routes: vec![
            public_route(OPEN, &to),
            RouteConfig {
                timeout: Some(Duration::from_secs(3)),
                ..public_route(SLOW, &to)
            },
            RouteConfig {
                allow_websockets: true,
                ..signed_in_route(SIGNED, &to)
            },
            RouteConfig {
                allow_websockets: true,
                ..public_route(WS, &to)
            },
            RouteConfig {
                idle_timeout: Some(Duration::from_secs(2)),
                ..public_route(STALL, &format!("http://{stall_up}"))
            },
        ],
        ..Default::default()
    }
}

/// The binary, its upstream, and the bystander's idle latencies.
struct Lab {
    j: Jetbridge,
    up: Recorder,
    /// The upstream of `stall.test` alone, so its open connections are
    /// those the stalled responses hold.
    stall_up: Recorder,
    idle: Vec<Probe>,
}

async fn lab() -> Lab {
    let up = Recorder::start().await;
    let stall_up = Recorder::start().await;
    let j = Jetbridge::start(&config(up.addr, stall_up.addr)).await;
    let mut idle = Vec::new();
    for _ in 0..30 {
        idle.push(probe(j.https, OPEN, "/bystander").await);
    }
    assert!(
        idle.iter().all(|(s, _)| *s == Some(200)),
        "idle bystander: {idle:?}"
    );
    Lab {
        j,
        up,
        stall_up,
        idle,
    }
}

/// Runs `attack` (for at least a second) while a bystander makes requests
/// and the process's memory is sampled; checks the bystander, the process
/// and the memory, and prints the numbers.
async fn under_attack<F: Future>(lab: &Lab, label: &str, attack: F) -> F::Output {
    let base = lab.j.rss_kib().expect("process is running");
    let watch = RssWatch::start(lab.j.pid());
    let bystander = Bystander::start(lab.j.https, OPEN);
    let started = Instant::now();
    let (out, ()) = tokio::join!(attack, tokio::time::sleep(Duration::from_secs(1)));
    let took = started.elapsed();
    let probes = bystander.stop().await;
    let peak = watch.peak_kib();
    assert!(
        lab.j.alive(),
        "{label}: the process died: {:#?}",
        lab.j.log()
    );
    let (idle50, idle99) = percentiles(&lab.idle);
    let (p50, p99) = percentiles(&probes);
    println!(
        "ATTACK {label}: {:.1} s; RSS {} MiB before, peak {} MiB (+{} KiB, limit +{} KiB); \
         bystander idle p50 {idle50:.1} ms p99 {idle99:.1} ms, under attack p50 {p50:.1} ms \
         p99 {p99:.1} ms over {} requests",
        took.as_secs_f64(),
        base / 1024,
        peak / 1024,
        peak.saturating_sub(base),
        RSS_GROWTH_LIMIT_KIB,
        probes.len()
    );
    assert!(probes.len() >= 3, "{label}: bystander made {probes:?}");
    for (status, latency) in &probes {
        assert_eq!(
            *status,
            Some(200),
            "{label}: a bystander request failed (after {latency:?})"
        );
        assert!(*latency < BYSTANDER_LIMIT, "{label}: bystander {latency:?}");
    }
    assert!(
        peak.saturating_sub(base) <= RSS_GROWTH_LIMIT_KIB,
        "{label}: resident memory grew from {base} KiB to {peak} KiB"
    );
    let after = probe(lab.j.https, OPEN, "/bystander").await;
    assert_eq!(after.0, Some(200), "{label}: after the attack");
    out
}

// ---------------------------------------------------------------------------
// Slowloris

/// Opens a TLS connection, writes `head`, then one byte of `drip` every
/// `every` until the server hangs up; returns how long after the first byte
/// the server closed the connection (`None`: still open after `limit`), and
/// what it answered.
async fn trickle(
    port: u16,
    sni: &str,
    alpn: &[u8],
    head: Vec<u8>,
    drip: u8,
    every: Duration,
    limit: Duration,
) -> (Option<Duration>, Vec<u8>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let s = tls(port, sni, alpn).await;
    let (mut r, mut w) = tokio::io::split(s);
    let started = Instant::now();
    let writer = tokio::spawn(async move {
        if w.write_all(&head).await.is_err() {
            return;
        }
        loop {
            tokio::time::sleep(every).await;
            if w.write_all(&[drip]).await.is_err() || w.flush().await.is_err() {
                return;
            }
        }
    });
    let mut got = Vec::new();
    let read = async {
        let mut chunk = [0u8; 4096];
        loop {
            match r.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got.extend_from_slice(&chunk[..n]),
            }
        }
    };
    let closed = tokio::time::timeout(limit, read).await.is_ok();
    writer.abort();
    (closed.then(|| started.elapsed()), got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_on_headers_and_idle_connections_is_cut_off() {
    let lab = lab().await;
    let port = lab.j.https;
    let outcomes = under_attack(&lab, "slowloris headers x50 + idle keep-alive x10", async {
        let mut jobs = Vec::new();
        // Headers that never end: one byte of a header value every 200 ms.
        for i in 0..50 {
            let head = format!("GET /loris-{i} HTTP/1.1\r\nHost: {OPEN}\r\nX-Slow: ").into_bytes();
            jobs.push(tokio::spawn(trickle(
                port,
                OPEN,
                b"http/1.1",
                head,
                b'a',
                Duration::from_millis(200),
                CUT_OFF,
            )));
        }
        // A finished request, then a connection kept open doing nothing
        // (a space every 200 ms would be a header line; send nothing).
        for i in 0..10 {
            let head = format!("GET /idle-{i} HTTP/1.1\r\nHost: {OPEN}\r\n\r\n").into_bytes();
            jobs.push(tokio::spawn(trickle(
                port,
                OPEN,
                b"http/1.1",
                head,
                b'\r',
                Duration::from_secs(3600),
                CUT_OFF,
            )));
        }
        let mut out = Vec::new();
        for j in jobs {
            out.push(j.await.unwrap());
        }
        out
    })
    .await;
    for (i, (closed, got)) in outcomes.iter().enumerate() {
        assert!(
            closed.is_some(),
            "connection {i} still open after {CUT_OFF:?}; got {:?}",
            String::from_utf8_lossy(got)
        );
    }
    let slowest = outcomes.iter().filter_map(|(c, _)| *c).max().unwrap();
    println!("slowloris: slowest connection closed after {slowest:?}");
    assert!(lab.up.started_with("/loris-").is_empty());
    // The idle connections had their one request answered before the cut.
    assert_eq!(lab.up.with("/idle-").len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_on_bodies_ends_at_the_route_timeout() {
    let lab = lab().await;
    let port = lab.j.https;
    let (h1, h2) = under_attack(&lab, "slowloris bodies h1 x20 + h2 x20", async {
        let mut h1 = Vec::new();
        for i in 0..20 {
            let head = format!(
                "POST /drip-{i:02}/ HTTP/1.1\r\nHost: {SLOW}\r\nContent-Length: 1000000\r\n\r\n"
            )
            .into_bytes();
            h1.push(tokio::spawn(trickle(
                port,
                SLOW,
                b"http/1.1",
                head,
                b'a',
                Duration::from_millis(100),
                SLOW_TIMEOUT + Duration::from_secs(7),
            )));
        }
        // HTTP/2: a body that never ends, one byte per DATA frame.
        let mut h2 = Vec::new();
        for i in 0..20 {
            h2.push(tokio::spawn(async move {
                let mut c = H2Conn::open(port, SLOW, &[]).await;
                c.read();
                let mut f = get_fields(SLOW, &format!("/drip2-{i:02}/"));
                f[0].1 = b"POST".to_vec();
                c.send(&headers_frame(1, &f, END_HEADERS)).await;
                let started = Instant::now();
                let mut answered = None;
                while started.elapsed() < SLOW_TIMEOUT + Duration::from_secs(7) {
                    let e = c.seen();
                    if e.statuses.contains_key(&1) || e.resets.contains_key(&1) || e.closed {
                        answered = Some((started.elapsed(), e));
                        break;
                    }
                    c.send(&frame(DATA, 0, 1, b"a")).await;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                answered
            }));
        }
        let mut a = Vec::new();
        for j in h1 {
            a.push(j.await.unwrap());
        }
        let mut b = Vec::new();
        for j in h2 {
            b.push(j.await.unwrap());
        }
        (a, b)
    })
    .await;
    for (i, (closed, got)) in h1.iter().enumerate() {
        let text = String::from_utf8_lossy(got);
        let after = closed.unwrap_or_else(|| panic!("h1 body {i} still open: {text}"));
        assert!(
            text.starts_with("HTTP/1.1 504"),
            "h1 body {i}: {text} after {after:?}"
        );
    }
    for (i, a) in h2.iter().enumerate() {
        let (after, e) = a
            .as_ref()
            .unwrap_or_else(|| panic!("h2 body {i} unanswered"));
        assert_eq!(
            e.statuses.get(&1),
            Some(&504),
            "h2 body {i} after {after:?}: {e:?}"
        );
    }
    // Each trickled request reached the upstream once, as itself.
    for i in 0..20 {
        assert!(lab.up.started_with(&format!("/drip-{i:02}/")).len() <= 1);
        assert!(lab.up.started_with(&format!("/drip2-{i:02}/")).len() <= 1);
    }
}

// ---------------------------------------------------------------------------
// Oversized heads

/// A HEADERS frame (no END_HEADERS) and CONTINUATION frames carrying `block`
/// in pieces of at most 16 KiB, the last with END_HEADERS.
fn split_header_block(stream: u32, block: &[u8], flags: u8) -> Vec<u8> {
    let mut out = Vec::new();
    let pieces: Vec<&[u8]> = block.chunks(16 * 1024).collect();
    for (i, p) in pieces.iter().enumerate() {
        let last = i + 1 == pieces.len();
        let kind = if i == 0 { HEADERS } else { CONTINUATION };
        let f = if i == 0 { flags } else { 0 } | if last { END_HEADERS } else { 0 };
        out.extend(frame(kind, f, stream, p));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_heads_are_refused() {
    let lab = lab().await;
    let port = lab.j.https;
    let many: String = (0..10_000).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big = "a".repeat(1024 * 1024);
    let long_uri = format!("/uri-long?{}", "a".repeat(64 * 1024));
    let h1_cases: Vec<(&str, String)> = vec![
        (
            "10 000 headers",
            format!("GET /many-headers HTTP/1.1\r\nHost: {OPEN}\r\n{many}\r\n"),
        ),
        (
            "1 MB header",
            format!("GET /big-header HTTP/1.1\r\nHost: {OPEN}\r\nX-Big: {big}\r\n\r\n"),
        ),
        (
            "64 KB URI",
            format!("GET {long_uri} HTTP/1.1\r\nHost: {OPEN}\r\n\r\n"),
        ),
    ];
    let mut h2_many = get_fields(OPEN, "/h2-many-headers");
    for i in 0..10_000 {
        h2_many.push((format!("x-h{i}").into_bytes(), b"v".to_vec()));
    }
    let mut h2_big = get_fields(OPEN, "/h2-big-header");
    h2_big.push((b"x-big".to_vec(), big.clone().into_bytes()));
    let h2_uri = get_fields(OPEN, &format!("/h2-uri-long?{}", "a".repeat(64 * 1024)));
    let h2_cases = vec![
        ("h2 10 000 headers", h2_many),
        ("h2 1 MB header", h2_big),
        ("h2 64 KB :path", h2_uri),
    ];
    let (h1, h2) = under_attack(&lab, "oversized heads", async {
        let mut h1 = Vec::new();
        for (label, req) in &h1_cases {
            let mut c = H1Conn::open(port, OPEN).await;
            let started = Instant::now();
            c.send(req.as_bytes()).await;
            let o = c.outcome(Duration::from_secs(2), STEP).await;
            h1.push((*label, o, started.elapsed()));
        }
        let mut h2 = Vec::new();
        for (label, f) in &h2_cases {
            let mut c = H2Conn::open(port, OPEN, &[]).await;
            c.read();
            let started = Instant::now();
            c.send(&split_header_block(1, &hpack(f), END_STREAM)).await;
            let e = c
                .wait(STEP, |e| {
                    e.statuses.contains_key(&1)
                        || e.resets.contains_key(&1)
                        || e.goaway.is_some()
                        || e.closed
                })
                .await;
            h2.push((*label, e, started.elapsed()));
        }
        (h1, h2)
    })
    .await;
    for (label, o, took) in &h1 {
        println!("{label}: {o:?} in {took:?}");
        let refused = o.status.is_some_and(|s| (400..500).contains(&s));
        assert!(
            refused || (o.status.is_none() && o.closed),
            "{label}: {o:?}"
        );
        assert!(*took < STEP, "{label}: {took:?}");
    }
    for (label, e, took) in &h2 {
        println!(
            "{label}: status {:?} reset {:?} goaway {:?} closed {} in {took:?}",
            e.statuses.get(&1),
            e.resets.get(&1),
            e.goaway,
            e.closed
        );
        let refused = match e.statuses.get(&1) {
            Some(s) => (400..500).contains(s),
            None => e.resets.contains_key(&1) || e.goaway.is_some() || e.closed,
        };
        assert!(refused, "{label}: {e:?}");
    }
    for marker in ["many-headers", "big-header", "uri-long"] {
        assert!(
            lab.up.started_with(marker).is_empty(),
            "{marker} reached the upstream"
        );
    }
}

// ---------------------------------------------------------------------------
// Request smuggling

/// A request whose framing is ambiguous: `head` is the header lines (after
/// the request line and Host), `body` what follows the blank line. Every
/// body hides a second request for `/smuggled-<n>`.
struct Smuggle {
    label: &'static str,
    head: String,
    body: String,
}

fn smuggle_cases() -> Vec<Smuggle> {
    let hidden = |n: usize| format!("GET /smuggled-{n:02}/ HTTP/1.1\r\nHost: {OPEN}\r\n\r\n");
    let mut cases = Vec::new();
    let mut add = |label: &'static str, head: &str, body: &dyn Fn(&str) -> String| {
        let n = cases.len();
        cases.push(Smuggle {
            label,
            head: head.to_string(),
            body: body(&hidden(n)),
        });
    };
    add(
        "Content-Length then Transfer-Encoding",
        "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n",
        &|h| format!("0\r\n\r\n{h}"),
    );
    add(
        "Transfer-Encoding then Content-Length",
        "Transfer-Encoding: chunked\r\nContent-Length: 200\r\n",
        &|h| format!("0\r\n\r\n{h}"),
    );
    add(
        "two Content-Length values",
        "Content-Length: 0\r\nContent-Length: 60\r\n",
        &|h| h.to_string(),
    );
    add(
        "Content-Length list with two values",
        "Content-Length: 0, 60\r\n",
        &|h| h.to_string(),
    );
    add(
        "Content-Length with a sign",
        "Content-Length: +0\r\n",
        &|h| h.to_string(),
    );
    add(
        "Transfer-Encoding: chunked, identity",
        "Transfer-Encoding: chunked, identity\r\n",
        &|h| format!("0\r\n\r\n{h}"),
    );
    add(
        "Transfer-Encoding with a space before the colon",
        "Transfer-Encoding : chunked\r\n",
        &|h| format!("0\r\n\r\n{h}"),
    );
    add(
        "Transfer-Encoding: xchunked",
        "Transfer-Encoding: xchunked\r\n",
        &|h| format!("0\r\n\r\n{h}"),
    );
    add(
        "two Transfer-Encoding lines, chunked first",
        "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n",
        &|h| format!("0\r\n\r\n{h}"),
    );
    add(
        "Transfer-Encoding folded onto the previous line",
        "X-Fold: a\r\n Transfer-Encoding: chunked\r\n",
        &|h| format!("0\r\n\r\n{h}"),
    );
    add(
        "chunk size overflow",
        "Transfer-Encoding: chunked\r\n",
        &|h| format!("ffffffffffffffff1\r\n{h}\r\n0\r\n\r\n"),
    );
    add(
        "chunk extension abuse",
        "Transfer-Encoding: chunked\r\n",
        &|h| {
            let ext = ";x=".to_string() + &"a".repeat(64 * 1024);
            format!("1{ext}\r\na\r\n0\r\n\r\n{h}")
        },
    );
    add(
        "chunk extension with a bare LF inside",
        "Transfer-Encoding: chunked\r\n",
        &|h| format!("1;x=\"a\nb\"\r\na\r\n0\r\n\r\n{h}"),
    );
    add(
        "bare CR ending a chunk size",
        "Transfer-Encoding: chunked\r\n",
        &|h| format!("1\ra\r\n0\r\n\r\n{h}"),
    );
    add(
        "bare CR ending a header line",
        "X-A: b\rTransfer-Encoding: chunked\r\n",
        &|h| format!("0\r\n\r\n{h}"),
    );
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_smuggling_never_reaches_the_upstream() {
    let lab = lab().await;
    let port = lab.j.https;
    let cases = smuggle_cases();
    let outcomes = under_attack(&lab, "request smuggling", async {
        let jobs: Vec<_> = cases
            .iter()
            .enumerate()
            .map(|(n, c)| {
                let req = format!(
                    "POST /smuggle-{n:02}/ HTTP/1.1\r\nHost: {OPEN}\r\n{}\r\n{}",
                    c.head, c.body
                );
                async move {
                    let mut conn = H1Conn::open(port, OPEN).await;
                    let started = Instant::now();
                    conn.send(req.as_bytes()).await;
                    let o = conn.outcome(Duration::from_millis(1500), STEP).await;
                    (o, started.elapsed())
                }
            })
            .collect();
        bounded(4, jobs).await
    })
    .await;
    for (n, (c, (o, took))) in cases.iter().zip(&outcomes).enumerate() {
        println!("smuggle {n} {}: {o:?} in {took:?}", c.label);
        assert!(
            lab.up
                .started_with(&format!("/smuggled-{n:02}/"))
                .is_empty(),
            "{}: the hidden request reached the upstream",
            c.label
        );
        assert!(
            lab.up.started_with(&format!("/smuggle-{n:02}/")).len() <= 1,
            "{}: the request reached the upstream twice",
            c.label
        );
        assert!(o.responses <= 1, "{}: {o:?}", c.label);
        let refused = o.status.is_some_and(|s| (400..500).contains(&s));
        // The one acceptable non-refusal: the request forwarded with one
        // framing, and the connection closed so nothing after it is read.
        assert!(refused || o.closed, "{}: {o:?}", c.label);
        assert!(*took < STEP, "{}: {took:?}", c.label);
    }

    // HTTP/2 has no framing headers: a request that carries one, a length
    // that disagrees with its DATA, or a header value with a line break is
    // malformed and must not be turned into HTTP/1.1 for the upstream.
    let hidden = format!("GET /h2smuggled HTTP/1.1\r\nHost: {OPEN}\r\n\r\n");
    let post = |path: &str, extra: &[(&str, &str)]| {
        let mut f = get_fields(OPEN, path);
        f[0].1 = b"POST".to_vec();
        f.extend(fields(extra));
        f
    };
    let h2_cases: Vec<(&str, Fields, Option<Vec<u8>>)> = vec![
        (
            "transfer-encoding",
            post("/h2smuggle-te", &[("transfer-encoding", "chunked")]),
            Some(format!("0\r\n\r\n{hidden}").into_bytes()),
        ),
        (
            "content-length shorter than DATA",
            post("/h2smuggle-cl", &[("content-length", "0")]),
            Some(hidden.clone().into_bytes()),
        ),
        (
            "line break in a header value",
            post(
                "/h2smuggle-crlf",
                &[(
                    "x-a",
                    "b\r\n\r\nGET /h2smuggled HTTP/1.1\r\nHost: open.test",
                )],
            ),
            Some(Vec::new()),
        ),
        (
            "connection header",
            post("/h2smuggle-conn", &[("connection", "keep-alive")]),
            Some(hidden.clone().into_bytes()),
        ),
    ];
    for (label, f, body) in &h2_cases {
        let r = h2_raw(port, OPEN, f, body.as_deref(), None).await;
        assert!(r.refused(), "h2 {label}: {r:?}");
    }
    assert!(
        lab.up.started_with("/h2smuggle").is_empty(),
        "{:?}",
        lab.up.started_with("/h2smuggle")
    );
}

// ---------------------------------------------------------------------------
// HTTP/2 floods and stalls

/// Many HEADERS + RST_STREAM pairs on one connection, written in batches.
async fn rapid_reset(port: u16, pairs: u32) -> (u32, H2Events) {
    let mut c = H2Conn::open(port, OPEN, &[]).await;
    c.read();
    let f = get_fields(OPEN, "/rapid");
    let block = hpack(&f);
    let mut sent = 0;
    let mut stream = 1;
    while sent < pairs {
        let mut batch = Vec::new();
        for _ in 0..100 {
            batch.extend(frame(HEADERS, END_HEADERS | END_STREAM, stream, &block));
            batch.extend(frame(RST_STREAM, 0, stream, &CANCEL.to_be_bytes()));
            stream += 2;
        }
        if !c.send(&batch).await {
            break;
        }
        sent += 100;
        let e = c.seen();
        if e.goaway.is_some() || e.closed {
            break;
        }
    }
    let e = c
        .wait(Duration::from_secs(3), |e| e.goaway.is_some() || e.closed)
        .await;
    (sent, e)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rapid_reset_is_bounded() {
    let lab = lab().await;
    let port = lab.j.https;
    let results = under_attack(&lab, "rapid reset 4 x 10 000", async {
        let jobs = (0..4).map(|_| rapid_reset(port, 10_000)).collect();
        bounded(4, jobs).await
    })
    .await;
    let forwarded = lab.up.started_with("/rapid").len();
    for (sent, e) in &results {
        println!(
            "rapid reset: {sent} pairs sent, goaway {:?}, closed {}, {forwarded} reached the upstream in all",
            e.goaway, e.closed
        );
    }
    // 40 000 streams opened and cancelled must not become 40 000 upstream
    // requests.
    assert!(
        forwarded < 4_000,
        "{forwarded} cancelled streams reached the upstream"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn continuation_flood_is_cut_off() {
    let lab = lab().await;
    let port = lab.j.https;
    let (sent, e, took) = under_attack(&lab, "CONTINUATION flood", async {
        let mut c = H2Conn::open(port, OPEN, &[]).await;
        c.read();
        let started = Instant::now();
        let mut out = frame(
            HEADERS,
            END_STREAM,
            1,
            &hpack(&get_fields(OPEN, "/continued")),
        );
        // Each CONTINUATION carries one more 16 KB header field; none ends
        // the block. Up to 64 MB in all.
        let field = hpack(&fields(&[("x-flood", &"a".repeat(16 * 1024 - 16))]));
        let mut sent = 0usize;
        while sent < 64 * 1024 * 1024 {
            for _ in 0..16 {
                out.extend(frame(CONTINUATION, 0, 1, &field));
            }
            if !c.send(&out).await {
                break;
            }
            sent += out.len();
            out.clear();
            let e = c.seen();
            if e.goaway.is_some() || e.closed || e.resets.contains_key(&1) {
                break;
            }
        }
        let e = c
            .wait(Duration::from_secs(3), |e| e.goaway.is_some() || e.closed)
            .await;
        (sent, e, started.elapsed())
    })
    .await;
    println!(
        "CONTINUATION flood: {} KiB accepted before goaway {:?} / reset {:?} / closed {} after {took:?}",
        sent / 1024,
        e.goaway,
        e.resets.get(&1),
        e.closed
    );
    assert!(e.goaway.is_some() || e.closed, "{e:?}");
    // The header list limit is 64 KiB: the server must stop well before
    // the 64 MB the client had to send.
    assert!(sent < 4 * 1024 * 1024, "{sent} bytes accepted");
    assert!(lab.up.started_with("/continued").is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_and_ping_floods_are_bounded() {
    let lab = lab().await;
    let port = lab.j.https;
    // The client never reads: every acknowledgement the server owes piles
    // up on its side unless it stops reading or hangs up.
    let flood = |kind: u8| async move {
        let c = H2Conn::open(port, OPEN, &[]).await;
        let one = if kind == SETTINGS {
            frame(SETTINGS, 0, 0, &[0, 2, 0, 0, 0, 0])
        } else {
            frame(PING, 0, 0, &[1, 2, 3, 4, 5, 6, 7, 8])
        };
        let batch: Vec<u8> = one.iter().copied().cycle().take(one.len() * 1000).collect();
        let mut frames = 0u64;
        let mut stalled = false;
        let started = Instant::now();
        while frames < 500_000 && started.elapsed() < Duration::from_secs(5) {
            if !c.send(&batch).await {
                stalled = true;
                break;
            }
            frames += 1000;
        }
        (frames, stalled, c)
    };
    let ((settings, s_stalled, mut sc), (pings, p_stalled, mut pc)) =
        under_attack(&lab, "SETTINGS + PING floods, never read", async {
            tokio::join!(flood(SETTINGS), flood(PING))
        })
        .await;
    // Now read: the server either hung up, or answers with a bounded
    // backlog (it stopped reading when its acknowledgements could not be
    // written).
    sc.read();
    pc.read();
    // Wait until the outcome is known (pushed back, hung up, or every frame
    // answered); the cap only bounds a stuck server, so a busy machine
    // cannot fail it.
    let settled = |written: u64, pushed_back: bool| {
        move |e: &H2Events| pushed_back || e.closed || e.frames as u64 >= written
    };
    let se = sc
        .wait(Duration::from_secs(30), settled(settings, s_stalled))
        .await;
    let pe = pc
        .wait(Duration::from_secs(30), settled(pings, p_stalled))
        .await;
    println!(
        "SETTINGS flood: {settings} frames written (stalled: {s_stalled}), then goaway {:?} closed {} ({} frames back); \
         PING flood: {pings} frames written (stalled: {p_stalled}), then goaway {:?} closed {} ({} frames back)",
        se.goaway, se.closed, se.frames, pe.goaway, pe.closed, pe.frames
    );
    // Safe: the server hung up, or pushed back (stopped reading while its
    // acknowledgements could not be written), or owes nothing: every frame
    // written was acknowledged once the client read, so nothing was queued
    // inside the process beyond what the socket holds.
    for (what, written, pushed_back, e) in [
        ("SETTINGS", settings, s_stalled, &se),
        ("PING", pings, p_stalled, &pe),
    ] {
        assert!(
            pushed_back || e.goaway.is_some() || e.closed || e.frames as u64 >= written,
            "{what}: {written} frames written, only {} answered: {e:?}",
            e.frames
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_window_stall_holds_bounded_memory() {
    let lab = lab().await;
    let port = lab.j.https;
    // Two connections never open their stream windows (0), two open them
    // one byte wide (the proxy may then pull upstream data it cannot send):
    // 100 streams each, every one asking the upstream for 1 MiB.
    const STREAMS: u32 = 100;
    let windows = [0u32, 0, 1, 1];
    let conns = under_attack(
        &lab,
        "zero window, 4 connections x 100 streams x 1 MiB",
        async {
            let mut conns = Vec::new();
            for (k, w) in windows.iter().enumerate() {
                let mut c = H2Conn::open(port, OPEN, &[(SETTINGS_INITIAL_WINDOW_SIZE, *w)]).await;
                c.read();
                let mut batch = Vec::new();
                for s in 0..STREAMS {
                    let f = get_fields(OPEN, &format!("/big/1048576?stall={k}-{s}"));
                    batch.extend(headers_frame(1 + 2 * s, &f, END_HEADERS | END_STREAM));
                }
                c.send(&batch).await;
                conns.push(c);
            }
            // Let the upstream push as much as the proxy will take.
            tokio::time::sleep(Duration::from_secs(4)).await;
            conns
        },
    )
    .await;
    let started = lab.up.started_with("stall=").len();
    for (c, w) in conns.iter().zip(windows) {
        let e = c.seen();
        let data: usize = e.data.values().sum();
        println!(
            "window {w}: {} streams answered, {data} bytes of DATA reached the client; {started} upstream requests in all",
            e.statuses.len()
        );
        assert!(!e.statuses.is_empty(), "no stream was answered at all");
        assert!(
            data <= (w * STREAMS) as usize,
            "{data} bytes of DATA sent into {STREAMS} windows of {w}"
        );
    }
}

/// Waits up to `limit` for `done`; true if it held.
async fn eventually(limit: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while !done() {
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    true
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_that_take_no_response_data_lose_the_connection_and_free_the_upstream() {
    use tokio::io::AsyncReadExt;
    let lab = lab().await;
    let port = lab.j.https;
    // Bodies far larger than the socket buffers between the upstream and
    // the client, so an unread response keeps its upstream busy.
    const BIG: usize = 32 << 20;
    // The slack for the listener's once-a-second check and a loaded machine.
    let released_within = STALL_IDLE + Duration::from_secs(6);
    let (h2, mut h1) = under_attack(
        &lab,
        "responses nobody reads: HTTP/2 windows of 0, an HTTP/1.1 socket never read",
        async {
            let mut h2 = Vec::new();
            for k in 0..2 {
                let mut c = H2Conn::open(port, STALL, &[(SETTINGS_INITIAL_WINDOW_SIZE, 0)]).await;
                c.read();
                let mut batch = Vec::new();
                for s in 0..3u32 {
                    let f = get_fields(STALL, &format!("/big/{BIG}?h2-{k}-{s}"));
                    batch.extend(headers_frame(1 + 2 * s, &f, END_HEADERS | END_STREAM));
                }
                assert!(c.send(&batch).await);
                h2.push(c);
            }
            let mut h1 = H1Conn::open(port, STALL).await;
            let req = format!("GET /big/{BIG}?h1 HTTP/1.1\r\nHost: {STALL}\r\n\r\n");
            assert!(h1.send(req.as_bytes()).await);
            // The stalled responses hold upstream connections at first...
            let held = eventually(Duration::from_secs(5), || {
                lab.stall_up.started_with("?h").len() == 7
            })
            .await;
            assert!(
                held,
                "requests reached the upstream: {:?}",
                lab.stall_up.started_with("?h")
            );
            println!(
                "upstream connections held: {}",
                lab.stall_up.open_connections()
            );
            assert!(lab.stall_up.open_connections() >= 1);
            (h2, h1)
        },
    )
    .await;
    // ...and let them go once the clients have taken nothing for the
    // route's idle_timeout.
    let freed = eventually(released_within, || lab.stall_up.open_connections() == 0).await;
    assert!(
        freed,
        "{} upstream connections still held {released_within:?} after the stall began",
        lab.stall_up.open_connections()
    );
    for (k, c) in h2.iter().enumerate() {
        let e = c.wait(Duration::from_secs(5), |e| e.closed).await;
        assert!(e.closed, "HTTP/2 connection {k} still open: {e:?}");
        assert!(
            e.data.values().sum::<usize>() == 0,
            "data went into windows of 0: {e:?}"
        );
    }
    let mut got = 0usize;
    let mut chunk = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match h1.s.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => got += n,
            }
        }
    })
    .await;
    assert!(
        ended.is_ok(),
        "the unread HTTP/1.1 connection was not closed"
    );
    assert!(
        got < BIG,
        "the whole body arrived ({got} bytes): nothing was cut"
    );
    println!("HTTP/1.1 client got {got} of {BIG} bytes before the close");
    // A client that reads slowly but keeps reading is not cut: 64 KiB every
    // 250 ms for longer than the idle_timeout, over one connection.
    let mut slow = H1Conn::open(port, STALL).await;
    let req = format!("GET /big/{BIG}?slow HTTP/1.1\r\nHost: {STALL}\r\n\r\n");
    assert!(slow.send(req.as_bytes()).await);
    let mut got = 0usize;
    let started = Instant::now();
    let mut buf = vec![0u8; 64 << 10];
    while started.elapsed() < STALL_IDLE * 3 {
        match tokio::time::timeout(Duration::from_secs(5), slow.s.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got += n,
            other => panic!(
                "a slow reader was cut after {:?} and {got} bytes: {other:?}",
                started.elapsed()
            ),
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(got > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_streams_per_connection_are_capped() {
    let lab = lab().await;
    let port = lab.j.https;
    let (limit, e) = under_attack(&lab, "1 000 open streams on one connection", async {
        let mut c = H2Conn::open(port, SLOW, &[]).await;
        c.read();
        let e = c
            .wait(Duration::from_secs(2), |e| !e.settings.is_empty())
            .await;
        let limit = e
            .settings
            .iter()
            .rev()
            .find(|(id, _)| *id == SETTINGS_MAX_CONCURRENT_STREAMS)
            .map(|(_, v)| *v);
        // Requests whose bodies never come: each holds its stream open.
        let mut batch = Vec::new();
        for s in 0..1000u32 {
            let mut f = get_fields(SLOW, &format!("/held-{s}"));
            f[0].1 = b"POST".to_vec();
            batch.extend(headers_frame(1 + 2 * s, &f, END_HEADERS));
        }
        c.send(&batch).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
        (limit, c.seen())
    })
    .await;
    let limit = limit.expect("the server advertises SETTINGS_MAX_CONCURRENT_STREAMS") as usize;
    let forwarded = lab.up.started_with("/held-").len();
    let refused = e.resets.values().filter(|&&c| c == 0x7).count();
    println!(
        "concurrent streams: limit {limit}, {forwarded} reached the upstream, {refused} refused, goaway {:?}",
        e.goaway
    );
    // The documented limit (README, Security).
    assert!(limit <= 100, "advertised {limit}");
    assert!(
        forwarded <= limit,
        "{forwarded} streams forwarded past the limit {limit}"
    );
    assert!(
        refused >= 1000 - limit || e.goaway.is_some() || e.closed,
        "streams past the limit were neither refused nor the connection closed: {e:?}"
    );
}

// ---------------------------------------------------------------------------
// Upgrades

fn websocket_upgrade(host: &str, path: &str, accept: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Accept: {accept}\r\n\r\n"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upgrades_without_a_session_or_a_101_go_nowhere() {
    let lab = lab().await;
    let port = lab.j.https;
    let (api, browser, non101) = under_attack(&lab, "WebSocket upgrades", async {
        let mut api = H1Conn::open(port, SIGNED).await;
        api.send(websocket_upgrade(SIGNED, "/ws-api", "*/*").as_bytes())
            .await;
        let api = api.outcome(Duration::from_secs(1), STEP).await;
        let mut browser = H1Conn::open(port, SIGNED).await;
        browser
            .send(websocket_upgrade(SIGNED, "/ws-browser", "text/html").as_bytes())
            .await;
        let browser = browser.outcome(Duration::from_secs(1), STEP).await;
        // The upstream answers the upgrade with a plain 200; bytes the client
        // sends next must not be piped to the upstream as a tunnel.
        let mut c = H1Conn::open(port, WS).await;
        c.send(websocket_upgrade(WS, "/ws-non101", "*/*").as_bytes())
            .await;
        let first = c.outcome(Duration::from_secs(1), STEP).await;
        (api, browser, first)
    })
    .await;
    println!("upgrade without a session: {api:?} / {browser:?}; upstream non-101: {non101:?}");
    // No identity provider is configured, so a browser gets 401 too; with
    // one it would be sent to sign in (302). Either way, nothing upstream.
    for o in [&api, &browser] {
        assert!(matches!(o.status, Some(401 | 302)), "{o:?}");
    }
    assert!(lab.up.started_with("/ws-api").is_empty());
    assert!(lab.up.started_with("/ws-browser").is_empty());
    let st = non101.status.expect("an answer to the non-101 upgrade");
    assert_ne!(st, 101, "{non101:?}");
    assert!(st == 200 || st == 502, "{non101:?}");
    assert_eq!(lab.up.started_with("/ws-non101").len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_closed_however_many_pings_they_answer() {
    let up = Recorder::start().await;
    let j = Jetbridge::start(&ConfigFile {
        timeout_idle: Some(Duration::from_secs(2)),
        ..config(up.addr, up.addr)
    })
    .await;
    let block = hpack(&get_fields(OPEN, "/idle"));

    // One request, then only PINGs: closed with GOAWAY after the idle time.
    let mut idle = H2Conn::open(j.https, OPEN, &[]).await;
    idle.read();
    assert!(
        idle.send(&frame(HEADERS, END_HEADERS | END_STREAM, 1, &block))
            .await
    );
    let e = idle
        .wait(Duration::from_secs(5), |e| e.statuses.contains_key(&1))
        .await;
    assert_eq!(e.statuses.get(&1), Some(&200), "{e:?}");
    let started = Instant::now();
    // A second connection keeps making requests, one a second.
    let mut busy = H2Conn::open(j.https, OPEN, &[]).await;
    busy.read();
    let mut stream = 1;
    while started.elapsed() < Duration::from_secs(6) {
        let _ = idle.send(&frame(PING, 0, 0, &[7; 8])).await;
        assert!(
            busy.send(&frame(HEADERS, END_HEADERS | END_STREAM, stream, &block))
                .await
        );
        stream += 2;
        tokio::time::sleep(Duration::from_millis(1000)).await;
    }
    let idle_events = idle.seen();
    assert!(
        idle_events.goaway.is_some() || idle_events.closed,
        "an idle connection answering PINGs stayed open: {idle_events:?}"
    );
    let busy_events = busy.seen();
    assert!(
        busy_events.goaway.is_none() && !busy_events.closed,
        "a connection in use was closed: {busy_events:?}"
    );
    assert_eq!(
        busy_events.statuses.values().filter(|s| **s == 200).count(),
        (stream as usize - 1) / 2,
        "{busy_events:?}"
    );
}
