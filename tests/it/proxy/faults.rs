//! Faults the proxy must survive, thrown at the real binary from outside: an
//! upstream that resets or stalls in the middle of a body, one that never
//! answers, one that is down, over HTTP/1.1 and HTTP/2 (where one stream's
//! failure must not take the connection's other streams with it), and a
//! config file that disappears or turns into a directory under a running
//! `standalone`. Each fault ends within the route's timeouts, and a
//! bystander keeps getting 200.

use crate::harness;

use harness::attack::*;
use harness::config::{ConfigFile, RouteConfig, public_route};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

const HOST: &str = "faults.test";
const DOWN: &str = "down.test";
/// The route's `timeout` and `idle_timeout`.
const LIMIT: Duration = Duration::from_secs(2);
/// What the body claims to be; the faulty upstreams send far less.
const CLAIMED: usize = 100_000;

/// A raw HTTP/1.1 upstream: `/reset` sends part of a body then resets the
/// connection, `/stall` sends part of a body then goes silent, `/silent`
/// never answers, anything else gets 200 "ok".
async fn faulty_upstream() -> std::net::SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                return;
            };
            tokio::spawn(async move {
                loop {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        match s.read(&mut byte).await {
                            Ok(1) => head.push(byte[0]),
                            _ => return,
                        }
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    let path = head.split(' ').nth(1).unwrap_or("/").to_string();
                    let partial = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {CLAIMED}\r\n\r\n{}",
                        "x".repeat(1000)
                    );
                    if path.starts_with("/reset") {
                        let _ = s.write_all(partial.as_bytes()).await;
                        let _ = s.set_zero_linger();
                        return; // dropped with SO_LINGER 0: a TCP reset
                    } else if path.starts_with("/stall") {
                        let _ = s.write_all(partial.as_bytes()).await;
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        return;
                    } else if path.starts_with("/silent") {
                        tokio::time::sleep(Duration::from_secs(60)).await;
                        return;
                    } else if s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    addr
}

fn config(up: std::net::SocketAddr) -> ConfigFile {
    let dead = harness::login::refused_addr();
    ConfigFile {
        routes: vec![
            RouteConfig {
                timeout: Some(Duration::from_secs(2)),
                idle_timeout: Some(Duration::from_secs(2)),
                ..public_route(HOST, &format!("http://{up}"))
            },
            public_route(DOWN, &format!("http://{dead}")),
        ],
        ..Default::default()
    }
}

/// An HTTP/1.1 GET over a fresh TLS connection, read until the proxy ends
/// it: the status, the body bytes received, and how long it took.
async fn get(port: u16, host: &str, path: &str) -> (Option<u16>, usize, Duration) {
    let started = Instant::now();
    let mut s = tls(port, host, b"http/1.1").await;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).await.unwrap();
    let mut buf = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(15), async {
        let mut chunk = vec![0u8; 16 * 1024];
        loop {
            match s.read(&mut chunk).await {
                Ok(0) | Err(_) => break,
                Ok(n) => buf.extend_from_slice(&chunk[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "{path}: the proxy never ended the response");
    let body = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| buf.len() - i - 4)
        .unwrap_or(0);
    (status_of(&buf), body, started.elapsed())
}

async fn bystander_ok(j: &Jetbridge) {
    let (status, took) = probe(j.https, HOST, "/bystander").await;
    assert_eq!(status, Some(200), "bystander after a fault ({took:?})");
    assert!(j.alive());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_faults_end_within_the_route_timeouts_over_http1() {
    let up = faulty_upstream().await;
    let j = Jetbridge::start(&config(up)).await;
    bystander_ok(&j).await;

    // Reset mid-body: the client's response ends early, at once.
    let (status, body, took) = get(j.https, HOST, "/reset").await;
    assert_eq!(status, Some(200));
    assert!(
        body < CLAIMED,
        "a truncated body is never completed: {body}"
    );
    assert!(took < LIMIT + Duration::from_secs(2), "{took:?}");
    bystander_ok(&j).await;

    // Stalled mid-body: cut off after the route's idle_timeout.
    let (status, body, took) = get(j.https, HOST, "/stall").await;
    assert_eq!(status, Some(200));
    assert!(body < CLAIMED, "{body}");
    assert!(
        took >= LIMIT && took < LIMIT + Duration::from_secs(4),
        "{took:?}"
    );
    bystander_ok(&j).await;

    // No response head at all: 504 after the route's timeout.
    let (status, _, took) = get(j.https, HOST, "/silent").await;
    assert_eq!(status, Some(504));
    assert!(
        took >= LIMIT && took < LIMIT + Duration::from_secs(4),
        "{took:?}"
    );

    // Nothing listening: 503 at once.
    let (status, _, took) = get(j.https, DOWN, "/").await;
    assert_eq!(status, Some(503));
    assert!(took < Duration::from_secs(2), "{took:?}");
    bystander_ok(&j).await;

    let (_, errors) = j.internal_get("/metrics").await;
    assert!(
        errors.contains("jetbridge_upstream_errors_total{route=\"routes[0]\"}")
            && errors.contains("jetbridge_upstream_errors_total{route=\"routes[1]\"}"),
        "upstream errors are counted per route"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_failing_stream_leaves_the_other_streams_of_an_http2_connection_alone() {
    let up = faulty_upstream().await;
    let j = Jetbridge::start(&config(up)).await;
    let mut c = H2Conn::open(j.https, HOST, &[]).await;
    c.read();
    let mut batch = Vec::new();
    for (stream, path) in [(1, "/reset"), (3, "/stall"), (5, "/silent"), (7, "/ok")] {
        batch.extend(frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            stream,
            &hpack(&get_fields(HOST, path)),
        ));
    }
    assert!(c.send(&batch).await);
    let e = c
        .wait(LIMIT + Duration::from_secs(5), |e| {
            [1, 3].iter().all(|s| e.resets.contains_key(s))
                && e.statuses.get(&5) == Some(&504)
                && e.statuses.get(&7) == Some(&200)
        })
        .await;
    assert_eq!(e.statuses.get(&7), Some(&200), "{e:?}");
    assert_eq!(e.statuses.get(&5), Some(&504), "{e:?}");
    for s in [1, 3] {
        assert!(
            e.resets.contains_key(&s) && e.data.get(&s).copied().unwrap_or(0) < CLAIMED,
            "stream {s} is reset, not completed: {e:?}"
        );
    }
    assert!(
        e.goaway.is_none() && !e.closed,
        "the connection survives: {e:?}"
    );
    // And it still serves new streams.
    assert!(
        c.send(&frame(
            HEADERS,
            END_HEADERS | END_STREAM,
            9,
            &hpack(&get_fields(HOST, "/after")),
        ))
        .await
    );
    let e = c
        .wait(Duration::from_secs(5), |e| e.statuses.contains_key(&9))
        .await;
    assert_eq!(e.statuses.get(&9), Some(&200), "{e:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_file_that_disappears_or_becomes_a_directory_keeps_the_last_good_config() {
    let up = faulty_upstream().await;
    let j = Jetbridge::start(&config(up)).await;
    let text = std::fs::read_to_string(&j.config).unwrap();
    let reload_failures = |m: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix("jetbridge_config_reload_failures_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    let before = reload_failures(&j.internal_get("/metrics").await.1);

    std::fs::remove_file(&j.config).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    bystander_ok(&j).await;
    std::fs::create_dir(&j.config).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    bystander_ok(&j).await;
    let (_, metrics) = j.internal_get("/metrics").await;
    assert!(
        reload_failures(&metrics) > before,
        "an unreadable file is a reload failure: {metrics}"
    );
    assert!(metrics.contains("jetbridge_routes 2"), "{metrics}");
    assert_eq!(j.internal_get("/readyz").await.0, 200);

    // Readable again: serving as before, no new generation needed.
    std::fs::remove_dir(&j.config).unwrap();
    std::fs::write(&j.config, text).unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    bystander_ok(&j).await;
}
