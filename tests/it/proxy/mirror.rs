//! `mirror_to` (a Gateway API `RequestMirror`) through the running proxy: a
//! copy of each request without a body reaches a mirror target with
//! exactly the head the upstream got, round robin between targets; a
//! request with a body is not copied; a mirror that is down or slow never
//! changes the client's answer.

use crate::harness;
use harness::attack::Recorder;
use harness::proxy::*;
use std::time::{Duration, Instant};

/// Waits up to 5 s for the recorders to have seen `n` requests with
/// `marker` between them.
async fn mirrored(mirrors: &[&Recorder], marker: &str, n: usize) -> Vec<harness::attack::Seen> {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let seen: Vec<_> = mirrors.iter().flat_map(|m| m.with(marker)).collect();
        if seen.len() >= n || Instant::now() > deadline {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn a_mirror_gets_the_upstreams_head_and_never_the_answer() {
    let up = echo_http1("main").await;
    let (m1, m2) = (Recorder::start().await, Recorder::start().await);
    let to = format!("http://{}", up.authority());
    let h = Harness::start(&config([
        RouteConfig {
            set_request_headers: headers(&[("X-Set", "by-route")]),
            add_request_headers: headers(&[("X-Add", "added")]),
            remove_request_headers: strings(&["X-Drop"]),
            mirror_to: http_targets(&[m1.addr, m2.addr]),
            ..public_route("mirror.test", &to)
        },
        // A mirror nobody listens on.
        RouteConfig {
            mirror_to: strings(&["http://127.0.0.1:9"]),
            ..public_route("down.test", &to)
        },
    ]))
    .await;

    let r = h
        .get_with(
            "mirror.test",
            "/one-m1z?q=1",
            &[("x-drop", "secret"), ("x-add", "client")],
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let main = r.echo();
    let seen = mirrored(&[&m1, &m2], "m1z", 1).await;
    assert_eq!(seen.len(), 1, "one copy");
    assert_eq!(seen[0].target, main.path_and_query);
    // The same head as the upstream's, but for Host (each target's own).
    let mut want: Vec<(String, String)> = main
        .headers
        .iter()
        .filter(|(n, _)| !n.eq_ignore_ascii_case("host"))
        .map(|(n, v)| (n.to_ascii_lowercase(), v.clone()))
        .collect();
    let mut got: Vec<(String, String)> = seen[0]
        .headers
        .iter()
        .filter(|(n, _)| n != "host")
        .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    want.sort();
    got.sort();
    assert_eq!(got, want);
    assert!(got.iter().any(|(n, v)| n == "x-set" && v == "by-route"));
    assert!(!got.iter().any(|(n, _)| n == "x-drop"));

    // Round robin: the next copy goes to the other target.
    let r = h.get("mirror.test", "/two-m2z").await;
    assert_eq!(r.status, 200);
    mirrored(&[&m1, &m2], "m2z", 1).await;
    assert_eq!(
        (m1.with("z").len(), m2.with("z").len()),
        (1, 1),
        "one copy each"
    );

    // A request with a body is forwarded, not copied.
    let r = h
        .raw(
            "mirror.test",
            "POST /body-m3z HTTP/1.1\r\nHost: mirror.test\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello",
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.echo().body, "hello");
    let h2 = h.get("mirror.test", "/after-m4z").await;
    assert_eq!(h2.status, 200);
    mirrored(&[&m1, &m2], "m4z", 1).await;
    // Copies go out in order; the later one has arrived, the earlier none.
    assert!(m1.with("m3z").is_empty() && m2.with("m3z").is_empty());

    // A mirror that is down changes nothing for the client.
    let r = h.get("down.test", "/x").await;
    assert_eq!((r.status, r.echo().server.as_str()), (200, "main"));
}
